//! What the seeded simulations share: the seeds to run (`RINGCACHE_SEED=<n>`
//! replays one, `RINGCACHE_SIM_SEEDS=<n>` runs seeds 0 to n-1, the caller's
//! default otherwise) and the splitmix64 generator every choice comes from.
//! Included by path by the simulations, which need nothing else of `support`;
//! each uses part of it.
#![allow(dead_code)]

/// The seeds to run, and whether it is one seed replayed (worth a trace).
pub fn sim_seeds(default: u64) -> (Vec<u64>, bool) {
    match env_u64("RINGCACHE_SEED") {
        Some(seed) => (vec![seed], true),
        None => (
            (0..env_u64("RINGCACHE_SIM_SEEDS").unwrap_or(default)).collect(),
            false,
        ),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// splitmix64: a simulator's only source of choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True `p` times in 100.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

//! The seeds a seeded simulation runs: `RINGCACHE_SEED=<n>` replays one,
//! `RINGCACHE_SIM_SEEDS=<n>` runs seeds 0 to n-1 (the caller's default
//! otherwise). Included by path by the simulations, which need nothing else
//! of `support`.

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

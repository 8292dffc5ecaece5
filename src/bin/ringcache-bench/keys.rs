//! Which key each request names: a seeded generator and Zipf draws (pure).

/// splitmix64: small, fast, good enough to pick keys and sizes.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (no division).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf-distributed ranks over `0..n`, as YCSB's ZipfianGenerator draws them
/// (Gray et al., "Quickly generating billion-record synthetic databases"):
/// O(n) set-up, O(1) per draw. Rank 0 is the most popular key.
pub(crate) struct Zipf {
    pub(crate) n: u64,
    pub(crate) theta: f64,
    pub(crate) alpha: f64,
    pub(crate) zetan: f64,
    pub(crate) eta: f64,
}

impl Zipf {
    pub(crate) fn new(n: u64, theta: f64) -> Result<Zipf, String> {
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!(
                "--zipf-theta {theta}: must be between 0 and 1, exclusive"
            ));
        }
        let zetan: f64 = (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let zeta2 = 1.0 + 0.5f64.powf(theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Ok(Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        })
    }

    pub(crate) fn draw(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

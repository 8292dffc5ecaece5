//! The keys a shard is asked for most: a sampled space-saving heavy-hitters sketch (pure).
//!
//! Metwally, Agrawal and El Abbadi's *space-saving* algorithm keeps at most
//! `capacity` counters, whatever the number of distinct keys. A key already
//! counted adds its weight to its counter; a new key takes over the smallest
//! counter, adds its weight to it, and remembers the count it inherited as its
//! `error`.
//!
//! Counting every request would cost a hash, a probe and, once there are more
//! distinct keys than counters, a takeover on almost every request. So the
//! sketch counts every request only until a key finds every counter taken; from
//! that first takeover on (until [`HotKeys::clear`]) it *samples*:
//! each request is counted with probability 1/[`SAMPLE_ONE_IN`], independently
//! of the others, and a counted request weighs [`SAMPLE_ONE_IN`]. The gap to the
//! next counted request is drawn from the geometric distribution, so a request
//! that is not counted costs one decrement and one compare.
//!
//! What the counts then mean, exactly:
//! - With at most `capacity` distinct keys nothing is sampled: every count is
//!   the key's true count and every error is 0.
//! - Otherwise, call a key's *weighted count* its requests before sampling began
//!   plus [`SAMPLE_ONE_IN`] times its sampled requests since. Space-saving's
//!   bounds hold for it without exception: `count - error <= weighted count <=
//!   count`, and every key whose weighted count exceeds `total / capacity` is
//!   kept ([`HotKeys::total`] is the sum of the weights counted).
//! - A weighted count is an unbiased estimate of the key's true count: the two
//!   agree in expectation, with a standard deviation of about
//!   `sqrt(SAMPLE_ONE_IN * n)` for a key asked for `n` times since sampling
//!   began. So `count - error <= true count <= count` and "every key asked for
//!   more than 1/capacity of the requests is kept" hold in expectation, and
//!   closely for keys asked for thousands of times; a key asked for a few
//!   times may be missed.
//!
//! Memory is fixed at creation: `capacity` slots with room for a
//! [`KEY_LEN_MAX`]-byte key each, a min-heap of slot numbers ordered by count,
//! and an open-addressing table from key hash to slot. A counted request costs
//! one hash, one probe, and a sift of at most log2(capacity) heap levels;
//! nothing is allocated after [`HotKeys::new`]. The sampling draws come from a
//! fixed-seed generator, restarted by [`HotKeys::clear`], so the same requests
//! give the same sketch. One owner: the shard's executor.

use crate::limits::KEY_LEN_MAX;

/// One counted key, as [`HotKeys::top`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    pub key: Vec<u8>,
    /// Requests counted for the key, sampled ones weighing [`SAMPLE_ONE_IN`]:
    /// at least its weighted count, at most `error` above it (see the module
    /// documentation).
    pub count: u64,
    /// How much of `count` the key may have inherited from the key it replaced.
    pub error: u64,
    /// 1: every request of the shard was counted, and `count` bounds the true
    /// count. [`SAMPLE_ONE_IN`]: the shard's sketch samples, one request in this
    /// many counted as this many.
    pub sample_one_in: u64,
}

struct Slot {
    hash: u64,
    count: u64,
    error: u64,
    key_len: u8,
    key: [u8; KEY_LEN_MAX],
}

impl Slot {
    fn key(&self) -> &[u8] {
        &self.key[..self.key_len as usize]
    }
}

/// A table entry: no slot.
const EMPTY: u16 = u16::MAX;

/// The most counters one sketch may have (slot numbers are `u16`, `EMPTY` aside).
pub const CAPACITY_MAX: usize = 4096;

/// Once a key has found every counter taken, one request in this many (at
/// random) is counted, as this many requests.
pub const SAMPLE_ONE_IN: u64 = 16;

/// Where the sampling draws start, so that a sketch replays the same way.
const RNG_SEED: u64 = 0x686f_746b_6579_7332;

/// A space-saving sketch over keys. See the module documentation.
pub struct HotKeys {
    slots: Vec<Slot>,
    /// Slot numbers, a binary min-heap by `count`: `heap[0]` is the smallest.
    heap: Vec<u16>,
    /// `at[slot]`: where the slot is in `heap`.
    at: Vec<u16>,
    /// Linear-probing table of slot numbers by hash, at most half full.
    table: Vec<u16>,
    hasher: ahash::RandomState,
    /// The sum of the weights counted since creation or the last [`HotKeys::clear`].
    total: u64,
    /// What a counted request weighs: 1 until the first takeover, then [`SAMPLE_ONE_IN`].
    weight: u64,
    /// Requests to pass over before the next one is counted (0 until the first takeover).
    skip: u64,
    /// splitmix64 state for the sampling draws.
    rng: u64,
}

impl HotKeys {
    /// A sketch of `capacity` counters (1 to [`CAPACITY_MAX`]), all memory taken now.
    pub fn new(capacity: usize) -> HotKeys {
        assert!(
            (1..=CAPACITY_MAX).contains(&capacity),
            "hot key capacity {capacity}"
        );
        let table_len = (capacity * 2).next_power_of_two();
        HotKeys {
            slots: Vec::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
            at: Vec::with_capacity(capacity),
            table: vec![EMPTY; table_len],
            hasher: ahash::RandomState::with_seeds(
                0x686f_746b_6579_7331,
                0x9e37_79b9_7f4a_7c15,
                0x2545_f491_4f6c_dd1d,
                0x5851_f42d_4c95_7f2d,
            ),
            total: 0,
            weight: 1,
            skip: 0,
            rng: RNG_SEED,
        }
    }

    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// The sum of the weights counted so far: an unbiased estimate of the
    /// requests seen, and the sum of every count.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// 1 while every request is counted, [`SAMPLE_ONE_IN`] once the sketch samples.
    pub fn sample_one_in(&self) -> u64 {
        self.weight
    }

    /// Notes one request for `key` and returns the weight it was counted with
    /// (0: passed over by the sampling). Keys longer than [`KEY_LEN_MAX`] (which
    /// no protocol accepts) are counted in the total only.
    #[inline]
    pub fn record(&mut self, key: &[u8]) -> u64 {
        if self.skip > 0 {
            self.skip -= 1;
            return 0;
        }
        self.count(key)
    }

    /// Counts one request for `key` with the current weight, then, once the
    /// sketch samples, draws the gap to the next counted request.
    #[inline(never)]
    fn count(&mut self, key: &[u8]) -> u64 {
        let weight = self.weight;
        self.add(key, weight);
        if self.weight > 1 {
            self.skip = self.gap();
        }
        weight
    }

    /// Requests to pass over before the next counted one: geometric, so that
    /// each request is counted with probability 1/[`SAMPLE_ONE_IN`], independently.
    fn gap(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Uniform in (0, 1]: 53 random bits, plus one so that ln is finite.
        let uniform = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let pass = 1.0 - 1.0 / SAMPLE_ONE_IN as f64;
        // Both logarithms are negative or zero: the gap is 0 to about 570.
        (uniform.ln() / pass.ln()) as u64
    }

    /// Adds `weight` to the counter of `key`, taking over the smallest counter
    /// if `key` has none and none is free.
    fn add(&mut self, key: &[u8], weight: u64) {
        self.total += weight;
        if key.len() > KEY_LEN_MAX {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let (index, found) = self.probe(hash, key);
        let slot = match found {
            Some(slot) => {
                self.slots[slot as usize].count += weight;
                slot
            }
            None if self.slots.len() < self.capacity() => {
                let slot = self.slots.len() as u16;
                let mut new = Slot {
                    hash,
                    count: weight,
                    error: 0,
                    key_len: 0,
                    key: [0; KEY_LEN_MAX],
                };
                new.key_len = key.len() as u8;
                new.key[..key.len()].copy_from_slice(key);
                self.slots.push(new);
                self.at.push(self.heap.len() as u16);
                self.heap.push(slot);
                self.table[index] = slot;
                self.sift_up(self.heap.len() - 1);
                return;
            }
            None => {
                // Take over the smallest counter, and sample from now on.
                self.weight = SAMPLE_ONE_IN;
                let slot = self.heap[0];
                let old_hash = self.slots[slot as usize].hash;
                self.remove_from_table(old_hash, slot);
                // Removal may have moved entries; probe again for a free place.
                let (index, _) = self.probe(hash, key);
                self.table[index] = slot;
                let s = &mut self.slots[slot as usize];
                s.hash = hash;
                s.error = s.count;
                s.count += weight;
                s.key_len = key.len() as u8;
                s.key[..key.len()].copy_from_slice(key);
                slot
            }
        };
        self.sift_down(self.at[slot as usize] as usize);
    }

    /// The counted keys, most counted first (ties: smaller error first, then by key).
    pub fn top(&self) -> Vec<HotKey> {
        let mut keys: Vec<HotKey> = self
            .slots
            .iter()
            .map(|s| HotKey {
                key: s.key().to_vec(),
                count: s.count,
                error: s.error,
                sample_one_in: self.weight,
            })
            .collect();
        keys.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.error.cmp(&b.error))
                .then_with(|| a.key.cmp(&b.key))
        });
        keys
    }

    /// Forgets every key (`stats reset`), keeping the memory.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.heap.clear();
        self.at.clear();
        self.table.fill(EMPTY);
        self.total = 0;
        self.weight = 1;
        self.skip = 0;
        self.rng = RNG_SEED;
    }

    /// Where `key` is in the table, or the empty place where it would go.
    fn probe(&self, hash: u64, key: &[u8]) -> (usize, Option<u16>) {
        let mask = self.table.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.table[i];
            if slot == EMPTY {
                return (i, None);
            }
            let s = &self.slots[slot as usize];
            if s.hash == hash && s.key() == key {
                return (i, Some(slot));
            }
            i = (i + 1) & mask;
        }
    }

    /// Takes `slot` out of the table, shifting back the entries after it that
    /// would otherwise be cut off from their home place (no tombstones).
    fn remove_from_table(&mut self, hash: u64, slot: u16) {
        let mask = self.table.len() - 1;
        let mut hole = hash as usize & mask;
        while self.table[hole] != slot {
            assert_ne!(self.table[hole], EMPTY, "a counted key is in the table");
            hole = (hole + 1) & mask;
        }
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let next = self.table[i];
            if next == EMPTY {
                break;
            }
            let home = self.slots[next as usize].hash as usize & mask;
            // `next` may move to the hole if its home is not in (hole, i].
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.table[hole] = next;
                hole = i;
            }
        }
        self.table[hole] = EMPTY;
    }

    fn count_at(&self, heap_index: usize) -> u64 {
        self.slots[self.heap[heap_index] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.at[self.heap[a] as usize] = a as u16;
        self.at[self.heap[b] as usize] = b as u16;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.count_at(parent) <= self.count_at(i) {
                break;
            }
            self.swap(parent, i);
            i = parent;
        }
    }

    /// Counts only grow, so a counter only ever moves down the heap.
    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if left < n && self.count_at(left) < self.count_at(least) {
                least = left;
            }
            if right < n && self.count_at(right) < self.count_at(least) {
                least = right;
            }
            if least == i {
                break;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small deterministic generator, so failures replay.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    fn check_invariants(h: &HotKeys) {
        for i in 1..h.heap.len() {
            assert!(h.count_at((i - 1) / 2) <= h.count_at(i), "heap order");
        }
        for (slot, &at) in h.at.iter().enumerate() {
            assert_eq!(h.heap[at as usize] as usize, slot);
        }
        for s in &h.slots {
            assert!(h.probe(s.hash, s.key()).1.is_some(), "slot findable");
        }
        let listed = h.table.iter().filter(|&&s| s != EMPTY).count();
        assert_eq!(listed, h.slots.len());
        let counted: u64 = h.slots.iter().map(|s| s.count).sum();
        assert_eq!(counted, h.total, "space-saving keeps the sum of counts");
    }

    /// Records `key` in `h`, and in `weighted` with the weight it was counted with.
    fn record(h: &mut HotKeys, weighted: &mut HashMap<Vec<u8>, u64>, key: &[u8]) {
        let weight = h.record(key);
        if weight > 0 {
            *weighted.entry(key.to_vec()).or_insert(0) += weight;
        }
    }

    #[test]
    fn counts_are_exact_while_keys_fit() {
        let mut h = HotKeys::new(64);
        let mut truth = HashMap::new();
        let mut rng = Lcg(7);
        for _ in 0..10_000 {
            let key = format!("key:{}", rng.next() % 64);
            assert_eq!(h.record(key.as_bytes()), 1, "nothing sampled");
            *truth.entry(key.into_bytes()).or_insert(0u64) += 1;
        }
        check_invariants(&h);
        let top = h.top();
        assert_eq!(top.len(), 64);
        for k in &top {
            assert_eq!(k.error, 0);
            assert_eq!(k.sample_one_in, 1);
            assert_eq!(k.count, truth[&k.key]);
        }
        assert_eq!(h.total(), 10_000);
        assert!(top.windows(2).all(|w| w[0].count >= w[1].count));
    }

    #[test]
    fn sampling_starts_at_the_first_takeover_and_stops_at_clear() {
        let mut h = HotKeys::new(4);
        for key in [b"a", b"b", b"c", b"d", b"a"] {
            assert_eq!(h.record(key), 1);
        }
        assert_eq!(h.sample_one_in(), 1, "every counter taken, none taken over");
        assert_eq!(h.record(b"e"), 1, "the first takeover counts in full");
        assert_eq!(h.sample_one_in(), SAMPLE_ONE_IN);
        let weights: Vec<u64> = (0..10_000).map(|_| h.record(b"a")).collect();
        assert!(weights.iter().all(|&w| w == 0 || w == SAMPLE_ONE_IN));
        assert!(h.top().iter().all(|k| k.sample_one_in == SAMPLE_ONE_IN));
        check_invariants(&h);
        h.clear();
        assert_eq!(h.sample_one_in(), 1);
        assert_eq!(h.record(b"e"), 1);
    }

    #[test]
    fn a_cleared_sketch_replays_like_a_new_one() {
        let feed = |h: &mut HotKeys| -> Vec<u64> {
            let mut rng = Lcg(11);
            (0..5_000)
                .map(|_| h.record(format!("{}", rng.next() % 100).as_bytes()))
                .collect()
        };
        let mut fresh = HotKeys::new(8);
        let mut cleared = HotKeys::new(8);
        feed(&mut cleared);
        cleared.clear();
        assert_eq!(feed(&mut cleared), feed(&mut fresh));
        assert_eq!(cleared.top(), fresh.top());
    }

    #[test]
    fn one_request_in_sample_one_in_is_counted_and_the_total_estimates_the_requests() {
        let mut h = HotKeys::new(8);
        let mut rng = Lcg(5);
        let n = 1_000_000u64;
        let mut counted = 0u64;
        for _ in 0..n {
            let key = format!("{}", rng.next() % 1000);
            if h.record(key.as_bytes()) > 0 {
                counted += 1;
            }
        }
        check_invariants(&h);
        // Binomial(n, 1/16): mean 62,500, standard deviation about 242.
        let expected = n / SAMPLE_ONE_IN;
        assert!(
            counted.abs_diff(expected) < expected / 50,
            "{counted} counted"
        );
        // The total's standard deviation is about sqrt(16 n) = 4,000.
        assert!(h.total().abs_diff(n) < n / 50, "total {}", h.total());
    }

    #[test]
    fn a_heavy_hitter_is_always_kept_and_first() {
        let mut h = HotKeys::new(16);
        let mut weighted = HashMap::new();
        let mut rng = Lcg(42);
        for i in 0..100_000u64 {
            if i % 10 == 0 {
                record(&mut h, &mut weighted, b"hot");
            } else {
                let key = format!("cold:{}", rng.next() % 100_000);
                record(&mut h, &mut weighted, key.as_bytes());
            }
            if i % 997 == 0 {
                check_invariants(&h);
            }
        }
        check_invariants(&h);
        let top = h.top();
        assert_eq!(top[0].key, b"hot");
        // Exactly, for the weighted count.
        let hot = weighted[&b"hot"[..]];
        assert!(top[0].count - top[0].error <= hot && hot <= top[0].count);
        // In expectation, for the true count (10,000): the weighted count's
        // standard deviation is about 16 * sqrt(10,000 / 16) = 400.
        assert!(hot.abs_diff(10_000) < 2_000, "weighted count {hot}");
    }

    #[test]
    fn every_count_bounds_the_weighted_count_within_its_error() {
        let mut h = HotKeys::new(32);
        let mut truth = HashMap::new();
        let mut weighted = HashMap::new();
        let mut rng = Lcg(3);
        let n = 50_000u64;
        for _ in 0..n {
            // Skewed: small numbers far more often.
            let r = rng.next() % 1000;
            let key = format!("k{}", r * r / 1000);
            record(&mut h, &mut weighted, key.as_bytes());
            *truth.entry(key.into_bytes()).or_insert(0u64) += 1;
        }
        check_invariants(&h);
        let top = h.top();
        let total = h.total();
        for k in &top {
            let counted = weighted.get(&k.key).copied().unwrap_or(0);
            assert!(k.count >= counted, "{k:?} counts at least {counted}");
            assert!(
                k.count - k.error <= counted,
                "{k:?} within its error of {counted}"
            );
            assert!(k.error <= total / 32, "error at most total / capacity");
        }
        // Every key whose weighted count is above total / capacity is kept.
        for (key, &counted) in &weighted {
            if counted > total / 32 {
                assert!(
                    top.iter().any(|k| &k.key == key),
                    "{key:?} ({counted}) kept"
                );
            }
        }
        // The true count is within the same bounds give or take the sampling's
        // spread: the weighted count's standard deviation is about
        // sqrt(SAMPLE_ONE_IN * true count); allow five of them.
        for k in &top {
            let real = truth[&k.key];
            let spread = 5 * ((SAMPLE_ONE_IN * real) as f64).sqrt() as u64;
            assert!(
                k.count - k.error <= real + spread && real <= k.count + spread,
                "{k:?}: true count {real}"
            );
        }
    }

    #[test]
    fn churn_through_many_keys_keeps_the_table_consistent() {
        let mut h = HotKeys::new(8);
        let mut rng = Lcg(99);
        for i in 0..20_000 {
            let key = format!("{}", rng.next() % 50);
            h.record(key.as_bytes());
            if i % 101 == 0 {
                check_invariants(&h);
            }
        }
        check_invariants(&h);
    }

    #[test]
    fn the_longest_key_is_counted_and_a_longer_one_only_in_the_total() {
        let mut h = HotKeys::new(4);
        let longest = vec![b'a'; KEY_LEN_MAX];
        h.record(&longest);
        h.record(&vec![b'b'; KEY_LEN_MAX + 1]);
        assert_eq!(h.total(), 2);
        assert_eq!(h.top().len(), 1);
        assert_eq!(h.top()[0].key, longest);
    }

    #[test]
    fn clear_forgets_every_key() {
        let mut h = HotKeys::new(4);
        for k in [b"a", b"b", b"a"] {
            h.record(k);
        }
        h.clear();
        assert!(h.top().is_empty());
        assert_eq!(h.total(), 0);
        h.record(b"c");
        assert_eq!(h.top()[0].count, 1);
    }
}

//! The keys a shard is asked for most: a space-saving heavy-hitters sketch (pure).
//!
//! Metwally, Agrawal and El Abbadi's *space-saving* algorithm keeps at most
//! `capacity` counters, whatever the number of distinct keys. A key already
//! counted adds one to its counter; a new key takes over the smallest counter,
//! adds one to it, and remembers the count it inherited as its `error`. So, for
//! every key kept, `count - error <= true count <= count`, and every key asked
//! for more than `requests / capacity` times is kept. With fewer distinct keys
//! than counters, nothing is ever taken over and every count is exact.
//!
//! Memory is fixed at creation: `capacity` slots with room for a
//! [`KEY_LEN_MAX`]-byte key each, a min-heap of slot numbers ordered by count,
//! and an open-addressing table from key hash to slot. A request costs one hash,
//! one probe, and a sift of at most log2(capacity) heap levels; nothing is
//! allocated after [`HotKeys::new`]. One owner: the shard's executor.

use crate::limits::KEY_LEN_MAX;

/// One counted key, as [`HotKeys::top`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    pub key: Vec<u8>,
    /// Requests counted for the key: at least its true count, at most
    /// `error` above it.
    pub count: u64,
    /// How much of `count` the key may have inherited from the key it replaced.
    pub error: u64,
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

/// The most counters one sketch may have (slot numbers are `u16`, [`EMPTY`] aside).
pub const CAPACITY_MAX: usize = 4096;

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
    /// Requests counted since creation or the last [`HotKeys::clear`].
    total: u64,
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
        }
    }

    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Requests counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counts one request for `key`. Keys longer than [`KEY_LEN_MAX`] (which no
    /// protocol accepts) are counted in the total only.
    pub fn record(&mut self, key: &[u8]) {
        self.total += 1;
        if key.len() > KEY_LEN_MAX {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let (index, found) = self.probe(hash, key);
        let slot = match found {
            Some(slot) => {
                self.slots[slot as usize].count += 1;
                slot
            }
            None if self.slots.len() < self.capacity() => {
                let slot = self.slots.len() as u16;
                let mut new = Slot {
                    hash,
                    count: 1,
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
                // Take over the smallest counter.
                let slot = self.heap[0];
                let old_hash = self.slots[slot as usize].hash;
                self.remove_from_table(old_hash, slot);
                // Removal may have moved entries; probe again for a free place.
                let (index, _) = self.probe(hash, key);
                self.table[index] = slot;
                let s = &mut self.slots[slot as usize];
                s.hash = hash;
                s.error = s.count;
                s.count += 1;
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

    #[test]
    fn counts_are_exact_while_keys_fit() {
        let mut h = HotKeys::new(64);
        let mut truth = HashMap::new();
        let mut rng = Lcg(7);
        for _ in 0..10_000 {
            let key = format!("key:{}", rng.next() % 64);
            h.record(key.as_bytes());
            *truth.entry(key.into_bytes()).or_insert(0u64) += 1;
        }
        check_invariants(&h);
        let top = h.top();
        assert_eq!(top.len(), 64);
        for k in &top {
            assert_eq!(k.error, 0);
            assert_eq!(k.count, truth[&k.key]);
        }
        assert!(top.windows(2).all(|w| w[0].count >= w[1].count));
    }

    #[test]
    fn a_heavy_hitter_is_always_kept_and_first() {
        let mut h = HotKeys::new(16);
        let mut rng = Lcg(42);
        for i in 0..100_000u64 {
            if i % 10 == 0 {
                h.record(b"hot");
            } else {
                let key = format!("cold:{}", rng.next() % 100_000);
                h.record(key.as_bytes());
            }
            if i % 997 == 0 {
                check_invariants(&h);
            }
        }
        check_invariants(&h);
        let top = h.top();
        assert_eq!(top[0].key, b"hot");
        assert!(top[0].count - top[0].error <= 10_000 && 10_000 <= top[0].count);
    }

    #[test]
    fn every_count_bounds_the_true_count_within_its_error() {
        let mut h = HotKeys::new(32);
        let mut truth = HashMap::new();
        let mut rng = Lcg(3);
        let n = 50_000u64;
        for _ in 0..n {
            // Skewed: small numbers far more often.
            let r = rng.next() % 1000;
            let key = format!("k{}", r * r / 1000);
            h.record(key.as_bytes());
            *truth.entry(key.into_bytes()).or_insert(0u64) += 1;
        }
        check_invariants(&h);
        let top = h.top();
        for k in &top {
            let real = truth[&k.key];
            assert!(k.count >= real, "{k:?} counts at least {real}");
            assert!(
                k.count - k.error <= real,
                "{k:?} within its error of {real}"
            );
            assert!(k.error <= n / 32, "error at most total / capacity");
        }
        // Every key asked for more than total / capacity times is kept.
        for (key, &real) in &truth {
            if real > n / 32 {
                assert!(top.iter().any(|k| &k.key == key), "{key:?} ({real}) kept");
            }
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

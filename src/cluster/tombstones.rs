//! What a shard remembers of the keys removed from it in a cluster: for each,
//! the CAS unique its removal took, kept for a bounded time (pure).
//!
//! A removal is a write like any other: it takes a CAS unique larger than the
//! removed item's, travels to the other owners with it (`md <key> q E<cas>`),
//! and whichever node holds the larger unique for a key, item or removal, holds
//! the newer state. Without a record of removals, a copy pushed during a
//! recovery, or a replica write that arrives late, would bring a deleted key
//! back; with it, such a copy is recognised as older and dropped.
//!
//! A tombstone lives for [`TOMBSTONE_KEEP_SECS`] and a shard keeps at most
//! [`TOMBSTONES_PER_SHARD_MAX`] (the oldest go first): a copy older than a
//! removal forgotten since is taken as new (see the README's known limits).

use std::collections::{HashMap, VecDeque};

pub use crate::limits::{TOMBSTONES_PER_SHARD_MAX, TOMBSTONE_KEEP_SECS};

/// One shard's tombstones.
#[derive(Debug)]
pub struct Tombstones {
    by_key: HashMap<Vec<u8>, Stone>,
    /// Keys in the order they were removed (a key removed again appears
    /// twice; only the entry matching `by_key` counts).
    order: VecDeque<(Vec<u8>, u64)>,
    keep_secs: u32,
    max: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stone {
    cas: u64,
    /// When the removal was noted (the store clock's seconds).
    at: u32,
    /// Which note of the key this is (matches one entry of `order`).
    serial: u64,
}

impl Default for Tombstones {
    fn default() -> Tombstones {
        Tombstones::new(TOMBSTONE_KEEP_SECS, TOMBSTONES_PER_SHARD_MAX)
    }
}

impl Tombstones {
    pub fn new(keep_secs: u32, max: usize) -> Tombstones {
        Tombstones {
            by_key: HashMap::new(),
            order: VecDeque::new(),
            keep_secs,
            max: max.max(1),
        }
    }

    /// Notes that `key` was removed with CAS unique `cas` at `now`; a key
    /// already removed keeps the larger unique.
    pub fn note(&mut self, key: &[u8], cas: u64, now: u32) {
        self.expire(now);
        let serial = self.next_serial();
        let stone = match self.by_key.get(key) {
            Some(old) if old.cas >= cas => return,
            _ => Stone {
                cas,
                at: now,
                serial,
            },
        };
        self.by_key.insert(key.to_vec(), stone);
        self.order.push_back((key.to_vec(), serial));
        while self.by_key.len() > self.max {
            self.pop_oldest();
        }
        if self.order.len() > 2 * self.max {
            self.compact();
        }
    }

    /// The CAS unique of `key`'s removal, while it is remembered.
    pub fn cas_of(&mut self, key: &[u8], now: u32) -> Option<u64> {
        self.expire(now);
        self.by_key.get(key).map(|s| s.cas)
    }

    /// Forgets `key`'s removal: an item newer than it is stored.
    pub fn forget(&mut self, key: &[u8]) {
        self.by_key.remove(key);
    }

    /// Every removal remembered at `now`, as (key, CAS unique).
    pub fn live(&mut self, now: u32) -> impl Iterator<Item = (&[u8], u64)> {
        self.expire(now);
        self.by_key.iter().map(|(k, s)| (k.as_slice(), s.cas))
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Forgets everything (`flush_all`).
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.order.clear();
    }

    fn next_serial(&self) -> u64 {
        self.order.back().map_or(0, |(_, s)| s + 1)
    }

    /// Drops the removals older than `keep_secs`.
    fn expire(&mut self, now: u32) {
        while let Some((key, serial)) = self.order.front() {
            match self.by_key.get(key.as_slice()) {
                Some(stone) if stone.serial == *serial => {
                    if now.saturating_sub(stone.at) < self.keep_secs {
                        return;
                    }
                    self.by_key.remove(key.as_slice());
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    fn pop_oldest(&mut self) {
        while let Some((key, serial)) = self.order.pop_front() {
            if self.by_key.get(&key).is_some_and(|s| s.serial == serial) {
                self.by_key.remove(&key);
                return;
            }
        }
    }

    fn compact(&mut self) {
        let by_key = &self.by_key;
        self.order
            .retain(|(key, serial)| by_key.get(key).is_some_and(|s| s.serial == *serial));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_keeps_the_larger_unique() {
        let mut t = Tombstones::new(60, 10);
        t.note(b"k", 10, 0);
        t.note(b"k", 5, 1);
        assert_eq!(t.cas_of(b"k", 2), Some(10));
        t.note(b"k", 12, 3);
        assert_eq!(t.cas_of(b"k", 3), Some(12));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn removals_are_forgotten_after_the_keep_time() {
        let mut t = Tombstones::new(60, 10);
        t.note(b"a", 1, 0);
        t.note(b"b", 2, 30);
        assert_eq!(t.cas_of(b"a", 59), Some(1));
        assert_eq!(t.cas_of(b"a", 60), None);
        assert_eq!(t.cas_of(b"b", 60), Some(2));
        assert_eq!(t.live(60).collect::<Vec<_>>(), vec![(&b"b"[..], 2)]);
        assert_eq!(t.cas_of(b"b", 90), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_key_removed_again_lives_from_its_last_removal() {
        let mut t = Tombstones::new(60, 10);
        t.note(b"a", 1, 0);
        t.note(b"a", 5, 50);
        assert_eq!(t.cas_of(b"a", 100), Some(5));
        assert_eq!(t.cas_of(b"a", 110), None);
    }

    #[test]
    fn the_oldest_go_first_past_the_bound() {
        let mut t = Tombstones::new(1000, 3);
        for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            t.note(*key, i as u64 + 1, i as u32);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.cas_of(b"a", 10), None);
        assert_eq!(t.cas_of(b"d", 10), Some(4));
        // Re-removing one key many times keeps the queue bounded.
        for cas in 10..100 {
            t.note(b"b", cas, 10);
        }
        assert!(t.order.len() <= 6, "{}", t.order.len());
        assert_eq!(t.cas_of(b"b", 10), Some(99));
        assert_eq!(t.cas_of(b"c", 10), Some(3));
    }

    #[test]
    fn a_forgotten_key_is_gone() {
        let mut t = Tombstones::new(60, 10);
        t.note(b"a", 1, 0);
        t.forget(b"a");
        assert_eq!(t.cas_of(b"a", 0), None);
        t.note(b"a", 2, 1);
        assert_eq!(t.cas_of(b"a", 1), Some(2));
        t.clear();
        assert!(t.is_empty());
    }
}

//! The key index: a fixed array of buckets, chained through the items (pure).
//!
//! Like memcached's `h_next`, each item header carries the address of the next
//! item in its bucket, so the index costs one `u32` per bucket and nothing per
//! item. The bucket count is fixed when the store is made: a power of two giving
//! one bucket per 64 to 128 arena bytes, i.e. **at most 1/16 byte of index per
//! arena byte** (4 bytes per 64). Chains stay short (an arena of 72-byte items
//! holds about one item per bucket) and the table can never overflow.

use super::arena::{Addr, Arena, NIL};
use super::item;

/// Arena bytes per bucket, at least (at most twice this).
pub const ARENA_BYTES_PER_BUCKET_MIN: usize = 64;

pub struct Index {
    buckets: Box<[Addr]>,
    mask: u64,
    hasher: ahash::RandomState,
}

impl Index {
    pub fn for_arena(arena_bytes: usize) -> Index {
        let wanted = (arena_bytes / ARENA_BYTES_PER_BUCKET_MIN).max(1024);
        // The largest power of two not above `wanted`.
        let count = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
        Index {
            buckets: vec![NIL; count].into_boxed_slice(),
            mask: count as u64 - 1,
            // Fixed seeds: the store is pure and replays the same way every time.
            hasher: ahash::RandomState::with_seeds(
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89,
            ),
        }
    }

    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Addr>()
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Asks the CPU to fetch the bucket of `hash` into cache (a hint only).
    pub fn prefetch_bucket(&self, hash: u64) {
        prefetch(&self.buckets[self.bucket(hash)] as *const Addr as *const u8);
    }

    /// The first item of the bucket of `hash` (NIL: none), to prefetch.
    pub fn head(&self, hash: u64) -> Addr {
        self.buckets[self.bucket(hash)]
    }

    fn bucket(&self, hash: u64) -> usize {
        (hash & self.mask) as usize
    }

    /// The linked item with this key, and the item before it in the chain (NIL: none).
    pub fn find(&self, arena: &Arena, key: &[u8], hash: u64) -> Option<(Addr, Addr)> {
        let mut prev = NIL;
        let mut at = self.buckets[self.bucket(hash)];
        while at != NIL {
            let it = arena.item(at);
            if item::key(it) == key {
                return Some((prev, at));
            }
            prev = at;
            at = item::next(it);
        }
        None
    }

    /// The item before `addr` in its chain (NIL: `addr` is first). `addr` must be linked.
    pub fn prev_of(&self, arena: &Arena, addr: Addr, hash: u64) -> Addr {
        let mut prev = NIL;
        let mut at = self.buckets[self.bucket(hash)];
        while at != addr {
            assert_ne!(at, NIL, "a linked item is missing from its bucket");
            prev = at;
            at = item::next(arena.item(at));
        }
        prev
    }

    /// Puts `addr` first in its bucket.
    pub fn link(&mut self, arena: &mut Arena, addr: Addr, hash: u64) {
        let bucket = self.bucket(hash);
        item::set_next(arena.item_mut(addr), self.buckets[bucket]);
        self.buckets[bucket] = addr;
    }

    /// Takes `addr` out of its chain; `prev` is what [`Index::find`] or
    /// [`Index::prev_of`] returned for it.
    pub fn unlink(&mut self, arena: &mut Arena, prev: Addr, addr: Addr, hash: u64) {
        let next = item::next(arena.item(addr));
        self.repoint(arena, prev, next, hash);
    }

    /// Makes whatever points at the item after `prev` point at `to` instead.
    pub fn repoint(&mut self, arena: &mut Arena, prev: Addr, to: Addr, hash: u64) {
        if prev == NIL {
            let bucket = self.bucket(hash);
            self.buckets[bucket] = to;
        } else {
            item::set_next(arena.item_mut(prev), to);
        }
    }
}

/// A read prefetch of the cache line at `at`: no effect on what any load returns.
pub fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it does not fault or read memory visibly,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(at as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_costs_at_most_one_sixteenth_of_the_arena() {
        for arena_bytes in [1 << 20, 3 << 20, 32 << 20, 100 << 20] {
            let index = Index::for_arena(arena_bytes);
            assert!(index.bytes() * 16 <= arena_bytes, "{arena_bytes}");
            assert!(index.bytes() * 32 > arena_bytes, "{arena_bytes}");
        }
    }
}

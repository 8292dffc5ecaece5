//! Making room: taking free segments and reclaiming the oldest one (pure).
//!
//! Policy (see the module doc of `storage`): FIFO over segments with a second
//! chance. Reclaiming the oldest segment walks its items in order; dead items are
//! skipped, expired and flushed ones are unlinked (`reclaimed`), accessed live
//! items are compacted to the front of the segment (their bit cleared) up to half
//! a segment (less if the item being stored needs more than half), and the other
//! live items are evicted (`evictions`). The segment then becomes the head and new
//! items fill what was freed, so one reclaim always makes room. A segment that is
//! mostly dead (its live items and the new one fit in half of it) is compacted
//! without evicting anything: with overwrites and deletes, memcached reuses dead
//! chunks before it evicts, and so does this. Under `-M` every live item is kept
//! and nothing is evicted.
//!
//! While someone runs `watch evictions`, each evicted item is also noted
//! ([`EvictionNotes`]) for the engine to turn into log lines; otherwise an
//! eviction costs one test of a flag more and allocates nothing.

use super::arena::Addr;
use super::item::{self, Header, BIT_ACCESSED, BIT_FETCHED, BIT_LINKED};
use super::{Store, WhenFull};
use crate::limits::EVICTION_NOTES_MAX;

/// One evicted item, as `watch evictions` reports it (memcached's
/// `logentry_eviction`), measured when it was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// It had been read since it was stored (`fetch=yes`).
    pub fetched: bool,
    /// Seconds it had left to live; `None`: it never expired (`ttl=-1`).
    pub ttl_secs: Option<u32>,
    /// Seconds since it was last accessed (`la=`).
    pub idle_secs: u32,
    pub value_len: u32,
}

/// The evictions noted since the engine last took them, while some watcher
/// wants them (see [`Store::note_evictions`]).
#[derive(Debug, Default)]
pub(super) struct EvictionNotes {
    on: bool,
    /// The evicted keys, one after another.
    keys: Vec<u8>,
    /// Each note and where its key ends in `keys`.
    items: Vec<(Evicted, u32)>,
    /// Evictions not noted since the last take: past [`EVICTION_NOTES_MAX`].
    dropped: u64,
}

impl EvictionNotes {
    fn note(&mut self, key: &[u8], h: &Header, now: u32) {
        if self.items.len() >= EVICTION_NOTES_MAX {
            self.dropped += 1;
            return;
        }
        self.keys.extend_from_slice(key);
        let evicted = Evicted {
            fetched: h.bits & BIT_FETCHED != 0,
            ttl_secs: (h.exptime != 0).then(|| h.exptime.saturating_sub(now)),
            idle_secs: now.saturating_sub(h.atime),
            value_len: h.value_len,
        };
        self.items.push((evicted, self.keys.len() as u32));
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.items.clear();
        self.dropped = 0;
    }
}

impl Store {
    /// Starts or stops noting each eviction for `watch evictions`; stopping
    /// forgets the notes not yet taken.
    #[inline]
    pub fn note_evictions(&mut self, on: bool) {
        if self.evicted.on != on {
            self.evicted.on = on;
            self.evicted.clear();
        }
    }

    /// Whether evictions were noted (or dropped) since they were last taken.
    #[inline]
    pub fn has_evicted(&self) -> bool {
        !self.evicted.items.is_empty() || self.evicted.dropped > 0
    }

    /// Hands each noted eviction, oldest first, to `each`, forgets them, and
    /// returns how many were not noted for want of room.
    pub fn take_evicted(&mut self, mut each: impl FnMut(&[u8], Evicted)) -> u64 {
        let mut start = 0;
        for &(evicted, end) in &self.evicted.items {
            each(&self.evicted.keys[start..end as usize], evicted);
            start = end as usize;
        }
        let dropped = self.evicted.dropped;
        self.evicted.clear();
        dropped
    }
}

/// What a reclaim may do with live items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Keep accessed items up to this many bytes; evict the rest.
    AccessedUpTo(usize),
    /// Keep every live item (`-M`).
    AllLive,
}

impl Store {
    /// Finds `bytes` of room in the head segment, reclaiming as needed; `None`
    /// when none can be made (only under `-M`, or when the arena is too small).
    pub(super) fn alloc(&mut self, bytes: usize, now: u32) -> Option<Addr> {
        assert!(bytes <= self.arena.segment_bytes());
        if let Some(addr) = self.arena.bump(bytes) {
            return Some(addr);
        }
        let refuse = self.config.when_full == WhenFull::Refuse;
        if refuse {
            if let Some((at, unlinked, least)) = self.refused {
                if at == now && unlinked == self.unlinked_total && bytes >= least {
                    return None;
                }
            }
        }
        // Each round takes, retires or reclaims one segment. Evicting, the first
        // reclaim makes room; refusing, one pass compacts every segment once.
        let rounds = self.arena.segment_count() * if refuse { 1 } else { 2 } + 2;
        for _ in 0..rounds {
            if self.arena.fifo.len() > self.arena.usable {
                // The memory limit was lowered: retire the oldest segment entirely.
                let segment = self.arena.fifo.pop_front().expect("fifo is not empty");
                self.reclaim(segment, Keep::AccessedUpTo(0), now);
                self.arena.free.push(segment);
            } else if self.arena.fifo.len() < self.arena.usable && !self.arena.free.is_empty() {
                let segment = self.arena.free.pop().expect("free is not empty");
                self.arena.meta[segment as usize] = Default::default();
                self.arena.fifo.push_back(segment);
            } else {
                let segment = self.arena.fifo.pop_front().expect("fifo is not empty");
                let segment_bytes = self.arena.segment_bytes();
                let live_bytes = self.arena.meta[segment as usize].live_bytes;
                let keep = if refuse || live_bytes + bytes <= segment_bytes / 2 {
                    // Compacting alone makes room: memcached would not evict while
                    // this much of the memory is dead, so neither do we.
                    Keep::AllLive
                } else {
                    Keep::AccessedUpTo((segment_bytes / 2).min(segment_bytes - bytes))
                };
                self.reclaim(segment, keep, now);
                self.arena.fifo.push_back(segment);
            }
            if let Some(addr) = self.arena.bump(bytes) {
                return Some(addr);
            }
        }
        if refuse {
            self.refused = Some((now, self.unlinked_total, bytes));
        }
        None
    }

    /// Walks one segment, unlinking or compacting its items as `keep` says.
    fn reclaim(&mut self, segment: u32, keep: Keep, now: u32) {
        let end = self.arena.meta[segment as usize].write_bytes;
        let mut read = 0;
        let mut write = 0;
        let mut kept_bytes = 0;
        while read < end {
            let addr = self.arena.addr(segment, read);
            let it = self.arena.item(addr);
            let h = Header::read(it);
            let bytes = h.item_bytes();
            if h.bits & BIT_LINKED != 0 {
                let hash = self.index.hash(item::key(it));
                let keeps = match keep {
                    Keep::AllLive => true,
                    Keep::AccessedUpTo(limit) => {
                        h.bits & BIT_ACCESSED != 0 && kept_bytes + bytes <= limit
                    }
                };
                if self.dead_why(&h, now).is_some() {
                    let prev = self.index.prev_of(&self.arena, addr, hash);
                    self.unlink_at(prev, addr, hash);
                    self.stats.reclaimed += 1;
                    if h.bits & BIT_FETCHED == 0 {
                        self.stats.expired_unfetched += 1;
                    }
                } else if keeps {
                    let to = self.arena.addr(segment, write);
                    if to != addr {
                        // Repoint the index first: the copy may overwrite the old header.
                        let prev = self.index.prev_of(&self.arena, addr, hash);
                        self.index.repoint(&mut self.arena, prev, to, hash);
                        self.arena
                            .segment_mut(segment)
                            .copy_within(read..read + bytes, write);
                    }
                    let it = self.arena.item_mut(to);
                    item::set_bits(it, h.bits & !BIT_ACCESSED);
                    write += bytes;
                    kept_bytes += bytes;
                } else {
                    if self.evicted.on {
                        self.evicted.note(item::key(it), &h, now);
                    }
                    let prev = self.index.prev_of(&self.arena, addr, hash);
                    self.unlink_at(prev, addr, hash);
                    self.stats.evictions += 1;
                    if h.exptime != 0 {
                        self.stats.evicted_nonzero += 1;
                    }
                    self.stats.evicted_at = now;
                    self.stats.evicted_time_secs = now.saturating_sub(h.atime);
                    if h.bits & BIT_FETCHED == 0 {
                        self.stats.evicted_unfetched += 1;
                    }
                }
            }
            read += bytes;
        }
        let meta = &mut self.arena.meta[segment as usize];
        debug_assert_eq!(meta.live_bytes, kept_bytes);
        meta.write_bytes = write;
    }
}

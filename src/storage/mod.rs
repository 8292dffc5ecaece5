//! One shard's store: items, their index, TTL and eviction (pure, single owner).
//!
//! A `Store` is owned by exactly one shard and takes `&mut self`; nothing in it
//! is shared between threads. Time comes in as an argument (`now`: seconds since
//! the process started, memcached's `current_time`), so the store never reads a clock.
//!
//! # Memory
//!
//! This shard's share of `-m` is allocated when the store is made, as fixed-size
//! segments (1 MiB, or the next power of two that holds the largest item `-I`
//! allows; at least one segment even if the share is smaller). Items live in the
//! segments: a 30-byte header, the key and the value, rounded up to 8 bytes, so a
//! 10-byte key with a 32-byte value takes 72 bytes where memcached 1.6 takes a
//! 120-byte chunk. The only other memory is a fixed index of one `u32` bucket per
//! 64 to 128 arena bytes (**at most 1/16 byte of index per arena byte**, 6.25%),
//! chained through the item headers, plus a few words per segment. Nothing grows
//! with the number of items.
//!
//! # Eviction
//!
//! Segments are filled in order and reclaimed oldest first, with a second chance:
//! a get or touch sets the item's accessed bit; reclaiming the oldest segment drops
//! dead, expired and flushed items, keeps live accessed items (clearing the bit) by
//! compacting them to the front of the segment, up to half a segment, and evicts
//! the rest; the segment then becomes the newest. A segment at least half dead is
//! compacted without evicting (memcached reuses freed chunks before it evicts). This is CLOCK over segments:
//! like memcached's segmented LRU, an item read since it was last looked at
//! survives a pass, and one-hit items (a scan) leave first; unlike an LRU it costs
//! no list links per item (that is most of memcached's 56-byte header) and no work
//! on a hit but setting one bit. The half-segment bound makes every reclaim free
//! real space. With [`WhenFull::Refuse`] (`-M`) a reclaim keeps every live item,
//! and a store that finds no dead space answers `OutOfMemory`.

mod arena;
pub mod arith;
mod eviction;
mod index;
mod item;
mod meta;
pub mod ttl;

#[cfg(test)]
mod tests;

use crate::limits::{KEY_LEN_MAX, MEMCACHED_ITEM_OVERHEAD_BYTES};
use crate::protocol::text::{safe_strtoull, ArithOp, StoreMode};

use arena::{Addr, Arena, NIL, SEGMENT_BYTES_DEFAULT};
use index::Index;
use item::{
    Header, BIT_ACCESSED, BIT_FETCHED, BIT_KEY_BINARY, BIT_LINKED, BIT_STALE, BIT_TOKEN_SENT,
};

pub use eviction::Evicted;
pub use item::{item_bytes, HEADER_BYTES};
pub use meta::{MetaView, Slot};

/// What to do when an item does not fit in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Evict older items to make room (memcached's default).
    Evict,
    /// Answer `SERVER_ERROR out of memory storing object` (`-M`).
    Refuse,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// This shard's share of `-m`.
    pub memory_limit_bytes: usize,
    /// `-I`.
    pub item_size_max_bytes: usize,
    pub when_full: WhenFull,
    /// Low bits OR-ed into every CAS unique this store hands out, so that CAS
    /// values are unique across shards (and later across nodes).
    pub cas_suffix: u64,
    /// How many low bits of a CAS unique [`StoreConfig::cas_suffix`] occupies.
    pub cas_suffix_bits: u32,
    /// In a cluster: CAS uniques never fall behind the wall clock (see
    /// [`clock_cas_floor`]), so that uniques handed out by different nodes
    /// order writes of one key as time does, not as busy each node was.
    pub clock_cas: bool,
}

/// Milliseconds since 2026-01-01 UTC: where [`clock_cas_floor`] counts from.
const CLOCK_CAS_EPOCH_UNIX_MS: u64 = 1_767_225_600_000;

/// How many uniques a store may hand out per millisecond before its counter
/// runs ahead of the clock (as a power of two).
const CLOCK_CAS_PER_MS_BITS: u32 = 8;

/// The smallest counter a cluster store hands out now: the milliseconds
/// since `CLOCK_CAS_EPOCH_UNIX_MS` times 2^`CLOCK_CAS_PER_MS_BITS`, when
/// that still fits beside `suffix_bits` (until about 2043 with a cluster's 16);
/// 0 (the counter alone) past that.
pub fn clock_cas_floor(suffix_bits: u32) -> u64 {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let floor = unix_ms.saturating_sub(CLOCK_CAS_EPOCH_UNIX_MS) << CLOCK_CAS_PER_MS_BITS;
    if floor >> (64 - suffix_bits - 1) == 0 {
        floor
    } else {
        0
    }
}

/// A live item as the store holds it, borrowed until the next `&mut` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemView<'s> {
    pub key: &'s [u8],
    pub value: &'s [u8],
    pub flags: u32,
    pub cas: u64,
    /// Relative expiry time (0: never), in the store's clock.
    pub exptime: u32,
    /// Relative time of the last access.
    pub atime: u32,
    /// Read at least once since it was stored.
    pub fetched: bool,
}

/// What the meta protocol adds to a storage command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// The new item's CAS unique (`E`); a fresh one when `None`.
    pub cas: Option<u64>,
    /// Under [`StoreMode::Cas`], a CAS older than the item's still stores, as a
    /// stale value keeping the item's TTL and recache token (`ms ... C<cas> I`).
    pub stale_if_older: bool,
    /// Append/prepend only if the item's CAS is this one (0: no check), as
    /// memcached checks `ms ... MA C<cas>`.
    pub append_cas: Option<u64>,
    /// The key was sent in base64.
    pub key_binary: bool,
}

/// The header fields of an item about to be written.
#[derive(Clone, Copy, Debug)]
struct NewItem {
    flags: u32,
    exptime: u32,
    cas: Option<u64>,
    bits: u8,
}

/// How a storage command ended; each variant is one memcached reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// `STORED`, with the item's new CAS unique.
    Stored(u64),
    /// `NOT_STORED`: add on an existing key, replace/append/prepend on a missing one.
    NotStored,
    /// `EXISTS`: cas with a stale unique.
    Exists,
    /// `NOT_FOUND`: cas on a missing key.
    NotFound,
    /// `SERVER_ERROR object too large for cache`.
    TooLarge,
    /// `SERVER_ERROR out of memory storing object`.
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value.
    Value(u64),
    NotFound,
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`.
    NonNumeric,
    OutOfMemory,
}

/// Why a lookup missed, for memcached's `get_expired` and `get_flushed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    Absent,
    Expired,
    Flushed,
}

/// The store's own figures, under memcached's `stats` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes of the items held (keys, values and headers).
    pub bytes: u64,
    pub limit_maxbytes: u64,
    pub evictions: u64,
    /// Evicted items that had an expiry time (memcached's `evicted_nonzero`).
    pub evicted_nonzero: u64,
    /// When the latest eviction happened (relative seconds; 0: none yet).
    pub evicted_at: u32,
    /// Seconds between that evicted item's last access and its eviction
    /// (memcached's `evicted_time`).
    pub evicted_time_secs: u32,
    pub evicted_unfetched: u64,
    pub expired_unfetched: u64,
    pub reclaimed: u64,
}

impl StoreStats {
    pub fn add(&mut self, other: &StoreStats) {
        self.curr_items += other.curr_items;
        self.total_items += other.total_items;
        self.bytes += other.bytes;
        self.limit_maxbytes += other.limit_maxbytes;
        self.evictions += other.evictions;
        self.evicted_nonzero += other.evicted_nonzero;
        if other.evicted_at > self.evicted_at {
            self.evicted_at = other.evicted_at;
            self.evicted_time_secs = other.evicted_time_secs;
        }
        self.evicted_unfetched += other.evicted_unfetched;
        self.expired_unfetched += other.expired_unfetched;
        self.reclaimed += other.reclaimed;
    }
}

/// One shard's items. Not `Sync`; one owner: every method takes `&mut self` or `&self`.
pub struct Store {
    config: StoreConfig,
    arena: Arena,
    index: Index,
    /// The counter part of the next CAS unique.
    next_cas: u64,
    /// memcached's `settings.oldest_live` (0: no flush pending or done).
    oldest_live: u32,
    /// memcached's `settings.oldest_cas`: items with a lower CAS were flushed.
    oldest_cas: u64,
    stats: StoreStats,
    /// Old values kept while append/prepend makes room for the new item.
    scratch: Vec<u8>,
    /// Under `-M`: a store of at least `.2` bytes found no room at time `.0`, when
    /// `.1` items had been unlinked; until one of those changes it cannot succeed.
    refused: Option<(u32, u64, usize)>,
    unlinked_total: u64,
    /// Evictions noted for `watch evictions`, while it is watched.
    evicted: eviction::EvictionNotes,
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let segment_bytes = segment_bytes_for(config.item_size_max_bytes);
        let segment_count = (config.memory_limit_bytes / segment_bytes).max(1);
        let arena = Arena::new(segment_bytes, segment_count);
        let index = Index::for_arena(arena.allocated_bytes());
        Store {
            config,
            arena,
            index,
            next_cas: 1,
            oldest_live: 0,
            oldest_cas: 0,
            stats: StoreStats::default(),
            scratch: Vec::new(),
            refused: None,
            unlinked_total: 0,
            evicted: Default::default(),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Bytes allocated for items (the arena); constant unless `cache_memlimit`
    /// raises the limit past it.
    pub fn arena_bytes(&self) -> usize {
        self.arena.allocated_bytes()
    }

    /// Bytes of the fixed index.
    pub fn index_bytes(&self) -> usize {
        self.index.bytes()
    }

    /// Bytes of one segment: no item larger than this can be stored.
    pub fn segment_bytes(&self) -> usize {
        self.arena.segment_bytes()
    }

    /// Looks a key up and marks it accessed. `now` is the store's relative time.
    pub fn get(&mut self, key: &[u8], now: u32) -> Result<ItemView<'_>, Miss> {
        let hash = self.index.hash(key);
        let (_, addr) = self.find_live(key, hash, now)?;
        let it = self.arena.item_mut(addr);
        item::set_bits(it, item::bits(it) | BIT_ACCESSED | BIT_FETCHED);
        item::set_atime(it, now);
        Ok(self.view(addr))
    }

    /// Looks a key up without marking it accessed (a CAS check before a binary
    /// delete, incr/decr or append: memcached reads the item with `DONT_UPDATE`).
    pub fn peek(&mut self, key: &[u8], now: u32) -> Result<ItemView<'_>, Miss> {
        let hash = self.index.hash(key);
        let (_, addr) = self.find_live(key, hash, now)?;
        Ok(self.view(addr))
    }

    /// `touch`/`gat`: sets a new relative expiry and returns the item. The CAS
    /// unique stays (as in memcached).
    pub fn touch(&mut self, key: &[u8], exptime: u32, now: u32) -> Result<ItemView<'_>, Miss> {
        let hash = self.index.hash(key);
        let (_, addr) = self.find_live(key, hash, now)?;
        let it = self.arena.item_mut(addr);
        item::set_bits(it, item::bits(it) | BIT_ACCESSED | BIT_FETCHED);
        item::set_atime(it, now);
        item::set_exptime(it, exptime);
        Ok(self.view(addr))
    }

    /// set/add/replace/append/prepend/cas. `exptime` is relative (0: never).
    ///
    /// `key` must be at most [`KEY_LEN_MAX`] bytes (the parser checks it).
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u32,
        value: &[u8],
        now: u32,
    ) -> StoreOutcome {
        self.store_with(
            mode,
            key,
            flags,
            exptime,
            value,
            now,
            StoreOptions::default(),
        )
    }

    /// [`Store::store`] with the meta protocol's options: an explicit CAS, a stale
    /// store under `cas` mode, a CAS check for append/prepend, a binary key.
    #[allow(clippy::too_many_arguments)]
    pub fn store_with(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u32,
        value: &[u8],
        now: u32,
        options: StoreOptions,
    ) -> StoreOutcome {
        assert!(key.len() <= KEY_LEN_MAX);
        let hash = self.index.hash(key);
        let old = self.find_live(key, hash, now).ok().map(|(_, addr)| addr);
        match (mode, old) {
            (StoreMode::Add, Some(_)) => return StoreOutcome::NotStored,
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return StoreOutcome::NotStored
            }
            (StoreMode::Cas(_), None) => return StoreOutcome::NotFound,
            _ => {}
        }
        let mut bits = if options.key_binary {
            BIT_KEY_BINARY
        } else {
            0
        };
        let mut exptime = exptime;
        if let (StoreMode::Cas(unique), Some(addr)) = (mode, old) {
            let old_header = Header::read(self.arena.item(addr));
            // memcached 1.6.18 takes a CAS of 0 for none given: it never matches
            // and is never older (`ms ... I C0` on an item answers EX).
            if unique == 0 || old_header.cas != unique {
                // memcached's set-stale: an older CAS may still store, as a stale
                // value that keeps the item's TTL and recache token.
                if !(options.stale_if_older && unique != 0 && unique < old_header.cas) {
                    return StoreOutcome::Exists;
                }
                exptime = old_header.exptime;
                bits |= BIT_STALE | (old_header.bits & BIT_TOKEN_SENT);
            }
        }
        if let (StoreMode::Append | StoreMode::Prepend, Some(addr), Some(unique)) =
            (mode, old, options.append_cas)
        {
            if unique != 0 && Header::read(self.arena.item(addr)).cas != unique {
                return StoreOutcome::Exists;
            }
        }

        // Append and prepend keep the old flags and expiry; the old value is copied
        // aside because making room may move or evict the old item.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let (flags, exptime) = match (mode, old) {
            (StoreMode::Append | StoreMode::Prepend, Some(addr)) => {
                let it = self.arena.item(addr);
                let h = Header::read(it);
                scratch.extend_from_slice(item::value(it));
                (h.flags, h.exptime)
            }
            _ => (flags, exptime),
        };
        let value_len = value.len() + scratch.len();
        let outcome = self.put(
            key,
            hash,
            NewItem {
                flags,
                exptime,
                cas: options.cas,
                bits,
            },
            value_len,
            now,
            |dst| match mode {
                StoreMode::Append => {
                    dst[..scratch.len()].copy_from_slice(&scratch);
                    dst[scratch.len()..].copy_from_slice(value);
                }
                StoreMode::Prepend => {
                    dst[..value.len()].copy_from_slice(value);
                    dst[value.len()..].copy_from_slice(&scratch);
                }
                _ => dst.copy_from_slice(value),
            },
        );
        self.scratch = scratch;
        if matches!(mode, StoreMode::Set)
            && matches!(outcome, StoreOutcome::TooLarge | StoreOutcome::OutOfMemory)
        {
            // memcached: a failed set must not leave the stale value readable.
            self.unlink(key);
        }
        outcome
    }

    /// Allocates, writes and links a new item for `key`, replacing any old one.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        key: &[u8],
        hash: u64,
        new: NewItem,
        value_len: usize,
        now: u32,
        fill_value: impl FnOnce(&mut [u8]),
    ) -> StoreOutcome {
        let bytes = item_bytes(key.len(), value_len);
        if bytes > self.arena.segment_bytes() || value_len > u32::MAX as usize {
            return StoreOutcome::TooLarge;
        }
        let Some(addr) = self.alloc(bytes, now) else {
            return StoreOutcome::OutOfMemory;
        };
        // Whatever is linked under the key now (it may have moved while making room).
        if let Some((prev, old)) = self.index.find(&self.arena, key, hash) {
            self.unlink_at(prev, old, hash);
        }
        let cas = match new.cas {
            Some(cas) => cas,
            None => self.take_cas(),
        };
        let it = self.arena.item_mut(addr);
        Header {
            cas,
            exptime: new.exptime,
            atime: now,
            flags: new.flags,
            value_len: value_len as u32,
            next: NIL,
            key_len: key.len() as u8,
            bits: new.bits,
        }
        .write(it);
        it[HEADER_BYTES..HEADER_BYTES + key.len()].copy_from_slice(key);
        fill_value(item::value_mut(it));
        self.link(addr, hash);
        self.stats.total_items += 1;
        StoreOutcome::Stored(cas)
    }

    pub fn delete(&mut self, key: &[u8], now: u32) -> DeleteOutcome {
        let hash = self.index.hash(key);
        match self.find_live(key, hash, now) {
            Ok((prev, addr)) => {
                self.unlink_at(prev, addr, hash);
                DeleteOutcome::Deleted
            }
            Err(_) => DeleteOutcome::NotFound,
        }
    }

    /// incr/decr as memcached does them: 64-bit unsigned, incr wraps, decr stops at 0.
    ///
    /// A result no longer than the old value is written in place, padded with
    /// spaces to the old length (`decr` of `10` makes `9 `); a longer one makes a
    /// new item with the old flags and expiry. Either way the CAS unique is new.
    pub fn arith(&mut self, op: ArithOp, key: &[u8], delta: u64, now: u32) -> ArithOutcome {
        let hash = self.index.hash(key);
        let Ok((_, addr)) = self.find_live(key, hash, now) else {
            return ArithOutcome::NotFound;
        };
        let it = self.arena.item(addr);
        let Some(old) = safe_strtoull(item::value(it)) else {
            return ArithOutcome::NonNumeric;
        };
        let new = match op {
            ArithOp::Incr => old.wrapping_add(delta),
            ArithOp::Decr => old.saturating_sub(delta),
        };
        let mut buf = [0u8; 20];
        let digits = arith::format_u64(new, &mut buf);
        let h = Header::read(it);
        if digits.len() <= h.value_len as usize {
            let cas = self.take_cas();
            let it = self.arena.item_mut(addr);
            let value = item::value_mut(it);
            value[..digits.len()].copy_from_slice(digits);
            value[digits.len()..].fill(b' ');
            item::set_cas(it, cas);
            item::set_atime(it, now);
            return ArithOutcome::Value(new);
        }
        let digits_len = digits.len();
        let new_item = NewItem {
            flags: h.flags,
            exptime: h.exptime,
            cas: None,
            bits: h.bits & BIT_KEY_BINARY,
        };
        match self.put(key, hash, new_item, digits_len, now, |dst| {
            dst.copy_from_slice(&buf[20 - digits_len..])
        }) {
            StoreOutcome::Stored(_) => ArithOutcome::Value(new),
            _ => ArithOutcome::OutOfMemory,
        }
    }

    /// Removes a key whatever its state (a failed `set` does this in memcached).
    pub fn unlink(&mut self, key: &[u8]) {
        let hash = self.index.hash(key);
        if let Some((prev, addr)) = self.index.find(&self.arena, key, hash) {
            self.unlink_at(prev, addr, hash);
        }
    }

    /// `flush_all`: items last updated at or before `oldest_live` are invalid from
    /// `oldest_live` on (memcached's `settings.oldest_live`).
    ///
    /// `oldest_live` is what memcached calls `new_oldest`: `now` for `flush_all`,
    /// `realtime(delay)` for `flush_all <delay>`. As memcached does (with CAS on),
    /// the store keeps `oldest_live - 1` and, when that is not in the future, the
    /// next CAS unique: items stored before the flush are gone, items stored in the
    /// same second after it are not.
    pub fn flush(&mut self, oldest_live: u32, now: u32) {
        self.oldest_live = oldest_live.saturating_sub(1);
        if self.oldest_live <= now {
            self.oldest_cas = self.peek_cas();
        }
    }

    /// `cache_memlimit`: a new share of memory for this shard. Lowering it leaves
    /// the segments allocated but stops using the excess (their items are evicted
    /// as the store needs room); raising it past the arena allocates segments. The
    /// index keeps its size.
    pub fn set_memory_limit(&mut self, memory_limit_bytes: usize) {
        self.config.memory_limit_bytes = memory_limit_bytes;
        let segment_bytes = self.arena.segment_bytes();
        let max_segments = arena::ARENA_BYTES_MAX / segment_bytes;
        let usable = (memory_limit_bytes / segment_bytes).clamp(1, max_segments);
        if usable > self.arena.segment_count() {
            self.arena.grow_to(usable);
        }
        self.arena.usable = usable;
        self.refused = None;
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            limit_maxbytes: self.config.memory_limit_bytes as u64,
            ..self.stats
        }
    }

    /// `stats reset`: the counters, not the gauges (`curr_items`, `bytes`).
    pub fn reset_stats(&mut self) {
        self.stats = StoreStats {
            curr_items: self.stats.curr_items,
            bytes: self.stats.bytes,
            ..StoreStats::default()
        };
    }

    fn view(&self, addr: Addr) -> ItemView<'_> {
        let it = self.arena.item(addr);
        let h = Header::read(it);
        ItemView {
            key: item::key(it),
            value: item::value(it),
            flags: h.flags,
            cas: h.cas,
            exptime: h.exptime,
            atime: h.atime,
            fetched: h.bits & BIT_FETCHED != 0,
        }
    }

    /// The relative time at which the least recently accessed item of the
    /// oldest segment holding live items (the next to be reclaimed) was last
    /// accessed; `None` when the store holds no live item. Walks one segment.
    pub fn oldest_access(&self, now: u32) -> Option<u32> {
        for &segment in &self.arena.fifo {
            let mut oldest: Option<u32> = None;
            self.visit_segment(segment as usize, now, |item| {
                oldest = Some(oldest.map_or(item.atime, |o| o.min(item.atime)));
            });
            if oldest.is_some() {
                return oldest;
            }
        }
        None
    }

    /// Warms the cache for a lookup of `key` about to come, first stage: fetches
    /// its bucket and returns its hash for [`Store::prefetch_item`]. Called for many
    /// keys before the second stage for any, so that their fetches overlap. A hint only.
    pub fn prefetch_bucket(&self, key: &[u8]) -> u64 {
        let hash = self.index.hash(key);
        self.index.prefetch_bucket(hash);
        hash
    }

    /// Second stage of [`Store::prefetch_bucket`]: fetches the first item of the
    /// bucket of `hash` (reading the bucket, which the first stage fetched).
    pub fn prefetch_item(&self, hash: u64) {
        let head = self.index.head(hash);
        if head != NIL {
            index::prefetch(self.arena.item(head).as_ptr());
        }
    }

    /// Finds a live item; an expired or flushed one is unlinked and reported.
    fn find_live(&mut self, key: &[u8], hash: u64, now: u32) -> Result<(Addr, Addr), Miss> {
        let (prev, addr) = self
            .index
            .find(&self.arena, key, hash)
            .ok_or(Miss::Absent)?;
        match self.dead_why(&Header::read(self.arena.item(addr)), now) {
            None => Ok((prev, addr)),
            Some(why) => {
                self.unlink_at(prev, addr, hash);
                Err(why)
            }
        }
    }

    /// Why an item is no longer valid, if it is not: memcached's `item_is_flushed`
    /// first, then expiry (`exptime != 0 && exptime <= now`).
    fn dead_why(&self, h: &Header, now: u32) -> Option<Miss> {
        // A flush that has happened stays in force through the CAS watermark even
        // when a later `flush_all <delay>` moves `oldest_live` into the future
        // (memcached 1.6.18 forgets it then, and flushed items can come back).
        let flushed_by_cas = self.oldest_cas != 0 && h.cas < self.oldest_cas;
        let flushed_by_time =
            self.oldest_live != 0 && self.oldest_live <= now && h.atime <= self.oldest_live;
        if flushed_by_cas || flushed_by_time {
            return Some(Miss::Flushed);
        }
        if h.exptime != 0 && h.exptime <= now {
            return Some(Miss::Expired);
        }
        None
    }

    fn link(&mut self, addr: Addr, hash: u64) {
        self.index.link(&mut self.arena, addr, hash);
        let it = self.arena.item_mut(addr);
        item::set_bits(it, item::bits(it) | BIT_LINKED);
        let bytes = Header::read(it).item_bytes();
        let (seg, _) = self.arena.locate(addr);
        self.arena.meta[seg].live_bytes += bytes;
        self.stats.curr_items += 1;
        self.stats.bytes += bytes as u64;
    }

    fn unlink_at(&mut self, prev: Addr, addr: Addr, hash: u64) {
        self.index.unlink(&mut self.arena, prev, addr, hash);
        let it = self.arena.item_mut(addr);
        assert!(item::bits(it) & BIT_LINKED != 0);
        item::set_bits(it, item::bits(it) & !BIT_LINKED);
        let bytes = Header::read(it).item_bytes();
        let (seg, _) = self.arena.locate(addr);
        self.arena.meta[seg].live_bytes -= bytes;
        self.stats.curr_items -= 1;
        self.stats.bytes -= bytes as u64;
        self.unlinked_total += 1;
    }

    /// Raises the CAS counter past `cas` (an item another node wrote): CAS
    /// uniques this store hands out afterwards are larger than any it has seen.
    pub fn observe_cas(&mut self, cas: u64) {
        self.next_cas = self.next_cas.max((cas >> self.config.cas_suffix_bits) + 1);
    }

    /// How many segments [`Store::visit_segment`] walks.
    pub fn segment_count(&self) -> usize {
        self.arena.segment_count()
    }

    /// Calls `f` with every live item of segment `segment` (numbered from 0 to
    /// [`Store::segment_count`]), without marking any accessed. Walking every
    /// segment, with writes in between, meets every item that was live
    /// throughout at least once: items move only within their segment.
    pub fn visit_segment(&self, segment: usize, now: u32, mut f: impl FnMut(ItemView<'_>)) {
        if segment >= self.arena.segment_count() {
            return;
        }
        let end = self.arena.meta[segment].write_bytes;
        let mut read = 0;
        while read < end {
            let addr = self.arena.addr(segment as u32, read);
            let h = Header::read(self.arena.item(addr));
            if h.bits & BIT_LINKED != 0 && self.dead_why(&h, now).is_none() {
                f(self.view(addr));
            }
            read += h.item_bytes();
        }
    }

    fn peek_cas(&self) -> u64 {
        (self.next_cas << self.config.cas_suffix_bits) | self.config.cas_suffix
    }

    fn take_cas(&mut self) -> u64 {
        if self.config.clock_cas {
            self.next_cas = self
                .next_cas
                .max(clock_cas_floor(self.config.cas_suffix_bits));
        }
        let cas = self.peek_cas();
        self.next_cas += 1;
        cas
    }
}

/// The segment size for a largest item of `-I` bytes: any item `limits::item_fits`
/// accepts (key + value <= `-I` - 59) takes at most `-I` bytes here (30-byte header).
fn segment_bytes_for(item_size_max_bytes: usize) -> usize {
    let largest_item = item_bytes(
        0,
        item_size_max_bytes.saturating_sub(MEMCACHED_ITEM_OVERHEAD_BYTES + 3),
    );
    largest_item.next_power_of_two().max(SEGMENT_BYTES_DEFAULT)
}

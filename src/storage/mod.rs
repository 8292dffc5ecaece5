//! One shard's store: items, their index, TTL and eviction (pure, single owner).
//!
//! A `Store` is owned by exactly one shard and takes `&mut self`; nothing in it
//! is shared between threads. Time comes in as an argument (`now`: seconds since
//! the process started, memcached's `current_time`), so the store never reads a clock.

pub mod ttl;

use crate::protocol::text::{ArithOp, StoreMode};

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
        self.evicted_unfetched += other.evicted_unfetched;
        self.expired_unfetched += other.expired_unfetched;
        self.reclaimed += other.reclaimed;
    }
}

/// One shard's items. Not `Sync`; one owner.
pub struct Store {
    config: StoreConfig,
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        Store { config }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Looks a key up and marks it accessed. `now` is the store's relative time.
    pub fn get(&mut self, key: &[u8], now: u32) -> Result<ItemView<'_>, Miss> {
        let _ = (key, now);
        Err(Miss::Absent)
    }

    /// `touch`/`gat`: sets a new relative expiry and returns the item.
    pub fn touch(&mut self, key: &[u8], exptime: u32, now: u32) -> Result<ItemView<'_>, Miss> {
        let _ = (key, exptime, now);
        Err(Miss::Absent)
    }

    /// set/add/replace/append/prepend/cas. `exptime` is relative (0: never).
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u32,
        value: &[u8],
        now: u32,
    ) -> StoreOutcome {
        let _ = (mode, key, flags, exptime, value, now);
        StoreOutcome::OutOfMemory
    }

    pub fn delete(&mut self, key: &[u8], now: u32) -> DeleteOutcome {
        let _ = (key, now);
        DeleteOutcome::NotFound
    }

    /// incr/decr as memcached does them: 64-bit unsigned, incr wraps, decr stops at 0.
    pub fn arith(&mut self, op: ArithOp, key: &[u8], delta: u64, now: u32) -> ArithOutcome {
        let _ = (op, key, delta, now);
        ArithOutcome::NotFound
    }

    /// Removes a key whatever its state (a failed `set` does this in memcached).
    pub fn unlink(&mut self, key: &[u8]) {
        let _ = key;
    }

    /// `flush_all`: items last updated at or before `oldest_live` are invalid from
    /// `oldest_live` on (memcached's `settings.oldest_live`).
    pub fn flush(&mut self, oldest_live: u32, now: u32) {
        let _ = (oldest_live, now);
    }

    /// `cache_memlimit`: a new share of memory for this shard.
    pub fn set_memory_limit(&mut self, memory_limit_bytes: usize) {
        self.config.memory_limit_bytes = memory_limit_bytes;
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            limit_maxbytes: self.config.memory_limit_bytes as u64,
            ..StoreStats::default()
        }
    }

    pub fn reset_stats(&mut self) {}
}

//! Counters kept by each shard and summed only when a client asks (pure).
//!
//! Each shard owns one [`ShardStats`]; `stats` collects a copy from every shard
//! and adds them with [`ShardStats::add`]. Names follow memcached's `stats` keys.

use serde::Serialize;

/// Per-shard command and connection counters, under memcached's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    pub curr_connections: u64,
    pub total_connections: u64,
    pub rejected_connections: u64,
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_flush: u64,
    pub cmd_touch: u64,
    /// `me` commands (memcached 1.6.18 counts only those as `cmd_meta`).
    pub cmd_meta: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    /// Stores refused before their data was read because the item exceeds `-I`.
    pub store_too_large: u64,
    /// Stores refused because no room could be made (`-M`, or nothing evictable).
    pub store_no_memory: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests this shard sent to another shard of the node, and received from one.
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    /// Times a connection's receiving stopped because it held the most received,
    /// unread bytes a connection may hold (the socket ring's bound).
    pub receive_pauses: u64,
}

impl ShardStats {
    /// Adds another shard's counters to these.
    pub fn add(&mut self, other: &ShardStats) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += other.$f; )* };
        }
        sum!(
            curr_connections,
            total_connections,
            rejected_connections,
            cmd_get,
            cmd_set,
            cmd_flush,
            cmd_touch,
            cmd_meta,
            get_hits,
            get_misses,
            get_expired,
            get_flushed,
            delete_hits,
            delete_misses,
            incr_hits,
            incr_misses,
            decr_hits,
            decr_misses,
            cas_hits,
            cas_misses,
            cas_badval,
            touch_hits,
            touch_misses,
            store_too_large,
            store_no_memory,
            bytes_read,
            bytes_written,
            forwarded_out,
            forwarded_in,
            receive_pauses
        );
    }

    /// `stats reset`: zeroes the counters but keeps the gauges (current connections).
    pub fn reset(&mut self) {
        *self = ShardStats {
            curr_connections: self.curr_connections,
            ..ShardStats::default()
        };
    }
}

//! What one shard does with one parsed request: store calls and reply bytes (pure).
//!
//! The runtime hands a shard's requests here, in order, with the shard's store,
//! counters and clock; replies are appended to `out`. Requests that concern the
//! whole node (stats, flush_all, version, shutdown...) are answered from a
//! [`NodeView`] the runtime gathers from every shard.

use crate::protocol::text::{GetKind, Request};
use crate::stats::ShardStats;
use crate::storage::ttl::Clock;
use crate::storage::{Store, StoreStats};

/// Everything a shard owns that requests act on. One owner: the shard's executor.
pub struct ShardState {
    pub store: Store,
    pub stats: ShardStats,
}

/// What the connection should do after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading requests.
    Continue,
    /// `quit`: close the connection once earlier replies are written.
    Close,
}

/// Applies one key request (get family, storage, delete, incr/decr, touch, and
/// [`Request::TooLarge`]) to this shard and appends its reply to `out`.
///
/// # Panics
/// On a request that concerns the whole node; the runtime answers those with
/// [`node_request`].
pub fn execute(shard: &mut ShardState, req: &Request, clock: &Clock, out: &mut Vec<u8>) -> Step {
    let _ = (shard, req, clock, out);
    Step::Continue
}

/// Appends the `VALUE` block of one key of a retrieval (nothing on a miss), without
/// the closing `END`: a multi-key get split across shards is put back together from these.
pub fn get_one(
    shard: &mut ShardState,
    kind: GetKind,
    exptime: Option<i64>,
    key: &[u8],
    clock: &Clock,
    out: &mut Vec<u8>,
) {
    let _ = (shard, kind, exptime, key, clock, out);
}

/// Makes this shard's items invalid as `flush_all [delay]` asks.
pub fn flush(shard: &mut ShardState, delay_secs: i64, clock: &Clock) {
    let _ = (shard, delay_secs, clock);
}

/// The settings `stats settings` reports.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub max_bytes: u64,
    pub max_connections: u64,
    pub tcp_port: u16,
    pub listen: String,
    pub threads: u64,
    pub item_size_max: u64,
    pub evictions_on: bool,
    pub shutdown_allowed: bool,
    pub verbosity: u32,
}

/// A node-wide picture for `stats`: counters summed over shards plus process facts.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    pub pid: u32,
    pub uptime_secs: u64,
    pub unix_time_secs: i64,
    pub version: &'static str,
    pub rusage_user_micros: u64,
    pub rusage_system_micros: u64,
    pub threads: u64,
    pub shard: ShardStats,
    pub store: StoreStats,
    pub settings: Settings,
}

/// Appends the reply to `stats <group>` (empty group: general stats); `ERROR`-style
/// replies for unknown groups as memcached sends them.
pub fn write_stats(group: &[u8], view: &NodeView, out: &mut Vec<u8>) {
    let _ = (group, view, out);
}

/// The version string reported by `version` and `stats`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

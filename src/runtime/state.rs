//! One shard's store and counters, kept in a thread local of the shard's
//! executor so that any task on that thread reaches them without a handle.
//!
//! The store is reached only through [`with_state`], a synchronous closure, so no
//! borrow of it can be held across an `.await`: tasks of one executor take turns
//! and the store has one owner, the executor's thread. Beside it, the shell's own
//! measurement of read latency (`stats latency`).
//!
//! Bottom layer: imports nothing of `runtime` but the [`Node`] it is sized from.

use super::Node;
use crate::engine::{self, ShardState};
use crate::stats::Latency;
use crate::storage::{Store, StoreConfig};
use std::cell::RefCell;

thread_local! {
    static STATE: RefCell<Option<ShardState>> = const { RefCell::new(None) };
    /// How long this shard's reads took to answer (`stats latency`). Kept apart
    /// from the store's state: it is the shell's measurement, taken with the clock.
    static LATENCY: RefCell<Latency> = RefCell::new(Latency::default());
}

/// This shard's counted keys, most counted first (none under `--hotkeys 0`).
pub fn hot_keys() -> Vec<crate::hotkeys::HotKey> {
    with_state(|s| s.hot_keys.as_ref().map_or_else(Vec::new, |h| h.top()))
}

/// Records that a read was answered `micros` after its bytes arrived.
pub fn record_latency(micros: u64) {
    LATENCY.with(|l| l.borrow_mut().record(micros));
}

/// This shard's latencies so far.
pub fn latency() -> Latency {
    LATENCY.with(|l| l.borrow().clone())
}

/// `stats reset` on this shard: counters, hot keys and latencies (gauges stay).
pub fn reset_stats() {
    with_state(|s| {
        s.stats.reset();
        s.store.reset_stats();
        if let Some(hot_keys) = &mut s.hot_keys {
            hot_keys.clear();
        }
    });
    LATENCY.with(|l| l.borrow_mut().reset());
}

/// Runs `f` with this shard's store and counters.
///
/// # Panics
/// Outside a shard's executor, or when called from inside `f`.
pub fn with_state<R>(f: impl FnOnce(&mut ShardState) -> R) -> R {
    STATE.with(|cell| {
        let mut state = cell.borrow_mut();
        f(state.as_mut().expect("with_state outside a shard"))
    })
}

/// Gives this executor's thread its store and counters.
pub fn install(id: u32, node: &Node) {
    let config = &node.config;
    let shards = node.shards as u64;
    // CAS uniques carry the shard, and in a cluster the node's id too (ids
    // are never reused; two members collide only if their ids are 256 apart),
    // so no two shards anywhere hand out the same one.
    let (cas_suffix, cas_suffix_bits) = match &node.cluster {
        None => (id as u64, 8),
        Some(c) => ((u64::from(c.me % 256) << 8) | id as u64, 16),
    };
    STATE.with(|cell| {
        *cell.borrow_mut() = Some(ShardState::new(
            Store::new(StoreConfig {
                memory_limit_bytes: config.memory_limit_bytes / node.shards,
                item_size_max_bytes: config.item_size_max_bytes,
                when_full: config.when_full,
                cas_suffix,
                cas_suffix_bits,
                clock_cas: node.cluster.is_some(),
            }),
            config.hot_keys,
        ))
    });
    debug_assert!(shards <= 1 << 8);
}

/// This shard's `lru_crawler metadump` lines: one segment at a time, letting
/// other tasks run between segments, so a large store does not stall the shard.
pub async fn metadump(node: &Node) -> Vec<u8> {
    let mut lines = Vec::new();
    let segments = with_state(|s| s.store.segment_count());
    for segment in 0..segments {
        let clock = node.clock();
        with_state(|s| {
            s.store.visit_segment(segment, clock.rel_secs, |item| {
                engine::write_metadump_line(&item, clock.process_started_unix, &mut lines)
            });
        });
        glommio::yield_if_needed().await;
    }
    lines
}

//! Data movement when an epoch changes placement: the placement before the
//! move, the drop of stale copies of keys moved here, and the release of keys
//! this node lost once their new owners have them. [`release`] asks peers
//! their status over the network; the rest works on this node's stores.

use super::node::{ClusterNode, View};
use super::peer;
use super::routing::ShardCluster;
use crate::cluster::wire;
use crate::engine::ShardState;
use crate::limits::MIGRATION_RELEASE_GRACE_MS;
use crate::runtime::messages::{Answer, Ask};
use crate::runtime::state::with_state;
use crate::storage::ttl::Clock;
use std::sync::atomic::Ordering;

impl ClusterNode {
    /// Takes up what the epoch of `view` moves, from `old`: a step of
    /// [`ClusterNode::install`], before `view` is put in force.
    pub(super) fn take_up_moves(&self, old: &View, view: &mut View) {
        // Data movement: a node given keys it did not own copies them before it
        // reads them (migrating from now on, so the writes it takes meanwhile
        // are not overwritten by the copies); one that lost keys releases them
        // once their new owners have them.
        let moves = crate::cluster::placement::moves(&old.placement, &view.placement, self.me);
        if moves.gains {
            log::info!(
                "epoch {} gives this node keys it did not own: copying them",
                view.epoch()
            );
            let _order = self.recovery_lock.lock().expect("recovery lock");
            self.migrating_from
                .write()
                .expect("migration lock")
                .push(old.placement.clone());
            self.migration_wanted.store(true, Ordering::Release);
            self.migrating.store(true, Ordering::Release);
        }
        let placement_changed = old.placement.ring().points() != view.placement.ring().points()
            || old.config().replicas() != view.config().replicas();
        if placement_changed {
            // Copies this node kept of keys it lost before are stale from now
            // on: only those lost at this epoch are still current.
            view.previous = Some(old.placement.clone());
        } else {
            view.previous = old.previous.clone();
        }
        if moves.loses {
            let due = self.now_ms() + MIGRATION_RELEASE_GRACE_MS;
            self.release_due_ms.store(due, Ordering::Release);
        }
    }
}

/// Releases, on every shard, the items this node no longer owns whose new
/// owners all have them: nodes that answer `rc status` at this epoch or a later
/// one and are not recovering (so they have copied what they gained). Returns
/// how many items are kept for a later try.
pub(super) async fn release(cluster: &ShardCluster) -> u64 {
    let node = &cluster.node;
    let view = node.view();
    let mut ready = Vec::new();
    for peer in view.config().nodes().iter().filter(|n| n.id != node.me) {
        if node.is_tko(peer.id) {
            continue;
        }
        let Some(addr) = view.client_addr(peer.id) else {
            continue;
        };
        let reply = peer::one_off(node, addr, None, b"rc status\r\nmn\r\n", node.peer_timeout)
            .await
            .ok()
            .and_then(|reply| wire::parse_status(&reply));
        if let Some(status) = reply {
            if status.epoch >= view.epoch() && !status.recovering {
                ready.push(peer.id);
            }
        }
    }
    let clock = cluster.runtime.clock();
    let mut kept = with_state(|s| release_items(cluster, s, &ready, &clock));
    for answer in cluster
        .siblings
        .ask_all(|| Ask::Release {
            ready: ready.clone(),
        })
        .await
    {
        if let Answer::Kept(n) = answer {
            kept += n;
        }
    }
    if kept > 0 {
        log::info!("{kept} items this node no longer owns wait for their new owners");
    } else {
        log::info!("released every item this node no longer owns");
    }
    kept
}

/// Drops this shard's copies of the keys that moved to it (it reads them only
/// once copied), except those written since they moved.
pub fn drop_gained(cluster: &ShardCluster, state: &mut ShardState, clock: &Clock) {
    let me = cluster.own_owner();
    // `may_read` is true for keys written since they moved.
    unlink_where(cluster, state, clock, |key, owners| {
        owners.contains(&me) && !cluster.node.may_read(key, me)
    });
}

/// Drops the items of this shard that this node no longer owns on it and
/// whose owners are all in `ready`; returns how many others it keeps. An item
/// that moves to another shard of this node is kept (its new shard copies it
/// from the other owners).
pub fn release_items(
    cluster: &ShardCluster,
    state: &mut ShardState,
    ready: &[u32],
    clock: &Clock,
) -> u64 {
    let me = cluster.own_owner();
    let mut kept = 0;
    unlink_where(cluster, state, clock, |_, owners| {
        if owners.contains(&me) {
            return false;
        }
        let released = owners.iter().all(|o| ready.contains(&o.node));
        kept += u64::from(!released);
        released
    });
    kept
}

/// Unlinks every item of this shard's store that `unwanted` picks, given its
/// key and its owners under the view in force.
pub(super) fn unlink_where(
    cluster: &ShardCluster,
    state: &mut ShardState,
    clock: &Clock,
    mut unwanted: impl FnMut(&[u8], &crate::cluster::placement::Owners) -> bool,
) {
    let view = cluster.view();
    let mut keys = Vec::new();
    for segment in 0..state.store.segment_count() {
        state.store.visit_segment(segment, clock.rel_secs, |item| {
            if unwanted(item.key, &view.placement.owners(item.key)) {
                keys.push(item.key.to_vec());
            }
        });
    }
    for key in keys {
        state.store.unlink(&key);
    }
}

//! The watch: one task per shard that ticks every [`PEER_PROBE_INTERVAL_MS`],
//! notices pauses, starts recoveries and releases, replays hints and probes
//! the nodes marked TKO. Spawns tasks that do network I/O.

use super::hints::replay_hints;
use super::migration::release;
use super::node::ClusterNode;
use super::recovery::{ask_exchange, pull, recover};
use super::routing::ShardCluster;
use crate::cluster::wire::RecoverWhat;
use crate::limits::{MIGRATION_RELEASE_RETRY_MS, PEER_PROBE_INTERVAL_MS};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Probes the nodes marked TKO and clears the mark of those that answer; and
/// notices when this process was paused (a tick much later than due), which
/// means peers may have hints for it: then it recovers them.
pub async fn watch(cluster: Rc<ShardCluster>) {
    let node = cluster.node.clone();
    let interval = Duration::from_millis(PEER_PROBE_INTERVAL_MS);
    let probing: Rc<RefCell<HashSet<u32>>> = Rc::default();
    // One recovery, and one release, runs at a time.
    let recovering = Rc::new(Cell::new(false));
    let releasing = Rc::new(Cell::new(false));
    loop {
        start_wanted_recovery(&cluster, &node, &recovering);
        start_due_release(&cluster, &node, &releasing);
        glommio::timer::sleep(interval).await;
        node.pauses();
        node.last_tick_ms.store(node.now_ms(), Ordering::Release);
        replay_wanted_hints(&cluster, &node, &probing);
        probe_skipped(&cluster, &node, &probing);
    }
}

/// Starts the recovery the node wants (a copy of every item after a start or
/// a move, else the hints after a pause), unless one is running.
fn start_wanted_recovery(
    cluster: &Rc<ShardCluster>,
    node: &ClusterNode,
    recovering: &Rc<Cell<bool>>,
) {
    if !recovering.get() {
        let what = if node.migration_wanted.swap(false, Ordering::AcqRel) {
            Some(RecoverWhat::All)
        } else if node.takeover_wanted.swap(false, Ordering::AcqRel) {
            Some(RecoverWhat::Takeover)
        } else if node.recovery_wanted.swap(false, Ordering::AcqRel) {
            Some(RecoverWhat::Hints)
        } else {
            None
        };
        if let Some(what) = what {
            recovering.set(true);
            let (cluster, recovering) = (cluster.clone(), recovering.clone());
            glommio::spawn_local(async move {
                recover(cluster, what).await;
                recovering.set(false);
            })
            .detach();
        }
    }
}

/// Starts the release of the items this node no longer owns once it is due
/// and the node copies nothing, unless one is running.
fn start_due_release(cluster: &Rc<ShardCluster>, node: &ClusterNode, releasing: &Rc<Cell<bool>>) {
    let due = node.release_due_ms.load(Ordering::Acquire);
    if due != 0 && node.now_ms() >= due && !node.is_copying() && !releasing.get() {
        releasing.set(true);
        let (cluster, releasing) = (cluster.clone(), releasing.clone());
        glommio::spawn_local(async move {
            let node = &cluster.node;
            let next = match release(&cluster).await {
                0 => 0,
                _ => node.now_ms() + MIGRATION_RELEASE_RETRY_MS,
            };
            // A newer epoch's release, set meanwhile, stands.
            let _ = node.release_due_ms.compare_exchange(
                due,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            releasing.set(false);
        })
        .detach();
    }
}

/// Sends the peers due a replay of their hints what they missed, one task per
/// peer; a peer being probed, or any while this node recovers, waits.
fn replay_wanted_hints(
    cluster: &Rc<ShardCluster>,
    node: &ClusterNode,
    probing: &Rc<RefCell<HashSet<u32>>>,
) {
    for id in node.take_replays() {
        if probing.borrow().contains(&id) || node.is_recovering() {
            node.want_replay(id, true);
            continue;
        }
        probing.borrow_mut().insert(id);
        let probing = probing.clone();
        let cluster = cluster.clone();
        glommio::spawn_local(async move {
            replay_hints(&cluster, id).await;
            probing.borrow_mut().remove(&id);
        })
        .detach();
    }
}

/// Probes each member marked TKO or not copied from yet (one task per peer)
/// and clears the mark of one that answers once it has settled with it.
fn probe_skipped(
    cluster: &Rc<ShardCluster>,
    node: &Arc<ClusterNode>,
    probing: &Rc<RefCell<HashSet<u32>>>,
) {
    let ids: Vec<u32> = node.view().config().nodes().iter().map(|n| n.id).collect();
    for id in ids {
        if (node.is_tko(id) || node.is_unpulled(id)) && !probing.borrow().contains(&id) {
            probing.borrow_mut().insert(id);
            let node = node.clone();
            let probing = probing.clone();
            let cluster = cluster.clone();
            glommio::spawn_local(async move {
                // A peer this node has not copied its shared items from
                // yet is copied from first, then settles as any other.
                let pulled = || async {
                    if !node.is_unpulled(id) {
                        return true;
                    }
                    let pulled = pull(&cluster, id, RecoverWhat::All).await;
                    node.set_pulled(id, pulled);
                    pulled
                };
                if node.probe(id).await && pulled().await && ask_exchange(&node, id).await {
                    node.clear_tko(id);
                }
                probing.borrow_mut().remove(&id);
            })
            .detach();
        }
    }
}

//! Recovery, both ways: a node that starts copies every item it shares with
//! each reachable peer; one that was paused or cut off settles with each
//! ([`exchange`]); and a shard pushes to a recovering peer what it asks for
//! ([`ShardCluster::push_recovery`]). Network I/O throughout.

use super::hints::Hints;
use super::migration::{drop_gained, unlink_where};
use super::node::ClusterNode;
use super::peer::{self, Link, Reply};
use super::replication::{encode_current, encode_view, Held};
use super::routing::ShardCluster;
use crate::cluster::config::NodeState;
use crate::cluster::ring::Owner;
use crate::cluster::wire::{self, PeerMode, RecoverWhat};
use crate::engine::ShardState;
use crate::limits::{PEER_PROBE_INTERVAL_MS, RECOVERY_EPOCH_WAIT_MS, RECOVERY_PEER_TIMEOUT_SECS};
use crate::runtime::messages::{Answer, Ask};
use crate::runtime::state::with_state;
use crate::storage::ttl::Clock;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The node's recovery: at start (`All`), every item it shares with each
/// reachable peer is copied from that peer; after a pause (`Hints`), it settles
/// with each reachable peer (see [`exchange`]). Until then it does not serve
/// reads of its own.
pub async fn recover(cluster: Rc<ShardCluster>, what: RecoverWhat) {
    let node = &cluster.node;
    let started = Instant::now();
    if what == RecoverWhat::All && !node.is_recovering() {
        // Keys moved here: copies this node kept from an earlier time it owned
        // them are stale (a key deleted since would come back), so they go
        // before the current ones are copied.
        let clock = cluster.runtime.clock();
        with_state(|s| drop_gained(&cluster, s, &clock));
        cluster.siblings.ask_all(|| Ask::DropGained).await;
    }
    let mut settled = 0;
    // The members in force, and those removed since keys began to move here
    // (they still hold the keys they owned).
    let mut peers: Vec<u32> = node.view().config().nodes().iter().map(|n| n.id).collect();
    for placement in node.migrating_from.read().expect("migration lock").iter() {
        peers.extend(placement.config().nodes().iter().map(|n| n.id));
    }
    peers.sort_unstable();
    peers.dedup();
    peers.retain(|&id| id != node.me);
    if what == RecoverWhat::Takeover {
        // The node taken over from is not asked: it is down, or removed.
        let view = node.view();
        peers.retain(|&id| {
            view.config()
                .node(id)
                .is_some_and(|n| n.state != NodeState::Down)
        });
    }
    for &peer in &peers {
        // A peer that does not answer a no-op now is not waited for: what it
        // holds for this node is out of reach until it answers again, and then
        // its probe asks this node to settle with it.
        let mut reachable = false;
        for _ in 0..RECOVERY_PROBES {
            if node.probe(peer).await {
                reachable = true;
                break;
            }
        }
        if reachable {
            // A mark this node set when its requests timed out across its
            // own pause says nothing of the peer.
            node.clear_tko(peer);
        } else {
            // Usual when a whole cluster starts at once: not worth a warning.
            log::info!(
                "node {peer} is not reachable for recovery: skipping it until it answers a probe"
            );
            if let Some(t) = node.tko_flag(peer) {
                t.store(true, Ordering::Release);
            }
            // A copy of every item, or a takeover, that goes on without a
            // peer lacks what only that peer may hold: until it is copied
            // from (or a decision marks it down), this node neither reads nor
            // is primary for the keys they share.
            if what != RecoverWhat::Hints {
                node.set_pulled(peer, false);
            }
            continue;
        }
        let done = match what {
            RecoverWhat::All | RecoverWhat::Takeover => {
                let pulled = pull(&cluster, peer, what).await;
                node.set_pulled(peer, pulled);
                pulled
            }
            RecoverWhat::Hints => exchange(&cluster, peer).await,
        };
        settled += done as usize;
    }
    node.recovery_done();
    log::info!(
        "recovered ({what:?}) from {settled} of {} peers in {:?}",
        peers.len(),
        started.elapsed()
    );
}

/// Settles this node with `peer` after they could not reach each other: first
/// it sends `peer` (in `merge` mode) the keys it changed and could not
/// replicate to it, which `peer` takes unless it holds a newer state of them
/// (a larger CAS unique); then it asks for `peer`'s hints, which it takes
/// unless it wrote them as primary since or holds a newer state of them.
/// One exchange with a given peer runs at a time.
pub async fn exchange(cluster: &Rc<ShardCluster>, peer: u32) -> bool {
    while !cluster.exchanging.borrow_mut().insert(peer) {
        glommio::timer::sleep(Duration::from_millis(PEER_PROBE_INTERVAL_MS)).await;
    }
    let clock = cluster.runtime.clock();
    let mut pushed = cluster.push_hints(peer, &clock).await;
    for answer in cluster
        .siblings
        .ask_all(|| Ask::PushHints { node: peer })
        .await
    {
        pushed &= matches!(answer, Answer::Pushed(true));
    }
    if !pushed {
        log::warn!("node {peer} did not take every item this node changed while it was away");
    }
    let pulled = pull(cluster, peer, RecoverWhat::Hints).await;
    cluster.exchanging.borrow_mut().remove(&peer);
    pushed && pulled
}

/// Asks every shard of `peer` to push `what` to this node; when `peer` dropped
/// its hints for this node, drops the data shared with `peer` and copies it all.
pub(super) async fn pull(cluster: &Rc<ShardCluster>, peer: u32, mut what: RecoverWhat) -> bool {
    let node = &cluster.node;
    let shards = node.shard_addrs(peer).len() as u32;
    loop {
        let mut overflowed = false;
        let mut complete = true;
        for shard in 0..shards {
            // A push can fail on a connection the peer opened while this
            // node was paused (closed unread here): ask again. A peer at
            // another epoch is asked again, without counting, until it is at
            // this node's (see `waits_for_epoch`).
            let mut answered = false;
            let mut refused = 0;
            let mut first_refusal: Option<Instant> = None;
            while refused < RECOVERY_ATTEMPTS_MAX {
                match ask_recovery(node, Owner { node: peer, shard }, what).await {
                    Some(reply) if reply == wire::RECOVERED => answered = true,
                    Some(reply) if reply == wire::HINTS_OVERFLOWED => {
                        overflowed = true;
                        answered = true;
                    }
                    Some(reply) => {
                        let marked_down = node
                            .view()
                            .config()
                            .node(peer)
                            .is_some_and(|n| n.state == NodeState::Down);
                        let waiting = waits_for_epoch(
                            &reply,
                            marked_down,
                            first_refusal.get_or_insert_with(Instant::now).elapsed(),
                        );
                        refused += u32::from(!waiting);
                        let text = String::from_utf8_lossy(&reply);
                        let text = text.trim_end();
                        if waiting || reply == wire::RECOVERING {
                            log::debug!("recovery from node {peer} shard {shard} (refusal {refused}): {text}");
                        } else {
                            log::warn!("recovery from node {peer} shard {shard} (refusal {refused}): {text}");
                        }
                        glommio::timer::sleep(Duration::from_millis(PEER_PROBE_INTERVAL_MS)).await;
                        continue;
                    }
                    None => {}
                }
                break;
            }
            complete &= answered;
        }
        if !overflowed || what == RecoverWhat::All {
            return complete;
        }
        log::warn!(
            "node {peer} dropped its hints for this node: dropping the data shared with it and copying it afresh"
        );
        cluster
            .siblings
            .ask_all(|| Ask::DropShared { node: peer })
            .await;
        let clock = cluster.runtime.clock();
        with_state(|s| drop_shared(cluster, s, peer, &clock));
        what = RecoverWhat::All;
    }
}

/// Whether a recovering node asks a peer shard that refused `rc recover`
/// again without counting the refusal: the peer is at another epoch, the view
/// in force does not mark it down, and [`RECOVERY_EPOCH_WAIT_MS`] has not
/// passed since its first refusal. A peer at an older epoch may still stand in as
/// primary for keys this node takes back at the newer one, counting incrs
/// from its own copy; settled with now, this node would be primary beside it.
/// So the hand-off waits until both are at one epoch.
fn waits_for_epoch(reply: &[u8], marked_down: bool, waited: Duration) -> bool {
    wire::mismatched_epoch(reply).is_some()
        && !marked_down
        && waited < Duration::from_millis(RECOVERY_EPOCH_WAIT_MS)
}

/// How many no-ops a recovering node sends a peer before it goes on without it
/// (one may be lost to a slow moment, or to a connection made during a pause).
const RECOVERY_PROBES: u32 = 3;

/// How many refusals a recovering node takes from one peer shard before it
/// goes on without what that shard holds for it.
const RECOVERY_ATTEMPTS_MAX: u32 = 5;

/// Sends `rc recover` to one peer shard and returns its reply.
async fn ask_recovery(node: &ClusterNode, owner: Owner, what: RecoverWhat) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    wire::encode_recover(node.epoch(), node.me, what, &mut request);
    let addr = *node.shard_addrs(owner.node).get(owner.shard as usize)?;
    match ask_peer_shard(node, addr, &request).await {
        Ok(reply) => Some(reply),
        Err(e) => {
            log::warn!(
                "recovery from node {} shard {}: {e:?}",
                owner.node,
                owner.shard
            );
            None
        }
    }
}

/// Asks `peer`, which answers again, to settle with this node before this
/// node reads from it (see [`exchange`]).
pub(super) async fn ask_exchange(node: &ClusterNode, peer: u32) -> bool {
    let mut request = Vec::new();
    wire::encode_exchange(node.epoch(), node.me, &mut request);
    let Some(addr) = node.view().shard_addr(Owner {
        node: peer,
        shard: 0,
    }) else {
        return false;
    };
    ask_peer_shard(node, addr, &request).await.as_deref() == Ok(wire::RECOVERED)
}

/// Sends a recovery request (`rc recover`, `rc exchange`) on a connection of
/// its own and waits for the reply, which comes once the work is done.
async fn ask_peer_shard(
    node: &ClusterNode,
    addr: SocketAddr,
    request: &[u8],
) -> Result<Vec<u8>, peer::LinkError> {
    let timeout = Duration::from_secs(RECOVERY_PEER_TIMEOUT_SECS);
    peer::one_off(node, addr, None, request, timeout).await
}

/// Removes from this shard's store every item whose owners include `peer`.
pub fn drop_shared(cluster: &ShardCluster, state: &mut ShardState, peer: u32, clock: &Clock) {
    unlink_where(cluster, state, clock, |_, owners| {
        owners.iter().any(|o| o.node == peer)
    });
}

impl ShardCluster {
    /// Pushes to recovering `node` what it asked for: the keys hinted for it, or
    /// every item of this shard it co-owns. Returns the reply to `rc recover`.
    pub async fn push_recovery(
        self: &Rc<Self>,
        node: u32,
        what: RecoverWhat,
        clock: &Clock,
    ) -> &'static [u8] {
        // A node that is recovering itself may hold copies older than what it
        // has yet to get back: the asker tries again once it is done.
        if what == RecoverWhat::All && self.node.is_recovering() {
            return wire::RECOVERING;
        }
        let mut pending: Vec<(Rc<Link>, Reply, Vec<u8>)> = Vec::new();
        // A node taking over is sent what this shard holds; the hints it
        // keeps for that node stay, to be replayed as usual.
        let taken = match what {
            RecoverWhat::Hints | RecoverWhat::All => {
                let taken = self.hints.borrow_mut().remove(&node).unwrap_or_default();
                self.node
                    .hinted_keys
                    .fetch_sub(taken.keys.len() as u64, Ordering::Relaxed);
                taken
            }
            RecoverWhat::Takeover => Hints::default(),
        };
        let sent = match what {
            RecoverWhat::Hints if taken.overflowed => {
                // Keep the mark until the node copies everything.
                self.hints.borrow_mut().entry(node).or_default().overflowed = true;
                return wire::HINTS_OVERFLOWED;
            }
            RecoverWhat::Hints => {
                self.send_hinted(node, taken.keys, clock, &mut pending);
                true
            }
            RecoverWhat::All => {
                self.send_shared(node, Held::Current, clock, &mut pending)
                    .await
            }
            RecoverWhat::Takeover => self.send_shared(node, Held::Any, clock, &mut pending).await,
        };
        if !sent {
            return b"SERVER_ERROR copy failed\r\n";
        }
        if self
            .all_acknowledged(&mut pending, PeerMode::Copy(self.node.me))
            .await
        {
            wire::RECOVERED
        } else {
            b"SERVER_ERROR copy failed\r\n"
        }
    }

    /// Sends `node` the current state of each of `keys` it owns, as copies:
    /// a step of [`ShardCluster::push_recovery`].
    fn send_hinted(
        &self,
        node: u32,
        keys: HashSet<Vec<u8>>,
        clock: &Clock,
        pending: &mut Vec<(Rc<Link>, Reply, Vec<u8>)>,
    ) {
        for key in keys {
            let Some(target) = self.view().placement.owner_on(&key, node) else {
                continue;
            };
            let mut record = Vec::new();
            with_state(|s| encode_current(self, s, &key, clock, &mut record));
            log::trace!(
                "hinted copy of {} to node {node}",
                String::from_utf8_lossy(&key)
            );
            let link = self.link(target);
            let reply = link.send(PeerMode::Copy(self.node.me), record);
            pending.push((link, reply, key));
        }
    }

    /// Sends `node` every item of this shard it co-owns that this node holds
    /// current, segment by segment, then the removals it remembers of its keys,
    /// as copies: a step of [`ShardCluster::push_recovery`]. Returns false
    /// when a segment's copies were not all acknowledged.
    async fn send_shared(
        &self,
        node: u32,
        which: Held,
        clock: &Clock,
        pending: &mut Vec<(Rc<Link>, Reply, Vec<u8>)>,
    ) -> bool {
        let segments = with_state(|s| s.store.segment_count());
        for segment in 0..segments {
            let mut batch: Vec<(Owner, Vec<u8>, Vec<u8>)> = Vec::new();
            let me = self.own_owner();
            with_state(|s| {
                s.store.visit_segment(segment, clock.rel_secs, |item| {
                    let owners = self.view().placement.owners(item.key);
                    let target = owners.iter().find(|o| o.node == node);
                    if let (Some(&target), true) =
                        (target, which.hands_on(&self.node, item.key, &owners, me))
                    {
                        let mut record = Vec::new();
                        encode_view(&item, clock, &mut record);
                        batch.push((target, record, item.key.to_vec()));
                    }
                })
            });
            for (target, record, key) in batch {
                let link = self.link(target);
                let reply = link.send(PeerMode::Copy(self.node.me), record);
                pending.push((link, reply, key));
            }
            // Bound what is in flight: wait for this segment's copies.
            if !self
                .all_acknowledged(pending, PeerMode::Copy(self.node.me))
                .await
            {
                return false;
            }
            glommio::executor().yield_if_needed().await;
        }
        for (target, record, key) in self.removals_for(node, which, clock) {
            let link = self.link(target);
            let reply = link.send(PeerMode::Copy(self.node.me), record);
            pending.push((link, reply, key));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::route::Refusal;

    #[test]
    fn a_recovering_node_waits_for_a_peer_at_another_epoch_to_take_up_its_own() {
        let soon = Duration::from_millis(PEER_PROBE_INTERVAL_MS);
        assert!(waits_for_epoch(&Refusal::Epoch(5).bytes(), false, soon));
        // Its refusals count as any other once the wait is over, or when a
        // decision marks it down (it is not primary for anything then).
        let late = Duration::from_millis(RECOVERY_EPOCH_WAIT_MS);
        assert!(!waits_for_epoch(&Refusal::Epoch(5).bytes(), false, late));
        assert!(!waits_for_epoch(&Refusal::Epoch(5).bytes(), true, soon));
    }

    #[test]
    fn other_refusals_of_a_recovery_count_toward_giving_up() {
        let soon = Duration::from_millis(PEER_PROBE_INTERVAL_MS);
        assert!(!waits_for_epoch(wire::RECOVERING, false, soon));
        assert!(!waits_for_epoch(
            b"SERVER_ERROR copy failed\r\n",
            false,
            soon
        ));
    }
}

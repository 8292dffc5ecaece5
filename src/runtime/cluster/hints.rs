//! Hints: the keys an owner missed writes of, kept per shard and per node, and
//! their replay (in `merge` mode) once that owner answers again. Sends over
//! peer links.

use super::node::ClusterNode;
use super::peer::{Link, Reply};
use super::replication::{encode_current, encode_view, Held};
use super::routing::ShardCluster;
use crate::cluster::wire::PeerMode;
use crate::runtime::messages::{Answer, Ask};
use crate::runtime::state::with_state;
use crate::storage::ttl::Clock;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// The hints one shard keeps for one unreachable node.
#[derive(Default)]
pub(super) struct Hints {
    pub(super) keys: HashSet<Vec<u8>>,
    pub(super) overflowed: bool,
}

/// How long a node waits before it sends a peer that answers the writes it
/// missed again, after a send of them failed.
const HINT_REPLAY_RETRY_MS: u64 = 1000;

impl ShardCluster {
    /// Remembers that `node` missed the latest write of `key`; the watch sends
    /// it its hints again once it answers (see [`ClusterNode::missed_write`]).
    pub(super) fn hint(&self, node: u32, key: &[u8]) {
        if node == self.node.me {
            return;
        }
        log::trace!("hint for node {node}: {}", String::from_utf8_lossy(key));
        self.node.missed_write(node);
        let mut hints = self.hints.borrow_mut();
        let hints = hints.entry(node).or_default();
        if hints.overflowed {
            return;
        }
        let max = self.node.hinted_keys_max;
        if hints.keys.len() >= max {
            log::warn!(
                "more than {max} hinted keys for node {node}: dropping them; it will copy what it shares with this node when it returns"
            );
            self.node
                .hinted_keys
                .fetch_sub(hints.keys.len() as u64, Ordering::Relaxed);
            hints.keys = HashSet::new();
            hints.overflowed = true;
        } else if hints.keys.insert(key.to_vec()) {
            self.node.hinted_keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `node`, which this node could not reach, the current items of the
    /// keys this shard changed meanwhile (every shared item if those keys were
    /// dropped at their bound), in `merge` mode: `node` keeps its own item for
    /// keys it changed itself meanwhile. Returns whether all were acknowledged.
    pub async fn push_hints(self: &Rc<Self>, node: u32, clock: &Clock) -> bool {
        let taken = self.hints.borrow_mut().remove(&node).unwrap_or_default();
        self.node
            .hinted_keys
            .fetch_sub(taken.keys.len() as u64, Ordering::Relaxed);
        let mode = PeerMode::Merge(self.node.me);
        let mut pending: Vec<(Rc<Link>, Reply, Vec<u8>)> = Vec::new();
        let mut send = |key: &[u8], record: Vec<u8>| {
            if let Some(target) = self.view().placement.owner_on(key, node) {
                log::trace!("merge of {} to node {node}", String::from_utf8_lossy(key));
                let link = self.link(target);
                let reply = link.send(mode, record);
                pending.push((link, reply, key.to_vec()));
            }
        };
        if taken.overflowed {
            let mut records = Vec::new();
            with_state(|s| {
                for segment in 0..s.store.segment_count() {
                    s.store.visit_segment(segment, clock.rel_secs, |item| {
                        let mut record = Vec::new();
                        encode_view(&item, clock, &mut record);
                        records.push((item.key.to_vec(), record));
                    });
                }
            });
            for (key, record) in records {
                send(&key, record);
            }
            for (_, record, key) in self.removals_for(node, Held::Current, clock) {
                send(&key, record);
            }
        } else {
            for key in taken.keys {
                let mut record = Vec::new();
                with_state(|s| encode_current(self, s, &key, clock, &mut record));
                send(&key, record);
            }
        }
        self.all_acknowledged(&mut pending, PeerMode::Merge(self.node.me))
            .await
    }

    pub fn hinted_keys(&self) -> u64 {
        self.node.hinted_keys.load(Ordering::Relaxed)
    }
}

impl ClusterNode {
    /// Notes that `node` missed a write this node keeps a hint of: the watch
    /// sends it its hints as soon as it answers (at once if it is not marked
    /// TKO). A node marked TKO also settles with this node when a probe finds
    /// it again, but a hint kept after that settling began and before the
    /// mark cleared would wait for the next fault without this.
    pub(super) fn missed_write(&self, node: u32) {
        self.missed_writes.fetch_add(1, Ordering::Relaxed);
        self.want_replay(node, false);
    }

    /// Asks the watch to send `node` its hints again, at once (`retry`: after
    /// [`HINT_REPLAY_RETRY_MS`], the last send having failed).
    pub(super) fn want_replay(&self, node: u32, retry: bool) {
        let due = if retry {
            self.now_ms() + HINT_REPLAY_RETRY_MS
        } else {
            0
        };
        let mut wanted = self.replay_wanted.lock().expect("replay lock");
        let entry = wanted.entry(node).or_insert(due);
        *entry = (*entry).min(due);
    }

    /// The peers to send their hints again now: those due that answer.
    pub(super) fn take_replays(&self) -> Vec<u32> {
        let now = self.now_ms();
        let mut wanted = self.replay_wanted.lock().expect("replay lock");
        let ready: Vec<u32> = wanted
            .iter()
            .filter(|&(&id, &due)| due <= now && !self.is_tko(id) && !self.is_unpulled(id))
            .map(|(&id, _)| id)
            .collect();
        for id in &ready {
            wanted.remove(id);
        }
        ready
    }
}

/// Sends `peer`, which answers but missed writes, the current items (or
/// removals) of the keys every shard holds hints for, in `merge` mode as
/// [`exchange`](super::exchange) does; hints it does not take stay and are sent again later.
pub(super) async fn replay_hints(cluster: &Rc<ShardCluster>, peer: u32) {
    let node = &cluster.node;
    let before = node.hinted_keys.load(Ordering::Relaxed);
    let clock = cluster.runtime.clock();
    let mut pushed = cluster.push_hints(peer, &clock).await;
    for answer in cluster
        .siblings
        .ask_all(|| Ask::PushHints { node: peer })
        .await
    {
        pushed &= matches!(answer, Answer::Pushed(true));
    }
    let after = node.hinted_keys.load(Ordering::Relaxed);
    let sent = before.saturating_sub(after);
    if pushed {
        node.replayed_hints.fetch_add(sent, Ordering::Relaxed);
        // None left: a settling with the node sent them first.
        if sent == 0 {
            log::debug!("node {peer} missed writes: sent already");
        } else {
            log::info!("node {peer} missed {sent} writes: sent again");
        }
    } else {
        log::warn!(
            "node {peer} missed writes and did not take them when sent again: retrying in {HINT_REPLAY_RETRY_MS} ms"
        );
        node.want_replay(peer, true);
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::cluster::settling::tests::starting_node;

    #[test]
    fn a_node_marked_tko_when_it_missed_a_write_is_sent_its_hints_once_the_mark_clears() {
        // The probe that clears the mark settles with the node first; a hint
        // kept between that settling and the clearing is replayed all the same.
        let node = starting_node();
        node.mark_tko(2);
        node.missed_write(2);
        assert!(node.take_replays().is_empty(), "not while it is TKO");
        node.clear_tko(2);
        assert_eq!(node.take_replays(), vec![2]);
        assert!(node.take_replays().is_empty(), "once");
    }
}

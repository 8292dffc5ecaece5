//! Applying keyed requests in a role, and the replication of a primary's
//! writes: the item sent to the other owners, their acknowledgements, and the
//! records (items, removals) that carry a key's state from node to node.
//! Sends over peer links and waits for their replies.

use super::node::{ClusterNode, View};
use super::peer::{Link, Reply};
use super::routing::{key_tag, ShardCluster};
use crate::cluster::config::NodeState;
use crate::cluster::ring::Owner;
use crate::cluster::route::{self, Role, StoodInFor};
use crate::cluster::wire::{self, PeerMode};
use crate::engine::ShardState;
use crate::limits::{EPOCH_RETRIES_MAX, EPOCH_RETRY_PAUSE_MS};
use crate::runtime::state::with_state;
use crate::storage::ttl::Clock;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

/// Whether the configuration of `view` has `node` up: a member that no
/// decision marked down.
fn up_in(view: &View, node: u32) -> bool {
    view.config()
        .node(node)
        .is_some_and(|n| n.state != NodeState::Down)
}

/// One owner's answer to a replicated item, awaited: the owner and what became
/// of the item.
type PendingAck = Pin<Box<dyn Future<Output = (u32, Ack)>>>;

/// What became of one item sent to another owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ack {
    Acked,
    /// The receiver does not own the key at the epoch it is at.
    Moved,
    /// The receiver, an owner this node stood in for as primary, refused the
    /// item from a newer epoch (see [`Ticket::stood_in`]).
    Superseded,
    Failed,
}

/// One write's replication: the replies of the other owners, and how many of
/// them must acknowledge it before the client is answered.
pub struct Ticket {
    key: Vec<u8>,
    replies: Vec<(Rc<Link>, Reply)>,
    needed: usize,
    /// The epoch whose owners the item went to.
    epoch: u64,
    /// The key's first owner, when this node applied the write as primary in
    /// its place (see [`Ticket::stood_in`]); the write may need its own
    /// acknowledgement (see [`route::write_acknowledged`]).
    first_owner: Option<u32>,
}

impl Ticket {
    /// This node applied the write as primary in place of the key's first
    /// owner (marked down, unreachable or recovering): the epoch it did so
    /// at. An owner that refuses the item from a newer epoch may be primary
    /// for the key there, counting from its own copy: the item is not sent to
    /// it again as a replica it would apply over its own writes (it gets a
    /// hint, ordered by CAS), and the write is not acknowledged.
    fn stood_in(&self) -> Option<u64> {
        self.first_owner.map(|_| self.epoch)
    }
}

impl ShardCluster {
    /// Applies a keyed request in `role` (the engine has already executed it
    /// for `Plain`): bookkeeping before and after, and for `Primary` the
    /// replication of the resulting item. Returns false when a `Copy` must not
    /// be applied (the key was written since recovery began).
    pub fn before_apply(&self, key: &[u8], role: Role) -> bool {
        let node = &self.node;
        if !node.is_copying() {
            // A load first: the flag is shared by every shard, and a write
            // to it on each apply would bounce its cache line between them.
            if node.written_any.load(Ordering::Acquire)
                && node.written_any.swap(false, Ordering::AcqRel)
            {
                *node.written.lock().expect("written lock") = HashSet::new();
            }
            return true;
        }
        match role {
            // A merge is a pushed state like a copy, not a write made here:
            // the two are ordered by CAS (see `apply`). Counted as a write,
            // it would refuse a later copy of a newer write (a hint replayed
            // by the primary that wrote while this node was away).
            Role::Plain | Role::Merge(_) => true,
            Role::Copy(_) => !node.was_written(key),
            Role::Primary | Role::Replica => {
                node.note_written(key, role);
                true
            }
        }
    }

    /// Sends the item `key` now is (or its removal) to the key's other owners.
    pub fn replicate(&self, state: &mut ShardState, key: &[u8], clock: &Clock) -> Ticket {
        let mut record = Vec::new();
        encode_current(self, state, key, clock, &mut record);
        let view = self.view();
        let owners = view.placement.owners(key);
        let config = view.config();
        // This node's own copy counts when it is one of the owners. `write_ack`
        // counts among the owners that are up: once a decision marks an owner
        // down, `quorum` and `all` are reached without it (it gets a hint, and
        // catches up when it is back), so one dead node stops no writes.
        // (A node marked down may still be primary for a write, as the first
        // reachable owner: its own copy then counts for nothing.)
        let mine = usize::from(
            owners
                .iter()
                .any(|o| o.node == self.node.me && up_in(&view, o.node)),
        );
        let up = owners
            .iter()
            .filter(|o| up_in(&view, o.node))
            .count()
            .max(1);
        let needed = config.write_ack().acks_needed(up).saturating_sub(mine);
        let mut replies = Vec::with_capacity(owners.len());
        let tag = key_tag(key);
        for &owner in owners.iter().filter(|o| o.node != self.node.me) {
            // The shard's view holds the node's TKO flags: no lock to read them.
            if view.tko_mark(owner.node) {
                self.hint(owner.node, key);
            } else {
                log::trace!(
                    "replica of {} to node {}",
                    String::from_utf8_lossy(key),
                    owner.node
                );
                let link = self.link(owner);
                let reply = link.send_tagged(PeerMode::Replica, record.clone(), tag);
                replies.push((link, reply));
            }
        }
        let first_owner = owners
            .first()
            .map(|o| o.node)
            .filter(|&node| node != self.node.me);
        Ticket {
            key: key.to_vec(),
            replies,
            needed,
            epoch: view.epoch(),
            first_owner,
        }
    }

    /// Waits until enough owners have acknowledged the write (true) or too
    /// many have failed (false). Owners that fail get a hint; those not waited
    /// for are followed in the background.
    ///
    /// An owner that answers it no longer owns the key has taken up an epoch
    /// that moved it: the item is sent again to the owners in force, which
    /// may have copied the key before this write.
    pub async fn settle(self: &Rc<Self>, mut ticket: Ticket) -> bool {
        let mut attempt = 0;
        loop {
            let stood_in = ticket.stood_in();
            let Ticket {
                key,
                replies,
                needed,
                epoch,
                first_owner,
            } = ticket;
            let mut acks = 0;
            let mut first_acked = false;
            let mut moved = false;
            let mut superseded = false;
            // The owners' answers are taken as they come, not in ring order:
            // an owner that is paused or cut off (not yet TKO here) would
            // otherwise hold the answer for a whole peer timeout although the
            // others had acknowledged enough. With consensus and `quorum` or
            // `all`, a write taken in place of the key's first owner waits for
            // that owner's answer too while the epoch has it up (see
            // `route::write_acknowledged`).
            let view = self.view();
            let policy = self.policy(&view);
            let first_needed =
                first_owner.filter(|&node| route::needs_first_owner(policy, up_in(&view, node)));
            let mut first_answered = first_needed
                .is_none_or(|first| replies.iter().all(|(link, _)| link.target.node != first));
            let shared_key: Rc<[u8]> = Rc::from(key.as_slice());
            let mut pending: Vec<PendingAck> = replies
                .into_iter()
                .map(|(link, reply)| {
                    let me = self.clone();
                    let key = shared_key.clone();
                    Box::pin(async move {
                        let from = link.target.node;
                        let ack = me
                            .acknowledged(&link, reply, &key, PeerMode::Replica, stood_in)
                            .await;
                        (from, ack)
                    }) as PendingAck
                })
                .collect();
            futures_lite::future::poll_fn(|cx| {
                let mut i = 0;
                while i < pending.len() {
                    let Poll::Ready((from, ack)) = pending[i].as_mut().poll(cx) else {
                        i += 1;
                        continue;
                    };
                    drop(pending.swap_remove(i));
                    first_answered |= first_needed == Some(from);
                    match ack {
                        Ack::Acked => {
                            acks += 1;
                            first_acked |= first_owner == Some(from);
                        }
                        Ack::Moved => moved = true,
                        Ack::Superseded => superseded = true,
                        Ack::Failed => {}
                    }
                }
                if superseded || pending.is_empty() || (acks >= needed && first_answered) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            if !pending.is_empty() {
                let me = self.clone();
                let key = shared_key;
                glommio::spawn_local(async move {
                    let mut moved = false;
                    for answer in pending {
                        moved |= answer.await.1 == Ack::Moved;
                    }
                    if moved {
                        let clock = me.node_clock();
                        let again = with_state(|s| me.replicate(s, &key, &clock));
                        let stood_in = again.stood_in();
                        for (link, reply) in again.replies {
                            me.acknowledged(&link, reply, &key, PeerMode::Replica, stood_in)
                                .await;
                        }
                    }
                })
                .detach();
            }
            // Owners acknowledged under an epoch that has since moved the key
            // may not be its owners now: the owners in force are sent it too.
            let view = self.view();
            moved |= view.epoch() != epoch
                && !view
                    .placement
                    .owners(&key)
                    .iter()
                    .any(|o| o.node == self.node.me);
            if superseded {
                return false;
            }
            if !moved || attempt == EPOCH_RETRIES_MAX {
                let policy = self.policy(&view);
                let stood_in_for = |acked| {
                    first_owner.map(|node| StoodInFor {
                        up_now: up_in(&view, node),
                        acked,
                    })
                };
                let mut acknowledged =
                    route::write_acknowledged(policy, acks, needed, stood_in_for(first_acked));
                // Held back for want of the first owner's copy while it is up
                // and answers (its link closed: it was paused, say): it is sent
                // the item once more, as it is now, on a fresh connection.
                if let Some(first) =
                    first_owner.filter(|&n| !acknowledged && acks >= needed && !view.tko_mark(n))
                {
                    first_acked = self.send_again(&key, first, stood_in).await;
                    acknowledged =
                        route::write_acknowledged(policy, acks, needed, stood_in_for(first_acked));
                }
                if acks >= needed && !acknowledged {
                    log::debug!(
                        "node {} is up and did not take {}, written here in its place: hinted, not acknowledged",
                        first_owner.unwrap_or_default(),
                        String::from_utf8_lossy(&key)
                    );
                }
                return acknowledged;
            }
            attempt += 1;
            glommio::timer::sleep(Duration::from_millis(EPOCH_RETRY_PAUSE_MS)).await;
            let clock = self.node_clock();
            ticket = with_state(|s| self.replicate(s, &key, &clock));
        }
    }

    /// Sends the item `key` now is to `node`'s shard that owns it, once more;
    /// whether it acknowledged it.
    async fn send_again(&self, key: &[u8], node: u32, stood_in: Option<u64>) -> bool {
        let Some(owner) = self.view().placement.owner_on(key, node) else {
            return false;
        };
        let link = self.link(owner);
        let reply = self.send_current(&link, key, PeerMode::Replica);
        self.acknowledged(&link, reply, key, PeerMode::Replica, stood_in)
            .await
            == Ack::Acked
    }

    /// Sends `link`'s owner the item `key` is now (or its removal) in `mode`;
    /// a replica tagged with its key, as [`ShardCluster::replicate`] sends it.
    fn send_current(&self, link: &Rc<Link>, key: &[u8], mode: PeerMode) -> Reply {
        let clock = self.node_clock();
        let mut record = Vec::new();
        with_state(|s| encode_current(self, s, key, &clock, &mut record));
        match mode {
            PeerMode::Replica => link.send_tagged(mode, record, key_tag(key)),
            _ => link.send(mode, record),
        }
    }

    /// What became of an item sent to `link`'s owner; `stood_in` as in
    /// [`Ticket::stood_in`] (`None` for copies and merges).
    async fn acknowledged(
        &self,
        link: &Rc<Link>,
        reply: Reply,
        key: &[u8],
        mode: PeerMode,
        stood_in: Option<u64>,
    ) -> Ack {
        let mut reply = reply;
        let mut epoch_retries = 0;
        loop {
            match link.wait(reply).await {
                Ok(answer) if wire::is_ack(&answer) => return Ack::Acked,
                Ok(answer) if answer == wire::NOT_AN_OWNER => return Ack::Moved,
                // The owner holds a newer state of the key (another node
                // wrote it as primary meanwhile): this write does not count,
                // and the owner is sent this node's item as a merge, which
                // it refuses in turn and answers with its own.
                Ok(answer) if answer == wire::OLDER_THAN_HELD => {
                    return self.not_counted(link, key, "it holds a newer state", Ack::Failed)
                }
                Ok(answer) if refused_from_a_newer_epoch(&answer, stood_in) => {
                    let why = "from a newer epoch than this node stood in at";
                    return self.not_counted(link, key, why, Ack::Superseded);
                }
                // The owner is taking up another configuration: send it the
                // item as it is now, a moment later.
                // An owner of an older view that the view in force has moved
                // the key from (or left out): the caller sends it anew.
                Ok(answer)
                    if answer.starts_with(wire::EPOCH_MISMATCH_PREFIX)
                        && !self.view().placement.owners(key).contains(&link.target) =>
                {
                    return Ack::Moved
                }
                Ok(answer)
                    if answer.starts_with(wire::EPOCH_MISMATCH_PREFIX)
                        && epoch_retries < EPOCH_RETRIES_MAX =>
                {
                    epoch_retries += 1;
                    glommio::timer::sleep(Duration::from_millis(EPOCH_RETRY_PAUSE_MS)).await;
                    reply = self.send_current(link, key, mode);
                }
                Ok(answer) => {
                    log::warn!(
                        "node {} refused a replicated item: {}",
                        link.target.node,
                        String::from_utf8_lossy(&answer).trim_end()
                    );
                    self.hint(link.target.node, key);
                    return Ack::Failed;
                }
                Err(_) => {
                    self.hint(link.target.node, key);
                    return Ack::Failed;
                }
            }
        }
    }

    /// `link`'s owner refused the item of `key` for `why`: it is hinted, and
    /// the write does not count there (`ack`).
    fn not_counted(&self, link: &Link, key: &[u8], why: &str, ack: Ack) -> Ack {
        log::debug!(
            "node {} refused {} ({why}): hinted, not acknowledged",
            link.target.node,
            String::from_utf8_lossy(key)
        );
        self.hint(link.target.node, key);
        ack
    }

    pub(super) async fn all_acknowledged(
        &self,
        pending: &mut Vec<(Rc<Link>, Reply, Vec<u8>)>,
        mode: PeerMode,
    ) -> bool {
        let mut ok = true;
        for (link, reply, key) in pending.drain(..) {
            if self.acknowledged(&link, reply, &key, mode, None).await != Ack::Acked {
                ok = false;
            }
        }
        ok
    }

    /// Whether this shard's state of `key` (its item, or its remembered
    /// removal) is newer than a copy carrying `cas`: CAS values grow with
    /// every write of a key on any node (each node raises its counter past
    /// those it is sent), so the higher one is newer. A copy of the same item
    /// is taken (a `touch` keeps the CAS unique and changes the expiry), and
    /// so is the same removal (a `delete` of a key deleted already sends the
    /// removal its primary remembers again).
    fn holds_newer(&self, state: &mut ShardState, key: &[u8], cas: u64, clock: &Clock) -> bool {
        if let Ok(item) = state.store.peek(key, clock.rel_secs) {
            return item.cas > cas;
        }
        self.tombstones
            .borrow_mut()
            .cas_of(key, clock.rel_secs)
            .is_some_and(|removed| removed > cas)
    }

    /// The removals this shard remembers of keys `node` owns, as records to
    /// send it (a node copying every shared item gets them with the items, so
    /// that no older copy brings a removed key back).
    pub(super) fn removals_for(
        &self,
        node: u32,
        which: Held,
        clock: &Clock,
    ) -> Vec<(Owner, Vec<u8>, Vec<u8>)> {
        let view = self.view();
        let me = self.own_owner();
        let mut tombstones = self.tombstones.borrow_mut();
        let mut records = Vec::new();
        for (key, cas) in tombstones.live(clock.rel_secs) {
            let owners = view.placement.owners(key);
            let Some(&target) = owners.iter().find(|o| o.node == node) else {
                continue;
            };
            if which.hands_on(&self.node, key, &owners, me) {
                let mut record = Vec::new();
                wire::encode_removal(key, cas, &mut record);
                records.push((target, record, key.to_vec()));
            }
        }
        records
    }
}

/// Whether `answer`, an owner's reply to a replicated item, refuses it from an
/// epoch newer than the one this node stood in as primary at (see
/// [`Ticket::stood_in`]).
fn refused_from_a_newer_epoch(answer: &[u8], stood_in: Option<u64>) -> bool {
    stood_in.is_some_and(|at| wire::mismatched_epoch(answer).is_some_and(|theirs| theirs > at))
}

/// Applies a keyed text or meta request in `role`, writing its reply to `out`;
/// for `Primary`, returns the replication to settle before the reply is sent.
pub fn apply(
    cluster: &ShardCluster,
    state: &mut ShardState,
    req: &crate::protocol::text::Request<'_>,
    key: &[u8],
    role: Role,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Ticket> {
    if !cluster.before_apply(key, role) {
        // A copy older than a write since recovery began: acknowledged, not applied.
        log::trace!(
            "{role:?} {}: written since recovery began",
            String::from_utf8_lossy(key)
        );
        return None;
    }
    if let (Role::Replica | Role::Copy(_) | Role::Merge(_), Some(cas)) = (role, req_new_cas(req)) {
        // Several nodes may push a key (nodes pushing copies, a node that was
        // cut off): the newest state wins whatever the order, and a removal
        // is a state like an item. So does a primary's replicated item, and
        // one older than the state held is refused, not acknowledged: a
        // stand-in and the primary it hands back to may each apply a write
        // to their own copy at the hand-over, and only the newer may count;
        // and an item its primary gave up on (it timed out and kept a hint)
        // may still be read from that connection after the primary's later
        // writes came on a new one. Not while keys move here: a primary that
        // has not copied a key yet (it just gained it) gives it a unique from
        // its own counter, which may be smaller than an older write's, and
        // its write is taken as it comes.
        log::trace!(
            "{role:?} {} {} cas {cas}",
            if is_removal(req) {
                "removal of"
            } else {
                "item"
            },
            String::from_utf8_lossy(key)
        );
        let ordered = role != Role::Replica || !cluster.node.keys_moving_here();
        if ordered && cluster.holds_newer(state, key, cas, clock) {
            log::trace!("  older than held: not applied");
            match role {
                Role::Replica => out.extend_from_slice(wire::OLDER_THAN_HELD),
                // The pusher's copy is older than this node's: it missed a
                // write, which it is sent again.
                Role::Copy(from @ 1..) | Role::Merge(from @ 1..) => cluster.hint(from, key),
                _ => {}
            }
            return None;
        }
        let mut tombstones = cluster.tombstones.borrow_mut();
        if is_removal(req) {
            tombstones.note(key, cas, clock.rel_secs);
        } else {
            tombstones.forget(key);
        }
    }
    crate::engine::execute(state, req, clock, out);
    after_apply(cluster, state, req_new_cas(req), key, role, clock)
}

/// [`apply`] for one key of a multi-key retrieval (`gat` changes its item).
#[allow(clippy::too_many_arguments)]
pub fn apply_get_one(
    cluster: &ShardCluster,
    state: &mut ShardState,
    kind: crate::protocol::text::GetKind,
    exptime: Option<i64>,
    key: &[u8],
    role: Role,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Ticket> {
    cluster.before_apply(key, role);
    crate::engine::get_one(state, kind, exptime, key, clock, out);
    after_apply(cluster, state, None, key, role, clock)
}

/// [`apply`] for a binary request.
pub fn apply_binary(
    cluster: &ShardCluster,
    state: &mut ShardState,
    req: &crate::protocol::binary::BinRequest<'_>,
    key: &[u8],
    role: Role,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Ticket> {
    cluster.before_apply(key, role);
    crate::engine::binary::execute(state, req, clock, out);
    after_apply(cluster, state, None, key, role, clock)
}

/// Whether a removal is what `req` sends.
fn is_removal(req: &crate::protocol::text::Request<'_>) -> bool {
    matches!(req, crate::protocol::text::Request::Meta(meta)
        if meta.command == crate::protocol::meta::MetaCommand::Delete)
}

fn req_new_cas(req: &crate::protocol::text::Request<'_>) -> Option<u64> {
    match req {
        crate::protocol::text::Request::Meta(meta) => meta.flags.new_cas,
        _ => None,
    }
}

fn after_apply(
    cluster: &ShardCluster,
    state: &mut ShardState,
    new_cas: Option<u64>,
    key: &[u8],
    role: Role,
    clock: &Clock,
) -> Option<Ticket> {
    match role {
        Role::Primary => {
            log::trace!("primary for {}", String::from_utf8_lossy(key));
            // A removal this shard remembers is of an older state once the
            // key holds an item again: a later delete takes a fresh unique
            // above that item's (see `encode_current`), not the old removal's.
            let mut tombstones = cluster.tombstones.borrow_mut();
            if !tombstones.is_empty() && state.store.peek(key, clock.rel_secs).is_ok() {
                tombstones.forget(key);
            }
            drop(tombstones);
            Some(cluster.replicate(state, key, clock))
        }
        Role::Replica | Role::Copy(_) | Role::Merge(_) => {
            if let Some(cas) = new_cas {
                state.store.observe_cas(cas);
            }
            None
        }
        Role::Plain => None,
    }
}

/// Writes the record that makes a replica's copy of `key` what this store
/// holds: the item, or its removal with the CAS unique the removal took (a key
/// missing here with no removal remembered takes a new one now: its absence is
/// this node's newest state of it).
pub(super) fn encode_current(
    cluster: &ShardCluster,
    state: &mut ShardState,
    key: &[u8],
    clock: &Clock,
    out: &mut Vec<u8>,
) {
    if let Ok(item) = state.store.peek(key, clock.rel_secs) {
        log::trace!(
            "current {}: item cas {}",
            String::from_utf8_lossy(key),
            item.cas
        );
        return encode_view(&item, clock, out);
    }
    let mut tombstones = cluster.tombstones.borrow_mut();
    let cas = match tombstones.cas_of(key, clock.rel_secs) {
        Some(cas) => cas,
        None => {
            let cas = state.store.new_cas();
            tombstones.note(key, cas, clock.rel_secs);
            cas
        }
    };
    log::trace!(
        "current {}: removal cas {cas}",
        String::from_utf8_lossy(key)
    );
    wire::encode_removal(key, cas, out);
}

pub(super) fn encode_view(item: &crate::storage::ItemView<'_>, clock: &Clock, out: &mut Vec<u8>) {
    let exptime_unix =
        (item.exptime != 0).then(|| clock.process_started_unix + item.exptime as i64);
    wire::encode_item(
        item.key,
        item.value,
        item.flags,
        exptime_unix,
        item.cas,
        out,
    );
}

/// Whether a text or meta request changes its item (and so goes to the primary
/// and is replicated).
pub fn is_write(req: &crate::protocol::text::Request<'_>) -> bool {
    use crate::protocol::meta::MetaCommand;
    use crate::protocol::text::Request;
    match req {
        Request::Store { .. }
        | Request::TooLarge { .. }
        | Request::Delete { .. }
        | Request::Arith { .. }
        | Request::Touch { .. } => true,
        Request::Get { exptime, .. } => exptime.is_some(),
        Request::Meta(meta) => match meta.command {
            MetaCommand::Get => meta.flags.ttl.is_some() || meta.flags.vivify_ttl.is_some(),
            MetaCommand::Set | MetaCommand::Delete | MetaCommand::Arith => true,
            _ => false,
        },
        _ => false,
    }
}

/// Which of its copies a shard hands to a node that copies from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// Those it holds current (see `ClusterNode::holds_current`).
    Current,
    /// Every copy of a key it owns: the receiver keeps the newest of each
    /// (see `RecoverWhat::Takeover`).
    Any,
}

impl Held {
    pub(super) fn hands_on(
        self,
        node: &ClusterNode,
        key: &[u8],
        owners: &crate::cluster::placement::Owners,
        me: Owner,
    ) -> bool {
        match self {
            Held::Current => node.holds_current(key, owners, me),
            Held::Any => owners.contains(&me),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::route::Refusal;

    #[test]
    fn a_stand_ins_item_refused_from_a_newer_epoch_is_superseded() {
        assert!(refused_from_a_newer_epoch(
            &Refusal::Epoch(6).bytes(),
            Some(5)
        ));
    }

    #[test]
    fn a_refusal_from_an_older_epoch_or_of_a_first_owners_item_is_sent_again() {
        // The refusing owner is behind: it takes up this node's epoch soon.
        assert!(!refused_from_a_newer_epoch(
            &Refusal::Epoch(4).bytes(),
            Some(5)
        ));
        // The key's first owner wrote it: no owner was stood in for.
        assert!(!refused_from_a_newer_epoch(
            &Refusal::Epoch(6).bytes(),
            None
        ));
        assert!(!refused_from_a_newer_epoch(wire::NOT_AN_OWNER, Some(5)));
    }
}

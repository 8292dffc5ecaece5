//! Routing policy of a cluster node (pure: no I/O, no clock, no locks): who
//! may serve a key, which owner a client's request tries next, what this node
//! serves while it recovers, settles after a pause, copies keys moved to it or
//! is cut off from the majority, and when a request is refused.
//!
//! The runtime (`runtime::cluster`) gathers the [`Facts`] of one request from
//! its view and its atomics: the key's owners (its ring point hashed once),
//! which of them a decision marked down and which are TKO here, the owners
//! before the last move, and this node's own state. The functions here decide;
//! they see only those facts, so every case is a unit test below.

use std::ops::Deref;

use super::config::{WriteAck, REPLICAS_MAX};
use super::ring::Owner;
use super::wire::{self, PeerMode};

/// How a shard applies a keyed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A read, or any request outside a cluster.
    Plain,
    /// A write this node applies first: the resulting item goes to the other owners.
    Primary,
    /// An item the primary applied.
    Replica,
    /// An item a peer (id; 0: unknown) pushes to this recovering node.
    Copy(u32),
    /// An item a node that was cut off changed meanwhile.
    Merge(u32),
}

/// Where one keyed request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A shard of this node, applying it in this role.
    Shard(u32, Role),
    /// Another node (or this one, through its own endpoint, on a retry).
    Peer(Owner),
    /// Answered here with a refusal.
    Refuse(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotAnOwner,
    Recovering,
    NoOwnerReachable,
    Epoch(u64),
}

impl Refusal {
    /// The refusal's reply line.
    pub fn bytes(self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Refusal::NotAnOwner => out.extend_from_slice(wire::NOT_AN_OWNER),
            Refusal::Recovering => out.extend_from_slice(wire::RECOVERING),
            Refusal::NoOwnerReachable => out.extend_from_slice(wire::NO_OWNER_REACHABLE),
            Refusal::Epoch(epoch) => {
                out.extend_from_slice(wire::EPOCH_MISMATCH_PREFIX);
                out.extend_from_slice(epoch.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Whether a request reads the key or writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn of(write: bool) -> Access {
        if write {
            Access::Write
        } else {
            Access::Read
        }
    }
}

/// What holds for every key on this node now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// This node's id.
    pub me: u32,
    /// This node runs Paxos (`--data-dir`): with `write_ack` `quorum` or
    /// `all`, a key's primary is its first owner that no decision marked
    /// down, the same on every node of an epoch, and no other owner stands in
    /// for it while it is only unreachable (that would make two primaries,
    /// each with its own copy, when views of who is reachable differ). With
    /// `one`, an owner stands in (availability first).
    pub consensus: bool,
    /// The `write_ack` of the epoch in force.
    pub write_ack: WriteAck,
}

/// One owner of the key (now, or before the last move) as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerFacts {
    pub owner: Owner,
    /// A decision marked its node down (it missed the writes made since).
    /// The key's owners now are members of the epoch in force, so one of
    /// them that is not down is up.
    pub down: bool,
    /// Its node is TKO here: skipped until a probe finds it answering. Never
    /// held against this node itself.
    pub tko: bool,
    /// The epoch in force has an address for this shard (a previous owner
    /// that the epoch removed has none).
    pub addressed: bool,
}

/// A key's owners with their facts, in one order: at most [`REPLICAS_MAX`],
/// held inline, so gathering them on the request path does not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerList {
    len: u8,
    list: [OwnerFacts; REPLICAS_MAX],
}

impl OwnerList {
    /// The first owner in this order (a key always has one).
    pub fn first(&self) -> OwnerFacts {
        self[0]
    }

    fn contains(&self, owner: &Owner) -> bool {
        self.iter().any(|o| o.owner == *owner)
    }
}

impl FromIterator<OwnerFacts> for OwnerList {
    fn from_iter<I: IntoIterator<Item = OwnerFacts>>(iter: I) -> OwnerList {
        let blank = OwnerFacts {
            owner: Owner { node: 0, shard: 0 },
            down: false,
            tko: false,
            addressed: false,
        };
        let mut owners = OwnerList {
            len: 0,
            list: [blank; REPLICAS_MAX],
        };
        for o in iter {
            assert!(
                (owners.len as usize) < REPLICAS_MAX,
                "more owners than replicas"
            );
            owners.list[owners.len as usize] = o;
            owners.len += 1;
        }
        owners
    }
}

impl Deref for OwnerList {
    type Target = [OwnerFacts];

    fn deref(&self) -> &[OwnerFacts] {
        &self.list[..self.len as usize]
    }
}

/// This node's own state, as far as it bears on one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// It is copying what it missed (after a start, a pause or a cut-off) or
    /// what moved to it: its copies may be older than the other owners'.
    pub recovering: bool,
    /// A pause (or a cut-off) was noticed and it has not settled with its
    /// peers since: it is primary for no write, even when no other owner
    /// answers.
    pub settling: bool,
    /// It shares the key with a peer whose items it could not copy yet: it
    /// neither reads the key nor is primary for it. (Only asked when it owns
    /// the key.)
    pub lacks_shared: bool,
    /// Its copy of the key may be read: it is not recovering, and while keys
    /// move to it, it owned this one before (or it was written here since).
    /// (Only asked when it owns the key.)
    pub may_read: bool,
    /// It still holds the keys it lost at the last move, for their new owners
    /// to read while they copy them (until it releases them).
    pub handing_over: bool,
}

/// Everything the routing of one key's request depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub policy: Policy,
    /// The epoch of the view the facts were read from.
    pub epoch: u64,
    /// The key's owners, primary first: the order writes try them.
    pub owners: OwnerList,
    /// The same owners in the order reads try them (those marked down last).
    pub read_order: OwnerList,
    /// The key's owners under the placement before the last change of
    /// placement, while keys move: a node that owned the key then still holds
    /// it (until its new owners have it) and serves reads of it.
    pub previous: Option<OwnerList>,
    pub local: Local,
}

/// One member of the epoch in force, for [`cut_off`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: u32,
    /// TKO here (never held against this node itself).
    pub tko: bool,
}

/// With consensus and `write_ack` `quorum` or `all`: whether this node
/// reaches fewer than a majority of the members (itself included). The
/// others may have decided without it and written past its copies, so it
/// serves neither reads nor writes of clients until it reaches a majority
/// again. `members` is read only when that is the question.
pub fn cut_off(policy: &Policy, members: impl IntoIterator<Item = Member>) -> bool {
    if !policy.consensus || policy.write_ack == WriteAck::One {
        return false;
    }
    let (mut count, mut reached) = (0, 0);
    for m in members {
        count += 1;
        if m.node == policy.me || !m.tko {
            reached += 1;
        }
    }
    reached <= count / 2
}

/// Where a client's request goes, once the caller has found this node is not
/// [`cut_off`].
pub fn client(facts: &Facts, access: Access) -> Route {
    let me = facts.policy.me;
    match next_candidate(facts, access, &[]) {
        Some(owner) if owner.node == me => {
            let role = match access {
                Access::Write => Role::Primary,
                Access::Read => Role::Plain,
            };
            Route::Shard(owner.shard, role)
        }
        Some(owner) => Route::Peer(owner),
        None if access == Access::Write => Route::Refuse(Refusal::NoOwnerReachable),
        // Every owner is skipped: a read still tries the first one rather
        // than fail without asking.
        None => match facts.read_order.first().owner {
            // This node may not read its copy (it recovers, or lacks what it
            // shares with an owner it could not copy from): a miss would be
            // false while another owner holds the key.
            owner
                if owner.node == me && !facts.local.may_read && shared_with_a_live_peer(facts) =>
            {
                Route::Refuse(Refusal::NoOwnerReachable)
            }
            owner if owner.node == me => Route::Shard(owner.shard, Role::Plain),
            owner => Route::Peer(owner),
        },
    }
}

/// Where a request another node sent in `mode` at `epoch` goes.
pub fn peer(facts: &Facts, mode: PeerMode, epoch: u64, access: Access) -> Route {
    if epoch != facts.epoch {
        return Route::Refuse(Refusal::Epoch(facts.epoch));
    }
    let me = facts.policy.me;
    let local = &facts.local;
    let Some(mine) = facts.owners.iter().find(|o| o.owner.node == me) else {
        // A read of a key this node lost at the last move and still holds:
        // its new owners are copying it.
        return match (mode, access, handing_over(facts)) {
            (PeerMode::Forward, Access::Read, Some(held)) => Route::Shard(held.shard, Role::Plain),
            _ => Route::Refuse(Refusal::NotAnOwner),
        };
    };
    // A recovering node sends reads to another owner, if one is reachable;
    // the only one left serves what it has.
    let reachable = |o: &OwnerFacts| o.owner.node != me && !o.tko && o.addressed;
    let elsewhere = || {
        facts.owners.iter().any(reachable)
            || facts
                .previous
                .as_ref()
                .is_some_and(|p| p.iter().any(reachable))
    };
    let role = match (mode, access) {
        // Only the decided primary serves another node's client when the
        // other owners may lack writes it acknowledged (see
        // `stand_ins_may_be_stale`): a sender with an older view asks again.
        (PeerMode::Forward, _)
            if stand_ins_may_be_stale(facts)
                && first_up(facts).map(|o| o.owner) != Some(mine.owner) =>
        {
            return Route::Refuse(Refusal::Recovering)
        }
        (PeerMode::Forward, Access::Read)
            if !local.may_read && (elsewhere() || local.lacks_shared) =>
        {
            return Route::Refuse(Refusal::Recovering)
        }
        // Nor is it primary for another node's client while it recovers, nor
        // in place of a decided primary it does not reach: the sender tries
        // the next owner (a refusal, so the write was not applied here).
        (PeerMode::Forward, Access::Write)
            if (local.recovering && elsewhere())
                || local.lacks_shared
                || local.settling
                || stands_in_for_an_unreachable_primary(facts) =>
        {
            return Route::Refuse(Refusal::Recovering)
        }
        (_, Access::Read) => Role::Plain,
        (PeerMode::Forward, Access::Write) => Role::Primary,
        (PeerMode::Replica, Access::Write) => Role::Replica,
        (PeerMode::Copy(from), Access::Write) => Role::Copy(from),
        (PeerMode::Merge(from), Access::Write) => Role::Merge(from),
    };
    Route::Shard(mine.owner.shard, role)
}

/// With consensus and `write_ack` `quorum` where a majority of the owners that
/// are up is fewer than all of them (R ≥ 3): whether an owner other than the
/// key's decided primary may lack a write that primary acknowledged. It did
/// with the primary and another owner while this one missed it (paused,
/// slow, or it timed out): the primary keeps a hint for it, which a restart
/// loses and a pause holds back until the primary has settled. Standing in,
/// it would count a counter on from an older value, or take a `cas` or an
/// `add` against one, and its replicated item would overwrite the newer copy
/// of the owner that has the write. So while the decided primary recovers,
/// settles or lacks what it shares with a peer, no other owner takes its
/// keys: requests for them wait for it, or are refused. (A decision marking
/// the primary down makes another the primary, once it has copied what the
/// other owners hold: see `takes_over`.) With `all`, or `quorum` at R = 2,
/// every owner that is up has every acknowledged write.
pub fn stand_ins_may_be_stale(facts: &Facts) -> bool {
    let Policy {
        consensus,
        write_ack,
        ..
    } = facts.policy;
    let up = facts.owners.iter().filter(|o| !o.down).count();
    consensus && write_ack == WriteAck::Quorum && write_ack.acks_needed(up) < up
}

/// With consensus and `write_ack` `quorum` or `all`: whether this node, sent
/// a write to apply as primary, is not the key's decided primary (its first
/// owner that no decision marked down) and does not reach that owner (TKO
/// here). The sender passed the write on because the primary refused it (it
/// settles or recovers) or is the primary itself. Applied here, the item
/// would reach the primary only as a hint, which a settling primary may
/// already have pulled: it would then be primary again without the write.
/// An owner that reaches the primary sends it the item instead.
fn stands_in_for_an_unreachable_primary(facts: &Facts) -> bool {
    let Policy {
        me,
        consensus,
        write_ack,
    } = facts.policy;
    consensus
        && write_ack != WriteAck::One
        && first_up(facts).is_some_and(|primary| primary.owner.node != me && primary.tko)
}

/// With consensus, the key's decided primary: its first owner that no
/// decision marked down.
fn first_up(facts: &Facts) -> Option<&OwnerFacts> {
    facts.owners.iter().find(|o| !o.down)
}

/// The key's first owner, for a write this node applied as primary in its
/// place (it recovered, settled, or a decision marked it down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoodInFor {
    /// The configuration in force now has it up: it is the key's primary, or
    /// will be once it has settled, and reads go to it.
    pub up_now: bool,
    /// It acknowledged the item.
    pub acked: bool,
}

/// Whether a write this node applied as primary may be acknowledged to the
/// client, once `acks` of the `needed` other owners have acknowledged it.
///
/// With consensus and `write_ack` `quorum` or `all`, a write this node took in
/// place of the key's first owner also needs that owner's own acknowledgement
/// while the configuration in force has it up. Without it, the item reaches
/// that owner only as a hint, which it may already have pulled when it
/// finishes settling; it would then serve reads as primary without the
/// write. The write is then of unknown outcome: stored here, hinted there.
pub fn write_acknowledged(
    policy: Policy,
    acks: usize,
    needed: usize,
    stood_in_for: Option<StoodInFor>,
) -> bool {
    if acks < needed {
        return false;
    }
    match stood_in_for {
        Some(first) if needs_first_owner(policy, first.up_now) => first.acked,
        _ => true,
    }
}

/// Whether a write this node applied as primary in place of the key's first
/// owner needs that owner's own acknowledgement (see [`write_acknowledged`]):
/// with consensus and `write_ack` `quorum` or `all`, while the configuration
/// in force has it up.
pub fn needs_first_owner(policy: Policy, up_now: bool) -> bool {
    policy.consensus && policy.write_ack != WriteAck::One && up_now
}

/// The shard of this node that held the key before the last move and still
/// holds it for its new owners (their reads come here while they copy).
pub fn handing_over(facts: &Facts) -> Option<Owner> {
    let me = facts.policy.me;
    if !facts.local.handing_over || facts.owners.iter().any(|o| o.owner.node == me) {
        return None;
    }
    facts
        .previous
        .as_ref()?
        .iter()
        .map(|o| o.owner)
        .find(|o| o.node == me)
}

/// The next owner a client's request may go to, leaving out those in
/// `tried`, TKO ones, and this node while it may not read (for reads) or
/// recovers (for writes, while another owner can take them).
pub fn next_candidate(facts: &Facts, access: Access, tried: &[Owner]) -> Option<Owner> {
    let write = access == Access::Write;
    let order = if write {
        &facts.owners
    } else {
        &facts.read_order
    };
    let Policy {
        me,
        consensus,
        write_ack,
    } = facts.policy;
    let local = &facts.local;
    // With consensus, writes go to the one decided primary; so do reads
    // with `quorum`, where another owner may not have a write the primary
    // acknowledged yet (with `all`, every owner that is up has it).
    if consensus && (write && write_ack != WriteAck::One || write_ack == WriteAck::Quorum) {
        let primary = decided_primary(facts, tried);
        if write {
            return primary;
        }
        // A read the decided primary cannot serve because the key is moving
        // to it (it has not copied the key yet, or refused it): the node that
        // held the key before the move still does. Not when the primary is
        // only unreachable: no other node stands in for it.
        let primary_unreachable = facts
            .owners
            .iter()
            .any(|o| !o.down && o.owner.node != me && o.tko);
        return match primary {
            Some(o) if o.node == me && !local.may_read => previous_owner(facts, order, tried),
            Some(o) => Some(o),
            None if primary_unreachable => None,
            None => previous_owner(facts, order, tried),
        };
    }
    // With consensus, an owner a decision marked down missed the writes
    // made since (they did not wait for it): it is read only when no
    // owner is up.
    let some_up = order.iter().any(|o| !o.down);
    let candidate = |o: &OwnerFacts, wait_for_recovery: bool| {
        let mine = o.owner.node == me;
        let skipped = (!mine && o.tko)
            || (consensus && !write && some_up && o.down)
            || (mine && !write && !local.may_read)
            // A recovering node is not primary for a write while another
            // owner can be: it has not yet got back what it missed.
            || (mine && write && local.recovering && wait_for_recovery)
            || (mine && write && local.settling)
            || (mine && write && local.lacks_shared);
        !tried.contains(&o.owner) && !skipped
    };
    let found = order.iter().find(|o| candidate(o, true));
    if let Some(found) = found {
        return Some(found.owner);
    }
    if write {
        return order.iter().find(|o| candidate(o, false)).map(|o| o.owner);
    }
    // No owner can serve the read yet (keys are moving): a node that held
    // the key before the move still does.
    previous_owner(facts, order, tried)
}

/// For a read no owner can serve yet (keys are moving): a node that held the
/// key before the move, is not one of its owners now, was not tried, and
/// is reachable.
fn previous_owner(facts: &Facts, order: &OwnerList, tried: &[Owner]) -> Option<Owner> {
    let me = facts.policy.me;
    facts
        .previous
        .as_ref()?
        .iter()
        .find(|o| {
            !tried.contains(&o.owner)
                && !order.contains(&o.owner)
                && o.addressed
                && (o.owner.node == me || !o.tko)
        })
        .map(|o| o.owner)
}

/// With consensus, where a write of the key goes: its first owner that no
/// decision marked down. That owner may pass the write on to the next one
/// that is up (it recovers, or lacks what it shares with an owner), unless
/// that one may lack what the primary acknowledged (see
/// [`stand_ins_may_be_stale`]); and no owner stands in for another that is
/// only unreachable: the write is refused until a decision marks that owner
/// down.
fn decided_primary(facts: &Facts, tried: &[Owner]) -> Option<Owner> {
    let me = facts.policy.me;
    let local = &facts.local;
    let unready = |o: &OwnerFacts| {
        o.owner.node == me && (local.recovering || local.lacks_shared || local.settling)
    };
    let mut candidates = facts.owners.iter().filter(|o| !o.down);
    loop {
        let o = candidates.next()?;
        if tried.contains(&o.owner) {
            // Tried and now unreachable: no other owner stands in for it
            // until a decision marks it down. One that refused (it
            // recovers) passes the request on to the next, unless the next
            // may lack what it acknowledged.
            if (o.owner.node != me && o.tko) || stand_ins_may_be_stale(facts) {
                return None;
            }
            continue;
        }
        if o.owner.node != me && o.tko {
            return None;
        }
        if unready(o) {
            if stand_ins_may_be_stale(facts) {
                return None;
            }
            // The next owner takes the write while this node catches up
            // (past those that refused it: they recover too); with none,
            // this node is primary only after a start (it holds what it
            // copied), never while it settles after a pause. An owner that
            // is only unreachable from here is not passed over: the nodes
            // that reach it send it this key's writes, and a stand-in here
            // would be a second primary.
            let next = facts
                .owners
                .iter()
                .filter(|n| !n.down && n.owner.node != me)
                .find(|n| n.tko || !tried.contains(&n.owner));
            return match next {
                Some(next) if next.tko => None,
                Some(next) => Some(next.owner),
                None if local.settling => None,
                None => Some(o.owner),
            };
        }
        return Some(o.owner);
    }
}

/// Whether another node that a decision has not marked down owns the key.
fn shared_with_a_live_peer(facts: &Facts) -> bool {
    let me = facts.policy.me;
    facts.owners.iter().any(|o| o.owner.node != me && !o.down)
}

#[cfg(test)]
mod tests {
    use super::Access::{Read, Write};
    use super::*;

    /// Node `node`'s shard that owns the key: numbered apart from the node, so
    /// a route names the right shard as well as the right node.
    fn on(node: u32) -> Owner {
        Owner {
            node,
            shard: node + 10,
        }
    }

    /// One key's situation as a test builds it up: [`Scene::facts`] makes the
    /// [`Facts`] the runtime would gather from it. Nodes are named by number.
    #[derive(Clone)]
    struct Scene {
        me: u32,
        consensus: bool,
        write_ack: WriteAck,
        epoch: u64,
        owners: Vec<u32>,
        down: Vec<u32>,
        tko: Vec<u32>,
        unaddressed: Vec<u32>,
        previous: Option<Vec<u32>>,
        local: Local,
    }

    impl Scene {
        /// This node is `me`; the key's owners are `owners`, in write order;
        /// no consensus, `write_ack` `quorum`, every node up and reachable,
        /// and this node serving.
        fn new(me: u32, owners: &[u32]) -> Scene {
            Scene {
                me,
                consensus: false,
                write_ack: WriteAck::Quorum,
                epoch: 7,
                owners: owners.to_vec(),
                down: Vec::new(),
                tko: Vec::new(),
                unaddressed: Vec::new(),
                previous: None,
                local: Local {
                    may_read: true,
                    ..Local::default()
                },
            }
        }

        fn consensus(mut self, write_ack: WriteAck) -> Scene {
            self.consensus = true;
            self.write_ack = write_ack;
            self
        }

        fn write_ack(mut self, write_ack: WriteAck) -> Scene {
            self.write_ack = write_ack;
            self
        }

        fn down(mut self, nodes: &[u32]) -> Scene {
            self.down = nodes.to_vec();
            self
        }

        fn tko(mut self, nodes: &[u32]) -> Scene {
            self.tko = nodes.to_vec();
            self
        }

        fn previous(mut self, nodes: &[u32]) -> Scene {
            self.previous = Some(nodes.to_vec());
            self
        }

        fn local(mut self, local: Local) -> Scene {
            self.local = local;
            self
        }

        fn facts(&self) -> Facts {
            let facts_of = |node: u32| OwnerFacts {
                owner: on(node),
                down: self.down.contains(&node),
                tko: self.tko.contains(&node),
                addressed: !self.unaddressed.contains(&node),
            };
            let owners: OwnerList = self.owners.iter().map(|&n| facts_of(n)).collect();
            // As placement orders reads: the owners that are up, then those down.
            let read_order = owners
                .iter()
                .filter(|o| !o.down)
                .chain(owners.iter().filter(|o| o.down))
                .copied()
                .collect();
            Facts {
                policy: Policy {
                    me: self.me,
                    consensus: self.consensus,
                    write_ack: self.write_ack,
                },
                epoch: self.epoch,
                owners,
                read_order,
                previous: self
                    .previous
                    .as_ref()
                    .map(|p| p.iter().map(|&n| facts_of(n)).collect()),
                local: self.local,
            }
        }

        fn client(&self, access: Access) -> Route {
            client(&self.facts(), access)
        }

        fn next(&self, access: Access, tried: &[u32]) -> Option<Owner> {
            let tried: Vec<Owner> = tried.iter().map(|&n| on(n)).collect();
            next_candidate(&self.facts(), access, &tried)
        }

        fn sent_by_peer(&self, mode: PeerMode, access: Access) -> Route {
            peer(&self.facts(), mode, self.epoch, access)
        }
    }

    const RECOVERING: Local = Local {
        recovering: true,
        settling: false,
        lacks_shared: false,
        may_read: false,
        handing_over: false,
    };

    const SETTLING: Local = Local {
        recovering: true,
        settling: true,
        lacks_shared: false,
        may_read: false,
        handing_over: false,
    };

    const LACKING: Local = Local {
        recovering: false,
        settling: false,
        lacks_shared: true,
        may_read: false,
        handing_over: false,
    };

    const ALL_WRITE_ACKS: [WriteAck; 3] = [WriteAck::One, WriteAck::Quorum, WriteAck::All];

    fn refused() -> Route {
        Route::Refuse(Refusal::NoOwnerReachable)
    }

    // --- The plain path ---

    #[test]
    fn a_write_goes_to_the_keys_first_owner() {
        assert_eq!(Scene::new(1, &[2, 3, 1]).client(Write), Route::Peer(on(2)));
    }

    #[test]
    fn a_write_this_node_owns_first_is_applied_here_as_primary() {
        let scene = Scene::new(1, &[1, 2, 3]);
        assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
        let scene = scene.consensus(WriteAck::Quorum);
        assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
    }

    #[test]
    fn a_read_this_node_owns_first_is_served_here() {
        let scene = Scene::new(1, &[1, 2, 3]);
        assert_eq!(scene.client(Read), Route::Shard(11, Role::Plain));
    }

    #[test]
    fn reads_try_owners_marked_down_last() {
        let scene = Scene::new(1, &[2, 3, 1]).down(&[2]);
        assert_eq!(scene.client(Read), Route::Peer(on(3)));
    }

    #[test]
    fn without_consensus_a_write_follows_the_write_order_even_to_a_primary_marked_down() {
        let scene = Scene::new(1, &[2, 3, 1]).down(&[2]);
        assert_eq!(scene.client(Write), Route::Peer(on(2)));
    }

    // --- An unreachable (TKO) primary and one marked down, by write_ack ---

    #[test]
    fn without_consensus_the_next_owner_stands_in_for_an_unreachable_primary() {
        for write_ack in ALL_WRITE_ACKS {
            let scene = Scene::new(1, &[2, 3, 1]).write_ack(write_ack).tko(&[2]);
            assert_eq!(scene.client(Write), Route::Peer(on(3)), "{write_ack:?}");
            let scene = Scene::new(1, &[2, 1, 3]).write_ack(write_ack).tko(&[2]);
            assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
        }
    }

    #[test]
    fn with_consensus_and_write_ack_one_the_next_owner_stands_in_for_an_unreachable_primary() {
        let scene = Scene::new(1, &[2, 1, 3]).consensus(WriteAck::One).tko(&[2]);
        assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
    }

    #[test]
    fn with_consensus_and_write_ack_quorum_or_all_a_write_to_an_unreachable_primary_is_refused() {
        for write_ack in [WriteAck::Quorum, WriteAck::All] {
            let scene = Scene::new(1, &[2, 1, 3]).consensus(write_ack).tko(&[2]);
            assert_eq!(scene.next(Write, &[]), None, "{write_ack:?}");
            assert_eq!(scene.client(Write), refused(), "{write_ack:?}");
        }
    }

    #[test]
    fn with_consensus_the_next_owner_takes_over_from_a_primary_marked_down() {
        for write_ack in [WriteAck::Quorum, WriteAck::All] {
            let scene = Scene::new(1, &[2, 1, 3]).consensus(write_ack).down(&[2]);
            assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
            let scene = Scene::new(1, &[2, 3, 1]).consensus(write_ack).down(&[2]);
            assert_eq!(scene.client(Write), Route::Peer(on(3)), "{write_ack:?}");
        }
    }

    #[test]
    fn with_consensus_and_write_ack_one_a_write_skips_only_unreachable_owners() {
        // A mark down alone does not turn a write away (as without consensus).
        let scene = Scene::new(1, &[2, 1, 3])
            .consensus(WriteAck::One)
            .down(&[2]);
        assert_eq!(scene.client(Write), Route::Peer(on(2)));
        assert_eq!(
            scene.tko(&[2]).client(Write),
            Route::Shard(11, Role::Primary)
        );
    }

    #[test]
    fn with_consensus_an_unreachable_owner_after_a_primary_marked_down_is_not_stood_in_for() {
        let scene = Scene::new(1, &[2, 3, 1])
            .consensus(WriteAck::Quorum)
            .down(&[2])
            .tko(&[3]);
        assert_eq!(scene.client(Write), refused());
    }

    #[test]
    fn with_consensus_an_unreachable_replica_does_not_stop_a_write() {
        for write_ack in [WriteAck::Quorum, WriteAck::All] {
            let scene = Scene::new(1, &[2, 3, 1]).consensus(write_ack).tko(&[3]);
            assert_eq!(scene.client(Write), Route::Peer(on(2)), "{write_ack:?}");
        }
    }

    // --- Reads with consensus ---

    #[test]
    fn with_consensus_and_quorum_reads_go_to_the_decided_primary() {
        let scene = Scene::new(1, &[2, 1, 3])
            .consensus(WriteAck::Quorum)
            .tko(&[2]);
        // Not to this node, which may not have a write the primary
        // acknowledged: the read asks the primary anyway.
        assert_eq!(scene.next(Read, &[]), None);
        assert_eq!(scene.client(Read), Route::Peer(on(2)));
        let scene = Scene::new(1, &[2, 1, 3]).consensus(WriteAck::Quorum);
        assert_eq!(scene.client(Read), Route::Peer(on(2)));
    }

    #[test]
    fn with_consensus_and_quorum_a_read_goes_to_the_owner_after_a_primary_marked_down() {
        let scene = Scene::new(1, &[2, 1, 3])
            .consensus(WriteAck::Quorum)
            .down(&[2]);
        assert_eq!(scene.client(Read), Route::Shard(11, Role::Plain));
    }

    #[test]
    fn with_write_ack_all_or_one_reads_skip_an_unreachable_owner() {
        for write_ack in [WriteAck::One, WriteAck::All] {
            let scene = Scene::new(1, &[2, 3, 1]).consensus(write_ack).tko(&[2]);
            assert_eq!(scene.client(Read), Route::Peer(on(3)), "{write_ack:?}");
        }
    }

    #[test]
    fn with_consensus_a_read_skips_an_owner_marked_down_while_another_is_up() {
        let scene = Scene::new(1, &[2, 3]).down(&[2]).tko(&[3]);
        assert_eq!(scene.next(Read, &[]), Some(on(2)));
        let scene = scene.consensus(WriteAck::One);
        assert_eq!(scene.next(Read, &[]), None);
        // Every owner skipped: the read asks the first in read order.
        assert_eq!(scene.client(Read), Route::Peer(on(3)));
    }

    #[test]
    fn with_consensus_a_read_goes_to_an_owner_marked_down_when_none_is_up() {
        let scene = Scene::new(1, &[2, 3])
            .consensus(WriteAck::One)
            .down(&[2, 3]);
        assert_eq!(scene.client(Read), Route::Peer(on(2)));
    }

    // --- This node recovering, settling after a pause, lacking shared items ---

    #[test]
    fn a_recovering_node_passes_a_write_on_to_the_next_owner() {
        for scene in [
            Scene::new(1, &[1, 2, 3]),
            Scene::new(1, &[1, 2, 3]).consensus(WriteAck::All),
        ] {
            let scene = scene.local(RECOVERING);
            assert_eq!(scene.client(Write), Route::Peer(on(2)));
        }
    }

    #[test]
    fn a_recovering_node_passes_a_write_on_past_an_unreachable_owner_without_consensus() {
        let scene = Scene::new(1, &[1, 2, 3]).local(RECOVERING).tko(&[2]);
        assert_eq!(scene.client(Write), Route::Peer(on(3)));
    }

    #[test]
    fn without_consensus_a_recovering_node_is_primary_when_no_other_owner_is_reachable() {
        let scene = Scene::new(1, &[1, 2, 3]).local(RECOVERING).tko(&[2, 3]);
        assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
    }

    #[test]
    fn with_consensus_a_recovering_node_is_primary_only_when_every_other_owner_is_down() {
        let scene = Scene::new(1, &[1, 2, 3])
            .consensus(WriteAck::Quorum)
            .local(RECOVERING);
        assert_eq!(
            scene.clone().down(&[2, 3]).client(Write),
            Route::Shard(11, Role::Primary)
        );
        assert_eq!(scene.down(&[2]).tko(&[3]).client(Write), refused());
    }

    /// Nodes that reach the next owner send it the key's writes: a recovering
    /// node that cannot reach it must not take them itself, nor hand them to
    /// the owner after it, or two owners would each apply writes of the key.
    #[test]
    fn with_consensus_a_stand_in_write_waits_for_the_first_owner_that_is_up_again() {
        let quorum = Scene::new(2, &[3, 2, 1]).consensus(WriteAck::Quorum);
        let policy = quorum.facts().policy;
        let first = |up_now, acked| Some(StoodInFor { up_now, acked });
        // The first owner is up in the epoch in force and did not take the
        // item (its link closed, or it timed out): another owner's
        // acknowledgement is not enough, since reads go to the first owner.
        assert!(!write_acknowledged(policy, 1, 1, first(true, false)));
        assert!(write_acknowledged(policy, 1, 1, first(true, true)));
        // Marked down still: it pulls the hint once it is marked up again.
        assert!(write_acknowledged(policy, 1, 1, first(false, false)));
        // Not standing in: the other owners count as before.
        assert!(write_acknowledged(policy, 1, 1, None));
        assert!(!write_acknowledged(policy, 0, 1, None));
        // `one` answers on the primary's copy alone, and so does a cluster
        // without consensus (an owner stands in for an unreachable one).
        let one = Scene::new(2, &[3, 2, 1]).consensus(WriteAck::One);
        assert!(write_acknowledged(
            one.facts().policy,
            0,
            0,
            first(true, false)
        ));
        let file = Scene::new(2, &[3, 2, 1]);
        assert!(write_acknowledged(
            file.facts().policy,
            1,
            1,
            first(true, false)
        ));
    }

    #[test]
    fn with_consensus_an_unready_node_never_passes_over_an_unreachable_next_owner() {
        for local in [RECOVERING, SETTLING, LACKING] {
            let scene = Scene::new(1, &[1, 2, 3])
                .consensus(WriteAck::Quorum)
                .local(local)
                .tko(&[2]);
            assert_eq!(scene.client(Write), refused(), "{local:?}");
            assert_eq!(scene.next(Write, &[]), None, "{local:?}");
            // One that refused the write (it recovers too) is passed over.
            let scene = Scene::new(1, &[1, 2, 3])
                .consensus(WriteAck::All)
                .local(local);
            assert_eq!(scene.next(Write, &[2]), Some(on(3)), "{local:?}");
        }
    }

    #[test]
    fn a_node_settling_after_a_pause_is_primary_for_no_write() {
        for scene in [
            Scene::new(1, &[1, 2, 3]),
            Scene::new(1, &[1, 2, 3]).consensus(WriteAck::All),
        ] {
            let scene = scene.local(SETTLING);
            assert_eq!(scene.client(Write), Route::Peer(on(2)));
            let scene = scene.tko(&[2, 3]);
            assert_eq!(scene.client(Write), refused());
        }
    }

    #[test]
    fn without_consensus_a_node_lacking_shared_items_is_primary_for_none_of_them() {
        let scene = Scene::new(1, &[1, 2, 3]).local(LACKING);
        assert_eq!(scene.client(Write), Route::Peer(on(2)));
        assert_eq!(scene.tko(&[2, 3]).client(Write), refused());
    }

    #[test]
    fn with_consensus_a_node_lacking_shared_items_is_primary_only_when_no_other_owner_is() {
        let scene = Scene::new(1, &[1, 2, 3])
            .consensus(WriteAck::All)
            .local(LACKING);
        assert_eq!(scene.client(Write), Route::Peer(on(2)));
        assert_eq!(scene.clone().tko(&[2, 3]).client(Write), refused());
        let scene = scene.down(&[2, 3]);
        assert_eq!(scene.client(Write), Route::Shard(11, Role::Primary));
    }

    #[test]
    fn with_consensus_an_unready_node_passes_a_write_only_to_an_owner_that_is_up() {
        let scene = Scene::new(1, &[1, 2, 3])
            .consensus(WriteAck::Quorum)
            .local(RECOVERING)
            .down(&[2]);
        assert_eq!(scene.client(Write), Route::Peer(on(3)));
    }

    #[test]
    fn a_node_that_may_not_read_its_copy_sends_reads_to_the_next_owner() {
        for local in [RECOVERING, SETTLING, LACKING] {
            let scene = Scene::new(1, &[1, 2, 3]).local(local);
            assert_eq!(scene.client(Read), Route::Peer(on(2)), "{local:?}");
        }
    }

    // --- Every owner skipped ---

    #[test]
    fn a_read_with_every_owner_skipped_still_asks_the_first() {
        let scene = Scene::new(1, &[2, 3]).tko(&[2, 3]);
        assert_eq!(scene.client(Read), Route::Peer(on(2)));
    }

    #[test]
    fn a_write_with_every_owner_skipped_is_refused() {
        let scene = Scene::new(1, &[2, 3]).tko(&[2, 3]);
        assert_eq!(scene.client(Write), refused());
    }

    #[test]
    fn a_node_that_may_not_read_refuses_a_read_rather_than_answer_a_false_miss() {
        let scene = Scene::new(1, &[1, 2, 3]).local(RECOVERING).tko(&[2, 3]);
        assert_eq!(scene.client(Read), refused());
    }

    #[test]
    fn a_node_that_may_not_read_serves_its_copy_when_every_other_owner_is_marked_down() {
        let scene = Scene::new(1, &[1, 2, 3])
            .local(RECOVERING)
            .down(&[2, 3])
            .tko(&[2, 3]);
        assert_eq!(scene.client(Read), Route::Shard(11, Role::Plain));
    }

    // --- Keys moving: reads fall back to the owners before the move ---

    #[test]
    fn a_read_during_a_move_falls_back_to_an_owner_before_the_move() {
        let scene = Scene::new(1, &[1, 2])
            .local(RECOVERING)
            .tko(&[2])
            .previous(&[3, 4]);
        assert_eq!(scene.client(Read), Route::Peer(on(3)));
        assert_eq!(scene.next(Read, &[3]), Some(on(4)));
        assert_eq!(scene.next(Read, &[3, 4]), None);
    }

    #[test]
    fn a_read_during_a_move_asks_the_new_owners_first() {
        let scene = Scene::new(1, &[1, 2]).local(RECOVERING).previous(&[3, 4]);
        assert_eq!(scene.client(Read), Route::Peer(on(2)));
    }

    #[test]
    fn a_previous_owner_that_owns_the_key_now_is_not_asked_again() {
        let scene = Scene::new(1, &[1, 2])
            .local(RECOVERING)
            .tko(&[2])
            .previous(&[2, 3]);
        assert_eq!(scene.client(Read), Route::Peer(on(3)));
    }

    #[test]
    fn a_previous_owner_the_epoch_removed_is_not_asked() {
        let mut scene = Scene::new(1, &[1, 2])
            .local(RECOVERING)
            .tko(&[2])
            .previous(&[3, 4]);
        scene.unaddressed = vec![3];
        assert_eq!(scene.client(Read), Route::Peer(on(4)));
    }

    #[test]
    fn an_unreachable_previous_owner_is_not_asked() {
        let scene = Scene::new(1, &[1, 2])
            .local(RECOVERING)
            .tko(&[2, 3, 4])
            .previous(&[3, 4]);
        assert_eq!(scene.next(Read, &[]), None);
        assert_eq!(scene.client(Read), refused());
    }

    #[test]
    fn this_node_as_a_previous_owner_serves_even_with_its_own_tko_mark() {
        let scene = Scene::new(1, &[2, 3]).tko(&[1, 2, 3]).previous(&[1, 4]);
        assert_eq!(scene.client(Read), Route::Shard(11, Role::Plain));
    }

    #[test]
    fn with_consensus_and_quorum_a_read_the_new_primary_refused_goes_to_an_owner_before_the_move() {
        // Node 2 took the key over and has not copied it yet: it refused.
        let scene = Scene::new(1, &[2])
            .consensus(WriteAck::Quorum)
            .previous(&[1]);
        assert_eq!(scene.client(Read), Route::Peer(on(2)));
        assert_eq!(scene.next(Read, &[2]), Some(on(1)));
        // This node as the new primary, not yet able to read the key.
        let scene = Scene::new(1, &[1])
            .consensus(WriteAck::Quorum)
            .local(LACKING)
            .previous(&[3]);
        assert_eq!(scene.client(Read), Route::Peer(on(3)));
    }

    #[test]
    fn with_consensus_and_quorum_no_owner_before_the_move_stands_in_for_an_unreachable_primary() {
        let scene = Scene::new(1, &[2])
            .consensus(WriteAck::Quorum)
            .tko(&[2])
            .previous(&[1]);
        assert_eq!(scene.next(Read, &[]), None);
        assert_eq!(scene.next(Read, &[2]), None);
    }

    #[test]
    fn a_write_never_goes_to_an_owner_before_the_move() {
        let scene = Scene::new(1, &[2, 3]).tko(&[2, 3]).previous(&[4, 5]);
        assert_eq!(scene.next(Write, &[]), None);
        assert_eq!(scene.client(Write), refused());
    }

    // --- Retries: the owners already tried ---

    #[test]
    fn a_retry_skips_the_owners_already_tried() {
        let scene = Scene::new(1, &[2, 3, 1]);
        for access in [Read, Write] {
            assert_eq!(scene.next(access, &[2]), Some(on(3)));
            assert_eq!(scene.next(access, &[2, 3]), Some(on(1)));
            assert_eq!(scene.next(access, &[2, 3, 1]), None);
        }
    }

    #[test]
    fn with_consensus_a_tried_primary_now_unreachable_has_no_stand_in() {
        let scene = Scene::new(1, &[2, 3, 1])
            .consensus(WriteAck::Quorum)
            .tko(&[2]);
        assert_eq!(scene.next(Write, &[2]), None);
        assert_eq!(scene.next(Read, &[2]), None);
    }

    #[test]
    fn with_consensus_a_tried_primary_that_refused_passes_the_write_on() {
        let scene = Scene::new(1, &[2, 3, 1]).consensus(WriteAck::All);
        assert_eq!(scene.next(Write, &[2]), Some(on(3)));
        assert_eq!(scene.next(Write, &[2, 3]), Some(on(1)));
        assert_eq!(scene.next(Write, &[2, 3, 1]), None);
    }

    #[test]
    fn with_consensus_a_recovering_node_passes_a_write_to_an_owner_not_yet_tried() {
        let scene = Scene::new(1, &[1, 2, 3])
            .consensus(WriteAck::All)
            .local(RECOVERING);
        assert_eq!(scene.next(Write, &[2]), Some(on(3)));
        // Every other owner tried: it takes the write after a start ...
        assert_eq!(scene.next(Write, &[2, 3]), Some(on(1)));
        // ... but not while it settles after a pause.
        let scene = scene.local(SETTLING);
        assert_eq!(scene.next(Write, &[2, 3]), None);
    }

    // --- Cut off from the majority ---

    fn members(count: u32, tko: &[u32]) -> impl Iterator<Item = Member> + '_ {
        (1..=count).map(move |node| Member {
            node,
            tko: tko.contains(&node),
        })
    }

    fn policy(consensus: bool, write_ack: WriteAck) -> Policy {
        Policy {
            me: 1,
            consensus,
            write_ack,
        }
    }

    #[test]
    fn with_consensus_a_node_reaching_no_majority_is_cut_off() {
        for write_ack in [WriteAck::Quorum, WriteAck::All] {
            let policy = policy(true, write_ack);
            assert!(cut_off(&policy, members(3, &[2, 3])), "{write_ack:?}");
            assert!(!cut_off(&policy, members(3, &[2])), "{write_ack:?}");
            assert!(!cut_off(&policy, members(5, &[4, 5])), "{write_ack:?}");
            assert!(cut_off(&policy, members(5, &[3, 4, 5])), "{write_ack:?}");
        }
    }

    #[test]
    fn half_the_members_is_no_majority() {
        assert!(cut_off(
            &policy(true, WriteAck::Quorum),
            members(4, &[3, 4])
        ));
    }

    #[test]
    fn with_write_ack_one_no_node_is_cut_off() {
        assert!(!cut_off(&policy(true, WriteAck::One), members(3, &[2, 3])));
    }

    #[test]
    fn without_consensus_no_node_is_cut_off() {
        for write_ack in ALL_WRITE_ACKS {
            assert!(!cut_off(&policy(false, write_ack), members(3, &[2, 3])));
        }
    }

    #[test]
    fn this_nodes_own_tko_mark_is_not_held_against_it() {
        assert!(!cut_off(
            &policy(true, WriteAck::Quorum),
            members(3, &[1, 2])
        ));
    }

    // --- Requests from other nodes ---

    #[test]
    fn a_peer_at_another_epoch_is_told_this_nodes_epoch() {
        let scene = Scene::new(1, &[1, 2]);
        let route = peer(&scene.facts(), PeerMode::Forward, 6, Read);
        assert_eq!(route, Route::Refuse(Refusal::Epoch(7)));
        let mut out = Vec::new();
        Refusal::Epoch(7).write(&mut out);
        assert_eq!(
            out,
            b"SERVER_ERROR cluster epoch mismatch: this node is at epoch 7\r\n"
        );
    }

    #[test]
    fn an_owner_applies_another_nodes_requests_in_their_roles() {
        let scene = Scene::new(1, &[2, 1, 3]);
        let cases = [
            (PeerMode::Forward, Read, Role::Plain),
            (PeerMode::Forward, Write, Role::Primary),
            (PeerMode::Replica, Write, Role::Replica),
            (PeerMode::Replica, Read, Role::Plain),
            (PeerMode::Copy(3), Write, Role::Copy(3)),
            (PeerMode::Merge(2), Write, Role::Merge(2)),
        ];
        for (mode, access, role) in cases {
            assert_eq!(scene.sent_by_peer(mode, access), Route::Shard(11, role));
        }
    }

    #[test]
    fn a_node_that_does_not_own_the_key_refuses_another_nodes_request() {
        let scene = Scene::new(1, &[2, 3]).previous(&[1, 2]);
        for mode in [PeerMode::Forward, PeerMode::Replica, PeerMode::Copy(2)] {
            for access in [Read, Write] {
                let route = scene.sent_by_peer(mode, access);
                assert_eq!(route, Route::Refuse(Refusal::NotAnOwner));
            }
        }
    }

    #[test]
    fn a_node_handing_over_a_key_it_lost_serves_forwarded_reads_of_it() {
        let handing_over = Local {
            handing_over: true,
            ..Local::default()
        };
        let scene = Scene::new(1, &[2, 3]).previous(&[1, 2]).local(handing_over);
        let refused = Route::Refuse(Refusal::NotAnOwner);
        assert_eq!(
            scene.sent_by_peer(PeerMode::Forward, Read),
            Route::Shard(11, Role::Plain)
        );
        assert_eq!(scene.sent_by_peer(PeerMode::Forward, Write), refused);
        assert_eq!(scene.sent_by_peer(PeerMode::Replica, Read), refused);
        // Not among the owners before the move either: nothing to hand over.
        let scene = Scene::new(1, &[2, 3]).previous(&[3, 4]).local(handing_over);
        assert_eq!(scene.sent_by_peer(PeerMode::Forward, Read), refused);
    }

    #[test]
    fn a_recovering_owner_refuses_a_forwarded_read_while_another_owner_is_reachable() {
        let scene = Scene::new(1, &[1, 2, 3]).local(RECOVERING);
        let refused = Route::Refuse(Refusal::Recovering);
        assert_eq!(scene.sent_by_peer(PeerMode::Forward, Read), refused);
        // Reachable only among the owners before the move still counts.
        let scene = scene.tko(&[2, 3]).previous(&[4]);
        assert_eq!(scene.sent_by_peer(PeerMode::Forward, Read), refused);
    }

    #[test]
    fn a_recovering_owner_that_is_the_only_one_left_serves_forwarded_reads() {
        let mut scene = Scene::new(1, &[1, 2, 3])
            .local(RECOVERING)
            .tko(&[2, 3])
            .previous(&[4]);
        scene.unaddressed = vec![4];
        let route = scene.sent_by_peer(PeerMode::Forward, Read);
        assert_eq!(route, Route::Shard(11, Role::Plain));
    }

    #[test]
    fn an_owner_lacking_shared_items_refuses_forwarded_reads_even_alone() {
        let scene = Scene::new(1, &[1, 2, 3]).local(LACKING).tko(&[2, 3]);
        let route = scene.sent_by_peer(PeerMode::Forward, Read);
        assert_eq!(route, Route::Refuse(Refusal::Recovering));
    }

    #[test]
    fn a_recovering_owner_refuses_a_forwarded_write_while_another_owner_is_reachable() {
        let scene = Scene::new(1, &[2, 1, 3]).local(RECOVERING);
        let route = scene.sent_by_peer(PeerMode::Forward, Write);
        assert_eq!(route, Route::Refuse(Refusal::Recovering));
        let scene = scene.tko(&[2, 3]);
        let route = scene.sent_by_peer(PeerMode::Forward, Write);
        assert_eq!(route, Route::Shard(11, Role::Primary));
    }

    #[test]
    fn with_consensus_an_owner_refuses_to_stand_in_for_a_decided_primary_it_does_not_reach() {
        // The primary (node 2), settling after a cut-off, passes its client's
        // write on; node 1 still has it TKO: it could send it only a hint,
        // which node 2 may have pulled already. Node 3, which reaches it,
        // takes the write and sends node 2 the item (with `all`: with
        // `quorum` at three owners none stands in, see the test below).
        for write_ack in [WriteAck::Quorum, WriteAck::All] {
            let scene = Scene::new(1, &[2, 1, 3]).consensus(write_ack).tko(&[2]);
            let route = scene.sent_by_peer(PeerMode::Forward, Write);
            assert_eq!(route, Route::Refuse(Refusal::Recovering), "{write_ack:?}");
        }
        let scene = Scene::new(3, &[2, 1, 3]).consensus(WriteAck::All);
        let route = scene.sent_by_peer(PeerMode::Forward, Write);
        assert_eq!(route, Route::Shard(13, Role::Primary));
    }

    /// With `quorum` at three owners, a write the primary acknowledged with
    /// one other owner may be missing at the third: standing in while the
    /// primary recovers, settles or lacks what it shares with a peer, the
    /// third would count a counter on from an older value. None does.
    #[test]
    fn with_consensus_and_quorum_short_of_all_no_owner_stands_in_for_an_unready_primary() {
        for local in [RECOVERING, SETTLING, LACKING] {
            // This node is the primary, and unready: its client is refused.
            let scene = Scene::new(1, &[1, 2, 3])
                .consensus(WriteAck::Quorum)
                .local(local);
            assert_eq!(scene.client(Write), refused(), "{local:?}");
            assert_eq!(scene.client(Read), refused(), "{local:?}");
            assert_eq!(scene.next(Write, &[2]), None, "{local:?}");
        }
        // The primary (node 2) refused: no other owner is asked.
        let scene = Scene::new(1, &[2, 1, 3]).consensus(WriteAck::Quorum);
        assert_eq!(scene.next(Write, &[2]), None);
        assert_eq!(scene.next(Read, &[2]), None);
        // Sent a client's request anyway (the sender's view is older), an
        // owner that is not the decided primary refuses it; it still
        // applies the primary's replicated items.
        for access in [Write, Read] {
            let route = scene.sent_by_peer(PeerMode::Forward, access);
            assert_eq!(route, Route::Refuse(Refusal::Recovering), "{access:?}");
        }
        let route = scene.sent_by_peer(PeerMode::Replica, Write);
        assert_eq!(route, Route::Shard(11, Role::Replica));
        // With one owner marked down, the two left both have every write
        // acknowledged since (they took over first): one stands in.
        let scene = scene.down(&[3]);
        assert!(!stand_ins_may_be_stale(&scene.facts()));
        assert_eq!(scene.next(Write, &[2]), Some(on(1)));
        // `all`, and `quorum` at two owners, wait for every owner that is up.
        assert!(!stand_ins_may_be_stale(
            &Scene::new(1, &[2, 1]).consensus(WriteAck::Quorum).facts()
        ));
        assert!(!stand_ins_may_be_stale(
            &Scene::new(1, &[2, 1, 3]).consensus(WriteAck::All).facts()
        ));
        assert!(!stand_ins_may_be_stale(
            &Scene::new(1, &[2, 1, 3])
                .write_ack(WriteAck::Quorum)
                .facts()
        ));
    }

    #[test]
    fn an_owner_stands_in_for_an_unreachable_primary_marked_down_or_with_write_ack_one() {
        // Marked down: the next owner up is the decided primary.
        let scene = Scene::new(1, &[2, 1, 3])
            .consensus(WriteAck::Quorum)
            .down(&[2])
            .tko(&[2]);
        let route = scene.sent_by_peer(PeerMode::Forward, Write);
        assert_eq!(route, Route::Shard(11, Role::Primary));
        // `one` puts availability first; without consensus any owner stands in.
        for scene in [
            Scene::new(1, &[2, 1, 3]).consensus(WriteAck::One),
            Scene::new(1, &[2, 1, 3]),
        ] {
            let route = scene.tko(&[2]).sent_by_peer(PeerMode::Forward, Write);
            assert_eq!(route, Route::Shard(11, Role::Primary));
        }
        // Replicated items are applied whatever this node reaches.
        let scene = Scene::new(1, &[2, 1, 3])
            .consensus(WriteAck::Quorum)
            .tko(&[2]);
        let route = scene.sent_by_peer(PeerMode::Replica, Write);
        assert_eq!(route, Route::Shard(11, Role::Replica));
    }

    #[test]
    fn a_settling_or_lacking_owner_refuses_forwarded_writes_even_alone() {
        for local in [SETTLING, LACKING] {
            let scene = Scene::new(1, &[2, 1, 3]).local(local).tko(&[2, 3]);
            let route = scene.sent_by_peer(PeerMode::Forward, Write);
            assert_eq!(route, Route::Refuse(Refusal::Recovering), "{local:?}");
        }
    }

    #[test]
    fn an_owner_that_is_not_ready_still_takes_replicated_copied_and_merged_items() {
        let unready = Local {
            recovering: true,
            settling: true,
            lacks_shared: true,
            may_read: false,
            handing_over: false,
        };
        let scene = Scene::new(1, &[2, 1, 3]).local(unready);
        let cases = [
            (PeerMode::Replica, Role::Replica),
            (PeerMode::Copy(2), Role::Copy(2)),
            (PeerMode::Merge(3), Role::Merge(3)),
        ];
        for (mode, role) in cases {
            assert_eq!(scene.sent_by_peer(mode, Write), Route::Shard(11, role));
        }
    }

    #[test]
    #[should_panic(expected = "more owners than replicas")]
    fn more_owners_than_replicas_is_a_bug() {
        let owners: Vec<u32> = (1..=REPLICAS_MAX as u32 + 1).collect();
        Scene::new(1, &owners).facts();
    }
}

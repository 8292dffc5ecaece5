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
        (PeerMode::Forward, Access::Read)
            if !local.may_read && (elsewhere() || local.lacks_shared) =>
        {
            return Route::Refuse(Refusal::Recovering)
        }
        // Nor is it primary for another node's client while it recovers: the
        // sender tries the next owner (a refusal, so the write was not
        // applied here).
        (PeerMode::Forward, Access::Write)
            if (local.recovering && elsewhere()) || local.lacks_shared || local.settling =>
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
        return decided_primary(facts, tried);
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
/// that is up (it recovers, or lacks what it shares with an owner), but no
/// owner stands in for another that is only unreachable: the write is
/// refused until a decision marks that owner down.
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
            // recovers) passes the request on to the next.
            if o.owner.node != me && o.tko {
                return None;
            }
            continue;
        }
        if o.owner.node != me && o.tko {
            return None;
        }
        if unready(o) {
            // The next owner takes the write while this node catches up;
            // with none, this node is primary only after a start (it
            // holds what it copied), never while it settles after a pause.
            let next = facts
                .owners
                .iter()
                .filter(|n| !n.down && n.owner.node != me && !tried.contains(&n.owner))
                .find(|n| !n.tko);
            return match next {
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

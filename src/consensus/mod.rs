//! Multi-Paxos over the cluster configuration: the pure consensus core.
//!
//! This module owns agreement on the sequence of cluster configurations, one per
//! **epoch**. It is pure: no clock (time is `now` in logical ticks), no randomness (the
//! node owns a tiny xorshift seeded by its caller), no disk and no sockets. The caller
//! (the control core in `src/runtime/`, the simulator in `tests/consensus_sim.rs`)
//! feeds [`Input`]s to [`Node::step`] and carries out the [`Output`]:
//!
//! 1. if `persist` is `Some`, write it and **fdatasync** before anything else;
//! 2. then send `messages` (a message to the node's own id is delivered back to it);
//! 3. hand `decided` values to the ring (they arrive in epoch order);
//! 4. call `step(now, Input::Tick)` once `now >= timer_at`.
//!
//! # The protocol
//!
//! One slot is open at a time: the slot for epoch `e` opens when the value of epoch
//! `e - 1` is decided, and that value names the acceptors (and learners) that decide
//! epoch `e`. Changing acceptors is therefore an ordinary decision; there is no joint
//! phase. Each slot is single-decree Paxos among its acceptors; Multi-Paxos comes from a
//! promise covering every slot from the one it was made in onwards, so a leader that
//! still holds promises from a quorum of the next slot's acceptors skips phase 1.
//!
//! Proposals are compare-and-set on the epoch: `Propose { epoch, value }` asks for
//! `value` to be decided *at* `epoch`, which must be the open slot. A proposal for an
//! old epoch is refused ([`ProposeResult::StaleEpoch`]); a proposal that loses the race
//! shows up as a different value decided at its epoch.
//!
//! # Identity and restarts
//!
//! [`Durable`] is everything that must survive a crash. Restarting with
//! [`Node::restore`] from the last synced `Durable` is safe. A node whose durable state
//! is lost (new disk, wiped `--data-dir`) must **not** come back under its old id: the
//! caller gives it a fresh `node_id` never used before (e.g. 64 random bits from the OS,
//! or the old id's incarnation bumped in the high bits) and builds it with
//! [`Node::new`] and the current configuration; it joins as a learner, and an admin
//! proposal that names the new id makes it an acceptor. Messages addressed to an old
//! incarnation are dropped by the new one.

mod message;
mod node;
mod test_configuration;
#[cfg(test)]
mod tests;

pub use message::{Accepted, Ballot, Body, Durable, Input, Message, Output, ProposeResult};
pub use node::Node;
pub use test_configuration::TestConfiguration;

/// A node's stable identity; a node that lost its durable state gets a new one.
pub type NodeId = u64;

/// The number of a configuration; the slot of epoch `e` decides configuration `e`.
pub type Epoch = u64;

/// Most acceptors one configuration may name (a quorum tally is this long at most).
pub const ACCEPTORS_MAX: usize = 7;
/// Most members (acceptors and learners) one configuration may name.
pub const MEMBERS_MAX: usize = 256;
/// Decided values kept (in memory and in [`Durable`]) to serve catching-up learners.
/// A learner that asks a node whose log no longer reaches back to its next epoch (it
/// is further behind than this, or the node joined after that epoch with a log that
/// starts at its join) jumps to the oldest value that node kept.
pub const DECIDED_LOG_MAX: usize = 16;
/// Most decided values in one catch-up reply.
pub const CATCHUP_BATCH_MAX: usize = DECIDED_LOG_MAX;
/// Most messages one step can emit: a heartbeat or decision to every member, plus
/// accepts or prepares to every acceptor, plus a few replies.
pub const OUTPUT_MESSAGES_MAX: usize = 2 * MEMBERS_MAX + 2 * ACCEPTORS_MAX + 4;
/// Ticks between heartbeats (which carry the decided epoch, so learners catch up).
pub const HEARTBEAT_TICKS: u64 = 10;
/// Ticks a proposer waits before retrying a phase; a random `0..RETRY_JITTER_TICKS`
/// is added so duelling proposers drift apart.
pub const RETRY_TICKS: u64 = 20;
/// Upper bound (exclusive) of the random back-off added to [`RETRY_TICKS`].
pub const RETRY_JITTER_TICKS: u64 = 30;
/// Ticks between two catch-up requests from one node.
pub const CATCHUP_RETRY_TICKS: u64 = 5;

/// What consensus needs to know about a configuration: who decides the next epoch,
/// and who else learns it. The rest of the value is opaque here.
pub trait Configuration: Clone + Eq + std::fmt::Debug {
    /// The acceptors that decide the *next* epoch, in any order, without duplicates.
    fn acceptors(&self) -> &[NodeId];
    /// Nodes that learn decisions but do not vote (acceptors need not be listed).
    fn learners(&self) -> &[NodeId];
}

/// Whether a configuration can be agreed: 1..=ACCEPTORS_MAX distinct acceptors and
/// at most MEMBERS_MAX members.
pub fn is_valid<V: Configuration>(value: &V) -> bool {
    let acceptors = value.acceptors();
    if acceptors.is_empty() || acceptors.len() > ACCEPTORS_MAX {
        return false;
    }
    if acceptors.len() + value.learners().len() > MEMBERS_MAX {
        return false;
    }
    acceptors
        .iter()
        .enumerate()
        .all(|(i, a)| !acceptors[..i].contains(a))
}

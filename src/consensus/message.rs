//! The consensus core's vocabulary: ballots, wire messages, inputs, outputs and the
//! durable state. Pure data; no behaviour beyond ordering and constructors.

use super::{Epoch, NodeId};

/// A Paxos ballot: ordered by `round`, then by `node` so two proposers never share one.
/// `Ballot::ZERO` is below every ballot a proposer uses (rounds start at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };
}

/// A value an acceptor accepted in phase 2, with the epoch (slot) it was for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Accepted<V> {
    pub ballot: Ballot,
    pub epoch: Epoch,
    pub value: V,
}

/// What the caller must persist (and fdatasync) before sending the messages of the
/// same [`Output`]. Restoring a node from the last synced copy is safe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Durable<V> {
    /// This incarnation's id. Never reused with different durable state.
    pub node_id: NodeId,
    /// Acceptor: no ballot below this is accepted, in any epoch not yet decided.
    pub promised: Ballot,
    /// Acceptor: the last value accepted (only the open slot's matters).
    pub accepted: Option<Accepted<V>>,
    /// Proposer: the highest round this node has used, so a restarted proposer never
    /// reuses a ballot (which could carry a different value).
    pub round_used: u64,
    /// Learner: the last decided values, ascending by epoch, never empty, at most
    /// [`super::DECIDED_LOG_MAX`]; the last one is the configuration in force.
    pub decided: Vec<(Epoch, V)>,
}

/// One message between nodes. Every message carries the sender's decided epoch, so
/// any message can tell a receiver it is behind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message<V> {
    pub from: NodeId,
    pub to: NodeId,
    pub decided_epoch: Epoch,
    pub body: Body<V>,
}

/// The message kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body<V> {
    /// Phase 1a: promise `ballot` for `epoch` and every later epoch.
    Prepare { ballot: Ballot, epoch: Epoch },
    /// Phase 1b: promised; `accepted` is what the acceptor accepted in `epoch`, if any.
    Promise {
        ballot: Ballot,
        epoch: Epoch,
        accepted: Option<(Ballot, V)>,
    },
    /// Phase 2a: accept `value` for `epoch` under `ballot`.
    Accept {
        ballot: Ballot,
        epoch: Epoch,
        value: V,
    },
    /// Phase 2b: accepted.
    Accepted { ballot: Ballot, epoch: Epoch },
    /// `ballot` was refused because the acceptor promised `promised`.
    Nack { ballot: Ballot, promised: Ballot },
    /// `value` is decided at `epoch`.
    Decided { epoch: Epoch, value: V },
    /// Nothing but the envelope: lets learners notice they are behind.
    Heartbeat,
    /// Please send the decided values from `from_epoch` on.
    CatchUp { from_epoch: Epoch },
    /// Decided values, ascending, at most [`super::CATCHUP_BATCH_MAX`].
    CatchUpReply { values: Vec<(Epoch, V)> },
}

/// One input to [`super::Node::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<V> {
    /// A message from the network (or from this node to itself).
    Message(Message<V>),
    /// The timer fired (`now >= timer_at` of the last output); spurious ticks are fine.
    Tick,
    /// Admin: decide `value` at `epoch` (compare-and-set on the epoch).
    Propose { epoch: Epoch, value: V },
}

/// The immediate answer to a proposal. Whether it won is seen in `Output::decided`: the
/// proposal won if and only if its value is the one decided at its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeResult {
    /// The node is working on it.
    Proposing,
    /// `epoch` is already decided; the caller should re-read the configuration.
    StaleEpoch { decided_epoch: Epoch },
    /// This node has not yet learned `epoch - 1`; ask again later or elsewhere.
    NodeBehind { decided_epoch: Epoch },
    /// A proposal for `epoch` is already pending on this node (one at a time).
    Busy { epoch: Epoch },
    /// The value names no acceptors, too many, duplicates, or too many members.
    InvalidConfiguration,
}

/// What one step asks the caller to do, in this order: persist, send, apply decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output<V> {
    /// Write and fdatasync this before sending `messages`.
    pub persist: Option<Durable<V>>,
    /// At most [`super::OUTPUT_MESSAGES_MAX`].
    pub messages: Vec<Message<V>>,
    /// Newly decided values, ascending by epoch.
    pub decided: Vec<(Epoch, V)>,
    /// Set for `Input::Propose` only.
    pub proposal: Option<ProposeResult>,
    /// Tick at which to call `step(_, Input::Tick)`.
    pub timer_at: u64,
}

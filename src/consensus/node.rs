//! One node's Multi-Paxos state machine: acceptor, proposer and learner in one struct,
//! driven only through [`Node::step`]. Pure: time, randomness seed, disk and network are
//! the caller's. Every handler first drops what it must ignore, then asserts.

use super::message::{Accepted, Ballot, Body, Durable, Input, Message, Output, ProposeResult};
use super::{
    is_valid, Configuration, Epoch, NodeId, CATCHUP_BATCH_MAX, CATCHUP_RETRY_TICKS,
    DECIDED_LOG_MAX, HEARTBEAT_TICKS, OUTPUT_MESSAGES_MAX, RETRY_JITTER_TICKS, RETRY_TICKS,
};

/// The proposer side of a node. Tallies hold at most `ACCEPTORS_MAX` ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Role<V> {
    Follower,
    /// Phase 1 for `epoch` under `ballot`.
    Candidate {
        ballot: Ballot,
        epoch: Epoch,
        promises: Vec<(NodeId, Option<(Ballot, V)>)>,
    },
    /// Phase 1 done: `promised_by` promised `ballot` for every epoch from the one it
    /// was run in, so phase 2 can run directly while they are a quorum.
    Leader {
        ballot: Ballot,
        promised_by: Vec<NodeId>,
        in_flight: Option<InFlight<V>>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct InFlight<V> {
    epoch: Epoch,
    value: V,
    accepted_by: Vec<NodeId>,
}

/// A consensus node. Single owner; lives on the control core. `Hash` and `Eq` let a
/// model checker (tests/consensus_model.rs) store and compare whole node states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node<V> {
    durable: Durable<V>,
    dirty: bool,
    role: Role<V>,
    /// The admin proposal this node is driving (one at a time).
    pending: Option<(Epoch, V)>,
    /// Highest round seen in any ballot, so the next campaign outbids it.
    round_seen: u64,
    rng: u64,
    heartbeat_at: u64,
    retry_at: Option<u64>,
    catchup_sent_at: Option<u64>,
}

impl<V: Configuration> Node<V> {
    /// A node with no durable state: either a bootstrap acceptor with the genesis
    /// configuration as epoch 0 (the same on every node), or a new incarnation joining
    /// with the configuration it was told about (`epoch`, `config`). `seed` feeds the
    /// back-off; the caller takes it from the OS (the simulator from its seed).
    /// The first output persists the initial durable state.
    pub fn new(node_id: NodeId, epoch: Epoch, config: V, seed: u64) -> Self {
        assert!(
            is_valid(&config),
            "invalid initial configuration {config:?}"
        );
        let durable = Durable {
            node_id,
            promised: Ballot::ZERO,
            accepted: None,
            round_used: 0,
            decided: vec![(epoch, config)],
        };
        let mut node = Self::restore(durable, seed);
        node.dirty = true;
        node
    }

    /// A node restarted from the last synced durable state.
    pub fn restore(durable: Durable<V>, seed: u64) -> Self {
        assert!(!durable.decided.is_empty() && durable.decided.len() <= DECIDED_LOG_MAX);
        assert!(durable.decided.windows(2).all(|w| w[0].0 < w[1].0));
        let round_seen = durable.round_used.max(durable.promised.round);
        Node {
            durable,
            dirty: false,
            role: Role::Follower,
            pending: None,
            round_seen,
            // xorshift64 must not start at zero.
            rng: seed | 1,
            heartbeat_at: 0,
            retry_at: None,
            catchup_sent_at: None,
        }
    }

    pub fn id(&self) -> NodeId {
        self.durable.node_id
    }

    /// The durable state as of the last step (what the caller was asked to persist).
    pub fn durable(&self) -> &Durable<V> {
        &self.durable
    }

    /// The newest decided epoch this node knows.
    pub fn decided_epoch(&self) -> Epoch {
        self.current().0
    }

    /// The configuration in force on this node.
    pub fn config(&self) -> &V {
        &self.current().1
    }

    /// The decided value this node remembers for `epoch`, if it is still in the log.
    pub fn decided_at(&self, epoch: Epoch) -> Option<&V> {
        self.durable
            .decided
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, v)| v)
    }

    /// Whether this node currently believes it leads (holds a quorum of promises).
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// Advance the state machine by one input.
    pub fn step(&mut self, now: u64, input: Input<V>) -> Output<V> {
        let mut out = Output {
            persist: None,
            messages: Vec::new(),
            decided: Vec::new(),
            proposal: None,
            timer_at: 0,
        };
        match input {
            Input::Tick => self.on_tick(now, &mut out),
            Input::Propose { epoch, value } => {
                let result = self.on_propose(now, epoch, value, &mut out);
                out.proposal = Some(result);
            }
            Input::Message(message) => self.on_message(now, message, &mut out),
        }
        if self.dirty {
            self.dirty = false;
            out.persist = Some(self.durable.clone());
        }
        assert!(out.messages.len() <= OUTPUT_MESSAGES_MAX);
        out.timer_at = match self.retry_at {
            Some(retry_at) => retry_at.min(self.heartbeat_at),
            None => self.heartbeat_at,
        };
        out
    }

    // ---- helpers ----------------------------------------------------------------

    fn current(&self) -> &(Epoch, V) {
        self.durable
            .decided
            .last()
            .expect("decided log is never empty")
    }

    fn open_epoch(&self) -> Epoch {
        self.decided_epoch() + 1
    }

    fn acceptors(&self) -> Vec<NodeId> {
        self.config().acceptors().to_vec()
    }

    fn quorum(&self) -> usize {
        self.config().acceptors().len() / 2 + 1
    }

    fn is_acceptor(&self, node: NodeId) -> bool {
        self.config().acceptors().contains(&node)
    }

    /// Every member of the configuration in force except this node.
    fn others(&self) -> Vec<NodeId> {
        let config = self.config();
        let me = self.id();
        let mut members: Vec<NodeId> = config.acceptors().to_vec();
        for l in config.learners() {
            if !members.contains(l) {
                members.push(*l);
            }
        }
        members.retain(|m| *m != me);
        members
    }

    fn send(&self, out: &mut Output<V>, to: NodeId, body: Body<V>) {
        out.messages.push(Message {
            from: self.id(),
            to,
            decided_epoch: self.decided_epoch(),
            body,
        });
    }

    fn random(&mut self) -> u64 {
        // xorshift64 (Marsaglia): enough to spread retries, not for anything secret.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn backoff(&mut self, now: u64) -> u64 {
        now + RETRY_TICKS + self.random() % RETRY_JITTER_TICKS
    }

    fn role_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Follower => None,
            Role::Candidate { ballot, .. } | Role::Leader { ballot, .. } => Some(*ballot),
        }
    }

    /// Someone runs a higher ballot: stop proposing and retry after a back-off.
    fn observe_ballot(&mut self, now: u64, ballot: Ballot) {
        self.round_seen = self.round_seen.max(ballot.round);
        if let Some(mine) = self.role_ballot() {
            if ballot > mine {
                self.step_down(now);
            }
        }
    }

    fn step_down(&mut self, now: u64) {
        self.role = Role::Follower;
        self.retry_at = if self.pending.is_some() {
            Some(self.backoff(now))
        } else {
            None
        };
    }

    fn values_from(&self, from_epoch: Epoch) -> Vec<(Epoch, V)> {
        self.durable
            .decided
            .iter()
            .filter(|(e, _)| *e >= from_epoch)
            .take(CATCHUP_BATCH_MAX)
            .cloned()
            .collect()
    }

    fn maybe_catch_up(&mut self, now: u64, from: NodeId, out: &mut Output<V>) {
        if let Some(sent_at) = self.catchup_sent_at {
            if now < sent_at + CATCHUP_RETRY_TICKS {
                return;
            }
        }
        self.catchup_sent_at = Some(now);
        let from_epoch = self.open_epoch();
        self.send(out, from, Body::CatchUp { from_epoch });
    }

    // ---- inputs -------------------------------------------------------------------

    fn on_tick(&mut self, now: u64, out: &mut Output<V>) {
        if now >= self.heartbeat_at {
            self.heartbeat_at = now + HEARTBEAT_TICKS;
            for to in self.others() {
                self.send(out, to, Body::Heartbeat);
            }
        }
        match self.retry_at {
            Some(retry_at) if now >= retry_at => {}
            _ => return,
        }
        self.retry_at = None;
        match &self.role {
            Role::Follower | Role::Candidate { .. } => {
                if self.pending.is_some() {
                    self.campaign(now, out);
                } else {
                    self.role = Role::Follower;
                }
            }
            Role::Leader {
                ballot,
                in_flight: Some(in_flight),
                ..
            } => {
                // Resend phase 2 to the acceptors that have not answered.
                let (ballot, epoch, value) = (*ballot, in_flight.epoch, in_flight.value.clone());
                let missing: Vec<NodeId> = self
                    .acceptors()
                    .into_iter()
                    .filter(|a| !in_flight.accepted_by.contains(a))
                    .collect();
                for to in missing {
                    let value = value.clone();
                    self.send(
                        out,
                        to,
                        Body::Accept {
                            ballot,
                            epoch,
                            value,
                        },
                    );
                }
                self.retry_at = Some(self.backoff(now));
            }
            Role::Leader {
                in_flight: None, ..
            } => self.start_pending(now, out),
        }
    }

    fn on_propose(
        &mut self,
        now: u64,
        epoch: Epoch,
        value: V,
        out: &mut Output<V>,
    ) -> ProposeResult {
        let decided_epoch = self.decided_epoch();
        if epoch <= decided_epoch {
            return ProposeResult::StaleEpoch { decided_epoch };
        }
        if epoch > decided_epoch + 1 {
            return ProposeResult::NodeBehind { decided_epoch };
        }
        if !is_valid(&value) {
            return ProposeResult::InvalidConfiguration;
        }
        if let Some((pending_epoch, _)) = &self.pending {
            return ProposeResult::Busy {
                epoch: *pending_epoch,
            };
        }
        self.pending = Some((epoch, value));
        match &self.role {
            Role::Follower => self.campaign(now, out),
            Role::Candidate { .. } => {}
            Role::Leader {
                in_flight: None, ..
            } => self.start_pending(now, out),
            // A value recovered in phase 1 is in flight; ours waits for its outcome.
            Role::Leader { .. } => {}
        }
        ProposeResult::Proposing
    }

    /// Phase 1 under a fresh ballot, which is persisted before the prepares leave.
    fn campaign(&mut self, now: u64, out: &mut Output<V>) {
        let round = self.round_seen.max(self.durable.round_used) + 1;
        self.durable.round_used = round;
        self.round_seen = round;
        self.dirty = true;
        let ballot = Ballot {
            round,
            node: self.id(),
        };
        let epoch = self.open_epoch();
        self.role = Role::Candidate {
            ballot,
            epoch,
            promises: Vec::new(),
        };
        for to in self.acceptors() {
            self.send(out, to, Body::Prepare { ballot, epoch });
        }
        self.retry_at = Some(self.backoff(now));
    }

    /// As an idle leader, start phase 2 for the pending proposal, if any.
    fn start_pending(&mut self, now: u64, out: &mut Output<V>) {
        let Some((epoch, value)) = self.pending.clone() else {
            return;
        };
        assert_eq!(
            epoch,
            self.open_epoch(),
            "a pending proposal is for the open epoch"
        );
        self.start_phase2(now, epoch, value, out);
    }

    fn start_phase2(&mut self, now: u64, epoch: Epoch, value: V, out: &mut Output<V>) {
        assert_eq!(
            epoch,
            self.open_epoch(),
            "phase 2 runs in the open epoch only"
        );
        let Role::Leader {
            ballot, in_flight, ..
        } = &mut self.role
        else {
            panic!("phase 2 without leadership");
        };
        assert!(in_flight.is_none());
        let ballot = *ballot;
        *in_flight = Some(InFlight {
            epoch,
            value: value.clone(),
            accepted_by: Vec::new(),
        });
        for to in self.acceptors() {
            let value = value.clone();
            self.send(
                out,
                to,
                Body::Accept {
                    ballot,
                    epoch,
                    value,
                },
            );
        }
        self.retry_at = Some(self.backoff(now));
    }

    fn on_message(&mut self, now: u64, message: Message<V>, out: &mut Output<V>) {
        // Addressed to an earlier incarnation at this address: not ours to answer.
        if message.to != self.id() {
            return;
        }
        let from = message.from;
        if message.decided_epoch > self.decided_epoch() {
            self.maybe_catch_up(now, from, out);
        }
        match message.body {
            Body::Prepare { ballot, epoch } => self.on_prepare(now, from, ballot, epoch, out),
            Body::Promise {
                ballot,
                epoch,
                accepted,
            } => self.on_promise(now, from, ballot, epoch, accepted, out),
            Body::Accept {
                ballot,
                epoch,
                value,
            } => self.on_accept(now, from, ballot, epoch, value, out),
            Body::Accepted { ballot, epoch } => self.on_accepted(from, ballot, epoch, out),
            Body::Nack { ballot, promised } => self.on_nack(now, ballot, promised),
            Body::Decided { epoch, value } => self.on_decided(epoch, value, out),
            Body::Heartbeat => {
                if message.decided_epoch < self.decided_epoch() {
                    let values = self.values_from(message.decided_epoch + 1);
                    self.send(out, from, Body::CatchUpReply { values });
                }
            }
            Body::CatchUp { from_epoch } => {
                let values = self.values_from(from_epoch);
                if !values.is_empty() {
                    self.send(out, from, Body::CatchUpReply { values });
                }
            }
            Body::CatchUpReply { values } => self.on_catch_up_reply(values, out),
        }
    }

    fn on_prepare(
        &mut self,
        now: u64,
        from: NodeId,
        ballot: Ballot,
        epoch: Epoch,
        out: &mut Output<V>,
    ) {
        self.round_seen = self.round_seen.max(ballot.round);
        if ballot < self.durable.promised {
            let promised = self.durable.promised;
            self.send(out, from, Body::Nack { ballot, promised });
            return;
        }
        if epoch <= self.decided_epoch() {
            // The slot is closed: tell the proposer what was decided.
            let values = self.values_from(epoch);
            self.send(out, from, Body::CatchUpReply { values });
            return;
        }
        if epoch == self.open_epoch() {
            assert!(
                self.is_acceptor(self.id()),
                "node {} got a prepare for epoch {epoch} but is not one of its acceptors",
                self.id()
            );
        }
        // This node accepts only in its open slot, so nothing was accepted after `epoch`.
        let accepted = match &self.durable.accepted {
            Some(a) => {
                assert!(
                    a.epoch <= epoch,
                    "accepted {} beyond prepare {epoch}",
                    a.epoch
                );
                (a.epoch == epoch).then(|| (a.ballot, a.value.clone()))
            }
            None => None,
        };
        if ballot > self.durable.promised {
            self.durable.promised = ballot;
            self.dirty = true;
        }
        self.send(
            out,
            from,
            Body::Promise {
                ballot,
                epoch,
                accepted,
            },
        );
        self.observe_ballot(now, ballot);
    }

    fn on_promise(
        &mut self,
        now: u64,
        from: NodeId,
        ballot: Ballot,
        epoch: Epoch,
        accepted: Option<(Ballot, V)>,
        out: &mut Output<V>,
    ) {
        let is_acceptor = self.is_acceptor(from);
        let quorum = self.quorum();
        let Role::Candidate {
            ballot: mine,
            epoch: my_epoch,
            promises,
        } = &mut self.role
        else {
            return;
        };
        if ballot != *mine || epoch != *my_epoch || !is_acceptor {
            return;
        }
        if promises.iter().any(|(n, _)| *n == from) {
            return;
        }
        if let Some((accepted_ballot, _)) = &accepted {
            assert!(
                *accepted_ballot < ballot,
                "a promise reports a value accepted at or above it"
            );
        }
        promises.push((from, accepted));
        if promises.len() < quorum {
            return;
        }
        // Phase 1 is done: the value with the highest accepted ballot must be proposed.
        let recovered = promises
            .iter()
            .filter_map(|(_, a)| a.as_ref())
            .max_by_key(|(b, _)| *b)
            .map(|(_, v)| v.clone());
        let promised_by = promises.iter().map(|(n, _)| *n).collect();
        self.role = Role::Leader {
            ballot,
            promised_by,
            in_flight: None,
        };
        self.retry_at = None;
        match recovered {
            Some(value) => self.start_phase2(now, epoch, value, out),
            None => self.start_pending(now, out),
        }
    }

    fn on_accept(
        &mut self,
        now: u64,
        from: NodeId,
        ballot: Ballot,
        epoch: Epoch,
        value: V,
        out: &mut Output<V>,
    ) {
        self.round_seen = self.round_seen.max(ballot.round);
        if ballot < self.durable.promised {
            let promised = self.durable.promised;
            self.send(out, from, Body::Nack { ballot, promised });
            return;
        }
        if epoch <= self.decided_epoch() {
            let values = self.values_from(epoch);
            self.send(out, from, Body::CatchUpReply { values });
            return;
        }
        if epoch > self.open_epoch() {
            // Behind: the envelope already asked for the missing epochs.
            return;
        }
        assert!(
            self.is_acceptor(self.id()),
            "node {} got an accept for epoch {epoch} but is not one of its acceptors",
            self.id()
        );
        let accepted = Accepted {
            ballot,
            epoch,
            value,
        };
        if self.durable.promised != ballot || self.durable.accepted.as_ref() != Some(&accepted) {
            self.durable.promised = ballot;
            self.durable.accepted = Some(accepted);
            self.dirty = true;
        }
        self.send(out, from, Body::Accepted { ballot, epoch });
        self.observe_ballot(now, ballot);
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, epoch: Epoch, out: &mut Output<V>) {
        let is_acceptor = self.is_acceptor(from);
        let quorum = self.quorum();
        let Role::Leader {
            ballot: mine,
            in_flight: Some(in_flight),
            ..
        } = &mut self.role
        else {
            return;
        };
        if ballot != *mine || epoch != in_flight.epoch || !is_acceptor {
            return;
        }
        if in_flight.accepted_by.contains(&from) {
            return;
        }
        in_flight.accepted_by.push(from);
        if in_flight.accepted_by.len() < quorum {
            return;
        }
        let value = in_flight.value.clone();
        self.decide(epoch, value.clone(), out);
        for to in self.others() {
            let value = value.clone();
            self.send(out, to, Body::Decided { epoch, value });
        }
    }

    fn on_nack(&mut self, now: u64, ballot: Ballot, promised: Ballot) {
        if self.role_ballot() != Some(ballot) {
            return;
        }
        assert!(
            promised > ballot,
            "a nack names a promise above the refused ballot"
        );
        self.round_seen = self.round_seen.max(promised.round);
        self.step_down(now);
    }

    fn on_decided(&mut self, epoch: Epoch, value: V, out: &mut Output<V>) {
        if let Some(known) = self.decided_at(epoch) {
            assert_eq!(known, &value, "two values decided at epoch {epoch}");
            return;
        }
        if epoch != self.open_epoch() {
            return;
        }
        self.decide(epoch, value, out);
    }

    fn on_catch_up_reply(&mut self, values: Vec<(Epoch, V)>, out: &mut Output<V>) {
        if values.len() > CATCHUP_BATCH_MAX || !values.windows(2).all(|w| w[0].0 < w[1].0) {
            return;
        }
        for (epoch, value) in values {
            if let Some(known) = self.decided_at(epoch) {
                assert_eq!(known, &value, "two values decided at epoch {epoch}");
                continue;
            }
            if epoch < self.open_epoch() {
                continue; // Older than our log; nothing to learn.
            }
            // epoch > open only when the sender's log does not reach back that far
            // (it was trimmed, or the sender joined later): jump.
            self.decide(epoch, value, out);
        }
    }

    /// Record a decision. Decisions arrive in epoch order; a jump forward happens only
    /// when catching up from a log that does not hold the epochs in between (trimmed,
    /// or begun at its node's join). The runtime compares placements, not epochs, so a
    /// jump moves keys as the epochs in between together would.
    fn decide(&mut self, epoch: Epoch, value: V, out: &mut Output<V>) {
        assert!(epoch > self.decided_epoch(), "decided epochs only grow");
        assert!(
            is_valid(&value),
            "decided an invalid configuration {value:?}"
        );
        self.durable.decided.push((epoch, value.clone()));
        if self.durable.decided.len() > DECIDED_LOG_MAX {
            self.durable.decided.remove(0);
        }
        if matches!(&self.durable.accepted, Some(a) if a.epoch <= epoch) {
            self.durable.accepted = None;
        }
        self.dirty = true;
        out.decided.push((epoch, value));
        if matches!(&self.pending, Some((e, _)) if *e <= epoch) {
            self.pending = None;
        }
        // A leader keeps leading (no phase 1) while its promises are a quorum of the new
        // acceptors; everything else goes back to following.
        let quorum = self.quorum();
        let acceptors = self.acceptors();
        let keep = match &mut self.role {
            Role::Leader {
                promised_by,
                in_flight,
                ..
            } => {
                *in_flight = None;
                promised_by.iter().filter(|n| acceptors.contains(n)).count() >= quorum
            }
            _ => false,
        };
        if !keep {
            self.role = Role::Follower;
        }
        // The pending proposal was for an epoch now decided (won or lost): no retries.
        assert!(self.pending.is_none());
        self.retry_at = None;
    }
}

//! Model checking of the real consensus core (`ringcache::consensus::Node`) with
//! stateright: every interleaving of the actions below, up to a bound, is explored
//! breadth-first, and the properties are checked in every state reached.
//!
//! # What is modelled
//!
//! * **Nodes**: acceptors 1, 2, 3 and learner 4 (the genesis configuration at epoch 0),
//!   each a real [`Node`] built by `Node::new` with a fixed seed. A node is stepped as
//!   `src/consensus/mod.rs` tells its caller to: the output's `persist` is written to
//!   its disk first, then its messages go into the network, then its `decided` values
//!   are recorded. A step is atomic: a crash in the middle of one (after the sync but before
//!   the send, or before the sync) is the same, for safety, as the messages never being
//!   delivered or the step never having happened, and both are explored anyway.
//! * **Time** is per node and abstract: a `Tick` action jumps the node's clock to the
//!   `timer_at` of its last output and feeds `Input::Tick` (heartbeats, retries,
//!   resends). Clocks need not agree, as real ones don't.
//! * **Crash-restart**: the node loses everything but what it last persisted, and comes
//!   back as `Node::restore(persisted, seed)` (a fixed seed per incarnation). Being down
//!   for a while is the same as its messages not being delivered for a while.
//! * **The network** is a set of messages in flight. Delivering one leaves it in flight,
//!   so any message can be delivered again (duplication), in any order (reordering);
//!   a `Drop` action removes one for good (loss), and loss is also covered by a message
//!   never being chosen. Messages a node sends to itself go through the network too.
//! * **Admin proposals**, each made at most once, at one of the proposer nodes, for that
//!   node's open epoch (as an admin reading the configuration from it would): one that
//!   changes a plain configuration value (`tag`), and one that changes the acceptor
//!   set, replacing acceptor 3 by node 4 (3 becomes the learner). A proposal the node
//!   refuses (busy, behind) changes nothing and stays available.
//!
//! # Properties
//!
//! Ghost state kept in the model state (not in the nodes) records, across the whole
//! history, every `(epoch, value)` decided anywhere, what each node first decided at
//! each epoch, and the highest epoch each node has reached. Always:
//!
//! * one value per epoch everywhere: no two values ever decided at one epoch, by any
//!   nodes, incarnations or times;
//! * a decided value never changes: what a node (memory or disk) holds at an epoch is
//!   what it first decided there;
//! * epochs only grow on every node: decided values come out in ascending epochs, and
//!   neither the node nor its disk ever goes below the highest epoch it reached,
//!   across restarts too;
//! * the core's own assertions hold (a panic in `step` or `restore` is caught and
//!   reported as a counterexample with the path that led to it);
//! * a node's durable state is what it last asked to persist (so a restart loses only
//!   what may be lost).
//!
//! Sometimes (the checker must find an example, proving the bound reaches it): a value
//! beyond the genesis epoch is decided; the acceptor change is decided; and, in the
//! deep run, the new acceptor set decides an epoch after it.
//!
//! # Bounds
//!
//! Budgets of steps (actions on a path), ticks, drops and crash-restarts make the state
//! space finite; see [`bounds`] for the values and why. The bounded run is a normal
//! test (CI: 10 steps, 1.2 million states checked, about 15 s). With
//! `RINGCACHE_MODEL_DEEP=1` it takes the deep bounds (15 steps, 26 million states
//! checked, about 6 minutes on 2 cores and 9 GiB; `scripts/model-check.sh` runs it in
//! release); `RINGCACHE_MODEL_DEPTH` and `RINGCACHE_MODEL_BOUNDS` override the bounds.
//! The checker stops at the first counterexample and prints the path to it, each
//! message written out.
//!
//! Bugs need depth: with the promise check taken out of `on_accept` (an acceptor
//! accepts a ballot below its promise), the shortest way to two values at one epoch is
//! 18 steps (two proposers each run both phases, 9 steps apiece). CI's 10 steps do not
//! reach it; `RINGCACHE_MODEL_BOUNDS="steps=18 ticks=0 drops=0 crashes=0"` finds it
//! (about 11 million states checked, minutes), and 17 steps do not. A restart that
//! loses decided values is found within CI's bound (epochs go back, in 10 steps).
//!
//! # Not modelled
//!
//! A node whose disk is wiped must come back under a new id, as a learner that an
//! acceptor change then promotes (node 4's path here), so no crash loses durable state;
//! partitions are messages not delivered;
//! proposals for stale epochs are refused before they touch any state; the decided
//! log's truncation at `DECIDED_LOG_MAX` is out of reach of these bounds.

use std::cell::Cell;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ahash::AHashMap;
use ringcache::consensus::{
    Configuration, Durable, Epoch, Input, Message, Node, NodeId, ProposeResult,
};
use stateright::{Checker, HasDiscoveries, Model, Property};

/// A configuration. Every one in this model has three acceptors and one learner, so it
/// fits in fixed arrays and is `Copy`: the checker clones and hashes every state, and
/// with `consensus::TestConfiguration` (the unit tests' and the simulator's, which
/// holds `Vec`s) the CI bound took 25 s instead of 15.6 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Conf {
    acceptors: [NodeId; 3],
    learners: [NodeId; 1],
    tag: u64,
}

impl Configuration for Conf {
    fn acceptors(&self) -> &[NodeId] {
        &self.acceptors
    }
    fn learners(&self) -> &[NodeId] {
        &self.learners
    }
}

const NODE_IDS: [NodeId; 4] = [1, 2, 3, 4];

fn genesis() -> Conf {
    Conf {
        acceptors: [1, 2, 3],
        learners: [4],
        tag: 0,
    }
}

/// The fixed seed of a node's back-off generator, per incarnation.
fn seed(id: NodeId, incarnation: u8) -> u64 {
    0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(id) ^ (u64::from(incarnation) << 32)
}

/// The two admin proposals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Proposal {
    /// Same acceptors, new `tag`: an ordinary configuration change.
    Value,
    /// Acceptor 3 is replaced by node 4, which was the learner.
    Acceptors,
}

const PROPOSALS: [Proposal; 2] = [Proposal::Value, Proposal::Acceptors];

impl Proposal {
    /// The value an admin builds from the configuration it read from a node.
    fn value(self, current: &Conf) -> Conf {
        match self {
            Proposal::Value => Conf { tag: 1, ..*current },
            Proposal::Acceptors => {
                let mut next = *current;
                for a in next.acceptors.iter_mut().filter(|a| **a == 3) {
                    *a = 4;
                }
                if next.learners == [4] {
                    next.learners = [3];
                }
                next.tag = 2;
                next
            }
        }
    }
}

/// A number standing for a value in an [`Interner`].
type Id = u32;

/// Every distinct value seen, numbered once. A state holds the numbers of its nodes,
/// of its set of messages in flight and of its history instead of the values: small
/// enough to keep tens of millions of states, quick to hash, and a node unchanged by a
/// step is shared, not copied. Numbers follow the order in which the checker's threads
/// first saw the values, so they mean something only within one run, which is all a
/// checker and its counterexample paths need.
struct Interner<T> {
    table: RwLock<Table<T>>,
}

struct Table<T> {
    ids: AHashMap<Arc<T>, Id>,
    values: Vec<Arc<T>>,
}

impl<T: Hash + Eq> Interner<T> {
    fn new() -> Self {
        let table = Table {
            ids: AHashMap::new(),
            values: Vec::new(),
        };
        Interner {
            table: RwLock::new(table),
        }
    }

    fn id(&self, value: T) -> Id {
        if let Some(id) = self.table.read().unwrap().ids.get(&value) {
            return *id;
        }
        let mut table = self.table.write().unwrap();
        if let Some(id) = table.ids.get(&value) {
            return *id;
        }
        let id = Id::try_from(table.values.len()).expect("fewer than 2^32 values");
        let value = Arc::new(value);
        table.values.push(Arc::clone(&value));
        table.ids.insert(value, id);
        id
    }

    fn get(&self, id: Id) -> Arc<T> {
        Arc::clone(&self.table.read().unwrap().values[id as usize])
    }

    fn len(&self) -> usize {
        self.table.read().unwrap().values.len()
    }
}

/// One node as the model sees it: the real core, its disk, its clock, and ghosts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Peer {
    node: Node<Conf>,
    /// What the node last asked to persist: all that survives a crash.
    persisted: Durable<Conf>,
    /// The node's logical clock (the `now` it is stepped with).
    clock: u64,
    /// `timer_at` of the node's last output; a tick jumps the clock there.
    timer_at: u64,
    incarnation: u8,
    /// Ghost: the highest epoch this node (any incarnation, memory or disk) reached.
    epoch_high: Epoch,
    /// Ghost: a decided output came out at or below an epoch already reached.
    decided_backwards: bool,
    /// Ghost: the value this node first decided (or held) at each epoch, by epoch.
    first_decided: Vec<(Epoch, Conf)>,
}

impl Peer {
    fn first_decided_at(&self, epoch: Epoch) -> Option<&Conf> {
        let at = self.first_decided.binary_search_by_key(&epoch, |(e, _)| *e);
        at.ok().map(|i| &self.first_decided[i].1)
    }
}

/// Keeps the first value per epoch.
fn insert_first(map: &mut Vec<(Epoch, Conf)>, epoch: Epoch, value: Conf) {
    if let Err(at) = map.binary_search_by_key(&epoch, |(e, _)| *e) {
        map.insert(at, (epoch, value));
    }
}

fn insert_sorted<T: Ord>(set: &mut Vec<T>, value: T) {
    if let Err(at) = set.binary_search(&value) {
        set.insert(at, value);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    /// The nodes (interned [`Peer`]s), indexed by node id - 1.
    peers: [Id; 4],
    /// The messages in flight: an interned sorted list of interned messages.
    net: Id,
    /// Which of [`PROPOSALS`] were made.
    proposed: [bool; 2],
    ticks: u8,
    drops: u8,
    crashes: u8,
    /// Ghost: every (epoch, value) decided or held anywhere, ever (an interned
    /// sorted list).
    decided_ever: Id,
    /// Ghost: a step or restore panicked (the interned message: the core's
    /// assertion, with the node).
    panicked: Option<Id>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// Deliver a message in flight (it stays in flight: it may come again).
    Deliver(Id),
    /// Lose a message in flight for good.
    Drop(Id),
    Tick(NodeId),
    CrashRestart(NodeId),
    Propose(NodeId, Proposal),
}

/// The budgets that make the state space finite (see [`bounds`] for the values).
#[derive(Clone, Debug)]
struct Bounds {
    /// Most actions on a path from the initial state.
    steps: usize,
    /// Most `Tick` actions on a path, over all nodes.
    ticks: u8,
    /// Most `Drop` actions on a path. Dropping a message changes no node, and every
    /// path after a drop is also a path without it on which the message is simply
    /// never delivered again; so drops add no node state, and the safety properties
    /// look only at nodes. A drop budget costs states (each message in flight may go)
    /// for no gain in safety coverage; it is there so the lossy network is explicit.
    drops: u8,
    /// Most `CrashRestart` actions on a path, over all nodes.
    crashes: u8,
    /// Per proposal in [`PROPOSALS`], the nodes an admin may send it to.
    proposers: [Vec<NodeId>; 2],
}

struct ConsensusModel {
    bounds: Bounds,
    peers: Interner<Peer>,
    wire: Interner<Message<Conf>>,
    nets: Interner<Vec<Id>>,
    histories: Interner<Vec<(Epoch, Conf)>>,
    panics: Interner<String>,
    /// States whose properties were checked. stateright's unique state count also
    /// holds the states generated one step past the bound, which are never checked.
    checked: AtomicUsize,
}

fn idx(id: NodeId) -> usize {
    (id - 1) as usize
}

thread_local! {
    /// Set while this thread runs the core under `catch_unwind`.
    static IN_CORE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a step or restore of the core), catching a panic: the model records it
/// and the checker reports it with the path that led to it.
fn run_core<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    IN_CORE.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_CORE.with(|c| c.set(false));
    result.map_err(|payload| panic_message(payload.as_ref()))
}

/// The default hook would also print every caught panic of the core, with a backtrace,
/// as the checker meets it again and again; any other panic still goes to it.
fn quiet_core_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_CORE.with(|c| c.get()) {
            default(info);
        }
    }));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

impl ConsensusModel {
    fn new(bounds: Bounds) -> Self {
        ConsensusModel {
            bounds,
            peers: Interner::new(),
            wire: Interner::new(),
            nets: Interner::new(),
            histories: Interner::new(),
            panics: Interner::new(),
            checked: AtomicUsize::new(0),
        }
    }

    fn peer(&self, state: &State, id: NodeId) -> Arc<Peer> {
        self.peers.get(state.peers[idx(id)])
    }

    fn all_peers(&self, state: &State) -> [Arc<Peer>; 4] {
        NODE_IDS.map(|id| self.peer(state, id))
    }

    /// Step one node like the runtime: persist, then send, then hand on decided values.
    /// `None` if the step panicked (recorded in `state.panicked`).
    fn feed(
        &self,
        state: &mut State,
        id: NodeId,
        input: Input<Conf>,
    ) -> Option<Option<ProposeResult>> {
        let mut peer = Peer::clone(&self.peer(state, id));
        let now = peer.clock;
        let out = match run_core(|| peer.node.step(now, input)) {
            Ok(out) => out,
            Err(message) => {
                let message = format!("node {id} panicked in step: {message}");
                state.panicked = Some(self.panics.id(message));
                return None;
            }
        };
        peer.timer_at = out.timer_at;
        if let Some(durable) = out.persist {
            peer.persisted = durable;
        }
        if !out.messages.is_empty() {
            let net = self.nets.get(state.net);
            let mut grown: Option<Vec<Id>> = None;
            for m in out.messages {
                let m = self.wire.id(m);
                if net.binary_search(&m).is_err() {
                    insert_sorted(grown.get_or_insert_with(|| Vec::clone(&net)), m);
                }
            }
            if let Some(grown) = grown {
                state.net = self.nets.id(grown);
            }
        }
        for (epoch, _) in &out.decided {
            if *epoch <= peer.epoch_high {
                peer.decided_backwards = true;
            }
            peer.epoch_high = peer.epoch_high.max(*epoch);
        }
        self.observe(state, &mut peer, &out.decided);
        state.peers[idx(id)] = self.peers.id(peer);
        Some(out.proposal)
    }

    /// The node loses all but what it last persisted and comes back from that.
    fn crash_restart(&self, state: &mut State, id: NodeId) {
        let mut peer = Peer::clone(&self.peer(state, id));
        peer.incarnation += 1;
        let (persisted, incarnation) = (peer.persisted.clone(), peer.incarnation);
        match run_core(|| Node::restore(persisted, seed(id, incarnation))) {
            Ok(node) => {
                peer.node = node;
                peer.timer_at = 0;
                self.observe(state, &mut peer, &[]);
                state.peers[idx(id)] = self.peers.id(peer);
            }
            Err(message) => {
                let message = format!("node {id} panicked in restore: {message}");
                state.panicked = Some(self.panics.id(message));
            }
        }
    }

    /// Fold what a node decided in a step, and what it now holds in memory and on
    /// disk, into its ghosts and into `decided_ever`. `epoch_high` is not raised to the
    /// node's epoch here, so that a fall below it shows.
    fn observe(&self, state: &mut State, peer: &mut Peer, decided: &[(Epoch, Conf)]) {
        let held = peer.node.durable().decided.iter();
        let seen: Vec<(Epoch, Conf)> = decided
            .iter()
            .chain(held.chain(peer.persisted.decided.iter()))
            .copied()
            .collect();
        let ever = self.histories.get(state.decided_ever);
        let mut grown: Option<Vec<(Epoch, Conf)>> = None;
        for (epoch, value) in seen {
            insert_first(&mut peer.first_decided, epoch, value);
            if ever.binary_search(&(epoch, value)).is_err() {
                let grown = grown.get_or_insert_with(|| Vec::clone(&ever));
                insert_sorted(grown, (epoch, value));
            }
        }
        if let Some(grown) = grown {
            state.decided_ever = self.histories.id(grown);
        }
    }

    /// An action, with the message it names written out.
    fn describe(&self, action: &Action) -> String {
        match action {
            Action::Deliver(m) => format!("deliver {:?}", self.wire.get(*m)),
            Action::Drop(m) => format!("drop {:?}", self.wire.get(*m)),
            other => format!("{other:?}"),
        }
    }
}

impl Model for ConsensusModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let peers = NODE_IDS.map(|id| {
            let node = Node::new(id, 0, genesis(), seed(id, 0));
            // What the first output would persist: the genesis state.
            let persisted = node.durable().clone();
            self.peers.id(Peer {
                node,
                persisted,
                clock: 0,
                timer_at: 0,
                incarnation: 0,
                epoch_high: 0,
                decided_backwards: false,
                first_decided: vec![(0, genesis())],
            })
        });
        vec![State {
            peers,
            net: self.nets.id(Vec::new()),
            proposed: [false; 2],
            ticks: 0,
            drops: 0,
            crashes: 0,
            decided_ever: self.histories.id(vec![(0, genesis())]),
            panicked: None,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.panicked.is_some() {
            return;
        }
        let net = self.nets.get(state.net);
        actions.extend(net.iter().map(|m| Action::Deliver(*m)));
        if state.drops < self.bounds.drops {
            actions.extend(net.iter().map(|m| Action::Drop(*m)));
        }
        if state.ticks < self.bounds.ticks {
            actions.extend(NODE_IDS.map(Action::Tick));
        }
        if state.crashes < self.bounds.crashes {
            actions.extend(NODE_IDS.map(Action::CrashRestart));
        }
        for (i, proposal) in PROPOSALS.iter().enumerate() {
            if !state.proposed[i] {
                let at = self.bounds.proposers[i].iter();
                actions.extend(at.map(|id| Action::Propose(*id, *proposal)));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Deliver(m) => {
                let message = Message::clone(&self.wire.get(m));
                self.feed(&mut state, message.to, Input::Message(message));
            }
            Action::Drop(m) => {
                let mut net = Vec::clone(&self.nets.get(state.net));
                net.retain(|x| *x != m);
                state.net = self.nets.id(net);
                state.drops += 1;
            }
            Action::Tick(id) => {
                // Time is abstract: the node's clock jumps to its timer.
                let mut peer = Peer::clone(&self.peer(&state, id));
                peer.clock = peer.clock.max(peer.timer_at);
                state.peers[idx(id)] = self.peers.id(peer);
                state.ticks += 1;
                self.feed(&mut state, id, Input::Tick);
            }
            Action::CrashRestart(id) => {
                state.crashes += 1;
                self.crash_restart(&mut state, id);
            }
            Action::Propose(id, proposal) => {
                let i = PROPOSALS.iter().position(|p| *p == proposal).unwrap();
                let peer = self.peer(&state, id);
                let epoch = peer.node.decided_epoch() + 1;
                let value = proposal.value(peer.node.config());
                match self.feed(&mut state, id, Input::Propose { epoch, value }) {
                    Some(Some(ProposeResult::Proposing)) => state.proposed[i] = true,
                    // Refused: nothing changed, and the admin may try again later.
                    Some(_) => return None,
                    None => {}
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(ONE_VALUE_PER_EPOCH, one_value_per_epoch),
            Property::always(DECIDED_NEVER_CHANGES, decided_never_changes),
            Property::always(EPOCHS_ONLY_GROW, epochs_only_grow),
            Property::always(NO_PANIC, |_, s: &State| s.panicked.is_none()),
            Property::always(PERSISTED_IS_DURABLE, persisted_is_durable),
            Property::sometimes(SOMETHING_DECIDED, something_decided),
            Property::sometimes(ACCEPTOR_CHANGE_DECIDED, acceptor_change_decided),
            Property::sometimes(NEW_ACCEPTORS_DECIDE, new_acceptors_decide),
        ]
    }
}

const ONE_VALUE_PER_EPOCH: &str = "one value per epoch everywhere";
const DECIDED_NEVER_CHANGES: &str = "a decided value never changes";
const EPOCHS_ONLY_GROW: &str = "epochs only grow on every node";
const NO_PANIC: &str = "the core's own assertions hold";
const PERSISTED_IS_DURABLE: &str = "a node's durable state is what it asked to persist";
const SOMETHING_DECIDED: &str = "a value beyond genesis is decided";
const ACCEPTOR_CHANGE_DECIDED: &str = "the acceptor change is decided";
const NEW_ACCEPTORS_DECIDE: &str = "the new acceptors decide an epoch";

const SAFETY: [&str; 5] = [
    ONE_VALUE_PER_EPOCH,
    DECIDED_NEVER_CHANGES,
    EPOCHS_ONLY_GROW,
    NO_PANIC,
    PERSISTED_IS_DURABLE,
];
const EXAMPLES: [&str; 3] = [
    SOMETHING_DECIDED,
    ACCEPTOR_CHANGE_DECIDED,
    NEW_ACCEPTORS_DECIDE,
];

fn one_value_per_epoch(m: &ConsensusModel, s: &State) -> bool {
    // The first property is evaluated once for every state checked: count them here.
    m.checked.fetch_add(1, Ordering::Relaxed);
    // Sorted by epoch, then value: two values at one epoch would be neighbours.
    let ever = m.histories.get(s.decided_ever);
    ever.windows(2).all(|w| w[0].0 != w[1].0)
}

fn decided_never_changes(m: &ConsensusModel, s: &State) -> bool {
    m.all_peers(s).iter().all(|p| {
        let held = p.node.durable().decided.iter();
        held.chain(p.persisted.decided.iter())
            .all(|(e, v)| p.first_decided_at(*e) == Some(v))
    })
}

fn epochs_only_grow(m: &ConsensusModel, s: &State) -> bool {
    m.all_peers(s).iter().all(|p| {
        let on_disk = p.persisted.decided.last().map_or(0, |(e, _)| *e);
        !p.decided_backwards && p.node.decided_epoch() >= p.epoch_high && on_disk >= p.epoch_high
    })
}

fn persisted_is_durable(m: &ConsensusModel, s: &State) -> bool {
    m.all_peers(s)
        .iter()
        .all(|p| *p.node.durable() == p.persisted)
}

fn something_decided(m: &ConsensusModel, s: &State) -> bool {
    m.all_peers(s).iter().any(|p| p.node.decided_epoch() > 0)
}

fn acceptor_change_decided(m: &ConsensusModel, s: &State) -> bool {
    let ever = m.histories.get(s.decided_ever);
    ever.iter().any(|(_, v)| v.acceptors.contains(&4))
}

/// An epoch after the acceptor change is decided, by acceptors 1, 2 and 4.
fn new_acceptors_decide(m: &ConsensusModel, s: &State) -> bool {
    let ever = m.histories.get(s.decided_ever);
    let change = ever.iter().find(|(_, v)| v.acceptors.contains(&4));
    change.is_some_and(|(e, _)| ever.iter().any(|(later, _)| later > e))
}

fn deep() -> bool {
    std::env::var("RINGCACHE_MODEL_DEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The bounds of this run, and the examples that must be found within them.
///
/// * CI (`cargo test`, release): 10 steps, 1 tick, 1 drop, 1 crash-restart; the
///   value change proposed at node 1 and the acceptor change at node 2, so the two
///   proposers race. The first decision takes 9 steps (a proposal, then two prepares,
///   two promises, two accepts and two accepteds delivered), so every way of
///   reaching it with one more action anywhere (a fault, a tick, another delivery)
///   is covered.
/// * A debug build (`cargo test` without `--release`) is several times slower, so it
///   checks the same 10 steps without the drop, which adds no behaviour that matters
///   to safety (see [`Bounds::drops`]) but multiplies the states by about seven.
/// * Deep (`RINGCACHE_MODEL_DEEP=1`, `scripts/model-check.sh`): 15 steps, 1 tick, no
///   drop, 1 crash-restart, either proposal at node 1 or 2. 15 steps is the shortest
///   path on which the new acceptor set decides: the acceptor change is decided at
///   node 1 (9 steps), node 2 learns it, and node 1 gets the value change accepted by
///   1 and 2 without a new phase 1.
///
/// `RINGCACHE_MODEL_DEPTH=<steps>` overrides the steps, and `RINGCACHE_MODEL_BOUNDS`
/// any budget, e.g. `"steps=18 ticks=0 drops=0 crashes=0 value_at=1 acceptors_at=1+2"`;
/// with either, examples are reported but not required.
fn bounds() -> (Bounds, Vec<&'static str>) {
    let (mut bounds, examples) = if deep() {
        let bounds = Bounds {
            steps: 15,
            ticks: 1,
            drops: 0,
            crashes: 1,
            proposers: [vec![1, 2], vec![1, 2]],
        };
        (bounds, EXAMPLES.to_vec())
    } else {
        let bounds = Bounds {
            steps: 10,
            ticks: 1,
            // A debug build checks the same steps without the drop (see above).
            drops: if cfg!(debug_assertions) { 0 } else { 1 },
            crashes: 1,
            proposers: [vec![1], vec![2]],
        };
        (bounds, vec![SOMETHING_DECIDED, ACCEPTOR_CHANGE_DECIDED])
    };
    let mut overridden = false;
    if let Ok(steps) = std::env::var("RINGCACHE_MODEL_DEPTH") {
        bounds.steps = parse_number("RINGCACHE_MODEL_DEPTH", &steps);
        overridden = true;
    }
    if let Ok(settings) = std::env::var("RINGCACHE_MODEL_BOUNDS") {
        for setting in settings.split_whitespace() {
            let (key, value) = setting
                .split_once('=')
                .unwrap_or_else(|| panic!("RINGCACHE_MODEL_BOUNDS: {setting} is not key=value"));
            let nodes = || value.split('+').map(|n| parse_number(key, n)).collect();
            match key {
                "steps" => bounds.steps = parse_number(key, value),
                "ticks" => bounds.ticks = parse_number(key, value),
                "drops" => bounds.drops = parse_number(key, value),
                "crashes" => bounds.crashes = parse_number(key, value),
                "value_at" => bounds.proposers[0] = nodes(),
                "acceptors_at" => bounds.proposers[1] = nodes(),
                _ => panic!("RINGCACHE_MODEL_BOUNDS: unknown key {key}"),
            }
        }
        overridden = true;
    }
    for id in bounds.proposers.iter().flatten() {
        assert!(NODE_IDS.contains(id), "no node {id} to propose at");
    }
    (bounds, if overridden { Vec::new() } else { examples })
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {value} is not a number"))
}

#[test]
fn the_consensus_core_is_safe_in_every_interleaving_within_the_bound() {
    let (bounds, examples) = bounds();
    quiet_core_panics();
    // One thread explores in strict breadth-first order, so every state within the
    // bound is checked and a counterexample found is a shortest one. Several threads
    // keep the order only roughly: a state first reached by a longer path could be cut
    // at the bound. The deep run takes that for the speed (its counts of states checked
    // matched one thread's wherever compared); `RINGCACHE_MODEL_THREADS` overrides.
    let threads = match std::env::var("RINGCACHE_MODEL_THREADS") {
        Ok(threads) => parse_number("RINGCACHE_MODEL_THREADS", &threads),
        Err(_) if deep() => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Err(_) => 1,
    };
    let started = Instant::now();
    let checker = ConsensusModel::new(bounds.clone())
        .checker()
        .threads(threads)
        // The initial state is at depth 1, and states at the target depth are skipped.
        .target_max_depth(bounds.steps + 2)
        // Stop at the first counterexample; otherwise explore everything within the bound.
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let elapsed = started.elapsed();
    let model = checker.model();
    eprintln!(
        "consensus_model: {bounds:?}: {} states checked ({} distinct states generated, {} in all; {} node states, {} messages), {:.1} s on {threads} threads",
        model.checked.load(Ordering::Relaxed),
        checker.unique_state_count(),
        checker.state_count(),
        model.peers.len(),
        model.wire.len(),
        elapsed.as_secs_f64(),
    );
    for name in SAFETY {
        if let Some(path) = checker.discovery(name) {
            let steps = path.clone().into_actions();
            let last = path.last_state().clone();
            let mut trace = String::new();
            for (i, action) in steps.iter().enumerate() {
                trace += &format!("  {:3}. {}\n", i + 1, model.describe(action));
            }
            panic!(
                "counterexample to \"{name}\" in {} steps:\n{trace}{}\nnodes: {:#?}\ndecided anywhere: {:?}",
                steps.len(),
                last.panicked.map_or(String::new(), |p| model.panics.get(p).to_string()),
                model.all_peers(&last),
                model.histories.get(last.decided_ever),
            );
        }
    }
    assert!(checker.is_done(), "the checker stopped before the bound");
    for name in EXAMPLES {
        match checker.discovery(name) {
            Some(path) => eprintln!(
                "consensus_model: example of \"{name}\" in {} steps",
                path.into_actions().len()
            ),
            None => {
                assert!(
                    !examples.contains(&name),
                    "no example of \"{name}\" within the bound"
                );
                eprintln!("consensus_model: no example of \"{name}\" within this bound");
            }
        }
    }
}

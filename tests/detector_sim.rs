//! Seeded deterministic simulation of failure detection
//! (`ringcache::cluster::detector`): five nodes (acceptors 1, 2 and 3) each run
//! their detector on ticks, report their suspects every
//! `REPORT_INTERVAL_MS` (each at a phase of its own) over a network that delays
//! reports by up to `DELAY_TICKS_MAX`, and propose what their detector decides.
//! A proposal is decided at once and put in force on every node, and its
//! proposer becomes the leader every node knows (as a Multi-Paxos leader that
//! won a decision is). The data path's view is the network's: node `a` finds
//! `b` unreachable when either direction between them is cut or `b` is crashed.
//!
//! Each seed draws one fault:
//! - **crash**: a node crashes, then restarts later with a fresh detector;
//!   sometimes a second node is down and crashed from the start, and with two
//!   copies of each key the cap forbids a second mark-down;
//! - **one-way cut**: the packets from one node to another are dropped;
//! - **partition**: one node is cut off from 1 to 4 of the others, then healed;
//! - **flapping**: one node's links go down and up, down each time for less than
//!   the failover timeout and up for at least a report interval (a shorter
//!   return falls between two samples and is not seen).
//!
//! Checked: at most `replicas - 1` nodes are ever down; a node reachable from a
//! majority is never proposed down; a crashed node (or one cut off from a
//! majority) is proposed down within [`BOUND_TICKS`] of the fault by exactly
//! the proposer the rule names (the leader if reachable, else the lowest-id
//! reachable acceptor), and nothing else about it is proposed; a returned node
//! is proposed up within [`BOUND_TICKS`] of its return. (A cut-off leader still
//! reached by the lowest of the other acceptors is the exception: no other node
//! names itself, so nothing is proposed until Paxos elects another leader,
//! which is left out here; the run checks that nothing is.) The
//! bound is the failover timeout plus two report intervals and a delivery: the
//! fault is first seen at a node's next sample (up to one interval), and the
//! proposer needs the others' reports, which it weighs at its next sample.
//!
//! `RINGCACHE_SEED=<seed>` replays one seed with a trace;
//! `RINGCACHE_SIM_SEEDS=<n>` runs n seeds (default 1000).

#[path = "support/sim.rs"]
mod sim;

use sim::Rng;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ringcache::cluster::config::{
    ClusterConfig, ClusterSpec, Endpoint, NodeConfig, NodeState, WriteAck,
};
use ringcache::cluster::detector::{self, Copying, Detector, Facts, Proposal, REPORT_INTERVAL_MS};

/// Seeds run by default (CI); `RINGCACHE_SIM_SEEDS` overrides for a soak.
const SEEDS_DEFAULT: u64 = 1000;
const NODES: u32 = 5;
const ACCEPTORS: [u32; 3] = [1, 2, 3];
const MAJORITY: usize = NODES as usize / 2 + 1;
const TICK_MS: u64 = 10;
const FAILOVER_MS: u64 = 500;
const INTERVAL_TICKS: u64 = REPORT_INTERVAL_MS / TICK_MS;
const FAILOVER_TICKS: u64 = FAILOVER_MS / TICK_MS;
// Whole ticks and intervals, so that the bound below is exact.
const _: () = assert!(
    FAILOVER_MS.is_multiple_of(REPORT_INTERVAL_MS) && REPORT_INTERVAL_MS.is_multiple_of(TICK_MS)
);
/// Most ticks a report spends in flight (at least one).
const DELAY_TICKS_MAX: u64 = 3;
/// How long after a fault (or a return) its proposal may come.
const BOUND_TICKS: u64 = FAILOVER_TICKS + 2 * INTERVAL_TICKS + DELAY_TICKS_MAX;
/// Ticks before the first fault, so that every node has sampled a few times.
const SETTLE_TICKS: u64 = 30;
/// Reports in flight at most; a send to a full network is dropped.
const NET_CAPACITY: usize = 256;

/// A node id drawn by `rng`.
fn any_node(rng: &mut Rng) -> u32 {
    1 + rng.below(u64::from(NODES)) as u32
}

#[derive(Clone, Debug)]
enum Fault {
    Crash {
        node: u32,
        at: u64,
        back_at: u64,
        /// A node down and crashed from the start, if any.
        already_down: Option<u32>,
    },
    OneWayCut {
        from: u32,
        to: u32,
        at: u64,
    },
    Partition {
        node: u32,
        from: Vec<u32>,
        at: u64,
        healed_at: u64,
    },
    Flapping {
        node: u32,
        /// Ticks at which its links toggle, first down.
        toggles: Vec<u64>,
    },
}

/// A proposal some node made.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Made {
    tick: u64,
    by: u32,
    node: u32,
    state: NodeState,
}

struct Sim {
    trace: bool,
    config: ClusterConfig,
    leader: Option<u32>,
    detectors: Vec<Detector>,
    /// The tick of each node's reports, modulo the interval.
    phases: Vec<u64>,
    alive: Vec<bool>,
    /// `cut[a][b]`: what `a` sends `b` is lost.
    cut: Vec<Vec<bool>>,
    /// Reports in flight: (due tick, from, to, suspects).
    net: VecDeque<(u64, u32, u32, Vec<u32>)>,
    made: Vec<Made>,
}

fn genesis(replicas: usize, down: Option<u32>) -> ClusterConfig {
    let spec = ClusterSpec {
        nodes: (1..=NODES)
            .map(|id| NodeConfig {
                id,
                client_addr: Endpoint::parse(&format!("10.0.0.{id}:11211")).unwrap(),
                shards: vec![Endpoint::parse(&format!("10.0.0.{id}:11300")).unwrap()],
                state: if Some(id) == down {
                    NodeState::Down
                } else {
                    NodeState::Up
                },
            })
            .collect(),
        replicas,
        vnodes_per_shard: 160,
        write_ack: WriteAck::Quorum,
        acceptors: ACCEPTORS.to_vec(),
        next_node_id: 0,
    };
    ClusterConfig::new(1, spec).unwrap()
}

fn ix(id: u32) -> usize {
    id as usize
}

impl Sim {
    fn new(rng: &mut Rng, trace: bool, replicas: usize, down: Option<u32>) -> Sim {
        let leader = match rng.below(4) {
            0 => None,
            i => Some(ACCEPTORS[i as usize - 1]),
        };
        let mut alive = vec![true; ix(NODES) + 1];
        if let Some(id) = down {
            alive[ix(id)] = false;
        }
        Sim {
            trace,
            config: genesis(replicas, down),
            leader,
            detectors: (0..=NODES)
                .map(|id| Detector::new(id, FAILOVER_MS))
                .collect(),
            phases: (0..=NODES).map(|_| rng.below(INTERVAL_TICKS)).collect(),
            alive,
            cut: vec![vec![false; ix(NODES) + 1]; ix(NODES) + 1],
            net: VecDeque::new(),
            made: Vec::new(),
        }
    }

    /// Whether `a`'s data path reaches `b` (a round trip).
    fn reaches(&self, a: u32, b: u32) -> bool {
        a == b
            || (self.alive[ix(a)]
                && self.alive[ix(b)]
                && !self.cut[ix(a)][ix(b)]
                && !self.cut[ix(b)][ix(a)])
    }

    fn unreachable_from(&self, a: u32) -> Vec<u32> {
        (1..=NODES).filter(|&b| !self.reaches(a, b)).collect()
    }

    /// How many nodes (itself included) reach `id`.
    fn reached_by(&self, id: u32) -> usize {
        (1..=NODES)
            .filter(|&a| self.alive[ix(a)] && self.reaches(a, id))
            .count()
    }

    fn down_count(&self) -> usize {
        self.config
            .nodes()
            .iter()
            .filter(|n| n.state == NodeState::Down)
            .count()
    }

    /// The node `a` would name as proposer now.
    fn proposer_seen_by(&self, a: u32) -> Option<u32> {
        let unreachable = self.unreachable_from(a);
        detector::proposer(a, &self.facts(&unreachable))
    }

    fn facts<'a>(&'a self, unreachable: &'a [u32]) -> Facts<'a> {
        Facts {
            config: &self.config,
            unreachable,
            leader: self.leader,
            copying: Copying::Finished,
        }
    }

    fn restart(&mut self, id: u32) {
        self.alive[ix(id)] = true;
        self.detectors[ix(id)] = Detector::new(id, FAILOVER_MS);
    }

    fn set_links(&mut self, id: u32, others: &[u32], cut: bool) {
        for &other in others {
            self.cut[ix(id)][ix(other)] = cut;
            self.cut[ix(other)][ix(id)] = cut;
        }
    }

    /// One tick: reports due are delivered, then each live node whose turn it
    /// is samples, reports and proposes.
    fn tick(&mut self, rng: &mut Rng, tick: u64) {
        let now_ms = tick * TICK_MS;
        let mut later = VecDeque::new();
        while let Some((due, from, to, suspects)) = self.net.pop_front() {
            if due > tick {
                later.push_back((due, from, to, suspects));
            } else if self.alive[ix(to)] {
                self.detectors[ix(to)].receive(now_ms, from, suspects);
            }
        }
        self.net = later;
        for a in 1..=NODES {
            if !self.alive[ix(a)] || tick % INTERVAL_TICKS != self.phases[ix(a)] {
                continue;
            }
            let unreachable = self.unreachable_from(a);
            let config = self.config.clone();
            let suspects = self.detectors[ix(a)].observe(now_ms, &config, &unreachable);
            for b in (1..=NODES).filter(|&b| b != a) {
                if !self.cut[ix(a)][ix(b)] && self.net.len() < NET_CAPACITY {
                    let due = tick + rng.range(1, DELAY_TICKS_MAX);
                    self.net.push_back((due, a, b, suspects.clone()));
                }
            }
            let proposal = self.detectors[ix(a)].propose(now_ms, &self.facts(&unreachable));
            if let Some(proposal) = proposal {
                self.decide(tick, a, proposal);
            }
        }
        assert!(
            self.down_count() < self.config.replicas(),
            "tick {tick}: {} nodes down with {} copies",
            self.down_count(),
            self.config.replicas()
        );
    }

    fn decide(&mut self, tick: u64, by: u32, proposal: Proposal) {
        let Proposal::Mark {
            node,
            state,
            suspected_by,
            config,
        } = proposal
        else {
            panic!("tick {tick}: node {by} proposed an activation, and no node joins here");
        };
        assert_eq!(config.epoch(), self.config.epoch() + 1);
        assert!(suspected_by <= NODES as usize);
        if state == NodeState::Down {
            assert!(
                self.reached_by(node) < MAJORITY,
                "tick {tick}: node {by} proposed node {node} down, reached by {} of {NODES}",
                self.reached_by(node)
            );
        }
        if self.trace {
            eprintln!(
                "tick {tick}: node {by} proposes node {node} {} ({suspected_by} suspect it)",
                state.as_str()
            );
        }
        self.made.push(Made {
            tick,
            by,
            node,
            state,
        });
        self.config = config;
        self.leader = Some(by);
    }

    /// The proposals about `node` made in `ticks`.
    fn made_about(&self, node: u32, ticks: std::ops::Range<u64>) -> Vec<Made> {
        self.made
            .iter()
            .filter(|m| m.node == node && ticks.contains(&m.tick))
            .cloned()
            .collect()
    }
}

fn draw_fault(rng: &mut Rng) -> (Fault, usize) {
    let at = SETTLE_TICKS + rng.below(2 * INTERVAL_TICKS);
    let replicas = 2 + rng.below(2) as usize;
    let fault = match rng.below(4) {
        0 => {
            let node = any_node(rng);
            // A second node down already, not an acceptor, so that Paxos
            // could still decide.
            let already_down = (rng.below(3) == 0)
                .then(|| 4 + rng.below(2) as u32)
                .filter(|&id| id != node);
            Fault::Crash {
                node,
                at,
                back_at: at + BOUND_TICKS + rng.below(3 * INTERVAL_TICKS),
                already_down,
            }
        }
        1 => {
            let from = any_node(rng);
            let to = (from + rng.range(1, u64::from(NODES) - 1) as u32 - 1) % NODES + 1;
            Fault::OneWayCut { from, to, at }
        }
        2 => {
            let node = any_node(rng);
            let count = rng.range(1, u64::from(NODES) - 1) as usize;
            let mut from: Vec<u32> = (1..=NODES).filter(|&id| id != node).collect();
            while from.len() > count {
                from.remove(rng.below(from.len() as u64) as usize);
            }
            Fault::Partition {
                node,
                from,
                at,
                healed_at: at + BOUND_TICKS + rng.below(3 * INTERVAL_TICKS),
            }
        }
        _ => {
            let mut toggles = Vec::new();
            let mut tick = at;
            for _ in 0..rng.range(3, 12) {
                toggles.push(tick);
                tick += rng.range(1, FAILOVER_TICKS - 1);
                toggles.push(tick);
                // Up long enough for every node to sample it up.
                tick += rng.range(INTERVAL_TICKS, 2 * FAILOVER_TICKS);
            }
            Fault::Flapping {
                node: any_node(rng),
                toggles,
            }
        }
    };
    (fault, replicas)
}

/// Runs one seed; panics on a broken rule. Answers the proposals made.
fn run(seed: u64, trace: bool) -> (Fault, Vec<Made>) {
    let mut rng = Rng(seed);
    let (fault, replicas) = draw_fault(&mut rng);
    if trace {
        eprintln!("seed {seed}: {replicas} copies, {fault:?}");
    }
    let down = match &fault {
        Fault::Crash { already_down, .. } => *already_down,
        _ => None,
    };
    let mut sim = Sim::new(&mut rng, trace, replicas, down);
    let end = match &fault {
        Fault::Crash { back_at, .. } => back_at + 2 * BOUND_TICKS,
        Fault::OneWayCut { at, .. } => at + 4 * BOUND_TICKS,
        Fault::Partition { healed_at, .. } => healed_at + 2 * BOUND_TICKS,
        Fault::Flapping { toggles, .. } => toggles.last().unwrap() + 2 * BOUND_TICKS,
    };
    // The node the rule names to propose the fault's mark-down, as the others
    // see it when the fault begins.
    let mut named = None;
    for tick in 0..end {
        match &fault {
            Fault::Crash {
                node, at, back_at, ..
            } => {
                if tick == *at {
                    sim.alive[ix(*node)] = false;
                    let left: Vec<u32> = (1..=NODES).filter(|&a| sim.alive[ix(a)]).collect();
                    let views: Vec<Option<u32>> =
                        left.iter().map(|&a| sim.proposer_seen_by(a)).collect();
                    assert!(
                        views.windows(2).all(|w| w[0] == w[1]),
                        "the nodes left name different proposers: {views:?}"
                    );
                    named = views[0];
                }
                if tick == *back_at {
                    sim.restart(*node);
                }
            }
            Fault::OneWayCut { from, to, at } => {
                if tick == *at {
                    sim.cut[ix(*from)][ix(*to)] = true;
                }
            }
            Fault::Partition {
                node,
                from,
                at,
                healed_at,
            } => {
                if tick == *at {
                    sim.set_links(*node, from, true);
                    named = (1..=NODES).find(|&a| a != *node && sim.proposer_seen_by(a) == Some(a));
                }
                if tick == *healed_at {
                    sim.set_links(*node, from, false);
                }
            }
            Fault::Flapping { node, toggles } => {
                if let Some(i) = toggles.iter().position(|&t| t == tick) {
                    let others: Vec<u32> = (1..=NODES).filter(|id| id != node).collect();
                    sim.set_links(*node, &others, i % 2 == 0);
                }
            }
        }
        sim.tick(&mut rng, tick);
    }
    check_fault(&sim, &fault, replicas, named);
    (fault, sim.made)
}

fn check_fault(sim: &Sim, fault: &Fault, replicas: usize, named: Option<u32>) {
    match fault {
        Fault::Crash {
            node,
            at,
            back_at,
            already_down,
        } => {
            if let Some(id) = already_down {
                assert_eq!(
                    sim.made_about(*id, 0..u64::MAX),
                    vec![],
                    "node {id} stays down"
                );
            }
            let down_then = usize::from(already_down.is_some());
            let while_down = sim.made_about(*node, *at..*back_at);
            if down_then + 1 >= replicas {
                assert_eq!(
                    while_down,
                    vec![],
                    "the cap forbids marking node {node} down"
                );
                return;
            }
            let named = named.expect("an acceptor is left");
            assert_eq!(
                while_down.len(),
                1,
                "node {node} proposed down once: {while_down:?}"
            );
            let made = &while_down[0];
            assert_eq!((made.by, made.state), (named, NodeState::Down));
            assert!(
                made.tick <= at + BOUND_TICKS,
                "node {node} crashed at tick {at}, proposed down at tick {}",
                made.tick
            );
            let back = sim.made_about(*node, *back_at..u64::MAX);
            assert!(
                matches!(back.as_slice(), [m] if m.state == NodeState::Up && m.tick <= back_at + BOUND_TICKS),
                "node {node} back at tick {back_at}: {back:?}"
            );
        }
        Fault::OneWayCut { .. } | Fault::Flapping { .. } => {
            assert_eq!(sim.made, vec![], "every node is reachable from a majority");
        }
        Fault::Partition {
            node,
            from,
            at,
            healed_at,
        } => {
            let cut_off = NODES as usize - from.len() < MAJORITY;
            let during = sim.made_about(*node, *at..*healed_at);
            if !cut_off {
                assert_eq!(sim.made, vec![], "node {node} is reachable from a majority");
                return;
            }
            // A leader (or, with none known, the lowest acceptor) cut off from
            // a majority but still reached by the lowest of the other acceptors:
            // no other node names itself, and nobody proposes until Paxos, which
            // this simulation leaves out, elects another leader.
            let Some(named) = named else {
                assert_eq!(sim.made, vec![], "no node but {node} names itself");
                return;
            };
            assert!(
                matches!(during.as_slice(), [m] if m.by == named && m.state == NodeState::Down && m.tick <= at + BOUND_TICKS),
                "node {node} cut off at tick {at}, node {named} to propose: {during:?}"
            );
            let back = sim.made_about(*node, *healed_at..u64::MAX);
            assert!(
                matches!(back.as_slice(), [m] if m.state == NodeState::Up && m.tick <= healed_at + BOUND_TICKS),
                "node {node} healed at tick {healed_at}: {back:?}"
            );
        }
    }
}

#[test]
fn every_seed_marks_down_only_what_a_majority_cannot_reach_and_marks_it_up_on_return() {
    let (seeds, trace) = sim::sim_seeds(SEEDS_DEFAULT);
    let (mut crashes_marked, mut cut_off_marked, mut capped, mut left_to_paxos) = (0, 0, 0, 0);
    for seed in seeds.iter().copied() {
        match catch_unwind(AssertUnwindSafe(|| run(seed, trace))) {
            Ok((fault, made)) => match fault {
                Fault::Crash { .. } if made.is_empty() => capped += 1,
                Fault::Crash { .. } => crashes_marked += 1,
                Fault::Partition { .. } if !made.is_empty() => cut_off_marked += 1,
                Fault::Partition { from, .. } if NODES as usize - from.len() < MAJORITY => {
                    left_to_paxos += 1;
                }
                _ => {}
            },
            Err(_) => {
                panic!("detector_sim failed on seed {seed}; replay with RINGCACHE_SEED={seed}")
            }
        }
    }
    eprintln!(
        "detector_sim: {} seeds: {crashes_marked} crashed nodes marked down and up, \
         {capped} crashes held up by the cap, {cut_off_marked} cut-off nodes marked down and up, \
         {left_to_paxos} cut-off leaders left to Paxos",
        seeds.len()
    );
}

#[test]
fn one_seed_replays_exactly() {
    for seed in [3, 11, 42] {
        assert_eq!(run(seed, false).1, run(seed, false).1);
    }
}

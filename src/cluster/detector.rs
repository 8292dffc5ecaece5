//! Failure detection (pure): which nodes this node suspects, and the change to
//! the cluster configuration it proposes because of it.
//!
//! A node *suspects* another once its data path has found that node unreachable
//! (TKO) for the failover timeout without a break. Every node reports its
//! suspects to the others every [`REPORT_INTERVAL_MS`]; a report counts for
//! [`REPORT_TTL_MS`], and only a member's report counts.
//!
//! The rules, applied by [`Detector::propose`] in this order:
//! - **activation**: a `joining` node that has finished copying its keys
//!   proposes itself `up`;
//! - **who proposes**: only the Paxos leader (the node whose ballot this node
//!   last promised), or, when this node knows of no reachable leader, the
//!   lowest-id acceptor it reaches; so nodes rarely duel (Paxos settles it
//!   when they do);
//! - **mark down** an `up` node that a majority of the members (this node
//!   included) suspects, unless `replicas - 1` nodes are down already: every
//!   key keeps an owner that is up, so a sick network cannot empty the cluster;
//! - **mark up** a `down` node that nobody suspects and this node has found
//!   reachable for the failover timeout; the proposer itself, when it is
//!   `down`, once recent reports from a majority of the members (its own
//!   included) have suspected it for none of the failover timeout.
//!
//! At most one change per proposal, the first node by id that needs one.
//!
//! What the caller feeds it: the time as milliseconds on any clock that does
//! not go back (`now_ms`); at every report interval, which nodes the data path
//! finds unreachable now ([`Detector::observe`], which answers the suspects to
//! report); each report another node sends ([`Detector::receive`]); and, when
//! no proposal of its own is under way, [`Facts`] for [`Detector::propose`].
//! The caller sends the reports and hands the proposal to consensus.

use super::config::{ClusterConfig, NodeState};
use std::collections::HashMap;

/// How often a node tells the others which nodes it suspects (the report is
/// also its heartbeat to them).
pub const REPORT_INTERVAL_MS: u64 = 100;

/// A report older than this no longer counts.
pub const REPORT_TTL_MS: u64 = 1000;

/// A report this recent shows that its sender still reaches this node (one
/// comes every [`REPORT_INTERVAL_MS`]); an older one that still counts may
/// have been sent before a cut.
pub const REACHED_REPORT_AGE_MS: u64 = 5 * REPORT_INTERVAL_MS;

/// What this node knows when it may propose.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The configuration in force (the latest this node has learned).
    pub config: &'a ClusterConfig,
    /// The nodes the data path finds unreachable now.
    pub unreachable: &'a [u32],
    /// The node whose ballot this node last promised, if any.
    pub leader: Option<u32>,
    /// Whether this node still copies what it missed or what moved to it.
    pub copying: Copying,
}

/// Whether this node is copying keys (start-up recovery or a move).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copying {
    Underway,
    Finished,
}

/// A configuration change to propose, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposal {
    /// This node joined and has finished copying: it proposes itself `up`.
    Activation { config: ClusterConfig },
    /// Another node marked `down` or `up`.
    Mark {
        node: u32,
        state: NodeState,
        /// How many members (this node included) suspect it.
        suspected_by: usize,
        config: ClusterConfig,
    },
}

impl Proposal {
    /// The configuration to propose.
    pub fn config(&self) -> &ClusterConfig {
        match self {
            Proposal::Activation { config } | Proposal::Mark { config, .. } => config,
        }
    }

    pub fn into_config(self) -> ClusterConfig {
        match self {
            Proposal::Activation { config } | Proposal::Mark { config, .. } => config,
        }
    }
}

/// The latest report of one other node.
#[derive(Clone, Debug)]
struct Report {
    at_ms: u64,
    suspects: Vec<u32>,
}

/// One node's failure detector: what it has observed and what it has heard.
#[derive(Clone, Debug)]
pub struct Detector {
    me: u32,
    failover_ms: u64,
    /// Since when the data path has found each node unreachable.
    unreachable_since: HashMap<u32, u64>,
    /// Since when each node has been reachable again.
    reachable_since: HashMap<u32, u64>,
    /// The latest report of each other node.
    reports: HashMap<u32, Report>,
}

impl Detector {
    pub fn new(me: u32, failover_ms: u64) -> Self {
        Detector {
            me,
            failover_ms,
            unreachable_since: HashMap::new(),
            reachable_since: HashMap::new(),
            reports: HashMap::new(),
        }
    }

    /// Records which of `config`'s nodes the data path finds unreachable at
    /// `now_ms`, and answers the nodes this node now suspects, by id (the
    /// report to send).
    pub fn observe(
        &mut self,
        now_ms: u64,
        config: &ClusterConfig,
        unreachable: &[u32],
    ) -> Vec<u32> {
        for node in config.nodes().iter().filter(|n| n.id != self.me) {
            if unreachable.contains(&node.id) {
                self.unreachable_since.entry(node.id).or_insert(now_ms);
                self.reachable_since.remove(&node.id);
            } else {
                self.unreachable_since.remove(&node.id);
                self.reachable_since.entry(node.id).or_insert(now_ms);
            }
        }
        // Nothing outside the configuration or past its time is kept.
        self.unreachable_since
            .retain(|id, _| config.node(*id).is_some());
        self.reachable_since
            .retain(|id, _| config.node(*id).is_some());
        self.reports
            .retain(|_, report| now_ms.saturating_sub(report.at_ms) < REPORT_TTL_MS);
        // This node is reached as long as a majority of the members report
        // and none of them suspects it (see `Detector::mark`).
        if self.reached_by_a_majority(now_ms, config) {
            self.reachable_since.entry(self.me).or_insert(now_ms);
        } else {
            self.reachable_since.remove(&self.me);
        }
        self.suspects(now_ms)
    }

    /// Node `from` reported at `now_ms` that it suspects `suspects`; this
    /// replaces its previous report.
    pub fn receive(&mut self, now_ms: u64, from: u32, suspects: Vec<u32>) {
        self.reports.insert(
            from,
            Report {
                at_ms: now_ms,
                suspects,
            },
        );
    }

    /// The nodes this node has found unreachable for the failover timeout, by id.
    pub fn suspects(&self, now_ms: u64) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .unreachable_since
            .iter()
            .filter(|(_, &since)| now_ms.saturating_sub(since) >= self.failover_ms)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The change to propose at `now_ms`, if any (see the module docs).
    pub fn propose(&self, now_ms: u64, facts: &Facts) -> Option<Proposal> {
        activation(self.me, facts.config, facts.copying).or_else(|| self.mark(now_ms, facts))
    }

    /// Whether the members that sent a report in the last
    /// [`REACHED_REPORT_AGE_MS`] make a majority with this node, and none of
    /// their reports that count suspects it.
    fn reached_by_a_majority(&self, now_ms: u64, config: &ClusterConfig) -> bool {
        let members = self
            .reports
            .iter()
            .filter(|(from, _)| config.node(**from).is_some());
        let mut reporting = 1;
        for (_, report) in members {
            if report.suspects.contains(&self.me) {
                return false;
            }
            reporting += usize::from(now_ms.saturating_sub(report.at_ms) < REACHED_REPORT_AGE_MS);
        }
        reporting > config.nodes().len() / 2
    }

    /// How many members (this node included) suspect `id`.
    fn suspected_by(&self, now_ms: u64, config: &ClusterConfig, mine: &[u32], id: u32) -> usize {
        // Only members count: a removed node may still report for a while.
        let fresh = self
            .reports
            .iter()
            .filter(|(from, report)| {
                config.node(**from).is_some()
                    && now_ms.saturating_sub(report.at_ms) < REPORT_TTL_MS
                    && report.suspects.contains(&id)
            })
            .count();
        fresh + usize::from(mine.contains(&id))
    }

    /// A node marked down or up, if this node is the one to propose it.
    fn mark(&self, now_ms: u64, facts: &Facts) -> Option<Proposal> {
        let config = facts.config;
        if proposer(self.me, facts) != Some(self.me) {
            return None;
        }
        let mine = self.suspects(now_ms);
        let majority = config.nodes().len() / 2 + 1;
        let down = config
            .nodes()
            .iter()
            .filter(|n| n.state == NodeState::Down)
            .count();
        let mut spec = config.to_spec();
        // This node may mark itself up (never down): a proposer that a
        // decision marked down, and that the others reach again, is the one
        // they leave the proposal to.
        for node in config
            .nodes()
            .iter()
            .filter(|n| n.id != self.me || n.state == NodeState::Down)
        {
            let suspected_by = self.suspected_by(now_ms, config, &mine, node.id);
            let state = match node.state {
                NodeState::Up if suspected_by >= majority && down + 1 < config.replicas() => {
                    NodeState::Down
                }
                NodeState::Down
                    if suspected_by == 0
                        && self.reachable_since.get(&node.id).is_some_and(|&since| {
                            now_ms.saturating_sub(since) >= self.failover_ms
                        }) =>
                {
                    NodeState::Up
                }
                _ => continue,
            };
            spec.nodes.iter_mut().find(|n| n.id == node.id)?.state = state;
            return Some(Proposal::Mark {
                node: node.id,
                state,
                suspected_by,
                config: config.successor(spec).ok()?,
            });
        }
        None
    }
}

/// The node that proposes changes, as `me` sees it: the leader if it is an
/// acceptor `me` reaches, or else the lowest-id acceptor `me` reaches.
pub fn proposer(me: u32, facts: &Facts) -> Option<u32> {
    let acceptors = facts.config.acceptors();
    let reachable = |id: u32| id == me || !facts.unreachable.contains(&id);
    facts
        .leader
        .filter(|&id| acceptors.contains(&id) && reachable(id))
        .or_else(|| acceptors.iter().copied().filter(|&id| reachable(id)).min())
}

/// A node that joined (state `joining`, owning no keys yet) proposes itself
/// `up` once it has finished copying; keys then move to it.
pub fn activation(me: u32, config: &ClusterConfig, copying: Copying) -> Option<Proposal> {
    if config.node(me)?.state != NodeState::Joining || copying == Copying::Underway {
        return None;
    }
    let mut spec = config.to_spec();
    spec.nodes.iter_mut().find(|n| n.id == me)?.state = NodeState::Up;
    Some(Proposal::Activation {
        config: config.successor(spec).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::config::{ClusterSpec, Endpoint, NodeConfig, WriteAck};

    const FAILOVER_MS: u64 = 3000;
    // The tests send reports a TTL before the timeout.
    const _: () = assert!(FAILOVER_MS >= REPORT_TTL_MS);

    /// Nodes 1..=`nodes`, all up, acceptors 1, 2 and 3 (as many as there are).
    fn config(nodes: u32, replicas: usize) -> ClusterConfig {
        let spec = ClusterSpec {
            nodes: (1..=nodes)
                .map(|id| NodeConfig {
                    id,
                    client_addr: Endpoint::parse(&format!("10.0.0.{id}:11211")).unwrap(),
                    shards: vec![Endpoint::parse(&format!("10.0.0.{id}:11300")).unwrap()],
                    state: NodeState::Up,
                })
                .collect(),
            replicas,
            vnodes_per_shard: 160,
            write_ack: WriteAck::Quorum,
            acceptors: (1..=nodes.min(3)).collect(),
            next_node_id: 0,
        };
        ClusterConfig::new(7, spec).unwrap()
    }

    fn with_state(config: &ClusterConfig, id: u32, state: NodeState) -> ClusterConfig {
        let mut spec = config.to_spec();
        spec.nodes.iter_mut().find(|n| n.id == id).unwrap().state = state;
        ClusterConfig::new(config.epoch(), spec).unwrap()
    }

    fn facts<'a>(
        config: &'a ClusterConfig,
        unreachable: &'a [u32],
        leader: Option<u32>,
    ) -> Facts<'a> {
        Facts {
            config,
            unreachable,
            leader,
            copying: Copying::Finished,
        }
    }

    /// The node and state a proposal marks, if it marks one.
    fn mark(proposal: Option<Proposal>) -> Option<(u32, NodeState)> {
        match proposal? {
            Proposal::Mark {
                node,
                state,
                config: next,
                ..
            } => {
                assert_eq!(next.node(node).unwrap().state, state);
                Some((node, state))
            }
            Proposal::Activation { .. } => panic!("not a mark"),
        }
    }

    /// Node 1 (the leader) of five has found node 5 unreachable since 0, and
    /// `reporters` report just before the failover timeout that they suspect it.
    fn leader_watching_node_5(config: &ClusterConfig, reporters: &[u32]) -> Detector {
        let mut detector = Detector::new(1, FAILOVER_MS);
        detector.observe(0, config, &[5]);
        for &from in reporters {
            detector.receive(FAILOVER_MS - 1, from, vec![5]);
        }
        detector
    }

    #[test]
    fn a_node_is_suspected_once_unreachable_for_the_failover_timeout_without_a_break() {
        let config = config(3, 2);
        let mut detector = Detector::new(1, FAILOVER_MS);
        assert!(detector.observe(0, &config, &[3]).is_empty());
        assert!(detector.observe(FAILOVER_MS - 1, &config, &[3]).is_empty());
        assert_eq!(detector.observe(FAILOVER_MS, &config, &[3]), vec![3]);
        // Reached once: the count starts again.
        assert!(detector.observe(FAILOVER_MS + 100, &config, &[]).is_empty());
        assert!(detector
            .observe(FAILOVER_MS + 200, &config, &[3])
            .is_empty());
        assert_eq!(
            detector.observe(2 * FAILOVER_MS + 200, &config, &[3]),
            vec![3]
        );
    }

    #[test]
    fn a_majority_suspecting_a_node_for_the_failover_timeout_marks_it_down() {
        let config = config(5, 3);
        let detector = leader_watching_node_5(&config, &[2, 3]);
        let unreachable = [5];
        let now = facts(&config, &unreachable, Some(1));
        // Before the timeout this node does not suspect it yet: 2 of 5.
        assert_eq!(detector.propose(FAILOVER_MS - 1, &now), None);
        let proposal = detector.propose(FAILOVER_MS, &now).unwrap();
        assert_eq!(proposal.config().epoch(), config.epoch() + 1);
        let Proposal::Mark { suspected_by, .. } = &proposal else {
            panic!("not a mark");
        };
        assert_eq!(*suspected_by, 3);
        assert_eq!(mark(Some(proposal)), Some((5, NodeState::Down)));
    }

    #[test]
    fn a_minority_suspecting_a_node_does_not_mark_it_down() {
        let config = config(5, 3);
        let detector = leader_watching_node_5(&config, &[2]);
        let unreachable = [5];
        assert_eq!(
            detector.propose(FAILOVER_MS * 10, &facts(&config, &unreachable, Some(1))),
            None
        );
    }

    #[test]
    fn no_more_than_replicas_minus_one_nodes_are_marked_down() {
        // Node 4 is down already and unreachable; a majority suspects node 5.
        let unreachable = [4, 5];
        let watching = |config: &ClusterConfig| {
            let mut detector = Detector::new(1, FAILOVER_MS);
            detector.observe(0, config, &unreachable);
            for from in [2, 3] {
                detector.receive(FAILOVER_MS, from, vec![4, 5]);
            }
            detector
        };
        // Two copies: node 5 down too would leave keys with no owner up.
        let config = with_state(&config(5, 2), 4, NodeState::Down);
        let now = facts(&config, &unreachable, Some(1));
        assert_eq!(watching(&config).propose(FAILOVER_MS, &now), None);
        // Three copies: one more may go down.
        let config = with_state(&self::config(5, 3), 4, NodeState::Down);
        let now = facts(&config, &unreachable, Some(1));
        assert_eq!(
            mark(watching(&config).propose(FAILOVER_MS, &now)),
            Some((5, NodeState::Down))
        );
    }

    #[test]
    fn a_down_node_reachable_for_the_failover_timeout_is_marked_up() {
        let config = with_state(&config(5, 3), 5, NodeState::Down);
        let mut detector = Detector::new(1, FAILOVER_MS);
        detector.observe(0, &config, &[]);
        let now = facts(&config, &[], Some(1));
        assert_eq!(detector.propose(FAILOVER_MS - 1, &now), None);
        assert_eq!(
            mark(detector.propose(FAILOVER_MS, &now)),
            Some((5, NodeState::Up))
        );
    }

    #[test]
    fn a_down_node_anyone_suspects_is_not_marked_up() {
        let config = with_state(&config(5, 3), 5, NodeState::Down);
        let mut detector = Detector::new(1, FAILOVER_MS);
        detector.observe(0, &config, &[]);
        detector.receive(FAILOVER_MS, 4, vec![5]);
        assert_eq!(
            detector.propose(FAILOVER_MS, &facts(&config, &[], Some(1))),
            None
        );
    }

    #[test]
    fn a_leader_marked_down_marks_itself_up_once_a_majority_reaches_it() {
        // Node 2, the leader, was marked down while paused and is back: the
        // others leave proposals to it, so it is the one to mark itself up.
        let config = with_state(&config(3, 3), 2, NodeState::Down);
        let now = facts(&config, &[], Some(2));
        let mut detector = Detector::new(2, FAILOVER_MS);
        // No report yet: nothing says the others reach it.
        detector.observe(0, &config, &[]);
        assert_eq!(detector.propose(FAILOVER_MS, &now), None);
        // Node 1 reports, suspecting nobody: with this node, a majority.
        detector.receive(100, 1, vec![]);
        detector.observe(100, &config, &[]);
        assert_eq!(detector.propose(FAILOVER_MS + 99, &now), None);
        assert_eq!(
            mark(detector.propose(FAILOVER_MS + 100, &now)),
            Some((2, NodeState::Up))
        );
        // A report suspecting it starts the count again.
        detector.receive(FAILOVER_MS + 200, 3, vec![2]);
        detector.observe(FAILOVER_MS + 200, &config, &[]);
        assert_eq!(detector.propose(3 * FAILOVER_MS, &now), None);
        // It never marks itself down, whoever suspects it.
        let config = self::config(3, 3);
        let mut detector = Detector::new(2, FAILOVER_MS);
        detector.observe(0, &config, &[]);
        detector.receive(FAILOVER_MS, 1, vec![2]);
        detector.receive(FAILOVER_MS, 3, vec![2]);
        assert_eq!(
            detector.propose(FAILOVER_MS, &facts(&config, &[], Some(2))),
            None
        );
    }

    #[test]
    fn only_the_leader_proposes() {
        let config = config(5, 3);
        let unreachable = [5];
        for me in 1..=5 {
            let mut detector = Detector::new(me, FAILOVER_MS);
            detector.observe(0, &config, &unreachable);
            for from in (1..=4).filter(|&id| id != me) {
                detector.receive(FAILOVER_MS, from, vec![5]);
            }
            let proposal = detector.propose(FAILOVER_MS, &facts(&config, &unreachable, Some(2)));
            let expected = (me == 2).then_some((5, NodeState::Down));
            assert_eq!(mark(proposal), expected, "node {me}");
        }
    }

    #[test]
    fn the_lowest_reachable_acceptor_proposes_when_the_leader_is_unreachable() {
        // Node 1, the leader, is gone: nodes 2 to 5 suspect it, node 2 proposes.
        let config = config(5, 3);
        let unreachable = [1];
        for me in 2..=5 {
            let mut detector = Detector::new(me, FAILOVER_MS);
            detector.observe(0, &config, &unreachable);
            for from in (2..=5).filter(|&id| id != me) {
                detector.receive(FAILOVER_MS, from, vec![1]);
            }
            for leader in [Some(1), None] {
                let proposal = detector.propose(FAILOVER_MS, &facts(&config, &unreachable, leader));
                let expected = (me == 2).then_some((1, NodeState::Down));
                assert_eq!(mark(proposal), expected, "node {me}, leader {leader:?}");
            }
        }
        // A leader that is no acceptor (a stale promise) does not count either.
        let now = facts(&config, &[], Some(4));
        assert_eq!(proposer(1, &now), Some(1));
        assert_eq!(proposer(2, &facts(&config, &[1], Some(4))), Some(2));
    }

    #[test]
    fn reports_older_than_their_ttl_do_not_count() {
        let config = config(5, 3);
        let detector = leader_watching_node_5(&config, &[2, 3]);
        let unreachable = [5];
        let now = facts(&config, &unreachable, Some(1));
        let mut late = detector.clone();
        late.receive(FAILOVER_MS - REPORT_TTL_MS, 2, vec![5]);
        late.receive(FAILOVER_MS - REPORT_TTL_MS, 3, vec![5]);
        assert_eq!(late.propose(FAILOVER_MS, &now), None);
        late.receive(FAILOVER_MS - REPORT_TTL_MS + 1, 3, vec![5]);
        assert_eq!(late.propose(FAILOVER_MS, &now), None);
        late.receive(FAILOVER_MS - REPORT_TTL_MS + 1, 2, vec![5]);
        assert_eq!(
            mark(late.propose(FAILOVER_MS, &now)),
            Some((5, NodeState::Down))
        );
    }

    #[test]
    fn reports_from_nodes_outside_the_configuration_do_not_count() {
        let config = config(5, 3);
        let detector = leader_watching_node_5(&config, &[2, 9]);
        let unreachable = [5];
        let mut fresh = detector.clone();
        fresh.receive(FAILOVER_MS, 9, vec![5]);
        fresh.receive(FAILOVER_MS, 2, vec![5]);
        assert_eq!(
            fresh.propose(FAILOVER_MS, &facts(&config, &unreachable, Some(1))),
            None
        );
    }

    #[test]
    fn a_new_report_replaces_the_previous_one() {
        let config = config(5, 3);
        let mut detector = leader_watching_node_5(&config, &[]);
        let unreachable = [5];
        for from in [2, 3] {
            detector.receive(FAILOVER_MS - 100, from, vec![5]);
        }
        detector.receive(FAILOVER_MS - 50, 3, vec![]);
        assert_eq!(
            detector.propose(FAILOVER_MS, &facts(&config, &unreachable, Some(1))),
            None
        );
    }

    #[test]
    fn a_joining_node_proposes_itself_up_once_it_has_finished_copying() {
        let config = with_state(&config(5, 3), 5, NodeState::Joining);
        let detector = Detector::new(5, FAILOVER_MS);
        let mut now = facts(&config, &[], Some(1));
        now.copying = Copying::Underway;
        assert_eq!(detector.propose(0, &now), None);
        now.copying = Copying::Finished;
        // Not the proposer of marks, but it activates itself all the same.
        let Some(Proposal::Activation { config: next }) = detector.propose(0, &now) else {
            panic!("no activation");
        };
        assert_eq!(next.epoch(), config.epoch() + 1);
        assert_eq!(next.node(5).unwrap().state, NodeState::Up);
        assert_eq!(activation(4, &config, Copying::Finished), None);
        assert_eq!(activation(9, &config, Copying::Finished), None);
    }
}

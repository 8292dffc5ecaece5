//! The smallest [`Configuration`]: its members and a tag, for running the
//! consensus core outside the server (pure). The core's unit tests and the
//! seeded simulator (`tests/consensus_sim.rs`) agree values of this type; the
//! model checker keeps a fixed-size `Copy` one of its own, which makes its
//! states cheaper to clone and hash. The server's is
//! `cluster::config::ClusterConfig`.

use super::{Configuration, NodeId};

/// A configuration that is only who decides the next epoch, who else learns
/// it, and a tag that tells apart values with the same members (standing in
/// for the rest of a real configuration).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestConfiguration {
    pub acceptors: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub tag: u64,
}

impl Configuration for TestConfiguration {
    fn acceptors(&self) -> &[NodeId] {
        &self.acceptors
    }

    fn learners(&self) -> &[NodeId] {
        &self.learners
    }
}

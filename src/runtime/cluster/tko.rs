//! TKO marks: the peers a node skips after a request to them timed out, and
//! the probe that finds them answering again. [`ClusterNode::probe`] does
//! network I/O; the marks themselves are shared flags.

use super::node::ClusterNode;
use super::peer;
use crate::cluster::ring::Owner;
use crate::cluster::wire::{self, PeerMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl ClusterNode {
    pub(super) fn tko_flag(&self, node: u32) -> Option<Arc<AtomicBool>> {
        self.tko.read().expect("tko lock").get(&node).cloned()
    }

    pub fn is_tko(&self, node: u32) -> bool {
        node != self.me
            && self
                .tko_flag(node)
                .is_some_and(|t| t.load(Ordering::Acquire))
    }

    pub fn mark_tko(&self, node: u32) {
        if node == self.me {
            return;
        }
        if let Some(t) = self.tko_flag(node) {
            if !t.swap(true, Ordering::AcqRel) {
                log::warn!("node {node} is unreachable: skipping it until it answers a probe");
            }
        }
    }

    pub fn clear_tko(&self, node: u32) {
        if let Some(t) = self.tko_flag(node) {
            if t.swap(false, Ordering::AcqRel) {
                log::info!("node {node} answers again");
            }
        }
    }

    /// Marks `node` TKO after a request to it timed out; counts the timeouts
    /// that did so (those of requests already in flight when it happened do not).
    pub fn timed_out(&self, node: u32) {
        if node != self.me && !self.is_tko(node) {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            *self
                .timeouts_by_node
                .lock()
                .expect("timeouts lock")
                .entry(node)
                .or_insert(0) += 1;
        }
        self.mark_tko(node);
    }

    /// Whether `node` answers a no-op on its first shard's endpoint in time, as
    /// a forwarded request would be answered.
    pub async fn probe(&self, node: u32) -> bool {
        let first = Owner { node, shard: 0 };
        let Some(addr) = self
            .view()
            .shard_addr(first)
            .or_else(|| self.shard_addrs(node).first().copied())
        else {
            return false;
        };
        let mode = Some((PeerMode::Forward, self.epoch()));
        peer::one_off(self, addr, mode, wire::MN_REQUEST, self.peer_timeout).await == Ok(Vec::new())
    }

    pub fn count_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

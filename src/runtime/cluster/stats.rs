//! `stats cluster` and `stats peers`. `stats cluster` asks every reachable
//! node for its item count (network I/O); `stats peers` asks no one.

use super::node::ClusterNode;
use super::peer;
use super::routing::ShardCluster;
use std::sync::atomic::Ordering;

/// The cluster view for `stats cluster`: the configuration, this node's state
/// and counters, and every node's reachability and item count.
pub async fn write_stats_cluster(cluster: &ShardCluster, own_items: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    let node = &cluster.node;
    let mut body = Vec::new();
    let view = node.view();
    crate::cluster::discovery::encode_stats_cluster(view.config(), &mut body);
    body.truncate(body.len() - b"END\r\n".len());
    let _ = write!(body, "STAT node_id {}\r\n", node.me);
    write_state_stats(cluster, &mut body);
    let _ = write!(
        body,
        "STAT missed_writes {}\r\n",
        node.missed_writes.load(Ordering::Relaxed)
    );
    let _ = write!(
        body,
        "STAT replayed_hints {}\r\n",
        node.replayed_hints.load(Ordering::Relaxed)
    );
    write_link_stats(node, &mut body);
    for peer in view.config().nodes() {
        let items = if peer.id == node.me {
            Some(own_items)
        } else if node.is_tko(peer.id) {
            None
        } else {
            peer::one_off(
                node,
                view.client_addr(peer.id).expect("a member's address"),
                None,
                b"stats\r\nmn\r\n",
                node.peer_timeout,
            )
            .await
            .ok()
            .and_then(|reply| curr_items(&reply))
        };
        match items {
            Some(items) => {
                let _ = write!(body, "STAT node:{}:reachable yes\r\n", peer.id);
                let _ = write!(body, "STAT node:{}:curr_items {items}\r\n", peer.id);
            }
            None => {
                let _ = write!(body, "STAT node:{}:reachable no\r\n", peer.id);
            }
        }
    }
    body.extend_from_slice(b"END\r\n");
    out.extend_from_slice(&body);
}

/// `stats peers` (ringcache's own): this node's standing and, per other node,
/// the client requests forwarded to it (`forwarded_to`, summed over shards),
/// the timeouts that made it TKO and whether it is reachable now. Unlike
/// `stats cluster` it asks no other node anything, so it is cheap to poll.
pub fn write_stats_peers(cluster: &ShardCluster, forwarded_to: &[(u32, u64)], out: &mut Vec<u8>) {
    use std::io::Write;
    let node = &cluster.node;
    let view = node.view();
    let _ = write!(out, "STAT node_id {}\r\n", node.me);
    let _ = write!(out, "STAT epoch {}\r\n", view.epoch());
    write_state_stats(cluster, out);
    write_link_stats(node, out);
    let timeouts = node.timeouts_by_node.lock().expect("timeouts lock").clone();
    for peer in view.config().nodes() {
        if peer.id == node.me {
            continue;
        }
        let id = peer.id;
        let forwarded = forwarded_to
            .iter()
            .find(|(n, _)| *n == id)
            .map_or(0, |(_, n)| *n);
        let _ = write!(out, "STAT peer:{id}:state {}\r\n", peer.state.as_str());
        let reachable = if node.is_tko(id) { "no" } else { "yes" };
        let _ = write!(out, "STAT peer:{id}:reachable {reachable}\r\n");
        let _ = write!(out, "STAT peer:{id}:forwarded {forwarded}\r\n");
        let timeouts = timeouts.get(&id).copied().unwrap_or(0);
        let _ = write!(out, "STAT peer:{id}:timeouts {timeouts}\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

/// `leader`, `node_state` and `hinted_keys`, as `stats cluster` and
/// `stats peers` show them.
fn write_state_stats(cluster: &ShardCluster, out: &mut Vec<u8>) {
    use std::io::Write;
    let node = &cluster.node;
    let _ = write!(
        out,
        "STAT leader {}\r\n",
        node.leader.load(Ordering::Relaxed)
    );
    let _ = write!(out, "STAT node_state {}\r\n", node.state_name());
    let _ = write!(out, "STAT hinted_keys {}\r\n", cluster.hinted_keys());
}

/// `peer_timeouts` and `peer_disconnects`, as `stats cluster` and
/// `stats peers` show them.
fn write_link_stats(node: &ClusterNode, out: &mut Vec<u8>) {
    use std::io::Write;
    let timeouts = node.timeouts.load(Ordering::Relaxed);
    let _ = write!(out, "STAT peer_timeouts {timeouts}\r\n");
    let disconnects = node.disconnects.load(Ordering::Relaxed);
    let _ = write!(out, "STAT peer_disconnects {disconnects}\r\n");
}

fn curr_items(stats: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stats).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("STAT curr_items "))
        .and_then(|n| n.trim().parse().ok())
}

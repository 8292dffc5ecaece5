//! The client wire of the cluster: the configuration as the client port shows it
//! to memcached clients, in `stats cluster` and ElastiCache-style
//! auto-discovery's `config get cluster`, so that a ketama client can find every
//! shard endpoint (pure: a value in, reply bytes out). Nodes do not read it; they
//! speak [`super::wire`] and [`super::codec`].

use std::io::Write;

use super::config::ClusterConfig;

/// Writes the whole reply to `stats cluster`: `STAT <name> <value>\r\n` lines,
/// then `END\r\n`.
///
/// # Format
///
/// ```text
/// STAT epoch 1
/// STAT replicas 2
/// STAT write_ack quorum
/// STAT write_acks_needed 2
/// STAT vnodes_per_shard 160
/// STAT nodes 3
/// STAT acceptors 1,2,3
/// STAT node:1:state up
/// STAT node:1:addr 10.0.0.1:11211
/// STAT node:1:shards 2
/// STAT node:1:shard:0 10.0.0.1:11300
/// STAT node:1:shard:1 10.0.0.1:11301
/// ...
/// END
/// ```
pub fn encode_stats_cluster(config: &ClusterConfig, out: &mut Vec<u8>) {
    let acceptors: Vec<String> = config.acceptors().iter().map(u32::to_string).collect();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "STAT epoch {}\r\n", config.epoch());
    let _ = write!(out, "STAT replicas {}\r\n", config.replicas());
    let _ = write!(out, "STAT write_ack {}\r\n", config.write_ack().as_str());
    let _ = write!(
        out,
        "STAT write_acks_needed {}\r\n",
        config.write_ack().acks_needed(config.replicas())
    );
    let _ = write!(
        out,
        "STAT vnodes_per_shard {}\r\n",
        config.vnodes_per_shard()
    );
    let _ = write!(out, "STAT nodes {}\r\n", config.nodes().len());
    let _ = write!(out, "STAT acceptors {}\r\n", acceptors.join(","));
    for node in config.nodes() {
        let id = node.id;
        let _ = write!(out, "STAT node:{id}:state {}\r\n", node.state.as_str());
        let _ = write!(out, "STAT node:{id}:addr {}\r\n", node.client_addr);
        let _ = write!(out, "STAT node:{id}:shards {}\r\n", node.shards.len());
        for (shard, endpoint) in node.shards.iter().enumerate() {
            let _ = write!(out, "STAT node:{id}:shard:{shard} {endpoint}\r\n");
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// Writes the reply to `config get cluster` in ElastiCache's auto-discovery
/// format, which its cluster clients (and folsom, pymemcache's users, ...) read:
///
/// # Format
///
/// ```text
/// CONFIG cluster 0 <bytes>\r\n
/// <epoch>\n
/// <host>|<ip>|<port> <host>|<ip>|<port> ...\n
/// \r\n
/// END\r\n
/// ```
///
/// `<bytes>` counts the data block, `<epoch>\n` and the endpoint line with its
/// `\n`, as a `get` reply's length counts its value; the `\r\n` after it ends the
/// block. The version is the epoch, so a client sees a change when it grows.
///
/// Every shard endpoint of every node on the ring (`up` and `down`, node id then
/// shard order) is listed: a ketama client then builds the nodes' own ring, and
/// its keys go straight to their primaries. `joining` nodes own no vnodes and are
/// left out. `<ip>` is the host when it is an IP literal and empty otherwise
/// (clients then resolve the host; this stays pure, with no name lookups).
pub fn encode_config_get_cluster(config: &ClusterConfig, out: &mut Vec<u8>) {
    let mut data: Vec<u8> = Vec::new();
    let _ = writeln!(data, "{}", config.epoch());
    let mut first = true;
    for node in config.nodes().iter().filter(|n| n.state.is_on_ring()) {
        for endpoint in &node.shards {
            if !first {
                data.push(b' ');
            }
            first = false;
            let ip = endpoint.ip().map(|ip| ip.to_string()).unwrap_or_default();
            let _ = write!(data, "{}|{}|{}", endpoint.host, ip, endpoint.port);
        }
    }
    data.push(b'\n');
    let _ = write!(out, "CONFIG cluster 0 {}\r\n", data.len());
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\r\nEND\r\n");
}

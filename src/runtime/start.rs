//! How a node without saved state finds its place in a cluster, before its
//! shards start (plain blocking sockets: nothing runs yet).
//!
//! - `--init`: [`genesis`], a cluster of this one node.
//! - `--join HOST:PORT`: [`join`] asks that member to add this node (`rc join`);
//!   the member proposes it as `joining` under a fresh id and answers with the
//!   decided configuration, which this node starts from as a learner.
//! - `--cluster FILE --node-id ID` with an empty `--data-dir`: [`wiped`] asks the
//!   other nodes whether they have seen node ID vote. If one has, ID's acceptor
//!   state is gone with its disk, and coming back under that id could break the
//!   promises it made; the node joins as a new member instead (replacing ID).
//!
//! Top layer, with `admin` and `launch`: imports only [`auth`](super::auth) and
//! [`sealed`](super::sealed).

use super::sealed::Sealed;
use crate::cli::Config;
use crate::cluster::auth::Secret;
use crate::cluster::codec;
use crate::cluster::config::{
    ClusterConfig, ClusterSpec, Endpoint, NodeConfig, NodeState, WriteAck,
};
use crate::cluster::ring::POINTS_PER_SERVER_DEFAULT;
use crate::cluster::wire;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a joining node keeps trying to reach the member it joins through
/// (it may be starting too), and how long it waits for the decision.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// How long a node with an empty `--data-dir` waits for each other node's
/// `rc status`.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long a node with an empty `--data-dir` keeps asking a node that runs
/// (it accepts connections) but does not answer `rc status`, before it gives
/// up starting: it cannot tell whether that node saw it vote.
const STATUS_PATIENCE: Duration = Duration::from_secs(30);

/// This node's client endpoint (`-l`, `-p`) and shard endpoints
/// (`--shard-ports BASE`, default the ports right after `-p`), for `--init` and
/// `--join`.
pub fn own_endpoints(config: &Config) -> Result<(Endpoint, Vec<Endpoint>), String> {
    let shards = config
        .threads
        .unwrap_or_else(|| super::allowed_cpus().len())
        .max(1);
    let base = config
        .shard_port_base
        .map(usize::from)
        .unwrap_or(usize::from(config.port) + 1);
    if base + shards - 1 > usize::from(u16::MAX) {
        return Err(format!(
            "{shards} shards need ports {base} to {}: past 65535 (set --shard-ports)",
            base + shards - 1
        ));
    }
    let endpoint = |port: usize| Endpoint::parse(&format!("{}:{port}", config.listen));
    let addr = endpoint(usize::from(config.port))?;
    let shards = (base..base + shards)
        .map(endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((addr, shards))
}

/// A new cluster of one node, id 1: one copy of each key, the node its only
/// acceptor. Grow it with `--join`, then `ringcache cluster set replicas=...
/// acceptors=...`.
pub fn genesis(addr: Endpoint, shards: Vec<Endpoint>) -> Result<ClusterConfig, String> {
    let spec = ClusterSpec {
        nodes: vec![NodeConfig {
            id: 1,
            client_addr: addr,
            shards,
            state: NodeState::Up,
        }],
        replicas: 1,
        vnodes_per_shard: POINTS_PER_SERVER_DEFAULT,
        write_ack: WriteAck::Quorum,
        acceptors: vec![1],
        next_node_id: 2,
    };
    ClusterConfig::new(1, spec).map_err(|e| format!("--init: {e}"))
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve {addr}"))
}

/// Who opens a connection, in its `rc hello`: a node (its id; `0` before it
/// has one) or an admin.
pub(crate) enum Asker<'s> {
    Node(u32, &'s Secret),
    Admin(&'s Secret),
}

/// A blocking connection to `addr` whose reads wait at most `timeout`.
fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let to = resolve(addr)?;
    let stream = TcpStream::connect_timeout(&to, timeout.min(Duration::from_secs(1)))
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(stream)
}

/// Sends one request, after the members-only handshake, and reads the reply
/// until it ends with `end` (also for `ringcache cluster`).
pub(crate) fn ask(
    addr: &str,
    asker: Asker<'_>,
    request: &[u8],
    end: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut stream = connect(addr, timeout)?;
    let (who, secret) = match asker {
        Asker::Node(id, secret) => (id.to_string(), secret),
        Asker::Admin(secret) => ("admin".to_string(), secret),
    };
    let sealing = super::auth::handshake_blocking(&mut stream, secret, &who)
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut stream = Sealed::new(stream, sealing);
    stream
        .write_all(request)
        .map_err(|e| format!("{addr}: {e}"))?;
    read_reply(addr, &mut stream, end)
}

/// Reads until the reply ends with `end`, or is one error line.
fn read_reply(addr: &str, stream: &mut impl Read, end: &[u8]) -> Result<Vec<u8>, String> {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    let error_line = |reply: &[u8]| {
        [&b"ERROR"[..], b"CLIENT_ERROR ", b"SERVER_ERROR "]
            .iter()
            .any(|word| reply.starts_with(word))
            && memchr::memchr(b'\n', reply) == Some(reply.len() - 1)
    };
    while !reply.ends_with(end) && !error_line(&reply) {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            return Err(format!("{addr} closed the connection"));
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > crate::cluster::config::CLUSTER_FILE_LEN_MAX * 2 {
            return Err(format!("{addr}: reply too long"));
        }
    }
    Ok(reply)
}

/// Sends one request without the handshake (`stats cluster`, open to clients)
/// and reads the reply until it ends with `end`.
pub(crate) fn ask_plain(
    addr: &str,
    request: &[u8],
    end: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut stream = connect(addr, timeout)?;
    stream
        .write_all(request)
        .map_err(|e| format!("{addr}: {e}"))?;
    read_reply(addr, &mut stream, end)
}

/// How a member's reply to `rc join` begins while it decides another change,
/// or has not learned the latest decision yet: both pass.
const JOIN_NOT_YET: [&[u8]; 2] = [
    b"SERVER_ERROR a proposal for epoch",
    b"SERVER_ERROR this node has only learned epoch",
];

/// Joins the cluster of the member at `through` with these endpoints; returns
/// the configuration that adds this node and its new id. A member busy
/// deciding another change is asked again until [`JOIN_WAIT`] has passed.
pub fn join(
    through: &str,
    secret: &Secret,
    addr: &Endpoint,
    shards: &[Endpoint],
) -> Result<(ClusterConfig, u32), String> {
    let shards: Vec<String> = shards.iter().map(Endpoint::to_string).collect();
    let request = format!("rc join {addr} {}\r\n", shards.join(","));
    let deadline = Instant::now() + JOIN_WAIT;
    let mut said = false;
    let reply = loop {
        match ask(
            through,
            Asker::Node(0, secret),
            request.as_bytes(),
            b"\r\n",
            JOIN_WAIT,
        ) {
            // Another change is being decided (a member marked down or up,
            // another node joining): this one is proposed once it is done.
            Ok(reply)
                if JOIN_NOT_YET.iter().any(|p| reply.starts_with(p))
                    && Instant::now() < deadline =>
            {
                if !said {
                    log::info!(
                        "joining through {through}: another change is being decided; trying again for {JOIN_WAIT:?}"
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(reply) => break reply,
            // A member that refuses this node's secret will not change its mind.
            Err(e) if e.contains("--cluster-secret") => {
                return Err(format!("--join {through}: {e}"))
            }
            Err(e) if Instant::now() < deadline => {
                if !said {
                    log::info!("joining through {through}: {e}; trying again for {JOIN_WAIT:?}");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("--join {through}: {e}")),
        }
    };
    let line = String::from_utf8_lossy(&reply).trim_end().to_string();
    let mut fields = line.split(' ');
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some("JOINED"), Some(id), Some(_epoch), Some(config)) => {
            let id: u32 = id
                .parse()
                .map_err(|_| format!("--join {through}: bad reply {line:?}"))?;
            let config = codec::decode_config(config.as_bytes())
                .map_err(|e| format!("--join {through}: bad configuration: {e:?}"))?;
            if config.node(id).is_none() {
                return Err(format!(
                    "--join {through}: the configuration leaves out node {id}"
                ));
            }
            log::info!(
                "joined the cluster as node {id} at epoch {}",
                config.epoch()
            );
            Ok((config, id))
        }
        _ => Err(format!("--join {through}: {line}")),
    }
}

/// With an empty `--data-dir`: the client address of another node of `file`
/// that has seen node `me` vote, or runs at a later epoch than `file` (the
/// cluster decided something since, with `me` as one of its acceptors), if one
/// has; and which it was. Either way `me` may have lost acceptor state.
/// Nodes that refuse connections are passed over (they are not running: a
/// cluster starting for the first time has nobody to ask); a node that runs
/// but does not answer (a busy or paused host) is asked again for
/// [`STATUS_PATIENCE`], and then the node does not start: it cannot tell.
pub fn wiped(
    file: &ClusterConfig,
    me: u32,
    secret: &Secret,
) -> Result<Option<(String, &'static str)>, String> {
    for n in file.nodes().iter().filter(|n| n.id != me) {
        let addr = n.client_addr.to_string();
        let started = Instant::now();
        let mut said = false;
        let status = loop {
            let to = resolve(&addr)?;
            match TcpStream::connect_timeout(&to, STATUS_TIMEOUT) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break None,
                _ => {}
            }
            let asker = Asker::Node(me, secret);
            let answer = ask(&addr, asker, b"rc status\r\n", b"END\r\n", STATUS_TIMEOUT);
            match answer.map(|reply| wire::parse_status(&reply)) {
                Ok(Some(status)) => break Some(status),
                Ok(None) => return Err(format!("{addr} answered rc status with garbage")),
                Err(e) if started.elapsed() < STATUS_PATIENCE => {
                    if !said {
                        log::warn!(
                            "node {me} has an empty --data-dir: waiting for node {} to say whether it saw node {me} vote ({e})",
                            n.id
                        );
                        said = true;
                    }
                    std::thread::sleep(STATUS_TIMEOUT / 4);
                }
                Err(e) => {
                    return Err(format!(
                        "node {me} has an empty --data-dir and node {} ({addr}) runs but did not say within {STATUS_PATIENCE:?} whether it saw node {me} vote ({e}): not starting, since coming back as an acceptor that lost its promises could break consensus",
                        n.id
                    ))
                }
            }
        };
        match status {
            Some(s) if s.votes_seen.contains(&me) => return Ok(Some((addr, "has seen it vote"))),
            Some(s) if s.epoch > file.epoch() => {
                return Ok(Some((addr, "has decided epochs since its cluster file")))
            }
            _ => {}
        }
    }
    Ok(None)
}

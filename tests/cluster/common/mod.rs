//! The cluster under test, for every test of this target (does I/O: real node
//! processes, real sockets, files): ports no other test of the process was
//! given, the shape of a cluster ([`Layout`]), and [`Cluster`], which writes
//! the cluster file, starts every node (a real process or a [`FakePeer`]),
//! and asks, kills, pauses and restarts them. Beside it: the fake peer, the
//! requests the tests send and check, the client thread that runs under a
//! fault or a change, and the nodes that create or join a cluster themselves.

pub mod fake_peer;
pub mod members;
pub mod requests;
pub mod traffic;

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringcache::cluster::auth::{Secret, SECRET_FILE_NAME};
use ringcache::cluster::config::ClusterConfig;
use ringcache::cluster::placement::Placement;

use crate::support::{self, Client, Server, StartError};
use fake_peer::{Fake, FakePeer};
use requests::{parse_stats, LocalReader};

/// How long nodes may take to start, recover and see each other.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at starting a cluster before a port collision is called a failure.
const CLUSTER_START_ATTEMPTS: usize = 5;

/// Requests sent in one pipelined write, and keys in one multi-key `get`.
pub const BATCH: usize = 100;

pub const SIGKILL: i32 = 9;

pub use crate::support::authenticate;

/// Where [`fresh_ports`] picks ports.
const PORTS_FROM: u64 = 10_000;
const PORTS_TO: u64 = 32_000;

/// A port free on `ip` that no other test of this process was given: the
/// tests run in parallel, and each cluster's ports are fixed in its file.
pub fn fresh_port(ip: &str) -> u16 {
    fresh_ports(ip, 1)
}

/// `count` consecutive ports free on `ip`, none given to another test of this
/// process; returns the first.
pub fn fresh_ports(ip: &str, count: u16) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    // Below the kernel's ephemeral range (32768 and up by default): a node
    // killed and restarted must find its port free, and an outgoing
    // connection of another test could take an ephemeral one meanwhile.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed) as u64;
    let mut rng = support::Rng::new(u64::from(std::process::id()) << 32 | call);
    for _ in 0..1000 {
        let base = rng.range(PORTS_FROM, PORTS_TO) as u16;
        if base.checked_add(count).is_none() {
            continue;
        }
        let ports = base..base + count;
        if ports.clone().all(|p| TcpListener::bind((ip, p)).is_ok()) {
            let mut given = GIVEN.lock().unwrap();
            if ports.clone().all(|p| !given.contains(&p)) {
                given.extend(ports);
                return base;
            }
        }
    }
    panic!("no {count} free ports on {ip}");
}

/// What plays a node of the cluster file.
#[derive(Clone, Copy, Debug)]
enum Role {
    Real,
    Fake(Fake),
}

/// The shape of a cluster: node `i + 1` plays `roles[i]`.
pub struct Layout {
    roles: Vec<Role>,
    shards: usize,
    replicas: usize,
    write_ack: &'static str,
    /// Flags added to every real node's command line.
    pub args: Vec<&'static str>,
    /// `--peer-timeout-ms`: generous unless the test is about timeouts, so
    /// that a slow moment on a loaded machine does not mark a live node TKO.
    peer_timeout_ms: u32,
    /// Every real node runs consensus with its own `--data-dir`, and every real
    /// node is an acceptor.
    consensus: bool,
}

impl Layout {
    /// `nodes` real nodes of `shards` shards each.
    pub fn real(nodes: usize, shards: usize, replicas: usize, write_ack: &'static str) -> Layout {
        Layout {
            roles: vec![Role::Real; nodes],
            shards,
            replicas,
            write_ack,
            args: Vec::new(),
            peer_timeout_ms: 2000,
            consensus: false,
        }
    }

    pub fn with_consensus(mut self) -> Layout {
        self.consensus = true;
        self
    }

    pub fn with_peer_timeout_ms(mut self, ms: u32) -> Layout {
        self.peer_timeout_ms = ms;
        self
    }

    /// One more node, played by a fake peer.
    pub fn with_fake(mut self, kind: Fake) -> Layout {
        self.roles.push(Role::Fake(kind));
        self
    }

    pub fn with_args(mut self, args: &[&'static str]) -> Layout {
        self.args.extend_from_slice(args);
        self
    }
}

/// One node of the cluster under test.
pub struct Node {
    id: u32,
    pub ip: String,
    /// The client port, on `ip`.
    pub port: u16,
    pub shard_ports: Vec<u16>,
    /// The full command line of a real node, to restart it with.
    args: Vec<String>,
    server: Option<Server>,
    fake: Option<FakePeer>,
}

/// A running cluster: its file in a temporary directory, its placement, and its
/// nodes. Every process is killed and every fake peer stopped on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub text: String,
    /// The cluster secret, in `dir/cluster.secret` and named by the file's
    /// `secret_file`.
    pub secret: Secret,
    placement: Placement,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts every node of `layout` and waits until each real node serves and
    /// reaches every other real node.
    pub fn start(layout: &Layout) -> Cluster {
        let mut last_error = String::new();
        for _ in 0..CLUSTER_START_ATTEMPTS {
            match Cluster::try_start(layout) {
                Ok(cluster) => {
                    cluster.wait_until_ready();
                    return cluster;
                }
                Err(message) => last_error = message,
            }
        }
        panic!("could not start the cluster on free ports: {last_error}");
    }

    /// One attempt: `Err` when a port was taken meanwhile (the caller retries
    /// with other ports); panics on any other failure.
    fn try_start(layout: &Layout) -> Result<Cluster, String> {
        let dir = support::numbered_dir("cluster");
        let secret = support::write_secret(&dir.join(SECRET_FILE_NAME));
        let file = dir.join("cluster.toml");
        let nodes: Vec<Node> = (1..=layout.roles.len() as u32)
            .map(|id| {
                let ip = format!("127.0.0.{id}");
                let port = fresh_port(&ip);
                let shard_ports = (0..layout.shards).map(|_| fresh_port(&ip)).collect();
                Node {
                    id,
                    ip,
                    port,
                    shard_ports,
                    args: Vec::new(),
                    server: None,
                    fake: None,
                }
            })
            .collect();
        let text = cluster_file_text(layout, &nodes);
        std::fs::write(&file, &text).expect("write the cluster file");
        let config = ClusterConfig::from_file_text(&text)
            .unwrap_or_else(|e| panic!("the test's cluster file is invalid: {e}\n{text}"));
        let mut cluster = Cluster {
            dir,
            text,
            secret,
            placement: Placement::new(Arc::new(config)),
            nodes,
        };
        // Fake peers first, so that real nodes find them from their first try.
        for (node, role) in cluster.nodes.iter_mut().zip(&layout.roles) {
            if let Role::Fake(kind) = *role {
                let mut ports = vec![node.port];
                ports.extend_from_slice(&node.shard_ports);
                let fake = FakePeer::bind(&node.ip, &ports, kind, &cluster.secret)
                    .map_err(|e| format!("fake node {} on {}: {e}", node.id, node.ip))?;
                node.fake = Some(fake);
            }
        }
        for (node, role) in cluster.nodes.iter_mut().zip(&layout.roles) {
            if let Role::Real = role {
                node.args = vec![
                    "--cluster".to_string(),
                    file.to_string_lossy().into_owned(),
                    "--node-id".to_string(),
                    node.id.to_string(),
                ];
                node.args.push("--peer-timeout-ms".to_string());
                node.args.push(layout.peer_timeout_ms.to_string());
                if layout.consensus {
                    node.args.push("--data-dir".to_string());
                    let data = cluster.dir.join(format!("data-{}", node.id));
                    node.args.push(data.to_string_lossy().into_owned());
                }
                node.args
                    .extend(layout.args.iter().map(|arg| arg.to_string()));
                let args: Vec<&str> = node.args.iter().map(String::as_str).collect();
                match Server::try_ringcache_at(&node.ip, node.port, &args) {
                    Ok(server) => node.server = Some(server),
                    Err(StartError::PortTaken(message)) => return Err(message),
                    Err(StartError::Failed(message)) => panic!("{message}"),
                }
            }
        }
        Ok(cluster)
    }

    pub fn node(&self, id: u32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn real_ids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|n| n.fake.is_none())
            .map(|n| n.id)
            .collect()
    }

    pub fn fake(&self, id: u32) -> &FakePeer {
        self.node(id)
            .fake
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not a fake peer"))
    }

    /// A client on node `id`'s client port.
    pub fn client(&self, id: u32) -> Client {
        let node = self.node(id);
        Client::connect_at(&node.ip, node.port)
    }

    /// A client on node `id`'s client port that has proved it holds the
    /// cluster secret, so its `rc` lines are taken.
    pub fn member_client(&self, id: u32) -> Client {
        let mut client = self.client(id);
        authenticate(&mut client, &self.secret);
        client
    }

    /// Reads at node `id` alone, bypassing routing.
    pub fn local_reader(&self, id: u32) -> LocalReader {
        let node = self.node(id);
        LocalReader {
            node: id,
            ip: node.ip.clone(),
            port: node.port,
            secret: self.secret.clone(),
            client: None,
        }
    }

    /// The node ids that own `key`, primary first.
    pub fn owners(&self, key: &str) -> Vec<u32> {
        self.placement
            .owners(key.as_bytes())
            .iter()
            .map(|o| o.node)
            .collect()
    }

    /// The first key `<prefix>:<i>` whose owners, primary first, are as
    /// `wanted` says.
    pub fn key_owned(&self, prefix: &str, wanted: impl Fn(&[u32]) -> bool) -> String {
        self.keys_owned(prefix, 1, wanted).remove(0)
    }

    /// The first `count` keys `<prefix>:<i>` whose owners, primary first, are
    /// as `wanted` says.
    pub fn keys_owned(
        &self,
        prefix: &str,
        count: usize,
        wanted: impl Fn(&[u32]) -> bool,
    ) -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}:{i}"))
            .filter(|key| wanted(&self.owners(key)))
            .take(count)
            .collect()
    }

    /// The primary of `key` and its owning shard there.
    pub fn primary(&self, key: &str) -> (u32, usize) {
        let owner = self.placement.owners(key.as_bytes()).primary();
        (owner.node, owner.shard as usize)
    }

    /// Node `id`'s output so far (empty for a fake or a killed node).
    pub fn log(&self, id: u32) -> String {
        self.node(id)
            .server
            .as_ref()
            .map(Server::log)
            .unwrap_or_default()
    }

    /// Every real node's output, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = format!("cluster file:\n{}\n", self.text);
        for id in self.real_ids() {
            out.push_str(&format!("--- node {id} ---\n{}\n", self.log(id)));
        }
        out
    }

    /// `stats cluster` of node `id`, or why it did not come.
    pub fn try_stats_cluster(&self, id: u32) -> Result<HashMap<String, String>, String> {
        let node = self.node(id);
        let mut client = Client::try_connect_at(&node.ip, node.port)
            .map_err(|e| format!("connect to node {id}: {e}"))?;
        client.send(b"stats cluster\r\n");
        let reply = client
            .read_until(b"END\r\n", Duration::from_secs(2))
            .map_err(|f| format!("stats cluster on node {id}: {f:?}"))?;
        Ok(parse_stats(&reply).into_iter().collect())
    }

    pub fn stats_cluster(&self, id: u32) -> HashMap<String, String> {
        let reply = self.client(id).call(b"stats cluster\r\n", b"END\r\n");
        parse_stats(&reply).into_iter().collect()
    }

    /// `stats peers` of node `id`: what it finds of the others, asking none.
    pub fn stats_peers(&self, id: u32) -> HashMap<String, String> {
        let reply = self.client(id).call(b"stats peers\r\n", b"END\r\n");
        parse_stats(&reply).into_iter().collect()
    }

    /// Waits until node `observer` reports node `id` in `state` (`down`, `up`),
    /// failing at `deadline`.
    pub fn wait_for_node_state(&self, observer: u32, id: u32, state: &str, deadline: Instant) {
        while self.stats_cluster(observer)[&format!("node:{id}:state")] != state {
            assert!(
                Instant::now() < deadline,
                "node {id} was not marked {state}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until node `id` says `node_state serving` and reaches every node of
    /// `peers` (`node:<peer>:reachable yes`).
    pub fn wait_until_serving(&self, id: u32, peers: &[u32], deadline: Instant) {
        loop {
            let last = match self.try_stats_cluster(id) {
                Ok(stats) => {
                    let serving = stats.get("node_state").map(String::as_str) == Some("serving");
                    let reaches_all = peers.iter().filter(|&&p| p != id).all(|p| {
                        stats
                            .get(&format!("node:{p}:reachable"))
                            .map(String::as_str)
                            == Some("yes")
                    });
                    if serving && reaches_all {
                        return;
                    }
                    let mut shown: Vec<String> =
                        stats.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    shown.sort();
                    shown.join("\n")
                }
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "node {id} did not serve and reach nodes {peers:?} within {READY_TIMEOUT:?}; \
                     its last stats cluster:\n{last}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let real = self.real_ids();
        for &id in &real {
            self.wait_until_serving(id, &real, deadline);
        }
    }

    /// SIGKILLs node `id` and waits until it is gone.
    pub fn kill9(&mut self, id: u32) {
        let server = self
            .node_mut(id)
            .server
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        server
            .signal_and_wait(SIGKILL, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("node {id} survived SIGKILL"));
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to node `id` without waiting.
    pub fn signal(&self, id: u32, signal: &str) {
        let pid = self
            .node(id)
            .server
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .pid();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts node `id` again with the command line it had.
    pub fn restart(&mut self, id: u32) {
        let node = self.node_mut(id);
        node.server = None;
        let args: Vec<&str> = node.args.iter().map(String::as_str).collect();
        // The killed process's connections to a paused peer linger on its
        // port until that peer runs again and closes its end: try again
        // for a while before calling the port taken.
        let deadline = Instant::now() + READY_TIMEOUT;
        let server = loop {
            match Server::try_ringcache_at(&node.ip, node.port, &args) {
                Ok(server) => break server,
                Err(StartError::PortTaken(why)) if Instant::now() < deadline => {
                    eprintln!("restart of node {id}: {why}; trying again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("restart of node {id}: {e:?}"),
            }
        };
        node.server = Some(server);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cluster_file_text(layout: &Layout, nodes: &[Node]) -> String {
    let mut text = format!(
        "# written by tests/cluster\n\
         replicas = {}\n\
         vnodes_per_shard = 160\n\
         write_ack = \"{}\"\n\
         acceptors = [{}]\n\
         secret_file = \"cluster.secret\"\n",
        layout.replicas,
        layout.write_ack,
        if layout.consensus {
            let real: Vec<String> = layout
                .roles
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r, Role::Real))
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            real.join(", ")
        } else {
            "1".to_string()
        }
    );
    for node in nodes {
        let shards: Vec<String> = node
            .shard_ports
            .iter()
            .map(|p| format!("\"{}:{p}\"", node.ip))
            .collect();
        text.push_str(&format!(
            "\n[[node]]\nid = {}\naddr = \"{}:{}\"\nshards = [{}]\n",
            node.id,
            node.ip,
            node.port,
            shards.join(", ")
        ));
    }
    text
}

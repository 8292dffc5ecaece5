//! A fault-history check of a real cluster (does I/O: real node processes,
//! real sockets, signals, nftables, files).
//!
//! Three nodes on 127.0.0.1–3, every one an acceptor with its own
//! `--data-dir`, run inside a network namespace of the test's own. Client
//! threads send `set`, `get`, `gets` + `cas`, `delete` and `incr` through
//! every node on a few hundred keys and a handful of counters, recording each
//! operation (see `support/history.rs`), while the test injects faults one at
//! a time: `kill -9` and restart, SIGSTOP and SIGCONT, one node cut from the
//! others with nftables, and a node killed and restarted with its data
//! directory wiped (which, as the README says, rejoins as a new member in its
//! own place; nothing else is asked of an operator). Then the faults stop, the
//! cluster settles, every key is read through every node, and the history is
//! checked for lost, stale and resurrected values, counters out of bounds,
//! divergent nodes, the wrong number of copies and differing epochs.
//!
//! Knobs (all optional; `scripts/soak-faults.sh` drives them):
//! `RINGCACHE_SEED`, `RINGCACHE_SOAK_SECS` (seconds of faults),
//! `RINGCACHE_SOAK_FAULTS` (comma list of `kill,stop,partition,wipe`, or
//! `none`), `RINGCACHE_SOAK_WRITE_ACK` (`all`, `quorum`, `one`),
//! `RINGCACHE_SOAK_REPLICAS`, `RINGCACHE_SOAK_SHARDS`, `RINGCACHE_SOAK_KEYS`,
//! `RINGCACHE_SOAK_COUNTERS`, `RINGCACHE_SOAK_REPORT_ONLY=1` to print the
//! counts without failing, and `RINGCACHE_SOAK_LOG_DIR` to keep every node's
//! output there.

mod support;

#[path = "support/history.rs"]
mod history;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use history::{Event, FinalRead, Observed, Op, Reply};
use ringcache::cluster::auth::SECRET_FILE_NAME;
use support::{Client, Rng, Server};

const NODES: u32 = 3;

/// Counters, besides the ordinary keys, unless `RINGCACHE_SOAK_COUNTERS` says.
const COUNTERS: usize = 5;

/// How long a client waits for one reply before it calls the outcome unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the cluster may take to settle after the last fault.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the copies may take to add up once the cluster has settled.
const COPIES_TIMEOUT: Duration = Duration::from_secs(20);

/// The address clients connect from: the partition rules leave it alone.
const CLIENT_IP: &str = "127.0.0.9";

/// Client threads; each picks a node per operation.
const CLIENTS: u32 = 3;

/// A client's pause between operations, so that the nodes get the CPU.
const CLIENT_PAUSE: Duration = Duration::from_millis(2);

/// The faults a run may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
    Partition,
    Wipe,
}

impl Fault {
    fn parse(name: &str) -> Fault {
        match name.trim() {
            "kill" => Fault::Kill,
            "stop" => Fault::Stop,
            "partition" => Fault::Partition,
            "wipe" => Fault::Wipe,
            other => panic!("unknown fault {other:?} (kill, stop, partition, wipe)"),
        }
    }
}

/// What a run does, from the environment.
#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    fault_secs: u64,
    faults: Vec<Fault>,
    write_ack: String,
    replicas: usize,
    shards: usize,
    keys: usize,
    counters: usize,
    report_only: bool,
}

impl Plan {
    /// The faults of the run in the suite: every class, one at a time in
    /// the seed's order (R=2, `write_ack = "all"`, 20 s). A seed fixes the
    /// choices, not the timing, so it reproduces the kind of run rather than
    /// the exact anomaly; the suite takes its seed from the clock and prints
    /// it. `scripts/soak-faults.sh` runs many seeds, and the README's
    /// "Faults" table lists what they showed.
    const DEFAULT_FAULTS: &'static str = "kill,stop,partition,wipe";

    fn from_env() -> Plan {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| {
            var(name).map_or(default, |v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
            })
        };
        let faults_text = var("RINGCACHE_SOAK_FAULTS").unwrap_or(Plan::DEFAULT_FAULTS.into());
        let faults = if faults_text.trim() == "none" {
            Vec::new()
        } else {
            faults_text.split(',').map(Fault::parse).collect()
        };
        Plan {
            seed: support::seed_from_env_or_clock(),
            fault_secs: number("RINGCACHE_SOAK_SECS", 20),
            faults,
            write_ack: var("RINGCACHE_SOAK_WRITE_ACK").unwrap_or("all".into()),
            replicas: number("RINGCACHE_SOAK_REPLICAS", 2) as usize,
            shards: number("RINGCACHE_SOAK_SHARDS", 1) as usize,
            keys: number("RINGCACHE_SOAK_KEYS", 200) as usize,
            counters: number("RINGCACHE_SOAK_COUNTERS", COUNTERS as u64) as usize,
            report_only: var("RINGCACHE_SOAK_REPORT_ONLY").is_some_and(|v| v == "1"),
        }
    }
}

// ---------------------------------------------------------------------------
// The network namespace and the partition.

/// Cuts node `cut` off from the other nodes (clients from [`CLIENT_IP`] still
/// reach every node).
fn partition(cut: u32) {
    let others: Vec<String> = (1..=NODES)
        .filter(|&n| n != cut)
        .map(|n| format!("127.0.0.{n}"))
        .collect();
    support::partition(&format!("127.0.0.{cut}"), &others);
}

/// A connection to `ip:port` from [`CLIENT_IP`], or why not.
fn connect_from_client_ip(ip: &str, port: u16) -> Result<Client, String> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let local: SockaddrIn = format!("{CLIENT_IP}:0")
        .parse::<std::net::SocketAddrV4>()
        .expect("an address")
        .into();
    socket::bind(fd.as_raw_fd(), &local).map_err(|e| format!("bind {CLIENT_IP}: {e}"))?;
    let peer: SockaddrIn = format!("{ip}:{port}")
        .parse::<std::net::SocketAddrV4>()
        .expect("an address")
        .into();
    socket::connect(fd.as_raw_fd(), &peer).map_err(|e| format!("connect {ip}:{port}: {e}"))?;
    Ok(Client::from_stream(TcpStream::from(fd)))
}

// ---------------------------------------------------------------------------
// The cluster.

/// One node: an endpoint 127.0.0.`n`, whatever id it has in the configuration
/// (a wiped node comes back under a new one).
struct Node {
    n: u32,
    ip: String,
    port: u16,
    data_dir: PathBuf,
    args: Vec<String>,
    server: Option<Server>,
    stopped: bool,
    /// The output of its earlier runs (a server's log goes with it).
    past_logs: String,
}

impl Node {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = Some(Server::ringcache_at(&self.ip, self.port, &args));
        self.stopped = false;
    }

    fn kill9(&mut self) {
        if let Some(server) = self.server.as_mut() {
            if self.stopped {
                signal(server.pid(), "-CONT");
            }
            server
                .signal_and_wait(9, Duration::from_secs(10))
                .unwrap_or_else(|| panic!("node {} survived SIGKILL", self.n));
            self.past_logs.push_str(&server.log());
            self.past_logs.push_str("--- killed with SIGKILL ---\n");
        }
        self.server = None;
        self.stopped = false;
    }

    fn signal(&mut self, name: &str) {
        let server = self.server.as_ref().expect("a running node");
        signal(server.pid(), name);
        self.stopped = name == "-STOP";
    }

    /// Its output over every run so far.
    fn log(&self) -> String {
        let current = self.server.as_ref().map(Server::log).unwrap_or_default();
        format!("{}{current}", self.past_logs)
    }
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {name} {pid}");
}

struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    secret: ringcache::cluster::auth::Secret,
}

impl Cluster {
    fn start(plan: &Plan) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "ringcache-fault-history-{}-{}",
            std::process::id(),
            plan.seed
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let secret = support::write_secret(&dir.join(SECRET_FILE_NAME));
        let file = dir.join("cluster.toml");
        let mut nodes: Vec<Node> = (1..=NODES)
            .map(|n| {
                let ip = format!("127.0.0.{n}");
                let base = support::free_ports(plan.shards as u16 + 1);
                let data_dir = dir.join(format!("data-{n}"));
                let args = vec![
                    "--cluster".to_string(),
                    file.to_string_lossy().into_owned(),
                    "--node-id".to_string(),
                    n.to_string(),
                    "--data-dir".to_string(),
                    data_dir.to_string_lossy().into_owned(),
                    "--peer-timeout-ms".to_string(),
                    "1000".to_string(),
                    "--failover-timeout-ms".to_string(),
                    "1000".to_string(),
                ];
                Node {
                    n,
                    ip,
                    port: base,
                    data_dir,
                    args,
                    server: None,
                    stopped: false,
                    past_logs: String::new(),
                }
            })
            .collect();
        let mut text = format!(
            "replicas = {}\n\
             vnodes_per_shard = 160\n\
             write_ack = \"{}\"\n\
             acceptors = [1, 2, 3]\n\
             secret_file = \"{SECRET_FILE_NAME}\"\n",
            plan.replicas, plan.write_ack
        );
        for node in &nodes {
            let shards: Vec<String> = (1..=plan.shards as u16)
                .map(|s| format!("\"{}:{}\"", node.ip, node.port + s))
                .collect();
            text.push_str(&format!(
                "\n[[node]]\nid = {}\naddr = \"{}:{}\"\nshards = [{}]\n",
                node.n,
                node.ip,
                node.port,
                shards.join(", ")
            ));
        }
        std::fs::write(&file, &text).expect("write the cluster file");
        for node in &mut nodes {
            node.start();
        }
        Cluster { dir, nodes, secret }
    }

    fn node(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize - 1]
    }

    fn endpoints(&self) -> Vec<(u32, String, u16)> {
        self.nodes
            .iter()
            .map(|node| (node.n, node.ip.clone(), node.port))
            .collect()
    }

    /// Each live node's own copy of `key` (`mg <key> v c` bypassing
    /// routing), for the report of an anomaly.
    fn local_copies(&self, key: &str) -> String {
        let mut out = String::new();
        for node in self
            .nodes
            .iter()
            .filter(|n| n.server.is_some() && !n.stopped)
        {
            let line = Client::try_connect_at(&node.ip, node.port)
                .map_err(|e| format!("{e:?}"))
                .and_then(|mut client| {
                    support::authenticate(&mut client, &self.secret);
                    let view = stats(&node.ip, node.port, "peers").unwrap_or_default();
                    let of = |name: &str| view.get(name).cloned().unwrap_or_default();
                    let epoch = of("epoch");
                    let standing = format!(
                        "id {}, epoch {epoch}, state {}, hinted keys {}: ",
                        of("node_id"),
                        of("node_state"),
                        of("hinted_keys")
                    );
                    let reply = client.call(
                        format!("rc rep {epoch}\r\nmg {key} v c\r\n").as_bytes(),
                        b"\r\n",
                    );
                    let mut text = standing + String::from_utf8_lossy(&reply).trim_end();
                    if reply.starts_with(b"VA ") {
                        let value = client
                            .read_until(b"\r\n", support::REPLY_TIMEOUT)
                            .map_err(|e| format!("{e:?}"))?;
                        text.push(' ');
                        text.push_str(String::from_utf8_lossy(&value).trim_end());
                    }
                    Ok(text)
                });
            out.push_str(&format!("    node {}: {line:?}\n", node.n));
        }
        out
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- node at {} ---\n{}\n", node.ip, node.log()))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if node.stopped {
                if let Some(server) = node.server.as_ref() {
                    signal(server.pid(), "-CONT");
                }
            }
        }
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `STAT name value` lines of a request on a fresh connection, or why none came.
fn stats(ip: &str, port: u16, which: &str) -> Result<HashMap<String, String>, String> {
    let mut client = connect_from_client_ip(ip, port)?;
    let request = if which.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {which}\r\n")
    };
    client.send(request.as_bytes());
    let reply = client
        .read_until(b"END\r\n", OP_TIMEOUT)
        .map_err(|f| format!("stats {which} on {ip}: {f:?}"))?;
    Ok(String::from_utf8_lossy(&reply)
        .lines()
        .filter_map(|line| line.strip_prefix("STAT "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

/// Whether every node serves, reaches the others, sees every member up, and
/// all agree on the epoch: the faults are over and so are their decisions.
fn settled(endpoints: &[(u32, String, u16)]) -> Result<(), String> {
    let views: Vec<HashMap<String, String>> = endpoints
        .iter()
        .map(|(_, ip, port)| stats(ip, *port, "cluster"))
        .collect::<Result<_, _>>()?;
    for (view, (n, _, _)) in views.iter().zip(endpoints) {
        if view.get("epoch") != views[0].get("epoch") {
            return Err(format!(
                "node at 127.0.0.{n} is at epoch {:?}",
                view.get("epoch")
            ));
        }
        if view.get("node_state").map(String::as_str) != Some("serving") {
            return Err(format!("node at 127.0.0.{n}: {:?}", view.get("node_state")));
        }
        if view.get("nodes").map(String::as_str) != Some(&NODES.to_string()) {
            return Err(format!(
                "node at 127.0.0.{n} has {:?} nodes",
                view.get("nodes")
            ));
        }
        let own = view.get("node_id").cloned().unwrap_or_default();
        for (name, value) in view {
            let not_up = name.ends_with(":state") && name.starts_with("node:") && value != "up";
            let unreachable = name.ends_with(":reachable")
                && name != &format!("node:{own}:reachable")
                && value != "yes";
            if not_up || unreachable {
                return Err(format!("node at 127.0.0.{n}: {name} {value}"));
            }
        }
    }
    Ok(())
}

fn wait_until_settled(cluster: &Cluster, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let endpoints = cluster.endpoints();
    loop {
        match settled(&endpoints) {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() > deadline => return Err(why),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------
// Clients.

/// Reads one reply line (without `\r\n`), or why none came.
fn reply_line(client: &mut Client) -> Result<String, String> {
    let line = client
        .read_until(b"\r\n", OP_TIMEOUT)
        .map_err(|f| format!("no reply: {f:?}"))?;
    Ok(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
}

/// The reply to a storage command, `delete` or `incr`.
fn simple_reply(client: &mut Client) -> Result<Reply, String> {
    let line = reply_line(client)?;
    Ok(match line.as_str() {
        "STORED" => Reply::Stored,
        "EXISTS" => Reply::Exists,
        "NOT_FOUND" => Reply::NotFound,
        "NOT_STORED" => Reply::NotStored,
        "DELETED" => Reply::Deleted,
        other => match other.parse() {
            Ok(n) => Reply::Number(n),
            Err(_) => Reply::Unknown(other.to_string()),
        },
    })
}

/// The reply to `get key` or `gets key`.
fn read_reply(client: &mut Client) -> Result<Reply, String> {
    let line = reply_line(client)?;
    if line == "END" {
        return Ok(Reply::Miss);
    }
    let fields: Vec<&str> = line.split(' ').collect();
    if fields.first() != Some(&"VALUE") || fields.len() < 4 {
        return Ok(Reply::Unknown(line));
    }
    let len: usize = fields[3]
        .parse()
        .map_err(|_| format!("bad header {line:?}"))?;
    let cas = fields.get(4).and_then(|c| c.parse().ok());
    let body = client
        .read_exact_n(len + 7, OP_TIMEOUT)
        .map_err(|f| format!("no value: {f:?}"))?;
    if &body[len..] != b"\r\nEND\r\n" {
        return Err(format!("bad framing: {}", support::show(&body)));
    }
    Ok(Reply::Value {
        value: String::from_utf8_lossy(&body[..len]).into_owned(),
        cas,
    })
}

/// The request bytes of `op` on `key`.
fn request(key: &str, op: &Op, gets: bool) -> Vec<u8> {
    match op {
        Op::Set { value } => format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
        Op::Cas { value, cas } => format!("cas {key} 0 0 {} {cas}\r\n{value}\r\n", value.len()),
        Op::Delete => format!("delete {key}\r\n"),
        Op::Incr { delta } => format!("incr {key} {delta}\r\n"),
        Op::Read if gets => format!("gets {key}\r\n"),
        Op::Read => format!("get {key}\r\n"),
    }
    .into_bytes()
}

/// One client: a connection to each node, opened again after any failure
/// (a late reply must not be taken for the next one).
struct Worker {
    id: u32,
    endpoints: Vec<(u32, String, u16)>,
    connections: Vec<Option<Client>>,
    started: Instant,
    events: Vec<Event>,
    sequence: u64,
}

impl Worker {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Sends `op` on `key` through node `n` and records it; `None` when no
    /// connection could be made (nothing was sent).
    fn run(&mut self, n: u32, key: &str, op: Op, gets: bool) -> Option<Reply> {
        let slot = n as usize - 1;
        if self.connections[slot].is_none() {
            let (_, ip, port) = &self.endpoints[slot];
            match connect_from_client_ip(ip, *port) {
                Ok(client) => self.connections[slot] = Some(client),
                Err(_) => return None,
            }
        }
        let invoke_us = self.now_us();
        let client = self.connections[slot].as_mut().expect("connected");
        client.send(&request(key, &op, gets));
        let reply = match op {
            Op::Read => read_reply(client),
            _ => simple_reply(client),
        };
        let reply = reply.unwrap_or_else(Reply::Unknown);
        if matches!(reply, Reply::Unknown(_)) {
            self.connections[slot] = None;
        }
        self.events.push(Event {
            client: self.id,
            node: n,
            key: key.to_string(),
            op,
            reply: reply.clone(),
            invoke_us,
            complete_us: self.now_us(),
        });
        Some(reply)
    }

    fn fresh_value(&mut self) -> String {
        self.sequence += 1;
        format!("c{}-{}", self.id, self.sequence)
    }

    /// Random operations until `stop`.
    fn work(
        mut self,
        keys: &[String],
        counters: &[String],
        stop: &AtomicBool,
        seed: u64,
    ) -> Vec<Event> {
        let mut rng = Rng::new(seed);
        while !stop.load(Ordering::Relaxed) {
            let n = rng.range(1, NODES as u64) as u32;
            let key = rng.pick(keys).clone();
            let roll = rng.below(100);
            let sent = if roll < 20 {
                let counter = rng.pick(counters).clone();
                let delta = rng.range(1, 3);
                self.run(n, &counter, Op::Incr { delta }, false)
            } else if roll < 45 {
                self.run(n, &key, Op::Read, false)
            } else if roll < 70 {
                let value = self.fresh_value();
                self.run(n, &key, Op::Set { value }, false)
            } else if roll < 88 {
                match self.run(n, &key, Op::Read, true) {
                    Some(Reply::Value { cas: Some(cas), .. }) => {
                        let value = self.fresh_value();
                        let n = rng.range(1, NODES as u64) as u32;
                        self.run(n, &key, Op::Cas { value, cas }, false)
                    }
                    other => other,
                }
            } else {
                self.run(n, &key, Op::Delete, false)
            };
            if sent.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(CLIENT_PAUSE);
        }
        self.events
    }
}

fn start_workers(
    cluster: &Cluster,
    keys: &[String],
    counters: &[String],
    stop: &Arc<AtomicBool>,
    started: Instant,
    seed: u64,
) -> Vec<JoinHandle<Vec<Event>>> {
    (1..=CLIENTS)
        .map(|id| {
            let worker = Worker {
                id,
                endpoints: cluster.endpoints(),
                connections: (0..NODES).map(|_| None).collect(),
                started,
                events: Vec::new(),
                sequence: 0,
            };
            let (keys, counters, stop) = (keys.to_vec(), counters.to_vec(), stop.clone());
            let seed = seed ^ (u64::from(id) << 32);
            std::thread::spawn(move || worker.work(&keys, &counters, &stop, seed))
        })
        .collect()
}

/// Sets every counter to 0 through node 1, retrying until each is stored.
fn set_counters(cluster: &Cluster, counters: &[String]) {
    let (_, ip, port) = &cluster.endpoints()[0];
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    for key in counters {
        loop {
            let reply = connect_from_client_ip(ip, *port).and_then(|mut client| {
                client.send(format!("set {key} 0 0 1\r\n0\r\n").as_bytes());
                simple_reply(&mut client)
            });
            if reply == Ok(Reply::Stored) {
                break;
            }
            assert!(Instant::now() < deadline, "set {key}: {reply:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------
// Faults.

/// Injects one fault on a node, holds it, heals it, and waits for the cluster
/// to settle (a fault that does not settle is reported, not fatal: the final
/// check judges the outcome).
fn inject(cluster: &mut Cluster, fault: Fault, n: u32, hold: Duration, started: Instant) {
    let at = |what: &str| {
        eprintln!(
            "fault: {:>8.3}s {what} {fault:?} node at 127.0.0.{n}",
            started.elapsed().as_secs_f64()
        )
    };
    at(&format!("start ({hold:?})"));
    match fault {
        Fault::Kill => {
            cluster.node(n).kill9();
            std::thread::sleep(hold);
            cluster.node(n).start();
        }
        Fault::Stop => {
            cluster.node(n).signal("-STOP");
            std::thread::sleep(hold);
            cluster.node(n).signal("-CONT");
        }
        Fault::Partition => {
            partition(n);
            std::thread::sleep(hold);
            support::heal_partition();
        }
        Fault::Wipe => {
            let node = cluster.node(n);
            node.kill9();
            std::fs::remove_dir_all(&node.data_dir).expect("wipe the data directory");
            std::fs::create_dir_all(&node.data_dir).expect("make the data directory again");
            std::thread::sleep(hold);
            node.start();
        }
    }
    at("healed");
    match wait_until_settled(cluster, SETTLE_TIMEOUT) {
        Ok(()) => at("settled after"),
        Err(why) => at(&format!("NOT SETTLED {SETTLE_TIMEOUT:?} after: {why}:")),
    }
}

// ---------------------------------------------------------------------------
// The end: reads, copies, epochs.

/// `get key` through node `ip:port` on `client`, connecting first if needed.
fn read_once(client: &mut Option<Client>, ip: &str, port: u16, key: &str) -> Result<Reply, String> {
    if client.is_none() {
        *client = Some(connect_from_client_ip(ip, port)?);
    }
    let connection = client.as_mut().expect("connected");
    connection.send(format!("get {key}\r\n").as_bytes());
    read_reply(connection)
}

/// Every key through every node, retrying answers of unknown meaning until
/// the deadline.
fn final_reads(cluster: &Cluster, keys: &[String]) -> BTreeMap<String, Vec<(u32, FinalRead)>> {
    let mut finals: BTreeMap<String, Vec<(u32, FinalRead)>> = BTreeMap::new();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    for (n, ip, port) in cluster.endpoints() {
        let mut client: Option<Client> = None;
        for key in keys {
            let read = loop {
                match read_once(&mut client, &ip, port, key) {
                    Ok(Reply::Value { value, .. }) => break Ok(Some(value)),
                    Ok(Reply::Miss) => break Ok(None),
                    other => {
                        client = None;
                        if Instant::now() > deadline {
                            break Err(format!("{other:?}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            finals.entry(key.clone()).or_default().push((n, read));
        }
    }
    finals
}

/// `key` read once more through every node, for the report of a divergence.
fn reads_again(cluster: &Cluster, key: &str) -> String {
    cluster
        .endpoints()
        .into_iter()
        .map(|(n, ip, port)| {
            let read = read_once(&mut None, &ip, port, key);
            format!("    node {n}: {read:?}\n")
        })
        .collect()
}

/// The nodes that hold each key now (`lru_crawler metadump all` on every
/// node), for the report of a copies anomaly.
fn holders(cluster: &Cluster) -> BTreeMap<String, Vec<u32>> {
    let mut held: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (n, ip, port) in cluster.endpoints() {
        let Ok(mut client) = connect_from_client_ip(&ip, port) else {
            continue;
        };
        client.send(b"lru_crawler metadump all\r\n");
        let Ok(reply) = client.read_until(b"END\r\n", OP_TIMEOUT) else {
            continue;
        };
        for line in String::from_utf8_lossy(&reply).lines() {
            if let Some(key) = line.strip_prefix("key=").and_then(|r| r.split(' ').next()) {
                held.entry(url_decoded(key)).or_default().push(n);
            }
        }
    }
    held
}

/// A key as metadump writes it (`%XX` escapes) decoded; one that does not
/// decode is kept as written.
fn url_decoded(text: &str) -> String {
    ringcache::metrics::uri_decode(text).map_or_else(
        || text.to_string(),
        |bytes| String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[test]
fn metadump_keys_are_decoded() {
    assert_eq!(url_decoded("counter%3A2"), "counter:2");
    assert_eq!(url_decoded("a%252b"), "a%2b");
    assert_eq!(url_decoded("plain"), "plain");
    assert_eq!(url_decoded("cut%3"), "cut%3");
    assert_eq!(url_decoded("%zz%"), "%zz%");
}

/// (R x live keys, summed `curr_items`), polling until they agree or the
/// deadline passes.
fn copies(cluster: &Cluster, expected: u64) -> (u64, u64) {
    let deadline = Instant::now() + COPIES_TIMEOUT;
    loop {
        let seen: u64 = cluster
            .endpoints()
            .iter()
            .map(|(_, ip, port)| {
                stats(ip, *port, "")
                    .ok()
                    .and_then(|s| s.get("curr_items").and_then(|v| v.parse().ok()))
                    .unwrap_or(0)
            })
            .sum();
        if seen == expected || Instant::now() > deadline {
            return (expected, seen);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn epochs(cluster: &Cluster) -> Vec<(u32, Result<u64, String>)> {
    cluster
        .endpoints()
        .iter()
        .map(|(n, ip, port)| {
            let epoch = stats(ip, *port, "cluster").and_then(|s| {
                s.get("epoch")
                    .and_then(|e| e.parse().ok())
                    .ok_or_else(|| "no epoch".to_string())
            });
            (*n, epoch)
        })
        .collect()
}

/// A seeded run of faults under clients, checked afterwards: no lost, stale or
/// resurrected value, counters within bounds, no divergence, R copies of each
/// live key and one epoch everywhere, for R=2 and `write_ack = "all"`, with
/// the faults of [`Plan::DEFAULT_FAULTS`] (partitions only where the test can
/// have a network namespace of its own).
#[test]
fn faults_leave_no_anomaly_in_the_history() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut plan = Plan::from_env();
    if !support::own_network_namespace("fault_history partitions") {
        plan.faults.retain(|&f| f != Fault::Partition);
    }
    eprintln!(
        "fault_history: RINGCACHE_SEED={} secs={} faults={:?} write_ack={} replicas={} shards={} keys={} counters={}",
        plan.seed,
        plan.fault_secs,
        plan.faults,
        plan.write_ack,
        plan.replicas,
        plan.shards,
        plan.keys,
        plan.counters
    );
    let mut cluster = Cluster::start(&plan);
    if let Err(why) = wait_until_settled(&cluster, SETTLE_TIMEOUT) {
        panic!("the cluster did not start: {why}\n{}", cluster.logs());
    }
    let keys: Vec<String> = (0..plan.keys).map(|i| format!("key:{i}")).collect();
    let counters: Vec<String> = (0..plan.counters).map(|i| format!("counter:{i}")).collect();
    set_counters(&cluster, &counters);

    let started = Instant::now();
    // The clients' clock starts here: in unix time, to read their history
    // beside the nodes' logs.
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    eprintln!("fault_history: clients started at unix {started_unix_ms} ms");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = start_workers(&cluster, &keys, &counters, &stop, started, plan.seed);
    let mut rng = Rng::new(plan.seed);
    let faults_end = started + Duration::from_secs(plan.fault_secs);
    let mut injected = 0;
    while Instant::now() < faults_end {
        std::thread::sleep(Duration::from_millis(rng.range(300, 1500)));
        if plan.faults.is_empty() || Instant::now() >= faults_end {
            continue;
        }
        let fault = *rng.pick(&plan.faults);
        let n = rng.range(1, NODES as u64) as u32;
        let hold = Duration::from_millis(rng.range(500, 3000));
        inject(&mut cluster, fault, n, hold, started);
        injected += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let events: Vec<Event> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("a client thread panicked"))
        .collect();

    let settled = wait_until_settled(&cluster, SETTLE_TIMEOUT);
    if let Err(why) = &settled {
        eprintln!("fault_history: not settled at the end: {why}");
    }
    let mut all_keys = keys.clone();
    all_keys.extend(counters.iter().cloned());
    let finals = final_reads(&cluster, &all_keys);
    // Where the final reads disagree, each node's own copy at once (a later
    // look may find the copies agreeing again).
    let copies_at_final_reads: BTreeMap<String, String> = finals
        .iter()
        .filter(|(_, reads)| reads.iter().any(|(_, r)| r != &reads[0].1))
        .take(5)
        .map(|(key, _)| {
            let copies = cluster.local_copies(key);
            (
                key.clone(),
                format!(
                    "{copies}  read again through each node:\n{}",
                    reads_again(&cluster, key)
                ),
            )
        })
        .collect();
    let live = finals
        .values()
        .filter(|reads| reads.iter().any(|(_, r)| matches!(r, Ok(Some(_)))))
        .count() as u64;
    let observed = Observed {
        events,
        counters: counters.iter().map(|c| (c.clone(), 0)).collect(),
        finals,
        copies: Some(copies(&cluster, plan.replicas as u64 * live)),
        epochs: epochs(&cluster),
    };
    let report = history::check(&observed);

    let writes = observed.events.iter().filter(|e| e.op != Op::Read).count();
    let acked = observed
        .events
        .iter()
        .filter(|e| {
            matches!(
                (&e.op, &e.reply),
                (Op::Set { .. } | Op::Cas { .. }, Reply::Stored)
                    | (Op::Delete, Reply::Deleted)
                    | (Op::Incr { .. }, Reply::Number(_))
            )
        })
        .count();
    let unknown = observed
        .events
        .iter()
        .filter(|e| matches!(e.reply, Reply::Unknown(_)))
        .count();
    println!(
        "fault_history: seed={} faults_injected={injected} ops={} writes={writes} acked={acked} \
         unknown={unknown} live_keys={live} copies={}/{} settled={} {}",
        plan.seed,
        observed.events.len(),
        observed.copies.unwrap().1,
        observed.copies.unwrap().0,
        settled.is_ok(),
        report.counts_line()
    );
    let mut unknown_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for event in &observed.events {
        if let Reply::Unknown(text) = &event.reply {
            let op = format!("{:?}", event.op);
            let op = op.split([' ', '{']).next().unwrap_or_default().to_string();
            let text: String = text.chars().take(60).collect();
            *unknown_kinds.entry(format!("{op}: {text}")).or_default() += 1;
        }
    }
    for (kind, count) in &unknown_kinds {
        println!("fault_history: unknown outcome x{count}: {kind}");
    }
    // Keys held by more or fewer nodes than they should be (a copies anomaly
    // names no key of its own): their histories are kept too.
    let mut miscopied: Vec<String> = Vec::new();
    if !report.is_clean() {
        println!(
            "fault_history: anomalies (up to 5 of each kind):\n{}",
            report.sample(5)
        );
        if report
            .anomalies
            .iter()
            .any(|a| a.kind == history::Kind::Copies)
        {
            // Which keys have too many or too few copies, and where they are.
            let held = holders(&cluster);
            let mut wrong = Vec::new();
            for (key, reads) in &observed.finals {
                let live = reads.iter().any(|(_, r)| matches!(r, Ok(Some(_))));
                let expected = if live { plan.replicas } else { 0 };
                let at = held.get(key).cloned().unwrap_or_default();
                if at.len() != expected && wrong.len() < 10 {
                    wrong.push(format!(
                        "    {key}: held by nodes {at:?}, {expected} copies expected"
                    ));
                    miscopied.push(key.clone());
                }
            }
            println!(
                "fault_history: keys with the wrong number of copies (up to 10):\n{}",
                wrong.join("\n")
            );
        }
        // The history of the first two keys of each kind.
        let mut shown = std::collections::BTreeSet::new();
        for kind in history::Kind::ALL {
            let of_kind = report.anomalies.iter().filter(|a| a.kind == kind);
            for anomaly in of_kind.filter(|a| !a.key.is_empty()).take(2) {
                if !shown.insert(&anomaly.key) {
                    continue;
                }
                if let Some(copies) = copies_at_final_reads.get(&anomaly.key) {
                    println!(
                        "fault_history: {}: each node's own copy right after the final reads:\n{copies}",
                        anomaly.key
                    );
                }
                println!(
                    "fault_history: {} before the {} anomaly at {:?}us:\n{}  each node's own copy now:\n{}",
                    anomaly.key,
                    anomaly.kind.name(),
                    anomaly.at_us,
                    history::key_history(
                        &observed.events,
                        &anomaly.key,
                        anomaly.at_us,
                        2_000_000,
                        25
                    ),
                    cluster.local_copies(&anomaly.key)
                );
            }
        }
    }
    if let Some(dir) = std::env::var_os("RINGCACHE_SOAK_LOG_DIR") {
        for node in &cluster.nodes {
            let path = Path::new(&dir).join(format!("seed-{}-node-{}.log", plan.seed, node.n));
            std::fs::write(&path, node.log()).expect("write a node's log");
        }
        // Every operation on each key with an anomaly, for tracing it
        // against the nodes' logs.
        let keys: std::collections::BTreeSet<&str> = report
            .anomalies
            .iter()
            .map(|a| a.key.as_str())
            .filter(|k| !k.is_empty())
            .chain(miscopied.iter().map(String::as_str))
            .collect();
        let mut text =
            format!("started at unix {started_unix_ms} ms; times below are since then\n");
        for key in keys {
            text.push_str(&format!("{key}:\n"));
            text.push_str(&history::key_history(
                &observed.events,
                key,
                None,
                0,
                usize::MAX,
            ));
        }
        if !report.is_clean() {
            let path = Path::new(&dir).join(format!("seed-{}-history.log", plan.seed));
            std::fs::write(&path, text).expect("write the anomalous keys' history");
            // The first configuration: its shard endpoints place the keys
            // (a node back from a wiped disk keeps its endpoints).
            let path = Path::new(&dir).join(format!("seed-{}-cluster.toml", plan.seed));
            std::fs::copy(cluster.dir.join("cluster.toml"), &path).expect("copy the cluster file");
        }
    }
    if !plan.report_only {
        assert!(
            report.is_clean() && settled.is_ok(),
            "seed {} ({:?}): {}\n{}\nsettled: {settled:?}\n{}",
            plan.seed,
            plan.faults,
            report.counts_line(),
            report.sample(5),
            cluster.logs()
        );
    }
}

//! The cluster configuration: one immutable, numbered value saying which nodes
//! form the cache, where they listen, how many copies a key has and how writes
//! are acknowledged; its validation; and the cluster file it is first read from
//! (pure: text in, value or error out).
//!
//! Every node builds the same ring from the same [`ClusterConfig`] (see
//! `cluster::placement`), so the value carries everything placement needs and
//! nothing a node learns on its own. Multi-Paxos decides later values; the file
//! an operator writes gives the first, at epoch 1.
//!
//! # Format
//!
//! The cluster file is TOML (read with the `toml` crate, so any valid TOML
//! spelling of the same keys is accepted): top-level keys, then one `[[node]]`
//! table per node. An unknown key, a key set twice or a value of the wrong type
//! is an error naming its line.
//!
//! ```toml
//! # ringcache cluster: 3 nodes, 2 shards each, every key on 2 nodes.
//! replicas = 2                # copies of each key, on distinct nodes (R)
//! vnodes_per_shard = 160      # ring points per shard endpoint (default 160)
//! write_ack = "quorum"        # "one", "quorum" or "all" (default "quorum")
//! acceptors = [1, 2, 3]       # node ids that run Paxos (absent: no node does)
//!
//! [[node]]
//! id = 1                      # stable node id, never reused
//! addr = "10.0.0.1:11211"     # the client port (shared by the node's shards)
//! shards = ["10.0.0.1:11300", "10.0.0.1:11301"]   # one endpoint per shard
//! state = "up"                # "up", "down" or "joining" (default "up")
//!
//! [[node]]
//! id = 2
//! addr = "10.0.0.2:11211"
//! shards = ["10.0.0.2:11300", "10.0.0.2:11301"]
//!
//! [[node]]
//! id = 3
//! addr = "10.0.0.3:11211"
//! shards = ["10.0.0.3:11300", "10.0.0.3:11301"]
//! ```
//!
//! A file may also set `next_node_id = N`, the id the next node to join gets
//! (ids are never reused; by default one past the highest id), `secret_file =
//! "PATH"` (where this node reads the cluster secret, relative to the file;
//! see `cluster::auth`), and `epoch = N` among the top-level keys: the configuration's
//! number, at least 1, and 1 when the key is absent. An operator starting a
//! cluster leaves it out; a node that saves a later configuration writes it
//! ([`ClusterConfig::to_file_text`]), so the text names the value exactly.
//!
//! A node's states mean, for placement:
//! - `up`: on the ring, serves reads and writes;
//! - `down`: still on the ring (its keys do not move), but read last;
//! - `joining`: a member that learns configurations but owns no vnodes yet; a
//!   later epoch marks it `up`, and only then do keys move to it.

use std::collections::HashSet;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::num::NonZeroU64;

use serde::Deserialize;

use super::ring::{ketama_name, POINTS_PER_SERVER_DEFAULT};
use crate::consensus::{self, Configuration, NodeId};

/// Most nodes in one cluster.
pub const NODES_MAX: usize = 64;
/// Most shards (endpoints) one node may list: one per core.
pub const SHARDS_PER_NODE_MAX: usize = crate::limits::SHARDS_MAX;
/// Most copies of a key. Bounds [`crate::cluster::placement::Owners`], which
/// holds a key's owners inline so a lookup does not allocate.
pub const REPLICAS_MAX: usize = 5;
/// Most acceptors: Paxos with 5 tolerates 2 failures, and more only slows it.
pub const ACCEPTORS_MAX: usize = 5;
/// Most ring points per shard endpoint (ketama wants a multiple of 4).
pub const VNODES_PER_SHARD_MAX: usize = 4096;
/// Longest cluster file, in bytes, and longest host name.
pub const CLUSTER_FILE_LEN_MAX: usize = 1 << 20;
pub const HOST_LEN_MAX: usize = 253;

/// A `host:port` address (`[v6addr]:port` for IPv6).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Endpoint {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` or `[v6addr]:port`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| format!("{text:?} is not [address]:port"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{host:?} is not an IPv6 address"));
            }
            (host, port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| format!("{text:?} is not host:port"))?;
            if host.contains(':') {
                return Err(format!("{text:?}: write an IPv6 address as [address]:port"));
            }
            (host, port)
        };
        if host.is_empty() || host.len() > HOST_LEN_MAX {
            return Err(format!(
                "{text:?}: the host must be 1 to {HOST_LEN_MAX} bytes"
            ));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(format!(
                "{text:?}: the host may hold only letters, digits, '-', '.' and '_'"
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(format!("{text:?}: port 0 cannot be connected to"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// The name ketama clients hash this endpoint's ring points under.
    pub fn ketama_name(&self) -> String {
        ketama_name(&self.host, self.port)
    }

    /// The host as an IP address, when it is one (no name resolution: pure).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;

    fn try_from(text: String) -> Result<Endpoint, String> {
        Endpoint::parse(&text)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether a node is on the ring and how it is read (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Up,
    Down,
    Joining,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Joining => "joining",
        }
    }

    /// Whether the node's shards hold vnodes: `up` and `down` nodes do, so a node
    /// going down moves no keys; `joining` nodes do not yet.
    pub fn is_on_ring(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Down)
    }
}

/// How many owners must have applied a write before the client hears `STORED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteAck {
    /// The primary alone.
    One,
    /// A majority of the R owners: R/2 + 1.
    #[default]
    Quorum,
    /// All R owners.
    All,
}

impl WriteAck {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteAck::One => "one",
            WriteAck::Quorum => "quorum",
            WriteAck::All => "all",
        }
    }

    /// Acks a write needs (the primary's own included) with `replicas` owners.
    pub fn acks_needed(self, replicas: usize) -> usize {
        match self {
            WriteAck::One => 1,
            WriteAck::Quorum => replicas / 2 + 1,
            WriteAck::All => replicas,
        }
    }
}

/// One node as the configuration describes it (a `[[node]]` table of the file).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable across restarts and epochs; never given to another node.
    pub id: u32,
    /// Where memcached clients connect (the node's shared port).
    #[serde(rename = "addr")]
    pub client_addr: Endpoint,
    /// One endpoint per shard, shard 0 first: each is one "server" on the ring.
    pub shards: Vec<Endpoint>,
    #[serde(default)]
    pub state: NodeState,
}

/// The fields of a configuration before they are checked: what an operator or a
/// Paxos proposal writes. [`ClusterConfig::new`] checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub nodes: Vec<NodeConfig>,
    pub replicas: usize,
    pub vnodes_per_shard: usize,
    pub write_ack: WriteAck,
    pub acceptors: Vec<u32>,
    /// The id the next node to join gets: ids are never reused, so this only
    /// grows. 0 means one past the highest id in `nodes`, and a value at or
    /// below that is raised to it.
    pub next_node_id: u32,
}

/// Why a [`ClusterSpec`] is not a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    EpochZero,
    NoNodes,
    TooManyNodes {
        count: usize,
    },
    DuplicateNodeId {
        id: u32,
    },
    NoShards {
        node: u32,
    },
    TooManyShards {
        node: u32,
        count: usize,
    },
    /// An endpoint (or ketama name) used twice: by two shards, two nodes'
    /// client ports, or one node's client port and another node's shard.
    DuplicateEndpoint {
        endpoint: String,
    },
    ReplicasZero,
    ReplicasAboveMax {
        replicas: usize,
    },
    /// R is more than the nodes on the ring (`up` or `down`).
    ReplicasAboveNodes {
        replicas: usize,
        ring_nodes: usize,
    },
    VnodesInvalid {
        vnodes_per_shard: usize,
    },
    /// Paxos is to run over a configuration that names no acceptors.
    NoAcceptors,
    AcceptorCount {
        count: usize,
    },
    UnknownAcceptor {
        id: u32,
    },
    DuplicateAcceptor {
        id: u32,
    },
    /// An endpoint whose text does not read back as itself (a host with
    /// characters a cluster file cannot hold, or port 0): built in code rather
    /// than by [`Endpoint::parse`].
    InvalidEndpoint {
        endpoint: String,
        reason: String,
    },
    /// The configuration's cluster file would be longer than
    /// [`CLUSTER_FILE_LEN_MAX`], so it could not be read back.
    FileTextTooLong {
        bytes: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EpochZero => write!(f, "epoch 0 is not a configuration; epochs start at 1"),
            ConfigError::NoNodes => write!(f, "the cluster has no nodes"),
            ConfigError::TooManyNodes { count } => {
                write!(f, "{count} nodes: a cluster has at most {NODES_MAX}")
            }
            ConfigError::DuplicateNodeId { id } => write!(f, "node id {id} is used twice"),
            ConfigError::NoShards { node } => write!(f, "node {node} lists no shards"),
            ConfigError::TooManyShards { node, count } => write!(
                f,
                "node {node} lists {count} shards: at most {SHARDS_PER_NODE_MAX}"
            ),
            ConfigError::DuplicateEndpoint { endpoint } => {
                write!(f, "endpoint {endpoint} is used twice")
            }
            ConfigError::ReplicasZero => write!(f, "replicas = 0: every key needs at least 1 copy"),
            ConfigError::ReplicasAboveMax { replicas } => {
                write!(f, "replicas = {replicas}: at most {REPLICAS_MAX}")
            }
            ConfigError::ReplicasAboveNodes {
                replicas,
                ring_nodes,
            } => write!(
                f,
                "replicas = {replicas} but only {ring_nodes} nodes are up or down (joining nodes hold no copies)"
            ),
            ConfigError::VnodesInvalid { vnodes_per_shard } => write!(
                f,
                "vnodes_per_shard = {vnodes_per_shard}: must be a multiple of 4 from 4 to {VNODES_PER_SHARD_MAX}"
            ),
            ConfigError::NoAcceptors => write!(
                f,
                "no acceptors: Paxos (a node with --data-dir) needs acceptors = [...] naming 1, 3 or 5 node ids"
            ),
            ConfigError::AcceptorCount { count } => write!(
                f,
                "{count} acceptors: use an odd number up to {ACCEPTORS_MAX} (an even number tolerates no more failures than one fewer)"
            ),
            ConfigError::UnknownAcceptor { id } => write!(f, "acceptor {id} is not a node"),
            ConfigError::DuplicateAcceptor { id } => write!(f, "acceptor {id} is named twice"),
            ConfigError::InvalidEndpoint { endpoint, reason } => {
                write!(f, "endpoint {endpoint} is not host:port: {reason}")
            }
            ConfigError::FileTextTooLong { bytes } => write!(
                f,
                "the configuration's cluster file would be {bytes} bytes: at most {CLUSTER_FILE_LEN_MAX}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The configuration in force at one epoch: checked, immutable, and meant to be
/// shared as `Arc<ClusterConfig>`. Two values with the same epoch are the same
/// configuration (Paxos decides one value per epoch), so [`Self::epoch`] is all a
/// shard compares to know whether it is current.
///
/// It is also the value Multi-Paxos agrees on: it implements
/// [`Configuration`], whose acceptors and learners are node ids as `u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    epoch: u64,
    /// Sorted by id.
    nodes: Vec<NodeConfig>,
    replicas: usize,
    vnodes_per_shard: usize,
    write_ack: WriteAck,
    acceptors: Vec<u32>,
    /// See [`ClusterSpec::next_node_id`]; always above every id in `nodes`.
    next_node_id: u32,
    /// `acceptors` as consensus ids, in the same order. Built by
    /// [`ClusterConfig::new`] from the fields above, so comparing it adds nothing
    /// to equality: two values are equal exactly when their configurations are.
    consensus_acceptors: Vec<NodeId>,
    /// The ids of the nodes that are not acceptors, by id: they learn decisions.
    consensus_learners: Vec<NodeId>,
}

// Every valid configuration can be agreed on by the consensus core.
const _: () = assert!(ACCEPTORS_MAX <= consensus::ACCEPTORS_MAX);
const _: () = assert!(NODES_MAX <= consensus::MEMBERS_MAX);

impl ClusterConfig {
    /// Checks `spec` and numbers it `epoch` (at least 1).
    pub fn new(epoch: u64, spec: ClusterSpec) -> Result<ClusterConfig, ConfigError> {
        if epoch == 0 {
            return Err(ConfigError::EpochZero);
        }
        validate(&spec)?;
        let mut nodes = spec.nodes;
        nodes.sort_by_key(|n| n.id);
        let past_highest = nodes.last().map_or(1, |n| n.id.saturating_add(1));
        let next_node_id = spec.next_node_id.max(past_highest);
        let consensus_acceptors = spec.acceptors.iter().map(|&id| NodeId::from(id)).collect();
        let consensus_learners = nodes
            .iter()
            .filter(|n| !spec.acceptors.contains(&n.id))
            .map(|n| NodeId::from(n.id))
            .collect();
        let config = ClusterConfig {
            epoch,
            nodes,
            replicas: spec.replicas,
            vnodes_per_shard: spec.vnodes_per_shard,
            write_ack: spec.write_ack,
            acceptors: spec.acceptors,
            next_node_id,
            consensus_acceptors,
            consensus_learners,
        };
        // Every configuration must read back from its own text (it is saved and
        // sent as that text), so one too long to be read back is refused here.
        let bytes = config.to_file_text().len();
        if bytes > CLUSTER_FILE_LEN_MAX {
            return Err(ConfigError::FileTextTooLong { bytes });
        }
        Ok(config)
    }

    /// The view a node outside any cluster gives of itself: one node (id 1,
    /// up), one copy of each key, itself the only acceptor, at epoch 1, which
    /// is the configuration `--init` would start it with. `shards` are its
    /// shards' own endpoints, or its client address alone when they have none.
    pub fn single_node(client_addr: Endpoint, shards: Vec<Endpoint>) -> ClusterConfig {
        let spec = ClusterSpec {
            nodes: vec![NodeConfig {
                id: 1,
                client_addr,
                shards,
                state: NodeState::Up,
            }],
            replicas: 1,
            vnodes_per_shard: POINTS_PER_SERVER_DEFAULT,
            write_ack: WriteAck::One,
            acceptors: vec![1],
            next_node_id: 0,
        };
        ClusterConfig::new(1, spec).expect("one node with distinct endpoints is a configuration")
    }

    /// The configuration that follows this one: `spec` at the next epoch. Node
    /// ids handed out so far stay used even if `spec` asks for fewer. Paxos
    /// decides every successor, so it must name acceptors.
    pub fn successor(&self, mut spec: ClusterSpec) -> Result<ClusterConfig, ConfigError> {
        let epoch = self.epoch.checked_add(1).expect("epoch overflow");
        spec.next_node_id = spec.next_node_id.max(self.next_node_id);
        let next = ClusterConfig::new(epoch, spec)?;
        next.require_acceptors()?;
        Ok(next)
    }

    /// Checks that Paxos can run over this configuration: a node with
    /// `--data-dir` refuses one that names no acceptors, which is valid only
    /// for a cluster whose nodes all run without it.
    pub fn require_acceptors(&self) -> Result<(), ConfigError> {
        if self.acceptors.is_empty() {
            return Err(ConfigError::NoAcceptors);
        }
        Ok(())
    }

    /// Reads a cluster file (see the module docs): its configuration is at the
    /// file's `epoch`, 1 when the file does not set one.
    pub fn from_file_text(text: &str) -> Result<ClusterConfig, ClusterFileError> {
        let (epoch, spec) = parse_cluster_file_with_epoch(text)?;
        ClusterConfig::new(epoch, spec).map_err(ClusterFileError::Invalid)
    }

    /// This configuration as a cluster file, with its `epoch` and every default
    /// spelled out: [`ClusterConfig::from_file_text`] reads it back as a value
    /// equal to `self`, and writing that value again gives the same text.
    ///
    /// # Format
    ///
    /// ```toml
    /// epoch = 2
    /// replicas = 2
    /// vnodes_per_shard = 160
    /// write_ack = "quorum"
    /// acceptors = [1, 2, 3]
    ///
    /// [[node]]
    /// id = 1
    /// addr = "10.0.0.1:11211"
    /// shards = ["10.0.0.1:11300", "10.0.0.1:11301"]
    /// state = "up"
    /// ```
    ///
    /// and one `[[node]]` table per node, by id.
    pub fn to_file_text(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(text, "epoch = {}", self.epoch);
        let _ = writeln!(text, "replicas = {}", self.replicas);
        let _ = writeln!(text, "vnodes_per_shard = {}", self.vnodes_per_shard);
        let _ = writeln!(text, "write_ack = \"{}\"", self.write_ack.as_str());
        let acceptors: Vec<String> = self.acceptors.iter().map(u32::to_string).collect();
        let _ = writeln!(text, "acceptors = [{}]", acceptors.join(", "));
        let _ = writeln!(text, "next_node_id = {}", self.next_node_id);
        for node in &self.nodes {
            let shards: Vec<String> = node.shards.iter().map(|s| format!("\"{s}\"")).collect();
            let _ = writeln!(text, "\n[[node]]");
            let _ = writeln!(text, "id = {}", node.id);
            let _ = writeln!(text, "addr = \"{}\"", node.client_addr);
            let _ = writeln!(text, "shards = [{}]", shards.join(", "));
            let _ = writeln!(text, "state = \"{}\"", node.state.as_str());
        }
        text
    }

    /// This configuration's fields, to edit into a successor.
    pub fn to_spec(&self) -> ClusterSpec {
        ClusterSpec {
            nodes: self.nodes.clone(),
            replicas: self.replicas,
            vnodes_per_shard: self.vnodes_per_shard,
            write_ack: self.write_ack,
            acceptors: self.acceptors.clone(),
            next_node_id: self.next_node_id,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether this configuration replaces `other`.
    pub fn supersedes(&self, other: &ClusterConfig) -> bool {
        self.epoch > other.epoch
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> &[NodeConfig] {
        &self.nodes
    }

    pub fn node(&self, id: u32) -> Option<&NodeConfig> {
        self.nodes
            .binary_search_by_key(&id, |n| n.id)
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Copies of each key (R).
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn vnodes_per_shard(&self) -> usize {
        self.vnodes_per_shard
    }

    pub fn write_ack(&self) -> WriteAck {
        self.write_ack
    }

    /// The node ids that run Paxos, as the file lists them. Consensus reads the
    /// same ids as `u64` through [`Configuration::acceptors`].
    pub fn acceptors(&self) -> &[u32] {
        &self.acceptors
    }

    /// The id the next node to join gets (see [`ClusterSpec::next_node_id`]).
    pub fn next_node_id(&self) -> u32 {
        self.next_node_id
    }
}

/// The acceptors decide the next epoch; every other node (`up`, `down` or
/// `joining`) learns it. A node id `n` is consensus id `n as u64`.
impl Configuration for ClusterConfig {
    fn acceptors(&self) -> &[NodeId] {
        &self.consensus_acceptors
    }

    fn learners(&self) -> &[NodeId] {
        &self.consensus_learners
    }
}

fn validate(spec: &ClusterSpec) -> Result<(), ConfigError> {
    if spec.nodes.is_empty() {
        return Err(ConfigError::NoNodes);
    }
    if spec.nodes.len() > NODES_MAX {
        return Err(ConfigError::TooManyNodes {
            count: spec.nodes.len(),
        });
    }
    let mut ids = HashSet::new();
    for node in &spec.nodes {
        if !ids.insert(node.id) {
            return Err(ConfigError::DuplicateNodeId { id: node.id });
        }
        if node.shards.is_empty() {
            return Err(ConfigError::NoShards { node: node.id });
        }
        if node.shards.len() > SHARDS_PER_NODE_MAX {
            return Err(ConfigError::TooManyShards {
                node: node.id,
                count: node.shards.len(),
            });
        }
        for endpoint in std::iter::once(&node.client_addr).chain(&node.shards) {
            check_endpoint(endpoint)?;
        }
    }
    // Shard endpoints are ring servers: two with one ketama name would share
    // their points. A node with one shard may serve it on its client port.
    let mut shard_names: HashSet<String> = HashSet::new();
    for shard in spec.nodes.iter().flat_map(|n| &n.shards) {
        if !shard_names.insert(shard.ketama_name()) {
            return Err(ConfigError::DuplicateEndpoint {
                endpoint: shard.to_string(),
            });
        }
    }
    let mut client_addrs = HashSet::new();
    for node in &spec.nodes {
        let taken_by_other_node = spec
            .nodes
            .iter()
            .filter(|other| other.id != node.id)
            .any(|other| other.shards.contains(&node.client_addr));
        if !client_addrs.insert(&node.client_addr) || taken_by_other_node {
            return Err(ConfigError::DuplicateEndpoint {
                endpoint: node.client_addr.to_string(),
            });
        }
    }
    if spec.replicas == 0 {
        return Err(ConfigError::ReplicasZero);
    }
    if spec.replicas > REPLICAS_MAX {
        return Err(ConfigError::ReplicasAboveMax {
            replicas: spec.replicas,
        });
    }
    let ring_nodes = spec.nodes.iter().filter(|n| n.state.is_on_ring()).count();
    if spec.replicas > ring_nodes {
        return Err(ConfigError::ReplicasAboveNodes {
            replicas: spec.replicas,
            ring_nodes,
        });
    }
    let v = spec.vnodes_per_shard;
    if v < 4 || !v.is_multiple_of(4) || v > VNODES_PER_SHARD_MAX {
        return Err(ConfigError::VnodesInvalid {
            vnodes_per_shard: v,
        });
    }
    // No acceptors is a cluster in which no node runs Paxos: its configuration
    // changes only by a newer file (see [`ClusterConfig::require_acceptors`]).
    let mut acceptors = HashSet::new();
    for &id in &spec.acceptors {
        if !acceptors.insert(id) {
            return Err(ConfigError::DuplicateAcceptor { id });
        }
        if !ids.contains(&id) {
            return Err(ConfigError::UnknownAcceptor { id });
        }
    }
    let count = spec.acceptors.len();
    if count > 0 && (count.is_multiple_of(2) || count > ACCEPTORS_MAX) {
        return Err(ConfigError::AcceptorCount { count });
    }
    Ok(())
}

/// An endpoint is valid when its text reads back as itself, so that a
/// configuration survives [`ClusterConfig::to_file_text`].
fn check_endpoint(endpoint: &Endpoint) -> Result<(), ConfigError> {
    let text = endpoint.to_string();
    match Endpoint::parse(&text) {
        Ok(read) if read == *endpoint => Ok(()),
        Ok(read) => Err(ConfigError::InvalidEndpoint {
            endpoint: text,
            reason: format!("it reads back as {read}"),
        }),
        Err(reason) => Err(ConfigError::InvalidEndpoint {
            endpoint: text,
            reason,
        }),
    }
}

/// Why a cluster file was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterFileError {
    /// The text is not TOML, or not a cluster file's keys and types; `line`
    /// counts from 1.
    Syntax { line: usize, reason: String },
    /// The text parsed but does not describe a valid cluster.
    Invalid(ConfigError),
}

impl fmt::Display for ClusterFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterFileError::Syntax { line, reason } => write!(f, "line {line}: {reason}"),
            ClusterFileError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClusterFileError {}

/// The cluster file as TOML lays it out (see the module docs): serde checks
/// its keys and their types, [`ClusterConfig::new`] the configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    epoch: Option<NonZeroU64>,
    replicas: usize,
    #[serde(default = "vnodes_per_shard_default")]
    vnodes_per_shard: usize,
    #[serde(default)]
    write_ack: WriteAck,
    /// Absent when no node runs Paxos (see [`ClusterConfig::require_acceptors`]).
    #[serde(default)]
    acceptors: Vec<u32>,
    #[serde(default)]
    next_node_id: u32,
    /// This node's own setting, not part of the configuration: see
    /// [`secret_file_of`].
    #[allow(dead_code)]
    secret_file: Option<String>,
    #[serde(default, rename = "node")]
    nodes: Vec<NodeConfig>,
}

fn vnodes_per_shard_default() -> usize {
    POINTS_PER_SERVER_DEFAULT
}

/// The file's top-level `secret_file = "PATH"`, if it sets one: where the node
/// reading it finds the cluster secret (see `cluster::auth`). It is each
/// node's own setting, so no configuration value carries it and
/// [`ClusterConfig::to_file_text`] does not write it.
pub fn secret_file_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct SecretFile {
        secret_file: Option<String>,
    }
    toml::from_str::<SecretFile>(text).ok()?.secret_file
}

/// Parses the cluster file's text into an unchecked [`ClusterSpec`]. The file's
/// `epoch` is checked but not returned: see [`parse_cluster_file_with_epoch`].
pub fn parse_cluster_file(text: &str) -> Result<ClusterSpec, ClusterFileError> {
    parse_cluster_file_with_epoch(text).map(|(_, spec)| spec)
}

/// Parses the cluster file's text into its epoch (1 when the file sets none) and
/// an unchecked [`ClusterSpec`].
pub fn parse_cluster_file_with_epoch(text: &str) -> Result<(u64, ClusterSpec), ClusterFileError> {
    if text.len() > CLUSTER_FILE_LEN_MAX {
        return Err(ClusterFileError::Syntax {
            line: 1,
            reason: format!("the file is longer than {CLUSTER_FILE_LEN_MAX} bytes"),
        });
    }
    let file: ClusterFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |span| span.start);
        ClusterFileError::Syntax {
            line: 1 + text.as_bytes()[..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            reason: e.message().trim_end().to_string(),
        }
    })?;
    let spec = ClusterSpec {
        nodes: file.nodes,
        replicas: file.replicas,
        vnodes_per_shard: file.vnodes_per_shard,
        write_ack: file.write_ack,
        acceptors: file.acceptors,
        next_node_id: file.next_node_id,
    };
    Ok((file.epoch.map_or(1, NonZeroU64::get), spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_ipv6_in_brackets() {
        let e = Endpoint::parse("[::1]:11300").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.to_string(), "[::1]:11300");
        assert!(Endpoint::parse("::1:11300").is_err());
        assert!(Endpoint::parse("host").is_err());
        assert!(Endpoint::parse("host:0").is_err());
        assert!(Endpoint::parse(":80").is_err());
        assert!(Endpoint::parse("a b:80").is_err());
        assert_eq!(
            Endpoint::parse("cache-1.local:11211")
                .unwrap()
                .ketama_name(),
            "cache-1.local"
        );
    }

    #[test]
    fn quorum_is_a_majority_of_the_replicas() {
        assert_eq!(WriteAck::Quorum.acks_needed(1), 1);
        assert_eq!(WriteAck::Quorum.acks_needed(2), 2);
        assert_eq!(WriteAck::Quorum.acks_needed(3), 2);
        assert_eq!(WriteAck::One.acks_needed(3), 1);
        assert_eq!(WriteAck::All.acks_needed(3), 3);
    }
}

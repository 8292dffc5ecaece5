//! The shell: glommio executors, sockets, channels, signals and the clock.
//!
//! [`run`] finds the CPUs this process may use, starts one shard (executor) per
//! core, each listening on the client port with SO_REUSEPORT, connects every pair
//! of shards with bounded channels, and waits for SIGINT or SIGTERM to stop them,
//! or for a shard or the control thread to fail (see [`supervisor`]).
//! Everything else in the crate is pure; this module is where requests meet I/O.
//!
//! # Layers
//!
//! The modules below form layers, bottom first; each imports only modules of
//! its own layer listed before it, or of a lower one (`tests/layering.rs` checks
//! this, and its `LAYERS` is the full list):
//!
//! 1. plain values and helpers: a connection's socket lent to another shard
//!    (`gate`), `messages` between shards and to the control thread, each
//!    shard's `doorbell`, one shard's store (`state`), `conns`,
//!    [`auth`], `tls`, ...;
//! 2. one shard's way to the others of its node: `waiters`, `siblings`;
//! 3. client sockets: `uring`, the `stream` over it or glommio's, and `watch`,
//!    which writes log lines on them;
//! 4. the node's cluster state and its links to other nodes: [`cluster`];
//! 5. what every task of one shard shares: `ctx`;
//! 6. one client connection: `conn` (text and binary loops, routing, replies);
//! 7. the shard loop (`shard`) and the control thread ([`control`]);
//! 8. joining and starting the node: `start`, `launch`.
//!
//! The admin client (`ringcache cluster ...`) is a client of a node, outside
//! the runtime: `crate::admin`.
//!
//! This file itself (the [`Node`] every shard shares, socket helpers) is
//! outside the order: any layer may use it.

pub mod auth;
pub mod cluster;
mod conn;
mod conns;
pub mod control;
mod ctx;
mod doorbell;
mod gate;
mod launch;
mod messages;
mod metrics;
pub mod notify;
pub mod process;
mod protocol_errors;
pub mod sealed;
mod shard;
mod siblings;
pub(crate) mod start;
mod state;
mod stream;
pub mod supervisor;
mod tls;
mod uring;
mod waiters;
mod watch;

pub use launch::run;

use crate::cli::Config;
use crate::cluster::config::ClusterConfig;
use crate::cluster::ring::Ring;
use crate::limits::LISTEN_BACKLOG;
use crate::storage::ttl::Clock;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Seconds the relative clock starts at, so that 1 ("already expired") is in the past.
const CLOCK_START_SECS: u32 = 2;

/// What every shard of the node shares: fixed at start, plus a few atomics.
pub struct Node {
    pub config: Config,
    pub shards: usize,
    pub ring: Ring,
    pub stop: AtomicBool,
    /// Open client connections, bounded by `-c`.
    pub connections: AtomicUsize,
    pub started: Instant,
    pub process_started_unix: i64,
    /// The other addresses of a `-l` list: every shard accepts on each.
    pub listen_also: Vec<SocketAddr>,
    /// `--cluster`: this node's view of the cluster it is part of.
    pub cluster: Option<Arc<cluster::ClusterNode>>,
    /// `--data-dir`: the control thread's inputs (consensus messages, proposals).
    pub control: Option<mpsc::SyncSender<messages::ControlInput>>,
    /// `-Z`: every client connection speaks TLS with these settings.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `-Y`: the users a text connection must authenticate as first.
    pub ascii_auth: Option<crate::protocol::ascii_auth::AuthFile>,
    /// `-S`: the users binary SASL PLAIN admits.
    pub sasl_users: Option<crate::protocol::ascii_auth::AuthFile>,
    /// `watch`: the connections that receive the node's log lines.
    pub watchers: watch::Watchers,
    /// `doorbells[j]`: what a shard rings after putting a message on shard j's
    /// channels, in case j sleeps in its socket ring.
    pub doorbells: Vec<Arc<doorbell::Doorbell>>,
}

impl Node {
    /// The store's clock: whole seconds since start, as memcached's `current_time`.
    pub fn clock(&self) -> Clock {
        Clock {
            rel_secs: CLOCK_START_SECS + self.started.elapsed().as_secs() as u32,
            process_started_unix: self.process_started_unix,
        }
    }
}

/// The CPUs this process may run on (its affinity mask, not every online CPU).
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => vec![0],
    }
}

/// The address to listen on, resolved once.
fn listen_addr(config: &Config) -> Result<SocketAddr, String> {
    (config.listen.as_str(), config.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve listen address {:?}", config.listen))
}

/// `-b`: the backlog every listening socket of the process gets. Set once by
/// [`run`] before any shard starts (the shards open their own listeners).
static LISTEN_BACKLOG_SET: AtomicI32 = AtomicI32::new(LISTEN_BACKLOG);

/// A listening socket with SO_REUSEADDR (restarts do not wait for TIME_WAIT) and,
/// with `share`, SO_REUSEPORT so that every shard accepts on the same port.
pub(crate) fn listen_socket(addr: SocketAddr, share: Sharing) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{
        self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if share == Sharing::Shared {
        socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(
        &fd,
        Backlog::new(LISTEN_BACKLOG_SET.load(Ordering::Relaxed)).unwrap_or(Backlog::MAXCONN),
    )?;
    Ok(fd)
}

/// A non-blocking TCP socket from `local` (any port) to `peer`, its connection
/// started: a cluster node's connections to other nodes leave from its own
/// address, so the other side (and a firewall rule) sees which node it is.
/// Writing to it waits for the connection; a refused one fails the write.
pub(crate) fn connect_from(local: Option<IpAddr>, peer: SocketAddr) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let family = if peer.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == peer.is_ipv4()) {
        if peer.is_ipv4() {
            let _ = socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true);
        }
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(ip, 0)),
        )?;
    }
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(peer)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

/// Whether a listening socket shares its port with the node's other shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    Shared,
    Exclusive,
}

/// Fails early, with the cause, when another process holds the port.
fn check_port_free(addr: SocketAddr) -> Result<(), String> {
    // Without SO_REUSEPORT this fails if anyone listens there, even another
    // ringcache whose sockets would otherwise share the port with ours.
    match listen_socket(addr, Sharing::Exclusive) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "port {} on {} is already in use by another process: stop it or choose another port with -p",
            addr.port(),
            addr.ip()
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

/// Turns glommio's start-up failures into one line naming the cause and the fix.
fn explain_executor_error(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    if text.contains("memlock") || text.contains("MemLock") {
        format!(
            "the memlock limit is too small for io_uring ({text}): raise it with `ulimit -l 8192` or LimitMEMLOCK= in the systemd unit"
        )
    } else {
        format!(
            "cannot set up io_uring ({text}): ringcache needs Linux 5.8+ with io_uring enabled (sysctl kernel.io_uring_disabled=0) and not blocked by seccomp"
        )
    }
}

/// The durable state a node restarts from, if any.
type Restart = Option<crate::consensus::Durable<ClusterConfig>>;

/// Finds this node's cluster and its place in it:
/// - with state in `--data-dir`: its own id and newest configuration (a newer
///   cluster file that still names it wins);
/// - `--cluster FILE --node-id ID`: the file; with an empty `--data-dir`, unless
///   the other nodes have seen this id vote (its disk was wiped), in which case
///   it joins again as a new member (see [`start::wiped`]);
/// - `--init`: a new one-node cluster; `--join HOST:PORT`: a new member.
fn load_cluster(config: &Config) -> Result<Option<(Arc<cluster::ClusterNode>, Restart)>, String> {
    let durable = match &config.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create --data-dir {}: {e}", dir.display()))?;
            control::load_durable(dir)?
        }
        None => None,
    };
    let mut file_secret = None;
    let file = match &config.cluster {
        Some(membership) => {
            let path = membership.file.display();
            let text = std::fs::read_to_string(&membership.file)
                .map_err(|e| format!("cannot read cluster file {path}: {e}"))?;
            file_secret = crate::cluster::config::secret_file_of(&text).map(|named| {
                let dir = membership.file.parent().unwrap_or(std::path::Path::new(""));
                dir.join(named)
            });
            Some((
                ClusterConfig::from_file_text(&text)
                    .map_err(|e| format!("cluster file {path}: {e}"))?,
                membership.node_id,
            ))
        }
        None => None,
    };
    let in_a_cluster = durable.is_some() || file.is_some() || config.init || config.join.is_some();
    if !in_a_cluster {
        return match &config.data_dir {
            Some(dir) => Err(format!(
                "--data-dir {} holds no state: start the node with --cluster FILE --node-id ID, --init or --join HOST:PORT",
                dir.display()
            )),
            None => Ok(None),
        };
    }
    let secret = cluster_secret(config, file_secret, durable.is_none())?;
    let (value, me) = if let Some(durable) = &durable {
        let me = u32::try_from(durable.node_id)
            .map_err(|_| "--data-dir: the saved node id is out of range".to_string())?;
        let (_, saved) = durable.decided.last().expect("a decided value");
        let value = match file {
            Some((file, _)) if file.supersedes(saved) && file.node(me).is_some() => file,
            _ => saved.clone(),
        };
        log::info!(
            "node {me}: restarting from --data-dir at epoch {}",
            value.epoch()
        );
        (value, me)
    } else if let Some((file, me)) = file {
        let wiped = match &config.data_dir {
            Some(_) => start::wiped(&file, me, &secret)?,
            None => None,
        };
        match (&config.data_dir, wiped) {
            (Some(_), Some((through, why))) => {
                let own = file
                    .node(me)
                    .ok_or_else(|| format!("--node-id {me}: the cluster file has no node {me}"))?;
                log::warn!(
                    "node {me} has an empty --data-dir but the node at {through} {why}: joining through it as a new member"
                );
                own_port_free(&own.client_addr)?;
                start::join(&through, &secret, &own.client_addr, &own.shards)?
            }
            _ => (file, me),
        }
    } else if config.init {
        let (addr, shards) = start::own_endpoints(config)?;
        (start::genesis(addr, shards)?, 1)
    } else if let Some(through) = &config.join {
        let (addr, shards) = start::own_endpoints(config)?;
        // A member already listening here would be replaced by the join.
        own_port_free(&addr)?;
        start::join(through, &secret, &addr, &shards)?
    } else {
        unreachable!("a node in a cluster has state, a file, --init or --join");
    };
    if config.data_dir.is_some() {
        value
            .require_acceptors()
            .map_err(|e| format!("--data-dir runs Paxos over the cluster configuration: {e}"))?;
    }
    let node = cluster::ClusterNode::new(
        value,
        me,
        Duration::from_millis(config.peer_timeout_ms),
        config.hinted_keys_max,
        secret,
        Duration::from_millis(config.failover_timeout_ms),
    )?;
    if let Some(dir) = &config.data_dir {
        node.keep_votes_in(dir)?;
        node.run_consensus();
    }
    Ok(Some((Arc::new(node), durable)))
}

/// The cluster secret of a node: `--cluster-secret FILE`, else the cluster
/// file's `secret_file`, else `cluster.secret` in `--data-dir`, which `--init`
/// creates for a new cluster (`fresh`: the data directory holds no state).
/// Without one a cluster node does not start: anyone who reaches its port
/// could then reconfigure the cluster.
fn cluster_secret(
    config: &Config,
    file_secret: Option<std::path::PathBuf>,
    fresh: bool,
) -> Result<crate::cluster::auth::Secret, String> {
    use crate::cluster::auth::{HOW_TO_MAKE_ONE, SECRET_FILE_NAME};
    if let Some(path) = config.cluster_secret.as_ref().or(file_secret.as_ref()) {
        return auth::load_secret(path);
    }
    if let Some(dir) = &config.data_dir {
        let path = dir.join(SECRET_FILE_NAME);
        if path.exists() {
            return auth::load_secret(&path);
        }
        if config.init && fresh {
            return auth::load_secret(&auth::create_secret(dir)?);
        }
    }
    let place = match &config.data_dir {
        Some(dir) => format!(
            "copy it from a member's data directory to {}",
            dir.join(SECRET_FILE_NAME).display()
        ),
        None => "name its file with --cluster-secret FILE".to_string(),
    };
    Err(format!(
        "a cluster node needs the cluster secret, which every member and admin shares: \
         {place}, or name it with --cluster-secret FILE (or secret_file = \"FILE\" in the cluster file); \
         for a new cluster make one with `{HOW_TO_MAKE_ONE}`"
    ))
}

/// Checks, before a join, that this node's client port is free: joining
/// replaces a member at the same address, which must not be a live one.
fn own_port_free(addr: &crate::cluster::config::Endpoint) -> Result<(), String> {
    let resolved = (addr.host.as_str(), addr.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {addr}"))?;
    check_port_free(resolved)
}

/// Pins the calling thread to `cpu` (`--control-cpu`); logs and stays
/// unpinned if that CPU is not in the process's mask.
fn pin_this_thread(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set.set(cpu).is_ok()
        && allowed_cpus().contains(&cpu)
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok();
    if pinned {
        log::info!("control thread on CPU {cpu}");
    } else {
        log::warn!(
            "--control-cpu {cpu}: not a CPU this process may use; the control thread is unpinned"
        );
    }
}

/// On SIGHUP: reads the cluster file again and puts its configuration in
/// force if its `epoch` is newer than the one in force. Shards take it up
/// between requests; a bad file changes nothing and is logged.
fn reload_cluster(node: &Node) {
    let Some(cluster) = &node.cluster else {
        log::info!("SIGHUP: not a cluster node, nothing to reload");
        return;
    };
    let loaded = node
        .config
        .cluster
        .as_ref()
        .ok_or_else(|| "no cluster file".to_string())
        .and_then(|membership| {
            let path = membership.file.display();
            let text = std::fs::read_to_string(&membership.file)
                .map_err(|e| format!("cannot read cluster file {path}: {e}"))?;
            crate::cluster::config::ClusterConfig::from_file_text(&text)
                .map_err(|e| format!("cluster file {path}: {e}"))
        })
        .and_then(|config| cluster.install(config));
    match loaded {
        Ok(true) => {}
        Ok(false) => log::warn!(
            "SIGHUP: the cluster file's epoch is not newer than {}: nothing changed",
            cluster.epoch()
        ),
        Err(message) => log::error!("SIGHUP: {message}"),
    }
}

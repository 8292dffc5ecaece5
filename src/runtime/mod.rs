//! The shell: glommio executors, sockets, channels, signals and the clock.
//!
//! [`run`] finds the CPUs this process may use, starts one shard (executor) per
//! core, each listening on the client port with SO_REUSEPORT, connects every pair
//! of shards with bounded channels, and waits for SIGINT or SIGTERM to stop them,
//! or for a shard or the control thread to fail (see [`supervisor`]).
//! Everything else in the crate is pure; this module is where requests meet I/O.

pub mod admin;
pub mod auth;
mod binary_conn;
pub mod cluster;
mod conn;
mod conns;
pub mod control;
mod messages;
mod metrics;
pub mod notify;
mod peer;
pub mod process;
mod protocol_errors;
mod shard;
pub(crate) mod start;
pub mod supervisor;
mod tls;
mod uring;
mod waiters;
mod watch;

use crate::cli::Config;
use crate::cluster::config::ClusterConfig;
use crate::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
use crate::limits::{IO_MEMORY_BYTES, LISTEN_BACKLOG, SHARD_CHANNEL_CAPACITY};
use crate::storage::ttl::Clock;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{SigSet, Signal};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    pub control: Option<std::sync::Mutex<mpsc::Sender<control::ControlInput>>>,
    /// `-Z`: every client connection speaks TLS with these settings.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `-Y`: the users a text connection must authenticate as first.
    pub ascii_auth: Option<crate::protocol::ascii_auth::AuthFile>,
    /// `watch`: the connections that receive the node's log lines.
    pub watchers: watch::Watchers,
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

/// Runs the node until SIGINT or SIGTERM, or until a supervised thread fails.
/// Returns the process exit code (see [`supervisor`]); the caller exits with it
/// at once, so threads still running then do not hold the process.
pub fn run(config: Config) -> i32 {
    LISTEN_BACKLOG_SET.store(config.listen_backlog, Ordering::Relaxed);
    let (cluster, restart) = match load_cluster(&config) {
        Ok(Some((cluster, restart))) => (Some(cluster), restart),
        Ok(None) => (None, None),
        Err(message) => {
            eprintln!("ringcache: {message}");
            return 1;
        }
    };
    let tls = match config.tls.as_ref().map(tls::server_config).transpose() {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("ringcache: {message}");
            return 1;
        }
    };
    let ascii_auth = match &config.auth_file {
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|text| crate::protocol::ascii_auth::AuthFile::parse(&text))
        {
            Ok(users) => Some(users),
            Err(e) => {
                eprintln!("ringcache: -Y {}: {e}", path.display());
                return 1;
            }
        },
        None => None,
    };
    let cpus = allowed_cpus();
    let shards = match &cluster {
        Some(cluster) => cluster.own_addrs().1.len(),
        None => config.threads.unwrap_or(cpus.len()).max(1),
    };
    let pinned = shards <= cpus.len();
    if !pinned {
        log::warn!(
            "-t {shards}: more shards than the {} CPUs this process may use; they share CPUs, unpinned",
            cpus.len()
        );
    }

    let addr = match cluster.as_ref().map(|c| c.own_addrs().0) {
        Some(addr) => check_port_free(addr).map(|_| addr),
        None => listen_addr(&config).and_then(|addr| check_port_free(addr).map(|_| addr)),
    };
    let addr = match addr {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("ringcache: {message}");
            return 1;
        }
    };
    // The other addresses of a `-l` list; a cluster node's come from its file.
    let also = match (&cluster, config.listen_also.is_empty()) {
        (_, true) => Ok(Vec::new()),
        (Some(_), false) => {
            Err("-l: a cluster node listens on the address its cluster file names; give one".into())
        }
        (None, false) => config
            .listen_also
            .iter()
            .map(|(host, port)| {
                (host.as_str(), *port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| format!("cannot resolve listen address {host:?}"))
                    .and_then(|addr| check_port_free(addr).map(|_| addr))
            })
            .collect::<Result<Vec<SocketAddr>, String>>(),
    };
    let listen_also = match also {
        Ok(also) => also,
        Err(message) => {
            eprintln!("ringcache: {message}");
            return 1;
        }
    };
    let listening: Vec<SocketAddr> = std::iter::once(addr)
        .chain(listen_also.iter().copied())
        .collect();
    if let Some(warning) = config.open_to_unauthenticated_clients(&listening) {
        log::warn!("{warning}");
    }

    // Bound before any shard starts: a metrics port in use stops the node now.
    let metrics_listener = match &config.metrics {
        None => None,
        Some((host, port)) => match metrics::bind(host, *port) {
            Ok(listener) => Some(listener),
            Err(message) => {
                eprintln!("ringcache: {message}");
                return 1;
            }
        },
    };

    // Shards inherit this mask, so only the main thread takes the stop signals.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGINT);
    stop_signals.add(Signal::SIGTERM);
    // SIGHUP: a cluster node reads its cluster file again (see `reload_cluster`).
    stop_signals.add(Signal::SIGHUP);
    if let Err(e) = stop_signals.thread_block() {
        eprintln!("ringcache: cannot block signals: {e}");
        return 1;
    }

    // With their own ports, shards are named on the ring as a ketama client names
    // those endpoints, so that client finds every key's owner by itself.
    let endpoints: Vec<String> = (0..shards)
        .map(|shard| match config.shard_port_base {
            Some(base) => ketama_name(&config.listen, base + shard as u16),
            None => format!("{}:{}#{}", config.listen, config.port, shard),
        })
        .collect();
    // With --data-dir: the acceptor state of an earlier run, and its newest
    // configuration in force from the start.
    let mut control_start = None;
    if let (Some(_), Some(dir)) = (&cluster, &config.data_dir) {
        let (tx, rx) = mpsc::channel();
        control_start = Some((dir.clone(), restart, tx, rx));
    }
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let node = Arc::new(Node {
        ring: Ring::single_node(&endpoints, POINTS_PER_SERVER_DEFAULT),
        shards,
        stop: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
        started: Instant::now(),
        process_started_unix: unix_now - CLOCK_START_SECS as i64,
        listen_also,
        config,
        cluster,
        control: control_start
            .as_ref()
            .map(|(_, _, tx, _)| std::sync::Mutex::new(tx.clone())),
        tls,
        ascii_auth,
        watchers: watch::Watchers::default(),
    });

    let mut links: Vec<shard::ShardLinks> = (0..shards)
        .map(|_| shard::ShardLinks {
            requests_to: (0..shards).map(|_| None).collect(),
            requests_from: (0..shards).map(|_| None).collect(),
            answers_to: (0..shards).map(|_| None).collect(),
            answers_from: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from == to {
                continue;
            }
            let (tx, rx) = shared_channel::new_bounded(SHARD_CHANNEL_CAPACITY);
            links[from].requests_to[to] = Some(tx);
            links[to].requests_from[from] = Some(rx);
            let (tx, rx) = shared_channel::new_bounded(SHARD_CHANNEL_CAPACITY);
            links[to].answers_to[from] = Some(tx);
            links[from].answers_from[to] = Some(rx);
        }
    }

    // One channel for everything the main thread waits on: stop signals,
    // shards saying they serve, and supervised threads ending (see `supervisor`).
    let (events_tx, events) = mpsc::channel();
    if let Err(e) = supervisor::forward_signals(stop_signals, events_tx.clone()) {
        eprintln!("ringcache: cannot start the signal thread: {e}");
        return supervisor::EXIT_START_FAILED;
    }
    let fault = supervisor::TestFault::from_env();
    let (started_tx, started_rx) = mpsc::channel();
    if let Err(e) = supervisor::forward_started(started_rx, events_tx.clone()) {
        eprintln!("ringcache: cannot start a thread: {e}");
        return supervisor::EXIT_START_FAILED;
    }
    let mut running = 0;
    for (id, links) in links.into_iter().enumerate() {
        let placement = if pinned {
            Placement::Fixed(cpus[id])
        } else {
            Placement::Unbound
        };
        let shard_node = node.clone();
        let started = started_tx.clone();
        let report = events_tx.clone();
        let spin = Duration::from_micros(node.config.spin_before_park_us);
        let name = format!("shard-{id}");
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                supervisor::supervised(name, report, || {
                    run_shard(id, shard_node, addr, links, started, placement, spin, fault)
                })
            });
        match thread {
            Ok(_) => running += 1,
            Err(e) => {
                eprintln!("ringcache: cannot start shard thread {id}: {e}");
                return stop_now(&node, &events, running, supervisor::EXIT_START_FAILED);
            }
        }
    }
    drop(started_tx);

    // Start-up: every shard serves, or the node stops (a failure, a signal, or
    // the deadline), without waiting for ever on a shard that is stuck.
    let deadline = Instant::now() + supervisor::SHARD_START_TIMEOUT;
    let mut serving = 0;
    while serving < shards {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(supervisor::Event::Started(Ok(_))) => serving += 1,
            Ok(supervisor::Event::Started(Err(message))) => {
                eprintln!("ringcache: {message}");
                return stop_now(&node, &events, running, supervisor::EXIT_START_FAILED);
            }
            Ok(supervisor::Event::Signal(Signal::SIGHUP)) => reload_cluster(&node),
            Ok(supervisor::Event::Signal(signal)) => {
                log::warn!("{signal:?} during start-up: stopping");
                return stop_now(&node, &events, running, 0);
            }
            // A shard that cannot start says why on `started` and then ends.
            Ok(supervisor::Event::Ended { panic: None, .. }) => running -= 1,
            Ok(supervisor::Event::Ended {
                thread,
                panic: Some(message),
            }) => {
                eprintln!(
                    "ringcache: {thread} panicked during start-up: {message}; stopping the node (exit {})",
                    supervisor::EXIT_THREAD_FAILED
                );
                return stop_now(&node, &events, running - 1, supervisor::EXIT_THREAD_FAILED);
            }
            Err(_) => {
                eprintln!(
                    "ringcache: {} of {shards} shards did not start within {} s{}",
                    shards - serving,
                    supervisor::SHARD_START_TIMEOUT.as_secs(),
                    if shards > cpus.len() {
                        format!(" (-t {shards} on {} CPUs: try fewer shards)", cpus.len())
                    } else {
                        String::new()
                    }
                );
                return stop_now(&node, &events, running, supervisor::EXIT_START_FAILED);
            }
        }
    }
    let also: String = node
        .listen_also
        .iter()
        .map(|a| format!(" and {a}"))
        .collect();
    // The one start line (at -v): what an operator checks a restart by.
    let placement = if pinned {
        let used: Vec<String> = cpus[..shards].iter().map(usize::to_string).collect();
        format!("pinned to CPUs {}", used.join(","))
    } else {
        format!("unpinned on {} CPUs", cpus.len())
    };
    log::info!(
        "ringcache {} started: listening on {addr}{also}, {shards} shard(s) {placement}, {:.1} MiB of item memory per shard; {}",
        env!("CARGO_PKG_VERSION"),
        node.config.memory_limit_bytes as f64 / shards as f64 / (1024.0 * 1024.0),
        node.config.start_flags()
    );

    if let (Some((dir, durable, tx, rx)), Some(cluster)) = (control_start, &node.cluster) {
        let cluster = cluster.clone();
        let control_node = node.clone();
        let report = events_tx.clone();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                supervisor::supervised("control".into(), report, || {
                    let node = control_node;
                    if let Some(cpu) = node.config.control_cpu {
                        pin_this_thread(cpu);
                    }
                    let failover = Duration::from_millis(node.config.failover_timeout_ms);
                    control::run(cluster, dir, durable, rx, tx, failover, &node.stop)
                })
            });
        match thread {
            Ok(_) => running += 1,
            Err(e) => {
                eprintln!("ringcache: cannot start the control thread: {e}");
                return stop_now(&node, &events, running, supervisor::EXIT_START_FAILED);
            }
        }
    }
    drop(events_tx);

    if let Some(listener) = metrics_listener {
        if let Err(e) = metrics::spawn(listener, addr, node.cluster.is_some()) {
            eprintln!("ringcache: cannot start the metrics thread: {e}");
            return stop_now(&node, &events, running, supervisor::EXIT_START_FAILED);
        }
    }

    notify::notify(notify::State::Ready);

    // Running: until a stop signal, or until a supervised thread fails.
    loop {
        match events.recv() {
            Ok(supervisor::Event::Signal(Signal::SIGHUP)) => reload_cluster(&node),
            Ok(supervisor::Event::Signal(signal)) => {
                log::info!("{signal:?}: stopping");
                break;
            }
            Ok(supervisor::Event::Started(_)) => {}
            Ok(supervisor::Event::Ended { thread, panic }) => {
                match panic {
                    Some(message) => eprintln!(
                        "ringcache: {thread} panicked: {message}; stopping the node (exit {})",
                        supervisor::EXIT_THREAD_FAILED
                    ),
                    None => eprintln!(
                        "ringcache: {thread} ended while the node was running; stopping the node (exit {})",
                        supervisor::EXIT_THREAD_FAILED
                    ),
                }
                return stop_now(&node, &events, running - 1, supervisor::EXIT_THREAD_FAILED);
            }
            Err(_) => {
                eprintln!("ringcache: the signal thread is gone; stopping the node");
                break;
            }
        }
    }
    notify::notify(notify::State::Stopping);
    node.stop.store(true, Ordering::Release);
    let mut failed = false;
    let left =
        supervisor::wait_for_threads(&events, running, supervisor::STOP_PATIENCE, &mut failed);
    if left > 0 {
        log::warn!(
            "{left} thread(s) did not stop within {} s: exiting without them",
            supervisor::STOP_PATIENCE.as_secs()
        );
    }
    if failed {
        supervisor::EXIT_THREAD_FAILED
    } else {
        0
    }
}

/// Stops the node after a failure (or a stop signal during start-up): every
/// thread is told to stop and given [`supervisor::FAILURE_STOP_GRACE`]; the
/// caller then exits with `code` whether or not they have ended.
fn stop_now(
    node: &Node,
    events: &mpsc::Receiver<supervisor::Event>,
    running: usize,
    code: i32,
) -> i32 {
    notify::notify(notify::State::Stopping);
    node.stop.store(true, Ordering::Release);
    let mut failed = false;
    let left =
        supervisor::wait_for_threads(events, running, supervisor::FAILURE_STOP_GRACE, &mut failed);
    if left > 0 {
        log::warn!("{left} thread(s) did not stop in time: exiting without them");
    }
    code
}

/// The body of shard `id`'s thread: its executor, running [`shard::run`].
#[allow(clippy::too_many_arguments)]
fn run_shard(
    id: usize,
    node: Arc<Node>,
    addr: SocketAddr,
    links: shard::ShardLinks,
    started: shard::Started,
    placement: Placement,
    spin: Duration,
    fault: Option<supervisor::TestFault>,
) {
    if fault == Some(supervisor::TestFault::Stall { shard: id }) {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let built = std::panic::catch_unwind(|| {
        LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{id}"))
            .io_memory(IO_MEMORY_BYTES)
            .spin_before_park(spin)
            .make()
    });
    let executor = match built {
        Ok(Ok(executor)) => executor,
        Ok(Err(e)) => {
            let _ = started.send(Err(explain_executor_error(&e)));
            return;
        }
        Err(panic) => {
            let text = supervisor::panic_text(panic.as_ref());
            let _ = started.send(Err(explain_executor_error(&text)));
            return;
        }
    };
    executor.run(async move {
        if let Some(supervisor::TestFault::Panic { shard, after_ms }) = fault {
            if shard == id {
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(after_ms)).await;
                    panic!("test fault: shard {id} panics {after_ms} ms after start");
                })
                .detach();
            }
        }
        shard::run(id as u32, node, addr, links, started).await
    });
}

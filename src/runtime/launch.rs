//! Starting and stopping the node: what is checked before any thread starts,
//! the shard threads and the channels between them, the control thread, and
//! the main thread's wait for a stop signal or a failure (see [`supervisor`]).
//!
//! Does I/O: threads, signals, and the listening addresses checked free.
//!
//! Top layer: may import every other module; none imports it.

use super::{
    allowed_cpus, check_port_free, doorbell::Doorbell, explain_executor_error, listen_addr,
    load_cluster, messages::ControlInput, metrics, notify, pin_this_thread, reload_cluster, shard,
    supervisor, tls, watch, Node, Restart, CLOCK_START_SECS, LISTEN_BACKLOG_SET,
};
use crate::cli::Config;
use crate::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
use crate::limits::{IO_MEMORY_BYTES, SHARD_CHANNEL_CAPACITY};
use crate::protocol::ascii_auth::AuthFile;
use crate::runtime::{cluster, control};
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::signal::{SigSet, Signal};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the checks before start-up found; no thread runs yet.
struct Prepared {
    parts: NodeParts,
    restart: Restart,
    /// The CPUs this process may use.
    cpus: Vec<usize>,
    shards: usize,
    /// Each shard has a CPU of its own.
    pinned: bool,
    /// The client address every shard listens on.
    addr: SocketAddr,
    metrics_listener: Option<TcpListener>,
    /// SIGINT, SIGTERM and SIGHUP, blocked in this thread (and so in the
    /// threads it starts).
    stop_signals: SigSet,
}

/// What the node is made of besides its configuration (see [`Node`]).
struct NodeParts {
    cluster: Option<Arc<cluster::ClusterNode>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    ascii_auth: Option<AuthFile>,
    sasl_users: Option<AuthFile>,
    listen_also: Vec<SocketAddr>,
}

/// With `--data-dir`: what the control thread starts from.
struct ControlStart {
    dir: std::path::PathBuf,
    restart: Restart,
    tx: mpsc::SyncSender<ControlInput>,
    rx: mpsc::Receiver<ControlInput>,
}

/// An exit code, once the node has been stopped after a failure or a signal
/// (see [`stop_now`]).
type Stopped = i32;

/// Runs the node until SIGINT or SIGTERM, or until a supervised thread fails.
/// Returns the process exit code (see [`supervisor`]); the caller exits with it
/// at once, so threads still running then do not hold the process.
pub fn run(config: Config) -> i32 {
    LISTEN_BACKLOG_SET.store(config.listen_backlog, Ordering::Relaxed);
    let Prepared {
        parts,
        restart,
        cpus,
        shards,
        pinned,
        addr,
        metrics_listener,
        stop_signals,
    } = match prepare(&config) {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("ringcache: {message}");
            return 1;
        }
    };
    let doorbells = match (0..shards)
        .map(|_| Doorbell::new(shards).map(Arc::new))
        .collect()
    {
        Ok(doorbells) => doorbells,
        Err(e) => {
            eprintln!("ringcache: cannot make the shards' doorbells (eventfd): {e}");
            return 1;
        }
    };
    let (node, control_start) = new_node(config, shards, parts, restart, doorbells);
    let links = shard_links(shards);

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
    let shard_cpus = pinned.then_some(&cpus[..]);
    let shards_started = spawn_shards(
        &node, &events, links, addr, shard_cpus, started_tx, &events_tx, fault,
    );
    let mut running = match shards_started {
        Ok(running) => running,
        Err(code) => return code,
    };
    if let Err(code) = await_shards(&node, &events, &mut running, cpus.len()) {
        return code;
    }
    log_started(&node, addr, pinned, &cpus);
    if let Err(code) = spawn_control(&node, &events, &mut running, control_start, events_tx) {
        return code;
    }
    if let Err(code) = spawn_metrics(&node, &events, running, metrics_listener, addr) {
        return code;
    }
    notify::notify(notify::State::Ready);
    if let Err(code) = wait_for_stop(&node, &events, running) {
        return code;
    }
    stop(&node, &events, running)
}

/// Everything checked before any thread starts: the cluster, TLS and `-Y`
/// settings, the CPUs and shards, the listening addresses (free), the metrics
/// port (bound), and the stop signals (blocked). Err: why the node cannot start.
fn prepare(config: &Config) -> Result<Prepared, String> {
    let (cluster, restart) = match load_cluster(config)? {
        Some((cluster, restart)) => (Some(cluster), restart),
        None => (None, None),
    };
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let users = |path: &std::path::Path, flag: &str| {
        std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|text| AuthFile::parse(&text))
            .map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let ascii_auth = config
        .auth_file
        .as_deref()
        .map(|path| users(path, "-Y"))
        .transpose()?;
    let sasl_users = config
        .sasl_pwdb
        .as_deref()
        .map(|path| users(path, "-S: MEMCACHED_SASL_PWDB"))
        .transpose()?;
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
    let (addr, listen_also) = listen_addrs(config, cluster.as_deref())?;
    let listening: Vec<SocketAddr> = std::iter::once(addr)
        .chain(listen_also.iter().copied())
        .collect();
    if let Some(warning) = config.open_to_unauthenticated_clients(&listening) {
        log::warn!("{warning}");
    }
    // Bound before any shard starts: a metrics port in use stops the node now.
    let metrics_listener = match &config.metrics {
        None => None,
        Some((host, port)) => Some(metrics::bind(host, *port)?),
    };
    Ok(Prepared {
        parts: NodeParts {
            cluster,
            tls,
            ascii_auth,
            sasl_users,
            listen_also,
        },
        restart,
        cpus,
        shards,
        pinned,
        addr,
        metrics_listener,
        stop_signals: block_stop_signals()?,
    })
}

/// The client address, and the other addresses of a `-l` list (a cluster
/// node's comes from its file), each resolved and checked free.
fn listen_addrs(
    config: &Config,
    cluster: Option<&cluster::ClusterNode>,
) -> Result<(SocketAddr, Vec<SocketAddr>), String> {
    let addr = match cluster.map(|c| c.own_addrs().0) {
        Some(addr) => check_port_free(addr).map(|_| addr),
        None => listen_addr(config).and_then(|addr| check_port_free(addr).map(|_| addr)),
    }?;
    let also = match (cluster, config.listen_also.is_empty()) {
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
    }?;
    Ok((addr, also))
}

/// Blocks the stop signals in this thread. Shards inherit this mask, so only
/// the main thread takes them.
fn block_stop_signals() -> Result<SigSet, String> {
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGINT);
    stop_signals.add(Signal::SIGTERM);
    // SIGHUP: a cluster node reads its cluster file again (see `reload_cluster`).
    stop_signals.add(Signal::SIGHUP);
    stop_signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    Ok(stop_signals)
}

/// The node every shard shares, and with `--data-dir` what its control
/// thread starts from.
fn new_node(
    config: Config,
    shards: usize,
    parts: NodeParts,
    restart: Restart,
    doorbells: Vec<Arc<Doorbell>>,
) -> (Arc<Node>, Option<ControlStart>) {
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
    if let (Some(_), Some(dir)) = (&parts.cluster, &config.data_dir) {
        let (tx, rx) = mpsc::sync_channel(crate::limits::CONTROL_QUEUE_DEPTH);
        control_start = Some(ControlStart {
            dir: dir.clone(),
            restart,
            tx,
            rx,
        });
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
        listen_also: parts.listen_also,
        config,
        cluster: parts.cluster,
        control: control_start.as_ref().map(|start| start.tx.clone()),
        tls: parts.tls,
        ascii_auth: parts.ascii_auth,
        sasl_users: parts.sasl_users,
        watchers: watch::Watchers::default(),
        doorbells,
    });
    (node, control_start)
}

/// The bounded channels between every pair of shards, one set per shard.
fn shard_links(shards: usize) -> Vec<shard::ShardLinks> {
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
    links
}

/// Starts one thread per shard, shard `id` on `cpus[id]` when pinned.
/// Returns how many run.
#[allow(clippy::too_many_arguments)]
fn spawn_shards(
    node: &Arc<Node>,
    events: &mpsc::Receiver<supervisor::Event>,
    links: Vec<shard::ShardLinks>,
    addr: SocketAddr,
    cpus: Option<&[usize]>,
    started_tx: shard::Started,
    events_tx: &mpsc::Sender<supervisor::Event>,
    fault: Option<supervisor::TestFault>,
) -> Result<usize, Stopped> {
    let mut running = 0;
    for (id, links) in links.into_iter().enumerate() {
        let placement = match cpus {
            Some(cpus) => Placement::Fixed(cpus[id]),
            None => Placement::Unbound,
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
                return Err(stop_now(
                    node,
                    events,
                    running,
                    supervisor::EXIT_START_FAILED,
                ));
            }
        }
    }
    Ok(running)
}

/// Start-up: every shard serves, or the node stops (a failure, a signal, or
/// the deadline), without waiting for ever on a shard that is stuck.
fn await_shards(
    node: &Node,
    events: &mpsc::Receiver<supervisor::Event>,
    running: &mut usize,
    cpu_count: usize,
) -> Result<(), Stopped> {
    let shards = node.shards;
    let deadline = Instant::now() + supervisor::SHARD_START_TIMEOUT;
    let mut serving = 0;
    while serving < shards {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(supervisor::Event::Started(Ok(_))) => serving += 1,
            Ok(supervisor::Event::Started(Err(message))) => {
                eprintln!("ringcache: {message}");
                return Err(stop_now(
                    node,
                    events,
                    *running,
                    supervisor::EXIT_START_FAILED,
                ));
            }
            Ok(supervisor::Event::Signal(Signal::SIGHUP)) => reload_cluster(node),
            Ok(supervisor::Event::Signal(signal)) => {
                log::warn!("{signal:?} during start-up: stopping");
                return Err(stop_now(node, events, *running, 0));
            }
            // A shard that cannot start says why on `started` and then ends.
            Ok(supervisor::Event::Ended { panic: None, .. }) => *running -= 1,
            Ok(supervisor::Event::Ended {
                thread,
                panic: Some(message),
            }) => {
                eprintln!(
                    "ringcache: {thread} panicked during start-up: {message}; stopping the node (exit {})",
                    supervisor::EXIT_THREAD_FAILED
                );
                let code = supervisor::EXIT_THREAD_FAILED;
                return Err(stop_now(node, events, *running - 1, code));
            }
            Err(_) => {
                eprintln!(
                    "ringcache: {} of {shards} shards did not start within {} s{}",
                    shards - serving,
                    supervisor::SHARD_START_TIMEOUT.as_secs(),
                    if shards > cpu_count {
                        format!(" (-t {shards} on {cpu_count} CPUs: try fewer shards)")
                    } else {
                        String::new()
                    }
                );
                return Err(stop_now(
                    node,
                    events,
                    *running,
                    supervisor::EXIT_START_FAILED,
                ));
            }
        }
    }
    Ok(())
}

/// The one start line (at -v): what an operator checks a restart by.
fn log_started(node: &Node, addr: SocketAddr, pinned: bool, cpus: &[usize]) {
    let shards = node.shards;
    let also: String = node
        .listen_also
        .iter()
        .map(|a| format!(" and {a}"))
        .collect();
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
}

/// With `--data-dir`: starts the control thread (consensus on the cluster
/// configuration, failure detection). `events_tx` is the main thread's last
/// sender, dropped here.
fn spawn_control(
    node: &Arc<Node>,
    events: &mpsc::Receiver<supervisor::Event>,
    running: &mut usize,
    control_start: Option<ControlStart>,
    events_tx: mpsc::Sender<supervisor::Event>,
) -> Result<(), Stopped> {
    let (Some(start), Some(cluster)) = (control_start, &node.cluster) else {
        return Ok(());
    };
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
                let ControlStart {
                    dir,
                    restart,
                    tx,
                    rx,
                } = start;
                control::run(cluster, dir, restart, rx, tx, failover, &node.stop)
            })
        });
    match thread {
        Ok(_) => *running += 1,
        Err(e) => {
            eprintln!("ringcache: cannot start the control thread: {e}");
            return Err(stop_now(
                node,
                events,
                *running,
                supervisor::EXIT_START_FAILED,
            ));
        }
    }
    Ok(())
}

/// `--metrics-port`: starts serving the metrics on the listener bound earlier.
fn spawn_metrics(
    node: &Node,
    events: &mpsc::Receiver<supervisor::Event>,
    running: usize,
    listener: Option<TcpListener>,
    addr: SocketAddr,
) -> Result<(), Stopped> {
    if let Some(listener) = listener {
        if let Err(e) = metrics::spawn(listener, addr, node.cluster.is_some()) {
            eprintln!("ringcache: cannot start the metrics thread: {e}");
            return Err(stop_now(
                node,
                events,
                running,
                supervisor::EXIT_START_FAILED,
            ));
        }
    }
    Ok(())
}

/// Running: until a stop signal, or until a supervised thread fails.
fn wait_for_stop(
    node: &Node,
    events: &mpsc::Receiver<supervisor::Event>,
    running: usize,
) -> Result<(), Stopped> {
    loop {
        match events.recv() {
            Ok(supervisor::Event::Signal(Signal::SIGHUP)) => reload_cluster(node),
            Ok(supervisor::Event::Signal(signal)) => {
                log::info!("{signal:?}: stopping");
                return Ok(());
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
                let code = supervisor::EXIT_THREAD_FAILED;
                return Err(stop_now(node, events, running - 1, code));
            }
            Err(_) => {
                eprintln!("ringcache: the signal thread is gone; stopping the node");
                return Ok(());
            }
        }
    }
}

/// Stops the node once told to (or once the signal thread is gone): every
/// thread is told to stop and given [`supervisor::STOP_PATIENCE`]. Returns the
/// exit code.
fn stop(node: &Node, events: &mpsc::Receiver<supervisor::Event>, running: usize) -> i32 {
    notify::notify(notify::State::Stopping);
    node.stop.store(true, Ordering::Release);
    let mut failed = false;
    let left =
        supervisor::wait_for_threads(events, running, supervisor::STOP_PATIENCE, &mut failed);
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

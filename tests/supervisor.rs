//! One supervisor: a shard that panics brings the whole node down with a
//! non-zero exit (so the service manager restarts it), and SIGTERM stops the
//! node at every stage, start-up included. Faults are injected with the
//! test-only `RINGCACHE_TEST_FAULT` (see `runtime::supervisor::TestFault`).

mod support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::{Client, STARTUP_TIMEOUT};

/// How long after a shard's panic the node may take to exit: the supervisor
/// gives the other threads 1 s, the rest is slack for a loaded machine.
const EXIT_AFTER_PANIC_MAX: Duration = Duration::from_secs(5);

/// How long after SIGTERM a node may take to exit, at any stage.
const EXIT_AFTER_SIGTERM_MAX: Duration = Duration::from_secs(12);

/// The exit status the README documents for a thread that failed.
const EXIT_THREAD_FAILED: i32 = 70;

/// When the injected panic fires, counted from the shard's start.
const PANIC_AFTER_MS: u64 = 1_000;

/// A ringcache started for one test: the process, its port, and the file its
/// output (at `-v`, so "listening on" is there once every shard serves) goes to.
struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// Starts ringcache on a free port with `args` and the test fault `fault`.
fn start(args: &[&str], fault: Option<&str>) -> Node {
    let port = support::free_port();
    let port_text = port.to_string();
    let log = std::env::temp_dir().join(format!("ringcache-supervisor-{port}.log"));
    let file = File::create(&log).expect("create the log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcache"));
    command
        .args(["-l", "127.0.0.1", "-p", &port_text, "-v"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    if let Some(fault) = fault {
        command.env("RINGCACHE_TEST_FAULT", fault);
    }
    let child = command.spawn().expect("run ringcache");
    Node { child, port, log }
}

impl Node {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `patience` until every shard serves.
    fn ready_within(&mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if self.output().contains("listening on") {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Waits up to `patience` for `child` to exit.
fn exit_within(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll ringcache") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal ringcache");
}

#[test]
fn a_panicking_shard_brings_the_node_down_with_exit_status_70() {
    let fault = format!("panic:1:{PANIC_AFTER_MS}");
    let mut node = start(&["-t", "2"], Some(&fault));
    assert!(
        node.ready_within(STARTUP_TIMEOUT),
        "the node did not start: {}",
        node.output()
    );
    // The shard started before the node accepted, so it panics by this time.
    let panicked_by = Instant::now() + Duration::from_millis(PANIC_AFTER_MS);
    let status = exit_within(
        &mut node.child,
        Duration::from_millis(PANIC_AFTER_MS) + EXIT_AFTER_PANIC_MAX,
    );
    let stderr = node.output();
    let Some(status) = status else {
        panic!("the node still runs {EXIT_AFTER_PANIC_MAX:?} after shard 1 panicked: {stderr}");
    };
    let late = Instant::now().saturating_duration_since(panicked_by);
    assert!(
        late < EXIT_AFTER_PANIC_MAX,
        "exited {late:?} after the panic"
    );
    assert_eq!(
        status.code(),
        Some(EXIT_THREAD_FAILED),
        "{status}: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ringcache: shard-1 panicked"))
        .unwrap_or_else(|| panic!("no line names shard-1 and its panic: {stderr}"));
    assert!(line.contains("test fault"), "the message is named: {line}");
}

#[test]
fn sigterm_during_start_up_stops_the_node() {
    // Shard 1 never starts, so the node waits in start-up until stopped.
    let mut node = start(&["-t", "2"], Some("stall:1"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        node.child.try_wait().expect("poll ringcache").is_none(),
        "the node exited by itself: {}",
        node.output()
    );
    assert!(!node.output().contains("listening on"), "{}", node.output());
    let sent = Instant::now();
    sigterm(&node.child);
    let status = exit_within(&mut node.child, EXIT_AFTER_SIGTERM_MAX);
    let took = sent.elapsed();
    let stderr = node.output();
    assert!(
        status.is_some(),
        "the node ignored SIGTERM during start-up for {took:?}: {stderr}"
    );
}

#[test]
fn sixty_four_shards_on_few_cpus_start_and_serve_or_fail_and_either_way_stop_on_sigterm() {
    let mut node = start(&["-t", "64"], None);
    if node.ready_within(STARTUP_TIMEOUT) {
        let mut client = Client::connect(node.port);
        for i in 0..64 {
            let key = format!("sixty-four-{i}");
            client.set(&key, b"shards");
            assert_eq!(client.get(&key).as_deref(), Some(&b"shards"[..]));
        }
    }
    let sent = Instant::now();
    if node.child.try_wait().expect("poll ringcache").is_none() {
        sigterm(&node.child);
    }
    let status = exit_within(&mut node.child, EXIT_AFTER_SIGTERM_MAX);
    let took = sent.elapsed();
    let stderr = node.output();
    let Some(status) = status else {
        panic!("-t 64 did not stop within {took:?} of SIGTERM: {stderr}");
    };
    if !status.success() {
        assert!(
            stderr.lines().any(|l| l.starts_with("ringcache: ")),
            "a failed start says why: {stderr}"
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 64 {
        assert!(
            stderr.contains("more shards than"),
            "-t above the CPU count is warned about: {stderr}"
        );
    }
}

//! What a node logs, by the policy in the README (*Logs*): one line per start
//! and per stop, none repeated per shard, and client protocol errors at `-vv`
//! only. Real processes, their stderr read back.

mod support;

use std::time::{Duration, Instant};
use support::Server;

/// How long a stopping server may take before the test calls it hung.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// How long a started node may take to log its start line once it accepts.
const LOG_PATIENCE: Duration = Duration::from_secs(10);

const SIGTERM: i32 = 15;

/// Waits until the node's output contains `text`, and returns the output.
fn wait_for_log(server: &Server, text: &str) -> String {
    let deadline = Instant::now() + LOG_PATIENCE;
    loop {
        let log = server.log();
        if log.contains(text) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a line no memcached command starts with, and one with a bad length,
/// and reads both answers back.
fn send_protocol_errors(server: &Server) {
    let mut client = server.connect();
    let reply = client.call(b"bogus-command\r\n", b"\r\n");
    assert_eq!(reply, b"ERROR\r\n");
    let reply = client.call(b"set k 0 0 notanumber\r\n", b"\r\n");
    assert_eq!(reply, b"CLIENT_ERROR bad command line format\r\n");
}

#[test]
fn a_node_at_dash_vv_logs_one_start_line_one_stop_line_and_each_protocol_error() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut server = Server::ringcache(&["-t", "2", "-m", "32", "-vv"]);
    let log = wait_for_log(&server, " started: ");
    let starts: Vec<&str> = log.lines().filter(|l| l.contains(" started: ")).collect();
    assert_eq!(starts.len(), 1, "one start line, not one per shard:\n{log}");
    let start = starts[0];
    for part in [
        format!("ringcache {}", env!("CARGO_PKG_VERSION")),
        format!("listening on 127.0.0.1:{}", server.port),
        "2 shard(s)".to_string(),
        "16.0 MiB of item memory per shard".to_string(),
        "-m 32m -c 1024".to_string(),
    ] {
        assert!(start.contains(&part), "{part:?} in {start}");
    }
    assert!(
        start.contains("pinned to CPUs") || start.contains("unpinned"),
        "the start line says how shards are placed: {start}"
    );

    send_protocol_errors(&server);
    let log = wait_for_log(&server, "notanumber");
    assert!(
        log.contains("protocol error: \"bogus-command\" answered \"ERROR\""),
        "an unknown command is logged at -vv:\n{log}"
    );
    assert!(
        log.contains(
            "protocol error: \"set k 0 0 notanumber\" answered \"CLIENT_ERROR bad command line format\""
        ),
        "a malformed set is logged at -vv:\n{log}"
    );

    let status = server
        .signal_and_wait(SIGTERM, STOP_PATIENCE)
        .expect("the node did not stop on SIGTERM");
    assert!(status.success(), "exited with {status}");
    let log = server.log();
    let stops = log
        .lines()
        .filter(|l| l.contains("SIGTERM: stopping"))
        .count();
    assert_eq!(stops, 1, "one stop line:\n{log}");
    // Nothing else may repeat once per shard: the libraries' debug lines
    // (one per shard and file at exit) stay out of -vv.
    assert!(
        !log.contains("glommio"),
        "the libraries' lines stay out of -vv:\n{log}"
    );
    let lines: Vec<&str> = log.lines().map(strip_timestamp).collect();
    for line in &lines {
        let twice = lines.iter().filter(|l| *l == line).count();
        assert_eq!(twice, 1, "a line logged {twice} times:\n{log}");
    }
}

#[test]
fn a_node_at_the_default_verbosity_logs_no_protocol_errors_and_no_start_line() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut server = Server::ringcache(&["-t", "2"]);
    send_protocol_errors(&server);
    let status = server
        .signal_and_wait(SIGTERM, STOP_PATIENCE)
        .expect("the node did not stop on SIGTERM");
    assert!(status.success(), "exited with {status}");
    let log = server.log();
    assert!(
        !log.contains("protocol error"),
        "protocol errors are for -vv:\n{log}"
    );
    assert!(
        !log.contains(" started: ") && !log.contains("stopping"),
        "start and stop lines are info (-v):\n{log}"
    );
}

/// A log line less env_logger's `[timestamp LEVEL target]` prefix, so that
/// two lines that say the same thing compare equal.
fn strip_timestamp(line: &str) -> &str {
    match line.split_once("] ") {
        Some((_, rest)) if line.starts_with('[') => rest,
        _ => line,
    }
}

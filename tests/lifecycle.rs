//! Starting and stopping a node: clean stops on SIGTERM, SIGINT and `shutdown`,
//! and one clear line and a non-zero exit for each start-up failure.

mod support;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;
use support::Server;

/// How long a stopping server may take before the test calls it hung.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Runs the binary to completion with `args` (it is expected to refuse to start).
fn run_to_exit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(args)
        .output()
        .expect("run ringcache")
}

fn stops_cleanly_on(signal: i32, threads: &str) {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut server = Server::ringcache(&["-t", threads]);
    let mut idle = server.connect();
    idle.set("before-stop", b"v");
    let status = server
        .signal_and_wait(signal, STOP_PATIENCE)
        .unwrap_or_else(|| panic!("{} did not stop on signal {signal}", server.name));
    assert!(status.success(), "{} exited with {status}", server.name);
    assert!(
        idle.is_closed_within(Duration::from_secs(5)),
        "the idle connection was not closed"
    );
}

#[test]
fn sigterm_stops_a_node_with_exit_status_0() {
    stops_cleanly_on(SIGTERM, "1");
    stops_cleanly_on(SIGTERM, "2");
}

#[test]
fn sigint_stops_a_node_with_exit_status_0() {
    stops_cleanly_on(SIGINT, "2");
}

#[test]
fn shutdown_command_stops_a_node_started_with_dash_a() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut server = Server::ringcache(&["-t", "2", "-A"]);
    let mut client = server.connect();
    client.send(b"shutdown\r\n");
    let status = server
        .wait_for_exit(STOP_PATIENCE)
        .expect("the node did not stop after `shutdown`");
    assert!(status.success(), "exited with {status}");
}

#[test]
fn a_port_in_use_is_named_and_the_node_exits_non_zero() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let out = run_to_exit(&["-l", "127.0.0.1", "-p", &port]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("already in use"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_memlock_limit_too_small_for_io_uring_is_named_and_the_node_exits_non_zero() {
    let port = support::free_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["-l", "127.0.0.1", "-p", &port, "-t", "1"])
        .limit_memlock(64 * 1024)
        .output()
        .expect("run ringcache");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started despite a 64 KiB memlock limit"
    );
    assert!(stderr.contains("memlock"), "{stderr}");
    assert!(
        stderr.contains("LimitMEMLOCK"),
        "the fix is named: {stderr}"
    );
}

/// memcached's tooling passes `-U PORT`: the node starts on TCP and says UDP
/// is not served.
#[test]
fn a_udp_port_is_accepted_with_a_note_that_udp_is_not_served() {
    let server = Server::ringcache(&["-U", "11211"]);
    let mut client = server.connect();
    client.set("udp", b"tcp");
    assert_eq!(client.get("udp").as_deref(), Some(&b"tcp"[..]));
    if !support::ringcache_stands_in_for_memcached() {
        assert!(
            server.log().contains("UDP is not served"),
            "{}",
            server.log()
        );
    }
}

#[test]
fn version_and_help_flags_answer_and_exit_0() {
    let out = run_to_exit(&["-V"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ringcache "));
    let out = run_to_exit(&["-h"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--listen",
        "--memory-limit",
        "--conn-limit",
        "--threads",
        "--max-item-size",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// Sets RLIMIT_MEMLOCK in the child before it runs.
trait LimitMemlock {
    fn limit_memlock(&mut self, bytes: u64) -> &mut Self;
}

impl LimitMemlock for Command {
    fn limit_memlock(&mut self, bytes: u64) -> &mut Self {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            self.pre_exec(move || {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_MEMLOCK,
                    bytes,
                    bytes,
                )
                .map_err(std::io::Error::from)
            })
        }
    }
}

#[test]
fn a_node_tells_the_service_manager_when_it_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let dir = support::scratch_dir("notify");
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let manager = UnixDatagram::bind(&path).expect("bind a fake NOTIFY_SOCKET");
    manager
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    let port = support::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["-l", "127.0.0.1", "-p", &port, "-t", "2"])
        .env("NOTIFY_SOCKET", &path)
        .spawn()
        .expect("start ringcache");
    let mut buf = [0u8; 256];
    let n = manager.recv(&mut buf).expect("no READY from the node");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.contains("READY=1\n"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}\n", child.id())),
        "{ready}"
    );
    // Ready means serving.
    let mut client = support::Client::connect(port.parse().unwrap());
    assert!(client
        .call(b"version\r\n", b"\r\n")
        .starts_with(b"VERSION "));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = manager.recv(&mut buf).expect("no STOPPING from the node");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cluster file that names no acceptors describes a cluster in which no node
/// runs Paxos: a node serves it, and one started with `--data-dir` (which runs
/// Paxos over the configuration) refuses it in one line.
#[test]
fn a_cluster_file_without_acceptors_serves_and_is_refused_with_a_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::scratch_dir("no-acceptors");
    let secret = dir.join("cluster.secret");
    std::fs::write(
        &secret,
        "bm90LWEtcmFuZG9tLXNlY3JldC1idXQtbG9uZy1lbm91Z2g=\n",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = support::free_ports(2);
    let shard_port = port + 1;
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "replicas = 1\nsecret_file = \"cluster.secret\"\n\n[[node]]\nid = 1\naddr = \"127.0.0.1:{port}\"\nshards = [\"127.0.0.1:{shard_port}\"]\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let args = ["--cluster", file, "--node-id", "1"];
    {
        let node = Server::ringcache_at("127.0.0.1", port, &args);
        let mut client = node.connect();
        client.set("k", b"v");
        assert_eq!(client.get("k").as_deref(), Some(&b"v"[..]));
    }
    let data_dir = dir.join("data");
    let out = run_to_exit(&[&args[..], &["--data-dir", data_dir.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no acceptors"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

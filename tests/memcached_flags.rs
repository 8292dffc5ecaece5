//! memcached's command-line flags, black box: ringcache started the way a
//! memcached fleet starts memcached (Debian's /etc/memcached.conf), and each
//! flag at the edges of what it takes (does I/O: real processes, real sockets).

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{free_port, show, Client, Server, REPLY_TIMEOUT};

/// The exit status of a command line ringcache cannot serve.
const EXIT_USAGE: i32 = 64;

/// How long a refused command line may take to be refused.
const REFUSAL_PATIENCE: Duration = Duration::from_secs(10);

/// Runs ringcache with `args` and waits for it to exit (a refused command line).
fn run(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringcache");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(REFUSAL_PATIENCE);
        // Still running: it served instead of refusing; end it so the test fails.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let output = child.wait_with_output().expect("wait for ringcache");
    drop(watchdog);
    output
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `/proc/PID/status` line's first field, e.g. `Uid:` (the real uid).
fn proc_status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

fn stat(client: &mut Client, which: &str, name: &str) -> Option<String> {
    client
        .stats(which)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[test]
fn debians_default_memcached_conf_serves_drops_root_and_keeps_a_pid_file() {
    // /etc/memcached.conf as Debian ships it, less -d (systemd runs the
    // server in the foreground) and logfile (read by the init script).
    let port = free_port();
    let pid_path = std::env::temp_dir().join(format!("ringcache-flags-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_path);
    let port_text = port.to_string();
    let pid_text = pid_path.to_str().expect("utf-8 temp path");
    let root = nix::unistd::Uid::effective().is_root();
    let has_memcache_user = nix::unistd::User::from_name("memcache")
        .ok()
        .flatten()
        .is_some();
    let user = if has_memcache_user {
        "memcache"
    } else {
        "nobody"
    };
    let args = [
        "-m",
        "64",
        "-p",
        &port_text,
        "-u",
        user,
        "-l",
        "127.0.0.1",
        "-P",
        pid_text,
        "-t",
        "2",
    ];
    let mut server = Server::ringcache_at("127.0.0.1", port, &args);
    let mut client = server.connect();
    assert_eq!(
        client.call(b"set debian 0 0 2\r\nok\r\nget debian\r\n", b"END\r\n"),
        b"STORED\r\nVALUE debian 0 2\r\nok\r\nEND\r\n"
    );
    assert_eq!(
        stat(&mut client, "settings", "maxbytes").as_deref(),
        Some("67108864")
    );
    let written = std::fs::read_to_string(&pid_path).expect("the pid file is written");
    assert_eq!(written.trim(), server.pid().to_string());
    if root {
        let uid = nix::unistd::User::from_name(user).unwrap().unwrap().uid;
        assert_eq!(proc_status_field(server.pid(), "Uid:"), uid.to_string());
    } else {
        assert!(
            server.log().contains("not started as root"),
            "{}",
            server.log()
        );
    }
    drop(client);
    let status = server
        .signal_and_wait(15, Duration::from_secs(15))
        .expect("SIGTERM stops the node");
    assert!(status.success(), "{status}");
    assert!(
        !pid_path.exists(),
        "the pid file is removed at a clean exit"
    );
}

#[test]
fn daemonize_is_refused_pointing_at_the_systemd_unit() {
    let output = run(&["-d", "-p", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("tuning/ringcache.service"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn flags_a_client_would_be_misled_by_are_refused_with_the_reason() {
    for (args, why) in [
        (&["-s", "/tmp/ringcache.sock"][..], "unix sockets"),
        (&["-S"], "SASL"),
        (
            &["-Y", "/etc/memcached-auth", "-B", "binary"],
            "ascii authentication",
        ),
        (&["-Z"], "ssl_chain_cert"),
        (&["-o", "meta_response_old"], "refused"),
        (&["-o", "no_such_thing"], "Illegal suboption"),
        (&["-m", "0"], "at least 1 megabyte"),
        (&["-m", "1023k"], "at least 1 megabyte"),
        (&["-m", "2t"], "at most 1t"),
        (&["-B", "http"], "binding protocol"),
        (&["-b", "0"], "backlog"),
        (&["-o", "hashpower=11"], "12 to 64"),
        (&["-R", "0"], "greater than 0"),
    ] {
        let output = run(args);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

/// memcached's `-l a,b`: the node listens on every address of the list, on
/// `-p`'s port unless an entry names its own, and serves one store on all.
#[test]
fn every_address_of_a_listen_list_is_served() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let base = support::free_ports(2);
    let (port, other) = (base.to_string(), base + 1);
    let list = format!("127.0.0.1,127.0.0.2,127.0.0.3:{other}");
    let server = Server::ringcache_at("127.0.0.1", base, &["-l", &list, "-p", &port, "-t", "2"]);
    let mut first = Client::connect_at("127.0.0.1", base);
    first.set("listed", b"everywhere");
    for (ip, port) in [("127.0.0.2", base), ("127.0.0.3", other)] {
        let mut client = Client::connect_at(ip, port);
        assert_eq!(
            client.get("listed").as_deref(),
            Some(&b"everywhere"[..]),
            "through {ip}:{port}: {}",
            server.log()
        );
    }
}

#[test]
fn help_lists_the_cluster_subcommand_and_its_help_succeeds() {
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("cluster"));
    let cluster = run(&["cluster", "--help"]);
    assert!(cluster.status.success(), "{}", stderr_of(&cluster));
    assert!(String::from_utf8_lossy(&cluster.stdout).contains("usage: ringcache cluster"));
    let license = run(&["-i"]);
    assert!(license.status.success());
    assert!(String::from_utf8_lossy(&license.stdout).contains("MIT License"));
}

#[test]
fn flags_that_do_not_apply_are_accepted_and_each_logged_once() {
    let args = [
        "-U",
        "11211",
        "-a",
        "0700",
        "-R",
        "20",
        "-C",
        "-f",
        "1.25",
        "-n",
        "48",
        "-L",
        "-D",
        ":",
        "-X",
        "-W",
        "-e",
        "/dev/shm/none",
        "-o",
        "modern,hashpower=16,idle_timeout=600",
        "-o",
        "lru_crawler,slab_chunk_max=512",
        "-m",
        "64m",
        "-r",
    ];
    let server = Server::ringcache(&args);
    let mut client = server.connect();
    assert_eq!(client.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
    let log = server.log();
    for flag in [
        "-U 11211:",
        "-a 0700:",
        "-R 20:",
        "-C:",
        "-f 1.25:",
        "-n 48:",
        "-L:",
        "-D ::",
        "-X:",
        "-W:",
        "-e /dev/shm/none:",
        "-o hashpower=16:",
        "-o idle_timeout=600:",
        "-o lru_crawler:",
        "-o slab_chunk_max=512:",
    ] {
        assert_eq!(log.matches(flag).count(), 1, "{flag} in:\n{log}");
    }
    assert!(!log.contains("-o modern"), "{log}");
    // -r: the core file limit is raised to its hard limit.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(fields[4], fields[5], "{core}");
}

#[test]
fn protocol_backlog_and_flush_flags_show_in_stats_settings() {
    let server = Server::ringcache(&["-B", "ascii", "-b", "64", "-F"]);
    let mut client = server.connect();
    for (name, value) in [
        ("binding_protocol", "ascii"),
        ("tcp_backlog", "64"),
        ("flush_enabled", "no"),
        ("maxconns_fast", "yes"),
    ] {
        assert_eq!(
            stat(&mut client, "settings", name).as_deref(),
            Some(value),
            "{name}"
        );
    }
    let default = Server::ringcache(&[]);
    let mut client = default.connect();
    assert_eq!(
        stat(&mut client, "settings", "binding_protocol").as_deref(),
        Some("auto-negotiate")
    );
    assert_eq!(
        stat(&mut client, "settings", "flush_enabled").as_deref(),
        Some("yes")
    );
}

/// A binary request header with no key, extras or body.
fn binary_request(opcode: u8, opaque: u32) -> Vec<u8> {
    let mut h = vec![0u8; 24];
    h[0] = 0x80;
    h[1] = opcode;
    h[12..16].copy_from_slice(&opaque.to_be_bytes());
    h
}

const BINARY_NOOP: u8 = 0x0a;
const BINARY_FLUSH: u8 = 0x08;
const BINARY_FLUSHQ: u8 = 0x18;

#[test]
fn binding_protocol_and_binary_flush_under_dash_f_answer_as_memcached() {
    let mut servers = vec![Server::ringcache(&["-B", "binary", "-F"])];
    servers.extend(Server::memcached(&["-B", "binary", "-F"]));
    let mut replies = Vec::new();
    for server in &servers {
        let mut client = server.connect();
        let request = [
            binary_request(BINARY_FLUSH, 7),
            binary_request(BINARY_FLUSHQ, 8),
            binary_request(BINARY_NOOP, 9),
        ]
        .concat();
        client.send(&request);
        // Two auth errors ("Auth failure.", 13 bytes each) and the noop.
        let reply = client
            .read_exact_n(2 * (24 + 13) + 24, REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("[{}] {}", server.name, show(e.received())));
        assert_eq!(
            reply[6..8],
            [0x00, 0x20],
            "[{}] {}",
            server.name,
            show(&reply)
        );
        replies.push(reply);
        // -B binary: a text request is a bad magic byte once a header's worth
        // (24 bytes) has come, and the connection closes.
        let mut text = server.connect();
        text.send(b"get twenty_four_bytes_\r\n");
        assert!(text.is_closed_within(REPLY_TIMEOUT), "[{}]", server.name);
    }
    assert!(replies.windows(2).all(|w| w[0] == w[1]), "{replies:?}");
    let ascii = Server::ringcache(&["-B", "ascii"]);
    let mut client = ascii.connect();
    // -B ascii: the binary magic byte is text, and not a command.
    client.send(&[binary_request(BINARY_NOOP, 1), b"\r\n".to_vec()].concat());
    let reply = client
        .read_until(b"\r\n", REPLY_TIMEOUT)
        .unwrap_or_default();
    assert_eq!(reply, b"ERROR\r\n", "{}", show(&reply));
}

//! Members only: a connection that has not proved it holds the cluster secret
//! gets `ERROR` for every `rc` line (and keeps serving clients), an admin
//! without the secret changes nothing, a node with another secret can neither
//! join nor be replicated to, a member's connection takes only frames with a
//! right MAC after the handshake, and a secret others may read is refused at start
//! (does I/O: real processes on loopback, and the handshake of
//! `ringcache::cluster::auth` spoken by the test).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ringcache::cluster::auth::{ClientHandshake, Secret, NONCE_BYTES, SECRET_FILE_NAME};
use ringcache::cluster::codec;
use ringcache::cluster::config::{ClusterConfig, WriteAck};
use ringcache::cluster::seal::{Sealing, FRAME_LEN_BYTES};
use ringcache::runtime::sealed::Sealed;
use support::{free_port, show, Client, Server, REPLY_TIMEOUT};

/// How long a node may take to see its peers.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a fresh secret to `path` with `mode`.
fn write_secret(path: &Path, mode: u32) -> Secret {
    let bytes: [u8; 32] = ringcache::runtime::auth::random_bytes().expect("random bytes");
    let secret = Secret::from_bytes(&bytes);
    std::fs::write(path, secret.file_text()).expect("write the secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    secret
}

/// A one-node-per-entry cluster file on `ips` (one shard each), `replicas`
/// copies, `write_ack = "one"`, node 1 the only acceptor; returns its text
/// and the client ports.
fn cluster_file(ips: &[&str], replicas: usize) -> (String, Vec<u16>) {
    let mut text = format!("replicas = {replicas}\nwrite_ack = \"quorum\"\nacceptors = [1]\n");
    let mut ports = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let (port, shard) = (free_port(), free_port());
        ports.push(port);
        text.push_str(&format!(
            "\n[[node]]\nid = {}\naddr = \"{ip}:{port}\"\nshards = [\"{ip}:{shard}\"]\n",
            i + 1
        ));
    }
    (text, ports)
}

fn stats_cluster(ip: &str, port: u16) -> HashMap<String, String> {
    Client::connect_at(ip, port)
        .stats("cluster")
        .into_iter()
        .collect()
}

/// Node `id` of the cluster `file` at `(ip, port)`, with the secret at
/// `secret` and `extra` flags.
fn start_file_node(
    file: &Path,
    id: usize,
    (ip, port): (&str, u16),
    secret: &Path,
    extra: &[&str],
) -> Server {
    let (file, id, secret) = (
        file.to_string_lossy(),
        id.to_string(),
        secret.to_string_lossy(),
    );
    let mut args = vec![
        "--cluster",
        &file,
        "--node-id",
        &id,
        "--cluster-secret",
        &secret,
    ];
    args.extend_from_slice(extra);
    Server::ringcache_at(ip, port, &args)
}

/// Sets `k0` .. `k<n-1>` through `client` and reads each back.
fn write_and_read_back(client: &mut Client, n: usize) {
    for i in 0..n {
        client.set(&format!("k{i}"), b"v");
    }
    for i in 0..n {
        assert_eq!(
            client.get(&format!("k{i}")).as_deref(),
            Some(&b"v"[..]),
            "k{i}"
        );
    }
}

/// The items the node of `client` holds.
fn curr_items(client: &mut Client) -> u64 {
    client.stat_u64("", "curr_items").expect("curr_items")
}

fn admin(node: &str, extra: &[&str], args: &[&str]) -> (bool, String) {
    let mut argv = vec!["--node", node];
    argv.extend_from_slice(extra);
    argv.extend_from_slice(args);
    support::ringcache_cluster(&argv)
}

/// One node of a cluster file, with Paxos, its secret in its data directory.
fn start_one_node(dir: &Path, ip: &str) -> (Server, u16, ClusterConfig) {
    let (text, ports) = cluster_file(&[ip], 1);
    let file = dir.join("cluster.toml");
    std::fs::write(&file, &text).expect("write the cluster file");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the data directory");
    write_secret(&data.join(SECRET_FILE_NAME), 0o600);
    let args = [
        "--cluster",
        &file.to_string_lossy(),
        "--node-id",
        "1",
        "--data-dir",
        &data.to_string_lossy(),
    ];
    let server = Server::ringcache_at(ip, ports[0], &args);
    let config = ClusterConfig::from_file_text(&text).expect("a valid file");
    (server, ports[0], config)
}

/// Every `rc` line the server takes from a member (src/runtime/conn.rs
/// `control_request` and src/cluster/wire.rs `parse_peer_line`), plus the
/// server's own handshake line, each well formed.
fn every_rc_line(config: &ClusterConfig) -> Vec<Vec<u8>> {
    let mut spec = config.to_spec();
    spec.write_ack = WriteAck::One;
    let next = config.successor(spec).expect("a valid change");
    let mut propose = b"rc propose ".to_vec();
    codec::encode_config(&next, &mut propose);
    propose.extend_from_slice(b"\r\n");
    let mut lines: Vec<Vec<u8>> = [
        "rc paxos not-a-consensus-message\r\n",
        "rc show\r\n",
        "rc status\r\n",
        "rc suspect 2 1\r\n",
        "rc join 127.0.0.9:11211 127.0.0.9:11212\r\n",
        "rc fwd 1\r\n",
        "rc rep 1\r\n",
        "rc copy 1\r\n",
        "rc merge 1 2\r\n",
        "rc recover 1 2 all\r\n",
        "rc exchange 1 2\r\n",
        "rc challenge 00 00\r\n",
        "rc whatever\r\n",
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect();
    lines.push(propose);
    lines
}

#[test]
fn every_rc_line_from_a_plain_client_is_an_error_and_the_connection_serves_on() {
    let dir = support::scratch_dir("members-error");
    let ip = "127.0.0.1";
    let (_server, port, config) = start_one_node(&dir, ip);
    let lines = every_rc_line(&config);
    let mut client = Client::connect_at(ip, port);
    for line in &lines {
        let reply = client.call(line, b"\r\n");
        assert_eq!(show(&reply), show(b"ERROR\r\n"), "for {}", show(line));
    }
    // Pipelined, with a plain request after each, and the connection in sync.
    let mut pipelined = Vec::new();
    for line in &lines {
        pipelined.extend_from_slice(line);
        pipelined.extend_from_slice(b"mn\r\n");
    }
    pipelined.extend_from_slice(b"set k 0 0 1\r\nx\r\nget k\r\n");
    let reply = client.call(&pipelined, b"END\r\n");
    let expected = "ERROR\r\nMN\r\n".repeat(lines.len()) + "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n";
    assert_eq!(show(&reply), show(expected.as_bytes()));
    // Nothing changed: the proposal among them was not taken.
    std::thread::sleep(Duration::from_millis(300));
    let view = stats_cluster(ip, port);
    assert_eq!(view["epoch"], "1");
    assert_eq!(view["write_ack"], "quorum");
    assert_eq!(view["nodes"], "1", "the join was taken");
    // Discovery stays open to clients.
    let discovery = client.call(b"config get cluster\r\n", b"END\r\n");
    assert!(
        show(&discovery).starts_with("CONFIG cluster 0 "),
        "{}",
        show(&discovery)
    );
    // A proof with no challenge before it is refused, and the connection closed.
    let forged = format!("rc auth {}\r\n", "00".repeat(32));
    let reply = client.call(forged.as_bytes(), b"\r\n");
    assert_eq!(
        show(&reply),
        show(b"CLIENT_ERROR authentication failed\r\n")
    );
    assert!(client.is_closed_within(REPLY_TIMEOUT));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_without_the_secret_or_with_another_changes_nothing() {
    let dir = support::scratch_dir("members-admin");
    let ip = "127.0.0.1";
    let (_server, port, _) = start_one_node(&dir, ip);
    let node = format!("{ip}:{port}");
    let (ok, out) = admin(&node, &[], &["set", "write_ack=one"]);
    assert!(!ok, "set went ahead without the secret: {out}");
    assert!(out.contains("needs the cluster secret"), "{out}");
    let wrong = dir.join("wrong.secret");
    write_secret(&wrong, 0o600);
    let wrong_arg = wrong.to_string_lossy().into_owned();
    for args in [
        &["set", "write_ack=one"][..],
        &["show"][..],
        &["remove", "1"][..],
    ] {
        let (ok, out) = admin(&node, &["--cluster-secret", &wrong_arg], args);
        assert!(!ok, "{args:?} went ahead with another secret: {out}");
        assert!(out.contains("cluster's secret"), "{out}");
    }
    let view = stats_cluster(ip, port);
    assert_eq!(view["epoch"], "1");
    assert_eq!(view["write_ack"], "quorum");
    // The same command with the cluster's secret is taken.
    let data = dir.join("data").to_string_lossy().into_owned();
    let (ok, out) = admin(&node, &["--data-dir", &data], &["set", "write_ack=one"]);
    assert!(ok && out.contains("epoch 2: OK"), "{out}");
    assert_eq!(stats_cluster(ip, port)["write_ack"], "one");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_with_another_secret_cannot_join() {
    let dir = support::scratch_dir("members-join");
    let (ip1, ip2) = ("127.0.0.1", "127.0.0.2");
    // Each node takes its client port and the next one (its shard endpoint).
    let port1 = support::free_ports(4);
    let port2 = port1 + 2;
    let data1 = dir.join("one");
    let server = Server::ringcache_at(
        ip1,
        port1,
        &[
            "--init",
            "--data-dir",
            &data1.to_string_lossy(),
            "-l",
            ip1,
            "-p",
            &port1.to_string(),
            "-t",
            "1",
        ],
    );
    assert!(
        data1.join(SECRET_FILE_NAME).exists(),
        "--init made no secret"
    );
    let mode = std::fs::metadata(data1.join(SECRET_FILE_NAME))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.log().contains("created the cluster secret"),
        "{}",
        server.log()
    );

    // Without any secret the joiner does not even start.
    let join = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(["--join", &format!("{ip1}:{port1}"), "--data-dir"])
            .arg(data)
            .args(["-l", ip2, "-p", &port2.to_string(), "-t", "1"])
            .output()
            .expect("run ringcache --join")
    };
    let bare = dir.join("bare");
    let out = join(&bare);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "joined with no secret: {stderr}");
    assert!(stderr.contains("head -c 32 /dev/urandom"), "{stderr}");

    // With another secret it is refused.
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    write_secret(&wrong.join(SECRET_FILE_NAME), 0o600);
    let out = join(&wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "joined with another secret: {stderr}"
    );
    assert!(stderr.contains("cluster's secret"), "{stderr}");
    let view = stats_cluster(ip1, port1);
    assert_eq!(view["epoch"], "1");
    assert_eq!(view["nodes"], "1");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !server.log().contains("abandoned") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log().contains("another cluster secret"),
        "{}",
        server.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_with_another_secret_gets_no_replicated_items() {
    let dir = support::scratch_dir("members-replica");
    let ips = ["127.0.0.1", "127.0.0.2"];
    let (mut text, ports) = cluster_file(&ips, 2);
    text = text.replace("write_ack = \"quorum\"", "write_ack = \"one\"");
    let file = dir.join("cluster.toml");
    std::fs::write(&file, &text).unwrap();
    let (right, wrong) = (dir.join("right.secret"), dir.join("wrong.secret"));
    write_secret(&right, 0o600);
    write_secret(&wrong, 0o600);
    let start = |id: usize, secret: &Path| {
        let node = (ips[id - 1], ports[id - 1]);
        start_file_node(&file, id, node, secret, &["--peer-timeout-ms", "500"])
    };
    let one = start(1, &right);
    let two = start(2, &wrong);
    // Node 1 could not copy what it shares with node 2: it serves those keys
    // once it takes node 2 as gone (`--failover-timeout-ms`).
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while stats_cluster(ips[0], ports[0])
        .get("node_state")
        .map(String::as_str)
        != Some("serving")
    {
        assert!(Instant::now() < deadline, "node 1 never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut client = Client::connect_at(ips[0], ports[0]);
    write_and_read_back(&mut client, 200);
    assert_eq!(curr_items(&mut client), 200);
    assert_eq!(
        curr_items(&mut Client::connect_at(ips[1], ports[1])),
        0,
        "node 2 got items with another secret"
    );
    // Each side logs the other once per endpoint, not once per request or
    // probe (node 1 probes node 2 every 100 ms).
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !one.log().contains("refusing to talk to 127.0.0.2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let refusals = one.log().matches("refusing to talk to 127.0.0.2").count();
    assert!(
        (1..=2).contains(&refusals),
        "{refusals} warnings:\n{}",
        one.log()
    );
    assert!(
        two.log().contains("refusing to talk to 127.0.0.1"),
        "{}",
        two.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_secret_others_may_read_or_none_at_all_is_refused_at_start() {
    let dir = support::scratch_dir("members-mode");
    let (text, _) = cluster_file(&["127.0.0.1"], 1);
    let file = dir.join("cluster.toml");
    std::fs::write(&file, &text).unwrap();
    let secret = dir.join("open.secret");
    write_secret(&secret, 0o644);
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(["--cluster", &file.to_string_lossy(), "--node-id", "1"])
            .args(extra)
            .output()
            .expect("run ringcache");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&["--cluster-secret", &secret.to_string_lossy()]);
    assert!(!ok, "started with a secret others may read: {stderr}");
    assert!(
        stderr.contains("readable by others") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    let (ok, stderr) = run(&[]);
    assert!(!ok, "started with no secret: {stderr}");
    assert!(stderr.contains("head -c 32 /dev/urandom"), "{stderr}");
    // The file's `secret_file`, relative to the file, with the mode fixed, is taken
    // (checked by the same refusal going away: the node would start).
    std::fs::write(&file, format!("secret_file = \"open.secret\"\n{text}")).unwrap();
    let (ok, stderr) = run(&[]);
    assert!(!ok && stderr.contains("chmod 600"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member's connection to `ip:port`, past the handshake: the socket and
/// the keys that seal what follows.
fn member_socket(ip: &str, port: u16, secret: &Secret) -> (TcpStream, Sealing) {
    let mut stream = TcpStream::connect((ip, port)).expect("connect");
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("read timeout");
    let sealing = ringcache::runtime::auth::handshake_blocking(&mut stream, secret, "admin")
        .expect("the node holds the secret");
    (stream, sealing)
}

/// Whether the node closes `stream` without a byte more.
fn closed_without_a_reply(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("the node answered {}", show(&buf[..n])),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn after_the_handshake_a_member_connection_takes_only_frames_with_a_right_mac() {
    let dir = support::scratch_dir("members-sealed");
    let ip = "127.0.0.1";
    let (_server, port, _) = start_one_node(&dir, ip);
    let secret = ringcache::runtime::auth::load_secret(&dir.join("data").join(SECRET_FILE_NAME))
        .expect("the node's secret");

    // Sealed, the node answers, sealed.
    let (stream, sealing) = member_socket(ip, port, &secret);
    let mut member = Sealed::new(stream, sealing);
    member.write_all(b"rc status\r\nmn\r\n").expect("send");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.ends_with(b"MN\r\n") {
        let n = member.read(&mut chunk).expect("a sealed reply");
        assert!(n > 0, "closed after {}", show(&reply));
        reply.extend_from_slice(&chunk[..n]);
    }
    assert!(show(&reply).contains("STAT epoch 1"), "{}", show(&reply));
    let mut frame = Vec::new();
    let (stream, mut sealing) = member_socket(ip, port, &secret);
    sealing.send.seal(b"rc show\r\n", &mut frame);
    let recorded = frame.clone();

    // One bit changed in a frame: closed, unanswered.
    let mut tampered = stream;
    frame[FRAME_LEN_BYTES] ^= 0x20;
    tampered.write_all(&frame).expect("send");
    assert!(closed_without_a_reply(&mut tampered));

    // Plain lines after the `OK`: closed, unanswered.
    let (mut plain, _) = member_socket(ip, port, &secret);
    plain.write_all(b"rc show\r\n").expect("send");
    assert!(closed_without_a_reply(&mut plain));

    // A frame recorded on another connection, replayed: closed, unanswered.
    let (mut replayed, _) = member_socket(ip, port, &secret);
    replayed.write_all(&recorded).expect("send");
    assert!(closed_without_a_reply(&mut replayed));

    // Bytes sent with the proof, before the `OK`: closed without it.
    let mut eager = TcpStream::connect((ip, port)).expect("connect");
    eager
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("read timeout");
    let (mut handshake, hello) = ClientHandshake::start("admin", [3; NONCE_BYTES]);
    eager.write_all(&hello).expect("send");
    let mut challenge = Vec::new();
    while !challenge.ends_with(b"\r\n") {
        let n = eager.read(&mut chunk).expect("a challenge");
        assert!(n > 0);
        challenge.extend_from_slice(&chunk[..n]);
    }
    let mut proof = handshake
        .on_challenge(&secret, &challenge[..challenge.len() - 2])
        .expect("the node holds the secret");
    proof.extend_from_slice(b"rc show\r\n");
    eager.write_all(&proof).expect("send");
    assert!(closed_without_a_reply(&mut eager));

    // The node serves on.
    let view = stats_cluster(ip, port);
    assert_eq!(view["epoch"], "1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cluster_node_with_an_auth_file_asks_its_clients_to_authenticate_and_its_members_to_prove_the_secret(
) {
    let dir = support::scratch_dir("members-auth-file");
    let ips = ["127.0.0.1", "127.0.0.2"];
    let (mut text, ports) = cluster_file(&ips, 1);
    text = text.replace("write_ack = \"quorum\"", "write_ack = \"one\"");
    let file = dir.join("cluster.toml");
    std::fs::write(&file, &text).unwrap();
    let secret = dir.join("cluster.secret");
    write_secret(&secret, 0o600);
    let users = dir.join("users");
    std::fs::write(&users, "alice:wonderland\n").unwrap();
    let users_arg = users.to_string_lossy().to_string();
    let nodes: Vec<Server> = (1..=2)
        .map(|id| {
            let node = (ips[id - 1], ports[id - 1]);
            start_file_node(&file, id, node, &secret, &["-Y", &users_arg])
        })
        .collect();
    // The admin proves the secret, as a member does (`status` too, since
    // `stats cluster` is no longer open to every client).
    let secret_arg = secret.to_string_lossy().to_string();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    for (ip, port) in ips.iter().zip(&ports) {
        let node = format!("{ip}:{port}");
        loop {
            let (ok, out) = admin(&node, &["--cluster-secret", &secret_arg], &["status"]);
            if ok && out.contains("STAT node_state serving") {
                break;
            }
            assert!(Instant::now() < deadline, "{node} never served: {out}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A client that has not authenticated gets memcached's answer to every
    // command, discovery and cluster lines included.
    let mut stranger = Client::connect_at(ips[0], ports[0]);
    for line in ["get k\r\n", "stats cluster\r\n", "rc show\r\n"] {
        assert_eq!(
            show(&stranger.call(line.as_bytes(), b"\r\n")),
            "CLIENT_ERROR unauthenticated\\r\\n",
            "for {line:?}"
        );
    }
    // Authenticated, it reads and writes keys of both nodes through node 1:
    // the nodes forward to each other, proving the cluster secret, not a user.
    let mut client = Client::connect_at(ips[0], ports[0]);
    assert_eq!(
        show(&client.call(b"set auth 0 0 16\r\nalice wonderland\r\n", b"\r\n")),
        "STORED\\r\\n"
    );
    write_and_read_back(&mut client, 100);
    let mut other = Client::connect_at(ips[1], ports[1]);
    assert_eq!(
        show(&other.call(b"set auth 0 0 16\r\nalice wonderland\r\n", b"\r\n")),
        "STORED\\r\\n"
    );
    let (one, two) = (curr_items(&mut client), curr_items(&mut other));
    assert_eq!(one + two, 100);
    assert!(
        one > 0 && two > 0,
        "{one} and {two} items: nothing was forwarded"
    );
    let node = format!("{}:{}", ips[0], ports[0]);
    let (ok, out) = admin(&node, &["--cluster-secret", &secret_arg], &["show"]);
    assert!(ok && out.contains("[[node]]"), "{out}");
    let (ok, out) = admin(&node, &[], &["status"]);
    assert!(!ok && out.contains("CLIENT_ERROR unauthenticated"), "{out}");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

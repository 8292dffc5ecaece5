//! Clients over TLS (`-Z` with memcached's `-o ssl_*` options): pymemcache with a
//! TLS context on both socket paths, a plain client and garbage on a TLS port,
//! and client certificates required by `ssl_verify_mode=2`.
//!
//! Certificates are made per test with the openssl command-line tool (a CA, a
//! server certificate for 127.0.0.1 and a client certificate it signs);
//! scripts/test.sh installs it. Under `RINGCACHE_TEST_TARGET=memcached` the same
//! tests run against `memcached -Z`: 1.6.18 passes the closing tests and stalls
//! on the round trip's pipeline (2,000 requests in one write; its reply never
//! comes within the client's 10 s).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{Client, Server};

/// How long a refused connection may take to be closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A directory of test certificates, removed on drop.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = support::numbered_dir("tls");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl (scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat()
        .iter()
        .copied()
        .chain(["-days", "2", "-subj", "/CN=ringcache-test-ca"])
        .collect::<Vec<_>>());
        for who in ["server", "client"] {
            let (key, csr, pem, ext) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.pem"),
                format!("{who}.ext"),
            );
            std::fs::write(
                dir.join(&ext),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
            )
            .expect("write the extensions file");
            let subject = format!("/CN={who}");
            run(&[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `-Z -o ssl_chain_cert=...,ssl_key=...` and any further `-o ssl_*` options.
    fn server_options(&self, more: &str) -> String {
        format!(
            "ssl_chain_cert={},ssl_key={}{more}",
            self.path("server.pem"),
            self.path("server.key")
        )
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs tests/clients/tls_pymemcache.py against `server`; its last line of output.
fn pymemcache(server: &Server, certs: &Certs, mode: &str, client_cert: bool) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tls_pymemcache.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(server.port.to_string())
        .arg(certs.path("ca.pem"))
        .arg(mode);
    if client_cert {
        cmd.arg(certs.path("client.pem"))
            .arg(certs.path("client.key"));
    }
    let out = cmd
        .output()
        .expect("run python3 (scripts/test.sh installs pymemcache)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tls_pymemcache.py {mode}: {}{}\nserver log:\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    stdout.lines().last().unwrap_or_default().to_string()
}

fn tls_server(certs: &Certs, sockets: &[&str], more: &str) -> Server {
    let options = certs.server_options(more);
    let mut args = vec!["-t", "2", "-Z", "-o", &options];
    if !support::ringcache_stands_in_for_memcached() {
        args.extend_from_slice(sockets);
    }
    Server::ringcache(&args)
}

#[test]
fn pymemcache_round_trips_over_tls_on_the_uring_socket_path() {
    let certs = Certs::make();
    let server = tls_server(&certs, &["--sockets", "uring"], "");
    assert_eq!(pymemcache(&server, &certs, "round-trip", false), "ok");
}

#[test]
fn pymemcache_round_trips_over_tls_on_the_glommio_socket_path() {
    let certs = Certs::make();
    let server = tls_server(&certs, &["--sockets", "glommio"], "");
    assert_eq!(pymemcache(&server, &certs, "round-trip", false), "ok");
}

#[test]
fn a_plain_client_on_a_tls_port_is_closed_unanswered() {
    let certs = Certs::make();
    for sockets in ["uring", "glommio"] {
        let server = tls_server(&certs, &["--sockets", sockets], "");
        let mut client = server.connect();
        client.send(b"set k 0 0 1\r\nv\r\nget k\r\n");
        let received = client.read_available(Duration::from_millis(500));
        assert!(
            support::find(&received, b"STORED").is_none()
                && support::find(&received, b"END").is_none(),
            "{sockets}: a plain client was served: {}",
            support::show(&received)
        );
        assert!(
            client.is_closed_within(CLOSE_TIMEOUT),
            "{sockets}: left open"
        );
    }
}

#[test]
fn garbage_inside_a_tls_record_closes_the_connection() {
    let certs = Certs::make();
    for sockets in ["uring", "glommio"] {
        let server = tls_server(&certs, &["--sockets", sockets], "");
        let mut client = server.connect();
        // A handshake record header, then bytes that are no ClientHello.
        let mut garbage = vec![0x16, 0x03, 0x01, 0x01, 0x00];
        garbage.extend((0..256u32).map(|i| (i * 37 % 256) as u8));
        client.send(&garbage);
        assert!(
            client.is_closed_within(CLOSE_TIMEOUT),
            "{sockets}: left open"
        );
        // The server goes on serving TLS clients.
        assert_eq!(pymemcache(&server, &certs, "round-trip", false), "ok");
    }
}

#[test]
fn verify_mode_2_refuses_a_client_without_a_certificate_and_serves_one_with() {
    let certs = Certs::make();
    let more = format!(",ssl_ca_cert={},ssl_verify_mode=2", certs.path("ca.pem"));
    let server = tls_server(&certs, &[], &more);
    assert!(pymemcache(&server, &certs, "refused", false).starts_with("refused"));
    assert_eq!(pymemcache(&server, &certs, "round-trip", true), "ok");
    // A plain connection that sends nothing is not served either.
    let mut client: Client = server.connect();
    client.send(b"version\r\n");
    assert!(client.is_closed_within(CLOSE_TIMEOUT));
}

#[test]
fn a_cluster_node_serves_its_clients_over_tls_and_its_members_with_the_cluster_handshake() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let certs = Certs::make();
    let dir = support::scratch_dir("tls-cluster");
    let secret_path = dir.join("cluster.secret");
    let secret = support::write_secret(&secret_path);
    let ports: Vec<(u16, u16)> = (0..2)
        .map(|_| (support::free_port(), support::free_port()))
        .collect();
    let mut text = String::from("replicas = 1\n");
    for (i, (port, shard)) in ports.iter().enumerate() {
        text.push_str(&format!(
            "\n[[node]]\nid = {}\naddr = \"127.0.0.1:{port}\"\nshards = [\"127.0.0.1:{shard}\"]\n",
            i + 1
        ));
    }
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    let (file, secret_arg) = (
        file.display().to_string(),
        secret_path.display().to_string(),
    );
    let options = certs.server_options("");
    let nodes: Vec<Server> = ports
        .iter()
        .enumerate()
        .map(|(i, (port, _))| {
            let id = (i + 1).to_string();
            let args = [
                "--cluster",
                &file,
                "--node-id",
                &id,
                "--cluster-secret",
                &secret_arg,
                "-Z",
                "-o",
                &options,
            ];
            Server::ringcache_at("127.0.0.1", *port, &args)
        })
        .collect();
    // The admin, a member, speaks plain on the TLS port after the handshake.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (port, _) in &ports {
        let node = format!("127.0.0.1:{port}");
        loop {
            let (ok, out) = support::ringcache_cluster(&[
                "--node",
                &node,
                "--cluster-secret",
                &secret_arg,
                "status",
            ]);
            if ok && out.contains("STAT node_state serving") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{node} never served: {out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A TLS client round-trips through node 1, which forwards node 2's keys
    // to it on plain connections that proved the cluster secret.
    assert_eq!(pymemcache(&nodes[0], &certs, "round-trip", false), "ok");
    let items = |port: u16| -> u64 {
        let mut member = Client::connect_at("127.0.0.1", port);
        support::authenticate(&mut member, &secret);
        member.stat_u64("", "curr_items").expect("curr_items")
    };
    let (one, two) = (items(ports[0].0), items(ports[1].0));
    assert!(
        one > 0 && two > 0,
        "node 1 holds {one} items and node 2 {two}: nothing was forwarded"
    );
    // A plain connection that does not open with the handshake: closed unanswered.
    let mut stranger = Client::connect_at("127.0.0.1", ports[0].0);
    stranger.send(b"set k 0 0 1\r\nv\r\nget k\r\n");
    let received = stranger.read_available(Duration::from_millis(500));
    assert!(received.is_empty(), "{}", support::show(&received));
    assert!(stranger.is_closed_within(CLOSE_TIMEOUT));
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

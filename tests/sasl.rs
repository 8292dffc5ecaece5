//! `-S`: memcached's binary SASL with PLAIN, on a real server over a real
//! socket: the mechanisms and the version before logging in, a wrong password
//! answered and retried, anything else refused and the connection closed,
//! then libmemcached's own tools (`memccp`, `memccat --username`) logging in
//! (does I/O: a server process, sockets, the libmemcached tools when present).

mod support;

use std::process::Command;
use support::{Client, Server, REPLY_TIMEOUT};

const SASL_LIST_MECHS: u8 = 0x20;
const SASL_AUTH: u8 = 0x21;
const VERSION: u8 = 0x0b;
const GET: u8 = 0x00;
const SET: u8 = 0x01;

fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((key.len() + extras.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// Sends `request` and reads one response: (opcode, status, opaque, value).
fn call(client: &mut Client, request: &[u8]) -> (u8, u16, u32, Vec<u8>) {
    client.send(request);
    let h = client
        .read_exact_n(24, REPLY_TIMEOUT)
        .expect("a response header");
    let key_and_extras = usize::from(u16::from_be_bytes([h[2], h[3]])) + usize::from(h[4]);
    let body_len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let body = client
        .read_exact_n(body_len, REPLY_TIMEOUT)
        .expect("a response body");
    (
        h[1],
        u16::from_be_bytes([h[6], h[7]]),
        u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        body[key_and_extras..].to_vec(),
    )
}

#[test]
fn binary_sasl_plain_admits_the_users_of_its_password_file_and_nothing_else() {
    if support::ringcache_stands_in_for_memcached() {
        // memcached's SASL is Cyrus's, configured elsewhere.
        return;
    }
    let dir = support::scratch_dir("sasl");
    let pwdb = dir.join("pwdb");
    std::fs::write(&pwdb, "alice:wonderland\n").unwrap();
    // The only test of this file: no other thread reads the environment.
    std::env::set_var("MEMCACHED_SASL_PWDB", &pwdb);
    let server = Server::ringcache(&["-S", "-t", "2"]);

    let mut client = Client::connect(server.port);
    assert_eq!(
        call(&mut client, &packet(VERSION, b"", b"", b"", 1)),
        (VERSION, 0, 1, b"1.6.18".to_vec())
    );
    assert_eq!(
        call(&mut client, &packet(SASL_LIST_MECHS, b"", b"", b"", 2)),
        (SASL_LIST_MECHS, 0, 2, b"PLAIN".to_vec())
    );
    let wrong = packet(SASL_AUTH, b"PLAIN", b"", b"\0alice\0looking-glass", 3);
    assert_eq!(
        call(&mut client, &wrong),
        (SASL_AUTH, 0x20, 3, b"Auth failure.".to_vec())
    );
    let right = packet(SASL_AUTH, b"PLAIN", b"", b"\0alice\0wonderland", 4);
    assert_eq!(
        call(&mut client, &right),
        (SASL_AUTH, 0, 4, b"Authenticated".to_vec())
    );
    let set = packet(SET, b"k", &[0; 8], b"v", 5);
    assert_eq!(call(&mut client, &set).1, 0, "a set once logged in");
    let (_, status, _, value) = call(&mut client, &packet(GET, b"k", b"", b"", 6));
    assert_eq!((status, &value[..]), (0, &b"v"[..]));

    // Anything else before logging in: "Auth failure." and the connection closes.
    let mut stranger = Client::connect(server.port);
    assert_eq!(
        call(&mut stranger, &packet(GET, b"k", b"", b"", 7)),
        (GET, 0x20, 7, b"Auth failure.".to_vec())
    );
    assert!(stranger.is_closed_within(REPLY_TIMEOUT));

    // libmemcached's tools log in with PLAIN through Cyrus SASL's client.
    let plain_plugin = std::path::Path::new("/usr/lib/x86_64-linux-gnu/sasl2/libplain.so");
    let tools = Command::new("memccat").arg("--help").output().is_ok();
    if !tools || !plain_plugin.exists() {
        eprintln!(
            "!!!! the libmemcached part skipped: memccat or Cyrus SASL's PLAIN plugin missing \
             (apt-get install libmemcached-tools libsasl2-modules) !!!!"
        );
    } else {
        let file = dir.join("greeting");
        std::fs::write(&file, "hello\n").unwrap();
        let servers = format!("--servers=127.0.0.1:{}", server.port);
        let login = |password: &str| {
            [
                servers.clone(),
                "--binary".into(),
                "--username=alice".into(),
                format!("--password={password}"),
            ]
        };
        let run = |tool: &str, password: &str, arg: &std::ffi::OsStr| {
            Command::new(tool)
                .args(login(password))
                .arg(arg)
                .output()
                .unwrap_or_else(|e| panic!("{tool} runs: {e}"))
        };
        let copied = run("memccp", "wonderland", file.as_os_str());
        assert!(copied.status.success(), "memccp: {copied:?}");
        let read = run("memccat", "wonderland", "greeting".as_ref());
        // memccat ends each value with a newline of its own.
        assert_eq!(
            String::from_utf8_lossy(&read.stdout),
            "hello\n\n",
            "{read:?}"
        );
        let refused = run("memccat", "looking-glass", "greeting".as_ref());
        assert!(
            !refused.status.success(),
            "a wrong password read: {refused:?}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

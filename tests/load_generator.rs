//! The load generator (`ringcache-bench`) against a real server, in each wire
//! protocol: every request is answered as expected (no error), keys set by the
//! prefill are all hits, and a key space larger than what was set yields
//! misses, counted as such. Runs against memcached too when
//! `RINGCACHE_TEST_TARGET=memcached` (does I/O: a real server, real sockets).

mod support;

use std::process::Command;
use support::Server;

/// Runs `ringcache-bench` against `port` with `args`; returns its JSON summary's
/// fields as text.
fn bench(port: u16, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache-bench"))
        .args(["-s", &format!("127.0.0.1:{port}"), "-q", "--json"])
        .args(args)
        .output()
        .expect("run ringcache-bench");
    assert!(
        out.status.success(),
        "ringcache-bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `"name":` in a JSON summary.
fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {json}"))
}

#[test]
fn every_protocol_is_answered_with_hits_and_misses_counted() {
    let server = Server::ringcache(&["-t", "2"]);
    let port = server.port;
    for protocol in ["text", "meta", "binary"] {
        // Every key set first: all hits, pipelined, values of many sizes.
        let json = bench(
            port,
            &[
                "-P",
                protocol,
                "-c",
                "8",
                "--pipeline",
                "8",
                "-n",
                "20000",
                "--prefill",
                "--key-space",
                "2000",
                "-d",
                "1-3000",
                "--key-prefix",
                protocol,
            ],
        );
        assert_eq!(field(&json, "errors"), 0.0, "{protocol}: {json}");
        assert_eq!(field(&json, "requests"), 20000.0, "{protocol}: {json}");
        assert_eq!(field(&json, "hit_ratio"), 1.0, "{protocol}: {json}");
        // Keys never set: gets miss (sets make some hits later).
        let json = bench(
            port,
            &[
                "-P",
                protocol,
                "-c",
                "4",
                "-n",
                "2000",
                "--ratio",
                "0:1",
                "--key-space",
                "1000000",
                "--key-prefix",
                &format!("{protocol}-unset"),
            ],
        );
        assert_eq!(field(&json, "errors"), 0.0, "{protocol}: {json}");
        assert_eq!(field(&json, "hits"), 0.0, "{protocol}: {json}");
        assert_eq!(field(&json, "misses"), 2000.0, "{protocol}: {json}");
    }
}

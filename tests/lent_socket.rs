//! A lone request for a key another shard owns is answered by that shard on
//! the client's connection itself (the connection lends it its socket, see
//! `runtime::gate`), and the replies of a connection stay whole and in order
//! whichever shard sends them (does I/O: real servers, real sockets).
//!
//! `stats`' `forwarded_sent` counts the replies an owner sent itself.

mod support;

use ringcache::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
use std::time::Duration;
use support::{Client, Rng, Server};

/// A two-shard server with --shard-ports, and a key of each shard.
struct TwoShards {
    server: Server,
    base: u16,
    ring: Ring,
}

impl TwoShards {
    fn start(extra: &[&str]) -> TwoShards {
        let base = support::free_ports(2);
        let base_text = base.to_string();
        let mut args = vec!["-t", "2", "--shard-ports", &base_text];
        args.extend_from_slice(extra);
        let server = Server::ringcache(&args);
        let names: Vec<String> = [base, base + 1]
            .iter()
            .map(|p| ketama_name("127.0.0.1", *p))
            .collect();
        let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
        TwoShards { server, base, ring }
    }

    /// The `n`th key (from `prefix`) that `shard` owns.
    fn key_of(&self, shard: usize, prefix: &str, n: usize) -> String {
        (0..)
            .map(|i| format!("{prefix}:{i}"))
            .filter(|key| self.ring.owner(key.as_bytes()).shard as usize == shard)
            .nth(n)
            .expect("a key of each shard")
    }

    fn forwarded_sent(&self) -> u64 {
        self.server
            .connect()
            .stat_u64("", "forwarded_sent")
            .expect("forwarded_sent in stats")
    }
}

/// A value larger than a loopback socket takes at once (the servers of these
/// tests run with `-I 8m`).
fn large_value() -> Vec<u8> {
    (0..6 * 1024 * 1024)
        .map(|i| b'a' + (i % 23) as u8)
        .collect()
}

#[test]
fn an_owner_sends_the_reply_to_a_lone_request_on_the_clients_connection() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let shards = TwoShards::start(&[]);
    // On shard 0's own port; every key is shard 1's.
    let mut client = Client::connect(shards.base);
    let key = shards.key_of(1, "lent", 0);
    let absent = shards.key_of(1, "lent", 1);
    let calls: [(String, &[u8], &str); 9] = [
        (
            format!("set {key} 7 0 5\r\nhello\r\n"),
            b"\r\n",
            "STORED\r\n",
        ),
        (
            format!("get {key}\r\n"),
            b"END\r\n",
            &format!("VALUE {key} 7 5\r\nhello\r\nEND\r\n"),
        ),
        (format!("get {absent}\r\n"), b"END\r\n", "END\r\n"),
        (
            format!("append {key} 0 0 1\r\n!\r\n"),
            b"\r\n",
            "STORED\r\n",
        ),
        (
            format!("mg {key} v f\r\n"),
            b"!\r\n",
            "VA 6 f7\r\nhello!\r\n",
        ),
        (
            format!("set {absent} 0 0 1\r\n5\r\n"),
            b"\r\n",
            "STORED\r\n",
        ),
        (format!("incr {absent} 2\r\n"), b"\r\n", "7\r\n"),
        (format!("delete {absent}\r\n"), b"\r\n", "DELETED\r\n"),
        (format!("touch {absent} 0\r\n"), b"\r\n", "NOT_FOUND\r\n"),
    ];
    for (request, terminator, expected) in &calls {
        let reply = client.call(request.as_bytes(), terminator);
        assert_eq!(
            support::show(&reply),
            support::show(expected.as_bytes()),
            "{}",
            support::show(request.as_bytes())
        );
    }
    // Nothing of shard 0's was on its way to this client before any of them.
    assert_eq!(shards.forwarded_sent(), calls.len() as u64);
}

/// A reply larger than the socket takes at once: the owner sends what it
/// takes, the connection's shard the rest.
#[test]
fn a_reply_the_socket_does_not_take_whole_arrives_whole() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let shards = TwoShards::start(&["-I", "8m", "-m", "64"]);
    let mut client = Client::connect(shards.base);
    let key = shards.key_of(1, "large", 0);
    let value = large_value();
    client.set(&key, &value);
    for _ in 0..3 {
        client.send(format!("get {key}\r\n").as_bytes());
        // The client reads nothing for a while: the socket fills.
        std::thread::sleep(Duration::from_millis(200));
        let header = client
            .read_until(b"\r\n", support::REPLY_TIMEOUT)
            .expect("a VALUE line");
        assert_eq!(
            support::show(&header),
            format!("VALUE {key} 0 {}\\r\\n", value.len())
        );
        let body = client
            .read_exact_n(value.len() + 7, support::REPLY_TIMEOUT)
            .expect("the value and END");
        assert!(
            body[..value.len()] == value[..],
            "the value came back changed"
        );
        assert_eq!(&body[value.len()..], b"\r\nEND\r\n");
        client.set(&key, &value);
    }
    assert!(shards.forwarded_sent() >= 1);
}

/// Pipelined requests for keys of both shards, sent in bursts without
/// waiting: every reply comes back whole and in the order asked, whether its
/// owner or the connection's shard sent it.
#[test]
fn replies_stay_in_order_whichever_shard_sends_them() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let shards = TwoShards::start(&[]);
    let seed = support::seed_from_env_or_clock();
    let mut rng = Rng::new(seed);
    let keys: Vec<String> = (0..8)
        .map(|i| shards.key_of(i % 2, "order", i / 2))
        .collect();
    let mut values: Vec<Option<u64>> = vec![None; keys.len()];
    for port in [shards.base, shards.base + 1] {
        let mut client = Client::connect(port);
        for round in 0..300 {
            let mut request = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..rng.range(1, 6) {
                let k = rng.below(keys.len() as u64) as usize;
                let key = &keys[k];
                if rng.chance(40) {
                    let v = rng.below(1_000_000);
                    request.extend_from_slice(
                        format!("set {key} 0 0 {}\r\n{v}\r\n", v.to_string().len()).as_bytes(),
                    );
                    expected.extend_from_slice(b"STORED\r\n");
                    values[k] = Some(v);
                } else {
                    // One key, or two (of one shard or of both).
                    let mut asked = vec![k];
                    if rng.chance(30) {
                        asked.push(rng.below(keys.len() as u64) as usize);
                    }
                    let names: Vec<&str> = asked.iter().map(|&k| keys[k].as_str()).collect();
                    request.extend_from_slice(format!("get {}\r\n", names.join(" ")).as_bytes());
                    for &k in &asked {
                        if let Some(v) = values[k] {
                            let v = v.to_string();
                            let key = &keys[k];
                            expected.extend_from_slice(
                                format!("VALUE {key} 0 {}\r\n{v}\r\n", v.len()).as_bytes(),
                            );
                        }
                    }
                    expected.extend_from_slice(b"END\r\n");
                }
            }
            // Sometimes in pieces, so that lone requests arrive while
            // replies to the ones before are still on their way.
            if rng.chance(50) {
                let cut = rng.below(request.len() as u64) as usize;
                client.send(&request[..cut]);
                client.send(&request[cut..]);
            } else {
                client.send(&request);
            }
            let reply = client
                .read_exact_n(expected.len(), support::REPLY_TIMEOUT)
                .unwrap_or_else(|f| panic!("seed {seed}, round {round}: {f:?}"));
            assert_eq!(
                support::show(&reply),
                support::show(&expected),
                "seed {seed}, round {round}, port {port}"
            );
        }
    }
    assert!(shards.forwarded_sent() > 0);
}

/// A connection whose last reply is still being sent (larger than the socket
/// took) does not lend its socket: the next lone request's reply for another
/// shard's key comes after all of it.
#[test]
fn a_reply_still_on_its_way_is_not_overtaken() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let shards = TwoShards::start(&["-I", "8m", "-m", "64"]);
    let mut client = Client::connect(shards.base);
    let large = shards.key_of(0, "behind", 0);
    let small = shards.key_of(1, "behind", 0);
    let value = large_value();
    client.set(&large, &value);
    client.set(&small, b"small");
    let sent_before = shards.forwarded_sent();
    client.send(format!("get {large}\r\n").as_bytes());
    // Unread, the large reply fills the socket and waits to be sent.
    std::thread::sleep(Duration::from_millis(200));
    client.send(format!("get {small}\r\n").as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    let mut expected = format!("VALUE {large} 0 {}\r\n", value.len()).into_bytes();
    expected.extend_from_slice(&value);
    expected
        .extend_from_slice(format!("\r\nEND\r\nVALUE {small} 0 5\r\nsmall\r\nEND\r\n").as_bytes());
    let reply = client
        .read_exact_n(expected.len(), support::REPLY_TIMEOUT)
        .expect("both replies");
    assert!(
        reply == expected,
        "the replies came back mixed: {}",
        support::show(&reply[reply.len() - 64..])
    );
    assert_eq!(
        shards.forwarded_sent(),
        sent_before,
        "the owner sent on a busy socket"
    );
}

/// The binary protocol too: a lone `GET` and `SET` for another shard's key,
/// and a `GETQ` ended by a `NOOP`, are answered by its owner, byte for byte as
/// the owner answers on its own port.
#[test]
fn a_lone_binary_request_is_answered_by_its_owner_as_on_its_own_port() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    const GET: u8 = 0x00;
    const SET: u8 = 0x01;
    let shards = TwoShards::start(&[]);
    let key = shards.key_of(1, "binary", 0);
    let mut crossing = Client::connect(shards.base);
    let mut owner = Client::connect(shards.base + 1);
    let flags_and_expiry = [0, 0, 0, 9, 0, 0, 0, 0];
    let set = support::binary_request(SET, &flags_and_expiry, key.as_bytes(), b"value", 7);
    crossing.send(&set);
    let stored = crossing.read_exact_n(24, support::REPLY_TIMEOUT).unwrap();
    assert_eq!(stored[..2], [0x81, SET], "{}", support::show(&stored));
    assert_eq!(stored[6..8], [0, 0], "status: {}", support::show(&stored));
    let get = support::binary_request(GET, &[], key.as_bytes(), &[], 8);
    // A GET reply: 24 bytes of header, 4 of flags, the value.
    let reply_len = 24 + 4 + 5;
    let mut replies = Vec::new();
    for client in [&mut crossing, &mut owner] {
        client.send(&get);
        replies.push(
            client
                .read_exact_n(reply_len, support::REPLY_TIMEOUT)
                .unwrap(),
        );
    }
    assert_eq!(support::show(&replies[0]), support::show(&replies[1]));
    assert_eq!(&replies[0][24..], b"\0\0\0\tvalue");
    // A quiet GETQ and the NOOP that ends a client's batch of them.
    const GETQ: u8 = 0x09;
    const NOOP: u8 = 0x0a;
    let mut replies = Vec::new();
    for client in [&mut crossing, &mut owner] {
        let mut batch = support::binary_request(GETQ, &[], key.as_bytes(), &[], 9);
        batch.extend_from_slice(&support::binary_request(NOOP, &[], &[], &[], 10));
        client.send(&batch);
        replies.push(
            client
                .read_exact_n(reply_len + 24, support::REPLY_TIMEOUT)
                .unwrap(),
        );
    }
    assert_eq!(support::show(&replies[0]), support::show(&replies[1]));
    assert_eq!(replies[0][reply_len + 1], NOOP);
    assert_eq!(
        shards.forwarded_sent(),
        3,
        "the SET, the GET and the GETQ with its NOOP"
    );
}

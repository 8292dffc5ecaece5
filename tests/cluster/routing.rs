//! Routing, how a request reaches a key's owner: sent to the primary's shard
//! endpoint it crosses nothing; through another node one hop is answered at
//! once; binary requests travel as binary; and a forwarded request marked
//! with another epoch is refused (does I/O: real node processes).

use std::collections::HashMap;
use std::time::Duration;

use crate::common::requests::{
    assert_all_read, assert_owners_hold, items, parse_stats, stat_u64, Local,
};
use crate::common::{authenticate, Cluster, Layout};
use crate::support::{self, show, Client, REPLY_TIMEOUT};

/// A ketama client given the shard endpoints (here: the test, placing keys as the
/// nodes do) reaches each key's primary with no hop: no node forwards anything,
/// to another shard or to another node.
#[test]
fn keys_sent_to_their_primary_shard_cross_nothing() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(3, 2, 1, "one"));
    let mut endpoints: HashMap<(u32, usize), Client> = HashMap::new();
    let items = items("direct", 600, "d");
    for (key, value) in &items {
        let (node, shard) = cluster.primary(key);
        let client = endpoints.entry((node, shard)).or_insert_with(|| {
            let n = cluster.node(node);
            Client::connect_at(&n.ip, n.shard_ports[shard])
        });
        client.set(key, value.as_bytes());
        assert_eq!(client.get(key).as_deref(), Some(value.as_bytes()), "{key}");
    }
    assert_eq!(
        endpoints.len(),
        6,
        "every shard of every node owns some of the keys"
    );
    for id in [1, 2, 3] {
        let stats = parse_stats(&cluster.client(id).call(b"stats\r\n", b"END\r\n"));
        assert_eq!(stat_u64(&stats, "forwarded_out"), 0, "node {id} forwarded");
    }
    // The same keys through one node's client port do cross.
    assert_all_read(&mut cluster.client(1), &items, 1);
    let stats = parse_stats(&cluster.client(1).call(b"stats\r\n", b"END\r\n"));
    assert!(stat_u64(&stats, "forwarded_out") > 0);
}

/// A lone request for a key another shard of the node owns is answered by that
/// shard on the client's connection itself (`forwarded_sent`), a replicated
/// write only once its replica holds it: every reply right, every owner holding
/// its copy.
#[test]
fn a_lone_request_crossing_shards_is_answered_by_its_owner_after_its_replicas() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 2, 2, "all"));
    // Keys whose primary is node 1's shard 1.
    let items: Vec<(String, String)> = (0..)
        .map(|i| format!("lent:{i}"))
        .filter(|key| cluster.primary(key) == (1, 1))
        .take(10)
        .enumerate()
        .map(|(i, key)| (key, format!("value-{i}")))
        .collect();
    // On node 1's shard 0's own endpoint: every key crosses to shard 1.
    let node = cluster.node(1);
    let mut client = Client::connect_at(&node.ip, node.shard_ports[0]);
    let mut replica = cluster.local_reader(2);
    for (key, value) in &items {
        client.set(key, value.as_bytes());
        // Acknowledged by all: the replica held it before the client heard.
        assert_eq!(replica.mg(key), Local::value(value), "{key} at node 2");
        assert_eq!(client.get(key).as_deref(), Some(value.as_bytes()), "{key}");
    }
    assert_owners_hold(&cluster, &items, "written through a crossing");
    let stats = parse_stats(&cluster.client(1).call(b"stats\r\n", b"END\r\n"));
    assert_eq!(
        stat_u64(&stats, "forwarded_sent"),
        2 * items.len() as u64,
        "a set and a get of each key, each answered by its owner"
    );
}

/// `forwarded_out` and `forwarded_in` count crossings between the shards of one
/// node; a request sent on to another node is counted in `stats peers`, per
/// node. One-shard nodes cross no shard, however much they forward.
#[test]
fn requests_sent_to_another_node_are_counted_per_peer_not_as_crossings() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    const KEYS: usize = 40;
    let cluster = Cluster::start(&Layout::real(2, 1, 1, "one"));
    let keys = cluster.keys_owned("peer-count", KEYS, |owners| owners[0] == 2);
    let mut client = cluster.client(1);
    for key in &keys {
        client.set(key, b"v");
        assert_eq!(client.get(key).as_deref(), Some(&b"v"[..]), "{key}");
    }
    for id in [1, 2] {
        let stats = parse_stats(&cluster.client(id).call(b"stats\r\n", b"END\r\n"));
        assert_eq!(stat_u64(&stats, "forwarded_out"), 0, "node {id}");
        assert_eq!(stat_u64(&stats, "forwarded_in"), 0, "node {id}");
    }
    let peers = parse_stats(&cluster.client(1).call(b"stats peers\r\n", b"END\r\n"));
    assert_eq!(
        stat_u64(&peers, "peer:2:forwarded"),
        2 * KEYS as u64,
        "a set and a get of each key sent to node 2"
    );
}

/// A lone client reading through a node that does not own the key is answered
/// as soon as the owner answers: the request crosses to the owner and back on
/// peer links that wake their shards, not on the next timer. The bound is
/// generous (a missed wake-up costs 8 to 32 ms a request); how fast one hop is
/// is measured by scripts/bench-cluster.sh.
#[test]
fn a_lone_client_reading_through_one_hop_is_answered_at_once() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    const GETS: usize = 200;
    const MEDIAN_BOUND: Duration = Duration::from_millis(2);
    for sockets in ["uring", "glommio"] {
        let cluster =
            Cluster::start(&Layout::real(2, 1, 1, "one").with_args(&["--sockets", sockets]));
        let key = cluster.key_owned("hop", |owners| owners[0] == 2);
        let mut client = cluster.client(1);
        client.set(&key, b"value");
        let median = support::median_get_round_trip(&mut client, &key, GETS);
        assert!(
            median < MEDIAN_BOUND,
            "--sockets {sockets}: median of {GETS} gets through one hop took {median:?}"
        );
    }
}

/// Reads one binary response: (opcode, status, opaque, value after extras and key).
fn binary_response(client: &mut Client) -> (u8, u16, u32, Vec<u8>) {
    let header = client
        .read_exact_n(24, REPLY_TIMEOUT)
        .unwrap_or_else(|f| panic!("binary response header: {f:?}"));
    assert_eq!(header[0], 0x81, "response magic: {}", show(&header));
    let key_len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let extras_len = header[4] as usize;
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let opaque = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let body = client
        .read_exact_n(body_len, REPLY_TIMEOUT)
        .unwrap_or_else(|f| panic!("binary response body: {f:?}"));
    (
        header[1],
        status,
        opaque,
        body[extras_len + key_len..].to_vec(),
    )
}

/// Binary clients (spymemcached's default) reach every key through any node:
/// requests for keys owned elsewhere travel to the owner as binary packets and
/// come back in order, quiet ones included; writes replicate.
#[test]
fn binary_requests_reach_every_key_through_any_node() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(3, 2, 2, "all"));
    let items = items("bin", 300, "v");
    let mut node1 = cluster.client(1);
    // Pipelined SETQ for every key, then a NOOP: only the NOOP answers.
    let mut batch = Vec::new();
    for (i, (key, value)) in items.iter().enumerate() {
        let extras = [0, 0, 0, 7, 0, 0, 0, 0];
        batch.extend(support::binary_request(
            0x11,
            &extras,
            key.as_bytes(),
            value.as_bytes(),
            i as u32,
        ));
    }
    batch.extend(support::binary_request(0x0a, &[], &[], &[], 0xfeed));
    node1.send(&batch);
    let (opcode, status, opaque, _) = binary_response(&mut node1);
    assert_eq!(
        (opcode, status, opaque),
        (0x0a, 0, 0xfeed),
        "only the NOOP answers"
    );
    // GET each through node 2, in order, with its flags.
    let mut node2 = cluster.client(2);
    let mut gets = Vec::new();
    for (i, (key, _)) in items.iter().enumerate() {
        gets.extend(support::binary_request(
            0x00,
            &[],
            key.as_bytes(),
            &[],
            i as u32,
        ));
    }
    node2.send(&gets);
    for (i, (key, value)) in items.iter().enumerate() {
        let (opcode, status, opaque, body) = binary_response(&mut node2);
        assert_eq!((opcode, status, opaque), (0x00, 0, i as u32), "get {key}");
        assert_eq!(body, value.as_bytes(), "get {key}");
    }
    // Every owner holds its copy (set with write_ack all).
    assert_owners_hold(&cluster, &items, "after binary sets through node 1");
    // DELETE and a GET miss through node 3.
    let mut node3 = cluster.client(3);
    let (key, _) = &items[0];
    node3.send(&support::binary_request(0x04, &[], key.as_bytes(), &[], 1));
    assert_eq!(binary_response(&mut node3).1, 0, "delete {key}");
    node3.send(&support::binary_request(0x00, &[], key.as_bytes(), &[], 2));
    assert_eq!(
        binary_response(&mut node3).1,
        1,
        "get {key} after delete: not found"
    );
    assert_eq!(cluster.client(1).get(key), None);
}

/// A request marked with another epoch is refused with the node's epoch; one
/// marked with the node's epoch is served.
#[test]
fn epoch_mismatch_is_refused() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 2, 2, "quorum"));
    // The key exists, so a `get` that was served would show it.
    cluster.client(2).set("k", b"y");
    let node2 = cluster.node(2);
    let endpoints = [
        (cluster.node(1).ip.clone(), cluster.node(1).port),
        (node2.ip.clone(), node2.shard_ports[1]),
    ];
    for (ip, port) in &endpoints {
        let mut raw = Client::connect_at(ip, *port);
        authenticate(&mut raw, &cluster.secret);
        raw.send(b"rc fwd 7\r\nget k\r\n");
        let line = raw
            .read_until(b"\r\n", REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("rc fwd 7 at {ip}:{port}: {f:?}"));
        assert_eq!(
            show(&line),
            show(b"SERVER_ERROR cluster epoch mismatch: this node is at epoch 1\r\n"),
            "at {ip}:{port}"
        );
        let more = raw.read_available(Duration::from_millis(300));
        assert!(
            more.is_empty(),
            "at {ip}:{port}, the get of epoch 7 was answered too: {}",
            show(&more)
        );
    }
    let mut raw = cluster.member_client(1);
    let reply = raw.call(b"rc fwd 1\r\nset k 0 0 1\r\nx\r\nget k\r\n", b"END\r\n");
    assert_eq!(show(&reply), show(b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"));
    assert_eq!(cluster.client(2).get("k").as_deref(), Some(&b"x"[..]));
}

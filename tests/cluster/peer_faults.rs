//! Peers that misbehave, played by a fake peer: one that sends garbage is
//! dropped and logged, one that never answers costs one timeout, and a key no
//! owner answers for is a `SERVER_ERROR`, never a miss (does I/O: real node
//! processes beside the fake one).

use std::time::{Duration, Instant};

use crate::common::fake_peer::Fake;
use crate::common::requests::{assert_all_read, items, set_many};
use crate::common::{Cluster, Layout};
use crate::support::{self, show};

/// One real node (two shards) and a fake node 2 that will accept connections
/// and never answer once told to misbehave, with `replicas` copies, `one`, and
/// a 300 ms peer timeout; `None` against memcached.
fn beside_a_hung_peer(replicas: usize) -> Option<Cluster> {
    if support::ringcache_stands_in_for_memcached() {
        return None;
    }
    Some(Cluster::start(
        &Layout::real(1, 2, replicas, "one")
            .with_fake(Fake::Hung)
            .with_peer_timeout_ms(300),
    ))
}

/// A node whose peer answers garbage drops that link, logs it, and serves
/// every key from the remaining owner.
#[test]
fn garbage_peer_is_disconnected_and_logged() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 2, 2, "one").with_fake(Fake::Garbage));
    cluster.fake(3).misbehave();
    let items = items("garbage", 300, "g");
    let on_fake = items
        .iter()
        .filter(|(k, _)| cluster.owners(k)[0] == 3)
        .count();
    assert!(on_fake > 0, "no key has the fake node as its primary");
    set_many(&mut cluster.client(1), &items, 1);
    for via in [1, 2] {
        assert_all_read(&mut cluster.client(via), &items, via);
    }

    let fake = cluster.fake(3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(cluster.log(1).contains("sent garbage") && fake.closed_after_garbage() > 0) {
        assert!(
            Instant::now() < deadline,
            "node 1 did not drop and log the garbage peer within 5 s \
             (fake peer: {} connections accepted, {} closed after garbage); log:\n{}",
            fake.accepted(),
            fake.closed_after_garbage(),
            cluster.log(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = cluster.stats_cluster(1);
    let disconnects: u64 = stats
        .get("peer_disconnects")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peer_disconnects in stats cluster: {stats:?}"));
    assert!(disconnects >= 1, "peer_disconnects {disconnects}");
    let version = cluster.client(1).call(b"version\r\n", b"\r\n");
    assert!(
        version.starts_with(b"VERSION "),
        "version: {}",
        show(&version)
    );
}

/// A peer that accepts connections and never answers costs one timeout: after
/// it, the node skips that peer, so one client's 400 sequential requests pay
/// for it once. (The only other node is the hung one, so no slow moment of a
/// live peer can add a timeout of its own.) The `add` that met the timeout is
/// answered as of unknown outcome, not sent to the next owner.
#[test]
fn hung_peer_costs_one_timeout() {
    let Some(cluster) = beside_a_hung_peer(2) else {
        return;
    };
    cluster.fake(2).misbehave();
    let items = items("hung", 200, "h");
    let on_fake = items
        .iter()
        .filter(|(k, _)| cluster.owners(k)[0] == 2)
        .count();
    assert!(on_fake > 0, "no key has the hung node as its primary");
    let mut client = cluster.client(1);
    // The `add` in flight when the hung node's timeout fired may have been
    // applied there: its client is told so, and it is not sent to another
    // owner (an `add` done twice answers NOT_STORED the second time). The node
    // is skipped from then on, so every later write succeeds.
    let mut unknown = Vec::new();
    for (key, value) in &items {
        let request = format!("add {key} 0 0 {}\r\n{value}\r\n", value.len());
        let reply = client.call(request.as_bytes(), b"\r\n");
        if reply.starts_with(b"SERVER_ERROR the key's owner did not answer") {
            unknown.push(key.clone());
        } else {
            assert_eq!(show(&reply), "STORED\\r\\n", "set {key}");
        }
    }
    assert_eq!(
        unknown.len(),
        1,
        "one write met the timeout and was answered as of unknown outcome: {unknown:?}"
    );
    assert_eq!(cluster.owners(&unknown[0])[0], 2, "{unknown:?}");
    for (key, value) in items.iter().filter(|(k, _)| *k != unknown[0]) {
        assert_eq!(
            client
                .get(key)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            Some(value.clone()),
            "get {key} (owners {:?})",
            cluster.owners(key)
        );
    }
    let stats = cluster.stats_cluster(1);
    assert_eq!(
        stats.get("peer_timeouts").map(String::as_str),
        Some("1"),
        "peer timeouts at node 1 (the fake node accepted {} connections); stats cluster: {stats:?}",
        cluster.fake(2).accepted()
    );
}

/// A node that can reach no owner of a key does not answer a miss for it (a
/// miss is an owner's answer): the get, and a multi-key get that names it
/// beside keys the node could read, is answered `SERVER_ERROR`.
#[test]
fn a_get_no_owner_answers_is_a_server_error_not_a_miss() {
    let Some(cluster) = beside_a_hung_peer(1) else {
        return;
    };
    let key_of = |node: u32| cluster.key_owned("reach", |owners| owners == [node]);
    let (here, there) = (key_of(1), key_of(2));
    let mut client = cluster.client(1);
    client.set(&here, b"value");
    cluster.fake(2).misbehave();
    let unreachable = "SERVER_ERROR no owner of this key is reachable\\r\\n";
    for request in [
        format!("get {there}\r\n"),
        format!("get {here} {there}\r\n"),
        format!("gets {there} {here}\r\n"),
        // Again, now that the hung node is skipped without a timeout.
        format!("get {here} {there}\r\n"),
    ] {
        let reply = client.call(request.as_bytes(), b"\r\n");
        assert_eq!(show(&reply), unreachable, "{request:?}");
    }
    // The connection is in step, and the keys it can read are served.
    assert_eq!(client.get(&here).as_deref(), Some(&b"value"[..]));
}

/// A `set` sent to the only owner of its key, which then does not answer, may
/// have been applied there (only its answer lost): its client is told the
/// outcome is unknown, not that no owner was reachable, though no other owner
/// may take it. A `set` of that owner's keys once it is skipped is never sent,
/// and is refused.
#[test]
fn a_set_its_only_owner_did_not_answer_is_of_unknown_outcome() {
    let Some(cluster) = beside_a_hung_peer(1) else {
        return;
    };
    let there = cluster.key_owned("unknown", |owners| owners == [2]);
    cluster.fake(2).misbehave();
    let mut client = cluster.client(1);
    let set = format!("set {there} 0 0 1\r\nv\r\n");
    let reply = client.call(set.as_bytes(), b"\r\n");
    assert_eq!(
        show(&reply),
        "SERVER_ERROR the key's owner did not answer; the write may have been applied\\r\\n",
        "the set that met the timeout"
    );
    let reply = client.call(set.as_bytes(), b"\r\n");
    assert_eq!(
        show(&reply),
        "SERVER_ERROR no owner of this key is reachable\\r\\n",
        "the set sent nowhere, the owner being skipped"
    );
}

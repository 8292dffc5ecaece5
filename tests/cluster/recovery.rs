//! A node that comes back: restarted, it is not primary for writes until it
//! has recovered what it missed; a removal meets a stale copy during recovery
//! and wins; paused, it catches up from the hints kept for it or, past their
//! bound, by copying afresh (does I/O: real node processes, signals).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::requests::{
    assert_owners_hold, curr_items, items, set_many, wait_for_local, Local, LocalReader,
};
use crate::common::{Cluster, Layout, READY_TIMEOUT};
use crate::support::{self, show, REPLY_TIMEOUT};

/// A node that restarts is not primary for writes until it has recovered what
/// it missed: its clients' writes go to another owner, even one that does not
/// answer at once, instead of being applied to the restarted node's empty
/// store (where an incr answered NOT_FOUND); it answers no false miss, and
/// once the other owner answers again it copies what they share from it.
#[test]
fn a_recovering_node_is_not_primary_for_writes() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    // `all`: node 2 holds the counter before the client is told it is stored.
    let mut cluster = Cluster::start(&Layout::real(2, 1, 2, "all").with_peer_timeout_ms(500));
    let counter = cluster.key_owned("counter", |owners| owners[0] == 1);
    cluster.client(2).set(&counter, b"10");
    // Node 1 comes back while node 2 is paused: node 1 recovers until node 2
    // answers, and has nothing of the counter meanwhile.
    restart_node_1_while_node_2_is_paused(&mut cluster);
    // Sent to paused node 2, which got it but did not answer in time.
    assert_answer(
        &cluster,
        1,
        &format!("incr {counter} 1\r\n"),
        "SERVER_ERROR the key's owner did not answer; the write may have been applied\\r\\n",
        "incr through the recovering node",
    );
    // Nor does it answer a miss for a key it has not got back: the owner
    // that holds it is out of reach.
    let get = format!("get {counter}\r\n");
    assert_answer(
        &cluster,
        1,
        &get,
        "SERVER_ERROR no owner of this key is reachable\\r\\n",
        "get through the recovering node",
    );
    cluster.signal(2, "-CONT");
    // Once node 2 answers, node 1 copies what they share from it and serves
    // it; the incr of unknown outcome either took effect or did not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Refused (SERVER_ERROR) until node 1 has copied the counter.
        let values: Vec<String> = [1, 2]
            .iter()
            .map(|&via| {
                let mut client = cluster.client(via);
                let mut reply = client.call(get.as_bytes(), b"\r\n");
                if reply.starts_with(b"VALUE ") {
                    reply.extend(
                        client
                            .read_until(b"END\r\n", REPLY_TIMEOUT)
                            .unwrap_or_default(),
                    );
                }
                show(&reply)
            })
            .collect();
        let value = |v: &str| format!("VALUE {counter} 0 2\\r\\n{v}\\r\\nEND\\r\\n");
        if values.iter().all(|v| *v == value("10")) || values.iter().all(|v| *v == value("11")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the counter through nodes 1 and 2: {values:?}; node 1's log: {}\nnode 2's log: {}",
            cluster.log(1),
            cluster.log(2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A merge (what a node that was away pushes back) is a pushed state like a
/// copy, not a write made during the recovery: a later copy of a newer write
/// (a hint the primary replays) replaces it. Counted as a write, the merge
/// made the recovering node refuse that copy and keep the older state, which
/// it later served as the key's primary (a stale miss in the fault soak at
/// `quorum`, R=3). Node 1 is kept recovering (node 2, paused, does not push)
/// while the test, as node 2 would, sends it a merged removal and then a copy
/// of a newer item of the key.
#[test]
fn a_copy_newer_than_a_merged_state_replaces_it_during_recovery() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(&Layout::real(2, 1, 2, "all").with_peer_timeout_ms(500));
    let key = "merged:1";
    assert_eq!(cluster.owners(key).len(), 2, "both nodes own {key}");
    restart_node_1_while_node_2_is_paused(&mut cluster);
    let mut peer = cluster.member_client(1);
    let merge = format!("rc merge 1 2\r\nmd {key} q E1000\r\nmn\r\n");
    let reply = peer.call(merge.as_bytes(), b"MN\r\n");
    assert!(reply.ends_with(b"MN\r\n"), "merge: {}", show(&reply));
    let copy = format!("rc copy 1 2\r\nms {key} 5 F0 T0 E2000 q\r\nnewer\r\nmn\r\n");
    let reply = peer.call(copy.as_bytes(), b"MN\r\n");
    assert_eq!(show(&reply), "MN\\r\\n", "copy");
    assert_node_1_recovering(&cluster, "while the merge and the copy came");
    let read = format!("rc rep 1\r\nmg {key} v\r\n");
    let reply = peer.call(read.as_bytes(), b"\r\n");
    if reply.starts_with(b"VA ") {
        let rest = peer.read_until(b"\r\n", REPLY_TIMEOUT).unwrap_or_default();
        assert_eq!(
            format!("{}{}", show(&reply), show(&rest)),
            "VA 5\\r\\nnewer\\r\\n",
            "node 1's own copy of {key}"
        );
    } else {
        panic!(
            "node 1's own copy of {key}: {} (the newer copy was refused); node 1's log: {}",
            show(&reply),
            cluster.log(1)
        );
    }
    cluster.signal(2, "-CONT");
}

/// A removal is a write with a CAS unique of its own, which owners remember:
/// node 1 deletes a key while node 3 is paused and misses it, then node 1 is
/// killed (with the hint it kept for node 3). Restarted, node 1 copies the key
/// from node 2 (its removal) and from node 3 (the old value): the removal is
/// newer and wins, and node 3's stale copy is put right rather than read later.
#[test]
fn a_deleted_key_stays_deleted_when_a_recovery_meets_a_stale_copy() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(&Layout::real(3, 1, 3, "quorum").with_peer_timeout_ms(300));
    let key = cluster.key_owned("gone", |owners| owners == [1, 2, 3]);
    cluster.client(1).set(&key, b"old");
    for id in [1, 2, 3] {
        wait_for_local(&cluster, id, &key, &Local::value("old"), "after the set");
    }
    cluster.signal(3, "-STOP");
    assert_answer(
        &cluster,
        1,
        &format!("delete {key}\r\n"),
        "DELETED\\r\\n",
        "delete with node 3 paused",
    );
    wait_for_local(&cluster, 2, &key, &Local::Miss, "after the delete");
    // Long past node 1's peer timeout: node 3 notices its pause when resumed
    // and takes nothing node 1 sent meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill9(1);
    cluster.signal(3, "-CONT");
    cluster.restart(1);
    let deadline = Instant::now() + READY_TIMEOUT;
    while cluster.stats_cluster(1)["node_state"] != "serving" {
        assert!(
            Instant::now() < deadline,
            "node 1 did not settle: {}",
            cluster.log(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_gone_through_and_at(&cluster, &key, &[1, 2, 3], "after the recovery");
}

/// A key deleted, set again and deleted again at the same primary: the second
/// delete takes a CAS unique above the second item's, not the unique of the
/// removal the primary still remembers from the first delete. The replica,
/// paused through the second delete, is sent the removal when it is back; with
/// the old unique the removal lost to the replica's newer item, which was then
/// pushed back to the primary, and the deleted key was served again.
#[test]
fn a_key_deleted_again_after_a_new_set_stays_deleted() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 1, 2, "one").with_peer_timeout_ms(300));
    let key = cluster.key_owned("again", |owners| owners == [1, 2]);
    let mut client = cluster.client(1);
    let delete = format!("delete {key}\r\n");
    client.set(&key, b"first");
    wait_for_local(
        &cluster,
        2,
        &key,
        &Local::value("first"),
        "after the first set",
    );
    assert_eq!(
        show(&client.call(delete.as_bytes(), b"\r\n")),
        "DELETED\\r\\n"
    );
    wait_for_local(&cluster, 2, &key, &Local::Miss, "after the first delete");
    client.set(&key, b"second");
    wait_for_local(
        &cluster,
        2,
        &key,
        &Local::value("second"),
        "after the second set",
    );

    cluster.signal(2, "-STOP");
    assert_eq!(
        show(&client.call(delete.as_bytes(), b"\r\n")),
        "DELETED\\r\\n",
        "the second delete, node 2 paused"
    );
    // Past node 1's peer timeout: it keeps a hint for node 2, which notices
    // its pause when resumed and copies what it missed.
    std::thread::sleep(Duration::from_millis(1200));
    cluster.signal(2, "-CONT");
    wait_for_local(&cluster, 2, &key, &Local::Miss, "node 2 after its pause");
    // Long enough for a stale item to travel back: the key stays deleted.
    std::thread::sleep(Duration::from_millis(2000));
    assert_gone_through_and_at(&cluster, &key, &[1, 2], "at the end");
}

/// A `get` of `key` through each node of `ids` answers a miss, and then none
/// of them holds a copy of it.
fn assert_gone_through_and_at(cluster: &Cluster, key: &str, ids: &[u32], context: &str) {
    let get = format!("get {key}\r\n");
    for &via in ids {
        assert_eq!(
            show(&cluster.client(via).call(get.as_bytes(), b"END\r\n")),
            "END\\r\\n",
            "get through node {via} {context}\n{}",
            cluster.logs()
        );
    }
    for &id in ids {
        wait_for_local(cluster, id, key, &Local::Miss, context);
    }
}

/// Pauses node 3 (SIGSTOP) while keys it co-owns are overwritten and deleted,
/// resumes it, and checks that no owner is left stale: `hinted_keys_max` keys
/// per shard are remembered for it and replayed when it notices the pause, or,
/// past that bound, it drops what it shares with the peer and copies it again.
fn paused_node_catches_up(hinted_keys_max: &'static str, expect_overflow: bool) {
    let mut layout = Layout::real(3, 2, 2, "one")
        .with_peer_timeout_ms(500)
        .with_args(&["--hinted-keys-max", hinted_keys_max]);
    layout.args.push("-v");
    let cluster = Cluster::start(&layout);
    let mut items = items("pause", 400, "a");
    let mut node1 = cluster.client(1);
    set_many(&mut node1, &items, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while [1, 2, 3]
        .map(|id| curr_items(&cluster, id))
        .iter()
        .sum::<u64>()
        != 800
    {
        assert!(
            Instant::now() < deadline,
            "the keys did not reach both owners"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    cluster.signal(3, "-STOP");
    for (i, (_, value)) in items.iter_mut().enumerate() {
        *value = format!("b-{i}");
    }
    set_many(&mut node1, &items, 1);
    // Deleted while node 3 sleeps: it must not bring them back.
    let deleted: Vec<(String, String)> = items.drain(..40).collect();
    for (key, _) in &deleted {
        let reply = node1.call(format!("delete {key}\r\n").as_bytes(), b"\r\n");
        assert_eq!(show(&reply), show(b"DELETED\r\n"), "delete {key}");
    }
    let hinted: u64 = [1, 2]
        .iter()
        .map(|&id| {
            cluster.stats_cluster(id)["hinted_keys"]
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    if !expect_overflow {
        assert!(hinted > 0, "no hints were kept for the paused node");
    }
    // Long enough past node 3's pause threshold (100 ms + its peer timeout)
    // that it notices, however fast the writes above went.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.signal(3, "-CONT");

    let deadline = Instant::now() + READY_TIMEOUT;
    while !cluster.log(3).contains("recovered (Hints)") {
        assert!(
            Instant::now() < deadline,
            "node 3 did not recover after its pause; log:\n{}",
            cluster.log(3)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_until_serving(3, &[], Instant::now() + READY_TIMEOUT);
    assert_eq!(
        cluster.log(3).contains("dropped its hints for this node"),
        expect_overflow,
        "whether the hints overflowed; node 3 log:\n{}",
        cluster.log(3)
    );
    if std::env::var("RINGCACHE_SHOW_LOGS").is_ok() {
        eprintln!("{}", cluster.logs());
    }
    assert_owners_hold(&cluster, &items, "after node 3 resumed");
    let mut readers: HashMap<u32, LocalReader> =
        [1, 2, 3].map(|id| (id, cluster.local_reader(id))).into();
    let mut resurrected = Vec::new();
    for (key, _) in &deleted {
        for owner in cluster.owners(key) {
            let reader = readers.get_mut(&owner).unwrap();
            let copy = reader.mg(key);
            if copy != Local::Miss {
                resurrected.push(format!(
                    "{key} at node {owner} (owners {:?}): {copy:?}",
                    cluster.owners(key)
                ));
            }
        }
    }
    assert!(
        resurrected.is_empty(),
        "deleted keys came back:\n{}",
        resurrected.join("\n")
    );
    for (key, _) in &deleted {
        assert_eq!(node1.get(key), None, "deleted {key} read through node 1");
    }
}

#[test]
fn paused_node_replays_its_hints_before_it_serves() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    paused_node_catches_up("100000", false);
}

#[test]
fn paused_node_past_the_hint_bound_copies_afresh() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    paused_node_catches_up("10", true);
}

/// Kills node 1 and restarts it while node 2 is paused (SIGSTOP): node 1
/// recovers until node 2 answers.
fn restart_node_1_while_node_2_is_paused(cluster: &mut Cluster) {
    cluster.kill9(1);
    cluster.signal(2, "-STOP");
    cluster.restart(1);
    assert_node_1_recovering(cluster, "after its restart");
}

/// Node 1 says `node_state recovering`.
fn assert_node_1_recovering(cluster: &Cluster, when: &str) {
    assert_eq!(
        cluster
            .stats_cluster(1)
            .get("node_state")
            .map(String::as_str),
        Some("recovering"),
        "node 1 {when}"
    );
}

/// `request`, sent through node `via`, is answered with the one line
/// `expected` (as [`show`] writes it).
fn assert_answer(cluster: &Cluster, via: u32, request: &str, expected: &str, context: &str) {
    let reply = cluster.client(via).call(request.as_bytes(), b"\r\n");
    assert_eq!(show(&reply), expected, "{context}");
}

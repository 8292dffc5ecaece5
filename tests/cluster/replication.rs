//! Replication: with R copies, every key is held by exactly its R owners and
//! each owner's own copy is right; a `touch` reaches the replica, and
//! `flush_all` on one node empties every node (does I/O: real node processes).

use std::collections::HashMap;

use crate::common::requests::{
    assert_all_read, curr_items, get_many, items, set_many, Local, LocalReader,
};
use crate::common::{Cluster, Layout, BATCH};
use crate::support::{self, show};

/// With R=2 and every write acknowledged by both owners, 10,000 keys set
/// through one node read back through the two others, the nodes together hold
/// exactly 20,000 items, each node exactly the keys placement gives it, and
/// each owner's own copy is right while a non-owner refuses local reads.
#[test]
fn three_nodes_two_replicas_hold_every_key_twice() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(3, 2, 2, "all"));
    let items = items("twice", 10_000, "v");
    set_many(&mut cluster.client(1), &items, 1);
    for via in [2, 3] {
        assert_all_read(&mut cluster.client(via), &items, via);
    }

    let mut expected: HashMap<u32, u64> = HashMap::new();
    for (key, _) in &items {
        let owners = cluster.owners(key);
        assert_eq!(owners.len(), 2, "{key} has owners {owners:?}");
        for owner in owners {
            *expected.entry(owner).or_default() += 1;
        }
    }
    let held: Vec<(u32, u64)> = [1, 2, 3]
        .into_iter()
        .map(|id| (id, curr_items(&cluster, id)))
        .collect();
    let total: u64 = held.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 20_000, "curr_items per node: {held:?}");
    for (id, n) in held {
        assert_eq!(
            n, expected[&id],
            "node {id} holds {n} items; placement gives it {}",
            expected[&id]
        );
    }

    let mut readers: Vec<LocalReader> = [1, 2, 3].map(|id| cluster.local_reader(id)).into();
    let mut refusals = 0;
    for (key, value) in items.iter().step_by(20) {
        let owners = cluster.owners(key);
        for reader in &mut readers {
            let id = reader.node;
            let answer = reader.mg(key);
            if owners.contains(&id) {
                assert_eq!(
                    answer,
                    Local::value(value),
                    "the copy of {key} at owner node {id} (owners {owners:?})"
                );
            } else {
                assert!(
                    matches!(&answer, Local::Other(line) if line.starts_with("SERVER_ERROR not an owner")),
                    "node {id} does not own {key} (owners {owners:?}) but answered {answer:?}"
                );
                refusals += 1;
            }
        }
    }
    assert_eq!(refusals, 500, "each sampled key has exactly one non-owner");
}

/// `touch` keeps an item's CAS unique and changes its expiry: the replica
/// takes the new expiry though the unique is the one it holds.
#[test]
fn a_touch_reaches_the_replica() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 1, 2, "all"));
    let key = cluster.key_owned("touched", |owners| owners == [1, 2]);
    cluster.client(1).set(&key, b"v");
    let touch = format!("touch {key} 5000\r\n");
    let reply = cluster.client(1).call(touch.as_bytes(), b"\r\n");
    assert_eq!(show(&reply), "TOUCHED\\r\\n");
    let mut replica = cluster.member_client(2);
    let request = format!("rc rep 1\r\nmg {key} t\r\n");
    let reply = show(&replica.call(request.as_bytes(), b"\r\n"));
    let ttl: i64 = reply
        .strip_prefix("HD t")
        .and_then(|t| t.strip_suffix("\\r\\n"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the replica's copy: {reply}"));
    assert!(
        ttl > 4000,
        "the replica's copy has ttl {ttl}, not the touched one"
    );
}

/// `flush_all` sent to one node empties every node: every key misses through
/// a third node and at each of its owners.
#[test]
fn flush_all_on_one_node_flushes_the_cluster() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(3, 2, 2, "all"));
    let items = items("flush", 200, "f");
    set_many(&mut cluster.client(1), &items, 1);
    assert_all_read(&mut cluster.client(3), &items, 3);

    let reply = cluster.client(2).call(b"flush_all\r\n", b"\r\n");
    assert_eq!(show(&reply), "OK\\r\\n");

    let mut node3 = cluster.client(3);
    for batch in items.chunks(BATCH) {
        let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
        let found = get_many(&mut node3, &keys, 3);
        assert!(
            found.is_empty(),
            "after flush_all, {} of {} keys still read via node 3, e.g. {:?}",
            found.len(),
            keys.len(),
            found[0].0
        );
    }
    let mut readers: HashMap<u32, LocalReader> =
        [1, 2, 3].map(|id| (id, cluster.local_reader(id))).into();
    for (key, _) in &items {
        for owner in cluster.owners(key) {
            let answer = readers.get_mut(&owner).expect("a real node").mg(key);
            assert_eq!(
                answer,
                Local::Miss,
                "after flush_all, {key} at its owner node {owner}"
            );
        }
    }
}

/// Two nodes, R=2, `write_ack = "all"`, one shard each: clients writing
/// through both nodes at once make each node forward writes to the other
/// while it replicates its own to it. No write waits on the other's (forwarded
/// requests and replicated items travel on separate connections), so no peer
/// ever times out and every write succeeds. On one connection each node's
/// forwarded write waited behind the other's for a replica acknowledgement
/// queued behind it, until the peer timeout broke the cycle.
#[test]
fn writes_through_both_nodes_at_once_never_wait_for_each_other() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 1, 2, "all").with_peer_timeout_ms(2000));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let writers: Vec<_> = (0..4u32)
        .map(|i| {
            let mut client = cluster.client(1 + i % 2);
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut sent = 0u32;
                while std::time::Instant::now() < until {
                    let key = format!("both:{}", sent % 200);
                    let set = format!("set {key} 0 0 2\r\n{:02}\r\n", sent % 100);
                    let reply = show(&client.call(set.as_bytes(), b"\r\n"));
                    if reply != "STORED\\r\\n" {
                        failures.push(reply);
                    }
                    sent += 1;
                }
                (sent, failures)
            })
        })
        .collect();
    let mut sent = 0;
    for writer in writers {
        let (count, failures) = writer.join().expect("writer");
        assert!(failures.is_empty(), "writes failed: {failures:?}");
        sent += count;
    }
    for id in [1, 2] {
        let stats = cluster.stats_cluster(id);
        assert_eq!(
            stats["peer_timeouts"],
            "0",
            "node {id} timed out on its peer during {sent} writes\n{}",
            cluster.logs()
        );
    }
}

/// A replicated item older than the state an owner holds (a smaller CAS
/// unique) is neither applied nor acknowledged. A stand-in and the primary it
/// hands back to may each apply a write to their own copy at the hand-over
/// (an R=2 `all` counter answered 97 and 99 from one count of 96); had each
/// owner taken the other's item as it came, or acknowledged it unapplied,
/// both writes would count. Only the newer does; the older one's client is
/// told `SERVER_ERROR` (its outcome is unknown to it). An item a primary gave
/// up on, read late from the connection it abandoned, is kept out the same
/// way. The test sends node 1 what such primaries would: a newer item, then
/// an older one, then an older removal.
#[test]
fn a_replicated_item_older_than_the_copy_held_is_refused() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(2, 1, 2, "all"));
    let key = "late:1";
    let mut peer = cluster.member_client(1);
    let refused = "SERVER_ERROR older than the state held\\r\\nMN\\r\\n";
    for (what, record, answer) in [
        (
            "the newer item",
            format!("ms {key} 3 F0 T0 E5000 q\r\nnew\r\n"),
            "MN\\r\\n",
        ),
        (
            "an older item",
            format!("ms {key} 3 F0 T0 E4000 q\r\nold\r\n"),
            refused,
        ),
        ("an older removal", format!("md {key} q E4500\r\n"), refused),
    ] {
        let request = format!("rc rep 1\r\n{record}mn\r\n");
        let reply = peer.call(request.as_bytes(), b"MN\r\n");
        assert_eq!(show(&reply), answer, "{what}");
    }
    assert_eq!(
        cluster.local_reader(1).mg(key),
        Local::value("new"),
        "node 1's own copy of {key}"
    );
    // A newer removal is taken, and the same removal again (a `delete` of
    // a key deleted already sends it) is acknowledged (`NF`: nothing left).
    for (what, answer) in [
        ("a newer removal", "MN\\r\\n"),
        ("the same removal again", "NF\\r\\nMN\\r\\n"),
    ] {
        let request = format!("rc rep 1\r\nmd {key} q E6000\r\nmn\r\n");
        let reply = peer.call(request.as_bytes(), b"MN\r\n");
        assert_eq!(show(&reply), answer, "{what}");
    }
    assert_eq!(
        cluster.local_reader(1).mg(key),
        Local::Miss,
        "after the removal"
    );
    // Through the cluster, a delete of a missing key is answered NOT_FOUND
    // however often it is sent.
    let mut client = cluster.client(2);
    for _ in 0..3 {
        let reply = client.call(format!("delete {key}\r\n").as_bytes(), b"\r\n");
        assert_eq!(show(&reply), "NOT_FOUND\\r\\n", "delete {key} again");
    }
}

/// Three nodes, R=3, `write_ack = "quorum"`: a primary answers a write as soon
/// as enough owners have acknowledged it, whichever answers first. With the
/// first replica in ring order paused, the other replica's acknowledgement is
/// enough, and the write is answered before the paused owner's timeout fires
/// (`peer_timeouts` is still 0). Waiting for the replicas one at a time in
/// ring order held every such write for a whole peer timeout; a node that had
/// forwarded it gave up on the primary at the same moment, took the healthy
/// primary for unreachable and told its client the outcome was unknown.
#[test]
fn a_quorum_write_is_answered_once_enough_owners_acknowledge_in_any_order() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(3, 1, 3, "quorum").with_peer_timeout_ms(5000));
    let key = cluster.key_owned("first-replica-paused", |owners| owners == [1, 2, 3]);
    let mut client = cluster.client(1);
    client.set(&key, b"before");
    cluster.signal(2, "-STOP");
    let reply = show(&client.call(format!("set {key} 0 0 5\r\nafter\r\n").as_bytes(), b"\r\n"));
    let timeouts = cluster.stats_cluster(1)["peer_timeouts"].clone();
    cluster.signal(2, "-CONT");
    assert_eq!(reply, "STORED\\r\\n", "{}", cluster.logs());
    assert_eq!(
        timeouts,
        "0",
        "the write waited for the paused owner's timeout\n{}",
        cluster.logs()
    );
    assert_eq!(client.get(&key).as_deref(), Some(&b"after"[..]));
}

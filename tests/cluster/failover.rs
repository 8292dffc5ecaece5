//! Nodes that die: a node killed with SIGKILL under load costs no hung or
//! failed request and no lost key, and copies its keys back when restarted;
//! with consensus a dead node is marked down by a decision and up again when
//! it returns, writes at `quorum` succeed once it is down, and automatic
//! mark-downs stop at R - 1 nodes (does I/O: real node processes, signals).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::requests::{
    assert_all_read, assert_owners_hold, curr_items, items, set_many, wait_for_epoch,
    wait_for_local, Local,
};
use crate::common::traffic::{start_traffic, Written};
use crate::common::{Cluster, Layout, READY_TIMEOUT};
use crate::support::{self, show};

/// A node killed with SIGKILL under load: no request through a surviving node
/// hangs or fails, no key is lost, writes keep working, and the node restarted
/// with the same command line copies back the latest value of every key it
/// co-owns before it says it serves.
#[test]
fn kill_nine_keeps_keys_readable_and_restart_recovers() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(&Layout::real(3, 2, 2, "one").with_peer_timeout_ms(1000));
    let mut items = items("nine", 2_000, "a");
    let mut node1 = cluster.client(1);
    set_many(&mut node1, &items, 1);
    // With write_ack "one" the second copy follows the reply: wait for it, so
    // that the kill below cannot race replication of these keys.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: Vec<u64> = [1, 2, 3].map(|id| curr_items(&cluster, id)).into();
        if held.iter().sum::<u64>() == 4_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 2,000 keys were not all on 2 nodes within 10 s: curr_items {held:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let seed = support::seed_from_env_or_clock();
    eprintln!("kill_nine_keeps_keys_readable_and_restart_recovers: RINGCACHE_SEED={seed}");
    let (stop, traffic) = start_traffic(&cluster, 1, seed);
    std::thread::sleep(Duration::from_millis(500));
    let kill_sent = Instant::now();
    cluster.kill9(3);
    let kill_done = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    for via in [1, 2] {
        assert_all_read(&mut cluster.client(via), &items, via);
    }
    for (i, (_, value)) in items.iter_mut().enumerate() {
        if i % 4 == 0 {
            *value = format!("b-{i}");
        }
    }
    let overwritten: Vec<(String, String)> = items.iter().step_by(4).cloned().collect();
    assert_eq!(overwritten.len(), 500);
    set_many(&mut node1, &overwritten, 1);

    stop.store(true, Ordering::SeqCst);
    let traffic = traffic.join().expect("the client thread panicked");
    assert!(
        traffic.errors.is_empty(),
        "the client thread failed (seed {seed}): {:?}",
        traffic.errors
    );
    assert!(
        traffic.requests >= 100,
        "the client thread made only {} requests",
        traffic.requests
    );
    // write_ack "one": a write node 3 applied as primary just before it died may
    // not have reached the other owner. Only such a write may be missed.
    let grace = Duration::from_secs(1);
    let racing_the_kill = |w: &Written| w.sent <= kill_done && w.answered + grace >= kill_sent;
    for m in &traffic.mismatches {
        let owners = cluster.owners(&m.key);
        assert!(
            owners[0] == 3 && racing_the_kill(&m.written) && m.answered >= kill_sent,
            "the client thread wrote {:?} to {} (owners {owners:?}) and read back {:?} \
             (seed {seed}; write sent {:?} and answered {:?} after the test began the kill, \
             read answered {:?} after)",
            m.written.value,
            m.key,
            m.got,
            m.written.sent.checked_duration_since(kill_sent),
            m.written.answered.checked_duration_since(kill_sent),
            m.answered.checked_duration_since(kill_sent),
        );
    }

    cluster.restart(3);
    cluster.wait_until_serving(3, &[], Instant::now() + READY_TIMEOUT);
    assert_owners_hold(&cluster, &items, "after node 3 restarted");
    let mut live: Vec<(String, String)> = traffic
        .written
        .iter()
        .filter(|(_, w)| !racing_the_kill(w))
        .map(|(k, w)| (k.clone(), w.value.clone()))
        .collect();
    live.sort();
    assert_owners_hold(
        &cluster,
        &live,
        "after node 3 restarted (client thread's keys)",
    );
}

/// Failure detection through Paxos: a node killed with SIGKILL is suspected by
/// the others, and once a majority has found it unreachable for
/// `--failover-timeout-ms`, a decision marks it down (reads go to the other
/// owners first); restarted, it is reachable again and a decision marks it up.
/// A client running throughout sees no error.
#[test]
fn a_dead_node_is_marked_down_by_a_decision_and_back_up() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(
        &Layout::real(3, 2, 2, "one")
            .with_consensus()
            .with_peer_timeout_ms(1000)
            .with_args(&["--failover-timeout-ms", "1000"]),
    );
    let seed = support::seed_from_env_or_clock();
    eprintln!("a_dead_node_is_marked_down_by_a_decision_and_back_up: RINGCACHE_SEED={seed}");
    let (stop, traffic) = start_traffic(&cluster, 1, seed);
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    cluster.kill9(3);
    let deadline = Instant::now() + READY_TIMEOUT;
    cluster.wait_for_node_state(1, 3, "down", deadline);
    eprintln!("node 3 marked down {:?} after SIGKILL", killed.elapsed());
    let epoch: u64 = cluster.stats_cluster(1)["epoch"].parse().unwrap();
    wait_for_epoch(&cluster, &[2], epoch);

    let restarted = Instant::now();
    cluster.restart(3);
    cluster.wait_for_node_state(1, 3, "up", deadline + READY_TIMEOUT);
    eprintln!(
        "node 3 marked up {:?} after its restart",
        restarted.elapsed()
    );
    wait_for_epoch(
        &cluster,
        &[3],
        cluster.stats_cluster(1)["epoch"].parse().unwrap(),
    );
    stop.store(true, Ordering::SeqCst);
    let traffic = traffic.join().expect("the client thread panicked");
    assert!(
        traffic.errors.is_empty(),
        "the client saw errors (seed {seed}): {:?}",
        traffic.errors
    );
}

/// `write_ack` counts the owners that are up: with R=2 and `quorum` (both
/// copies), writes whose other owner is dead fail only until a decision marks
/// it down, and then every write through the survivors succeeds.
#[test]
fn writes_at_quorum_succeed_once_a_dead_owner_is_marked_down() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(
        &Layout::real(3, 1, 2, "quorum")
            .with_consensus()
            .with_peer_timeout_ms(1000)
            .with_args(&["--failover-timeout-ms", "1000"]),
    );
    cluster.kill9(3);
    cluster.wait_for_node_state(1, 3, "down", Instant::now() + READY_TIMEOUT);
    let epoch: u64 = cluster.stats_cluster(1)["epoch"].parse().unwrap();
    wait_for_epoch(&cluster, &[1, 2], epoch);
    for via in [1, 2] {
        let items = items(&format!("after-down-{via}"), 300, "d");
        assert!(
            items.iter().any(|(k, _)| cluster.owners(k).contains(&3)),
            "some keys are shared with the dead node"
        );
        set_many(&mut cluster.client(via), &items, via);
        assert_all_read(&mut cluster.client(3 - via), &items, 3 - via);
    }
}

/// The cap on automatic mark-downs: with R=2, at most one node is down at a
/// time, so every key keeps an owner that is up, however many nodes die.
#[test]
fn automatic_mark_downs_stop_at_replicas_minus_one() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(
        &Layout::real(5, 1, 2, "one")
            .with_consensus()
            .with_peer_timeout_ms(1000)
            .with_args(&["--failover-timeout-ms", "1000", "-v"]),
    );
    cluster.kill9(4);
    cluster.kill9(5);
    let deadline = Instant::now() + READY_TIMEOUT;
    let down = |cluster: &Cluster| {
        let stats = cluster.stats_cluster(1);
        [4, 5]
            .iter()
            .filter(|id| stats[&format!("node:{id}:state")] == "down")
            .count()
    };
    while down(&cluster) == 0 {
        assert!(
            Instant::now() < deadline,
            "no node was marked down\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Well past more failover timeouts: still only one.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(down(&cluster), 1, "{:?}", cluster.stats_cluster(1));
    assert!(cluster.log(1).contains("proposing node") || cluster.log(2).contains("proposing node"));
}

/// What a client of the survivors sees when one node of three dies, with R=2
/// and `write_ack = "quorum"` under Paxos: the share of operations that
/// succeed, the longest wait and why the others failed, before the kill,
/// between the kill and the decision that marks the node down, and after it.
/// A measurement, printed, not a test of timing: `scripts/availability.sh`
/// runs it (with CPU hogs beside the nodes when asked);
/// `writes_at_quorum_succeed_once_a_dead_owner_is_marked_down` is the suite's
/// test of the same failover.
#[test]
#[ignore = "a measurement: scripts/availability.sh"]
fn availability_with_one_of_three_killed() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let peer_timeout_ms = 250;
    // R=3 makes `quorum` fewer than all owners: the survivors then take over
    // with a copy once the dead node is marked down.
    let replicas = std::env::var("RINGCACHE_AVAILABILITY_REPLICAS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let mut cluster = Cluster::start(
        &Layout::real(3, 1, replicas, "quorum")
            .with_consensus()
            .with_peer_timeout_ms(peer_timeout_ms)
            .with_args(&["--failover-timeout-ms", "3000"]),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..4u32)
        .map(|i| {
            let node = cluster.node(1 + i % 2);
            let (ip, port) = (node.ip.clone(), node.port);
            let stop = stop.clone();
            std::thread::spawn(move || availability_client(&ip, port, i as u64, &stop, started))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let killed = started.elapsed();
    cluster.kill9(3);
    cluster.wait_for_node_state(1, 3, "down", Instant::now() + READY_TIMEOUT);
    cluster.wait_for_node_state(2, 3, "down", Instant::now() + READY_TIMEOUT);
    let down = started.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    let ops: Vec<Op> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    let phase = |name: &str, from: Duration, to: Duration| {
        let within: Vec<&Op> = ops
            .iter()
            .filter(|op| op.at >= from && op.at < to)
            .collect();
        let ok = within.iter().filter(|op| op.failure.is_none()).count();
        let longest = within.iter().map(|op| op.took).max().unwrap_or_default();
        let mut why = std::collections::BTreeMap::<&str, usize>::new();
        for failure in within.iter().filter_map(|op| op.failure.as_deref()) {
            *why.entry(failure).or_default() += 1;
        }
        println!(
            "availability: {name:<24} {:>6} ops {:>7.3}% ok, longest {:>4} ms (peer timeout {peer_timeout_ms} ms); failed: {why:?}",
            within.len(),
            100.0 * ok as f64 / within.len().max(1) as f64,
            longest.as_millis()
        );
    };
    let seconds = ops.iter().map(|op| op.at.as_secs()).max().unwrap_or(0);
    let timeline: Vec<String> = (0..=seconds)
        .map(|second| {
            let within: Vec<&Op> = ops.iter().filter(|op| op.at.as_secs() == second).collect();
            let ok = within.iter().filter(|op| op.failure.is_none()).count();
            format!("{:.0}", 100.0 * ok as f64 / within.len().max(1) as f64)
        })
        .collect();
    println!(
        "availability: % ok per second: {} (killed at {:.1} s, marked down at {:.1} s)",
        timeline.join(" "),
        killed.as_secs_f64(),
        down.as_secs_f64()
    );
    phase("before the kill", Duration::ZERO, killed);
    phase("kill to marked down", killed, down);
    phase("after marked down", down, Duration::MAX);
    let logs = cluster.logs();
    for line in logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(30)
    {
        println!("availability: log: {line}");
    }
}

/// One operation of [`availability_client`].
struct Op {
    /// When it was sent, since the run started.
    at: Duration,
    took: Duration,
    /// Why it failed: the reply's first line, or `no reply`.
    failure: Option<String>,
}

/// Sets and gets random keys through `ip:port` until `stop`, one request at a
/// time. A request unanswered in 2 s fails, and the client reconnects.
fn availability_client(
    ip: &str,
    port: u16,
    seed: u64,
    stop: &std::sync::atomic::AtomicBool,
    started: Instant,
) -> Vec<Op> {
    let mut rng = support::Rng::new(seed);
    let mut ops = Vec::new();
    let mut client = support::Client::try_connect_at(ip, port).expect("connect");
    let wait = Duration::from_secs(2);
    while !stop.load(Ordering::SeqCst) {
        let key = format!("avail:{}", rng.below(1000));
        let sent = Instant::now();
        let line = |reply: Result<Vec<u8>, _>| match reply {
            Ok(line) => support::show(&line),
            Err(_) => "no reply".to_string(),
        };
        let failure = if rng.chance(50) {
            client.send(format!("set {key} 0 0 2\r\nok\r\n").as_bytes());
            Some(line(client.read_until(b"\r\n", wait))).filter(|l| l != "STORED\\r\\n")
        } else {
            client.send(format!("get {key}\r\n").as_bytes());
            loop {
                let first = line(client.read_until(b"\r\n", wait));
                if !first.starts_with("VALUE") {
                    break Some(first).filter(|l| l != "END\\r\\n");
                }
                if client.read_until(b"\r\n", wait).is_err() {
                    break Some("no reply".to_string());
                }
            }
        };
        let failed = failure.is_some();
        ops.push(Op {
            at: sent - started,
            took: sent.elapsed(),
            failure,
        });
        if failed {
            // Start afresh: a late reply must not be read as the next one's.
            client = support::Client::try_connect_at(ip, port).expect("reconnect");
        }
    }
    ops
}

/// R=3 `quorum`: writes acknowledged by their primary and one replica while
/// the third owner was paused (only the primary keeps hints for it), then the
/// primary killed. Once a decision marks the primary down, the owner that
/// takes over copies what the other owners hold before it serves those keys,
/// so every read through every survivor sees the acknowledged writes.
#[test]
fn the_owner_taking_over_from_a_dead_primary_first_copies_what_the_others_hold() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let (mut cluster, keys) = quorum_of_three("1500", "takeover", 20);
    let old: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), "old".into())).collect();
    let new: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), "new".into())).collect();
    set_many(&mut cluster.client(1), &old, 1);
    assert_all_read(&mut cluster.client(2), &old, 2);
    write_past_node_2_then_kill_node_1(&mut cluster, |cluster| {
        set_many(&mut cluster.client(1), &new, 1)
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    cluster.wait_for_node_state(2, 1, "down", deadline);
    cluster.wait_for_node_state(3, 1, "down", deadline);
    for via in [2, 3] {
        let mut client = cluster.client(via);
        for key in &keys {
            // Refused while the new primary copies (the outcome is then
            // unknown to a client); never the old value.
            let value = loop {
                let reply = client.call(format!("get {key}\r\n").as_bytes(), b"\r\n");
                if reply.starts_with(b"VALUE") {
                    let rest = client.read_until(b"END\r\n", Duration::from_secs(5));
                    break [reply, rest.unwrap_or_default()].concat();
                }
                if !reply.starts_with(b"SERVER_ERROR") {
                    break reply;
                }
                assert!(Instant::now() < deadline, "{key} via node {via}: refused");
                std::thread::sleep(Duration::from_millis(20));
            };
            let shown = String::from_utf8_lossy(&value).into_owned();
            assert!(
                shown.contains("\r\nnew\r\n"),
                "{key} via node {via}: {shown:?} after the write of \"new\" was acknowledged\n{}",
                cluster.logs()
            );
        }
    }
}

/// R=3 `quorum`, no decision (the failover timeout is long): counters counted
/// on by their primary (node 1) and node 3 while node 2 was paused, so only
/// node 1 kept hints for node 2; then node 1 killed, and restarted while node
/// 3, the one other node holding those counts, is paused. Node 1 copies from
/// node 2 alone and so lacks what it shares with node 3. No other owner may
/// take its keys meanwhile: node 2, standing in, counted on from the count it
/// held before its pause (an incr answered 1 where 5 had been acknowledged,
/// and its replicated item overwrote node 3's copy once node 3 ran again).
/// The counters are refused until node 1 has copied from node 3, then count
/// on from 5.
#[test]
fn no_owner_stands_in_with_an_older_count_for_a_restarted_primary() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let (mut cluster, counters) = quorum_of_three("60000", "count", 5);
    let zero: Vec<(String, String)> = counters.iter().map(|k| (k.clone(), "0".into())).collect();
    set_many(&mut cluster.client(1), &zero, 1);
    for id in [2, 3] {
        for key in &counters {
            wait_for_local(&cluster, id, key, &Local::value("0"), "after the set");
        }
    }
    write_past_node_2_then_kill_node_1(&mut cluster, |cluster| {
        let mut client = cluster.client(1);
        for key in &counters {
            let reply = client.call(format!("incr {key} 5\r\n").as_bytes(), b"\r\n");
            assert_eq!(show(&reply), "5\\r\\n", "incr {key} with node 2 paused");
        }
    });
    cluster.wait_until_serving(2, &[3], Instant::now() + READY_TIMEOUT);
    cluster.signal(3, "-STOP");
    cluster.restart(1);
    // Node 1 cannot copy from node 3: every count answered meanwhile, through
    // either node, must come from 5.
    let mut counted = vec![0u64; counters.len()];
    let mut refused = 0;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        for via in [1, 2] {
            let mut client = cluster.client(via);
            for (i, key) in counters.iter().enumerate() {
                let reply = show(&client.call(format!("incr {key} 1\r\n").as_bytes(), b"\r\n"));
                match reply.trim_end_matches("\\r\\n").parse::<u64>() {
                    Ok(n) => {
                        counted[i] += 1;
                        assert_eq!(
                            n,
                            5 + counted[i],
                            "incr {key} through node {via} while node 3 is paused\n{}",
                            cluster.logs()
                        );
                    }
                    Err(_) => {
                        assert!(reply.starts_with("SERVER_ERROR"), "{key}: {reply}");
                        refused += 1;
                    }
                }
            }
        }
    }
    assert!(refused > 0, "node 1 served before it copied from node 3");
    cluster.signal(3, "-CONT");
    // Once node 1 has copied from node 3, the counters count on from where
    // they were, through every node.
    for (i, key) in counters.iter().enumerate() {
        let want = format!("{}\\r\\n", 5 + counted[i] + 1);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let reply = show(
                &cluster
                    .client(2)
                    .call(format!("incr {key} 1\r\n").as_bytes(), b"\r\n"),
            );
            if reply == want {
                counted[i] += 1;
                break;
            }
            assert!(
                reply.starts_with("SERVER_ERROR") && Instant::now() < deadline,
                "incr {key} after node 3 resumed: {reply}, not {want}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A 3-node Paxos cluster at R=3 `quorum` (peer timeout 300 ms, the failover
/// timeout given) and `count` keys `<prefix>:<n>` whose owners are nodes 1,
/// 2 and 3, in that order.
fn quorum_of_three(
    failover_ms: &'static str,
    prefix: &str,
    count: usize,
) -> (Cluster, Vec<String>) {
    let cluster = Cluster::start(
        &Layout::real(3, 1, 3, "quorum")
            .with_consensus()
            .with_peer_timeout_ms(300)
            .with_args(&["--failover-timeout-ms", failover_ms]),
    );
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| cluster.owners(k) == [1, 2, 3])
        .take(count)
        .collect();
    assert_eq!(
        keys.len(),
        count,
        "keys whose primary is node 1, then node 2"
    );
    (cluster, keys)
}

/// Runs `write` while node 2 is paused, so node 3 acknowledges it with node 1
/// and only node 1 keeps hints for node 2; then kills node 1 and resumes node
/// 2, once it has been paused long enough to notice and take nothing node 1
/// sent it meanwhile (it would otherwise apply node 1's replicated items).
fn write_past_node_2_then_kill_node_1(cluster: &mut Cluster, write: impl FnOnce(&Cluster)) {
    cluster.signal(2, "-STOP");
    write(cluster);
    std::thread::sleep(Duration::from_millis(800));
    cluster.kill9(1);
    cluster.signal(2, "-CONT");
}

/// Node 2, stopped with SIGSTOP, is marked down by the leader (node 1), which
/// is killed as node 2 resumes, before it marks node 2 up again. Node 3 then
/// leaves proposals to node 2, the lowest acceptor it reaches, and node 2 to
/// itself: node 2 marks itself up. (Before, a proposer never marked itself,
/// and node 2 stayed down for good.)
#[test]
fn a_node_marked_down_that_is_left_to_propose_marks_itself_up() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(
        &Layout::real(3, 1, 3, "quorum")
            .with_consensus()
            .with_peer_timeout_ms(300)
            .with_args(&["--failover-timeout-ms", "1000"]),
    );
    cluster.signal(2, "-STOP");
    cluster.wait_for_node_state(3, 2, "down", Instant::now() + READY_TIMEOUT);
    cluster.signal(2, "-CONT");
    cluster.kill9(1);
    cluster.wait_for_node_state(3, 2, "up", Instant::now() + READY_TIMEOUT);
}

//! The configuration and the members: SIGHUP puts a newer cluster file in
//! force under load; Paxos commits changes with the leader killed or stopped;
//! nodes join (`--init`, `--join`, `cluster add`) and leave (`cluster
//! remove`) while a client runs; a node with a wiped `--data-dir` comes back
//! as a new member; a join at a live member's address is refused (does I/O:
//! real node processes, signals, files).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringcache::cluster::auth::SECRET_FILE_NAME;
use ringcache::cluster::config::ClusterConfig;

use crate::common::members::{
    ids_epochs_and_states, one_node_cluster, wait_for_item_total, wait_for_members,
    wait_for_node_state, Member, MEMBER_SHARDS,
};
use crate::common::requests::{
    admin, assert_all_read, curr_items, items, set_many, wait_for_epoch,
};
use crate::common::traffic::{start_traffic, start_traffic_at, Traffic};
use crate::common::{fresh_port, fresh_ports, Cluster, Layout, READY_TIMEOUT};
use crate::support::{self, show, Server};

/// SIGHUP makes each node read the cluster file again: a newer `epoch` is put in
/// force between requests, under a running client that sees no error and no
/// stale value, and `stats cluster` shows it on every node.
#[test]
fn sighup_swaps_in_a_newer_configuration_under_load() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = Cluster::start(&Layout::real(3, 2, 2, "quorum"));
    let seed = support::seed_from_env_or_clock();
    eprintln!("sighup_swaps_in_a_newer_configuration_under_load: RINGCACHE_SEED={seed}");
    let (stop, traffic) = start_traffic(&cluster, 1, seed);
    std::thread::sleep(Duration::from_millis(300));
    // Epoch 2: `write_ack = "all"`, and node 3 is read last. Writes before it
    // waited for both owners too (quorum of 2), so the replicas that now
    // answer node 3's reads hold every acknowledged write (under "one" they
    // may lag: see the README's known limits).
    let newer = cluster
        .text
        .replacen("write_ack = \"quorum\"", "write_ack = \"all\"", 1)
        .replacen(
            "# written by tests/cluster\n",
            "# written by tests/cluster\nepoch = 2\n",
            1,
        )
        .replacen(
            "\n[[node]]\nid = 3\n",
            "\n[[node]]\nid = 3\nstate = \"down\"\n",
            1,
        );
    assert_ne!(newer, cluster.text);
    std::fs::write(cluster.dir.join("cluster.toml"), &newer).expect("rewrite the cluster file");
    for id in [1, 2, 3] {
        cluster.signal(id, "-HUP");
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for id in [1, 2, 3] {
        loop {
            let stats = cluster.stats_cluster(id);
            let now = (
                stats.get("epoch").map(String::as_str),
                stats.get("write_ack").map(String::as_str),
                stats.get("node:3:state").map(String::as_str),
            );
            if now == (Some("2"), Some("all"), Some("down")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not take up epoch 2: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let traffic = traffic.join().expect("the client thread panicked");
    assert!(
        traffic.errors.is_empty() && traffic.mismatches.is_empty(),
        "the client saw errors {:?} or stale values {} (seed {seed}), first {:?}",
        traffic.errors,
        traffic.mismatches.len(),
        traffic.mismatches.first()
    );
    assert!(
        traffic.requests >= 100,
        "only {} requests",
        traffic.requests
    );
    // An older epoch in the file changes nothing.
    std::fs::write(cluster.dir.join("cluster.toml"), &cluster.text).expect("rewrite");
    cluster.signal(1, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.stats_cluster(1)["epoch"], "2");
    assert!(
        cluster.log(1).contains("is not newer than 2"),
        "{}",
        cluster.log(1)
    );
}

/// Three acceptors agree on configuration changes with Multi-Paxos: a change
/// proposed through one node is in force on every node; with the leader killed
/// (-9), a change through another node still commits; the killed node restarts
/// from its `--data-dir`, learns what it missed, and takes part again; a
/// proposal for an epoch already decided is refused.
#[test]
fn paxos_changes_commit_with_the_leader_killed() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(&Layout::real(3, 2, 2, "one").with_consensus());
    let started = Instant::now();
    let (ok, out) = admin(&cluster, 2, &["set", "write_ack=all"]);
    eprintln!("epoch 2 committed in {:?}", started.elapsed());
    assert!(ok && out.contains("epoch 2: OK"), "{out}");
    wait_for_epoch(&cluster, &[1, 2, 3], 2);
    for id in [1, 2, 3] {
        assert_eq!(cluster.stats_cluster(id)["write_ack"], "all", "node {id}");
        assert_eq!(cluster.stats_cluster(id)["leader"], "2", "node {id}");
    }

    // Node 2 led the last decision.
    cluster.kill9(2);
    let started = Instant::now();
    let (ok, out) = admin(&cluster, 3, &["set", "write_ack=one", "down=2"]);
    eprintln!(
        "epoch 3 committed without the old leader in {:?}",
        started.elapsed()
    );
    assert!(
        ok && out.contains("epoch 3: OK"),
        "{out}\n{}",
        cluster.logs()
    );
    wait_for_epoch(&cluster, &[1, 3], 3);
    assert_eq!(cluster.stats_cluster(1)["node:2:state"], "down");
    assert_eq!(cluster.stats_cluster(1)["leader"], "3");
    // Writes and reads go on with node 2 marked down.
    let items = items("paxos", 100, "p");
    set_many(&mut cluster.client(1), &items, 1);
    assert_all_read(&mut cluster.client(3), &items, 3);

    cluster.restart(2);
    cluster.wait_until_serving(2, &[], Instant::now() + READY_TIMEOUT);
    wait_for_epoch(&cluster, &[2], 3);
    let (ok, out) = admin(&cluster, 2, &["set", "up=2"]);
    assert!(ok && out.contains("epoch 4: OK"), "{out}");
    wait_for_epoch(&cluster, &[1, 2, 3], 4);
    assert_eq!(cluster.stats_cluster(3)["node:2:state"], "up");

    // Compare-and-set: epoch 4 is decided, so a proposal for it is refused.
    let text = cluster.text.replacen(
        "# written by tests/cluster\n",
        "# written by tests/cluster\nepoch = 4\n",
        1,
    );
    let stale = ClusterConfig::from_file_text(&text).expect("a valid configuration");
    let mut request = b"rc propose ".to_vec();
    ringcache::cluster::codec::encode_config(&stale, &mut request);
    request.extend_from_slice(b"\r\n");
    let reply = cluster.member_client(1).call(&request, b"\r\n");
    assert!(
        show(&reply).starts_with("SERVER_ERROR epoch already decided"),
        "{}",
        show(&reply)
    );
    assert_eq!(cluster.stats_cluster(1)["epoch"], "4");
}

/// A cluster grows from one node to three and shrinks again, every change
/// decided by Paxos: a first node creates it (`--init`), two more join
/// through running members (`--join`) under a client and take their share of
/// the keys (moved keys are read from their old owner until copied), one
/// copy becomes two and the acceptors become three (`cluster set`), a fourth
/// node joins and a third is removed (`cluster remove`) while a client keeps
/// writing and reading through node 1; then back to one copy, a node leaves
/// and its keys are copied from it. Every key set before is readable through
/// every node after each step; each step's moved copies are released by their
/// old owners, so the nodes hold exactly one (then two, then one) copies of
/// each key; and the client sees no error and no stale value.
#[test]
fn nodes_join_and_leave_through_paxos_while_a_client_runs() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let (root, m1, items) = one_node_cluster("member");
    let seed = support::seed_from_env_or_clock();
    eprintln!("nodes_join_and_leave_through_paxos_while_a_client_runs: RINGCACHE_SEED={seed}");
    // The keys the client thread has written, over both of its runs.
    let mut live: BTreeSet<String> = BTreeSet::new();

    // One copy of each key, under a client: two nodes join through running
    // members and take their share.
    let (stop, traffic) = start_traffic_at(&m1.ip, m1.port, seed);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let join1 = format!("--join={}", m1.addr());
    let m2 = Member::start(2, &root, &[&join1]);
    wait_for_members(&[&m1, &m2], &[(1, "up"), (2, "up")]);
    eprintln!("node 2 joined and took its keys in {:?}", started.elapsed());
    let join2 = format!("--join={}", m2.addr());
    let m3 = Member::start(3, &root, &[&join2]);
    let all = [&m1, &m2, &m3];
    wait_for_members(&all, &[(1, "up"), (2, "up"), (3, "up")]);
    live.extend(stop_traffic(stop, traffic, seed, &[&m1, &m2, &m3]));
    for (via, m) in all.iter().enumerate() {
        assert_all_read(&mut m.client(), &items, via as u32 + 1);
    }
    wait_for_item_total(&all, 1000 + live.len() as u64);
    for m in all {
        assert!(m.curr_items() > 150, "node {} holds too few keys", m.addr());
    }

    // Two copies of each key, three acceptors.
    let out = m3.admin(&["set", "replicas=2", "acceptors=1,2,3"]);
    assert!(out.contains(": OK"), "{out}");
    wait_for_members(&all, &[(1, "up"), (2, "up"), (3, "up")]);
    wait_for_item_total(&all, 2 * (1000 + live.len() as u64));
    assert_eq!(m2.stats_cluster()["acceptors"], "1,2,3");

    // Under a client: a fourth node joins, the third leaves.
    let (stop, traffic) = start_traffic_at(&m1.ip, m1.port, seed ^ 1);
    std::thread::sleep(Duration::from_millis(200));
    let m4 = Member::start(4, &root, &[&join1]);
    let four = [&m1, &m2, &m3, &m4];
    wait_for_members(&four, &[(1, "up"), (2, "up"), (3, "up"), (4, "up")]);
    let out = m1.admin(&["set", "acceptors=1,2,4"]);
    assert!(out.contains(": OK"), "{out}");
    let out = m1.admin(&["remove", "3"]);
    assert!(out.contains(": OK"), "{out}");
    let rest = [&m1, &m2, &m4];
    wait_for_members(&rest, &[(1, "up"), (2, "up"), (4, "up")]);
    live.extend(stop_traffic(stop, traffic, seed ^ 1, &four));
    drop(m3);
    for (via, m) in rest.iter().enumerate() {
        assert_all_read(&mut m.client(), &items, via as u32 + 1);
    }
    let keys = 1000 + live.len() as u64;
    wait_for_item_total(&rest, 2 * keys);
    assert_eq!(m4.stats_cluster()["acceptors"], "1,2,4");

    // Back to one copy, and a node leaves: its keys are copied from it, as
    // no other node holds them.
    let out = m2.admin(&["set", "replicas=1", "acceptors=1"]);
    assert!(out.contains(": OK"), "{out}");
    wait_for_members(&rest, &[(1, "up"), (2, "up"), (4, "up")]);
    wait_for_item_total(&rest, keys);
    let out = m2.admin(&["remove", "4"]);
    assert!(out.contains(": OK"), "{out}");
    let two = [&m1, &m2];
    wait_for_members(&two, &[(1, "up"), (2, "up")]);
    wait_for_node_state(&m4, "removed");
    for (via, m) in two.iter().enumerate() {
        assert_all_read(&mut m.client(), &items, via as u32 + 1);
    }
    wait_for_item_total(&two, keys);
    wait_for_item_total(&[&m4], 0);
    let _ = std::fs::remove_dir_all(&root);
}

/// Stops a client thread of [`start_traffic_at`], checks it saw no error and no
/// stale value (with the members' logs if it did), and returns the keys it wrote.
fn stop_traffic(
    stop: Arc<AtomicBool>,
    traffic: JoinHandle<Traffic>,
    seed: u64,
    members: &[&Member],
) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let traffic = traffic.join().expect("the client thread panicked");
    assert!(
        traffic.errors.is_empty() && traffic.mismatches.is_empty(),
        "the client saw errors {:?} or stale values {} (seed {seed}), first {:?}\n{}",
        traffic.errors,
        traffic.mismatches.len(),
        traffic.mismatches.first(),
        members
            .iter()
            .map(|m| m.log())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        traffic.requests >= 100,
        "only {} requests",
        traffic.requests
    );
    eprintln!(
        "the client made {} requests across the changes",
        traffic.requests
    );
    traffic.written.into_keys().collect()
}

/// A node whose disk was wiped never comes back as the acceptor it was: started
/// again with its old command line and an empty `--data-dir`, it learns from
/// the others that they have seen its id vote, and joins as a new member in
/// its place (new id, same endpoints, and in the acceptors instead of the old
/// id). It copies its keys back, and the new acceptor takes part in the next
/// decision, which needs it once another node is killed.
#[test]
fn a_wiped_node_comes_back_as_a_new_member() {
    wiped_node_comes_back_as_a_new_member(3, false);
}

/// The same for the leader (it sent ballots and voted only for its own), with
/// the two other nodes restarted before it is wiped: what they saw is kept in
/// their `--data-dir`, not only in memory.
#[test]
fn a_wiped_leader_comes_back_as_a_new_member_though_the_others_restarted() {
    wiped_node_comes_back_as_a_new_member(2, true);
}

/// Node 2 proposes two changes; node `wiped` is killed, its data directory
/// removed, and started again (after the others were, if `restart_others`).
fn wiped_node_comes_back_as_a_new_member(wiped: u32, restart_others: bool) {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let mut cluster = Cluster::start(&Layout::real(3, 2, 2, "quorum").with_consensus());
    for change in ["write_ack=all", "write_ack=quorum"] {
        let (ok, out) = admin(&cluster, 2, &["set", change]);
        assert!(ok, "{out}");
    }
    wait_for_epoch(&cluster, &[1, 2, 3], 3);
    let items = items("wiped", 500, "w");
    set_many(&mut cluster.client(1), &items, 1);
    let others: Vec<u32> = [1, 2, 3].into_iter().filter(|&id| id != wiped).collect();
    if restart_others {
        for &id in &others {
            cluster.kill9(id);
            cluster.restart(id);
            // Copied back before the next is killed: else keys the two
            // share would have no copy left.
            let deadline = Instant::now() + READY_TIMEOUT;
            while cluster.stats_cluster(id)["node_state"] != "serving" {
                assert!(Instant::now() < deadline, "node {id} did not settle");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        wait_for_epoch(&cluster, &[1, 2, 3], 3);
    }

    cluster.kill9(wiped);
    let data = cluster.dir.join(format!("data-{wiped}"));
    std::fs::remove_dir_all(data).expect("wipe the node's data");
    cluster.restart(wiped);
    // The new id takes the old one's place among the acceptors.
    let acceptors = [1, 2, 3]
        .map(|id| if id == wiped { 4 } else { id }.to_string())
        .join(",");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let views: Vec<HashMap<String, String>> = [1, 2, 3]
            .iter()
            .map(|&id| cluster.stats_cluster(id))
            .collect();
        let settled = views.iter().all(|v| {
            v["epoch"] == views[0]["epoch"]
                && v["node_state"] == "serving"
                && v.get("node:4:state").map(String::as_str) == Some("up")
        });
        if settled {
            let view = &views[wiped as usize - 1];
            assert_eq!(view["node_id"], "4", "the wiped node's new id");
            assert!(
                !views[0].contains_key(&format!("node:{wiped}:state")),
                "node {wiped} is gone"
            );
            assert_eq!(views[0]["acceptors"], acceptors);
            assert_eq!(
                views[0]["node:4:addr"],
                format!("127.0.0.{wiped}:{}", cluster.node(wiped).port)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the wiped node did not come back as node 4: {:?}\n{}",
            ids_epochs_and_states(&views),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cluster.log(wiped).contains("as a new member"),
        "{}",
        cluster.log(wiped)
    );
    // Its keys are back: through it, and two copies of each in all.
    assert_all_read(&mut cluster.client(wiped), &items, wiped);
    let deadline = Instant::now() + READY_TIMEOUT;
    while (1..=3).map(|id| curr_items(&cluster, id)).sum::<u64>() != 1000 {
        assert!(
            Instant::now() < deadline,
            "the nodes do not hold two copies of each key"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // With one of the others dead, a decision needs the last one and the new
    // acceptor.
    let (dead, survivor) = (others[0], others[1]);
    cluster.kill9(dead);
    let (ok, out) = admin(&cluster, survivor, &["set", "write_ack=all"]);
    assert!(ok && out.contains(": OK"), "{out}\n{}", cluster.logs());
    let epoch: u64 = cluster.stats_cluster(survivor)["epoch"].parse().unwrap();
    wait_for_epoch(&cluster, &[survivor, wiped], epoch);
}

/// Three acceptors of `layout` with Paxos and no automatic failover, and
/// epoch 2 (`write_ack=all`) decided through node 2, which leads it.
fn led_by_node_2(layout: Layout) -> Cluster {
    let cluster = Cluster::start(
        &layout
            .with_consensus()
            .with_args(&["--failover-timeout-ms", "60000"]),
    );
    let (ok, out) = admin(&cluster, 2, &["set", "write_ack=all"]);
    assert!(ok && out.contains("epoch 2: OK"), "{out}");
    wait_for_epoch(&cluster, &[1, 2, 3], 2);
    cluster
}

/// With node 2 stopped: `write_ack=one` proposed through node 1 and decided
/// as epoch 3; then node 2 resumed, and every node at epoch 3.
fn decide_epoch_3_while_node_2_is_stopped(cluster: &Cluster) {
    let (ok, out) = admin(cluster, 1, &["set", "write_ack=one"]);
    cluster.signal(2, "-CONT");
    assert!(
        ok && out.contains("epoch 3: OK"),
        "{out}\n{}",
        cluster.logs()
    );
    wait_for_epoch(cluster, &[1, 2, 3], 3);
}

/// An acceptor stopped with SIGSTOP (the leader, here) holds up nothing: the
/// two others decide without it; resumed, it learns what was decided, and a
/// change proposed through it then commits under a new ballot.
#[test]
fn a_stopped_leader_catches_up_when_resumed() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = led_by_node_2(Layout::real(3, 1, 2, "quorum"));
    assert_eq!(cluster.stats_cluster(1)["leader"], "2");

    cluster.signal(2, "-STOP");
    decide_epoch_3_while_node_2_is_stopped(&cluster);
    let (ok, out) = admin(&cluster, 2, &["set", "write_ack=quorum"]);
    assert!(
        ok && out.contains("epoch 4: OK"),
        "{out}\n{}",
        cluster.logs()
    );
    wait_for_epoch(&cluster, &[1, 2, 3], 4);
    let shown: Vec<Vec<u8>> = [1, 2, 3]
        .iter()
        .map(|&id| cluster.member_client(id).call(b"rc show\r\n", b"END\r\n"))
        .collect();
    assert!(shown.iter().all(|s| *s == shown[0]), "the nodes disagree");
    assert_eq!(cluster.stats_cluster(3)["write_ack"], "quorum");
}

/// A stopped acceptor still accepts connections (its kernel completes them)
/// but never finishes a handshake: once the others have found it unreachable,
/// every message to it opens a connection that waits out the peer timeout.
/// The two others still decide at once; with the peer timeout long, a control
/// thread that waited on those connections itself would not decide within the
/// proposal's deadline.
#[test]
fn a_stopped_acceptor_found_unreachable_holds_up_no_decision() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let cluster = led_by_node_2(Layout::real(3, 1, 2, "quorum").with_peer_timeout_ms(5000));

    cluster.signal(2, "-STOP");
    let deadline = Instant::now() + READY_TIMEOUT;
    while [1, 3]
        .iter()
        .any(|&id| cluster.stats_peers(id)["peer:2:reachable"] != "no")
    {
        assert!(Instant::now() < deadline, "node 2 never found unreachable");
        std::thread::sleep(Duration::from_millis(50));
    }
    decide_epoch_3_while_node_2_is_stopped(&cluster);
}

/// `ringcache cluster add` adds a member from an admin's shell: it is decided
/// as `joining` under the next id; started from the file `cluster show` prints,
/// with that id and an empty `--data-dir` (no node has seen that id vote, so
/// it is no wiped node), it proposes itself up and takes its keys.
#[test]
fn an_added_member_started_from_the_shown_file_takes_its_keys() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let (root, m1, items) = one_node_cluster("added");

    let ip = "127.0.0.2";
    let port = fresh_port(ip);
    let base = fresh_ports(ip, MEMBER_SHARDS);
    let shards: Vec<String> = (0..MEMBER_SHARDS)
        .map(|s| format!("{ip}:{}", base + s))
        .collect();
    let out = m1.admin(&["add", &format!("{ip}:{port}"), &shards.join(",")]);
    assert!(out.contains("added node 2 (joining)"), "{out}");
    let file = root.join("shown.toml");
    std::fs::write(&file, m1.admin(&["show"])).expect("write the shown file");
    let data = root.join("data-2");
    let secret = m1.dir.join(SECRET_FILE_NAME);
    let args = [
        "--cluster",
        &file.to_string_lossy(),
        "--node-id",
        "2",
        "--data-dir",
        &data.to_string_lossy(),
        "--cluster-secret",
        &secret.to_string_lossy(),
        "--peer-timeout-ms",
        "2000",
    ];
    let server = Server::ringcache_at(ip, port, &args);
    let m2 = Member {
        ip: ip.to_string(),
        port,
        dir: data.clone(),
        server: Some(server),
    };
    wait_for_members(&[&m1, &m2], &[(1, "up"), (2, "up")]);
    assert!(!m2.log().contains("as a new member"), "{}", m2.log());
    for (via, m) in [&m1, &m2].iter().enumerate() {
        assert_all_read(&mut m.client(), &items, via as u32 + 1);
    }
    wait_for_item_total(&[&m1, &m2], 1000);
    assert!(m2.curr_items() > 200, "node 2 took too few keys");
    let _ = std::fs::remove_dir_all(&root);
}

/// Three acceptors and a learner: with the Paxos leader killed (-9), a
/// membership change still commits (a fifth node joins through a survivor and
/// takes its keys), the learner learns it, and with two copies of each key no
/// write acknowledged before the kill is lost.
#[test]
fn a_membership_change_commits_with_the_leader_killed() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let root = std::env::temp_dir().join(format!("ringcache-leader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut members = vec![Member::start(1, &root, &["--init"])];
    for n in 2..=4 {
        let through = format!("--join={}", members[0].addr());
        members.push(Member::start(n, &root, &[&through]));
        let all: Vec<&Member> = members.iter().collect();
        let states: Vec<(u32, &str)> = (1..=n).map(|id| (id, "up")).collect();
        wait_for_members(&all, &states);
    }
    let out = members[0].admin(&["set", "replicas=2", "acceptors=1,2,3"]);
    assert!(out.contains(": OK"), "{out}");
    let all: Vec<&Member> = members.iter().collect();
    wait_for_members(&all, &[(1, "up"), (2, "up"), (3, "up"), (4, "up")]);
    let items = items("leader", 1000, "l");
    set_many(&mut members[3].client(), &items, 4);

    // A change through node 2 runs phase 1 among the three acceptors.
    let out = members[1].admin(&["set", "write_ack=all"]);
    assert!(out.contains(": OK"), "{out}");
    let leader: u32 = members[2].stats_cluster()["leader"]
        .parse()
        .expect("a leader id");
    assert!((1..=3).contains(&leader), "leader {leader}");
    members[leader as usize - 1].kill9();
    let survivors: Vec<usize> = (0..4).filter(|&i| i != leader as usize - 1).collect();
    let through = format!("--join={}", members[survivors[0]].addr());
    let started = Instant::now();
    let m5 = Member::start(5, &root, &[&through]);
    let mut live: Vec<&Member> = survivors.iter().map(|&i| &members[i]).collect();
    live.push(&m5);
    let mut states: Vec<(u32, &str)> = (1..=5).map(|id| (id, "up")).collect();
    // The dead leader is marked down by the others once they suspect it long enough.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let view = m5.try_stats_cluster().unwrap_or_default();
        if view.get("node:5:state").map(String::as_str) == Some("up") {
            break;
        }
        assert!(Instant::now() < deadline, "node 5 did not join: {view:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "node 5 joined through node {} with leader {leader} dead in {:?}",
        survivors[0] + 1,
        started.elapsed()
    );
    let dead_state = live[0].stats_cluster()[&format!("node:{leader}:state")].clone();
    states[leader as usize - 1].1 = if dead_state == "down" { "down" } else { "up" };
    let epoch = live
        .iter()
        .map(|m| m.stats_cluster()["epoch"].clone())
        .max()
        .unwrap();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !live.iter().all(|m| m.stats_cluster()["epoch"] >= epoch) {
        assert!(
            Instant::now() < deadline,
            "the learner did not learn epoch {epoch}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, m) in live.iter().enumerate() {
        assert_all_read(&mut m.client(), &items, i as u32 + 1);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Joining replaces a member at the same address (a wiped node coming back),
/// so a `--join` at the address of a member that is running is refused before
/// it asks: the process exits naming the port, and the cluster is unchanged.
#[test]
fn a_join_at_a_live_members_address_is_refused() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let (root, m1, _) = one_node_cluster("livejoin");
    let epoch = m1.stats_cluster()["epoch"].clone();
    // An operator's mistake, not an intruder's: it holds the secret.
    let intruder = root.join("intruder");
    std::fs::create_dir_all(&intruder).expect("create the intruder's directory");
    std::fs::copy(
        m1.dir.join(SECRET_FILE_NAME),
        intruder.join(SECRET_FILE_NAME),
    )
    .expect("copy the cluster secret");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["--join", &m1.addr(), "--data-dir"])
        .arg(&intruder)
        .args(["-l", &m1.ip, "-p", &m1.port.to_string(), "-t", "1"])
        .output()
        .expect("run ringcache");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the join went ahead: {stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    let view = m1.stats_cluster();
    assert_eq!(view["epoch"], epoch);
    assert_eq!(view["nodes"], "1");
    let _ = std::fs::remove_dir_all(&root);
}

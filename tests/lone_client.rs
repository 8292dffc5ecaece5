//! A lone client: one connection sending one `get` at a time, with nothing else
//! to keep the server awake, is answered as soon as its request arrives, on both
//! socket paths, through the shared port and a shard's own port, for a key of the
//! shard it reached and a key of another shard (does I/O: real servers, real
//! sockets). A shard that parks must be woken by the request itself, not by the
//! next timer; a park that waits for a timer takes milliseconds a request.
//!
//! The bound is generous on purpose ([`MEDIAN_BOUND`]): a loaded CI machine stays
//! far below it and a missed wake-up (8 to 32 ms a request) far above it. How fast
//! a lone client is served is measured by `scripts/bench-vs-memcached.sh`.

mod support;

use ringcache::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
use std::time::Duration;
use support::{Client, Server};

/// Sequential gets timed per case.
const GETS: usize = 200;
/// The median round trip a woken shard stays under, even on a busy machine.
const MEDIAN_BOUND: Duration = Duration::from_millis(2);
const SOCKET_PATHS: [&str; 2] = ["uring", "glommio"];

fn assert_quick(case: &str, median: Duration) {
    assert!(
        median < MEDIAN_BOUND,
        "{case}: median of {GETS} sequential gets took {median:?} (bound {MEDIAN_BOUND:?})"
    );
}

#[test]
fn a_lone_connection_on_one_shard_is_answered_at_once() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    for sockets in SOCKET_PATHS {
        let server = Server::ringcache(&["-t", "1", "--sockets", sockets]);
        let mut client = server.connect();
        client.set("lone", b"value");
        let median = support::median_get_round_trip(&mut client, "lone", GETS);
        assert_quick(&format!("-t 1 --sockets {sockets}"), median);
    }
}

#[test]
fn a_lone_connection_is_answered_at_once_for_its_shards_keys_and_anothers() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    for sockets in SOCKET_PATHS {
        let base = support::free_ports(2);
        let base_text = base.to_string();
        let server =
            Server::ringcache(&["-t", "2", "--sockets", sockets, "--shard-ports", &base_text]);
        let names: Vec<String> = [base, base + 1]
            .iter()
            .map(|p| ketama_name("127.0.0.1", *p))
            .collect();
        let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
        // A key of each shard, both reached through shard 0's own port.
        let key_of = |shard: usize| {
            (0..)
                .map(|i| format!("lone:{i}"))
                .find(|key| ring.owner(key.as_bytes()).shard as usize == shard)
                .expect("a key of each shard")
        };
        let mut client = Client::connect(base);
        for (shard, what) in [(0, "its own shard's key"), (1, "another shard's key")] {
            let key = key_of(shard);
            client.set(&key, b"value");
            let median = support::median_get_round_trip(&mut client, &key, GETS);
            assert_quick(
                &format!("-t 2 --sockets {sockets}, shard port, {what}"),
                median,
            );
        }
        // The shared port, whichever shard the kernel hands the connection to.
        let mut shared = server.connect();
        for shard in [0, 1] {
            let median = support::median_get_round_trip(&mut shared, &key_of(shard), GETS);
            assert_quick(&format!("-t 2 --sockets {sockets}, shared port"), median);
        }
    }
}

/// Requests that all cross to the other shard, from a connection on each
/// shard's own port at once, are all answered and the server keeps serving. A
/// shard asleep in its socket ring is woken by its doorbell, which wakes every
/// task that receives from another shard; glommio keeps each waker a pending
/// receive hands it until a message comes, and counts a task's wakers in 16
/// bits, so a receiver that handed over one more at every doorbell meant for
/// another channel brought its shard down after some tens of thousands of
/// crossings.
#[test]
fn connections_crossing_shards_both_ways_are_all_answered() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    const GETS_EACH: usize = 25_000;
    let base = support::free_ports(2);
    let base_text = base.to_string();
    let mut server = Server::ringcache(&["-t", "2", "--shard-ports", &base_text]);
    let names: Vec<String> = [base, base + 1]
        .iter()
        .map(|p| ketama_name("127.0.0.1", *p))
        .collect();
    let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
    // Keys of each shard, asked for through the other shard's own port.
    let keys_of = |shard: u32| -> Vec<String> {
        (0..)
            .map(|i| format!("crossing:{i}"))
            .filter(|key| ring.owner(key.as_bytes()).shard == shard)
            .take(50)
            .collect()
    };
    let mut setter = Client::connect(base);
    let clients: Vec<_> = [(0u16, 1u32), (1, 0)]
        .into_iter()
        .map(|(port, owner)| {
            let keys = keys_of(owner);
            for key in &keys {
                setter.set(key, key.as_bytes());
            }
            std::thread::spawn(move || {
                let mut client = Client::connect(base + port);
                for i in 0..GETS_EACH {
                    let key = &keys[i % keys.len()];
                    let value = client.get(key);
                    assert_eq!(value.as_deref(), Some(key.as_bytes()), "get {key}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread failed");
    }
    assert!(server.is_running(), "the server stopped: {}", server.log());
    let key = &keys_of(1)[0];
    assert_eq!(setter.get(key).as_deref(), Some(key.as_bytes()));
}

//! `--shard-ports BASE`: every shard also listens on its own port and is named on
//! the ring by that endpoint, so a client that places keys by ketama over the
//! shard endpoints reaches each key's owner with no hop between shards
//! (does I/O: a real server, real sockets).

mod support;

use ringcache::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
use std::net::TcpListener;
use support::{Client, Server};

fn stat(client: &mut Client, name: &str) -> u64 {
    client
        .stats("")
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no stat {name}"))
}

#[test]
fn keys_sent_to_their_owners_port_cross_no_shard() {
    if support::ringcache_stands_in_for_memcached() {
        return;
    }
    let base = support::free_ports(2);
    let base_text = base.to_string();
    let server = Server::ringcache(&["-t", "2", "--shard-ports", &base_text]);
    let ports = [base, base + 1];
    let names: Vec<String> = ports.iter().map(|p| ketama_name("127.0.0.1", *p)).collect();
    let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
    let mut shard_clients: Vec<Client> = ports.iter().map(|p| Client::connect(*p)).collect();
    let mut per_shard = [0; 2];
    for i in 0..400 {
        let key = format!("direct:{i}");
        let owner = ring.owner(key.as_bytes()).shard as usize;
        per_shard[owner] += 1;
        shard_clients[owner].set(&key, key.as_bytes());
    }
    assert!(
        per_shard.iter().all(|n| *n > 100),
        "both shards own keys: {per_shard:?}"
    );
    let mut shared = server.connect();
    assert_eq!(
        stat(&mut shared, "forwarded_out"),
        0,
        "a write crossed shards"
    );
    // Through the shared port every key reads back, forwarded where needed.
    for i in 0..400 {
        let key = format!("direct:{i}");
        assert_eq!(shared.get(&key).as_deref(), Some(key.as_bytes()));
    }
    assert_eq!(stat(&mut shared, "curr_items"), 400);
    // And a key sent to the other shard's port still works, through one hop.
    let key = "direct:0";
    let other = 1 - ring.owner(key.as_bytes()).shard as usize;
    assert_eq!(
        shard_clients[other].get(key).as_deref(),
        Some(key.as_bytes())
    );
}

#[test]
fn a_shard_port_in_use_is_named_and_the_node_exits_non_zero() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let port = support::free_port().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "1",
            "--shard-ports",
            &taken.to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("port {taken}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

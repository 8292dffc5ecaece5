//! Placement on the ketama ring: the same owner as a real ketama client
//! (libmemcached) for every key, balance across shards, and how few keys move
//! when a node joins (pure ring code, plus libmemcached through a small C program).

mod support;

use ringcache::cluster::ring::{ketama_name, Owner, Ring, Server, POINTS_PER_SERVER_DEFAULT};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

const KEYS: usize = 100_000;

/// `nodes` nodes of `shards` shards, each shard its own endpoint on 127.0.0.1.
fn servers(nodes: u32, shards: u32) -> Vec<Server> {
    let mut servers = Vec::new();
    for node in 0..nodes {
        for shard in 0..shards {
            servers.push(Server {
                name: ketama_name("127.0.0.1", 20000 + (node * shards + shard) as u16),
                owner: Owner { node, shard },
            });
        }
    }
    servers
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

/// Asks libmemcached (ketama, MD5, weighted as pylibmc and most clients set it)
/// which of `endpoints` owns each key: the server's index in the list.
fn libmemcached_owners(endpoints: &[String], keys: &[String]) -> Option<Vec<usize>> {
    let dir = std::env::temp_dir().join(format!("ringcache-ketama-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("ketama.c");
    let binary = dir.join("ketama");
    std::fs::write(
        &source,
        r#"#include <libmemcached-1.0/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    memcached_st *m = memcached_create(NULL);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    for (int i = 1; i < argc; i++) {
        char host[256];
        snprintf(host, sizeof host, "%s", argv[i]);
        char *colon = strrchr(host, ':');
        *colon = 0;
        memcached_server_add(m, host, (in_port_t)atoi(colon + 1));
    }
    char key[512];
    while (fgets(key, sizeof key, stdin)) {
        size_t n = strcspn(key, "\n");
        printf("%u\n", memcached_generate_hash(m, key, n));
    }
    memcached_free(m);
    return 0;
}
"#,
    )
    .unwrap();
    let built = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .arg("-lmemcached")
        .output()
        .ok()?;
    if !built.status.success() {
        eprintln!(
            "!!! cannot build against libmemcached (libmemcached-dev missing?): {}",
            String::from_utf8_lossy(&built.stderr)
        );
        return None;
    }
    let mut child = Command::new(&binary)
        .args(endpoints)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = keys.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect(),
    )
}

#[test]
fn every_key_has_the_owner_libmemcached_ketama_gives_it() {
    // One endpoint on memcached's default port, whose ketama name has no port.
    let endpoints: Vec<(String, u16)> = (0..6)
        .map(|i| {
            (
                "127.0.0.1".to_string(),
                if i == 3 { 11211 } else { 20000 + i },
            )
        })
        .collect();
    let ring_servers: Vec<Server> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (host, port))| Server {
            name: ketama_name(host, *port),
            owner: Owner {
                node: i as u32 / 2,
                shard: i as u32 % 2,
            },
        })
        .collect();
    let ring = Ring::new(&ring_servers, POINTS_PER_SERVER_DEFAULT);
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let addresses: Vec<String> = endpoints.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    let Some(theirs) = libmemcached_owners(&addresses, &keys) else {
        if std::env::var_os("CI").is_some() {
            panic!("libmemcached-dev is needed in CI (scripts/test.sh installs it)");
        }
        eprintln!("!!! libmemcached-dev is not installed: the ketama comparison is SKIPPED");
        return;
    };
    assert_eq!(theirs.len(), KEYS);
    let mut differ = 0;
    for (i, k) in keys.iter().enumerate() {
        if ring.owner(k.as_bytes()) != ring_servers[theirs[i]].owner {
            differ += 1;
        }
    }
    assert_eq!(
        differ, 0,
        "{differ} of {KEYS} keys have another owner than libmemcached gives them"
    );
}

#[test]
fn three_nodes_of_two_shards_share_keys_within_fifteen_percent_of_the_mean() {
    let ring = Ring::new(&servers(3, 2), POINTS_PER_SERVER_DEFAULT);
    let mut counts: HashMap<Owner, usize> = HashMap::new();
    for i in 0..KEYS {
        *counts.entry(ring.owner(key(i).as_bytes())).or_default() += 1;
    }
    assert_eq!(counts.len(), 6, "every shard owns keys");
    let mean = KEYS as f64 / 6.0;
    let fullest = *counts.values().max().unwrap() as f64;
    eprintln!(
        "fullest shard: {fullest} keys, {:.3}x the mean",
        fullest / mean
    );
    assert!(
        fullest <= 1.15 * mean,
        "fullest shard holds {:.3}x the mean: {counts:?}",
        fullest / mean
    );
}

#[test]
fn a_fourth_node_takes_about_a_quarter_of_the_keys_and_nothing_else_moves() {
    let before = Ring::new(&servers(3, 2), POINTS_PER_SERVER_DEFAULT);
    let after = Ring::new(&servers(4, 2), POINTS_PER_SERVER_DEFAULT);
    let mut moved = 0;
    for i in 0..KEYS {
        let k = key(i);
        let (was, is) = (before.owner(k.as_bytes()), after.owner(k.as_bytes()));
        if was != is {
            assert_eq!(
                is.node, 3,
                "key {k} moved from {was:?} to {is:?}, not to the new node"
            );
            moved += 1;
        }
    }
    let fraction = moved as f64 / KEYS as f64;
    eprintln!("moved {moved} of {KEYS} keys ({fraction:.3})");
    assert!(fraction <= 1.1 / 4.0, "{fraction:.3} of the keys moved");
    assert!(moved > 0);
}

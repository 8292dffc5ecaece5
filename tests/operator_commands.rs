//! memcached's operator commands, black box: `stats conns`, `stats items`,
//! `lru_crawler`, and the one-node answers to `stats cluster` and `config get
//! cluster` (does I/O: real servers, real sockets).
//!
//! Each check runs against ringcache with `-t 1` and `-t 2` (so that what lives
//! on every shard is gathered) and against memcached 1.6, which proves the
//! expected shape right.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{show, Client, Program, Server};

/// How long a check waits for the server to have taken what a client sent.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// ringcache on one shard, on two, and the reference memcached.
fn servers() -> Vec<Server> {
    let mut list = vec![
        Server::ringcache(&["-t", "1"]),
        Server::ringcache(&["-t", "2"]),
    ];
    list.extend(Server::memcached(&[]));
    list
}

/// Runs `check` on every server and fails with every server's problems.
fn on_every_server(check: impl Fn(&Server) -> Vec<String>) {
    let mut failures = Vec::new();
    for server in servers() {
        let problems = check(&server);
        if !problems.is_empty() {
            failures.push(format!("[{}] {}", server.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `stats conns` as one block per socket: its id, then (name, value) in order.
fn conns(client: &mut Client) -> Result<BTreeMap<u64, Vec<(String, String)>>, String> {
    let mut blocks: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for (name, value) in client.stats("conns") {
        let (id, field) = name
            .split_once(':')
            .ok_or_else(|| format!("stats conns line {name} has no <id>:"))?;
        let id = id
            .parse()
            .map_err(|_| format!("stats conns id {id} is not a number"))?;
        blocks
            .entry(id)
            .or_default()
            .push((field.to_string(), value));
    }
    Ok(blocks)
}

fn field<'b>(block: &'b [(String, String)], name: &str) -> Option<&'b str> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn stats_conns_lists_every_listener_and_connection_in_memcacheds_shape() {
    on_every_server(|server| {
        let mut problems = Vec::new();
        // Idle connections, spread over the shards by the kernel.
        let idle: Vec<Client> = (0..4).map(|_| server.connect()).collect();
        // One that has sent a command line and part of its data block.
        let mut partway = server.connect();
        partway.send(b"set partway 0 0 10\r\nab");
        let mut asking = server.connect();
        let name = |c: &Client| format!("tcp:{}", c.local_addr());
        let listen_addr = format!("tcp:127.0.0.1:{}", server.port);

        // The server takes connections and bytes in its own time: ask until it
        // has taken them all (the states are what is checked, not the time).
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let blocks = loop {
            let blocks = match conns(&mut asking) {
                Ok(blocks) => blocks,
                Err(problem) => return vec![problem],
            };
            let state_of = |c: &Client| {
                blocks
                    .values()
                    .find(|b| field(b, "addr") == Some(&name(c)))
                    .and_then(|b| field(b, "state"))
                    .map(str::to_string)
            };
            let settled = idle
                .iter()
                .all(|c| state_of(c).as_deref() == Some("conn_new_cmd"))
                && state_of(&partway).as_deref() == Some("conn_nread");
            if settled || Instant::now() > deadline {
                break blocks;
            }
            std::thread::sleep(Duration::from_millis(20));
        };

        let mut listeners = 0;
        for (id, block) in &blocks {
            let names: Vec<&str> = block.iter().map(|(n, _)| n.as_str()).collect();
            let listening = field(block, "state") == Some("conn_listening");
            let want: &[&str] = if listening {
                &["addr", "state", "secs_since_last_cmd"]
            } else {
                &["addr", "listen_addr", "state", "secs_since_last_cmd"]
            };
            if names != want {
                problems.push(format!("socket {id} has {names:?}, not {want:?}"));
            }
            if field(block, "secs_since_last_cmd")
                .and_then(|s| s.parse::<u64>().ok())
                .is_none()
            {
                problems.push(format!("socket {id}: secs_since_last_cmd is not a number"));
            }
            if listening {
                listeners += 1;
                if field(block, "addr") != Some(&listen_addr) {
                    problems.push(format!(
                        "listener {id} is at {:?}, not {listen_addr}",
                        field(block, "addr")
                    ));
                }
            } else if field(block, "listen_addr") != Some(&listen_addr) {
                problems.push(format!(
                    "connection {id} came in on {:?}, not {listen_addr}",
                    field(block, "listen_addr")
                ));
            }
        }
        // memcached listens once; ringcache once per shard.
        let threads = if server.name.contains("-t 2") { 2 } else { 1 };
        let want_listeners = if server.program == Program::Memcached {
            1
        } else {
            threads
        };
        if listeners != want_listeners {
            problems.push(format!(
                "{listeners} listeners listed, not {want_listeners}"
            ));
        }
        let expected = idle
            .iter()
            .map(|c| (c, "conn_new_cmd"))
            .chain([(&partway, "conn_nread"), (&asking, "conn_parse_cmd")]);
        for (client, state) in expected {
            let block = blocks
                .values()
                .find(|b| field(b, "addr") == Some(&name(client)));
            match block.and_then(|b| field(b, "state")) {
                Some(s) if s == state => {}
                other => problems.push(format!("{} is {other:?}, not {state}", name(client))),
            }
        }
        let clients = blocks.len() - listeners;
        if clients != idle.len() + 2 {
            problems.push(format!(
                "{clients} connections listed, not {}",
                idle.len() + 2
            ));
        }
        if !problems.is_empty() {
            let reply = asking.call(b"stats conns\r\n", b"END\r\n");
            problems.push(format!("reply: {}", show(&reply)));
        }
        problems
    });
}

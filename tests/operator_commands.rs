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

/// Sets `count` items of 100 kB with `exptime`, enough to evict under `-m 2`.
fn fill(client: &mut Client, prefix: &str, count: usize, exptime: u32) {
    let value = vec![b'v'; 100_000];
    for i in 0..count {
        let mut request = format!("set {prefix}{i} 0 {exptime} {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
        let reply = client.call(&request, b"\r\n");
        assert_eq!(show(&reply), "STORED\\r\\n", "set {prefix}{i}");
    }
}

/// `stats items` of the one class that holds items: (name after
/// `items:<class>:`, value), in order.
fn class_items(client: &mut Client) -> Result<Vec<(String, String)>, String> {
    let stats = client.stats("items");
    let mut class = None;
    let mut fields = Vec::new();
    for (name, value) in stats {
        let mut parts = name.splitn(3, ':');
        let (Some("items"), Some(id), Some(field)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("stats items line {name}"));
        };
        if *class.get_or_insert(id.to_string()) != id {
            return Err(format!("items in classes {class:?} and {id}"));
        }
        fields.push((field.to_string(), value));
    }
    Ok(fields)
}

#[test]
fn stats_items_has_memcacheds_keys_less_the_readmes_list_and_counts_evictions() {
    let Some(reference) = Server::memcached(&["-m", "2"]) else {
        return;
    };
    let without_meaning = support::documented_keys("stats items without a meaning here");
    let mut theirs = Vec::new();
    let mut failures = Vec::new();
    for server in [
        reference,
        Server::ringcache(&["-t", "1", "-m", "2"]),
        Server::ringcache(&["-t", "2", "-m", "4"]),
    ] {
        let mut client = server.connect();
        let mut problems = Vec::new();
        let count = |fields: &[(String, String)], name: &str| {
            field(fields, name).and_then(|v| v.parse::<u64>().ok())
        };
        // Items that never expire are evicted, and counted as such alone.
        fill(&mut client, "forever", 60, 0);
        let before = class_items(&mut client).unwrap_or_else(|e| panic!("{e}"));
        if count(&before, "evicted").unwrap_or(0) == 0 {
            problems.push("nothing evicted".to_string());
        }
        if count(&before, "evicted_nonzero") != Some(0) {
            problems.push(format!(
                "evicted_nonzero {:?} after evicting only items without expiry",
                field(&before, "evicted_nonzero")
            ));
        }
        // Items with an expiry time, evicted, are counted in evicted_nonzero.
        fill(&mut client, "expiring", 60, 3600);
        let after = class_items(&mut client).unwrap_or_else(|e| panic!("{e}"));
        if count(&after, "evicted_nonzero").unwrap_or(0) == 0 {
            problems.push("evicted_nonzero is 0 after evicting items with an expiry".into());
        }
        for name in ["age", "evicted_time", "outofmemory"] {
            if count(&after, name).is_none() {
                problems.push(format!("{name} is {:?}", field(&after, name)));
            }
        }
        let names: Vec<String> = after.iter().map(|(n, _)| n.clone()).collect();
        if server.program == Program::Memcached {
            theirs = names;
        } else {
            // memcached's keys, in memcached's order, less the README's list.
            let want: Vec<&String> = theirs
                .iter()
                .filter(|n| !without_meaning.contains(n))
                .collect();
            let have: Vec<&String> = names.iter().collect();
            if have != want {
                problems.push(format!("keys {have:?}, not {want:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("[{}] {}", server.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_node_outside_a_cluster_describes_itself_as_a_one_node_cluster() {
    let base = support::free_ports(2);
    let base_text = base.to_string();
    for (server, endpoints) in [
        (Server::ringcache(&["-t", "2"]), None),
        (
            Server::ringcache(&["-t", "2", "--shard-ports", &base_text]),
            Some([base, base + 1]),
        ),
    ] {
        let mut client = server.connect();
        let ports: Vec<u16> = endpoints.map_or(vec![server.port], |e| e.to_vec());
        // ElastiCache's auto-discovery: the endpoints a ketama client should use.
        let line = ports
            .iter()
            .map(|p| format!("127.0.0.1|127.0.0.1|{p}"))
            .collect::<Vec<_>>()
            .join(" ");
        let data = format!("1\n{line}\n");
        let want = format!("CONFIG cluster 0 {}\r\n{data}\r\nEND\r\n", data.len());
        let reply = client.call(b"config get cluster\r\n", b"END\r\n");
        assert_eq!(show(&reply), show(want.as_bytes()), "[{}]", server.name);

        let stats = client.stats("cluster");
        let mut want = vec![
            ("epoch".to_string(), "1".to_string()),
            ("replicas".into(), "1".into()),
            ("write_ack".into(), "one".into()),
            ("write_acks_needed".into(), "1".into()),
            ("vnodes_per_shard".into(), "160".into()),
            ("nodes".into(), "1".into()),
            ("acceptors".into(), "1".into()),
            ("node:1:state".into(), "up".into()),
            ("node:1:addr".into(), format!("127.0.0.1:{}", server.port)),
            ("node:1:shards".into(), ports.len().to_string()),
        ];
        for (i, port) in ports.iter().enumerate() {
            want.push((format!("node:1:shard:{i}"), format!("127.0.0.1:{port}")));
        }
        want.push(("node_id".into(), "1".into()));
        want.push(("node_state".into(), "serving".into()));
        assert_eq!(stats, want, "[{}]", server.name);
    }
}

/// A metadump line with its clock-dependent numbers replaced: `la=T`,
/// `exp=T+<seconds>` (or `-1`) and `cas=N`.
fn normalized_metadump_line(line: &str) -> String {
    let fields: Vec<&str> = line.split(' ').collect();
    let number = |name: &str| {
        fields
            .iter()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<i64>().ok())
    };
    let la = number("la=");
    fields
        .iter()
        .map(|f| match f.split_once('=') {
            Some(("la", _)) => "la=T".to_string(),
            Some(("cas", v)) if v.parse::<u64>().is_ok() => "cas=N".to_string(),
            Some(("exp", "-1")) => f.to_string(),
            Some(("exp", v)) => match (v.parse::<i64>().ok(), la) {
                (Some(exp), Some(la)) => format!("exp=T+{}", exp - la),
                _ => f.to_string(),
            },
            _ => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn lru_crawler_metadump_lists_every_key_as_memcached_does() {
    let mut replies: Vec<(String, Vec<String>)> = Vec::new();
    for server in servers() {
        let mut client = server.connect();
        let mut log = Vec::new();
        for request in [
            &b"set plain 0 0 1\r\nx\r\n"[..],
            b"set a/b~c 5 100 3\r\nabc\r\n",
            b"set sp%ce 0 0 2\r\nhi\r\n",
            b"set 100pct 7 0 10\r\n0123456789\r\n",
        ] {
            let reply = client.call(request, b"\r\n");
            assert_eq!(reply, b"STORED\r\n", "[{}]", server.name);
        }
        // Read one key so that its `fetch` says yes (not the expiring one,
        // whose last access memcached moves only once a minute).
        client.call(b"get plain\r\n", b"END\r\n");
        for which in ["all", "hash", "1", "1,2"] {
            let reply = client.call(
                format!("lru_crawler metadump {which}\r\n").as_bytes(),
                b"END\r\n",
            );
            let text = String::from_utf8_lossy(&reply).into_owned();
            let body = text.strip_suffix("END\r\n").unwrap_or(&text);
            let mut lines: Vec<String> = body
                .split_inclusive('\n')
                .map(|l| normalized_metadump_line(l.trim_end_matches('\n')) + "\\n")
                .collect();
            lines.sort();
            // memcached's crawler may meet an item twice when a read moves it
            // between its LRUs during the walk; each key counts once.
            lines.dedup();
            log.push(format!("metadump {which}: {}", lines.join(" | ")));
        }
        for request in [
            "lru_crawler metadump 2",
            "lru_crawler metadump 0",
            "lru_crawler metadump x",
            "lru_crawler metadump",
            "lru_crawler crawl 64",
            "lru_crawler crawl 1,x",
            "lru_crawler crawl all extra",
            // Last: memcached answers BUSY while a crawl it started runs.
            "lru_crawler crawl 1,2",
        ] {
            let reply = client.call(format!("{request}\r\n").as_bytes(), b"\r\n");
            log.push(format!("{request}: {}", show(&reply)));
        }
        replies.push((server.name.clone(), log));
    }
    let (reference_name, reference) = replies.last().expect("a server").clone();
    for (name, log) in &replies {
        assert_eq!(
            log, &reference,
            "[{name}] answers differ from [{reference_name}]"
        );
    }
    assert!(
        reference[0].contains("key=a%2Fb~c exp=T+100 la=T cas=N fetch=no cls=1 size=71\\n"),
        "{reference:?}"
    );
}

//! The requests the cluster tests send and what they check: pipelined sets,
//! multi-key gets read back in order, a node's own copy read without routing,
//! `stats` and `stats cluster` values, and `ringcache cluster` run as an admin
//! (does I/O: sockets, processes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringcache::cluster::auth::{Secret, SECRET_FILE_NAME};

use super::{authenticate, Cluster, BATCH, READY_TIMEOUT};
use crate::support::{self, show, Client, REPLY_TIMEOUT};

/// `STAT name value` lines as pairs.
pub fn parse_stats(reply: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(reply)
        .lines()
        .filter_map(|line| line.strip_prefix("STAT "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

pub fn stat_u64(stats: &[(String, String)], name: &str) -> u64 {
    stats
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric stat {name} in {stats:?}"))
}

/// Node `id`'s own `curr_items` (plain `stats`).
pub fn curr_items(cluster: &Cluster, id: u32) -> u64 {
    stat_u64(&cluster.client(id).stats(""), "curr_items")
}

/// Sets every `(key, value)`, pipelined [`BATCH`] at a time; each must be `STORED`.
pub fn set_many(client: &mut Client, items: &[(String, String)], via: u32) {
    for batch in items.chunks(BATCH) {
        let mut request = Vec::new();
        for (key, value) in batch {
            request.extend_from_slice(format!("set {key} 0 0 {}\r\n", value.len()).as_bytes());
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        client.send(&request);
        let replies = client
            .read_until_nth(b"\r\n", batch.len(), REPLY_TIMEOUT)
            .unwrap_or_else(|f| {
                panic!(
                    "{} pipelined sets via node {via} (first {}) got no full reply: {}",
                    batch.len(),
                    batch[0].0,
                    show(f.received())
                )
            });
        let lines: Vec<&[u8]> = replies
            .split_inclusive(|&b| b == b'\n')
            .collect::<Vec<&[u8]>>();
        for ((key, _), line) in batch.iter().zip(lines) {
            assert_eq!(show(line), "STORED\\r\\n", "set {key} via node {via}");
        }
    }
}

/// One multi-key `get`: the `(key, value)` pairs in the order they came.
pub fn get_many(client: &mut Client, keys: &[&str], via: u32) -> Vec<(String, Vec<u8>)> {
    client.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
    let mut found = Vec::new();
    loop {
        let line = client
            .read_until(b"\r\n", REPLY_TIMEOUT)
            .unwrap_or_else(|f| {
                panic!(
                    "get of {} keys via node {via} (first {}): {f:?}",
                    keys.len(),
                    keys[0]
                )
            });
        if line == b"END\r\n" {
            return found;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        assert!(
            fields.len() == 4 && fields[0] == "VALUE",
            "get via node {via}: unexpected line {text:?}"
        );
        let len: usize = fields[3].parse().expect("value length");
        let body = client
            .read_exact_n(len + 2, REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("get via node {via}: value of {}: {f:?}", fields[1]));
        assert_eq!(&body[len..], b"\r\n", "get via node {via}: bad framing");
        found.push((fields[1].to_string(), body[..len].to_vec()));
    }
}

/// Reads every item back through node `via`, [`BATCH`] keys per `get`, and
/// checks that every key comes, in request order, with its value.
pub fn assert_all_read(client: &mut Client, items: &[(String, String)], via: u32) {
    for batch in items.chunks(BATCH) {
        let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
        let found = get_many(client, &keys, via);
        let found: Vec<(&str, String)> = found
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let expected: Vec<(&str, String)> =
            batch.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if found != expected {
            let at = found
                .iter()
                .zip(&expected)
                .position(|(f, e)| f != e)
                .unwrap_or(found.len().min(expected.len()));
            panic!(
                "get of {} keys via node {via}: {} came back; first difference at #{at}: \
                 expected {:?}, got {:?}",
                expected.len(),
                found.len(),
                expected.get(at),
                found.get(at)
            );
        }
    }
}

/// One answer to a local read.
#[derive(Debug, PartialEq, Eq)]
pub enum Local {
    Value(Vec<u8>),
    Miss,
    /// Any other one-line answer, e.g. `SERVER_ERROR not an owner ...`.
    Other(String),
}

impl Local {
    pub fn value(text: &str) -> Local {
        Local::Value(text.as_bytes().to_vec())
    }
}

/// Reads one node's own copy of keys: `rc rep 1` then `mg <key> v`, which the
/// node answers from its own store without routing.
pub struct LocalReader {
    pub node: u32,
    pub ip: String,
    pub port: u16,
    pub secret: Secret,
    pub client: Option<Client>,
}

impl LocalReader {
    pub fn mg(&mut self, key: &str) -> Local {
        let (node, ip, port, secret) = (self.node, &self.ip, self.port, &self.secret);
        let client = self.client.get_or_insert_with(|| {
            let mut client = Client::connect_at(ip, port);
            authenticate(&mut client, secret);
            client
        });
        // The header goes before every request: whether it marks the connection
        // or only the next request, each `mg` is then a local read.
        client.send(format!("rc rep 1\r\nmg {key} v\r\n").as_bytes());
        let line = client
            .read_until(b"\r\n", REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("local read of {key} at node {node}: {f:?}"));
        if line == b"EN\r\n" {
            return Local::Miss;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        if let Some(rest) = text.strip_prefix("VA ") {
            let len: usize = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("local read of {key} at node {node}: {text:?}"));
            let body = client
                .read_exact_n(len + 2, REPLY_TIMEOUT)
                .unwrap_or_else(|f| panic!("local read of {key} at node {node}: {f:?}"));
            assert_eq!(&body[len..], b"\r\n", "local read of {key}: bad framing");
            return Local::Value(body[..len].to_vec());
        }
        // The node may close the connection after an error line: start afresh.
        self.client = None;
        Local::Other(text.trim_end().to_string())
    }
}

/// Checks that every owner of every key holds its expected value.
pub fn assert_owners_hold(cluster: &Cluster, items: &[(String, String)], context: &str) {
    let mut readers: HashMap<u32, LocalReader> = cluster
        .real_ids()
        .into_iter()
        .map(|id| (id, cluster.local_reader(id)))
        .collect();
    for (key, value) in items {
        for owner in cluster.owners(key) {
            let reader = readers
                .get_mut(&owner)
                .unwrap_or_else(|| panic!("{key} is owned by node {owner}, not a real node"));
            assert_eq!(
                reader.mg(key),
                Local::value(value),
                "{context}: the copy of {key} at its owner node {owner} (owners {:?})",
                cluster.owners(key)
            );
        }
    }
}

pub fn items(prefix: &str, count: usize, tag: &str) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("{prefix}:{i}"),
                format!("{tag}-{i}-{}", i * 7919 % 10007),
            )
        })
        .collect()
}

/// Waits until node `id`'s own copy of `key` is `want`.
pub fn wait_for_local(cluster: &Cluster, id: u32, key: &str, want: &Local, context: &str) {
    let mut reader = cluster.local_reader(id);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let got = reader.mg(key);
        if got == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: node {id}'s copy of {key} is {got:?}, not {want:?}\nnode {id}'s log: {}",
            cluster.log(id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ringcache cluster --node <node 'id'> <args>`: (exit success, stdout).
pub fn admin(cluster: &Cluster, id: u32, args: &[&str]) -> (bool, String) {
    let node = cluster.node(id);
    let addr = format!("{}:{}", node.ip, node.port);
    let secret = cluster
        .dir
        .join(SECRET_FILE_NAME)
        .to_string_lossy()
        .into_owned();
    let mut argv = vec!["--node", &addr, "--cluster-secret", &secret];
    argv.extend_from_slice(args);
    support::ringcache_cluster(&argv)
}

/// Waits until every node of `ids` reports `epoch`, or a later one (a
/// failure detected meanwhile may have decided more), in `stats cluster`.
pub fn wait_for_epoch(cluster: &Cluster, ids: &[u32], epoch: u64) {
    let deadline = Instant::now() + READY_TIMEOUT;
    for &id in ids {
        while cluster.stats_cluster(id)["epoch"]
            .parse::<u64>()
            .is_ok_and(|at| at < epoch)
        {
            assert!(
                Instant::now() < deadline,
                "node {id} did not learn epoch {epoch}: {:?}\n{}",
                cluster.stats_cluster(id),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

//! Nodes that create a cluster (`--init`) or join one (`--join`), each with
//! its own data directory and no cluster file written by the test, and the
//! waits until the members agree on a change and have moved its keys (does
//! I/O: real processes, sockets, files).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringcache::cluster::auth::SECRET_FILE_NAME;

use super::requests::{items, parse_stats, set_many, stat_u64};
use super::{fresh_port, fresh_ports, READY_TIMEOUT, SIGKILL};
use crate::support::{Client, Server, REPLY_TIMEOUT};

/// Shards of each node of the membership tests.
pub const MEMBER_SHARDS: u16 = 2;

/// A node started with `--init` or `--join`, on 127.0.0.`n`, with its state in
/// a directory of its own. Killed on drop.
pub struct Member {
    pub ip: String,
    pub port: u16,
    /// Its `--data-dir`, which holds its copy of the cluster secret.
    pub dir: PathBuf,
    pub server: Option<Server>,
}

impl Member {
    /// Starts a node on 127.0.0.`n` under `root` with `how` (`--init`, or
    /// `--join HOST:PORT`) and waits until it accepts clients.
    pub fn start(n: u32, root: &std::path::Path, how: &[&str]) -> Member {
        let ip = format!("127.0.0.{n}");
        let port = fresh_port(&ip);
        let base = fresh_ports(&ip, MEMBER_SHARDS);
        let dir = root.join(format!("member-{n}"));
        if how.first() != Some(&"--init") {
            // The operator's step before a join: a copy of the secret `--init`
            // made, in the new node's data directory.
            std::fs::create_dir_all(&dir).expect("create the member's directory");
            let secret = root.join("member-1").join(SECRET_FILE_NAME);
            let copy = dir.join(SECRET_FILE_NAME);
            if !copy.exists() {
                std::fs::copy(&secret, &copy).expect("copy the cluster secret");
            }
        }
        let mut args: Vec<String> = how.iter().map(|a| a.to_string()).collect();
        args.extend(
            [
                "--data-dir",
                &dir.to_string_lossy(),
                "-l",
                &ip,
                "-p",
                &port.to_string(),
                "-t",
                &MEMBER_SHARDS.to_string(),
                "--shard-ports",
                &base.to_string(),
                "--peer-timeout-ms",
                "2000",
            ]
            .iter()
            .map(|a| a.to_string()),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::ringcache_at(&ip, port, &argv);
        Member {
            ip,
            port,
            dir,
            server: Some(server),
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn client(&self) -> Client {
        Client::connect_at(&self.ip, self.port)
    }

    pub fn stats_cluster(&self) -> HashMap<String, String> {
        self.try_stats_cluster().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_stats_cluster(&self) -> Result<HashMap<String, String>, String> {
        let mut client = Client::try_connect_at(&self.ip, self.port)
            .map_err(|e| format!("connect to {}: {e}", self.addr()))?;
        client.send(b"stats cluster\r\n");
        let reply = client
            .read_until(b"END\r\n", REPLY_TIMEOUT)
            .map_err(|f| format!("stats cluster on {}: {f:?}", self.addr()))?;
        Ok(parse_stats(&reply).into_iter().collect())
    }

    pub fn curr_items(&self) -> u64 {
        stat_u64(&self.client().stats(""), "curr_items")
    }

    pub fn log(&self) -> String {
        self.server.as_ref().map(Server::log).unwrap_or_default()
    }

    /// SIGKILLs the node and waits until it is gone.
    pub fn kill9(&mut self) {
        self.server
            .as_mut()
            .expect("a running node")
            .signal_and_wait(SIGKILL, Duration::from_secs(10))
            .expect("the node survived SIGKILL");
    }

    /// Runs `ringcache cluster --node <this node> <args>`.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(["cluster", "--node", &self.addr(), "--data-dir"])
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run ringcache cluster");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "ringcache cluster {args:?}: {text}");
        text
    }
}

/// A cluster of one node made with `--init`, in a fresh directory named after
/// `name`, holding 1,000 keys `<name>:<i>`.
pub fn one_node_cluster(name: &str) -> (PathBuf, Member, Vec<(String, String)>) {
    let root = std::env::temp_dir().join(format!("ringcache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let m1 = Member::start(1, &root, &["--init"]);
    wait_for_members(&[&m1], &[(1, "up")]);
    let items = items(name, 1000, name);
    set_many(&mut m1.client(), &items, 1);
    (root, m1, items)
}

/// Each `stats cluster` view's node id, epoch and node state, for a failure
/// message.
pub fn ids_epochs_and_states(
    views: &[HashMap<String, String>],
) -> Vec<(Option<&String>, Option<&String>, Option<&String>)> {
    views
        .iter()
        .map(|v| (v.get("node_id"), v.get("epoch"), v.get("node_state")))
        .collect()
}

/// Waits until every member reports the same epoch, `serving`, and node states
/// `states` (id, state) and nothing else: a change and the data movement it
/// starts are over.
pub fn wait_for_members(members: &[&Member], states: &[(u32, &str)]) -> u64 {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let views: Vec<HashMap<String, String>> = members
            .iter()
            .map(|m| m.try_stats_cluster())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n{}",
                    members
                        .iter()
                        .map(|m| m.log())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        let agreed = views.iter().all(|v| {
            v.get("epoch") == views[0].get("epoch")
                && v.get("node_state").map(String::as_str) == Some("serving")
                && v.get("nodes") == Some(&states.len().to_string())
                && states.iter().all(|(id, state)| {
                    v.get(&format!("node:{id}:state")).map(String::as_str) == Some(*state)
                })
        });
        if agreed {
            return views[0]["epoch"].parse().expect("an epoch");
        }
        assert!(
            Instant::now() < deadline,
            "the members did not settle on {states:?}: {:?}\n{}",
            ids_epochs_and_states(&views),
            members
                .iter()
                .map(|m| m.log())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `member` shows `node_state` `state`: a node learns the
/// decision that changes its own standing after the nodes that made it.
pub fn wait_for_node_state(member: &Member, state: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let now = member.stats_cluster()["node_state"].clone();
        if now == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} stayed {now}, not {state}\n{}",
            member.addr(),
            member.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the members' `curr_items` add up to `expected` (the old owners
/// of moved keys have released them).
pub fn wait_for_item_total(members: &[&Member], expected: u64) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let counts: Vec<u64> = members.iter().map(|m| m.curr_items()).collect();
        if counts.iter().sum::<u64>() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the members hold {counts:?} items, not {expected} in all"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

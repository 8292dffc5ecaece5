//! `ringcache cluster ...`: the admin commands, run against any node's client
//! port.
//!
//! - `status`: the node's `stats cluster`.
//! - `show`: the configuration in force, as a cluster file.
//! - `set KEY=VALUE...`: proposes the configuration in force with changes, at the
//!   next epoch, and waits for the decision. Keys: `write_ack=one|quorum|all`,
//!   `replicas=N`, `down=ID`, `up=ID`, `acceptors=ID,ID,...`. The proposal is a
//!   compare-and-set on the epoch: if another change wins that epoch, `set` says
//!   so and changes nothing.
//! - `add HOST:PORT SHARD,SHARD...`: adds a member with these endpoints as
//!   `joining`, under the next unused id, which it prints. Start that node with
//!   the configuration `show` prints, its id and an empty `--data-dir`: once it
//!   runs it asks to be marked `up`, and keys move to it. (`ringcache --join`
//!   does both steps from the new node.)
//! - `remove ID`: proposes the configuration without node ID (not an acceptor:
//!   change `acceptors` first). Its keys move to the nodes that now own them,
//!   copied from the other owners.
//!
//! Every command but `status` proves it holds the cluster secret first (see
//! `cluster::auth`): `--cluster-secret FILE`, or `cluster.secret` in
//! `--data-dir DIR` (a node's data directory on the same machine).
//!
//! A client of a node, outside the server's runtime: it uses only the
//! runtime's members-only handshake (`runtime::auth`) and its one-shot
//! requests to a node (`runtime::start`).

use crate::cluster::auth::{Secret, SECRET_FILE_NAME};
use crate::cluster::codec;
use crate::cluster::config::{ClusterConfig, NodeState, WriteAck};
use std::io::Write;
use std::time::Duration;

/// What `ringcache cluster --help` prints (and a wrong command line, to stderr).
const USAGE: &str =
    "usage: ringcache cluster [--node HOST:PORT] [--cluster-secret FILE | --data-dir DIR]\n\
     \x20      status | show | set KEY=VALUE... |\n\
     \x20      add HOST:PORT SHARD,SHARD... | remove ID\n\
     keys: write_ack=one|quorum|all replicas=N down=ID up=ID acceptors=ID,ID,...";

/// How long the admin command waits for a node's answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `ringcache cluster <args>`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut node = "127.0.0.1:11211".to_string();
    let mut secret_file = None;
    let mut data_dir = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--node" && i + 1 < args.len() {
            node = args[i + 1].clone();
            i += 2;
        } else if args[i] == "--cluster-secret" && i + 1 < args.len() {
            secret_file = Some(std::path::PathBuf::from(&args[i + 1]));
            i += 2;
        } else if args[i] == "--data-dir" && i + 1 < args.len() {
            data_dir = Some(std::path::PathBuf::from(&args[i + 1]));
            i += 2;
        } else {
            rest.push(args[i].clone());
            i += 1;
        }
    }
    let command = rest.first().map(String::as_str);
    if let Some("--help" | "-h" | "help") = command {
        println!("{USAGE}");
        return 0;
    }
    if command == Some("status") {
        // `stats cluster` is open to clients (discovery): no secret needed,
        // unless the node asks its clients to authenticate (`-Y`) or to speak
        // TLS (`-Z`); a member need not.
        let plain = crate::runtime::start::ask_plain(
            &node,
            b"stats cluster\r\n",
            b"END\r\n",
            ADMIN_TIMEOUT,
        );
        let refused = plain
            .as_ref()
            .map_or(true, |reply| reply.starts_with(b"CLIENT_ERROR"));
        // The secret is looked for only when the plain request was refused.
        if refused {
            if let Ok(secret) = find_secret(secret_file, data_dir) {
                return finish(crate::runtime::start::ask(
                    &node,
                    crate::runtime::start::Asker::Admin(&secret),
                    b"stats cluster\r\n",
                    b"END\r\n",
                    ADMIN_TIMEOUT,
                ));
            }
        }
        return finish(plain);
    }
    let secret = match find_secret(secret_file, data_dir) {
        Ok(secret) => secret,
        Err(message) => {
            eprintln!("ringcache cluster: {message}");
            return 2;
        }
    };
    let node = Admin {
        node: &node,
        secret: &secret,
    };
    let result = match command {
        Some("show") => show(&node).map(|c| c.to_file_text().into_bytes()),
        Some("set") if rest.len() > 1 => set(&node, &rest[1..]),
        Some("add") if rest.len() == 3 => {
            let request = format!("rc join {} {}\r\n", rest[1], rest[2]);
            exchange(&node, request.as_bytes(), b"\r\n").map(|reply| {
                let text = String::from_utf8_lossy(&reply).into_owned();
                let mut fields = text.split(' ');
                match (fields.next(), fields.next(), fields.next()) {
                    (Some("JOINED"), Some(id), Some(epoch)) => {
                        format!("epoch {epoch}: added node {id} (joining)\n").into_bytes()
                    }
                    _ => reply,
                }
            })
        }
        Some("remove") if rest.len() == 2 => remove(&node, &rest[1]),
        _ => Err(USAGE.into()),
    };
    finish(result)
}

/// The cluster secret an admin proves: `--cluster-secret FILE`, else
/// `cluster.secret` in `--data-dir DIR`.
fn find_secret(
    file: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
) -> Result<Secret, String> {
    let path = file
        .or_else(|| data_dir.map(|dir| dir.join(SECRET_FILE_NAME)))
        .ok_or_else(|| {
            "this command needs the cluster secret: --cluster-secret FILE, or --data-dir DIR of a node on this machine".to_string()
        })?;
    crate::runtime::auth::load_secret(&path)
}

/// Prints the reply and returns the exit code: 1 if the node refused, 2 if
/// the command could not be carried out.
fn finish(result: Result<Vec<u8>, String>) -> i32 {
    match result {
        Ok(bytes) => {
            let _ = std::io::stdout().write_all(&bytes);
            let refused = |word: &[u8]| bytes.windows(word.len()).any(|w| w == word);
            if refused(b"SERVER_ERROR") || refused(b"EXISTS") || refused(b"CLIENT_ERROR") {
                1
            } else {
                0
            }
        }
        Err(message) => {
            eprintln!("ringcache cluster: {message}");
            2
        }
    }
}

/// The node an admin command talks to, and the secret it proves there.
struct Admin<'a> {
    node: &'a str,
    secret: &'a Secret,
}

impl std::fmt::Display for Admin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.node)
    }
}

/// Sends `request`, after the handshake, and reads until the reply ends with `end`.
fn exchange(node: &Admin<'_>, request: &[u8], end: &[u8]) -> Result<Vec<u8>, String> {
    let asker = crate::runtime::start::Asker::Admin(node.secret);
    crate::runtime::start::ask(node.node, asker, request, end, ADMIN_TIMEOUT)
}

fn show(node: &Admin<'_>) -> Result<ClusterConfig, String> {
    let reply = exchange(node, b"rc show\r\n", b"END\r\n")?;
    let text = String::from_utf8_lossy(&reply);
    let body = text
        .split_once("\r\n")
        .map(|(_, body)| body.trim_end_matches("\r\nEND\r\n"))
        .filter(|_| text.starts_with("VALUE cluster "))
        .ok_or_else(|| format!("{node} is not a cluster node: {}", text.trim_end()))?;
    ClusterConfig::from_file_text(body).map_err(|e| format!("{node}: {e}"))
}

fn set(node: &Admin<'_>, changes: &[String]) -> Result<Vec<u8>, String> {
    let current = show(node)?;
    let mut spec = current.to_spec();
    for change in changes {
        let (key, value) = change
            .split_once('=')
            .ok_or_else(|| format!("{change}: not KEY=VALUE"))?;
        let id = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{change}: not a node id"))
        };
        match key {
            "write_ack" => {
                spec.write_ack = match value {
                    "one" => WriteAck::One,
                    "quorum" => WriteAck::Quorum,
                    "all" => WriteAck::All,
                    _ => return Err(format!("{change}: one, quorum or all")),
                }
            }
            "replicas" => {
                spec.replicas = value
                    .parse()
                    .map_err(|_| format!("{change}: not a number"))?
            }
            "down" | "up" => {
                let id = id()?;
                let node = spec
                    .nodes
                    .iter_mut()
                    .find(|n| n.id == id)
                    .ok_or_else(|| format!("{change}: no node {id}"))?;
                node.state = if key == "down" {
                    NodeState::Down
                } else {
                    NodeState::Up
                };
            }
            "acceptors" => {
                spec.acceptors = value
                    .split(',')
                    .map(|v| v.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("{change}: node ids separated by commas"))?
            }
            _ => return Err(format!("{change}: unknown key {key}")),
        }
    }
    propose(node, &current, spec)
}

fn remove(node: &Admin<'_>, id: &str) -> Result<Vec<u8>, String> {
    let id: u32 = id.parse().map_err(|_| format!("{id}: not a node id"))?;
    let current = show(node)?;
    if current.node(id).is_none() {
        return Err(format!("there is no node {id}"));
    }
    if current.acceptors().contains(&id) {
        return Err(format!(
            "node {id} is an acceptor: move it out first (set acceptors=...)"
        ));
    }
    let mut spec = current.to_spec();
    spec.nodes.retain(|n| n.id != id);
    propose(node, &current, spec)
}

/// Proposes `spec` as the successor of `current` through `node`.
fn propose(
    node: &Admin<'_>,
    current: &ClusterConfig,
    spec: crate::cluster::config::ClusterSpec,
) -> Result<Vec<u8>, String> {
    let next = current.successor(spec).map_err(|e| e.to_string())?;
    let mut request = b"rc propose ".to_vec();
    codec::encode_config(&next, &mut request);
    request.extend_from_slice(b"\r\n");
    let reply = exchange(node, &request, b"\r\n")?;
    let mut out = format!("epoch {}: ", next.epoch()).into_bytes();
    out.extend_from_slice(&reply);
    Ok(out)
}

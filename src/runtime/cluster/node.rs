//! The state a node's shards share ([`ClusterNode`]) and the view of one epoch
//! ([`View`]): the configuration, resolved addresses and TKO marks, and the
//! install of a newer epoch's view. Also the nodes seen voting, kept in
//! `--data-dir`. No network I/O; [`ClusterNode::keep_votes_in`] and
//! [`ClusterNode::saw_vote`] read and write that one file.

use crate::cluster::auth::Secret;
use crate::cluster::config::{ClusterConfig, Endpoint};
use crate::cluster::placement::Placement;
use crate::cluster::ring::Owner;
use crate::cluster::wire;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// One epoch's configuration as a node uses it: its placement, the resolved
/// addresses of its nodes, and their TKO marks (shared by every view of the
/// node, so a mark outlives an epoch change). Immutable; each shard keeps a copy
/// of its own and swaps it between requests when the epoch changes.
#[derive(Clone)]
pub struct View {
    pub placement: Placement,
    shard_addrs: HashMap<Owner, SocketAddr>,
    client_addrs: HashMap<u32, SocketAddr>,
    tko: HashMap<u32, Arc<AtomicBool>>,
    /// The placement before the last change of placement: while keys move,
    /// a node that owned a key then still holds it (until its new owners have
    /// it) and serves reads of it.
    pub(super) previous: Option<Placement>,
}

impl View {
    fn new(
        config: ClusterConfig,
        mut tko_of: impl FnMut(u32) -> Arc<AtomicBool>,
    ) -> Result<View, String> {
        let mut shard_addrs = HashMap::new();
        let mut client_addrs = HashMap::new();
        let mut tko = HashMap::new();
        for node in config.nodes() {
            client_addrs.insert(node.id, resolve(&node.client_addr)?);
            for (shard, endpoint) in node.shards.iter().enumerate() {
                let owner = Owner {
                    node: node.id,
                    shard: shard as u32,
                };
                shard_addrs.insert(owner, resolve(endpoint)?);
            }
            tko.insert(node.id, tko_of(node.id));
        }
        Ok(View {
            placement: Placement::new(Arc::new(config)),
            shard_addrs,
            client_addrs,
            tko,
            previous: None,
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        self.placement.config()
    }

    pub fn epoch(&self) -> u64 {
        self.placement.epoch()
    }

    pub fn shard_addr(&self, owner: Owner) -> Option<SocketAddr> {
        self.shard_addrs.get(&owner).copied()
    }

    pub fn client_addr(&self, node: u32) -> Option<SocketAddr> {
        self.client_addrs.get(&node).copied()
    }

    pub(super) fn tko_mark(&self, node: u32) -> bool {
        self.tko
            .get(&node)
            .is_some_and(|t| t.load(Ordering::Acquire))
    }
}

/// Whether `me`, up in `new`, must copy from the other owners before it is
/// primary again: `new` marks another node down that `old` did not, or
/// removes one that was up (a node whose disk was wiped comes back under a
/// new id), and `write_ack` `quorum` acknowledges a write with fewer than all
/// of a key's owners (R >= 3), so the node that now takes over as primary may
/// lack a write that another owner acknowledged. (`one` promises availability
/// first: an owner stands in at once, and what it lacks is a documented loss.)
fn takes_over(old: &ClusterConfig, new: &ClusterConfig, me: u32) -> bool {
    use crate::cluster::config::NodeState;
    let up = |config: &ClusterConfig, id: u32| {
        config.node(id).is_some_and(|n| n.state != NodeState::Down)
    };
    let gone = old
        .nodes()
        .iter()
        .any(|n| n.id != me && up(old, n.id) && !up(new, n.id));
    let replicas = new.replicas();
    up(new, me)
        && gone
        && new.write_ack() == crate::cluster::config::WriteAck::Quorum
        && new.write_ack().acks_needed(replicas) < replicas
}

/// What the whole node knows of its cluster.
pub struct ClusterNode {
    /// This node's id.
    pub me: u32,
    /// The view in force; shards copy it when `epoch` moves past theirs.
    pub(super) view: RwLock<Arc<View>>,
    pub(super) epoch: AtomicU64,
    pub peer_timeout: Duration,
    /// `--hinted-keys-max`.
    pub(super) hinted_keys_max: usize,
    /// Per node id: whether it is skipped (TKO) until a probe finds it answering.
    pub(super) tko: RwLock<HashMap<u32, Arc<AtomicBool>>>,
    /// The address connections to other nodes leave from: this node's own.
    pub local_ip: Option<std::net::IpAddr>,
    pub recovering: AtomicBool,
    /// When the watch last ticked (milliseconds since `started`).
    pub(super) last_tick_ms: AtomicU64,
    /// How many pauses of this process have been noticed: connections from
    /// peers opened before one are closed unread (their senders gave up on
    /// them and keep hints instead).
    pub(super) pauses: AtomicU64,
    /// When the last pause was noticed (milliseconds since `started`, plus one;
    /// 0: never).
    pub(super) pause_noticed_ms: AtomicU64,
    /// A pause was noticed and the watch has not started its recovery yet.
    pub(super) recovery_wanted: AtomicBool,
    /// A pause was noticed and the node has not settled with its peers since:
    /// its copies may be older than the other owners', so it is primary for
    /// no write, even when no other owner answers.
    pub(super) settling_after_pause: AtomicBool,
    /// Set while this node reaches fewer than a majority of the members (see
    /// `cut_off`); taken when it reaches one again, to copy what it missed.
    pub(super) was_cut_off: AtomicBool,
    /// This node runs Paxos (`--data-dir`): with `write_ack` `quorum` or
    /// `all`, a key's primary is its first owner that no decision marked
    /// down, the same on every node of an epoch, and no other owner stands in
    /// for it while it is only unreachable (that would make two primaries,
    /// each with its own copy, when views of who is reachable differ). With
    /// `one`, an owner stands in (availability first).
    pub(super) consensus: AtomicBool,
    /// This node must copy every item it owns from the nodes holding them: at
    /// start, and when an epoch gives it keys it did not own (data movement).
    pub(super) migration_wanted: AtomicBool,
    /// A decision marked another node down while writes are acknowledged by
    /// fewer than all owners: this node may now be primary for keys whose
    /// latest acknowledged write it missed (another owner acknowledged it),
    /// so it copies what the others hold first (`RecoverWhat::Takeover`).
    pub(super) takeover_wanted: AtomicBool,
    /// Keys moved to this node and it is copying them: it reads only the keys
    /// it owned on the same shard under every placement in `migrating_from`
    /// (those of the epochs before each move since the copy began).
    pub(super) migrating: AtomicBool,
    pub(super) migrating_from: RwLock<Vec<Placement>>,
    /// The placement before the epoch that last changed placement: a copy of a
    /// key this node owned then (and lost at that epoch) is current, and its
    /// new owners may read and copy it here until it is released; a copy of a
    /// key it owned neither then nor now is stale (kept only until release,
    /// while writes went elsewhere) and is never sent.
    /// Keys written on any shard since the node began to copy (recovery or
    /// moved keys): as primary, or as a replica while keys move here (see
    /// `note_written`). Copies never overwrite them, and the node reads them
    /// even before its copy is done. Empty otherwise.
    pub(super) written: std::sync::Mutex<HashSet<Vec<u8>>>,
    pub(super) written_any: AtomicBool,
    /// Peers a copy of every item (at start, or when keys moved here) went on
    /// without because they did not answer, and since when: this node lacks
    /// what it shares with them, so it neither reads nor is primary for those
    /// keys until a probe finds the peer again and the copy from it is done,
    /// or `unpulled_patience` has passed (the peer is then taken as gone with
    /// its items, as a decision marking it down would).
    pub(super) unpulled: std::sync::Mutex<HashMap<u32, Instant>>,
    pub(super) unpulled_any: AtomicBool,
    pub(super) unpulled_patience: Duration,
    /// Orders the raising and clearing of `recovering` with the two flags above.
    pub(super) recovery_lock: std::sync::Mutex<()>,
    /// When this node may release the items it no longer owns (milliseconds
    /// since `started`; 0: nothing to release).
    pub(super) release_due_ms: AtomicU64,
    /// Nodes whose Paxos votes this node's control thread has received
    /// (or ballots, which a node sends only as an acceptor with state).
    pub(super) votes_seen: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    /// With `--data-dir`: the file that keeps `votes_seen` across restarts
    /// ([`VOTES_SEEN_FILE`]).
    pub(super) votes_file: std::sync::OnceLock<std::path::PathBuf>,
    pub(super) started: Instant,
    pub(super) timeouts: AtomicU64,
    /// `timeouts` by the node that timed out (`stats peers`); changes only when
    /// a node becomes TKO, so a lock costs nothing on the request path.
    pub(super) timeouts_by_node: std::sync::Mutex<HashMap<u32, u64>>,
    pub(super) disconnects: AtomicU64,
    pub(super) hinted_keys: AtomicU64,
    /// Writes an owner missed (each became a hint), and hint sends that owners
    /// took since: `stats cluster`'s `missed_writes` and `replayed_hints`.
    pub(super) missed_writes: AtomicU64,
    pub(super) replayed_hints: AtomicU64,
    /// Peers that answer but missed writes (a refusal, a broken connection, a
    /// copy older than this node's): the watch sends them their hints again.
    /// (When: milliseconds since `started`, not before.)
    pub(super) replay_wanted: std::sync::Mutex<std::collections::BTreeMap<u32, u64>>,
    /// With `--data-dir`: the node whose ballot this node last promised (the
    /// Paxos leader as far as this node knows; 0: none yet).
    pub leader: AtomicU64,
    /// The cluster secret: every connection to another node opens with the
    /// handshake of `cluster::auth`, and only members may send `rc` lines here.
    pub secret: Secret,
    /// Who failed a handshake with this node (either way), so that each is
    /// logged once, not on every try: at most [`AUTH_WARNED_MAX`] names.
    pub(super) auth_warned: std::sync::Mutex<HashSet<String>>,
}

/// The file in `--data-dir` that lists the nodes this node has seen vote.
pub const VOTES_SEEN_FILE: &str = "votes-seen";

/// Writes `seen` to `path` whole (a new file renamed over the old one).
fn write_votes_seen(
    path: &std::path::Path,
    seen: &std::collections::BTreeSet<u32>,
) -> std::io::Result<()> {
    let text: Vec<String> = seen.iter().map(u32::to_string).collect();
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text.join(" ") + "\n")?;
    std::fs::rename(&fresh, path)
}

/// Most names of peers whose failed handshakes a node remembers having logged.
const AUTH_WARNED_MAX: usize = 1024;

fn resolve(endpoint: &Endpoint) -> Result<SocketAddr, String> {
    (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve {endpoint}"))
}

impl ClusterNode {
    pub fn new(
        config: ClusterConfig,
        me: u32,
        peer_timeout: Duration,
        hinted_keys_max: usize,
        secret: Secret,
        unpulled_patience: Duration,
    ) -> Result<ClusterNode, String> {
        if config.node(me).is_none() {
            return Err(format!("--node-id {me}: the cluster file has no node {me}"));
        }
        let mut tko = HashMap::new();
        let view = View::new(config, |id| {
            tko.entry(id)
                .or_insert_with(|| Arc::new(AtomicBool::new(false)))
                .clone()
        })?;
        let local_ip = view.client_addr(me).map(|addr| addr.ip());
        Ok(ClusterNode {
            me,
            local_ip,
            epoch: AtomicU64::new(view.epoch()),
            view: RwLock::new(Arc::new(view)),
            peer_timeout,
            hinted_keys_max,
            tko: RwLock::new(tko),
            recovering: AtomicBool::new(true),
            last_tick_ms: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            pause_noticed_ms: AtomicU64::new(0),
            recovery_wanted: AtomicBool::new(false),
            settling_after_pause: AtomicBool::new(false),
            was_cut_off: AtomicBool::new(false),
            consensus: AtomicBool::new(false),
            migration_wanted: AtomicBool::new(true),
            takeover_wanted: AtomicBool::new(false),
            migrating: AtomicBool::new(false),
            migrating_from: RwLock::new(Vec::new()),
            unpulled: std::sync::Mutex::new(HashMap::new()),
            unpulled_any: AtomicBool::new(false),
            unpulled_patience,
            written: std::sync::Mutex::new(HashSet::new()),
            written_any: AtomicBool::new(false),
            recovery_lock: std::sync::Mutex::new(()),
            release_due_ms: AtomicU64::new(0),
            votes_seen: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            votes_file: std::sync::OnceLock::new(),
            started: Instant::now(),
            timeouts: AtomicU64::new(0),
            timeouts_by_node: std::sync::Mutex::new(HashMap::new()),
            disconnects: AtomicU64::new(0),
            hinted_keys: AtomicU64::new(0),
            missed_writes: AtomicU64::new(0),
            replayed_hints: AtomicU64::new(0),
            replay_wanted: std::sync::Mutex::default(),
            leader: AtomicU64::new(0),
            secret,
            auth_warned: std::sync::Mutex::new(HashSet::new()),
        })
    }

    /// Logs, at warn, that `who` failed a handshake, the first time it does
    /// (and once it handshakes again, the next time).
    pub fn warn_auth_once(&self, who: &str, message: std::fmt::Arguments<'_>) {
        let mut warned = self.auth_warned.lock().expect("auth_warned lock");
        if warned.len() < AUTH_WARNED_MAX && warned.insert(who.to_string()) {
            log::warn!("{message}");
        }
    }

    /// `who` passed a handshake: its next failure is logged again.
    pub fn auth_passed(&self, who: &str) {
        let mut warned = self.auth_warned.lock().expect("auth_warned lock");
        if !warned.is_empty() {
            warned.remove(who);
        }
    }

    /// The view in force (for paths off the request path; shards keep their own).
    pub fn view(&self) -> Arc<View> {
        self.view.read().expect("view lock").clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Puts `config` in force if its epoch is newer than the one in force;
    /// shards take it up between requests. This node's own addresses cannot
    /// change while it runs (its sockets are bound). A node an epoch leaves out
    /// (removed) takes it up too: it owns nothing, forwards what clients still
    /// send it, and its keys are copied from it by their new owners.
    pub fn install(&self, config: ClusterConfig) -> Result<bool, String> {
        if config.epoch() <= self.epoch() {
            return Ok(false);
        }
        let old = self.view();
        match (old.config().node(self.me), config.node(self.me)) {
            (Some(before), Some(after))
                if before.client_addr == after.client_addr && before.shards == after.shards => {}
            (Some(_), None) => log::warn!(
                "epoch {} removes this node ({}) from the cluster: it hands its keys to their new owners and passes requests on to them; stop it",
                config.epoch(),
                self.me
            ),
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!(
                    "epoch {} names this node ({}) again after it was removed: not installed",
                    config.epoch(),
                    self.me
                ))
            }
            _ => {
                return Err(format!(
                    "epoch {} changes this node's own addresses: restart it with the new file",
                    config.epoch()
                ))
            }
        }
        let mut view = {
            let mut tko = self.tko.write().expect("tko lock");
            View::new(config, |id| {
                tko.entry(id)
                    .or_insert_with(|| Arc::new(AtomicBool::new(false)))
                    .clone()
            })?
        };
        let epoch = view.epoch();
        // A decision that marks this node down or up again means the others
        // wrote without it meanwhile; so may one it skipped (it jumps more than
        // one epoch, as a node does that was paused or cut off). Each time it
        // copies what it missed before it reads or is primary again.
        let down = |config: &ClusterConfig| {
            config
                .node(self.me)
                .is_some_and(|n| n.state == crate::cluster::config::NodeState::Down)
        };
        let own_state_changed = down(view.config()) != down(old.config());
        let skipped = epoch > old.epoch() + 1 && old.epoch() > 0;
        if self.consensus.load(Ordering::Acquire) && (own_state_changed || skipped) {
            log::info!(
                "epoch {epoch} {}: copying the writes this node missed",
                match (own_state_changed, down(view.config())) {
                    (true, true) => "marks this node down",
                    (true, false) => "marks this node up again",
                    _ => "follows epochs this node missed",
                }
            );
            self.settling_after_pause.store(true, Ordering::Release);
            self.want_recovery(&self.recovery_wanted);
        }
        if self.consensus.load(Ordering::Acquire)
            && takes_over(old.config(), view.config(), self.me)
        {
            log::info!(
                "epoch {epoch} marks a node down or removes it: copying what the other owners hold before this node is primary for their keys"
            );
            self.settling_after_pause.store(true, Ordering::Release);
            self.want_recovery(&self.takeover_wanted);
        }
        self.take_up_moves(&old, &mut view);
        *self.view.write().expect("view lock") = Arc::new(view);
        self.epoch.store(epoch, Ordering::Release);
        log::info!("cluster configuration of epoch {epoch} in force");
        Ok(true)
    }

    /// Notes that node `id` sent this node a Paxos vote or ballot: it holds
    /// acceptor state, and with an empty disk must not come back as `id`.
    /// Kept in `--data-dir` (written when an id is first seen), so that a
    /// node restarted since still knows.
    pub fn saw_vote(&self, id: u32) {
        let mut seen = self.votes_seen.lock().expect("votes lock");
        if !seen.insert(id) {
            return;
        }
        if let Some(path) = self.votes_file.get() {
            if let Err(e) = write_votes_seen(path, &seen) {
                log::warn!(
                    "cannot keep the nodes seen voting in {}: {e}",
                    path.display()
                );
            }
        }
    }

    /// Takes a key's primary from the decided configuration (see `consensus`).
    pub fn run_consensus(&self) {
        self.consensus.store(true, Ordering::Release);
    }

    /// Keeps the ids seen voting in `dir` from now on, after reading those an
    /// earlier run of this node kept there.
    pub fn keep_votes_in(&self, dir: &std::path::Path) -> Result<(), String> {
        let path = dir.join(VOTES_SEEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut seen = self.votes_seen.lock().expect("votes lock");
                for word in text.split_ascii_whitespace() {
                    let id = word
                        .parse::<u32>()
                        .map_err(|_| format!("{}: {word:?} is not a node id", path.display()))?;
                    seen.insert(id);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        let _ = self.votes_file.set(path);
        Ok(())
    }

    /// This node's answer to `rc status`.
    pub fn status(&self) -> wire::Status {
        wire::Status {
            epoch: self.epoch(),
            recovering: self.is_copying(),
            votes_seen: self
                .votes_seen
                .lock()
                .expect("votes lock")
                .iter()
                .copied()
                .collect(),
        }
    }

    /// The shard endpoints of `peer`: a member in force, or one removed since
    /// keys began to move to this node.
    pub fn shard_addrs(&self, peer: u32) -> Vec<SocketAddr> {
        let view = self.view();
        if let Some(node) = view.config().node(peer) {
            // Resolved when the view was made.
            return (0..node.shards.len() as u32)
                .filter_map(|shard| view.shard_addr(Owner { node: peer, shard }))
                .collect();
        }
        let from_config = |config: &ClusterConfig| {
            config.node(peer).map(|n| {
                n.shards
                    .iter()
                    .filter_map(|e| resolve(e).ok())
                    .collect::<Vec<_>>()
            })
        };
        self.migrating_from
            .read()
            .expect("migration lock")
            .iter()
            .rev()
            .find_map(|p| from_config(p.config()))
            .unwrap_or_default()
    }

    /// This node's client address and shard endpoints.
    pub fn own_addrs(&self) -> (SocketAddr, Vec<SocketAddr>) {
        let view = self.view();
        let shards = view.config().node(self.me).map_or(0, |n| n.shards.len());
        (
            view.client_addrs[&self.me],
            (0..shards as u32)
                .map(|shard| {
                    view.shard_addrs[&Owner {
                        node: self.me,
                        shard,
                    }]
                })
                .collect(),
        )
    }

    /// This node's part in the cluster, as `stats cluster` names it.
    pub fn state_name(&self) -> &'static str {
        if self.view().config().node(self.me).is_none() {
            "removed"
        } else if self.is_recovering() || self.lacks_any() {
            "recovering"
        } else if self.is_copying() {
            "migrating"
        } else {
            "serving"
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Milliseconds since this node started: when a connection was accepted.
    pub fn clock_ms(&self) -> u64 {
        self.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(replicas: usize, write_ack: &str, down: &[u32]) -> ClusterConfig {
        config_of(3, replicas, write_ack, down)
    }

    fn config_of(nodes: u32, replicas: usize, write_ack: &str, down: &[u32]) -> ClusterConfig {
        let mut file = format!("replicas = {replicas}\nwrite_ack = \"{write_ack}\"\n");
        for id in 1..=nodes {
            let state = if down.contains(&id) { "down" } else { "up" };
            file.push_str(&format!(
                "[[node]]\nid = {id}\naddr = \"127.0.0.{id}:11211\"\nshards = [\"127.0.0.{id}:11300\"]\nstate = \"{state}\"\n"
            ));
        }
        ClusterConfig::from_file_text(&file).expect("a cluster file")
    }

    #[test]
    fn a_node_takes_over_when_another_is_marked_down_and_writes_need_fewer_than_all_owners() {
        // R=3 `quorum`: a write acknowledged by 2 of 3 may be missing here.
        assert!(takes_over(
            &config(3, "quorum", &[]),
            &config(3, "quorum", &[1]),
            2
        ));
        // `all` (and `quorum` of 2, which is all): every owner that was up has
        // it; `one` puts availability first.
        assert!(!takes_over(
            &config(3, "one", &[]),
            &config(3, "one", &[1]),
            2
        ));
        assert!(!takes_over(
            &config(3, "all", &[]),
            &config(3, "all", &[1]),
            2
        ));
        assert!(!takes_over(
            &config(2, "quorum", &[]),
            &config(2, "quorum", &[1]),
            2
        ));
        // Only a new mark-down, of another node, and only for a node that is up.
        assert!(!takes_over(
            &config(3, "quorum", &[1]),
            &config(3, "quorum", &[1]),
            2
        ));
        assert!(!takes_over(
            &config(3, "quorum", &[1]),
            &config(3, "quorum", &[]),
            2
        ));
        assert!(!takes_over(
            &config(3, "quorum", &[]),
            &config(3, "quorum", &[2]),
            2
        ));
        assert!(!takes_over(
            &config(3, "quorum", &[2]),
            &config(3, "quorum", &[1, 2]),
            2
        ));
    }

    #[test]
    fn a_node_takes_over_when_another_that_was_up_is_removed() {
        let removed = |config: ClusterConfig, id: u32| {
            let mut spec = config.to_spec();
            spec.nodes.retain(|n| n.id != id);
            spec.acceptors.retain(|&a| a != id);
            ClusterConfig::new(config.epoch() + 1, spec).expect("a configuration")
        };
        // A node wiped and back under a new id, say: its acknowledged writes
        // may be on one other owner only.
        let old = config_of(4, 3, "quorum", &[]);
        assert!(takes_over(&old, &removed(old.clone(), 1), 2));
        // Not when the node removed was down already (taken over then), nor
        // for the node removed itself, nor with `all`.
        let old = config_of(4, 3, "quorum", &[1]);
        assert!(!takes_over(&old, &removed(old.clone(), 1), 2));
        let old = config_of(4, 3, "quorum", &[]);
        assert!(!takes_over(&old, &removed(old.clone(), 2), 2));
        let old = config_of(4, 3, "all", &[]);
        assert!(!takes_over(&old, &removed(old.clone(), 1), 2));
    }
}

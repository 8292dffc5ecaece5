//! A node's part in a cluster: where each request goes, replication of the
//! writes this node applies, hints for owners that missed writes, recovery of a
//! node that starts or was cut off, and probes of the nodes it skips (TKO).
//!
//! [`ClusterNode`] is shared by the node's shards (the configuration, which
//! peers are TKO, counters); [`ShardCluster`] is one shard's own part (its
//! links to other nodes' shards, its hints, the keys written while the node
//! recovers). The routing policy itself is pure, in `cluster::route`; this
//! module reads the facts it decides on. The rules, node by node:
//!
//! - Reads go to the first owner in the key's read order that is not TKO (and
//!   not this node while it recovers); a failed or timed-out read tries the next.
//! - Writes go to the first owner that is not TKO: that node applies the write
//!   as primary, sends the resulting item to the other owners, and answers once
//!   `write_ack` owners (itself included) have it. An owner it cannot reach gets
//!   a hint (the key), replayed when that owner asks during its recovery.
//! - A node recovers when it starts and when it finds it was paused: until every
//!   reachable peer has pushed what it missed (all shared items after a start,
//!   the hinted keys after a pause), it answers forwarded reads and writes with
//!   `SERVER_ERROR recovering` and its own reads and writes go to other owners
//!   (it is primary for a write only when no other owner is reachable). Pushed
//!   copies never overwrite a key written since recovery began.
//! - When an epoch moves keys (nodes added or removed, `replicas` changed), a
//!   node given keys it did not own drops any old copies of them and copies
//!   them from the nodes holding them, reading them only once it has (other
//!   owners serve them meanwhile); a copy never replaces a newer item (higher
//!   CAS). A node that lost keys releases them once every new owner reports
//!   the epoch and has finished copying. A node an epoch removes owns nothing,
//!   forwards, and is copied from.

use super::messages::{Answer, Ask};
use super::peer::{self, Link, Reply};
use super::shard::{with_state, ShardCtx};
use crate::cluster::auth::Secret;
use crate::cluster::config::{ClusterConfig, Endpoint, NodeState};
use crate::cluster::placement::Placement;
use crate::cluster::ring::{key_point, Owner};
use crate::cluster::route::{self, Access, Facts, Local, Member, OwnerFacts, OwnerList, Policy};
pub use crate::cluster::route::{Refusal, Role, Route};
use crate::cluster::tombstones::Tombstones;
use crate::cluster::wire::{self, PeerMode, RecoverWhat};
use crate::engine::ShardState;
use crate::limits::{
    EPOCH_RETRIES_MAX, EPOCH_RETRY_PAUSE_MS, MIGRATION_RELEASE_GRACE_MS,
    MIGRATION_RELEASE_RETRY_MS, PEER_PROBE_INTERVAL_MS, RECOVERY_PEER_TIMEOUT_SECS,
    RECOVERY_WRITTEN_KEYS_MAX,
};
use crate::storage::ttl::Clock;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
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

    fn tko_mark(&self, node: u32) -> bool {
        self.tko
            .get(&node)
            .is_some_and(|t| t.load(Ordering::Acquire))
    }
}

/// What the whole node knows of its cluster.
pub struct ClusterNode {
    /// This node's id.
    pub me: u32,
    /// The view in force; shards copy it when `epoch` moves past theirs.
    view: RwLock<Arc<View>>,
    epoch: AtomicU64,
    pub peer_timeout: Duration,
    /// `--hinted-keys-max`.
    hinted_keys_max: usize,
    /// Per node id: whether it is skipped (TKO) until a probe finds it answering.
    tko: RwLock<HashMap<u32, Arc<AtomicBool>>>,
    /// The address connections to other nodes leave from: this node's own.
    pub local_ip: Option<std::net::IpAddr>,
    pub recovering: AtomicBool,
    /// When the watch last ticked (milliseconds since `started`).
    last_tick_ms: AtomicU64,
    /// How many pauses of this process have been noticed: connections from
    /// peers opened before one are closed unread (their senders gave up on
    /// them and keep hints instead).
    pauses: AtomicU64,
    /// When the last pause was noticed (milliseconds since `started`, plus one;
    /// 0: never).
    pause_noticed_ms: AtomicU64,
    /// A pause was noticed and the watch has not started its recovery yet.
    recovery_wanted: AtomicBool,
    /// A pause was noticed and the node has not settled with its peers since:
    /// its copies may be older than the other owners', so it is primary for
    /// no write, even when no other owner answers.
    settling_after_pause: AtomicBool,
    /// Set while this node reaches fewer than a majority of the members (see
    /// `cut_off`); taken when it reaches one again, to copy what it missed.
    was_cut_off: AtomicBool,
    /// This node runs Paxos (`--data-dir`): with `write_ack` `quorum` or
    /// `all`, a key's primary is its first owner that no decision marked
    /// down, the same on every node of an epoch, and no other owner stands in
    /// for it while it is only unreachable (that would make two primaries,
    /// each with its own copy, when views of who is reachable differ). With
    /// `one`, an owner stands in (availability first).
    consensus: AtomicBool,
    /// This node must copy every item it owns from the nodes holding them: at
    /// start, and when an epoch gives it keys it did not own (data movement).
    migration_wanted: AtomicBool,
    /// Keys moved to this node and it is copying them: it reads only the keys
    /// it owned on the same shard under every placement in `migrating_from`
    /// (those of the epochs before each move since the copy began).
    migrating: AtomicBool,
    migrating_from: RwLock<Vec<Placement>>,
    /// The placement before the epoch that last changed placement: a copy of a
    /// key this node owned then (and lost at that epoch) is current, and its
    /// new owners may read and copy it here until it is released; a copy of a
    /// key it owned neither then nor now is stale (kept only until release,
    /// while writes went elsewhere) and is never sent.
    previous: RwLock<Option<Placement>>,
    /// Keys written (by any role but `Copy`) on any shard since the node began
    /// to copy (recovery or moved keys): copies never overwrite them, and the
    /// node reads them even before its copy is done. Empty otherwise.
    written: std::sync::Mutex<HashSet<Vec<u8>>>,
    written_any: AtomicBool,
    /// Peers a copy of every item (at start, or when keys moved here) went on
    /// without because they did not answer, and since when: this node lacks
    /// what it shares with them, so it neither reads nor is primary for those
    /// keys until a probe finds the peer again and the copy from it is done,
    /// or `unpulled_patience` has passed (the peer is then taken as gone with
    /// its items, as a decision marking it down would).
    unpulled: std::sync::Mutex<HashMap<u32, Instant>>,
    unpulled_any: AtomicBool,
    unpulled_patience: Duration,
    /// Orders the raising and clearing of `recovering` with the two flags above.
    recovery_lock: std::sync::Mutex<()>,
    /// When this node may release the items it no longer owns (milliseconds
    /// since `started`; 0: nothing to release).
    release_due_ms: AtomicU64,
    /// Nodes whose Paxos votes this node's control thread has received
    /// (or ballots, which a node sends only as an acceptor with state).
    votes_seen: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    /// With `--data-dir`: the file that keeps `votes_seen` across restarts
    /// ([`VOTES_SEEN_FILE`]).
    votes_file: std::sync::OnceLock<std::path::PathBuf>,
    started: Instant,
    timeouts: AtomicU64,
    /// `timeouts` by the node that timed out (`stats peers`); changes only when
    /// a node becomes TKO, so a lock costs nothing on the request path.
    timeouts_by_node: std::sync::Mutex<HashMap<u32, u64>>,
    disconnects: AtomicU64,
    hinted_keys: AtomicU64,
    /// Writes an owner missed (each became a hint), and hint sends that owners
    /// took since: `stats cluster`'s `missed_writes` and `replayed_hints`.
    missed_writes: AtomicU64,
    replayed_hints: AtomicU64,
    /// Peers that answer but missed writes (a refusal, a broken connection, a
    /// copy older than this node's): the watch sends them their hints again.
    /// (When: milliseconds since `started`, not before.)
    replay_wanted: std::sync::Mutex<std::collections::BTreeMap<u32, u64>>,
    /// With `--data-dir`: the node whose ballot this node last promised (the
    /// Paxos leader as far as this node knows; 0: none yet).
    pub leader: AtomicU64,
    /// The cluster secret: every connection to another node opens with the
    /// handshake of `cluster::auth`, and only members may send `rc` lines here.
    pub secret: Secret,
    /// Who failed a handshake with this node (either way), so that each is
    /// logged once, not on every try: at most [`AUTH_WARNED_MAX`] names.
    auth_warned: std::sync::Mutex<HashSet<String>>,
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
            migrating: AtomicBool::new(false),
            migrating_from: RwLock::new(Vec::new()),
            unpulled: std::sync::Mutex::new(HashMap::new()),
            unpulled_any: AtomicBool::new(false),
            unpulled_patience,
            previous: RwLock::new(None),
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
        let view = {
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
        // Data movement: a node given keys it did not own copies them before it
        // reads them (migrating from now on, so the writes it takes meanwhile
        // are not overwritten by the copies); one that lost keys releases them
        // once their new owners have them.
        let moves = crate::cluster::placement::moves(&old.placement, &view.placement, self.me);
        if moves.gains {
            log::info!("epoch {epoch} gives this node keys it did not own: copying them");
            let _order = self.recovery_lock.lock().expect("recovery lock");
            self.migrating_from
                .write()
                .expect("migration lock")
                .push(old.placement.clone());
            self.migration_wanted.store(true, Ordering::Release);
            self.migrating.store(true, Ordering::Release);
        }
        let placement_changed = old.placement.ring().points() != view.placement.ring().points()
            || old.config().replicas() != view.config().replicas();
        if placement_changed {
            // Copies this node kept of keys it lost before are stale from now
            // on: only those lost at this epoch are still current.
            *self.previous.write().expect("previous lock") = Some(old.placement.clone());
        }
        if moves.loses {
            let due = self.now_ms() + MIGRATION_RELEASE_GRACE_MS;
            self.release_due_ms.store(due, Ordering::Release);
        }
        *self.view.write().expect("view lock") = Arc::new(view);
        self.epoch.store(epoch, Ordering::Release);
        log::info!("cluster configuration of epoch {epoch} in force");
        Ok(true)
    }

    /// Raises `flag` (a recovery for the watch to run) and marks the node
    /// recovering until that recovery ends.
    fn want_recovery(&self, flag: &AtomicBool) {
        let _order = self.recovery_lock.lock().expect("recovery lock");
        flag.store(true, Ordering::Release);
        self.recovering.store(true, Ordering::Release);
    }

    /// Ends a recovery: the node serves its own reads again unless another
    /// recovery was asked for meanwhile.
    fn recovery_done(&self) {
        let _order = self.recovery_lock.lock().expect("recovery lock");
        if !self.migration_wanted.load(Ordering::Acquire)
            && !self.recovery_wanted.load(Ordering::Acquire)
        {
            self.recovering.store(false, Ordering::Release);
            self.settling_after_pause.store(false, Ordering::Release);
            self.migrating.store(false, Ordering::Release);
            self.migrating_from.write().expect("migration lock").clear();
        }
    }

    /// Whether this node is copying what it missed or what moved to it: the
    /// keys written meanwhile are kept from being overwritten by the copies.
    pub fn is_copying(&self) -> bool {
        self.is_recovering() || self.migrating.load(Ordering::Acquire)
    }

    /// Whether this node's copy of `key` on shard `owner` is one to hand to
    /// others: `owner` owns the key now and has it (it is not still copying
    /// it), or owned it before the last move.
    pub fn holds_current(
        &self,
        key: &[u8],
        owners: &crate::cluster::placement::Owners,
        owner: Owner,
    ) -> bool {
        (owners.contains(&owner) && self.copy_is_current(key, owner))
            || self
                .previous
                .read()
                .expect("previous lock")
                .as_ref()
                .is_some_and(|p| p.owners(key).contains(&owner))
    }

    /// Whether this node's copy of `key` on shard `owner` may be read: not
    /// while it recovers, and while keys move to it, only if it owned `key`
    /// on that shard before they began to move.
    pub fn may_read(&self, key: &[u8], owner: Owner) -> bool {
        self.copy_is_current(key, owner) && !self.lacks_shared(key)
    }

    /// Whether this node's copy of `key` on shard `owner`, if it has one, is
    /// as new as the node knows (a node that lacks what a peer holds may still
    /// hand its own copies to others).
    fn copy_is_current(&self, key: &[u8], owner: Owner) -> bool {
        if self.is_recovering() {
            return false;
        }
        if !self.migrating.load(Ordering::Acquire) {
            return true;
        }
        self.migrating_from
            .read()
            .expect("migration lock")
            .iter()
            .all(|placement| placement.owners(key).contains(&owner))
            || self.was_written(key)
    }

    /// Whether `key` was written here since the node began to copy.
    fn was_written(&self, key: &[u8]) -> bool {
        self.written_any.load(Ordering::Acquire)
            && self.written.lock().expect("written lock").contains(key)
    }

    /// The owners of the key at `point` under the placement before the last
    /// change of placement: while keys move, a node that owned a key then
    /// still holds it (until its new owners have it) and serves reads of it.
    pub fn previous_owners(&self, point: u32) -> Option<crate::cluster::placement::Owners> {
        self.previous
            .read()
            .expect("previous lock")
            .as_ref()
            .map(|p| p.owners_of_point(point))
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

    fn tko_flag(&self, node: u32) -> Option<Arc<AtomicBool>> {
        self.tko.read().expect("tko lock").get(&node).cloned()
    }

    pub fn is_tko(&self, node: u32) -> bool {
        node != self.me
            && self
                .tko_flag(node)
                .is_some_and(|t| t.load(Ordering::Acquire))
    }

    pub fn mark_tko(&self, node: u32) {
        if node == self.me {
            return;
        }
        if let Some(t) = self.tko_flag(node) {
            if !t.swap(true, Ordering::AcqRel) {
                log::warn!("node {node} is unreachable: skipping it until it answers a probe");
            }
        }
    }

    pub fn clear_tko(&self, node: u32) {
        if let Some(t) = self.tko_flag(node) {
            if t.swap(false, Ordering::AcqRel) {
                log::info!("node {node} answers again");
            }
        }
    }

    /// Marks `node` TKO after a request to it timed out; counts the timeouts
    /// that did so (those of requests already in flight when it happened do not).
    pub fn timed_out(&self, node: u32) {
        if node != self.me && !self.is_tko(node) {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            *self
                .timeouts_by_node
                .lock()
                .expect("timeouts lock")
                .entry(node)
                .or_insert(0) += 1;
        }
        self.mark_tko(node);
    }

    /// Whether `node` answers a no-op on its first shard's endpoint in time, as
    /// a forwarded request would be answered.
    pub async fn probe(&self, node: u32) -> bool {
        let first = Owner { node, shard: 0 };
        let Some(addr) = self
            .view()
            .shard_addr(first)
            .or_else(|| self.shard_addrs(node).first().copied())
        else {
            return false;
        };
        let mode = Some((PeerMode::Forward, self.epoch()));
        peer::one_off(self, addr, mode, wire::MN_REQUEST, self.peer_timeout).await == Ok(Vec::new())
    }

    /// Asks the watch to send `node` its hints again, at once (`retry`: after
    /// [`HINT_REPLAY_RETRY_MS`], the last send having failed).
    fn want_replay(&self, node: u32, retry: bool) {
        let due = if retry {
            self.now_ms() + HINT_REPLAY_RETRY_MS
        } else {
            0
        };
        let mut wanted = self.replay_wanted.lock().expect("replay lock");
        let entry = wanted.entry(node).or_insert(due);
        *entry = (*entry).min(due);
    }

    /// The peers to send their hints again now: those due that answer.
    fn take_replays(&self) -> Vec<u32> {
        let now = self.now_ms();
        let mut wanted = self.replay_wanted.lock().expect("replay lock");
        let ready: Vec<u32> = wanted
            .iter()
            .filter(|&(&id, &due)| due <= now && !self.is_tko(id) && !self.is_unpulled(id))
            .map(|(&id, _)| id)
            .collect();
        for id in &ready {
            wanted.remove(id);
        }
        ready
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

    pub fn count_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    /// Whether `key` is shared with a peer whose items this node has not
    /// copied yet (see `unpulled`); one that a decision marked down does not
    /// count, since it is not coming back with them.
    pub fn lacks_shared(&self, key: &[u8]) -> bool {
        if !self.unpulled_any.load(Ordering::Acquire) {
            return false;
        }
        let view = self.view();
        let unpulled = self.unpulled.lock().expect("unpulled lock");
        view.placement.owners(key).iter().any(|o| {
            unpulled
                .get(&o.node)
                .is_some_and(|since| since.elapsed() < self.unpulled_patience)
                && view
                    .config()
                    .node(o.node)
                    .is_some_and(|n| n.state != crate::cluster::config::NodeState::Down)
        })
    }

    /// Records whether a copy of every item from `peer` was done.
    fn set_pulled(&self, peer: u32, pulled: bool) {
        let mut unpulled = self.unpulled.lock().expect("unpulled lock");
        if pulled {
            unpulled.remove(&peer);
        } else if let std::collections::hash_map::Entry::Vacant(entry) = unpulled.entry(peer) {
            entry.insert(Instant::now());
            log::warn!(
                "node {peer} did not answer this node's copy of the items they share: \
                 they are neither read nor written here until it answers and they are \
                 copied, or for {:?} at most",
                self.unpulled_patience
            );
        }
        self.unpulled_any
            .store(!unpulled.is_empty(), Ordering::Release);
    }

    /// Whether some keys are neither read nor written here for now, for want
    /// of a peer's items (see `unpulled`).
    fn lacks_any(&self) -> bool {
        self.unpulled_any.load(Ordering::Acquire)
            && self
                .unpulled
                .lock()
                .expect("unpulled lock")
                .values()
                .any(|since| since.elapsed() < self.unpulled_patience)
    }

    fn is_unpulled(&self, peer: u32) -> bool {
        self.unpulled_any.load(Ordering::Acquire)
            && self
                .unpulled
                .lock()
                .expect("unpulled lock")
                .contains_key(&peer)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Notices whether this process was paused (the watch, due every
    /// [`PEER_PROBE_INTERVAL_MS`], has not ticked for much longer) and returns
    /// how many pauses have been noticed. Called by the watch and by peer
    /// connections before they apply anything, so that writes a sender timed
    /// out on during the pause are not applied after it.
    pub fn pauses(&self) -> u64 {
        self.notice_pause();
        self.pauses_noticed()
    }

    /// How many pauses have been noticed so far, without looking for a new one:
    /// what a connection records when it opens, so that a pause noticed later
    /// (even one that ended just before it was accepted) closes it.
    pub fn pauses_noticed(&self) -> u64 {
        self.pauses.load(Ordering::Acquire)
    }

    fn notice_pause(&self) {
        let now = self.now_ms();
        let seen = self.pauses.load(Ordering::Acquire);
        let last = self.last_tick_ms.load(Ordering::Acquire);
        let late = PEER_PROBE_INTERVAL_MS + self.peer_timeout.as_millis() as u64;
        if now <= last + late {
            return;
        }
        // Settling and recovering first, on whichever thread saw the pause
        // (a shard may take a request before the watch ticks again): nothing
        // read after the pause is served from copies it may have missed writes
        // to. Then the time, then the count: whoever sees the new count sees
        // when.
        self.settling_after_pause.store(true, Ordering::Release);
        self.want_recovery(&self.recovery_wanted);
        self.pause_noticed_ms.store(now + 1, Ordering::Release);
        if self
            .pauses
            .compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.last_tick_ms.store(now, Ordering::Release);
            log::warn!(
                "this node was paused for {} ms: recovering the writes it missed",
                now - last
            );
        }
    }

    /// Notices that this node, cut off from the majority before, reaches it
    /// again: the others wrote without it meanwhile, so it settles and copies
    /// what it missed (as after a pause) before it serves its copies or is
    /// primary again.
    fn notice_rejoin(&self) {
        if !self.was_cut_off.load(Ordering::Acquire)
            || !self.was_cut_off.swap(false, Ordering::AcqRel)
        {
            return;
        }
        self.settling_after_pause.store(true, Ordering::Release);
        self.want_recovery(&self.recovery_wanted);
        log::warn!(
            "this node reaches a majority of the members again: recovering the writes it missed"
        );
    }

    /// Milliseconds since this node started: when a connection was accepted.
    pub fn clock_ms(&self) -> u64 {
        self.now_ms()
    }

    /// Whether a connection from a peer, accepted at `accepted_ms` when
    /// `pauses_at_accept` pauses had been noticed, may carry requests its sender
    /// gave up on during a pause: it was open across one, or it was made during
    /// one (and accepted just after it was noticed). Forwarded requests and
    /// replicated items on it are not applied; the connection is closed and the
    /// sender, seeing it fail, keeps hints instead.
    pub fn opened_across_pause(&self, accepted_ms: u64, pauses_at_accept: u64) -> bool {
        if self.pauses() != pauses_at_accept {
            return true;
        }
        let noticed = self.pause_noticed_ms.load(Ordering::Acquire);
        noticed != 0 && accepted_ms < noticed - 1 + self.peer_timeout.as_millis() as u64
    }
}

/// How a connection's requests are served: as a client's, or as another node's
/// after an `rc <mode> <epoch>` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMode {
    Client,
    Peer { mode: PeerMode, epoch: u64 },
}

impl ShardCluster {
    fn node_clock(&self) -> Clock {
        self.runtime.clock()
    }

    /// This shard's copy of the view in force, taken up when the epoch moved.
    pub fn view(&self) -> Arc<View> {
        let epoch = self.node.epoch();
        if epoch != self.view_epoch.get() {
            let view = self.node.view();
            // Links to endpoints that moved are dropped; new ones connect anew.
            self.links
                .borrow_mut()
                .retain(|owner, link| view.shard_addr(*owner) == Some(link.addr()));
            self.view_epoch.set(view.epoch());
            *self.view.borrow_mut() = Arc::new((*view).clone());
        }
        self.view.borrow().clone()
    }

    /// Where a keyed request on a connection in `mode` goes (see `route`).
    pub fn route(&self, key: &[u8], write: bool, mode: ConnMode) -> Route {
        // A pause that ended just now is noticed here too, before anything is
        // served from this node's copies: the watch may not have ticked yet.
        self.node.notice_pause();
        let view = self.view();
        let access = Access::of(write);
        match mode {
            ConnMode::Client => {
                if self.cut_off(&view) {
                    return Route::Refuse(Refusal::NoOwnerReachable);
                }
                route::client(&self.facts(&view, key), access)
            }
            // A client's request another node forwarded is served as this
            // node's own client's would be: not while it is cut off from the
            // majority, and only once it has settled after reaching it again
            // (before its next own client's request, a forwarded write would
            // find it primary with copies that missed the majority's writes).
            // The sender tries the next owner.
            ConnMode::Peer {
                mode: PeerMode::Forward,
                ..
            } if self.cut_off(&view) => Route::Refuse(Refusal::Recovering),
            ConnMode::Peer { mode, epoch } => {
                route::peer(&self.facts(&view, key), mode, epoch, access)
            }
        }
    }

    /// Whether this node reaches fewer than a majority of the members (see
    /// `route::cut_off`), noting it; once it reaches a majority again after
    /// being cut off, it starts settling with its peers.
    fn cut_off(&self, view: &View) -> bool {
        let members = view.config().nodes().iter().map(|n| Member {
            node: n.id,
            tko: view.tko_mark(n.id),
        });
        if route::cut_off(&self.policy(view), members) {
            self.node.was_cut_off.store(true, Ordering::Release);
            return true;
        }
        self.node.notice_rejoin();
        false
    }

    /// The next owner a client's request for `key` may go to, leaving out those
    /// in `tried` (see `route::next_candidate`).
    pub fn next_candidate(
        &self,
        view: &View,
        key: &[u8],
        write: bool,
        tried: &[Owner],
    ) -> Option<Owner> {
        route::next_candidate(&self.facts(view, key), Access::of(write), tried)
    }

    fn policy(&self, view: &View) -> Policy {
        Policy {
            me: self.node.me,
            consensus: self.node.consensus.load(Ordering::Acquire),
            write_ack: view.config().write_ack(),
        }
    }

    /// What routing `key` depends on, read from `view` and this node's state
    /// now. The key is hashed once, here.
    fn facts(&self, view: &View, key: &[u8]) -> Facts {
        let node = &self.node;
        let point = key_point(key);
        let facts_of = |owner: Owner| OwnerFacts {
            owner,
            down: view
                .config()
                .node(owner.node)
                .is_some_and(|n| n.state == NodeState::Down),
            tko: view.tko_mark(owner.node),
            addressed: view.shard_addr(owner).is_some(),
        };
        let owners: OwnerList = view
            .placement
            .owners_of_point(point)
            .iter()
            .map(|&o| facts_of(o))
            .collect();
        let read_order: OwnerList = view
            .placement
            .read_order_of_point(point)
            .iter()
            .map(|o| {
                *owners
                    .iter()
                    .find(|f| f.owner == *o)
                    .expect("the read order holds the key's owners")
            })
            .collect();
        let previous = node
            .previous_owners(point)
            .map(|p| p.iter().map(|&o| facts_of(o)).collect());
        // Only asked of a node that owns the key.
        let mine = owners
            .iter()
            .find(|o| o.owner.node == node.me)
            .map(|o| o.owner);
        let lacks_shared = mine.is_some() && node.lacks_shared(key);
        Facts {
            policy: self.policy(view),
            epoch: view.epoch(),
            owners,
            read_order,
            previous,
            local: Local {
                recovering: node.is_recovering(),
                settling: node.settling_after_pause.load(Ordering::Acquire),
                lacks_shared,
                may_read: mine.is_some_and(|o| !lacks_shared && node.copy_is_current(key, o)),
                handing_over: node.release_due_ms.load(Ordering::Acquire) != 0,
            },
        }
    }
}

/// What became of one item sent to another owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ack {
    Acked,
    /// The receiver does not own the key at the epoch it is at.
    Moved,
    Failed,
}

/// One write's replication: the replies of the other owners, and how many of
/// them must acknowledge it before the client is answered.
pub struct Ticket {
    key: Vec<u8>,
    replies: Vec<(Rc<Link>, Reply)>,
    needed: usize,
    /// The epoch whose owners the item went to.
    epoch: u64,
}

/// The hints one shard keeps for one unreachable node.
#[derive(Default)]
struct Hints {
    keys: HashSet<Vec<u8>>,
    overflowed: bool,
}

/// One shard's part of the cluster.
pub struct ShardCluster {
    pub node: Arc<ClusterNode>,
    /// The node this shard belongs to (for the store's clock).
    runtime: Arc<super::Node>,
    links: RefCell<HashMap<Owner, Rc<Link>>>,
    hints: RefCell<HashMap<u32, Hints>>,
    /// The removals this shard applied, with their CAS uniques.
    tombstones: RefCell<Tombstones>,
    /// Client requests this shard forwarded to each node, by node id (`stats peers`).
    forwarded: RefCell<HashMap<u32, u64>>,
    /// Peers this shard is settling with (see [`exchange`]).
    exchanging: RefCell<HashSet<u32>>,
    view: RefCell<Arc<View>>,
    view_epoch: Cell<u64>,
    /// This shard's number on its node.
    shard: u32,
}

impl ShardCluster {
    pub fn new(node: Arc<ClusterNode>, runtime: Arc<super::Node>, shard: u32) -> ShardCluster {
        let view = node.view();
        ShardCluster {
            shard,
            runtime,
            view_epoch: Cell::new(view.epoch()),
            view: RefCell::new(Arc::new((*view).clone())),
            node,
            links: RefCell::new(HashMap::new()),
            hints: RefCell::new(HashMap::new()),
            tombstones: RefCell::default(),
            forwarded: RefCell::new(HashMap::new()),
            exchanging: RefCell::new(HashSet::new()),
        }
    }

    /// Counts a client request forwarded to `node`.
    pub fn count_forwarded(&self, node: u32) {
        *self.forwarded.borrow_mut().entry(node).or_insert(0) += 1;
    }

    /// Client requests this shard forwarded, by node id.
    pub fn forwarded_to(&self) -> Vec<(u32, u64)> {
        self.forwarded
            .borrow()
            .iter()
            .map(|(&node, &n)| (node, n))
            .collect()
    }

    /// This shard as an owner of keys.
    fn own_owner(&self) -> Owner {
        Owner {
            node: self.node.me,
            shard: self.shard,
        }
    }

    /// This shard's link to `owner`'s shard, made on first use. An owner found
    /// in an older view may have left the cluster since: its link goes nowhere
    /// (port 0 refuses at once), so the caller's request fails and moves on to
    /// the owners of the view in force.
    pub fn link(&self, owner: Owner) -> Rc<Link> {
        let view = self.view();
        let Some(addr) = view.shard_addr(owner) else {
            return Link::new(
                owner,
                SocketAddr::from(([127, 0, 0, 1], 0)),
                self.node.clone(),
            );
        };
        self.links
            .borrow_mut()
            .entry(owner)
            .or_insert_with(|| Link::new(owner, addr, self.node.clone()))
            .clone()
    }

    /// Applies a keyed request in `role` (the engine has already executed it
    /// for `Plain`): bookkeeping before and after, and for `Primary` the
    /// replication of the resulting item. Returns false when a `Copy` must not
    /// be applied (the key was written since recovery began).
    pub fn before_apply(&self, key: &[u8], role: Role) -> bool {
        let node = &self.node;
        if !node.is_copying() {
            // A load first: the flag is shared by every shard, and a write
            // to it on each apply would bounce its cache line between them.
            if node.written_any.load(Ordering::Acquire)
                && node.written_any.swap(false, Ordering::AcqRel)
            {
                *node.written.lock().expect("written lock") = HashSet::new();
            }
            return true;
        }
        match role {
            // A merge is a pushed state like a copy, not a write made here:
            // the two are ordered by CAS (see `apply`). Counted as a write,
            // it would refuse a later copy of a newer write (a hint replayed
            // by the primary that wrote while this node was away).
            Role::Plain | Role::Merge(_) => true,
            Role::Copy(_) => !node.was_written(key),
            Role::Primary | Role::Replica => {
                node.written_any.store(true, Ordering::Release);
                let mut written = node.written.lock().expect("written lock");
                if written.len() < RECOVERY_WRITTEN_KEYS_MAX {
                    written.insert(key.to_vec());
                } else if written.len() == RECOVERY_WRITTEN_KEYS_MAX {
                    log::warn!(
                        "more than {RECOVERY_WRITTEN_KEYS_MAX} keys written during recovery: copies may overwrite newer writes"
                    );
                    written.insert(Vec::new());
                }
                true
            }
        }
    }

    /// Sends the item `key` now is (or its removal) to the key's other owners.
    pub fn replicate(&self, state: &mut ShardState, key: &[u8], clock: &Clock) -> Ticket {
        let mut record = Vec::new();
        encode_current(self, state, key, clock, &mut record);
        let view = self.view();
        let owners = view.placement.owners(key);
        let config = view.config();
        // This node's own copy counts when it is one of the owners. `write_ack`
        // counts among the owners that are up: once a decision marks an owner
        // down, `quorum` and `all` are reached without it (it gets a hint, and
        // catches up when it is back), so one dead node stops no writes.
        // (A node marked down may still be primary for a write, as the first
        // reachable owner: its own copy then counts for nothing.)
        let is_up = |node: u32| {
            config
                .node(node)
                .is_none_or(|n| n.state != crate::cluster::config::NodeState::Down)
        };
        let mine = usize::from(
            owners
                .iter()
                .any(|o| o.node == self.node.me && is_up(o.node)),
        );
        let up = owners.iter().filter(|o| is_up(o.node)).count().max(1);
        let needed = config.write_ack().acks_needed(up).saturating_sub(mine);
        let mut replies = Vec::with_capacity(owners.len());
        for &owner in owners.iter().filter(|o| o.node != self.node.me) {
            if self.node.is_tko(owner.node) {
                self.hint(owner.node, key);
            } else {
                let link = self.link(owner);
                let reply = link.send(PeerMode::Replica, record.clone());
                replies.push((link, reply));
            }
        }
        Ticket {
            key: key.to_vec(),
            replies,
            needed,
            epoch: view.epoch(),
        }
    }

    /// Waits until enough owners have acknowledged the write (true) or too
    /// many have failed (false). Owners that fail get a hint; those not waited
    /// for are followed in the background.
    ///
    /// An owner that answers it no longer owns the key has taken up an epoch
    /// that moved it: the item is sent again to the owners in force, which
    /// may have copied the key before this write.
    pub async fn settle(self: &Rc<Self>, mut ticket: Ticket) -> bool {
        let mut attempt = 0;
        loop {
            let Ticket {
                key,
                replies,
                needed,
                epoch,
            } = ticket;
            let mut acks = 0;
            let mut moved = false;
            let mut replies = replies.into_iter();
            while acks < needed {
                let Some((link, reply)) = replies.next() else {
                    break;
                };
                match self
                    .acknowledged(&link, reply, &key, PeerMode::Replica)
                    .await
                {
                    Ack::Acked => acks += 1,
                    Ack::Moved => moved = true,
                    Ack::Failed => {}
                }
            }
            let rest: Vec<_> = replies.collect();
            if !rest.is_empty() {
                let me = self.clone();
                let key = key.clone();
                glommio::spawn_local(async move {
                    let mut moved = false;
                    for (link, reply) in rest {
                        moved |= me.acknowledged(&link, reply, &key, PeerMode::Replica).await
                            == Ack::Moved;
                    }
                    if moved {
                        let clock = me.node_clock();
                        let again = with_state(|s| me.replicate(s, &key, &clock));
                        for (link, reply) in again.replies {
                            me.acknowledged(&link, reply, &key, PeerMode::Replica).await;
                        }
                    }
                })
                .detach();
            }
            // Owners acknowledged under an epoch that has since moved the key
            // may not be its owners now: the owners in force are sent it too.
            let view = self.view();
            moved |= view.epoch() != epoch
                && !view
                    .placement
                    .owners(&key)
                    .iter()
                    .any(|o| o.node == self.node.me);
            if !moved || attempt == EPOCH_RETRIES_MAX {
                return acks >= needed;
            }
            attempt += 1;
            glommio::timer::sleep(Duration::from_millis(EPOCH_RETRY_PAUSE_MS)).await;
            let clock = self.node_clock();
            ticket = with_state(|s| self.replicate(s, &key, &clock));
        }
    }

    async fn acknowledged(&self, link: &Rc<Link>, reply: Reply, key: &[u8], mode: PeerMode) -> Ack {
        let mut reply = reply;
        let mut epoch_retries = 0;
        loop {
            match link.wait(reply).await {
                Ok(answer) if wire::is_ack(&answer) => return Ack::Acked,
                Ok(answer) if answer == wire::NOT_AN_OWNER => return Ack::Moved,
                // The owner is taking up another configuration: send it the
                // item as it is now, a moment later.
                // An owner of an older view that the view in force has moved
                // the key from (or left out): the caller sends it anew.
                Ok(answer)
                    if answer.starts_with(wire::EPOCH_MISMATCH_PREFIX)
                        && !self.view().placement.owners(key).contains(&link.target) =>
                {
                    return Ack::Moved
                }
                Ok(answer)
                    if answer.starts_with(wire::EPOCH_MISMATCH_PREFIX)
                        && epoch_retries < EPOCH_RETRIES_MAX =>
                {
                    epoch_retries += 1;
                    glommio::timer::sleep(Duration::from_millis(EPOCH_RETRY_PAUSE_MS)).await;
                    let clock = self.node_clock();
                    let mut record = Vec::new();
                    with_state(|s| encode_current(self, s, key, &clock, &mut record));
                    reply = link.send(mode, record);
                }
                Ok(answer) => {
                    log::warn!(
                        "node {} refused a replicated item: {}",
                        link.target.node,
                        String::from_utf8_lossy(&answer).trim_end()
                    );
                    self.hint(link.target.node, key);
                    return Ack::Failed;
                }
                Err(_) => {
                    self.hint(link.target.node, key);
                    return Ack::Failed;
                }
            }
        }
    }

    /// Remembers that `node` missed the latest write of `key`. A node that is
    /// not skipped as unreachable (it refused the write, or a connection to it
    /// broke) is sent its hints again by the watch; one that is gets them when
    /// a probe finds it again.
    fn hint(&self, node: u32, key: &[u8]) {
        if node == self.node.me {
            return;
        }
        log::trace!("hint for node {node}: {}", String::from_utf8_lossy(key));
        self.node.missed_writes.fetch_add(1, Ordering::Relaxed);
        if !self.node.is_tko(node) {
            self.node.want_replay(node, false);
        }
        let mut hints = self.hints.borrow_mut();
        let hints = hints.entry(node).or_default();
        if hints.overflowed {
            return;
        }
        let max = self.node.hinted_keys_max;
        if hints.keys.len() >= max {
            log::warn!(
                "more than {max} hinted keys for node {node}: dropping them; it will copy what it shares with this node when it returns"
            );
            self.node
                .hinted_keys
                .fetch_sub(hints.keys.len() as u64, Ordering::Relaxed);
            hints.keys = HashSet::new();
            hints.overflowed = true;
        } else if hints.keys.insert(key.to_vec()) {
            self.node.hinted_keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Pushes to recovering `node` what it asked for: the keys hinted for it, or
    /// every item of this shard it co-owns. Returns the reply to `rc recover`.
    pub async fn push_recovery(
        self: &Rc<Self>,
        node: u32,
        what: RecoverWhat,
        clock: &Clock,
    ) -> &'static [u8] {
        // A node that is recovering itself may hold copies older than what it
        // has yet to get back: the asker tries again once it is done.
        if what == RecoverWhat::All && self.node.is_recovering() {
            return wire::RECOVERING;
        }
        let taken = self.hints.borrow_mut().remove(&node).unwrap_or_default();
        self.node
            .hinted_keys
            .fetch_sub(taken.keys.len() as u64, Ordering::Relaxed);
        let mut pending: Vec<(Rc<Link>, Reply, Vec<u8>)> = Vec::new();
        match what {
            RecoverWhat::Hints if taken.overflowed => {
                // Keep the mark until the node copies everything.
                self.hints.borrow_mut().entry(node).or_default().overflowed = true;
                return wire::HINTS_OVERFLOWED;
            }
            RecoverWhat::Hints => {
                for key in taken.keys {
                    let owners = self.view().placement.owners(&key);
                    let Some(&target) = owners.iter().find(|o| o.node == node) else {
                        continue;
                    };
                    let mut record = Vec::new();
                    with_state(|s| encode_current(self, s, &key, clock, &mut record));
                    let link = self.link(target);
                    let reply = link.send(PeerMode::Copy(self.node.me), record);
                    pending.push((link, reply, key));
                }
            }
            RecoverWhat::All => {
                let segments = with_state(|s| s.store.segment_count());
                for segment in 0..segments {
                    let mut batch: Vec<(Owner, Vec<u8>, Vec<u8>)> = Vec::new();
                    let me = self.own_owner();
                    with_state(|s| {
                        s.store.visit_segment(segment, clock.rel_secs, |item| {
                            let owners = self.view().placement.owners(item.key);
                            let target = owners.iter().find(|o| o.node == node);
                            if let (Some(&target), true) =
                                (target, self.node.holds_current(item.key, &owners, me))
                            {
                                let mut record = Vec::new();
                                encode_view(&item, clock, &mut record);
                                batch.push((target, record, item.key.to_vec()));
                            }
                        })
                    });
                    for (target, record, key) in batch {
                        let link = self.link(target);
                        let reply = link.send(PeerMode::Copy(self.node.me), record);
                        pending.push((link, reply, key));
                    }
                    // Bound what is in flight: wait for this segment's copies.
                    if !self
                        .all_acknowledged(&mut pending, PeerMode::Copy(self.node.me))
                        .await
                    {
                        return b"SERVER_ERROR copy failed\r\n";
                    }
                    glommio::executor().yield_if_needed().await;
                }
                for (target, record, key) in self.removals_for(node, clock) {
                    let link = self.link(target);
                    let reply = link.send(PeerMode::Copy(self.node.me), record);
                    pending.push((link, reply, key));
                }
            }
        }
        if self
            .all_acknowledged(&mut pending, PeerMode::Copy(self.node.me))
            .await
        {
            wire::RECOVERED
        } else {
            b"SERVER_ERROR copy failed\r\n"
        }
    }

    /// Sends `node`, which this node could not reach, the current items of the
    /// keys this shard changed meanwhile (every shared item if those keys were
    /// dropped at their bound), in `merge` mode: `node` keeps its own item for
    /// keys it changed itself meanwhile. Returns whether all were acknowledged.
    pub async fn push_hints(self: &Rc<Self>, node: u32, clock: &Clock) -> bool {
        let taken = self.hints.borrow_mut().remove(&node).unwrap_or_default();
        self.node
            .hinted_keys
            .fetch_sub(taken.keys.len() as u64, Ordering::Relaxed);
        let mode = PeerMode::Merge(self.node.me);
        let mut pending: Vec<(Rc<Link>, Reply, Vec<u8>)> = Vec::new();
        let mut send = |key: &[u8], record: Vec<u8>| {
            let owners = self.view().placement.owners(key);
            if let Some(&target) = owners.iter().find(|o| o.node == node) {
                let link = self.link(target);
                let reply = link.send(mode, record);
                pending.push((link, reply, key.to_vec()));
            }
        };
        if taken.overflowed {
            let mut records = Vec::new();
            with_state(|s| {
                for segment in 0..s.store.segment_count() {
                    s.store.visit_segment(segment, clock.rel_secs, |item| {
                        let mut record = Vec::new();
                        encode_view(&item, clock, &mut record);
                        records.push((item.key.to_vec(), record));
                    });
                }
            });
            for (key, record) in records {
                send(&key, record);
            }
            for (_, record, key) in self.removals_for(node, clock) {
                send(&key, record);
            }
        } else {
            for key in taken.keys {
                let mut record = Vec::new();
                with_state(|s| encode_current(self, s, &key, clock, &mut record));
                send(&key, record);
            }
        }
        self.all_acknowledged(&mut pending, PeerMode::Merge(self.node.me))
            .await
    }

    async fn all_acknowledged(
        &self,
        pending: &mut Vec<(Rc<Link>, Reply, Vec<u8>)>,
        mode: PeerMode,
    ) -> bool {
        let mut ok = true;
        for (link, reply, key) in pending.drain(..) {
            if self.acknowledged(&link, reply, &key, mode).await != Ack::Acked {
                ok = false;
            }
        }
        ok
    }

    /// Whether this shard's state of `key` (its item, or its remembered
    /// removal) is newer than a copy carrying `cas`: CAS values grow with
    /// every write of a key on any node (each node raises its counter past
    /// those it is sent), so the higher one is newer. A copy of the same item
    /// is taken (a `touch` keeps the CAS unique and changes the expiry).
    fn holds_newer(&self, state: &mut ShardState, key: &[u8], cas: u64, clock: &Clock) -> bool {
        if let Ok(item) = state.store.peek(key, clock.rel_secs) {
            return item.cas > cas;
        }
        self.tombstones
            .borrow_mut()
            .cas_of(key, clock.rel_secs)
            .is_some_and(|removed| removed >= cas)
    }

    /// The removals this shard remembers of keys `node` owns, as records to
    /// send it (a node copying every shared item gets them with the items, so
    /// that no older copy brings a removed key back).
    fn removals_for(&self, node: u32, clock: &Clock) -> Vec<(Owner, Vec<u8>, Vec<u8>)> {
        let view = self.view();
        let me = self.own_owner();
        let mut tombstones = self.tombstones.borrow_mut();
        let mut records = Vec::new();
        for (key, cas) in tombstones.live(clock.rel_secs) {
            let owners = view.placement.owners(key);
            let Some(&target) = owners.iter().find(|o| o.node == node) else {
                continue;
            };
            if self.node.holds_current(key, &owners, me) {
                let mut record = Vec::new();
                wire::encode_removal(key, cas, &mut record);
                records.push((target, record, key.to_vec()));
            }
        }
        records
    }

    pub fn hinted_keys(&self) -> u64 {
        self.node.hinted_keys.load(Ordering::Relaxed)
    }
}

/// Applies a keyed text or meta request in `role`, writing its reply to `out`;
/// for `Primary`, returns the replication to settle before the reply is sent.
pub fn apply(
    cluster: &ShardCluster,
    state: &mut ShardState,
    req: &crate::protocol::text::Request<'_>,
    key: &[u8],
    role: Role,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Ticket> {
    if !cluster.before_apply(key, role) {
        // A copy older than a write since recovery began: acknowledged, not applied.
        log::trace!(
            "{role:?} {}: written since recovery began",
            String::from_utf8_lossy(key)
        );
        return None;
    }
    if let (Role::Replica | Role::Copy(_) | Role::Merge(_), Some(cas)) = (role, req_new_cas(req)) {
        // Several nodes may push a key (nodes pushing copies, a node that was
        // cut off): the newest state wins whatever the order, and a removal
        // is a state like an item. A primary's write is taken as it comes: a
        // primary that has not copied the key yet (it just gained it) gives it
        // a unique from its own counter, which may be smaller than an older
        // write's.
        log::trace!(
            "{role:?} {} {} cas {cas}",
            if is_removal(req) {
                "removal of"
            } else {
                "item"
            },
            String::from_utf8_lossy(key)
        );
        if role != Role::Replica && cluster.holds_newer(state, key, cas, clock) {
            log::trace!("  older than held: not applied");
            if let Role::Copy(from @ 1..) | Role::Merge(from @ 1..) = role {
                // The pusher's copy is older than this node's: it missed a
                // write, which it is sent again.
                cluster.hint(from, key);
            }
            return None;
        }
        let mut tombstones = cluster.tombstones.borrow_mut();
        if is_removal(req) {
            tombstones.note(key, cas, clock.rel_secs);
        } else {
            tombstones.forget(key);
        }
    }
    crate::engine::execute(state, req, clock, out);
    after_apply(cluster, state, req_new_cas(req), key, role, clock)
}

/// [`apply`] for one key of a multi-key retrieval (`gat` changes its item).
#[allow(clippy::too_many_arguments)]
pub fn apply_get_one(
    cluster: &ShardCluster,
    state: &mut ShardState,
    kind: crate::protocol::text::GetKind,
    exptime: Option<i64>,
    key: &[u8],
    role: Role,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Ticket> {
    cluster.before_apply(key, role);
    crate::engine::get_one(state, kind, exptime, key, clock, out);
    after_apply(cluster, state, None, key, role, clock)
}

/// [`apply`] for a binary request.
pub fn apply_binary(
    cluster: &ShardCluster,
    state: &mut ShardState,
    req: &crate::protocol::binary::BinRequest<'_>,
    key: &[u8],
    role: Role,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Ticket> {
    cluster.before_apply(key, role);
    crate::engine::binary::execute(state, req, clock, out);
    after_apply(cluster, state, None, key, role, clock)
}

/// Whether a removal is what `req` sends.
fn is_removal(req: &crate::protocol::text::Request<'_>) -> bool {
    matches!(req, crate::protocol::text::Request::Meta(meta)
        if meta.command == crate::protocol::meta::MetaCommand::Delete)
}

fn req_new_cas(req: &crate::protocol::text::Request<'_>) -> Option<u64> {
    match req {
        crate::protocol::text::Request::Meta(meta) => meta.flags.new_cas,
        _ => None,
    }
}

fn after_apply(
    cluster: &ShardCluster,
    state: &mut ShardState,
    new_cas: Option<u64>,
    key: &[u8],
    role: Role,
    clock: &Clock,
) -> Option<Ticket> {
    match role {
        Role::Primary => {
            log::trace!("primary for {}", String::from_utf8_lossy(key));
            // A removal this shard remembers is of an older state once the
            // key holds an item again: a later delete takes a fresh unique
            // above that item's (see `encode_current`), not the old removal's.
            let mut tombstones = cluster.tombstones.borrow_mut();
            if !tombstones.is_empty() && state.store.peek(key, clock.rel_secs).is_ok() {
                tombstones.forget(key);
            }
            drop(tombstones);
            Some(cluster.replicate(state, key, clock))
        }
        Role::Replica | Role::Copy(_) | Role::Merge(_) => {
            if let Some(cas) = new_cas {
                state.store.observe_cas(cas);
            }
            None
        }
        Role::Plain => None,
    }
}

/// Writes the record that makes a replica's copy of `key` what this store
/// holds: the item, or its removal with the CAS unique the removal took (a key
/// missing here with no removal remembered takes a new one now: its absence is
/// this node's newest state of it).
fn encode_current(
    cluster: &ShardCluster,
    state: &mut ShardState,
    key: &[u8],
    clock: &Clock,
    out: &mut Vec<u8>,
) {
    if let Ok(item) = state.store.peek(key, clock.rel_secs) {
        return encode_view(&item, clock, out);
    }
    let mut tombstones = cluster.tombstones.borrow_mut();
    let cas = match tombstones.cas_of(key, clock.rel_secs) {
        Some(cas) => cas,
        None => {
            let cas = state.store.new_cas();
            tombstones.note(key, cas, clock.rel_secs);
            cas
        }
    };
    wire::encode_removal(key, cas, out);
}

fn encode_view(item: &crate::storage::ItemView<'_>, clock: &Clock, out: &mut Vec<u8>) {
    let exptime_unix =
        (item.exptime != 0).then(|| clock.process_started_unix + item.exptime as i64);
    wire::encode_item(
        item.key,
        item.value,
        item.flags,
        exptime_unix,
        item.cas,
        out,
    );
}

/// Whether a text or meta request changes its item (and so goes to the primary
/// and is replicated).
pub fn is_write(req: &crate::protocol::text::Request<'_>) -> bool {
    use crate::protocol::meta::MetaCommand;
    use crate::protocol::text::Request;
    match req {
        Request::Store { .. }
        | Request::TooLarge { .. }
        | Request::Delete { .. }
        | Request::Arith { .. }
        | Request::Touch { .. } => true,
        Request::Get { exptime, .. } => exptime.is_some(),
        Request::Meta(meta) => match meta.command {
            MetaCommand::Get => meta.flags.ttl.is_some() || meta.flags.vivify_ttl.is_some(),
            MetaCommand::Set | MetaCommand::Delete | MetaCommand::Arith => true,
            _ => false,
        },
        _ => false,
    }
}

/// The node's recovery: at start (`All`), every item it shares with each
/// reachable peer is copied from that peer; after a pause (`Hints`), it settles
/// with each reachable peer (see [`exchange`]). Until then it does not serve
/// reads of its own.
pub async fn recover(ctx: Rc<ShardCtx>, what: RecoverWhat) {
    let cluster = ctx.cluster.clone().expect("a cluster node");
    let node = &cluster.node;
    let started = Instant::now();
    if what == RecoverWhat::All && !node.is_recovering() {
        // Keys moved here: copies this node kept from an earlier time it owned
        // them are stale (a key deleted since would come back), so they go
        // before the current ones are copied.
        let clock = ctx.node.clock();
        with_state(|s| drop_gained(&cluster, s, &clock));
        ctx.ask_all(|| Ask::DropGained).await;
    }
    let mut settled = 0;
    // The members in force, and those removed since keys began to move here
    // (they still hold the keys they owned).
    let mut peers: Vec<u32> = node.view().config().nodes().iter().map(|n| n.id).collect();
    for placement in node.migrating_from.read().expect("migration lock").iter() {
        peers.extend(placement.config().nodes().iter().map(|n| n.id));
    }
    peers.sort_unstable();
    peers.dedup();
    peers.retain(|&id| id != node.me);
    for &peer in &peers {
        // A peer that does not answer a no-op now is not waited for: what it
        // holds for this node is out of reach until it answers again, and then
        // its probe asks this node to settle with it.
        let mut reachable = false;
        for _ in 0..RECOVERY_PROBES {
            if node.probe(peer).await {
                reachable = true;
                break;
            }
        }
        if reachable {
            // A mark this node set when its requests timed out across its
            // own pause says nothing of the peer.
            node.clear_tko(peer);
        } else {
            // Usual when a whole cluster starts at once: not worth a warning.
            log::info!(
                "node {peer} is not reachable for recovery: skipping it until it answers a probe"
            );
            if let Some(t) = node.tko_flag(peer) {
                t.store(true, Ordering::Release);
            }
            if what == RecoverWhat::All {
                node.set_pulled(peer, false);
            }
            continue;
        }
        let done = match what {
            RecoverWhat::All => {
                let pulled = pull(&ctx, peer, RecoverWhat::All).await;
                node.set_pulled(peer, pulled);
                pulled
            }
            RecoverWhat::Hints => exchange(&ctx, peer).await,
        };
        settled += done as usize;
    }
    node.recovery_done();
    log::info!(
        "recovered ({what:?}) from {settled} of {} peers in {:?}",
        peers.len(),
        started.elapsed()
    );
}

/// Settles this node with `peer` after they could not reach each other: first
/// it sends `peer` (in `merge` mode) the keys it changed and could not
/// replicate to it, which `peer` takes unless it holds a newer state of them
/// (a larger CAS unique); then it asks for `peer`'s hints, which it takes
/// unless written since or older than its own. One exchange with
/// a given peer runs at a time.
pub async fn exchange(ctx: &ShardCtx, peer: u32) -> bool {
    let cluster = ctx.cluster.as_ref().expect("a cluster node");
    while !cluster.exchanging.borrow_mut().insert(peer) {
        glommio::timer::sleep(Duration::from_millis(PEER_PROBE_INTERVAL_MS)).await;
    }
    let clock = ctx.node.clock();
    let mut pushed = cluster.push_hints(peer, &clock).await;
    for answer in ctx.ask_all(|| Ask::PushHints { node: peer }).await {
        pushed &= matches!(answer, Answer::Pushed(true));
    }
    if !pushed {
        log::warn!("node {peer} did not take every item this node changed while it was away");
    }
    let pulled = pull(ctx, peer, RecoverWhat::Hints).await;
    cluster.exchanging.borrow_mut().remove(&peer);
    pushed && pulled
}

/// Asks every shard of `peer` to push `what` to this node; when `peer` dropped
/// its hints for this node, drops the data shared with `peer` and copies it all.
async fn pull(ctx: &ShardCtx, peer: u32, mut what: RecoverWhat) -> bool {
    let cluster = ctx.cluster.as_ref().expect("a cluster node");
    let node = &cluster.node;
    let shards = node.shard_addrs(peer).len() as u32;
    loop {
        let mut overflowed = false;
        let mut complete = true;
        for shard in 0..shards {
            // A push can fail on a connection the peer opened while this
            // node was paused (closed unread here): ask again.
            let mut answered = false;
            for attempt in 1..=RECOVERY_ATTEMPTS_MAX {
                match ask_recovery(node, Owner { node: peer, shard }, what).await {
                    Some(reply) if reply == wire::RECOVERED => answered = true,
                    Some(reply) if reply == wire::HINTS_OVERFLOWED => {
                        overflowed = true;
                        answered = true;
                    }
                    Some(reply) => {
                        let text = String::from_utf8_lossy(&reply);
                        let text = text.trim_end();
                        if reply == wire::RECOVERING {
                            log::debug!("recovery from node {peer} shard {shard} (attempt {attempt}): {text}");
                        } else {
                            log::warn!("recovery from node {peer} shard {shard} (attempt {attempt}): {text}");
                        }
                        glommio::timer::sleep(Duration::from_millis(PEER_PROBE_INTERVAL_MS)).await;
                        continue;
                    }
                    None => {}
                }
                break;
            }
            complete &= answered;
        }
        if !overflowed || what == RecoverWhat::All {
            return complete;
        }
        log::warn!(
            "node {peer} dropped its hints for this node: dropping the data shared with it and copying it afresh"
        );
        ctx.ask_all(|| Ask::DropShared { node: peer }).await;
        let clock = ctx.node.clock();
        with_state(|s| drop_shared(cluster, s, peer, &clock));
        what = RecoverWhat::All;
    }
}

/// How long a node waits before it sends a peer that answers the writes it
/// missed again, after a send of them failed.
const HINT_REPLAY_RETRY_MS: u64 = 1000;

/// How many no-ops a recovering node sends a peer before it goes on without it
/// (one may be lost to a slow moment, or to a connection made during a pause).
const RECOVERY_PROBES: u32 = 3;

/// How many times a recovering node asks one peer shard before it goes on
/// without what that shard holds for it.
const RECOVERY_ATTEMPTS_MAX: u32 = 5;

/// Sends `rc recover` to one peer shard and returns its reply.
async fn ask_recovery(node: &ClusterNode, owner: Owner, what: RecoverWhat) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    wire::encode_recover(node.epoch(), node.me, what, &mut request);
    let addr = *node.shard_addrs(owner.node).get(owner.shard as usize)?;
    match ask_peer_shard(node, addr, &request).await {
        Ok(reply) => Some(reply),
        Err(e) => {
            log::warn!(
                "recovery from node {} shard {}: {e:?}",
                owner.node,
                owner.shard
            );
            None
        }
    }
}

/// Removes from this shard's store every item whose owners include `peer`.
pub fn drop_shared(cluster: &ShardCluster, state: &mut ShardState, peer: u32, clock: &Clock) {
    unlink_where(cluster, state, clock, |_, owners| {
        owners.iter().any(|o| o.node == peer)
    });
}

/// Unlinks every item of this shard's store that `unwanted` picks, given its
/// key and its owners under the view in force.
fn unlink_where(
    cluster: &ShardCluster,
    state: &mut ShardState,
    clock: &Clock,
    mut unwanted: impl FnMut(&[u8], &crate::cluster::placement::Owners) -> bool,
) {
    let view = cluster.view();
    let mut keys = Vec::new();
    for segment in 0..state.store.segment_count() {
        state.store.visit_segment(segment, clock.rel_secs, |item| {
            if unwanted(item.key, &view.placement.owners(item.key)) {
                keys.push(item.key.to_vec());
            }
        });
    }
    for key in keys {
        state.store.unlink(&key);
    }
}

/// Probes the nodes marked TKO and clears the mark of those that answer; and
/// notices when this process was paused (a tick much later than due), which
/// means peers may have hints for it: then it recovers them.
pub async fn watch(ctx: Rc<ShardCtx>) {
    let node = ctx.cluster.as_ref().expect("a cluster node").node.clone();
    let interval = Duration::from_millis(PEER_PROBE_INTERVAL_MS);
    let probing: Rc<RefCell<HashSet<u32>>> = Rc::default();
    // One recovery, and one release, runs at a time.
    let recovering = Rc::new(Cell::new(false));
    let releasing = Rc::new(Cell::new(false));
    loop {
        if !recovering.get() {
            let what = if node.migration_wanted.swap(false, Ordering::AcqRel) {
                Some(RecoverWhat::All)
            } else if node.recovery_wanted.swap(false, Ordering::AcqRel) {
                Some(RecoverWhat::Hints)
            } else {
                None
            };
            if let Some(what) = what {
                recovering.set(true);
                let (ctx, recovering) = (ctx.clone(), recovering.clone());
                glommio::spawn_local(async move {
                    recover(ctx, what).await;
                    recovering.set(false);
                })
                .detach();
            }
        }
        let due = node.release_due_ms.load(Ordering::Acquire);
        if due != 0 && node.now_ms() >= due && !node.is_copying() && !releasing.get() {
            releasing.set(true);
            let (ctx, releasing) = (ctx.clone(), releasing.clone());
            glommio::spawn_local(async move {
                let node = &ctx.cluster.as_ref().expect("a cluster node").node;
                let next = match release(&ctx).await {
                    0 => 0,
                    _ => node.now_ms() + MIGRATION_RELEASE_RETRY_MS,
                };
                // A newer epoch's release, set meanwhile, stands.
                let _ = node.release_due_ms.compare_exchange(
                    due,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                releasing.set(false);
            })
            .detach();
        }
        glommio::timer::sleep(interval).await;
        node.pauses();
        node.last_tick_ms.store(node.now_ms(), Ordering::Release);
        for id in node.take_replays() {
            if probing.borrow().contains(&id) || node.is_recovering() {
                node.want_replay(id, true);
                continue;
            }
            probing.borrow_mut().insert(id);
            let probing = probing.clone();
            let ctx = ctx.clone();
            glommio::spawn_local(async move {
                replay_hints(&ctx, id).await;
                probing.borrow_mut().remove(&id);
            })
            .detach();
        }
        let ids: Vec<u32> = node.view().config().nodes().iter().map(|n| n.id).collect();
        for id in ids {
            if (node.is_tko(id) || node.is_unpulled(id)) && !probing.borrow().contains(&id) {
                probing.borrow_mut().insert(id);
                let node = node.clone();
                let probing = probing.clone();
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    // A peer this node has not copied its shared items from
                    // yet is copied from first, then settles as any other.
                    let pulled = || async {
                        if !node.is_unpulled(id) {
                            return true;
                        }
                        let pulled = pull(&ctx, id, RecoverWhat::All).await;
                        node.set_pulled(id, pulled);
                        pulled
                    };
                    if node.probe(id).await && pulled().await && ask_exchange(&node, id).await {
                        node.clear_tko(id);
                    }
                    probing.borrow_mut().remove(&id);
                })
                .detach();
            }
        }
    }
}

/// Releases, on every shard, the items this node no longer owns whose new
/// owners all have them: nodes that answer `rc status` at this epoch or a later
/// one and are not recovering (so they have copied what they gained). Returns
/// how many items are kept for a later try.
async fn release(ctx: &ShardCtx) -> u64 {
    let node = &ctx.cluster.as_ref().expect("a cluster node").node;
    let view = node.view();
    let mut ready = Vec::new();
    for peer in view.config().nodes().iter().filter(|n| n.id != node.me) {
        if node.is_tko(peer.id) {
            continue;
        }
        let Some(addr) = view.client_addr(peer.id) else {
            continue;
        };
        let reply = peer::one_off(node, addr, None, b"rc status\r\nmn\r\n", node.peer_timeout)
            .await
            .ok()
            .and_then(|reply| wire::parse_status(&reply));
        if let Some(status) = reply {
            if status.epoch >= view.epoch() && !status.recovering {
                ready.push(peer.id);
            }
        }
    }
    let clock = ctx.node.clock();
    let cluster = ctx.cluster.as_ref().expect("a cluster node");
    let mut kept = with_state(|s| release_items(cluster, s, &ready, &clock));
    for answer in ctx
        .ask_all(|| Ask::Release {
            ready: ready.clone(),
        })
        .await
    {
        if let Answer::Kept(n) = answer {
            kept += n;
        }
    }
    if kept > 0 {
        log::info!("{kept} items this node no longer owns wait for their new owners");
    } else {
        log::info!("released every item this node no longer owns");
    }
    kept
}

/// Drops this shard's copies of the keys that moved to it (it reads them only
/// once copied), except those written since they moved.
pub fn drop_gained(cluster: &ShardCluster, state: &mut ShardState, clock: &Clock) {
    let me = cluster.own_owner();
    // `may_read` is true for keys written since they moved.
    unlink_where(cluster, state, clock, |key, owners| {
        owners.contains(&me) && !cluster.node.may_read(key, me)
    });
}

/// Drops the items of this shard that this node no longer owns on it and
/// whose owners are all in `ready`; returns how many others it keeps. An item
/// that moves to another shard of this node is kept (its new shard copies it
/// from the other owners).
pub fn release_items(
    cluster: &ShardCluster,
    state: &mut ShardState,
    ready: &[u32],
    clock: &Clock,
) -> u64 {
    let me = cluster.own_owner();
    let mut kept = 0;
    unlink_where(cluster, state, clock, |_, owners| {
        if owners.contains(&me) {
            return false;
        }
        let released = owners.iter().all(|o| ready.contains(&o.node));
        kept += u64::from(!released);
        released
    });
    kept
}

/// Sends `peer`, which answers but missed writes, the current items (or
/// removals) of the keys every shard holds hints for, in `merge` mode as
/// [`exchange`] does; hints it does not take stay and are sent again later.
async fn replay_hints(ctx: &ShardCtx, peer: u32) {
    let cluster = ctx.cluster.as_ref().expect("a cluster node");
    let node = &cluster.node;
    let before = node.hinted_keys.load(Ordering::Relaxed);
    let clock = ctx.node.clock();
    let mut pushed = cluster.push_hints(peer, &clock).await;
    for answer in ctx.ask_all(|| Ask::PushHints { node: peer }).await {
        pushed &= matches!(answer, Answer::Pushed(true));
    }
    let after = node.hinted_keys.load(Ordering::Relaxed);
    let sent = before.saturating_sub(after);
    if pushed {
        node.replayed_hints.fetch_add(sent, Ordering::Relaxed);
        log::info!("node {peer} missed {sent} writes: sent again");
    } else {
        log::warn!(
            "node {peer} missed writes and did not take them when sent again: retrying in {HINT_REPLAY_RETRY_MS} ms"
        );
        node.want_replay(peer, true);
    }
}

/// Asks `peer`, which answers again, to settle with this node before this
/// node reads from it (see [`exchange`]).
async fn ask_exchange(node: &ClusterNode, peer: u32) -> bool {
    let mut request = Vec::new();
    wire::encode_exchange(node.epoch(), node.me, &mut request);
    let Some(addr) = node.view().shard_addr(Owner {
        node: peer,
        shard: 0,
    }) else {
        return false;
    };
    ask_peer_shard(node, addr, &request).await.as_deref() == Ok(wire::RECOVERED)
}

/// Sends a recovery request (`rc recover`, `rc exchange`) on a connection of
/// its own and waits for the reply, which comes once the work is done.
async fn ask_peer_shard(
    node: &ClusterNode,
    addr: SocketAddr,
    request: &[u8],
) -> Result<Vec<u8>, peer::LinkError> {
    let timeout = Duration::from_secs(RECOVERY_PEER_TIMEOUT_SECS);
    peer::one_off(node, addr, None, request, timeout).await
}

/// The cluster view for `stats cluster`: the configuration, this node's state
/// and counters, and every node's reachability and item count.
pub async fn write_stats_cluster(ctx: &ShardCtx, own_items: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    let cluster = ctx.cluster.as_ref().expect("a cluster node");
    let node = &cluster.node;
    let mut body = Vec::new();
    let view = node.view();
    crate::cluster::discovery::encode_stats_cluster(view.config(), &mut body);
    body.truncate(body.len() - b"END\r\n".len());
    let _ = write!(body, "STAT node_id {}\r\n", node.me);
    write_state_stats(cluster, &mut body);
    let _ = write!(
        body,
        "STAT missed_writes {}\r\n",
        node.missed_writes.load(Ordering::Relaxed)
    );
    let _ = write!(
        body,
        "STAT replayed_hints {}\r\n",
        node.replayed_hints.load(Ordering::Relaxed)
    );
    write_link_stats(node, &mut body);
    for peer in view.config().nodes() {
        let items = if peer.id == node.me {
            Some(own_items)
        } else if node.is_tko(peer.id) {
            None
        } else {
            peer::one_off(
                node,
                view.client_addr(peer.id).expect("a member's address"),
                None,
                b"stats\r\nmn\r\n",
                node.peer_timeout,
            )
            .await
            .ok()
            .and_then(|reply| curr_items(&reply))
        };
        match items {
            Some(items) => {
                let _ = write!(body, "STAT node:{}:reachable yes\r\n", peer.id);
                let _ = write!(body, "STAT node:{}:curr_items {items}\r\n", peer.id);
            }
            None => {
                let _ = write!(body, "STAT node:{}:reachable no\r\n", peer.id);
            }
        }
    }
    body.extend_from_slice(b"END\r\n");
    out.extend_from_slice(&body);
}

/// `stats peers` (ringcache's own): this node's standing and, per other node,
/// the client requests forwarded to it (`forwarded_to`, summed over shards),
/// the timeouts that made it TKO and whether it is reachable now. Unlike
/// `stats cluster` it asks no other node anything, so it is cheap to poll.
pub fn write_stats_peers(ctx: &ShardCtx, forwarded_to: &[(u32, u64)], out: &mut Vec<u8>) {
    use std::io::Write;
    let cluster = ctx.cluster.as_ref().expect("a cluster node");
    let node = &cluster.node;
    let view = node.view();
    let _ = write!(out, "STAT node_id {}\r\n", node.me);
    let _ = write!(out, "STAT epoch {}\r\n", view.epoch());
    write_state_stats(cluster, out);
    write_link_stats(node, out);
    let timeouts = node.timeouts_by_node.lock().expect("timeouts lock").clone();
    for peer in view.config().nodes() {
        if peer.id == node.me {
            continue;
        }
        let id = peer.id;
        let forwarded = forwarded_to
            .iter()
            .find(|(n, _)| *n == id)
            .map_or(0, |(_, n)| *n);
        let _ = write!(out, "STAT peer:{id}:state {}\r\n", peer.state.as_str());
        let reachable = if node.is_tko(id) { "no" } else { "yes" };
        let _ = write!(out, "STAT peer:{id}:reachable {reachable}\r\n");
        let _ = write!(out, "STAT peer:{id}:forwarded {forwarded}\r\n");
        let timeouts = timeouts.get(&id).copied().unwrap_or(0);
        let _ = write!(out, "STAT peer:{id}:timeouts {timeouts}\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

/// `leader`, `node_state` and `hinted_keys`, as `stats cluster` and
/// `stats peers` show them.
fn write_state_stats(cluster: &ShardCluster, out: &mut Vec<u8>) {
    use std::io::Write;
    let node = &cluster.node;
    let _ = write!(
        out,
        "STAT leader {}\r\n",
        node.leader.load(Ordering::Relaxed)
    );
    let _ = write!(out, "STAT node_state {}\r\n", node.state_name());
    let _ = write!(out, "STAT hinted_keys {}\r\n", cluster.hinted_keys());
}

/// `peer_timeouts` and `peer_disconnects`, as `stats cluster` and
/// `stats peers` show them.
fn write_link_stats(node: &ClusterNode, out: &mut Vec<u8>) {
    use std::io::Write;
    let timeouts = node.timeouts.load(Ordering::Relaxed);
    let _ = write!(out, "STAT peer_timeouts {timeouts}\r\n");
    let disconnects = node.disconnects.load(Ordering::Relaxed);
    let _ = write!(out, "STAT peer_disconnects {disconnects}\r\n");
}

fn curr_items(stats: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stats).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("STAT curr_items "))
        .and_then(|n| n.trim().parse().ok())
}

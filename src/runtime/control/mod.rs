//! The control thread of a cluster node started with `--data-dir`: it runs the
//! Multi-Paxos core (`crate::consensus`) over the cluster configuration.
//!
//! It owns the core and carries out each step's output in the order the core
//! asks: the durable state is written to `<data-dir>/acceptor` (a temporary file,
//! fdatasync, rename, fsync of the directory) before any message of the same
//! step leaves; messages go to the other nodes' client ports as
//! `rc paxos <px1 line>` (one-way; their shards hand them to their own control
//! thread), each peer's through a link thread of its own (`links`), so the
//! loop never waits on a paused or cut-off peer; decided configurations are put in force with
//! `ClusterNode::install`, which shards take up between requests. The data path
//! never waits on this thread.
//!
//! Inputs arrive on a channel: messages from peers (from any shard) and admin
//! proposals (`rc propose`), which are answered once their epoch is decided.
//! Time is the core's logical tick, [`TICK`] long.
//!
//! Top layer, beside `shard`: imports [`cluster`](super::cluster) and the
//! bottom layer (`messages` for `ControlInput`; `auth` and `sealed` in
//! `links`).

mod links;

use super::cluster::ClusterNode;
use super::messages::{ControlInput, PROPOSAL_TIMEOUT};
use crate::cluster::codec;
use crate::cluster::config::ClusterConfig;
use crate::cluster::detector;
use crate::consensus::{Body, Durable, Epoch, Input, Message, Node, Output, ProposeResult};
use links::Links;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One logical tick of the consensus core.
pub const TICK: Duration = Duration::from_millis(10);

/// How often a node tells the others which nodes it finds unreachable.
const SUSPICION_INTERVAL: Duration = Duration::from_millis(detector::REPORT_INTERVAL_MS);

/// The file, in `--data-dir`, that holds the acceptor's durable state.
pub const DURABLE_FILE: &str = "acceptor";

/// Reads the durable state of a previous run, if there is one.
pub fn load_durable(dir: &Path) -> Result<Option<Durable<ClusterConfig>>, String> {
    let path = dir.join(DURABLE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => codec::decode_durable(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the durable state so that a crash at any point leaves either the old
/// or the new file whole: a temporary file, synced, renamed over the old one,
/// then the directory synced.
fn persist(dir: &Path, durable: &Durable<ClusterConfig>) -> std::io::Result<()> {
    let bytes = codec::encode_durable(durable);
    let tmp = dir.join(format!("{DURABLE_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
    }
    std::fs::rename(&tmp, dir.join(DURABLE_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Failure detection (the rules are in `crate::cluster::detector`): this part
/// samples the data path's TKO marks, reads the clock, sends the reports and
/// feeds the proposals back to this thread.
struct Detector {
    core: detector::Detector,
    /// The start of the detector's clock: its time is milliseconds since.
    started: Instant,
    last_report: Instant,
    /// The epoch of this node's own pending proposal, if any.
    proposing: Option<(Epoch, Instant)>,
}

impl Detector {
    /// The detector's time now.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The nodes of `config` the data path finds unreachable now.
    fn unreachable(cluster: &ClusterNode, config: &ClusterConfig) -> Vec<u32> {
        config
            .nodes()
            .iter()
            .map(|n| n.id)
            .filter(|&id| cluster.is_tko(id))
            .collect()
    }

    /// Node `from` reports the nodes it suspects.
    fn receive(&mut self, from: u32, ids: Vec<u32>) {
        let now_ms = self.now_ms();
        self.core.receive(now_ms, from, ids);
    }

    /// The change to propose, if any, logged.
    fn propose(&self, cluster: &ClusterNode, config: &ClusterConfig) -> Option<ClusterConfig> {
        let unreachable = Self::unreachable(cluster, config);
        let facts = detector::Facts {
            config,
            unreachable: &unreachable,
            leader: u32::try_from(cluster.leader.load(std::sync::atomic::Ordering::Relaxed)).ok(),
            copying: if cluster.is_copying() {
                detector::Copying::Underway
            } else {
                detector::Copying::Finished
            },
        };
        let proposal = self.core.propose(self.now_ms(), &facts)?;
        match &proposal {
            detector::Proposal::Activation { .. } => {
                log::warn!("this node has joined: proposing it up");
            }
            detector::Proposal::Mark {
                node,
                state,
                suspected_by,
                ..
            } => log::info!(
                "proposing node {node} {} ({suspected_by} of {} nodes find it unreachable)",
                state.as_str(),
                config.nodes().len()
            ),
        }
        Some(proposal.into_config())
    }
}

/// A proposal waiting for its epoch to be decided.
struct Pending {
    epoch: Epoch,
    value: ClusterConfig,
    reply: Sender<Vec<u8>>,
    deadline: Instant,
}

/// Runs the core until the node stops.
pub fn run(
    cluster: Arc<ClusterNode>,
    dir: PathBuf,
    durable: Option<Durable<ClusterConfig>>,
    inputs: Receiver<ControlInput>,
    feedback: SyncSender<ControlInput>,
    failover: Duration,
    stop: &std::sync::atomic::AtomicBool,
) {
    let started = Instant::now();
    let mut node = start_core(&cluster, durable, started);
    if let Err(e) = persist(&dir, node.durable()) {
        log::error!("cannot write {}: {e}", dir.join(DURABLE_FILE).display());
    }
    install(&cluster, node.config().clone());
    let mut links = Links::new(cluster.clone());
    let mut pending: Vec<Pending> = Vec::new();
    let mut detector = Detector::new(cluster.me, failover);
    let now = |started: Instant| (started.elapsed().as_millis() / TICK.as_millis()) as u64;
    let mut timer_at = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let wait = timer_at.saturating_sub(now(started)).clamp(1, 10) * TICK.as_millis() as u64;
        if detector.last_report.elapsed() >= SUSPICION_INTERVAL {
            detector.report_and_propose(&cluster, &node, &pending, &mut links, &feedback);
        }
        let input = match inputs.recv_timeout(Duration::from_millis(wait)) {
            Ok(ControlInput::Message(message)) => {
                note_vote(&cluster, &message);
                Input::Message(message)
            }
            Ok(ControlInput::Suspicions { from, ids }) => {
                detector.receive(from, ids);
                continue;
            }
            Ok(ControlInput::Propose {
                epoch,
                value,
                reply,
            }) => {
                pending.push(Pending {
                    epoch,
                    value: value.clone(),
                    reply,
                    deadline: Instant::now() + PROPOSAL_TIMEOUT,
                });
                Input::Propose { epoch, value }
            }
            Err(RecvTimeoutError::Timeout) => Input::Tick,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let output = node.step(now(started), input);
        cluster.leader.store(
            node.durable().promised.node,
            std::sync::atomic::Ordering::Relaxed,
        );
        timer_at = output.timer_at;
        carry_out(&cluster, &dir, output, &mut links, &mut pending, &feedback);
        expire(&mut pending);
    }
}

/// The consensus core: restored from the durable state of a previous run, or
/// new, from the configuration this node started with.
fn start_core(
    cluster: &ClusterNode,
    durable: Option<Durable<ClusterConfig>>,
    started: Instant,
) -> Node<ClusterConfig> {
    let seed = u64::from(cluster.me)
        ^ (std::process::id() as u64) << 32
        ^ started.elapsed().as_nanos() as u64;
    match durable {
        Some(durable) => Node::restore(durable, seed),
        None => {
            let view = cluster.view();
            Node::new(
                u64::from(cluster.me),
                view.epoch(),
                view.config().clone(),
                seed,
            )
        }
    }
}

impl Detector {
    fn new(me: u32, failover: Duration) -> Self {
        let now = Instant::now();
        Detector {
            core: detector::Detector::new(me, failover.as_millis() as u64),
            started: now,
            last_report: now,
            proposing: None,
        }
    }

    /// Samples the data path, tells the other nodes what this one suspects,
    /// and, with no proposal under way, proposes the change that follows (fed
    /// back to this thread as an `rc propose` would be).
    fn report_and_propose(
        &mut self,
        cluster: &ClusterNode,
        node: &Node<ClusterConfig>,
        pending: &[Pending],
        links: &mut Links,
        feedback: &SyncSender<ControlInput>,
    ) {
        self.last_report = Instant::now();
        let config = node.config().clone();
        let unreachable = Self::unreachable(cluster, &config);
        let suspects = self.core.observe(self.now_ms(), &config, &unreachable);
        report(cluster, &config, &suspects, links);
        if self.proposing.is_some_and(|(epoch, at)| {
            node.decided_epoch() >= epoch || at.elapsed() > PROPOSAL_TIMEOUT
        }) {
            self.proposing = None;
        }
        if self.proposing.is_none() && pending.is_empty() {
            if let Some(value) = self.propose(cluster, &config) {
                let epoch = value.epoch();
                self.proposing = Some((epoch, Instant::now()));
                let (reply, _) = std::sync::mpsc::channel();
                let _ = feedback.try_send(ControlInput::Propose {
                    epoch,
                    value,
                    reply,
                });
            }
        }
    }
}

/// Tells the data path that the sender of `message` has acceptor state.
fn note_vote(cluster: &ClusterNode, message: &Message<ClusterConfig>) {
    // Votes, and the ballots a node sends only once it has
    // promised them itself: either way its acceptor has state.
    if let (
        Body::Promise { .. }
        | Body::Accepted { .. }
        | Body::Nack { .. }
        | Body::Prepare { .. }
        | Body::Accept { .. },
        Ok(from),
    ) = (&message.body, u32::try_from(message.from))
    {
        cluster.saw_vote(from);
    }
}

/// Answers and drops the proposals whose time to be decided has run out.
fn expire(pending: &mut Vec<Pending>) {
    pending.retain(|p| {
        if Instant::now() > p.deadline {
            let _ = p
                .reply
                .send(b"SERVER_ERROR proposal not decided in time\r\n".to_vec());
            false
        } else {
            true
        }
    });
}

/// Persists, sends, applies and answers, in that order.
fn carry_out(
    cluster: &Arc<ClusterNode>,
    dir: &Path,
    output: Output<ClusterConfig>,
    links: &mut Links,
    pending: &mut Vec<Pending>,
    feedback: &SyncSender<ControlInput>,
) {
    if let Some(durable) = &output.persist {
        if let Err(e) = persist(dir, durable) {
            // Nothing that depends on it may leave: drop this step's messages.
            log::error!(
                "cannot sync {}: {e}; not sending",
                dir.join(DURABLE_FILE).display()
            );
            return;
        }
    }
    if let Some(result) = output.proposal {
        let refusal: Option<String> = match result {
            ProposeResult::Proposing => None,
            ProposeResult::StaleEpoch { decided_epoch } => Some(format!(
                "SERVER_ERROR epoch already decided; the configuration in force is epoch {decided_epoch}"
            )),
            ProposeResult::NodeBehind { decided_epoch } => Some(format!(
                "SERVER_ERROR this node has only learned epoch {decided_epoch}; ask again"
            )),
            ProposeResult::Busy { epoch } => Some(format!(
                "SERVER_ERROR a proposal for epoch {epoch} is already under way"
            )),
            ProposeResult::InvalidConfiguration => {
                Some("SERVER_ERROR the configuration names no, too many or duplicate acceptors".into())
            }
        };
        if let Some(refusal) = refusal {
            if let Some(p) = pending.pop() {
                let _ = p.reply.send(format!("{refusal}\r\n").into_bytes());
            }
        }
    }
    for message in output.messages {
        if message.to == u64::from(cluster.me) {
            let _ = feedback.try_send(ControlInput::Message(message));
        } else {
            send(links, &message);
        }
    }
    for (epoch, value) in output.decided {
        pending.retain(|p| {
            if p.epoch != epoch {
                return true;
            }
            let answer: &[u8] = if p.value == value {
                b"OK\r\n"
            } else {
                b"EXISTS\r\n"
            };
            let _ = p.reply.send(answer.to_vec());
            false
        });
        install(cluster, value);
    }
}

fn install(cluster: &ClusterNode, value: ClusterConfig) {
    if let Err(message) = cluster.install(value) {
        log::error!("{message}");
    }
}

/// Tells every other node which nodes this one suspects: `rc suspect <me> <ids>`.
fn report(cluster: &ClusterNode, config: &ClusterConfig, suspects: &[u32], links: &mut Links) {
    let ids: Vec<String> = suspects.iter().map(u32::to_string).collect();
    let ids = if ids.is_empty() {
        "-".to_string()
    } else {
        ids.join(",")
    };
    let line = format!("rc suspect {} {ids}\r\n", cluster.me).into_bytes();
    // The report is also this node's heartbeat to the others: a node that does
    // not answer it in time is marked TKO (by its link), as a request on the
    // data path would. (A link to this node itself is never made.)
    for node in config.nodes().iter().filter(|n| !cluster.is_tko(n.id)) {
        links.report(node.id, line.clone());
    }
}

/// Sends one consensus message to its node (Paxos tolerates lost messages; the
/// core retries).
fn send(links: &mut Links, message: &Message<ClusterConfig>) {
    let Ok(to) = u32::try_from(message.to) else {
        return;
    };
    let mut line = b"rc paxos ".to_vec();
    codec::encode_message(message, &mut line);
    links.send(to, line);
}

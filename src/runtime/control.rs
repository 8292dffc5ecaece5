//! The control thread of a cluster node started with `--data-dir`: it runs the
//! Multi-Paxos core (`crate::consensus`) over the cluster configuration.
//!
//! It owns the core and carries out each step's output in the order the core
//! asks: the durable state is written to `<data-dir>/acceptor` (a temporary file,
//! fdatasync, rename, fsync of the directory) before any message of the same
//! step leaves; messages go to the other nodes' client ports as
//! `rc paxos <px1 line>` (one-way; their shards hand them to their own control
//! thread); decided configurations are put in force with
//! `ClusterNode::install`, which shards take up between requests. The data path
//! never waits on this thread.
//!
//! Inputs arrive on a channel: messages from peers (from any shard) and admin
//! proposals (`rc propose`), which are answered once their epoch is decided.
//! Time is the core's logical tick, [`TICK`] long.

use super::cluster::ClusterNode;
use crate::cluster::codec;
use crate::cluster::config::ClusterConfig;
use crate::consensus::{Durable, Epoch, Input, Message, Node, Output, ProposeResult};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One logical tick of the consensus core.
pub const TICK: Duration = Duration::from_millis(10);

/// How long a proposal may wait for its epoch to be decided.
pub const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the control thread waits to connect or write to a peer.
const PEER_IO_TIMEOUT: Duration = Duration::from_millis(200);

/// The file, in `--data-dir`, that holds the acceptor's durable state.
pub const DURABLE_FILE: &str = "acceptor";

/// What reaches the control thread.
pub enum ControlInput {
    Message(Message<ClusterConfig>),
    /// Decide `value` at `epoch`; the answer is one reply line.
    Propose {
        epoch: Epoch,
        value: ClusterConfig,
        reply: Sender<Vec<u8>>,
    },
}

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
    feedback: Sender<ControlInput>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let started = Instant::now();
    let seed = u64::from(cluster.me)
        ^ (std::process::id() as u64) << 32
        ^ started.elapsed().as_nanos() as u64;
    let mut node = match durable {
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
    };
    if let Err(e) = persist(&dir, node.durable()) {
        log::error!("cannot write {}: {e}", dir.join(DURABLE_FILE).display());
    }
    install(&cluster, node.config().clone());
    let mut links: HashMap<u64, TcpStream> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    let now = |started: Instant| (started.elapsed().as_millis() / TICK.as_millis()) as u64;
    let mut timer_at = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let wait = timer_at.saturating_sub(now(started)).clamp(1, 10) * TICK.as_millis() as u64;
        let input = match inputs.recv_timeout(Duration::from_millis(wait)) {
            Ok(ControlInput::Message(message)) => Input::Message(message),
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
        timer_at = output.timer_at;
        carry_out(&cluster, &dir, output, &mut links, &mut pending, &feedback);
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
}

/// Persists, sends, applies and answers, in that order.
fn carry_out(
    cluster: &Arc<ClusterNode>,
    dir: &Path,
    output: Output<ClusterConfig>,
    links: &mut HashMap<u64, TcpStream>,
    pending: &mut Vec<Pending>,
    feedback: &Sender<ControlInput>,
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
            let _ = feedback.send(ControlInput::Message(message));
        } else {
            send(cluster, links, &message);
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

/// Sends one message on the connection to its node, opening it if needed; a
/// failed connection is dropped (Paxos tolerates lost messages; the core retries).
fn send(
    cluster: &ClusterNode,
    links: &mut HashMap<u64, TcpStream>,
    message: &Message<ClusterConfig>,
) {
    let mut line = b"rc paxos ".to_vec();
    codec::encode_message(message, &mut line);
    let to = message.to;
    if let std::collections::hash_map::Entry::Vacant(entry) = links.entry(to) {
        let Some(addr) = u32::try_from(to)
            .ok()
            .and_then(|id| cluster.view().client_addr(id))
        else {
            return;
        };
        match connect(addr) {
            Ok(stream) => {
                entry.insert(stream);
            }
            Err(_) => return,
        }
    }
    let stream = links.get_mut(&to).expect("just made");
    if stream.write_all(&line).is_err() {
        links.remove(&to);
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, PEER_IO_TIMEOUT)?;
    stream.set_write_timeout(Some(PEER_IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

//! The `rc` lines for this node's control thread, from other nodes and from
//! admin tools: consensus messages, failure reports, proposals of a new
//! configuration, joins, and the views of the configuration and status.
//!
//! Does I/O: hands messages to the control thread and waits for its answers.

use super::output::Output;
use crate::cluster::codec;
use crate::cluster::config::{ClusterConfig, ConfigError, Endpoint, NodeConfig, NodeState};
use crate::engine::reply;
use crate::runtime::cluster::ShardCluster;
use crate::runtime::ctx::ShardCtx;
use crate::runtime::messages::{ControlInput, CONTROL_QUEUE_FULL, PROPOSAL_TIMEOUT};
use std::sync::mpsc::SyncSender;

/// How many epochs a join tries before it gives up.
const JOIN_ATTEMPTS_MAX: u32 = 10;

/// The answer to a proposal or join on a node started without `--data-dir`.
const NO_CONSENSUS: &[u8] =
    b"SERVER_ERROR this node runs no consensus (start it with --data-dir)\r\n";

/// What became of a line that may be for the control thread.
pub(super) enum Control {
    /// Not `rc paxos`, `rc propose`, `rc show`, `rc suspect`, `rc join` or
    /// `rc status`.
    NotOne,
    Incomplete,
    /// Served; the bytes used.
    Done(usize),
    Close,
}

/// The lines for the control thread, known from their start.
#[derive(Clone, Copy)]
enum ControlLine {
    Paxos,
    Propose,
    Show,
    Suspect,
    Join,
    Status,
}

impl ControlLine {
    fn of(rest: &[u8]) -> Option<ControlLine> {
        if rest.starts_with(b"rc paxos ") {
            Some(ControlLine::Paxos)
        } else if rest.starts_with(b"rc propose ") {
            Some(ControlLine::Propose)
        } else if rest.starts_with(b"rc show\r\n") || rest.starts_with(b"rc show\n") {
            Some(ControlLine::Show)
        } else if rest.starts_with(b"rc suspect ") {
            Some(ControlLine::Suspect)
        } else if rest.starts_with(b"rc join ") {
            Some(ControlLine::Join)
        } else if rest.starts_with(b"rc status\r\n") || rest.starts_with(b"rc status\n") {
            Some(ControlLine::Status)
        } else {
            None
        }
    }
}

/// `rc paxos <px1 line>`: a consensus message for this node's control thread (no
/// reply). `rc propose <config>`: an admin proposal of the configuration
/// `<config>` (a cluster file in base64, at the epoch it names), answered `OK`
/// once decided, `EXISTS` if another value won that epoch, or `SERVER_ERROR
/// ...`. `rc show`: the configuration in force as a cluster file, in a `VALUE`
/// block. `rc suspect`, `rc join` and `rc status`: see their functions.
pub(super) async fn control_request(
    ctx: &ShardCtx,
    cluster: &ShardCluster,
    rest: &[u8],
    output: &mut Output,
) -> Control {
    let Some(kind) = ControlLine::of(rest) else {
        return Control::NotOne;
    };
    let window = &rest[..rest.len().min(codec::MESSAGE_LINE_LEN_MAX + 16)];
    let Some(nl) = memchr::memchr(b'\n', window) else {
        return if window.len() < rest.len() || rest.len() > codec::MESSAGE_LINE_LEN_MAX {
            Control::Close
        } else {
            Control::Incomplete
        };
    };
    let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
    let used = nl + 1;
    let control = ctx.node.control.as_ref().cloned();
    match kind {
        ControlLine::Paxos => paxos(&line[b"rc paxos ".len()..], control, used),
        ControlLine::Propose => {
            if output.complete(ctx).await.is_err() {
                return Control::Close;
            }
            let answer = match control {
                Some(tx) => propose_line(&tx, &line[b"rc propose ".len()..]).await,
                None => NO_CONSENSUS.to_vec(),
            };
            output.out.extend_from_slice(&answer);
            Control::Done(used)
        }
        ControlLine::Join => {
            if output.complete(ctx).await.is_err() {
                return Control::Close;
            }
            let answer = match control {
                Some(tx) => join(cluster, &tx, &line[b"rc join ".len()..]).await,
                None => NO_CONSENSUS.to_vec(),
            };
            output.out.extend_from_slice(&answer);
            Control::Done(used)
        }
        ControlLine::Status => {
            crate::cluster::wire::encode_status(&cluster.node.status(), &mut output.out);
            Control::Done(used)
        }
        ControlLine::Suspect => {
            match suspect(&line[b"rc suspect ".len()..], control) {
                Some(()) => output.out.extend_from_slice(reply::OK),
                None => return Control::Close,
            }
            Control::Done(used)
        }
        ControlLine::Show => {
            let text = cluster.view().config().to_file_text();
            output.out.extend_from_slice(
                format!("VALUE cluster 0 {}\r\n{text}\r\nEND\r\n", text.len()).as_bytes(),
            );
            Control::Done(used)
        }
    }
}

/// `rc paxos <px1 line>`: hands the message to the control thread; a bad one
/// closes the connection.
fn paxos(args: &[u8], control: Option<SyncSender<ControlInput>>, used: usize) -> Control {
    match codec::decode_message_line(args) {
        Ok(message) => {
            if let Some(tx) = control {
                let _ = tx.try_send(ControlInput::Message(message));
            }
            Control::Done(used)
        }
        Err(e) => {
            log::warn!("a peer sent a bad consensus message ({e}); closing");
            Control::Close
        }
    }
}

/// `rc suspect <from> <id,id,...|->`: another node's failure report, handed
/// to the control thread. `None`: the report is malformed.
fn suspect(args: &[u8], control: Option<SyncSender<ControlInput>>) -> Option<()> {
    let text = String::from_utf8_lossy(args).into_owned();
    let mut fields = text.split(' ');
    let from = fields.next().and_then(|f| f.parse::<u32>().ok());
    let ids: Option<Vec<u32>> = match fields.next() {
        Some("-") => Some(Vec::new()),
        Some(list) => list.split(',').map(|id| id.parse().ok()).collect(),
        None => None,
    };
    match (from, ids, control) {
        (Some(from), Some(ids), Some(tx)) => {
            let _ = tx.try_send(ControlInput::Suspicions { from, ids });
            Some(())
        }
        (Some(_), Some(_), None) => Some(()),
        _ => {
            log::warn!("a peer sent a bad failure report; closing");
            None
        }
    }
}

/// `rc propose <config>`: decodes the configuration and proposes it.
async fn propose_line(tx: &SyncSender<ControlInput>, args: &[u8]) -> Vec<u8> {
    match codec::decode_config(args) {
        Ok(value) => propose(tx, value).await,
        Err(e) => format!("CLIENT_ERROR bad configuration: {e:?}\r\n").into_bytes(),
    }
}

/// Hands `value` to the control thread as an admin proposal and waits for its
/// answer line (`OK`, `EXISTS` or `SERVER_ERROR ...`).
async fn propose(tx: &SyncSender<ControlInput>, value: ClusterConfig) -> Vec<u8> {
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    let sent = tx.try_send(ControlInput::Propose {
        epoch: value.epoch(),
        value,
        reply: reply_tx,
    });
    if sent.is_err() {
        return CONTROL_QUEUE_FULL.to_vec();
    }
    let deadline = std::time::Instant::now() + PROPOSAL_TIMEOUT + PROPOSAL_TIMEOUT;
    loop {
        match reply_rx.try_recv() {
            Ok(answer) => return answer,
            Err(std::sync::mpsc::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(_) => return b"SERVER_ERROR the proposal got no answer\r\n".to_vec(),
        }
    }
}

/// `rc join <addr> <shard>,<shard>...`: adds a member with these endpoints, as
/// `joining`, under the next unused node id, and answers `JOINED <id> <epoch>
/// <configuration in base64>` once that is decided. A member already at `addr`
/// is taken to be this node before its disk was wiped: it is replaced (and in
/// the acceptors, the new id takes its place), so a node never comes back as
/// the acceptor it was; with the same shard endpoints it keeps the old node's
/// state and so its place on the ring. A race with another change is retried.
async fn join(cluster: &ShardCluster, tx: &SyncSender<ControlInput>, args: &[u8]) -> Vec<u8> {
    let (addr, shards) = match parse_join(args) {
        Ok(parsed) => parsed,
        Err(e) => return format!("CLIENT_ERROR bad join request: {e}\r\n").into_bytes(),
    };
    for _ in 0..JOIN_ATTEMPTS_MAX {
        let current = cluster.node.view().config().clone();
        let (id, value) = match joined_config(&current, &addr, &shards) {
            Ok(joined) => joined,
            Err(e) => return format!("SERVER_ERROR cannot add this node: {e}\r\n").into_bytes(),
        };
        let answer = propose(tx, value.clone()).await;
        if answer == b"OK\r\n" {
            let mut reply = format!("JOINED {id} {} ", value.epoch()).into_bytes();
            codec::encode_config(&value, &mut reply);
            reply.extend_from_slice(b"\r\n");
            return reply;
        }
        if !answer.starts_with(b"EXISTS") && !answer.starts_with(b"SERVER_ERROR epoch already") {
            return answer;
        }
        // Another change took that epoch: try again on top of it.
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
    b"SERVER_ERROR the cluster kept changing; try again\r\n".to_vec()
}

/// The arguments of `rc join`: the client address and the shard endpoints.
fn parse_join(args: &[u8]) -> Result<(Endpoint, Vec<Endpoint>), String> {
    let text = String::from_utf8_lossy(args).into_owned();
    let mut fields = text.split_ascii_whitespace();
    let addr = Endpoint::parse(fields.next().ok_or("no address")?)?;
    let shards = fields
        .next()
        .ok_or("no shard endpoints")?
        .split(',')
        .map(Endpoint::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if fields.next().is_some() {
        return Err("too many fields".into());
    }
    Ok((addr, shards))
}

/// The configuration after `current` with a member at `addr` added under the
/// next unused id (see `join`), and that id.
fn joined_config(
    current: &ClusterConfig,
    addr: &Endpoint,
    shards: &[Endpoint],
) -> Result<(u32, ClusterConfig), ConfigError> {
    let mut spec = current.to_spec();
    let id = current.next_node_id();
    let mut state = NodeState::Joining;
    if let Some(old) = spec.nodes.iter().find(|n| n.client_addr == *addr).cloned() {
        log::warn!(
            "node {} at {addr} joins again with an empty disk: it becomes node {id}",
            old.id
        );
        // With the same endpoints it keeps its place on the ring, and copies
        // its keys from the other owners when it starts.
        if old.shards == shards {
            state = old.state;
        }
        let old = old.id;
        spec.nodes.retain(|n| n.id != old);
        for acceptor in spec.acceptors.iter_mut().filter(|a| **a == old) {
            *acceptor = id;
        }
    }
    spec.nodes.push(NodeConfig {
        id,
        client_addr: addr.clone(),
        shards: shards.to_vec(),
        state,
    });
    spec.next_node_id = id + 1;
    Ok((id, current.successor(spec)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CONTROL_QUEUE_DEPTH;

    fn a_configuration() -> ClusterConfig {
        let file =
            "replicas = 1\n[[node]]\nid = 1\naddr = \"127.0.0.1:1\"\nshards = [\"127.0.0.1:2\"]\n";
        ClusterConfig::from_file_text(file).expect("a cluster file")
    }

    fn report() -> ControlInput {
        ControlInput::Suspicions {
            from: 2,
            ids: Vec::new(),
        }
    }

    #[test]
    fn a_proposal_finding_the_control_queue_full_is_refused_and_one_with_room_is_answered() {
        let (tx, rx) = std::sync::mpsc::sync_channel(CONTROL_QUEUE_DEPTH);
        for _ in 0..CONTROL_QUEUE_DEPTH {
            tx.try_send(report()).expect("room in the queue");
        }
        let executor = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor");
        let full = executor.run(propose(&tx, a_configuration()));
        assert_eq!(full, CONTROL_QUEUE_FULL);
        // One place free: the proposal is queued and gets the control
        // thread's answer.
        rx.recv().expect("a queued report");
        let control = std::thread::spawn(move || {
            for input in rx.iter() {
                if let ControlInput::Propose { reply, .. } = input {
                    let _ = reply.send(b"OK\r\n".to_vec());
                    return true;
                }
            }
            false
        });
        let answered = executor.run(propose(&tx, a_configuration()));
        assert_eq!(answered, b"OK\r\n");
        drop(tx);
        assert!(control.join().expect("the control thread"));
    }
}

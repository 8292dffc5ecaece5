//! What another node of the cluster sends on a connection: the members-only
//! handshake, `rc` lines (a connection's mode, key exchange and recovery
//! requests, and the control thread's lines), and binary requests it
//! forwarded.
//!
//! Does I/O: exchange and recovery talk to the asking node and wait for the
//! replies gathered before them.

use super::control_lines::{control_request, Control};
use super::output::{Output, ReplySize};
use super::text::{Flow, TextConn};
use super::After;
use crate::cluster::auth::{self, Standing};
use crate::cluster::wire::{self, PeerLine, PeerMode, RecoverWhat};
use crate::engine::reply;
use crate::limits::LINE_LEN_MAX;
use crate::runtime::cluster::{self, ConnMode, Role, Route, ShardCluster};
use crate::runtime::ctx::ShardCtx;
use crate::runtime::messages::Forward;
use crate::runtime::state::with_state;
use crate::storage::ttl::Clock;
use std::rc::Rc;

/// What became of an `rc` line on a connection that is not (yet) a member's.
enum Gate {
    Incomplete,
    /// Answered; the bytes used.
    Done(usize),
    /// Refused: the connection closes once the refusal is written.
    Close,
}

/// Serves an `rc` line at the start of `rest`: the handshake until the
/// connection is a member's, then the control thread's lines and the lines
/// of the peer protocol.
pub(super) async fn peer_line(
    ctx: &ShardCtx,
    cluster: &Rc<ShardCluster>,
    rest: &[u8],
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> Flow {
    let close = Flow::Stop {
        used: 0,
        after: After::Close,
    };
    if *conn.standing != Standing::Member || auth::is_auth_line(rest) {
        return match members_only(cluster, rest, output, conn) {
            Gate::Incomplete => Flow::Incomplete,
            Gate::Done(used) => Flow::Next(used),
            Gate::Close => close,
        };
    }
    match control_request(ctx, cluster, rest, output).await {
        Control::NotOne => {}
        Control::Incomplete => return Flow::Incomplete,
        Control::Done(used) => return Flow::Next(used),
        Control::Close => return close,
    }
    match wire::parse_peer_line(rest) {
        Ok(None) => Flow::Incomplete,
        Err(used) => {
            output.out.extend_from_slice(reply::BAD_FORMAT);
            Flow::Next(used)
        }
        Ok(Some((PeerLine::Mode { mode: peer, epoch }, used))) => {
            *conn.mode = ConnMode::Peer { mode: peer, epoch };
            Flow::Next(used)
        }
        Ok(Some((PeerLine::Exchange { epoch, node }, used))) => {
            exchange(ctx, cluster, output, epoch, node, used).await
        }
        Ok(Some((PeerLine::Recover { epoch, node, what }, used))) => {
            recover(ctx, cluster, output, epoch, node, what, used).await
        }
    }
}

/// `rc exchange`: once the replies before it are in, settles the keys
/// `node` and this node hold for each other.
async fn exchange(
    ctx: &ShardCtx,
    cluster: &Rc<ShardCluster>,
    output: &mut Output,
    epoch: u64,
    node: u32,
    used: usize,
) -> Flow {
    if output.complete(ctx).await.is_err() {
        return Flow::Stop {
            used,
            after: After::Close,
        };
    }
    if epoch != cluster.node.epoch() {
        cluster::Refusal::Epoch(cluster.node.epoch()).write(&mut output.out);
    } else if cluster::exchange(cluster, node).await {
        // Settled: `node` is primary for its keys again, so
        // this node stops standing in for it.
        cluster.node.clear_tko(node);
        output.out.extend_from_slice(wire::RECOVERED);
    } else {
        output
            .out
            .extend_from_slice(b"SERVER_ERROR exchange incomplete\r\n");
    }
    Flow::Next(used)
}

/// `rc recover`: once the replies before it are in, pushes to the recovering
/// `node` what it asks for.
async fn recover(
    ctx: &ShardCtx,
    cluster: &Rc<ShardCluster>,
    output: &mut Output,
    epoch: u64,
    node: u32,
    what: RecoverWhat,
    used: usize,
) -> Flow {
    if output.complete(ctx).await.is_err() {
        return Flow::Stop {
            used,
            after: After::Close,
        };
    }
    if epoch != cluster.node.epoch() {
        cluster::Refusal::Epoch(cluster.node.epoch()).write(&mut output.out);
    } else {
        let clock = ctx.node.clock();
        let reply = cluster.push_recovery(node, what, &clock).await;
        output.out.extend_from_slice(reply);
    }
    Flow::Next(used)
}

/// Members only (see `cluster::auth`): on a connection that has not passed
/// the handshake, an `rc` line is answered `ERROR`, as memcached answers a
/// command it does not know, and the connection goes on; `rc hello` and
/// `rc auth` are the handshake. A failed handshake is answered
/// [`auth::AUTH_REFUSED`], logged once per peer, and closes the connection.
/// A good one is answered [`auth::AUTH_OK`], and the connection is sealed
/// from its next read on (`cluster::seal`).
fn members_only(
    cluster: &ShardCluster,
    rest: &[u8],
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> Gate {
    let peer_ip = conn.peer_ip;
    let window = &rest[..rest.len().min(LINE_LEN_MAX)];
    let Some(nl) = memchr::memchr(b'\n', window) else {
        return if rest.len() >= LINE_LEN_MAX {
            Gate::Close
        } else {
            Gate::Incomplete
        };
    };
    let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
    if !auth::is_auth_line(line) {
        output.out.extend_from_slice(reply::ERROR);
        return Gate::Done(nl + 1);
    }
    let nonce = match crate::runtime::auth::random_bytes() {
        Ok(nonce) => nonce,
        Err(e) => {
            log::error!("no randomness for a handshake nonce: {e}");
            return Gate::Close;
        }
    };
    let node = &cluster.node;
    if *conn.standing == Standing::Member {
        // A second handshake inside the sealed stream is no member's.
        return Gate::Close;
    }
    match auth::server_step(&node.secret, conn.standing, line, nonce) {
        auth::ServerStep::Answer(answer) => {
            output.out.extend_from_slice(&answer);
            Gate::Done(nl + 1)
        }
        // A member waits for the `OK` before it sends anything sealed: bytes
        // after its proof are no member's.
        auth::ServerStep::Welcome(_) if rest.len() > nl + 1 => Gate::Close,
        auth::ServerStep::Welcome(sealing) => {
            output.out.extend_from_slice(auth::AUTH_OK);
            *conn.sealing = Some(*sealing);
            Gate::Done(nl + 1)
        }
        auth::ServerStep::Refuse { who } => {
            node.warn_auth_once(
                &format!("{who}@{peer_ip}"),
                format_args!(
                    "refused {} from {peer_ip}: it does not hold this cluster's secret",
                    match who.parse::<u32>() {
                        Ok(id) => format!("node {id}"),
                        Err(_) => who.clone(),
                    }
                ),
            );
            output.out.extend_from_slice(auth::AUTH_REFUSED);
            Gate::Close
        }
    }
}

/// Whether writes in `mode` may be ones their sender gave up on while this
/// node was paused: forwarded writes and replicated items. Copies pushed to a
/// recovering node are asked for by the node itself, after the pause.
pub(super) fn mode_may_be_stale(mode: ConnMode) -> bool {
    matches!(
        mode,
        ConnMode::Peer {
            mode: PeerMode::Forward | PeerMode::Replica,
            ..
        }
    )
}

/// Serves one binary request at the start of `rest` on another node's
/// connection: keyed requests as the mode says, the NOOP that ends each by
/// answering it. Returns the bytes used, or `None` while it is incomplete.
pub(super) fn peer_binary_request(
    ctx: &ShardCtx,
    output: &mut Output,
    mode: ConnMode,
    suspect: bool,
    rest: &[u8],
) -> Option<usize> {
    use crate::engine::binary as bin_engine;
    use crate::protocol::binary::{self as bin, Command, Quiet, Status};
    let (req, used) = match bin::parse(rest, &ctx.limits) {
        Ok(parsed) => parsed,
        Err(bin::ParseError::Incomplete) => return None,
        // Senders forward only whole, well-formed requests.
        Err(_) => {
            log::warn!("another node forwarded a malformed binary request; closing");
            return Some(rest.len());
        }
    };
    let raw = &rest[..used];
    let Some(key) = req.command.key() else {
        match req.command {
            Command::Noop => bin_engine::write_done(&mut output.out, &req.header, Quiet::No),
            _ => bin::write_error(&mut output.out, &req.header, Status::UnknownCommand),
        }
        return Some(used);
    };
    let write = !matches!(req.command, Command::Get { .. });
    if suspect && mode_may_be_stale(mode) && write {
        log::warn!("dropping a binary write from a peer sent across a pause of this node");
        bin::write_error(&mut output.out, &req.header, Status::NotMyVbucket);
        return Some(used);
    }
    let clock = ctx.node.clock();
    let placement = ctx.route(key, write, mode);
    match placement.route {
        Route::Shard(shard, Role::Plain) if shard == ctx.id => {
            with_state(|s| bin_engine::execute(s, &req, &clock, &mut output.out));
        }
        Route::Shard(shard, role) if shard == ctx.id => {
            apply_binary_here(ctx, output, &req, key, role, &clock);
        }
        Route::Shard(shard, role) => output.forward(
            shard,
            placement.point,
            raw,
            Forward::Binary(&req, role),
            ReplySize::MayCarryValue,
        ),
        Route::Peer(_) | Route::Refuse(_) => {
            bin::write_error(&mut output.out, &req.header, Status::NotMyVbucket)
        }
    }
    Some(used)
}

/// Applies a binary write in `role` on this shard; a primary's reply waits for
/// `write_ack` like a text one, and becomes a `Temporary failure` error without it.
pub(in crate::runtime) fn apply_binary_here(
    ctx: &ShardCtx,
    output: &mut Output,
    req: &crate::protocol::binary::BinRequest<'_>,
    key: &[u8],
    role: Role,
    clock: &Clock,
) {
    let cluster = ctx.cluster.as_ref().expect("roles only in a cluster");
    output.cut_local();
    let start = output.out.len();
    let ticket =
        with_state(|s| cluster::apply_binary(cluster, s, req, key, role, clock, &mut output.out));
    if let Some(ticket) = ticket {
        let mut failure = Vec::new();
        crate::protocol::binary::write_error(
            &mut failure,
            &req.header,
            crate::protocol::binary::Status::TemporaryFailure,
        );
        output.push_acked(start, ticket, failure);
    }
}

//! One client connection: read, parse, route each request to the shard that owns
//! its key, put the replies back in request order, and write them with one call.
//!
//! Requests for this shard's keys run inline; those for other shards are batched,
//! one message per destination shard per read, and their replies are spliced in
//! where they belong.

use super::cluster::{self, ConnMode, Role, Route, Ticket};
use super::conns::{self, Registration};
use super::messages::{Answer, Ask, Batch, ForwardKind, Replies};
use super::peer::{Framing, Reply};
use super::shard::{with_state, ShardCtx};
use super::uring::ClientStream;
use super::waiters::Wait;
use crate::cli::{FlushCommand, Protocol, ShutdownCommand};
use crate::cluster::auth::{self, Standing};
use crate::cluster::config::{ClusterConfig, Endpoint};
use crate::cluster::ring::Owner;
use crate::cluster::wire::{self, PeerLine, PeerMode};
use crate::engine::watch::CloseReason;
use crate::engine::{self, reply, NodeView, Settings, Step};
use crate::limits::{
    EPOCH_RETRIES_MAX, EPOCH_RETRY_PAUSE_MS, FORWARDED_VALUES_MAX, FORWARD_BATCH_REQUESTS_MAX,
    ITEM_SIZE_MAX_MAX_BYTES, LINE_LEN_MAX, MULTIGET_LINE_LEN_MAX, READ_BUFFER_KEEP_BYTES,
    READ_CHUNK_BYTES, REPLY_BUFFER_FLUSH_BYTES,
};
use crate::protocol::meta::MetaCommand;
use crate::protocol::text::{GetEnding, LruCrawler, Request, ShutdownMode, StoreMode};
use crate::protocol::{self, ParseError};
use crate::stats::ShardStats;
use crate::storage::ttl::Clock;
use crate::storage::StoreStats;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Longest `config get cluster` line waited for before the parser takes it.
const CONFIG_GET_LINE_LEN_MAX: usize = 64;

/// memcached's answer to a connection over `-c`.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Answers a connection past the limit as memcached does, and closes it.
pub async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
    let _ = stream.close().await;
}

/// The key a single-key request acts on (a meta key decoded from base64).
pub fn request_key<'r>(req: &'r Request<'_>) -> Option<&'r [u8]> {
    match req {
        Request::Store { key, .. }
        | Request::TooLarge { key, .. }
        | Request::Delete { key, .. }
        | Request::Arith { key, .. }
        | Request::Touch { key, .. } => Some(key),
        // Meta: every command but `mn` names one key (`me` too: it reads the owner's item).
        Request::Meta(meta) if meta.command != MetaCommand::Noop => Some(meta.key.bytes()),
        _ => None,
    }
}

/// Bytes of data block after a request's line that are to be skipped: an item
/// refused as too large before it was read.
fn swallow_after(req: &Request) -> Option<usize> {
    match req {
        Request::TooLarge { swallow_bytes, .. } => Some(*swallow_bytes),
        Request::Meta(meta) if meta.swallow_bytes > 0 => Some(meta.swallow_bytes),
        _ => None,
    }
}

/// Where one run of reply bytes comes from when some requests went to other shards.
enum Piece {
    /// `out[start..end]`, written on this shard.
    Local { start: usize, end: usize },
    /// Fragment `op` of the answer from `shard`.
    Remote { shard: u32, op: usize },
    /// The reply of another node to `peer_ops[op]`.
    Peer { op: usize },
    /// `out[start..end]`, a write this node applied as primary: sent once
    /// `tickets[ticket]` settles, else replaced by a write-ack failure.
    Acked {
        start: usize,
        end: usize,
        ticket: usize,
    },
}

/// A request sent to another node, kept until its reply is in, so that it can
/// go to the next owner if this one fails.
struct PeerOp {
    key: Vec<u8>,
    write: bool,
    /// The request as sent, with its `mn`.
    request: Vec<u8>,
    shape: PeerReply,
    /// The reply when no owner answers.
    on_failure: Vec<u8>,
    resend: Resend,
    target: Owner,
    reply: Option<Reply>,
    result: Vec<u8>,
    /// No owner answered.
    unanswered: bool,
}

/// Whether a request sent to another node may go to the next owner when the
/// first may have received it (it timed out, or its connection broke after it
/// was sent): a read or a plain `set` may (done twice, it is the same write,
/// finished later); incr, append, cas, add, delete and the rest may not, and
/// their client is told the outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resend {
    Safe,
    OnlyIfNotSent,
}

/// How large the reply to a forwarded request can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReplySize {
    /// A status line or a number.
    Small,
    /// A retrieval: the reply may hold a whole item.
    MayCarryValue,
}

/// The replies of one read, being put together.
pub(super) struct Output {
    pub(super) out: Vec<u8>,
    /// Empty while every request so far ran on this shard.
    pieces: Vec<Piece>,
    /// With `pieces`: where this shard's replies after the last forward begin.
    local_mark: usize,
    batches: Vec<Batch>,
    /// Per shard: its latest replies, whose buffers the next batch lends it back.
    replies: Vec<Replies>,
    /// Answers being waited for, kept for its capacity.
    waits: Vec<(usize, Wait)>,
    /// The buffer the next splice is written into (the last `out`, emptied).
    spliced: Vec<u8>,
    pub(super) forwarded: usize,
    /// Forwarded requests whose replies may carry a value (up to `-I` bytes each).
    forwarded_values: usize,
    /// Routes of the keys of the multi-key get being routed.
    routes: Vec<Route>,
    peer_ops: Vec<PeerOp>,
    tickets: Vec<Option<Ticket>>,
    tickets_ok: Vec<bool>,
    /// Per ticket: the reply if it fails (empty: the text one).
    ticket_failures: Vec<Vec<u8>>,
    /// Multi-key gets that asked other nodes: the range of `pieces` each
    /// spans, answered whole with `SERVER_ERROR` if no owner of one of its
    /// keys answered.
    retrievals: Vec<std::ops::Range<usize>>,
    /// The connection's id (its descriptor), named in `watch` lines.
    pub(super) cfd: u64,
}

impl Output {
    fn new(shards: usize) -> Output {
        Output {
            out: Vec::with_capacity(READ_CHUNK_BYTES),
            pieces: Vec::new(),
            local_mark: 0,
            batches: (0..shards).map(|_| Batch::default()).collect(),
            replies: (0..shards).map(|_| Replies::default()).collect(),
            waits: Vec::with_capacity(shards),
            spliced: Vec::new(),
            forwarded: 0,
            forwarded_values: 0,
            routes: Vec::new(),
            peer_ops: Vec::new(),
            tickets: Vec::new(),
            tickets_ok: Vec::new(),
            ticket_failures: Vec::new(),
            retrievals: Vec::new(),
            cfd: 0,
        }
    }

    /// Marks where the replies of a multi-key get begin.
    fn begin_retrieval(&mut self) -> usize {
        self.cut_local();
        self.pieces.len()
    }

    /// Marks where they end (after its `END`), if any of them came from
    /// another node.
    fn end_retrieval(&mut self, first_piece: usize) {
        self.cut_local();
        let pieces = first_piece..self.pieces.len();
        if self.pieces[pieces.clone()]
            .iter()
            .any(|p| matches!(p, Piece::Peer { .. }))
        {
            self.retrievals.push(pieces);
        }
    }

    /// Closes the run of local replies before a piece that is not one.
    fn cut_local(&mut self) {
        // Until the first piece, everything in `out` is this shard's own replies.
        let start = if self.pieces.is_empty() {
            0
        } else {
            self.local_mark
        };
        if start < self.out.len() {
            self.pieces.push(Piece::Local {
                start,
                end: self.out.len(),
            });
        }
        self.local_mark = self.out.len();
    }

    /// Sends a request to another node now; its reply is spliced in at `complete`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_peer(
        &mut self,
        ctx: &ShardCtx,
        target: Owner,
        key: &[u8],
        write: bool,
        request: Vec<u8>,
        shape: PeerReply,
        resend: Resend,
        on_failure: Vec<u8>,
    ) {
        let cluster = ctx.cluster.as_ref().expect("peers only in a cluster");
        self.cut_local();
        self.pieces.push(Piece::Peer {
            op: self.peer_ops.len(),
        });
        let reply =
            cluster
                .link(target)
                .send_framed(PeerMode::Forward, shape.framing(), request.clone());
        cluster.count_forwarded(target.node);
        self.peer_ops.push(PeerOp {
            key: key.to_vec(),
            write,
            request,
            shape,
            resend,
            on_failure,
            target,
            reply: Some(reply),
            result: Vec::new(),
            unanswered: false,
        });
        self.forwarded += 1;
        self.forwarded_values += 1;
    }

    /// Marks `out[start..]` as the reply to a write applied here as primary,
    /// sent once `ticket` settles. `cut_local` must have run before the write.
    ///
    /// `failure` replaces the reply when too few owners acknowledge (empty: the
    /// text protocol's [`wire::NOT_ENOUGH_ACKS`]).
    pub(super) fn push_acked(&mut self, start: usize, ticket: Ticket, failure: Vec<u8>) {
        debug_assert_eq!(start, self.local_mark);
        self.pieces.push(Piece::Acked {
            start,
            end: self.out.len(),
            ticket: self.tickets.len(),
        });
        self.tickets.push(Some(ticket));
        self.ticket_failures.push(failure);
        self.local_mark = self.out.len();
        self.forwarded += 1;
    }

    /// Sends a request to `shard` for its effect alone: its reply is not spliced in.
    pub(super) fn forward_unanswered(&mut self, shard: u32, bytes: &[u8], kind: ForwardKind) {
        self.batches[shard as usize].push(bytes, kind);
        self.forwarded += 1;
        self.forwarded_values += 1;
    }

    /// Whether to send what is batched and write what is gathered before going on:
    /// this bounds the memory one connection holds, whatever it pipelines.
    pub(super) fn is_full(&self) -> bool {
        self.forwarded >= FORWARD_BATCH_REQUESTS_MAX
            || self.forwarded_values >= FORWARDED_VALUES_MAX
            || self.out.len() >= REPLY_BUFFER_FLUSH_BYTES
    }

    pub(super) fn forward(
        &mut self,
        shard: u32,
        bytes: &[u8],
        kind: ForwardKind,
        reply: ReplySize,
    ) {
        if reply == ReplySize::MayCarryValue {
            self.forwarded_values += 1;
        }
        self.cut_local();
        let batch = &mut self.batches[shard as usize];
        self.pieces.push(Piece::Remote {
            shard,
            op: batch.ops.len(),
        });
        batch.push(bytes, kind);
        self.forwarded += 1;
    }

    /// Sends the batches, waits for their answers, and splices every reply into
    /// `out` in request order.
    pub(super) async fn complete(&mut self, ctx: &ShardCtx) -> Result<(), ()> {
        if self.forwarded == 0 && self.pieces.is_empty() {
            return Ok(());
        }
        // Send every batch first, so the other shards work on them together.
        let mut waits = std::mem::take(&mut self.waits);
        for shard in 0..self.batches.len() {
            if self.batches[shard].is_empty() {
                continue;
            }
            let mut batch = std::mem::take(&mut self.batches[shard]);
            batch.reply_buffers = std::mem::take(&mut self.replies[shard]);
            batch.cfd = self.cfd;
            let slot = ctx.waiters.take_slot();
            let wait = ctx.waiters.wait(slot);
            let sender = ctx.requests_to[shard].as_ref().expect("no channel to self");
            sender
                .send(super::messages::ToShard {
                    slot,
                    ask: Ask::Batch(batch),
                })
                .await
                .map_err(|_| ())?;
            waits.push((shard, wait));
        }
        for (shard, wait) in waits.drain(..) {
            match wait.await {
                Answer::Replies { replies, batch } => {
                    self.replies[shard] = replies;
                    self.batches[shard] = batch;
                }
                other => panic!("a batch was answered with {other:?}"),
            }
        }
        self.waits = waits;
        self.complete_peers(ctx).await;
        let mut spliced = std::mem::take(&mut self.spliced);
        spliced.clear();
        let mut retrievals = self.retrievals.iter().peekable();
        let mut retrieval_start = 0;
        for (i, piece) in self.pieces.iter().enumerate() {
            if retrievals.peek().is_some_and(|r| r.start == i) {
                retrieval_start = spliced.len();
            }
            match *piece {
                Piece::Local { start, end } => spliced.extend_from_slice(&self.out[start..end]),
                Piece::Remote { shard, op } => {
                    spliced.extend_from_slice(self.replies[shard as usize].fragment(op))
                }
                Piece::Peer { op } => spliced.extend_from_slice(&self.peer_ops[op].result),
                Piece::Acked { start, end, ticket } => {
                    if self.tickets_ok[ticket] || start == end {
                        spliced.extend_from_slice(&self.out[start..end]);
                    } else if self.ticket_failures[ticket].is_empty() {
                        spliced.extend_from_slice(wire::NOT_ENOUGH_ACKS);
                    } else {
                        spliced.extend_from_slice(&self.ticket_failures[ticket]);
                    }
                }
            }
            if let Some(r) = retrievals.next_if(|r| r.end == i + 1) {
                let unanswered = self.pieces[r.clone()]
                    .iter()
                    .any(|p| matches!(p, Piece::Peer { op } if self.peer_ops[*op].unanswered));
                if unanswered {
                    spliced.truncate(retrieval_start);
                    spliced.extend_from_slice(wire::NO_OWNER_REACHABLE);
                }
            }
        }
        self.retrievals.clear();
        // Writes applied here and held for their acks were not forwarded.
        let forwarded = self.forwarded - self.tickets_ok.len();
        with_state(|s| s.stats.forwarded_out += forwarded as u64);
        self.peer_ops.clear();
        self.tickets.clear();
        self.tickets_ok.clear();
        self.ticket_failures.clear();
        spliced.extend_from_slice(&self.out[self.local_mark..]);
        self.spliced = std::mem::replace(&mut self.out, spliced);
        // Buffers kept for reuse are dropped once one carried large values, so an
        // idle connection does not hold on to what its largest read needed.
        if self.spliced.capacity() > REPLY_BUFFER_FLUSH_BYTES {
            self.spliced = Vec::new();
        }
        for replies in &mut self.replies {
            if replies.bytes.capacity() > REPLY_BUFFER_FLUSH_BYTES {
                *replies = Replies::default();
            }
        }
        self.pieces.clear();
        self.local_mark = 0;
        self.forwarded = 0;
        self.forwarded_values = 0;
        Ok(())
    }
}

impl Output {
    /// Waits for the replies of other nodes, trying the next owner of a key
    /// whose node failed, timed out or is recovering; and for the replication
    /// of the writes applied here.
    async fn complete_peers(&mut self, ctx: &ShardCtx) {
        let Some(cluster) = &ctx.cluster else {
            return;
        };
        for op in &mut self.peer_ops {
            let mut tried: Vec<Owner> = Vec::new();
            let mut reply = op.reply.take();
            let mut epoch_retries = 0;
            loop {
                let link = cluster.link(op.target);
                let answer = match reply.take() {
                    Some(reply) => link.wait(reply).await,
                    None => Err(super::peer::LinkError::NotSent),
                };
                // A write the owner may have applied goes to another owner only
                // if doing it twice is doing it once (see `Resend`); the owner
                // replicates what it applied.
                if let Err(e) = &answer {
                    if op.resend == Resend::OnlyIfNotSent && e.outcome_unknown() {
                        op.result = match op.shape {
                            PeerReply::Binary => std::mem::take(&mut op.on_failure),
                            PeerReply::Whole | PeerReply::GetOne => wire::OUTCOME_UNKNOWN.to_vec(),
                        };
                        break;
                    }
                }
                let usable = match &answer {
                    Ok(bytes) => op.shape.is_usable(bytes),
                    Err(_) => false,
                };
                // A peer at another epoch is taking up (or has taken up) another
                // configuration: give it a moment and ask it again.
                if let Ok(bytes) = &answer {
                    if bytes.starts_with(wire::EPOCH_MISMATCH_PREFIX)
                        && epoch_retries < EPOCH_RETRIES_MAX
                    {
                        epoch_retries += 1;
                        glommio::timer::sleep(std::time::Duration::from_millis(
                            EPOCH_RETRY_PAUSE_MS,
                        ))
                        .await;
                        reply = Some(cluster.link(op.target).send_framed(
                            PeerMode::Forward,
                            op.shape.framing(),
                            op.request.clone(),
                        ));
                        continue;
                    }
                }
                if usable {
                    let mut bytes = answer.unwrap_or_default();
                    if op.shape == PeerReply::GetOne {
                        bytes.truncate(bytes.len() - crate::engine::reply::END.len());
                    }
                    op.result = bytes;
                    break;
                }
                tried.push(op.target);
                let view = cluster.view();
                match cluster.next_candidate(&view, &op.key, op.write, &tried) {
                    Some(next) => {
                        op.target = next;
                        reply = Some(cluster.link(next).send_framed(
                            PeerMode::Forward,
                            op.shape.framing(),
                            op.request.clone(),
                        ));
                    }
                    None => {
                        op.result = std::mem::take(&mut op.on_failure);
                        op.unanswered = true;
                        break;
                    }
                }
            }
        }
        for ticket in &mut self.tickets {
            let ticket = ticket.take().expect("a ticket is settled once");
            self.tickets_ok.push(cluster.settle(ticket).await);
        }
    }
}

/// What a request sent to another node is, for reading its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PeerReply {
    /// A whole text or meta request.
    Whole,
    /// One key of a multi-key get: the reply's `END` is dropped.
    GetOne,
    /// A binary request.
    Binary,
}

impl PeerReply {
    fn framing(self) -> Framing {
        match self {
            PeerReply::Binary => Framing::Binary,
            PeerReply::Whole | PeerReply::GetOne => Framing::Text,
        }
    }

    /// Whether `reply` answers the request, or says to ask the next owner
    /// (recovering, another epoch, not an owner).
    fn is_usable(self, reply: &[u8]) -> bool {
        match self {
            PeerReply::GetOne => reply.ends_with(crate::engine::reply::END),
            PeerReply::Whole => {
                reply != wire::RECOVERING
                    && reply != wire::NOT_AN_OWNER
                    && !reply.starts_with(wire::EPOCH_MISMATCH_PREFIX)
            }
            PeerReply::Binary => {
                wire::binary_status(reply)
                    != Some(crate::protocol::binary::Status::NotMyVbucket.code())
            }
        }
    }
}

/// What the read loop does after a read's requests.
pub(super) enum After {
    Continue,
    Close,
    /// `watch`: the connection now only receives log lines.
    Watch(std::sync::Arc<super::watch::Watcher>),
}

/// Which protocol a connection speaks, known from its first byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Undecided,
    Text,
    Binary,
}

/// Serves one client until it closes, sends `quit`, breaks the protocol beyond
/// repair, or the node stops.
///
/// `listed` is the connection's entry in `stats conns`, kept current here.
pub async fn serve(
    mut stream: ClientStream,
    ctx: &ShardCtx,
    peer: Option<std::net::SocketAddr>,
    listed: &Registration,
) -> CloseReason {
    let mut rbuf = vec![0u8; READ_CHUNK_BYTES];
    let mut start = 0usize;
    let mut end = 0usize;
    let mut swallow = 0usize;
    let mut output = Output::new(ctx.node.shards);
    output.cfd = stream.raw_fd() as u64;
    let mut reason = CloseReason::Normal;
    // -B ascii or binary fixes the protocol; by default the first byte decides.
    let mut wire = match ctx.node.config.protocol {
        Protocol::Auto => Wire::Undecided,
        Protocol::Ascii => Wire::Text,
        Protocol::Binary => Wire::Binary,
    };
    let mut mode = ConnMode::Client;
    // -Y: nothing runs until the connection has authenticated.
    let mut client_auth = match ctx.node.ascii_auth {
        Some(_) => ClientAuth::Required,
        None => ClientAuth::Done,
    };
    // Every connection starts a stranger: its `rc` lines are answered `ERROR`
    // until it passes the members-only handshake.
    let mut standing = Standing::Stranger;
    let peer_ip = peer.map_or_else(|| "an unknown address".to_string(), |a| a.ip().to_string());
    let pauses_at_start = ctx.cluster.as_ref().map_or(0, |c| c.node.pauses_noticed());
    let accepted_ms = ctx.cluster.as_ref().map_or(0, |c| c.node.clock_ms());
    let buffer_max = ctx
        .node
        .config
        .item_size_max_bytes
        .min(ITEM_SIZE_MAX_MAX_BYTES)
        + MULTIGET_LINE_LEN_MAX;

    loop {
        if start == end {
            start = 0;
            end = 0;
            if rbuf.len() > READ_BUFFER_KEEP_BYTES {
                rbuf.truncate(READ_CHUNK_BYTES);
                rbuf.shrink_to_fit();
            }
        } else if end == rbuf.len() {
            if start > 0 {
                rbuf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            } else if rbuf.len() < buffer_max {
                let grown = (rbuf.len() * 2).min(buffer_max);
                rbuf.resize(grown, 0);
            } else {
                // The parser bounds lines and items below this size; a full
                // buffer here means a request larger than any it accepts.
                reason = CloseReason::Error;
                break;
            }
        }
        let n = match stream.read(&mut rbuf[end..]).await {
            Ok(0) => break,
            Err(_) => {
                reason = CloseReason::Error;
                break;
            }
            Ok(n) => n,
        };
        let read_at = Instant::now();
        listed.running(read_at);
        let watched = ctx.node.watchers.wanted();
        with_state(|s| {
            s.stats.bytes_read += n as u64;
            s.set_watched(watched, output.cfd);
        });
        let suspect = ctx.cluster.as_ref().is_some_and(|cluster| {
            cluster
                .node
                .opened_across_pause(accepted_ms, pauses_at_start)
        });

        end += n;
        if swallow > 0 {
            let skip = swallow.min(end - start);
            start += skip;
            swallow -= skip;
        }

        ctx.busy.set(ctx.busy.get() + 1);
        // As memcached does, the first byte of a connection decides its protocol for good.
        if wire == Wire::Undecided && end > start {
            wire = if rbuf[start] == protocol::binary::REQUEST_MAGIC {
                Wire::Binary
            } else {
                Wire::Text
            };
        }
        let (buf, start, swallow) = (&rbuf[..end], &mut start, &mut swallow);
        let mut after = After::Continue;
        if let (ClientAuth::Required, Some(users)) = (client_auth, &ctx.node.ascii_auth) {
            after = authenticate(users, buf, start, swallow, &mut output, &mut client_auth);
        }
        let after = match (after, client_auth, wire) {
            (After::Close, _, _) => After::Close,
            (After::Watch(_), _, _) => unreachable!("authentication does not watch"),
            (After::Continue, ClientAuth::Required, _) => After::Continue,
            (After::Continue, ClientAuth::Done, Wire::Binary) => {
                super::binary_conn::handle_buffer(
                    ctx,
                    &mut stream,
                    buf,
                    start,
                    swallow,
                    &mut output,
                )
                .await
            }
            (After::Continue, ClientAuth::Done, Wire::Text | Wire::Undecided) => {
                let mut conn = TextConn {
                    mode: &mut mode,
                    suspect,
                    standing: &mut standing,
                    peer_ip: &peer_ip,
                    local: listed.listen_addr(),
                };
                handle_buffer(
                    ctx,
                    &mut stream,
                    buf,
                    start,
                    swallow,
                    &mut output,
                    &mut conn,
                )
                .await
            }
        };
        super::shard::record_latency(read_at.elapsed().as_micros() as u64);
        if watched != 0 {
            super::watch::publish_pending(&ctx.node.watchers);
        }
        let written = flush(&mut stream, &mut output).await;
        listed.idle(conns::idle_state(&buf[*start..], *swallow, LINE_LEN_MAX));
        ctx.busy.set(ctx.busy.get() - 1);
        if written.is_err() {
            reason = CloseReason::Error;
            break;
        }
        if let After::Watch(watcher) = after {
            // As memcached, the rest of what the client sent is not read.
            super::watch::serve_watcher(&mut stream, &ctx.node.watchers, watcher).await;
            reason = CloseReason::Error;
            break;
        }
        if matches!(after, After::Close) {
            break;
        }
        if ctx.node.stop.load(Ordering::Acquire) {
            reason = CloseReason::Shutdown;
            break;
        }
    }
    if let (Standing::Challenged { who, .. }, Some(cluster)) = (&standing, &ctx.cluster) {
        // A node that finds this node's proof wrong hangs up without its own:
        // it holds another secret.
        cluster.node.warn_auth_once(
            &format!("{who}@{peer_ip}"),
            format_args!(
                "a handshake from {peer_ip} ({who}) was abandoned: it holds another cluster secret, or none"
            ),
        );
    }
    let _ = stream.close().await;
    reason
}

/// Whether a connection may run commands yet (`-Y`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Required,
    Done,
}

/// Answers the requests of a connection that has not authenticated (`-Y`),
/// until one authenticates it. (`-Y` makes every connection text, as in
/// memcached: binary bytes are read as text lines.)
fn authenticate(
    users: &crate::protocol::ascii_auth::AuthFile,
    buf: &[u8],
    start: &mut usize,
    swallow: &mut usize,
    output: &mut Output,
    client_auth: &mut ClientAuth,
) -> After {
    use crate::protocol::ascii_auth::{step, Step};
    while *start < buf.len() && *swallow == 0 {
        match step(&buf[*start..], users) {
            Step::Incomplete => break,
            Step::Close => return After::Close,
            Step::Answer {
                reply,
                used,
                swallow: swallow_bytes,
                authenticated,
            } => {
                output.out.extend_from_slice(reply);
                *start += used;
                skip_data_block(buf, start, swallow, swallow_bytes);
                if authenticated {
                    *client_auth = ClientAuth::Done;
                    break;
                }
            }
        }
    }
    After::Continue
}

async fn flush(stream: &mut ClientStream, output: &mut Output) -> std::io::Result<()> {
    if output.out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(&output.out).await;
    with_state(|s| s.stats.bytes_written += output.out.len() as u64);
    output.out.clear();
    output.local_mark = 0;
    result
}

/// Skips a data block of `swallow_bytes` that follows the request ending at
/// `*start`: what is in `buf` now, and the rest (`*swallow`) as it arrives.
pub(super) fn skip_data_block(
    buf: &[u8],
    start: &mut usize,
    swallow: &mut usize,
    swallow_bytes: usize,
) {
    let skip = swallow_bytes.min(buf.len() - *start);
    *start += skip;
    *swallow = swallow_bytes - skip;
}

/// Once the gathered replies reach a bound, waits for other shards' answers and
/// writes everything out before more requests run. Err: the connection is done.
pub(super) async fn drain_if_full(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    output: &mut Output,
) -> Result<(), ()> {
    if output.is_full() {
        drain(ctx, stream, output).await?;
    }
    Ok(())
}

/// Waits for other shards' answers and writes every gathered reply out now.
pub(super) async fn drain(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    output: &mut Output,
) -> Result<(), ()> {
    output.complete(ctx).await?;
    flush(stream, output).await.map_err(|_| ())
}

/// Executes every complete request in `buf[*start..]`, advancing `*start`.
#[allow(clippy::too_many_arguments)]
async fn handle_buffer(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    buf: &[u8],
    start: &mut usize,
    swallow: &mut usize,
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> After {
    let shards = ctx.node.shards;
    let mode = &mut *conn.mode;
    loop {
        if *start == buf.len() {
            break;
        }
        let rest = &buf[*start..];
        if let (Some(cluster), true) = (&ctx.cluster, rest.starts_with(wire::PEER_LINE_PREFIX)) {
            if *conn.standing != Standing::Member || auth::is_auth_line(rest) {
                match members_only(cluster, rest, output, conn.standing, conn.peer_ip) {
                    Gate::Incomplete => break,
                    Gate::Done(used) => {
                        *start += used;
                        continue;
                    }
                    Gate::Close => return After::Close,
                }
            }
            match control_request(ctx, cluster, rest, output).await {
                Control::NotOne => {}
                Control::Incomplete => break,
                Control::Done(used) => {
                    *start += used;
                    continue;
                }
                Control::Close => return After::Close,
            }
            match wire::parse_peer_line(rest) {
                Ok(None) => break,
                Err(used) => {
                    output.out.extend_from_slice(reply::BAD_FORMAT);
                    *start += used;
                }
                Ok(Some((PeerLine::Mode { mode: peer, epoch }, used))) => {
                    *mode = ConnMode::Peer { mode: peer, epoch };
                    *start += used;
                }
                Ok(Some((PeerLine::Exchange { epoch, node }, used))) => {
                    *start += used;
                    if output.complete(ctx).await.is_err() {
                        return After::Close;
                    }
                    if epoch != cluster.node.epoch() {
                        cluster::Refusal::Epoch(cluster.node.epoch()).write(&mut output.out);
                    } else if cluster::exchange(ctx, node).await {
                        // Settled: `node` is primary for its keys again, so
                        // this node stops standing in for it.
                        cluster.node.clear_tko(node);
                        output.out.extend_from_slice(wire::RECOVERED);
                    } else {
                        output
                            .out
                            .extend_from_slice(b"SERVER_ERROR exchange incomplete\r\n");
                    }
                }
                Ok(Some((PeerLine::Recover { epoch, node, what }, used))) => {
                    *start += used;
                    if output.complete(ctx).await.is_err() {
                        return After::Close;
                    }
                    if epoch != cluster.node.epoch() {
                        cluster::Refusal::Epoch(cluster.node.epoch()).write(&mut output.out);
                    } else {
                        let clock = ctx.node.clock();
                        let reply = cluster.push_recovery(node, what, &clock).await;
                        output.out.extend_from_slice(reply);
                    }
                }
            }
            continue;
        }
        if rest.starts_with(b"config get cluster") {
            // ElastiCache-style auto-discovery: the shard endpoints, so a ketama
            // client reaches every key's primary with no hop.
            if let Some(nl) = memchr::memchr(b'\n', rest) {
                let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
                if line == b"config get cluster" {
                    let config = match &ctx.cluster {
                        Some(cluster) => cluster.view().config().clone(),
                        None => single_node_config(ctx, conn.local),
                    };
                    crate::cluster::discovery::encode_config_get_cluster(&config, &mut output.out);
                    *start += nl + 1;
                    continue;
                }
            } else if rest.len() < CONFIG_GET_LINE_LEN_MAX {
                break;
            }
        }
        if let (ConnMode::Peer { .. }, Some(&protocol::binary::REQUEST_MAGIC)) =
            (*mode, rest.first())
        {
            // A binary request another node forwarded, ended by a binary NOOP.
            match peer_binary_request(ctx, output, *mode, conn.suspect, rest) {
                Some(used) => {
                    *start += used;
                    continue;
                }
                None => break,
            }
        }
        let (req, used) = match protocol::parse(rest, &ctx.limits) {
            Ok(parsed) => parsed,
            Err(ParseError::Incomplete) => break,
            Err(ParseError::Invalid {
                reply,
                consumed,
                swallow_bytes,
            }) => {
                super::protocol_errors::text(conn.peer_ip, &rest[..consumed], reply);
                output.out.extend_from_slice(reply);
                *start += consumed;
                skip_data_block(buf, start, swallow, swallow_bytes);
                continue;
            }
            Err(ParseError::LineTooLong) => {
                super::protocol_errors::line_too_long(conn.peer_ip);
                let _ = output.complete(ctx).await;
                return After::Close;
            }
            Err(ParseError::Http) => {
                super::protocol_errors::http(conn.peer_ip);
                // memcached closes at once, writing none of the replies queued
                // from this read (the requests before the line still take effect).
                let _ = output.complete(ctx).await;
                output.out.clear();
                return After::Close;
            }
        };
        let raw = &rest[..used];
        let clock = ctx.node.clock();
        match req {
            Request::Get {
                kind,
                exptime,
                keys,
                ending,
            } if shards > 1 || ctx.cluster.is_some() => {
                let write = ctx.cluster.is_some() && exptime.is_some();
                output.routes.clear();
                let mut all_mine = true;
                for key in keys.iter() {
                    let route = ctx.route(key, write, *mode);
                    all_mine &= route == Route::Shard(ctx.id, Role::Plain);
                    output.routes.push(route);
                }
                let refused = output.routes.iter().find_map(|r| match r {
                    Route::Refuse(refusal) => Some(*refusal),
                    _ => None,
                });
                if all_mine {
                    with_state(|s| engine::execute(s, &req, &clock, &mut output.out));
                } else if let Some(refusal) = refused {
                    // Only another node's requests are refused, one key at a time.
                    refusal.write(&mut output.out);
                } else if ending == GetEnding::KeyTooLong {
                    // The keys are looked up for their side effects only (see
                    // `GetEnding`): their values are dropped, here and remotely.
                    let mut dropped = Vec::new();
                    for (i, key) in keys.iter().enumerate() {
                        match output.routes[i] {
                            Route::Shard(owner, _) if owner == ctx.id => with_state(|s| {
                                engine::get_one(s, kind, exptime, key, &clock, &mut dropped)
                            }),
                            Route::Shard(owner, role) => output.forward_unanswered(
                                owner,
                                key,
                                ForwardKind::GetOne {
                                    kind,
                                    exptime,
                                    role,
                                },
                            ),
                            // Side effects on other nodes are not worth a round trip.
                            Route::Peer(_) | Route::Refuse(_) => {}
                        }
                    }
                    engine::end_retrieval(ending, output.out.len(), &mut output.out);
                } else {
                    let retrieval = output.begin_retrieval();
                    for (i, key) in keys.iter().enumerate() {
                        match output.routes[i] {
                            Route::Shard(owner, role) if owner == ctx.id => {
                                get_one_here(ctx, output, kind, exptime, key, role, &clock)
                            }
                            Route::Shard(owner, role) => output.forward(
                                owner,
                                key,
                                ForwardKind::GetOne {
                                    kind,
                                    exptime,
                                    role,
                                },
                                ReplySize::MayCarryValue,
                            ),
                            Route::Peer(target) => {
                                let request = get_one_request(kind, exptime, key);
                                // When no owner answers, the whole retrieval is
                                // answered `SERVER_ERROR` (see `end_retrieval`):
                                // a miss is an owner's answer.
                                output.forward_peer(
                                    ctx,
                                    target,
                                    key,
                                    write,
                                    request,
                                    PeerReply::GetOne,
                                    Resend::Safe,
                                    Vec::new(),
                                );
                            }
                            Route::Refuse(_) => unreachable!("refusals are answered above"),
                        }
                    }
                    engine::end_retrieval(ending, output.out.len(), &mut output.out);
                    output.end_retrieval(retrieval);
                }
            }
            Request::Get { .. } => {
                with_state(|s| engine::execute(s, &req, &clock, &mut output.out));
            }
            // Keyed requests go to their owner; `mn` is answered here, in order
            // with the replies spliced around it.
            Request::Meta(_)
            | Request::Store { .. }
            | Request::TooLarge { .. }
            | Request::Delete { .. }
            | Request::Arith { .. }
            | Request::Touch { .. } => match request_key(&req) {
                Some(_) if conn.suspect && mode_may_be_stale(*mode) && cluster::is_write(&req) => {
                    log::warn!(
                        "closing a connection from a peer opened across a pause of this node"
                    );
                    let _ = output.complete(ctx).await;
                    return After::Close;
                }
                Some(key) => {
                    let size = if matches!(req, Request::Meta(_)) {
                        ReplySize::MayCarryValue
                    } else {
                        ReplySize::Small
                    };
                    keyed(ctx, output, &req, raw, key, size, *mode, &clock);
                }
                None => {
                    with_state(|s| engine::execute(s, &req, &clock, &mut output.out));
                }
            },
            Request::Watch { args } => {
                if output.complete(ctx).await.is_err() {
                    return After::Close;
                }
                *start += used;
                match watch_request(ctx, args, !output.out.is_empty()) {
                    Ok(watcher) => {
                        output.out.extend_from_slice(reply::OK);
                        return After::Watch(watcher);
                    }
                    Err(line) => output.out.extend_from_slice(line),
                }
                continue;
            }
            _ => {
                // Requests for the whole node see the effects of every request before them.
                if output.complete(ctx).await.is_err() {
                    return After::Close;
                }
                if let Request::Stats { group: b"cluster" } = req {
                    if ctx.cluster.is_none() {
                        let config = single_node_config(ctx, conn.local);
                        write_single_node_stats(&config, &mut output.out);
                        *start += used;
                        continue;
                    }
                }
                if let Step::Close = node_request(ctx, &req, &clock, &mut output.out, *mode).await {
                    *start += used;
                    return After::Close;
                }
            }
        }
        *start += used;
        if let Some(swallow_bytes) = swallow_after(&req) {
            skip_data_block(buf, start, swallow, swallow_bytes);
        }
        if drain_if_full(ctx, stream, output).await.is_err() {
            return After::Close;
        }
    }
    if output.complete(ctx).await.is_err() {
        return After::Close;
    }
    After::Continue
}

/// `watch [kinds]`: a new watcher, or memcached's refusal. Like memcached, a
/// connection with replies still to write cannot become a watcher.
fn watch_request(
    ctx: &ShardCtx,
    args: &[u8],
    replies_pending: bool,
) -> Result<std::sync::Arc<super::watch::Watcher>, &'static [u8]> {
    if replies_pending {
        return Err(b"ERROR cannot pipeline other commands before watch\r\n");
    }
    let kinds = args.split(|&b| b == b' ').filter(|a| !a.is_empty());
    let kinds = engine::watch::parse_kinds(kinds).ok_or(reply::ERROR)?;
    ctx.node
        .watchers
        .add(kinds)
        .map_err(|_| &b"WATCHER_TOO_MANY log watcher limit reached\r\n"[..])
}

/// What became of an `rc` line on a connection that is not (yet) a member's.
enum Gate {
    Incomplete,
    /// Answered; the bytes used.
    Done(usize),
    /// Refused: the connection closes once the refusal is written.
    Close,
}

/// Members only (see `cluster::auth`): on a connection that has not passed
/// the handshake, an `rc` line is answered `ERROR`, as memcached answers a
/// command it does not know, and the connection goes on; `rc hello` and
/// `rc auth` are the handshake. A failed handshake is answered
/// [`auth::AUTH_REFUSED`], logged once per peer, and closes the connection.
fn members_only(
    cluster: &cluster::ShardCluster,
    rest: &[u8],
    output: &mut Output,
    standing: &mut Standing,
    peer_ip: &str,
) -> Gate {
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
    let nonce = match super::auth::random_bytes() {
        Ok(nonce) => nonce,
        Err(e) => {
            log::error!("no randomness for a handshake nonce: {e}");
            return Gate::Close;
        }
    };
    let node = &cluster.node;
    match auth::server_step(&node.secret, standing, line, nonce) {
        auth::ServerStep::Answer(answer) => {
            output.out.extend_from_slice(&answer);
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

/// What became of a line that may be for the control thread.
enum Control {
    /// Not `rc paxos`, `rc propose`, `rc show`, `rc suspect`, `rc join` or
    /// `rc status`.
    NotOne,
    Incomplete,
    /// Served; the bytes used.
    Done(usize),
    Close,
}

/// `rc paxos <px1 line>`: a consensus message for this node's control thread (no
/// reply). `rc propose <config>`: an admin proposal of the configuration
/// `<config>` (a cluster file in base64, at the epoch it names), answered `OK`
/// once decided, `EXISTS` if another value won that epoch, or `SERVER_ERROR
/// ...`. `rc show`: the configuration in force as a cluster file, in a `VALUE`
/// block.
async fn control_request(
    ctx: &ShardCtx,
    cluster: &cluster::ShardCluster,
    rest: &[u8],
    output: &mut Output,
) -> Control {
    use super::control::ControlInput;
    use crate::cluster::codec;
    let kind = if rest.starts_with(b"rc paxos ") {
        0
    } else if rest.starts_with(b"rc propose ") {
        1
    } else if rest.starts_with(b"rc show\r\n") || rest.starts_with(b"rc show\n") {
        2
    } else if rest.starts_with(b"rc suspect ") {
        3
    } else if rest.starts_with(b"rc join ") {
        4
    } else if rest.starts_with(b"rc status\r\n") || rest.starts_with(b"rc status\n") {
        5
    } else {
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
    let control = ctx
        .node
        .control
        .as_ref()
        .map(|tx| tx.lock().expect("control").clone());
    match kind {
        0 => match codec::decode_message_line(&line[b"rc paxos ".len()..]) {
            Ok(message) => {
                if let Some(tx) = control {
                    let _ = tx.send(ControlInput::Message(message));
                }
                Control::Done(used)
            }
            Err(e) => {
                log::warn!("a peer sent a bad consensus message ({e}); closing");
                Control::Close
            }
        },
        1 => {
            if output.complete(ctx).await.is_err() {
                return Control::Close;
            }
            let Some(tx) = control else {
                output.out.extend_from_slice(
                    b"SERVER_ERROR this node runs no consensus (start it with --data-dir)\r\n",
                );
                return Control::Done(used);
            };
            let value = match codec::decode_config(&line[b"rc propose ".len()..]) {
                Ok(value) => value,
                Err(e) => {
                    output.out.extend_from_slice(
                        format!("CLIENT_ERROR bad configuration: {e:?}\r\n").as_bytes(),
                    );
                    return Control::Done(used);
                }
            };
            let answer = propose(&tx, value).await;
            output.out.extend_from_slice(&answer);
            Control::Done(used)
        }
        4 => {
            if output.complete(ctx).await.is_err() {
                return Control::Close;
            }
            let answer = match control {
                Some(tx) => join(cluster, &tx, &line[b"rc join ".len()..]).await,
                None => b"SERVER_ERROR this node runs no consensus (start it with --data-dir)\r\n"
                    .to_vec(),
            };
            output.out.extend_from_slice(&answer);
            Control::Done(used)
        }
        5 => {
            crate::cluster::wire::encode_status(&cluster.node.status(), &mut output.out);
            Control::Done(used)
        }
        3 => {
            // `rc suspect <from> <id,id,...|->`: another node's failure report.
            let text = String::from_utf8_lossy(&line[b"rc suspect ".len()..]).into_owned();
            let mut fields = text.split(' ');
            let from = fields.next().and_then(|f| f.parse::<u32>().ok());
            let ids: Option<Vec<u32>> = match fields.next() {
                Some("-") => Some(Vec::new()),
                Some(list) => list.split(',').map(|id| id.parse().ok()).collect(),
                None => None,
            };
            match (from, ids, control) {
                (Some(from), Some(ids), Some(tx)) => {
                    let _ = tx.send(ControlInput::Suspicions { from, ids });
                    output.out.extend_from_slice(reply::OK);
                }
                (Some(_), Some(_), None) => output.out.extend_from_slice(reply::OK),
                _ => {
                    log::warn!("a peer sent a bad failure report; closing");
                    return Control::Close;
                }
            }
            Control::Done(used)
        }
        _ => {
            let text = cluster.view().config().to_file_text();
            output.out.extend_from_slice(
                format!("VALUE cluster 0 {}\r\n{text}\r\nEND\r\n", text.len()).as_bytes(),
            );
            Control::Done(used)
        }
    }
}

/// Hands `value` to the control thread as an admin proposal and waits for its
/// answer line (`OK`, `EXISTS` or `SERVER_ERROR ...`).
async fn propose(
    tx: &std::sync::mpsc::Sender<super::control::ControlInput>,
    value: crate::cluster::config::ClusterConfig,
) -> Vec<u8> {
    use super::control::{ControlInput, PROPOSAL_TIMEOUT};
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    let _ = tx.send(ControlInput::Propose {
        epoch: value.epoch(),
        value,
        reply: reply_tx,
    });
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
async fn join(
    cluster: &cluster::ShardCluster,
    tx: &std::sync::mpsc::Sender<super::control::ControlInput>,
    args: &[u8],
) -> Vec<u8> {
    use crate::cluster::codec;
    use crate::cluster::config::{Endpoint, NodeConfig, NodeState};
    let text = String::from_utf8_lossy(args).into_owned();
    let mut fields = text.split_ascii_whitespace();
    let parsed = (|| -> Result<(Endpoint, Vec<Endpoint>), String> {
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
    })();
    let (addr, shards) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return format!("CLIENT_ERROR bad join request: {e}\r\n").into_bytes(),
    };
    for _ in 0..JOIN_ATTEMPTS_MAX {
        let current = cluster.node.view().config().clone();
        let mut spec = current.to_spec();
        let id = current.next_node_id();
        let mut state = NodeState::Joining;
        if let Some(old) = spec.nodes.iter().find(|n| n.client_addr == addr).cloned() {
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
            shards: shards.clone(),
            state,
        });
        spec.next_node_id = id + 1;
        let value = match current.successor(spec) {
            Ok(value) => value,
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

/// How many epochs a join tries before it gives up.
const JOIN_ATTEMPTS_MAX: u32 = 10;

/// What the text loop knows of its connection besides the bytes.
struct TextConn<'m> {
    mode: &'m mut ConnMode,
    /// Whether the connection has passed the members-only handshake.
    standing: &'m mut Standing,
    /// The address it comes from, for the log.
    peer_ip: &'m str,
    /// The address it came in on, which a one-node view names.
    local: Option<std::net::SocketAddr>,
    /// A peer's connection opened across a pause of this node (see
    /// `ClusterNode::opened_across_pause`).
    suspect: bool,
}

/// Whether writes in `mode` may be ones their sender gave up on while this
/// node was paused: forwarded writes and replicated items. Copies pushed to a
/// recovering node are asked for by the node itself, after the pause.
fn mode_may_be_stale(mode: ConnMode) -> bool {
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
fn peer_binary_request(
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
    match ctx.route(key, write, mode) {
        Route::Shard(shard, Role::Plain) if shard == ctx.id => {
            with_state(|s| bin_engine::execute(s, &req, &clock, &mut output.out));
        }
        Route::Shard(shard, role) if shard == ctx.id => {
            apply_binary_here(ctx, output, &req, key, role, &clock);
        }
        Route::Shard(shard, role) => output.forward(
            shard,
            raw,
            ForwardKind::Binary(role),
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
pub(super) fn apply_binary_here(
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

/// Routes one keyed text or meta request: runs it here, batches it for another
/// shard, sends it to another node, or refuses it.
#[allow(clippy::too_many_arguments)]
fn keyed(
    ctx: &ShardCtx,
    output: &mut Output,
    req: &Request<'_>,
    raw: &[u8],
    key: &[u8],
    size: ReplySize,
    mode: ConnMode,
    clock: &Clock,
) {
    let write = ctx.cluster.is_some() && cluster::is_write(req);
    match ctx.route(key, write, mode) {
        Route::Shard(shard, Role::Plain) if shard == ctx.id => {
            with_state(|s| engine::execute(s, req, clock, &mut output.out));
        }
        Route::Shard(shard, role) if shard == ctx.id => {
            let cluster = ctx.cluster.as_ref().expect("roles only in a cluster");
            output.cut_local();
            let start = output.out.len();
            let ticket =
                with_state(|s| cluster::apply(cluster, s, req, key, role, clock, &mut output.out));
            if let Some(ticket) = ticket {
                output.push_acked(start, ticket, Vec::new());
            }
        }
        Route::Shard(shard, role) => output.forward(shard, raw, ForwardKind::Whole(role), size),
        // A request refused as too large before its data was read is answered
        // here: its line alone, forwarded, would make the owner skip the data
        // block in what follows on the connection.
        Route::Peer(_) if swallow_after(req).is_some() => {
            with_state(|s| engine::execute(s, req, clock, &mut output.out));
        }
        Route::Peer(target) => {
            let mut request = raw.to_vec();
            request.extend_from_slice(wire::MN_REQUEST);
            let resend = match req {
                Request::Store {
                    mode: StoreMode::Set,
                    ..
                } => Resend::Safe,
                _ if write => Resend::OnlyIfNotSent,
                _ => Resend::Safe,
            };
            output.forward_peer(
                ctx,
                target,
                key,
                write,
                request,
                PeerReply::Whole,
                resend,
                wire::NO_OWNER_REACHABLE.to_vec(),
            );
        }
        Route::Refuse(refusal) => refusal.write(&mut output.out),
    }
}

/// One key of a multi-key get, owned by this shard.
fn get_one_here(
    ctx: &ShardCtx,
    output: &mut Output,
    kind: crate::protocol::text::GetKind,
    exptime: Option<i64>,
    key: &[u8],
    role: Role,
    clock: &Clock,
) {
    match (&ctx.cluster, role) {
        (Some(cluster), Role::Primary) => {
            output.cut_local();
            let start = output.out.len();
            let ticket = with_state(|s| {
                cluster::apply_get_one(cluster, s, kind, exptime, key, role, clock, &mut output.out)
            });
            if let Some(ticket) = ticket {
                output.push_acked(start, ticket, Vec::new());
            }
        }
        _ => with_state(|s| engine::get_one(s, kind, exptime, key, clock, &mut output.out)),
    }
}

/// The single-key text request that reads one key of a multi-key get on another node.
fn get_one_request(
    kind: crate::protocol::text::GetKind,
    exptime: Option<i64>,
    key: &[u8],
) -> Vec<u8> {
    use crate::protocol::text::GetKind;
    let mut request = Vec::with_capacity(key.len() + 32);
    match (kind, exptime) {
        (GetKind::Get, None) => request.extend_from_slice(b"get "),
        (GetKind::Gets, None) => request.extend_from_slice(b"gets "),
        (GetKind::Get, Some(t)) => request.extend_from_slice(format!("gat {t} ").as_bytes()),
        (GetKind::Gets, Some(t)) => request.extend_from_slice(format!("gats {t} ").as_bytes()),
    }
    request.extend_from_slice(key);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(wire::MN_REQUEST);
    request
}

/// Requests that concern every shard of the node.
async fn node_request(
    ctx: &ShardCtx,
    req: &Request<'_>,
    clock: &Clock,
    out: &mut Vec<u8>,
    mode: ConnMode,
) -> Step {
    let node = &ctx.node;
    match *req {
        Request::Quit => return Step::Close,
        Request::Version => engine::write_version(out),
        Request::Verbosity { reply, .. } | Request::SlabsAutomove { reply } => {
            engine::write_reply(reply, reply::OK, out)
        }
        Request::FlushAll { reply, .. } if node.config.flush == FlushCommand::Refused => {
            with_state(|s| s.stats.cmd_flush += 1);
            engine::write_reply(reply, reply::FLUSH_NOT_ALLOWED, out);
        }
        Request::FlushAll { delay_secs, reply } => {
            if mode == ConnMode::Client {
                flush_other_nodes(ctx, delay_secs).await;
            }
            ctx.ask_all(|| Ask::Flush { delay_secs }).await;
            with_state(|s| {
                engine::flush(s, delay_secs, clock);
                s.stats.cmd_flush += 1;
            });
            engine::write_reply(reply, reply::OK, out);
        }
        Request::CacheMemlimit { megabytes, reply } => {
            let bytes = (megabytes as usize).saturating_mul(1024 * 1024) / node.shards;
            ctx.ask_all(|| Ask::MemoryLimit { bytes }).await;
            with_state(|s| s.store.set_memory_limit(bytes));
            engine::write_reply(reply, reply::OK, out);
        }
        Request::Shutdown { mode } => {
            if node.config.shutdown == ShutdownCommand::Refused {
                out.extend_from_slice(reply::SHUTDOWN_NOT_ENABLED);
            } else if mode == ShutdownMode::Invalid {
                out.extend_from_slice(reply::SHUTDOWN_INVALID_MODE);
            } else {
                // The main thread waits for SIGINT and stops every shard, letting
                // connections finish what they have read (graceful either way).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::this(),
                    nix::sys::signal::Signal::SIGINT,
                );
                return Step::Close;
            }
        }
        Request::Stats { group } if group == b"reset" => {
            ctx.ask_all(|| Ask::ResetStats).await;
            super::shard::reset_stats();
            out.extend_from_slice(reply::RESET);
        }
        Request::LruCrawler(LruCrawler::Crawl) => out.extend_from_slice(reply::OK),
        Request::LruCrawler(LruCrawler::BadClass) => {
            out.extend_from_slice(b"BADCLASS invalid class id\r\n")
        }
        Request::LruCrawler(LruCrawler::Metadump { every_item }) => {
            if every_item {
                out.extend_from_slice(&super::shard::metadump(ctx).await);
                for answer in ctx.ask_all(|| Ask::Metadump).await {
                    if let Answer::Metadump(lines) = answer {
                        out.extend_from_slice(&lines);
                    }
                }
            }
            out.extend_from_slice(reply::END);
        }
        Request::Stats { group } if group == b"conns" => {
            let now = Instant::now();
            let mut view = NodeView {
                conns: conns::views(now),
                ..NodeView::default()
            };
            for answer in ctx.ask_all(|| Ask::Conns).await {
                if let Answer::Conns(other) = answer {
                    view.conns.extend(other);
                }
            }
            view.conns.sort_by_key(|c| c.id);
            engine::write_stats(group, &view, out);
        }
        Request::Stats { group } if group == b"hotkeys" => {
            let mut view = NodeView::default();
            let own = super::shard::hot_keys();
            view.hot_keys.extend(own.into_iter().map(|k| (ctx.id, k)));
            let others = (0..node.shards as u32).filter(|&j| j != ctx.id);
            for (j, answer) in others.zip(ctx.ask_all(|| Ask::HotKeys).await) {
                if let Answer::HotKeys(keys) = answer {
                    view.hot_keys.extend(keys.into_iter().map(|k| (j, k)));
                }
            }
            engine::write_stats(group, &view, out);
        }
        Request::Stats { group } if group == b"cluster" && ctx.cluster.is_some() => {
            let view = node_view(ctx, clock, b"").await;
            cluster::write_stats_cluster(ctx, view.store.curr_items, out).await;
        }
        Request::Stats { group } if group == b"peers" && ctx.cluster.is_some() => {
            let view = node_view(ctx, clock, b"").await;
            cluster::write_stats_peers(ctx, &view.forwarded_to, out);
        }
        Request::Stats { group } => {
            let view = node_view(ctx, clock, group).await;
            engine::write_stats(group, &view, out);
        }
        _ => unreachable!("not a node request: {req:?}"),
    }
    Step::Continue
}

/// What a node outside any cluster says of itself to `stats cluster` and
/// `config get cluster`: itself as the one node (see
/// `ClusterConfig::single_node`), named by the address `local` the client
/// reached (`-l`'s first address when unknown), with its shards' own ports
/// (`--shard-ports`), which ketama clients can then reach directly.
fn single_node_config(ctx: &ShardCtx, local: Option<std::net::SocketAddr>) -> ClusterConfig {
    let config = &ctx.node.config;
    let host = match local {
        Some(addr) => addr.ip().to_string(),
        None => config.listen.split(',').next().unwrap_or("").to_string(),
    };
    let endpoint = |port| Endpoint {
        host: host.clone(),
        port,
    };
    let client = endpoint(config.port);
    let shards = match config.shard_port_base {
        Some(base) => (0..ctx.node.shards as u16)
            .map(|shard| endpoint(base + shard))
            .collect(),
        None => vec![client.clone()],
    };
    ClusterConfig::single_node(client, shards)
}

/// `stats cluster` of a node outside any cluster: the one-node configuration,
/// then the figures a cluster node adds that have a meaning here.
fn write_single_node_stats(config: &ClusterConfig, out: &mut Vec<u8>) {
    crate::cluster::discovery::encode_stats_cluster(config, out);
    out.truncate(out.len() - reply::END.len());
    out.extend_from_slice(b"STAT node_id 1\r\nSTAT node_state serving\r\n");
    out.extend_from_slice(reply::END);
}

/// `flush_all` on a client's connection flushes every node: each other node
/// flushes itself alone (its `rep` connection does not pass it on).
async fn flush_other_nodes(ctx: &ShardCtx, delay_secs: i64) {
    let Some(cluster) = &ctx.cluster else {
        return;
    };
    let node = &cluster.node;
    let request = format!("flush_all {delay_secs}\r\nmn\r\n").into_bytes();
    let mut waits = Vec::new();
    let view = cluster.view();
    for peer in view.config().nodes().iter().filter(|n| n.id != node.me) {
        let link = cluster.link(Owner {
            node: peer.id,
            shard: 0,
        });
        let reply = link.send(PeerMode::Replica, request.clone());
        waits.push((peer.id, link, reply));
    }
    for (id, link, reply) in waits {
        if link.wait(reply).await.as_deref() != Ok(reply::OK) {
            log::warn!("node {id} did not confirm flush_all");
        }
    }
}

/// Sums every shard's counters and adds the process's own figures.
///
/// For `stats items` (`group`), also how long ago the oldest item was accessed,
/// which walks a segment of each store; other groups do not pay for it.
pub(super) async fn node_view(ctx: &ShardCtx, clock: &Clock, group: &[u8]) -> NodeView {
    let node = &ctx.node;
    let oldest_access = group == b"items";
    let (own_shard, own_store, mut oldest) = with_state(|s| {
        let oldest = oldest_access
            .then(|| s.store.oldest_access(clock.rel_secs))
            .flatten();
        (s.stats, s.store.stats(), oldest)
    });
    let mut latency = super::shard::latency();
    let mut forwarded_to = ctx
        .cluster
        .as_ref()
        .map_or_else(Vec::new, |c| c.forwarded_to());
    let mut per_shard = vec![Default::default(); node.shards];
    per_shard[ctx.id as usize] = (own_shard, own_store);
    // ask_all answers in shard order, this shard left out.
    let others = (0..node.shards).filter(|&j| j != ctx.id as usize);
    for (j, answer) in others.zip(ctx.ask_all(|| Ask::Stats { oldest_access }).await) {
        if let Answer::Stats {
            shard: other,
            store: other_store,
            latency: other_latency,
            forwarded_to: other_forwarded,
            oldest_access: other_oldest,
        } = answer
        {
            oldest = match (oldest, other_oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            per_shard[j] = (*other, other_store);
            latency.add(&other_latency);
            forwarded_to.extend(other_forwarded);
        }
    }
    let (mut shard, mut store) = (ShardStats::default(), StoreStats::default());
    for (s, st) in &per_shard {
        shard.add(s);
        store.add(st);
    }
    forwarded_to.sort_unstable();
    forwarded_to.dedup_by(|b, a| {
        let same = a.0 == b.0;
        if same {
            a.1 += b.1;
        }
        same
    });
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok();
    let micros = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
    let config = &node.config;
    NodeView {
        pid: std::process::id(),
        uptime_secs: node.started.elapsed().as_secs(),
        unix_time_secs: clock.unix_secs(),
        version: engine::VERSION,
        rusage_user_micros: usage.map(|u| micros(u.user_time())).unwrap_or(0),
        rusage_system_micros: usage.map(|u| micros(u.system_time())).unwrap_or(0),
        threads: node.shards as u64,
        // Each shard listens on the node's port, and with shard ports on its own.
        listening_sockets: node.shards as u64
            * if node.cluster.is_some() || config.shard_port_base.is_some() {
                2
            } else {
                1
            },
        shard,
        malloced_bytes: store.limit_maxbytes,
        store,
        conns: Vec::new(),
        items_age_secs: oldest.map_or(0, |at| u64::from(clock.rel_secs.saturating_sub(at))),
        per_shard,
        latency,
        forwarded_to,
        hot_keys: Vec::new(),
        settings: Settings {
            max_bytes: config.memory_limit_bytes as u64,
            max_connections: config.conn_limit as u64,
            tcp_port: config.port,
            listen: config.listen.clone(),
            threads: node.shards as u64,
            item_size_max: config.item_size_max_bytes as u64,
            evictions_on: config.when_full == crate::storage::WhenFull::Evict,
            shutdown_allowed: config.shutdown == ShutdownCommand::Allowed,
            verbosity: config.verbosity as u32,
            tcp_backlog: config.listen_backlog as u32,
            binding_protocol: config.protocol.memcached_name(),
            flush_enabled: config.flush == FlushCommand::Allowed,
        },
    }
}

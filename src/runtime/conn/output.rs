//! The replies of one read, put back in request order: this shard's own, the
//! answers of other shards (sent as one batch per shard per read) and of other
//! nodes, and writes held for their acknowledgements.
//!
//! Does I/O through channels: [`Output::complete`] sends the batches to the
//! other shards and awaits their answers; it writes nothing to the client,
//! but may lend the client's socket to the owner of a lone request's key,
//! which then sends the read's replies itself (see `gate`).

use super::peer_forward::PeerOp;
use crate::cluster::wire;
use crate::limits::{
    FORWARDED_VALUES_MAX, FORWARD_BATCH_REQUESTS_MAX, READ_CHUNK_BYTES, REPLY_BUFFER_FLUSH_BYTES,
};
use crate::runtime::cluster::Ticket;
use crate::runtime::ctx::{Placement, ShardCtx};
use crate::runtime::doorbell::Doorbell;
use crate::runtime::gate::SendGate;
use crate::runtime::messages::{Answer, Ask, Batch, Forward, Replies, ToShard};
use crate::runtime::state::with_state;
use crate::runtime::stream::ClientStream;
use crate::runtime::waiters::Wait;
use std::sync::Arc;

/// Where one run of reply bytes comes from when some requests went to other shards.
pub(super) enum Piece {
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

/// How large the reply to a forwarded request can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::runtime) enum ReplySize {
    /// A status line or a number.
    Small,
    /// A retrieval: the reply may hold a whole item.
    MayCarryValue,
}

/// The replies of one read, being put together.
pub(in crate::runtime) struct Output {
    pub(in crate::runtime) out: Vec<u8>,
    /// Empty while every request so far ran on this shard.
    pub(super) pieces: Vec<Piece>,
    /// With `pieces`: where this shard's replies after the last forward begin.
    pub(super) local_mark: usize,
    batches: Vec<Batch>,
    /// Per shard: its latest replies, whose buffers the next batch lends it back.
    replies: Vec<Replies>,
    /// Answers being waited for, kept for its capacity.
    waits: Vec<(usize, Wait)>,
    /// The buffer the next splice is written into (the last `out`, emptied).
    spliced: Vec<u8>,
    pub(in crate::runtime) forwarded: usize,
    /// Forwarded requests whose replies may carry a value (up to `-I` bytes each).
    pub(super) forwarded_values: usize,
    /// Placements of the keys of the multi-key get being routed.
    pub(super) routes: Vec<Placement>,
    pub(super) peer_ops: Vec<PeerOp>,
    /// Owners whose requests wait for their turn at `complete` (see
    /// `PeerOp::deferred`).
    pub(super) deferred_targets: Vec<crate::cluster::ring::Owner>,
    pub(super) tickets: Vec<Option<Ticket>>,
    pub(super) tickets_ok: Vec<bool>,
    /// Per ticket: the reply if it fails (empty: the text one).
    ticket_failures: Vec<Vec<u8>>,
    /// Multi-key gets that asked other nodes: the range of `pieces` each
    /// spans, answered whole with `SERVER_ERROR` if no owner of one of its
    /// keys answered.
    retrievals: Vec<std::ops::Range<usize>>,
    /// The connection's id (its descriptor), named in `watch` lines.
    pub(in crate::runtime) cfd: u64,
    /// The connection's socket, lent for this read's replies when they are
    /// one other shard's reply and what follows it (see `gate`).
    lend: Option<Arc<SendGate>>,
}

impl Output {
    pub(super) fn new(shards: usize) -> Output {
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
            deferred_targets: Vec::new(),
            tickets: Vec::new(),
            tickets_ok: Vec::new(),
            ticket_failures: Vec::new(),
            retrievals: Vec::new(),
            cfd: 0,
            lend: None,
        }
    }

    /// Marks where the replies of a multi-key get begin.
    pub(super) fn begin_retrieval(&mut self) -> usize {
        self.cut_local();
        self.pieces.len()
    }

    /// Marks where they end (after its `END`), if any of them came from
    /// another node.
    pub(super) fn end_retrieval(&mut self, first_piece: usize) {
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
    pub(super) fn cut_local(&mut self) {
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

    /// Marks `out[start..]` as the reply to a write applied here as primary,
    /// sent once `ticket` settles. `cut_local` must have run before the write.
    ///
    /// `failure` replaces the reply when too few owners acknowledge (empty: the
    /// text protocol's [`wire::NOT_ENOUGH_ACKS`]).
    pub(in crate::runtime) fn push_acked(
        &mut self,
        start: usize,
        ticket: Ticket,
        failure: Vec<u8>,
    ) {
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
    pub(in crate::runtime) fn forward_unanswered(
        &mut self,
        shard: u32,
        point: Option<u32>,
        bytes: &[u8],
        what: Forward<'_, '_>,
    ) {
        self.batches[shard as usize].push(bytes, point, what);
        self.forwarded += 1;
        self.forwarded_values += 1;
    }

    /// Whether to send what is batched and write what is gathered before going on:
    /// this bounds the memory one connection holds, whatever it pipelines.
    pub(in crate::runtime) fn is_full(&self) -> bool {
        self.forwarded >= FORWARD_BATCH_REQUESTS_MAX
            || self.forwarded_values >= FORWARDED_VALUES_MAX
            || self.out.len() >= REPLY_BUFFER_FLUSH_BYTES
    }

    /// Batches `what` (whose bytes are `bytes`) for `shard`, which owns the
    /// key placed at `point`; its reply is spliced in here.
    pub(in crate::runtime) fn forward(
        &mut self,
        shard: u32,
        point: Option<u32>,
        bytes: &[u8],
        what: Forward<'_, '_>,
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
        batch.push(bytes, point, what);
        self.forwarded += 1;
    }

    /// Sends the batches, waits for their answers, and splices every reply into
    /// `out` in request order.
    pub(in crate::runtime) async fn complete(&mut self, ctx: &ShardCtx) -> Result<(), ()> {
        if self.forwarded == 0 && self.pieces.is_empty() {
            return Ok(());
        }
        self.exchange_batches(ctx).await?;
        self.complete_peers(ctx).await;
        let mut spliced = std::mem::take(&mut self.spliced);
        spliced.clear();
        let sent_by = self.sent_by_owner();
        match sent_by {
            // What the socket did not take is left in the owner's fragment.
            Some(shard) => spliced.extend_from_slice(self.replies[shard].fragment(0)),
            None => self.splice_into(&mut spliced),
        }
        self.retrievals.clear();
        // `forwarded_out` counts crossings to another shard of this node:
        // not writes applied here and held for their acks, nor requests sent
        // to another node (`stats peers` counts those, per node).
        let forwarded = self.forwarded - self.tickets_ok.len() - self.peer_ops.len();
        with_state(|s| s.stats.forwarded_out += forwarded as u64);
        self.peer_ops.clear();
        self.deferred_targets.clear();
        self.tickets.clear();
        self.tickets_ok.clear();
        self.ticket_failures.clear();
        if sent_by.is_none() {
            spliced.extend_from_slice(&self.out[self.local_mark..]);
        }
        self.spliced = std::mem::replace(&mut self.out, spliced);
        self.release_large_buffers();
        self.pieces.clear();
        self.local_mark = 0;
        self.forwarded = 0;
        self.forwarded_values = 0;
        Ok(())
    }

    /// Sends every batch, then waits for every answer, so the other shards
    /// work on them together. Err: a shard is gone.
    async fn exchange_batches(&mut self, ctx: &ShardCtx) -> Result<(), ()> {
        let mut waits = std::mem::take(&mut self.waits);
        let lent = self.lend.take();
        for shard in 0..self.batches.len() {
            if self.batches[shard].is_empty() {
                continue;
            }
            let mut batch = std::mem::take(&mut self.batches[shard]);
            batch.reply_buffers = std::mem::take(&mut self.replies[shard]);
            batch.cfd = self.cfd;
            if let Some(gate) = &lent {
                // The lone request's batch: its reply is all this read
                // writes, then what this shard wrote after it.
                batch.lent = Some(gate.clone());
                batch.tail.extend_from_slice(&self.out);
            }
            let siblings = &ctx.siblings;
            let slot = siblings.waiters.take_slot();
            let wait = siblings.waiters.wait(slot);
            let sender = siblings.requests_to[shard]
                .as_ref()
                .expect("no channel to self");
            sender
                .send(ToShard {
                    slot,
                    ask: Ask::Batch(batch),
                })
                .await
                .map_err(|_| ())?;
            siblings.doorbells[shard].ring(Doorbell::channel(siblings.id as usize, false));
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
        Ok(())
    }

    /// Lends `stream`'s socket to the owner of this read's request when the
    /// read's replies are that one other shard's reply and then this shard's
    /// own (see `gate`). Called just before the replies are completed.
    pub(in crate::runtime) fn offer_socket(&mut self, stream: &ClientStream) {
        if self.lone_remote() {
            self.lend = stream.lend();
        }
    }

    /// The shard that sent this read's replies itself, on the lent socket.
    fn sent_by_owner(&self) -> Option<usize> {
        match self.pieces[..] {
            [Piece::Remote { shard, op: 0 }, ..] if self.replies[shard as usize].sent_with_tail => {
                Some(shard as usize)
            }
            _ => None,
        }
    }

    /// Whether this read's replies are one other shard's reply to one request
    /// and this shard's own after it (a get's `END`, all of `out`): nothing
    /// before it, no other forward.
    fn lone_remote(&self) -> bool {
        self.forwarded == 1
            && self.peer_ops.is_empty()
            && self.tickets.is_empty()
            && match &self.pieces[..] {
                [Piece::Remote { op: 0, .. }, after @ ..] => {
                    after.iter().all(|p| matches!(p, Piece::Local { .. }))
                }
                _ => false,
            }
    }

    /// Writes every piece into `spliced` in request order; a multi-key get one
    /// of whose keys no owner answered becomes [`wire::NO_OWNER_REACHABLE`].
    fn splice_into(&self, spliced: &mut Vec<u8>) {
        let mut retrievals = self.retrievals.iter().peekable();
        let mut retrieval_start = 0;
        for (i, piece) in self.pieces.iter().enumerate() {
            if retrievals.peek().is_some_and(|r| r.start == i) {
                retrieval_start = spliced.len();
            }
            self.splice_piece(piece, spliced);
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
    }

    /// Writes the bytes of one piece.
    fn splice_piece(&self, piece: &Piece, spliced: &mut Vec<u8>) {
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
    }

    /// Buffers kept for reuse are dropped once one carried large values, so an
    /// idle connection does not hold on to what its largest read needed.
    fn release_large_buffers(&mut self) {
        if self.spliced.capacity() > REPLY_BUFFER_FLUSH_BYTES {
            self.spliced = Vec::new();
        }
        for replies in &mut self.replies {
            if replies.bytes.capacity() > REPLY_BUFFER_FLUSH_BYTES {
                *replies = Replies::default();
            }
        }
        for batch in &mut self.batches {
            batch.release_large_buffers(REPLY_BUFFER_FLUSH_BYTES);
        }
    }
}

//! What shards of one node say to each other over their bounded channels,
//! and what they hand the node's control thread.
//!
//! A connection's requests for keys owned by another shard travel as one
//! [`ToShard`] batch per destination per read; the owner answers with one
//! [`FromShard`] holding a reply fragment per request, in order. Consensus
//! messages and proposals a shard receives go to the control thread as a
//! [`ControlInput`].
//!
//! Bottom layer: plain values, no I/O; imports only [`gate`](super::gate) of `runtime`.

use super::gate::SendGate;
use crate::cluster::config::ClusterConfig;
use crate::cluster::route::Role;
use crate::consensus::{Epoch, Message};
use crate::engine::ConnView;
use crate::hotkeys::HotKey;
use crate::protocol::binary::BinRequest;
use crate::protocol::carried::Carried;
use crate::protocol::text::{GetKind, Request};
use crate::stats::{Latency, ShardStats};
use crate::storage::StoreStats;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// One request inside a forwarded batch: a byte range of [`Batch::bytes`].
#[derive(Clone, Copy, Debug)]
pub struct ForwardOp {
    pub start: u32,
    pub len: u32,
    /// Outside a cluster: the ring point of the request's key, as the sending
    /// shard placed it. The receiving shard checks that the point is its own.
    pub point: Option<u32>,
    pub kind: ForwardKind,
}

#[derive(Clone, Copy, Debug)]
pub enum ForwardKind {
    /// A whole text request (line and data block), parsed by the sending
    /// shard and carried as [`Batch::texts`]`[index]`, applied in this role.
    Text { role: Role, index: u32 },
    /// One key of a multi-key retrieval: the bytes are the key; the reply is its
    /// `VALUE` block alone, without `END`.
    GetOne {
        kind: GetKind,
        exptime: Option<i64>,
        role: Role,
    },
    /// A whole binary request (header, extras, key and value), parsed by the
    /// sending shard and carried as [`Batch::binaries`]`[index]`.
    Binary { role: Role, index: u32 },
}

/// A request to forward, as the sending shard parsed it.
#[derive(Clone, Copy, Debug)]
pub enum Forward<'r, 'a> {
    Text(&'r Request<'a>, Role),
    Binary(&'r BinRequest<'a>, Role),
    GetOne {
        kind: GetKind,
        exptime: Option<i64>,
        role: Role,
    },
}

/// The requests of one read that the receiving shard owns, in request order.
///
/// Buffers travel in a loop so that crossing shards allocates nothing in steady
/// state: a batch lends the owner `reply_buffers` to write its replies into, and
/// the answer brings the batch's own buffers back with the replies.
#[derive(Debug, Default)]
pub struct Batch {
    /// The connection the requests came from (`watch`'s `cfd`).
    pub cfd: u64,
    pub bytes: Vec<u8>,
    pub ops: Vec<ForwardOp>,
    /// The parsed text requests, read back from their bytes without parsing.
    pub texts: Vec<Carried<Request<'static>>>,
    /// The parsed binary requests, likewise.
    pub binaries: Vec<Carried<BinRequest<'static>>>,
    pub reply_buffers: Replies,
    /// A lone request's connection, lent to the owner to send the reply on
    /// itself, followed by `tail` (see [`gate`](super::gate)).
    pub lent: Option<Arc<SendGate>>,
    /// What the connection writes after the reply (a get's `END`).
    pub tail: Vec<u8>,
}

impl Batch {
    /// Adds `what`, whose bytes are `bytes` (a whole request, or the key of a
    /// `GetOne`), placed at ring point `point`.
    pub fn push(&mut self, bytes: &[u8], point: Option<u32>, what: Forward<'_, '_>) {
        let kind = match what {
            Forward::Text(req, role) => {
                self.texts.push(Carried::new(req, bytes));
                ForwardKind::Text {
                    role,
                    index: (self.texts.len() - 1) as u32,
                }
            }
            Forward::Binary(req, role) => {
                self.binaries.push(Carried::new(req, bytes));
                ForwardKind::Binary {
                    role,
                    index: (self.binaries.len() - 1) as u32,
                }
            }
            Forward::GetOne {
                kind,
                exptime,
                role,
            } => ForwardKind::GetOne {
                kind,
                exptime,
                role,
            },
        };
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(bytes);
        self.ops.push(ForwardOp {
            start,
            len: bytes.len() as u32,
            point,
            kind,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The bytes of `op`.
    pub fn bytes_of(&self, op: &ForwardOp) -> &[u8] {
        &self.bytes[op.start as usize..(op.start + op.len) as usize]
    }

    /// Empties the batch for reuse, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ops.clear();
        self.texts.clear();
        self.binaries.clear();
        self.lent = None;
        self.tail.clear();
    }

    /// Drops the carried requests' buffer once a deep pipeline made it larger
    /// than `bytes_max`, and the tail once a large reply filled it, so an idle
    /// connection does not keep them.
    pub fn release_large_buffers(&mut self, bytes_max: usize) {
        if self.texts.capacity() * std::mem::size_of::<Carried<Request<'static>>>() > bytes_max {
            self.texts = Vec::new();
        }
        if self.tail.capacity() > bytes_max {
            self.tail = Vec::new();
        }
    }
}

/// A shard's replies to one batch: `bytes` cut at `ends` gives one fragment per op.
#[derive(Debug, Default)]
pub struct Replies {
    pub bytes: Vec<u8>,
    pub ends: Vec<u32>,
    /// The owner sent the start of the reply on the lent connection: `bytes`
    /// is what the socket did not take, the batch's `tail` included.
    pub sent_with_tail: bool,
}

impl Replies {
    /// Puts `bytes` in place of fragment `op`.
    pub fn replace(&mut self, op: usize, bytes: &[u8]) {
        let start = if op == 0 {
            0
        } else {
            self.ends[op - 1] as usize
        };
        let end = self.ends[op] as usize;
        self.bytes.splice(start..end, bytes.iter().copied());
        let shift = bytes.len() as i64 - (end - start) as i64;
        for e in &mut self.ends[op..] {
            *e = (*e as i64 + shift) as u32;
        }
    }

    pub fn fragment(&self, op: usize) -> &[u8] {
        let start = if op == 0 {
            0
        } else {
            self.ends[op - 1] as usize
        };
        &self.bytes[start..self.ends[op] as usize]
    }
}

#[derive(Debug)]
pub enum Ask {
    Batch(Batch),
    /// `flush_all [delay]` on this shard.
    Flush {
        delay_secs: i64,
    },
    /// This shard's counters for `stats`; with `oldest_access`, also when the
    /// item next to be reclaimed was last accessed (`stats items`' `age`).
    Stats {
        oldest_access: bool,
    },
    /// This shard's sockets for `stats conns`.
    Conns,
    /// This shard's `lru_crawler metadump` lines.
    Metadump,
    /// This shard's counted keys for `stats hotkeys`.
    HotKeys,
    /// `stats reset`.
    ResetStats,
    /// Send `node` (in `merge` mode) the keys this shard changed while it was
    /// unreachable; answered with [`Answer::Pushed`].
    PushHints {
        node: u32,
    },
    /// Drop every item this shard shares with `node` (its hints overflowed).
    DropShared {
        node: u32,
    },
    /// Drop the items this node no longer owns whose owners are all in
    /// `ready`; answered with [`Answer::Kept`].
    Release {
        ready: Vec<u32>,
    },
    /// Drop this shard's stale copies of the keys that moved to this node.
    DropGained,
    /// `cache_memlimit`: this shard's new share of memory.
    MemoryLimit {
        bytes: usize,
    },
}

#[derive(Debug)]
pub enum Answer {
    /// The replies, and the batch's buffers coming home.
    Replies {
        replies: Replies,
        batch: Batch,
    },
    Stats {
        shard: Box<ShardStats>,
        store: StoreStats,
        latency: Box<Latency>,
        /// In a cluster: client requests this shard forwarded to each node.
        forwarded_to: Vec<(u32, u64)>,
        /// When asked: `Store::oldest_access`.
        oldest_access: Option<u32>,
    },
    Conns(Vec<ConnView>),
    Metadump(Vec<u8>),
    HotKeys(Vec<HotKey>),
    Done,
    /// Whether every item pushed was acknowledged.
    Pushed(bool),
    /// How many items a release kept.
    Kept(u64),
}

/// A request to another shard; `slot` names the waiter on the sending shard.
#[derive(Debug)]
pub struct ToShard {
    pub slot: u32,
    pub ask: Ask,
}

#[derive(Debug)]
pub struct FromShard {
    pub slot: u32,
    pub answer: Answer,
}

/// How long a proposal may wait for its epoch to be decided.
pub const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a proposal that finds the control thread's queue full
/// ([`CONTROL_QUEUE_DEPTH`](crate::limits::CONTROL_QUEUE_DEPTH) inputs waiting).
pub const CONTROL_QUEUE_FULL: &[u8] = b"SERVER_ERROR the control queue is full; try again\r\n";

/// What reaches the control thread.
pub enum ControlInput {
    Message(Message<ClusterConfig>),
    /// Node `from` has found `ids` unreachable for at least the failover timeout.
    Suspicions {
        from: u32,
        ids: Vec<u32>,
    },
    /// Decide `value` at `epoch`; the answer is one reply line.
    Propose {
        epoch: Epoch,
        value: ClusterConfig,
        reply: Sender<Vec<u8>>,
    },
}

//! Requests this connection sends to other nodes of the cluster, and their
//! replies: the next owner is tried when one fails, times out or is
//! recovering, unless the request may already have taken effect.
//!
//! Does I/O: sends on the peer links and awaits their replies (and the
//! acknowledgements of writes applied here as primary).

use super::output::{Output, Piece};
use crate::cluster::ring::Owner;
use crate::cluster::wire::{self, PeerMode};
use crate::limits::{
    EPOCH_RETRIES_MAX, EPOCH_RETRY_PAUSE_MS, RECOVERING_PRIMARY_RETRIES_MAX,
    RECOVERING_PRIMARY_RETRY_PAUSE_MS,
};
use crate::runtime::cluster::peer::{Framing, LinkError, Pending, Reply};
use crate::runtime::cluster::ShardCluster;
use crate::runtime::ctx::ShardCtx;
use std::rc::Rc;

/// A request sent to another node, kept until its reply is in, so that it can
/// go to the next owner if this one fails.
pub(super) struct PeerOp {
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
    /// Sent only when its turn comes at `complete`, once `after` (if any) is
    /// settled: see [`ShardCluster::replica_barrier`].
    deferred: bool,
    after: Option<Pending>,
    pub(super) result: Vec<u8>,
    /// No owner answered.
    pub(super) unanswered: bool,
}

/// Whether a request sent to another node may go to the next owner when the
/// first may have received it (it timed out, or its connection broke after it
/// was sent): a read or a plain `set` may (done twice, it is the same write,
/// finished later); incr, append, cas, add, delete and the rest may not, and
/// their client is told the outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::runtime) enum Resend {
    Safe,
    OnlyIfNotSent,
}

/// What a request sent to another node is, for reading its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::runtime) enum PeerReply {
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

impl PeerOp {
    /// Sends the request to its current target.
    fn send(&self, cluster: &ShardCluster) -> Reply {
        cluster.forward_link(self.target).send_framed(
            PeerMode::Forward,
            self.shape.framing(),
            self.request.clone(),
        )
    }
}

impl Output {
    /// Sends a request to another node now; its reply is spliced in at `complete`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::runtime) fn forward_peer(
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
        // A request behind one that waits for a replicated item waits too:
        // requests to one owner arrive in the order they were made.
        let after = cluster.replica_barrier(target, key);
        let deferred = after.is_some() || self.deferred_targets.contains(&target);
        let reply = if deferred {
            if !self.deferred_targets.contains(&target) {
                self.deferred_targets.push(target);
            }
            None
        } else {
            Some(cluster.forward_link(target).send_framed(
                PeerMode::Forward,
                shape.framing(),
                request.clone(),
            ))
        };
        cluster.count_forwarded(target.node);
        self.peer_ops.push(PeerOp {
            key: key.to_vec(),
            write,
            request,
            shape,
            resend,
            on_failure,
            target,
            reply,
            deferred,
            after,
            result: Vec::new(),
            unanswered: false,
        });
        self.forwarded += 1;
        self.forwarded_values += 1;
    }

    /// Waits for the replies of other nodes, trying the next owner of a key
    /// whose node failed, timed out or is recovering; and for the replication
    /// of the writes applied here.
    pub(super) async fn complete_peers(&mut self, ctx: &ShardCtx) {
        let Some(cluster) = &ctx.cluster else {
            return;
        };
        for op in &mut self.peer_ops {
            settle_peer_op(cluster, op).await;
        }
        for ticket in &mut self.tickets {
            let ticket = ticket.take().expect("a ticket is settled once");
            self.tickets_ok.push(cluster.settle(ticket).await);
        }
    }
}

/// Waits for the reply to `op`, asking the next owner as long as the reply is
/// not one (see `Resend` and `PeerReply::is_usable`), and leaves the bytes to
/// splice in `op.result`.
async fn settle_peer_op(cluster: &Rc<ShardCluster>, op: &mut PeerOp) {
    let mut tried: Vec<Owner> = Vec::new();
    if op.deferred {
        if let Some(after) = op.after.take() {
            after.settled(cluster.node.peer_timeout).await;
        }
        op.reply = Some(op.send(cluster));
    }
    let mut reply = op.reply.take();
    let mut epoch_retries = 0;
    let mut recovering_retries = 0;
    // A write sent to an owner that then did not answer may have been
    // applied there, and only its answer lost.
    let mut maybe_applied = false;
    loop {
        let link = cluster.forward_link(op.target);
        let answer = match reply.take() {
            Some(reply) => link.wait(reply).await,
            None => Err(LinkError::NotSent),
        };
        // A write the owner may have applied goes to another owner only
        // if doing it twice is doing it once (see `Resend`); the owner
        // replicates what it applied.
        if let Err(e) = &answer {
            maybe_applied |= op.write && e.outcome_unknown();
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
            if bytes.starts_with(wire::EPOCH_MISMATCH_PREFIX) && epoch_retries < EPOCH_RETRIES_MAX {
                epoch_retries += 1;
                glommio::timer::sleep(std::time::Duration::from_millis(EPOCH_RETRY_PAUSE_MS)).await;
                reply = Some(op.send(cluster));
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
        let recovering = matches!(&answer, Ok(bytes) if bytes == wire::RECOVERING);
        tried.push(op.target);
        let view = cluster.view();
        match cluster.next_candidate(&view, &op.key, op.write, &tried) {
            Some(next) => {
                op.target = next;
                reply = Some(op.send(cluster));
            }
            // The owner refused because it recovers or settles, and no other
            // may take the request: it is asked again a moment later.
            None if recovering && recovering_retries < RECOVERING_PRIMARY_RETRIES_MAX => {
                recovering_retries += 1;
                tried.pop();
                glommio::timer::sleep(std::time::Duration::from_millis(
                    RECOVERING_PRIMARY_RETRY_PAUSE_MS,
                ))
                .await;
                reply = Some(op.send(cluster));
            }
            // A write that an owner may have applied, and that no other
            // owner may take, is of unknown outcome, not refused.
            None if maybe_applied && op.shape == PeerReply::Whole => {
                op.result = wire::OUTCOME_UNKNOWN.to_vec();
                break;
            }
            None => {
                op.result = std::mem::take(&mut op.on_failure);
                op.unanswered = true;
                break;
            }
        }
    }
}

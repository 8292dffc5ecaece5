//! Where each keyed text or meta request runs: inline on this shard, batched
//! for the shard that owns its key, sent to the node that owns it, or refused.
//! A multi-key get is split by key and put back together in `Output`.
//!
//! Awaits nothing: requests for other shards and nodes are queued, and their
//! replies are waited for in `Output::complete`.

use super::output::{Output, ReplySize};
use super::peer_forward::{PeerReply, Resend};
use super::swallow_after;
use crate::cluster::wire;
use crate::engine;
use crate::protocol::text::{GetEnding, GetKind, Keys, Request, StoreMode};
use crate::runtime::cluster::{self, ConnMode, Role, Route};
use crate::runtime::ctx::{Placement, ShardCtx};
use crate::runtime::messages::Forward;
use crate::runtime::state::with_state;
use crate::storage::ttl::Clock;

/// Routes one keyed text or meta request: runs it here, batches it for another
/// shard, sends it to another node, or refuses it.
#[allow(clippy::too_many_arguments)]
pub(super) fn keyed(
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
    let Placement { route, point } = ctx.route(key, write, mode);
    match route {
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
        Route::Shard(shard, role) => {
            output.forward(shard, point, raw, Forward::Text(req, role), size)
        }
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

/// One `get`, `gets`, `gat` or `gats` (`req`) on a node of several shards or
/// in a cluster: each key is looked up where it lives, unless all of them
/// are this shard's.
pub(super) fn multi_get(
    ctx: &ShardCtx,
    output: &mut Output,
    req: &Request<'_>,
    mode: ConnMode,
    clock: &Clock,
) {
    let Request::Get {
        kind,
        exptime,
        keys,
        ending,
    } = *req
    else {
        unreachable!("not a get: {req:?}");
    };
    let write = ctx.cluster.is_some() && exptime.is_some();
    output.routes.clear();
    let mut all_mine = true;
    for key in keys.iter() {
        let placement = ctx.route(key, write, mode);
        all_mine &= placement.route == Route::Shard(ctx.id, Role::Plain);
        output.routes.push(placement);
    }
    let refused = output.routes.iter().find_map(|p| match p.route {
        Route::Refuse(refusal) => Some(refusal),
        _ => None,
    });
    let get = Get {
        kind,
        exptime,
        keys,
        ending,
    };
    if all_mine {
        with_state(|s| engine::execute(s, req, clock, &mut output.out));
    } else if let Some(refusal) = refused {
        // Only another node's requests are refused, one key at a time.
        refusal.write(&mut output.out);
    } else if ending == GetEnding::KeyTooLong {
        get_for_side_effects(ctx, output, get, clock);
    } else {
        get_where_owned(ctx, output, get, write, clock);
    }
}

/// The fields of a multi-key get.
#[derive(Clone, Copy)]
struct Get<'a> {
    kind: GetKind,
    exptime: Option<i64>,
    keys: Keys<'a>,
    ending: GetEnding,
}

/// A get that ends in a key too long: its keys are looked up for their side
/// effects only (see `GetEnding`); their values are dropped, here and remotely.
fn get_for_side_effects(ctx: &ShardCtx, output: &mut Output, get: Get<'_>, clock: &Clock) {
    let Get {
        kind,
        exptime,
        keys,
        ending,
    } = get;
    let mut dropped = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Placement { route, point } = output.routes[i];
        match route {
            Route::Shard(owner, _) if owner == ctx.id => {
                with_state(|s| engine::get_one(s, kind, exptime, key, clock, &mut dropped))
            }
            Route::Shard(owner, role) => output.forward_unanswered(
                owner,
                point,
                key,
                Forward::GetOne {
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
}

/// Looks up each key of a get where its route says, and marks the replies as
/// one retrieval (see `Output::end_retrieval`).
fn get_where_owned(ctx: &ShardCtx, output: &mut Output, get: Get<'_>, write: bool, clock: &Clock) {
    let Get {
        kind,
        exptime,
        keys,
        ending,
    } = get;
    let retrieval = output.begin_retrieval();
    for (i, key) in keys.iter().enumerate() {
        let Placement { route, point } = output.routes[i];
        match route {
            Route::Shard(owner, role) if owner == ctx.id => {
                get_one_here(ctx, output, kind, exptime, key, role, clock)
            }
            Route::Shard(owner, role) => output.forward(
                owner,
                point,
                key,
                Forward::GetOne {
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

/// One key of a multi-key get, owned by this shard.
fn get_one_here(
    ctx: &ShardCtx,
    output: &mut Output,
    kind: GetKind,
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
fn get_one_request(kind: GetKind, exptime: Option<i64>, key: &[u8]) -> Vec<u8> {
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

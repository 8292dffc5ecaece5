//! The request loop of a connection that speaks the binary protocol (does I/O).
//!
//! Like the text loop in `text`: key requests owned by this shard run inline,
//! the others are forwarded parsed ([`Forward::Binary`]) and their replies
//! spliced back in order; flush and stat concern every shard of the node.
//!
//! Ending a connection follows memcached 1.6.18: a bad magic byte closes it and
//! drops the replies of the read not yet written (memcached queues them and
//! never sends them); a malformed header is answered, after the earlier replies,
//! then the connection closes; `QUIT` answers (unless quiet) and closes.

use super::node_requests::node_view;
use super::output::{Output, ReplySize};
use super::peer_forward::{PeerReply, Resend};
use super::peer_requests::apply_binary_here;
use super::serve::{drain, drain_if_full, skip_data_block};
use super::After;
use crate::cli::FlushCommand;
use crate::engine::binary::{self as engine, StatGroup};
use crate::protocol::binary::{
    self, write_error, BinRequest, Command, ParseError, Status, StoreOp,
};
use crate::runtime::cluster::{ConnMode, Role, Route};
use crate::runtime::ctx::ShardCtx;
use crate::runtime::messages::{Ask, Forward};
use crate::runtime::state::{self, with_state};
use crate::runtime::stream::ClientStream;

/// Executes every complete binary request in `buf[*start..]`, advancing `*start`.
pub(super) async fn handle_buffer(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    buf: &[u8],
    start: &mut usize,
    swallow: &mut usize,
    output: &mut Output,
) -> After {
    loop {
        if *start == buf.len() {
            break;
        }
        let rest = &buf[*start..];
        let (req, used) = match binary::parse(rest, &ctx.limits) {
            Ok(parsed) => parsed,
            Err(ParseError::Incomplete) => break,
            Err(ParseError::BadMagic) => {
                crate::runtime::protocol_errors::binary("not a request magic byte");
                let _ = output.complete(ctx).await;
                output.out.clear();
                return After::Close;
            }
            Err(ParseError::Fatal { header, status }) => {
                crate::runtime::protocol_errors::binary(&format!("answered {status:?}"));
                let _ = output.complete(ctx).await;
                write_error(&mut output.out, &header, status);
                return After::Close;
            }
        };
        let raw = &rest[..used];
        if let Some(key) = req.command.key() {
            keyed(ctx, output, &req, raw, key);
        } else if let After::Close = node_request(ctx, &req, output).await {
            *start += used;
            return After::Close;
        } else if matches!(req.command, Command::Noop) {
            // memcached writes out every reply up to a NOOP before it reads on, so
            // they reach the client even if a later packet closes the connection.
            output.offer_socket(stream);
            if drain(ctx, stream, output).await.is_err() {
                return After::Close;
            }
        }
        *start += used;
        if let Command::TooLarge { swallow_bytes, .. } | Command::Unknown { swallow_bytes } =
            req.command
        {
            skip_data_block(buf, start, swallow, swallow_bytes);
        }
        if drain_if_full(ctx, stream, output).await.is_err() {
            return After::Close;
        }
    }
    output.offer_socket(stream);
    if output.complete(ctx).await.is_err() {
        return After::Close;
    }
    After::Continue
}

/// A request with a key: run here when this shard owns it, otherwise forwarded
/// to its shard or node, or refused.
fn keyed(ctx: &ShardCtx, output: &mut Output, req: &BinRequest<'_>, raw: &[u8], key: &[u8]) {
    let write = ctx.cluster.is_some() && !matches!(req.command, Command::Get { .. });
    let placement = ctx.route(key, write, ConnMode::Client);
    match placement.route {
        Route::Shard(owner, Role::Plain) if owner == ctx.id => {
            let clock = ctx.node.clock();
            with_state(|s| engine::execute(s, req, &clock, &mut output.out));
        }
        Route::Shard(owner, role) if owner == ctx.id => {
            let clock = ctx.node.clock();
            apply_binary_here(ctx, output, req, key, role, &clock);
        }
        // Binary requests are not told apart by reply size: any may be a get.
        Route::Shard(owner, role) => output.forward(
            owner,
            placement.point,
            raw,
            Forward::Binary(req, role),
            ReplySize::MayCarryValue,
        ),
        // A request refused as too large before its body was read is
        // answered here (see `conn::routing::keyed`).
        Route::Peer(_) if matches!(req.command, Command::TooLarge { .. }) => {
            let clock = ctx.node.clock();
            with_state(|s| engine::execute(s, req, &clock, &mut output.out));
        }
        Route::Peer(target) => {
            let mut request = raw.to_vec();
            request.extend_from_slice(&crate::cluster::wire::BINARY_NOOP_REQUEST);
            let mut on_failure = Vec::new();
            write_error(&mut on_failure, &req.header, Status::TemporaryFailure);
            let resend = match req.command {
                Command::Store {
                    op: StoreOp::Set, ..
                } if req.header.cas == 0 => Resend::Safe,
                _ if write => Resend::OnlyIfNotSent,
                _ => Resend::Safe,
            };
            output.forward_peer(
                ctx,
                target,
                key,
                write,
                request,
                PeerReply::Binary,
                resend,
                on_failure,
            );
        }
        Route::Refuse(_) => write_error(&mut output.out, &req.header, Status::NotMyVbucket),
    }
}

/// Requests without a key: answered here, in order after every earlier reply.
async fn node_request(ctx: &ShardCtx, req: &BinRequest<'_>, output: &mut Output) -> After {
    let h = &req.header;
    match req.command {
        Command::Noop => engine::write_done(&mut output.out, h, binary::Quiet::No),
        Command::Version => engine::write_version(&mut output.out, h),
        Command::Unknown { .. } => write_error(&mut output.out, h, Status::UnknownCommand),
        Command::Quit { quiet } => {
            if output.complete(ctx).await.is_err() {
                return After::Close;
            }
            engine::write_done(&mut output.out, h, quiet);
            return After::Close;
        }
        Command::Flush { exptime, quiet } => {
            // A flush sees the effects of every request before it.
            if output.complete(ctx).await.is_err() {
                return After::Close;
            }
            if ctx.node.config.flush == FlushCommand::Refused {
                // memcached -F: counted, refused with an auth error even when quiet.
                with_state(|s| s.stats.cmd_flush += 1);
                write_error(&mut output.out, h, Status::AuthError);
                return After::Continue;
            }
            let delay_secs = exptime as i64;
            ctx.ask_all(|| Ask::Flush { delay_secs }).await;
            let clock = ctx.node.clock();
            with_state(|s| {
                crate::engine::flush(s, delay_secs, &clock);
                s.stats.cmd_flush += 1;
            });
            engine::write_done(&mut output.out, h, quiet);
        }
        Command::Stat { group } => {
            if output.complete(ctx).await.is_err() {
                return After::Close;
            }
            match engine::stat_group(group) {
                StatGroup::Reset => {
                    ctx.ask_all(|| Ask::ResetStats).await;
                    state::reset_stats();
                    engine::write_stat(&mut output.out, h, b"", b"");
                }
                StatGroup::Text(group) => {
                    let clock = ctx.node.clock();
                    let view = node_view(ctx, &clock, group).await;
                    let mut text = Vec::new();
                    crate::engine::write_stats(group, &view, &mut text);
                    engine::write_stats_from_text(&mut output.out, h, &text);
                }
                StatGroup::DetailDump => {
                    engine::write_stat(&mut output.out, h, b"detailed", b"END\r\n");
                    engine::write_stat(&mut output.out, h, b"", b"");
                }
                StatGroup::DetailSwitch => engine::write_stat(&mut output.out, h, b"", b""),
                StatGroup::NotFound => write_error(&mut output.out, h, Status::KeyNotFound),
            }
        }
        Command::Get { .. }
        | Command::Touch { .. }
        | Command::Store { .. }
        | Command::TooLarge { .. }
        | Command::Delete { .. }
        | Command::Arith { .. } => unreachable!("a key request is routed by its key"),
    }
    After::Continue
}

//! The text and meta request loop: takes each complete request from what was
//! read, answers the lines that are not commands of the text protocol (another
//! node's `rc` lines and binary requests, `config get cluster`), and hands the
//! rest to routing (keyed requests) or to the whole node.
//!
//! Does I/O: waits for other shards' and nodes' answers, and writes out the
//! gathered replies when they reach a bound.

use super::node_requests::{node_request, single_node_config, write_single_node_stats};
use super::output::{Output, ReplySize};
use super::peer_requests::{mode_may_be_stale, peer_binary_request, peer_line};
use super::routing::{keyed, multi_get};
use super::serve::{drain_if_full, skip_data_block};
use super::{swallow_after, After};
use crate::cluster::auth::Standing;
use crate::cluster::seal::Sealing;
use crate::cluster::wire;
use crate::engine::{self, reply, Step};
use crate::protocol::text::Request;
use crate::protocol::{self, ParseError};
use crate::runtime::cluster::{self, ConnMode};
use crate::runtime::ctx::ShardCtx;
use crate::runtime::state::with_state;
use crate::runtime::stream::ClientStream;
use crate::storage::ttl::Clock;

/// Longest `config get cluster` line waited for before the parser takes it.
const CONFIG_GET_LINE_LEN_MAX: usize = 64;

/// What the text loop knows of its connection besides the bytes.
pub(super) struct TextConn<'m> {
    pub(super) mode: &'m mut ConnMode,
    /// Whether the connection has passed the members-only handshake.
    pub(super) standing: &'m mut Standing,
    /// Set when it just passed: the keys that seal the connection from the
    /// next read on (see `serve`).
    pub(super) sealing: &'m mut Option<Sealing>,
    /// The address it comes from, for the log.
    pub(super) peer_ip: &'m str,
    /// The address it came in on, which a one-node view names.
    pub(super) local: Option<std::net::SocketAddr>,
    /// A peer's connection opened across a pause of this node (see
    /// `ClusterNode::opened_across_pause`).
    pub(super) suspect: bool,
}

/// What the text loop does once a line or request has been looked at.
pub(super) enum Flow {
    /// The rest of the line or request has yet to arrive.
    Incomplete,
    /// `used` bytes were answered; the next request follows at once.
    Next(usize),
    /// `used` bytes were refused, and `data_block` bytes after them are skipped.
    Skip { used: usize, data_block: usize },
    /// A request of `used` bytes ran: its data block, if any, is skipped, and
    /// the gathered replies are written out if they reach a bound.
    Ran {
        used: usize,
        data_block: Option<usize>,
    },
    /// `used` bytes are taken, and the loop ends with `after`.
    Stop { used: usize, after: After },
}

/// Executes every complete request in `buf[*start..]`, advancing `*start`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn handle_buffer(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    buf: &[u8],
    start: &mut usize,
    swallow: &mut usize,
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> After {
    loop {
        if *start == buf.len() {
            break;
        }
        let rest = &buf[*start..];
        let flow = match special_line(ctx, rest, output, conn).await {
            Some(flow) => flow,
            None => parse_and_run(ctx, rest, output, conn).await,
        };
        match flow {
            Flow::Incomplete => break,
            Flow::Next(used) => *start += used,
            Flow::Skip { used, data_block } => {
                *start += used;
                skip_data_block(buf, start, swallow, data_block);
            }
            Flow::Ran { used, data_block } => {
                *start += used;
                if let Some(swallow_bytes) = data_block {
                    skip_data_block(buf, start, swallow, swallow_bytes);
                }
                if drain_if_full(ctx, stream, output).await.is_err() {
                    return After::Close;
                }
            }
            Flow::Stop { used, after } => {
                *start += used;
                return after;
            }
        }
    }
    output.offer_socket(stream);
    if output.complete(ctx).await.is_err() {
        return After::Close;
    }
    After::Continue
}

/// Serves a line that is not a command of the text protocol: another node's
/// `rc` line or binary request, or `config get cluster`. `None`: `rest`
/// starts with an ordinary request.
async fn special_line(
    ctx: &ShardCtx,
    rest: &[u8],
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> Option<Flow> {
    if let (Some(cluster), true) = (&ctx.cluster, rest.starts_with(wire::PEER_LINE_PREFIX)) {
        return Some(peer_line(ctx, cluster, rest, output, conn).await);
    }
    if rest.starts_with(b"config get cluster") {
        if let Some(flow) = config_get_cluster(ctx, rest, output, conn.local) {
            return Some(flow);
        }
    }
    if let (ConnMode::Peer { .. }, Some(&protocol::binary::REQUEST_MAGIC)) =
        (*conn.mode, rest.first())
    {
        // A binary request another node forwarded, ended by a binary NOOP.
        return Some(
            match peer_binary_request(ctx, output, *conn.mode, conn.suspect, rest) {
                Some(used) => Flow::Next(used),
                None => Flow::Incomplete,
            },
        );
    }
    None
}

/// ElastiCache-style auto-discovery: the shard endpoints, so a ketama client
/// reaches every key's primary with no hop. `None`: the line is another
/// (`config get cluster...`), for the parser.
fn config_get_cluster(
    ctx: &ShardCtx,
    rest: &[u8],
    output: &mut Output,
    local: Option<std::net::SocketAddr>,
) -> Option<Flow> {
    let Some(nl) = memchr::memchr(b'\n', rest) else {
        return (rest.len() < CONFIG_GET_LINE_LEN_MAX).then_some(Flow::Incomplete);
    };
    let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
    if line != b"config get cluster" {
        return None;
    }
    let config = match &ctx.cluster {
        Some(cluster) => cluster.view().config().clone(),
        None => single_node_config(ctx, local),
    };
    crate::cluster::discovery::encode_config_get_cluster(&config, &mut output.out);
    Some(Flow::Next(nl + 1))
}

/// Parses the request at the start of `rest` and runs it, or answers what
/// makes it no request.
async fn parse_and_run(
    ctx: &ShardCtx,
    rest: &[u8],
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> Flow {
    match protocol::parse(rest, &ctx.limits) {
        Ok((req, used)) => run_request(ctx, &req, &rest[..used], output, conn).await,
        Err(ParseError::Incomplete) => Flow::Incomplete,
        Err(ParseError::Invalid {
            reply,
            consumed,
            swallow_bytes,
        }) => {
            crate::runtime::protocol_errors::text(conn.peer_ip, &rest[..consumed], reply);
            output.out.extend_from_slice(reply);
            Flow::Skip {
                used: consumed,
                data_block: swallow_bytes,
            }
        }
        Err(ParseError::LineTooLong) => {
            crate::runtime::protocol_errors::line_too_long(conn.peer_ip);
            let _ = output.complete(ctx).await;
            Flow::Stop {
                used: 0,
                after: After::Close,
            }
        }
        Err(ParseError::Http) => {
            crate::runtime::protocol_errors::http(conn.peer_ip);
            // memcached closes at once, writing none of the replies queued
            // from this read (the requests before the line still take effect).
            let _ = output.complete(ctx).await;
            output.out.clear();
            Flow::Stop {
                used: 0,
                after: After::Close,
            }
        }
    }
}

/// Runs one parsed request (`raw`, its bytes): here, on the shard or node
/// that owns its key, or on every shard.
async fn run_request(
    ctx: &ShardCtx,
    req: &Request<'_>,
    raw: &[u8],
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> Flow {
    let used = raw.len();
    let clock = ctx.node.clock();
    let mode = *conn.mode;
    match *req {
        Request::Get { .. } if ctx.node.shards > 1 || ctx.cluster.is_some() => {
            multi_get(ctx, output, req, mode, &clock);
        }
        Request::Get { .. } => {
            with_state(|s| engine::execute(s, req, &clock, &mut output.out));
        }
        // Keyed requests go to their owner; `mn` is answered here, in order
        // with the replies spliced around it.
        Request::Meta(_)
        | Request::Store { .. }
        | Request::TooLarge { .. }
        | Request::Delete { .. }
        | Request::Arith { .. }
        | Request::Touch { .. } => match req.key() {
            Some(_) if conn.suspect && mode_may_be_stale(mode) && cluster::is_write(req) => {
                log::warn!("closing a connection from a peer opened across a pause of this node");
                let _ = output.complete(ctx).await;
                return Flow::Stop {
                    used: 0,
                    after: After::Close,
                };
            }
            Some(key) => {
                let size = if matches!(req, Request::Meta(_)) {
                    ReplySize::MayCarryValue
                } else {
                    ReplySize::Small
                };
                keyed(ctx, output, req, raw, key, size, mode, &clock);
            }
            None => {
                with_state(|s| engine::execute(s, req, &clock, &mut output.out));
            }
        },
        Request::Watch { args } => return watch(ctx, output, args, used).await,
        _ => return whole_node(ctx, req, used, &clock, output, conn).await,
    }
    Flow::Ran {
        used,
        data_block: swallow_after(req),
    }
}

/// `watch`: once every reply before it is in, the connection becomes a watcher.
async fn watch(ctx: &ShardCtx, output: &mut Output, args: &[u8], used: usize) -> Flow {
    if output.complete(ctx).await.is_err() {
        return Flow::Stop {
            used: 0,
            after: After::Close,
        };
    }
    match watch_request(ctx, args, !output.out.is_empty()) {
        Ok(watcher) => {
            output.out.extend_from_slice(reply::OK);
            Flow::Stop {
                used,
                after: After::Watch(watcher),
            }
        }
        Err(line) => {
            output.out.extend_from_slice(line);
            Flow::Next(used)
        }
    }
}

/// `watch [kinds]`: a new watcher, or memcached's refusal. Like memcached, a
/// connection with replies still to write cannot become a watcher.
fn watch_request(
    ctx: &ShardCtx,
    args: &[u8],
    replies_pending: bool,
) -> Result<std::sync::Arc<crate::runtime::watch::Watcher>, &'static [u8]> {
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

/// A request for the whole node, which sees the effects of every request
/// before it.
async fn whole_node(
    ctx: &ShardCtx,
    req: &Request<'_>,
    used: usize,
    clock: &Clock,
    output: &mut Output,
    conn: &mut TextConn<'_>,
) -> Flow {
    if output.complete(ctx).await.is_err() {
        return Flow::Stop {
            used: 0,
            after: After::Close,
        };
    }
    if let Request::Stats { group: b"cluster" } = *req {
        if ctx.cluster.is_none() {
            let config = single_node_config(ctx, conn.local);
            write_single_node_stats(&config, &mut output.out);
            return Flow::Next(used);
        }
    }
    if let Step::Close = node_request(ctx, req, clock, &mut output.out, *conn.mode).await {
        return Flow::Stop {
            used,
            after: After::Close,
        };
    }
    Flow::Ran {
        used,
        data_block: swallow_after(req),
    }
}

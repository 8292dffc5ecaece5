//! The read loop of one client connection: reads into a buffer that grows up
//! to the largest request accepted, hands what is read to the text or binary
//! request loop, and writes the replies of each read with one call.
//!
//! Does I/O: reads and writes the client's socket.

use super::output::Output;
use super::text::{self, TextConn};
use super::After;
use crate::cli::Protocol;
use crate::cluster::auth::{self, Standing};
use crate::cluster::seal::Sealing;
use crate::engine::watch::CloseReason;
use crate::limits::{
    ITEM_SIZE_MAX_MAX_BYTES, LINE_LEN_MAX, MULTIGET_LINE_LEN_MAX, READ_BUFFER_KEEP_BYTES,
    READ_CHUNK_BYTES,
};
use crate::protocol;
use crate::runtime::cluster::ConnMode;
use crate::runtime::conns::{self, Registration};
use crate::runtime::ctx::ShardCtx;
use crate::runtime::sealed::Sealed;
use crate::runtime::state::with_state;
use crate::runtime::stream::ClientStream;
use crate::runtime::tls::TlsStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Which protocol a connection speaks, known from its first byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Undecided,
    Text,
    Binary,
}

/// Whether a connection may run commands yet (`-Y`, `-S`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Required,
    /// A plain connection to a cluster node's TLS port: only a member (which
    /// opens with the cluster's handshake) may use it.
    MembersOnly,
    Done,
}

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a connection has read and not yet used.
struct Input {
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet used.
    start: usize,
    end: usize,
    /// Bytes of a skipped data block still to arrive.
    swallow: usize,
    /// The most `buf` grows to: the largest item, and a multi-key get line.
    max_bytes: usize,
}

/// A request larger than any the parser accepts.
struct RequestTooLarge;

impl Input {
    fn new(ctx: &ShardCtx) -> Input {
        let max_bytes = ctx
            .node
            .config
            .item_size_max_bytes
            .min(ITEM_SIZE_MAX_MAX_BYTES)
            + MULTIGET_LINE_LEN_MAX;
        Input {
            buf: vec![0u8; READ_CHUNK_BYTES],
            start: 0,
            end: 0,
            swallow: 0,
            max_bytes,
        }
    }

    /// Makes room for the next read: starts over once everything read was
    /// used, else moves what is left to the front, else grows the buffer.
    fn make_room(&mut self) -> Result<(), RequestTooLarge> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUFFER_KEEP_BYTES {
                self.buf.truncate(READ_CHUNK_BYTES);
                self.buf.shrink_to_fit();
            }
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < self.max_bytes {
                let grown = (self.buf.len() * 2).min(self.max_bytes);
                self.buf.resize(grown, 0);
            } else {
                // The parser bounds lines and items below this size; a full
                // buffer here means a request larger than any it accepts.
                return Err(RequestTooLarge);
            }
        }
        Ok(())
    }

    /// Takes in `n` bytes just read, skipping what is left of a data block.
    fn received(&mut self, n: usize) {
        self.end += n;
        if self.swallow > 0 {
            let skip = self.swallow.min(self.end - self.start);
            self.start += skip;
            self.swallow -= skip;
        }
    }
}

/// What the read loop keeps of its connection from one read to the next.
struct Session {
    wire: Wire,
    mode: ConnMode,
    client_auth: ClientAuth,
    /// Every connection starts a stranger: its `rc` lines are answered `ERROR`
    /// until it passes the members-only handshake.
    standing: Standing,
    /// The frame keys of a connection that just passed the handshake, until
    /// the stream is sealed with them.
    sealing: Option<Sealing>,
    peer_ip: String,
    /// With `accepted_ms`: whether the connection was opened across a pause
    /// of this node (see `ClusterNode::opened_across_pause`).
    pauses_at_start: u64,
    accepted_ms: u64,
}

impl Session {
    fn new(ctx: &ShardCtx, peer: Option<std::net::SocketAddr>) -> Session {
        Session {
            // -B ascii or binary fixes the protocol; by default the first byte decides.
            wire: match ctx.node.config.protocol {
                Protocol::Auto => Wire::Undecided,
                Protocol::Ascii => Wire::Text,
                Protocol::Binary => Wire::Binary,
            },
            mode: ConnMode::Client,
            // -Y, -S: nothing runs until the connection has authenticated.
            client_auth: if ctx.node.ascii_auth.is_some() || ctx.node.sasl_users.is_some() {
                ClientAuth::Required
            } else {
                ClientAuth::Done
            },
            standing: Standing::Stranger,
            sealing: None,
            peer_ip: peer.map_or_else(|| "an unknown address".to_string(), |a| a.ip().to_string()),
            pauses_at_start: ctx.cluster.as_ref().map_or(0, |c| c.node.pauses_noticed()),
            accepted_ms: ctx.cluster.as_ref().map_or(0, |c| c.node.clock_ms()),
        }
    }

    /// Whether this is a peer's connection opened across a pause of this node.
    fn suspect(&self, ctx: &ShardCtx) -> bool {
        ctx.cluster.as_ref().is_some_and(|cluster| {
            cluster
                .node
                .opened_across_pause(self.accepted_ms, self.pauses_at_start)
        })
    }

    /// As memcached does, the first byte of a connection decides its protocol for good.
    fn decide_wire(&mut self, input: &Input) {
        if self.wire == Wire::Undecided && input.end > input.start {
            self.wire = if input.buf[input.start] == protocol::binary::REQUEST_MAGIC {
                Wire::Binary
            } else {
                Wire::Text
            };
        }
    }
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
    let mut input = Input::new(ctx);
    let mut output = Output::new(ctx.node.shards);
    output.cfd = stream.raw_fd() as u64;
    let mut session = Session::new(ctx, peer);
    // `-Z` on a cluster node: the first byte tells a TLS client from a peer.
    let mut undecided_tls = ctx.node.tls.clone().filter(|_| ctx.cluster.is_some());
    let reason = loop {
        if input.make_room().is_err() {
            break CloseReason::Error;
        }
        let n = match stream.read(&mut input.buf[input.end..]).await {
            Ok(0) => break CloseReason::Normal,
            Err(e) => {
                if matches!(stream, ClientStream::Sealed(_))
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    // A member's frame failed its MAC, or was past the bound.
                    log::warn!(
                        "closing a member's connection from {}: {e}",
                        session.peer_ip
                    );
                }
                break CloseReason::Error;
            }
            Ok(n) => n,
        };
        if let Some(config) = undecided_tls.take() {
            let received = &input.buf[input.end..input.end + n];
            if received[0] == TLS_HANDSHAKE_RECORD {
                match TlsStream::with_received(stream, config, received) {
                    Ok(tls) => stream = ClientStream::Tls(Box::new(tls)),
                    Err(_) => return CloseReason::Error,
                }
                continue;
            }
            session.client_auth = ClientAuth::MembersOnly;
        }
        let read = serve_read(
            ctx,
            &mut stream,
            listed,
            &mut session,
            &mut input,
            &mut output,
            n,
        );
        if let ControlFlow::Break(reason) = read.await {
            break reason;
        }
        if let Some(sealing) = session.sealing.take() {
            // The `OK` that ends the handshake went out plain; a member waits
            // for it, so nothing it sent may be read yet.
            if input.start != input.end {
                break CloseReason::Error;
            }
            stream = ClientStream::Sealed(Box::new(Sealed::new(stream, sealing)));
        }
    };
    if let (Standing::Challenged { who, .. }, Some(cluster)) = (&session.standing, &ctx.cluster) {
        // A node that finds this node's proof wrong hangs up without its own:
        // it holds another secret.
        let peer_ip = &session.peer_ip;
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

/// Serves the requests completed by a read of `n` bytes and writes their
/// replies; breaks with the reason the connection closes, if it does.
async fn serve_read(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    listed: &Registration,
    session: &mut Session,
    input: &mut Input,
    output: &mut Output,
    n: usize,
) -> ControlFlow<CloseReason> {
    let read_at = Instant::now();
    listed.running(read_at);
    let watched = ctx.node.watchers.wanted();
    with_state(|s| {
        s.stats.bytes_read += n as u64;
        s.set_watched(watched, output.cfd);
    });
    let suspect = session.suspect(ctx);
    input.received(n);

    ctx.busy.set(ctx.busy.get() + 1);
    session.decide_wire(input);
    let after = run_requests(ctx, stream, listed, session, input, output, suspect).await;
    crate::runtime::state::record_latency(read_at.elapsed().as_micros() as u64);
    if watched != 0 {
        crate::runtime::watch::publish_pending(&ctx.node.watchers);
    }
    let written = flush(stream, output).await;
    let unused = &input.buf[input.start..input.end];
    listed.idle(conns::idle_state(unused, input.swallow, LINE_LEN_MAX));
    ctx.busy.set(ctx.busy.get() - 1);
    if written.is_err() {
        return ControlFlow::Break(CloseReason::Error);
    }
    if let After::Watch(watcher) = after {
        // As memcached, the rest of what the client sent is not read.
        crate::runtime::watch::serve_watcher(stream, &ctx.node.watchers, watcher).await;
        return ControlFlow::Break(CloseReason::Error);
    }
    if matches!(after, After::Close) {
        return ControlFlow::Break(CloseReason::Normal);
    }
    if ctx.node.stop.load(Ordering::Acquire) {
        return ControlFlow::Break(CloseReason::Shutdown);
    }
    ControlFlow::Continue(())
}

/// Runs every complete request in the input: authentication first (`-Y`),
/// then the binary or the text loop.
async fn run_requests(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    listed: &Registration,
    session: &mut Session,
    input: &mut Input,
    output: &mut Output,
    suspect: bool,
) -> After {
    let (buf, start, swallow) = (
        &input.buf[..input.end],
        &mut input.start,
        &mut input.swallow,
    );
    let mut after = After::Continue;
    let mut buf = buf;
    let mut member_line = false;
    match (
        session.client_auth,
        &ctx.node.ascii_auth,
        &ctx.node.sasl_users,
    ) {
        (ClientAuth::Done, _, _) => {}
        (ClientAuth::Required, _, Some(users)) => {
            after = sasl_authenticate(users, buf, start, output, &mut session.client_auth);
        }
        (client_auth, ascii_auth, _) => match member_handshake_line(ctx, buf, *start) {
            // Another node (or an admin) proves the cluster secret instead:
            // its handshake lines go to the text loop one at a time.
            Some(Ok(end)) => {
                buf = &buf[..end];
                member_line = true;
            }
            Some(Err(Incomplete)) => return After::Continue,
            None => match (client_auth, ascii_auth) {
                (ClientAuth::Required, Some(users)) => {
                    after =
                        authenticate(users, buf, start, swallow, output, &mut session.client_auth)
                }
                // A plain connection to a TLS port that is no member's:
                // closed unanswered, as a plain client of a TLS port is.
                _ => return After::Close,
            },
        },
    }
    let may_run = session.client_auth == ClientAuth::Done || member_line;
    let after = match (after, may_run, session.wire) {
        (After::Close, _, _) => After::Close,
        (After::Watch(_), _, _) => unreachable!("authentication does not watch"),
        (After::Continue, false, _) => After::Continue,
        (After::Continue, true, Wire::Binary) => {
            super::binary::handle_buffer(ctx, stream, buf, start, swallow, output).await
        }
        (After::Continue, true, Wire::Text | Wire::Undecided) => {
            let mut conn = TextConn {
                mode: &mut session.mode,
                suspect,
                standing: &mut session.standing,
                sealing: &mut session.sealing,
                peer_ip: &session.peer_ip,
                local: listed.listen_addr(),
            };
            text::handle_buffer(ctx, stream, buf, start, swallow, output, &mut conn).await
        }
    };
    if session.standing == Standing::Member {
        // A member passed the handshake: `-Y` asks nothing more of it.
        session.client_auth = ClientAuth::Done;
    }
    after
}

/// The end of a whole `rc hello` or `rc auth` line at `start`, on a cluster
/// node; `None` when the bytes there are not one.
fn member_handshake_line(
    ctx: &ShardCtx,
    buf: &[u8],
    start: usize,
) -> Option<Result<usize, Incomplete>> {
    let rest = &buf[start..];
    if ctx.cluster.is_none() || !auth::is_auth_line(rest) {
        return None;
    }
    let window = &rest[..rest.len().min(auth::AUTH_LINE_LEN_MAX)];
    Some(match memchr::memchr(b'\n', window) {
        Some(nl) => Ok(start + nl + 1),
        // The text loop closes a connection whose line runs past the bound.
        None if rest.len() >= auth::AUTH_LINE_LEN_MAX => Ok(buf.len()),
        None => Err(Incomplete),
    })
}

/// A line has yet to arrive whole.
struct Incomplete;

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

/// Answers the binary requests of a connection that has not authenticated
/// (`-S`, SASL PLAIN), until one authenticates it or one that may not run
/// yet closes it.
fn sasl_authenticate(
    users: &crate::protocol::ascii_auth::AuthFile,
    buf: &[u8],
    start: &mut usize,
    output: &mut Output,
    client_auth: &mut ClientAuth,
) -> After {
    use crate::protocol::sasl::{step, Step};
    while *start < buf.len() {
        match step(&buf[*start..], users, crate::engine::VERSION.as_bytes()) {
            Step::Incomplete => break,
            Step::Close { reply } => {
                output.out.extend_from_slice(&reply);
                return After::Close;
            }
            Step::Answer {
                reply,
                used,
                authenticated,
            } => {
                output.out.extend_from_slice(&reply);
                *start += used;
                if authenticated {
                    *client_auth = ClientAuth::Done;
                    break;
                }
            }
        }
    }
    After::Continue
}

/// Writes every gathered reply to the client with one call.
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
pub(in crate::runtime) fn skip_data_block(
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
pub(in crate::runtime) async fn drain_if_full(
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
pub(in crate::runtime) async fn drain(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    output: &mut Output,
) -> Result<(), ()> {
    output.complete(ctx).await?;
    flush(stream, output).await.map_err(|_| ())
}

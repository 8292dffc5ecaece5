//! One shard: a glommio executor on one core that owns a store, a listening
//! socket on the shared port, and channels to every other shard of the node.
//!
//! The store itself is in [`state`](super::state), reached through
//! [`with_state`].
//!
//! Top of a shard: may import every layer below it (`conn`, `ctx`, `cluster`,
//! `watch`, `uring` and the bottom layer); only `launch` imports it.

use super::cluster::{self, Role};
use super::conn;
use super::conns::{self, ConnState, Registration};
use super::ctx::ShardCtx;
use super::doorbell::Doorbell;
use super::gate::SendGate;
use super::messages::{Answer, Ask, Batch, ForwardKind, ForwardOp, FromShard, Replies, ToShard};
use super::state::{self, hot_keys, latency, reset_stats, with_state};
use super::stream::ClientStream;
use super::uring::{self, SocketRing};
use super::waiters::Watchdog;
use super::Node;
use crate::cli::SocketPath;
use crate::cluster::ring::{self, Ring};
use crate::engine::{self, ShardState};
use crate::limits::SHARD_ANSWER_TIMEOUT_SECS;
use crate::protocol::binary;
use crate::storage::ttl::Clock;
use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::net::TcpListener;
use glommio::Task;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The channel ends one shard holds, as made by the node before the shards start.
pub struct ShardLinks {
    /// `requests_to[j]`: requests from this shard to shard j (None for itself).
    pub requests_to: Vec<Option<SharedSender<ToShard>>>,
    pub requests_from: Vec<Option<SharedReceiver<ToShard>>>,
    pub answers_to: Vec<Option<SharedSender<FromShard>>>,
    pub answers_from: Vec<Option<SharedReceiver<FromShard>>>,
}

/// A started shard tells the node whether it is serving.
pub type Started = std::sync::mpsc::Sender<Result<u32, String>>;

/// The body of a shard's executor: set up, serve until the node stops, drain.
pub async fn run(id: u32, node: Arc<Node>, addr: SocketAddr, links: ShardLinks, started: Started) {
    state::install(id, &node);
    let listeners = match open_listeners(id, &node, addr) {
        Ok(listeners) => listeners,
        Err(message) => {
            let _ = started.send(Err(message));
            return;
        }
    };
    let connecting = start_connecting(links);
    let requests_to = connected(connecting.requests_to).await;
    let answers_to = connected(connecting.answers_to).await;
    let sockets = socket_ring(id, &node);
    let ctx = Rc::new(ShardCtx::new(id, &node, requests_to, sockets.clone()));
    let peer_tasks = serve_shards(
        &ctx,
        &sockets,
        connecting.requests_from,
        answers_to,
        connecting.answers_from,
    )
    .await;

    let driver = sockets.clone().map(|ring| drive_sockets(ring, &node));
    let accepting = start_accepting(listeners, &ctx, &sockets);
    let _ = started.send(Ok(id));
    // Shard 0 of a cluster node recovers what it missed while it was away, and
    // watches its peers (probes) and itself (pauses).
    let mut cluster_tasks = Vec::new();
    if let (Some(cluster), 0) = (&ctx.cluster, id) {
        cluster_tasks.push(glommio::spawn_local(cluster::watch(cluster.clone())));
    }

    serve_until_stopped(&ctx).await;
    // Stop accepting, then let connections finish the requests they have read.
    drop(accepting.main);
    drop(accepting.own);
    drop(accepting.also);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ctx.busy.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    drop(cluster_tasks);
    drop(peer_tasks);
    // The last replies may still be queued on the ring: submit them.
    drop(driver);
    if let Some(ring) = &sockets {
        ring.flush();
    }
}

/// The sockets one shard accepts clients on.
struct Listeners {
    /// The node's port, shared by every shard.
    main: Listening,
    /// The other addresses of a `-l` list, shared by every shard as the first.
    also: Vec<Listening>,
    /// With --shard-ports (or in a cluster), this shard's own port.
    own: Option<Listening>,
}

/// Opens this shard's listening sockets, or says why one could not be opened.
fn open_listeners(id: u32, node: &Node, addr: SocketAddr) -> Result<Listeners, String> {
    let main = listen(addr, super::Sharing::Shared)?;
    // The other addresses of a `-l` list, shared by every shard as the first.
    let mut also = Vec::with_capacity(node.listen_also.len());
    for &other in &node.listen_also {
        also.push(listen(other, super::Sharing::Shared)?);
    }
    // With --shard-ports, this shard's own port: a ketama client that knows the
    // shard endpoints sends each key straight to its owner.
    let own_addr = match (&node.cluster, node.config.shard_port_base) {
        (Some(cluster), _) => Some(cluster.own_addrs().1[id as usize]),
        (None, Some(base)) => Some(SocketAddr::new(addr.ip(), base + id as u16)),
        (None, None) => None,
    };
    let own = match own_addr {
        None => None,
        Some(own) => Some(listen(own, super::Sharing::Exclusive)?),
    };
    Ok(Listeners { main, also, own })
}

/// The ends of one shard's channels, each connecting in a task of its own.
struct Connecting {
    requests_from: Vec<Option<Task<ConnectedReceiver<ToShard>>>>,
    answers_from: Vec<Option<Task<ConnectedReceiver<FromShard>>>>,
    requests_to: Vec<Option<Task<ConnectedSender<ToShard>>>>,
    answers_to: Vec<Option<Task<ConnectedSender<FromShard>>>>,
}

/// Starts connecting every channel end of this shard.
///
/// Both ends of a channel must connect before either is used. Every end
/// starts connecting at once, so that no shard waits on one that is itself
/// waiting, and one pass of this executor completes every end whose peer
/// is there: with many more shards than CPUs, a shard is scheduled rarely,
/// and connecting its 2(N-1) ends one after another took minutes.
fn start_connecting(links: ShardLinks) -> Connecting {
    let requests_from: Vec<_> = links
        .requests_from
        .into_iter()
        .map(|r| r.map(|r| glommio::spawn_local(r.connect())))
        .collect();
    let answers_from: Vec<_> = links
        .answers_from
        .into_iter()
        .map(|r| r.map(|r| glommio::spawn_local(r.connect())))
        .collect();
    let requests_to: Vec<_> = links
        .requests_to
        .into_iter()
        .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
        .collect();
    let answers_to: Vec<_> = links
        .answers_to
        .into_iter()
        .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
        .collect();
    Connecting {
        requests_from,
        answers_from,
        requests_to,
        answers_to,
    }
}

/// Waits for each end to connect, in shard order (None for this shard itself).
async fn connected<T>(ends: Vec<Option<Task<T>>>) -> Vec<Option<T>> {
    let mut connected = Vec::with_capacity(ends.len());
    for end in ends {
        connected.push(match end {
            Some(s) => Some(s.await),
            None => None,
        });
    }
    connected
}

/// Starts the tasks that answer other shards' requests and take their answers.
///
/// Requests from shard j are answered on the answer channel to j; answers come
/// back on a separate channel, so a shard blocked sending an answer never
/// waits on a shard blocked sending a request (no cycle).
async fn serve_shards(
    ctx: &Rc<ShardCtx>,
    sockets: &Option<Rc<SocketRing>>,
    requests_from: Vec<Option<Task<ConnectedReceiver<ToShard>>>>,
    answers_to: Vec<Option<ConnectedSender<FromShard>>>,
    answers_from: Vec<Option<Task<ConnectedReceiver<FromShard>>>>,
) -> Vec<Task<()>> {
    let mut peer_tasks = Vec::new();
    for (from, (requests, answers)) in requests_from.into_iter().zip(answers_to).enumerate() {
        let (Some(requests), Some(answers)) = (requests, answers) else {
            continue;
        };
        let requests = requests.await;
        let ctx = ctx.clone();
        let ring = sockets.clone();
        peer_tasks.push(glommio::spawn_local(async move {
            let mut receiving = uring::Receiving::new(Doorbell::channel(from, false));
            while let Some(msg) = receive(&ring, &requests, &mut receiving).await {
                let answer = answer(&ctx, from as u32, msg.ask).await;
                if answers
                    .send(FromShard {
                        slot: msg.slot,
                        answer,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                ctx.node.doorbells[from].ring(Doorbell::channel(ctx.id as usize, true));
            }
        }));
    }
    for (from, answers) in answers_from.into_iter().enumerate() {
        let Some(answers) = answers else { continue };
        let answers = answers.await;
        let waiters = ctx.siblings.waiters.clone();
        let ring = sockets.clone();
        peer_tasks.push(glommio::spawn_local(async move {
            let mut receiving = uring::Receiving::new(Doorbell::channel(from, true));
            while let Some(msg) = receive(&ring, &answers, &mut receiving).await {
                waiters.complete(msg.slot, msg.answer);
            }
        }));
    }
    peer_tasks
}

/// The next message on a channel from another shard: with a socket ring, woken
/// by this shard's doorbell too (see [`SocketRing::receive`]).
async fn receive<T: Send>(
    ring: &Option<Rc<SocketRing>>,
    channel: &ConnectedReceiver<T>,
    receiving: &mut uring::Receiving,
) -> Option<T> {
    match ring {
        Some(ring) => ring.receive(channel, receiving).await,
        None => channel.recv().await,
    }
}

/// This shard's own io_uring for client sockets, when `--sockets uring` asks
/// for one and the kernel gives one.
fn socket_ring(id: u32, node: &Node) -> Option<Rc<SocketRing>> {
    match node.config.sockets {
        SocketPath::Glommio => None,
        SocketPath::Uring => match SocketRing::new(node.doorbells[id as usize].clone()) {
            Ok(ring) => Some(Rc::new(ring)),
            Err(e) => {
                if id == 0 {
                    log::warn!("no socket ring ({e}): client sockets go through glommio's");
                }
                None
            }
        },
    }
}

/// Starts the task that submits and completes the socket ring's work until
/// the node stops.
fn drive_sockets(ring: Rc<SocketRing>, node: &Arc<Node>) -> Task<()> {
    let node = node.clone();
    let spin = Duration::from_micros(node.config.spin_before_park_us);
    glommio::spawn_local(uring::drive(
        ring,
        move || node.stop.load(Ordering::Acquire),
        spin,
    ))
}

/// The tasks accepting clients on each of a shard's [`Listeners`].
struct Accepting {
    main: Task<()>,
    also: Vec<Task<()>>,
    own: Option<Task<()>>,
}

fn start_accepting(
    listeners: Listeners,
    ctx: &Rc<ShardCtx>,
    sockets: &Option<Rc<SocketRing>>,
) -> Accepting {
    let main = glommio::spawn_local(accept_loop(listeners.main, ctx.clone(), sockets.clone()));
    let also: Vec<_> = listeners
        .also
        .into_iter()
        .map(|l| glommio::spawn_local(accept_loop(l, ctx.clone(), sockets.clone())))
        .collect();
    let own = listeners
        .own
        .map(|l| glommio::spawn_local(accept_loop(l, ctx.clone(), sockets.clone())));
    Accepting { main, also, own }
}

/// Waits until the node stops, checking that other shards still answer.
async fn serve_until_stopped(ctx: &ShardCtx) {
    let id = ctx.id;
    let mut watchdog = Watchdog::new(Duration::from_secs(SHARD_ANSWER_TIMEOUT_SECS));
    while !ctx.node.stop.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        // A shard that never answers is hung: the supervisor stops the node.
        if let Some(slot) = watchdog.overdue(&ctx.siblings.waiters, std::time::Instant::now()) {
            panic!(
                "shard {id}: request {slot} to another shard unanswered for over \
                 {SHARD_ANSWER_TIMEOUT_SECS} s: a shard is hung"
            );
        }
    }
}

/// A listening socket and its entry in `stats conns`.
struct Listening {
    listener: TcpListener,
    listed: Registration,
}

/// A listening socket on `addr`, or the line that says why there is none.
/// It is listed in `stats conns` for as long as the [`Listening`] lives.
fn listen(addr: SocketAddr, sharing: super::Sharing) -> Result<Listening, String> {
    match super::listen_socket(addr, sharing) {
        Ok(fd) => {
            let fd = fd.into_raw_fd();
            let since = std::time::Instant::now();
            let listed =
                Registration::new(fd as u64, Some(addr), None, ConnState::Listening, since);
            // SAFETY: the descriptor is a listening TCP socket we own and hand over.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            Ok(Listening { listener, listed })
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "port {} on {} is already in use by another process: stop it or choose other ports",
            addr.port(),
            addr.ip()
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

/// How long a shard waits before accepting again after a failed accept.
const ACCEPT_RETRY_MS: u64 = 10;

/// Shards whose accepts fail (out of descriptors, most often): the node logs
/// the first failure and the recovery once, not every shard every retry.
static SHARDS_FAILING_TO_ACCEPT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// This shard's accepts started failing with `e`.
fn accept_failing(e: &dyn std::fmt::Display) {
    if SHARDS_FAILING_TO_ACCEPT.fetch_add(1, Ordering::AcqRel) == 0 {
        log::warn!("accepting connections failed: {e}; retrying every {ACCEPT_RETRY_MS} ms");
    }
}

/// This shard accepts again after [`accept_failing`].
fn accept_recovered() {
    if SHARDS_FAILING_TO_ACCEPT.fetch_sub(1, Ordering::AcqRel) == 1 {
        log::warn!("accepting connections again");
    }
}

async fn accept_loop(listening: Listening, ctx: Rc<ShardCtx>, sockets: Option<Rc<SocketRing>>) {
    // The entry stays listed while this loop runs.
    let Listening {
        listener,
        listed: _listed,
    } = listening;
    let listen_addr = listener.local_addr().ok();
    let mut failing = false;
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                if !failing {
                    failing = true;
                    accept_failing(&e);
                }
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        if failing {
            failing = false;
            accept_recovered();
        }
        let node = &ctx.node;
        let open = node.connections.fetch_add(1, Ordering::AcqRel);
        if open >= node.config.conn_limit {
            node.connections.fetch_sub(1, Ordering::AcqRel);
            with_state(|s| s.stats.rejected_connections += 1);
            glommio::spawn_local(conn::refuse(stream)).detach();
            continue;
        }
        let peer = stream.peer_addr().ok();
        // memcached's `listen_addr` is the address the connection reached.
        let local = stream.local_addr().ok().or(listen_addr);
        // A cluster node's ports also take its peers, which do not speak TLS:
        // the connection's first byte decides there (see `conn::serve`).
        let tls = node.tls.as_ref().filter(|_| ctx.cluster.is_none());
        let stream = match ClientStream::new(stream, sockets.as_ref(), tls) {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!(
                    "shard {}: taking a connection onto the socket ring: {e}",
                    ctx.id
                );
                node.connections.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
        };
        with_state(|s| {
            s.stats.curr_connections += 1;
            s.stats.total_connections += 1;
        });
        let ctx = ctx.clone();
        let listed = Registration::new(
            stream.raw_fd() as u64,
            peer,
            local,
            ConnState::NewCmd,
            std::time::Instant::now(),
        );
        glommio::spawn_local(async move {
            let cfd = stream.raw_fd() as u64;
            log_conn_event(&ctx, |log| log.conn_new(peer, cfd));
            let reason = conn::serve(stream, &ctx, peer, &listed).await;
            log_conn_event(&ctx, |log| log.conn_close(peer, cfd, reason));
            ctx.node.connections.fetch_sub(1, Ordering::AcqRel);
            with_state(|s| s.stats.curr_connections -= 1);
        })
        .detach();
    }
}

/// Writes a `watch connevents` line, when some watcher wants one.
fn log_conn_event(ctx: &ShardCtx, write: impl FnOnce(&mut crate::engine::watch::WatchLog)) {
    let wanted = ctx.node.watchers.wanted();
    if wanted & crate::engine::watch::CONNEVENTS == 0 {
        return;
    }
    with_state(|s| {
        s.watch.wanted = wanted;
        write(&mut s.watch);
    });
    super::watch::publish_pending(&ctx.node.watchers);
}

/// The reply to a request another shard sent here for a key this shard does
/// not own.
const MISROUTED: &[u8] = b"SERVER_ERROR key sent to the wrong shard\r\n";

/// Whether some shard of this process was sent a key it does not own: logged once.
static MISROUTED_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a key another shard (`from`) placed at ring `point` is this
/// shard's (`me`). Outside a cluster the ring never changes, so a key that is
/// not is a bug in the sender: the request is answered with an error rather
/// than applied, which would put the item where no later request looks. The
/// first one is logged. The point is the one the sender hashed the key to,
/// so nothing is hashed twice. `None` (in a cluster): nothing to check here.
fn owns(ring: &Ring, me: u32, point: Option<u32>, from: u32) -> bool {
    let Some(point) = point else { return true };
    let owner = ring.owner_of_point(point).shard;
    if owner == me {
        return true;
    }
    if !MISROUTED_LOGGED.swap(true, Ordering::Relaxed) {
        log::error!(
            "shard {from} sent shard {me} a key that shard {owner} owns; \
             answering it with an error (logged once)"
        );
    }
    false
}

/// A write applied as primary in a cluster, held for its acknowledgements,
/// and the reply to send if they do not come (empty: the text one).
type Held = (cluster::Ticket, Vec<u8>);

/// Sends the reply to a lone request, and the connection's `tail` after it,
/// on the connection `gate` lends (see `gate`); leaves in `replies` what the
/// socket did not take, for the connection to write.
fn send_on_lent(gate: &SendGate, replies: &mut Replies, tail: &[u8]) {
    let reply = replies.bytes.len();
    replies.bytes.extend_from_slice(tail);
    let sent = gate.send(&replies.bytes);
    if sent == 0 {
        replies.bytes.truncate(reply);
        return;
    }
    replies.bytes.drain(..sent);
    replies.ends[0] = replies.bytes.len() as u32;
    replies.sent_with_tail = true;
    with_state(|s| {
        s.stats.bytes_written += sent as u64;
        s.stats.forwarded_sent += 1;
    });
}

/// Serves a request from another shard of this node.
async fn answer(ctx: &ShardCtx, from: u32, ask: Ask) -> Answer {
    let clock = ctx.node.clock();
    match ask {
        Ask::Batch(mut batch) => {
            let mut replies = std::mem::take(&mut batch.reply_buffers);
            replies.bytes.clear();
            replies.ends.clear();
            replies.sent_with_tail = false;
            let mut tickets = Vec::new();
            with_state(|state| {
                state.stats.forwarded_in += batch.ops.len() as u64;
                state.set_watched(ctx.node.watchers.wanted(), batch.cfd);
                for (i, op) in batch.ops.iter().enumerate() {
                    if let Some(held) =
                        answer_op(ctx, state, &batch, op, from, &clock, &mut replies.bytes)
                    {
                        tickets.push((i, held));
                    }
                    replies.ends.push(replies.bytes.len() as u32);
                }
            });
            if let Some(cluster) = &ctx.cluster {
                for (op, (ticket, failure)) in tickets {
                    if !cluster.settle(ticket).await && !replies.fragment(op).is_empty() {
                        let failure = if failure.is_empty() {
                            crate::cluster::wire::NOT_ENOUGH_ACKS
                        } else {
                            &failure
                        };
                        replies.replace(op, failure);
                    }
                }
            }
            super::watch::publish_pending(&ctx.node.watchers);
            if let Some(gate) = batch.lent.take().filter(|_| batch.ops.len() == 1) {
                send_on_lent(&gate, &mut replies, &batch.tail);
            }
            batch.clear();
            Answer::Replies { replies, batch }
        }
        Ask::Flush { delay_secs } => {
            with_state(|s| engine::flush(s, delay_secs, &clock));
            Answer::Done
        }
        Ask::Stats { oldest_access } => with_state(|s| Answer::Stats {
            oldest_access: oldest_access
                .then(|| s.store.oldest_access(clock.rel_secs))
                .flatten(),
            shard: Box::new(s.stats),
            store: s.store.stats(),
            latency: Box::new(latency()),
            forwarded_to: ctx
                .cluster
                .as_ref()
                .map_or_else(Vec::new, |c| c.forwarded_to()),
        }),
        Ask::Conns => Answer::Conns(conns::views(std::time::Instant::now())),
        Ask::Metadump => Answer::Metadump(state::metadump(&ctx.node).await),
        Ask::HotKeys => Answer::HotKeys(hot_keys()),
        Ask::ResetStats => {
            reset_stats();
            Answer::Done
        }
        Ask::PushHints { node } => match &ctx.cluster {
            Some(c) => Answer::Pushed(c.push_hints(node, &clock).await),
            None => Answer::Pushed(true),
        },
        Ask::DropShared { node } => {
            if let Some(c) = &ctx.cluster {
                with_state(|s| cluster::drop_shared(c, s, node, &clock));
            }
            Answer::Done
        }
        Ask::Release { ready } => match &ctx.cluster {
            Some(c) => Answer::Kept(with_state(|s| cluster::release_items(c, s, &ready, &clock))),
            None => Answer::Kept(0),
        },
        Ask::DropGained => {
            if let Some(c) = &ctx.cluster {
                with_state(|s| cluster::drop_gained(c, s, &clock));
            }
            Answer::Done
        }
        Ask::MemoryLimit { bytes } => {
            with_state(|s| s.store.set_memory_limit(bytes));
            Answer::Done
        }
    }
}

/// Serves one request of a batch from shard `from`, writing its reply to `out`;
/// a write applied as primary is held for its acknowledgements.
fn answer_op(
    ctx: &ShardCtx,
    state: &mut ShardState,
    batch: &Batch,
    op: &ForwardOp,
    from: u32,
    clock: &Clock,
    out: &mut Vec<u8>,
) -> Option<Held> {
    let bytes = batch.bytes_of(op);
    let owned = owns(&ctx.node.ring, ctx.id, op.point, from);
    match op.kind {
        ForwardKind::Text { role, index } => {
            let req = batch.texts[index as usize].read(bytes);
            let key = req.key().expect("only keyed requests are forwarded");
            debug_assert_point(op.point, key);
            if !owned {
                out.extend_from_slice(MISROUTED);
                return None;
            }
            match &ctx.cluster {
                Some(c) if role != Role::Plain => {
                    cluster::apply(c, state, &req, key, role, clock, out).map(|t| (t, Vec::new()))
                }
                _ => {
                    engine::execute(state, &req, clock, out);
                    None
                }
            }
        }
        ForwardKind::Binary { role, index } => {
            let req = batch.binaries[index as usize].read(bytes);
            let key = req.command.key().expect("only key requests are forwarded");
            debug_assert_point(op.point, key);
            if !owned {
                binary::write_error(out, &req.header, binary::Status::InternalError);
                return None;
            }
            match &ctx.cluster {
                Some(c) if role != Role::Plain => {
                    let ticket = cluster::apply_binary(c, state, &req, key, role, clock, out);
                    let mut failure = Vec::new();
                    binary::write_error(
                        &mut failure,
                        &req.header,
                        binary::Status::TemporaryFailure,
                    );
                    ticket.map(|t| (t, failure))
                }
                _ => {
                    engine::binary::execute(state, &req, clock, out);
                    None
                }
            }
        }
        ForwardKind::GetOne {
            kind,
            exptime,
            role,
        } => {
            debug_assert_point(op.point, bytes);
            if !owned {
                out.extend_from_slice(MISROUTED);
                return None;
            }
            match &ctx.cluster {
                Some(c) if role != Role::Plain => {
                    cluster::apply_get_one(c, state, kind, exptime, bytes, role, clock, out)
                        .map(|t| (t, Vec::new()))
                }
                _ => {
                    engine::get_one(state, kind, exptime, bytes, clock, out);
                    None
                }
            }
        }
    }
}

/// Checks, in debug builds, that the point carried with `key` is its own:
/// the check of ownership trusts it.
fn debug_assert_point(point: Option<u32>, key: &[u8]) {
    if let Some(point) = point {
        debug_assert_eq!(
            ring::key_point(key),
            point,
            "a key carried another key's point"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_shards() -> Ring {
        Ring::single_node(&["127.0.0.1:7001".into(), "127.0.0.1:7002".into()], 160)
    }

    #[test]
    fn a_shard_refuses_a_key_another_shard_owns() {
        let ring = two_shards();
        let key = (0..)
            .map(|i| format!("key{i}"))
            .find(|k| ring.owner(k.as_bytes()).shard == 1)
            .expect("some key is shard 1's");
        let point = ring::key_point(key.as_bytes());
        assert!(owns(&ring, 1, Some(point), 0));
        // In release builds too: the check is no debug assertion.
        assert!(!owns(&ring, 0, Some(point), 1));
    }

    #[test]
    fn a_request_placed_by_a_cluster_is_not_checked_here() {
        assert!(owns(&two_shards(), 0, None, 1));
    }
}

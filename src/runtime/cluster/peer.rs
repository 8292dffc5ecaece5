//! Links from one shard to the shards of other nodes: TCP connections per
//! (this shard, remote shard), opened on first use, each carrying requests in
//! the order they were sent and handing back each reply to its sender. A shard
//! keeps two per remote shard (see `ShardCluster::forward_links`): one for the
//! client requests it forwards, one for what the receiver applies without
//! waiting (replicated items, copies, merges, node-wide requests).
//!
//! A request is queued with [`Link::send`], which returns a [`Reply`] to await.
//! The link's task writes everything queued with one call (each request with
//! its `rc` mode line when the mode changes, and its `mn`), reads replies, cuts
//! them with `cluster::wire::scan_reply` and completes the senders in order. A
//! link that fails (refused, reset, closed, garbage, or aborted by a sender whose
//! wait timed out) fails every request on it and marks its node TKO: the node's
//! shards skip it until a probe finds it answering again.

use super::node::ClusterNode;
use crate::cluster::ring::Owner;
use crate::cluster::wire::{self, PeerMode, Scan};
use crate::limits::PEER_LINK_REQUESTS_MAX;
use crate::runtime::auth::{handshake, AuthFailure};
use crate::runtime::sealed::Sealed;
use crate::runtime::stream::ClientStream;
use crate::runtime::uring::SocketRing;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::Task;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A connection from `local` to `addr`, being made (see `runtime::connect_from`).
///
/// Closed, it is reset rather than shut down: the requests on it that this
/// node gave up on (at a timeout, or after a pause) go with it. Shut down, the
/// kernel would go on resending them, and behind a partition that heals they
/// would reach the other node seconds after their clients were answered, and
/// be applied there.
fn connect(local: Option<std::net::IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{setsockopt, sockopt};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = crate::runtime::connect_from(local, addr)?;
    let reset = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&fd, sockopt::Linger, &reset)?;
    // SAFETY: a TCP socket we own, handed over whole.
    Ok(unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) })
}

/// A connection to another node, past the handshake: every frame on it
/// carries a MAC (`cluster::seal`). On the shard's socket ring when the link
/// has one, as client connections are.
type PeerStream = Sealed<ClientStream>;

/// Passes the members-only handshake (`cluster::auth`) on a connection just
/// opened to another node, and seals it; a peer that fails it is logged once,
/// at warn. Nothing is sent on a connection before it passes, so a failure
/// means nothing was sent.
async fn authenticate(
    node: &ClusterNode,
    mut stream: TcpStream,
    addr: SocketAddr,
    sockets: Option<&Rc<SocketRing>>,
) -> Result<PeerStream, LinkError> {
    let who = node.me.to_string();
    match handshake(&mut stream, &node.secret, &who).await {
        Ok(sealing) => {
            node.auth_passed(&addr.to_string());
            let stream = ClientStream::new(stream, sockets, None).map_err(|e| {
                log::debug!("connection to {addr}: {e}");
                LinkError::NotSent
            })?;
            Ok(Sealed::new(stream, sealing))
        }
        Err(AuthFailure::Io(e)) => {
            log::debug!("handshake with {addr}: {e}");
            Err(LinkError::NotSent)
        }
        Err(AuthFailure::Handshake(e)) => {
            node.warn_auth_once(
                &addr.to_string(),
                format_args!("refusing to talk to {addr}: {e}"),
            );
            Err(LinkError::NotSent)
        }
    }
}

/// Why a request to another node got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The connection broke (or sent garbage) after the request was written
    /// to it: the peer may have applied it.
    Failed,
    /// No reply within the peer timeout: the peer may have applied it.
    TimedOut,
    /// The request was never written (the connection could not be made, or
    /// failed before its turn): the peer cannot have seen it.
    NotSent,
}

impl LinkError {
    /// Whether the peer may have received, and so applied, the request.
    pub fn outcome_unknown(self) -> bool {
        self != LinkError::NotSent
    }
}

struct Slot {
    value: RefCell<Option<Result<Vec<u8>, LinkError>>>,
    waker: RefCell<Option<Waker>>,
    /// Set once the reply is in (or the request failed), even after its
    /// value was taken.
    done: Cell<bool>,
    /// Those waiting for the request to be settled ([`Pending`]), besides
    /// the one awaiting its reply.
    watchers: RefCell<Vec<Waker>>,
}

impl Slot {
    fn new(value: Option<Result<Vec<u8>, LinkError>>) -> Rc<Slot> {
        Rc::new(Slot {
            done: Cell::new(value.is_some()),
            value: RefCell::new(value),
            waker: RefCell::new(None),
            watchers: RefCell::new(Vec::new()),
        })
    }

    fn complete(&self, value: Result<Vec<u8>, LinkError>) {
        *self.value.borrow_mut() = Some(value);
        self.done.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
        for waker in self.watchers.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// A request still queued or in flight on a link, to wait for without taking
/// its reply (see [`Link::pending_tagged`]).
pub struct Pending(Rc<Slot>);

impl Pending {
    /// Resolves once the request has its reply or has failed, or after
    /// `timeout`, whichever comes first.
    pub async fn settled(self, timeout: Duration) {
        let timer = glommio::timer::sleep(timeout);
        futures_lite::future::or(self, timer).await;
    }
}

impl Future for Pending {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.done.get() {
            return Poll::Ready(());
        }
        self.0.watchers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// The reply to one request, to be awaited (a one-shot channel).
pub struct Reply(Rc<Slot>);

impl Reply {
    /// A reply that is already known.
    pub fn ready(value: Result<Vec<u8>, LinkError>) -> Reply {
        Reply(Slot::new(Some(value)))
    }
}

impl Future for Reply {
    type Output = Result<Vec<u8>, LinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(value) = self.0.value.borrow_mut().take() {
            return Poll::Ready(value);
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// How the reply to a request on a link ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Text or meta requests, each followed by `mn`.
    Text,
    /// A binary request followed by a binary NOOP.
    Binary,
}

struct Outgoing {
    mode: PeerMode,
    framing: Framing,
    bytes: Vec<u8>,
    slot: Rc<Slot>,
    /// What [`Link::pending_tagged`] finds the request by (0: nothing).
    tag: u64,
}

/// One shard's connection to one shard of another node.
pub struct Link {
    pub target: Owner,
    addr: SocketAddr,
    cluster: Arc<ClusterNode>,
    /// The shard's socket ring, which the connection moves to once past the
    /// handshake (none: it stays on glommio's sockets).
    sockets: Option<Rc<SocketRing>>,
    queue: RefCell<VecDeque<Outgoing>>,
    in_flight: RefCell<VecDeque<(Rc<Slot>, Framing, u64)>>,
    writer_waker: RefCell<Option<Waker>>,
    task: RefCell<Option<Task<()>>>,
    running: Cell<bool>,
    /// The last request was refused at [`PEER_LINK_REQUESTS_MAX`] (logged once
    /// until one is taken again).
    full: Cell<bool>,
}

impl Link {
    pub fn new(
        target: Owner,
        addr: SocketAddr,
        cluster: Arc<ClusterNode>,
        sockets: Option<Rc<SocketRing>>,
    ) -> Rc<Link> {
        Rc::new(Link {
            target,
            addr,
            cluster,
            sockets,
            queue: RefCell::new(VecDeque::new()),
            in_flight: RefCell::new(VecDeque::new()),
            writer_waker: RefCell::new(None),
            task: RefCell::new(None),
            running: Cell::new(false),
            full: Cell::new(false),
        })
    }

    /// The endpoint this link connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `bytes` (requests, each followed by `mn`, in `mode`) and returns
    /// their reply. Requests on one link are written and answered in order.
    pub fn send(self: &Rc<Self>, mode: PeerMode, bytes: Vec<u8>) -> Reply {
        self.send_framed(mode, Framing::Text, bytes)
    }

    /// [`Link::send`] for a request whose reply ends as `framing` says.
    pub fn send_framed(self: &Rc<Self>, mode: PeerMode, framing: Framing, bytes: Vec<u8>) -> Reply {
        self.enqueue(mode, framing, bytes, 0)
    }

    /// [`Link::send`] for a request that [`Link::pending_tagged`] finds by
    /// `tag` (non-zero) until it is settled.
    pub fn send_tagged(self: &Rc<Self>, mode: PeerMode, bytes: Vec<u8>, tag: u64) -> Reply {
        self.enqueue(mode, Framing::Text, bytes, tag)
    }

    /// The latest request sent with `tag` that is still queued or awaits
    /// its reply, if any.
    pub fn pending_tagged(&self, tag: u64) -> Option<Pending> {
        if let Some(out) = self.queue.borrow().iter().rev().find(|o| o.tag == tag) {
            return Some(Pending(out.slot.clone()));
        }
        let in_flight = self.in_flight.borrow();
        let (slot, _, _) = in_flight.iter().rev().find(|(_, _, t)| *t == tag)?;
        Some(Pending(slot.clone()))
    }

    fn enqueue(
        self: &Rc<Self>,
        mode: PeerMode,
        framing: Framing,
        bytes: Vec<u8>,
        tag: u64,
    ) -> Reply {
        let held = self.queue.borrow().len() + self.in_flight.borrow().len();
        if held >= PEER_LINK_REQUESTS_MAX {
            if !self.full.replace(true) {
                log::warn!(
                    "the link to node {} at {} holds {held} requests: refusing more until it drains",
                    self.target.node,
                    self.addr
                );
            }
            return Reply::ready(Err(LinkError::NotSent));
        }
        self.full.set(false);
        let slot = Slot::new(None);
        self.queue.borrow_mut().push_back(Outgoing {
            mode,
            framing,
            bytes,
            slot: slot.clone(),
            tag,
        });
        if !self.running.get() {
            self.running.set(true);
            let link = self.clone();
            *self.task.borrow_mut() = Some(glommio::spawn_local(async move {
                let why = link.run().await;
                link.fail_all(why);
            }));
        } else if let Some(waker) = self.writer_waker.borrow_mut().take() {
            waker.wake();
        }
        Reply(slot)
    }

    /// Waits for `reply` at most the peer timeout; on timeout the link is
    /// dropped (its replies are out of step) and its node marked TKO.
    pub async fn wait(self: &Rc<Self>, reply: Reply) -> Result<Vec<u8>, LinkError> {
        let timeout = self.cluster.peer_timeout;
        let timer = async {
            glommio::timer::sleep(timeout).await;
            Err(LinkError::TimedOut)
        };
        let result = futures_lite::future::or(reply, timer).await;
        if result == Err(LinkError::TimedOut) {
            self.cluster.timed_out(self.target.node);
            // Once per node, not per link: `mark_tko` says it when the node
            // is first skipped.
            log::debug!(
                "node {} at {} did not answer within {:?}",
                self.target.node,
                self.addr,
                timeout
            );
            self.abort(LinkError::TimedOut);
        }
        result
    }

    /// Drops the connection, failing every request on it, and marks the node TKO.
    pub fn abort(&self, why: LinkError) {
        let task = self.task.borrow_mut().take();
        drop(task);
        self.fail_all(why);
    }

    fn fail_all(&self, why: LinkError) {
        self.running.set(false);
        self.cluster.mark_tko(self.target.node);
        let in_flight: Vec<_> = self.in_flight.borrow_mut().drain(..).collect();
        let queued: Vec<_> = self.queue.borrow_mut().drain(..).collect();
        for (slot, _, _) in in_flight {
            slot.complete(Err(why));
        }
        for out in queued {
            out.slot.complete(Err(LinkError::NotSent));
        }
    }

    /// Connects, then writes and reads until the connection fails.
    async fn run(self: &Rc<Self>) -> LinkError {
        // The connection completes as the first write waits for it; a peer that
        // never answers the handshake times out like one that never answers.
        let stream = match connect(self.cluster.local_ip, self.addr) {
            Ok(stream) => stream,
            Err(e) => {
                log::debug!(
                    "cannot connect to node {} at {}: {e}",
                    self.target.node,
                    self.addr
                );
                return LinkError::Failed;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) =
            authenticate(&self.cluster, stream, self.addr, self.sockets.as_ref()).await
        else {
            return LinkError::Failed;
        };
        let pauses = self.cluster.pauses_noticed();
        let (reader, writer) = futures_lite::io::split(stream);
        let why =
            futures_lite::future::or(self.write_loop(writer, pauses), self.read_loop(reader)).await;
        self.cluster.count_disconnect();
        why
    }

    /// Writes what is queued. Once this process is found to have been paused
    /// since the connection opened, what is queued is stale (its senders'
    /// peers have moved on): the link fails instead, and those writes become
    /// hints, settled when the nodes exchange.
    async fn write_loop(
        self: &Rc<Self>,
        mut writer: futures_lite::io::WriteHalf<PeerStream>,
        pauses: u64,
    ) -> LinkError {
        // The mode line in force on the connection, with the epoch it named.
        let mut mode: Option<(PeerMode, u64)> = None;
        let mut buf = Vec::new();
        loop {
            WaitQueued(self).await;
            if self.cluster.pauses() != pauses {
                return LinkError::Failed;
            }
            buf.clear();
            {
                let mut queue = self.queue.borrow_mut();
                let mut in_flight = self.in_flight.borrow_mut();
                let epoch = self.cluster.epoch();
                for out in queue.drain(..) {
                    if mode != Some((out.mode, epoch)) {
                        wire::encode_mode(out.mode, epoch, &mut buf);
                        mode = Some((out.mode, epoch));
                    }
                    buf.extend_from_slice(&out.bytes);
                    in_flight.push_back((out.slot, out.framing, out.tag));
                }
            }
            if writer.write_all(&buf).await.is_err() {
                return LinkError::Failed;
            }
            if buf.capacity() > crate::limits::REPLY_BUFFER_FLUSH_BYTES {
                buf = Vec::new();
            }
        }
    }

    async fn read_loop(
        self: &Rc<Self>,
        mut reader: futures_lite::io::ReadHalf<PeerStream>,
    ) -> LinkError {
        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) => return LinkError::Failed,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return self.garbage(&e.to_string())
                }
                Err(_) => return LinkError::Failed,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while start < buf.len() {
                let Some(framing) = self.in_flight.borrow().front().map(|(_, f, _)| *f) else {
                    return self.garbage("a reply to no request");
                };
                let scan = match framing {
                    Framing::Text => wire::scan_reply(&buf[start..]),
                    Framing::Binary => wire::scan_binary_reply(&buf[start..]),
                };
                match scan {
                    Scan::Incomplete => break,
                    Scan::Garbage(why) => return self.garbage(why),
                    Scan::Reply { body, used } => {
                        let (slot, _, _) = self
                            .in_flight
                            .borrow_mut()
                            .pop_front()
                            .expect("a request in flight");
                        slot.complete(Ok(buf[start..start + body].to_vec()));
                        start += used;
                    }
                }
            }
            buf.drain(..start);
            if buf.len() > crate::limits::PEER_REPLY_BYTES_MAX {
                return self.garbage("a reply longer than any item");
            }
        }
    }

    fn garbage(&self, why: &str) -> LinkError {
        log::warn!(
            "node {} at {} sent garbage ({why}); disconnecting",
            self.target.node,
            self.addr
        );
        LinkError::Failed
    }
}

/// Resolves once the link has something queued to write.
struct WaitQueued<'l>(&'l Link);

impl Future for WaitQueued<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.0.queue.borrow().is_empty() {
            return Poll::Ready(());
        }
        *self.0.writer_waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Sends one request on a connection of its own (not a shared link) and reads
/// its reply: for requests that may take long, such as a recovery, or that
/// must not wait behind others, such as a probe.
pub async fn one_off(
    node: &ClusterNode,
    addr: SocketAddr,
    mode: Option<(PeerMode, u64)>,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, LinkError> {
    let exchange = async {
        let stream = connect(node.local_ip, addr).map_err(|_| LinkError::Failed)?;
        let mut stream = authenticate(node, stream, addr, None).await?;
        let mut out = Vec::with_capacity(request.len() + 32);
        if let Some((mode, epoch)) = mode {
            wire::encode_mode(mode, epoch, &mut out);
        }
        out.extend_from_slice(request);
        stream
            .write_all(&out)
            .await
            .map_err(|_| LinkError::Failed)?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match wire::scan_reply(&buf) {
                Scan::Reply { body, .. } => {
                    buf.truncate(body);
                    return Ok(buf);
                }
                Scan::Garbage(why) => {
                    log::warn!("{addr} sent garbage ({why}); disconnecting");
                    return Err(LinkError::Failed);
                }
                Scan::Incomplete => {}
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|_| LinkError::Failed)?;
            if n == 0 {
                return Err(LinkError::Failed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        Err(LinkError::TimedOut)
    };
    futures_lite::future::or(exchange, timer).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::auth::Secret;
    use crate::cluster::config::ClusterConfig;

    fn two_node_cluster() -> Arc<ClusterNode> {
        let file = "replicas = 2\n\
            [[node]]\nid = 1\naddr = \"127.0.0.1:1\"\nshards = [\"127.0.0.1:2\"]\n\
            [[node]]\nid = 2\naddr = \"127.0.0.1:3\"\nshards = [\"127.0.0.1:4\"]\n";
        let config = ClusterConfig::from_file_text(file).expect("a cluster file");
        let node = ClusterNode::new(
            config,
            1,
            Duration::from_millis(250),
            1000,
            Secret::from_bytes(&[7; 32]),
            Duration::from_secs(1),
        )
        .expect("a node");
        Arc::new(node)
    }

    /// Runs `test` on an executor of its own with a link to a peer that never
    /// answers the handshake: what is sent on it stays queued.
    fn with_a_silent_peer<F: Future<Output = ()>>(test: impl FnOnce(Rc<Link>) -> F) {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let addr = silent.local_addr().expect("its address");
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor")
            .run(async {
                let owner = Owner { node: 2, shard: 0 };
                test(Link::new(owner, addr, two_node_cluster(), None)).await
            });
        drop(silent);
    }

    #[test]
    fn a_tagged_request_is_found_until_it_is_settled() {
        with_a_silent_peer(|link| async move {
            let untagged = link.send(PeerMode::Forward, b"mn\r\n".to_vec());
            let tagged = link.send_tagged(PeerMode::Replica, b"mn\r\n".to_vec(), 7);
            glommio::executor().yield_now().await;
            assert!(link.pending_tagged(8).is_none(), "no request has tag 8");
            let pending = link
                .pending_tagged(7)
                .expect("the tagged request is queued");
            let aborting = link.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(10)).await;
                aborting.abort(LinkError::Failed);
            })
            .detach();
            // Settled when the link fails, without its reply being taken.
            let woken = futures_lite::future::or(
                async {
                    pending.await;
                    true
                },
                async {
                    glommio::timer::sleep(Duration::from_secs(60)).await;
                    false
                },
            );
            assert!(woken.await, "the failed link wakes those waiting on it");
            assert!(
                link.pending_tagged(7).is_none(),
                "a settled request is not found"
            );
            assert_eq!(tagged.await, Err(LinkError::NotSent));
            assert_eq!(untagged.await, Err(LinkError::NotSent));
        });
    }

    #[test]
    fn a_link_holds_requests_up_to_its_bound_and_refuses_the_next_at_once() {
        with_a_silent_peer(|link| async move {
            let held: Vec<Reply> = (0..PEER_LINK_REQUESTS_MAX)
                .map(|_| link.send(PeerMode::Forward, b"mn\r\n".to_vec()))
                .collect();
            glommio::executor().yield_now().await;
            let refused = link.send(PeerMode::Replica, b"mn\r\n".to_vec());
            assert!(
                refused.0.done.get(),
                "the request past the bound waits for nothing"
            );
            assert_eq!(refused.await, Err(LinkError::NotSent));
            assert!(
                held.iter().all(|reply| !reply.0.done.get()),
                "a request within the bound was failed"
            );
            link.abort(LinkError::Failed);
            for reply in held {
                assert_eq!(reply.await, Err(LinkError::NotSent));
            }
            // Drained, the link takes requests again.
            let taken = link.send(PeerMode::Forward, b"mn\r\n".to_vec());
            assert!(!taken.0.done.get());
            link.abort(LinkError::Failed);
        });
    }
}

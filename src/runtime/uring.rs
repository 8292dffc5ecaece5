//! Client sockets on a ring of the shard's own (io_uring), in place of glommio's
//! socket path, so that a request costs no system call of its own. A shard's
//! links to other nodes use it too, once past the members' handshake.
//!
//! glommio's sockets call `recv` and `send` directly and use its ring only to
//! wait, arming a one-shot poll after every partial read: two system calls and a
//! poll a request at pipeline depth 1. Here each connection has one multishot
//! receive that lands its bytes in buffers the kernel takes from a ring of
//! provided buffers, and each reply is a send submission; one task per shard (the
//! driver) submits every send of a pass and reaps every completion with one
//! `io_uring_enter`, copying received bytes to their connection and waking it.
//! The kernel runs its completion work when the shard next enters it
//! (`COOP_TASKRUN`) instead of interrupting the shard as each packet arrives.
//!
//! When passes find nothing, the driver sleeps in the ring itself (one
//! `io_uring_enter`), woken by its next completion or by another shard's
//! [`doorbell`](super::doorbell); glommio's park and wake cost a lone request
//! about as much CPU again as the request itself. It lets glommio's loop take a
//! turn (its timers, its own sockets) at least every [`TURN_EVERY`] that it
//! sleeps, and once the ring has been quiet for [`SLEEP_IN_RING_FOR`] it waits through glommio's reactor
//! instead (a read of the eventfd the kernel signals when the ring has work), so
//! an idle shard parks in one place and wakes for anything. Connections see a
//! `stream::ClientStream`, the same `AsyncRead`/`AsyncWrite` either way.
//!
//! Bounds: a connection holds at most [`RECEIVED_QUEUE_BYTES_MAX`] received and
//! unread bytes (its receive is cancelled above that and armed again once read);
//! a reply waits for the one send in flight before it (the connection's own
//! output buffer holds the rest); the provided buffers are
//! [`PROVIDED_BUFFERS`] x [`PROVIDED_BUFFER_BYTES`] a shard.
//!
//! Socket layer: imports only the bottom layer ([`tls`](super::tls),
//! [`state`](super::state), [`doorbell`](super::doorbell)); it knows nothing of
//! requests or shards' tasks.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::doorbell::Doorbell;
use super::gate::SendGate;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Buffers lent to the kernel for receiving (a power of two).
pub const PROVIDED_BUFFERS: u16 = 1024;
/// Bytes of one provided buffer.
pub const PROVIDED_BUFFER_BYTES: usize = 4096;
/// Received bytes one connection may hold unread before its receive is paused.
pub const RECEIVED_QUEUE_BYTES_MAX: usize = 256 * 1024;
/// Submission queue entries of a shard's ring (completions: twice that).
const RING_ENTRIES: u32 = 1024;
/// Capacity a connection's received or sending buffer keeps once emptied; a
/// larger one (after a large value) is given back.
const BUFFER_KEEP_BYTES: usize = 64 * 1024;
/// Passes that find nothing before the driver sleeps (each lets the tasks woken
/// by the one before run first).
const IDLE_PASSES_BEFORE_SLEEP: u32 = 3;
/// After its last completion, how long the driver sleeps in the ring itself;
/// past that it parks through glommio, which wakes it for anything at all.
const SLEEP_IN_RING_FOR: Duration = Duration::from_millis(2);
/// While the driver keeps to the ring, it still lets glommio's loop take a
/// turn this often, for glommio's timers, its sockets and its channels.
const TURN_EVERY: Duration = Duration::from_millis(1);
const BUFFER_GROUP: u16 = 0;

const RECV: u64 = 1;
const SEND: u64 = 2;
const CANCEL: u64 = 3;
/// The read of the shard's doorbell (slot and generation 0).
const DOORBELL: u64 = 4;
/// The timeout that ends a sleep in the ring when glommio's loop is due a turn.
const ALARM: u64 = 5;

/// Generations of a slot wrap within the 24 bits user data has room for.
const GENERATION_MASK: u32 = 0xff_ffff;

fn user_data(kind: u64, slot: u32, generation: u32) -> u64 {
    kind << 56 | (generation as u64) << 32 | slot as u64
}

/// Stops taking a connection's bytes until it has read some (counted in `stats`).
fn pause(io: &mut Io) {
    io.paused = true;
    super::state::with_state(|s| s.stats.receive_pauses += 1);
}

/// One connection's side of the ring, shared by its stream and the driver.
struct Io {
    fd: RawFd,
    slot: u32,
    generation: u32,
    /// Received, not yet read: `received[read_from..]`.
    received: Vec<u8>,
    read_from: usize,
    /// The peer closed (0) or the socket failed.
    ended: Option<io::ErrorKind>,
    reader: Option<Waker>,
    /// The multishot receive is armed (its last completion not yet seen).
    receiving: bool,
    /// Receiving was stopped because `received` is full.
    paused: bool,
    /// The bytes of the send in flight (kept here until it completes).
    sending: Vec<u8>,
    sent: usize,
    in_flight: bool,
    send_error: Option<io::ErrorKind>,
    writer: Option<Waker>,
    /// The stream is gone: the descriptor is closed and the slot freed once no
    /// operation of it is outstanding.
    closed: bool,
    /// Lends the socket to another shard for one reply (closed before the
    /// descriptor is).
    gate: Arc<SendGate>,
}

impl Io {
    fn unread(&self) -> usize {
        self.received.len() - self.read_from
    }
}

/// The provided buffers and the ring that lends them to the kernel.
struct ProvidedBuffers {
    entries: *mut types::BufRingEntry,
    memory: Vec<u8>,
    tail: u16,
}

impl ProvidedBuffers {
    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(
            PROVIDED_BUFFERS as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .expect("a page-aligned layout")
    }

    fn new() -> ProvidedBuffers {
        // SAFETY: a non-zero size; all zeroes is a valid, empty ring.
        let entries = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        assert!(!entries.is_null(), "allocating the provided-buffer ring");
        let mut buffers = ProvidedBuffers {
            entries: entries as *mut types::BufRingEntry,
            memory: vec![0; PROVIDED_BUFFERS as usize * PROVIDED_BUFFER_BYTES],
            tail: 0,
        };
        for bid in 0..PROVIDED_BUFFERS {
            buffers.lend(bid);
        }
        buffers
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * PROVIDED_BUFFER_BYTES;
        &self.memory[start..start + len]
    }

    /// Lends buffer `bid` to the kernel (again).
    fn lend(&mut self, bid: u16) {
        let at = (self.tail & (PROVIDED_BUFFERS - 1)) as usize;
        // SAFETY: `at` < PROVIDED_BUFFERS, the entries allocated in `new`. The kernel
        // reads entries only below the published tail, which moves after the write.
        unsafe {
            let entry = &mut *self.entries.add(at);
            let start = self
                .memory
                .as_ptr()
                .add(bid as usize * PROVIDED_BUFFER_BYTES);
            entry.set_addr(start as u64);
            entry.set_len(PROVIDED_BUFFER_BYTES as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The ring that used it is
        // dropped first (it is declared before the buffers in `SocketRing`).
        unsafe { std::alloc::dealloc(self.entries as *mut u8, Self::layout()) };
    }
}

/// A shard's ring for client sockets.
pub struct SocketRing {
    ring: RefCell<IoUring>,
    buffers: RefCell<ProvidedBuffers>,
    conns: RefCell<Vec<Option<Rc<RefCell<Io>>>>>,
    free: RefCell<Vec<u32>>,
    generation: Cell<u32>,
    /// The driver, while it waits: woken by the ring turning readable, or by a
    /// submission queued meanwhile, which only the driver submits.
    parked: RefCell<Option<Waker>>,
    /// Connections that received bytes in this pass, whose first keys are
    /// prefetched before they run, and those keys' hashes (reused buffers).
    fresh: RefCell<Vec<Rc<RefCell<Io>>>>,
    fresh_hashes: RefCell<Vec<u64>>,
    /// Submissions that found the submission queue full and the kernel not
    /// taking more: queued again by the next pass, after it has reaped.
    backlog: RefCell<VecDeque<squeue::Entry>>,
    /// The eventfd the kernel signals when the ring has work for us, as a file
    /// glommio reads when the driver parks; and the read of it in flight, if any.
    ready_file: Rc<glommio::io::BufferedFile>,
    waiting: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>>,
    /// What other shards ring when they put a message on this shard's channels;
    /// read by the ring while the driver sleeps in it.
    doorbell: Arc<Doorbell>,
    /// Where the doorbell's read lands, while one is armed.
    doorbell_read: Box<std::cell::UnsafeCell<[u8; 8]>>,
    doorbell_armed: Cell<bool>,
    /// When the alarm in flight fires (relative to when it was armed): one
    /// timeout per turn of glommio's loop, not one per sleep (arming and
    /// cancelling a timer per sleep would cost a request more than the sleep).
    alarm: Box<RefCell<types::Timespec>>,
    alarm_armed: Cell<bool>,
    /// The tasks that receive from other shards, while they wait (see
    /// [`SocketRing::receive`]); the driver wakes them when the doorbell's
    /// count moves.
    listeners: RefCell<Vec<Waker>>,
    /// They took a message since the driver last looked.
    messages: Cell<bool>,
}

impl SocketRing {
    /// A ring with its provided buffers registered, or why there is none.
    pub fn new(doorbell: Arc<Doorbell>) -> io::Result<SocketRing> {
        // Completions are task work the kernel runs when the shard next enters
        // it (any system call), not an interrupt of the thread as each packet
        // arrives (`COOP_TASKRUN`); the taskrun flag says when a pass must
        // enter to collect them. Not `DEFER_TASKRUN`: measured on Linux 6.18, a
        // completion deferred to the next `io_uring_enter` did not signal the
        // ring's eventfd while the shard was parked, so a lone request waited
        // for the shard's next timer (8 to 32 ms); at depth 1 and 16 under load
        // both cost the same CPU per request (tests/lone_client.rs,
        // scripts/bench-vs-memcached.sh).
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(RING_ENTRIES)?;
        let ready = nix::sys::eventfd::EventFd::from_flags(
            nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )?;
        ring.submitter().register_eventfd(ready.as_raw_fd())?;
        let ready = std::os::fd::OwnedFd::from(ready).into_raw_fd();
        // SAFETY: the descriptor is ours alone; the file closes it when dropped.
        let ready_file = Rc::new(unsafe { glommio::io::BufferedFile::from_raw_fd(ready) });
        let buffers = ProvidedBuffers::new();
        // SAFETY: the entries stay allocated as long as the ring (see Drop above).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.entries as u64,
                PROVIDED_BUFFERS,
                BUFFER_GROUP,
                0,
            )?;
        }
        Ok(SocketRing {
            ring: RefCell::new(ring),
            buffers: RefCell::new(buffers),
            conns: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            generation: Cell::new(0),
            parked: RefCell::new(None),
            fresh: RefCell::new(Vec::new()),
            fresh_hashes: RefCell::new(Vec::new()),
            backlog: RefCell::new(VecDeque::new()),
            ready_file,
            waiting: RefCell::new(None),
            doorbell,
            doorbell_read: Box::new(std::cell::UnsafeCell::new([0; 8])),
            doorbell_armed: Cell::new(false),
            alarm: Box::new(RefCell::new(types::Timespec::new())),
            alarm_armed: Cell::new(false),
            listeners: RefCell::new(Vec::new()),
            messages: Cell::new(false),
        })
    }

    fn push(&self, entry: squeue::Entry) {
        if let Some(driver) = self.parked.borrow_mut().take() {
            driver.wake();
        }
        let mut ring = self.ring.borrow_mut();
        // SAFETY (both pushes): every buffer a submission points at (a send's
        // bytes) is kept in its connection's `Io`, which the slot table holds
        // until the submission completes.
        if self.backlog.borrow().is_empty() && unsafe { ring.submission().push(&entry) }.is_ok() {
            return;
        }
        if self.backlog.borrow().is_empty()
            && ring.submit().is_ok()
            && unsafe { ring.submission().push(&entry) }.is_ok()
        {
            return;
        }
        self.backlog.borrow_mut().push_back(entry);
    }

    fn arm_receive(&self, io: &mut Io) {
        io.receiving = true;
        io.paused = false;
        self.push(
            opcode::RecvMulti::new(types::Fd(io.fd), BUFFER_GROUP)
                .build()
                .user_data(user_data(RECV, io.slot, io.generation)),
        );
    }

    fn submit_send(&self, io: &mut Io) {
        io.in_flight = true;
        let rest = &io.sending[io.sent..];
        let entry = opcode::Send::new(types::Fd(io.fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(user_data(SEND, io.slot, io.generation));
        self.push(entry);
    }

    fn cancel_receive(&self, io: &Io) {
        self.push(
            opcode::AsyncCancel::new(user_data(RECV, io.slot, io.generation))
                .build()
                .user_data(user_data(CANCEL, io.slot, io.generation)),
        );
    }

    /// Takes over an accepted connection.
    pub(super) fn adopt(self: &Rc<Self>, stream: TcpStream) -> io::Result<RingStream> {
        let _ = stream.set_nodelay(true);
        // glommio's stream has no way to give its descriptor up: keep a duplicate
        // and let glommio close the original.
        let fd = nix::unistd::dup(stream.as_raw_fd())?;
        drop(stream);
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                let mut conns = self.conns.borrow_mut();
                conns.push(None);
                conns.len() as u32 - 1
            }
        };
        let generation = self.generation.get().wrapping_add(1) & GENERATION_MASK;
        self.generation.set(generation);
        let io = Rc::new(RefCell::new(Io {
            fd,
            slot,
            generation,
            received: Vec::with_capacity(PROVIDED_BUFFER_BYTES),
            read_from: 0,
            ended: None,
            reader: None,
            receiving: false,
            paused: false,
            sending: Vec::new(),
            sent: 0,
            in_flight: false,
            send_error: None,
            writer: None,
            closed: false,
            gate: Arc::new(SendGate::new(fd)),
        }));
        self.arm_receive(&mut io.borrow_mut());
        self.conns.borrow_mut()[slot as usize] = Some(io.clone());
        Ok(RingStream {
            ring: self.clone(),
            io,
        })
    }

    /// Submits what is queued and handles every completion; how many there were.
    fn pass(&self) -> usize {
        {
            let mut ring = self.ring.borrow_mut();
            let mut backlog = self.backlog.borrow_mut();
            while let Some(entry) = backlog.front() {
                // SAFETY: as in `push`.
                if unsafe { ring.submission().push(entry) }.is_err() {
                    break;
                }
                backlog.pop_front();
            }
            drop(backlog);
            let sq = ring.submission();
            let enter = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
            drop(sq);
            if enter {
                if let Err(e) = ring.submit() {
                    log::warn!("submitting to the socket ring: {e}");
                }
            }
        }
        let mut handled = 0;
        loop {
            let cqe = self.ring.borrow_mut().completion().next();
            let Some(cqe) = cqe else { break };
            handled += self.complete(cqe.user_data(), cqe.result(), cqe.flags()) as usize;
        }
        self.prefetch_fresh();
        handled
    }

    /// Starts fetching the store's bucket, then item, of the first key each
    /// connection just received, all before any of them runs: at depth 1 a
    /// lookup's two cache misses are most of a request's own CPU, and fetched
    /// together they overlap instead of stalling one request at a time.
    fn prefetch_fresh(&self) {
        let mut fresh = self.fresh.borrow_mut();
        if fresh.is_empty() {
            return;
        }
        let mut hashes = self.fresh_hashes.borrow_mut();
        super::state::with_state(|state| {
            for io in fresh.iter() {
                let io = io.borrow();
                if let Some(key) = first_key(&io.received[io.read_from..]) {
                    hashes.push(state.store.prefetch_bucket(key));
                }
            }
            for &hash in hashes.iter() {
                state.store.prefetch_item(hash);
            }
        });
        fresh.clear();
        hashes.clear();
    }

    /// Handles one completion; whether it was work (not the alarm, which must
    /// not keep an idle shard sleeping in the ring for ever).
    fn complete(&self, data: u64, result: i32, flags: u32) -> bool {
        let kind = data >> 56;
        if kind == DOORBELL {
            // The doorbell's count has moved: the driver sees it.
            self.doorbell_armed.set(false);
            return true;
        }
        if kind == ALARM {
            self.alarm_armed.set(false);
            return false;
        }
        let slot = (data & 0xffff_ffff) as u32;
        let generation = (data >> 32) as u32 & GENERATION_MASK;
        let bid = cqueue::buffer_select(flags);
        let io = self
            .conns
            .borrow()
            .get(slot as usize)
            .and_then(|c| c.clone())
            .filter(|io| io.borrow().generation == generation);
        let Some(io_rc) = io else {
            // A completion for a slot already freed cannot carry a buffer (the
            // receive's last completion frees it), but lend it back regardless.
            if let Some(bid) = bid {
                self.buffers.borrow_mut().lend(bid);
            }
            return true;
        };
        let mut io = io_rc.borrow_mut();
        match kind {
            RECV => self.receive_completed(&io_rc, &mut io, result, flags, bid),
            SEND => self.send_completed(&mut io, result),
            _ => {}
        }
        if io.closed {
            self.release(io);
        }
        true
    }

    /// A receive completed: keeps its bytes, lends its buffer back, receives
    /// again or pauses, and wakes the reader.
    fn receive_completed(
        &self,
        io_rc: &Rc<RefCell<Io>>,
        io: &mut Io,
        result: i32,
        flags: u32,
        bid: Option<u16>,
    ) {
        if let Some(bid) = bid {
            if result > 0 && !io.closed {
                let buffers = self.buffers.borrow();
                let bytes = buffers.bytes(bid, result as usize);
                // Drop what was read once it outweighs what was not.
                if io.read_from > 0 && io.read_from >= io.unread() {
                    let from = io.read_from;
                    io.received.drain(..from);
                    io.read_from = 0;
                }
                io.received.extend_from_slice(bytes);
                if io.reader.is_some() {
                    self.fresh.borrow_mut().push(io_rc.clone());
                }
            }
            self.buffers.borrow_mut().lend(bid);
        }
        let more = cqueue::more(flags);
        if !more {
            io.receiving = false;
        }
        if result == 0 {
            io.ended.get_or_insert(io::ErrorKind::UnexpectedEof);
        } else if result < 0 {
            let errno = -result;
            if errno == nix::errno::Errno::ENOBUFS as i32 && !io.closed {
                // Every provided buffer was taken: receive again.
                if !io.receiving {
                    self.arm_receive(io);
                }
            } else if errno != nix::errno::Errno::ECANCELED as i32 {
                io.ended
                    .get_or_insert(io::Error::from_raw_os_error(errno).kind());
            }
        } else if !io.closed && !more && io.ended.is_none() {
            if io.unread() >= RECEIVED_QUEUE_BYTES_MAX {
                pause(io);
            } else {
                self.arm_receive(io);
            }
        }
        if !io.closed && io.receiving && !io.paused && io.unread() >= RECEIVED_QUEUE_BYTES_MAX {
            pause(io);
            self.cancel_receive(io);
        }
        if let Some(waker) = io.reader.take() {
            waker.wake();
        }
    }

    /// A send completed: sends the rest, or empties the send buffer, and wakes
    /// the writer.
    fn send_completed(&self, io: &mut Io, result: i32) {
        io.in_flight = false;
        if result < 0 {
            io.send_error
                .get_or_insert(io::Error::from_raw_os_error(-result).kind());
        } else {
            io.sent += result as usize;
            if io.sent < io.sending.len() && !io.closed && io.send_error.is_none() {
                self.submit_send(io);
            } else {
                io.sending.clear();
                io.sent = 0;
                if io.sending.capacity() > BUFFER_KEEP_BYTES {
                    io.sending = Vec::new();
                }
            }
        }
        if let Some(waker) = io.writer.take() {
            waker.wake();
        }
    }

    /// Closes a closed connection's descriptor and frees its slot once no
    /// operation of it is outstanding. Not before: a submission names the socket
    /// by its descriptor number, which a new connection could otherwise be given.
    fn release(&self, io: std::cell::RefMut<'_, Io>) {
        if io.receiving || io.in_flight {
            return;
        }
        let (fd, slot) = (io.fd, io.slot);
        io.gate.close();
        drop(io);
        let _ = nix::unistd::close(fd);
        self.conns.borrow_mut()[slot as usize] = None;
        self.free.borrow_mut().push(slot);
    }

    /// Sleeps in the ring until a completion, the doorbell, or `timeout`, with
    /// one `io_uring_enter` that also submits what is queued. It does not sleep
    /// when a message came to this shard after `seen` (what [`Doorbell::sent`]
    /// said when the receivers last looked), which the driver's next pass
    /// sees.
    fn sleep(&self, timeout: Duration, seen: u64) {
        if !self.alarm_armed.get() {
            *self.alarm.borrow_mut() = types::Timespec::from(timeout);
            let alarm = opcode::Timeout::new(&*self.alarm.borrow() as *const types::Timespec)
                .build()
                .user_data(user_data(ALARM, 0, 0));
            self.alarm_armed.set(true);
            self.push(alarm);
        }
        if !self.doorbell_armed.get() {
            let read = opcode::Read::new(
                types::Fd(self.doorbell.fd()),
                self.doorbell_read.get() as *mut u8,
                8,
            )
            .build()
            .user_data(user_data(DOORBELL, 0, 0));
            self.doorbell_armed.set(true);
            self.push(read);
        }
        if !self.backlog.borrow().is_empty() {
            // Submissions (perhaps the alarm or the doorbell's read) wait for
            // room in the queue: pass again instead of sleeping without them.
            return;
        }
        if !self.doorbell.try_sleep(seen) {
            return;
        }
        let waited = self.ring.borrow().submit_and_wait(1);
        self.doorbell.awake();
        if let Err(e) = waited {
            if e.raw_os_error() != Some(nix::errno::Errno::EINTR as i32) {
                log::warn!("waiting on the socket ring: {e}");
            }
        }
    }

    /// Receives from another shard's channel, woken by this shard's doorbell as
    /// well as by glommio: a message sent while the driver sleeps in the ring
    /// is taken without waiting for a turn of glommio's loop.
    ///
    /// glommio keeps every waker a pending receive gives it until a message
    /// comes, so the channel is polled only when the doorbell's count says a
    /// message is there, or to give glommio a waker when it holds none of
    /// this receiver's (it lets go of it when it wakes it).
    pub async fn receive<T: Send>(
        &self,
        channel: &glommio::channels::shared_channel::ConnectedReceiver<T>,
        receiving: &mut Receiving,
    ) -> Option<T> {
        let mut next = std::pin::pin!(channel.recv());
        futures_lite::future::poll_fn(|cx| {
            let there = self.doorbell.sent_on(receiving.channel) > receiving.taken;
            if there || !receiving.glommio.armed.load(Ordering::SeqCst) {
                receiving.glommio.set_task(cx.waker());
                match next
                    .as_mut()
                    .poll(&mut Context::from_waker(&receiving.glommio_waker))
                {
                    Poll::Ready(message) => {
                        receiving.taken += message.is_some() as u64;
                        self.received();
                        return Poll::Ready(message);
                    }
                    Poll::Pending => receiving.glommio.armed.store(true, Ordering::SeqCst),
                }
            }
            let mut listeners = self.listeners.borrow_mut();
            if !listeners.iter().any(|w| w.will_wake(cx.waker())) {
                listeners.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// A message from another shard is work as much as a completion: the
    /// driver sleeps in the ring after it (and so is woken by the doorbell, not
    /// by glommio's park and wake), waking first if it waits through glommio.
    fn received(&self) {
        self.messages.set(true);
        if let Some(driver) = self.parked.borrow_mut().take() {
            driver.wake();
        }
    }

    /// Wakes the tasks that receive from other shards, to look at their channels.
    fn wake_listeners(&self) {
        for waker in self.listeners.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Submits what is queued (at shutdown, when the driver has stopped).
    pub fn flush(&self) {
        self.pass();
    }

    /// Waits until the ring has a completion, through glommio's reactor, or a
    /// submission is queued.
    ///
    /// glommio reads the eventfd the kernel signals for this ring: the read
    /// completes once it is signalled, and resets it. A wait that a queued
    /// submission ends early leaves its read in flight for the next wait, so a
    /// read (and its few allocations) is made only per signal, not per wait.
    async fn readable(&self) {
        let waiting = self.waiting.borrow_mut().take();
        let mut read = waiting.unwrap_or_else(|| {
            let file = self.ready_file.clone();
            Box::pin(async move {
                let _ = file.read_at(0, 8).await;
            })
        });
        let mut first = true;
        let signalled = futures_lite::future::poll_fn(|cx| {
            if read.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if !first {
                return Poll::Ready(false);
            }
            first = false;
            *self.parked.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        self.parked.borrow_mut().take();
        if !signalled {
            *self.waiting.borrow_mut() = Some(read);
        }
    }
}

/// One task's receiving from one channel into this shard (see
/// [`SocketRing::receive`]).
pub struct Receiving {
    /// The channel's number ([`Doorbell::channel`]).
    channel: usize,
    /// Messages taken from it so far.
    taken: u64,
    glommio: Arc<GlommioWaker>,
    /// `glommio` as a waker, made once.
    glommio_waker: Waker,
}

impl Receiving {
    pub fn new(channel: usize) -> Receiving {
        let glommio = Arc::new(GlommioWaker {
            armed: std::sync::atomic::AtomicBool::new(false),
            task: std::sync::Mutex::new(None),
        });
        Receiving {
            channel,
            taken: 0,
            glommio_waker: Waker::from(glommio.clone()),
            glommio,
        }
    }
}

/// The waker glommio holds for a receiving task: says that glommio no longer
/// holds it, then wakes the task.
struct GlommioWaker {
    armed: std::sync::atomic::AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl GlommioWaker {
    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl std::task::Wake for GlommioWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.armed.store(false, Ordering::SeqCst);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Runs the shard's socket ring until the node stops.
///
/// Each pass submits and reaps; the driver then yields within its task queue,
/// so that the connections it woke run before it passes again. glommio's loop
/// takes a turn (its timers, its own sockets) only when its task queues run
/// dry, which is when the driver waits on the ring through glommio
/// ([`SocketRing::readable`]), or when its preemption timer fires under load; a
/// turn that finds nothing parks the thread, and glommio's park and wake cost
/// several system calls and a `membarrier`. So when passes find nothing, the
/// driver first sleeps in the ring itself, for up to [`SLEEP_IN_RING_FOR`]
/// after its last completion: one system call, which a completion, another
/// shard's doorbell (whose messages its receivers then take, see
/// [`SocketRing::receive`]) or the alarm [`TURN_EVERY`] after glommio's last
/// turn ends. Past that, or when the alarm is due, it waits through glommio.
/// With `spin` (`--spin-before-park-us`) it keeps passing that long after its
/// last completion before it waits, as glommio spins before it parks.
pub async fn drive(ring: Rc<SocketRing>, stop: impl Fn() -> bool, spin: Duration) {
    let mut idle = 0;
    let mut last_work = Instant::now();
    let mut turn_due = last_work + TURN_EVERY;
    let mut seen = ring.doorbell.sent();
    // Passes found work since the clock was last read for `last_work`.
    let mut worked = false;
    while !stop() {
        if ring.pass() > 0 || ring.messages.take() {
            idle = 0;
            worked = true;
        } else {
            if worked {
                // The first pass since the last work that finds nothing: the
                // clock is read once a busy stretch, not once a pass.
                last_work = Instant::now();
                worked = false;
            }
            idle += 1;
        }
        // Another shard put a message on a channel: its receiver takes it.
        // Looked at every pass, so a busy shard that does not sleep takes
        // messages as soon as one that sleeps.
        let sent = ring.doorbell.sent();
        if sent != seen {
            seen = sent;
            ring.wake_listeners();
            idle = 0;
        }
        let mut turn = false;
        if idle > IDLE_PASSES_BEFORE_SLEEP {
            let at = Instant::now();
            let quiet = at - last_work;
            if quiet < spin {
                // Keep passing.
            } else if quiet < SLEEP_IN_RING_FOR && at < turn_due {
                ring.sleep(turn_due - at, seen);
                continue;
            } else {
                turn = true;
            }
        }
        if turn {
            seen = ring.doorbell.sent();
            ring.readable().await;
            idle = 0;
            turn_due = Instant::now() + TURN_EVERY;
        } else {
            // Let the connections just woken run, then pass again.
            futures_lite::future::yield_now().await;
        }
    }
}

/// The key of the text request at the start of `bytes`, if it names one: the
/// second word of its first line (`get KEY`, `set KEY ...`, `mg KEY ...`).
fn first_key(bytes: &[u8]) -> Option<&[u8]> {
    let line = &bytes[..memchr::memchr(b'\n', bytes)?];
    let start = memchr::memchr(b' ', line)? + 1;
    let rest = &line[start..];
    let end = memchr::memchr2(b' ', b'\r', rest).unwrap_or(rest.len());
    (end > 0 && start <= 8).then(|| &rest[..end])
}

/// One client connection on a [`SocketRing`].
pub struct RingStream {
    ring: Rc<SocketRing>,
    io: Rc<RefCell<Io>>,
}

impl RingStream {
    /// The connection's socket.
    pub(super) fn raw_fd(&self) -> RawFd {
        self.io.borrow().fd
    }

    /// The socket's gate, when another shard may send on it now: nothing
    /// written here is still on its way, and the socket has not failed.
    pub(super) fn lend(&self) -> Option<Arc<SendGate>> {
        let io = self.io.borrow();
        let idle = !io.in_flight && io.send_error.is_none() && !io.closed && io.ended.is_none();
        idle.then(|| io.gate.clone())
    }

    fn close_now(&mut self) {
        let mut io = self.io.borrow_mut();
        if io.closed {
            return;
        }
        io.closed = true;
        if io.receiving {
            self.ring.cancel_receive(&io);
        }
        self.ring.release(io);
    }
}

impl Drop for RingStream {
    fn drop(&mut self) {
        self.close_now();
    }
}

impl AsyncRead for RingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut io = this.io.borrow_mut();
        let unread = io.unread();
        if unread > 0 {
            let n = unread.min(buf.len());
            let from = io.read_from;
            buf[..n].copy_from_slice(&io.received[from..from + n]);
            io.read_from += n;
            if io.read_from == io.received.len() {
                io.received.clear();
                io.read_from = 0;
                if io.received.capacity() > BUFFER_KEEP_BYTES {
                    io.received = Vec::with_capacity(PROVIDED_BUFFER_BYTES);
                }
            }
            if io.paused && !io.receiving && io.unread() < RECEIVED_QUEUE_BYTES_MAX / 2 {
                this.ring.arm_receive(&mut io);
            }
            return Poll::Ready(Ok(n));
        }
        match io.ended {
            Some(io::ErrorKind::UnexpectedEof) => Poll::Ready(Ok(0)),
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => {
                if io.paused && !io.receiving {
                    this.ring.arm_receive(&mut io);
                }
                io.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Ready once no send of `io` is in flight (with the error of the last, if it
/// failed); else the writer is woken when the one in flight completes.
fn send_done(io: &mut Io, cx: &Context<'_>) -> Poll<io::Result<()>> {
    if let Some(kind) = io.send_error {
        return Poll::Ready(Err(kind.into()));
    }
    if io.in_flight {
        io.writer = Some(cx.waker().clone());
        return Poll::Pending;
    }
    Poll::Ready(Ok(()))
}

impl AsyncWrite for RingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut io = this.io.borrow_mut();
        std::task::ready!(send_done(&mut io, cx))?;
        // The bytes are the ring's now: the write is done as far as the caller
        // is concerned, and the next one waits for this one to complete.
        io.sending.clear();
        io.sending.extend_from_slice(buf);
        io.sent = 0;
        this.ring.submit_send(&mut io);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        send_done(&mut self.io.borrow_mut(), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.as_mut().poll_flush(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.get_mut().close_now();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::first_key;

    #[test]
    fn the_first_key_is_the_second_word_of_a_whole_first_line() {
        assert_eq!(first_key(b"get k1\r\nget k2\r\n"), Some(&b"k1"[..]));
        assert_eq!(first_key(b"set key 0 0 5\r\nhello\r\n"), Some(&b"key"[..]));
        assert_eq!(first_key(b"mg key v t\r\n"), Some(&b"key"[..]));
        assert_eq!(first_key(b"get k\n"), Some(&b"k"[..]));
        // No key: an unfinished line, a command without one, an empty word.
        assert_eq!(first_key(b"get key"), None);
        assert_eq!(first_key(b"version\r\n"), None);
        assert_eq!(first_key(b"get \r\n"), None);
        assert_eq!(first_key(b"verylongword key\r\n"), None);
    }
}

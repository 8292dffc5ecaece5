//! The floor: a server that keeps nothing and answers the load generator's text
//! requests with canned replies, so that its CPU per request is what the kernel and
//! one receive and one send per request cost on this machine, with no store, no
//! executor and no protocol beyond finding line ends. `scripts/bench-floor.sh`
//! runs it beside memcached and ringcache on the same core with the same client.
//!
//! Two ways to drive the sockets, one thread each:
//! - `epoll`: level-triggered epoll, one `read` and one `write` per ready
//!   connection, as memcached does;
//! - `uring`: io_uring with a multishot accept, a multishot receive per connection
//!   into a ring of provided buffers, and sends as submissions, so a request costs
//!   no system call of its own (one `io_uring_enter` submits every send of a pass
//!   and waits for the next completions).
//!
//! ```text
//! target/release/deps/floor-*  epoll|uring PORT [VALUE_BYTES]
//! ```
//!
//! `get KEY` is answered `VALUE KEY 0 VALUE_BYTES` with that many bytes and `END`,
//! `set KEY F E N` (with its data block) `STORED`, anything else `ERROR`. A bench
//! target only so that it is built with the benches and never ships.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// Bytes of input one connection may hold unanswered before it is dropped.
const INPUT_BYTES_MAX: usize = 1 << 20;

struct Conn {
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            input: Vec::with_capacity(16 * 1024),
            output: Vec::with_capacity(16 * 1024),
        }
    }
}

/// The canned replies.
struct Replies {
    /// ` 0 VALUE_BYTES\r\n`, after `VALUE KEY`.
    value_suffix: Vec<u8>,
    /// The value, `\r\n` and `END\r\n`.
    value_end: Vec<u8>,
}

impl Replies {
    fn new(value_bytes: usize) -> Replies {
        let mut value_end = vec![b'x'; value_bytes];
        value_end.extend_from_slice(b"\r\nEND\r\n");
        Replies {
            value_suffix: format!(" 0 {value_bytes}\r\n").into_bytes(),
            value_end,
        }
    }

    /// Answers every whole request in `conn.input` into `conn.output`.
    fn answer(&self, conn: &mut Conn) {
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &conn.input[pos..]) {
            let line = &conn.input[pos..pos + nl + 1];
            let words = line.strip_suffix(b"\r\n").unwrap_or(&line[..nl]);
            if let Some(key) = words.strip_prefix(b"get ") {
                conn.output.extend_from_slice(b"VALUE ");
                conn.output.extend_from_slice(key);
                conn.output.extend_from_slice(&self.value_suffix);
                conn.output.extend_from_slice(&self.value_end);
                pos += nl + 1;
            } else if words.starts_with(b"set ") {
                let bytes: usize = words
                    .rsplit(|b| *b == b' ')
                    .next()
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if conn.input.len() - pos < nl + 1 + bytes + 2 {
                    break;
                }
                conn.output.extend_from_slice(b"STORED\r\n");
                pos += nl + 1 + bytes + 2;
            } else {
                conn.output.extend_from_slice(b"ERROR\r\n");
                pos += nl + 1;
            }
        }
        conn.input.drain(..pos);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the server's own arguments are the others.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let usage = "usage: floor epoll|uring PORT [VALUE_BYTES]";
    let (Some(mode), Some(port)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return;
    };
    let port: u16 = port.parse().expect(usage);
    let value_bytes: usize = args.get(2).map_or(32, |v| v.parse().expect(usage));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the port");
    let replies = Replies::new(value_bytes);
    match mode.as_str() {
        "epoll" => epoll::serve(listener, &replies),
        "uring" => uring::serve(listener, &replies),
        _ => eprintln!("{usage}"),
    }
}

mod epoll {
    use super::*;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

    pub fn serve(listener: TcpListener, replies: &Replies) {
        listener.set_nonblocking(true).unwrap();
        let epoll = Epoll::new(EpollCreateFlags::empty()).unwrap();
        let listen_fd = listener.as_raw_fd();
        epoll
            .add(
                &listener,
                EpollEvent::new(EpollFlags::EPOLLIN, listen_fd as u64),
            )
            .unwrap();
        let mut conns: Vec<Option<(TcpStream, Conn)>> = Vec::new();
        let mut events = vec![EpollEvent::empty(); 256];
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let ready = epoll.wait(&mut events, EpollTimeout::NONE).unwrap();
            for event in &events[..ready] {
                let fd = event.data() as RawFd;
                if fd == listen_fd {
                    while let Ok((stream, _)) = listener.accept() {
                        stream.set_nonblocking(true).unwrap();
                        stream.set_nodelay(true).unwrap();
                        let fd = stream.as_raw_fd() as usize;
                        epoll
                            .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, fd as u64))
                            .unwrap();
                        if conns.len() <= fd {
                            conns.resize_with(fd + 1, || None);
                        }
                        conns[fd] = Some((stream, Conn::new()));
                    }
                    continue;
                }
                let Some((stream, conn)) = conns[fd as usize].as_mut() else {
                    continue;
                };
                let keep = match stream.read(&mut chunk) {
                    Ok(0) => false,
                    Ok(n) => {
                        conn.input.extend_from_slice(&chunk[..n]);
                        replies.answer(conn);
                        // The replies are small and the socket's buffer empty at
                        // depth 1: a short write is not expected, and ends the
                        // connection rather than complicate the floor.
                        let sent = stream.write(&conn.output).unwrap_or(0);
                        let whole = sent == conn.output.len();
                        conn.output.clear();
                        whole && conn.input.len() <= INPUT_BYTES_MAX
                    }
                    Err(e) => e.kind() == ErrorKind::WouldBlock,
                };
                if !keep {
                    conns[fd as usize] = None;
                }
            }
        }
    }
}

mod uring {
    use super::*;
    use io_uring::{cqueue, opcode, squeue, types, IoUring};
    use std::sync::atomic::{AtomicU16, Ordering};

    const BUFFERS: u16 = 4096;
    const BUFFER_BYTES: usize = 2048;
    const GROUP: u16 = 0;
    const ACCEPT: u64 = 1 << 32;
    const RECV: u64 = 2 << 32;
    const SEND: u64 = 3 << 32;

    /// A connection, with the send in flight (`sending`, whose bytes must stay put
    /// until it completes) and the replies that wait for it (`conn.output`).
    struct Uconn {
        /// Owns the descriptor: dropping the connection closes it.
        _socket: TcpStream,
        conn: Conn,
        sending: Vec<u8>,
        sent: usize,
        in_flight: bool,
        closed: bool,
    }

    /// The provided buffers and the ring that lends them to the kernel.
    struct BufRing {
        entries: *mut types::BufRingEntry,
        memory: Vec<u8>,
        tail: u16,
    }

    impl BufRing {
        fn new() -> BufRing {
            let layout = std::alloc::Layout::from_size_align(
                BUFFERS as usize * std::mem::size_of::<types::BufRingEntry>(),
                4096,
            )
            .unwrap();
            // SAFETY: a non-zero size; zeroed is a valid (empty) ring.
            let entries = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
            assert!(!entries.is_null());
            let mut ring = BufRing {
                entries,
                memory: vec![0; BUFFERS as usize * BUFFER_BYTES],
                tail: 0,
            };
            for bid in 0..BUFFERS {
                ring.give_back(bid);
            }
            ring
        }

        fn buffer(&self, bid: u16, len: usize) -> &[u8] {
            let start = bid as usize * BUFFER_BYTES;
            &self.memory[start..start + len]
        }

        /// Lends buffer `bid` to the kernel again.
        fn give_back(&mut self, bid: u16) {
            let slot = (self.tail & (BUFFERS - 1)) as usize;
            // SAFETY: `slot` < BUFFERS entries allocated in `new`; the kernel reads
            // entries only up to the published tail, which is advanced after.
            unsafe {
                let entry = &mut *self.entries.add(slot);
                entry.set_addr(self.memory.as_ptr().add(bid as usize * BUFFER_BYTES) as u64);
                entry.set_len(BUFFER_BYTES as u32);
                entry.set_bid(bid);
                self.tail = self.tail.wrapping_add(1);
                let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
                (*tail).store(self.tail, Ordering::Release);
            }
        }
    }

    fn push(ring: &mut IoUring, entry: squeue::Entry) {
        // SAFETY: every buffer an entry points at lives until its completion.
        while unsafe { ring.submission().push(&entry) }.is_err() {
            ring.submit().unwrap();
        }
    }

    fn recv(fd: RawFd) -> squeue::Entry {
        opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(RECV | fd as u64)
    }

    fn send(fd: RawFd, u: &mut Uconn) -> squeue::Entry {
        u.in_flight = true;
        let rest = &u.sending[u.sent..];
        opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(SEND | fd as u64)
    }

    pub fn serve(listener: TcpListener, replies: &Replies) {
        let mut ring: IoUring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(1024)
            .or_else(|_| IoUring::new(1024))
            .expect("io_uring");
        let mut buffers = BufRing::new();
        // SAFETY: `buffers.entries` holds BUFFERS entries and outlives the ring's use.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(buffers.entries as u64, BUFFERS, GROUP, 0)
                .expect("a ring of provided buffers (Linux 5.19 or later)");
        }
        let listen_fd = listener.as_raw_fd();
        push(
            &mut ring,
            opcode::AcceptMulti::new(types::Fd(listen_fd))
                .build()
                .user_data(ACCEPT),
        );
        let mut conns: Vec<Option<Uconn>> = Vec::new();
        let mut done = Vec::with_capacity(1024);
        loop {
            ring.submit_and_wait(1).unwrap();
            done.clear();
            done.extend(
                ring.completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(data, result, flags) in &done {
                let fd = (data & 0xffff_ffff) as RawFd;
                match data & !0xffff_ffff {
                    ACCEPT => {
                        if result < 0 {
                            continue;
                        }
                        // SAFETY: a new descriptor the accept gave us alone.
                        let stream = unsafe { TcpStream::from_raw_fd(result) };
                        stream.set_nodelay(true).unwrap();
                        let fd = result as usize;
                        if conns.len() <= fd {
                            conns.resize_with(fd + 1, || None);
                        }
                        conns[fd] = Some(Uconn {
                            _socket: stream,
                            conn: Conn::new(),
                            sending: Vec::with_capacity(16 * 1024),
                            sent: 0,
                            in_flight: false,
                            closed: false,
                        });
                        push(&mut ring, recv(result));
                    }
                    RECV => {
                        let Some(u) = conns[fd as usize].as_mut() else {
                            continue;
                        };
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            if result > 0 {
                                let data = buffers.buffer(bid, result as usize);
                                u.conn.input.extend_from_slice(data);
                            }
                            buffers.give_back(bid);
                        }
                        if result == -libc_enobufs() {
                            push(&mut ring, recv(fd));
                            continue;
                        }
                        if result <= 0 || u.conn.input.len() > INPUT_BYTES_MAX {
                            u.closed = true;
                        } else {
                            if !cqueue::more(flags) {
                                push(&mut ring, recv(fd));
                            }
                            replies.answer(&mut u.conn);
                            if !u.in_flight && !u.conn.output.is_empty() {
                                std::mem::swap(&mut u.sending, &mut u.conn.output);
                                u.sent = 0;
                                let entry = send(fd, u);
                                push(&mut ring, entry);
                            }
                        }
                    }
                    SEND => {
                        let Some(u) = conns[fd as usize].as_mut() else {
                            continue;
                        };
                        u.in_flight = false;
                        if result < 0 {
                            u.closed = true;
                        } else {
                            u.sent += result as usize;
                            if u.sent == u.sending.len() {
                                u.sending.clear();
                                u.sent = 0;
                                if !u.conn.output.is_empty() {
                                    std::mem::swap(&mut u.sending, &mut u.conn.output);
                                }
                            }
                            if !u.closed && u.sent < u.sending.len() {
                                let entry = send(fd, u);
                                push(&mut ring, entry);
                            }
                        }
                    }
                    _ => unreachable!("user data {data:#x}"),
                }
                // A closed connection goes once no send of its is in flight; its
                // multishot receive ends with the descriptor.
                if let Some(u) = conns.get(fd as usize).and_then(|c| c.as_ref()) {
                    if u.closed && !u.in_flight {
                        conns[fd as usize] = None;
                    }
                }
            }
        }
    }

    /// ENOBUFS: the receive found no provided buffer and ended.
    fn libc_enobufs() -> i32 {
        nix::errno::Errno::ENOBUFS as i32
    }
}

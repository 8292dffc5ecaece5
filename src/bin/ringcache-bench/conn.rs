//! One client connection: its sockets (plain or TLS), the requests it has in
//! flight and where its next request comes from. Does I/O (non-blocking sockets).

use crate::args::{KeyPattern, Plan};
use crate::keys::Rng;
use crate::tally::Tally;
use crate::wire::{measure_reply, put_request, Op, Outcome};
use crate::{LATENCY_MAX_NS, READ_BUFFER_BYTES};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// One request in flight.
#[derive(Clone, Copy)]
pub(crate) struct InFlight {
    pub(crate) op: Op,
    pub(crate) id: u64,
    pub(crate) sent: Instant,
}

/// Where a connection takes its next request from.
pub(crate) enum Source {
    /// Set each key of `next..end` once.
    Prefill { next: u64, end: u64 },
    /// The measured workload.
    Workload,
}

/// One socket of a connection: its buffers, and the requests sent on it that
/// await their replies, oldest first.
pub(crate) struct Link {
    pub(crate) addr: String,
    pub(crate) stream: TcpStream,
    /// With `--tls-ca`: the session; `out` and `inbuf` hold plaintext.
    pub(crate) tls: Option<rustls::ClientConnection>,
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    pub(crate) inbuf: Vec<u8>,
    pub(crate) in_start: usize,
    pub(crate) in_end: usize,
    pub(crate) inflight: VecDeque<InFlight>,
    pub(crate) wants_write: bool,
}

impl Link {
    pub(crate) fn open(addr: &str, plan: &Plan) -> Result<Link, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{addr}: TCP_NODELAY: {e}"))?;
        // The handshake runs before the socket turns non-blocking, so the
        // load loop only ever meets application data.
        let tls = match &plan.tls {
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("{addr}: {e}"))?;
                let mut tls = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| format!("{addr}: {e}"))?;
                tls.set_buffer_limit(None);
                while tls.is_handshaking() {
                    tls.complete_io(&mut stream)
                        .map_err(|e| format!("{addr}: TLS handshake: {e}"))?;
                }
                Some(tls)
            }
            None => None,
        };
        stream
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: O_NONBLOCK: {e}"))?;
        let request_max = 64 + plan.key_prefix.len() + plan.key_digits.max(20) + plan.value_max;
        Ok(Link {
            addr: addr.to_string(),
            stream,
            tls,
            out: Vec::with_capacity(request_max * (plan.window_max + 1)),
            out_pos: 0,
            inbuf: vec![0; READ_BUFFER_BYTES.max(2 * (plan.value_max + 512))],
            in_start: 0,
            in_end: 0,
            inflight: VecDeque::with_capacity(plan.window_max),
            wants_write: false,
        })
    }

    /// Writes what is buffered; `Ok(true)` when all of it went out.
    pub(crate) fn flush(&mut self) -> Result<bool, String> {
        if let Some(tls) = &mut self.tls {
            // rustls takes all of it (no buffer limit); its ciphertext goes out
            // as the socket takes it.
            tls.writer()
                .write_all(&self.out[self.out_pos..])
                .map_err(|e| format!("{}: TLS write: {e}", self.addr))?;
            self.out.clear();
            self.out_pos = 0;
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(format!("{}: server closed the connection", self.addr)),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("{}: write: {e}", self.addr)),
                }
            }
            return Ok(true);
        }
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(format!("{}: server closed the connection", self.addr)),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{}: write: {e}", self.addr)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Reads once and handles every complete reply; returns how many there were.
    /// A get that missed is queued on `to_set` with `--cache-aside`.
    pub(crate) fn read_replies(
        &mut self,
        plan: &Plan,
        tally: &mut Tally,
        counting: bool,
        now: Instant,
        to_set: &mut VecDeque<u64>,
    ) -> Result<usize, String> {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        } else if self.in_end == self.inbuf.len() {
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        let read = match &mut self.tls {
            Some(tls) => read_tls(tls, &mut self.stream, &mut self.inbuf[self.in_end..]),
            None => self.stream.read(&mut self.inbuf[self.in_end..]),
        };
        let n = match read {
            Ok(0) => return Err(format!("{}: server closed the connection", self.addr)),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(format!("{}: read: {e}", self.addr)),
        };
        self.in_end += n;
        let mut replies = 0;
        while let Some(front) = self.inflight.front().copied() {
            let buf = &self.inbuf[self.in_start..self.in_end];
            let Some((len, outcome)) = measure_reply(buf, front.op, plan.protocol) else {
                if self.in_start == 0 && self.in_end == self.inbuf.len() {
                    return Err(format!(
                        "{}: a reply larger than the read buffer",
                        self.addr
                    ));
                }
                break;
            };
            self.in_start += len;
            self.inflight.pop_front();
            replies += 1;
            if outcome == Outcome::Miss && plan.cache_aside {
                to_set.push_back(front.id);
            }
            if counting {
                match front.op {
                    Op::Get => tally.gets += 1,
                    Op::Set => tally.sets += 1,
                }
                match outcome {
                    Outcome::Hit => tally.hits += 1,
                    Outcome::Miss => tally.misses += 1,
                    Outcome::Stored => {}
                    Outcome::Error => tally.errors += 1,
                }
                let ns = now.saturating_duration_since(front.sent).as_nanos() as u64;
                tally
                    .latency_ns
                    .saturating_record(ns.clamp(1, LATENCY_MAX_NS));
            }
        }
        if self.inflight.is_empty() && self.in_start != self.in_end {
            return Err(format!(
                "{}: the server sent bytes that answer no request",
                self.addr
            ));
        }
        Ok(replies)
    }
}

/// Reads ciphertext from `stream` into `tls` and the plaintext it yields into
/// `buf`, as a plain read would: `Ok(0)` is the end, `WouldBlock` nothing yet.
pub(crate) fn read_tls(
    tls: &mut rustls::ClientConnection,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut ended = false;
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock && !ended => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        }
        if tls.read_tls(stream)? == 0 {
            ended = true;
        }
        tls.process_new_packets()
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
    }
}

/// One client connection: one socket, or with --ketama one socket per endpoint
/// (its links), and the state that picks its requests.
pub(crate) struct Conn {
    pub(crate) links: Vec<Link>,
    /// Requests awaiting replies, over all links.
    pub(crate) in_flight: usize,
    /// Keys that missed and are to be set (cache-aside), oldest first.
    pub(crate) to_set: VecDeque<u64>,
    pub(crate) rng: Rng,
    /// Position in the set:get cycle.
    pub(crate) cycle: u32,
    /// Next key of the sequential pattern.
    pub(crate) seq_next: u64,
    /// Requests kept in flight in the current phase (over all links).
    pub(crate) depth: usize,
    /// Requests this connection may still send (`None`: until told to stop).
    pub(crate) quota: Option<u64>,
    pub(crate) source: Source,
}

impl Conn {
    /// Opens one link to each of `addrs` (one address unless --ketama routes).
    pub(crate) fn open(addrs: &[String], plan: &Plan, index: usize) -> Result<Conn, String> {
        let links = addrs
            .iter()
            .map(|addr| Link::open(addr, plan))
            .collect::<Result<Vec<_>, _>>()?;
        let conns = plan.connections() as u64;
        Ok(Conn {
            links,
            in_flight: 0,
            to_set: VecDeque::with_capacity(plan.window_max),
            rng: Rng(plan.seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            cycle: 0,
            seq_next: plan.key_space / conns.max(1) * index as u64 % plan.key_space,
            depth: plan.pipeline,
            quota: None,
            source: Source::Workload,
        })
    }

    /// The next request to send, or `None` if this connection has no more to send.
    pub(crate) fn next_request(&mut self, plan: &Plan) -> Option<(Op, u64)> {
        if self.quota == Some(0) {
            return None;
        }
        let next = match &mut self.source {
            Source::Prefill { next, end } => {
                if *next >= *end {
                    return None;
                }
                *next += 1;
                (Op::Set, *next - 1)
            }
            Source::Workload => {
                if let Some(id) = self.to_set.pop_front() {
                    (Op::Set, id)
                } else {
                    let op = if plan.cache_aside {
                        Op::Get
                    } else {
                        let op = if self.cycle < plan.sets_per_cycle {
                            Op::Set
                        } else {
                            Op::Get
                        };
                        self.cycle = (self.cycle + 1) % (plan.sets_per_cycle + plan.gets_per_cycle);
                        op
                    };
                    let id = match plan.key_pattern {
                        KeyPattern::Uniform => self.rng.below(plan.key_space),
                        KeyPattern::Sequential => {
                            let id = self.seq_next;
                            self.seq_next = (self.seq_next + 1) % plan.key_space;
                            id
                        }
                        KeyPattern::Zipf => plan
                            .zipf
                            .as_ref()
                            .expect("a zipf plan has a generator")
                            .draw(&mut self.rng),
                    };
                    (op, id)
                }
            }
        };
        if let Some(q) = &mut self.quota {
            *q -= 1;
        }
        Some(next)
    }

    /// Whether no link is part way through writing its buffer.
    pub(crate) fn no_partial_write(&self) -> bool {
        self.links.iter().all(|l| l.out_pos == 0)
    }

    /// Whether nothing is in flight nor waiting to be written.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight == 0 && self.links.iter().all(|l| l.out.is_empty())
    }

    /// Tops the window up to the pipeline depth, each request on the link of
    /// its key's owner (the only link unless --ketama routes).
    pub(crate) fn refill(&mut self, plan: &Plan, values: &[u8], now: Instant) {
        while self.in_flight < self.depth {
            let Some((op, id)) = self.next_request(plan) else {
                break;
            };
            let len = if plan.value_min == plan.value_max {
                plan.value_min
            } else {
                plan.value_min
                    + self.rng.below((plan.value_max - plan.value_min + 1) as u64) as usize
            };
            let link = plan.route.as_ref().map_or(0, |r| r[id as usize] as usize);
            let link = &mut self.links[link];
            put_request(&mut link.out, plan, op, id, &values[..len]);
            link.inflight.push_back(InFlight { op, id, sent: now });
            self.in_flight += 1;
        }
    }

    /// Reads once from link `l` and handles every complete reply.
    pub(crate) fn read_replies(
        &mut self,
        l: usize,
        plan: &Plan,
        tally: &mut Tally,
        counting: bool,
        now: Instant,
    ) -> Result<(), String> {
        let replies = self.links[l].read_replies(plan, tally, counting, now, &mut self.to_set)?;
        self.in_flight -= replies;
        Ok(())
    }
}

//! A node of the cluster file played by the test: it answers as a healthy,
//! empty peer until the test tells it to send garbage or to hang (does I/O:
//! listeners, and a thread per connection).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringcache::cluster::auth::Secret;
use ringcache::cluster::seal::{End, Opened, Sealing, FRAME_LEN_BYTES};

/// What the fake peer of `garbage_peer_is_disconnected_and_logged` answers.
const GARBAGE: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nhello";

/// How a fake node misbehaves once the test calls [`FakePeer::misbehave`].
/// Until then it answers as a healthy, empty peer: the members-only handshake
/// (it holds the cluster secret), nothing to other `rc` lines, `MN` to `mn`,
/// `OK` to `rc recover`, so the real nodes start with it reachable and meet
/// the fault on their data path; a connection misbehaves only once it has
/// passed the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fake {
    /// Answers the next bytes of every connection with [`GARBAGE`] and keeps
    /// the connection open.
    Garbage,
    /// Stops reading and answering, keeping every connection open.
    Hung,
}

/// A node of the cluster file played by the test: listeners on its client
/// address and on each shard endpoint. Stopped and joined on drop.
pub struct FakePeer {
    stop: Arc<AtomicBool>,
    misbehaving: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    /// Connections the node closed after this peer sent it garbage.
    closed_after_garbage: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

/// What one fake connection shares with its peer.
#[derive(Clone)]
struct FakeShared {
    kind: Fake,
    /// The cluster secret, so the fake passes the real nodes' handshake.
    secret: Secret,
    stop: Arc<AtomicBool>,
    misbehaving: Arc<AtomicBool>,
    closed: Arc<AtomicUsize>,
}

impl FakePeer {
    pub fn bind(ip: &str, ports: &[u16], kind: Fake, secret: &Secret) -> std::io::Result<FakePeer> {
        let listeners = ports
            .iter()
            .map(|&port| TcpListener::bind((ip, port)))
            .collect::<std::io::Result<Vec<TcpListener>>>()?;
        let mut fake = FakePeer {
            stop: Arc::new(AtomicBool::new(false)),
            misbehaving: Arc::new(AtomicBool::new(false)),
            accepted: Arc::new(AtomicUsize::new(0)),
            closed_after_garbage: Arc::new(AtomicUsize::new(0)),
            threads: Vec::new(),
        };
        for listener in listeners {
            listener.set_nonblocking(true)?;
            let shared = FakeShared {
                kind,
                secret: secret.clone(),
                stop: fake.stop.clone(),
                misbehaving: fake.misbehaving.clone(),
                closed: fake.closed_after_garbage.clone(),
            };
            let accepted = fake.accepted.clone();
            fake.threads.push(std::thread::spawn(move || {
                accept_loop(listener, &shared, &accepted)
            }));
        }
        Ok(fake)
    }

    /// From now on every connection, open or new, misbehaves.
    pub fn misbehave(&self) {
        self.misbehaving.store(true, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn closed_after_garbage(&self) -> usize {
        self.closed_after_garbage.load(Ordering::SeqCst)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: &FakeShared, accepted: &AtomicUsize) {
    let mut answering: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                answering.push(std::thread::spawn(move || serve_fake(stream, &shared)));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for thread in answering {
        let _ = thread.join();
    }
}

/// A fake peer's `rc challenge` to a real node's `rc hello` line, and the
/// keys that seal the connection once the node proves the secret in turn (the
/// fake takes any proof: it tests the node, not itself).
fn fake_challenge(secret: &Secret, hello: &[u8]) -> (Vec<u8>, Option<Sealing>) {
    use ringcache::cluster::auth::{encode_challenge, parse_auth_line, AuthLine};
    let line = hello.strip_suffix(b"\r\n").unwrap_or(hello);
    match parse_auth_line(line) {
        Some(AuthLine::Hello { nonce, .. }) => (
            encode_challenge(secret, &nonce, &FAKE_NONCE),
            Some(Sealing::new(secret, &nonce, &FAKE_NONCE, End::Server)),
        ),
        _ => (b"ERROR\r\n".to_vec(), None),
    }
}

/// The fake's nonce in every handshake.
const FAKE_NONCE: [u8; 16] = [9; 16];

/// One fake connection's socket: plain until the handshake's `OK`, sealed after.
struct FakeConn {
    stream: TcpStream,
    sealing: Option<Sealing>,
    /// Frame bytes read and not yet opened.
    frames: Vec<u8>,
}

impl FakeConn {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.sealing {
            Some(sealing) => {
                let mut out = Vec::new();
                sealing.send.seal(bytes, &mut out);
                self.stream.write_all(&out)
            }
            None => self.stream.write_all(bytes),
        }
    }

    /// Appends to `pending` what `bytes` just read carry: themselves, or the
    /// payloads of whole frames once sealed.
    fn received(&mut self, bytes: &[u8], pending: &mut Vec<u8>) {
        let Some(sealing) = &mut self.sealing else {
            pending.extend_from_slice(bytes);
            return;
        };
        self.frames.extend_from_slice(bytes);
        let mut at = 0;
        while let Ok(Opened::Frame { len, used }) = sealing.receive.open(&self.frames[at..]) {
            pending
                .extend_from_slice(&self.frames[at + FRAME_LEN_BYTES..at + FRAME_LEN_BYTES + len]);
            at += used;
        }
        self.frames.drain(..at);
    }
}

/// Serves one connection: as a healthy empty peer until told to misbehave,
/// then as [`Fake`] says, until the node closes it or the test ends.
fn serve_fake(stream: TcpStream, shared: &FakeShared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut conn = FakeConn {
        stream,
        sealing: None,
        frames: Vec::new(),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut answered_garbage = false;
    // The fault is on the data path: a connection passes the members-only
    // handshake first, then meets it.
    let mut authenticated = false;
    let mut keys = None;
    let mut buf = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let misbehaving = authenticated && shared.misbehaving.load(Ordering::SeqCst);
        if misbehaving && shared.kind == Fake::Hung {
            // Keep the connection open, read nothing, answer nothing.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if misbehaving => {
                let _ = n;
                if !answered_garbage {
                    // In a frame whose MAC is right: garbage the node's reply
                    // parser must catch.
                    answered_garbage = true;
                    if conn.send(GARBAGE).is_err() {
                        break;
                    }
                }
            }
            Ok(n) => {
                conn.received(&buf[..n], &mut pending);
                while let Some(nl) = pending.iter().position(|&c| c == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let challenge;
                    let reply: &[u8] = if line.starts_with(b"rc hello ") {
                        (challenge, keys) = fake_challenge(&shared.secret, &line);
                        &challenge
                    } else if line.starts_with(b"rc auth ") {
                        authenticated = true;
                        b"OK\r\n"
                    } else if line.starts_with(b"rc recover ") {
                        b"OK\r\n"
                    } else if line == b"mn\r\n" {
                        b"MN\r\n"
                    } else {
                        b""
                    };
                    if conn.send(reply).is_err() {
                        return;
                    }
                    if line.starts_with(b"rc auth ") {
                        conn.sealing = keys.take();
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    if answered_garbage && !shared.stop.load(Ordering::SeqCst) {
        shared.closed.fetch_add(1, Ordering::SeqCst);
    }
}

//! Shared helpers for the black-box tests (does I/O: processes and sockets).
//!
//! - [`Server`] starts `ringcache` (or a real `memcached`) on a free 127.0.0.1
//!   port, waits until it accepts, and kills it on drop;
//!   [`Server::ringcache_at`] starts ringcache with exactly the given flags
//!   (e.g. a cluster node, whose address comes from its cluster file) and waits
//!   on the address named.
//! - [`Client`] is a tiny blocking client that speaks raw bytes: send, read until
//!   a terminator or a timeout, read exactly N bytes, notice a closed connection.
//! - [`matches`] compares a reply with an expected pattern in which `{cas}` stands
//!   for a CAS number and `{any}` for the rest of a line.
//! - [`table`] runs the protocol tests' request/reply tables on ringcache and
//!   memcached.
//!
//! `RINGCACHE_TEST_TARGET=memcached` makes [`Server::ringcache`] start memcached
//! with the same flags instead, so every table can be proven against the
//! reference before the server exists.
#![allow(dead_code)] // each test file uses a different part of this module

pub mod table;

use ringcache::cluster::seal::Sealing;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to start accepting connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a read waits for a reply the test expects to come.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at starting a server before a port collision is called a failure.
const START_ATTEMPTS_MAX: usize = 8;

/// Which program a [`Server`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Ringcache,
    Memcached,
}

/// Whether tests that name ringcache run it, or memcached in its place.
pub fn ringcache_stands_in_for_memcached() -> bool {
    matches!(
        std::env::var("RINGCACHE_TEST_TARGET").as_deref(),
        Ok("memcached")
    )
}

/// Whether a `memcached` binary is on the PATH.
pub fn memcached_available() -> bool {
    Command::new("memcached")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Says loudly that a memcached comparison is skipped. The test command
/// (`scripts/test.sh`) installs memcached, so this only happens when tests are
/// run by hand on a machine without it.
pub fn warn_memcached_missing(test: &str) {
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! {test}: memcached is not installed: the comparison with the");
    eprintln!("!!! reference is SKIPPED. Run scripts/test.sh, which installs it.");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
}

/// A running server, killed when dropped.
pub struct Server {
    child: Child,
    /// The IPv4 address [`Server::connect`] connects to: 127.0.0.1 unless
    /// started by [`Server::ringcache_at`].
    pub ip: String,
    pub port: u16,
    pub program: Program,
    /// Human name for messages, e.g. `ringcache -t 2`.
    pub name: String,
    log_path: PathBuf,
}

impl Server {
    /// Starts ringcache with `args` (memcached's flags: `-t`, `-m`, `-c`, `-I`, `-A`…)
    /// or, under `RINGCACHE_TEST_TARGET=memcached`, memcached with the same flags.
    pub fn ringcache(args: &[&str]) -> Server {
        if ringcache_stands_in_for_memcached() {
            return Server::memcached(args).unwrap_or_else(|| {
                panic!("RINGCACHE_TEST_TARGET=memcached but memcached is not installed")
            });
        }
        Server::start(Program::Ringcache, args)
    }

    /// Starts the reference memcached with `args` added to
    /// `-U 0 -u root -t 1 -l 127.0.0.1 -p PORT` (a later `-t` wins).
    /// `None`, after a loud warning, when memcached is not installed.
    pub fn memcached(args: &[&str]) -> Option<Server> {
        if !memcached_available() {
            warn_memcached_missing("memcached reference");
            return None;
        }
        Some(Server::start(Program::Memcached, args))
    }

    fn start(program: Program, args: &[&str]) -> Server {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            let port = free_port();
            match Server::try_start(program, args, port) {
                Ok(server) => return server,
                Err(StartError::PortTaken(message)) => last_error = message,
                Err(StartError::Failed(message)) => panic!("{message}"),
            }
        }
        panic!("could not start {program:?} on a free port: {last_error}");
    }

    /// Starts ringcache with exactly `args` (no `-l`/`-p` added) and waits until
    /// it accepts on `ip:port`, e.g. a cluster node whose addresses come from
    /// its cluster file. Panics if it does not start.
    pub fn ringcache_at(ip: &str, port: u16, args: &[&str]) -> Server {
        match Server::try_ringcache_at(ip, port, args) {
            Ok(server) => server,
            Err(StartError::PortTaken(message)) | Err(StartError::Failed(message)) => {
                panic!("{message}")
            }
        }
    }

    /// Like [`Server::ringcache_at`], but says why it did not start, so that a
    /// caller that chose the ports can choose others when one was taken.
    pub fn try_ringcache_at(ip: &str, port: u16, args: &[&str]) -> Result<Server, StartError> {
        let ipv4: Ipv4Addr = ip
            .parse()
            .unwrap_or_else(|_| panic!("{ip:?} is not an IPv4 address"));
        Server::spawn_and_wait(
            Program::Ringcache,
            env!("CARGO_BIN_EXE_ringcache"),
            args.to_vec(),
            args,
            ip,
            Some(ipv4),
            port,
        )
    }

    fn try_start(program: Program, args: &[&str], port: u16) -> Result<Server, StartError> {
        let port_text = port.to_string();
        let (binary, mut argv): (&str, Vec<&str>) = match program {
            Program::Ringcache => (
                env!("CARGO_BIN_EXE_ringcache"),
                vec!["-l", "127.0.0.1", "-p", &port_text],
            ),
            Program::Memcached => (
                "memcached",
                vec![
                    "-U",
                    "0",
                    "-u",
                    "root",
                    "-t",
                    "1",
                    "-l",
                    "127.0.0.1",
                    "-p",
                    &port_text,
                ],
            ),
        };
        argv.extend_from_slice(args);
        Server::spawn_and_wait(program, binary, argv, args, "127.0.0.1", None, port)
    }

    /// Runs `binary` with `argv`, its output to a log file, and waits until it
    /// listens on `port`: on `only_ip` (or the wildcard address) when given,
    /// else on any address; connections are tried on `ip`.
    fn spawn_and_wait(
        program: Program,
        binary: &str,
        argv: Vec<&str>,
        args: &[&str],
        ip: &str,
        only_ip: Option<Ipv4Addr>,
        port: u16,
    ) -> Result<Server, StartError> {
        let name = format!(
            "{} {}",
            match program {
                Program::Ringcache => "ringcache",
                Program::Memcached => "memcached",
            },
            args.join(" ")
        )
        .trim()
        .to_string();
        let log_path = log_path_for(program, port);
        let log = File::create(&log_path).expect("create server log file");
        let child = Command::new(binary)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| StartError::Failed(format!("cannot run {binary}: {e}")))?;
        let mut server = Server {
            child,
            ip: ip.to_string(),
            port,
            program,
            name,
            log_path,
        };
        server.wait_until_listening(only_ip)?;
        Ok(server)
    }

    /// Waits until the child listens on its port, and checks that every listening
    /// socket on the port is the child's: with `SO_REUSEPORT` two servers could
    /// share a port, and a connect alone cannot tell whose socket answered.
    /// With `only_ip`, only sockets on that address (or the wildcard) count.
    fn wait_until_listening(&mut self, only_ip: Option<Ipv4Addr>) -> Result<(), StartError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll server process") {
                let log = self.log();
                let message = format!(
                    "{} exited before accepting connections ({status}); its output:\n{log}",
                    self.name
                );
                return if log.contains("in use") {
                    Err(StartError::PortTaken(message))
                } else {
                    Err(StartError::Failed(message))
                };
            }
            let listeners = listening_inodes(only_ip, self.port);
            let ours = socket_inodes_of(self.child.id());
            let foreign = listeners
                .iter()
                .filter(|inode| !ours.contains(inode))
                .count();
            let mine = listeners.len() - foreign;
            if mine > 0 && foreign > 0 {
                return Err(StartError::PortTaken(format!(
                    "port {} is shared with another process",
                    self.port
                )));
            }
            if mine > 0 && TcpStream::connect((self.ip.as_str(), self.port)).is_ok() {
                return Ok(());
            }
            if foreign > 0 && Instant::now() > deadline {
                return Err(StartError::PortTaken(format!(
                    "port {} is held by another process",
                    self.port
                )));
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "{} did not accept connections on {}:{} within {:?}; its output:\n{}",
                    self.name,
                    self.ip,
                    self.port,
                    STARTUP_TIMEOUT,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connects a new [`Client`].
    pub fn connect(&self) -> Client {
        Client::connect_at(&self.ip, self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (a `libc` signal number such as 15 for SIGTERM) and waits up
    /// to `patience` for the process to end: its exit status, or `None` if it is
    /// still running (the caller fails; the server is killed on drop).
    pub fn signal_and_wait(&mut self, signal: i32, patience: Duration) -> Option<ExitStatus> {
        let signal = nix::sys::signal::Signal::try_from(signal).expect("a valid signal number");
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the server");
        self.wait_for_exit(patience)
    }

    /// Waits up to `patience` for the process to end by itself.
    pub fn wait_for_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory of the server now, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident memory of the server so far, in bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Why a server did not start.
#[derive(Debug)]
pub enum StartError {
    /// Its port was in use (by another process, or shared with one).
    PortTaken(String),
    Failed(String),
}

/// A port nobody listens on right now: bind `127.0.0.1:0`, read it, drop it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// The first of `count` consecutive ports free on 127.0.0.1 now (a node with
/// `--shard-ports`, or several nodes, each on its own port).
pub fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base.checked_add(count).is_some()
            && (1..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// A fresh directory of one test's own under the temporary directory, named
/// by `name` and this process, emptied if an earlier run left it behind.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringcache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's directory");
    dir
}

/// A new directory under the temporary directory on every call, named by
/// `name`, this process and a count, for a fixture a test process makes more
/// than once (a cluster, a set of certificates); the caller removes it.
pub fn numbered_dir(name: &str) -> PathBuf {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringcache-{name}-{}-{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the test's directory");
    dir
}

fn log_path_for(program: Program, port: u16) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "ringcache-test-{}-{:?}-{port}-{n}.log",
        std::process::id(),
        program
    ))
}

/// Inodes of the sockets listening on `port` (Linux): on any address, or with
/// `only_ip` on that address or the IPv4 wildcard.
fn listening_inodes(only_ip: Option<Ipv4Addr>, port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    // The calling thread's network namespace (a test may run in its own).
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let Some((ip_hex, port_hex)) = fields[1].rsplit_once(':') else {
                continue;
            };
            if let Some(ip) = only_ip {
                // The kernel prints the address's four bytes as one native-endian
                // word; IPv6 entries (32 hex digits) never match an IPv4 address.
                let Ok(word) = u32::from_str_radix(ip_hex, 16).map(u32::to_ne_bytes) else {
                    continue;
                };
                let listening_on = Ipv4Addr::from(word);
                if ip_hex.len() != 8 || (listening_on != ip && !listening_on.is_unspecified()) {
                    continue;
                }
            }
            if u16::from_str_radix(port_hex, 16) == Ok(port) {
                if let Ok(inode) = fields[9].parse() {
                    inodes.push(inode);
                }
            }
        }
    }
    inodes
}

/// Inodes of every socket the process `pid` holds (across all its threads' fd table).
fn socket_inodes_of(pid: u32) -> Vec<u64> {
    let mut inodes = Vec::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return inodes;
    };
    for entry in entries.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// A `kB` field of `/proc/PID/status`, e.g. `VmRSS:`.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Why a read ended without what the test waited for.
#[derive(Debug)]
pub enum ReadFailure {
    /// Nothing more came within the timeout; what did come is kept.
    Timeout(Vec<u8>),
    /// The server closed the connection; what came before is kept.
    Closed(Vec<u8>),
}

impl ReadFailure {
    pub fn received(&self) -> &[u8] {
        match self {
            ReadFailure::Timeout(bytes) | ReadFailure::Closed(bytes) => bytes,
        }
    }
}

/// A blocking client that speaks raw bytes.
pub struct Client {
    stream: TcpStream,
    /// Bytes read from the socket and not yet handed to the test.
    pending: Vec<u8>,
    closed: bool,
    /// After the members-only handshake: the frame keys, and the frame bytes
    /// read and not yet opened.
    sealed: Option<(Sealing, Vec<u8>)>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::connect_at("127.0.0.1", port)
    }

    /// Connects to `ip:port`, panicking if that fails.
    pub fn connect_at(ip: &str, port: u16) -> Client {
        Client::try_connect_at(ip, port).unwrap_or_else(|e| panic!("connect to {ip}:{port}: {e}"))
    }

    /// A client over a connection made elsewhere (e.g. from a chosen address).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Client {
            stream,
            pending: Vec::new(),
            closed: false,
            sealed: None,
        }
    }

    /// Connects to `ip:port`, or says why not (for callers that poll a server
    /// that may not listen yet, or not any more).
    pub fn try_connect_at(ip: &str, port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect((ip, port))?;
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Ok(Client {
            stream,
            pending: Vec::new(),
            closed: false,
            sealed: None,
        })
    }

    /// Writes all of `bytes`. A server that closed the connection is not a
    /// failure here: the read that follows reports it.
    pub fn send(&mut self, bytes: &[u8]) {
        let mut frames = Vec::new();
        let bytes = match &mut self.sealed {
            Some((sealing, _)) => {
                sealing.send.seal(bytes, &mut frames);
                &frames[..]
            }
            None => bytes,
        };
        if let Err(e) = self.stream.write_all(bytes) {
            if is_disconnect(&e) {
                self.closed = true;
            } else {
                panic!("send: {e}");
            }
        }
    }

    /// Writes `bytes` with a deadline, for clients that never read: returns how
    /// many bytes went out before the socket stopped taking more.
    pub fn send_until_blocked(&mut self, bytes: &[u8], timeout: Duration) -> usize {
        assert!(self.sealed.is_none(), "a plain client's call");
        self.stream
            .set_write_timeout(Some(timeout))
            .expect("set write timeout");
        let mut sent = 0;
        while sent < bytes.len() {
            match self.stream.write(&bytes[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.stream
            .set_write_timeout(None)
            .expect("clear write timeout");
        sent
    }

    /// Reads more bytes into `pending`, waiting at most `timeout`.
    /// Returns false on timeout or when the connection is closed.
    fn fill(&mut self, timeout: Duration) -> bool {
        if self.closed {
            return false;
        }
        let timeout = timeout.max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return false;
                }
                Ok(n) => {
                    self.received(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return false
                }
                Err(e) if is_disconnect(&e) => {
                    self.closed = true;
                    return false;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until `terminator` arrives; returns everything up to and including it.
    pub fn read_until(
        &mut self,
        terminator: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ReadFailure> {
        self.read_until_nth(terminator, 1, timeout)
    }

    /// Like [`Client::read_until`], but returns after the `n`th occurrence.
    pub fn read_until_nth(
        &mut self,
        terminator: &[u8],
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ReadFailure> {
        assert!(n > 0 && !terminator.is_empty());
        let deadline = Instant::now() + timeout;
        let mut searched_from = 0;
        let mut seen = 0;
        loop {
            while let Some(at) = find(&self.pending[searched_from..], terminator) {
                let end = searched_from + at + terminator.len();
                seen += 1;
                searched_from = end;
                if seen == n {
                    return Ok(self.pending.drain(..end).collect());
                }
            }
            // Keep a terminator that straddles two reads findable.
            searched_from =
                searched_from.max(self.pending.len().saturating_sub(terminator.len() - 1));
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadFailure::Timeout(std::mem::take(&mut self.pending)));
            }
            if !self.fill(deadline - now) {
                if self.closed {
                    return Err(ReadFailure::Closed(std::mem::take(&mut self.pending)));
                }
                if Instant::now() >= deadline {
                    return Err(ReadFailure::Timeout(std::mem::take(&mut self.pending)));
                }
            }
        }
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_n(&mut self, n: usize, timeout: Duration) -> Result<Vec<u8>, ReadFailure> {
        let deadline = Instant::now() + timeout;
        while self.pending.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadFailure::Timeout(std::mem::take(&mut self.pending)));
            }
            if !self.fill(deadline - now) && self.closed {
                return Err(ReadFailure::Closed(std::mem::take(&mut self.pending)));
            }
        }
        Ok(self.pending.drain(..n).collect())
    }

    /// Everything that arrives until the server has been quiet for `quiet`
    /// (or closed the connection).
    pub fn read_available(&mut self, quiet: Duration) -> Vec<u8> {
        while self.fill(quiet) {}
        std::mem::take(&mut self.pending)
    }

    /// Whether the server closes the connection within `timeout` (bytes that
    /// arrive first are dropped).
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed && Instant::now() < deadline {
            self.fill(deadline.saturating_duration_since(Instant::now()));
            self.pending.clear();
        }
        self.closed
    }

    /// Whether a read has seen the connection closed.
    pub fn has_seen_close(&self) -> bool {
        self.closed
    }

    /// Sends `request` and reads the reply up to and including `terminator`.
    pub fn call(&mut self, request: &[u8], terminator: &[u8]) -> Vec<u8> {
        self.send(request);
        self.read_until(terminator, REPLY_TIMEOUT)
            .unwrap_or_else(|failure| {
                panic!(
                    "request {} got no reply ending in {}: {failure:?} (received {})",
                    show(request),
                    show(terminator),
                    show(failure.received())
                )
            })
    }

    /// Stores `value` under `key` and checks the reply.
    pub fn set(&mut self, key: &str, value: &[u8]) {
        let mut request = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        let reply = self.call(&request, b"\r\n");
        assert_eq!(show(&reply), "STORED\\r\\n", "set {key}");
    }

    /// The value of `key`, or None on a miss.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.send(format!("get {key}\r\n").as_bytes());
        let line = self
            .read_until(b"\r\n", REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("get {key}: {f:?}"));
        if line == b"END\r\n" {
            return None;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        assert!(
            fields.len() == 4 && fields[0] == "VALUE" && fields[1] == key,
            "get {key}: unexpected header {text:?}"
        );
        let len: usize = fields[3].parse().expect("value length");
        let body = self
            .read_exact_n(len + 2 + 5, REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("get {key}: {f:?}"));
        assert_eq!(&body[len..], b"\r\nEND\r\n", "get {key}: bad framing");
        Some(body[..len].to_vec())
    }

    /// `stats` as (name, value) pairs.
    pub fn stats(&mut self, which: &str) -> Vec<(String, String)> {
        let request = if which.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {which}\r\n")
        };
        let reply = self.call(request.as_bytes(), b"END\r\n");
        String::from_utf8_lossy(&reply)
            .lines()
            .filter_map(|line| line.strip_prefix("STAT "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// One `stats` value (`which` as in [`Client::stats`]), as a number.
    pub fn stat_u64(&mut self, which: &str, name: &str) -> Option<u64> {
        self.stats(which)
            .into_iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
    }

    /// Takes in bytes read: as they are, or the payloads of the whole frames
    /// among them once the connection is sealed.
    fn received(&mut self, bytes: &[u8]) {
        use ringcache::cluster::seal::{Opened, FRAME_LEN_BYTES};
        let Some((sealing, frames)) = &mut self.sealed else {
            self.pending.extend_from_slice(bytes);
            return;
        };
        frames.extend_from_slice(bytes);
        let mut at = 0;
        while let Opened::Frame { len, used } = sealing
            .receive
            .open(&frames[at..])
            .unwrap_or_else(|e| panic!("the node sent {e}"))
        {
            let payload = at + FRAME_LEN_BYTES;
            self.pending
                .extend_from_slice(&frames[payload..payload + len]);
            at += used;
        }
        frames.drain(..at);
    }

    /// From now on, what this client sends and reads is sealed with these
    /// keys (after the members-only handshake).
    pub fn seal(&mut self, sealing: Sealing) {
        assert!(self.pending.is_empty(), "bytes after the handshake's OK");
        self.sealed = Some((sealing, Vec::new()));
    }

    /// The client's own end of the connection, as the server sees its peer.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.stream
            .local_addr()
            .expect("local address of a connected socket")
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

/// Index of the first `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One binary request: `opcode`, `extras`, `key`, `value`, opaque `opaque`.
pub fn binary_request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut out = vec![0x80, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Bytes shown for a failure message: printable ASCII as is, `\r` `\n` escaped,
/// others as `\xNN`; long runs of one byte are shortened.
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let mut run = 1;
        while i + run < bytes.len() && bytes[i + run] == b {
            run += 1;
        }
        if run > 16 {
            out.push_str(&format!("<{run} x {}>", show(&[b])));
            i += run;
            continue;
        }
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
        i += 1;
    }
    out
}

/// Whether `reply` matches `pattern`, where `{cas}` matches one or more
/// digits, `{n}` one or more digits that are not a CAS (a TTL or an age that
/// depends on the clock), and `{any}` anything up to the end of the line. The
/// CAS numbers matched are returned in order.
pub fn matches(pattern: &[u8], reply: &[u8]) -> Option<Vec<u64>> {
    let mut cas_values = Vec::new();
    let (mut p, mut r) = (0, 0);
    while p < pattern.len() {
        if pattern[p..].starts_with(b"{cas}") {
            let digits = reply[r..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let text = std::str::from_utf8(&reply[r..r + digits]).ok()?;
            cas_values.push(text.parse().ok()?);
            r += digits;
            p += b"{cas}".len();
        } else if pattern[p..].starts_with(b"{n}") {
            let digits = reply[r..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            r += digits;
            p += b"{n}".len();
        } else if pattern[p..].starts_with(b"{any}") {
            while r < reply.len() && reply[r] != b'\r' && reply[r] != b'\n' {
                r += 1;
            }
            p += b"{any}".len();
        } else {
            if r >= reply.len() || reply[r] != pattern[p] {
                return None;
            }
            p += 1;
            r += 1;
        }
    }
    (r == reply.len()).then_some(cas_values)
}

/// A small, fast, seedable PRNG (SplitMix64), so that failing random tests
/// replay exactly from their seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of a random test: `RINGCACHE_SEED` if set, else from the clock.
pub fn seed_from_env_or_clock() -> u64 {
    if let Ok(text) = std::env::var("RINGCACHE_SEED") {
        return text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RINGCACHE_SEED={text:?} is not a u64"));
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Seconds since the Unix epoch, for absolute expiry times.
pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// How long a lone client waits between requests: long enough for an idle
/// shard to park (it parks after a few empty passes, microseconds).
pub const LONE_CLIENT_PAUSE: Duration = Duration::from_millis(1);

/// The median time of `count` sequential `get key` round trips on one
/// connection, each sent [`LONE_CLIENT_PAUSE`] after the previous reply is
/// whole: what a lone client sees, with no other traffic to keep the server
/// awake and time for it to park between requests.
pub fn median_get_round_trip(client: &mut Client, key: &str, count: usize) -> Duration {
    let request = format!("get {key}\r\n");
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            std::thread::sleep(LONE_CLIENT_PAUSE);
            let started = Instant::now();
            let reply = client.call(request.as_bytes(), b"END\r\n");
            let elapsed = started.elapsed();
            assert!(reply.starts_with(b"VALUE "), "get {key}: {}", show(&reply));
            elapsed
        })
        .collect();
    times.sort();
    times[count / 2]
}

/// Runs the admin client, `ringcache cluster <args>`: whether it exited 0, and
/// its standard output followed by its standard error.
pub fn ringcache_cluster(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .arg("cluster")
        .args(args)
        .output()
        .expect("run ringcache cluster");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The members-only handshake, as an admin, on a test's client: cluster
/// lines (`rc ...`) are then accepted on it, and it is sealed.
pub fn authenticate(client: &mut Client, secret: &ringcache::cluster::auth::Secret) {
    let (mut handshake, hello) = ringcache::cluster::auth::ClientHandshake::start("admin", [7; 16]);
    client.send(&hello);
    let challenge = client
        .read_until(b"\r\n", REPLY_TIMEOUT)
        .expect("an rc challenge");
    let auth = handshake
        .on_challenge(secret, &challenge[..challenge.len() - 2])
        .expect("the node holds the cluster's secret");
    let answer = client.call(&auth, b"\r\n");
    assert_eq!(show(&answer), show(b"OK\r\n"));
    let sealing = handshake
        .on_answer(secret, &answer)
        .expect("welcomed as a member");
    client.seal(sealing);
}

/// Writes a fresh cluster secret to `path` (mode 0600) and returns it.
pub fn write_secret(path: &Path) -> ringcache::cluster::auth::Secret {
    use std::os::unix::fs::OpenOptionsExt;
    let bytes: [u8; 32] = ringcache::runtime::auth::random_bytes().expect("random bytes");
    let secret = ringcache::cluster::auth::Secret::from_bytes(&bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create the cluster secret");
    file.write_all(secret.file_text().as_bytes())
        .expect("write the cluster secret");
    secret
}

/// Moves the calling test thread (and the processes it starts from now on)
/// into a network namespace of its own, with its loopback up, so that
/// nftables rules can cut the links between nodes without touching anything
/// else. `false`, after a loud warning naming `what` is skipped, when that
/// cannot be done here (not root, or `nft` missing: `scripts/test.sh`
/// installs it).
pub fn own_network_namespace(what: &str) -> bool {
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("!!!! {what} skipped: nft missing (apt-get install nftables) !!!!");
        return false;
    }
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!("!!!! {what} skipped: no network namespace of its own ({e}); run as root !!!!");
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up");
    true
}

/// Runs `nft` with `args` in the calling thread's namespace.
pub fn nft(args: &str) {
    let status = Command::new("nft")
        .args(args.split(' '))
        .status()
        .expect("run nft");
    assert!(status.success(), "nft {args}");
}

/// Drops every packet between address `cut` and each of `others` (both ways),
/// in an nftables table of its own that [`heal_partition`] removes.
pub fn partition(cut: &str, others: &[String]) {
    let others = others.join(", ");
    nft("add table inet partition");
    nft("add chain inet partition out { type filter hook output priority 0 ; }");
    nft(&format!(
        "add rule inet partition out ip saddr {cut} ip daddr {{ {others} }} drop"
    ));
    nft(&format!(
        "add rule inet partition out ip saddr {{ {others} }} ip daddr {cut} drop"
    ));
}

/// Lifts [`partition`].
pub fn heal_partition() {
    nft("delete table inet partition");
}

/// A README list between the stats keys markers: the names in backquotes on
/// the line that starts `- {list}:`.
pub fn documented_keys(list: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let begin = readme
        .find("<!-- stats keys: begin -->")
        .expect("README has the stats keys markers");
    let end = readme.find("<!-- stats keys: end -->").expect("end marker");
    let line = readme[begin..end]
        .lines()
        .find(|l| l.starts_with(&format!("- {list}:")))
        .unwrap_or_else(|| panic!("README lists no {list:?}"));
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

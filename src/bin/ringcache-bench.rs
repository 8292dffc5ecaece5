//! ringcache-bench: a memtier_benchmark-like load generator for any server that
//! speaks memcached's text (or meta) protocol. It does I/O: plain threads, each
//! driving its connections through one epoll set with non-blocking sockets.
//!
//! It is built to cost the server under test as little CPU as possible: every
//! buffer is allocated before the run, requests are written in place (no
//! formatting machinery, no allocation per request), replies are measured, not
//! copied, and all the replies of one read are handled before the next write.
//! Its own CPU time per request (getrusage) is printed so a reader can tell
//! whether the generator or the server was the bottleneck.
//!
//! Modes:
//! - default: a timed (`--test-time`) or counted (`--requests`) mix of sets and
//!   gets (`--ratio`), optionally after `--prefill` (every key set once);
//! - `--cache-aside`: every request is a get; a miss is followed by a set of that
//!   key, as an application filling its cache does (for hit-ratio comparisons);
//! - `--fill-until-evictions`: sets sequential keys until the server's `stats`
//!   shows an eviction, then reports how many items it holds (memory density).
//!
//! Requests go to `--servers`, connection i to server i mod n; with `--ketama`
//! each connection instead holds one socket per endpoint and sends each request
//! to the endpoint owning its key on their ketama ring, as a ketama client does.
//!
//! Progress goes to stderr once a second; the summary goes to stdout, as text or
//! (with `--json`) as one JSON object.

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{getrusage, UsageWho};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Bytes read from a socket at once; one read usually holds every reply of a window.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// Largest value `--data-size` accepts (memcached's default `-I` is 1 MiB).
const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Deepest pipeline accepted.
const PIPELINE_MAX: usize = 4096;
/// Most connections in all.
const CONNECTIONS_MAX: usize = 10_000;
/// How long an idle epoll wait lasts before the worker looks at the phase again.
const EPOLL_WAIT_MS: u16 = 50;
/// How long a worker waits for replies still in flight when the run ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests each connection keeps in flight while prefilling, whatever `--pipeline` is.
const PREFILL_PIPELINE: usize = 64;
/// Sets written between two `stats` checks in `--fill-until-evictions`.
const FILL_BATCH_SETS: u64 = 2000;
/// Latency histogram range, in nanoseconds: 1 ns to 60 s, 3 significant figures.
const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// Largest --key-space with --ketama: the owner of every key is looked up once
/// before the run and kept in a table of 2 bytes a key.
const KETAMA_KEY_SPACE_MAX: u64 = 1 << 26;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ringcache-bench",
    about = "Load generator for memcached-protocol servers (memtier_benchmark-like)"
)]
struct Args {
    /// Servers, host:port, comma separated; connection i goes to server i mod n.
    /// See --ketama for routing each request to its key's owner instead.
    #[arg(
        short = 's',
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:11211"
    )]
    servers: Vec<String>,
    /// Worker threads.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Connections per thread.
    #[arg(short = 'c', long, default_value_t = 50)]
    clients: usize,
    /// Requests each connection keeps in flight (with --ketama: in all, over
    /// the connection's sockets).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// set:get ratio, such as 1:10.
    #[arg(long, default_value = "1:10")]
    ratio: String,
    /// Number of distinct keys (ids 0 .. key-space).
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = KeyPattern::Uniform)]
    key_pattern: KeyPattern,
    /// Zipf exponent for --key-pattern zipf (0 < theta < 1).
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Text before the key id.
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    /// Zero-pad the key id to this many digits (0: no padding).
    #[arg(long, default_value_t = 0)]
    key_digits: usize,
    /// Value size in bytes: N, or MIN-MAX for sizes drawn uniformly.
    #[arg(short = 'd', long, default_value = "32")]
    data_size: String,
    /// Expiry time sent with sets (seconds, 0: never).
    #[arg(long, default_value_t = 0)]
    expiry: u32,
    /// Measured run time in seconds (ignored with --requests).
    #[arg(long, default_value_t = 5.0)]
    test_time: f64,
    /// Measured requests in all, instead of a run time.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of load before measuring starts (with --test-time).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Wire protocol.
    #[arg(short = 'P', long, value_enum, default_value_t = Protocol::Text)]
    protocol: Protocol,
    /// Set every key once (sequentially, pipelined) before the run.
    #[arg(long)]
    prefill: bool,
    /// Every request is a get; a miss is followed by a set of that key.
    #[arg(long)]
    cache_aside: bool,
    /// Speak TLS to the servers, trusting the CA certificates in this PEM file
    /// (for `ringcache -Z` and `memcached -Z`). The handshake happens before the
    /// run; not with --fill-until-evictions.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Only keys that this endpoint owns on the ketama ring of --ring (host:port),
    /// e.g. to load one shard with keys it owns, or with keys another shard owns.
    #[arg(long, value_name = "HOST:PORT", requires = "ring")]
    owned_by: Option<String>,
    /// The ketama ring's endpoints for --owned-by, comma separated (a node's
    /// --shard-ports endpoints).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    ring: Vec<String>,
    /// Route by key, as a ketama client does: each connection (of --clients) is
    /// one socket per endpoint listed, and each request goes to the endpoint that
    /// owns its key on the ketama ring of these endpoints (160 points each, as
    /// ringcache builds its ring: give the shard endpoints of a cluster's up and
    /// down nodes, not joining ones, to send every key to its primary with no
    /// hop; or a node's --shard-ports endpoints). --pipeline stays
    /// per connection: that many requests in flight over its sockets together,
    /// so the load offered is the same as without --ketama. Replaces --servers;
    /// --key-space at most 2^26 (every key is hashed once before the run).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOST:PORT,...",
        conflicts_with_all = ["servers", "fill_until_evictions"]
    )]
    ketama: Vec<String>,
    /// Set sequential keys until the server reports an eviction; report items held.
    #[arg(long)]
    fill_until_evictions: bool,
    /// Server process ids whose CPU time (/proc/PID/stat) to report per request.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<i32>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Seed for key and size choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KeyPattern {
    Uniform,
    Sequential,
    Zipf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Text,
    Meta,
    Binary,
}

/// Everything a worker needs, checked once.
struct Plan {
    /// --servers, or with --ketama its endpoints (each connection opens them all).
    servers: Vec<String>,
    threads: usize,
    clients: usize,
    pipeline: usize,
    /// The deepest window any phase uses (buffers are sized for it).
    window_max: usize,
    sets_per_cycle: u32,
    gets_per_cycle: u32,
    key_space: u64,
    key_pattern: KeyPattern,
    zipf: Option<Zipf>,
    key_prefix: Vec<u8>,
    key_digits: usize,
    /// With --owned-by: the ids of the keys used, in order; key n is `key_ids[n]`.
    key_ids: Option<Vec<u64>>,
    /// With --ketama: key n goes to `servers[route[n]]`, its owner on the ring.
    route: Option<Vec<u16>>,
    value_min: usize,
    value_max: usize,
    expiry: u32,
    requests: Option<u64>,
    protocol: Protocol,
    prefill: bool,
    cache_aside: bool,
    seed: u64,
    /// `--tls-ca`: every connection speaks TLS, trusting these CAs.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TLS client configuration that trusts the PEM certificates in `ca_file`.
fn tls_client_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
    }
    // The same provider the server uses (see src/runtime/tls.rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("--tls-ca: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Plan {
    fn connections(&self) -> usize {
        self.threads * self.clients
    }

    /// Sockets per connection: one, or with --ketama one per endpoint.
    fn links_per_conn(&self) -> usize {
        if self.route.is_some() {
            self.servers.len()
        } else {
            1
        }
    }
}

fn parse_ratio(text: &str) -> Result<(u32, u32), String> {
    let (s, g) = text
        .split_once(':')
        .ok_or_else(|| format!("--ratio {text:?}: expected SETS:GETS, such as 1:10"))?;
    let s: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("--ratio {text:?}: bad set count"))?;
    let g: u32 = g
        .trim()
        .parse()
        .map_err(|_| format!("--ratio {text:?}: bad get count"))?;
    if s + g == 0 {
        return Err(format!(
            "--ratio {text:?}: at least one of the two must be non-zero"
        ));
    }
    Ok((s, g))
}

fn parse_data_size(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--data-size {text:?}: expected N or MIN-MAX bytes");
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let n = text.trim().parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    if min > max || max > VALUE_BYTES_MAX {
        return Err(format!(
            "--data-size {text:?}: need MIN <= MAX <= {VALUE_BYTES_MAX}"
        ));
    }
    Ok((min, max))
}

impl Plan {
    fn from_args(args: &Args) -> Result<Plan, String> {
        if args.servers.is_empty() {
            return Err("--servers: at least one host:port".into());
        }
        if args.threads == 0 || args.clients == 0 || args.connections_total() > CONNECTIONS_MAX {
            return Err(format!(
                "--threads x --clients must be 1 to {CONNECTIONS_MAX}"
            ));
        }
        if !args.ketama.is_empty() {
            if args.connections_total().saturating_mul(args.ketama.len()) > CONNECTIONS_MAX {
                return Err(format!(
                    "--threads x --clients x --ketama endpoints must be at most {CONNECTIONS_MAX}"
                ));
            }
            if args.key_space > KETAMA_KEY_SPACE_MAX {
                return Err(format!(
                    "--key-space {}: at most {KETAMA_KEY_SPACE_MAX} with --ketama",
                    args.key_space
                ));
            }
        }
        if args.pipeline == 0 || args.pipeline > PIPELINE_MAX {
            return Err(format!("--pipeline must be 1 to {PIPELINE_MAX}"));
        }
        if args.key_space == 0 {
            return Err("--key-space must be at least 1".into());
        }
        let (sets_per_cycle, gets_per_cycle) = parse_ratio(&args.ratio)?;
        let (value_min, value_max) = parse_data_size(&args.data_size)?;
        let zipf = match args.key_pattern {
            KeyPattern::Zipf => Some(Zipf::new(args.key_space, args.zipf_theta)?),
            _ => None,
        };
        if args.requests.is_none() && (args.test_time.is_nan() || args.test_time <= 0.0) {
            return Err("--test-time must be positive (or give --requests)".into());
        }
        if args.requests.is_some() && args.warmup > 0.0 {
            return Err("--warmup goes with --test-time, not --requests".into());
        }
        let key_ids = match &args.owned_by {
            None => None,
            Some(endpoint) => {
                if args.fill_until_evictions {
                    return Err("--owned-by does not go with --fill-until-evictions".into());
                }
                Some(owned_key_ids(args, endpoint)?)
            }
        };
        let ring = if args.ketama.is_empty() {
            None
        } else {
            Some(ketama_ring(&args.ketama)?)
        };
        let mut plan = Plan {
            servers: if ring.is_some() {
                args.ketama.clone()
            } else {
                args.servers.clone()
            },
            threads: args.threads,
            clients: args.clients,
            pipeline: args.pipeline,
            window_max: if args.prefill {
                args.pipeline.max(PREFILL_PIPELINE)
            } else {
                args.pipeline
            },
            sets_per_cycle,
            gets_per_cycle,
            key_space: args.key_space,
            key_pattern: args.key_pattern,
            zipf,
            key_prefix: args.key_prefix.as_bytes().to_vec(),
            key_digits: args.key_digits,
            key_ids,
            route: None,
            value_min,
            value_max,
            expiry: args.expiry,
            requests: args.requests,
            protocol: args.protocol,
            prefill: args.prefill,
            cache_aside: args.cache_aside,
            seed: args.seed,
            tls: args.tls_ca.as_deref().map(tls_client_config).transpose()?,
        };
        if let Some(ring) = ring {
            plan.route = Some(route_table(&plan, &ring));
        }
        Ok(plan)
    }
}

impl Args {
    fn connections_total(&self) -> usize {
        self.threads.saturating_mul(self.clients)
    }
}

// ---------------------------------------------------------------------------
// Key choice

/// splitmix64: small, fast, good enough to pick keys and sizes.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (no division).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf-distributed ranks over `0..n`, as YCSB's ZipfianGenerator draws them
/// (Gray et al., "Quickly generating billion-record synthetic databases"):
/// O(n) set-up, O(1) per draw. Rank 0 is the most popular key.
struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Result<Zipf, String> {
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!(
                "--zipf-theta {theta}: must be between 0 and 1, exclusive"
            ));
        }
        let zetan: f64 = (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let zeta2 = 1.0 + 0.5f64.powf(theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Ok(Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        })
    }

    fn draw(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

// ---------------------------------------------------------------------------
// Requests and replies (pure)

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

/// How one reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Hit,
    Miss,
    Stored,
    /// Any other reply: `NOT_STORED`, `SERVER_ERROR ...`, `ERROR`, ...
    Error,
}

/// Writes `n` in decimal, zero-padded to `digits`, without allocating.
fn put_decimal(out: &mut Vec<u8>, mut n: u64, digits: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    for _ in len..digits {
        out.push(b'0');
    }
    out.extend_from_slice(&tmp[i..]);
}

fn put_key(out: &mut Vec<u8>, plan: &Plan, id: u64) {
    let id = plan.key_ids.as_ref().map_or(id, |ids| ids[id as usize]);
    out.extend_from_slice(&plan.key_prefix);
    put_decimal(out, id, plan.key_digits);
}

/// The first `--key-space` key ids whose keys `endpoint` owns on the ketama ring
/// of `--ring` (the ring ringcache builds from its --shard-ports endpoints).
fn owned_key_ids(args: &Args, endpoint: &str) -> Result<Vec<u64>, String> {
    use ringcache::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
    let split = |e: &str| -> Result<(String, u16), String> {
        let (host, port) = e.rsplit_once(':').ok_or(format!("{e}: not host:port"))?;
        let port = port.parse().map_err(|_| format!("{e}: bad port"))?;
        Ok((host.to_string(), port))
    };
    let names = args
        .ring
        .iter()
        .map(|e| split(e).map(|(h, p)| ketama_name(&h, p)))
        .collect::<Result<Vec<_>, _>>()?;
    let (host, port) = split(endpoint)?;
    let wanted = names
        .iter()
        .position(|n| *n == ketama_name(&host, port))
        .ok_or(format!("--owned-by {endpoint} is not in --ring"))?;
    let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
    let mut ids = Vec::with_capacity(args.key_space as usize);
    let mut key = Vec::new();
    let mut id = 0u64;
    while (ids.len() as u64) < args.key_space {
        key.clear();
        key.extend_from_slice(args.key_prefix.as_bytes());
        put_decimal(&mut key, id, args.key_digits);
        if ring.owner(&key).shard as usize == wanted {
            ids.push(id);
        }
        id += 1;
    }
    Ok(ids)
}

/// The ketama ring of the --ketama endpoints, as ringcache builds it from a
/// cluster's shard endpoints (`cluster::placement`): the same names, the same
/// points per endpoint. An owner's `shard` is the endpoint's index in the list.
/// (Two endpoints' points that hash alike sort by that index, where the nodes
/// sort them by node id and shard: list endpoints in that order to agree even
/// on such ties.)
fn ketama_ring(endpoints: &[String]) -> Result<ringcache::cluster::ring::Ring, String> {
    use ringcache::cluster::config::Endpoint;
    use ringcache::cluster::ring::{Ring, POINTS_PER_SERVER_DEFAULT};
    if endpoints.len() > u16::MAX as usize {
        return Err(format!("--ketama: at most {} endpoints", u16::MAX));
    }
    let mut names = Vec::with_capacity(endpoints.len());
    for text in endpoints {
        let endpoint = Endpoint::parse(text).map_err(|e| format!("--ketama: {e}"))?;
        let name = endpoint.ketama_name();
        if names.contains(&name) {
            return Err(format!("--ketama: {text} is listed twice"));
        }
        names.push(name);
    }
    Ok(Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT))
}

/// For each key n of the key space, the index of the endpoint owning it on `ring`.
fn route_table(plan: &Plan, ring: &ringcache::cluster::ring::Ring) -> Vec<u16> {
    let mut key = Vec::with_capacity(plan.key_prefix.len() + 20);
    (0..plan.key_space)
        .map(|n| {
            key.clear();
            put_key(&mut key, plan, n);
            ring.owner(&key).shard as u16
        })
        .collect()
}

/// Appends one request to `out` (whose capacity was reserved before the run).
fn put_request(out: &mut Vec<u8>, plan: &Plan, op: Op, id: u64, value: &[u8]) {
    match (plan.protocol, op) {
        (Protocol::Text, Op::Get) => {
            out.extend_from_slice(b"get ");
            put_key(out, plan, id);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Text, Op::Set) => {
            out.extend_from_slice(b"set ");
            put_key(out, plan, id);
            out.extend_from_slice(b" 0 ");
            put_decimal(out, plan.expiry as u64, 0);
            out.push(b' ');
            put_decimal(out, value.len() as u64, 0);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Meta, Op::Get) => {
            out.extend_from_slice(b"mg ");
            put_key(out, plan, id);
            out.extend_from_slice(b" v\r\n");
        }
        (Protocol::Meta, Op::Set) => {
            out.extend_from_slice(b"ms ");
            put_key(out, plan, id);
            out.push(b' ');
            put_decimal(out, value.len() as u64, 0);
            out.extend_from_slice(b" T");
            put_decimal(out, plan.expiry as u64, 0);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Binary, op) => {
            // Header (24 bytes), extras (a set's flags and expiry), key, value.
            let start = out.len();
            out.extend_from_slice(&[0u8; BINARY_HEADER_LEN]);
            out[start] = BINARY_REQUEST_MAGIC;
            let extras: &[u8] = match op {
                Op::Get => &[],
                Op::Set => &(plan.expiry as u64).to_be_bytes(), // flags 0, then expiry
            };
            out.extend_from_slice(extras);
            let key_start = out.len();
            put_key(out, plan, id);
            let key_len = out.len() - key_start;
            if op == Op::Set {
                out.extend_from_slice(value);
            }
            let body = (out.len() - start - BINARY_HEADER_LEN) as u32;
            let header = &mut out[start..start + BINARY_HEADER_LEN];
            header[1] = match op {
                Op::Get => 0x00,
                Op::Set => 0x01,
            };
            header[2..4].copy_from_slice(&(key_len as u16).to_be_bytes());
            header[4] = extras.len() as u8;
            header[8..12].copy_from_slice(&body.to_be_bytes());
        }
    }
}

/// Binary protocol framing: every request and response starts with a 24-byte
/// header; requests carry magic 0x80, responses 0x81.
const BINARY_HEADER_LEN: usize = 24;
const BINARY_REQUEST_MAGIC: u8 = 0x80;
const BINARY_RESPONSE_MAGIC: u8 = 0x81;

/// The last space-separated token of a line (without `\r\n`) as a number.
fn last_number(line: &[u8]) -> Option<usize> {
    let start = line.iter().rposition(|&b| b == b' ')? + 1;
    parse_usize(&line[start..])
}

fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as usize;
    }
    Some(n)
}

/// Measures one reply at the front of `buf`: `None` while it is incomplete, else
/// its length and outcome. Replies are measured, never copied.
fn measure_reply(buf: &[u8], op: Op, protocol: Protocol) -> Option<(usize, Outcome)> {
    if protocol == Protocol::Binary {
        let header = buf.get(..BINARY_HEADER_LEN)?;
        let body = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let total = BINARY_HEADER_LEN + body;
        if buf.len() < total {
            return None;
        }
        let status = u16::from_be_bytes([header[6], header[7]]);
        let outcome = match (header[0] == BINARY_RESPONSE_MAGIC, status, op) {
            (true, 0, Op::Get) => Outcome::Hit,
            (true, 1, Op::Get) => Outcome::Miss,
            (true, 0, Op::Set) => Outcome::Stored,
            _ => Outcome::Error,
        };
        return Some((total, outcome));
    }
    let nl = memchr::memchr(b'\n', buf)?;
    let line_len = nl + 1;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    match (protocol, op) {
        (Protocol::Text, Op::Get) => {
            if line == b"END" {
                return Some((line_len, Outcome::Miss));
            }
            if !line.starts_with(b"VALUE ") {
                return Some((line_len, Outcome::Error));
            }
            // "VALUE key flags bytes" (gets adds a CAS: we never send gets).
            let bytes = last_number(line)?;
            let total = line_len + bytes + 2 + b"END\r\n".len();
            if buf.len() < total {
                return None;
            }
            Some((total, Outcome::Hit))
        }
        (Protocol::Meta, Op::Get) => {
            if line == b"EN" {
                return Some((line_len, Outcome::Miss));
            }
            if !line.starts_with(b"VA ") {
                return Some((line_len, Outcome::Error));
            }
            // "VA <bytes> <flags>*"
            let rest = &line[3..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let bytes = parse_usize(&rest[..end])?;
            let total = line_len + bytes + 2;
            if buf.len() < total {
                return None;
            }
            Some((total, Outcome::Hit))
        }
        (Protocol::Text, Op::Set) => Some((
            line_len,
            if line == b"STORED" {
                Outcome::Stored
            } else {
                Outcome::Error
            },
        )),
        (Protocol::Meta, Op::Set) => Some((
            line_len,
            if line == b"HD" || line.starts_with(b"HD ") {
                Outcome::Stored
            } else {
                Outcome::Error
            },
        )),
        (Protocol::Binary, _) => unreachable!("measured above"),
    }
}

// ---------------------------------------------------------------------------
// Counters

/// What one worker counted in the measured phase.
struct Tally {
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    errors: u64,
    latency_ns: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            errors: 0,
            latency_ns: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    fn requests(&self) -> u64 {
        self.gets + self.sets
    }

    fn reset(&mut self) {
        self.gets = 0;
        self.sets = 0;
        self.hits = 0;
        self.misses = 0;
        self.errors = 0;
        self.latency_ns.reset();
    }

    fn add(&mut self, other: &Tally) {
        self.gets += other.gets;
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
        self.latency_ns
            .add(&other.latency_ns)
            .expect("histograms share their bounds");
    }
}

/// Phases the main thread announces to the workers.
const PHASE_WARMUP: u8 = 0;
const PHASE_MEASURE: u8 = 1;
const PHASE_STOP: u8 = 2;

/// What the main thread shares with the workers.
struct Shared {
    phase: AtomicU8,
    /// Replies each worker has seen in the measured phase, for the progress line.
    done: Vec<AtomicU64>,
}

// ---------------------------------------------------------------------------
// Connections

/// One request in flight.
#[derive(Clone, Copy)]
struct InFlight {
    op: Op,
    id: u64,
    sent: Instant,
}

/// Where a connection takes its next request from.
enum Source {
    /// Set each key of `next..end` once.
    Prefill { next: u64, end: u64 },
    /// The measured workload.
    Workload,
}

/// One socket of a connection: its buffers, and the requests sent on it that
/// await their replies, oldest first.
struct Link {
    addr: String,
    stream: TcpStream,
    /// With `--tls-ca`: the session; `out` and `inbuf` hold plaintext.
    tls: Option<rustls::ClientConnection>,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    inflight: VecDeque<InFlight>,
    wants_write: bool,
}

impl Link {
    fn open(addr: &str, plan: &Plan) -> Result<Link, String> {
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
    fn flush(&mut self) -> Result<bool, String> {
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
    fn read_replies(
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
fn read_tls(
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
struct Conn {
    links: Vec<Link>,
    /// Requests awaiting replies, over all links.
    in_flight: usize,
    /// Keys that missed and are to be set (cache-aside), oldest first.
    to_set: VecDeque<u64>,
    rng: Rng,
    /// Position in the set:get cycle.
    cycle: u32,
    /// Next key of the sequential pattern.
    seq_next: u64,
    /// Requests kept in flight in the current phase (over all links).
    depth: usize,
    /// Requests this connection may still send (`None`: until told to stop).
    quota: Option<u64>,
    source: Source,
}

impl Conn {
    /// Opens one link to each of `addrs` (one address unless --ketama routes).
    fn open(addrs: &[String], plan: &Plan, index: usize) -> Result<Conn, String> {
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
    fn next_request(&mut self, plan: &Plan) -> Option<(Op, u64)> {
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
    fn no_partial_write(&self) -> bool {
        self.links.iter().all(|l| l.out_pos == 0)
    }

    /// Whether nothing is in flight nor waiting to be written.
    fn idle(&self) -> bool {
        self.in_flight == 0 && self.links.iter().all(|l| l.out.is_empty())
    }

    /// Tops the window up to the pipeline depth, each request on the link of
    /// its key's owner (the only link unless --ketama routes).
    fn refill(&mut self, plan: &Plan, values: &[u8], now: Instant) {
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
    fn read_replies(
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

/// One worker: its connections, one epoll set, and its tally.
struct Worker {
    conns: Vec<Conn>,
    /// Links per connection: an epoll token is `connection * this + link`.
    links_per_conn: usize,
    epoll: Epoll,
    tally: Tally,
}

impl Worker {
    fn new(plan: &Plan, thread: usize) -> Result<Worker, String> {
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        let links_per_conn = plan.links_per_conn();
        let mut conns = Vec::with_capacity(plan.clients);
        for c in 0..plan.clients {
            let index = thread * plan.clients + c;
            let addrs = if plan.route.is_some() {
                &plan.servers[..]
            } else {
                let i = index % plan.servers.len();
                &plan.servers[i..i + 1]
            };
            let conn = Conn::open(addrs, plan, index)?;
            for (l, link) in conn.links.iter().enumerate() {
                let token = (c * links_per_conn + l) as u64;
                epoll
                    .add(&link.stream, EpollEvent::new(EpollFlags::EPOLLIN, token))
                    .map_err(|e| format!("epoll add: {e}"))?;
            }
            conns.push(conn);
        }
        Ok(Worker {
            conns,
            links_per_conn,
            epoll,
            tally: Tally::new(),
        })
    }

    fn set_write_interest(&mut self, c: usize, l: usize, wants: bool) -> Result<(), String> {
        let link = &mut self.conns[c].links[l];
        if link.wants_write == wants {
            return Ok(());
        }
        link.wants_write = wants;
        let flags = if wants {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        let token = (c * self.links_per_conn + l) as u64;
        self.epoll
            .modify(&link.stream, &mut EpollEvent::new(flags, token))
            .map_err(|e| format!("epoll modify: {e}"))
    }

    /// Writes what connection `c` has buffered on each of its links, and asks
    /// to hear when a link can take the rest.
    fn flush(&mut self, c: usize) -> Result<(), String> {
        for l in 0..self.conns[c].links.len() {
            let all_out = self.conns[c].links[l].flush()?;
            self.set_write_interest(c, l, !all_out)?;
        }
        Ok(())
    }

    /// Drives every connection until none has anything to send or await.
    /// `phase`: `None` runs to completion (prefill, counted runs); otherwise the
    /// run counts only in the measured phase and stops sending at PHASE_STOP.
    fn run(
        &mut self,
        plan: &Plan,
        values: &[u8],
        shared: &Shared,
        thread: usize,
        timed: bool,
    ) -> Result<(), String> {
        let mut events = vec![EpollEvent::empty(); self.conns.len() * self.links_per_conn];
        let mut phase = if timed {
            shared.phase.load(Ordering::Acquire)
        } else {
            PHASE_MEASURE
        };
        let mut counting = phase == PHASE_MEASURE;
        let mut stop_at: Option<Instant> = None;
        let now = Instant::now();
        for c in 0..self.conns.len() {
            self.conns[c].refill(plan, values, now);
            self.flush(c)?;
        }
        loop {
            if timed {
                let seen = shared.phase.load(Ordering::Acquire);
                if seen != phase {
                    phase = seen;
                    if phase == PHASE_MEASURE {
                        self.tally.reset();
                        counting = true;
                    } else if phase == PHASE_STOP {
                        // Replies to requests sent before the stop still count:
                        // the window was full when the clock stopped.
                        counting = false;
                        stop_at = Some(Instant::now() + DRAIN_TIMEOUT);
                        for conn in &mut self.conns {
                            conn.quota = Some(0);
                        }
                    }
                }
            }
            if self.conns.iter().all(Conn::idle) {
                return Ok(());
            }
            if let Some(t) = stop_at {
                if Instant::now() > t {
                    return Err("replies still missing 5 s after the end of the run".into());
                }
            }
            let n = self
                .epoll
                .wait(&mut events, EpollTimeout::from(EPOLL_WAIT_MS))
                .or_else(|e| {
                    if e == nix::errno::Errno::EINTR {
                        Ok(0)
                    } else {
                        Err(format!("epoll wait: {e}"))
                    }
                })?;
            let now = Instant::now();
            for ev in &events[..n] {
                let token = ev.data() as usize;
                let (c, l) = (token / self.links_per_conn, token % self.links_per_conn);
                let flags = ev.events();
                if flags
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                {
                    self.conns[c].read_replies(l, plan, &mut self.tally, counting, now)?;
                }
                let conn = &mut self.conns[c];
                if conn.no_partial_write() {
                    conn.refill(plan, values, now);
                }
                self.flush(c)?;
            }
            if counting {
                shared.done[thread].store(self.tally.requests(), Ordering::Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CPU accounting

/// This process's user and system CPU time, in microseconds.
fn self_cpu_us() -> (u64, u64) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let us =
                |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            (us(u.user_time()), us(u.system_time()))
        }
        Err(_) => (0, 0),
    }
}

/// utime + stime of a process (all its threads) from /proc/PID/stat, in microseconds.
fn process_cpu_us(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it start at 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some((utime + stime) * 1_000_000 / hz)
}

fn servers_cpu_us(pids: &[i32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| process_cpu_us(p)).sum()
}

// ---------------------------------------------------------------------------
// Runs

struct Summary {
    elapsed: Duration,
    tally: Tally,
    bench_user_us: u64,
    bench_sys_us: u64,
    server_cpu_us: Option<u64>,
}

fn run_load(plan: Arc<Plan>, args: &Args) -> Result<Summary, String> {
    let values: Arc<Vec<u8>> =
        Arc::new((0..plan.value_max).map(|i| b'a' + (i % 26) as u8).collect());
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_WARMUP),
        done: (0..plan.threads).map(|_| AtomicU64::new(0)).collect(),
    });
    let timed = plan.requests.is_none();
    // Workers connect, prefill, then wait here so the clock starts for all at once.
    let ready = Arc::new(Barrier::new(plan.threads + 1));
    let mut handles = Vec::with_capacity(plan.threads);
    for thread in 0..plan.threads {
        let (plan, values, shared, ready) =
            (plan.clone(), values.clone(), shared.clone(), ready.clone());
        handles.push(std::thread::spawn(move || -> Result<Tally, String> {
            let worker = Worker::new(&plan, thread);
            let mut worker = match worker {
                Ok(w) => w,
                Err(e) => {
                    ready.wait();
                    return Err(e);
                }
            };
            let mut result = Ok(());
            if plan.prefill {
                let conns = plan.connections() as u64;
                for (c, conn) in worker.conns.iter_mut().enumerate() {
                    let index = (thread * plan.clients + c) as u64;
                    conn.source = Source::Prefill {
                        next: plan.key_space * index / conns,
                        end: plan.key_space * (index + 1) / conns,
                    };
                    conn.depth = PREFILL_PIPELINE;
                }
                result = worker.run(&plan, &values, &shared, thread, false);
                for conn in &mut worker.conns {
                    conn.source = Source::Workload;
                    conn.depth = plan.pipeline;
                }
                worker.tally.reset();
                shared.done[thread].store(0, Ordering::Relaxed);
            }
            ready.wait();
            result?;
            if let Some(total) = plan.requests {
                let conns = plan.connections() as u64;
                for (c, conn) in worker.conns.iter_mut().enumerate() {
                    let index = (thread * plan.clients + c) as u64;
                    conn.quota = Some(total * (index + 1) / conns - total * index / conns);
                }
            }
            worker.run(&plan, &values, &shared, thread, timed)?;
            Ok(worker.tally)
        }));
    }
    ready.wait();
    if plan.prefill && !args.quiet {
        eprintln!("prefill: {} keys set", plan.key_space);
    }
    if timed && args.warmup > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
    }
    let server_before = servers_cpu_us(&args.server_pid);
    let (user_before, sys_before) = self_cpu_us();
    let started = Instant::now();
    shared.phase.store(PHASE_MEASURE, Ordering::Release);

    let deadline = timed.then(|| started + Duration::from_secs_f64(args.test_time));
    let mut last_done = 0u64;
    let mut last_tick = started;
    loop {
        let finished = handles.iter().all(|h| h.is_finished());
        let now = Instant::now();
        if finished || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let next_tick = last_tick + Duration::from_secs(1);
        let wake = deadline.map_or(next_tick, |d| d.min(next_tick));
        std::thread::sleep(
            wake.saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
        let now = Instant::now();
        if now >= next_tick {
            let done: u64 = shared.done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            if !args.quiet {
                eprintln!(
                    "[{:>5.1}s] {:>10.0} ops/s  {:>12} requests",
                    (now - started).as_secs_f64(),
                    (done - last_done) as f64 / (now - last_tick).as_secs_f64(),
                    done
                );
            }
            last_done = done;
            last_tick = now;
        }
    }
    shared.phase.store(PHASE_STOP, Ordering::Release);
    // A counted run ends when its workers do.
    if !timed {
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let elapsed = started.elapsed();
    let (user_after, sys_after) = self_cpu_us();
    let server_after = servers_cpu_us(&args.server_pid);

    let mut tally = Tally::new();
    for h in handles {
        let t = h.join().map_err(|_| "a worker panicked".to_string())??;
        tally.add(&t);
    }
    Ok(Summary {
        elapsed,
        tally,
        bench_user_us: user_after - user_before,
        bench_sys_us: sys_after - sys_before,
        server_cpu_us: match (server_before, server_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
    })
}

/// Reads `stats` from the server and returns (curr_items, evictions).
fn items_and_evictions(stream: &mut TcpStream) -> Result<(u64, u64), String> {
    stream
        .write_all(b"stats\r\n")
        .map_err(|e| format!("stats: {e}"))?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    while !buf.ends_with(b"END\r\n") {
        let n = stream.read(&mut chunk).map_err(|e| format!("stats: {e}"))?;
        if n == 0 {
            return Err("stats: server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let stat = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("STAT ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("stats: no {name}"))
    };
    Ok((stat("curr_items")?, stat("evictions")?))
}

/// Sets keys 0, 1, 2, ... in pipelined batches until `stats` shows an eviction.
fn fill_until_evictions(plan: &Plan, args: &Args) -> Result<(), String> {
    if plan.protocol != Protocol::Text {
        return Err("--fill-until-evictions speaks the text protocol only".into());
    }
    let addr = &plan.servers[0];
    let mut data = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let mut control = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let value = vec![b'v'; plan.value_max];
    let mut out = Vec::with_capacity(FILL_BATCH_SETS as usize * (64 + plan.value_max));
    let mut inbuf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut next = 0u64;
    let (mut items, mut evictions) = (0, 0);
    let mut errors = 0u64;
    while next < plan.key_space {
        out.clear();
        let end = (next + FILL_BATCH_SETS).min(plan.key_space);
        for id in next..end {
            put_request(&mut out, plan, Op::Set, id, &value);
        }
        data.write_all(&out).map_err(|e| format!("write: {e}"))?;
        // Every reply to a set is one line; count lines.
        let mut lines = 0;
        let mut have = 0;
        while lines < end - next {
            let n = data
                .read(&mut inbuf[have..])
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            let chunk_end = have + n;
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &inbuf[start..chunk_end]) {
                if &inbuf[start..start + nl] != b"STORED\r" {
                    errors += 1;
                }
                start += nl + 1;
                lines += 1;
            }
            inbuf.copy_within(start..chunk_end, 0);
            have = chunk_end - start;
        }
        next = end;
        (items, evictions) = items_and_evictions(&mut control)?;
        if evictions > 0 {
            break;
        }
    }
    if evictions == 0 {
        return Err(format!(
            "no evictions after {next} sets: raise --key-space or lower the server's -m"
        ));
    }
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{{\"mode\":\"fill-until-evictions\",\"server\":{},\"key_bytes\":{},\"value_bytes\":{},\"sets\":{},\"errors\":{},\"items\":{},\"evictions\":{},\"elapsed_secs\":{:.3}}}",
            json_string(addr),
            plan.key_prefix.len() + plan.key_digits,
            plan.value_max,
            next,
            errors,
            items,
            evictions,
            elapsed
        );
    } else {
        println!(
            "{addr}: {items} items held when evictions started ({evictions} evictions after {next} sets of {}-byte keys and {}-byte values; {errors} errors; {elapsed:.1} s)",
            plan.key_prefix.len() + plan.key_digits,
            plan.value_max
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reports

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number_or_null(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "null".into(),
    }
}

fn report(plan: &Plan, args: &Args, s: &Summary) {
    let t = &s.tally;
    let secs = s.elapsed.as_secs_f64();
    let requests = t.requests();
    let ops_per_sec = requests as f64 / secs;
    let per_request = |us: u64| (requests > 0).then(|| us as f64 / requests as f64);
    let hit_ratio = (t.gets > 0).then(|| t.hits as f64 / t.gets as f64);
    let q = |quantile: f64| t.latency_ns.value_at_quantile(quantile) as f64 / 1000.0;
    let (p50, p99, p999, p9999) = (q(0.5), q(0.99), q(0.999), q(0.9999));
    let max_us = t.latency_ns.max() as f64 / 1000.0;
    let bench_cpu = per_request(s.bench_user_us + s.bench_sys_us);
    let server_cpu = s.server_cpu_us.and_then(per_request);
    let routing = if plan.route.is_some() {
        "ketama"
    } else {
        "round-robin"
    };
    if args.json {
        println!(
            concat!(
                "{{\"protocol\":\"{:?}\",\"servers\":[{}],\"routing\":\"{}\",\"threads\":{},\"connections\":{},",
                "\"pipeline\":{},\"ratio\":{},\"key_space\":{},\"key_pattern\":\"{:?}\",",
                "\"value_bytes_min\":{},\"value_bytes_max\":{},\"cache_aside\":{},",
                "\"elapsed_secs\":{:.4},\"requests\":{},\"gets\":{},\"sets\":{},\"hits\":{},",
                "\"misses\":{},\"errors\":{},\"ops_per_sec\":{:.1},\"hit_ratio\":{},\"miss_ratio\":{},",
                "\"latency_us\":{{\"p50\":{:.2},\"p99\":{:.2},\"p99_9\":{:.2},\"p99_99\":{:.2},\"max\":{:.2}}},",
                "\"bench_cpu_us_per_request\":{},\"bench_user_secs\":{:.3},\"bench_sys_secs\":{:.3},",
                "\"server_cpu_us_per_request\":{}}}"
            ),
            plan.protocol,
            plan.servers.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(","),
            routing,
            plan.threads,
            plan.connections(),
            plan.pipeline,
            json_string(&args.ratio),
            plan.key_space,
            plan.key_pattern,
            plan.value_min,
            plan.value_max,
            plan.cache_aside,
            secs,
            requests,
            t.gets,
            t.sets,
            t.hits,
            t.misses,
            t.errors,
            ops_per_sec,
            json_number_or_null(hit_ratio),
            json_number_or_null(hit_ratio.map(|h| 1.0 - h)),
            p50,
            p99,
            p999,
            p9999,
            max_us,
            json_number_or_null(bench_cpu),
            s.bench_user_us as f64 / 1e6,
            s.bench_sys_us as f64 / 1e6,
            json_number_or_null(server_cpu),
        );
        return;
    }
    let values = if plan.value_min == plan.value_max {
        format!("{} B", plan.value_min)
    } else {
        format!("{}-{} B", plan.value_min, plan.value_max)
    };
    let sockets = if plan.route.is_some() {
        format!(
            " (each {} sockets, routed by ketama)",
            plan.links_per_conn()
        )
    } else {
        String::new()
    };
    println!(
        "{:?} protocol, {} x {} connections{}, pipeline {}, {}, {:?} keys over {}, values {}",
        plan.protocol,
        plan.threads,
        plan.clients,
        sockets,
        plan.pipeline,
        if plan.cache_aside {
            "cache-aside gets".to_string()
        } else {
            format!("set:get {}", args.ratio)
        },
        plan.key_pattern,
        plan.key_space,
        values
    );
    println!(
        "{:.2} s, {} requests ({} gets, {} sets), {} errors",
        secs, requests, t.gets, t.sets, t.errors
    );
    println!("throughput   {ops_per_sec:.0} ops/s");
    match hit_ratio {
        Some(h) => println!(
            "hit ratio    {:.4} ({} hits, {} misses; miss ratio {:.4})",
            h,
            t.hits,
            t.misses,
            1.0 - h
        ),
        None => println!("hit ratio    - (no gets)"),
    }
    println!(
        "latency us   p50 {p50:.1}  p99 {p99:.1}  p99.9 {p999:.1}  p99.99 {p9999:.1}  max {max_us:.1}"
    );
    println!(
        "bench cpu    {} us/request (user {:.2} s, sys {:.2} s)",
        bench_cpu.map_or("-".into(), |v| format!("{v:.3}")),
        s.bench_user_us as f64 / 1e6,
        s.bench_sys_us as f64 / 1e6
    );
    if let Some(v) = server_cpu {
        println!(
            "server cpu   {v:.3} us/request (pids {:?})",
            args.server_pid
        );
    }
}

fn main() {
    let args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("ringcache-bench: {e}");
            std::process::exit(2);
        }
    };
    let result = if args.fill_until_evictions {
        fill_until_evictions(&plan, &args)
    } else {
        run_load(plan.clone(), &args).map(|s| report(&plan, &args, &s))
    };
    if let Err(e) = result {
        eprintln!("ringcache-bench: {e}");
        std::process::exit(1);
    }
}

//! The command line, with memcached's flags where they exist, turned into a
//! checked [`Config`] (pure: parsing and validation only).
//!
//! Every memcached 1.6 flag is read. One that maps to a ringcache setting is
//! honoured; one that does not apply here is accepted and leaves a line in
//! [`Config::notes`] saying why, which `main` logs at start; one whose absence
//! would mislead a client (a unix socket, SASL) is refused with the reason.
//! The README's flags table lists what becomes of each.

use crate::limits;
use crate::storage::WhenFull;
use clap::{ArgAction, Parser};

/// Command-line flags. Short names are memcached's.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "ringcache",
    version,
    about = "A memcached-compatible, clustered in-memory cache (thread-per-core, io_uring)",
    disable_version_flag = true,
    // As memcached's getopt: a flag given twice takes its last value.
    args_override_self = true,
    after_help = "Subcommands:\n  cluster   administer a running cluster (status, show, set, add, remove): \
                  `ringcache cluster --help`"
)]
pub struct Args {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// Interface to listen on: an address, `ADDR:PORT` or `[IPv6]:PORT`. memcached's
    /// comma list (and repeated -l) is read; ringcache serves one address, so a
    /// list naming several is refused.
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1", action = ArgAction::Append)]
    pub listen: Vec<String>,

    /// Item memory, split evenly across shards: megabytes, or a number with a
    /// k, m, g or t suffix (`64m`, `1g`).
    #[arg(short = 'm', long = "memory-limit", default_value = "64")]
    pub memory_limit: String,

    /// Most simultaneous client connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = limits::CONN_LIMIT_DEFAULT)]
    pub conn_limit: usize,

    /// Shards (one executor per core). Default: every CPU this process may run on.
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,

    /// Largest item, with k/m suffixes (memcached's -I).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m")]
    pub max_item_size: String,

    /// Answer an error when memory is full instead of evicting items.
    #[arg(short = 'M', long = "disable-evictions")]
    pub disable_evictions: bool,

    /// Allow the `shutdown` command.
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,

    /// UDP port: accepted, but UDP is not served (a note says so).
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    pub udp_port: u16,

    /// Started as root: drop to this user (and its group) before listening.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Write the process id to FILE; it is removed at a clean exit.
    #[arg(short = 'P', long = "pidfile", value_name = "FILE")]
    pub pid_file: Option<std::path::PathBuf>,

    /// Refused: ringcache runs in the foreground (see tuning/ringcache.service).
    #[arg(short = 'd', long = "daemon")]
    pub daemonize: bool,

    /// Refused: unix sockets are not served.
    #[arg(short = 's', long = "unix-socket", value_name = "PATH")]
    pub unix_socket: Option<String>,

    /// Octal access mask of the unix socket; applies only with -s.
    #[arg(short = 'a', long = "unix-mask", value_name = "MASK")]
    pub unix_mask: Option<String>,

    /// Refuse `flush_all` (and the binary flush), as memcached -F does.
    #[arg(short = 'F', long = "disable-flush-all")]
    pub disable_flush_all: bool,

    /// Protocol served: `auto` (chosen per connection from its first byte),
    /// `ascii` or `binary`.
    #[arg(short = 'B', long = "protocol", default_value = "auto")]
    pub protocol: String,

    /// Listen backlog (pending connections the kernel queues).
    #[arg(short = 'b', long = "listen-backlog", default_value_t = limits::LISTEN_BACKLOG)]
    pub listen_backlog: i32,

    /// Lock all memory (mlockall); a warning if the limit does not allow it.
    #[arg(short = 'k', long = "lock-memory")]
    pub lock_memory: bool,

    /// Raise the core file size limit to its hard limit.
    #[arg(short = 'r', long = "enable-coredumps")]
    pub enable_coredumps: bool,

    /// memcached's requests per event: accepted, not applicable (a note says why).
    #[arg(short = 'R', long = "max-reqs-per-event", value_name = "NUM")]
    pub max_reqs_per_event: Option<i64>,

    /// memcached's -C: accepted, not applicable (CAS is always kept).
    #[arg(short = 'C', long = "disable-cas")]
    pub disable_cas: bool,

    /// memcached's slab growth factor: accepted, not applicable.
    #[arg(short = 'f', long = "slab-growth-factor", value_name = "FACTOR")]
    pub slab_growth_factor: Option<f64>,

    /// memcached's smallest slab chunk: accepted, not applicable.
    #[arg(short = 'n', long = "slab-min-size", value_name = "BYTES")]
    pub slab_min_size: Option<i64>,

    /// memcached's large pages: accepted, not applicable.
    #[arg(short = 'L', long = "enable-largepages")]
    pub large_pages: bool,

    /// memcached's per-prefix stats delimiter: accepted, not applicable.
    #[arg(short = 'D', value_name = "CHAR")]
    pub prefix_delimiter: Option<String>,

    /// memcached's restartable memory file: accepted; items are not kept
    /// across restarts.
    #[arg(short = 'e', long = "memory-file", value_name = "FILE")]
    pub memory_file: Option<String>,

    /// Refused: SASL authentication is not served.
    #[arg(short = 'S', long = "enable-sasl")]
    pub enable_sasl: bool,

    /// memcached's ASCII authentication: FILE holds `user:password` lines; a
    /// connection must `set` any key to `<user> <password>` before anything else
    /// (binary connections are closed). Not with a cluster.
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    pub auth_file: Option<String>,

    /// Serve clients over TLS: the certificate and key come from `-o
    /// ssl_chain_cert=FILE,ssl_key=FILE`, client certificates are checked with
    /// `-o ssl_ca_cert=FILE,ssl_verify_mode=0..3`, as in memcached.
    #[arg(short = 'Z', long = "enable-ssl")]
    pub enable_ssl: bool,

    /// memcached's -X: accepted; nothing is dumped anyway.
    #[arg(short = 'X', long = "disable-dumping")]
    pub disable_dumping: bool,

    /// memcached's -W: accepted and noted; `watch` stays served.
    #[arg(short = 'W', long = "disable-watch")]
    pub disable_watch: bool,

    /// Print the license and exit.
    #[arg(short = 'i', long = "license")]
    pub license: bool,

    /// memcached's extended options, a comma list (`-o modern,idle_timeout=0`):
    /// each is honoured, or accepted with a note, or refused; an unknown one is
    /// an error, as in memcached.
    #[arg(short = 'o', long = "extended", value_name = "OPTIONS", action = ArgAction::Append)]
    pub extended: Vec<String>,

    /// More logging: -v for info, -vv for debug, -vvv for trace (RUST_LOG also works).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    /// Each shard also listens on its own port, BASE + shard number, and is named
    /// on the ketama ring by that endpoint: a ketama client given the endpoints
    /// reaches every key's owner directly.
    #[arg(long = "shard-ports", value_name = "BASE")]
    pub shard_port_base: Option<u16>,

    /// Busy-poll for this many microseconds before an idle shard sleeps.
    #[arg(long = "spin-before-park-us", default_value_t = 0)]
    pub spin_before_park_us: u64,

    /// How shards drive client sockets: `uring`, a ring of each shard's own with a
    /// multishot receive per connection and sends as submissions (no system call
    /// per request); or `glommio`, glommio's sockets (a `recv` and a `send` per
    /// request). `uring` falls back to `glommio` where the kernel lacks it.
    #[arg(long = "sockets", value_enum, default_value_t = SocketPath::Uring)]
    pub sockets: SocketPath,

    /// Run as a node of the cluster this file describes (see the README's
    /// "Running a cluster"). The node's client address and shard endpoints come
    /// from the file, so -l, -p, -t and --shard-ports are not used.
    #[arg(long = "cluster", value_name = "FILE", requires = "node_id")]
    pub cluster_file: Option<std::path::PathBuf>,

    /// This node's id in the cluster file.
    #[arg(long = "node-id", value_name = "ID", requires = "cluster_file")]
    pub node_id: Option<u32>,

    /// How long a request to another node may take before the next owner is
    /// tried and the node is skipped for a while (milliseconds).
    #[arg(long = "peer-timeout-ms", default_value_t = limits::PEER_TIMEOUT_DEFAULT_MS)]
    pub peer_timeout_ms: u64,

    /// In a cluster: run Multi-Paxos over the configuration, keeping this node's
    /// identity and acceptor state in DIR (created if missing). Without it the
    /// configuration changes only by SIGHUP. A node that has state in DIR
    /// restarts from it with just --data-dir.
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,

    /// With an empty --data-dir: create a new cluster of this one node (id 1,
    /// one copy of each key), listening on -l/-p with its shards on
    /// --shard-ports (default: the ports after -p). Ignored once DIR has state.
    #[arg(long = "init", requires = "data_dir", conflicts_with_all = ["cluster_file", "join"])]
    pub init: bool,

    /// With an empty --data-dir: join the cluster the node at HOST:PORT belongs
    /// to, as a new member listening on -l/-p with its shards on --shard-ports
    /// (default: the ports after -p). It takes keys once it has started.
    /// Ignored once DIR has state.
    #[arg(
        long = "join",
        value_name = "HOST:PORT",
        requires = "data_dir",
        conflicts_with = "cluster_file"
    )]
    pub join: Option<String>,

    /// In a cluster: the file holding the cluster secret (at least 32 random
    /// bytes in hex or base64, mode 0600), which every node and admin must prove
    /// it holds before any node-to-node (`rc`) line is taken. Default: the
    /// cluster file's `secret_file`, else `cluster.secret` in --data-dir
    /// (`--init` creates it there). A cluster node without one does not start.
    #[arg(long = "cluster-secret", value_name = "FILE")]
    pub cluster_secret: Option<std::path::PathBuf>,

    /// With --data-dir: the CPU the control thread (consensus, failure detection)
    /// runs on. Default: unpinned, sharing the CPUs with the shards.
    #[arg(long = "control-cpu", value_name = "CPU", requires = "data_dir")]
    pub control_cpu: Option<usize>,

    /// With --data-dir: how long a majority of the nodes must have found a node
    /// unreachable before the Paxos leader proposes marking it down (and
    /// reachable again before it proposes marking it up), in milliseconds.
    #[arg(long = "failover-timeout-ms", default_value_t = limits::FAILOVER_TIMEOUT_DEFAULT_MS)]
    pub failover_timeout_ms: u64,

    /// Most keys one shard remembers as missed by one unreachable node (hints);
    /// past this, that node re-copies everything it shares with this one.
    #[arg(long = "hinted-keys-max", default_value_t = limits::HINTED_KEYS_MAX_DEFAULT)]
    pub hinted_keys_max: usize,

    /// Counters per shard for the most requested keys (`stats hotkeys`, and
    /// the metrics port's `ringcache_hotkey_requests`); 0 counts nothing.
    #[arg(long = "hotkeys", value_name = "N", default_value_t = limits::HOT_KEYS_PER_SHARD_DEFAULT)]
    pub hot_keys: usize,

    /// Serve Prometheus metrics (`GET /metrics`) on this port. Off by default.
    #[arg(long = "metrics-port", value_name = "PORT")]
    pub metrics_port: Option<u16>,

    /// The address the metrics port listens on (loopback unless told otherwise:
    /// the figures are for the operator, not for every client).
    #[arg(
        long = "metrics-addr",
        value_name = "ADDR",
        default_value = "127.0.0.1"
    )]
    pub metrics_addr: String,

    /// Print version and exit.
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// The server's settings, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    pub listen: String,
    /// The other addresses of a `-l` list (memcached's `-l a,b`), each with
    /// its port; every shard accepts on each of them too.
    pub listen_also: Vec<(String, u16)>,
    pub memory_limit_bytes: usize,
    pub conn_limit: usize,
    pub threads: Option<usize>,
    pub item_size_max_bytes: usize,
    pub when_full: WhenFull,
    pub shutdown: ShutdownCommand,
    pub verbosity: u8,
    pub spin_before_park_us: u64,
    pub sockets: SocketPath,
    pub shard_port_base: Option<u16>,
    /// `--cluster FILE --node-id ID`: the file is read at start by the runtime.
    pub cluster: Option<ClusterMembership>,
    pub peer_timeout_ms: u64,
    pub hinted_keys_max: usize,
    /// `--hotkeys`: counters of each shard's hot-key sketch (0: none).
    pub hot_keys: usize,
    /// `--metrics-port` on `--metrics-addr`: where `GET /metrics` is served.
    pub metrics: Option<(String, u16)>,
    pub data_dir: Option<std::path::PathBuf>,
    /// `--init`: create a one-node cluster when `data_dir` is empty.
    pub init: bool,
    /// `--join HOST:PORT`: join that node's cluster when `data_dir` is empty.
    pub join: Option<String>,
    /// `--cluster-secret FILE`.
    pub cluster_secret: Option<std::path::PathBuf>,
    pub failover_timeout_ms: u64,
    pub control_cpu: Option<usize>,
    /// `-F`: whether `flush_all` is served.
    pub flush: FlushCommand,
    /// `-B`: which protocols a connection may speak.
    pub protocol: Protocol,
    /// `-b`: pending connections the kernel queues on each listening socket.
    pub listen_backlog: i32,
    /// `-u`: the user to become when started as root.
    pub user: Option<String>,
    /// `-P`: where to write the process id.
    pub pid_file: Option<std::path::PathBuf>,
    /// `-k`: lock all memory at start.
    pub lock_memory: bool,
    /// `-r`: raise the core file limit.
    pub enable_coredumps: bool,
    /// `-Z`: clients speak TLS, with these files and checks.
    pub tls: Option<TlsSettings>,
    /// `-Y`: the file of users a text connection must authenticate as.
    pub auth_file: Option<std::path::PathBuf>,
    /// One line for each memcached flag accepted that does not apply here.
    pub notes: Vec<String>,
}

/// `-Z` with its `-o ssl_*` options: what the runtime needs to build a TLS
/// server (reading the files is its job).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `ssl_chain_cert`: the server's certificate chain, PEM.
    pub chain_cert: std::path::PathBuf,
    /// `ssl_key`: its private key, PEM; by default read from the chain file.
    pub key: std::path::PathBuf,
    /// `ssl_ca_cert`: the CAs whose client certificates are accepted, PEM.
    pub ca_cert: Option<std::path::PathBuf>,
    pub verify_mode: VerifyMode,
    pub min_version: TlsVersion,
    /// `ssl_session_cache`: keep sessions so clients may resume them.
    pub session_cache: SessionCache,
}

/// `ssl_verify_mode`: memcached's (OpenSSL's) client certificate checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// 0: no client certificate is asked for.
    None,
    /// 1: one is asked for and checked if sent; a client without one is served.
    Request,
    /// 2: a client without a valid certificate is refused.
    Require,
    /// 3: as 2, checked once per connection (TLS 1.3 never renegotiates, so
    /// this is 2).
    Once,
}

/// `ssl_min_version`: the oldest TLS version a client may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Whether TLS sessions are kept for resumption (`ssl_session_cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCache {
    Off,
    On,
}

/// The `-o ssl_*` options as they are read, before `-Z` decides whether they apply.
#[derive(Default)]
struct SslOptions {
    chain_cert: Option<String>,
    key: Option<String>,
    ca_cert: Option<String>,
    verify_mode: Option<VerifyMode>,
    min_version: Option<TlsVersion>,
    session_cache: bool,
    /// The options given, for the note when `-Z` is absent.
    given: Vec<String>,
}

/// Takes one `-o ssl_*` option into `ssl`: `Ok(Some(note))` when it is accepted
/// but does not apply, `Err` when it is malformed or unknown.
fn ssl_option(option: &str, ssl: &mut SslOptions) -> Result<Option<String>, String> {
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (option, None),
    };
    let file = || -> Result<String, String> {
        value
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("-o {name}: missing file name"))
    };
    let note = |why: &str| Ok(Some(format!("-o {option}: {why}; ignored")));
    ssl.given.push(option.to_string());
    match name {
        "ssl_chain_cert" => ssl.chain_cert = Some(file()?),
        "ssl_key" => ssl.key = Some(file()?),
        "ssl_ca_cert" => ssl.ca_cert = Some(file()?),
        "ssl_verify_mode" => {
            ssl.verify_mode = Some(match value {
                Some("0") => VerifyMode::None,
                Some("1") => VerifyMode::Request,
                Some("2") => VerifyMode::Require,
                Some("3") => VerifyMode::Once,
                _ => return Err(format!("-o {option}: must be 0, 1, 2 or 3")),
            })
        }
        "ssl_min_version" => match value {
            Some("tlsv1.2") => ssl.min_version = Some(TlsVersion::Tls12),
            Some("tlsv1.3") => ssl.min_version = Some(TlsVersion::Tls13),
            Some("tlsv1" | "tlsv1.1") => {
                return note("TLS 1.0 and 1.1 are not spoken; the oldest served is tlsv1.2")
            }
            _ => {
                return Err(format!(
                    "-o {option}: must be tlsv1, tlsv1.1, tlsv1.2 or tlsv1.3"
                ))
            }
        },
        "ssl_keyformat" => match value {
            // OpenSSL's SSL_FILETYPE_PEM is 1.
            Some("1" | "PEM" | "pem") => {}
            _ => return Err(format!("-o {option}: only PEM keys (ssl_keyformat=1) are read")),
        },
        "ssl_session_cache" => ssl.session_cache = true,
        "ssl_ciphers" => {
            return note("the cipher suites are rustls's own: TLS 1.3's, and TLS 1.2's ECDHE with AES-GCM or ChaCha20-Poly1305")
        }
        "ssl_wbuf_size" => {
            value
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| format!("-o {option}: must be a number of kilobytes"))?;
            return note("replies are encrypted from the connection's own output buffer");
        }
        "ssl_kernel_tls" => return note("TLS runs in the process, not in the kernel"),
        _ => return Err(format!("-o {option}: Illegal suboption")),
    }
    Ok(None)
}

impl SslOptions {
    /// The TLS settings `-Z` asks for, or `None` without it.
    fn settings(
        self,
        enable_ssl: bool,
        notes: &mut Vec<String>,
    ) -> Result<Option<TlsSettings>, String> {
        if !enable_ssl {
            for option in &self.given {
                notes.push(format!("-o {option}: applies only with -Z; ignored"));
            }
            return Ok(None);
        }
        let chain_cert = self.chain_cert.ok_or(
            "-Z: a certificate is needed: -o ssl_chain_cert=FILE (and ssl_key=FILE if the key is apart)",
        )?;
        let verify_mode = self.verify_mode.unwrap_or(VerifyMode::None);
        if verify_mode != VerifyMode::None && self.ca_cert.is_none() {
            return Err(
                "-o ssl_verify_mode: checking client certificates needs the CAs that sign them: -o ssl_ca_cert=FILE"
                    .into(),
            );
        }
        Ok(Some(TlsSettings {
            key: self.key.unwrap_or_else(|| chain_cert.clone()).into(),
            chain_cert: chain_cert.into(),
            ca_cert: self.ca_cert.map(Into::into),
            verify_mode,
            min_version: self.min_version.unwrap_or(TlsVersion::Tls12),
            session_cache: if self.session_cache {
                SessionCache::On
            } else {
                SessionCache::Off
            },
        }))
    }
}

/// Whether `flush_all` is served (`-F` refuses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushCommand {
    Allowed,
    Refused,
}

/// `-B`: the protocols a connection may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Chosen per connection from its first byte, as memcached's default.
    Auto,
    Ascii,
    Binary,
}

impl Protocol {
    /// memcached's name for it in `stats settings` (`binding_protocol`).
    pub fn memcached_name(self) -> &'static str {
        match self {
            Protocol::Auto => "auto-negotiate",
            Protocol::Ascii => "ascii",
            Protocol::Binary => "binary",
        }
    }
}

/// What `-d` is answered, with [`EXIT_DAEMONIZE_REFUSED`].
pub const DAEMONIZE_REFUSED: &str = "-d: ringcache does not daemonize; run it in the foreground \
     under a supervisor, e.g. the systemd unit tuning/ringcache.service (Type=notify), \
     which takes memcached's flags from /etc/default/ringcache";

/// The exit status for `-d`.
pub const EXIT_DAEMONIZE_REFUSED: i32 = 2;

/// The largest `-R`, `-n` and numeric `-o` value memcached reads (a C int).
const C_INT_MAX: i64 = i32::MAX as i64;

/// memcached's bounds on `-o hashpower`.
const HASHPOWER_MIN: i64 = 12;
const HASHPOWER_MAX: i64 = 64;

/// memcached's bounds on `-o hot_lru_pct` and `warm_lru_pct`.
const LRU_PCT_MIN: i64 = 1;
const LRU_PCT_MAX: i64 = 80;

/// memcached's largest `-o lru_crawler_sleep` (microseconds).
const LRU_CRAWLER_SLEEP_MAX_US: i64 = 1_000_000;

/// memcached's largest `-o slab_automove` level.
const SLAB_AUTOMOVE_MAX: i64 = 2;

/// Which cluster file a node reads, and which of its nodes it is.
#[derive(Clone, Debug)]
pub struct ClusterMembership {
    pub file: std::path::PathBuf,
    pub node_id: u32,
}

/// How shards drive client sockets (`--sockets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SocketPath {
    /// A ring of each shard's own: no system call per request.
    Uring,
    /// glommio's sockets: a `recv` and a `send` per request.
    Glommio,
}

/// Whether the `shutdown` command is served (`-A`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownCommand {
    Allowed,
    Refused,
}

/// A byte count as `-m` and `-I` take it back: whole gigabytes, megabytes or
/// kilobytes with their suffix, otherwise bytes.
fn size_text(bytes: usize) -> String {
    const KIB: usize = 1024;
    [(KIB * KIB * KIB, "g"), (KIB * KIB, "m"), (KIB, "k")]
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", bytes / unit))
        .unwrap_or_else(|| bytes.to_string())
}

/// Parses a size such as `1m`, `512k` or `2048` into bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = match text.chars().last() {
        Some('k') | Some('K') => (&text[..text.len() - 1], 1024),
        Some('m') | Some('M') => (&text[..text.len() - 1], 1024 * 1024),
        Some('g') | Some('G') => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("not a size: {text:?} (use a number with an optional k, m or g)"))?;
    n.checked_mul(unit)
        .ok_or_else(|| format!("size too large: {text:?}"))
}

/// Parses `-m`: a plain number is megabytes, as in memcached; a k, m, g or t
/// suffix (either case) names the unit. memcached 1.6.18 itself reads only the
/// leading digits (`-m 1g` is 1 megabyte there); ringcache takes the suffix as meant.
pub fn parse_memory_limit(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let last = text.chars().last().unwrap_or('0');
    let bytes = if last.is_ascii_digit() {
        text.parse::<usize>()
            .ok()
            .and_then(|mb| mb.checked_mul(1024 * 1024))
    } else {
        let unit: usize = match last.to_ascii_lowercase() {
            'k' => 1 << 10,
            'm' => 1 << 20,
            'g' => 1 << 30,
            't' => 1 << 40,
            _ => {
                return Err(format!(
                    "-m {text}: not a size (megabytes, or a number with k, m, g or t)"
                ))
            }
        };
        text[..text.len() - 1]
            .parse::<usize>()
            .map_err(|_| {
                format!("-m {text}: not a size (megabytes, or a number with k, m, g or t)")
            })?
            .checked_mul(unit)
    };
    let bytes = bytes.ok_or_else(|| {
        format!("-m {text}: not a size (megabytes, or a number with k, m, g or t)")
    })?;
    if bytes < 1024 * 1024 {
        return Err(format!(
            "-m {text}: the memory limit must be at least 1 megabyte"
        ));
    }
    if bytes > limits::MEMORY_LIMIT_MAX_BYTES {
        return Err(format!("-m {text}: the memory limit can be at most 1t"));
    }
    Ok(bytes)
}

/// Parses `-l`: memcached's comma list (repeated `-l` adds to it), each entry an
/// address, `ADDR:PORT` or `[IPv6]:PORT`, with memcached's `notls:` prefix
/// dropped (without `-Z` every address is plain; with it, `from_args` refuses
/// the prefix). Returns the one address and the port an entry
/// named, if any. ringcache's shards listen on one address, so a list naming
/// several distinct ones is refused: a client sent to the others would find nothing.
pub fn parse_listen(lists: &[String]) -> Result<Vec<(String, Option<u16>)>, String> {
    let mut chosen: Vec<(String, Option<u16>)> = Vec::new();
    for entry in lists.iter().flat_map(|l| l.split(',')) {
        let entry = entry.trim();
        let entry = entry.strip_prefix("notls:").unwrap_or(entry);
        if entry.is_empty() {
            return Err(format!("-l {}: an empty address", lists.join(",")));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("-l {entry}: an IPv6 address needs its closing ]"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("-l {entry}: expected [ADDR]:PORT")),
            }
        } else {
            match entry.split_once(':') {
                // Two colons or more: a bare IPv6 address.
                Some((_, rest)) if rest.contains(':') => (entry, None),
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("-l {entry}: {p:?} is not a port"))?,
            ),
            None => None,
        };
        if !chosen.iter().any(|(h, p)| h == host && *p == port) {
            chosen.push((host.to_string(), port));
        }
    }
    if chosen.is_empty() {
        return Err("-l: no address given".into());
    }
    Ok(chosen)
}

/// Takes one memcached `-o` option (`name` or `name=value`): `Ok(None)` when it
/// is honoured or has no effect in memcached 1.6.18 either, `Ok(Some(note))` when
/// it is accepted but does not apply here, `Err` when it is malformed, unknown
/// (memcached: "Illegal suboption") or refused.
pub fn extended_option(option: &str) -> Result<Option<String>, String> {
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (option, None),
    };
    let number = |lo: i64, hi: i64| -> Result<i64, String> {
        let text = value.ok_or_else(|| format!("-o {name}: missing numeric argument"))?;
        text.parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("-o {option}: must be a number from {lo} to {hi}"))
    };
    let fraction = || -> Result<f64, String> {
        let text = value.ok_or_else(|| format!("-o {name}: missing numeric argument"))?;
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .ok_or_else(|| format!("-o {option}: must be a non-negative number"))
    };
    let note = |why: &str| Ok(Some(format!("-o {option}: {why}; ignored")));
    const NO_SLABS: &str = "the store has no slab classes (one arena per shard, sized from -m)";
    const NO_LRU_THREADS: &str =
        "each shard's store keeps one LRU and reclaims expired items when it meets them, with no background threads";
    match name {
        // ringcache always answers a connection past -c and closes it.
        "maxconns_fast" => Ok(None),
        "no_maxconns_fast" => note("a connection past -c is always answered and closed (maxconns_fast)"),
        // 1.6.18's `modern` enables nothing.
        "modern" => Ok(None),
        "no_modern" => note("ringcache serves memcached 1.6's behaviour only"),
        "idle_timeout" => {
            if number(0, C_INT_MAX)? == 0 {
                Ok(None)
            } else {
                note("ringcache does not close idle connections")
            }
        }
        "hashpower" => {
            number(HASHPOWER_MIN, HASHPOWER_MAX)?;
            note("each shard's index is sized from its share of -m at start")
        }
        "no_hashexpand" => note("each shard's index is sized from its share of -m at start"),
        "hash_algorithm" => match value {
            Some("jenkins" | "murmur3" | "xxh3") => note("the index hashes keys with ahash"),
            _ => Err(format!("-o {option}: unknown hash_algorithm (jenkins, murmur3 or xxh3)")),
        },
        "slab_chunk_max" | "slab_automove_window" => {
            number(1, C_INT_MAX)?;
            note(NO_SLABS)
        }
        "slab_automove" => {
            number(0, SLAB_AUTOMOVE_MAX)?;
            note(NO_SLABS)
        }
        "slab_automove_ratio" | "slab_automove_freeratio" => {
            fraction()?;
            note(NO_SLABS)
        }
        "slab_reassign" | "no_slab_reassign" => note(NO_SLABS),
        "lru_crawler" | "no_lru_crawler" | "lru_maintainer" | "no_lru_maintainer"
        | "lru_segmented" | "no_lru_segmented" => note(NO_LRU_THREADS),
        "lru_crawler_sleep" => {
            number(0, LRU_CRAWLER_SLEEP_MAX_US)?;
            note(NO_LRU_THREADS)
        }
        "lru_crawler_tocrawl" | "tail_repair_time" | "temporary_ttl" => {
            number(0, C_INT_MAX)?;
            note(NO_LRU_THREADS)
        }
        "hot_lru_pct" | "warm_lru_pct" => {
            number(LRU_PCT_MIN, LRU_PCT_MAX)?;
            note(NO_LRU_THREADS)
        }
        "hot_max_factor" | "warm_max_factor" => {
            fraction()?;
            note(NO_LRU_THREADS)
        }
        "read_buf_mem_limit" => {
            number(0, C_INT_MAX)?;
            note("each connection's buffers are bounded by fixed limits")
        }
        "watcher_logbuf_size" | "worker_logbuf_size" => {
            number(0, C_INT_MAX)?;
            note("each watcher's queue holds a fixed 256 KiB of log lines")
        }
        "track_sizes" => note("`stats sizes` is not kept"),
        "inline_ascii_response" | "no_inline_ascii_response" => {
            note("replies are written the same way either way")
        }
        "drop_privileges" | "no_drop_privileges" => {
            note("memcached's seccomp filter has no counterpart; use the systemd unit's sandboxing")
        }
        "sock_cookie_id" => {
            number(0, C_INT_MAX)?;
            note("sockets carry no cookie")
        }
        "large_memory_pages" => note("the arenas use the kernel's default pages"),
        "meta_response_old" => Err(format!(
            "-o {option}: refused: ringcache answers meta commands with 1.6's codes (HD, NS, ...), not the old OK"
        )),
        _ if name.starts_with("ext_") => note("items are kept in memory only (no extstore)"),
        _ => Err(format!("-o {option}: Illegal suboption")),
    }
}

impl Config {
    /// The flags that shape how the node serves, for its one start line: the
    /// memory and connection limits always, the others when they differ from
    /// memcached's defaults. What the line adds (addresses, shards, pinning)
    /// the runtime knows once the shards run.
    pub fn start_flags(&self) -> String {
        let mut flags = vec![
            format!("-m {}", size_text(self.memory_limit_bytes)),
            format!("-c {}", self.conn_limit),
            format!("-I {}", size_text(self.item_size_max_bytes)),
        ];
        if self.when_full == WhenFull::Refuse {
            flags.push("-M".into());
        }
        if self.protocol != Protocol::Auto {
            flags.push(format!("-B {}", self.protocol.memcached_name()));
        }
        if self.shutdown == ShutdownCommand::Allowed {
            flags.push("-A".into());
        }
        if self.flush == FlushCommand::Refused {
            flags.push("-F".into());
        }
        if self.lock_memory {
            flags.push("-k".into());
        }
        if self.tls.is_some() {
            flags.push("-Z".into());
        }
        if let Some(file) = &self.auth_file {
            flags.push(format!("-Y {}", file.display()));
        }
        if let Some(user) = &self.user {
            flags.push(format!("-u {user}"));
        }
        if self.sockets == SocketPath::Glommio {
            flags.push("--sockets glommio".into());
        }
        if let Some(base) = self.shard_port_base {
            flags.push(format!("--shard-ports {base}"));
        }
        if let Some(cluster) = &self.cluster {
            flags.push(format!(
                "--cluster {} --node-id {}",
                cluster.file.display(),
                cluster.node_id
            ));
        }
        if let Some(dir) = &self.data_dir {
            flags.push(format!("--data-dir {}", dir.display()));
        }
        if let Some((addr, port)) = &self.metrics {
            flags.push(format!("--metrics-port {port} --metrics-addr {addr}"));
        }
        flags.join(" ")
    }

    /// The warning to log at start when a client port is on an address other
    /// machines may reach and nothing authenticates clients: neither `-Y` nor
    /// `-Z` with client certificates required. (A cluster node's peers prove
    /// the cluster secret; its clients do not.)
    pub fn open_to_unauthenticated_clients(
        &self,
        listening: &[std::net::SocketAddr],
    ) -> Option<String> {
        let certificates_required = self
            .tls
            .as_ref()
            .is_some_and(|tls| matches!(tls.verify_mode, VerifyMode::Require | VerifyMode::Once));
        if self.auth_file.is_some() || certificates_required {
            return None;
        }
        let open: Vec<String> = listening
            .iter()
            .filter(|a| !a.ip().is_loopback())
            .map(|a| a.to_string())
            .collect();
        (!open.is_empty()).then(|| {
            format!(
                "clients are not authenticated, and {} is not a loopback address: anyone who reaches it may read, write and flush the cache (see the README's Security: -Y, or -Z with ssl_verify_mode=2)",
                open.join(", ")
            )
        })
    }

    pub fn from_args(args: &Args) -> Result<Config, String> {
        let mut notes = Vec::new();
        refuse_unserved(args)?;
        note_udp_and_unix_mask(args, &mut notes)?;
        let protocol = protocol(args)?;
        check_tuning(args, &mut notes)?;
        let ssl = extended_options(args, &mut notes)?;
        let tls = ssl.settings(args.enable_ssl, &mut notes)?;
        let mut listens = parse_listen(&args.listen)?;
        let (listen, listen_port) = listens.remove(0);
        let port = listen_port.unwrap_or(args.port);
        // Every other address of the list, on its own port or `-p`'s.
        let listen_also: Vec<(String, u16)> = listens
            .into_iter()
            .map(|(host, p)| (host, p.unwrap_or(args.port)))
            .collect();
        let (item_size_max_bytes, memory_limit_bytes) = sizes(args)?;
        check_limits(args)?;
        Ok(Config {
            port,
            listen,
            listen_also,
            memory_limit_bytes,
            conn_limit: args.conn_limit,
            threads: args.threads,
            item_size_max_bytes,
            when_full: if args.disable_evictions {
                WhenFull::Refuse
            } else {
                WhenFull::Evict
            },
            shutdown: if args.enable_shutdown {
                ShutdownCommand::Allowed
            } else {
                ShutdownCommand::Refused
            },
            verbosity: args.verbose,
            spin_before_park_us: args.spin_before_park_us,
            sockets: args.sockets,
            shard_port_base: args.shard_port_base,
            cluster: match (&args.cluster_file, args.node_id) {
                (Some(file), Some(node_id)) => Some(ClusterMembership {
                    file: file.clone(),
                    node_id,
                }),
                _ => None,
            },
            peer_timeout_ms: args.peer_timeout_ms,
            hinted_keys_max: args.hinted_keys_max,
            hot_keys: args.hot_keys,
            metrics: args
                .metrics_port
                .map(|port| (args.metrics_addr.clone(), port)),
            data_dir: args.data_dir.clone(),
            init: args.init,
            join: args.join.clone(),
            cluster_secret: args.cluster_secret.clone(),
            failover_timeout_ms: args.failover_timeout_ms,
            control_cpu: args.control_cpu,
            flush: if args.disable_flush_all {
                FlushCommand::Refused
            } else {
                FlushCommand::Allowed
            },
            protocol,
            listen_backlog: args.listen_backlog,
            user: args.user.clone(),
            pid_file: args.pid_file.clone(),
            lock_memory: args.lock_memory,
            enable_coredumps: args.enable_coredumps,
            tls,
            auth_file: args.auth_file.as_ref().map(Into::into),
            notes,
        })
    }
}

/// Refuses what ringcache does not serve and a client would rely on: unix
/// sockets, SASL, -Y or -Z on a cluster node, and -Z with a `notls:` address.
fn refuse_unserved(args: &Args) -> Result<(), String> {
    if let Some(path) = &args.unix_socket {
        return Err(format!(
            "-s {path}: ringcache does not serve unix sockets, and a client sent there would find nothing; listen on TCP with -l and -p"
        ));
    }
    if args.enable_sasl {
        return Err("-S: SASL authentication is not served by ringcache; run it where only trusted clients reach it".into());
    }
    if let (Some(file), true) = (
        &args.auth_file,
        args.cluster_file.is_some() || args.data_dir.is_some(),
    ) {
        return Err(format!(
            "-Y {file}: a cluster node's ports also carry node-to-node traffic, which authenticates with the cluster secret; -Y serves a node that is not part of a cluster"
        ));
    }
    if args.enable_ssl && args.listen.iter().any(|l| l.contains("notls:")) {
        return Err(
            "-l notls:...: with -Z every address serves TLS; ringcache has no plain listener beside it"
                .into(),
        );
    }
    if args.enable_ssl && (args.cluster_file.is_some() || args.data_dir.is_some()) {
        return Err(
            "-Z: a cluster node's ports also carry node-to-node traffic, which does not speak TLS; \
             -Z serves a node that is not part of a cluster"
                .into(),
        );
    }
    Ok(())
}

/// -U and -a: checked, and noted as not served.
fn note_udp_and_unix_mask(args: &Args, notes: &mut Vec<String>) -> Result<(), String> {
    if args.udp_port != 0 {
        notes.push(format!(
            "-U {}: UDP is not served; clients must use TCP",
            args.udp_port
        ));
    }
    if let Some(mask) = &args.unix_mask {
        if u32::from_str_radix(mask, 8).is_err() {
            return Err(format!("-a {mask}: not an octal mask"));
        }
        notes.push(format!(
            "-a {mask}: applies only to a unix socket (-s), which is not served"
        ));
    }
    Ok(())
}

/// -B, as memcached reads it (and ASCII alone under -Y).
fn protocol(args: &Args) -> Result<Protocol, String> {
    let protocol = match args.protocol.as_str() {
        // As memcached: ASCII authentication makes every connection text.
        _ if args.auth_file.is_some() && args.protocol == "binary" => {
            return Err(
                "-B binary: You cannot allow the BINARY protocol while using ascii authentication tokens (-Y)"
                    .into(),
            )
        }
        _ if args.auth_file.is_some() => Protocol::Ascii,
        "auto" | "negotiate" | "auto-negotiate" => Protocol::Auto,
        "ascii" => Protocol::Ascii,
        "binary" => Protocol::Binary,
        other => {
            return Err(format!(
                "-B {other}: Invalid value for binding protocol: -- should be one of auto, binary, or ascii"
            ))
        }
    };
    Ok(protocol)
}

/// -b and memcached's tuning flags: checked as memcached checks them, and
/// noted where ringcache has no use for them.
fn check_tuning(args: &Args, notes: &mut Vec<String>) -> Result<(), String> {
    if !(1..=limits::LISTEN_BACKLOG_MAX).contains(&args.listen_backlog) {
        return Err(format!(
            "-b {}: the listen backlog must be 1 to {}",
            args.listen_backlog,
            limits::LISTEN_BACKLOG_MAX
        ));
    }
    if let Some(n) = args.max_reqs_per_event {
        if !(1..=C_INT_MAX).contains(&n) {
            return Err(format!(
                "-R {n}: Number of requests per event must be greater than 0"
            ));
        }
        notes.push(format!(
            "-R {n}: a connection's requests run until its read is answered, and the executor's task queue keeps connections fair"
        ));
    }
    if args.disable_cas {
        notes.push("-C: CAS is always kept (cluster replication carries it)".into());
    }
    if let Some(f) = args.slab_growth_factor {
        if f.is_nan() || f <= 1.0 {
            return Err(format!("-f {f}: Factor must be greater than 1"));
        }
        notes.push(format!("-f {f}: the store has no slab classes"));
    }
    if let Some(n) = args.slab_min_size {
        if !(1..=C_INT_MAX).contains(&n) {
            return Err(format!(
                "-n {n}: the minimum item size must be greater than 0"
            ));
        }
        notes.push(format!("-n {n}: the store has no slab classes"));
    }
    if args.large_pages {
        notes.push("-L: the arenas use the kernel's default pages".into());
    }
    if let Some(c) = &args.prefix_delimiter {
        if c.chars().count() != 1 {
            return Err(format!("-D {c:?}: the delimiter must be one character"));
        }
        notes.push(format!("-D {c}: per-prefix stats are not kept"));
    }
    if let Some(file) = &args.memory_file {
        notes.push(format!(
            "-e {file}: items are not kept across restarts; the cache starts empty"
        ));
    }
    if args.disable_dumping {
        notes.push(
            "-X: `stats cachedump` never lists items and `lru_crawler metadump` is not served"
                .into(),
        );
    }
    if args.disable_watch {
        notes.push("-W: not honoured: `watch` is served".into());
    }
    Ok(())
}

/// The -o options: TLS's gathered for [`SslOptions::settings`], the others
/// honoured, noted or refused.
fn extended_options(args: &Args, notes: &mut Vec<String>) -> Result<SslOptions, String> {
    let mut ssl = SslOptions::default();
    for option in args.extended.iter().flat_map(|o| o.split(',')) {
        if option.is_empty() {
            continue;
        }
        let note = if option.starts_with("ssl_") {
            ssl_option(option, &mut ssl)?
        } else {
            extended_option(option)?
        };
        if let Some(note) = note {
            notes.push(note);
        }
    }
    Ok(ssl)
}

/// -I and -m, and the bounds each puts on the other: (item size, memory limit).
fn sizes(args: &Args) -> Result<(usize, usize), String> {
    let item_size_max_bytes = parse_size(&args.max_item_size)?;
    if item_size_max_bytes < limits::ITEM_SIZE_MAX_MIN_BYTES {
        return Err(format!(
            "-I {}: item size must be at least {} bytes",
            args.max_item_size,
            limits::ITEM_SIZE_MAX_MIN_BYTES
        ));
    }
    if item_size_max_bytes > limits::ITEM_SIZE_MAX_MAX_BYTES {
        return Err(format!(
            "-I {}: item size can be at most 1g",
            args.max_item_size
        ));
    }
    let memory_limit_bytes = parse_memory_limit(&args.memory_limit)?;
    if item_size_max_bytes > memory_limit_bytes / 2 {
        return Err(format!(
            "-I {}: cannot set item size limit higher than 1/2 of memory max (-m {})",
            args.max_item_size, args.memory_limit
        ));
    }
    Ok((item_size_max_bytes, memory_limit_bytes))
}

/// The bounds of the connection, thread, port, timeout and key-count options.
fn check_limits(args: &Args) -> Result<(), String> {
    if args.conn_limit == 0 {
        return Err("-c 0: at least one connection must be allowed".into());
    }
    if let Some(t) = args.threads {
        if t == 0 || t > limits::SHARDS_MAX {
            return Err(format!(
                "-t {t}: threads must be 1 to {}",
                limits::SHARDS_MAX
            ));
        }
    }
    if let Some(base) = args.shard_port_base {
        // The shard count is known only at start (it may come from the CPU
        // mask), so this checks for the most there can be.
        let last = base as usize + args.threads.unwrap_or(limits::SHARDS_MAX) - 1;
        if base == 0 || last > u16::MAX as usize {
            return Err(format!(
                "--shard-ports {base}: every shard needs a port from {base} up, and ports end at {}",
                u16::MAX
            ));
        }
    }
    if !(limits::PEER_TIMEOUT_MIN_MS..=limits::PEER_TIMEOUT_MAX_MS).contains(&args.peer_timeout_ms)
    {
        return Err(format!(
            "--peer-timeout-ms {}: must be {} to {}",
            args.peer_timeout_ms,
            limits::PEER_TIMEOUT_MIN_MS,
            limits::PEER_TIMEOUT_MAX_MS
        ));
    }
    if !(limits::FAILOVER_TIMEOUT_MIN_MS..=limits::FAILOVER_TIMEOUT_MAX_MS)
        .contains(&args.failover_timeout_ms)
    {
        return Err(format!(
            "--failover-timeout-ms {}: must be {} to {}",
            args.failover_timeout_ms,
            limits::FAILOVER_TIMEOUT_MIN_MS,
            limits::FAILOVER_TIMEOUT_MAX_MS
        ));
    }
    if args.hinted_keys_max == 0 || args.hinted_keys_max > limits::HINTED_KEYS_MAX_MAX {
        return Err(format!(
            "--hinted-keys-max {}: must be 1 to {}",
            args.hinted_keys_max,
            limits::HINTED_KEYS_MAX_MAX
        ));
    }
    if args.hot_keys > limits::HOT_KEYS_PER_SHARD_MAX {
        return Err(format!(
            "--hotkeys {}: must be 0 to {}",
            args.hot_keys,
            limits::HOT_KEYS_PER_SHARD_MAX
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(argv: &[&str]) -> Result<Config, String> {
        let mut full = vec!["ringcache"];
        full.extend_from_slice(argv);
        Config::from_args(&Args::try_parse_from(full).map_err(|e| e.to_string())?)
    }

    #[test]
    fn defaults_match_memcached() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 11211);
        assert_eq!(c.listen, "127.0.0.1");
        assert_eq!(c.memory_limit_bytes, 64 << 20);
        assert_eq!(c.conn_limit, 1024);
        assert_eq!(c.item_size_max_bytes, 1 << 20);
        assert_eq!(c.when_full, WhenFull::Evict);
        assert_eq!(c.shutdown, ShutdownCommand::Refused);
    }

    #[test]
    fn sizes_take_k_and_m_suffixes() {
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn udp_is_accepted_with_a_note_that_it_is_not_served() {
        assert!(config(&["-U", "0"]).unwrap().notes.is_empty());
        let notes = config(&["-U", "11211"]).unwrap().notes;
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("UDP is not served"), "{notes:?}");
    }

    #[test]
    fn memory_limits_are_megabytes_or_take_a_suffix() {
        let mb = |text: &str| parse_memory_limit(text).map(|b| b >> 20);
        assert_eq!(mb("64"), Ok(64));
        assert_eq!(mb("64m"), Ok(64));
        assert_eq!(mb("64M"), Ok(64));
        assert_eq!(mb("1g"), Ok(1024));
        assert_eq!(mb("2048k"), Ok(2));
        assert_eq!(mb("1"), Ok(1));
        assert_eq!(mb("1024k"), Ok(1));
        assert_eq!(mb("1t"), Ok(1 << 20));
        for bad in [
            "0",
            "1023k",
            "0m",
            "2t",
            "",
            "m",
            "64x",
            "-1",
            "1.5g",
            "99999999999999999999",
        ] {
            assert!(parse_memory_limit(bad).is_err(), "{bad:?}");
        }
        assert_eq!(config(&["-m", "1g"]).unwrap().memory_limit_bytes, 1 << 30);
    }

    #[test]
    fn listen_takes_memcacheds_forms_and_lists() {
        let parse = |l: &[&str]| parse_listen(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let one = |host: &str, port: Option<u16>| Ok(vec![(host.to_string(), port)]);
        assert_eq!(parse(&["127.0.0.1"]), one("127.0.0.1", None));
        assert_eq!(parse(&["127.0.0.1:11300"]), one("127.0.0.1", Some(11300)));
        assert_eq!(parse(&["[::1]:11300"]), one("::1", Some(11300)));
        assert_eq!(parse(&["::1"]), one("::1", None));
        assert_eq!(parse(&["notls:127.0.0.1"]), one("127.0.0.1", None));
        // Repeats collapse; distinct addresses are each listened on.
        assert_eq!(parse(&["127.0.0.1,127.0.0.1"]), one("127.0.0.1", None));
        assert_eq!(parse(&["127.0.0.1", "127.0.0.1"]), one("127.0.0.1", None));
        assert_eq!(
            parse(&["127.0.0.1,127.0.0.2:11300", "::1"]),
            Ok(vec![
                ("127.0.0.1".to_string(), None),
                ("127.0.0.2".to_string(), Some(11300)),
                ("::1".to_string(), None)
            ])
        );
        for bad in [&["a:0"][..], &["a:x"], &[""], &["a,"], &["[::1"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let c = config(&["-l", "127.0.0.2:11300", "-p", "11211"]).unwrap();
        assert_eq!((c.listen.as_str(), c.port), ("127.0.0.2", 11300));
        let c = config(&["-l", "127.0.0.1,127.0.0.2:11300", "-p", "11211"]).unwrap();
        assert_eq!((c.listen.as_str(), c.port), ("127.0.0.1", 11211));
        assert_eq!(c.listen_also, vec![("127.0.0.2".to_string(), 11300)]);
    }

    #[test]
    fn flags_that_would_mislead_a_client_are_refused() {
        for argv in [
            &["-s", "/tmp/m.sock"][..],
            &["-S"],
            &["-Y", "/etc/auth", "--data-dir", "d"],
            &["-B", "http"],
            &["-o", "meta_response_old"],
            &["-o", "no_such_option"],
        ] {
            assert!(config(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn flags_that_do_not_apply_are_accepted_with_a_note_each() {
        let c = config(&[
            "-a",
            "0700",
            "-R",
            "20",
            "-C",
            "-f",
            "1.25",
            "-n",
            "48",
            "-L",
            "-D",
            ":",
            "-e",
            "/dev/shm/m",
            "-X",
            "-W",
        ])
        .unwrap();
        assert_eq!(c.notes.len(), 10, "{:?}", c.notes);
        assert!(c.notes.iter().all(|n| n.starts_with('-')), "{:?}", c.notes);
        for (argv, what) in [
            (&["-R", "0"][..], "greater than 0"),
            (&["-f", "1"], "greater than 1"),
            (&["-n", "0"], "greater than 0"),
            (&["-D", "ab"], "one character"),
            (&["-a", "9"], "octal"),
            (&["-b", "0"], "backlog"),
        ] {
            let err = config(argv).unwrap_err();
            assert!(err.contains(what), "{argv:?}: {err}");
        }
    }

    #[test]
    fn extended_options_are_honoured_noted_or_refused() {
        let c = config(&[
            "-o",
            "modern,maxconns_fast,idle_timeout=0",
            "-o",
            "hashpower=16",
        ])
        .unwrap();
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(c.notes[0].starts_with("-o hashpower=16: "), "{:?}", c.notes);
        for option in [
            "slab_chunk_max=512",
            "lru_crawler",
            "no_lru_crawler",
            "lru_crawler_sleep=100",
            "hot_lru_pct=20",
            "warm_max_factor=2.0",
            "hash_algorithm=xxh3",
            "idle_timeout=600",
            "no_modern",
            "ext_path=/tmp/x:1G",
            "slab_automove=2",
            "track_sizes",
            "no_maxconns_fast",
        ] {
            let note = extended_option(option).unwrap().unwrap();
            assert!(note.starts_with(&format!("-o {option}: ")), "{note}");
        }
        for bad in [
            "hashpower=11",
            "hashpower=65",
            "hashpower",
            "hot_lru_pct=0",
            "hot_lru_pct=81",
            "lru_crawler_sleep=1000001",
            "slab_automove=3",
            "hash_algorithm=md5",
            "idle_timeout=-1",
            "idle_timeout=x",
            "hot_max_factor=x",
            "nonsense",
        ] {
            assert!(extended_option(bad).is_err(), "{bad}");
        }
        assert_eq!(
            extended_option("hashpower=12").map(|n| n.is_some()),
            Ok(true)
        );
        assert_eq!(
            extended_option("hashpower=64").map(|n| n.is_some()),
            Ok(true)
        );
    }

    #[test]
    fn protocol_backlog_flush_and_identity_flags_are_kept() {
        let c = config(&[
            "-B",
            "binary",
            "-b",
            "64",
            "-F",
            "-u",
            "memcache",
            "-P",
            "/run/m.pid",
            "-k",
            "-r",
        ])
        .unwrap();
        assert_eq!(c.protocol, Protocol::Binary);
        assert_eq!(c.listen_backlog, 64);
        assert_eq!(c.flush, FlushCommand::Refused);
        assert_eq!(c.user.as_deref(), Some("memcache"));
        assert_eq!(
            c.pid_file.as_deref(),
            Some(std::path::Path::new("/run/m.pid"))
        );
        assert!(c.lock_memory && c.enable_coredumps && c.notes.is_empty());
        assert_eq!(config(&["-B", "ascii"]).unwrap().protocol, Protocol::Ascii);
        assert_eq!(config(&["-B", "auto"]).unwrap().protocol, Protocol::Auto);
        assert_eq!(config(&[]).unwrap().flush, FlushCommand::Allowed);
        assert!(config(&["-b", "1048576"]).is_ok() && config(&["-b", "1048577"]).is_err());
    }

    #[test]
    fn item_size_above_half_the_memory_is_refused() {
        assert!(config(&["-m", "64", "-I", "32m"]).is_ok());
        assert!(config(&["-m", "64", "-I", "33m"]).is_err());
    }

    #[test]
    fn init_and_join_need_a_data_dir_and_exclude_each_other() {
        assert!(config(&["--init"]).is_err());
        assert!(config(&["--join", "10.0.0.1:11211"]).is_err());
        let c = config(&["--init", "--data-dir", "d"]).unwrap();
        assert!(c.init && c.join.is_none());
        let c = config(&["--join", "10.0.0.1:11211", "--data-dir", "d"]).unwrap();
        assert_eq!(c.join.as_deref(), Some("10.0.0.1:11211"));
        assert!(config(&["--init", "--join", "h:1", "--data-dir", "d"]).is_err());
        assert!(config(&[
            "--init",
            "--data-dir",
            "d",
            "--cluster",
            "c",
            "--node-id",
            "1"
        ])
        .is_err());
        // A node restarts from its data directory alone.
        assert!(config(&["--data-dir", "d"]).is_ok());
    }

    #[test]
    fn tls_options_are_honoured_with_z_and_noted_without() {
        let c = config(&[
            "-Z",
            "-o",
            "ssl_chain_cert=c.pem,ssl_ca_cert=ca.pem,ssl_verify_mode=2,ssl_min_version=tlsv1.3",
        ])
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsSettings {
                chain_cert: "c.pem".into(),
                key: "c.pem".into(),
                ca_cert: Some("ca.pem".into()),
                verify_mode: VerifyMode::Require,
                min_version: TlsVersion::Tls13,
                session_cache: SessionCache::Off,
            })
        );
        let c = config(&[
            "-Z",
            "-o",
            "ssl_chain_cert=c.pem,ssl_key=k.pem,ssl_ciphers=HIGH",
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            (tls.key, tls.verify_mode),
            ("k.pem".into(), VerifyMode::None)
        );
        assert!(
            c.notes[0].starts_with("-o ssl_ciphers=HIGH: "),
            "{:?}",
            c.notes
        );
        // Without -Z the options are read and noted, and nothing is served over TLS.
        let c = config(&["-o", "ssl_chain_cert=c.pem"]).unwrap();
        assert!(
            c.tls.is_none() && c.notes[0].contains("only with -Z"),
            "{:?}",
            c.notes
        );
        for bad in [
            &["-Z"][..],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_verify_mode=1"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_verify_mode=4"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_keyformat=2"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_min_version=sslv3"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_nonsense"],
            &["-Z", "-o", "ssl_chain_cert="],
            &["-Z", "-o", "ssl_chain_cert=c.pem", "-l", "notls:127.0.0.1"],
            &["-Z", "-o", "ssl_chain_cert=c.pem", "--data-dir", "d"],
        ] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_open_address_without_client_authentication_is_warned_of() {
        let addrs = |list: &[&str]| -> Vec<std::net::SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        let open = addrs(&["127.0.0.1:11211", "10.0.0.1:11211"]);
        let warning = config(&[]).unwrap().open_to_unauthenticated_clients(&open);
        assert!(warning
            .unwrap()
            .contains("10.0.0.1:11211 is not a loopback"));
        let c = config(&[]).unwrap();
        assert_eq!(
            c.open_to_unauthenticated_clients(&addrs(&["127.0.0.2:1", "[::1]:1"])),
            None
        );
        let c = config(&["-Y", "users"]).unwrap();
        assert_eq!(c.open_to_unauthenticated_clients(&open), None);
        let tls = "ssl_chain_cert=c,ssl_ca_cert=ca,ssl_verify_mode=";
        for (mode, warned) in [("1", true), ("2", false), ("3", false)] {
            let c = config(&["-Z", "-o", &format!("{tls}{mode}")]).unwrap();
            assert_eq!(
                c.open_to_unauthenticated_clients(&open).is_some(),
                warned,
                "{mode}"
            );
        }
    }

    #[test]
    fn cluster_needs_a_node_id() {
        assert!(config(&["--cluster", "c.toml"]).is_err());
        assert!(config(&["--node-id", "1"]).is_err());
        let c = config(&["--cluster", "c.toml", "--node-id", "2"]).unwrap();
        assert_eq!(c.cluster.unwrap().node_id, 2);
        assert!(config(&["--peer-timeout-ms", "0"]).is_err());
    }

    #[test]
    fn the_start_line_names_the_limits_and_the_flags_that_differ() {
        assert_eq!(config(&[]).unwrap().start_flags(), "-m 64m -c 1024 -I 1m");
        assert_eq!(
            config(&[
                "-m",
                "1g",
                "-c",
                "10",
                "-M",
                "-A",
                "-F",
                "--sockets",
                "glommio"
            ])
            .unwrap()
            .start_flags(),
            "-m 1g -c 10 -I 1m -M -A -F --sockets glommio"
        );
    }

    #[test]
    fn verbosity_counts_v_flags() {
        assert_eq!(config(&["-vv"]).unwrap().verbosity, 2);
        assert_eq!(config(&["-M", "-A"]).unwrap().when_full, WhenFull::Refuse);
    }
}

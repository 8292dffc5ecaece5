//! The command line, with memcached's flags where they exist, turned into a
//! checked [`Config`] (pure: parsing and validation only).
//!
//! Every memcached 1.6 flag is read. One that maps to a ringcache setting is
//! honoured; one that does not apply here is accepted and leaves a line in
//! [`Config::notes`] saying why, which `main` logs at start; one whose absence
//! would mislead a client (a unix socket, SASL) is refused with the reason.
//! The README's flags table lists what becomes of each.

mod checks;
mod extended;
mod tls;
mod values;

use crate::limits;
use crate::storage::WhenFull;
use checks::{
    check_limits, check_tuning, note_udp_and_unix_mask, protocol, refuse_unserved, sizes,
};
use clap::{ArgAction, Parser};
pub use extended::extended_option;
use extended::extended_options;
pub use tls::{SessionCache, TlsSettings, TlsVersion, VerifyMode};
use values::size_text;
pub use values::{parse_listen, parse_memory_limit, parse_size};

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

    /// memcached's binary SASL authentication, mechanism PLAIN: users and
    /// passwords from the file named by MEMCACHED_SASL_PWDB (`user:password`
    /// lines). Makes every connection binary. Not on a cluster node.
    #[arg(short = 'S', long = "enable-sasl")]
    pub enable_sasl: bool,

    /// memcached's ASCII authentication: FILE holds `user:password` lines; a
    /// connection must `set` any key to `<user> <password>` before anything else
    /// (binary connections are closed). On a cluster node, other nodes prove
    /// the cluster secret instead.
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
    /// `-S`: the file of users a binary connection must authenticate as
    /// (SASL PLAIN), named by MEMCACHED_SASL_PWDB.
    pub sasl_pwdb: Option<std::path::PathBuf>,
    /// One line for each memcached flag accepted that does not apply here.
    pub notes: Vec<String>,
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
        if self.sasl_pwdb.is_some() {
            flags.push("-S".into());
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
        if self.auth_file.is_some() || self.sasl_pwdb.is_some() || certificates_required {
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
            sasl_pwdb: sasl_pwdb(args)?,
            notes,
        })
    }
}

/// `-S`: memcached's `MEMCACHED_SASL_PWDB`, the file of `user:password`
/// lines that SASL PLAIN checks.
fn sasl_pwdb(args: &Args) -> Result<Option<std::path::PathBuf>, String> {
    if !args.enable_sasl {
        return Ok(None);
    }
    match std::env::var_os("MEMCACHED_SASL_PWDB") {
        Some(path) if !path.is_empty() => Ok(Some(path.into())),
        _ => Err(
            "-S: set MEMCACHED_SASL_PWDB to a file of user:password lines, the users SASL PLAIN admits"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn config(argv: &[&str]) -> Result<Config, String> {
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
    fn udp_is_accepted_with_a_note_that_it_is_not_served() {
        assert!(config(&["-U", "0"]).unwrap().notes.is_empty());
        let notes = config(&["-U", "11211"]).unwrap().notes;
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("UDP is not served"), "{notes:?}");
    }

    #[test]
    fn flags_that_would_mislead_a_client_are_refused() {
        for argv in [
            &["-s", "/tmp/m.sock"][..],
            &["-S", "-B", "ascii"],
            &["-S", "-Y", "/etc/auth"],
            &["-S", "--data-dir", "d"],
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

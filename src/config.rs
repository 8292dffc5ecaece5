//! The command line, with memcached's flags where they exist, turned into a
//! checked [`Config`] (pure: parsing and validation only).

use crate::limits;
use crate::storage::WhenFull;
use clap::{ArgAction, Parser};

/// Command-line flags. Short names are memcached's.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "ringcache",
    version,
    about = "A memcached-compatible, clustered in-memory cache (thread-per-core, io_uring)",
    disable_version_flag = true
)]
pub struct Args {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// Interface to listen on.
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
    pub listen: String,

    /// Item memory in megabytes, split evenly across shards.
    #[arg(short = 'm', long = "memory-limit", default_value_t = limits::MEMORY_LIMIT_DEFAULT_MB)]
    pub memory_limit_mb: usize,

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

    /// UDP port: only 0 (UDP is not served).
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    pub udp_port: u16,

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

    /// Print version and exit.
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// The server's settings, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    pub listen: String,
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
    pub data_dir: Option<std::path::PathBuf>,
    /// `--init`: create a one-node cluster when `data_dir` is empty.
    pub init: bool,
    /// `--join HOST:PORT`: join that node's cluster when `data_dir` is empty.
    pub join: Option<String>,
    pub failover_timeout_ms: u64,
    pub control_cpu: Option<usize>,
}

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

impl Config {
    pub fn from_args(args: &Args) -> Result<Config, String> {
        if args.udp_port != 0 {
            return Err(format!(
                "-U {}: UDP is not served by ringcache; use -U 0 or leave it out",
                args.udp_port
            ));
        }
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
        if args.memory_limit_mb == 0 {
            return Err("-m 0: the memory limit must be at least 1 megabyte".into());
        }
        let memory_limit_bytes = args
            .memory_limit_mb
            .checked_mul(1024 * 1024)
            .ok_or("-m: memory limit too large")?;
        if item_size_max_bytes > memory_limit_bytes / 2 {
            return Err(format!(
                "-I {}: cannot set item size limit higher than 1/2 of memory max (-m {})",
                args.max_item_size, args.memory_limit_mb
            ));
        }
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
        if !(limits::PEER_TIMEOUT_MIN_MS..=limits::PEER_TIMEOUT_MAX_MS)
            .contains(&args.peer_timeout_ms)
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
        Ok(Config {
            port: args.port,
            listen: args.listen.clone(),
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
            data_dir: args.data_dir.clone(),
            init: args.init,
            join: args.join.clone(),
            failover_timeout_ms: args.failover_timeout_ms,
            control_cpu: args.control_cpu,
        })
    }
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
    fn udp_other_than_zero_is_refused() {
        assert!(config(&["-U", "0"]).is_ok());
        let err = config(&["-U", "11211"]).unwrap_err();
        assert!(err.contains("UDP is not served"), "{err}");
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
    fn cluster_needs_a_node_id() {
        assert!(config(&["--cluster", "c.toml"]).is_err());
        assert!(config(&["--node-id", "1"]).is_err());
        let c = config(&["--cluster", "c.toml", "--node-id", "2"]).unwrap();
        assert_eq!(c.cluster.unwrap().node_id, 2);
        assert!(config(&["--peer-timeout-ms", "0"]).is_err());
    }

    #[test]
    fn verbosity_counts_v_flags() {
        assert_eq!(config(&["-vv"]).unwrap().verbosity, 2);
        assert_eq!(config(&["-M", "-A"]).unwrap().when_full, WhenFull::Refuse);
    }
}

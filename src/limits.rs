//! Every bound the server enforces, named in one place (pure).
//!
//! memcached 1.6 is the reference for the protocol limits; the rest bound the
//! server's own queues and buffers so that no client can make it grow without end.

/// Longest key, in bytes, as in memcached (`KEY_MAX_LENGTH`).
pub const KEY_LEN_MAX: usize = 250;

/// A command line with no `\n` within this many buffered bytes closes the
/// connection, unless it is a `get`/`gets` (memcached's rule in `try_read_command_ascii`).
pub const LINE_LEN_MAX: usize = 2048;

/// A `get`/`gets` line may be longer than [`LINE_LEN_MAX`] (many keys); past this
/// many bytes without `\n` the connection is closed all the same. memcached 1.6.18
/// does not extend this to `gat`/`gats` (checked against the server), nor do we.
pub const MULTIGET_LINE_LEN_MAX: usize = 1 << 20;

/// Leading spaces memcached tolerates before it judges an over-long line.
pub const LEADING_SPACES_MAX: usize = 100;

/// Opaque tokens in a meta request, as in memcached (`MAX_TOKENS` less the command).
pub const TOKENS_MAX: usize = 24;

/// memcached's `MAX_TOKENS` for a text request line: it cuts a line into at most
/// this many tokens less one, then (for `get`) reads the rest in further rounds.
pub const TEXT_TOKENS_MAX: usize = 24;

/// `verbosity` levels above this are taken as this (memcached's `MAX_VERBOSITY_LEVEL`).
pub const VERBOSITY_MAX: u32 = 2;

/// `cache_memlimit` bounds, in megabytes, as memcached checks them.
pub const MEMLIMIT_MIN_MB: u64 = 8;
pub const MEMLIMIT_MAX_MB: u64 = 1_000_000_000;

/// Relative expiry times up to this many seconds (30 days); larger values are
/// absolute Unix times (memcached's `REALTIME_MAXDELTA`).
pub const REALTIME_MAXDELTA_SECS: i64 = 60 * 60 * 24 * 30;

/// Default and bounds of `-I/--max-item-size`.
pub const ITEM_SIZE_MAX_DEFAULT_BYTES: usize = 1024 * 1024;
pub const ITEM_SIZE_MAX_MIN_BYTES: usize = 1024;
pub const ITEM_SIZE_MAX_MAX_BYTES: usize = 1024 * 1024 * 1024;

/// memcached counts this many bytes of item header against `-I` besides the key
/// and value (48-byte `item` struct + 8-byte CAS); a value is "too large" at
/// exactly the same size as in memcached 1.6 so clients see the same edge.
pub const MEMCACHED_ITEM_OVERHEAD_BYTES: usize = 48 + 8;

/// Default `-m`, in megabytes.
pub const MEMORY_LIMIT_DEFAULT_MB: usize = 64;

/// Default `-c`: simultaneous client connections per node.
pub const CONN_LIMIT_DEFAULT: usize = 1024;

/// Pending connections the kernel queues on a listening socket: the default of
/// memcached's `-b`, and the most `-b` takes (the kernel caps it at
/// `net.core.somaxconn` anyway).
pub const LISTEN_BACKLOG: i32 = 1024;
pub const LISTEN_BACKLOG_MAX: i32 = 1 << 20;

/// The most `-m` takes: 1 TiB, far past any machine this runs on, so that a
/// mistyped suffix is refused rather than attempted.
pub const MEMORY_LIMIT_MAX_BYTES: usize = 1 << 40;

/// Bytes read from a socket at once.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Replies gathered from one read before they are written out. A connection
/// writes what it has and waits for the client to take it before it executes
/// more, so a client that sends requests and never reads its replies holds at
/// most this much (plus one item) of the server's memory.
pub const REPLY_BUFFER_FLUSH_BYTES: usize = 256 * 1024;

/// A connection's read buffer shrinks back to [`READ_CHUNK_BYTES`] once it is
/// empty and larger than this (after a large item or a long multi-key get).
pub const READ_BUFFER_KEEP_BYTES: usize = 64 * 1024;

/// Capacity, in batches, of each bounded channel between two shards of a node.
pub const SHARD_CHANNEL_CAPACITY: usize = 256;

/// Most requests from one read forwarded to another shard in a single batch.
pub const FORWARD_BATCH_REQUESTS_MAX: usize = 1024;

/// Most forwarded retrievals one connection waits on at once. Their replies are
/// gathered before they are written, so this bounds a connection's memory at
/// this many items (each at most `-I`) besides [`REPLY_BUFFER_FLUSH_BYTES`].
pub const FORWARDED_VALUES_MAX: usize = 16;

/// Most shards (executors) in one node.
pub const SHARDS_MAX: usize = 256;

/// How long a shard waits for another shard of its node to answer. One that
/// has not answered by then is taken as hung: the waiting shard panics, and the
/// supervisor stops the node (exit 70) for the service manager to restart.
pub const SHARD_ANSWER_TIMEOUT_SECS: u64 = 30;

/// Registered I/O memory per io_uring ring. glommio's default (10 MiB) does not fit
/// an 8 MiB memlock limit; a network server needs very little.
pub const IO_MEMORY_BYTES: usize = 512 * 1024;

/// Whether a value of `value_len` bytes (without `\r\n`) with this key and flags
/// fits under `item_size_max_bytes`, counted as memcached 1.6 counts it.
pub fn item_fits(key_len: usize, flags: u32, value_len: usize, item_size_max_bytes: usize) -> bool {
    let suffix_bytes = if flags == 0 { 0 } else { 4 };
    let total = MEMCACHED_ITEM_OVERHEAD_BYTES + key_len + 1 + suffix_bytes + value_len + 2;
    total <= item_size_max_bytes
}

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta request line of more tokens than
/// this (counting the command, the key and memcached's empty terminal token) is
/// refused, so a meta request carries at most 17 flags.
pub const META_TOKENS_MAX: usize = 20;

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`: longest `O` token, the `O` included.
pub const META_OPAQUE_LEN_MAX: usize = 32;

/// Longest key a base64 (`b`) meta key decodes to: [`KEY_LEN_MAX`] characters of
/// base64 carry at most this many bytes.
pub const BINARY_KEY_LEN_MAX: usize = KEY_LEN_MAX / 4 * 3;

/// `--peer-timeout-ms`: how long a request to another node may take before the
/// next owner is tried and that node is skipped (marked TKO) for a while.
pub const PEER_TIMEOUT_DEFAULT_MS: u64 = 250;
pub const PEER_TIMEOUT_MIN_MS: u64 = 10;
pub const PEER_TIMEOUT_MAX_MS: u64 = 60_000;

/// How often a node probes the peers it has marked TKO, and how long a mark
/// lasts without a probe renewing it.
pub const PEER_PROBE_INTERVAL_MS: u64 = 100;

/// `--hinted-keys-max`: most keys one shard keeps hints for, per unreachable
/// node. Past this the hints for that node are dropped and marked overflowed:
/// when it returns, it drops the data it shares with this node and copies it
/// afresh.
pub const HINTED_KEYS_MAX_DEFAULT: usize = 100_000;
pub const HINTED_KEYS_MAX_MAX: usize = 100_000_000;

/// `--hotkeys`: counters in each shard's space-saving sketch of its most
/// requested keys (`crate::hotkeys`). Every key asked for more than
/// 1/N of a shard's requests is kept (in expectation once the sketch
/// samples, see `crate::hotkeys`); each counter holds a key of up to
/// [`KEY_LEN_MAX`] bytes, so the default costs about 17 KiB per shard.
pub const HOT_KEYS_PER_SHARD_DEFAULT: usize = 64;
pub const HOT_KEYS_PER_SHARD_MAX: usize = crate::hotkeys::CAPACITY_MAX;
/// Most hot keys `stats hotkeys` lists (all shards together, most requested first).
pub const HOT_KEYS_LISTED_MAX: usize = 100;
/// Hot keys the metrics port exposes as `ringcache_hotkey_requests`.
pub const HOT_KEYS_METRICS_TOP: usize = 10;

/// `watch`: most watchers at once (memcached's `WATCHER_LIMIT`); one more is
/// answered `WATCHER_TOO_MANY log watcher limit reached`.
pub const WATCHERS_MAX: usize = 20;
/// Bytes of log lines waiting for one watcher (memcached's default
/// `watcher_logbuf_size`); lines past it are dropped and reported as `skipped=N`.
pub const WATCH_QUEUE_BYTES: usize = 256 * 1024;
/// How often a watcher's connection writes out its queue.
pub const WATCH_POLL_MS: u64 = 5;
/// Evictions a store notes for `watch evictions` before they are taken: more
/// than one watcher's queue holds of the shortest eviction lines (about 80
/// bytes), so a full set of notes is dropped at a queue anyway; past it, notes
/// are counted and the watchers read `skipped=N`.
pub const EVICTION_NOTES_MAX: usize = 4096;

/// How long a shard of a cluster node remembers a removed key's CAS unique
/// (see `cluster::tombstones`): a copy of the key older than the removal that
/// arrives within this time is dropped. Longer than a node is expected to be
/// away and come back with its copies.
pub const TOMBSTONE_KEEP_SECS: u32 = 3600;

/// Most removed keys one shard remembers; past this the oldest are forgotten.
pub const TOMBSTONES_PER_SHARD_MAX: usize = 100_000;

/// Most keys a recovering node remembers as written since its recovery began
/// (copies from peers never overwrite them). Past this, recovery restarts.
pub const RECOVERY_WRITTEN_KEYS_MAX: usize = 1_000_000;

/// Inputs queued for the control thread (consensus messages, failure reports,
/// proposals) before more are refused: a message past it is dropped as the
/// network might drop it, and a proposal is answered
/// `SERVER_ERROR the control queue is full; try again`.
pub const CONTROL_QUEUE_DEPTH: usize = 1024;

/// Lines the control thread queues for one other node's link (consensus
/// messages, failure reports) before more are dropped, as the network might
/// drop them: Paxos retries, and a report goes again at the next interval.
pub const CONTROL_LINK_QUEUE_DEPTH: usize = 64;

/// Most replies bytes one peer link buffers before its reader gives up on the
/// peer (a reply is at most one item plus a line).
pub const PEER_REPLY_BYTES_MAX: usize = ITEM_SIZE_MAX_MAX_BYTES + 4096;

/// Most requests one peer link holds, queued or awaiting their replies. One
/// past it is not sent: it fails at once as a request to an unreachable
/// owner does (a client's goes to the next owner or gets `SERVER_ERROR`, a
/// replicated item becomes a hint). A link that full has a peer far behind.
pub const PEER_LINK_REQUESTS_MAX: usize = 65_536;

/// Data movement: how long after an epoch takes keys from a node it first
/// tries to release them (drop its copies), and how long it waits to try again
/// while some of their new owners are unreachable or still copying. Copies
/// are only dropped once every new owner reports the epoch and has copied.
pub const MIGRATION_RELEASE_GRACE_MS: u64 = 1_000;
pub const MIGRATION_RELEASE_RETRY_MS: u64 = 1_000;

/// How long a recovering node waits for one peer shard to push its copy.
pub const RECOVERY_PEER_TIMEOUT_SECS: u64 = 120;

/// `--failover-timeout-ms`: how long a majority of nodes must find a node
/// unreachable before the Paxos leader proposes marking it down.
pub const FAILOVER_TIMEOUT_DEFAULT_MS: u64 = 3_000;
pub const FAILOVER_TIMEOUT_MIN_MS: u64 = 100;
pub const FAILOVER_TIMEOUT_MAX_MS: u64 = 3_600_000;

/// How long a recovering node keeps asking a peer shard that answers from
/// another epoch (see `runtime::cluster::recovery`): until both are at one
/// epoch, the peer may still act on the older one (stand in as primary for
/// keys this node takes back), so this node is not primary beside it. Nodes
/// take up a decision milliseconds apart; a peer still at another epoch after
/// this is given up on, as one that does not answer.
pub const RECOVERY_EPOCH_WAIT_MS: u64 = 5_000;

/// How many times, and how far apart, a request or item refused by a peer at
/// another epoch is sent to it again before giving up on that peer: nodes take
/// up a new configuration a few milliseconds apart.
pub const EPOCH_RETRIES_MAX: u32 = 20;
pub const EPOCH_RETRY_PAUSE_MS: u64 = 10;

/// How many times, and how far apart, a client's request that a key's primary
/// refused because it recovers or settles, and that no other owner may take
/// (see `cluster::route::stand_ins_may_be_stale`), is sent to the primary
/// again before the client is told `SERVER_ERROR no owner of this key is
/// reachable`: a restarted or resumed node settles in milliseconds.
pub const RECOVERING_PRIMARY_RETRIES_MAX: u32 = 20;
pub const RECOVERING_PRIMARY_RETRY_PAUSE_MS: u64 = 10;

/// The metrics port: the most bytes of an HTTP request head read, and how long
/// a scraper may take to send it or read the answer. Scrapes are served one at
/// a time, so a stalled scraper holds the port at most this long.
pub const METRICS_REQUEST_HEAD_MAX_BYTES: usize = 8192;
pub const METRICS_IO_TIMEOUT_SECS: u64 = 5;
/// The most bytes of stats replies one scrape reads from the node.
pub const METRICS_STATS_REPLY_MAX_BYTES: usize = 1 << 20;

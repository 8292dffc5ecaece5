//! What one shard does with one parsed request: store calls and reply bytes (pure).
//!
//! The runtime hands a shard's requests here, in order, with the shard's store,
//! counters and clock; replies are appended to `out`. Requests that concern the
//! whole node (stats, flush_all, version, shutdown...) are answered by the runtime
//! from a [`NodeView`] it gathers from every shard, with [`write_stats`], [`flush`]
//! and the replies in [`reply`].
//!
//! Replies and counters are memcached 1.6.18's, checked against the server: for
//! instance `gat` counts `cmd_touch` and `touch_hits`/`touch_misses` but neither
//! `cmd_get` nor `get_hits`, and a storage command whose item could not be
//! allocated does not count in `cmd_set`.

use std::fmt::Write as _;

pub mod binary;
pub mod meta;
mod stats_command;
pub mod watch;

use crate::hotkeys::HotKeys;
use crate::protocol::text::{ArithOp, GetEnding, GetKind, Keys, Reply, Request, StoreMode};
use crate::stats::ShardStats;
use crate::storage::ttl::{expiry, Clock};
use crate::storage::{ArithOutcome, DeleteOutcome, ItemView, Miss, Store, StoreOutcome};
pub use stats_command::{
    write_metadump_line, write_stats, write_uri_encoded, ConnView, NodeView, Settings,
};
use watch::{Fetched, Stored, WatchLog};

/// Everything a shard owns that requests act on. One owner: the shard's executor.
pub struct ShardState {
    pub store: Store,
    pub stats: ShardStats,
    /// The keys this shard is asked for most (`stats hotkeys`); None: not counted (`--hotkeys 0`).
    pub hot_keys: Option<HotKeys>,
    /// Lines for `watch`ers, while any watches.
    pub watch: WatchLog,
}

impl ShardState {
    /// A shard over `store` with a hot-key sketch of `hot_keys` counters (0: none).
    pub fn new(store: Store, hot_keys: usize) -> ShardState {
        ShardState {
            store,
            stats: ShardStats::default(),
            hot_keys: (hot_keys > 0).then(|| HotKeys::new(hot_keys)),
            watch: WatchLog::default(),
        }
    }

    /// Tells the log what the node's watchers want (0: nobody watches) and
    /// which connection the next requests come from, and the store whether to
    /// note its evictions.
    #[inline]
    pub fn set_watched(&mut self, wanted: u8, cfd: u64) {
        self.watch.wanted = wanted;
        self.watch.cfd = cfd;
        self.store.note_evictions(wanted & watch::EVICTIONS != 0);
    }

    /// Turns the evictions the store noted into `watch evictions` lines.
    #[inline]
    pub fn log_evictions(&mut self) {
        if self.store.has_evicted() {
            self.log_evictions_noted();
        }
    }

    #[cold]
    fn log_evictions_noted(&mut self) {
        let watch = &mut self.watch;
        let dropped = self
            .store
            .take_evicted(|key, evicted| watch.eviction(key, evicted));
        watch.evictions_dropped += dropped;
    }

    /// Notes a lookup of `key` for `watch fetchers` (memcached logs one per
    /// command that looks a key up, storage commands included).
    #[inline]
    pub fn watch_fetch(&mut self, key: &[u8], now: u32) {
        if self.watch.wants(watch::FETCHERS) {
            self.log_fetch(key, now);
        }
    }

    #[cold]
    fn log_fetch(&mut self, key: &[u8], now: u32) {
        let (fetched, size) = match self.store.peek(key, now) {
            Ok(item) => (Fetched::Found, item.value.len()),
            Err(Miss::Absent) => (Fetched::NotFound, 0),
            Err(Miss::Expired) => (Fetched::Expired, 0),
            Err(Miss::Flushed) => (Fetched::Flushed, 0),
        };
        self.watch.item_get(key, fetched, size);
    }

    /// Notes a storage command's outcome for `watch mutations`.
    #[inline]
    pub fn watch_store(
        &mut self,
        key: &[u8],
        mode: StoreMode,
        outcome: StoreOutcome,
        expiry: u32,
        data_len: usize,
        now: u32,
    ) {
        if self.watch.wants(watch::MUTATIONS) {
            self.log_store(key, mode, outcome, expiry, data_len, now);
        }
    }

    #[cold]
    fn log_store(
        &mut self,
        key: &[u8],
        mode: StoreMode,
        outcome: StoreOutcome,
        expiry: u32,
        data_len: usize,
        now: u32,
    ) {
        let cmd = match mode {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas(_) => "cas",
        };
        let stored = match outcome {
            StoreOutcome::Stored(_) => Stored::Stored,
            StoreOutcome::NotStored => Stored::NotStored,
            StoreOutcome::Exists => Stored::Exists,
            StoreOutcome::NotFound => Stored::NotFound,
            StoreOutcome::TooLarge => Stored::TooLarge,
            StoreOutcome::OutOfMemory => Stored::NoMemory,
        };
        // An append or prepend logs the joined item, which keeps its expiry.
        let (size, expiry) = match (stored, mode) {
            (Stored::Stored, StoreMode::Append | StoreMode::Prepend) => self
                .store
                .peek(key, now)
                .map_or((data_len, expiry), |item| (item.value.len(), item.exptime)),
            _ => (data_len, expiry),
        };
        let ttl_secs = if expiry == 0 {
            0
        } else {
            expiry.saturating_sub(now)
        };
        self.watch.item_store(key, stored, cmd, ttl_secs, size);
    }

    /// Counts one read or write of `key` in the hot-key sketch, if there is one.
    #[inline]
    pub fn count_key(&mut self, key: &[u8]) {
        if let Some(hot_keys) = &mut self.hot_keys {
            hot_keys.record(key);
        }
    }
}

/// What the connection should do after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading requests.
    Continue,
    /// `quit`: close the connection once earlier replies are written.
    Close,
}

/// memcached's fixed reply lines, for the runtime's node requests as well as here.
pub mod reply {
    pub const OK: &[u8] = b"OK\r\n";
    pub const END: &[u8] = b"END\r\n";
    pub const ERROR: &[u8] = b"ERROR\r\n";
    pub const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
    pub const RESET: &[u8] = b"RESET\r\n";
    pub const STORED: &[u8] = b"STORED\r\n";
    pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
    pub const EXISTS: &[u8] = b"EXISTS\r\n";
    pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
    pub const DELETED: &[u8] = b"DELETED\r\n";
    pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
    pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
    pub const STORE_OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
    pub const ARITH_OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory\r\n";
    pub const NON_NUMERIC: &[u8] =
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    /// `shutdown` without `-A`, whatever its arguments.
    pub const SHUTDOWN_NOT_ENABLED: &[u8] = b"ERROR: shutdown not enabled\r\n";
    /// `flush_all` under `-F`.
    pub const FLUSH_NOT_ALLOWED: &[u8] = b"CLIENT_ERROR flush_all not allowed\r\n";
    /// `shutdown` with `-A` and arguments other than `graceful`.
    pub const SHUTDOWN_INVALID_MODE: &[u8] = b"CLIENT_ERROR invalid shutdown mode\r\n";
    /// `cache_memlimit` that the stores cannot apply.
    pub const MEMLIMIT_ADJUST_FAILED: &[u8] =
        b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n";
}

/// Appends `line` unless the client said `noreply`. memcached's `out_string`: every
/// reply of a `noreply` request is dropped, errors included (`flush_all`,
/// `verbosity` and `cache_memlimit` answer through this too).
pub fn write_reply(reply: Reply, line: &[u8], out: &mut Vec<u8>) {
    if reply == Reply::Wanted {
        out.extend_from_slice(line);
    }
}

/// Appends the answer to `version`.
pub fn write_version(out: &mut Vec<u8>) {
    out.extend_from_slice(b"VERSION ");
    out.extend_from_slice(VERSION.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Applies one key request (get family, storage, delete, incr/decr, touch, and
/// [`Request::TooLarge`]) to this shard and appends its reply to `out`. `quit` is
/// answered with [`Step::Close`].
///
/// # Panics
/// On a request that concerns the whole node; the runtime answers those itself.
pub fn execute(shard: &mut ShardState, req: &Request, clock: &Clock, out: &mut Vec<u8>) -> Step {
    let now = clock.rel_secs;
    // Retrievals count each key in `get_one`, meta requests in `meta::execute`.
    match *req {
        Request::Store { key, .. }
        | Request::TooLarge { key, .. }
        | Request::Delete { key, .. }
        | Request::Arith { key, .. }
        | Request::Touch { key, .. } => {
            shard.count_key(key);
            shard.watch_fetch(key, now);
        }
        _ => {}
    }
    match *req {
        Request::Get {
            kind,
            exptime,
            keys,
            ending,
        } => get(shard, kind, exptime, keys, ending, clock, out),
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            reply,
        } => {
            let expiry = expiry(exptime, clock);
            let outcome = shard.store.store(mode, key, flags, expiry, data, now);
            shard.watch_store(key, mode, outcome, expiry, data.len(), now);
            write_reply(reply, store_reply(&mut shard.stats, mode, outcome), out);
        }
        Request::TooLarge {
            mode, key, reply, ..
        } => {
            // memcached refuses the item before reading it: no cmd_set. A set must
            // not leave the old value readable.
            shard.stats.store_too_large += 1;
            if mode == StoreMode::Set {
                shard.store.unlink(key);
            }
            shard.watch_store(key, mode, StoreOutcome::TooLarge, 0, 0, now);
            write_reply(reply, reply::TOO_LARGE, out);
        }
        Request::Delete { key, reply } => {
            let line = match shard.store.delete(key, now) {
                DeleteOutcome::Deleted => {
                    shard.stats.delete_hits += 1;
                    reply::DELETED
                }
                DeleteOutcome::NotFound => {
                    shard.stats.delete_misses += 1;
                    reply::NOT_FOUND
                }
            };
            write_reply(reply, line, out);
        }
        Request::Arith {
            op,
            key,
            delta,
            reply,
        } => arith(shard, op, key, delta, reply, now, out),
        Request::Touch {
            key,
            exptime,
            reply,
        } => {
            shard.stats.cmd_touch += 1;
            let line = match shard.store.touch(key, expiry(exptime, clock), now) {
                Ok(_) => {
                    shard.stats.touch_hits += 1;
                    reply::TOUCHED
                }
                Err(miss) => {
                    shard.stats.touch_misses += 1;
                    count_miss_cause(&mut shard.stats, miss);
                    reply::NOT_FOUND
                }
            };
            write_reply(reply, line, out);
        }
        Request::Meta(ref req) => meta::execute(shard, req, clock, out),
        Request::Quit => return Step::Close,
        Request::FlushAll { .. }
        | Request::Version
        | Request::Verbosity { .. }
        | Request::Shutdown { .. }
        | Request::CacheMemlimit { .. }
        | Request::SlabsAutomove { .. }
        | Request::LruCrawler(_)
        | Request::Watch { .. }
        | Request::Stats { .. } => panic!("node request handed to a shard: {req:?}"),
    }
    Step::Continue
}

fn get(
    shard: &mut ShardState,
    kind: GetKind,
    exptime: Option<i64>,
    keys: Keys,
    ending: GetEnding,
    clock: &Clock,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    for key in keys.iter() {
        get_one(shard, kind, exptime, key, clock, out);
    }
    end_retrieval(ending, start, out);
}

/// Closes a retrieval whose values were appended to `out` from `start` on: `END`,
/// or, after an over-long key, memcached's error in place of the values.
pub fn end_retrieval(ending: GetEnding, start: usize, out: &mut Vec<u8>) {
    match ending {
        GetEnding::End => out.extend_from_slice(reply::END),
        GetEnding::KeyTooLong => {
            out.truncate(start);
            out.extend_from_slice(reply::BAD_FORMAT);
        }
    }
}

/// Counts a storage command as memcached does and names its reply.
fn store_reply(stats: &mut ShardStats, mode: StoreMode, outcome: StoreOutcome) -> &'static [u8] {
    let appending = matches!(mode, StoreMode::Append | StoreMode::Prepend);
    let allocation_failed = matches!(outcome, StoreOutcome::TooLarge | StoreOutcome::OutOfMemory);
    // memcached allocates the new item before reading its data and counts cmd_set
    // once it is read; append and prepend allocate the joined item later.
    if appending || !allocation_failed {
        stats.cmd_set += 1;
    }
    let is_cas = matches!(mode, StoreMode::Cas(_));
    match outcome {
        StoreOutcome::Stored(_) => {
            if is_cas {
                stats.cas_hits += 1;
            }
            reply::STORED
        }
        StoreOutcome::NotStored => reply::NOT_STORED,
        StoreOutcome::Exists => {
            stats.cas_badval += 1;
            reply::EXISTS
        }
        StoreOutcome::NotFound => {
            stats.cas_misses += 1;
            reply::NOT_FOUND
        }
        // memcached answers NOT_STORED when the joined item cannot be allocated,
        // and counts neither store_too_large nor store_no_memory for it.
        StoreOutcome::TooLarge | StoreOutcome::OutOfMemory if appending => reply::NOT_STORED,
        StoreOutcome::TooLarge => {
            stats.store_too_large += 1;
            reply::TOO_LARGE
        }
        StoreOutcome::OutOfMemory => {
            stats.store_no_memory += 1;
            reply::STORE_OUT_OF_MEMORY
        }
    }
}

fn arith(
    shard: &mut ShardState,
    op: ArithOp,
    key: &[u8],
    delta: u64,
    reply: Reply,
    now: u32,
    out: &mut Vec<u8>,
) {
    let stats = &mut shard.stats;
    match shard.store.arith(op, key, delta, now) {
        ArithOutcome::Value(value) => {
            match op {
                ArithOp::Incr => stats.incr_hits += 1,
                ArithOp::Decr => stats.decr_hits += 1,
            }
            if reply == Reply::Wanted {
                // Writing to a Vec cannot fail.
                let _ = write!(Bytes(out), "{value}\r\n");
            }
        }
        ArithOutcome::NotFound => {
            match op {
                ArithOp::Incr => stats.incr_misses += 1,
                ArithOp::Decr => stats.decr_misses += 1,
            }
            write_reply(reply, reply::NOT_FOUND, out);
        }
        ArithOutcome::NonNumeric => write_reply(reply, reply::NON_NUMERIC, out),
        ArithOutcome::OutOfMemory => write_reply(reply, reply::ARITH_OUT_OF_MEMORY, out),
    }
}

/// memcached counts an expired or flushed item found by any lookup.
pub(crate) fn count_miss_cause(stats: &mut ShardStats, miss: Miss) {
    match miss {
        Miss::Absent => {}
        Miss::Expired => stats.get_expired += 1,
        Miss::Flushed => stats.get_flushed += 1,
    }
}

/// Appends the `VALUE` block of one key of a retrieval (nothing on a miss), without
/// the closing `END`: a multi-key get split across shards is put back together from these.
///
/// # Format
/// ```text
/// VALUE <key> <flags> <bytes>[ <cas unique>]\r\n<data>\r\n
/// ```
pub fn get_one(
    shard: &mut ShardState,
    kind: GetKind,
    exptime: Option<i64>,
    key: &[u8],
    clock: &Clock,
    out: &mut Vec<u8>,
) {
    shard.count_key(key);
    shard.watch_fetch(key, clock.rel_secs);
    if let Some(item) = lookup(shard, exptime, key, clock) {
        write_value(&item, kind, out);
    }
}

/// Looks up one key for a retrieval (`exptime: None`) or a touch/gat (`Some`),
/// counting it as memcached does; used by the text and binary protocols alike.
pub fn lookup<'s>(
    shard: &'s mut ShardState,
    exptime: Option<i64>,
    key: &[u8],
    clock: &Clock,
) -> Option<ItemView<'s>> {
    let stats = &mut shard.stats;
    let found = match exptime {
        None => {
            stats.cmd_get += 1;
            shard.store.get(key, clock.rel_secs)
        }
        Some(exptime) => {
            stats.cmd_touch += 1;
            shard
                .store
                .touch(key, expiry(exptime, clock), clock.rel_secs)
        }
    };
    match (found, exptime) {
        (Ok(item), None) => {
            stats.get_hits += 1;
            Some(item)
        }
        (Ok(item), Some(_)) => {
            stats.touch_hits += 1;
            Some(item)
        }
        (Err(miss), touching) => {
            if touching.is_some() {
                stats.touch_misses += 1;
            } else {
                stats.get_misses += 1;
            }
            count_miss_cause(stats, miss);
            None
        }
    }
}

fn write_value(item: &ItemView, kind: GetKind, out: &mut Vec<u8>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(item.key);
    let _ = write!(Bytes(out), " {} {}", item.flags, item.value.len());
    if kind == GetKind::Gets {
        let _ = write!(Bytes(out), " {}", item.cas);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(item.value);
    out.extend_from_slice(b"\r\n");
}

/// Makes this shard's items invalid as `flush_all [delay]` asks: at once for a
/// delay of 0 or less, else from `realtime(delay)` on, as memcached does.
///
/// The runtime calls this on every shard and counts `cmd_flush` once per request
/// (memcached counts it even when the delay is refused).
pub fn flush(shard: &mut ShardState, delay_secs: i64, clock: &Clock) {
    let oldest_live = if delay_secs > 0 {
        expiry(delay_secs, clock)
    } else {
        clock.rel_secs
    };
    shard.store.flush(oldest_live, clock.rel_secs);
}

/// `fmt::Write` into a byte buffer, so numbers are formatted without a `String`.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The version reported by `version`, `stats` and the binary `VERSION`: the memcached
/// release whose behaviour is served, bare. Clients parse it: libmemcached refuses a
/// server whose major version is 0, and Perl's `version->parse` (Cache::Memcached)
/// refuses a suffix such as `1.6.18-ringcache-0.1.0`.
pub const VERSION: &str = "1.6.18";

/// ringcache's own version, reported as `stats`' `ringcache_version`.
pub const RINGCACHE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse, ParseError, ParseLimits};
    use crate::storage::{StoreConfig, WhenFull};

    pub(super) const MB: usize = 1024 * 1024;

    pub(super) fn shard() -> ShardState {
        ShardState::new(
            Store::new(StoreConfig {
                memory_limit_bytes: 4 * MB,
                item_size_max_bytes: MB,
                when_full: WhenFull::Evict,
                cas_suffix: 0,
                cas_suffix_bits: 0,
                clock_cas: false,
            }),
            crate::limits::HOT_KEYS_PER_SHARD_DEFAULT,
        )
    }

    pub(super) fn clock(rel_secs: u32) -> Clock {
        Clock {
            rel_secs,
            process_started_unix: 1_700_000_000,
        }
    }

    /// Feeds `input` through the parser and the engine as a connection would, and
    /// returns the bytes written back. `flush_all` is answered here as the runtime
    /// answers it; other node requests are not expected.
    pub(super) fn converse(
        shard: &mut ShardState,
        clock: &Clock,
        limits: &ParseLimits,
        input: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            match parse(&input[at..], limits) {
                Ok((req, consumed)) => {
                    at += consumed;
                    match req {
                        Request::FlushAll { delay_secs, reply } => {
                            flush(shard, delay_secs, clock);
                            write_reply(reply, reply::OK, &mut out);
                        }
                        Request::TooLarge { swallow_bytes, .. } => {
                            execute(shard, &req, clock, &mut out);
                            at += swallow_bytes;
                        }
                        _ => {
                            if execute(shard, &req, clock, &mut out) == Step::Close {
                                break;
                            }
                        }
                    }
                }
                Err(ParseError::Invalid {
                    reply,
                    consumed,
                    swallow_bytes,
                }) => {
                    out.extend_from_slice(reply);
                    at += consumed + swallow_bytes;
                }
                Err(e) => panic!("{e:?} at {at} of {:?}", String::from_utf8_lossy(input)),
            }
        }
        out
    }

    /// One exchange on a fresh shard at time 100: the reply bytes and the counters.
    fn exchange(input: &[u8]) -> (String, ShardStats) {
        let mut shard = shard();
        let out = converse(&mut shard, &clock(100), &ParseLimits::default(), input);
        (String::from_utf8(out).unwrap(), shard.stats)
    }

    // The expected replies below are what memcached 1.6.18 sent for the same bytes.

    #[test]
    fn storage_commands_reply_and_count_as_memcached() {
        let (out, st) = exchange(
            b"add a 0 0 1\r\nx\r\nadd a 0 0 1\r\nx\r\nreplace zz 0 0 1\r\nx\r\n\
              append zz 0 0 1\r\nx\r\nprepend a 0 0 1\r\ny\r\nget a\r\n",
        );
        assert_eq!(
            out,
            "STORED\r\nNOT_STORED\r\nNOT_STORED\r\nNOT_STORED\r\nSTORED\r\nVALUE a 0 2\r\nyx\r\nEND\r\n"
        );
        assert_eq!((st.cmd_set, st.cmd_get, st.get_hits), (5, 1, 1));
    }

    #[test]
    fn cas_counts_hits_misses_and_bad_values() {
        let mut shard = shard();
        let (c, limits) = (clock(100), ParseLimits::default());
        let out = converse(&mut shard, &c, &limits, b"set a 0 0 1\r\nx\r\ngets a\r\n");
        let out = String::from_utf8(out).unwrap();
        let unique: u64 = out
            .split("\r\n")
            .nth(1)
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let script = format!(
            "cas a 0 0 1 {}\r\ny\r\ncas b 0 0 1 1\r\ny\r\ncas a 0 0 1 {unique}\r\nz\r\nget a\r\n",
            unique + 1000
        );
        let out = converse(&mut shard, &c, &limits, script.as_bytes());
        assert_eq!(
            out,
            b"EXISTS\r\nNOT_FOUND\r\nSTORED\r\nVALUE a 0 1\r\nz\r\nEND\r\n"
        );
        let st = shard.stats;
        assert_eq!(
            (st.cmd_set, st.cas_badval, st.cas_misses, st.cas_hits),
            (4, 1, 1, 1)
        );
    }

    #[test]
    fn a_multi_get_answers_each_key_and_counts_each_key() {
        let (out, st) = exchange(b"set a 5 0 1\r\nx\r\nget a a b\r\n");
        assert_eq!(
            out,
            "STORED\r\nVALUE a 5 1\r\nx\r\nVALUE a 5 1\r\nx\r\nEND\r\n"
        );
        assert_eq!((st.cmd_get, st.get_hits, st.get_misses), (3, 2, 1));
    }

    #[test]
    fn gets_and_gats_show_the_cas_unique() {
        let (out, _) = exchange(b"set a 0 0 1\r\nx\r\ngets a\r\ngats 0 a\r\n");
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert!(lines[1].starts_with("VALUE a 0 1 "), "{out}");
        assert_eq!(lines[1], lines[4], "{out}");
    }

    #[test]
    fn a_get_with_an_overlong_key_fetches_the_keys_before_it_and_drops_their_values() {
        let long = "k".repeat(251);
        let (out, st) = exchange(format!("set a 0 0 1\r\nx\r\nget a b {long} c\r\n").as_bytes());
        assert_eq!(out, "STORED\r\nCLIENT_ERROR bad command line format\r\n");
        assert_eq!((st.cmd_get, st.get_hits, st.get_misses), (2, 1, 1));
    }

    #[test]
    fn gat_counts_touches_not_gets() {
        let (out, st) = exchange(b"set a 0 0 1\r\nx\r\ngat 0 a b\r\n");
        assert_eq!(out, "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n");
        assert_eq!((st.cmd_get, st.get_hits, st.get_misses), (0, 0, 0));
        assert_eq!((st.cmd_touch, st.touch_hits, st.touch_misses), (2, 1, 1));
    }

    #[test]
    fn gat_sets_the_new_expiry() {
        let mut shard = shard();
        let limits = ParseLimits::default();
        converse(
            &mut shard,
            &clock(100),
            &limits,
            b"set a 0 0 1\r\nx\r\ngat 10 a\r\n",
        );
        let out = converse(&mut shard, &clock(109), &limits, b"get a\r\n");
        assert_eq!(out, b"VALUE a 0 1\r\nx\r\nEND\r\n");
        let out = converse(&mut shard, &clock(110), &limits, b"get a\r\n");
        assert_eq!(out, b"END\r\n");
    }

    #[test]
    fn expired_items_are_counted_by_get_touch_and_gat() {
        for (lookup, reply) in [
            ("get a", "END"),
            ("touch a 0", "NOT_FOUND"),
            ("gat 0 a", "END"),
        ] {
            let (out, st) = exchange(format!("set a 0 -1 1\r\nx\r\n{lookup}\r\n").as_bytes());
            assert_eq!(out, format!("STORED\r\n{reply}\r\n"), "{lookup}");
            assert_eq!(st.get_expired, 1, "{lookup}");
        }
    }

    #[test]
    fn touch_answers_touched_or_not_found() {
        let (out, st) = exchange(b"set t 0 0 1\r\nx\r\ntouch t 10\r\ntouch u 10\r\n");
        assert_eq!(out, "STORED\r\nTOUCHED\r\nNOT_FOUND\r\n");
        assert_eq!((st.cmd_touch, st.touch_hits, st.touch_misses), (2, 1, 1));
    }

    #[test]
    fn flush_all_hides_earlier_items_but_not_later_ones() {
        let (out, st) =
            exchange(b"set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\nset b 0 0 1\r\ny\r\nget b\r\n");
        assert_eq!(
            out,
            "STORED\r\nOK\r\nEND\r\nSTORED\r\nVALUE b 0 1\r\ny\r\nEND\r\n"
        );
        assert_eq!(st.get_flushed, 1);
    }

    #[test]
    fn a_delayed_flush_takes_effect_a_second_early_as_in_memcached() {
        let mut shard = shard();
        let limits = ParseLimits::default();
        converse(
            &mut shard,
            &clock(100),
            &limits,
            b"set a 0 0 1\r\nx\r\nflush_all 10\r\n",
        );
        let out = converse(&mut shard, &clock(108), &limits, b"get a\r\n");
        assert_eq!(out, b"VALUE a 0 1\r\nx\r\nEND\r\n");
        let out = converse(&mut shard, &clock(109), &limits, b"get a\r\n");
        assert_eq!(out, b"END\r\n");
    }

    #[test]
    fn incr_wraps_and_decr_stops_at_zero() {
        let (out, st) = exchange(
            b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr nokey 1\r\ndecr nokey 1\r\n\
              set m 0 0 20\r\n18446744073709551615\r\nincr m 2\r\n",
        );
        assert_eq!(
            out,
            "STORED\r\n15\r\n0\r\nNOT_FOUND\r\nNOT_FOUND\r\nSTORED\r\n1\r\n"
        );
        assert_eq!(
            (st.incr_hits, st.decr_hits, st.incr_misses, st.decr_misses),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn incr_of_a_non_numeric_value_is_a_client_error_counted_nowhere() {
        let (out, st) = exchange(b"set s 0 0 2\r\nab\r\nincr s 1\r\nincr s 1 noreply\r\n");
        assert_eq!(
            out,
            "STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        );
        assert_eq!((st.incr_hits, st.incr_misses), (0, 0));
    }

    #[test]
    fn delete_counts_hits_and_misses() {
        let (out, st) = exchange(b"set a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\n");
        assert_eq!(out, "STORED\r\nDELETED\r\nNOT_FOUND\r\n");
        assert_eq!((st.delete_hits, st.delete_misses), (1, 1));
    }

    #[test]
    fn noreply_silences_every_key_command() {
        let (out, st) = exchange(
            b"set n 0 0 1 noreply\r\n5\r\nincr n 1 noreply\r\nget n\r\nadd n 0 0 1 noreply\r\nx\r\n\
              delete n noreply\r\nget n\r\ntouch n 1 noreply\r\ndelete n noreply\r\n",
        );
        assert_eq!(out, "VALUE n 0 1\r\n6\r\nEND\r\nEND\r\n");
        assert_eq!(
            (
                st.cmd_set,
                st.delete_hits,
                st.delete_misses,
                st.touch_misses
            ),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn a_set_too_large_for_the_cache_unlinks_the_old_value_and_swallows_its_data() {
        let limits = ParseLimits {
            item_size_max_bytes: 1024,
        };
        let big = |line: &str| [line.as_bytes(), &[b'x'; 2000], b"\r\n"].concat();
        let run = |script: Vec<u8>| {
            let mut shard = shard();
            let out = converse(&mut shard, &clock(100), &limits, &script);
            (String::from_utf8(out).unwrap(), shard.stats.cmd_set)
        };
        let set = [
            &b"set k 0 0 1\r\nx\r\n"[..],
            &big("set k 0 0 2000\r\n"),
            b"get k\r\n",
        ]
        .concat();
        let too_large = "SERVER_ERROR object too large for cache\r\n";
        assert_eq!(run(set), (format!("STORED\r\n{too_large}END\r\n"), 1));
        let add = [
            &b"set k 0 0 1\r\nx\r\n"[..],
            &big("add k 0 0 2000\r\n"),
            b"get k\r\n",
        ]
        .concat();
        assert_eq!(
            run(add),
            (
                format!("STORED\r\n{too_large}VALUE k 0 1\r\nx\r\nEND\r\n"),
                1
            )
        );
        let quiet = [&big("set k 0 0 2000 noreply\r\n")[..], b"get k\r\n"].concat();
        assert_eq!(run(quiet).0, "END\r\n");
    }

    #[test]
    fn a_bad_data_chunk_leaves_the_old_value() {
        let (out, _) = exchange(b"set a 0 0 1\r\nx\r\nset a 0 0 3\r\nabcdefgh\r\nget a\r\n");
        assert_eq!(
            out,
            "STORED\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
        );
    }

    #[test]
    fn quit_closes_the_connection() {
        let mut out = Vec::new();
        assert_eq!(
            execute(&mut shard(), &Request::Quit, &clock(100), &mut out),
            Step::Close
        );
        assert!(out.is_empty());
    }

    #[test]
    #[should_panic(expected = "node request")]
    fn a_node_request_is_not_a_shards_to_answer() {
        execute(
            &mut shard(),
            &Request::Version,
            &clock(100),
            &mut Vec::new(),
        );
    }

    #[test]
    fn every_key_request_is_counted_in_the_hot_keys() {
        let mut shard = shard();
        converse(
            &mut shard,
            &clock(100),
            &ParseLimits::default(),
            b"set a 0 0 1\r\nx\r\nget a a b\r\nincr a 1\r\ntouch b 0\r\ndelete a\r\nmg a v\r\nmn\r\n",
        );
        let top = shard.hot_keys.as_ref().unwrap().top();
        let counts: Vec<(&[u8], u64)> = top.iter().map(|k| (&k.key[..], k.count)).collect();
        assert_eq!(counts, vec![(&b"a"[..], 6), (&b"b"[..], 2)]);
    }

    #[test]
    fn version_and_quiet_replies_are_memcacheds() {
        let mut out = Vec::new();
        write_version(&mut out);
        write_reply(Reply::Suppressed, reply::OK, &mut out);
        write_reply(Reply::Wanted, reply::OK, &mut out);
        assert_eq!(out, format!("VERSION {VERSION}\r\nOK\r\n").as_bytes());
    }
}

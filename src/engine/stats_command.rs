//! The `stats` command's reply for the whole node, gathered into a [`NodeView`]
//! by the runtime, in memcached's names and order (pure), and the lines of
//! `lru_crawler metadump`.

use super::{reply, Bytes, RINGCACHE_VERSION};
use crate::hotkeys::HotKey;
use crate::protocol::text::safe_strtoul;
use crate::stats::{Latency, ShardStats, LATENCY_BUCKETS_US, LATENCY_QUANTILES};
use crate::storage::{ItemView, StoreStats};
use std::fmt::Write as _;

/// The settings `stats settings` reports.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub max_bytes: u64,
    pub max_connections: u64,
    pub tcp_port: u16,
    /// `-l`; empty when listening on every address (memcached prints `NULL`).
    pub listen: String,
    pub threads: u64,
    pub item_size_max: u64,
    pub evictions_on: bool,
    pub shutdown_allowed: bool,
    pub verbosity: u32,
    /// `-b`: the listen backlog.
    pub tcp_backlog: u32,
    /// `-B`: memcached's name for it (`auto-negotiate`, `ascii`, `binary`).
    pub binding_protocol: &'static str,
    /// `flush_all` is served (no `-F`).
    pub flush_enabled: bool,
    /// `-S`: binary SASL.
    pub sasl: bool,
    /// `-Y FILE`: memcached shows the file's name.
    pub auth_file: Option<String>,
}

/// One connection or listening socket, for `stats conns`.
#[derive(Clone, Debug, Default)]
pub struct ConnView {
    /// memcached prints the file descriptor; any number unique in the node will do.
    pub id: u64,
    /// `tcp:<ip>:<port>` of the peer, or of the socket for a listener.
    pub addr: String,
    /// `tcp:<ip>:<port>` the connection came in on; empty for a listener.
    pub listen_addr: String,
    /// memcached's state name: `conn_listening`, `conn_parse_cmd`, `conn_nread`...
    pub state: &'static str,
    pub secs_since_last_cmd: u64,
}

/// A node-wide picture for `stats`: counters summed over shards plus process facts.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    pub pid: u32,
    pub uptime_secs: u64,
    pub unix_time_secs: i64,
    pub version: &'static str,
    pub rusage_user_micros: u64,
    pub rusage_system_micros: u64,
    pub threads: u64,
    /// Listening sockets of every shard, for `connection_structures`.
    pub listening_sockets: u64,
    pub shard: ShardStats,
    pub store: StoreStats,
    pub settings: Settings,
    /// Memory the stores have allocated (arenas and indexes): `total_malloced`.
    pub malloced_bytes: u64,
    /// For `stats conns`; the general stats do not need it.
    pub conns: Vec<ConnView>,
    /// For `stats items`' `age`: seconds since the item next to be reclaimed
    /// was last accessed (see `Store::oldest_access`).
    pub items_age_secs: u64,
    /// Each shard's own counters, in shard order, for `stats shards`.
    pub per_shard: Vec<(ShardStats, StoreStats)>,
    /// Every shard's read latencies together, for `stats latency`.
    pub latency: Latency,
    /// In a cluster: client requests forwarded to each other node, by node id.
    pub forwarded_to: Vec<(u32, u64)>,
    /// `stats hotkeys`: each shard's counted keys, with the shard's number.
    pub hot_keys: Vec<(u32, HotKey)>,
}

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`, for `stats cachedump`'s range check.
const SLAB_CLASSES_MAX: u64 = 64;

/// Appends the reply to `stats <group>` (`group` is the rest of the line after
/// `stats`; empty for the general stats), or what memcached answers to a group it
/// does not know.
///
/// `stats reset` is answered `RESET`; the runtime resets the counters of every
/// shard ([`ShardStats::reset`], `Store::reset_stats`). `stats detail` and `stats
/// cachedump` are answered as memcached answers them with nothing recorded.
pub fn write_stats(group: &[u8], view: &NodeView, out: &mut Vec<u8>) {
    let mut args = group.split(|&b| b == b' ').filter(|a| !a.is_empty());
    let name = args.next().unwrap_or(b"");
    let w = &mut Bytes(out);
    match name {
        b"" => general_stats(view, w),
        b"settings" => settings_stats(&view.settings, w),
        b"items" => items_stats(view, w),
        b"slabs" => slabs_stats(view, w),
        b"conns" => conns_stats(&view.conns, w),
        b"shards" => shards_stats(&view.per_shard, w),
        b"latency" => latency_stats(&view.latency, w),
        b"hotkeys" => hot_keys_stats(&view.hot_keys, w),
        b"sizes" => stat(w, "sizes_status", "disabled"),
        b"extstore" => {}
        b"reset" => return w.0.extend_from_slice(reply::RESET),
        b"detail" => {
            let line: &[u8] = match args.next() {
                Some(b"on" | b"off") => reply::OK,
                Some(b"dump") => reply::END,
                _ => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            };
            return w.0.extend_from_slice(line);
        }
        b"cachedump" => {
            let numbers = (args.next(), args.next());
            let line: &[u8] = match numbers {
                (Some(id), Some(limit)) => match (safe_strtoul(id), safe_strtoul(limit)) {
                    (Some(id), Some(_)) if u64::from(id) < SLAB_CLASSES_MAX => reply::END,
                    (Some(_), Some(_)) => b"CLIENT_ERROR Illegal slab id\r\n",
                    _ => b"CLIENT_ERROR bad command line format\r\n",
                },
                _ => b"CLIENT_ERROR bad command line\r\n",
            };
            return w.0.extend_from_slice(line);
        }
        _ => return w.0.extend_from_slice(reply::ERROR),
    }
    w.0.extend_from_slice(reply::END);
}

/// The general `stats`, in memcached 1.6.18's order, leaving out what this server
/// does not have (libevent, slab rebalancing, the LRU crawler, extstore...).
fn general_stats(v: &NodeView, w: &mut Bytes) {
    let s = &v.shard;
    stat(w, "pid", v.pid);
    stat(w, "uptime", v.uptime_secs);
    stat(w, "time", v.unix_time_secs);
    stat(w, "version", v.version);
    stat(w, "pointer_size", usize::BITS);
    stat(w, "rusage_user", Micros(v.rusage_user_micros));
    stat(w, "rusage_system", Micros(v.rusage_system_micros));
    stat(w, "max_connections", v.settings.max_connections);
    stat(w, "curr_connections", s.curr_connections);
    stat(w, "total_connections", s.total_connections);
    stat(w, "rejected_connections", s.rejected_connections);
    // memcached's count of connection states it holds, listeners included.
    stat(
        w,
        "connection_structures",
        s.curr_connections + v.listening_sockets,
    );
    stat(w, "cmd_get", s.cmd_get);
    stat(w, "cmd_set", s.cmd_set);
    stat(w, "cmd_flush", s.cmd_flush);
    stat(w, "cmd_touch", s.cmd_touch);
    stat(w, "cmd_meta", s.cmd_meta);
    stat(w, "get_hits", s.get_hits);
    stat(w, "get_misses", s.get_misses);
    stat(w, "get_expired", s.get_expired);
    stat(w, "get_flushed", s.get_flushed);
    stat(w, "delete_misses", s.delete_misses);
    stat(w, "delete_hits", s.delete_hits);
    stat(w, "incr_misses", s.incr_misses);
    stat(w, "incr_hits", s.incr_hits);
    stat(w, "decr_misses", s.decr_misses);
    stat(w, "decr_hits", s.decr_hits);
    stat(w, "cas_misses", s.cas_misses);
    stat(w, "cas_hits", s.cas_hits);
    stat(w, "cas_badval", s.cas_badval);
    stat(w, "touch_hits", s.touch_hits);
    stat(w, "touch_misses", s.touch_misses);
    stat(w, "store_too_large", s.store_too_large);
    stat(w, "store_no_memory", s.store_no_memory);
    stat(w, "bytes_read", s.bytes_read);
    stat(w, "bytes_written", s.bytes_written);
    stat(w, "limit_maxbytes", v.store.limit_maxbytes);
    // Past `-c` a connection is answered and closed (memcached's maxconns_fast):
    // listening is never switched off.
    stat(w, "accepting_conns", 1);
    stat(w, "listen_disabled_num", 0);
    stat(w, "time_in_listen_disabled_us", 0);
    stat(w, "threads", v.threads);
    stat(w, "bytes", v.store.bytes);
    stat(w, "curr_items", v.store.curr_items);
    stat(w, "total_items", v.store.total_items);
    stat(w, "expired_unfetched", v.store.expired_unfetched);
    stat(w, "evicted_unfetched", v.store.evicted_unfetched);
    stat(w, "evictions", v.store.evictions);
    stat(w, "reclaimed", v.store.reclaimed);
    // ringcache's own: requests that crossed between shards of this node.
    stat(w, "forwarded_out", s.forwarded_out);
    stat(w, "forwarded_in", s.forwarded_in);
    stat(w, "forwarded_sent", s.forwarded_sent);
    // And times a connection stopped receiving, holding the most unread bytes it may.
    stat(w, "receive_pauses", s.receive_pauses);
    // `version` is the memcached release served; this is ringcache's own.
    stat(w, "ringcache_version", RINGCACHE_VERSION);
}

/// `stats settings`, in memcached's order, for the settings this server has.
fn settings_stats(s: &Settings, w: &mut Bytes) {
    let on_off = |b: bool| if b { "on" } else { "off" };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    stat(w, "maxbytes", s.max_bytes);
    stat(w, "maxconns", s.max_connections);
    stat(w, "tcpport", s.tcp_port);
    stat(w, "udpport", 0);
    stat(
        w,
        "inter",
        if s.listen.is_empty() {
            "NULL"
        } else {
            &s.listen
        },
    );
    stat(w, "verbosity", s.verbosity);
    stat(w, "evictions", on_off(s.evictions_on));
    stat(w, "domain_socket", "NULL");
    stat(w, "shutdown_command", yes_no(s.shutdown_allowed));
    stat(w, "num_threads", s.threads);
    stat(w, "cas_enabled", "yes");
    stat(w, "tcp_backlog", s.tcp_backlog);
    stat(w, "binding_protocol", s.binding_protocol);
    stat(w, "auth_enabled_sasl", yes_no(s.sasl));
    stat(
        w,
        "auth_enabled_ascii",
        s.auth_file.as_deref().unwrap_or("no"),
    );
    stat(w, "item_size_max", s.item_size_max);
    stat(w, "maxconns_fast", "yes");
    stat(w, "flush_enabled", yes_no(s.flush_enabled));
}

/// `stats items`: the store has no slab classes, so its items are one class, 1,
/// printed (as memcached prints a class) only when it holds items, with
/// memcached's keys in memcached's order less those of its segmented LRU and
/// LRU crawler (README, known differences).
fn items_stats(v: &NodeView, w: &mut Bytes) {
    let st = &v.store;
    if st.curr_items == 0 {
        return;
    }
    stat(w, "items:1:number", st.curr_items);
    stat(w, "items:1:age", v.items_age_secs);
    stat(w, "items:1:mem_requested", st.bytes);
    stat(w, "items:1:evicted", st.evictions);
    stat(w, "items:1:evicted_nonzero", st.evicted_nonzero);
    stat(w, "items:1:evicted_time", st.evicted_time_secs);
    // memcached counts a failed allocation both here and in `store_no_memory`.
    stat(w, "items:1:outofmemory", v.shard.store_no_memory);
    stat(w, "items:1:reclaimed", st.reclaimed);
    stat(w, "items:1:expired_unfetched", st.expired_unfetched);
    stat(w, "items:1:evicted_unfetched", st.evicted_unfetched);
}

/// `stats slabs`: one class, 1, holding every item, then memcached's totals.
fn slabs_stats(v: &NodeView, w: &mut Bytes) {
    let s = &v.shard;
    let active = v.malloced_bytes > 0;
    if active {
        stat(w, "1:used_chunks", v.store.curr_items);
        stat(w, "1:get_hits", s.get_hits);
        stat(w, "1:cmd_set", s.cmd_set);
        stat(w, "1:delete_hits", s.delete_hits);
        stat(w, "1:incr_hits", s.incr_hits);
        stat(w, "1:decr_hits", s.decr_hits);
        stat(w, "1:cas_hits", s.cas_hits);
        stat(w, "1:cas_badval", s.cas_badval);
        stat(w, "1:touch_hits", s.touch_hits);
    }
    stat(w, "active_slabs", u32::from(active));
    stat(w, "total_malloced", v.malloced_bytes);
}

/// `stats conns`: memcached's `<fd>:<name> <value>` lines for each socket.
fn conns_stats(conns: &[ConnView], w: &mut Bytes) {
    for c in conns {
        let id = c.id;
        stat(w, format_args!("{id}:addr"), &c.addr);
        if !c.listen_addr.is_empty() {
            stat(w, format_args!("{id}:listen_addr"), &c.listen_addr);
        }
        stat(w, format_args!("{id}:state"), c.state);
        stat(
            w,
            format_args!("{id}:secs_since_last_cmd"),
            c.secs_since_last_cmd,
        );
    }
}

/// `stats hotkeys` (ringcache's own): the most requested keys of every shard
/// together, most counted first, at most [`crate::limits::HOT_KEYS_LISTED_MAX`].
/// With `sample_one_in` 1, `count` is at least the key's true number of reads
/// and writes since the node started (or `stats reset`) and at most `error`
/// above it; with `sample_one_in` N, the shard's sketch counted one request in
/// N, at random, as N requests, and those bounds hold in expectation (see
/// [`crate::hotkeys`]). The key is URL-encoded as in `lru_crawler metadump`,
/// so any byte prints safely.
///
/// # Format
///
/// ```text
/// STAT 1:key user%3A42
/// STAT 1:shard 0
/// STAT 1:count 1000
/// STAT 1:error 0
/// STAT 1:sample_one_in 16
/// END
/// ```
fn hot_keys_stats(hot_keys: &[(u32, HotKey)], w: &mut Bytes) {
    let mut ranked: Vec<&(u32, HotKey)> = hot_keys.iter().collect();
    ranked.sort_by(|(sa, a), (sb, b)| {
        b.count
            .cmp(&a.count)
            .then(a.error.cmp(&b.error))
            .then(sa.cmp(sb))
            .then_with(|| a.key.cmp(&b.key))
    });
    for (rank, (shard, hot)) in ranked
        .into_iter()
        .take(crate::limits::HOT_KEYS_LISTED_MAX)
        .enumerate()
    {
        let rank = rank + 1;
        let _ = write!(w, "STAT {rank}:key ");
        write_uri_encoded(&hot.key, w.0);
        w.0.extend_from_slice(b"\r\n");
        stat(w, format_args!("{rank}:shard"), shard);
        stat(w, format_args!("{rank}:count"), hot.count);
        stat(w, format_args!("{rank}:error"), hot.error);
        stat(w, format_args!("{rank}:sample_one_in"), hot.sample_one_in);
    }
}

/// Appends `key` as memcached's `uriencode` writes it: letters, digits and
/// `-._~` as they are, every other byte as `%XX`.
pub fn write_uri_encoded(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            let _ = write!(Bytes(&mut *out), "%{b:02X}");
        }
    }
}

/// Appends one `lru_crawler metadump` line for `item`, as memcached writes it
/// (ended by `\n` alone): the key URL-encoded, expiry and last access as unix
/// times (`exp=-1`: never), and the size memcached would count (`ITEM_ntotal`).
///
/// # Format
///
/// ```text
/// key=a%2Fb exp=-1 la=1700000100 cas=7 fetch=no cls=1 size=63
/// ```
pub fn write_metadump_line(item: &ItemView<'_>, process_started_unix: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key=");
    write_uri_encoded(item.key, out);
    let exp = if item.exptime == 0 {
        -1
    } else {
        process_started_unix + i64::from(item.exptime)
    };
    let size = crate::limits::MEMCACHED_ITEM_OVERHEAD_BYTES
        + item.key.len()
        + 1
        + item.value.len()
        + 2
        + if item.flags == 0 { 0 } else { 4 };
    let _ = writeln!(
        Bytes(&mut *out),
        " exp={exp} la={} cas={} fetch={} cls=1 size={size}",
        process_started_unix + i64::from(item.atime),
        item.cas,
        if item.fetched { "yes" } else { "no" },
    );
}

/// `stats shards` (ringcache's own): each shard's figures, `shard:<n>:<name>`.
/// `commands` counts the key commands the shard's store ran (a multi-key get
/// counts each key, as `cmd_get` does), its own clients' and those forwarded to it.
fn shards_stats(per_shard: &[(ShardStats, StoreStats)], w: &mut Bytes) {
    for (n, (s, store)) in per_shard.iter().enumerate() {
        let commands = s.cmd_get
            + s.cmd_set
            + s.cmd_touch
            + s.delete_hits
            + s.delete_misses
            + s.incr_hits
            + s.incr_misses
            + s.decr_hits
            + s.decr_misses;
        stat(w, format_args!("shard:{n}:commands"), commands);
        stat(w, format_args!("shard:{n}:get_hits"), s.get_hits);
        stat(w, format_args!("shard:{n}:get_misses"), s.get_misses);
        stat(w, format_args!("shard:{n}:forwarded_out"), s.forwarded_out);
        stat(w, format_args!("shard:{n}:forwarded_in"), s.forwarded_in);
        stat(
            w,
            format_args!("shard:{n}:forwarded_sent"),
            s.forwarded_sent,
        );
        stat(
            w,
            format_args!("shard:{n}:curr_connections"),
            s.curr_connections,
        );
        stat(w, format_args!("shard:{n}:bytes_read"), s.bytes_read);
        stat(w, format_args!("shard:{n}:bytes_written"), s.bytes_written);
        stat(w, format_args!("shard:{n}:curr_items"), store.curr_items);
        stat(w, format_args!("shard:{n}:bytes"), store.bytes);
        stat(
            w,
            format_args!("shard:{n}:limit_maxbytes"),
            store.limit_maxbytes,
        );
        stat(w, format_args!("shard:{n}:evictions"), store.evictions);
    }
}

/// `stats latency` (ringcache's own): how long reads took to answer, over every
/// shard: observations, their sum, how many took at most each bucket's bound
/// (cumulative, as a Prometheus histogram counts), and quantiles.
fn latency_stats(l: &Latency, w: &mut Bytes) {
    stat(w, "count", l.count());
    stat(w, "sum_us", l.sum_us());
    for bound in LATENCY_BUCKETS_US {
        stat(w, format_args!("le_us:{bound}"), l.count_at_most(bound));
    }
    for (q, name) in LATENCY_QUANTILES {
        stat(w, format_args!("{name}_us"), l.quantile_us(q));
    }
}

fn stat(w: &mut Bytes, name: impl std::fmt::Display, value: impl std::fmt::Display) {
    // Writing to a Vec cannot fail.
    let _ = write!(w, "STAT {name} {value}\r\n");
}

/// Seconds and microseconds as memcached prints rusage: `%ld.%06ld`.
struct Micros(u64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{clock, converse, shard, MB};
    use crate::engine::VERSION;
    use crate::protocol::ParseLimits;

    fn view() -> NodeView {
        let mut shard = shard();
        converse(
            &mut shard,
            &clock(100),
            &ParseLimits::default(),
            b"set a 0 0 1\r\nx\r\nget a b\r\n",
        );
        NodeView {
            pid: 42,
            uptime_secs: 100,
            unix_time_secs: 1_700_000_100,
            version: VERSION,
            rusage_user_micros: 1_500_000,
            rusage_system_micros: 250,
            threads: 2,
            listening_sockets: 2,
            shard: shard.stats,
            store: shard.store.stats(),
            settings: Settings {
                max_bytes: 64 * MB as u64,
                max_connections: 1024,
                tcp_port: 11211,
                threads: 2,
                item_size_max: MB as u64,
                evictions_on: true,
                ..Settings::default()
            },
            malloced_bytes: 4 * MB as u64,
            conns: vec![ConnView {
                id: 13,
                addr: "tcp:127.0.0.1:44614".into(),
                listen_addr: "tcp:127.0.0.1:11211".into(),
                state: "conn_parse_cmd",
                secs_since_last_cmd: 0,
            }],
            items_age_secs: 0,
            per_shard: vec![(shard.stats, shard.store.stats())],
            latency: Latency::default(),
            forwarded_to: Vec::new(),
            hot_keys: Vec::new(),
        }
    }

    #[test]
    fn stats_hotkeys_ranks_the_keys_of_every_shard_and_encodes_them() {
        let hot = |key: &[u8], count, error, sample_one_in| HotKey {
            key: key.to_vec(),
            count,
            error,
            sample_one_in,
        };
        let view = NodeView {
            hot_keys: vec![
                (0, hot(b"cold", 3, 0, 1)),
                (1, hot(b"a b\r\n", 9, 1, 16)),
                (0, hot(b"hot", 10, 0, 1)),
            ],
            ..NodeView::default()
        };
        assert_eq!(
            stats_of(b"hotkeys", &view),
            "STAT 1:key hot\r\nSTAT 1:shard 0\r\nSTAT 1:count 10\r\nSTAT 1:error 0\r\n\
             STAT 1:sample_one_in 1\r\n\
             STAT 2:key a%20b%0D%0A\r\nSTAT 2:shard 1\r\nSTAT 2:count 9\r\nSTAT 2:error 1\r\n\
             STAT 2:sample_one_in 16\r\n\
             STAT 3:key cold\r\nSTAT 3:shard 0\r\nSTAT 3:count 3\r\nSTAT 3:error 0\r\n\
             STAT 3:sample_one_in 1\r\nEND\r\n"
        );
        assert_eq!(stats_of(b"hotkeys", &NodeView::default()), "END\r\n");
    }

    fn stats_of(group: &[u8], view: &NodeView) -> String {
        let mut out = Vec::new();
        write_stats(group, view, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn stat_names(reply: &str) -> Vec<&str> {
        assert!(reply.ends_with("END\r\n"), "{reply}");
        let lines = reply.split("\r\n").filter(|l| !l.is_empty() && *l != "END");
        lines.map(|l| l.split(' ').nth(1).unwrap()).collect()
    }

    /// `stats` from memcached 1.6.18, names only, in its order.
    const MEMCACHED_STATS: &str = "pid uptime time version libevent pointer_size rusage_user \
        rusage_system max_connections curr_connections total_connections rejected_connections \
        connection_structures response_obj_oom response_obj_count response_obj_bytes \
        read_buf_count read_buf_bytes read_buf_bytes_free read_buf_oom reserved_fds cmd_get \
        cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses get_expired get_flushed \
        delete_misses delete_hits incr_misses incr_hits decr_misses decr_hits cas_misses \
        cas_hits cas_badval touch_hits touch_misses store_too_large store_no_memory auth_cmds \
        auth_errors bytes_read bytes_written limit_maxbytes accepting_conns listen_disabled_num \
        time_in_listen_disabled_us threads conn_yields hash_power_level hash_bytes \
        hash_is_expanding slab_reassign_rescues slab_reassign_chunk_rescues \
        slab_reassign_evictions_nomem slab_reassign_inline_reclaim slab_reassign_busy_items \
        slab_reassign_busy_deletes slab_reassign_running slabs_moved lru_crawler_running \
        lru_crawler_starts lru_maintainer_juggles malloc_fails log_worker_dropped \
        log_worker_written log_watcher_skipped log_watcher_sent log_watchers \
        unexpected_napi_ids round_robin_fallback bytes curr_items total_items \
        slab_global_page_pool expired_unfetched evicted_unfetched evicted_active evictions \
        reclaimed crawler_reclaimed crawler_items_checked lrutail_reflocked moves_to_cold \
        moves_to_warm moves_within_lru direct_reclaims lru_bumps_dropped";

    #[test]
    fn general_stats_follow_memcacheds_names_and_order() {
        let reply = stats_of(b"", &view());
        let ours: Vec<&str> = stat_names(&reply)
            .into_iter()
            .filter(|n| {
                !n.starts_with("forwarded_")
                    && !matches!(*n, "receive_pauses" | "ringcache_version")
            })
            .collect();
        let theirs: Vec<&str> = MEMCACHED_STATS.split_whitespace().collect();
        let positions: Vec<usize> = ours
            .iter()
            .map(|n| {
                theirs
                    .iter()
                    .position(|t| t == n)
                    .unwrap_or_else(|| panic!("{n} is not memcached's"))
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{ours:?}");
        for required in "pid uptime time version curr_connections total_connections cmd_get cmd_set \
            get_hits get_misses get_expired delete_hits delete_misses incr_hits incr_misses decr_hits \
            decr_misses cas_hits cas_misses cas_badval touch_hits touch_misses curr_items total_items \
            bytes limit_maxbytes evictions bytes_read bytes_written threads"
            .split_whitespace()
        {
            assert!(ours.contains(&required), "{required} missing");
        }
    }

    #[test]
    fn general_stats_carry_the_summed_figures() {
        let reply = stats_of(b"", &view());
        for line in [
            "STAT pid 42\r\n",
            "STAT time 1700000100\r\n",
            "STAT rusage_user 1.500000\r\n",
            "STAT rusage_system 0.000250\r\n",
            "STAT cmd_get 2\r\n",
            "STAT get_hits 1\r\n",
            "STAT get_misses 1\r\n",
            "STAT cmd_set 1\r\n",
            "STAT curr_items 1\r\n",
            "STAT threads 2\r\n",
        ] {
            assert!(reply.contains(line), "{line:?} not in {reply}");
        }
    }

    #[test]
    fn settings_items_slabs_and_conns_use_memcacheds_names() {
        let view = view();
        let settings = stats_of(b"settings", &view);
        assert!(settings
            .starts_with("STAT maxbytes 67108864\r\nSTAT maxconns 1024\r\nSTAT tcpport 11211\r\n"));
        assert!(
            settings.contains("STAT inter NULL\r\n")
                && settings.contains("STAT item_size_max 1048576\r\n")
        );
        let items = stats_of(b"items", &view);
        assert!(items.starts_with("STAT items:1:number 1\r\n"), "{items}");
        let slabs = stats_of(b"slabs", &view);
        assert!(
            slabs.contains("STAT 1:used_chunks 1\r\n") && slabs.contains("STAT 1:get_hits 1\r\n")
        );
        assert!(
            slabs.ends_with("STAT active_slabs 1\r\nSTAT total_malloced 4194304\r\nEND\r\n"),
            "{slabs}"
        );
        let conns = stats_of(b"conns", &view);
        assert_eq!(
            conns,
            "STAT 13:addr tcp:127.0.0.1:44614\r\nSTAT 13:listen_addr tcp:127.0.0.1:11211\r\n\
             STAT 13:state conn_parse_cmd\r\nSTAT 13:secs_since_last_cmd 0\r\nEND\r\n"
        );
    }

    #[test]
    fn stats_items_of_an_empty_cache_is_just_end() {
        let view = NodeView::default();
        assert_eq!(stats_of(b"items", &view), "END\r\n");
        assert_eq!(stats_of(b"items x", &view), "END\r\n");
    }

    #[test]
    fn other_stats_groups_answer_as_memcached_does() {
        let view = view();
        for (group, reply) in [
            (&b"x"[..], "ERROR\r\n"),
            (b"reset", "RESET\r\n"),
            (b"sizes", "STAT sizes_status disabled\r\nEND\r\n"),
            (
                b"detail",
                "CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            ),
            (b"detail on", "OK\r\n"),
            (b"detail dump", "END\r\n"),
            (b"cachedump", "CLIENT_ERROR bad command line\r\n"),
            (b"cachedump 1 1", "END\r\n"),
            (b"cachedump 64 1", "CLIENT_ERROR Illegal slab id\r\n"),
            // memcached reads both with safe_strtoul, keeping the low 32 bits.
            (b"cachedump 4294967297 1", "END\r\n"),
            (b"cachedump +1 1", "END\r\n"),
            (
                b"cachedump 1 -1",
                "CLIENT_ERROR bad command line format\r\n",
            ),
            (b"cachedump x 1", "CLIENT_ERROR bad command line format\r\n"),
        ] {
            assert_eq!(
                stats_of(group, &view),
                reply,
                "{:?}",
                String::from_utf8_lossy(group)
            );
        }
    }
}

//! Prometheus text exposition of a node's `stats` replies (pure).
//!
//! The metrics port's thread asks the node for `stats`, `stats shards`,
//! `stats latency`, `stats hotkeys` and, in a cluster, `stats peers` (the same figures any
//! client sees), and [`render`] writes them in the Prometheus text format
//! (version 0.0.4). memcached's figures keep the names prometheus/memcached_exporter
//! gives them, so its dashboards and alerts work unchanged; ringcache's own
//! figures are `ringcache_*`.

use crate::limits::HOT_KEYS_METRICS_TOP;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The `STAT name value` lines of one stats reply, by name.
pub type StatLines = HashMap<String, String>;

/// The stats replies one scrape gathers.
#[derive(Debug, Default)]
pub struct Scrape {
    pub general: StatLines,
    pub shards: StatLines,
    pub latency: StatLines,
    /// `stats hotkeys`.
    pub hot_keys: StatLines,
    /// `stats peers`: present on a cluster node only.
    pub peers: Option<StatLines>,
}

/// Reads `STAT name value` lines up to `END`; other lines are ignored.
pub fn parse_stat_lines(reply: &str) -> StatLines {
    reply
        .lines()
        .take_while(|line| *line != "END")
        .filter_map(|line| line.strip_prefix("STAT "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The exposition of a node that could not be asked: `memcached_up 0` alone,
/// as the exporter answers for a server it cannot reach.
pub fn render_down() -> String {
    let mut out = Exposition::default();
    out.family(
        "memcached_up",
        "gauge",
        "Could the memcached server be reached.",
    );
    out.sample("memcached_up", &[], 0.0);
    out.text
}

/// The whole exposition of one scrape.
pub fn render(scrape: &Scrape) -> String {
    let mut out = Exposition::default();
    out.family(
        "memcached_up",
        "gauge",
        "Could the memcached server be reached.",
    );
    out.sample("memcached_up", &[], 1.0);
    render_general(&scrape.general, &mut out);
    render_commands(&scrape.general, &mut out);
    render_ringcache(&scrape.general, &mut out);
    render_shards(&scrape.shards, &mut out);
    render_latency(&scrape.latency, &mut out);
    render_hot_keys(&scrape.hot_keys, &mut out);
    if let Some(peers) = &scrape.peers {
        render_peers(peers, &mut out);
    }
    out.text
}

/// A `stats` line's number, 0 when it is missing or not a number.
fn stat_number(s: &StatLines, name: &str) -> f64 {
    s.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// The memcached exporter's series read straight from `stats` lines.
fn render_general(s: &StatLines, out: &mut Exposition) {
    let num = |name: &str| stat_number(s, name);
    // (metric, type, help, `stats` key)
    let plain: [(&str, &str, &str, &str); 19] = [
        ("memcached_uptime_seconds", "counter", "Number of seconds since the server started.", "uptime"),
        ("memcached_time_seconds", "gauge", "current UNIX time according to the server.", "time"),
        ("memcached_process_user_cpu_seconds_total", "counter", "Accumulated user time for this process.", "rusage_user"),
        ("memcached_process_system_cpu_seconds_total", "counter", "Accumulated system time for this process.", "rusage_system"),
        ("memcached_read_bytes_total", "counter", "Total number of bytes read by this server from network.", "bytes_read"),
        ("memcached_written_bytes_total", "counter", "Total number of bytes sent by this server to network.", "bytes_written"),
        ("memcached_current_connections", "gauge", "Current number of open connections.", "curr_connections"),
        ("memcached_max_connections", "gauge", "Maximum number of clients allowed.", "max_connections"),
        ("memcached_connections_total", "counter", "Total number of connections opened since the server started running.", "total_connections"),
        ("memcached_connections_rejected_total", "counter", "Total number of connections rejected due to hitting the -c limit.", "rejected_connections"),
        ("memcached_connections_listener_disabled_total", "counter", "Number of times that the server has hit its connections limit and disabled its listener.", "listen_disabled_num"),
        ("memcached_accepting_connections", "gauge", "The server is currently accepting new connections.", "accepting_conns"),
        ("memcached_current_bytes", "gauge", "Current number of bytes used to store items.", "bytes"),
        ("memcached_limit_bytes", "gauge", "Number of bytes this server is allowed to use for storage.", "limit_maxbytes"),
        ("memcached_current_items", "gauge", "Current number of items stored by this instance.", "curr_items"),
        ("memcached_items_total", "counter", "Total number of items stored during the life of this instance.", "total_items"),
        ("memcached_items_evicted_total", "counter", "Total number of valid items removed from cache to free memory for new items.", "evictions"),
        ("memcached_items_reclaimed_total", "counter", "Total number of times an entry was stored using memory from an expired entry.", "reclaimed"),
        ("memcached_item_too_large_total", "counter", "The number of times an item exceeded the max-item-size when being stored.", "store_too_large"),
    ];
    for (metric, kind, help, key) in plain {
        out.family(metric, kind, help);
        out.sample(metric, &[], num(key));
    }
    let metric = "memcached_item_no_memory_total";
    out.family(
        metric,
        "counter",
        "The number of times an item could not be stored due to no more memory.",
    );
    out.sample(metric, &[], num("store_no_memory"));

    let metric = "memcached_version";
    out.family(metric, "gauge", "The version of this memcached server.");
    let version = s.get("version").map_or("", String::as_str);
    out.sample(metric, &[("version", version)], 1.0);
}

/// `memcached_commands_total`: each command's hits and misses, as the exporter
/// breaks them down.
fn render_commands(s: &StatLines, out: &mut Exposition) {
    let num = |name: &str| stat_number(s, name);
    let metric = "memcached_commands_total";
    out.family(
        metric,
        "counter",
        "Total number of all requests broken down by command (get, set, etc.) and status.",
    );
    for op in ["get", "delete", "incr", "decr", "cas", "touch"] {
        out.sample(
            metric,
            &[("command", op), ("status", "hit")],
            num(&format!("{op}_hits")),
        );
        out.sample(
            metric,
            &[("command", op), ("status", "miss")],
            num(&format!("{op}_misses")),
        );
    }
    out.sample(
        metric,
        &[("command", "cas"), ("status", "badval")],
        num("cas_badval"),
    );
    out.sample(
        metric,
        &[("command", "flush"), ("status", "hit")],
        num("cmd_flush"),
    );
    // As the exporter: memcached counts cas commands in cmd_set too.
    let cas = num("cas_misses") + num("cas_hits") + num("cas_badval");
    out.sample(
        metric,
        &[("command", "set"), ("status", "hit")],
        num("cmd_set") - cas,
    );
}

/// ringcache's own series: its release, its shards, its receive pauses.
fn render_ringcache(s: &StatLines, out: &mut Exposition) {
    let num = |name: &str| stat_number(s, name);
    let metric = "ringcache_info";
    out.family(metric, "gauge", "The ringcache release serving (memcached_version is the memcached release whose behaviour it serves).");
    let own = s.get("ringcache_version").map_or("", String::as_str);
    out.sample(metric, &[("version", own)], 1.0);
    let metric = "ringcache_threads";
    out.family(metric, "gauge", "Shards (one executor each) of this node.");
    out.sample(metric, &[], num("threads"));
    let metric = "ringcache_receive_pauses_total";
    out.family(
        metric,
        "counter",
        "Times a connection stopped receiving because it held the most unread bytes it may.",
    );
    out.sample(metric, &[], num("receive_pauses"));
}

/// `stats shards` lines `shard:<n>:<name>` as one series per shard.
fn render_shards(shards: &StatLines, out: &mut Exposition) {
    let mut ids: Vec<u32> = shards
        .keys()
        .filter_map(|k| k.strip_prefix("shard:")?.split_once(':')?.0.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let families: [(&str, &str, &str, &str); 7] = [
        ("ringcache_shard_commands_total", "counter", "Key commands this shard's store ran (each key of a multi-key get counts), for its own clients and for other shards and nodes.", "commands"),
        ("ringcache_shard_forwarded_out_total", "counter", "Requests this shard sent to another shard of the node (cross-shard hops).", "forwarded_out"),
        ("ringcache_shard_forwarded_in_total", "counter", "Requests this shard received from another shard of the node.", "forwarded_in"),
        ("ringcache_shard_current_connections", "gauge", "Client connections this shard serves.", "curr_connections"),
        ("ringcache_shard_current_items", "gauge", "Items in this shard's store.", "curr_items"),
        ("ringcache_shard_current_bytes", "gauge", "Bytes of items in this shard's store.", "bytes"),
        ("ringcache_shard_items_evicted_total", "counter", "Items this shard's store evicted.", "evictions"),
    ];
    for (metric, kind, help, key) in families {
        out.family(metric, kind, help);
        for id in &ids {
            let value = shards
                .get(&format!("shard:{id}:{key}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            out.sample(metric, &[("shard", &id.to_string())], value);
        }
    }
}

/// `stats latency` as a Prometheus histogram, in seconds.
fn render_latency(latency: &StatLines, out: &mut Exposition) {
    let num = |name: &str| -> f64 {
        latency
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let metric = "ringcache_request_duration_seconds";
    out.family(
        metric,
        "histogram",
        "Time from a client read's bytes arriving to all its replies being ready (one observation per read).",
    );
    let mut bounds: Vec<(u64, f64)> = latency
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("le_us:")?.parse().ok()?, v.parse().ok()?)))
        .collect();
    bounds.sort_unstable_by_key(|&(bound, _)| bound);
    let bucket = format!("{metric}_bucket");
    for (bound_us, count) in bounds {
        let le = format_float(bound_us as f64 / 1e6);
        out.sample(&bucket, &[("le", &le)], count);
    }
    out.sample(&bucket, &[("le", "+Inf")], num("count"));
    out.sample(&format!("{metric}_sum"), &[], num("sum_us") / 1e6);
    out.sample(&format!("{metric}_count"), &[], num("count"));
}

/// The first [`HOT_KEYS_METRICS_TOP`] keys of `stats hotkeys`, one series per
/// key. The label is the key itself when it is UTF-8 (escaped as the format
/// needs), else its URL-encoded form as `stats hotkeys` prints it.
fn render_hot_keys(hot_keys: &StatLines, out: &mut Exposition) {
    let metric = "ringcache_hotkey_requests";
    let n = crate::hotkeys::SAMPLE_ONE_IN;
    out.family(
        metric,
        "gauge",
        &format!("Reads and writes of one of the most requested keys, since start or stats reset (space-saving estimate: at most ringcache_hotkey_error above the true count; once a shard has more distinct keys than counters, one request in {n} is counted as {n}, and the bound holds in expectation)."),
    );
    let error_metric = "ringcache_hotkey_error";
    let mut errors = Vec::new();
    for rank in 1..=HOT_KEYS_METRICS_TOP {
        let Some(encoded) = hot_keys.get(&format!("{rank}:key")) else {
            break;
        };
        let field = |name: &str| -> f64 {
            hot_keys
                .get(&format!("{rank}:{name}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let key = uri_decode(encoded)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_else(|| encoded.clone());
        let shard = hot_keys
            .get(&format!("{rank}:shard"))
            .map_or("", String::as_str);
        out.sample(metric, &[("shard", shard), ("key", &key)], field("count"));
        errors.push((shard.to_string(), key, field("error")));
    }
    out.family(
        error_metric,
        "gauge",
        "How far ringcache_hotkey_requests of the same key may be above its true count.",
    );
    for (shard, key, error) in errors {
        out.sample(error_metric, &[("shard", &shard), ("key", &key)], error);
    }
}

/// `%XX` sequences back to bytes (as `lru_crawler metadump` and the hot-key
/// lines encode keys); None when one is malformed.
pub fn uri_decode(encoded: &str) -> Option<Vec<u8>> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `stats peers`: this node's standing in its cluster and each other node's figures.
fn render_peers(peers: &StatLines, out: &mut Exposition) {
    let num = |name: &str| -> f64 { peers.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    let plain: [(&str, &str, &str, &str); 4] = [
        (
            "ringcache_cluster_epoch",
            "gauge",
            "The cluster configuration's epoch in force on this node.",
            "epoch",
        ),
        (
            "ringcache_cluster_leader",
            "gauge",
            "The node whose Paxos ballot this node last promised (0: none).",
            "leader",
        ),
        (
            "ringcache_hinted_keys",
            "gauge",
            "Keys this node remembers as missed by unreachable nodes.",
            "hinted_keys",
        ),
        (
            "ringcache_peer_disconnects_total",
            "counter",
            "Connections to other nodes that broke.",
            "peer_disconnects",
        ),
    ];
    for (metric, kind, help, key) in plain {
        out.family(metric, kind, help);
        out.sample(metric, &[], num(key));
    }
    let metric = "ringcache_node_state";
    out.family(
        metric,
        "gauge",
        "This node's state: 1 for the one it is in.",
    );
    let state = peers.get("node_state").map_or("", String::as_str);
    let node_id = peers.get("node_id").map_or("", String::as_str);
    for name in ["serving", "recovering", "migrating", "removed"] {
        let value = if name == state { 1.0 } else { 0.0 };
        out.sample(metric, &[("node_id", node_id), ("state", name)], value);
    }

    let mut ids: Vec<u32> = peers
        .keys()
        .filter_map(|k| k.strip_prefix("peer:")?.split_once(':')?.0.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let families: [(&str, &str, &str, &str); 2] = [
        (
            "ringcache_peer_forwarded_total",
            "counter",
            "Client requests this node forwarded to that node.",
            "forwarded",
        ),
        (
            "ringcache_peer_timeouts_total",
            "counter",
            "Timeouts of requests to that node that made it skipped (TKO).",
            "timeouts",
        ),
    ];
    for (metric, kind, help, key) in families {
        out.family(metric, kind, help);
        for id in &ids {
            let value = peers
                .get(&format!("peer:{id}:{key}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            out.sample(metric, &[("peer", &id.to_string())], value);
        }
    }
    let metric = "ringcache_peer_reachable";
    out.family(
        metric,
        "gauge",
        "Whether that node answers (0 while it is skipped after a timeout).",
    );
    for id in &ids {
        let reachable = peers
            .get(&format!("peer:{id}:reachable"))
            .map(String::as_str);
        let value = if reachable == Some("yes") { 1.0 } else { 0.0 };
        out.sample(metric, &[("peer", &id.to_string())], value);
    }
}

/// A number as Prometheus writes one: integers without a fraction.
fn format_float(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_float(value));
    }
}

/// A label value as the text format needs it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_commands_leave_out_cas_as_the_exporter_does() {
        let scrape = Scrape {
            general: parse_stat_lines(
                "STAT cmd_set 10\r\nSTAT cas_hits 2\r\nSTAT cas_misses 1\r\nSTAT cas_badval 1\r\nEND\r\n",
            ),
            ..Scrape::default()
        };
        let text = render(&scrape);
        assert!(text.contains("memcached_commands_total{command=\"set\",status=\"hit\"} 6\n"));
        assert!(text.contains("memcached_up 1\n"));
    }

    #[test]
    fn hot_keys_become_one_series_each_with_escaped_labels() {
        let scrape = Scrape {
            hot_keys: parse_stat_lines(
                "STAT 1:key a%22b%5C%0A\r\nSTAT 1:shard 1\r\nSTAT 1:count 7\r\nSTAT 1:error 2\r\n\
                 STAT 2:key bin%FF\r\nSTAT 2:shard 0\r\nSTAT 2:count 3\r\nSTAT 2:error 0\r\nEND\r\n",
            ),
            ..Scrape::default()
        };
        let text = render(&scrape);
        assert!(
            text.contains("ringcache_hotkey_requests{shard=\"1\",key=\"a\\\"b\\\\\\n\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("ringcache_hotkey_error{shard=\"1\",key=\"a\\\"b\\\\\\n\"} 2\n"));
        assert!(text.contains("ringcache_hotkey_requests{shard=\"0\",key=\"bin%FF\"} 3\n"));
    }

    #[test]
    fn latency_buckets_become_seconds() {
        let scrape = Scrape {
            latency: parse_stat_lines(
                "STAT count 3\r\nSTAT sum_us 1500\r\nSTAT le_us:10 1\r\nSTAT le_us:1000000 3\r\nEND\r\n",
            ),
            ..Scrape::default()
        };
        let text = render(&scrape);
        assert!(text.contains("ringcache_request_duration_seconds_bucket{le=\"0.00001\"} 1\n"));
        assert!(text.contains("ringcache_request_duration_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("ringcache_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ringcache_request_duration_seconds_sum 0.0015\n"));
    }
}

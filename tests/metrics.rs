//! The metrics port (`--metrics-port`): what it serves parses with the Prometheus
//! project's own parser (Python's `prometheus_client`, installed by
//! `scripts/test.sh`), carries memcached_exporter's names and ringcache's own,
//! and its counters follow the traffic a client sends.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use support::{free_port, Server, REPLY_TIMEOUT};

/// One sample: its name, its labels (sorted) and its value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

/// Families by name, as `prometheus_client.parser.text_string_to_metric_families` reads them.
type Families = BTreeMap<String, (String, Samples)>;

/// Reads the exposition with prometheus_client and returns its families
/// (name → type, samples). Panics if the parser refuses the text.
/// One line per family (`F name type`) and per sample (`S family name value
/// label=value...`), tab-separated.
const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("\t".join(["F", family.name, family.type]))
    for s in family.samples:
        labels = ["%s=%s" % kv for kv in sorted(s.labels.items())]
        print("\t".join(["S", family.name, s.name, repr(float(s.value))] + labels))
"#;

fn parse(exposition: &str) -> Families {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client refused the exposition (is it installed? scripts/test.sh installs it): {}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut families = Families::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "F" => {
                families.insert(fields[1].to_string(), (fields[2].to_string(), Vec::new()));
            }
            "S" => {
                let labels = fields[4..]
                    .iter()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let value = match fields[3] {
                    "inf" => f64::INFINITY,
                    v => v.parse().expect("a number"),
                };
                let family = families.get_mut(fields[1]).expect("a sample of a family");
                family.1.push((fields[2].to_string(), labels, value));
            }
            other => panic!("unexpected line {other:?}"),
        }
    }
    families
}

/// `GET /metrics` on the metrics port: (status line, body).
fn scrape(port: u16) -> (String, String) {
    http_get(port, "/metrics")
}

fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the answer");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &Families, name: &str, labels: &[(&str, &str)]) -> f64 {
    families
        .values()
        .flat_map(|(_, samples)| samples)
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        .2
}

/// A ringcache with the metrics port on a free port.
fn node_with_metrics(args: &[&str]) -> (Server, u16) {
    for _ in 0..8 {
        let metrics_port = free_port();
        let port_text = metrics_port.to_string();
        let mut all = args.to_vec();
        all.extend(["--metrics-port", &port_text]);
        let server = Server::ringcache(&all);
        if TcpStream::connect(("127.0.0.1", metrics_port)).is_ok() {
            return (server, metrics_port);
        }
    }
    panic!("could not start ringcache with a free metrics port");
}

#[test]
fn metrics_parse_with_prometheus_client_under_memcached_exporter_names() {
    let (_server, metrics_port) = node_with_metrics(&["-t", "2"]);
    let (status, body) = scrape(metrics_port);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let families = parse(&body);
    // prometheus_client names a counter's family without its `_total`.
    let expected = [
        ("memcached_up", "gauge"),
        ("memcached_uptime_seconds", "counter"),
        ("memcached_version", "gauge"),
        ("memcached_current_items", "gauge"),
        ("memcached_current_connections", "gauge"),
        ("memcached_current_bytes", "gauge"),
        ("memcached_limit_bytes", "gauge"),
        ("memcached_commands", "counter"),
        ("memcached_items_evicted", "counter"),
        ("memcached_read_bytes", "counter"),
        ("memcached_written_bytes", "counter"),
        ("memcached_connections", "counter"),
        ("memcached_max_connections", "gauge"),
        ("ringcache_info", "gauge"),
        ("ringcache_shard_commands", "counter"),
        ("ringcache_shard_forwarded_out", "counter"),
        ("ringcache_shard_forwarded_in", "counter"),
        ("ringcache_request_duration_seconds", "histogram"),
    ];
    let mut problems = Vec::new();
    for (name, kind) in expected {
        match families.get(name) {
            None => problems.push(format!("no family {name}")),
            Some((k, _)) if k != kind => problems.push(format!("{name} is a {k}, not a {kind}")),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\n{body}");
    assert_eq!(value(&families, "memcached_up", &[]), 1.0);
    assert_eq!(
        value(&families, "memcached_version", &[("version", "1.6.18")]),
        1.0
    );
    assert_eq!(
        value(&families, "memcached_limit_bytes", &[]),
        64.0 * 1024.0 * 1024.0
    );
    for shard in ["0", "1"] {
        value(
            &families,
            "ringcache_shard_commands_total",
            &[("shard", shard)],
        );
    }
    // A lone node has no cluster figures.
    assert!(!families.contains_key("ringcache_cluster_epoch"));

    let (status, _) = http_get(metrics_port, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn counters_follow_the_traffic_a_client_sends() {
    let (server, metrics_port) = node_with_metrics(&["-t", "2"]);
    let before = parse(&scrape(metrics_port).1);
    let sets = 57;
    let mut client = server.connect();
    for i in 0..sets {
        client.set(&format!("key-{i}"), b"value");
    }
    for i in 0..sets {
        assert_eq!(
            client.get(&format!("key-{i}")).as_deref(),
            Some(&b"value"[..])
        );
    }
    assert_eq!(client.get("never-set"), None);
    let after = parse(&scrape(metrics_port).1);

    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let set = [("command", "set"), ("status", "hit")];
    assert_eq!(moved("memcached_commands_total", &set), sets as f64);
    let hit = [("command", "get"), ("status", "hit")];
    assert_eq!(moved("memcached_commands_total", &hit), sets as f64);
    let miss = [("command", "get"), ("status", "miss")];
    assert_eq!(moved("memcached_commands_total", &miss), 1.0);
    assert_eq!(value(&after, "memcached_current_items", &[]), sets as f64);
    assert!(moved("memcached_read_bytes_total", &[]) > 0.0);

    // Each shard ran the commands of the keys it owns; together, all of them.
    let shard_commands: f64 = ["0", "1"]
        .iter()
        .map(|s| moved("ringcache_shard_commands_total", &[("shard", s)]))
        .sum();
    assert_eq!(shard_commands, (2 * sets + 1) as f64);
    // Keys owned by the shard the client is not on crossed to it.
    let hops: f64 = ["0", "1"]
        .iter()
        .map(|s| moved("ringcache_shard_forwarded_out_total", &[("shard", s)]))
        .sum();
    assert!(hops > 0.0, "no cross-shard hop counted");

    // Every request was a read of its own: at least one observation each, and
    // the histogram's buckets are cumulative up to +Inf = count.
    let count = value(&after, "ringcache_request_duration_seconds_count", &[]);
    assert!(count >= (2 * sets + 1) as f64, "{count} observations");
    let inf = value(
        &after,
        "ringcache_request_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, count);
    let one_second = value(
        &after,
        "ringcache_request_duration_seconds_bucket",
        &[("le", "1")],
    );
    assert!(one_second <= inf);
}

#[test]
fn a_cluster_node_reports_its_epoch_and_state() {
    let dir = std::env::temp_dir().join(format!("ringcache-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = support::free_ports(1);
    let base_text = base.to_string();
    let dir_text = dir.to_string_lossy().to_string();
    let (_server, metrics_port) = node_with_metrics(&[
        "--init",
        "--data-dir",
        &dir_text,
        "-t",
        "1",
        "--shard-ports",
        &base_text,
    ]);
    let body = scrape(metrics_port).1;
    let families = parse(&body);
    assert!(value(&families, "ringcache_cluster_epoch", &[]) >= 1.0);
    assert_eq!(
        value(
            &families,
            "ringcache_node_state",
            &[("node_id", "1"), ("state", "serving")]
        ),
        1.0
    );
    value(&families, "ringcache_hinted_keys", &[]);

    // Every series the shipped Grafana dashboard plots is one a node serves.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/grafana-ringcache.json"),
    )
    .expect("read the dashboard");
    let mut missing = Vec::new();
    let mut plotted = 0;
    for (at, _) in dashboard.match_indices(['m', 'r']) {
        let rest = &dashboard[at..];
        if !(rest.starts_with("memcached_") || rest.starts_with("ringcache_")) {
            continue;
        }
        if at > 0 && dashboard.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        plotted += 1;
        if !body.contains(&format!("# TYPE {family} ")) {
            missing.push(name);
        }
    }
    assert!(plotted > 10, "the dashboard plots {plotted} series");
    assert!(
        missing.is_empty(),
        "the dashboard plots {missing:?}, which no node serves"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hammered_key_tops_stats_hotkeys_and_the_metrics() {
    let (server, metrics_port) = node_with_metrics(&["-t", "2"]);
    let mut client = server.connect();
    // A quote and a backslash: the label must be escaped, the stat line encoded.
    let hot = "hot\"key\\";
    client.set(hot, b"v");
    for i in 0..300 {
        client.set(&format!("cold-{i}"), b"v");
    }
    for _ in 0..500 {
        assert_eq!(client.get(hot).as_deref(), Some(&b"v"[..]));
    }

    let stats: BTreeMap<String, String> = client.stats("hotkeys").into_iter().collect();
    assert_eq!(stats["1:key"], "hot%22key%5C", "{stats:#?}");
    let count: u64 = stats["1:count"].parse().unwrap();
    let error: u64 = stats["1:error"].parse().unwrap();
    // Each shard holds about 150 keys, more than its 64 counters: it samples,
    // so the count bounds the 501 requests in expectation only. Allow five
    // standard deviations of the sampling, sqrt(16 * 501) each.
    let one_in = ringcache::hotkeys::SAMPLE_ONE_IN;
    assert_eq!(stats["1:sample_one_in"], one_in.to_string(), "{stats:#?}");
    let spread = 5 * ((one_in * 501) as f64).sqrt() as u64;
    assert!(
        count - error <= 501 + spread && 501 <= count + spread,
        "{stats:#?}"
    );
    assert!(stats["1:shard"] == "0" || stats["1:shard"] == "1");
    // Every other key was asked for once, so counted as 0, 1 or one_in
    // requests: a count past that is inherited error.
    let second: u64 = stats["2:count"].parse().unwrap();
    let second_error: u64 = stats["2:error"].parse().unwrap();
    assert!(second - second_error <= one_in, "{stats:#?}");

    let families = parse(&scrape(metrics_port).1);
    let shard = stats["1:shard"].as_str();
    assert_eq!(
        value(
            &families,
            "ringcache_hotkey_requests",
            &[("shard", shard), ("key", hot)]
        ),
        count as f64
    );
    let series = families["ringcache_hotkey_requests"].1.len();
    assert_eq!(series, ringcache::limits::HOT_KEYS_METRICS_TOP);
}

#[test]
fn hotkeys_zero_counts_nothing() {
    let (server, metrics_port) = node_with_metrics(&["-t", "2", "--hotkeys", "0"]);
    let mut client = server.connect();
    client.set("k", b"v");
    assert_eq!(client.get("k").as_deref(), Some(&b"v"[..]));
    assert!(client.stats("hotkeys").is_empty());
    let families = parse(&scrape(metrics_port).1);
    assert!(families["ringcache_hotkey_requests"].1.is_empty());
}

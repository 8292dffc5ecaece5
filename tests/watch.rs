//! `watch`: the log lines a watcher receives are memcached 1.6.18's, line for
//! line, once the values that legitimately differ (time, log id, descriptor,
//! class, client port) are masked, for text, meta and binary requests alike;
//! an evictions watcher reads memcached's line for each item evicted; a slow
//! watcher is told how many lines it missed.

mod support;

use std::time::Duration;
use support::{Client, Program, Server, REPLY_TIMEOUT};

/// What a client does while a watcher watches, ended by `mn` so its replies
/// are known to be complete.
const TRAFFIC: &[u8] = b"set foo 5 0 3\r\nbar\r\nget foo\r\nget nope\r\nadd foo 0 0 1\r\nx\r\n\
delete foo\r\nincr foo 1\r\ntouch foo 1\r\ngets foo\r\nmg foo v\r\nms k2 2\r\nhi\r\nmg k2 v\r\n\
cas k2 0 0 1 999\r\nz\r\nappend k2 0 0 1\r\nq\r\nset ttl 0 100 2\r\nab\r\nprepend ttl 0 0 1\r\nc\r\n\
replace nope 0 0 1\r\nx\r\nget foo k2 ttl\r\nset n 0 0 1\r\n5\r\nincr n 2\r\ndecr n 1\r\n\
set a%b 0 0 1\r\nx\r\nget a%b\r\nmn\r\n";

/// The lines `watch <kinds>` receives while [`TRAFFIC`] runs on one
/// connection that then closes, up to the last line of the store of `marker`
/// (a key never stored before) on another connection, masked.
fn watched(server: &Server, kinds: &str, marker: &str) -> Vec<String> {
    watched_while(server, kinds, marker, TRAFFIC, b"MN\r\n")
}

/// Like [`watched`], with `traffic` in place of [`TRAFFIC`]; its replies end
/// with `last_reply`.
fn watched_while(
    server: &Server,
    kinds: &str,
    marker: &str,
    traffic: &[u8],
    last_reply: &[u8],
) -> Vec<String> {
    let mut watcher = server.connect();
    let request = format!("{}\r\n", format!("watch {kinds}").trim_end());
    assert_eq!(watcher.call(request.as_bytes(), b"OK\r\n"), b"OK\r\n");
    let mut client = server.connect();
    client.call(traffic, last_reply);
    drop(client);
    // The close is logged before the marker's connection opens.
    std::thread::sleep(Duration::from_millis(100));
    let mut marking = server.connect();
    let set = format!("set {marker} 0 0 1\r\nx\r\n");
    assert_eq!(marking.call(set.as_bytes(), b"\r\n"), b"STORED\r\n");
    let last = if kinds.contains("mutations") {
        format!("type=item_store key={marker}")
    } else {
        format!("type=item_get key={marker}")
    };
    let text = watcher
        .read_until(last.as_bytes(), REPLY_TIMEOUT)
        .unwrap_or_else(|f| panic!("{}: watch {kinds}: {f:?}", server.name));
    let rest = watcher
        .read_until(b"\n", REPLY_TIMEOUT)
        .expect("the marker line's end");
    let text = String::from_utf8([text, rest].concat()).expect("log lines are text");
    text.lines().map(mask).collect()
}

fn mask(line: &str) -> String {
    line.split(' ')
        .map(|field| match field.split_once('=') {
            Some((name @ ("ts" | "gid" | "cfd" | "clsid" | "rport"), _)) => format!("{name}=*"),
            _ => field.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn watch_lines_match_memcacheds_line_for_line() {
    let Some(memcached) = Server::memcached(&[]) else {
        return;
    };
    let ringcache = Server::ringcache(&["-t", "1"]);
    let table = ["", "fetchers", "mutations", "fetchers mutations connevents"];
    for (round, kinds) in table.into_iter().enumerate() {
        let marker = format!("marker-{round}");
        let expected = watched(&memcached, kinds, &marker);
        let got = watched(&ringcache, kinds, &marker);
        assert!(expected.len() > 10, "watch {kinds}: {expected:#?}");
        assert_eq!(got, expected, "watch {kinds}");
        // Each run's keys are set again by the next, from the same start:
        // gone, not merely flushed (memcached's background threads unlink
        // flushed items at their own pace, so a later lookup of one logs
        // `not_found` or `flushed` by timing; deleting them fixes it).
        for server in [&memcached, &ringcache] {
            let mut client = server.connect();
            client.call(b"flush_all\r\n", b"OK\r\n");
            for key in ["foo", "k2", "ttl", "n", "a%b"] {
                client.call(format!("delete {key}\r\n").as_bytes(), b"\r\n");
            }
        }
    }
}

#[test]
fn every_shard_logs_to_a_watcher_on_any_shard() {
    let Some(memcached) = Server::memcached(&[]) else {
        return;
    };
    let ringcache = Server::ringcache(&["-t", "2"]);
    let kinds = "fetchers mutations";
    let mut expected = watched(&memcached, kinds, "marker");
    let mut got = watched(&ringcache, kinds, "marker");
    // Shards log side by side: the same lines, in another order.
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn watch_answers_as_memcached_to_unknown_kinds_and_pipelined_commands() {
    let Some(memcached) = Server::memcached(&[]) else {
        return;
    };
    let ringcache = Server::ringcache(&["-t", "2"]);
    for server in [&memcached, &ringcache] {
        let mut client = server.connect();
        assert_eq!(
            client.call(b"watch fetchers bogus\r\n", b"\r\n"),
            b"ERROR\r\n",
            "{}",
            server.name
        );
        assert_eq!(
            client.call(b"version\r\nwatch\r\n", b"watch\r\n"),
            b"VERSION 1.6.18\r\nERROR cannot pipeline other commands before watch\r\n",
            "{}",
            server.name
        );
    }
}

#[test]
fn a_slow_watcher_is_told_how_many_lines_it_missed() {
    let server = Server::ringcache(&["-t", "2"]);
    let mut watcher = server.connect();
    assert_eq!(watcher.call(b"watch\r\n", b"OK\r\n"), b"OK\r\n");
    let mut client = server.connect();
    let keys = format!("get{}\r\n", " k".repeat(100));
    let reads = 2000;
    client.call(keys.repeat(reads).as_bytes(), &b"END\r\n"[..]);
    // Replies are in order: the last END ends them all.
    let mut last = Client::connect(server.port);
    last.call(b"mn\r\n", b"MN\r\n");
    // Everything queued so far, then one more line, which reports what was dropped.
    let mut text = watcher.read_available(Duration::from_millis(500));
    client.call(b"get final\r\n", b"END\r\n");
    text.extend(
        watcher
            .read_until(b"key=final", REPLY_TIMEOUT)
            .expect("the last line"),
    );
    let text = String::from_utf8(text).unwrap();
    let lines = text.lines().filter(|l| l.contains("type=item_get")).count() as u64;
    let skipped: u64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("skipped="))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(skipped > 0, "the watcher fell behind");
    assert_eq!(lines + skipped, 100 * reads as u64 + 1);
}

/// A binary request packet (memcached's binary protocol header, then extras,
/// key and value).
fn packet(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64, opaque: u32) -> Vec<u8> {
    let body_len = extras.len() + key.len() + value.len();
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&(body_len as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// A storage command's extras: flags, then expiry.
fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

/// An incr/decr's extras: delta, initial value, expiry (all ones: do not create).
fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut extras = [delta.to_be_bytes(), initial.to_be_bytes()].concat();
    extras.extend_from_slice(&exptime.to_be_bytes());
    extras
}

/// The opaque of the `NOOP` that ends [`binary_traffic`].
const LAST_OPAQUE: u32 = 0x4d4e_4d4e;

/// Binary requests of every key command, hits and misses, quiet and not, CAS
/// matches and mismatches, ended by a `NOOP`. (A too-large store is left out:
/// memcached 1.6.18 crashes logging it.)
fn binary_traffic() -> Vec<u8> {
    const SET: u8 = 0x01;
    let ttl = |secs: u32| secs.to_be_bytes().to_vec();
    let requests = [
        packet(SET, b"bk", &store_extras(5, 0), b"val", 0, 0),
        packet(0x00, b"bk", &[], &[], 0, 0), // GET
        packet(0x00, b"nope", &[], &[], 0, 0),
        packet(0x0c, b"nope", &[], &[], 0, 0), // GETK
        packet(0x0d, b"nope", &[], &[], 0, 0), // GETKQ
        packet(0x09, b"bk", &[], &[], 0, 0),   // GETQ
        packet(0x05, b"bk", &arith_extras(1, 0, 0), &[], 0, 0), // INCR, not a number
        packet(SET, b"n", &store_extras(0, 0), b"5", 0, 0),
        packet(0x05, b"n", &arith_extras(2, 0, 0), &[], 0, 0),
        packet(0x06, b"n", &arith_extras(1, 0, 0), &[], 0, 0), // DECR
        packet(0x15, b"n", &arith_extras(1, 0, 0), &[], 0, 0), // INCRQ
        packet(0x05, b"zz", &arith_extras(1, 0, u32::MAX), &[], 0, 0),
        packet(0x06, b"c2", &arith_extras(1, 7, 30), &[], 0, 0), // creates c2
        packet(0x05, b"n", &arith_extras(1, 0, 0), &[], 999, 0),
        packet(0x04, b"zz", &[], &[], 0, 0), // DELETE
        packet(0x04, b"n", &[], &[], 999, 0),
        packet(0x14, b"n", &[], &[], 0, 0),     // DELETEQ
        packet(0x0e, b"zz", &[], b"x", 0, 0),   // APPEND
        packet(0x0e, b"bk", &[], b"x", 999, 0), // stale CAS
        packet(0x1a, b"bk", &[], b"p", 0, 0),   // PREPENDQ
        packet(0x02, b"zz", &store_extras(0, 0), b"x", 5, 0), // ADD with a CAS
        packet(SET, b"bk", &store_extras(0, 0), b"x", 5, 0),
        packet(0x03, b"bk", &store_extras(0, 50), b"rr", 0, 0), // REPLACE
        packet(0x03, b"nope", &store_extras(0, 100), b"v", 0, 0),
        packet(0x1c, b"zz", &ttl(50), &[], 0, 0), // TOUCH
        packet(0x1e, b"zz", &ttl(50), &[], 0, 0), // GATQ
        packet(0x23, b"c2", &ttl(50), &[], 0, 0), // GATK
        packet(0x11, b"sq", &store_extras(0, 0), b"val", 0, 0), // SETQ
        packet(0x12, b"sq", &store_extras(0, 0), b"val", 0, 0), // ADDQ
        packet(0x0a, &[], &[], &[], 0, LAST_OPAQUE), // NOOP
    ];
    requests.concat()
}

#[test]
fn binary_requests_log_memcacheds_lines() {
    let Some(memcached) = Server::memcached(&[]) else {
        return;
    };
    let ringcache = Server::ringcache(&["-t", "1"]);
    let traffic = binary_traffic();
    let noop_reply = &packet(0x0a, &[], &[], &[], 0, LAST_OPAQUE)[1..];
    let kinds = "fetchers mutations";
    let expected = watched_while(&memcached, kinds, "marker", &traffic, noop_reply);
    let got = watched_while(&ringcache, kinds, "marker", &traffic, noop_reply);
    assert!(expected.len() > 40, "{expected:#?}");
    assert_eq!(got, expected);
}

/// Value bytes of each item that fills memory.
const FILL_VALUE_BYTES: usize = 1000;

/// What an evictions watcher reads while `-m 4` fills several times over: the
/// eviction lines, unmasked, and the `skipped=N` total. `a%b` (stored with a
/// TTL) and `fetched` (read once) are stored first; the reading stops once
/// `fetched`'s eviction is seen and the server has been quiet a while.
fn evictions_watched(server: &Server) -> (Vec<String>, u64) {
    let mut watcher = server.connect();
    assert_eq!(watcher.call(b"watch evictions\r\n", b"OK\r\n"), b"OK\r\n");
    let mut client = server.connect();
    let value = "v".repeat(FILL_VALUE_BYTES);
    let first = format!(
        "set a%b 0 100 {len}\r\n{value}\r\nset fetched 0 0 {len}\r\n{value}\r\nget fetched\r\n",
        len = FILL_VALUE_BYTES
    );
    client.call(first.as_bytes(), b"END\r\n");
    // In batches, reading the watcher between them so that its queue keeps
    // room: 16 MB into 4.
    let mut text = Vec::new();
    for batch in 0..16 {
        let sets: String = (0..1000)
            .map(|i| format!("set k{batch}-{i} 0 0 {FILL_VALUE_BYTES} noreply\r\n{value}\r\n"))
            .collect();
        client.call(format!("{sets}mn\r\n").as_bytes(), b"MN\r\n");
        text.extend(watcher.read_available(Duration::from_millis(50)));
    }
    if support::find(&text, b"key=fetched ").is_none() {
        let rest = watcher.read_until(b"key=fetched ", REPLY_TIMEOUT);
        text.extend(rest.unwrap_or_else(|f| f.received().to_vec()));
    }
    text.extend(watcher.read_available(Duration::from_millis(300)));
    let text = String::from_utf8(text).expect("log lines are text");
    let skipped = text
        .lines()
        .filter_map(|l| l.strip_prefix("skipped="))
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum();
    let lines = text
        .lines()
        .filter(|l| !l.starts_with("skipped="))
        .map(String::from)
        .collect();
    (lines, skipped)
}

/// An eviction line's field named `name`.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn an_evictions_watcher_reads_memcacheds_line_for_each_item_evicted() {
    let Some(memcached) = Server::memcached(&["-m", "4"]) else {
        return;
    };
    let ringcache = Server::ringcache(&["-t", "1", "-m", "4"]);
    for server in [&memcached, &ringcache] {
        let (lines, skipped) = evictions_watched(server);
        // Both items are evicted, and no other line but evictions is sent.
        let line_of = |key: &str| {
            lines
                .iter()
                .find(|l| l.contains(&format!(" key={key} ")))
                .unwrap_or_else(|| panic!("{}: {key} not evicted", server.name))
        };
        let with_ttl = line_of("a%25b");
        let fetched = line_of("fetched");
        for line in &lines {
            let names: Vec<&str> = line
                .split(' ')
                .filter_map(|f| f.split_once('='))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(
                names,
                ["ts", "gid", "type", "key", "fetch", "ttl", "la", "clsid", "size"],
                "{}: {line}",
                server.name
            );
            assert_eq!(field(line, "type"), "eviction", "{}", server.name);
        }
        // memcached's ttl is the seconds left (-1: none), la the seconds since
        // the last access, size the value's length.
        let ttl: u32 = field(with_ttl, "ttl").parse().expect("a ttl");
        assert!((95..=100).contains(&ttl), "{}: {with_ttl}", server.name);
        assert_eq!(field(with_ttl, "fetch"), "no", "{}", server.name);
        assert_eq!(field(fetched, "fetch"), "yes", "{}", server.name);
        assert_eq!(field(fetched, "ttl"), "-1", "{}", server.name);
        for line in [with_ttl, fetched] {
            let la: u32 = field(line, "la").parse().expect("an age");
            assert!(la <= 5, "{}: {line}", server.name);
            assert_eq!(field(line, "size"), FILL_VALUE_BYTES.to_string());
        }
        if server.program == Program::Memcached {
            // Its logger thread may still be behind.
            continue;
        }
        // One line (or one skipped) per eviction counted.
        let stats = server.connect().stats("");
        let evictions = stats
            .iter()
            .find(|(name, _)| name == "evictions")
            .map(|(_, value)| value.parse::<u64>().unwrap())
            .unwrap();
        assert_eq!(lines.len() as u64 + skipped, evictions, "{}", server.name);
    }
}

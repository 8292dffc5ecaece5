//! The memory limit is a hard bound: fill a `-m 64` server with far more than
//! 64 MiB of items of mixed sizes and check its resident memory, its eviction
//! count and what it reads back (does I/O: a real server, /proc).

mod support;

use support::{show, Rng, Server, REPLY_TIMEOUT};

/// `-m` for this test, in MiB.
const MEMORY_LIMIT_MIB: u64 = 64;

/// What the process may hold beyond `-m`: code, stacks, executors' rings,
/// socket and parse buffers, the index. The README states this figure.
const FIXED_OVERHEAD_BYTES: u64 = 48 << 20;

/// Item bytes written in all: well past the limit.
const FILL_BYTES: u64 = 256 << 20;

/// Items per pipelined batch.
const BATCH_ITEMS: usize = 64;

fn value_len(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=4 => rng.range(1, 200) as usize,
        5..=7 => rng.range(200, 8_000) as usize,
        8 => rng.range(8_000, 100_000) as usize,
        _ => rng.range(100_000, 900_000) as usize,
    }
}

/// The value stored under key number `i`: its own bytes, so a read-back can
/// tell a torn or mixed-up value from a right one.
fn value_of(i: u64, len: usize) -> Vec<u8> {
    let pattern = format!("<{i}>");
    pattern.bytes().cycle().take(len).collect()
}

#[test]
fn rss_stays_under_the_limit_plus_a_fixed_overhead_while_evicting() {
    let limit = MEMORY_LIMIT_MIB.to_string();
    let server = Server::ringcache(&["-t", "2", "-m", &limit]);
    let mut client = server.connect();
    let mut rng = Rng::new(support::seed_from_env_or_clock());
    let bound = (MEMORY_LIMIT_MIB << 20) + FIXED_OVERHEAD_BYTES;
    let mut written = 0u64;
    let mut lens = Vec::new();
    let mut rss_max = 0u64;
    let mut refused = 0;
    while written < FILL_BYTES {
        let mut batch = Vec::new();
        for _ in 0..BATCH_ITEMS {
            let i = lens.len() as u64;
            let len = value_len(&mut rng);
            batch.extend_from_slice(format!("set m{i} {i} 0 {len}\r\n").as_bytes());
            batch.extend_from_slice(&value_of(i, len));
            batch.extend_from_slice(b"\r\n");
            lens.push(len);
            written += len as u64;
        }
        client.send(&batch);
        let replies = client
            .read_until_nth(b"\r\n", BATCH_ITEMS, REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("{}: set replies: {f:?}", server.name));
        // memcached at times answers `SERVER_ERROR out of memory storing object`
        // when a slab class has nothing to evict: a refusal, not a failure.
        for line in String::from_utf8_lossy(&replies).lines() {
            match line {
                "STORED" => {}
                "SERVER_ERROR out of memory storing object" => refused += 1,
                other => panic!("{}: set answered {other:?}", server.name),
            }
        }
        rss_max = rss_max.max(server.rss_bytes());
    }
    let rss_end = server.rss_bytes();
    let peak = server.peak_rss_bytes();
    eprintln!(
        "{}: wrote {} MiB in {} items ({refused} refused for memory); RSS max sampled {} MiB, at end {} MiB, peak (VmHWM) {} MiB; bound {} MiB",
        server.name,
        written >> 20,
        lens.len(),
        rss_max >> 20,
        rss_end >> 20,
        peak >> 20,
        bound >> 20
    );
    assert!(
        peak < bound,
        "{}: peak RSS {} MiB is over -m {MEMORY_LIMIT_MIB} MiB + {} MiB",
        server.name,
        peak >> 20,
        FIXED_OVERHEAD_BYTES >> 20
    );

    let stats = client.stats("");
    let stat = |name: &str| -> u64 {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: stats has no numeric {name}", server.name))
    };
    assert_eq!(
        stat("limit_maxbytes"),
        MEMORY_LIMIT_MIB << 20,
        "{}",
        server.name
    );
    assert!(
        stat("evictions") > 0,
        "{}: no evictions after {} MiB",
        server.name,
        written >> 20
    );
    assert!(
        stat("bytes") <= MEMORY_LIMIT_MIB << 20,
        "{}: bytes over the limit",
        server.name
    );

    // What is still there reads back whole; the newest items are mostly there.
    let mut hits = 0;
    let newest = lens.len().saturating_sub(200);
    for i in (0..lens.len()).step_by(97).chain(newest..lens.len()) {
        client.send(format!("get m{i}\r\n").as_bytes());
        let reply = client
            .read_until(b"END\r\n", REPLY_TIMEOUT)
            .unwrap_or_else(|f| panic!("{}: get m{i}: {f:?}", server.name));
        if reply == b"END\r\n" {
            continue;
        }
        let mut expected = format!("VALUE m{i} {i} {}\r\n", lens[i]).into_bytes();
        expected.extend_from_slice(&value_of(i as u64, lens[i]));
        expected.extend_from_slice(b"\r\nEND\r\n");
        assert!(
            reply == expected,
            "{}: m{i} read back wrong: {}",
            server.name,
            show(&reply[..reply.len().min(200)])
        );
        if i >= newest {
            hits += 1;
        }
    }
    assert!(
        hits > 0,
        "{}: none of the 200 newest items is left",
        server.name
    );
}

/// Writes 100 KB values until the server refuses one; returns the refusal.
fn fill_until_refused(
    server: &Server,
    reply_of: impl Fn(&mut support::Client, usize) -> Vec<u8>,
) -> Vec<u8> {
    let mut client = server.connect();
    for i in 0..1000 {
        let reply = reply_of(&mut client, i);
        if !reply.starts_with(b"STORED") && reply.get(1) != Some(&0x01) {
            return reply;
        }
    }
    panic!(
        "{}: 100 MB written under -M -m 8 and nothing refused",
        server.name
    );
}

/// A binary Set of `key` with a 100 KB value; the reply packet's header and body.
fn binary_set(client: &mut support::Client, i: usize) -> Vec<u8> {
    let key = format!("full{i}");
    let value = vec![b'v'; 100_000];
    let mut packet = vec![0x80, 0x01];
    packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[8, 0, 0, 0]);
    packet.extend_from_slice(&((8 + key.len() + value.len()) as u32).to_be_bytes());
    packet.extend_from_slice(&[0; 12]);
    packet.extend_from_slice(&[0; 8]);
    packet.extend_from_slice(key.as_bytes());
    packet.extend_from_slice(&value);
    client.send(&packet);
    let header = client
        .read_exact_n(24, REPLY_TIMEOUT)
        .expect("binary reply header");
    let body_len = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
    let body = client
        .read_exact_n(body_len, REPLY_TIMEOUT)
        .expect("binary reply body");
    // Status and body: what must match memcached's.
    [&header[6..8], &body[..]].concat()
}

/// Under `-M` a full cache refuses writes with memcached's errors instead of
/// evicting, and what it holds stays readable.
#[test]
fn a_full_cache_under_dash_m_refuses_writes_with_memcacheds_errors() {
    let Some(reference) = Server::memcached(&["-M", "-m", "8"]) else {
        support::warn_memcached_missing("-M");
        return;
    };
    let target = Server::ringcache(&["-M", "-m", "8", "-t", "1"]);
    for server in [&reference, &target] {
        let refusal = fill_until_refused(server, |client, i| {
            let mut request = format!("set full{i} 0 0 100000\r\n").into_bytes();
            request.extend_from_slice(&vec![b'v'; 100_000]);
            request.extend_from_slice(b"\r\n");
            client.call(&request, b"\r\n")
        });
        assert_eq!(
            show(&refusal),
            show(b"SERVER_ERROR out of memory storing object\r\n"),
            "{}",
            server.name
        );
        let mut client = server.connect();
        assert_eq!(
            client.get("full0").map(|v| v.len()),
            Some(100_000),
            "{}",
            server.name
        );
        let stats = client.stats("");
        let evictions = stats
            .iter()
            .find(|(k, _)| k == "evictions")
            .map(|(_, v)| v.as_str());
        assert_eq!(evictions, Some("0"), "{}: -M evicted", server.name);
    }
    let refusals: Vec<Vec<u8>> = [&reference, &target]
        .iter()
        .map(|server| {
            let mut flush = server.connect();
            assert!(flush.call(b"flush_all\r\n", b"\r\n").starts_with(b"OK"));
            drop(flush);
            // Refill under the binary protocol on a fresh connection.
            let mut client = server.connect();
            let mut i = 0;
            loop {
                let reply = binary_set(&mut client, 10_000 + i);
                if reply[..2] != [0, 0] {
                    return reply;
                }
                i += 1;
                assert!(i < 1000, "{}: binary sets never refused", server.name);
            }
        })
        .collect();
    assert_eq!(
        show(&refusals[1]),
        show(&refusals[0]),
        "binary out-of-memory status and body"
    );
}

//! Differential test: seeded random command streams, sent to ringcache and to
//! the reference memcached in lockstep, must get byte-identical replies once
//! what may differ is normalised (does I/O: real servers, real sockets).
//!
//! A stream mixes every text command, meta commands with random flags, noreply,
//! malformed lines, bad data chunks and too-large items over a small key space,
//! in batches written in random pieces (so requests arrive split at arbitrary
//! bytes). After each batch a `version\r\n` sentinel marks the end of its replies.
//!
//! What is normalised: CAS numbers (each server's are renumbered in the order
//! they first appear, which checks they form a consistent bijection, in `VALUE`
//! lines and in meta `c` flags), the seconds in meta `t` and `l` flags, the
//! version string, and runs of `STAT` lines (names and values are the stats
//! tests' business). `RINGCACHE_DIFF_HISTORY=1` prints every batch of a failing
//! stream, not only the one that differed.
//!
//! Replay: the failure message prints the stream's seed; run
//! `RINGCACHE_SEED=<seed> RINGCACHE_STREAMS=1 cargo test --release --test differential`.

mod support;

use std::collections::HashMap;
use support::{show, Client, Rng, Server, REPLY_TIMEOUT};

/// Streams per thread configuration (the test runs for `-t 1` and `-t 2`).
const STREAMS_DEFAULT: usize = 1500;

/// Batches per stream, and requests per batch.
const BATCHES_MAX: u64 = 24;
const BATCH_REQUESTS_MAX: u64 = 12;

/// Short keys, so that commands often meet the same items.
const KEYS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h"];

/// The keys incr/decr work on, never appended or prepended to.
///
/// memcached rewrites a number that got shorter in place, padded with spaces,
/// only when nothing else holds a reference to the item; its asynchronous LRU
/// bumps and replies still being written do, at times no client controls, and
/// then it stores a new unpadded item. So padding is compared in the tables of
/// `text_protocol.rs`, not here: the normaliser drops trailing spaces after a
/// number, and no append can turn `0  ` + `5` into a number that differs.
const NUMBER_KEYS: &[&str] = &["n", "m"];

/// The largest item memcached takes with `-I 1m` for a one-byte key and no flags.
const VALUE_LEN_MAX_FOR_ONE_BYTE_KEY: usize = 1_048_576 - 56 - 1 - 1 - 2;

/// One request of a stream.
#[derive(Clone, Debug)]
struct Request {
    bytes: Vec<u8>,
    /// Substitute a CAS number the server has shown for this key for `{cas}`.
    cas_of_key: Option<&'static str>,
    /// Send in a batch of its own: memcached drops replies queued before a
    /// `get` with a too-long key in the same read, which no client can rely on.
    alone: bool,
}

impl Request {
    fn new(bytes: impl Into<Vec<u8>>) -> Request {
        Request {
            bytes: bytes.into(),
            cas_of_key: None,
            alone: false,
        }
    }
}

/// Generates requests.
struct Generator {
    rng: Rng,
    now_secs: u64,
}

impl Generator {
    fn key(&mut self) -> String {
        if self.rng.chance(2) {
            "k".repeat(250)
        } else {
            self.rng.pick(KEYS).to_string()
        }
    }

    fn noreply(&mut self) -> &'static str {
        if self.rng.chance(20) {
            " noreply"
        } else {
            ""
        }
    }

    fn exptime(&mut self) -> String {
        match self.rng.below(20) {
            0 => "-1".into(),
            1 => "2592001".into(), // absolute, in 1970: expired at once
            2 => (self.now_secs + 3600).to_string(),
            3 => "1000".into(),
            4 => "2592000".into(),
            _ => "0".into(),
        }
    }

    fn flags(&mut self) -> String {
        match self.rng.below(6) {
            0 => "4294967295".into(),
            1 => self.rng.below(70000).to_string(),
            _ => "0".into(),
        }
    }

    fn data(&mut self) -> Vec<u8> {
        match self.rng.below(10) {
            0..=3 => self.rng.below(1000).to_string().into_bytes(),
            // Large, but well below 2^63: memcached 1.6.18 now and then answers
            // incr/decr of a value of 2^63 or more with "non-numeric value" (its
            // check for a minus sign reads past the number into whatever memory
            // follows), so increments must not carry a value there. Wrapping at
            // 2^64 is covered by the request/reply tables instead.
            4 => b"9000000000000000000".to_vec(),
            5 => Vec::new(),
            6 => b"x\r\ny".to_vec(),
            _ => {
                let len = self.rng.below(40) as usize;
                let mut data: Vec<u8> = (0..len)
                    .map(|_| *self.rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789 "))
                    .collect();
                // Not all spaces: memcached's incr skips leading white space,
                // `\r\n` included, and reads on into whatever memory follows.
                if data.iter().all(|b| *b == b' ') && !data.is_empty() {
                    data[0] = b'a';
                }
                data
            }
        }
    }

    fn delta(&mut self) -> String {
        match self.rng.below(12) {
            // Large, yet no value reaches 2^63 (see `data`): 2^64 - 1 would.
            0 => "1000000000000".into(),
            1 => "abc".into(),
            2 => "-1".into(),
            3 => "0".into(),
            _ => self.rng.below(200).to_string(),
        }
    }

    fn storage(&mut self) -> Request {
        let cmd = *self
            .rng
            .pick(&["set", "set", "add", "replace", "append", "prepend", "cas"]);
        let key = if cmd.ends_with("pend") || self.rng.chance(70) {
            self.key()
        } else {
            self.rng.pick(NUMBER_KEYS).to_string()
        };
        let data = self.data();
        let flags = self.flags();
        let exptime = self.exptime();
        let noreply = self.noreply();
        let cas = if cmd == "cas" { " {cas}" } else { "" };
        let mut bytes = format!(
            "{cmd} {key} {flags} {exptime} {}{cas}{noreply}\r\n",
            data.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(b"\r\n");
        let mut request = Request::new(bytes);
        if cmd == "cas" {
            request.cas_of_key = KEYS.iter().chain(NUMBER_KEYS).copied().find(|k| *k == key);
            if request.cas_of_key.is_none() {
                request.cas_of_key = Some("a");
            }
        }
        request
    }

    fn retrieval(&mut self) -> Request {
        let cmd = *self.rng.pick(&["get", "get", "gets", "gat", "gats"]);
        let n = self.rng.range(1, 6);
        let keys: Vec<String> = (0..n)
            .map(|_| {
                if self.rng.chance(75) {
                    self.rng.pick(KEYS).to_string()
                } else {
                    self.rng.pick(NUMBER_KEYS).to_string()
                }
            })
            .collect();
        let exptime = if cmd.starts_with("gat") {
            format!(" {}", self.exptime())
        } else {
            String::new()
        };
        Request::new(format!("{cmd}{exptime} {}\r\n", keys.join(" ")))
    }

    fn malformed(&mut self) -> Request {
        let key = self.rng.pick(KEYS).to_string();
        match self.rng.below(14) {
            0 => Request::new(format!("set {key} 0 0 z\r\nabc\r\n")),
            1 => Request::new(format!("set {key} 0 0 -1\r\n")),
            2 => Request::new(format!("set {key} 0 0 1\r\nxyz\r\n")),
            3 => Request::new(format!("set {key} 0 0 2{}\r\nx\r\n\r\n", self.noreply())),
            4 => Request::new(format!("set {} 0 0 1\r\nx\r\n", "k".repeat(251))),
            5 => Request::new(format!("delete {}\r\n", "k".repeat(251))),
            6 => Request::new(format!("incr {} 1\r\n", "k".repeat(251))),
            7 => Request::new(format!("set {key} 0 0\r\n")),
            8 => Request::new(format!("cas {key} 0 0 1\r\nx\r\n")),
            9 => Request::new(format!("touch {key}\r\n")),
            10 => Request::new(format!("delete {key} 1\r\n")),
            11 => Request::new("flush_all x\r\n"),
            12 if self.rng.chance(25) => {
                // Too large: refused, and the data block must be swallowed.
                let len = VALUE_LEN_MAX_FOR_ONE_BYTE_KEY + self.rng.range(1, 3) as usize;
                let mut bytes = format!("set {key} 0 0 {len}{}\r\n", self.noreply()).into_bytes();
                bytes.resize(bytes.len() + len, b'q');
                bytes.extend_from_slice(b"\r\n");
                Request::new(bytes)
            }
            _ => {
                let mut request = Request::new(format!("get {key} {}\r\n", "k".repeat(251)));
                request.alone = true;
                request
            }
        }
    }

    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`) with a random choice of flags,
    /// malformed flags included.
    fn meta(&mut self) -> Request {
        let key = if self.rng.chance(80) {
            self.rng.pick(KEYS).to_string()
        } else {
            self.rng.pick(NUMBER_KEYS).to_string()
        };
        let number_key = NUMBER_KEYS.contains(&key.as_str());
        let mut flags = String::new();
        let mut pick = |rng: &mut Rng, choices: &[&str], percent: u64| {
            for choice in choices {
                if rng.chance(percent) {
                    flags.push(' ');
                    flags.push_str(choice);
                }
            }
        };
        match self.rng.below(100) {
            0..=39 => {
                // On the number keys, only flags whose answer does not depend on
                // whether memcached's last incr/decr rewrote the item in place or
                // made a new one, which depends on references to it that no
                // client controls (a reply still being written): size, hit-before
                // and the stale/win marks do (see NUMBER_KEYS).
                let choices: &[&str] = if number_key {
                    &["v", "f", "k", "O77", "q", "t"]
                } else {
                    &[
                        "v", "f", "s", "k", "c", "O77", "q", "t", "h", "l", "u", "N30", "R30",
                        "T60",
                    ]
                };
                pick(&mut self.rng, choices, 25);
                Request::new(format!("mg {key}{flags}\r\n"))
            }
            40..=69 => {
                let data = self.data();
                // Number keys are never appended to nor stored stale (see above).
                let (choices, modes): (&[&str], &[&str]) = if number_key {
                    (
                        &["T0", "T90", "F7", "q", "c", "k", "O1"],
                        &[" MS", " ME", " MR", " Mz"],
                    )
                } else {
                    (
                        &["T0", "T90", "F7", "q", "c", "k", "O1", "I"],
                        &[" MS", " ME", " MA", " MP", " MR", " MX", " Mz"],
                    )
                };
                pick(&mut self.rng, choices, 20);
                if self.rng.chance(30) {
                    let mode = *self.rng.pick(modes);
                    flags.push_str(mode);
                }
                let mut bytes = format!("ms {key} {}{flags}\r\n", data.len()).into_bytes();
                bytes.extend_from_slice(&data);
                bytes.extend_from_slice(b"\r\n");
                Request::new(bytes)
            }
            70..=81 => {
                let choices: &[&str] = if number_key {
                    &["q", "k", "O5"]
                } else {
                    &["q", "I", "T30", "k", "O5"]
                };
                pick(&mut self.rng, choices, 25);
                Request::new(format!("md {key}{flags}\r\n"))
            }
            82..=93 => {
                let key = self.rng.pick(NUMBER_KEYS);
                pick(
                    &mut self.rng,
                    &[
                        "N0", "J13", "D7", "MI", "MD", "M+", "M-", "q", "v", "t", "c", "k",
                    ],
                    20,
                );
                Request::new(format!("ma {key}{flags}\r\n"))
            }
            94..=96 => Request::new("mn\r\n"),
            _ => Request::new(*self.rng.pick(&[
                "mg\r\n",
                "mg a !\r\n",
                "ms a\r\n",
                "ms a x\r\n",
                "md\r\n",
                "ma a N\r\n",
                "mx a\r\n",
            ])),
        }
    }

    fn request(&mut self) -> Request {
        let key = self.key();
        match self.rng.below(100) {
            0..=29 => self.storage(),
            30..=49 => self.retrieval(),
            50..=59 => self.meta(),
            60..=66 => Request::new(format!("delete {key}{}\r\n", self.noreply())),
            67..=76 => {
                let cmd = if self.rng.chance(50) { "incr" } else { "decr" };
                let key = self.rng.pick(NUMBER_KEYS);
                Request::new(format!(
                    "{cmd} {key} {}{}\r\n",
                    self.delta(),
                    self.noreply()
                ))
            }
            77..=81 => Request::new(format!(
                "touch {key} {}{}\r\n",
                self.exptime(),
                self.noreply()
            )),
            82..=83 => {
                // No delayed flush: in memcached 1.6.18 `flush_all <delay>` after a
                // `flush_all` brings back flushed items the LRU crawler has not yet
                // reclaimed, which depends on timing (and is a bug not to copy).
                let args = *self.rng.pick(&["", " 0", " noreply", " -1", " 0 noreply"]);
                Request::new(format!("flush_all{args}\r\n"))
            }
            84..=91 => Request::new(*self.rng.pick(&[
                "version\r\n",
                "verbosity 1\r\n",
                "verbosity\r\n",
                "verbosity 0 noreply\r\n",
                "stats\r\n",
                "stats settings\r\n",
                "stats reset\r\n",
                "shutdown\r\n",
                "cache_memlimit 64\r\n",
                "bogus\r\n",
                "\r\n",
                "get\r\n",
            ])),
            _ => self.malformed(),
        }
    }
}

/// One server's side of a stream: its connection and the CAS numbers it has shown.
struct Side<'a> {
    server: &'a Server,
    client: Client,
    cas_by_key: HashMap<String, u64>,
    /// CAS numbers in order of first appearance: the normalised name of a CAS is its index.
    cas_ordinal: HashMap<u64, usize>,
}

impl<'a> Side<'a> {
    fn new(server: &'a Server) -> Side<'a> {
        Side {
            server,
            client: server.connect(),
            cas_by_key: HashMap::new(),
            cas_ordinal: HashMap::new(),
        }
    }

    fn render(&self, request: &Request) -> Vec<u8> {
        let Some(key) = request.cas_of_key else {
            return request.bytes.clone();
        };
        let cas = self.cas_by_key.get(key).copied().unwrap_or(0);
        let text = String::from_utf8_lossy(&request.bytes).replacen("{cas}", &cas.to_string(), 1);
        // Only the command line holds `{cas}`; data never contains braces.
        text.into_bytes()
    }

    /// Writes `bytes` in the given piece sizes, then the sentinel.
    fn send(&mut self, bytes: &[u8], pieces: &[usize]) {
        let mut at = 0;
        for &len in pieces {
            let end = (at + len).min(bytes.len());
            self.client.send(&bytes[at..end]);
            at = end;
        }
        self.client.send(&bytes[at..]);
        self.client.send(b"version\r\n");
    }

    /// Reads the replies up to and including the sentinel's.
    fn receive(&mut self, versions_requested: usize) -> Result<Vec<u8>, String> {
        let reply = self
            .client
            .read_until_nth(b"VERSION ", versions_requested + 1, REPLY_TIMEOUT)
            .and_then(|mut got| {
                got.extend(self.client.read_until(b"\r\n", REPLY_TIMEOUT)?);
                Ok(got)
            });
        reply.map_err(|failure| format!("{failure:?}: {}", show(failure.received())))
    }

    /// Replaces what may differ between servers, and learns CAS numbers.
    fn normalise(&mut self, reply: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(reply.len());
        let mut at = 0;
        let mut in_stats = false;
        while at < reply.len() {
            let line_end = support::find(&reply[at..], b"\r\n").map_or(reply.len(), |i| at + i + 2);
            let line = &reply[at..line_end];
            at = line_end;
            if line.starts_with(b"STAT ") {
                if !in_stats {
                    out.extend_from_slice(b"STAT *\r\n");
                }
                in_stats = true;
                continue;
            }
            in_stats = false;
            if line.starts_with(b"VERSION ") {
                out.extend_from_slice(b"VERSION *\r\n");
                continue;
            }
            if line.starts_with(b"VALUE ") {
                let text = String::from_utf8_lossy(line).trim_end().to_string();
                let fields: Vec<&str> = text.split(' ').collect();
                let len: usize = fields.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
                let data_end = (at + len + 2).min(reply.len());
                let mut data = reply[at..data_end].to_vec();
                at = data_end;
                strip_number_padding(&mut data);
                let mut header = fields[..fields.len().min(3)].join(" ");
                header.push_str(&format!(" {}", data.len().saturating_sub(2)));
                if let Some(cas) = fields.get(4).and_then(|c| c.parse::<u64>().ok()) {
                    self.cas_by_key.insert(fields[1].to_string(), cas);
                    let next = self.cas_ordinal.len();
                    let ordinal = *self.cas_ordinal.entry(cas).or_insert(next);
                    header.push_str(&format!(" cas#{ordinal}"));
                }
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&data);
                continue;
            }
            if [&b"VA "[..], b"HD", b"EN", b"NF", b"NS", b"EX"]
                .iter()
                .any(|code| line.starts_with(code))
            {
                let text = String::from_utf8_lossy(line).trim_end().to_string();
                let mut tokens: Vec<String> = text.split(' ').map(String::from).collect();
                let mut data = Vec::new();
                let mut first_flag = 1;
                if tokens[0] == "VA" {
                    let len: usize = tokens.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                    let data_end = (at + len + 2).min(reply.len());
                    data = reply[at..data_end].to_vec();
                    at = data_end;
                    strip_number_padding(&mut data);
                    if tokens.len() > 1 {
                        tokens[1] = data.len().saturating_sub(2).to_string();
                    }
                    first_flag = 2;
                }
                for token in tokens.iter_mut().skip(first_flag) {
                    let (flag, rest) = token.split_at(1);
                    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    match flag {
                        "c" => {
                            let cas: u64 = rest.parse().unwrap_or(0);
                            let next = self.cas_ordinal.len();
                            let ordinal = *self.cas_ordinal.entry(cas).or_insert(next);
                            *token = format!("c#{ordinal}");
                        }
                        // Seconds left and last access move with each server's clock.
                        "t" | "l" => *token = format!("{flag}*"),
                        _ => {}
                    }
                }
                out.extend_from_slice(tokens.join(" ").as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&data);
                continue;
            }
            out.extend_from_slice(line);
        }
        out
    }
}

/// `9 \r\n` to `9\r\n`: whether memcached pads a number that got shorter depends
/// on references to the item that no client controls (see [`NUMBER_KEYS`]).
fn strip_number_padding(data: &mut Vec<u8>) {
    let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && data.len() >= 2 && data[digits..data.len() - 2].iter().all(|b| *b == b' ') {
        data.drain(digits..data.len() - 2);
    }
}

/// Runs one stream against the reference and the target; the first difference
/// is the error.
fn run_stream(seed: u64, reference: &Server, target: &Server) -> Result<usize, String> {
    let mut rng = Rng::new(seed);
    let mut generator = Generator {
        rng: Rng::new(rng.next_u64()),
        now_secs: support::unix_now_secs(),
    };
    let mut sides = [Side::new(reference), Side::new(target)];
    let mut batches: Vec<Vec<Request>> = vec![vec![Request::new("flush_all\r\n")]];
    let batch_count = rng.range(1, BATCHES_MAX);
    for _ in 0..batch_count {
        let mut batch = Vec::new();
        for _ in 0..rng.range(1, BATCH_REQUESTS_MAX) {
            let request = generator.request();
            if request.alone && !batch.is_empty() {
                batches.push(std::mem::take(&mut batch));
            }
            if request.alone {
                batches.push(vec![request]);
            } else {
                batch.push(request);
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    let mut requests_sent = 0;
    for (index, batch) in batches.iter().enumerate() {
        let versions_requested = batch.iter().filter(|r| r.bytes == b"version\r\n").count();
        let rendered: Vec<Vec<u8>> = sides
            .iter()
            .map(|side| batch.iter().flat_map(|r| side.render(r)).collect())
            .collect();
        // The same split points for every server, so that all see the same pieces.
        let mut pieces = Vec::new();
        let mut total = 0;
        let len = rendered[0].len();
        while total < len {
            let piece = match rng.below(4) {
                0 => rng.range(1, 3) as usize,
                1 => rng.range(1, 64) as usize,
                _ => len,
            };
            pieces.push(piece);
            total += piece;
        }
        for (side, bytes) in sides.iter_mut().zip(&rendered) {
            side.send(bytes, &pieces);
        }
        requests_sent += batch.len();
        let mut normalised = Vec::new();
        for side in sides.iter_mut() {
            let reply = side
                .receive(versions_requested)
                .map_err(|e| format!("[{}] batch {index}: {e}", side.server.name))?;
            normalised.push(side.normalise(&reply));
        }
        if normalised[0] != normalised[1] {
            let requests: Vec<String> = batch.iter().map(|r| show(&r.bytes)).collect();
            // RINGCACHE_DIFF_HISTORY=1 also prints the batches before this one.
            let history = if std::env::var_os("RINGCACHE_DIFF_HISTORY").is_some() {
                let earlier: Vec<String> = batches[..index]
                    .iter()
                    .map(|b| {
                        b.iter()
                            .map(|r| show(&r.bytes))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    })
                    .collect();
                format!("\n  earlier batches:\n    {}", earlier.join("\n    "))
            } else {
                String::new()
            };
            return Err(format!(
                "seed {seed}: batch {index} differs{history}\n  requests: {}\n  {:<20} {}\n  {:<20} {}",
                requests.join(" | "),
                reference.name,
                show(&normalised[0]),
                target.name,
                show(&normalised[1])
            ));
        }
    }
    // End some streams with quit: both servers must close the connection.
    if rng.chance(30) {
        for side in sides.iter_mut() {
            side.client.send(b"quit\r\n");
            if !side.client.is_closed_within(REPLY_TIMEOUT) {
                return Err(format!(
                    "seed {seed}: [{}] did not close on quit",
                    side.server.name
                ));
            }
        }
    }
    Ok(requests_sent)
}

fn streams() -> usize {
    std::env::var("RINGCACHE_STREAMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(STREAMS_DEFAULT)
}

fn run_streams_against(threads: &str) {
    let Some(reference) = Server::memcached(&[]) else {
        support::warn_memcached_missing("differential");
        return;
    };
    let target = Server::ringcache(&["-t", threads]);
    let base_seed = support::seed_from_env_or_clock();
    let count = streams();
    eprintln!(
        "differential {}: {count} streams from seed {base_seed} (replay one: RINGCACHE_SEED=<seed> RINGCACHE_STREAMS=1)",
        target.name
    );
    let mut requests = 0;
    for i in 0..count {
        let seed = base_seed.wrapping_add(i as u64);
        match run_stream(seed, &reference, &target) {
            Ok(n) => requests += n,
            Err(message) => panic!(
                "differential {} vs {}: {message}\nreplay: RINGCACHE_SEED={seed} RINGCACHE_STREAMS=1",
                target.name, reference.name
            ),
        }
    }
    eprintln!(
        "differential {}: {count} streams, {requests} requests, all identical",
        target.name
    );
}

#[test]
fn random_streams_on_one_shard_answer_as_memcached() {
    run_streams_against("1");
}

#[test]
fn random_streams_on_two_shards_answer_as_memcached() {
    run_streams_against("2");
}

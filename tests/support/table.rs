//! One runner for the request/reply tables of the protocol tests (does I/O:
//! servers and sockets): a table is a list of rows, run in order on one
//! connection to each of ringcache `-t 1`, ringcache `-t 2` and the reference
//! memcached, and it fails naming every server's first wrong row.
//!
//! Text and meta rows are [`Step`]s: request bytes and a reply pattern (see
//! [`super::matches`]), where `{cas}` in a request stands for the last CAS the
//! table saw. A [`Sentinel`] request sent after each row marks where the row's
//! replies end, so a missing or extra reply is caught at its row. Binary rows
//! are packets, checked by the binary tests' own row runner through
//! [`run_table`].

use std::time::Duration;

use super::{matches, show, ReadFailure, Server, REPLY_TIMEOUT};

/// What one request should get back.
pub enum Expect {
    /// These bytes (a pattern with `{cas}` and `{any}`), then the connection stays open.
    Reply(Vec<u8>),
    /// The connection is closed, after exactly these bytes.
    Closed(Vec<u8>),
}

/// One row: a request and its expected reply.
pub struct Step {
    pub request: Vec<u8>,
    /// The request is written in pieces with a pause between them, so the
    /// server sees it incomplete first.
    pub split_at: Option<usize>,
    pub expect: Expect,
}

pub fn row(request: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) -> Step {
    Step {
        request: request.as_ref().to_vec(),
        split_at: None,
        expect: Expect::Reply(reply.as_ref().to_vec()),
    }
}

pub fn closes(request: impl AsRef<[u8]>) -> Step {
    Step {
        request: request.as_ref().to_vec(),
        split_at: None,
        expect: Expect::Closed(Vec::new()),
    }
}

pub fn split_row(request: impl AsRef<[u8]>, split_at: usize, reply: impl AsRef<[u8]>) -> Step {
    Step {
        split_at: Some(split_at),
        ..row(request, reply)
    }
}

/// The request sent after each row, and how its reply starts; the reply runs
/// to the end of that line.
pub struct Sentinel {
    pub request: &'static [u8],
    pub reply: &'static [u8],
}

/// `version`, for text tables (a reply the text commands never hold unasked).
pub const VERSION: Sentinel = Sentinel {
    request: b"version\r\n",
    reply: b"VERSION ",
};

/// `mn`, for meta tables: it also closes a batch of quiet requests.
pub const MN: Sentinel = Sentinel {
    request: b"mn\r\n",
    reply: b"MN\r\n",
};

/// Every server a table runs against: ringcache on one shard and on two, and
/// (`Reference::Memcached`) the reference memcached. `args` are added to each.
pub fn servers(args: &[&str], reference: Reference) -> Vec<Server> {
    let mut list = Vec::new();
    for threads in ["1", "2"] {
        let mut full = vec!["-t", threads];
        full.extend_from_slice(args);
        list.push(Server::ringcache(&full));
    }
    if reference == Reference::Memcached {
        list.extend(Server::memcached(args));
    }
    list
}

/// Whether a table also runs on memcached, or shows behaviour it lacks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Memcached,
    RingcacheOnly,
}

/// Runs `rows` on every server with `run_rows` (one server's run: the first
/// wrong row is its error) and fails with every server's first wrong row.
pub fn run_table<R>(
    table: &str,
    servers: Vec<Server>,
    rows: &[R],
    run_rows: impl Fn(&Server, &[R]) -> Result<(), String>,
) {
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for server in servers {
        match run_rows(&server, rows) {
            Ok(()) => passed.push(server.name.clone()),
            Err(message) => failures.push(format!("[{}] {message}", server.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "table {table}: passed on {passed:?}; failed:\n{}",
        failures.join("\n")
    );
}

/// Runs `steps` on `servers`, each row followed by `sentinel`.
pub fn run_steps_on(table: &str, servers: Vec<Server>, sentinel: &Sentinel, steps: &[Step]) {
    run_table(table, servers, steps, |server, steps| {
        run_steps(server, sentinel, steps)
    });
}

/// Runs `steps` against one server; the first wrong reply is the error.
pub fn run_steps(server: &Server, sentinel: &Sentinel, steps: &[Step]) -> Result<(), String> {
    let mut client = server.connect();
    let mut last_cas: Option<u64> = None;
    for (index, step) in steps.iter().enumerate() {
        let request = match last_cas {
            Some(cas) => replace(&step.request, b"{cas}", cas.to_string().as_bytes()),
            None => step.request.clone(),
        };
        let describe = |got: &[u8], why: &str| {
            format!(
                "row {index}: request {}\n      expected {}\n      got      {}{why}",
                show(&request),
                match &step.expect {
                    Expect::Reply(p) => show(p),
                    Expect::Closed(p) => format!("{} then close", show(p)),
                },
                show(got)
            )
        };
        if client.has_seen_close() {
            client = server.connect();
        }
        match step.split_at {
            Some(at) => {
                client.send(&request[..at]);
                std::thread::sleep(Duration::from_millis(200));
                client.send(&request[at..]);
            }
            None => client.send(&request),
        }
        match &step.expect {
            Expect::Closed(pattern) => {
                let got = client.read_available(Duration::from_secs(3));
                if !client.has_seen_close() {
                    return Err(describe(&got, " (connection still open)"));
                }
                if matches(pattern, &got).is_none() {
                    return Err(describe(&got, ""));
                }
            }
            Expect::Reply(pattern) => {
                client.send(sentinel.request);
                let sentinels_in_reply = count(pattern, sentinel.reply);
                let got = client
                    .read_until_nth(sentinel.reply, sentinels_in_reply + 1, REPLY_TIMEOUT)
                    .and_then(|mut got| {
                        if !sentinel.reply.ends_with(b"\r\n") {
                            got.extend(client.read_until(b"\r\n", REPLY_TIMEOUT)?);
                        }
                        Ok(got)
                    });
                let got = match got {
                    Ok(got) => got,
                    Err(ReadFailure::Timeout(got)) => {
                        return Err(describe(&got, " (then no reply to the sentinel)"))
                    }
                    Err(ReadFailure::Closed(got)) => {
                        return Err(describe(&got, " (then the connection closed)"))
                    }
                };
                let sentinel_at = rfind(&got, sentinel.reply).expect("sentinel present");
                let reply = &got[..sentinel_at];
                match matches(pattern, reply) {
                    Some(cas_values) => {
                        if let Some(cas) = cas_values.last() {
                            last_cas = Some(*cas);
                        }
                    }
                    None => return Err(describe(reply, "")),
                }
            }
        }
    }
    Ok(())
}

/// `haystack` with every `from` replaced by `to`.
pub fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

//! The client thread that runs under a kill, a new configuration or a
//! membership change: it sets and reads its own keys through one node and
//! records every error, every read that was not the latest write, and the
//! last value it is sure of per key (does I/O: one socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::support::{self, show, Client};

/// How long a request of the client thread may take before it counts as hung.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys the client thread writes and reads (its own, apart from the test's).
const TRAFFIC_KEYS: u64 = 300;

/// A write of the client thread, with when it was sent and answered.
#[derive(Clone, Debug)]
pub struct Written {
    pub value: String,
    pub sent: Instant,
    pub answered: Instant,
}

/// A read that did not return the latest value the thread had written.
#[derive(Debug)]
pub struct Mismatch {
    pub key: String,
    pub written: Written,
    pub got: Option<String>,
    pub answered: Instant,
}

#[derive(Default)]
pub struct Traffic {
    pub requests: u64,
    pub errors: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    /// Each key's latest write whose value the thread is sure of.
    pub written: HashMap<String, Written>,
}

/// Sets and reads random keys through `ip:port` until `stop`, each request
/// bounded by [`TRAFFIC_TIMEOUT`]; after each set it reads the key back.
/// Ends at the first error (a timeout, a closed connection, a reply that is
/// not `STORED` or a well-formed `get` answer).
fn run_traffic(ip: &str, port: u16, stop: &AtomicBool, seed: u64) -> Traffic {
    let mut traffic = Traffic::default();
    let mut client = match Client::try_connect_at(ip, port) {
        Ok(client) => client,
        Err(e) => {
            traffic.errors.push(format!("connect: {e}"));
            return traffic;
        }
    };
    let mut rng = support::Rng::new(seed);
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("live:{}", rng.below(TRAFFIC_KEYS));
        if !traffic.written.contains_key(&key) || rng.chance(50) {
            sequence += 1;
            let value = format!("{key}:{sequence}");
            let sent = Instant::now();
            if let Err(e) = traffic_set(&mut client, &key, &value) {
                traffic.errors.push(e);
                break;
            }
            traffic.requests += 1;
            let answered = Instant::now();
            traffic.written.insert(
                key.clone(),
                Written {
                    value,
                    sent,
                    answered,
                },
            );
        }
        let got = match traffic_get(&mut client, &key) {
            Ok(got) => got,
            Err(e) => {
                traffic.errors.push(e);
                break;
            }
        };
        traffic.requests += 1;
        let written = &traffic.written[&key];
        if got.as_deref() != Some(written.value.as_str()) {
            // Not sure of this key's value any more: it is written again before
            // it is next read.
            let written = traffic.written.remove(&key).expect("just read");
            traffic.mismatches.push(Mismatch {
                key,
                written,
                got,
                answered: Instant::now(),
            });
        }
    }
    traffic
}

fn traffic_set(client: &mut Client, key: &str, value: &str) -> Result<(), String> {
    client.send(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
    let line = client
        .read_until(b"\r\n", TRAFFIC_TIMEOUT)
        .map_err(|f| format!("set {key}: no reply within {TRAFFIC_TIMEOUT:?}: {f:?}"))?;
    if line != b"STORED\r\n" {
        return Err(format!("set {key}: {}", show(&line)));
    }
    Ok(())
}

fn traffic_get(client: &mut Client, key: &str) -> Result<Option<String>, String> {
    client.send(format!("get {key}\r\n").as_bytes());
    let line = client
        .read_until(b"\r\n", TRAFFIC_TIMEOUT)
        .map_err(|f| format!("get {key}: no reply within {TRAFFIC_TIMEOUT:?}: {f:?}"))?;
    if line == b"END\r\n" {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    let fields: Vec<&str> = text.trim_end().split(' ').collect();
    if fields.len() != 4 || fields[0] != "VALUE" || fields[1] != key {
        return Err(format!("get {key}: {}", show(&line)));
    }
    let len: usize = fields[3]
        .parse()
        .map_err(|_| format!("get {key}: {}", show(&line)))?;
    let body = client
        .read_exact_n(len + 2 + 5, TRAFFIC_TIMEOUT)
        .map_err(|f| format!("get {key}: value not within {TRAFFIC_TIMEOUT:?}: {f:?}"))?;
    if &body[len..] != b"\r\nEND\r\n" {
        return Err(format!("get {key}: bad framing {}", show(&body)));
    }
    Ok(Some(String::from_utf8_lossy(&body[..len]).into_owned()))
}

/// Starts [`run_traffic`] through node `id` on a thread of its own; set the
/// flag to stop it, then join it for what it saw.
pub fn start_traffic(
    cluster: &Cluster,
    id: u32,
    seed: u64,
) -> (Arc<AtomicBool>, JoinHandle<Traffic>) {
    start_traffic_at(&cluster.node(id).ip, cluster.node(id).port, seed)
}

pub fn start_traffic_at(ip: &str, port: u16, seed: u64) -> (Arc<AtomicBool>, JoinHandle<Traffic>) {
    let stop = Arc::new(AtomicBool::new(false));
    let ip = ip.to_string();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || run_traffic(&ip, port, &flag, seed));
    (stop, thread)
}

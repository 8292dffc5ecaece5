//! ringcache-bench: a memtier_benchmark-like load generator for any server that
//! speaks memcached's text (or meta) protocol. It does I/O: plain threads, each
//! driving its connections through one epoll set with non-blocking sockets.
//!
//! It is built to cost the server under test as little CPU as possible: every
//! buffer is allocated before the run, requests are written in place (no
//! formatting machinery, no allocation per request), replies are measured, not
//! copied, and all the replies of one read are handled before the next write.
//! Its own CPU time per request (getrusage) is printed so a reader can tell
//! whether the generator or the server was the bottleneck.
//!
//! Modes:
//! - default: a timed (`--test-time`) or counted (`--requests`) mix of sets and
//!   gets (`--ratio`), optionally after `--prefill` (every key set once);
//! - `--cache-aside`: every request is a get; a miss is followed by a set of that
//!   key, as an application filling its cache does (for hit-ratio comparisons);
//! - `--fill-until-evictions`: sets sequential keys until the server's `stats`
//!   shows an eviction, then reports how many items it holds (memory density).
//!
//! Requests go to `--servers`, connection i to server i mod n; with `--ketama`
//! each connection instead holds one socket per endpoint and sends each request
//! to the endpoint owning its key on their ketama ring, as a ketama client does.
//!
//! Progress goes to stderr once a second; the summary goes to stdout, as text or
//! (with `--json`) as one JSON object.

mod args;
mod conn;
mod keys;
mod report;
mod run;
mod tally;
mod wire;
mod worker;

use args::{Args, Plan};
use clap::Parser;
use report::report;
use run::{fill_until_evictions, run_load};
use std::sync::Arc;
use std::time::Duration;

// The generator's limits, in one place.

/// Bytes read from a socket at once; one read usually holds every reply of a window.
pub(crate) const READ_BUFFER_BYTES: usize = 256 * 1024;
/// Largest value `--data-size` accepts (memcached's default `-I` is 1 MiB).
pub(crate) const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Deepest pipeline accepted.
pub(crate) const PIPELINE_MAX: usize = 4096;
/// Most connections in all.
pub(crate) const CONNECTIONS_MAX: usize = 10_000;
/// How long an idle epoll wait lasts before the worker looks at the phase again.
pub(crate) const EPOLL_WAIT_MS: u16 = 50;
/// How long a worker waits for replies still in flight when the run ends.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests each connection keeps in flight while prefilling, whatever `--pipeline` is.
pub(crate) const PREFILL_PIPELINE: usize = 64;
/// Sets written between two `stats` checks in `--fill-until-evictions`.
pub(crate) const FILL_BATCH_SETS: u64 = 2000;
/// Latency histogram range, in nanoseconds: 1 ns to 60 s, 3 significant figures.
pub(crate) const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// Largest --key-space with --ketama: the owner of every key is looked up once
/// before the run and kept in a table of 2 bytes a key.
pub(crate) const KETAMA_KEY_SPACE_MAX: u64 = 1 << 26;

fn main() {
    let args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("ringcache-bench: {e}");
            std::process::exit(2);
        }
    };
    let result = if args.fill_until_evictions {
        fill_until_evictions(&plan, &args)
    } else {
        run_load(plan.clone(), &args).map(|s| report(&plan, &args, &s))
    };
    if let Err(e) = result {
        eprintln!("ringcache-bench: {e}");
        std::process::exit(1);
    }
}

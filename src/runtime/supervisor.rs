//! The node's one supervisor (does I/O: threads, signals, process exit).
//!
//! Every thread that matters to the node (each shard, the control thread)
//! reports on one channel when it ends, with its panic message if it panicked;
//! a dedicated thread waits for SIGINT, SIGTERM and SIGHUP and forwards them
//! to the same channel; a started shard's "serving" (or why not) is forwarded
//! there too. The main thread receives from that one channel, so it sees a
//! stop signal, a shard that failed, and a shard that never starts alike, at
//! every stage, start-up included.
//!
//! A thread that panics or ends while the node runs brings the whole node down
//! with [`EXIT_THREAD_FAILED`]: half a node (one shard's keys unserved, waiters
//! on it hanging, partial `stats`) is worse than a restart by the service
//! manager (`Restart=on-failure`).
//!
//! Bottom layer: imports nothing else of `runtime`.

use nix::sys::signal::{SigSet, Signal};
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Exit status when a shard or the control thread panicked or ended while the
/// node was running (`EX_SOFTWARE` from sysexits.h).
pub const EXIT_THREAD_FAILED: i32 = 70;

/// Exit status when the node could not start (port in use, memlock, io_uring,
/// a shard that did not start in time).
pub const EXIT_START_FAILED: i32 = 1;

/// How long the node waits for every shard to say it serves.
pub const SHARD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// After a failure, or a stop signal during start-up, how long the other
/// threads get to stop before the process exits without them.
pub const FAILURE_STOP_GRACE: Duration = Duration::from_secs(1);

/// After a stop signal on a running node, how long its threads get to finish
/// (a shard lets connections finish their requests for up to 5 s).
pub const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// What the main thread hears about.
pub enum Event {
    /// A shard serves (`Ok(id)`) or says why it cannot.
    Started(Result<u32, String>),
    Signal(Signal),
    /// A supervised thread ended; `panic` holds its panic message if it panicked.
    Ended {
        thread: String,
        panic: Option<String>,
    },
}

/// Starts the thread that waits for `signals` (blocked in every thread, since
/// threads inherit the mask) and forwards each to `events`.
pub fn forward_signals(signals: SigSet, events: mpsc::Sender<Event>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
}

/// Starts the thread that forwards the shards' start reports to `events`.
pub fn forward_started(
    started: mpsc::Receiver<Result<u32, String>>,
    events: mpsc::Sender<Event>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("started".into())
        .spawn(move || {
            for report in started {
                if events.send(Event::Started(report)).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
}

/// Runs `body` as a supervised thread's body: however it ends, `events` hears.
pub fn supervised(thread: String, events: mpsc::Sender<Event>, body: impl FnOnce()) {
    let panic = std::panic::catch_unwind(AssertUnwindSafe(body))
        .err()
        .map(|payload| panic_text(payload.as_ref()));
    let _ = events.send(Event::Ended { thread, panic });
}

/// The message a panic was raised with.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Waits until `running` supervised threads have ended or `patience` has
/// passed; returns how many are still running. A panic seen meanwhile is
/// reported and recorded in `failed`.
pub fn wait_for_threads(
    events: &mpsc::Receiver<Event>,
    mut running: usize,
    patience: Duration,
    failed: &mut bool,
) -> usize {
    let deadline = Instant::now() + patience;
    while running > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Ended { thread, panic }) => {
                running -= 1;
                if let Some(message) = panic {
                    eprintln!("ringcache: {thread} panicked while stopping: {message}");
                    *failed = true;
                }
            }
            Ok(Event::Started(_) | Event::Signal(_)) => {}
            Err(_) => break,
        }
    }
    running
}

/// A fault a test asks for, read once at start from `RINGCACHE_TEST_FAULT`.
/// TEST-ONLY: it exists so that tests/supervisor.rs can show what the node does
/// when a shard panics or never starts; nothing else sets it.
///
/// - `panic:SHARD:MS`: shard SHARD panics MS milliseconds after its executor starts.
/// - `stall:SHARD`: shard SHARD blocks its thread before it starts, for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFault {
    Panic { shard: usize, after_ms: u64 },
    Stall { shard: usize },
}

impl TestFault {
    pub const ENV: &'static str = "RINGCACHE_TEST_FAULT";

    pub fn from_env() -> Option<TestFault> {
        let text = std::env::var(Self::ENV).ok()?;
        let fault = Self::parse(&text);
        if fault.is_none() {
            log::warn!("{}={text:?} is not a fault: ignored", Self::ENV);
        }
        fault
    }

    fn parse(text: &str) -> Option<TestFault> {
        let mut fields = text.split(':');
        let fault = match (fields.next()?, fields.next()?.parse().ok()?) {
            ("panic", shard) => TestFault::Panic {
                shard,
                after_ms: fields.next()?.parse().ok()?,
            },
            ("stall", shard) => TestFault::Stall { shard },
            _ => return None,
        };
        fields.next().is_none().then_some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_faults_parse_and_anything_else_is_none() {
        assert_eq!(
            TestFault::parse("panic:1:500"),
            Some(TestFault::Panic {
                shard: 1,
                after_ms: 500
            })
        );
        assert_eq!(
            TestFault::parse("stall:3"),
            Some(TestFault::Stall { shard: 3 })
        );
        for bad in ["", "panic", "panic:1", "stall:x", "stall:1:2", "boom:1"] {
            assert_eq!(TestFault::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_panicking_body_is_reported_with_its_message() {
        let (tx, rx) = mpsc::channel();
        supervised("shard-9".into(), tx, || panic!("boom {}", 9));
        match rx.recv().unwrap() {
            Event::Ended { thread, panic } => {
                assert_eq!(thread, "shard-9");
                assert_eq!(panic.as_deref(), Some("boom 9"));
            }
            _ => panic!("not an Ended event"),
        }
    }
}

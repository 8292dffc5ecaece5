//! `watch`: the node's watchers, the bounded queue of each, and the loop a
//! watcher's connection runs (does I/O).
//!
//! Every shard writes its log lines into its own [`crate::engine::watch::WatchLog`]
//! while requests run, and after each read hands them here ([`Watchers::publish`]),
//! which stamps them and appends them to the queue of every watcher that wants
//! their kind, whatever shard the watcher's connection lives on. A queue holds
//! at most [`WATCH_QUEUE_BYTES`]; a line that does not fit is dropped and
//! counted, and the watcher reads `skipped=N` before the next line that fits,
//! as memcached's watchers do. The watcher's connection takes its queue every
//! [`WATCH_POLL_MS`] and writes it out.
//!
//! Shards on other threads reach the queues, so they sit behind mutexes; with
//! nobody watching, a shard only reads [`Watchers::wanted`] (one atomic load a
//! read) and takes no lock.
//!
//! Socket layer, above [`uring`](super::uring): imports only the bottom
//! layer and `uring`.

use super::state::with_state;
use super::stream::ClientStream;
use crate::engine::watch::{self as log, WatchLog};
use crate::limits::{WATCHERS_MAX, WATCH_POLL_MS, WATCH_QUEUE_BYTES};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every watcher of the node.
#[derive(Default)]
pub struct Watchers {
    /// The union of the kinds the watchers want (0: nobody watches).
    wanted: AtomicU8,
    /// The last log id handed out (memcached's `gid`).
    gid: AtomicU64,
    list: Mutex<Vec<Arc<Watcher>>>,
}

/// One watching connection's wishes and queue.
pub struct Watcher {
    kinds: u8,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Lines dropped since the last one queued.
    skipped: u64,
}

/// `watch` past [`WATCHERS_MAX`] watchers.
pub struct TooMany;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks stops the whole node (see the
    // supervisor), so a poisoned lock is never seen by a live shard.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Watchers {
    /// The kinds some watcher wants; what each shard copies into its log before requests run.
    #[inline]
    pub fn wanted(&self) -> u8 {
        self.wanted.load(Ordering::Acquire)
    }

    /// Adds a watcher of `kinds`.
    pub fn add(&self, kinds: u8) -> Result<Arc<Watcher>, TooMany> {
        let mut list = lock(&self.list);
        if list.len() >= WATCHERS_MAX {
            return Err(TooMany);
        }
        let watcher = Arc::new(Watcher {
            kinds,
            queue: Mutex::new(Queue::default()),
        });
        list.push(watcher.clone());
        self.wanted.fetch_or(kinds, Ordering::AcqRel);
        Ok(watcher)
    }

    fn remove(&self, watcher: &Arc<Watcher>) {
        let mut list = lock(&self.list);
        list.retain(|w| !Arc::ptr_eq(w, watcher));
        let wanted = list.iter().fold(0, |kinds, w| kinds | w.kinds);
        self.wanted.store(wanted, Ordering::Release);
    }

    /// Stamps a shard's pending lines and queues them for every watcher that
    /// wants them; empties `pending`.
    pub fn publish(&self, pending: &mut WatchLog) {
        let count = pending.ends.len() as u64;
        let first_gid = self.gid.fetch_add(count, Ordering::Relaxed) + 1;
        let unix_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut stamped = Vec::with_capacity(pending.lines.len() + 40 * count as usize);
        let mut lines = Vec::with_capacity(count as usize);
        let mut start = 0;
        for (i, &(kind, end)) in pending.ends.iter().enumerate() {
            let from = stamped.len();
            let body = &pending.lines[start..end as usize];
            log::stamp(body, unix_micros, first_gid + i as u64, &mut stamped);
            lines.push((kind, from, stamped.len()));
            start = end as usize;
        }
        let evictions_dropped = pending.evictions_dropped;
        pending.clear();
        for watcher in lock(&self.list).iter() {
            let mut queue = lock(&watcher.queue);
            if watcher.kinds & log::EVICTIONS != 0 {
                queue.skipped += evictions_dropped;
            }
            for &(kind, from, to) in &lines {
                if watcher.kinds & kind != 0 {
                    queue.offer(&stamped[from..to]);
                }
            }
        }
    }
}

impl Queue {
    fn offer(&mut self, line: &[u8]) {
        // Room for the line and a `skipped=N` line before it.
        if self.bytes.len() + line.len() + 32 > WATCH_QUEUE_BYTES {
            self.skipped += 1;
            return;
        }
        if self.skipped > 0 {
            self.bytes
                .extend_from_slice(format!("skipped={}\n", self.skipped).as_bytes());
            self.skipped = 0;
        }
        self.bytes.extend_from_slice(line);
    }
}

/// Hands this shard's pending lines, its noted evictions' among them, to the
/// watchers, if it has any.
pub fn publish_pending(watchers: &Watchers) {
    with_state(|s| {
        s.log_evictions();
        if !s.watch.is_empty() {
            watchers.publish(&mut s.watch);
        }
    });
}

/// Runs a connection that has become a watcher until its client goes away:
/// writes its queue out every [`WATCH_POLL_MS`], and reads only to notice the
/// close (anything the client sends is ignored, as memcached does).
pub async fn serve_watcher(stream: &mut ClientStream, watchers: &Watchers, watcher: Arc<Watcher>) {
    let mut scratch = [0u8; 512];
    let mut out = Vec::new();
    loop {
        let tick = async {
            glommio::timer::sleep(Duration::from_millis(WATCH_POLL_MS)).await;
            None
        };
        let read = async { Some(stream.read(&mut scratch).await) };
        if let Some(Ok(0) | Err(_)) = futures_lite::future::or(read, tick).await {
            break;
        }
        std::mem::swap(&mut out, &mut lock(&watcher.queue).bytes);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
    }
    watchers.remove(&watcher);
}

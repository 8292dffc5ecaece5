//! The runs: the timed or counted load across worker threads, and the fill
//! until the server evicts; with the CPU time each side spent. Does I/O.

use crate::args::{Args, Plan, Protocol};
use crate::conn::Source;
use crate::report::json_string;
use crate::tally::{Shared, Tally, PHASE_MEASURE, PHASE_STOP, PHASE_WARMUP};
use crate::wire::{put_request, Op};
use crate::worker::Worker;
use crate::{FILL_BATCH_SETS, PREFILL_PIPELINE};
use nix::sys::resource::{getrusage, UsageWho};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// This process's user and system CPU time, in microseconds.
pub(crate) fn self_cpu_us() -> (u64, u64) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let us =
                |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            (us(u.user_time()), us(u.system_time()))
        }
        Err(_) => (0, 0),
    }
}

/// utime + stime of a process (all its threads) from /proc/PID/stat, in microseconds.
pub(crate) fn process_cpu_us(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it start at 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some((utime + stime) * 1_000_000 / hz)
}

pub(crate) fn servers_cpu_us(pids: &[i32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| process_cpu_us(p)).sum()
}

// ---------------------------------------------------------------------------
// Runs

pub(crate) struct Summary {
    pub(crate) elapsed: Duration,
    pub(crate) tally: Tally,
    pub(crate) bench_user_us: u64,
    pub(crate) bench_sys_us: u64,
    pub(crate) server_cpu_us: Option<u64>,
}

/// Runs the load: starts a worker thread per `--threads`, waits for them to
/// connect (and prefill), measures until the time or the request count is up,
/// and sums what the workers counted.
pub(crate) fn run_load(plan: Arc<Plan>, args: &Args) -> Result<Summary, String> {
    let values: Arc<Vec<u8>> =
        Arc::new((0..plan.value_max).map(|i| b'a' + (i % 26) as u8).collect());
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_WARMUP),
        done: (0..plan.threads).map(|_| AtomicU64::new(0)).collect(),
    });
    let timed = plan.requests.is_none();
    // Workers connect, prefill, then wait here so the clock starts for all at once.
    let ready = Arc::new(Barrier::new(plan.threads + 1));
    let mut handles = Vec::with_capacity(plan.threads);
    for thread in 0..plan.threads {
        let (plan, values, shared, ready) =
            (plan.clone(), values.clone(), shared.clone(), ready.clone());
        handles.push(std::thread::spawn(move || -> Result<Tally, String> {
            worker_thread(&plan, &values, &shared, &ready, thread, timed)
        }));
    }
    ready.wait();
    if plan.prefill && !args.quiet {
        eprintln!("prefill: {} keys set", plan.key_space);
    }
    if timed && args.warmup > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
    }
    let server_before = servers_cpu_us(&args.server_pid);
    let (user_before, sys_before) = self_cpu_us();
    let started = Instant::now();
    shared.phase.store(PHASE_MEASURE, Ordering::Release);
    let deadline = timed.then(|| started + Duration::from_secs_f64(args.test_time));
    watch_progress(&handles, &shared, args, started, deadline);
    shared.phase.store(PHASE_STOP, Ordering::Release);
    // A counted run ends when its workers do.
    if !timed {
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let elapsed = started.elapsed();
    let (user_after, sys_after) = self_cpu_us();
    let server_after = servers_cpu_us(&args.server_pid);

    let mut tally = Tally::new();
    for h in handles {
        let t = h.join().map_err(|_| "a worker panicked".to_string())??;
        tally.add(&t);
    }
    Ok(Summary {
        elapsed,
        tally,
        bench_user_us: user_after - user_before,
        bench_sys_us: sys_after - sys_before,
        server_cpu_us: match (server_before, server_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
    })
}

/// One worker thread's run: connect, prefill its share of the keys if asked,
/// wait at `ready` for the others, then send its share of the load.
fn worker_thread(
    plan: &Plan,
    values: &[u8],
    shared: &Shared,
    ready: &Barrier,
    thread: usize,
    timed: bool,
) -> Result<Tally, String> {
    let worker = Worker::new(plan, thread);
    let mut worker = match worker {
        Ok(w) => w,
        Err(e) => {
            ready.wait();
            return Err(e);
        }
    };
    let mut result = Ok(());
    if plan.prefill {
        result = prefill(&mut worker, plan, values, shared, thread);
    }
    ready.wait();
    result?;
    if let Some(total) = plan.requests {
        let conns = plan.connections() as u64;
        for (c, conn) in worker.conns.iter_mut().enumerate() {
            let index = (thread * plan.clients + c) as u64;
            conn.quota = Some(total * (index + 1) / conns - total * index / conns);
        }
    }
    worker.run(plan, values, shared, thread, timed)?;
    Ok(worker.tally)
}

/// Sets each of the worker's connections' share of the key space once, then
/// turns them back to the workload with nothing counted.
fn prefill(
    worker: &mut Worker,
    plan: &Plan,
    values: &[u8],
    shared: &Shared,
    thread: usize,
) -> Result<(), String> {
    let conns = plan.connections() as u64;
    for (c, conn) in worker.conns.iter_mut().enumerate() {
        let index = (thread * plan.clients + c) as u64;
        conn.source = Source::Prefill {
            next: plan.key_space * index / conns,
            end: plan.key_space * (index + 1) / conns,
        };
        conn.depth = PREFILL_PIPELINE;
    }
    let result = worker.run(plan, values, shared, thread, false);
    for conn in &mut worker.conns {
        conn.source = Source::Workload;
        conn.depth = plan.pipeline;
    }
    worker.tally.reset();
    shared.done[thread].store(0, Ordering::Relaxed);
    result
}

/// Waits until every worker has finished or the deadline has passed, printing
/// the rate of replies to stderr once a second (unless `--quiet`).
fn watch_progress<T>(
    handles: &[std::thread::JoinHandle<T>],
    shared: &Shared,
    args: &Args,
    started: Instant,
    deadline: Option<Instant>,
) {
    let mut last_done = 0u64;
    let mut last_tick = started;
    loop {
        let finished = handles.iter().all(|h| h.is_finished());
        let now = Instant::now();
        if finished || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let next_tick = last_tick + Duration::from_secs(1);
        let wake = deadline.map_or(next_tick, |d| d.min(next_tick));
        std::thread::sleep(
            wake.saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
        let now = Instant::now();
        if now >= next_tick {
            let done: u64 = shared.done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            if !args.quiet {
                eprintln!(
                    "[{:>5.1}s] {:>10.0} ops/s  {:>12} requests",
                    (now - started).as_secs_f64(),
                    (done - last_done) as f64 / (now - last_tick).as_secs_f64(),
                    done
                );
            }
            last_done = done;
            last_tick = now;
        }
    }
}

/// Reads `stats` from the server and returns (curr_items, evictions).
pub(crate) fn items_and_evictions(stream: &mut TcpStream) -> Result<(u64, u64), String> {
    stream
        .write_all(b"stats\r\n")
        .map_err(|e| format!("stats: {e}"))?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    while !buf.ends_with(b"END\r\n") {
        let n = stream.read(&mut chunk).map_err(|e| format!("stats: {e}"))?;
        if n == 0 {
            return Err("stats: server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let stat = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("STAT ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("stats: no {name}"))
    };
    Ok((stat("curr_items")?, stat("evictions")?))
}

/// Sets keys 0, 1, 2, ... in pipelined batches until `stats` shows an eviction.
pub(crate) fn fill_until_evictions(plan: &Plan, args: &Args) -> Result<(), String> {
    if plan.protocol != Protocol::Text {
        return Err("--fill-until-evictions speaks the text protocol only".into());
    }
    let addr = &plan.servers[0];
    let mut data = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let mut control = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let value = vec![b'v'; plan.value_max];
    let mut out = Vec::with_capacity(FILL_BATCH_SETS as usize * (64 + plan.value_max));
    let mut inbuf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut next = 0u64;
    let (mut items, mut evictions) = (0, 0);
    let mut errors = 0u64;
    while next < plan.key_space {
        out.clear();
        let end = (next + FILL_BATCH_SETS).min(plan.key_space);
        for id in next..end {
            put_request(&mut out, plan, Op::Set, id, &value);
        }
        data.write_all(&out).map_err(|e| format!("write: {e}"))?;
        // Every reply to a set is one line; count lines.
        let mut lines = 0;
        let mut have = 0;
        while lines < end - next {
            let n = data
                .read(&mut inbuf[have..])
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            let chunk_end = have + n;
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &inbuf[start..chunk_end]) {
                if &inbuf[start..start + nl] != b"STORED\r" {
                    errors += 1;
                }
                start += nl + 1;
                lines += 1;
            }
            inbuf.copy_within(start..chunk_end, 0);
            have = chunk_end - start;
        }
        next = end;
        (items, evictions) = items_and_evictions(&mut control)?;
        if evictions > 0 {
            break;
        }
    }
    if evictions == 0 {
        return Err(format!(
            "no evictions after {next} sets: raise --key-space or lower the server's -m"
        ));
    }
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{{\"mode\":\"fill-until-evictions\",\"server\":{},\"key_bytes\":{},\"value_bytes\":{},\"sets\":{},\"errors\":{},\"items\":{},\"evictions\":{},\"elapsed_secs\":{:.3}}}",
            json_string(addr),
            plan.key_prefix.len() + plan.key_digits,
            plan.value_max,
            next,
            errors,
            items,
            evictions,
            elapsed
        );
    } else {
        println!(
            "{addr}: {items} items held when evictions started ({evictions} evictions after {next} sets of {}-byte keys and {}-byte values; {errors} errors; {elapsed:.1} s)",
            plan.key_prefix.len() + plan.key_digits,
            plan.value_max
        );
    }
    Ok(())
}

//! No heap allocation per request in steady state, through the whole server: a
//! node runs inside this test process under a counting allocator that sees every
//! thread, and a client makes get and set hits over real sockets at depth 1. The
//! count covers sockets, the socket ring, the executor, parsing, the store and
//! the reply; only the window after a warm-up is counted.
//!
//! One client at depth 1 leaves the shard idle between requests, and glommio
//! allocates each time an idle executor sleeps (its preemption timers and the
//! submissions of its own ring): a shard under load does not sleep per request.
//! The node here spins before sleeping (`--spin-before-park-us`), so that it
//! stays awake between the client's requests as a loaded shard does; the count is
//! then what the request path itself allocates.

use clap::Parser;
use ringcache::cli::{Args, Config};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;

/// Counts every allocation in the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEYS: usize = 64;
const VALUE_BYTES: usize = 100;
/// Requests counted, after as many again to warm up.
const REQUESTS: usize = 20_000;

/// Starts a node on a thread of this process; returns its port.
fn start_node(sockets: &str) -> u16 {
    let port = support::free_port();
    let args = Args::parse_from([
        "ringcache",
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "1",
        "-m",
        "64",
        "--sockets",
        sockets,
        "--spin-before-park-us",
        "100000",
    ]);
    let config = Config::from_args(&args).expect("a valid configuration");
    std::thread::spawn(move || ringcache::runtime::run(config));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    port
}

/// One request, and its whole reply read into `reply` (no allocation: the
/// request bytes and the reply buffer are made before).
fn exchange(stream: &mut TcpStream, request: &[u8], reply: &mut [u8], expected: usize) {
    stream.write_all(request).unwrap();
    let mut got = 0;
    while got < expected {
        let n = stream.read(&mut reply[got..expected]).unwrap();
        assert!(n > 0, "the node closed the connection");
        got += n;
    }
}

/// Allocations in the process while one connection makes `REQUESTS` get and set
/// hits (one set in four), after as many to warm up.
fn allocations_per_steady_requests(sockets: &str) -> u64 {
    let port = start_node(sockets);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let value = vec![b'v'; VALUE_BYTES];
    let sets: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| {
            let mut r = format!("set key:{i:02} 0 0 {VALUE_BYTES}\r\n").into_bytes();
            r.extend_from_slice(&value);
            r.extend_from_slice(b"\r\n");
            r
        })
        .collect();
    let gets: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("get key:{i:02}\r\n").into_bytes())
        .collect();
    let get_reply = format!("VALUE key:00 0 {VALUE_BYTES}\r\n").len() + VALUE_BYTES + 7;
    let mut reply = vec![0u8; 4096];
    for set in &sets {
        exchange(&mut stream, set, &mut reply, 8);
        assert_eq!(&reply[..8], b"STORED\r\n");
    }
    let mut run = |stream: &mut TcpStream| {
        for i in 0..REQUESTS {
            if i % 4 == 0 {
                exchange(stream, &sets[i % KEYS], &mut reply, 8);
            } else {
                exchange(stream, &gets[i % KEYS], &mut reply, get_reply);
            }
        }
        assert!(reply.starts_with(b"VALUE key:") || reply.starts_with(b"STORED"));
    };
    run(&mut stream);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run(&mut stream);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn get_and_set_hits_allocate_nothing_per_request_through_the_whole_server() {
    let on_ring = allocations_per_steady_requests("uring");
    let on_glommio = allocations_per_steady_requests("glommio");
    eprintln!(
        "allocations over {REQUESTS} requests: {on_ring} on the socket ring, \
         {on_glommio} on glommio's sockets"
    );
    // Timers and the shard's housekeeping allocate now and then, whatever the
    // load; one allocation per 200 requests is far from one per request.
    assert!(
        on_ring < (REQUESTS / 200) as u64,
        "{on_ring} allocations in {REQUESTS} requests on the socket ring"
    );
}

//! No heap allocation per request in steady state for get and set hits: a
//! counting allocator watches the request path a shard runs for each request —
//! parse, execute against the store, encode the reply into the connection's
//! reused output buffer — for text and meta requests (pure: no I/O).

use ringcache::engine::{self, ShardState};
use ringcache::protocol::{parse, ParseLimits};
use ringcache::storage::ttl::Clock;
use ringcache::storage::{Store, StoreConfig, WhenFull};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the thread that has counting switched on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn note_allocation() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

const CLOCK: Clock = Clock {
    rel_secs: 100,
    process_started_unix: 1_700_000_000,
};

fn shard() -> ShardState {
    ShardState::new(
        Store::new(StoreConfig {
            memory_limit_bytes: 8 << 20,
            item_size_max_bytes: 1 << 20,
            when_full: WhenFull::Evict,
            cas_suffix: 0,
            cas_suffix_bits: 8,
            clock_cas: false,
        }),
        ringcache::limits::HOT_KEYS_PER_SHARD_DEFAULT,
    )
}

/// Runs every request in `input` through parse and execute, as a connection
/// does with one read, appending the replies to `out`.
fn serve(shard: &mut ShardState, input: &[u8], out: &mut Vec<u8>) {
    let limits = ParseLimits::default();
    let mut at = 0;
    while at < input.len() {
        let (req, used) = parse(&input[at..], &limits).expect("a well-formed request");
        engine::execute(shard, &req, &CLOCK, out);
        at += used;
    }
}

fn steady_state_allocations(setup: &[u8], request: &[u8]) -> u64 {
    let mut shard = shard();
    let mut out = Vec::with_capacity(64 * 1024);
    serve(&mut shard, setup, &mut out);
    // Warm-up: the output buffer and the store reach their working sizes.
    for _ in 0..1000 {
        out.clear();
        serve(&mut shard, request, &mut out);
    }
    allocations_in(|| {
        for _ in 0..10_000 {
            out.clear();
            serve(&mut shard, request, &mut out);
        }
    })
}

#[test]
fn a_get_hit_allocates_nothing() {
    let setup = b"set key:1 0 0 32\r\n01234567890123456789012345678901\r\n";
    assert_eq!(steady_state_allocations(setup, b"get key:1\r\n"), 0);
    assert_eq!(steady_state_allocations(setup, b"gets key:1\r\n"), 0);
}

#[test]
fn a_set_over_an_existing_key_allocates_nothing() {
    let set = b"set key:1 0 0 32\r\n01234567890123456789012345678901\r\n";
    assert_eq!(steady_state_allocations(set, set), 0);
}

#[test]
fn meta_get_and_set_hits_allocate_nothing() {
    let setup = b"set key:1 0 0 32\r\n01234567890123456789012345678901\r\n";
    assert_eq!(steady_state_allocations(setup, b"mg key:1 v f c\r\n"), 0);
    let ms = b"ms key:1 32 T0 F5\r\n01234567890123456789012345678901\r\n";
    assert_eq!(steady_state_allocations(setup, ms), 0);
}

#[test]
fn the_counter_sees_an_allocation() {
    // The test above would pass with a counter that never counts.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
}

//! Criterion benches of one shard's store (pure): get and set, hit and miss,
//! on a 64 MiB store holding 100,000 items of 32 bytes.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringcache::protocol::text::StoreMode;
use ringcache::storage::{Store, StoreConfig, WhenFull};

const KEYS: usize = 100_000;
const NOW: u32 = 10;

fn store_with_items() -> (Store, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut store = Store::new(StoreConfig {
        memory_limit_bytes: 64 << 20,
        item_size_max_bytes: 1 << 20,
        when_full: WhenFull::Evict,
        cas_suffix: 0,
        cas_suffix_bits: 8,
        clock_cas: false,
    });
    let present: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("key:{i:09}").into_bytes())
        .collect();
    let absent: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("nokey:{i:09}").into_bytes())
        .collect();
    for key in &present {
        store.store(StoreMode::Set, key, 0, 0, &[b'v'; 32], NOW);
    }
    (store, present, absent)
}

fn store_ops(c: &mut Criterion) {
    let (mut store, present, absent) = store_with_items();
    let value = [b'w'; 32];
    let mut group = c.benchmark_group("store");
    let mut i = 0;
    // Keys are visited with a stride so that consecutive lookups do not share cache lines.
    let mut next = || {
        i = (i + 7919) % KEYS;
        i
    };
    group.bench_function("get_hit", |b| {
        b.iter(|| store.get(black_box(&present[next()]), NOW).is_ok())
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| store.get(black_box(&absent[next()]), NOW).is_err())
    });
    // Overwrites an existing key: the old item is unlinked, the new one appended.
    group.bench_function("set_hit", |b| {
        b.iter(|| {
            store.store(
                StoreMode::Set,
                black_box(&present[next()]),
                0,
                0,
                &value,
                NOW,
            )
        })
    });
    // `add` of a present key answers NOT_STORED after the lookup: a "store miss".
    group.bench_function("add_present", |b| {
        b.iter(|| {
            store.store(
                StoreMode::Add,
                black_box(&present[next()]),
                0,
                0,
                &value,
                NOW,
            )
        })
    });
    // A new key each time (the store evicts once it is full): the cost of an insert.
    let mut fresh = 0u64;
    let mut key = Vec::with_capacity(32);
    group.bench_function("set_new_key", |b| {
        b.iter(|| {
            fresh += 1;
            key.clear();
            key.extend_from_slice(b"new:");
            key.extend_from_slice(&fresh.to_le_bytes());
            store.store(StoreMode::Set, black_box(&key), 0, 0, &value, NOW)
        })
    });
    group.finish();
}

criterion_group!(benches, store_ops);
criterion_main!(benches);

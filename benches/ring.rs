//! Criterion benches of ketama ring lookup (pure): MD5 of the key plus a binary
//! search over the points, for rings of one node with 1, 4 and 64 shards.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringcache::cluster::ring::{key_point, Ring, POINTS_PER_SERVER_DEFAULT};

fn ring_owner(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("key:{i:09}").into_bytes())
        .collect();
    let mut group = c.benchmark_group("ring");
    for shards in [1usize, 4, 64] {
        let names: Vec<String> = (0..shards)
            .map(|i| format!("127.0.0.1:{}", 20000 + i))
            .collect();
        let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("owner", shards), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(ring.owner(black_box(&keys[i])))
            })
        });
        let points: Vec<u32> = keys.iter().map(|k| key_point(k)).collect();
        group.bench_with_input(
            BenchmarkId::new("owner_of_point", shards),
            &ring,
            |b, ring| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(ring.owner_of_point(black_box(points[i])))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, ring_owner);
criterion_main!(benches);

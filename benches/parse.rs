//! Criterion benches of the text request parser (pure): the requests a cache
//! serves most, each measured from a buffer holding just that request.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcache::protocol::{parse, ParseLimits};

fn parser(c: &mut Criterion) {
    let limits = ParseLimits::default();
    let value_1k = vec![b'v'; 1024];
    let mut set_1k = b"set key:000012345 0 0 1024\r\n".to_vec();
    set_1k.extend_from_slice(&value_1k);
    set_1k.extend_from_slice(b"\r\n");
    let multiget: Vec<u8> = {
        let mut line = b"get".to_vec();
        for i in 0..16 {
            line.extend_from_slice(format!(" key:{i:09}").as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        line
    };
    let cases: [(&str, &[u8]); 5] = [
        ("get", b"get key:000012345\r\n"),
        ("get_16_keys", &multiget),
        (
            "set_32B",
            b"set key:000012345 0 0 32\r\nvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n",
        ),
        ("set_1KiB", &set_1k),
        ("incomplete_set", b"set key:000012345 0 0 32\r\nvvvv"),
    ];
    let mut group = c.benchmark_group("parse");
    for (name, bytes) in cases {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(parse(black_box(bytes), &limits)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, parser);
criterion_main!(benches);

//! Criterion benches of the MAC on member frames (pure): sealing a payload
//! and opening the frame, for a forwarded `get` (with its `rc` line and `mn`),
//! a reply of one small item, and a 1 KiB write. Each hop between nodes pays
//! one seal and one open per direction per batch written.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringcache::cluster::auth::{Secret, NONCE_BYTES, SECRET_BYTES_MIN};
use ringcache::cluster::seal::{End, Opened, Sealing};

fn seal_and_open(c: &mut Criterion) {
    let secret = Secret::from_bytes(&[7; SECRET_BYTES_MIN]);
    let (nonce_c, nonce_s) = ([1; NONCE_BYTES], [2; NONCE_BYTES]);
    let mut client = Sealing::new(&secret, &nonce_c, &nonce_s, End::Client);
    let mut server = Sealing::new(&secret, &nonce_c, &nonce_s, End::Server);
    let mut set = b"set key:000000042 0 0 1024\r\n".to_vec();
    set.extend_from_slice(&[b'v'; 1024]);
    set.extend_from_slice(b"\r\nmn\r\n");
    let payloads: [(&str, Vec<u8>); 3] = [
        (
            "forwarded_get",
            b"rc fwd 3\r\nget key:000000042\r\nmn\r\n".to_vec(),
        ),
        (
            "reply_32B",
            b"VALUE key:000000042 0 32\r\n01234567890123456789012345678901\r\nEND\r\nMN\r\n"
                .to_vec(),
        ),
        ("set_1KiB", set),
    ];
    let mut group = c.benchmark_group("seal");
    let mut frame = Vec::with_capacity(4096);
    for (name, payload) in &payloads {
        group.bench_with_input(
            BenchmarkId::new("seal_open", name),
            payload,
            |b, payload| {
                b.iter(|| {
                    frame.clear();
                    client.send.seal(black_box(payload), &mut frame);
                    let opened = server.receive.open(black_box(&frame));
                    assert!(matches!(opened, Ok(Opened::Frame { .. })));
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);

//! The two ways a shard drives client sockets (`--sockets uring`, the default,
//! and `--sockets glommio`) answer the same bytes, and the socket ring's bound on
//! received, unread bytes pauses a client that will not read and resumes it.

mod support;

use std::io::Write;
use std::time::Duration;
use support::{Rng, Server};

/// Requests of every kind, values from empty to well past one provided buffer
/// (4 KiB), sent in pieces of random size, some of one byte.
fn mixed_requests(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..3000 {
        let key = format!("k{}", rng.below(200));
        match rng.below(10) {
            0..=3 => {
                let len = match rng.below(4) {
                    0 => 0,
                    1 => rng.range(1, 100),
                    2 => rng.range(4000, 4200),
                    _ => rng.range(10_000, 70_000),
                } as usize;
                let fill = b'a' + (i % 26) as u8;
                out.extend_from_slice(format!("set {key} {i} 0 {len}\r\n").as_bytes());
                out.extend(std::iter::repeat_n(fill, len));
                out.extend_from_slice(b"\r\n");
            }
            4..=6 => out.extend_from_slice(format!("get {key}\r\n").as_bytes()),
            7 => out.extend_from_slice(
                format!("get {key} k{} k{}\r\n", rng.below(200), rng.below(200)).as_bytes(),
            ),
            8 => out.extend_from_slice(format!("delete {key}\r\n").as_bytes()),
            _ => out.extend_from_slice(b"bogus command\r\n"),
        }
    }
    out.extend_from_slice(b"get k1\r\n");
    out
}

fn exchange(server: &Server, requests: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut client = server.connect();
    let mut at = 0;
    let mut replies = Vec::new();
    while at < requests.len() {
        let piece = match rng.below(8) {
            0 => 1,
            1..=3 => rng.range(2, 64),
            _ => rng.range(64, 200_000),
        } as usize;
        let end = (at + piece).min(requests.len());
        client.send(&requests[at..end]);
        at = end;
        replies.extend(client.read_available(Duration::from_millis(0)));
    }
    client.send(b"version\r\n");
    let rest = client
        .read_until(b"VERSION ", Duration::from_secs(30))
        .expect("every reply arrives");
    replies.extend(rest);
    replies
}

#[test]
fn both_socket_paths_answer_a_mixed_pipeline_byte_for_byte() {
    let requests = mixed_requests(&mut Rng::new(7));
    let ring = Server::ringcache(&["-t", "1", "--sockets", "uring"]);
    let glommio = Server::ringcache(&["-t", "1", "--sockets", "glommio"]);
    let on_ring = exchange(&ring, &requests, 11);
    let on_glommio = exchange(&glommio, &requests, 12);
    assert!(
        on_ring.len() > 1 << 20,
        "the run moved {} bytes of replies",
        on_ring.len()
    );
    assert!(
        on_ring == on_glommio,
        "replies differ: {} bytes on the ring, {} through glommio, first difference at {:?}",
        on_ring.len(),
        on_glommio.len(),
        on_ring.iter().zip(&on_glommio).position(|(a, b)| a != b)
    );
    assert!(!ring.log().contains("socket ring"), "{}", ring.log());
}

/// A client sends gets of a large value, far more request bytes than a
/// connection may hold unread (256 KiB), and reads nothing for a while: its
/// replies fill the socket, the connection stops reading, its received bytes
/// reach the bound and its receiving pauses. Once the client reads, every reply
/// arrives, in order, and the server served others all along.
#[test]
fn a_client_past_the_received_bytes_bound_is_paused_then_served_in_full() {
    const GETS: usize = 4000;
    const VALUE_BYTES: usize = 16 * 1024;
    let server = Server::ringcache(&["-t", "1"]);
    let key = "k".repeat(240);
    let mut setup = server.connect();
    setup.set(&key, &vec![b'v'; VALUE_BYTES]);

    let request = format!("get {key}\r\n").into_bytes();
    let requests = request.repeat(GETS);
    assert!(
        requests.len() > 3 * 256 * 1024,
        "{} request bytes",
        requests.len()
    );
    let hog = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut writer = hog.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&requests));

    // Others are served while the hog's replies wait.
    std::thread::sleep(Duration::from_millis(500));
    let mut other = server.connect();
    other.set("other", b"ok");
    assert_eq!(other.get("other").as_deref(), Some(b"ok".as_slice()));
    let pauses = |client: &mut support::Client| -> u64 {
        let stats = client.stats("");
        let value = stats
            .iter()
            .find(|(k, _)| k == "receive_pauses")
            .map(|(_, v)| v);
        value.expect("receive_pauses in stats").parse().unwrap()
    };
    assert!(pauses(&mut other) >= 1, "the hog's receiving never paused");

    let reply_bytes = format!("VALUE {key} 0 {VALUE_BYTES}\r\n").len() + VALUE_BYTES + 7;
    let mut hog_client = support::Client::from_stream(hog.try_clone().unwrap());
    let replies = hog_client
        .read_exact_n(GETS * reply_bytes, Duration::from_secs(60))
        .expect("every reply arrives once the client reads");
    sender.join().unwrap().expect("every request was taken");
    for (i, reply) in replies.chunks(reply_bytes).enumerate() {
        assert!(
            reply.starts_with(b"VALUE ") && reply.ends_with(b"\r\nEND\r\n"),
            "reply {i} of {GETS}"
        );
    }
    hog.shutdown(std::net::Shutdown::Both).unwrap();
    assert_eq!(other.get("other").as_deref(), Some(b"ok".as_slice()));
}

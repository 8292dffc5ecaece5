//! A short, seeded run of every parser fuzz target (the checks of
//! `tests/fuzz/checks.rs`) over random mutations of valid requests, lines and
//! files, and one regression test per rule those targets found broken. Not
//! coverage-guided: that is `scripts/fuzz.sh`, with libFuzzer. This
//! run keeps the targets' rules checked on every test run, in a few seconds.
//!
//! The seed is printed; `RINGCACHE_SEED=<n>` replays a run and
//! `RINGCACHE_FUZZ_INPUTS=<n>` sets how many inputs each target gets.

#[path = "fuzz/checks.rs"]
mod checks;

use checks::{Target, TARGETS};

/// Inputs per target by default: under two seconds each in release mode.
const INPUTS_DEFAULT: u64 = 200_000;

/// xorshift64*: small, seeded and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that sit on the parsers' decisions: separators, line ends, digits,
/// signs, base64, magic bytes.
const INTERESTING_BYTES: &[u8] = b" \r\n\t\x00\x7f\x80\x81\xff0919-+=.,[]\"#bkvqMNTEC";

/// Numbers at the edges of the types and limits the parsers check.
const INTERESTING_NUMBERS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"1",
    b"250",
    b"251",
    b"2048",
    b"65535",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"00",
    b"+5",
    b"1e3",
];

/// One random change to `input`; `seeds` supply splices.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let at = rng.below(input.len() + 1);
    match rng.below(11) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        2 => input.insert(at, INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]),
        3 => {
            let end = (at + 1 + rng.below(16)).min(input.len());
            input.drain(at..end);
        }
        4 => {
            let end = (at + 1 + rng.below(32)).min(input.len());
            let copy = input[at..end].to_vec();
            let to = rng.below(input.len() + 1);
            input.splice(to..to, copy);
        }
        5 => {
            let seed = &seeds[rng.below(seeds.len())];
            let from = rng.below(seed.len() + 1);
            let end = (from + rng.below(64)).min(seed.len());
            input.splice(at..at, seed[from..end].iter().copied());
        }
        6 => input.truncate(at),
        7 => {
            // Replace the run of digits at or after `at` with an edge number.
            let Some(start) = input[at..].iter().position(u8::is_ascii_digit) else {
                return;
            };
            let start = at + start;
            let len = input[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let number = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
            input.splice(start..start + len, number.iter().copied());
        }
        8 => {
            // A long run, to reach the length limits (keys, lines, tokens).
            let len = [8, 187, 251, 2049, 4097][rng.below(5)];
            let byte = [b'a', b' ', b'A', b'0'][rng.below(4)];
            input.splice(at..at, std::iter::repeat_n(byte, len));
        }
        9 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = rng.next() as u8;
        }
        _ => {
            // Two requests in a row: a pipeline.
            let seed = &seeds[rng.below(seeds.len())];
            input.extend_from_slice(seed);
        }
    }
}

/// Runs `target` over `inputs` mutated seeds, each mutated 1 to 8 times.
fn run(target: &Target, seed: u64, inputs: u64) {
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty());
    for seed_input in &seeds {
        (target.check)(seed_input);
    }
    let mut rng = Rng(seed ^ fnv(target.name.as_bytes()) | 1);
    for i in 0..inputs {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(8) {
            mutate(&mut rng, &mut input, &seeds);
        }
        let outcome = std::panic::catch_unwind(|| (target.check)(&input));
        if let Err(panic) = outcome {
            eprintln!(
                "fuzz target {} failed on input {i} of seed {seed}: {:?}",
                target.name,
                String::from_utf8_lossy(&input)
            );
            std::panic::resume_unwind(panic);
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

fn run_named(name: &str) {
    let seed = env_u64("RINGCACHE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let inputs = env_u64("RINGCACHE_FUZZ_INPUTS").unwrap_or(INPUTS_DEFAULT);
    println!("fuzz target {name}: RINGCACHE_SEED={seed}, {inputs} inputs");
    let target = TARGETS.iter().find(|t| t.name == name).expect("a target");
    let started = std::time::Instant::now();
    run(target, seed, inputs);
    println!(
        "fuzz target {name}: {inputs} inputs in {:?}",
        started.elapsed()
    );
}

#[test]
fn text_parser_keeps_the_protocol_rules_on_mutated_requests() {
    run_named("text");
}

#[test]
fn meta_parser_keeps_the_protocol_rules_on_mutated_requests() {
    run_named("meta");
}

#[test]
fn binary_parser_keeps_the_protocol_rules_on_mutated_requests() {
    run_named("binary");
}

#[test]
fn peer_wire_round_trips_and_keeps_its_rules_on_mutated_lines() {
    run_named("peer_wire");
}

#[test]
fn cluster_file_that_reads_writes_back_to_itself_on_mutated_files() {
    run_named("cluster_file");
}

#[test]
fn consensus_codec_round_trips_on_mutated_messages_and_files() {
    run_named("consensus_codec");
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "text",
            "meta",
            "binary",
            "peer_wire",
            "cluster_file",
            "consensus_codec"
        ]
    );
}

// Regressions: one test per rule the fuzz targets found broken.

/// `parse_peer_line` took an `rc` line longer than `REPLY_LINE_LEN_MAX` when it
/// arrived whole, but refused it when a read split it before its end.
#[test]
fn an_rc_line_past_the_line_limit_is_refused_however_it_arrives() {
    use ringcache::cluster::wire::{parse_peer_line, REPLY_LINE_LEN_MAX};
    let mut line = b"rc fwd 3".to_vec();
    line.resize(REPLY_LINE_LEN_MAX + 10, b' ');
    line.extend_from_slice(b"\r\n");
    assert_eq!(parse_peer_line(&line), Err(line.len()));
    let split = REPLY_LINE_LEN_MAX + 1;
    assert_eq!(parse_peer_line(&line[..split]), Err(split));
    let mut longest = b"rc fwd 3".to_vec();
    longest.resize(REPLY_LINE_LEN_MAX, b' ');
    longest.push(b'\n');
    assert!(matches!(parse_peer_line(&longest), Ok(Some(_))));
}

/// `scan_reply` took a reply line longer than `REPLY_LINE_LEN_MAX` when it
/// arrived whole, but disconnected the peer when a read split it before its end.
#[test]
fn a_reply_line_past_the_line_limit_is_garbage_however_it_arrives() {
    use ringcache::cluster::wire::{scan_reply, Scan, REPLY_LINE_LEN_MAX};
    let mut reply = b"SERVER_ERROR out of memory".to_vec();
    reply.resize(REPLY_LINE_LEN_MAX + 10, b' ');
    reply.extend_from_slice(b"\r\nMN\r\n");
    assert!(matches!(scan_reply(&reply), Scan::Garbage(_)));
    assert!(matches!(
        scan_reply(&reply[..REPLY_LINE_LEN_MAX + 1]),
        Scan::Garbage(_)
    ));
    let mut longest = b"SERVER_ERROR out of memory".to_vec();
    longest.resize(REPLY_LINE_LEN_MAX - 1, b' ');
    longest.extend_from_slice(b"\r\nMN\r\n");
    assert_eq!(
        scan_reply(&longest),
        Scan::Reply {
            body: REPLY_LINE_LEN_MAX + 1,
            used: REPLY_LINE_LEN_MAX + 5
        }
    );
}

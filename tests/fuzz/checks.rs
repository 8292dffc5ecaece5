//! The protocol rules the parser fuzz targets assert (pure: bytes in, panics on
//! a broken rule). The libFuzzer binaries in `targets/` call one function each;
//! `tests/fuzz_parsers.rs` runs the same functions over seeded mutations of
//! [`Target::seeds`] in the normal test suite.
//!
//! Each check takes any bytes. Beyond "does not panic", it asserts what callers
//! rely on: a parser never consumes more than it was given; a request that
//! parses parses the same from exactly its own bytes and with more bytes after
//! it; every prefix of it is `Incomplete` (never an error); what an encoder
//! writes parses back to what was encoded; what decodes re-encodes to something
//! that decodes to the same value.

use ringcache::cluster::codec;
use ringcache::cluster::config::{self, ClusterConfig};
use ringcache::cluster::wire::{self, PeerLine, PeerMode, RecoverWhat, Scan};
use ringcache::consensus::{Body, Message};
use ringcache::limits::{BINARY_KEY_LEN_MAX, KEY_LEN_MAX, LINE_LEN_MAX};
use ringcache::protocol::meta::{self, MetaCommand};
use ringcache::protocol::{binary, text, ParseLimits};

/// One fuzz target: its name (the libFuzzer binary and corpus folder), its
/// check, and valid inputs to start mutating from.
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "text",
        check: text,
        seeds: text_seeds,
    },
    Target {
        name: "meta",
        check: meta,
        seeds: meta_seeds,
    },
    Target {
        name: "binary",
        check: binary,
        seeds: binary_seeds,
    },
    Target {
        name: "peer_wire",
        check: peer_wire,
        seeds: peer_wire_seeds,
    },
    Target {
        name: "cluster_file",
        check: cluster_file,
        seeds: cluster_file_seeds,
    },
    Target {
        name: "consensus_codec",
        check: consensus_codec,
        seeds: consensus_codec_seeds,
    },
];

/// Bytes appended to a parsed request to show that what follows it changes nothing.
const TRAILER: &[u8] = b"get more\r\nset k 0 0 1\r\nx\r\n\x80\n";

/// Where to cut a request of `len` bytes to feed a prefix of it: memcached's
/// test splits (1, 2, 5, 10, 100... bytes), just past the line limits, and the
/// last few bytes.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    [
        0,
        1,
        2,
        5,
        10,
        24,
        100,
        1000,
        LINE_LEN_MAX + 1,
        wire::REPLY_LINE_LEN_MAX + 1,
    ]
    .into_iter()
    .chain((1..=3).map(move |back| len.saturating_sub(back)))
    .filter(move |&cut| cut < len)
}

fn with_trailer(bytes: &[u8]) -> Vec<u8> {
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(TRAILER);
    longer
}

/// The offset of `part` inside `whole`, which it must borrow from.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    assert!(
        start + part.len() <= whole.len(),
        "a slice outside the buffer"
    );
    start
}

// ---------------------------------------------------------------- text and meta

/// The text parser (`get`, `set`, ..., and the meta commands it hands to
/// `protocol::meta`) on `data` as a stream of pipelined requests.
pub fn text(data: &[u8]) {
    text_stream(data, &limits_from(data));
}

/// The text parser on meta commands: the same rules as [`text`], and base64
/// keys (`b`) decode to what encodes to them.
pub fn meta(data: &[u8]) {
    text_stream(data, &limits_from(data));
    let mut encoded = Vec::new();
    let key = &data[..data.len().min(BINARY_KEY_LEN_MAX - 1)];
    if key.is_empty() {
        return;
    }
    meta::base64_encode(key, &mut encoded);
    let mut decoded = [0u8; BINARY_KEY_LEN_MAX];
    let len = meta::base64_decode(&encoded, &mut decoded);
    assert_eq!(
        &decoded[..len],
        key,
        "base64 of a key does not decode to it"
    );
}

/// A small `-I` now and then, so that "too large" paths are reached with small inputs.
fn limits_from(data: &[u8]) -> ParseLimits {
    match data.first() {
        Some(b'm' | b'g' | b's') | None => ParseLimits::default(),
        Some(&b) => ParseLimits {
            item_size_max_bytes: 1024 + usize::from(b) * 4,
        },
    }
}

/// Parses requests one after another as a connection would, advancing by what
/// each parse consumed (and by what it says to swallow), checking each.
fn text_stream(data: &[u8], limits: &ParseLimits) {
    let mut at = 0;
    while at < data.len() {
        let buf = &data[at..];
        let advance = match text_one(buf, limits) {
            Some(advance) => advance,
            None => return,
        };
        assert!(advance > 0 && advance <= buf.len());
        at += advance;
    }
}

/// Checks one parse at the front of `buf`; returns how far a connection moves
/// on, `None` when it waits for more bytes or closes.
fn text_one(buf: &[u8], limits: &ParseLimits) -> Option<usize> {
    let parsed = text::parse(buf, limits);
    match parsed {
        Ok((request, used)) => {
            assert!(
                used > 0 && used <= buf.len(),
                "used {used} of {}",
                buf.len()
            );
            text_request_fields(&request, buf, used);
            assert_eq!(
                text::parse(&buf[..used], limits),
                parsed,
                "a complete request parses differently from its own bytes"
            );
            let longer = with_trailer(&buf[..used]);
            assert_eq!(
                text::parse(&longer, limits),
                parsed,
                "a complete request parses differently when more bytes follow"
            );
            text_prefixes_incomplete(&buf[..used], limits);
            let swallow = match request {
                text::Request::TooLarge { swallow_bytes, .. } => swallow_bytes,
                text::Request::Meta(m) => m.swallow_bytes,
                _ => 0,
            };
            Some((used + swallow).min(buf.len()))
        }
        Err(text::ParseError::Invalid {
            reply,
            consumed,
            swallow_bytes,
        }) => {
            assert!(consumed > 0 && consumed <= buf.len());
            assert!(
                reply.is_empty() || reply.ends_with(b"\r\n"),
                "a reply that is not a line: {:?}",
                String::from_utf8_lossy(reply)
            );
            assert_eq!(
                text::parse(&buf[..consumed], limits),
                parsed,
                "a rejected request is rejected differently from its own bytes"
            );
            assert_eq!(text::parse(&with_trailer(&buf[..consumed]), limits), parsed);
            text_prefixes_incomplete(&buf[..consumed], limits);
            Some((consumed + swallow_bytes).min(buf.len()))
        }
        Err(text::ParseError::Incomplete) => None,
        Err(text::ParseError::LineTooLong) => {
            assert!(
                buf.len() > LINE_LEN_MAX && !buf.contains(&b'\n'),
                "LineTooLong for {} bytes with a line end in them",
                buf.len()
            );
            None
        }
        Err(text::ParseError::Http) => {
            assert!(buf.contains(&b'\n'), "Http before the line is complete");
            None
        }
    }
}

/// Every prefix of a request that parses (or is rejected) is `Incomplete`:
/// nothing is decided before the request's last byte, whatever the reads' sizes.
/// A prefix with no line end past [`LINE_LEN_MAX`] may be `LineTooLong` instead
/// (memcached closes the connection there too).
fn text_prefixes_incomplete(request: &[u8], limits: &ParseLimits) {
    for cut in cuts(request.len()) {
        let prefix = &request[..cut];
        match text::parse(prefix, limits) {
            Err(text::ParseError::Incomplete) => {}
            Err(text::ParseError::LineTooLong)
                if cut > LINE_LEN_MAX && !prefix.contains(&b'\n') => {}
            other => panic!(
                "the first {cut} of {} bytes parse as {other:?}, not Incomplete",
                request.len()
            ),
        }
    }
}

/// What each request says about the bytes it came from.
fn text_request_fields(request: &text::Request, buf: &[u8], used: usize) {
    use text::Request;
    let key_ok = |key: &[u8]| !key.is_empty() && key.len() <= KEY_LEN_MAX;
    match request {
        Request::Get {
            keys,
            ending: text::GetEnding::End,
            ..
        } => {
            assert!(
                keys.iter().all(key_ok),
                "a get key over {KEY_LEN_MAX} bytes"
            );
        }
        Request::Store { key, data, .. } => {
            assert!(key_ok(key), "a store key of {} bytes", key.len());
            let start = offset_in(buf, data);
            assert_eq!(start + data.len() + 2, used, "data block not last");
            assert_eq!(
                &buf[used - 2..used],
                b"\r\n",
                "data block not ended by \\r\\n"
            );
        }
        Request::TooLarge { key, .. }
        | Request::Delete { key, .. }
        | Request::Arith { key, .. }
        | Request::Touch { key, .. } => {
            assert!(key_ok(key), "a key of {} bytes", key.len());
        }
        Request::Meta(m) => {
            let key = m.key.bytes();
            match m.command {
                MetaCommand::Noop => assert!(key.is_empty()),
                _ => assert!(key_ok(key), "a meta key of {} bytes", key.len()),
            }
            assert!(
                m.flag_tokens().count() <= ringcache::limits::META_TOKENS_MAX,
                "more flags than a meta line may carry"
            );
            if m.command == MetaCommand::Set && m.swallow_bytes == 0 {
                let start = offset_in(buf, m.data);
                assert_eq!(start + m.data.len() + 2, used, "ms data block not last");
            } else {
                assert!(m.data.is_empty(), "data on a request that carries none");
            }
        }
        _ => {}
    }
}

fn text_seeds() -> Vec<Vec<u8>> {
    [
        &b"get foo\r\n"[..],
        b"gets a b c\r\n",
        b"gat 100 a b\r\n",
        b"gats 0 k\r\n",
        b"set foo 0 0 5\r\nhello\r\n",
        b"add k 5 100 3 noreply\r\nabc\r\n",
        b"replace k 0 -1 0\r\n\r\n",
        b"append k 0 0 2\r\nxy\r\n",
        b"prepend k 0 0 2\r\nxy\r\n",
        b"cas k 0 0 1 12345\r\nz\r\n",
        b"set big 0 0 2000000\r\n",
        b"delete k\r\n",
        b"delete k 0 noreply\r\n",
        b"incr n 18446744073709551615\r\n",
        b"decr n 1 noreply\r\n",
        b"touch k 60\r\n",
        b"flush_all 10 noreply\r\n",
        b"version\r\n",
        b"verbosity 1\r\n",
        b"quit\r\n",
        b"shutdown graceful\r\n",
        b"cache_memlimit 64\r\n",
        b"slabs automove 1\r\n",
        b"stats detail dump\r\n",
        b"GET / HTTP/1.1\r\n",
        b"get a\nset b 0 0 1\r\nx\r\nget b\r\n",
        b"\r\n",
        b"set k 0 0 5\r\nhelloXXget k\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

fn meta_seeds() -> Vec<Vec<u8>> {
    [
        &b"mg foo v\r\n"[..],
        b"mg foo s v f t c k O123 q\r\n",
        b"mg Zm9v b v k\r\n",
        b"mg foo T30 N30 R10 v\r\n",
        b"ms foo 5 T0 F7 C99 I\r\nhello\r\n",
        b"ms foo 2 MA q\r\nhi\r\n",
        b"ms Zm9vYmFy 3 b ME E77\r\nabc\r\n",
        b"ms foo S3 T-1\r\nabc\r\n",
        b"md foo q C5 I x\r\n",
        b"ma n MD D5 N0 J10 v t\r\n",
        b"ma n M+ D18446744073709551615\r\n",
        b"mn\r\n",
        b"me foo\r\n",
        b"me Zm9v b\r\n",
        b"ms foo 2000000 T0\r\n",
        b"mg foo v\r\nmn\r\nms k 1 q\r\nx\r\nmn\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

// ---------------------------------------------------------------------- binary

/// The binary parser on `data` as a stream of pipelined requests.
pub fn binary(data: &[u8]) {
    sasl(data);
    let limits = limits_from(data);
    let mut at = 0;
    while at < data.len() {
        let buf = &data[at..];
        let parsed = binary::parse(buf, &limits);
        match parsed {
            Ok((request, used)) => {
                let body_len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let stated = binary::HEADER_BYTES + body_len as usize;
                let swallow = match request.command {
                    binary::Command::TooLarge { swallow_bytes, .. }
                    | binary::Command::Unknown { swallow_bytes } => swallow_bytes,
                    _ => 0,
                };
                assert!(
                    used <= buf.len() && used <= stated,
                    "used {used} of {stated}"
                );
                match request.command {
                    binary::Command::Store { .. } => assert_eq!(used, stated),
                    // What is not parsed is swallowed, except that memcached skips
                    // nothing for a body length that is negative as an `int`.
                    _ if swallow > 0 => assert_eq!(used + swallow, stated),
                    // Like memcached, other commands read their extras and key; a
                    // longer body is left to be read as the next packet.
                    _ => {}
                }
                assert_eq!(request.header.opcode, buf[1]);
                assert_eq!(
                    request.header.opaque,
                    u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]])
                );
                if let Some(key) = request.command.key() {
                    assert!(
                        key.len() <= KEY_LEN_MAX,
                        "a binary key of {} bytes",
                        key.len()
                    );
                    offset_in(buf, key);
                }
                assert_eq!(binary::parse(&buf[..used], &limits), parsed);
                assert_eq!(binary::parse(&with_trailer(&buf[..used]), &limits), parsed);
                for cut in cuts(used) {
                    assert_eq!(
                        binary::parse(&buf[..cut], &limits),
                        Err(binary::ParseError::Incomplete),
                        "the first {cut} of {used} bytes are not Incomplete"
                    );
                }
                at += (used + swallow).min(buf.len());
            }
            Err(binary::ParseError::Incomplete) => return,
            Err(binary::ParseError::BadMagic) => {
                assert_ne!(buf[0], binary::REQUEST_MAGIC);
                return;
            }
            Err(binary::ParseError::Fatal { header, .. }) => {
                assert!(buf.len() >= binary::HEADER_BYTES);
                assert_eq!(header.opcode, buf[1]);
                assert_eq!(binary::parse(&with_trailer(buf), &limits), parsed);
                return;
            }
        }
    }
}

/// A binary request: header fields, then extras, key and value.
fn binary_request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut out = vec![binary::REQUEST_MAGIC, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

fn binary_seeds() -> Vec<Vec<u8>> {
    use binary::opcode::*;
    let store_extras = [0, 0, 0, 7, 0, 0, 0, 100];
    let arith_extras = [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    let ttl = [0, 0, 0, 60];
    let mut seeds = vec![
        binary_request(GET, &[], b"foo", &[], 0),
        binary_request(GETKQ, &[], b"foo", &[], 0),
        binary_request(SET, &store_extras, b"foo", b"hello", 0),
        binary_request(ADDQ, &store_extras, b"foo", b"hello", 0),
        binary_request(REPLACE, &store_extras, b"foo", b"v", 42),
        binary_request(APPEND, &[], b"foo", b"tail", 0),
        binary_request(DELETE, &[], b"foo", &[], 0),
        binary_request(INCREMENT, &arith_extras, b"n", &[], 0),
        binary_request(DECREMENTQ, &arith_extras, b"n", &[], 0),
        binary_request(TOUCH, &ttl, b"foo", &[], 0),
        binary_request(GATK, &ttl, b"foo", &[], 0),
        binary_request(FLUSH, &ttl, &[], &[], 0),
        binary_request(VERBOSITY, &[0, 0, 0, 1], &[], &[], 0),
        binary_request(STAT, &[], b"items", &[], 0),
        binary_request(NOOP, &[], &[], &[], 0),
        binary_request(VERSION, &[], &[], &[], 0),
        binary_request(QUIT, &[], &[], &[], 0),
        binary_request(SASL_LIST_MECHS, &[], &[], &[], 0),
    ];
    let mut pipeline = binary_request(GETQ, &[], b"a", &[], 0);
    pipeline.extend(binary_request(SETQ, &store_extras, b"b", b"x", 0));
    pipeline.extend(binary_request(NOOP, &[], &[], &[], 0));
    seeds.push(pipeline);
    seeds
}

// ------------------------------------------------------------------- peer wire

/// The node-to-node wire: `rc` lines, reply scanning (text and binary), and
/// replicated items and removals read back by the text parser.
pub fn peer_wire(data: &[u8]) {
    peer_line(data);
    reply_scan(data, wire::scan_reply);
    reply_scan(data, wire::scan_binary_reply);
    frames(data);
    let mut input = Unstructured(data);
    peer_line_round_trip(&mut input);
    replicated_item_round_trip(&mut input);
}

/// The frames members send after the handshake (`cluster::seal`): whatever
/// arrives opens to a frame no longer than what is there and than the bound,
/// or to `Incomplete`, or fails; what one end seals, cut anywhere, the other
/// opens to the same bytes; and a sealed frame with any one byte changed fails.
fn frames(data: &[u8]) {
    use ringcache::cluster::auth::{Secret, NONCE_BYTES, SECRET_BYTES_MIN};
    use ringcache::cluster::seal::{
        End, Opened, Sealing, FRAME_LEN_BYTES, FRAME_MAX_BYTES, FRAME_OVERHEAD_BYTES,
        FRAME_PAYLOAD_MAX_BYTES,
    };
    let secret = Secret::from_bytes(&[7; SECRET_BYTES_MIN]);
    let pair = || {
        let (c, s) = ([1; NONCE_BYTES], [2; NONCE_BYTES]);
        (
            Sealing::new(&secret, &c, &s, End::Client),
            Sealing::new(&secret, &c, &s, End::Server),
        )
    };
    let (mut client, mut server) = pair();
    if let Ok(Opened::Frame { len, used }) = server.receive.open(data) {
        assert!(used <= data.len() && used <= FRAME_MAX_BYTES && len < used);
    }
    let mut sealed = Vec::new();
    client.send.seal(data, &mut sealed);
    let first_len = data.len().min(FRAME_PAYLOAD_MAX_BYTES);
    if !data.is_empty() {
        for cut in cuts(first_len + FRAME_OVERHEAD_BYTES) {
            let (_, mut fresh) = pair();
            assert_eq!(fresh.receive.open(&sealed[..cut]), Ok(Opened::Incomplete));
        }
    }
    let mut opened = Vec::new();
    let mut at = 0;
    while at < sealed.len() {
        let frame = &sealed[at..];
        let Ok(Opened::Frame { len, used }) = server.receive.open(frame) else {
            panic!("a sealed frame does not open");
        };
        opened.extend_from_slice(&frame[FRAME_LEN_BYTES..FRAME_LEN_BYTES + len]);
        at += used;
    }
    assert_eq!(opened, data, "sealed and opened, the bytes differ");
    if !sealed.is_empty() {
        let i = data.first().map_or(0, |&b| usize::from(b)) % sealed.len();
        let mut altered = sealed.clone();
        altered[i] ^= 1 << (data.len() % 8);
        let (_, mut fresh) = pair();
        assert!(
            !matches!(fresh.receive.open(&altered), Ok(Opened::Frame { .. })),
            "a frame with byte {i} changed opens"
        );
    }
}

fn peer_line(buf: &[u8]) {
    let parsed = wire::parse_peer_line(buf);
    match parsed {
        Ok(Some((line, used))) => {
            assert!(used > 0 && used <= buf.len() && buf[used - 1] == b'\n');
            assert_eq!(wire::parse_peer_line(&buf[..used]), parsed);
            assert_eq!(wire::parse_peer_line(&with_trailer(&buf[..used])), parsed);
            for cut in cuts(used) {
                assert_eq!(
                    wire::parse_peer_line(&buf[..cut]),
                    Ok(None),
                    "the first {cut} bytes of an rc line of {used} are not incomplete"
                );
            }
            let encoded = encode_peer_line(line);
            assert_eq!(
                wire::parse_peer_line(&encoded),
                Ok(Some((line, peer_line_len(&encoded)))),
                "a parsed rc line re-encoded reads back differently"
            );
        }
        Ok(None) => assert!(!buf.contains(&b'\n')),
        Err(used) => {
            assert!(used > 0 && used <= buf.len());
            if buf[used - 1] != b'\n' {
                // No line end within REPLY_LINE_LEN_MAX: what is buffered is dropped.
                assert!(used == buf.len() && used > wire::REPLY_LINE_LEN_MAX);
                return;
            }
            assert_eq!(wire::parse_peer_line(&with_trailer(&buf[..used])), parsed);
            for cut in cuts(used) {
                match wire::parse_peer_line(&buf[..cut]) {
                    Ok(None) => {}
                    Err(dropped) if dropped == cut && cut > wire::REPLY_LINE_LEN_MAX => {}
                    other => panic!("the first {cut} bytes of a bad rc line parse as {other:?}"),
                }
            }
        }
    }
}

/// The bytes of the `rc` line itself (encoders append an `mn` to some).
fn peer_line_len(encoded: &[u8]) -> usize {
    encoded
        .iter()
        .position(|&b| b == b'\n')
        .expect("an rc line ends")
        + 1
}

fn encode_peer_line(line: PeerLine) -> Vec<u8> {
    let mut out = Vec::new();
    match line {
        PeerLine::Mode { mode, epoch } => wire::encode_mode(mode, epoch, &mut out),
        PeerLine::Recover { epoch, node, what } => {
            wire::encode_recover(epoch, node, what, &mut out)
        }
        PeerLine::Exchange { epoch, node } => wire::encode_exchange(epoch, node, &mut out),
    }
    out
}

fn peer_line_round_trip(input: &mut Unstructured) {
    let epoch = input.u64();
    let node = input.u32();
    let line = match input.byte() % 6 {
        0 => PeerLine::Mode {
            mode: PeerMode::Forward,
            epoch,
        },
        1 => PeerLine::Mode {
            mode: PeerMode::Replica,
            epoch,
        },
        2 => PeerLine::Mode {
            mode: PeerMode::Copy(node),
            epoch,
        },
        3 => PeerLine::Mode {
            mode: PeerMode::Merge(node),
            epoch,
        },
        4 => PeerLine::Recover {
            epoch,
            node,
            what: if input.byte().is_multiple_of(2) {
                RecoverWhat::Hints
            } else {
                RecoverWhat::All
            },
        },
        _ => PeerLine::Exchange { epoch, node },
    };
    let encoded = encode_peer_line(line);
    let len = peer_line_len(&encoded);
    assert_eq!(
        wire::parse_peer_line(&encoded),
        Ok(Some((line, len))),
        "an encoded rc line reads back differently"
    );
    if len < encoded.len() {
        assert_eq!(
            text::parse(&encoded[len..], &ParseLimits::default()),
            Ok((
                text::Request::Meta(meta_noop(&encoded[len..])),
                encoded.len() - len
            ))
        );
    }
}

/// The parsed `mn` that follows an encoded line or item.
fn meta_noop(mn: &[u8]) -> meta::MetaRequest<'_> {
    match text::parse(mn, &ParseLimits::default()) {
        Ok((text::Request::Meta(m), _)) if m.command == MetaCommand::Noop => m,
        other => panic!("not an mn: {other:?}"),
    }
}

/// What a primary sends a replica (`ms`/`md` and `mn`) is read by the replica's
/// text parser as exactly the item or removal that was encoded.
fn replicated_item_round_trip(input: &mut Unstructured) {
    // Keys the meta protocol carries: plain up to KEY_LEN_MAX, and in base64 (a
    // key with a space or control byte) while the base64 form's groups of
    // three fit BINARY_KEY_LEN_MAX, as memcached counts them: 186 bytes.
    // Longer keys with such a byte are not carried (a known limit, not checked).
    let key_len = 1 + usize::from(input.byte()) % KEY_LEN_MAX;
    let key = input.bytes(key_len);
    let plain = key.iter().all(|&c| c > b' ' && c != 0x7f);
    if key.is_empty() || (!plain && key.len().div_ceil(3) * 3 > BINARY_KEY_LEN_MAX) {
        return;
    }
    let flags = input.u32();
    // An expiry time is a 32-bit Unix time: `T` is read as memcached reads it,
    // as an `int32`.
    let exptime = if input.byte().is_multiple_of(2) {
        None
    } else {
        Some(i64::from(input.u32() as i32))
    };
    let cas = input.u64();
    let value_len = usize::from(input.byte());
    let value = input.bytes(value_len);
    let limits = ParseLimits::default();

    let mut encoded = Vec::new();
    wire::encode_item(key, value, flags, exptime, cas, &mut encoded);
    let (request, used) = match text::parse(&encoded, &limits) {
        Ok((text::Request::Meta(m), used)) => (m, used),
        other => panic!(
            "an encoded item does not parse as ms: {other:?} from {:?}",
            String::from_utf8_lossy(&encoded)
        ),
    };
    assert_eq!(request.command, MetaCommand::Set);
    assert_eq!(request.key.bytes(), key);
    assert_eq!(request.data, value);
    assert_eq!(request.flags.client_flags, flags);
    assert_eq!(request.flags.ttl, Some(exptime.unwrap_or(0)));
    assert_eq!(request.flags.new_cas, Some(cas));
    assert_eq!(request.flags.set_mode, meta::SetMode::Set);
    assert!(request.flags.quiet);
    meta_noop(&encoded[used..]);

    encoded.clear();
    wire::encode_removal(key, cas, &mut encoded);
    let (request, used) = match text::parse(&encoded, &limits) {
        Ok((text::Request::Meta(m), used)) => (m, used),
        other => panic!("an encoded removal does not parse as md: {other:?}"),
    };
    assert_eq!(request.command, MetaCommand::Delete);
    assert_eq!(request.key.bytes(), key);
    assert_eq!(request.flags.new_cas, Some(cas));
    assert!(request.flags.quiet);
    meta_noop(&encoded[used..]);
}

/// The rules a reply scanner keeps: a reply ends with its `MN`, stays the same
/// reply with more bytes after it, and is `Incomplete` in every prefix.
fn reply_scan(buf: &[u8], scan: fn(&[u8]) -> Scan) {
    let scanned = scan(buf);
    if let Scan::Reply { body, used } = scanned {
        assert!(body < used && used <= buf.len(), "body {body}, used {used}");
        assert_eq!(scan(&buf[..used]), scanned);
        assert_eq!(scan(&with_trailer(&buf[..used])), scanned);
        for cut in cuts(used) {
            assert_eq!(
                scan(&buf[..cut]),
                Scan::Incomplete,
                "the first {cut} bytes of a {used}-byte reply are not incomplete"
            );
        }
    }
}

fn peer_wire_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [
        &b"rc fwd 3\r\n"[..],
        b"rc rep 18446744073709551615\r\n",
        b"rc copy 7 2\r\n",
        b"rc merge 7 4294967295\r\n",
        b"rc exchange 9 1\r\nmn\r\n",
        b"rc recover 9 3 hints\r\nmn\r\n",
        b"rc recover 9 3 all\r\n",
        b"VALUE k 0 5\r\nhello\r\nEND\r\nMN\r\n",
        b"VALUE k 7 2 99\r\nhi\r\nVALUE j 0 0\r\n\r\nEND\r\nMN\r\n",
        b"VA 2 t f\r\nhi\r\nHD\r\nNF\r\nEN\r\nMN\r\n",
        b"STORED\r\nMN\r\n",
        b"12345\r\nMN\r\n",
        b"SERVER_ERROR out of memory\r\nMN\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    let mut response = vec![0u8; 24];
    response[0] = binary::RESPONSE_MAGIC;
    let mut noop = response.clone();
    noop[1] = binary::opcode::NOOP;
    response[11] = 3;
    response.extend_from_slice(b"abc");
    response.extend_from_slice(&noop);
    seeds.push(response);
    let mut item = Vec::new();
    wire::encode_item(b"key", b"value", 3, Some(1_700_000_000), 42, &mut item);
    wire::encode_removal(b"a key", 43, &mut item);
    seeds.push(item);
    seeds
}

/// Reads values off the front of fuzz input; zeros once it runs out.
struct Unstructured<'a>(&'a [u8]);

impl<'a> Unstructured<'a> {
    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn byte(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn u32(&mut self) -> u32 {
        let mut word = [0; 4];
        let taken = self.bytes(4);
        word[..taken.len()].copy_from_slice(taken);
        u32::from_le_bytes(word)
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
}

/// Binary SASL before a connection logs in (`-S`): a request is used whole
/// or not at all, every prefix of one is `Incomplete`, the same bytes give the
/// same answer with more after them, an answer echoes the opaque, and only
/// the right user and password log in.
fn sasl(data: &[u8]) {
    use ringcache::protocol::ascii_auth::AuthFile;
    use ringcache::protocol::sasl::{step, Step};
    let users = AuthFile::parse(b"alice:wonderland\n").expect("a users file");
    let mut at = 0;
    while at < data.len() {
        let buf = &data[at..];
        let stepped = step(buf, &users, b"1.6.18");
        let reply = match &stepped {
            Step::Incomplete => return,
            Step::Close { reply } => reply,
            Step::Answer { reply, .. } => reply,
        };
        if !reply.is_empty() {
            assert_eq!(reply[0], binary::RESPONSE_MAGIC);
            assert_eq!(reply[1], buf[1], "the answer names another opcode");
            assert_eq!(reply[12..16], buf[12..16], "the opaque is not echoed");
        }
        let Step::Answer {
            used,
            authenticated,
            ..
        } = stepped
        else {
            return;
        };
        assert!(used >= binary::HEADER_BYTES && used <= buf.len());
        assert_eq!(
            step(&with_trailer(&buf[..used]), &users, b"1.6.18"),
            stepped
        );
        for cut in cuts(used) {
            assert_eq!(step(&buf[..cut], &users, b"1.6.18"), Step::Incomplete);
        }
        if authenticated {
            let body = &buf[binary::HEADER_BYTES..used];
            assert!(
                body.starts_with(b"PLAIN") && body.ends_with(b"\0alice\0wonderland"),
                "logged in with {body:?}"
            );
            return;
        }
        at += used;
    }
}

// ---------------------------------------------------------------- cluster file

/// The cluster file: a file that reads as a configuration is written back by
/// `to_file_text` as a file that reads as the same configuration, and writing
/// that again gives the same text.
pub fn cluster_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = config::secret_file_of(&text);
    let spec = config::parse_cluster_file(&text);
    let config = ClusterConfig::from_file_text(&text);
    if config.is_ok() {
        assert!(
            spec.is_ok(),
            "a file reads as a configuration but not as a spec"
        );
    }
    let Ok(config) = config else { return };
    let written = config.to_file_text();
    let read_back = ClusterConfig::from_file_text(&written)
        .unwrap_or_else(|e| panic!("a written configuration does not read back: {e}\n{written}"));
    assert_eq!(
        read_back, config,
        "a written configuration reads back differently"
    );
    assert_eq!(read_back.to_file_text(), written, "writing is not stable");
}

fn cluster_file_seeds() -> Vec<Vec<u8>> {
    [
        &b"replicas = 1\n\n[[node]]\nid = 1\naddr = \"127.0.0.1:11211\"\nshards = [\"127.0.0.1:11300\"]\n"[..],
        b"# three nodes\nepoch = 4\nreplicas = 2\nvnodes_per_shard = 160\nwrite_ack = \"quorum\"\n\
          acceptors = [1, 2, 3]\nnext_node_id = 9\nsecret_file = \"/etc/ringcache/secret\"\n\n\
          [[node]]\nid = 1\naddr = \"10.0.0.1:11211\"\nshards = [\"10.0.0.1:11300\", \"10.0.0.1:11301\"]\nstate = \"up\"\n\n\
          [[node]]\nid = 2 # second\naddr = \"10.0.0.2:11211\"\nshards = [\"10.0.0.2:11300\", \"10.0.0.2:11301\"]\nstate = \"down\"\n\n\
          [[node]]\nid = 3\naddr = \"[::1]:11211\"\nshards = [\"[::1]:11300\", \"[::1]:11301\"]\nstate = \"joining\"\n",
        b"write_ack = \"one\"\nreplicas = 1\n[[node]]\nid = 5\naddr = \"cache-1.example:11211\"\nshards = [\"cache-1.example:11300\"]\nstate = \"leaving\"\n",
        b"write_ack = \"all\"\nreplicas = 3\nacceptors = [1]\n[[node]]\nid = 1\naddr = \"127.0.0.1:1\"\nshards = [\n  \"127.0.0.1:2\",\n]\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

// ------------------------------------------------------------- consensus codec

/// The consensus codec: message lines, durable files and configuration fields.
pub fn consensus_codec(data: &[u8]) {
    message_line(data);
    durable_file(data);
    if let Ok(config) = codec::decode_config(data) {
        let mut field = Vec::new();
        codec::encode_config(&config, &mut field);
        let again = codec::decode_config(&field).expect("an encoded configuration decodes");
        assert_eq!(
            again, config,
            "a configuration field reads back differently"
        );
    }
}

fn message_line(buf: &[u8]) {
    let parsed = codec::parse_message(buf);
    match &parsed {
        Ok((message, used)) => {
            let used = *used;
            assert!(used >= 2 && used <= buf.len() && buf[used - 1] == b'\n');
            assert_eq!(
                codec::decode_message_line(&buf[..used - 2]).as_ref(),
                Ok(message),
                "a line decodes differently with and without its framing"
            );
            assert_eq!(codec::parse_message(&with_trailer(&buf[..used])), parsed);
            for cut in cuts(used) {
                assert_eq!(
                    codec::parse_message(&buf[..cut]),
                    Err(codec::MessageError::Incomplete),
                    "the first {cut} bytes of a {used}-byte message are not incomplete"
                );
            }
            let mut encoded = Vec::new();
            codec::encode_message(message, &mut encoded);
            assert_eq!(
                codec::parse_message(&encoded).as_ref(),
                Ok(&(message.clone(), encoded.len())),
                "a decoded message re-encoded reads back differently"
            );
            if !carries_config(message) {
                // The encoding is unique (see the codec's docs).
                assert_eq!(
                    encoded,
                    &buf[..used],
                    "a decoded message re-encodes to other bytes"
                );
            }
        }
        Err(codec::MessageError::Incomplete) => assert!(!buf.contains(&b'\n')),
        Err(_) => {}
    }
}

fn carries_config(message: &Message<ClusterConfig>) -> bool {
    match &message.body {
        Body::Promise { accepted, .. } => accepted.is_some(),
        Body::Accept { .. } | Body::Decided { .. } => true,
        Body::CatchUpReply { values } => !values.is_empty(),
        _ => false,
    }
}

/// A durable file that decodes re-encodes to one that decodes to the same state,
/// and with any one byte changed it is refused. Inputs whose checksum alone is
/// wrong are decoded again with the checksum the decoder computed, so that the
/// fuzzer reaches past the checksum whatever function it is.
fn durable_file(data: &[u8]) {
    let decoded = match codec::decode_durable(data) {
        Err(codec::DurableError::ChecksumMismatch { computed, .. }) => {
            let Some(line_start) = checksum_line_start(data) else {
                return;
            };
            let mut fixed = data[..line_start].to_vec();
            fixed.extend_from_slice(format!("checksum {computed:016x}\n").as_bytes());
            durable_file_decoded(&fixed);
            return;
        }
        _ => data,
    };
    durable_file_decoded(decoded);
}

fn checksum_line_start(data: &[u8]) -> Option<usize> {
    let body = data.strip_suffix(b"\n")?;
    let start = body
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    body[start..].starts_with(b"checksum ").then_some(start)
}

fn durable_file_decoded(bytes: &[u8]) {
    let Ok(durable) = codec::decode_durable(bytes) else {
        return;
    };
    let encoded = codec::encode_durable(&durable);
    assert_eq!(
        codec::decode_durable(&encoded).as_ref(),
        Ok(&durable),
        "a decoded durable file re-encoded reads back differently"
    );
    // One byte changed anywhere is refused: take the byte the fuzzer put in the
    // middle of the input, changed to the one after it.
    let at = bytes.len() / 2;
    let mut damaged = bytes.to_vec();
    damaged[at] = damaged[at].wrapping_add(1 + bytes[0] % 255);
    assert!(
        codec::decode_durable(&damaged).is_err(),
        "a durable file with byte {at} changed still decodes"
    );
}

fn consensus_codec_seeds() -> Vec<Vec<u8>> {
    use ringcache::consensus::{Accepted, Ballot, Durable};
    let config = |epoch: u64, nodes: u32| {
        let mut text = format!("epoch = {epoch}\nreplicas = 1\nacceptors = [1]\n");
        for id in 1..=nodes {
            text.push_str(&format!(
                "[[node]]\nid = {id}\naddr = \"127.0.0.{id}:11211\"\nshards = [\"127.0.0.{id}:11300\"]\n"
            ));
        }
        ClusterConfig::from_file_text(&text).expect("a seed configuration")
    };
    let ballot = Ballot { round: 3, node: 2 };
    let bodies = vec![
        Body::Prepare { ballot, epoch: 4 },
        Body::Promise {
            ballot,
            epoch: 4,
            accepted: None,
        },
        Body::Promise {
            ballot,
            epoch: 4,
            accepted: Some((Ballot { round: 1, node: 1 }, config(4, 2))),
        },
        Body::Accept {
            ballot,
            epoch: 4,
            value: config(4, 3),
        },
        Body::Accepted { ballot, epoch: 4 },
        Body::Nack {
            ballot,
            promised: Ballot { round: 9, node: 3 },
        },
        Body::Decided {
            epoch: 4,
            value: config(4, 1),
        },
        Body::Heartbeat,
        Body::CatchUp { from_epoch: 2 },
        Body::CatchUpReply {
            values: vec![(2, config(2, 1)), (3, config(3, 2))],
        },
    ];
    let mut seeds: Vec<Vec<u8>> = bodies
        .into_iter()
        .map(|body| {
            let mut line = Vec::new();
            let message = Message {
                from: 1,
                to: 2,
                decided_epoch: 3,
                body,
            };
            codec::encode_message(&message, &mut line);
            line
        })
        .collect();
    seeds.push(codec::encode_durable(&Durable {
        node_id: 2,
        promised: ballot,
        accepted: Some(Accepted {
            ballot,
            epoch: 5,
            value: config(5, 2),
        }),
        round_used: 3,
        decided: vec![(3, config(3, 1)), (4, config(4, 2))],
    }));
    seeds.push(codec::encode_durable(&Durable {
        node_id: 1,
        promised: Ballot::ZERO,
        accepted: None,
        round_used: 0,
        decided: vec![(1, config(1, 1))],
    }));
    let mut field = Vec::new();
    codec::encode_config(&config(7, 2), &mut field);
    seeds.push(field);
    seeds
}

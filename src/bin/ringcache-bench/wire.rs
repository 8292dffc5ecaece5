//! Requests written in place and replies measured, in memcached's text, meta
//! and binary protocols, and the ketama routing of keys (pure).

use crate::args::{Args, Plan, Protocol};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Set,
}

/// How one reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Miss,
    Stored,
    /// Any other reply: `NOT_STORED`, `SERVER_ERROR ...`, `ERROR`, ...
    Error,
}

/// Writes `n` in decimal, zero-padded to `digits`, without allocating.
pub(crate) fn put_decimal(out: &mut Vec<u8>, mut n: u64, digits: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    for _ in len..digits {
        out.push(b'0');
    }
    out.extend_from_slice(&tmp[i..]);
}

pub(crate) fn put_key(out: &mut Vec<u8>, plan: &Plan, id: u64) {
    let id = plan.key_ids.as_ref().map_or(id, |ids| ids[id as usize]);
    out.extend_from_slice(&plan.key_prefix);
    put_decimal(out, id, plan.key_digits);
}

/// The first `--key-space` key ids whose keys `endpoint` owns on the ketama ring
/// of `--ring` (the ring ringcache builds from its --shard-ports endpoints).
pub(crate) fn owned_key_ids(args: &Args, endpoint: &str) -> Result<Vec<u64>, String> {
    use ringcache::cluster::ring::{ketama_name, Ring, POINTS_PER_SERVER_DEFAULT};
    let split = |e: &str| -> Result<(String, u16), String> {
        let (host, port) = e.rsplit_once(':').ok_or(format!("{e}: not host:port"))?;
        let port = port.parse().map_err(|_| format!("{e}: bad port"))?;
        Ok((host.to_string(), port))
    };
    let names = args
        .ring
        .iter()
        .map(|e| split(e).map(|(h, p)| ketama_name(&h, p)))
        .collect::<Result<Vec<_>, _>>()?;
    let (host, port) = split(endpoint)?;
    let wanted = names
        .iter()
        .position(|n| *n == ketama_name(&host, port))
        .ok_or(format!("--owned-by {endpoint} is not in --ring"))?;
    let ring = Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT);
    let mut ids = Vec::with_capacity(args.key_space as usize);
    let mut key = Vec::new();
    let mut id = 0u64;
    while (ids.len() as u64) < args.key_space {
        key.clear();
        key.extend_from_slice(args.key_prefix.as_bytes());
        put_decimal(&mut key, id, args.key_digits);
        if ring.owner(&key).shard as usize == wanted {
            ids.push(id);
        }
        id += 1;
    }
    Ok(ids)
}

/// The ketama ring of the --ketama endpoints, as ringcache builds it from a
/// cluster's shard endpoints (`cluster::placement`): the same names, the same
/// points per endpoint. An owner's `shard` is the endpoint's index in the list.
/// (Two endpoints' points that hash alike sort by that index, where the nodes
/// sort them by node id and shard: list endpoints in that order to agree even
/// on such ties.)
pub(crate) fn ketama_ring(endpoints: &[String]) -> Result<ringcache::cluster::ring::Ring, String> {
    use ringcache::cluster::config::Endpoint;
    use ringcache::cluster::ring::{Ring, POINTS_PER_SERVER_DEFAULT};
    if endpoints.len() > u16::MAX as usize {
        return Err(format!("--ketama: at most {} endpoints", u16::MAX));
    }
    let mut names = Vec::with_capacity(endpoints.len());
    for text in endpoints {
        let endpoint = Endpoint::parse(text).map_err(|e| format!("--ketama: {e}"))?;
        let name = endpoint.ketama_name();
        if names.contains(&name) {
            return Err(format!("--ketama: {text} is listed twice"));
        }
        names.push(name);
    }
    Ok(Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT))
}

/// For each key n of the key space, the index of the endpoint owning it on `ring`.
pub(crate) fn route_table(plan: &Plan, ring: &ringcache::cluster::ring::Ring) -> Vec<u16> {
    let mut key = Vec::with_capacity(plan.key_prefix.len() + 20);
    (0..plan.key_space)
        .map(|n| {
            key.clear();
            put_key(&mut key, plan, n);
            ring.owner(&key).shard as u16
        })
        .collect()
}

/// Appends one request to `out` (whose capacity was reserved before the run).
pub(crate) fn put_request(out: &mut Vec<u8>, plan: &Plan, op: Op, id: u64, value: &[u8]) {
    match (plan.protocol, op) {
        (Protocol::Text, Op::Get) => {
            out.extend_from_slice(b"get ");
            put_key(out, plan, id);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Text, Op::Set) => {
            out.extend_from_slice(b"set ");
            put_key(out, plan, id);
            out.extend_from_slice(b" 0 ");
            put_decimal(out, plan.expiry as u64, 0);
            out.push(b' ');
            put_decimal(out, value.len() as u64, 0);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Meta, Op::Get) => {
            out.extend_from_slice(b"mg ");
            put_key(out, plan, id);
            out.extend_from_slice(b" v\r\n");
        }
        (Protocol::Meta, Op::Set) => {
            out.extend_from_slice(b"ms ");
            put_key(out, plan, id);
            out.push(b' ');
            put_decimal(out, value.len() as u64, 0);
            out.extend_from_slice(b" T");
            put_decimal(out, plan.expiry as u64, 0);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Binary, op) => {
            // Header (24 bytes), extras (a set's flags and expiry), key, value.
            let start = out.len();
            out.extend_from_slice(&[0u8; BINARY_HEADER_LEN]);
            out[start] = BINARY_REQUEST_MAGIC;
            let extras: &[u8] = match op {
                Op::Get => &[],
                Op::Set => &(plan.expiry as u64).to_be_bytes(), // flags 0, then expiry
            };
            out.extend_from_slice(extras);
            let key_start = out.len();
            put_key(out, plan, id);
            let key_len = out.len() - key_start;
            if op == Op::Set {
                out.extend_from_slice(value);
            }
            let body = (out.len() - start - BINARY_HEADER_LEN) as u32;
            let header = &mut out[start..start + BINARY_HEADER_LEN];
            header[1] = match op {
                Op::Get => 0x00,
                Op::Set => 0x01,
            };
            header[2..4].copy_from_slice(&(key_len as u16).to_be_bytes());
            header[4] = extras.len() as u8;
            header[8..12].copy_from_slice(&body.to_be_bytes());
        }
    }
}

/// Binary protocol framing: every request and response starts with a 24-byte
/// header; requests carry magic 0x80, responses 0x81.
pub(crate) const BINARY_HEADER_LEN: usize = 24;
pub(crate) const BINARY_REQUEST_MAGIC: u8 = 0x80;
pub(crate) const BINARY_RESPONSE_MAGIC: u8 = 0x81;

/// The last space-separated token of a line (without `\r\n`) as a number.
pub(crate) fn last_number(line: &[u8]) -> Option<usize> {
    let start = line.iter().rposition(|&b| b == b' ')? + 1;
    parse_usize(&line[start..])
}

pub(crate) fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as usize;
    }
    Some(n)
}

/// Measures one reply at the front of `buf`: `None` while it is incomplete, else
/// its length and outcome. Replies are measured, never copied.
pub(crate) fn measure_reply(buf: &[u8], op: Op, protocol: Protocol) -> Option<(usize, Outcome)> {
    if protocol == Protocol::Binary {
        let header = buf.get(..BINARY_HEADER_LEN)?;
        let body = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let total = BINARY_HEADER_LEN + body;
        if buf.len() < total {
            return None;
        }
        let status = u16::from_be_bytes([header[6], header[7]]);
        let outcome = match (header[0] == BINARY_RESPONSE_MAGIC, status, op) {
            (true, 0, Op::Get) => Outcome::Hit,
            (true, 1, Op::Get) => Outcome::Miss,
            (true, 0, Op::Set) => Outcome::Stored,
            _ => Outcome::Error,
        };
        return Some((total, outcome));
    }
    let nl = memchr::memchr(b'\n', buf)?;
    let line_len = nl + 1;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    match (protocol, op) {
        (Protocol::Text, Op::Get) => {
            if line == b"END" {
                return Some((line_len, Outcome::Miss));
            }
            if !line.starts_with(b"VALUE ") {
                return Some((line_len, Outcome::Error));
            }
            // "VALUE key flags bytes" (gets adds a CAS: we never send gets).
            let bytes = last_number(line)?;
            let total = line_len + bytes + 2 + b"END\r\n".len();
            if buf.len() < total {
                return None;
            }
            Some((total, Outcome::Hit))
        }
        (Protocol::Meta, Op::Get) => {
            if line == b"EN" {
                return Some((line_len, Outcome::Miss));
            }
            if !line.starts_with(b"VA ") {
                return Some((line_len, Outcome::Error));
            }
            // "VA <bytes> <flags>*"
            let rest = &line[3..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let bytes = parse_usize(&rest[..end])?;
            let total = line_len + bytes + 2;
            if buf.len() < total {
                return None;
            }
            Some((total, Outcome::Hit))
        }
        (Protocol::Text, Op::Set) => Some((
            line_len,
            if line == b"STORED" {
                Outcome::Stored
            } else {
                Outcome::Error
            },
        )),
        (Protocol::Meta, Op::Set) => Some((
            line_len,
            if line == b"HD" || line.starts_with(b"HD ") {
                Outcome::Stored
            } else {
                Outcome::Error
            },
        )),
        (Protocol::Binary, _) => unreachable!("measured above"),
    }
}

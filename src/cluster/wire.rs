//! The node-to-node data wire: what nodes say to each other about keys
//! (forwarded requests, replication, recovery), on the peer connections between
//! shards (pure: bytes in, bytes out). Clients never see it; configuration
//! agreement travels on [`super::codec`]'s consensus wire.
//!
//! Node-to-node traffic is memcached's own protocol, so a packet capture reads
//! it and the receiving node parses it with the client parser. Three additions,
//! all plain text lines:
//!
//! - `rc <mode> <epoch>\r\n` starts a run of requests from another node and
//!   says how to serve them. It has no reply. `fwd`: requests a client sent to
//!   a node that does not own their keys (the receiver serves them as an owner,
//!   and applies writes as the primary, replicating them). `rep`: items the
//!   primary has applied (`ms <key> <len> F<flags> T<exptime> E<cas> q` or
//!   `md <key> q`), applied here alone; reads in this mode read the local copy.
//!   `copy`: items a peer pushes to a recovering node, applied unless the
//!   receiver holds a newer state of the key (a larger CAS unique) or wrote it
//!   as primary since recovery began. `rc merge <epoch> <node>`: items a node
//!   that was cut off changed and could not replicate, applied unless the
//!   receiver changed the key itself meanwhile (it holds a hint for that node).
//!   A receiver at another epoch answers each request with
//!   [`EPOCH_MISMATCH_PREFIX`] and its epoch instead of serving it.
//! - `rc recover <epoch> <node> <hints|all>\r\n` asks a peer shard to push
//!   (in `copy` mode) what the recovering node missed: the keys it holds hints
//!   for, or every item the two nodes share. The reply, once everything pushed
//!   has been acknowledged, is `OK\r\n`, or [`HINTS_OVERFLOWED`] when the hints
//!   were dropped at their bound (the caller then asks for `all`).
//! - `rc exchange <epoch> <node>\r\n` asks a node that was unreachable to settle
//!   with `<node>` before `<node>` reads from it again: it sends `<node>` (in
//!   `merge` mode) what it changed and could not replicate, then asks for
//!   `<node>`'s hints. The reply, once done, is `OK\r\n`.
//! - `rc status\r\n` asks a node where it stands: a `stats`-style reply with its
//!   `epoch`, its `node_state` (`serving` or `recovering`) and `votes_seen`, the
//!   nodes whose Paxos votes it has received (see [`Status`]).
//! - `rc join <addr> <shard>,<shard>...\r\n` asks a node to add a new member
//!   with those endpoints (see `runtime::control`).
//! - Every request a node sends another is followed by `mn\r\n`, so its reply is
//!   everything before the `MN\r\n` that answers it: [`scan_reply`] finds that end
//!   with memcached's reply grammar and rejects anything else as garbage.

use crate::protocol::meta::base64_encode;
use std::io::Write;

/// The line that starts a run of requests from another node.
pub const PEER_LINE_PREFIX: &[u8] = b"rc ";

/// The reply, instead of serving, of a node whose epoch is not the sender's.
pub const EPOCH_MISMATCH_PREFIX: &[u8] =
    b"SERVER_ERROR cluster epoch mismatch: this node is at epoch ";

/// The epoch a peer's reply says it is at, when the reply is the refusal of a
/// node at another epoch than the sender's ([`EPOCH_MISMATCH_PREFIX`]).
pub fn mismatched_epoch(reply: &[u8]) -> Option<u64> {
    let rest = reply.strip_prefix(EPOCH_MISMATCH_PREFIX)?;
    let digits = rest.strip_suffix(b"\r\n")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The reply of a node asked, in `rep` or `copy` mode, about a key it does not own.
pub const NOT_AN_OWNER: &[u8] = b"SERVER_ERROR not an owner of this key\r\n";

/// The reply of an owner to a replicated item older than the state of the key
/// it holds (a smaller CAS unique): not applied, and not an acknowledgement.
pub const OLDER_THAN_HELD: &[u8] = b"SERVER_ERROR older than the state held\r\n";

/// The reply of a recovering node to a forwarded read: the sender reads the
/// next owner instead.
pub const RECOVERING: &[u8] = b"SERVER_ERROR recovering\r\n";
/// The answer to a client's request none of whose key's owners could be
/// reached; for a multi-key get, the answer to the whole get.
pub const NO_OWNER_REACHABLE: &[u8] = b"SERVER_ERROR no owner of this key is reachable\r\n";

/// The answer to a client's write that went to another node and got no reply
/// (timed out, or the connection broke after it was sent): it may have been
/// applied, and is not sent to another owner, since it may not be idempotent.
pub const OUTCOME_UNKNOWN: &[u8] =
    b"SERVER_ERROR the key's owner did not answer; the write may have been applied\r\n";

/// The reply when not enough owners acknowledged a write for `--write-ack`.
pub const NOT_ENOUGH_ACKS: &[u8] = b"SERVER_ERROR not enough replicas acknowledged the write\r\n";

/// The reply to `rc recover ... hints` when the hints were dropped at their bound.
pub const HINTS_OVERFLOWED: &[u8] = b"SERVER_ERROR hints overflowed\r\n";

/// The reply to a finished `rc recover`.
pub const RECOVERED: &[u8] = b"OK\r\n";

/// Ends every binary request a node sends another (a NOOP): the reply is every
/// response packet before the NOOP's, found by [`scan_binary_reply`].
pub const BINARY_NOOP_REQUEST: [u8; 24] = [
    0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Ends every request a node sends another; [`MN_REPLY`] answers it.
pub const MN_REQUEST: &[u8] = b"mn\r\n";
pub const MN_REPLY: &[u8] = b"MN\r\n";

/// Longest reply line a peer may send: the longest is a `VALUE` line, well under this.
pub const REPLY_LINE_LEN_MAX: usize = 4096;

/// How a node serves the requests after an `rc <mode>` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMode {
    Forward,
    Replica,
    /// Items this node (id; 0 from a sender that does not say) pushes to a
    /// node that copies them.
    Copy(u32),
    /// Items from this node (id), which was cut off.
    Merge(u32),
}

/// What a recovering node asks a peer to push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverWhat {
    /// The keys the peer holds hints for.
    Hints,
    /// Every item the two nodes share.
    All,
    /// Every item the two nodes share that the peer holds, current or not:
    /// asked by a node that takes over as primary from one a decision marked
    /// down, which may have had writes acknowledged by the peer and not by
    /// the asker. The asker keeps the newest of each.
    Takeover,
}

/// One parsed `rc` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerLine {
    Mode {
        mode: PeerMode,
        epoch: u64,
    },
    Recover {
        epoch: u64,
        node: u32,
        what: RecoverWhat,
    },
    Exchange {
        epoch: u64,
        node: u32,
    },
}

/// Parses an `rc` line at the start of `buf`: `Ok(None)` while the line is
/// incomplete, `Ok(Some((line, bytes used)))`, or `Err(bytes used)` for a line
/// that is not a valid `rc` line (answered `CLIENT_ERROR bad command line format`),
/// among them one longer than [`REPLY_LINE_LEN_MAX`] (then, with no line end
/// yet, what is buffered is used).
pub fn parse_peer_line(buf: &[u8]) -> Result<Option<(PeerLine, usize)>, usize> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > REPLY_LINE_LEN_MAX {
            Err(buf.len())
        } else {
            Ok(None)
        };
    };
    let used = nl + 1;
    // A line longer than the limit is refused whether or not its end has
    // arrived yet: what is decided must not depend on how reads split it.
    if nl > REPLY_LINE_LEN_MAX {
        return Err(used);
    }
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let text = std::str::from_utf8(line).map_err(|_| used)?;
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    let number = |t: Option<&&str>| t.and_then(|t| t.parse::<u64>().ok()).ok_or(used);
    let node = |t: Option<&&str>| number(t).and_then(|n| u32::try_from(n).map_err(|_| used));
    let parsed = match tokens.get(1).copied() {
        Some("copy") if tokens.len() == 4 => PeerLine::Mode {
            epoch: number(tokens.get(2))?,
            mode: PeerMode::Copy(node(tokens.get(3))?),
        },
        Some("merge") if tokens.len() == 4 => PeerLine::Mode {
            epoch: number(tokens.get(2))?,
            mode: PeerMode::Merge(node(tokens.get(3))?),
        },
        Some("exchange") if tokens.len() == 4 => PeerLine::Exchange {
            epoch: number(tokens.get(2))?,
            node: node(tokens.get(3))?,
        },
        Some(mode @ ("fwd" | "rep" | "copy")) if tokens.len() == 3 => PeerLine::Mode {
            mode: match mode {
                "fwd" => PeerMode::Forward,
                "rep" => PeerMode::Replica,
                _ => PeerMode::Copy(0),
            },
            epoch: number(tokens.get(2))?,
        },
        Some("recover") if tokens.len() == 5 => PeerLine::Recover {
            epoch: number(tokens.get(2))?,
            node: node(tokens.get(3))?,
            what: match tokens[4] {
                "hints" => RecoverWhat::Hints,
                "all" => RecoverWhat::All,
                "takeover" => RecoverWhat::Takeover,
                _ => return Err(used),
            },
        },
        _ => return Err(used),
    };
    Ok(Some((parsed, used)))
}

/// A node's answer to `rc status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub epoch: u64,
    pub recovering: bool,
    /// Nodes whose Paxos votes (promises, acceptances) this node has received
    /// since it started.
    pub votes_seen: Vec<u32>,
}

/// Writes the reply to `rc status`.
pub fn encode_status(status: &Status, out: &mut Vec<u8>) {
    let seen: Vec<String> = status.votes_seen.iter().map(u32::to_string).collect();
    let _ = write!(
        out,
        "STAT epoch {}\r\nSTAT node_state {}\r\nSTAT votes_seen {}\r\nEND\r\n",
        status.epoch,
        if status.recovering {
            "recovering"
        } else {
            "serving"
        },
        if seen.is_empty() {
            "-".to_string()
        } else {
            seen.join(",")
        }
    );
}

/// Reads a reply to `rc status`; `None` if it is not one.
pub fn parse_status(reply: &[u8]) -> Option<Status> {
    let text = std::str::from_utf8(reply).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix("STAT ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .map(str::trim)
    };
    let votes_seen = match field("votes_seen")? {
        "-" => Vec::new(),
        list => list
            .split(',')
            .map(|id| id.parse().ok())
            .collect::<Option<Vec<u32>>>()?,
    };
    Some(Status {
        epoch: field("epoch")?.parse().ok()?,
        recovering: match field("node_state")? {
            "recovering" => true,
            "serving" => false,
            _ => return None,
        },
        votes_seen,
    })
}

/// Writes `rc <mode> <epoch>\r\n` (`rc merge <epoch> <node>\r\n`).
pub fn encode_mode(mode: PeerMode, epoch: u64, out: &mut Vec<u8>) {
    let _ = match mode {
        PeerMode::Forward => write!(out, "rc fwd {epoch}\r\n"),
        PeerMode::Replica => write!(out, "rc rep {epoch}\r\n"),
        PeerMode::Copy(node) => write!(out, "rc copy {epoch} {node}\r\n"),
        PeerMode::Merge(node) => write!(out, "rc merge {epoch} {node}\r\n"),
    };
}

/// Writes `rc exchange <epoch> <node>\r\n` and its `mn`.
pub fn encode_exchange(epoch: u64, node: u32, out: &mut Vec<u8>) {
    let _ = write!(out, "rc exchange {epoch} {node}\r\n");
    out.extend_from_slice(MN_REQUEST);
}

/// Writes `rc recover <epoch> <node> <what>\r\n` and its `mn`.
pub fn encode_recover(epoch: u64, node: u32, what: RecoverWhat, out: &mut Vec<u8>) {
    let what = match what {
        RecoverWhat::Hints => "hints",
        RecoverWhat::All => "all",
        RecoverWhat::Takeover => "takeover",
    };
    let _ = write!(out, "rc recover {epoch} {node} {what}\r\n");
    out.extend_from_slice(MN_REQUEST);
}

/// Writes `key` as a meta key: as it is when the text protocol could carry it,
/// else in base64 with the `b` flag noted in the returned bool.
fn write_meta_key(key: &[u8], out: &mut Vec<u8>) -> bool {
    let plain = key.len() <= crate::limits::KEY_LEN_MAX
        && !key.is_empty()
        && key.iter().all(|&c| c > b' ' && c != 0x7f);
    if plain {
        out.extend_from_slice(key);
    } else {
        base64_encode(key, out);
    }
    !plain
}

/// Writes an item as a replica applies it, with its `mn`:
/// `ms <key> <len> F<flags> T<exptime> E<cas> q\r\n<value>\r\nmn\r\n`.
/// `exptime_unix` is the absolute expiry (`None`: never), so the copy expires
/// when the primary's does however long it travelled.
pub fn encode_item(
    key: &[u8],
    value: &[u8],
    flags: u32,
    exptime_unix: Option<i64>,
    cas: u64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"ms ");
    let binary = write_meta_key(key, out);
    let _ = write!(
        out,
        " {} F{flags} T{} E{cas} q",
        value.len(),
        exptime_unix.unwrap_or(0)
    );
    if binary {
        out.extend_from_slice(b" b");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(MN_REQUEST);
}

/// Writes the removal of an item as a replica applies it, with the CAS unique
/// the removal took (a copy of the key with a smaller one is older):
/// `md <key> q E<cas>\r\nmn\r\n`.
pub fn encode_removal(key: &[u8], cas: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"md ");
    let binary = write_meta_key(key, out);
    let _ = write!(out, " q E{cas}");
    if binary {
        out.extend_from_slice(b" b");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(MN_REQUEST);
}

/// Whether the reply to an item sent to a replica acknowledges it: quiet
/// stores and removals answer nothing, a removal of a missing key `NF`.
pub fn is_ack(reply: &[u8]) -> bool {
    reply.is_empty() || reply == b"NF\r\n"
}

/// Where the reply to one request from another node ends, in `buf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// `buf[..body]` is the reply; `buf[..used]` includes its `MN\r\n`.
    Reply { body: usize, used: usize },
    /// Not memcached's reply grammar: the peer is disconnected.
    Garbage(&'static str),
}

/// Finds the end of one reply (the `MN\r\n` that follows it), checking every
/// line against the replies memcached sends and skipping value blocks by their
/// stated length.
pub fn scan_reply(buf: &[u8]) -> Scan {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            return if rest.len() > REPLY_LINE_LEN_MAX {
                Scan::Garbage("a reply line without an end")
            } else {
                Scan::Incomplete
            };
        };
        // Judged as when the line arrives in pieces: the outcome must not
        // depend on how reads split the reply.
        if nl > REPLY_LINE_LEN_MAX {
            return Scan::Garbage("a reply line longer than any memcached sends");
        }
        if nl == 0 || rest[nl - 1] != b'\r' {
            return Scan::Garbage("a reply line not ended by \\r\\n");
        }
        let line = &rest[..nl - 1];
        let line_end = at + nl + 1;
        if line == b"MN" {
            return Scan::Reply {
                body: at,
                used: line_end,
            };
        }
        let mut tokens = line.split(|&c| c == b' ');
        let first = tokens.next().unwrap_or_default();
        let data_len = match first {
            b"VALUE" => Some(tokens.nth(2)),
            b"VA" => Some(tokens.next()),
            _ if is_reply_word(first) || is_number(first) => None,
            _ => return Scan::Garbage("not a memcached reply"),
        };
        at = line_end;
        if let Some(len) = data_len {
            let Some(len) = len
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| t.parse::<usize>().ok())
            else {
                return Scan::Garbage("a value without a length");
            };
            if len > crate::limits::PEER_REPLY_BYTES_MAX {
                return Scan::Garbage("a value longer than any item");
            }
            let block_end = at + len + 2;
            if buf.len() < block_end {
                return Scan::Incomplete;
            }
            if &buf[at + len..block_end] != b"\r\n" {
                return Scan::Garbage("a value not ended by \\r\\n");
            }
            at = block_end;
        }
    }
}

/// [`scan_reply`] for binary requests: response packets, each its 24-byte
/// header and the body it states, up to and including the NOOP response.
pub fn scan_binary_reply(buf: &[u8]) -> Scan {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 24 {
            return Scan::Incomplete;
        }
        if rest[0] != 0x81 {
            return Scan::Garbage("not a binary response");
        }
        let body = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        if body > crate::limits::PEER_REPLY_BYTES_MAX {
            return Scan::Garbage("a response longer than any item");
        }
        if rest.len() < 24 + body {
            return Scan::Incomplete;
        }
        if rest[1] == 0x0a {
            return Scan::Reply {
                body: at,
                used: at + 24 + body,
            };
        }
        at += 24 + body;
    }
}

/// The status of the first response packet in `reply`, if there is one.
pub fn binary_status(reply: &[u8]) -> Option<u16> {
    (reply.len() >= 24).then(|| u16::from_be_bytes([reply[6], reply[7]]))
}

/// The first word of every reply line memcached sends besides values and numbers.
fn is_reply_word(word: &[u8]) -> bool {
    matches!(
        word,
        b"STORED"
            | b"NOT_STORED"
            | b"EXISTS"
            | b"NOT_FOUND"
            | b"DELETED"
            | b"TOUCHED"
            | b"OK"
            | b"END"
            | b"ERROR"
            | b"CLIENT_ERROR"
            | b"SERVER_ERROR"
            | b"STAT"
            | b"VERSION"
            | b"RESET"
            | b"HD"
            | b"NF"
            | b"NS"
            | b"EX"
            | b"EN"
            | b"ME"
    )
}

fn is_number(word: &[u8]) -> bool {
    !word.is_empty() && word.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_ends_at_its_mn() {
        assert_eq!(
            scan_reply(b"STORED\r\nMN\r\nEND"),
            Scan::Reply { body: 8, used: 12 }
        );
        assert_eq!(scan_reply(b"MN\r\n"), Scan::Reply { body: 0, used: 4 });
        assert_eq!(scan_reply(b"STORED\r\nM"), Scan::Incomplete);
    }

    #[test]
    fn values_are_skipped_by_length_even_when_they_hold_mn() {
        let reply = b"VALUE k 0 4\r\nMN\r\n\r\nEND\r\nMN\r\n";
        assert_eq!(
            scan_reply(reply),
            Scan::Reply {
                body: reply.len() - 4,
                used: reply.len()
            }
        );
        let meta = b"VA 4 f0\r\nMN\r\n\r\nMN\r\n";
        assert_eq!(scan_reply(meta), Scan::Reply { body: 15, used: 19 });
        assert_eq!(scan_reply(b"VA 4 f0\r\nMN\r"), Scan::Incomplete);
    }

    #[test]
    fn anything_else_is_garbage() {
        assert!(matches!(
            scan_reply(b"HTTP/1.1 200 OK\r\n"),
            Scan::Garbage(_)
        ));
        assert!(matches!(scan_reply(b"STORED\n"), Scan::Garbage(_)));
        assert!(matches!(scan_reply(b"VALUE k 0 x\r\n"), Scan::Garbage(_)));
        assert!(matches!(scan_reply(b"VA 1\r\nxyz\r\n"), Scan::Garbage(_)));
        assert!(matches!(scan_reply(&[b'x'; 5000]), Scan::Garbage(_)));
        assert_eq!(
            scan_reply(b"12\r\nMN\r\n"),
            Scan::Reply { body: 4, used: 8 }
        );
    }

    #[test]
    fn binary_replies_end_at_the_noop_response() {
        let mut reply = vec![0x81, 0x00, 0, 0, 4, 0, 0, 0, 0, 0, 0, 7];
        reply.extend_from_slice(&[0; 12]);
        reply.extend_from_slice(b"\0\0\0\0abc");
        let noop = [
            0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut both = reply.clone();
        both.extend_from_slice(&noop);
        assert_eq!(scan_binary_reply(&both), Scan::Reply { body: 31, used: 55 });
        assert_eq!(scan_binary_reply(&both[..40]), Scan::Incomplete);
        assert_eq!(scan_binary_reply(&noop), Scan::Reply { body: 0, used: 24 });
        assert!(matches!(scan_binary_reply(&[0x80; 30]), Scan::Garbage(_)));
        assert_eq!(binary_status(&reply), Some(0));
    }

    #[test]
    fn an_epoch_mismatch_says_the_refusing_nodes_epoch() {
        let mut refusal = EPOCH_MISMATCH_PREFIX.to_vec();
        refusal.extend_from_slice(b"7\r\n");
        assert_eq!(mismatched_epoch(&refusal), Some(7));
        assert_eq!(mismatched_epoch(RECOVERING), None);
        assert_eq!(mismatched_epoch(&refusal[..refusal.len() - 2]), None);
        refusal.truncate(EPOCH_MISMATCH_PREFIX.len());
        refusal.extend_from_slice(b"x\r\n");
        assert_eq!(mismatched_epoch(&refusal), None);
    }

    #[test]
    fn peer_lines_parse_and_refuse_junk() {
        assert_eq!(
            parse_peer_line(b"rc fwd 3\r\nget k\r\n"),
            Ok(Some((
                PeerLine::Mode {
                    mode: PeerMode::Forward,
                    epoch: 3
                },
                10
            )))
        );
        assert_eq!(
            parse_peer_line(b"rc recover 1 7 all\r\n"),
            Ok(Some((
                PeerLine::Recover {
                    epoch: 1,
                    node: 7,
                    what: RecoverWhat::All
                },
                20
            )))
        );
        assert_eq!(
            parse_peer_line(b"rc recover 4 2 takeover\r\n"),
            Ok(Some((
                PeerLine::Recover {
                    epoch: 4,
                    node: 2,
                    what: RecoverWhat::Takeover
                },
                25
            )))
        );
        let mut line = Vec::new();
        encode_recover(4, 2, RecoverWhat::Takeover, &mut line);
        assert!(line.starts_with(b"rc recover 4 2 takeover\r\n"));
        assert_eq!(
            parse_peer_line(b"rc merge 2 9\r\n"),
            Ok(Some((
                PeerLine::Mode {
                    mode: PeerMode::Merge(9),
                    epoch: 2
                },
                14
            )))
        );
        assert_eq!(
            parse_peer_line(b"rc exchange 2 9\r\n"),
            Ok(Some((PeerLine::Exchange { epoch: 2, node: 9 }, 17)))
        );
        let mut out = Vec::new();
        encode_mode(PeerMode::Merge(9), 2, &mut out);
        assert_eq!(out, b"rc merge 2 9\r\n");
        assert_eq!(parse_peer_line(b"rc merge 2\r\n"), Err(12));
        assert_eq!(parse_peer_line(b"rc fwd"), Ok(None));
        assert_eq!(parse_peer_line(b"rc fwd x\r\n"), Err(10));
        assert_eq!(parse_peer_line(b"rc nope 1\r\n"), Err(11));
        assert_eq!(parse_peer_line(b"rc recover 1 7 some\r\n"), Err(21));
    }

    #[test]
    fn items_are_meta_sets_with_the_primarys_fields() {
        let mut out = Vec::new();
        encode_item(b"k", b"abc", 5, Some(1_900_000_000), 77, &mut out);
        assert_eq!(
            out,
            b"ms k 3 F5 T1900000000 E77 q\r\nabc\r\nmn\r\n".to_vec()
        );
        out.clear();
        encode_item(b"a b", b"", 0, None, 1, &mut out);
        assert_eq!(out, b"ms YSBi 0 F0 T0 E1 q b\r\n\r\nmn\r\n".to_vec());
        out.clear();
        encode_removal(b"k", 7, &mut out);
        assert_eq!(out, b"md k q E7\r\nmn\r\n".to_vec());
    }

    #[test]
    fn status_reads_back_and_odd_replies_are_refused() {
        for status in [
            Status::default(),
            Status {
                epoch: 7,
                recovering: true,
                votes_seen: vec![1, 3, 64],
            },
        ] {
            let mut out = Vec::new();
            encode_status(&status, &mut out);
            assert_eq!(
                scan_reply(&[out.as_slice(), MN_REPLY].concat()),
                Scan::Reply {
                    body: out.len(),
                    used: out.len() + MN_REPLY.len()
                }
            );
            assert_eq!(parse_status(&out), Some(status));
        }
        assert_eq!(
            parse_status(b"STAT epoch 2\r\nSTAT node_state asleep\r\nSTAT votes_seen -\r\nEND\r\n"),
            None
        );
        assert_eq!(parse_status(b"STAT epoch 2\r\nEND\r\n"), None);
        assert_eq!(parse_status(b"ERROR\r\n"), None);
    }
}

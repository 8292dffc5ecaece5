//! What one shard does with one binary request, and the binary replies (pure).
//!
//! Key requests run here against the shard's store with the same store calls and
//! counters as the text protocol; node requests (flush, stat, version, noop,
//! quit) are answered by the runtime with the writers below. Statuses, error
//! texts, CAS values in replies and quiet behaviour are memcached 1.6.18's
//! (`proto_bin.c`), checked against the server:
//!
//! - a quiet command answers only errors, except that `GETQ`/`GATQ` answer a hit
//!   and stay silent on a miss;
//! - a successful delete answers CAS 0; a store, incr/decr or retrieval answers
//!   the item's CAS;
//! - `add` on an existing key is "Data exists for key.", `replace` on a missing
//!   one "Not found", append/prepend on a missing one "Not stored.";
//! - a non-zero request CAS turns set/add/replace into compare-and-swap (so `add`
//!   with a CAS on a missing key is "Not found"), and makes delete, incr/decr and
//!   append/prepend fail with "Data exists for key." when it does not match.
//!
//! `watch` lines are the text protocol's, as memcached 1.6.18 writes them for
//! binary requests: one `item_get` for every key request (a store's lookup, a
//! delete's, an incr/decr's), and an `item_store` for every storage command,
//! `cmd=cas` when the request carries a CAS; an incr/decr that creates its item
//! logs a second `item_get` and an `item_store` with `cmd=add`.

use super::{lookup, ShardState, VERSION};
use crate::protocol::binary::{
    write_error, write_header, write_simple, ArithOp, BinRequest, Command, Header, Quiet, Status,
    StoreOp, WithKey,
};
use crate::protocol::text::{self, StoreMode};
use crate::storage::ttl::{expiry, Clock};
use crate::storage::{ArithOutcome, DeleteOutcome, StoreOutcome};

/// `incr`/`decr` expiry meaning "do not create the item on a miss".
pub const ARITH_NO_CREATE: u32 = u32::MAX;

/// Applies one key request (retrievals, touch/gat, storage, delete, incr/decr)
/// to this shard and appends its reply, if any, to `out`.
///
/// # Panics
/// On a request without a key; the runtime answers those.
pub fn execute(shard: &mut ShardState, req: &BinRequest, clock: &Clock, out: &mut Vec<u8>) {
    let h = &req.header;
    let now = clock.rel_secs;
    if let Some(key) = req.command.key() {
        shard.count_key(key);
        shard.watch_fetch(key, now);
    }
    match req.command {
        Command::Get {
            key,
            with_key,
            quiet,
        } => retrieve(shard, h, key, None, true, with_key, quiet, clock, out),
        Command::Touch {
            key,
            exptime,
            value,
            with_key,
            quiet,
        } => retrieve(
            shard,
            h,
            key,
            Some(exptime as i64),
            value,
            with_key,
            quiet,
            clock,
            out,
        ),
        Command::Store {
            op,
            key,
            flags,
            exptime,
            value,
            quiet,
        } => {
            let status = store(shard, h, op, key, flags, exptime, value, clock);
            match status {
                Ok(cas) if quiet == Quiet::No => write_simple(out, h, Status::Success, cas, b""),
                Ok(_) => {}
                Err(status) => write_error(out, h, status),
            }
        }
        Command::TooLarge { op, key, .. } => {
            // memcached: a failed set must not leave the old value readable.
            shard.stats.store_too_large += 1;
            if op == StoreOp::Set {
                shard.store.unlink(key);
            }
            // memcached 1.6.18 crashes logging this (its `ITEM_clsid` of no
            // item); the line is the text protocol's.
            shard.watch_store(key, store_mode(op, h), StoreOutcome::TooLarge, 0, 0, now);
            write_error(out, h, Status::TooLarge);
        }
        Command::Delete { key, quiet } => {
            if h.cas != 0 {
                if let Ok(item) = shard.store.peek(key, now) {
                    if item.cas != h.cas {
                        return write_error(out, h, Status::KeyExists);
                    }
                }
            }
            match shard.store.delete(key, now) {
                DeleteOutcome::Deleted => {
                    shard.stats.delete_hits += 1;
                    if quiet == Quiet::No {
                        write_simple(out, h, Status::Success, 0, b"");
                    }
                }
                DeleteOutcome::NotFound => {
                    shard.stats.delete_misses += 1;
                    write_error(out, h, Status::KeyNotFound);
                }
            }
        }
        Command::Arith {
            op,
            key,
            delta,
            initial,
            exptime,
            quiet,
        } => match arith(shard, h, op, key, delta, initial, exptime, clock) {
            Ok((value, cas)) if quiet == Quiet::No => {
                write_simple(out, h, Status::Success, cas, &value.to_be_bytes())
            }
            Ok(_) => {}
            Err(status) => write_error(out, h, status),
        },
        Command::Quit { .. }
        | Command::Flush { .. }
        | Command::Noop
        | Command::Version
        | Command::Stat { .. }
        | Command::Unknown { .. } => panic!("node request handed to a shard: {req:?}"),
    }
}

/// GET/GETK/GAT/GATK/TOUCH and their quiet forms.
///
/// # Format
/// ```text
/// hit:  extras = flags (4 bytes), then the key (GETK/GATK), then the value (not TOUCH)
/// miss: "Not found", or for GETK/GATK the key as the body with no message
/// ```
#[allow(clippy::too_many_arguments)]
fn retrieve(
    shard: &mut ShardState,
    h: &Header,
    key: &[u8],
    exptime: Option<i64>,
    with_value: bool,
    with_key: WithKey,
    quiet: Quiet,
    clock: &Clock,
    out: &mut Vec<u8>,
) {
    match lookup(shard, exptime, key, clock) {
        Some(item) => {
            let key_len = if with_key == WithKey::Yes {
                key.len()
            } else {
                0
            };
            let value: &[u8] = if with_value { item.value } else { b"" };
            let body_len = 4 + key_len + value.len();
            write_header(
                out,
                h.opcode,
                Status::Success,
                key_len as u16,
                4,
                body_len as u32,
                h.opaque,
                item.cas,
            );
            out.extend_from_slice(&item.flags.to_be_bytes());
            out.extend_from_slice(&key[..key_len]);
            out.extend_from_slice(value);
        }
        None if quiet == Quiet::Yes => {}
        None if with_key == WithKey::Yes => {
            write_header(
                out,
                h.opcode,
                Status::KeyNotFound,
                key.len() as u16,
                0,
                key.len() as u32,
                h.opaque,
                0,
            );
            out.extend_from_slice(key);
        }
        None => write_error(out, h, Status::KeyNotFound),
    }
}

/// A storage command: the new CAS, or the error status memcached answers.
#[allow(clippy::too_many_arguments)]
fn store(
    shard: &mut ShardState,
    h: &Header,
    op: StoreOp,
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    clock: &Clock,
) -> Result<u64, Status> {
    let now = clock.rel_secs;
    let mode = store_mode(op, h);
    let expiry = expiry(exptime as i64, clock);
    let appending = matches!(op, StoreOp::Append | StoreOp::Prepend);
    if appending && h.cas != 0 {
        if let Ok(item) = shard.store.peek(key, now) {
            if item.cas != h.cas {
                shard.stats.cmd_set += 1;
                shard.watch_store(key, mode, StoreOutcome::Exists, expiry, value.len(), now);
                return Err(Status::KeyExists);
            }
        }
    }
    let outcome = shard.store.store(mode, key, flags, expiry, value, now);
    shard.watch_store(key, mode, outcome, expiry, value.len(), now);
    let stats = &mut shard.stats;
    // As in the text protocol: memcached counts cmd_set once the value is read
    // into a newly allocated item; append/prepend allocate the joined item later.
    let allocation_failed = matches!(outcome, StoreOutcome::TooLarge | StoreOutcome::OutOfMemory);
    if appending || !allocation_failed {
        stats.cmd_set += 1;
    }
    let is_cas = matches!(mode, StoreMode::Cas(_));
    match outcome {
        StoreOutcome::Stored(cas) => {
            if is_cas {
                stats.cas_hits += 1;
            }
            Ok(cas)
        }
        StoreOutcome::Exists => {
            stats.cas_badval += 1;
            Err(Status::KeyExists)
        }
        StoreOutcome::NotFound => {
            stats.cas_misses += 1;
            Err(Status::KeyNotFound)
        }
        StoreOutcome::NotStored => Err(match op {
            StoreOp::Add => Status::KeyExists,
            StoreOp::Replace => Status::KeyNotFound,
            _ => Status::NotStored,
        }),
        _ if appending => Err(Status::NotStored),
        StoreOutcome::TooLarge => {
            stats.store_too_large += 1;
            Err(Status::TooLarge)
        }
        StoreOutcome::OutOfMemory => {
            stats.store_no_memory += 1;
            Err(Status::ItemOutOfMemory)
        }
    }
}

/// The text protocol's mode of a binary storage command: a request CAS makes
/// set/add/replace a `cas`.
fn store_mode(op: StoreOp, h: &Header) -> StoreMode {
    match op {
        StoreOp::Set | StoreOp::Add | StoreOp::Replace if h.cas != 0 => StoreMode::Cas(h.cas),
        StoreOp::Set => StoreMode::Set,
        StoreOp::Add => StoreMode::Add,
        StoreOp::Replace => StoreMode::Replace,
        StoreOp::Append => StoreMode::Append,
        StoreOp::Prepend => StoreMode::Prepend,
    }
}

/// incr/decr: the new value and CAS, creating the item from `initial` on a miss
/// unless `exptime` is [`ARITH_NO_CREATE`].
#[allow(clippy::too_many_arguments)]
fn arith(
    shard: &mut ShardState,
    h: &Header,
    op: ArithOp,
    key: &[u8],
    delta: u64,
    initial: u64,
    exptime: u32,
    clock: &Clock,
) -> Result<(u64, u64), Status> {
    let now = clock.rel_secs;
    let text_op = match op {
        ArithOp::Incr => text::ArithOp::Incr,
        ArithOp::Decr => text::ArithOp::Decr,
    };
    match shard.store.peek(key, now) {
        Ok(item) => {
            // memcached's do_add_delta: an empty value, then the CAS, then the number.
            if item.value.is_empty() {
                return Err(Status::NonNumeric);
            }
            if h.cas != 0 && item.cas != h.cas {
                return Err(Status::KeyExists);
            }
            match shard.store.arith(text_op, key, delta, now) {
                ArithOutcome::Value(value) => {
                    match op {
                        ArithOp::Incr => shard.stats.incr_hits += 1,
                        ArithOp::Decr => shard.stats.decr_hits += 1,
                    }
                    let cas = shard.store.peek(key, now).map(|i| i.cas).unwrap_or(0);
                    Ok((value, cas))
                }
                ArithOutcome::NonNumeric => Err(Status::NonNumeric),
                ArithOutcome::OutOfMemory => Err(Status::OutOfMemory),
                ArithOutcome::NotFound => unreachable!("the item was just found"),
            }
        }
        Err(_) if exptime == ARITH_NO_CREATE => {
            match op {
                ArithOp::Incr => shard.stats.incr_misses += 1,
                ArithOp::Decr => shard.stats.decr_misses += 1,
            }
            Err(Status::KeyNotFound)
        }
        Err(_) => {
            let value = initial.to_string();
            let exptime = expiry(exptime as i64, clock);
            // memcached creates the item with an `add`, which looks the key up again.
            shard.watch_fetch(key, now);
            let outcome = shard
                .store
                .store(StoreMode::Add, key, 0, exptime, value.as_bytes(), now);
            shard.watch_store(key, StoreMode::Add, outcome, exptime, value.len(), now);
            match outcome {
                StoreOutcome::Stored(cas) => Ok((initial, cas)),
                StoreOutcome::OutOfMemory | StoreOutcome::TooLarge => Err(Status::OutOfMemory),
                _ => Err(Status::NotStored),
            }
        }
    }
}

/// What a `STAT` request's key asks for, matched as memcached matches it
/// (`reset`, `settings` and `detail` by prefix, the rest exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatGroup<'a> {
    /// A group the text writer answers (`""`, `settings`, `items`, `slabs`, `sizes`):
    /// its `STAT` lines become packets.
    Text(&'a [u8]),
    Reset,
    /// `detail dump`: one packet, `detailed`, holding the (empty) dump.
    DetailDump,
    /// `detail on`/`detail off`: only the terminator.
    DetailSwitch,
    NotFound,
}

pub fn stat_group(group: &[u8]) -> StatGroup<'_> {
    if group.is_empty() {
        StatGroup::Text(b"")
    } else if group.starts_with(b"reset") {
        StatGroup::Reset
    } else if group.starts_with(b"settings") {
        StatGroup::Text(b"settings")
    } else if let Some(rest) = group.strip_prefix(b"detail") {
        if rest.starts_with(b" dump") {
            StatGroup::DetailDump
        } else if rest.starts_with(b" on") || rest.starts_with(b" off") {
            StatGroup::DetailSwitch
        } else {
            StatGroup::NotFound
        }
    } else if matches!(group, b"items" | b"slabs" | b"sizes") {
        StatGroup::Text(group)
    } else {
        StatGroup::NotFound
    }
}

/// One stat packet: the name as the key, the value as the value, CAS 0.
pub fn write_stat(out: &mut Vec<u8>, h: &Header, name: &[u8], value: &[u8]) {
    write_header(
        out,
        h.opcode,
        Status::Success,
        name.len() as u16,
        0,
        (name.len() + value.len()) as u32,
        h.opaque,
        0,
    );
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Turns the text protocol's reply to `stats <group>` (`STAT <name> <value>\r\n`
/// lines, then `END\r\n`) into stat packets and the empty terminator packet.
pub fn write_stats_from_text(out: &mut Vec<u8>, h: &Header, text_reply: &[u8]) {
    for line in text_reply.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(stat) = line.strip_prefix(b"STAT ") else {
            continue;
        };
        let space = stat.iter().position(|&b| b == b' ').unwrap_or(stat.len());
        let value = stat.get(space + 1..).unwrap_or(b"");
        write_stat(out, h, &stat[..space], value);
    }
    write_stat(out, h, b"", b"");
}

/// The reply to `VERSION`.
pub fn write_version(out: &mut Vec<u8>, h: &Header) {
    write_simple(out, h, Status::Success, 0, VERSION.as_bytes());
}

/// A success with no body, unless the command was quiet (noop, flush, quit).
pub fn write_done(out: &mut Vec<u8>, h: &Header, quiet: Quiet) {
    if quiet == Quiet::No {
        write_simple(out, h, Status::Success, 0, b"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::binary::{opcode, parse};
    use crate::protocol::ParseLimits;
    use crate::storage::{Store, StoreConfig, WhenFull};

    fn shard() -> ShardState {
        ShardState::new(
            Store::new(StoreConfig {
                memory_limit_bytes: 4 << 20,
                item_size_max_bytes: 1 << 20,
                when_full: WhenFull::Evict,
                cas_suffix: 0,
                cas_suffix_bits: 0,
                clock_cas: false,
            }),
            crate::limits::HOT_KEYS_PER_SHARD_DEFAULT,
        )
    }

    const CLOCK: Clock = Clock {
        rel_secs: 100,
        process_started_unix: 1_700_000_000,
    };

    fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
        let mut p = vec![0x80, op];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.push(extras.len() as u8);
        p.extend_from_slice(&[0, 0, 0]);
        p.extend_from_slice(&((key.len() + extras.len() + value.len()) as u32).to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&cas.to_be_bytes());
        p.extend_from_slice(extras);
        p.extend_from_slice(key);
        p.extend_from_slice(value);
        p
    }

    /// Runs one request and returns (status, cas, body) of its reply, if any.
    fn run(shard: &mut ShardState, p: &[u8]) -> Option<(u16, u64, Vec<u8>)> {
        let (req, _) = parse(p, &ParseLimits::default()).unwrap();
        let mut out = Vec::new();
        execute(shard, &req, &CLOCK, &mut out);
        if out.is_empty() {
            return None;
        }
        let status = u16::from_be_bytes([out[6], out[7]]);
        let cas = u64::from_be_bytes(out[16..24].try_into().unwrap());
        Some((status, cas, out[24..].to_vec()))
    }

    #[test]
    fn append_with_a_stale_cas_is_refused_and_a_matching_one_applies() {
        let mut s = shard();
        let (_, cas, _) = run(&mut s, &packet(opcode::SET, b"k", &[0; 8], b"a", 0)).unwrap();
        let stale = run(&mut s, &packet(opcode::APPEND, b"k", b"", b"b", cas + 1)).unwrap();
        assert_eq!(
            (stale.0, stale.2.as_slice()),
            (2, &b"Data exists for key."[..])
        );
        let ok = run(&mut s, &packet(opcode::APPEND, b"k", b"", b"c", cas)).unwrap();
        assert_eq!(ok.0, 0);
        let got = run(&mut s, &packet(opcode::GET, b"k", b"", b"", 0)).unwrap();
        assert_eq!(&got.2[4..], b"ac");
    }

    #[test]
    fn an_incr_that_creates_its_item_logs_memcacheds_lookups_and_add() {
        let mut s = shard();
        s.set_watched(
            crate::engine::watch::FETCHERS | crate::engine::watch::MUTATIONS,
            9,
        );
        let mut extras = 1u64.to_be_bytes().to_vec();
        extras.extend_from_slice(&7u64.to_be_bytes());
        extras.extend_from_slice(&30u32.to_be_bytes());
        run(&mut s, &packet(opcode::INCREMENT, b"n", &extras, b"", 0)).unwrap();
        assert_eq!(
            String::from_utf8(s.watch.lines.clone()).unwrap(),
            "type=item_get key=n status=not_found clsid=0 cfd=9 size=0\n\
             type=item_get key=n status=not_found clsid=0 cfd=9 size=0\n\
             type=item_store key=n status=stored cmd=add ttl=30 clsid=1 cfd=9 size=1\n"
        );
    }

    #[test]
    fn incr_creates_from_initial_unless_told_not_to() {
        let mut s = shard();
        let mut extras = 5u64.to_be_bytes().to_vec();
        extras.extend_from_slice(&10u64.to_be_bytes());
        extras.extend_from_slice(&ARITH_NO_CREATE.to_be_bytes());
        let miss = run(&mut s, &packet(opcode::INCREMENT, b"n", &extras, b"", 0)).unwrap();
        assert_eq!((miss.0, s.stats.incr_misses), (1, 1));
        extras[16..].copy_from_slice(&0u32.to_be_bytes());
        let made = run(&mut s, &packet(opcode::INCREMENT, b"n", &extras, b"", 0)).unwrap();
        assert_eq!((made.0, made.2), (0, 10u64.to_be_bytes().to_vec()));
        let added = run(&mut s, &packet(opcode::INCREMENT, b"n", &extras, b"", 0)).unwrap();
        assert_eq!(added.2, 15u64.to_be_bytes().to_vec());
        assert!(added.1 > made.1, "every incr makes a new CAS");
        assert!(run(&mut s, &packet(opcode::INCREMENTQ, b"n", &extras, b"", 0)).is_none());
    }

    #[test]
    fn stat_groups_match_as_memcached_matches_them() {
        assert_eq!(stat_group(b""), StatGroup::Text(b""));
        assert_eq!(stat_group(b"resetting"), StatGroup::Reset);
        assert_eq!(stat_group(b"settingsXYZ"), StatGroup::Text(b"settings"));
        assert_eq!(stat_group(b"detail dump"), StatGroup::DetailDump);
        assert_eq!(stat_group(b"detail on"), StatGroup::DetailSwitch);
        assert_eq!(stat_group(b"detail x"), StatGroup::NotFound);
        assert_eq!(stat_group(b"itemsX"), StatGroup::NotFound);
        assert_eq!(stat_group(b"conns"), StatGroup::NotFound);
    }

    #[test]
    fn text_stats_become_packets_and_a_terminator() {
        let h = Header {
            opcode: opcode::STAT,
            opaque: 9,
            cas: 0,
        };
        let mut out = Vec::new();
        write_stats_from_text(&mut out, &h, b"STAT pid 12\r\nSTAT version 1.6\r\nEND\r\n");
        assert_eq!(out.len(), 3 * 24 + 5 + 10);
        assert_eq!(&out[24..29], b"pid12");
        assert_eq!(&out[out.len() - 24..][8..12], &[0, 0, 0, 0]);
    }
}

//! What one shard does with one meta request (pure): store calls and reply bytes.
//!
//! Replies are memcached 1.6.18's, checked byte for byte against the server:
//! the status (`VA <len>`, `HD`, `EN`, `NS`, `EX`, `NF`, `MN`, `ME ...`), then one
//! return flag per request flag that asks for one, in the order the client sent
//! them, then `Z`, `X` and `W` for stale-while-revalidate:
//!
//! - `md <key> I` marks the item stale and takes back its recache token;
//! - the first `mg` after that is told `X W` (stale, and you win: go recache);
//!   later readers `Z X` (stale, someone is recaching) until a fresh `ms` lands;
//! - `mg <key> N<ttl>` on a miss makes an empty item and wins it (`W`); `R<ttl>`
//!   wins when less TTL than that remains.
//!
//! `q` leaves out the nominal reply only: `EN` for `mg`, `HD` for `ms`, `md` and
//! `ma` (and `ma`'s `VA`); every other reply, errors included, is written.

use std::io::Write as _;

use super::{count_miss_cause, reply, ShardState};
use crate::protocol::meta::{base64_encode, MetaCommand, MetaRequest, SetMode};
use crate::protocol::text::{ArithOp, StoreMode};
use crate::storage::arith::format_u64;
use crate::storage::ttl::{expiry, Clock};
use crate::storage::{ArithOutcome, Slot, Store, StoreOptions, StoreOutcome};

/// Applies one meta request to this shard and appends its reply (if any) to `out`.
pub fn execute(shard: &mut ShardState, req: &MetaRequest, clock: &Clock, out: &mut Vec<u8>) {
    if req.command != MetaCommand::Noop {
        shard.count_key(req.key.bytes());
        shard.watch_fetch(req.key.bytes(), clock.rel_secs);
    }
    match req.command {
        MetaCommand::Noop => out.extend_from_slice(b"MN\r\n"),
        MetaCommand::Debug => {
            // memcached 1.6.18's `cmd_meta` counts `me` alone.
            shard.stats.cmd_meta += 1;
            debug(shard, req, clock, out)
        }
        MetaCommand::Get => get(shard, req, clock, out),
        MetaCommand::Set => set(shard, req, clock, out),
        MetaCommand::Delete => delete(shard, req, clock, out),
        MetaCommand::Arith => arith(shard, req, clock, out),
    }
}

/// ` k<key>`, or ` k<base64> b` for a key that came in base64.
fn write_key(key: &[u8], binary: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// The flags every reply echoes, item or not: `O` (opaque) and `k` (the key as sent).
fn write_opaque_and_key(req: &MetaRequest, out: &mut Vec<u8>) {
    for token in req.flag_tokens() {
        match token[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => write_key(req.key.bytes(), req.key.is_binary(), out),
            _ => {}
        }
    }
}

/// A status line with only the `O` and `k` flags.
fn status_line(status: &[u8], req: &MetaRequest, out: &mut Vec<u8>) {
    out.extend_from_slice(status);
    write_opaque_and_key(req, out);
    out.extend_from_slice(b"\r\n");
}

/// `t`: seconds left, -1 for never; memcached prints the difference as unsigned.
fn write_ttl(exptime: u32, now: u32, out: &mut Vec<u8>) {
    if exptime == 0 {
        out.extend_from_slice(b" t-1");
    } else {
        let _ = write!(out, " t{}", exptime.wrapping_sub(now));
    }
}

fn get(shard: &mut ShardState, req: &MetaRequest, clock: &Clock, out: &mut Vec<u8>) {
    let now = clock.rel_secs;
    let f = &req.flags;
    let (slot, created) = find_or_vivify(shard, req, now);
    let store = &mut shard.store;
    let stats = &mut shard.stats;
    let Some(slot) = slot else {
        stats.cmd_get += 1;
        stats.get_misses += 1;
        if !f.quiet {
            status_line(b"EN", req, out);
        }
        return;
    };
    let value_len = store.meta_view(slot).item.value.len();
    if f.value {
        let _ = write!(out, "VA {value_len}");
    } else {
        out.extend_from_slice(b"HD");
    }
    let (mut won, ttl_set) = write_get_flags(store, slot, req, clock, created, out);
    let view = store.meta_view(slot);
    // A reader is told a token went out before it is told the item is stale.
    if view.token_sent {
        out.extend_from_slice(b" Z");
    }
    if view.stale {
        out.extend_from_slice(b" X");
        won |= !view.token_sent;
    }
    if won {
        out.extend_from_slice(b" W");
    }
    out.extend_from_slice(b"\r\n");
    if f.value {
        out.extend_from_slice(view.item.value);
        out.extend_from_slice(b"\r\n");
    }
    let stale = view.stale;
    if won {
        store.set_marks(slot, stale, true);
    }
    if !f.no_bump {
        store.bump(slot, now);
    }
    if ttl_set {
        stats.cmd_touch += 1;
        stats.touch_hits += 1;
    } else {
        stats.cmd_get += 1;
        stats.get_hits += 1;
    }
}

/// `mg`'s item: the live one, or on a miss with `N` an empty one made now (and
/// whether it was made here).
fn find_or_vivify(shard: &mut ShardState, req: &MetaRequest, now: u32) -> (Option<Slot>, bool) {
    let f = &req.flags;
    let key = req.key.bytes();
    let store = &mut shard.store;
    let mut created = false;
    let slot = match store.find(key, now) {
        Ok(slot) => Some(slot),
        Err(miss) => {
            count_miss_cause(&mut shard.stats, miss);
            if f.vivify_ttl.is_some() {
                // memcached makes an empty item, flags 0; `N` sets its TTL below.
                let options = StoreOptions {
                    cas: f.new_cas,
                    ..StoreOptions::default()
                };
                let outcome = store.store_with(StoreMode::Add, key, 0, 0, b"", now, options);
                created = matches!(outcome, StoreOutcome::Stored(_));
                store.find(key, now).ok().filter(|_| created)
            } else {
                None
            }
        }
    };
    (slot, created)
}

/// Writes `mg`'s return flags in the order asked and applies its `T` and `N`:
/// whether the flags won the recache token, and whether `T` set a new TTL.
fn write_get_flags(
    store: &mut Store,
    slot: Slot,
    req: &MetaRequest,
    clock: &Clock,
    created: bool,
    out: &mut Vec<u8>,
) -> (bool, bool) {
    let now = clock.rel_secs;
    let f = &req.flags;
    let value_len = store.meta_view(slot).item.value.len();
    let mut won = false;
    let mut ttl_set = false;
    for token in req.flag_tokens() {
        let view = store.meta_view(slot);
        let item = view.item;
        match token[0] {
            b'T' => {
                ttl_set = true;
                store.set_exptime(slot, expiry(f.ttl.unwrap_or(0), clock));
            }
            b'N' if created => {
                store.set_exptime(slot, expiry(f.vivify_ttl.unwrap_or(0), clock));
                won = true;
            }
            b'R' => {
                let recache = expiry(f.recache_ttl.unwrap_or(0), clock);
                if !view.token_sent && !created && item.exptime != 0 && item.exptime < recache {
                    won = true;
                }
            }
            b's' => {
                let _ = write!(out, " s{value_len}");
            }
            b't' => write_ttl(item.exptime, now, out),
            b'c' => {
                let _ = write!(out, " c{}", item.cas);
            }
            b'f' => {
                let _ = write!(out, " f{}", item.flags);
            }
            b'l' => {
                let _ = write!(out, " l{}", now.wrapping_sub(item.atime));
            }
            b'h' => {
                let _ = write!(out, " h{}", u8::from(view.fetched));
            }
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => write_key(item.key, view.key_binary, out),
            _ => {}
        }
    }
    (won, ttl_set)
}

fn set(shard: &mut ShardState, req: &MetaRequest, clock: &Clock, out: &mut Vec<u8>) {
    let now = clock.rel_secs;
    let f = &req.flags;
    let key = req.key.bytes();
    let store = &mut shard.store;
    if req.swallow_bytes > 0 {
        // memcached refuses the item before reading it, and drops the old value.
        shard.stats.store_too_large += 1;
        store.unlink(key);
        out.extend_from_slice(reply::TOO_LARGE);
        return;
    }
    let mode = match (f.set_mode, f.compare_cas) {
        (SetMode::Set | SetMode::Replace, Some(cas)) => StoreMode::Cas(cas),
        (SetMode::Set, None) => StoreMode::Set,
        (SetMode::Replace, None) => StoreMode::Replace,
        (SetMode::Add, _) => StoreMode::Add,
        (SetMode::Append, _) => StoreMode::Append,
        (SetMode::Prepend, _) => StoreMode::Prepend,
    };
    let options = StoreOptions {
        cas: f.new_cas,
        stale_if_older: f.invalidate,
        append_cas: f.compare_cas,
        key_binary: req.key.is_binary(),
    };
    let exptime = expiry(f.ttl.unwrap_or(0), clock);
    let outcome = store.store_with(mode, key, f.client_flags, exptime, req.data, now, options);
    shard.watch_store(key, mode, outcome, exptime, req.data.len(), now);
    let store = &mut shard.store;
    shard.stats.cmd_set += 1;
    let (status, cas): (&[u8], u64) = match outcome {
        StoreOutcome::Stored(cas) => (b"HD", cas),
        StoreOutcome::NotStored => (b"NS", 0),
        StoreOutcome::Exists => (b"EX", 0),
        StoreOutcome::NotFound => (b"NF", 0),
        StoreOutcome::TooLarge | StoreOutcome::OutOfMemory => {
            store.unlink(key);
            let line = if outcome == StoreOutcome::TooLarge {
                shard.stats.store_too_large += 1;
                reply::TOO_LARGE
            } else {
                shard.stats.store_no_memory += 1;
                reply::STORE_OUT_OF_MEMORY
            };
            out.extend_from_slice(line);
            return;
        }
    };
    if f.quiet && status == b"HD" {
        return;
    }
    out.extend_from_slice(status);
    for token in req.flag_tokens() {
        match token[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => write_key(key, req.key.is_binary(), out),
            b'c' => {
                let _ = write!(out, " c{cas}");
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn delete(shard: &mut ShardState, req: &MetaRequest, clock: &Clock, out: &mut Vec<u8>) {
    let now = clock.rel_secs;
    let f = &req.flags;
    let key = req.key.bytes();
    let store = &mut shard.store;
    let stats = &mut shard.stats;
    let slot = match store.find(key, now) {
        Ok(slot) => slot,
        Err(miss) => {
            count_miss_cause(stats, miss);
            stats.delete_misses += 1;
            return status_line(b"NF", req, out);
        }
    };
    let old_cas = store.meta_view(slot).item.cas;
    if f.compare_cas.is_some_and(|cas| cas != old_cas) {
        stats.delete_misses += 1;
        return status_line(b"EX", req, out);
    }
    let mut slot = slot;
    if f.remove_value {
        // 1.6.45: the item is replaced by an empty one (flags from F, TTL from T)
        // that keeps the old CAS unless E gives one.
        let options = StoreOptions {
            cas: Some(f.new_cas.unwrap_or(old_cas)),
            key_binary: req.key.is_binary(),
            ..StoreOptions::default()
        };
        let exptime = expiry(f.ttl.unwrap_or(0), clock);
        let outcome = store.store_with(
            StoreMode::Set,
            key,
            f.client_flags,
            exptime,
            b"",
            now,
            options,
        );
        match (outcome, store.find(key, now)) {
            (StoreOutcome::Stored(_), Ok(new_slot)) => slot = new_slot,
            _ => {
                out.extend_from_slice(reply::ARITH_OUT_OF_MEMORY);
                return;
            }
        }
    }
    if f.invalidate {
        if let Some(ttl) = f.ttl {
            store.set_exptime(slot, expiry(ttl, clock));
        }
        store.set_marks(slot, true, false);
        let cas = match f.new_cas {
            Some(cas) => cas,
            None => store.new_cas(),
        };
        store.set_cas(slot, cas);
    } else {
        stats.delete_hits += 1;
        if !f.remove_value {
            store.unlink(key);
        }
    }
    if !f.quiet {
        status_line(b"HD", req, out);
    }
}

fn arith(shard: &mut ShardState, req: &MetaRequest, clock: &Clock, out: &mut Vec<u8>) {
    let now = clock.rel_secs;
    let f = &req.flags;
    let key = req.key.bytes();
    let Some((value, created)) = apply_delta(shard, req, now, out) else {
        return;
    };
    let store = &mut shard.store;
    let mut digits = [0u8; 20];
    let Ok(slot) = store.find(key, now) else {
        return out.extend_from_slice(reply::ARITH_OUT_OF_MEMORY);
    };
    if !created {
        if let Some(cas) = f.new_cas {
            store.set_cas(slot, cas);
        }
    }
    let text = format_u64(value, &mut digits);
    let start = out.len();
    if f.value {
        let _ = write!(out, "VA {}", text.len());
    } else {
        out.extend_from_slice(b"HD");
    }
    for token in req.flag_tokens() {
        match token[0] {
            b'c' => {
                let _ = write!(out, " c{}", store.meta_view(slot).item.cas);
            }
            b't' => write_ttl(store.meta_view(slot).item.exptime, now, out),
            b'T' => store.set_exptime(slot, expiry(f.ttl.unwrap_or(0), clock)),
            b'N' if created => store.set_exptime(slot, expiry(f.vivify_ttl.unwrap_or(0), clock)),
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => write_key(key, req.key.is_binary(), out),
            _ => {}
        }
    }
    if f.value {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(text);
    }
    out.extend_from_slice(b"\r\n");
    // 1.6.18 silences a quiet hit, not a vivified miss.
    if f.quiet && !created {
        out.truncate(start);
    }
}

/// `ma`'s change to the store: the delta applied to the live item, or on a miss
/// with `N` the initial value stored; the new value and whether the item was
/// made here, or `None` when the reply (an error or a miss) is already written.
fn apply_delta(
    shard: &mut ShardState,
    req: &MetaRequest,
    now: u32,
    out: &mut Vec<u8>,
) -> Option<(u64, bool)> {
    let f = &req.flags;
    let key = req.key.bytes();
    let store = &mut shard.store;
    let stats = &mut shard.stats;
    let incr = f.arith_op == ArithOp::Incr;
    let mut digits = [0u8; 20];
    let mut created = false;
    let value = match store.find(key, now) {
        Ok(slot) => {
            let item = store.meta_view(slot).item;
            // memcached's do_add_delta refuses an empty value before it compares
            // the CAS: a wrong CAS on one is still a non-numeric value.
            if item.value.is_empty() {
                out.extend_from_slice(reply::NON_NUMERIC);
                return None;
            }
            if f.compare_cas.is_some_and(|c| c != 0 && c != item.cas) {
                status_line(b"EX", req, out);
                return None;
            }
            match store.arith(f.arith_op, key, f.delta, now) {
                ArithOutcome::Value(value) => {
                    if incr {
                        stats.incr_hits += 1;
                    } else {
                        stats.decr_hits += 1;
                    }
                    value
                }
                ArithOutcome::NonNumeric => {
                    out.extend_from_slice(reply::NON_NUMERIC);
                    return None;
                }
                ArithOutcome::OutOfMemory | ArithOutcome::NotFound => {
                    out.extend_from_slice(reply::ARITH_OUT_OF_MEMORY);
                    return None;
                }
            }
        }
        Err(miss) => {
            count_miss_cause(stats, miss);
            if f.vivify_ttl.is_none() {
                if incr {
                    stats.incr_misses += 1;
                } else {
                    stats.decr_misses += 1;
                }
                status_line(b"NF", req, out);
                return None;
            }
            let text = format_u64(f.initial, &mut digits);
            let options = StoreOptions {
                cas: f.new_cas,
                ..StoreOptions::default()
            };
            let text = text.to_vec();
            match store.store_with(StoreMode::Add, key, 0, 0, &text, now, options) {
                StoreOutcome::Stored(_) => created = true,
                _ => {
                    out.extend_from_slice(b"SERVER_ERROR Out of memory allocating new item\r\n");
                    return None;
                }
            }
            f.initial
        }
    };
    Some((value, created))
}

/// `me <key>`: memcached's debug line, without bumping the item.
fn debug(shard: &mut ShardState, req: &MetaRequest, clock: &Clock, out: &mut Vec<u8>) {
    let now = clock.rel_secs;
    let store = &mut shard.store;
    let Ok(slot) = store.find(req.key.bytes(), now) else {
        return out.extend_from_slice(b"EN\r\n");
    };
    let size = store.memcached_item_bytes(slot);
    let view = store.meta_view(slot);
    let item = view.item;
    out.extend_from_slice(b"ME ");
    if view.key_binary {
        base64_encode(item.key, out);
    } else {
        out.extend_from_slice(item.key);
    }
    let exp = if item.exptime == 0 {
        -1
    } else {
        now.wrapping_sub(item.exptime) as i32
    };
    let _ = write!(
        out,
        " exp={exp} la={} cas={} fetch={} cls={} size={size}\r\n",
        now.wrapping_sub(item.atime),
        item.cas,
        if view.fetched { "yes" } else { "no" },
        memcached_slab_class(size),
    );
}

/// The slab class memcached 1.6 (default `-n 48 -f 1.25`) would put an item of
/// `size` bytes in: classes start at 96 bytes and grow by 1.25, 8-byte aligned.
fn memcached_slab_class(size: usize) -> u32 {
    const CLASS_MAX_BYTES: usize = 512 * 1024;
    let mut class_bytes = 96usize;
    let mut class = 1;
    while class_bytes < size && class_bytes < CLASS_MAX_BYTES {
        class_bytes = (class_bytes as f64 * 1.25) as usize;
        class_bytes = class_bytes.next_multiple_of(8).min(CLASS_MAX_BYTES);
        class += 1;
    }
    class
}

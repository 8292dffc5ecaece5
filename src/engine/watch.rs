//! memcached's `watch` log lines, as a shard writes them (pure).
//!
//! A shard notes what watchers asked to see (`fetchers`, `mutations`,
//! `evictions`, `connevents`) in its [`WatchLog`]; with nobody watching,
//! `wanted` is 0 and every hook is one test of it. Evictions happen inside the
//! store, which notes them while `evictions` is wanted; the shard turns the
//! notes into lines before it hands its lines over. Lines are written here without their
//! `ts=... gid=...` prefix: the runtime stamps them with the wall clock and
//! the node's log ids ([`stamp`]) when it hands them to the watchers.
//!
//! # Format
//!
//! memcached 1.6.18's, one line per event, ended by `\n` alone:
//!
//! ```text
//! ts=1700000000.123456 gid=7 type=item_get key=foo status=found clsid=1 cfd=23 size=3
//! ts=1700000000.123460 gid=8 type=item_store key=foo status=stored cmd=set ttl=0 clsid=1 cfd=23 size=3
//! ts=1700000000.123470 gid=9 type=conn_new rip=127.0.0.1 rport=51996 transport=tcp cfd=23
//! ts=1700000000.123480 gid=10 type=conn_close rip=127.0.0.1 rport=51996 transport=tcp reason=normal cfd=23
//! ts=1700000000.123490 gid=11 type=eviction key=foo fetch=yes ttl=-1 la=3 clsid=1 size=3
//! skipped=12
//! ```
//!
//! memcached prints the microseconds without leading zeros (`%d`), and so
//! does this. `skipped=N` tells a watcher that N lines did not fit its queue.
//! An eviction's `ttl` is the seconds the item had left (`-1`: no expiry), `la`
//! the seconds since its last access, `size` its value's length.

use crate::storage::Evicted;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// `watch fetchers`: every lookup of a key (`item_get`), the one before a store included.
pub const FETCHERS: u8 = 1;
/// `watch mutations`: every storage command's outcome (`item_store`).
pub const MUTATIONS: u8 = 2;
/// `watch evictions`: every item evicted to make room (`eviction`).
pub const EVICTIONS: u8 = 4;
/// `watch connevents`: client connections opening and closing.
pub const CONNEVENTS: u8 = 8;

/// The kinds `watch` asks for; `None`: an argument memcached 1.6.18 does not
/// know (answered `ERROR`). No argument: `fetchers`, as in memcached.
pub fn parse_kinds<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Option<u8> {
    let Some(first) = args.next() else {
        return Some(FETCHERS);
    };
    let mut kinds = 0;
    for arg in std::iter::once(first).chain(args) {
        kinds |= match arg {
            b"fetchers" => FETCHERS,
            b"mutations" => MUTATIONS,
            b"evictions" => EVICTIONS,
            b"connevents" => CONNEVENTS,
            // memcached accepts these; none of their events happen here.
            b"rawcmds" | b"sysevents" | b"proxyreqs" | b"proxyevents" | b"proxyuser" => 0,
            _ => return None,
        };
    }
    Some(kinds)
}

/// How a lookup ended, in memcached's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    NotFound,
    Found,
    Flushed,
    Expired,
}

/// A storage command's outcome, in memcached's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    NotStored,
    Stored,
    Exists,
    NotFound,
    TooLarge,
    NoMemory,
}

/// Why a connection closed, in memcached's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Error,
    Normal,
    Shutdown,
}

/// One shard's pending log lines and what its watchers want.
#[derive(Debug, Default)]
pub struct WatchLog {
    /// The kinds some watcher of the node wants (0: nobody watches), set by
    /// the runtime before requests run.
    pub wanted: u8,
    /// The connection whose requests run now (memcached's `cfd`).
    pub cfd: u64,
    /// Line bodies, each ended by `\n`.
    pub lines: Vec<u8>,
    /// For each line of `lines`: its kind and where it ends.
    pub ends: Vec<(u8, u32)>,
    /// Evictions the store could not note (too many at once): `skipped` for
    /// every evictions watcher.
    pub evictions_dropped: u64,
}

impl WatchLog {
    #[inline]
    pub fn wants(&self, kind: u8) -> bool {
        self.wanted & kind != 0
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.evictions_dropped == 0
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.ends.clear();
        self.evictions_dropped = 0;
    }

    fn end_line(&mut self, kind: u8) {
        self.lines.push(b'\n');
        self.ends.push((kind, self.lines.len() as u32));
    }

    /// `type=item_get`: a lookup of `key`; `size` is the value's length when found.
    pub fn item_get(&mut self, key: &[u8], fetched: Fetched, size: usize) {
        let (status, clsid, size) = match fetched {
            Fetched::Found => ("found", 1, size),
            Fetched::NotFound => ("not_found", 0, 0),
            Fetched::Flushed => ("flushed", 0, 0),
            Fetched::Expired => ("expired", 0, 0),
        };
        self.lines.extend_from_slice(b"type=item_get key=");
        super::write_uri_encoded(key, &mut self.lines);
        let cfd = self.cfd;
        let _ = write!(
            Text(&mut self.lines),
            " status={status} clsid={clsid} cfd={cfd} size={size}"
        );
        self.end_line(FETCHERS);
    }

    /// `type=item_store`: `cmd` (`set`, `add`, `cas`...) on `key` ended as
    /// `stored`, with `ttl_secs` left (0: never expires) and `size` bytes of value.
    pub fn item_store(
        &mut self,
        key: &[u8],
        stored: Stored,
        cmd: &str,
        ttl_secs: u32,
        size: usize,
    ) {
        let status = match stored {
            Stored::NotStored => "not_stored",
            Stored::Stored => "stored",
            Stored::Exists => "exists",
            Stored::NotFound => "not_found",
            Stored::TooLarge => "too_large",
            Stored::NoMemory => "no_memory",
        };
        // memcached refuses a too-large item before giving it a class.
        let clsid = u8::from(stored != Stored::TooLarge);
        self.lines.extend_from_slice(b"type=item_store key=");
        super::write_uri_encoded(key, &mut self.lines);
        let cfd = self.cfd;
        let _ = write!(
            Text(&mut self.lines),
            " status={status} cmd={cmd} ttl={ttl_secs} clsid={clsid} cfd={cfd} size={size}"
        );
        self.end_line(MUTATIONS);
    }

    /// `type=eviction`: `key` was evicted to make room. This store has no slab
    /// classes: every item is class 1, as in the other lines.
    pub fn eviction(&mut self, key: &[u8], evicted: Evicted) {
        self.lines.extend_from_slice(b"type=eviction key=");
        super::write_uri_encoded(key, &mut self.lines);
        let fetch = if evicted.fetched { "yes" } else { "no" };
        let _ = write!(Text(&mut self.lines), " fetch={fetch} ttl=");
        match evicted.ttl_secs {
            Some(ttl_secs) => {
                let _ = write!(Text(&mut self.lines), "{ttl_secs}");
            }
            None => self.lines.extend_from_slice(b"-1"),
        }
        let (idle_secs, size) = (evicted.idle_secs, evicted.value_len);
        let _ = write!(Text(&mut self.lines), " la={idle_secs} clsid=1 size={size}");
        self.end_line(EVICTIONS);
    }

    /// `type=conn_new`: connection `cfd` opened from `peer`.
    pub fn conn_new(&mut self, peer: Option<SocketAddr>, cfd: u64) {
        self.lines.extend_from_slice(b"type=conn_new ");
        write_peer(peer, &mut self.lines);
        let _ = write!(Text(&mut self.lines), " transport=tcp cfd={cfd}");
        self.end_line(CONNEVENTS);
    }

    /// `type=conn_close`: connection `cfd` from `peer` closed.
    pub fn conn_close(&mut self, peer: Option<SocketAddr>, cfd: u64, reason: CloseReason) {
        let reason = match reason {
            CloseReason::Error => "error",
            CloseReason::Normal => "normal",
            CloseReason::Shutdown => "shutdown",
        };
        self.lines.extend_from_slice(b"type=conn_close ");
        write_peer(peer, &mut self.lines);
        let _ = write!(
            Text(&mut self.lines),
            " transport=tcp reason={reason} cfd={cfd}"
        );
        self.end_line(CONNEVENTS);
    }
}

fn write_peer(peer: Option<SocketAddr>, out: &mut Vec<u8>) {
    let (ip, port) = match peer {
        Some(addr) => (addr.ip().to_string(), addr.port()),
        None => (String::new(), 0),
    };
    let _ = write!(Text(out), "rip={ip} rport={port}");
}

/// Appends `body` (one line, `\n` included) with memcached's prefix: the time
/// as seconds and unpadded microseconds, and the line's log id.
pub fn stamp(body: &[u8], unix_micros: u64, gid: u64, out: &mut Vec<u8>) {
    let _ = write!(
        Text(out),
        "ts={}.{} gid={gid} ",
        unix_micros / 1_000_000,
        unix_micros % 1_000_000
    );
    out.extend_from_slice(body);
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_without_arguments_is_fetchers_and_an_unknown_one_is_refused() {
        assert_eq!(parse_kinds(std::iter::empty()), Some(FETCHERS));
        let args: [&[u8]; 2] = [b"mutations", b"connevents"];
        assert_eq!(parse_kinds(args.into_iter()), Some(MUTATIONS | CONNEVENTS));
        let args: [&[u8]; 2] = [b"fetchers", b"deletions"];
        assert_eq!(parse_kinds(args.into_iter()), None);
    }

    #[test]
    fn lines_read_as_memcacheds() {
        let mut log = WatchLog {
            wanted: FETCHERS | MUTATIONS | EVICTIONS | CONNEVENTS,
            cfd: 25,
            ..WatchLog::default()
        };
        log.item_get(b"a b", Fetched::Found, 3);
        log.item_get(b"nope", Fetched::NotFound, 0);
        log.item_store(b"foo", Stored::NotStored, "add", 0, 1);
        let peer: SocketAddr = "127.0.0.1:51996".parse().unwrap();
        log.conn_new(Some(peer), 25);
        log.conn_close(Some(peer), 25, CloseReason::Normal);
        let evicted = Evicted {
            fetched: false,
            ttl_secs: None,
            idle_secs: 0,
            value_len: 1000,
        };
        log.eviction(b"k0", evicted);
        let evicted = Evicted {
            fetched: true,
            ttl_secs: Some(97),
            idle_secs: 3,
            value_len: 1000,
        };
        log.eviction(b"a%b", evicted);
        assert_eq!(
            String::from_utf8(log.lines.clone()).unwrap(),
            "type=item_get key=a%20b status=found clsid=1 cfd=25 size=3\n\
             type=item_get key=nope status=not_found clsid=0 cfd=25 size=0\n\
             type=item_store key=foo status=not_stored cmd=add ttl=0 clsid=1 cfd=25 size=1\n\
             type=conn_new rip=127.0.0.1 rport=51996 transport=tcp cfd=25\n\
             type=conn_close rip=127.0.0.1 rport=51996 transport=tcp reason=normal cfd=25\n\
             type=eviction key=k0 fetch=no ttl=-1 la=0 clsid=1 size=1000\n\
             type=eviction key=a%25b fetch=yes ttl=97 la=3 clsid=1 size=1000\n"
        );
        let kinds: Vec<u8> = log.ends.iter().map(|&(k, _)| k).collect();
        assert_eq!(
            kinds,
            [FETCHERS, FETCHERS, MUTATIONS, CONNEVENTS, CONNEVENTS, EVICTIONS, EVICTIONS]
        );
        let mut out = Vec::new();
        stamp(b"type=x\n", 1_796_433_484_096_117, 43, &mut out);
        assert_eq!(out, b"ts=1796433484.96117 gid=43 type=x\n");
    }
}

//! memcached's text protocol: one request line (and data block) at a time (pure).
//!
//! # Format
//! ```text
//! <command> <key> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n   storage
//! cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]\r\n<data>\r\n
//! get|gets <key>*\r\n            gat|gats <exptime> <key>*\r\n
//! delete <key> [noreply]\r\n     incr|decr <key> <value> [noreply]\r\n
//! touch <key> <exptime> [noreply]\r\n
//! flush_all [delay] [noreply]\r\n   version | verbosity | quit | shutdown | stats ...
//! ```

use super::ParseLimits;

/// Which retrieval command: `gets`/`gats` also return the CAS unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetKind {
    Get,
    Gets,
}

/// Which storage command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// `cas`: store only if the item's CAS unique still equals this one.
    Cas(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Incr,
    Decr,
}

/// Whether the client asked for no reply (`noreply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Wanted,
    Suppressed,
}

/// The keys of a multi-key retrieval, iterated in place without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    /// The part of the line holding the keys, separated by one or more spaces.
    pub raw: &'a [u8],
}

impl<'a> Keys<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

/// One parsed text request. Keys and data borrow from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`/`gets` (`exptime: None`) and `gat`/`gats` (`exptime: Some(..)`).
    Get {
        kind: GetKind,
        exptime: Option<i64>,
        keys: Keys<'a>,
    },
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        data: &'a [u8],
        reply: Reply,
    },
    /// A storage command whose data block is larger than `-I` allows. Its data
    /// block (`swallow_bytes`, counting the trailing `\r\n`) follows the line and must
    /// be skipped by the caller; memcached also unlinks the key for `set`.
    TooLarge {
        mode: StoreMode,
        key: &'a [u8],
        swallow_bytes: usize,
        reply: Reply,
    },
    Delete {
        key: &'a [u8],
        reply: Reply,
    },
    Arith {
        op: ArithOp,
        key: &'a [u8],
        delta: u64,
        reply: Reply,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        reply: Reply,
    },
    FlushAll {
        delay_secs: i64,
        reply: Reply,
    },
    Version,
    Verbosity {
        reply: Reply,
    },
    Quit,
    /// `shutdown [graceful]`; served only with `-A`.
    Shutdown,
    CacheMemlimit {
        megabytes: u64,
        reply: Reply,
    },
    /// `stats [group]`: `group` is empty for the general stats.
    Stats {
        group: &'a [u8],
    },
}

/// Why no request could be taken from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// The request was malformed: answer `reply` (a complete line such as
    /// `b"ERROR\r\n"`, or empty when memcached sends nothing), drop `consumed` bytes
    /// and then skip `swallow_bytes` more as they arrive.
    Invalid {
        reply: &'static [u8],
        consumed: usize,
        swallow_bytes: usize,
    },
    /// A line with no `\n` grew past the limit: memcached closes the connection.
    LineTooLong,
}

/// Takes one request from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<(Request<'a>, usize), ParseError> {
    let _ = (buf, limits);
    Err(ParseError::Incomplete)
}

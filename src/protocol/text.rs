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
//!
//! The reference is memcached 1.6.18, byte for byte, including its quirks: the line
//! is cut on single spaces only (a tab is part of a token), it ends at the first NUL,
//! numbers are read with C's `strtoul`/`strtol` (leading whitespace and a sign are
//! accepted, values are truncated to 32 bits where memcached stores them in 32
//! bits), `noreply` is honoured when it is the last token whatever the token count,
//! and a malformed storage line does not swallow its data block (memcached then reads
//! the block as a command), while an over-large one does.
//!
//! Meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`) share the line rules and are
//! parsed in [`super::meta`].

use super::carried::Slices;
use super::meta::{MetaCommand, MetaRequest};
use super::tokens::{safe_strtol, Tokens};
pub use super::tokens::{safe_strtoul, safe_strtoull};
use super::ParseLimits;
use crate::limits::{
    item_fits, KEY_LEN_MAX, LEADING_SPACES_MAX, LINE_LEN_MAX, MEMLIMIT_MAX_MB, MEMLIMIT_MIN_MB,
    MULTIGET_LINE_LEN_MAX, VERBOSITY_MAX,
};

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

/// How a retrieval ends. memcached looks keys up one by one and meets an
/// over-long key only when it gets there: the keys before it have been fetched
/// (counted, marked fetched, touched by `gat`) when it answers
/// `CLIENT_ERROR bad command line format` instead of their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetEnding {
    /// `END` after the values.
    End,
    /// `keys` are those before an over-long key: look them up, drop their values,
    /// and answer `CLIENT_ERROR bad command line format`.
    KeyTooLong,
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

impl<'a> Request<'a> {
    /// The key a single-key request acts on (a meta key decoded from base64):
    /// the key it is routed by. `None` for a multi-key get and for requests
    /// without a key (`mn` among them).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Request::Store { key, .. }
            | Request::TooLarge { key, .. }
            | Request::Delete { key, .. }
            | Request::Arith { key, .. }
            | Request::Touch { key, .. } => Some(key),
            // Meta: every command but `mn` names one key (`me` too: it reads the owner's item).
            Request::Meta(meta) if meta.command != MetaCommand::Noop => Some(meta.key.bytes()),
            _ => None,
        }
    }
}

impl<'a> Slices<'a> for Request<'a> {
    type With<'b> = Request<'b>;

    fn map_slices<'b>(&self, mut f: impl FnMut(&'a [u8]) -> &'b [u8]) -> Request<'b> {
        match *self {
            Request::Get {
                kind,
                exptime,
                keys,
                ending,
            } => Request::Get {
                kind,
                exptime,
                keys: Keys { raw: f(keys.raw) },
                ending,
            },
            Request::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                reply,
            } => Request::Store {
                mode,
                key: f(key),
                flags,
                exptime,
                data: f(data),
                reply,
            },
            Request::TooLarge {
                mode,
                key,
                swallow_bytes,
                reply,
            } => Request::TooLarge {
                mode,
                key: f(key),
                swallow_bytes,
                reply,
            },
            Request::Delete { key, reply } => Request::Delete { key: f(key), reply },
            Request::Arith {
                op,
                key,
                delta,
                reply,
            } => Request::Arith {
                op,
                key: f(key),
                delta,
                reply,
            },
            Request::Touch {
                key,
                exptime,
                reply,
            } => Request::Touch {
                key: f(key),
                exptime,
                reply,
            },
            Request::FlushAll { delay_secs, reply } => Request::FlushAll { delay_secs, reply },
            Request::Version => Request::Version,
            Request::Verbosity { level, reply } => Request::Verbosity { level, reply },
            Request::Quit => Request::Quit,
            Request::Shutdown { mode } => Request::Shutdown { mode },
            Request::CacheMemlimit { megabytes, reply } => {
                Request::CacheMemlimit { megabytes, reply }
            }
            Request::SlabsAutomove { reply } => Request::SlabsAutomove { reply },
            Request::Stats { group } => Request::Stats { group: f(group) },
            Request::Meta(meta) => Request::Meta(meta.map_slices(f)),
            Request::LruCrawler(crawler) => Request::LruCrawler(crawler),
            Request::Watch { args } => Request::Watch { args: f(args) },
        }
    }
}

/// What `shutdown` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// `shutdown`: stop now (memcached raises SIGINT).
    Immediate,
    /// `shutdown graceful`: stop once connections are done (memcached raises SIGUSR1).
    Graceful,
    /// Anything else: `CLIENT_ERROR invalid shutdown mode` when shutdown is enabled.
    Invalid,
}

/// One parsed text request. Keys and data borrow from the read buffer.
///
/// `Meta` is the large variant: it carries a base64 key decoded in place, so that
/// parsing never allocates; a request lives on the stack for one dispatch.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`/`gets` (`exptime: None`) and `gat`/`gats` (`exptime: Some(..)`).
    Get {
        kind: GetKind,
        exptime: Option<i64>,
        keys: Keys<'a>,
        ending: GetEnding,
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
    /// `verbosity <level>`, the level already capped at [`VERBOSITY_MAX`].
    Verbosity {
        level: u32,
        reply: Reply,
    },
    /// `quit`: close the connection once earlier replies are written.
    Quit,
    /// `shutdown [graceful]`; served only with `-A`, otherwise answered
    /// `ERROR: shutdown not enabled` whatever its arguments.
    Shutdown {
        mode: ShutdownMode,
    },
    CacheMemlimit {
        megabytes: u64,
        reply: Reply,
    },
    /// `slabs automove 0|1|2` or `slabs automove ratio <r>`: answered `OK` as
    /// memcached does; the store has no slab classes to move memory between.
    SlabsAutomove {
        reply: Reply,
    },
    /// `stats [group [args]]`: `group` is the rest of the line from the first
    /// argument on (`b"items"`, `b"detail dump"`); empty for the general stats.
    Stats {
        group: &'a [u8],
    },
    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`): see [`super::meta`].
    Meta(MetaRequest<'a>),
    /// `lru_crawler crawl <classes>` or `lru_crawler metadump <all|hash|classes>`.
    LruCrawler(LruCrawler),
    /// `watch [kinds...]`: the rest of the line from the first kind on (the
    /// runtime checks the kinds, see `engine::watch::parse_kinds`).
    Watch {
        args: &'a [u8],
    },
}

/// What an `lru_crawler` line asks. The store's items are all in class 1 (as
/// `stats items` shows them), so a class list names them or none of them.
///
/// # Format
///
/// ```text
/// lru_crawler crawl all|<class>[,<class>...]
/// lru_crawler metadump all|hash|<class>[,<class>...]
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruCrawler {
    /// Answered `OK`: expired items are already unlinked as they are met.
    Crawl,
    /// One line per live item (with `every_item`), then `END`.
    Metadump { every_item: bool },
    /// A class id outside 1..=63, or not a number: `BADCLASS invalid class id`.
    BadClass,
}

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: class ids are 1 to this less one.
const SLAB_CLASSES_MAX: u32 = 64;

/// The class the store's items are in.
const ITEM_CLASS: u32 = 1;

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
    /// A line memcached takes for an HTTP request (an unknown command whose last
    /// token starts with `HTTP/`): it closes the connection at once, with no reply.
    Http,
}

/// The highest `slabs automove` level memcached takes.
const SLAB_AUTOMOVE_LEVEL_MAX: u32 = 2;

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_DATA_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const DELETE_USAGE: &[u8] =
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
const MEMLIMIT_TOO_SMALL: &[u8] = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n";
const MEMLIMIT_NOT_BYTES: &[u8] = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n";

/// Takes one request from the front of `buf`.
///
/// A line is complete at its `\n`; one `\r` before it is dropped, as memcached does,
/// unless the line is only `\r`. A storage request is complete once its data block
/// and the two bytes after it are buffered. With no `\n` in more than
/// [`LINE_LEN_MAX`] bytes the answer is [`ParseError::LineTooLong`] unless the line
/// is a `get`/`gets` (then up to [`MULTIGET_LINE_LEN_MAX`]). Like memcached, this
/// depends on how much is buffered: a longer line whose `\n` is already in `buf`
/// is parsed.
pub fn parse<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<(Request<'a>, usize), ParseError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return Err(unterminated_line(buf));
    };
    let line_len = nl + 1;
    let mut end = nl;
    if end > 1 && buf[end - 1] == b'\r' {
        end -= 1;
    }
    // memcached reads the line as a C string: it ends at the first NUL.
    let line = match memchr::memchr(0, &buf[..end]) {
        Some(nul) => &buf[..nul],
        None => &buf[..end],
    };
    let tokens = Tokens::new(line);
    let request = match tokens.command() {
        Some(cmd) if cmd.len() >= 2 => command(cmd, &tokens, &buf[line_len..], limits),
        _ => Err(Rejection::Line(ERROR)),
    };
    match request {
        Ok((request, data_len)) => Ok((request, line_len + data_len)),
        Err(Rejection::Line(reply)) => Err(ParseError::Invalid {
            reply,
            consumed: line_len,
            swallow_bytes: 0,
        }),
        Err(Rejection::Block { reply, block_len }) => Err(ParseError::Invalid {
            reply,
            consumed: line_len + block_len,
            swallow_bytes: 0,
        }),
        Err(Rejection::Incomplete) => Err(ParseError::Incomplete),
        Err(Rejection::Http) => Err(ParseError::Http),
        Err(Rejection::Swallow {
            reply,
            swallow_bytes,
        }) => Err(ParseError::Invalid {
            reply,
            consumed: line_len,
            swallow_bytes,
        }),
    }
}

/// memcached's `try_read_command_ascii` on a buffer with no `\n` yet.
fn unterminated_line(buf: &[u8]) -> ParseError {
    if buf.len() <= LINE_LEN_MAX {
        return ParseError::Incomplete;
    }
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    let is_get = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
    if spaces > LEADING_SPACES_MAX || !is_get || buf.len() > MULTIGET_LINE_LEN_MAX {
        return ParseError::LineTooLong;
    }
    ParseError::Incomplete
}

/// Why a complete line gave no request.
pub(super) enum Rejection {
    /// Answer this (possibly empty) and drop the line only.
    Line(&'static [u8]),
    /// Close the connection: the line looks like an HTTP request.
    Http,
    /// Answer this and drop the line and `block_len` bytes after it.
    Block {
        reply: &'static [u8],
        block_len: usize,
    },
    /// The line is whole but the data block after it is not.
    Incomplete,
    /// Answer this, drop the line, and skip `swallow_bytes` more as they arrive
    /// (a meta set refused after its length was read: memcached swallows its data).
    Swallow {
        reply: &'static [u8],
        swallow_bytes: usize,
    },
}

/// A request and how many bytes after its line it used (its data block).
pub(super) type Parsed<'a> = Result<(Request<'a>, usize), Rejection>;

fn command<'a>(
    cmd: &[u8],
    t: &Tokens<'a>,
    after_line: &'a [u8],
    limits: &ParseLimits,
) -> Parsed<'a> {
    // `n` counts the tokens as memcached's `ntokens` does: one more than there are.
    let n = t.count + 1;
    let line_only = |request| Ok((request, 0));
    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" if n >= 3 => retrieval(cmd, t).and_then(line_only),
        b"set" | b"add" | b"replace" | b"append" | b"prepend" if n == 6 || n == 7 => {
            storage(cmd, t, after_line, limits)
        }
        b"cas" if n == 7 || n == 8 => storage(cmd, t, after_line, limits),
        b"incr" | b"decr" if n == 4 || n == 5 => arith(cmd, t).and_then(line_only),
        b"delete" if (3..=5).contains(&n) => delete(t).and_then(line_only),
        b"touch" if n == 4 || n == 5 => touch(t).and_then(line_only),
        b"flush_all" if (2..=4).contains(&n) => flush_all(t).and_then(line_only),
        b"verbosity" if n == 3 || n == 4 => verbosity(t).and_then(line_only),
        b"cache_memlimit" if n == 3 || n == 4 => cache_memlimit(t).and_then(line_only),
        b"slabs" if n >= 4 && t.get(1) == b"automove" => slabs_automove(t).and_then(line_only),
        b"version" => line_only(Request::Version),
        b"quit" => line_only(Request::Quit),
        b"shutdown" => line_only(Request::Shutdown {
            mode: match n {
                2 => ShutdownMode::Immediate,
                3 if t.get(1) == b"graceful" => ShutdownMode::Graceful,
                _ => ShutdownMode::Invalid,
            },
        }),
        b"stats" => line_only(Request::Stats { group: t.from(1) }),
        b"watch" => line_only(Request::Watch { args: t.from(1) }),
        b"lru_crawler" if n == 4 && matches!(t.get(1), b"crawl" | b"metadump") => {
            line_only(Request::LruCrawler(lru_crawler(t.get(1), t.get(2))))
        }
        b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me" => {
            super::meta::parse(cmd, t, after_line, limits)
        }
        _ => Err(unknown_command(cmd, t)),
    }
}

/// memcached dispatches on the first letter for its common commands and answers
/// `ERROR` there; other lines that end in an `HTTP/` token close the connection.
fn unknown_command(cmd: &[u8], t: &Tokens) -> Rejection {
    let dispatched_by_letter = matches!(cmd[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
        || (cmd[0] == b'm' && cmd.len() == 2);
    // Admin commands memcached has and this server does not serve: they answer
    // `ERROR` (as memcached does without arguments) and never look like HTTP.
    let known = matches!(cmd, b"lru_crawler" | b"watch" | b"lru" | b"extstore");
    if !dispatched_by_letter && !known && t.get(t.count - 1).starts_with(b"HTTP/") {
        return Rejection::Http;
    }
    Rejection::Line(ERROR)
}

fn retrieval<'a>(cmd: &[u8], t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let kind = if cmd.ends_with(b"s") {
        GetKind::Gets
    } else {
        GetKind::Get
    };
    let (exptime, first_key) = if cmd.starts_with(b"gat") {
        let exptime = safe_strtol(t.get(1)).ok_or(Rejection::Line(BAD_EXPTIME))?;
        (Some(i64::from(exptime)), 2)
    } else {
        (None, 1)
    };
    let mut keys = Keys {
        raw: t.from(first_key),
    };
    let mut ending = GetEnding::End;
    if let Some(long) = keys.iter().find(|k| k.len() > KEY_LEN_MAX) {
        // `long` lies inside `keys.raw`: keep what comes before it.
        let before = long.as_ptr() as usize - keys.raw.as_ptr() as usize;
        keys.raw = &keys.raw[..before];
        ending = GetEnding::KeyTooLong;
    }
    Ok(Request::Get {
        kind,
        exptime,
        keys,
        ending,
    })
}

fn storage<'a>(
    cmd: &[u8],
    t: &Tokens<'a>,
    after_line: &'a [u8],
    limits: &ParseLimits,
) -> Parsed<'a> {
    let reply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_LEN_MAX {
        return Err(Rejection::Line(answer(reply, BAD_FORMAT)));
    }
    let bad_format = || Rejection::Line(answer(reply, BAD_FORMAT));
    let flags = safe_strtoul(t.get(2)).ok_or_else(bad_format)?;
    let exptime = safe_strtol(t.get(3)).ok_or_else(bad_format)?;
    let value_len = safe_strtol(t.get(4)).ok_or_else(bad_format)?;
    let mode = match cmd {
        b"set" => StoreMode::Set,
        b"add" => StoreMode::Add,
        b"replace" => StoreMode::Replace,
        b"append" => StoreMode::Append,
        b"prepend" => StoreMode::Prepend,
        _ => StoreMode::Cas(safe_strtoull(t.get(5)).ok_or_else(bad_format)?),
    };
    if !(0..=i32::MAX - 2).contains(&value_len) {
        return Err(bad_format());
    }
    let value_len = value_len as usize;
    let block_len = value_len + 2;
    if !item_fits(key.len(), flags, value_len, limits.item_size_max_bytes) {
        let request = Request::TooLarge {
            mode,
            key,
            swallow_bytes: block_len,
            reply,
        };
        return Ok((request, 0));
    }
    let Some(block) = after_line.get(..block_len) else {
        return Err(Rejection::Incomplete);
    };
    if !block.ends_with(b"\r\n") {
        let reply = answer(reply, BAD_DATA_CHUNK);
        return Err(Rejection::Block { reply, block_len });
    }
    let request = Request::Store {
        mode,
        key,
        flags,
        exptime: i64::from(exptime),
        data: &block[..value_len],
        reply,
    };
    Ok((request, block_len))
}

fn arith<'a>(cmd: &[u8], t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let reply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_LEN_MAX {
        return Err(Rejection::Line(answer(reply, BAD_FORMAT)));
    }
    let delta = safe_strtoull(t.get(2)).ok_or(Rejection::Line(answer(reply, BAD_DELTA)))?;
    let op = if cmd == b"incr" {
        ArithOp::Incr
    } else {
        ArithOp::Decr
    };
    Ok(Request::Arith {
        op,
        key,
        delta,
        reply,
    })
}

fn delete<'a>(t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let n = t.count + 1;
    // memcached still accepts the old `delete <key> 0` (a hold time of zero).
    let reply = if n > 3 { t.noreply() } else { Reply::Wanted };
    if n > 3 {
        let hold_is_zero = t.get(2) == b"0";
        let noreply = reply == Reply::Suppressed;
        let valid = (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
        if !valid {
            return Err(Rejection::Line(answer(reply, DELETE_USAGE)));
        }
    }
    let key = t.get(1);
    if key.len() > KEY_LEN_MAX {
        return Err(Rejection::Line(answer(reply, BAD_FORMAT)));
    }
    Ok(Request::Delete { key, reply })
}

fn touch<'a>(t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let reply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_LEN_MAX {
        return Err(Rejection::Line(answer(reply, BAD_FORMAT)));
    }
    let exptime = safe_strtol(t.get(2)).ok_or(Rejection::Line(answer(reply, BAD_EXPTIME)))?;
    Ok(Request::Touch {
        key,
        exptime: i64::from(exptime),
        reply,
    })
}

fn flush_all<'a>(t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let reply = t.noreply();
    let bare = if reply == Reply::Suppressed { 2 } else { 1 };
    let delay_secs = if t.count == bare {
        0
    } else {
        safe_strtol(t.get(1)).ok_or(Rejection::Line(answer(reply, BAD_EXPTIME)))?
    };
    Ok(Request::FlushAll {
        delay_secs: i64::from(delay_secs),
        reply,
    })
}

fn verbosity<'a>(t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let reply = t.noreply();
    let level = safe_strtoul(t.get(1)).ok_or(Rejection::Line(answer(reply, BAD_FORMAT)))?;
    Ok(Request::Verbosity {
        level: level.min(VERBOSITY_MAX),
        reply,
    })
}

fn cache_memlimit<'a>(t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let reply = t.noreply();
    let megabytes = u64::from(safe_strtoul(t.get(1)).ok_or(Rejection::Line(answer(reply, ERROR)))?);
    if megabytes < MEMLIMIT_MIN_MB {
        return Err(Rejection::Line(answer(reply, MEMLIMIT_TOO_SMALL)));
    }
    if megabytes > MEMLIMIT_MAX_MB {
        return Err(Rejection::Line(answer(reply, MEMLIMIT_NOT_BYTES)));
    }
    Ok(Request::CacheMemlimit { megabytes, reply })
}

/// memcached's `process_lru_crawler_command` for `crawl` and `metadump`.
fn lru_crawler(what: &[u8], classes: &[u8]) -> LruCrawler {
    let every = what == b"metadump" && (classes == b"all" || classes == b"hash");
    if every || classes == b"all" {
        return match what {
            b"crawl" => LruCrawler::Crawl,
            _ => LruCrawler::Metadump { every_item: true },
        };
    }
    let mut names_ours = false;
    for class in classes.split(|&b| b == b',') {
        match safe_strtoul(class) {
            Some(id) if (1..SLAB_CLASSES_MAX).contains(&id) => names_ours |= id == ITEM_CLASS,
            _ => return LruCrawler::BadClass,
        }
    }
    match what {
        b"crawl" => LruCrawler::Crawl,
        _ => LruCrawler::Metadump {
            every_item: names_ours,
        },
    }
}

/// memcached's `process_slabs_automove_command`: a level must be 0, 1 or 2 (a
/// number above is `ERROR`, anything else a format error); `ratio` takes a number.
fn slabs_automove<'a>(t: &Tokens<'a>) -> Result<Request<'a>, Rejection> {
    let reply = t.noreply();
    if t.get(2) == b"ratio" {
        let ratio = (t.count >= 4)
            .then(|| std::str::from_utf8(t.get(3)).ok())
            .flatten()
            .and_then(|r| r.parse::<f64>().ok());
        if ratio.is_none() {
            return Err(Rejection::Line(answer(reply, ERROR)));
        }
    } else {
        let level = safe_strtoul(t.get(2)).ok_or(Rejection::Line(answer(reply, BAD_FORMAT)))?;
        if level > SLAB_AUTOMOVE_LEVEL_MAX {
            return Err(Rejection::Line(answer(reply, ERROR)));
        }
    }
    Ok(Request::SlabsAutomove { reply })
}

/// `text`, or nothing when the client said `noreply` (memcached's `out_string`).
fn answer(reply: Reply, text: &'static [u8]) -> &'static [u8] {
    match reply {
        Reply::Wanted => text,
        Reply::Suppressed => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ITEM_SIZE_MAX_MIN_BYTES;

    const LIMITS: ParseLimits = ParseLimits {
        item_size_max_bytes: 1024 * 1024,
    };

    /// Parses `input` whole and split at every byte: a prefix must be `Incomplete`,
    /// give the same answer as the whole (its request is already complete), or, with
    /// no `\n` in more than `LINE_LEN_MAX` bytes, `LineTooLong` as memcached does.
    fn parse_split(
        input: &[u8],
        limits: &ParseLimits,
    ) -> Result<(Request<'static>, usize), ParseError> {
        let input: &'static [u8] = Vec::leak(input.to_vec());
        let whole = parse(input, limits);
        for i in 0..input.len() {
            let prefix = &input[..i];
            let part = parse(prefix, limits);
            let long_line = i > LINE_LEN_MAX && !prefix.contains(&b'\n');
            assert!(
                part == Err(ParseError::Incomplete)
                    || part == whole
                    || (long_line && part == Err(ParseError::LineTooLong)),
                "{:?} split at {i}: {part:?}, whole: {whole:?}",
                String::from_utf8_lossy(input)
            );
        }
        whole
    }

    fn request(input: &[u8]) -> Request<'static> {
        match parse_split(input, &LIMITS) {
            Ok((request, consumed)) => {
                assert_eq!(
                    consumed,
                    input.len(),
                    "{:?}",
                    String::from_utf8_lossy(input)
                );
                request
            }
            Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(input)),
        }
    }

    /// Asserts that `input` is rejected with `reply`, dropping `consumed` bytes.
    fn rejected(input: &[u8], reply: &[u8], consumed: usize) {
        let expected = Err(ParseError::Invalid {
            reply: Vec::leak(reply.to_vec()),
            consumed,
            swallow_bytes: 0,
        });
        let got = parse_split(input, &LIMITS);
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(input));
    }

    fn line_rejected(line: &[u8], reply: &[u8]) {
        rejected(line, reply, line.len());
    }

    fn set(key: &'static [u8], flags: u32, exptime: i64, data: &'static [u8]) -> Request<'static> {
        Request::Store {
            mode: StoreMode::Set,
            key,
            flags,
            exptime,
            data,
            reply: Reply::Wanted,
        }
    }

    #[test]
    fn set_takes_its_line_and_data_block() {
        assert_eq!(
            request(b"set k 5 100 3\r\nabc\r\n"),
            set(b"k", 5, 100, b"abc")
        );
        assert_eq!(request(b"set k 0 0 0\r\n\r\n"), set(b"k", 0, 0, b""));
    }

    #[test]
    fn data_may_hold_any_bytes_including_crlf() {
        assert_eq!(
            request(b"set k 0 0 4\r\n\r\n\r\n\r\n"),
            set(b"k", 0, 0, b"\r\n\r\n")
        );
        assert_eq!(
            request(b"set k 0 0 2\r\n\0\n\r\n"),
            set(b"k", 0, 0, b"\0\n")
        );
    }

    #[test]
    fn every_storage_command_names_its_mode() {
        let cases: [(&[u8], StoreMode); 6] = [
            (b"set k 1 2 1\r\nx\r\n", StoreMode::Set),
            (b"add k 1 2 1\r\nx\r\n", StoreMode::Add),
            (b"replace k 1 2 1\r\nx\r\n", StoreMode::Replace),
            (b"append k 1 2 1\r\nx\r\n", StoreMode::Append),
            (b"prepend k 1 2 1\r\nx\r\n", StoreMode::Prepend),
            (b"cas k 1 2 1 77\r\nx\r\n", StoreMode::Cas(77)),
        ];
        for (input, mode) in cases {
            let expected = Request::Store {
                mode,
                key: b"k",
                flags: 1,
                exptime: 2,
                data: b"x",
                reply: Reply::Wanted,
            };
            assert_eq!(request(input), expected);
        }
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let input = b"set k 0 0 1\r\nx\r\nget k\r\n";
        let (first, consumed) = parse(input, &LIMITS).unwrap();
        assert_eq!(first, set(b"k", 0, 0, b"x"));
        assert_eq!(consumed, 16);
        let (second, consumed) = parse(&input[16..], &LIMITS).unwrap();
        assert!(matches!(second, Request::Get { .. }));
        assert_eq!(consumed, 7);
    }

    #[test]
    fn noreply_as_the_last_token_suppresses_the_reply() {
        let input = b"set k 0 0 1 noreply\r\nx\r\n";
        assert!(matches!(
            request(input),
            Request::Store {
                reply: Reply::Suppressed,
                ..
            }
        ));
        let input = b"cas k 0 0 1 9 noreply\r\nx\r\n";
        assert!(matches!(
            request(input),
            Request::Store {
                reply: Reply::Suppressed,
                ..
            }
        ));
    }

    #[test]
    fn an_extra_storage_token_that_is_not_noreply_is_ignored() {
        assert_eq!(request(b"set k 0 0 1 foo\r\nx\r\n"), set(b"k", 0, 0, b"x"));
    }

    #[test]
    fn too_many_or_too_few_tokens_are_errors_without_swallowing() {
        for line in [
            &b"set k 0 0\r\n"[..],
            b"set k 0 0 1 noreply extra\r\n",
            b"set\r\n",
            b"cas k 0 0 1\r\n",
            b"cas\r\n",
            b"incr\r\n",
            b"decr k\r\n",
            b"touch k\r\n",
            b"touch\r\n",
            b"delete\r\n",
            b"delete k 0 noreply x\r\n",
            b"touch k 10 noreply x\r\n",
            b"get\r\n",
            b"get \r\n",
            b"gets\r\n",
            b"gat\r\n",
            b"verbosity\r\n",
            b"verbosity 1 2 3\r\n",
            b"flush_all 1 2 3\r\n",
            b"cache_memlimit\r\n",
            b"cache_memlimit 1 2 3\r\n",
        ] {
            line_rejected(line, b"ERROR\r\n");
        }
    }

    #[test]
    fn lines_of_more_than_twenty_three_tokens_are_errors_for_storage() {
        line_rejected(
            &[&b"set k 0 0 1"[..], &b" 1".repeat(20), b"\r\n"].concat(),
            b"ERROR\r\n",
        );
    }

    #[test]
    fn rejected_set_swallows_its_data_block() {
        let limits = ParseLimits {
            item_size_max_bytes: ITEM_SIZE_MAX_MIN_BYTES,
        };
        let input = b"set k 0 0 2000\r\n";
        let expected = Request::TooLarge {
            mode: StoreMode::Set,
            key: b"k",
            swallow_bytes: 2002,
            reply: Reply::Wanted,
        };
        assert_eq!(parse_split(input, &limits), Ok((expected, input.len())));
        // The data block need not be there: it may be far larger than any buffer.
        let input = b"add k 0 0 2147483645 noreply\r\n";
        let expected = Request::TooLarge {
            mode: StoreMode::Add,
            key: b"k",
            swallow_bytes: 2147483647,
            reply: Reply::Suppressed,
        };
        assert_eq!(parse_split(input, &LIMITS), Ok((expected, input.len())));
    }

    #[test]
    fn the_largest_value_that_fits_is_memcacheds_own() {
        // memcached 1.6.18 with `-I 1024`: a 1-byte key takes 964 bytes with flags 0
        // and 960 with other flags; a 10-byte key takes 955 and 951.
        let limits = ParseLimits {
            item_size_max_bytes: 1024,
        };
        for (key, flags, largest) in [
            ("a", 0, 964),
            ("a", 1, 960),
            ("kkkkkkkkkk", 0, 955),
            ("kkkkkkkkkk", 7, 951),
        ] {
            for (len, fits) in [(largest, true), (largest + 1, false)] {
                let line = format!("set {key} {flags} 0 {len}\r\n");
                let input = [line.as_bytes(), &vec![b'x'; len], b"\r\n"].concat();
                let (got, _) = parse(&input, &limits).unwrap();
                assert_eq!(
                    matches!(got, Request::Store { .. }),
                    fits,
                    "{key} {flags} {len}"
                );
                assert_eq!(
                    matches!(got, Request::TooLarge { .. }),
                    !fits,
                    "{key} {flags} {len}"
                );
            }
        }
    }

    #[test]
    fn an_overlong_key_is_a_client_error_and_the_data_block_is_read_as_a_command() {
        let key = "k".repeat(KEY_LEN_MAX + 1);
        let line = format!("set {key} 0 0 1\r\n");
        let input = format!("{line}x\r\n");
        rejected(
            input.as_bytes(),
            b"CLIENT_ERROR bad command line format\r\n",
            line.len(),
        );
        let line = format!("set {} 0 0 1\r\n", "k".repeat(KEY_LEN_MAX));
        assert!(matches!(
            request(format!("{line}x\r\n").as_bytes()),
            Request::Store { .. }
        ));
    }

    #[test]
    fn bad_numbers_in_a_storage_line_are_client_errors_without_swallowing() {
        for line in [
            &b"set k x 0 1\r\n"[..],
            b"set k 0 x 1\r\n",
            b"set k 0 0 1x\r\n",
            b"set k -1 0 1\r\n",
            b"set k 0 0 -1\r\n",
            b"set k 18446744073709551616 0 1\r\n",
            b"set k 0 9223372036854775808 1\r\n",
            b"set k 0 0 2147483646\r\n",
            b"set k 0 0 2147483648\r\n",
            b"cas k 0 0 1 x\r\n",
            b"cas k 0 0 1 -1\r\n",
        ] {
            let input = [line, b"x\r\n"].concat();
            rejected(
                &input,
                b"CLIENT_ERROR bad command line format\r\n",
                line.len(),
            );
        }
    }

    #[test]
    fn client_errors_in_storage_lines_obey_noreply() {
        for line in [
            &b"set k x 0 1 noreply\r\n"[..],
            b"set k 0 0 -1 noreply\r\n",
            // Five tokens: memcached takes the length token for `noreply`.
            b"set k 0 0 noreply\r\n",
        ] {
            rejected(&[line, b"x\r\n"].concat(), b"", line.len());
        }
        let line = format!("set {} 0 0 1 noreply\r\n", "k".repeat(KEY_LEN_MAX + 1));
        rejected(format!("{line}x\r\n").as_bytes(), b"", line.len());
    }

    #[test]
    fn a_data_block_not_ending_in_crlf_costs_exactly_its_declared_length_plus_two() {
        // memcached reads `<bytes>+2` bytes, finds no `\r\n` at their end, and goes
        // on with whatever follows as a new command.
        rejected(
            b"set k 0 0 1\r\nxyz\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            16,
        );
        rejected(
            b"set k 0 0 1\r\nx\nget k\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            16,
        );
        rejected(
            b"set k 0 0 1\r\nx\rget k\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            16,
        );
        rejected(
            b"set k 0 0 3\r\nabcdefgh\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            18,
        );
        rejected(b"set k 0 0 1 noreply\r\nxyz\r\n", b"", 24);
    }

    #[test]
    fn numbers_are_read_as_c_strtoul_and_strtol_read_them() {
        assert_eq!(
            request(b"set k 4294967297 0 1\r\nx\r\n"),
            set(b"k", 1, 0, b"x")
        );
        assert_eq!(
            request(b"set k 18446744073709551615 0 1\r\nx\r\n"),
            set(b"k", u32::MAX, 0, b"x")
        );
        assert_eq!(request(b"set k -0 0 1\r\nx\r\n"), set(b"k", 0, 0, b"x"));
        assert_eq!(request(b"set k +5 0 1\r\nx\r\n"), set(b"k", 5, 0, b"x"));
        assert_eq!(
            request(b"set k 0 2147483648 1\r\nx\r\n"),
            set(b"k", 0, -2147483648, b"x")
        );
        assert_eq!(
            request(b"set k 0 -2147483649 1\r\nx\r\n"),
            set(b"k", 0, 2147483647, b"x")
        );
        assert_eq!(
            request(b"set k 0 4294967296 1\r\nx\r\n"),
            set(b"k", 0, 0, b"x")
        );
        assert_eq!(request(b"set k 0 -1 1\r\nx\r\n"), set(b"k", 0, -1, b"x"));
        assert_eq!(
            request(b"set k 0 0 4294967297\r\nx\r\n"),
            set(b"k", 0, 0, b"x")
        );
        // Whitespace other than a space is inside a token; strtol skips it before
        // the digits and memcached accepts it after them.
        assert_eq!(request(b"set k 0 0 \t1\r\nx\r\n"), set(b"k", 0, 0, b"x"));
        assert_eq!(request(b"set k 0 0 1\t\r\nx\r\n"), set(b"k", 0, 0, b"x"));
        assert_eq!(request(b"set k 0 0 1\r\r\nx\r\n"), set(b"k", 0, 0, b"x"));
    }

    #[test]
    fn runs_of_spaces_separate_tokens_like_one_space() {
        assert_eq!(request(b"set  k  0  0  1 \r\nx\r\n"), set(b"k", 0, 0, b"x"));
    }

    #[test]
    fn tabs_do_not_separate_tokens() {
        for line in [
            &b"set k\t0 0 1\r\n"[..],
            b"set k 0\t0 1\r\n",
            b"set k 0 0\t1\r\n",
        ] {
            rejected(&[line, b"x\r\n"].concat(), b"ERROR\r\n", line.len());
        }
        line_rejected(b"version\t\r\n", b"ERROR\r\n");
        line_rejected(b"stats\tx\r\n", b"ERROR\r\n");
    }

    #[test]
    fn a_bare_newline_ends_a_line_but_not_a_data_block() {
        assert_eq!(request(b"set k 0 0 1\nx\r\n"), set(b"k", 0, 0, b"x"));
        assert_eq!(request(b"version\n"), Request::Version);
        rejected(
            b"set k 0 0 1\nx\n\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            15,
        );
    }

    #[test]
    fn a_nul_byte_ends_the_line() {
        // memcached reads `set k` and answers ERROR; the data block follows as a command.
        rejected(b"set k\0b 0 0 1\r\nx\r\n", b"ERROR\r\n", 15);
        let Request::Get { keys, .. } = request(b"get a\0 b\r\n") else {
            panic!()
        };
        assert_eq!(keys.iter().collect::<Vec<_>>(), [b"a"]);
    }

    #[test]
    fn control_characters_and_carriage_returns_may_be_part_of_a_key() {
        assert_eq!(
            request(b"set a\x01b 0 0 1\r\nx\r\n"),
            set(b"a\x01b", 0, 0, b"x")
        );
        assert_eq!(request(b"set d\r 0 0 1\r\nx\r\n"), set(b"d\r", 0, 0, b"x"));
        let Request::Get { keys, .. } = request(b"get c\r\r\n") else {
            panic!()
        };
        assert_eq!(keys.iter().collect::<Vec<_>>(), [b"c\r"]);
    }

    #[test]
    fn unknown_commands_and_empty_lines_are_errors() {
        for line in [
            &b"\r\n"[..],
            b"\n",
            b"\r\r\n",
            b"   \r\n",
            b"x\r\n",
            b"xx\r\n",
            b"VERSION\r\n",
            b"sets k 0 0 1\r\n",
            b"gx HTTP/1.1\r\n",
            b"sx HTTP/1.1\r\n",
            b"mx HTTP/1.1\r\n",
            b"x HTTP/1.1\r\n",
            b"lru_crawler HTTP/1.1\r\n",
            b"mx k v\r\n",
        ] {
            line_rejected(line, b"ERROR\r\n");
        }
    }

    #[test]
    fn slabs_automove_answers_as_memcached() {
        for line in [
            &b"slabs automove 0\r\n"[..],
            b"slabs automove 2\r\n",
            b"slabs automove ratio 0.5\r\n",
        ] {
            assert_eq!(
                request(line),
                Request::SlabsAutomove {
                    reply: Reply::Wanted
                }
            );
        }
        line_rejected(b"slabs automove 3\r\n", b"ERROR\r\n");
        line_rejected(b"slabs automove ratio x\r\n", b"ERROR\r\n");
        line_rejected(b"slabs automove\r\n", b"ERROR\r\n");
        line_rejected(
            b"slabs automove invalid\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        );
        line_rejected(b"slabs automove invalid noreply\r\n", b"");
    }

    #[test]
    fn http_request_lines_close_the_connection_without_a_reply() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"px HTTP/1.0\r\n",
            b"rx HTTP/1.1\r\n",
            b"mget HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(line, &LIMITS), Err(ParseError::Http), "{line:?}");
        }
        assert_eq!(request(b"quit\r\n"), Request::Quit);
        assert_eq!(request(b"quit now\r\n"), Request::Quit);
    }

    fn keys_of(request: Request<'_>) -> Vec<Vec<u8>> {
        let Request::Get { keys, .. } = request else {
            panic!("{request:?}")
        };
        keys.iter().map(|k| k.to_vec()).collect()
    }

    #[test]
    fn retrievals_carry_their_kind_exptime_and_keys() {
        let cases: [(&[u8], GetKind, Option<i64>); 4] = [
            (b"get a bb  c\r\n", GetKind::Get, None),
            (b"gets a bb  c\r\n", GetKind::Gets, None),
            (b"gat 10 a bb  c\r\n", GetKind::Get, Some(10)),
            (b"gats -1 a bb  c\r\n", GetKind::Gets, Some(-1)),
        ];
        for (input, kind, exptime) in cases {
            let got = request(input);
            assert!(
                matches!(got, Request::Get { kind: k, exptime: e, .. } if k == kind && e == exptime),
                "{got:?}"
            );
            assert_eq!(keys_of(got), [&b"a"[..], b"bb", b"c"]);
        }
    }

    #[test]
    fn a_get_reads_all_its_keys_past_the_token_limit() {
        let input = [&b"get"[..], &b" k".repeat(40), b"\r\n"].concat();
        assert_eq!(keys_of(request(&input)).len(), 40);
    }

    #[test]
    fn gat_without_keys_is_an_empty_retrieval() {
        assert_eq!(keys_of(request(b"gat 10\r\n")).len(), 0);
        assert_eq!(keys_of(request(b"gats 10 \r\n")).len(), 0);
    }

    #[test]
    fn gat_with_a_bad_exptime_is_a_client_error() {
        for line in [&b"gat x a\r\n"[..], b"gat 10x a\r\n", b"gats a\r\n"] {
            line_rejected(line, b"CLIENT_ERROR invalid exptime argument\r\n");
        }
        let got = request(b"gat 2147483648 a\r\n");
        assert!(matches!(
            got,
            Request::Get {
                exptime: Some(-2147483648),
                ..
            }
        ));
    }

    #[test]
    fn a_retrieval_with_an_overlong_key_keeps_only_the_keys_before_it() {
        let long = "k".repeat(KEY_LEN_MAX + 1);
        for (line, before) in [
            (format!("get {long}\r\n"), vec![]),
            (format!("gets a {long} b\r\n"), vec![&b"a"[..]]),
            (format!("gat 1 a c {long}\r\n"), vec![&b"a"[..], b"c"]),
        ] {
            let got = request(line.as_bytes());
            assert!(
                matches!(
                    got,
                    Request::Get {
                        ending: GetEnding::KeyTooLong,
                        ..
                    }
                ),
                "{got:?}"
            );
            assert_eq!(keys_of(got), before);
        }
        let long_250 = "k".repeat(KEY_LEN_MAX);
        let got = request(format!("get {long_250}\r\n").as_bytes());
        assert!(matches!(
            got,
            Request::Get {
                ending: GetEnding::End,
                ..
            }
        ));
    }

    #[test]
    fn noreply_is_just_a_key_to_get() {
        assert_eq!(
            keys_of(request(b"get a noreply\r\n")),
            [&b"a"[..], b"noreply"]
        );
    }

    #[test]
    fn incr_and_decr_read_a_64_bit_delta() {
        let expected = Request::Arith {
            op: ArithOp::Incr,
            key: b"n",
            delta: u64::MAX,
            reply: Reply::Wanted,
        };
        assert_eq!(request(b"incr n 18446744073709551615\r\n"), expected);
        let expected = Request::Arith {
            op: ArithOp::Decr,
            key: b"n",
            delta: 0,
            reply: Reply::Suppressed,
        };
        assert_eq!(request(b"decr n -0 noreply\r\n"), expected);
    }

    #[test]
    fn an_invalid_delta_is_a_client_error_unless_noreply() {
        for line in [
            &b"incr n x\r\n"[..],
            b"incr n -1\r\n",
            b"decr n 18446744073709551616\r\n",
            b"incr n 1x\r\n",
        ] {
            line_rejected(line, b"CLIENT_ERROR invalid numeric delta argument\r\n");
        }
        line_rejected(b"incr n x noreply\r\n", b"");
        // Three tokens: memcached takes the delta token for `noreply`.
        line_rejected(b"incr n noreply\r\n", b"");
        let long = format!("incr {} 1\r\n", "k".repeat(KEY_LEN_MAX + 1));
        line_rejected(long.as_bytes(), b"CLIENT_ERROR bad command line format\r\n");
    }

    #[test]
    fn delete_accepts_a_zero_hold_time_and_noreply_only() {
        let delete = |key, reply| Request::Delete { key, reply };
        assert_eq!(request(b"delete k\r\n"), delete(b"k", Reply::Wanted));
        assert_eq!(request(b"delete k 0\r\n"), delete(b"k", Reply::Wanted));
        assert_eq!(
            request(b"delete k noreply\r\n"),
            delete(b"k", Reply::Suppressed)
        );
        assert_eq!(
            request(b"delete k 0 noreply\r\n"),
            delete(b"k", Reply::Suppressed)
        );
        assert_eq!(
            request(b"delete noreply\r\n"),
            delete(b"noreply", Reply::Wanted)
        );
        let usage = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
        for line in [
            &b"delete k 1\r\n"[..],
            b"delete k x\r\n",
            b"delete k noreply 0\r\n",
            b"delete k 0 0\r\n",
        ] {
            line_rejected(line, usage);
        }
        line_rejected(b"delete k 1 noreply\r\n", b"");
        let long = "k".repeat(KEY_LEN_MAX + 1);
        line_rejected(
            format!("delete {long}\r\n").as_bytes(),
            b"CLIENT_ERROR bad command line format\r\n",
        );
        line_rejected(format!("delete {long} noreply\r\n").as_bytes(), b"");
    }

    #[test]
    fn touch_reads_an_exptime() {
        let expected = Request::Touch {
            key: b"k",
            exptime: 10,
            reply: Reply::Wanted,
        };
        assert_eq!(request(b"touch k 10\r\n"), expected);
        // A third argument that is not noreply is ignored.
        assert_eq!(request(b"touch k 10 2\r\n"), expected);
        line_rejected(
            b"touch k x\r\n",
            b"CLIENT_ERROR invalid exptime argument\r\n",
        );
        line_rejected(b"touch k x noreply\r\n", b"");
    }

    #[test]
    fn flush_all_takes_an_optional_delay_and_noreply() {
        let flush = |delay_secs, reply| Request::FlushAll { delay_secs, reply };
        assert_eq!(request(b"flush_all\r\n"), flush(0, Reply::Wanted));
        assert_eq!(request(b"flush_all 0\r\n"), flush(0, Reply::Wanted));
        assert_eq!(request(b"flush_all -1\r\n"), flush(-1, Reply::Wanted));
        assert_eq!(
            request(b"flush_all noreply\r\n"),
            flush(0, Reply::Suppressed)
        );
        assert_eq!(
            request(b"flush_all 10 noreply\r\n"),
            flush(10, Reply::Suppressed)
        );
        assert_eq!(request(b"flush_all 10 foo\r\n"), flush(10, Reply::Wanted));
        line_rejected(
            b"flush_all x\r\n",
            b"CLIENT_ERROR invalid exptime argument\r\n",
        );
        line_rejected(
            b"flush_all noreply 10\r\n",
            b"CLIENT_ERROR invalid exptime argument\r\n",
        );
        line_rejected(b"flush_all x noreply\r\n", b"");
    }

    #[test]
    fn verbosity_needs_a_level_and_caps_it() {
        let verbosity = |level, reply| Request::Verbosity { level, reply };
        assert_eq!(request(b"verbosity 1\r\n"), verbosity(1, Reply::Wanted));
        assert_eq!(
            request(b"verbosity 5\r\n"),
            verbosity(VERBOSITY_MAX, Reply::Wanted)
        );
        assert_eq!(request(b"verbosity 1 2\r\n"), verbosity(1, Reply::Wanted));
        assert_eq!(
            request(b"verbosity 1 noreply\r\n"),
            verbosity(1, Reply::Suppressed)
        );
        line_rejected(
            b"verbosity x\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        );
        line_rejected(b"verbosity noreply\r\n", b"");
    }

    #[test]
    fn cache_memlimit_checks_its_bounds_in_megabytes() {
        let memlimit = |megabytes, reply| Request::CacheMemlimit { megabytes, reply };
        assert_eq!(
            request(b"cache_memlimit 64\r\n"),
            memlimit(64, Reply::Wanted)
        );
        assert_eq!(
            request(b"cache_memlimit 64 x\r\n"),
            memlimit(64, Reply::Wanted)
        );
        assert_eq!(
            request(b"cache_memlimit 8 noreply\r\n"),
            memlimit(8, Reply::Suppressed)
        );
        line_rejected(b"cache_memlimit x\r\n", b"ERROR\r\n");
        line_rejected(b"cache_memlimit x noreply\r\n", b"");
        let too_small = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n";
        line_rejected(b"cache_memlimit 7\r\n", too_small);
        line_rejected(b"cache_memlimit 4294967296\r\n", too_small);
        line_rejected(b"cache_memlimit 7 noreply\r\n", b"");
        line_rejected(
            b"cache_memlimit 1000000001\r\n",
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
        );
    }

    #[test]
    fn shutdown_stats_and_version_are_node_requests() {
        let shutdown = |mode| Request::Shutdown { mode };
        assert_eq!(request(b"shutdown\r\n"), shutdown(ShutdownMode::Immediate));
        assert_eq!(
            request(b"shutdown graceful\r\n"),
            shutdown(ShutdownMode::Graceful)
        );
        assert_eq!(
            request(b"shutdown x y\r\n"),
            shutdown(ShutdownMode::Invalid)
        );
        assert_eq!(request(b"stats\r\n"), Request::Stats { group: b"" });
        assert_eq!(request(b"stats  \r\n"), Request::Stats { group: b"" });
        assert_eq!(
            request(b"stats items\r\n"),
            Request::Stats { group: b"items" }
        );
        assert_eq!(
            request(b"stats  detail dump\r\n"),
            Request::Stats {
                group: b"detail dump"
            }
        );
        assert_eq!(request(b"version\r\n"), Request::Version);
        assert_eq!(request(b"version foo\r\n"), Request::Version);
    }

    fn unterminated(prefix: &[u8], len: usize) -> Vec<u8> {
        let mut line = prefix.to_vec();
        while line.len() < len {
            line.extend_from_slice(b"k ");
        }
        line.truncate(len);
        line
    }

    #[test]
    fn a_line_with_no_newline_past_2048_bytes_closes_the_connection() {
        let line = unterminated(b"set ", LINE_LEN_MAX);
        assert_eq!(parse(&line, &LIMITS), Err(ParseError::Incomplete));
        let line = unterminated(b"set ", LINE_LEN_MAX + 1);
        assert_eq!(parse_split(&line, &LIMITS), Err(ParseError::LineTooLong));
        for prefix in [&b"gat 0 "[..], b"gats 0 ", b"getx ", b"GET ", b"get\t"] {
            let line = unterminated(prefix, 3000);
            assert_eq!(parse_split(&line, &LIMITS), Err(ParseError::LineTooLong));
        }
    }

    #[test]
    fn a_get_line_may_grow_to_the_multiget_limit() {
        for prefix in [
            &b"get "[..],
            b"gets ",
            &[&[b' '; LEADING_SPACES_MAX][..], b"get "].concat(),
        ] {
            let line = unterminated(prefix, 3000);
            assert_eq!(parse_split(&line, &LIMITS), Err(ParseError::Incomplete));
        }
        let line = unterminated(
            &[&[b' '; LEADING_SPACES_MAX + 1][..], b"get "].concat(),
            3000,
        );
        assert_eq!(parse(&line, &LIMITS), Err(ParseError::LineTooLong));
        let line = unterminated(b"get ", MULTIGET_LINE_LEN_MAX);
        assert_eq!(parse(&line, &LIMITS), Err(ParseError::Incomplete));
        let line = unterminated(b"get ", MULTIGET_LINE_LEN_MAX + 1);
        assert_eq!(parse(&line, &LIMITS), Err(ParseError::LineTooLong));
    }

    #[test]
    fn a_long_line_whose_newline_is_already_buffered_is_parsed() {
        // As in memcached, whose 2048-byte rule only judges a line still without `\n`.
        let line = format!("set {} 0 0 1\r\n", "k".repeat(2100));
        let input = format!("{line}x\r\n");
        let got = parse(input.as_bytes(), &LIMITS);
        let reply = &b"CLIENT_ERROR bad command line format\r\n"[..];
        assert_eq!(
            got,
            Err(ParseError::Invalid {
                reply,
                consumed: line.len(),
                swallow_bytes: 0
            })
        );
        let input = [unterminated(b"get ", 5000), b"\r\n".to_vec()].concat();
        assert_eq!(keys_of(parse(&input, &LIMITS).unwrap().0).len(), 2498);
    }
}

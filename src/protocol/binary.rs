//! memcached's binary protocol: request packets to [`BinRequest`]s (pure: no I/O).
//!
//! The rules are memcached 1.6.18's `try_read_command_binary` and
//! `dispatch_bin_command`, checked against the server byte for byte:
//!
//! - a request is read once its 24-byte header, extras and key are buffered; a
//!   storage command also waits for its value, unless the value is too large, in
//!   which case the value is skipped as it arrives ([`Command::TooLarge`]);
//! - a header whose magic is not `0x80` closes the connection without a reply
//!   ([`ParseError::BadMagic`]);
//! - a body shorter than key and extras is answered "Unknown command", a key over
//!   [`KEY_LEN_MAX`] or lengths an opcode does not allow "Invalid arguments", and
//!   either closes the connection ([`ParseError::Fatal`]);
//! - `stat`, `touch` and the `gat` family read only header, extras and key, as
//!   memcached does: extra body bytes are taken as the next request;
//! - an unknown opcode is answered "Unknown command" and the unread rest of its
//!   body is skipped. memcached 1.6.18 skips `bodylen` bytes *after* extras and key
//!   (it over-reads by extras + key and loses the stream); this follows the newer
//!   behaviour and skips only what it has not read.
//!
//! # Format
//! ```text
//! request header (big-endian):
//!   0 magic 0x80 | 1 opcode | 2-3 key length | 4 extras length | 5 data type
//!   6-7 vbucket  | 8-11 total body length | 12-15 opaque | 16-23 CAS
//! body: extras, key, value
//! ```

use super::carried::Slices;
use super::ParseLimits;
use crate::limits::{item_fits, KEY_LEN_MAX};

pub const REQUEST_MAGIC: u8 = 0x80;
pub const RESPONSE_MAGIC: u8 = 0x81;
pub const HEADER_BYTES: usize = 24;

/// Opcodes memcached 1.6 serves (and the few it answers "Unknown command").
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes, with the error text memcached sends for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success = 0x00,
    KeyNotFound = 0x01,
    KeyExists = 0x02,
    TooLarge = 0x03,
    InvalidArguments = 0x04,
    NotStored = 0x05,
    NonNumeric = 0x06,
    /// In a cluster: the key's owners are on other nodes, which binary requests
    /// are not forwarded to (use the owner's shard endpoint).
    NotMyVbucket = 0x07,
    /// memcached's "Auth failure.": also its answer to a flush under `-F`.
    AuthError = 0x20,
    UnknownCommand = 0x81,
    /// A request this server cannot serve for a fault of its own (one shard
    /// handed another a key it does not own).
    InternalError = 0x84,
    /// In a cluster: no owner of the key answered.
    TemporaryFailure = 0x86,
    /// Out of memory for an increment or decrement.
    OutOfMemory = 0x82,
    /// Out of memory for a storage command: the same status, memcached's own text.
    ItemOutOfMemory = 0x182,
}

impl Status {
    /// The status on the wire.
    pub fn code(self) -> u16 {
        match self {
            Status::ItemOutOfMemory => Status::OutOfMemory as u16,
            other => other as u16,
        }
    }

    /// The body of an error response (memcached's `write_bin_error`).
    pub fn message(self) -> &'static [u8] {
        match self {
            Status::Success => b"",
            Status::KeyNotFound => b"Not found",
            Status::KeyExists => b"Data exists for key.",
            Status::TooLarge => b"Too large.",
            Status::InvalidArguments => b"Invalid arguments",
            Status::NotStored => b"Not stored.",
            Status::NonNumeric => b"Non-numeric server-side value for incr or decr",
            Status::NotMyVbucket => b"Vbucket belongs to another server",
            Status::AuthError => b"Auth failure.",
            Status::UnknownCommand => b"Unknown command",
            Status::InternalError => b"Internal error",
            Status::TemporaryFailure => b"Temporary failure",
            Status::OutOfMemory => b"Out of memory",
            Status::ItemOutOfMemory => b"Out of memory allocating item",
        }
    }
}

/// The fields of a request header a response echoes or a command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub opaque: u32,
    pub cas: u64,
}

/// Whether a command answers on success (memcached's `noreply` for the `Q` opcodes).
/// Errors are always answered; a quiet get stays silent on a miss only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    No,
    Yes,
}

/// Whether a retrieval returns the key (`GETK`, `GATK` and their quiet forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithKey {
    No,
    Yes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Incr,
    Decr,
}

/// What a request asks for; keys and values borrow from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `GET`, `GETQ`, `GETK`, `GETKQ`.
    Get {
        key: &'a [u8],
        with_key: WithKey,
        quiet: Quiet,
    },
    /// `TOUCH` (`value: false`: the reply has the flags only) and the `GAT` family.
    Touch {
        key: &'a [u8],
        exptime: u32,
        value: bool,
        with_key: WithKey,
        quiet: Quiet,
    },
    /// Set/add/replace (flags and expiry from the extras) and append/prepend.
    /// A non-zero header CAS makes set/add/replace a compare-and-swap and
    /// append/prepend conditional.
    Store {
        op: StoreOp,
        key: &'a [u8],
        flags: u32,
        exptime: u32,
        value: &'a [u8],
        quiet: Quiet,
    },
    /// A storage command whose value is larger than `-I` allows: answered "Too
    /// large." (a set also drops the old item), and `swallow_bytes` of value that
    /// follow the consumed bytes are skipped.
    TooLarge {
        op: StoreOp,
        key: &'a [u8],
        swallow_bytes: usize,
    },
    Delete {
        key: &'a [u8],
        quiet: Quiet,
    },
    /// Increment/decrement; `exptime == u32::MAX` means "do not create on a miss".
    Arith {
        op: ArithOp,
        key: &'a [u8],
        delta: u64,
        initial: u64,
        exptime: u32,
        quiet: Quiet,
    },
    Quit {
        quiet: Quiet,
    },
    Flush {
        exptime: u32,
        quiet: Quiet,
    },
    Noop,
    Version,
    /// `STAT` with the group in the key (empty: the general stats).
    Stat {
        group: &'a [u8],
    },
    /// An opcode memcached does not serve (including `VERBOSITY` and, without
    /// SASL, the SASL opcodes): "Unknown command", then `swallow_bytes` skipped.
    Unknown {
        swallow_bytes: usize,
    },
}

impl Command<'_> {
    /// The key a command routes by, if it acts on one item.
    pub fn key(&self) -> Option<&[u8]> {
        match *self {
            Command::Get { key, .. }
            | Command::Touch { key, .. }
            | Command::Store { key, .. }
            | Command::TooLarge { key, .. }
            | Command::Delete { key, .. }
            | Command::Arith { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinRequest<'a> {
    pub header: Header,
    pub command: Command<'a>,
}

impl<'a> Slices<'a> for BinRequest<'a> {
    type With<'b> = BinRequest<'b>;

    fn map_slices<'b>(&self, mut f: impl FnMut(&'a [u8]) -> &'b [u8]) -> BinRequest<'b> {
        let command = match self.command {
            Command::Get {
                key,
                with_key,
                quiet,
            } => Command::Get {
                key: f(key),
                with_key,
                quiet,
            },
            Command::Touch {
                key,
                exptime,
                value,
                with_key,
                quiet,
            } => Command::Touch {
                key: f(key),
                exptime,
                value,
                with_key,
                quiet,
            },
            Command::Store {
                op,
                key,
                flags,
                exptime,
                value,
                quiet,
            } => Command::Store {
                op,
                key: f(key),
                flags,
                exptime,
                value: f(value),
                quiet,
            },
            Command::TooLarge {
                op,
                key,
                swallow_bytes,
            } => Command::TooLarge {
                op,
                key: f(key),
                swallow_bytes,
            },
            Command::Delete { key, quiet } => Command::Delete { key: f(key), quiet },
            Command::Arith {
                op,
                key,
                delta,
                initial,
                exptime,
                quiet,
            } => Command::Arith {
                op,
                key: f(key),
                delta,
                initial,
                exptime,
                quiet,
            },
            Command::Quit { quiet } => Command::Quit { quiet },
            Command::Flush { exptime, quiet } => Command::Flush { exptime, quiet },
            Command::Noop => Command::Noop,
            Command::Version => Command::Version,
            Command::Stat { group } => Command::Stat { group: f(group) },
            Command::Unknown { swallow_bytes } => Command::Unknown { swallow_bytes },
        };
        BinRequest {
            header: self.header,
            command,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// Not a request magic: memcached closes the connection, sending nothing more.
    BadMagic,
    /// Answer `status` (its message as the body) to `header`, then close.
    Fatal { header: Header, status: Status },
}

/// Takes one request from the front of `buf`: the request and the bytes it used.
pub fn parse<'a>(
    buf: &'a [u8],
    limits: &ParseLimits,
) -> Result<(BinRequest<'a>, usize), ParseError> {
    let frame = Frame::read(buf)?;
    let (command, used) = command(buf, &frame, limits)?;
    Ok((
        BinRequest {
            header: frame.header,
            command,
        },
        used,
    ))
}

/// A request's header, extras and key, with the lengths the header declares
/// checked against each other; the value, if any, is the command's to read.
struct Frame<'a> {
    header: Header,
    extras: &'a [u8],
    key: &'a [u8],
    /// The body length the header declares.
    body_len: u32,
    /// The header, extras and key: what a command without a value uses.
    head_len: usize,
}

impl<'a> Frame<'a> {
    fn read(buf: &'a [u8]) -> Result<Frame<'a>, ParseError> {
        if buf.len() < HEADER_BYTES {
            return Err(ParseError::Incomplete);
        }
        if buf[0] != REQUEST_MAGIC {
            return Err(ParseError::BadMagic);
        }
        let key_len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        let extras_len = buf[4] as usize;
        let body_len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let header = Header {
            opcode: buf[1],
            opaque: u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]),
            cas: u64::from_be_bytes(buf[16..24].try_into().expect("8 bytes")),
        };
        let head_len = HEADER_BYTES + extras_len + key_len;
        if buf.len() < head_len {
            return Err(ParseError::Incomplete);
        }
        let fatal = |status| Err(ParseError::Fatal { header, status });
        if key_len + extras_len > body_len as usize {
            return fatal(Status::UnknownCommand);
        }
        if key_len > KEY_LEN_MAX {
            return fatal(Status::InvalidArguments);
        }
        Ok(Frame {
            header,
            extras: &buf[HEADER_BYTES..HEADER_BYTES + extras_len],
            key: &buf[HEADER_BYTES + extras_len..head_len],
            body_len,
            head_len,
        })
    }

    /// What memcached would skip for a body it does not read: it keeps the
    /// length in an `int`, and a negative length skips nothing.
    fn unread(&self) -> usize {
        if (self.body_len as i32) < 0 {
            0
        } else {
            self.body_len as usize - self.extras.len() - self.key.len()
        }
    }
}

/// Whether the opcode is a quiet one (its `Q` form).
fn quiet(opcode: u8) -> Quiet {
    use opcode::*;
    match opcode {
        GETQ | GETKQ | SETQ | ADDQ | REPLACEQ | DELETEQ | INCREMENTQ | DECREMENTQ | QUITQ
        | FLUSHQ | APPENDQ | PREPENDQ | GATQ | GATKQ => Quiet::Yes,
        _ => Quiet::No,
    }
}

/// Whether a get or gat opcode returns the key (its `K` form).
fn with_key(opcode: u8) -> WithKey {
    use opcode::*;
    if matches!(opcode, GETK | GETKQ | GATK | GATKQ) {
        WithKey::Yes
    } else {
        WithKey::No
    }
}

/// The storage a storage opcode asks for.
fn store_op(opcode: u8) -> StoreOp {
    use opcode::*;
    match opcode {
        SET | SETQ => StoreOp::Set,
        ADD | ADDQ => StoreOp::Add,
        REPLACE | REPLACEQ => StoreOp::Replace,
        APPEND | APPENDQ => StoreOp::Append,
        _ => StoreOp::Prepend,
    }
}

/// The command a checked frame carries, and the bytes it uses: a known opcode
/// whose lengths do not fit it is fatal, an unknown one is skipped.
fn command<'a>(
    buf: &'a [u8],
    frame: &Frame<'a>,
    limits: &ParseLimits,
) -> Result<(Command<'a>, usize), ParseError> {
    use opcode::*;
    let (opcode, extras, key) = (frame.header.opcode, frame.extras, frame.key);
    let (extras_len, key_len) = (extras.len(), key.len());
    let body = frame.body_len as usize;
    let quiet = quiet(opcode);
    let unread = frame.unread();
    let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
    let be64 = |b: &[u8]| u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let no_body = extras_len == 0 && key_len == 0 && body == 0;

    let command = match opcode {
        VERSION if no_body => Command::Version,
        NOOP if no_body => Command::Noop,
        QUIT | QUITQ if no_body => Command::Quit { quiet },
        FLUSH | FLUSHQ if key_len == 0 && body == extras_len && matches!(extras_len, 0 | 4) => {
            Command::Flush {
                exptime: if extras_len == 4 { be32(extras) } else { 0 },
                quiet,
            }
        }
        GET | GETQ | GETK | GETKQ if extras_len == 0 && body == key_len && key_len > 0 => {
            Command::Get {
                key,
                with_key: with_key(opcode),
                quiet,
            }
        }
        TOUCH | GAT | GATQ | GATK | GATKQ if extras_len == 4 && key_len > 0 => Command::Touch {
            key,
            exptime: be32(extras),
            value: opcode != TOUCH,
            with_key: with_key(opcode),
            quiet,
        },
        DELETE | DELETEQ if key_len > 0 && extras_len == 0 && body == key_len => {
            Command::Delete { key, quiet }
        }
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ
            if key_len > 0 && extras_len == 20 && body == key_len + extras_len =>
        {
            Command::Arith {
                op: if matches!(opcode, INCREMENT | INCREMENTQ) {
                    ArithOp::Incr
                } else {
                    ArithOp::Decr
                },
                key,
                delta: be64(extras),
                initial: be64(&extras[8..]),
                exptime: be32(&extras[16..]),
                quiet,
            }
        }
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ
            if extras_len == 8 && key_len > 0 && body >= key_len + 8 =>
        {
            let (flags, exptime) = (be32(extras), be32(&extras[4..]));
            return store(buf, store_op(opcode), key, flags, exptime, quiet, limits);
        }
        APPEND | APPENDQ | PREPEND | PREPENDQ if key_len > 0 && extras_len == 0 => {
            return store(buf, store_op(opcode), key, 0, 0, quiet, limits);
        }
        STAT if extras_len == 0 => Command::Stat { group: key },
        SASL_LIST_MECHS if no_body => Command::Unknown { swallow_bytes: 0 },
        SASL_AUTH | SASL_STEP if extras_len == 0 && key_len > 0 => Command::Unknown {
            swallow_bytes: unread,
        },
        VERSION | NOOP | QUIT | QUITQ | FLUSH | FLUSHQ | GET | GETQ | GETK | GETKQ | TOUCH
        | GAT | GATQ | GATK | GATKQ | DELETE | DELETEQ | INCREMENT | INCREMENTQ | DECREMENT
        | DECREMENTQ | SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ | APPEND | APPENDQ
        | PREPEND | PREPENDQ | STAT | SASL_LIST_MECHS | SASL_AUTH | SASL_STEP => {
            return Err(ParseError::Fatal {
                header: frame.header,
                status: Status::InvalidArguments,
            })
        }
        _ => Command::Unknown {
            swallow_bytes: unread,
        },
    };
    Ok((command, frame.head_len))
}

/// A storage command: waits for the whole value, or skips a value too large to keep.
#[allow(clippy::too_many_arguments)]
fn store<'a>(
    buf: &'a [u8],
    op: StoreOp,
    key: &'a [u8],
    flags: u32,
    exptime: u32,
    quiet: Quiet,
    limits: &ParseLimits,
) -> Result<(Command<'a>, usize), ParseError> {
    let body_len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let head_len = HEADER_BYTES + buf[4] as usize + key.len();
    let value_len = body_len as usize + HEADER_BYTES - head_len;
    // memcached holds the value length in an `int`: a "negative" one is too large
    // and nothing is skipped.
    if (value_len as u32 as i32) < 0 {
        return Ok((
            Command::TooLarge {
                op,
                key,
                swallow_bytes: 0,
            },
            head_len,
        ));
    }
    if !item_fits(key.len(), flags, value_len, limits.item_size_max_bytes) {
        return Ok((
            Command::TooLarge {
                op,
                key,
                swallow_bytes: value_len,
            },
            head_len,
        ));
    }
    let end = head_len + value_len;
    if buf.len() < end {
        return Err(ParseError::Incomplete);
    }
    Ok((
        Command::Store {
            op,
            key,
            flags,
            exptime,
            value: &buf[head_len..end],
            quiet,
        },
        end,
    ))
}

/// Appends a response header.
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    out: &mut Vec<u8>,
    opcode: u8,
    status: Status,
    key_len: u16,
    extras_len: u8,
    body_len: u32,
    opaque: u32,
    cas: u64,
) {
    out.push(RESPONSE_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&key_len.to_be_bytes());
    out.push(extras_len);
    out.push(0);
    out.extend_from_slice(&status.code().to_be_bytes());
    out.extend_from_slice(&body_len.to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
}

/// Appends a response with no extras and no key: `body` after the header.
pub fn write_simple(out: &mut Vec<u8>, header: &Header, status: Status, cas: u64, body: &[u8]) {
    write_header(
        out,
        header.opcode,
        status,
        0,
        0,
        body.len() as u32,
        header.opaque,
        cas,
    );
    out.extend_from_slice(body);
}

/// Appends an error response: the status and memcached's text for it, CAS 0.
pub fn write_error(out: &mut Vec<u8>, header: &Header, status: Status) {
    write_simple(out, header, status, 0, status.message());
}

#[cfg(test)]
mod tests {
    use super::opcode::*;
    use super::*;

    /// A request packet as a client builds it.
    fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
        let body = (key.len() + extras.len() + value.len()) as u32;
        packet_with_body_len(op, key, extras, value, cas, body)
    }

    fn packet_with_body_len(
        op: u8,
        key: &[u8],
        extras: &[u8],
        value: &[u8],
        cas: u64,
        body_len: u32,
    ) -> Vec<u8> {
        let mut p = vec![REQUEST_MAGIC, op];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.push(extras.len() as u8);
        p.extend_from_slice(&[0, 0, 0]);
        p.extend_from_slice(&body_len.to_be_bytes());
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        p.extend_from_slice(&cas.to_be_bytes());
        p.extend_from_slice(extras);
        p.extend_from_slice(key);
        p.extend_from_slice(value);
        p
    }

    fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
        let mut e = flags.to_be_bytes().to_vec();
        e.extend_from_slice(&exptime.to_be_bytes());
        e
    }

    fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
        let mut e = delta.to_be_bytes().to_vec();
        e.extend_from_slice(&initial.to_be_bytes());
        e.extend_from_slice(&exptime.to_be_bytes());
        e
    }

    const HEADER: Header = Header {
        opcode: 0,
        opaque: 0x0102_0304,
        cas: 0,
    };

    fn header(op: u8, cas: u64) -> Header {
        Header {
            opcode: op,
            cas,
            ..HEADER
        }
    }

    /// Parses `input` whole, then checks that every shorter prefix is Incomplete
    /// (or, for errors decided on the header, the same error), so a request split
    /// at any byte boundary parses the same once complete.
    fn parse_all_splits(input: &[u8]) -> Result<(BinRequest<'_>, usize), ParseError> {
        let limits = ParseLimits::default();
        let whole = parse(input, &limits);
        let needed = match whole {
            Ok((_, used)) => used,
            Err(_) => input.len(),
        };
        for cut in 0..needed {
            let partial = parse(&input[..cut], &limits);
            match partial {
                Err(ParseError::Incomplete) => {}
                Err(ParseError::BadMagic) if cut >= HEADER_BYTES => {}
                other if other == whole => {}
                other => panic!("prefix of {cut} bytes gave {other:?}, whole gave {whole:?}"),
            }
        }
        // And fed one byte after another into a growing buffer, as a connection would.
        let mut buffered = Vec::new();
        for &b in input {
            buffered.push(b);
            match parse(&buffered, &limits) {
                Err(ParseError::Incomplete) => continue,
                result => {
                    assert_eq!(
                        format!("{result:?}"),
                        format!("{whole:?}"),
                        "byte by byte after {} bytes",
                        buffered.len()
                    );
                    break;
                }
            }
        }
        whole
    }

    #[test]
    fn get_family_parses_key_and_quietness() {
        for (op, with_key, quiet) in [
            (GET, WithKey::No, Quiet::No),
            (GETQ, WithKey::No, Quiet::Yes),
            (GETK, WithKey::Yes, Quiet::No),
            (GETKQ, WithKey::Yes, Quiet::Yes),
        ] {
            let p = packet(op, b"key", b"", b"", 0);
            let (req, used) = parse_all_splits(&p).unwrap();
            assert_eq!(used, p.len());
            assert_eq!(req.header, header(op, 0));
            assert_eq!(
                req.command,
                Command::Get {
                    key: b"key",
                    with_key,
                    quiet
                }
            );
        }
    }

    #[test]
    fn set_waits_for_its_value_and_reads_flags_expiry_and_cas() {
        let p = packet(SET, b"k", &set_extras(7, 100), b"hello", 42);
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!(used, p.len());
        assert_eq!(req.header.cas, 42);
        assert_eq!(
            req.command,
            Command::Store {
                op: StoreOp::Set,
                key: b"k",
                flags: 7,
                exptime: 100,
                value: b"hello",
                quiet: Quiet::No
            }
        );
        let p = packet(APPENDQ, b"k", b"", b"xy", 0);
        let (req, _) = parse_all_splits(&p).unwrap();
        assert!(matches!(
            req.command,
            Command::Store {
                op: StoreOp::Append,
                value: b"xy",
                quiet: Quiet::Yes,
                ..
            }
        ));
    }

    #[test]
    fn a_value_too_large_is_skipped_not_buffered() {
        let limits = ParseLimits::default();
        let value_len = limits.item_size_max_bytes;
        let p = packet_with_body_len(SET, b"k", &set_extras(0, 0), b"", 0, (value_len + 9) as u32);
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!(used, HEADER_BYTES + 9);
        assert_eq!(
            req.command,
            Command::TooLarge {
                op: StoreOp::Set,
                key: b"k",
                swallow_bytes: value_len
            }
        );
        // A length memcached holds as a negative int: too large, nothing skipped.
        let p = packet_with_body_len(SET, b"k", &set_extras(0, 0), b"", 0, u32::MAX);
        let (req, _) = parse_all_splits(&p).unwrap();
        assert!(matches!(
            req.command,
            Command::TooLarge {
                swallow_bytes: 0,
                ..
            }
        ));
    }

    #[test]
    fn arith_reads_delta_initial_and_expiry() {
        let p = packet(DECREMENTQ, b"n", &arith_extras(5, 10, u32::MAX), b"", 0);
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!(used, p.len());
        assert_eq!(
            req.command,
            Command::Arith {
                op: ArithOp::Decr,
                key: b"n",
                delta: 5,
                initial: 10,
                exptime: u32::MAX,
                quiet: Quiet::Yes
            }
        );
    }

    #[test]
    fn node_commands_parse_without_a_body() {
        for (op, want) in [
            (NOOP, Command::Noop),
            (VERSION, Command::Version),
            (QUIT, Command::Quit { quiet: Quiet::No }),
            (QUITQ, Command::Quit { quiet: Quiet::Yes }),
            (
                FLUSHQ,
                Command::Flush {
                    exptime: 0,
                    quiet: Quiet::Yes,
                },
            ),
            (STAT, Command::Stat { group: b"" }),
        ] {
            let p = packet(op, b"", b"", b"", 0);
            assert_eq!(
                parse_all_splits(&p).unwrap(),
                (
                    BinRequest {
                        header: header(op, 0),
                        command: want
                    },
                    24
                )
            );
        }
        let p = packet(FLUSH, b"", &9u32.to_be_bytes(), b"", 0);
        assert_eq!(
            parse_all_splits(&p).unwrap().0.command,
            Command::Flush {
                exptime: 9,
                quiet: Quiet::No
            }
        );
    }

    #[test]
    fn stat_and_touch_leave_extra_body_bytes_as_the_next_request() {
        let mut p = packet_with_body_len(STAT, b"items", b"", b"", 0, 5 + 24);
        p.extend_from_slice(&packet(NOOP, b"", b"", b"", 0));
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!((req.command, used), (Command::Stat { group: b"items" }, 29));
        let p = packet_with_body_len(TOUCH, b"k", &5u32.to_be_bytes(), b"", 0, 30);
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!(used, 29);
        assert!(matches!(
            req.command,
            Command::Touch {
                exptime: 5,
                value: false,
                ..
            }
        ));
    }

    #[test]
    fn unknown_opcodes_skip_only_the_unread_body() {
        let p = packet(0x50, b"kk", b"e", b"vvvv", 0);
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!(used, 24 + 3);
        assert_eq!(req.command, Command::Unknown { swallow_bytes: 4 });
        let p = packet(VERBOSITY, b"", &1u32.to_be_bytes(), b"", 0);
        let (req, used) = parse_all_splits(&p).unwrap();
        assert_eq!(
            (req.command, used),
            (Command::Unknown { swallow_bytes: 0 }, 28)
        );
        let p = packet(SASL_AUTH, b"PLAIN", b"", b"\0u\0p", 0);
        let (req, _) = parse_all_splits(&p).unwrap();
        assert_eq!(req.command, Command::Unknown { swallow_bytes: 4 });
    }

    #[test]
    fn malformed_headers_are_fatal_as_in_memcached() {
        let fatal = |op, status| {
            Err::<(BinRequest, usize), _>(ParseError::Fatal {
                header: header(op, 0),
                status,
            })
        };
        let p = packet_with_body_len(GET, b"hh", b"", b"", 0, 1);
        assert_eq!(parse_all_splits(&p), fatal(GET, Status::UnknownCommand));
        let p = packet(GET, &[b'k'; 251], b"", b"", 0);
        assert_eq!(parse_all_splits(&p), fatal(GET, Status::InvalidArguments));
        let p = packet(GET, &[b'k'; 250], b"", b"", 0);
        assert!(parse_all_splits(&p).is_ok());
        for p in [
            packet(GET, b"k", b"1234", b"", 0),
            packet(GET, b"", b"", b"", 0),
            packet(SET, b"k", b"1234", b"v", 0),
            packet(DELETE, b"k", b"1234", b"", 0),
            packet(NOOP, b"", b"", b"x", 0),
            packet(VERSION, b"", b"1234", b"", 0),
            packet(FLUSH, b"k", b"", b"", 0),
            packet(INCREMENT, b"k", b"1234", b"", 0),
            packet(APPEND, b"k", b"1234", b"x", 0),
            packet(TOUCH, b"k", b"", b"", 0),
            packet(SASL_LIST_MECHS, b"", b"", b"x", 0),
            packet(STAT, b"", b"1234", b"", 0),
        ] {
            assert_eq!(parse_all_splits(&p), fatal(p[1], Status::InvalidArguments));
        }
        let mut p = packet(NOOP, b"", b"", b"", 0);
        p[0] = 0x81;
        assert_eq!(parse_all_splits(&p), Err(ParseError::BadMagic));
        assert_eq!(
            parse(b"version\r\n", &ParseLimits::default()),
            Err(ParseError::Incomplete)
        );
    }

    #[test]
    fn a_huge_body_length_on_a_get_is_fatal_once_the_key_is_in() {
        let p = packet_with_body_len(GET, b"h", b"", b"", 0, u32::MAX);
        assert_eq!(
            parse_all_splits(&p),
            Err(ParseError::Fatal {
                header: header(GET, 0),
                status: Status::InvalidArguments
            })
        );
    }
}

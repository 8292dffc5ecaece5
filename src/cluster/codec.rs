//! The consensus wire and the acceptor's disk format: the consensus core's
//! messages and durable state for the cluster configuration, as bytes. A
//! [`Message`] is one `px1` text line between control cores (not the data wire,
//! [`super::wire`], nor what clients see, [`super::discovery`]); a [`Durable`] is
//! a checksummed file in `--data-dir` (pure: values in, bytes out and back; no
//! I/O).
//!
//! A configuration travels as its cluster file ([`ClusterConfig::to_file_text`],
//! which carries its epoch), base64-encoded so that it is one token with no space
//! or line break in it. The receiver reads it back with
//! [`ClusterConfig::from_file_text`], so every value that decodes is a valid
//! configuration. Decoders never panic on any input and allocate at most a bounded
//! amount: a line or file past its named bound is refused before it is read.
//!
//! # Message format
//!
//! One line of space-separated fields, ended by `\r\n`:
//!
//! ```text
//! px1 <from> <to> <decided_epoch> prepare <ballot> <epoch>
//! px1 <from> <to> <decided_epoch> promise <ballot> <epoch> -
//! px1 <from> <to> <decided_epoch> promise <ballot> <epoch> <accepted_ballot> <config>
//! px1 <from> <to> <decided_epoch> accept <ballot> <epoch> <config>
//! px1 <from> <to> <decided_epoch> accepted <ballot> <epoch>
//! px1 <from> <to> <decided_epoch> nack <ballot> <promised_ballot>
//! px1 <from> <to> <decided_epoch> decided <epoch> <config>
//! px1 <from> <to> <decided_epoch> heartbeat
//! px1 <from> <to> <decided_epoch> catchup <from_epoch>
//! px1 <from> <to> <decided_epoch> catchup-reply <count> [<epoch> <config>]...
//! ```
//!
//! `px1` names this format (a later, different one gets a new tag). Numbers are
//! decimal `u64`s without sign or leading zeros; a `<ballot>` is `<round>.<node>`;
//! a `<config>` is the configuration's cluster file in standard base64 with
//! padding; `<count>` (at most [`CATCHUP_BATCH_MAX`]) says how many pairs follow.
//! Fields are separated by exactly one space. The encoding of a message is
//! unique: a line that decodes is, byte for byte, what [`encode_message`] writes
//! for that message, except that the configuration text inside `<config>` may be
//! any cluster file that reads back as the same value.
//!
//! # Durable file format
//!
//! Text lines, each ended by `\n`, in this order:
//!
//! ```text
//! ringcache-durable 2
//! node_id <id>
//! promised <ballot>
//! round_used <round>
//! accepted -                               (or: accepted <ballot> <epoch> <config>)
//! decided <epoch> <config>                 (1 to DECIDED_LOG_MAX lines, epochs ascending)
//! checksum <8 lowercase hex digits>
//! ```
//!
//! The checksum is the CRC-32C (Castagnoli, as iSCSI and ext4 use) of every byte
//! before the `checksum` line. A file cut short anywhere lacks its whole last
//! line, so it is refused as torn; a file with any one byte changed is refused,
//! because a CRC-32 catches every error confined to 32 consecutive bits. Version 1
//! files, the same lines under a 64-bit FNV-1a sum (16 hex digits), are still
//! read, so a node upgraded over its `--data-dir` restarts from it. The caller
//! writes the file whole to a temporary name, syncs it and renames it over the
//! old one.

use std::fmt;
use std::io::Write;

use super::config::{ClusterConfig, ClusterFileError, CLUSTER_FILE_LEN_MAX};
use crate::consensus::{
    Accepted, Ballot, Body, Durable, Epoch, Message, CATCHUP_BATCH_MAX, DECIDED_LOG_MAX,
};
use crate::protocol::meta::base64_encode;

/// The first field of every message line: names the format.
pub const MESSAGE_TAG: &[u8] = b"px1";

/// Longest `<config>` field: a cluster file of [`CLUSTER_FILE_LEN_MAX`] bytes in
/// base64. [`ClusterConfig::new`] refuses any configuration whose file is longer.
pub const CONFIG_FIELD_LEN_MAX: usize = CLUSTER_FILE_LEN_MAX.div_ceil(3) * 4;

/// Room for every field of a line or file other than `<config>`s and the epochs
/// paired with them: the tag, three ids, a kind, two ballots, an epoch, a count
/// (at most 20 digits each), the spaces between them and `\r\n`.
const FIXED_FIELDS_LEN_MAX: usize = 256;

/// Room for one `<epoch> <config>` pair with its separators.
const PAIR_LEN_MAX: usize = 20 + 2 + CONFIG_FIELD_LEN_MAX + 10;

/// Longest message line, `\r\n` included: a catch-up reply of
/// [`CATCHUP_BATCH_MAX`] configurations of the longest size (about 22 MiB).
/// Real configurations are a few kilobytes, so real lines are far shorter. A
/// peer that sends a longer line is sending garbage.
pub const MESSAGE_LINE_LEN_MAX: usize = FIXED_FIELDS_LEN_MAX + CATCHUP_BATCH_MAX * PAIR_LEN_MAX;

/// First line of a durable file, before its version.
pub const DURABLE_MAGIC: &[u8] = b"ringcache-durable";

/// The durable file format's version this code writes. It reads this one and
/// version 1 (see the module docs); other versions are refused, not guessed at.
pub const DURABLE_VERSION: u64 = 2;

/// Longest durable file: [`DECIDED_LOG_MAX`] decided configurations and one
/// accepted, each of the longest size.
pub const DURABLE_LEN_MAX: usize = FIXED_FIELDS_LEN_MAX + (DECIDED_LOG_MAX + 1) * PAIR_LEN_MAX;

/// Why bytes are not a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// No `\n` yet: read more and try again. Not a failure; nothing is consumed.
    Incomplete,
    /// No `\n` within [`MESSAGE_LINE_LEN_MAX`] bytes (or a line longer than it).
    TooLong,
    /// The line is not in the format (see the module docs); `reason` says where.
    Malformed { reason: &'static str },
    /// A `<config>` field holds no valid configuration.
    Config(ClusterFileError),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Incomplete => write!(f, "the message line is not complete"),
            MessageError::TooLong => {
                write!(f, "no message line end within {MESSAGE_LINE_LEN_MAX} bytes")
            }
            MessageError::Malformed { reason } => write!(f, "malformed message: {reason}"),
            MessageError::Config(e) => write!(f, "message configuration: {e}"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Why bytes are not a durable file. Every variant but `Config` means the file is
/// not one this code wrote whole: torn, corrupted, or from another program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurableError {
    /// Longer than [`DURABLE_LEN_MAX`].
    TooLong { bytes: usize },
    /// The first line is not `ringcache-durable <version>`.
    NotDurable,
    /// A durable file of another format version.
    UnsupportedVersion { version: u64 },
    /// The file does not end with a whole, well-formed `checksum` line: most
    /// likely its write was cut short.
    Torn,
    /// The checksum does not match the contents: the file was damaged.
    ChecksumMismatch { stored: u64, computed: u64 },
    /// The checksum matches but a line is not in the format; `line` counts from 1.
    Malformed { line: usize, reason: &'static str },
    /// The checksum matches but a stored configuration is not valid.
    Config {
        line: usize,
        error: ClusterFileError,
    },
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableError::TooLong { bytes } => write!(
                f,
                "durable file of {bytes} bytes: at most {DURABLE_LEN_MAX}"
            ),
            DurableError::NotDurable => write!(f, "not a ringcache durable file"),
            DurableError::UnsupportedVersion { version } => write!(
                f,
                "durable file version {version}: this ringcache reads versions 1 to {DURABLE_VERSION}"
            ),
            DurableError::Torn => write!(
                f,
                "durable file has no checksum line at its end: the write was cut short"
            ),
            DurableError::ChecksumMismatch { stored, computed } => write!(
                f,
                "durable file checksum {stored:x} but contents sum to {computed:x}: the file is damaged"
            ),
            DurableError::Malformed { line, reason } => {
                write!(f, "durable file line {line}: {reason}")
            }
            DurableError::Config { line, error } => {
                write!(f, "durable file line {line}: configuration: {error}")
            }
        }
    }
}

impl std::error::Error for DurableError {}

/// Appends `message` as one line, `\r\n` included.
pub fn encode_message(message: &Message<ClusterConfig>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(MESSAGE_TAG);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        " {} {} {} ",
        message.from, message.to, message.decided_epoch
    );
    match &message.body {
        Body::Prepare { ballot, epoch } => {
            let _ = write!(out, "prepare {}.{} {epoch}", ballot.round, ballot.node);
        }
        Body::Promise {
            ballot,
            epoch,
            accepted,
        } => {
            let _ = write!(out, "promise {}.{} {epoch} ", ballot.round, ballot.node);
            match accepted {
                None => out.push(b'-'),
                Some((accepted_ballot, value)) => {
                    let _ = write!(out, "{}.{} ", accepted_ballot.round, accepted_ballot.node);
                    encode_config(value, out);
                }
            }
        }
        Body::Accept {
            ballot,
            epoch,
            value,
        } => {
            let _ = write!(out, "accept {}.{} {epoch} ", ballot.round, ballot.node);
            encode_config(value, out);
        }
        Body::Accepted { ballot, epoch } => {
            let _ = write!(out, "accepted {}.{} {epoch}", ballot.round, ballot.node);
        }
        Body::Nack { ballot, promised } => {
            let _ = write!(
                out,
                "nack {}.{} {}.{}",
                ballot.round, ballot.node, promised.round, promised.node
            );
        }
        Body::Decided { epoch, value } => {
            let _ = write!(out, "decided {epoch} ");
            encode_config(value, out);
        }
        Body::Heartbeat => out.extend_from_slice(b"heartbeat"),
        Body::CatchUp { from_epoch } => {
            let _ = write!(out, "catchup {from_epoch}");
        }
        Body::CatchUpReply { values } => {
            assert!(
                values.len() <= CATCHUP_BATCH_MAX,
                "a catch-up reply of {} values",
                values.len()
            );
            let _ = write!(out, "catchup-reply {}", values.len());
            for (epoch, value) in values {
                let _ = write!(out, " {epoch} ");
                encode_config(value, out);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    assert!(
        out.len() - start <= MESSAGE_LINE_LEN_MAX,
        "a message line of {} bytes",
        out.len() - start
    );
}

/// Measures and decodes the message line at the start of `buf`: the message and
/// the bytes it took, `\r\n` included; the caller advances past them.
/// [`MessageError::Incomplete`] asks for more bytes and consumes none. After any
/// other error the stream cannot be trusted: close the connection.
pub fn parse_message(buf: &[u8]) -> Result<(Message<ClusterConfig>, usize), MessageError> {
    let window = &buf[..buf.len().min(MESSAGE_LINE_LEN_MAX)];
    let Some(newline) = memchr::memchr(b'\n', window) else {
        return Err(if buf.len() >= MESSAGE_LINE_LEN_MAX {
            MessageError::TooLong
        } else {
            MessageError::Incomplete
        });
    };
    let line = window[..newline]
        .strip_suffix(b"\r")
        .ok_or(MessageError::Malformed {
            reason: "the line does not end in \\r\\n",
        })?;
    Ok((decode_message_line(line)?, newline + 1))
}

/// Decodes one message line without its `\r\n` (for a caller that frames lines
/// itself).
pub fn decode_message_line(line: &[u8]) -> Result<Message<ClusterConfig>, MessageError> {
    if line.len() + 2 > MESSAGE_LINE_LEN_MAX {
        return Err(MessageError::TooLong);
    }
    let malformed = |reason| MessageError::Malformed { reason };
    let mut fields = Fields::new(line);
    if fields.next().map_err(malformed)? != MESSAGE_TAG {
        return Err(malformed("not a px1 message"));
    }
    let from = fields.number().map_err(malformed)?;
    let to = fields.number().map_err(malformed)?;
    let decided_epoch = fields.number().map_err(malformed)?;
    let config = |fields: &mut Fields| -> Result<ClusterConfig, MessageError> {
        decode_config(fields.next().map_err(malformed)?).map_err(|e| match e {
            ConfigFieldError::Syntax(reason) => malformed(reason),
            ConfigFieldError::Config(e) => MessageError::Config(e),
        })
    };
    let body = match fields.next().map_err(malformed)? {
        b"prepare" => Body::Prepare {
            ballot: fields.ballot().map_err(malformed)?,
            epoch: fields.number().map_err(malformed)?,
        },
        b"promise" => {
            let ballot = fields.ballot().map_err(malformed)?;
            let epoch = fields.number().map_err(malformed)?;
            let accepted = if fields.peek() == Some(b"-") {
                fields.next().map_err(malformed)?;
                None
            } else {
                let accepted_ballot = fields.ballot().map_err(malformed)?;
                Some((accepted_ballot, config(&mut fields)?))
            };
            Body::Promise {
                ballot,
                epoch,
                accepted,
            }
        }
        b"accept" => Body::Accept {
            ballot: fields.ballot().map_err(malformed)?,
            epoch: fields.number().map_err(malformed)?,
            value: config(&mut fields)?,
        },
        b"accepted" => Body::Accepted {
            ballot: fields.ballot().map_err(malformed)?,
            epoch: fields.number().map_err(malformed)?,
        },
        b"nack" => Body::Nack {
            ballot: fields.ballot().map_err(malformed)?,
            promised: fields.ballot().map_err(malformed)?,
        },
        b"decided" => Body::Decided {
            epoch: fields.number().map_err(malformed)?,
            value: config(&mut fields)?,
        },
        b"heartbeat" => Body::Heartbeat,
        b"catchup" => Body::CatchUp {
            from_epoch: fields.number().map_err(malformed)?,
        },
        b"catchup-reply" => {
            let count = fields.number().map_err(malformed)?;
            if count > CATCHUP_BATCH_MAX as u64 {
                return Err(malformed(
                    "a catch-up reply of more than CATCHUP_BATCH_MAX values",
                ));
            }
            let mut values = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let epoch = fields.number().map_err(malformed)?;
                values.push((epoch, config(&mut fields)?));
            }
            Body::CatchUpReply { values }
        }
        _ => return Err(malformed("unknown message kind")),
    };
    fields.finish().map_err(malformed)?;
    Ok(Message {
        from,
        to,
        decided_epoch,
        body,
    })
}

/// The durable state as the bytes of a file (see the module docs).
pub fn encode_durable(durable: &Durable<ClusterConfig>) -> Vec<u8> {
    assert!(
        !durable.decided.is_empty() && durable.decided.len() <= DECIDED_LOG_MAX,
        "{} decided values",
        durable.decided.len()
    );
    assert!(
        durable.decided.windows(2).all(|w| w[0].0 < w[1].0),
        "decided epochs must ascend"
    );
    let mut out = Vec::new();
    out.extend_from_slice(DURABLE_MAGIC);
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, " {DURABLE_VERSION}");
    let _ = writeln!(out, "node_id {}", durable.node_id);
    let promised = durable.promised;
    let _ = writeln!(out, "promised {}.{}", promised.round, promised.node);
    let _ = writeln!(out, "round_used {}", durable.round_used);
    match &durable.accepted {
        None => out.extend_from_slice(b"accepted -\n"),
        Some(Accepted {
            ballot,
            epoch,
            value,
        }) => {
            let _ = write!(out, "accepted {}.{} {epoch} ", ballot.round, ballot.node);
            encode_config(value, &mut out);
            out.push(b'\n');
        }
    }
    for (epoch, value) in &durable.decided {
        let _ = write!(out, "decided {epoch} ");
        encode_config(value, &mut out);
        out.push(b'\n');
    }
    seal(DURABLE_VERSION, &mut out);
    assert!(
        out.len() <= DURABLE_LEN_MAX,
        "a durable file of {} bytes",
        out.len()
    );
    out
}

/// Reads a durable file back, refusing one that is torn, damaged or not valid.
pub fn decode_durable(bytes: &[u8]) -> Result<Durable<ClusterConfig>, DurableError> {
    let contents = checked_contents(bytes)?;
    // The contents are as written; what follows checks they were written right.
    let mut lines = Lines::after_header(contents);
    let (no, mut fields) = lines.take(b"node_id", "expected node_id")?;
    let node_id = fields.number().map_err(malformed_at(no))?;
    fields.finish().map_err(malformed_at(no))?;

    let (no, mut fields) = lines.take(b"promised", "expected promised")?;
    let promised = fields.ballot().map_err(malformed_at(no))?;
    fields.finish().map_err(malformed_at(no))?;

    let (no, mut fields) = lines.take(b"round_used", "expected round_used")?;
    let round_used = fields.number().map_err(malformed_at(no))?;
    fields.finish().map_err(malformed_at(no))?;

    let accepted = take_accepted(&mut lines)?;
    let decided = take_decided(&mut lines)?;
    Ok(Durable {
        node_id,
        promised,
        accepted,
        round_used,
        decided,
    })
}

/// A durable file's contents (its lines before the checksum line), once its
/// length, version and checksum are found good.
fn checked_contents(bytes: &[u8]) -> Result<&[u8], DurableError> {
    if bytes.len() > DURABLE_LEN_MAX {
        return Err(DurableError::TooLong { bytes: bytes.len() });
    }
    // The version first, so that a file of another version is named as such
    // rather than as damaged.
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut header = Fields::new(first_line);
    if header.next() != Ok(DURABLE_MAGIC) {
        return Err(DurableError::NotDurable);
    }
    let version = header.number().map_err(|_| DurableError::NotDurable)?;
    header.finish().map_err(|_| DurableError::NotDurable)?;
    if !(1..=DURABLE_VERSION).contains(&version) {
        return Err(DurableError::UnsupportedVersion { version });
    }
    let (_, digits) = checksum(version, b"");

    let body = bytes.strip_suffix(b"\n").ok_or(DurableError::Torn)?;
    let checksum_start = memchr::memrchr(b'\n', body).ok_or(DurableError::Torn)? + 1;
    let stored = body[checksum_start..]
        .strip_prefix(b"checksum ")
        .filter(|hex| hex.len() == digits && hex.iter().all(|b| b"0123456789abcdef".contains(b)))
        .and_then(|hex| u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
        .ok_or(DurableError::Torn)?;
    let contents = &bytes[..checksum_start];
    let (computed, _) = checksum(version, contents);
    if stored != computed {
        return Err(DurableError::ChecksumMismatch { stored, computed });
    }
    Ok(contents)
}

/// The `accepted` line: `-`, or the ballot, epoch and configuration accepted.
fn take_accepted(lines: &mut Lines) -> Result<Option<Accepted<ClusterConfig>>, DurableError> {
    let (no, mut fields) = lines.take(b"accepted", "expected accepted")?;
    let accepted = if fields.peek() == Some(b"-") {
        let _ = fields.next();
        None
    } else {
        let ballot = fields.ballot().map_err(malformed_at(no))?;
        let epoch = fields.number().map_err(malformed_at(no))?;
        let field = fields.next().map_err(malformed_at(no))?;
        let value = decode_config(field).map_err(config_at(no))?;
        Some(Accepted {
            ballot,
            epoch,
            value,
        })
    };
    fields.finish().map_err(malformed_at(no))?;
    Ok(accepted)
}

/// The `decided` lines to the end: at least one, at most `DECIDED_LOG_MAX`,
/// their epochs ascending.
fn take_decided(lines: &mut Lines) -> Result<Vec<(Epoch, ClusterConfig)>, DurableError> {
    let mut decided: Vec<(Epoch, ClusterConfig)> = Vec::new();
    loop {
        let (no, mut fields) = lines.take(b"decided", "expected decided")?;
        if decided.len() == DECIDED_LOG_MAX {
            return Err(DurableError::Malformed {
                line: no,
                reason: "more than DECIDED_LOG_MAX decided values",
            });
        }
        let epoch = fields.number().map_err(malformed_at(no))?;
        if decided.last().is_some_and(|(last, _)| *last >= epoch) {
            return Err(DurableError::Malformed {
                line: no,
                reason: "decided epochs do not ascend",
            });
        }
        let field = fields.next().map_err(malformed_at(no))?;
        let value = decode_config(field).map_err(config_at(no))?;
        fields.finish().map_err(malformed_at(no))?;
        decided.push((epoch, value));
        if lines.is_empty() {
            break;
        }
    }
    Ok(decided)
}

/// For `map_err`: a malformed field on line `line`.
fn malformed_at(line: usize) -> impl Fn(&'static str) -> DurableError {
    move |reason| DurableError::Malformed { line, reason }
}

/// For `map_err`: a malformed or invalid configuration field on line `line`.
fn config_at(line: usize) -> impl Fn(ConfigFieldError) -> DurableError {
    move |e| match e {
        ConfigFieldError::Syntax(reason) => DurableError::Malformed { line, reason },
        ConfigFieldError::Config(error) => DurableError::Config { line, error },
    }
}

/// The lines of a durable file's checksummed contents, taken one keyword at a time.
struct Lines<'a> {
    /// The lines not taken yet, each ended by `\n`.
    rest: &'a [u8],
    /// The number of the last line taken, counting from 1.
    taken: usize,
}

impl<'a> Lines<'a> {
    /// The lines of `contents` (which ends with `\n`) after the first, the header
    /// already read.
    fn after_header(contents: &'a [u8]) -> Self {
        let header_end = memchr::memchr(b'\n', contents).map_or(contents.len(), |i| i + 1);
        Lines {
            rest: &contents[header_end..],
            taken: 1,
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next line, which must start with `keyword`, and its number; `expected`
    /// is the reason given when it does not.
    fn take(
        &mut self,
        keyword: &'static [u8],
        expected: &'static str,
    ) -> Result<(usize, Fields<'a>), DurableError> {
        self.taken += 1;
        if self.rest.is_empty() {
            return Err(DurableError::Malformed {
                line: self.taken,
                reason: expected,
            });
        }
        let end = memchr::memchr(b'\n', self.rest).unwrap_or(self.rest.len());
        let line = &self.rest[..end];
        self.rest = &self.rest[(end + 1).min(self.rest.len())..];
        let mut fields = Fields::new(line);
        if fields.next() != Ok(keyword) {
            return Err(DurableError::Malformed {
                line: self.taken,
                reason: expected,
            });
        }
        Ok((self.taken, fields))
    }
}

/// The space-separated fields of one line, read in order. Allocates nothing, so
/// a line of a million spaces costs nothing but the scan.
struct Fields<'a> {
    /// What is left after the last field read; `None` once the line is used up.
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a [u8]) -> Self {
        Fields { rest: Some(line) }
    }

    fn peek(&self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        Some(&rest[..memchr::memchr(b' ', rest).unwrap_or(rest.len())])
    }

    fn next(&mut self) -> Result<&'a [u8], &'static str> {
        let rest = self.rest.ok_or("a field is missing")?;
        let (field, after) = match memchr::memchr(b' ', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        self.rest = after;
        if field.is_empty() {
            return Err("an empty field (two spaces, or a space at an end)");
        }
        Ok(field)
    }

    /// A decimal u64 with no sign and no leading zero.
    fn number(&mut self) -> Result<u64, &'static str> {
        parse_number(self.next()?)
    }

    /// `<round>.<node>`.
    fn ballot(&mut self) -> Result<Ballot, &'static str> {
        let field = self.next()?;
        let dot = memchr::memchr(b'.', field).ok_or("a ballot is not <round>.<node>")?;
        Ok(Ballot {
            round: parse_number(&field[..dot])?,
            node: parse_number(&field[dot + 1..])?,
        })
    }

    fn finish(&self) -> Result<(), &'static str> {
        match self.rest {
            None => Ok(()),
            Some(_) => Err("more fields than the kind has"),
        }
    }
}

fn parse_number(field: &[u8]) -> Result<u64, &'static str> {
    const NOT_A_NUMBER: &str = "a number is not decimal digits without a leading zero";
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return Err(NOT_A_NUMBER);
    }
    if field.len() > 1 && field[0] == b'0' {
        return Err(NOT_A_NUMBER);
    }
    field.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or("a number is above u64::MAX")
    })
}

/// A configuration as one token: its cluster file in base64 (as inside messages).
pub fn encode_config(config: &ClusterConfig, out: &mut Vec<u8>) {
    base64_encode(config.to_file_text().as_bytes(), out);
}

/// Why a configuration token was not read.
#[derive(Debug)]
pub enum ConfigFieldError {
    Syntax(&'static str),
    Config(ClusterFileError),
}

/// Reads a token [`encode_config`] wrote.
pub fn decode_config(field: &[u8]) -> Result<ClusterConfig, ConfigFieldError> {
    if field.len() > CONFIG_FIELD_LEN_MAX {
        return Err(ConfigFieldError::Syntax(
            "a configuration longer than CLUSTER_FILE_LEN_MAX",
        ));
    }
    let bytes = base64_decode(field).ok_or(ConfigFieldError::Syntax(
        "a configuration is not padded standard base64",
    ))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigFieldError::Syntax("a configuration is not UTF-8"))?;
    ClusterConfig::from_file_text(text).map_err(ConfigFieldError::Config)
}

/// Standard base64 with `=` padding, refusing anything [`base64_encode`] would
/// not write (a missing pad, a stray `=`, set bits under the padding), so each
/// value has one encoding.
fn base64_decode(field: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(field).ok()
}

/// Appends the `checksum` line of a durable file of `version` whose lines so
/// far are `out`.
fn seal(version: u64, out: &mut Vec<u8>) {
    let (sum, digits) = checksum(version, out);
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, "checksum {sum:0digits$x}");
}

/// The sum of `contents` in a durable file of `version`, and how many hex
/// digits its `checksum` line writes it in. Neither sum is keyed (unlike
/// ahash), so the sum a node wrote is the sum any later process computes.
fn checksum(version: u64, contents: &[u8]) -> (u64, usize) {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    match version {
        1 => (fnv1a_64(contents), 16),
        _ => (u64::from(CRC32C.checksum(contents)), 8),
    }
}

/// 64-bit FNV-1a: the checksum of version 1 files.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::config::{ClusterSpec, Endpoint, NodeConfig, NodeState, WriteAck};
    use crate::consensus::{Input, Node};

    /// A tiny deterministic generator (xorshift64*), so a failing case replays.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn endpoint(text: &str) -> Endpoint {
        Endpoint::parse(text).unwrap()
    }

    /// `nodes` nodes with ids 1.., on IPv6 loopback when `v6`, the first three
    /// acceptors (or just node 1), the rest varied by `variant`.
    fn config(epoch: u64, nodes: u32, variant: usize) -> ClusterConfig {
        let states = [NodeState::Up, NodeState::Down, NodeState::Joining];
        let acks = [WriteAck::One, WriteAck::Quorum, WriteAck::All];
        let host = |id: u32| {
            if variant % 2 == 1 {
                "[::1]".to_string()
            } else {
                format!("10.0.0.{id}")
            }
        };
        let spec = ClusterSpec {
            nodes: (1..=nodes)
                .map(|id| NodeConfig {
                    id,
                    client_addr: endpoint(&format!("{}:{}", host(id), 11000 + id)),
                    shards: (0..1 + variant as u32 % 3)
                        .map(|s| endpoint(&format!("{}:{}", host(id), 12000 + 10 * id + s)))
                        .collect(),
                    state: if id == 1 {
                        NodeState::Up
                    } else {
                        states[(variant + id as usize) % 3]
                    },
                })
                .collect(),
            replicas: 1,
            vnodes_per_shard: 160,
            write_ack: acks[variant % 3],
            acceptors: if nodes >= 3 { vec![3, 1, 2] } else { vec![1] },
            next_node_id: 0,
        };
        ClusterConfig::new(epoch, spec).unwrap()
    }

    fn ballot(round: u64, node: u64) -> Ballot {
        Ballot { round, node }
    }

    fn message(body: Body<ClusterConfig>) -> Message<ClusterConfig> {
        Message {
            from: 1,
            to: 2,
            decided_epoch: 5,
            body,
        }
    }

    /// One message of every kind, with extreme numbers and varied configurations.
    fn every_kind() -> Vec<Message<ClusterConfig>> {
        let max = ballot(u64::MAX, u64::MAX);
        let mut messages: Vec<Message<ClusterConfig>> = vec![
            Body::Prepare {
                ballot: ballot(3, 1),
                epoch: 6,
            },
            Body::Prepare {
                ballot: Ballot::ZERO,
                epoch: 0,
            },
            Body::Promise {
                ballot: ballot(3, 1),
                epoch: 6,
                accepted: None,
            },
            Body::Promise {
                ballot: max,
                epoch: u64::MAX,
                accepted: Some((ballot(2, 9), config(6, 3, 1))),
            },
            Body::Accept {
                ballot: ballot(3, 1),
                epoch: 6,
                value: config(6, 5, 2),
            },
            Body::Accepted {
                ballot: ballot(3, 1),
                epoch: 6,
            },
            Body::Nack {
                ballot: ballot(3, 1),
                promised: max,
            },
            Body::Decided {
                epoch: 6,
                value: config(6, 1, 3),
            },
            Body::Heartbeat,
            Body::CatchUp { from_epoch: 1 },
            Body::CatchUpReply { values: Vec::new() },
            Body::CatchUpReply {
                values: (1..=CATCHUP_BATCH_MAX as u64)
                    .map(|e| (e, config(e, 1 + e as u32 % 7, e as usize)))
                    .collect(),
            },
        ]
        .into_iter()
        .map(message)
        .collect();
        messages.push(Message {
            from: u64::MAX,
            to: 0,
            decided_epoch: u64::MAX,
            body: Body::Heartbeat,
        });
        messages
    }

    fn encoded(message: &Message<ClusterConfig>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(message, &mut out);
        out
    }

    fn durable(accepted: bool, decided: usize) -> Durable<ClusterConfig> {
        Durable {
            node_id: 7,
            promised: ballot(4, 2),
            accepted: accepted.then(|| Accepted {
                ballot: ballot(4, 2),
                epoch: decided as u64 + 1,
                value: config(decided as u64 + 1, 4, 1),
            }),
            round_used: 3,
            decided: (1..=decided as u64)
                .map(|e| (e, config(e, 3, e as usize)))
                .collect(),
        }
    }

    /// `contents` (every line up to the checksum, of the current version) with
    /// a correct checksum line.
    fn sealed(contents: &[u8]) -> Vec<u8> {
        let mut out = contents.to_vec();
        seal(DURABLE_VERSION, &mut out);
        out
    }

    /// A durable file's lines before its checksum line.
    fn contents_of(file: &[u8]) -> &[u8] {
        let body = &file[..file.len() - 1];
        &file[..memchr::memrchr(b'\n', body).unwrap() + 1]
    }

    /// A configuration whose cluster file is as long as a file may be, or nearly.
    fn longest_config() -> ClusterConfig {
        let host = |node: u32| format!("{node:03}{}", "h".repeat(250));
        let spec = |shards: u16| ClusterSpec {
            nodes: (1..=64)
                .map(|id| NodeConfig {
                    id,
                    client_addr: Endpoint {
                        host: host(id),
                        port: 1,
                    },
                    shards: (0..shards)
                        .map(|s| Endpoint {
                            host: host(id),
                            port: 2 + s,
                        })
                        .collect(),
                    state: NodeState::Up,
                })
                .collect(),
            replicas: 5,
            vnodes_per_shard: 4,
            write_ack: WriteAck::All,
            acceptors: vec![1, 2, 3, 4, 5],
            next_node_id: 0,
        };
        // About 262 bytes a shard: 62 shards a node come just under the bound.
        let config = (1..=70)
            .rev()
            .find_map(|shards| ClusterConfig::new(u64::MAX, spec(shards)).ok())
            .unwrap();
        let len = config.to_file_text().len();
        assert!(len > CLUSTER_FILE_LEN_MAX - 64 * 300, "{len}");
        config
    }

    #[test]
    fn the_checksums_give_the_published_sums() {
        assert_eq!(checksum(1, b""), (0xcbf2_9ce4_8422_2325, 16));
        assert_eq!(checksum(1, b"a"), (0xaf63_dc4c_8601_ec8c, 16));
        assert_eq!(checksum(1, b"foobar"), (0x8594_4171_f739_67e8, 16));
        // CRC-32C's check value (RFC 3720 and the CRC catalogue).
        assert_eq!(checksum(2, b"123456789"), (0xe306_9283, 8));
        assert_eq!(checksum(2, b""), (0, 8));
    }

    #[test]
    fn a_version_1_durable_file_is_still_read() {
        let d = durable(true, 3);
        let file = encode_durable(&d);
        let contents = contents_of(&file);
        let lines = contents
            .strip_prefix(&b"ringcache-durable 2\n"[..])
            .unwrap();
        let mut old = [&b"ringcache-durable 1\n"[..], lines].concat();
        let sum = fnv1a_64(&old);
        let _ = writeln!(old, "checksum {sum:016x}");
        assert_eq!(decode_durable(&old), Ok(d));
        // Its own sum, not the current one, guards it.
        let mut damaged = old.clone();
        damaged[25] ^= 0x01;
        assert!(matches!(
            decode_durable(&damaged),
            Err(DurableError::ChecksumMismatch { .. })
        ));
        let mut resealed = [&b"ringcache-durable 1\n"[..], lines].concat();
        seal(2, &mut resealed);
        assert_eq!(decode_durable(&resealed), Err(DurableError::Torn));
    }

    #[test]
    fn base64_reads_back_exactly_what_base64_encode_writes_and_nothing_else() {
        let mut rng = Rng::new(1);
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut text = Vec::new();
            base64_encode(&bytes, &mut text);
            assert_eq!(base64_decode(&text), Some(bytes), "{len} bytes");
        }
        assert_eq!(base64_decode(b"TWFu"), Some(b"Man".to_vec()));
        assert_eq!(base64_decode(b"TWE="), Some(b"Ma".to_vec()));
        assert_eq!(base64_decode(b"TQ=="), Some(b"M".to_vec()));
        for bad in [
            &b"TQ"[..],
            b"TQ=",
            b"TR==",
            b"TWF=",
            b"T===",
            b"====",
            b"TQ==TWFu",
            b"TQ=a",
            b"T Fu",
            b"TWF\n",
            b"TWF-",
            b"TWF_",
        ] {
            assert_eq!(
                base64_decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_message_line_is_written_as_the_module_docs_say() {
        let line = |body| String::from_utf8(encoded(&message(body))).unwrap();
        assert_eq!(
            line(Body::Prepare {
                ballot: ballot(3, 1),
                epoch: 6
            }),
            "px1 1 2 5 prepare 3.1 6\r\n"
        );
        assert_eq!(
            line(Body::Promise {
                ballot: ballot(3, 1),
                epoch: 6,
                accepted: None
            }),
            "px1 1 2 5 promise 3.1 6 -\r\n"
        );
        assert_eq!(line(Body::Heartbeat), "px1 1 2 5 heartbeat\r\n");
        assert_eq!(
            line(Body::Nack {
                ballot: ballot(3, 1),
                promised: ballot(4, 9)
            }),
            "px1 1 2 5 nack 3.1 4.9\r\n"
        );
        assert_eq!(
            line(Body::CatchUpReply { values: Vec::new() }),
            "px1 1 2 5 catchup-reply 0\r\n"
        );
        let value = config(6, 3, 0);
        let mut config_field = Vec::new();
        base64_encode(value.to_file_text().as_bytes(), &mut config_field);
        let config_field = String::from_utf8(config_field).unwrap();
        assert_eq!(
            line(Body::Decided {
                epoch: 6,
                value: value.clone()
            }),
            format!("px1 1 2 5 decided 6 {config_field}\r\n")
        );
        assert_eq!(
            line(Body::CatchUpReply {
                values: vec![(6, value.clone()), (7, value)]
            }),
            format!("px1 1 2 5 catchup-reply 2 6 {config_field} 7 {config_field}\r\n")
        );
    }

    #[test]
    fn every_message_kind_reads_back_from_one_line() {
        for m in every_kind() {
            let line = encoded(&m);
            assert!(line.ends_with(b"\r\n"));
            let inner = &line[..line.len() - 2];
            assert!(!inner.contains(&b'\n') && !inner.contains(&b'\r'), "{m:?}");
            assert!(line.len() <= MESSAGE_LINE_LEN_MAX);
            assert_eq!(parse_message(&line), Ok((m.clone(), line.len())));
            assert_eq!(decode_message_line(inner), Ok(m));
        }
    }

    #[test]
    fn a_line_is_parsed_only_once_whole_and_consumes_only_itself() {
        let messages = every_kind();
        let mut stream = Vec::new();
        for m in &messages {
            encode_message(m, &mut stream);
        }
        let mut at = 0;
        for m in &messages {
            let (read, used) = parse_message(&stream[at..]).unwrap();
            assert_eq!(&read, m);
            for cut in at..at + used {
                assert_eq!(
                    parse_message(&stream[at..cut]),
                    Err(MessageError::Incomplete),
                    "{m:?} cut at {}",
                    cut - at
                );
            }
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn a_line_with_no_end_within_the_bound_is_too_long() {
        let mut buf = vec![b'a'; MESSAGE_LINE_LEN_MAX - 1];
        assert_eq!(parse_message(&buf), Err(MessageError::Incomplete));
        buf.push(b'a');
        assert_eq!(parse_message(&buf), Err(MessageError::TooLong));
        buf.push(b'\n');
        assert_eq!(parse_message(&buf), Err(MessageError::TooLong));
        assert_eq!(
            decode_message_line(&buf[..MESSAGE_LINE_LEN_MAX - 1]),
            Err(MessageError::TooLong)
        );
        let at_bound = &buf[..MESSAGE_LINE_LEN_MAX - 2];
        assert!(matches!(
            decode_message_line(at_bound),
            Err(MessageError::Malformed { .. })
        ));
    }

    #[test]
    fn the_longest_messages_fit_their_bound_and_read_back() {
        let longest = longest_config();
        let m = message(Body::CatchUpReply {
            values: (0..CATCHUP_BATCH_MAX as u64)
                .map(|e| (u64::MAX - e, longest.clone()))
                .collect(),
        });
        let line = encoded(&m);
        assert!(line.len() <= MESSAGE_LINE_LEN_MAX, "{}", line.len());
        assert!(
            line.len() > MESSAGE_LINE_LEN_MAX * 9 / 10,
            "the bound is not far above the longest line: {} of {MESSAGE_LINE_LEN_MAX}",
            line.len()
        );
        assert_eq!(parse_message(&line), Ok((m, line.len())));
    }

    #[test]
    fn every_malformed_line_is_refused_with_its_reason() {
        let value = config(6, 3, 0);
        let mut field = Vec::new();
        base64_encode(value.to_file_text().as_bytes(), &mut field);
        let field = String::from_utf8(field).unwrap();
        let b64 = |text: &[u8]| {
            let mut out = Vec::new();
            base64_encode(text, &mut out);
            String::from_utf8(out).unwrap()
        };
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty field"),
            ("px2 1 2 5 heartbeat".into(), "not a px1"),
            ("PX1 1 2 5 heartbeat".into(), "not a px1"),
            ("px1 1 2 5 heartbeat ".into(), "more fields"),
            ("px1 1 2 5 heartbeat x".into(), "more fields"),
            (" px1 1 2 5 heartbeat".into(), "empty field"),
            ("px1  1 2 5 heartbeat".into(), "empty field"),
            ("px1 1 2 5".into(), "missing"),
            ("px1 01 2 5 heartbeat".into(), "leading zero"),
            ("px1 +1 2 5 heartbeat".into(), "decimal"),
            ("px1 -1 2 5 heartbeat".into(), "decimal"),
            ("px1 1 2 18446744073709551616 heartbeat".into(), "u64::MAX"),
            ("px1 1 2 5 hello".into(), "unknown message kind"),
            ("px1 1 2 5 Heartbeat".into(), "unknown message kind"),
            ("px1 1 2 5 prepare 3 6".into(), "<round>.<node>"),
            ("px1 1 2 5 prepare 3.1.1 6".into(), "decimal"),
            ("px1 1 2 5 prepare .1 6".into(), "decimal"),
            ("px1 1 2 5 prepare 3. 6".into(), "decimal"),
            ("px1 1 2 5 prepare 3.1".into(), "missing"),
            ("px1 1 2 5 promise 3.1 6".into(), "missing"),
            ("px1 1 2 5 promise 3.1 6 - -".into(), "more fields"),
            ("px1 1 2 5 promise 3.1 6 2.1".into(), "missing"),
            ("px1 1 2 5 accept 3.1 6".into(), "missing"),
            (
                format!("px1 1 2 5 accept 3.1 6 {field} {field}"),
                "more fields",
            ),
            (format!("px1 1 2 5 decided 6 {}", &field[1..]), "base64"),
            (format!("px1 1 2 5 decided 6 {field}="), "base64"),
            (format!("px1 1 2 5 decided 6 {}", b64(b"\xff\xfe")), "UTF-8"),
            ("px1 1 2 5 catchup".into(), "missing"),
            ("px1 1 2 5 catchup-reply 1".into(), "missing"),
            (
                format!("px1 1 2 5 catchup-reply 0 6 {field}"),
                "more fields",
            ),
            (format!("px1 1 2 5 catchup-reply 2 6 {field}"), "missing"),
            ("px1 1 2 5 catchup-reply 17".into(), "CATCHUP_BATCH_MAX"),
            (
                "px1 1 2 5 catchup-reply 18446744073709551615".into(),
                "CATCHUP_BATCH_MAX",
            ),
            ("px1 1 2 5 heart\rbeat".into(), "unknown message kind"),
        ];
        for (line, words) in cases {
            match decode_message_line(line.as_bytes()) {
                Err(MessageError::Malformed { reason }) => {
                    assert!(reason.contains(words), "{line:?}: {reason}")
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
        // A line must end in \r\n, not \n alone.
        assert_eq!(
            parse_message(b"px1 1 2 5 heartbeat\n"),
            Err(MessageError::Malformed {
                reason: "the line does not end in \\r\\n"
            })
        );
        // A field that is base64 of a file that is not a valid configuration.
        let invalid = value.to_file_text().replace("replicas = 1", "replicas = 9");
        match decode_message_line(
            format!("px1 1 2 5 decided 6 {}", b64(invalid.as_bytes())).as_bytes(),
        ) {
            Err(MessageError::Config(ClusterFileError::Invalid(_))) => {}
            other => panic!("{other:?}"),
        }
        let unparsable = b64(b"replicas = \"two\"\n");
        match decode_message_line(format!("px1 1 2 5 decided 6 {unparsable}").as_bytes()) {
            Err(MessageError::Config(ClusterFileError::Syntax { line: 1, .. })) => {}
            other => panic!("{other:?}"),
        }
    }

    /// Decodes `line` (without its end); a message that decodes must survive
    /// its own encoding. Panics, failing the test, on a panic in the decoder.
    fn check_junk_line(line: &[u8], context: &dyn Fn() -> String) {
        if let Ok(m) = decode_message_line(line) {
            let again = encoded(&m);
            let carries_config = match &m.body {
                Body::Promise { accepted, .. } => accepted.is_some(),
                Body::Accept { .. } | Body::Decided { .. } => true,
                Body::CatchUpReply { values } => !values.is_empty(),
                _ => false,
            };
            // Numbers, spaces and base64 each have one spelling: a line with no
            // configuration in it is exactly what its message encodes to.
            if !carries_config {
                assert_eq!(&again[..again.len() - 2], line, "{}", context());
            }
            assert_eq!(parse_message(&again), Ok((m, again.len())), "{}", context());
        }
        let mut framed = line.to_vec();
        framed.extend_from_slice(b"\r\n");
        let _ = parse_message(&framed);
        let _ = parse_message(line);
    }

    #[test]
    fn junk_and_damaged_lines_never_panic_and_what_decodes_reads_back() {
        // Short lines, so that every prefix of each can be tried.
        let mut messages = every_kind();
        messages.retain(|m| !matches!(&m.body, Body::CatchUpReply { values } if values.len() > 2));
        messages.push(message(Body::CatchUpReply {
            values: vec![(6, config(6, 3, 0)), (7, config(7, 2, 1))],
        }));
        let valid: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                let line = encoded(m);
                line[..line.len() - 2].to_vec()
            })
            .collect();
        for seed in 0..4000u64 {
            let mut rng = Rng::new(seed);
            let context = || format!("seed {seed}");
            // Random bytes, sometimes from a message-like alphabet.
            let len = rng.below(200);
            let alphabet: &[u8] = b"px1 0123456789.-=+/ABCabc\r\nprepareheartbeatcatchup-reply";
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    if seed % 2 == 0 {
                        rng.next() as u8
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            check_junk_line(&junk, &context);
            // A valid line with a few bytes replaced, inserted or deleted.
            let mut damaged = valid[rng.below(valid.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(damaged.len() + 1);
                let byte = if rng.below(2) == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                };
                match rng.below(3) {
                    0 if at < damaged.len() => damaged[at] = byte,
                    1 if at < damaged.len() => {
                        damaged.remove(at);
                    }
                    _ => damaged.insert(at, byte),
                }
            }
            check_junk_line(&damaged, &context);
        }
        // Every prefix of every valid line: the decoder must not panic, whatever
        // it makes of it (a cut number can still be a number).
        for line in &valid {
            for cut in 0..line.len() {
                check_junk_line(&line[..cut], &|| format!("cut at {cut}"));
            }
        }
    }

    #[test]
    fn durable_state_reads_back_from_its_file() {
        let mut cases = vec![
            durable(false, 1),
            durable(true, 1),
            durable(true, 3),
            durable(false, DECIDED_LOG_MAX),
        ];
        cases.push(Durable {
            node_id: u64::MAX,
            promised: ballot(u64::MAX, u64::MAX),
            round_used: u64::MAX,
            ..durable(true, DECIDED_LOG_MAX)
        });
        cases.push(Durable {
            node_id: 0,
            promised: Ballot::ZERO,
            round_used: 0,
            decided: vec![(0, config(1, 1, 0)), (u64::MAX, config(u64::MAX, 2, 1))],
            ..durable(false, 1)
        });
        for d in cases {
            let file = encode_durable(&d);
            assert!(file.len() <= DURABLE_LEN_MAX);
            assert_eq!(decode_durable(&file), Ok(d));
        }
    }

    #[test]
    fn a_durable_file_is_written_as_the_module_docs_say() {
        let d = durable(false, 1);
        let file = String::from_utf8(encode_durable(&d)).unwrap();
        let mut field = Vec::new();
        base64_encode(d.decided[0].1.to_file_text().as_bytes(), &mut field);
        let contents = format!(
            "ringcache-durable 2\n\
             node_id 7\n\
             promised 4.2\n\
             round_used 3\n\
             accepted -\n\
             decided 1 {}\n",
            String::from_utf8(field).unwrap()
        );
        assert_eq!(
            file,
            format!(
                "{contents}checksum {:08x}\n",
                checksum(2, contents.as_bytes()).0
            )
        );
        let d = durable(true, 1);
        let file = String::from_utf8(encode_durable(&d)).unwrap();
        assert!(file.contains("\naccepted 4.2 2 "), "{file}");
    }

    #[test]
    fn every_truncation_of_a_durable_file_is_refused() {
        let file = encode_durable(&durable(true, 3));
        for len in 0..file.len() {
            let err = decode_durable(&file[..len]).unwrap_err();
            // Past the first line, a cut file is always found torn.
            if len > file.iter().position(|&b| b == b'\n').unwrap() {
                assert_eq!(err, DurableError::Torn, "cut at {len}");
            }
        }
    }

    #[test]
    fn every_single_byte_change_in_a_durable_file_is_refused() {
        let file = encode_durable(&durable(true, 2));
        let header_end = file.iter().position(|&b| b == b'\n').unwrap();
        let contents_end = contents_of(&file).len() - 1;
        let mut refused = 0;
        for at in 0..file.len() {
            for new in [
                file[at] ^ 0x01,
                file[at] ^ 0x20,
                file[at] ^ 0x80,
                !file[at],
                b'\n',
                b' ',
                b'0',
                b'A',
                0,
            ] {
                if new == file[at] {
                    continue;
                }
                let mut damaged = file.clone();
                damaged[at] = new;
                let err = decode_durable(&damaged)
                    .expect_err(&format!("byte {at} set to {new:#x} was not noticed"));
                // Behind the header, the checksum is what notices: not the
                // parser, which a change in a number would get past.
                if (header_end + 1..contents_end).contains(&at) {
                    assert!(
                        matches!(err, DurableError::ChecksumMismatch { .. }),
                        "byte {at} set to {new:#x}: {err:?}"
                    );
                }
                refused += 1;
            }
        }
        assert!(refused > 8 * file.len(), "{refused}");
    }

    #[test]
    fn a_durable_file_with_a_good_checksum_but_bad_contents_is_refused() {
        let file = encode_durable(&durable(true, 2));
        let contents = String::from_utf8(contents_of(&file).to_vec()).unwrap();
        let lines: Vec<&str> = contents.lines().collect();
        let with = |edit: &dyn Fn(&mut Vec<String>)| {
            let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            edit(&mut l);
            sealed((l.join("\n") + "\n").as_bytes())
        };
        let decided_line = lines[5].to_string();
        type Case<'a> = (&'a dyn Fn(&mut Vec<String>), DurableError);
        let malformed = |line, reason| DurableError::Malformed { line, reason };
        let cases: Vec<Case> = vec![
            (
                &|l| l[0] = "ringcache-durable 3".into(),
                DurableError::UnsupportedVersion { version: 3 },
            ),
            (
                &|l| l[0] = "ringcache-durable".into(),
                DurableError::NotDurable,
            ),
            (
                &|l| l[0] = "ringcache-durable 01".into(),
                DurableError::NotDurable,
            ),
            (
                &|l| l[0] = "ringcache-durable 2 1".into(),
                DurableError::NotDurable,
            ),
            (&|l| l[0] = "ringcache 1".into(), DurableError::NotDurable),
            (
                &|l| l[1] = "node_id x".into(),
                malformed(2, "a number is not decimal digits without a leading zero"),
            ),
            (
                &|l| l[1] = "node_id 1 2".into(),
                malformed(2, "more fields than the kind has"),
            ),
            (
                &|l| l[1] = "node 1".into(),
                malformed(2, "expected node_id"),
            ),
            (
                &|l| l[2] = "promised 4".into(),
                malformed(3, "a ballot is not <round>.<node>"),
            ),
            (
                &|l| l[3] = "round_used".into(),
                malformed(4, "a field is missing"),
            ),
            (
                &|l| l[4] = "accepted - x".into(),
                malformed(5, "more fields than the kind has"),
            ),
            (&|l| l.swap(1, 2), malformed(2, "expected node_id")),
            (&|l| l.truncate(5), malformed(6, "expected decided")),
            (&|l| l.truncate(1), malformed(2, "expected node_id")),
            (
                &|l| l.swap(5, 6),
                malformed(7, "decided epochs do not ascend"),
            ),
            (&|l| l.push(String::new()), malformed(8, "expected decided")),
            (
                &|l| l.push("hello".into()),
                malformed(8, "expected decided"),
            ),
            (
                &|l| l[5] = l[5].replacen("decided 1 ", "decided 1 x", 1),
                malformed(6, "a configuration is not padded standard base64"),
            ),
        ];
        for (i, (edit, expected)) in cases.into_iter().enumerate() {
            assert_eq!(decode_durable(&with(edit)), Err(expected), "case {i}");
        }
        // More than DECIDED_LOG_MAX decided values.
        let mut too_many = durable(false, DECIDED_LOG_MAX);
        let contents = contents_of(&encode_durable(&too_many)).to_vec();
        too_many.decided.push((99, config(99, 3, 0)));
        let mut extra = Vec::new();
        let _ = write!(extra, "decided 99 ");
        encode_config(&too_many.decided[DECIDED_LOG_MAX].1, &mut extra);
        extra.push(b'\n');
        assert_eq!(
            decode_durable(&sealed(&[contents, extra].concat())),
            Err(malformed(
                6 + DECIDED_LOG_MAX,
                "more than DECIDED_LOG_MAX decided values"
            ))
        );
        // A stored configuration that is not valid.
        let invalid = config(1, 3, 0)
            .to_file_text()
            .replace("replicas = 1", "replicas = 0");
        let mut field = Vec::new();
        base64_encode(invalid.as_bytes(), &mut field);
        let bad = decided_line
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
            + " "
            + std::str::from_utf8(&field).unwrap();
        let bad_file = with(&|l| l[5] = bad.clone());
        assert!(matches!(
            decode_durable(&bad_file),
            Err(DurableError::Config {
                line: 6,
                error: ClusterFileError::Invalid(_)
            })
        ));
        // The checksum line itself.
        let body = contents_of(&file);
        for last in ["checksum 0\n", "checksum  \n", "checksum\n", "\n", ""] {
            let mut f = body.to_vec();
            f.extend_from_slice(last.as_bytes());
            assert_eq!(decode_durable(&f), Err(DurableError::Torn), "{last:?}");
        }
        let mut upper = file.clone();
        let at = upper.len() - 2;
        upper[at] = upper[at].to_ascii_uppercase();
        if upper != file {
            assert_eq!(decode_durable(&upper), Err(DurableError::Torn));
        }
    }

    #[test]
    fn a_durable_file_longer_than_its_bound_is_refused_unread() {
        let file = vec![b'x'; DURABLE_LEN_MAX + 1];
        assert_eq!(
            decode_durable(&file),
            Err(DurableError::TooLong {
                bytes: DURABLE_LEN_MAX + 1
            })
        );
        let longest = longest_config();
        let d = Durable {
            node_id: u64::MAX,
            promised: ballot(u64::MAX, u64::MAX),
            accepted: Some(Accepted {
                ballot: ballot(u64::MAX, u64::MAX),
                epoch: u64::MAX,
                value: longest.clone(),
            }),
            round_used: u64::MAX,
            decided: (0..DECIDED_LOG_MAX as u64)
                .map(|e| (u64::MAX - DECIDED_LOG_MAX as u64 + e, longest.clone()))
                .collect(),
        };
        let file = encode_durable(&d);
        assert!(file.len() <= DURABLE_LEN_MAX);
        assert!(file.len() > DURABLE_LEN_MAX * 9 / 10, "{}", file.len());
        assert_eq!(decode_durable(&file), Ok(d));
    }

    #[test]
    fn durable_junk_never_panics() {
        let valid = contents_of(&encode_durable(&durable(true, 2))).to_vec();
        for seed in 0..3000u64 {
            let mut rng = Rng::new(seed);
            let len = rng.below(300);
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(decode_durable(&junk).is_err(), "seed {seed}");
            // Damaged contents under a checksum that matches them, so the
            // parser behind the checksum sees the damage.
            let mut damaged = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(damaged.len());
                let byte = match rng.below(4) {
                    0 => b'\n',
                    1 => b' ',
                    2 => b"0123456789.-"[rng.below(12)],
                    _ => rng.next() as u8,
                };
                if rng.below(2) == 0 {
                    damaged[at] = byte;
                } else {
                    damaged.remove(at);
                }
            }
            if let Ok(d) = decode_durable(&sealed(&damaged)) {
                assert_eq!(decode_durable(&encode_durable(&d)), Ok(d), "seed {seed}");
            }
        }
    }

    /// Three acceptors and a learner agree on two successive configurations, every
    /// message through a line and back, every persisted state through a file and
    /// back; then a node restored from its last file still knows what it decided.
    #[test]
    fn nodes_decide_through_encoded_messages_and_restart_from_encoded_files() {
        let first = config(1, 4, 0);
        let mut files: Vec<Vec<u8>> = vec![Vec::new(); 4];
        let mut nodes: Vec<Node<ClusterConfig>> = (1..=4)
            .map(|id| Node::new(id, first.epoch(), first.clone(), id))
            .collect();
        let mut wire: Vec<u8> = Vec::new();
        let mut deliver = |nodes: &mut Vec<Node<ClusterConfig>>,
                           files: &mut Vec<Vec<u8>>,
                           now: u64,
                           input: Input<ClusterConfig>,
                           at: usize| {
            let mut pending = vec![(at, input)];
            let mut steps = 0;
            while let Some((at, input)) = pending.pop() {
                steps += 1;
                assert!(steps < 10_000, "the network never went quiet");
                let out = nodes[at].step(now, input);
                if let Some(d) = &out.persist {
                    files[at] = encode_durable(d);
                    assert_eq!(decode_durable(&files[at]).as_ref(), Ok(d));
                }
                for m in &out.messages {
                    encode_message(m, &mut wire);
                }
                while !wire.is_empty() {
                    let (m, used) = parse_message(&wire).unwrap();
                    wire.drain(..used);
                    let to = usize::try_from(m.to).unwrap() - 1;
                    pending.insert(0, (to, Input::Message(m)));
                }
            }
        };
        let mut now = 1;
        let mut current = first;
        for _ in 0..2 {
            let mut spec = current.to_spec();
            spec.nodes[3].state = match spec.nodes[3].state {
                NodeState::Down => NodeState::Up,
                _ => NodeState::Down,
            };
            let next = current.successor(spec).unwrap();
            let propose = Input::Propose {
                epoch: next.epoch(),
                value: next.clone(),
            };
            deliver(&mut nodes, &mut files, now, propose, 0);
            now += 100;
            for at in 0..4 {
                deliver(&mut nodes, &mut files, now, Input::Tick, at);
            }
            for node in &nodes {
                assert_eq!(node.config(), &next, "node {}", node.id());
            }
            current = next;
        }
        for (at, file) in files.iter().enumerate() {
            let restored = Node::restore(decode_durable(file).unwrap(), 9);
            assert_eq!(restored.decided_epoch(), 3, "node {}", at + 1);
            assert_eq!(restored.config(), &current);
        }
    }
}

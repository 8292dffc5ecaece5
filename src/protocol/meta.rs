//! memcached's meta protocol: `mg`, `ms`, `md`, `ma`, `mn`, `me` (pure).
//!
//! # Format
//! ```text
//! mg <key> <flag>*\r\n                 ms <key> <datalen> <flag>*\r\n<data>\r\n
//! md <key> <flag>*\r\n                 ma <key> <flag>*\r\n
//! mn\r\n                               me <key> [b]\r\n
//! ```
//!
//! A flag is one letter, some followed by a number (`T30`, `C123`, `Mx`). The line
//! is cut into tokens by the text parser (same rules: single spaces, ends at NUL);
//! this module checks the flags as memcached 1.6.18's `_meta_flag_preparse` does,
//! with its error replies, and keeps the flag tokens as sent so that the engine
//! can answer them in order (`O`, `k`, `c`, `t`... are echoed in request order).
//!
//! Flags memcached 1.6.18 does not know are served as the 1.6.45 protocol text
//! describes them: `E<cas>` (the CAS a modified item gets) and `x` (`md`: remove
//! the value, keep the item). Flags 1.6.18 accepts and ignores for a command
//! (`mg C`, `ms s`, `ms N`) are ignored here too, as 1.6.18 does.
//!
//! A base64 key (`b`) is decoded into the request itself, so the parser still
//! allocates nothing and the router hashes the key the store will see.

use super::carried::Slices;
use super::text::{ArithOp, Parsed, Rejection, Request};
use super::tokens::{safe_strtol, safe_strtoul, safe_strtoull, Tokens};
use super::ParseLimits;
use crate::limits::{
    item_fits, BINARY_KEY_LEN_MAX, KEY_LEN_MAX, META_OPAQUE_LEN_MAX, META_TOKENS_MAX,
};

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCommand {
    Get,
    Set,
    Delete,
    Arith,
    /// `mn`: answers `MN`, closing a batch of quiet requests.
    Noop,
    /// `me`: one line about an item, for debugging.
    Debug,
}

/// What `ms` does, from its `M` flag (`S` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    Set,
    /// `ME`: memcached's `add`.
    Add,
    Append,
    Prepend,
    Replace,
}

/// The key of a meta request: as sent, or decoded from base64 (`b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaKey<'a> {
    raw: &'a [u8],
    decoded: [u8; BINARY_KEY_LEN_MAX],
    /// `Some(len)` for a base64 key: `decoded[..len]` is the key.
    decoded_len: Option<u8>,
}

impl<'a> MetaKey<'a> {
    fn plain(raw: &'a [u8]) -> MetaKey<'a> {
        MetaKey {
            raw,
            decoded: [0; BINARY_KEY_LEN_MAX],
            decoded_len: None,
        }
    }

    /// The key the store sees.
    pub fn bytes(&self) -> &[u8] {
        match self.decoded_len {
            Some(len) => &self.decoded[..len as usize],
            None => self.raw,
        }
    }

    /// Whether the client sent it in base64: replies show it so (`k<base64> b`).
    pub fn is_binary(&self) -> bool {
        self.decoded_len.is_some()
    }
}

/// The flags of one meta request, checked and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFlags {
    /// `v`: return the value.
    pub value: bool,
    /// `q`: leave out the nominal reply (`EN` for mg, `HD` for ms/md/ma).
    pub quiet: bool,
    /// `u`: do not bump the item in the LRU (nor mark it fetched).
    pub no_bump: bool,
    /// `I`: invalidate (`md`: mark stale; `ms` with `C`: store over a newer CAS as stale).
    pub invalidate: bool,
    /// `x` (1.6.45): `md` removes the value and keeps the item.
    pub remove_value: bool,
    /// `T<ttl>`.
    pub ttl: Option<i64>,
    /// `N<ttl>`: vivify on miss with this TTL.
    pub vivify_ttl: Option<i64>,
    /// `R<ttl>`: win the recache token when less TTL than this remains.
    pub recache_ttl: Option<i64>,
    /// `F<flags>`.
    pub client_flags: u32,
    /// `C<cas>`: compare.
    pub compare_cas: Option<u64>,
    /// `E<cas>` (1.6.45): the CAS a created or modified item takes.
    pub new_cas: Option<u64>,
    /// `ms` mode (`M`).
    pub set_mode: SetMode,
    /// `ma` mode (`M`): `I`/`+` incr (default), `D`/`-` decr.
    pub arith_op: ArithOp,
    /// `D<delta>` for `ma` (1 when absent).
    pub delta: u64,
    /// `J<initial>` for `ma` with `N` (0 when absent).
    pub initial: u64,
}

impl Default for MetaFlags {
    fn default() -> Self {
        MetaFlags {
            value: false,
            quiet: false,
            no_bump: false,
            invalidate: false,
            remove_value: false,
            ttl: None,
            vivify_ttl: None,
            recache_ttl: None,
            client_flags: 0,
            compare_cas: None,
            new_cas: None,
            set_mode: SetMode::Set,
            arith_op: ArithOp::Incr,
            delta: 1,
            initial: 0,
        }
    }
}

/// One parsed meta request. The key, flag tokens and data borrow from the read
/// buffer (a base64 key is decoded into [`MetaKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub command: MetaCommand,
    /// Empty for `mn`.
    pub key: MetaKey<'a>,
    pub flags: MetaFlags,
    /// The flag tokens as sent, space separated: replies follow their order.
    pub tokens: &'a [u8],
    /// `ms`: the value.
    pub data: &'a [u8],
    /// `ms` whose value is larger than `-I` allows: the data block (with its
    /// `\r\n`) that follows the line and must be skipped; `data` is empty. The
    /// engine answers `SERVER_ERROR object too large for cache` and unlinks the key.
    pub swallow_bytes: usize,
}

impl<'a> MetaRequest<'a> {
    /// The flag tokens, in request order.
    pub fn flag_tokens(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.tokens.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }
}

impl<'a> Slices<'a> for MetaRequest<'a> {
    type With<'b> = MetaRequest<'b>;

    /// A base64 key keeps its decoded bytes: they are not decoded again.
    fn map_slices<'b>(&self, mut f: impl FnMut(&'a [u8]) -> &'b [u8]) -> MetaRequest<'b> {
        MetaRequest {
            command: self.command,
            key: MetaKey {
                raw: f(self.key.raw),
                decoded: self.key.decoded,
                decoded_len: self.key.decoded_len,
            },
            flags: self.flags,
            tokens: f(self.tokens),
            data: f(self.data),
            swallow_bytes: self.swallow_bytes,
        }
    }
}

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
const BAD_DATA_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const DUPLICATE_FLAG: &[u8] = b"CLIENT_ERROR duplicate flag\r\n";
const INVALID_FLAG: &[u8] = b"CLIENT_ERROR invalid flag\r\n";
const INVALID_OR_DUPLICATE_FLAG: &[u8] = b"CLIENT_ERROR invalid or duplicate flag\r\n";
const DECODING_KEY: &[u8] = b"CLIENT_ERROR error decoding key\r\n";
const M_TOKEN_LENGTH: &[u8] = b"CLIENT_ERROR incorrect length for M token\r\n";
const BAD_INITIAL: &[u8] = b"CLIENT_ERROR invalid numeric initial value\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta value\r\n";
const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
const MG_FLAGS_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
const FLAGS_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags too long\r\n";
const MS_BAD_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ms M token\r\n";
const MA_BAD_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ma M token\r\n";

/// Parses the meta command `cmd` whose line is cut into `t`; `after_line` is what
/// follows the line (an `ms` data block). Errors are memcached's, and are never
/// silenced by `q`.
pub(super) fn parse<'a>(
    cmd: &[u8],
    t: &Tokens<'a>,
    after_line: &'a [u8],
    limits: &ParseLimits,
) -> Parsed<'a> {
    // `n` counts the tokens as memcached's `ntokens` does: one more than there are.
    let n = t.count + 1;
    let line = |e: &'static [u8]| Rejection::Line(e);
    let command = match cmd {
        b"mn" => return Ok((Request::Meta(request(MetaCommand::Noop, b"")), 0)),
        b"me" => return debug(t),
        b"mg" => MetaCommand::Get,
        b"ms" => MetaCommand::Set,
        b"md" => MetaCommand::Delete,
        _ => MetaCommand::Arith,
    };
    if n < 3 {
        return Err(line(ERROR));
    }
    if t.get(1).len() > KEY_LEN_MAX {
        return Err(line(BAD_FORMAT));
    }
    if command == MetaCommand::Set {
        return set(t, after_line, limits);
    }
    if n > META_TOKENS_MAX {
        let reply = match command {
            MetaCommand::Get => MG_FLAGS_TOO_LONG,
            _ => FLAGS_TOO_LONG,
        };
        return Err(line(reply));
    }
    let mut req = request(command, t.get(1));
    if let Err(e) = preparse(t, 2, &mut req) {
        // md and ma answer every flag error alike.
        return Err(line(match command {
            MetaCommand::Get => e,
            _ => INVALID_OR_DUPLICATE_FLAG,
        }));
    }
    if command == MetaCommand::Arith {
        req.flags.arith_op = match mode_letter(t, 2) {
            None | Some(b'I' | b'+') => ArithOp::Incr,
            Some(b'D' | b'-') => ArithOp::Decr,
            Some(_) => return Err(line(MA_BAD_MODE)),
        };
    }
    if opaque_too_long(&req) {
        return Err(line(OPAQUE_TOO_LONG));
    }
    Ok((Request::Meta(req), 0))
}

/// `ms <key> <datalen> <flag>*`: once the length is read, every refusal swallows
/// the data block, as memcached does.
fn set<'a>(t: &Tokens<'a>, after_line: &'a [u8], limits: &ParseLimits) -> Parsed<'a> {
    let n = t.count + 1;
    if n == 3 {
        return Err(Rejection::Line(BAD_FORMAT));
    }
    if n > META_TOKENS_MAX {
        return Err(Rejection::Line(FLAGS_TOO_LONG));
    }
    let value_len = match safe_strtol(t.get(2)) {
        Some(len) if (0..=i32::MAX - 2).contains(&len) => len as usize,
        _ => return Err(Rejection::Line(BAD_FORMAT)),
    };
    let block_len = value_len + 2;
    let swallow = |reply| Rejection::Swallow {
        reply,
        swallow_bytes: block_len,
    };
    let mut req = request(MetaCommand::Set, t.get(1));
    preparse(t, 3, &mut req).map_err(swallow)?;
    if opaque_too_long(&req) {
        return Err(swallow(OPAQUE_TOO_LONG));
    }
    req.flags.set_mode = match mode_letter(t, 3) {
        None | Some(b'S') => SetMode::Set,
        Some(b'E') => SetMode::Add,
        Some(b'A') => SetMode::Append,
        Some(b'P') => SetMode::Prepend,
        Some(b'R') => SetMode::Replace,
        Some(_) => return Err(swallow(MS_BAD_MODE)),
    };
    let key_len = req.key.bytes().len();
    if !item_fits(
        key_len,
        req.flags.client_flags,
        value_len,
        limits.item_size_max_bytes,
    ) {
        req.swallow_bytes = block_len;
        return Ok((Request::Meta(req), 0));
    }
    let Some(block) = after_line.get(..block_len) else {
        return Err(Rejection::Incomplete);
    };
    if !block.ends_with(b"\r\n") {
        // Meta sets answer errors even in quiet mode.
        return Err(Rejection::Block {
            reply: BAD_DATA_CHUNK,
            block_len,
        });
    }
    req.data = &block[..value_len];
    Ok((Request::Meta(req), block_len))
}

/// `me <key> [b]`: memcached checks nothing else.
fn debug<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count + 1;
    if n < 3 || t.get(1).len() > KEY_LEN_MAX {
        return Err(Rejection::Line(BAD_FORMAT));
    }
    let mut req = request(MetaCommand::Debug, t.get(1));
    if n >= 4 && t.get(2) == b"b" {
        let len = base64_decode(t.get(1), &mut req.key.decoded);
        if len == 0 {
            return Err(Rejection::Line(BAD_FORMAT));
        }
        req.key.decoded_len = Some(len as u8);
    }
    Ok((Request::Meta(req), 0))
}

fn request(command: MetaCommand, key: &[u8]) -> MetaRequest<'_> {
    MetaRequest {
        command,
        key: MetaKey::plain(key),
        flags: MetaFlags::default(),
        tokens: b"",
        data: b"",
        swallow_bytes: 0,
    }
}

/// memcached's `_meta_flag_preparse`, from token `start` on: a repeated or unknown
/// flag stops at once; a bad number is noted and the flags read on, the last such
/// error being the one answered.
fn preparse<'a>(
    t: &Tokens<'a>,
    start: usize,
    req: &mut MetaRequest<'a>,
) -> Result<(), &'static [u8]> {
    req.tokens = t.from(start);
    let mut seen = [false; 127];
    // memcached's `errstr` starts as the generic error; `F` fails without changing it.
    let mut error: Option<&'static [u8]> = None;
    let mut last_error = BAD_FORMAT;
    let f = &mut req.flags;
    for i in start..t.count {
        let token = t.get(i);
        let letter = token[0];
        let arg = &token[1..];
        if letter >= 127 || seen[letter as usize] {
            return Err(DUPLICATE_FLAG);
        }
        seen[letter as usize] = true;
        let mut fail = |e: Option<&'static [u8]>| {
            if let Some(e) = e {
                last_error = e;
            }
            error = Some(last_error);
        };
        match letter {
            b'b' => {
                let len = base64_decode(t.get(1), &mut req.key.decoded);
                if len == 0 {
                    fail(Some(DECODING_KEY));
                }
                req.key.decoded_len = Some(len as u8);
            }
            b'N' => match safe_strtol(arg) {
                Some(ttl) => f.vivify_ttl = Some(i64::from(ttl)),
                None => fail(Some(BAD_TOKEN)),
            },
            b'T' => match safe_strtol(arg) {
                Some(ttl) => f.ttl = Some(i64::from(ttl)),
                None => fail(Some(BAD_TOKEN)),
            },
            b'R' => match safe_strtol(arg) {
                Some(ttl) => f.recache_ttl = Some(i64::from(ttl)),
                None => fail(Some(BAD_TOKEN)),
            },
            b'C' => match safe_strtoull(arg) {
                Some(cas) => f.compare_cas = Some(cas),
                None => fail(Some(BAD_TOKEN)),
            },
            b'E' => match safe_strtoull(arg) {
                Some(cas) => f.new_cas = Some(cas),
                None => fail(Some(BAD_TOKEN)),
            },
            b'F' => match safe_strtoul(arg) {
                Some(flags) => f.client_flags = flags,
                None => fail(None),
            },
            b'J' => match safe_strtoull(arg) {
                Some(initial) => f.initial = initial,
                None => fail(Some(BAD_INITIAL)),
            },
            b'D' => match safe_strtoull(arg) {
                Some(delta) => f.delta = delta,
                None => fail(Some(BAD_DELTA)),
            },
            b'M' => {
                if token.len() != 2 {
                    fail(Some(M_TOKEN_LENGTH));
                }
            }
            b'v' => f.value = true,
            b'q' => f.quiet = true,
            b'u' => f.no_bump = true,
            b'I' => f.invalidate = true,
            b'x' => f.remove_value = true,
            b'l' | b'h' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' => {}
            _ => return Err(INVALID_FLAG),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The letter after `M`, when an `M` token of the right length is among the flags.
fn mode_letter(t: &Tokens, start: usize) -> Option<u8> {
    (start..t.count)
        .map(|i| t.get(i))
        .find(|token| token[0] == b'M')
        .map(|token| token[1])
}

fn opaque_too_long(req: &MetaRequest) -> bool {
    req.flag_tokens()
        .any(|token| token[0] == b'O' && token.len() > META_OPAQUE_LEN_MAX)
}

/// The 6-bit value of a base64 character; `=` is 0; `None` for anything else.
fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// memcached's `base64_decode`: characters outside the alphabet are skipped, the
/// rest must come in groups of four, and decoding stops after the first group
/// with padding. Returns the decoded length, 0 when the input is refused.
/// Written out rather than taken from the base64 crate, which (rightly) refuses
/// the keys this leniency lets through, where memcached serves them.
pub fn base64_decode(src: &[u8], out: &mut [u8; BINARY_KEY_LEN_MAX]) -> usize {
    let count = src.iter().filter(|&&c| base64_value(c).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return 0;
    }
    let mut pos = 0;
    let mut block = [0u8; 4];
    let mut filled = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = base64_value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[filled] = v;
        filled += 1;
        if filled == 4 {
            out[pos] = (block[0] << 2) | (block[1] >> 4);
            out[pos + 1] = (block[1] << 4) | (block[2] >> 2);
            out[pos + 2] = (block[2] << 6) | block[3];
            pos += 3;
            filled = 0;
            if pad > 0 {
                if pad > 2 {
                    return 0;
                }
                pos -= pad;
                break;
            }
        }
    }
    pos
}

/// Appends `src` in standard base64 with `=` padding, as memcached prints a
/// binary key (and as the cluster's wires carry bytes). Into `out`'s spare
/// capacity: no allocation once the buffer has grown.
pub fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let start = out.len();
    let len = base64::encoded_len(src.len(), true).expect("a key or value far below usize::MAX");
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(src, &mut out[start..])
        .expect("sized by encoded_len");
    debug_assert_eq!(written, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse, ParseError};

    const LIMITS: ParseLimits = ParseLimits {
        item_size_max_bytes: 1024 * 1024,
    };

    /// Parses `input` whole and split at every byte: a prefix must be
    /// `Incomplete` or give the same answer as the whole.
    fn parse_split(input: &[u8]) -> Result<(Request<'static>, usize), ParseError> {
        let input: &'static [u8] = Vec::leak(input.to_vec());
        let whole = parse(input, &LIMITS);
        for i in 0..input.len() {
            let part = parse(&input[..i], &LIMITS);
            assert!(
                part == Err(ParseError::Incomplete) || part == whole,
                "{:?} split at {i}: {part:?}, whole: {whole:?}",
                String::from_utf8_lossy(input)
            );
        }
        whole
    }

    fn meta(input: &[u8]) -> MetaRequest<'static> {
        match parse_split(input) {
            Ok((Request::Meta(req), used)) => {
                assert_eq!(used, input.len());
                req
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn refused(input: &[u8], reply: &[u8], consumed: usize, swallow_bytes: usize) {
        let expected = Err(ParseError::Invalid {
            reply: Vec::leak(reply.to_vec()),
            consumed,
            swallow_bytes,
        });
        assert_eq!(
            parse_split(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    fn line_refused(line: &[u8], reply: &[u8]) {
        refused(line, reply, line.len(), 0);
    }

    #[test]
    fn node_to_node_set_carries_cas_ttl_and_flags() {
        let req = meta(b"ms k 3 E12345 T30 F7\r\nabc\r\n");
        assert_eq!(req.command, MetaCommand::Set);
        assert_eq!(req.key.bytes(), b"k");
        assert_eq!(req.data, b"abc");
        assert_eq!(req.flags.new_cas, Some(12345));
        assert_eq!(req.flags.ttl, Some(30));
        assert_eq!(req.flags.client_flags, 7);
        assert_eq!(
            req.flag_tokens().collect::<Vec<_>>(),
            [&b"E12345"[..], b"T30", b"F7"]
        );
    }

    #[test]
    fn every_flag_is_read_and_tokens_keep_their_order() {
        let req = meta(b"mg k v q u k O9 c N5 R6 T7 s t f h l\r\n");
        let f = req.flags;
        assert!(f.value && f.quiet && f.no_bump);
        assert_eq!(
            (f.vivify_ttl, f.recache_ttl, f.ttl),
            (Some(5), Some(6), Some(7))
        );
        assert_eq!(req.flag_tokens().nth(4), Some(&b"O9"[..]));
        let req = meta(b"ma k MD D5 J9 N0 C3\r\n");
        assert_eq!(req.flags.arith_op, ArithOp::Decr);
        assert_eq!((req.flags.delta, req.flags.initial), (5, 9));
        assert_eq!(req.flags.compare_cas, Some(3));
        assert_eq!(meta(b"ma k\r\n").flags.delta, 1);
        let req = meta(b"md k I x q\r\n");
        assert!(req.flags.invalidate && req.flags.remove_value && req.flags.quiet);
        for (mode, expected) in [
            (&b"MS"[..], SetMode::Set),
            (b"ME", SetMode::Add),
            (b"MA", SetMode::Append),
            (b"MP", SetMode::Prepend),
            (b"MR", SetMode::Replace),
        ] {
            let input = [&b"ms k 1 "[..], mode, b"\r\nx\r\n"].concat();
            assert_eq!(meta(&input).flags.set_mode, expected);
        }
    }

    #[test]
    fn mn_and_me_need_no_flags() {
        assert_eq!(meta(b"mn\r\n").command, MetaCommand::Noop);
        assert_eq!(meta(b"mn x y\r\n").command, MetaCommand::Noop);
        let req = meta(b"me Zm9v b\r\n");
        assert_eq!(
            (req.command, req.key.bytes()),
            (MetaCommand::Debug, &b"foo"[..])
        );
        line_refused(b"me\r\n", b"CLIENT_ERROR bad command line format\r\n");
    }

    #[test]
    fn a_base64_key_is_decoded_into_the_request() {
        let req = meta(b"mg Zm9v b v\r\n");
        assert_eq!(req.key.bytes(), b"foo");
        assert!(req.key.is_binary());
        assert_eq!(meta(b"mg Zg== b\r\n").key.bytes(), b"f");
        assert_eq!(meta(b"mg Zm8= b\r\n").key.bytes(), b"fo");
        for line in [
            &b"mg Zm9 b\r\n"[..],
            b"mg Zm9v= b\r\n",
            b"mg ==== b\r\n",
            b"mg !! b\r\n",
        ] {
            line_refused(line, b"CLIENT_ERROR error decoding key\r\n");
        }
        let mut out = Vec::new();
        base64_encode(b"foo", &mut out);
        base64_encode(b"f", &mut out);
        base64_encode(b"fo", &mut out);
        assert_eq!(out, b"Zm9vZg==Zm8=");
    }

    #[test]
    fn flag_errors_are_memcacheds() {
        line_refused(b"mg\r\n", b"ERROR\r\n");
        line_refused(b"mg k v v\r\n", b"CLIENT_ERROR duplicate flag\r\n");
        line_refused(b"mg k z\r\n", b"CLIENT_ERROR invalid flag\r\n");
        line_refused(b"mg k \xff\r\n", b"CLIENT_ERROR duplicate flag\r\n");
        line_refused(
            b"mg k Tx\r\n",
            b"CLIENT_ERROR bad token in command line format\r\n",
        );
        line_refused(b"mg k Fx\r\n", b"CLIENT_ERROR bad command line format\r\n");
        // The last bad number is the one answered.
        line_refused(
            b"mg k Tx Jx\r\n",
            b"CLIENT_ERROR invalid numeric initial value\r\n",
        );
        line_refused(
            b"mg k Dx\r\n",
            b"CLIENT_ERROR invalid numeric delta value\r\n",
        );
        line_refused(
            b"mg k MAB\r\n",
            b"CLIENT_ERROR incorrect length for M token\r\n",
        );
        line_refused(b"md k z\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n");
        line_refused(
            b"ma k Tx\r\n",
            b"CLIENT_ERROR invalid or duplicate flag\r\n",
        );
        line_refused(
            b"ma k MZ\r\n",
            b"CLIENT_ERROR invalid mode for ma M token\r\n",
        );
        let opaque = [&b"md k O"[..], &[b'1'; 32], b"\r\n"].concat();
        line_refused(&opaque, b"CLIENT_ERROR opaque token too long\r\n");
        line_refused(
            b"mg k a b c d e f g h i j k l m n o p q r\r\n",
            b"CLIENT_ERROR options flags are too long\r\n",
        );
        line_refused(
            b"ma k a b c d e f g h i j k l m n o p q r\r\n",
            b"CLIENT_ERROR options flags too long\r\n",
        );
        let long = [&b"mg "[..], &[b'k'; KEY_LEN_MAX + 1], b" v\r\n"].concat();
        line_refused(&long, b"CLIENT_ERROR bad command line format\r\n");
    }

    #[test]
    fn a_refused_ms_swallows_its_data_once_the_length_is_read() {
        line_refused(b"ms k\r\n", b"CLIENT_ERROR bad command line format\r\n");
        refused(
            b"ms k x\r\nab\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
            8,
            0,
        );
        refused(
            b"ms k 2 z\r\nab\r\n",
            b"CLIENT_ERROR invalid flag\r\n",
            10,
            4,
        );
        refused(
            b"ms k 2 MX\r\nab\r\n",
            b"CLIENT_ERROR invalid mode for ms M token\r\n",
            11,
            4,
        );
        refused(
            b"ms k 2 q\r\nabc\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            14,
            0,
        );
        // Too large: the request is made (the engine unlinks the key), the data skipped.
        let (req, used) = parse_split(b"ms k 2000000 q\r\n").unwrap();
        let Request::Meta(req) = req else { panic!() };
        assert_eq!((req.swallow_bytes, used), (2_000_002, 16));
    }
}

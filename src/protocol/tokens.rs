//! The text protocol's line rules, shared by the classic and meta commands: a
//! line cut into tokens as memcached cuts it, and numbers read as C's
//! `strtoul`/`strtol` read them in memcached's `safe_strto*` functions (pure).

use super::text::Reply;
use crate::limits::TEXT_TOKENS_MAX;

/// A line cut as memcached's `tokenize_command` cuts it: on single spaces (a run of
/// spaces makes no empty token), into at most `TEXT_TOKENS_MAX - 1` tokens; whatever
/// follows them is left unread (only a `get` reads it, through [`Tokens::from`]).
pub(super) struct Tokens<'a> {
    line: &'a [u8],
    /// Start and end of each token in `line`.
    spans: [(usize, usize); TEXT_TOKENS_MAX - 1],
    pub(super) count: usize,
}

impl<'a> Tokens<'a> {
    pub(super) fn new(line: &'a [u8]) -> Tokens<'a> {
        let mut t = Tokens {
            line,
            spans: [(0, 0); TEXT_TOKENS_MAX - 1],
            count: 0,
        };
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b != b' ' {
                continue;
            }
            if start != i {
                t.spans[t.count] = (start, i);
                t.count += 1;
                if t.count == t.spans.len() {
                    return t;
                }
            }
            start = i + 1;
        }
        if start != line.len() {
            t.spans[t.count] = (start, line.len());
            t.count += 1;
        }
        t
    }

    pub(super) fn command(&self) -> Option<&'a [u8]> {
        (self.count > 0).then(|| self.get(0))
    }

    /// Token `i`, which the caller has checked exists.
    pub(super) fn get(&self, i: usize) -> &'a [u8] {
        assert!(i < self.count, "token {i} of {}", self.count);
        let (start, end) = self.spans[i];
        &self.line[start..end]
    }

    /// The line from token `i` on, unread tokens included; empty past the last token.
    pub(super) fn from(&self, i: usize) -> &'a [u8] {
        if i < self.count {
            &self.line[self.spans[i].0..]
        } else {
            &[]
        }
    }

    /// memcached's `set_noreply_maybe`: the last token it read is `noreply`.
    pub(super) fn noreply(&self) -> Reply {
        if self.count > 0 && self.get(self.count - 1) == b"noreply" {
            Reply::Suppressed
        } else {
            Reply::Wanted
        }
    }
}

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What C's `strto*` functions read in base 10: leading whitespace, a sign, digits.
/// `None` when there are no digits or the magnitude overflows 64 bits (`ERANGE`).
struct CNumber {
    magnitude: u64,
    negative: bool,
    /// Where the digits stop; memcached wants the token to end there or at a space.
    end: usize,
}

fn c_number(s: &[u8]) -> Option<CNumber> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in &s[i..i + digits] {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    let end = i + digits;
    // A NUL ends a C string: an item's value (read for incr/decr) may hold one,
    // while a command line never does (it ends at its first NUL).
    let ends_token = end == s.len() || is_c_space(s[end]) || s[end] == 0;
    ends_token.then_some(CNumber {
        magnitude,
        negative,
        end,
    })
}

/// memcached's `safe_strtoull`: `strtoull`, refusing a sign that made it negative.
pub fn safe_strtoull(s: &[u8]) -> Option<u64> {
    let n = c_number(s)?;
    debug_assert!(n.end <= s.len());
    let value = if n.negative {
        n.magnitude.wrapping_neg()
    } else {
        n.magnitude
    };
    if n.negative && (value as i64) < 0 {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul` on a 64-bit host: `strtoul` is 64 bits wide there, and
/// memcached keeps the low 32 bits (flags 4294967297 are stored as 1).
pub fn safe_strtoul(s: &[u8]) -> Option<u32> {
    safe_strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol`: `strtol` (64 bits, `ERANGE` past them), then the low 32
/// bits (an exptime of 2147483648 is read as -2147483648).
pub(super) fn safe_strtol(s: &[u8]) -> Option<i32> {
    let n = c_number(s)?;
    let value = if n.negative {
        if n.magnitude > 1 << 63 {
            return None;
        }
        n.magnitude.wrapping_neg() as i64
    } else {
        i64::try_from(n.magnitude).ok()?
    };
    Some(value as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_number_readers_match_memcacheds_safe_strto_functions() {
        assert_eq!(safe_strtoull(b"0"), Some(0));
        assert_eq!(safe_strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(safe_strtoull(b"18446744073709551616"), None);
        assert_eq!(safe_strtoull(b"-1"), None);
        // strtoull negates modulo 2^64; memcached only refuses what came out negative.
        assert_eq!(
            safe_strtoull(b"-9223372036854775809"),
            Some(9223372036854775807)
        );
        assert_eq!(safe_strtoull(b""), None);
        assert_eq!(safe_strtoull(b"+"), None);
        assert_eq!(safe_strtoull(b"\t7\r"), Some(7));
        assert_eq!(safe_strtoull(b"7a"), None);
        assert_eq!(safe_strtol(b"-9223372036854775808"), Some(0));
        assert_eq!(safe_strtol(b"-9223372036854775809"), None);
        assert_eq!(safe_strtol(b"9223372036854775807"), Some(-1));
        assert_eq!(safe_strtol(b"-5"), Some(-5));
        assert_eq!(safe_strtoul(b"4294967296"), Some(0));
    }

    #[test]
    fn numbers_in_values_parse_as_memcached_parses_them() {
        // Each case was checked against memcached 1.6.18 with `incr k 1`.
        for (value, number) in [
            (&b"10"[..], Some(10)),
            (b" 12", Some(12)),
            (b"12  ", Some(12)),
            (b"12 34", Some(12)),
            (b"12\0x", Some(12)),
            (b"+12", Some(12)),
            (b"007", Some(7)),
            (b"-0", Some(0)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"12abc", None),
            (b"-12", None),
            (b"", None),
            (b" ", None),
            (b" x", None),
            (b"184467440737095516150", None),
        ] {
            assert_eq!(safe_strtoull(value), number, "{value:?}");
        }
    }
}

//! Numbers in values for incr/decr, read and written as memcached does (pure).

/// memcached's `safe_strtoull` applied to a value: optional leading white space,
/// an optional sign, at least one digit, then white space, NUL or the end of the
/// value (memcached sees the `\r\n` that follows every value). Overflow is not a
/// number; a `-` is accepted only when the wrapped result still looks positive
/// as a signed number (so `-0` is 0), as strtoull and memcached do.
pub fn parse_u64(value: &[u8]) -> Option<u64> {
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut i = 0;
    while i < value.len() && is_space(value[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < value.len() && (value[i] == b'+' || value[i] == b'-') {
        negative = value[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut n: u64 = 0;
    while i < value.len() && value[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add((value[i] - b'0') as u64)?;
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if i < value.len() && !(is_space(value[i]) || value[i] == 0) {
        return None;
    }
    let n = if negative { n.wrapping_neg() } else { n };
    if negative && (n as i64) < 0 {
        return None;
    }
    Some(n)
}

/// Writes `n` in decimal into `buf` and returns the digits.
pub fn format_u64(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_memcached_parses_them() {
        // Each case was checked against memcached 1.6.18 with `incr k 1`.
        assert_eq!(parse_u64(b"10"), Some(10));
        assert_eq!(parse_u64(b" 12"), Some(12));
        assert_eq!(parse_u64(b"12  "), Some(12));
        assert_eq!(parse_u64(b"12 34"), Some(12));
        assert_eq!(parse_u64(b"+12"), Some(12));
        assert_eq!(parse_u64(b"007"), Some(7));
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"12abc"), None);
        assert_eq!(parse_u64(b"-12"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b" "), None);
        assert_eq!(parse_u64(b" x"), None);
        assert_eq!(parse_u64(b"184467440737095516150"), None);
    }

    #[test]
    fn numbers_format_in_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(9, &mut buf), b"9");
        assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
    }
}

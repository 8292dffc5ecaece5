//! Numbers in values for incr/decr, written as memcached writes them (pure); they
//! are read with `protocol::text::safe_strtoull`, as memcached reads them.

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
    fn numbers_format_in_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(9, &mut buf), b"9");
        assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
    }
}

//! Parsers for flag values: sizes (`-I`, `-m`) and listen addresses (`-l`)
//! (pure).

use crate::limits;

/// A byte count as `-m` and `-I` take it back: whole gigabytes, megabytes or
/// kilobytes with their suffix, otherwise bytes.
pub(super) fn size_text(bytes: usize) -> String {
    const KIB: usize = 1024;
    [(KIB * KIB * KIB, "g"), (KIB * KIB, "m"), (KIB, "k")]
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", bytes / unit))
        .unwrap_or_else(|| bytes.to_string())
}

/// Parses a size such as `1m`, `512k` or `2048` into bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = match text.chars().last() {
        Some('k') | Some('K') => (&text[..text.len() - 1], 1024),
        Some('m') | Some('M') => (&text[..text.len() - 1], 1024 * 1024),
        Some('g') | Some('G') => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("not a size: {text:?} (use a number with an optional k, m or g)"))?;
    n.checked_mul(unit)
        .ok_or_else(|| format!("size too large: {text:?}"))
}

/// Parses `-m`: a plain number is megabytes, as in memcached; a k, m, g or t
/// suffix (either case) names the unit. memcached 1.6.18 itself reads only the
/// leading digits (`-m 1g` is 1 megabyte there); ringcache takes the suffix as meant.
pub fn parse_memory_limit(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let last = text.chars().last().unwrap_or('0');
    let bytes = if last.is_ascii_digit() {
        text.parse::<usize>()
            .ok()
            .and_then(|mb| mb.checked_mul(1024 * 1024))
    } else {
        let unit: usize = match last.to_ascii_lowercase() {
            'k' => 1 << 10,
            'm' => 1 << 20,
            'g' => 1 << 30,
            't' => 1 << 40,
            _ => {
                return Err(format!(
                    "-m {text}: not a size (megabytes, or a number with k, m, g or t)"
                ))
            }
        };
        text[..text.len() - 1]
            .parse::<usize>()
            .map_err(|_| {
                format!("-m {text}: not a size (megabytes, or a number with k, m, g or t)")
            })?
            .checked_mul(unit)
    };
    let bytes = bytes.ok_or_else(|| {
        format!("-m {text}: not a size (megabytes, or a number with k, m, g or t)")
    })?;
    if bytes < 1024 * 1024 {
        return Err(format!(
            "-m {text}: the memory limit must be at least 1 megabyte"
        ));
    }
    if bytes > limits::MEMORY_LIMIT_MAX_BYTES {
        return Err(format!("-m {text}: the memory limit can be at most 1t"));
    }
    Ok(bytes)
}

/// Parses `-l`: memcached's comma list (repeated `-l` adds to it), each entry an
/// address, `ADDR:PORT` or `[IPv6]:PORT`, with memcached's `notls:` prefix
/// dropped (without `-Z` every address is plain; with it, `from_args` refuses
/// the prefix). Returns the one address and the port an entry
/// named, if any. ringcache's shards listen on one address, so a list naming
/// several distinct ones is refused: a client sent to the others would find nothing.
pub fn parse_listen(lists: &[String]) -> Result<Vec<(String, Option<u16>)>, String> {
    let mut chosen: Vec<(String, Option<u16>)> = Vec::new();
    for entry in lists.iter().flat_map(|l| l.split(',')) {
        let entry = entry.trim();
        let entry = entry.strip_prefix("notls:").unwrap_or(entry);
        if entry.is_empty() {
            return Err(format!("-l {}: an empty address", lists.join(",")));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("-l {entry}: an IPv6 address needs its closing ]"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("-l {entry}: expected [ADDR]:PORT")),
            }
        } else {
            match entry.split_once(':') {
                // Two colons or more: a bare IPv6 address.
                Some((_, rest)) if rest.contains(':') => (entry, None),
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("-l {entry}: {p:?} is not a port"))?,
            ),
            None => None,
        };
        if !chosen.iter().any(|(h, p)| h == host && *p == port) {
            chosen.push((host.to_string(), port));
        }
    }
    if chosen.is_empty() {
        return Err("-l: no address given".into());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::config;

    #[test]
    fn sizes_take_k_and_m_suffixes() {
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn memory_limits_are_megabytes_or_take_a_suffix() {
        let mb = |text: &str| parse_memory_limit(text).map(|b| b >> 20);
        assert_eq!(mb("64"), Ok(64));
        assert_eq!(mb("64m"), Ok(64));
        assert_eq!(mb("64M"), Ok(64));
        assert_eq!(mb("1g"), Ok(1024));
        assert_eq!(mb("2048k"), Ok(2));
        assert_eq!(mb("1"), Ok(1));
        assert_eq!(mb("1024k"), Ok(1));
        assert_eq!(mb("1t"), Ok(1 << 20));
        for bad in [
            "0",
            "1023k",
            "0m",
            "2t",
            "",
            "m",
            "64x",
            "-1",
            "1.5g",
            "99999999999999999999",
        ] {
            assert!(parse_memory_limit(bad).is_err(), "{bad:?}");
        }
        assert_eq!(config(&["-m", "1g"]).unwrap().memory_limit_bytes, 1 << 30);
    }

    #[test]
    fn listen_takes_memcacheds_forms_and_lists() {
        let parse = |l: &[&str]| parse_listen(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let one = |host: &str, port: Option<u16>| Ok(vec![(host.to_string(), port)]);
        assert_eq!(parse(&["127.0.0.1"]), one("127.0.0.1", None));
        assert_eq!(parse(&["127.0.0.1:11300"]), one("127.0.0.1", Some(11300)));
        assert_eq!(parse(&["[::1]:11300"]), one("::1", Some(11300)));
        assert_eq!(parse(&["::1"]), one("::1", None));
        assert_eq!(parse(&["notls:127.0.0.1"]), one("127.0.0.1", None));
        // Repeats collapse; distinct addresses are each listened on.
        assert_eq!(parse(&["127.0.0.1,127.0.0.1"]), one("127.0.0.1", None));
        assert_eq!(parse(&["127.0.0.1", "127.0.0.1"]), one("127.0.0.1", None));
        assert_eq!(
            parse(&["127.0.0.1,127.0.0.2:11300", "::1"]),
            Ok(vec![
                ("127.0.0.1".to_string(), None),
                ("127.0.0.2".to_string(), Some(11300)),
                ("::1".to_string(), None)
            ])
        );
        for bad in [&["a:0"][..], &["a:x"], &[""], &["a,"], &["[::1"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let c = config(&["-l", "127.0.0.2:11300", "-p", "11211"]).unwrap();
        assert_eq!((c.listen.as_str(), c.port), ("127.0.0.2", 11300));
        let c = config(&["-l", "127.0.0.1,127.0.0.2:11300", "-p", "11211"]).unwrap();
        assert_eq!((c.listen.as_str(), c.port), ("127.0.0.1", 11211));
        assert_eq!(c.listen_also, vec![("127.0.0.2".to_string(), 11300)]);
    }
}

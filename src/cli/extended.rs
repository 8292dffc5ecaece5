//! memcached's `-o` extended options other than TLS's: each honoured, accepted
//! with a note saying why it does not apply, or refused (pure).

use super::tls::{ssl_option, SslOptions};
use super::{Args, C_INT_MAX};

/// memcached's bounds on `-o hashpower`.
const HASHPOWER_MIN: i64 = 12;
const HASHPOWER_MAX: i64 = 64;

/// memcached's bounds on `-o hot_lru_pct` and `warm_lru_pct`.
const LRU_PCT_MIN: i64 = 1;
const LRU_PCT_MAX: i64 = 80;

/// memcached's largest `-o lru_crawler_sleep` (microseconds).
const LRU_CRAWLER_SLEEP_MAX_US: i64 = 1_000_000;

/// memcached's largest `-o slab_automove` level.
const SLAB_AUTOMOVE_MAX: i64 = 2;

/// Why the store ignores the slab options.
const NO_SLABS: &str = "the store has no slab classes (one arena per shard, sized from -m)";

/// Why the store ignores the LRU thread options.
const NO_LRU_THREADS: &str =
    "each shard's store keeps one LRU and reclaims expired items when it meets them, with no background threads";

/// One `-o` option as given (`name` or `name=value`), with the checks its value
/// may need and the note it may be answered with.
struct SubOption<'a> {
    option: &'a str,
    name: &'a str,
    value: Option<&'a str>,
}

impl<'a> SubOption<'a> {
    fn new(option: &'a str) -> SubOption<'a> {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        SubOption {
            option,
            name,
            value,
        }
    }

    /// The value as a whole number from `lo` to `hi`.
    fn number(&self, lo: i64, hi: i64) -> Result<i64, String> {
        let (name, option) = (self.name, self.option);
        let text = self
            .value
            .ok_or_else(|| format!("-o {name}: missing numeric argument"))?;
        text.parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("-o {option}: must be a number from {lo} to {hi}"))
    }

    /// The value as a non-negative number.
    fn fraction(&self) -> Result<f64, String> {
        let (name, option) = (self.name, self.option);
        let text = self
            .value
            .ok_or_else(|| format!("-o {name}: missing numeric argument"))?;
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .ok_or_else(|| format!("-o {option}: must be a non-negative number"))
    }

    /// Accepted, with the note saying why it does not apply.
    fn note(&self, why: &str) -> Result<Option<String>, String> {
        Ok(Some(format!("-o {}: {why}; ignored", self.option)))
    }
}

/// Takes one memcached `-o` option (`name` or `name=value`): `Ok(None)` when it
/// is honoured or has no effect in memcached 1.6.18 either, `Ok(Some(note))` when
/// it is accepted but does not apply here, `Err` when it is malformed, unknown
/// (memcached: "Illegal suboption") or refused.
pub fn extended_option(option: &str) -> Result<Option<String>, String> {
    let o = SubOption::new(option);
    match o.name {
        // ringcache always answers a connection past -c and closes it.
        "maxconns_fast" => Ok(None),
        "no_maxconns_fast" => {
            o.note("a connection past -c is always answered and closed (maxconns_fast)")
        }
        // 1.6.18's `modern` enables nothing.
        "modern" => Ok(None),
        "no_modern" => o.note("ringcache serves memcached 1.6's behaviour only"),
        "idle_timeout" => {
            if o.number(0, C_INT_MAX)? == 0 {
                Ok(None)
            } else {
                o.note("ringcache does not close idle connections")
            }
        }
        "read_buf_mem_limit" => {
            o.number(0, C_INT_MAX)?;
            o.note("each connection's buffers are bounded by fixed limits")
        }
        "watcher_logbuf_size" | "worker_logbuf_size" => {
            o.number(0, C_INT_MAX)?;
            o.note("each watcher's queue holds a fixed 256 KiB of log lines")
        }
        "track_sizes" => o.note("`stats sizes` is not kept"),
        "inline_ascii_response" | "no_inline_ascii_response" => {
            o.note("replies are written the same way either way")
        }
        "drop_privileges" | "no_drop_privileges" => o.note(
            "memcached's seccomp filter has no counterpart; use the systemd unit's sandboxing",
        ),
        "sock_cookie_id" => {
            o.number(0, C_INT_MAX)?;
            o.note("sockets carry no cookie")
        }
        "meta_response_old" => Err(format!(
            "-o {option}: refused: ringcache answers meta commands with 1.6's codes (HD, NS, ...), not the old OK"
        )),
        _ => store_option(&o),
    }
}

/// The `-o` options that tune memcached's store (its hash table, slabs, LRU
/// threads, extstore), none of which ringcache's store has; anything else is
/// an illegal suboption.
fn store_option(o: &SubOption) -> Result<Option<String>, String> {
    match o.name {
        "hashpower" => {
            o.number(HASHPOWER_MIN, HASHPOWER_MAX)?;
            o.note("each shard's index is sized from its share of -m at start")
        }
        "no_hashexpand" => o.note("each shard's index is sized from its share of -m at start"),
        "hash_algorithm" => match o.value {
            Some("jenkins" | "murmur3" | "xxh3") => o.note("the index hashes keys with ahash"),
            _ => Err(format!(
                "-o {}: unknown hash_algorithm (jenkins, murmur3 or xxh3)",
                o.option
            )),
        },
        "slab_chunk_max" | "slab_automove_window" => {
            o.number(1, C_INT_MAX)?;
            o.note(NO_SLABS)
        }
        "slab_automove" => {
            o.number(0, SLAB_AUTOMOVE_MAX)?;
            o.note(NO_SLABS)
        }
        "slab_automove_ratio" | "slab_automove_freeratio" => {
            o.fraction()?;
            o.note(NO_SLABS)
        }
        "slab_reassign" | "no_slab_reassign" => o.note(NO_SLABS),
        "lru_crawler" | "no_lru_crawler" | "lru_maintainer" | "no_lru_maintainer"
        | "lru_segmented" | "no_lru_segmented" => o.note(NO_LRU_THREADS),
        "lru_crawler_sleep" => {
            o.number(0, LRU_CRAWLER_SLEEP_MAX_US)?;
            o.note(NO_LRU_THREADS)
        }
        "lru_crawler_tocrawl" | "tail_repair_time" | "temporary_ttl" => {
            o.number(0, C_INT_MAX)?;
            o.note(NO_LRU_THREADS)
        }
        "hot_lru_pct" | "warm_lru_pct" => {
            o.number(LRU_PCT_MIN, LRU_PCT_MAX)?;
            o.note(NO_LRU_THREADS)
        }
        "hot_max_factor" | "warm_max_factor" => {
            o.fraction()?;
            o.note(NO_LRU_THREADS)
        }
        "large_memory_pages" => o.note("the arenas use the kernel's default pages"),
        name if name.starts_with("ext_") => o.note("items are kept in memory only (no extstore)"),
        _ => Err(format!("-o {}: Illegal suboption", o.option)),
    }
}

/// The -o options: TLS's gathered for [`SslOptions::settings`], the others
/// honoured, noted or refused.
pub(super) fn extended_options(args: &Args, notes: &mut Vec<String>) -> Result<SslOptions, String> {
    let mut ssl = SslOptions::default();
    for option in args.extended.iter().flat_map(|o| o.split(',')) {
        if option.is_empty() {
            continue;
        }
        let note = if option.starts_with("ssl_") {
            ssl_option(option, &mut ssl)?
        } else {
            extended_option(option)?
        };
        if let Some(note) = note {
            notes.push(note);
        }
    }
    Ok(ssl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::config;

    #[test]
    fn extended_options_are_honoured_noted_or_refused() {
        let c = config(&[
            "-o",
            "modern,maxconns_fast,idle_timeout=0",
            "-o",
            "hashpower=16",
        ])
        .unwrap();
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(c.notes[0].starts_with("-o hashpower=16: "), "{:?}", c.notes);
        for option in [
            "slab_chunk_max=512",
            "lru_crawler",
            "no_lru_crawler",
            "lru_crawler_sleep=100",
            "hot_lru_pct=20",
            "warm_max_factor=2.0",
            "hash_algorithm=xxh3",
            "idle_timeout=600",
            "no_modern",
            "ext_path=/tmp/x:1G",
            "slab_automove=2",
            "track_sizes",
            "no_maxconns_fast",
        ] {
            let note = extended_option(option).unwrap().unwrap();
            assert!(note.starts_with(&format!("-o {option}: ")), "{note}");
        }
        for bad in [
            "hashpower=11",
            "hashpower=65",
            "hashpower",
            "hot_lru_pct=0",
            "hot_lru_pct=81",
            "lru_crawler_sleep=1000001",
            "slab_automove=3",
            "hash_algorithm=md5",
            "idle_timeout=-1",
            "idle_timeout=x",
            "hot_max_factor=x",
            "nonsense",
        ] {
            assert!(extended_option(bad).is_err(), "{bad}");
        }
        assert_eq!(
            extended_option("hashpower=12").map(|n| n.is_some()),
            Ok(true)
        );
        assert_eq!(
            extended_option("hashpower=64").map(|n| n.is_some()),
            Ok(true)
        );
    }
}

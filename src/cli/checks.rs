//! The checks `Config::from_args` makes of the flags: what ringcache refuses,
//! what it accepts with a note, and the bounds of each number (pure).

use super::{parse_memory_limit, parse_size, Args, Protocol, C_INT_MAX};
use crate::limits;

/// Refuses what ringcache does not serve and a client would rely on: unix
/// sockets, -S with -Y, -S on a cluster node, and -Z with a `notls:`
/// address.
pub(super) fn refuse_unserved(args: &Args) -> Result<(), String> {
    if let Some(path) = &args.unix_socket {
        return Err(format!(
            "-s {path}: ringcache does not serve unix sockets, and a client sent there would find nothing; listen on TCP with -l and -p"
        ));
    }
    if args.enable_sasl && args.auth_file.is_some() {
        return Err(
            "-S with -Y: SASL needs the binary protocol and ascii authentication the text one; choose one"
                .into(),
        );
    }
    if args.enable_sasl && (args.cluster_file.is_some() || args.data_dir.is_some()) {
        return Err(
            "-S: a cluster node's ports also carry node-to-node traffic, which speaks text; \
             -S serves a node that is not part of a cluster (-Y serves one)"
                .into(),
        );
    }
    if args.enable_ssl && args.listen.iter().any(|l| l.contains("notls:")) {
        return Err(
            "-l notls:...: with -Z every address serves TLS; ringcache has no plain listener beside it"
                .into(),
        );
    }
    Ok(())
}

/// -U and -a: checked, and noted as not served.
pub(super) fn note_udp_and_unix_mask(args: &Args, notes: &mut Vec<String>) -> Result<(), String> {
    if args.udp_port != 0 {
        notes.push(format!(
            "-U {}: UDP is not served; clients must use TCP",
            args.udp_port
        ));
    }
    if let Some(mask) = &args.unix_mask {
        if u32::from_str_radix(mask, 8).is_err() {
            return Err(format!("-a {mask}: not an octal mask"));
        }
        notes.push(format!(
            "-a {mask}: applies only to a unix socket (-s), which is not served"
        ));
    }
    Ok(())
}

/// -B, as memcached reads it (and ASCII alone under -Y).
pub(super) fn protocol(args: &Args) -> Result<Protocol, String> {
    let protocol = match args.protocol.as_str() {
        // As memcached: ASCII authentication makes every connection text.
        _ if args.auth_file.is_some() && args.protocol == "binary" => {
            return Err(
                "-B binary: You cannot allow the BINARY protocol while using ascii authentication tokens (-Y)"
                    .into(),
            )
        }
        _ if args.auth_file.is_some() => Protocol::Ascii,
        // As memcached: SASL makes every connection binary.
        "ascii" if args.enable_sasl => {
            return Err(
                "-B ascii: You cannot use only ASCII protocol while requiring SASL (-S)".into(),
            )
        }
        _ if args.enable_sasl => Protocol::Binary,
        "auto" | "negotiate" | "auto-negotiate" => Protocol::Auto,
        "ascii" => Protocol::Ascii,
        "binary" => Protocol::Binary,
        other => {
            return Err(format!(
                "-B {other}: Invalid value for binding protocol: -- should be one of auto, binary, or ascii"
            ))
        }
    };
    Ok(protocol)
}

/// -b and memcached's tuning flags: checked as memcached checks them, and
/// noted where ringcache has no use for them.
pub(super) fn check_tuning(args: &Args, notes: &mut Vec<String>) -> Result<(), String> {
    if !(1..=limits::LISTEN_BACKLOG_MAX).contains(&args.listen_backlog) {
        return Err(format!(
            "-b {}: the listen backlog must be 1 to {}",
            args.listen_backlog,
            limits::LISTEN_BACKLOG_MAX
        ));
    }
    if let Some(n) = args.max_reqs_per_event {
        if !(1..=C_INT_MAX).contains(&n) {
            return Err(format!(
                "-R {n}: Number of requests per event must be greater than 0"
            ));
        }
        notes.push(format!(
            "-R {n}: a connection's requests run until its read is answered, and the executor's task queue keeps connections fair"
        ));
    }
    if args.disable_cas {
        notes.push("-C: CAS is always kept (cluster replication carries it)".into());
    }
    if let Some(f) = args.slab_growth_factor {
        if f.is_nan() || f <= 1.0 {
            return Err(format!("-f {f}: Factor must be greater than 1"));
        }
        notes.push(format!("-f {f}: the store has no slab classes"));
    }
    if let Some(n) = args.slab_min_size {
        if !(1..=C_INT_MAX).contains(&n) {
            return Err(format!(
                "-n {n}: the minimum item size must be greater than 0"
            ));
        }
        notes.push(format!("-n {n}: the store has no slab classes"));
    }
    if args.large_pages {
        notes.push("-L: the arenas use the kernel's default pages".into());
    }
    if let Some(c) = &args.prefix_delimiter {
        if c.chars().count() != 1 {
            return Err(format!("-D {c:?}: the delimiter must be one character"));
        }
        notes.push(format!("-D {c}: per-prefix stats are not kept"));
    }
    if let Some(file) = &args.memory_file {
        notes.push(format!(
            "-e {file}: items are not kept across restarts; the cache starts empty"
        ));
    }
    if args.disable_dumping {
        notes.push(
            "-X: `stats cachedump` never lists items and `lru_crawler metadump` is not served"
                .into(),
        );
    }
    if args.disable_watch {
        notes.push("-W: not honoured: `watch` is served".into());
    }
    Ok(())
}

/// -I and -m, and the bounds each puts on the other: (item size, memory limit).
pub(super) fn sizes(args: &Args) -> Result<(usize, usize), String> {
    let item_size_max_bytes = parse_size(&args.max_item_size)?;
    if item_size_max_bytes < limits::ITEM_SIZE_MAX_MIN_BYTES {
        return Err(format!(
            "-I {}: item size must be at least {} bytes",
            args.max_item_size,
            limits::ITEM_SIZE_MAX_MIN_BYTES
        ));
    }
    if item_size_max_bytes > limits::ITEM_SIZE_MAX_MAX_BYTES {
        return Err(format!(
            "-I {}: item size can be at most 1g",
            args.max_item_size
        ));
    }
    let memory_limit_bytes = parse_memory_limit(&args.memory_limit)?;
    if item_size_max_bytes > memory_limit_bytes / 2 {
        return Err(format!(
            "-I {}: cannot set item size limit higher than 1/2 of memory max (-m {})",
            args.max_item_size, args.memory_limit
        ));
    }
    Ok((item_size_max_bytes, memory_limit_bytes))
}

/// The bounds of the connection, thread, port, timeout and key-count options.
pub(super) fn check_limits(args: &Args) -> Result<(), String> {
    if args.conn_limit == 0 {
        return Err("-c 0: at least one connection must be allowed".into());
    }
    if let Some(t) = args.threads {
        if t == 0 || t > limits::SHARDS_MAX {
            return Err(format!(
                "-t {t}: threads must be 1 to {}",
                limits::SHARDS_MAX
            ));
        }
    }
    if let Some(base) = args.shard_port_base {
        // The shard count is known only at start (it may come from the CPU
        // mask), so this checks for the most there can be.
        let last = base as usize + args.threads.unwrap_or(limits::SHARDS_MAX) - 1;
        if base == 0 || last > u16::MAX as usize {
            return Err(format!(
                "--shard-ports {base}: every shard needs a port from {base} up, and ports end at {}",
                u16::MAX
            ));
        }
    }
    if !(limits::PEER_TIMEOUT_MIN_MS..=limits::PEER_TIMEOUT_MAX_MS).contains(&args.peer_timeout_ms)
    {
        return Err(format!(
            "--peer-timeout-ms {}: must be {} to {}",
            args.peer_timeout_ms,
            limits::PEER_TIMEOUT_MIN_MS,
            limits::PEER_TIMEOUT_MAX_MS
        ));
    }
    if !(limits::FAILOVER_TIMEOUT_MIN_MS..=limits::FAILOVER_TIMEOUT_MAX_MS)
        .contains(&args.failover_timeout_ms)
    {
        return Err(format!(
            "--failover-timeout-ms {}: must be {} to {}",
            args.failover_timeout_ms,
            limits::FAILOVER_TIMEOUT_MIN_MS,
            limits::FAILOVER_TIMEOUT_MAX_MS
        ));
    }
    if args.hinted_keys_max == 0 || args.hinted_keys_max > limits::HINTED_KEYS_MAX_MAX {
        return Err(format!(
            "--hinted-keys-max {}: must be 1 to {}",
            args.hinted_keys_max,
            limits::HINTED_KEYS_MAX_MAX
        ));
    }
    if args.hot_keys > limits::HOT_KEYS_PER_SHARD_MAX {
        return Err(format!(
            "--hotkeys {}: must be 0 to {}",
            args.hot_keys,
            limits::HOT_KEYS_PER_SHARD_MAX
        ));
    }
    Ok(())
}

#!/usr/bin/env bash
# Memory density: memcached and ringcache, each with -m 64 (MEMORY_MB), are
# filled with small items (10-byte keys, 32-byte values) until the first
# eviction; prints the items each holds at that point and the ratio.
#
#   scripts/bench-memory.sh
#
# Settings (environment): MEMORY_MB (64), VALUE_BYTES (32), SERVER_CPU (1),
# BENCH_CPU (0).
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

MEMORY_MB=${MEMORY_MB:-64}
VALUE_BYTES=${VALUE_BYTES:-32}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}

ensure_memcached
build_release

declare -A items
for server in memcached ringcache; do
    port=$(free_port)
    start_server "$server" "$port" "$MEMORY_MB" "$SERVER_CPU"
    # Keys "k000000000": a 1-byte prefix and 9 digits.
    json=$(taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$port" --fill-until-evictions \
        --key-prefix k --key-digits 9 --data-size "$VALUE_BYTES" \
        --key-space $(( MEMORY_MB * 1024 * 1024 / 16 )) --json)
    stop_server "$SERVER_PID"
    items[$server]=$(jq -r .items <<<"$json")
    echo "$server -m $MEMORY_MB: $(jq -r '"\(.items) items when evictions started (\(.sets) sets, \(.errors) errors)"' <<<"$json")"
done
python3 -c "import sys; mc, rc = map(int, sys.argv[1:]); print(f'items ratio ringcache/memcached: {rc / mc:.2f}x ({rc} / {mc}; bytes per item: memcached {$MEMORY_MB*1048576/mc:.1f}, ringcache {$MEMORY_MB*1048576/rc:.1f})')" \
    "${items[memcached]}" "${items[ringcache]}"

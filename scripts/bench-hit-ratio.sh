#!/usr/bin/env bash
# Hit ratio under eviction: Zipf(0.99) keys over a key space ten times what
# memcached holds in -m 64, read cache-aside (get; on a miss, set), against
# memcached and ringcache with the same memory; prints each one's miss ratio.
#
#   scripts/bench-hit-ratio.sh
#
# "What fits" is measured: memcached is filled with this value size until its
# first eviction, and the key space is FACTOR (10) times the items it held.
# Each server then takes WARM_REQUESTS requests (not counted) and MEASURE_REQUESTS
# counted ones, with the same seeds.
#
# Settings (environment): MEMORY_MB (64), VALUE_BYTES (100), FACTOR (10),
# THETA (0.99), WARM_REQUESTS (2000000), MEASURE_REQUESTS (2000000),
# SERVER_CPU (1), BENCH_CPU (0).
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

MEMORY_MB=${MEMORY_MB:-64}
VALUE_BYTES=${VALUE_BYTES:-100}
FACTOR=${FACTOR:-10}
THETA=${THETA:-0.99}
WARM_REQUESTS=${WARM_REQUESTS:-2000000}
MEASURE_REQUESTS=${MEASURE_REQUESTS:-2000000}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}

ensure_memcached
build_release

load() {
    taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$1" --threads 1 --clients 10 \
        --pipeline 16 --cache-aside --key-pattern zipf --zipf-theta "$THETA" \
        --key-space "$KEYS" --key-prefix key: --key-digits 9 --data-size "$VALUE_BYTES" \
        --requests "$2" --seed "$3" --quiet --json
}

port=$(free_port)
start_server memcached "$port" "$MEMORY_MB" "$SERVER_CPU"
fits=$(taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$port" --fill-until-evictions \
    --key-prefix key: --key-digits 9 --data-size "$VALUE_BYTES" \
    --key-space $(( MEMORY_MB * 1024 * 1024 / 16 )) --json | jq -r .items)
stop_server "$SERVER_PID"
KEYS=$(( fits * FACTOR ))
say "memcached -m $MEMORY_MB holds $fits items of $VALUE_BYTES-byte values; key space $KEYS, Zipf($THETA)"

declare -A miss
for server in memcached ringcache; do
    port=$(free_port)
    start_server "$server" "$port" "$MEMORY_MB" "$SERVER_CPU"
    load "$port" "$WARM_REQUESTS" 1 >/dev/null
    json=$(load "$port" "$MEASURE_REQUESTS" 2)
    stop_server "$SERVER_PID"
    miss[$server]=$(jq -r .miss_ratio <<<"$json")
    echo "$server -m $MEMORY_MB: miss ratio $(jq -r '"\(.miss_ratio) (\(.misses) misses in \(.gets) gets; \(.errors) errors)"' <<<"$json")"
done
python3 -c "import sys; mc, rc = map(float, sys.argv[1:]); print(f'miss ratio ringcache/memcached: {rc / mc:.3f}x (target: at most 1.0x)')" \
    "${miss[memcached]}" "${miss[ringcache]}"

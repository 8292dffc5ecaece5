#!/usr/bin/env bash
# The memtier_benchmark runs an operator would make against a memcached-protocol
# server: text and binary protocols, pipeline 1 and 16, 1:10 and 1:1 set:get.
#
#   scripts/memtier.sh HOST PORT
#
# Settings (environment): THREADS (1), CLIENTS per thread (50), TEST_TIME
# seconds per run (10), KEYS (100000), DATA_SIZE bytes (32).
#
# memtier_benchmark is installed from Debian when Debian has it; when it cannot
# be had, this says so and exits 0 (scripts/bench-vs-memcached.sh and
# target/release/ringcache-bench cover the same ground).
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 HOST PORT" >&2
    exit 2
fi
host=$1 port=$2
THREADS=${THREADS:-1}
CLIENTS=${CLIENTS:-50}
TEST_TIME=${TEST_TIME:-10}
KEYS=${KEYS:-100000}
DATA_SIZE=${DATA_SIZE:-32}

if ! command -v memtier_benchmark >/dev/null; then
    candidate=$(apt-cache policy memtier-benchmark 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] && [ "$(id -u)" = 0 ]; then
        echo "installing memtier-benchmark $candidate from Debian" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memtier-benchmark </dev/null
    fi
fi
if ! command -v memtier_benchmark >/dev/null; then
    echo "memtier_benchmark is not installed and this system's package lists do not have it"
    echo "(Debian does not package it; 'apt-cache policy memtier-benchmark' shows no candidate)."
    echo "Nothing was run. Use scripts/bench-vs-memcached.sh or target/release/ringcache-bench instead."
    exit 0
fi

failed=0
run() {
    echo
    echo "==> memtier_benchmark $*"
    memtier_benchmark --server="$host" --port="$port" --threads="$THREADS" \
        --clients="$CLIENTS" --key-maximum="$KEYS" \
        --data-size="$DATA_SIZE" --hide-histogram "$@" || failed=1
}

for protocol in memcache_text memcache_binary; do
    # Fill the key space once so that gets hit.
    run --protocol="$protocol" --ratio=1:0 --key-pattern=P:P --requests=allkeys \
        --pipeline=16
    for pipeline in 1 16; do
        for ratio in 1:10 1:1; do
            run --protocol="$protocol" --pipeline="$pipeline" --ratio="$ratio" --key-pattern=R:R \
                --test-time="$TEST_TIME"
        done
    done
done
exit $failed

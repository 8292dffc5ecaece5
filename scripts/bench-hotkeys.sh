#!/usr/bin/env bash
# The cost of the hot-key sketch: ringcache with its default `--hotkeys` against
# `--hotkeys 0`, same flags, same CPUs, same load generator, taking turns
# A B A B, and the ratio of the server's CPU per request.
#
#   scripts/bench-hotkeys.sh                         # depth 16, 1:10 gets, 32 B
#   ROUNDS=9 CONNS=50 WORKLOAD=16/1:10/32 scripts/bench-hotkeys.sh
#   KEY_PATTERN=zipf scripts/bench-hotkeys.sh        # a few keys dominate
#
# Settings (environment): ROUNDS (5), DURATION seconds measured per run (3),
# WARMUP (0.5), CONNS (50), KEYS (100000: far more keys than counters, so
# almost every request takes over a counter, the sketch's costliest case),
# KEY_PATTERN (uniform, or zipf: ringcache-bench's --key-pattern, with
# ZIPF_THETA, 0.99),
# WORKLOAD ("DEPTH/SETS:GETS/VALUE_BYTES", 16/1:10/32), SERVER_THREADS (1),
# SERVER_CPU (1), BENCH_CPU (0), OUT (per-run JSON). Builds nothing: run
# `cargo build --release --bins` first.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-50}
KEYS=${KEYS:-100000}
KEY_PATTERN=${KEY_PATTERN:-uniform}
ZIPF_THETA=${ZIPF_THETA:-0.99}
WORKLOAD=${WORKLOAD:-16/1:10/32}
SERVER_THREADS=${SERVER_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-hotkeys.XXXXXX)}
mkdir -p "$OUT"
export SERVER_THREADS
[ -x "$RINGCACHE" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
IFS=/ read -r depth ratio size <<<"$WORKLOAD"

for round in $(seq 1 "$ROUNDS"); do
    for variant in on off; do
        if [ "$variant" = off ]; then RINGCACHE_ARGS="--hotkeys 0"; else RINGCACHE_ARGS=""; fi
        export RINGCACHE_ARGS
        port=$(free_port)
        start_server ringcache "$port" 256 "$SERVER_CPU"
        file="$OUT/${variant}_${round}.json"
        taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$port" --threads 1 \
            --clients "$CONNS" --pipeline "$depth" --ratio "$ratio" --data-size "$size" \
            --key-space "$KEYS" --key-pattern "$KEY_PATTERN" --zipf-theta "$ZIPF_THETA" --prefill --warmup "$WARMUP" --test-time "$DURATION" \
            --server-pid "$SERVER_PID" --json --quiet >"$file" || rm -f "$file"
        stop_server "$SERVER_PID"
        printf 'round %d hotkeys %-3s: %s\n' "$round" "$variant" \
            "$(jq -r '"\(.ops_per_sec|floor) ops/s, server \(.server_cpu_us_per_request) us/req"' "$file" 2>/dev/null || echo failed)" >&2
    done
done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
runs = {"on": {}, "off": {}}
for name in os.listdir(out):
    if name.endswith(".json"):
        variant, rnd = name[:-5].split("_")
        with open(os.path.join(out, name)) as f:
            runs[variant][rnd] = json.load(f)
cpu = lambda r: r["server_cpu_us_per_request"]
on = [cpu(r) for r in runs["on"].values()]
off = [cpu(r) for r in runs["off"].values()]
paired = [cpu(runs["on"][k]) / cpu(runs["off"][k]) for k in runs["on"] if k in runs["off"]]
kops = lambda v: statistics.median(r["ops_per_sec"] for r in runs[v].values()) / 1000
print(f"server CPU us/req, median of {len(on)}: hotkeys on {statistics.median(on):.3f}, "
      f"off {statistics.median(off):.3f}; ratio of medians {statistics.median(on)/statistics.median(off):.3f}, "
      f"median paired ratio {statistics.median(paired):.3f}")
print(f"throughput kops/s: on {kops('on'):.1f}, off {kops('off'):.1f}")
PY

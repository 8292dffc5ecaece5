#!/usr/bin/env bash
# ringcache (one shard) against memcached (-t 1) on the same CPU, with the load
# generator (ringcache-bench) on the other CPU, taking turns A B A B.
#
#   scripts/bench-vs-memcached.sh                 # defaults: about 3 minutes
#   ROUNDS=5 DURATION=10 scripts/bench-vs-memcached.sh
#
# Settings (environment): ROUNDS (2), DURATION seconds measured per run (3),
# WARMUP seconds of load before measuring (0.5), CONNS (50), KEYS (100000),
# MEMORY_MB per server (256), SERVER_CPU (1), BENCH_CPU (0),
# WORKLOADS ("DEPTH/SETS:GETS/VALUE_BYTES ...", default all of depth 1 and 16,
# 1:10 and 1:1, 32 B and 1 KiB), OUT (directory for the per-run JSON),
# RINGCACHE_ARGS (extra flags for ringcache, e.g. "--spin-before-park-us 50").
#
# Per run it records throughput, p50 and p99 latency, the server's CPU per
# request (utime+stime from /proc/PID/stat over the measured seconds only,
# divided by requests) and the generator's own CPU per request; the table shows
# each server's median over the rounds and the ratio ringcache/memcached.
# Each run gets a fresh server, prefilled with every key so gets hit.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-50}
KEYS=${KEYS:-100000}
MEMORY_MB=${MEMORY_MB:-256}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}
WORKLOADS=${WORKLOADS:-"1/1:10/32 1/1:1/32 1/1:10/1024 1/1:1/1024 16/1:10/32 16/1:1/32 16/1:10/1024 16/1:1/1024"}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-bench.XXXXXX)}
mkdir -p "$OUT"

ensure_memcached
build_release

runs=$(( $(wc -w <<<"$WORKLOADS") * ROUNDS * 2 ))
say "$runs runs of ${DURATION}s; servers on CPU $SERVER_CPU, generator on CPU $BENCH_CPU; results in $OUT"
if [ "$(nproc)" -lt 2 ]; then
    echo "warning: fewer than 2 CPUs: server and generator share one" >&2
fi

n=0
for w in $WORKLOADS; do
    IFS=/ read -r depth ratio size <<<"$w"
    for round in $(seq 1 "$ROUNDS"); do
        for server in memcached ringcache; do
            n=$((n + 1))
            port=$(free_port)
            start_server "$server" "$port" "$MEMORY_MB" "$SERVER_CPU"
            tag="d${depth}_r${ratio/:/-}_v${size}"
            file="$OUT/${tag}_${server}_${round}.json"
            if ! taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$port" --threads 1 \
                --clients "$CONNS" --pipeline "$depth" --ratio "$ratio" --data-size "$size" \
                --key-space "$KEYS" --prefill --warmup "$WARMUP" --test-time "$DURATION" \
                --server-pid "$SERVER_PID" --json --quiet >"$file"; then
                echo "run failed: $server $w round $round" >&2
                rm -f "$file"
            fi
            stop_server "$SERVER_PID"
            printf '[%d/%d] %-9s %-16s round %d: %s\n' "$n" "$runs" "$server" "$w" "$round" \
                "$(jq -r '"\(.ops_per_sec|floor) ops/s, p99 \(.latency_us.p99) us, server \(.server_cpu_us_per_request) us/req, errors \(.errors)"' "$file" 2>/dev/null || echo failed)" >&2
        done
    done
done

python3 - "$OUT" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
runs = {}
rounds = {}
for name in sorted(os.listdir(out)):
    if not name.endswith(".json"):
        continue
    tag, server, rnd = name[:-5].rsplit("_", 2)
    with open(os.path.join(out, name)) as f:
        run = json.load(f)
    runs.setdefault(tag, {}).setdefault(server, []).append(run)
    rounds.setdefault(tag, {}).setdefault(rnd, {})[server] = run

def med(rs, f):
    vals = [f(r) for r in rs if f(r) is not None]
    return statistics.median(vals) if vals else None

def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"

def ratio(a, b):
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}x"

def key(tag):
    d, r, v = tag.split("_")
    return (int(d[1:]), r, int(v[1:]))

metrics = [
    ("kops/s", lambda r: r["ops_per_sec"] / 1000, 1),
    ("srv us/req", lambda r: r["server_cpu_us_per_request"], 2),
    ("p50 us", lambda r: r["latency_us"]["p50"], 1),
    ("p99 us", lambda r: r["latency_us"]["p99"], 1),
]
print()
print("medians over rounds; ratio = ringcache / memcached "
      "(throughput: higher is better; CPU and latency: lower is better)")
print(f"{'':<20}" + "".join(f"| {m:^23} " for m, _, _ in metrics))
head = f"{'workload':<20}" + "".join(f"| {'mc':>7} {'rc':>7} {'ratio':>7} " for _ in metrics)
print(head + f"| {'paired':>7} | {'gen us/req':>7}")
print("-" * len(head))
for tag in sorted(runs, key=key):
    mc, rc = runs[tag].get("memcached", []), runs[tag].get("ringcache", [])
    d, r, v = tag.split("_")
    row = f"{'depth ' + d[1:] + ' ' + r[1:].replace('-', ':') + ' ' + v[1:] + 'B':<20}"
    for m, f, digits in metrics:
        a, b = med(rc, f), med(mc, f)
        row += f"| {fmt(b, digits):>7} {fmt(a, digits):>7} {ratio(a, b):>7} "
    # Each round's two runs are minutes apart at most: the median of their CPU
    # ratios is steadier than the ratio of medians when the machine drifts.
    paired = [p["ringcache"]["server_cpu_us_per_request"] / p["memcached"]["server_cpu_us_per_request"]
              for p in rounds[tag].values() if "ringcache" in p and "memcached" in p]
    pr = f"{statistics.median(paired):.2f}x" if paired else "-"
    g = med(mc + rc, lambda r: r["bench_cpu_us_per_request"])
    print(row + f"| {pr:>7} | {fmt(g, 2):>7}")
    errs = sum(x["errors"] for x in mc + rc)
    if errs:
        print(f"  warning: {errs} error replies in {tag}")
print("\npaired: the median over rounds of each round's server CPU ratio (its two runs back to back)")
print("gen us/req: the load generator's own CPU per request (median over both servers' runs)")
EOF

#!/usr/bin/env bash
# ringcache against memcached with the same threads, on the same CPUs, with the
# same load generator (ringcache-bench), taking turns A B A B, at every
# connection count from a lone client to hundreds.
#
#   scripts/bench-vs-memcached.sh                       # -t 1: about 6 minutes
#   SERVER_THREADS=2 SERVER_CPU=0,1 BENCH_CPU=0,1 SHARD_AWARE=1 scripts/bench-vs-memcached.sh
#   CONNS="1 10" WORKLOADS="1/1:10/32" ROUNDS=5 scripts/bench-vs-memcached.sh
#
# Settings (environment): ROUNDS (2), DURATION seconds measured per run (3),
# WARMUP seconds of load before measuring (0.5), CONNS (connection counts,
# "1 10 50 400"), KEYS (100000), MEMORY_MB per server (256), SERVER_THREADS
# (memcached -t N against ringcache -t N, 1), SERVER_CPU (1), BENCH_CPU (0),
# SHARD_AWARE (1: also ringcache with --shard-ports and the client routing each
# key to its shard's port by ketama, --ketama), WORKLOADS ("DEPTH/SETS:GETS/VALUE_BYTES
# ...", default depth 1 at 1:10 32 B and 1:1 1 KiB, depth 16 at 1:10 32 B),
# OUT (directory for the per-run JSON), RINGCACHE_ARGS (extra flags for ringcache,
# e.g. "--spin-before-park-us 50").
#
# Per run it records throughput, p50 and p99 latency, the server's CPU per
# request (utime+stime from /proc/PID/stat over the measured seconds only,
# divided by requests) and the generator's own CPU per request; the table shows
# each server's median over the rounds and the ratio ringcache/memcached.
# Each run gets a fresh server, prefilled with every key so gets hit.
# With fewer CPUs than SERVER_CPU and BENCH_CPU name apart, server and client
# share CPUs: the ratios still compare like with like, the absolute rates do not
# reach what a machine with room for both would.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-"1 10 50 400"}
KEYS=${KEYS:-100000}
MEMORY_MB=${MEMORY_MB:-256}
SERVER_THREADS=${SERVER_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}
SHARD_AWARE=${SHARD_AWARE:-0}
WORKLOADS=${WORKLOADS:-"1/1:10/32 1/1:1/1024 16/1:10/32"}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-bench.XXXXXX)}
mkdir -p "$OUT"
export SERVER_THREADS

ensure_memcached
build_release

servers=(memcached ringcache)
[ "$SHARD_AWARE" = 1 ] && servers+=(ringcache-ketama)
runs=$(( $(wc -w <<<"$WORKLOADS") * $(wc -w <<<"$CONNS") * ROUNDS * ${#servers[@]} ))
say "$runs runs of ${DURATION}s; -t $SERVER_THREADS servers on CPU $SERVER_CPU, generator on CPU $BENCH_CPU; results in $OUT"
if [ "$(nproc)" -lt 2 ]; then
    echo "warning: fewer than 2 CPUs: server and generator share one" >&2
fi

n=0
for conns in $CONNS; do
    for w in $WORKLOADS; do
        IFS=/ read -r depth ratio size <<<"$w"
        for round in $(seq 1 "$ROUNDS"); do
            for server in "${servers[@]}"; do
                n=$((n + 1))
                port=$(free_ports $((SERVER_THREADS + 1)))
                start_server "$server" "$port" "$MEMORY_MB" "$SERVER_CPU"
                target=(--servers "127.0.0.1:$port")
                if [ "$server" = ringcache-ketama ]; then
                    target=(--ketama "$(ketama_endpoints "$port" "$SERVER_THREADS")")
                fi
                tag="c${conns}_d${depth}_r${ratio/:/-}_v${size}"
                file="$OUT/${tag}_${server}_${round}.json"
                if ! taskset -c "$BENCH_CPU" "$BENCH" "${target[@]}" --threads 1 \
                    --clients "$conns" --pipeline "$depth" --ratio "$ratio" --data-size "$size" \
                    --key-space "$KEYS" --prefill --warmup "$WARMUP" --test-time "$DURATION" \
                    --server-pid "$SERVER_PID" --json --quiet >"$file"; then
                    echo "run failed: $server $conns conns $w round $round" >&2
                    rm -f "$file"
                fi
                stop_server "$SERVER_PID"
                printf '[%d/%d] %-16s c%-4s %-12s round %d: %s\n' "$n" "$runs" "$server" "$conns" \
                    "$w" "$round" \
                    "$(jq -r '"\(.ops_per_sec|floor) ops/s, p99 \(.latency_us.p99) us, server \(.server_cpu_us_per_request) us/req, errors \(.errors)"' "$file" 2>/dev/null || echo failed)" >&2
            done
        done
    done
done

python3 - "$OUT" "$SERVER_THREADS" <<'EOF'
import json, os, statistics, sys
out, threads = sys.argv[1], sys.argv[2]
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
    c, d, r, v = tag.split("_")
    return (int(c[1:]), int(d[1:]), r, int(v[1:]))

metrics = [
    ("kops/s", lambda r: r["ops_per_sec"] / 1000, 1),
    ("srv us/req", lambda r: r["server_cpu_us_per_request"], 2),
    ("p50 us", lambda r: r["latency_us"]["p50"], 1),
    ("p99 us", lambda r: r["latency_us"]["p99"], 1),
]
variants = [v for v in ("ringcache", "ringcache-ketama")
            if any(v in servers for servers in runs.values())]
print()
print(f"-t {threads}: medians over rounds; ratio = ringcache / memcached "
      "(throughput: higher is better; CPU and latency: lower is better)")
print(f"{'':<34}" + "".join(f"| {m:^23} " for m, _, _ in metrics))
head = f"{'workload':<34}" + "".join(f"| {'mc':>7} {'rc':>7} {'ratio':>7} " for _ in metrics)
print(head + f"| {'paired':>7} | {'gen us/req':>7}")
print("-" * len(head))
for tag in sorted(runs, key=key):
    c, d, r, v = tag.split("_")
    mc = runs[tag].get("memcached", [])
    for variant in variants:
        rc = runs[tag].get(variant, [])
        if not rc:
            continue
        name = f"c{c[1:]} d{d[1:]} {r[1:].replace('-', ':')} {v[1:]}B"
        if variant != "ringcache":
            name += " ketama"
        row = f"{name:<34}"
        for m, f, digits in metrics:
            a, b = med(rc, f), med(mc, f)
            row += f"| {fmt(b, digits):>7} {fmt(a, digits):>7} {ratio(a, b):>7} "
        # Each round's runs are minutes apart at most: the median of their CPU
        # ratios is steadier than the ratio of medians when the machine drifts.
        paired = [p[variant]["server_cpu_us_per_request"] / p["memcached"]["server_cpu_us_per_request"]
                  for p in rounds[tag].values() if variant in p and "memcached" in p]
        pr = f"{statistics.median(paired):.2f}x" if paired else "-"
        g = med(mc + rc, lambda r: r["bench_cpu_us_per_request"])
        print(row + f"| {pr:>7} | {fmt(g, 2):>7}")
        errs = sum(x["errors"] for x in mc + rc)
        if errs:
            print(f"  warning: {errs} error replies in {tag} ({variant})")
print("\npaired: the median over rounds of each round's server CPU ratio (its runs back to back)")
print("gen us/req: the load generator's own CPU per request (median over the runs)")
print("ketama: ringcache --shard-ports, the client sending each key to its shard's port")
EOF

#!/usr/bin/env bash
# How far below memcached's CPU per request any server can go at pipeline depth 1
# on this machine: memcached -t 1, ringcache -t 1 and the two floor servers of
# benches/floor.rs (canned replies, no store: one with epoll, one with io_uring
# multishot receive and provided buffers), each in turn on the same CPU with the
# same generator on the other, several rounds.
#
#   scripts/bench-floor.sh                    # defaults: about 2 minutes
#   ROUNDS=5 scripts/bench-floor.sh
#
# Settings (environment): ROUNDS (3), DURATION seconds measured per run (3),
# WARMUP (0.5), CONNS (50), KEYS (100000), MEMORY_MB (256), SERVER_CPU (1),
# BENCH_CPU (0), WORKLOADS ("SETS:GETS/VALUE_BYTES ...", default "1:10/32 1:10/1024"),
# OUT (directory for the per-run JSON).
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-50}
KEYS=${KEYS:-100000}
MEMORY_MB=${MEMORY_MB:-256}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}
WORKLOADS=${WORKLOADS:-"1:10/32 1:10/1024"}
SERVERS="memcached ringcache floor-epoll floor-uring"
OUT=${OUT:-$(mktemp -d /tmp/ringcache-floor.XXXXXX)}
mkdir -p "$OUT"

ensure_memcached
build_release
build_floor

runs=$(( $(wc -w <<<"$WORKLOADS") * ROUNDS * 4 ))
say "$runs runs of ${DURATION}s at depth 1; servers on CPU $SERVER_CPU, generator on CPU $BENCH_CPU; results in $OUT"
n=0
for w in $WORKLOADS; do
    IFS=/ read -r ratio size <<<"$w"
    for round in $(seq 1 "$ROUNDS"); do
        for server in $SERVERS; do
            n=$((n + 1))
            port=$(free_port)
            FLOOR_VALUE_BYTES=$size start_server "$server" "$port" "$MEMORY_MB" "$SERVER_CPU"
            file="$OUT/r${ratio/:/-}_v${size}_${server}_${round}.json"
            if ! taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$port" --threads 1 \
                --clients "$CONNS" --pipeline 1 --ratio "$ratio" --data-size "$size" \
                --key-space "$KEYS" --prefill --warmup "$WARMUP" --test-time "$DURATION" \
                --server-pid "$SERVER_PID" --json --quiet >"$file"; then
                echo "run failed: $server $w round $round" >&2
                rm -f "$file"
            fi
            stop_server "$SERVER_PID"
            printf '[%d/%d] %-11s %-9s round %d: %s\n' "$n" "$runs" "$server" "$w" "$round" \
                "$(jq -r '"\(.ops_per_sec|floor) ops/s, server \(.server_cpu_us_per_request) us/req"' "$file" 2>/dev/null || echo failed)" >&2
        done
    done
done

python3 - "$OUT" $SERVERS <<'EOF_PY'
import json, os, statistics, sys
out, servers = sys.argv[1], sys.argv[2:]
runs = {}
for name in sorted(os.listdir(out)):
    if not name.endswith(".json"):
        continue
    ratio, size, rest = name[:-5].split("_", 2)
    server, rnd = rest.rsplit("_", 1)
    with open(os.path.join(out, name)) as f:
        cpu = json.load(f)["server_cpu_us_per_request"]
    runs.setdefault((ratio, size), {}).setdefault(rnd, {})[server] = cpu
print()
print("depth 1, server CPU per request (us), medians over rounds; (x): the median of each")
print("round's ratio to memcached's run of that round (the runs of a round are back to back)")
print(f"{'workload':<14}" + "".join(f"| {s:>20} " for s in servers))
for (ratio, size) in sorted(runs, key=lambda k: int(k[1][1:])):
    row = f"{ratio[1:].replace('-', ':') + ' ' + size[1:] + ' B':<14}"
    rounds = runs[(ratio, size)].values()
    for s in servers:
        vals = [r[s] for r in rounds if s in r]
        if not vals:
            row += f"| {'-':>20} "
            continue
        paired = [r[s] / r["memcached"] for r in rounds if s in r and "memcached" in r]
        rel = f"({statistics.median(paired):.2f}x)" if paired else ""
        row += f"| {statistics.median(vals):>11.2f} {rel:>8} "
    print(row)
EOF_PY

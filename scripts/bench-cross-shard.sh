#!/usr/bin/env bash
# What a request that crosses to the other shard of a node costs against one its
# own shard serves: ringcache -t 2 --shard-ports, server CPU per request
# (/proc/PID/stat over the measured seconds), local and crossing runs taking turns.
#
#   scripts/bench-cross-shard.sh              # defaults: about 1 minute
#   ROUNDS=5 DURATION=5 scripts/bench-cross-shard.sh
#
# Two set-ups, each at pipeline depth 1 and 16, 1:10 set:get, 32-byte values:
#   both   both shards under load: CONNS/2 connections on each shard's own port
#          (two generator processes); local runs draw keys the connected shard
#          owns, crossing runs keys the other shard owns. Every shard does its
#          own socket work and answers the other's batches, so neither idles.
#   one    all CONNS connections on shard 0's port, keys owned by shard 0 (local)
#          or shard 1 (crossing); shard 1 does nothing but answer, so it parks
#          between batches. The generator runs on CPU BENCH_CPU (0, shard 0's).
#
# Settings (environment): ROUNDS (3), DURATION seconds measured per run (3),
# WARMUP (1), CONNS (50), KEYS (100000), DEPTHS ("1 16"), SETUPS ("both one"),
# BENCH_CPU (0), OUT (directory for the per-run JSON).
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-50}
KEYS=${KEYS:-100000}
DEPTHS=${DEPTHS:-"1 16"}
SETUPS=${SETUPS:-"both one"}
BENCH_CPU=${BENCH_CPU:-0}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-cross.XXXXXX)}
mkdir -p "$OUT"

build_release
if [ "$(nproc)" -lt 2 ]; then
    echo "warning: fewer than 2 CPUs: both shards share one" >&2
fi

# start_node: a two-shard node; sets NODE_PID, SHARD0 and SHARD1 (host:port).
start_node() {
    local port base
    # Three consecutive ports nothing listens on: the node's, then its shards'.
    port=$(python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    try:
        for q in (p + 1, p + 2):
            t = socket.socket(); t.bind(("127.0.0.1", q)); t.close()
        print(p); break
    except OSError:
        pass')
    base=$((port + 1))
    "$RINGCACHE" -t 2 -U 0 -c 4096 -l 127.0.0.1 -p "$port" --shard-ports "$base" \
        -m 256 >/dev/null 2>&1 &
    NODE_PID=$!
    BENCH_PIDS+=("$NODE_PID")
    wait_for_port "$port"
    wait_for_port $((base + 1))
    SHARD0=127.0.0.1:$base
    SHARD1=127.0.0.1:$((base + 1))
}

# generate SERVER OWNED_BY CONNS DEPTH SEED [taskset prefix...]: one generator run.
generate() {
    local server=$1 owned=$2 conns=$3 depth=$4 seed=$5
    shift 5
    "$@" "$BENCH" --servers "$server" --threads 1 --clients "$conns" --pipeline "$depth" \
        --ratio 1:10 --data-size 32 --key-space "$KEYS" --owned-by "$owned" \
        --ring "$SHARD0,$SHARD1" --prefill --warmup "$WARMUP" --test-time "$DURATION" \
        --server-pid "$NODE_PID" --seed "$seed" --json --quiet
}

runs=$(( $(wc -w <<<"$SETUPS") * $(wc -w <<<"$DEPTHS") * ROUNDS * 2 ))
say "$runs runs of ${DURATION}s; results in $OUT"
n=0
for setup in $SETUPS; do
    for depth in $DEPTHS; do
        for round in $(seq 1 "$ROUNDS"); do
            for kind in local crossing; do
                n=$((n + 1))
                start_node
                file="$OUT/${setup}_d${depth}_${kind}_${round}"
                case $setup in
                    both)
                        if [ $kind = local ]; then a=$SHARD0; b=$SHARD1; else a=$SHARD1; b=$SHARD0; fi
                        generate "$SHARD0" "$a" $((CONNS / 2)) "$depth" 1 >"$file.a.json" &
                        gen=$!
                        generate "$SHARD1" "$b" $((CONNS / 2)) "$depth" 2 >"$file.b.json"
                        wait "$gen"
                        ;;
                    one)
                        owned=$SHARD0
                        [ $kind = local ] || owned=$SHARD1
                        generate "$SHARD0" "$owned" "$CONNS" "$depth" 1 taskset -c "$BENCH_CPU" \
                            >"$file.a.json"
                        ;;
                    *) echo "unknown set-up $setup" >&2; exit 2 ;;
                esac
                stop_server "$NODE_PID"
                printf '[%d/%d] %-4s depth %-2s %-8s round %d\n' "$n" "$runs" "$setup" "$depth" \
                    "$kind" "$round" >&2
            done
        done
    done
done

python3 - "$OUT" <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(os.path.join(out, "*.a.json")):
    setup, depth, kind, _ = os.path.basename(path)[:-7].split("_")
    parts = [json.load(open(path))]
    b = path[:-7] + ".b.json"
    if os.path.exists(b):
        parts.append(json.load(open(b)))
    # The generators measured the same seconds: the server's CPU over them, divided
    # by the requests of all of them.
    ops = sum(p["ops_per_sec"] for p in parts)
    cpu = 1 / sum(1 / p["server_cpu_us_per_request"] for p in parts)
    errors = sum(p["errors"] for p in parts)
    runs.setdefault((setup, int(depth[1:])), {}).setdefault(kind, []).append((ops, cpu, errors))

print()
print("server CPU per request, medians over rounds; ratio = crossing / local")
print(f"{'set-up':<8}{'depth':>6} | {'local us':>9} {'cross us':>9} {'ratio':>7} | "
      f"{'local kops/s':>12} {'cross kops/s':>12}")
for (setup, depth) in sorted(runs, key=lambda k: (k[0] != "both", k[1])):
    r = runs[(setup, depth)]
    if "local" not in r or "crossing" not in r:
        continue
    lc = statistics.median(c for _, c, _ in r["local"])
    cc = statistics.median(c for _, c, _ in r["crossing"])
    lo = statistics.median(o for o, _, _ in r["local"]) / 1000
    co = statistics.median(o for o, _, _ in r["crossing"]) / 1000
    print(f"{setup:<8}{depth:>6} | {lc:>9.2f} {cc:>9.2f} {cc / lc:>6.2f}x | {lo:>12.1f} {co:>12.1f}")
    errs = sum(e for k in r.values() for _, _, e in k)
    if errs:
        print(f"  warning: {errs} error replies")
EOF

#!/usr/bin/env bash
# What a cluster costs per request, on one machine over loopback: node N of
# each cluster runs as its own process on 127.0.0.N, one shard each.
#
#   scripts/bench-cluster.sh                      # defaults: about 1 minute
#   ROUNDS=3 DURATION=10 scripts/bench-cluster.sh
#
# (a) Forwarding: 3 owner nodes, R=1, plus node 4 in state "joining" (a member
#     that owns no keys and forwards every request to its owner). The same
#     get-heavy load runs through node 4's client address (every request makes
#     one hop to another node) and with `ringcache-bench --ketama` straight to
#     the owners' shard endpoints (no hop). Ratio: via node 4 / direct.
# (b) Replication: write-only load through node 1's client address, against a
#     fresh 3-node cluster with R=1, then a fresh one with R=2 (write_ack "all";
#     "quorum" of 2 is also 2, so the same). Ratio: R=2 / R=1.
#
# Settings (environment): ROUNDS (2; runs alternate A B A B, the table shows
# medians), DURATION seconds measured per run (5), WARMUP seconds of load
# before measuring (0.5), CONNS client connections (16), PIPELINE requests in
# flight per connection (1), KEYS (100000), VALUE_BYTES (32), READ_RATIO
# set:get for (a) (1:10), MEMORY_MB per node (64), WRITE_ACK for R=2 ("all"),
# SPREAD (0; 1 starts node N under `taskset -c` CPU (N-1) mod nproc), OUT
# (directory for the cluster files, node logs and per-run JSON).
#
# Nothing is pinned by default: the 4 node processes and the generator share
# the machine's CPUs. Note that a node with no more shards than allowed CPUs
# pins each shard thread to a CPU of its own mask itself (its one shard to the
# lowest CPU), so without SPREAD every node's shard lands on the same CPU; the
# header shows where each node's shard thread may run.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-16}
PIPELINE=${PIPELINE:-1}
KEYS=${KEYS:-100000}
VALUE_BYTES=${VALUE_BYTES:-32}
READ_RATIO=${READ_RATIO:-1:10}
MEMORY_MB=${MEMORY_MB:-64}
WRITE_ACK=${WRITE_ACK:-all}
SPREAD=${SPREAD:-0}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-bench-cluster.XXXXXX)}
mkdir -p "$OUT"

# How long nodes may take to serve and reach each other.
READY_TIMEOUT_SECS=20

# Of the cluster running now: node ids, client addresses, shard endpoints, pids.
NODE_IDS=()
declare -A NODE_ADDR=() NODE_SHARD=() NODE_PID=()

# start_cluster NAME REPLICAS WRITE_ACK OWNERS [JOINING]: writes $OUT/NAME.toml
# with OWNERS up nodes (ids 1..OWNERS) and, if JOINING is 1, one more node in
# state "joining"; starts every node and waits until each serves and reaches
# the others.
start_cluster() {
    local name=$1 replicas=$2 ack=$3 owners=$4 joining=${5:-0}
    local file="$OUT/$name.toml" total=$((owners + joining)) id ip state
    NODE_IDS=()
    NODE_ADDR=() NODE_SHARD=() NODE_PID=()
    {
        echo "# written by scripts/bench-cluster.sh"
        echo "replicas = $replicas"
        echo "vnodes_per_shard = 160"
        echo "write_ack = \"$ack\""
        echo "acceptors = [1]"
        echo "secret_file = \"$name.secret\""
    } >"$file"
    # Members only: every node of the cluster holds its secret.
    (umask 077 && head -c 32 /dev/urandom | base64 >"$OUT/$name.secret")
    for id in $(seq 1 "$total"); do
        ip=127.0.0.$id
        NODE_IDS+=("$id")
        NODE_ADDR[$id]=$ip:$(free_port_on "$ip")
        NODE_SHARD[$id]=$ip:$(free_port_on "$ip")
        state=up
        if [ "$id" -gt "$owners" ]; then state=joining; fi
        printf '\n[[node]]\nid = %s\naddr = "%s"\nshards = ["%s"]\nstate = "%s"\n' \
            "$id" "${NODE_ADDR[$id]}" "${NODE_SHARD[$id]}" "$state" >>"$file"
    done
    for id in "${NODE_IDS[@]}"; do
        local pin=()
        if [ "$SPREAD" = 1 ]; then pin=(taskset -c $(((id - 1) % $(nproc)))); fi
        "${pin[@]}" "$RINGCACHE" --cluster "$file" --node-id "$id" -m "$MEMORY_MB" \
            >"$OUT/$name.node$id.log" 2>&1 &
        NODE_PID[$id]=$!
        BENCH_PIDS+=("$!")
    done
    local addrs=()
    for id in "${NODE_IDS[@]}"; do addrs+=("$id=${NODE_ADDR[$id]}"); done
    if ! python3 - "$READY_TIMEOUT_SECS" "${addrs[@]}" <<'EOF'; then
import socket, sys, time
timeout, nodes = float(sys.argv[1]), dict(a.split("=", 1) for a in sys.argv[2:])

def stats_cluster(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1) as s:
        s.sendall(b"stats cluster\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return dict(l.split(" ", 2)[1:] for l in buf.decode().splitlines() if l.startswith("STAT "))

deadline, waiting = time.time() + timeout, dict(nodes)
while waiting and time.time() < deadline:
    for node, addr in list(waiting.items()):
        try:
            st = stats_cluster(addr)
        except OSError:
            continue
        peers = [p for p in nodes if p != node]
        if st.get("node_state") == "serving" and all(
                st.get(f"node:{p}:reachable") == "yes" for p in peers):
            del waiting[node]
    time.sleep(0.05)
if waiting:
    sys.exit(f"nodes {sorted(waiting)} did not serve and reach every peer in {timeout:.0f} s")
EOF
        echo "cluster $name did not start: see $OUT/$name.node*.log" >&2
        return 1
    fi
}

stop_cluster() {
    local id
    for id in "${NODE_IDS[@]}"; do stop_server "${NODE_PID[$id]}"; done
}

# The CPUs node ID's shard thread may run on (its affinity list).
shard_cpus() {
    local pid=${NODE_PID[$1]} task
    for task in /proc/"$pid"/task/*; do
        if [ "$(cat "$task/comm" 2>/dev/null)" = shard-0 ]; then
            awk '/^Cpus_allowed_list/ {print $2}' "$task/status"
            return
        fi
    done
    echo "?"
}

node_pids() {
    local id pids=()
    for id in "${NODE_IDS[@]}"; do pids+=("${NODE_PID[$id]}"); done
    (IFS=,; echo "${pids[*]}")
}

# bench FILE TARGET... : one measured run, its JSON summary to FILE.
bench() {
    local file=$1
    shift
    if ! "$BENCH" "$@" --threads 1 --clients "$CONNS" --pipeline "$PIPELINE" \
        --data-size "$VALUE_BYTES" --key-space "$KEYS" --warmup "$WARMUP" \
        --test-time "$DURATION" --server-pid "$(node_pids)" --json --quiet >"$file"; then
        echo "run failed: $file" >&2
        rm -f "$file"
    fi
    printf '    %-28s %s\n' "$(basename "$file" .json)" \
        "$(jq -r '"\(.ops_per_sec|floor) ops/s, p50 \(.latency_us.p50) us, p99 \(.latency_us.p99) us, errors \(.errors)"' \
            "$file" 2>/dev/null || echo failed)" >&2
}

build_release
started=$SECONDS

cat <<EOF
ringcache cluster costs on one machine, loopback only (node N on 127.0.0.N, one shard each)

(a) forwarding: 3 owner nodes (R=1) + node 4 "joining" (owns no keys, forwards every
    request to its owner's shard). Same load (set:get $READ_RATIO, prefilled, so gets
    hit) through node 4's address (1 hop each) and with --ketama straight to the
    owners' shard endpoints (0 hops). Ratio = via node 4 / direct.
(b) replication: write-only load (set:get 1:0) through node 1's address, fresh
    3-node cluster with R=1, then R=2 (write_ack "$WRITE_ACK"; "quorum" of 2 is 2 too).
    Node 1 owns (R=1) or holds a copy of (R=2) some keys and forwards the rest.
    Ratio = R=2 / R=1.

$CONNS connections x pipeline $PIPELINE, $KEYS keys, $VALUE_BYTES B values, ${DURATION} s measured
(after ${WARMUP} s warm-up) per run, $ROUNDS rounds alternating, medians shown.
CPU: $(nproc) CPUs shared by 3-4 node processes and the generator; nothing pinned by
this script$( [ "$SPREAD" = 1 ] && echo " except SPREAD=1: node N under taskset -c (N-1) mod $(nproc)").
srv us/req: CPU time of all node processes together per request (/proc/PID/stat).
EOF

shown_cpus=0
for round in $(seq 1 "$ROUNDS"); do
    say "round $round/$ROUNDS: (a) forwarding"
    start_cluster fwd 1 one 3 1
    if [ "$shown_cpus" = 0 ]; then
        line="shard thread CPUs (affinity):"
        for id in "${NODE_IDS[@]}"; do line+=" node $id: $(shard_cpus "$id")"; done
        echo "$line"
        echo "(a node with no more shards than CPUs pins shard i to the i-th CPU it may use;"
        echo " SPREAD=1 starts node N under taskset -c (N-1) mod $(nproc) to spread them)"
        shown_cpus=1
    fi
    owners="${NODE_SHARD[1]},${NODE_SHARD[2]},${NODE_SHARD[3]}"
    # Alternate which goes first, so neither always meets the fresher cluster.
    if [ $((round % 2)) = 1 ]; then order="via4 direct"; else order="direct via4"; fi
    for run in $order; do
        case $run in
            via4) bench "$OUT/a_via4_$round.json" --servers "${NODE_ADDR[4]}" \
                --ratio "$READ_RATIO" --prefill ;;
            direct) bench "$OUT/a_direct_$round.json" --ketama "$owners" \
                --ratio "$READ_RATIO" --prefill ;;
        esac
    done
    stop_cluster

    say "round $round/$ROUNDS: (b) replication"
    if [ $((round % 2)) = 1 ]; then order="1 2"; else order="2 1"; fi
    for r in $order; do
        start_cluster "rep$r" "$r" "$WRITE_ACK" 3
        bench "$OUT/b_r${r}_$round.json" --servers "${NODE_ADDR[1]}" --ratio 1:0
        stop_cluster
    done
done

python3 - "$OUT" "$WRITE_ACK" <<'EOF'
import json, os, statistics, sys
out, ack = sys.argv[1], sys.argv[2]
runs = {}
for name in os.listdir(out):
    if name.endswith(".json"):
        tag = name[:-5].rsplit("_", 1)[0]
        with open(os.path.join(out, name)) as f:
            runs.setdefault(tag, []).append(json.load(f))

def med(tag, f):
    vals = [f(r) for r in runs.get(tag, []) if f(r) is not None]
    return statistics.median(vals) if vals else None

metrics = [
    ("kops/s", lambda r: r["ops_per_sec"] / 1000, 1),
    ("p50 us", lambda r: r["latency_us"]["p50"], 1),
    ("p99 us", lambda r: r["latency_us"]["p99"], 1),
    ("srv us/req", lambda r: r["server_cpu_us_per_request"], 2),
    ("gen us/req", lambda r: r["bench_cpu_us_per_request"], 2),
]

def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"

def table(title, rows, ratio_label, num, den):
    print(f"\n{title}")
    head = f"  {'':<30}" + "".join(f"{m:>12}" for m, _, _ in metrics)
    print(head)
    print("  " + "-" * (len(head) - 2))
    for label, tag in rows:
        print(f"  {label:<30}" + "".join(f"{fmt(med(tag, f), d):>12}" for _, f, d in metrics))
    cells = ""
    for _, f, _ in metrics:
        x, y = med(num, f), med(den, f)
        cells += f"{'-' if x is None or not y else f'{x / y:.2f}x':>12}"
    print(f"  {ratio_label:<30}" + cells)
    errors = sum(r["errors"] for _, t in rows for r in runs.get(t, []))
    if errors:
        print(f"  warning: {errors} error replies")

table("(a) forwarding cost (get-heavy)",
      [("direct --ketama (0 hops)", "a_direct"), ("via node 4 (joining, 1 hop)", "a_via4")],
      "ratio via node 4 / direct", "a_via4", "a_direct")
table("(b) replication cost (write-only, via node 1)",
      [("R=1", "b_r1"), (f"R=2 (write_ack {ack})", "b_r2")],
      "ratio R=2 / R=1", "b_r2", "b_r1")
print("\nthroughput: higher is better; latency and CPU per request: lower is better")
EOF
echo "total $((SECONDS - started)) s; cluster files, node logs and per-run JSON in $OUT"

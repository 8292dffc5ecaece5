#!/usr/bin/env bash
# How ringcache scales with shards against memcached with as many threads: N
# shards on CPUs 0..N-1 against `memcached -t N` on the same CPUs, the load
# generators on the CPUs above the largest N, one client port (clients that do
# not know about shards) and, per N, ringcache with the shard-aware client.
# Meant for a many-core host; runs unchanged on 16 or 64 cores (and on 2, where
# it measures N=1 only).
#
#   scripts/bench-scaling.sh
#   SHARDS="1 2 4 8" DEPTHS="1 16" ROUNDS=3 scripts/bench-scaling.sh
#
# Settings (environment): SHARDS (powers of two up to half the CPUs), DEPTHS
# ("1 16"), CONNS in all at depth 1 (400; at depth 16, CONNS/8), ROUNDS (2),
# DURATION seconds (5), WARMUP (1), KEYS (100000), RATIO (1:10), VALUE_BYTES (32),
# MEMORY_MB (1024), CLIENT_CPUS (the CPUs above the largest N, at least one),
# MEMTIER (auto: also memtier_benchmark when installed; 0: never), OUT (results),
# RINGCACHE_ARGS (extra flags for ringcache).
#
# Prints a table of throughput, CPU per request and p99 with ratios
# ringcache / memcached, and writes $OUT/scaling.tsv; with gnuplot installed,
# $OUT/scaling.png plots throughput against N for each server and depth.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

cpus=$(nproc)
default_shards() {
    local n=1 out=()
    while [ $((n * 2)) -le "$cpus" ] || [ "$n" = 1 ]; do out+=("$n"); n=$((n * 2)); done
    echo "${out[*]}"
}
SHARDS=${SHARDS:-$(default_shards)}
DEPTHS=${DEPTHS:-"1 16"}
CONNS=${CONNS:-400}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
KEYS=${KEYS:-100000}
RATIO=${RATIO:-1:10}
VALUE_BYTES=${VALUE_BYTES:-32}
MEMORY_MB=${MEMORY_MB:-1024}
MEMTIER=${MEMTIER:-auto}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-scaling.XXXXXX)}
mkdir -p "$OUT"

max_n=0
for n in $SHARDS; do [ "$n" -gt "$max_n" ] && max_n=$n; done
if [ -z "${CLIENT_CPUS:-}" ]; then
    if [ "$max_n" -lt "$cpus" ]; then CLIENT_CPUS="$max_n-$((cpus - 1))"; else CLIENT_CPUS=$((cpus - 1)); fi
fi
client_threads=$(python3 -c "import sys
n = 0
for part in sys.argv[1].split(','):
    a, _, b = part.partition('-'); n += int(b or a) - int(a) + 1
print(n)" "$CLIENT_CPUS")
[ "$max_n" -lt "$cpus" ] || echo "warning: N=$max_n leaves no CPU apart for the clients" >&2

use_memtier=0
if [ "$MEMTIER" != 0 ] && command -v memtier_benchmark >/dev/null; then use_memtier=1; fi

ensure_memcached
build_release
say "$cpus CPUs; shards: $SHARDS; depths: $DEPTHS; clients on CPUs $CLIENT_CPUS ($client_threads threads); memtier: $use_memtier; results in $OUT"

# run_client FILE TOOL PORT N DEPTH SERVER: one measured run into FILE (JSON of
# ringcache-bench's form: ops_per_sec, server_cpu_us_per_request, latency_us.p50/p99).
run_client() {
    local file=$1 tool=$2 port=$3 n=$4 depth=$5 server=$6 conns per_thread target
    conns=$CONNS
    [ "$depth" -gt 1 ] && conns=$(( CONNS / 8 > 0 ? CONNS / 8 : 1 ))
    per_thread=$(( (conns + client_threads - 1) / client_threads ))
    if [ "$tool" = memtier ]; then
        local cpu0 cpu1
        cpu0=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
        taskset -c "$CLIENT_CPUS" memtier_benchmark -s 127.0.0.1 -p "$port" -P memcache_text \
            -t "$client_threads" -c "$per_thread" --pipeline "$depth" --ratio "$RATIO" \
            -d "$VALUE_BYTES" --key-maximum "$KEYS" --test-time "$DURATION" --hide-histogram \
            --json-out-file "$file.memtier" >/dev/null 2>&1 || return 1
        cpu1=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
        python3 - "$file" "$file.memtier" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
out, src, c0, c1, hz = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
t = json.load(open(src))["ALL STATS"]["Totals"]
ops = t["Ops/sec"]
secs = json.load(open(src))["ALL STATS"]["Runtime"]["Total duration"] / 1000
pct = t.get("Percentile Latencies", {})
json.dump({"ops_per_sec": ops,
           "server_cpu_us_per_request": (c1 - c0) / hz * 1e6 / max(ops * secs, 1),
           "latency_us": {"p50": pct.get("p50.00", 0) * 1000, "p99": pct.get("p99.00", 0) * 1000}},
          open(out, "w"))
PY
        return
    fi
    target=(--servers "127.0.0.1:$port")
    [ "$server" = ringcache-ketama ] && target=(--ketama "$(ketama_endpoints "$port" "$n")")
    taskset -c "$CLIENT_CPUS" "$BENCH" "${target[@]}" --threads "$client_threads" \
        --clients "$per_thread" --pipeline "$depth" --ratio "$RATIO" --data-size "$VALUE_BYTES" \
        --key-space "$KEYS" --prefill --warmup "$WARMUP" --test-time "$DURATION" \
        --server-pid "$SERVER_PID" --json --quiet >"$file"
}

tools=(bench)
[ "$use_memtier" = 1 ] && tools+=(memtier)
for n in $SHARDS; do
    server_cpus="0-$((n - 1))"
    export SERVER_THREADS=$n
    for depth in $DEPTHS; do
        for round in $(seq 1 "$ROUNDS"); do
            for tool in "${tools[@]}"; do
                servers=(memcached ringcache)
                [ "$tool" = bench ] && servers+=(ringcache-ketama)
                for server in "${servers[@]}"; do
                    port=$(free_ports $((n + 1)))
                    start_server "$server" "$port" "$MEMORY_MB" "$server_cpus"
                    if [ "$tool" = memtier ]; then
                        # memtier does not prefill: fill every key first with ringcache-bench.
                        taskset -c "$CLIENT_CPUS" "$BENCH" --servers "127.0.0.1:$port" \
                            --key-space "$KEYS" --key-prefix memtier- --data-size "$VALUE_BYTES" \
                            --prefill --requests 1 --quiet >/dev/null
                    fi
                    file="$OUT/n${n}_d${depth}_${tool}_${server}_${round}.json"
                    run_client "$file" "$tool" "$port" "$n" "$depth" "$server" \
                        || { echo "run failed: N=$n depth $depth $tool $server" >&2; rm -f "$file"; }
                    stop_server "$SERVER_PID"
                    printf 'N=%-3s depth %-3s %-8s %-17s round %d: %s\n' "$n" "$depth" "$tool" "$server" \
                        "$round" "$(jq -r '"\(.ops_per_sec|floor) ops/s, \(.server_cpu_us_per_request*100|floor/100) us/req"' "$file" 2>/dev/null || echo failed)" >&2
                done
            done
        done
    done
done

python3 - "$OUT" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
runs = {}
for name in os.listdir(out):
    if not name.endswith(".json"):
        continue
    n, d, tool, server, _ = name[:-5].split("_")
    runs.setdefault((int(n[1:]), int(d[1:]), tool), {}).setdefault(server, []).append(
        json.load(open(os.path.join(out, name))))

def med(rs, f):
    return statistics.median(f(r) for r in rs) if rs else None

def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"

def f(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"

print("\nmedians over rounds; ratio = ringcache / memcached -t N (same CPUs, same client)")
print(f"{'N':>3} {'depth':>5} {'client':<7} {'server':<17}| {'kops/s':>9} {'ratio':>6} | {'us/req':>7} {'ratio':>6} | {'p99 us':>8} {'ratio':>6}")
rows = []
for (n, d, tool) in sorted(runs):
    servers = runs[(n, d, tool)]
    mc = servers.get("memcached", [])
    base_ops = med(mc, lambda r: r["ops_per_sec"])
    base_cpu = med(mc, lambda r: r["server_cpu_us_per_request"])
    base_p99 = med(mc, lambda r: r["latency_us"]["p99"])
    for server in ("memcached", "ringcache", "ringcache-ketama"):
        rs = servers.get(server, [])
        if not rs:
            continue
        ops = med(rs, lambda r: r["ops_per_sec"])
        cpu = med(rs, lambda r: r["server_cpu_us_per_request"])
        p99 = med(rs, lambda r: r["latency_us"]["p99"])
        rows.append((n, d, tool, server, ops))
        print(f"{n:>3} {d:>5} {tool:<7} {server:<17}| {f(ops / 1000):>9} {ratio(ops, base_ops):>6} | "
              f"{f(cpu, 2):>7} {ratio(cpu, base_cpu):>6} | {f(p99):>8} {ratio(p99, base_p99):>6}")
with open(os.path.join(out, "scaling.tsv"), "w") as tsv:
    tsv.write("n\tdepth\tclient\tserver\tops_per_sec\n")
    for row in rows:
        tsv.write("\t".join(str(x) for x in row) + "\n")
print("ringcache-ketama: --shard-ports, the client sending each key to its shard's port")
EOF

if command -v gnuplot >/dev/null; then
    (
        cd "$OUT"
        series=$(awk -F'\t' 'NR > 1 {print $2 "\t" $3 "\t" $4}' scaling.tsv | sort -u)
        plots=()
        while IFS=$'\t' read -r depth tool server; do
            awk -F'\t' -v d="$depth" -v t="$tool" -v s="$server" \
                'NR > 1 && $2 == d && $3 == t && $4 == s {print $1, $5}' scaling.tsv | sort -n \
                >"series_${depth}_${tool}_${server}.dat"
            plots+=("'series_${depth}_${tool}_${server}.dat' using 1:2 with linespoints title '$server depth $depth ($tool)'")
        done <<<"$series"
        gnuplot <<GP
set terminal png size 1000,600
set output 'scaling.png'
set xlabel 'shards / threads (N)'
set ylabel 'requests per second'
set logscale x 2
set key left top
plot $(IFS=,; echo "${plots[*]}")
GP
    ) && say "plot: $OUT/scaling.png"
else
    say "gnuplot not installed: no plot (the table is in $OUT/scaling.tsv)"
fi

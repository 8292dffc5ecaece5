#!/usr/bin/env bash
# The cost of TLS: ringcache -Z against plain ringcache and against memcached -Z,
# each -t 1 on the same CPU, driven by the same load generator (ringcache-bench
# --tls-ca) on its own CPU, taking turns round by round.
#
#   scripts/bench-tls.sh                                   # about 2 minutes
#   CONNS="1 50" WORKLOADS="1/1:10/32" ROUNDS=5 scripts/bench-tls.sh
#
# Settings (environment): ROUNDS (3), DURATION seconds measured per run (3),
# WARMUP (0.5), CONNS ("1 50"), KEYS (100000), MEMORY_MB (256), SERVER_CPU (1),
# BENCH_CPU (0), WORKLOADS ("DEPTH/SETS:GETS/VALUE_BYTES ...", default depth 1
# and depth 16 at 1:10 with 32-byte values, and depth 1 with 4 KiB values),
# OUT (directory for the per-run JSON).
#
# Each run gets a fresh server, prefilled so gets hit. The table shows each
# server's median CPU per request (utime+stime over the measured seconds, from
# /proc/PID/stat, divided by requests) and throughput, and two ratios:
# rc-tls/rc (what TLS adds to ringcache) and rc-tls/mc-tls (against memcached
# with TLS). The handshakes happen before the measured seconds. Certificates
# (an EC P-256 CA and server certificate) are made with openssl in OUT.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-"1 50"}
KEYS=${KEYS:-100000}
MEMORY_MB=${MEMORY_MB:-256}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}
WORKLOADS=${WORKLOADS:-"1/1:10/32 16/1:10/32 1/1:10/4096"}
OUT=${OUT:-$(mktemp -d /tmp/ringcache-bench-tls.XXXXXX)}
mkdir -p "$OUT"

ensure_memcached
command -v openssl >/dev/null || { echo "openssl is needed to make the certificates" >&2; exit 1; }
build_release

say "making certificates in $OUT"
(
    cd "$OUT"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj /CN=server 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile server.ext 2>/dev/null
)
SSL_OPTS="ssl_chain_cert=$OUT/server.pem,ssl_key=$OUT/server.key"

# start NAME PORT: starts it on SERVER_CPU and sets SERVER_PID.
start() {
    local name=$1 port=$2
    case $name in
        rc) taskset -c "$SERVER_CPU" "$RINGCACHE" -U 0 -t 1 -c 4096 -l 127.0.0.1 -p "$port" \
                -m "$MEMORY_MB" >/dev/null 2>&1 & ;;
        rc-tls) taskset -c "$SERVER_CPU" "$RINGCACHE" -U 0 -t 1 -c 4096 -l 127.0.0.1 -p "$port" \
                -m "$MEMORY_MB" -Z -o "$SSL_OPTS" >/dev/null 2>&1 & ;;
        mc-tls) taskset -c "$SERVER_CPU" memcached -U 0 -u root -t 1 -c 4096 -l 127.0.0.1 \
                -p "$port" -m "$MEMORY_MB" -Z -o "$SSL_OPTS" >/dev/null 2>&1 & ;;
    esac
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    wait_for_port "$port"
}

servers=(rc rc-tls mc-tls)
runs=$(( $(wc -w <<<"$WORKLOADS") * $(wc -w <<<"$CONNS") * ROUNDS * ${#servers[@]} ))
say "$runs runs of ${DURATION}s; servers on CPU $SERVER_CPU, generator on CPU $BENCH_CPU; results in $OUT"
n=0
for conns in $CONNS; do
    for w in $WORKLOADS; do
        IFS=/ read -r depth ratio size <<<"$w"
        for round in $(seq 1 "$ROUNDS"); do
            for server in "${servers[@]}"; do
                n=$((n + 1))
                port=$(free_port)
                start "$server" "$port"
                tls=()
                [ "$server" = rc ] || tls=(--tls-ca "$OUT/ca.pem")
                tag="c${conns}_d${depth}_r${ratio/:/-}_v${size}"
                file="$OUT/${tag}_${server}_${round}.json"
                if ! taskset -c "$BENCH_CPU" "$BENCH" --servers "127.0.0.1:$port" "${tls[@]}" \
                    --threads 1 --clients "$conns" --pipeline "$depth" --ratio "$ratio" \
                    --data-size "$size" --key-space "$KEYS" --prefill --warmup "$WARMUP" \
                    --test-time "$DURATION" --server-pid "$SERVER_PID" --json --quiet >"$file"; then
                    echo "run failed: $server $conns conns $w round $round" >&2
                    rm -f "$file"
                fi
                stop_server "$SERVER_PID"
                printf '[%d/%d] %-7s c%-4s %-12s round %d: %s\n' "$n" "$runs" "$server" "$conns" \
                    "$w" "$round" "$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print("%.0f ops/s, server %s us/req, errors %s" % (r["ops_per_sec"], r["server_cpu_us_per_request"], r["errors"]))' \
                    "$file" 2>/dev/null || echo failed)" >&2
            done
        done
    done
done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
runs = {}
# tag -> round -> server -> run, for the ratios of runs made back to back.
rounds = {}
for name in sorted(os.listdir(out)):
    if not name.endswith(".json"):
        continue
    tag, server, round_ = name[:-5].rsplit("_", 2)
    with open(os.path.join(out, name)) as f:
        run = json.load(f)
    runs.setdefault(tag, {}).setdefault(server, []).append(run)
    rounds.setdefault(tag, {}).setdefault(round_, {})[server] = run

def med(rs, f):
    return statistics.median(f(r) for r in rs) if rs else None

def fmt(v, d):
    return "-" if v is None else f"{v:.{d}f}"

def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"

def key(tag):
    c, d, r, v = tag.split("_")
    return (int(c[1:]), int(d[1:]), r, int(v[1:]))

cpu = lambda r: r["server_cpu_us_per_request"]
kops = lambda r: r["ops_per_sec"] / 1000
print()
print("-t 1, medians over rounds; server CPU per request in us (lower is better)")
head = (f"{'workload':<24}| {'rc':>6} {'rc-tls':>6} {'mc-tls':>6} | {'tls/rc':>7} {'tls/mc':>7}"
        f" | {'paired':>7} {'paired':>7} | kops/s {'rc':>6} {'rc-tls':>6} {'mc-tls':>6}")
print(head)
print("-" * len(head))
for tag in sorted(runs, key=key):
    c, d, r, v = tag.split("_")
    s = runs[tag]
    rc, rct, mct = (med(s.get(x, []), cpu) for x in ("rc", "rc-tls", "mc-tls"))
    k = [med(s.get(x, []), kops) for x in ("rc", "rc-tls", "mc-tls")]
    name = f"c{c[1:]} d{d[1:]} {r[1:].replace('-', ':')} {v[1:]}B"
    def paired(over):
        rs = [cpu(r["rc-tls"]) / cpu(r[over]) for r in rounds[tag].values()
              if "rc-tls" in r and over in r and cpu(r[over])]
        return f"{statistics.median(rs):.2f}x" if rs else "-"
    print(f"{name:<24}| {fmt(rc, 2):>6} {fmt(rct, 2):>6} {fmt(mct, 2):>6} | "
          f"{ratio(rct, rc):>7} {ratio(rct, mct):>7} | {paired('rc'):>7} {paired('mc-tls'):>7} | {'':>6} "
          + " ".join(f"{fmt(x, 1):>6}" for x in k))
    errs = sum(x["errors"] for rs in s.values() for x in rs)
    if errs:
        print(f"  warning: {errs} error replies in {tag}")
print("\ntls/rc: ringcache -Z over plain ringcache; tls/mc: ringcache -Z over memcached -Z"
      " (ratios of the medians); paired: the median over rounds of each round's ratio"
      " (tls/rc, then tls/mc), whose runs were made back to back")
PY

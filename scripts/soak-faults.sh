#!/usr/bin/env bash
# The fault-history check (tests/fault_history.rs) over many seeds: a 3-node
# Paxos cluster under clients while nodes are killed, stopped, cut off by
# nftables and restarted with wiped data directories; then every key is read
# through every node and the recorded history is checked. Prints one row of
# anomaly counts per seed; the full output of each run stays in a log.
#
#   scripts/soak-faults.sh                                # 10 seeds, R=2, write_ack all
#   SEEDS=5 WRITE_ACK=quorum REPLICAS=3 scripts/soak-faults.sh
#   HOGS=1 FAULTS=kill,stop SECS=40 scripts/soak-faults.sh
#   SEED_BASE=1234 SEEDS=1 scripts/soak-faults.sh         # replay seed 1234
#
# Knobs: SEEDS (10), SEED_BASE (from the clock; seeds are BASE, BASE+1, ...),
# SECS (20 seconds of faults per seed), FAULTS (kill,stop,partition,wipe or
# none), WRITE_ACK (all | quorum | one), REPLICAS (2), SHARDS (1 per node),
# KEYS (200), HOGS=1 (one busy `yes` process per CPU beside the nodes).
# Needs root (a network namespace of the test's own) and nft for partitions.
# Exits non-zero if any seed showed an anomaly or did not finish.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${SEEDS:-10}
seed_base=${SEED_BASE:-$(date +%s)}
secs=${SECS:-20}
faults=${FAULTS:-kill,stop,partition,wipe}
write_ack=${WRITE_ACK:-all}
replicas=${REPLICAS:-2}
shards=${SHARDS:-1}
keys=${KEYS:-200}
counters=${COUNTERS:-5}
hogs=${HOGS:-0}

logs=$(mktemp -d /tmp/soak-faults.XXXXXX)
hog_pids=()
stop_hogs() {
    for pid in "${hog_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    hog_pids=()
}
trap stop_hogs EXIT

cargo build --release -j 1 --test fault_history 2>&1 | tail -1
if [[ $hogs == 1 ]]; then
    for _ in $(seq "$(nproc)"); do
        yes >/dev/null &
        hog_pids+=($!)
    done
fi

echo "soak-faults: seeds $seed_base..$((seed_base + seeds - 1)), ${secs}s of faults each," \
    "faults=$faults write_ack=$write_ack replicas=$replicas shards=$shards keys=$keys counters=$counters" \
    "hogs=$hogs; logs in $logs"
columns="seed ops acked unknown lost stale counters resurrected divergent copies configs settled"
printf '%-20s %6s %6s %7s %5s %5s %8s %11s %9s %6s %7s %7s\n' $columns
bad=0
started=$(date +%s)
for i in $(seq 0 $((seeds - 1))); do
    seed=$((seed_base + i))
    log=$logs/seed-$seed.log
    if RINGCACHE_SEED=$seed RINGCACHE_SOAK_SECS=$secs RINGCACHE_SOAK_FAULTS=$faults \
        RINGCACHE_SOAK_WRITE_ACK=$write_ack RINGCACHE_SOAK_REPLICAS=$replicas \
        RINGCACHE_SOAK_SHARDS=$shards RINGCACHE_SOAK_KEYS=$keys \
        RINGCACHE_SOAK_COUNTERS=$counters RINGCACHE_SOAK_REPORT_ONLY=1 \
        RINGCACHE_SOAK_LOG_DIR=$logs \
        cargo test --release -j 1 --test fault_history -- faults_leave --nocapture \
        >"$log" 2>&1; then
        :
    fi
    line=$(grep -m1 '^fault_history: seed=' "$log" || true)
    if [[ -z $line ]]; then
        printf '%-20s did not finish: see %s\n' "$seed" "$log"
        bad=$((bad + 1))
        continue
    fi
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    row=("$seed")
    for name in ops acked unknown lost stale counters resurrected divergent copies configs settled; do
        row+=("$(field "$name")")
    done
    printf '%-20s %6s %6s %7s %5s %5s %8s %11s %9s %6s %7s %7s\n' "${row[@]}"
    if ! grep -q 'lost=0 stale=0 counters=0 resurrected=0 divergent=0 copies=0 configs=0' <<<"$line" \
        || [[ $(field settled) != true ]]; then
        bad=$((bad + 1))
    fi
done
echo "soak-faults: $bad of $seeds seeds showed anomalies or did not finish;" \
    "wall time $(( $(date +%s) - started ))s; logs (anomalies listed in each) in $logs"
[[ $bad == 0 ]]

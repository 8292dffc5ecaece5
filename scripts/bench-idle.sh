#!/usr/bin/env bash
# What a server costs with no client at all: CPU time (user + system, from
# /proc/PID/stat) over SECONDS of idling, as a percentage of one core, for
# memcached -t N and ringcache -t N side by side (N = THREADS, default 2), then
# for a 3-node ringcache cluster (one shard each, Paxos, --data-dir) whose nodes
# only heartbeat, probe and report to each other.
#
#   scripts/bench-idle.sh                 # 10 s each
#   SECONDS_IDLE=30 THREADS=4 scripts/bench-idle.sh
#
# Each server first gets a few requests (so every shard has run), then is left
# alone for a second before the measured seconds.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"

SECONDS_IDLE=${SECONDS_IDLE:-10}
THREADS=${THREADS:-2}
OUT=$(mktemp -d /tmp/ringcache-idle.XXXXXX)

[ -x "$RINGCACHE" ] && [ -x "$BENCH" ] || build_release
ensure_memcached

# The CPU ticks (user + system) of the processes whose pids are given.
ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        read -r -a fields <"/proc/$pid/stat"
        # Fields 14 and 15 (utime, stime), after a command name without spaces.
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

# Percent of one core the pids used over SECONDS_IDLE.
idle_percent() {
    local before after hz
    hz=$(getconf CLK_TCK)
    sleep 1
    before=$(ticks "$@")
    sleep "$SECONDS_IDLE"
    after=$(ticks "$@")
    python3 -c "print(f'{100 * ($after - $before) / $hz / $SECONDS_IDLE:.2f}')"
}

touch_server() {
    "$BENCH" -s "127.0.0.1:$1" -c 4 --test-time 0.5 --key-space 1000 -q >/dev/null
}

printf '%-44s %s\n' "server (idle ${SECONDS_IDLE}s)" "CPU % of one core"
for name in memcached ringcache; do
    port=$(free_port)
    SERVER_THREADS=$THREADS start_server "$name" "$port" 64 "0-$(($(nproc) - 1))"
    touch_server "$port"
    printf '%-44s %s\n' "$name -t $THREADS" "$(idle_percent "$SERVER_PID")"
    stop_server "$SERVER_PID"
done

# A 3-node cluster with Paxos on 127.0.0.1-3.
file=$OUT/cluster.toml
{
    echo "replicas = 2"
    echo "acceptors = [1, 2, 3]"
    echo 'secret_file = "cluster.secret"'
} >"$file"
(umask 077 && head -c 32 /dev/urandom | base64 >"$OUT/cluster.secret")
ports=()
for id in 1 2 3; do
    port=$(free_port_on "127.0.0.$id")
    ports+=("$port")
    printf '\n[[node]]\nid = %s\naddr = "127.0.0.%s:%s"\nshards = ["127.0.0.%s:%s"]\n' \
        "$id" "$id" "$port" "$id" "$(free_port_on "127.0.0.$id")" >>"$file"
done
pids=()
for id in 1 2 3; do
    mkdir -p "$OUT/data-$id"
    "$RINGCACHE" --cluster "$file" --node-id "$id" --data-dir "$OUT/data-$id" -m 64 \
        >"$OUT/node$id.log" 2>&1 &
    pids+=("$!")
    BENCH_PIDS+=("$!")
done
for id in 1 2 3; do
    wait_for_port_on "127.0.0.$id" "${ports[$((id - 1))]}"
done
sleep 2
touch_server_on() { "$BENCH" -s "$1" -c 4 --test-time 0.5 --key-space 1000 -q >/dev/null; }
touch_server_on "127.0.0.1:${ports[0]}"
all=$(idle_percent "${pids[@]}")
printf '%-44s %s\n' "ringcache cluster of 3 nodes, all of them" "$all"
printf '%-44s %s\n' "  one node of it (a third)" "$(python3 -c "print(f'{$all / 3:.2f}')")"
rm -rf "$OUT"

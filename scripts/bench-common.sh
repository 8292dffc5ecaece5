# Shared by the scripts/bench-*.sh drivers (sourced, not run): building,
# installing memcached, free ports, starting and stopping servers by pid.
#
# Every server a driver starts is recorded in BENCH_PIDS and ended on exit,
# by pid, whatever way the driver ends.

BENCH_PIDS=()
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/target/release/ringcache-bench"
# RINGCACHE names another server binary to measure (an earlier build, say),
# with the same client and scripts.
RINGCACHE="${RINGCACHE:-$ROOT/target/release/ringcache}"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

ensure_memcached() {
    if ! command -v memcached >/dev/null; then
        say "installing memcached"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq </dev/null
        as_root apt-get install -y -qq memcached </dev/null
    fi
}

build_release() {
    say "building release binaries"
    (cd "$ROOT" && cargo build --release --bins) >&2
}

# Builds benches/floor.rs and sets FLOOR to its executable.
build_floor() {
    say "building the floor server (benches/floor.rs)"
    FLOOR=$(cd "$ROOT" && cargo bench --bench floor --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] == "floor":
        print(m["executable"])')
    [ -x "$FLOOR" ] || { echo "building benches/floor.rs failed" >&2; return 1; }
}

# A TCP port nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# free_ports N: a port P such that P .. P+N-1 are all free now.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1])
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
    if base + n > 65535:
        continue
    held = []
    try:
        for p in range(base, base + n):
            t = socket.socket(); t.bind(("127.0.0.1", p)); held.append(t)
    except OSError:
        continue
    finally:
        for t in held:
            t.close()
    print(base)
    break
else:
    sys.exit("no run of free ports")
PY
}

# ketama_endpoints PORT N: the shard endpoints of ringcache-ketama started on PORT.
ketama_endpoints() {
    local port=$1 n=$2 i out=()
    for i in $(seq 1 "$n"); do out+=("127.0.0.1:$((port + i))"); done
    local IFS=,
    echo "${out[*]}"
}

wait_for_port() {
    wait_for_port_on 127.0.0.1 "$1"
}

wait_for_port_on() {
    local ip=$1 port=$2 i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    echo "server on $ip:$port did not start" >&2
    return 1
}

# A TCP port free on IP now.
free_port_on() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1]); s.close()' "$1"
}

# start_server NAME PORT MEMORY_MB CPU: starts it and sets SERVER_PID (call it
# directly, not in \$(...), so the pid is recorded for clean-up). NAME: memcached |
# ringcache | floor-epoll | floor-uring.
# memcached and ringcache get SERVER_THREADS worker threads or shards (default 1),
# UDP off, and room for many connections; ringcache-ketama is ringcache with
# --shard-ports PORT+1.. (one port a shard, for a shard-aware client).
start_server() {
    local name=$1 port=$2 mem=$3 cpu=$4 pid threads=${SERVER_THREADS:-1}
    case $name in
        memcached)
            taskset -c "$cpu" memcached -U 0 -u root -t "$threads" -c 4096 -l 127.0.0.1 \
                -p "$port" -m "$mem" >/dev/null 2>&1 &
            pid=$! ;;
        ringcache|ringcache-ketama)
            local shard_ports=()
            [ "$name" = ringcache-ketama ] && shard_ports=(--shard-ports "$((port + 1))")
            # shellcheck disable=SC2086 # RINGCACHE_ARGS: extra flags, word-split on purpose
            taskset -c "$cpu" "$RINGCACHE" -U 0 -t "$threads" -c 4096 -l 127.0.0.1 \
                -p "$port" -m "$mem" "${shard_ports[@]}" ${RINGCACHE_ARGS:-} >/dev/null 2>&1 &
            pid=$! ;;
        floor-epoll|floor-uring)
            # benches/floor.rs (path in FLOOR, see build_floor): canned replies, no store.
            taskset -c "$cpu" "$FLOOR" "${name#floor-}" "$port" "${FLOOR_VALUE_BYTES:-32}" \
                >/dev/null 2>&1 &
            pid=$! ;;
        *) echo "unknown server $name" >&2; return 1 ;;
    esac
    BENCH_PIDS+=("$pid")
    SERVER_PID=$pid
    wait_for_port "$port"
}

stop_server() {
    local pid=$1 p keep=()
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Debian,
# as root), builds the server and the tests in release, runs every Rust test, the README's shell
# snippets and the real-client tests, and prints a summary. Exits non-zero if anything failed.
#
#   scripts/test.sh                              # test ringcache
#   RINGCACHE_TEST_TARGET=memcached scripts/test.sh   # prove the tests on memcached
#   RINGCACHE_SEED=<n> scripts/test.sh           # replay a differential seed
set -uo pipefail

cd "$(dirname "$0")/.."
started=$(date +%s)

say() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

install_missing() {
    if ! command -v memcached >/dev/null || ! command -v memccat >/dev/null \
        || ! command -v nc >/dev/null || ! command -v cc >/dev/null \
        || ! command -v nft >/dev/null || ! command -v openssl >/dev/null \
        || [ ! -e /usr/include/libmemcached-1.0/memcached.h ] \
        || [ ! -e /usr/lib/x86_64-linux-gnu/sasl2/libplain.so ]; then
        say "installing memcached, libmemcached-tools, libmemcached-dev, libsasl2-modules, netcat-openbsd, gcc, nftables, openssl"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq </dev/null || return 1
        as_root apt-get install -y -qq memcached libmemcached-tools libmemcached-dev \
            libsasl2-modules netcat-openbsd gcc nftables openssl </dev/null || return 1
    fi
    if ! python3 -c 'import pymemcache' 2>/dev/null; then
        say "installing pymemcache"
        python3 -m pip install --quiet pymemcache </dev/null \
            || python3 -m pip install --quiet --break-system-packages pymemcache </dev/null \
            || return 1
    fi
    if ! python3 -c 'import prometheus_client' 2>/dev/null; then
        say "installing prometheus_client"
        python3 -m pip install --quiet prometheus_client </dev/null \
            || python3 -m pip install --quiet --break-system-packages prometheus_client </dev/null \
            || return 1
    fi
}

# Servers a test leaves behind (it should not) are ours to end: only the ones
# started from this checkout's binary, by pid.
reap_servers() {
    local bin pid
    bin="$(pwd)/target/release/ringcache"
    for pid in $(pgrep -x ringcache 2>/dev/null); do
        if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$bin" ]; then
            echo "warning: a ringcache test server (pid $pid) was left running; ending it" >&2
            kill "$pid" 2>/dev/null
        fi
    done
}
trap reap_servers EXIT

failed=()

install_missing || { echo "error: could not install the test dependencies" >&2; exit 2; }
# The service the memcached package starts is not used; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet memcached 2>/dev/null; then
    as_root systemctl stop memcached 2>/dev/null || true
fi

say "building (release: the server as the README builds it, then the tests)"
# Two builds: the tests' dev-dependencies turn on features of shared crates, so
# the binary a plain `cargo build --release` makes (the README's, which its
# snippets run) is a build of its own. Made here, the snippets find it fresh.
if ! cargo build --release || ! cargo build --release --all-targets; then
    echo "error: build failed" >&2
    exit 1
fi

say "cargo test --release"
if ! cargo test --release --no-fail-fast; then
    failed+=("cargo test")
fi

say "README snippets (scripts/readme-snippets.sh)"
if ! scripts/readme-snippets.sh; then
    failed+=("README snippets")
fi

say "real clients (pymemcache, libmemcached tools)"
if ! RINGCACHE_BIN="$(pwd)/target/release/ringcache" python3 tests/clients/test_pymemcache.py; then
    failed+=("client tests")
fi

say "the same pymemcache tests over TLS (-Z)"
if ! RINGCACHE_CLIENT_TLS=1 RINGCACHE_BIN="$(pwd)/target/release/ringcache" \
    python3 tests/clients/test_pymemcache.py; then
    failed+=("client tests over TLS")
fi

elapsed=$(( $(date +%s) - started ))
echo
echo "================================================================"
echo "target: ${RINGCACHE_TEST_TARGET:-ringcache}; wall time: ${elapsed}s"
if [ ${#failed[@]} -eq 0 ]; then
    echo "ALL TESTS PASSED"
    echo "================================================================"
    exit 0
fi
echo "FAILED: ${failed[*]}"
echo "================================================================"
exit 1

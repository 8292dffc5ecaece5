#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (from [package.metadata.deb] in
# Cargo.toml and tuning/debian/), and with --test installs it on this machine and
# checks it: the files, the conffile, the `ringcache` user, the binary, and a
# node started as the unit starts it, answering `version`; then removes and
# purges it. Needs cargo-deb (installed here from crates.io when missing, which
# takes a few minutes); --test needs root and a machine without ringcache
# installed. --test also runs the README's `cargo install --path .` into a
# scratch root and checks that the installed binaries run.
#
#   scripts/deb.sh            # target/debian/ringcache_<version>-1_<arch>.deb
#   scripts/deb.sh --test     # build, then install, check, remove and purge
set -euo pipefail

cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { echo "deb.sh: FAILED: $*" >&2; exit 1; }

test_it=no
case "${1:-}" in
    "") ;;
    --test) test_it=yes ;;
    *) echo "usage: scripts/deb.sh [--test]" >&2; exit 64 ;;
esac

if [ "$test_it" = yes ]; then
    [ "$(id -u)" = 0 ] || fail "--test installs the package: run it as root"
    command -v nc >/dev/null || fail "--test asks the node for its version with nc: apt-get install netcat-openbsd"
    # The purge removes the user and /var/lib/ringcache: never on a host that
    # has them for real.
    if dpkg-query -W ringcache >/dev/null 2>&1 || [ -e /usr/bin/ringcache ] \
        || getent passwd ringcache >/dev/null; then
        fail "ringcache (the package, /usr/bin/ringcache or the user) is already on this machine"
    fi
fi

if ! command -v cargo-deb >/dev/null; then
    say "installing cargo-deb (cargo install --locked cargo-deb)"
    cargo install --locked cargo-deb
fi

say "building the package"
# --strip: the release profile keeps line tables for profiling; the package
# does not need them (a 47 MB binary becomes 6 MB).
deb=$(cargo deb --strip | tail -n 1)
[ -f "$deb" ] || fail "cargo deb made no package"
echo "$deb"
[ "$test_it" = yes ] || exit 0

server=""
installed=no
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server" 2>/dev/null || true
    fi
    if [ "$installed" = yes ]; then
        dpkg --purge ringcache >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

say "dpkg -i $deb"
installed=yes
dpkg -i "$deb"

say "checking the installed files and the user"
for f in /usr/bin/ringcache /usr/lib/systemd/system/ringcache.service \
    /etc/default/ringcache /usr/share/doc/ringcache/copyright; do
    [ -f "$f" ] || fail "$f is not installed"
done
[ -x /usr/bin/ringcache ] || fail "/usr/bin/ringcache is not executable"
dpkg-query -W -f='${Conffiles}\n' ringcache | grep -q '^ */etc/default/ringcache ' \
    || fail "/etc/default/ringcache is not a conffile"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' /usr/lib/systemd/system/ringcache.service)
[ "$exec_start" = /usr/bin/ringcache ] || fail "the unit runs $exec_start, not /usr/bin/ringcache"
getent passwd ringcache | grep -q ':/usr/sbin/nologin$' || fail "no system user ringcache with no shell"
getent group ringcache >/dev/null || fail "no group ringcache"
/usr/bin/ringcache --version || fail "/usr/bin/ringcache --version"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    say "systemd runs this machine: starting the unit on 127.0.0.1:$port"
    dropin=/run/systemd/system/ringcache.service.d
    mkdir -p "$dropin"
    # The packaged flags, moved to a free port.
    printf '[Service]\nEnvironmentFile=\nEnvironment="RINGCACHE_OPTS=%s -p %s"\n' \
        "$(. /etc/default/ringcache && echo "$RINGCACHE_OPTS")" "$port" >"$dropin/test.conf"
    systemctl daemon-reload
    systemctl start ringcache || { systemctl status ringcache --no-pager >&2 || true; fail "systemctl start ringcache"; }
    reply=$(printf 'version\r\n' | nc -q1 -w2 127.0.0.1 "$port" || true)
    user=$(ps -o user= -p "$(systemctl show -p MainPID --value ringcache)" || true)
    systemctl stop ringcache
    rm -rf "$dropin"
    systemctl daemon-reload
else
    # No systemd here (a container): run the binary as the unit would, as
    # User=ringcache with its limits (where this machine lets them be raised)
    # and the flags of /etc/default/ringcache.
    say "no systemd on this machine: starting /usr/bin/ringcache as user ringcache on 127.0.0.1:$port"
    opts=$(. /etc/default/ringcache && echo "$RINGCACHE_OPTS")
    # shellcheck disable=SC2086 # RINGCACHE_OPTS is a word list, as in the unit
    (ulimit -l 65536 2>/dev/null || true; ulimit -n 65536 2>/dev/null || true; exec runuser -u ringcache -- /usr/bin/ringcache $opts -p "$port") &
    server=$!
    reply=""
    for _ in $(seq 50); do
        reply=$(printf 'version\r\n' | nc -q1 -w2 127.0.0.1 "$port" 2>/dev/null || true)
        [ -n "$reply" ] && break
        sleep 0.1
    done
    user=$(ps -o user= -p "$(pgrep -u ringcache -x ringcache | head -n 1)" || true)
    node_pid=$(pgrep -u ringcache -x ringcache | head -n 1 || true)
    [ -n "$node_pid" ] && kill -TERM "$node_pid"
    wait "$server" || fail "the node did not stop cleanly on SIGTERM"
    server=""
fi
case "$reply" in
    "VERSION "*) echo "$reply" ;;
    *) fail "the packaged node did not answer version (got: $reply)" ;;
esac
[ "$(echo "$user" | tr -d ' ')" = ringcache ] || fail "the node ran as '$user', not ringcache"

say "dpkg -r ringcache"
dpkg -r ringcache
[ ! -e /usr/bin/ringcache ] || fail "dpkg -r left /usr/bin/ringcache"
[ -f /etc/default/ringcache ] || fail "dpkg -r removed the conffile (only a purge should)"

say "dpkg --purge ringcache"
dpkg --purge ringcache
installed=no
[ ! -e /etc/default/ringcache ] || fail "the purge left /etc/default/ringcache"
! getent passwd ringcache >/dev/null || fail "the purge left the user ringcache"
! getent group ringcache >/dev/null || fail "the purge left the group ringcache"
! dpkg-query -W ringcache >/dev/null 2>&1 || fail "dpkg still lists ringcache"
echo "deb.sh: the package installs, serves and purges cleanly"

# The README's other way in: `cargo install --path .`, into a scratch root
# (the release build in target/ is reused).
say "cargo install --path . --root <scratch>"
root=$(mktemp -d)
cargo install --quiet --locked --path . --root "$root" --target-dir target
for bin in ringcache ringcache-bench; do
    "$root/bin/$bin" --help >/dev/null || fail "cargo install gave no working $bin"
done
rm -rf "$root"
echo "deb.sh: cargo install --path . installs ringcache and ringcache-bench"

#!/usr/bin/env bash
# Runs the shell snippets of README.md, so that what the README says to paste
# does run: every ```sh block, in order, in one bash session (a block may use
# the nodes an earlier block started), except those right after a line
# `<!-- not run: REASON -->` (several machines, benchmarks, the test command).
# A block fails if a command in it fails, or if its output lacks what a
# comment promises: a line ending in `# STORED`, `# VALUE greeting 0 5 ...` or
# any `# WORD...` whose first word is a reply in capitals must see that reply
# (less a trailing "...").
#
# The blocks run in a network namespace of their own when this runs as root
# (unshare), so their fixed ports (11211, 11300...) meet no other server, and
# everything they start is ended afterwards. Needs target/release/ringcache
# (cargo build --release) and nc.
#
#   scripts/readme-snippets.sh            # run them
#   scripts/readme-snippets.sh --list     # print the script it would run
set -euo pipefail

cd "$(dirname "$0")/.."

# How long all the blocks together may take.
TIMEOUT_SECS=${RINGCACHE_SNIPPETS_TIMEOUT_SECS:-120}

work=$(mktemp -d /tmp/ringcache-readme.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The blocks as one script: each block's output goes to its own file, then
# its promised replies are looked for there.
awk -v work="$work" '
    function flush_checks() {
        printf "} > %s/block-%d.out 2>&1\n", work, start
        for (i = 1; i <= nchecks; i++) {
            printf "grep -qF -- %s %s/block-%d.out || missing %d %s\n", q(checks[i]), work, start, start, q(checks[i])
        }
    }
    function q(text) { gsub(/\x27/, "\x27\\\x27\x27", text); return "\x27" text "\x27" }
    /^```sh$/ && !inblock {
        inblock = 1
        skip = (prev ~ /^<!-- not run: .* -->$/)
        start = NR
        nchecks = 0
        if (!skip) { printf "block=%d\necho \"== README.md line %d\"\n{\n", NR, NR }
        next
    }
    /^```$/ && inblock {
        inblock = 0
        if (!skip) flush_checks()
        next
    }
    inblock && !skip {
        print
        # A promised reply: "# STORED", "# VALUE greeting 0 5 ...".
        if (match($0, /# [A-Z][A-Z_]+( [^#]*)?$/)) {
            text = substr($0, RSTART + 2)
            sub(/ *\.\.\.$/, "", text)
            sub(/ +$/, "", text)
            checks[++nchecks] = text
        }
    }
    NF { prev = $0 }
' README.md >"$work/body.sh"

cat >"$work/snippets.sh" <<EOF
# errexit reaches into each block's braces: a failing command ends the run.
set -e
cd "$(pwd)"
block=0
# fd 3: this script's stderr, also while a block's output is redirected.
exec 3>&2
missing() { echo "README.md block at line \$1: no '\$2' in its output" >&2; exit 1; }
# On a failure, the failing block's output; either way, whatever the blocks
# started in the background ends with them.
finish() {
    local status=\$?
    if [ \$status != 0 ] && [ -f "$work/block-\$block.out" ]; then
        echo "README.md block at line \$block failed (status \$status); its output:" >&3
        cat "$work/block-\$block.out" >&3
    fi
    kill \$(jobs -p) 2>/dev/null
    wait 2>/dev/null
    exit \$status
}
trap finish EXIT
$(cat "$work/body.sh")
echo "README.md: every snippet ran"
EOF

if [ "${1:-}" = --list ]; then
    cat "$work/snippets.sh"
    exit 0
fi

[ -x target/release/ringcache ] || { echo "readme-snippets.sh: build first (cargo build --release)" >&2; exit 2; }

started=$(date +%s)
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
    # A namespace of their own: a fresh loopback, no other server on its ports.
    timeout --kill-after=5 "$TIMEOUT_SECS" unshare --net --fork bash -c \
        'ip link set lo up && exec bash "$1"' _ "$work/snippets.sh"
else
    echo "readme-snippets.sh: not root, or no unshare: running on this machine's own loopback" >&2
    timeout --kill-after=5 "$TIMEOUT_SECS" bash "$work/snippets.sh"
fi
echo "readme-snippets.sh: $(( $(date +%s) - started ))s"

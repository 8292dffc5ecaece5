#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers with libFuzzer (tests/fuzz/): builds the
# targets with coverage instrumentation on the stable toolchain, seeds each
# corpus with valid inputs, runs every target (or those named) for
# SECONDS_PER_TARGET, and prints per target: seconds, executions, crashes.
# Exits non-zero if any target crashed; a crashing input is kept under
# target/fuzz-artifacts/<target>/ and replays with
#   target/fuzz/x86_64-unknown-linux-gnu/release/<target> <file>
#
#   scripts/fuzz.sh                  # 60 s per target
#   scripts/fuzz.sh 600 text meta    # 10 minutes each for two targets
#   RINGCACHE_FUZZ_ARGS=-len_control=0 scripts/fuzz.sh 180   # long inputs at once
#
# RINGCACHE_FUZZ_ARGS adds libFuzzer flags; -len_control=0 mutates up to
# -max_len from the start instead of growing inputs slowly, which reaches the
# line limits sooner.
# Corpora grow in target/fuzz-corpus/<target>/ and are reused by later runs.
set -uo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(text meta binary peer_wire cluster_file consensus_codec)

host=$(rustc -vV | sed -n 's/^host: //p')
bin=target/fuzz/$host/release
# What cargo-fuzz passes, less the nightly-only sanitizer: libFuzzer's coverage
# counters, its table of code addresses, and comparison tracing. `--target`
# keeps the instrumentation off build scripts, which do not link libFuzzer.
export CARGO_TARGET_DIR=target/fuzz
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --release -j 1 --target "$host" --manifest-path tests/fuzz/Cargo.toml || exit 1
unset RUSTFLAGS CARGO_TARGET_DIR

"$bin/seeds" target/fuzz-corpus || exit 1

failed=0
summary=()
for t in "${targets[@]}"; do
    artifacts=target/fuzz-artifacts/$t
    mkdir -p "$artifacts"
    log=target/fuzz-artifacts/$t.log
    before=$(find "$artifacts" -type f | wc -l)
    started=$(date +%s)
    # -max_len reaches past the line limits (2048, 4096); rss and timeout limits
    # make an unbounded allocation or loop a finding, not a hang.
    "$bin/$t" -max_total_time="$seconds" -max_len=12000 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${RINGCACHE_FUZZ_ARGS:-} \
        "target/fuzz-corpus/$t" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - started))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(($(find "$artifacts" -type f | wc -l) - before))
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        failed=1
        echo "== $t: libFuzzer exited $rc; the end of $log:"
        tail -30 "$log"
    fi
    summary+=("$(printf '%-16s %6ss %12s execs %3s crashes' "$t" "$took" "${execs:-?}" "$crashes")")
done

printf '\n%s\n' "fuzz summary ($seconds s per target):"
printf '  %s\n' "${summary[@]}"
exit $failed

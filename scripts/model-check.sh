#!/usr/bin/env bash
# The deep model check of the consensus core (tests/consensus_model.rs): the same
# model as the bounded run in `cargo test`, with the deeper bounds, in release.
# Prints the bounds, the number of states explored, the examples found and the time.
#
#   scripts/model-check.sh                          # the deep bounds
#   RINGCACHE_MODEL_DEPTH=16 scripts/model-check.sh # deeper still (most steps on a path)
#
# Memory grows with the states explored (about 120 bytes each, so the deep bounds
# need several GiB); `ulimit -v` keeps a run from taking the whole machine.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
cargo build --release --test consensus_model
export RINGCACHE_MODEL_DEEP=1
cargo test --release --test consensus_model -- --nocapture
echo "model-check: wall time $(( $(date +%s) - started ))s (including the build)"

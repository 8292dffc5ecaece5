#!/usr/bin/env bash
# The deep model check of the consensus core (tests/consensus_model.rs): the same
# model as the bounded run in `cargo test`, with the deeper bounds, in release.
# Prints the bounds, the number of states explored, the examples found and the time.
#
#   scripts/model-check.sh                          # the deep bounds (15 steps)
#   RINGCACHE_MODEL_DEPTH=16 scripts/model-check.sh # deeper still (most steps on a path)
#   RINGCACHE_MODEL_BOUNDS="steps=18 ticks=0 drops=0 crashes=0" scripts/model-check.sh
#
# The deep bounds check about 26 million states in about 6 minutes on 2 cores, with
# about 9 GiB of memory at the peak; each step deeper multiplies both by about 2.5.
# `ulimit -v` keeps a run from taking the whole machine.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
cargo build --release --test consensus_model
export RINGCACHE_MODEL_DEEP=1
cargo test --release --test consensus_model -- --nocapture
echo "model-check: wall time $(( $(date +%s) - started ))s (including the build)"

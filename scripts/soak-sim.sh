#!/usr/bin/env bash
# The consensus simulator (tests/consensus_sim.rs) over many more seeds than CI
# runs: whole simulated clusters with drops, duplicates, reordering, partitions,
# crashes that lose unsynced writes, restarts, wiped disks and racing admin
# changes. A failure prints its seed; `RINGCACHE_SEED=<seed>` replays it with a
# trace.
#
#   scripts/soak-sim.sh            # 40,000 seeds (about 95 s on 2 cores)
#   SEEDS=200000 scripts/soak-sim.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${SEEDS:-40000}
started=$(date +%s)
cargo build --release --test consensus_sim
RINGCACHE_SIM_SEEDS=$seeds cargo test --release --test consensus_sim -- --nocapture
echo "soak-sim: $seeds seeds, wall time $(( $(date +%s) - started ))s (including the build)"

#!/usr/bin/env bash
# What a client of the survivors sees when one node of three dies (R=2 or REPLICAS,
# write_ack = "quorum", Paxos): the share of operations that succeed and the
# longest wait before the kill, until the decision that marks it down, and
# after. Real node processes on loopback; four clients through nodes 1 and 2.
#
#   scripts/availability.sh            # an otherwise idle machine
#   HOGS=1 scripts/availability.sh     # one busy process per CPU beside the nodes
#   REPLICAS=3 scripts/availability.sh # R=3: quorum is 2 of 3 owners
set -euo pipefail
cd "$(dirname "$0")/.."
hog_pids=()
stop_hogs() {
    for pid in "${hog_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT
cargo build --release --quiet
if [[ ${HOGS:-0} == 1 ]]; then
    for _ in $(seq "$(nproc)"); do
        yes >/dev/null &
        hog_pids+=($!)
    done
fi
RINGCACHE_AVAILABILITY_REPLICAS=${REPLICAS:-2} cargo test --release --quiet --test cluster -- --ignored --exact \
    failover::availability_with_one_of_three_killed --nocapture 2>&1 | grep '^availability:'

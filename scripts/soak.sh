#!/usr/bin/env bash
# Long simulator soak: sweeps fresh seeds over several fault mixes until the
# time budget (seconds, default 600) is spent. Not part of the test run.
# Usage: scripts/soak.sh [seconds] [extra rzab sim flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-600}
shift $(( $# > 0 ? 1 : 0 ))
cargo build --release -q -p rzab
mixes=("drop=0.05,dup=0.01,reorder=0.1,partition" "drop=0.3,dup=0.2,reorder=0.3" "partition"
       "drop=0.5,partition" "dup=0.5,reorder=0.5" "drop=0.05,dup=0.01,reorder=0.1,partition,crash"
       "drop=0.05,dup=0.01,reorder=0.1,partition,crash,move" "drop=0.2,dup=0.05,reorder=0.3,move")
base=${SEED_BASE:-1000000}
step=2000
start=$(date +%s)
failed=0
seeds=0
while (( $(date +%s) - start < budget )); do
    for m in "${mixes[@]}"; do
        (( $(date +%s) - start < budget )) || break
        if ! ./target/release/rzab sim --seeds "$base..$((base + step))" --faults "$m" "$@" | tail -3; then
            failed=1
        fi
        base=$((base + step))
        seeds=$((seeds + step))
    done
done
echo "soak: $seeds seeds in $(( $(date +%s) - start )) s, next seed $base"
exit $failed

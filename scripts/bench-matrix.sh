#!/usr/bin/env bash
# Runs `rzab bench` over write ratios, several times each, and prints the
# median of each figure. Usage: scripts/bench-matrix.sh [runs] [seconds] [extra bench flags...]
# Example: scripts/bench-matrix.sh 3 10 --lanes 1 --broadcast unicast
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
ratios=${RATIOS:-"0.01 0.05 0.5 1.0"}
cargo build --release -q -p rzab
out=$(mktemp -d)
for r in $ratios; do
    for i in $(seq 1 "$runs"); do
        ./target/release/rzab bench --write-ratio "$r" --duration "$secs" --interval "$secs" \
            --seed "$i" --json "$out/w$r-$i.json" "$@" > "$out/w$r-$i.txt" \
            || { echo "run failed: write ratio $r, run $i"; cat "$out/w$r-$i.txt"; exit 1; }
    done
done
python3 - "$out" "$runs" $ratios <<'PY'
import json, statistics, sys
out, runs, ratios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"medians of {runs} runs (min..max in brackets)")
print(f"{'writes':>7} {'Mops/s':>16} {'writes/s':>20} {'W':>5} {'P':>5} {'A':>5} {'C':>5} "
      f"{'read p50/p99 us':>16} {'write p50/p99 us':>17} {'dgram/write':>11} {'kdgram/s':>9} {'MB/s':>7}")
for r in ratios:
    reps = [json.load(open(f"{out}/w{r}-{i}.json")) for i in range(1, runs + 1)]
    def med(f):
        xs = sorted(f(x) for x in reps)
        return statistics.median(xs), xs[0], xs[-1]
    c = lambda x: x["cluster"]
    mops = med(lambda x: c(x)["rates"]["mops"])
    wps = med(lambda x: c(x)["rates"]["writes_per_s"])
    b = {k: med(lambda x, k=k: c(x)["batches"][k])[0] for k in
         ["writes_per_write", "prepares_per_prepare", "prepares_per_ack", "commits_per_commit"]}
    rl = (med(lambda x: c(x)["read_latency_us"]["p50"])[0], med(lambda x: c(x)["read_latency_us"]["p99"])[0])
    wl = (med(lambda x: c(x)["write_latency_us"]["p50"])[0], med(lambda x: c(x)["write_latency_us"]["p99"])[0])
    dpw = med(lambda x: c(x)["datagrams_per_write"])[0]
    sent = lambda x, k: sum(n["transport"][k] for n in x["nodes"]) / x["elapsed_s"]
    dps = med(lambda x: sent(x, "datagrams_sent"))[0]
    bps = med(lambda x: sent(x, "bytes_sent"))[0]
    print(f"{float(r)*100:6.0f}% {mops[0]:7.2f} [{mops[1]:.2f}..{mops[2]:.2f}] "
          f"{wps[0]/1e3:8.1f}k [{wps[1]/1e3:.0f}..{wps[2]/1e3:.0f}k] "
          f"{b['writes_per_write']:5.1f} {b['prepares_per_prepare']:5.1f} {b['prepares_per_ack']:5.1f} "
          f"{b['commits_per_commit']:5.1f} {rl[0]:7.1f}/{rl[1]:<8.1f} {wl[0]:8.1f}/{wl[1]:<8.1f} {dpw:11.2f} "
          f"{dps/1e3:9.1f} {bps/1e6:7.1f}")
    assert all(x["cluster"]["digests_match"] for x in reps), "digest mismatch"
PY
echo "(raw reports in $out)"

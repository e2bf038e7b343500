#!/usr/bin/env bash
# Checkpoint overhead: each query with checkpoints off and every INTERVAL on, runs
# alternated, REPEAT times each; prints median events/s both ways, the overhead, and
# the checkpoint statistics of the median checkpointed run.
# Usage: benches/checkpoints.sh [REPEAT] [INTERVAL] [CHECKPOINT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-3}
interval=${2:-1s}
dir=${3:-/tmp/weir-bench-checkpoints}
cargo build --release --quiet
echo "| query | events | off: events/s | on ($interval): events/s | overhead | checkpoints | p50 ms | p99 ms | bytes/checkpoint |"
echo "|---|---|---|---|---|---|---|---|---|"
for spec in q0:500000000 q1:500000000 q2:500000000 qw:150000000 q5:50000000 q7:150000000 qs:30000000; do
    q=${spec%%:*}; n=${spec##*:}
    off=(); on=()
    for _ in $(seq "$repeat"); do
        off+=("$(target/release/weir bench nexmark --query "$q" --events "$n" --json)")
        rm -rf "$dir"
        on+=("$(target/release/weir bench nexmark --query "$q" --events "$n" --json --checkpoint-interval "$interval" --checkpoint-dir "$dir" 2>/dev/null)")
    done
    python3 - "$q" "$n" "${#off[@]}" "${off[@]}" "${on[@]}" <<'PY'
import json, statistics, sys
q, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
off = [json.loads(x) for x in sys.argv[4:4 + k]]
on = [json.loads(x) for x in sys.argv[4 + k:]]
m_off = statistics.median(r["events_per_s"] for r in off)
on.sort(key=lambda r: r["events_per_s"])
mid = on[len(on) // 2]
m_on = mid["events_per_s"]
print(f"| {q} | {n/1e6:.0f}M | {m_off/1e6:.1f}M | {m_on/1e6:.1f}M | {100*(1-m_on/m_off):.1f}% | "
      f"{mid['checkpoints']} | {mid['checkpoint_p50_ms']:.1f} | {mid['checkpoint_p99_ms']:.1f} | {mid['checkpoint_bytes']} |")
PY
done

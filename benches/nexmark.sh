#!/usr/bin/env bash
# Runs `weir bench nexmark` for every benchmarked query, REPEAT times each, and prints
# one markdown row per query with the median events/s (and all runs).
# Usage: benches/nexmark.sh [EVENTS] [REPEAT] [PARALLELISM] [extra weir bench args...]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000000}
repeat=${2:-3}
parallelism=${3:-2}
shift $(( $# < 3 ? $# : 3 )) || true
cargo build --release --quiet
echo "| query | events | median events/s | runs (M/s) | peak MiB |"
echo "|---|---|---|---|---|"
for q in q0 q1 q2 qw q5 q7 qs; do
    n=$events
    case $q in q5|qs) n=$(( events / 2 ));; esac
    rates=()
    mem=0
    for _ in $(seq "$repeat"); do
        out=$(target/release/weir bench nexmark --query "$q" --events "$n" --parallelism "$parallelism" --json "$@")
        rates+=("$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_s"])')")
        mem=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["peak_memory_mib"]))')
    done
    python3 - "$q" "$n" "$mem" "${rates[@]}" <<'PY'
import statistics, sys
q, n, mem, *rates = sys.argv[1:]
rates = sorted(float(r) for r in rates)
med = statistics.median(rates)
print(f"| {q} | {int(n)/1e6:.0f}M | {med/1e6:.1f}M | {', '.join(f'{r/1e6:.1f}' for r in rates)} | {mem} |")
PY
done

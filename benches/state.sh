#!/usr/bin/env bash
# Heap state of 1M and 10M keys: checkpoint duration, task-thread pause, bytes per
# checkpoint (incremental and full) and restore time, via `weir bench state`.
# Usage: benches/state.sh [CHECKPOINT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/weir-bench-state}
cargo build --release --quiet
echo "| keys | updates after creation | checkpoints | events/s | checkpoints taken | duration p50 | pause p50 | pause max | uploaded p50 | state | restore: read | restore: total |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for spec in 1000000:150000000 10000000:300000000; do
    keys=${spec%%:*}; events=${spec##*:}
    for hot in "$keys" 10; do
        for mode in incremental full; do
            rm -rf "$dir"
            flag=(); [ "$mode" = full ] && flag=(--full)
            out=$(target/release/weir bench state --keys "$keys" --events "$events" --hot-keys "$hot" \
                --checkpoint-interval 1s --checkpoint-dir "$dir" "${flag[@]}" 2>/dev/null)
            python3 - "$mode" <<PY
import json, sys
r = json.loads('''$out''')
mode = sys.argv[1]
hot = "all keys" if r["hot_keys"] == r["keys"] else f'{r["hot_keys"]} hot keys'
mb = lambda b: f"{b / 1e6:.1f} MB"
print(f'| {r["keys"] / 1e6:.0f}M | {hot} | {mode} | {r["events_per_s"] / 1e6:.1f}M | {len(r["checkpoints"])} '
      f'| {r["full_state_duration_p50_ms"]:.0f} ms | {r["full_state_pause_p50_ms"]:.3f} ms | {r["full_state_pause_max_ms"]:.1f} ms '
      f'| {mb(r["full_state_bytes_p50"])} | {mb(r["state_bytes"])} | {r["restore_read_s"] * 1e3:.0f} ms | {r["restore_s"] * 1e3:.0f} ms |')
PY
        done
    done
done
rm -rf "$dir"

#!/usr/bin/env bash
# Recovery time of a job with large RocksDB state on a coordinator and 3 workers
# (BENCHMARKS.md, "Cluster mode: recovery"). The job keeps a day-long window per key
# for KEYS keys (the large state) beside a small per-second count written to the
# exactly-once file sink (the output that shows it runs). Once the newest checkpoint
# holds TARGET_MIB of state, the worker running subtask 1 is killed (SIGKILL); the
# script prints the seconds from the kill to the first output committed after it,
# and what the restore read: from standby copies, local copies, or downloads.
#
#   benches/cluster-recovery.sh target/release/weir KEYS TARGET_MIB STANDBYS
#   benches/cluster-recovery.sh target/release/weir 30000000 1024 1
set -euo pipefail
weir=$(realpath "$1"); keys=$2; target_mib=$3; standbys=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/weir-recovery.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
export WEIR_CLUSTER_SECRET=benchmark-secret-of-the-cluster
cat > "$dir/job.yaml" <<EOF
name: recovery
parallelism: 3
checkpoints: {interval: 1s, timeout: 5m, standbys: $standbys, storage: '$dir/checkpoints'}
restart: {strategy: fixed-delay, attempts: 20, delay: 500ms}
state_backend: rocksdb
sources:
  - {name: numbers, kind: sequence, from: 1, to: $((keys * 10)), timestamp: value}
operators:
  - {name: keyed, kind: map, input: numbers, fields: {k: value % $keys, v: value, value: value}}
  - {name: by_k, kind: key_by, input: keyed, key: k}
  - name: day
    kind: window
    input: by_k
    window: {type: tumbling, size: 10000d}
    aggregates: {n: count, total: sum(v), low: min(v), high: max(v), mean: avg(v), total_k: sum(k), low_k: min(k), high_k: max(k)}
  - {name: classes, kind: map, input: numbers, fields: {class: value % 13, value: value}}
  - {name: by_class, kind: key_by, input: classes, key: class}
  - name: second
    kind: window
    input: by_class
    window: {type: tumbling, size: 1s}
    aggregates: {n: count}
sinks:
  - {name: out, kind: file, input: second, path: '$dir/out'}
  - {name: days, kind: blackhole, input: day}
EOF
"$weir" coordinator --bind 127.0.0.1:0 --data "$dir/coordinator" --heartbeat-timeout 3s \
  > "$dir/coordinator.out" 2> "$dir/coordinator.log" &
until grep -q listening "$dir/coordinator.out" 2>/dev/null; do sleep 0.05; done
url=$(sed -n 's/.*listening on //p' "$dir/coordinator.out")
pids=()
for i in 1 2 3; do
  RUST_LOG=weir_dataflow=info,weir_checkpoint=info "$weir" worker --coordinator "$url" \
    --data-bind 127.0.0.1:0 --data "$dir/w$i" > "$dir/w$i.out" 2> "$dir/w$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  until grep -q registered "$dir/w$i.out" 2>/dev/null; do sleep 0.05; done
done
id=$(python3 -c 'import json,sys; print(json.dumps({"job": open(sys.argv[1]).read(), "file": "job.yaml"}))' "$dir/job.yaml" \
  | curl -s -X POST -H 'content-type: application/json' --data-binary @- "$url/jobs" \
  | python3 -c 'import json,sys; a = json.load(sys.stdin); print(a.get("id") or sys.exit(str(a)))')
# The state of the newest completed checkpoint, from the job's checkpoint list.
state_mib() {
  curl -sf "$url/jobs/$id/checkpoints" | python3 -c '
import json, sys
latest = json.load(sys.stdin).get("latest") or {}
print(int(latest.get("state_bytes", 0) / 2**20))'
}
start=$(date +%s)
until [ "$(state_mib)" -ge "$target_mib" ]; do
  sleep 1
  if [ $(( $(date +%s) - start )) -gt 1200 ]; then echo "the state never reached $target_mib MiB" >&2; exit 1; fi
done
# Standby copies are refreshed after each completed checkpoint: give the newest one
# a moment, as a failure at a random moment would.
sleep 3
victim=""
for i in 1 2 3; do
  if [ -d "$dir/w$i/state/recovery/day/1" ]; then victim=$i; fi
done
[ -n "$victim" ] || { echo "no worker runs subtask 1 of day" >&2; exit 1; }
ls "$dir/out" > "$dir/before"
killed=$(date +%s.%N)
kill -9 "${pids[$((victim - 1))]}"
# The first part file committed after the kill.
while :; do
  if ls "$dir/out" | grep -qvxFf "$dir/before"; then break; fi
  sleep 0.05
done
recovered=$(date +%s.%N)
metric() { curl -sf "$url/metrics" | sed -n "s/^$1{job=\"$id\"} //p"; }
echo "standbys $standbys, state $(state_mib) MiB, killed worker $victim, seconds to the first new output $(python3 -c "print(round($recovered - $killed, 2))")"
echo "restore bytes $(metric weir_restore_bytes), local $(metric weir_restore_local_bytes), of which standby $(metric weir_restore_standby_bytes), downloaded $(metric weir_restore_downloaded_bytes)"

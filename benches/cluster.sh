#!/usr/bin/env bash
# A job file on a coordinator and N workers on this machine, timed from submission
# to the job's end (BENCHMARKS.md, "Cluster mode"). Prints the seconds taken, and
# each worker's bytes and records sent to the others (from its log). With TLS=1,
# the coordinator serves HTTPS and the workers' data plane is TLS (the test
# certificates of tests/fixtures/tls).
#
#   benches/cluster.sh target/release/weir benches/jobs/qw.yaml 20000000 2
#   TLS=1 benches/cluster.sh target/release/weir benches/jobs/qw.yaml 20000000 2
set -euo pipefail
weir=$(realpath "$1"); job=$2; events=$3; workers=${4:-2}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
export WEIR_CLUSTER_SECRET=benchmark-secret-of-the-cluster
curl=(curl -sf)
if [ -n "${TLS:-}" ]; then
  fixtures=$(realpath "$(dirname "$0")/../tests/fixtures/tls")
  export WEIR_TLS_CERT=$fixtures/node.pem WEIR_TLS_KEY=$fixtures/node.key WEIR_TLS_CA=$fixtures/ca.pem
  curl+=(--cacert "$WEIR_TLS_CA")
fi
sed "s/^\( *events:\).*/\1 $events/" "$job" > "$dir/job.yaml"
"$weir" coordinator --bind 127.0.0.1:0 --data "$dir/coordinator" > "$dir/coordinator.out" &
until grep -q listening "$dir/coordinator.out" 2>/dev/null; do sleep 0.05; done
url=$(sed -n 's/.*listening on //p' "$dir/coordinator.out")
for i in $(seq "$workers"); do
  RUST_LOG=weir_dataflow=info "$weir" worker --coordinator "$url" --data-bind 127.0.0.1:0 \
    --data "$dir/w$i" > "$dir/w$i.out" 2> "$dir/w$i.log" &
done
for i in $(seq "$workers"); do
  until grep -q registered "$dir/w$i.out" 2>/dev/null; do sleep 0.05; done
done
start=$(date +%s.%N)
id=$(python3 -c 'import json,sys; print(json.dumps({"job": open(sys.argv[1]).read(), "file": "job.yaml"}))' "$dir/job.yaml" \
  | "${curl[@]}" -X POST -H 'content-type: application/json' --data-binary @- "$url/jobs" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# Polled with curl and grep alone: a Python start per poll would take a core of its own.
while :; do
  status=$("${curl[@]}" "$url/jobs/$id" | grep -o '"status":"[a-z]*"' | head -1 | cut -d'"' -f4)
  case $status in finished|failed|cancelled|suspended) break;; esac
  sleep 0.1
done
end=$(date +%s.%N)
echo "status $status, seconds $(python3 -c "print(round($end - $start, 3))")"
grep -h "sent to other workers" "$dir"/w*.log | sed 's/.*INFO //' || true
[ "$status" = finished ]

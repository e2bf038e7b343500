#!/usr/bin/env bash
# Queryable state against a running job (BENCHMARKS.md, "Queryable state"): a job
# file on `weir serve`, timed from submission to its end, while `weir bench
# queries` looks up keys of its window state (the keys of a scan, at random) with
# CONCURRENCY lookups in flight for DURATION. CONCURRENCY 0 runs the job alone.
# Prints the job's seconds and the lookups' rate and latency.
#
#   benches/queryable-state.sh target/release/weir benches/jobs/qw.yaml 200000000 qw 4 7s
#   benches/queryable-state.sh target/release/weir benches/jobs/qw.yaml 200000000 qw 0
set -euo pipefail
weir=$(realpath "$1"); job=$2; events=$3; uid=$4; concurrency=${5:-4}; duration=${6:-7s}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
sed "s/^\( *events:\).*/\1 $events/" "$job" > "$dir/job.yaml"
"$weir" serve --bind 127.0.0.1:0 --data "$dir/server" > "$dir/serve.out" &
until grep -q listening "$dir/serve.out" 2>/dev/null; do sleep 0.05; done
url=$(sed -n 's/.*listening on //p' "$dir/serve.out")

start=$(date +%s.%N)
id=$("$weir" submit "$dir/job.yaml" --server "$url")
if [ "$concurrency" -gt 0 ]; then
  "$weir" bench queries "$id" "$uid" window-contents --server "$url" \
    --duration "$duration" --concurrency "$concurrency" > "$dir/queries.json" &
  queries=$!
fi
while :; do
  status=$(curl -sf "$url/jobs/$id" | grep -o '"status":"[a-z]*"' | head -1 | cut -d'"' -f4)
  case $status in finished|failed|cancelled|suspended) break;; esac
  sleep 0.1
done
end=$(date +%s.%N)
[ -z "${queries:-}" ] || wait "$queries"
[ "$status" = finished ] || { echo "job $id: $status" >&2; exit 1; }
echo "job: $(python3 -c "print(round($end - $start, 3))") s"
[ "$concurrency" -gt 0 ] && echo "lookups: $(cat "$dir/queries.json")"
exit 0

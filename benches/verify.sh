#!/usr/bin/env bash
# The 1,000-crash run of `weir verify` recorded in BENCHMARKS.md ("Reliability"):
# heap and RocksDB state, the epoch-file, object-store-file and exactly-once Kafka
# sinks, checkpoints on the local filesystem and on S3. Each job is scaled so that
# its reference run lasts ~0.2 s per crash asked for, which spreads the kills (drawn
# up to twice the reference time divided by the crashes) over ~400 ms.
#
#   eval "$(tests/services.sh start)"    # the Kafka broker and the S3 server
#   benches/verify.sh [WEIR_BINARY] [OUT_DIR] [RUN ...]   (RUN: files-heap, kafka-heap, …; default all)
#
# The binary needs the rocksdb feature (cargo build --release --features rocksdb).
set -euo pipefail
cd "$(dirname "$0")/.."
weir=${1:-target/release/weir}
out=${2:-./weir-data/verify-bench}
only=("${@:3}")
mkdir -p "$out"
: "${WEIR_TEST_KAFKA_BOOTSTRAP:?start the services: eval \"\$(tests/services.sh start)\"}"
: "${WEIR_TEST_S3_ENDPOINT:?start the services: eval \"\$(tests/services.sh start)\"}"
export AWS_ENDPOINT_URL="$WEIR_TEST_S3_ENDPOINT" AWS_ALLOW_HTTP=true
bucket=weir-verify-bench
python_bin=${WEIR_TEST_KAFKA_PYTHON:-python3}
"$python_bin" - "$WEIR_TEST_S3_ENDPOINT" "$bucket" <<'PY' || true
import sys, urllib.request
req = urllib.request.Request(f"{sys.argv[1]}/{sys.argv[2]}", method="PUT")
try:
    urllib.request.urlopen(req)
except Exception as e:
    print(f"bucket: {e}", file=sys.stderr)
PY

# run NAME JOB CRASHES ROWS_PER_CRASH [weir verify flags…]
run() {
  local name=$1 job=$2 crashes=$3 per_crash=$4
  shift 4
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then return; fi
  local scaled="$out/$name.yaml"
  sed -e "s/^    to: .*/    to: $((crashes * per_crash))/" \
      -e "s/127.0.0.1:9092/$WEIR_TEST_KAFKA_BOOTSTRAP/" "$job" > "$scaled"
  echo "== $name: $crashes crashes" >&2
  "$weir" verify "$scaled" --crashes "$crashes" --seed 2026 --quiet --scratch "$out/scratch" "$@" \
    --json > "$out/$name.json" || echo "$name: weir verify reports a difference (exit $?)" >&2
  python3 - "$out/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
crashes = r["kills"] + sum(r["failpoint_crashes"].values())
rows = sum(s["expected"] for s in r["sinks"])
print(f'{r["job"]:<20} {r["backend"]:<8} {("s3" if r["storage"].startswith("s3") else "local"):<6} '
      f'{crashes:>5} {r["kills"]:>5} {crashes - r["kills"]:>5} {r["crashed"]["incarnations"] - 1:>8} '
      f'{rows:>8} {sum(s["lost"] for s in r["sinks"]):>5} {sum(s["duplicated"] for s in r["sinks"]):>5} '
      f'{r["recovery_p50_ms"]:>8.0f} {r["recovery_p99_ms"]:>8.0f} '
      f'{r["crashed"]["checkpoint_p50_ms"]:>7.1f} {r["crashed"]["checkpoint_p99_ms"]:>7.1f}'
      f'{"  finished early" if r["finished_early"] else ""}')
PY
}

echo "job                  backend  store  crash  kill  fail restarts     rows  lost   dup  rec_p50  rec_p99  ck_p50  ck_p99"
run files-heap examples/exactly-once.yaml 300 2000
run files-rocksdb examples/exactly-once.yaml 250 2000 --backend rocksdb
run files-rocksdb-s3 examples/exactly-once.yaml 150 2000 --backend rocksdb --storage "s3://$bucket/verify"
run kafka-heap benches/jobs/exactly-once-kafka.yaml 200 1000
run kafka-rocksdb benches/jobs/exactly-once-kafka.yaml 100 1000 --backend rocksdb

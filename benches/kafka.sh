#!/usr/bin/env bash
# Kafka → Kafka through a pass-through job on the local test broker (tansu, started
# by tests/services.sh): records/s and produce-to-visible latency (p50/p99, for a
# read_committed consumer) for each sink guarantee at checkpoint intervals 200 ms and
# 1 s, REPEAT runs each (medians). Prints a Markdown table.
# Usage: benches/kafka.sh [RECORDS] [REPEAT] [LATENCY_RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
repeat=${2:-3}
rate=${3:-1000}
cargo build --release --quiet
eval "$(tests/services.sh start)"
echo "| guarantee | checkpoint interval | records/s | transactions | latency p50 ms | latency p99 ms |"
echo "|---|---|---|---|---|---|"
for interval in 200ms 1s; do
    for guarantee in exactly-once at-least-once none; do
        runs=()
        for _ in $(seq "$repeat"); do
            rm -rf /tmp/weir-bench-kafka
            runs+=("$(RUST_LOG=error target/release/weir bench kafka --bootstrap "$WEIR_TEST_KAFKA_BOOTSTRAP" \
                --guarantee "$guarantee" --records "$records" --checkpoint-interval "$interval" \
                --latency-rate "$rate" --latency-duration 10s \
                --checkpoint-dir /tmp/weir-bench-kafka)")
        done
        python3 - "$guarantee" "$interval" "${runs[@]}" <<'PY'
import json, statistics, sys
guarantee, interval = sys.argv[1], sys.argv[2]
runs = [json.loads(x) for x in sys.argv[3:]]
med = lambda key: statistics.median(r[key] for r in runs)
print(f"| {guarantee} | {interval} | {med('records_per_s'):,.0f} | {med('transactions'):.0f} | "
      f"{med('latency_p50_ms'):.0f} | {med('latency_p99_ms'):.0f} |")
PY
    done
done

//! The Kafka source against a real Kafka-protocol broker (tansu, started by
//! `tests/services.sh`), with records written by an independent client (Python
//! `confluent-kafka`): offsets in checkpoints give exactly-once input across a
//! failure, a stop-with-savepoint and a rescaled resume; a missing topic and an
//! unreachable broker are clear errors.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::kafka_services::{broker, python, CREATE_TOPIC, PRODUCE, READ_COMMITTED_CONSUMER};
use common::{job_config, local_checkpointing, RunningCount};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::dataflow::checkpointing::{CheckpointedJob, JobStatus, NoListener, ResumeFrom};
use weir::dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
use weir::sinks::{read_committed, EpochFileSink};
use weir::sources::kafka::{utf8, KafkaSource, KafkaSourceConfig};

fn build(
    source: KafkaSourceConfig,
    out: std::path::PathBuf,
    fail_at: Option<(u64, Arc<AtomicBool>)>,
) -> impl Fn(&JobBuilder) + Send + Sync {
    move |job: &JobBuilder| {
        let fail_at = fail_at.clone();
        job.source(
            "kafka",
            WatermarkStrategy::none(),
            KafkaSource::factory(source.clone(), utf8()),
        )
        .uid("kafka")
        .flat_map(|record: weir::sources::KafkaRecord<String>| {
            let (key, seq) = record.value.split_once(',')?;
            Some((key.parse::<u32>().ok()?, seq.parse::<u64>().ok()?))
        })
        .key_by(|r: &(u32, u64)| r.0)
        .process("running-count", move |cx| {
            RunningCount::open(cx, fail_at.clone())
        })
        .uid("running-count")
        .sink("out", EpochFileSink::<(u32, u64)>::factory(out.clone()))
        .uid("out");
    }
}

fn expected(records: u64) -> Vec<(u32, u64)> {
    expected_range(0, records)
}

/// The running counts of the records `from..to`.
fn expected_range(from: u64, to: u64) -> Vec<(u32, u64)> {
    let mut per_key: BTreeMap<u32, u64> = BTreeMap::new();
    for seq in from..to {
        *per_key.entry((seq % 13) as u32).or_default() += 1;
    }
    let mut out: Vec<(u32, u64)> = per_key
        .into_iter()
        .flat_map(|(k, c)| (1..=c).map(move |i| (k, i)))
        .collect();
    out.sort_unstable();
    out
}

fn committed(out: &Path) -> Vec<(u32, u64)> {
    let mut records = read_committed::<(u32, u64)>(out).unwrap_or_default();
    records.sort_unstable();
    records
}

/// Waits until the committed output has `n` records (or more: then it is wrong and
/// the comparison says so).
fn wait_for_output(out: &Path, n: usize) {
    let started = Instant::now();
    while committed(out).len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {n} records committed after 120 s",
            committed(out).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kafka_input_is_exactly_once_across_a_failure_a_savepoint_and_rescaling() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-count-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "3"]);
    python(&py, PRODUCE, &[&bootstrap, &topic, "0", "3000", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let source = KafkaSourceConfig::new(&bootstrap, &topic, "weir-count");

    // Part 1, parallelism 2, with a failure: the restart resumes from checkpointed
    // offsets; then more records arrive while it runs; then stop with a savepoint.
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config("kafka-count", 2),
        local_checkpointing(dir.path(), Duration::from_millis(50), ResumeFrom::Nothing),
        build(source.clone(), out.clone(), Some((1_500, failed.clone()))),
        Arc::new(NoListener),
    )
    .unwrap();
    python(&py, PRODUCE, &[&bootstrap, &topic, "3000", "5000", "3"]);
    wait_for_output(&out, 5_000);
    let savepoint = job.savepoint(true).unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Suspended);
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert_eq!(committed(&out), expected(5_000), "after the failure");

    // Part 2: records written while the job is stopped, read after resuming from
    // the savepoint at parallelism 3.
    python(&py, PRODUCE, &[&bootstrap, &topic, "5000", "8000", "3"]);
    let job = CheckpointedJob::spawn(
        job_config("kafka-count", 3),
        local_checkpointing(
            dir.path(),
            Duration::from_millis(50),
            ResumeFrom::Savepoint(savepoint),
        ),
        build(source, out.clone(), None),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_output(&out, 8_000);
    job.savepoint(true).unwrap();
    job.wait().unwrap();
    assert_eq!(
        committed(&out),
        expected(8_000),
        "after resuming at parallelism 3"
    );
}

#[test]
fn a_missing_topic_and_an_unreachable_broker_are_clear_errors() {
    let Some((bootstrap, _)) = broker() else {
        return;
    };
    let run = |source: KafkaSourceConfig| {
        let job = JobBuilder::new(JobConfig::default());
        job.source(
            "kafka",
            WatermarkStrategy::none(),
            KafkaSource::factory(source, utf8()),
        )
        .sink("out", weir::sinks::BlackholeSink::new().0);
        job.execute().map(|_| ()).unwrap_err().to_string()
    };
    let err = run(KafkaSourceConfig::new(&bootstrap, "no-such-topic", "g"));
    println!("{err}");
    assert!(
        err.contains("no-such-topic") && err.contains("does not exist"),
        "{err}"
    );
    let mut unreachable = KafkaSourceConfig::new("127.0.0.1:1", "t", "g");
    unreachable.connect_timeout = Duration::from_secs(2);
    let err = run(unreachable);
    println!("{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("could not reach"),
        "{err}"
    );
}

/// Writes `count` records to partition 0 only, one every 100 ms of event time from
/// `base` (the record timestamp).
const PRODUCE_TIMED: &str = r#"
import sys
from confluent_kafka import Producer
bootstrap, topic, base, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
producer = Producer({"bootstrap.servers": bootstrap})
for i in range(count):
    producer.produce(topic, value=b"x", partition=0, timestamp=base + i * 100)
assert producer.flush(30) == 0, "records not delivered"
"#;

#[test]
fn watermarks_follow_record_timestamps_per_partition_and_an_idle_partition_does_not_hold_them() {
    use weir::dataflow::window::WindowAssigner;
    use weir::dataflow::Timestamp;
    use weir::state::Count;
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-time-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "2"]);
    let base: i64 = 1_700_000_000_000;
    python(
        &py,
        PRODUCE_TIMED,
        &[&bootstrap, &topic, &base.to_string(), "50"],
    );
    // Partition 1 stays empty: without idleness it would hold the watermark back and
    // no window would ever fire.
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        ..JobConfig::default()
    });
    let (sink, collected) = weir::sinks::CollectSink::new();
    job.source(
        "kafka",
        WatermarkStrategy::bounded_out_of_orderness(
            Duration::ZERO,
            |r: &weir::sources::KafkaRecord<Vec<u8>>| Timestamp(r.timestamp.unwrap_or(i64::MIN)),
        )
        .with_idleness(Duration::from_millis(200)),
        KafkaSource::factory(
            KafkaSourceConfig::new(&bootstrap, &topic, "weir-time"),
            weir::sources::kafka::bytes(),
        ),
    )
    .key_by(|_: &weir::sources::KafkaRecord<Vec<u8>>| 0u8)
    .window(WindowAssigner::tumbling(Duration::from_secs(1)))
    .aggregate(Count, move |_, window, count| (window.start - base, count))
    .sink("collect", sink);
    let handle = job.spawn().unwrap();
    let started = Instant::now();
    // Records span 0..4.9 s: the watermark (4.899 s) closes the windows up to 4 s.
    while collected.len() < 4 {
        if let Some(e) = handle.poll_failure() {
            panic!("the job failed: {e}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "windows fired: {:?}",
            collected.take()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.cancel();
    let _ = handle.wait();
    let mut windows = collected.take();
    windows.sort_unstable();
    assert_eq!(
        windows,
        vec![(0, 10), (1_000, 10), (2_000, 10), (3_000, 10)]
    );
}

/// Commits offset `offset` of every partition of a topic for a consumer group.
const COMMIT_GROUP: &str = r#"
import sys
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, group, partitions, offset = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
consumer.commit(offsets=[TopicPartition(topic, p, offset) for p in range(partitions)], asynchronous=False)
consumer.close()
"#;

#[test]
fn a_group_committed_start_reads_from_the_committed_offsets_and_resumes_from_checkpoints() {
    use weir::sources::StartPosition;
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-group-{}", std::process::id());
    let group = format!("weir-group-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "2"]);
    // seq goes to partition seq % 2 at offset seq / 2: offsets 30.. are seq 60..
    python(&py, PRODUCE, &[&bootstrap, &topic, "0", "100", "2"]);
    python(&py, COMMIT_GROUP, &[&bootstrap, &topic, &group, "2", "30"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut source = KafkaSourceConfig::new(&bootstrap, &topic, &group);
    source.start = StartPosition::GroupCommitted;
    let job = CheckpointedJob::spawn(
        job_config("kafka-count", 2),
        local_checkpointing(dir.path(), Duration::from_millis(50), ResumeFrom::Nothing),
        build(source.clone(), out.clone(), None),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_output(&out, 40);
    let savepoint = job.savepoint(true).unwrap();
    job.wait().unwrap();
    assert_eq!(
        committed(&out),
        expected_range(60, 100),
        "from the committed offsets"
    );
    // Records written while it is stopped are read after resuming from the savepoint
    // (its offsets, not the group's, decide where reading continues).
    python(&py, PRODUCE, &[&bootstrap, &topic, "100", "150", "2"]);
    let job = CheckpointedJob::spawn(
        job_config("kafka-count", 2),
        local_checkpointing(
            dir.path(),
            Duration::from_millis(50),
            ResumeFrom::Savepoint(savepoint),
        ),
        build(source, out.clone(), None),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_output(&out, 90);
    job.savepoint(true).unwrap();
    job.wait().unwrap();
    assert_eq!(committed(&out), expected_range(60, 150), "after the resume");
}

/// A partition the restored checkpoint has no offset for was created after it: it is
/// read from its beginning, whatever the configured start. (The test broker cannot
/// add partitions to a topic, so the checkpoint is one that knows only partition 0.)
#[test]
fn a_partition_unknown_to_the_restored_checkpoint_is_read_from_its_beginning() {
    use weir::dataflow::testing::CollectSink;
    use weir::dataflow::{OperatorSnapshot, RestoreState};
    use weir::sources::StartPosition;
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-new-partition-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "2"]);
    // seq goes to partition seq % 2 at offset seq / 2.
    python(&py, PRODUCE, &[&bootstrap, &topic, "0", "100", "2"]);
    let offsets: BTreeMap<i32, i64> = BTreeMap::from([(0, 25)]);
    let snapshot = OperatorSnapshot {
        operator: BTreeMap::from([(
            "kafka-offsets".to_string(),
            weir::state::encode("kafka-offsets", &offsets).unwrap(),
        )]),
        ..OperatorSnapshot::default()
    };
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        restore: Some(RestoreState {
            operators: BTreeMap::from([("kafka".to_string(), vec![snapshot])]),
            max_parallelism: JobConfig::default().max_parallelism,
            opened: BTreeMap::new(),
        }),
        ..JobConfig::default()
    });
    let mut source = KafkaSourceConfig::new(&bootstrap, &topic, "weir-new-partition");
    source.start = StartPosition::Latest;
    source.bounded = true;
    let (sink, collected) = CollectSink::new();
    job.source(
        "kafka",
        WatermarkStrategy::none(),
        KafkaSource::factory(source, utf8()),
    )
    .uid("kafka")
    .flat_map(|record: weir::sources::KafkaRecord<String>| {
        record.value.split_once(',')?.1.parse::<u64>().ok()
    })
    .sink("collect", sink);
    job.execute().unwrap();
    let mut seqs = collected.take();
    seqs.sort_unstable();
    // Partition 0 from its checkpointed offset 25 (seq 50 on), all of partition 1.
    let expected: Vec<u64> = (0..100).filter(|s| s % 2 == 1 || *s >= 50).collect();
    assert_eq!(seqs, expected);
}

/// Writes each argument after the topic as one record's value, in order, to
/// partition 0: `python(py, PRODUCE_VALUES, &[bootstrap, topic, values...])`.
const PRODUCE_VALUES: &str = r#"
import sys
from confluent_kafka import Producer
producer = Producer({"bootstrap.servers": sys.argv[1], "enable.idempotence": True})
for value in sys.argv[3:]:
    producer.produce(sys.argv[2], value=value.encode(), partition=0)
assert producer.flush(30) == 0, "records not delivered"
"#;

/// A job file reading JSON from Kafka fails on a record that does not fit its
/// schema, naming the record's topic, partition and offset, the field and the value.
#[test]
fn a_json_record_that_does_not_fit_fails_a_job_file_naming_its_offset_and_field() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-bad-json-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "1"]);
    python(
        &py,
        PRODUCE_VALUES,
        &[
            &bootstrap,
            &topic,
            r#"{"user": "a", "amount": 1.5}"#,
            r#"{"user": "b", "amount": "lots"}"#,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "
name: bad-json
parallelism: 1
restart: {{strategy: none}}
sources:
  - {{name: payments, kind: kafka, bootstrap: '{bootstrap}', topic: {topic}, start: earliest,
     bounded: true, format: json, schema: {{user: string, amount: float}}}}
sinks: [{{name: out, kind: stdout, input: payments}}]
"
    );
    std::fs::write(dir.path().join("job.yaml"), job).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "job.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "record at offset 1 of partition 0 of topic `{topic}`"
        )) && stderr.contains("field `amount`")
            && stderr.contains("lots"),
        "{stderr}"
    );
}

/// SQL over Kafka: a table on a topic of JSON objects (read to the ends found) and
/// a table on another topic written exactly once, with an `INSERT … SELECT` between
/// them; the output topic's committed records are the rows the query keeps.
#[test]
fn sql_reads_a_topic_and_writes_another_exactly_once() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let input = format!("weir-sql-in-{}", std::process::id());
    let output = format!("weir-sql-out-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &input, "1"]);
    python(&py, CREATE_TOPIC, &[&bootstrap, &output, "1"]);
    let values: Vec<String> = (1..=40)
        .map(|i| format!(r#"{{"user": "u{}", "amount": {}}}"#, i % 3, i))
        .collect();
    let mut args = vec![bootstrap.as_str(), input.as_str()];
    args.extend(values.iter().map(String::as_str));
    python(&py, PRODUCE_VALUES, &args);
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
CREATE TABLE payments (`user` STRING, amount BIGINT) WITH (
  'connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{bootstrap}',
  'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset', 'format' = 'json');
CREATE TABLE large (`user` STRING, cents BIGINT) WITH (
  'connector' = 'kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{bootstrap}',
  'sink.delivery-guarantee' = 'exactly-once', 'key.fields' = 'user');
INSERT INTO large SELECT `user`, amount * 100 FROM payments WHERE amount > 30;
"
    );
    std::fs::write(dir.path().join("payments.sql"), sql).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sql", "payments.sql"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = python(&py, READ_COMMITTED_CONSUMER, &[&bootstrap, &output, "1"]);
    let mut rows: Vec<serde_json::Value> = read
        .lines()
        .map(|line| serde_json::from_str(line.splitn(3, ' ').nth(2).unwrap()).unwrap())
        .collect();
    rows.sort_by_key(|r| r["cents"].as_i64());
    let expected: Vec<serde_json::Value> = (31..=40)
        .map(|i| serde_json::json!({"user": format!("u{}", i % 3), "cents": i * 100}))
        .collect();
    assert_eq!(rows, expected);
}

/// Job files' upsert Kafka. A Kafka sink with `key:` and `deleted:` writes a table's
/// changelog exactly once: each row an upsert of its key without the deletion flag,
/// or a tombstone, with the row's event time as the record's timestamp (read from
/// the broker's log by an independent reader). A Kafka source with `upsert:` reads
/// it back as a table, tombstones as rows flagged deleted at their record's time,
/// and a temporal join prices each order as of its time from it. Bad `upsert:` and
/// `deleted:` settings are refused by name.
#[test]
fn a_job_file_writes_a_table_s_changelog_to_kafka_and_prices_orders_as_of_their_time_from_it() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-prices-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "2"]);
    let dir = tempfile::tempdir().unwrap();
    // (arrival, line) sorted by arrival: out of order by up to 39 ms.
    let mut prices: Vec<(i64, String)> = Vec::new();
    let mut versions: Vec<(i64, i64, i64, bool)> = Vec::new(); // item, ts, price, gone
    for i in 0..1_500i64 {
        let (ts, item, price, gone) = (
            1_000_000 + i * 10 + (i * 7) % 10,
            i * 13 % 40,
            i % 97 + 1,
            i % 7 == 0,
        );
        prices.push((
            ts + (i * 31) % 40,
            format!("{{\"item\":{item},\"price\":{price},\"ts\":{ts},\"gone\":{gone}}}"),
        ));
        versions.push((item, ts, price, gone));
    }
    let mut orders: Vec<(i64, String)> = Vec::new();
    let mut expected: Vec<(i64, i64, i64, i64)> = Vec::new(); // item, qty, ts, price
    for j in 0..2_000i64 {
        let (ts, item, qty) = (1_000_000 + j * 7, j * 17 % 40, j);
        orders.push((
            ts + (j * 23) % 40,
            format!("{{\"item\":{item},\"qty\":{qty},\"ts\":{ts}}}"),
        ));
        let valid = versions
            .iter()
            .filter(|v| v.0 == item && v.1 <= ts)
            .max_by_key(|v| v.1);
        if let Some(&(_, _, price, false)) = valid {
            expected.push((item, qty, ts, price));
        }
    }
    for (name, mut lines) in [("prices.jsonl", prices), ("orders.jsonl", orders)] {
        lines.sort();
        let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    expected.sort();
    assert!(expected.len() > 1_000, "{}", expected.len());

    let writer = format!(
        "
name: price-changelog
parallelism: 1
checkpoints: {{interval: 100ms}}
sources:
  - name: prices
    kind: file
    path: prices.jsonl
    schema: {{item: int, price: int, ts: timestamp, gone: bool}}
    timestamp: ts
sinks:
  - {{name: changelog, kind: kafka, input: prices, bootstrap: '{bootstrap}', topic: {topic},
     key: item, deleted: gone}}
"
    );
    std::fs::write(dir.path().join("writer.yaml"), &writer).unwrap();
    let run = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", file])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run("writer.yaml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = weir::sinks::kafka_log::committed_view(&bootstrap, &topic).unwrap();
    assert_eq!(view.pending(), 0);
    let mut written: Vec<(i64, i64, Option<serde_json::Value>)> = view
        .records()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let value = r.value.as_ref().map(|v| serde_json::from_slice(v).unwrap());
            (key.parse().unwrap(), r.timestamp, value)
        })
        .collect();
    written.sort_by_key(|w| (w.0, w.1));
    let mut changes: Vec<(i64, i64, Option<serde_json::Value>)> = versions
        .iter()
        .map(|&(item, ts, price, gone)| {
            let value = serde_json::json!({"item": item, "price": price, "ts": ts});
            (item, ts, (!gone).then_some(value))
        })
        .collect();
    changes.sort_by_key(|c| (c.0, c.1));
    assert_eq!(written, changes);

    let reader = format!(
        "
name: priced
parallelism: 2
checkpoints: {{interval: 100ms}}
sources:
  - name: prices
    kind: kafka
    bootstrap: '{bootstrap}'
    topic: {topic}
    bounded: true
    schema: {{item: int, price: int, ts: timestamp}}
    upsert: {{key: item, deleted: gone}}
    timestamp: ts
    watermark: {{max_out_of_orderness: 50ms}}
  - name: orders
    kind: file
    path: orders.jsonl
    schema: {{item: int, qty: int, ts: timestamp}}
    timestamp: ts
    watermark: {{max_out_of_orderness: 50ms}}
operators:
  - {{name: by_item, kind: key_by, input: orders, key: item}}
  - {{name: prices_by_item, kind: key_by, input: prices, key: item}}
  - name: priced
    kind: temporal_join
    inputs: [by_item, prices_by_item]
    retention: 10s
    deleted: gone
sinks: [{{name: out, kind: stdout, input: priced}}]
"
    );
    std::fs::write(dir.path().join("reader.yaml"), &reader).unwrap();
    let out = run("reader.yaml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<(i64, i64, i64, i64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(row["gone"], serde_json::json!(false), "{row}");
            let int = |f: &str| row[f].as_i64().unwrap();
            (int("item"), int("qty"), int("ts"), int("price"))
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);

    // The same in SQL: the changelog as an upsert-kafka table, its tombstones
    // deleting an item; the priced orders written to another upsert-kafka table.
    let priced_topic = format!("weir-priced-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &priced_topic, "1"]);
    let sql = format!(
        "SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '100 ms';
CREATE TABLE prices (item BIGINT, price BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '0.05' SECOND, PRIMARY KEY (item) NOT ENFORCED)
  WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}',
        'properties.bootstrap.servers' = '{bootstrap}', 'scan.bounded.mode' = 'latest-offset',
        'key.format' = 'raw', 'value.format' = 'json');
CREATE TABLE orders (item BIGINT, qty BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '0.05' SECOND)
  WITH ('connector' = 'filesystem', 'path' = 'orders.jsonl', 'format' = 'json');
CREATE TABLE priced (qty BIGINT, item BIGINT, price BIGINT, ordered_at TIMESTAMP(3),
  PRIMARY KEY (qty) NOT ENFORCED)
  WITH ('connector' = 'upsert-kafka', 'topic' = '{priced_topic}',
        'properties.bootstrap.servers' = '{bootstrap}', 'key.format' = 'raw',
        'value.format' = 'json');
INSERT INTO priced
SELECT O.qty, O.item, P.price, O.ts
FROM orders AS O
JOIN prices FOR SYSTEM_TIME AS OF O.ts AS P ON O.item = P.item;
"
    );
    std::fs::write(dir.path().join("priced.sql"), &sql).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sql", "priced.sql"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = weir::sinks::kafka_log::committed_view(&bootstrap, &priced_topic).unwrap();
    let mut got: Vec<(i64, i64, i64, i64)> = view
        .records()
        .map(|r| {
            let row: serde_json::Value = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            assert_eq!(key, row["qty"].to_string(), "{row}");
            let int = |f: &str| row[f].as_i64().unwrap();
            (int("item"), int("qty"), int("ordered_at"), int("price"))
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
    let as_rows = sql.replace(
        "FROM orders AS O\nJOIN prices FOR SYSTEM_TIME AS OF O.ts AS P ON O.item = P.item",
        "FROM orders AS O JOIN prices AS P ON O.item = P.item",
    );
    std::fs::write(dir.path().join("bad.sql"), &as_rows).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sql", "bad.sql"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("table `prices` is a changelog (connector 'upsert-kafka')"),
        "{stderr}"
    );

    let refused = [
        (
            &reader,
            "upsert: {key: item, deleted: gone}",
            "upsert: {key: sku, deleted: gone}",
            "unknown field `sku`: expected one of the schema's fields `item`, `price`, `ts`",
        ),
        (
            &reader,
            "upsert: {key: item, deleted: gone}",
            "upsert: {key: item, deleted: price}",
            "`price` is already a field of the schema",
        ),
        (
            &reader,
            "upsert: {key: item, deleted: gone}",
            "upsert: {key: item}",
            "missing required setting `deleted`",
        ),
        (
            &reader,
            "bounded: true",
            "bounded: true\n    format: text",
            "expected `format: json` with `upsert`",
        ),
        (
            &writer,
            "key: item, deleted: gone",
            "deleted: gone",
            "expected `key:` with `deleted:`",
        ),
        (
            &writer,
            "key: item, deleted: gone",
            "key: item, deleted: price",
            "`price` is of type int: expected a bool field",
        ),
    ];
    for (job, from, to, says) in refused {
        std::fs::write(dir.path().join("bad.yaml"), job.replace(from, to)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["validate", "bad.yaml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}");
        assert!(stderr.contains(says), "{to}: {stderr}");
    }
}

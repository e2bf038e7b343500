//! The Kafka sink against a real Kafka-protocol broker (tansu, started by
//! `tests/services.sh`): exactly-once output across failures, savepoints and
//! rescaling, fencing of a zombie producer, the at-least-once and no-guarantee
//! modes, and clear errors for bad settings.
//!
//! What a consumer sees is computed from the topic's raw log (control batches
//! included) by `common::kafka_log`, because tansu shows records of aborted
//! transactions to `read_committed` consumers.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::kafka_log::committed_view;
use common::{job_config, local_checkpointing, RunningCount};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::dataflow::checkpointing::{
    CheckpointedJob, JobStatus, NoListener, RestartStrategy, ResumeFrom,
};
use weir::dataflow::{JobBuilder, WatermarkStrategy};
use weir::sinks::kafka::{default_partition, json_keyed};
use weir::sinks::{DeliveryGuarantee, KafkaSink, KafkaSinkConfig};
use weir::sources::kafka::{utf8, KafkaSource, KafkaSourceConfig};

use common::kafka_services::{
    broker, python, strict_broker, AWAIT_BROKER, CREATE_TOPIC, PRODUCE, READ_COMMITTED_CONSUMER,
};

/// Checkpoint interval of these jobs.
const INTERVAL: Duration = Duration::from_millis(100);

/// A `(key, count)` as the sink writes it: key = the key's decimal text, value = JSON.
type Count = (u32, u64);

fn build(
    source: KafkaSourceConfig,
    sink: KafkaSinkConfig,
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
        .key_by(|r: &Count| r.0)
        .process("running-count", move |cx| {
            RunningCount::open(cx, fail_at.clone())
        })
        .uid("running-count")
        .sink(
            "kafka-out",
            KafkaSink::factory(
                sink.clone(),
                json_keyed(|(key, _): &Count| key.to_string().into_bytes()),
            ),
        )
        .uid("kafka-out");
    }
}

/// The running counts of the records `0..to` (key = seq % 13), sorted.
fn expected(to: u64) -> Vec<Count> {
    let mut per_key: BTreeMap<u32, u64> = BTreeMap::new();
    for seq in 0..to {
        *per_key.entry((seq % 13) as u32).or_default() += 1;
    }
    per_key
        .into_iter()
        .flat_map(|(k, c)| (1..=c).map(move |i| (k, i)))
        .collect()
}

/// The counts visible to a `read_committed` consumer of `topic` (computed from the
/// raw log), sorted; checks each keyed record sits in its murmur2 partition.
fn visible(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Count> {
    let view = committed_view(bootstrap, topic).expect("read the output topic's log");
    let mut out = Vec::new();
    for record in view.records() {
        let key = record.key.as_deref().expect("keyed output");
        assert_eq!(
            record.partition,
            default_partition(key, partitions),
            "key {:?} is not in its murmur2 partition",
            String::from_utf8_lossy(key)
        );
        let count: Count = serde_json::from_slice(record.value.as_deref().unwrap_or_default())
            .expect("a JSON [key, count]");
        out.push(count);
    }
    out.sort_unstable();
    out
}

/// Waits until `topic` shows `n` committed records (or more: the comparison after
/// says what is wrong).
fn wait_for_visible(bootstrap: &str, topic: &str, partitions: i32, n: usize) {
    let started = Instant::now();
    loop {
        let seen = visible(bootstrap, topic, partitions).len();
        if seen >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {seen} of {n} records visible after 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh input topic with `records` records over 3 partitions and an empty output
/// topic with 3 partitions.
fn topics(bootstrap: &str, py: &str, name: &str, records: u64) -> (String, String) {
    let input = format!("{name}-in-{}", std::process::id());
    let output = format!("{name}-out-{}", std::process::id());
    python(py, CREATE_TOPIC, &[bootstrap, &input, "3"]);
    python(py, CREATE_TOPIC, &[bootstrap, &output, "3"]);
    if records > 0 {
        python(
            py,
            PRODUCE,
            &[bootstrap, &input, "0", &records.to_string(), "3"],
        );
    }
    (input, output)
}

#[test]
fn kafka_to_kafka_is_exactly_once_across_a_failure_a_savepoint_and_rescaling() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let (input, output) = topics(&bootstrap, &py, "weir-eos", 3000);
    let dir = tempfile::tempdir().unwrap();
    let source = KafkaSourceConfig::new(&bootstrap, &input, "weir-eos");
    let lag = Arc::clone(&source.metrics);
    let sink = KafkaSinkConfig::new(&bootstrap, &output);
    let metrics = Arc::clone(&sink.metrics);

    // Parallelism 2 with a failure: the restart produces again the epochs of the
    // checkpoint it resumes from only where their marker is missing.
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config("kafka-eos", 2),
        local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Nothing),
        build(source.clone(), sink.clone(), Some((1_500, failed.clone()))),
        Arc::new(NoListener),
    )
    .unwrap();
    python(&py, PRODUCE, &[&bootstrap, &input, "3000", "5000", "3"]);
    wait_for_visible(&bootstrap, &output, 3, 5_000);
    // Everything is read: once the brokers' partition ends are reported, the lag of
    // each of the 3 partitions is 0.
    let started = Instant::now();
    while lag.lag() != BTreeMap::from([(0, 0), (1, 0), (2, 0)]) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "consumer lag {:?}",
            lag.partitions()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let savepoint = job.savepoint(true).unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Suspended);
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert_eq!(visible(&bootstrap, &output, 3), expected(5_000));
    assert!(metrics.transactions_committed.load(Ordering::Relaxed) > 0);
    assert_eq!(metrics.records_out.load(Ordering::Relaxed), 5_000);
    assert_eq!(metrics.epoch_buffer_bytes.load(Ordering::Relaxed), 0);

    // Records written while the job is stopped, counted after resuming from the
    // savepoint at parallelism 3.
    python(&py, PRODUCE, &[&bootstrap, &input, "5000", "8000", "3"]);
    let job = CheckpointedJob::spawn(
        job_config("kafka-eos", 3),
        local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Savepoint(savepoint)),
        build(source, sink, None),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_visible(&bootstrap, &output, 3, 8_000);
    job.savepoint(true).unwrap();
    job.wait().unwrap();
    let view = committed_view(&bootstrap, &output).unwrap();
    assert_eq!(view.pending(), 0, "no transaction is left open");
    assert_eq!(visible(&bootstrap, &output, 3), expected(8_000));
}

/// Issue 16, defect 4: the pending epochs of a savepoint are recovered under the
/// transactional ids they were written with, so resuming it as another job (another
/// name, so another default prefix) with another `transactional_id_prefix` at another
/// parallelism finds their markers and commits nothing twice.
/// Runs job `name` (built by `build`) without periodic checkpoints until its sink
/// received `records` records, then stops it with a savepoint: every record is in
/// the epoch of that savepoint, committed when it completes, so the savepoint holds
/// the epoch as pending. Returns the savepoint.
fn savepoint_after(
    name: &str,
    parallelism: usize,
    dir: &std::path::Path,
    build: impl Fn(&JobBuilder) + Send + Sync + 'static,
    received: &weir::sinks::KafkaSinkMetrics,
    records: u64,
) -> String {
    let job = CheckpointedJob::spawn(
        job_config(name, parallelism),
        local_checkpointing(dir, Duration::from_secs(3600), ResumeFrom::Nothing),
        build,
        Arc::new(NoListener),
    )
    .unwrap();
    let started = Instant::now();
    while received.records_in.load(Ordering::Relaxed) < records {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sink received {} of {records} records",
            received.records_in.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let savepoint = job.savepoint(true).unwrap();
    job.wait().unwrap();
    savepoint
}

#[test]
fn a_savepoint_resumed_under_another_job_name_and_prefix_commits_each_epoch_once() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let (input, output) = topics(&bootstrap, &py, "weir-txnid", 2000);
    let dir = tempfile::tempdir().unwrap();
    let source = KafkaSourceConfig::new(&bootstrap, &input, "weir-txnid");

    // Job A takes no periodic checkpoint: all its records are in the epoch of the
    // stop-with-savepoint, which A commits when the savepoint completes, so the
    // savepoint holds that epoch as pending and its markers say it is committed.
    let sink_a = KafkaSinkConfig::new(&bootstrap, &output);
    let received = Arc::clone(&sink_a.metrics);
    let savepoint = savepoint_after(
        "kafka-txnid-a",
        2,
        dir.path(),
        build(source.clone(), sink_a, None),
        &received,
        2000,
    );
    assert_eq!(received.transactions_committed.load(Ordering::Relaxed), 2);
    assert_eq!(visible(&bootstrap, &output, 3), expected(2000));

    // Job B: another name, an explicit prefix, parallelism 3, more input.
    python(&py, PRODUCE, &[&bootstrap, &input, "2000", "3000", "3"]);
    let mut sink_b = KafkaSinkConfig::new(&bootstrap, &output);
    sink_b.transactional_id_prefix = Some(format!("weir-txnid-b-{}", std::process::id()));
    let resumed = Arc::clone(&sink_b.metrics);
    let job = CheckpointedJob::spawn(
        job_config("kafka-txnid-b", 3),
        local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Savepoint(savepoint)),
        build(source, sink_b, None),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_visible(&bootstrap, &output, 3, 3000);
    job.savepoint(true).unwrap();
    job.wait().unwrap();
    let view = committed_view(&bootstrap, &output).unwrap();
    assert_eq!(view.pending(), 0, "no transaction is left open");
    assert_eq!(visible(&bootstrap, &output, 3), expected(3000));
    assert_eq!(
        resumed.epochs_skipped.load(Ordering::Relaxed),
        2,
        "both of job A's committed epochs are recognised"
    );
}

/// Another transactional producer that opens a transaction on partition 0 of a
/// topic, says `ready`, holds it open until a line on stdin, then aborts it and says
/// `aborted`. tansu applies a transaction's consumer-group offsets at its commit
/// only when every other transaction that wrote to the same partitions before it has
/// ended; while this one is open it acknowledges later commits but drops their
/// offsets.
const OPEN_TRANSACTION: &str = r#"
import sys
from confluent_kafka import Producer
bootstrap, topic, txid = sys.argv[1], sys.argv[2], sys.argv[3]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
p.init_transactions(30)
p.begin_transaction()
p.produce(topic, key=b"open", value=b'"open"', partition=0)
p.flush(30)
print("ready", flush=True)
sys.stdin.readline()
p.abort_transaction(30)
print("aborted", flush=True)
"#;

/// The sink's marker (the epoch as a consumer-group offset committed in the
/// epoch's transaction) is what a restore trusts to skip an epoch already
/// committed. A broker that acknowledges the commit but does not apply the
/// transaction's offset (tansu while another transaction is open on the partition)
/// must not make the restore produce the epoch again.
#[test]
fn an_epoch_whose_transactional_marker_the_broker_drops_is_still_committed_once() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let input = format!("weir-dropped-marker-in-{}", std::process::id());
    let output = format!("weir-dropped-marker-out-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &input, "3"]);
    python(&py, CREATE_TOPIC, &[&bootstrap, &output, "1"]);
    python(&py, PRODUCE, &[&bootstrap, &input, "0", "1000", "3"]);
    let mut open = Command::new(&py)
        .arg("-c")
        .arg(OPEN_TRANSACTION)
        .args([
            &bootstrap,
            &output,
            &format!("weir-dropped-marker-other-{}", std::process::id()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the producer holding a transaction open");
    let mut lines = BufReader::new(open.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    // Job A: every record in the epoch of its stop-with-savepoint, committed when
    // the savepoint completes; the savepoint holds that epoch as pending.
    let dir = tempfile::tempdir().unwrap();
    let source = KafkaSourceConfig::new(&bootstrap, &input, "weir-dropped-marker");
    let sink_a = KafkaSinkConfig::new(&bootstrap, &output);
    let received = Arc::clone(&sink_a.metrics);
    let savepoint = savepoint_after(
        "kafka-dropped-marker",
        1,
        dir.path(),
        build(source.clone(), sink_a, None),
        &received,
        1000,
    );
    assert_eq!(received.transactions_committed.load(Ordering::Relaxed), 1);

    // Job B resumes the savepoint: the pending epoch is committed already.
    python(&py, PRODUCE, &[&bootstrap, &input, "1000", "1500", "3"]);
    let sink_b = KafkaSinkConfig::new(&bootstrap, &output);
    let resumed = Arc::clone(&sink_b.metrics);
    let job = CheckpointedJob::spawn(
        job_config("kafka-dropped-marker", 1),
        local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Savepoint(savepoint)),
        build(source, sink_b, None),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_visible(&bootstrap, &output, 1, 1500);
    job.savepoint(true).unwrap();
    job.wait().unwrap();
    writeln!(open.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "aborted");
    open.wait().unwrap();

    let seen = visible(&bootstrap, &output, 1);
    assert_eq!(
        seen.len(),
        1500,
        "1500 counts expected: the resumed job produced its restored, committed epoch again"
    );
    assert_eq!(seen, expected(1500));
    assert_eq!(
        resumed.epochs_skipped.load(Ordering::Relaxed),
        1,
        "job A's committed epoch is recognised"
    );
}

/// A transactional producer that writes `zombie` records in an open transaction,
/// says `ready`, waits for a line on stdin, then tries to commit and prints the
/// outcome (`committed`, or `refused:` and the error: a conforming broker answers
/// with a fencing error, tansu drops the connection, so the commit times out).
const ZOMBIE: &str = r#"
import sys
from confluent_kafka import Producer, KafkaException
bootstrap, topic, txid = sys.argv[1], sys.argv[2], sys.argv[3]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
p.init_transactions(30)
p.begin_transaction()
for i in range(10):
    p.produce(topic, key=b"zombie", value=b'"zombie"', partition=0)
p.flush(30)
print("ready", flush=True)
sys.stdin.readline()
try:
    p.commit_transaction(5)
    print("committed", flush=True)
except KafkaException as e:
    print("refused:", e, flush=True)
"#;

#[test]
fn a_zombie_with_the_same_transactional_id_is_fenced_and_its_records_never_appear() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let (input, output) = topics(&bootstrap, &py, "weir-zombie", 500);
    let dir = tempfile::tempdir().unwrap();
    let mut sink = KafkaSinkConfig::new(&bootstrap, &output);
    let prefix = format!("weir-zombie-{}", std::process::id());
    sink.transactional_id_prefix = Some(prefix.clone());
    let mut zombie = Command::new(&py)
        .arg("-c")
        .arg(ZOMBIE)
        .args([&bootstrap, &output, &format!("{prefix}-0")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the zombie producer");
    let mut lines = BufReader::new(zombie.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let job = CheckpointedJob::spawn(
        job_config("kafka-zombie", 1),
        local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Nothing),
        build(
            KafkaSourceConfig::new(&bootstrap, &input, "weir-zombie"),
            sink,
            None,
        ),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_visible(&bootstrap, &output, 3, 500);
    // The job's subtask 0 initialised the same transactional id: the zombie's
    // commit must fail.
    writeln!(zombie.stdin.as_mut().unwrap()).unwrap();
    let outcome = lines.next().unwrap().unwrap();
    zombie.wait().unwrap();
    println!("the zombie's commit: {outcome}");
    assert!(
        outcome.starts_with("refused"),
        "the zombie's commit: {outcome}"
    );
    job.savepoint(true).unwrap();
    job.wait().unwrap();
    let view = committed_view(&bootstrap, &output).unwrap();
    assert!(
        view.records()
            .all(|r| r.key.as_deref() != Some(b"zombie".as_slice())),
        "a zombie record is visible"
    );
    assert_eq!(view.aborted(), 10, "the zombie's records were aborted");
    assert_eq!(visible(&bootstrap, &output, 3), expected(500));
    if strict_broker() {
        // A conforming broker hides the aborted records from an ordinary consumer too.
        let consumed = python(&py, READ_COMMITTED_CONSUMER, &[&bootstrap, &output, "3"]);
        assert_eq!(consumed.lines().count(), 500, "{consumed}");
        assert!(!consumed.contains("zombie"), "{consumed}");
    }
}

#[test]
fn at_least_once_loses_nothing_across_a_failure_and_none_delivers_a_clean_run() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    for guarantee in [DeliveryGuarantee::AtLeastOnce, DeliveryGuarantee::None] {
        let name = format!("weir-{guarantee:?}").to_lowercase();
        let (input, output) = topics(&bootstrap, &py, &name, 2000);
        let dir = tempfile::tempdir().unwrap();
        let mut sink = KafkaSinkConfig::new(&bootstrap, &output);
        sink.guarantee = guarantee;
        let failed = Arc::new(AtomicBool::new(false));
        let fail_at = (guarantee == DeliveryGuarantee::AtLeastOnce).then_some((1_000, failed));
        let job = CheckpointedJob::spawn(
            job_config(&name, 2),
            local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Nothing),
            build(
                KafkaSourceConfig::new(&bootstrap, &input, &name),
                sink,
                fail_at,
            ),
            Arc::new(NoListener),
        )
        .unwrap();
        wait_for_visible(&bootstrap, &output, 3, 2000);
        job.savepoint(true).unwrap();
        job.wait().unwrap();
        let mut seen = visible(&bootstrap, &output, 3);
        seen.dedup();
        assert_eq!(
            seen,
            expected(2000),
            "{guarantee:?}: every record, perhaps twice"
        );
    }
}

#[test]
fn bad_sink_settings_are_clear_errors() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let (input, output) = topics(&bootstrap, &py, "weir-bad", 10);
    let run = |sink: KafkaSinkConfig, checkpointed: bool| -> String {
        let build = build(
            KafkaSourceConfig::new(&bootstrap, &input, "weir-bad"),
            sink,
            None,
        );
        if checkpointed {
            let dir = tempfile::tempdir().unwrap();
            let mut config = local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Nothing);
            config.restart = RestartStrategy::None;
            CheckpointedJob::spawn(
                job_config("kafka-bad", 1),
                config,
                build,
                Arc::new(NoListener),
            )
            .and_then(|job| job.wait())
            .map(|_| ())
            .unwrap_err()
            .to_string()
        } else {
            let job = JobBuilder::new(job_config("kafka-bad", 1));
            build(&job);
            job.execute().map(|_| ()).unwrap_err().to_string()
        }
    };
    let err = run(KafkaSinkConfig::new(&bootstrap, "no-such-output"), true);
    println!("{err}");
    assert!(
        err.contains("no-such-output") && err.contains("does not exist"),
        "{err}"
    );

    let mut unreachable = KafkaSinkConfig::new("127.0.0.1:1", &output);
    unreachable.guarantee = DeliveryGuarantee::AtLeastOnce;
    unreachable.connect_timeout = Duration::from_secs(2);
    let err = run(unreachable, true);
    println!("{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("could not reach"),
        "{err}"
    );

    let err = run(KafkaSinkConfig::new(&bootstrap, &output), false);
    println!("{err}");
    assert!(err.contains("enable checkpointing"), "{err}");

    let mut short = KafkaSinkConfig::new(&bootstrap, &output);
    short.transaction_timeout = Duration::from_secs(5);
    let err = run(short, true);
    println!("{err}");
    assert!(
        err.contains("transaction timeout 5000 ms") && err.contains("checkpoint timeout"),
        "{err}"
    );
}

/// A broker of this test's own (tansu from `WEIR_TEST_TANSU`, memory storage) on a
/// free port, stopped when dropped.
struct OwnBroker {
    child: std::process::Child,
    bootstrap: String,
}

impl OwnBroker {
    fn start(tansu: &str, py: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Self {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        python(py, AWAIT_BROKER, &[&broker.bootstrap]);
        broker
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_broker_down_for_30_seconds_mid_run_loses_and_repeats_nothing() {
    let Some((_, py)) = broker() else {
        return;
    };
    let Ok(tansu) = std::env::var("WEIR_TEST_TANSU") else {
        assert!(
            std::env::var_os("WEIR_REQUIRE_SERVICES").is_none(),
            "WEIR_TEST_TANSU must be set (tests/services.sh start)"
        );
        println!("skipped: WEIR_TEST_TANSU is not set");
        return;
    };
    let own = OwnBroker::start(&tansu, &py);
    let bootstrap = own.bootstrap.clone();
    let (input, output) = topics(&bootstrap, &py, "weir-down", 2000);
    let dir = tempfile::tempdir().unwrap();
    let job = CheckpointedJob::spawn(
        job_config("kafka-down", 2),
        local_checkpointing(dir.path(), INTERVAL, ResumeFrom::Nothing),
        build(
            KafkaSourceConfig::new(&bootstrap, &input, "weir-down"),
            KafkaSinkConfig::new(&bootstrap, &output),
            None,
        ),
        Arc::new(NoListener),
    )
    .unwrap();
    wait_for_visible(&bootstrap, &output, 3, 2000);
    // The broker stops answering (its connections stay open, as with a network
    // partition or a long GC pause) while checkpoints keep being triggered.
    own.signal("-STOP");
    std::thread::sleep(Duration::from_secs(30));
    own.signal("-CONT");
    python(&py, PRODUCE, &[&bootstrap, &input, "2000", "4000", "3"]);
    wait_for_visible(&bootstrap, &output, 3, 4000);
    job.savepoint(true).unwrap();
    let summary = job.wait().unwrap();
    println!(
        "restarts {} failed checkpoints {}",
        summary.restarts, summary.failed_checkpoints
    );
    assert_eq!(visible(&bootstrap, &output, 3), expected(4000));
}

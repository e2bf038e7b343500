//! End-to-end crash and recovery of a real process: `weir testing running-count` is
//! killed with SIGKILL at pseudo-random moments, crashed at every checkpoint protocol
//! step by a failpoint, and resumed from checkpoints whose newest `_metadata` was
//! corrupted. After each recovery the output committed by the exactly-once file sink
//! must be exactly the failure-free output: every `(key, count)` once, none missing.
//!
//! The job counts the numbers `1..=N` per key `n % K`; whatever the crashes, its
//! failure-free output is `{(k, c) : c in 1..=count_k}` (see `expected`).
//!
//! The same kills and failpoints run against both exactly-once file sinks: the
//! in-memory-epoch `EpochFileSink` (`--output DIR`) and the object-store
//! `ObjectFileSink` (`--output-url URL`, staged parts moved to their final names), the
//! latter on the local filesystem and on S3 — and against the exactly-once Kafka sink
//! (`--output-topic`), with the numbers read from a Kafka topic (`--input-topic`):
//! Kafka → running count → Kafka on the test broker, its output checked on the
//! read_committed view computed from the topic's raw log (`common::kafka_log`), plus
//! crashes at each step of the sink's commit (`WEIR_KAFKA_SINK_FAILPOINT`).
//!
//! S3: when `WEIR_TEST_S3_ENDPOINT` is set (`tests/services.sh start`), the kill test
//! also runs with `s3://` checkpoints on that server, and the object-store sink runs
//! with its output there too; the binary reaches it through the standard
//! `AWS_ENDPOINT_URL` / `AWS_ALLOW_HTTP` environment.
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::kafka_log::committed_view;
use common::kafka_services::{broker, python, CREATE_TOPIC};
use common::s3;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use weir::sinks::FileSinkConfig;

const KEYS: u64 = 17;
const PARALLELISM: u64 = 2;
const JOB: &str = "running-count";

type Record = (u64, u64);

/// Which exactly-once sink the job writes with, and where.
enum JobOutput {
    /// `EpochFileSink` into a local directory (`--output DIR`).
    EpochFiles(PathBuf),
    /// `ObjectFileSink` (`--output-url URL`); the config reads the output back.
    ObjectFiles(FileSinkConfig),
    /// `KafkaSink` (`--output-topic`): JSON `[key, count]` records; in each partition
    /// the output starts at offset `from[partition]` (0 if absent): what comes before
    /// is an earlier run's.
    Kafka {
        bootstrap: String,
        topic: String,
        from: BTreeMap<i32, i64>,
    },
}

/// Writes the numbers `1..=n` as text, number `i` to partition `i % partitions`.
const PRODUCE_NUMBERS: &str = r#"
import sys
from confluent_kafka import Producer
bootstrap, topic, n, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
for i in range(1, n + 1):
    while True:
        try:
            producer.produce(topic, value=str(i).encode(), partition=i % partitions)
            break
        except BufferError:
            producer.poll(0.1)
assert producer.flush(60) == 0, "records not delivered"
"#;

/// Part size of the object-store sink in these tests: small, so epochs roll into
/// several parts and crashes land between rolls too.
const ROLL_BYTES: u64 = 2_048;

/// One configuration of the running-count job; every run of it shares the
/// checkpoint storage and the output directory.
struct Job {
    events: u64,
    parallelism: u64,
    /// Extra arguments of every run.
    args: Vec<String>,
    interval_ms: u64,
    throttle_us: u64,
    /// A directory or an `s3://bucket/prefix` URL.
    checkpoints: String,
    output: JobOutput,
    /// Count duplicates and drop them before comparing (the Kafka jobs on tansu; see
    /// `Job::kafka`).
    duplicates_allowed: bool,
    /// stdout/stderr of the runs that get killed.
    logs: PathBuf,
    env: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

impl Job {
    /// A job with local checkpoints in a fresh temporary directory.
    fn local(events: u64, interval_ms: u64, throttle_us: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoints = dir.path().join("checkpoints").display().to_string();
        Self::in_dir(dir, checkpoints, events, interval_ms, throttle_us)
    }

    fn in_dir(
        dir: tempfile::TempDir,
        checkpoints: String,
        events: u64,
        interval_ms: u64,
        throttle_us: u64,
    ) -> Self {
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        Self {
            events,
            parallelism: PARALLELISM,
            args: Vec::new(),
            interval_ms,
            throttle_us,
            checkpoints,
            output: JobOutput::EpochFiles(dir.path().join("output")),
            duplicates_allowed: false,
            logs,
            env: Vec::new(),
            _dir: dir,
        }
    }

    /// The same job keeping its counts in RocksDB (in its temporary directory).
    fn with_rocksdb(mut self) -> Self {
        let state = self._dir.path().join("state").display().to_string();
        self.args.extend([
            "--state-backend".into(),
            "rocksdb".into(),
            "--state-dir".into(),
            state,
        ]);
        self
    }

    /// The same job writing with the object-store sink to `config`'s URL.
    fn with_object_output(mut self, config: FileSinkConfig) -> Self {
        self.output = JobOutput::ObjectFiles(config);
        self
    }

    /// A job with local checkpoints and the object-store sink writing to a local
    /// directory, both in a fresh temporary directory.
    fn local_objects(events: u64, interval_ms: u64, throttle_us: u64) -> Self {
        let job = Self::local(events, interval_ms, throttle_us);
        let url = job._dir.path().join("objects").display().to_string();
        job.with_object_output(FileSinkConfig::new(url))
    }

    /// A job with checkpoints and object-store output in a fresh bucket of the test S3
    /// server; `None` when no server is configured (see `s3::endpoint`).
    fn s3_objects(events: u64, interval_ms: u64, throttle_us: u64) -> Option<Self> {
        let endpoint = s3::endpoint()?;
        let bucket = s3::fresh_bucket(&endpoint, "weir-crash");
        let mut job = Self::in_dir(
            tempfile::tempdir().expect("temp dir"),
            format!("s3://{bucket}/checkpoints"),
            events,
            interval_ms,
            throttle_us,
        );
        let mut output = FileSinkConfig::new(format!("s3://{bucket}/output"));
        output.storage.s3 = s3::options(&endpoint);
        job.env = s3::env(&endpoint);
        Some(job.with_object_output(output))
    }

    /// A Kafka → running count → Kafka job on the test broker: `events` numbers in a
    /// fresh 3-partition input topic, a fresh 3-partition output topic; local
    /// checkpoints. `None` (skipped) without a broker.
    ///
    /// On tansu (unless `WEIR_STRICT_KAFKA=1` says the broker conforms) duplicates are
    /// counted and tolerated: tansu acknowledges a transaction's commit before it
    /// applies the transaction's offset commit (the sink's marker), and a producer
    /// killed in between loses that offset commit although the records are committed,
    /// so the restore produces the epoch again. Loss and strangers still fail.
    fn kafka(events: u64, interval_ms: u64, throttle_us: u64) -> Option<Self> {
        static TOPICS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let (bootstrap, py) = broker()?;
        let n = TOPICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("weir-crash-{}-{n}", std::process::id());
        let (input, output) = (format!("{name}-in"), format!("{name}-out"));
        python(&py, CREATE_TOPIC, &[&bootstrap, &input, "3"]);
        python(&py, CREATE_TOPIC, &[&bootstrap, &output, "3"]);
        python(
            &py,
            PRODUCE_NUMBERS,
            &[&bootstrap, &input, &events.to_string(), "3"],
        );
        let mut job = Self::local(events, interval_ms, throttle_us);
        job.args = ["--kafka-bootstrap", &bootstrap, "--input-topic", &input]
            .map(String::from)
            .to_vec();
        job.output = JobOutput::Kafka {
            bootstrap,
            topic: output,
            from: BTreeMap::new(),
        };
        job.duplicates_allowed = !common::kafka_services::strict_broker();
        Some(job)
    }

    /// The output directory of the `EpochFileSink`.
    fn epoch_dir(&self) -> &Path {
        match &self.output {
            JobOutput::EpochFiles(dir) => dir,
            _ => panic!("this job does not write with the EpochFileSink"),
        }
    }

    /// The local checkpoint directory of the job (`<checkpoints>/running-count`).
    fn job_dir(&self) -> PathBuf {
        Path::new(&self.checkpoints).join(JOB)
    }

    fn command(&self, resume: bool, failpoint: Option<&str>) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["testing", "running-count"])
            .args(["--events", &self.events.to_string()])
            .args(["--keys", &KEYS.to_string()])
            .args(["--parallelism", &self.parallelism.to_string()])
            .args(&self.args)
            .args(["--checkpoint-dir", &self.checkpoints])
            .args(["--interval-ms", &self.interval_ms.to_string()])
            .args(["--throttle-us", &self.throttle_us.to_string()])
            .env("RUST_LOG", "warn")
            .env_remove("WEIR_FAILPOINT")
            .env_remove("WEIR_KAFKA_SINK_FAILPOINT")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null());
        match &self.output {
            JobOutput::EpochFiles(dir) => {
                command.arg("--output").arg(dir);
            }
            JobOutput::ObjectFiles(config) => {
                command
                    .args(["--output-url", &config.storage.url])
                    .args(["--roll-bytes", &ROLL_BYTES.to_string()]);
            }
            JobOutput::Kafka { topic, .. } => {
                command.args(["--output-topic", topic]);
            }
        }
        if resume {
            command.arg("--resume");
        }
        // `kafka-sink:<step>:<n>` crashes inside a Kafka sink commit.
        match failpoint.map(|f| (f, f.strip_prefix("kafka-sink:"))) {
            Some((_, Some(sink_step))) => {
                command.env("WEIR_KAFKA_SINK_FAILPOINT", sink_step);
            }
            Some((step, None)) => {
                command.env("WEIR_FAILPOINT", step);
            }
            None => {}
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Runs to the end (no kill) and returns what it printed.
    fn run(&self, resume: bool, failpoint: Option<&str>) -> Run {
        let output = self
            .command(resume, failpoint)
            .output()
            .expect("start the weir binary");
        Run::from(output)
    }

    /// Starts a run whose output goes to `<logs>/<name>.out|err`.
    fn spawn(&self, resume: bool, name: &str) -> Child {
        let file = |ext: &str| {
            std::fs::File::create(self.logs.join(format!("{name}.{ext}"))).expect("log file")
        };
        self.command(resume, None)
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .expect("start the weir binary")
    }

    fn log(&self, name: &str, ext: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{name}.{ext}"))).unwrap_or_default()
    }

    /// Everything the sink has committed so far, sorted.
    fn committed(&self) -> Vec<Record> {
        let read = match &self.output {
            JobOutput::EpochFiles(dir) => weir::sinks::read_committed::<Record>(dir),
            JobOutput::ObjectFiles(config) => weir::sinks::read_committed_objects::<Record>(config),
            JobOutput::Kafka {
                bootstrap,
                topic,
                from,
            } => {
                let view = committed_view(bootstrap, topic)
                    .unwrap_or_else(|e| panic!("reading the output topic: {e}"));
                Ok(view
                    .records()
                    .filter(|r| r.offset >= from.get(&r.partition).copied().unwrap_or(0))
                    .map(|r| {
                        serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                            .unwrap_or_else(|e| panic!("output record {r:?}: {e}"))
                    })
                    .collect())
            }
        };
        let mut records = match read {
            Ok(records) => records,
            // Killed before the sink created its directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("reading the committed output: {e}"),
        };
        records.sort_unstable();
        if self.duplicates_allowed {
            let all = records.len();
            records.dedup();
            if records.len() < all {
                println!(
                    "broker gap: {} duplicated records tolerated",
                    all - records.len()
                );
            }
        }
        records
    }

    /// The exact failure-free output of this job.
    fn expected(&self) -> Vec<Record> {
        expected(self.events, KEYS)
    }
}

/// What a run to the end printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the job finished and returns the checkpoint it restored from.
    fn finished(&self) -> Option<u64> {
        assert!(
            self.status.success() && self.stdout.contains("status Finished"),
            "the run did not finish ({}):\nstdout:\n{}\nstderr (tail):\n{}",
            self.status,
            self.stdout,
            tail(&self.stderr, 30)
        );
        restored_from(&self.stdout)
    }
}

/// `restored from Some(n)` → `Some(n)`; `restored from None` → `None`.
fn restored_from(stdout: &str) -> Option<u64> {
    let rest = stdout
        .split("restored from ")
        .nth(1)
        .unwrap_or_else(|| panic!("no `restored from` in the summary: {stdout}"));
    let rest = rest.strip_prefix("Some(")?;
    let end = rest.find(')').expect("`Some(n)`");
    Some(rest[..end].parse().expect("a checkpoint id"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The failure-free output for `events` numbers and `keys` keys, sorted: for each key
/// `k`, the counts `1..=|{n in 1..=events : n % keys == k}|`.
fn expected(events: u64, keys: u64) -> Vec<Record> {
    let mut per_key = vec![0u64; keys as usize];
    for n in 1..=events {
        per_key[(n % keys) as usize] += 1;
    }
    let mut records: Vec<Record> = per_key
        .iter()
        .enumerate()
        .flat_map(|(k, &count)| (1..=count).map(move |c| (k as u64, c)))
        .collect();
    records.sort_unstable();
    records
}

/// The multiset difference of two sorted record lists.
struct Diff {
    /// In `expected` but not in `actual` (as often as it is missing).
    missing: Vec<Record>,
    /// In `actual` but not in `expected` (duplicates and strangers).
    extra: Vec<Record>,
}

impl Diff {
    fn of(actual: &[Record], expected: &[Record]) -> Self {
        let (mut missing, mut extra) = (Vec::new(), Vec::new());
        let (mut a, mut e) = (0, 0);
        while a < actual.len() || e < expected.len() {
            match (actual.get(a), expected.get(e)) {
                (Some(x), Some(y)) if x == y => {
                    a += 1;
                    e += 1;
                }
                (Some(x), Some(y)) if x < y => {
                    extra.push(*x);
                    a += 1;
                }
                (Some(x), None) => {
                    extra.push(*x);
                    a += 1;
                }
                (_, Some(y)) => {
                    missing.push(*y);
                    e += 1;
                }
                (None, None) => unreachable!(),
            }
        }
        Self { missing, extra }
    }

    /// Counts and the first few differences, never the whole lists.
    fn describe(&self, actual: usize, expected: usize) -> String {
        let first = |records: &[Record]| records.iter().take(5).copied().collect::<Vec<_>>();
        format!(
            "{actual} records committed, {expected} expected: {} missing (first {:?}), {} extra or duplicated (first {:?})",
            self.missing.len(),
            first(&self.missing),
            self.extra.len(),
            first(&self.extra)
        )
    }
}

/// Asserts `actual` is exactly `expected` as multisets (both sorted).
fn assert_exact(actual: &[Record], expected: &[Record], what: &str) {
    let diff = Diff::of(actual, expected);
    assert!(
        diff.missing.is_empty() && diff.extra.is_empty(),
        "{what}: {}",
        diff.describe(actual.len(), expected.len())
    );
}

/// What a crashed run may have committed: a part of the exact output, each record at
/// most once, and everything committed before (`previous`) still there.
fn assert_consistent_after_crash(
    committed: &[Record],
    previous: &[Record],
    expected: &[Record],
    when: &str,
) {
    let diff = Diff::of(committed, expected);
    assert!(
        diff.extra.is_empty(),
        "{when}: the committed output has records that are duplicated or not in the failure-free output: {}",
        diff.describe(committed.len(), expected.len())
    );
    let lost = Diff::of(committed, previous).missing;
    assert!(
        lost.is_empty(),
        "{when}: {} records committed earlier disappeared (first {:?})",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
}

/// A tiny seeded pseudo-random generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    /// Seeded from `WEIR_CRASH_SEED` when set (to replay a failure), else the clock.
    fn from_env_or_clock() -> Self {
        let seed = std::env::var("WEIR_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            .max(1);
        println!("seed {seed} (replay with WEIR_CRASH_SEED={seed})");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// When the kills come: `count` runs, each killed a pseudo-random `after_ms` after
/// its start.
#[derive(Clone, Copy)]
struct Kills {
    count: u64,
    after_ms: (u64, u64),
}

impl Kills {
    /// The throttle that makes an unkilled run last longer than all the killed runs
    /// together: each subtask sleeps `throttle` after every 100 of its
    /// `events / PARALLELISM` numbers, so no machine finishes the job in less than
    /// `events / PARALLELISM / 100 * throttle`, while the killed runs make at most
    /// `count * after_ms.1` of progress. The job therefore cannot finish before the
    /// last kill, however fast or loaded the machine is.
    fn throttle_us(self, events: u64) -> u64 {
        let sleeps_per_subtask = events / PARALLELISM / 100;
        let budget_us = (self.count * self.after_ms.1 + 1_000) * 1_000;
        budget_us.div_ceil(sleeps_per_subtask)
    }
}

/// Starts the job and SIGKILLs it at a pseudo-random moment, `kills.count` times (the
/// first run fresh, the others with `--resume`), checking after each kill that the
/// committed output is a duplicate-free part of the exact output that only grows;
/// then resumes it to the end and asserts the output is exact.
fn kill_at_random_moments_then_recover(job: &Job, kills: Kills) {
    let mut rng = XorShift::from_env_or_clock();
    let expected = job.expected();
    let mut previous: Vec<Record> = Vec::new();
    for kill in 1..=kills.count {
        let name = format!("run-{kill}");
        let mut child = job.spawn(kill > 1, &name);
        let delay = rng.between(kills.after_ms.0, kills.after_ms.1);
        std::thread::sleep(Duration::from_millis(delay));
        // An exited child is still a zombie until waited for, so the kill is harmless
        // then, and the exit status tells the two cases apart.
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait for the killed run");
        assert_eq!(
            status.signal(),
            Some(9),
            "run {kill} ended by itself ({status}) before its SIGKILL after {delay} ms; stdout:\n{}\nstderr (tail):\n{}",
            job.log(&name, "out"),
            tail(&job.log(&name, "err"), 30)
        );
        let committed = job.committed();
        assert_consistent_after_crash(
            &committed,
            &previous,
            &expected,
            &format!("after kill {kill} (at {delay} ms)"),
        );
        println!(
            "kill {kill:>2} after {delay:>3} ms: {} of {} records committed",
            committed.len(),
            expected.len()
        );
        previous = committed;
    }
    assert!(
        previous.len() < expected.len(),
        "the job completed its output before the last kill"
    );
    let run = job.run(true, None);
    let restored = run.finished();
    println!("final run: {}", run.stdout.trim());
    // The sink commits only the epochs of complete checkpoints: if anything was
    // committed, there is a checkpoint to resume from.
    if previous.is_empty() {
        println!("no checkpoint was complete before the last kill: the final run starts afresh");
    } else {
        assert!(
            restored.is_some(),
            "{} records were committed, so a checkpoint was complete, but the final run started afresh: {}",
            previous.len(),
            run.stdout
        );
    }
    assert_exact(
        &job.committed(),
        &expected,
        &format!("after {} SIGKILLs and a resumed run", kills.count),
    );
}

#[test]
fn sigkill_at_random_moments_loses_and_repeats_nothing() {
    let events = 200_000;
    let kills = Kills {
        count: 20,
        after_ms: (100, 700),
    };
    let job = Job::local(events, 30, kills.throttle_us(events));
    kill_at_random_moments_then_recover(&job, kills);
}

/// SIGKILL leaves RocksDB's state directory with the lock file of a dead process: the
/// next run takes it over, starts from the checkpoint, and the output is exact.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_sigkill_at_random_moments_loses_and_repeats_nothing() {
    let events = 100_000;
    let kills = Kills {
        count: 20,
        after_ms: (100, 700),
    };
    let job = Job::local(events, 30, kills.throttle_us(events)).with_rocksdb();
    kill_at_random_moments_then_recover(&job, kills);
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_failpoints_then_recovery_is_exact() {
    let (events, interval_ms, throttle_us) = FAILPOINT_JOB;
    every_failpoint_then_recovery_is_exact(|| {
        Some(Job::local(events, interval_ms, throttle_us).with_rocksdb())
    });
}

/// About 1 s of work at 30 ms checkpoint intervals: dozens of checkpoints, so a
/// failpoint is reached with the job in full flow.
const FAILPOINT_JOB: (u64, u64, u64) = (100_000, 30, 2_000);

/// Crashes the job the `nth` time it reaches `step` (a fresh run), then resumes it to
/// the end and asserts the exact output; returns the checkpoint it resumed from.
fn crash_at_failpoint_then_recover(step: &str, nth: u64, debug_name: &str) -> Option<u64> {
    let (events, interval_ms, throttle_us) = FAILPOINT_JOB;
    crash_job_at_failpoint_then_recover(
        &Job::local(events, interval_ms, throttle_us),
        step,
        nth,
        debug_name,
    )
}

/// [`crash_at_failpoint_then_recover`] for a given (fresh) job.
fn crash_job_at_failpoint_then_recover(
    job: &Job,
    step: &str,
    nth: u64,
    debug_name: &str,
) -> Option<u64> {
    let expected = job.expected();
    let crashed = job.run(false, Some(&format!("{step}:{nth}")));
    assert!(
        !crashed.status.success(),
        "WEIR_FAILPOINT={step}:{nth} did not crash the run: {}",
        crashed.stdout
    );
    assert!(
        crashed
            .stderr
            .contains(&format!("failpoint {debug_name} reached")),
        "the run with WEIR_FAILPOINT={step}:{nth} failed ({}), but not at the failpoint:\n{}",
        crashed.status,
        tail(&crashed.stderr, 30)
    );
    assert_eq!(
        crashed.status.signal(),
        Some(6),
        "a failpoint aborts the process"
    );
    assert_consistent_after_crash(
        &job.committed(),
        &[],
        &expected,
        &format!("after the crash at {step}:{nth}"),
    );
    let run = job.run(true, None);
    let restored = run.finished();
    println!("{step}:{nth}: {}", run.stdout.trim());
    assert_exact(
        &job.committed(),
        &expected,
        &format!("after a crash at {step}:{nth} and a resumed run"),
    );
    restored
}

#[test]
fn failpoint_after_barrier_then_recovery_is_exact() {
    // Checkpoints run one at a time, so when the 3rd barrier goes out the first two
    // are complete: recovery starts from checkpoint 2.
    assert_eq!(
        crash_at_failpoint_then_recover("after-barrier", 3, "AfterBarrierInjection"),
        Some(2)
    );
}

#[test]
fn failpoint_mid_upload_then_recovery_is_exact() {
    // A checkpoint uploads one state object per stateful operator subtask (source
    // positions, counts, pending sink epochs: about six), so the 15th upload is in the
    // middle of a later checkpoint, after at least one is complete.
    let restored = crash_at_failpoint_then_recover("mid-upload", 15, "MidUpload");
    assert!(
        restored.is_some_and(|id| id >= 1),
        "the crash in the middle of an upload should leave a complete checkpoint to resume from, got {restored:?}"
    );
}

#[test]
fn failpoint_before_metadata_then_recovery_is_exact() {
    // Every subtask acknowledged checkpoint 3, its metadata was never written: it is
    // not complete, recovery starts from checkpoint 2.
    assert_eq!(
        crash_at_failpoint_then_recover("before-metadata", 3, "BeforeMetadata"),
        Some(2)
    );
}

#[test]
fn failpoint_after_metadata_then_recovery_is_exact() {
    // Checkpoint 3's metadata is written, so it is complete although no sink was told:
    // recovery starts from it and commits its pending epochs.
    assert_eq!(
        crash_at_failpoint_then_recover("after-metadata", 3, "AfterMetadataBeforeNotify"),
        Some(3)
    );
}

/// The newest checkpoint of the local job directory whose `_metadata` exists.
fn newest_complete_checkpoint(job_dir: &Path) -> Option<u64> {
    std::fs::read_dir(job_dir)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let id: u64 = entry
                .file_name()
                .to_str()?
                .strip_prefix("chk-")?
                .parse()
                .ok()?;
            entry.path().join("_metadata").exists().then_some(id)
        })
        .max()
}

/// The committed part files of the sink: (epoch, path).
fn committed_files(output: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(output) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            // part-<subtask>-<epoch>-<timeline>.jsonl
            let epoch = name
                .strip_prefix("part-")?
                .strip_suffix(".jsonl")?
                .split('-')
                .nth(1)?
                .parse()
                .ok()?;
            Some((epoch, path))
        })
        .collect();
    files.sort();
    files
}

fn read_records(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a committed (key, count) line"))
        .collect()
}

enum Corruption {
    /// Cut the file to half its length.
    Truncate,
    /// Flip one bit in the middle of the file.
    FlipBit,
}

/// Runs the job until at least three checkpoints are complete and the sink committed
/// the newest one's epoch, SIGKILLs it, corrupts the newest `_metadata`, and resumes:
/// the resume is refused, naming the object, and commits nothing; with
/// `--fallback-past-corrupt` the run falls back to an older checkpoint, says which
/// object it passed over, and commits exactly the expected output plus the replayed
/// epochs.
fn corrupt_newest_metadata_then_recover(corruption: Corruption) {
    let mut job = Job::local(100_000, 30, 2_000);
    let mut child = job.spawn(false, "first");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let newest = newest_complete_checkpoint(&job.job_dir());
        let committed_newest = newest.is_some_and(|n| {
            committed_files(job.epoch_dir())
                .iter()
                .any(|(epoch, _)| *epoch == n)
        });
        if newest.is_some_and(|n| n >= 3) && committed_newest {
            break;
        }
        if let Some(status) = child.try_wait().expect("poll the run") {
            panic!(
                "the run ended ({status}) before three checkpoints were complete; stderr:\n{}",
                tail(&job.log("first", "err"), 30)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no third complete checkpoint within 2 minutes; stderr:\n{}",
            tail(&job.log("first", "err"), 30)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait for the killed run");

    let newest = newest_complete_checkpoint(&job.job_dir()).expect("a complete checkpoint");
    let before = committed_files(job.epoch_dir());
    let metadata = job
        .job_dir()
        .join(format!("chk-{newest}"))
        .join("_metadata");
    let mut bytes = std::fs::read(&metadata).expect("read _metadata");
    match corruption {
        Corruption::Truncate => bytes.truncate(bytes.len() / 2),
        Corruption::FlipBit => {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
        }
    }
    std::fs::write(&metadata, &bytes).expect("corrupt _metadata");
    println!(
        "corrupted {} (epoch {newest} committed before the kill: {})",
        metadata.display(),
        before.iter().any(|(epoch, _)| *epoch == newest)
    );

    // (Before the run: retention may delete the corrupted checkpoint once newer ones exist.)
    let canonical = metadata.canonicalize().expect("the corrupted _metadata");
    let named = |stderr: &str, path: &Path| stderr.contains(&path.display().to_string());
    // By default the resume is refused, naming the checkpoint, and writes nothing:
    // epoch `newest` is committed, and replaying from an older checkpoint repeats it.
    let refused = job.run(true, None);
    assert!(
        !refused.status.success()
            && (named(&refused.stderr, &metadata) || named(&refused.stderr, &canonical))
            && refused.stderr.contains("--fallback-past-corrupt"),
        "the resume past the corrupt checkpoint {newest} was not refused ({}):\n{}",
        refused.status,
        tail(&refused.stderr, 30)
    );
    assert_eq!(
        committed_files(job.epoch_dir()),
        before,
        "the refused resume committed output"
    );
    // Asked for, it falls back to the previous checkpoint.
    job.args.push("--fallback-past-corrupt".to_string());
    let run = job.run(true, None);
    let restored = run
        .finished()
        .expect("an older complete checkpoint to resume from");
    println!("resumed: {}", run.stdout.trim());
    assert!(
        restored < newest,
        "resumed from checkpoint {restored}, but checkpoint {newest} is corrupt"
    );
    // The warning names the object by its full path (tracing to stderr, `warn` level).
    assert!(
        run.stderr.contains("passing over checkpoint")
            && (named(&run.stderr, &metadata) || named(&run.stderr, &canonical)),
        "no warning naming the skipped object {}:\n{}",
        metadata.display(),
        tail(&run.stderr, 30)
    );

    // The sink committed epochs up to `newest` before the kill; resuming from the older
    // checkpoint `restored` replays the input after it, so the records of the committed
    // epochs `restored + 1 ..= newest` are emitted and committed a second time (the new
    // run's epochs get fresh ids above `newest`). That is the price of losing a
    // completed checkpoint, not an engine bug: nothing may be lost, and nothing but
    // exactly those records may repeat.
    let mut replayed: Vec<Record> = before
        .iter()
        .filter(|(epoch, _)| *epoch > restored)
        .flat_map(|(_, path)| read_records(path))
        .collect();
    println!(
        "{} records of epochs {}..={newest} committed before the kill are replayed",
        replayed.len(),
        restored + 1
    );
    let expected = job.expected();
    let committed = job.committed();
    let lost = Diff::of(&committed, &expected).missing;
    assert!(
        lost.is_empty(),
        "records were lost: {}",
        Diff::of(&committed, &expected).describe(committed.len(), expected.len())
    );
    replayed.extend_from_slice(&expected);
    replayed.sort_unstable();
    assert_exact(
        &committed,
        &replayed,
        "the output after the fallback is not the expected output plus the replayed epochs",
    );
}

#[test]
fn corrupt_newest_metadata_is_refused_then_falls_back_when_asked() {
    corrupt_newest_metadata_then_recover(Corruption::Truncate);
}

#[test]
fn bit_flipped_newest_metadata_is_refused_then_falls_back_when_asked() {
    corrupt_newest_metadata_then_recover(Corruption::FlipBit);
}

#[test]
fn sigkill_with_s3_checkpoints_loses_and_repeats_nothing() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = s3::fresh_bucket(&endpoint, "weir-crash");
    // Fewer, later kills: a checkpoint on the S3 server takes longer to complete.
    let events = 100_000;
    let kills = Kills {
        count: 5,
        after_ms: (300, 1_500),
    };
    let mut job = Job::in_dir(
        tempfile::tempdir().expect("temp dir"),
        format!("s3://{bucket}/checkpoints"),
        events,
        50,
        kills.throttle_us(events),
    );
    job.env = s3::env(&endpoint);
    kill_at_random_moments_then_recover(&job, kills);
}

#[test]
fn object_sink_sigkill_at_random_moments_on_local_fs_loses_and_repeats_nothing() {
    let events = 200_000;
    let kills = Kills {
        count: 20,
        after_ms: (100, 700),
    };
    let job = Job::local_objects(events, 30, kills.throttle_us(events));
    kill_at_random_moments_then_recover(&job, kills);
}

#[test]
fn object_sink_sigkill_on_s3_loses_and_repeats_nothing() {
    // Output and checkpoints on the S3 server: a checkpoint there takes longer, so the
    // kills come later, over fewer events.
    let events = 100_000;
    let kills = Kills {
        count: 20,
        after_ms: (250, 900),
    };
    let Some(job) = Job::s3_objects(events, 50, kills.throttle_us(events)) else {
        return;
    };
    kill_at_random_moments_then_recover(&job, kills);
}

/// Every checkpoint failpoint, each on a fresh job from `make`, with the same
/// expectations as the `failpoint_*` tests of the `EpochFileSink`.
fn every_failpoint_then_recovery_is_exact(make: impl Fn() -> Option<Job>) {
    for (step, nth, debug_name) in [
        ("after-barrier", 3, "AfterBarrierInjection"),
        ("mid-upload", 15, "MidUpload"),
        ("before-metadata", 3, "BeforeMetadata"),
        ("after-metadata", 3, "AfterMetadataBeforeNotify"),
    ] {
        let Some(job) = make() else {
            return;
        };
        let restored = crash_job_at_failpoint_then_recover(&job, step, nth, debug_name);
        let expected = match step {
            "after-barrier" | "before-metadata" => Some(2),
            "after-metadata" => Some(3),
            _ => restored.filter(|id| *id >= 1),
        };
        assert!(
            restored.is_some() && restored == expected,
            "{step}:{nth}: resumed from {restored:?}"
        );
    }
}

#[test]
fn object_sink_failpoints_on_local_fs_then_recovery_is_exact() {
    let (events, interval_ms, throttle_us) = FAILPOINT_JOB;
    every_failpoint_then_recovery_is_exact(|| {
        Some(Job::local_objects(events, interval_ms, throttle_us))
    });
}

#[test]
fn object_sink_failpoints_on_s3_then_recovery_is_exact() {
    // Every checkpoint and every commit is a few requests to the S3 server on the task
    // thread: fewer events and a longer interval keep the eight runs short, with
    // enough checkpoints to reach every failpoint.
    every_failpoint_then_recovery_is_exact(|| Job::s3_objects(40_000, 50, 2_000));
}

/// Exactly-once with `WEIR_STRICT_KAFKA=1` (a conforming broker); on tansu nothing
/// may be lost or made up, and duplicates from its late offset commits are counted
/// (see `Job::kafka`).
#[test]
fn kafka_to_kafka_sigkill_at_random_moments_loses_and_repeats_nothing() {
    let events = 60_000;
    let kills = Kills {
        count: 20,
        after_ms: (300, 900),
    };
    let Some(job) = Job::kafka(events, 50, kills.throttle_us(events)) else {
        return;
    };
    kill_at_random_moments_then_recover(&job, kills);
}

#[test]
fn kafka_to_kafka_failpoints_then_recovery_is_exact() {
    // The checkpoint protocol's steps (after the barrier; checkpoint complete, sink not
    // told) and each step of the sink's commit: half the epoch in the open
    // transaction, records and marker in it but not committed, committed but still
    // pending in the sink.
    for (step, nth, debug_name) in [
        ("after-barrier", 3, "AfterBarrierInjection"),
        ("after-metadata", 3, "AfterMetadataBeforeNotify"),
        ("kafka-sink:mid-commit", 3, "MidCommit"),
        ("kafka-sink:before-commit", 3, "BeforeCommit"),
        ("kafka-sink:after-commit", 3, "AfterCommit"),
    ] {
        let Some(job) = Job::kafka(20_000, 50, 2_000) else {
            return;
        };
        let restored = crash_job_at_failpoint_then_recover(&job, step, nth, debug_name);
        assert!(restored.is_some(), "{step}:{nth}: resumed from nothing");
    }
}

/// Markers are per timeline: the markers an earlier run of the same job left on the
/// topic never make a later run skip its own epochs. A first run goes to the end with
/// checkpoint directory D1, leaving the marker of each of the sink's transactional
/// ids at one of its last checkpoints. A fresh run with directory D2 and the same
/// job, sink and topic (so the same transactional ids) starts its checkpoint ids at
/// 1 again, crashes before the commit of its first epoch, and is resumed: the epoch is
/// produced, not skipped for the first run's higher marker.
#[test]
fn kafka_markers_of_an_earlier_run_never_suppress_a_fresh_runs_epochs() {
    let Some(mut job) = Job::kafka(20_000, 50, 2_000) else {
        return;
    };
    let first = job.run(false, None);
    assert_eq!(first.finished(), None, "the first run starts afresh");
    assert_exact(&job.committed(), &job.expected(), "the first run");
    let JobOutput::Kafka {
        bootstrap,
        topic,
        from,
    } = &mut job.output
    else {
        unreachable!("a Kafka job");
    };
    let view = committed_view(bootstrap, topic)
        .unwrap_or_else(|e| panic!("reading the output topic: {e}"));
    *from = view
        .partitions
        .iter()
        .map(|p| (p.partition, p.offsets.end))
        .collect();
    job.checkpoints = job._dir.path().join("checkpoints-2").display().to_string();
    let restored =
        crash_job_at_failpoint_then_recover(&job, "kafka-sink:before-commit", 1, "BeforeCommit");
    assert!(restored.is_some(), "the second run resumed from nothing");
}

/// Runs `weir savepoint` against the running job; returns the savepoint's location.
fn request_savepoint(job: &Job, stop: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args([
            "savepoint",
            "--job",
            JOB,
            "--checkpoint-dir",
            &job.checkpoints,
        ])
        .args(["--timeout", "60s"])
        .stdin(Stdio::null());
    if stop {
        command.arg("--stop");
    }
    let run = Run::from(command.output().expect("start the weir binary"));
    assert!(
        run.status.success(),
        "weir savepoint failed ({}):\n{}",
        run.status,
        run.stderr
    );
    let location = run.stdout.trim().to_string();
    assert!(
        Path::new(&location).join("_metadata").is_file(),
        "no savepoint at `{location}`"
    );
    location
}

#[test]
fn savepoint_command_then_stop_and_resume_at_another_parallelism_is_exact() {
    let mut job = Job::local(100_000, 50, 5_000);
    let savepoints = job._dir.path().join("savepoints").display().to_string();
    job.args = vec!["--savepoint-dir".into(), savepoints];
    let mut child = job.spawn(false, "first");
    // Wait until the job runs (its first checkpoint is complete).
    let started = std::time::Instant::now();
    while newest_complete_checkpoint(&job.job_dir()).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint within 60 s:\n{}",
            tail(&job.log("first", "err"), 30)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let savepoint = request_savepoint(&job, false);
    let stopped = request_savepoint(&job, true);
    assert_ne!(savepoint, stopped);
    let status = child.wait().expect("wait for the job");
    let stdout = job.log("first", "out");
    assert!(
        status.success() && stdout.contains("status Suspended"),
        "the job did not stop with the savepoint ({status}):\n{stdout}\n{}",
        tail(&job.log("first", "err"), 30)
    );
    assert!(stdout.contains(&stopped), "{stdout}");
    // The savepoint and the checkpoints can be inspected.
    let weir = |args: &[&str]| {
        let run = Run::from(
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(args)
                .output()
                .expect("start the weir binary"),
        );
        assert!(run.status.success(), "weir {args:?}: {}", run.stderr);
        run.stdout
    };
    let described = weir(&["checkpoints", "inspect", &stopped]);
    assert!(
        described.starts_with("savepoint")
            && described.contains("operator `running-count`: parallelism 2"),
        "{described}"
    );
    let listed = weir(&["checkpoints", "list", &job.checkpoints]);
    assert!(listed.contains("job `running-count`"), "{listed}");
    // Two savepoints of the same job compare operator by operator.
    let same = weir(&["checkpoints", "diff", &stopped, &stopped]);
    assert!(
        same.starts_with("a: savepoint") && same.ends_with(" operators alike\n"),
        "{same}"
    );
    let compared = weir(&["checkpoints", "diff", &savepoint, &stopped]);
    assert!(
        compared.contains("b: savepoint") && !compared.contains("only in"),
        "{compared}"
    );
    // Resume from the stop savepoint at parallelism 3.
    job.parallelism = 3;
    job.args.extend(["--from-savepoint".to_string(), stopped]);
    job.run(false, None).finished();
    assert_exact(
        &job.committed(),
        &job.expected(),
        "stop-with-savepoint then resume",
    );
    // Nobody answers for a job that does not run: a clear error, no hang.
    let run = Run::from(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "savepoint",
                "--job",
                "no-such-job",
                "--checkpoint-dir",
                &job.checkpoints,
            ])
            .args(["--timeout", "1s"])
            .output()
            .expect("start the weir binary"),
    );
    assert!(!run.status.success());
    assert!(run.stderr.contains("no-such-job"), "{}", run.stderr);
}

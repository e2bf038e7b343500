//! The object-store file sink and the file source end to end, on the local filesystem
//! and on the S3-compatible test server (when `WEIR_TEST_S3_ENDPOINT` is set):
//! what the sink commits, the source reads back; a job reading files and writing
//! files across an injected failure commits exactly the failure-free output; bad input
//! and an unreachable bucket are errors naming the object.
//!
//! SIGKILLs and checkpoint failpoints with the object-store sink are in
//! `crash_recovery.rs`.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::{job_config, s3, RunningCount};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir::checkpoint::StorageConfig;
use weir::dataflow::checkpointing::{
    CheckpointedJob, CheckpointingConfig, JobStatus, NoListener, ResumeFrom,
};
use weir::dataflow::testing::{CollectSink, CollectionSource};
use weir::dataflow::{JobBuilder, WatermarkStrategy};
use weir::sinks::{
    committed_parts, read_committed_objects, FileFormat, FileSinkConfig, ObjectFileSink,
};
use weir::sources::{FileSource, FileSourceConfig};

/// Where a test's files live: a local temporary directory or a fresh S3 bucket.
struct Place {
    /// `<dir>` or `s3://<bucket>`.
    base: String,
    storage: StorageConfig,
    _dir: tempfile::TempDir,
}

impl Place {
    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            base: dir.path().display().to_string(),
            storage: StorageConfig::new(""),
            _dir: dir,
        }
    }

    /// `None` (skipped) without a test server.
    fn s3() -> Option<Self> {
        let endpoint = s3::endpoint()?;
        let bucket = s3::fresh_bucket(&endpoint, "weir-files");
        Some(Self {
            base: format!("s3://{bucket}"),
            storage: StorageConfig::new("").with_s3(s3::options(&endpoint)),
            _dir: tempfile::tempdir().unwrap(),
        })
    }

    /// Storage settings for `<base>/<path>`.
    fn at(&self, path: &str) -> StorageConfig {
        self.storage.with_url(format!("{}/{path}", self.base))
    }

    fn sink(&self, path: &str) -> FileSinkConfig {
        FileSinkConfig {
            storage: self.at(path),
            ..FileSinkConfig::new("")
        }
    }

    fn source(&self, path: &str) -> FileSourceConfig {
        FileSourceConfig {
            storage: self.at(path),
            ..FileSourceConfig::new("")
        }
    }

    fn checkpointing(&self, resume: ResumeFrom) -> CheckpointingConfig {
        common::checkpointing(
            self.at("checkpoints"),
            self.at("savepoints"),
            Duration::from_millis(50),
            resume,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    note: String,
}

fn orders(n: u64) -> Vec<Order> {
    (0..n)
        .map(|id| Order {
            id,
            customer: format!("customer-{}", id % 7),
            note: if id % 5 == 0 {
                "with a comma, and \"quotes\"".into()
            } else {
                String::new()
            },
        })
        .collect()
}

/// Reads every record under `config`'s URL with the file source, at `parallelism`.
fn read_with_source<T>(config: FileSourceConfig, parallelism: usize) -> Vec<T>
where
    T: serde::de::DeserializeOwned + Send + Clone + Ord + 'static,
{
    let job = JobBuilder::new(job_config("read", parallelism));
    let (sink, collected) = CollectSink::new();
    job.source(
        "files",
        WatermarkStrategy::none(),
        FileSource::<T>::factory(config),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    let mut records = collected.take();
    records.sort();
    records
}

/// A checkpointed job writes orders with the sink (small parts: several per epoch);
/// the source reads them back at another parallelism, in both formats.
fn sink_then_source_round_trip(place: &Place) {
    let n = 5_000;
    for (format, path) in [
        (FileFormat::JsonLines, "json"),
        (FileFormat::Csv { header: true }, "csv"),
    ] {
        let output = place
            .sink(path)
            .with_format(format)
            .with_rolling(16 << 10, Duration::from_secs(60));
        let (factory, metrics) = ObjectFileSink::<Order>::factory(output.clone());
        let factory = Arc::new(factory);
        let job = CheckpointedJob::spawn(
            job_config(&format!("write-{path}"), 2),
            place.checkpointing(ResumeFrom::Nothing),
            move |job: &JobBuilder| {
                let factory = factory.clone();
                job.source(
                    "orders",
                    WatermarkStrategy::none(),
                    CollectionSource::factory_with_poll_size(orders(n), 100),
                )
                .uid("orders")
                .sink("files", move |info: &_| factory(info))
                .uid("files");
            },
            Arc::new(NoListener),
        )
        .unwrap();
        let summary = job.wait().unwrap();
        assert_eq!(summary.status, JobStatus::Finished);
        let parts = committed_parts(&output).unwrap();
        assert!(parts.len() > 2, "{format:?}: {} parts", parts.len());
        assert_eq!(metrics.records_written(), n);
        assert_eq!(metrics.parts_committed(), parts.len() as u64);
        assert_eq!(metrics.pending_bytes(), 0);

        let mut committed: Vec<Order> = read_committed_objects(&output).unwrap();
        committed.sort();
        assert_eq!(committed, orders(n), "{format:?}: read_committed_objects");
        let read: Vec<Order> = read_with_source(place.source(path).with_format(format), 3);
        assert_eq!(read, orders(n), "{format:?}: the file source");
    }
}

#[test]
fn sink_then_source_round_trip_on_local_fs() {
    sink_then_source_round_trip(&Place::local());
}

#[test]
fn sink_then_source_round_trip_on_s3() {
    if let Some(place) = Place::s3() {
        sink_then_source_round_trip(&place);
    }
}

const KEYS: u64 = 13;

/// Writes `files` JSON-lines objects of `(key, seq)` records (seq `0..n`) under
/// `<place>/input` with the sink of a plain (unchecked) job.
fn write_input(place: &Place, n: u64) {
    let job = JobBuilder::new(job_config("input", 3));
    let records: Vec<(u32, u64)> = (0..n).map(|seq| ((seq % KEYS) as u32, seq)).collect();
    job.source(
        "records",
        WatermarkStrategy::none(),
        CollectionSource::factory(records),
    )
    .sink(
        "files",
        ObjectFileSink::<(u32, u64)>::factory(
            place
                .sink("input")
                .with_rolling(8 << 10, Duration::from_secs(60)),
        )
        .0,
    );
    job.execute().unwrap();
}

/// The running counts of `(seq % KEYS, seq)` for seq in `0..n`, sorted.
fn expected(n: u64) -> Vec<(u32, u64)> {
    let mut per_key: BTreeMap<u32, u64> = BTreeMap::new();
    for seq in 0..n {
        *per_key.entry((seq % KEYS) as u32).or_default() += 1;
    }
    let mut out: Vec<(u32, u64)> = per_key
        .into_iter()
        .flat_map(|(k, c)| (1..=c).map(move |i| (k, i)))
        .collect();
    out.sort_unstable();
    out
}

/// Files → keyed running count (failing once) → files: the restart restores the
/// source's positions and commits the sink's pending epochs; the output is exactly the
/// failure-free one.
fn exactly_once_across_a_failure(place: &Place) {
    let n = 20_000;
    write_input(place, n);
    let input = place.source("input");
    assert!(
        committed_parts(&place.sink("input")).unwrap().len() > 3,
        "several input files"
    );
    let output = place
        .sink("output")
        .with_rolling(4 << 10, Duration::from_secs(60));
    let failed = Arc::new(AtomicBool::new(false));
    let (sink_output, fail) = (output.clone(), failed.clone());
    let job = CheckpointedJob::spawn(
        job_config("count", 2),
        place.checkpointing(ResumeFrom::Nothing),
        move |job: &JobBuilder| {
            let fail = fail.clone();
            job.source(
                "files",
                WatermarkStrategy::none(),
                FileSource::<(u32, u64)>::factory(input.clone()),
            )
            .uid("files")
            .key_by(|r: &(u32, u64)| r.0)
            .process("running-count", move |cx| {
                RunningCount::open(cx, Some((12_345, fail.clone())))
            })
            .uid("running-count")
            .sink(
                "out",
                ObjectFileSink::<(u32, u64)>::factory(sink_output.clone()).0,
            )
            .uid("out");
        },
        Arc::new(NoListener),
    )
    .unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    let mut committed: Vec<(u32, u64)> = read_committed_objects(&output).unwrap();
    committed.sort_unstable();
    assert_eq!(committed.len(), expected(n).len(), "no loss, no duplicate");
    assert_eq!(committed, expected(n));
}

#[test]
fn files_in_files_out_exactly_once_across_a_failure_on_local_fs() {
    exactly_once_across_a_failure(&Place::local());
}

#[test]
fn files_in_files_out_exactly_once_across_a_failure_on_s3() {
    if let Some(place) = Place::s3() {
        exactly_once_across_a_failure(&place);
    }
}

/// Runs a plain job reading `config` into a blackhole; returns its error.
fn source_error<T: serde::de::DeserializeOwned + Send + Clone + 'static>(
    config: FileSourceConfig,
) -> String {
    let job = JobBuilder::new(job_config("bad", 1));
    job.source(
        "files",
        WatermarkStrategy::none(),
        FileSource::<T>::factory(config),
    )
    .sink("out", weir::sinks::BlackholeSink::new().0);
    job.execute().map(|_| ()).unwrap_err().to_string()
}

#[test]
fn a_malformed_line_and_an_unreachable_bucket_are_clear_errors_on_s3() {
    let Some(place) = Place::s3() else {
        return;
    };
    // Strings are valid JSON lines, but not `(u64, u64)`.
    let job = JobBuilder::new(job_config("strings", 1));
    job.source(
        "strings",
        WatermarkStrategy::none(),
        CollectionSource::factory(vec!["fine?".to_string()]),
    )
    .sink(
        "files",
        ObjectFileSink::<String>::factory(place.sink("strings")).0,
    );
    job.execute().unwrap();
    let err = source_error::<(u64, u64)>(place.source("strings"));
    println!("{err}");
    assert!(
        err.contains(&format!("{}/strings/part-0-0-0.jsonl line 1", place.base))
            && err.contains("expected a JSON (u64, u64)"),
        "{err}"
    );

    let mut missing = place.source("x");
    missing.storage.url = "s3://weir-no-such-bucket/x".into();
    let err = source_error::<u64>(missing);
    println!("{err}");
    assert!(err.contains("weir-no-such-bucket"), "{err}");

    let mut missing = place.sink("x");
    missing.storage.url = "s3://weir-no-such-bucket/out".into();
    let job = JobBuilder::new(job_config("sink", 1));
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory(vec![1u64]),
    )
    .sink("files", ObjectFileSink::<u64>::factory(missing).0);
    let err = job.execute().map(|_| ()).unwrap_err().to_string();
    println!("{err}");
    assert!(err.contains("weir-no-such-bucket"), "{err}");
}

//! Checkpoints end to end on the local filesystem: exactly-once output across
//! failures and restarts, savepoints with rescaling, corrupt checkpoints skipped.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::RunningCount;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::checkpoint::{CoordinatorConfig, StorageConfig};
use weir::dataflow::checkpointing::cluster::{
    ClusterLink, Deployment, FromWorker, LocalCluster, Resolver, ToWorker, WorkerInfo,
};
use weir::dataflow::checkpointing::{
    CheckpointedJob, CheckpointingConfig, JobStatus, NoListener, RestartStrategy, ResumeFrom,
};
use weir::dataflow::testing::CollectionSource;
use weir::dataflow::wire::{Network, WorkerId};
use weir::dataflow::{
    CheckpointId, JobBuilder, JobConfig, Operator, Output, Result, Stream, WatermarkStrategy,
};
use weir::sinks::{read_committed, EpochFileSink};
use weir::state::{RocksDbConfig, StateBackend};

const KEYS: u32 = 13;

fn input(n: u64) -> Vec<(u32, u64)> {
    (0..n)
        .map(|i| ((i * 7919 % KEYS as u64) as u32, i))
        .collect()
}

fn expected(n: u64) -> Vec<(u32, u64)> {
    expected_of(&input(n))
}

/// The running counts a failure-free run emits for `records`, sorted.
fn expected_of(records: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut per_key = BTreeMap::new();
    for &(k, _) in records {
        *per_key.entry(k).or_insert(0u64) += 1;
    }
    let mut out: Vec<(u32, u64)> = per_key
        .into_iter()
        .flat_map(|(k, c)| (1..=c).map(move |i| (k, i)))
        .collect();
    out.sort();
    out
}

fn build(
    n: u64,
    out: PathBuf,
    fail_at: Option<(u64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    build_with(input(n), out, fail_at, per_poll)
}

fn build_with(
    records: Vec<(u32, u64)>,
    out: PathBuf,
    fail_at: Option<(u64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    move |job: &JobBuilder| {
        let out = out.clone();
        let fail_at = fail_at.clone();
        job.source(
            "numbers",
            WatermarkStrategy::none(),
            CollectionSource::factory_throttled(
                records.clone(),
                per_poll,
                Some(Duration::from_millis(1)),
            ),
        )
        .uid("numbers")
        .key_by(|r: &(u32, u64)| r.0)
        .process("running-count", move |cx| {
            RunningCount::open(cx, fail_at.clone())
        })
        .uid("running-count")
        .sink(
            "epoch-sink",
            EpochFileSink::<(u32, u64)>::factory(out.clone()),
        )
        .uid("epoch-sink");
    }
}

fn read_output(dir: &Path) -> Vec<(u32, u64)> {
    let mut out = read_committed::<(u32, u64)>(dir).unwrap();
    out.sort();
    out
}

/// Compares sorted outputs, reporting counts and the first difference (not 30k rows).
fn assert_same(got: Vec<(u32, u64)>, want: Vec<(u32, u64)>, what: &str) {
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} records, expected {}; first difference at {:?}: got {:?}, expected {:?}",
            got.len(),
            want.len(),
            first,
            first.map(|i| got[i]),
            first.map(|i| want[i])
        );
    }
}

fn settings(root: &Path, interval_ms: u64) -> CheckpointingConfig {
    CheckpointingConfig {
        storage: StorageConfig::new(root.join("checkpoints").to_string_lossy().to_string()),
        savepoints: StorageConfig::new(root.join("savepoints").to_string_lossy().to_string()),
        coordinator: CoordinatorConfig {
            interval: Duration::from_millis(interval_ms),
            ..CoordinatorConfig::default()
        },
        restart: RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::from_millis(10),
        },
        ..CheckpointingConfig::default()
    }
}

fn job_config(name: &str, parallelism: usize) -> JobConfig {
    JobConfig {
        name: name.into(),
        parallelism,
        batch_size: 16,
        ..JobConfig::default()
    }
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Heap,
    RocksDb,
}

/// [`job_config`] on `backend` (RocksDB under `<root>/state`).
fn job_config_on(name: &str, parallelism: usize, backend: Backend, root: &Path) -> JobConfig {
    JobConfig {
        state_backend: match backend {
            Backend::Heap => StateBackend::Heap,
            Backend::RocksDb => StateBackend::RocksDb(RocksDbConfig {
                dir: root.join("state"),
                block_cache_bytes: 64 << 20,
                write_buffer_bytes: 16 << 20,
                // Small, so the record cache is emptied many times per run.
                record_cache_entries: 256,
                background_jobs: 1,
            }),
        },
        // Standby copies of heap state go here (cluster mode).
        local_dir: Some(root.join("local")),
        ..job_config(name, parallelism)
    }
}

#[test]
fn bounded_job_with_checkpoints_commits_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 20_000;
    let job = CheckpointedJob::spawn(
        job_config("bounded", 2),
        settings(dir.path(), 20),
        build(n, out.clone(), None, 50),
        Arc::new(NoListener),
    )
    .unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert!(!summary.checkpoints.is_empty());
    assert_same(read_output(&out), expected(n), "output");
}

/// Runs a job with checkpoints to its end; its summary.
fn run_to_end(
    config: JobConfig,
    checkpointing: CheckpointingConfig,
    build: impl Fn(&JobBuilder) + Send + Sync + 'static,
) -> weir::dataflow::checkpointing::RunSummary {
    let summary = CheckpointedJob::spawn(config, checkpointing, build, Arc::new(NoListener))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    summary
}

/// `numbers` (`input(n)`, `per_poll` records a poll) → `middle` → the epoch-file sink
/// into `out`.
fn numbers_to_epoch_files(
    n: u64,
    per_poll: usize,
    out: PathBuf,
    middle: impl Fn(Stream<(u32, u64)>) -> Stream<(u32, u64)> + Send + Sync + 'static,
) -> impl Fn(&JobBuilder) + Send + Sync + 'static {
    move |job: &JobBuilder| {
        let numbers = job
            .source(
                "numbers",
                WatermarkStrategy::none(),
                CollectionSource::factory_with_poll_size(input(n), per_poll),
            )
            .uid("numbers");
        middle(numbers)
            .sink(
                "epoch-sink",
                EpochFileSink::<(u32, u64)>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// Counts the records of its subtask and emits the count only when its input ends.
struct CountAtEnd {
    seen: u64,
}

impl Operator for CountAtEnd {
    type In = (u32, u64);
    type Out = (u32, u64);

    fn on_batch(&mut self, input: &mut Vec<(u32, u64)>, _: &mut Output<(u32, u64)>) -> Result<()> {
        self.seen += input.len() as u64;
        input.clear();
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<(u32, u64)>) -> Result<()> {
        out.push((u32::MAX, self.seen));
        Ok(())
    }
}

/// What operators emit in `on_end` is committed: the job's final checkpoint is taken
/// after every operator ran `on_end` (before, it was taken before the end of input
/// reached them, and their output was left in an epoch no checkpoint committed).
#[test]
fn what_operators_emit_at_the_end_of_a_bounded_job_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 5_000;
    let build = numbers_to_epoch_files(n, 50, out.clone(), |numbers| {
        numbers
            .rebalance()
            .transform("count-at-end", |_| CountAtEnd { seen: 0 })
            .uid("count-at-end")
    });
    run_to_end(
        job_config("count-at-end", 2),
        settings(dir.path(), 10),
        build,
    );
    let counts = read_output(&out);
    assert_eq!(counts.len(), 2, "one count per subtask: {counts:?}");
    assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), n, "{counts:?}");
}

/// Two unchained operators with the same name are two tasks: the checkpoints wait for
/// both and the job finishes (by name they were one task, and the job never ended).
#[test]
fn unchained_operators_with_the_same_name_checkpoint_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 2_000;
    let build = numbers_to_epoch_files(n, 20, out.clone(), |numbers| {
        numbers
            .rebalance()
            .map(|r: (u32, u64)| r)
            .name("same")
            .rebalance()
            .map(|r: (u32, u64)| r)
            .name("same")
            .rebalance()
    });
    run_to_end(job_config("same-names", 2), settings(dir.path(), 10), build);
    let mut want = input(n);
    want.sort();
    assert_same(read_output(&out), want, "output");
}

/// A fresh run (no --resume) of a job whose directory holds an earlier run's
/// checkpoints fails before its own first checkpoint: the restart starts from nothing
/// again, not from the earlier run's state and offsets.
#[test]
fn a_restart_before_the_first_checkpoint_of_a_fresh_run_starts_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000;
    let earlier = dir.path().join("earlier");
    std::fs::create_dir_all(&earlier).unwrap();
    let summary = run_to_end(
        job_config("timelines", 2),
        settings(dir.path(), 10),
        build(n, earlier, None, 50),
    );
    assert!(!summary.checkpoints.is_empty());

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    // No periodic checkpoint before the failure: only the final one.
    let summary = run_to_end(
        job_config("timelines", 2),
        settings(dir.path(), 600_000),
        build(n, out.clone(), Some((100, failed.clone())), 50),
    );
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert_eq!(
        summary.restored_from, None,
        "restored the earlier run's state"
    );
    assert_same(read_output(&out), expected(n), "the fresh run's output");
}

/// A run started from a savepoint, with newer checkpoints of other runs in the
/// directory, fails before its own first checkpoint: the restart restores the
/// savepoint again (the rollback holds), and the output equals a run that did not fail.
#[test]
fn a_restart_of_a_run_from_a_savepoint_restores_the_savepoint_not_newer_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000;
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    let job = CheckpointedJob::spawn(
        job_config("rollback", 2),
        settings(dir.path(), 10),
        build(n, first.clone(), None, 5),
        Arc::new(NoListener),
    )
    .unwrap();
    while read_output(&first).is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let savepoint = job.savepoint(false).unwrap();
    // The run goes on past the savepoint and leaves newer checkpoints behind.
    job.wait().unwrap();

    let from_savepoint = |root: &Path, out: &Path, fail_at: Option<(u64, Arc<AtomicBool>)>| {
        std::fs::create_dir_all(out).unwrap();
        let mut config = settings(root, 600_000);
        config.resume = ResumeFrom::Savepoint(savepoint.clone());
        run_to_end(
            job_config("rollback", 2),
            config,
            build(n, out.to_path_buf(), fail_at, 50),
        )
    };
    // The reference run keeps its checkpoints apart: its single (final) checkpoint
    // holds all its output, so restoring it would pass for right.
    let reference = dir.path().join("reference");
    from_savepoint(&dir.path().join("apart"), &reference, None);
    let out = dir.path().join("out");
    let failed = Arc::new(AtomicBool::new(false));
    // The last record comes after the savepoint's position.
    let summary = from_savepoint(dir.path(), &out, Some((n - 1, failed.clone())));
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert_same(
        read_output(&out),
        read_output(&reference),
        "the output after a restart of a run from a savepoint",
    );
}

/// Two runs write into the same output directory with checkpoint ids that repeat
/// (each its own checkpoint directory): the second run's epochs are committed beside
/// the first's, not taken for already committed and dropped.
#[test]
fn a_run_whose_checkpoint_ids_repeat_commits_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 3_000;
    for run in ["first", "second"] {
        run_to_end(
            job_config("repeated-ids", 2),
            settings(&dir.path().join(run), 10),
            build(n, out.clone(), None, 50),
        );
    }
    let mut want = expected(n);
    want.extend(expected(n));
    want.sort();
    assert_same(read_output(&out), want, "both runs' output");
}

#[test]
fn a_failed_task_restarts_from_the_last_checkpoint_without_loss_or_duplicates() {
    restart_from_the_last_checkpoint(Backend::Heap);
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_a_failed_task_restarts_from_the_last_checkpoint_without_loss_or_duplicates() {
    restart_from_the_last_checkpoint(Backend::RocksDb);
}

fn restart_from_the_last_checkpoint(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 20_000;
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config_on("restart", 2, backend, dir.path()),
        settings(dir.path(), 10),
        build(n, out.clone(), Some((15_000, failed.clone())), 20),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = job.live();
    let summary = job.wait().unwrap();
    let restore = live.restore();
    if let Backend::RocksDb = backend {
        // Local recovery: the restarted subtasks read their local copies of the
        // native RocksDB checkpoint; only operator state is downloaded.
        assert!(restore.bytes_local > 0, "{restore:?}");
        assert!(
            restore.bytes_downloaded < restore.bytes_local,
            "{restore:?}"
        );
    }
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert!(
        summary.restored_from.is_some(),
        "restored from a checkpoint"
    );
    assert_same(read_output(&out), expected(n), "output");
}

/// Every shared state file of job `job` under `root`, and every shared file the
/// job's retained checkpoints refer to.
fn shared_files_and_references(root: &Path, job: &str) -> (Vec<String>, Vec<String>) {
    let job_dir = root.join(job);
    let mut files: Vec<String> = std::fs::read_dir(job_dir.join("shared"))
        .map(|dir| {
            dir.map(|e| format!("{job}/shared/{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut referenced = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&job_dir).unwrap() {
        let metadata = entry.unwrap().path().join("_metadata");
        if let Ok(bytes) = std::fs::read(&metadata) {
            let metadata = weir::checkpoint::CheckpointMetadata::decode(&bytes).unwrap();
            for handle in metadata.handles() {
                if handle.path.starts_with(&format!("{job}/shared/")) {
                    referenced.insert(handle.path.clone());
                }
            }
        }
    }
    (files, referenced.into_iter().collect())
}

#[test]
fn incremental_checkpoints_upload_what_changed_and_restore_exactly() {
    incremental_checkpoints(Backend::Heap);
}

/// On RocksDB checkpoints are native: only SST files no earlier checkpoint uploaded
/// are uploaded; retention keeps exactly the files retained checkpoints refer to.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_incremental_checkpoints_upload_what_changed_and_restore_exactly() {
    incremental_checkpoints(Backend::RocksDb);
}

fn incremental_checkpoints(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // 40000 keys once (so each subtask's table is split into shards), then a long
    // tail that only touches two of them: the later checkpoints change two shards
    // out of 64 per subtask.
    let mut records: Vec<(u32, u64)> = (0..40_000).map(|k| (k, u64::from(k))).collect();
    records.extend((40_000..80_000u64).map(|i| ((i % 2) as u32, i)));
    let want = expected_of(&records);
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config_on("incremental", 2, backend, dir.path()),
        settings(dir.path(), 15),
        build_with(records, out.clone(), Some((65_000, failed.clone())), 40),
        Arc::new(NoListener),
    )
    .unwrap();
    let summary = job.wait().unwrap();
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert_same(
        read_output(&out),
        want,
        "output after restoring an incremental checkpoint",
    );
    let incremental = summary
        .checkpoints
        .iter()
        .filter(|c| c.bytes * 4 < c.state_bytes)
        .count();
    assert!(
        incremental > 0,
        "no checkpoint uploaded less than a quarter of its state: {:?}",
        summary
            .checkpoints
            .iter()
            .map(|c| (c.bytes, c.state_bytes))
            .collect::<Vec<_>>()
    );
    // Retention deleted every shared file no retained checkpoint refers to, and none
    // that one does.
    let (files, referenced) =
        shared_files_and_references(&dir.path().join("checkpoints"), "incremental");
    assert!(!referenced.is_empty());
    assert_eq!(files, referenced);
}

/// Native RocksDB checkpoints upload each SST file once; over many checkpoints,
/// retention keeps exactly the shared files the retained checkpoints refer to.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_native_checkpoints_upload_sst_files_once_and_retention_keeps_what_is_referred_to() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // 100000 keys once, then a long tail touching two keys.
    let mut records: Vec<(u32, u64)> = (0..100_000).map(|k| (k, u64::from(k))).collect();
    records.extend((100_000..140_000u64).map(|i| ((i % 2) as u32, i)));
    let want = expected_of(&records);
    let mut config = settings(dir.path(), 5);
    config.coordinator.retention = 4;
    let job = CheckpointedJob::spawn(
        job_config_on("native", 2, Backend::RocksDb, dir.path()),
        config,
        build_with(records, out.clone(), None, 10),
        Arc::new(NoListener),
    )
    .unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert_same(read_output(&out), want, "output");
    let checkpoints: Vec<_> = summary
        .checkpoints
        .iter()
        .filter(|c| !c.savepoint)
        .collect();
    assert!(
        checkpoints.len() >= 50,
        "only {} checkpoints completed",
        checkpoints.len()
    );
    // Once the keys are in SST files, a checkpoint uploads only the new ones (and
    // the MANIFEST); when RocksDB compacts, the rewritten files are uploaded again.
    let last = checkpoints.last().unwrap();
    let small = checkpoints
        .iter()
        .filter(|c| c.bytes * 10 < last.state_bytes)
        .count();
    assert!(
        small * 2 > checkpoints.len(),
        "most checkpoints should upload under a tenth of the state: {:?}",
        checkpoints
            .iter()
            .map(|c| (c.bytes, c.state_bytes))
            .collect::<Vec<_>>()
    );
    let root = dir.path().join("checkpoints");
    let (files, referenced) = shared_files_and_references(&root, "native");
    assert!(
        referenced.iter().any(|f| f.ends_with(".sst")),
        "SST files are shared: {referenced:?}"
    );
    assert_eq!(files, referenced);
    // The newest checkpoint refers to native RocksDB state, and only the newest
    // completed checkpoint keeps a local copy.
    let newest = checkpoints.last().unwrap().checkpoint;
    let metadata = std::fs::read(
        root.join("native")
            .join(format!("chk-{}", newest.get()))
            .join("_metadata"),
    )
    .unwrap();
    let metadata = weir::checkpoint::CheckpointMetadata::decode(&metadata).unwrap();
    let native: usize = metadata
        .operators
        .values()
        .flat_map(|o| o.subtasks.values())
        .map(|s| s.native.len())
        .sum();
    assert_eq!(native, 2, "one native handle per subtask of the counter");
    for subtask in 0..2 {
        let local = dir
            .path()
            .join("state/native/running-count")
            .join(subtask.to_string())
            .join("local");
        let copies: Vec<String> = std::fs::read_dir(&local)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            copies,
            vec![format!("chk-{}", newest.get())],
            "{}",
            local.display()
        );
    }
}

/// Runs the counter on RocksDB with `before` subtasks until a few checkpoints
/// completed, cancels it, and returns the directory, the output directory and the
/// newest completed checkpoint.
fn run_and_cancel_on_rocksdb(before: usize, n: u64) -> (tempfile::TempDir, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let job = CheckpointedJob::spawn(
        job_config_on("native-restore", before, Backend::RocksDb, dir.path()),
        settings(dir.path(), 20),
        build(n, out.clone(), None, 5),
        Arc::new(NoListener),
    )
    .unwrap();
    while job.checkpoints().iter().filter(|c| !c.savepoint).count() < 3 {
        if job.is_finished() {
            panic!("the job ended early: {:?}", job.wait().map(|s| s.status));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    job.cancel();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Cancelled);
    let newest = summary
        .checkpoints
        .iter()
        .map(|c| c.checkpoint.get())
        .max()
        .unwrap();
    (dir, out, newest)
}

/// Resumes the job of [`run_and_cancel_on_rocksdb`] from its newest checkpoint with
/// `after` subtasks on `backend`; checks the output and returns the restore progress.
fn resume_latest(
    dir: &Path,
    out: &Path,
    n: u64,
    after: usize,
    backend: Backend,
    what: &str,
) -> weir::dataflow::checkpointing::RestoreProgress {
    let mut config = settings(dir, 20);
    config.resume = ResumeFrom::LatestCheckpoint;
    let resumed = CheckpointedJob::spawn(
        job_config_on("native-restore", after, backend, dir),
        config,
        build(n, out.to_path_buf(), None, 50),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = resumed.live();
    let summary = resumed.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert!(summary.restored_from.is_some(), "{what}: restored");
    assert_same(read_output(out), expected(n), what);
    live.restore()
}

/// A native RocksDB checkpoint restores at the same parallelism (from the local
/// copies), rescaled up and down (read back by key-group range), and into the heap.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_native_checkpoints_restore_locally_rescaled_and_into_the_heap() {
    let n = 30_000;
    for (before, after, backend) in [
        (2, 2, Backend::RocksDb),
        (2, 3, Backend::RocksDb),
        (3, 1, Backend::RocksDb),
        (2, 2, Backend::Heap),
    ] {
        let (dir, out, newest) = run_and_cancel_on_rocksdb(before, n);
        let what = format!("{before} -> {after} ({backend:?}) from chk-{newest}");
        let restore = resume_latest(dir.path(), &out, n, after, backend, &what);
        assert!(restore.finished, "{what}: {restore:?}");
        if before == after && matches!(backend, Backend::RocksDb) {
            // Same subtasks, same machine: the local copies are used (operator
            // state is downloaded) and opened as the subtasks' instances.
            assert!(restore.bytes_local > 0, "{what}: {restore:?}");
            assert!(
                restore.bytes_downloaded < restore.bytes_local,
                "{what}: {restore:?}"
            );
            assert_eq!(
                restore.bytes_opened, restore.bytes_local,
                "{what}: {restore:?}"
            );
        } else {
            // Other key-group ranges: the local copies are still found by subtask
            // index, and read back only for the new range.
            assert!(restore.bytes_read > 0, "{what}: {restore:?}");
            assert_eq!(restore.bytes_opened, 0, "{what}: {restore:?}");
        }
    }
}

/// A local copy that lost or changed a file is not used: the checkpoint is
/// downloaded, with the same output.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_a_damaged_local_copy_falls_back_to_download() {
    let n = 30_000;
    for damage in ["delete", "truncate"] {
        let (dir, out, newest) = run_and_cancel_on_rocksdb(2, n);
        let local = dir
            .path()
            .join("state/native-restore/running-count/0/local")
            .join(format!("chk-{newest}"))
            .join("0");
        let sst = std::fs::read_dir(&local)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "sst"))
            .unwrap_or_else(|| panic!("no SST file in {}", local.display()));
        match damage {
            "delete" => std::fs::remove_file(&sst).unwrap(),
            _ => {
                let len = std::fs::metadata(&sst).unwrap().len();
                // A new file: the copy is a hard link to the RocksDB files.
                std::fs::remove_file(&sst).unwrap();
                let bytes = vec![0u8; (len / 2) as usize];
                std::fs::write(&sst, bytes).unwrap();
            }
        }
        let metadata = dir
            .path()
            .join("checkpoints/native-restore")
            .join(format!("chk-{newest}/_metadata"));
        let metadata =
            weir::checkpoint::CheckpointMetadata::decode(&std::fs::read(metadata).unwrap())
                .unwrap();
        let native_of = |subtask: usize| -> u64 {
            metadata.operators[&weir::checkpoint::OperatorUid::new("running-count")].subtasks
                [&subtask]
                .native
                .iter()
                .map(|n| n.size())
                .sum()
        };
        let what = format!("{damage} {}", sst.display());
        let restore = resume_latest(dir.path(), &out, n, 2, Backend::RocksDb, &what);
        // Subtask 0 downloads its checkpoint; subtask 1 uses its local copy; both
        // open theirs as their instances.
        assert_eq!(restore.bytes_local, native_of(1), "{what}: {restore:?}");
        assert!(
            restore.bytes_downloaded >= native_of(0),
            "{what}: {restore:?}"
        );
        assert_eq!(
            restore.bytes_opened,
            native_of(0) + native_of(1),
            "{what}: {restore:?}"
        );
    }
}

/// The shared files (SST, OPTIONS) the native checkpoint `checkpoint` of job `job`
/// refers to.
fn native_shared_files(root: &Path, job: &str, checkpoint: u64) -> Vec<String> {
    let path = root
        .join(job)
        .join(format!("chk-{checkpoint}"))
        .join("_metadata");
    let metadata =
        weir::checkpoint::CheckpointMetadata::decode(&std::fs::read(path).unwrap()).unwrap();
    let mut shared: Vec<String> = metadata
        .operators
        .values()
        .flat_map(|op| op.subtasks.values())
        .flat_map(|st| &st.native)
        .flat_map(|n| &n.files)
        .filter(|f| f.handle.path.starts_with(&format!("{job}/shared/")))
        .map(|f| f.handle.path.clone())
        .collect();
    shared.sort();
    shared
}

/// A restore at the same parallelism on RocksDB opens each subtask's native
/// checkpoint as its instance, from the local copy or, without one, downloaded:
/// the keys are not written again, and the first checkpoint after the restore
/// refers to the restored SST files instead of uploading them again. The job's
/// state is written in one RocksDB flush (no checkpoint before the final one), so
/// no compaction replaces the restored files.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_a_restore_of_the_same_key_groups_opens_the_checkpoint_and_refers_to_its_files() {
    let records: Vec<(u32, u64)> = (0..60_000u64).map(|i| ((i % 20_000) as u32, i)).collect();
    for source in ["local copy", "download"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let run = |resume: ResumeFrom| {
            let mut config = settings(dir.path(), 600_000);
            config.resume = resume;
            // Only the newest checkpoint is kept: the restored one goes once the
            // next completes, and the files both refer to must stay.
            config.coordinator.retention = 1;
            let job = CheckpointedJob::spawn(
                job_config_on("opened", 2, Backend::RocksDb, dir.path()),
                config,
                build_with(records.clone(), out.clone(), None, 5_000),
                Arc::new(NoListener),
            )
            .unwrap();
            let live = job.live();
            let summary = job.wait().unwrap();
            assert_eq!(summary.status, JobStatus::Finished, "{source}");
            (summary, live.restore())
        };
        let (first, _) = run(ResumeFrom::Nothing);
        assert_same(read_output(&out), expected_of(&records), source);
        let restored = first
            .checkpoints
            .iter()
            .map(|c| c.checkpoint.get())
            .max()
            .unwrap();
        let root = dir.path().join("checkpoints");
        let restored_files = native_shared_files(&root, "opened", restored);
        assert!(!restored_files.is_empty());
        let native_bytes: u64 = {
            let path = root.join(format!("opened/chk-{restored}/_metadata"));
            let metadata =
                weir::checkpoint::CheckpointMetadata::decode(&std::fs::read(path).unwrap())
                    .unwrap();
            metadata
                .operators
                .values()
                .flat_map(|op| op.subtasks.values())
                .flat_map(|st| &st.native)
                .map(|n| n.size())
                .sum()
        };
        if source == "download" {
            std::fs::remove_dir_all(dir.path().join("state/opened/running-count/0/local")).unwrap();
            std::fs::remove_dir_all(dir.path().join("state/opened/running-count/1/local")).unwrap();
        }
        // The input is consumed: the resumed job restores, takes its final
        // checkpoint and ends, with the output unchanged (nothing emitted twice).
        let (second, restore) = run(ResumeFrom::LatestCheckpoint);
        assert_eq!(second.restored_from, Some(CheckpointId::new(restored)));
        assert_same(read_output(&out), expected_of(&records), source);
        assert_eq!(restore.bytes_opened, native_bytes, "{source}: {restore:?}");
        if source == "download" {
            assert_eq!(restore.bytes_local, 0, "{source}: {restore:?}");
        } else {
            assert_eq!(restore.bytes_local, native_bytes, "{source}: {restore:?}");
        }
        let next = second
            .checkpoints
            .iter()
            .min_by_key(|c| c.checkpoint)
            .expect("a checkpoint after the restore");
        assert!(
            next.bytes * 4 < next.state_bytes,
            "{source}: the first checkpoint after the restore uploaded {} of {} bytes",
            next.bytes,
            next.state_bytes
        );
        let files = native_shared_files(&root, "opened", next.checkpoint.get());
        let new: Vec<&String> = files
            .iter()
            .filter(|f| f.ends_with(".sst") && !restored_files.contains(f))
            .collect();
        assert!(
            new.is_empty(),
            "{source}: SST files uploaded again: {new:?}"
        );
        assert!(
            restored_files
                .iter()
                .filter(|f| f.ends_with(".sst"))
                .all(|f| files.contains(f)),
            "{source}: {restored_files:?} vs {files:?}"
        );
        let (stored, referenced) = shared_files_and_references(&root, "opened");
        assert_eq!(stored, referenced, "{source}: retention");
        assert!(
            !root.join(format!("opened/chk-{restored}")).exists(),
            "{source}: the restored checkpoint is no longer retained"
        );
        // The checkpoint after the restore restores in turn.
        let (third, restore) = run(ResumeFrom::LatestCheckpoint);
        assert_eq!(third.restored_from, Some(next.checkpoint));
        assert!(restore.bytes_opened > 0, "{source}: {restore:?}");
        assert_same(read_output(&out), expected_of(&records), source);
    }
}

/// Emits its records in order (checkpointing how many), then, if `hold`, stays idle
/// without finishing: the watermark stops at the last record's.
struct HeldSource {
    records: Arc<Vec<(u32, i64)>>,
    next: usize,
    hold: bool,
}

const HELD_POSITION: &str = "held-position";

impl weir::dataflow::Source for HeldSource {
    type Out = (u32, i64);

    fn open(&mut self, cx: &mut weir::dataflow::OperatorContext) -> weir::dataflow::Result<()> {
        if let Some(bytes) = cx.restored_operator.get(HELD_POSITION) {
            self.next = weir::state::decode(HELD_POSITION, bytes)?;
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut weir::dataflow::SourceOutput<(u32, i64)>,
    ) -> weir::dataflow::Result<weir::dataflow::SourcePoll> {
        use weir::dataflow::SourcePoll;
        let end = self.records.len().min(self.next + 500);
        for record in &self.records[self.next..end] {
            out.push(*record);
        }
        self.next = end;
        Ok(match self.next < self.records.len() {
            true => SourcePoll::Idle(Duration::from_millis(1)),
            false if self.hold => SourcePoll::Idle(Duration::from_millis(5)),
            false => SourcePoll::Finished,
        })
    }

    fn snapshot(&mut self, cx: &mut weir::dataflow::SnapshotContext) -> weir::dataflow::Result<()> {
        cx.put_operator(
            HELD_POSITION,
            weir::state::encode(HELD_POSITION, &self.next)?,
        );
        Ok(())
    }
}

/// Sliding-window and session counts over `(key, ts)` records (one source
/// subtask), into `out`.
fn build_windows(
    records: Vec<(u32, i64)>,
    hold: bool,
    out: PathBuf,
) -> impl Fn(&JobBuilder) + Send + Sync {
    build_windows_phased(records, hold, out, false)
}

/// As [`build_windows`], the sliding windows aggregated in two phases if
/// `pre_aggregate`.
fn build_windows_phased(
    records: Vec<(u32, i64)>,
    hold: bool,
    out: PathBuf,
    pre_aggregate: bool,
) -> impl Fn(&JobBuilder) + Send + Sync {
    use weir::dataflow::window::WindowAssigner;
    use weir::dataflow::Timestamp;
    use weir::state::Count;
    let records = Arc::new(records);
    move |job: &JobBuilder| {
        let records = records.clone();
        let keyed = job
            .source(
                "events",
                WatermarkStrategy::bounded_out_of_orderness(
                    Duration::from_millis(5),
                    |e: &(u32, i64)| Timestamp(e.1),
                ),
                move |_: &weir::dataflow::SubtaskInfo| HeldSource {
                    records: records.clone(),
                    next: 0,
                    hold,
                },
            )
            .uid("events")
            .parallelism(1)
            .key_by(|e: &(u32, i64)| e.0);
        let mut sliding = keyed
            .window(WindowAssigner::sliding(
                Duration::from_millis(400),
                Duration::from_millis(100),
            ))
            .uid("sliding");
        if pre_aggregate {
            sliding = sliding.pre_aggregate();
        }
        let sliding = sliding.aggregate(Count, |k, w, c| (*k, w.start, c));
        let sessions = keyed
            .window(WindowAssigner::session(Duration::from_millis(100)))
            .uid("sessions")
            .aggregate(Count, |k, w, c| (*k + 1_000, w.start, c));
        sliding
            .union(&[sessions])
            .sink(
                "epoch-sink",
                EpochFileSink::<(u32, i64, u64)>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// Window state restored by opening the native checkpoints: the restored windows
/// and sessions receive no element after the restore, so only the tables' headers
/// tell the operators they exist (and sessions their timers); the output equals
/// that of a run without interruption. The same checkpoints read back at another
/// parallelism (session timers restored from their table) and into the heap
/// (session timers rebuilt from the sessions) give the same output.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_windows_restored_by_opening_native_checkpoints_fire_exactly() {
    // Phase 1: keys 0..40 up to ts 2000; phase 2, after the restore: one late key.
    let mut records: Vec<(u32, i64)> = (0..2_000i64).map(|i| ((i % 40) as u32, i)).collect();
    let phase_1 = records.len();
    records.push((500, 10_000));
    let run =
        |(parallelism, backend), records: Vec<(u32, i64)>, hold, resume, out: &Path, dir: &Path| {
            let mut config = settings(dir, 20);
            config.resume = resume;
            let job = CheckpointedJob::spawn(
                job_config_on("windows", parallelism, backend, dir),
                config,
                build_windows(records, hold, out.to_path_buf()),
                Arc::new(NoListener),
            )
            .unwrap();
            let live = job.live();
            if hold {
                // Every record in, then a few checkpoints of the held state.
                while job.checkpoints().len() < 5 {
                    assert!(!job.is_finished(), "the job ended early");
                    std::thread::sleep(Duration::from_millis(5));
                }
                job.cancel();
            }
            (job.wait().unwrap(), live.restore())
        };
    let expected = {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (summary, _) = run(
            (2, Backend::Heap),
            records.clone(),
            false,
            ResumeFrom::Nothing,
            &out,
            dir.path(),
        );
        assert_eq!(summary.status, JobStatus::Finished);
        let mut rows = read_committed::<(u32, i64, u64)>(&out).unwrap();
        rows.sort();
        rows
    };
    assert!(expected.iter().any(|r| r.0 >= 1_000), "sessions fired");
    for after in [
        (2, Backend::RocksDb),
        (3, Backend::RocksDb),
        (2, Backend::Heap),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (held, _) = run(
            (2, Backend::RocksDb),
            records[..phase_1].to_vec(),
            true,
            ResumeFrom::Nothing,
            &out,
            dir.path(),
        );
        assert_eq!(held.status, JobStatus::Cancelled);
        let (resumed, restore) = run(
            after,
            records.clone(),
            false,
            ResumeFrom::LatestCheckpoint,
            &out,
            dir.path(),
        );
        assert_eq!(resumed.status, JobStatus::Finished, "{after:?}");
        assert!(resumed.restored_from.is_some(), "{after:?}");
        assert_eq!(
            restore.bytes_opened > 0,
            after == (2, Backend::RocksDb),
            "{after:?}: {restore:?}"
        );
        let mut rows = read_committed::<(u32, i64, u64)>(&out).unwrap();
        rows.sort();
        assert_same_rows(&rows, &expected);
    }
}

/// Sliding windows aggregated in two phases: the partials folded before the
/// exchange are sent on before every barrier, so a checkpoint of held windows holds
/// them in the windows' state. Resumed (in two phases, or in one: the windows'
/// state is the same), on either backend, the output equals an uninterrupted run
/// in one phase.
#[test]
fn pre_aggregated_windows_resume_from_checkpoints_exactly() {
    let mut records: Vec<(u32, i64)> = (0..2_000i64).map(|i| ((i % 40) as u32, i)).collect();
    let phase_1 = records.len();
    records.push((500, 10_000));
    let run = |(parallelism, backend, two_phase),
               records: Vec<(u32, i64)>,
               hold,
               resume,
               out: &Path,
               dir: &Path| {
        let mut config = settings(dir, 20);
        config.resume = resume;
        let job = CheckpointedJob::spawn(
            job_config_on("phased", parallelism, backend, dir),
            config,
            build_windows_phased(records, hold, out.to_path_buf(), two_phase),
            Arc::new(NoListener),
        )
        .unwrap();
        if hold {
            while job.checkpoints().len() < 5 {
                assert!(!job.is_finished(), "the job ended early");
                std::thread::sleep(Duration::from_millis(5));
            }
            job.cancel();
        }
        job.wait().unwrap()
    };
    let rows = |out: &Path| {
        let mut rows = read_committed::<(u32, i64, u64)>(out).unwrap();
        rows.sort();
        rows
    };
    let uninterrupted = |two_phase| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let summary = run(
            (2, Backend::Heap, two_phase),
            records.clone(),
            false,
            ResumeFrom::Nothing,
            &out,
            dir.path(),
        );
        assert_eq!(summary.status, JobStatus::Finished);
        rows(&out)
    };
    let expected = uninterrupted(false);
    assert_same_rows(&uninterrupted(true), &expected);
    let mut cases = vec![
        (Backend::Heap, (3, Backend::Heap, true)),
        (Backend::Heap, (2, Backend::Heap, false)),
    ];
    if cfg!(feature = "rocksdb") {
        cases.push((Backend::RocksDb, (2, Backend::RocksDb, true)));
    }
    for (before, after) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let held = run(
            (2, before, true),
            records[..phase_1].to_vec(),
            true,
            ResumeFrom::Nothing,
            &out,
            dir.path(),
        );
        assert_eq!(held.status, JobStatus::Cancelled);
        let resumed = run(
            after,
            records.clone(),
            false,
            ResumeFrom::LatestCheckpoint,
            &out,
            dir.path(),
        );
        assert_eq!(resumed.status, JobStatus::Finished, "{after:?}");
        assert!(resumed.restored_from.is_some(), "{after:?}");
        assert_same_rows(&rows(&out), &expected);
    }
}

fn assert_same_rows(got: &[(u32, i64, u64)], want: &[(u32, i64, u64)]) {
    let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
    assert!(
        got == want,
        "{} rows, expected {}; missing {missing:?}, unexpected {extra:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn a_storage_outage_fails_checkpoints_without_stopping_the_job_or_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 60_000;
    let mut config = settings(dir.path(), 20);
    config.coordinator.tolerable_failures = 10_000;
    let job = CheckpointedJob::spawn(
        job_config("outage", 2),
        config,
        build(n, out.clone(), None, 20),
        Arc::new(NoListener),
    )
    .unwrap();
    // The storage goes away: its root becomes a file, so every write under it fails
    // (even for root), then it comes back.
    let root = dir.path().join("checkpoints");
    let away = dir.path().join("checkpoints-away");
    std::thread::sleep(Duration::from_millis(600));
    std::fs::rename(&root, &away).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&away, &root).unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert_eq!(
        summary.restarts, 0,
        "the outage is tolerated, not a failure"
    );
    assert!(
        summary.failed_checkpoints > 0,
        "checkpoints failed during the outage"
    );
    assert!(!summary.checkpoints.is_empty());
    assert_same(
        read_output(&out),
        expected(n),
        "output across a storage outage",
    );
}

#[test]
fn stop_with_savepoint_then_resume_at_other_parallelism_equals_an_uninterrupted_run() {
    savepoint_then_resume([(2, 1), (2, 3)].map(|(a, b)| (a, Backend::Heap, b, Backend::Heap)));
}

/// Savepoints are canonical: one taken on either backend resumes on the other (and
/// rescaled), with the output of an uninterrupted run.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn savepoints_resume_across_backends_and_rescaled() {
    savepoint_then_resume([
        (2, Backend::Heap, 3, Backend::RocksDb),
        (2, Backend::RocksDb, 1, Backend::Heap),
        (3, Backend::RocksDb, 2, Backend::RocksDb),
    ]);
}

fn savepoint_then_resume<const N: usize>(runs: [(usize, Backend, usize, Backend); N]) {
    for (before, backend_before, after, backend_after) in runs {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let n = 30_000;
        let job = CheckpointedJob::spawn(
            job_config_on("rescale", before, backend_before, dir.path()),
            settings(dir.path(), 50),
            build(n, out.clone(), None, 5),
            Arc::new(NoListener),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let savepoint = job.savepoint(true).unwrap();
        let summary = job.wait().unwrap();
        assert_eq!(summary.status, JobStatus::Suspended);
        assert!(
            read_output(&out).len() < expected(n).len(),
            "stopped before the end"
        );
        let mut config = settings(dir.path(), 50);
        config.resume = ResumeFrom::Savepoint(savepoint.clone());
        let resumed = CheckpointedJob::spawn(
            job_config_on("rescale-2", after, backend_after, dir.path()),
            config,
            build(n, out.clone(), None, 50),
            Arc::new(NoListener),
        )
        .unwrap();
        let summary = resumed.wait().unwrap();
        assert_eq!(summary.status, JobStatus::Finished);
        assert_same(
            read_output(&out),
            expected(n),
            &format!(
                "{before} ({backend_before:?}) -> {after} ({backend_after:?}) via {savepoint}"
            ),
        );
    }
}

/// Records restore events.
#[derive(Default)]
struct RestoreRecorder {
    restored: std::sync::Mutex<Vec<CheckpointId>>,
}

impl weir::dataflow::checkpointing::JobListener for RestoreRecorder {
    fn on_restore(&self, _: &str, event: &weir::dataflow::checkpointing::RestoreEvent) {
        if let weir::dataflow::checkpointing::RestoreEvent::Finished { checkpoint, .. } = event {
            self.restored.lock().unwrap().push(*checkpoint);
        }
    }
}

#[test]
fn a_corrupt_newest_checkpoint_is_refused_unless_falling_back_past_it_is_asked_for() {
    for corruption in ["truncate", "bit-flip"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let n = 200_000;
        let mut config = settings(dir.path(), 20);
        config.coordinator.retention = 10;
        let job = CheckpointedJob::spawn(
            job_config("corrupt", 2),
            config.clone(),
            build(n, out.clone(), None, 5),
            Arc::new(NoListener),
        )
        .unwrap();
        while job.checkpoints().iter().filter(|c| !c.savepoint).count() < 3 {
            if job.is_finished() {
                panic!("the job ended early: {:?}", job.wait().map(|s| s.status));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        job.cancel();
        job.wait().unwrap();
        let job_dir = dir.path().join("checkpoints").join("corrupt");
        let mut complete: Vec<u64> = std::fs::read_dir(&job_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("_metadata").exists())
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix("chk-")
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        complete.sort_unstable();
        let newest = *complete.last().unwrap();
        let metadata = job_dir.join(format!("chk-{newest}")).join("_metadata");
        let mut bytes = std::fs::read(&metadata).unwrap();
        match corruption {
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x10;
            }
        }
        std::fs::write(&metadata, bytes).unwrap();
        // By default the resume is refused: checkpoint `newest` is complete, so its
        // output is committed, and a restore from an older one would repeat it.
        config.resume = ResumeFrom::LatestCheckpoint;
        let committed = read_output(&out);
        let refused = CheckpointedJob::spawn(
            job_config("corrupt", 2),
            config.clone(),
            build(n, out.clone(), None, 500),
            Arc::new(NoListener),
        )
        .unwrap()
        .wait()
        .expect_err("a resume past a corrupt complete checkpoint is refused");
        let message = refused.to_string();
        assert!(
            message.contains(&format!("chk-{newest}"))
                && message.contains("committed")
                && message.contains("--fallback-past-corrupt"),
            "{corruption}: {message}"
        );
        assert_eq!(
            read_output(&out),
            committed,
            "{corruption}: refused, wrote nothing"
        );
        // With the flag it falls back, and the summary says which it passed over.
        config.fallback_past_corrupt = true;
        let recorder = Arc::new(RestoreRecorder::default());
        let resumed = CheckpointedJob::spawn(
            job_config("corrupt", 2),
            config,
            build(n, out.clone(), None, 500),
            recorder.clone(),
        )
        .unwrap();
        let summary = resumed.wait().unwrap();
        assert_eq!(summary.status, JobStatus::Finished);
        assert_eq!(summary.passed_over_corrupt, [CheckpointId::new(newest)]);
        let previous = complete[complete.len() - 2];
        assert_eq!(
            *recorder.restored.lock().unwrap(),
            vec![CheckpointId::new(previous)],
            "{corruption}: restored from the checkpoint before the corrupt chk-{newest}"
        );
        // Nothing is lost. (Records of the corrupt checkpoint's epoch were already
        // committed by the sink; replaying from the previous checkpoint writes them
        // again under new epochs, so exactness cannot hold here.)
        let got = read_output(&out);
        let want = expected(n);
        let missing = want
            .iter()
            .filter(|r| got.binary_search(r).is_err())
            .count();
        assert_eq!(missing, 0, "{corruption}: {missing} records lost");
    }
}

#[test]
fn checkpoints_restarts_and_savepoints_on_s3() {
    let Some(endpoint) = common::s3::endpoint() else {
        return;
    };
    let bucket = common::s3::fresh_bucket(&endpoint, "weir-dataflow");
    let s3 = common::s3::options(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 20_000;
    let mut config = settings(dir.path(), 20);
    config.storage = StorageConfig::new(format!("s3://{bucket}/checkpoints")).with_s3(s3.clone());
    config.savepoints = StorageConfig::new(format!("s3://{bucket}/savepoints")).with_s3(s3);
    // A failure, a restart from an S3 checkpoint, then a stop-with-savepoint on S3.
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config("s3", 2),
        config.clone(),
        build(n, out.clone(), Some((8_000, failed.clone())), 5),
        Arc::new(NoListener),
    )
    .unwrap();
    while !failed.load(Ordering::SeqCst) {
        assert!(!job.is_finished(), "the job ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let savepoint = job.savepoint(true).unwrap();
    assert!(savepoint.starts_with("s3://"), "{savepoint}");
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Suspended);
    assert_eq!(summary.restarts, 1);
    config.resume = ResumeFrom::Savepoint(savepoint);
    let resumed = CheckpointedJob::spawn(
        job_config("s3-resumed", 3),
        config,
        build(n, out.clone(), None, 500),
        Arc::new(NoListener),
    )
    .unwrap();
    assert_eq!(resumed.wait().unwrap().status, JobStatus::Finished);
    assert_same(read_output(&out), expected(n), "s3");
}

#[test]
fn restoring_state_the_job_cannot_take_is_a_clear_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let n = 30_000;
    let job = CheckpointedJob::spawn(
        job_config("mapping", 2),
        settings(dir.path(), 50),
        build(n, out.clone(), None, 5),
        Arc::new(NoListener),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let savepoint = job.savepoint(true).unwrap();
    job.wait().unwrap();

    // The new job lacks the operator `running-count` (its uid changed).
    let renamed = move |job: &JobBuilder| {
        job.source(
            "numbers",
            WatermarkStrategy::none(),
            CollectionSource::factory(input(100)),
        )
        .uid("numbers")
        .key_by(|r: &(u32, u64)| r.0)
        .process("running-count", |cx| RunningCount::open(cx, None))
        .uid("renamed-count")
        .sink(
            "epoch-sink",
            EpochFileSink::<(u32, u64)>::factory(std::env::temp_dir().join("weir-unused")),
        )
        .uid("epoch-sink");
    };
    let mut config = settings(dir.path(), 50);
    config.resume = ResumeFrom::Savepoint(savepoint.clone());
    config.restart = RestartStrategy::None;
    let err = CheckpointedJob::spawn(
        job_config("mapping-2", 2),
        config.clone(),
        renamed,
        Arc::new(NoListener),
    )
    .unwrap()
    .wait()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`running-count`") && err.contains("--allow-non-restored-state"),
        "{err}"
    );

    config.allow_non_restored_state = true;
    let summary = CheckpointedJob::spawn(
        job_config("mapping-3", 2),
        config.clone(),
        renamed,
        Arc::new(NoListener),
    )
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(summary.status, JobStatus::Finished);

    // Another max parallelism cannot take the key groups of the savepoint.
    config.allow_non_restored_state = false;
    let mut other_max = job_config("mapping-4", 2);
    other_max.max_parallelism = 64;
    let err = CheckpointedJob::spawn(
        other_max,
        config,
        build(n, out, None, 5),
        Arc::new(NoListener),
    )
    .unwrap()
    .wait()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("max parallelism 128") && err.contains("64"),
        "{err}"
    );
}

/// Keys of the timer job.
const TIMER_KEYS: u64 = 1000;
/// How far after its record's time a timer fires.
const TIMER_DELAY: u64 = 300;

/// Registers an event-time timer `TIMER_DELAY` after each record and emits `(key,
/// time)` when it fires. Every fourth record also registers a timer one later,
/// which the first timer deletes: it must never fire.
struct DelayedEcho {
    fail_at: Option<(u64, Arc<AtomicBool>)>,
}

impl weir::dataflow::process::KeyedProcessFunction<u32, (u32, u64)> for DelayedEcho {
    type Out = (u32, u64);
    fn process(
        &mut self,
        value: (u32, u64),
        cx: &mut weir::dataflow::process::ProcessContext<'_, u32, (u32, u64)>,
    ) -> weir::dataflow::Result<()> {
        if let Some((at, failed)) = &self.fail_at {
            if value.1 == *at && !failed.swap(true, Ordering::SeqCst) {
                return Err(weir::dataflow::DataflowError::operator(
                    "delayed-echo",
                    0,
                    "injected failure",
                ));
            }
        }
        let due = value.1 + TIMER_DELAY;
        cx.register_event_time_timer(weir::dataflow::Timestamp(due as i64));
        if value.1 % 4 == 0 {
            cx.register_event_time_timer(weir::dataflow::Timestamp(due as i64 + 1));
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        time: weir::dataflow::Timestamp,
        domain: weir::dataflow::process::TimeDomain,
        cx: &mut weir::dataflow::process::ProcessContext<'_, u32, (u32, u64)>,
    ) -> weir::dataflow::Result<()> {
        assert_eq!(domain, weir::dataflow::process::TimeDomain::EventTime);
        let at = time.0 as u64;
        if (at - TIMER_DELAY) % 4 == 0 {
            cx.delete_timer(domain, weir::dataflow::Timestamp(time.0 + 1));
        }
        cx.emit((*cx.key(), at));
        Ok(())
    }
}

fn timer_input(n: u64) -> Vec<(u32, u64)> {
    (0..n)
        .map(|i| ((i * 7919 % TIMER_KEYS) as u32, i))
        .collect()
}

fn timer_expected(n: u64) -> Vec<(u32, u64)> {
    let mut out: Vec<(u32, u64)> = timer_input(n)
        .into_iter()
        .map(|(key, i)| (key, i + TIMER_DELAY))
        .collect();
    out.sort();
    out
}

fn build_timers(
    n: u64,
    out: PathBuf,
    fail_at: Option<(u64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    move |job: &JobBuilder| {
        let fail_at = fail_at.clone();
        let strategy =
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |r: &(u32, u64)| {
                weir::dataflow::Timestamp(r.1 as i64)
            });
        let (records, pause) = (timer_input(n), Some(Duration::from_millis(1)));
        // The run the test stops holds its source open, so it cannot end first.
        let numbers = if fail_at.is_some() {
            let source = CollectionSource::factory_held_open(records, per_poll, pause);
            job.source("numbers", strategy, source)
        } else {
            let source = CollectionSource::factory_throttled(records, per_poll, pause);
            job.source("numbers", strategy, source)
        };
        numbers
            .uid("numbers")
            .key_by(|r: &(u32, u64)| r.0)
            .process("delayed-echo", move |_| {
                Ok(DelayedEcho {
                    fail_at: fail_at.clone(),
                })
            })
            .uid("delayed-echo")
            .sink(
                "epoch-sink",
                EpochFileSink::<(u32, u64)>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// Event-time timers are keyed state on either backend: pending timers survive a
/// failure (restored from the last checkpoint), and a savepoint or checkpoint
/// resumes them on the other backend and at another parallelism; deleted timers
/// never fire, and every other timer fires exactly once.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn timers_survive_failures_and_resume_across_backends_and_parallelism() {
    let n = 20_000;
    let expected = timer_expected(n);
    for case in [
        (2, Backend::RocksDb, 2, Backend::RocksDb, false),
        (2, Backend::RocksDb, 3, Backend::RocksDb, false),
        (2, Backend::Heap, 3, Backend::RocksDb, true),
        (3, Backend::RocksDb, 1, Backend::Heap, true),
        (2, Backend::Heap, 1, Backend::Heap, false),
    ] {
        let (what, rows, restore) =
            fail_stop_and_resume::<(u32, u64), _>("timers", case, |fail_at, out, per_poll| {
                let fail_at = fail_at.map(|(at, failed)| (at as u64, failed));
                build_timers(n, out, fail_at, per_poll)
            });
        let (before, backend_before, after, backend_after, via_savepoint) = case;
        if let (false, Backend::RocksDb, Backend::RocksDb) =
            (via_savepoint, backend_before, backend_after)
        {
            // The same key groups open their checkpoint, timers included; others
            // read it back by key-group range.
            assert_eq!(
                restore.bytes_opened > 0,
                before == after,
                "{what}: {restore:?}"
            );
        }
        assert_rows(&what, &rows, &expected);
    }
}

/// A run of a job that fails once (at the record whose value is 2,000; 5 records
/// a poll), stopped three checkpoints after its restart (cancelled, or with a
/// savepoint), then resumed at `after` subtasks on `backend_after` (200 records a
/// poll) to its end. `build` makes the job from where to fail, its output
/// directory and the records a poll. Returns what ran (for messages), the rows
/// committed, sorted, and what the resumed run restored.
fn fail_stop_and_resume<R, J>(
    name: &str,
    (before, backend_before, after, backend_after, via_savepoint): (
        usize,
        Backend,
        usize,
        Backend,
        bool,
    ),
    build: impl Fn(Option<(i64, Arc<AtomicBool>)>, PathBuf, usize) -> J,
) -> (
    String,
    Vec<R>,
    weir::dataflow::checkpointing::RestoreProgress,
)
where
    R: serde::de::DeserializeOwned + Ord,
    J: Fn(&JobBuilder) + Send + Sync + 'static,
{
    let what = format!(
        "{before} ({backend_before:?}) -> {after} ({backend_after:?}) via {}",
        if via_savepoint {
            "a savepoint"
        } else {
            "the latest checkpoint"
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config_on(name, before, backend_before, dir.path()),
        settings(dir.path(), 20),
        build(Some((2_000, failed.clone())), out.clone(), 5),
        Arc::new(NoListener),
    )
    .unwrap();
    // By id: the job keeps only its last 100 checkpoints, and a slow machine takes
    // more than that before the failure.
    let completed = || {
        let ids = job.checkpoints().into_iter().filter(|c| !c.savepoint);
        ids.map(|c| c.checkpoint).collect::<Vec<_>>()
    };
    let (started, mut failed_after) = (Instant::now(), None);
    loop {
        match failed_after {
            None if failed.load(Ordering::SeqCst) => {
                failed_after = Some(completed().into_iter().max());
            }
            Some(last) if completed().iter().filter(|&&id| Some(id) > last).count() >= 3 => break,
            _ => {}
        }
        if job.is_finished() {
            panic!(
                "{what}: the job ended early: {:?}",
                job.wait().map(|s| s.status)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{what}: no failure, or not 3 checkpoints after it, in 600 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut config = settings(dir.path(), 20);
    let (summary, stopped) = if via_savepoint {
        config.resume = ResumeFrom::Savepoint(job.savepoint(true).unwrap());
        (job.wait().unwrap(), JobStatus::Suspended)
    } else {
        config.resume = ResumeFrom::LatestCheckpoint;
        job.cancel();
        (job.wait().unwrap(), JobStatus::Cancelled)
    };
    assert_eq!(summary.status, stopped, "{what}");
    assert_eq!(summary.restarts, 1, "{what}");
    let partial = read_committed::<R>(&out).unwrap().len();
    let resumed = CheckpointedJob::spawn(
        job_config_on(name, after, backend_after, dir.path()),
        config,
        build(None, out.clone(), 200),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = resumed.live();
    let summary = resumed.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished, "{what}");
    assert!(summary.restored_from.is_some(), "{what}: restored");
    let mut rows = read_committed::<R>(&out).unwrap();
    assert!(partial < rows.len(), "{what}: stopped before the end");
    rows.sort();
    (what, rows, live.restore())
}

/// Asserts that `rows` are `expected`, naming a few of those that differ.
fn assert_rows<R: Ord + std::fmt::Debug>(what: &str, rows: &[R], expected: &[R]) {
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| rows.binary_search(r).is_err())
        .take(5)
        .collect();
    let unexpected: Vec<_> = rows
        .iter()
        .filter(|r| expected.binary_search(r).is_err())
        .take(5)
        .collect();
    assert!(
        rows == expected,
        "{what}: {} rows, expected {}; missing {missing:?}, unexpected {unexpected:?}",
        rows.len(),
        expected.len()
    );
}

/// How far the sliding windows' records are out of order, at most, in ms.
const SLIDING_DISORDER: i64 = 50;
/// The sliding windows' time difference, in ms.
const SLIDING_DIFFERENCE: i64 = 100;

type Valued = (u32, i64, i64); // key, event time, value (the record's index)
type SlidingRow = (u32, i64, i64, u64, i64); // key, start, end, count, sum

/// `n` records of 37 keys at times rising by 0–19 ms a record, each moved back by
/// up to `SLIDING_DISORDER` ms (a seeded random sequence); a record's value is its
/// index.
fn sliding_input(n: usize) -> Vec<Valued> {
    let mut state = 0x5eed_u64;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let mut t = 1_000_000i64;
    (0..n)
        .map(|i| {
            t += next(20) as i64;
            let key = next(37) as u32;
            let jitter = next(SLIDING_DISORDER as u64) as i64;
            (key, t - jitter, i as i64)
        })
        .collect()
}

/// Kafka Streams' sliding windows of `records`, by brute force.
fn sliding_expected(records: &[Valued]) -> Vec<SlidingRow> {
    weir::dataflow::testing::time_difference_windows(records, SLIDING_DIFFERENCE)
}

/// Passes records on, failing once (an injected task failure) at the record whose
/// value is `at`.
struct FailOnce {
    at: i64,
    failed: Arc<AtomicBool>,
}

impl Operator for FailOnce {
    type In = Valued;
    type Out = Valued;
    fn on_batch(&mut self, input: &mut Vec<Valued>, out: &mut Output<Valued>) -> Result<()> {
        for record in input.drain(..) {
            if record.2 == self.at && !self.failed.swap(true, Ordering::SeqCst) {
                return Err(weir::dataflow::DataflowError::operator(
                    "fail-once",
                    0,
                    "injected failure",
                ));
            }
            out.push(record);
        }
        Ok(())
    }
}

/// A source of `records` (or of versions, `updates`) named `name`, with event time
/// out of order by up to `SLIDING_DISORDER` ms, `per_poll` records a poll; one
/// `held_open` never finishes (the run a test stops itself). One
/// subtask at every parallelism: a collection source restored into fewer subtasks
/// reads their stripes one after the other, out of order by far more than the
/// watermark allows.
fn valued_source(
    job: &JobBuilder,
    name: &str,
    records: &[Valued],
    per_poll: usize,
    held_open: bool,
) -> Stream<Valued> {
    use weir::dataflow::Timestamp;
    let (records, pause) = (records.to_vec(), Some(Duration::from_millis(1)));
    let strategy = WatermarkStrategy::bounded_out_of_orderness(
        Duration::from_millis(SLIDING_DISORDER as u64),
        |r: &Valued| Timestamp(r.1),
    );
    let source = if held_open {
        job.source(
            name,
            strategy,
            CollectionSource::factory_held_open(records, per_poll, pause),
        )
    } else {
        job.source(
            name,
            strategy,
            CollectionSource::factory_throttled(records, per_poll, pause),
        )
    };
    source.uid(name).parallelism(1)
}

/// `records` from [`valued_source`], failing once at the record whose value is
/// `fail_at`'s (if given: the run that the test stops, whose source is held open
/// so that it cannot end first), keyed by their key.
fn failing_records(
    job: &JobBuilder,
    records: &[Valued],
    fail_at: &Option<(i64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> weir::dataflow::KeyedStream<u32, Valued> {
    let (at, failed) = fail_at
        .clone()
        .unwrap_or((-1, Arc::new(AtomicBool::new(true))));
    valued_source(job, "records", records, per_poll, fail_at.is_some())
        .transform("fail-once", move |_| FailOnce {
            at,
            failed: failed.clone(),
        })
        .uid("fail-once")
        .with_timestamps(|r: &Valued| weir::dataflow::Timestamp(r.1))
        .key_by(|r: &Valued| r.0)
}

fn build_sliding(
    records: Vec<Valued>,
    out: PathBuf,
    fail_at: Option<(i64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    use weir::dataflow::window::WindowAssigner;
    use weir::state::{Count, Sum};
    move |job: &JobBuilder| {
        failing_records(job, &records, &fail_at, per_poll)
            .window(WindowAssigner::time_difference(
                Duration::from_millis(SLIDING_DIFFERENCE as u64),
                Duration::from_millis(20),
            ))
            .uid("sliding")
            .aggregate((Count, Sum(|r: &Valued| r.2)), |k, w, (c, s)| {
                (*k, w.start, w.end, c, s)
            })
            .sink(
                "epoch-sink",
                EpochFileSink::<SlidingRow>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// Sliced hopping windows on RocksDB read each slice once for all the windows
/// holding it. Late elements (a watermark after each at the largest time, 60 ms of
/// allowed lateness over 50 ms of disorder) change slices that fired windows read:
/// each fires its windows again, and every window's last result is the brute-force
/// one, its counts only growing. With a record cache holding a slice's 37 keys (the
/// slices are read from it, never written to RocksDB), and with one of 8 entries
/// (they are written and scanned).
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_late_elements_refire_sliced_hopping_windows_from_the_slices_as_changed() {
    use weir::dataflow::testing::CollectSink;
    use weir::dataflow::window::WindowAssigner;
    use weir::state::{Count, Sum};
    let records = sliding_input(20_000);
    // Windows ending every 40 ms, so the disorder of 50 ms crosses their ends.
    let assigner = WindowAssigner::sliding(Duration::from_millis(200), Duration::from_millis(40));
    let mut want: BTreeMap<(u32, i64, i64), (u64, i64)> = BTreeMap::new();
    for &(key, time, value) in &records {
        assigner.assign(time, |w| {
            let row = want.entry((key, w.start, w.end)).or_default();
            row.0 += 1;
            row.1 += value;
        });
    }
    for record_cache in [256, 8] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = JobConfig {
            // A watermark after every batch, so elements come late.
            watermark_interval: Duration::ZERO,
            ..job_config_on("sliced-late", 2, Backend::RocksDb, dir.path())
        };
        if let StateBackend::RocksDb(rocks) = &mut config.state_backend {
            rocks.record_cache_entries = record_cache;
        }
        let job = JobBuilder::new(config);
        let (sink, out) = CollectSink::new();
        job.source(
            "records",
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |r: &Valued| {
                weir::dataflow::Timestamp(r.1)
            }),
            CollectionSource::factory_with_poll_size(records.clone(), 1),
        )
        .key_by(|r: &Valued| r.0)
        .window(assigner)
        .allowed_lateness(Duration::from_millis(60))
        .aggregate((Count, Sum(|r: &Valued| r.2)), |k, w, (c, s)| {
            (*k, w.start, w.end, c, s)
        })
        .sink("collect", sink);
        job.execute().unwrap();
        let emitted = out.take();
        let mut last: BTreeMap<(u32, i64, i64), (u64, i64)> = BTreeMap::new();
        let mut refired = 0;
        for (key, start, end, count, sum) in emitted {
            let row = last.entry((key, start, end)).or_default();
            assert!(
                count > row.0,
                "window [{start}, {end}) of key {key} fired with {count} after {}",
                row.0
            );
            refired += usize::from(row.0 > 0);
            *row = (count, sum);
        }
        assert!(refired > 100, "only {refired} windows fired again");
        assert_eq!(last.len(), want.len(), "record cache of {record_cache}");
        for (window, row) in &want {
            assert_eq!(
                last.get(window),
                Some(row),
                "window {window:?}, record cache of {record_cache}"
            );
        }
    }
}

/// Kafka Streams' sliding windows on random out-of-order input equal a brute-force
/// computation of them across a task failure (restored from the last checkpoint)
/// and a resume from a checkpoint or savepoint at another parallelism and on the
/// other backend: every window once, with its records exactly.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn sliding_windows_survive_failures_and_resume_across_backends_and_parallelism() {
    let records = sliding_input(12_000);
    let expected = sliding_expected(&records);
    for case in [
        (2, Backend::RocksDb, 2, Backend::RocksDb, false),
        (2, Backend::Heap, 1, Backend::Heap, true),
        (2, Backend::RocksDb, 1, Backend::Heap, true),
        (2, Backend::Heap, 3, Backend::RocksDb, false),
        (2, Backend::RocksDb, 3, Backend::RocksDb, false),
    ] {
        let (what, rows, _) =
            fail_stop_and_resume::<SlidingRow, _>("sliding", case, |fail_at, out, per_poll| {
                build_sliding(records.clone(), out, fail_at, per_poll)
            });
        assert_rows(&what, &rows, &expected);
    }
}

/// Rules of the broadcast-state test: a record of key `k` reads rule `k % RULES`.
const RULES: u32 = 7;

type Answered = (u32, i64, i64, Option<i64>); // key, time, index, the rule's value then

/// `n` updates of the rules, `(rule, time, value)`, at distinct times 40 ms apart
/// (plus up to 9 ms), out of order by up to `SLIDING_DISORDER` ms.
fn rule_updates(n: usize) -> Vec<Valued> {
    let mut state = 0x7a1e_u64;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let mut updates: Vec<(i64, Valued)> = (0..n as i64)
        .map(|i| {
            let time = 1_000_000 + i * 40 + next(10) as i64;
            let rule = next(u64::from(RULES)) as u32;
            let arrival = time + next(SLIDING_DISORDER as u64) as i64;
            (arrival, (rule, time, next(1_000) as i64))
        })
        .collect();
    updates.sort();
    updates.into_iter().map(|(_, update)| update).collect()
}

/// Each record answered with the value its rule had at the record's time: the
/// update of the rule with the latest time not after it.
fn rules_expected(records: &[Valued], updates: &[Valued]) -> Vec<Answered> {
    let mut out: Vec<Answered> = records
        .iter()
        .map(|&(key, time, index)| {
            let value = updates
                .iter()
                .filter(|u| u.0 == key % RULES && u.1 <= time)
                .max_by_key(|u| u.1)
                .map(|u| u.2);
            (key, time, index, value)
        })
        .collect();
    out.sort();
    out
}

/// Keeps every rule's values by time in the broadcast state, and answers each
/// record once the watermark passes its time (so every update up to it is in)
/// with its rule's value as of that time: the same answer on every subtask and
/// in every run, whatever the interleaving of the two inputs.
struct RuleLookup {
    pending: weir::dataflow::KeyedStateHandle<weir::state::ListState<u32, Valued>>,
}

impl weir::dataflow::broadcast::KeyedBroadcastProcessFunction<u32, Valued, Valued> for RuleLookup {
    type Out = Answered;
    type Key = (u32, i64);
    type Value = i64;

    fn process(
        &mut self,
        value: Valued,
        _: &weir::dataflow::broadcast::BroadcastState<(u32, i64), i64>,
        cx: &mut weir::dataflow::process::ProcessContext<'_, u32, Answered>,
    ) -> Result<()> {
        cx.register_event_time_timer(weir::dataflow::Timestamp(value.1));
        self.pending.lock()?.add(*cx.key(), value)?;
        Ok(())
    }

    fn process_broadcast(
        &mut self,
        (rule, time, value): Valued,
        state: &mut weir::dataflow::broadcast::BroadcastState<(u32, i64), i64>,
        _: &mut weir::dataflow::broadcast::BroadcastContext<'_, Answered>,
    ) -> Result<()> {
        state.insert((rule, time), value);
        Ok(())
    }

    fn on_timer(
        &mut self,
        time: weir::dataflow::Timestamp,
        _: weir::dataflow::process::TimeDomain,
        state: &weir::dataflow::broadcast::BroadcastState<(u32, i64), i64>,
        cx: &mut weir::dataflow::process::ProcessContext<'_, u32, Answered>,
    ) -> Result<()> {
        let key = *cx.key();
        let mut pending = self.pending.lock()?;
        for record in pending.take(&key)? {
            if record.1 > time.0 {
                pending.add(key, record)?;
                continue;
            }
            let rule = key % RULES;
            let value = state
                .range((rule, i64::MIN)..=(rule, record.1))
                .next_back()
                .map(|(_, v)| *v);
            cx.emit((key, record.1, record.2, value));
        }
        Ok(())
    }
}

fn build_rules(
    records: Vec<Valued>,
    updates: Vec<Valued>,
    out: PathBuf,
    fail_at: Option<(i64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    move |job: &JobBuilder| {
        let rules = valued_source(job, "rules", &updates, per_poll, false);
        failing_records(job, &records, &fail_at, per_poll)
            .connect_broadcast(&rules)
            .process("rule-lookup", |cx| {
                Ok(RuleLookup {
                    pending: cx.keyed_state(|backend| {
                        weir::state::ListState::in_backend(backend, "pending")
                    })?,
                })
            })
            .uid("rule-lookup")
            .sink(
                "epoch-sink",
                EpochFileSink::<Answered>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// Broadcast state: every record reads the rules the broadcast side put into the
/// state, as of its time, and gets the answer a reference computes, across a task
/// failure (restored from the last checkpoint) and a resume from a checkpoint or
/// savepoint at more and at fewer subtasks and on the other backend. The state is
/// checkpointed once (by subtask 0), so subtasks added by the rescale answer from
/// the same restored rules as the others.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn broadcast_state_survives_failures_and_resumes_on_every_subtask_at_any_parallelism() {
    let records = sliding_input(12_000);
    let updates = rule_updates(3_000);
    let expected = rules_expected(&records, &updates);
    assert!(expected.iter().filter(|r| r.3.is_none()).count() < 100);
    for case in [
        (2, Backend::Heap, 3, Backend::RocksDb, false),
        (3, Backend::RocksDb, 1, Backend::Heap, true),
        (2, Backend::RocksDb, 4, Backend::RocksDb, true),
    ] {
        let (what, rows, _) =
            fail_stop_and_resume::<Answered, _>("rules", case, |fail_at, out, per_poll| {
                build_rules(records.clone(), updates.clone(), out, fail_at, per_poll)
            });
        assert_rows(&what, &rows, &expected);
    }
}

/// `n` versions of the 37 keys of `sliding_input`, `(key, time, value)`, at
/// distinct times 10 ms apart (plus up to 9 ms), out of order by up to
/// `SLIDING_DISORDER` ms; one in eight is a deletion (a negative value).
fn table_updates(n: usize) -> Vec<Valued> {
    let mut state = 0x7ab1e_u64;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let mut updates: Vec<(i64, Valued)> = (0..n as i64)
        .map(|i| {
            let time = 999_000 + i * 10 + next(10) as i64;
            let key = next(37) as u32;
            let value = match next(8) {
                0 => -1,
                _ => next(1_000) as i64,
            };
            let arrival = time + next(SLIDING_DISORDER as u64) as i64;
            (arrival, (key, time, value))
        })
        .collect();
    updates.sort();
    updates.into_iter().map(|(_, update)| update).collect()
}

/// Each record with its key's value at its time: the latest version not after it,
/// unless that is a deletion.
fn temporal_expected(records: &[Valued], updates: &[Valued]) -> Vec<Answered> {
    let mut out: Vec<Answered> = records
        .iter()
        .map(|&(key, time, index)| {
            let value = updates
                .iter()
                .filter(|u| u.0 == key && u.1 <= time)
                .max_by_key(|u| u.1)
                .and_then(|u| (u.2 >= 0).then_some(u.2));
            (key, time, index, value)
        })
        .collect();
    out.sort();
    out
}

fn build_temporal(
    records: Vec<Valued>,
    updates: Vec<Valued>,
    out: PathBuf,
    fail_at: Option<(i64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    move |job: &JobBuilder| {
        let table =
            valued_source(job, "versions", &updates, per_poll, false).key_by(|u: &Valued| u.0);
        failing_records(job, &records, &fail_at, per_poll)
            .temporal_join(
                &table,
                |u: Valued| (u.2 >= 0).then_some(u.2),
                Duration::from_secs(60),
                |key: &u32, r: Valued, value: Option<&i64>| Some((*key, r.1, r.2, value.copied())),
            )
            .uid("temporal-join")
            .sink(
                "epoch-sink",
                EpochFileSink::<Answered>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// An event-time temporal join: each record joins its key's version valid at its
/// time (deletions included) on random out-of-order input on both sides, equal to
/// a reference across a task failure and resumes from a checkpoint or savepoint at
/// another parallelism and on the other backend.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn temporal_joins_survive_failures_and_resume_across_backends_and_parallelism() {
    let records = sliding_input(12_000);
    let updates = table_updates(12_000);
    let expected = temporal_expected(&records, &updates);
    let (joined, deleted) = (
        expected.iter().filter(|r| r.3.is_some()).count(),
        updates.iter().filter(|u| u.2 < 0).count(),
    );
    assert!(joined > 10_000 && deleted > 1_000, "{joined} {deleted}");
    for case in [
        (2, Backend::Heap, 3, Backend::RocksDb, false),
        (3, Backend::RocksDb, 1, Backend::Heap, true),
        (2, Backend::RocksDb, 3, Backend::RocksDb, false),
    ] {
        let (what, rows, _) =
            fail_stop_and_resume::<Answered, _>("temporal", case, |fail_at, out, per_poll| {
                build_temporal(records.clone(), updates.clone(), out, fail_at, per_poll)
            });
        assert_rows(&what, &rows, &expected);
    }
}

/// Writes `updates` to `topic` as a table's changelog through the exactly-once
/// Kafka sink, failing once on the way: `(key, value)` upserts, deletions (negative
/// values) tombstones, each record's timestamp its event time.
fn write_changelog(bootstrap: &str, topic: &str, updates: &[Valued], dir: &Path) {
    use weir::sinks::kafka::{upsert_json, KafkaSink, KafkaSinkConfig};
    let failed = Arc::new(AtomicBool::new(false));
    let (updates, config) = (updates.to_vec(), KafkaSinkConfig::new(bootstrap, topic));
    let fail = failed.clone();
    let job = CheckpointedJob::spawn(
        job_config_on("changelog", 1, Backend::Heap, dir),
        settings(dir, 20),
        move |job: &JobBuilder| {
            valued_source(job, "changes", &updates, 50, false)
                .transform("fail-once", {
                    let failed = fail.clone();
                    move |_| FailOnce {
                        at: 500,
                        failed: failed.clone(),
                    }
                })
                .uid("fail-once")
                .map(|u: Valued| (u.0.to_string(), (u.2 >= 0).then_some(u.2), u.1))
                .uid("upserts")
                .sink(
                    "changelog",
                    KafkaSink::factory(config.clone(), upsert_json::<i64>()),
                )
                .uid("changelog");
        },
        Arc::new(NoListener),
    )
    .unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert_eq!(summary.restarts, 1);
    assert!(failed.load(Ordering::SeqCst));
}

/// The table side of the temporal join read back from the changelog `topic`:
/// `(key, time, value)` with a tombstone as a negative value, its time the record's.
fn build_upsert_temporal(
    records: Vec<Valued>,
    (bootstrap, topic): (String, String),
    out: PathBuf,
    fail_at: Option<(i64, Arc<AtomicBool>)>,
    per_poll: usize,
) -> impl Fn(&JobBuilder) + Send + Sync {
    use weir::dataflow::Timestamp;
    use weir::sources::kafka::{upsert_json, KafkaRecord, KafkaSource, KafkaSourceConfig};
    move |job: &JobBuilder| {
        let mut config = KafkaSourceConfig::new(&bootstrap, &topic, "weir-upsert-test");
        config.bounded = true;
        let time = |r: &KafkaRecord<Option<i64>>| Timestamp(r.timestamp.unwrap_or(0));
        let table = job
            .source(
                "versions",
                WatermarkStrategy::bounded_out_of_orderness(
                    Duration::from_millis(SLIDING_DISORDER as u64),
                    time,
                ),
                KafkaSource::factory(config, upsert_json::<i64>()),
            )
            .uid("versions")
            .map(|r: KafkaRecord<Option<i64>>| -> Valued {
                let key = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
                (
                    key.and_then(|k| k.parse().ok()).unwrap_or(u32::MAX),
                    r.timestamp.unwrap_or(0),
                    r.value.unwrap_or(-1),
                )
            })
            .uid("versions-valued")
            .with_timestamps(|u: &Valued| Timestamp(u.1))
            .key_by(|u: &Valued| u.0);
        failing_records(job, &records, &fail_at, per_poll)
            .temporal_join(
                &table,
                |u: Valued| (u.2 >= 0).then_some(u.2),
                Duration::from_secs(60),
                |key: &u32, r: Valued, value: Option<&i64>| Some((*key, r.1, r.2, value.copied())),
            )
            .uid("temporal-join")
            .sink(
                "epoch-sink",
                EpochFileSink::<Answered>::factory(out.clone()),
            )
            .uid("epoch-sink");
    }
}

/// Upsert Kafka: a table's changelog written through the exactly-once Kafka sink
/// across a task failure holds each upsert and tombstone once (read from the
/// broker's log by an independent reader), with the change's event time as the
/// record's timestamp; read back by the Kafka source as a table (tombstones as
/// deletions), it is the versioned side of a temporal join equal to the reference,
/// across a task failure and resumes at another parallelism and backend.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn upsert_kafka_tables_round_trip_exactly_once_and_version_a_temporal_join() {
    use common::kafka_services::{broker, python, CREATE_TOPIC};
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-upsert-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "3"]);
    let records = sliding_input(6_000);
    let updates = table_updates(6_000);
    let dir = tempfile::tempdir().unwrap();
    write_changelog(&bootstrap, &topic, &updates, dir.path());

    let view = weir::sinks::kafka_log::committed_view(&bootstrap, &topic).unwrap();
    assert_eq!(view.pending(), 0);
    let mut written: Vec<Valued> = view
        .records()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let value = r
                .value
                .as_ref()
                .map_or(-1, |v| serde_json::from_slice(v).unwrap());
            (key.parse().unwrap(), r.timestamp, value)
        })
        .collect();
    written.sort();
    let mut sorted = updates.clone();
    sorted.sort();
    assert_eq!(
        written, sorted,
        "each change once, tombstones without a value"
    );
    assert!(view.records().any(|r| r.value.is_none()));

    let expected = temporal_expected(&records, &updates);
    for case in [
        (2, Backend::Heap, 3, Backend::RocksDb, false),
        (3, Backend::RocksDb, 1, Backend::Heap, true),
    ] {
        let source = (bootstrap.clone(), topic.clone());
        let (what, rows, _) =
            fail_stop_and_resume::<Answered, _>("upsert", case, |fail_at, out, per_poll| {
                build_upsert_temporal(records.clone(), source.clone(), out, fail_at, per_poll)
            });
        assert_rows(&what, &rows, &expected);
    }
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// Distinct keys of [`run_distinct_keys`].
const DISTINCT_KEYS: u64 = 3_000_000;

/// Counts `DISTINCT_KEYS` distinct keys (generated, not held in memory) on
/// `backend` with checkpoints; returns the status, the output directory and the
/// process's peak memory before the output is read.
fn run_distinct_keys(backend: StateBackend, dir: &Path) -> (JobStatus, PathBuf, u64) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = JobConfig {
        state_backend: backend,
        ..job_config("distinct", 2)
    };
    let job = CheckpointedJob::spawn(
        config,
        settings(dir, 500),
        move |job: &JobBuilder| {
            job.source(
                "numbers",
                WatermarkStrategy::none(),
                weir::sources::SequenceSource::factory(0, DISTINCT_KEYS as i64 - 1),
            )
            .uid("numbers")
            .map(|n: i64| (n as u32, n as u64))
            .uid("pairs")
            .key_by(|r: &(u32, u64)| r.0)
            .process("running-count", |cx| RunningCount::open(cx, None))
            .uid("running-count")
            .sink(
                "epoch-sink",
                EpochFileSink::<(u32, u64)>::factory(out.clone()),
            )
            .uid("epoch-sink");
        },
        Arc::new(NoListener),
    )
    .unwrap();
    let summary = job.wait().unwrap();
    (summary.status, dir.join("out"), peak_rss_mib())
}

/// State larger than RocksDB's memory budget: 3M distinct keys (on the heap they
/// take well over 100 MiB) under a 16 MiB block cache (memtables included); the
/// process's peak memory stays within a fixed allowance over the budget, and every
/// key is counted once.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_state_beyond_its_memory_budget_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let backend = StateBackend::RocksDb(RocksDbConfig {
        dir: dir.path().join("state"),
        block_cache_bytes: 16 << 20,
        write_buffer_bytes: 4 << 20,
        record_cache_entries: 10_000,
        background_jobs: 1,
    });
    let (status, out, peak) = run_distinct_keys(backend, dir.path());
    assert_eq!(status, JobStatus::Finished);
    println!("peak resident memory: {peak} MiB");
    assert!(
        peak < MEMORY_ALLOWANCE_MIB,
        "peak resident memory {peak} MiB with a 16 MiB RocksDB budget"
    );
    let output = read_committed::<(u32, u64)>(&out).unwrap();
    assert_eq!(output.len() as u64, DISTINCT_KEYS);
    assert!(output.iter().all(|&(_, count)| count == 1));
}

/// What the process may take beyond RocksDB's budget: the runtime, channels and
/// batches, the record caches, RocksDB's own allocations outside the block cache
/// and the allocator's slack. The heap backend holding the same keys exceeds it.
const MEMORY_ALLOWANCE_MIB: u64 = 150;

/// The same job on the heap, to show the bound above means something: its peak
/// memory exceeds the allowance.
#[test]
fn heap_state_of_the_same_keys_exceeds_the_rocksdb_allowance() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, peak) = run_distinct_keys(StateBackend::Heap, dir.path());
    assert_eq!(status, JobStatus::Finished);
    println!("peak resident memory: {peak} MiB");
    assert!(
        peak > MEMORY_ALLOWANCE_MIB,
        "peak resident memory {peak} MiB on the heap"
    );
    assert_eq!(
        read_committed::<(u32, u64)>(&out).unwrap().len() as u64,
        DISTINCT_KEYS
    );
}

/// Two workers of a [`LocalCluster`], each with its own data plane on loopback,
/// building the job with `build`.
fn local_cluster(
    config: JobConfig,
    checkpointing: CheckpointingConfig,
    build: impl Fn(&JobBuilder) + Send + Sync + 'static,
    workers: &[u32],
) -> (LocalCluster, Resolver) {
    let resolve = resolver(config, checkpointing, build);
    let cluster = LocalCluster::new();
    for &id in workers {
        add_worker(&cluster, &resolve, id);
    }
    (cluster, resolve)
}

/// What a worker of these tests runs: `build()`'s job with `config` and
/// `checkpointing`, its records given their wire codec.
fn resolver(
    config: JobConfig,
    checkpointing: CheckpointingConfig,
    build: impl Fn(&JobBuilder) + Send + Sync + 'static,
) -> Resolver {
    let build: Arc<dyn Fn(&JobBuilder) + Send + Sync> = Arc::new(move |job: &JobBuilder| {
        job.wire_codec::<(u32, u64)>();
        build(job);
    });
    Arc::new(move |_: &Deployment| Ok((config.clone(), checkpointing.clone(), build.clone())))
}

fn add_worker(cluster: &LocalCluster, resolve: &Resolver, id: u32) {
    let secret = weir::net::Secret::new("the test cluster's secret").unwrap();
    let network = Network::bind(WorkerId(id), "127.0.0.1:0", secret).unwrap();
    cluster
        .add_worker(network, resolve.clone(), Arc::new(NoListener))
        .unwrap();
}

/// `build()`'s job named `name` on a [`LocalCluster`] of workers 1 and 2,
/// checkpointing every `interval_ms` under `dir`.
fn spawn_on_local_cluster<B: Fn(&JobBuilder) + Send + Sync + 'static>(
    dir: &Path,
    name: &str,
    interval_ms: u64,
    build: impl Fn() -> B,
) -> (CheckpointedJob, LocalCluster, Resolver) {
    spawn_on_local_cluster_with(name, settings(dir, interval_ms), build)
}

/// `build()`'s job named `name` on a [`LocalCluster`] of workers 1 and 2, with
/// `checkpointing`.
fn spawn_on_local_cluster_with<B: Fn(&JobBuilder) + Send + Sync + 'static>(
    name: &str,
    checkpointing: CheckpointingConfig,
    build: impl Fn() -> B,
) -> (CheckpointedJob, LocalCluster, Resolver) {
    let config = job_config(name, 4);
    let (cluster, resolve) = local_cluster(config.clone(), checkpointing.clone(), build(), &[1, 2]);
    let job = spawn_on(&cluster, config, checkpointing, build());
    (job, cluster, resolve)
}

/// The job `build` builds, coordinated here with `config` and `checkpointing`, on
/// the workers of `cluster`.
fn spawn_on(
    cluster: &LocalCluster,
    config: JobConfig,
    checkpointing: CheckpointingConfig,
    build: impl Fn(&JobBuilder) + Send + Sync + 'static,
) -> CheckpointedJob {
    CheckpointedJob::spawn_on_cluster(
        config,
        checkpointing,
        build,
        Arc::new(NoListener),
        Arc::new(cluster.clone()),
        String::new(),
    )
    .unwrap()
}

#[test]
fn a_job_on_two_workers_checkpoints_and_commits_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 20_000;
    let (job, _, _) = spawn_on_local_cluster(dir.path(), "cluster", 20, || {
        build(n, out.clone(), None, 50)
    });
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert!(!summary.checkpoints.is_empty());
    assert_same(read_output(&out), expected(n), "output");
}

/// A link whose reports of one worker reach the coordinator `delay` late from its
/// `Started` on, as over a slow control plane: the other workers' reports of the
/// same attempt come first.
struct LateStart {
    cluster: LocalCluster,
    late: WorkerId,
    delay: Duration,
}

impl ClusterLink for LateStart {
    fn workers(&self) -> BTreeMap<WorkerId, WorkerInfo> {
        self.cluster.workers()
    }

    fn send(&self, worker: WorkerId, message: ToWorker) -> Result<()> {
        self.cluster.send(worker, message)
    }

    fn reports(&self) -> crossbeam_channel::Receiver<(WorkerId, FromWorker)> {
        let reports = self.cluster.reports();
        let (tx, rx) = crossbeam_channel::unbounded();
        let (late, delay) = (self.late, self.delay);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut until: Option<Instant> = None;
            let mut released = false;
            loop {
                let wait = until.map_or(Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(Instant::now())
                });
                match reports.recv_timeout(wait) {
                    Ok((worker, report))
                        if worker == late
                            && !released
                            && (until.is_some()
                                || matches!(report, FromWorker::Started { .. })) =>
                    {
                        until.get_or_insert_with(|| Instant::now() + delay);
                        held.push((worker, report));
                    }
                    Ok(report) => {
                        if tx.send(report).is_err() {
                            return;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        (released, until) = (true, None);
                        for report in held.drain(..) {
                            let _ = tx.send(report);
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        rx
    }
}

/// The subtasks of the workers that started first may finish before the last
/// worker's start is known: their reports still count, and the job finishes.
#[test]
fn reports_of_subtasks_that_finish_before_every_worker_started_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 2_000;
    let config = job_config("cluster-late-start", 4);
    let checkpointing = settings(dir.path(), 20);
    let build = || build(n, out.clone(), None, 1_000);
    let (cluster, _) = local_cluster(config.clone(), checkpointing.clone(), build(), &[1, 2]);
    let link = LateStart {
        cluster,
        late: WorkerId(2),
        delay: Duration::from_secs(2),
    };
    let job = CheckpointedJob::spawn_on_cluster(
        config,
        checkpointing,
        build(),
        Arc::new(NoListener),
        Arc::new(link),
        String::new(),
    )
    .unwrap();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done_tx.send(job.wait());
    });
    // Before the fix, worker 1's `Finished` reports were dropped: the job never ended.
    let summary = done
        .recv_timeout(Duration::from_secs(120))
        .expect("the job ends")
        .unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert_same(read_output(&out), expected(n), "output");
}

#[test]
fn a_failed_task_on_a_worker_restarts_the_job_on_every_worker_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 20_000;
    let failed = Arc::new(AtomicBool::new(false));
    let (job, _, _) = spawn_on_local_cluster(dir.path(), "cluster-restart", 10, || {
        build(n, out.clone(), Some((15_000, failed.clone())), 20)
    });
    let summary = job.wait().unwrap();
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(summary.restarts, 1);
    assert!(
        summary.restored_from.is_some(),
        "restored from a checkpoint"
    );
    assert_same(read_output(&out), expected(n), "output");
}

/// A restart on workers after a failure refuses to pass over a corrupt newest
/// checkpoint, as a restart in one process does: its output is committed, and a
/// restore from an older checkpoint would write it again.
#[test]
fn a_restart_on_workers_refuses_to_pass_over_a_corrupt_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 200_000;
    let name = "cluster-corrupt";
    let checkpointing = CheckpointingConfig {
        // Time to corrupt the newest checkpoint between the failure and the restart.
        restart: RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::from_secs(1),
        },
        ..settings(dir.path(), 10)
    };
    let (job, cluster, _) =
        spawn_on_local_cluster_with(name, checkpointing, || build(n, out.clone(), None, 5));
    let live = job.live();
    while live.checkpoints().len() < 3 {
        assert!(!job.is_finished(), "the job ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.remove_worker(WorkerId(2));
    while live.status() != JobStatus::Restarting {
        assert!(!job.is_finished(), "the job ended without restarting");
        std::thread::sleep(Duration::from_millis(1));
    }
    let job_dir = dir.path().join("checkpoints").join(name);
    let newest = std::fs::read_dir(&job_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").exists())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok())
        })
        .max()
        .unwrap();
    let metadata = job_dir.join(format!("chk-{newest}/_metadata"));
    let mut bytes = std::fs::read(&metadata).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&metadata, bytes).unwrap();
    let message = match job.wait() {
        Ok(summary) => panic!(
            "the restart passed over the corrupt chk-{newest} to {:?}",
            summary.restored_from
        ),
        Err(refused) => refused.to_string(),
    };
    assert!(
        message.contains(&format!("chk-{newest}")) && message.contains("--fallback-past-corrupt"),
        "{message}"
    );
}

/// `build()`'s job named `name` at parallelism 4 on `backend`, on a [`LocalCluster`]
/// of `workers`, each with its local state (and standby copies) in a directory of
/// its own under `dir`, as on separate hosts.
fn spawn_on_workers_of_their_own<B: Fn(&JobBuilder) + Send + Sync + 'static>(
    dir: &Path,
    name: &str,
    backend: Backend,
    checkpointing: CheckpointingConfig,
    workers: &[u32],
    build: impl Fn() -> B,
) -> (CheckpointedJob, LocalCluster) {
    let cluster = LocalCluster::new();
    for &id in workers {
        let config = job_config_on(name, 4, backend, &dir.join(format!("w{id}")));
        add_worker(
            &cluster,
            &resolver(config, checkpointing.clone(), build()),
            id,
        );
    }
    let config = job_config_on(name, 4, backend, &dir.join("coordinator"));
    let job = spawn_on(&cluster, config, checkpointing, build());
    (job, cluster)
}

/// Restored on two workers, a checkpoint's keyed state is read once in all, each
/// worker reading the key groups of its own subtasks (and all operator state, which
/// is small); not once per worker.
#[test]
fn each_worker_restores_only_the_keyed_state_of_its_own_subtasks() {
    let mut backends = vec![Backend::Heap];
    if cfg!(feature = "rocksdb") {
        backends.push(Backend::RocksDb);
    }
    for backend in backends {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let n = 20_000;
        let name = "cluster-share";
        let failed = Arc::new(AtomicBool::new(false));
        let build_job = || build(n, out.clone(), Some((15_000, failed.clone())), 20);
        let mut checkpointing = settings(dir.path(), 10);
        // The checkpoint restored from is read afterwards.
        checkpointing.coordinator.retention = 10_000;
        let (job, _) = spawn_on_workers_of_their_own(
            dir.path(),
            name,
            backend,
            checkpointing,
            &[1, 2],
            build_job,
        );
        let live = job.live();
        let summary = job.wait().unwrap();
        assert!(
            failed.load(Ordering::SeqCst),
            "{backend:?}: the failure was injected"
        );
        assert_eq!(summary.restarts, 1, "{backend:?}");
        let restored = summary.restored_from.expect("restored from a checkpoint");
        let metadata = weir::checkpoint::CheckpointMetadata::decode(
            &std::fs::read(
                dir.path()
                    .join("checkpoints")
                    .join(name)
                    .join(format!("chk-{}/_metadata", restored.get())),
            )
            .unwrap(),
        )
        .unwrap();
        let (mut keyed, mut operator) = (0, 0);
        for state in metadata
            .operators
            .values()
            .flat_map(|o| o.subtasks.values())
        {
            keyed += state.keyed.iter().map(|k| k.handle.size).sum::<u64>()
                + state.native.iter().map(|n| n.size()).sum::<u64>();
            operator += state.operator.iter().map(|h| h.size).sum::<u64>();
        }
        assert!(keyed > 0, "{backend:?}");
        assert_eq!(
            live.restore().bytes_read,
            keyed + 2 * operator,
            "{backend:?}: keyed state read once, operator state by both workers"
        );
        assert_same(read_output(&out), expected(n), "output");
    }
}

#[test]
fn a_lost_worker_is_replaced_and_the_job_recovers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 30_000;
    let (job, cluster, resolve) = spawn_on_local_cluster(dir.path(), "cluster-lost", 10, || {
        build(n, out.clone(), None, 10)
    });
    let live = job.live();
    while live.checkpoints().len() < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Worker 2 is lost; worker 3 takes its slots in the next attempt.
    add_worker(&cluster, &resolve, 3);
    cluster.remove_worker(WorkerId(2));
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert_eq!(summary.restarts, 1);
    assert!(
        summary.restored_from.is_some(),
        "restored from a checkpoint"
    );
    assert_same(read_output(&out), expected(n), "output");
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_a_lost_workers_subtasks_restore_from_the_standby_copies_where_they_move() {
    a_lost_workers_subtasks_restore_from_the_standby_copies_where_they_move(Backend::RocksDb);
}

#[test]
fn heap_a_lost_workers_subtasks_restore_from_the_standby_copies_where_they_move() {
    a_lost_workers_subtasks_restore_from_the_standby_copies_where_they_move(Backend::Heap);
}

/// Three workers run a job with `standbys: 1`; once worker 2 keeps a standby copy
/// of subtask 0 (which runs on worker 1), worker 1 is lost: subtask 0 moves to
/// worker 2 and opens the copy there, and the output is exact.
fn a_lost_workers_subtasks_restore_from_the_standby_copies_where_they_move(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 100_000;
    let name = "cluster-standby";
    let checkpointing = CheckpointingConfig {
        standbys: 1,
        ..settings(dir.path(), 20)
    };
    let build_job = || build(n, out.clone(), None, 10);
    let (job, cluster) = spawn_on_workers_of_their_own(
        dir.path(),
        name,
        backend,
        checkpointing,
        &[1, 2, 3],
        build_job,
    );
    let live = job.live();
    // Slots go to workers 1, 2, 3 in turn: subtask 0 runs on worker 1, and moves to
    // worker 2 if worker 1 is lost, which therefore keeps its standby copy: a native
    // RocksDB checkpoint (`chk-<n>`), or the heap state's objects (`heap/`).
    let root = match backend {
        Backend::RocksDb => "w2/state/.standby",
        Backend::Heap => "w2/local/.standby",
    };
    let standby = dir.path().join(root).join(name).join("running-count/0");
    let has_copy = || {
        let entries = |dir: &Path| {
            std::fs::read_dir(dir)
                .map(|entries| entries.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        match backend {
            Backend::RocksDb => entries(&standby)
                .iter()
                .any(|name| name.to_string_lossy().starts_with("chk-")),
            Backend::Heap => !entries(&standby.join("heap")).is_empty(),
        }
    };
    while !has_copy() {
        assert!(
            live.status() != JobStatus::Finished,
            "the job ended before worker 2 kept a standby copy"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Worker 1 is lost and not replaced: its subtasks move to the workers left, the
    // others stay where they were.
    cluster.remove_worker(WorkerId(1));
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert_eq!(summary.restarts, 1);
    let restore = live.restore();
    // The moved subtask opened (at least some files of) worker 2's standby copy.
    assert!(restore.bytes_standby > 0, "{restore:?}");
    match backend {
        // The subtasks that stayed opened their own local copies.
        Backend::RocksDb => assert!(restore.bytes_local > restore.bytes_standby, "{restore:?}"),
        // Heap state has no local copies: the subtasks that stayed downloaded.
        Backend::Heap => {
            assert_eq!(restore.bytes_local, restore.bytes_standby, "{restore:?}");
            assert!(restore.bytes_downloaded > 0, "{restore:?}");
        }
    }
    assert_same(read_output(&out), expected(n), "output");
}

#[test]
fn live_queries_of_keyed_state_agree_with_the_committed_output() {
    live_queries_agree_with_the_committed_output(Backend::Heap);
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_live_queries_of_keyed_state_agree_with_the_committed_output() {
    live_queries_agree_with_the_committed_output(Backend::RocksDb);
}

/// The committed counts of each key by the epoch that committed them (an epoch's
/// file holds what its checkpoint covers).
fn committed_by_epoch(dir: &Path) -> BTreeMap<u32, Vec<(u64, u64)>> {
    let mut by_key: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".jsonl"))
        else {
            continue;
        };
        let epoch: u64 = stem.split('-').nth(1).unwrap().parse().unwrap();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let (key, count): (u32, u64) = serde_json::from_str(line).unwrap();
            by_key.entry(key).or_default().push((epoch, count));
        }
    }
    by_key
}

/// Lookups and scans of a running job's counts, concurrent with its processing, a
/// failure and the restart: each answer holds at least what the output committed
/// by the answer's checkpoint holds, and at most the key's final count.
fn live_queries_agree_with_the_committed_output(backend: Backend) {
    use weir::dataflow::query::{QueryError, QueryPort, StateRequest};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 60_000;
    let failed = Arc::new(AtomicBool::new(false));
    let job = CheckpointedJob::spawn(
        job_config_on("queried", 2, backend, dir.path()),
        settings(dir.path(), 20),
        build(n, out.clone(), Some((40_000, failed.clone())), 20),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = job.live();
    let request = |key: Option<u32>, at_least: Option<u64>, cursor: Option<String>| StateRequest {
        uid: "running-count".into(),
        state: "counts".into(),
        key: key.map(|k| serde_json::json!(k)),
        limit: 5,
        cursor,
        at_least_checkpoint: at_least,
    };
    let ask = |request: &StateRequest| {
        QueryPort::answer(|| live.query_port(), request, Duration::from_secs(10))
    };
    // (key, count, checkpoint of the answer)
    let mut seen: Vec<(u32, u64, u64)> = Vec::new();
    let (mut scans, mut bounded, mut newest) = (0, 0, 0);
    let mut i: u32 = 0;
    while !matches!(
        live.status(),
        JobStatus::Finished | JobStatus::Cancelled | JobStatus::Suspended
    ) {
        i += 1;
        let key = i * 7 % KEYS;
        let at_least = (i % 10 == 0 && newest > 0).then_some(newest + 1);
        match ask(&request(Some(key), at_least, None)) {
            Ok(answer) => {
                let position = answer.positions[0];
                if let Some(asked) = at_least {
                    assert!(position.checkpoint >= Some(asked), "{answer:?}");
                    bounded += 1;
                }
                if let (Some(entry), Some(checkpoint)) =
                    (answer.entries.first(), position.checkpoint)
                {
                    assert_eq!(entry.key, serde_json::json!(key));
                    seen.push((key, entry.value.as_u64().unwrap(), checkpoint));
                    newest = newest.max(checkpoint);
                }
            }
            // Between attempts, or at the end.
            Err(QueryError::NotRunning(_) | QueryError::Ended(_)) => {}
            Err(e) => panic!("{e}"),
        }
        if i % 25 == 0 {
            // A whole scan, page by page: every key once.
            let mut keys = Vec::new();
            let mut cursor = None;
            let complete = loop {
                match ask(&request(None, None, cursor.clone())) {
                    Ok(page) => {
                        assert!(page.entries.len() <= 5, "{page:?}");
                        keys.extend(page.entries.iter().map(|e| e.key.as_u64().unwrap()));
                        match page.next {
                            Some(next) => cursor = Some(next),
                            None => break true,
                        }
                    }
                    Err(QueryError::NotRunning(_) | QueryError::Ended(_)) => break false,
                    Err(e) => panic!("{e}"),
                }
            };
            if complete {
                let distinct: std::collections::BTreeSet<u64> = keys.iter().copied().collect();
                assert_eq!(distinct.len(), keys.len(), "a key twice: {keys:?}");
                scans += 1;
            }
        }
    }
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Finished);
    assert!(failed.load(Ordering::SeqCst) && summary.restarts == 1);
    assert_same(read_output(&out), expected(n), "output");
    let committed = committed_by_epoch(&out);
    let total = |key: u32| committed[&key].iter().map(|&(_, c)| c).max().unwrap();
    assert!(
        seen.len() >= 20,
        "only {} answers with a position",
        seen.len()
    );
    assert!(
        scans >= 1 && bounded >= 1,
        "{scans} scans, {bounded} bounded lookups"
    );
    for &(key, count, checkpoint) in &seen {
        let covered = committed[&key]
            .iter()
            .filter(|&&(epoch, _)| epoch <= checkpoint)
            .map(|&(_, c)| c)
            .max()
            .unwrap_or(0);
        assert!(
            covered <= count && count <= total(key),
            "key {key}: {count} at checkpoint {checkpoint}, committed by then {covered}, in all {}",
            total(key)
        );
    }
}

/// A window's retention keeps its state after it fires (Kafka Streams' retention
/// of a window store): a live query of a key's window contents, once the
/// watermark passed all but the last of its 100 ms windows, finds every window
/// with retention and only the open one without, on either backend; the results
/// are the same.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn fired_windows_stay_readable_for_their_retention() {
    use weir::dataflow::query::{QueryError, QueryPort, StateRequest};
    use weir::dataflow::window::WindowAssigner;
    use weir::dataflow::Timestamp;
    use weir::state::Count;
    // Keys 0..40 at times 0..2000: every key in every 100 ms window.
    let records: Vec<(u32, i64)> = (0..2_000i64).map(|i| ((i % 40) as u32, i)).collect();
    for backend in [Backend::Heap, Backend::RocksDb] {
        for retention in [Duration::ZERO, Duration::from_secs(3600)] {
            let what = format!("{backend:?}, retention {retention:?}");
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out");
            std::fs::create_dir_all(&out).unwrap();
            let records = Arc::new(records.clone());
            let job = CheckpointedJob::spawn(
                job_config_on("retained", 2, backend, dir.path()),
                settings(dir.path(), 20),
                move |job: &JobBuilder| {
                    let records = records.clone();
                    job.source(
                        "events",
                        WatermarkStrategy::bounded_out_of_orderness(
                            Duration::from_millis(5),
                            |e: &(u32, i64)| Timestamp(e.1),
                        ),
                        move |_: &weir::dataflow::SubtaskInfo| HeldSource {
                            records: records.clone(),
                            next: 0,
                            hold: true,
                        },
                    )
                    .uid("events")
                    .parallelism(1)
                    .key_by(|e: &(u32, i64)| e.0)
                    .window(WindowAssigner::tumbling(Duration::from_millis(100)))
                    .retention(retention)
                    .uid("windows")
                    .aggregate(Count, |k, w, c| (*k, w.start, c))
                    .sink(
                        "epoch-sink",
                        EpochFileSink::<(u32, i64, u64)>::factory(out.clone()),
                    )
                    .uid("epoch-sink");
                },
                Arc::new(NoListener),
            )
            .unwrap();
            let live = job.live();
            let request = StateRequest {
                uid: "windows".into(),
                state: "window-contents".into(),
                key: Some(serde_json::json!(7)),
                limit: 10,
                cursor: None,
                at_least_checkpoint: None,
            };
            // Every record in: the watermark at 1993 (the largest time, 1999, less
            // the bound and 1 ms), past the end of every window but [1900, 2000).
            let started = Instant::now();
            let windows = loop {
                match QueryPort::answer(|| live.query_port(), &request, Duration::from_secs(10)) {
                    Ok(answer) if answer.positions[0].watermark >= Some(1_993) => {
                        break answer.entries[0].value.as_array().unwrap().clone();
                    }
                    Ok(_) | Err(QueryError::NotRunning(_)) => {}
                    Err(e) => panic!("{what}: {e}"),
                }
                assert!(!job.is_finished(), "{what}: the job ended");
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{what}: the watermark never reached 1993"
                );
                std::thread::sleep(Duration::from_millis(5));
            };
            let starts: Vec<i64> = windows
                .iter()
                .map(|w| w["start"].as_i64().unwrap())
                .collect();
            let kept: Vec<i64> = match retention.is_zero() {
                true => vec![1_900],
                false => (0..20).map(|w| w * 100).collect(),
            };
            assert_eq!(starts, kept, "{what}");
            // Each window's count of key 7: 2 or 3 records.
            assert!(
                windows
                    .iter()
                    .all(|w| matches!(w["value"].as_u64(), Some(2 | 3))),
                "{what}: {windows:?}"
            );
            job.cancel();
            assert_eq!(job.wait().unwrap().status, JobStatus::Cancelled, "{what}");
        }
    }
}

#[test]
fn queries_after_a_restore_at_another_parallelism_see_at_least_the_savepoints_state() {
    queries_after_a_rescaled_restore(Backend::Heap, Backend::Heap);
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_queries_after_a_restore_at_another_parallelism_and_backend_see_at_least_the_savepoints_state(
) {
    queries_after_a_rescaled_restore(Backend::RocksDb, Backend::Heap);
    queries_after_a_rescaled_restore(Backend::Heap, Backend::RocksDb);
}

/// A job stopped with a savepoint at parallelism 2 and resumed at 3: every key the
/// savepoint holds is found by the subtask that owns it now, with at least its
/// count at the savepoint and at most its final count.
fn queries_after_a_rescaled_restore(before: Backend, after: Backend) {
    use weir::dataflow::query::{QueryError, QueryPort, StateRequest};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 20_000;
    let job = CheckpointedJob::spawn(
        job_config_on("rescaled-queries", 2, before, dir.path()),
        settings(dir.path(), 50),
        build(n, out.clone(), None, 5),
        Arc::new(NoListener),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let savepoint = job.savepoint(true).unwrap();
    assert_eq!(job.wait().unwrap().status, JobStatus::Suspended);
    // Stopped with a savepoint, the job committed everything up to it.
    let mut at_savepoint: BTreeMap<u32, u64> = BTreeMap::new();
    for (key, count) in read_output(&out) {
        let at = at_savepoint.entry(key).or_default();
        *at = (*at).max(count);
    }
    assert!(!at_savepoint.is_empty());
    let mut config = settings(dir.path(), 50);
    config.resume = ResumeFrom::Savepoint(savepoint);
    let resumed = CheckpointedJob::spawn(
        job_config_on("rescaled-queries-2", 3, after, dir.path()),
        config,
        build(n, out.clone(), None, 20),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = resumed.live();
    let total = expected_of(&input(n))
        .into_iter()
        .fold(BTreeMap::new(), |mut m, (k, c)| {
            m.insert(k, c);
            m
        });
    let mut answered = 0;
    while !matches!(
        live.status(),
        JobStatus::Finished | JobStatus::Cancelled | JobStatus::Suspended
    ) {
        for (&key, &saved) in &at_savepoint {
            let request = StateRequest {
                uid: "running-count".into(),
                state: "counts".into(),
                key: Some(serde_json::json!(key)),
                limit: 1,
                cursor: None,
                at_least_checkpoint: None,
            };
            match QueryPort::answer(|| live.query_port(), &request, Duration::from_secs(10)) {
                Ok(answer) => {
                    let entry = answer.entries.first().unwrap_or_else(|| {
                        panic!("key {key} of the savepoint not found: {answer:?}")
                    });
                    let count = entry.value.as_u64().unwrap();
                    assert!(
                        saved <= count && count <= total[&key],
                        "key {key}: {count}, {saved} at the savepoint, {} in all",
                        total[&key]
                    );
                    answered += 1;
                }
                Err(QueryError::NotRunning(_) | QueryError::Ended(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(resumed.wait().unwrap().status, JobStatus::Finished);
    assert_same(read_output(&out), expected(n), "output");
    assert!(answered >= at_savepoint.len(), "{answered} answers");
}

//! The driver: runs attempts of a job, feeds the coordinator, executes its commands.

use super::live::{Both, LiveJob};
use super::{
    CheckpointHistory, CheckpointStats, CheckpointingConfig, Failpoint, JobListener, JobStatus,
    ResumeFrom, RunSummary,
};
use crate::{
    DataflowError, FrozenState, JobBuilder, JobConfig, JobEvent, JobHandle, RestoreState, Result,
};
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_checkpoint::control::ControlReply;
use weir_checkpoint::incremental::{self, UploadCache};
use weir_checkpoint::metadata::{CheckpointMetadata, KeyedStateHandle, SnapshotKind, SubtaskState};
use weir_checkpoint::native::{self, NativeUploads};
use weir_checkpoint::restore::{load_checkpoint, KeyedBlob, NativeRestore, Reader};
use weir_checkpoint::{
    Barrier, CheckpointError, CheckpointId, CheckpointStorage, Command, Coordinator, Event,
    OperatorStates, OperatorUid, RestoreEvent, SkippedCheckpoint, StateWriter, StorageConfig,
    SubtaskAck, SubtaskUpload, UploadError,
};
use weir_state::{KeyGroupRange, MaxParallelism};

type BuildFn = Arc<dyn Fn(&JobBuilder) + Send + Sync>;

enum Request {
    Savepoint {
        stop: bool,
        reply: Sender<Result<String>>,
    },
    Cancel,
}

/// A job running with checkpoints on its own driver thread.
pub struct CheckpointedJob {
    requests: Sender<Request>,
    history: CheckpointHistory,
    live: LiveJob,
    thread: JoinHandle<Result<RunSummary>>,
}

impl CheckpointedJob {
    /// Starts the job: `build` adds the sources, operators and sinks to a fresh
    /// [`JobBuilder`] for every attempt (first start and each restart).
    ///
    /// # Errors
    /// The checkpoint storage cannot be opened (unknown scheme, unreachable bucket).
    pub fn spawn(
        config: JobConfig,
        checkpointing: CheckpointingConfig,
        build: impl Fn(&JobBuilder) + Send + Sync + 'static,
        listener: Arc<dyn JobListener>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("weir-io")
            .build()
            .map_err(|e| DataflowError::checkpoint_caused("could not start the I/O runtime", e))?;
        let storage = runtime
            .block_on(CheckpointStorage::open(&checkpointing.storage))
            .map_err(|e| DataflowError::checkpoint_caused("checkpoint storage", e))?;
        let (requests, requests_rx) = unbounded();
        let history = CheckpointHistory::default();
        let live = LiveJob::with_history(history.clone());
        let driver = Driver {
            config,
            checkpointing,
            build: Arc::new(build),
            listener: Arc::new(Both(live.clone(), listener)),
            live: live.clone(),
            runtime,
            storage,
            requests: requests_rx,
            requests_tx: requests.clone(),
            replies: Arc::default(),
            history: history.clone(),
            failpoint_hits: Arc::new(AtomicU64::new(0)),
            uploads: UploadCache::default(),
            native_uploads: NativeUploads::default(),
            retention: std::sync::Mutex::new(Vec::new()),
            passed_over: std::sync::Mutex::new(Vec::new()),
            attempt_io: std::sync::Mutex::new(Vec::new()),
            nonce: weir_state::unique_id(),
            timeline: weir_state::unique_id(),
        };
        let thread = std::thread::Builder::new()
            .name("weir-checkpoint-driver".into())
            .spawn(move || driver.run())
            .map_err(|e| {
                DataflowError::checkpoint_caused("could not start the driver thread", e)
            })?;
        Ok(Self {
            requests,
            history,
            live,
            thread,
        })
    }

    /// Triggers a savepoint and waits until it is written; `stop` ends the job after
    /// it (stop-with-savepoint). Returns the savepoint's location.
    ///
    /// # Errors
    /// The job has ended, or the savepoint failed.
    pub fn savepoint(&self, stop: bool) -> Result<String> {
        let (reply, answer) = bounded(1);
        self.requests
            .send(Request::Savepoint { stop, reply })
            .map_err(|_| DataflowError::checkpoint("savepoint", "the job is not running"))?;
        answer.recv().map_err(|_| {
            DataflowError::checkpoint("savepoint", "the job ended before the savepoint completed")
        })?
    }

    /// Cancels the job.
    pub fn cancel(&self) {
        let _ = self.requests.send(Request::Cancel);
    }

    /// Whether the job has ended (call [`CheckpointedJob::wait`] for the outcome).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// A live view of the job (status, graph, counters, checkpoints) for other
    /// threads; it stays valid after the job ends.
    pub fn live(&self) -> LiveJob {
        self.live.clone()
    }

    /// The last 100 completed checkpoints.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.history.snapshot()
    }

    /// Waits for the job to end.
    ///
    /// # Errors
    /// The job failed and no restart was left.
    pub fn wait(self) -> Result<RunSummary> {
        self.thread.join().unwrap_or_else(|_| {
            Err(DataflowError::checkpoint(
                "driver",
                "the driver thread panicked",
            ))
        })
    }
}

struct Driver {
    config: JobConfig,
    checkpointing: CheckpointingConfig,
    build: BuildFn,
    listener: Arc<dyn JobListener>,
    runtime: tokio::runtime::Runtime,
    storage: CheckpointStorage,
    requests: Receiver<Request>,
    history: CheckpointHistory,
    failpoint_hits: Arc<AtomicU64>,
    /// What incremental checkpoints of the current attempt can refer to again.
    uploads: UploadCache,
    /// The SST files native RocksDB checkpoints of the current attempt uploaded.
    native_uploads: NativeUploads,
    /// Makes this process's shared file names unique.
    nonce: u64,
    /// This start of the job: recorded in every checkpoint it writes, so that a
    /// restart restores only checkpoints of its own timeline (or what it started
    /// from), never those of an earlier run or of a timeline a rollback left.
    timeline: u64,
    /// For requests that arrive through the checkpoint storage (`weir savepoint`).
    requests_tx: Sender<Request>,
    /// Tasks writing the replies to those requests.
    replies: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// What the job is doing, for readers on other threads.
    live: LiveJob,
    /// Retention runs in the background; it is finished before the job ends.
    retention: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Complete checkpoints that could not be restored and that a resume passed
    /// over (only with `fallback_past_corrupt`).
    passed_over: std::sync::Mutex<Vec<CheckpointId>>,
    /// Uploads, metadata writes and deletions of the current attempt: awaited before
    /// the next attempt starts, so a late write of a failed attempt never lands
    /// beside (or after the clean-up of) the next one's.
    attempt_io: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

enum Ended {
    Finished(crate::JobResult),
    Cancelled(Vec<crate::SubtaskMetrics>),
    Suspended(String, Vec<crate::SubtaskMetrics>),
    Failed(DataflowError),
}

enum Internal {
    Uploaded {
        ack: SubtaskAck,
        upload: SubtaskUpload,
    },
    UploadFailed {
        checkpoint: CheckpointId,
        reason: String,
    },
    MetadataDone {
        checkpoint: CheckpointId,
        result: std::result::Result<Option<String>, CheckpointError>,
    },
}

/// Serves savepoint requests left in the checkpoint storage by `weir savepoint`
/// (see [`weir_checkpoint::control`]) until aborted.
async fn poll_control(
    storage: CheckpointStorage,
    job: String,
    requests: Sender<Request>,
    replies: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let taken = match storage.take_control_requests(&job).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!("could not read control requests of job `{job}`: {e}");
                continue;
            }
        };
        for request in taken {
            tracing::info!(
                "savepoint requested through the checkpoint storage (request {}, stop: {})",
                request.id,
                request.stop
            );
            let (reply_tx, reply_rx) = bounded(1);
            if requests
                .send(Request::Savepoint {
                    stop: request.stop,
                    reply: reply_tx,
                })
                .is_err()
            {
                return;
            }
            let (storage, job) = (storage.clone(), job.clone());
            let task = tokio::spawn(async move {
                let answer = tokio::task::spawn_blocking(move || reply_rx.recv()).await;
                let reply = match answer {
                    Ok(Ok(Ok(location))) => ControlReply::Savepoint { location },
                    Ok(Ok(Err(e))) => ControlReply::Failed {
                        reason: e.to_string(),
                    },
                    _ => ControlReply::Failed {
                        reason: "the job ended before the savepoint was taken".into(),
                    },
                };
                if let Err(e) = storage.put_control_reply(&job, &request.id, &reply).await {
                    tracing::warn!("could not answer savepoint request {}: {e}", request.id);
                }
            });
            let mut replies = replies.lock().unwrap_or_else(|p| p.into_inner());
            replies.retain(|t| !t.is_finished());
            replies.push(task);
        }
    }
}

/// Removes the temporary copies a restore left.
fn remove_scratch(native: &NativeRestore) {
    if native.scratch.exists() {
        if let Err(e) = std::fs::remove_dir_all(&native.scratch) {
            tracing::warn!("cannot remove {}: {e}", native.scratch.display());
        }
    }
}

fn hit(driver_hits: &AtomicU64, config: &CheckpointingConfig, step: Failpoint) {
    if let Some((point, nth)) = config.failpoint {
        if point == step && driver_hits.fetch_add(1, Ordering::SeqCst) + 1 >= nth {
            eprintln!("weir: failpoint {step:?} reached: aborting the process");
            std::process::abort();
        }
    }
}

/// The restored state and the checkpoint it came from.
type Loaded = (Option<RestoreState>, Option<CheckpointId>);

/// Where a run starts: a resolved [`ResumeFrom`]. After the first attempt a
/// `LatestCheckpoint` becomes the `Checkpoint` it found (or `Nothing`).
#[derive(Clone, Debug)]
enum Origin {
    Nothing,
    LatestCheckpoint,
    Checkpoint(CheckpointId),
    Savepoint(String),
}

impl From<&ResumeFrom> for Origin {
    fn from(resume: &ResumeFrom) -> Self {
        match resume {
            ResumeFrom::Nothing => Self::Nothing,
            ResumeFrom::LatestCheckpoint => Self::LatestCheckpoint,
            ResumeFrom::Savepoint(url) => Self::Savepoint(url.clone()),
        }
    }
}

/// Why a resume does not fall back past `newest`, a complete checkpoint that cannot
/// be restored: its output may be committed, and a restore from `older` (or from
/// nothing) would write that output again.
fn refuse_fallback(newest: &SkippedCheckpoint, older: Option<CheckpointId>) -> String {
    let fallback = match older {
        Some(older) => format!("checkpoint {older}"),
        None => "the start (no older checkpoint can be restored)".to_string(),
    };
    format!(
        "the newest complete checkpoint, {}, cannot be restored ({}: {}); the sinks may \
         already have committed the output it covers, so resuming from {fallback} would \
         write that output again. Repair or remove checkpoint {}, or resume with \
         --fallback-past-corrupt to accept the duplicates",
        newest.checkpoint, newest.object, newest.reason, newest.checkpoint
    )
}

impl Driver {
    fn status(&self, status: JobStatus) {
        tracing::info!(job = %self.config.name, status = ?status, "job status");
        self.listener.on_status(&self.config.name, status);
    }

    /// Removes what failed, aborted or interrupted checkpoints left behind: their
    /// directories and the shared files no complete checkpoint refers to. Only while
    /// no checkpoint is in flight.
    /// Keeps `task` (I/O of the current attempt) to await before the next attempt.
    fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.attempt_io.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    fn collect_garbage(&self) {
        let job = &self.config.name;
        let retention: Vec<_> =
            std::mem::take(&mut *self.retention.lock().unwrap_or_else(|p| p.into_inner()));
        let attempt_io: Vec<_> =
            std::mem::take(&mut *self.attempt_io.lock().unwrap_or_else(|p| p.into_inner()));
        let result = self.runtime.block_on(async {
            // The failed attempt's uploads and metadata writes finish (or fail) first:
            // a metadata write landing after the clean-up below would make a
            // checkpoint whose state was just deleted look complete.
            for task in attempt_io.into_iter().chain(retention) {
                let _ = task.await;
            }
            self.storage.cleanup_incomplete(job).await?;
            self.storage.delete_unreferenced_shared(job).await
        });
        if let Err(e) = result {
            tracing::warn!("could not clean up after incomplete checkpoints: {e}");
        }
    }

    fn run(self) -> Result<RunSummary> {
        let poller = self.runtime.spawn(poll_control(
            self.storage.clone(),
            self.config.name.clone(),
            self.requests_tx.clone(),
            self.replies.clone(),
        ));
        let result = self.run_attempts();
        poller.abort();
        // Requests nobody will serve now are answered as failed.
        while self.requests.try_recv().is_ok() {}
        let replies: Vec<_> =
            std::mem::take(&mut *self.replies.lock().unwrap_or_else(|p| p.into_inner()));
        self.runtime.block_on(async {
            for reply in replies {
                let _ = tokio::time::timeout(Duration::from_secs(10), reply).await;
            }
        });
        result
    }

    fn run_attempts(&self) -> Result<RunSummary> {
        let started = Instant::now();
        self.status(JobStatus::Created);
        self.collect_garbage();
        let mut origin = Origin::from(&self.checkpointing.resume);
        let mut restarts = 0;
        loop {
            let (restore, restored_from) = if restarts == 0 {
                let loaded = self.load(&origin)?;
                // What this run started from, exactly, for restarts before its own
                // first checkpoint: not "the latest" again, which may be newer by then.
                if let (Origin::LatestCheckpoint, Some(id)) = (&origin, loaded.1) {
                    origin = Origin::Checkpoint(id);
                } else if matches!(origin, Origin::LatestCheckpoint) {
                    origin = Origin::Nothing;
                }
                loaded
            } else {
                self.load_restart(&origin)?
            };
            let next_id = restored_from.map_or(CheckpointId::new(1), |id| id.next());
            let next_id = self.next_checkpoint_id().max(next_id);
            let ended = self.attempt(restore, next_id);
            self.collect_garbage();
            match ended {
                Ended::Finished(result) => {
                    self.status(JobStatus::Finished);
                    return Ok(self.summary(
                        JobStatus::Finished,
                        restarts,
                        restored_from,
                        None,
                        result.metrics,
                        started,
                    ));
                }
                Ended::Cancelled(metrics) => {
                    self.status(JobStatus::Cancelled);
                    return Ok(self.summary(
                        JobStatus::Cancelled,
                        restarts,
                        restored_from,
                        None,
                        metrics,
                        started,
                    ));
                }
                Ended::Suspended(location, metrics) => {
                    self.status(JobStatus::Suspended);
                    return Ok(self.summary(
                        JobStatus::Suspended,
                        restarts,
                        restored_from,
                        Some(location),
                        metrics,
                        started,
                    ));
                }
                Ended::Failed(error) => {
                    self.status(JobStatus::Failing);
                    if !error.is_recoverable() {
                        tracing::info!(job = %self.config.name, "job failed ({error}); a restart cannot help");
                        return Err(error);
                    }
                    restarts += 1;
                    self.live.restarted();
                    let Some(delay) = self.checkpointing.restart.delay(restarts) else {
                        return Err(error);
                    };
                    tracing::warn!(
                        "job `{}` failed ({error}); restart {restarts} in {delay:?}",
                        self.config.name
                    );
                    self.status(JobStatus::Restarting);
                    std::thread::sleep(delay);
                }
            }
        }
    }

    fn summary(
        &self,
        status: JobStatus,
        restarts: u32,
        restored_from: Option<CheckpointId>,
        savepoint: Option<String>,
        metrics: Vec<crate::SubtaskMetrics>,
        started: Instant,
    ) -> RunSummary {
        RunSummary {
            status,
            restarts,
            restored_from,
            savepoint,
            checkpoints: self.history.snapshot(),
            failed_checkpoints: self.live.failed_checkpoints(),
            passed_over_corrupt: self
                .passed_over
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            metrics,
            elapsed: started.elapsed(),
        }
    }

    /// One past the newest checkpoint id ever used under the job directory, so a new
    /// attempt never reuses an id whose files (or metadata) may still exist.
    fn next_checkpoint_id(&self) -> CheckpointId {
        self.runtime
            .block_on(self.storage.list_checkpoints(&self.config.name))
            .ok()
            .and_then(|ids| ids.into_iter().max())
            .map_or(CheckpointId::new(1), |id| id.next())
    }

    /// The state to restart from after a failure: the newest restorable checkpoint
    /// of this run's timeline, or else exactly what the run started from.
    fn load_restart(&self, origin: &Origin) -> Result<Loaded> {
        let scan = self
            .runtime
            .block_on(
                self.storage
                    .latest_valid_of(&self.config.name, Some(self.timeline)),
            )
            .map_err(|e| DataflowError::checkpoint_caused("reading the checkpoints", e))?;
        self.check_passed_over(&scan)?;
        match scan.latest {
            Some(metadata) => self.load_checkpoint(metadata),
            None => self.load(origin),
        }
    }

    /// Refuses to pass over a complete checkpoint that cannot be restored unless
    /// `fallback_past_corrupt` allows it (then records it for the summary).
    fn check_passed_over(&self, scan: &weir_checkpoint::RecoveryScan) -> Result<()> {
        let Some(newest) = scan.skipped.first() else {
            return Ok(());
        };
        let older = scan.latest.as_ref().map(|m| m.checkpoint);
        if !self.checkpointing.fallback_past_corrupt {
            return Err(DataflowError::checkpoint(
                format!("resuming job `{}`", self.config.name),
                refuse_fallback(newest, older),
            ));
        }
        for skipped in &scan.skipped {
            tracing::warn!(
                "passing over checkpoint {} of job `{}` (--fallback-past-corrupt): {}: {}; \
                 output it committed will be written again",
                skipped.checkpoint,
                self.config.name,
                skipped.object,
                skipped.reason
            );
        }
        self.passed_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(scan.skipped.iter().map(|s| s.checkpoint));
        Ok(())
    }

    fn load_checkpoint(&self, metadata: CheckpointMetadata) -> Result<Loaded> {
        let listener = self.listener.as_ref();
        let reader = Reader::Checkpoint(&self.storage);
        let native = self.native_restore();
        let on_restore = |event: &RestoreEvent| listener.on_restore(&metadata.job, event);
        let state =
            self.runtime
                .block_on(load_checkpoint(&reader, &metadata, &on_restore, &native));
        remove_scratch(&native);
        let state = state.map_err(|e| {
            DataflowError::checkpoint_caused(
                format!("restoring checkpoint {}", metadata.checkpoint),
                e,
            )
        })?;
        Ok((Some(state), Some(metadata.checkpoint)))
    }

    fn load(&self, origin: &Origin) -> Result<Loaded> {
        let listener = self.listener.as_ref();
        match origin {
            Origin::Nothing => {
                self.forget_local_copies();
                Ok((None, None))
            }
            Origin::LatestCheckpoint => {
                let scan = self
                    .runtime
                    .block_on(self.storage.latest_valid(&self.config.name))
                    .map_err(|e| DataflowError::checkpoint_caused("reading the checkpoints", e))?;
                self.check_passed_over(&scan)?;
                match scan.latest {
                    Some(metadata) => self.load_checkpoint(metadata),
                    None => {
                        self.forget_local_copies();
                        Ok((None, None))
                    }
                }
            }
            Origin::Checkpoint(id) => {
                let metadata = self
                    .runtime
                    .block_on(self.storage.read_metadata(&self.config.name, *id))
                    .map_err(|e| {
                        DataflowError::checkpoint_caused(
                            format!("reading checkpoint {id}, which this run started from"),
                            e,
                        )
                    })?;
                self.load_checkpoint(metadata)
            }
            Origin::Savepoint(url) => {
                let savepoint = self
                    .runtime
                    .block_on(CheckpointStorage::read_savepoint(
                        &self.checkpointing.savepoints.with_url(url.clone()),
                    ))
                    .map_err(|e| {
                        DataflowError::checkpoint_caused(format!("savepoint `{url}`"), e)
                    })?;
                let metadata = savepoint.metadata().clone();
                let reader = Reader::Savepoint(&savepoint);
                let native = self.native_restore();
                let on_restore = |event: &RestoreEvent| listener.on_restore(&metadata.job, event);
                let state = self.runtime.block_on(load_checkpoint(
                    &reader,
                    &metadata,
                    &on_restore,
                    &native,
                ));
                remove_scratch(&native);
                let state = state.map_err(|e| {
                    DataflowError::checkpoint_caused(format!("restoring savepoint `{url}`"), e)
                })?;
                Ok((Some(state), Some(metadata.checkpoint)))
            }
        }
    }

    /// `<rocksdb dir>/<job>` when the job keeps its state in RocksDB.
    fn rocksdb_job_dir(&self) -> Option<std::path::PathBuf> {
        match &self.config.state_backend {
            weir_state::StateBackend::Heap => None,
            weir_state::StateBackend::RocksDb(rocks) => Some(
                rocks
                    .dir
                    .join(weir_checkpoint::layout::path_segment(&self.config.name)),
            ),
        }
    }

    /// Removes every local copy of a native checkpoint of the job: a fresh start
    /// must not find copies of an earlier run under checkpoint ids it reuses.
    fn forget_local_copies(&self) {
        if let Some(dir) = self.rocksdb_job_dir() {
            native::prune_local(&dir, CheckpointId::new(u64::MAX));
        }
    }

    /// Where native RocksDB checkpoints are read back: local copies under the job's
    /// RocksDB directory, temporary copies beside them (or, on the heap backend, in
    /// the system's temporary directory).
    fn native_restore(&self) -> NativeRestore {
        let local_root = self.rocksdb_job_dir();
        let scratch_name = format!("restore-{}-{:016x}", std::process::id(), self.nonce);
        let scratch = match &local_root {
            Some(root) => root.join(format!(".{scratch_name}")),
            None => std::env::temp_dir().join(format!("weir-{scratch_name}")),
        };
        let new_job = local_root.is_some().then(|| {
            let job = JobBuilder::new(self.config.clone());
            (self.build)(&job);
            let max = MaxParallelism::new(self.config.max_parallelism).unwrap_or_default();
            (max, job.operator_parallelism())
        });
        NativeRestore {
            local_root,
            scratch,
            new_job,
        }
    }

    fn attempt(&self, restore: Option<RestoreState>, next_id: CheckpointId) -> Ended {
        let mut config = self.config.clone();
        config.checkpointing = true;
        config.checkpoint_timeout = Some(self.checkpointing.coordinator.timeout);
        config.timeline = self.timeline;
        if let Some(restore) = &restore {
            if let Err(e) = self.check_restore_fits(restore) {
                return Ended::Failed(e);
            }
        }
        self.uploads.clear();
        self.native_uploads.clear();
        for (uid, subtasks) in restore.iter().flat_map(|r| &r.opened) {
            let uid = OperatorUid::new(uid.as_str());
            for (&subtask, opened) in subtasks {
                self.native_uploads.opened(&uid, subtask, opened);
            }
        }
        config.restore = restore;
        let job = JobBuilder::new(config);
        (self.build)(&job);
        for uid in job.operators_without_uid() {
            tracing::warn!("operator `{uid}` has no uid; its state is keyed by its graph position: set one with .uid(...)");
        }
        let handle = match job.spawn() {
            Ok(handle) => handle,
            Err(e) => return Ended::Failed(e),
        };
        self.live
            .attempt_started(handle.graph(), handle.metrics_view());
        self.status(JobStatus::Running);
        self.drive(handle, next_id)
    }

    fn check_restore_fits(&self, restore: &RestoreState) -> Result<()> {
        let job = JobBuilder::new(self.config.clone());
        (self.build)(&job);
        let uids: BTreeSet<String> = job.operator_uids().into_iter().collect();
        let missing: Vec<&String> = restore
            .operators
            .keys()
            .filter(|uid| !uids.contains(*uid))
            .collect();
        if !missing.is_empty() && !self.checkpointing.allow_non_restored_state {
            return Err(DataflowError::invalid(
                &self.config.name,
                format!(
                    "the restored state has operators the job lacks: {}; pass --allow-non-restored-state to drop their state",
                    missing.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn drive(&self, handle: JobHandle, next_id: CheckpointId) -> Ended {
        let job = self.config.name.clone();
        let max = MaxParallelism::new(self.config.max_parallelism).unwrap_or_default();
        let subtasks = handle.subtasks();
        let mut coordinator =
            Coordinator::new(self.checkpointing.coordinator.clone(), subtasks, next_id);
        let (internal_tx, internal) = unbounded::<Internal>();
        let clock = Instant::now();
        let now = || clock.elapsed().as_millis() as u64;
        // Savepoint requests by id, each answered once (`SavepointDone`/`Failed`).
        let mut waiters: BTreeMap<u64, Sender<Result<String>>> = BTreeMap::new();
        let mut next_request: u64 = 0;
        let ticker = crossbeam_channel::tick(Duration::from_millis(5));
        loop {
            if handle.poll_failure().is_some() {
                for (_, reply) in std::mem::take(&mut waiters) {
                    let _ = reply.send(Err(DataflowError::checkpoint(
                        "savepoint",
                        "the job failed",
                    )));
                }
                return match handle.shutdown() {
                    Err(e) => Ended::Failed(e),
                    Ok(_) => Ended::Failed(DataflowError::checkpoint("job", "a task failed")),
                };
            }
            let mut events = Vec::new();
            select! {
                recv(handle.events()) -> event => match event {
                    Ok(JobEvent::Ack(ack, frozen)) => {
                        if let Some(barrier) = coordinator.barrier_in_flight(ack.checkpoint) {
                            self.upload(ack, frozen, barrier, &job, internal_tx.clone());
                        }
                    }
                    Ok(JobEvent::BarrierDeclined { checkpoint, task, subtask }) => events.push(Event::Declined {
                        now: now(),
                        checkpoint,
                        reason: format!("subtask {subtask} of `{task}` declined (it had finished)"),
                    }),
                    Ok(JobEvent::Finished { id, .. }) => {
                        // A finished task keeps acknowledging checkpoints with its final
                        // state until the job ends, so it stays in the coordinator's set.
                        events.push(Event::SubtaskFinished { now: now(), subtask: id });
                    }
                    Err(_) => {}
                },
                recv(internal) -> message => match message {
                    Ok(Internal::Uploaded { ack, upload }) => {
                        events.push(Event::Acknowledged { now: now(), ack, upload });
                    }
                    Ok(Internal::UploadFailed { checkpoint, reason }) => {
                        events.push(Event::Declined { now: now(), checkpoint, reason });
                    }
                    Ok(Internal::MetadataDone { checkpoint, result }) => match result {
                        Ok(location) => {
                            hit(&self.failpoint_hits, &self.checkpointing, Failpoint::AfterMetadataBeforeNotify);
                            events.push(Event::MetadataWritten { now: now(), checkpoint, location });
                        }
                        Err(CheckpointError::AlreadyExists { .. }) => {
                            events.push(Event::MetadataTaken { now: now(), checkpoint });
                        }
                        Err(e) => events.push(Event::MetadataFailed { now: now(), checkpoint, reason: e.to_string() }),
                    },
                    Err(_) => {}
                },
                recv(self.requests) -> request => match request {
                    Ok(Request::Savepoint { stop, reply }) => {
                        next_request += 1;
                        waiters.insert(next_request, reply);
                        events.push(Event::SavepointRequested { now: now(), stop, request: next_request });
                    }
                    Ok(Request::Cancel) => {
                        let metrics = handle.metrics();
                        let _ = handle.shutdown();
                        return Ended::Cancelled(metrics);
                    }
                    Err(_) => {}
                },
                recv(ticker) -> _ => {}
            }
            coordinator.set_wall_clock(crate::Timestamp::now().0);
            events.push(Event::Tick { now: now() });
            for event in events {
                for command in coordinator.on_event(event) {
                    match command {
                        Command::InjectBarrier(barrier) => {
                            handle.trigger_barrier_on(barrier, coordinator.finished());
                            hit(
                                &self.failpoint_hits,
                                &self.checkpointing,
                                Failpoint::AfterBarrierInjection,
                            );
                        }
                        Command::WriteMetadata { barrier, states } => {
                            hit(
                                &self.failpoint_hits,
                                &self.checkpointing,
                                Failpoint::BeforeMetadata,
                            );
                            self.write_metadata(barrier, states, &job, max, internal_tx.clone());
                        }
                        Command::NotifyComplete(id) => {
                            handle.notify_checkpoint_complete(id);
                            if let Some(dir) = self.rocksdb_job_dir() {
                                native::prune_local(&dir, id);
                            }
                        }
                        Command::RecordStats(stats) => {
                            tracing::info!(
                                job = %job,
                                checkpoint = stats.checkpoint.get(),
                                savepoint = stats.savepoint,
                                duration_ms = stats.duration_ms,
                                bytes = stats.bytes,
                                state_bytes = stats.state_bytes,
                                "checkpoint completed"
                            );
                            self.listener.on_checkpoint(&job, &stats);
                            self.history.push(stats);
                        }
                        Command::Retain { keep } => {
                            let storage = self.storage.clone();
                            let job = job.clone();
                            let task = self.runtime.spawn(async move {
                                if let Err(e) = storage.retain(&job, keep).await {
                                    tracing::warn!("retention of job `{job}` failed: {e}");
                                }
                            });
                            let mut retention =
                                self.retention.lock().unwrap_or_else(|p| p.into_inner());
                            retention.retain(|t| !t.is_finished());
                            retention.push(task);
                        }
                        Command::Abandon { checkpoint, reason } => {
                            self.live.checkpoint_failed();
                            tracing::warn!(
                                "checkpoint {checkpoint} of job `{job}` given up: {reason}"
                            );
                        }
                        Command::Abort { checkpoint, reason } => {
                            self.live.checkpoint_failed();
                            tracing::warn!(
                                "checkpoint {checkpoint} of job `{job}` aborted: {reason}"
                            );
                            let storage = self.storage.clone();
                            let job = job.clone();
                            self.track(self.runtime.spawn(async move {
                                if let Err(e) = storage.abort(&job, checkpoint).await {
                                    tracing::warn!(
                                        "could not delete aborted checkpoint {checkpoint}: {e}"
                                    );
                                }
                            }));
                        }
                        Command::FailJob { reason } => {
                            let _ = handle.shutdown();
                            return Ended::Failed(DataflowError::checkpoint(
                                "checkpointing",
                                reason,
                            ));
                        }
                        Command::InjectBarrierOn { barrier, subtask } => {
                            handle.trigger_barrier_on_subtask(barrier, subtask);
                        }
                        Command::SavepointDone {
                            requests, location, ..
                        } => {
                            for request in requests {
                                if let Some(reply) = waiters.remove(&request) {
                                    let _ = reply.send(location.clone().ok_or_else(|| {
                                        DataflowError::checkpoint(
                                            "savepoint",
                                            "no location was recorded",
                                        )
                                    }));
                                }
                            }
                        }
                        Command::SavepointFailed { requests, reason } => {
                            for request in requests {
                                if let Some(reply) = waiters.remove(&request) {
                                    let _ = reply.send(Err(DataflowError::checkpoint(
                                        "savepoint",
                                        reason.clone(),
                                    )));
                                }
                            }
                        }
                        Command::FinishJob(_) => {
                            return match handle.shutdown() {
                                Ok(result) => Ended::Finished(result),
                                Err(e) => Ended::Failed(e),
                            };
                        }
                        Command::StopJob { location, .. } => {
                            let metrics = handle.metrics();
                            // A sink that fails to commit the savepoint's epoch fails
                            // the stop: its output is not all committed. (Tasks the
                            // shutdown cuts off report `TaskFailed`: not a failure here.)
                            return match handle.shutdown() {
                                Err(e) if !matches!(e, DataflowError::TaskFailed { .. }) => {
                                    Ended::Failed(e)
                                }
                                _ => Ended::Suspended(location.unwrap_or_default(), metrics),
                            };
                        }
                    }
                }
            }
        }
    }

    /// The asynchronous part of a subtask's snapshot: encode frozen state and upload
    /// on tokio, then report.
    fn upload(
        &self,
        mut ack: SubtaskAck,
        frozen: FrozenState,
        barrier: Barrier,
        job: &str,
        done: Sender<Internal>,
    ) {
        let operators = std::mem::take(&mut ack.operators);
        let uploads = self.uploads.clone();
        let native_uploads = self.native_uploads.clone();
        let nonce = self.nonce;
        let max = frozen.max_parallelism;
        let mut frozen_by_uid: BTreeMap<OperatorUid, Vec<Arc<dyn weir_state::FrozenKeyed>>> =
            BTreeMap::new();
        for (uid, part) in frozen.parts {
            frozen_by_uid.entry(uid).or_default().push(part);
        }
        let (hits, checkpointing) = (self.failpoint_hits.clone(), self.checkpointing.clone());
        let mut writer = StateWriter::new(
            self.storage.clone(),
            job,
            barrier.id,
            ack.subtask,
            Arc::new(move || hit(&hits, &checkpointing, Failpoint::MidUpload)),
        );
        let (incremental_enabled, full_snapshot_every) = (
            self.checkpointing.incremental,
            self.checkpointing.full_snapshot_every,
        );
        let task = self.runtime.spawn(async move {
            let started = Instant::now();
            let mut states: BTreeMap<OperatorUid, SubtaskState> = BTreeMap::new();
            let mut state_bytes = 0u64;
            let subtask = ack.subtask;
            // Savepoints are self-contained: full, and private to their directory.
            let incremental = incremental_enabled && !barrier.is_savepoint();
            let result: std::result::Result<(), UploadError> = async {
                for (uid, snapshot) in operators {
                    let state = states.entry(uid.clone()).or_default();
                    if let (Some(first), Some(last)) = (
                        snapshot.keyed.keys().next(),
                        snapshot.keyed.keys().next_back(),
                    ) {
                        let key_groups = KeyGroupRange {
                            start: *first,
                            end: *last,
                        };
                        let blob: &KeyedBlob = &snapshot.keyed;
                        let encoded = weir_state::encode("keyed", blob)?;
                        state_bytes += encoded.len() as u64;
                        let handle = writer.private(&uid, "keyed", encoded).await?;
                        state.keyed.push(KeyedStateHandle {
                            key_groups,
                            handle,
                            chunks: Vec::new(),
                        });
                    }
                    if !snapshot.operator.is_empty() {
                        let encoded = weir_state::encode("operator", &snapshot.operator)?;
                        state_bytes += encoded.len() as u64;
                        state
                            .operator
                            .push(writer.private(&uid, "operator", encoded).await?);
                    }
                }
                for (uid, mut parts) in frozen_by_uid {
                    if incremental {
                        // RocksDB tables: their SST files, not the canonical form.
                        let mut tables = Vec::new();
                        let mut heap = Vec::with_capacity(parts.len());
                        for part in parts {
                            match part.native()? {
                                Some(table) => tables.push(table),
                                None => heap.push(part),
                            }
                        }
                        parts = heap;
                        for (index, tables) in native::by_checkpoint(tables).into_iter().enumerate()
                        {
                            let key_groups = tables[0].key_groups;
                            let (handle, referred) = native::upload(
                                &mut writer,
                                &native_uploads,
                                &uid,
                                key_groups,
                                index,
                                tables,
                            )
                            .await?;
                            state_bytes += referred;
                            states.entry(uid.clone()).or_default().native.push(handle);
                        }
                    }
                    let known = if incremental {
                        uploads.reusable(&uid, subtask, full_snapshot_every)
                    } else {
                        Default::default()
                    };
                    let encoded = tokio::task::spawn_blocking(move || {
                        incremental::encode(parts, &known, max)
                    })
                    .await
                    .map_err(UploadError::Interrupted)??;
                    let file = if encoded.bundle.is_empty() {
                        None
                    } else {
                        let data = weir_state::encode("keyed", &encoded.bundle)?;
                        Some(if incremental {
                            let key = format!("{uid}.{subtask}.{nonce:016x}.{}", barrier.id.get());
                            writer.shared(&key, data).await?
                        } else {
                            writer.private(&uid, "keyed-tables", data).await?
                        })
                    };
                    let (handles, remembered, referred) = encoded.finish(file);
                    state_bytes += referred;
                    states.entry(uid.clone()).or_default().keyed.extend(handles);
                    if incremental {
                        uploads.record(&uid, subtask, barrier.id, remembered);
                    }
                }
                Ok(())
            }
            .await;
            let bytes = writer.bytes();
            let message = match result {
                Ok(()) => Internal::Uploaded {
                    ack,
                    upload: SubtaskUpload {
                        states: states.into_iter().collect(),
                        bytes,
                        state_bytes,
                        async_us: started.elapsed().as_micros() as u64,
                    },
                },
                Err(e) => Internal::UploadFailed {
                    checkpoint: barrier.id,
                    reason: format!("upload failed: {e}"),
                },
            };
            let _ = done.send(message);
        });
        self.track(task);
    }

    /// Writes the metadata of the checkpoint of `barrier` on tokio (create-if-absent,
    /// and for a savepoint its self-contained copy too), then reports.
    fn write_metadata(
        &self,
        barrier: Barrier,
        states: OperatorStates,
        job: &str,
        max: MaxParallelism,
        done: Sender<Internal>,
    ) {
        let mut metadata = CheckpointMetadata::new(
            job,
            barrier.id,
            SnapshotKind::Checkpoint,
            barrier.triggered_at_ms,
            max,
        );
        metadata.set_timeline(self.timeline);
        // Each operator's parallelism grows to cover the subtasks that uploaded.
        for (uid, states) in states {
            for (subtask, state) in states {
                *metadata.subtask_mut(&uid, subtask) = state;
            }
        }
        let storage = self.storage.clone();
        let savepoints: Option<StorageConfig> = barrier
            .is_savepoint()
            .then(|| self.checkpointing.savepoints.clone());
        let job = job.to_string();
        let task = self.runtime.spawn(async move {
            let result: std::result::Result<_, CheckpointError> = async {
                storage.commit_metadata(&metadata).await?;
                match savepoints {
                    Some(dir) => {
                        let name = format!("savepoint-{}-{}", job, barrier.id.get());
                        let savepoint = storage.write_savepoint(&dir, &name, &metadata).await?;
                        Ok(Some(savepoint.location()))
                    }
                    None => Ok(None),
                }
            }
            .await;
            let _ = done.send(Internal::MetadataDone {
                checkpoint: barrier.id,
                result,
            });
        });
        self.track(task);
    }
}

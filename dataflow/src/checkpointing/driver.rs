//! The driver of a checkpointed job: the state its parts share (settings, the I/O
//! runtime and the checkpoint storage, what the uploads of the current attempt can
//! refer to, the I/O tasks to await), the status it reports and the failpoints of
//! the crash tests. The driver decides nothing about checkpoints: the pure
//! [`weir_checkpoint::Coordinator`] does, and the driver carries out its commands.
//!
//! ```text
//!  job.rs       CheckpointedJob ── spawns ──▶ driver thread: Driver::run
//!  restart.rs   run ─▶ run_attempts: load what to restore ─▶ attempt ─▶ (failed: restart)
//!  executor.rs  attempt ─▶ drive: job events, uploads, requests ─▶ Coordinator ─▶ commands
//!  upload.rs    drive ─▶ upload (a subtask's snapshot) / write_metadata, on tokio ─▶ drive
//! ```

use super::job::Request;
use super::live::{Both, LiveJob};
use super::{CheckpointHistory, CheckpointingConfig, Failpoint, JobListener, JobStatus};
use crate::{JobBuilder, JobConfig};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_checkpoint::incremental::UploadCache;
use weir_checkpoint::native::NativeUploads;
use weir_checkpoint::{CheckpointId, CheckpointStorage};

pub(super) type BuildFn = Arc<dyn Fn(&JobBuilder) + Send + Sync>;

/// Runs the attempts of one checkpointed job on its own thread; its methods are
/// spread over the files of its roles.
pub(super) struct Driver {
    pub(super) config: JobConfig,
    pub(super) checkpointing: CheckpointingConfig,
    pub(super) build: BuildFn,
    pub(super) listener: Arc<dyn JobListener>,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) storage: CheckpointStorage,
    pub(super) requests: Receiver<Request>,
    pub(super) history: CheckpointHistory,
    pub(super) failpoint_hits: Arc<AtomicU64>,
    /// What incremental checkpoints of the current attempt can refer to again.
    pub(super) uploads: UploadCache,
    /// The SST files native RocksDB checkpoints of the current attempt uploaded.
    pub(super) native_uploads: NativeUploads,
    /// Makes this process's shared file names unique.
    pub(super) nonce: u64,
    /// Attempts started so far: with `nonce`, names what the current attempt writes.
    pub(super) attempts: AtomicU64,
    /// This start of the job: recorded in every checkpoint it writes, so that a
    /// restart restores only checkpoints of its own timeline (or what it started
    /// from), never those of an earlier run or of a timeline a rollback left.
    pub(super) timeline: u64,
    /// For requests that arrive through the checkpoint storage (`weir savepoint`).
    pub(super) requests_tx: Sender<Request>,
    /// Tasks writing the replies to those requests.
    pub(super) replies: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// What the job is doing, for readers on other threads.
    pub(super) live: LiveJob,
    /// Retention runs in the background; it is finished before the job ends.
    pub(super) retention: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Complete checkpoints that could not be restored and that a resume passed
    /// over (only with `fallback_past_corrupt`).
    pub(super) passed_over: std::sync::Mutex<Vec<CheckpointId>>,
    /// Uploads, metadata writes and deletions of the current attempt: awaited before
    /// the next attempt starts, so a late write of a failed attempt never lands
    /// beside (or after the clean-up of) the next one's.
    pub(super) attempt_io: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When the job runs on workers: how to reach them, and the job's definition
    /// they build it from.
    pub(super) cluster: Option<(Arc<dyn super::cluster::ClusterLink>, String)>,
    /// In cluster mode, the worker of each slot in the last attempt: the next one
    /// keeps the subtasks of the workers left where they were.
    pub(super) placement: std::sync::Mutex<Option<Vec<u32>>>,
}

/// Crashes the process (abort) when `step` is the configured failpoint and this is
/// its `n`-th hit: for the crash tests.
pub(super) fn hit(driver_hits: &AtomicU64, config: &CheckpointingConfig, step: Failpoint) {
    if let Some((point, nth)) = config.failpoint {
        if point == step && driver_hits.fetch_add(1, Ordering::SeqCst) + 1 >= nth {
            eprintln!("weir: failpoint {step:?} reached: aborting the process");
            std::process::abort();
        }
    }
}

impl Driver {
    /// A driver for `config`: its I/O runtime, its checkpoint storage opened, for the
    /// run (timeline) `timeline`. Returns it with the sender of requests to it.
    ///
    /// # Errors
    /// The checkpoint storage cannot be opened (unknown scheme, unreachable bucket).
    pub(super) fn open(
        config: JobConfig,
        checkpointing: CheckpointingConfig,
        build: BuildFn,
        listener: Arc<dyn JobListener>,
        timeline: u64,
    ) -> crate::Result<(Self, Sender<Request>)> {
        use crate::DataflowError;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("weir-io")
            .build()
            .map_err(|e| DataflowError::checkpoint_caused("could not start the I/O runtime", e))?;
        let storage = runtime
            .block_on(CheckpointStorage::open(&checkpointing.storage))
            .map_err(|e| DataflowError::checkpoint_caused("checkpoint storage", e))?;
        let (requests, requests_rx) = crossbeam_channel::unbounded();
        let history = CheckpointHistory::default();
        let live = LiveJob::with_history(history.clone());
        let driver = Driver {
            config,
            checkpointing,
            build,
            listener: Arc::new(Both(live.clone(), listener)),
            live,
            runtime,
            storage,
            requests: requests_rx,
            requests_tx: requests.clone(),
            replies: Arc::default(),
            history,
            failpoint_hits: Arc::new(AtomicU64::new(0)),
            uploads: UploadCache::default(),
            native_uploads: NativeUploads::default(),
            retention: std::sync::Mutex::new(Vec::new()),
            passed_over: std::sync::Mutex::new(Vec::new()),
            attempt_io: std::sync::Mutex::new(Vec::new()),
            nonce: weir_state::unique_id(),
            attempts: AtomicU64::new(0),
            timeline,
            cluster: None,
            placement: std::sync::Mutex::new(None),
        };
        Ok((driver, requests))
    }

    /// The owner token of the current attempt: in the names of every object it
    /// writes, so no other attempt or incarnation overwrites them, and an abort
    /// deletes only them.
    pub(super) fn owner(&self) -> String {
        format!(
            "{:016x}-{}",
            self.nonce,
            self.attempts.load(Ordering::SeqCst)
        )
    }

    pub(super) fn status(&self, status: JobStatus) {
        tracing::info!(job = %self.config.name, status = ?status, "job status");
        self.listener.on_status(&self.config.name, status);
    }

    /// Keeps `task` (I/O of the current attempt) to await before the next attempt.
    pub(super) fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.attempt_io.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// `<rocksdb dir>/<job>` when the job keeps its state in RocksDB.
    pub(super) fn rocksdb_job_dir(&self) -> Option<std::path::PathBuf> {
        self.rocksdb_dir_of(None)
    }

    /// `<rocksdb dir>[/<under>]/<job>` when the job runs on RocksDB.
    pub(super) fn rocksdb_dir_of(&self, under: Option<&str>) -> Option<std::path::PathBuf> {
        match &self.config.state_backend {
            weir_state::StateBackend::Heap => None,
            weir_state::StateBackend::RocksDb(rocks) => {
                let base = match under {
                    Some(under) => rocks.dir.join(under),
                    None => rocks.dir.clone(),
                };
                Some(base.join(weir_checkpoint::layout::path_segment(&self.config.name)))
            }
        }
    }
}

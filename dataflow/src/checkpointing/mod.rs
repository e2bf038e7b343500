//! Running a job with checkpoints: the driver around the pure
//! [`weir_checkpoint::Coordinator`], recovery from the newest complete checkpoint,
//! restart strategies, savepoints, listeners and statistics. This is the runtime
//! side; the storage I/O of checkpoints (encoding and uploading state files,
//! incremental and native RocksDB checkpoints, local recovery, reading a checkpoint
//! back into a [`crate::RestoreState`]) lives in weir-checkpoint, which the driver
//! calls on tokio.
//!
//! ```text
//!  driver thread ── Tick ─▶ Coordinator ─▶ InjectBarrier ─▶ sources ─▶ … tasks snapshot (sync)
//!        ▲                                                              │ Ack(frozen state)
//!        └── Uploaded(handles) ◀── tokio: weir_checkpoint::{incremental, native} upload ◀──┘
//!        Coordinator ─▶ WriteMetadata (tokio, create-if-absent) ─▶ NotifyComplete ─▶ tasks/sinks
//!  resume: weir_checkpoint::restore::load_checkpoint ─▶ RestoreState ─▶ the job's subtasks
//! ```
//!
//! The driver's parts, by role: `job.rs` (the [`CheckpointedJob`] API), `restart.rs`
//! (the attempts and what each restores), `executor.rs` (one attempt: events to the
//! coordinator, its commands carried out), `upload.rs` (a subtask's snapshot and a
//! checkpoint's metadata written on tokio), `driver.rs` (the state they share).

pub mod cluster;
mod driver;
mod executor;
mod job;
mod live;
mod restart;
mod upload;

pub use job::CheckpointedJob;
pub use live::{LiveJob, RestoreProgress};
pub use weir_checkpoint::{CheckpointStats, RestoreError, RestoreEvent, SubtaskCheckpointStats};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_checkpoint::{CheckpointId, CoordinatorConfig, StorageConfig};

/// Where a job starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResumeFrom {
    /// A fresh start (no state).
    #[default]
    Nothing,
    /// The newest complete, valid checkpoint of the job under the checkpoint storage
    /// (a fresh start when there is none).
    LatestCheckpoint,
    /// A savepoint directory (any object-store URL).
    Savepoint(String),
}

impl ResumeFrom {
    /// From the usual command-line choices (`--from-savepoint PATH`, `--resume`): a
    /// savepoint wins over the latest checkpoint.
    pub fn choose(savepoint: Option<String>, latest_checkpoint: bool) -> Self {
        match (savepoint, latest_checkpoint) {
            (Some(savepoint), _) => Self::Savepoint(savepoint),
            (None, true) => Self::LatestCheckpoint,
            (None, false) => Self::Nothing,
        }
    }
}

/// How a failed job is restarted in-process from its newest complete checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail at once.
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay {
        /// Maximum restarts.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Up to `attempts` restarts; the wait doubles from `initial` up to `max`.
    ExponentialBackoff {
        /// Maximum restarts.
        attempts: u32,
        /// First wait.
        initial: Duration,
        /// Longest wait.
        max: Duration,
    },
}

impl RestartStrategy {
    /// The wait before restart number `attempt` (1-based), or `None` when no restart
    /// is left.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            Self::None => None,
            Self::FixedDelay { attempts, delay } => (attempt <= attempts).then_some(delay),
            Self::ExponentialBackoff {
                attempts,
                initial,
                max,
            } => (attempt <= attempts).then(|| {
                initial
                    .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
                    .min(max)
            }),
        }
    }
}

/// A protocol step at which a test can crash the process (deterministic fault
/// injection for the crash tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failpoint {
    /// Right after the barrier of a checkpoint was sent to the sources.
    AfterBarrierInjection,
    /// After the first state object of a checkpoint was uploaded, before the rest.
    MidUpload,
    /// Every subtask acknowledged; the metadata is not written yet.
    BeforeMetadata,
    /// The metadata is written; the tasks are not notified yet.
    AfterMetadataBeforeNotify,
}

impl std::str::FromStr for Failpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "after-barrier" => Ok(Self::AfterBarrierInjection),
            "mid-upload" => Ok(Self::MidUpload),
            "before-metadata" => Ok(Self::BeforeMetadata),
            "after-metadata" => Ok(Self::AfterMetadataBeforeNotify),
            other => Err(format!(
                "unknown failpoint `{other}`: expected after-barrier, mid-upload, before-metadata or after-metadata"
            )),
        }
    }
}

/// Settings of a checkpointed run.
#[derive(Clone, Debug)]
pub struct CheckpointingConfig {
    /// Where checkpoints go (default `./weir-data/checkpoints`).
    pub storage: StorageConfig,
    /// Interval, timeout, retention, …
    pub coordinator: CoordinatorConfig,
    /// What to do when a task fails.
    pub restart: RestartStrategy,
    /// Where to start from.
    pub resume: ResumeFrom,
    /// Start even if the restored state has operators the job lacks.
    pub allow_non_restored_state: bool,
    /// Resume from an older checkpoint when a newer complete one cannot be restored
    /// (a corrupt `_metadata`, a missing state file). Off by default, and then such a
    /// resume is refused: the sinks may have committed the newer checkpoint's output,
    /// and replaying from the older one writes it again.
    pub fallback_past_corrupt: bool,
    /// Where savepoints go (default `./weir-data/savepoints`).
    pub savepoints: StorageConfig,
    /// Crash the process (abort) the `n`-th time this step is reached: for tests.
    pub failpoint: Option<(Failpoint, u64)>,
    /// Upload only the state shards written since the previous checkpoint, referring
    /// to earlier uploads for the rest (default on). Savepoints are always full.
    pub incremental: bool,
    /// With `incremental`, every n-th checkpoint of a subtask uploads all its state
    /// afresh, so a restore reads at most n checkpoints' files and files holding
    /// superseded state are released (default 10).
    pub full_snapshot_every: u32,
    /// Checked before every `_metadata` write: a coordinator that lost its lease
    /// ([`weir_checkpoint::lease`]) completes no checkpoint, so no sink commits
    /// under it. `None` (the default) when no other coordinator shares the storage.
    pub fence: Option<weir_checkpoint::lease::Fence>,
    /// In cluster mode: how many other workers keep a warm copy of each subtask's
    /// newest completed checkpoint (0, the default: none), so that a failover reads
    /// local files instead of downloading them. Copies are refreshed after every
    /// completed checkpoint, downloading only new files (SST files on RocksDB, state
    /// objects on the heap, under [`JobConfig::local_dir`](crate::JobConfig::local_dir)).
    pub standbys: usize,
}

impl Default for CheckpointingConfig {
    fn default() -> Self {
        Self {
            storage: StorageConfig::default(),
            coordinator: CoordinatorConfig::default(),
            restart: RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_secs(1),
            },
            resume: ResumeFrom::Nothing,
            allow_non_restored_state: false,
            fallback_past_corrupt: false,
            savepoints: StorageConfig::new("./weir-data/savepoints"),
            failpoint: None,
            incremental: true,
            full_snapshot_every: 10,
            fence: None,
            standbys: 0,
        }
    }
}

/// The life cycle of a job, as reported to [`JobListener::on_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Built, not started.
    Created,
    /// Running.
    Running,
    /// A task failed; the job is being torn down.
    Failing,
    /// Waiting to restart after a failure.
    Restarting,
    /// Cancelled by the user.
    Cancelled,
    /// All input processed.
    Finished,
    /// Stopped with a savepoint.
    Suspended,
}

/// The last 100 completed checkpoints, shared with the driver.
#[derive(Clone, Default)]
pub struct CheckpointHistory {
    inner: Arc<Mutex<VecDeque<CheckpointStats>>>,
}

impl CheckpointHistory {
    /// How many checkpoints are kept.
    pub const CAPACITY: usize = 100;

    pub(crate) fn push(&self, stats: CheckpointStats) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len() == Self::CAPACITY {
            inner.pop_front();
        }
        inner.push_back(stats);
    }

    /// The recorded checkpoints, oldest first.
    pub fn snapshot(&self) -> Vec<CheckpointStats> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Receives job life-cycle and restore events.
pub trait JobListener: Send + Sync {
    /// The job's status changed.
    fn on_status(&self, job: &str, status: JobStatus) {
        let _ = (job, status);
    }
    /// Restore progress.
    fn on_restore(&self, job: &str, event: &RestoreEvent) {
        let _ = (job, event);
    }
    /// A checkpoint completed.
    fn on_checkpoint(&self, job: &str, stats: &CheckpointStats) {
        let _ = (job, stats);
    }
}

/// A listener that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoListener;
impl JobListener for NoListener {}

/// How a checkpointed run ended.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Finished, Cancelled or Suspended.
    pub status: JobStatus,
    /// Restarts after failures.
    pub restarts: u32,
    /// The checkpoint or savepoint the last attempt restored, if any.
    pub restored_from: Option<CheckpointId>,
    /// Where the stop-with-savepoint savepoint was written, if any.
    pub savepoint: Option<String>,
    /// Checkpoints completed (all attempts).
    pub checkpoints: Vec<CheckpointStats>,
    /// Checkpoints that failed or timed out and were aborted (all attempts).
    pub failed_checkpoints: u64,
    /// Complete checkpoints that could not be restored and that a resume passed over
    /// for an older one (only with `fallback_past_corrupt`): their output may have
    /// been written twice.
    pub passed_over_corrupt: Vec<CheckpointId>,
    /// Counters of the last attempt.
    pub metrics: Vec<crate::SubtaskMetrics>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

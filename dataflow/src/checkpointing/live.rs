//! What a checkpointed job is doing right now, readable from any thread: its status,
//! the graph and counters of the current attempt, restore progress and checkpoint
//! history. `weir serve` shows it; `weir::metrics` renders it for Prometheus.
//!
//! ```text
//!  driver ── on_status / on_restore / on_checkpoint ──▶ LiveJob (a JobListener)
//!         ── attempt started (graph, counters) ───────▶ LiveJob
//!  server, metrics ◀── LiveJob::{status, graph, metrics, checkpoints, restore} (clones)
//! ```

use super::{CheckpointHistory, CheckpointStats, JobListener, JobStatus, RestoreEvent};
use crate::{GraphView, MetricsView, SubtaskMetrics};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use weir_checkpoint::CheckpointId;

/// A live view of one checkpointed job across its attempts; cheap to clone.
#[derive(Clone, Default)]
pub struct LiveJob {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    restarts: AtomicU32,
    failed_checkpoints: AtomicU64,
    completed_checkpoints: AtomicU64,
    completed_savepoints: AtomicU64,
    history: CheckpointHistory,
}

#[derive(Default)]
struct State {
    status: Option<JobStatus>,
    since: Option<SystemTime>,
    graph: Option<Arc<GraphView>>,
    counters: Option<Counters>,
    restore: RestoreProgress,
    queries: Option<crate::query::QueryPort>,
}

/// Where the current attempt's counters are read.
#[derive(Clone)]
enum Counters {
    /// The subtasks of this process.
    Local(MetricsView),
    /// As the workers last reported them (cluster mode).
    Remote(super::cluster::RemoteCounters),
}

/// How far the restore of the current attempt has come.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreProgress {
    /// The checkpoint or savepoint being restored (known when it finished).
    pub checkpoint: Option<CheckpointId>,
    /// Bytes of state to read (grows as operators start restoring).
    pub bytes_total: u64,
    /// Bytes read so far.
    pub bytes_read: u64,
    /// Of those, bytes of native RocksDB checkpoints taken from the subtasks' local
    /// copies (local recovery).
    pub bytes_local: u64,
    /// Of the local bytes, those taken from standby copies: state a worker kept
    /// for subtasks another worker ran, which failed over to it (cluster mode).
    pub bytes_standby: u64,
    /// Of those, bytes downloaded from the checkpoint or savepoint storage.
    pub bytes_downloaded: u64,
    /// Of those, bytes of native RocksDB checkpoints the subtasks open as their
    /// instances as they are (same key groups: no key is written again), local or
    /// downloaded.
    pub bytes_opened: u64,
    /// Whether everything was read.
    pub finished: bool,
}

impl RestoreProgress {
    /// Adds `other`'s counts (another worker's part of the same restore).
    pub fn add(&mut self, other: &Self) {
        self.checkpoint = self.checkpoint.or(other.checkpoint);
        self.bytes_total += other.bytes_total;
        self.bytes_read += other.bytes_read;
        self.bytes_local += other.bytes_local;
        self.bytes_standby += other.bytes_standby;
        self.bytes_downloaded += other.bytes_downloaded;
        self.bytes_opened += other.bytes_opened;
        self.finished = other.finished;
    }
}

impl LiveJob {
    pub(crate) fn with_history(history: CheckpointHistory) -> Self {
        Self {
            inner: Arc::new(Inner {
                history,
                ..Inner::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's status (`Created` until the driver reports one).
    pub fn status(&self) -> JobStatus {
        self.state().status.unwrap_or(JobStatus::Created)
    }

    /// When the status last changed.
    pub fn status_since(&self) -> Option<SystemTime> {
        self.state().since
    }

    /// Restarts after failures so far.
    pub fn restarts(&self) -> u32 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// The operators and edges of the current attempt; `None` before the first
    /// attempt started.
    pub fn graph(&self) -> Option<Arc<GraphView>> {
        self.state().graph.clone()
    }

    /// The counters of every operator subtask of the current attempt (empty before
    /// the first attempt started; they start from zero at each restart).
    pub fn metrics(&self) -> Vec<SubtaskMetrics> {
        let counters = self.state().counters.clone();
        match counters {
            Some(Counters::Local(view)) => view.snapshot(),
            Some(Counters::Remote(reported)) => reported.snapshot(),
            None => Vec::new(),
        }
    }

    /// The last [`CheckpointHistory::CAPACITY`] completed checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.inner.history.snapshot()
    }

    /// Checkpoints that failed or timed out, over all attempts.
    pub fn failed_checkpoints(&self) -> u64 {
        self.inner.failed_checkpoints.load(Ordering::Relaxed)
    }

    /// Checkpoints completed over all attempts (savepoints not included).
    pub fn completed_checkpoints(&self) -> u64 {
        self.inner.completed_checkpoints.load(Ordering::Relaxed)
    }

    /// Savepoints completed over all attempts.
    pub fn completed_savepoints(&self) -> u64 {
        self.inner.completed_savepoints.load(Ordering::Relaxed)
    }

    /// Restore progress of the current attempt.
    pub fn restore(&self) -> RestoreProgress {
        self.state().restore.clone()
    }

    pub(crate) fn attempt_started(
        &self,
        graph: Arc<GraphView>,
        counters: MetricsView,
        queries: crate::query::QueryPort,
    ) {
        let mut state = self.state();
        state.graph = Some(graph);
        state.counters = Some(Counters::Local(counters));
        state.queries = Some(queries);
    }

    /// Where queries of the current attempt's keyed state go (see
    /// [`crate::query`]).
    ///
    /// # Errors
    /// No attempt runs in this process (none yet, or the job runs on workers), or
    /// the job ended.
    pub fn query_port(&self) -> Result<crate::query::QueryPort, crate::query::QueryError> {
        let state = self.state();
        if let Some(status @ (JobStatus::Finished | JobStatus::Cancelled | JobStatus::Suspended)) =
            state.status
        {
            return Err(crate::query::QueryError::Ended(
                format!("{status:?}").to_lowercase(),
            ));
        }
        state.queries.clone().ok_or_else(|| {
            crate::query::QueryError::NotRunning(
                "no attempt of the job runs in this process (not started, or on workers: \
                 their state is not queryable through the coordinator yet)"
                    .to_string(),
            )
        })
    }

    /// An attempt started on workers, which report its counters.
    pub(crate) fn attempt_started_remote(
        &self,
        graph: GraphView,
        counters: super::cluster::RemoteCounters,
    ) {
        let mut state = self.state();
        state.graph = Some(Arc::new(graph));
        state.counters = Some(Counters::Remote(counters));
        state.queries = None;
    }

    pub(crate) fn restarted(&self) {
        self.inner.restarts.fetch_add(1, Ordering::Relaxed);
        self.state().restore = RestoreProgress::default();
    }

    /// The restore of the current attempt, as its workers reported it.
    pub(crate) fn set_restore(&self, progress: RestoreProgress) {
        self.state().restore = progress;
    }

    pub(crate) fn checkpoint_failed(&self) {
        self.inner
            .failed_checkpoints
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl JobListener for LiveJob {
    fn on_status(&self, _: &str, status: JobStatus) {
        let mut state = self.state();
        state.status = Some(status);
        state.since = Some(SystemTime::now());
    }

    fn on_restore(&self, _: &str, event: &RestoreEvent) {
        let mut state = self.state();
        let progress = &mut state.restore;
        match event {
            RestoreEvent::Started { bytes, .. } => progress.bytes_total += bytes,
            RestoreEvent::BatchRestored {
                bytes,
                local,
                standby,
                opened,
                ..
            } => {
                progress.bytes_read += bytes;
                if *opened {
                    progress.bytes_opened += bytes;
                }
                if *standby {
                    progress.bytes_standby += bytes;
                }
                if *local {
                    progress.bytes_local += bytes;
                } else {
                    progress.bytes_downloaded += bytes;
                }
            }
            RestoreEvent::Finished { checkpoint, bytes } => {
                progress.checkpoint = Some(*checkpoint);
                progress.bytes_total = *bytes;
                progress.bytes_read = *bytes;
                progress.finished = true;
            }
        }
    }

    fn on_checkpoint(&self, _: &str, stats: &CheckpointStats) {
        let counter = if stats.savepoint {
            &self.inner.completed_savepoints
        } else {
            &self.inner.completed_checkpoints
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Passes every event to the job's live view and then to the user's listener.
pub(crate) struct Both(pub(crate) LiveJob, pub(crate) Arc<dyn JobListener>);

impl JobListener for Both {
    fn on_status(&self, job: &str, status: JobStatus) {
        self.0.on_status(job, status);
        self.1.on_status(job, status);
    }

    fn on_restore(&self, job: &str, event: &RestoreEvent) {
        self.0.on_restore(job, event);
        self.1.on_restore(job, event);
    }

    fn on_checkpoint(&self, job: &str, stats: &CheckpointStats) {
        self.0.on_checkpoint(job, stats);
        self.1.on_checkpoint(job, stats);
    }
}

//! One job of the server: its record, the running [`CheckpointedJob`] and a thread
//! that waits for it to end and records how.
//!
//! ```text
//!  POST /jobs ─▶ ServerJob::start ─▶ CheckpointedJob::spawn ─▶ driver thread
//!                      │                                          │ JobListener
//!                      └─▶ supervisor thread: is_finished? ─▶ wait() ─▶ record saved
//! ```
//!
//! Every method here may block (savepoints wait for the snapshot, saves write to
//! disk): the HTTP handlers call them on the blocking pool.

use super::registry::{JobRecord, RecordedState, Registry, SavepointRecord};
use super::view::{self, GraphJson, Rates, VertexSample};
use crate::jobs::{self, RunOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use weir_checkpoint::StorageConfig;
use weir_dataflow::checkpointing::{
    CheckpointStats, CheckpointedJob, JobStatus, LiveJob, NoListener, ResumeFrom,
};
use weir_dataflow::DataflowError;
use weir_jobfile::JobPlan;

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a request about a job cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job is not running (it ended, or has not started).
    #[error("job `{id}` is not running (it is {status})")]
    NotRunning {
        /// The job.
        id: String,
        /// What it is instead.
        status: String,
    },
    /// The engine refused or failed the request.
    #[error("job `{id}`: {source}")]
    Engine {
        /// The job.
        id: String,
        /// The engine's error.
        source: DataflowError,
    },
    /// The registry could not be written.
    #[error("job `{id}`: could not write its record: {source}")]
    Registry {
        /// The job.
        id: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A job of the server.
pub struct ServerJob {
    /// The server's id of the job.
    pub id: String,
    record: Mutex<JobRecord>,
    registry: Registry,
    /// The validated job file (`None` if a recorded file no longer validates).
    plan: Option<Arc<JobPlan>>,
    running: Mutex<Option<Arc<CheckpointedJob>>>,
    /// In cluster mode, the workers it runs on.
    cluster: Option<Arc<crate::cluster::HttpCluster>>,
    /// The engine's live view of the current (or last) run.
    live: Mutex<Option<LiveJob>>,
    rates: Mutex<Rates>,
    /// Stopped with a savepoint because the server shuts down: the run's end keeps
    /// the job running in the record, to resume from that savepoint.
    shutting_down: AtomicBool,
    /// The supervisor recorded the end of the current run.
    run_ended: AtomicBool,
}

impl ServerJob {
    /// A job for `record` (validated into `plan`, or `None` for a recorded job whose
    /// file no longer validates: it is listed, and cannot start), not started.
    pub fn new(
        record: JobRecord,
        plan: Option<JobPlan>,
        registry: Registry,
        cluster: Option<Arc<crate::cluster::HttpCluster>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            id: record.id.clone(),
            record: Mutex::new(record),
            registry,
            plan: plan.map(Arc::new),
            running: Mutex::new(None),
            live: Mutex::new(None),
            rates: Mutex::new(Rates::default()),
            shutting_down: AtomicBool::new(false),
            run_ended: AtomicBool::new(false),
        })
    }

    /// A copy of the job's record.
    pub fn record(&self) -> JobRecord {
        lock(&self.record).clone()
    }

    /// Changes the record and writes it to the registry.
    fn update(&self, change: impl FnOnce(&mut JobRecord)) -> Result<(), JobError> {
        let mut record = lock(&self.record);
        change(&mut record);
        self.registry
            .save(&record)
            .map_err(|source| JobError::Registry {
                id: self.id.clone(),
                source,
            })
    }

    /// Starts the job from `resume` and a thread that records how it ends.
    ///
    /// # Errors
    /// The checkpoint storage cannot be opened, or the threads cannot start.
    pub fn start(self: &Arc<Self>, resume: ResumeFrom) -> Result<(), JobError> {
        let record = self.record();
        let options = RunOptions {
            parallelism: record.options.parallelism,
            allow_non_restored_state: record.options.allow_non_restored_state,
            savepoints: Some(record.savepoint_storage.clone()),
            ..RunOptions::default()
        };
        let Some(plan) = self.plan.clone() else {
            return Err(JobError::Engine {
                id: self.id.clone(),
                source: DataflowError::checkpoint("its job file", "it no longer validates"),
            });
        };
        let (config, mut checkpointing) = jobs::configs(&plan, &options);
        checkpointing.storage = StorageConfig::new(record.checkpoint_storage.clone());
        checkpointing.resume = resume;
        let engine = |source| JobError::Engine {
            id: self.id.clone(),
            source,
        };
        let build = move |builder: &weir_dataflow::JobBuilder| jobs::build(&plan, builder);
        let job = match &self.cluster {
            None => CheckpointedJob::spawn(config, checkpointing, build, Arc::new(NoListener)),
            Some(cluster) => {
                let envelope = crate::cluster::JobEnvelope {
                    file: record.file.clone(),
                    text: record.text.clone(),
                    checkpoint_storage: record.checkpoint_storage.clone(),
                    savepoint_storage: record.savepoint_storage.clone(),
                    parallelism: record.options.parallelism,
                    allow_non_restored_state: record.options.allow_non_restored_state,
                };
                let spec = serde_json::to_string(&envelope).map_err(|e| {
                    engine(DataflowError::invalid(
                        &self.id,
                        format!("cannot encode the job: {e}"),
                    ))
                })?;
                let mut checkpointing = checkpointing;
                checkpointing.fence = Some(cluster.fence());
                CheckpointedJob::spawn_on_cluster(
                    config,
                    checkpointing,
                    build,
                    Arc::new(NoListener),
                    cluster.clone(),
                    spec,
                )
            }
        }
        .map_err(engine)?;
        *lock(&self.live) = Some(job.live());
        *lock(&self.rates) = Rates::default();
        self.run_ended.store(false, Ordering::SeqCst);
        *lock(&self.running) = Some(Arc::new(job));
        let this = self.clone();
        std::thread::Builder::new()
            .name(format!("weir-server-{}", self.id))
            .spawn(move || this.supervise())
            .map_err(|e| {
                engine(DataflowError::checkpoint_caused(
                    "could not start the job's supervisor thread",
                    e,
                ))
            })?;
        Ok(())
    }

    /// Waits for the running job to end and records how.
    fn supervise(self: Arc<Self>) {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let finished = lock(&self.running).as_ref().is_none_or(|j| j.is_finished());
            if finished {
                break;
            }
        }
        let Some(mut job) = lock(&self.running).take() else {
            self.run_ended.store(true, Ordering::SeqCst);
            return;
        };
        // A savepoint request may still hold the job for a moment.
        let outcome = loop {
            match Arc::try_unwrap(job) {
                Ok(job) => break job.wait(),
                Err(shared) => {
                    job = shared;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        // The run's final counters, not its last one-second sample.
        self.take_sample();
        let saved = match outcome {
            Ok(summary)
                if summary.status == JobStatus::Suspended
                    && self.shutting_down.load(Ordering::SeqCst) =>
            {
                // Stopped for the server's shutdown: still running as far as the
                // user is concerned, resumed by the next server from the savepoint.
                self.update(|record| {
                    if let Some(location) = summary.savepoint {
                        push_savepoint(record, location.clone(), true);
                        record.resume_from = Some(location);
                    }
                })
            }
            Ok(summary) => {
                let state = match summary.status {
                    JobStatus::Cancelled => RecordedState::Cancelled,
                    JobStatus::Suspended => RecordedState::Suspended,
                    _ => RecordedState::Finished,
                };
                self.update(|record| {
                    record.state = state;
                    record.ended_at_ms = Some(now_ms());
                    if let Some(location) = summary.savepoint {
                        push_savepoint(record, location, true);
                    }
                })
            }
            Err(e) => {
                tracing::warn!("job `{}` failed: {e}", self.id);
                self.update(|record| {
                    record.state = RecordedState::Failed;
                    record.error = Some(e.to_string());
                    record.ended_at_ms = Some(now_ms());
                })
            }
        };
        if let Err(e) = saved {
            tracing::error!("{e}");
        }
        self.run_ended.store(true, Ordering::SeqCst);
    }

    /// Whether a run of the job is going on (it may be restarting).
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// Stops the running job with a savepoint because the server shuts down, and
    /// waits until its record names that savepoint as where the next server
    /// resumes it; returns where the savepoint is.
    ///
    /// # Errors
    /// The job is not running, the savepoint failed (the job then goes on, and the
    /// next server resumes it from its newest checkpoint), or the record cannot be
    /// written.
    pub fn stop_for_shutdown(&self) -> Result<String, JobError> {
        self.shutting_down.store(true, Ordering::SeqCst);
        let stopped = self.savepoint(true);
        if stopped.is_err() {
            self.shutting_down.store(false, Ordering::SeqCst);
        }
        let location = stopped?;
        while !self.run_ended.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.record().resume_from.as_deref() != Some(location.as_str()) {
            // The run ended otherwise meanwhile (it finished, or failed).
            return Err(JobError::NotRunning {
                id: self.id.clone(),
                status: self.status(),
            });
        }
        Ok(location)
    }

    /// Records the outcome of resuming the job after a server restart: the raised
    /// restart count, or the failure to start.
    ///
    /// # Errors
    /// The record cannot be written.
    pub fn after_resume(&self, error: Option<String>) -> Result<(), JobError> {
        self.update(|record| match error {
            Some(error) => {
                record.state = RecordedState::Failed;
                record.error = Some(format!("could not resume after a server restart: {error}"));
                record.ended_at_ms = Some(now_ms());
            }
            // Resumed from it: a later restart resumes from the newer checkpoints.
            None => record.resume_from = None,
        })
    }

    /// The running engine job, or why there is none.
    fn engine(&self) -> Result<Arc<CheckpointedJob>, JobError> {
        lock(&self.running)
            .clone()
            .ok_or_else(|| JobError::NotRunning {
                id: self.id.clone(),
                status: self.status(),
            })
    }

    /// Takes a savepoint (and stops the job after it with `stop`); returns where it is.
    ///
    /// # Errors
    /// The job is not running, the savepoint failed, or the record cannot be written.
    pub fn savepoint(&self, stop: bool) -> Result<String, JobError> {
        let job = self.engine()?;
        let location = job.savepoint(stop).map_err(|source| JobError::Engine {
            id: self.id.clone(),
            source,
        })?;
        drop(job);
        self.update(|record| push_savepoint(record, location.clone(), stop))?;
        Ok(location)
    }

    /// Cancels the job and waits (up to `timeout`) until it has ended.
    ///
    /// # Errors
    /// The job is not running.
    pub fn cancel(&self, timeout: Duration) -> Result<(), JobError> {
        self.engine()?.cancel();
        self.wait_ended(timeout);
        Ok(())
    }

    /// Waits (up to `timeout`) until the job's end is recorded.
    pub fn wait_ended(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while lock(&self.record).state == RecordedState::Running
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The validated job file (`None` if a recorded file no longer validates).
    pub(crate) fn plan(&self) -> Option<Arc<JobPlan>> {
        self.plan.clone()
    }

    /// The engine's live view of the current (or last) run, once started.
    pub fn live(&self) -> Option<LiveJob> {
        lock(&self.live).clone()
    }

    /// The job's status: the engine's while it runs, else how it ended.
    pub fn status(&self) -> String {
        let state = lock(&self.record).state;
        match (state, self.live()) {
            (RecordedState::Running, Some(live)) => {
                crate::metrics::status_name(live.status()).to_string()
            }
            (RecordedState::Running, None) => {
                crate::metrics::status_name(JobStatus::Created).to_string()
            }
            (ended, _) => view::state_name(ended).to_string(),
        }
    }

    /// Restarts after failures in the current run.
    pub fn restarts(&self) -> u32 {
        self.live().map_or(0, |live| live.restarts())
    }

    /// Completed checkpoints, oldest first (the last 100 of the current or last run).
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.live().map_or_else(Vec::new, |live| live.checkpoints())
    }

    /// Checkpoints that failed in the current or last run.
    pub fn failed_checkpoints(&self) -> u64 {
        self.live().map_or(0, |live| live.failed_checkpoints())
    }

    /// The job graph with the latest rates: the engine's graph of the current run
    /// (with chained operators), or the job file's until the run has built it.
    pub fn graph(&self) -> GraphJson {
        let engine_graph = self.live().and_then(|live| live.graph());
        let mut graph = match engine_graph {
            Some(graph) => view::engine_graph(&graph),
            None => match &self.plan {
                Some(plan) => view::plan_graph(plan, lock(&self.record).options.parallelism),
                None => GraphJson {
                    vertices: Vec::new(),
                    edges: Vec::new(),
                },
            },
        };
        lock(&self.rates).apply(&mut graph);
        graph
    }

    /// Samples the running job's counters for the records/s figures (called every
    /// second).
    pub fn sample(&self) {
        if lock(&self.running).is_none() {
            return;
        }
        self.take_sample();
    }

    /// Records the counters of the current (or last) run as they are now.
    fn take_sample(&self) {
        let Some(live) = self.live() else {
            return;
        };
        let mut per_vertex: std::collections::BTreeMap<usize, VertexSample> =
            std::collections::BTreeMap::new();
        for subtask in live.metrics() {
            let sample = per_vertex.entry(subtask.vertex).or_insert(VertexSample {
                vertex: subtask.vertex,
                ..VertexSample::default()
            });
            sample.records_in += subtask.records_in;
            sample.records_out += subtask.records_out;
            sample.backpressure_ms += subtask.backpressure_ms;
            sample.subtasks += 1;
            sample.watermark_ms = match (sample.watermark_ms, subtask.watermark_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        lock(&self.rates).sample(per_vertex.into_values().collect());
    }
}

fn push_savepoint(record: &mut JobRecord, location: String, stop: bool) {
    if !record.savepoints.iter().any(|s| s.location == location) {
        record.savepoints.push(SavepointRecord {
            location,
            taken_at_ms: now_ms(),
            stop,
        });
    }
}

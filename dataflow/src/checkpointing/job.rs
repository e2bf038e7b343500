//! The job API: [`CheckpointedJob`] opens the checkpoint storage, starts the driver
//! thread (see `driver.rs`) and talks to it: savepoints, cancel, the live view, the
//! outcome.

use super::driver::Driver;
use super::live::LiveJob;
use super::{CheckpointHistory, CheckpointStats, CheckpointingConfig, JobListener, RunSummary};
use crate::{DataflowError, JobBuilder, JobConfig, Result};
use crossbeam_channel::{bounded, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the job's owner asks of the driver thread.
pub(super) enum Request {
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
        let (driver, requests) = Driver::open(
            config,
            checkpointing,
            Arc::new(build),
            listener,
            weir_state::unique_id(),
        )?;
        Self::start(driver, requests)
    }

    /// Starts the job on the workers `link` reaches: this process keeps the
    /// checkpoint coordinator and the restart loop, and each attempt runs on the
    /// workers registered when it starts (see [`super::cluster`]). `spec` is the
    /// job's definition the workers build it from; `build` builds the same graph
    /// here, for its uids and parallelism.
    ///
    /// # Errors
    /// The checkpoint storage cannot be opened.
    pub fn spawn_on_cluster(
        config: JobConfig,
        checkpointing: CheckpointingConfig,
        build: impl Fn(&JobBuilder) + Send + Sync + 'static,
        listener: Arc<dyn JobListener>,
        link: Arc<dyn super::cluster::ClusterLink>,
        spec: String,
    ) -> Result<Self> {
        let (mut driver, requests) = Driver::open(
            config,
            checkpointing,
            Arc::new(build),
            listener,
            weir_state::unique_id(),
        )?;
        driver.cluster = Some((link, spec));
        Self::start(driver, requests)
    }

    fn start(driver: Driver, requests: Sender<Request>) -> Result<Self> {
        let (history, live) = (driver.history.clone(), driver.live.clone());
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

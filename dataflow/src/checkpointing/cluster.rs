//! A checkpointed job across worker processes.
//!
//! The coordinator's driver keeps the job's one [`weir_checkpoint::Coordinator`] and
//! its restart loop; instead of spawning the job in its own process, each attempt is
//! a `RemoteAttempt`: the coordinator sends every worker a [`Deployment`], each
//! worker runs its slots' subtasks ([`WorkerAgent`]) with the data plane between
//! them, and the control messages ([`ToWorker`], [`FromWorker`]) travel over a
//! [`ClusterLink`] (HTTP between processes, channels inside one).
//!
//! ```text
//!  coordinator: Driver::drive(RemoteAttempt) ── ToWorker::{Barrier, Complete, Cancel} ──▶ workers
//!        ▲                                                                              │
//!        └── FromWorker::{Uploaded(ack, handles), Finished, Declined, Failed} ◀──────────┘
//!  worker: its subtasks snapshot, its own driver uploads their state (upload.rs) and
//!          reports the handles; the coordinator writes `_metadata` and notifies all
//! ```
//!
//! A worker that fails, is lost or is cut off fails the attempt; the restart loop
//! deploys the next attempt, from the newest complete checkpoint of the timeline, on
//! the workers the link knows then.

use super::driver::{BuildFn, Driver};
use super::executor::Internal;
use super::live::RestoreProgress;
use super::{CheckpointingConfig, JobListener};
use crate::wire::{Network, Placement, WorkerId};
use crate::{DataflowError, GraphView, JobConfig, JobEvent, Result, SubtaskMetrics};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_checkpoint::{Barrier, CheckpointId, SubtaskAck, SubtaskId, SubtaskUpload};

/// What a worker restores its subtasks from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreFrom {
    /// Nothing: a fresh start.
    Nothing,
    /// A complete checkpoint of the job.
    Checkpoint(u64),
    /// A savepoint, by location.
    Savepoint(String),
}

/// One attempt of a job, as one worker runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The job's name.
    pub job: String,
    /// The job's definition, opaque here: the worker's resolver turns it into the
    /// graph (a job file's text for `weir worker`).
    pub spec: String,
    /// The attempt: new at every start and restart; the scope of its channels.
    pub attempt: u64,
    /// The run (timeline) the attempt belongs to.
    pub timeline: u64,
    /// The worker of each slot (subtask `i` of every task runs in slot `i mod n`).
    pub slots: Vec<u32>,
    /// Where each worker's data plane listens.
    pub peers: BTreeMap<u32, String>,
    /// What to restore.
    pub restore: RestoreFrom,
}

/// What the coordinator tells a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run this attempt's subtasks of the worker's slots.
    Deploy(Deployment),
    /// Inject a barrier at the sources (and at the finished subtasks listed).
    Barrier {
        /// The attempt.
        attempt: u64,
        /// The barrier.
        barrier: Barrier,
        /// Finished subtasks that take it too.
        finished: Vec<SubtaskId>,
    },
    /// Inject a barrier at one (finished) subtask.
    BarrierOn {
        /// The attempt.
        attempt: u64,
        /// The barrier.
        barrier: Barrier,
        /// The subtask.
        subtask: SubtaskId,
    },
    /// A checkpoint is complete: the sinks commit what it covers.
    Complete {
        /// The attempt.
        attempt: u64,
        /// The checkpoint.
        checkpoint: u64,
    },
    /// Stop the attempt.
    Cancel {
        /// The attempt.
        attempt: u64,
    },
}

impl ToWorker {
    /// The attempt the message is about.
    pub fn attempt(&self) -> u64 {
        match self {
            Self::Deploy(deployment) => deployment.attempt,
            Self::Barrier { attempt, .. }
            | Self::BarrierOn { attempt, .. }
            | Self::Complete { attempt, .. }
            | Self::Cancel { attempt } => *attempt,
        }
    }

    /// The attempt a link must report failed if the worker it deploys on is lost.
    pub fn deployed(&self) -> Option<u64> {
        matches!(self, Self::Deploy(_)).then(|| self.attempt())
    }
}

/// What a worker reports to the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The attempt's subtasks on this worker run.
    Started {
        /// The attempt.
        attempt: u64,
        /// Its subtasks here.
        subtasks: Vec<SubtaskId>,
        /// What restoring them read, and from where.
        restored: RestoreProgress,
        /// The job's graph (the same on every worker).
        graph: GraphView,
    },
    /// The counters of the attempt's subtasks on this worker, every second.
    Counters {
        /// The attempt.
        attempt: u64,
        /// One entry per operator subtask here.
        subtasks: Vec<SubtaskMetrics>,
    },
    /// A subtask's snapshot is uploaded.
    Uploaded {
        /// The attempt.
        attempt: u64,
        /// The acknowledgement (its snapshots taken out: they are in the upload).
        ack: SubtaskAck,
        /// What the upload wrote.
        upload: SubtaskUpload,
    },
    /// A subtask's snapshot could not be uploaded.
    UploadFailed {
        /// The attempt.
        attempt: u64,
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        reason: String,
    },
    /// A subtask processed all its input.
    Finished {
        /// The attempt.
        attempt: u64,
        /// The subtask.
        id: SubtaskId,
        /// Its task's name.
        task: String,
        /// Its index.
        subtask: usize,
    },
    /// A source could not take a barrier (it had finished).
    Declined {
        /// The attempt.
        attempt: u64,
        /// The checkpoint.
        checkpoint: u64,
        /// The task's name.
        task: String,
        /// The subtask's index.
        subtask: usize,
    },
    /// The attempt failed on this worker (or the worker was lost: then the link
    /// reports it on the worker's behalf).
    Failed {
        /// The attempt.
        attempt: u64,
        /// Why.
        reason: String,
    },
    /// The attempt's subtasks on this worker stopped after a cancel.
    Stopped {
        /// The attempt.
        attempt: u64,
    },
}

impl FromWorker {
    /// The attempt the report is about.
    pub fn attempt(&self) -> u64 {
        match self {
            Self::Started { attempt, .. }
            | Self::Counters { attempt, .. }
            | Self::Uploaded { attempt, .. }
            | Self::UploadFailed { attempt, .. }
            | Self::Finished { attempt, .. }
            | Self::Declined { attempt, .. }
            | Self::Failed { attempt, .. }
            | Self::Stopped { attempt } => *attempt,
        }
    }
}

/// A worker as the coordinator knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Where its data plane listens.
    pub addr: String,
    /// How many slots it offers.
    pub slots: usize,
}

/// The slots of `workers`, spread: one slot of each worker in turn, so that
/// subtasks `0, 1, …` go to different workers first.
pub fn spread_slots(workers: &BTreeMap<WorkerId, WorkerInfo>) -> Vec<u32> {
    let most = workers.values().map(|w| w.slots.max(1)).max().unwrap_or(0);
    (0..most)
        .flat_map(|round| {
            workers
                .iter()
                .filter(move |(_, w)| w.slots.max(1) > round)
                .map(|(id, _)| id.0)
        })
        .collect()
}

/// The slots of an attempt on `workers`, given the slots of the attempt before
/// (`previous`). When the only change is workers lost, every subtask of a worker
/// left stays where it was and the slots of the lost ones go to the others
/// ([`replace_lost`]): their local state and the standby copies
/// ([`standby_hosts`]) are where the subtasks run next. Otherwise (a first
/// attempt, a worker added) the slots are spread afresh.
pub fn place(previous: Option<&[u32]>, workers: &BTreeMap<WorkerId, WorkerInfo>) -> Vec<u32> {
    let alive: Vec<u32> = workers.keys().map(|w| w.0).collect();
    match previous {
        Some(previous)
            if alive.iter().all(|w| previous.contains(w))
                && previous.iter().any(|w| alive.contains(w)) =>
        {
            replace_lost(previous, &alive)
        }
        _ => spread_slots(workers),
    }
}

/// `slots` with every slot of a worker not in `alive` given to one that is (slot
/// `j` to `alive[j mod n]`), the others unchanged.
pub fn replace_lost(slots: &[u32], alive: &[u32]) -> Vec<u32> {
    slots
        .iter()
        .enumerate()
        .map(|(j, w)| match alive.len() {
            0 => *w,
            n if !alive.contains(w) => alive[j % n],
            _ => *w,
        })
        .collect()
}

/// The workers that keep standby copies of subtask `subtask` (of any task) running
/// in `slots`: the one it moves to if its worker is lost, then the one it moves to
/// if that one is lost too, … (`standbys` of them, fewer when there are not as
/// many other workers).
pub fn standby_hosts(slots: &[u32], subtask: usize, standbys: usize) -> Vec<u32> {
    let Some(&host) = slots.get(subtask % slots.len().max(1)) else {
        return Vec::new();
    };
    let workers: BTreeSet<u32> = slots.iter().copied().collect();
    let mut lost = vec![host];
    let mut hosts = Vec::new();
    for _ in 0..standbys {
        let alive: Vec<u32> = workers
            .iter()
            .copied()
            .filter(|w| !lost.contains(w))
            .collect();
        if alive.is_empty() {
            break;
        }
        let next = replace_lost(slots, &alive)[subtask % slots.len()];
        hosts.push(next);
        lost.push(next);
    }
    hosts
}

/// How the coordinator reaches its workers.
pub trait ClusterLink: Send + Sync {
    /// The workers available now.
    fn workers(&self) -> BTreeMap<WorkerId, WorkerInfo>;

    /// Sends a message to a worker.
    ///
    /// # Errors
    /// The worker cannot be reached.
    fn send(&self, worker: WorkerId, message: ToWorker) -> Result<()>;

    /// The reports of every worker, in arrival order per worker. A worker the link
    /// loses is reported as [`FromWorker::Failed`] of every attempt it was deployed
    /// in.
    fn reports(&self) -> Receiver<(WorkerId, FromWorker)>;
}

/// Where a link sends its workers' reports: to every subscriber (each attempt's
/// relay subscribes; one that is gone is dropped).
#[derive(Default)]
pub struct Subscribers(std::sync::Mutex<Vec<Sender<(WorkerId, FromWorker)>>>);

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscribers")
    }
}

impl Subscribers {
    /// Passes `report` of `worker` to every subscriber.
    pub fn publish(&self, worker: WorkerId, report: FromWorker) {
        lock(&self.0).retain(|s| s.send((worker, report.clone())).is_ok());
    }

    /// A new subscriber: every report published from now on.
    pub fn subscribe(&self) -> Receiver<(WorkerId, FromWorker)> {
        let (tx, rx) = unbounded();
        lock(&self.0).push(tx);
        rx
    }
}

/// How often a worker reports its subtasks' counters.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// The latest counters each worker of an attempt reported, for the coordinator's
/// live view of the job (`/metrics`, the web UI).
#[derive(Clone, Default)]
pub(crate) struct RemoteCounters(Arc<std::sync::Mutex<BTreeMap<WorkerId, Vec<SubtaskMetrics>>>>);

impl RemoteCounters {
    fn set(&self, worker: WorkerId, subtasks: Vec<SubtaskMetrics>) {
        lock(&self.0).insert(worker, subtasks);
    }

    /// Every worker's latest counters, by vertex and subtask.
    pub(crate) fn snapshot(&self) -> Vec<SubtaskMetrics> {
        let mut all: Vec<SubtaskMetrics> = lock(&self.0).values().flatten().cloned().collect();
        all.sort_by_key(|m| (m.vertex, m.subtask));
        all
    }
}

/// How long workers may take to start their part of an attempt.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// One attempt of a job on its workers, as the coordinator's driver sees it.
pub(super) struct RemoteAttempt {
    link: Arc<dyn ClusterLink>,
    attempt: u64,
    /// The worker of each slot.
    pub(super) slots: Vec<u32>,
    /// What the workers' restores read, summed.
    pub(super) restored: RestoreProgress,
    /// The job's graph, as the workers built it.
    pub(super) graph: GraphView,
    /// The latest counters of each worker's subtasks.
    pub(super) counters: RemoteCounters,
    workers: Vec<WorkerId>,
    subtasks: Vec<SubtaskId>,
    /// Finished and declined reports, as a local job's events.
    pub(super) events: Receiver<JobEvent>,
    /// Uploaded state, as a local upload's report.
    pub(super) internal: Receiver<Internal>,
    failures: Receiver<(WorkerId, String)>,
    stopped: Receiver<WorkerId>,
    relay: Option<std::thread::JoinHandle<()>>,
    done: Sender<()>,
}

impl RemoteAttempt {
    /// Deploys `attempt` on every worker the link knows and waits until each runs
    /// its part.
    pub(super) fn start(
        link: Arc<dyn ClusterLink>,
        job: &str,
        spec: &str,
        attempt: u64,
        timeline: u64,
        restore: RestoreFrom,
        previous: Option<&[u32]>,
    ) -> Result<Self> {
        // A job submitted before its workers registered waits for them (as Flink
        // waits for slots).
        let deadline = Instant::now() + START_TIMEOUT;
        let peers = loop {
            let peers = link.workers();
            if !peers.is_empty() {
                break peers;
            }
            if Instant::now() >= deadline {
                return Err(DataflowError::checkpoint(
                    job,
                    format!("no worker registered with the coordinator within {START_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let workers: Vec<WorkerId> = peers.keys().copied().collect();
        let reports = link.reports();
        let deployment = Deployment {
            job: job.to_string(),
            spec: spec.to_string(),
            attempt,
            timeline,
            slots: place(previous, &peers),
            peers: peers.iter().map(|(w, i)| (w.0, i.addr.clone())).collect(),
            restore,
        };
        for worker in &workers {
            link.send(*worker, ToWorker::Deploy(deployment.clone()))?;
        }
        let mut restored = RestoreProgress::default();
        let mut graph = GraphView::default();
        let mut started: BTreeMap<WorkerId, Vec<SubtaskId>> = BTreeMap::new();
        // Reports of this attempt that come before every worker started: the parts
        // that started first run meanwhile, and may even finish.
        let mut early: Vec<(WorkerId, FromWorker)> = Vec::new();
        let fail = |reason: String| {
            for worker in &workers {
                let _ = link.send(*worker, ToWorker::Cancel { attempt });
            }
            Err(DataflowError::TaskFailed {
                task: format!("attempt {attempt}"),
                message: reason,
            })
        };
        while started.len() < workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match reports.recv_timeout(left) {
                Ok((
                    worker,
                    FromWorker::Started {
                        attempt: a,
                        subtasks,
                        restored: part,
                        graph: built,
                    },
                )) if a == attempt => {
                    started.insert(worker, subtasks);
                    restored.add(&part);
                    graph = built;
                }
                Ok((worker, FromWorker::Failed { attempt: a, reason })) if a == attempt => {
                    return fail(format!("{worker} could not start: {reason}"));
                }
                Ok((worker, report)) if report.attempt() == attempt => early.push((worker, report)),
                Ok(_) => {}
                Err(_) => {
                    let missing: Vec<String> = workers
                        .iter()
                        .filter(|w| !started.contains_key(w))
                        .map(|w| w.to_string())
                        .collect();
                    return fail(format!(
                        "{} did not start within {START_TIMEOUT:?}",
                        missing.join(", ")
                    ));
                }
            }
        }
        let subtasks: Vec<SubtaskId> = started.values().flatten().copied().collect();
        let (events_tx, events) = unbounded();
        let (internal_tx, internal) = unbounded();
        let (failures_tx, failures) = unbounded();
        let (stopped_tx, stopped) = unbounded();
        let (done, done_rx) = crossbeam_channel::bounded::<()>(1);
        let counters = RemoteCounters::default();
        let counted = counters.clone();
        let relay = std::thread::Builder::new()
            .name(format!("weir-attempt-{attempt}"))
            .spawn(move || {
                let relay = |worker: WorkerId, report: FromWorker| match report {
                    FromWorker::Uploaded { ack, upload, .. } => {
                        internal_tx.send(Internal::Uploaded { ack, upload }).is_ok()
                    }
                    FromWorker::UploadFailed {
                        checkpoint, reason, ..
                    } => internal_tx
                        .send(Internal::UploadFailed {
                            checkpoint: CheckpointId::new(checkpoint),
                            reason: format!("{worker}: {reason}"),
                        })
                        .is_ok(),
                    FromWorker::Finished {
                        id, task, subtask, ..
                    } => events_tx
                        .send(JobEvent::Finished { id, task, subtask })
                        .is_ok(),
                    FromWorker::Declined {
                        checkpoint,
                        task,
                        subtask,
                        ..
                    } => events_tx
                        .send(JobEvent::BarrierDeclined {
                            checkpoint: CheckpointId::new(checkpoint),
                            task,
                            subtask,
                        })
                        .is_ok(),
                    FromWorker::Failed { reason, .. } => failures_tx.send((worker, reason)).is_ok(),
                    FromWorker::Stopped { .. } => stopped_tx.send(worker).is_ok(),
                    FromWorker::Started { .. } => true,
                    FromWorker::Counters { subtasks, .. } => {
                        counted.set(worker, subtasks);
                        true
                    }
                };
                for (worker, report) in early {
                    relay(worker, report);
                }
                loop {
                    let report = select! {
                        recv(reports) -> report => report,
                        recv(done_rx) -> _ => return,
                    };
                    let Ok((worker, report)) = report else { return };
                    if report.attempt() == attempt {
                        relay(worker, report);
                    }
                }
            })
            .map_err(|e| DataflowError::checkpoint_caused("could not start a relay thread", e))?;
        Ok(Self {
            link,
            attempt,
            slots: deployment.slots,
            restored,
            graph,
            counters,
            workers,
            subtasks,
            events,
            internal,
            failures,
            stopped,
            relay: Some(relay),
            done,
        })
    }

    pub(super) fn subtasks(&self) -> Vec<SubtaskId> {
        self.subtasks.clone()
    }

    pub(super) fn poll_failure(&self) -> Option<String> {
        self.failures
            .try_recv()
            .ok()
            .map(|(worker, reason)| format!("{worker}: {reason}"))
    }

    fn broadcast(&self, message: &ToWorker) {
        for worker in &self.workers {
            if let Err(e) = self.link.send(*worker, message.clone()) {
                tracing::warn!("{e}");
            }
        }
    }

    pub(super) fn trigger_barrier_on(&self, barrier: Barrier, finished: &BTreeSet<SubtaskId>) {
        self.broadcast(&ToWorker::Barrier {
            attempt: self.attempt,
            barrier,
            finished: finished.iter().copied().collect(),
        });
    }

    pub(super) fn trigger_barrier_on_subtask(&self, barrier: Barrier, subtask: SubtaskId) {
        self.broadcast(&ToWorker::BarrierOn {
            attempt: self.attempt,
            barrier,
            subtask,
        });
    }

    pub(super) fn notify_checkpoint_complete(&self, id: CheckpointId) {
        self.broadcast(&ToWorker::Complete {
            attempt: self.attempt,
            checkpoint: id.get(),
        });
    }

    /// Cancels the attempt on every worker and waits (a while) until each stopped.
    pub(super) fn shutdown(mut self) {
        self.broadcast(&ToWorker::Cancel {
            attempt: self.attempt,
        });
        let mut waiting: BTreeSet<WorkerId> = self.workers.iter().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let registered = self.link.workers();
            waiting.retain(|w| registered.contains_key(w));
            if waiting.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            select! {
                recv(self.stopped) -> worker => match worker {
                    Ok(worker) => { waiting.remove(&worker); }
                    Err(_) => break,
                },
                recv(self.failures) -> failure => match failure {
                    // A worker whose part failed, or that was lost, has stopped too.
                    Ok((worker, failure)) => {
                        tracing::debug!("while stopping attempt {}: {worker}: {failure}", self.attempt);
                        waiting.remove(&worker);
                    }
                    Err(_) => break,
                },
                default(left) => {
                    tracing::warn!(
                        "attempt {}: no stop confirmed by {:?} within 30 s",
                        self.attempt, waiting
                    );
                    break;
                }
            }
        }
        let _ = self.done.send(());
        if let Some(relay) = self.relay.take() {
            let _ = relay.join();
        }
    }
}

/// Turns a deployment's spec into the job on a worker: its settings, its
/// checkpointing settings, and the function that builds its graph.
pub type Resolver =
    Arc<dyn Fn(&Deployment) -> Result<(JobConfig, CheckpointingConfig, BuildFn)> + Send + Sync>;

/// A worker's side: runs the parts of attempts the coordinator deploys on it.
pub struct WorkerAgent {
    network: Network,
    resolve: Resolver,
    listener: Arc<dyn JobListener>,
    parts: BTreeMap<u64, Sender<ToWorker>>,
}

impl WorkerAgent {
    /// An agent running parts on the data plane `network`, building each job with
    /// `resolve`.
    pub fn new(network: Network, resolve: Resolver, listener: Arc<dyn JobListener>) -> Self {
        Self {
            network,
            resolve,
            listener,
            parts: BTreeMap::new(),
        }
    }

    /// Cancels every part this worker runs (it lost its coordinator, or was
    /// forgotten by it): they stop before their replacements commit anything.
    pub fn cancel_all(&mut self, report: &Sender<FromWorker>) {
        let attempts: Vec<u64> = self.parts.keys().copied().collect();
        for attempt in attempts {
            self.handle(ToWorker::Cancel { attempt }, report);
        }
        self.parts.clear();
    }

    /// Handles one message of the coordinator; reports go to `report`.
    pub fn handle(&mut self, message: ToWorker, report: &Sender<FromWorker>) {
        let attempt = message.attempt();
        if let ToWorker::Deploy(deployment) = message {
            let (commands_tx, commands) = unbounded();
            self.parts.insert(attempt, commands_tx);
            let network = self.network.clone();
            let resolve = self.resolve.clone();
            let listener = self.listener.clone();
            let part_report = report.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("weir-part-{attempt}"))
                .spawn(move || {
                    let report = part_report;
                    let outcome =
                        run_part(&deployment, network, &resolve, listener, commands, &report);
                    if let Err(e) = outcome {
                        let _ = report.send(FromWorker::Failed {
                            attempt,
                            reason: e.to_string(),
                        });
                    }
                    // Also after a failure: a cancel may have crossed it.
                    let _ = report.send(FromWorker::Stopped { attempt });
                });
            if let Err(e) = spawned {
                let _ = report.send(FromWorker::Failed {
                    attempt,
                    reason: format!("could not start a thread: {e}"),
                });
            }
            return;
        }
        let cancel = matches!(message, ToWorker::Cancel { .. });
        let delivered = self
            .parts
            .get(&attempt)
            .is_some_and(|part| part.send(message).is_ok());
        if !delivered {
            // The part ended (or never ran here): forget it; a cancel is answered.
            self.parts.remove(&attempt);
            if cancel {
                let _ = report.send(FromWorker::Stopped { attempt });
            }
        }
    }
}

/// Runs a worker's part of one attempt until it is cancelled or fails.
fn run_part(
    deployment: &Deployment,
    network: Network,
    resolve: &Resolver,
    listener: Arc<dyn JobListener>,
    commands: Receiver<ToWorker>,
    report: &Sender<FromWorker>,
) -> Result<()> {
    let (mut config, checkpointing, build) = resolve(deployment)?;
    config.name = deployment.job.clone();
    let attempt = deployment.attempt;
    config.placement = Some(Placement {
        network,
        scope: attempt,
        slots: deployment.slots.iter().map(|&w| WorkerId(w)).collect(),
        peers: deployment
            .peers
            .iter()
            .map(|(&w, a)| (WorkerId(w), a.clone()))
            .collect(),
        connect_timeout: Duration::from_secs(30),
    });
    let (driver, _requests) =
        Driver::open(config, checkpointing, build, listener, deployment.timeline)?;
    driver.run_part(deployment, commands, report)
}

impl Driver {
    /// A worker's part of an attempt: spawns this worker's subtasks, uploads their
    /// snapshots and reports the handles, and carries out the coordinator's
    /// commands.
    fn run_part(
        &self,
        deployment: &Deployment,
        commands: Receiver<ToWorker>,
        report: &Sender<FromWorker>,
    ) -> Result<()> {
        let attempt = deployment.attempt;
        let restore = self.load_for_worker(&deployment.restore)?;
        let handle = self.spawn_attempt(restore)?;
        report
            .send(FromWorker::Started {
                attempt,
                subtasks: handle.subtasks(),
                restored: self.live.restore(),
                graph: (*handle.graph()).clone(),
            })
            .map_err(|_| DataflowError::Cancelled)?;
        let (internal_tx, internal) = unbounded::<Internal>();
        let job = self.config.name.clone();
        // The barriers of checkpoints in flight, to name their uploads.
        let mut barriers: BTreeMap<CheckpointId, Barrier> = BTreeMap::new();
        let standby = Standby::default();
        let counters = handle.metrics_view();
        let mut counted_at = Instant::now();
        loop {
            if let Some(task) = handle.poll_failure() {
                let error = handle
                    .shutdown()
                    .err()
                    .unwrap_or_else(|| DataflowError::TaskFailed {
                        task,
                        message: "failed".into(),
                    });
                return Err(error);
            }
            select! {
                recv(handle.events()) -> event => match event {
                    Ok(JobEvent::Ack(ack, frozen)) => {
                        if let Some(barrier) = barriers.get(&ack.checkpoint).copied() {
                            self.upload(ack, frozen, barrier, &job, internal_tx.clone());
                        }
                    }
                    Ok(JobEvent::Finished { id, task, subtask }) => {
                        let _ = report.send(FromWorker::Finished { attempt, id, task, subtask });
                    }
                    Ok(JobEvent::BarrierDeclined { checkpoint, task, subtask }) => {
                        let _ = report.send(FromWorker::Declined {
                            attempt, checkpoint: checkpoint.get(), task, subtask,
                        });
                    }
                    Err(_) => {}
                },
                recv(internal) -> message => match message {
                    Ok(Internal::Uploaded { ack, upload }) => {
                        let _ = report.send(FromWorker::Uploaded { attempt, ack, upload });
                    }
                    Ok(Internal::UploadFailed { checkpoint, reason }) => {
                        let _ = report.send(FromWorker::UploadFailed {
                            attempt, checkpoint: checkpoint.get(), reason,
                        });
                    }
                    Ok(Internal::MetadataDone { .. }) | Err(_) => {}
                },
                recv(commands) -> command => match command {
                    Ok(ToWorker::Barrier { barrier, finished, .. }) => {
                        barriers.insert(barrier.id, barrier);
                        handle.trigger_barrier_on(barrier, &finished.into_iter().collect());
                    }
                    Ok(ToWorker::BarrierOn { barrier, subtask, .. }) => {
                        barriers.insert(barrier.id, barrier);
                        handle.trigger_barrier_on_subtask(barrier, subtask);
                    }
                    Ok(ToWorker::Complete { checkpoint, .. }) => {
                        let id = CheckpointId::new(checkpoint);
                        barriers.retain(|&b, _| b > id);
                        handle.notify_checkpoint_complete(id);
                        if let Some(dir) = self.rocksdb_job_dir() {
                            weir_checkpoint::native::prune_local(&dir, id);
                        }
                        self.keep_standbys(&standby, id, &deployment.slots);
                    }
                    Ok(ToWorker::Cancel { .. }) | Err(_) => {
                        // The last counters, so a finished job shows its totals.
                        let _ = report.send(FromWorker::Counters {
                            attempt,
                            subtasks: counters.snapshot(),
                        });
                        return match handle.shutdown() {
                            Err(e) if !matches!(e, DataflowError::TaskFailed { .. } | DataflowError::Cancelled) => Err(e),
                            _ => Ok(()),
                        };
                    }
                    Ok(ToWorker::Deploy(_)) => {}
                },
                default(Duration::from_millis(5)) => {}
            }
            if counted_at.elapsed() >= COUNTERS_EVERY {
                counted_at = Instant::now();
                let _ = report.send(FromWorker::Counters {
                    attempt,
                    subtasks: counters.snapshot(),
                });
            }
        }
    }
}

/// The standby copies a worker's part keeps (`CheckpointingConfig::standbys`): at
/// most one refresh at a time; a checkpoint completed during one is skipped (the
/// next refresh copies a newer one).
#[derive(Default)]
struct Standby {
    /// The refresh in progress.
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Standby {
    /// The part ended: a refresh in progress stops (its partial copy is not used,
    /// and the next refresh removes it).
    fn drop(&mut self) {
        if let Some(task) = lock(&self.running).take() {
            task.abort();
        }
    }
}

impl Driver {
    /// Where this worker keeps standby copies of the job's subtasks it does not run:
    /// `<rocksdb dir>/.standby/<job>`, or on the heap `<local dir>/.standby/<job>`
    /// ([`JobConfig::local_dir`](crate::JobConfig::local_dir)).
    pub(super) fn standby_root(&self) -> Option<std::path::PathBuf> {
        self.rocksdb_dir_of(Some(".standby")).or_else(|| {
            let job = weir_checkpoint::layout::path_segment(&self.config.name);
            Some(self.config.local_dir.as_ref()?.join(".standby").join(job))
        })
    }

    /// After checkpoint `checkpoint` completed: refreshes, in the background, the
    /// standby copies of the keyed state (native RocksDB checkpoints, or heap state
    /// objects) of the subtasks this worker would take over if their worker were
    /// lost ([`standby_hosts`]), downloading only the files the previous copies lack.
    fn keep_standbys(&self, standby: &Standby, checkpoint: CheckpointId, slots: &[u32]) {
        let standbys = self.checkpointing.standbys;
        let (Some(me), Some(root)) = (
            self.config.placement.as_ref().map(|p| p.network.id().0),
            self.standby_root(),
        ) else {
            return;
        };
        if standbys == 0 {
            return;
        }
        let mut running = lock(&standby.running);
        if running.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let storage = self.storage.clone();
        let job = self.config.name.clone();
        let slots = slots.to_vec();
        *running = Some(self.runtime.spawn(async move {
            let started = Instant::now();
            let kept = async {
                let metadata = storage
                    .read_metadata(&job, checkpoint)
                    .await
                    .map_err(|e| e.to_string())?;
                let reader = weir_checkpoint::restore::Reader::Checkpoint(&storage);
                let mut keep = BTreeSet::new();
                let mut copied = weir_checkpoint::native::StandbyCopied::default();
                for (uid, operator) in &metadata.operators {
                    for (&subtask, state) in &operator.subtasks {
                        if (state.native.is_empty() && state.keyed.is_empty())
                            || !standby_hosts(&slots, subtask, standbys).contains(&me)
                        {
                            continue;
                        }
                        keep.insert((uid.to_string(), subtask));
                        if !state.keyed.is_empty() {
                            let one = weir_checkpoint::heap_standby::keep(
                                &reader,
                                &state.keyed,
                                &root,
                                uid.as_str(),
                                subtask,
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                            copied.linked += one.linked;
                            copied.downloaded += one.downloaded;
                        }
                        for (index, handle) in state.native.iter().enumerate() {
                            let one = weir_checkpoint::native::keep_standby(
                                &reader,
                                handle,
                                &root,
                                uid.as_str(),
                                subtask,
                                checkpoint,
                                index,
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                            copied.linked += one.linked;
                            copied.downloaded += one.downloaded;
                        }
                        weir_checkpoint::native::drop_older_standby(
                            &root,
                            uid.as_str(),
                            subtask,
                            checkpoint,
                        );
                    }
                }
                weir_checkpoint::native::prune_standby(&root, &keep);
                Ok::<_, String>((keep.len(), copied))
            }
            .await;
            match kept {
                Ok((subtasks, copied)) if subtasks > 0 => tracing::info!(
                    job,
                    checkpoint = checkpoint.get(),
                    subtasks,
                    downloaded = copied.downloaded,
                    linked = copied.linked,
                    "standby copies kept in {:?}",
                    started.elapsed()
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("job `{job}`: no standby copy of checkpoint {checkpoint}: {e}")
                }
            }
        }));
    }
}

/// A cluster inside one process: each worker an agent on its own thread with its
/// own data plane (real TCP on loopback), reached through channels instead of HTTP.
/// For tests and for a coordinator that runs its workers embedded.
#[derive(Clone, Default)]
pub struct LocalCluster {
    inner: Arc<LocalInner>,
}

#[derive(Default)]
struct LocalInner {
    workers: std::sync::Mutex<BTreeMap<WorkerId, LocalWorker>>,
    subscribers: Subscribers,
}

struct LocalWorker {
    addr: String,
    commands: Sender<ToWorker>,
    /// The attempts deployed on it: reported failed if it is removed.
    attempts: BTreeSet<u64>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalInner {
    fn publish(&self, worker: WorkerId, report: FromWorker) {
        self.subscribers.publish(worker, report);
    }
}

impl LocalCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker serving on `network` (its id is the network's).
    ///
    /// # Errors
    /// Its threads cannot start.
    pub fn add_worker(
        &self,
        network: Network,
        resolve: Resolver,
        listener: Arc<dyn JobListener>,
    ) -> Result<WorkerId> {
        let id = network.id();
        let addr = network.local_addr().to_string();
        let (commands_tx, commands) = unbounded::<ToWorker>();
        let (reports_tx, reports) = unbounded::<FromWorker>();
        let mut agent = WorkerAgent::new(network, resolve, listener);
        std::thread::Builder::new()
            .name(format!("weir-agent-{}", id.0))
            .spawn(move || {
                while let Ok(message) = commands.recv() {
                    agent.handle(message, &reports_tx);
                }
            })
            .map_err(|e| DataflowError::checkpoint_caused("could not start a worker agent", e))?;
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name(format!("weir-reports-{}", id.0))
            .spawn(move || {
                while let Ok(report) = reports.recv() {
                    inner.publish(id, report);
                }
            })
            .map_err(|e| DataflowError::checkpoint_caused("could not start a worker agent", e))?;
        lock(&self.inner.workers).insert(
            id,
            LocalWorker {
                addr,
                commands: commands_tx,
                attempts: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    /// Removes a worker as if it were lost: its parts are cancelled and every
    /// attempt it ran is reported failed.
    pub fn remove_worker(&self, id: WorkerId) {
        let removed = lock(&self.inner.workers).remove(&id);
        if let Some(worker) = removed {
            for attempt in worker.attempts {
                let _ = worker.commands.send(ToWorker::Cancel { attempt });
                self.inner.publish(
                    id,
                    FromWorker::Failed {
                        attempt,
                        reason: "the worker was lost".into(),
                    },
                );
            }
        }
    }
}

impl ClusterLink for LocalCluster {
    fn workers(&self) -> BTreeMap<WorkerId, WorkerInfo> {
        lock(&self.inner.workers)
            .iter()
            .map(|(id, w)| {
                let info = WorkerInfo {
                    addr: w.addr.clone(),
                    slots: 1,
                };
                (*id, info)
            })
            .collect()
    }

    fn send(&self, worker: WorkerId, message: ToWorker) -> Result<()> {
        let mut workers = lock(&self.inner.workers);
        let target = workers
            .get_mut(&worker)
            .ok_or_else(|| DataflowError::TaskFailed {
                task: worker.to_string(),
                message: "the worker is not registered".into(),
            })?;
        target.attempts.extend(message.deployed());
        target
            .commands
            .send(message)
            .map_err(|_| DataflowError::TaskFailed {
                task: worker.to_string(),
                message: "the worker stopped".into(),
            })
    }

    fn reports(&self) -> Receiver<(WorkerId, FromWorker)> {
        self.inner.subscribers.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(slots: &[(u32, usize)]) -> BTreeMap<WorkerId, WorkerInfo> {
        slots
            .iter()
            .map(|&(id, slots)| {
                (
                    WorkerId(id),
                    WorkerInfo {
                        addr: format!("w{id}"),
                        slots,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_lost_workers_slots_go_to_the_others_and_every_other_subtask_stays() {
        let three = workers(&[(1, 1), (2, 1), (3, 1)]);
        let first = place(None, &three);
        assert_eq!(first, [1, 2, 3]);
        // Worker 2 lost: only its slot moves.
        let after = place(Some(&first), &workers(&[(1, 1), (3, 1)]));
        assert_eq!(after, [1, 3, 3]);
        // A worker added: spread afresh.
        let grown = place(Some(&after), &workers(&[(1, 1), (3, 1), (4, 1)]));
        assert_eq!(grown, [1, 3, 4]);
        // Every worker lost: spread on the new ones.
        assert_eq!(place(Some(&first), &workers(&[(7, 2)])), [7, 7]);
    }

    #[test]
    fn each_subtask_has_its_standby_where_it_would_move() {
        let slots = [1, 2, 3];
        for subtask in 0..8 {
            let host = slots[subtask % 3];
            let hosts = standby_hosts(&slots, subtask, 1);
            assert_eq!(hosts.len(), 1);
            assert_ne!(hosts[0], host, "subtask {subtask}");
            // Exactly where the placement after losing its worker puts it.
            let alive: Vec<u32> = slots.iter().copied().filter(|&w| w != host).collect();
            assert_eq!(replace_lost(&slots, &alive)[subtask % 3], hosts[0]);
        }
        // Two standbys: on both other workers; never more than there are.
        let two = standby_hosts(&slots, 1, 2);
        assert_eq!(two.len(), 2);
        assert!(!two.contains(&2));
        assert_eq!(standby_hosts(&slots, 1, 5).len(), 2);
        assert!(standby_hosts(&[4, 4], 0, 1).is_empty());
        assert!(standby_hosts(&[], 0, 1).is_empty());
    }
}

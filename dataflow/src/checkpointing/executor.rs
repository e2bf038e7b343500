//! The command executor: [`Driver::drive`] runs one attempt of the job. It waits for
//! the job's events (a subtask's snapshot, a declined barrier, a finished subtask),
//! the results of uploads and metadata writes, and savepoint and cancel requests
//! (also those `weir savepoint` leaves in the checkpoint storage, polled by
//! [`poll_control`]); it passes each to the pure [`Coordinator`] as an [`Event`] and
//! carries out the [`Command`]s it answers. What it keeps are I/O handles only: the
//! reply channels of savepoint requests.

use super::cluster::RemoteAttempt;
use super::driver::{hit, Driver};
use super::job::Request;
use super::Failpoint;
use crate::{DataflowError, JobEvent, JobHandle, Result};
use crossbeam_channel::{bounded, never, select, unbounded, Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_checkpoint::control::ControlReply;
use weir_checkpoint::native;
use weir_checkpoint::{
    Barrier, CheckpointError, CheckpointId, CheckpointStorage, Command, Coordinator, Event,
    SubtaskAck, SubtaskId, SubtaskUpload,
};
use weir_state::MaxParallelism;

/// How an attempt ended.
pub(super) enum Ended {
    Finished(crate::JobResult),
    Cancelled(Vec<crate::SubtaskMetrics>),
    Suspended(String, Vec<crate::SubtaskMetrics>),
    Failed(DataflowError),
}

/// What the upload and metadata tasks report to the executor.
pub(super) enum Internal {
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
pub(super) async fn poll_control(
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

/// One attempt of the job: spawned in this process, or deployed on workers.
pub(super) enum Attempt {
    Local(JobHandle),
    Remote(RemoteAttempt),
}

impl Attempt {
    fn subtasks(&self) -> Vec<SubtaskId> {
        match self {
            Self::Local(handle) => handle.subtasks(),
            Self::Remote(remote) => remote.subtasks(),
        }
    }

    fn poll_failure(&self) -> Option<String> {
        match self {
            Self::Local(handle) => handle.poll_failure(),
            Self::Remote(remote) => remote.poll_failure(),
        }
    }

    /// The tasks' events; the uploads a remote attempt's workers report.
    fn events(&self) -> (Receiver<JobEvent>, Receiver<Internal>) {
        match self {
            Self::Local(handle) => (handle.events().clone(), never()),
            Self::Remote(remote) => (remote.events.clone(), remote.internal.clone()),
        }
    }

    fn trigger_barrier_on(&self, barrier: Barrier, finished: &BTreeSet<SubtaskId>) {
        match self {
            Self::Local(handle) => handle.trigger_barrier_on(barrier, finished),
            Self::Remote(remote) => remote.trigger_barrier_on(barrier, finished),
        }
    }

    fn trigger_barrier_on_subtask(&self, barrier: Barrier, subtask: SubtaskId) {
        match self {
            Self::Local(handle) => handle.trigger_barrier_on_subtask(barrier, subtask),
            Self::Remote(remote) => remote.trigger_barrier_on_subtask(barrier, subtask),
        }
    }

    fn notify_checkpoint_complete(&self, id: CheckpointId) {
        match self {
            Self::Local(handle) => handle.notify_checkpoint_complete(id),
            Self::Remote(remote) => remote.notify_checkpoint_complete(id),
        }
    }

    /// The subtasks' counters (this process's only).
    fn metrics(&self) -> Vec<crate::SubtaskMetrics> {
        match self {
            Self::Local(handle) => handle.metrics(),
            Self::Remote(_) => Vec::new(),
        }
    }

    fn shutdown(self) -> Result<crate::JobResult> {
        match self {
            Self::Local(handle) => handle.shutdown(),
            Self::Remote(remote) => {
                remote.shutdown();
                Ok(crate::JobResult {
                    elapsed: Duration::ZERO,
                    metrics: Vec::new(),
                    acks: Vec::new(),
                })
            }
        }
    }
}

impl Driver {
    /// Runs one attempt with checkpoints numbered from `next_id`, until it ends.
    pub(super) fn drive(&self, handle: Attempt, next_id: CheckpointId) -> Ended {
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
        let (job_events, remote_uploads) = handle.events();
        loop {
            if let Some(failed) = handle.poll_failure() {
                for (_, reply) in std::mem::take(&mut waiters) {
                    let _ = reply.send(Err(DataflowError::checkpoint(
                        "savepoint",
                        "the job failed",
                    )));
                }
                // A local task's own error comes back from the shutdown; a worker's
                // is the reason it reported.
                return match handle.shutdown() {
                    Err(e) => Ended::Failed(e),
                    Ok(_) => Ended::Failed(DataflowError::checkpoint(
                        "job",
                        format!("a task failed ({failed})"),
                    )),
                };
            }
            let mut events = Vec::new();
            select! {
                recv(job_events) -> event => match event {
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
                recv(remote_uploads) -> message => if let Ok(message) = message {
                    let _ = internal_tx.send(message);
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
                        Err(fenced @ CheckpointError::Fenced { .. }) => {
                            // Another coordinator may be running this job now: abandon
                            // the checkpoint without deleting anything, as when another
                            // incarnation wrote its metadata first.
                            tracing::error!("job `{job}`: checkpoint {checkpoint} not completed: {fenced}");
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
                            let (job, owner) = (job.clone(), self.owner());
                            self.track(self.runtime.spawn(async move {
                                if let Err(e) = storage.abort_own(&job, checkpoint, &owner).await {
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
}

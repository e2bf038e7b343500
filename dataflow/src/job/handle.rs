//! [`JobHandle`]: a running job, to trigger checkpoints on, read, cancel or wait
//! for; [`JobResult`]: what it reports when it ends.

use super::metrics_view::{MetricsView, SubtaskMetrics};
use super::view::GraphView;
use crate::task::{JobEvent, TaskCommand};
use crate::{DataflowError, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_checkpoint::{Barrier, CheckpointId, SubtaskAck, SubtaskId};

/// What a finished job reports.
#[derive(Debug)]
pub struct JobResult {
    /// Wall time from start to the end of the last task.
    pub elapsed: Duration,
    /// Final counters of every operator subtask.
    pub metrics: Vec<SubtaskMetrics>,
    /// Checkpoint acknowledgements received while waiting (when nobody else consumed them).
    pub acks: Vec<SubtaskAck>,
}

pub(super) struct RunningTask {
    pub(super) id: SubtaskId,
    pub(super) name: String,
    pub(super) is_source: bool,
    pub(super) control: Sender<TaskCommand>,
    pub(super) thread: JoinHandle<Result<()>>,
}

/// A running job.
pub struct JobHandle {
    /// Where queries of its state go; closed before the tasks are joined (it holds
    /// their control channels), and when the handle is dropped (first: fields drop
    /// in order).
    pub(super) query: crate::query::PortGuard,
    pub(super) tasks: Vec<RunningTask>,
    pub(super) events: Receiver<JobEvent>,
    pub(super) failures: Receiver<String>,
    pub(super) metrics: MetricsView,
    pub(super) graph: Arc<GraphView>,
    pub(super) started: Instant,
    /// Where the job's subtasks run, when it spans workers: its channels to other
    /// workers are closed when it ends here.
    pub(super) placement: Option<(crate::wire::Placement, Arc<crate::wire::Bridges>)>,
}

/// Closes the control channels, joins every task thread and returns the root cause
/// of a failure: a real error before a `TaskFailed` (a neighbour's failure seen from
/// here) before a cancellation (only an error when `cancelled_is_error`).
fn join_tasks(tasks: Vec<RunningTask>, cancelled_is_error: bool) -> Option<DataflowError> {
    let rank = |e: &DataflowError| match e {
        DataflowError::Cancelled => 0,
        DataflowError::TaskFailed { .. } => 1,
        _ => 2,
    };
    let mut root_cause: Option<DataflowError> = None;
    for task in tasks {
        drop(task.control);
        let result = task.thread.join().unwrap_or_else(|_| {
            Err(DataflowError::TaskFailed {
                task: task.name.clone(),
                message: "the task thread panicked".into(),
            })
        });
        if let Err(e) = result {
            if matches!(e, DataflowError::Cancelled) && !cancelled_is_error {
                continue;
            }
            if root_cause
                .as_ref()
                .is_none_or(|current| rank(&e) > rank(current))
            {
                root_cause = Some(e);
            }
        }
    }
    root_cause
}

impl JobHandle {
    /// Asks every source to snapshot its position and inject `barrier`.
    pub fn trigger_barrier(&self, barrier: Barrier) {
        for task in self.tasks.iter().filter(|t| t.is_source) {
            let _ = task.control.send(TaskCommand::TriggerBarrier(barrier));
        }
    }

    /// Sends `barrier` to the sources and to the (finished) tasks in `also`, which take
    /// part in checkpoints with their final state.
    pub fn trigger_barrier_on(
        &self,
        barrier: Barrier,
        also: &std::collections::BTreeSet<SubtaskId>,
    ) {
        for task in &self.tasks {
            if task.is_source || also.contains(&task.id) {
                let _ = task.control.send(TaskCommand::TriggerBarrier(barrier));
            }
        }
    }

    /// Sends `barrier` to one (finished) subtask, which ignores it if it took it already.
    pub fn trigger_barrier_on_subtask(&self, barrier: Barrier, subtask: SubtaskId) {
        for task in &self.tasks {
            if task.id == subtask {
                let _ = task.control.send(TaskCommand::TriggerBarrier(barrier));
            }
        }
    }

    /// Tells every task that checkpoint `id` is complete.
    pub fn notify_checkpoint_complete(&self, id: CheckpointId) {
        for task in &self.tasks {
            let _ = task.control.send(TaskCommand::CheckpointComplete(id));
        }
    }

    /// The number of subtasks (threads) of the job.
    pub fn subtask_count(&self) -> usize {
        self.tasks.len()
    }

    /// The number of source subtasks.
    pub fn source_subtask_count(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_source).count()
    }

    /// Events from the tasks (checkpoint acknowledgements, finished subtasks).
    pub fn events(&self) -> &Receiver<JobEvent> {
        &self.events
    }

    /// The current counters of every operator subtask.
    pub fn metrics(&self) -> Vec<SubtaskMetrics> {
        self.metrics.snapshot()
    }

    /// The job's operators and edges.
    pub fn graph(&self) -> Arc<GraphView> {
        self.graph.clone()
    }

    /// A view of the counters that can be read from another thread while
    /// [`JobHandle::wait`] runs.
    pub fn metrics_view(&self) -> MetricsView {
        self.metrics.clone()
    }

    /// Every subtask (the identity in acknowledgements).
    pub fn subtasks(&self) -> Vec<SubtaskId> {
        self.tasks.iter().map(|t| t.id).collect()
    }

    /// The name of a task that failed, if one has.
    pub fn poll_failure(&self) -> Option<String> {
        self.failures.try_recv().ok()
    }

    /// Cancels the tasks that still run, joins every thread and returns the metrics,
    /// or the root-cause error of a failed task (a cancellation is not an error here).
    ///
    /// # Errors
    /// The first real task failure.
    pub fn shutdown(self) -> Result<JobResult> {
        self.query.0.close();
        self.cancel();
        let metrics = self.metrics();
        let elapsed = self.started.elapsed();
        // A task blocked on a channel to another worker wakes when it closes.
        if let Some((placement, _)) = &self.placement {
            placement.close_channels();
        }
        let first_error = join_bridges(self.placement, join_tasks(self.tasks, false));
        match first_error {
            Some(e) => Err(e),
            None => Ok(JobResult {
                elapsed,
                metrics,
                acks: Vec::new(),
            }),
        }
    }

    /// Where queries of the job's keyed state go while it runs (see
    /// [`crate::query`]).
    pub fn query_port(&self) -> crate::query::QueryPort {
        self.query.0.clone()
    }

    /// Stops every task.
    pub fn cancel(&self) {
        for task in &self.tasks {
            let _ = task.control.send(TaskCommand::Cancel);
        }
    }

    /// Waits until every subtask has finished its input (bounded sources), then shuts
    /// the tasks down and returns the metrics.
    ///
    /// # Errors
    /// The first task failure (the root cause, not the failures it caused downstream),
    /// after cancelling the remaining tasks.
    pub fn wait(self) -> Result<JobResult> {
        let mut finished = 0;
        let mut acks = Vec::new();
        let mut encode_error = None;
        // Acks are returned whole: frozen state is encoded into them here.
        let mut keep_ack = |mut ack: SubtaskAck, frozen: crate::FrozenState| match frozen
            .materialize_into(&mut ack)
        {
            Ok(()) => acks.push(ack),
            Err(e) => {
                encode_error.get_or_insert(e);
            }
        };
        let mut failed = false;
        while finished < self.tasks.len() {
            if self.failures.try_recv().is_ok() {
                failed = true;
                break;
            }
            match self.events.recv_timeout(Duration::from_millis(20)) {
                Ok(JobEvent::Finished { .. }) => finished += 1,
                Ok(JobEvent::Ack(ack, frozen)) => keep_ack(ack, frozen),
                Ok(JobEvent::BarrierDeclined { .. }) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if failed {
            self.cancel();
            if let Some((placement, _)) = &self.placement {
                placement.close_channels();
            }
        }
        let metrics = self.metrics();
        let elapsed = self.started.elapsed();
        self.query.0.close();
        let first_error = join_tasks(self.tasks, true);
        if first_error.is_some() {
            if let Some((placement, _)) = &self.placement {
                placement.close_channels();
            }
        }
        // After a clean end each bridge ends once it delivered its end of input.
        let first_error = join_bridges(self.placement, first_error);
        while let Ok(event) = self.events.try_recv() {
            if let JobEvent::Ack(ack, frozen) = event {
                keep_ack(ack, frozen);
            }
        }
        match first_error.or(encode_error) {
            Some(e) => Err(e),
            None => Ok(JobResult {
                elapsed,
                metrics,
                acks,
            }),
        }
    }
}

/// Waits for the bridges of a job's channels to other workers, then closes what is
/// left of them. A failed job's error is the data plane's when a channel broke
/// first: the tasks' own errors ("a downstream task stopped receiving") are its
/// consequences.
fn join_bridges(
    placement: Option<(crate::wire::Placement, Arc<crate::wire::Bridges>)>,
    error: Option<DataflowError>,
) -> Option<DataflowError> {
    let Some((placement, bridges)) = placement else {
        return error;
    };
    bridges.join();
    placement.close_channels();
    let (records, bytes) = bridges.sent();
    tracing::info!(
        worker = placement.network.id().0,
        records,
        bytes,
        bytes_per_record = bytes.checked_div(records).unwrap_or(0),
        "sent to other workers"
    );
    match (error, bridges.failure()) {
        (Some(_), Some(failure)) => Some(DataflowError::TaskFailed {
            task: "data plane".into(),
            message: failure,
        }),
        (error, _) => error,
    }
}

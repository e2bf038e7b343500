//! Stages: the links of a chain inside one task. A record passes from operator to
//! operator by plain function calls on batches; the last stage writes to channels
//! (an exchange) or is a sink.

use crate::keyed_state::StateRegistry;
use crate::metrics::{row_counter, rows_in, OperatorMetrics};
use crate::operator::{Operator, OperatorContext, Output, SnapshotContext};
use crate::query::{Page, QueryCall, QueryError};
use crate::sink::Sink;
use crate::{DataflowError, Result, Timestamp};
use std::sync::Arc;
use weir_checkpoint::{Barrier, CheckpointId, OperatorUid};

pub(crate) use crate::operator::ChainSnapshots;

/// One link of a chain, consuming records of type `T`.
pub(crate) trait Stage<T>: Send {
    /// Opens this stage and everything after it.
    fn open(&mut self) -> Result<()>;
    /// Processes a batch; leaves `batch` empty.
    fn batch(&mut self, batch: &mut Vec<T>) -> Result<()>;
    /// The watermark advanced.
    fn watermark(&mut self, watermark: Timestamp) -> Result<()>;
    /// The input became idle.
    fn idle(&mut self) -> Result<()>;
    /// Processing time advanced (timers, linger flushes).
    fn tick(&mut self, now: Timestamp) -> Result<()>;
    /// Snapshot every operator, then forward the barrier.
    fn barrier(&mut self, barrier: Barrier, snapshots: &mut ChainSnapshots) -> Result<()>;
    /// A checkpoint completed.
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()>;
    /// End of input: flush, then propagate.
    fn end(&mut self) -> Result<()>;
    /// Reads a keyed state of the operator with the call's uid, if it is in this
    /// chain: the page and the operator's watermark (`None`: not in this chain).
    fn query(&mut self, call: &QueryCall) -> Option<QueryResult> {
        let _ = call;
        None
    }
}

/// A read of one subtask's state and the watermark its operator passed on.
pub(crate) type QueryResult = std::result::Result<(Page, Option<i64>), QueryError>;

/// Reads the state the call names from `states`, of the operator the stage holds.
fn query_states(
    states: &StateRegistry,
    call: &QueryCall,
    metrics: &OperatorMetrics,
    cx: &Option<OperatorContext>,
    key_groups: weir_state::KeyGroupRange,
    max: weir_state::MaxParallelism,
) -> QueryResult {
    if cx.is_some() {
        return Err(QueryError::NotRunning(format!(
            "operator `{}` is not open yet",
            call.uid
        )));
    }
    let page = states
        .query(&call.state, &call.read, key_groups, max)
        .unwrap_or_else(|| {
            let known: Vec<String> = states.names().map(|n| format!("`{n}`")).collect();
            Err(QueryError::NoState {
                uid: call.uid.clone(),
                state: call.state.clone(),
                known: if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                },
            })
        })?;
    let watermark = metrics.watermark.load(std::sync::atomic::Ordering::Relaxed);
    Ok((page, (watermark != i64::MIN).then_some(watermark)))
}

/// Wraps an [`Operator`] with its output buffer and the next stage.
pub(crate) struct OperatorStage<O: Operator> {
    pub(crate) operator: O,
    pub(crate) out: Output<O::Out>,
    pub(crate) next: Box<dyn Stage<O::Out>>,
    pub(crate) cx: Option<OperatorContext>,
    /// The keyed states the operator registered in `open`.
    pub(crate) states: StateRegistry,
    pub(crate) uid: OperatorUid,
    pub(crate) name: String,
    pub(crate) subtask: usize,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) max_parallelism: weir_state::MaxParallelism,
    pub(crate) key_groups: weir_state::KeyGroupRange,
    /// Rows per input and output record, for record types that hold many.
    pub(crate) rows_in: Option<fn(&O::In) -> usize>,
    pub(crate) rows_out: Option<fn(&O::Out) -> usize>,
}

impl<O: Operator> OperatorStage<O> {
    pub(crate) fn new(operator: O, cx: OperatorContext, next: Box<dyn Stage<O::Out>>) -> Self {
        Self {
            operator,
            out: Output::new(),
            next,
            uid: OperatorUid::new(cx.subtask.uid.as_str()),
            name: cx.subtask.operator.clone(),
            subtask: cx.subtask.index,
            metrics: cx.metrics.clone(),
            max_parallelism: cx.subtask.max_parallelism,
            key_groups: cx.subtask.key_groups,
            rows_in: row_counter(&cx.row_counts),
            rows_out: row_counter(&cx.row_counts),
            cx: Some(cx),
            states: StateRegistry::default(),
        }
    }

    #[inline]
    fn emit(&mut self) -> Result<()> {
        if !self.out.buffer.is_empty() {
            OperatorMetrics::add(
                &self.metrics.records_out,
                rows_in(&self.out.buffer, self.rows_out),
            );
            self.next.batch(&mut self.out.buffer)?;
        }
        Ok(())
    }

    /// `e` naming this operator and what it was `doing`, kept as the cause.
    fn context(&self, doing: &str, e: DataflowError) -> DataflowError {
        match e {
            DataflowError::Operator { .. } | DataflowError::TaskFailed { .. } => e,
            other => DataflowError::operator_caused(&self.name, self.subtask, doing, other),
        }
    }
}

impl<O: Operator> Stage<O::In> for OperatorStage<O> {
    fn open(&mut self) -> Result<()> {
        if let Some(mut cx) = self.cx.take() {
            self.operator
                .open(&mut cx)
                .map_err(|e| self.context("while opening", e))?;
            self.states = std::mem::take(&mut cx.states);
        }
        self.next.open()
    }

    #[inline]
    fn batch(&mut self, batch: &mut Vec<O::In>) -> Result<()> {
        OperatorMetrics::add(&self.metrics.records_in, rows_in(batch, self.rows_in));
        if let Err(e) = self.operator.on_batch(batch, &mut self.out) {
            return Err(self.context("while processing a batch", e));
        }
        batch.clear();
        self.emit()
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if let Err(e) = self.operator.on_watermark(watermark, &mut self.out) {
            return Err(self.context("while advancing the watermark", e));
        }
        self.emit()?;
        self.metrics.set_watermark(watermark);
        self.next.watermark(watermark)
    }

    fn idle(&mut self) -> Result<()> {
        self.next.idle()
    }

    fn tick(&mut self, now: Timestamp) -> Result<()> {
        if let Err(e) = self.operator.on_processing_time(now, &mut self.out) {
            return Err(self.context("while advancing processing time", e));
        }
        self.emit()?;
        self.next.tick(now)
    }

    fn barrier(&mut self, barrier: Barrier, snapshots: &mut ChainSnapshots) -> Result<()> {
        if let Err(e) = self.operator.before_barrier(&mut self.out) {
            return Err(self.context("before a barrier", e));
        }
        self.emit()?;
        let mut cx = SnapshotContext::new(barrier.id, barrier.is_savepoint(), self.max_parallelism);
        snapshot(&self.states, &mut cx, |cx| self.operator.snapshot(cx))
            .map_err(|e| self.context("while taking a snapshot", e))?;
        snapshots.push(self.uid.clone(), cx);
        self.next.barrier(barrier, snapshots)
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        if let Err(e) = self.operator.on_checkpoint_complete(id) {
            return Err(self.context("after a checkpoint completed", e));
        }
        self.next.checkpoint_complete(id)
    }

    fn end(&mut self) -> Result<()> {
        if let Err(e) = self.operator.on_end(&mut self.out) {
            return Err(self.context("at the end of its input", e));
        }
        self.emit()?;
        self.next.end()
    }

    fn query(&mut self, call: &QueryCall) -> Option<QueryResult> {
        if self.uid.as_str() != call.uid {
            return self.next.query(call);
        }
        Some(query_states(
            &self.states,
            call,
            &self.metrics,
            &self.cx,
            self.key_groups,
            self.max_parallelism,
        ))
    }
}

/// Wraps a [`Sink`]: the last stage of a chain.
pub(crate) struct SinkStage<S: Sink> {
    pub(crate) sink: S,
    pub(crate) cx: Option<OperatorContext>,
    /// The keyed states the sink registered in `open`.
    pub(crate) states: StateRegistry,
    pub(crate) uid: OperatorUid,
    pub(crate) name: String,
    pub(crate) subtask: usize,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) max_parallelism: weir_state::MaxParallelism,
    pub(crate) key_groups: weir_state::KeyGroupRange,
    /// Rows per record, for record types that hold many.
    pub(crate) rows: Option<fn(&S::In) -> usize>,
}

impl<S: Sink> SinkStage<S> {
    pub(crate) fn new(sink: S, cx: OperatorContext) -> Self {
        Self {
            sink,
            uid: OperatorUid::new(cx.subtask.uid.as_str()),
            name: cx.subtask.operator.clone(),
            subtask: cx.subtask.index,
            metrics: cx.metrics.clone(),
            max_parallelism: cx.subtask.max_parallelism,
            key_groups: cx.subtask.key_groups,
            rows: row_counter(&cx.row_counts),
            cx: Some(cx),
            states: StateRegistry::default(),
        }
    }

    /// `e` naming this sink and what it was `doing`, kept as the cause.
    fn context(&self, doing: &str, e: DataflowError) -> DataflowError {
        match e {
            DataflowError::Operator { .. } | DataflowError::Io { .. } => e,
            other => DataflowError::operator_caused(&self.name, self.subtask, doing, other),
        }
    }
}

impl<S: Sink> Stage<S::In> for SinkStage<S> {
    fn open(&mut self) -> Result<()> {
        if let Some(mut cx) = self.cx.take() {
            self.sink
                .open(&mut cx)
                .map_err(|e| self.context("while opening", e))?;
            self.states = std::mem::take(&mut cx.states);
        }
        Ok(())
    }

    #[inline]
    fn batch(&mut self, batch: &mut Vec<S::In>) -> Result<()> {
        OperatorMetrics::add(&self.metrics.records_in, rows_in(batch, self.rows));
        if let Err(e) = self.sink.write_batch(batch) {
            return Err(self.context("while writing a batch", e));
        }
        batch.clear();
        Ok(())
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.metrics.set_watermark(watermark);
        Ok(())
    }

    fn idle(&mut self) -> Result<()> {
        Ok(())
    }

    fn tick(&mut self, _: Timestamp) -> Result<()> {
        Ok(())
    }

    fn query(&mut self, call: &QueryCall) -> Option<QueryResult> {
        (self.uid.as_str() == call.uid).then(|| {
            query_states(
                &self.states,
                call,
                &self.metrics,
                &self.cx,
                self.key_groups,
                self.max_parallelism,
            )
        })
    }

    fn barrier(&mut self, barrier: Barrier, snapshots: &mut ChainSnapshots) -> Result<()> {
        let mut cx = SnapshotContext::new(barrier.id, barrier.is_savepoint(), self.max_parallelism);
        snapshot(&self.states, &mut cx, |cx| self.sink.snapshot(cx))
            .map_err(|e| self.context("while taking a snapshot", e))?;
        snapshots.push(self.uid.clone(), cx);
        Ok(())
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.sink
            .on_checkpoint_complete(id)
            .map_err(|e| self.context("after a checkpoint completed", e))
    }

    fn end(&mut self) -> Result<()> {
        self.sink
            .finish()
            .map_err(|e| self.context("while finishing its output", e))
    }
}

/// The synchronous part of one operator's snapshot: its registered keyed states are
/// flushed first (so that one RocksDB checkpoint covers them and whatever the
/// operator flushes itself), then the operator captures its own state, then the
/// registered states are frozen.
fn snapshot(
    states: &StateRegistry,
    cx: &mut SnapshotContext,
    operator: impl FnOnce(&mut SnapshotContext) -> Result<()>,
) -> Result<()> {
    states.flush()?;
    operator(cx)?;
    let mut frozen = Vec::new();
    states.freeze(&mut frozen)?;
    for part in frozen {
        cx.put_frozen_boxed(part);
    }
    Ok(())
}

/// Hands every batch to several stages (a stream with several consumers).
pub(crate) struct Tee<T> {
    pub(crate) branches: Vec<Box<dyn Stage<T>>>,
    pub(crate) scratch: Vec<T>,
}

impl<T: Clone + Send> Stage<T> for Tee<T> {
    fn open(&mut self) -> Result<()> {
        self.branches.iter_mut().try_for_each(|b| b.open())
    }

    fn batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        let (last, rest) = match self.branches.split_last_mut() {
            Some(split) => split,
            None => {
                batch.clear();
                return Ok(());
            }
        };
        for branch in rest {
            self.scratch.clone_from(batch);
            branch.batch(&mut self.scratch)?;
            self.scratch.clear();
        }
        last.batch(batch)
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.branches
            .iter_mut()
            .try_for_each(|b| b.watermark(watermark))
    }

    fn idle(&mut self) -> Result<()> {
        self.branches.iter_mut().try_for_each(|b| b.idle())
    }

    fn tick(&mut self, now: Timestamp) -> Result<()> {
        self.branches.iter_mut().try_for_each(|b| b.tick(now))
    }

    fn barrier(&mut self, barrier: Barrier, snapshots: &mut ChainSnapshots) -> Result<()> {
        self.branches
            .iter_mut()
            .try_for_each(|b| b.barrier(barrier, snapshots))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.branches
            .iter_mut()
            .try_for_each(|b| b.checkpoint_complete(id))
    }

    fn end(&mut self) -> Result<()> {
        self.branches.iter_mut().try_for_each(|b| b.end())
    }

    fn query(&mut self, call: &QueryCall) -> Option<QueryResult> {
        self.branches.iter_mut().find_map(|b| b.query(call))
    }
}

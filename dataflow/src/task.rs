//! Tasks: one OS thread each, driving a chain either from a source or from the
//! input channels (with barrier alignment and watermark merging).

use crate::align::{AlignmentStep, BarrierAligner};
use crate::metrics::OperatorMetrics;
use crate::operator::{FrozenState, OperatorContext, SnapshotContext};
use crate::query::{Position, QueryCall, QueryError};
use crate::source::{Source, SourceOutput, SourcePoll, SplitId, WatermarkStrategy};
use crate::stage::{ChainSnapshots, Stage};
use crate::watermark::{InputWatermark, InputWatermarks, WatermarkStep, WatermarkValve};
use crate::{DataflowError, Message, Result, Timestamp};
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_checkpoint::{Barrier, CheckpointId, OperatorUid, SubtaskAck, SubtaskId};

/// Commands the job sends to a running task.
#[derive(Debug)]
pub enum TaskCommand {
    /// Sources only: snapshot the position and emit this barrier.
    TriggerBarrier(Barrier),
    /// A checkpoint is complete.
    CheckpointComplete(CheckpointId),
    /// Read a keyed state of an operator of the chain, between two batches.
    Query(Box<QueryCall>),
    /// Stop now.
    Cancel,
}

/// Answers a query on the task thread: from the chain's operator of that uid, with
/// the subtask's position.
fn answer<T>(
    env: &TaskEnv,
    stage: &mut dyn Stage<T>,
    call: &QueryCall,
    completed: Option<CheckpointId>,
) {
    let result = match stage.query(call) {
        Some(result) => result.map(|(page, watermark)| {
            let position = Position {
                subtask: env.subtask,
                watermark,
                checkpoint: completed.map(CheckpointId::get),
            };
            (page, position)
        }),
        None => Err(QueryError::NoOperator {
            uid: call.uid.clone(),
            known: format!("none of that uid in the chain of `{}`", env.name),
        }),
    };
    let _ = call.reply.send(result);
}

/// What tasks report to the job.
#[derive(Debug)]
#[non_exhaustive]
pub enum JobEvent {
    /// A subtask acknowledged a checkpoint with its chain's snapshots: what is
    /// encoded already, and keyed state frozen copy-on-write, still to be encoded.
    Ack(SubtaskAck, FrozenState),
    /// A subtask processed all its input and ran its operators' `on_end`; it takes part
    /// in further checkpoints with its final state until the job ends.
    Finished {
        /// The subtask.
        id: SubtaskId,
        /// The task's name, for reporting.
        task: String,
        /// The subtask's index.
        subtask: usize,
    },
    /// A source could not take a barrier (it had already finished).
    BarrierDeclined {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// The task's name, for reporting.
        task: String,
        /// The subtask's index.
        subtask: usize,
    },
}

/// What every task thread needs besides its chain.
pub(crate) struct TaskEnv {
    pub(crate) name: String,
    pub(crate) subtask: usize,
    pub(crate) control: Receiver<TaskCommand>,
    pub(crate) events: Sender<JobEvent>,
    pub(crate) tick: Duration,
    pub(crate) watermark_interval: Duration,
    /// The subtask's identity in the protocol (the name is for people).
    pub(crate) id: SubtaskId,
}

impl TaskEnv {
    fn ack(
        &self,
        barrier: Barrier,
        snapshots: ChainSnapshots,
        alignment: Duration,
        sync: Duration,
    ) {
        let ack = SubtaskAck {
            checkpoint: barrier.id,
            id: self.id,
            task: self.name.clone(),
            subtask: self.subtask,
            operators: snapshots.operators.into_iter().collect(),
            alignment_us: alignment.as_micros() as u64,
            sync_us: sync.as_micros() as u64,
        };
        // The job may have stopped listening (it is shutting down): nothing to do then.
        let _ = self.events.send(JobEvent::Ack(ack, snapshots.frozen));
    }
}

/// A runnable task.
pub(crate) trait TaskHead: Send {
    fn run(self: Box<Self>, env: TaskEnv) -> Result<()>;
}

/// Drives a chain from input channels.
pub(crate) struct GateHead<T> {
    pub(crate) inputs: Vec<Receiver<Message<T>>>,
    pub(crate) stage: Box<dyn Stage<T>>,
    /// The newest barrier the chain snapshotted.
    pub(crate) last_barrier: Option<CheckpointId>,
    /// The newest checkpoint known complete.
    pub(crate) completed: Option<CheckpointId>,
}

/// Passes on what a [`WatermarkStep`] emits: its watermark (if any), then `Idle`.
fn emit_watermark<T>(stage: &mut dyn Stage<T>, step: WatermarkStep) -> Result<()> {
    if let Some(watermark) = step.watermark() {
        stage.watermark(watermark)?;
    }
    if step.goes_idle() {
        stage.idle()?;
    }
    Ok(())
}

impl<T: Send> TaskHead for GateHead<T> {
    fn run(mut self: Box<Self>, env: TaskEnv) -> Result<()> {
        self.stage.open()?;
        let n = self.inputs.len();
        // Whether each input channel disconnected or delivered its end.
        let mut ended = vec![false; n];
        let mut watermarks = InputWatermarks::new(n);
        let mut aligner = BarrierAligner::new(n);
        let mut alignment_started: Option<Instant> = None;
        let mut last_tick = Instant::now();
        let mut open_inputs = n;
        let mut readable: Vec<usize> = Vec::with_capacity(n);
        while open_inputs > 0 {
            // Control first: cheap when empty.
            match env.control.try_recv() {
                Ok(TaskCommand::CheckpointComplete(id)) => {
                    self.completed = Some(id);
                    self.stage.checkpoint_complete(id)?;
                }
                Ok(TaskCommand::Query(call)) => {
                    answer(&env, self.stage.as_mut(), &call, self.completed);
                }
                Ok(TaskCommand::Cancel) => return Err(DataflowError::Cancelled),
                Ok(TaskCommand::TriggerBarrier(_)) | Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(DataflowError::Cancelled),
            }
            if last_tick.elapsed() >= env.tick {
                self.stage.tick(Timestamp::now())?;
                last_tick = Instant::now();
            }
            readable.clear();
            readable.extend((0..n).filter(|&i| !ended[i] && !aligner.is_blocked(i)));
            let received = if readable.len() == 1 {
                let i = readable[0];
                match self.inputs[i].recv_timeout(env.tick) {
                    Ok(message) => Some((i, message)),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        ended[i] = true;
                        None
                    }
                }
            } else {
                let mut select = Select::new();
                for &i in &readable {
                    select.recv(&self.inputs[i]);
                }
                match select.select_timeout(env.tick) {
                    Ok(op) => {
                        let i = readable[op.index()];
                        match op.recv(&self.inputs[i]) {
                            Ok(message) => Some((i, message)),
                            Err(_) => {
                                ended[i] = true;
                                None
                            }
                        }
                    }
                    Err(_) => None,
                }
            };
            if readable.iter().any(|&i| ended[i]) {
                return Err(DataflowError::TaskFailed {
                    task: env.name.clone(),
                    message: "an upstream task ended without finishing its output".into(),
                });
            }
            let Some((input, message)) = received else {
                continue;
            };
            match message {
                Message::Batch(mut batch) => {
                    watermarks.on_batch(input);
                    self.stage.batch(&mut batch)?;
                }
                Message::Watermark(watermark) => {
                    let step = watermarks.on_watermark(input, watermark);
                    emit_watermark(self.stage.as_mut(), step)?;
                }
                Message::Idle => {
                    // Every input idle: the largest watermark any reached, then Idle.
                    let step = watermarks.on_idle(input);
                    emit_watermark(self.stage.as_mut(), step)?;
                }
                Message::Barrier(barrier) => {
                    alignment_started.get_or_insert_with(Instant::now);
                    if let AlignmentStep::Aligned(barrier) = aligner.on_barrier(input, barrier) {
                        let alignment = alignment_started
                            .take()
                            .map(|t| t.elapsed())
                            .unwrap_or_default();
                        self.snapshot(&env, barrier, alignment)?;
                    }
                }
                Message::EndOfInput => {
                    ended[input] = true;
                    open_inputs -= 1;
                    if let AlignmentStep::Aligned(barrier) = aligner.on_end(input) {
                        let alignment = alignment_started
                            .take()
                            .map(|t| t.elapsed())
                            .unwrap_or_default();
                        self.snapshot(&env, barrier, alignment)?;
                    }
                    let step = watermarks.on_end(input);
                    emit_watermark(self.stage.as_mut(), step)?;
                }
            }
        }
        if watermarks.emitted() < Timestamp::MAX {
            self.stage.watermark(Timestamp::MAX)?;
        }
        self.stage.end()?;
        drain_completions(
            &env,
            self.stage.as_mut(),
            (self.last_barrier, self.completed),
            |_| Ok(None),
            |_| Ok(()),
        )
    }
}

impl<T: Send> GateHead<T> {
    fn snapshot(&mut self, env: &TaskEnv, barrier: Barrier, alignment: Duration) -> Result<()> {
        let started = Instant::now();
        let mut snapshots = ChainSnapshots::default();
        self.stage.barrier(barrier, &mut snapshots)?;
        env.ack(barrier, snapshots, alignment, started.elapsed());
        self.last_barrier = Some(barrier.id);
        Ok(())
    }
}

/// After the input ended and every operator of the chain ran `on_end`: keep taking
/// part in checkpoints with the chain's final state (so a restore never replays a
/// finished input) and deliver completions (a sink's last epoch commits then), until
/// the job closes the control channel. The job takes its final checkpoint once every
/// subtask is here, so it covers everything `on_end` emitted (as Flink's FLIP-147).
///
/// The job may send a barrier this chain has already snapshotted (`last_barrier` or
/// older) when it cannot know whether the barrier reached it before its input ended:
/// such a barrier is ignored, since its snapshot is already acknowledged.
fn drain_completions<T>(
    env: &TaskEnv,
    stage: &mut dyn Stage<T>,
    (mut last_barrier, mut completed): (Option<CheckpointId>, Option<CheckpointId>),
    mut head_snapshot: impl FnMut(Barrier) -> Result<Option<(OperatorUid, SnapshotContext)>>,
    mut on_complete: impl FnMut(CheckpointId) -> Result<()>,
) -> Result<()> {
    let _ = env.events.send(JobEvent::Finished {
        id: env.id,
        task: env.name.clone(),
        subtask: env.subtask,
    });
    loop {
        match env.control.recv() {
            Ok(TaskCommand::CheckpointComplete(id)) => {
                completed = Some(id);
                on_complete(id)?;
                stage.checkpoint_complete(id)?;
            }
            Ok(TaskCommand::Query(call)) => answer(env, stage, &call, completed),
            Ok(TaskCommand::Cancel) | Err(_) => return Ok(()),
            Ok(TaskCommand::TriggerBarrier(barrier)) => {
                if last_barrier.is_some_and(|last| barrier.id <= last) {
                    continue;
                }
                let started = Instant::now();
                let mut snapshots = ChainSnapshots::default();
                if let Some((uid, cx)) = head_snapshot(barrier)? {
                    snapshots.push(uid, cx);
                }
                stage.barrier(barrier, &mut snapshots)?;
                env.ack(barrier, snapshots, Duration::ZERO, started.elapsed());
                last_barrier = Some(barrier.id);
            }
        }
    }
}

struct SplitWatermark {
    max_timestamp: Timestamp,
    last_active: Instant,
    idle: bool,
}

/// Drives a chain from a source.
pub(crate) struct SourceHead<S: Source> {
    pub(crate) source: S,
    pub(crate) strategy: WatermarkStrategy<S::Out>,
    pub(crate) stage: Box<dyn Stage<S::Out>>,
    pub(crate) cx: Option<OperatorContext>,
    pub(crate) uid: OperatorUid,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) batch_size: usize,
    pub(crate) max_parallelism: weir_state::MaxParallelism,
    /// The newest barrier the source took.
    pub(crate) last_barrier: Option<CheckpointId>,
    /// The newest checkpoint known complete.
    pub(crate) completed: Option<CheckpointId>,
    /// Rows per record, for record types that hold many.
    pub(crate) rows: Option<fn(&S::Out) -> usize>,
}

impl<S: Source> SourceHead<S> {
    fn observe(
        &self,
        out: &SourceOutput<S::Out>,
        splits: &mut FxHashMap<SplitId, SplitWatermark>,
        now: Instant,
        implicit_split: &mut bool,
    ) {
        // The implicit split 0 goes away once the source names its own splits.
        if *implicit_split && (!out.announced.is_empty() || out.segments.iter().any(|s| s.0 != 0)) {
            *implicit_split = false;
            let uses_zero = out.announced.contains(&0)
                || out
                    .segments
                    .iter()
                    .any(|s| s.0 == 0 && s.1 < out.records.len());
            if !uses_zero
                && splits
                    .get(&0)
                    .is_some_and(|s| s.max_timestamp == Timestamp::MIN)
            {
                splits.remove(&0);
            }
        }
        for &split in &out.announced {
            splits.entry(split).or_insert(SplitWatermark {
                max_timestamp: Timestamp::MIN,
                last_active: now,
                idle: false,
            });
        }
        let Some(assigner) = &self.strategy.assigner else {
            return;
        };
        if out.records.is_empty() {
            return;
        }
        let mut segments = out.segments.clone();
        if segments.first().is_none_or(|s| s.1 != 0) {
            segments.insert(0, (0, 0));
        }
        for (k, &(split, start)) in segments.iter().enumerate() {
            let end = segments.get(k + 1).map_or(out.records.len(), |s| s.1);
            if start >= end {
                continue;
            }
            let max = out.records[start..end]
                .iter()
                .map(|r| assigner(r))
                .max()
                .unwrap_or(Timestamp::MIN);
            let entry = splits.entry(split).or_insert(SplitWatermark {
                max_timestamp: Timestamp::MIN,
                last_active: now,
                idle: false,
            });
            entry.max_timestamp = entry.max_timestamp.max(max);
            entry.last_active = now;
            entry.idle = false;
        }
    }

    /// The watermark and idleness of each split, after marking the splits idle that
    /// were inactive for the idle timeout. A split's watermark is its max event time
    /// − the bound − 1 ms.
    fn split_watermarks<'a>(
        &'a self,
        splits: &'a mut FxHashMap<SplitId, SplitWatermark>,
        now: Instant,
    ) -> impl Iterator<Item = InputWatermark> + Clone + 'a {
        if let Some(timeout) = self.strategy.idle_timeout {
            for split in splits.values_mut() {
                if now.duration_since(split.last_active) >= timeout {
                    split.idle = true;
                }
            }
        }
        let out_of_orderness = self.strategy.out_of_orderness;
        splits.values().map(move |s| InputWatermark {
            watermark: s
                .max_timestamp
                .saturating_sub(out_of_orderness)
                .saturating_sub(Duration::from_millis(1))
                .max(Timestamp::MIN),
            idle: s.idle,
        })
    }

    fn take_barrier(&mut self, env: &TaskEnv, barrier: Barrier) -> Result<()> {
        let started = Instant::now();
        let mut cx = SnapshotContext::new(barrier.id, barrier.is_savepoint(), self.max_parallelism);
        self.source.snapshot(&mut cx)?;
        let mut snapshots = ChainSnapshots::default();
        snapshots.push(self.uid.clone(), cx);
        self.stage.barrier(barrier, &mut snapshots)?;
        env.ack(barrier, snapshots, Duration::ZERO, started.elapsed());
        self.last_barrier = Some(barrier.id);
        Ok(())
    }
}

impl<S: Source> TaskHead for SourceHead<S> {
    fn run(mut self: Box<Self>, env: TaskEnv) -> Result<()> {
        if let Some(mut cx) = self.cx.take() {
            self.source.open(&mut cx)?;
            if !cx.states.is_empty() {
                return Err(DataflowError::invalid(
                    &cx.subtask.operator,
                    "a source has no keyed state: keep its positions in operator state \
                     (SnapshotContext::put_operator)",
                ));
            }
        }
        self.stage.open()?;
        let mut out = SourceOutput::new(self.batch_size);
        let mut splits: FxHashMap<SplitId, SplitWatermark> = FxHashMap::default();
        // Every subtask reads split 0 unless it says otherwise: a subtask that emits
        // nothing holds the watermark back until it is found idle.
        let mut implicit_split = true;
        splits.insert(
            0,
            SplitWatermark {
                max_timestamp: Timestamp::MIN,
                last_active: Instant::now(),
                idle: false,
            },
        );
        let mut valve = WatermarkValve::new();
        let mut last_tick = Instant::now();
        let mut last_watermark = Instant::now();
        let event_time = self.strategy.assigner.is_some();
        loop {
            match env.control.try_recv() {
                Ok(TaskCommand::TriggerBarrier(barrier)) => {
                    self.take_barrier(&env, barrier)?;
                    if barrier.stops_job() {
                        return self.await_stop(&env);
                    }
                }
                Ok(TaskCommand::CheckpointComplete(id)) => self.complete(id)?,
                Ok(TaskCommand::Query(call)) => {
                    answer(&env, self.stage.as_mut(), &call, self.completed);
                }
                Ok(TaskCommand::Cancel) | Err(TryRecvError::Disconnected) => {
                    return Err(DataflowError::Cancelled)
                }
                Err(TryRecvError::Empty) => {}
            }
            out.records.clear();
            out.segments.clear();
            out.announced.clear();
            let poll = self.source.poll(&mut out)?;
            let now = Instant::now();
            self.observe(&out, &mut splits, now, &mut implicit_split);
            if !out.records.is_empty() {
                OperatorMetrics::add(
                    &self.metrics.records_out,
                    crate::metrics::rows_in(&out.records, self.rows),
                );
                valve.on_activity();
                self.stage.batch(&mut out.records)?;
            }
            if poll == SourcePoll::Finished {
                break;
            }
            if event_time && now.duration_since(last_watermark) >= env.watermark_interval {
                last_watermark = now;
                // Every split went idle, possibly all in the same interval: the data
                // read so far is complete up to the most advanced split's watermark
                // (idle splits hold nothing back), so that watermark goes out before
                // the subtask declares itself idle.
                let step = valve.update(self.split_watermarks(&mut splits, now), true);
                if let Some(watermark) = step.watermark() {
                    self.metrics.set_watermark(watermark);
                }
                emit_watermark(self.stage.as_mut(), step)?;
            }
            if now.duration_since(last_tick) >= env.tick {
                last_tick = now;
                self.stage.tick(Timestamp::now())?;
            }
            if let SourcePoll::Idle(wait) = poll {
                match env.control.recv_timeout(wait.min(env.tick)) {
                    Ok(TaskCommand::TriggerBarrier(barrier)) => {
                        self.take_barrier(&env, barrier)?;
                        if barrier.stops_job() {
                            return self.await_stop(&env);
                        }
                    }
                    Ok(TaskCommand::CheckpointComplete(id)) => self.complete(id)?,
                    Ok(TaskCommand::Query(call)) => {
                        answer(&env, self.stage.as_mut(), &call, self.completed);
                    }
                    Ok(TaskCommand::Cancel) | Err(RecvTimeoutError::Disconnected) => {
                        return Err(DataflowError::Cancelled)
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
        self.metrics.set_watermark(Timestamp::MAX);
        self.stage.watermark(Timestamp::MAX)?;
        self.stage.end()?;
        let progress = (self.last_barrier, self.completed);
        let (source, stage) = (&mut self.source, self.stage.as_mut());
        let max_parallelism = self.max_parallelism;
        let uid = self.uid.clone();
        let source = std::cell::RefCell::new(source);
        drain_completions(
            &env,
            stage,
            progress,
            |barrier| {
                let mut cx =
                    SnapshotContext::new(barrier.id, barrier.is_savepoint(), max_parallelism);
                source.borrow_mut().snapshot(&mut cx)?;
                Ok(Some((uid.clone(), cx)))
            },
            |id| source.borrow_mut().on_checkpoint_complete(id),
        )
    }
}

impl<S: Source> SourceHead<S> {
    fn complete(&mut self, id: CheckpointId) -> Result<()> {
        self.completed = Some(id);
        self.source.on_checkpoint_complete(id)?;
        self.stage.checkpoint_complete(id)
    }

    /// After a stop-with-savepoint barrier: emit nothing more, deliver completions,
    /// end when the job cancels the task.
    fn await_stop(&mut self, env: &TaskEnv) -> Result<()> {
        loop {
            match env.control.recv() {
                Ok(TaskCommand::CheckpointComplete(id)) => self.complete(id)?,
                Ok(TaskCommand::Query(call)) => {
                    answer(env, self.stage.as_mut(), &call, self.completed);
                }
                Ok(TaskCommand::TriggerBarrier(barrier)) => {
                    let _ = env.events.send(JobEvent::BarrierDeclined {
                        checkpoint: barrier.id,
                        task: env.name.clone(),
                        subtask: env.subtask,
                    });
                }
                Ok(TaskCommand::Cancel) | Err(_) => return Err(DataflowError::Cancelled),
            }
        }
    }
}

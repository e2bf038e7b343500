//! Kafka Streams' sliding windows ([`WindowAssigner::TimeDifference`]): windows
//! defined by the records, not by the clock.
//!
//! Two records of a key are in a common window when their event times differ by
//! at most the time difference `d`. Every record at time `t` has its *left
//! window* `[t - d, t]`, and its *right window* `[t + 1, t + 1 + d]` if a later
//! record falls into it; windows are inclusive at both ends and named by their
//! start (a right window that starts where a left window starts is that window).
//! So there is one window for every distinct set of records that fit within `d`,
//! as Kafka Streams' `SlidingWindows.ofTimeDifferenceAndGrace` defines them. In
//! weir's [`Window`] an end is exclusive: `[s, s + d]` is `Window { start: s, end:
//! s + d + 1 }`.
//!
//! A window is complete, and fires once, when the watermark reaches its last
//! millisecond plus the grace period. A record is late when every window that
//! could hold it is complete (`t + d + grace <= watermark`); a record for which
//! only some windows are complete updates the others, and windows it would create
//! that are complete already are never emitted (Kafka Streams skips expired
//! windows in the same way). With a watermark that trails the largest timestamp
//! by nothing (`bounded_out_of_orderness(0)`) the watermark plus one is Kafka
//! Streams' stream time, and the windows emitted are those its
//! `EmitStrategy.onWindowClose` emits. Unlike Kafka Streams, records before the
//! epoch plus `d` need no special window: timestamps may be negative.
//!
//! State per key: one accumulator per distinct event time (records of the same
//! time folded together), in time order. A window's result merges the
//! accumulators of its times; the windows of a key are fired in order of their
//! start, with a two-stack queue, so each accumulator is merged a constant number
//! of times however many windows hold it. Each key has one timer, at its earliest
//! pending window's completion (or, with none pending, when its times can be
//! dropped).

use super::operator::{SessionTimers, WindowSpec};
use super::{Window, WindowAssigner};
use crate::keyed_state::{opened, KeyedStateHandle};
use crate::metrics::OperatorMetrics;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::{Operator, Result, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use weir_state::{decode, encode, AggregateFunction, StateKey, StateTable};

const WATERMARK: &str = "window-watermark";
const POINTS: &str = "window-points";
/// The timers of the RocksDB backend, as the session windows keep theirs.
const POINT_TIMERS: &str = "window-point-timers";

/// The records of one key that windows still need: an accumulator per distinct
/// event time, in time order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyPoints<Acc> {
    points: Vec<(i64, Acc)>,
    /// Every window complete at this watermark has been emitted (or was complete
    /// before a record created it).
    emitted: i64,
    /// A timer is registered at this time, no later than the key's next due time.
    #[serde(skip)]
    timer: Option<i64>,
}

/// The shape of the windows, in ms.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// The largest time difference between two records of a window.
    difference: i64,
    /// How long after its end a window waits for late records.
    grace: i64,
    /// How long after a window's completion its records are kept (at least 0).
    retention: i64,
}

impl Shape {
    /// When the window starting at `start` is complete.
    fn complete(&self, start: i64) -> i64 {
        start
            .saturating_add(self.difference)
            .saturating_add(self.grace)
    }

    /// Whether a record at `t` is too late for every window that could hold it.
    fn late(&self, t: i64, watermark: i64) -> bool {
        t.saturating_add(self.difference).saturating_add(self.grace) <= watermark
    }

    /// Whether the time `t` can be dropped at `watermark`: every window that holds
    /// it, or starts right after it, is complete (and kept for the retention).
    fn expired(&self, t: i64, watermark: i64) -> bool {
        self.complete(t.saturating_add(1))
            .saturating_add(self.retention)
            <= watermark
    }
}

impl<Acc> KeyPoints<Acc> {
    /// The starts of the windows of these times that complete in `(from, to]`,
    /// in order.
    fn starts_completing(&self, shape: Shape, from: i64, to: i64) -> Vec<i64> {
        let d = shape.difference;
        let due = |start: i64| {
            let at = shape.complete(start);
            from < at && at <= to
        };
        let mut starts = Vec::new();
        for (i, &(t, _)) in self.points.iter().enumerate() {
            // Left windows and right windows interleave in start order: a right
            // window starts after its time, a left one `d` before.
            let left = t.saturating_sub(d);
            if due(left) {
                starts.push(left);
            }
            let right = t.saturating_add(1);
            let next_within = self
                .points
                .get(i + 1)
                .is_some_and(|&(next, _)| next <= right.saturating_add(d));
            if next_within && due(right) {
                starts.push(right);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// When the key next needs attention after `watermark`: its next window's
    /// completion, or else when all its times can be dropped.
    fn next_due(&self, shape: Shape, watermark: i64) -> Option<i64> {
        let d = shape.difference;
        let mut due = None::<i64>;
        let mut consider = |at: i64| {
            if at > watermark {
                due = Some(due.map_or(at, |due| due.min(at)));
            }
        };
        for (i, &(t, _)) in self.points.iter().enumerate() {
            consider(shape.complete(t.saturating_sub(d)));
            let right = t.saturating_add(1);
            if self
                .points
                .get(i + 1)
                .is_some_and(|&(next, _)| next <= right.saturating_add(d))
            {
                consider(shape.complete(right));
            }
        }
        if let Some(&(last, _)) = self.points.last() {
            let drop_at = shape
                .complete(last.saturating_add(1))
                .saturating_add(shape.retention);
            consider(drop_at);
        }
        due
    }
}

/// Kafka Streams' sliding windows with incremental aggregation (see the module).
pub struct TimeDifferenceAggregate<K, T, A: AggregateFunction<T>, O> {
    spec: WindowSpec<K, T, A, O>,
    shape: Shape,
    /// Registered with the runtime in `open`.
    points: Option<KeyedStateHandle<StateTable<K, KeyPoints<A::Acc>>>>,
    timers: SessionTimers<K>,
    watermark: i64,
    metrics: Arc<OperatorMetrics>,
    max_parallelism: weir_state::MaxParallelism,
}

impl<K: StateKey, T, A: AggregateFunction<T>, O> TimeDifferenceAggregate<K, T, A, O> {
    /// A sliding-window operator for one subtask.
    pub fn new(spec: WindowSpec<K, T, A, O>) -> Self {
        let (difference, grace) = match spec.assigner {
            WindowAssigner::TimeDifference { difference, grace } => (difference, grace),
            _ => (0, 0),
        };
        let shape = Shape {
            difference,
            grace,
            retention: spec.retention.saturating_sub(grace).max(0),
        };
        Self {
            spec,
            shape,
            points: None,
            timers: SessionTimers::Heap(Default::default()),
            watermark: i64::MIN,
            metrics: Arc::default(),
            max_parallelism: weir_state::MaxParallelism::DEFAULT,
        }
    }
}

/// A queue of consecutive times' accumulators that answers the merge of all of
/// them, each accumulator merged a constant number of times (two stacks: the
/// front holds merges of suffixes, the back one running merge).
struct Queue<'a, T, A: AggregateFunction<T>> {
    aggregate: &'a A,
    points: &'a [(i64, A::Acc)],
    /// `[lo, hi)` is in the queue; `[lo, mid)` in the front.
    lo: usize,
    mid: usize,
    hi: usize,
    /// The merge of `[i, mid)` for `i` from `mid - 1` down to `lo`: the last is
    /// the whole front.
    front: Vec<A::Acc>,
    back: Option<A::Acc>,
}

impl<'a, T, A: AggregateFunction<T>> Queue<'a, T, A> {
    fn new(aggregate: &'a A, points: &'a [(i64, A::Acc)]) -> Self {
        Self {
            aggregate,
            points,
            lo: 0,
            mid: 0,
            hi: 0,
            front: Vec::new(),
            back: None,
        }
    }

    /// Moves the queue to the times in `[start, end]`; both only grow.
    fn slide_to(&mut self, start: i64, end: i64) {
        while self.hi < self.points.len() && self.points[self.hi].0 <= end {
            let acc = self.points[self.hi].1.clone();
            match &mut self.back {
                Some(back) => self.aggregate.merge(back, acc),
                None => self.back = Some(acc),
            }
            self.hi += 1;
        }
        while self.lo < self.hi && self.points[self.lo].0 < start {
            if self.front.is_empty() {
                // The back becomes the front, merged from its end.
                self.front.clear();
                let mut suffix: Option<A::Acc> = None;
                for i in (self.lo..self.hi).rev() {
                    let mut acc = self.points[i].1.clone();
                    if let Some(later) = suffix.take() {
                        self.aggregate.merge(&mut acc, later);
                    }
                    self.front.push(acc.clone());
                    suffix = Some(acc);
                }
                self.mid = self.hi;
                self.back = None;
            }
            self.front.pop();
            self.lo += 1;
        }
    }

    /// The merge of the times in the queue, if any.
    fn merged(&self) -> Option<A::Acc> {
        let mut merged = self.front.last().cloned();
        if let Some(back) = &self.back {
            match &mut merged {
                Some(acc) => self.aggregate.merge(acc, back.clone()),
                None => merged = Some(back.clone()),
            }
        }
        merged
    }
}

impl<K, T, A, O> TimeDifferenceAggregate<K, T, A, O>
where
    K: StateKey,
    T: Send + 'static,
    A: AggregateFunction<T>,
    O: Send + 'static,
{
    /// Emits the windows of `key` that completed since it last fired, up to the
    /// watermark, drops the times no window needs any more, and returns when the
    /// key next needs attention.
    fn fire(&self, key: &K, state: &mut KeyPoints<A::Acc>, out: &mut Output<O>) -> Option<i64> {
        let (wm, shape, d) = (self.watermark, self.shape, self.shape.difference);
        if state.emitted < wm {
            let starts = state.starts_completing(shape, state.emitted, wm);
            let mut queue = Queue::new(&self.spec.aggregate, &state.points);
            for start in starts {
                let end = start.saturating_add(d);
                queue.slide_to(start, end);
                if let Some(acc) = queue.merged() {
                    let window = Window {
                        start,
                        end: end.saturating_add(1),
                    };
                    (self.spec.result)(key, window, self.spec.aggregate.result(&acc), out);
                }
            }
            state.emitted = wm;
        }
        let expired = state
            .points
            .iter()
            .take_while(|(t, _)| shape.expired(*t, wm))
            .count();
        state.points.drain(..expired);
        state.next_due(shape, wm)
    }
}

impl<K, T, A, O> Operator for TimeDifferenceAggregate<K, T, A, O>
where
    K: StateKey,
    T: Send + 'static,
    A: AggregateFunction<T>,
    O: Send + 'static,
{
    type In = T;
    type Out = O;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.metrics = cx.metrics.clone();
        self.max_parallelism = cx.subtask.max_parallelism;
        if let Some(bytes) = cx.restored_any(WATERMARK) {
            self.watermark = decode(WATERMARK, bytes)?;
        }
        self.timers = SessionTimers::open(cx, POINT_TIMERS)?;
        let restored = !cx.restored_chunks(POINTS).is_empty();
        let handle: KeyedStateHandle<StateTable<K, KeyPoints<A::Acc>>> =
            cx.keyed_state(|backend| StateTable::in_backend(backend, POINTS, Vec::new()))?;
        let mut points = handle.lock()?;
        // Heap timers are not checkpointed: every key's next due time.
        if restored && !self.timers.restore(cx, POINT_TIMERS)? {
            let keys = points.keys()?;
            for key in keys {
                if let Some(state) = points.get_mut(&key)? {
                    if let Some(due) = state.next_due(self.shape, state.emitted) {
                        state.timer = Some(due);
                        self.timers.register(key, due)?;
                    }
                }
            }
        }
        drop(points);
        self.points = Some(handle);
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<O>) -> Result<()> {
        let (watermark, shape) = (self.watermark, self.shape);
        let spec = &self.spec;
        let mut points = opened(&self.points)?;
        for element in input.drain(..) {
            let t = (spec.timestamp)(&element).0;
            if shape.late(t, watermark) {
                OperatorMetrics::add(&self.metrics.late_records, 1);
                if let Some(late) = &spec.late {
                    out.push(late(element));
                }
                continue;
            }
            let key = (spec.key)(&element);
            let state = points.get_or_insert_with_ref(&key, || KeyPoints {
                points: Vec::new(),
                emitted: watermark,
                timer: None,
            })?;
            // A state read back from RocksDB has lost its timer (not stored), and
            // the timer it had may have fired as superseded: its windows complete
            // by now fire before the record joins any, and its next timer is
            // registered again.
            if state.timer.is_none() && !state.points.is_empty() {
                if let Some(due) = self.fire(&key, state, out) {
                    state.timer = Some(due);
                    self.timers.register(key.clone(), due)?;
                }
            }
            // Every window complete at the watermark was fired with its key's
            // timer: those this record creates now are complete already.
            state.emitted = state.emitted.max(watermark);
            let list = &mut state.points;
            match list.last_mut() {
                Some((last, acc)) if *last == t => spec.aggregate.add(acc, &element),
                Some((last, _)) if *last < t => {
                    let mut acc = spec.aggregate.create();
                    spec.aggregate.add(&mut acc, &element);
                    list.push((t, acc));
                }
                None => {
                    let mut acc = spec.aggregate.create();
                    spec.aggregate.add(&mut acc, &element);
                    list.push((t, acc));
                }
                Some(_) => match list.binary_search_by_key(&t, |(time, _)| *time) {
                    Ok(i) => spec.aggregate.add(&mut list[i].1, &element),
                    Err(i) => {
                        let mut acc = spec.aggregate.create();
                        spec.aggregate.add(&mut acc, &element);
                        list.insert(i, (t, acc));
                    }
                },
            }
            // Its earliest window completes with its left window, or (if that is
            // complete already) with some later one.
            let due = shape
                .complete(t.saturating_sub(shape.difference))
                .max(state.emitted.saturating_add(1));
            if state.timer.is_none_or(|timer| due < timer) {
                state.timer = Some(due);
                self.timers.register(key, due)?;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        let wm = self.watermark;
        let mut points = opened(&self.points)?;
        while let Some((key, at)) = self.timers.pop_due(wm)? {
            let Some(state) = points.get_mut(&key)? else {
                continue;
            };
            // Superseded by an earlier timer of the key (a state read back from
            // RocksDB has lost its timer: firing it again is harmless).
            if state.timer.is_some_and(|timer| timer != at) {
                continue;
            }
            match self.fire(&key, state, out) {
                Some(due) if !state.points.is_empty() => {
                    state.timer = Some(due);
                    self.timers.register(key, due)?;
                }
                _ => {
                    points.remove(&key)?;
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        // The times are the runtime's to flush and freeze: one RocksDB checkpoint
        // holds them and the timers.
        cx.put_operator(WATERMARK, encode(WATERMARK, &self.watermark)?);
        self.timers.snapshot(POINT_TIMERS, self.max_parallelism, cx)
    }
}

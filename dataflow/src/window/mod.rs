//! Event-time windows on keyed streams: tumbling, sliding (hopping), cumulate and
//! session windows, and Kafka Streams' sliding windows by time difference, with
//! incremental aggregation, reduce, and process-window functions over all
//! elements; allowed lateness, a late side output, and a retention of window state.

mod assigner;
mod difference;
mod local;
mod operator;

pub use assigner::{Window, WindowAssigner};
pub use difference::{KeyPoints, TimeDifferenceAggregate};
pub use local::{LocalWindowAggregate, MergePartials, Partial, MAX_PARTIALS};
pub use operator::{
    LateFn, SessionAggregate, SessionEntry, WindowAggregate, WindowResultFn, WindowSpec,
};

use crate::graph::Data;
use crate::Output;
use crate::{duration_ms, KeyedStream, Stream, SubtaskInfo, Timestamp};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use weir_state::{AggregateFunction, StateKey, StateValue};

/// The result of an aggregation that also routes late elements: either a window
/// result or an element that came too late.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowOutput<R, T> {
    /// A window result.
    Result(R),
    /// An element later than the allowed lateness.
    Late(T),
}

/// A keyed stream cut into windows; finish it with an aggregation.
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    assigner: WindowAssigner,
    lateness: Duration,
    retention: Duration,
    name: String,
    uid: Option<String>,
    /// Fold per key and window before the exchange (two-phase aggregation).
    pre_aggregate: bool,
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    /// Cuts the stream into event-time windows per key.
    pub fn window(&self, assigner: WindowAssigner) -> WindowedStream<K, T> {
        let name = match assigner {
            WindowAssigner::Tumbling { .. } => "tumbling-window",
            WindowAssigner::Sliding { .. } => "sliding-window",
            WindowAssigner::Cumulate { .. } => "cumulate-window",
            WindowAssigner::Session { .. } => "session-window",
            WindowAssigner::TimeDifference { .. } => "time-difference-window",
        };
        WindowedStream {
            keyed: self.clone(),
            assigner,
            lateness: Duration::ZERO,
            retention: Duration::ZERO,
            name: name.to_string(),
            uid: None,
            pre_aggregate: false,
        }
    }
}

/// Keeps all elements: the accumulator of process-window functions and reduce.
#[derive(Clone)]
pub struct CollectAll<T>(PhantomData<fn(T)>);

impl<T: StateValue + Sync> AggregateFunction<T> for CollectAll<T> {
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: &T) {
        acc.push(value.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn result(&self, acc: &Vec<T>) -> Vec<T> {
        acc.clone()
    }
}

/// Folds elements pairwise with a reduce function.
pub struct Reduce<T, F> {
    f: F,
    _t: PhantomData<fn(T)>,
}

impl<T, F: Clone> Clone for Reduce<T, F> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: StateValue, F: Fn(&T, &T) -> T + Clone + Send + Sync + 'static> AggregateFunction<T>
    for Reduce<T, F>
{
    type Acc = Option<T>;
    type Out = Option<T>;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            Some(current) => (self.f)(&current, value),
            None => value.clone(),
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(other) = other {
            self.add(acc, &other);
        }
    }
    fn result(&self, acc: &Option<T>) -> Option<T> {
        acc.clone()
    }
}

impl<K: StateKey, T: Data> WindowedStream<K, T> {
    /// Keeps windows open for `lateness` after they fire: late elements update the
    /// result and fire it again. Elements later than that are counted (metric
    /// `late_records`) and dropped, or routed by
    /// [`WindowedStream::aggregate_with_late_output`].
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = lateness;
        self
    }

    /// Keeps each window's state for `retention` after the window's end (Kafka
    /// Streams' retention of a window store), or for the allowed lateness if that is
    /// longer: a fired window's contents stay readable by state queries
    /// ([`crate::query`]) for that long. A window fires once, and elements later
    /// than the allowed lateness are late, whatever the retention. For
    /// time-difference windows the retention counts from the end of a window's
    /// grace if it is longer.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Names the window operator.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Sets the stable uid of the window operator (its state's key in checkpoints and
    /// savepoints). `.uid(…)` on the result stream does the same except after
    /// [`WindowedStream::aggregate_with_late_output`], whose results pass a split.
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_string());
        self
    }

    /// Aggregates in two phases (Flink's local-global aggregation): each subtask
    /// before the exchange folds its elements into one accumulator per key and
    /// window and sends those on when the watermark passes the window's end (and
    /// before every barrier), and the window merges them. Fewer records cross the
    /// exchange when a key repeats within a window; the results, the window's state
    /// and its uid are those of one phase. It applies to tumbling windows and to
    /// hopping windows whose size is a multiple of the slide (their slices) whose
    /// aggregation has no late output (late records are counted as partials);
    /// other windows aggregate in one phase. The step before the exchange is named
    /// `<name>-local` (uid `<uid>-local`) and keeps no state.
    pub fn pre_aggregate(mut self) -> Self {
        self.pre_aggregate = true;
        self
    }

    /// The windows (or slices) a pre-aggregation folds into, as length and offset,
    /// if it applies.
    fn pre_aggregated(&self) -> Option<(i64, i64)> {
        if !self.pre_aggregate || self.keyed.has_inputs() {
            return None;
        }
        match self.assigner {
            WindowAssigner::Tumbling { size, offset } if size > 0 => Some((size, offset)),
            WindowAssigner::Sliding {
                size,
                slide,
                offset,
            } if slide > 0 && size > slide && size % slide == 0 => Some((slide, offset)),
            _ => None,
        }
    }

    /// The two phases of [`pre_aggregate`](Self::pre_aggregate): the local fold,
    /// the exchange of its partials, the window merging them.
    fn build_two_phase<A, O>(
        &self,
        (length, offset): (i64, i64),
        aggregate: A,
        result: WindowResultFn<K, A::Out, O>,
        timestamp: crate::TimestampAssigner<T>,
    ) -> Stream<O>
    where
        A: AggregateFunction<T>,
        O: Data,
    {
        let stream = self.keyed.stream();
        let key = self.keyed.key_selector();
        let local = aggregate.clone();
        let mut partials = stream.transform(&format!("{}-local", self.name), move |_| {
            LocalWindowAggregate::new(
                length,
                offset,
                key.clone(),
                timestamp.clone(),
                local.clone(),
            )
        });
        if let Some(p) = stream.node_parallelism() {
            partials = partials.parallelism(p);
        }
        if let Some(uid) = &self.uid {
            partials = partials.uid(&format!("{uid}-local"));
        }
        let end: crate::TimestampAssigner<Partial<K, A::Acc>> =
            Arc::new(|p: &Partial<K, A::Acc>| Timestamp(p.window.end - 1));
        // Partials cross workers like the elements they fold would.
        partials
            .graph
            .borrow_mut()
            .codecs
            .insert::<Partial<K, A::Acc>>(Arc::new(crate::wire::SerdeCodec));
        let keyed = partials.key_by(|p: &Partial<K, A::Acc>| p.key.clone());
        let global = WindowedStream {
            keyed,
            assigner: self.assigner,
            lateness: self.lateness,
            retention: self.retention,
            name: self.name.clone(),
            uid: self.uid.clone(),
            pre_aggregate: false,
        };
        global.build_one_phase(MergePartials::new(aggregate), result, None, end)
    }

    pub(crate) fn build<A, O>(
        &self,
        aggregate: A,
        result: WindowResultFn<K, A::Out, O>,
        late: Option<LateFn<T, O>>,
    ) -> Stream<O>
    where
        A: AggregateFunction<T>,
        O: Data,
    {
        let stream = self.keyed.stream();
        if let Err(e) = self.assigner.validate(&self.name) {
            stream.invalid(&self.name, e.to_string());
        }
        if matches!(self.assigner, WindowAssigner::TimeDifference { .. })
            && !self.lateness.is_zero()
        {
            stream.invalid(
                &self.name,
                "a time-difference window waits for late records for its grace period; it takes no allowed lateness".into(),
            );
        }
        let timestamp = match stream.timestamps() {
            Some(ts) => ts,
            None => {
                stream.invalid(
                    &self.name,
                    "windows need event time, but the stream has none: set a watermark strategy on the source or call with_timestamps".into(),
                );
                Arc::new(|_: &T| Timestamp(0))
            }
        };
        if let Some(windows) = self.pre_aggregated().filter(|_| late.is_none()) {
            return self.build_two_phase(windows, aggregate, result, timestamp);
        }
        self.build_one_phase(aggregate, result, late, timestamp)
    }

    /// The window operator after the exchange by key.
    fn build_one_phase<A, O>(
        &self,
        aggregate: A,
        result: WindowResultFn<K, A::Out, O>,
        late: Option<LateFn<T, O>>,
        timestamp: crate::TimestampAssigner<T>,
    ) -> Stream<O>
    where
        A: AggregateFunction<T>,
        O: Data,
    {
        let spec = WindowSpec {
            assigner: self.assigner,
            lateness: duration_ms(self.lateness),
            retention: duration_ms(self.retention),
            key: self.keyed.key_selector(),
            timestamp,
            aggregate,
            result,
            late,
        };
        let stream = if self.assigner.is_merging() {
            self.keyed.transform(&self.name, move |_: &SubtaskInfo| {
                SessionAggregate::new(spec.clone())
            })
        } else if matches!(self.assigner, WindowAssigner::TimeDifference { .. }) {
            self.keyed.transform(&self.name, move |_: &SubtaskInfo| {
                TimeDifferenceAggregate::new(spec.clone())
            })
        } else {
            self.keyed.transform(&self.name, move |_: &SubtaskInfo| {
                WindowAggregate::new(spec.clone())
            })
        };
        match &self.uid {
            Some(uid) => stream.uid(uid),
            None => stream,
        }
    }

    /// Aggregates each window incrementally with `aggregate` (count, sum, min, max,
    /// avg, a tuple of them, or a user [`AggregateFunction`]); `result` builds the
    /// output record from the key, the window and the aggregate.
    pub fn aggregate<A, R>(
        &self,
        aggregate: A,
        result: impl Fn(&K, Window, A::Out) -> R + Send + Sync + 'static,
    ) -> Stream<R>
    where
        A: AggregateFunction<T>,
        R: Data,
    {
        self.build(
            aggregate,
            Arc::new(move |k: &K, w: Window, r: A::Out, out: &mut Output<R>| {
                out.push(result(k, w, r))
            }),
            None,
        )
    }

    /// Like [`WindowedStream::aggregate`], also returning the stream of elements that
    /// came later than the allowed lateness (the late side output).
    pub fn aggregate_with_late_output<A, R>(
        &self,
        aggregate: A,
        result: impl Fn(&K, Window, A::Out) -> R + Send + Sync + 'static,
    ) -> (Stream<R>, Stream<T>)
    where
        A: AggregateFunction<T>,
        R: Data,
    {
        let both = self.build(
            aggregate,
            Arc::new(
                move |k: &K, w: Window, r: A::Out, out: &mut Output<WindowOutput<R, T>>| {
                    out.push(WindowOutput::Result(result(k, w, r)))
                },
            ),
            Some(Arc::new(WindowOutput::Late)),
        );
        let results = both.flat_map(|o: WindowOutput<R, T>| match o {
            WindowOutput::Result(r) => Some(r),
            WindowOutput::Late(_) => None,
        });
        let late = both.flat_map(|o: WindowOutput<R, T>| match o {
            WindowOutput::Late(t) => Some(t),
            WindowOutput::Result(_) => None,
        });
        (results, late)
    }

    /// Reduces each window's elements pairwise with `f`; emits `(key, window, value)`.
    pub fn reduce(
        &self,
        f: impl Fn(&T, &T) -> T + Clone + Send + Sync + 'static,
    ) -> Stream<(K, Window, T)>
    where
        T: StateValue,
    {
        self.build(
            Reduce { f, _t: PhantomData },
            Arc::new(
                |k: &K, w: Window, r: Option<T>, out: &mut Output<(K, Window, T)>| {
                    if let Some(r) = r {
                        out.push((k.clone(), w, r));
                    }
                },
            ),
            None,
        )
    }

    /// Calls `f` once per window with all its elements (in arrival order); `f` pushes
    /// any number of outputs.
    pub fn process<R: Data>(
        &self,
        f: impl Fn(&K, Window, Vec<T>, &mut Vec<R>) + Send + Sync + 'static,
    ) -> Stream<R>
    where
        T: StateValue + Sync,
    {
        self.build(
            CollectAll(PhantomData),
            Arc::new(
                move |k: &K, w: Window, elements: Vec<T>, out: &mut Output<R>| {
                    f(k, w, elements, out.buffer_mut())
                },
            ),
            None,
        )
    }
}

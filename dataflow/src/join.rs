//! Two-stream joins of keyed streams: window joins (co-group per key and window) and
//! interval joins. Both inputs are hash-partitioned by key into one operator whose
//! input is [`Either`] of the two record types.

use crate::graph::{Data, EdgeSpec, PartitionSpec, TypedEdge};
use crate::keyed_state::{opened, KeyedStateHandle};
use crate::metrics::OperatorMetrics;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::window::{Window, WindowAssigner};
use crate::{
    duration_ms, KeyedStream, Operator, Result, Stream, SubtaskInfo, Timestamp, TimestampAssigner,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use weir_state::{stable_hash, AggregateFunction, StateKey, StateTable, StateValue};

/// A record of the left or the right input of a two-input operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Either<A, B> {
    /// From the first (left) input.
    Left(A),
    /// From the second (right) input.
    Right(B),
}

fn hash_edge<K: StateKey, T: Data, U: Data>(
    keyed: &KeyedStream<K, T>,
    convert: fn(T) -> U,
    codec: fn(&crate::wire::Codecs) -> Option<Arc<dyn crate::wire::WireCodec<U>>>,
) -> EdgeSpec {
    let key = keyed.key_selector();
    EdgeSpec {
        from: keyed.stream().node,
        kind: crate::EdgeKind::Hash,
        build: Arc::new(TypedEdge {
            partition: PartitionSpec::Hash(Arc::new(move |t: &T| stable_hash(&key(t)))),
            convert,
            codec,
            _types: PhantomData,
        }),
    }
}

/// Connects two keyed streams with the same key type into one keyed stream of
/// [`Either`], partitioned so that equal keys of both sides meet on one subtask.
pub(crate) fn connect<K: StateKey, A: Data, B: Data>(
    left: &KeyedStream<K, A>,
    right: &KeyedStream<K, B>,
) -> KeyedStream<K, Either<A, B>> {
    let inputs = vec![
        hash_edge(
            left,
            Either::<A, B>::Left as fn(A) -> Either<A, B>,
            crate::wire::either_codec::<A, B>,
        ),
        hash_edge(
            right,
            Either::<A, B>::Right as fn(B) -> Either<A, B>,
            crate::wire::either_codec::<A, B>,
        ),
    ];
    let left_ts = left.stream().timestamps();
    let right_ts = right.stream().timestamps();
    let timestamps: Option<TimestampAssigner<Either<A, B>>> = match (left_ts, right_ts) {
        (Some(l), Some(r)) => Some(Arc::new(move |e: &Either<A, B>| match e {
            Either::Left(a) => l(a),
            Either::Right(b) => r(b),
        })),
        _ => None,
    };
    // A stand-in stream: the next keyed operator reads `inputs`, not this node.
    let both: Stream<Either<A, B>> = Stream {
        graph: left.stream().graph.clone(),
        node: left.stream().node,
        timestamps,
        _t: PhantomData,
    };
    let (lk, rk) = (left.key_selector(), right.key_selector());
    KeyedStream {
        stream: both,
        key: Arc::new(move |e: &Either<A, B>| match e {
            Either::Left(a) => lk(a),
            Either::Right(b) => rk(b),
        }),
        inputs: Some(inputs),
    }
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    /// Connects this keyed stream with `other` (same key type): the result is keyed
    /// by the key of either side, so a keyed operation on it (`process`, `window`)
    /// sees the records of both inputs with equal keys on one subtask, as
    /// [`Either::Left`] and [`Either::Right`]. Its event time is each side's, when both
    /// have one. Use it only with keyed operations: it has no stream of its own.
    pub fn connect<B: Data>(&self, other: &KeyedStream<K, B>) -> KeyedStream<K, Either<T, B>> {
        connect(self, other)
    }

    /// Joins with `other` per key and window: `f` sees, for each key and window, the
    /// elements of both sides (a co-group); it is called only when both sides have
    /// elements.
    pub fn window_join<B, R>(
        &self,
        other: &KeyedStream<K, B>,
        assigner: WindowAssigner,
        f: impl Fn(&K, Window, &[T], &[B], &mut Vec<R>) + Send + Sync + 'static,
    ) -> Stream<R>
    where
        T: StateValue + Sync,
        B: Data + StateValue + Sync,
        R: Data,
    {
        let connected = connect(self, other);
        connected.window(assigner).name("window-join").build(
            CoGroup(PhantomData),
            Arc::new(
                move |k: &K, w: Window, (left, right): (Vec<T>, Vec<B>), out: &mut Output<R>| {
                    if !left.is_empty() && !right.is_empty() {
                        f(k, w, &left, &right, out.buffer_mut());
                    }
                },
            ),
            None,
        )
    }

    /// Joins every element `a` of this stream with the elements `b` of `other` with
    /// the same key and `a.ts + lower <= b.ts <= a.ts + upper`.
    pub fn interval_join<B, R>(
        &self,
        other: &KeyedStream<K, B>,
        lower: i64,
        upper: i64,
        f: impl Fn(&K, &T, &B) -> R + Send + Sync + 'static,
    ) -> Stream<R>
    where
        T: StateValue + Sync,
        B: Data + StateValue + Sync,
        R: Data,
    {
        let connected = connect(self, other);
        let stream = connected.stream();
        if lower > upper {
            stream.invalid(
                "interval-join",
                format!("lower bound {lower} ms exceeds upper bound {upper} ms"),
            );
        }
        let (Some(left_ts), Some(right_ts)) =
            (self.stream().timestamps(), other.stream().timestamps())
        else {
            stream.invalid(
                "interval-join",
                "both inputs need event time (a watermark strategy or with_timestamps)".into(),
            );
            return stream.flat_map(|_| None::<R>);
        };
        let key = connected.key_selector();
        let f = Arc::new(f);
        connected.transform("interval-join", move |_: &SubtaskInfo| IntervalJoin {
            key: key.clone(),
            left_ts: left_ts.clone(),
            right_ts: right_ts.clone(),
            lower,
            upper,
            f: f.clone(),
            left: None,
            right: None,
            cleanup: BTreeMap::new(),
            watermark: i64::MIN,
            metrics: Arc::default(),
        })
    }
}

/// Collects both sides of a window join.
struct CoGroup<A, B>(PhantomData<fn(A, B)>);

impl<A, B> Clone for CoGroup<A, B> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<A: StateValue + Sync, B: StateValue + Sync> AggregateFunction<Either<A, B>> for CoGroup<A, B> {
    type Acc = (Vec<A>, Vec<B>);
    type Out = (Vec<A>, Vec<B>);
    fn create(&self) -> Self::Acc {
        (Vec::new(), Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, value: &Either<A, B>) {
        match value {
            Either::Left(a) => acc.0.push(a.clone()),
            Either::Right(b) => acc.1.push(b.clone()),
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0.extend(other.0);
        acc.1.extend(other.1);
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
}

type JoinFn<K, A, B, R> = Arc<dyn Fn(&K, &A, &B) -> R + Send + Sync>;

/// The interval-join operator.
struct IntervalJoin<K, A, B, R> {
    key: crate::KeySelector<Either<A, B>, K>,
    left_ts: TimestampAssigner<A>,
    right_ts: TimestampAssigner<B>,
    lower: i64,
    upper: i64,
    f: JoinFn<K, A, B, R>,
    /// Registered with the runtime in `open`.
    left: Option<KeyedStateHandle<StateTable<K, Vec<(i64, A)>>>>,
    /// Registered with the runtime in `open`.
    right: Option<KeyedStateHandle<StateTable<K, Vec<(i64, B)>>>>,
    /// Keys to clean up, by watermark.
    cleanup: BTreeMap<i64, Vec<K>>,
    watermark: i64,
    metrics: Arc<OperatorMetrics>,
}

const WATERMARK: &str = "interval-watermark";

impl<K, A, B, R> Operator for IntervalJoin<K, A, B, R>
where
    K: StateKey,
    A: StateValue + Sync,
    B: StateValue + Sync,
    R: Data,
{
    type In = Either<A, B>;
    type Out = R;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.metrics = cx.metrics.clone();
        let left = cx.keyed_state(|b| StateTable::in_backend(b, "interval-left", Vec::new()))?;
        let right = cx.keyed_state(|b| StateTable::in_backend(b, "interval-right", Vec::new()))?;
        if let Some(bytes) = cx.restored_any(WATERMARK) {
            self.watermark = weir_state::decode(WATERMARK, bytes)?;
        }
        let mut keys = left.lock()?.keys()?;
        keys.extend(right.lock()?.keys()?);
        for key in keys {
            self.cleanup.entry(i64::MIN).or_default().push(key);
        }
        (self.left, self.right) = (Some(left), Some(right));
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<Either<A, B>>, out: &mut Output<R>) -> Result<()> {
        let (mut left, mut right) = (opened(&self.left)?, opened(&self.right)?);
        for element in input.drain(..) {
            let key = (self.key)(&element);
            match element {
                Either::Left(a) => {
                    let ts = (self.left_ts)(&a).0;
                    if ts <= self.watermark {
                        OperatorMetrics::add(&self.metrics.late_records, 1);
                        continue;
                    }
                    for (tb, b) in right.get(&key)?.map(Vec::as_slice).unwrap_or(&[]) {
                        if ts.saturating_add(self.lower) <= *tb
                            && *tb <= ts.saturating_add(self.upper)
                        {
                            out.push((self.f)(&key, &a, b));
                        }
                    }
                    self.cleanup
                        .entry(ts.saturating_add(self.upper.max(0)))
                        .or_default()
                        .push(key.clone());
                    left.get_or_insert_with(key, Vec::new)?.push((ts, a));
                }
                Either::Right(b) => {
                    let ts = (self.right_ts)(&b).0;
                    if ts <= self.watermark {
                        OperatorMetrics::add(&self.metrics.late_records, 1);
                        continue;
                    }
                    for (ta, a) in left.get(&key)?.map(Vec::as_slice).unwrap_or(&[]) {
                        if ta.saturating_add(self.lower) <= ts
                            && ts <= ta.saturating_add(self.upper)
                        {
                            out.push((self.f)(&key, a, &b));
                        }
                    }
                    self.cleanup
                        .entry(ts.saturating_sub(self.lower.min(0)))
                        .or_default()
                        .push(key.clone());
                    right.get_or_insert_with(key, Vec::new)?.push((ts, b));
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, _: &mut Output<R>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        let wm = self.watermark;
        let (lower, upper) = (self.lower, self.upper);
        let (mut left, mut right) = (opened(&self.left)?, opened(&self.right)?);
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() > wm {
                break;
            }
            for key in entry.remove() {
                // A left element can still match future right elements (ts > wm) while
                // ta + upper > wm; a right element while tb - lower > wm.
                if let Some(list) = left.get_mut(&key)? {
                    list.retain(|(ta, _)| ta.saturating_add(upper) > wm);
                    if list.is_empty() {
                        left.remove(&key)?;
                    }
                }
                if let Some(list) = right.get_mut(&key)? {
                    list.retain(|(tb, _)| tb.saturating_sub(lower) > wm);
                    if list.is_empty() {
                        right.remove(&key)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        // Both sides are the runtime's to flush and freeze.
        cx.put_operator(WATERMARK, weir_state::encode(WATERMARK, &self.watermark)?);
        Ok(())
    }
}

/// Duration bounds for [`KeyedStream::interval_join`], in milliseconds.
pub fn interval_bound(d: Duration) -> i64 {
    duration_ms(d)
}

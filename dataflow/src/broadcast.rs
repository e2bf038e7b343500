//! Broadcast state (Flink's broadcast state pattern; Kafka Streams' GlobalKTable):
//! a stream connected with a broadcast stream of rules or a small dimension table.
//!
//! Every subtask of the operator receives every element of the broadcast stream
//! and folds it into its [`BroadcastState`], a map that is then identical on every
//! subtask; the elements of the main stream (keyed or not) read it. Only the
//! broadcast side writes it, so it stays identical as long as the broadcast
//! function is deterministic and the broadcast stream comes from one subtask (with
//! several, each subtask may see their elements interleaved differently, as in
//! Flink).
//!
//! The state is checkpointed once: subtask 0 writes it into its operator state, the
//! others write nothing. A restore at any parallelism gives every subtask that copy,
//! so a subtask added by rescaling starts with the same map as the others.
//!
//! The operator's watermark is the smaller of its two inputs', as for any operator
//! with two inputs: a broadcast stream that goes quiet holds it back unless its
//! source declares idleness (`WatermarkStrategy::with_idleness`), and one without
//! event time holds it back until it ends.

use crate::graph::{Data, EdgeKind, EdgeSpec, NodeKind, OpFactory, PartitionSpec, TypedEdge};
use crate::join::Either;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::process::{ProcessContext, TimeDomain, TimerService};
use crate::{
    DataflowError, KeySelector, KeyedStream, Operator, Result, Stream, SubtaskInfo, Timestamp,
    TimestampAssigner,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use weir_state::{decode, encode, stable_hash, StateKey};

/// The operator state that holds the broadcast state (subtask 0's only).
const BROADCAST_STATE: &str = "broadcast-state";

/// What a broadcast state's keys and values must be: kept in order, cloned and
/// checkpointed in their serde form.
pub trait BroadcastKey: Ord + Clone + Serialize + DeserializeOwned + Send + 'static {}
impl<T: Ord + Clone + Serialize + DeserializeOwned + Send + 'static> BroadcastKey for T {}

/// A broadcast state's values.
pub trait BroadcastValue: Clone + Serialize + DeserializeOwned + Send + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + 'static> BroadcastValue for T {}

/// The map every subtask keeps of the broadcast side. The main side reads it
/// (`&BroadcastState`); only the broadcast side writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct BroadcastState<BK, BV> {
    map: BTreeMap<BK, BV>,
}

impl<BK: BroadcastKey, BV: BroadcastValue> Default for BroadcastState<BK, BV> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
        }
    }
}

impl<BK: BroadcastKey, BV: BroadcastValue> BroadcastState<BK, BV> {
    /// The value of `key`.
    pub fn get(&self, key: &BK) -> Option<&BV> {
        self.map.get(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &BK) -> bool {
        self.map.contains_key(key)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&BK, &BV)> {
        self.map.iter()
    }

    /// The entries with keys in `range`, in key order (from either end: the last
    /// entry at or before a key is `range(..=key).next_back()`).
    pub fn range<R: std::ops::RangeBounds<BK>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&BK, &BV)> {
        self.map.range(range)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sets the value of `key`; returns the one it replaces.
    pub fn insert(&mut self, key: BK, value: BV) -> Option<BV> {
        self.map.insert(key, value)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &BK) -> Option<BV> {
        self.map.remove(key)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Restores the one copy a checkpoint holds.
    fn restore(cx: &OperatorContext) -> Result<Self> {
        Ok(match cx.restored_once.get(BROADCAST_STATE) {
            Some(bytes) => Self {
                map: decode(BROADCAST_STATE, bytes)?,
            },
            None => Self::default(),
        })
    }

    /// Checkpoints the state once: on subtask 0.
    fn snapshot(&self, subtask: usize, cx: &mut SnapshotContext) -> Result<()> {
        if subtask == 0 {
            cx.put_once(BROADCAST_STATE, encode(BROADCAST_STATE, &self.map)?);
        }
        Ok(())
    }
}

/// What a function can do while handling a broadcast element, or an element of a
/// stream that is not keyed.
pub struct BroadcastContext<'a, O> {
    timestamp: Option<Timestamp>,
    watermark: Timestamp,
    out: &'a mut Output<O>,
}

impl<O> BroadcastContext<'_, O> {
    /// The event time of the current element, if its stream has event time.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The operator's current watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Emits a record.
    pub fn emit(&mut self, record: O) {
        self.out.push(record);
    }
}

/// Per-key logic over a keyed stream connected with a broadcast stream (Flink's
/// `KeyedBroadcastProcessFunction`): the keyed side has keyed state (asked for when
/// the function is made) and timers, and reads the broadcast state; the broadcast
/// side writes it.
pub trait KeyedBroadcastProcessFunction<K, In, B>: Send + 'static {
    /// Output record type.
    type Out: Data;
    /// The broadcast state's key.
    type Key: BroadcastKey;
    /// The broadcast state's value.
    type Value: BroadcastValue;

    /// Handles one element of the keyed stream, of `cx.key()`.
    fn process(
        &mut self,
        value: In,
        state: &BroadcastState<Self::Key, Self::Value>,
        cx: &mut ProcessContext<'_, K, Self::Out>,
    ) -> Result<()>;

    /// Handles one element of the broadcast stream: the same elements in the same
    /// order on every subtask, so the same updates keep the state identical.
    fn process_broadcast(
        &mut self,
        value: B,
        state: &mut BroadcastState<Self::Key, Self::Value>,
        cx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()>;

    /// A timer of `cx.key()` fired at `time`.
    fn on_timer(
        &mut self,
        time: Timestamp,
        domain: TimeDomain,
        state: &BroadcastState<Self::Key, Self::Value>,
        cx: &mut ProcessContext<'_, K, Self::Out>,
    ) -> Result<()> {
        let _ = (time, domain, state, cx);
        Ok(())
    }
}

/// Logic over a stream that is not keyed connected with a broadcast stream
/// (Flink's `BroadcastProcessFunction`): no keyed state and no timers.
pub trait BroadcastProcessFunction<In, B>: Send + 'static {
    /// Output record type.
    type Out: Data;
    /// The broadcast state's key.
    type Key: BroadcastKey;
    /// The broadcast state's value.
    type Value: BroadcastValue;

    /// Handles one element of the main stream.
    fn process(
        &mut self,
        value: In,
        state: &BroadcastState<Self::Key, Self::Value>,
        cx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()>;

    /// Handles one element of the broadcast stream (see
    /// [`KeyedBroadcastProcessFunction::process_broadcast`]).
    fn process_broadcast(
        &mut self,
        value: B,
        state: &mut BroadcastState<Self::Key, Self::Value>,
        cx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()>;
}

/// A keyed stream connected with a broadcast stream; finish it with
/// [`process`](Self::process).
pub struct KeyedBroadcastConnected<K, T, B> {
    keyed: KeyedStream<K, T>,
    broadcast: Stream<B>,
}

/// A stream connected with a broadcast stream; finish it with
/// [`process`](Self::process).
pub struct BroadcastConnected<T, B> {
    main: Stream<T>,
    broadcast: Stream<B>,
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    /// Connects this keyed stream with `broadcast`, whose every element reaches
    /// every subtask (see the [module](crate::broadcast)).
    pub fn connect_broadcast<B: Data>(
        &self,
        broadcast: &Stream<B>,
    ) -> KeyedBroadcastConnected<K, T, B> {
        KeyedBroadcastConnected {
            keyed: self.clone(),
            broadcast: broadcast.clone(),
        }
    }
}

impl<T: Data> Stream<T> {
    /// Connects this stream with `broadcast`, whose every element reaches every
    /// subtask (see the [module](crate::broadcast)); this stream's elements stay on
    /// their subtask.
    pub fn connect_broadcast<B: Data>(&self, broadcast: &Stream<B>) -> BroadcastConnected<T, B> {
        BroadcastConnected {
            main: self.clone(),
            broadcast: broadcast.clone(),
        }
    }
}

/// The edge that sends every element of `broadcast` to every subtask, as the
/// right side of [`Either`].
fn broadcast_edge<T: Data, B: Data>(broadcast: &Stream<B>) -> EdgeSpec {
    EdgeSpec {
        from: broadcast.node,
        kind: EdgeKind::Broadcast,
        build: Arc::new(TypedEdge {
            partition: PartitionSpec::Broadcast,
            convert: Either::<T, B>::Right as fn(B) -> Either<T, B>,
            codec: crate::wire::either_codec::<T, B>,
            _types: PhantomData,
        }),
    }
}

/// The main side's edge: hashed by key, or forward.
fn main_edge<T: Data, B: Data>(
    from: usize,
    kind: EdgeKind,
    partition: PartitionSpec<T>,
) -> EdgeSpec {
    EdgeSpec {
        from,
        kind,
        build: Arc::new(TypedEdge {
            partition,
            convert: Either::<T, B>::Left as fn(T) -> Either<T, B>,
            codec: crate::wire::either_codec::<T, B>,
            _types: PhantomData,
        }),
    }
}

/// A stand-in stream of both sides' records, to add the operator reading them (its
/// inputs are the edges, not this node).
fn both<T: Data, B: Data>(main: &Stream<T>) -> Stream<Either<T, B>> {
    Stream {
        graph: main.graph.clone(),
        node: main.node,
        timestamps: None,
        _t: PhantomData,
    }
}

/// Makes a subtask's function when it opens.
type Factory<P> = Arc<dyn Fn(&mut OperatorContext) -> Result<P> + Send + Sync>;

impl<K: StateKey, T: Data, B: Data> KeyedBroadcastConnected<K, T, B> {
    /// Runs a keyed broadcast process function. `factory` makes each subtask's
    /// instance when the subtask opens, and asks the context for its keyed states
    /// ([`OperatorContext::keyed_state`]).
    pub fn process<P, F>(&self, name: &str, factory: F) -> Stream<P::Out>
    where
        P: KeyedBroadcastProcessFunction<K, T, B>,
        F: Fn(&mut OperatorContext) -> Result<P> + Send + Sync + 'static,
    {
        let key = self.keyed.key_selector();
        let hash = key.clone();
        let inputs = vec![
            main_edge::<T, B>(
                self.keyed.stream().node,
                EdgeKind::Hash,
                PartitionSpec::Hash(Arc::new(move |t: &T| stable_hash(&hash(t)))),
            ),
            broadcast_edge::<T, B>(&self.broadcast),
        ];
        let timestamps = (
            self.keyed.stream().timestamps(),
            self.broadcast.timestamps(),
        );
        let make: Factory<P> = Arc::new(factory);
        both::<T, B>(self.keyed.stream()).add_node(
            name,
            NodeKind::Operator(Arc::new(OpFactory(move |info: &SubtaskInfo| {
                KeyedBroadcastProcess {
                    function: None,
                    make: make.clone(),
                    key: key.clone(),
                    timestamps: timestamps.clone(),
                    state: BroadcastState::default(),
                    timers: TimerService::default(),
                    watermark: Timestamp::MIN,
                    subtask: info.index,
                    max_parallelism: info.max_parallelism,
                }
            }))),
            inputs,
            None,
        )
    }
}

impl<T: Data, B: Data> BroadcastConnected<T, B> {
    /// Runs a broadcast process function; `factory` makes each subtask's instance
    /// when the subtask opens.
    pub fn process<P, F>(&self, name: &str, factory: F) -> Stream<P::Out>
    where
        P: BroadcastProcessFunction<T, B>,
        F: Fn(&mut OperatorContext) -> Result<P> + Send + Sync + 'static,
    {
        let inputs = vec![
            main_edge::<T, B>(self.main.node, EdgeKind::Forward, PartitionSpec::Forward),
            broadcast_edge::<T, B>(&self.broadcast),
        ];
        let timestamps = (self.main.timestamps(), self.broadcast.timestamps());
        let make: Factory<P> = Arc::new(factory);
        let stream = both::<T, B>(&self.main).add_node(
            name,
            NodeKind::Operator(Arc::new(OpFactory(move |info: &SubtaskInfo| {
                BroadcastProcess {
                    function: None,
                    make: make.clone(),
                    timestamps: timestamps.clone(),
                    state: BroadcastState::default(),
                    watermark: Timestamp::MIN,
                    subtask: info.index,
                }
            }))),
            inputs,
            None,
        );
        // The main side stays on its subtasks: as many as it has.
        match self.main.node_parallelism() {
            Some(p) => stream.parallelism(p),
            None => stream,
        }
    }
}

/// The event time of an element of either side.
type Timestamps<T, B> = (Option<TimestampAssigner<T>>, Option<TimestampAssigner<B>>);

fn timestamp_of<T, B>(timestamps: &Timestamps<T, B>, element: &Either<T, B>) -> Option<Timestamp> {
    match element {
        Either::Left(t) => timestamps.0.as_ref().map(|ts| ts(t)),
        Either::Right(b) => timestamps.1.as_ref().map(|ts| ts(b)),
    }
}

/// The function, once the operator is open.
fn opened<P>(function: &mut Option<P>) -> Result<&mut P> {
    function.as_mut().ok_or_else(|| DataflowError::TaskFailed {
        task: "broadcast process".to_string(),
        message: "the function was called before its operator was opened".to_string(),
    })
}

/// The operator running a [`KeyedBroadcastProcessFunction`].
struct KeyedBroadcastProcess<K, T, B, P: KeyedBroadcastProcessFunction<K, T, B>> {
    function: Option<P>,
    make: Factory<P>,
    key: KeySelector<T, K>,
    timestamps: Timestamps<T, B>,
    state: BroadcastState<P::Key, P::Value>,
    timers: TimerService<K>,
    watermark: Timestamp,
    subtask: usize,
    max_parallelism: weir_state::MaxParallelism,
}

impl<K, T, B, P> Operator for KeyedBroadcastProcess<K, T, B, P>
where
    K: StateKey,
    T: Send + 'static,
    B: Send + 'static,
    P: KeyedBroadcastProcessFunction<K, T, B>,
{
    type In = Either<T, B>;
    type Out = P::Out;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.function = Some((self.make)(cx)?);
        self.state = BroadcastState::restore(cx)?;
        self.timers.open(cx)
    }

    fn on_batch(&mut self, input: &mut Vec<Either<T, B>>, out: &mut Output<P::Out>) -> Result<()> {
        let function = opened(&mut self.function)?;
        for element in input.drain(..) {
            let timestamp = timestamp_of(&self.timestamps, &element);
            match element {
                Either::Left(value) => {
                    let key = (self.key)(&value);
                    let mut cx =
                        ProcessContext::new(&key, timestamp, self.watermark, &mut self.timers, out);
                    function.process(value, &self.state, &mut cx)?;
                    self.timers.take_failure()?;
                }
                Either::Right(value) => {
                    let mut cx = BroadcastContext {
                        timestamp,
                        watermark: self.watermark,
                        out,
                    };
                    function.process_broadcast(value, &mut self.state, &mut cx)?;
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now, out)
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        self.state.snapshot(self.subtask, cx)?;
        self.timers.snapshot(self.max_parallelism, cx)
    }
}

impl<K, T, B, P> KeyedBroadcastProcess<K, T, B, P>
where
    K: StateKey,
    P: KeyedBroadcastProcessFunction<K, T, B>,
{
    /// Fires the timers of `domain` due at `now`.
    fn fire(&mut self, domain: TimeDomain, now: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        let function = opened(&mut self.function)?;
        while let Some((key, time)) = self.timers.pop_due(domain, now)? {
            let mut cx =
                ProcessContext::new(&key, Some(time), self.watermark, &mut self.timers, out);
            function.on_timer(time, domain, &self.state, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }
}

/// The operator running a [`BroadcastProcessFunction`].
struct BroadcastProcess<T, B, P: BroadcastProcessFunction<T, B>> {
    function: Option<P>,
    make: Factory<P>,
    timestamps: Timestamps<T, B>,
    state: BroadcastState<P::Key, P::Value>,
    watermark: Timestamp,
    subtask: usize,
}

impl<T, B, P> Operator for BroadcastProcess<T, B, P>
where
    T: Send + 'static,
    B: Send + 'static,
    P: BroadcastProcessFunction<T, B>,
{
    type In = Either<T, B>;
    type Out = P::Out;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.function = Some((self.make)(cx)?);
        self.state = BroadcastState::restore(cx)?;
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<Either<T, B>>, out: &mut Output<P::Out>) -> Result<()> {
        let function = opened(&mut self.function)?;
        for element in input.drain(..) {
            let mut cx = BroadcastContext {
                timestamp: timestamp_of(&self.timestamps, &element),
                watermark: self.watermark,
                out,
            };
            match element {
                Either::Left(value) => function.process(value, &self.state, &mut cx)?,
                Either::Right(value) => {
                    function.process_broadcast(value, &mut self.state, &mut cx)?
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<P::Out>) -> Result<()> {
        self.watermark = watermark;
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        self.state.snapshot(self.subtask, cx)
    }
}

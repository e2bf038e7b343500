//! The typed stream API: [`JobBuilder`], [`Stream`] and [`KeyedStream`].

use crate::graph::{
    Data, EdgeKind, EdgeSpec, GraphSpec, NodeKind, NodeSpec, OpFactory, PartitionSpec, SinkFactory,
    SourceFactory, TypedEdge, TypedOps,
};
use crate::operator::Operator;
use crate::ops::{Filter, FlatMap, Identity, Map};
use crate::sink::Sink;
use crate::source::{Source, TimestampAssigner, WatermarkStrategy};
use crate::{JobConfig, SubtaskInfo, Timestamp};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use weir_state::{stable_hash, StateKey};

/// Builds a job: add sources, transform the streams, add sinks, then
/// [`JobBuilder::execute`] (or [`JobBuilder::spawn`] for a handle to the running job).
pub struct JobBuilder {
    pub(crate) graph: Rc<RefCell<GraphSpec>>,
    pub(crate) config: JobConfig,
}

impl JobBuilder {
    /// A job with `config` (name, default parallelism, batching, …).
    pub fn new(config: JobConfig) -> Self {
        Self {
            graph: Rc::new(RefCell::new(GraphSpec::default())),
            config,
        }
    }

    /// The job's settings.
    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// Counts the rows of records of type `T` with `rows` in the job's metrics
    /// (records in and out): for record types that are batches of rows, such as the
    /// job-file path's.
    pub fn count_rows<T: 'static>(&self, rows: fn(&T) -> usize) {
        let mut graph = self.graph.borrow_mut();
        Arc::make_mut(&mut graph.row_counts).insert(std::any::TypeId::of::<T>(), Arc::new(rows));
    }

    /// Lets records of type `T` cross worker processes, encoded with serde (bincode),
    /// when the job spans several workers ([`JobConfig::placement`]). A job that sends
    /// records of a type without a codec to another worker is refused at start,
    /// naming the edge and the type.
    pub fn wire_codec<T>(&self)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.register_codec::<T>(Arc::new(crate::wire::SerdeCodec));
    }

    /// Lets records of type `T` cross worker processes, encoded by `codec`.
    pub fn register_codec<T: 'static>(&self, codec: Arc<dyn crate::wire::WireCodec<T>>) {
        self.graph.borrow_mut().codecs.insert(codec);
    }

    /// The uid of every operator of the graph built so far (explicit or derived).
    pub fn operator_uids(&self) -> Vec<String> {
        let graph = self.graph.borrow();
        (0..graph.nodes.len()).map(|i| graph.uid_of(i)).collect()
    }

    /// The parallelism of every operator of the graph built so far, by uid.
    pub(crate) fn operator_parallelism(&self) -> std::collections::BTreeMap<String, usize> {
        let graph = self.graph.borrow();
        (0..graph.nodes.len())
            .map(|i| {
                let p = graph.nodes[i]
                    .parallelism
                    .unwrap_or(self.config.parallelism);
                (graph.uid_of(i), p)
            })
            .collect()
    }

    /// The derived uids of operators that have no explicit uid.
    pub fn operators_without_uid(&self) -> Vec<String> {
        let graph = self.graph.borrow();
        (0..graph.nodes.len())
            .filter(|&i| graph.nodes[i].uid.is_none())
            .map(|i| graph.uid_of(i))
            .collect()
    }

    /// Adds a source; `factory` creates the source of each subtask. Event time and
    /// watermarks follow `strategy`.
    pub fn source<S, F>(
        &self,
        name: &str,
        strategy: WatermarkStrategy<S::Out>,
        factory: F,
    ) -> Stream<S::Out>
    where
        S: Source,
        S::Out: Data,
        F: Fn(&SubtaskInfo) -> S + Send + Sync + 'static,
    {
        let timestamps = strategy.assigner.clone();
        let node = self.graph.borrow_mut().add(NodeSpec {
            name: name.to_string(),
            uid: None,
            parallelism: None,
            records_per_message: None,
            kind: NodeKind::Source(Arc::new(SourceFactory { factory, strategy })),
            inputs: Vec::new(),
            output: Some(Arc::new(TypedOps::<S::Out>::new())),
            input: None,
        });
        Stream {
            graph: self.graph.clone(),
            node,
            timestamps,
            _t: PhantomData,
        }
    }
}

/// A stream of records of type `T`: the output of one operator.
pub struct Stream<T> {
    pub(crate) graph: Rc<RefCell<GraphSpec>>,
    pub(crate) node: usize,
    pub(crate) timestamps: Option<TimestampAssigner<T>>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Self {
            graph: self.graph.clone(),
            node: self.node,
            timestamps: self.timestamps.clone(),
            _t: PhantomData,
        }
    }
}

/// The handle of a sink, to set its uid, name or parallelism.
pub struct SinkHandle {
    graph: Rc<RefCell<GraphSpec>>,
    node: usize,
}

macro_rules! node_settings {
    () => {
        /// Sets the stable uid under which this operator's state is checkpointed.
        pub fn uid(self, uid: &str) -> Self {
            if let Some(node) = self.graph.borrow_mut().nodes.get_mut(self.node) {
                node.uid = Some(uid.to_string());
            }
            self
        }

        /// Sets the operator's display name.
        pub fn name(self, name: &str) -> Self {
            if let Some(node) = self.graph.borrow_mut().nodes.get_mut(self.node) {
                node.name = name.to_string();
            }
            self
        }

        /// Sets the operator's parallelism (validated when the job is built).
        pub fn parallelism(self, parallelism: usize) -> Self {
            if let Some(node) = self.graph.borrow_mut().nodes.get_mut(self.node) {
                node.parallelism = Some(parallelism);
            }
            self
        }
    };
}

impl SinkHandle {
    node_settings!();
}

pub(crate) fn edge<T: Data>(from: usize, partition: PartitionSpec<T>) -> EdgeSpec {
    EdgeSpec {
        from,
        kind: partition.kind(),
        build: Arc::new(TypedEdge {
            partition,
            convert: |t: T| t,
            codec: crate::wire::Codecs::get::<T>,
            _types: PhantomData,
        }),
    }
}

impl<T: Data> Stream<T> {
    node_settings!();

    /// Adds an operator node reading this stream through `inputs`.
    pub(crate) fn add_node<U: Data>(
        &self,
        name: &str,
        kind: NodeKind,
        inputs: Vec<EdgeSpec>,
        timestamps: Option<TimestampAssigner<U>>,
    ) -> Stream<U> {
        let node = self.graph.borrow_mut().add(NodeSpec {
            name: name.to_string(),
            uid: None,
            parallelism: None,
            records_per_message: None,
            kind,
            inputs,
            output: Some(Arc::new(TypedOps::<U>::new())),
            input: Some(Arc::new(TypedOps::<T>::new())),
        });
        Stream {
            graph: self.graph.clone(),
            node,
            timestamps,
            _t: PhantomData,
        }
    }

    /// The parallelism set on this stream's operator, if one is.
    pub(crate) fn node_parallelism(&self) -> Option<usize> {
        self.graph
            .borrow()
            .nodes
            .get(self.node)
            .and_then(|n| n.parallelism)
    }

    /// Records an invalid setting, reported when the job is built.
    pub(crate) fn invalid(&self, operator: &str, message: String) {
        self.graph
            .borrow_mut()
            .errors
            .push(crate::DataflowError::invalid(operator, message));
    }

    /// Applies a custom [`Operator`] to every subtask's records, chained (forward).
    pub fn transform<O, F>(&self, name: &str, factory: F) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        O::Out: Data,
        F: Fn(&SubtaskInfo) -> O + Send + Sync + 'static,
    {
        self.add_node(
            name,
            NodeKind::Operator(Arc::new(OpFactory(factory))),
            vec![edge::<T>(self.node, PartitionSpec::Forward)],
            None,
        )
    }

    fn transform_keeping_time<O, F>(
        &self,
        name: &str,
        partition: PartitionSpec<T>,
        factory: F,
    ) -> Stream<T>
    where
        O: Operator<In = T, Out = T>,
        F: Fn(&SubtaskInfo) -> O + Send + Sync + 'static,
    {
        self.add_node(
            name,
            NodeKind::Operator(Arc::new(OpFactory(factory))),
            vec![edge::<T>(self.node, partition)],
            self.timestamps.clone(),
        )
    }

    /// Transforms every record. The result has no event time until
    /// [`Stream::with_timestamps`] sets it.
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Clone + Send + Sync + 'static) -> Stream<U> {
        self.transform("map", move |_| Map::new(f.clone()))
    }

    /// Keeps the records for which `f` holds.
    pub fn filter(&self, f: impl Fn(&T) -> bool + Clone + Send + Sync + 'static) -> Stream<T> {
        self.transform_keeping_time("filter", PartitionSpec::Forward, move |_| {
            Filter::new(f.clone())
        })
    }

    /// Maps every record to zero or more records.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U> + 'static>(
        &self,
        f: impl Fn(T) -> I + Clone + Send + Sync + 'static,
    ) -> Stream<U> {
        self.transform("flat_map", move |_| FlatMap::new(f.clone()))
    }

    /// Declares how to read each record's event time (after a `map`, for instance).
    /// Watermarks are unchanged: they still come from the sources.
    pub fn with_timestamps(mut self, f: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        self.timestamps = Some(Arc::new(f));
        self
    }

    /// Partitions the stream by key: records with equal keys go to the same subtask
    /// (by key group of the key's stable hash).
    pub fn key_by<K: StateKey>(
        &self,
        key: impl Fn(&T) -> K + Clone + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        KeyedStream {
            stream: self.clone(),
            key: Arc::new(key),
            inputs: None,
        }
    }

    /// Merges this stream with others of the same type.
    pub fn union(&self, others: &[Stream<T>]) -> Stream<T> {
        let mut inputs = vec![edge::<T>(self.node, PartitionSpec::Forward)];
        inputs.extend(
            others
                .iter()
                .map(|o| edge::<T>(o.node, PartitionSpec::Forward)),
        );
        self.add_node(
            "union",
            NodeKind::Operator(Arc::new(OpFactory(|_: &SubtaskInfo| {
                Identity::<T>::default()
            }))),
            inputs,
            self.timestamps.clone(),
        )
    }

    /// Spreads batches round-robin over the next operator's subtasks.
    pub fn rebalance(&self) -> Stream<T> {
        self.transform_keeping_time("rebalance", PartitionSpec::Rebalance, |_| {
            Identity::<T>::default()
        })
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(&self) -> Stream<T> {
        self.transform_keeping_time("broadcast", PartitionSpec::Broadcast, |_| {
            Identity::<T>::default()
        })
    }

    /// Writes the stream to a sink; `factory` creates each subtask's sink.
    pub fn sink<S, F>(&self, name: &str, factory: F) -> SinkHandle
    where
        S: Sink<In = T>,
        F: Fn(&SubtaskInfo) -> S + Send + Sync + 'static,
    {
        let node = self.graph.borrow_mut().add(NodeSpec {
            name: name.to_string(),
            uid: None,
            parallelism: None,
            records_per_message: None,
            kind: NodeKind::Sink(Arc::new(SinkFactory(factory))),
            inputs: vec![edge::<T>(self.node, PartitionSpec::Forward)],
            output: None,
            input: Some(Arc::new(TypedOps::<T>::new())),
        });
        SinkHandle {
            graph: self.graph.clone(),
            node,
        }
    }

    /// Sends this stream's records to other tasks in channel messages of `records`
    /// (default: the job's `batch_size`). A stream whose records are themselves
    /// batches of rows (the job-file path) sends each at once, with `1`.
    pub fn records_per_message(self, records: usize) -> Self {
        if let Some(node) = self.graph.borrow_mut().nodes.get_mut(self.node) {
            node.records_per_message = Some(records.max(1));
        }
        self
    }

    /// The event-time extractor of this stream, if it has one.
    pub fn timestamps(&self) -> Option<TimestampAssigner<T>> {
        self.timestamps.clone()
    }
}

/// Extracts a record's key.
pub type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A stream partitioned by key; keyed operations (process functions, windows, joins)
/// see all records of a key on one subtask, with state scoped to the key.
pub struct KeyedStream<K, T> {
    pub(crate) stream: Stream<T>,
    pub(crate) key: KeySelector<T, K>,
    /// Input edges of the next keyed operator when they are not one hash edge from
    /// `stream` (two-input operators).
    pub(crate) inputs: Option<Vec<EdgeSpec>>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            key: self.key.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    /// The hash partitioning of this keyed stream.
    pub(crate) fn partition(&self) -> PartitionSpec<T> {
        let key = self.key.clone();
        PartitionSpec::Hash(Arc::new(move |t: &T| stable_hash(&key(t))))
    }

    /// The key selector.
    pub fn key_selector(&self) -> KeySelector<T, K> {
        self.key.clone()
    }

    /// The stream before keying.
    pub fn stream(&self) -> &Stream<T> {
        &self.stream
    }

    /// Whether it keys several inputs (a connected or co-grouped stream).
    pub(crate) fn has_inputs(&self) -> bool {
        self.inputs.is_some()
    }

    /// Adds a keyed operator (input hash-partitioned by key).
    pub fn transform<O, F>(&self, name: &str, factory: F) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        O::Out: Data,
        F: Fn(&SubtaskInfo) -> O + Send + Sync + 'static,
    {
        self.stream.add_node(
            name,
            NodeKind::Operator(Arc::new(OpFactory(factory))),
            self.inputs
                .clone()
                .unwrap_or_else(|| vec![edge::<T>(self.stream.node, self.partition())]),
            None,
        )
    }
}

impl EdgeKind {
    /// Whether an edge of this kind may be chained (forward only).
    pub fn chainable(self) -> bool {
        self == EdgeKind::Forward
    }
}

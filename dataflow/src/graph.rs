//! The job graph: vertices are operators (with a name, a stable uid and a
//! parallelism), edges say how records are partitioned between them. Built through
//! the typed API ([`crate::Stream`]), expanded into tasks by `job/` ([`crate::JobBuilder::spawn`]).

use crate::exchange::{ExchangeWriter, Partitioner};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext};
use crate::sink::Sink;
use crate::source::{Source, WatermarkStrategy};
use crate::stage::{OperatorStage, SinkStage, Stage, Tee};
use crate::task::{GateHead, SourceHead, TaskHead};
use crate::wire::{Codecs, Placement, WireCodec};
use crate::{DataflowError, Message, Result};
use crossbeam_channel::{bounded, Receiver};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_checkpoint::OperatorUid;
use weir_state::MaxParallelism;

/// What every record type flowing through a job must be.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// A typed value passed between wiring closures at job start; the hot path is fully
/// typed (a `Box<dyn Stage<T>>` or channel ends inside).
pub(crate) type Erased = Box<dyn Any + Send>;

/// How an edge partitions records, for chaining decisions and display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// Subtask i to subtask i (chained when parallelisms match).
    Forward,
    /// Round-robin.
    Rebalance,
    /// To every subtask.
    Broadcast,
    /// By key group of the key.
    Hash,
}

/// Settings of the channels and batching, passed to wiring.
#[derive(Clone, Debug)]
pub(crate) struct WireSettings {
    pub(crate) batch_size: usize,
    pub(crate) linger: Duration,
    pub(crate) channel_capacity: usize,
    pub(crate) max_parallelism: MaxParallelism,
}

/// What wiring an edge needs to know beyond its own settings when the job spans
/// several workers.
pub(crate) struct EdgeWire<'a> {
    /// Where the subtasks run; `None` in a single process.
    pub(crate) placement: Option<&'a Placement>,
    /// The record codecs the job registered.
    pub(crate) codecs: &'a Codecs,
    /// The edge: the receiving node and the index of the edge among its inputs.
    pub(crate) edge: (usize, usize),
    /// The edge for messages: "`a` -> `b`".
    pub(crate) name: &'a str,
    /// Where the bridges to other workers are kept.
    pub(crate) bridges: &'a Arc<crate::wire::Bridges>,
}

pub(crate) trait EdgeBuild: Send + Sync {
    /// Channels of the edge: one writer stage per upstream subtask and one list of
    /// receivers per downstream subtask, `None` for the subtasks of other workers.
    fn channels(
        &self,
        up: usize,
        down: usize,
        settings: &WireSettings,
        task: &str,
        metrics: &[Arc<OperatorMetrics>],
        wire: &EdgeWire<'_>,
    ) -> Result<(Vec<Option<Erased>>, Vec<Option<Erased>>)>;
}

pub(crate) enum PartitionSpec<T> {
    Forward,
    Rebalance,
    Broadcast,
    Hash(Arc<dyn Fn(&T) -> u64 + Send + Sync>),
}

impl<T> Clone for PartitionSpec<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Forward => Self::Forward,
            Self::Rebalance => Self::Rebalance,
            Self::Broadcast => Self::Broadcast,
            Self::Hash(h) => Self::Hash(h.clone()),
        }
    }
}

impl<T> PartitionSpec<T> {
    pub(crate) fn kind(&self) -> EdgeKind {
        match self {
            Self::Forward => EdgeKind::Forward,
            Self::Rebalance => EdgeKind::Rebalance,
            Self::Broadcast => EdgeKind::Broadcast,
            Self::Hash(_) => EdgeKind::Hash,
        }
    }
}

pub(crate) struct TypedEdge<T, U, C> {
    pub(crate) partition: PartitionSpec<T>,
    pub(crate) convert: C,
    /// The codec of the edge's records when they cross workers.
    pub(crate) codec: fn(&Codecs) -> Option<Arc<dyn WireCodec<U>>>,
    pub(crate) _types: PhantomData<fn(T) -> U>,
}

impl<T: Data, U: Data, C: Fn(T) -> U + Clone + Send + Sync + 'static> EdgeBuild
    for TypedEdge<T, U, C>
{
    fn channels(
        &self,
        up: usize,
        down: usize,
        settings: &WireSettings,
        task: &str,
        metrics: &[Arc<OperatorMetrics>],
        wire: &EdgeWire<'_>,
    ) -> Result<(Vec<Option<Erased>>, Vec<Option<Erased>>)> {
        let local = |index: usize| wire.placement.is_none_or(|p| p.is_local(index));
        let codec = match wire.placement {
            Some(_) if (0..up).any(|i| (0..down).any(|j| local(i) != local(j))) => {
                Some((self.codec)(wire.codecs).ok_or_else(|| {
                    DataflowError::invalid(
                        wire.name,
                        format!(
                            "records of type `{}` cross workers on this edge but have no wire codec (register one with `JobBuilder::wire_codec`)",
                            std::any::type_name::<U>()
                        ),
                    )
                })?)
            }
            _ => None,
        };
        let mut senders = vec![Vec::with_capacity(down); up];
        let mut receivers: Vec<Vec<Receiver<Message<U>>>> = vec![Vec::with_capacity(up); down];
        for (i, senders) in senders.iter_mut().enumerate() {
            for (j, receivers) in receivers.iter_mut().enumerate() {
                if !local(i) && !local(j) {
                    continue;
                }
                let (tx, rx) = bounded(settings.channel_capacity);
                match (wire.placement, &codec) {
                    (Some(p), Some(codec)) if local(i) && !local(j) => {
                        let channel = p.channel(wire.edge, i, j);
                        crate::wire::outbound(
                            p,
                            p.worker_of(j),
                            channel,
                            rx,
                            codec.clone(),
                            wire.bridges,
                        )?;
                        senders.push(tx);
                    }
                    (Some(p), Some(codec)) if !local(i) => {
                        let channel = p.channel(wire.edge, i, j);
                        let window = u32::try_from(settings.channel_capacity).unwrap_or(u32::MAX);
                        crate::wire::inbound(
                            p,
                            p.worker_of(i),
                            channel,
                            window,
                            tx,
                            codec.clone(),
                            wire.bridges,
                        )?;
                        receivers.push(rx);
                    }
                    _ => {
                        senders.push(tx);
                        receivers.push(rx);
                    }
                }
            }
        }
        let writers = senders
            .into_iter()
            .enumerate()
            .map(|(index, senders)| {
                if !local(index) {
                    return None;
                }
                let partitioner = match &self.partition {
                    PartitionSpec::Forward => Partitioner::Forward,
                    PartitionSpec::Rebalance => Partitioner::Rebalance,
                    PartitionSpec::Broadcast => Partitioner::Broadcast,
                    PartitionSpec::Hash(h) => {
                        Partitioner::hash(h.clone(), settings.max_parallelism, down)
                    }
                };
                let writer: Box<dyn Stage<T>> = Box::new(ExchangeWriter {
                    partitioner,
                    convert: self.convert.clone(),
                    buffers: (0..senders.len())
                        .map(|_| Vec::with_capacity(settings.batch_size))
                        .collect(),
                    senders,
                    batch_size: settings.batch_size,
                    linger: settings.linger,
                    last_flush: Instant::now(),
                    next_target: index,
                    task: task.to_string(),
                    own_index: index,
                    pointwise: up == down,
                    ended: false,
                    metrics: metrics.get(index).cloned().unwrap_or_default(),
                });
                Some(Box::new(writer) as Erased)
            })
            .collect();
        let readers = receivers
            .into_iter()
            .enumerate()
            .map(|(index, r)| local(index).then(|| Box::new(r) as Erased))
            .collect();
        Ok((writers, readers))
    }
}

pub(crate) fn downcast<T: 'static>(erased: Erased, what: &str) -> Result<T> {
    erased
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| DataflowError::TaskFailed {
            task: what.to_string(),
            message: "internal wiring error: mismatched record types".into(),
        })
}

pub(crate) trait OutputOps: Send + Sync {
    fn tee(&self, branches: Vec<Erased>) -> Result<Erased>;
}

pub(crate) trait InputOps: Send + Sync {
    fn gate(&self, readers: Vec<Erased>, stage: Erased) -> Result<Box<dyn TaskHead>>;
}

pub(crate) struct TypedOps<T>(PhantomData<fn(T)>);

impl<T> TypedOps<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Data> OutputOps for TypedOps<T> {
    fn tee(&self, branches: Vec<Erased>) -> Result<Erased> {
        let branches = branches
            .into_iter()
            .map(|b| downcast::<Box<dyn Stage<T>>>(b, "tee"))
            .collect::<Result<Vec<_>>>()?;
        let tee: Box<dyn Stage<T>> = Box::new(Tee {
            branches,
            scratch: Vec::new(),
        });
        Ok(Box::new(tee))
    }
}

impl<T: Data> InputOps for TypedOps<T> {
    fn gate(&self, readers: Vec<Erased>, stage: Erased) -> Result<Box<dyn TaskHead>> {
        let mut inputs = Vec::new();
        for r in readers {
            inputs.extend(downcast::<Vec<Receiver<Message<T>>>>(r, "gate")?);
        }
        let stage = downcast::<Box<dyn Stage<T>>>(stage, "gate")?;
        Ok(Box::new(GateHead {
            inputs,
            stage,
            last_barrier: None,
            completed: None,
        }))
    }
}

pub(crate) trait OpBuild: Send + Sync {
    fn build(&self, cx: OperatorContext, next: Erased) -> Result<Erased>;
}

pub(crate) struct OpFactory<F>(pub(crate) F);

impl<O: Operator, F: Fn(&crate::SubtaskInfo) -> O + Send + Sync> OpBuild for OpFactory<F> {
    fn build(&self, cx: OperatorContext, next: Erased) -> Result<Erased> {
        let next = downcast::<Box<dyn Stage<O::Out>>>(next, &cx.subtask.operator)?;
        let operator = (self.0)(&cx.subtask);
        let stage: Box<dyn Stage<O::In>> = Box::new(OperatorStage::new(operator, cx, next));
        Ok(Box::new(stage))
    }
}

pub(crate) trait SinkBuild: Send + Sync {
    fn build(&self, cx: OperatorContext) -> Result<Erased>;
}

pub(crate) struct SinkFactory<F>(pub(crate) F);

impl<S: Sink, F: Fn(&crate::SubtaskInfo) -> S + Send + Sync> SinkBuild for SinkFactory<F> {
    fn build(&self, cx: OperatorContext) -> Result<Erased> {
        let sink = (self.0)(&cx.subtask);
        let stage: Box<dyn Stage<S::In>> = Box::new(SinkStage::new(sink, cx));
        Ok(Box::new(stage))
    }
}

pub(crate) trait SourceBuild: Send + Sync {
    fn build(
        &self,
        cx: OperatorContext,
        next: Erased,
        batch_size: usize,
    ) -> Result<Box<dyn TaskHead>>;
}

pub(crate) struct SourceFactory<S: Source, F> {
    pub(crate) factory: F,
    pub(crate) strategy: WatermarkStrategy<S::Out>,
}

impl<S: Source, F: Fn(&crate::SubtaskInfo) -> S + Send + Sync> SourceBuild for SourceFactory<S, F>
where
    WatermarkStrategy<S::Out>: Send + Sync,
{
    fn build(
        &self,
        cx: OperatorContext,
        next: Erased,
        batch_size: usize,
    ) -> Result<Box<dyn TaskHead>> {
        let stage = downcast::<Box<dyn Stage<S::Out>>>(next, &cx.subtask.operator)?;
        let source = (self.factory)(&cx.subtask);
        Ok(Box::new(SourceHead {
            source,
            strategy: self.strategy.clone(),
            stage,
            uid: OperatorUid::new(cx.subtask.uid.as_str()),
            metrics: cx.metrics.clone(),
            max_parallelism: cx.subtask.max_parallelism,
            batch_size,
            rows: crate::metrics::row_counter(&cx.row_counts),
            cx: Some(cx),
            last_barrier: None,
            completed: None,
        }))
    }
}

pub(crate) enum NodeKind {
    Source(Arc<dyn SourceBuild>),
    Operator(Arc<dyn OpBuild>),
    Sink(Arc<dyn SinkBuild>),
}

#[derive(Clone)]
pub(crate) struct EdgeSpec {
    pub(crate) from: usize,
    pub(crate) kind: EdgeKind,
    pub(crate) build: Arc<dyn EdgeBuild>,
}

pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) parallelism: Option<usize>,
    /// Records per channel message on this node's outgoing edges, instead of the
    /// job's batch size (1 when each record is itself a batch of rows).
    pub(crate) records_per_message: Option<usize>,
    pub(crate) kind: NodeKind,
    pub(crate) inputs: Vec<EdgeSpec>,
    pub(crate) output: Option<Arc<dyn OutputOps>>,
    pub(crate) input: Option<Arc<dyn InputOps>>,
}

/// The graph under construction, shared by the streams of one job builder.
#[derive(Default)]
pub(crate) struct GraphSpec {
    pub(crate) nodes: Vec<NodeSpec>,
    /// Invalid settings found while building; reported all at once by `execute`.
    pub(crate) errors: Vec<DataflowError>,
    /// How to count the rows of record types that hold many ([`crate::JobBuilder::count_rows`]).
    pub(crate) row_counts: crate::metrics::RowCounts,
    /// How records cross workers, by type ([`crate::JobBuilder::wire_codec`]).
    pub(crate) codecs: Codecs,
}

impl GraphSpec {
    pub(crate) fn add(&mut self, node: NodeSpec) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The uid of node `index`: its explicit uid, or one derived from its position.
    pub(crate) fn uid_of(&self, index: usize) -> String {
        let node = &self.nodes[index];
        node.uid.clone().unwrap_or_else(|| {
            let name: String = node
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("auto-{index}-{name}")
        })
    }
}

//! Expanding a job graph into tasks and running them: one OS thread per subtask of
//! each chain, bounded channels between them.

use crate::graph::{Erased, GraphSpec, NodeKind, WireSettings};
use crate::metrics::{Gauge, OperatorMetrics};
use crate::operator::{OperatorContext, SubtaskInfo};
use crate::stream::JobBuilder;
use crate::task::{JobEvent, TaskCommand, TaskEnv, TaskHead};
use crate::{DataflowError, Result};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_checkpoint::layout::path_segment;
use weir_checkpoint::restore::RestoreState;
use weir_checkpoint::{Barrier, CheckpointId, SubtaskAck};
use weir_state::{KeyGroupRange, MaxParallelism, SharedBackend, StateBackend};

/// Settings of a job.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// The job's name.
    pub name: String,
    /// Parallelism of operators that do not set their own.
    pub parallelism: usize,
    /// Number of key groups; the upper bound of any operator's parallelism.
    pub max_parallelism: usize,
    /// Records per batch on channels.
    pub batch_size: usize,
    /// A partly filled batch is sent after this long.
    pub linger: Duration,
    /// Capacity of each channel, in batches (backpressure beyond it).
    pub channel_capacity: usize,
    /// How often sources emit watermarks.
    pub watermark_interval: Duration,
    /// Whether checkpoints will be taken (state tables then track changes).
    pub checkpointing: bool,
    /// How long a checkpoint may take (set by the checkpointing driver); sinks that
    /// commit after a checkpoint bound their commits by it.
    pub checkpoint_timeout: Option<Duration>,
    /// State to restore, by operator uid.
    pub restore: Option<RestoreState>,
    /// Where keyed state lives: on the heap (the default) or in RocksDB, one
    /// instance per operator subtask under `<dir>/<job>/<operator uid>/<subtask>`.
    pub state_backend: StateBackend,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            name: "weir-job".into(),
            parallelism: 1,
            max_parallelism: 128,
            batch_size: 1024,
            linger: Duration::from_millis(5),
            channel_capacity: 8,
            watermark_interval: Duration::from_millis(50),
            checkpointing: false,
            checkpoint_timeout: None,
            restore: None,
            state_backend: StateBackend::Heap,
        }
    }
}

/// Counters of one operator subtask.
#[derive(Clone, Debug)]
pub struct SubtaskMetrics {
    /// The operator's name.
    pub operator: String,
    /// The operator's uid.
    pub uid: String,
    /// The subtask index.
    pub subtask: usize,
    /// Records received (sources: emitted).
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Records too late for their window.
    pub late_records: u64,
    /// The operator's vertex in [`GraphView::vertices`].
    pub vertex: usize,
    /// Milliseconds spent waiting for room in a full channel downstream, since start.
    pub backpressure_ms: u64,
    /// The last watermark the operator passed on (ms since the epoch; `i64::MAX` once
    /// its input ended), `None` before the first.
    pub watermark_ms: Option<i64>,
    /// Operator-specific readings (Kafka lag per partition, …).
    pub gauges: Vec<Gauge>,
}

/// The shape of a running job: its operators and the edges between them, for
/// display (`weir serve`'s graph) and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphView {
    /// Operators, in the order they were added; `VertexView::id` is the index.
    pub vertices: Vec<VertexView>,
    /// Data edges.
    pub edges: Vec<EdgeView>,
}

/// One operator of a [`GraphView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VertexView {
    /// Index in [`GraphView::vertices`].
    pub id: usize,
    /// The operator's name.
    pub name: String,
    /// Its uid (explicit or derived from its position).
    pub uid: String,
    /// Its parallelism.
    pub parallelism: usize,
    /// Source, operator or sink.
    pub role: VertexRole,
    /// The task (chain of operators in one thread per subtask) it runs in.
    pub task: String,
}

/// What a vertex does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VertexRole {
    /// Reads input.
    Source,
    /// Transforms records.
    Operator,
    /// Writes output.
    Sink,
}

impl VertexRole {
    /// `source`, `operator` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Operator => "operator",
            Self::Sink => "sink",
        }
    }
}

/// One edge of a [`GraphView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeView {
    /// Upstream vertex id.
    pub from: usize,
    /// Downstream vertex id.
    pub to: usize,
    /// `forward`, `hash`, `rebalance` or `broadcast`.
    pub kind: &'static str,
    /// Whether both ends run in the same thread (no channel in between).
    pub chained: bool,
}

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

struct RunningTask {
    name: String,
    task: String,
    subtask: usize,
    is_source: bool,
    control: Sender<TaskCommand>,
    thread: JoinHandle<Result<()>>,
}

/// A running job.
pub struct JobHandle {
    tasks: Vec<RunningTask>,
    events: Receiver<JobEvent>,
    failures: Receiver<String>,
    metrics: MetricsView,
    graph: Arc<GraphView>,
    started: Instant,
}

/// The live counters of one operator subtask, with its identity.
struct CounterEntry {
    operator: String,
    uid: String,
    vertex: usize,
    subtask: usize,
    metrics: Arc<OperatorMetrics>,
}

/// A cloneable, thread-safe view of a running job's counters.
#[derive(Clone)]
pub struct MetricsView {
    subtasks: Arc<Vec<CounterEntry>>,
}

impl MetricsView {
    /// The current counters of every operator subtask.
    pub fn snapshot(&self) -> Vec<SubtaskMetrics> {
        self.subtasks
            .iter()
            .map(|entry| {
                let m = &entry.metrics;
                let watermark = m.watermark.load(Ordering::Relaxed);
                SubtaskMetrics {
                    operator: entry.operator.clone(),
                    uid: entry.uid.clone(),
                    subtask: entry.subtask,
                    records_in: m.records_in.load(Ordering::Relaxed),
                    records_out: m.records_out.load(Ordering::Relaxed),
                    late_records: m.late_records.load(Ordering::Relaxed),
                    vertex: entry.vertex,
                    backpressure_ms: m.backpressure_ns.load(Ordering::Relaxed) / 1_000_000,
                    watermark_ms: (watermark != i64::MIN).then_some(watermark),
                    gauges: m.gauges(),
                }
            })
            .collect()
    }
}

impl JobBuilder {
    /// Validates the graph and starts the job.
    ///
    /// # Errors
    /// [`DataflowError::InvalidJob`] naming the operator and value for every invalid
    /// setting (all of them, joined), before any task starts.
    pub fn spawn(self) -> Result<JobHandle> {
        // Streams still held by the caller keep the (now empty) graph alive; they can no
        // longer change this job.
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        spawn(graph, self.config)
    }

    /// Runs the job to completion (bounded sources) and returns its metrics.
    ///
    /// # Errors
    /// Invalid settings (see [`JobBuilder::spawn`]) or the first task failure.
    pub fn execute(self) -> Result<JobResult> {
        self.spawn()?.wait()
    }
}

fn validate(graph: &GraphSpec, config: &JobConfig) -> Result<(MaxParallelism, Vec<usize>)> {
    let mut errors: Vec<String> = graph.errors.iter().map(|e| e.to_string()).collect();
    let max = match MaxParallelism::new(config.max_parallelism) {
        Ok(max) => max,
        Err(e) => {
            errors.push(format!("job `{}`: {e}", config.name));
            MaxParallelism::DEFAULT
        }
    };
    if config.batch_size == 0 {
        errors.push(format!(
            "job `{}`: batch size must be at least 1",
            config.name
        ));
    }
    if config.channel_capacity == 0 {
        errors.push(format!(
            "job `{}`: channel capacity must be at least 1",
            config.name
        ));
    }
    let mut parallelism = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let p = node.parallelism.unwrap_or(config.parallelism);
        if p == 0 {
            errors.push(format!(
                "invalid job: operator `{}`: parallelism must be at least 1, got 0",
                node.name
            ));
        } else if p > max.get() {
            errors.push(format!(
                "invalid job: operator `{}`: parallelism {p} exceeds the max parallelism {}",
                node.name,
                max.get()
            ));
        }
        parallelism.push(p.max(1));
    }
    let mut uids = BTreeMap::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        if let Some(uid) = &node.uid {
            if let Some(other) = uids.insert(uid.clone(), index) {
                errors.push(format!(
                    "invalid job: operator `{}`: uid `{uid}` is already used by operator `{}`",
                    node.name, graph.nodes[other].name
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok((max, parallelism))
    } else {
        Err(DataflowError::invalid(
            config.name.clone(),
            errors.join("; "),
        ))
    }
}

/// The gauges of a subtask's RocksDB instance (`backend="rocksdb"`).
fn state_gauges(stats: &weir_state::BackendStats) -> Vec<Gauge> {
    [
        ("state_gets_total", stats.gets),
        ("state_puts_total", stats.puts),
        ("state_deletes_total", stats.deletes),
        ("state_read_bytes_total", stats.bytes_read),
        ("state_written_bytes_total", stats.bytes_written),
        ("state_live_data_bytes", stats.live_data_bytes),
        ("state_sst_files", stats.sst_files),
        ("state_sst_bytes", stats.sst_bytes),
        ("state_local_disk_bytes", stats.disk_bytes),
    ]
    .into_iter()
    .map(|(name, value)| Gauge::new(name, value as f64).label("backend", "rocksdb"))
    .collect()
}

fn context(
    graph: &GraphSpec,
    node: usize,
    index: usize,
    parallelism: usize,
    max: MaxParallelism,
    config: &JobConfig,
    shared_backend: &SharedBackend,
) -> Result<OperatorContext> {
    let uid = graph.uid_of(node);
    let key_groups = KeyGroupRange::for_subtask(max, parallelism, index);
    let backend = shared_backend.subtask(
        [
            path_segment(&config.name),
            path_segment(&uid),
            index.to_string(),
        ],
        max,
        key_groups,
    );
    let opened = config
        .restore
        .as_ref()
        .and_then(|r| r.opened.get(&uid))
        .and_then(|subtasks| subtasks.get(&index))
        .filter(|_| backend.is_rocksdb());
    let state_backend = match opened {
        None => backend,
        Some(opened) => match backend.restoring(opened.instance.clone()) {
            (backend, true) => backend,
            (_, false) => {
                return Err(DataflowError::invalid(
                    config.name.clone(),
                    format!(
                        "subtask {index} of `{uid}` owns key groups {}..={}: it cannot open the native RocksDB checkpoint of key groups {}..={} at {}",
                        key_groups.start,
                        key_groups.end,
                        opened.instance.key_groups.start,
                        opened.instance.key_groups.end,
                        opened.instance.dir.display()
                    ),
                ))
            }
        },
    };
    let mut cx = OperatorContext::fresh(SubtaskInfo {
        operator: graph.nodes[node].name.clone(),
        uid: uid.clone(),
        index,
        parallelism,
        max_parallelism: max,
        key_groups,
    });
    cx.state_backend = state_backend;
    cx.checkpointing = config.checkpointing;
    cx.job.clone_from(&config.name);
    cx.checkpoint_timeout = config.checkpoint_timeout;
    if let Some(restore) = config.restore.as_ref().and_then(|r| r.operators.get(&uid)) {
        for previous in restore {
            for (group, states) in &previous.keyed {
                if key_groups.contains(weir_state::KeyGroup::new(*group)) {
                    cx.restored_keyed.insert(*group, states.clone());
                }
            }
        }
        if restore.len() == parallelism {
            cx.restored_operator = restore[index].operator.clone();
        } else {
            cx.restored_operator_all = restore.iter().map(|s| s.operator.clone()).collect();
        }
    }
    Ok(cx)
}

struct Wiring<'a> {
    graph: &'a GraphSpec,
    config: &'a JobConfig,
    shared_backend: SharedBackend,
    max: MaxParallelism,
    parallelism: &'a [usize],
    chained: Vec<Vec<bool>>,
    consumers: Vec<Vec<(usize, usize)>>,
    writers: BTreeMap<(usize, usize), Vec<Option<Erased>>>,
    readers: BTreeMap<(usize, usize), Vec<Option<Erased>>>,
    /// The counters of every subtask of every node, made before the channels so the
    /// exchange writers can count backpressure into them.
    counters: Vec<Vec<Arc<OperatorMetrics>>>,
    metrics: Vec<CounterEntry>,
}

impl Wiring<'_> {
    fn take(
        map: &mut BTreeMap<(usize, usize), Vec<Option<Erased>>>,
        key: (usize, usize),
        index: usize,
    ) -> Result<Erased> {
        map.get_mut(&key)
            .and_then(|v| v.get_mut(index))
            .and_then(Option::take)
            .ok_or_else(|| {
                DataflowError::invalid("job", "internal wiring error: a channel end is missing")
            })
    }

    /// The context of `node`'s subtask `index`, its counters registered.
    fn context(&mut self, node: usize, index: usize) -> Result<OperatorContext> {
        let mut cx = context(
            self.graph,
            node,
            index,
            self.parallelism[node],
            self.max,
            self.config,
            &self.shared_backend,
        )?;
        cx.metrics = self.counters[node][index].clone();
        if let Some(probe) = cx.state_backend.stats_probe() {
            cx.metrics.register_gauges(move || {
                probe
                    .read()
                    .map_or_else(Vec::new, |stats| state_gauges(&stats))
            });
        }
        self.metrics.push(CounterEntry {
            operator: self.graph.nodes[node].name.clone(),
            uid: cx.subtask.uid.clone(),
            vertex: node,
            subtask: index,
            metrics: cx.metrics.clone(),
        });
        Ok(cx)
    }

    /// The stage of `node` at subtask `index`, with everything chained after it.
    fn stage(&mut self, node: usize, index: usize) -> Result<Erased> {
        let mut branches = Vec::new();
        for (consumer, edge) in self.consumers[node].clone() {
            if self.chained[consumer][edge] {
                branches.push(self.stage(consumer, index)?);
            } else {
                branches.push(Self::take(&mut self.writers, (consumer, edge), index)?);
            }
        }
        let spec = &self.graph.nodes[node];
        let next = match (&spec.output, branches.len()) {
            (Some(_), 1) => branches.pop(),
            (Some(output), _) => Some(output.tee(branches)?),
            (None, _) => None,
        };
        let cx = self.context(node, index)?;
        match (&spec.kind, next) {
            (NodeKind::Operator(build), Some(next)) => build.build(cx, next),
            (NodeKind::Sink(build), None) => build.build(cx),
            _ => Err(DataflowError::invalid(
                &spec.name,
                "internal wiring error: bad node kind",
            )),
        }
    }

    fn head(&mut self, root: usize, index: usize) -> Result<Box<dyn TaskHead>> {
        let spec = &self.graph.nodes[root];
        if let NodeKind::Source(build) = &spec.kind {
            let mut branches = Vec::new();
            for (consumer, edge) in self.consumers[root].clone() {
                if self.chained[consumer][edge] {
                    branches.push(self.stage(consumer, index)?);
                } else {
                    branches.push(Self::take(&mut self.writers, (consumer, edge), index)?);
                }
            }
            let output = spec
                .output
                .as_ref()
                .ok_or_else(|| DataflowError::invalid(&spec.name, "source without output"))?;
            let next = if branches.len() == 1 {
                branches
                    .pop()
                    .ok_or_else(|| DataflowError::invalid(&spec.name, "internal wiring error"))?
            } else {
                output.tee(branches)?
            };
            let cx = self.context(root, index)?;
            return build.build(cx, next, self.config.batch_size);
        }
        let stage = self.stage(root, index)?;
        let mut readers = Vec::new();
        for edge in 0..spec.inputs.len() {
            readers.push(Self::take(&mut self.readers, (root, edge), index)?);
        }
        let input = spec
            .input
            .as_ref()
            .ok_or_else(|| DataflowError::invalid(&spec.name, "operator without input type"))?;
        input.gate(readers, stage)
    }

    fn task_name(&self, root: usize) -> String {
        let mut names = vec![self.graph.nodes[root].name.clone()];
        let mut current = root;
        loop {
            let chained: Vec<usize> = self.consumers[current]
                .iter()
                .filter(|(c, e)| self.chained[*c][*e])
                .map(|(c, _)| *c)
                .collect();
            match chained.as_slice() {
                [single] => {
                    names.push(self.graph.nodes[*single].name.clone());
                    current = *single;
                }
                [] => break,
                many => {
                    names.push(format!("[{} branches]", many.len()));
                    break;
                }
            }
        }
        names.join(" -> ")
    }
}

fn spawn(graph: GraphSpec, config: JobConfig) -> Result<JobHandle> {
    let (max, parallelism) = validate(&graph, &config)?;
    if let Some(restore) = &config.restore {
        if restore.max_parallelism != 0 && restore.max_parallelism != max.get() {
            return Err(DataflowError::invalid(
                config.name.clone(),
                format!(
                    "the state to restore was written with max parallelism {}, the job has {}",
                    restore.max_parallelism,
                    max.get()
                ),
            ));
        }
    }
    let n = graph.nodes.len();
    let mut consumers = vec![Vec::new(); n];
    let mut chained = Vec::with_capacity(n);
    for (index, node) in graph.nodes.iter().enumerate() {
        let single = node.inputs.len() == 1;
        chained.push(
            node.inputs
                .iter()
                .map(|e| single && e.kind.chainable() && parallelism[e.from] == parallelism[index])
                .collect::<Vec<bool>>(),
        );
        for (edge_index, edge) in node.inputs.iter().enumerate() {
            consumers[edge.from].push((index, edge_index));
        }
    }
    let settings = WireSettings {
        batch_size: config.batch_size,
        linger: config.linger,
        channel_capacity: config.channel_capacity,
        max_parallelism: max,
    };
    let shared_backend = config
        .state_backend
        .open_shared()
        .map_err(|e| DataflowError::invalid(config.name.clone(), e.to_string()))?;
    let mut wiring = Wiring {
        graph: &graph,
        config: &config,
        shared_backend,
        max,
        parallelism: &parallelism,
        chained,
        consumers,
        writers: BTreeMap::new(),
        readers: BTreeMap::new(),
        counters: parallelism
            .iter()
            .map(|&p| (0..p).map(|_| Arc::default()).collect())
            .collect(),
        metrics: Vec::new(),
    };
    for (index, node) in graph.nodes.iter().enumerate() {
        for (edge_index, edge) in node.inputs.iter().enumerate() {
            if !wiring.chained[index][edge_index] {
                let task = graph.nodes[edge.from].name.clone();
                let (writers, readers) = edge.build.channels(
                    parallelism[edge.from],
                    parallelism[index],
                    &settings,
                    &task,
                    &wiring.counters[edge.from],
                );
                wiring
                    .writers
                    .insert((index, edge_index), writers.into_iter().map(Some).collect());
                wiring
                    .readers
                    .insert((index, edge_index), readers.into_iter().map(Some).collect());
            }
        }
    }
    let roots: Vec<usize> = (0..n)
        .filter(|&i| graph.nodes[i].inputs.is_empty() || !wiring.chained[i].iter().any(|&c| c))
        .collect();
    let mut heads = Vec::new();
    for &root in &roots {
        let name = wiring.task_name(root);
        for index in 0..parallelism[root] {
            let head = wiring.head(root, index)?;
            let is_source = matches!(graph.nodes[root].kind, NodeKind::Source(_));
            heads.push((name.clone(), index, parallelism[root], is_source, head));
        }
    }
    let metrics = std::mem::take(&mut wiring.metrics);
    let graph_view = Arc::new(graph_view(&graph, &parallelism, &wiring));
    let (events_tx, events) = unbounded();
    let (failures_tx, failures) = unbounded();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for (name, index, p, is_source, head) in heads {
        let (control_tx, control) = unbounded();
        let env = TaskEnv {
            name: name.clone(),
            subtask: index,
            control,
            events: events_tx.clone(),
            tick: Duration::from_millis(1),
            watermark_interval: config.watermark_interval,
            final_checkpoint: config.checkpointing,
        };
        let failures_tx = failures_tx.clone();
        let thread_name = format!("{} ({}/{})", name, index + 1, p);
        let task_name = thread_name.clone();
        let thread = std::thread::Builder::new()
            .name(truncate(&thread_name, 60))
            .spawn(move || {
                let result =
                    catch_unwind(AssertUnwindSafe(|| head.run(env))).unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        Err(DataflowError::TaskFailed {
                            task: task_name.clone(),
                            message: format!("panicked: {message}"),
                        })
                    });
                if result.is_err() {
                    let _ = failures_tx.send(task_name);
                }
                result
            })
            .map_err(|e| DataflowError::TaskFailed {
                task: thread_name.clone(),
                message: format!("could not start a thread: {e}"),
            })?;
        tasks.push(RunningTask {
            name: thread_name,
            task: name.clone(),
            subtask: index,
            is_source,
            control: control_tx,
            thread,
        });
    }
    Ok(JobHandle {
        tasks,
        events,
        failures,
        metrics: MetricsView {
            subtasks: Arc::new(metrics),
        },
        graph: graph_view,
        started,
    })
}

fn graph_view(graph: &GraphSpec, parallelism: &[usize], wiring: &Wiring<'_>) -> GraphView {
    let mut task_of = vec![String::new(); graph.nodes.len()];
    let mut view = GraphView::default();
    for (id, node) in graph.nodes.iter().enumerate() {
        // The task is named after the root of the chain the node belongs to.
        let mut root = id;
        while let [edge] = graph.nodes[root].inputs.as_slice() {
            if !wiring.chained[root][0] {
                break;
            }
            root = edge.from;
        }
        if task_of[root].is_empty() {
            task_of[root] = wiring.task_name(root);
        }
        view.vertices.push(VertexView {
            id,
            name: node.name.clone(),
            uid: graph.uid_of(id),
            parallelism: parallelism[id],
            role: match node.kind {
                NodeKind::Source(_) => VertexRole::Source,
                NodeKind::Operator(_) => VertexRole::Operator,
                NodeKind::Sink(_) => VertexRole::Sink,
            },
            task: task_of[root].clone(),
        });
        for (index, edge) in node.inputs.iter().enumerate() {
            view.edges.push(EdgeView {
                from: edge.from,
                to: id,
                kind: match edge.kind {
                    crate::EdgeKind::Forward => "forward",
                    crate::EdgeKind::Hash => "hash",
                    crate::EdgeKind::Rebalance => "rebalance",
                    crate::EdgeKind::Broadcast => "broadcast",
                },
                chained: wiring.chained[id][index],
            });
        }
    }
    view
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

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
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
        also: &std::collections::BTreeSet<(String, usize)>,
    ) {
        for task in &self.tasks {
            if task.is_source || also.contains(&(task.task.clone(), task.subtask)) {
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

    /// Every subtask, as `(task name, subtask index)` (the identity in acknowledgements).
    pub fn subtasks(&self) -> Vec<(String, usize)> {
        self.tasks
            .iter()
            .map(|t| (t.task.clone(), t.subtask))
            .collect()
    }

    /// The source subtasks, as `(task name, subtask index)`.
    pub fn source_subtasks(&self) -> Vec<(String, usize)> {
        self.tasks
            .iter()
            .filter(|t| t.is_source)
            .map(|t| (t.task.clone(), t.subtask))
            .collect()
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
        self.cancel();
        let metrics = self.metrics();
        let elapsed = self.started.elapsed();
        match join_tasks(self.tasks, false) {
            Some(e) => Err(e),
            None => Ok(JobResult {
                elapsed,
                metrics,
                acks: Vec::new(),
            }),
        }
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
                Ok(JobEvent::BarrierDeclined { .. } | JobEvent::AwaitingFinalCheckpoint { .. }) => {
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if failed {
            self.cancel();
        }
        let metrics = self.metrics();
        let elapsed = self.started.elapsed();
        let first_error = join_tasks(self.tasks, true);
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

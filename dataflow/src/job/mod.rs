//! Expanding a job graph into tasks and running them: one OS thread per subtask of
//! each chain, bounded channels between them.
//!
//! [`JobBuilder::spawn`] checks the settings (`validate.rs`), wires the graph into
//! tasks and the channels between them (`wiring.rs`; each subtask's context, with the
//! state restored into it, in `subtask_context.rs`), starts one thread per subtask and
//! returns a [`JobHandle`] (`handle.rs`). `config.rs` holds the job's settings;
//! `view.rs` and `metrics_view.rs` describe the running job.

mod config;
mod handle;
mod metrics_view;
mod subtask_context;
mod validate;
mod view;
mod wiring;

pub use config::JobConfig;
pub use handle::{JobHandle, JobResult};
pub use metrics_view::{MetricsView, SubtaskMetrics};
pub use view::{EdgeView, GraphView, VertexRole, VertexView};

use crate::graph::{EdgeWire, GraphSpec, NodeKind, WireSettings};
use crate::stream::JobBuilder;
use crate::task::TaskEnv;
use crate::{DataflowError, Result};
use crossbeam_channel::unbounded;
use handle::RunningTask;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};
use validate::validate;
use view::graph_view;
use weir_checkpoint::SubtaskId;
use wiring::Wiring;

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
    if let Some(placement) = &config.placement {
        placement.connect()?;
    }
    let bridges = Arc::new(crate::wire::Bridges::default());
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
        routes: Arc::default(),
    };
    for (index, node) in graph.nodes.iter().enumerate() {
        for (edge_index, edge) in node.inputs.iter().enumerate() {
            if !wiring.chained[index][edge_index] {
                let task = graph.nodes[edge.from].name.clone();
                let settings = match graph.nodes[edge.from].records_per_message {
                    Some(batch_size) => WireSettings {
                        batch_size,
                        ..settings.clone()
                    },
                    None => settings.clone(),
                };
                let name = format!("`{}` -> `{}`", task, node.name);
                let wire = EdgeWire {
                    placement: config.placement.as_ref(),
                    codecs: &graph.codecs,
                    edge: (index, edge_index),
                    name: &name,
                    bridges: &bridges,
                };
                let (writers, readers) = edge.build.channels(
                    parallelism[edge.from],
                    parallelism[index],
                    &settings,
                    &task,
                    &wiring.counters[edge.from],
                    &wire,
                )?;
                wiring.writers.insert((index, edge_index), writers);
                wiring.readers.insert((index, edge_index), readers);
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
            if config
                .placement
                .as_ref()
                .is_some_and(|p| !p.is_local(index))
            {
                continue;
            }
            let head = wiring.head(root, index)?;
            let is_source = matches!(graph.nodes[root].kind, NodeKind::Source(_));
            let id = SubtaskId::new(root, index);
            let members = wiring.members(root);
            heads.push((
                id,
                name.clone(),
                index,
                parallelism[root],
                is_source,
                head,
                members,
            ));
        }
    }
    let metrics = std::mem::take(&mut wiring.metrics);
    let graph_view = Arc::new(graph_view(&graph, &parallelism, &wiring));
    let (events_tx, events) = unbounded();
    let (failures_tx, failures) = unbounded();
    let mut tasks = Vec::new();
    let started = Instant::now();
    let mut targets = crate::query::Targets::new();
    for (id, name, index, p, is_source, head, members) in heads {
        let (control_tx, control) = unbounded();
        for member in members {
            targets
                .entry(graph.uid_of(member))
                .or_default()
                .push(crate::query::QueryTarget {
                    index,
                    parallelism: parallelism[member],
                    control: control_tx.clone(),
                });
        }
        let env = TaskEnv {
            name: name.clone(),
            subtask: index,
            control,
            events: events_tx.clone(),
            tick: Duration::from_millis(1),
            watermark_interval: config.watermark_interval,
            id,
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
            id,
            name: thread_name,
            is_source,
            control: control_tx,
            thread,
        });
    }
    Ok(JobHandle {
        query: crate::query::PortGuard(crate::query::QueryPort::new(
            max,
            wiring.routes.clone(),
            targets,
        )),
        tasks,
        events,
        failures,
        metrics: MetricsView {
            subtasks: Arc::new(metrics),
        },
        graph: graph_view,
        started,
        placement: config.placement.clone().map(|p| (p, bridges)),
    })
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

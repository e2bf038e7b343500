//! Wiring a job graph into tasks: the channels between tasks, and for each task's
//! subtask its head (source or input gate) with the chain of stages behind it.

use super::metrics_view::{state_gauges, CounterEntry};
use super::subtask_context;
use super::JobConfig;
use crate::graph::{Erased, GraphSpec, NodeKind};
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorContext;
use crate::task::TaskHead;
use crate::{DataflowError, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_state::{MaxParallelism, SharedBackend};

pub(super) struct Wiring<'a> {
    pub(super) graph: &'a GraphSpec,
    pub(super) config: &'a JobConfig,
    pub(super) shared_backend: SharedBackend,
    pub(super) max: MaxParallelism,
    pub(super) parallelism: &'a [usize],
    pub(super) chained: Vec<Vec<bool>>,
    pub(super) consumers: Vec<Vec<(usize, usize)>>,
    pub(super) writers: BTreeMap<(usize, usize), Vec<Option<Erased>>>,
    pub(super) readers: BTreeMap<(usize, usize), Vec<Option<Erased>>>,
    /// The counters of every subtask of every node, made before the channels so the
    /// exchange writers can count backpressure into them.
    pub(super) counters: Vec<Vec<Arc<OperatorMetrics>>>,
    pub(super) metrics: Vec<CounterEntry>,
    /// The routers of the job's queryable states.
    pub(super) routes: Arc<crate::query::Routes>,
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
        let mut cx = subtask_context::context(
            self.graph,
            node,
            index,
            self.parallelism[node],
            self.max,
            self.config,
            &self.shared_backend,
        )?;
        cx.metrics = self.counters[node][index].clone();
        cx.routes = Some(self.routes.clone());
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

    pub(super) fn head(&mut self, root: usize, index: usize) -> Result<Box<dyn TaskHead>> {
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

    /// The nodes of the chain that starts at `root`, `root` first.
    pub(super) fn members(&self, root: usize) -> Vec<usize> {
        let mut members = vec![root];
        let mut i = 0;
        while let Some(&current) = members.get(i) {
            members.extend(
                self.consumers[current]
                    .iter()
                    .filter(|(c, e)| self.chained[*c][*e])
                    .map(|(c, _)| *c),
            );
            i += 1;
        }
        members
    }

    pub(super) fn task_name(&self, root: usize) -> String {
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

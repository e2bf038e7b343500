//! Checking a job's settings before any task starts: every invalid one is reported,
//! naming the operator and value.

use super::JobConfig;
use crate::graph::GraphSpec;
use crate::{DataflowError, Result};
use std::collections::BTreeMap;
use weir_state::MaxParallelism;

pub(super) fn validate(
    graph: &GraphSpec,
    config: &JobConfig,
) -> Result<(MaxParallelism, Vec<usize>)> {
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
    if let Some(placement) = &config.placement {
        errors.extend(placement.check(&config.name));
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

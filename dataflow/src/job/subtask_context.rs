//! The [`OperatorContext`] of one operator subtask: its key groups, its state
//! backend (a native RocksDB checkpoint to open, if any) and the state restored into it.

use super::JobConfig;
use crate::graph::GraphSpec;
use crate::operator::{OperatorContext, SubtaskInfo};
use crate::{DataflowError, Result};
use weir_checkpoint::layout::path_segment;
use weir_state::{KeyGroupRange, MaxParallelism, SharedBackend};

pub(super) fn context(
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
    cx.row_counts = graph.row_counts.clone();
    cx.checkpointing = config.checkpointing;
    cx.job.clone_from(&config.name);
    cx.checkpoint_timeout = config.checkpoint_timeout;
    cx.timeline = config.timeline;
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
        // State checkpointed once: the one subtask that wrote it.
        let prefix = crate::operator::ONCE_PREFIX;
        for previous in restore {
            let once: std::collections::BTreeMap<String, Vec<u8>> = previous
                .operator
                .iter()
                .filter_map(|(name, bytes)| {
                    let name = name.strip_prefix(prefix)?;
                    Some((name.to_string(), bytes.clone()))
                })
                .collect();
            if !once.is_empty() {
                cx.restored_once = once;
                break;
            }
        }
    }
    Ok(cx)
}

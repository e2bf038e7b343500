//! What one subtask hands over for one checkpoint.

use crate::CheckpointId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The stable identity of an operator across job versions: the key under which its
/// state is stored in checkpoints and savepoints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OperatorUid(Arc<str>);

impl OperatorUid {
    /// Wraps a uid.
    pub fn new(uid: impl Into<Arc<str>>) -> Self {
        Self(uid.into())
    }

    /// The uid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One subtask of a running job: its task (the chain, by the index of the chain's
/// first operator in the job graph, unique in a job even where operator names repeat)
/// and its index among the task's subtasks. Names are for people; this is what the
/// protocol counts acknowledgements and finished subtasks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubtaskId {
    /// The task: the job-graph index of the chain's first operator.
    pub task: u32,
    /// The subtask's index, `0..parallelism`.
    pub index: u32,
}

impl SubtaskId {
    /// Subtask `index` of task `task`.
    pub fn new(task: usize, index: usize) -> Self {
        Self {
            task: task as u32,
            index: index as u32,
        }
    }
}

impl fmt::Display for SubtaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} subtask {}", self.task, self.index)
    }
}

/// The state one operator of one subtask captured for one checkpoint.
///
/// Keyed state is partitioned by key group (so it can be redistributed when the
/// parallelism changes); operator state (source positions, sink epochs) belongs to the
/// subtask as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Encoded keyed state, per key group, per named state.
    pub keyed: BTreeMap<u16, BTreeMap<String, Vec<u8>>>,
    /// Encoded operator (non-keyed) state, per named state.
    pub operator: BTreeMap<String, Vec<u8>>,
}

impl OperatorSnapshot {
    /// Whether the operator captured nothing.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty() && self.operator.is_empty()
    }

    /// Total encoded size in bytes.
    pub fn size_bytes(&self) -> usize {
        let keyed: usize = self
            .keyed
            .values()
            .flat_map(|states| states.values())
            .map(Vec::len)
            .sum();
        keyed + self.operator.values().map(Vec::len).sum::<usize>()
    }
}

/// A subtask's acknowledgement of a checkpoint: every operator of its chain, by uid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskAck {
    /// The checkpoint acknowledged.
    pub checkpoint: CheckpointId,
    /// The subtask that acknowledged.
    pub id: SubtaskId,
    /// The task (chain) name, for reporting.
    pub task: String,
    /// The subtask index.
    pub subtask: usize,
    /// The snapshots of the operators of the chain, by uid.
    pub operators: BTreeMap<OperatorUid, OperatorSnapshot>,
    /// Time spent aligning barriers, in microseconds.
    pub alignment_us: u64,
    /// Time spent in the synchronous part of the snapshot, in microseconds.
    pub sync_us: u64,
}

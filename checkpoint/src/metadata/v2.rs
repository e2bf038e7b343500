//! The metadata types of format version 2, decoded and converted.

use super::*;

#[derive(Deserialize)]
pub(super) struct SubtaskState {
    keyed: Vec<KeyedStateHandle>,
    operator: Vec<StateHandle>,
}

#[derive(Deserialize)]
pub(super) struct OperatorState {
    parallelism: usize,
    subtasks: BTreeMap<usize, SubtaskState>,
}

#[derive(Deserialize)]
pub(super) struct CheckpointMetadata {
    job: String,
    checkpoint: CheckpointId,
    kind: SnapshotKind,
    timestamp_ms: i64,
    max_parallelism: MaxParallelism,
    operators: BTreeMap<OperatorUid, OperatorState>,
    properties: BTreeMap<String, Vec<u8>>,
}

impl From<CheckpointMetadata> for super::CheckpointMetadata {
    fn from(m: CheckpointMetadata) -> Self {
        Self {
            job: m.job,
            checkpoint: m.checkpoint,
            kind: m.kind,
            timestamp_ms: m.timestamp_ms,
            max_parallelism: m.max_parallelism,
            operators: m
                .operators
                .into_iter()
                .map(|(uid, op)| {
                    let subtasks = op
                        .subtasks
                        .into_iter()
                        .map(|(i, st)| {
                            let state = super::SubtaskState {
                                keyed: st.keyed,
                                operator: st.operator,
                                native: Vec::new(),
                            };
                            (i, state)
                        })
                        .collect();
                    let state = super::OperatorState {
                        parallelism: op.parallelism,
                        subtasks,
                    };
                    (uid, state)
                })
                .collect(),
            properties: m.properties,
        }
    }
}

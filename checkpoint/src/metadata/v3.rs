//! The metadata types of format version 3, decoded and converted: native tables
//! without entry counts.

use super::*;

#[derive(Deserialize)]
struct NativeTable {
    state: String,
    column_family: String,
    namespace: Vec<u8>,
    header: Vec<u8>,
}

#[derive(Deserialize)]
struct NativeKeyedHandle {
    key_groups: KeyGroupRange,
    files: Vec<NativeFile>,
    tables: Vec<NativeTable>,
}

#[derive(Deserialize)]
struct SubtaskState {
    keyed: Vec<KeyedStateHandle>,
    operator: Vec<StateHandle>,
    native: Vec<NativeKeyedHandle>,
}

#[derive(Deserialize)]
struct OperatorState {
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

impl From<NativeKeyedHandle> for super::NativeKeyedHandle {
    fn from(h: NativeKeyedHandle) -> Self {
        Self {
            key_groups: h.key_groups,
            files: h.files,
            tables: h
                .tables
                .into_iter()
                .map(|t| weir_state::NativeTable {
                    state: t.state,
                    column_family: t.column_family,
                    namespace: t.namespace,
                    header: t.header,
                    entries: Vec::new(),
                })
                .collect(),
        }
    }
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
                                native: st.native.into_iter().map(Into::into).collect(),
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

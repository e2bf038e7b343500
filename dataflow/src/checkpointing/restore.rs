//! Reading a checkpoint or savepoint back into a [`RestoreState`].

use super::{JobListener, RestoreEvent};
use crate::RestoreState;
use bytes_compat::read_handle;
use std::collections::BTreeMap;
use thiserror::Error;
use weir_checkpoint::metadata::CheckpointMetadata;
use weir_checkpoint::{CheckpointError, OperatorSnapshot};
use weir_state::StateError;

/// Why a checkpoint could not be restored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Storage failed or the state is missing or corrupt.
    #[error(transparent)]
    Storage(#[from] CheckpointError),
    /// A state object did not decode.
    #[error("state object `{object}` is corrupt: {source}")]
    Corrupt {
        /// The object.
        object: String,
        /// The decoder's report.
        #[source]
        source: StateError,
    },
}

/// Keyed state of one operator subtask as stored: per key group, per state name.
pub(crate) type KeyedBlob = BTreeMap<u16, BTreeMap<String, Vec<u8>>>;
/// Operator state of one operator subtask as stored: per state name.
pub(crate) type OperatorBlob = BTreeMap<String, Vec<u8>>;

mod bytes_compat {
    use weir_checkpoint::metadata::StateHandle;
    use weir_checkpoint::{CheckpointError, CheckpointStorage, Savepoint};

    /// Where state objects are read from.
    pub(crate) enum Reader<'a> {
        Checkpoint(&'a CheckpointStorage),
        Savepoint(&'a Savepoint),
    }

    pub(crate) async fn read_handle(
        reader: &Reader<'_>,
        handle: &StateHandle,
    ) -> Result<Vec<u8>, CheckpointError> {
        let bytes = match reader {
            Reader::Checkpoint(storage) => storage.read(handle).await?,
            Reader::Savepoint(savepoint) => savepoint.read(handle).await?,
        };
        Ok(bytes.to_vec())
    }
}

pub(crate) use bytes_compat::Reader;

/// Reads every state object `metadata` refers to, reporting progress to `listener`.
///
/// # Errors
/// [`RestoreError`] naming the object that is missing or corrupt.
///
/// # Cancel safety
/// Cancel-safe: it only reads.
pub(crate) async fn load_checkpoint(
    reader: &Reader<'_>,
    metadata: &CheckpointMetadata,
    listener: &dyn JobListener,
) -> Result<RestoreState, RestoreError> {
    let mut operators = BTreeMap::new();
    let mut total = 0u64;
    for (uid, state) in &metadata.operators {
        let mut snapshots = vec![OperatorSnapshot::default(); state.parallelism];
        for (&subtask, subtask_state) in &state.subtasks {
            if subtask >= snapshots.len() {
                snapshots.resize(subtask + 1, OperatorSnapshot::default());
            }
            let bytes: u64 = subtask_state
                .keyed
                .iter()
                .map(|k| k.handle.size)
                .sum::<u64>()
                + subtask_state.operator.iter().map(|h| h.size).sum::<u64>();
            listener.on_restore(
                &metadata.job,
                &RestoreEvent::Started {
                    uid: uid.to_string(),
                    subtask,
                    key_groups: subtask_state.keyed.first().map(|k| k.key_groups),
                    bytes,
                },
            );
            let snapshot = &mut snapshots[subtask];
            for keyed in &subtask_state.keyed {
                let raw = read_handle(reader, &keyed.handle).await?;
                let blob: KeyedBlob =
                    weir_state::decode(&keyed.handle.path, &raw).map_err(|source| {
                        RestoreError::Corrupt {
                            object: keyed.handle.path.clone(),
                            source,
                        }
                    })?;
                for (group, states) in blob {
                    let target = snapshot.keyed.entry(group).or_default();
                    if keyed.chunks.is_empty() {
                        target.extend(states);
                    } else {
                        // An older file: only the chunks still current belong here.
                        target.extend(
                            states
                                .into_iter()
                                .filter(|(name, _)| keyed.chunks.binary_search(name).is_ok()),
                        );
                    }
                }
                listener.on_restore(
                    &metadata.job,
                    &RestoreEvent::BatchRestored {
                        uid: uid.to_string(),
                        subtask,
                        bytes: keyed.handle.size,
                    },
                );
            }
            for handle in &subtask_state.operator {
                let raw = read_handle(reader, handle).await?;
                let blob: OperatorBlob =
                    weir_state::decode(&handle.path, &raw).map_err(|source| {
                        RestoreError::Corrupt {
                            object: handle.path.clone(),
                            source,
                        }
                    })?;
                snapshot.operator.extend(blob);
                listener.on_restore(
                    &metadata.job,
                    &RestoreEvent::BatchRestored {
                        uid: uid.to_string(),
                        subtask,
                        bytes: handle.size,
                    },
                );
            }
            total += bytes;
        }
        operators.insert(uid.to_string(), snapshots);
    }
    listener.on_restore(
        &metadata.job,
        &RestoreEvent::Finished {
            checkpoint: metadata.checkpoint,
            bytes: total,
        },
    );
    Ok(RestoreState {
        operators,
        max_parallelism: metadata.max_parallelism.get(),
    })
}

//! `weir state read`: the keyed state of one operator in a checkpoint or savepoint,
//! read offline (Flink's State Processor API), as JSON lines.
//!
//! ```text
//!  path ─▶ savepoint, or <root>/<job>/chk-<n> ─▶ metadata
//!       ─▶ load_checkpoint (weir-checkpoint: every subtask's state objects; native
//!          RocksDB checkpoints read back key by key) ─▶ chunks of `state` by key group
//!       ─▶ decoded with the job's types ─▶ one line per key, in the job file's terms
//! ```
//!
//! The snapshot format does not describe its types: a state is decoded with the
//! types of the operator that wrote it. Those of a job file's windows are known
//! here; a typed program's own states are not.

use std::collections::BTreeMap;
use weir_checkpoint::restore::{NativeRestore, Reader};
use weir_checkpoint::{
    load_checkpoint, CheckpointError, CheckpointStorage, RestoreError, StorageConfig,
};
use weir_dataflow::window::Window;
use weir_jobfile::state_view::{StateView, WINDOW_CONTENTS};
use weir_jobfile::{Accumulator, JobPlan, Key};

/// Why a state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateReadError {
    /// Nothing readable at the path, or storage failed.
    #[error(transparent)]
    Storage(#[from] CheckpointError),
    /// A state object is missing or corrupt.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The snapshot has no operator of that uid.
    #[error("the snapshot has no operator with uid `{uid}` (operators: {known})")]
    NoOperator {
        /// The uid asked for.
        uid: String,
        /// Those there are.
        known: String,
    },
    /// The operator has no keyed state of that name.
    #[error("operator `{uid}` has no keyed state `{state}` in the snapshot (its states: {known})")]
    NoState {
        /// The operator.
        uid: String,
        /// The state asked for.
        state: String,
        /// Its states.
        known: String,
    },
    /// The state's types are not known here.
    #[error(
        "keyed state `{0}` cannot be decoded offline: its types are those of the program \
         that wrote it (a job file's window state, `window-contents`, can be)"
    )]
    Undecodable(String),
    /// A chunk did not decode as the state's types.
    #[error("a chunk of `{state}` does not decode as a window's contents: {reason}")]
    Corrupt {
        /// The state.
        state: String,
        /// Why.
        reason: String,
    },
}

/// A temporary directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn known(names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The entries of keyed state `state` of operator `uid` in the savepoint or
/// checkpoint directory `path` (`<root>/<job>/chk-<n>`), one JSON object per key:
/// `{"key", "value"}`, the value listing the key's windows with their
/// accumulators. With the job's `plan`, keys read as the key fields' values and
/// accumulators as the named aggregates; without it, in their serde form.
///
/// # Errors
/// See [`StateReadError`].
///
/// # Cancel safety
/// Cancel-safe: it only reads (temporary copies of native checkpoints go under a
/// directory removed when it ends).
pub async fn read_state(
    path: &str,
    uid: &str,
    state: &str,
    plan: Option<&JobPlan>,
) -> Result<Vec<serde_json::Value>, StateReadError> {
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "weir-state-read-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )));
    let native = NativeRestore {
        local_root: None,
        scratch: scratch.0.clone(),
        new_job: None,
        standby_root: None,
    };
    let ignore = |_: &weir_checkpoint::RestoreEvent| {};
    let restored = match CheckpointStorage::read_savepoint(&StorageConfig::new(path)).await {
        Ok(savepoint) => {
            let metadata = savepoint.metadata().clone();
            load_checkpoint(&Reader::Savepoint(&savepoint), &metadata, &ignore, &native).await?
        }
        Err(savepoint_error) => {
            let Some((root, job, id)) = crate::inspect::checkpoint_dir(path) else {
                return Err(savepoint_error.into());
            };
            let storage = CheckpointStorage::open(&StorageConfig::new(&root)).await?;
            let metadata = storage.read_metadata(&job, id).await?;
            load_checkpoint(&Reader::Checkpoint(&storage), &metadata, &ignore, &native).await?
        }
    };
    let snapshots = restored
        .operators
        .get(uid)
        .ok_or_else(|| StateReadError::NoOperator {
            uid: uid.to_string(),
            known: known(restored.operators.keys().cloned()),
        })?;
    let chunks: Vec<&[u8]> = snapshots
        .iter()
        .flat_map(|s| s.keyed.values())
        .flat_map(|states| states.iter())
        .filter(|(name, _)| weir_state::format::is_chunk_of(name, state))
        .map(|(_, bytes)| bytes.as_slice())
        .collect();
    if chunks.is_empty() {
        let names = snapshots
            .iter()
            .flat_map(|s| s.keyed.values())
            .flat_map(|states| states.keys())
            .map(|name| weir_state::chunk_state(name).to_string())
            .collect::<std::collections::BTreeSet<_>>();
        return Err(StateReadError::NoState {
            uid: uid.to_string(),
            state: state.to_string(),
            known: known(names.into_iter()),
        });
    }
    if state != WINDOW_CONTENTS {
        return Err(StateReadError::Undecodable(state.to_string()));
    }
    let view = plan.and_then(|plan| StateView::of(plan, uid, state));
    // By key (its serde JSON as text): the key and its windows.
    let mut keys: BTreeMap<String, (serde_json::Value, Vec<serde_json::Value>)> = BTreeMap::new();
    for bytes in chunks {
        let (window, entries): (Window, Vec<(Key, Vec<Accumulator>)>) =
            weir_state::decode(state, bytes).map_err(|e| StateReadError::Corrupt {
                state: state.to_string(),
                reason: e.to_string(),
            })?;
        for (key, accumulators) in entries {
            let key = serde_json::to_value(&key).map_err(|e| StateReadError::Corrupt {
                state: state.to_string(),
                reason: e.to_string(),
            })?;
            let windows = &mut keys
                .entry(key.to_string())
                .or_insert_with(|| (key, Vec::new()))
                .1;
            windows.push(serde_json::json!({
                "start": window.start,
                "end": window.end,
                "value": accumulators,
            }));
        }
    }
    Ok(keys
        .into_values()
        .map(|(key, mut windows)| {
            windows.sort_by_key(|w| w["end"].as_i64());
            let windows = serde_json::Value::Array(windows);
            match &view {
                Some(view) => serde_json::json!({
                    "key": view.key_out(&key),
                    "value": view.value_out(&windows),
                }),
                None => serde_json::json!({ "key": key, "value": windows }),
            }
        })
        .collect())
}

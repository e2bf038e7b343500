//! Reading a checkpoint or savepoint back into a [`RestoreState`]: every state
//! object its metadata refers to, keyed state by key group, native RocksDB
//! checkpoints either staged for the subtask that opens them as its instance or read
//! back in the canonical form (see [`crate::native`]).
//!
//! ```text
//!  _metadata ─▶ per operator, per old subtask:
//!      keyed files (whole, or only the chunks still current) ─▶ OperatorSnapshot.keyed
//!      native RocksDB checkpoints ─▶ staged to be opened as they are | read back key by key
//!      operator state files ─▶ OperatorSnapshot.operator
//!  ─▶ RestoreState (operators by uid, instances to open), RestoreEvents along the way
//! ```

use crate::metadata::{CheckpointMetadata, NativeFile, NativeKeyedHandle, StateHandle};
use crate::{CheckpointError, CheckpointId, OperatorSnapshot};
use std::collections::BTreeMap;
use thiserror::Error;
use weir_state::format::chunk_name;
use weir_state::{KeyGroupRange, MaxParallelism, RestoredInstance, StateError};

/// State to restore a job from: the operator snapshots of every subtask of a
/// completed checkpoint or savepoint, by operator uid.
#[derive(Clone, Debug, Default)]
pub struct RestoreState {
    /// For each uid, the snapshots of its previous subtasks (index = old subtask).
    pub operators: BTreeMap<String, Vec<OperatorSnapshot>>,
    /// The max parallelism the state was written with.
    pub max_parallelism: usize,
    /// Keyed state that subtasks on RocksDB open as their instances from native
    /// checkpoints of their own key groups, by uid then subtask; their snapshots in
    /// `operators` hold only the tables' headers ([`weir_state::NativeTable::header_chunk`]).
    pub opened: BTreeMap<String, BTreeMap<usize, OpenedInstance>>,
}

/// A native RocksDB checkpoint a subtask opens as its instance, as it is.
#[derive(Clone, Debug)]
pub struct OpenedInstance {
    /// The checkpoint's files (materialized locally) and tables.
    pub instance: weir_state::RestoredInstance,
    /// The checkpoint it belongs to.
    pub checkpoint: CheckpointId,
    /// Its files in the checkpoint storage: the instance's first checkpoint refers
    /// to the shared ones (SST, OPTIONS) instead of uploading them again.
    pub files: Vec<NativeFile>,
}

/// Progress of a restore, as reported by [`load_checkpoint`] (the runtime passes it
/// on to its job listeners).
#[derive(Clone, Debug, PartialEq)]
pub enum RestoreEvent {
    /// Restoring one operator subtask's state of the old job begins.
    Started {
        /// The operator's uid.
        uid: String,
        /// The old subtask whose state is read.
        subtask: usize,
        /// The key groups its keyed state covers.
        key_groups: Option<KeyGroupRange>,
        /// Bytes to read.
        bytes: u64,
    },
    /// One state object was read.
    BatchRestored {
        /// The operator's uid.
        uid: String,
        /// The old subtask.
        subtask: usize,
        /// Bytes read.
        bytes: u64,
        /// Whether they were read from the subtask's local copy of a native RocksDB
        /// checkpoint (local recovery) rather than downloaded.
        local: bool,
        /// Of those, whether they came from this process's standby copy of the
        /// subtask (kept while another process ran it), not its own local copy.
        standby: bool,
        /// Whether they are a native RocksDB checkpoint the subtask opens as its
        /// instance as it is (same key groups), rather than reads back and writes
        /// again key by key.
        opened: bool,
    },
    /// Everything was read.
    Finished {
        /// The checkpoint or savepoint restored.
        checkpoint: CheckpointId,
        /// Total bytes read.
        bytes: u64,
    },
}

/// Why a checkpoint could not be restored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Storage failed or the state is missing or corrupt.
    #[error(transparent)]
    Storage(#[from] CheckpointError),
    /// A local directory for a native RocksDB checkpoint could not be written.
    #[error("restoring a native RocksDB checkpoint: {path}: {source}")]
    Local {
        /// The file or directory.
        path: String,
        /// The file system's report.
        #[source]
        source: std::io::Error,
    },
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
pub type KeyedBlob = BTreeMap<u16, BTreeMap<String, Vec<u8>>>;
/// Operator state of one operator subtask as stored: per state name.
pub type OperatorBlob = BTreeMap<String, Vec<u8>>;

mod bytes_compat {
    use crate::metadata::StateHandle;
    use crate::{CheckpointError, CheckpointStorage, Savepoint};

    /// Where state objects are read from.
    pub enum Reader<'a> {
        /// A job's checkpoint storage.
        Checkpoint(&'a CheckpointStorage),
        /// A savepoint (self-contained).
        Savepoint(&'a Savepoint),
    }

    /// Reads the state object `handle` from `reader`.
    ///
    /// # Errors
    /// Storage failed or the object is missing.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
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

pub(crate) use bytes_compat::read_handle;
pub use bytes_compat::Reader;

/// Where native RocksDB checkpoints are put while they are read back.
#[derive(Clone, Debug)]
pub struct NativeRestore {
    /// `<rocksdb dir>/<job>` when the job runs on RocksDB: local copies of
    /// checkpoints are looked for under `<uid>/<subtask>/local/chk-<n>` there.
    pub local_root: Option<std::path::PathBuf>,
    /// A directory of this process for temporary copies (removed after use).
    pub scratch: std::path::PathBuf,
    /// When the job runs on RocksDB: its max parallelism and the parallelism of
    /// each of its operators, by uid, to find the subtasks that own the key groups
    /// of their native checkpoint (and open it as their instance).
    pub new_job: Option<(MaxParallelism, BTreeMap<String, usize>)>,
    /// Where this process keeps standby copies of the job's subtasks it did not
    /// run (`native::keep_standby`, `heap_standby::keep`): used when there is no
    /// local copy.
    pub standby_root: Option<std::path::PathBuf>,
}

impl NativeRestore {
    /// The standby copy of native handle `index` of `checkpoint` of subtask
    /// `subtask` of `uid`, if this process keeps standby copies.
    fn standby_copy(
        &self,
        uid: &str,
        subtask: usize,
        checkpoint: CheckpointId,
        index: usize,
    ) -> Option<std::path::PathBuf> {
        self.standby_root
            .as_ref()
            .map(|root| crate::native::standby_copy(root, uid, subtask, checkpoint, index))
    }

    /// The bytes of the standby copy of heap state object `handle` of subtask
    /// `subtask` of `uid`, if this process keeps one ([`crate::heap_standby`]).
    fn heap_standby(&self, uid: &str, subtask: usize, handle: &StateHandle) -> Option<Vec<u8>> {
        let root = self.standby_root.as_ref()?;
        let copy = crate::heap_standby::copy_of(root, uid, subtask, handle)?;
        std::fs::read(copy).ok()
    }

    /// The directory of subtask `subtask` of `uid` in the job's RocksDB directory.
    fn subtask_dir(&self, uid: &str, subtask: usize) -> Option<std::path::PathBuf> {
        self.local_root.as_ref().map(|root| {
            root.join(crate::layout::path_segment(uid))
                .join(subtask.to_string())
        })
    }

    /// Whether subtask `subtask` of `uid` opens its native checkpoint `handle` as its
    /// RocksDB instance: it is the subtask's only one, the job runs on RocksDB, the
    /// subtask owns exactly the checkpoint's key groups, and the metadata records
    /// every table's entries (format 4).
    fn opens(&self, uid: &str, subtask: usize, native: &[NativeKeyedHandle]) -> bool {
        let ([handle], Some((max, parallelism))) = (native, &self.new_job) else {
            return false;
        };
        match parallelism.get(uid) {
            Some(&p) if subtask < p && p <= max.get() => {
                let range = KeyGroupRange::for_subtask(*max, p, subtask);
                RestoredInstance::fits(range, handle.key_groups, &handle.tables)
            }
            _ => false,
        }
    }
}

/// Puts the native checkpoint `handle` of subtask `subtask` of `uid` where the
/// subtask's RocksDB instance opens it ([`RestoredInstance::staging_dir`]): hard
/// links to the local copy when it matches, downloaded otherwise; adds a header
/// chunk of each non-empty table to `snapshot`, so operators still learn their
/// tables' headers. Returns whether the local copy was used, and the instance.
async fn stage_native(
    reader: &Reader<'_>,
    metadata: &CheckpointMetadata,
    uid: &str,
    subtask: usize,
    handle: &NativeKeyedHandle,
    native: &NativeRestore,
    snapshot: &mut OperatorSnapshot,
) -> Result<(crate::native::Source, OpenedInstance), RestoreError> {
    let object = || {
        format!(
            "native RocksDB checkpoint of subtask {subtask} of `{uid}` (checkpoint {})",
            metadata.checkpoint
        )
    };
    let Some(subtask_dir) = native.subtask_dir(uid, subtask) else {
        return Err(RestoreError::Corrupt {
            object: object(),
            source: StateError::Config("the job does not keep its state in RocksDB".into()),
        });
    };
    let local = crate::native::local_copy(&subtask_dir, metadata.checkpoint, 0);
    let standby = native.standby_copy(uid, subtask, metadata.checkpoint, 0);
    let staging = RestoredInstance::staging_dir(&subtask_dir);
    let source =
        crate::native::materialize(reader, handle, Some(&local), standby.as_deref(), &staging)
            .await?;
    for (t, table) in handle.tables.iter().enumerate() {
        let Some(offset) = table.entries.iter().position(|&n| n > 0) else {
            continue;
        };
        let group = handle.key_groups.start + offset as u16;
        let chunk = table
            .header_chunk()
            .map_err(|source| RestoreError::Corrupt {
                object: object(),
                source,
            })?;
        snapshot.keyed.entry(group).or_default().insert(
            chunk_name(&table.state, t as u64, usize::from(group)),
            chunk,
        );
    }
    tracing::info!(
        uid,
        subtask,
        checkpoint = metadata.checkpoint.get(),
        bytes = handle.size(),
        "native RocksDB checkpoint from {} put in {} for the subtask to open as its instance",
        source.describe(),
        staging.display()
    );
    let opened = OpenedInstance {
        instance: RestoredInstance {
            dir: staging,
            key_groups: handle.key_groups,
            tables: handle.tables.clone(),
            instance: weir_state::unique_id(),
        },
        checkpoint: metadata.checkpoint,
        files: handle.files.clone(),
    };
    Ok((source, opened))
}

/// Reads the native checkpoint `handle` of subtask `subtask` of `uid` into
/// `snapshot` in the canonical form (`index`: the handle's place among the
/// subtask's native handles). Returns where its files came from.
#[allow(clippy::too_many_arguments)]
async fn load_native(
    reader: &Reader<'_>,
    metadata: &CheckpointMetadata,
    uid: &str,
    subtask: usize,
    index: usize,
    handle: &NativeKeyedHandle,
    native: &NativeRestore,
    snapshot: &mut OperatorSnapshot,
) -> Result<crate::native::Source, RestoreError> {
    let local = native
        .subtask_dir(uid, subtask)
        .map(|dir| crate::native::local_copy(&dir, metadata.checkpoint, index));
    let standby = native.standby_copy(uid, subtask, metadata.checkpoint, index);
    let scratch = native.scratch.join(format!(
        "{}.{subtask}.{index}",
        crate::layout::path_segment(uid)
    ));
    let source = crate::native::materialize(
        reader,
        handle,
        local.as_deref(),
        standby.as_deref(),
        &scratch,
    )
    .await;
    let result = source.and_then(|source| {
        let tables = &handle.tables;
        weir_state::read_native_checkpoint(
            &scratch,
            tables,
            handle.key_groups,
            |group, t, bytes| {
                let name = chunk_name(&tables[t].state, t as u64, usize::from(group.get()));
                snapshot
                    .keyed
                    .entry(group.get())
                    .or_default()
                    .insert(name, bytes);
                Ok(())
            },
        )
        .map_err(|source| RestoreError::Corrupt {
            object: format!(
                "native RocksDB checkpoint of subtask {subtask} of `{uid}` (checkpoint {})",
                metadata.checkpoint
            ),
            source,
        })?;
        Ok(source)
    });
    if scratch.exists() {
        if let Err(e) = std::fs::remove_dir_all(&scratch) {
            tracing::warn!("cannot remove {}: {e}", scratch.display());
        }
    }
    let source = result?;
    tracing::info!(
        uid,
        subtask,
        checkpoint = metadata.checkpoint.get(),
        bytes = handle.size(),
        "native RocksDB checkpoint restored from {}",
        source.describe()
    );
    Ok(source)
}

/// Reads every state object `metadata` refers to, reporting progress to `on_restore`.
///
/// # Errors
/// [`RestoreError`] naming the object that is missing or corrupt.
///
/// # Cancel safety
/// Cancel-safe: it only reads.
pub async fn load_checkpoint(
    reader: &Reader<'_>,
    metadata: &CheckpointMetadata,
    on_restore: &(dyn Fn(&RestoreEvent) + Sync),
    native: &NativeRestore,
) -> Result<RestoreState, RestoreError> {
    let mut operators = BTreeMap::new();
    let mut opened = BTreeMap::new();
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
                + subtask_state.operator.iter().map(|h| h.size).sum::<u64>()
                + subtask_state.native.iter().map(|n| n.size()).sum::<u64>();
            on_restore(&RestoreEvent::Started {
                uid: uid.to_string(),
                subtask,
                key_groups: subtask_state
                    .keyed
                    .first()
                    .map(|k| k.key_groups)
                    .or_else(|| subtask_state.native.first().map(|n| n.key_groups)),
                bytes,
            });
            let snapshot = &mut snapshots[subtask];
            for keyed in &subtask_state.keyed {
                let path = &keyed.handle.path;
                // A standby copy this process keeps (cluster mode) is read first.
                let kept = match reader {
                    Reader::Checkpoint(_) => {
                        native.heap_standby(uid.as_str(), subtask, &keyed.handle)
                    }
                    Reader::Savepoint(_) => None,
                };
                let from_copy = kept.and_then(|raw| {
                    weir_state::decode::<KeyedBlob>(path, &raw)
                        .inspect_err(|e| {
                            tracing::warn!(
                                "the standby copy of {path} is unusable ({e}): reading the storage"
                            );
                        })
                        .ok()
                });
                let standby = from_copy.is_some();
                let blob: KeyedBlob = match from_copy {
                    Some(blob) => blob,
                    None => {
                        let raw = read_handle(reader, &keyed.handle).await?;
                        weir_state::decode(path, &raw).map_err(|source| RestoreError::Corrupt {
                            object: path.clone(),
                            source,
                        })?
                    }
                };
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
                on_restore(&RestoreEvent::BatchRestored {
                    uid: uid.to_string(),
                    subtask,
                    bytes: keyed.handle.size,
                    local: standby,
                    standby,
                    opened: false,
                });
            }
            // Savepoints are canonical; a checkpoint of the subtask's own key groups
            // is opened as its instance, any other read back key by key.
            let opens = matches!(reader, Reader::Checkpoint(_))
                && native.opens(uid.as_str(), subtask, &subtask_state.native);
            for (index, handle) in subtask_state.native.iter().enumerate() {
                let source = if opens {
                    let (source, instance) = stage_native(
                        reader,
                        metadata,
                        uid.as_str(),
                        subtask,
                        handle,
                        native,
                        snapshot,
                    )
                    .await?;
                    opened
                        .entry(uid.to_string())
                        .or_insert_with(BTreeMap::new)
                        .insert(subtask, instance);
                    source
                } else {
                    load_native(
                        reader,
                        metadata,
                        uid.as_str(),
                        subtask,
                        index,
                        handle,
                        native,
                        snapshot,
                    )
                    .await?
                };
                // One event per place the bytes came from: a copy here, or the
                // storage.
                let (copied, standby, downloaded) = source.split(handle.size());
                for (bytes, local) in [(copied, true), (downloaded, false)] {
                    if bytes > 0 || (!local && copied == 0) {
                        on_restore(&RestoreEvent::BatchRestored {
                            uid: uid.to_string(),
                            subtask,
                            bytes,
                            local,
                            standby: local && standby > 0,
                            opened: opens,
                        });
                    }
                }
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
                on_restore(&RestoreEvent::BatchRestored {
                    uid: uid.to_string(),
                    subtask,
                    bytes: handle.size,
                    local: false,
                    standby: false,
                    opened: false,
                });
            }
            total += bytes;
        }
        operators.insert(uid.to_string(), snapshots);
    }
    on_restore(&RestoreEvent::Finished {
        checkpoint: metadata.checkpoint,
        bytes: total,
    });
    Ok(RestoreState {
        operators,
        max_parallelism: metadata.max_parallelism.get(),
        opened,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_state::NativeTable;

    fn handle(key_groups: KeyGroupRange) -> NativeKeyedHandle {
        let groups = usize::from(key_groups.end - key_groups.start) + 1;
        NativeKeyedHandle {
            key_groups,
            files: Vec::new(),
            tables: vec![NativeTable {
                state: "count".into(),
                column_family: "count".into(),
                namespace: Vec::new(),
                header: Vec::new(),
                entries: vec![1; groups],
            }],
        }
    }

    fn on_rocksdb(parallelism: usize) -> NativeRestore {
        NativeRestore {
            standby_root: None,
            local_root: Some("rocksdb/job".into()),
            scratch: "scratch".into(),
            new_job: Some((
                MaxParallelism::DEFAULT,
                BTreeMap::from([("count".to_string(), parallelism)]),
            )),
        }
    }

    /// A subtask opens a native checkpoint as its instance exactly when the new job
    /// gives it the same key groups the old subtask owned; otherwise (rescaled, heap
    /// backend, an operator the job lacks, several handles) it is read back.
    #[test]
    fn a_subtask_opens_the_native_checkpoint_of_exactly_its_key_groups() {
        let max = MaxParallelism::DEFAULT;
        let old = |subtask| KeyGroupRange::for_subtask(max, 2, subtask);
        let native = on_rocksdb(2);
        assert!(native.opens("count", 0, &[handle(old(0))]));
        assert!(native.opens("count", 1, &[handle(old(1))]));
        assert!(!native.opens("count", 0, &[handle(old(1))]), "other groups");
        assert!(
            !native.opens("count", 2, &[handle(old(1))]),
            "no such subtask"
        );
        assert!(!native.opens("other", 0, &[handle(old(0))]), "unknown uid");
        assert!(
            !native.opens("count", 0, &[handle(old(0)), handle(old(0))]),
            "several handles"
        );
        assert!(!native.opens("count", 0, &[]), "nothing native");
        assert!(
            !on_rocksdb(4).opens("count", 0, &[handle(old(0))]),
            "rescaled"
        );
        let heap = NativeRestore {
            local_root: None,
            new_job: None,
            ..on_rocksdb(2)
        };
        assert!(!heap.opens("count", 0, &[handle(old(0))]), "heap backend");
        let mut unrecorded = handle(old(0));
        unrecorded.tables[0].entries.clear();
        assert!(!native.opens("count", 0, &[unrecorded]), "format 3");
    }

    #[test]
    fn native_checkpoints_are_staged_under_the_subtask_directory() {
        assert_eq!(
            on_rocksdb(2).subtask_dir("a/b", 3),
            Some(std::path::PathBuf::from("rocksdb/job/a_b/3"))
        );
        let heap = NativeRestore {
            local_root: None,
            ..on_rocksdb(2)
        };
        assert_eq!(heap.subtask_dir("count", 0), None);
    }
}

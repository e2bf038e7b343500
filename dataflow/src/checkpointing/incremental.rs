//! Incremental uploads of frozen keyed state.
//!
//! A frozen table ([`weir_state::StateTable::freeze`]) is a list of shards, each with
//! a generation that moves whenever the shard is written. For every operator subtask
//! the driver remembers which chunk (shard of a table) it uploaded, at which
//! generation, into which shared file. The next checkpoint encodes and uploads only
//! the shards whose generation moved, into one new shared file, and refers to the
//! older files, chunk by chunk, for the rest. Every `full_snapshot_every`-th
//! checkpoint of a subtask uploads everything afresh, so a restore reads a bounded
//! number of files and files of superseded state lose their last reference (and
//! retention deletes them).
//!
//! Safety of reuse: a chunk is reused only while its generation is unchanged, so
//! every checkpoint completed since its upload refers to the same file, and retention
//! (which keeps the newest completed checkpoint) never deletes a file still referred
//! to. Updates are applied in checkpoint order, so a late upload of an aborted
//! checkpoint cannot bring back references a newer checkpoint dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use weir_checkpoint::metadata::{KeyedStateHandle, StateHandle};
use weir_checkpoint::{CheckpointId, OperatorUid};
use weir_state::format::chunk_name;
use weir_state::{FrozenKeyed, KeyGroupRange, MaxParallelism, StateError};

/// One shard of one table: (table id, shard).
type ChunkKey = (u64, usize);

/// A chunk uploaded by an earlier checkpoint.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    generation: u64,
    name: String,
    groups: KeyGroupRange,
    bytes: u64,
    /// The shared file holding it; `None` until the file is written.
    file: Option<StateHandle>,
}

#[derive(Default)]
struct SubtaskUploads {
    last: Option<CheckpointId>,
    uploads: u64,
    chunks: HashMap<ChunkKey, Chunk>,
}

/// What the uploads of one job attempt can refer to again, per operator subtask.
#[derive(Clone, Default)]
pub(crate) struct UploadCache {
    inner: Arc<Mutex<HashMap<(OperatorUid, usize), SubtaskUploads>>>,
}

impl UploadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(OperatorUid, usize), SubtaskUploads>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (a new attempt has new tables).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// The chunks the next upload of a subtask may refer to: none when it is due
    /// for a full upload.
    pub(crate) fn reusable(
        &self,
        uid: &OperatorUid,
        subtask: usize,
        full_every: u32,
    ) -> HashMap<ChunkKey, Chunk> {
        let inner = self.lock();
        match inner.get(&(uid.clone(), subtask)) {
            Some(uploads) if uploads.uploads % u64::from(full_every.max(1)) != 0 => {
                uploads.chunks.clone()
            }
            _ => HashMap::new(),
        }
    }

    /// Records what checkpoint `checkpoint` of a subtask refers to.
    pub(crate) fn record(
        &self,
        uid: &OperatorUid,
        subtask: usize,
        checkpoint: CheckpointId,
        chunks: HashMap<ChunkKey, Chunk>,
    ) {
        let mut inner = self.lock();
        let uploads = inner.entry((uid.clone(), subtask)).or_default();
        if uploads.last.is_some_and(|last| last >= checkpoint) {
            return;
        }
        uploads.last = Some(checkpoint);
        uploads.uploads += 1;
        uploads.chunks = chunks;
    }
}

/// The frozen state of one operator subtask, encoded: new chunks to upload in one
/// file, and earlier chunks to refer to.
pub(crate) struct Encoded {
    /// New chunks: key group → chunk name → bytes.
    pub(crate) bundle: BTreeMap<u16, BTreeMap<String, Vec<u8>>>,
    new: Vec<(ChunkKey, Chunk)>,
    reused: Vec<(ChunkKey, Chunk)>,
}

/// Encodes the shards of `parts` that `known` does not hold at their generation.
/// Runs off the task thread; dropping `parts` at the end releases the shards, so
/// the task writes to them again without copying.
///
/// # Errors
/// A state that cannot be encoded.
pub(crate) fn encode(
    parts: Vec<Arc<dyn FrozenKeyed>>,
    known: &HashMap<ChunkKey, Chunk>,
    max: MaxParallelism,
) -> Result<Encoded, StateError> {
    let mut encoded = Encoded {
        bundle: BTreeMap::new(),
        new: Vec::new(),
        reused: Vec::new(),
    };
    for part in parts {
        for shard in 0..part.shard_count() {
            if part.shard_len(shard) == 0 {
                continue;
            }
            let key = (part.table_id(), shard);
            let generation = part.shard_generation(shard);
            if let Some(chunk) = known.get(&key) {
                if chunk.generation == generation && chunk.file.is_some() {
                    encoded.reused.push((key, chunk.clone()));
                    continue;
                }
            }
            let name = chunk_name(part.state_name(), part.table_id(), shard);
            let mut groups: Option<KeyGroupRange> = None;
            let mut bytes = 0u64;
            for (group, data) in part.encode_shard(shard, max)? {
                let g = group.get();
                groups = Some(match groups {
                    Some(r) => KeyGroupRange {
                        start: r.start.min(g),
                        end: r.end.max(g),
                    },
                    None => KeyGroupRange { start: g, end: g },
                });
                bytes += data.len() as u64;
                encoded
                    .bundle
                    .entry(g)
                    .or_default()
                    .insert(name.clone(), data);
            }
            if let Some(groups) = groups {
                let chunk = Chunk {
                    generation,
                    name,
                    groups,
                    bytes,
                    file: None,
                };
                encoded.new.push((key, chunk));
            }
        }
    }
    Ok(encoded)
}

impl Encoded {
    /// The state handles of this upload, given the file the new chunks went to, and
    /// the chunks to remember for the next checkpoint. Also returns the bytes of
    /// state referred to.
    pub(crate) fn finish(
        self,
        file: Option<StateHandle>,
    ) -> (Vec<KeyedStateHandle>, HashMap<ChunkKey, Chunk>, u64) {
        let mut handles = Vec::new();
        let mut remembered = HashMap::with_capacity(self.new.len() + self.reused.len());
        let mut state_bytes = 0;
        if let Some(file) = &file {
            if let (Some(first), Some(last)) =
                (self.bundle.keys().next(), self.bundle.keys().next_back())
            {
                handles.push(KeyedStateHandle {
                    key_groups: KeyGroupRange {
                        start: *first,
                        end: *last,
                    },
                    handle: file.clone(),
                    chunks: Vec::new(),
                });
            }
        }
        for (key, mut chunk) in self.new {
            state_bytes += chunk.bytes;
            chunk.file = file.clone();
            remembered.insert(key, chunk);
        }
        let mut by_file: BTreeMap<String, (StateHandle, KeyGroupRange, Vec<String>)> =
            BTreeMap::new();
        for (key, chunk) in self.reused {
            state_bytes += chunk.bytes;
            if let Some(handle) = &chunk.file {
                let entry = by_file
                    .entry(handle.path.clone())
                    .or_insert_with(|| (handle.clone(), chunk.groups, Vec::new()));
                entry.1 = KeyGroupRange {
                    start: entry.1.start.min(chunk.groups.start),
                    end: entry.1.end.max(chunk.groups.end),
                };
                entry.2.push(chunk.name.clone());
            }
            remembered.insert(key, chunk);
        }
        for (_, (handle, key_groups, mut chunks)) in by_file {
            chunks.sort();
            handles.push(KeyedStateHandle {
                key_groups,
                handle,
                chunks,
            });
        }
        (handles, remembered, state_bytes)
    }
}

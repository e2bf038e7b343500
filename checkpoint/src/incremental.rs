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

use crate::metadata::{KeyedStateHandle, StateHandle};
use crate::{CheckpointId, OperatorUid};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use weir_state::format::chunk_name;
use weir_state::{FrozenKeyed, KeyGroupRange, MaxParallelism, StateError};

/// One shard of one table: (table id, shard).
pub type ChunkKey = (u64, usize);

/// A chunk uploaded by an earlier checkpoint.
#[derive(Clone, Debug)]
pub struct Chunk {
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
pub struct UploadCache {
    inner: Arc<Mutex<HashMap<(OperatorUid, usize), SubtaskUploads>>>,
}

impl UploadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(OperatorUid, usize), SubtaskUploads>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (a new attempt has new tables).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The chunks the next upload of a subtask may refer to: none when it is due
    /// for a full upload.
    pub fn reusable(
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
    pub fn record(
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
pub struct Encoded {
    /// New chunks: key group → chunk name → bytes.
    pub bundle: BTreeMap<u16, BTreeMap<String, Vec<u8>>>,
    new: Vec<(ChunkKey, Chunk)>,
    reused: Vec<(ChunkKey, Chunk)>,
}

/// Encodes the shards of `parts` that `known` does not hold at their generation.
/// Runs off the task thread; dropping `parts` at the end releases the shards, so
/// the task writes to them again without copying.
///
/// # Errors
/// A state that cannot be encoded.
pub fn encode(
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
    pub fn finish(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> StateHandle {
        StateHandle {
            path: path.into(),
            size: 100,
        }
    }

    fn chunk(name: &str, groups: (u16, u16), file: Option<StateHandle>) -> Chunk {
        Chunk {
            generation: 1,
            name: name.into(),
            groups: KeyGroupRange {
                start: groups.0,
                end: groups.1,
            },
            bytes: 10,
            file,
        }
    }

    /// Every `full_every`-th upload of a subtask refers to nothing earlier; a late
    /// record of an older checkpoint changes nothing; subtasks are apart.
    #[test]
    fn every_nth_upload_is_full_and_records_apply_in_checkpoint_order() {
        let cache = UploadCache::default();
        let uid = OperatorUid::new("count");
        let chunks = HashMap::from([((1, 0), chunk("a", (0, 3), Some(file("f1"))))]);
        assert!(
            cache.reusable(&uid, 0, 3).is_empty(),
            "nothing uploaded yet"
        );
        cache.record(&uid, 0, CheckpointId::new(1), chunks.clone());
        assert_eq!(cache.reusable(&uid, 0, 3).len(), 1);
        cache.record(&uid, 0, CheckpointId::new(2), chunks.clone());
        assert_eq!(cache.reusable(&uid, 0, 3).len(), 1);
        cache.record(&uid, 0, CheckpointId::new(3), chunks.clone());
        assert!(
            cache.reusable(&uid, 0, 3).is_empty(),
            "the 4th upload is full"
        );
        cache.record(&uid, 0, CheckpointId::new(2), HashMap::new());
        assert!(cache.reusable(&uid, 0, 3).is_empty(), "late record ignored");
        cache.record(&uid, 0, CheckpointId::new(4), chunks.clone());
        assert_eq!(cache.reusable(&uid, 0, 3).len(), 1);
        assert!(cache.reusable(&uid, 1, 3).is_empty(), "another subtask");
        assert!(cache.reusable(&uid, 0, 0).is_empty(), "0: always full");
        cache.clear();
        assert!(cache.reusable(&uid, 0, 3).is_empty());
    }

    /// New chunks go to the new file, with one handle over their key groups; reused
    /// chunks are referred to per older file, by name, over their joint key groups.
    #[test]
    fn finish_refers_to_new_and_reused_chunks_by_file() {
        let encoded = Encoded {
            bundle: BTreeMap::from([
                (4, BTreeMap::from([("n".to_string(), vec![1])])),
                (9, BTreeMap::from([("n".to_string(), vec![2])])),
            ]),
            new: vec![((1, 0), chunk("n", (4, 9), None))],
            reused: vec![
                ((2, 0), chunk("b", (10, 12), Some(file("old")))),
                ((2, 1), chunk("a", (0, 3), Some(file("old")))),
                ((3, 0), chunk("c", (5, 5), Some(file("older")))),
            ],
        };
        let (handles, remembered, state_bytes) = encoded.finish(Some(file("new")));
        assert_eq!(state_bytes, 40);
        assert_eq!(remembered.len(), 4);
        assert_eq!(remembered[&(1, 0)].file, Some(file("new")));
        let summary: Vec<(&str, u16, u16, Vec<&str>)> = handles
            .iter()
            .map(|h| {
                (
                    h.handle.path.as_str(),
                    h.key_groups.start,
                    h.key_groups.end,
                    h.chunks.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("new", 4, 9, vec![]),
                ("old", 0, 12, vec!["a", "b"]),
                ("older", 5, 5, vec!["c"]),
            ]
        );
    }
}

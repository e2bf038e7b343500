//! The upload: the asynchronous part of a subtask's snapshot (encode its frozen state
//! and write the state files on tokio: incremental heap shards, native RocksDB
//! checkpoints) and the writing of a checkpoint's metadata (create-if-absent, and a
//! savepoint's self-contained copy). Both report to the executor with an
//! [`Internal`] message; neither decides anything.

use super::driver::{hit, Driver};
use super::executor::Internal;
use super::Failpoint;
use crate::FrozenState;
use crossbeam_channel::Sender;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use weir_checkpoint::incremental;
use weir_checkpoint::metadata::{CheckpointMetadata, KeyedStateHandle, SnapshotKind, SubtaskState};
use weir_checkpoint::native;
use weir_checkpoint::restore::KeyedBlob;
use weir_checkpoint::{
    Barrier, CheckpointError, OperatorStates, OperatorUid, StateWriter, StorageConfig, SubtaskAck,
    SubtaskUpload, UploadError,
};
use weir_state::{KeyGroupRange, MaxParallelism};

impl Driver {
    /// The asynchronous part of a subtask's snapshot: encode frozen state and upload
    /// on tokio, then report.
    pub(super) fn upload(
        &self,
        mut ack: SubtaskAck,
        frozen: FrozenState,
        barrier: Barrier,
        job: &str,
        done: Sender<Internal>,
    ) {
        let operators = std::mem::take(&mut ack.operators);
        let uploads = self.uploads.clone();
        let native_uploads = self.native_uploads.clone();
        let owner = self.owner();
        let max = frozen.max_parallelism;
        let mut frozen_by_uid: BTreeMap<OperatorUid, Vec<Arc<dyn weir_state::FrozenKeyed>>> =
            BTreeMap::new();
        for (uid, part) in frozen.parts {
            frozen_by_uid.entry(uid).or_default().push(part);
        }
        let (hits, checkpointing) = (self.failpoint_hits.clone(), self.checkpointing.clone());
        let mut writer = StateWriter::new(
            self.storage.clone(),
            job,
            barrier.id,
            ack.subtask,
            Arc::new(move || hit(&hits, &checkpointing, Failpoint::MidUpload)),
        )
        .owned_by(owner.clone());
        let (incremental_enabled, full_snapshot_every) = (
            self.checkpointing.incremental,
            self.checkpointing.full_snapshot_every,
        );
        let task = self.runtime.spawn(async move {
            let started = Instant::now();
            let mut states: BTreeMap<OperatorUid, SubtaskState> = BTreeMap::new();
            let mut state_bytes = 0u64;
            let subtask = ack.subtask;
            // Savepoints are self-contained: full, and private to their directory.
            let incremental = incremental_enabled && !barrier.is_savepoint();
            let result: std::result::Result<(), UploadError> = async {
                for (uid, snapshot) in operators {
                    let state = states.entry(uid.clone()).or_default();
                    if let (Some(first), Some(last)) = (
                        snapshot.keyed.keys().next(),
                        snapshot.keyed.keys().next_back(),
                    ) {
                        let key_groups = KeyGroupRange {
                            start: *first,
                            end: *last,
                        };
                        let blob: &KeyedBlob = &snapshot.keyed;
                        let encoded = weir_state::encode("keyed", blob)?;
                        state_bytes += encoded.len() as u64;
                        let handle = writer.private(&uid, "keyed", encoded).await?;
                        state.keyed.push(KeyedStateHandle {
                            key_groups,
                            handle,
                            chunks: Vec::new(),
                        });
                    }
                    if !snapshot.operator.is_empty() {
                        let encoded = weir_state::encode("operator", &snapshot.operator)?;
                        state_bytes += encoded.len() as u64;
                        state
                            .operator
                            .push(writer.private(&uid, "operator", encoded).await?);
                    }
                }
                for (uid, mut parts) in frozen_by_uid {
                    if incremental {
                        // RocksDB tables: their SST files, not the canonical form.
                        let mut tables = Vec::new();
                        let mut heap = Vec::with_capacity(parts.len());
                        for part in parts {
                            match part.native()? {
                                Some(table) => tables.push(table),
                                None => heap.push(part),
                            }
                        }
                        parts = heap;
                        for (index, tables) in native::by_checkpoint(tables).into_iter().enumerate()
                        {
                            let key_groups = tables[0].key_groups;
                            let (handle, referred) = native::upload(
                                &mut writer,
                                &native_uploads,
                                &uid,
                                key_groups,
                                index,
                                tables,
                            )
                            .await?;
                            state_bytes += referred;
                            states.entry(uid.clone()).or_default().native.push(handle);
                        }
                    }
                    let known = if incremental {
                        uploads.reusable(&uid, subtask, full_snapshot_every)
                    } else {
                        Default::default()
                    };
                    let encoded = tokio::task::spawn_blocking(move || {
                        incremental::encode(parts, &known, max)
                    })
                    .await
                    .map_err(UploadError::Interrupted)??;
                    let file = if encoded.bundle.is_empty() {
                        None
                    } else {
                        let data = weir_state::encode("keyed", &encoded.bundle)?;
                        Some(if incremental {
                            let key = format!("{uid}.{subtask}.{owner}.{}", barrier.id.get());
                            writer.shared(&key, data).await?
                        } else {
                            writer.private(&uid, "keyed-tables", data).await?
                        })
                    };
                    let (handles, remembered, referred) = encoded.finish(file);
                    state_bytes += referred;
                    states.entry(uid.clone()).or_default().keyed.extend(handles);
                    if incremental {
                        uploads.record(&uid, subtask, barrier.id, remembered);
                    }
                }
                Ok(())
            }
            .await;
            let bytes = writer.bytes();
            let message = match result {
                Ok(()) => Internal::Uploaded {
                    ack,
                    upload: SubtaskUpload {
                        states: states.into_iter().collect(),
                        bytes,
                        state_bytes,
                        async_us: started.elapsed().as_micros() as u64,
                    },
                },
                Err(e) => Internal::UploadFailed {
                    checkpoint: barrier.id,
                    reason: format!("upload failed: {e}"),
                },
            };
            let _ = done.send(message);
        });
        self.track(task);
    }

    /// Writes the metadata of the checkpoint of `barrier` on tokio (create-if-absent,
    /// and for a savepoint its self-contained copy too), then reports.
    pub(super) fn write_metadata(
        &self,
        barrier: Barrier,
        states: OperatorStates,
        job: &str,
        max: MaxParallelism,
        done: Sender<Internal>,
    ) {
        let mut metadata = CheckpointMetadata::new(
            job,
            barrier.id,
            SnapshotKind::Checkpoint,
            barrier.triggered_at_ms,
            max,
        );
        metadata.set_timeline(self.timeline);
        // Each operator's parallelism grows to cover the subtasks that uploaded.
        for (uid, states) in states {
            for (subtask, state) in states {
                *metadata.subtask_mut(&uid, subtask) = state;
            }
        }
        let storage = self.storage.clone();
        let savepoints: Option<StorageConfig> = barrier
            .is_savepoint()
            .then(|| self.checkpointing.savepoints.clone());
        let job = job.to_string();
        let fence = self.checkpointing.fence.clone();
        let task = self.runtime.spawn(async move {
            let result: std::result::Result<_, CheckpointError> = async {
                if let Some(fence) = &fence {
                    fence.check()?;
                }
                storage.commit_metadata(&metadata).await?;
                match savepoints {
                    Some(dir) => {
                        let name = format!("savepoint-{}-{}", job, barrier.id.get());
                        let savepoint = storage.write_savepoint(&dir, &name, &metadata).await?;
                        Ok(Some(savepoint.location()))
                    }
                    None => Ok(None),
                }
            }
            .await;
            let _ = done.send(Internal::MetadataDone {
                checkpoint: barrier.id,
                result,
            });
        });
        self.track(task);
    }
}

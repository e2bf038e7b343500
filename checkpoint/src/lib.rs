//! weir-checkpoint: checkpoint identities, barriers, the description of what a
//! snapshot holds, the pure coordinator, and checkpoint storage on an object store:
//! writing the state files of a snapshot and reading them back on restore.
//!
//! ```text
//!  source ──Barrier(n)──▶ task ──Barrier(n)──▶ task ──▶ sink
//!     │                    │                    │
//!     └──── snapshot ──────┴──── snapshot ──────┴──▶ acknowledgements (this crate's types)
//!
//!  runtime (weir-dataflow)                       this crate
//!  driver ── events ─────────────────────────▶ Coordinator (pure) ── commands ──▶ driver
//!  driver ── frozen state of a subtask ──────▶ incremental::encode / native::upload
//!                                               └─ StateWriter ─▶ CheckpointStorage
//!  driver ── commit ─────────────────────────▶ CheckpointStorage::commit_metadata (last)
//!  driver ── resume ─────────────────────────▶ latest_valid / read_savepoint
//!                                               └─ restore::load_checkpoint ─▶ RestoreState
//! ```
//!
//! This crate knows nothing of the dataflow (it depends on weir-state only): it
//! defines the vocabulary that the runtime (weir-dataflow) and the checkpoint storage
//! and coordinator speak, and does the storage I/O of checkpoints, so all of it is
//! tested without a running job.
//!
//! Storage ([`CheckpointStorage`]) keeps checkpoints on the local filesystem or S3 in
//! the layout of [`layout`]: state files first, `_metadata` ([`CheckpointMetadata`])
//! last and create-if-absent, so a checkpoint exists exactly when its metadata does.
//! Recovery takes the newest checkpoint that is intact ([`CheckpointStorage::latest_valid`]),
//! retention keeps the newest N ([`CheckpointStorage::retain`]), savepoints are
//! self-contained copies ([`CheckpointStorage::write_savepoint`]).
//!
//! The state files of a subtask's snapshot are written through a [`StateWriter`]:
//! heap state incrementally ([`incremental`]: only the shards written since the
//! previous checkpoint, referring to earlier files for the rest), RocksDB state as
//! native checkpoints ([`native`]: SST files uploaded once, a local copy kept for
//! local recovery). [`restore::load_checkpoint`] reads them all back into a
//! [`RestoreState`].
//!
//! ```
//! use weir_checkpoint::{Barrier, CheckpointId};
//! let barrier = Barrier::checkpoint(CheckpointId::new(7), 1_700_000_000_000);
//! assert_eq!(barrier.id.get(), 7);
//! assert!(!barrier.is_savepoint());
//! ```
//!
//! Storing and recovering a checkpoint:
//!
//! ```
//! use weir_checkpoint::*;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), CheckpointError> {
//! # let dir = std::env::temp_dir().join(format!("weir-doc-{}", std::process::id()));
//! # let url = dir.display().to_string();
//! let storage = CheckpointStorage::open_url(&url).await?; // or "s3://bucket/prefix"
//! let (job, chk, uid) = ("orders", CheckpointId::new(1), OperatorUid::new("count"));
//! let handle = storage.write_state(job, chk, &uid, 0, "operator", b"offset=42".to_vec()).await?;
//! let mut metadata = CheckpointMetadata::new(job, chk, SnapshotKind::Checkpoint, 0, Default::default());
//! metadata.subtask_mut(&uid, 0).operator.push(handle);
//! storage.commit_metadata(&metadata).await?; // last: now checkpoint 1 exists
//!
//! let recovered = storage.latest_valid(job).await?.latest.expect("a checkpoint");
//! let state = storage.read(&recovered.operators[&uid].subtasks[&0].operator[0]).await?;
//! assert_eq!(&state[..], b"offset=42");
//! # std::fs::remove_dir_all(dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! Writing a subtask's state through a [`StateWriter`] and restoring it:
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use weir_checkpoint::restore::{load_checkpoint, NativeRestore, OperatorBlob, Reader};
//! use weir_checkpoint::*;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("weir-doc-restore-{}", std::process::id()));
//! let storage = CheckpointStorage::open_url(&dir.display().to_string()).await?;
//! let (job, chk, uid) = ("orders", CheckpointId::new(1), OperatorUid::new("source"));
//! let mut writer = StateWriter::new(storage.clone(), job, chk, 0, Arc::new(|| {}));
//! let blob: OperatorBlob = BTreeMap::from([("offset".to_string(), b"42".to_vec())]);
//! let handle = writer.private(&uid, "operator", weir_state::encode("operator", &blob)?).await?;
//! let mut metadata = CheckpointMetadata::new(job, chk, SnapshotKind::Checkpoint, 0, Default::default());
//! metadata.subtask_mut(&uid, 0).operator.push(handle);
//! storage.commit_metadata(&metadata).await?;
//!
//! let native = NativeRestore { local_root: None, scratch: dir.join("scratch"), new_job: None, standby_root: None };
//! let on_restore = |event: &RestoreEvent| println!("{event:?}");
//! let restored = load_checkpoint(&Reader::Checkpoint(&storage), &metadata, &on_restore, &native).await?;
//! assert_eq!(restored.operators["source"][0].operator["offset"], b"42");
//! # std::fs::remove_dir_all(dir).ok();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod config;
pub mod control;
pub mod coordinator;
mod error;
pub mod heap_standby;
mod in_flight;
pub mod incremental;
pub mod layout;
pub mod lease;
pub mod metadata;
pub mod native;
mod recovery;
pub mod restore;
mod retention;
mod savepoint;
mod snapshot;
mod storage;
mod writer;

pub use config::{install_tls_provider, S3Options, StorageConfig, DEFAULT_ROOT};
pub use coordinator::{Command, Coordinator, CoordinatorConfig, Event};
pub use error::{CheckpointError, CorruptReason};
pub use in_flight::{CheckpointStats, OperatorStates, SubtaskCheckpointStats, SubtaskUpload};
pub use metadata::{
    CheckpointMetadata, KeyedStateHandle, OperatorState, SnapshotKind, StateHandle, SubtaskState,
};
pub use recovery::{RecoveryScan, SkipReason, SkippedCheckpoint};
pub use restore::{load_checkpoint, OpenedInstance, RestoreError, RestoreEvent, RestoreState};
pub use retention::{plan_retention, RetentionCandidate, RetentionPlan};
pub use savepoint::Savepoint;
pub use snapshot::{OperatorSnapshot, OperatorUid, SubtaskAck, SubtaskId};
pub use storage::{CheckpointStorage, Leftovers, STREAMED_PART};
pub use writer::{AfterWrite, StateWriter, UploadError};

use serde::{Deserialize, Serialize};
use std::fmt;

/// The number of a checkpoint: strictly increasing within a job, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(u64);

impl CheckpointId {
    /// Wraps a raw checkpoint number.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The raw checkpoint number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The checkpoint that follows this one.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chk-{}", self.0)
    }
}

/// What a barrier asks of the operators it passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BarrierKind {
    /// A periodic checkpoint: snapshot, forward, keep running.
    Checkpoint,
    /// A savepoint: a canonical, self-contained snapshot. With `stop`, the sources end
    /// after injecting it and the job shuts down once it is complete.
    Savepoint {
        /// Whether the job stops after this savepoint.
        stop: bool,
    },
}

/// A checkpoint barrier, travelling in-band with the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Barrier {
    /// The checkpoint this barrier belongs to.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: BarrierKind,
    /// Wall-clock time (ms since the Unix epoch) at which the coordinator triggered it.
    pub triggered_at_ms: i64,
}

impl Barrier {
    /// A barrier for a periodic checkpoint.
    pub const fn checkpoint(id: CheckpointId, triggered_at_ms: i64) -> Self {
        Self {
            id,
            kind: BarrierKind::Checkpoint,
            triggered_at_ms,
        }
    }

    /// A barrier for a savepoint; `stop` ends the job after it.
    pub const fn savepoint(id: CheckpointId, stop: bool, triggered_at_ms: i64) -> Self {
        Self {
            id,
            kind: BarrierKind::Savepoint { stop },
            triggered_at_ms,
        }
    }

    /// Whether this barrier takes a savepoint.
    pub const fn is_savepoint(&self) -> bool {
        matches!(self.kind, BarrierKind::Savepoint { .. })
    }

    /// Whether the job stops after this barrier.
    pub const fn stops_job(&self) -> bool {
        matches!(self.kind, BarrierKind::Savepoint { stop: true })
    }
}

//! The checkpoint in flight, as the [`Coordinator`](crate::Coordinator) keeps it: its
//! barrier, the acknowledgements and uploaded state handles collected so far, the
//! savepoint requests it serves, and the statistics it completes with. Pure
//! bookkeeping: the coordinator decides when a checkpoint starts, completes or fails;
//! this records what it collected on the way.
//!
//! ```text
//!  InjectBarrier(n)                    ──▶ InFlight::new (barrier, start time)
//!  Acknowledged(ack, upload) × all     ──▶ acknowledge: states by operator and subtask,
//!                                          statistics by subtask, in arrival order
//!  WriteMetadata(n, states)            ◀── take_states
//!  MetadataWritten(n) ──▶ RecordStats  ◀── stats: duration, bytes, per subtask
//! ```

use crate::coordinator::MonotonicMs;
use crate::metadata::SubtaskState;
use crate::{Barrier, CheckpointId, OperatorUid, SubtaskAck, SubtaskId};
use std::collections::{BTreeMap, BTreeSet};

/// What the upload of one subtask's snapshot wrote, reported with its acknowledgement
/// ([`Event::Acknowledged`](crate::Event::Acknowledged)).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubtaskUpload {
    /// The handles of the state files written (or referred to again), by operator.
    pub states: Vec<(OperatorUid, SubtaskState)>,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes of the state the snapshot refers to: uploaded now, or by an earlier
    /// checkpoint and still current (incremental checkpoints).
    pub state_bytes: u64,
    /// Time the upload took, µs.
    pub async_us: u64,
}

/// The state every subtask of every operator uploaded for one checkpoint, by operator
/// uid and subtask index: what the checkpoint's metadata records.
pub type OperatorStates = BTreeMap<OperatorUid, BTreeMap<usize, SubtaskState>>;

/// Statistics of one subtask's part of a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct SubtaskCheckpointStats {
    /// The task (chain) name.
    pub task: String,
    /// The subtask.
    pub subtask: usize,
    /// Time between the first and the last barrier at this subtask, µs.
    pub alignment_us: u64,
    /// Synchronous part of the snapshot, µs.
    pub sync_us: u64,
    /// Upload, µs.
    pub async_us: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes of the state this checkpoint refers to: uploaded now, or by an earlier
    /// checkpoint and still current (incremental checkpoints).
    pub state_bytes: u64,
}

/// Statistics of one completed checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointStats {
    /// The checkpoint.
    pub checkpoint: CheckpointId,
    /// Whether it was a savepoint.
    pub savepoint: bool,
    /// From barrier injection to the metadata written, ms.
    pub duration_ms: f64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes of the state the checkpoint refers to (with incremental checkpoints,
    /// more than it uploaded).
    pub state_bytes: u64,
    /// Per subtask.
    pub subtasks: Vec<SubtaskCheckpointStats>,
}

/// The one checkpoint the coordinator has in flight.
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    pub(crate) barrier: Barrier,
    pub(crate) started: MonotonicMs,
    pub(crate) acks: BTreeMap<SubtaskId, SubtaskAck>,
    pub(crate) writing_metadata: bool,
    /// The savepoint requests this barrier serves.
    pub(crate) requests: Vec<u64>,
    /// What the acknowledged subtasks uploaded, until the metadata takes it.
    states: OperatorStates,
    /// Per acknowledged subtask, in the order the acknowledgements arrived.
    stats: Vec<SubtaskCheckpointStats>,
}

impl InFlight {
    /// Checkpoint `barrier`, injected at `started`, serving savepoint `requests`.
    pub(crate) fn new(barrier: Barrier, started: MonotonicMs, requests: Vec<u64>) -> Self {
        Self {
            barrier,
            started,
            acks: BTreeMap::new(),
            writing_metadata: false,
            requests,
            states: BTreeMap::new(),
            stats: Vec::new(),
        }
    }

    /// Records a subtask's acknowledgement and what its upload wrote.
    pub(crate) fn acknowledge(&mut self, ack: SubtaskAck, upload: SubtaskUpload) {
        for (uid, state) in upload.states {
            self.states
                .entry(uid)
                .or_default()
                .insert(ack.subtask, state);
        }
        self.stats.push(SubtaskCheckpointStats {
            task: ack.task.clone(),
            subtask: ack.subtask,
            alignment_us: ack.alignment_us,
            sync_us: ack.sync_us,
            async_us: upload.async_us,
            bytes: upload.bytes,
            state_bytes: upload.state_bytes,
        });
        self.acks.insert(ack.id, ack);
    }

    /// Whether every one of `subtasks` acknowledged.
    pub(crate) fn acknowledged_by_all(&self, subtasks: &BTreeSet<SubtaskId>) -> bool {
        subtasks.iter().all(|k| self.acks.contains_key(k))
    }

    /// The uploaded states, for the metadata (no acknowledgement is taken after it).
    pub(crate) fn take_states(&mut self) -> OperatorStates {
        std::mem::take(&mut self.states)
    }

    /// The statistics of the checkpoint, its metadata written at `now`.
    pub(crate) fn into_stats(self, now: MonotonicMs) -> CheckpointStats {
        CheckpointStats {
            checkpoint: self.barrier.id,
            savepoint: self.barrier.is_savepoint(),
            duration_ms: now.saturating_sub(self.started) as f64,
            bytes: self.stats.iter().map(|s| s.bytes).sum(),
            state_bytes: self.stats.iter().map(|s| s.state_bytes).sum(),
            subtasks: self.stats,
        }
    }
}

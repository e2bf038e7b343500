//! The sink contract.

use crate::operator::{OperatorContext, SnapshotContext};
use crate::Result;
use weir_checkpoint::CheckpointId;

/// The end of a pipeline, instantiated once per subtask.
pub trait Sink: Send + 'static {
    /// Record type.
    type In: Send + 'static;

    /// Called once on the task thread before the first record, with restored state.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Writes a batch; `batch` must be left empty (drained).
    fn write_batch(&mut self, batch: &mut Vec<Self::In>) -> Result<()>;

    /// Captures pending output (e.g. an exactly-once sink's epoch) for a checkpoint.
    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Checkpoint `id` is complete: output covered by it may be committed.
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let _ = id;
        Ok(())
    }

    /// All input has ended; flush.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

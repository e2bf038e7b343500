//! [`SequenceSource`]: the numbers of an inclusive `i64` range.

use crate::split::Position;
use weir_dataflow::{
    OperatorContext, Result, SnapshotContext, Source, SourceOutput, SourcePoll, SubtaskInfo,
};

const POSITION: &str = "sequence-position";

/// Emits the numbers `start..=end` (nothing if `end < start`). Subtask `k` of `P`
/// emits the `k`-th of `P` contiguous ranges in ascending order (split like Flink's
/// `NumberSequenceSource`), up to `batch_size` numbers per poll. Its position is
/// checkpointed (operator state `sequence-position`); after a change of
/// parallelism the unfinished ranges are shared out among the new subtasks, so
/// every number is still emitted exactly once.
pub struct SequenceSource {
    start: i64,
    position: Position,
}

impl SequenceSource {
    /// A factory for [`weir_dataflow::JobBuilder::source`] emitting `start..=end`.
    pub fn factory(start: i64, end: i64) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        move |info: &SubtaskInfo| Self {
            start,
            // Positions are offsets from `start`; `end - start` fits u64 when end >= start.
            position: if end < start {
                Position::default()
            } else {
                let last = end.wrapping_sub(start) as u64;
                Position::contiguous(0, last, info.index, info.parallelism)
            },
        }
    }
}

impl Source for SequenceSource {
    type Out = i64;

    /// # Errors
    /// A corrupt restored position.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.position.restore(POSITION, cx)
    }

    fn poll(&mut self, out: &mut SourceOutput<i64>) -> Result<SourcePoll> {
        let mut budget = out.batch_size().max(1) as u64;
        while let Some(run) = self.position.take(budget) {
            for j in 0..run.count {
                let offset = run.first.wrapping_add(j.wrapping_mul(run.step));
                out.push(self.start.wrapping_add(offset as i64));
            }
            budget -= run.count;
            if budget == 0 {
                break;
            }
        }
        Ok(if self.position.is_finished() {
            SourcePoll::Finished
        } else {
            SourcePoll::Ready
        })
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        self.position.snapshot(POSITION, cx)
    }
}

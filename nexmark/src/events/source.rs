//! [`NexmarkSource`]: the Nexmark generator as a checkpointed source.

use super::{nexmark_event, Event, NexmarkConfig};
use weir_dataflow::{
    OperatorContext, Result, SnapshotContext, Source, SourceOutput, SourcePoll, SubtaskInfo,
};
use weir_sources::split::Position;

const POSITION: &str = "nexmark-position";

/// Emits the events `0..config.events` of [`nexmark_event`]. Subtask `k` of `P`
/// emits the event numbers `k, k + P, k + 2P, …`, so event time advances in step
/// on all subtasks; up to `batch_size` events per poll. Its position is
/// checkpointed (operator state `nexmark-position`); after a change of parallelism
/// the unfinished progressions are shared out among the new subtasks, so every
/// event is still emitted exactly once.
pub struct NexmarkSource {
    config: NexmarkConfig,
    position: Position,
    operator: String,
}

impl NexmarkSource {
    /// A factory for [`weir_dataflow::JobBuilder::source`]; the config is validated
    /// when the source opens.
    pub fn factory(config: NexmarkConfig) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        move |info: &SubtaskInfo| Self {
            config,
            position: match config.events.checked_sub(1) {
                Some(last) => Position::interleaved(0, last, info.index, info.parallelism),
                None => Position::default(),
            },
            operator: info.operator.clone(),
        }
    }
}

impl Source for NexmarkSource {
    type Out = Event;

    /// # Errors
    /// [`weir_dataflow::DataflowError::InvalidJob`] for an invalid config; a corrupt
    /// restored position.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.config.validate(&self.operator)?;
        self.position.restore(POSITION, cx)
    }

    fn poll(&mut self, out: &mut SourceOutput<Event>) -> Result<SourcePoll> {
        let mut budget = out.batch_size().max(1) as u64;
        while let Some(run) = self.position.take(budget) {
            for j in 0..run.count {
                out.push(nexmark_event(run.first + j * run.step, &self.config));
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

//! [`SequenceSource`]: the numbers of an inclusive `i64` range.

use crate::split::Position;
use std::time::{Duration, Instant};
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
    /// With a rate: numbers this subtask may emit per second, and since when.
    throttle: Option<Throttle>,
}

/// Paces a subtask to a rate, counted from its first poll (after a restore, afresh).
struct Throttle {
    per_second: f64,
    started: Option<Instant>,
    emitted: u64,
}

impl Throttle {
    /// How many numbers may go out now (at least one is due at the start).
    fn allowance(&mut self) -> u64 {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = (started.elapsed().as_secs_f64() * self.per_second) as u64 + 1;
        due.saturating_sub(self.emitted)
    }

    /// How long until the next number is due.
    fn wait(&self) -> Duration {
        let next = (self.emitted as f64) / self.per_second;
        let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        Duration::from_secs_f64((next - elapsed).clamp(0.001, 0.1))
    }
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
            throttle: None,
        }
    }

    /// Like [`factory`](Self::factory), but the source as a whole emits about
    /// `per_second` numbers per second (shared evenly by its subtasks), so that a
    /// long sequence makes a long-running job.
    pub fn throttled(
        start: i64,
        end: i64,
        per_second: u64,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        let unthrottled = Self::factory(start, end);
        move |info: &SubtaskInfo| Self {
            throttle: Some(Throttle {
                per_second: (per_second.max(1) as f64 / info.parallelism.max(1) as f64),
                started: None,
                emitted: 0,
            }),
            ..unthrottled(info)
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
        if let Some(throttle) = &mut self.throttle {
            budget = budget.min(throttle.allowance());
            if budget == 0 && !self.position.is_finished() {
                return Ok(SourcePoll::Idle(throttle.wait()));
            }
        }
        let before = budget;
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
        if let Some(throttle) = &mut self.throttle {
            throttle.emitted += before - budget;
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

//! The source contract and event-time assignment.

use crate::operator::{OperatorContext, SnapshotContext};
use crate::{Result, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use weir_checkpoint::CheckpointId;

/// Identifies one split (partition, file, id range) of a source subtask, for
/// per-split watermarks.
pub type SplitId = u32;

/// What a call to [`Source::poll`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourcePoll {
    /// Records were emitted (or may be soon): poll again at once.
    Ready,
    /// Nothing is available now; the runtime waits up to this long before polling
    /// again (it wakes earlier for checkpoints and cancellation).
    Idle(Duration),
    /// The source is exhausted (bounded input); the runtime ends the job's input here.
    Finished,
}

/// Where a source writes records. Records are tagged with the split they came from
/// (default split 0), so watermarks can be tracked per split.
#[derive(Debug)]
pub struct SourceOutput<T> {
    pub(crate) records: Vec<T>,
    /// `(split, first index)` for each run of records from one split.
    pub(crate) segments: Vec<(SplitId, usize)>,
    pub(crate) batch_size: usize,
    pub(crate) announced: Vec<SplitId>,
}

impl<T> SourceOutput<T> {
    /// An output asking for about `batch_size` records per poll: the runtime makes
    /// one per source subtask; tests and tools drive a source by hand with it.
    pub fn new(batch_size: usize) -> Self {
        Self {
            records: Vec::with_capacity(batch_size),
            segments: Vec::new(),
            batch_size,
            announced: Vec::new(),
        }
    }

    /// Emits one record of the current split.
    #[inline]
    pub fn push(&mut self, record: T) {
        self.records.push(record);
    }

    /// Emits records of the current split.
    #[inline]
    pub fn extend(&mut self, records: impl IntoIterator<Item = T>) {
        self.records.extend(records);
    }

    /// Records after this call come from `split`.
    pub fn switch_split(&mut self, split: SplitId) {
        let at = self.records.len();
        match self.segments.last_mut() {
            Some(last) if last.1 == at => last.0 = split,
            _ => self.segments.push((split, at)),
        }
    }

    /// Declares a split this subtask reads, so an empty split holds the watermark back
    /// until it becomes idle. Splits that push records are declared implicitly.
    pub fn announce_split(&mut self, split: SplitId) {
        self.announced.push(split);
    }

    /// How many records the runtime would like per poll.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Removes and returns the records emitted so far (split tags are dropped).
    pub fn take_records(&mut self) -> Vec<T> {
        self.segments.clear();
        self.announced.clear();
        std::mem::take(&mut self.records)
    }

    /// Moves what `inner` emitted into this output as one record per run of records
    /// from one split, made by `batch` (in order), and passes on the splits `inner`
    /// announced: how a source of batches wraps a source of single records.
    ///
    /// # Errors
    /// The first error of `batch`; `inner` is left empty either way.
    pub fn push_runs<U, E>(
        &mut self,
        inner: &mut SourceOutput<U>,
        mut batch: impl FnMut(std::vec::Drain<'_, U>) -> Result<T, E>,
    ) -> Result<(), E> {
        self.announced.append(&mut inner.announced);
        if inner.segments.is_empty() && inner.records.is_empty() {
            return Ok(());
        }
        let mut segments = std::mem::take(&mut inner.segments);
        // Records before the first split switch come from split 0, as for any source.
        if segments.first().is_none_or(|s| s.1 != 0) {
            segments.insert(0, (0, 0));
        }
        for (k, &(split, start)) in segments.iter().enumerate() {
            let end = segments
                .get(k + 1)
                .map_or(inner.records.len() + start, |s| s.1);
            // Runs are taken from the front: `start` of this run is now index 0.
            let len = end.saturating_sub(start).min(inner.records.len());
            if len == 0 {
                continue;
            }
            self.switch_split(split);
            match batch(inner.records.drain(..len)) {
                Ok(record) => self.records.push(record),
                Err(e) => {
                    inner.records.clear();
                    return Err(e);
                }
            }
        }
        inner.records.clear();
        Ok(())
    }

    /// Records emitted in this poll so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing has been emitted in this poll.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A source of records, instantiated once per subtask.
pub trait Source: Send + 'static {
    /// Record type.
    type Out: Send + 'static;

    /// Called once on the task thread before the first poll; restored operator state
    /// (the source position) is in `cx`.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Emits up to about `out.batch_size()` records.
    fn poll(&mut self, out: &mut SourceOutput<Self::Out>) -> Result<SourcePoll>;

    /// Captures the source position into the checkpoint (operator state). Called
    /// between polls, just before the barrier is emitted.
    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Checkpoint `id` is complete.
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let _ = id;
        Ok(())
    }
}

/// Extracts a record's event time.
pub type TimestampAssigner<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// How a source derives watermarks from event times.
pub struct WatermarkStrategy<T> {
    pub(crate) assigner: Option<TimestampAssigner<T>>,
    pub(crate) out_of_orderness: Duration,
    pub(crate) idle_timeout: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            assigner: self.assigner.clone(),
            out_of_orderness: self.out_of_orderness,
            idle_timeout: self.idle_timeout,
        }
    }
}

impl<T> std::fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("event_time", &self.assigner.is_some())
            .field("out_of_orderness", &self.out_of_orderness)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl<T> WatermarkStrategy<T> {
    /// No event time: records carry no timestamp and no watermark is emitted until the
    /// end of input.
    pub fn none() -> Self {
        Self {
            assigner: None,
            out_of_orderness: Duration::ZERO,
            idle_timeout: None,
        }
    }

    /// Event time from `assigner`; watermark = max event time seen − `bound` − 1 ms
    /// (records up to `bound` late are on time), per split, minimum over splits.
    pub fn bounded_out_of_orderness(
        bound: Duration,
        assigner: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        Self {
            assigner: Some(Arc::new(assigner)),
            out_of_orderness: bound,
            idle_timeout: None,
        }
    }

    /// A split that emits nothing for `timeout` (processing time) stops holding the
    /// watermark back until it emits again; a subtask whose splits are all idle marks
    /// its outputs idle.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of batches wrapping a source of records keeps each split's run
    /// apart (one batch per run, in order, tagged with its split) and passes on the
    /// splits announced.
    #[test]
    fn runs_of_one_split_become_one_record_each() {
        let mut inner = SourceOutput::new(16);
        inner.push(1);
        inner.switch_split(7);
        inner.push(2);
        inner.push(3);
        inner.announce_split(9);
        inner.switch_split(8);
        inner.push(4);
        let mut out: SourceOutput<Vec<i32>> = SourceOutput::new(16);
        out.push_runs(&mut inner, |run| Ok::<_, ()>(run.collect()))
            .unwrap();
        assert_eq!(out.records, vec![vec![1], vec![2, 3], vec![4]]);
        assert_eq!(out.segments, vec![(0, 0), (7, 1), (8, 2)]);
        assert_eq!(out.announced, vec![9]);
        assert!(inner.is_empty());

        inner.push(5);
        inner.switch_split(3);
        inner.push(6);
        let failed = out.push_runs(&mut inner, |run| {
            let run: Vec<i32> = run.collect();
            if run == [6] {
                Err("bad")
            } else {
                Ok(run)
            }
        });
        assert_eq!(failed, Err("bad"));
        assert!(inner.is_empty());
    }
}

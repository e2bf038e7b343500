//! A bounded source over a collection and a sink that collects into memory: the
//! building blocks of tests (re-exported by weir-sources and weir-sinks).

use crate::operator::{OperatorContext, SnapshotContext};
use crate::source::{Source, SourceOutput, SourcePoll};
use crate::{Result, Sink, SubtaskInfo};
use std::sync::{Arc, Mutex};
use weir_state::{decode, encode};

/// Emits a fixed list of records. Subtask `i` of `p` emits the records at positions
/// `i, i + p, i + 2p, …`; its position is checkpointed, so a restored job resumes
/// after the last record covered by the checkpoint.
pub struct CollectionSource<T> {
    records: Arc<Vec<T>>,
    next: usize,
    step: usize,
    per_poll: usize,
}

impl<T: Clone + Send + Sync + 'static> CollectionSource<T> {
    /// A factory for `Stream::source`: each subtask gets its share of `records`.
    pub fn factory(records: Vec<T>) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        Self::factory_with_poll_size(records, usize::MAX)
    }

    /// Like [`CollectionSource::factory`], emitting at most `per_poll` records per poll
    /// (to interleave records with barriers and watermarks in tests).
    pub fn factory_with_poll_size(
        records: Vec<T>,
        per_poll: usize,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        let records = Arc::new(records);
        move |info: &SubtaskInfo| Self {
            records: records.clone(),
            next: info.index,
            step: info.parallelism,
            per_poll: per_poll.max(1),
        }
    }
}

const POSITION: &str = "collection-position";

impl<T: Clone + Send + Sync + 'static> Source for CollectionSource<T> {
    type Out = T;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        if let Some(bytes) = cx.restored_operator.get(POSITION) {
            self.next = decode(POSITION, bytes)?;
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<T>) -> Result<SourcePoll> {
        let limit = out.batch_size().min(self.per_poll);
        let mut emitted = 0;
        while self.next < self.records.len() && emitted < limit {
            out.push(self.records[self.next].clone());
            self.next += self.step;
            emitted += 1;
        }
        Ok(if self.next >= self.records.len() {
            SourcePoll::Finished
        } else {
            SourcePoll::Ready
        })
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(POSITION, encode(POSITION, &self.next)?);
        Ok(())
    }
}

/// Collects every record into shared memory.
pub struct CollectSink<T> {
    target: Arc<Mutex<Vec<T>>>,
}

/// The records a [`CollectSink`] received.
#[derive(Clone)]
pub struct Collected<T> {
    target: Arc<Mutex<Vec<T>>>,
}

impl<T> Collected<T> {
    /// Takes the records collected so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.target.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The number of records collected so far.
    pub fn len(&self) -> usize {
        self.target.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Send + 'static> CollectSink<T> {
    /// A sink factory and the handle to read what it collected.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (
        impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static,
        Collected<T>,
    ) {
        let target = Arc::new(Mutex::new(Vec::new()));
        let handle = Collected {
            target: target.clone(),
        };
        (
            move |_: &SubtaskInfo| Self {
                target: target.clone(),
            },
            handle,
        )
    }
}

impl<T: Send + 'static> Sink for CollectSink<T> {
    type In = T;

    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(batch);
        Ok(())
    }
}

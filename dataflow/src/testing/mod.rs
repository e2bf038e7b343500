//! A bounded source over a collection and a sink that collects into memory: the
//! building blocks of tests (re-exported by weir-sources and weir-sinks).

pub mod restore;

use crate::operator::{OperatorContext, SnapshotContext};
use crate::source::{Source, SourceOutput, SourcePoll};
use crate::{Result, Sink, SubtaskInfo};
use std::sync::{Arc, Mutex};
use weir_state::{decode, encode};

/// Subtask `index` of `parallelism` of an operator named (and uid'd) `operator`, with
/// its share of the default key groups: for tests that build a source or sink by hand.
pub fn subtask_info(operator: &str, index: usize, parallelism: usize) -> SubtaskInfo {
    let max = weir_state::MaxParallelism::DEFAULT;
    SubtaskInfo {
        operator: operator.into(),
        uid: operator.into(),
        index,
        parallelism,
        max_parallelism: max,
        key_groups: weir_state::KeyGroupRange::for_subtask(max, parallelism, index),
    }
}

/// Emits a fixed list of records. Subtask `i` of `p` emits the records at positions
/// `i, i + p, i + 2p, …` (a stripe); its position is checkpointed, so a restored job
/// resumes after the last record covered by the checkpoint. After a change of
/// parallelism the unfinished stripes of all previous subtasks are dealt out
/// round-robin, so every record is still emitted exactly once.
pub struct CollectionSource<T> {
    records: Arc<Vec<T>>,
    /// Unfinished stripes `(next position, step)`; the first is being read.
    stripes: Vec<(usize, usize)>,
    per_poll: usize,
    pause: Option<std::time::Duration>,
    /// Stays idle instead of finishing once every record is emitted.
    hold_open: bool,
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
        Self::factory_throttled(records, per_poll, None)
    }

    /// Like [`CollectionSource::factory_with_poll_size`], pausing up to `pause` after
    /// each poll (so tests can checkpoint, fail and stop a job mid-stream).
    pub fn factory_throttled(
        records: Vec<T>,
        per_poll: usize,
        pause: Option<std::time::Duration>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        Self::factory_of(records, per_poll, pause, false)
    }

    /// Like [`CollectionSource::factory_throttled`], but the source never finishes:
    /// once its records are emitted it stays idle until the job is stopped. A test
    /// can then stop the job when it chooses, however slowly the machine runs,
    /// without the job ending first.
    pub fn factory_held_open(
        records: Vec<T>,
        per_poll: usize,
        pause: Option<std::time::Duration>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        Self::factory_of(records, per_poll, pause, true)
    }

    fn factory_of(
        records: Vec<T>,
        per_poll: usize,
        pause: Option<std::time::Duration>,
        hold_open: bool,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        let records = Arc::new(records);
        move |info: &SubtaskInfo| Self {
            records: records.clone(),
            stripes: vec![(info.index, info.parallelism)],
            per_poll: per_poll.max(1),
            pause,
            hold_open,
        }
    }
}

const POSITION: &str = "collection-position";

impl<T: Clone + Send + Sync + 'static> Source for CollectionSource<T> {
    type Out = T;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        if let Some(bytes) = cx.restored_operator.get(POSITION) {
            self.stripes = decode(POSITION, bytes)?;
        } else if !cx.restored_operator_all.is_empty() {
            let mut all = Vec::new();
            for state in &cx.restored_operator_all {
                if let Some(bytes) = state.get(POSITION) {
                    all.extend(decode::<Vec<(usize, usize)>>(POSITION, bytes)?);
                }
            }
            let (index, parallelism) = (cx.subtask.index, cx.subtask.parallelism);
            self.stripes = all
                .into_iter()
                .enumerate()
                .filter(|(k, _)| k % parallelism == index)
                .map(|(_, stripe)| stripe)
                .collect();
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<T>) -> Result<SourcePoll> {
        let limit = out.batch_size().min(self.per_poll);
        let mut emitted = 0;
        while emitted < limit {
            let Some((next, step)) = self.stripes.first_mut() else {
                break;
            };
            if *next >= self.records.len() {
                self.stripes.remove(0);
                continue;
            }
            out.push(self.records[*next].clone());
            *next += *step;
            emitted += 1;
        }
        self.stripes.retain(|(next, _)| *next < self.records.len());
        Ok(match self.pause {
            _ if self.stripes.is_empty() && self.hold_open => {
                SourcePoll::Idle(self.pause.unwrap_or(std::time::Duration::from_millis(10)))
            }
            _ if self.stripes.is_empty() => SourcePoll::Finished,
            Some(pause) => SourcePoll::Idle(pause),
            None => SourcePoll::Ready,
        })
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(POSITION, encode(POSITION, &self.stripes)?);
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

/// Kafka Streams' sliding windows of `records` (`(key, time, value)`) by brute force,
/// the reference of [`crate::window::WindowAssigner::TimeDifference`]: per key, a
/// left window `[t - difference, t]` for every record time `t`, and a right window
/// `[t + 1, t + 1 + difference]` for every record time with a later record in it,
/// each once by start, with the count and sum of the values of the records in it.
/// Rows are `(key, start, end, count, sum)`, the end exclusive (the last millisecond
/// plus one), sorted.
pub fn time_difference_windows<K: Ord + Clone>(
    records: &[(K, i64, i64)],
    difference: i64,
) -> Vec<(K, i64, i64, u64, i64)> {
    let d = difference;
    let mut per_key: std::collections::BTreeMap<K, Vec<(i64, i64)>> = Default::default();
    for (k, t, v) in records {
        per_key.entry(k.clone()).or_default().push((*t, *v));
    }
    let mut out = Vec::new();
    for (k, records) in per_key {
        let times: std::collections::BTreeSet<i64> = records.iter().map(|r| r.0).collect();
        let mut starts = std::collections::BTreeSet::new();
        for &t in &times {
            starts.insert(t - d);
            if times.range(t + 1..=t + 1 + d).next().is_some() {
                starts.insert(t + 1);
            }
        }
        for s in starts {
            let inside = records.iter().filter(|r| s <= r.0 && r.0 <= s + d);
            let (c, sum) = inside.fold((0u64, 0i64), |(c, sum), r| (c + 1, sum + r.1));
            out.push((k.clone(), s, s + d + 1, c, sum));
        }
    }
    out.sort();
    out
}

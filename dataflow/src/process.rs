//! Keyed process functions: per-record logic with keyed state and event-time and
//! processing-time timers (Flink's `KeyedProcessFunction`).

use crate::graph::Data;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::{
    DataflowError, KeySelector, KeyedStream, Operator, Result, Stream, SubtaskInfo, Timestamp,
    TimestampAssigner,
};
use std::sync::Arc;
use weir_state::{decode, StateKey};

pub use weir_state::TimeDomain;

/// Timers of one subtask, per key, deduplicated (one timer per key, time and domain),
/// on the heap or in RocksDB (with the subtask's keyed state).
pub struct TimerService<K> {
    timers: weir_state::Timers<K>,
    /// The first failure of a registration or deletion, reported when the function
    /// that made it returns.
    failure: Option<weir_state::StateError>,
}

impl<K: StateKey> Default for TimerService<K> {
    fn default() -> Self {
        Self {
            timers: weir_state::Timers::new(TIMERS),
            failure: None,
        }
    }
}

impl<K: StateKey> TimerService<K> {
    /// Registers a timer for `key` at `time`.
    pub fn register(&mut self, domain: TimeDomain, key: K, time: Timestamp) {
        if let Err(e) = self.timers.register(domain, key, time.0) {
            self.failure.get_or_insert(e);
        }
    }

    /// Deletes a timer, if registered.
    pub fn delete(&mut self, domain: TimeDomain, key: &K, time: Timestamp) {
        if let Err(e) = self.timers.delete(domain, key, time.0) {
            self.failure.get_or_insert(e);
        }
    }

    /// Removes and returns the earliest timer due at `now`.
    ///
    /// # Errors
    /// A RocksDB read or write that fails.
    pub fn pop_due(
        &mut self,
        domain: TimeDomain,
        now: Timestamp,
    ) -> Result<Option<(K, Timestamp)>> {
        Ok(self
            .timers
            .pop_due(domain, now.0)?
            .map(|(key, time)| (key, Timestamp(time))))
    }

    /// The first failure of a registration or deletion since the last call.
    pub(crate) fn take_failure(&mut self) -> Result<()> {
        match self.failure.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Opens the timers in the subtask's backend and restores those of its key
    /// groups.
    pub(crate) fn open(&mut self, cx: &OperatorContext) -> Result<()> {
        self.timers = weir_state::Timers::in_backend(&cx.state_backend, TIMERS)?;
        let restored = cx.restored_chunks(TIMERS);
        self.timers
            .restore_chunks(restored, cx.subtask.key_groups, cx.subtask.max_parallelism)?;
        for states in cx.restored_keyed.values() {
            if let Some(bytes) = states.get(LEGACY_TIMERS) {
                let timers: Vec<(K, i64, TimeDomain)> = decode(LEGACY_TIMERS, bytes)?;
                for (key, time, domain) in timers {
                    self.timers.register(domain, key, time)?;
                }
            }
        }
        Ok(())
    }

    /// Checkpoints the timers. The keyed states beside them are flushed before this
    /// and frozen after it by the runtime: one RocksDB checkpoint covers them all.
    pub(crate) fn snapshot(
        &mut self,
        max: weir_state::MaxParallelism,
        cx: &mut SnapshotContext,
    ) -> Result<()> {
        self.timers.flush()?;
        match self.timers.snapshot(max)? {
            weir_state::TimersSnapshot::Encoded(encoded) => cx.put_keyed(TIMERS, encoded),
            weir_state::TimersSnapshot::Frozen(frozen) => cx.put_frozen_boxed(frozen),
        }
        Ok(())
    }
}

/// What a process function can do while handling a record or a timer.
pub struct ProcessContext<'a, K, O> {
    key: &'a K,
    timestamp: Option<Timestamp>,
    watermark: Timestamp,
    timers: &'a mut TimerService<K>,
    out: &'a mut Output<O>,
}

impl<'a, K: StateKey, O> ProcessContext<'a, K, O> {
    /// The context of a record or timer of `key`.
    pub(crate) fn new(
        key: &'a K,
        timestamp: Option<Timestamp>,
        watermark: Timestamp,
        timers: &'a mut TimerService<K>,
        out: &'a mut Output<O>,
    ) -> Self {
        Self {
            key,
            timestamp,
            watermark,
            timers,
            out,
        }
    }

    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The event time of the current record (or the firing timer's time).
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The current watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Emits a record.
    pub fn emit(&mut self, record: O) {
        self.out.push(record);
    }

    /// Registers an event-time timer for the current key.
    pub fn register_event_time_timer(&mut self, time: Timestamp) {
        self.timers
            .register(TimeDomain::EventTime, self.key.clone(), time);
    }

    /// Registers a processing-time timer for the current key.
    pub fn register_processing_time_timer(&mut self, time: Timestamp) {
        self.timers
            .register(TimeDomain::ProcessingTime, self.key.clone(), time);
    }

    /// Deletes a timer of the current key.
    pub fn delete_timer(&mut self, domain: TimeDomain, time: Timestamp) {
        self.timers.delete(domain, self.key, time);
    }
}

/// Per-key logic with state and timers. Its keyed states are handles the function
/// asked for when it was made ([`KeyedStream::process`]): the runtime restores,
/// flushes and snapshots them.
pub trait KeyedProcessFunction<K, In>: Send + 'static {
    /// Output record type.
    type Out: Data;

    /// Handles one record of `cx.key()`.
    fn process(&mut self, value: In, cx: &mut ProcessContext<'_, K, Self::Out>) -> Result<()>;

    /// A timer of `cx.key()` fired at `time`.
    fn on_timer(
        &mut self,
        time: Timestamp,
        domain: TimeDomain,
        cx: &mut ProcessContext<'_, K, Self::Out>,
    ) -> Result<()> {
        let _ = (time, domain, cx);
        Ok(())
    }
}

/// Makes a subtask's process function when it opens.
type ProcessFactory<P> = Arc<dyn Fn(&mut OperatorContext) -> Result<P> + Send + Sync>;

/// The process function, once the operator is open.
#[inline]
fn opened<P>(function: &mut Option<P>) -> Result<&mut P> {
    function.as_mut().ok_or_else(|| DataflowError::TaskFailed {
        task: "keyed process".to_string(),
        message: "the process function was called before its operator was opened".to_string(),
    })
}

/// The timers' state name (canonical form: [`weir_state::TimerEntry`] by key group).
const TIMERS: &str = "process-timers.ordered";
/// The timers' state name in snapshots of earlier versions (`Vec<(K, i64,
/// TimeDomain)>` by key group), still restored.
const LEGACY_TIMERS: &str = "process-timers";

/// The operator running a [`KeyedProcessFunction`].
pub struct KeyedProcess<K, T, P> {
    /// Made in `open`, where its keyed states are registered.
    function: Option<P>,
    make: ProcessFactory<P>,
    key: KeySelector<T, K>,
    timestamp: Option<TimestampAssigner<T>>,
    timers: TimerService<K>,
    watermark: Timestamp,
    max_parallelism: weir_state::MaxParallelism,
}

impl<K, T, P> Operator for KeyedProcess<K, T, P>
where
    K: StateKey,
    T: Send + 'static,
    P: KeyedProcessFunction<K, T>,
{
    type In = T;
    type Out = P::Out;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.max_parallelism = cx.subtask.max_parallelism;
        self.function = Some((self.make)(cx)?);
        self.timers.open(cx)
    }

    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<P::Out>) -> Result<()> {
        let function = opened(&mut self.function)?;
        for value in input.drain(..) {
            let key = (self.key)(&value);
            let timestamp = self.timestamp.as_ref().map(|ts| ts(&value));
            let mut cx = ProcessContext {
                key: &key,
                timestamp,
                watermark: self.watermark,
                timers: &mut self.timers,
                out,
            };
            function.process(value, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        self.watermark = watermark;
        let function = opened(&mut self.function)?;
        while let Some((key, time)) = self.timers.pop_due(TimeDomain::EventTime, watermark)? {
            let mut cx = ProcessContext {
                key: &key,
                timestamp: Some(time),
                watermark,
                timers: &mut self.timers,
                out,
            };
            function.on_timer(time, TimeDomain::EventTime, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        let function = opened(&mut self.function)?;
        while let Some((key, time)) = self.timers.pop_due(TimeDomain::ProcessingTime, now)? {
            let mut cx = ProcessContext {
                key: &key,
                timestamp: Some(time),
                watermark: self.watermark,
                timers: &mut self.timers,
                out,
            };
            function.on_timer(time, TimeDomain::ProcessingTime, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        self.timers.snapshot(self.max_parallelism, cx)
    }
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    /// Runs a keyed process function. `factory` makes each subtask's instance when
    /// the subtask opens, and asks the context for the function's keyed states
    /// ([`OperatorContext::keyed_state`]); `cx.subtask` says where it runs.
    ///
    /// # Errors
    /// The job fails with the factory's error.
    pub fn process<P, F>(&self, name: &str, factory: F) -> Stream<P::Out>
    where
        P: KeyedProcessFunction<K, T>,
        F: Fn(&mut OperatorContext) -> Result<P> + Send + Sync + 'static,
    {
        let key = self.key_selector();
        let timestamp = self.stream().timestamps();
        let make: ProcessFactory<P> = Arc::new(factory);
        self.transform(name, move |info: &SubtaskInfo| KeyedProcess {
            function: None,
            make: make.clone(),
            key: key.clone(),
            timestamp: timestamp.clone(),
            timers: TimerService::default(),
            watermark: Timestamp::MIN,
            max_parallelism: info.max_parallelism,
        })
    }
}

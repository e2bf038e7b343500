//! Keyed process functions: per-record logic with keyed state and event-time and
//! processing-time timers (Flink's `KeyedProcessFunction`).

use crate::graph::Data;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::{
    KeySelector, KeyedStream, Operator, Result, Stream, SubtaskInfo, Timestamp, TimestampAssigner,
};
use weir_state::{decode, StateKey, StateTable};

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
    fn take_failure(&mut self) -> Result<()> {
        match self.failure.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
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

impl<K: StateKey, O> ProcessContext<'_, K, O> {
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

/// Object-safe access to a keyed state table for the runtime (snapshot, restore).
pub trait KeyedStateStore {
    /// The state's name.
    fn state_name(&self) -> String;
    /// Moves the (still empty) state into the subtask's backend; called before
    /// restore.
    ///
    /// # Errors
    /// The backend cannot be opened.
    fn open_state(&mut self, backend: &weir_state::KeyedBackend) -> weir_state::Result<()>;
    /// Writes pending changes to the backend (RocksDB's record cache).
    ///
    /// # Errors
    /// A RocksDB write that fails.
    fn flush_state(&mut self) -> weir_state::Result<()>;
    /// The synchronous part of a snapshot: freezes the state copy-on-write (heap) or
    /// takes a RocksDB checkpoint.
    ///
    /// # Errors
    /// A RocksDB write or checkpoint that fails.
    fn freeze_state(&mut self) -> weir_state::Result<Box<dyn weir_state::FrozenKeyed>>;
    /// Restores the key groups of `range` from the chunks of a snapshot.
    fn restore_state(
        &mut self,
        chunks: &[(weir_state::KeyGroup, &[u8])],
        range: weir_state::KeyGroupRange,
        max: weir_state::MaxParallelism,
    ) -> weir_state::Result<usize>;
}

impl<K: StateKey, V: weir_state::StateValue> KeyedStateStore for StateTable<K, V> {
    fn state_name(&self) -> String {
        self.name().to_string()
    }
    fn open_state(&mut self, backend: &weir_state::KeyedBackend) -> weir_state::Result<()> {
        if backend.is_rocksdb() {
            *self = StateTable::in_backend(backend, self.name().to_string(), Vec::new())?;
        }
        Ok(())
    }
    fn flush_state(&mut self) -> weir_state::Result<()> {
        self.flush()
    }
    fn freeze_state(&mut self) -> weir_state::Result<Box<dyn weir_state::FrozenKeyed>> {
        Ok(Box::new(self.freeze()?))
    }
    fn restore_state(
        &mut self,
        chunks: &[(weir_state::KeyGroup, &[u8])],
        range: weir_state::KeyGroupRange,
        max: weir_state::MaxParallelism,
    ) -> weir_state::Result<usize> {
        self.restore_chunks(chunks.iter().copied(), range, max)
    }
}

/// A state with a time-to-live is its table of expiring values for the runtime, but
/// opens in the backend with its time-to-live and drops expired values before
/// snapshots.
macro_rules! ttl_state_store {
    ([$($generics:tt)*] $state:ident $(< $($param:ident),+ >)?) => {
        impl<$($generics)*> KeyedStateStore for weir_state::$state$(<$($param),+>)? {
            fn state_name(&self) -> String {
                (**self).state_name()
            }
            fn open_state(&mut self, backend: &weir_state::KeyedBackend) -> weir_state::Result<()> {
                if backend.is_rocksdb() {
                    *self = weir_state::$state::in_backend(
                        backend,
                        self.name().to_string(),
                        self.ttl(),
                    )?;
                }
                Ok(())
            }
            fn flush_state(&mut self) -> weir_state::Result<()> {
                // On the heap, expired values are dropped before every snapshot;
                // RocksDB's compaction filter drops them there.
                self.cleanup_before_snapshot()?;
                (**self).flush_state()
            }
            fn freeze_state(&mut self) -> weir_state::Result<Box<dyn weir_state::FrozenKeyed>> {
                (**self).freeze_state()
            }
            fn restore_state(
                &mut self,
                chunks: &[(weir_state::KeyGroup, &[u8])],
                range: weir_state::KeyGroupRange,
                max: weir_state::MaxParallelism,
            ) -> weir_state::Result<usize> {
                (**self).restore_state(chunks, range, max)
            }
        }
    };
}
ttl_state_store!([K: StateKey, V: weir_state::StateValue] TtlValueState<K, V>);
ttl_state_store!([K: StateKey, V: weir_state::StateValue] TtlListState<K, V>);
ttl_state_store!([K: StateKey, UK: StateKey, V: weir_state::StateValue] TtlMapState<K, UK, V>);

impl<K: StateKey, V: weir_state::StateValue> KeyedStateStore for weir_state::LruValueState<K, V> {
    fn state_name(&self) -> String {
        self.table().name().to_string()
    }
    fn open_state(&mut self, backend: &weir_state::KeyedBackend) -> weir_state::Result<()> {
        if backend.is_rocksdb() {
            *self = weir_state::LruValueState::in_backend(
                backend,
                self.table().name().to_string(),
                self.max_entries(),
            )?;
        }
        Ok(())
    }
    fn flush_state(&mut self) -> weir_state::Result<()> {
        self.flush()
    }
    fn freeze_state(&mut self) -> weir_state::Result<Box<dyn weir_state::FrozenKeyed>> {
        Ok(Box::new(self.freeze()?))
    }
    fn restore_state(
        &mut self,
        chunks: &[(weir_state::KeyGroup, &[u8])],
        range: weir_state::KeyGroupRange,
        max: weir_state::MaxParallelism,
    ) -> weir_state::Result<usize> {
        self.restore_chunks(chunks.iter().copied(), range, max)
    }
}

/// Per-key logic with state and timers.
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

    /// The function's keyed state tables, snapshotted and restored by the runtime.
    fn states(&mut self) -> Vec<&mut dyn KeyedStateStore> {
        Vec::new()
    }
}

/// The timers' state name (canonical form: [`weir_state::TimerEntry`] by key group).
const TIMERS: &str = "process-timers.ordered";
/// The timers' state name in snapshots of earlier versions (`Vec<(K, i64,
/// TimeDomain)>` by key group), still restored.
const LEGACY_TIMERS: &str = "process-timers";

/// The operator running a [`KeyedProcessFunction`].
pub struct KeyedProcess<K, T, P> {
    function: P,
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
        for state in self.function.states() {
            state.open_state(&cx.state_backend)?;
            let name = state.state_name();
            let restored = cx.restored_chunks(&name);
            state.restore_state(&restored, cx.subtask.key_groups, cx.subtask.max_parallelism)?;
        }
        self.timers.timers = weir_state::Timers::in_backend(&cx.state_backend, TIMERS)?;
        let restored = cx.restored_chunks(TIMERS);
        self.timers.timers.restore_chunks(
            restored,
            cx.subtask.key_groups,
            cx.subtask.max_parallelism,
        )?;
        for states in cx.restored_keyed.values() {
            if let Some(bytes) = states.get(LEGACY_TIMERS) {
                let timers: Vec<(K, i64, TimeDomain)> = decode(LEGACY_TIMERS, bytes)?;
                for (key, time, domain) in timers {
                    self.timers.timers.register(domain, key, time)?;
                }
            }
        }
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<P::Out>) -> Result<()> {
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
            self.function.process(value, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        self.watermark = watermark;
        while let Some((key, time)) = self.timers.pop_due(TimeDomain::EventTime, watermark)? {
            let mut cx = ProcessContext {
                key: &key,
                timestamp: Some(time),
                watermark,
                timers: &mut self.timers,
                out,
            };
            self.function
                .on_timer(time, TimeDomain::EventTime, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<P::Out>) -> Result<()> {
        while let Some((key, time)) = self.timers.pop_due(TimeDomain::ProcessingTime, now)? {
            let mut cx = ProcessContext {
                key: &key,
                timestamp: Some(time),
                watermark: self.watermark,
                timers: &mut self.timers,
                out,
            };
            self.function
                .on_timer(time, TimeDomain::ProcessingTime, &mut cx)?;
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        let max = self.max_parallelism;
        for state in self.function.states() {
            state.flush_state()?;
        }
        // Every write in RocksDB before the first freeze: one RocksDB checkpoint for
        // all of them.
        self.timers.timers.flush()?;
        for state in self.function.states() {
            cx.put_frozen_boxed(state.freeze_state()?);
        }
        match self.timers.timers.snapshot(max)? {
            weir_state::TimersSnapshot::Encoded(encoded) => cx.put_keyed(TIMERS, encoded),
            weir_state::TimersSnapshot::Frozen(frozen) => cx.put_frozen_boxed(frozen),
        }
        Ok(())
    }
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    /// Runs a keyed process function; `factory` creates each subtask's instance.
    pub fn process<P, F>(&self, name: &str, factory: F) -> Stream<P::Out>
    where
        P: KeyedProcessFunction<K, T>,
        F: Fn(&SubtaskInfo) -> P + Send + Sync + 'static,
    {
        let key = self.key_selector();
        let timestamp = self.stream().timestamps();
        self.transform(name, move |info: &SubtaskInfo| KeyedProcess {
            function: factory(info),
            key: key.clone(),
            timestamp: timestamp.clone(),
            timers: TimerService::default(),
            watermark: Timestamp::MIN,
            max_parallelism: info.max_parallelism,
        })
    }
}

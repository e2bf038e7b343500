//! Timers in RocksDB when weir-state is built without its `rocksdb` feature: they
//! cannot be created (their store cannot), so every method is unreachable.

use crate::rocks::{Never, SubtaskStore};
use crate::rocks_table::RocksFrozen;
use crate::timers::{TimeDomain, TimerEntry};
use crate::{KeyGroupRange, MaxParallelism, StateError};
use std::marker::PhantomData;
use std::sync::Arc;

pub(crate) struct RocksTimers<K> {
    never: Never,
    _key: PhantomData<fn() -> K>,
}

impl<K> RocksTimers<K> {
    pub(crate) fn new(
        store: Arc<SubtaskStore>,
        _: Arc<str>,
        _: MaxParallelism,
        _: KeyGroupRange,
    ) -> Result<Self, StateError> {
        match store.never {}
    }
    pub(crate) fn register(&mut self, _: TimeDomain, _: &K, _: i64) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn delete(&mut self, _: TimeDomain, _: &K, _: i64) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn pop_due(
        &mut self,
        _: TimeDomain,
        _: i64,
    ) -> Result<Option<(K, i64)>, StateError> {
        match self.never {}
    }
    pub(crate) fn apply_pending(&mut self) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn freeze(&mut self) -> Result<RocksFrozen<TimerEntry<K>, ()>, StateError> {
        match self.never {}
    }
}

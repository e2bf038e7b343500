//! The RocksDB table when weir-state is built without its `rocksdb` feature: it
//! cannot be created (its store cannot), so every method is unreachable.

use crate::rocks::{Never, SubtaskStore};
use crate::{KeyGroup, KeyGroupRange, KeyedSnapshot, MaxParallelism, StateError};
use std::marker::PhantomData;
use std::sync::Arc;

pub(crate) struct RocksTable<K, V> {
    never: Never,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> RocksTable<K, V> {
    pub(crate) fn new(
        store: Arc<SubtaskStore>,
        _: Arc<str>,
        _: u64,
        _: Vec<u8>,
        _: MaxParallelism,
        _: KeyGroupRange,
        _: usize,
    ) -> Result<Self, StateError> {
        match store.never {}
    }
    pub(crate) fn name(&self) -> &str {
        match self.never {}
    }
    pub(crate) fn get(&mut self, _: &K) -> Result<Option<&V>, StateError> {
        match self.never {}
    }
    pub(crate) fn get_mut(&mut self, _: &K) -> Result<Option<&mut V>, StateError> {
        match self.never {}
    }
    pub(crate) fn get_or_insert_with_flag(
        &mut self,
        _: K,
        _: impl FnOnce() -> V,
    ) -> Result<(&mut V, bool), StateError> {
        match self.never {}
    }
    pub(crate) fn insert(&mut self, _: K, _: V) -> Result<Option<V>, StateError> {
        match self.never {}
    }
    pub(crate) fn remove(&mut self, _: &K) -> Result<Option<V>, StateError> {
        match self.never {}
    }
    pub(crate) fn len(&self) -> usize {
        match self.never {}
    }
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn compact(&mut self) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn for_each(&mut self, _: impl FnMut(&K, &V)) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn retain(&mut self, _: impl FnMut(&K, &mut V) -> bool) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn clear(&mut self) -> Result<(), StateError> {
        match self.never {}
    }
    pub(crate) fn freeze(&mut self) -> Result<RocksFrozen<K, V>, StateError> {
        match self.never {}
    }
    pub(crate) fn restore_entries(
        &mut self,
        _: KeyGroup,
        _: Vec<(K, V)>,
    ) -> Result<usize, StateError> {
        match self.never {}
    }
}

/// A snapshot of a RocksDB table (not built in: cannot exist).
pub struct RocksFrozen<K, V, H = ()> {
    never: Never,
    _types: PhantomData<fn() -> (K, V, H)>,
}

impl<K, V, H> RocksFrozen<K, V, H> {
    pub(crate) fn with_header<H2>(self, _: H2) -> RocksFrozen<K, V, H2> {
        match self.never {}
    }
    pub(crate) fn named(self, _: &str) -> Self {
        match self.never {}
    }
    pub(crate) fn state_name(&self) -> &str {
        match self.never {}
    }
    pub(crate) fn table_id(&self) -> u64 {
        match self.never {}
    }
    pub(crate) fn shard_count(&self) -> usize {
        match self.never {}
    }
    pub(crate) fn shard_generation(&self, _: usize) -> u64 {
        match self.never {}
    }
    pub(crate) fn shard_len(&self, _: usize) -> usize {
        match self.never {}
    }
    pub(crate) fn encode_shard(&self, _: usize) -> Result<KeyedSnapshot, StateError> {
        match self.never {}
    }
    pub(crate) fn native(&self) -> Result<crate::NativeSnapshot, StateError> {
        match self.never {}
    }
}

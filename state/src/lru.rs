//! A keyed store bounded by entries ([`LruValueState`]), as Kafka Streams' LRU
//! key-value store: at most `max_entries` keys per subtask; writing a new key when
//! full evicts the least recently used one, and an eviction is a deletion like any
//! other (the next checkpoint no longer holds the key).
//!
//! Recency is kept in memory beside the table (heap or RocksDB) and is not part of
//! snapshots: after a restore the restored keys count as used in key order, and
//! keys beyond the bound (a restore at a lower parallelism merges subtasks) are
//! evicted at once.

use crate::{KeyGroup, KeyGroupRange, KeyedBackend, MaxParallelism, StateError, StateKey};
use crate::{StateTable, StateValue};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// One value per key, at most `max_entries` keys, least recently used evicted first.
///
/// ```
/// use weir_state::LruValueState;
/// let mut recent: LruValueState<u64, u32> = LruValueState::new("recent", 2);
/// recent.put(1, 10)?;
/// recent.put(2, 20)?;
/// recent.get(&1)?; // 1 is now the most recently used
/// assert_eq!(recent.put(3, 30)?, Some((2, 20))); // 2 is evicted
/// assert_eq!(recent.get(&2)?, None);
/// assert_eq!(recent.len(), 2);
/// # Ok::<(), weir_state::StateError>(())
/// ```
#[derive(Debug)]
pub struct LruValueState<K, V> {
    table: StateTable<K, V>,
    max_entries: usize,
    /// Per key, the tick of its last use.
    used: FxHashMap<K, u64>,
    /// Keys by the tick of their last use (oldest first).
    order: BTreeMap<u64, K>,
    tick: u64,
    evictions: u64,
}

impl<K: StateKey, V: StateValue> LruValueState<K, V> {
    /// An empty state named `name` on the heap, holding at most `max_entries` keys
    /// (at least 1).
    pub fn new(name: impl Into<String>, max_entries: usize) -> Self {
        Self::with_table(StateTable::new(name), max_entries)
    }

    /// An empty state named `name` in `backend`, holding at most `max_entries` keys.
    ///
    /// # Errors
    /// As [`StateTable::in_backend`].
    pub fn in_backend(
        backend: &KeyedBackend,
        name: impl Into<String>,
        max_entries: usize,
    ) -> Result<Self, StateError> {
        Ok(Self::with_table(
            StateTable::in_backend(backend, name, Vec::new())?,
            max_entries,
        ))
    }

    fn with_table(table: StateTable<K, V>, max_entries: usize) -> Self {
        Self {
            table,
            max_entries: max_entries.max(1),
            used: FxHashMap::default(),
            order: BTreeMap::new(),
            tick: 0,
            evictions: 0,
        }
    }

    /// The bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Keys evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The table, for reading every entry and for snapshots.
    pub fn table(&self) -> &StateTable<K, V> {
        &self.table
    }

    fn touch(&mut self, key: &K) {
        self.tick += 1;
        if let Some(tick) = self.used.get_mut(key) {
            let old = std::mem::replace(tick, self.tick);
            if let Some(k) = self.order.remove(&old) {
                self.order.insert(self.tick, k);
            }
        } else {
            self.used.insert(key.clone(), self.tick);
            self.order.insert(self.tick, key.clone());
        }
    }

    fn forget(&mut self, key: &K) {
        if let Some(tick) = self.used.remove(key) {
            self.order.remove(&tick);
        }
    }

    /// Evicts least recently used keys until at most `max_entries` remain; returns
    /// the last one evicted.
    fn evict(&mut self) -> Result<Option<(K, V)>, StateError> {
        let mut last = None;
        while self.table.len() > self.max_entries {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            self.used.remove(&key);
            if let Some(value) = self.table.remove(&key)? {
                self.evictions += 1;
                last = Some((key, value));
            }
        }
        Ok(last)
    }

    /// The value of `key`, which becomes the most recently used.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn get(&mut self, key: &K) -> Result<Option<&V>, StateError> {
        if self.used.contains_key(key) {
            self.touch(key);
        }
        self.table.get(key)
    }

    /// Sets the value of `key` (the most recently used now); if that adds a key
    /// beyond the bound, evicts the least recently used one and returns it.
    ///
    /// # Errors
    /// As [`StateTable::insert`].
    pub fn put(&mut self, key: K, value: V) -> Result<Option<(K, V)>, StateError> {
        self.touch(&key);
        self.table.insert(key, value)?;
        self.evict()
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    /// As [`StateTable::remove`].
    pub fn remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        self.forget(key);
        self.table.remove(key)
    }

    /// Writes pending changes to the backend (RocksDB's record cache).
    ///
    /// # Errors
    /// As [`StateTable::flush`].
    pub fn flush(&mut self) -> Result<(), StateError> {
        self.table.flush()
    }

    /// The synchronous part of a snapshot, as [`StateTable::freeze`].
    ///
    /// # Errors
    /// As [`StateTable::freeze`].
    pub fn freeze(&mut self) -> Result<crate::Frozen<K, V>, StateError> {
        self.table.freeze()
    }

    /// Restores the key groups of `range` from snapshot chunks, then counts the
    /// restored keys as used in key order and evicts any beyond the bound.
    ///
    /// # Errors
    /// As [`StateTable::restore_chunks`].
    pub fn restore_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (KeyGroup, &'a [u8])>,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Result<usize, StateError> {
        let restored = self.table.restore_chunks(chunks, range, max)?;
        for key in self.table.keys()? {
            if !self.used.contains_key(&key) {
                self.touch(&key);
            }
        }
        self.evict()?;
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_and_snapshots_without_it() {
        let max = MaxParallelism::DEFAULT;
        let mut state: LruValueState<u32, u32> = LruValueState::new("lru", 100);
        for key in 0..100 {
            state.put(key, key).unwrap();
        }
        for key in 0..50 {
            state.get(&key).unwrap();
        }
        // 50..100 are now the least recently used: the next 10 new keys evict 50..60.
        for key in 100..110 {
            let evicted = state.put(key, key).unwrap();
            assert_eq!(evicted.map(|(k, _)| k), Some(key - 50));
        }
        assert_eq!(state.len(), 100);
        assert_eq!(state.evictions(), 10);
        state.put(0, 1).unwrap(); // an update is no new key: no eviction
        assert_eq!(state.evictions(), 10);

        let mut snapshot_keys: Vec<u32> = Vec::new();
        let mut table = StateTable::<u32, u32>::new("lru");
        let snapshot = {
            let mut frozen_from = std::mem::replace(&mut state.table, StateTable::new("lru"));
            let s = frozen_from.snapshot(max).unwrap();
            state.table = frozen_from;
            s
        };
        table
            .restore(&snapshot, KeyGroupRange::for_subtask(max, 1, 0), max)
            .unwrap();
        table.for_each(|k, _| snapshot_keys.push(*k)).unwrap();
        snapshot_keys.sort_unstable();
        let mut expected: Vec<u32> = (0..50).chain(60..110).collect();
        expected.sort_unstable();
        assert_eq!(snapshot_keys, expected, "evicted keys are deleted");

        // Restored into a smaller bound: the surplus is evicted at once.
        let mut small: LruValueState<u32, u32> = LruValueState::new("lru", 30);
        let chunks: Vec<(KeyGroup, &[u8])> =
            snapshot.iter().map(|(g, b)| (*g, b.as_slice())).collect();
        small
            .restore_chunks(chunks, KeyGroupRange::for_subtask(max, 1, 0), max)
            .unwrap();
        assert_eq!(small.len(), 30);
        assert_eq!(small.evictions(), 70);
    }
}

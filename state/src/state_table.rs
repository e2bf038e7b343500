//! [`StateTable`]: the keyed map behind every kind of keyed state, on the heap
//! ([`HeapTable`]) or in RocksDB (with a write-back record cache in front).
//!
//! Both backends snapshot to the same canonical form (entries by key group, see
//! `snapshot.rs`), so a snapshot of one restores into the other; [`Frozen`] is a
//! frozen table of either backend. [`StateKey`] and [`StateValue`] say what a
//! table's keys and values must be. Every method that may read or write
//! RocksDB returns a `Result`; on the heap it is always `Ok`.

#[cfg(feature = "rocksdb")]
use crate::rocks_table::{RocksFrozen, RocksTable};
use crate::{
    FrozenKeyed, FrozenTable, HeapTable, KeyGroup, KeyGroupRange, KeyedBackend, KeyedSnapshot,
    MaxParallelism, StateError,
};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt;
use std::hash::Hash;

/// What a state key must be: hashable, comparable, cloneable, serialisable, and
/// shareable with the thread that uploads snapshots.
pub trait StateKey:
    Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StateKey for T {}

/// What a state value must be: cloneable, serialisable, and shareable with the thread
/// that uploads snapshots.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StateValue for T {}

enum Backing<K, V> {
    Heap(HeapTable<K, V>),
    #[cfg(feature = "rocksdb")]
    Rocks(Box<RocksTable<K, V>>),
}

/// A keyed table: the storage behind every kind of keyed state.
pub struct StateTable<K, V> {
    backing: Backing<K, V>,
}

impl<K, V> fmt::Debug for StateTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backing {
            Backing::Heap(heap) => heap.fmt(f),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(_) => f.write_str("StateTable(rocksdb)"),
        }
    }
}

impl<K: StateKey, V: StateValue> StateTable<K, V> {
    /// An empty table on the heap; `name` identifies it in snapshots and errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            backing: Backing::Heap(HeapTable::new(name)),
        }
    }

    /// An empty table in `backend`: on the heap, or in the column family `name` of
    /// the subtask's RocksDB instance, under `namespace` (tables of one state that
    /// live side by side, such as one per window, differ by namespace; all tables of
    /// one column family must use namespaces of one length).
    ///
    /// # Errors
    /// [`StateError::Io`] or [`StateError::Locked`] if the RocksDB instance cannot be
    /// opened.
    pub fn in_backend(
        backend: &KeyedBackend,
        name: impl Into<String>,
        namespace: Vec<u8>,
    ) -> Result<Self, StateError> {
        let name: String = name.into();
        #[cfg(feature = "rocksdb")]
        if let Some(store) = backend.store()? {
            let table = RocksTable::new(
                store,
                name.into(),
                crate::snapshot::next_table_id(),
                namespace,
                backend.max_parallelism(),
                backend.key_groups(),
                backend.record_cache_entries(),
            )?;
            return Ok(Self {
                backing: Backing::Rocks(Box::new(table)),
            });
        }
        let _ = (backend, namespace);
        Ok(Self {
            backing: Backing::Heap(HeapTable::new(name)),
        })
    }

    /// Like [`StateTable::in_backend`], for a state whose values are [`Expiring`]:
    /// in RocksDB its column family gets a compaction filter that drops expired
    /// entries.
    ///
    /// # Errors
    /// As [`StateTable::in_backend`].
    ///
    /// [`Expiring`]: crate::Expiring
    pub(crate) fn in_backend_with_ttl(
        backend: &KeyedBackend,
        name: impl Into<String>,
        namespace: Vec<u8>,
    ) -> Result<Self, StateError> {
        let name: String = name.into();
        #[cfg(feature = "rocksdb")]
        if let Some(store) = backend.store()? {
            store.ensure_ttl_cf(&name)?;
        }
        Self::in_backend(backend, name, namespace)
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        match &self.backing {
            Backing::Heap(heap) => heap.name(),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.name(),
        }
    }

    /// Whether the table lives in RocksDB.
    pub fn is_rocksdb(&self) -> bool {
        !matches!(self.backing, Backing::Heap(_))
    }

    /// The heap table, when the table is on the heap.
    pub fn as_heap(&self) -> Option<&HeapTable<K, V>> {
        match &self.backing {
            Backing::Heap(heap) => Some(heap),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(_) => None,
        }
    }

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// A RocksDB read that fails, or a stored value that does not decode.
    #[inline]
    pub fn get(&mut self, key: &K) -> Result<Option<&V>, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.get(key)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.get(key),
        }
    }

    /// The value of `key` for update, if any.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Result<Option<&mut V>, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.get_mut(key)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.get_mut(key),
        }
    }

    /// The value of `key` for update, inserting `init()` first if absent.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        key: K,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.get_or_insert_with(key, init)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => Ok(rocks.get_or_insert_with_flag(key, init)?.0),
        }
    }

    /// [`StateTable::get_or_insert_with`] by reference: the key is cloned only when
    /// it is inserted, so a lookup of a present key (the common case of a window or
    /// a running aggregate) copies nothing.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    #[inline]
    pub fn get_or_insert_with_ref(
        &mut self,
        key: &K,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.get_or_insert_with_ref(key, init)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => Ok(rocks.get_or_insert_with_ref(key, init)?.0),
        }
    }

    /// Like [`StateTable::get_or_insert_with`], also telling whether the entry is new.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    #[inline]
    pub fn get_or_insert_with_flag(
        &mut self,
        key: K,
        init: impl FnOnce() -> V,
    ) -> Result<(&mut V, bool), StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.get_or_insert_with_flag(key, init)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.get_or_insert_with_flag(key, init),
        }
    }

    /// Sets the value of `key`, returning the previous one.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn insert(&mut self, key: K, value: V) -> Result<Option<V>, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.insert(key, value)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.insert(key, value),
        }
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.remove(key)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.remove(key),
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        match &self.backing {
            Backing::Heap(heap) => heap.len(),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.len(),
        }
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every entry, in no particular order.
    ///
    /// # Errors
    /// A RocksDB read or write that fails, or a stored entry that does not decode.
    pub fn for_each(&mut self, mut f: impl FnMut(&K, &V)) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => {
                heap.iter().for_each(|(k, v)| f(k, v));
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.for_each(f),
        }
    }

    /// A copy of every entry. Costs O(size).
    ///
    /// # Errors
    /// As [`StateTable::for_each`].
    pub fn entries(&mut self) -> Result<Vec<(K, V)>, StateError> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|k, v| out.push((k.clone(), v.clone())))?;
        Ok(out)
    }

    /// The keys. Costs O(size).
    ///
    /// # Errors
    /// As [`StateTable::for_each`].
    pub fn keys(&mut self) -> Result<Vec<K>, StateError> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|k, _| out.push(k.clone()))?;
        Ok(out)
    }

    /// Keeps only the entries for which `keep` returns true.
    ///
    /// # Errors
    /// As [`StateTable::for_each`].
    pub fn retain(&mut self, keep: impl FnMut(&K, &mut V) -> bool) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => {
                heap.retain(keep);
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.retain(keep),
        }
    }

    /// Removes every entry (in RocksDB: a range deletion per key group).
    ///
    /// # Errors
    /// A RocksDB write that fails.
    pub fn clear(&mut self) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => {
                heap.retain(|_, _| false);
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.clear(),
        }
    }

    /// Compacts the table's RocksDB column family, after flushing the record cache
    /// (nothing to do on the heap). Compaction is when RocksDB drops expired entries
    /// of a state with a time-to-live; it also runs by itself in the background.
    ///
    /// # Errors
    /// A RocksDB write that fails.
    pub fn compact(&mut self) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(_) => Ok(()),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.compact(),
        }
    }

    /// Hands the record cache's changes to RocksDB (nothing to do on the heap):
    /// they are written before anything else is written to the instance and before
    /// its next RocksDB checkpoint is taken, which is a snapshot's asynchronous
    /// part, so the task thread only copies them. Flushing every table of a
    /// subtask before freezing them lets their snapshots share one checkpoint.
    ///
    /// # Errors
    /// None today: writing fails later, where it happens (the snapshot's upload,
    /// or the next write).
    pub fn flush(&mut self) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(_) => {}
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.hand_off(),
        }
        Ok(())
    }

    /// The synchronous part of a snapshot: a consistent, immutable view of the table
    /// that later writes do not change. On the heap, copy-on-write shards; in RocksDB,
    /// the record cache's changes are handed off ([`StateTable::flush`]) and a
    /// RocksDB checkpoint (memtables flushed, SST files hard-linked) reserved,
    /// shared by every table frozen before the next write; it is taken by the
    /// snapshot's asynchronous part ([`crate::StoreCheckpoint::materialize`]).
    ///
    /// # Errors
    /// A RocksDB write or checkpoint that fails.
    pub fn freeze(&mut self) -> Result<Frozen<K, V>, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(Frozen::Heap(heap.freeze())),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => Ok(Frozen::Rocks(rocks.freeze()?)),
        }
    }

    /// Encodes the whole table by key group, on the calling thread. Costs O(size).
    ///
    /// # Errors
    /// As [`StateTable::for_each`]; [`StateError::Encode`] if an entry cannot be
    /// serialised.
    pub fn snapshot(&mut self, max: MaxParallelism) -> Result<KeyedSnapshot, StateError> {
        match &self.backing {
            Backing::Heap(heap) => heap.snapshot(max),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(_) => {
                let entries = self.entries()?;
                HeapTable::encode_by_key_group(
                    self.name(),
                    entries.iter().map(|(k, v)| (k, v)),
                    max,
                )
            }
        }
    }

    /// Encodes `entries` by key group: the canonical, rescalable form of keyed state.
    ///
    /// # Errors
    /// [`StateError::Encode`] if a key or value cannot be serialised.
    pub fn encode_by_key_group<'a>(
        name: &str,
        entries: impl IntoIterator<Item = (&'a K, &'a V)>,
        max: MaxParallelism,
    ) -> Result<KeyedSnapshot, StateError>
    where
        K: 'a,
        V: 'a,
    {
        HeapTable::encode_by_key_group(name, entries, max)
    }

    /// Loads the entries of the key groups in `range` from a snapshot, replacing any
    /// entry with the same key. Key groups outside `range` are skipped.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] if a key group's bytes do not decode, or hold a key that
    /// does not belong to that key group; a RocksDB write that fails.
    pub fn restore(
        &mut self,
        snapshot: &KeyedSnapshot,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Result<usize, StateError> {
        self.restore_chunks(
            snapshot
                .iter()
                .map(|(group, bytes)| (*group, bytes.as_slice())),
            range,
            max,
        )
    }

    /// Like [`StateTable::restore`], from chunks: a key group may come in several.
    ///
    /// # Errors
    /// As [`StateTable::restore`].
    pub fn restore_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (KeyGroup, &'a [u8])>,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Result<usize, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => heap.restore_chunks(chunks, range, max),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => {
                let mut restored = 0;
                for (group, bytes) in chunks {
                    if !range.contains(group) {
                        continue;
                    }
                    let entries: Vec<(K, V)> = crate::decode(rocks.name(), bytes)?;
                    restored += rocks.restore_entries(group, entries)?;
                }
                Ok(restored)
            }
        }
    }
}

/// A frozen snapshot of a [`StateTable`] (see [`StateTable::freeze`]), encoded off
/// the task thread through [`FrozenKeyed`].
pub enum Frozen<K, V, H = ()> {
    /// Copy-on-write shards of a heap table.
    Heap(FrozenTable<K, V, H>),
    /// A RocksDB checkpoint of the table's store.
    #[cfg(feature = "rocksdb")]
    Rocks(RocksFrozen<K, V, H>),
}

impl<K, V, H> Frozen<K, V, H> {
    /// Stores `header` in front of every chunk's entries (see
    /// [`FrozenTable::with_header`]).
    pub fn with_header<H2>(self, header: H2) -> Frozen<K, V, H2> {
        match self {
            Self::Heap(heap) => Frozen::Heap(heap.with_header(header)),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => Frozen::Rocks(rocks.with_header(header)),
        }
    }

    /// Stores the table under another state name.
    pub fn named(self, name: &str) -> Self {
        match self {
            Self::Heap(heap) => Self::Heap(heap.named(name)),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => Self::Rocks(rocks.named(name)),
        }
    }
}

impl<K: StateKey, V: StateValue, H: Serialize + Send + Sync> FrozenKeyed for Frozen<K, V, H> {
    fn state_name(&self) -> &str {
        match self {
            Self::Heap(heap) => heap.state_name(),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.state_name(),
        }
    }
    fn table_id(&self) -> u64 {
        match self {
            Self::Heap(heap) => heap.table_id(),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.table_id(),
        }
    }
    fn shard_count(&self) -> usize {
        match self {
            Self::Heap(heap) => heap.shard_count(),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.shard_count(),
        }
    }
    fn shard_generation(&self, shard: usize) -> u64 {
        match self {
            Self::Heap(heap) => heap.shard_generation(shard),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.shard_generation(shard),
        }
    }
    fn shard_len(&self, shard: usize) -> usize {
        match self {
            Self::Heap(heap) => heap.shard_len(shard),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.shard_len(shard),
        }
    }
    fn encode_shard(&self, shard: usize, max: MaxParallelism) -> Result<KeyedSnapshot, StateError> {
        match self {
            Self::Heap(heap) => heap.encode_shard(shard, max),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.encode_shard(shard),
        }
    }
    fn native(&self) -> Result<Option<crate::NativeSnapshot>, StateError> {
        match self {
            Self::Heap(_) => Ok(None),
            #[cfg(feature = "rocksdb")]
            Self::Rocks(rocks) => rocks.native().map(Some),
        }
    }
}

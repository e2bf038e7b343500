//! [`HeapTable`]: the heap backend's keyed map, with copy-on-write snapshots.
//!
//! A table of more than [`SPLIT_AT`] keys is split into [`SHARDS`] hash tables by a
//! mix of the key's hash (a smaller one is a single shard, as compact as a plain hash
//! map, and cheap to copy). Taking a
//! snapshot ([`HeapTable::freeze`]) moves every shard into an `Arc` and hands the
//! snapshot clones of those `Arc`s: it costs one small allocation per shard written
//! since the previous snapshot, never anything in proportion to the number of keys.
//! The first write to a frozen shard takes it back: without copying when the
//! snapshot has let go of it (its upload is done), by copying that one shard when
//! the upload still reads it. Every shard carries a generation that changes whenever
//! it is written after a snapshot, so an incremental checkpoint can reuse what it
//! uploaded for a shard whose generation has not moved.

use crate::snapshot::{encode_groups, next_table_id};
use crate::{
    check_group, decode, FrozenKeyed, KeyGroup, KeyGroupRange, KeyedSnapshot, MaxParallelism,
    StateError, StateKey, StateValue,
};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::Serialize;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// The number of shards of a large table.
pub const SHARDS: usize = 64;

/// A table with this many keys is split into [`SHARDS`] shards.
pub const SPLIT_AT: usize = 8192;

type Entries<K, V> = HashTable<(K, V)>;

enum Contents<K, V> {
    /// Written since the last snapshot (or never snapshotted): owned outright.
    Owned(Entries<K, V>),
    /// Unchanged since the last snapshot, which shares it.
    Frozen(Arc<Entries<K, V>>),
}

/// One shard of a table.
struct Shard<K, V> {
    contents: Contents<K, V>,
    /// Changes whenever the shard is written after a snapshot.
    generation: u64,
}

impl<K: Clone, V: Clone> Shard<K, V> {
    fn new(entries: Entries<K, V>, generation: u64) -> Self {
        Self {
            contents: Contents::Owned(entries),
            generation,
        }
    }

    #[inline]
    fn entries(&self) -> &Entries<K, V> {
        match &self.contents {
            Contents::Owned(entries) => entries,
            Contents::Frozen(entries) => entries,
        }
    }

    /// The entries for writing: a frozen shard is taken back from the snapshot
    /// (copied only if the snapshot still reads it) and gets a new generation.
    #[inline(always)]
    fn entries_mut(&mut self, next_generation: &mut u64) -> &mut Entries<K, V> {
        if let Contents::Frozen(frozen) = &mut self.contents {
            self.contents = Contents::Owned(thaw(std::mem::take(frozen)));
            self.generation = *next_generation;
            *next_generation += 1;
        }
        match &mut self.contents {
            Contents::Owned(entries) => entries,
            // Not reached: the shard was made owned above. Correct all the same.
            Contents::Frozen(frozen) => Arc::make_mut(frozen),
        }
    }

    /// Shares the entries with a snapshot: `(generation, entries)`.
    fn freeze(&mut self) -> (u64, Arc<Entries<K, V>>) {
        let frozen = match &mut self.contents {
            Contents::Owned(entries) => {
                let frozen = Arc::new(std::mem::take(entries));
                self.contents = Contents::Frozen(frozen.clone());
                frozen
            }
            Contents::Frozen(frozen) => frozen.clone(),
        };
        (self.generation, frozen)
    }

    fn into_entries(self) -> Entries<K, V> {
        match self.contents {
            Contents::Owned(entries) => entries,
            Contents::Frozen(frozen) => thaw(frozen),
        }
    }
}

#[inline]
fn hash_of<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The shard of a hash: its top bits after one more multiplication, so that neither
/// the bits hashbrown uses inside a shard nor weak low bits of the hash decide it.
#[inline]
fn shard_of(hash: u64) -> usize {
    (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The entries of a shard that is frozen, to be written: taken back without copying
/// when the snapshot has let go of it.
#[cold]
#[inline(never)]
fn thaw<K: Clone, V: Clone>(frozen: Arc<Entries<K, V>>) -> Entries<K, V> {
    Arc::try_unwrap(frozen).unwrap_or_else(|shared| (*shared).clone())
}

/// A keyed table on the heap: the storage behind every kind of keyed state.
pub struct HeapTable<K, V> {
    name: Arc<str>,
    id: u64,
    shards: Vec<Shard<K, V>>,
    /// `shards.len() - 1`: 0 for a single shard, `SHARDS - 1` once split.
    mask: usize,
    next_generation: u64,
    len: usize,
}

impl<K, V> fmt::Debug for HeapTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapTable")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<K: Clone, V: Clone> Clone for HeapTable<K, V> {
    /// A deep copy with its own identity.
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            id: next_table_id(),
            shards: self
                .shards
                .iter()
                .map(|shard| Shard::new(shard.entries().clone(), 0))
                .collect(),
            mask: self.mask,
            next_generation: 1,
            len: self.len,
        }
    }
}

impl<K: StateKey, V: StateValue> HeapTable<K, V> {
    /// An empty table; `name` identifies it in snapshots and errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into().into(),
            id: next_table_id(),
            shards: vec![Shard::new(HashTable::new(), 0)],
            mask: 0,
            next_generation: 1,
            len: 0,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shard of `hash`.
    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        shard_of(hash) & self.mask
    }

    /// Before an insertion: splits a single-shard table that reached [`SPLIT_AT`].
    #[inline(always)]
    fn grow(&mut self) {
        if self.mask == 0 && self.len >= SPLIT_AT {
            self.split();
        }
    }

    #[cold]
    #[inline(never)]
    fn split(&mut self) {
        let old = std::mem::take(&mut self.shards);
        let first = self.next_generation;
        self.shards = (0..SHARDS)
            .map(|i| Shard::new(HashTable::new(), first + i as u64))
            .collect();
        self.next_generation += SHARDS as u64;
        self.mask = SHARDS - 1;
        for shard in old {
            for (key, value) in shard.into_entries() {
                let hash = hash_of(&key);
                let target = self.shards[shard_of(hash)].entries_mut(&mut self.next_generation);
                target.insert_unique(hash, (key, value), |(k, _)| hash_of(k));
            }
        }
    }

    /// The value of `key`, if any.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let hash = hash_of(key);
        self.shards[self.shard_index(hash)]
            .entries()
            .find(hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The value of `key` for update, if any.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (hash, entries) = self.existing_mut(key)?;
        entries.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    /// The hash of `key` and its shard for writing, unless `key` is absent from a
    /// frozen shard (which then stays frozen).
    #[inline(always)]
    fn existing_mut(&mut self, key: &K) -> Option<(u64, &mut Entries<K, V>)> {
        let hash = hash_of(key);
        let shard = self.shard_index(hash);
        if let Contents::Frozen(frozen) = &self.shards[shard].contents {
            frozen.find(hash, |(k, _)| k == key)?;
        }
        let entries = self.shards[shard].entries_mut(&mut self.next_generation);
        Some((hash, entries))
    }

    /// The value of `key` for update, inserting `init()` first if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        self.get_or_insert_with_flag(key, init).0
    }

    /// [`HeapTable::get_or_insert_with`] by reference: the key is cloned only when
    /// it is inserted.
    #[inline]
    pub fn get_or_insert_with_ref(&mut self, key: &K, init: impl FnOnce() -> V) -> &mut V {
        match self.entry(key) {
            (Entry::Occupied(occupied), _) => &mut occupied.into_mut().1,
            (Entry::Vacant(vacant), len) => {
                *len += 1;
                &mut vacant.insert((key.clone(), init())).into_mut().1
            }
        }
    }

    /// Like [`HeapTable::get_or_insert_with`], also telling whether the entry is new.
    #[inline]
    pub fn get_or_insert_with_flag(&mut self, key: K, init: impl FnOnce() -> V) -> (&mut V, bool) {
        match self.entry(&key) {
            (Entry::Occupied(occupied), _) => (&mut occupied.into_mut().1, false),
            (Entry::Vacant(vacant), len) => {
                *len += 1;
                (&mut vacant.insert((key, init())).into_mut().1, true)
            }
        }
    }

    /// Sets the value of `key`, returning the previous one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entry(&key) {
            (Entry::Occupied(mut occupied), _) => {
                Some(std::mem::replace(&mut occupied.get_mut().1, value))
            }
            (Entry::Vacant(vacant), len) => {
                *len += 1;
                vacant.insert((key, value));
                None
            }
        }
    }

    /// The entry of `key` for writing, and the count of keys to update.
    #[inline(always)]
    fn entry(&mut self, key: &K) -> (Entry<'_, (K, V)>, &mut usize) {
        self.grow();
        let hash = hash_of(key);
        let shard = self.shard_index(hash);
        let entries = self.shards[shard].entries_mut(&mut self.next_generation);
        (
            entries.entry(hash, |(k, _)| k == key, |(k, _)| hash_of(k)),
            &mut self.len,
        )
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (hash, entries) = self.existing_mut(key)?;
        let occupied = entries.find_entry(hash, |(k, _)| k == key).ok()?;
        let ((_, value), _) = occupied.remove();
        self.len -= 1;
        Some(value)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|shard| shard.entries().iter())
            .map(|(k, v)| (k, v))
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for shard in 0..self.shards.len() {
            if self.shards[shard].entries().is_empty() {
                continue;
            }
            let entries = self.shards[shard].entries_mut(&mut self.next_generation);
            let before = entries.len();
            entries.retain(|(k, v)| keep(k, v));
            self.len -= before - entries.len();
        }
    }

    /// The synchronous part of a snapshot: a consistent, immutable view of the table
    /// that later writes do not change. Costs one allocation per shard written since
    /// the previous call, whatever the number of keys.
    pub fn freeze(&mut self) -> FrozenTable<K, V> {
        let shards = self.shards.iter_mut().map(Shard::freeze).collect();
        FrozenTable {
            name: self.name.clone(),
            id: self.id,
            shards,
            header: (),
        }
    }

    /// A full copy of the table (for tests). Costs O(size).
    pub fn to_entries(&self) -> Vec<(K, V)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
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
        encode_groups(name, &(), entries, max)
    }

    /// Encodes the whole table by key group, on the calling thread. Costs O(size);
    /// checkpoints use [`HeapTable::freeze`] instead.
    ///
    /// # Errors
    /// [`StateError::Encode`] if a key or value cannot be serialised.
    pub fn snapshot(&self, max: MaxParallelism) -> Result<KeyedSnapshot, StateError> {
        Self::encode_by_key_group(&self.name, self.iter(), max)
    }

    /// Loads the entries of the key groups in `range` from a snapshot, replacing any
    /// entry with the same key. Key groups outside `range` are skipped.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] if a key group's bytes do not decode, or hold a key that
    /// does not belong to that key group.
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

    /// Like [`HeapTable::restore`], from chunks: a key group may come in several.
    ///
    /// # Errors
    /// As [`HeapTable::restore`].
    pub fn restore_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (KeyGroup, &'a [u8])>,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Result<usize, StateError> {
        let mut restored = 0;
        for (group, bytes) in chunks {
            if !range.contains(group) {
                continue;
            }
            let entries: Vec<(K, V)> = decode(&self.name, bytes)?;
            for (key, value) in entries {
                check_group(&self.name, &key, group, max)?;
                self.insert(key, value);
                restored += 1;
            }
        }
        Ok(restored)
    }
}

/// An immutable snapshot of a [`HeapTable`], made by [`HeapTable::freeze`]: its
/// shards, each with its generation. Encoding it (the expensive part) happens off
/// the task thread, through [`FrozenKeyed`].
pub struct FrozenTable<K, V, H = ()> {
    name: Arc<str>,
    id: u64,
    shards: Vec<(u64, Arc<Entries<K, V>>)>,
    header: H,
}

impl<K, V, H> FrozenTable<K, V, H> {
    /// Stores `header` in front of every chunk's entries: each chunk then encodes
    /// `(header, Vec<(K, V)>)` instead of `((), Vec<(K, V)>)`, which is the same bytes
    /// as `Vec<(K, V)>`. Window operators store the window this way.
    pub fn with_header<H2>(self, header: H2) -> FrozenTable<K, V, H2> {
        FrozenTable {
            name: self.name,
            id: self.id,
            shards: self.shards,
            header,
        }
    }

    /// Stores the table under another state name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}

impl<K: StateKey, V: StateValue, H: Serialize + Send + Sync> FrozenKeyed for FrozenTable<K, V, H> {
    fn state_name(&self) -> &str {
        &self.name
    }
    fn table_id(&self) -> u64 {
        self.id
    }
    fn shard_count(&self) -> usize {
        self.shards.len()
    }
    fn shard_generation(&self, shard: usize) -> u64 {
        self.shards
            .get(shard)
            .map_or(0, |(generation, _)| *generation)
    }
    fn shard_len(&self, shard: usize) -> usize {
        self.shards
            .get(shard)
            .map_or(0, |(_, entries)| entries.len())
    }
    fn encode_shard(&self, shard: usize, max: MaxParallelism) -> Result<KeyedSnapshot, StateError> {
        match self.shards.get(shard) {
            Some((_, entries)) => encode_groups(
                &self.name,
                &self.header,
                entries.iter().map(|(k, v)| (k, v)),
                max,
            ),
            None => Ok(KeyedSnapshot::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_frozen;
    use crate::key_group_for_key;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u16, i64),
        Add(u16, i64),
        Remove(u16),
        Freeze,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..512, any::<i64>()).prop_map(|(k, v)| Op::Put(k, v)),
            (0u16..512, -100i64..100).prop_map(|(k, v)| Op::Add(k, v)),
            (0u16..512).prop_map(Op::Remove),
            Just(Op::Freeze),
        ]
    }

    fn apply(
        table: &mut HeapTable<u16, i64>,
        model: &mut BTreeMap<u16, i64>,
        frozen: &mut Vec<(FrozenTable<u16, i64>, BTreeMap<u16, i64>)>,
        op: &Op,
    ) {
        match *op {
            Op::Put(k, v) => {
                assert_eq!(table.insert(k, v), model.insert(k, v));
            }
            Op::Add(k, v) => {
                let slot = table.get_or_insert_with(k, || 0);
                *slot = slot.wrapping_add(v);
                let m = model.entry(k).or_insert(0);
                *m = m.wrapping_add(v);
            }
            Op::Remove(k) => {
                assert_eq!(table.remove(&k), model.remove(&k));
            }
            Op::Freeze => frozen.push((table.freeze(), model.clone())),
        }
    }

    fn decode_all(frozen: &dyn FrozenKeyed, max: MaxParallelism) -> BTreeMap<u16, i64> {
        let mut out = BTreeMap::new();
        for (group, chunks) in encode_frozen(frozen, max).unwrap() {
            for bytes in chunks.values() {
                let entries: Vec<(u16, i64)> = decode("t", bytes).unwrap();
                for (k, v) in entries {
                    assert_eq!(key_group_for_key(&k, max), group);
                    assert!(out.insert(k, v).is_none(), "key {k} in two chunks");
                }
            }
        }
        out
    }

    proptest! {
        /// snapshot -> restore yields identical state, whatever the operations.
        #[test]
        fn snapshot_restore_round_trips(ops in proptest::collection::vec(op(), 0..300)) {
            let max = MaxParallelism::DEFAULT;
            let mut table = HeapTable::new("t");
            let (mut model, mut frozen) = (BTreeMap::new(), Vec::new());
            for op in &ops { apply(&mut table, &mut model, &mut frozen, op); }
            let snapshot = table.snapshot(max).unwrap();
            let mut restored = HeapTable::<u16, i64>::new("t");
            let all = KeyGroupRange { start: 0, end: 127 };
            restored.restore(&snapshot, all, max).unwrap();
            let mut a = table.to_entries(); a.sort();
            let mut b = restored.to_entries(); b.sort();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a, model.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(table.len(), restored.len());
        }

        /// A frozen snapshot keeps the state of the moment it was taken, whatever is
        /// written afterwards; unchanged generations mean unchanged shards.
        #[test]
        fn frozen_snapshots_do_not_move(ops in proptest::collection::vec(op(), 0..300)) {
            let max = MaxParallelism::DEFAULT;
            let mut table = HeapTable::new("t");
            let (mut model, mut frozen) = (BTreeMap::new(), Vec::new());
            for op in &ops { apply(&mut table, &mut model, &mut frozen, op); }
            let last = table.freeze();
            prop_assert_eq!(decode_all(&last, max), model);
            for (snapshot, expected) in &frozen {
                prop_assert_eq!(&decode_all(snapshot, max), expected);
                for shard in 0..snapshot.shard_count().min(last.shard_count()) {
                    if snapshot.shard_generation(shard) == last.shard_generation(shard) {
                        prop_assert_eq!(
                            snapshot.encode_shard(shard, max).unwrap(),
                            last.encode_shard(shard, max).unwrap()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn writes_after_a_freeze_copy_only_while_the_snapshot_is_held() {
        let mut table = HeapTable::<u64, u64>::new("t");
        for k in 0..10_000 {
            table.insert(k, k);
        }
        let frozen = table.freeze();
        *table.get_mut(&7).unwrap() += 1;
        assert_eq!(table.get(&7), Some(&8));
        let shard = table.shard_index(hash_of(&7u64));
        let before = frozen.shard_generation(shard);
        drop(frozen);
        let again = table.freeze();
        assert_ne!(again.shard_generation(shard), before);
        assert_eq!(again.shard_count(), SHARDS);
        assert_eq!(table.len(), 10_000);
        assert_eq!(table.get_mut(&10_001), None);
    }

    #[test]
    fn a_table_splits_into_shards_without_disturbing_snapshots() {
        let max = MaxParallelism::DEFAULT;
        let mut table = HeapTable::<u64, u64>::new("t");
        let mut model = BTreeMap::new();
        let mut snapshots = Vec::new();
        for k in 0..(3 * SPLIT_AT as u64) {
            if k % 5_000 == 0 {
                snapshots.push((table.freeze(), model.clone()));
            }
            table.insert(k, k * 2);
            model.insert(k, k * 2);
            if k % 3 == 0 {
                *table.get_mut(&(k / 2)).unwrap() += 1;
                *model.get_mut(&(k / 2)).unwrap() += 1;
            }
        }
        assert_eq!(table.len(), model.len());
        assert_eq!(table.freeze().shard_count(), SHARDS);
        for (frozen, expected) in &snapshots {
            let mut got = BTreeMap::new();
            for (_, chunks) in encode_frozen(frozen, max).unwrap() {
                for bytes in chunks.values() {
                    got.extend(decode::<Vec<(u64, u64)>>("t", bytes).unwrap());
                }
            }
            assert_eq!(&got, expected);
        }
        let mut entries = table.to_entries();
        entries.sort();
        assert_eq!(entries, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn corrupt_bytes_are_reported() {
        let mut snapshot = KeyedSnapshot::new();
        snapshot.insert(KeyGroup::new(3), vec![0xff, 0xff, 0xff]);
        let mut table = HeapTable::<u16, i64>::new("counts");
        let err = table
            .restore(
                &snapshot,
                KeyGroupRange { start: 0, end: 127 },
                MaxParallelism::DEFAULT,
            )
            .unwrap_err();
        assert!(err.to_string().contains("counts"), "{err}");
    }
}

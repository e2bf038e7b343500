//! A keyed table in RocksDB with a write-back record cache in front.
//!
//! The cache holds the records read or written since it was last emptied; repeated
//! updates of a key between flushes cost one RocksDB write (as Kafka Streams' record
//! cache does). It is flushed before every snapshot. When it reaches its size it is
//! flushed and emptied, unless dropping the removed keys frees half of it. While it
//! has held every key of the table since the table was created, a miss is an
//! absent key and a scan reads the cache: RocksDB is then only written.
//!
//! A snapshot is a RocksDB checkpoint: periodic checkpoints upload its SST
//! files (native: `RocksFrozen::native`); savepoints encode it in the canonical
//! form, by key group. Every key group has a generation that moves when a flush
//! writes to it, for uploads in the canonical form that are incremental.
//!
//! Stored key: `[key group: u16 big-endian][namespace][bincode(key)]`, in the column
//! family named after the state; value: `bincode(value)`.

use crate::rocks::{rocks_error, Claim, SubtaskStore};
use crate::StoreCheckpoint;
use crate::{
    decode, encode, key_group_for_key, KeyGroup, KeyGroupRange, KeyedSnapshot, MaxParallelism,
    NativeSnapshot, NativeTable, StateError, StateKey, StateValue,
};
use hashbrown::HashTable;
use rocksdb::{ReadOptions, WriteBatch};
use rustc_hash::FxBuildHasher;
use serde::Serialize;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::Arc;

/// Entries in all and per owned key group (index `group - range.start`).
struct Counts {
    len: usize,
    per_group: Vec<u64>,
}

impl Counts {
    fn add(&mut self, index: u16, delta: i64) {
        let n = &mut self.per_group[usize::from(index)];
        *n = n.saturating_add_signed(delta);
        self.len = self.len.saturating_add_signed(delta as isize);
    }
}

fn foreign_group(name: &str, group: u16, range: KeyGroupRange) -> StateError {
    StateError::Corrupt {
        state: name.to_string(),
        reason: format!(
            "a key of key group {group} reached a subtask owning key groups {}..={}",
            range.start, range.end
        ),
    }
}

/// `[group][namespace][bincode(key)]` in `buf`.
fn stored_key<'b, K: Serialize>(
    name: &str,
    buf: &'b mut Vec<u8>,
    group: u16,
    namespace: &[u8],
    key: &K,
) -> Result<&'b [u8], StateError> {
    buf.clear();
    buf.extend_from_slice(&group.to_be_bytes());
    buf.extend_from_slice(namespace);
    bincode::serde::encode_into_std_write(key, buf, bincode::config::standard()).map_err(|e| {
        StateError::Encode {
            state: name.to_string(),
            reason: e.to_string(),
        }
    })?;
    Ok(buf)
}

struct Slot<K, V> {
    key: K,
    group: u16,
    /// `None`: absent (never stored, or removed).
    value: Option<V>,
    dirty: bool,
}

fn hash_of<K: std::hash::Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The first key of `group` in `namespace`.
pub(crate) fn prefix(group: u16, namespace: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + namespace.len() + 16);
    out.extend_from_slice(&group.to_be_bytes());
    out.extend_from_slice(namespace);
    out
}

/// The first key after every key starting with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) struct RocksTable<K, V> {
    name: Arc<str>,
    id: u64,
    store: Arc<SubtaskStore>,
    namespace: Vec<u8>,
    max: MaxParallelism,
    range: KeyGroupRange,
    cache: HashTable<Slot<K, V>>,
    capacity: usize,
    counts: Counts,
    /// Per owned key group (index `group - range.start`): its generation.
    group_generation: Vec<u64>,
    /// The generation writes get until the next snapshot.
    epoch: u64,
    key_buf: Vec<u8>,
    /// RocksDB certainly holds no entry of this table (it is new, or was cleared, and
    /// nothing was written since).
    unstored: bool,
    /// The cache holds every key RocksDB holds of this table, with its value (a
    /// removed one as `None`): a cache miss is an absent key, without a read, and
    /// the entries are scanned in the cache. True while the table was never
    /// restored nor had its cache emptied with entries in RocksDB: writes to
    /// RocksDB (flushes, snapshots) keep it.
    complete: bool,
}

impl<K: StateKey, V: StateValue> RocksTable<K, V> {
    pub(crate) fn new(
        store: Arc<SubtaskStore>,
        name: Arc<str>,
        id: u64,
        namespace: Vec<u8>,
        max: MaxParallelism,
        range: KeyGroupRange,
        capacity: usize,
    ) -> Result<Self, StateError> {
        store.ensure_cf(&name)?;
        let groups = usize::from(range.end - range.start) + 1;
        let (unstored, per_group) = match store.claim_namespace(&name, &namespace) {
            Claim::Empty => (true, vec![0; groups]),
            Claim::Used => (false, vec![0; groups]),
            Claim::Restored(entries) if entries.len() == groups => (false, entries),
            Claim::Restored(entries) => {
                return Err(StateError::Corrupt {
                    state: name.to_string(),
                    reason: format!(
                        "the restored RocksDB instance counts entries of {} key groups, the subtask owns {groups} ({}..={})",
                        entries.len(),
                        range.start,
                        range.end
                    ),
                })
            }
        };
        let len = per_group.iter().sum::<u64>() as usize;
        Ok(Self {
            name,
            id,
            store,
            namespace,
            max,
            range,
            cache: HashTable::new(),
            capacity: capacity.max(1),
            counts: Counts { len, per_group },
            group_generation: vec![0; groups],
            epoch: 1,
            key_buf: Vec::new(),
            unstored,
            complete: unstored,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The cached slot of `key` (read from RocksDB on a miss), and the counters.
    fn slot(&mut self, key: &K) -> Result<(&mut Slot<K, V>, &mut Counts), StateError> {
        if self.cache.len() >= self.capacity {
            self.make_room()?;
        }
        let hash = hash_of(key);
        let slot = match self.cache.find_entry(hash, |s| &s.key == key) {
            Ok(found) => found.into_mut(),
            Err(absent) => {
                let group = key_group_for_key(key, self.max).get();
                if !self.range.contains(KeyGroup::new(group)) {
                    return Err(foreign_group(&self.name, group, self.range));
                }
                let value = if self.complete {
                    None
                } else {
                    read_stored(
                        &self.store,
                        &self.name,
                        &self.namespace,
                        &mut self.key_buf,
                        group,
                        key,
                    )?
                };
                absent
                    .into_table()
                    .insert_unique(
                        hash,
                        Slot {
                            key: key.clone(),
                            group,
                            value,
                            dirty: false,
                        },
                        |s| hash_of(&s.key),
                    )
                    .into_mut()
            }
        };
        Ok((slot, &mut self.counts))
    }

    /// Makes room in a full cache: flushes it, then drops the removed keys (absent
    /// from RocksDB now, so a complete cache stays complete) if that frees at least
    /// half of it, else empties it.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) -> Result<(), StateError> {
        self.flush()?;
        if self.complete {
            self.cache.retain(|slot| slot.value.is_some());
            if self.cache.len() <= self.capacity / 2 {
                return Ok(());
            }
        }
        self.empty_cache();
        Ok(())
    }

    /// Empties the cache: it no longer holds every key, unless RocksDB holds none.
    fn empty_cache(&mut self) {
        self.cache.clear();
        self.complete = self.unstored;
    }

    pub(crate) fn get(&mut self, key: &K) -> Result<Option<&V>, StateError> {
        Ok(self.slot(key)?.0.value.as_ref())
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Result<Option<&mut V>, StateError> {
        let (slot, _) = self.slot(key)?;
        if slot.value.is_some() {
            slot.dirty = true;
        }
        Ok(slot.value.as_mut())
    }

    pub(crate) fn get_or_insert_with_flag(
        &mut self,
        key: K,
        init: impl FnOnce() -> V,
    ) -> Result<(&mut V, bool), StateError> {
        self.get_or_insert_with_ref(&key, init)
    }

    pub(crate) fn get_or_insert_with_ref(
        &mut self,
        key: &K,
        init: impl FnOnce() -> V,
    ) -> Result<(&mut V, bool), StateError> {
        let start = self.range.start;
        let (slot, counts) = self.slot(key)?;
        slot.dirty = true;
        let new = slot.value.is_none();
        if new {
            counts.add(slot.group - start, 1);
        }
        Ok((slot.value.get_or_insert_with(init), new))
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Result<Option<V>, StateError> {
        let start = self.range.start;
        let (slot, counts) = self.slot(&key)?;
        slot.dirty = true;
        let old = slot.value.replace(value);
        if old.is_none() {
            counts.add(slot.group - start, 1);
        }
        Ok(old)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        let start = self.range.start;
        let (slot, counts) = self.slot(key)?;
        let old = slot.value.take();
        if old.is_some() {
            slot.dirty = true;
            counts.add(slot.group - start, -1);
        }
        Ok(old)
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.len
    }

    /// Writes every changed record to RocksDB (one write batch), after what
    /// snapshots handed off.
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        self.store.settle()?;
        // Encoded straight from the cache, without copying the records first.
        let (range, epoch) = (self.range, self.epoch);
        let generations = &mut self.group_generation;
        let changed = self.cache.iter_mut().filter(|s| s.dirty).map(|slot| {
            slot.dirty = false;
            generations[usize::from(slot.group - range.start)] = epoch;
            let slot: &Slot<K, V> = slot;
            (slot.group, &slot.key, slot.value.as_ref())
        });
        let db = self.store.db();
        let built = batch_of(db, &self.name, &self.namespace, changed, &mut self.key_buf)?;
        if built.0.is_empty() {
            return Ok(());
        }
        self.unstored = false;
        self.store.write(&format!("state `{}`", self.name), built)
    }

    /// Hands the cache's changes off to the store: copied here, encoded and
    /// written before anything else is written and before the next checkpoint
    /// is taken ([`SubtaskStore::settle`]). The records stay in the cache, so reads
    /// see them until then.
    pub(crate) fn hand_off(&mut self) {
        let changes = self.take_changes();
        if !changes.is_empty() {
            let (name, namespace) = (self.name.clone(), self.namespace.clone());
            self.store.defer_write(
                format!("state `{}`", self.name),
                Box::new(move |db| {
                    let changed = changes.iter().map(|(g, k, v)| (*g, k, v.as_ref()));
                    batch_of(db, &name, &namespace, changed, &mut Vec::new())
                }),
            );
        }
    }

    /// Every changed record: its key group, key and value (`None`: removed); the
    /// records are marked unchanged.
    fn take_changes(&mut self) -> Vec<(u16, K, Option<V>)> {
        let mut changes = Vec::new();
        for slot in self.cache.iter_mut().filter(|s| s.dirty) {
            changes.push((slot.group, slot.key.clone(), slot.value.clone()));
            slot.dirty = false;
            self.group_generation[usize::from(slot.group - self.range.start)] = self.epoch;
        }
        if !changes.is_empty() {
            self.unstored = false;
        }
        changes
    }

    /// Flushes the cache and compacts the table's column family (a TTL state's
    /// compaction drops expired entries).
    pub(crate) fn compact(&mut self) -> Result<(), StateError> {
        self.flush()?;
        self.empty_cache();
        let db = self.store.db();
        let cf = column_family(db, &self.name)?;
        db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Calls `f` with every entry of the owned key groups: from the cache while it
    /// holds all of them (a window's state that fires before the next checkpoint is
    /// then never written, one that spans a checkpoint not read back), else
    /// flushed and read in key-group order.
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(&K, &V)) -> Result<(), StateError> {
        if self.complete {
            for slot in self.cache.iter() {
                if let Some(value) = &slot.value {
                    f(&slot.key, value);
                }
            }
            return Ok(());
        }
        self.flush()?;
        let store = self.store.clone();
        let mut read = 0;
        let scanned = scan(
            store.db(),
            &self.name,
            &self.namespace,
            self.range,
            |_, key, value| {
                read += key.len() + value.len();
                let key: K = decode(&self.name, key)?;
                let value: V = decode(&self.name, value)?;
                f(&key, &value);
                Ok(())
            },
        );
        store.counters.scanned(read);
        scanned
    }

    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&K, &mut V) -> bool,
    ) -> Result<(), StateError> {
        self.flush()?;
        self.empty_cache();
        let store = self.store.clone();
        let db = store.db();
        let cf = column_family(db, &self.name)?;
        let mut batch = WriteBatch::default();
        let mut removed = Vec::new();
        let mut read = 0;
        let name = self.name.clone();
        let namespace = &self.namespace;
        scan(
            db,
            &name,
            namespace,
            self.range,
            |group, key_bytes, value| {
                read += key_bytes.len() + value.len();
                let key: K = decode(&name, key_bytes)?;
                let mut value: V = decode(&name, value)?;
                let stored = [&prefix(group, namespace)[..], key_bytes].concat();
                if keep(&key, &mut value) {
                    batch.put_cf(&cf, stored, encode(&name, &value)?);
                } else {
                    batch.delete_cf(&cf, stored);
                    removed.push(group);
                }
                Ok(())
            },
        )?;
        let deletes = removed.len() as u64;
        for group in removed {
            self.counts.add(group - self.range.start, -1);
        }
        for generation in &mut self.group_generation {
            *generation = self.epoch;
        }
        self.store.counters.scanned(read);
        self.store
            .write(&format!("state `{}`", self.name), (batch, deletes))?;
        self.unstored = false;
        Ok(())
    }

    /// Removes every entry of the table.
    pub(crate) fn clear(&mut self) -> Result<(), StateError> {
        if self.unstored {
            // All in the cache: nothing to delete from RocksDB.
            self.cache.clear();
            self.counts.len = 0;
            for (count, generation) in self
                .counts
                .per_group
                .iter_mut()
                .zip(&mut self.group_generation)
            {
                if *count != 0 {
                    *count = 0;
                    *generation = self.epoch;
                }
            }
            return Ok(());
        }
        self.store.settle()?;
        self.cache.clear();
        let db = self.store.db();
        let cf = column_family(db, &self.name)?;
        let mut batch = WriteBatch::default();
        for group in self.range.start..=self.range.end {
            let index = usize::from(group - self.range.start);
            if self.counts.per_group[index] == 0 && self.group_generation[index] == 0 {
                continue;
            }
            let start = prefix(group, &self.namespace);
            match prefix_end(&start) {
                Some(end) => batch.delete_range_cf(&cf, &start, &end),
                None => batch.delete_range_cf(&cf, &start, &vec![0xffu8; 64]),
            }
            self.counts.per_group[index] = 0;
            self.group_generation[index] = self.epoch;
        }
        self.counts.len = 0;
        if !batch.is_empty() {
            let deletes = batch.len() as u64;
            self.store
                .apply("clear", &format!("state `{}`", self.name), (batch, deletes))?;
        }
        self.unstored = true;
        self.complete = true;
        Ok(())
    }

    /// Hands the cache's changes off to the store and reserves a RocksDB
    /// checkpoint after them: the task thread only copies the changed records;
    /// encoding and writing them, the memtable flush and the checkpoint's files
    /// are the snapshot's asynchronous part ([`SubtaskStore::settle`]). The
    /// records stay in the cache, so reads see them until then.
    pub(crate) fn freeze(&mut self) -> Result<RocksFrozen<K, V>, StateError> {
        self.hand_off();
        let checkpoint = self.store.checkpoint()?;
        let frozen = RocksFrozen::of_parts(
            self.name.clone(),
            self.id,
            checkpoint,
            self.namespace.clone(),
            self.range,
            self.counts.per_group.clone(),
            self.group_generation.clone(),
        );
        self.epoch += 1;
        Ok(frozen)
    }

    /// Writes restored entries straight to RocksDB.
    pub(crate) fn restore_entries(
        &mut self,
        group: KeyGroup,
        entries: Vec<(K, V)>,
    ) -> Result<usize, StateError> {
        self.flush()?;
        self.cache.clear();
        self.complete = false;
        if !self.range.contains(group) {
            return Err(foreign_group(&self.name, group.get(), self.range));
        }
        if entries.is_empty() {
            // A header chunk: the entries are in the instance already.
            return Ok(0);
        }
        let index = usize::from(group.get() - self.range.start);
        let store = self.store.clone();
        let db = store.db();
        let cf = column_family(db, &self.name)?;
        let mut batch = WriteBatch::default();
        let mut restored = 0;
        for (key, value) in entries {
            crate::check_group(&self.name, &key, group, self.max)?;
            let stored = stored_key(
                &self.name,
                &mut self.key_buf,
                group.get(),
                &self.namespace,
                &key,
            )?;
            let existed = self.counts.len > 0
                && db
                    .get_pinned_cf(&cf, stored)
                    .map_err(|e| rocks_error(format!("cannot read state `{}`", self.name), e))?
                    .is_some();
            batch.put_cf(&cf, stored, encode(&self.name, &value)?);
            if !existed {
                self.counts.add(group.get() - self.range.start, 1);
            }
            restored += 1;
        }
        self.group_generation[index] = self.epoch;
        self.store
            .apply("restore", &format!("state `{}`", self.name), (batch, 0))?;
        self.unstored = false;
        Ok(restored)
    }
}

/// The write batch of the changes `changes` of table `name` (in `namespace`), and
/// how many are deletions.
fn batch_of<'a, K: Serialize + 'a, V: Serialize + 'a>(
    db: &crate::rocks::Db,
    name: &str,
    namespace: &[u8],
    changes: impl IntoIterator<Item = (u16, &'a K, Option<&'a V>)>,
    key_buf: &mut Vec<u8>,
) -> Result<(WriteBatch, u64), StateError> {
    let cf = column_family(db, name)?;
    let mut batch = WriteBatch::default();
    let mut deletes = 0;
    for (group, key, value) in changes {
        key_buf.clear();
        key_buf.extend_from_slice(&group.to_be_bytes());
        key_buf.extend_from_slice(namespace);
        bincode::serde::encode_into_std_write(key, &mut *key_buf, bincode::config::standard())
            .map_err(|e| StateError::Encode {
                state: name.to_string(),
                reason: e.to_string(),
            })?;
        match value {
            Some(value) => batch.put_cf(&cf, &*key_buf, encode(name, value)?),
            None => {
                batch.delete_cf(&cf, &*key_buf);
                deletes += 1;
            }
        }
    }
    Ok((batch, deletes))
}

/// The stored value of `key` (of key group `group`) in `namespace` of the column
/// family `name`, read from RocksDB.
fn read_stored<K: Serialize, V: StateValue>(
    store: &SubtaskStore,
    name: &str,
    namespace: &[u8],
    key_buf: &mut Vec<u8>,
    group: u16,
    key: &K,
) -> Result<Option<V>, StateError> {
    let stored = stored_key(name, key_buf, group, namespace, key)?;
    let db = store.db();
    let cf = db.cf_handle(name).ok_or_else(|| missing_cf(name))?;
    match db
        .get_pinned_cf(&cf, stored)
        .map_err(|e| rocks_error(format!("cannot read state `{name}`"), e))?
    {
        Some(bytes) => {
            store.counters.get(bytes.len());
            Ok(Some(decode::<V>(name, &bytes)?))
        }
        None => {
            store.counters.get(0);
            Ok(None)
        }
    }
}

/// The error for column family `name` (created for the state of that name) missing
/// from the instance: the store does not hold state it should.
pub(crate) fn missing_cf(name: &str) -> StateError {
    StateError::Corrupt {
        state: name.to_owned(),
        reason: format!("RocksDB column family `{name}` is missing"),
    }
}

/// The column family `name` of `db`, which must exist.
pub(crate) fn column_family<'a>(
    db: &'a crate::rocks::Db,
    name: &str,
) -> Result<Arc<rocksdb::BoundColumnFamily<'a>>, StateError> {
    db.cf_handle(name).ok_or_else(|| missing_cf(name))
}

/// Calls `f(group, key bytes, value bytes)` for every entry of `namespace` in the key
/// groups of `range`.
pub(crate) fn scan(
    db: &crate::rocks::Db,
    column_family: &str,
    namespace: &[u8],
    range: KeyGroupRange,
    mut f: impl FnMut(u16, &[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let cf = db
        .cf_handle(column_family)
        .ok_or_else(|| missing_cf(column_family))?;
    for group in range.start..=range.end {
        let start = prefix(group, namespace);
        let mut options = ReadOptions::default();
        if let Some(end) = prefix_end(&start) {
            options.set_iterate_upper_bound(end);
        }
        let mut iter = db.raw_iterator_cf_opt(&cf, options);
        iter.seek(&start);
        while iter.valid() {
            match (iter.key(), iter.value()) {
                (Some(key), Some(value)) if key.starts_with(&start) => {
                    f(group, &key[start.len()..], value)?;
                }
                _ => break,
            }
            iter.next();
        }
        iter.status()
            .map_err(|e| rocks_error(format!("cannot scan state `{column_family}`"), e))?;
    }
    Ok(())
}

/// A snapshot of a RocksDB table: a RocksDB checkpoint of its store, read (and
/// encoded by key group, the canonical form) off the task thread.
pub struct RocksFrozen<K, V, H = ()> {
    name: Arc<str>,
    column_family: Arc<str>,
    id: u64,
    header: H,
    checkpoint: Arc<StoreCheckpoint>,
    namespace: Vec<u8>,
    range: KeyGroupRange,
    group_len: Vec<u64>,
    group_generation: Vec<u64>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> RocksFrozen<K, V> {
    /// A snapshot of the table `name` (its column family too) in `checkpoint`.
    pub(crate) fn of_parts(
        name: Arc<str>,
        id: u64,
        checkpoint: Arc<StoreCheckpoint>,
        namespace: Vec<u8>,
        range: KeyGroupRange,
        group_len: Vec<u64>,
        group_generation: Vec<u64>,
    ) -> Self {
        Self {
            column_family: name.clone(),
            name,
            id,
            header: (),
            checkpoint,
            namespace,
            range,
            group_len,
            group_generation,
            _types: PhantomData,
        }
    }
}

impl<K, V, H> RocksFrozen<K, V, H> {
    pub(crate) fn with_header<H2>(self, header: H2) -> RocksFrozen<K, V, H2> {
        RocksFrozen {
            name: self.name,
            column_family: self.column_family,
            id: self.id,
            header,
            checkpoint: self.checkpoint,
            namespace: self.namespace,
            range: self.range,
            group_len: self.group_len,
            group_generation: self.group_generation,
            _types: PhantomData,
        }
    }

    pub(crate) fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    fn owned(&self, shard: usize) -> Option<usize> {
        let group = u16::try_from(shard).ok()?;
        self.range
            .contains(KeyGroup::new(group))
            .then(|| usize::from(group - self.range.start))
    }

    pub(crate) fn state_name(&self) -> &str {
        &self.name
    }

    /// The RocksDB checkpoint holding the table, and where in it the table lives.
    pub(crate) fn native(&self) -> Result<NativeSnapshot, StateError>
    where
        H: Serialize,
    {
        Ok(NativeSnapshot {
            checkpoint: self.checkpoint.clone(),
            table: NativeTable {
                state: self.name.to_string(),
                column_family: self.column_family.to_string(),
                namespace: self.namespace.clone(),
                header: encode(&self.name, &self.header)?,
                entries: self.group_len.clone(),
            },
            key_groups: self.range,
        })
    }

    pub(crate) fn table_id(&self) -> u64 {
        self.id
    }
    pub(crate) fn shard_count(&self) -> usize {
        usize::from(self.range.end) + 1
    }
    pub(crate) fn shard_generation(&self, shard: usize) -> u64 {
        self.owned(shard).map_or(0, |i| self.group_generation[i])
    }
    pub(crate) fn shard_len(&self, shard: usize) -> usize {
        self.owned(shard).map_or(0, |i| self.group_len[i] as usize)
    }

    /// Encodes key group `shard` as `(header, Vec<(K, V)>)` without decoding: the
    /// stored key and value bytes are already the bincode of each.
    pub(crate) fn encode_shard(&self, shard: usize) -> Result<KeyedSnapshot, StateError>
    where
        H: Serialize,
    {
        let mut out = KeyedSnapshot::new();
        let Some(index) = self.owned(shard) else {
            return Ok(out);
        };
        if self.group_len[index] == 0 {
            return Ok(out);
        }
        let group = shard as u16;
        let db = self.checkpoint.db()?;
        let mut body = Vec::new();
        let mut count = 0u64;
        let single = KeyGroupRange {
            start: group,
            end: group,
        };
        scan(
            db,
            &self.column_family,
            &self.namespace,
            single,
            |_, key, value| {
                body.extend_from_slice(key);
                body.extend_from_slice(value);
                count += 1;
                Ok(())
            },
        )?;
        if count == 0 {
            return Ok(out);
        }
        let mut bytes = encode(&self.name, &self.header)?;
        bytes.extend(encode(&self.name, &count)?);
        bytes.extend(body);
        out.insert(KeyGroup::new(group), bytes);
        Ok(out)
    }
}

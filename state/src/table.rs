//! [`StateTable`]: the heap backend's keyed map, with change tracking for cheap
//! snapshots.

use crate::{
    decode, encode, key_group_for_key, KeyGroup, KeyGroupRange, MaxParallelism, StateError,
};
use rustc_hash::FxHashMap;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::hash::Hash;

/// What a state key must be: hashable, comparable, cloneable, serialisable, sendable.
pub trait StateKey: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static {}
impl<T: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static> StateKey for T {}

/// What a state value must be: cloneable (for snapshots), serialisable, sendable.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + 'static> StateValue for T {}

#[derive(Clone, Debug)]
struct Slot<V> {
    value: V,
    /// The snapshot epoch in which the entry was last recorded as changed.
    epoch: u32,
}

/// A keyed table on the heap: the storage behind every kind of keyed state.
///
/// With change tracking enabled, every write records its key once per snapshot epoch,
/// so [`StateTable::take_changes`] (the synchronous part of an incremental snapshot)
/// costs in proportion to the keys changed since the previous snapshot, never to the
/// size of the table. Without it (checkpointing off) writes cost nothing extra.
#[derive(Clone, Debug)]
pub struct StateTable<K, V> {
    name: String,
    entries: FxHashMap<K, Slot<V>>,
    tracking: bool,
    epoch: u32,
    changed: Vec<K>,
}

/// The keyed state of one table captured by a snapshot: entries by key group.
pub type KeyedSnapshot = BTreeMap<KeyGroup, Vec<u8>>;

impl<K: StateKey, V: StateValue> StateTable<K, V> {
    /// An empty table; `name` identifies it in snapshots and errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            entries: FxHashMap::default(),
            tracking: false,
            epoch: 1,
            changed: Vec::new(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts recording changed keys (done by the runtime when checkpointing is on).
    pub fn enable_change_tracking(&mut self) {
        self.tracking = true;
    }

    #[inline]
    fn mark(changed: &mut Vec<K>, tracking: bool, epoch: u32, slot_epoch: &mut u32, key: &K) {
        if tracking && *slot_epoch != epoch {
            *slot_epoch = epoch;
            changed.push(key.clone());
        }
    }

    /// The value of `key`, if any.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|slot| &slot.value)
    }

    /// The value of `key` for update, if any (the key counts as changed).
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let slot = self.entries.get_mut(key)?;
        Self::mark(
            &mut self.changed,
            self.tracking,
            self.epoch,
            &mut slot.epoch,
            key,
        );
        Some(&mut slot.value)
    }

    /// The value of `key` for update, inserting `init()` first if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        self.get_or_insert_with_flag(key, init).0
    }

    /// Like [`StateTable::get_or_insert_with`], also telling whether the entry is new.
    #[inline]
    pub fn get_or_insert_with_flag(&mut self, key: K, init: impl FnOnce() -> V) -> (&mut V, bool) {
        match self.entries.entry(key) {
            Entry::Occupied(occupied) => {
                let (tracking, epoch) = (self.tracking, self.epoch);
                if tracking && occupied.get().epoch != epoch {
                    self.changed.push(occupied.key().clone());
                }
                let slot = occupied.into_mut();
                slot.epoch = epoch;
                (&mut slot.value, false)
            }
            Entry::Vacant(vacant) => {
                if self.tracking {
                    self.changed.push(vacant.key().clone());
                }
                let slot = vacant.insert(Slot {
                    value: init(),
                    epoch: self.epoch,
                });
                (&mut slot.value, true)
            }
        }
    }

    /// Sets the value of `key`, returning the previous one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if self.tracking {
            let recorded = self
                .entries
                .get(&key)
                .is_some_and(|s| s.epoch == self.epoch);
            if !recorded {
                self.changed.push(key.clone());
            }
        }
        self.entries
            .insert(
                key,
                Slot {
                    value,
                    epoch: self.epoch,
                },
            )
            .map(|slot| slot.value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        if self.tracking {
            self.changed.push(key.clone());
        }
        Some(slot.value)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, slot)| (k, &slot.value))
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let (tracking, changed) = (self.tracking, &mut self.changed);
        self.entries.retain(|k, slot| {
            let kept = keep(k, &mut slot.value);
            if !kept && tracking {
                changed.push(k.clone());
            }
            kept
        });
    }

    /// The synchronous part of an incremental snapshot: the keys changed since the
    /// previous call, each with its current value (`None` = deleted). Costs
    /// O(changed keys). Starts a new epoch.
    pub fn take_changes(&mut self) -> Vec<(K, Option<V>)> {
        let changed = std::mem::take(&mut self.changed);
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let mut out = Vec::with_capacity(changed.len());
        for key in changed {
            let value = self.entries.get(&key).map(|slot| slot.value.clone());
            out.push((key, value));
        }
        out
    }

    /// A full copy of the table (for savepoints and tests). Costs O(size).
    pub fn to_entries(&self) -> Vec<(K, V)> {
        self.entries
            .iter()
            .map(|(k, slot)| (k.clone(), slot.value.clone()))
            .collect()
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
        let mut groups: BTreeMap<KeyGroup, Vec<(&K, &V)>> = BTreeMap::new();
        for (key, value) in entries {
            groups
                .entry(key_group_for_key(key, max))
                .or_default()
                .push((key, value));
        }
        groups
            .into_iter()
            .map(|(group, entries)| Ok((group, encode(name, &entries)?)))
            .collect()
    }

    /// Encodes the whole table by key group.
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
        let mut restored = 0;
        for (group, bytes) in snapshot {
            if !range.contains(*group) {
                continue;
            }
            let entries: Vec<(K, V)> = decode(&self.name, bytes)?;
            for (key, value) in entries {
                if key_group_for_key(&key, max) != *group {
                    return Err(StateError::Corrupt {
                        state: self.name.clone(),
                        reason: format!("a key stored under {group} hashes to another key group"),
                    });
                }
                self.entries.insert(
                    key,
                    Slot {
                        value,
                        epoch: self.epoch,
                    },
                );
                restored += 1;
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u16, i64),
        Add(u16, i64),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..64, any::<i64>()).prop_map(|(k, v)| Op::Put(k, v)),
            (0u16..64, -100i64..100).prop_map(|(k, v)| Op::Add(k, v)),
            (0u16..64).prop_map(Op::Remove),
        ]
    }

    fn apply(table: &mut StateTable<u16, i64>, op: &Op) {
        match *op {
            Op::Put(k, v) => {
                table.insert(k, v);
            }
            Op::Add(k, v) => {
                let slot = table.get_or_insert_with(k, || 0);
                *slot = slot.wrapping_add(v);
            }
            Op::Remove(k) => {
                table.remove(&k);
            }
        }
    }

    proptest! {
        /// snapshot -> restore yields identical state, whatever the operations.
        #[test]
        fn snapshot_restore_round_trips(ops in proptest::collection::vec(op(), 0..200)) {
            let max = MaxParallelism::DEFAULT;
            let mut table = StateTable::new("t");
            for op in &ops { apply(&mut table, op); }
            let snapshot = table.snapshot(max).unwrap();
            let mut restored = StateTable::<u16, i64>::new("t");
            let all = KeyGroupRange { start: 0, end: 127 };
            restored.restore(&snapshot, all, max).unwrap();
            let mut a = table.to_entries(); a.sort();
            let mut b = restored.to_entries(); b.sort();
            prop_assert_eq!(a, b);
        }

        /// Applying the incremental changes of every epoch to a copy reproduces the table.
        #[test]
        fn changes_replay_to_the_same_state(epochs in proptest::collection::vec(proptest::collection::vec(op(), 0..50), 1..6)) {
            let mut table = StateTable::new("t");
            table.enable_change_tracking();
            let mut replica: BTreeMap<u16, i64> = BTreeMap::new();
            for epoch in &epochs {
                for op in epoch { apply(&mut table, op); }
                for (k, v) in table.take_changes() {
                    match v { Some(v) => { replica.insert(k, v); } None => { replica.remove(&k); } }
                }
                let mut a = table.to_entries(); a.sort();
                let b: Vec<_> = replica.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn corrupt_bytes_are_reported() {
        let mut snapshot = KeyedSnapshot::new();
        snapshot.insert(KeyGroup::new(3), vec![0xff, 0xff, 0xff]);
        let mut table = StateTable::<u16, i64>::new("counts");
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

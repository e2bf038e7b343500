//! Typed keyed state over [`StateTable`]: value, list, map and aggregating state.
//!
//! Each is scoped per key (every call names its key) and partitioned per key group
//! in snapshots; each exposes its table for snapshot and restore.

use crate::{AggregateFunction, StateKey, StateTable, StateValue};
use rustc_hash::FxHashMap;
use std::hash::Hash;
use std::ops::{Deref, DerefMut};

macro_rules! table_access {
    ($ty:ident < $($p:ident),* >, $value:ty) => {
        impl<$($p),*> Deref for $ty<$($p),*> where K: StateKey, $value: StateValue {
            type Target = StateTable<K, $value>;
            fn deref(&self) -> &Self::Target { &self.table }
        }
        impl<$($p),*> DerefMut for $ty<$($p),*> where K: StateKey, $value: StateValue {
            fn deref_mut(&mut self) -> &mut Self::Target { &mut self.table }
        }
    };
}

/// One value per key.
#[derive(Clone, Debug)]
pub struct ValueState<K, V> {
    table: StateTable<K, V>,
}

impl<K: StateKey, V: StateValue> ValueState<K, V> {
    /// An empty state named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            table: StateTable::new(name),
        }
    }

    /// Sets the value of `key`.
    pub fn update(&mut self, key: K, value: V) {
        self.table.insert(key, value);
    }

    /// Clears the value of `key`.
    pub fn clear(&mut self, key: &K) -> Option<V> {
        self.table.remove(key)
    }
}
table_access!(ValueState<K, V>, V);

/// A list of values per key.
#[derive(Clone, Debug)]
pub struct ListState<K, V> {
    table: StateTable<K, Vec<V>>,
}

impl<K: StateKey, V: StateValue> ListState<K, V> {
    /// An empty state named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            table: StateTable::new(name),
        }
    }

    /// Appends `value` to the list of `key`.
    pub fn add(&mut self, key: K, value: V) {
        self.table.get_or_insert_with(key, Vec::new).push(value);
    }

    /// The list of `key` (empty if none).
    pub fn list(&self, key: &K) -> &[V] {
        self.table.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Removes and returns the list of `key`.
    pub fn take(&mut self, key: &K) -> Vec<V> {
        self.table.remove(key).unwrap_or_default()
    }
}
table_access!(ListState<K, V>, Vec<V>);

/// A map of user keys to values per key.
#[derive(Clone, Debug)]
pub struct MapState<K, UK, V>
where
    UK: Hash + Eq,
{
    table: StateTable<K, FxHashMap<UK, V>>,
}

impl<K: StateKey, UK: StateKey, V: StateValue> MapState<K, UK, V> {
    /// An empty state named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            table: StateTable::new(name),
        }
    }

    /// Sets `user_key` to `value` in the map of `key`.
    pub fn put(&mut self, key: K, user_key: UK, value: V) -> Option<V> {
        self.table
            .get_or_insert_with(key, FxHashMap::default)
            .insert(user_key, value)
    }

    /// The value of `user_key` in the map of `key`.
    pub fn get_entry(&self, key: &K, user_key: &UK) -> Option<&V> {
        self.table.get(key)?.get(user_key)
    }

    /// Removes `user_key` from the map of `key` (and the map, once empty).
    pub fn remove_entry(&mut self, key: &K, user_key: &UK) -> Option<V> {
        let map = self.table.get_mut(key)?;
        let removed = map.remove(user_key);
        if map.is_empty() {
            self.table.remove(key);
        }
        removed
    }
}

impl<K: StateKey, UK: StateKey, V: StateValue> Deref for MapState<K, UK, V> {
    type Target = StateTable<K, FxHashMap<UK, V>>;
    fn deref(&self) -> &Self::Target {
        &self.table
    }
}
impl<K: StateKey, UK: StateKey, V: StateValue> DerefMut for MapState<K, UK, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.table
    }
}

/// An incrementally aggregated value per key.
#[derive(Clone, Debug)]
pub struct AggregatingState<K, In, A: AggregateFunction<In>> {
    table: StateTable<K, A::Acc>,
    function: A,
    _in: std::marker::PhantomData<fn(&In)>,
}

impl<K: StateKey, In, A: AggregateFunction<In>> AggregatingState<K, In, A> {
    /// An empty state named `name`, aggregating with `function`.
    pub fn new(name: impl Into<String>, function: A) -> Self {
        Self {
            table: StateTable::new(name),
            function,
            _in: std::marker::PhantomData,
        }
    }

    /// Folds `value` into the accumulator of `key`.
    #[inline]
    pub fn add(&mut self, key: K, value: &In) {
        let function = &self.function;
        let acc = self.table.get_or_insert_with(key, || function.create());
        function.add(acc, value);
    }

    /// The current result for `key`, if it has seen any element.
    pub fn result(&self, key: &K) -> Option<A::Out> {
        self.table.get(key).map(|acc| self.function.result(acc))
    }

    /// The underlying table.
    pub fn table(&self) -> &StateTable<K, A::Acc> {
        &self.table
    }

    /// The underlying table, for snapshot and restore.
    pub fn table_mut(&mut self) -> &mut StateTable<K, A::Acc> {
        &mut self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Count, Max};

    #[test]
    fn typed_states() {
        let mut list: ListState<u32, String> = ListState::new("l");
        list.add(1, "a".into());
        list.add(1, "b".into());
        assert_eq!(list.list(&1), ["a", "b"]);
        assert_eq!(list.take(&1).len(), 2);
        assert!(list.list(&1).is_empty());

        let mut map: MapState<u32, String, i64> = MapState::new("m");
        map.put(7, "x".into(), 1);
        assert_eq!(map.get_entry(&7, &"x".to_string()), Some(&1));
        map.remove_entry(&7, &"x".to_string());
        assert!(map.is_empty());

        let mut agg = AggregatingState::new("a", (Count, Max(|v: &i64| *v)));
        agg.add(3u8, &10);
        agg.add(3u8, &4);
        assert_eq!(agg.result(&3), Some((2, Some(10))));
    }
}

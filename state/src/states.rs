//! Typed keyed state over [`StateTable`]: value, list, map and aggregating state.
//!
//! Each is scoped per key (every call names its key) and partitioned per key group
//! in snapshots; each exposes its table for snapshot and restore. `new` makes a
//! state on the heap; `in_backend` in the subtask's backend (RocksDB or heap).

use crate::{AggregateFunction, KeyedBackend, StateError, StateKey, StateTable, StateValue};
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
#[derive(Debug)]
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

    /// An empty state named `name` in `backend`.
    ///
    /// # Errors
    /// As [`StateTable::in_backend`].
    pub fn in_backend(backend: &KeyedBackend, name: impl Into<String>) -> Result<Self, StateError> {
        Ok(Self {
            table: StateTable::in_backend(backend, name, Vec::new())?,
        })
    }

    /// Sets the value of `key`.
    ///
    /// # Errors
    /// As [`StateTable::insert`].
    pub fn update(&mut self, key: K, value: V) -> Result<(), StateError> {
        self.table.insert(key, value)?;
        Ok(())
    }

    /// Clears the value of `key`.
    ///
    /// # Errors
    /// As [`StateTable::remove`].
    pub fn clear(&mut self, key: &K) -> Result<Option<V>, StateError> {
        self.table.remove(key)
    }
}
table_access!(ValueState<K, V>, V);

/// A list of values per key.
#[derive(Debug)]
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

    /// An empty state named `name` in `backend`.
    ///
    /// # Errors
    /// As [`StateTable::in_backend`].
    pub fn in_backend(backend: &KeyedBackend, name: impl Into<String>) -> Result<Self, StateError> {
        Ok(Self {
            table: StateTable::in_backend(backend, name, Vec::new())?,
        })
    }

    /// Appends `value` to the list of `key`.
    ///
    /// # Errors
    /// As [`StateTable::get_or_insert_with`].
    pub fn add(&mut self, key: K, value: V) -> Result<(), StateError> {
        self.table.get_or_insert_with(key, Vec::new)?.push(value);
        Ok(())
    }

    /// The list of `key` (empty if none).
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn list(&mut self, key: &K) -> Result<&[V], StateError> {
        Ok(self.table.get(key)?.map(Vec::as_slice).unwrap_or(&[]))
    }

    /// Removes and returns the list of `key`.
    ///
    /// # Errors
    /// As [`StateTable::remove`].
    pub fn take(&mut self, key: &K) -> Result<Vec<V>, StateError> {
        Ok(self.table.remove(key)?.unwrap_or_default())
    }
}
table_access!(ListState<K, V>, Vec<V>);

/// A map of user keys to values per key.
#[derive(Debug)]
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

    /// An empty state named `name` in `backend`.
    ///
    /// # Errors
    /// As [`StateTable::in_backend`].
    pub fn in_backend(backend: &KeyedBackend, name: impl Into<String>) -> Result<Self, StateError> {
        Ok(Self {
            table: StateTable::in_backend(backend, name, Vec::new())?,
        })
    }

    /// Sets `user_key` to `value` in the map of `key`.
    ///
    /// # Errors
    /// As [`StateTable::get_or_insert_with`].
    pub fn put(&mut self, key: K, user_key: UK, value: V) -> Result<Option<V>, StateError> {
        Ok(self
            .table
            .get_or_insert_with(key, FxHashMap::default)?
            .insert(user_key, value))
    }

    /// The value of `user_key` in the map of `key`.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn get_entry(&mut self, key: &K, user_key: &UK) -> Result<Option<&V>, StateError> {
        Ok(self.table.get(key)?.and_then(|map| map.get(user_key)))
    }

    /// Removes `user_key` from the map of `key` (and the map, once empty).
    ///
    /// # Errors
    /// As [`StateTable::get_mut`].
    pub fn remove_entry(&mut self, key: &K, user_key: &UK) -> Result<Option<V>, StateError> {
        let Some(map) = self.table.get_mut(key)? else {
            return Ok(None);
        };
        let removed = map.remove(user_key);
        if map.is_empty() {
            self.table.remove(key)?;
        }
        Ok(removed)
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
#[derive(Debug)]
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

    /// An empty state named `name` in `backend`, aggregating with `function`.
    ///
    /// # Errors
    /// As [`StateTable::in_backend`].
    pub fn in_backend(
        backend: &KeyedBackend,
        name: impl Into<String>,
        function: A,
    ) -> Result<Self, StateError> {
        Ok(Self {
            table: StateTable::in_backend(backend, name, Vec::new())?,
            function,
            _in: std::marker::PhantomData,
        })
    }

    /// Folds `value` into the accumulator of `key`.
    ///
    /// # Errors
    /// As [`StateTable::get_or_insert_with`].
    #[inline]
    pub fn add(&mut self, key: K, value: &In) -> Result<(), StateError> {
        let function = &self.function;
        let acc = self.table.get_or_insert_with(key, || function.create())?;
        function.add(acc, value);
        Ok(())
    }

    /// The current result for `key`, if it has seen any element.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn result(&mut self, key: &K) -> Result<Option<A::Out>, StateError> {
        Ok(self.table.get(key)?.map(|acc| self.function.result(acc)))
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
    fn typed_states() -> Result<(), StateError> {
        let mut list: ListState<u32, String> = ListState::new("l");
        list.add(1, "a".into())?;
        list.add(1, "b".into())?;
        assert_eq!(list.list(&1)?, ["a", "b"]);
        assert_eq!(list.take(&1)?.len(), 2);
        assert!(list.list(&1)?.is_empty());

        let mut map: MapState<u32, String, i64> = MapState::new("m");
        map.put(7, "x".into(), 1)?;
        assert_eq!(map.get_entry(&7, &"x".to_string())?, Some(&1));
        map.remove_entry(&7, &"x".to_string())?;
        assert!(map.is_empty());

        let mut agg = AggregatingState::new("a", (Count, Max(|v: &i64| *v)));
        agg.add(3u8, &10)?;
        agg.add(3u8, &4)?;
        assert_eq!(agg.result(&3)?, Some((2, Some(10))));
        Ok(())
    }
}

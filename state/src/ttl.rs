//! State with a time-to-live ([`TtlValueState`], [`TtlListState`] per element,
//! [`TtlMapState`] per entry), as Flink's `StateTtlConfig` and
//! Kafka Streams' retention offer: a value expires a fixed time after it was last
//! written (processing time), is never returned once expired, and leaves storage
//! without a job having to delete it.
//!
//! ```text
//!  update(key, v, now) ──▶ Expiring { expires_at_ms: now + ttl, value: v }
//!  get(key, now)       ──▶ expired? remove it, None : Some(&value)
//!  cleanup            heap: cleanup(now) (and every snapshot through the runtime)
//!                     RocksDB: a compaction filter on the state's column family
//! ```
//!
//! Expiry times are part of the value, so they survive snapshots, restores,
//! rescaling and a change of backend: a restored value expires when it would have.

use crate::{KeyedBackend, StateError, StateKey, StateTable, StateValue};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A value and when it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring<V> {
    /// Processing time (ms since the Unix epoch) from which the value is expired.
    /// The leading field: RocksDB's compaction filter reads only it.
    pub expires_at_ms: i64,
    /// The value.
    pub value: V,
}

impl<V> Expiring<V> {
    /// Whether the value has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms
    }
}

/// The current processing time, ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether the encoded [`Expiring`] value `bytes` has expired at `now_ms`; false if
/// its leading field does not decode (a compaction filter keeps what it cannot read).
#[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
pub(crate) fn expired_encoding(bytes: &[u8], now_ms: i64) -> bool {
    bincode::serde::decode_from_slice::<i64, _>(bytes, bincode::config::standard())
        .is_ok_and(|(expires_at_ms, _)| expires_at_ms <= now_ms)
}

/// One value per key that expires `ttl` after it was last written (Flink's
/// `OnCreateAndWrite` update type and `NeverReturnExpired` visibility).
///
/// Times are passed in (`now_ms`, processing time in ms since the Unix epoch) so
/// that callers decide the clock; RocksDB's compaction filter uses the wall clock.
/// Through [`Deref`] the state is the underlying [`StateTable`] of [`Expiring`]
/// values, for snapshots and restores.
///
/// ```
/// use std::time::Duration;
/// use weir_state::TtlValueState;
/// let mut sessions: TtlValueState<u64, String> =
///     TtlValueState::new("sessions", Duration::from_secs(60));
/// sessions.update(7, "open".into(), 1_000)?;
/// assert_eq!(sessions.value(&7, 30_000)?, Some(&"open".to_string()));
/// assert_eq!(sessions.value(&7, 61_000)?, None); // expired: gone
/// assert!(sessions.is_empty());
/// # Ok::<(), weir_state::StateError>(())
/// ```
#[derive(Debug)]
pub struct TtlValueState<K, V> {
    table: StateTable<K, Expiring<V>>,
    ttl_ms: i64,
}

impl<K: StateKey, V: StateValue> TtlValueState<K, V> {
    /// The value of `key` unless it has expired at `now_ms`; an expired value is
    /// removed.
    ///
    /// # Errors
    /// As [`StateTable::get`].
    pub fn value(&mut self, key: &K, now_ms: i64) -> Result<Option<&V>, StateError> {
        let expired = match self.table.get(key)? {
            None => return Ok(None),
            Some(entry) => entry.is_expired(now_ms),
        };
        if expired {
            self.table.remove(key)?;
            return Ok(None);
        }
        Ok(self.table.get(key)?.map(|entry| &entry.value))
    }

    /// Sets the value of `key`, to expire `ttl` after `now_ms`.
    ///
    /// # Errors
    /// As [`StateTable::insert`].
    pub fn update(&mut self, key: K, value: V, now_ms: i64) -> Result<(), StateError> {
        let expires_at_ms = now_ms.saturating_add(self.ttl_ms);
        self.table.insert(
            key,
            Expiring {
                expires_at_ms,
                value,
            },
        )?;
        Ok(())
    }

    /// Removes the value of `key`, returning it unless it had expired at `now_ms`.
    ///
    /// # Errors
    /// As [`StateTable::remove`].
    pub fn clear(&mut self, key: &K, now_ms: i64) -> Result<Option<V>, StateError> {
        Ok(self
            .table
            .remove(key)?
            .filter(|entry| !entry.is_expired(now_ms))
            .map(|entry| entry.value))
    }

    /// Removes every value expired at `now_ms` (a full pass; on RocksDB compaction
    /// does this without one). Returns how many were removed.
    ///
    /// # Errors
    /// As [`StateTable::retain`].
    pub fn cleanup(&mut self, now_ms: i64) -> Result<usize, StateError> {
        let before = self.table.len();
        self.table.retain(|_, entry| !entry.is_expired(now_ms))?;
        Ok(before.saturating_sub(self.table.len()))
    }
}

/// Elements (of a list, or entries of a map) that each expire `ttl` after they were
/// written. They are stored under one key, in an [`Expiring`] whose expiry is the
/// latest of the elements', so RocksDB's compaction filter drops the key once every
/// element has expired.
trait Elements {
    /// Drops the elements expired at `now_ms`.
    fn drop_expired(&mut self, now_ms: i64);
    /// The latest expiry among the elements (`i64::MIN` if none).
    fn latest_expiry(&self) -> i64;
    /// Whether no element is left.
    fn is_empty(&self) -> bool;
}

impl<V> Elements for Vec<Expiring<V>> {
    fn drop_expired(&mut self, now_ms: i64) {
        self.retain(|element| !element.is_expired(now_ms));
    }
    fn latest_expiry(&self) -> i64 {
        self.iter()
            .map(|e| e.expires_at_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl<UK: std::hash::Hash + Eq, V> Elements for FxHashMap<UK, Expiring<V>> {
    fn drop_expired(&mut self, now_ms: i64) {
        self.retain(|_, entry| !entry.is_expired(now_ms));
    }
    fn latest_expiry(&self) -> i64 {
        self.values()
            .map(|e| e.expires_at_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
    fn is_empty(&self) -> bool {
        FxHashMap::is_empty(self)
    }
}

/// Removes every element of `table` expired at `now_ms`, and the keys left with
/// none (a full pass). Returns how many keys were removed.
fn cleanup_elements<K: StateKey, C: Elements>(
    table: &mut StateTable<K, Expiring<C>>,
    now_ms: i64,
) -> Result<usize, StateError>
where
    Expiring<C>: StateValue,
{
    let before = table.len();
    table.retain(|_, elements| {
        elements.value.drop_expired(now_ms);
        elements.expires_at_ms = elements.value.latest_expiry();
        !elements.value.is_empty()
    })?;
    Ok(before.saturating_sub(table.len()))
}

/// A list per key whose elements each expire `ttl` after they were added (Flink's
/// list state with a TTL: per element, `OnCreateAndWrite`, `NeverReturnExpired`).
///
/// Expired elements are never returned and are dropped when their key is read; on
/// the heap every snapshot drops them, in RocksDB compaction drops a list whose
/// elements have all expired. Through [`Deref`] the state is its underlying table.
///
/// ```
/// use std::time::Duration;
/// use weir_state::TtlListState;
/// let mut clicks: TtlListState<u64, u32> =
///     TtlListState::new("clicks", Duration::from_secs(60));
/// clicks.add(7, 100, 1_000)?;
/// clicks.add(7, 200, 30_000)?;
/// assert_eq!(clicks.list(&7, 45_000)?, vec![&100, &200]);
/// assert_eq!(clicks.list(&7, 61_000)?, vec![&200]); // the first one expired
/// assert!(clicks.list(&7, 90_000)?.is_empty());
/// assert!(clicks.is_empty());
/// # Ok::<(), weir_state::StateError>(())
/// ```
#[derive(Debug)]
pub struct TtlListState<K, V> {
    table: StateTable<K, Expiring<Vec<Expiring<V>>>>,
    ttl_ms: i64,
}

impl<K: StateKey, V: StateValue> TtlListState<K, V> {
    /// Appends `value` to the list of `key`, to expire `ttl` after `now_ms`.
    ///
    /// # Errors
    /// As [`StateTable::get_or_insert_with`].
    pub fn add(&mut self, key: K, value: V, now_ms: i64) -> Result<(), StateError> {
        let expires_at_ms = now_ms.saturating_add(self.ttl_ms);
        let list = self.table.get_or_insert_with(key, || Expiring {
            expires_at_ms,
            value: Vec::new(),
        })?;
        list.value.drop_expired(now_ms);
        list.value.push(Expiring {
            expires_at_ms,
            value,
        });
        list.expires_at_ms = list.expires_at_ms.max(expires_at_ms);
        Ok(())
    }

    /// The elements of `key`'s list not expired at `now_ms`, oldest first; expired
    /// ones are removed (the key too, once none is left).
    ///
    /// # Errors
    /// As [`StateTable::get_mut`].
    pub fn list(&mut self, key: &K, now_ms: i64) -> Result<Vec<&V>, StateError> {
        if self.prune(key, now_ms)? {
            return Ok(Vec::new());
        }
        Ok(self
            .table
            .get(key)?
            .map(|list| list.value.iter().map(|element| &element.value).collect())
            .unwrap_or_default())
    }

    /// Removes the list of `key`, returning its elements not expired at `now_ms`.
    ///
    /// # Errors
    /// As [`StateTable::remove`].
    pub fn take(&mut self, key: &K, now_ms: i64) -> Result<Vec<V>, StateError> {
        Ok(self
            .table
            .remove(key)?
            .map(|list| {
                list.value
                    .into_iter()
                    .filter(|element| !element.is_expired(now_ms))
                    .map(|element| element.value)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Drops the expired elements of `key`; true if its list is gone.
    fn prune(&mut self, key: &K, now_ms: i64) -> Result<bool, StateError> {
        let Some(list) = self.table.get_mut(key)? else {
            return Ok(true);
        };
        if list.is_expired(now_ms) {
            self.table.remove(key)?;
            return Ok(true);
        }
        if list.value.first().is_some_and(|e| e.is_expired(now_ms)) {
            list.value.drop_expired(now_ms);
        }
        Ok(false)
    }

    /// Removes every element expired at `now_ms`, and the lists left empty (a full
    /// pass). Returns how many lists were removed.
    ///
    /// # Errors
    /// As [`StateTable::retain`].
    pub fn cleanup(&mut self, now_ms: i64) -> Result<usize, StateError> {
        cleanup_elements(&mut self.table, now_ms)
    }
}

/// A map of user keys to values per key whose entries each expire `ttl` after they
/// were written (Flink's map state with a TTL: per entry, `OnCreateAndWrite`,
/// `NeverReturnExpired`).
///
/// Expired entries are never returned and are dropped when read; on the heap every
/// snapshot drops them, in RocksDB compaction drops a map whose entries have all
/// expired. Through [`Deref`] the state is its underlying table.
///
/// ```
/// use std::time::Duration;
/// use weir_state::TtlMapState;
/// let mut carts: TtlMapState<u64, String, u32> =
///     TtlMapState::new("carts", Duration::from_secs(60));
/// carts.put(7, "apples".into(), 3, 1_000)?;
/// carts.put(7, "pears".into(), 1, 40_000)?;
/// assert_eq!(carts.get_entry(&7, &"apples".into(), 60_999)?, Some(&3));
/// assert_eq!(carts.get_entry(&7, &"apples".into(), 61_000)?, None);
/// assert_eq!(carts.get_entry(&7, &"pears".into(), 61_000)?, Some(&1));
/// # Ok::<(), weir_state::StateError>(())
/// ```
#[derive(Debug)]
pub struct TtlMapState<K, UK, V>
where
    UK: std::hash::Hash + Eq,
{
    table: StateTable<K, Expiring<FxHashMap<UK, Expiring<V>>>>,
    ttl_ms: i64,
}

impl<K: StateKey, UK: StateKey, V: StateValue> TtlMapState<K, UK, V> {
    /// Sets `user_key` to `value` in the map of `key`, to expire `ttl` after
    /// `now_ms`; returns the previous value unless it had expired.
    ///
    /// # Errors
    /// As [`StateTable::get_or_insert_with`].
    pub fn put(
        &mut self,
        key: K,
        user_key: UK,
        value: V,
        now_ms: i64,
    ) -> Result<Option<V>, StateError> {
        let expires_at_ms = now_ms.saturating_add(self.ttl_ms);
        let map = self.table.get_or_insert_with(key, || Expiring {
            expires_at_ms,
            value: FxHashMap::default(),
        })?;
        map.expires_at_ms = map.expires_at_ms.max(expires_at_ms);
        Ok(map
            .value
            .insert(
                user_key,
                Expiring {
                    expires_at_ms,
                    value,
                },
            )
            .filter(|old| !old.is_expired(now_ms))
            .map(|old| old.value))
    }

    /// The value of `user_key` in the map of `key` unless it has expired at
    /// `now_ms`; an expired entry is removed (the map too, once empty).
    ///
    /// # Errors
    /// As [`StateTable::get_mut`].
    pub fn get_entry(
        &mut self,
        key: &K,
        user_key: &UK,
        now_ms: i64,
    ) -> Result<Option<&V>, StateError> {
        let expired = match self.table.get(key)?.and_then(|map| map.value.get(user_key)) {
            None => return Ok(None),
            Some(entry) => entry.is_expired(now_ms),
        };
        if expired {
            self.remove_entry(key, user_key, now_ms)?;
            return Ok(None);
        }
        Ok(self
            .table
            .get(key)?
            .and_then(|map| map.value.get(user_key))
            .map(|entry| &entry.value))
    }

    /// Removes `user_key` from the map of `key` (and the map, once empty),
    /// returning its value unless it had expired at `now_ms`.
    ///
    /// # Errors
    /// As [`StateTable::get_mut`].
    pub fn remove_entry(
        &mut self,
        key: &K,
        user_key: &UK,
        now_ms: i64,
    ) -> Result<Option<V>, StateError> {
        let Some(map) = self.table.get_mut(key)? else {
            return Ok(None);
        };
        let removed = map.value.remove(user_key);
        if map.value.is_empty() {
            self.table.remove(key)?;
        }
        Ok(removed
            .filter(|entry| !entry.is_expired(now_ms))
            .map(|entry| entry.value))
    }

    /// The entries of `key`'s map not expired at `now_ms` (in no particular order);
    /// expired ones are removed.
    ///
    /// # Errors
    /// As [`StateTable::get_mut`].
    pub fn entries_of(&mut self, key: &K, now_ms: i64) -> Result<Vec<(&UK, &V)>, StateError> {
        let Some(map) = self.table.get_mut(key)? else {
            return Ok(Vec::new());
        };
        if map.value.values().any(|entry| entry.is_expired(now_ms)) {
            map.value.drop_expired(now_ms);
            if map.value.is_empty() {
                self.table.remove(key)?;
                return Ok(Vec::new());
            }
        }
        Ok(self
            .table
            .get(key)?
            .map(|map| map.value.iter().map(|(k, e)| (k, &e.value)).collect())
            .unwrap_or_default())
    }

    /// Removes every entry expired at `now_ms`, and the maps left empty (a full
    /// pass). Returns how many maps were removed.
    ///
    /// # Errors
    /// As [`StateTable::retain`].
    pub fn cleanup(&mut self, now_ms: i64) -> Result<usize, StateError> {
        cleanup_elements(&mut self.table, now_ms)
    }
}

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// What every state with a time-to-live has: constructors, its time-to-live, the
/// cleanup the runtime calls before snapshots, and [`Deref`] / [`DerefMut`] to its
/// table (for snapshots and restores).
macro_rules! ttl_state {
    ([$($generics:tt)*] $state:ty => $value:ty, $what:literal) => {
        impl<$($generics)*> $state {
            #[doc = concat!("An empty state named `name` on the heap whose ", $what, " live `ttl`.")]
            pub fn new(name: impl Into<String>, ttl: Duration) -> Self {
                Self {
                    table: StateTable::new(name),
                    ttl_ms: ttl_millis(ttl),
                }
            }

            #[doc = concat!("An empty state named `name` in `backend` whose ", $what, " live `ttl`; in")]
            /// RocksDB its column family drops expired entries when it compacts.
            ///
            /// # Errors
            /// As [`StateTable::in_backend`].
            pub fn in_backend(
                backend: &KeyedBackend,
                name: impl Into<String>,
                ttl: Duration,
            ) -> Result<Self, StateError> {
                Ok(Self {
                    table: StateTable::in_backend_with_ttl(backend, name, Vec::new())?,
                    ttl_ms: ttl_millis(ttl),
                })
            }

            /// The time-to-live.
            pub fn ttl(&self) -> Duration {
                Duration::from_millis(self.ttl_ms.unsigned_abs())
            }

            /// Removes expired values where that is the backend's way: a full pass on
            /// the heap (`cleanup`), nothing in RocksDB (its compaction filter does
            /// it). The runtime calls this before every snapshot, so snapshots of heap
            /// state carry nothing that had expired when they were taken.
            ///
            /// # Errors
            /// As [`StateTable::retain`].
            pub fn cleanup_before_snapshot(&mut self) -> Result<usize, StateError> {
                if self.table.is_rocksdb() {
                    return Ok(0);
                }
                self.cleanup(now_ms())
            }
        }

        impl<$($generics)*> Deref for $state {
            type Target = StateTable<K, $value>;
            fn deref(&self) -> &Self::Target {
                &self.table
            }
        }

        impl<$($generics)*> DerefMut for $state {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.table
            }
        }
    };
}
ttl_state!([K: StateKey, V: StateValue] TtlValueState<K, V> => Expiring<V>, "values");
ttl_state!(
    [K: StateKey, V: StateValue] TtlListState<K, V> => Expiring<Vec<Expiring<V>>>,
    "elements"
);
ttl_state!(
    [K: StateKey, UK: StateKey, V: StateValue] TtlMapState<K, UK, V>
        => Expiring<FxHashMap<UK, Expiring<V>>>,
    "entries"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compaction_filter_reads_the_expiry_from_the_encoding() {
        let bytes = crate::encode(
            "t",
            &Expiring {
                expires_at_ms: 5_000,
                value: "x".to_string(),
            },
        )
        .unwrap();
        assert!(!expired_encoding(&bytes, 4_999));
        assert!(expired_encoding(&bytes, 5_000));
        assert!(!expired_encoding(&[], 5_000));
    }
}

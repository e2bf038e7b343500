//! State with a time-to-live ([`TtlValueState`]), as Flink's `StateTtlConfig` and
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
    /// An empty state named `name` on the heap whose values live `ttl`.
    pub fn new(name: impl Into<String>, ttl: Duration) -> Self {
        Self {
            table: StateTable::new(name),
            ttl_ms: ttl_millis(ttl),
        }
    }

    /// An empty state named `name` in `backend` whose values live `ttl`; in RocksDB
    /// its column family drops expired entries when it compacts.
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

    /// Removes expired values where that is the backend's way: a full pass on the
    /// heap, nothing in RocksDB (its compaction filter does it). The runtime calls
    /// this before every snapshot, so snapshots of heap state carry no value that
    /// had expired when they were taken.
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

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl<K: StateKey, V: StateValue> Deref for TtlValueState<K, V> {
    type Target = StateTable<K, Expiring<V>>;
    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

impl<K: StateKey, V: StateValue> DerefMut for TtlValueState<K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.table
    }
}

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

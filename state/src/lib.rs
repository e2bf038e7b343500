//! weir-state: keyed state for weir operators.
//!
//! ```text
//!   key ──StableHasher──▶ hash ──% max_parallelism──▶ KeyGroup ──▶ owning subtask
//!                                                        │
//!                                    state tables ◀──────┘ (snapshots are partitioned by key group)
//! ```
//!
//! Keys are hashed with [`StableHasher`] (stable across processes, versions and
//! machines) into one of `max_parallelism` key groups; a subtask owns a contiguous
//! [`KeyGroupRange`]. State lives in [`StateTable`]s, on the heap ([`HeapTable`], the
//! default) or in RocksDB ([`StateBackend::RocksDb`]: one instance per operator
//! subtask, a column family per state, a write-back record cache in front);
//! [`ValueState`], [`ListState`], [`MapState`] and [`AggregatingState`] are typed
//! views over one. Both backends snapshot to the same key-group-partitioned form, so
//! a snapshot of either restores into the other.
//!
//! A snapshot of a table is copy-on-write ([`StateTable::freeze`]): the part taken on
//! the task thread costs one small allocation per shard written since the previous
//! snapshot, never anything in proportion to the number of keys; encoding happens
//! later, on another thread, through [`FrozenKeyed`].
//!
//! ```
//! use weir_state::{key_group_for_key, KeyGroupRange, MaxParallelism, ValueState};
//! let max = MaxParallelism::DEFAULT;
//! let group = key_group_for_key(&"alice", max);
//! assert!(group.get() < 128);
//! let mut counts: ValueState<u64, u64> = ValueState::new("count");
//! *counts.get_or_insert_with(17, || 0)? += 1;
//! assert_eq!(counts.get(&17)?, Some(&1));
//! assert!(KeyGroupRange::for_subtask(max, 2, 0).contains(KeyGroup::new(0)));
//! # use weir_state::KeyGroup;
//! # Ok::<(), weir_state::StateError>(())
//! ```
#![deny(missing_docs)]

mod aggregate;
mod backend;
mod codec;
mod error;
pub mod format;
mod hash;
mod heap_table;
mod key_group;
mod lru;
mod native;
#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(feature = "rocksdb")]
mod rocks_table;
#[cfg(feature = "rocksdb")]
mod rocks_timers;
mod snapshot;
mod state_table;
mod states;
mod timers;
mod ttl;

pub use aggregate::{AggregateFunction, Avg, AvgAcc, Count, Max, Min, Sum};
pub use backend::{
    BackendStats, KeyedBackend, RocksDbConfig, SharedBackend, StateBackend, StatsProbe,
    HAS_ROCKSDB, LOCK_FILE, NO_ROCKSDB,
};
pub use codec::{decode, encode};
pub use error::StateError;
pub use hash::{stable_hash, unique_id, StableHasher};
pub use heap_table::{FrozenTable, HeapTable};
pub use key_group::{
    key_group_for_hash, key_group_for_key, KeyGroup, KeyGroupRange, MaxParallelism,
};
pub use lru::LruValueState;
pub use native::{
    read_native_checkpoint, NativeSnapshot, NativeTable, RestoredInstance, StoreCheckpoint,
};
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksDbResources, SubtaskStore};
#[cfg(feature = "rocksdb")]
pub use rocks_table::RocksFrozen;
pub use snapshot::{check_group, chunk_name, chunk_state, FrozenKeyed, KeyedSnapshot};
pub use state_table::{Frozen, StateKey, StateTable, StateValue};
pub use states::{AggregatingState, ListState, MapState, ValueState};
pub use timers::{TimeDomain, TimerEntry, Timers, TimersSnapshot};
pub use ttl::{Expiring, TtlListState, TtlMapState, TtlValueState};

/// The result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

//! What a native (RocksDB) checkpoint of keyed state consists of: the instance's
//! RocksDB checkpoint directory, and where each frozen table lives in it.
//!
//! ```text
//!  RocksFrozen ──native()──▶ NativeSnapshot { checkpoint dir (SST, MANIFEST, …), NativeTable }
//!                                   │ upload SST files once, refer to them afterwards
//!  restore: files ──▶ local dir ──read_native_checkpoint(tables, range)──▶ canonical chunks
//! ```
//!
//! Restoring reads the tables back into the canonical, key-group-partitioned form,
//! so a native checkpoint restores into either backend at any parallelism.

use crate::rocks::StoreCheckpoint;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where one frozen table lives in a RocksDB checkpoint: enough to read it back in
/// the canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeTable {
    /// The state's name (restored chunks are named after it).
    pub state: String,
    /// The column family holding the table.
    pub column_family: String,
    /// The namespace after the key-group prefix of every key of the table.
    pub namespace: Vec<u8>,
    /// The encoded header stored in front of every restored chunk's entries.
    pub header: Vec<u8>,
}

/// A frozen RocksDB table as a native checkpoint sees it: the RocksDB checkpoint
/// (shared by every table of the subtask frozen before the next write) and the table.
#[derive(Clone, Debug)]
pub struct NativeSnapshot {
    /// The RocksDB checkpoint; its directory is removed when the last reference goes.
    pub checkpoint: Arc<StoreCheckpoint>,
    /// Where the table lives in it.
    pub table: NativeTable,
    /// The key groups the subtask owns.
    pub key_groups: crate::KeyGroupRange,
}

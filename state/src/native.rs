//! What a native (RocksDB) checkpoint of keyed state consists of: the instance's
//! RocksDB checkpoint directory, and where each frozen table lives in it.
//!
//! ```text
//!  RocksFrozen ──native()──▶ NativeSnapshot { checkpoint dir (SST, MANIFEST, …), NativeTable }
//!                                   │ upload SST files once, refer to them afterwards
//!  restore, same key groups:  files ──▶ <subtask>/restore ──RestoredInstance──▶ opened as the instance
//!  restore, other key groups: files ──▶ local dir ──read_native_checkpoint(tables, range)──▶ canonical chunks
//! ```
//!
//! A subtask that owns exactly the key groups of the checkpoint, on RocksDB, opens
//! the checkpoint's files as its instance ([`RestoredInstance`]): nothing is
//! rewritten, and the tables take their entry counts from [`NativeTable::entries`].
//! Otherwise the tables are read back into the canonical, key-group-partitioned
//! form, so a native checkpoint restores into either backend at any parallelism.

use crate::{KeyGroupRange, StateError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A RocksDB checkpoint of a subtask's instance: a consistent, read-only copy that
/// later writes do not change. Opened on first read; removed when dropped.
pub struct StoreCheckpoint {
    path: PathBuf,
    instance: u64,
    #[cfg(feature = "rocksdb")]
    reader: crate::rocks::CheckpointReader,
}

impl std::fmt::Debug for StoreCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCheckpoint")
            .field("path", &self.path)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl StoreCheckpoint {
    #[cfg(feature = "rocksdb")]
    pub(crate) fn new(
        path: PathBuf,
        instance: u64,
        reader: crate::rocks::CheckpointReader,
    ) -> Self {
        Self {
            path,
            instance,
            reader,
        }
    }

    /// The directory holding the checkpoint's files (SST files hard-linked from the
    /// instance, `MANIFEST-*`, `CURRENT`, `OPTIONS-*`), once
    /// [`StoreCheckpoint::materialize`] has returned. It is removed when the last
    /// reference to the checkpoint is dropped.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the instance the checkpoint was taken of: SST file names are unique
    /// within one instance only.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Takes the checkpoint if it is not yet (the task thread only reserves it, so
    /// that its pause holds no RocksDB flush): writes what the instance was handed
    /// off before it and creates the files. Blocking; done once, whoever calls it
    /// first (the upload, a reader, or the task's next write).
    ///
    /// # Errors
    /// [`StateError::Io`] naming the state or the checkpoint RocksDB could not
    /// write, or saying the checkpoint was not taken.
    pub fn materialize(&self) -> Result<(), StateError> {
        #[cfg(feature = "rocksdb")]
        self.reader.materialize(&self.path)?;
        Ok(())
    }

    /// Called once the checkpoint's files exist.
    #[cfg(feature = "rocksdb")]
    pub(crate) fn taken(&self) {
        self.reader.taken();
    }

    /// The checkpoint, taken if it is not yet, opened read-only.
    #[cfg(feature = "rocksdb")]
    pub(crate) fn db(&self) -> Result<&crate::rocks::Db, StateError> {
        self.materialize()?;
        self.reader.db(&self.path)
    }
}

impl Drop for StoreCheckpoint {
    fn drop(&mut self) {
        #[cfg(feature = "rocksdb")]
        self.reader.close();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Reads the tables `tables` of the RocksDB checkpoint in `dir` (a native checkpoint
/// materialized locally) for the key groups of `range`, calling `f(group, table,
/// bytes)` with each non-empty key group of each table in the canonical form
/// (`bincode((header, Vec<(K, V)>))`, as [`crate::FrozenKeyed::encode_shard`]
/// writes it).
///
/// # Errors
/// [`StateError::Io`] naming the directory or column family when RocksDB cannot open
/// or scan it; [`StateError::Corrupt`] naming a column family the checkpoint lacks;
/// [`StateError::Encode`] if a header cannot be re-encoded;
/// [`StateError::Config`] ([`crate::NO_ROCKSDB`]) in a build without RocksDB.
pub fn read_native_checkpoint(
    dir: &Path,
    tables: &[NativeTable],
    range: KeyGroupRange,
    f: impl FnMut(crate::KeyGroup, usize, Vec<u8>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    #[cfg(feature = "rocksdb")]
    return crate::rocks::read_native_checkpoint(dir, tables, range, f);
    #[cfg(not(feature = "rocksdb"))]
    {
        let _ = (tables, range, f);
        Err(StateError::Config(format!(
            "cannot read the native RocksDB checkpoint at {}: {}",
            dir.display(),
            crate::NO_ROCKSDB
        )))
    }
}

/// Where one frozen table lives in a RocksDB checkpoint: enough to read it back in
/// the canonical form, or to take it over as it is.
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
    /// Entries per key group of the checkpoint's range (index `group - start`);
    /// empty when not recorded (metadata format 3), and then the checkpoint is
    /// always read back instead of opened.
    pub entries: Vec<u64>,
}

impl NativeTable {
    /// The table's header with no entries, in the canonical chunk form
    /// (`bincode((header, Vec<(K, V)>::new()))`): what an operator restores for a
    /// table whose entries are already in an instance opened from the checkpoint,
    /// so it still learns the table's header (a window, say).
    ///
    /// # Errors
    /// [`StateError::Encode`] never in practice (an integer is encoded).
    pub fn header_chunk(&self) -> Result<Vec<u8>, StateError> {
        let mut bytes = self.header.clone();
        bytes.extend(crate::encode(&self.state, &0u64)?);
        Ok(bytes)
    }

    /// Entries in all, when recorded.
    pub fn total_entries(&self) -> u64 {
        self.entries.iter().sum()
    }
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

/// A native checkpoint to open as a subtask's RocksDB instance instead of starting
/// empty (see [`crate::KeyedBackend::restoring`]): its files, materialized in
/// [`RestoredInstance::staging_dir`] of the subtask's directory, are moved into the
/// instance's directory when the store opens, and its tables take their entry counts
/// from the checkpoint's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredInstance {
    /// The directory holding the checkpoint's files (moved, not copied, on open).
    pub dir: PathBuf,
    /// The key groups of the checkpoint: those of the subtask.
    pub key_groups: KeyGroupRange,
    /// Every table of the checkpoint, with its entries per key group.
    pub tables: Vec<NativeTable>,
    /// The id of the opened instance (SST uploads are named after it): new, so files
    /// the instance writes never take the name of a file an earlier instance wrote.
    pub instance: u64,
}

impl RestoredInstance {
    /// Where a checkpoint to open is put in a subtask's state directory
    /// (`<subtask>/restore`); a store that opens empty removes what is left there.
    pub fn staging_dir(subtask_dir: &std::path::Path) -> PathBuf {
        subtask_dir.join("restore")
    }

    /// Whether the checkpoint can be opened as the instance of a subtask owning
    /// `key_groups`: the same range, every table's entries recorded for it, no two
    /// tables in one place and the namespaces of one column family of one length
    /// (what [`crate::StateTable::in_backend`] asks of them).
    pub fn fits(
        key_groups: KeyGroupRange,
        checkpoint_range: KeyGroupRange,
        tables: &[NativeTable],
    ) -> bool {
        if key_groups != checkpoint_range || key_groups.start > key_groups.end {
            return false;
        }
        let groups = usize::from(key_groups.end - key_groups.start) + 1;
        let mut places = std::collections::HashSet::new();
        let mut namespace_len = std::collections::HashMap::new();
        tables.iter().all(|t| {
            t.entries.len() == groups
                && places.insert((t.column_family.as_str(), t.namespace.as_slice()))
                && *namespace_len
                    .entry(t.column_family.as_str())
                    .or_insert(t.namespace.len())
                    == t.namespace.len()
        })
    }
}

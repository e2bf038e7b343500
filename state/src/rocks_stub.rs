//! The RocksDB backend when weir-state is built without its `rocksdb` feature: the
//! types exist, but [`RocksDbResources::new`] reports that RocksDB is not built in.

use crate::{RocksDbConfig, StateError};
use std::path::Path;
use std::sync::Arc;

/// An uninhabited type: no value of the stubs below can exist.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Never {}

/// The resources of the RocksDB backend (not built in: cannot be created).
#[derive(Debug)]
pub struct RocksDbResources {
    pub(crate) never: Never,
}

impl RocksDbResources {
    /// Always fails: this build has no RocksDB.
    ///
    /// # Errors
    /// [`StateError::Config`] saying so.
    pub fn new(config: RocksDbConfig) -> Result<Arc<Self>, StateError> {
        config.validate()?;
        Err(StateError::Config(
            "state backend `rocksdb` is not built in: build weir-state with its `rocksdb` feature"
                .into(),
        ))
    }

    /// The settings.
    pub fn config(&self) -> &RocksDbConfig {
        match self.never {}
    }
}

/// One subtask's RocksDB instance (not built in).
#[derive(Debug)]
pub struct SubtaskStore {
    pub(crate) never: Never,
}

impl SubtaskStore {
    pub(crate) fn open(resources: Arc<RocksDbResources>, _: &Path) -> Result<Self, StateError> {
        match resources.never {}
    }

    pub(crate) fn open_restored(
        resources: Arc<RocksDbResources>,
        _: &Path,
        _: &crate::RestoredInstance,
    ) -> Result<Self, StateError> {
        match resources.never {}
    }

    /// An estimate of the bytes of live SST files.
    pub fn live_sst_bytes(&self) -> u64 {
        match self.never {}
    }

    pub(crate) fn ensure_ttl_cf(&self, _: &str) -> Result<(), StateError> {
        match self.never {}
    }

    /// What the instance did and holds.
    pub fn stats(&self) -> crate::BackendStats {
        match self.never {}
    }
}

/// A RocksDB checkpoint of a subtask's instance (not built in).
#[derive(Debug)]
pub struct StoreCheckpoint {
    pub(crate) never: Never,
}

impl StoreCheckpoint {
    /// The directory holding the checkpoint's files.
    pub fn path(&self) -> &Path {
        match self.never {}
    }

    /// The id of the instance the checkpoint was taken of.
    pub fn instance(&self) -> u64 {
        match self.never {}
    }
}

/// Always fails: this build has no RocksDB to read a native checkpoint with.
///
/// # Errors
/// [`StateError::Config`] saying so.
pub fn read_native_checkpoint(
    dir: &Path,
    _: &[crate::NativeTable],
    _: crate::KeyGroupRange,
    _: impl FnMut(crate::KeyGroup, usize, Vec<u8>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    Err(StateError::Config(format!(
        "the native RocksDB checkpoint at {} cannot be read: build weir-state with its `rocksdb` feature",
        dir.display()
    )))
}

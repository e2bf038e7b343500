//! Choosing where keyed state lives: [`StateBackend`] per job, [`KeyedBackend`] per
//! operator subtask (the heap, or a RocksDB instance opened on first use).

#[cfg(feature = "rocksdb")]
use crate::rocks::{RocksDbResources, SubtaskStore};
use crate::{KeyGroupRange, MaxParallelism, RestoredInstance, StateError};
use std::path::PathBuf;
#[cfg(feature = "rocksdb")]
use std::sync::{Arc, Mutex, Weak};

/// Whether this build has the RocksDB backend (the `rocksdb` cargo feature).
pub const HAS_ROCKSDB: bool = cfg!(feature = "rocksdb");

/// What a build without the `rocksdb` feature answers when asked for RocksDB.
pub const NO_ROCKSDB: &str = "this build has no RocksDB backend (build with --features rocksdb)";

/// The name of the lock file in a subtask's state directory.
pub const LOCK_FILE: &str = "LOCK.weir";

/// Settings of the RocksDB backend. Memory is bounded per process: every subtask's
/// instance shares one block cache and one write-buffer budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksDbConfig {
    /// Where subtasks keep their instances: `<dir>/<job>/<operator uid>/<subtask>`.
    pub dir: PathBuf,
    /// Bytes of the block cache shared by all instances of the process.
    pub block_cache_bytes: usize,
    /// Bytes of memtables (write buffers) of all instances of the process; charged
    /// to the block cache, so `block_cache_bytes` bounds both.
    pub write_buffer_bytes: usize,
    /// Entries per state table held by the write-back record cache in front of
    /// RocksDB: repeated updates of a key between flushes cost one write.
    pub record_cache_entries: usize,
    /// Background flush and compaction threads per instance.
    pub background_jobs: u32,
}

impl Default for RocksDbConfig {
    /// Defaults for a 2-core, 24 GiB machine: 1 GiB block cache (of which at most
    /// 256 MiB memtables), 64k cached records per table, 2 background jobs.
    fn default() -> Self {
        Self {
            dir: PathBuf::from("weir-data/state"),
            block_cache_bytes: 1 << 30,
            write_buffer_bytes: 256 << 20,
            record_cache_entries: 65_536,
            background_jobs: 2,
        }
    }
}

impl RocksDbConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`StateError::Config`] naming the field that is out of range.
    pub fn validate(&self) -> Result<(), StateError> {
        if self.block_cache_bytes < (8 << 20) {
            return Err(StateError::Config(format!(
                "rocksdb block_cache_bytes is {}: expected at least 8 MiB",
                self.block_cache_bytes
            )));
        }
        if self.write_buffer_bytes == 0 || self.write_buffer_bytes > self.block_cache_bytes {
            return Err(StateError::Config(format!(
                "rocksdb write_buffer_bytes is {}: expected more than 0 and at most block_cache_bytes ({})",
                self.write_buffer_bytes, self.block_cache_bytes
            )));
        }
        if self.record_cache_entries == 0 {
            return Err(StateError::Config(
                "rocksdb record_cache_entries is 0: expected at least 1".into(),
            ));
        }
        if self.background_jobs == 0 {
            return Err(StateError::Config(
                "rocksdb background_jobs is 0: expected at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What one subtask's RocksDB instance did and holds, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Point reads that went to RocksDB (record-cache misses).
    pub gets: u64,
    /// Entries written (puts, including restored entries).
    pub puts: u64,
    /// Entries deleted (point deletions, and one per range deletion).
    pub deletes: u64,
    /// Bytes of keys and values read from RocksDB (point reads and scans).
    pub bytes_read: u64,
    /// Bytes of keys and values written to RocksDB.
    pub bytes_written: u64,
    /// RocksDB's estimate of the live data size, all column families.
    pub live_data_bytes: u64,
    /// Live SST files, all column families.
    pub sst_files: u64,
    /// Bytes of the live SST files.
    pub sst_bytes: u64,
    /// Bytes on local disk under the subtask's state directory (database, local
    /// checkpoints), hard-linked files counted once.
    pub disk_bytes: u64,
}

/// Reads a subtask's [`BackendStats`] without keeping its instance open: once the
/// subtask's tables are gone (the job attempt ended) it reads nothing.
#[derive(Clone, Debug)]
pub struct StatsProbe {
    #[cfg(feature = "rocksdb")]
    store: Weak<Mutex<Option<Arc<SubtaskStore>>>>,
}

impl StatsProbe {
    /// The statistics, if the instance is open.
    pub fn read(&self) -> Option<BackendStats> {
        #[cfg(feature = "rocksdb")]
        {
            let cell = self.store.upgrade()?;
            let store = cell.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
            Some(store.stats())
        }
        #[cfg(not(feature = "rocksdb"))]
        None
    }
}

/// Which backend keeps keyed state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// Hash maps on the heap (the default): fastest, bounded by memory.
    #[default]
    Heap,
    /// RocksDB on local disk: state larger than memory.
    RocksDb(RocksDbConfig),
}

impl StateBackend {
    /// The RocksDB backend with default settings under `dir`.
    pub fn rocksdb(dir: impl Into<PathBuf>) -> Self {
        Self::RocksDb(RocksDbConfig {
            dir: dir.into(),
            ..RocksDbConfig::default()
        })
    }

    /// The backend's name as written on command lines and in job files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Heap => "heap",
            Self::RocksDb(_) => "rocksdb",
        }
    }

    /// Checks the settings, and that this build has the backend.
    ///
    /// # Errors
    /// [`StateError::Config`] naming the setting that is out of range, or
    /// [`NO_ROCKSDB`] for RocksDB in a build without it.
    pub fn validate(&self) -> Result<(), StateError> {
        match self {
            Self::Heap => Ok(()),
            Self::RocksDb(config) if HAS_ROCKSDB => config.validate(),
            Self::RocksDb(_) => Err(StateError::Config(NO_ROCKSDB.into())),
        }
    }

    /// Opens what every subtask of a job shares of the backend.
    ///
    /// # Errors
    /// As [`StateBackend::validate`].
    pub fn open_shared(&self) -> Result<SharedBackend, StateError> {
        self.validate()?;
        match self {
            Self::Heap => Ok(SharedBackend::Heap),
            #[cfg(feature = "rocksdb")]
            Self::RocksDb(config) => Ok(SharedBackend::RocksDb(RocksDbResources::new(
                config.clone(),
            )?)),
            #[cfg(not(feature = "rocksdb"))]
            Self::RocksDb(_) => Err(StateError::Config(NO_ROCKSDB.into())),
        }
    }
}

/// What every subtask of a job shares of its state backend, opened once per job
/// ([`StateBackend::open_shared`]): nothing on the heap; the block cache and the
/// write-buffer budget of RocksDB.
#[derive(Clone, Debug)]
pub enum SharedBackend {
    /// Hash maps on the heap.
    Heap,
    /// RocksDB's process-wide resources.
    #[cfg(feature = "rocksdb")]
    RocksDb(Arc<RocksDbResources>),
}

impl SharedBackend {
    /// The backend of one operator subtask owning `key_groups`. In RocksDB its
    /// instance lives under `<dir>/<path segments…>` of the backend's directory.
    pub fn subtask<S: AsRef<std::path::Path>>(
        &self,
        segments: impl IntoIterator<Item = S>,
        max_parallelism: MaxParallelism,
        key_groups: KeyGroupRange,
    ) -> KeyedBackend {
        match self {
            Self::Heap => {
                let _ = segments;
                KeyedBackend::heap(max_parallelism, key_groups)
            }
            #[cfg(feature = "rocksdb")]
            Self::RocksDb(resources) => {
                let mut dir = resources.config().dir.clone();
                dir.extend(segments);
                KeyedBackend::rocksdb(resources.clone(), dir, max_parallelism, key_groups)
            }
        }
    }
}

/// Where one operator subtask keeps its RocksDB state, opened on first use.
#[derive(Clone)]
pub struct KeyedBackend {
    kind: BackendKind,
    max_parallelism: MaxParallelism,
    key_groups: KeyGroupRange,
}

#[derive(Clone)]
enum BackendKind {
    Heap,
    #[cfg(feature = "rocksdb")]
    RocksDb {
        resources: Arc<RocksDbResources>,
        dir: PathBuf,
        store: Arc<Mutex<Option<Arc<SubtaskStore>>>>,
        /// A native checkpoint the instance opens from instead of starting empty.
        restored: Option<Arc<RestoredInstance>>,
    },
}

impl std::fmt::Debug for KeyedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("KeyedBackend");
        match &self.kind {
            BackendKind::Heap => s.field("kind", &"heap"),
            #[cfg(feature = "rocksdb")]
            BackendKind::RocksDb { dir, .. } => s.field("rocksdb", dir),
        };
        s.field("key_groups", &self.key_groups).finish()
    }
}

impl KeyedBackend {
    /// The heap backend for a subtask owning `key_groups`.
    pub fn heap(max_parallelism: MaxParallelism, key_groups: KeyGroupRange) -> Self {
        Self {
            kind: BackendKind::Heap,
            max_parallelism,
            key_groups,
        }
    }

    /// The RocksDB backend for a subtask owning `key_groups`, kept under `dir`
    /// (opened, and locked, when the first table is made).
    #[cfg(feature = "rocksdb")]
    pub fn rocksdb(
        resources: Arc<RocksDbResources>,
        dir: PathBuf,
        max_parallelism: MaxParallelism,
        key_groups: KeyGroupRange,
    ) -> Self {
        Self {
            kind: BackendKind::RocksDb {
                resources,
                dir,
                store: Arc::default(),
                restored: None,
            },
            max_parallelism,
            key_groups,
        }
    }

    /// The RocksDB backend opening its instance from the native checkpoint
    /// `restored` (see [`RestoredInstance`]) rather than empty, when `restored`
    /// covers exactly the subtask's key groups and records every table's entries;
    /// otherwise, and on the heap, the backend unchanged (`false`: the checkpoint
    /// must be restored the canonical way).
    pub fn restoring(self, instance: RestoredInstance) -> (Self, bool) {
        #[cfg(feature = "rocksdb")]
        if RestoredInstance::fits(self.key_groups, instance.key_groups, &instance.tables) {
            let mut backend = self;
            if let BackendKind::RocksDb { restored, .. } = &mut backend.kind {
                *restored = Some(Arc::new(instance));
                return (backend, true);
            }
            return (backend, false);
        }
        let _ = instance;
        (self, false)
    }

    /// Whether state lives in RocksDB.
    pub fn is_rocksdb(&self) -> bool {
        !matches!(self.kind, BackendKind::Heap)
    }

    /// The subtask's key groups.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The job's max parallelism.
    pub fn max_parallelism(&self) -> MaxParallelism {
        self.max_parallelism
    }

    /// The subtask's store, opened (and locked) on first use; `None` for the heap.
    #[cfg(feature = "rocksdb")]
    pub(crate) fn store(&self) -> Result<Option<Arc<SubtaskStore>>, StateError> {
        match &self.kind {
            BackendKind::Heap => Ok(None),
            BackendKind::RocksDb {
                resources,
                dir,
                store,
                restored,
            } => {
                let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(open) = &*store {
                    return Ok(Some(open.clone()));
                }
                let open = Arc::new(match restored {
                    Some(restored) => {
                        SubtaskStore::open_restored(resources.clone(), dir, restored)?
                    }
                    None => SubtaskStore::open(resources.clone(), dir)?,
                });
                *store = Some(open.clone());
                Ok(Some(open))
            }
        }
    }

    /// A probe of the subtask's RocksDB statistics; `None` on the heap.
    pub fn stats_probe(&self) -> Option<StatsProbe> {
        match &self.kind {
            BackendKind::Heap => None,
            #[cfg(feature = "rocksdb")]
            BackendKind::RocksDb { store, .. } => Some(StatsProbe {
                store: Arc::downgrade(store),
            }),
        }
    }

    /// The record cache size of RocksDB tables.
    #[cfg(feature = "rocksdb")]
    pub(crate) fn record_cache_entries(&self) -> usize {
        match &self.kind {
            BackendKind::Heap => 0,
            BackendKind::RocksDb { resources, .. } => resources.config().record_cache_entries,
        }
    }
}

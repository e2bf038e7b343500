//! The RocksDB backend's storage: one RocksDB instance per operator subtask, one
//! column family per declared state, memory shared by every instance of a process.
//!
//! ```text
//!  RocksDbBackend (per process: block cache + write buffer manager, config)
//!     └─ SubtaskStore  <state_dir>/<job>/<operator uid>/<subtask>/   (LOCK.weir, db/)
//!           ├─ column family "counts"    [key group: u16 BE][namespace][key] → value
//!           └─ column family "contents"  …
//! ```
//!
//! Keys start with their key group (two bytes, big-endian), so the state of a range
//! of key groups is one contiguous range of keys. A subtask's directory holds a lock
//! file naming the process that uses it: a second process opening it fails with an
//! error that says so. A store starts empty ([`SubtaskStore::open`]: state is then
//! restored from the checkpoint's canonical, key-group-partitioned form, or from a
//! native checkpoint read back into it with [`read_native_checkpoint`]) or from the
//! files of a native checkpoint of the same key groups ([`SubtaskStore::open_restored`]:
//! nothing is rewritten); either way stale files left by a crashed process never leak
//! into a new run. Local copies of native checkpoints (`<subtask>/local/`, kept by the
//! checkpoint driver) are left alone.

use crate::LOCK_FILE;
use crate::{BackendStats, RestoredInstance, RocksDbConfig, StateError, StoreCheckpoint};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, MultiThreaded, Options,
    WriteBatch, WriteBufferManager,
};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub(crate) type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

mod opened;

/// The resources of the RocksDB backend shared by every subtask of a process.
pub struct RocksDbResources {
    config: RocksDbConfig,
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl std::fmt::Debug for RocksDbResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbResources")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RocksDbResources {
    /// The shared block cache and write-buffer budget for `config`.
    ///
    /// # Errors
    /// [`StateError::Config`] if the settings are out of range.
    pub fn new(config: RocksDbConfig) -> Result<Arc<Self>, StateError> {
        config.validate()?;
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            config.write_buffer_bytes,
            false,
            cache.clone(),
        );
        Ok(Arc::new(Self {
            config,
            cache,
            write_buffers,
        }))
    }

    /// The settings.
    pub fn config(&self) -> &RocksDbConfig {
        &self.config
    }

    fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Index and filter blocks are charged to the cache, so memory stays within
        // the budget whatever the number of keys. They are partitioned (as Flink
        // does for bounded memory): a point read loads a 4 KiB partition, not an SST
        // file's whole filter, which for state beyond the cache would be read and
        // checksummed again on every miss. The top level of each is pinned, and
        // they are cached with high priority.
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_optimize_filters_for_memory(true);
        table.set_bloom_filter(10.0, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.write_buffers);
        options.set_write_buffer_size((self.config.write_buffer_bytes / 4).max(1 << 20));
        options.set_max_background_jobs(self.config.background_jobs as i32);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_max_open_files(256);
        // Every native checkpoint uploads the MANIFEST whole: roll it over when it
        // passes 16 KiB (RocksDB raises the threshold with the size of a compacted
        // manifest, `max_manifest_space_amp_pct`, so large instances do not roll it
        // over on every change).
        options.set_max_manifest_file_size(16 << 10);
        options
    }
}

/// Directories open in this process: a second open of one fails like a second
/// process would.
fn open_dirs() -> &'static Mutex<HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
}

/// The lock on a subtask's state directory: a file naming the process that holds it.
#[derive(Debug)]
struct DirLock {
    dir: PathBuf,
    file: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, StateError> {
        let io = |what: &str, path: &Path, e: std::io::Error| {
            StateError::io(format!("{what} {}", path.display()), e)
        };
        fs::create_dir_all(dir).map_err(|e| io("cannot create state directory", dir, e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| io("cannot resolve state directory", dir, e))?;
        let file = dir.join(LOCK_FILE);
        let in_process = {
            let mut open = open_dirs().lock().unwrap_or_else(|p| p.into_inner());
            !open.insert(dir.clone())
        };
        if in_process {
            return Err(StateError::Locked(format!(
                "state directory {} is locked by this process (process {}, lock file {}): another subtask is using it",
                dir.display(),
                std::process::id(),
                file.display()
            )));
        }
        match take_file(&dir, &file) {
            Ok(()) => Ok(Self { dir, file }),
            Err(e) => {
                // Not ours: leave the file to its holder.
                open_dirs()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&dir);
                Err(e)
            }
        }
    }
}

/// Creates the lock file `file` of `dir`, or takes over one whose process is gone.
fn take_file(dir: &Path, file: &Path) -> Result<(), StateError> {
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(file)
        {
            Ok(mut f) => {
                return write!(f, "{}", std::process::id()).map_err(|e| {
                    StateError::io(format!("cannot write lock file {}", file.display()), e)
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = fs::read_to_string(file).unwrap_or_default();
                let pid = holder.trim().parse::<u32>().ok();
                let alive = pid.is_some_and(|pid| {
                    pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
                });
                if alive {
                    return Err(StateError::Locked(format!(
                            "state directory {} is locked by process {} (lock file {}): another weir process is using it",
                            dir.display(),
                            holder.trim(),
                            file.display()
                        )));
                }
                // Left by a process that is gone: take it over.
                fs::remove_file(file).map_err(|e| {
                    StateError::io(
                        format!("cannot remove stale lock file {}", file.display()),
                        e,
                    )
                })?;
            }
            Err(e) => {
                return Err(StateError::io(
                    format!("cannot create lock file {}", file.display()),
                    e,
                ))
            }
        }
    }
    Err(StateError::Locked(format!(
        "state directory {}: lock file {} keeps reappearing: another weir process is using it",
        dir.display(),
        file.display()
    )))
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.file);
        open_dirs()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.dir);
    }
}

/// One subtask's RocksDB instance.
pub struct SubtaskStore {
    // Field order matters: the database closes before the lock is released.
    db: Db,
    resources: Arc<RocksDbResources>,
    path: PathBuf,
    /// Set by every write, cleared by a checkpoint.
    written: AtomicBool,
    last_checkpoint: Mutex<Weak<StoreCheckpoint>>,
    next_checkpoint: AtomicU64,
    /// What snapshots handed off, in order: writes of the state they froze, and
    /// the checkpoints that follow them. Done by [`SubtaskStore::settle`], before
    /// anything else is written.
    deferred: Mutex<Vec<Deferred>>,
    /// Held while deferred steps run, so they run in order and one settler waits
    /// for another; never held by a snapshot's synchronous part, which only
    /// appends to `deferred`.
    settling: Mutex<()>,
    /// Why deferred steps failed, if they did: the instance then lacks writes, so
    /// every later settle (so every write of the task) fails with it, and the job
    /// restarts from a checkpoint instead of going on with state that lost writes.
    failed: Mutex<Option<String>>,
    /// The (column family, namespace) pairs tables have used since the open.
    claimed: Mutex<HashSet<(String, Vec<u8>)>>,
    /// The tables an instance opened from a native checkpoint holds, by (column
    /// family, namespace): entries per key group. The instance holds nothing
    /// anywhere else.
    restored: Mutex<HashMap<(String, Vec<u8>), Vec<u64>>>,
    /// Column families opened from a native checkpoint: their TTL compaction filter,
    /// off until a state with a time-to-live claims the column family.
    ttl_switches: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Column families created since the open.
    column_families: Mutex<Vec<String>>,
    /// Options of TTL column families: their compaction filter lives in them, and
    /// RocksDB only borrows it, so they are kept until the database has closed
    /// (fields drop in order: `db` first).
    ttl_options: Mutex<Vec<Options>>,
    pub(crate) counters: StoreCounters,
    /// Unique per open: SST file names repeat across instances, so uploads are named
    /// after it too.
    instance: u64,
    _lock: DirLock,
}

/// What the tables of one instance read and wrote (relaxed counters, for metrics).
#[derive(Debug, Default)]
pub(crate) struct StoreCounters {
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl StoreCounters {
    /// A point read that found `bytes` (0 when absent).
    pub(crate) fn get(&self, bytes: usize) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes read by a scan.
    pub(crate) fn scanned(&self, bytes: usize) {
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A write of `puts` entries and `deletes` deletions, `bytes` in all.
    pub(crate) fn wrote(&self, puts: u64, deletes: u64, bytes: usize) {
        self.puts.fetch_add(puts, Ordering::Relaxed);
        self.deletes.fetch_add(deletes, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Bytes of the files under `dir`, each inode once (checkpoints hard-link SSTs).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}

impl std::fmt::Debug for SubtaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubtaskStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Writes `batch` into `db` without the write-ahead log. An instance is never
/// recovered from its own directory (opening one clears it; restores open a copy
/// of a checkpoint), and every RocksDB checkpoint flushes the memtables first, so
/// the log would only cost a second write of everything.
pub(crate) fn write_unlogged(db: &Db, batch: WriteBatch) -> Result<(), rocksdb::Error> {
    let mut options = rocksdb::WriteOptions::default();
    options.disable_wal(true);
    db.write_opt(batch, &options)
}

pub(crate) fn rocks_error(what: impl std::fmt::Display, e: rocksdb::Error) -> StateError {
    StateError::io(what.to_string(), e)
}

impl SubtaskStore {
    /// Locks `dir` and opens an empty instance in it (whatever an earlier process
    /// left there is removed).
    pub(crate) fn open(resources: Arc<RocksDbResources>, dir: &Path) -> Result<Self, StateError> {
        let lock = DirLock::acquire(dir)?;
        let path = lock.dir.join("db");
        clear_stale(&[
            &path,
            &lock.dir.join("checkpoints"),
            &RestoredInstance::staging_dir(&lock.dir),
        ])?;
        let db = Db::open(&resources.options(), &path)
            .map_err(|e| rocks_error(format!("cannot open RocksDB at {}", path.display()), e))?;
        Ok(Self::new(
            db,
            resources,
            path,
            lock,
            crate::unique_id(),
            vec!["default".to_string()],
        ))
    }

    fn new(
        db: Db,
        resources: Arc<RocksDbResources>,
        path: PathBuf,
        lock: DirLock,
        instance: u64,
        column_families: Vec<String>,
    ) -> Self {
        Self {
            db,
            resources,
            path,
            written: AtomicBool::new(false),
            last_checkpoint: Mutex::new(Weak::new()),
            next_checkpoint: AtomicU64::new(1),
            deferred: Mutex::default(),
            settling: Mutex::default(),
            failed: Mutex::default(),
            claimed: Mutex::default(),
            restored: Mutex::default(),
            ttl_switches: Mutex::default(),
            column_families: Mutex::new(column_families),
            counters: StoreCounters::default(),
            ttl_options: Mutex::default(),
            instance,
            _lock: lock,
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The column family `name`, created if absent.
    pub(crate) fn ensure_cf(&self, name: &str) -> Result<(), StateError> {
        if self.db.cf_handle(name).is_none() {
            self.db
                .create_cf(name, &self.resources.options())
                .map_err(|e| rocks_error(format!("cannot create column family `{name}`"), e))?;
            self.column_families
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(name.to_string());
        }
        Ok(())
    }

    /// Records that a table uses `namespace` of `column_family`, and tells it what
    /// the instance holds there.
    pub(crate) fn claim_namespace(&self, column_family: &str, namespace: &[u8]) -> Claim {
        let place = (column_family.to_string(), namespace.to_vec());
        let first = self
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(place.clone());
        if !first {
            return Claim::Used;
        }
        match self
            .restored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&place)
        {
            Some(entries) => Claim::Restored(entries),
            None => Claim::Empty,
        }
    }

    /// The column family `name` of a state with a time-to-live, created if absent
    /// with a compaction filter that drops entries whose expiry (the leading field of
    /// [`crate::Expiring`]) has passed, so expired state leaves disk without scans.
    pub(crate) fn ensure_ttl_cf(&self, name: &str) -> Result<(), StateError> {
        if self.db.cf_handle(name).is_some() {
            if let Some(on) = self
                .ttl_switches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
            {
                on.store(true, Ordering::Relaxed);
            }
            return Ok(());
        }
        let mut options = self.resources.options();
        options.set_compaction_filter("weir-ttl", |_level, _key, value| {
            if crate::ttl::expired_encoding(value, crate::ttl::now_ms()) {
                rocksdb::compaction_filter::Decision::Remove
            } else {
                rocksdb::compaction_filter::Decision::Keep
            }
        });
        self.db
            .create_cf(name, &options)
            .map_err(|e| rocks_error(format!("cannot create column family `{name}`"), e))?;
        self.ttl_options
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(options);
        self.column_families
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_string());
        Ok(())
    }

    pub(crate) fn note_write(&self) {
        self.written.store(true, Ordering::Relaxed);
    }

    /// Writes `batch` (of which `deletes` entries are deletions) of `what` into the
    /// instance, and counts it.
    pub(crate) fn write(&self, what: &str, batch: (WriteBatch, u64)) -> Result<(), StateError> {
        self.apply("write", what, batch)
    }

    /// [`SubtaskStore::write`] for a purpose (`verb`: "write", "clear", "restore")
    /// that an error names.
    pub(crate) fn apply(
        &self,
        verb: &str,
        what: &str,
        (batch, deletes): (WriteBatch, u64),
    ) -> Result<(), StateError> {
        let (entries, bytes) = (batch.len() as u64, batch.size_in_bytes());
        write_unlogged(&self.db, batch)
            .map_err(|e| rocks_error(format!("cannot {verb} {what}"), e))?;
        self.note_write();
        self.counters.wrote(entries - deletes, deletes, bytes);
        Ok(())
    }

    /// Hands off the frozen writes of a snapshot of `what` (a state, or timers,
    /// named as errors name them), as `build` (which
    /// encodes them into a write batch, and counts its deletions): built and
    /// written by [`SubtaskStore::settle`], before the checkpoint that follows and
    /// before anything written after it, on whichever thread comes first (the
    /// snapshot's asynchronous part, as a rule).
    pub(crate) fn defer_write(&self, what: String, build: BuildBatch) {
        self.note_write();
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Deferred::Write { what, build });
    }

    /// Does what snapshots handed off, in order: the frozen writes, each into the
    /// instance, and each checkpoint after the writes before it. Called before any
    /// other write (so no checkpoint holds a later one), and by a checkpoint's
    /// reader; a second caller waits for the first.
    ///
    /// # Errors
    /// [`StateError::Io`] naming the state or the checkpoint RocksDB could not
    /// write. What was not done then is dropped, the checkpoints it would have
    /// taken report that they were not taken, and every later call fails too (the
    /// instance lacks writes: the task must restart from a checkpoint).
    pub(crate) fn settle(&self) -> Result<(), StateError> {
        let _settling = self.settling.lock().unwrap_or_else(|p| p.into_inner());
        let failed = |reason: &str| {
            StateError::io(
                format!("RocksDB instance {} lost writes", self.path.display()),
                std::io::Error::other(reason.to_string()),
            )
        };
        if let Some(reason) = &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(failed(reason));
        }
        loop {
            let steps =
                std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|p| p.into_inner()));
            if steps.is_empty() {
                return Ok(());
            }
            if let Err(e) = self.run_deferred(steps) {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return Err(e);
            }
        }
    }

    /// Runs handed-off steps in order (see [`SubtaskStore::settle`]).
    fn run_deferred(&self, steps: Vec<Deferred>) -> Result<(), StateError> {
        for step in steps {
            match step {
                Deferred::Write { what, build } => self.write(&what, build(&self.db)?)?,
                Deferred::Checkpoint(checkpoint) => {
                    let Some(checkpoint) = checkpoint.upgrade() else {
                        continue; // Dropped untaken: nobody reads it.
                    };
                    let path = checkpoint.path();
                    rocksdb::checkpoint::Checkpoint::new(&self.db)
                        .and_then(|c| c.create_checkpoint(path))
                        .map_err(|e| {
                            rocks_error(
                                format!("cannot create RocksDB checkpoint {}", path.display()),
                                e,
                            )
                        })?;
                    checkpoint.taken();
                }
            }
        }
        Ok(())
    }

    /// A RocksDB checkpoint (memtables flushed, SST files hard-linked) of the
    /// instance as it is now, with the writes handed off before it; the last one
    /// again if nothing was written since. Only reserved here: it is taken when
    /// first read ([`StoreCheckpoint::materialize`]) or before the next write.
    pub(crate) fn checkpoint(self: &Arc<Self>) -> Result<Arc<StoreCheckpoint>, StateError> {
        let mut last = self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !self.written.load(Ordering::Relaxed) {
            if let Some(live) = last.upgrade() {
                return Ok(live);
            }
        }
        let n = self.next_checkpoint.fetch_add(1, Ordering::Relaxed);
        let root = self.path.with_file_name("checkpoints");
        fs::create_dir_all(&root)
            .map_err(|e| StateError::io(format!("cannot create {}", root.display()), e))?;
        let path = root.join(format!("chk-{n}"));
        if path.exists() {
            fs::remove_dir_all(&path)
                .map_err(|e| StateError::io(format!("cannot clear {}", path.display()), e))?;
        }
        self.written.store(false, Ordering::Relaxed);
        let checkpoint = Arc::new(StoreCheckpoint::new(
            path,
            self.instance,
            CheckpointReader {
                resources: self.resources.clone(),
                db: OnceLock::new(),
                store: Mutex::new(Some(self.clone())),
            },
        ));
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Deferred::Checkpoint(Arc::downgrade(&checkpoint)));
        *last = Arc::downgrade(&checkpoint);
        Ok(checkpoint)
    }

    /// What the instance did and holds: counters of its tables' reads and writes,
    /// RocksDB's size properties summed over column families, and local disk use.
    pub fn stats(&self) -> BackendStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        let mut stats = BackendStats {
            gets: load(&c.gets),
            puts: load(&c.puts),
            deletes: load(&c.deletes),
            bytes_read: load(&c.bytes_read),
            bytes_written: load(&c.bytes_written),
            disk_bytes: self.path.parent().map_or(0, disk_usage),
            ..BackendStats::default()
        };
        let names = self
            .column_families
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for name in names {
            let Some(cf) = self.db.cf_handle(&name) else {
                continue;
            };
            let int = |property: &str| {
                self.db
                    .property_int_value_cf(&cf, property)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            stats.live_data_bytes += int("rocksdb.estimate-live-data-size");
            stats.sst_bytes += int("rocksdb.live-sst-files-size");
            stats.sst_files += (0..7)
                .map(|level| int(&format!("rocksdb.num-files-at-level{level}")))
                .sum::<u64>();
        }
        stats
    }

    /// An estimate of the bytes of live SST files.
    pub fn live_sst_bytes(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.live-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// What the instance holds in a (column family, namespace) when a table claims it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Nothing (the instance opened empty, or from a checkpoint without entries
    /// there, and no table used it since): a key the table has not seen is absent.
    Empty,
    /// The entries of a table of the native checkpoint the instance was opened
    /// from, this many per key group.
    Restored(Vec<u64>),
    /// Whatever an earlier table there left.
    Used,
}

/// Removes the directories `stale` if present.
fn clear_stale(stale: &[&Path]) -> Result<(), StateError> {
    for dir in stale {
        if dir.exists() {
            fs::remove_dir_all(dir)
                .map_err(|e| StateError::io(format!("cannot clear {}", dir.display()), e))?;
        }
    }
    Ok(())
}

/// How a [`StoreCheckpoint`] is read: opened read-only on first read, through the
/// process's shared block cache.
pub(crate) struct CheckpointReader {
    resources: Arc<RocksDbResources>,
    db: OnceLock<Result<Db, rocksdb::Error>>,
    /// The instance, until the checkpoint is taken (kept open for it: a job's
    /// last checkpoint may be uploaded after its task has ended).
    store: Mutex<Option<Arc<SubtaskStore>>>,
}

/// Encodes handed-off writes into a write batch for the instance: the batch, and
/// how many of its entries are deletions.
pub(crate) type BuildBatch = Box<dyn FnOnce(&Db) -> Result<(WriteBatch, u64), StateError> + Send>;

/// A step a snapshot handed off ([`SubtaskStore::settle`]).
enum Deferred {
    /// Frozen writes of a state or of timers (`what`, as errors name them).
    Write { what: String, build: BuildBatch },
    /// A checkpoint to take after the writes before it (if still wanted).
    Checkpoint(Weak<StoreCheckpoint>),
}

impl CheckpointReader {
    /// Takes the checkpoint in `path` if it is not yet: does what the instance was
    /// handed off up to it.
    ///
    /// # Errors
    /// As [`SubtaskStore::settle`]; [`StateError::Io`] if the checkpoint was not
    /// taken (an earlier failure dropped it).
    pub(crate) fn materialize(&self, path: &Path) -> Result<(), StateError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(store) = store {
            store.settle()?;
        }
        if self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Err(StateError::io(
                format!("RocksDB checkpoint {} was not taken", path.display()),
                std::io::Error::other("an earlier write of the instance failed"),
            ));
        }
        Ok(())
    }

    /// The checkpoint is taken: the instance is no longer needed for it.
    pub(crate) fn taken(&self) {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The checkpoint in `path`, opened read-only.
    pub(crate) fn db(&self, path: &Path) -> Result<&Db, StateError> {
        self.db
            .get_or_init(|| {
                let options = self.resources.options();
                let names = Db::list_cf(&options, path)?;
                let descriptors = names
                    .into_iter()
                    .map(|name| ColumnFamilyDescriptor::new(name, self.resources.options()));
                Db::open_cf_descriptors_read_only(&options, path, descriptors, false)
            })
            .as_ref()
            .map_err(|e| {
                rocks_error(
                    format!("cannot open RocksDB checkpoint {}", path.display()),
                    e.clone(),
                )
            })
    }

    /// Closes the checkpoint if it was opened (before its directory is removed).
    pub(crate) fn close(&mut self) {
        if let Some(Ok(db)) = self.db.take() {
            drop(db);
        }
    }
}

/// See [`crate::read_native_checkpoint`].
pub(crate) fn read_native_checkpoint(
    dir: &Path,
    tables: &[crate::NativeTable],
    range: crate::KeyGroupRange,
    mut f: impl FnMut(crate::KeyGroup, usize, Vec<u8>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let options = Options::default();
    let names = Db::list_cf(&options, dir).map_err(|e| {
        rocks_error(
            format!("cannot list the column families of {}", dir.display()),
            e,
        )
    })?;
    let descriptors = names
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = Db::open_cf_descriptors_read_only(&options, dir, descriptors, false).map_err(|e| {
        rocks_error(
            format!("cannot open RocksDB checkpoint {}", dir.display()),
            e,
        )
    })?;
    for (index, table) in tables.iter().enumerate() {
        for group in range.start..=range.end {
            let mut body = Vec::new();
            let mut count = 0u64;
            crate::rocks_table::scan(
                &db,
                &table.column_family,
                &table.namespace,
                crate::KeyGroupRange {
                    start: group,
                    end: group,
                },
                |_, key, value| {
                    body.extend_from_slice(key);
                    body.extend_from_slice(value);
                    count += 1;
                    Ok(())
                },
            )?;
            if count == 0 {
                continue;
            }
            let mut bytes = table.header.clone();
            bytes.extend(crate::encode(&table.state, &count)?);
            bytes.extend(body);
            f(crate::KeyGroup::new(group), index, bytes)?;
        }
    }
    Ok(())
}

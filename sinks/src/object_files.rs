//! [`ObjectFileSink`]: exactly-once JSON lines or CSV part files on any object-store
//! URL (a local directory, `file:///path`, `s3://bucket/prefix`).
//!
//! ```text
//!  records of epoch n (between barriers n-1 and n)
//!     │ encode into the in-progress part (memory); roll at roll_size bytes or roll_interval
//!     ▼
//!  <root>/_staging/part-<subtask>-<attempt>-<k>.<ext>      uploaded whole when a part rolls
//!     │ snapshot(n): upload the in-progress part, give each staged part of the epoch
//!     │ its final name; operator state `file-sink-pending` = {checkpoint → [staged → final]}
//!     ▼ checkpoint n complete (or restore of a checkpoint holding n)
//!  <root>/part-<subtask>-<n>-<seq>-<timeline>.<ext>   move: a rename locally, copy + delete on S3;
//!                                           skipped when the final object already exists
//! ```
//!
//! - **Durable before the checkpoint.** `snapshot` returns only when every staged part
//!   of the epoch is uploaded, so a completed checkpoint never refers to data that is
//!   not stored.
//! - **Exactly once.** A final name depends only on the writing subtask, the
//!   checkpoint, the part's sequence number within the epoch and the run (timeline)
//!   that wrote it, so a commit repeated after a crash (from `on_checkpoint_complete`,
//!   or from `open` when the restored checkpoint still lists the epoch as pending)
//!   finds its object and is skipped, while another run whose checkpoint ids repeat (a
//!   savepoint restored into a fresh checkpoint directory, or under another job name)
//!   writes other names and is never taken for already committed. A staged part that
//!   is missing while its final object is missing too is an error naming both: output
//!   is never lost silently.
//! - **No collisions with zombies.** Staging names carry a random attempt nonce, so a
//!   restarted attempt never writes over the objects of one that is still running.
//!   When a subtask opens it deletes the staging objects of its own subtask index
//!   (subtask 0: also of indices beyond the parallelism) that the restored checkpoint
//!   does not refer to: leftovers of crashed attempts.
//! - **Rescaling.** After a change of parallelism the new subtask 0 commits the pending
//!   epochs of every previous subtask (under their names: the final name is in the
//!   state).
//! - **End of input.** With checkpointing, the runtime takes a final checkpoint after
//!   every operator ran `on_end` and the sink's `finish`, and its completion commits
//!   the last epoch; `finish` therefore leaves records to the checkpoint that covers
//!   them. Without
//!   checkpointing there is nothing to be exactly-once with: parts are written straight
//!   to `part-<subtask>-0-<seq>.<ext>` (replacing those of an earlier run), the last one
//!   by `finish`.
//!
//! A part is built in memory until it rolls, so a subtask holds up to `roll_size`
//! bytes (plus one batch). One job writes to one output URL: jobs sharing a URL would
//! delete each other's staging objects.
//!
//! Committed output is read back by [`read_committed_objects`].

use crate::failpoint::{CommitFailpoint, CommitStep};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_dataflow::state::{decode, encode};
use weir_dataflow::{
    CheckpointId, DataflowError, OperatorContext, Result, Sink, SnapshotContext, SubtaskInfo,
};
use weir_objects::{BlockingObjectStore, FileFormat, ObjectsError, StorageConfig};

const PENDING: &str = "file-sink-pending";
const STAGING: &str = "_staging";

/// Settings of an [`ObjectFileSink`].
#[derive(Clone, Debug)]
pub struct FileSinkConfig {
    /// Where part files go: a directory, `file:///path` or `s3://bucket/prefix`, with
    /// S3 settings (endpoint, credentials; the AWS environment otherwise).
    pub storage: StorageConfig,
    /// How records are written.
    pub format: FileFormat,
    /// A part rolls (is uploaded, a new one starts) once it holds this many bytes
    /// (default 128 MiB).
    pub roll_size: u64,
    /// A part rolls once it is this old (default 15 minutes), checked when records
    /// arrive.
    pub roll_interval: Duration,
    /// Crash the process at a step of a commit (crash tests, `weir verify`).
    pub failpoint: Option<CommitFailpoint>,
}

impl FileSinkConfig {
    /// JSON lines to `url`, rolling at 128 MiB or 15 minutes.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            storage: StorageConfig::new(url),
            format: FileFormat::JsonLines,
            roll_size: 128 << 20,
            roll_interval: Duration::from_secs(15 * 60),
            failpoint: None,
        }
    }

    /// The same, writing `format`.
    pub fn with_format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }

    /// The same, rolling at `bytes` or after `interval`.
    pub fn with_rolling(mut self, bytes: u64, interval: Duration) -> Self {
        self.roll_size = bytes.max(1);
        self.roll_interval = interval;
        self
    }
}

/// Counters of an [`ObjectFileSink`] (all its subtasks), readable while the job runs.
/// Cheap to clone: clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct FileSinkMetrics(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    parts_committed: AtomicU64,
    pending_bytes: AtomicU64,
}

impl FileSinkMetrics {
    /// Records encoded (including those of epochs not committed yet, and of attempts
    /// that failed).
    pub fn records_written(&self) -> u64 {
        self.0.records_written.load(Ordering::Relaxed)
    }

    /// Bytes encoded, likewise.
    pub fn bytes_written(&self) -> u64 {
        self.0.bytes_written.load(Ordering::Relaxed)
    }

    /// Part files moved to their final names (a move found already done is not
    /// counted) or, without checkpointing, written.
    pub fn parts_committed(&self) -> u64 {
        self.0.parts_committed.load(Ordering::Relaxed)
    }

    /// Bytes staged and waiting for their checkpoint to complete.
    pub fn pending_bytes(&self) -> u64 {
        self.0.pending_bytes.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }
}

/// A part uploaded to staging, with the name it gets when its checkpoint completes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StagedPart {
    /// Relative to the root: `_staging/part-<subtask>-<attempt>-<k>.<ext>`.
    staging: String,
    /// Relative to the root: `part-<subtask>-<checkpoint>-<seq>[-<timeline>].<ext>`.
    target: String,
    bytes: u64,
}

/// Pending epochs of one subtask: checkpoint id → its staged parts.
type Pending = BTreeMap<u64, Vec<StagedPart>>;

/// Writes part files exactly once; see the module documentation.
pub struct ObjectFileSink<T> {
    config: FileSinkConfig,
    subtask: SubtaskInfo,
    metrics: FileSinkMetrics,
    /// The output store, once open.
    store: Option<BlockingObjectStore>,
    checkpointing: bool,
    /// The run this instance writes in ([`OperatorContext::timeline`]).
    timeline: u64,
    /// A random nonce of this attempt, in staging names.
    attempt: String,
    /// Staging objects written by this attempt so far (the `<k>` of the next one).
    staged: u64,
    /// The in-progress part and when it started.
    part: Vec<u8>,
    part_started: Option<Instant>,
    /// Parts of the current epoch already uploaded (staging name, bytes).
    epoch: Vec<(String, u64)>,
    /// Parts written without checkpointing (the `<seq>` of the next one).
    unchecked_parts: u64,
    pending: Pending,
    _records: PhantomData<fn(T)>,
}

impl<T: Serialize + Send + 'static> ObjectFileSink<T> {
    /// A sink factory for [`weir_dataflow::Stream::sink`], and the metrics all its
    /// subtasks add to.
    pub fn factory(
        config: FileSinkConfig,
    ) -> (
        impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static,
        FileSinkMetrics,
    ) {
        let metrics = FileSinkMetrics::default();
        let shared = metrics.clone();
        let factory = move |info: &SubtaskInfo| Self {
            config: config.clone(),
            subtask: info.clone(),
            metrics: shared.clone(),
            store: None,
            checkpointing: false,
            timeline: 0,
            attempt: nonce(),
            staged: 0,
            part: Vec::new(),
            part_started: None,
            epoch: Vec::new(),
            unchecked_parts: 0,
            pending: BTreeMap::new(),
            _records: PhantomData,
        };
        (factory, metrics)
    }

    fn error(&self, message: impl Into<String>) -> DataflowError {
        DataflowError::operator(&self.subtask.operator, self.subtask.index, message)
    }

    /// A failure of the store, as the subtask's failure.
    fn store_error(&self, e: ObjectsError) -> DataflowError {
        e.into_dataflow(&self.subtask, None)
    }

    fn store(&self) -> Result<&BlockingObjectStore> {
        self.store
            .as_ref()
            .ok_or_else(|| self.error("the file sink was used before `open`"))
    }

    /// An object as users see it.
    fn describe(&self, relative: &str) -> String {
        match &self.store {
            Some(store) => store.describe(relative),
            None => format!("{}/{relative}", self.config.storage.url),
        }
    }

    /// Uploads the in-progress part: to staging (checkpointing), or straight to its
    /// final name (no checkpointing). Nothing to do for an empty part.
    fn roll(&mut self) -> Result<()> {
        if self.part.is_empty() {
            return Ok(());
        }
        let ext = self.config.format.extension();
        let index = self.subtask.index;
        let relative = if self.checkpointing {
            let k = self.staged;
            self.staged += 1;
            format!("{STAGING}/part-{index}-{}-{k}.{ext}", self.attempt)
        } else {
            let seq = self.unchecked_parts;
            self.unchecked_parts += 1;
            format!("part-{index}-0-{seq}.{ext}")
        };
        let bytes = std::mem::take(&mut self.part);
        self.part_started = None;
        let size = bytes.len() as u64;
        self.store()?
            .put(&relative, bytes)
            .map_err(|e| self.store_error(e))?;
        if self.checkpointing {
            self.epoch.push((relative, size));
            FileSinkMetrics::add(&self.metrics.0.pending_bytes, size);
        } else {
            FileSinkMetrics::add(&self.metrics.0.parts_committed, 1);
        }
        Ok(())
    }

    /// Moves every part of the pending epochs up to `up_to` to its final name,
    /// skipping those already there. Epochs are removed from `pending` as they finish.
    fn commit(&self, pending: &mut Pending, up_to: u64) -> Result<()> {
        let due: Vec<u64> = pending.range(..=up_to).map(|(id, _)| *id).collect();
        let failpoint = self.config.failpoint.as_ref();
        let mut moved = 0;
        for checkpoint in due {
            for part in pending.get(&checkpoint).into_iter().flatten() {
                if moved == 0 {
                    CommitFailpoint::reached(
                        failpoint,
                        CommitStep::BeforeCommit,
                        &self.subtask.operator,
                    );
                }
                if self.commit_part(checkpoint, part)? {
                    FileSinkMetrics::add(&self.metrics.0.parts_committed, 1);
                }
                FileSinkMetrics::sub(&self.metrics.0.pending_bytes, part.bytes);
                moved += 1;
                if moved == 1 {
                    CommitFailpoint::reached(
                        failpoint,
                        CommitStep::MidCommit,
                        &self.subtask.operator,
                    );
                }
            }
            pending.remove(&checkpoint);
        }
        if moved > 0 {
            CommitFailpoint::reached(failpoint, CommitStep::AfterCommit, &self.subtask.operator);
        }
        Ok(())
    }

    /// Moves one staged part; `false` when its final object was already there.
    fn commit_part(&self, checkpoint: u64, part: &StagedPart) -> Result<bool> {
        let store = self.store()?;
        let exists = |relative: &str| -> Result<bool> {
            Ok(store
                .size(relative)
                .map_err(|e| self.store_error(e))?
                .is_some())
        };
        if exists(&part.target)? {
            // Committed before (a crash came before the staged copy was deleted, or
            // after): drop the staged copy if it is still there.
            store
                .delete(&part.staging)
                .map_err(|e| self.store_error(e))?;
            return Ok(false);
        }
        if store
            .rename(&part.staging, &part.target)
            .map_err(|e| self.store_error(e))?
        {
            return Ok(true);
        }
        if exists(&part.target)? {
            return Ok(false);
        }
        Err(self.error(format!(
            "the staged part {} of checkpoint {checkpoint} is missing, and its final object {} does not exist: its {} bytes of output cannot be committed (was the staging directory cleaned up, or does another job write to this output?)",
            self.describe(&part.staging),
            self.describe(&part.target),
            part.bytes
        )))
    }

    /// Deletes staging objects of crashed attempts: those of this subtask index (and,
    /// for subtask 0, of indices beyond the parallelism) not in `referenced`.
    fn clean_staging(&self, referenced: &BTreeSet<String>) -> Result<()> {
        let store = self.store()?;
        let listed = store.list(STAGING).map_err(|e| self.store_error(e))?;
        for object in listed {
            let relative = object.name;
            let name = relative.rsplit('/').next().unwrap_or(&relative);
            let Some(writer) = name
                .strip_prefix("part-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|index| index.parse::<usize>().ok())
            else {
                continue;
            };
            let ours = writer == self.subtask.index
                || (self.subtask.index == 0 && writer >= self.subtask.parallelism);
            if !ours || referenced.contains(&relative) {
                continue;
            }
            store.delete(&relative).map_err(|e| self.store_error(e))?;
        }
        Ok(())
    }
}

impl<T> Drop for ObjectFileSink<T> {
    /// Takes this instance's staged bytes out of the pending-bytes metric (a failed
    /// attempt's staged parts are committed, if at all, by the next one).
    fn drop(&mut self) {
        let staged: u64 = self.epoch.iter().map(|(_, bytes)| bytes).sum::<u64>()
            + self
                .pending
                .values()
                .flatten()
                .map(|p| p.bytes)
                .sum::<u64>();
        FileSinkMetrics::sub(&self.metrics.0.pending_bytes, staged);
    }
}

/// A random 64-bit nonce in hex (std's per-process random hasher keys, mixed with the
/// clock and the process id).
fn nonce() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

impl<T: Serialize + Send + 'static> Sink for ObjectFileSink<T> {
    type In = T;

    /// Opens the output store, commits the pending epochs of the restored checkpoint
    /// (subtask 0 after rescaling: those of every previous subtask) and deletes the
    /// staging objects of crashed attempts.
    ///
    /// # Errors
    /// A bad URL or unreachable store (naming it); a corrupt restored state; a staged
    /// part missing together with its final object (naming both); a failed move.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.checkpointing = cx.checkpointing;
        self.timeline = cx.timeline;
        let context = format!("file sink output `{}`", self.config.storage.url);
        let store = BlockingObjectStore::open(&self.config.storage)
            .map_err(|e| e.into_dataflow(&self.subtask, Some(&context)))?;
        self.store = Some(store);

        let mut restored: Vec<Pending> = Vec::new();
        let mut referenced = BTreeSet::new();
        if let Some(bytes) = cx.restored_operator.get(PENDING) {
            restored.push(decode(PENDING, bytes)?);
        }
        for state in &cx.restored_operator_all {
            if let Some(bytes) = state.get(PENDING) {
                let pending: Pending = decode(PENDING, bytes)?;
                // Every subtask keeps the parts others will commit; subtask 0 commits.
                referenced.extend(pending.values().flatten().map(|p| p.staging.clone()));
                if self.subtask.index == 0 {
                    restored.push(pending);
                }
            }
        }
        referenced.extend(
            restored
                .iter()
                .flat_map(|p| p.values().flatten().map(|p| p.staging.clone())),
        );
        for mut pending in restored {
            // Every epoch in a restored checkpoint is covered by it: commit them all.
            self.commit(&mut pending, u64::MAX)?;
        }
        self.clean_staging(&referenced)
    }

    /// # Errors
    /// A record the format cannot represent; a failed upload when a part rolls.
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.part.is_empty() {
            self.part_started = Some(Instant::now());
        }
        let before = self.part.len();
        self.config
            .format
            .encode(batch, &mut self.part)
            .map_err(|e| self.error(e))?;
        FileSinkMetrics::add(&self.metrics.0.records_written, batch.len() as u64);
        FileSinkMetrics::add(
            &self.metrics.0.bytes_written,
            (self.part.len() - before) as u64,
        );
        batch.clear();
        let old = self
            .part_started
            .is_some_and(|t| t.elapsed() >= self.config.roll_interval);
        if self.part.len() as u64 >= self.config.roll_size || old {
            self.roll()?;
        }
        Ok(())
    }

    /// Uploads the in-progress part and records the epoch's staged parts, with their
    /// final names, as pending under this checkpoint.
    ///
    /// # Errors
    /// A failed upload (the checkpoint then fails: it never refers to data not stored).
    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        self.roll()?;
        let checkpoint = cx.checkpoint.get();
        let (index, ext) = (self.subtask.index, self.config.format.extension());
        let timeline = match self.timeline {
            0 => String::new(),
            t => format!("-{t:016x}"),
        };
        let parts: Vec<StagedPart> = std::mem::take(&mut self.epoch)
            .into_iter()
            .enumerate()
            .map(|(seq, (staging, bytes))| StagedPart {
                staging,
                target: format!("part-{index}-{checkpoint}-{seq}{timeline}.{ext}"),
                bytes,
            })
            .collect();
        if !parts.is_empty() {
            self.pending.insert(checkpoint, parts);
        }
        cx.put_operator(PENDING, encode(PENDING, &self.pending)?);
        Ok(())
    }

    /// Moves the staged parts of every epoch up to `id` to their final names.
    ///
    /// # Errors
    /// A failed move, or a staged part missing with its final object (naming both).
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.commit(&mut pending, id.get());
        self.pending = pending;
        result
    }

    /// Without checkpointing: uploads the last part. With checkpointing: nothing (the
    /// final checkpoint commits the last epoch).
    ///
    /// # Errors
    /// A failed upload.
    fn finish(&mut self) -> Result<()> {
        if self.checkpointing {
            Ok(())
        } else {
            self.roll()
        }
    }
}

/// A committed part file of an [`ObjectFileSink`] output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedPart {
    /// The file name, `part-<subtask>-<checkpoint>-<seq>[-<timeline>].<ext>`.
    pub name: String,
    /// The writing subtask.
    pub subtask: usize,
    /// The checkpoint that committed it (0 without checkpointing).
    pub checkpoint: u64,
    /// Its number within the subtask's epoch.
    pub seq: u64,
    /// The run (timeline) that wrote it, 0 when the name has none (without
    /// checkpointing, or written before timelines).
    pub timeline: u64,
    /// Its size in bytes.
    pub size: u64,
}

impl CommittedPart {
    /// Parses `part-<subtask>-<checkpoint>-<seq>[-<timeline, hex>].<ext>`.
    fn parse(name: &str, ext: &str, size: u64) -> Option<Self> {
        let stem = name
            .strip_prefix("part-")?
            .strip_suffix(ext)?
            .strip_suffix('.')?;
        let mut fields = stem.split('-');
        let mut number = || fields.next()?.parse::<u64>().ok();
        let (subtask, checkpoint, seq) = (number()?, number()?, number()?);
        let timeline = match fields.next() {
            Some(hex) => u64::from_str_radix(hex, 16).ok()?,
            None => 0,
        };
        fields.next().is_none().then_some(Self {
            name: name.to_owned(),
            subtask: usize::try_from(subtask).ok()?,
            checkpoint,
            seq,
            timeline,
            size,
        })
    }
}

/// The committed parts in `store`, sorted.
fn committed_parts_in(
    store: &BlockingObjectStore,
    format: FileFormat,
) -> std::io::Result<Vec<CommittedPart>> {
    let listed = store.list_top_level().map_err(std::io::Error::other)?;
    let mut parts: Vec<CommittedPart> = listed
        .into_iter()
        .filter_map(|object| CommittedPart::parse(&object.name, format.extension(), object.size))
        .collect();
    parts.sort_by_key(|a| (a.subtask, a.checkpoint, a.seq));
    Ok(parts)
}

/// The committed part files of the output `config` names (staging objects excluded),
/// by subtask, checkpoint and sequence number.
///
/// # Errors
/// The store cannot be opened or listed (the message names it).
pub fn committed_parts(config: &FileSinkConfig) -> std::io::Result<Vec<CommittedPart>> {
    let store = BlockingObjectStore::open(&config.storage).map_err(std::io::Error::other)?;
    committed_parts_in(&store, config.format)
}

/// Every committed record of the output `config` names, part by part in the order of
/// [`committed_parts`].
///
/// # Errors
/// The store cannot be opened, listed or read (the message names the object); a line
/// is not a `T` ([`std::io::ErrorKind::InvalidData`], naming the object and the line).
pub fn read_committed_objects<T: DeserializeOwned>(
    config: &FileSinkConfig,
) -> std::io::Result<Vec<T>> {
    let store = BlockingObjectStore::open(&config.storage).map_err(std::io::Error::other)?;
    let mut records = Vec::new();
    for part in committed_parts_in(&store, config.format)? {
        let bytes = store.get(&part.name).map_err(std::io::Error::other)?;
        records.extend(
            config
                .format
                .decode_all::<T>(&store.describe(&part.name), &bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        );
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_dataflow::state::MaxParallelism;

    fn info(index: usize, parallelism: usize) -> SubtaskInfo {
        weir_dataflow::testing::subtask_info("files", index, parallelism)
    }

    type State = BTreeMap<String, Vec<u8>>;

    /// Opens subtask `index` of `parallelism` with checkpointing, restoring `own` (same
    /// parallelism) or `all` (rescaled).
    fn open(
        config: &FileSinkConfig,
        index: usize,
        parallelism: usize,
        own: Option<State>,
        all: Vec<State>,
    ) -> Result<ObjectFileSink<u64>> {
        let (factory, _) = ObjectFileSink::<u64>::factory(config.clone());
        let mut sink = factory(&info(index, parallelism));
        let mut cx = OperatorContext::fresh(info(index, parallelism));
        cx.checkpointing = true;
        cx.restored_operator = own.unwrap_or_default();
        cx.restored_operator_all = all;
        sink.open(&mut cx)?;
        Ok(sink)
    }

    fn snapshot(sink: &mut ObjectFileSink<u64>, checkpoint: u64) -> State {
        let mut cx = SnapshotContext::new(
            CheckpointId::new(checkpoint),
            false,
            MaxParallelism::DEFAULT,
        );
        sink.snapshot(&mut cx).unwrap();
        cx.into_snapshot().unwrap().operator
    }

    fn committed(config: &FileSinkConfig) -> Vec<u64> {
        let mut records: Vec<u64> = read_committed_objects(config).unwrap();
        records.sort_unstable();
        records
    }

    fn staging_files(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir.join(STAGING))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn epochs_commit_on_completion_and_on_restore_and_leftovers_go() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig::new(dir.path().display().to_string());
        let mut sink = open(&config, 0, 1, None, Vec::new()).unwrap();
        sink.write_batch(&mut vec![1, 2]).unwrap();
        snapshot(&mut sink, 1);
        sink.write_batch(&mut vec![3]).unwrap();
        let state = snapshot(&mut sink, 2);
        assert!(committed(&config).is_empty(), "nothing before completion");
        sink.on_checkpoint_complete(CheckpointId::new(1)).unwrap();
        assert_eq!(committed(&config), vec![1, 2]);
        // Epoch 3 is staged by a roll, then the process dies before checkpoint 3.
        sink.config.roll_size = 1;
        sink.write_batch(&mut vec![4]).unwrap();
        assert_eq!(
            staging_files(dir.path()).len(),
            2,
            "epoch 2 and the rolled part"
        );
        drop(sink);

        // Restore checkpoint 2: its pending epoch 2 commits, the orphan goes.
        let sink = open(&config, 0, 1, Some(state.clone()), Vec::new()).unwrap();
        assert_eq!(committed(&config), vec![1, 2, 3]);
        assert!(staging_files(dir.path()).is_empty());
        let names: Vec<String> = committed_parts(&config)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["part-0-1-0.jsonl", "part-0-2-0.jsonl"]);
        drop(sink);
        // Restoring the same checkpoint again finds the move done: nothing repeats.
        open(&config, 0, 1, Some(state), Vec::new()).unwrap();
        assert_eq!(committed(&config), vec![1, 2, 3]);
    }

    #[test]
    fn a_missing_staged_part_without_its_final_object_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig::new(dir.path().display().to_string());
        let mut sink = open(&config, 0, 1, None, Vec::new()).unwrap();
        sink.write_batch(&mut vec![1]).unwrap();
        let state = snapshot(&mut sink, 7);
        drop(sink);
        let staged = staging_files(dir.path());
        std::fs::remove_file(dir.path().join(STAGING).join(&staged[0])).unwrap();
        let err = open(&config, 0, 1, Some(state), Vec::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&staged[0]) && err.contains("part-0-7-0.jsonl") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn parts_roll_by_size_and_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig::new(dir.path().display().to_string())
            .with_format(FileFormat::Csv { header: false })
            .with_rolling(4, Duration::from_secs(3600));
        let mut sink = open(&config, 1, 2, None, Vec::new()).unwrap();
        for n in [10, 11, 12] {
            sink.write_batch(&mut vec![n]).unwrap(); // 3 bytes each: rolls every 2nd
        }
        snapshot(&mut sink, 1);
        sink.on_checkpoint_complete(CheckpointId::new(1)).unwrap();
        let parts = committed_parts(&config).unwrap();
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["part-1-1-0.csv", "part-1-1-1.csv"]);
        assert_eq!(sink.metrics.parts_committed(), 2);
        assert_eq!(sink.metrics.records_written(), 3);
        assert_eq!(sink.metrics.pending_bytes(), 0);

        let config = config.with_rolling(1 << 20, Duration::ZERO);
        let mut sink = open(&config, 1, 2, None, Vec::new()).unwrap();
        sink.write_batch(&mut vec![20]).unwrap();
        sink.write_batch(&mut vec![21]).unwrap();
        snapshot(&mut sink, 2);
        assert!(sink.metrics.pending_bytes() > 0);
        sink.on_checkpoint_complete(CheckpointId::new(2)).unwrap();
        assert_eq!(committed_parts(&config).unwrap().len(), 4);
        assert_eq!(committed(&config), vec![10, 11, 12, 20, 21]);
    }

    #[test]
    fn after_rescaling_subtask_0_commits_every_previous_subtask() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig::new(dir.path().display().to_string());
        let mut states = Vec::new();
        for index in 0..3 {
            let mut sink = open(&config, index, 3, None, Vec::new()).unwrap();
            sink.write_batch(&mut vec![index as u64]).unwrap();
            states.push(snapshot(&mut sink, 4));
        }
        // Subtask 1 of the new parallelism opens first: it must keep the parts
        // subtask 0 is about to commit.
        open(&config, 1, 2, None, states.clone()).unwrap();
        assert_eq!(staging_files(dir.path()).len(), 3);
        open(&config, 0, 2, None, states).unwrap();
        assert_eq!(committed(&config), vec![0, 1, 2]);
        assert!(staging_files(dir.path()).is_empty());
    }

    #[test]
    fn without_checkpointing_finish_writes_the_last_part() {
        use weir_dataflow::testing::CollectionSource;
        use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig::new(dir.path().display().to_string());
        let job = JobBuilder::new(JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        });
        let (factory, metrics) = ObjectFileSink::<u64>::factory(config.clone());
        job.source(
            "numbers",
            WatermarkStrategy::none(),
            CollectionSource::factory((0..100u64).collect()),
        )
        .sink("files", factory);
        job.execute().unwrap();
        assert_eq!(committed(&config), (0..100).collect::<Vec<_>>());
        assert_eq!(metrics.records_written(), 100);
    }

    #[test]
    fn an_unreachable_bucket_is_a_clear_error() {
        let mut config = FileSinkConfig::new("s3://no-such-bucket/out");
        config.storage.s3 = weir_objects::S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: true,
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            region: Some("us-east-1".into()),
            max_retries: Some(0),
            retry_timeout: Some(Duration::from_secs(1)),
        };
        let err = open(&config, 0, 1, None, Vec::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("no-such-bucket") && err.contains("127.0.0.1:1"),
            "{err}"
        );
    }
}

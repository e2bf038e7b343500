//! Checkpoint storage on an object store: the local filesystem or S3 (and
//! S3-compatible stores), laid out as described in [`layout`](crate::layout).
//!
//! Every object is written whole and atomically (object stores never show a partial
//! object), `_metadata` last and only if absent, so a checkpoint exists exactly when
//! its metadata does. Reads never trust an object blindly: metadata is checksummed,
//! state sizes are checked against their handles.

use crate::config::{build_s3, parse_target, StorageConfig, Target};
use crate::error::CorruptReason;
use crate::layout;
use crate::metadata::{CheckpointMetadata, StateHandle};
use crate::{CheckpointError, CheckpointId, OperatorUid};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How many object requests one operation keeps in flight.
pub(crate) const CONCURRENCY: usize = 16;

/// How objects are named in messages.
#[derive(Clone, Debug)]
enum Display {
    /// Absolute directory of the store's root.
    Local(PathBuf),
    /// `s3://bucket`.
    S3(String),
}

/// Shared files larger than this are uploaded in parts of this size
/// ([`CheckpointStorage::write_shared_file`]); S3 needs parts of at least 5 MiB.
pub const STREAMED_PART: usize = 8 << 20;

/// Checkpoint storage rooted at one directory or bucket prefix.
///
/// Cheap to clone (the store is shared). All operations are async and need a tokio
/// runtime; none of them blocks the runtime's threads.
///
/// # Cancel safety
///
/// No operation is transactional: dropping one of its futures stops it between two
/// object requests. Each request is atomic (an object is either written whole or not at
/// all), so a cancelled operation leaves at worst some of the objects it meant to
/// write or delete, never a damaged one, and running the operation again completes
/// it. The notes on each method say what a cancellation can leave behind.
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    /// The prefix inside `store` under which everything lives.
    root: Path,
    display: Display,
    /// Unreadable checkpoints retention has reported, by job: each is logged once.
    reported_unreadable: Arc<Mutex<BTreeSet<(String, CheckpointId)>>>,
}

/// A checkpoint directory found by a listing.
pub(crate) struct ListedCheckpoint {
    pub(crate) id: CheckpointId,
    pub(crate) has_metadata: bool,
}

impl CheckpointStorage {
    /// Opens the storage `config.url` names.
    ///
    /// A filesystem root is created if missing. An S3 bucket is probed with one
    /// listing request, so a wrong endpoint, a missing bucket or bad credentials fail
    /// here rather than at the first checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::Misconfigured`] for an empty URL, an unknown scheme (the
    /// message lists the supported ones) or S3 settings object_store rejects;
    /// [`CheckpointError::Unreachable`] naming the directory or bucket when it cannot be
    /// created or reached.
    ///
    /// # Cancel safety
    /// Cancel-safe: at worst a created, empty root directory remains.
    pub async fn open(config: &StorageConfig) -> Result<Self, CheckpointError> {
        Self::open_target(config, parse_target(&config.url)?, true).await
    }

    /// Opens `url` with default options: shorthand for
    /// [`open`](Self::open)`(&StorageConfig::new(url))`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    ///
    /// # Cancel safety
    /// As [`open`](Self::open).
    pub async fn open_url(url: &str) -> Result<Self, CheckpointError> {
        Self::open(&StorageConfig::new(url)).await
    }

    pub(crate) async fn open_target(
        config: &StorageConfig,
        target: Target,
        create: bool,
    ) -> Result<Self, CheckpointError> {
        match target {
            Target::Local(dir) => {
                let unreachable = |e: std::io::Error| CheckpointError::Unreachable {
                    target: dir.display().to_string(),
                    source: object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                };
                if create {
                    tokio::fs::create_dir_all(&dir).await.map_err(unreachable)?;
                }
                let absolute = tokio::fs::canonicalize(&dir).await.map_err(unreachable)?;
                let store = LocalFileSystem::new_with_prefix(&absolute)
                    .map_err(|source| CheckpointError::Unreachable {
                        target: dir.display().to_string(),
                        source,
                    })?
                    .with_automatic_cleanup(true)
                    .with_fsync(config.fsync);
                Ok(Self {
                    store: Arc::new(store),
                    root: Path::ROOT,
                    display: Display::Local(absolute),
                    reported_unreadable: Arc::default(),
                })
            }
            Target::S3 { bucket, prefix } => {
                let store = build_s3(&config.url, &bucket, &config.s3)?;
                let storage = Self {
                    store: Arc::new(store),
                    root: prefix,
                    display: Display::S3(format!("s3://{bucket}")),
                    reported_unreadable: Arc::default(),
                };
                let probe = (!storage.root.is_root()).then_some(&storage.root);
                if let Err(source) = storage.store.list_with_delimiter(probe).await {
                    let endpoint = config
                        .s3
                        .endpoint
                        .as_deref()
                        .map(|e| format!(" at {e}"))
                        .unwrap_or_default();
                    return Err(CheckpointError::Unreachable {
                        target: format!("bucket `{bucket}`{endpoint} ({})", storage.location()),
                        source,
                    });
                }
                Ok(storage)
            }
        }
    }

    /// The same store, rooted at `self.root/<segment>` (a savepoint directory).
    pub(crate) fn child(&self, segment: &str) -> Self {
        Self {
            store: Arc::clone(&self.store),
            root: self.root.clone().join(segment),
            display: self.display.clone(),
            reported_unreadable: Arc::clone(&self.reported_unreadable),
        }
    }

    /// Whether checkpoint `checkpoint` of `job` is reported unreadable for the first
    /// time by this storage (and its clones); remembers it.
    pub(crate) fn first_report_of_unreadable(&self, job: &str, checkpoint: CheckpointId) -> bool {
        self.reported_unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((job.to_owned(), checkpoint))
    }

    /// Where this storage's root is: an absolute filesystem path or `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        self.describe(&Path::ROOT)
    }

    /// The underlying object store, for tools and tests that need raw access.
    /// Objects of this storage live under [`root`](Self::root) in it.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix inside [`object_store`](Self::object_store) under which this storage
    /// keeps its objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full store path of a path relative to the root.
    pub fn full_path(&self, relative: &Path) -> Path {
        self.root.parts().chain(relative.parts()).collect()
    }

    /// A full store path (see [`full_path`](Self::full_path)) as users see it: an
    /// absolute filesystem path or an `s3://` URL.
    pub fn describe_full(&self, full: &Path) -> String {
        let (base, sep) = match &self.display {
            Display::Local(dir) => (dir.display().to_string(), std::path::MAIN_SEPARATOR),
            Display::S3(bucket) => (bucket.clone(), '/'),
        };
        if full.is_root() {
            base
        } else {
            format!("{base}{sep}{full}")
        }
    }

    /// A root-relative path as users see it.
    pub(crate) fn describe(&self, relative: &Path) -> String {
        self.describe_full(&self.full_path(relative))
    }

    /// Maps an object-store error on `relative` to the crate's error.
    pub(crate) fn error(&self, relative: &Path, source: object_store::Error) -> CheckpointError {
        let object = self.describe(relative);
        match source {
            object_store::Error::NotFound { .. } => CheckpointError::NotFound { object },
            object_store::Error::AlreadyExists { .. } => CheckpointError::AlreadyExists { object },
            source => CheckpointError::Io { object, source },
        }
    }

    /// Parses a handle's path.
    pub(crate) fn handle_path(handle: &StateHandle) -> Result<Path, CheckpointError> {
        Path::parse(&handle.path).map_err(|e| CheckpointError::InvalidName {
            what: "state handle path",
            name: handle.path.clone(),
            reason: e.to_string(),
        })
    }

    pub(crate) async fn put(
        &self,
        relative: &Path,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<(), CheckpointError> {
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.full_path(relative), PutPayload::from(bytes), opts)
            .await
            .map(drop)
            .map_err(|e| self.error(relative, e))
    }

    /// Whether `relative` exists: `Ok(())`, or [`CheckpointError::NotFound`].
    pub(crate) async fn head(&self, relative: &Path) -> Result<(), CheckpointError> {
        self.store
            .head(&self.full_path(relative))
            .await
            .map(drop)
            .map_err(|e| self.error(relative, e))
    }

    pub(crate) async fn get(&self, relative: &Path) -> Result<Bytes, CheckpointError> {
        let full = self.full_path(relative);
        let result = self
            .store
            .get(&full)
            .await
            .map_err(|e| self.error(relative, e))?;
        result.bytes().await.map_err(|e| self.error(relative, e))
    }

    /// The size of an object, `None` if it does not exist.
    pub(crate) async fn size_of(&self, relative: &Path) -> Result<Option<u64>, CheckpointError> {
        match self.store.head(&self.full_path(relative)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Deletes one object; a missing object is not an error.
    pub(crate) async fn delete(&self, relative: &Path) -> Result<(), CheckpointError> {
        match self.store.delete(&self.full_path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Every object under `relative`, as full paths.
    async fn list_full(&self, relative: &Path) -> Result<Vec<Path>, CheckpointError> {
        match self
            .store
            .list(Some(&self.full_path(relative)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
        {
            Ok(listed) => Ok(listed),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Every object under `relative` (full paths) that `leftovers` lets a clean-up
    /// delete.
    async fn list_deletable(
        &self,
        relative: &Path,
        leftovers: &Leftovers,
    ) -> Result<Vec<Path>, CheckpointError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match self
            .store
            .list(Some(&self.full_path(relative)))
            .try_filter_map(|meta| {
                let age_ms = now_ms.saturating_sub(meta.last_modified.timestamp_millis());
                let deletable = leftovers.deletable(meta.location.as_ref(), age_ms);
                futures::future::ready(Ok(deletable.then_some(meta.location)))
            })
            .try_collect()
            .await
        {
            Ok(listed) => Ok(listed),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// The objects under `relative` that `leftovers` lets a clean-up delete, as
    /// paths relative to the root.
    pub(crate) async fn list_relative_deletable(
        &self,
        relative: &Path,
        leftovers: &Leftovers,
    ) -> Result<Vec<Path>, CheckpointError> {
        Ok(self
            .list_deletable(relative, leftovers)
            .await?
            .into_iter()
            .filter_map(|location| location.prefix_match(&self.root).map(Path::from_iter))
            .collect())
    }

    /// Every object under `relative`, as paths relative to the root.
    pub(crate) async fn list_relative(
        &self,
        relative: &Path,
    ) -> Result<Vec<Path>, CheckpointError> {
        Ok(self
            .list_full(relative)
            .await?
            .into_iter()
            .filter_map(|location| location.prefix_match(&self.root).map(Path::from_iter))
            .collect())
    }

    /// Deletes every object under `relative`; returns how many there were.
    pub(crate) async fn delete_prefix(&self, relative: &Path) -> Result<usize, CheckpointError> {
        let listed = self.list_full(relative).await?;
        self.delete_listed(relative, listed).await
    }

    /// Deletes `listed` (full paths under `relative`, which errors name); objects
    /// already gone count as deleted. Returns how many were listed.
    async fn delete_listed(
        &self,
        relative: &Path,
        listed: Vec<Path>,
    ) -> Result<usize, CheckpointError> {
        let count = listed.len();
        let mut deleted = self
            .store
            .delete_stream(futures::stream::iter(listed.into_iter().map(Ok)).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(relative, e)),
            }
        }
        Ok(count)
    }

    /// Writes a private state file of checkpoint `checkpoint`:
    /// `<job>/chk-<n>/<uid>/<subtask>/<name>`, overwriting any earlier attempt.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`] for an empty or control-character name;
    /// [`CheckpointError::Io`] naming the object when the write fails.
    ///
    /// # Cancel safety
    /// Cancel-safe: the object is written whole or not at all; writing again is
    /// harmless. An abandoned checkpoint's files are removed by [`abort`](Self::abort)
    /// or [`cleanup_incomplete`](Self::cleanup_incomplete).
    pub async fn write_state(
        &self,
        job: &str,
        checkpoint: CheckpointId,
        uid: &OperatorUid,
        subtask: usize,
        name: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<StateHandle, CheckpointError> {
        let path = layout::private_state_path(job, checkpoint, uid, subtask, name)?;
        let bytes = bytes.into();
        let size = bytes.len() as u64;
        self.put(&path, bytes, PutMode::Overwrite).await?;
        Ok(StateHandle {
            path: path.to_string(),
            size,
        })
    }

    /// Writes a file shared between incremental checkpoints, `<job>/shared/<key>`,
    /// unless it already exists. `content_key` must identify the content (e.g. a
    /// RocksDB SST name plus a digest): an existing object is trusted to hold the same
    /// bytes and is not uploaded again.
    ///
    /// # Errors
    /// [`CheckpointError::AlreadyExists`] when an object with this key exists with a
    /// different size (two contents under one key: a bug in the caller's keys);
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: the file is written whole (create-if-absent) or not at all; calling
    /// again finishes the job. A shared file no checkpoint refers to is left in place.
    pub async fn write_shared(
        &self,
        job: &str,
        content_key: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<StateHandle, CheckpointError> {
        let path = layout::shared_path(job, content_key)?;
        let bytes = bytes.into();
        let size = bytes.len() as u64;
        let handle = StateHandle {
            path: path.to_string(),
            size,
        };
        let existing = match self.size_of(&path).await? {
            Some(existing) => existing,
            None => match self.put(&path, bytes, PutMode::Create).await {
                Ok(()) => return Ok(handle),
                Err(CheckpointError::AlreadyExists { .. }) => {
                    self.size_of(&path).await?.unwrap_or(size)
                }
                Err(e) => return Err(e),
            },
        };
        self.existing_shared(&path, handle, existing)
    }

    /// `handle` when the shared file at `path`, already there with `existing` bytes,
    /// is its content (same size); otherwise the error of one key with two contents.
    fn existing_shared(
        &self,
        path: &Path,
        handle: StateHandle,
        existing: u64,
    ) -> Result<StateHandle, CheckpointError> {
        if existing == handle.size {
            Ok(handle)
        } else {
            Err(CheckpointError::AlreadyExists {
                object: format!(
                    "{} (holds {existing} bytes, this content has {}: one key, two contents)",
                    self.describe(path),
                    handle.size
                ),
            })
        }
    }

    /// Uploads the local file `file` as the shared file `content_key` of job `job`,
    /// as [`CheckpointStorage::write_shared`] does with bytes in memory; a file larger
    /// than [`STREAMED_PART`] is streamed in parts of that size (a multipart upload,
    /// at most two parts in flight), so an upload holds a few parts in memory, not the
    /// file.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the file cannot be read or the storage fails;
    /// [`CheckpointError::AlreadyExists`] when the shared file exists with another
    /// size.
    ///
    /// # Cancel safety
    /// Cancel-safe: a multipart upload makes the object visible only when complete.
    pub async fn write_shared_file(
        &self,
        job: &str,
        content_key: &str,
        file: &std::path::Path,
    ) -> Result<StateHandle, CheckpointError> {
        use tokio::io::AsyncReadExt;
        let unreadable = |e: std::io::Error| CheckpointError::Io {
            object: file.display().to_string(),
            source: object_store::Error::Generic {
                store: "local file",
                source: Box::new(e),
            },
        };
        let size = tokio::fs::metadata(file).await.map_err(unreadable)?.len();
        if size <= STREAMED_PART as u64 {
            let bytes = tokio::fs::read(file).await.map_err(unreadable)?;
            return self.write_shared(job, content_key, bytes).await;
        }
        let path = layout::shared_path(job, content_key)?;
        let handle = StateHandle {
            path: path.to_string(),
            size,
        };
        if let Some(existing) = self.size_of(&path).await? {
            return self.existing_shared(&path, handle, existing);
        }
        let upload = self
            .store
            .put_multipart(&self.full_path(&path))
            .await
            .map_err(|e| self.error(&path, e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, STREAMED_PART);
        let mut reader = tokio::fs::File::open(file).await.map_err(unreadable)?;
        let mut buffer = vec![0u8; STREAMED_PART];
        let mut sent = 0u64;
        let streamed: Result<(), CheckpointError> = async {
            loop {
                let n = reader.read(&mut buffer).await.map_err(unreadable)?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| self.error(&path, e))?;
                writer.write(&buffer[..n]);
                sent += n as u64;
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            writer.abort().await.ok();
            return Err(e);
        }
        if sent != size {
            writer.abort().await.ok();
            return Err(unreadable(std::io::Error::other(format!(
                "read {sent} bytes, the file had {size} when the upload began"
            ))));
        }
        writer.finish().await.map_err(|e| self.error(&path, e))?;
        Ok(handle)
    }

    /// Reads the object a state handle refers to, and checks its size.
    ///
    /// # Errors
    /// [`CheckpointError::NotFound`] when the object is missing;
    /// [`CheckpointError::CorruptState`] when its size differs from the handle's;
    /// [`CheckpointError::InvalidName`] for a malformed handle path;
    /// [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn read(&self, handle: &StateHandle) -> Result<Bytes, CheckpointError> {
        let path = Self::handle_path(handle)?;
        let bytes = self.get(&path).await?;
        if bytes.len() as u64 != handle.size {
            return Err(CheckpointError::CorruptState {
                object: self.describe(&path),
                expected_size: handle.size,
                actual_size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Completes a checkpoint: writes `<job>/chk-<n>/_metadata` (job and number taken
    /// from `metadata`) if and only if it does not exist yet. Call it after every
    /// state object the metadata refers to is written.
    ///
    /// Create-if-absent is the fencing: of two writers (say a coordinator that lost
    /// its lease and its successor) exactly one completes checkpoint n. Retrying a
    /// commit whose outcome was unknown is safe: if the object holds exactly these
    /// bytes, the commit succeeds.
    ///
    /// # Errors
    /// [`CheckpointError::AlreadyExists`] when another metadata object is already
    /// there: this writer is fenced off and must not report the checkpoint complete;
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`] (outcome unknown:
    /// retry the commit).
    ///
    /// # Cancel safety
    /// Not cancel-safe in outcome: a cancelled commit may or may not have completed
    /// the checkpoint. Commit again (it succeeds if the first one landed) or
    /// [`abort`](Self::abort).
    pub async fn commit_metadata(
        &self,
        metadata: &CheckpointMetadata,
    ) -> Result<(), CheckpointError> {
        let path = layout::metadata_path(&metadata.job, metadata.checkpoint)?;
        let encoded = Bytes::from(metadata.encode());
        match self.put(&path, encoded.clone(), PutMode::Create).await {
            Err(CheckpointError::AlreadyExists { object }) => match self.get(&path).await {
                Ok(existing) if existing == encoded => Ok(()),
                _ => Err(CheckpointError::AlreadyExists { object }),
            },
            other => other,
        }
    }

    /// Reads and decodes the metadata of checkpoint `checkpoint` of `job`.
    ///
    /// # Errors
    /// [`CheckpointError::NotFound`] when the checkpoint is not complete (or was
    /// deleted); [`CheckpointError::CorruptMetadata`] naming the object when it does
    /// not decode or names another job or checkpoint; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn read_metadata(
        &self,
        job: &str,
        checkpoint: CheckpointId,
    ) -> Result<CheckpointMetadata, CheckpointError> {
        let path = layout::metadata_path(job, checkpoint)?;
        let bytes = self.get(&path).await?;
        decode_in_place(&bytes, job, checkpoint).map_err(|reason| {
            CheckpointError::CorruptMetadata {
                object: self.describe(&path),
                reason,
            }
        })
    }

    /// The checkpoint directories of `job`, ascending, with whether each has metadata.
    pub(crate) async fn scan(&self, job: &str) -> Result<Vec<ListedCheckpoint>, CheckpointError> {
        let job_dir = layout::job_dir(job)?;
        let listing = match self
            .store
            .list_with_delimiter(Some(&self.full_path(&job_dir)))
            .await
        {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(&job_dir, e)),
        };
        let mut ids: Vec<CheckpointId> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(layout::parse_checkpoint_dir))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        futures::stream::iter(ids)
            .map(|id| async move {
                let path = layout::metadata_path(job, id)?;
                let has_metadata = self.size_of(&path).await?.is_some();
                Ok(ListedCheckpoint { id, has_metadata })
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// The jobs with a directory under the root, by name, ascending.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when listing fails.
    pub async fn list_jobs(&self) -> Result<Vec<String>, CheckpointError> {
        let root = Path::from("");
        let listing = match self.store.list_with_delimiter(Some(&self.root)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(&root, e)),
        };
        let mut jobs: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .map(percent_decode)
            .collect();
        jobs.sort();
        jobs.dedup();
        Ok(jobs)
    }

    /// The completed checkpoints of `job` (those whose `_metadata` exists), ascending.
    /// Whether they are restorable is [`latest_valid`](Self::latest_valid)'s question.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`] when listing fails.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn list_checkpoints(&self, job: &str) -> Result<Vec<CheckpointId>, CheckpointError> {
        Ok(self
            .scan(job)
            .await?
            .into_iter()
            .filter(|c| c.has_metadata)
            .map(|c| c.id)
            .collect())
    }

    /// Deletes checkpoint `checkpoint` of `job`: its `_metadata` first (so it stops
    /// being complete before any of its files goes), then everything else under
    /// `chk-<n>`. Shared files are not touched: [`retain`](Self::retain) owns them.
    /// Returns how many objects were deleted.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled abort leaves an incomplete checkpoint (no metadata),
    /// which a second `abort` or [`cleanup_incomplete`](Self::cleanup_incomplete) removes.
    pub async fn abort(
        &self,
        job: &str,
        checkpoint: CheckpointId,
    ) -> Result<usize, CheckpointError> {
        self.delete(&layout::metadata_path(job, checkpoint)?)
            .await?;
        self.delete_prefix(&layout::checkpoint_dir(job, checkpoint)?)
            .await
    }

    /// Deletes what the attempt `owner` wrote for checkpoint `checkpoint` of `job`
    /// (see [`crate::StateWriter::owned_by`]): its private files, and the `_metadata`
    /// only when it refers to them (a metadata write that failed on this side but
    /// landed). Files and metadata another attempt or incarnation wrote under the
    /// same `chk-<n>` stay: an incarnation only ever deletes what it wrote. Returns
    /// how many objects were deleted.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: what is left is incomplete (its metadata goes first) and is
    /// removed by a second call or [`cleanup_incomplete`](Self::cleanup_incomplete).
    pub async fn abort_own(
        &self,
        job: &str,
        checkpoint: CheckpointId,
        owner: &str,
    ) -> Result<usize, CheckpointError> {
        let suffix = format!(".{owner}");
        let ours = |path: &str| !owner.is_empty() && path.ends_with(&suffix);
        let mut count = 0;
        match self.read_metadata(job, checkpoint).await {
            Ok(metadata) if metadata.handles().any(|h| ours(&h.path)) => {
                self.delete(&layout::metadata_path(job, checkpoint)?)
                    .await?;
                count += 1;
            }
            // Another's, or none, or unreadable (then not provably ours): kept.
            Ok(_) | Err(_) => {}
        }
        let dir = layout::checkpoint_dir(job, checkpoint)?;
        let listed: Vec<Path> = self
            .list_full(&dir)
            .await?
            .into_iter()
            .filter(|path| path.filename().is_some_and(ours))
            .collect();
        Ok(count + self.delete_listed(&dir, listed).await?)
    }

    /// Deletes what `chk-<n>` directories of `job` without `_metadata` hold
    /// (aborted checkpoints, or ones a crash interrupted), as far as `leftovers`
    /// allows: what this incarnation's attempts wrote, and what others wrote once it
    /// is older than the grace period. Returns the checkpoints it deleted anything of.
    ///
    /// Only call it while no checkpoint of this incarnation is in flight (e.g. when
    /// the job starts, before its first new checkpoint): an in-flight checkpoint has
    /// no metadata yet either.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: calling again finishes the job.
    pub async fn cleanup_incomplete(
        &self,
        job: &str,
        leftovers: &Leftovers,
    ) -> Result<Vec<CheckpointId>, CheckpointError> {
        let mut removed = Vec::new();
        for listed in self.scan(job).await? {
            if !listed.has_metadata {
                let dir = layout::checkpoint_dir(job, listed.id)?;
                let deletable = self.list_deletable(&dir, leftovers).await?;
                if self.delete_listed(&dir, deletable).await? > 0 {
                    removed.push(listed.id);
                }
            }
        }
        Ok(removed)
    }
}

/// What a clean-up of leftovers ([`CheckpointStorage::cleanup_incomplete`],
/// [`CheckpointStorage::delete_unreferenced_shared`]) may delete. An incarnation
/// deletes at once what its own attempts wrote (their I/O is over when it cleans
/// up), and what other incarnations wrote only once it is older than `grace`: a
/// zombie (an earlier incarnation still running beside this one) writes the files of
/// a checkpoint within that checkpoint's timeout, so with a grace longer than the
/// timeout the clean-up never deletes the files of a checkpoint the zombie may still
/// complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftovers {
    /// The part of the owner token every attempt of this incarnation puts in the
    /// names of what it writes (`.<own>` then `-` or `.`, e.g. the process's nonce);
    /// empty: nothing is known as its own.
    pub own: String,
    /// The age from which other incarnations' leftovers go.
    pub grace: std::time::Duration,
}

impl Leftovers {
    /// Everything, whatever its age and owner: for a checkpoint directory no job
    /// runs against (tools, tests).
    pub fn all() -> Self {
        Self {
            own: String::new(),
            grace: std::time::Duration::ZERO,
        }
    }

    /// Whether an object named `path`, `age_ms` old, may go.
    fn deletable(&self, path: &str, age_ms: i64) -> bool {
        let own = !self.own.is_empty()
            && path.match_indices(self.own.as_str()).any(|(at, _)| {
                path[..at].ends_with('.')
                    && matches!(path[at + self.own.len()..].chars().next(), Some('-' | '.'))
            });
        own || age_ms >= i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Decodes metadata found at `<job>/chk-<checkpoint>/_metadata` and checks it
/// belongs there.
pub(crate) fn decode_in_place(
    bytes: &[u8],
    job: &str,
    checkpoint: CheckpointId,
) -> Result<CheckpointMetadata, CorruptReason> {
    let metadata = CheckpointMetadata::decode(bytes)?;
    if metadata.job != job || metadata.checkpoint != checkpoint {
        return Err(CorruptReason::Misplaced(format!(
            "it describes {} of job {:?}, but is stored as {checkpoint} of job {job:?}",
            metadata.checkpoint, metadata.job
        )));
    }
    Ok(metadata)
}

/// Undoes the percent-encoding object_store applies to path segments.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod percent_tests {
    use super::percent_decode;

    #[test]
    fn segments_decode_back_to_names() {
        assert_eq!(percent_decode("plain-name"), "plain-name");
        assert_eq!(percent_decode("a%2Fb%25c"), "a/b%c");
        assert_eq!(percent_decode("trailing%2"), "trailing%2");
    }
}

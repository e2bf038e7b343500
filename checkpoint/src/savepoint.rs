//! Savepoints: self-contained copies of a checkpoint that a user can keep, move, and
//! resume (possibly rescaled) from.
//!
//! ```text
//! <savepoint-dir>/<name>/_metadata                 written last, create-if-absent
//! <savepoint-dir>/<name>/<uid>/<subtask>/<file>    private state of the checkpoint
//! <savepoint-dir>/<name>/shared/<key>              shared files it referred to
//! ```
//!
//! Handles inside a savepoint's metadata are relative to its directory, so the
//! directory can be copied or moved elsewhere and still be read.

use crate::config::{parse_target, StorageConfig, Target};
use crate::layout::{self, METADATA_FILE};
use crate::metadata::{CheckpointMetadata, SnapshotKind, StateHandle};
use crate::storage::CONCURRENCY;
use crate::{CheckpointError, CheckpointStorage, CorruptReason};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::PutMode;
use std::collections::BTreeMap;

/// A savepoint that has been read (or just written): its metadata and access to its
/// state.
#[derive(Clone, Debug)]
pub struct Savepoint {
    storage: CheckpointStorage,
    metadata: CheckpointMetadata,
}

impl Savepoint {
    /// The savepoint's metadata; its handles are relative to the savepoint directory.
    pub fn metadata(&self) -> &CheckpointMetadata {
        &self.metadata
    }

    /// Where the savepoint is: an absolute filesystem path or `s3://bucket/prefix/name`,
    /// the string to give [`CheckpointStorage::read_savepoint`] later.
    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Reads a state object of the savepoint and checks its size.
    ///
    /// # Errors
    /// As [`CheckpointStorage::read`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn read(&self, handle: &StateHandle) -> Result<Bytes, CheckpointError> {
        self.storage.read(handle).await
    }
}

impl CheckpointStorage {
    /// Writes a self-contained savepoint `<dir>/<name>` of a checkpoint of this
    /// storage: copies every state object `metadata` refers to (private and shared)
    /// into the savepoint directory, then writes its `_metadata` (kind
    /// [`SnapshotKind::Savepoint`], handles relative to the savepoint directory) last,
    /// create-if-absent. `dir` may be another store than this one.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`] for a bad savepoint name or a handle outside
    /// the job's directory; [`CheckpointError::AlreadyExists`] when a savepoint of that
    /// name exists; [`CheckpointError::NotFound`] / [`CheckpointError::CorruptState`]
    /// when a state object to copy is missing or damaged; errors of
    /// [`open`](Self::open) for `dir`; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled write leaves a directory without `_metadata`, which
    /// is not a savepoint; writing again under the same name overwrites the copies
    /// and completes it.
    pub async fn write_savepoint(
        &self,
        dir: &StorageConfig,
        name: &str,
        metadata: &CheckpointMetadata,
    ) -> Result<Savepoint, CheckpointError> {
        layout::validate_savepoint_name(name)?;
        let target = CheckpointStorage::open(dir).await?.child(name);
        let metadata_path = Path::from(METADATA_FILE);
        if target.size_of(&metadata_path).await?.is_some() {
            return Err(CheckpointError::AlreadyExists {
                object: target.describe(&metadata_path),
            });
        }

        let job_dir = layout::job_dir(&metadata.job)?;
        let checkpoint_dir = layout::checkpoint_dir(&metadata.job, metadata.checkpoint)?;
        let mut savepoint = metadata.clone();
        savepoint.kind = SnapshotKind::Savepoint;
        // target path -> (source handle); one copy per distinct object.
        let mut copies: BTreeMap<Path, StateHandle> = BTreeMap::new();
        for handle in savepoint.handles_mut() {
            let source = Self::handle_path(handle)?;
            let relocated = layout::savepoint_relative(&job_dir, &checkpoint_dir, &source)
                .ok_or_else(|| CheckpointError::InvalidName {
                    what: "state handle path",
                    name: handle.path.clone(),
                    reason: format!("outside the directory of job {:?}", metadata.job),
                })?;
            if let Some(previous) = copies.get(&relocated) {
                if previous != handle {
                    return Err(CheckpointError::InvalidName {
                        what: "state handle path",
                        name: handle.path.clone(),
                        reason: format!(
                            "collides with {} in the savepoint (both would be {relocated})",
                            previous.path
                        ),
                    });
                }
            }
            copies.insert(relocated.clone(), handle.clone());
            handle.path = relocated.to_string();
        }

        futures::stream::iter(copies)
            .map(|(to, from)| {
                let target = &target;
                async move {
                    let bytes = self.read(&from).await?;
                    target.put(&to, bytes, PutMode::Overwrite).await
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;

        target
            .put(
                &metadata_path,
                Bytes::from(savepoint.encode()),
                PutMode::Create,
            )
            .await?;
        Ok(Savepoint {
            storage: target,
            metadata: savepoint,
        })
    }

    /// Reads the savepoint at `path.url` (the directory holding its `_metadata`).
    ///
    /// # Errors
    /// [`CheckpointError::NoSavepoint`] ("no savepoint at `<path>`: expected
    /// `<path>/_metadata`") when there is none; [`CheckpointError::CorruptMetadata`]
    /// when its metadata does not decode or is a checkpoint's, not a savepoint's;
    /// errors of [`open`](Self::open) for the URL.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn read_savepoint(path: &StorageConfig) -> Result<Savepoint, CheckpointError> {
        let no_savepoint = || CheckpointError::NoSavepoint {
            path: path.url.clone(),
        };
        let target = parse_target(&path.url)?;
        if let Target::Local(dir) = &target {
            if !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
                return Err(no_savepoint());
            }
        }
        let storage = Self::open_target(path, target, false).await?;
        let metadata_path = Path::from(METADATA_FILE);
        let bytes = match storage.get(&metadata_path).await {
            Ok(bytes) => bytes,
            Err(CheckpointError::NotFound { .. }) => return Err(no_savepoint()),
            Err(e) => return Err(e),
        };
        let corrupt = |reason| CheckpointError::CorruptMetadata {
            object: storage.describe(&metadata_path),
            reason,
        };
        let metadata = CheckpointMetadata::decode(&bytes).map_err(corrupt)?;
        if metadata.kind != SnapshotKind::Savepoint {
            return Err(corrupt(CorruptReason::Misplaced(format!(
                "this is the metadata of checkpoint {} of job {:?}, not a savepoint; \
                 checkpoints are restored from their checkpoint root",
                metadata.checkpoint.get(),
                metadata.job
            ))));
        }
        Ok(Savepoint { storage, metadata })
    }
}

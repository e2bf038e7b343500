//! Recovery: finding the newest checkpoint that can actually be restored.

use crate::error::CorruptReason;
use crate::layout;
use crate::metadata::CheckpointMetadata;
use crate::storage::{decode_in_place, CONCURRENCY};
use crate::{CheckpointError, CheckpointId, CheckpointStorage};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::fmt;

/// The result of [`CheckpointStorage::latest_valid`]: the checkpoint to restore from,
/// and the newer ones that were passed over and why.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveryScan {
    /// The newest checkpoint whose metadata decodes and whose state objects all exist
    /// with their recorded sizes, if any.
    pub latest: Option<CheckpointMetadata>,
    /// Checkpoints newer than `latest` that were skipped, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// A completed checkpoint that cannot be restored from.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedCheckpoint {
    /// The checkpoint.
    pub checkpoint: CheckpointId,
    /// The object found wanting (its `_metadata` or a state object).
    pub object: String,
    /// What is wrong with it.
    pub reason: SkipReason,
}

/// Why a checkpoint was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// `_metadata` disappeared between listing and reading (deleted concurrently).
    MetadataMissing,
    /// `_metadata` does not decode.
    CorruptMetadata(CorruptReason),
    /// A state object the metadata refers to does not exist.
    MissingState,
    /// A state object has another size than its handle records.
    StateSizeMismatch {
        /// Size in the handle.
        expected: u64,
        /// Size of the object.
        actual: u64,
    },
    /// A state handle's path is not a valid object path.
    InvalidStatePath(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MetadataMissing => f.write_str("metadata disappeared while reading it"),
            Self::CorruptMetadata(reason) => write!(f, "corrupt metadata: {reason}"),
            Self::MissingState => f.write_str("state object is missing"),
            Self::StateSizeMismatch { expected, actual } => {
                write!(
                    f,
                    "state object has {actual} bytes, metadata says {expected}"
                )
            }
            Self::InvalidStatePath(why) => write!(f, "invalid state path: {why}"),
        }
    }
}

impl fmt::Display for SkippedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} skipped: {}: {}",
            self.checkpoint, self.object, self.reason
        )
    }
}

impl CheckpointStorage {
    /// The newest checkpoint of `job` to restore from: its metadata decodes (and names
    /// this job and checkpoint) and every state object it refers to exists with the
    /// recorded size. Newer checkpoints that fail are listed in
    /// [`RecoveryScan::skipped`], naming the object and the reason.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the store cannot be read: an I/O failure is not
    /// evidence of corruption, so no checkpoint is skipped because of one.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn latest_valid(&self, job: &str) -> Result<RecoveryScan, CheckpointError> {
        self.latest_valid_of(job, None).await
    }

    /// Like [`Self::latest_valid`], among the checkpoints of one `timeline` only
    /// ([`CheckpointMetadata::timeline`]; all when `None`). Checkpoints of other
    /// timelines are passed over silently: they are not this run's.
    ///
    /// # Errors
    /// As [`Self::latest_valid`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn latest_valid_of(
        &self,
        job: &str,
        timeline: Option<u64>,
    ) -> Result<RecoveryScan, CheckpointError> {
        let mut skipped = Vec::new();
        for id in self.list_checkpoints(job).await?.into_iter().rev() {
            let metadata_path = layout::metadata_path(job, id)?;
            let problem = match self.get(&metadata_path).await {
                Err(CheckpointError::NotFound { object }) => {
                    Some((object, SkipReason::MetadataMissing))
                }
                Err(e) => return Err(e),
                Ok(bytes) => match decode_in_place(&bytes, job, id) {
                    Err(reason) => Some((
                        self.describe(&metadata_path),
                        SkipReason::CorruptMetadata(reason),
                    )),
                    Ok(metadata) if timeline.is_some_and(|t| metadata.timeline() != Some(t)) => {
                        continue
                    }
                    Ok(metadata) => match self.check_state(&metadata).await? {
                        None => {
                            return Ok(RecoveryScan {
                                latest: Some(metadata),
                                skipped,
                            })
                        }
                        Some(problem) => Some(problem),
                    },
                },
            };
            if let Some((object, reason)) = problem {
                let skip = SkippedCheckpoint {
                    checkpoint: id,
                    object,
                    reason,
                };
                // The caller decides what a skipped checkpoint means (the driver refuses
                // to pass over one unless asked to), and says so.
                tracing::debug!(job, checkpoint = id.get(), object = %skip.object, reason = %skip.reason,
                    "checkpoint cannot be restored");
                skipped.push(skip);
            }
        }
        Ok(RecoveryScan {
            latest: None,
            skipped,
        })
    }

    /// The first state object of `metadata` that is missing or has the wrong size.
    async fn check_state(
        &self,
        metadata: &CheckpointMetadata,
    ) -> Result<Option<(String, SkipReason)>, CheckpointError> {
        let mut seen = BTreeSet::new();
        let mut paths = Vec::new();
        for handle in metadata.handles() {
            if !seen.insert((&handle.path, handle.size)) {
                continue;
            }
            match Self::handle_path(handle) {
                Ok(path) => paths.push((path, handle.size)),
                Err(e) => {
                    return Ok(Some((
                        handle.path.clone(),
                        SkipReason::InvalidStatePath(e.to_string()),
                    )))
                }
            }
        }
        let mut checks = futures::stream::iter(paths)
            .map(|(path, expected)| async move {
                let actual = self.size_of(&path).await?;
                Ok::<_, CheckpointError>((path, expected, actual))
            })
            .buffered(CONCURRENCY);
        while let Some(checked) = checks.next().await {
            let (path, expected, actual) = checked?;
            match actual {
                None => return Ok(Some((self.describe(&path), SkipReason::MissingState))),
                Some(actual) if actual != expected => {
                    return Ok(Some((
                        self.describe(&path),
                        SkipReason::StateSizeMismatch { expected, actual },
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }
}

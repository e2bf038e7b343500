//! Retention: keep the newest N completed checkpoints, delete the older ones and the
//! shared files only they referred to.
//!
//! The decision ([`plan_retention`]) is a pure function of what the listing found; the
//! deletions ([`CheckpointStorage::retain`]) follow it.

use crate::layout;
use crate::metadata::CheckpointMetadata;
use crate::{CheckpointError, CheckpointId, CheckpointStorage, Leftovers};
use object_store::path::Path;
use std::collections::BTreeSet;

/// A completed checkpoint as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionCandidate {
    /// The checkpoint.
    pub checkpoint: CheckpointId,
    /// The shared files (paths relative to the checkpoint root) its metadata refers to;
    /// `None` when the metadata does not decode, so its references are unknown.
    pub shared: Option<BTreeSet<String>>,
}

/// What retention will do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Checkpoints kept, ascending: the newest `keep` readable ones, and any unreadable
    /// ones newer than the oldest of those (left for inspection).
    pub keep: Vec<CheckpointId>,
    /// Checkpoints deleted, ascending: every checkpoint older than the oldest kept
    /// readable one.
    pub remove: Vec<CheckpointId>,
    /// Shared files deleted: those a removed checkpoint referred to and no kept one
    /// does.
    pub delete_shared: BTreeSet<String>,
    /// Checkpoints whose metadata [`CheckpointStorage::retain`] could not read and
    /// reported (logged a warning for) in this call: each is reported once per
    /// storage handle and its clones, not at every retention pass. Empty from
    /// [`plan_retention`], which only decides.
    pub reported_unreadable: Vec<CheckpointId>,
}

/// Decides which checkpoints and shared files go, keeping the newest `keep` readable
/// checkpoints (`keep >= 1`; with 0 nothing is removed).
///
/// A shared file is deleted only if a removed checkpoint referred to it and no kept
/// one does. Shared files no metadata mentions (uploaded for a checkpoint still in
/// flight, or for one that was aborted) are never deleted here: they may be about to
/// be referenced. Shared files of a removed checkpoint whose metadata is unreadable
/// stay too (their names are unknown): a leak, never a loss.
///
/// ```
/// use std::collections::BTreeSet;
/// use weir_checkpoint::{plan_retention, CheckpointId, RetentionCandidate};
/// let c = |n, shared: &[&str]| RetentionCandidate {
///     checkpoint: CheckpointId::new(n),
///     shared: Some(shared.iter().map(|s| s.to_string()).collect()),
/// };
/// let plan = plan_retention(&[c(1, &["a", "b"]), c(2, &["b", "c"]), c(3, &["c"])], 2);
/// assert_eq!(plan.remove, vec![CheckpointId::new(1)]);
/// assert_eq!(plan.delete_shared, BTreeSet::from(["a".to_string()]));
/// ```
pub fn plan_retention(candidates: &[RetentionCandidate], keep: usize) -> RetentionPlan {
    let mut sorted: Vec<&RetentionCandidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| c.checkpoint);
    let readable: Vec<CheckpointId> = sorted
        .iter()
        .filter(|c| c.shared.is_some())
        .map(|c| c.checkpoint)
        .collect();
    if keep == 0 || readable.len() <= keep {
        return RetentionPlan {
            keep: sorted.iter().map(|c| c.checkpoint).collect(),
            ..RetentionPlan::default()
        };
    }
    let oldest_kept = readable[readable.len() - keep];
    let (removed, kept): (Vec<_>, Vec<_>) =
        sorted.into_iter().partition(|c| c.checkpoint < oldest_kept);
    let still_referenced: BTreeSet<&String> = kept
        .iter()
        .filter_map(|c| c.shared.as_ref())
        .flatten()
        .collect();
    let delete_shared = removed
        .iter()
        .filter_map(|c| c.shared.as_ref())
        .flatten()
        .filter(|s| !still_referenced.contains(s))
        .cloned()
        .collect();
    RetentionPlan {
        keep: kept.iter().map(|c| c.checkpoint).collect(),
        remove: removed.iter().map(|c| c.checkpoint).collect(),
        delete_shared,
        reported_unreadable: Vec::new(),
    }
}

/// The shared files of `job` that `metadata` refers to (root-relative paths).
pub(crate) fn shared_references(
    job_shared_dir: &Path,
    metadata: &CheckpointMetadata,
) -> BTreeSet<String> {
    metadata
        .handles()
        .filter(|h| Path::parse(&h.path).is_ok_and(|p| layout::is_shared(job_shared_dir, &p)))
        .map(|h| h.path.clone())
        .collect()
}

impl CheckpointStorage {
    /// Keeps the newest `keep` completed checkpoints of `job` and deletes the older
    /// ones (each `_metadata` first, then its private files), then deletes the shared
    /// files that only the deleted checkpoints referred to, as decided by
    /// [`plan_retention`] from the metadata. Returns the plan it carried out.
    ///
    /// Safe while a checkpoint is in flight as long as incremental snapshots build on
    /// the newest completed checkpoint (which is always kept): shared files are only
    /// deleted once no kept checkpoint refers to them, and never merely for being
    /// unreferenced.
    ///
    /// # Errors
    /// [`CheckpointError::Misconfigured`] for `keep == 0` (that would delete the
    /// checkpoint the job restores from); [`CheckpointError::InvalidName`];
    /// [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled run leaves some older checkpoints (complete, or without
    /// metadata for [`cleanup_incomplete`](Self::cleanup_incomplete)); running it again
    /// finishes the job, except that shared files of a checkpoint whose metadata was
    /// already deleted are then left in place.
    pub async fn retain(&self, job: &str, keep: usize) -> Result<RetentionPlan, CheckpointError> {
        if keep == 0 {
            return Err(CheckpointError::Misconfigured {
                url: self.location(),
                reason: "retention must keep at least one completed checkpoint".into(),
            });
        }
        let shared_dir = layout::shared_dir(job)?;
        let mut candidates = Vec::new();
        let mut reported = Vec::new();
        for checkpoint in self.list_checkpoints(job).await? {
            let shared = match self.read_metadata(job, checkpoint).await {
                Ok(metadata) => Some(shared_references(&shared_dir, &metadata)),
                Err(CheckpointError::NotFound { .. }) => continue,
                Err(CheckpointError::CorruptMetadata { object, reason }) => {
                    if self.first_report_of_unreadable(job, checkpoint) {
                        tracing::warn!(job, checkpoint = checkpoint.get(), %object, %reason,
                            "retention: unreadable checkpoint metadata; its shared files are kept");
                        reported.push(checkpoint);
                    }
                    None
                }
                Err(e) => return Err(e),
            };
            candidates.push(RetentionCandidate { checkpoint, shared });
        }
        let mut plan = plan_retention(&candidates, keep);
        plan.reported_unreadable = reported;
        for &checkpoint in &plan.remove {
            self.abort(job, checkpoint).await?;
        }
        for shared in &plan.delete_shared {
            let path = Path::parse(shared).map_err(|e| CheckpointError::InvalidName {
                what: "state handle path",
                name: shared.clone(),
                reason: e.to_string(),
            })?;
            self.delete(&path).await?;
        }
        Ok(plan)
    }

    /// Deletes the shared files of `job` that no complete checkpoint refers to, as
    /// far as `leftovers` allows (see [`Leftovers`]): left by checkpoints that failed,
    /// were aborted or were interrupted after uploading. Keeps everything when some
    /// checkpoint's metadata is unreadable (better a leak than a lost file). Returns
    /// how many files were deleted.
    ///
    /// Only call it while no checkpoint of this incarnation is in flight: an
    /// in-flight checkpoint's new files are not referred to by any metadata yet.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: calling again finishes the job.
    pub async fn delete_unreferenced_shared(
        &self,
        job: &str,
        leftovers: &Leftovers,
    ) -> Result<usize, CheckpointError> {
        let shared_dir = layout::shared_dir(job)?;
        let mut referenced = BTreeSet::new();
        for checkpoint in self.list_checkpoints(job).await? {
            match self.read_metadata(job, checkpoint).await {
                Ok(metadata) => referenced.extend(shared_references(&shared_dir, &metadata)),
                Err(CheckpointError::NotFound { .. }) => {}
                Err(CheckpointError::CorruptMetadata { .. }) => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        let mut deleted = 0;
        for relative in self.list_relative_deletable(&shared_dir, leftovers).await? {
            if !referenced.contains(relative.as_ref()) {
                self.delete(&relative).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(n: u64, shared: Option<&[&str]>) -> RetentionCandidate {
        RetentionCandidate {
            checkpoint: CheckpointId::new(n),
            shared: shared.map(|s| s.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn nothing_goes_while_there_are_few_checkpoints() {
        let plan = plan_retention(&[candidate(1, Some(&["a"]))], 3);
        assert_eq!(plan.keep, vec![CheckpointId::new(1)]);
        assert!(plan.remove.is_empty() && plan.delete_shared.is_empty());
    }

    #[test]
    fn unreadable_checkpoints_do_not_count_and_leak_rather_than_lose() {
        let plan = plan_retention(
            &[
                candidate(1, None),
                candidate(2, Some(&["a", "b"])),
                candidate(3, Some(&["b"])),
                candidate(4, None),
            ],
            1,
        );
        assert_eq!(plan.keep, vec![CheckpointId::new(3), CheckpointId::new(4)]);
        assert_eq!(
            plan.remove,
            vec![CheckpointId::new(1), CheckpointId::new(2)]
        );
        assert_eq!(plan.delete_shared, BTreeSet::from(["a".to_string()]));
    }

    proptest! {
        /// Whatever the references, no kept checkpoint loses a shared file, and every
        /// shared file that only removed checkpoints used is deleted.
        #[test]
        fn kept_checkpoints_keep_their_files(
            refs in prop::collection::vec(prop::collection::btree_set(0u8..12, 0..5), 1..20),
            keep in 1usize..6,
        ) {
            let candidates: Vec<_> = refs.iter().enumerate().map(|(i, r)| RetentionCandidate {
                checkpoint: CheckpointId::new(i as u64 + 1),
                shared: Some(r.iter().map(|s| s.to_string()).collect()),
            }).collect();
            let plan = plan_retention(&candidates, keep);
            prop_assert_eq!(plan.keep.len(), keep.min(candidates.len()));
            prop_assert_eq!(plan.keep.len() + plan.remove.len(), candidates.len());
            let kept_refs: BTreeSet<String> = candidates.iter()
                .filter(|c| plan.keep.contains(&c.checkpoint))
                .flat_map(|c| c.shared.clone().unwrap()).collect();
            let all_refs: BTreeSet<String> = candidates.iter()
                .flat_map(|c| c.shared.clone().unwrap()).collect();
            prop_assert!(plan.delete_shared.is_disjoint(&kept_refs));
            let expected: BTreeSet<String> = all_refs.difference(&kept_refs).cloned().collect();
            prop_assert_eq!(&plan.delete_shared, &expected);
        }
    }
}

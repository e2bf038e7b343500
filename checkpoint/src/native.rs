//! Native incremental checkpoints of RocksDB state, and local recovery.
//!
//! ```text
//!  task thread: flush record cache, RocksDB checkpoint (hard links) ─▶ <subtask>/checkpoints/chk-i
//!  tokio:   SST and OPTIONS-* files not uploaded before ─▶ <job>/shared/<uid>.<subtask>.<instance>.<owner>.<file>
//!           MANIFEST-*, CURRENT, WAL ─▶ <job>/chk-<n>/<uid>/<subtask>/native-<file>
//!           every file hard-linked         ─▶ <subtask>/local/chk-<n>/<i>   (local recovery)
//!  restore: <subtask>/local/chk-<n>/<i> if every file is there with its size, else download
//!           same key groups, on RocksDB ─▶ <subtask>/restore ─▶ opened as the subtask's instance
//!           otherwise ─▶ temporary directory ─▶ read back in the canonical form (any backend, any range)
//! ```
//!
//! An SST (or OPTIONS) file never changes once written and its name is unique within
//! one RocksDB instance, so a file uploaded once is referred to by every later checkpoint of the
//! same instance that still holds it. Safety of reuse as for canonical chunks: a
//! file live at checkpoint n+1 and uploaded at k ≤ n was live at every checkpoint
//! in between, so the newest completed checkpoint (which retention always keeps)
//! refers to it. Updates of the cache are applied in checkpoint order. An instance
//! opened from a checkpoint starts with that checkpoint's shared files in the cache
//! ([`NativeUploads::opened`]): the restored checkpoint refers to them.

use crate::metadata::{NativeFile, NativeKeyedHandle, StateHandle};
use crate::restore::{read_handle, OpenedInstance, Reader, RestoreError};
use crate::{CheckpointId, OperatorUid, StateWriter, UploadError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use weir_state::{KeyGroupRange, NativeSnapshot};

/// The directory of a subtask's local copies of its native checkpoints.
const LOCAL_DIR: &str = "local";

#[derive(Default)]
struct SubtaskFiles {
    last: Option<CheckpointId>,
    instance: u64,
    /// SST (and OPTIONS) file name → where it was uploaded.
    ssts: HashMap<String, StateHandle>,
}

/// The SST files the native checkpoints of one job attempt uploaded, per operator
/// subtask, for later checkpoints to refer to.
#[derive(Clone, Default)]
pub struct NativeUploads {
    inner: Arc<Mutex<HashMap<(OperatorUid, usize), SubtaskFiles>>>,
}

impl NativeUploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(OperatorUid, usize), SubtaskFiles>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (a new attempt opens new instances).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Records that a subtask opened `opened` as its instance: its shared files
    /// (SST, OPTIONS) are already uploaded, and the instance's first checkpoint
    /// refers to those it still holds. They stay safe to refer to as for files of
    /// the instance's own checkpoints: the restored checkpoint refers to them, and
    /// retention keeps it until a newer checkpoint completes.
    pub fn opened(&self, uid: &OperatorUid, subtask: usize, opened: &OpenedInstance) {
        let ssts = opened
            .files
            .iter()
            .filter(|f| is_immutable(&f.name))
            .map(|f| (f.name.clone(), f.handle.clone()))
            .collect();
        self.record(
            uid,
            subtask,
            opened.checkpoint,
            opened.instance.instance,
            ssts,
        );
    }

    /// The SST files of instance `instance` a subtask uploaded before.
    fn reusable(
        &self,
        uid: &OperatorUid,
        subtask: usize,
        instance: u64,
    ) -> HashMap<String, StateHandle> {
        match self.lock().get(&(uid.clone(), subtask)) {
            Some(files) if files.instance == instance => files.ssts.clone(),
            _ => HashMap::new(),
        }
    }

    /// Records the SST files checkpoint `checkpoint` of a subtask refers to.
    fn record(
        &self,
        uid: &OperatorUid,
        subtask: usize,
        checkpoint: CheckpointId,
        instance: u64,
        ssts: HashMap<String, StateHandle>,
    ) {
        let mut inner = self.lock();
        let files = inner.entry((uid.clone(), subtask)).or_default();
        if files.last == Some(checkpoint) && files.instance == instance {
            // Another handle of the same checkpoint.
            files.ssts.extend(ssts);
            return;
        }
        if files.last.is_some_and(|last| last >= checkpoint) {
            return;
        }
        *files = SubtaskFiles {
            last: Some(checkpoint),
            instance,
            ssts,
        };
    }
}

/// Whether a file of a RocksDB checkpoint never changes under its name within one
/// instance (SST and OPTIONS files), so it is uploaded once and shared; the MANIFEST
/// grows and `CURRENT` moves, so they are uploaded with every checkpoint.
fn is_immutable(name: &str) -> bool {
    name.ends_with(".sst") || name.starts_with("OPTIONS-")
}

/// Whether a file of a RocksDB checkpoint directory belongs to the checkpoint (not
/// the info log or a lock that opening it may leave).
fn is_checkpoint_file(name: &str) -> bool {
    !(name.starts_with("LOG") || name == "LOCK")
}

/// The local copy of native handle `index` of checkpoint `checkpoint` in a
/// subtask's state directory: `<subtask>/local/chk-<n>/<index>`.
pub(crate) fn local_copy(subtask_dir: &Path, checkpoint: CheckpointId, index: usize) -> PathBuf {
    subtask_dir
        .join(LOCAL_DIR)
        .join(crate::layout::checkpoint_dir_name(checkpoint))
        .join(index.to_string())
}

/// Uploads the native checkpoint of one operator subtask: the SST and OPTIONS files
/// `uploads` does not know yet as shared files, the rest as private files of the checkpoint;
/// keeps a local copy (hard links) for local recovery. Returns the handle and the
/// bytes of state it refers to.
///
/// Every table of `tables` must come from one RocksDB checkpoint (see
/// [`by_checkpoint`]); `index` numbers the handles of one subtask's checkpoint.
///
/// # Errors
/// [`UploadError::Local`] or [`UploadError::Storage`] for a file that cannot be
/// listed, read or uploaded, naming it; [`UploadError::Tables`] if `tables` is empty
/// or comes from several RocksDB checkpoints.
///
/// # Cancel safety
/// Cancel-safe: uploads are create-if-absent or private to the checkpoint.
pub async fn upload(
    writer: &mut StateWriter,
    uploads: &NativeUploads,
    uid: &OperatorUid,
    key_groups: KeyGroupRange,
    index: usize,
    tables: Vec<NativeSnapshot>,
) -> Result<(NativeKeyedHandle, u64), UploadError> {
    let Some(first) = tables.first() else {
        return Err(UploadError::Tables {
            uid: uid.clone(),
            reason: "no table to checkpoint natively".into(),
        });
    };
    let checkpoint = first.checkpoint.clone();
    // The task thread only reserved the RocksDB checkpoint: it is taken here.
    let taking = checkpoint.clone();
    tokio::task::spawn_blocking(move || taking.materialize())
        .await
        .map_err(UploadError::Interrupted)??;
    let dir = checkpoint.path().to_path_buf();
    if let Some(other) = tables
        .iter()
        .find(|t| !Arc::ptr_eq(&t.checkpoint, &checkpoint))
    {
        return Err(UploadError::Tables {
            uid: uid.clone(),
            reason: format!(
                "tables `{}` and `{}` were frozen in different RocksDB checkpoints ({} and {}): upload them as separate native handles",
                first.table.state,
                other.table.state,
                dir.display(),
                other.checkpoint.path().display()
            ),
        });
    }
    let subtask = writer.subtask();
    let instance = checkpoint.instance();
    let known = uploads.reusable(uid, subtask, instance);
    let mut names = Vec::new();
    let listing = |source| UploadError::Local {
        what: format!("cannot list RocksDB checkpoint {}", dir.display()),
        source,
    };
    let mut entries = tokio::fs::read_dir(&dir).await.map_err(listing)?;
    while let Some(entry) = entries.next_entry().await.map_err(listing)? {
        if let Some(name) = entry.file_name().to_str() {
            if is_checkpoint_file(name) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut ssts = HashMap::new();
    let mut state_bytes = 0;
    for name in names {
        let handle = match known.get(&name) {
            Some(handle) if is_immutable(&name) => handle.clone(),
            _ => {
                let path = dir.join(&name);
                if is_immutable(&name) {
                    let key = match writer.owner() {
                        "" => format!("{uid}.{subtask}.{instance:016x}.{name}"),
                        owner => format!("{uid}.{subtask}.{instance:016x}.{owner}.{name}"),
                    };
                    writer.shared_file(&key, &path).await?
                } else {
                    let reading = |source| UploadError::Local {
                        what: format!("cannot read {}", path.display()),
                        source,
                    };
                    let data = tokio::fs::read(&path).await.map_err(reading)?;
                    writer.private(uid, &format!("native-{name}"), data).await?
                }
            }
        };
        state_bytes += handle.size;
        if is_immutable(&name) {
            ssts.insert(name.clone(), handle.clone());
        }
        files.push(NativeFile { name, handle });
    }
    uploads.record(uid, subtask, writer.checkpoint(), instance, ssts);
    if let Some(subtask_dir) = dir.parent().and_then(Path::parent) {
        let local = local_copy(subtask_dir, writer.checkpoint(), index);
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        let linked = tokio::task::spawn_blocking(move || link_all(&dir, &local, &names)).await;
        match linked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("no local copy of the checkpoint for local recovery: {e}"),
            Err(e) => tracing::warn!("no local copy of the checkpoint for local recovery: {e}"),
        }
    }
    let handle = NativeKeyedHandle {
        key_groups,
        files,
        tables: tables.into_iter().map(|t| t.table).collect(),
    };
    Ok((handle, state_bytes))
}

/// Groups frozen tables by the RocksDB checkpoint they were frozen in: operators
/// that flush every table before freezing them share one; otherwise each group
/// becomes a handle of its own.
pub fn by_checkpoint(tables: Vec<NativeSnapshot>) -> Vec<Vec<NativeSnapshot>> {
    let mut groups: Vec<Vec<NativeSnapshot>> = Vec::new();
    for table in tables {
        match groups
            .iter_mut()
            .find(|g| Arc::ptr_eq(&g[0].checkpoint, &table.checkpoint))
        {
            Some(group) => group.push(table),
            None => groups.push(vec![table]),
        }
    }
    groups
}

/// Hard-links (or, across file systems, copies) the files `names` of `from` into a
/// fresh directory `to`.
///
/// # Errors
/// [`UploadError::Local`] naming the directory or file that cannot be cleared,
/// created or copied.
fn link_all(from: &Path, to: &Path, names: &[String]) -> Result<(), UploadError> {
    let local = |what: String| move |source| UploadError::Local { what, source };
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(local(format!("cannot clear {}", to.display())))?;
    }
    std::fs::create_dir_all(to).map_err(local(format!("cannot create {}", to.display())))?;
    for name in names {
        let (src, dst) = (from.join(name), to.join(name));
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(local(format!(
                "cannot copy {} to {}",
                src.display(),
                dst.display()
            )))?;
        }
    }
    Ok(())
}

/// Removes the local copies of checkpoints older than `newest` (the newest
/// completed checkpoint, whose copy is kept for local recovery) under every subtask
/// directory of `job_dir` (`<job_dir>/<uid>/<subtask>/local/chk-<n>`).
pub fn prune_local(job_dir: &Path, newest: CheckpointId) {
    let Ok(operators) = std::fs::read_dir(job_dir) else {
        return;
    };
    for operator in operators.flatten() {
        let Ok(subtasks) = std::fs::read_dir(operator.path()) else {
            continue;
        };
        for subtask in subtasks.flatten() {
            let Ok(copies) = std::fs::read_dir(subtask.path().join(LOCAL_DIR)) else {
                continue;
            };
            for copy in copies.flatten() {
                let old = copy
                    .file_name()
                    .to_str()
                    .and_then(crate::layout::parse_checkpoint_dir)
                    .is_some_and(|id| id < newest);
                if old {
                    if let Err(e) = std::fs::remove_dir_all(copy.path()) {
                        tracing::warn!(
                            "cannot remove old local checkpoint copy {}: {e}",
                            copy.path().display()
                        );
                    }
                }
            }
        }
    }
}

/// Why `local` cannot stand in for `handle`'s files: the first file that is missing
/// or has another size than recorded. `None` when it holds every file.
fn local_copy_mismatch(local: &Path, handle: &NativeKeyedHandle) -> Option<String> {
    handle.files.iter().find_map(|file| {
        let path = local.join(&file.name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == file.handle.size => None,
            Ok(meta) => Some(format!(
                "{} has {} bytes, the checkpoint recorded {}",
                path.display(),
                meta.len(),
                file.handle.size
            )),
            Err(e) => Some(format!("{}: {e}", path.display())),
        }
    })
}

/// Where a native checkpoint was materialized from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The subtask's local copy.
    Local,
    /// This process's standby copy of the subtask (kept while another process ran
    /// it).
    Standby,
    /// The checkpoint storage.
    Download,
    /// The checkpoint storage, except `reused` bytes of SST files hard-linked from
    /// this process's standby copy of an older checkpoint of the subtask.
    PartlyStandby {
        /// Bytes linked from the standby copy.
        reused: u64,
    },
}

impl Source {
    /// Where the files came from, for the restore's log line.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Local => "the local copy",
            Self::Standby => "the standby copy",
            Self::Download => "the checkpoint storage",
            Self::PartlyStandby { .. } => "the checkpoint storage and an older standby copy",
        }
    }

    /// Of `bytes` restored from this source: (from a local or standby copy, of
    /// which from a standby copy, downloaded).
    pub(crate) fn split(self, bytes: u64) -> (u64, u64, u64) {
        match self {
            Self::Local => (bytes, 0, 0),
            Self::Standby => (bytes, bytes, 0),
            Self::Download => (0, 0, bytes),
            Self::PartlyStandby { reused } => (reused, reused, bytes.saturating_sub(reused)),
        }
    }
}

/// Puts the files of `handle` into the fresh directory `into`: hard links to the
/// local copy `local`, or else to the standby copy `standby`, when it holds every
/// file with its recorded size; otherwise downloaded. Returns where they came from.
///
/// # Errors
/// A file that cannot be downloaded or written, naming it.
pub(crate) async fn materialize(
    reader: &Reader<'_>,
    handle: &NativeKeyedHandle,
    local: Option<&Path>,
    standby: Option<&Path>,
    into: &Path,
) -> Result<Source, RestoreError> {
    let io = |what: String, source: std::io::Error| RestoreError::Local { path: what, source };
    let copies = [(local, Source::Local), (standby, Source::Standby)];
    for (copy, source) in copies {
        let Some(copy) = copy else { continue };
        if !copy.exists() {
            continue;
        }
        match local_copy_mismatch(copy, handle) {
            None => {
                let names: Vec<String> = handle.files.iter().map(|f| f.name.clone()).collect();
                match link_all(copy, into, &names) {
                    Ok(()) => return Ok(source),
                    Err(e) => {
                        tracing::warn!("local copy {} unusable ({e}): not using it", copy.display())
                    }
                }
            }
            Some(reason) => tracing::info!(
                "local copy {} does not match the checkpoint ({reason}): not using it",
                copy.display()
            ),
        }
    }
    if into.exists() {
        std::fs::remove_dir_all(into).map_err(|e| io(into.display().to_string(), e))?;
    }
    std::fs::create_dir_all(into).map_err(|e| io(into.display().to_string(), e))?;
    // A standby copy of an older checkpoint (its refresh was still running, or was
    // skipped) still holds most SST files: those are linked, the rest downloaded.
    let older = standby.map(older_copies).unwrap_or_default();
    let copied = fill(reader, handle, &older, into).await?;
    Ok(if copied.linked > 0 {
        Source::PartlyStandby {
            reused: copied.linked,
        }
    } else {
        Source::Download
    })
}

/// Puts every file of `handle` into the existing directory `into`: the SST and
/// OPTIONS files one of `older` (other copies of the handle, newest first) holds
/// with their recorded size are hard-linked (or copied), the others downloaded.
async fn fill(
    reader: &Reader<'_>,
    handle: &NativeKeyedHandle,
    older: &[PathBuf],
    into: &Path,
) -> Result<StandbyCopied, RestoreError> {
    let mut copied = StandbyCopied::default();
    for file in &handle.files {
        let path = into.join(&file.name);
        let reusable = is_immutable(&file.name)
            .then(|| {
                older
                    .iter()
                    .map(|dir| dir.join(&file.name))
                    .find(|old| std::fs::metadata(old).is_ok_and(|m| m.len() == file.handle.size))
            })
            .flatten();
        if let Some(old) = reusable {
            if std::fs::hard_link(&old, &path).is_ok() || std::fs::copy(&old, &path).is_ok() {
                copied.linked += file.handle.size;
                continue;
            }
        }
        let data = read_handle(reader, &file.handle).await?;
        tokio::fs::write(&path, data)
            .await
            .map_err(|source| RestoreError::Local {
                path: path.display().to_string(),
                source,
            })?;
        copied.downloaded += file.handle.size;
    }
    Ok(copied)
}

/// The other checkpoints' copies of the same handle beside `copy`
/// (`<subtask>/chk-<n>/<index>`), newest first.
fn older_copies(copy: &Path) -> Vec<PathBuf> {
    let (Some(index), Some(checkpoint_dir)) = (copy.file_name(), copy.parent()) else {
        return Vec::new();
    };
    let Some(subtask_dir) = checkpoint_dir.parent() else {
        return Vec::new();
    };
    let mut found: Vec<(CheckpointId, PathBuf)> = std::fs::read_dir(subtask_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let id = entry
                .file_name()
                .to_str()
                .and_then(crate::layout::parse_checkpoint_dir)?;
            Some((id, entry.path().join(index)))
        })
        .filter(|(_, dir)| dir != copy && dir.is_dir())
        .collect();
    found.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// The standby copy of native handle `index` of checkpoint `checkpoint` of subtask
/// `subtask` of `uid`, under a process's standby directory of a job:
/// `<standby_root>/<uid>/<subtask>/chk-<n>/<index>`.
pub fn standby_copy(
    standby_root: &Path,
    uid: &str,
    subtask: usize,
    checkpoint: CheckpointId,
    index: usize,
) -> PathBuf {
    standby_root
        .join(crate::layout::path_segment(uid))
        .join(subtask.to_string())
        .join(crate::layout::checkpoint_dir_name(checkpoint))
        .join(index.to_string())
}

/// What [`keep_standby`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StandbyCopied {
    /// Bytes hard-linked from the previous standby copy (files it already held).
    pub linked: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
}

/// Keeps a warm copy of native handle `handle` (the `index`-th of subtask `subtask`
/// of `uid` in checkpoint `checkpoint`) for a process that does not run the
/// subtask, so that it opens local files if the subtask fails over to it:
/// incrementally, hard-linking the SST and OPTIONS files an older standby copy of
/// the subtask already holds and downloading the others into a fresh directory
/// that is renamed into place when complete. [`drop_older_standby`] removes the
/// older copies once every handle of the checkpoint is kept.
///
/// # Errors
/// A file that cannot be downloaded, linked or written, naming it; the copy is then
/// incomplete and a restore does not use it.
pub async fn keep_standby(
    reader: &Reader<'_>,
    handle: &NativeKeyedHandle,
    standby_root: &Path,
    uid: &str,
    subtask: usize,
    checkpoint: CheckpointId,
    index: usize,
) -> Result<StandbyCopied, RestoreError> {
    let io = |what: &Path, source: std::io::Error| RestoreError::Local {
        path: what.display().to_string(),
        source,
    };
    let target = standby_copy(standby_root, uid, subtask, checkpoint, index);
    if target.exists() && local_copy_mismatch(&target, handle).is_none() {
        return Ok(StandbyCopied::default());
    }
    let subtask_dir = target
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| standby_root.to_path_buf());
    // The other copies of this handle, newest first: where files are linked from.
    let older = older_copies(&target);
    let partial = subtask_dir.join(format!(
        ".partial-{}-{index}",
        crate::layout::checkpoint_dir_name(checkpoint)
    ));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io(&partial, e))?;
    let copied = fill(reader, handle, &older, &partial).await?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| io(&target, e))?;
    }
    std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
    Ok(copied)
}

/// Removes the standby copies of subtask `subtask` of `uid` older than `newest`
/// (once every handle of `newest` is kept).
pub fn drop_older_standby(standby_root: &Path, uid: &str, subtask: usize, newest: CheckpointId) {
    let dir = standby_root
        .join(crate::layout::path_segment(uid))
        .join(subtask.to_string());
    let Ok(copies) = std::fs::read_dir(&dir) else {
        return;
    };
    for copy in copies.flatten() {
        let name = copy.file_name().to_string_lossy().into_owned();
        let old = crate::layout::parse_checkpoint_dir(&name).is_some_and(|id| id < newest)
            || name.starts_with(".partial-");
        if old {
            if let Err(e) = std::fs::remove_dir_all(copy.path()) {
                tracing::warn!(
                    "cannot remove old standby copy {}: {e}",
                    copy.path().display()
                );
            }
        }
    }
}

/// Removes the standby copies under `standby_root` of subtasks not in `keep` (by
/// operator uid and subtask): this process no longer stands by for them.
pub fn prune_standby(standby_root: &Path, keep: &std::collections::BTreeSet<(String, usize)>) {
    let keep: std::collections::BTreeSet<(String, String)> = keep
        .iter()
        .map(|(uid, subtask)| (crate::layout::path_segment(uid), subtask.to_string()))
        .collect();
    let Ok(operators) = std::fs::read_dir(standby_root) else {
        return;
    };
    for operator in operators.flatten() {
        let name = operator.file_name().to_string_lossy().into_owned();
        let Ok(subtasks) = std::fs::read_dir(operator.path()) else {
            continue;
        };
        for subtask in subtasks.flatten() {
            let index = subtask.file_name().to_string_lossy().into_owned();
            if !keep.contains(&(name.clone(), index)) {
                if let Err(e) = std::fs::remove_dir_all(subtask.path()) {
                    tracing::warn!(
                        "cannot remove standby copies {}: {e}",
                        subtask.path().display()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(name: &str) -> StateHandle {
        StateHandle {
            path: format!("job/shared/{name}"),
            size: 1,
        }
    }

    fn files(names: &[&str]) -> HashMap<String, StateHandle> {
        names.iter().map(|n| (n.to_string(), handle(n))).collect()
    }

    /// Files are reused within one instance only, from the newest checkpoint
    /// recorded; a late record of an older checkpoint changes nothing; two handles
    /// of one checkpoint add up.
    #[test]
    fn uploads_are_reused_per_instance_in_checkpoint_order() {
        let uploads = NativeUploads::default();
        let uid = OperatorUid::new("count");
        uploads.record(&uid, 0, CheckpointId::new(2), 7, files(&["1.sst", "2.sst"]));
        uploads.record(&uid, 0, CheckpointId::new(2), 7, files(&["3.sst"]));
        assert_eq!(uploads.reusable(&uid, 0, 7).len(), 3);
        assert!(uploads.reusable(&uid, 0, 8).is_empty(), "another instance");
        assert!(uploads.reusable(&uid, 1, 7).is_empty(), "another subtask");
        uploads.record(&uid, 0, CheckpointId::new(1), 7, files(&["0.sst"]));
        assert!(!uploads.reusable(&uid, 0, 7).contains_key("0.sst"));
        uploads.record(&uid, 0, CheckpointId::new(3), 7, files(&["3.sst", "4.sst"]));
        let mut names: Vec<String> = uploads.reusable(&uid, 0, 7).into_keys().collect();
        names.sort();
        assert_eq!(names, ["3.sst", "4.sst"]);
        uploads.clear();
        assert!(uploads.reusable(&uid, 0, 7).is_empty());
    }

    /// An instance opened from a checkpoint starts with the checkpoint's shared
    /// files (not its private MANIFEST or CURRENT) as already uploaded; its own
    /// checkpoints then replace them as usual.
    #[test]
    fn an_opened_instance_refers_to_the_shared_files_of_its_checkpoint() {
        let uid = OperatorUid::new("count");
        let file = |name: &str, path: &str| NativeFile {
            name: name.into(),
            handle: StateHandle {
                path: path.into(),
                size: 10,
            },
        };
        let opened = OpenedInstance {
            instance: weir_state::RestoredInstance {
                dir: PathBuf::from("restore"),
                key_groups: KeyGroupRange { start: 0, end: 63 },
                tables: Vec::new(),
                instance: 9,
            },
            checkpoint: CheckpointId::new(4),
            files: vec![
                file(
                    "000007.sst",
                    "job/shared/count.0.0000000000000003.000007.sst",
                ),
                file(
                    "OPTIONS-000005",
                    "job/shared/count.0.0000000000000003.OPTIONS-000005",
                ),
                file(
                    "MANIFEST-000006",
                    "job/chk-4/count/0/native-MANIFEST-000006",
                ),
                file("CURRENT", "job/chk-4/count/0/native-CURRENT"),
            ],
        };
        let uploads = NativeUploads::default();
        uploads.opened(&uid, 0, &opened);
        let known = uploads.reusable(&uid, 0, 9);
        let mut names: Vec<&String> = known.keys().collect();
        names.sort();
        assert_eq!(names, ["000007.sst", "OPTIONS-000005"]);
        assert_eq!(
            known["000007.sst"].path,
            "job/shared/count.0.0000000000000003.000007.sst"
        );
        assert!(uploads.reusable(&uid, 0, 3).is_empty(), "the old instance");
        uploads.record(&uid, 0, CheckpointId::new(5), 9, files(&["000008.sst"]));
        assert_eq!(uploads.reusable(&uid, 0, 9).len(), 1);
    }

    #[test]
    fn only_sst_and_options_files_are_shared() {
        assert!(is_immutable("000012.sst"));
        assert!(is_immutable("OPTIONS-000009"));
        assert!(!is_immutable("MANIFEST-000005"));
        assert!(!is_immutable("CURRENT"));
        assert!(!is_immutable("000013.log"));
        assert!(!is_checkpoint_file("LOG"));
        assert!(!is_checkpoint_file("LOG.old.1"));
        assert!(is_checkpoint_file("CURRENT"));
    }
}

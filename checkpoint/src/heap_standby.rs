//! Standby copies of heap state: the objects of a subtask's keyed state, kept on
//! the worker that takes the subtask over if its own is lost (cluster mode,
//! `standbys: N`), so that its restore reads them from local disk.
//!
//! ```text
//!  after checkpoint n completes: keyed objects of (uid, subtask) ─▶ <standby root>/<uid>/<subtask>/heap/<object path, escaped>
//!                                (downloaded once; an incremental checkpoint's older objects are already there)
//!  restore:  a copy of the object with its recorded size? read it : read the storage
//! ```
//!
//! An object of the checkpoint storage never changes once written, so a copy with
//! the recorded size is the object. Copies are written to a temporary name and
//! renamed into place, so a copy is whole or absent.

use crate::metadata::{KeyedStateHandle, StateHandle};
use crate::native::StandbyCopied;
use crate::restore::{read_handle, Reader, RestoreError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The directory of the heap standby copies of subtask `subtask` of `uid`.
fn copies_dir(standby_root: &Path, uid: &str, subtask: usize) -> PathBuf {
    standby_root
        .join(crate::layout::path_segment(uid))
        .join(subtask.to_string())
        .join("heap")
}

/// The object path as one file name: `%` and `/` escaped, so that two paths never
/// share a name.
fn file_name(handle: &StateHandle) -> String {
    handle.path.replace('%', "%25").replace('/', "%2F")
}

/// The standby copy of the object `handle` of subtask `subtask` of `uid`, if one
/// with the recorded size is kept under `standby_root`.
pub fn copy_of(
    standby_root: &Path,
    uid: &str,
    subtask: usize,
    handle: &StateHandle,
) -> Option<PathBuf> {
    let path = copies_dir(standby_root, uid, subtask).join(file_name(handle));
    let size = std::fs::metadata(&path).ok()?.len();
    (size == handle.size).then_some(path)
}

/// Keeps copies of the objects of `keyed` (the keyed state of subtask `subtask` of
/// `uid` in one checkpoint) under `standby_root`: downloads those it lacks, and
/// removes copies of objects the checkpoint no longer refers to.
///
/// # Errors
/// An object that cannot be read, or a copy that cannot be written, naming it; the
/// copies made before stay (each is whole).
pub async fn keep(
    reader: &Reader<'_>,
    keyed: &[KeyedStateHandle],
    standby_root: &Path,
    uid: &str,
    subtask: usize,
) -> Result<StandbyCopied, RestoreError> {
    let io = |what: &Path, source: std::io::Error| RestoreError::Local {
        path: what.display().to_string(),
        source,
    };
    let dir = copies_dir(standby_root, uid, subtask);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let mut copied = StandbyCopied::default();
    let mut current = BTreeSet::new();
    for handle in keyed.iter().map(|k| &k.handle) {
        let name = file_name(handle);
        current.insert(name.clone());
        if copy_of(standby_root, uid, subtask, handle).is_some() {
            copied.linked += handle.size;
            continue;
        }
        let bytes = read_handle(reader, handle).await?;
        let partial = dir.join(format!(".partial-{name}"));
        let target = dir.join(&name);
        std::fs::write(&partial, &bytes).map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
        copied.downloaded += handle.size;
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !current.contains(&name) {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(
                        "cannot remove old standby copy {}: {e}",
                        entry.path().display()
                    );
                }
            }
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_map_to_distinct_file_names() {
        let name = |path: &str| {
            file_name(&StateHandle {
                path: path.into(),
                size: 1,
            })
        };
        assert_eq!(
            name("job/chk-3/op/1/keyed-0"),
            "job%2Fchk-3%2Fop%2F1%2Fkeyed-0"
        );
        assert_ne!(name("a/b"), name("a%2Fb"));
    }
}

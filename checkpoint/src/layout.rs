//! Where checkpoint objects live, relative to the checkpoint root.
//!
//! ```text
//! <root>/<job>/chk-<n>/_metadata                  written last; the checkpoint exists iff it does
//! <root>/<job>/chk-<n>/<uid>/<subtask>/<file>     private state of checkpoint n
//! <root>/<job>/shared/<key>                       files shared by incremental checkpoints
//! <savepoint-dir>/<name>/_metadata                a self-contained savepoint ...
//! <savepoint-dir>/<name>/<uid>/<subtask>/<file>   ... and its state
//! ```
//!
//! Every function here is pure. Job names, operator uids, file names and shared keys
//! are arbitrary non-empty text: each becomes one path segment, percent-encoded where
//! object stores dislike a character (`/`, `%`, `#`, ...), so names cannot escape their
//! directory. Savepoint names are stricter because users type their paths.
//!
//! ```
//! use weir_checkpoint::layout;
//! use weir_checkpoint::{CheckpointId, OperatorUid};
//! let p = layout::private_state_path("orders", CheckpointId::new(3), &OperatorUid::new("agg"), 1, "keyed")?;
//! assert_eq!(p.as_ref(), "orders/chk-3/agg/1/keyed");
//! assert_eq!(layout::metadata_path("orders", CheckpointId::new(3))?.as_ref(), "orders/chk-3/_metadata");
//! assert_eq!(layout::shared_path("orders", "sst-000042")?.as_ref(), "orders/shared/sst-000042");
//! assert_eq!(layout::parse_checkpoint_dir("chk-3"), Some(CheckpointId::new(3)));
//! # Ok::<(), weir_checkpoint::CheckpointError>(())
//! ```

use crate::{CheckpointError, CheckpointId, OperatorUid};
use object_store::path::{Path, PathPart};

/// The name of the metadata object of a checkpoint or savepoint.
pub const METADATA_FILE: &str = "_metadata";

/// The directory, under a job's directory, of files shared between checkpoints.
pub const SHARED_DIR: &str = "shared";

/// The prefix of checkpoint directory names: `chk-<n>`.
pub const CHECKPOINT_DIR_PREFIX: &str = "chk-";

/// The directory of a checkpoint: `chk-<n>`.
pub fn checkpoint_dir_name(checkpoint: CheckpointId) -> String {
    format!("{CHECKPOINT_DIR_PREFIX}{}", checkpoint.get())
}

/// The checkpoint number of a directory named `chk-<n>`, if it is one.
pub fn parse_checkpoint_dir(segment: &str) -> Option<CheckpointId> {
    let digits = segment.strip_prefix(CHECKPOINT_DIR_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok().map(CheckpointId::new)
}

/// One path segment for a free-text name, or an error if it is empty or holds
/// control characters.
pub(crate) fn segment<'a>(
    what: &'static str,
    name: &'a str,
) -> Result<PathPart<'a>, CheckpointError> {
    if name.is_empty() {
        return Err(CheckpointError::InvalidName {
            what,
            name: name.to_owned(),
            reason: "must not be empty".into(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(CheckpointError::InvalidName {
            what,
            name: name.to_owned(),
            reason: "must not contain control characters".into(),
        });
    }
    Ok(PathPart::from(name))
}

/// Checks a savepoint name: 1–255 characters from `A-Z a-z 0-9 . _ -`, not starting
/// with a dot, so that `<dir>/<name>` is the same string as a path and as a URL.
///
/// # Errors
/// [`CheckpointError::InvalidName`] naming the rule that is broken.
pub fn validate_savepoint_name(name: &str) -> Result<(), CheckpointError> {
    let reason = if name.is_empty() || name.len() > 255 {
        Some("must be 1 to 255 characters long")
    } else if name.starts_with('.') {
        Some("must not start with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may contain only ASCII letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CheckpointError::InvalidName {
            what: "savepoint name",
            name: name.to_owned(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

/// `<job>`: the job's directory.
///
/// # Errors
/// [`CheckpointError::InvalidName`] for an empty job name or one with control characters.
pub fn job_dir(job: &str) -> Result<Path, CheckpointError> {
    Ok(Path::ROOT.join(segment("job name", job)?))
}

/// `<job>/chk-<n>`: the directory of checkpoint `n`.
///
/// # Errors
/// As [`job_dir`].
pub fn checkpoint_dir(job: &str, checkpoint: CheckpointId) -> Result<Path, CheckpointError> {
    Ok(job_dir(job)?.join(PathPart::from(checkpoint_dir_name(checkpoint))))
}

/// `<job>/chk-<n>/_metadata`.
///
/// # Errors
/// As [`job_dir`].
pub fn metadata_path(job: &str, checkpoint: CheckpointId) -> Result<Path, CheckpointError> {
    Ok(checkpoint_dir(job, checkpoint)?.join(METADATA_FILE))
}

/// `<job>/chk-<n>/<uid>/<subtask>/<file>`: a private state file of checkpoint `n`.
///
/// # Errors
/// [`CheckpointError::InvalidName`] for an empty or control-character job name, uid or
/// file name.
pub fn private_state_path(
    job: &str,
    checkpoint: CheckpointId,
    uid: &OperatorUid,
    subtask: usize,
    file: &str,
) -> Result<Path, CheckpointError> {
    Ok(checkpoint_dir(job, checkpoint)?
        .join(segment("operator uid", uid.as_str())?)
        .join(PathPart::from(subtask.to_string()))
        .join(segment("state file name", file)?))
}

/// `<job>/shared`: the directory of files shared by incremental checkpoints.
///
/// # Errors
/// As [`job_dir`].
pub fn shared_dir(job: &str) -> Result<Path, CheckpointError> {
    Ok(job_dir(job)?.join(SHARED_DIR))
}

/// `<job>/shared/<key>`: a shared file, named by its content key.
///
/// # Errors
/// [`CheckpointError::InvalidName`] for an empty or control-character job name or key.
pub fn shared_path(job: &str, content_key: &str) -> Result<Path, CheckpointError> {
    Ok(shared_dir(job)?.join(segment("shared content key", content_key)?))
}

/// Whether `path` (relative to the checkpoint root) is a shared file of `job`.
pub fn is_shared(job_shared_dir: &Path, path: &Path) -> bool {
    path.prefix_matches(job_shared_dir) && path.parts_count() == job_shared_dir.parts_count() + 1
}

/// Where a state handle of a checkpoint of `job` goes inside a savepoint directory:
/// private state of checkpoint `checkpoint` keeps `<uid>/<subtask>/<file>`; anything
/// else under the job (shared files, files of earlier checkpoints) keeps its path
/// relative to the job directory (`shared/<key>`, `chk-<m>/<uid>/<subtask>/<file>`).
/// The three shapes have 3, 2 and 4 segments, so they cannot collide.
///
/// Returns `None` for a path outside the job's directory.
pub fn savepoint_relative(job_dir: &Path, checkpoint_dir: &Path, path: &Path) -> Option<Path> {
    if let Some(rest) = path.prefix_match(checkpoint_dir) {
        let rest: Path = rest.collect();
        if rest.parts_count() == 3 {
            return Some(rest);
        }
    }
    let rest: Path = path.prefix_match(job_dir)?.collect();
    (!rest.is_root()).then_some(rest)
}

/// A name made safe as one local directory name (the RocksDB directories of a job
/// and of its operator subtasks, `<rocksdb dir>/<job>/<uid>/<subtask>`): anything
/// but letters, digits, `-`, `_` and `.` becomes `_`, and the names `""`, `.` and
/// `..` get a leading `_`.
///
/// ```
/// use weir_checkpoint::layout::path_segment;
/// assert_eq!(path_segment("orders/eu"), "orders_eu");
/// assert_eq!(path_segment(".."), "_..");
/// ```
pub fn path_segment(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.as_str() {
        "" | "." | ".." => format!("_{safe}"),
        _ => safe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directory_names_stay_one_segment() {
        assert_eq!(path_segment("count-1_a.b"), "count-1_a.b");
        assert_eq!(path_segment("a/b\\c d"), "a_b_c_d");
        assert_eq!(path_segment("Zähler"), "Z_hler");
        assert_eq!(path_segment(""), "_");
        assert_eq!(path_segment("."), "_.");
        assert_eq!(path_segment(".."), "_..");
        assert_eq!(path_segment("..."), "...");
    }

    #[test]
    fn checkpoint_dirs_parse_only_canonical_numbers() {
        assert_eq!(parse_checkpoint_dir("chk-0"), Some(CheckpointId::new(0)));
        assert_eq!(parse_checkpoint_dir("chk-17"), Some(CheckpointId::new(17)));
        for bad in [
            "chk-",
            "chk-017",
            "chk--1",
            "chk-1a",
            "shared",
            "chk-99999999999999999999",
        ] {
            assert_eq!(parse_checkpoint_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_cannot_escape_their_segment() {
        let p = private_state_path(
            "a/b",
            CheckpointId::new(1),
            &OperatorUid::new(".."),
            0,
            "x%y#z",
        )
        .unwrap();
        assert_eq!(p.parts_count(), 5);
        assert_eq!(p.as_ref(), "a%2Fb/chk-1/%2E%2E/0/x%25y%23z");
        assert!(job_dir("").is_err());
        assert!(shared_path("job", "a\nb").is_err());
    }

    #[test]
    fn savepoint_names_are_strict() {
        validate_savepoint_name("sp-2024_01.final").unwrap();
        for bad in ["", ".hidden", "a/b", "a b", "ü"] {
            assert!(validate_savepoint_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn savepoint_relative_paths() {
        let job = job_dir("j").unwrap();
        let chk = checkpoint_dir("j", CheckpointId::new(5)).unwrap();
        let rel = |p: &str| savepoint_relative(&job, &chk, &Path::from(p)).map(|p| p.to_string());
        assert_eq!(rel("j/chk-5/op/0/f").as_deref(), Some("op/0/f"));
        assert_eq!(rel("j/shared/k").as_deref(), Some("shared/k"));
        assert_eq!(rel("j/chk-4/op/0/f").as_deref(), Some("chk-4/op/0/f"));
        assert_eq!(rel("other/chk-5/op/0/f"), None);
        assert!(is_shared(
            &shared_dir("j").unwrap(),
            &Path::from("j/shared/k")
        ));
        assert!(!is_shared(
            &shared_dir("j").unwrap(),
            &Path::from("j/chk-1/shared/0/k")
        ));
    }
}

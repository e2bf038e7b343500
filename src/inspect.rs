//! `weir checkpoints list|inspect|diff`: what the checkpoints and savepoints under a
//! storage hold, and how two of them differ.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use weir_checkpoint::metadata::{
    CheckpointMetadata, NativeKeyedHandle, OperatorState, SnapshotKind, SubtaskState,
};
use weir_checkpoint::{CheckpointError, CheckpointId, CheckpointStorage, StorageConfig};

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_time(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// Bytes in a human unit.
pub fn format_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn kind(kind: SnapshotKind) -> &'static str {
    match kind {
        SnapshotKind::Checkpoint => "checkpoint",
        SnapshotKind::Savepoint => "savepoint",
    }
}

/// One line per complete checkpoint of every job under `dir`.
///
/// # Errors
/// The storage cannot be opened or listed.
pub async fn list(dir: &str) -> Result<String, CheckpointError> {
    let storage = CheckpointStorage::open(&StorageConfig::new(dir)).await?;
    let mut out = String::new();
    let jobs = storage.list_jobs().await?;
    if jobs.is_empty() {
        let _ = writeln!(out, "no jobs under {}", storage.location());
    }
    for job in jobs {
        let checkpoints = storage.list_checkpoints(&job).await?;
        let _ = writeln!(
            out,
            "job `{job}`: {} complete checkpoints",
            checkpoints.len()
        );
        for id in checkpoints {
            match storage.read_metadata(&job, id).await {
                Ok(m) => {
                    let _ = writeln!(
                        out,
                        "  chk-{:<8} {:<10} {}  {} operators  {}",
                        id.get(),
                        kind(m.kind),
                        format_time(m.timestamp_ms),
                        m.operators.len(),
                        format_bytes(m.state_size())
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "  chk-{:<8} unreadable: {e}", id.get());
                }
            }
        }
    }
    Ok(out)
}

/// The metadata at `path`: a savepoint directory, or a checkpoint directory
/// `<root>/<job>/chk-<n>`.
///
/// # Errors
/// Nothing readable there, or the storage cannot be reached.
pub async fn inspect(path: &str) -> Result<String, CheckpointError> {
    Ok(describe(&load(path).await?))
}

/// What differs between the snapshots at `a` and `b` (savepoint or checkpoint
/// directories, as [`inspect`] takes them): see [`diff`].
///
/// # Errors
/// Nothing readable at one of them, or a storage cannot be reached.
pub async fn diff_paths(a: &str, b: &str) -> Result<String, CheckpointError> {
    Ok(diff(&load(a).await?, &load(b).await?))
}

/// The metadata of the savepoint or checkpoint directory `path`.
async fn load(path: &str) -> Result<CheckpointMetadata, CheckpointError> {
    let metadata = match CheckpointStorage::read_savepoint(&StorageConfig::new(path)).await {
        Ok(savepoint) => savepoint.metadata().clone(),
        Err(savepoint_error) => match checkpoint_dir(path) {
            Some((root, job, id)) => read_checkpoint(&root, &job, id).await?,
            None => return Err(savepoint_error),
        },
    };
    Ok(metadata)
}

/// The storage root, job and checkpoint of a checkpoint directory
/// `<root>/<job>/chk-<n>`.
pub(crate) fn checkpoint_dir(path: &str) -> Option<(String, String, CheckpointId)> {
    let trimmed = path.trim_end_matches('/');
    let (rest, dir) = trimmed.rsplit_once('/')?;
    let id = weir_checkpoint::layout::parse_checkpoint_dir(dir)?;
    let (root, job) = rest.rsplit_once('/')?;
    Some((root.to_string(), job.to_string(), id))
}

async fn read_checkpoint(
    root: &str,
    job: &str,
    id: CheckpointId,
) -> Result<CheckpointMetadata, CheckpointError> {
    let storage = CheckpointStorage::open(&StorageConfig::new(root)).await?;
    storage.read_metadata(job, id).await
}

/// A readable account of a snapshot's metadata.
pub fn describe(m: &CheckpointMetadata) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} of job `{}`, taken {}, max parallelism {}, state {}",
        kind(m.kind),
        m.checkpoint.get(),
        m.job,
        format_time(m.timestamp_ms),
        m.max_parallelism.get(),
        format_bytes(m.state_size())
    );
    for (uid, operator) in &m.operators {
        let _ = writeln!(
            out,
            "operator `{uid}`: parallelism {}",
            operator.parallelism
        );
        for (subtask, state) in &operator.subtasks {
            let mut line = format!("  subtask {subtask}:");
            if !state.keyed.is_empty() {
                let start = state.keyed.iter().map(|k| k.key_groups.start).min();
                let end = state.keyed.iter().map(|k| k.key_groups.end).max();
                let bytes: u64 = state.keyed.iter().map(|k| k.handle.size).sum();
                let shared = state
                    .keyed
                    .iter()
                    .filter(|k| k.handle.path.contains("/shared/"))
                    .count();
                let _ = write!(
                    line,
                    " keyed state, key groups {}-{}, {} objects ({shared} shared), {}",
                    start.unwrap_or(0),
                    end.unwrap_or(0),
                    state.keyed.len(),
                    format_bytes(bytes)
                );
            }
            for native in &state.native {
                let ssts = native
                    .files
                    .iter()
                    .filter(|f| f.name.ends_with(".sst"))
                    .count();
                let _ = write!(
                    line,
                    "{} native RocksDB checkpoint, key groups {}-{}, {} files ({ssts} SST), {} tables, {}",
                    if line.ends_with(':') { "" } else { ";" },
                    native.key_groups.start,
                    native.key_groups.end,
                    native.files.len(),
                    native.tables.len(),
                    format_bytes(native.size())
                );
            }
            if !state.operator.is_empty() {
                let bytes: u64 = state.operator.iter().map(|h| h.size).sum();
                let _ = write!(
                    line,
                    "{} operator state {}",
                    if line.ends_with(':') { "" } else { ";" },
                    format_bytes(bytes)
                );
            }
            if state.keyed.is_empty() && state.operator.is_empty() && state.native.is_empty() {
                line.push_str(" no state");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// What one subtask of one operator stored, as [`diff`] compares it.
#[derive(Default, PartialEq)]
struct Stored {
    /// The key groups of its keyed state (first, last), if any.
    key_groups: Option<(u16, u16)>,
    /// Bytes of keyed state (canonical objects and native RocksDB files).
    keyed: u64,
    /// Bytes of operator state.
    operator: u64,
    /// The keyed states named in the metadata (by chunk names and native tables).
    states: BTreeSet<String>,
}

impl Stored {
    fn of(state: &SubtaskState) -> Self {
        let ranges = state
            .keyed
            .iter()
            .map(|k| k.key_groups)
            .chain(state.native.iter().map(|n| n.key_groups));
        let key_groups = ranges.fold(None, |range: Option<(u16, u16)>, r| {
            Some(match range {
                None => (r.start, r.end),
                Some((start, end)) => (start.min(r.start), end.max(r.end)),
            })
        });
        let chunk_states = state
            .keyed
            .iter()
            .flat_map(|k| &k.chunks)
            .map(|chunk| weir_state::chunk_state(chunk).to_string());
        let native_states = state
            .native
            .iter()
            .flat_map(|n| &n.tables)
            .map(|t| t.state.clone());
        Self {
            key_groups,
            keyed: state.keyed.iter().map(|k| k.handle.size).sum::<u64>()
                + state
                    .native
                    .iter()
                    .map(NativeKeyedHandle::size)
                    .sum::<u64>(),
            operator: state.operator.iter().map(|h| h.size).sum(),
            states: chunk_states.chain(native_states).collect(),
        }
    }

    /// What differs from `other`, as `what this → other` items.
    fn changes(&self, other: &Self) -> Vec<String> {
        fn change<T: PartialEq>(
            changes: &mut Vec<String>,
            what: &str,
            (a, b): (&T, &T),
            show: impl Fn(&T) -> String,
        ) {
            if a != b {
                changes.push(format!("{what} {} → {}", show(a), show(b)));
            }
        }
        let groups =
            |g: &Option<(u16, u16)>| g.map_or("none".to_string(), |(s, e)| format!("{s}-{e}"));
        let states = |s: &BTreeSet<String>| {
            let names: Vec<&str> = s.iter().map(String::as_str).collect();
            format!("[{}]", names.join(", "))
        };
        let bytes = |b: &u64| format_bytes(*b);
        let mut changes = Vec::new();
        let c = &mut changes;
        change(
            c,
            "key groups",
            (&self.key_groups, &other.key_groups),
            groups,
        );
        change(c, "states", (&self.states, &other.states), states);
        change(c, "keyed state", (&self.keyed, &other.keyed), bytes);
        change(
            c,
            "operator state",
            (&self.operator, &other.operator),
            bytes,
        );
        changes
    }
}

/// A snapshot as `diff` names it: `checkpoint 7 of job `j``.
fn title(m: &CheckpointMetadata) -> String {
    format!("{} {} of job `{}`", kind(m.kind), m.checkpoint.get(), m.job)
}

/// What differs between snapshots `a` and `b`, one line a difference: operators
/// only in one of them, parallelism, and per subtask the key-group range, the
/// keyed states named, and the bytes of keyed and operator state. Operators and
/// subtasks alike in both are counted, not listed.
pub fn diff(a: &CheckpointMetadata, b: &CheckpointMetadata) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "a: {}\nb: {}", title(a), title(b));
    if a.max_parallelism != b.max_parallelism {
        let _ = writeln!(
            out,
            "max parallelism {} → {}",
            a.max_parallelism.get(),
            b.max_parallelism.get()
        );
    }
    let uids: BTreeSet<_> = a.operators.keys().chain(b.operators.keys()).collect();
    let mut alike = 0;
    for uid in uids {
        let (in_a, in_b) = match (a.operators.get(uid), b.operators.get(uid)) {
            (Some(x), Some(y)) => (x, y),
            (Some(_), None) => {
                let _ = writeln!(out, "operator `{uid}`: only in a");
                continue;
            }
            (None, _) => {
                let _ = writeln!(out, "operator `{uid}`: only in b");
                continue;
            }
        };
        let mut lines = Vec::new();
        if in_a.parallelism != in_b.parallelism {
            lines.push(format!(
                "  parallelism {} → {}",
                in_a.parallelism, in_b.parallelism
            ));
        }
        let subtasks: BTreeSet<_> = in_a.subtasks.keys().chain(in_b.subtasks.keys()).collect();
        for subtask in subtasks {
            let stored = |o: &OperatorState| o.subtasks.get(subtask).map(Stored::of);
            match (stored(in_a), stored(in_b)) {
                (Some(x), Some(y)) => {
                    let changes = x.changes(&y);
                    if !changes.is_empty() {
                        lines.push(format!("  subtask {subtask}: {}", changes.join("; ")));
                    }
                }
                (Some(_), None) => lines.push(format!("  subtask {subtask}: only in a")),
                (None, _) => lines.push(format!("  subtask {subtask}: only in b")),
            }
        }
        if lines.is_empty() {
            alike += 1;
        } else {
            let _ = writeln!(out, "operator `{uid}`:");
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let _ = writeln!(out, "{alike} operators alike");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot with operators `counts` (keyed, at `parallelism`) and `source`
    /// (operator state of `position_bytes`).
    fn snapshot(id: u64, parallelism: usize, position_bytes: u64) -> CheckpointMetadata {
        use weir_checkpoint::metadata::{KeyedStateHandle, StateHandle};
        use weir_checkpoint::OperatorUid;
        let mut m = CheckpointMetadata::new(
            "orders",
            CheckpointId::new(id),
            SnapshotKind::Checkpoint,
            0,
            weir_state::MaxParallelism::DEFAULT,
        );
        let max = weir_state::MaxParallelism::DEFAULT;
        for subtask in 0..parallelism {
            m.subtask_mut(&OperatorUid::new("counts"), subtask)
                .keyed
                .push(KeyedStateHandle {
                    key_groups: weir_state::KeyGroupRange::for_subtask(max, parallelism, subtask),
                    handle: StateHandle {
                        path: format!("orders/chk-{id}/counts/{subtask}"),
                        size: 1000,
                    },
                    chunks: vec![weir_state::chunk_name("counts", 1, 0)],
                });
        }
        m.subtask_mut(&OperatorUid::new("source"), 0)
            .operator
            .push(StateHandle {
                path: format!("orders/chk-{id}/source/0"),
                size: position_bytes,
            });
        m
    }

    #[test]
    fn a_diff_names_what_changed_and_counts_what_did_not() {
        let a = snapshot(1, 2, 40);
        assert_eq!(
            diff(&a, &a),
            "a: checkpoint 1 of job `orders`\nb: checkpoint 1 of job `orders`\n2 operators alike\n"
        );
        let mut b = snapshot(2, 3, 48);
        b.operators.insert(
            weir_checkpoint::OperatorUid::new("sink"),
            OperatorState::default(),
        );
        let text = diff(&a, &b);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "a: checkpoint 1 of job `orders`",
                "b: checkpoint 2 of job `orders`",
                "operator `counts`:",
                "  parallelism 2 → 3",
                "  subtask 0: key groups 0-63 → 0-42",
                "  subtask 1: key groups 64-127 → 43-85",
                "  subtask 2: only in b",
                "operator `sink`: only in b",
                "operator `source`:",
                "  subtask 0: operator state 40 B → 48 B",
                "0 operators alike",
            ]
        );
    }

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_bytes(43), "43 B");
        assert_eq!(format_bytes(6_000_000), "5.7 MiB");
    }
}

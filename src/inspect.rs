//! `weir checkpoints list|inspect`: what the checkpoints and savepoints under a
//! storage hold.

use std::fmt::Write as _;
use weir_checkpoint::metadata::{CheckpointMetadata, SnapshotKind};
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
    let metadata = match CheckpointStorage::read_savepoint(&StorageConfig::new(path)).await {
        Ok(savepoint) => savepoint.metadata().clone(),
        Err(savepoint_error) => {
            let trimmed = path.trim_end_matches('/');
            let checkpoint = trimmed.rsplit_once('/').and_then(|(rest, dir)| {
                let id = weir_checkpoint::layout::parse_checkpoint_dir(dir)?;
                let (root, job) = rest.rsplit_once('/')?;
                Some((root.to_string(), job.to_string(), id))
            });
            match checkpoint {
                Some((root, job, id)) => read_checkpoint(&root, &job, id).await?,
                None => return Err(savepoint_error),
            }
        }
    };
    Ok(describe(&metadata))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_bytes(43), "43 B");
        assert_eq!(format_bytes(6_000_000), "5.7 MiB");
    }
}

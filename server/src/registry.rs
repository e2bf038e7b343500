//! The job server's registry on disk: one directory per job under `<data>/jobs/<id>/`
//! holding `job.json` — the submitted job file text, the submit options, where its
//! checkpoints and savepoints go, whether it should be running, how it ended and the
//! savepoints taken through the server. Every write goes to a temporary file that is
//! synced and then renamed over `job.json`, so a crash leaves the old record or the
//! new one, never half of one.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options given with a submission (`POST /jobs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOptions {
    /// Default parallelism instead of the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// Start from this savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_savepoint: Option<String>,
    /// Start even if the savepoint has state of operators the job lacks.
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// Where a job stands, as recorded: `Running` means the server runs it (and resumes
/// it after a restart); the others are how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedState {
    /// Submitted and not ended.
    Running,
    /// All input processed.
    Finished,
    /// Cancelled.
    Cancelled,
    /// Stopped with a savepoint.
    Suspended,
    /// Failed after its restarts ran out (or could not start).
    Failed,
}

/// A savepoint taken through the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointRecord {
    /// Where it is: give it as `from_savepoint` to start a job from it.
    pub location: String,
    /// When it completed, ms since the Unix epoch.
    pub taken_at_ms: u64,
    /// Whether the job stopped after it.
    pub stop: bool,
}

/// One job of the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The server's id of the job.
    pub id: String,
    /// The job's name (from the file).
    pub name: String,
    /// The file name it was submitted as (used in messages).
    pub file: String,
    /// The job file text as submitted.
    pub text: String,
    /// Options of the submission.
    pub options: SubmitOptions,
    /// The checkpoint storage of this job.
    pub checkpoint_storage: String,
    /// Where its savepoints go.
    pub savepoint_storage: String,
    /// Running, or how it ended.
    pub state: RecordedState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Savepoints taken through the server, oldest first.
    #[serde(default)]
    pub savepoints: Vec<SavepointRecord>,
    /// When it was submitted, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// How often a server restart resumed it.
    #[serde(default)]
    pub server_restarts: u32,
}

/// The directory of job records.
#[derive(Clone, Debug)]
pub struct Registry {
    jobs: PathBuf,
}

/// A record that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("job record {path}: {message}")]
pub struct CorruptRecord {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl Registry {
    /// The registry under `data` (`<data>/jobs`), created if missing.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(data: &Path) -> std::io::Result<Self> {
        let jobs = data.join("jobs");
        std::fs::create_dir_all(&jobs)?;
        Ok(Self { jobs })
    }

    /// The directory of job `id` (its default checkpoint and savepoint storage live
    /// there too).
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.jobs.join(id)
    }

    /// Writes `record` atomically (temporary file, sync, rename).
    ///
    /// # Errors
    /// The file cannot be written or renamed.
    pub fn save(&self, record: &JobRecord) -> std::io::Result<()> {
        let dir = self.job_dir(&record.id);
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        let temp = dir.join("job.json.tmp");
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, dir.join("job.json"))?;
        // Make the rename itself durable (best effort: not every platform can open a
        // directory for syncing).
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Removes job `id`'s directory (a submission that could not start).
    ///
    /// # Errors
    /// The directory cannot be removed.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.job_dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record, by id; records that cannot be read are returned as errors so the
    /// caller can report them (and go on with the others).
    ///
    /// # Errors
    /// The registry directory cannot be listed.
    pub fn load_all(&self) -> std::io::Result<Vec<Result<JobRecord, CorruptRecord>>> {
        let mut records = Vec::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.jobs)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let path = dir.join("job.json");
            if !path.exists() {
                // A submission that crashed before its first record: nothing to resume.
                continue;
            }
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<JobRecord>(&bytes).map_err(|e| e.to_string())
                })
                .map_err(|message| CorruptRecord {
                    path: path.display().to_string(),
                    message,
                });
            records.push(record);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            name: "n".into(),
            file: "n.yaml".into(),
            text: "name: n".into(),
            options: SubmitOptions::default(),
            checkpoint_storage: "c".into(),
            savepoint_storage: "s".into(),
            state: RecordedState::Running,
            error: None,
            savepoints: vec![],
            submitted_at_ms: 1,
            ended_at_ms: None,
            server_restarts: 0,
        }
    }

    #[test]
    fn saved_records_load_back_and_corrupt_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let mut a = record("a");
        registry.save(&a).unwrap();
        a.state = RecordedState::Finished;
        registry.save(&a).unwrap();
        registry.save(&record("b")).unwrap();
        std::fs::write(registry.job_dir("b").join("job.json"), "{").unwrap();
        let loaded = registry.load_all().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].as_ref().unwrap(), &a);
        let corrupt = loaded[1].as_ref().unwrap_err().to_string();
        assert!(corrupt.contains("b/job.json"), "{corrupt}");
        registry.remove("b").unwrap();
        assert_eq!(registry.load_all().unwrap().len(), 1);
    }
}

//! The job server's registry: one record per job, `<data>/jobs/<id>/job.json` on
//! disk (or `jobs/<id>/job.json` in a shared storage, for coordinators that take
//! turns by lease), holding the submitted job file text, the submit options, where
//! its checkpoints and savepoints go, whether it should be running, how it ended and
//! the savepoints taken through the server. On disk every write goes to a temporary
//! file that is synced and then renamed over `job.json`; in a storage it is one
//! object put. Either way a crash leaves the old record or the new one, never half
//! of one.

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use weir_checkpoint::{CheckpointStorage, StorageConfig};

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
    /// The savepoint the job was stopped with when its server shut down with
    /// `--savepoint-on-stop`: the next server (a restart, or a standby coordinator)
    /// resumes it from there. Cleared once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<String>,
}

/// Where the job records are: a directory, or a shared storage (several
/// coordinators taking turns by lease read the same one).
#[derive(Clone, Debug)]
pub struct Registry {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    /// `<data>/jobs`.
    Dir(PathBuf),
    /// `jobs/<id>/job.json` under the storage's root.
    Store(CheckpointStorage),
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

/// The runtime the registry's storage requests run on, so that its blocking calls
/// work from any thread, inside another runtime or not.
fn io_runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static IO: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-registry")
            .enable_all()
            .build()
    })
    .as_ref()
    .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
}

/// Runs `work` on the registry's runtime and waits for it.
fn block_on<T: Send + 'static>(
    work: impl std::future::Future<Output = std::io::Result<T>> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io_runtime()?.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .map_err(|_| std::io::Error::other("the registry's storage request was dropped"))?
}

/// Writes `json` as `dir/job.json`: a temporary file, synced, renamed over it.
fn write_durably(dir: &Path, json: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temp = dir.join("job.json.tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(json)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join("job.json"))?;
    // Make the rename itself durable (best effort: not every platform can open a
    // directory for syncing).
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Registry {
    /// The registry under `data` (`<data>/jobs`), created if missing.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(data: &Path) -> std::io::Result<Self> {
        let jobs = data.join("jobs");
        std::fs::create_dir_all(&jobs)?;
        Ok(Self {
            backend: Backend::Dir(jobs),
        })
    }

    /// The registry in the storage at `url` (a directory or `s3://bucket/prefix`),
    /// under `jobs/`. Jobs' default checkpoints and savepoints go there too.
    ///
    /// # Errors
    /// The storage cannot be opened (a bad URL, an unreachable bucket).
    pub fn open_url(url: &str) -> std::io::Result<Self> {
        let url = url.to_string();
        let storage = block_on(async move {
            CheckpointStorage::open(&StorageConfig::new(url))
                .await
                .map_err(io_error)
        })?;
        Ok(Self {
            backend: Backend::Store(storage),
        })
    }

    /// Where job `id`'s default `what` (`checkpoints`, `savepoints`) go: a path or
    /// a URL beside its record.
    pub fn job_location(&self, id: &str, what: &str) -> String {
        match &self.backend {
            Backend::Dir(jobs) => jobs.join(id).join(what).display().to_string(),
            Backend::Store(storage) => storage.describe_full(
                &storage.full_path(&object_store::path::Path::from_iter(["jobs", id, what])),
            ),
        }
    }

    /// The store path of job `id`'s record.
    fn record_path(storage: &CheckpointStorage, id: &str) -> object_store::path::Path {
        storage.full_path(&object_store::path::Path::from_iter([
            "jobs", id, "job.json",
        ]))
    }

    /// Writes `record` atomically (temporary file, sync, rename; one object put).
    ///
    /// # Errors
    /// The file cannot be written or renamed.
    pub fn save(&self, record: &JobRecord) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        match &self.backend {
            Backend::Dir(jobs) => write_durably(&jobs.join(&record.id), &json),
            Backend::Store(storage) => {
                let storage = storage.clone();
                let path = Self::record_path(&storage, &record.id);
                block_on(async move {
                    storage
                        .object_store()
                        .put(&path, json.into())
                        .await
                        .map(drop)
                        .map_err(io_error)
                })
            }
        }
    }

    /// Removes job `id`'s record (a submission that could not start), and in a
    /// directory registry everything beside it.
    ///
    /// # Errors
    /// The record cannot be removed.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match &self.backend {
            Backend::Dir(jobs) => match std::fs::remove_dir_all(jobs.join(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Backend::Store(storage) => {
                let storage = storage.clone();
                let path = Self::record_path(&storage, id);
                block_on(async move {
                    match storage.object_store().delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(io_error(e)),
                    }
                })
            }
        }
    }

    /// Every record, by id; records that cannot be read are returned as errors so the
    /// caller can report them (and go on with the others).
    ///
    /// # Errors
    /// The registry cannot be listed.
    pub fn load_all(&self) -> std::io::Result<Vec<Result<JobRecord, CorruptRecord>>> {
        let read: Vec<(String, std::io::Result<Vec<u8>>)> = match &self.backend {
            Backend::Dir(jobs) => {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir(jobs)?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|path| path.is_dir())
                    .collect();
                dirs.sort();
                dirs.into_iter()
                    .map(|dir| dir.join("job.json"))
                    // A submission that crashed before its first record: nothing to
                    // resume.
                    .filter(|path| path.exists())
                    .map(|path| (path.display().to_string(), std::fs::read(&path)))
                    .collect()
            }
            Backend::Store(storage) => {
                let storage = storage.clone();
                block_on(async move {
                    let jobs = storage.full_path(&object_store::path::Path::from("jobs"));
                    let listing = match storage
                        .object_store()
                        .list_with_delimiter(Some(&jobs))
                        .await
                    {
                        Ok(listing) => listing,
                        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
                        Err(e) => return Err(io_error(e)),
                    };
                    let mut read = Vec::new();
                    for dir in listing.common_prefixes {
                        let path = dir.clone().join("job.json");
                        let shown = storage.describe_full(&path);
                        match storage.object_store().get(&path).await {
                            Ok(got) => read.push((
                                shown,
                                got.bytes().await.map(|b| b.to_vec()).map_err(io_error),
                            )),
                            Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => read.push((shown, Err(io_error(e)))),
                        }
                    }
                    read.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(read)
                })?
            }
        };
        Ok(read
            .into_iter()
            .map(|(path, bytes)| {
                bytes
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<JobRecord>(&bytes).map_err(|e| e.to_string())
                    })
                    .map_err(|message| CorruptRecord { path, message })
            })
            .collect())
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
            resume_from: None,
        }
    }

    #[test]
    fn saved_records_load_back_and_corrupt_ones_are_reported_on_disk_and_in_a_storage() {
        for in_storage in [false, true] {
            saved_records_load_back_and_corrupt_ones_are_reported(in_storage);
        }
    }

    fn saved_records_load_back_and_corrupt_ones_are_reported(in_storage: bool) {
        let dir = tempfile::tempdir().unwrap();
        let registry = if in_storage {
            Registry::open_url(&dir.path().display().to_string()).unwrap()
        } else {
            Registry::open(dir.path()).unwrap()
        };
        assert_eq!(
            registry.job_location("a", "checkpoints"),
            dir.path().join("jobs/a/checkpoints").display().to_string()
        );
        let mut a = record("a");
        registry.save(&a).unwrap();
        a.state = RecordedState::Finished;
        registry.save(&a).unwrap();
        registry.save(&record("b")).unwrap();
        std::fs::write(dir.path().join("jobs/b/job.json"), "{").unwrap();
        let loaded = registry.load_all().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].as_ref().unwrap(), &a);
        let corrupt = loaded[1].as_ref().unwrap_err().to_string();
        assert!(corrupt.contains("b/job.json"), "{corrupt}");
        registry.remove("b").unwrap();
        assert_eq!(registry.load_all().unwrap().len(), 1);
    }
}

//! Writing the state objects of one subtask's part of a checkpoint.

use crate::metadata::StateHandle;
use crate::{CheckpointError, CheckpointId, CheckpointStorage, OperatorUid};
use std::sync::Arc;
use weir_state::StateError;

/// Why a subtask's state could not be written to checkpoint storage. The checkpoint
/// it belongs to is declined; a later one may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// Writing a state object failed; names the object.
    #[error(transparent)]
    Storage(#[from] CheckpointError),
    /// State could not be encoded; names the state.
    #[error(transparent)]
    State(#[from] StateError),
    /// A local file of a native RocksDB checkpoint (or of its local copy) could not
    /// be listed, read, linked or copied.
    #[error("{what}: {source}")]
    Local {
        /// What was being done, naming the file or directory.
        what: String,
        /// The file system's report.
        #[source]
        source: std::io::Error,
    },
    /// Tables that cannot be uploaded as one native handle (the caller grouped them
    /// wrongly, see [`crate::native::by_checkpoint`]).
    #[error("operator `{uid}`: {reason}")]
    Tables {
        /// The operator.
        uid: OperatorUid,
        /// What is wrong with the tables.
        reason: String,
    },
    /// Encoding state on a blocking thread did not finish: it panicked, or the
    /// runtime is shutting down.
    #[error("encoding state failed: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
}

/// Called after each state object written (the runtime passes a failpoint there).
pub type AfterWrite = Arc<dyn Fn() + Send + Sync>;

/// Writes the state objects of one subtask's snapshot for checkpoint `checkpoint`,
/// counting the bytes and calling a hook after each object.
pub struct StateWriter {
    storage: CheckpointStorage,
    job: String,
    checkpoint: CheckpointId,
    subtask: usize,
    after_write: AfterWrite,
    /// Bytes written so far.
    bytes: u64,
    /// Appended to private file names (`<name>.<owner>`), unless empty.
    owner: String,
}

impl StateWriter {
    /// A writer of subtask `subtask`'s state objects of checkpoint `checkpoint` of
    /// job `job`; `after_write` is called after each object written.
    pub fn new(
        storage: CheckpointStorage,
        job: impl Into<String>,
        checkpoint: CheckpointId,
        subtask: usize,
        after_write: AfterWrite,
    ) -> Self {
        Self {
            storage,
            job: job.into(),
            checkpoint,
            subtask,
            after_write,
            bytes: 0,
            owner: String::new(),
        }
    }

    /// Names private files `<name>.<owner>`: an attempt's token, so that no other
    /// attempt or incarnation writing the same checkpoint id overwrites them, and
    /// [`CheckpointStorage::abort_own`] deletes only them.
    pub fn owned_by(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The owner token in the names of what this writer writes (empty: none); shared
    /// keys built by callers carry it too, so a clean-up knows whose they are.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The checkpoint written.
    pub fn checkpoint(&self) -> CheckpointId {
        self.checkpoint
    }

    /// The subtask whose state is written.
    pub fn subtask(&self) -> usize {
        self.subtask
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes `<job>/chk-<n>/<uid>/<subtask>/<name>` (`<name>.<owner>` when owned).
    ///
    /// # Errors
    /// The storage's report ([`CheckpointError`]), naming the object.
    ///
    /// # Cancel safety
    /// Cancel-safe: the object is private to the checkpoint.
    pub async fn private(
        &mut self,
        uid: &OperatorUid,
        name: &str,
        data: Vec<u8>,
    ) -> Result<StateHandle, CheckpointError> {
        let size = data.len() as u64;
        let owned;
        let name = if self.owner.is_empty() {
            name
        } else {
            owned = format!("{name}.{}", self.owner);
            &owned
        };
        let handle = self
            .storage
            .write_state(&self.job, self.checkpoint, uid, self.subtask, name, data)
            .await?;
        self.written(size);
        Ok(handle)
    }

    /// Writes `<job>/shared/<key>`.
    ///
    /// # Errors
    /// The storage's report ([`CheckpointError`]), naming the object.
    ///
    /// # Cancel safety
    /// Cancel-safe: shared objects are created if absent.
    pub async fn shared(
        &mut self,
        key: &str,
        data: Vec<u8>,
    ) -> Result<StateHandle, CheckpointError> {
        let size = data.len() as u64;
        let handle = self.storage.write_shared(&self.job, key, data).await?;
        self.written(size);
        Ok(handle)
    }

    /// Uploads the local file `file` as shared file `key`, streamed when large.
    ///
    /// # Errors
    /// The storage's report ([`CheckpointError`]), naming the object.
    ///
    /// # Cancel safety
    /// Cancel-safe: shared objects are created if absent.
    pub async fn shared_file(
        &mut self,
        key: &str,
        file: &std::path::Path,
    ) -> Result<StateHandle, CheckpointError> {
        let handle = self.storage.write_shared_file(&self.job, key, file).await?;
        self.written(handle.size);
        Ok(handle)
    }

    fn written(&mut self, size: u64) {
        self.bytes += size;
        (self.after_write)();
    }
}

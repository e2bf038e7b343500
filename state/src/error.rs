use thiserror::Error;

/// Errors of keyed state.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Encoded state could not be decoded: the snapshot is corrupt or of another type.
    #[error("state `{state}` is corrupt or of an unexpected type: {reason}")]
    Corrupt {
        /// The named state.
        state: String,
        /// What the decoder reported.
        reason: String,
    },
    /// State could not be encoded.
    #[error("state `{state}` could not be encoded: {reason}")]
    Encode {
        /// The named state.
        state: String,
        /// What the encoder reported.
        reason: String,
    },
    /// Local state storage failed (RocksDB or the state directory).
    #[error("state storage: {what}: {source}")]
    Io {
        /// What was being done, naming the directory, file or column family.
        what: String,
        /// What RocksDB or the file system reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The state directory is in use by another process or subtask.
    #[error("{0}")]
    Locked(String),
    /// A configuration value is out of range.
    #[error("invalid state configuration: {0}")]
    Config(String),
}

impl StateError {
    /// A failure of local state storage while doing `what` (naming the directory,
    /// file or column family), caused by `source`.
    #[cfg(feature = "rocksdb")]
    pub(crate) fn io(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

//! [`ObjectsError`]: what can go wrong opening, listing, reading or writing objects.

use weir_checkpoint::CheckpointError;
use weir_dataflow::{DataflowError, SubtaskInfo};

/// An error of a [`BlockingObjectStore`](crate::BlockingObjectStore) operation. Every
/// message names the URL, the bucket or the object concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectsError {
    /// The URL or the S3 settings are wrong (empty URL, unknown scheme, no bucket):
    /// retrying does not help.
    #[error("misconfigured URL {url}: {reason}")]
    Misconfigured {
        /// The URL as given.
        url: String,
        /// What is wrong and what is supported.
        reason: String,
    },
    /// The directory cannot be created or the bucket cannot be reached (wrong
    /// endpoint, missing bucket, bad credentials, network).
    #[error("{target} is unreachable: {source}")]
    Unreachable {
        /// The directory, or the bucket with its endpoint.
        target: String,
        /// The underlying object-store error.
        #[source]
        source: object_store::Error,
    },
    /// The tokio runtime that drives the store's requests could not start.
    #[error("starting I/O for {url}: {source}")]
    Runtime {
        /// The URL of the store.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A name that is not a valid object name (e.g. read from a corrupt checkpoint).
    #[error("object name `{name}`: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A request on an object failed.
    #[error("{action} {object}: {source}")]
    Request {
        /// What was being done: `reading`, `uploading`, `deleting`, `listing`, `moving`.
        action: &'static str,
        /// The object (or objects) as users see them.
        object: String,
        /// The underlying object-store error.
        #[source]
        source: object_store::Error,
    },
}

impl ObjectsError {
    /// The error of opening `url`, from the checkpoint crate's opener.
    pub(crate) fn opening(url: &str, e: CheckpointError) -> Self {
        match e {
            CheckpointError::Misconfigured { url, reason } => Self::Misconfigured { url, reason },
            CheckpointError::Unreachable { target, source } => Self::Unreachable { target, source },
            other => Self::Misconfigured {
                url: url.to_owned(),
                reason: other.to_string(),
            },
        }
    }
    /// Whether retrying cannot help: the configuration or a name is wrong.
    pub fn is_misconfigured(&self) -> bool {
        matches!(self, Self::Misconfigured { .. } | Self::InvalidName { .. })
    }

    /// This error as the failure of a connector's subtask, its message prefixed by
    /// `context` (e.g. ``file source `s3://b/in` ``) when given, and kept as its cause:
    /// an operator error when the configuration is wrong, an I/O error (the job may
    /// recover by restarting) otherwise.
    pub fn into_dataflow(self, subtask: &SubtaskInfo, context: Option<&str>) -> DataflowError {
        let operator = &subtask.operator;
        match context {
            _ if self.is_misconfigured() => DataflowError::operator_caused(
                operator,
                subtask.index,
                context.unwrap_or_default(),
                self,
            ),
            Some(context) => DataflowError::io(operator, context, self),
            None => DataflowError::Io {
                operator: operator.clone(),
                source: std::io::Error::other(self),
            },
        }
    }
}

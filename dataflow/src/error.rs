//! The error type of weir-dataflow.

use thiserror::Error;
use weir_state::StateError;

/// Errors of building or running a job.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataflowError {
    /// The job graph is invalid: names the operator and the offending value.
    #[error("invalid job: operator `{operator}`: {message}")]
    InvalidJob {
        /// The operator's name.
        operator: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// An operator failed while running.
    #[error("operator `{operator}` (subtask {subtask}) failed: {message}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// The subtask index.
        subtask: usize,
        /// What went wrong.
        message: String,
    },
    /// A source or sink failed doing I/O; retrying the job may succeed.
    #[error("I/O failed in `{operator}`: {source}")]
    Io {
        /// The operator's name.
        operator: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Keyed state failed (corrupt snapshot, encoding error).
    #[error(transparent)]
    State(#[from] StateError),
    /// A task thread ended unexpectedly (its peer failed or panicked).
    #[error("task `{task}` ended unexpectedly: {message}")]
    TaskFailed {
        /// The task's name.
        task: String,
        /// What is known about why.
        message: String,
    },
    /// Checkpointing failed: storage, a savepoint, a restore.
    #[error("{what}: {message}")]
    Checkpoint {
        /// What was being done or used (e.g. "checkpoint storage", "savepoint `<path>`").
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

impl DataflowError {
    /// An operator failure with a message.
    pub fn operator(
        operator: impl Into<String>,
        subtask: usize,
        message: impl Into<String>,
    ) -> Self {
        Self::Operator {
            operator: operator.into(),
            subtask,
            message: message.into(),
        }
    }

    /// Whether restarting the job could get past this error. An invalid job stays
    /// invalid, and output whose reader has gone (a broken pipe: `weir run … | head`)
    /// stays gone; everything else (a broker or bucket that is down, a crashed task)
    /// may succeed on a restart.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::InvalidJob { .. } => false,
            Self::Io { source, .. } => source.kind() != std::io::ErrorKind::BrokenPipe,
            _ => true,
        }
    }

    /// An invalid-job error naming the operator.
    pub fn invalid(operator: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidJob {
            operator: operator.into(),
            message: message.into(),
        }
    }
}

/// The result type of weir-dataflow.
pub type Result<T, E = DataflowError> = std::result::Result<T, E>;

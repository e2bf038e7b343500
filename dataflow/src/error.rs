//! The error type of weir-dataflow.
//!
//! An error that wraps another keeps it as its [`source`](Error::source), for code
//! that looks at causes ([`DataflowError::is_recoverable`] does), and also shows it
//! at the end of its own message, so that a log line, an API response or a job
//! record carries the whole story. A printer that walks the chain skips a cause its
//! parent already shows (the `weir` command does).

use std::error::Error;
use std::fmt;
use thiserror::Error;
use weir_state::StateError;

/// Any error kept as the cause of a [`DataflowError`].
type Cause = Box<dyn Error + Send + Sync + 'static>;

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
    #[error("operator `{operator}` (subtask {subtask}) failed: {}", Detail(.message, .source))]
    Operator {
        /// The operator's name.
        operator: String,
        /// The subtask index.
        subtask: usize,
        /// What went wrong or, when there is a `source`, what was being done.
        message: String,
        /// The error that made the operator fail, if it is not described by
        /// `message` alone (a storage, state or client library error).
        #[source]
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
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
    #[error("{what}: {}", Detail(.message, .source))]
    Checkpoint {
        /// What was being done or used (e.g. "checkpoint storage", "savepoint `<path>`").
        what: String,
        /// What went wrong; empty when `source` says it.
        message: String,
        /// The storage or restore error, if there is one.
        #[source]
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    },
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

impl DataflowError {
    /// An operator failure that `message` describes.
    pub fn operator(
        operator: impl Into<String>,
        subtask: usize,
        message: impl Into<String>,
    ) -> Self {
        Self::Operator {
            operator: operator.into(),
            subtask,
            message: message.into(),
            source: None,
        }
    }

    /// An operator failure caused by `source` while doing what `message` says (e.g.
    /// ``reading topic `bids` ``); the message shows both, the cause last.
    pub fn operator_caused(
        operator: impl Into<String>,
        subtask: usize,
        message: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self::Operator {
            operator: operator.into(),
            subtask,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An I/O failure of a source or sink `operator` while doing `context` (e.g.
    /// ``file source `/data/in` ``), caused by `source`. The [`Io`](Self::Io) error
    /// has the kind of `source` when that is an `std::io::Error` (a broken pipe stays
    /// one), `Other` otherwise, and keeps `source` as its cause.
    pub fn io(
        operator: impl Into<String>,
        context: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        let kind = source
            .downcast_ref::<std::io::Error>()
            .map_or(std::io::ErrorKind::Other, std::io::Error::kind);
        let context = context.into();
        Self::Io {
            operator: operator.into(),
            source: std::io::Error::new(kind, InContext { context, source }),
        }
    }

    /// A checkpointing failure of `what` (e.g. "savepoint") that `message` describes.
    pub fn checkpoint(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            what: what.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A checkpointing failure of `what` (e.g. "restoring checkpoint 7") caused by
    /// `source`, a storage or restore error.
    pub fn checkpoint_caused(
        what: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self::Checkpoint {
            what: what.into(),
            message: String::new(),
            source: Some(source.into()),
        }
    }

    /// Whether restarting the job could get past this error, judged on the whole
    /// chain of causes. An invalid job stays invalid, and output whose reader has gone
    /// (a broken pipe that weir reports: `weir run … | head`) stays gone, however
    /// deep either is wrapped; everything else (a broker or bucket that is down, a
    /// crashed task) may succeed on a restart. A broken pipe inside a client
    /// library's error (a connection the S3 endpoint closed) is such a network
    /// failure, not gone output, and does not count.
    pub fn is_recoverable(&self) -> bool {
        let invalid =
            chain(self).any(|e| matches!(e.downcast_ref(), Some(DataflowError::InvalidJob { .. })));
        let reader_gone = chain(self).zip(chain(self).skip(1)).any(|(parent, e)| {
            let ours = parent.is::<DataflowError>() || parent.is::<StateError>();
            let broken_pipe = e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
            ours && broken_pipe
        });
        !invalid && !reader_gone
    }

    /// An invalid-job error naming the operator.
    pub fn invalid(operator: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidJob {
            operator: operator.into(),
            message: message.into(),
        }
    }
}

/// `message`, then the cause after ": " (either alone when the other is absent or
/// empty): the text of an error that may wrap another.
struct Detail<'a>(&'a str, &'a Option<Cause>);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (message, None) => f.write_str(message),
            ("", Some(cause)) => write!(f, "{cause}"),
            (message, Some(cause)) => write!(f, "{message}: {cause}"),
        }
    }
}

/// A cause with what was being done when it happened: what the `std::io::Error` of
/// [`DataflowError::io`] wraps.
#[derive(Debug, Error)]
#[error("{context}: {source}")]
struct InContext {
    context: String,
    #[source]
    source: Cause,
}

/// `error` and its causes, outermost first.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// The result type of weir-dataflow.
pub type Result<T, E = DataflowError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::DataflowError;
    use std::io::ErrorKind;

    fn broken_pipe() -> DataflowError {
        DataflowError::Io {
            operator: "stdout".into(),
            source: std::io::Error::from(ErrorKind::BrokenPipe),
        }
    }

    /// A client library's error whose cause is a broken connection.
    #[derive(Debug, thiserror::Error)]
    #[error("sending the request failed")]
    struct Client(#[source] std::io::Error);

    #[test]
    fn a_cause_is_shown_once_after_the_context() {
        let e = DataflowError::operator_caused("count", 1, "while writing a batch", broken_pipe());
        assert_eq!(
            e.to_string(),
            "operator `count` (subtask 1) failed: while writing a batch: I/O failed in `stdout`: broken pipe"
        );
        let e = DataflowError::checkpoint_caused("savepoint `s3://b/sp`", broken_pipe());
        assert_eq!(
            e.to_string(),
            "savepoint `s3://b/sp`: I/O failed in `stdout`: broken pipe"
        );
        let e = DataflowError::checkpoint("savepoint", "the job is not running");
        assert_eq!(e.to_string(), "savepoint: the job is not running");
    }

    #[test]
    fn gone_output_and_invalid_jobs_are_found_however_deep() {
        assert!(!broken_pipe().is_recoverable());
        let twice = DataflowError::operator_caused(
            "a",
            0,
            "while opening",
            DataflowError::checkpoint_caused("restoring", broken_pipe()),
        );
        assert!(!twice.is_recoverable());
        let invalid = DataflowError::operator_caused(
            "a",
            0,
            "while opening",
            DataflowError::invalid("a", "no field `x`"),
        );
        assert!(!invalid.is_recoverable());
        let other = DataflowError::operator_caused(
            "a",
            0,
            "while opening",
            std::io::Error::from(ErrorKind::ConnectionRefused),
        );
        assert!(other.is_recoverable());
    }

    #[test]
    fn an_io_error_in_context_keeps_its_kind_and_cause() {
        let pipe = DataflowError::io(
            "out",
            "file sink `/out`",
            std::io::Error::from(ErrorKind::BrokenPipe),
        );
        assert_eq!(
            pipe.to_string(),
            "I/O failed in `out`: file sink `/out`: broken pipe"
        );
        assert!(!pipe.is_recoverable());
        let client = DataflowError::io("out", "file sink `s3://b/out`", Client(pipe_error()));
        let DataflowError::Io { source, .. } = &client else {
            panic!("{client:?}")
        };
        assert_eq!(source.kind(), ErrorKind::Other);
        assert!(client.is_recoverable());
        assert_eq!(
            client.to_string(),
            "I/O failed in `out`: file sink `s3://b/out`: sending the request failed"
        );
    }

    fn pipe_error() -> std::io::Error {
        std::io::Error::from(ErrorKind::BrokenPipe)
    }

    #[test]
    fn a_broken_connection_inside_a_client_error_is_recoverable() {
        let e = DataflowError::checkpoint_caused(
            "checkpoint storage",
            Client(std::io::Error::from(ErrorKind::BrokenPipe)),
        );
        assert!(e.is_recoverable(), "{e}");
    }
}

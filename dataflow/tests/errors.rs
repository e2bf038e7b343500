//! What an operator's or a sink's error becomes once the runtime has named the
//! operator: its cause stays reachable through `source()`, and whether a restart can
//! help is decided by the whole chain.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::error::Error as _;
use std::io::ErrorKind;
use weir_dataflow::state::StateError;
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::{
    DataflowError, JobBuilder, JobConfig, Operator, Output, Result, Sink, WatermarkStrategy,
};

/// Fails on its first batch with the error `fail` makes.
struct Failing {
    fail: fn() -> DataflowError,
}

impl Operator for Failing {
    type In = u64;
    type Out = u64;
    fn on_batch(&mut self, input: &mut Vec<u64>, _: &mut Output<u64>) -> Result<()> {
        input.clear();
        Err((self.fail)())
    }
}

impl Sink for Failing {
    type In = u64;
    fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
        batch.clear();
        Err((self.fail)())
    }
}

fn broken_pipe() -> DataflowError {
    DataflowError::Io {
        operator: "fail".into(),
        source: std::io::Error::from(ErrorKind::BrokenPipe),
    }
}

fn state_storage() -> DataflowError {
    DataflowError::State(StateError::Io {
        what: "cannot create lock file /state/x/LOCK".into(),
        source: Box::new(std::io::Error::from(ErrorKind::PermissionDenied)),
    })
}

fn invalid() -> DataflowError {
    DataflowError::invalid("fail", "no such field `x`")
}

fn source(job: &JobBuilder) -> weir_dataflow::Stream<u64> {
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory(vec![1, 2, 3]),
    )
}

/// Runs numbers → `fail` operator → sink, returning the job's error.
fn through_operator(fail: fn() -> DataflowError) -> DataflowError {
    let job = JobBuilder::new(JobConfig::default());
    let (sink, _) = CollectSink::new();
    source(&job)
        .transform("fail", move |_| Failing { fail })
        .sink("collect", sink);
    job.execute().unwrap_err()
}

/// Runs numbers → `fail` sink, returning the job's error.
fn through_sink(fail: fn() -> DataflowError) -> DataflowError {
    let job = JobBuilder::new(JobConfig::default());
    source(&job).sink("fail", move |_| Failing { fail });
    job.execute().unwrap_err()
}

/// The first `std::io::Error` in `e`'s source chain.
fn io_cause(e: &DataflowError) -> Option<&std::io::Error> {
    std::iter::successors(e.source(), |&e| e.source()).find_map(|e| e.downcast_ref())
}

#[test]
fn a_broken_pipe_an_operator_reports_stays_the_cause_and_is_not_recoverable() {
    let e = through_operator(broken_pipe);
    assert!(
        matches!(&e, DataflowError::Operator { operator, subtask: 0, .. } if operator == "fail"),
        "{e:?}"
    );
    assert_eq!(
        io_cause(&e).map(std::io::Error::kind),
        Some(ErrorKind::BrokenPipe),
        "{e:?}"
    );
    assert!(!e.is_recoverable(), "{e}");
    let text = e.to_string();
    assert_eq!(text.matches("broken pipe").count(), 1, "{text}");
}

#[test]
fn an_invalid_job_an_operator_reports_is_not_recoverable() {
    let e = through_operator(invalid);
    assert!(matches!(e, DataflowError::Operator { .. }), "{e:?}");
    let cause = e.source().and_then(|c| c.downcast_ref::<DataflowError>());
    assert!(
        matches!(cause, Some(DataflowError::InvalidJob { .. })),
        "{e:?}"
    );
    assert!(!e.is_recoverable(), "{e}");
}

#[test]
fn an_invalid_job_a_sink_reports_is_not_recoverable() {
    let e = through_sink(invalid);
    assert!(matches!(e, DataflowError::Operator { .. }), "{e:?}");
    assert!(!e.is_recoverable(), "{e}");
}

#[test]
fn a_broken_pipe_a_sink_reports_is_not_recoverable() {
    let e = through_sink(broken_pipe);
    assert_eq!(
        io_cause(&e).map(std::io::Error::kind),
        Some(ErrorKind::BrokenPipe),
        "{e:?}"
    );
    assert!(!e.is_recoverable(), "{e}");
}

#[test]
fn a_state_storage_failure_stays_the_cause_and_a_restart_may_help() {
    let e = through_operator(state_storage);
    assert_eq!(
        io_cause(&e).map(std::io::Error::kind),
        Some(ErrorKind::PermissionDenied),
        "{e:?}"
    );
    assert!(e.is_recoverable(), "{e}");
    assert_eq!(
        e.to_string(),
        "operator `fail` (subtask 0) failed: while processing a batch: state storage: \
         cannot create lock file /state/x/LOCK: permission denied"
    );
}

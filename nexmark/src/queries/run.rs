//! Running a query end to end: generator ─▶ query ─▶ blackhole or stdout.

use super::{q0, q1, q2, q3, q5, q7, q8, qs, qw, Query};
use crate::{bid_stream, event_stream, DEFAULT_ROWS_PER_MS};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_dataflow::checkpointing::{CheckpointedJob, CheckpointingConfig, NoListener, RunSummary};
use weir_dataflow::{Data, DataflowError, JobBuilder, JobConfig, JobResult, Stream};
use weir_sinks::{BlackholeSink, StdoutJsonSink};

/// Where [`build_query`] sends a query's result stream.
pub trait QueryOutput {
    /// Attaches a sink to `rows`, the result of `query`.
    fn attach<T: Data + Serialize>(&mut self, query: Query, rows: &Stream<T>);
}

/// Builds `query` over its generator ([`bid_stream`] with `rows_per_ms` for the bid
/// queries, [`event_stream`] for q3 and q8) of `events` events, and hands its result
/// stream to `output`.
pub fn build_query(
    job: &JobBuilder,
    query: Query,
    events: u64,
    rows_per_ms: i64,
    output: &mut impl QueryOutput,
) {
    if query.reads_bids() {
        let bids = bid_stream(job, events, rows_per_ms);
        match query {
            Query::Q0 => output.attach(query, &q0(&bids)),
            Query::Q1 => output.attach(query, &q1(&bids)),
            Query::Q2 => output.attach(query, &q2(&bids)),
            Query::Qw => output.attach(query, &qw(&bids)),
            Query::Q5 => output.attach(query, &q5(&bids)),
            Query::Q7 => output.attach(query, &q7(&bids)),
            _ => output.attach(query, &qs(&bids)),
        }
    } else {
        let all = event_stream(job, events);
        match query {
            Query::Q3 => output.attach(query, &q3(&all)),
            _ => output.attach(query, &q8(&all)),
        }
    }
}

/// The outcome of [`run_blackhole`].
#[derive(Debug)]
pub struct QueryRun {
    /// Result rows that reached the sink.
    pub output_records: u64,
    /// The finished job's elapsed time and metrics.
    pub job: JobResult,
}

/// A [`QueryOutput`] that drops the rows into a blackhole sink and counts them.
#[derive(Debug, Default)]
pub struct BlackholeOutput(Option<Arc<AtomicU64>>);

impl BlackholeOutput {
    /// The rows counted so far (0 before the query is attached).
    pub fn count(&self) -> u64 {
        self.0.as_ref().map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl QueryOutput for BlackholeOutput {
    fn attach<T: Data + Serialize>(&mut self, _: Query, rows: &Stream<T>) {
        let (sink, counter) = BlackholeSink::new();
        rows.sink("blackhole", sink).uid("blackhole");
        self.0 = Some(counter);
    }
}

struct StdoutJson;

impl QueryOutput for StdoutJson {
    fn attach<T: Data + Serialize>(&mut self, _: Query, rows: &Stream<T>) {
        rows.sink("stdout-json", StdoutJsonSink::factory())
            .uid("stdout-json");
    }
}

/// Runs `query` over `events` generated events (bids at
/// [`DEFAULT_ROWS_PER_MS`](crate::DEFAULT_ROWS_PER_MS)) into a sink that drops the
/// rows, and counts them.
///
/// # Errors
/// [`DataflowError::InvalidJob`] for invalid settings in `config`; the first task
/// failure otherwise.
pub fn run_blackhole(
    query: Query,
    config: JobConfig,
    events: u64,
) -> Result<QueryRun, DataflowError> {
    let job = JobBuilder::new(config);
    let mut output = BlackholeOutput::default();
    build_query(&job, query, events, DEFAULT_ROWS_PER_MS, &mut output);
    let result = job.execute()?;
    Ok(QueryRun {
        output_records: output.count(),
        job: result,
    })
}

/// Runs `query` over `events` generated events (bids at
/// [`DEFAULT_ROWS_PER_MS`](crate::DEFAULT_ROWS_PER_MS)) and prints every result row
/// to stdout as one JSON object per line.
///
/// # Errors
/// [`DataflowError::InvalidJob`] for invalid settings in `config`; the first task
/// failure (including a failed write to stdout) otherwise.
pub fn run_stdout(query: Query, config: JobConfig, events: u64) -> Result<(), DataflowError> {
    let job = JobBuilder::new(config);
    build_query(&job, query, events, DEFAULT_ROWS_PER_MS, &mut StdoutJson);
    job.execute().map(|_| ())
}

/// Runs `query` over `events` generated events with checkpoints (see
/// [`CheckpointedJob`]): printing every result row to stdout as a JSON line, or, with
/// `count_only`, dropping them. Rows printed before a failure may be printed again
/// after the restart (stdout is not a transactional sink).
///
/// # Errors
/// The checkpoint storage cannot be opened or the restore is refused; a failure after
/// the restarts ran out.
pub fn run_checkpointed(
    query: Query,
    config: JobConfig,
    events: u64,
    checkpointing: CheckpointingConfig,
    count_only: bool,
) -> Result<RunSummary, DataflowError> {
    CheckpointedJob::spawn(
        config,
        checkpointing,
        move |job| {
            if count_only {
                build_query(
                    job,
                    query,
                    events,
                    DEFAULT_ROWS_PER_MS,
                    &mut BlackholeOutput::default(),
                );
            } else {
                build_query(job, query, events, DEFAULT_ROWS_PER_MS, &mut StdoutJson);
            }
        },
        Arc::new(NoListener),
    )?
    .wait()
}

//! The typed Nexmark queries' rows, to compare declarative jobs (job files, SQL)
//! against.

use serde::Serialize;
use weir::dataflow::testing::CollectSink;
use weir::dataflow::{JobBuilder, JobConfig, Stream};
use weir::nexmark::{self, Bid};

/// The rows of the typed query `query` over `events` bids at `parallelism`, as
/// JSON objects, in arrival order.
pub fn rows<T: Serialize + Send + Clone + 'static>(
    events: u64,
    parallelism: usize,
    query: impl FnOnce(&Stream<Bid>) -> Stream<T>,
) -> Vec<serde_json::Value> {
    rows_of(
        parallelism,
        |job| nexmark::bid_stream(job, events, 10),
        query,
    )
}

/// The rows of the typed query `query` over the stream `input` makes, at
/// `parallelism`, as JSON objects, in arrival order.
pub fn rows_of<E, T: Serialize + Send + Clone + 'static>(
    parallelism: usize,
    input: impl FnOnce(&JobBuilder) -> Stream<E>,
    query: impl FnOnce(&Stream<E>) -> Stream<T>,
) -> Vec<serde_json::Value> {
    let job = JobBuilder::new(JobConfig {
        name: "typed".into(),
        parallelism,
        ..JobConfig::default()
    });
    let (sink, rows) = CollectSink::new();
    query(&input(&job)).sink("collect", sink);
    job.execute().expect("the typed query runs");
    rows.take()
        .iter()
        .map(|row| serde_json::to_value(row).expect("a row serializes"))
        .collect()
}

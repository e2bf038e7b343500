//! The Nexmark queries as typed weir jobs.
//!
//! The seven bid queries ([`Query::BENCHMARKED`]: q0 q1 q2 qw q5 q7 qs) read the
//! deterministic bid generator of `shared/bench` and produce exactly the rows of the
//! Flink SQL the benchmark runs (`shared/bench/flink/flink_bench.py`). q3 and q8 are
//! Nexmark's queries over the full event stream of persons, auctions and bids.
//!
//! ```text
//!  bid_stream ───▶ q0 q1 q2 (stateless) │ qw q5 qs (windows) │ q7 (two-stage max) ─▶ sink
//!  event_stream ─▶ q3 (unbounded join) │ q8 (windowed join) ────────────────────────▶ sink
//! ```
//!
//! Every query is a function from a stream to a stream, so it runs over any source
//! with the right record type: the generators ([`bid_stream`], [`event_stream`]), a
//! collection in tests, or a log. Stateful operators have stable uids (`qw-tumbling`,
//! `q5-hop-count`, …) so their state survives changes to the rest of the job; the
//! uids are fixed, so building the same query twice in one job is reported as an
//! invalid job (duplicate uid).
//!
//! ```
//! use weir::dataflow::{JobBuilder, JobConfig};
//! use weir::nexmark::{bid_stream, qw};
//! use weir::sinks::CollectSink;
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let (sink, rows) = CollectSink::new();
//! qw(&bid_stream(&job, 20_000, 1)).sink("collect", sink);
//! job.execute().unwrap();
//! let rows = rows.take();
//! assert_eq!(rows.iter().map(|row| row.count).sum::<u64>(), 20_000);
//! ```

mod persons;
mod q7;
mod query;
mod run;
mod stateless;
mod windows;

pub use persons::{q3, q8, Q3Row, Q8Row, Q3_CATEGORY, Q3_STATES};
pub use q7::{q7, Q7Row, Q7_BUCKETS};
pub use query::{Query, UnknownQuery};
pub use run::{
    build_query, run_blackhole, run_checkpointed, run_stdout, BlackholeOutput, QueryOutput,
    QueryRun,
};
pub use stateless::{q0, q1, q2, Q1Row, Q2Row, Q1_RATE, Q2_AUCTION_MODULUS};
pub use windows::{q5, qs, qw, Q5Row, QsRow, QwRow, HOP_SLIDE, WINDOW};

use std::time::Duration;
use weir_dataflow::{JobBuilder, Stream, Timestamp, WatermarkStrategy};
use weir_sources::{Bid, BidGeneratorConfig, BidSource, Event, NexmarkConfig, NexmarkSource};

/// The name of the bid generator's source operator (to find its metrics).
pub const BID_SOURCE: &str = "bid-source";

/// The name of the Nexmark event generator's source operator (to find its metrics).
pub const EVENT_SOURCE: &str = "nexmark-source";

/// How far behind the highest event time seen the sources' watermark stays: events
/// at most this much out of order are on time (the benchmark's `WATERMARK FOR
/// date_time AS date_time - INTERVAL '4' SECOND`).
pub const WATERMARK_DELAY: Duration = Duration::from_secs(4);

/// Bids per millisecond of event time when none is given (the benchmark's default).
pub const DEFAULT_ROWS_PER_MS: i64 = 10;

/// The deterministic bids `1..=events` of the benchmark, `rows_per_ms` per
/// millisecond of event time, read by as many source subtasks as the job's
/// parallelism; event time is `date_time`, watermarks trail it by
/// [`WATERMARK_DELAY`].
pub fn bid_stream(job: &JobBuilder, events: u64, rows_per_ms: i64) -> Stream<Bid> {
    let config = BidGeneratorConfig {
        events,
        rows_per_ms,
        source_parallelism: i64::try_from(job.config().parallelism).unwrap_or(i64::MAX),
    };
    job.source(
        BID_SOURCE,
        WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY, |bid: &Bid| {
            Timestamp(bid.date_time)
        }),
        BidSource::factory(config),
    )
    .uid(BID_SOURCE)
}

/// The first `events` events of the Nexmark generator (persons, auctions and bids),
/// read by as many source subtasks as the job's parallelism; event time is each
/// event's `date_time`, watermarks trail it by [`WATERMARK_DELAY`].
pub fn event_stream(job: &JobBuilder, events: u64) -> Stream<Event> {
    let config = NexmarkConfig {
        events,
        ..NexmarkConfig::default()
    };
    job.source(
        EVENT_SOURCE,
        WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY, |event: &Event| {
            Timestamp(event.date_time())
        }),
        NexmarkSource::factory(config),
    )
    .uid(EVENT_SOURCE)
}

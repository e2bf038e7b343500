//! The generators as the sources of a job: [`bid_stream`] and [`event_stream`], with
//! the event time and watermarks of the benchmark.

use crate::{Bid, BidGeneratorConfig, BidSource, Event, NexmarkConfig, NexmarkSource};
use std::time::Duration;
use weir_dataflow::{JobBuilder, Stream, Timestamp, WatermarkStrategy};

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

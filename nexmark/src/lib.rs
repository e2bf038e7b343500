//! weir-nexmark: the Nexmark workload of weir — its data generators, its queries as
//! typed jobs, and the benchmark runner behind `weir bench nexmark`.
//!
//! - the generators: [`BidSource`], the deterministic bids of the benchmark
//!   (`shared/bench`), bit-exact with the Flink peer and generated without
//!   allocating; [`NexmarkSource`], the full Nexmark stream of persons, auctions and
//!   bids ([`Event`], see [`events`]). Each emits a pure function of a sequence
//!   number and checkpoints which numbers it has not emitted yet, so a restored job
//!   (at the same or another parallelism) emits every event exactly once;
//! - [`bid_stream`] and [`event_stream`]: those sources with the benchmark's event
//!   time and watermarks;
//! - the queries ([`Query`]: q0 q1 q2 qw q5 q7 qs over bids, q3 q8 over events, see
//!   [`queries`]), each a function from a stream to a stream, and [`build_query`],
//!   [`run_blackhole`], [`run_stdout`], [`run_checkpointed`] to run one end to end;
//! - [`mod@bench`]: a query over a generator into a blackhole sink, with its throughput.
//!
//! ```text
//!  weir-dataflow ─▶ weir-sources (split::Position) ─┐
//!                   weir-sinks (blackhole, stdout) ─┼─▶ weir-nexmark ─▶ weir (CLI: query, bench)
//!                                                  └──────────────▶ weir-server (job files: `kind: nexmark`)
//!
//!  BidSource ─────▶ bid_stream ───▶ q0 q1 q2 qw q5 q7 qs ─┐
//!  NexmarkSource ─▶ event_stream ─▶ q3 q8 ────────────────┴─▶ sink
//! ```
//!
//! ```
//! use weir_dataflow::{JobBuilder, JobConfig};
//! use weir_nexmark::{bid, bid_stream, q2};
//! use weir_sinks::CollectSink;
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let (sink, rows) = CollectSink::new();
//! q2(&bid_stream(&job, 10_000, 10)).sink("collect", sink);
//! job.execute().unwrap();
//! let expected = (1..=10_000).filter(|&i| bid(i, 10_000, 2, 10).auction % 123 == 0).count();
//! assert_eq!(rows.take().len(), expected);
//! ```
#![deny(missing_docs)]

pub mod bench;
mod bid;
pub mod events;
pub mod queries;
mod streams;

pub use bid::{
    bid, Bid, BidGenerator, BidGeneratorConfig, BidSource, BASE_TIME_MS, CHANNELS, EXTRA_TEXT,
    URL_TEXT,
};
pub use events::{nexmark_event, Auction, Event, NexmarkConfig, NexmarkSource, Person};
pub use queries::*;
pub use streams::{
    bid_stream, event_stream, BID_SOURCE, DEFAULT_ROWS_PER_MS, EVENT_SOURCE, WATERMARK_DELAY,
};

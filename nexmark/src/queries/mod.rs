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
//! with the right record type: the generators ([`bid_stream`](crate::bid_stream), [`event_stream`](crate::event_stream)), a
//! collection in tests, or a log. Stateful operators have stable uids (`qw-tumbling`,
//! `q5-hop-count`, …) so their state survives changes to the rest of the job; the
//! uids are fixed, so building the same query twice in one job is reported as an
//! invalid job (duplicate uid).
//!
//! ```
//! use weir_dataflow::{JobBuilder, JobConfig};
//! use weir_nexmark::{bid_stream, qw};
//! use weir_sinks::CollectSink;
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

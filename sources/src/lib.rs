//! weir-sources: the sources of weir's benchmarks and tests.
//!
//! - [`BidSource`]: the deterministic bids of the benchmark (`shared/bench`),
//!   bit-exact with the Flink peer, generated without allocating;
//! - [`NexmarkSource`]: the full Nexmark event stream of persons, auctions and bids
//!   ([`Event`]);
//! - [`SequenceSource`]: the numbers of an `i64` range;
//! - [`CollectionSource`]: the records of a `Vec` (for tests);
//! - [`kafka::KafkaSource`]: a Kafka topic, its offsets part of every checkpoint;
//! - [`FileSource`]: JSON lines or CSV rows from files or objects (local, S3), its
//!   read positions part of every checkpoint.
//!
//! Each is a [`weir_dataflow::Source`] instantiated once per subtask by a factory;
//! the generators emit pure functions of a sequence number and checkpoint which
//! numbers they have not emitted yet, so a restored job (at the same or another
//! parallelism) emits every record exactly once.
//!
//! ```text
//!  BidSource ─┐
//!  NexmarkSource ─┼─▶ job.source(name, WatermarkStrategy, factory) ─▶ Stream<T> ─▶ … ─▶ sink
//!  SequenceSource ─┘
//! ```
//!
//! ```
//! use std::time::Duration;
//! use weir_dataflow::testing::CollectSink;
//! use weir_dataflow::{JobBuilder, JobConfig, Timestamp, WatermarkStrategy};
//! use weir_sources::{bid, Bid, BidGeneratorConfig, BidSource};
//!
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let config = BidGeneratorConfig { events: 1_000, rows_per_ms: 10, source_parallelism: 2 };
//! let (sink, collected) = CollectSink::new();
//! job.source(
//!     "bids",
//!     WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(4), |b: &Bid| {
//!         Timestamp(b.date_time)
//!     }),
//!     BidSource::factory(config),
//! )
//! .filter(|b| b.auction % 123 == 0)
//! .sink("collect", sink);
//! job.execute().unwrap();
//! let expected = (1..=1_000).filter(|&i| bid(i, 1_000, 2, 10).auction % 123 == 0).count();
//! assert_eq!(collected.len(), expected);
//! ```
#![deny(missing_docs)]

mod bid;
pub mod file;
pub mod kafka;
pub mod nexmark;
mod sequence;
mod split;

pub use bid::{
    bid, Bid, BidGenerator, BidGeneratorConfig, BidSource, BASE_TIME_MS, CHANNELS, EXTRA_TEXT,
    URL_TEXT,
};
pub use file::{FileFormat, FileSource, FileSourceConfig};
pub use kafka::{KafkaRecord, KafkaSource, KafkaSourceConfig, KafkaSourceMetrics, StartPosition};
pub use nexmark::{nexmark_event, Auction, Event, NexmarkConfig, NexmarkSource, Person};
pub use sequence::SequenceSource;
pub use weir_dataflow::testing::CollectionSource;

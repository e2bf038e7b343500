//! weir-sources: the connectors that bring records into a weir job.
//!
//! - [`SequenceSource`]: the numbers of an `i64` range;
//! - [`CollectionSource`]: the records of a `Vec` (for tests);
//! - [`kafka::KafkaSource`]: a Kafka topic, its offsets part of every checkpoint;
//! - [`FileSource`]: JSON lines or CSV rows from files or objects (local, S3), its
//!   read positions part of every checkpoint;
//! - [`split::Position`]: the checkpointed position of a generator source (which
//!   sequence numbers a subtask has not emitted yet), shared with the generators of
//!   `weir-nexmark`.
//!
//! Each is a [`weir_dataflow::Source`] instantiated once per subtask by a factory.
//! Every source checkpoints what it has not read yet, so a restored job (at the same
//! or another parallelism) reads every record exactly once.
//!
//! ```text
//!  SequenceSource ─┐
//!  KafkaSource ────┼─▶ job.source(name, WatermarkStrategy, factory) ─▶ Stream<T> ─▶ … ─▶ sink
//!  FileSource ─────┘
//! ```
//!
//! ```
//! use weir_dataflow::testing::CollectSink;
//! use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
//! use weir_sources::SequenceSource;
//!
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let (sink, collected) = CollectSink::new();
//! job.source("numbers", WatermarkStrategy::none(), SequenceSource::factory(1, 1_000))
//!     .filter(|n| n % 3 == 0)
//!     .sink("collect", sink);
//! job.execute().unwrap();
//! assert_eq!(collected.len(), 333);
//! ```
#![deny(missing_docs)]

pub mod file;
pub mod kafka;
mod sequence;
pub mod split;

pub use file::{FileSource, FileSourceConfig, RecordMap};
pub use kafka::{KafkaRecord, KafkaSource, KafkaSourceConfig, KafkaSourceMetrics, StartPosition};
pub use sequence::SequenceSource;
pub use weir_dataflow::testing::CollectionSource;
pub use weir_objects::FileFormat;

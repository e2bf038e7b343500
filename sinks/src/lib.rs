//! weir-sinks: where weir's pipelines end.
//!
//! - [`BlackholeSink`]: counts and drops records (benchmarks);
//! - [`CollectSink`]: collects records in memory, read through [`Collected`] (tests);
//! - [`StdoutJsonSink`]: one JSON line per record on standard output, built on
//!   [`JsonLinesSink`], which writes to any [`std::io::Write`];
//! - [`EpochFileSink`]: exactly-once JSON lines in a local directory (epochs in memory);
//! - [`ObjectFileSink`]: exactly-once JSON lines or CSV part files on a local directory
//!   or S3, staged and moved to their final names when checkpoints complete; read back
//!   with [`read_committed_objects`];
//! - [`KafkaSink`]: a Kafka topic, exactly-once (transactions committed when
//!   checkpoints complete), at-least-once or without guarantee;
//! - [`kafka_log`]: a topic's read_committed view computed from its raw log, on any
//!   broker (what `weir verify` and the tests compare).
//!
//! ```text
//!  source ─▶ … ─▶ stream.sink(name, factory) ─▶ BlackholeSink │ CollectSink │ StdoutJsonSink
//! ```
//!
//! Each is a [`weir_dataflow::Sink`] instantiated once per subtask by a factory.
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use weir_dataflow::testing::CollectionSource;
//! use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
//! use weir_sinks::{BlackholeSink, CollectSink};
//!
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let numbers = job.source(
//!     "numbers",
//!     WatermarkStrategy::none(),
//!     CollectionSource::factory((1..=1000u64).collect()),
//! );
//! let (blackhole, count) = BlackholeSink::new();
//! numbers.sink("blackhole", blackhole);
//! let (collect, collected) = CollectSink::new();
//! numbers.filter(|x| x % 100 == 0).sink("collect", collect);
//! job.execute().unwrap();
//! assert_eq!(count.load(Ordering::Relaxed), 1000);
//! assert_eq!(collected.len(), 10);
//! ```
#![deny(missing_docs)]

mod blackhole;
mod epoch_file;
mod failpoint;
mod json;
pub mod kafka;
pub mod kafka_log;
mod object_files;

pub use blackhole::BlackholeSink;
pub use epoch_file::{read_committed, EpochFileSink};
pub use failpoint::{CommitFailpoint, CommitStep};
pub use json::{JsonLinesSink, StdoutJsonSink};
pub use kafka::{DeliveryGuarantee, KafkaSink, KafkaSinkConfig, KafkaSinkMetrics};
pub use object_files::{
    committed_parts, read_committed_objects, CommittedPart, FileSinkConfig, FileSinkMetrics,
    ObjectFileSink,
};
pub use weir_dataflow::testing::{CollectSink, Collected};
pub use weir_objects::FileFormat;

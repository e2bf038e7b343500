//! weir: a stream-processing engine in the style of Apache Flink.
//!
//! This package ties the workspace together: it re-exports the crates (so
//! `weir::dataflow`, `weir::nexmark`, `weir::server`, … are one dependency away),
//! holds the state and Kafka benchmark runners and the crash-test job, and builds
//! the `weir` binary (a thin command line, one module per subcommand in `src/cli/`).
//!
//! ```text
//!   weir-state ──────┐
//!                    ├─▶ weir-dataflow ─▶ weir-sources, weir-sinks ─▶ weir-nexmark ─┐
//!   weir-checkpoint ─┘                    weir-jobfile ──────────────▶ weir-server ──┴─▶ weir (CLI)
//! ```
//!
//! ```
//! use weir::dataflow::{JobBuilder, JobConfig};
//! use weir::nexmark::{bid_stream, q2};
//! use weir::sinks::CollectSink;
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let (sink, rows) = CollectSink::new();
//! q2(&bid_stream(&job, 100_000, 10)).sink("collect", sink);
//! job.execute().unwrap();
//! assert!(rows.take().iter().all(|row| row.auction % 123 == 0));
//! ```
#![deny(missing_docs)]

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod inspect;
pub mod job_bench;
pub mod kafka_bench;
pub mod running_count;
pub mod state_bench;
pub mod state_read;
pub mod verify;

pub use weir_checkpoint as checkpoint;
pub use weir_dataflow as dataflow;
pub use weir_jobfile as jobfile;
pub use weir_net as net;
pub use weir_nexmark as nexmark;
pub use weir_server as server;
pub use weir_server::{jobs, metrics};
pub use weir_sinks as sinks;
pub use weir_sources as sources;
pub use weir_sql as sql;
pub use weir_state as state;

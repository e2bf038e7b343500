//! weir-dataflow: the typed stream API, the job graph, operators, windows, joins and
//! the runtime that runs them.
//!
//! ```text
//!  JobBuilder ─▶ Stream<T> ─map/filter/key_by/window/join…─▶ sink
//!       │
//!   execute(): graph ─▶ chains (forward edges, equal parallelism) ─▶ one thread per subtask
//!              channels: bounded, batched Message<T> (Batch | Watermark | Idle | Barrier | EndOfInput)
//!   per task:  BarrierAligner (align.rs) and WatermarkValve (watermark.rs), pure logic
//!   checkpointing: the driver around weir-checkpoint's Coordinator; state files are
//!              written and read back by weir-checkpoint (incremental, native, restore)
//! ```
//!
//! ```
//! use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
//! use weir_dataflow::testing::{CollectionSource, CollectSink};
//! let job = JobBuilder::new(JobConfig { parallelism: 2, ..JobConfig::default() });
//! let (sink, collected) = CollectSink::new();
//! job.source("numbers", WatermarkStrategy::none(), CollectionSource::factory((1..=100u64).collect()))
//!     .map(|x| x * 2)
//!     .filter(|x| x % 3 == 0)
//!     .sink("collect", sink);
//! job.execute().unwrap();
//! let mut out = collected.take();
//! out.sort();
//! assert_eq!(out.len(), 33);
//! assert_eq!(out[0], 6);
//! ```
#![deny(missing_docs)]

mod align;
pub mod broadcast;
pub mod checkpointing;
mod error;
mod exchange;
mod graph;
mod job;
pub mod join;
mod keyed_state;
mod message;
mod metrics;
mod operator;
mod ops;
pub mod process;
pub mod query;
mod sink;
mod source;
mod stage;
mod stream;
mod task;
pub mod temporal;
pub mod testing;
mod time;
mod watermark;
pub mod window;
pub mod wire;

pub use align::{AlignmentStep, BarrierAligner};
pub use error::{DataflowError, Result};
pub use graph::{Data, EdgeKind};
pub use job::{
    EdgeView, GraphView, JobConfig, JobHandle, JobResult, MetricsView, SubtaskMetrics, VertexRole,
    VertexView,
};
pub use keyed_state::{KeyedStateHandle, KeyedStateStore};
pub use message::Message;
pub use metrics::{Gauge, GaugeFn, OperatorMetrics};
pub use operator::{FrozenState, Operator, OperatorContext, Output, SnapshotContext, SubtaskInfo};
pub use ops::{Filter, FlatMap, Identity, Map};
pub use sink::Sink;
pub use source::{Source, SourceOutput, SourcePoll, SplitId, TimestampAssigner, WatermarkStrategy};
pub use stream::{JobBuilder, KeySelector, KeyedStream, SinkHandle, Stream};
pub use task::{JobEvent, TaskCommand};
pub use time::{duration_ms, Timestamp};
pub use watermark::{InputWatermark, InputWatermarks, WatermarkStep, WatermarkValve};
pub use weir_checkpoint::{
    Barrier, BarrierKind, CheckpointId, OpenedInstance, OperatorSnapshot, OperatorUid,
    RestoreState, SubtaskAck,
};
pub use weir_state as state;

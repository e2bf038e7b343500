//! What several end-to-end test files share.
//!
//! Each test file is a crate of its own that uses only some of these helpers.
#![allow(dead_code)]

pub mod kafka_log;
pub mod s3;
pub mod server;
pub mod typed;

#[allow(unused_imports)]
pub use weir_testkit::kafka as kafka_services;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir::checkpoint::{CoordinatorConfig, StorageConfig};
use weir::dataflow::checkpointing::{CheckpointingConfig, RestartStrategy, ResumeFrom};
use weir::dataflow::process::{KeyedProcessFunction, ProcessContext};
use weir::dataflow::state::ValueState;
use weir::dataflow::Result;
use weir::dataflow::{JobConfig, KeyedStateHandle, OperatorContext};

/// Running count per key of `(key, seq)` records, emitting `(key, count)`; fails once
/// (the first time it sees `seq == fail_at`) if asked.
pub struct RunningCount {
    pub counts: KeyedStateHandle<ValueState<u32, u64>>,
    pub fail_at: Option<(u64, Arc<AtomicBool>)>,
}

impl RunningCount {
    /// The count of a subtask (restored, if the job is), failing once at `fail_at`
    /// if given.
    pub fn open(cx: &mut OperatorContext, fail_at: Option<(u64, Arc<AtomicBool>)>) -> Result<Self> {
        Ok(Self {
            counts: cx.keyed_state(|backend| ValueState::in_backend(backend, "counts"))?,
            fail_at,
        })
    }
}

impl KeyedProcessFunction<u32, (u32, u64)> for RunningCount {
    type Out = (u32, u64);
    fn process(
        &mut self,
        value: (u32, u64),
        cx: &mut ProcessContext<'_, u32, (u32, u64)>,
    ) -> Result<()> {
        if let Some((at, failed)) = &self.fail_at {
            if value.1 == *at && !failed.swap(true, Ordering::SeqCst) {
                return Err(weir::dataflow::DataflowError::operator(
                    "running-count",
                    0,
                    "injected failure",
                ));
            }
        }
        let mut counts = self.counts.lock()?;
        let count = counts.get_or_insert_with(value.0, || 0)?;
        *count += 1;
        let count = *count;
        cx.emit((value.0, count));
        Ok(())
    }
}

/// Checkpoints to `checkpoints` every `interval`, savepoints to `savepoints`, up to
/// 3 restarts 50 ms apart, starting from `resume`.
pub fn checkpointing(
    checkpoints: StorageConfig,
    savepoints: StorageConfig,
    interval: Duration,
    resume: ResumeFrom,
) -> CheckpointingConfig {
    CheckpointingConfig {
        storage: checkpoints,
        savepoints,
        coordinator: CoordinatorConfig {
            interval,
            ..CoordinatorConfig::default()
        },
        restart: RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::from_millis(50),
        },
        resume,
        ..CheckpointingConfig::default()
    }
}

/// [`checkpointing`] into `<root>/checkpoints` and `<root>/savepoints`.
pub fn local_checkpointing(
    root: &Path,
    interval: Duration,
    resume: ResumeFrom,
) -> CheckpointingConfig {
    let at = |dir: &str| StorageConfig::new(root.join(dir).display().to_string());
    checkpointing(at("checkpoints"), at("savepoints"), interval, resume)
}

/// Job `name` at `parallelism` with small batches (64 records).
pub fn job_config(name: &str, parallelism: usize) -> JobConfig {
    JobConfig {
        name: name.into(),
        parallelism,
        batch_size: 64,
        ..JobConfig::default()
    }
}

//! `weir bench state`: what checkpoints cost for a given amount of heap state, and
//! how long a restore of it takes.
//!
//! A sequence `1..=events` is keyed by `n % keys` into a count per key (so the first
//! `keys` numbers create every key, and later ones update them uniformly, or only
//! the first `hot_keys` of them), with
//! checkpoints at an interval. Reported per checkpoint: duration, the longest
//! task-thread pause (the synchronous part of the snapshot), bytes uploaded and
//! bytes of state referred to. Then the job is started again from its newest
//! checkpoint and the time until every subtask has its state back is measured.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_checkpoint::{CoordinatorConfig, StorageConfig};
use weir_dataflow::checkpointing::{
    CheckpointStats, CheckpointedJob, CheckpointingConfig, JobListener, JobStatus, NoListener,
    RestartStrategy, RestoreEvent, ResumeFrom,
};
use weir_dataflow::state::StateTable;
use weir_dataflow::{
    DataflowError, JobConfig, KeyedStateHandle, Operator, OperatorContext, Output, Result,
    WatermarkStrategy,
};
use weir_sinks::BlackholeSink;
use weir_sources::SequenceSource;

/// Settings of one state benchmark.
#[derive(Clone, Debug)]
pub struct StateBenchOptions {
    /// Distinct keys.
    pub keys: u64,
    /// Numbers to count (at least `keys`, so that every key exists).
    pub events: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Checkpoint interval.
    pub interval: Duration,
    /// Checkpoint storage URL.
    pub checkpoint_dir: String,
    /// Incremental checkpoints (the default) or full ones.
    pub incremental: bool,
    /// After the first `keys` numbers, only keys `0..hot_keys` are updated (default:
    /// all keys): how incremental checkpoints fare when few keys change.
    pub hot_keys: u64,
    /// Where keyed state lives (heap or RocksDB).
    pub state_backend: weir_state::StateBackend,
    /// Before the restore, delete RocksDB's local copies of the checkpoint, so the
    /// restore downloads every file from checkpoint storage instead of recovering
    /// locally.
    pub discard_local_copies: bool,
    /// After the restore, delete the local copies and restore again (from the
    /// restored run's final checkpoint, which refers to the same files), so one run
    /// times both a local recovery and a download.
    pub restore_again_from_storage: bool,
}

/// One checkpoint of the run.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointFigures {
    /// Checkpoint number.
    pub checkpoint: u64,
    /// End-to-end duration, ms.
    pub duration_ms: f64,
    /// Longest synchronous part of a subtask holding the state (the counting
    /// task's), ms: how long a snapshot stops the processing of records.
    pub pause_ms: f64,
    /// Longest synchronous part of the other subtasks (the sources'), ms. A
    /// source's includes handing the barrier on, which waits while the channel
    /// downstream is full (backpressure), so it measures the pipeline, not state.
    pub other_pause_ms: f64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes of state referred to.
    pub state_bytes: u64,
}

/// What `weir bench state` prints.
#[derive(Clone, Debug, Serialize)]
pub struct StateBenchReport {
    /// Distinct keys.
    pub keys: u64,
    /// Numbers counted.
    pub events: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Incremental checkpoints?
    pub incremental: bool,
    /// Keys updated after the first pass over all keys.
    pub hot_keys: u64,
    /// Run time of the checkpointed run, s.
    pub elapsed_s: f64,
    /// Numbers per second.
    pub events_per_s: f64,
    /// Completed checkpoints.
    pub checkpoints: Vec<CheckpointFigures>,
    /// Median checkpoint duration over the checkpoints taken with every key present.
    pub full_state_duration_p50_ms: Option<f64>,
    /// Median task-thread pause over the same checkpoints.
    pub full_state_pause_p50_ms: Option<f64>,
    /// Longest task-thread pause over the same checkpoints.
    pub full_state_pause_max_ms: Option<f64>,
    /// Median bytes uploaded over the same checkpoints.
    pub full_state_bytes_p50: Option<u64>,
    /// Bytes of state of the newest checkpoint.
    pub state_bytes: u64,
    /// From the start of the restored run until the state files were read, s.
    pub restore_read_s: f64,
    /// From the start of the restored run until every subtask had its state back, s.
    pub restore_s: f64,
    /// Keys restored.
    pub restored_keys: u64,
    /// Bytes the restored run's first checkpoint uploaded (RocksDB: the SST files
    /// of an instance opened from the checkpoint are referred to, not uploaded).
    pub restored_first_checkpoint_bytes: Option<u64>,
    /// Bytes of state that checkpoint refers to.
    pub restored_first_checkpoint_state_bytes: Option<u64>,
    /// With `restore_again_from_storage`: the second restore's `restore_read_s` and
    /// `restore_s`, from checkpoint storage.
    pub storage_restore_read_s: Option<f64>,
    /// See `storage_restore_read_s`.
    pub storage_restore_s: Option<f64>,
    /// Peak resident memory of the process, MiB.
    pub peak_memory_mib: f64,
}

const STATE: &str = "counts";

/// Counts per key; records when its state is back after a restore.
struct CountPerKey {
    /// Registered in `open`.
    counts: Option<KeyedStateHandle<StateTable<u64, u64>>>,
    opened: Arc<Mutex<Vec<(Instant, u64)>>>,
}

impl Operator for CountPerKey {
    type In = u64;
    type Out = u64;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        let counts = cx.keyed_state(|b| StateTable::in_backend(b, STATE, Vec::new()))?;
        // The keys the table holds: a RocksDB instance opened from a native
        // checkpoint restores them without writing them again.
        let restored = counts.lock()?.len() as u64;
        self.counts = Some(counts);
        if let Ok(mut opened) = self.opened.lock() {
            opened.push((Instant::now(), restored));
        }
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<u64>, _: &mut Output<u64>) -> Result<()> {
        let mut counts = match &self.counts {
            Some(counts) => counts.lock()?,
            None => return Err(DataflowError::invalid("count-per-key", "used before open")),
        };
        for key in input.drain(..) {
            *counts.get_or_insert_with(key, || 0)? += 1;
        }
        Ok(())
    }
}

/// The operator holding the state (its name and uid).
const COUNTING: &str = "count-per-key";

/// What one restore took.
struct Restored {
    read_s: f64,
    restored_s: f64,
    keys: u64,
    /// Bytes uploaded by, and state referred to by, the restored run's first
    /// checkpoint.
    first_checkpoint: Option<(u64, u64)>,
}

/// Reports when the state files have been read.
struct ReadListener(Mutex<Option<Instant>>);

impl JobListener for ReadListener {
    fn on_status(&self, _: &str, _: JobStatus) {}
    fn on_restore(&self, _: &str, event: &RestoreEvent) {
        if let RestoreEvent::Finished { .. } = event {
            if let Ok(mut read) = self.0.lock() {
                *read = Some(Instant::now());
            }
        }
    }
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> Option<T> {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values.get(values.len() / 2).copied()
}

/// Deletes every `local` directory (RocksDB's local checkpoint copies) under `dir`.
fn discard_local_copies(dir: &std::path::Path) -> std::io::Result<()> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                if entry.file_name() == "local" {
                    std::fs::remove_dir_all(entry.path())?;
                } else {
                    pending.push(entry.path());
                }
            }
        }
    }
    Ok(())
}

/// Runs the benchmark: a checkpointed run, then a restore of its newest checkpoint.
///
/// # Errors
/// Storage errors, or a job failure.
pub fn run(options: &StateBenchOptions) -> Result<StateBenchReport, DataflowError> {
    let name = format!("bench-state-{}", std::process::id());
    let config = JobConfig {
        name: name.clone(),
        parallelism: options.parallelism,
        state_backend: options.state_backend.clone(),
        ..JobConfig::default()
    };
    let checkpointing = |resume| CheckpointingConfig {
        storage: StorageConfig::new(options.checkpoint_dir.clone()),
        coordinator: CoordinatorConfig {
            interval: options.interval,
            ..CoordinatorConfig::default()
        },
        restart: RestartStrategy::None,
        resume,
        incremental: options.incremental,
        ..CheckpointingConfig::default()
    };
    let opened = Arc::new(Mutex::new(Vec::new()));
    let build = {
        let (keys, events, opened) = (options.keys.max(1), options.events, opened.clone());
        let hot = options.hot_keys.clamp(1, keys);
        move |job: &weir_dataflow::JobBuilder| {
            let opened = opened.clone();
            job.source(
                "numbers",
                WatermarkStrategy::none(),
                SequenceSource::factory(0, events as i64 - 1),
            )
            .uid("numbers")
            .map(move |n: i64| {
                let n = n.unsigned_abs();
                if n < keys {
                    n
                } else {
                    n % hot
                }
            })
            .key_by(|k: &u64| *k)
            .transform(COUNTING, move |_| CountPerKey {
                counts: None,
                opened: opened.clone(),
            })
            .uid(COUNTING)
            .sink("blackhole", BlackholeSink::new().0);
        }
    };
    let summary = CheckpointedJob::spawn(
        config.clone(),
        checkpointing(ResumeFrom::Nothing),
        build.clone(),
        Arc::new(NoListener),
    )?
    .wait()?;
    let elapsed_s = summary.elapsed.as_secs_f64();
    let figures: Vec<CheckpointFigures> = summary.checkpoints.iter().map(figures).collect();
    let state_bytes = figures.last().map_or(0, |f| f.state_bytes);
    // Checkpoints taken once every key existed: their state is as big as it gets.
    let full: Vec<&CheckpointFigures> = figures
        .iter()
        .filter(|f| f.state_bytes * 10 >= state_bytes * 9)
        .collect();

    let restore = |discard: bool| -> Result<Restored, DataflowError> {
        opened.lock().map(|mut o| o.clear()).ok();
        if discard {
            if let weir_state::StateBackend::RocksDb(rocks) = &options.state_backend {
                discard_local_copies(&rocks.dir.join(&name)).map_err(|e| {
                    DataflowError::invalid(
                        &name,
                        format!("cannot delete local checkpoint copies: {e}"),
                    )
                })?;
            }
        }
        let listener = Arc::new(ReadListener(Mutex::new(None)));
        let started = Instant::now();
        let restored = CheckpointedJob::spawn(
            config.clone(),
            checkpointing(ResumeFrom::LatestCheckpoint),
            build.clone(),
            listener.clone(),
        )?
        .wait()?;
        let first = restored.checkpoints.iter().min_by_key(|c| c.checkpoint);
        let opened = opened.lock().map(|o| o.clone()).unwrap_or_default();
        Ok(Restored {
            read_s: listener
                .0
                .lock()
                .ok()
                .and_then(|r| *r)
                .map_or(0.0, |at| at.duration_since(started).as_secs_f64()),
            restored_s: opened
                .iter()
                .map(|(at, _)| at.duration_since(started).as_secs_f64())
                .fold(0.0, f64::max),
            keys: opened.iter().map(|(_, n)| n).sum(),
            first_checkpoint: first.map(|c| (c.bytes, c.state_bytes)),
        })
    };
    let first = restore(options.discard_local_copies)?;
    let again = if options.restore_again_from_storage {
        Some(restore(true)?)
    } else {
        None
    };
    Ok(StateBenchReport {
        keys: options.keys,
        events: options.events,
        parallelism: options.parallelism,
        incremental: options.incremental,
        hot_keys: options.hot_keys,
        elapsed_s,
        events_per_s: options.events as f64 / elapsed_s,
        full_state_duration_p50_ms: median(full.iter().map(|f| f.duration_ms).collect()),
        full_state_pause_p50_ms: median(full.iter().map(|f| f.pause_ms).collect()),
        full_state_pause_max_ms: full.iter().map(|f| f.pause_ms).reduce(f64::max),
        full_state_bytes_p50: median(full.iter().map(|f| f.bytes).collect()),
        checkpoints: figures,
        state_bytes,
        restore_read_s: first.read_s,
        restore_s: first.restored_s,
        restored_keys: first.keys,
        restored_first_checkpoint_bytes: first.first_checkpoint.map(|c| c.0),
        restored_first_checkpoint_state_bytes: first.first_checkpoint.map(|c| c.1),
        storage_restore_read_s: again.as_ref().map(|r| r.read_s),
        storage_restore_s: again.as_ref().map(|r| r.restored_s),
        peak_memory_mib: weir_nexmark::bench::peak_memory_mib(),
    })
}

/// The longest synchronous part, ms, over the subtasks of the counting task
/// (`counting`) or over the others.
fn longest_sync(stats: &CheckpointStats, counting: bool) -> f64 {
    let longest = stats
        .subtasks
        .iter()
        .filter(|s| s.task.contains(COUNTING) == counting)
        .map(|s| s.sync_us)
        .max();
    longest.unwrap_or(0) as f64 / 1e3
}

fn figures(stats: &CheckpointStats) -> CheckpointFigures {
    CheckpointFigures {
        checkpoint: stats.checkpoint.get(),
        duration_ms: stats.duration_ms,
        pause_ms: longest_sync(stats, true),
        other_pause_ms: longest_sync(stats, false),
        bytes: stats.bytes,
        state_bytes: stats.state_bytes,
    }
}

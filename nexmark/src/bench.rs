//! The benchmark runner behind `weir bench nexmark`: runs a Nexmark query over the
//! deterministic generator into a blackhole sink and reports throughput.

use crate::{BlackholeOutput, Query, BID_SOURCE, EVENT_SOURCE};
use serde::Serialize;
use std::time::Duration;
use weir_dataflow::{DataflowError, JobBuilder, JobConfig, MetricsView};

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The query.
    pub query: Query,
    /// Number of input events.
    pub events: u64,
    /// Parallelism of every operator.
    pub parallelism: usize,
    /// Records per channel batch.
    pub batch_size: usize,
    /// Bids per millisecond of event time (the bid generator's `rows_per_ms`).
    pub rows_per_ms: i64,
    /// Take checkpoints at this interval (`None`: checkpoints off).
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints go (any object-store URL).
    pub checkpoint_dir: String,
    /// Where keyed state lives (heap or RocksDB).
    pub state_backend: weir_state::StateBackend,
}

/// The figures of one benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The query's name.
    pub query: String,
    /// The state backend (`heap` or `rocksdb`).
    pub state_backend: String,
    /// Input events.
    pub events: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Wall time of the job (start of the tasks to the end of the last one), seconds.
    pub elapsed_s: f64,
    /// Input events per second.
    pub events_per_s: f64,
    /// Records that reached the sink.
    pub output_records: u64,
    /// Peak resident memory of the process, MiB (VmHWM).
    pub peak_memory_mib: f64,
    /// Completed checkpoints (with checkpoints on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<usize>,
    /// Median checkpoint duration, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_p50_ms: Option<f64>,
    /// 99th percentile checkpoint duration, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_p99_ms: Option<f64>,
    /// Median bytes uploaded per checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_bytes: Option<u64>,
    /// Median bytes of state the checkpoints refer to (incremental checkpoints upload
    /// only part of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_state_bytes: Option<u64>,
    /// Median over checkpoints of the longest synchronous snapshot part (the task
    /// thread's pause) of any subtask, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_sync_p50_ms: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

/// The peak resident set size of this process in MiB, from `/proc/self/status`.
pub fn peak_memory_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Input events consumed so far by a running job (the sources' output).
pub fn events_read(metrics: &MetricsView) -> u64 {
    metrics
        .snapshot()
        .iter()
        .filter(|m| m.operator == BID_SOURCE || m.operator == EVENT_SOURCE)
        .map(|m| m.records_out)
        .sum()
}

/// Runs one benchmark; `progress` is called about ten times a second (on another
/// thread) with the number of events read so far.
///
/// # Errors
/// An invalid configuration or a task failure.
pub fn run(
    options: &BenchOptions,
    progress: impl Fn(u64) + Send,
) -> Result<BenchReport, DataflowError> {
    if let Some(interval) = options.checkpoint_interval {
        return run_checkpointed(options, interval);
    }
    let job = JobBuilder::new(JobConfig {
        name: format!("nexmark-{}", options.query),
        parallelism: options.parallelism,
        batch_size: options.batch_size,
        state_backend: options.state_backend.clone(),
        ..JobConfig::default()
    });
    let mut output = BlackholeOutput::default();
    crate::build_query(
        &job,
        options.query,
        options.events,
        options.rows_per_ms,
        &mut output,
    );
    let handle = job.spawn()?;
    let metrics = handle.metrics_view();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            while done_rx.recv_timeout(Duration::from_millis(100)).is_err() {
                progress(events_read(&metrics));
            }
        });
        let result = handle.wait();
        let _ = done_tx.send(());
        result
    })?;
    let secs = result.elapsed.as_secs_f64();
    Ok(BenchReport {
        query: options.query.to_string(),
        state_backend: options.state_backend.name().to_string(),
        events: options.events,
        parallelism: options.parallelism,
        elapsed_s: secs,
        events_per_s: options.events as f64 / secs,
        output_records: output.count(),
        peak_memory_mib: peak_memory_mib(),
        checkpoints: None,
        checkpoint_p50_ms: None,
        checkpoint_p99_ms: None,
        checkpoint_bytes: None,
        checkpoint_state_bytes: None,
        checkpoint_sync_p50_ms: None,
    })
}

/// Runs one benchmark with checkpoints every `interval` to `options.checkpoint_dir`.
fn run_checkpointed(
    options: &BenchOptions,
    interval: Duration,
) -> Result<BenchReport, DataflowError> {
    use weir_checkpoint::{CoordinatorConfig, StorageConfig};
    use weir_dataflow::checkpointing::{
        CheckpointedJob, CheckpointingConfig, NoListener, RestartStrategy,
    };
    let config = JobConfig {
        name: format!("bench-nexmark-{}-{}", options.query, std::process::id()),
        parallelism: options.parallelism,
        batch_size: options.batch_size,
        state_backend: options.state_backend.clone(),
        ..JobConfig::default()
    };
    let checkpointing = CheckpointingConfig {
        storage: StorageConfig::new(options.checkpoint_dir.clone()),
        coordinator: CoordinatorConfig {
            interval,
            ..CoordinatorConfig::default()
        },
        restart: RestartStrategy::None,
        ..CheckpointingConfig::default()
    };
    let (query, events, rows_per_ms) = (options.query, options.events, options.rows_per_ms);
    let job = CheckpointedJob::spawn(
        config,
        checkpointing,
        move |job| {
            crate::build_query(
                job,
                query,
                events,
                rows_per_ms,
                &mut BlackholeOutput::default(),
            )
        },
        std::sync::Arc::new(NoListener),
    )?;
    let summary = job.wait()?;
    let output_records = summary
        .metrics
        .iter()
        .filter(|m| m.operator == "blackhole")
        .map(|m| m.records_in)
        .sum();
    Ok(checkpointed_report(
        &options.query.to_string(),
        options.state_backend.name(),
        options.events,
        options.parallelism,
        &summary,
        output_records,
    ))
}

/// The report of a checkpointed run that read `events` input events and put
/// `output_records` into its blackholes: throughput from the run's elapsed time,
/// checkpoint figures from its statistics, this process's peak memory. Shared by
/// `weir bench nexmark` and `weir bench job`.
pub fn checkpointed_report(
    query: &str,
    state_backend: &str,
    events: u64,
    parallelism: usize,
    summary: &weir_dataflow::checkpointing::RunSummary,
    output_records: u64,
) -> BenchReport {
    let secs = summary.elapsed.as_secs_f64();
    let mut durations: Vec<f64> = summary.checkpoints.iter().map(|c| c.duration_ms).collect();
    durations.sort_by(f64::total_cmp);
    let mut sync: Vec<f64> = summary
        .checkpoints
        .iter()
        .map(|c| c.subtasks.iter().map(|s| s.sync_us).max().unwrap_or(0) as f64 / 1e3)
        .collect();
    sync.sort_by(f64::total_cmp);
    let mut bytes: Vec<u64> = summary.checkpoints.iter().map(|c| c.bytes).collect();
    bytes.sort_unstable();
    let mut state_bytes: Vec<u64> = summary.checkpoints.iter().map(|c| c.state_bytes).collect();
    state_bytes.sort_unstable();
    BenchReport {
        query: query.to_string(),
        state_backend: state_backend.to_string(),
        events,
        parallelism,
        elapsed_s: secs,
        events_per_s: events as f64 / secs,
        output_records,
        peak_memory_mib: peak_memory_mib(),
        checkpoints: Some(summary.checkpoints.len()),
        checkpoint_p50_ms: percentile(&durations, 50.0),
        checkpoint_p99_ms: percentile(&durations, 99.0),
        checkpoint_bytes: bytes.get(bytes.len() / 2).copied(),
        checkpoint_state_bytes: state_bytes.get(state_bytes.len() / 2).copied(),
        checkpoint_sync_p50_ms: percentile(&sync, 50.0),
    }
}

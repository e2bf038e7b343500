//! The benchmark runner behind `weir bench job`: runs a job file with every sink
//! replaced by a blackhole and reports what `weir bench nexmark` reports, so a
//! declarative job and its typed twin compare figure for figure.
//!
//! ```text
//! job file ──load──▶ JobPlan ──sinks → blackhole, sources' event counts, checkpoints──▶ weir::jobs::run
//!                                                                                   │
//! BenchReport ◀── events read by the sources, rows into the blackholes, RunSummary ◀┘
//! ```

use anyhow::{bail, Context, Result};
use std::time::Duration;
use weir_jobfile::{JobPlan, SinkKind, SourceKind, StateBackend, Step};
use weir_nexmark::bench::{checkpointed_report, BenchReport};

/// What to change in the job file for the benchmark.
#[derive(Clone, Debug, Default)]
pub struct JobBenchOptions {
    /// Events of every generator source (`bids`, `nexmark`; a `sequence` counts
    /// from its `from`); `None`: as the file says.
    pub events: Option<u64>,
    /// Default parallelism (overrides the file's).
    pub parallelism: Option<usize>,
    /// Checkpoint interval (overrides the file's).
    pub checkpoint_interval: Option<Duration>,
    /// Where the run's checkpoints go: a fresh directory under it, removed after.
    pub checkpoint_dir: String,
    /// State backend (overrides the file's).
    pub state_backend: Option<StateBackend>,
    /// The RocksDB backend's directory.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Runs `plan` as `options` say and reports its throughput.
///
/// # Errors
/// A source whose size cannot be set (Kafka, files) when `events` is given, or the
/// run fails.
pub fn run(mut plan: JobPlan, options: &JobBenchOptions) -> Result<BenchReport> {
    if let Some(events) = options.events {
        resize(&mut plan, events)?;
    }
    for sink in &mut plan.spec.sinks {
        sink.kind = SinkKind::Blackhole;
    }
    for sink in &mut plan.sinks {
        sink.spec.kind = SinkKind::Blackhole;
    }
    if let Some(interval) = options.checkpoint_interval {
        plan.spec.checkpoints.interval = interval;
    }
    if let Some(backend) = options.state_backend {
        plan.spec.state_backend = backend;
    }
    let checkpoints = std::path::Path::new(&options.checkpoint_dir).join(format!(
        "{}-{}",
        plan.spec.name,
        std::process::id()
    ));
    plan.spec.checkpoints.storage = checkpoints.display().to_string();
    let sources: Vec<String> = plan
        .spec
        .sources
        .iter()
        .map(|s| s.node.name.value.clone())
        .collect();
    let sinks: Vec<String> = plan
        .spec
        .sinks
        .iter()
        .map(|s| s.node.name.value.clone())
        .collect();
    let name = plan.spec.name.clone();
    let backend = match plan.spec.state_backend {
        StateBackend::Heap => "heap",
        StateBackend::RocksDb => "rocksdb",
    };
    let parallelism = options.parallelism.unwrap_or(plan.spec.parallelism);
    let run_options = crate::jobs::RunOptions {
        parallelism: options.parallelism,
        state_dir: options.state_dir.clone(),
        ..crate::jobs::RunOptions::default()
    };
    let summary = crate::jobs::run(plan, &run_options);
    let _ = std::fs::remove_dir_all(&checkpoints);
    let summary = summary.with_context(|| format!("job `{name}` failed"))?;
    let sum = |names: &[String], of: fn(&weir_dataflow::SubtaskMetrics) -> u64| -> u64 {
        summary
            .metrics
            .iter()
            .filter(|m| names.contains(&m.operator))
            .map(of)
            .sum()
    };
    let events = sum(&sources, |m| m.records_out);
    let output = sum(&sinks, |m| m.records_in);
    Ok(checkpointed_report(
        &name,
        backend,
        events,
        parallelism,
        &summary,
        output,
    ))
}

/// Makes every generator source of `plan` produce `events` events.
///
/// # Errors
/// A source that reads what is there (Kafka, files).
pub fn resize(plan: &mut JobPlan, events: u64) -> Result<()> {
    for source in &mut plan.spec.sources {
        set_events(&mut source.kind, events, &source.node.name.value)?;
    }
    for stream in &mut plan.streams {
        if let Step::Source(source, _) = &mut stream.step {
            set_events(&mut source.kind, events, &source.node.name.value)?;
        }
    }
    Ok(())
}

/// Makes generator source `name` produce `events` events.
fn set_events(kind: &mut SourceKind, events: u64, name: &str) -> Result<()> {
    match kind {
        SourceKind::Bids { events: n, .. } | SourceKind::Nexmark { events: n, .. } => *n = events,
        SourceKind::Sequence { from, to, .. } => {
            *to = from.saturating_add(i64::try_from(events).unwrap_or(i64::MAX) - 1);
        }
        SourceKind::Kafka { .. } | SourceKind::File { .. } => bail!(
            "source `{name}` reads what is there: --events applies only to generator sources (bids, nexmark, sequence)"
        ),
    }
    Ok(())
}

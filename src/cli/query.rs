//! `weir query`: a Nexmark query over the deterministic generator, its result rows on
//! stdout (optionally checkpointed, resuming from a checkpoint or a savepoint).

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::time::Duration;
use weir::nexmark::Query;

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// One JSON object per line on stdout.
    Json,
    /// Count the rows and print only the count.
    Count,
}

#[derive(Args)]
pub(crate) struct QueryArgs {
    /// The query: q0, q1, q2, qw, q5, q7, qs, q3, q8.
    query: Query,
    /// Number of input events.
    #[arg(long, short, default_value_t = 100_000)]
    events: u64,
    /// Parallelism of every operator.
    #[arg(long, short, default_value_t = 2)]
    parallelism: usize,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
    /// The job's name: its directory under the checkpoint storage (default
    /// `nexmark-<query>`).
    #[arg(long)]
    job: Option<String>,
    /// Take checkpoints to this storage: a path, file:// or s3://bucket/prefix URL.
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Checkpoint interval, e.g. `1s` (with --checkpoint-dir; default 1s).
    #[arg(long, value_parser = super::duration)]
    checkpoint_interval: Option<Duration>,
    /// Where savepoints go (default ./weir-data/savepoints).
    #[arg(long)]
    savepoint_dir: Option<String>,
    /// Resume from the newest complete checkpoint of the job under --checkpoint-dir.
    #[arg(long, conflicts_with = "from_savepoint")]
    resume: bool,
    /// Resume from this savepoint (a directory path or URL).
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Start even if the restored state has operators this job lacks.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// With --resume: when the newest complete checkpoint cannot be restored, resume
    /// from an older one anyway (its output may be written twice; refused otherwise).
    #[arg(long)]
    fallback_past_corrupt: bool,
}

pub(crate) fn query(args: QueryArgs) -> Result<()> {
    let config = weir::dataflow::JobConfig {
        name: args
            .job
            .clone()
            .unwrap_or_else(|| format!("nexmark-{}", args.query)),
        parallelism: args.parallelism,
        ..weir::dataflow::JobConfig::default()
    };
    let checkpointed = args.checkpoint_dir.is_some()
        || args.checkpoint_interval.is_some()
        || args.resume
        || args.from_savepoint.is_some();
    if checkpointed {
        use weir::checkpoint::{CoordinatorConfig, StorageConfig};
        use weir::dataflow::checkpointing::{CheckpointingConfig, ResumeFrom};
        let defaults = CheckpointingConfig::default();
        let checkpointing = CheckpointingConfig {
            storage: args
                .checkpoint_dir
                .clone()
                .map_or(defaults.storage.clone(), StorageConfig::new),
            savepoints: args
                .savepoint_dir
                .clone()
                .map_or(defaults.savepoints.clone(), StorageConfig::new),
            coordinator: CoordinatorConfig {
                interval: args.checkpoint_interval.unwrap_or(Duration::from_secs(1)),
                ..CoordinatorConfig::default()
            },
            resume: ResumeFrom::choose(args.from_savepoint.clone(), args.resume),
            allow_non_restored_state: args.allow_non_restored_state,
            fallback_past_corrupt: args.fallback_past_corrupt,
            ..defaults
        };
        let count_only = matches!(args.output, OutputFormat::Count);
        let summary = match weir::nexmark::run_checkpointed(
            args.query,
            config,
            args.events,
            checkpointing,
            count_only,
        ) {
            Err(weir::dataflow::DataflowError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return Ok(());
            }
            result => result.with_context(|| format!("query {} failed", args.query))?,
        };
        if count_only {
            let rows: u64 = summary
                .metrics
                .iter()
                .filter(|m| m.operator == "blackhole")
                .map(|m| m.records_in)
                .sum();
            println!("{rows}");
        }
        eprintln!(
            "weir: job {:?}; restored from {}; {} checkpoints completed, {} failed; {} restarts{}",
            summary.status,
            summary
                .restored_from
                .map_or("nothing".to_string(), |c| format!("checkpoint {}", c.get())),
            summary.checkpoints.len(),
            summary.failed_checkpoints,
            summary.restarts,
            summary
                .savepoint
                .map_or(String::new(), |s| format!("; savepoint {s}"))
        );
        return Ok(());
    }
    match args.output {
        OutputFormat::Json => match weir::nexmark::run_stdout(args.query, config, args.events) {
            // The reader of our output went away (`| head`): a normal end.
            Err(weir::dataflow::DataflowError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::BrokenPipe => {}
            result => result.with_context(|| format!("query {} failed", args.query))?,
        },
        OutputFormat::Count => {
            let run = weir::nexmark::run_blackhole(args.query, config, args.events)
                .with_context(|| format!("query {} failed", args.query))?;
            println!("{}", run.output_records);
        }
    }
    Ok(())
}

//! `weir verify JOB`: crash a job again and again and prove its committed output is
//! the failure-free run's, row for row (see `weir::verify`).

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Failpoints {
    /// Every other crash aborts at a step of the checkpoint protocol or a sink's commit.
    All,
    /// SIGKILL only.
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// Hash maps in memory.
    Heap,
    /// RocksDB (builds with `--features rocksdb`).
    Rocksdb,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The job file: deterministic input (generators, files, bounded Kafka topics read
    /// from the earliest offsets), output to `file` or exactly-once `kafka` sinks.
    file: std::path::PathBuf,
    /// Crashes injected into the second run.
    #[arg(long, default_value_t = 20)]
    crashes: u32,
    /// Which crashes besides SIGKILL.
    #[arg(long, value_enum, default_value_t = Failpoints::All)]
    failpoints: Failpoints,
    /// State backend of both runs (default: the job file's).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Checkpoint storage of both runs, a directory or URL such as s3://bucket/prefix
    /// (file sinks then write there too); default: under --scratch.
    #[arg(long)]
    storage: Option<String>,
    /// Local directory for the runs' state and local outputs.
    #[arg(long, default_value = "./weir-data/verify")]
    scratch: std::path::PathBuf,
    /// Seed of the crash schedule (default: from the clock; the report prints it).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep both runs' checkpoints and outputs even when they match.
    #[arg(long)]
    keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No line per crash on standard error.
    #[arg(long, short)]
    quiet: bool,
}

/// `weir verify FILE`: exits non-zero when any row was lost or duplicated.
pub(crate) fn verify(args: VerifyArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let config = weir::verify::VerifyConfig {
        job: args.file.clone(),
        crashes: args.crashes,
        failpoints: args.failpoints == Failpoints::All,
        backend: args.backend.map(|b| match b {
            Backend::Heap => weir::jobfile::StateBackend::Heap,
            Backend::Rocksdb => weir::jobfile::StateBackend::RocksDb,
        }),
        storage: args.storage,
        scratch: args.scratch,
        seed,
        keep: args.keep,
        exe: std::env::current_exe().context("finding the weir binary to run the job with")?,
        progress: !args.quiet,
    };
    let report = weir::verify::verify(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if !report.passed() {
        bail!(
            "{}: {} rows lost and {} duplicated after {} crashes",
            args.file.display(),
            report.lost(),
            report.duplicated(),
            report.crashes()
        );
    }
    Ok(())
}

//! `weir validate` and `weir run`: check a job file, or run it embedded in this
//! process with checkpoints.

use anyhow::{anyhow, Context, Result};
use clap::Args;
use std::path::Path;
use weir::jobfile::{JobPlan, Registry};

#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// The job file (see docs/job-files.md).
    file: std::path::PathBuf,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The job file (see docs/job-files.md).
    file: std::path::PathBuf,
    /// Resume from this savepoint (a directory path or URL).
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Resume from the newest complete checkpoint of the job.
    #[arg(long, conflicts_with = "from_savepoint")]
    resume: bool,
    /// Default parallelism of the operators (overrides the file's `parallelism`).
    #[arg(long, short)]
    parallelism: Option<usize>,
    /// Start even if the restored state has operators this job lacks.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// With --resume: when the newest complete checkpoint cannot be restored, resume
    /// from an older one anyway (its output may be written twice; refused otherwise).
    #[arg(long)]
    fallback_past_corrupt: bool,
    /// Where savepoints go (default ./weir-data/savepoints).
    #[arg(long)]
    savepoint_dir: Option<String>,
}

/// `weir validate FILE`.
pub(crate) fn validate(args: ValidateArgs) -> Result<()> {
    let plan = load(&args.file)?;
    println!(
        "ok: {}: job `{}` with {} streams and {} sinks",
        args.file.display(),
        plan.spec.name,
        plan.streams.len(),
        plan.sinks.len()
    );
    Ok(())
}

/// `weir run FILE`.
pub(crate) fn run(args: RunArgs) -> Result<()> {
    let plan = load(&args.file)?;
    let options = weir::jobs::RunOptions {
        parallelism: args.parallelism,
        from_savepoint: args.from_savepoint,
        resume: args.resume,
        allow_non_restored_state: args.allow_non_restored_state,
        fallback_past_corrupt: args.fallback_past_corrupt,
        savepoints: args.savepoint_dir,
        ..weir::jobs::RunOptions::default()
    };
    let name = plan.spec.name.clone();
    let summary = match weir::jobs::run(plan, &options) {
        Err(weir::dataflow::DataflowError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(());
        }
        result => result.with_context(|| format!("job `{name}` failed"))?,
    };
    eprintln!(
        "weir: job `{name}` {:?}; restored from {}; {} checkpoints completed, {} failed; {} restarts",
        summary.status,
        summary
            .restored_from
            .map_or("nothing".to_string(), |c| format!("checkpoint {}", c.get())),
        summary.checkpoints.len(),
        summary.failed_checkpoints,
        summary.restarts,
    );
    if !summary.passed_over_corrupt.is_empty() {
        eprintln!(
            "weir: job `{name}` passed over the unrestorable checkpoints {:?} \
             (--fallback-past-corrupt): output they committed was written again",
            summary
                .passed_over_corrupt
                .iter()
                .map(|c| c.get())
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// Loads and checks a job file; prints every problem (file, line, column, field
/// path) to stderr.
pub(crate) fn load(file: &Path) -> Result<JobPlan> {
    weir::jobfile::load_file(file, &Registry::default()).map_err(|e| {
        let problems = e.problems();
        for problem in &problems {
            eprintln!("{problem}");
        }
        anyhow!("{}: {} problem(s)", file.display(), problems.len())
    })
}

//! `weir validate` and `weir run`: check a job file, or run it embedded in this
//! process with checkpoints.

use anyhow::{anyhow, Context, Result};
use clap::Args;
use std::path::Path;
use weir::jobfile::{JobPlan, Registry};

#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// The job file (see docs/job-files.md) or SQL file (`.sql`, docs/sql.md).
    file: std::path::PathBuf,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The job file (see docs/job-files.md) or SQL file (`.sql`, docs/sql.md).
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

#[derive(Args)]
pub(crate) struct SqlArgs {
    /// Check the statements and exit.
    #[arg(long)]
    validate: bool,
    /// Print the plan (streams, keys, state, uids) and exit.
    #[arg(long, conflicts_with = "validate")]
    explain: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// `weir sql FILE`: as `weir run`, for a file of SQL statements.
pub(crate) fn sql(args: SqlArgs) -> Result<()> {
    let plan = load(&args.run.file)?;
    if args.explain {
        print!("{}", weir::sql::explain(&plan));
        return Ok(());
    }
    if args.validate {
        return report_valid(&args.run.file, &plan);
    }
    run_plan(plan, args.run)
}

fn report_valid(file: &Path, plan: &JobPlan) -> Result<()> {
    println!(
        "ok: {}: job `{}` with {} streams and {} sinks",
        file.display(),
        plan.spec.name,
        plan.streams.len(),
        plan.sinks.len()
    );
    Ok(())
}

/// `weir validate FILE`.
pub(crate) fn validate(args: ValidateArgs) -> Result<()> {
    let plan = load(&args.file)?;
    report_valid(&args.file, &plan)
}

/// `weir run FILE`.
pub(crate) fn run(args: RunArgs) -> Result<()> {
    let plan = load(&args.file)?;
    run_plan(plan, args)
}

fn run_plan(plan: JobPlan, args: RunArgs) -> Result<()> {
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

/// Loads and checks a job file, or a file of SQL statements (`.sql`); prints every
/// problem (file, line, column, field path) to stderr.
pub(crate) fn load(file: &Path) -> Result<JobPlan> {
    weir::sql::load_file(file, &Registry::default()).map_err(|problems| {
        for problem in &problems {
            eprintln!("{problem}");
        }
        anyhow!("{}: {} problem(s)", file.display(), problems.len())
    })
}

//! `weir checkpoints list | inspect | diff`: what a checkpoint storage holds.

use super::io_runtime;
use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum CheckpointsCommand {
    /// Every job under a checkpoint storage and its complete checkpoints.
    List {
        /// The checkpoint storage: a path, file:// or s3://bucket/prefix URL.
        #[arg(default_value = "./weir-data/checkpoints")]
        dir: String,
    },
    /// What one checkpoint (`<root>/<job>/chk-<n>`) or savepoint directory holds:
    /// operators, uids, subtasks, key-group ranges, sizes.
    Inspect {
        /// The checkpoint or savepoint directory (path or URL).
        path: String,
    },
    /// What differs between two checkpoints or savepoints: operators only in one,
    /// parallelism, and per subtask the key-group range, the keyed states, and the
    /// sizes of keyed and operator state.
    Diff {
        /// The first checkpoint or savepoint directory (path or URL).
        a: String,
        /// The second.
        b: String,
    },
}

pub(crate) fn checkpoints(command: CheckpointsCommand) -> Result<()> {
    let runtime = io_runtime()?;
    let text = match command {
        CheckpointsCommand::List { dir } => runtime
            .block_on(weir::inspect::list(&dir))
            .with_context(|| format!("listing checkpoints under {dir}"))?,
        CheckpointsCommand::Inspect { path } => runtime
            .block_on(weir::inspect::inspect(&path))
            .with_context(|| format!("inspecting {path}"))?,
        CheckpointsCommand::Diff { a, b } => runtime
            .block_on(weir::inspect::diff_paths(&a, &b))
            .with_context(|| format!("comparing {a} and {b}"))?,
    };
    print!("{text}");
    Ok(())
}

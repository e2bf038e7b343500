//! The subcommands of the `weir` binary, one module each, and what they share: the
//! `--state-backend` choice, the duration flags and the I/O runtime.
//!
//! ```text
//!  main.rs: Cli::parse() ─▶ Command ─▶ bench · query · savepoint · checkpoints ·
//!                                      job_file (validate, run) · serve ·
//!                                      client (submit, list, status, stop, cancel) ·
//!                                      state (get, scan) · verify ·
//!                                      testing
//! ```

pub(crate) mod bench;
pub(crate) mod checkpoints;
pub(crate) mod client;
pub(crate) mod job_file;
pub(crate) mod query;
pub(crate) mod savepoint;
pub(crate) mod serve;
pub(crate) mod state;
pub(crate) mod testing;
pub(crate) mod verify;

use anyhow::{Context, Result};
use clap::ValueEnum;
use std::time::Duration;

/// A duration flag (`--checkpoint-interval 200ms`, `--timeout 2m`): a whole number
/// and a unit (ms, s, m, h, d), read by the job files' parser
/// ([`weir::jobfile::parse_duration`]); zero is refused.
pub(crate) fn duration(text: &str) -> std::result::Result<Duration, String> {
    match weir::jobfile::parse_duration(text) {
        Some(duration) if !duration.is_zero() => Ok(duration),
        Some(_) => Err(format!("`{text}` must be positive")),
        None => Err(format!(
            "`{text}` is not a duration: expected a whole number and a unit (ms, s, m, h, d), e.g. 200ms, 1s, 2m"
        )),
    }
}

/// `--state-backend`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// Hash maps in memory (the default).
    Heap,
    /// RocksDB on local disk, with a write-back record cache in front (in builds
    /// with `--features rocksdb`).
    Rocksdb,
}

impl BackendArg {
    pub(crate) fn backend(self, dir: &std::path::Path) -> weir::state::StateBackend {
        self.with_memory(dir, None)
    }

    /// The backend, with RocksDB's memory budget set when `memory_mib` is.
    pub(crate) fn with_memory(
        self,
        dir: &std::path::Path,
        memory_mib: Option<usize>,
    ) -> weir::state::StateBackend {
        match (self, weir::state::StateBackend::rocksdb(dir)) {
            (Self::Heap, _) => weir::state::StateBackend::Heap,
            (Self::Rocksdb, weir::state::StateBackend::RocksDb(mut config)) => {
                if let Some(mib) = memory_mib {
                    config.block_cache_bytes = mib << 20;
                    config.write_buffer_bytes = (mib << 20) / 4;
                }
                weir::state::StateBackend::RocksDb(config)
            }
            (Self::Rocksdb, other) => other,
        }
    }
}

/// A runtime for the storage I/O of one command.
pub(crate) fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the I/O runtime")
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn duration_flags_use_the_job_files_units_and_refuse_zero() {
        assert_eq!(duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("0s").unwrap_err().contains("must be positive"));
        assert!(duration("1.5s").unwrap_err().contains("not a duration"));
    }
}

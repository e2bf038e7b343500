//! Crash points inside the commit of the exactly-once sinks, for crash tests and
//! `weir verify`: the process aborts the `n`-th time the step is reached. The file
//! sinks count over every subtask ([`CommitFailpoint`]); the Kafka sink takes the same
//! steps (`KafkaSinkFailpoint`) and counts per subtask.
//!
//! ```text
//! on_checkpoint_complete / restore ──▶ BeforeCommit ──▶ first file or part final ──▶ MidCommit ──▶ … ──▶ AfterCommit
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where in a file sink's commit the process crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitStep {
    /// Epochs are due; no file of them is final yet.
    BeforeCommit,
    /// The first file (or part) is final; the others are not.
    MidCommit,
    /// Every due file is final; the sink has not returned yet.
    AfterCommit,
}

impl std::str::FromStr for CommitStep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "before-commit" => Ok(Self::BeforeCommit),
            "mid-commit" => Ok(Self::MidCommit),
            "after-commit" => Ok(Self::AfterCommit),
            other => Err(format!(
                "unknown sink failpoint `{other}`: expected before-commit, mid-commit or after-commit"
            )),
        }
    }
}

/// Aborts the process the `nth` time `step` is reached.
#[derive(Clone, Debug)]
pub struct CommitFailpoint {
    step: CommitStep,
    nth: u64,
    hits: Arc<AtomicU64>,
}

impl CommitFailpoint {
    /// Crash at the `nth` time (1 for the first) `step` is reached.
    pub fn new(step: CommitStep, nth: u64) -> Self {
        Self {
            step,
            nth,
            hits: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts reaching `step`; aborts the process at the configured hit.
    pub(crate) fn reached(failpoint: Option<&Self>, step: CommitStep, sink: &str) {
        let Some(point) = failpoint else { return };
        if point.step == step && point.hits.fetch_add(1, Ordering::SeqCst) + 1 >= point.nth {
            eprintln!("weir: file sink `{sink}` failpoint {step:?} reached: aborting the process");
            std::process::abort();
        }
    }
}

//! What `weir verify` reports: per run, per sink, the crashes, and the verdict.

use serde::Serialize;
use std::collections::BTreeMap;

/// One run's numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunStats {
    /// Wall time, s.
    pub seconds: f64,
    /// Processes started.
    pub incarnations: u32,
    /// Checkpoint durations (barrier to metadata written), ms.
    #[serde(skip)]
    pub checkpoint_ms: Vec<f64>,
    /// Checkpoints completed.
    pub checkpoints: usize,
    /// Median checkpoint duration, ms.
    pub checkpoint_p50_ms: f64,
    /// 99th percentile checkpoint duration, ms.
    pub checkpoint_p99_ms: f64,
    /// Median time from a process's start to its first completed checkpoint, over
    /// the processes that completed one, ms (0: none did).
    pub startup_p50_ms: f64,
}

/// One sink's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct SinkReport {
    /// The sink.
    pub sink: String,
    /// Rows the reference committed.
    pub expected: usize,
    /// Rows the crashed run committed.
    pub actual: usize,
    /// Reference rows missing.
    pub lost: usize,
    /// Rows committed more often than by the reference.
    pub duplicated: usize,
    /// Records of transactions left open at the end (Kafka).
    pub open_transactions: usize,
    /// A few differing rows with how many were missing (negative) or extra.
    pub examples: Vec<(String, i64)>,
}

/// What `weir verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The job's name.
    pub job: String,
    /// Seed of the crash schedule.
    pub seed: u64,
    /// State backend.
    pub backend: String,
    /// Checkpoint storage.
    pub storage: String,
    /// Crashes asked for.
    pub crashes_requested: u32,
    /// Crashes injected: SIGKILLs.
    pub kills: u32,
    /// Crashes injected: failpoints, by step.
    pub failpoint_crashes: BTreeMap<String, u32>,
    /// The job finished before every crash was injected.
    pub finished_early: bool,
    /// The reference run.
    pub reference: RunStats,
    /// The run with crashes.
    pub crashed: RunStats,
    /// Time from each crash to the next completed checkpoint, ms: median.
    pub recovery_p50_ms: f64,
    /// … 99th percentile.
    pub recovery_p99_ms: f64,
    /// … maximum.
    pub recovery_max_ms: f64,
    /// Per sink.
    pub sinks: Vec<SinkReport>,
    /// Where the runs' checkpoints and outputs are (kept when they differ).
    pub location: String,
}

impl Report {
    /// Crashes injected, all kinds.
    pub fn crashes(&self) -> u32 {
        self.kills + self.failpoint_crashes.values().sum::<u32>()
    }

    /// Rows lost, all sinks (records of open transactions included).
    pub fn lost(&self) -> usize {
        self.sinks.iter().map(|s| s.lost).sum()
    }

    /// Rows duplicated, all sinks.
    pub fn duplicated(&self) -> usize {
        self.sinks.iter().map(|s| s.duplicated).sum()
    }

    /// Whether the crashed run committed exactly the reference's output.
    pub fn passed(&self) -> bool {
        self.lost() == 0 && self.duplicated() == 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "weir verify: job `{}` ({} state, checkpoints in {}, seed {})",
            self.job, self.backend, self.storage, self.seed
        )?;
        let points: Vec<String> = self
            .failpoint_crashes
            .iter()
            .map(|(step, n)| format!("{step} {n}"))
            .collect();
        writeln!(
            f,
            "  crashes injected   {} of {} ({} SIGKILL{}){}",
            self.crashes(),
            self.crashes_requested,
            self.kills,
            if points.is_empty() {
                String::new()
            } else {
                format!(", failpoints: {}", points.join(", "))
            },
            if self.finished_early {
                " — the job finished first"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  restarts           {} processes after the first ({:.1} s; the reference run took {:.1} s)",
            self.crashed.incarnations.saturating_sub(1),
            self.crashed.seconds,
            self.reference.seconds
        )?;
        writeln!(
            f,
            "  recovery           crash → next completed checkpoint: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.recovery_p50_ms, self.recovery_p99_ms, self.recovery_max_ms
        )?;
        writeln!(
            f,
            "  checkpoints        {} completed, p50 {:.1} ms, p99 {:.1} ms (reference: {}, p50 {:.1} ms, p99 {:.1} ms)",
            self.crashed.checkpoints,
            self.crashed.checkpoint_p50_ms,
            self.crashed.checkpoint_p99_ms,
            self.reference.checkpoints,
            self.reference.checkpoint_p50_ms,
            self.reference.checkpoint_p99_ms
        )?;
        writeln!(
            f,
            "  startup            process start → its first completed checkpoint: p50 {:.0} ms (reference: {:.0} ms)",
            self.crashed.startup_p50_ms, self.reference.startup_p50_ms
        )?;
        for sink in &self.sinks {
            writeln!(
                f,
                "  sink `{}`  {} rows expected, {} committed: {} lost, {} duplicated{}",
                sink.sink,
                sink.expected,
                sink.actual,
                sink.lost,
                sink.duplicated,
                if sink.open_transactions > 0 {
                    format!(", {} records in open transactions", sink.open_transactions)
                } else {
                    String::new()
                }
            )?;
            for (row, n) in &sink.examples {
                let what = if *n < 0 { "missing" } else { "extra" };
                writeln!(f, "      {what} ×{}: {row}", n.unsigned_abs())?;
            }
        }
        if self.passed() {
            write!(f, "  result             exactly once: 0 lost, 0 duplicated")
        } else {
            write!(
                f,
                "  result             FAILED: {} lost, {} duplicated (outputs kept in {})",
                self.lost(),
                self.duplicated(),
                self.location
            )
        }
    }
}

/// The `q`-quantile (0..=1) of `values` (0 when empty).
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

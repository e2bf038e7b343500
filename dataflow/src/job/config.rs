//! [`JobConfig`]: the settings of a job, with their defaults.

use std::time::Duration;
use weir_checkpoint::restore::RestoreState;
use weir_state::StateBackend;

/// Settings of a job.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// The job's name.
    pub name: String,
    /// Parallelism of operators that do not set their own.
    pub parallelism: usize,
    /// Number of key groups; the upper bound of any operator's parallelism.
    pub max_parallelism: usize,
    /// Records per batch on channels.
    pub batch_size: usize,
    /// A partly filled batch is sent after this long.
    pub linger: Duration,
    /// Capacity of each channel, in batches (backpressure beyond it).
    pub channel_capacity: usize,
    /// How often sources emit watermarks.
    pub watermark_interval: Duration,
    /// Whether checkpoints will be taken (state tables then track changes).
    pub checkpointing: bool,
    /// How long a checkpoint may take (set by the checkpointing driver); sinks that
    /// commit after a checkpoint bound their commits by it.
    pub checkpoint_timeout: Option<Duration>,
    /// The run (timeline) this job belongs to, set by the checkpointing driver (a new
    /// one at every start; 0 without checkpointing). Exactly-once sinks put it in the
    /// names of what they commit, so output of one run never suppresses another's
    /// when checkpoint ids repeat (a savepoint restored into a fresh directory, or
    /// under another job name).
    pub timeline: u64,
    /// State to restore, by operator uid.
    pub restore: Option<RestoreState>,
    /// Where keyed state lives: on the heap (the default) or in RocksDB, one
    /// instance per operator subtask under `<dir>/<job>/<operator uid>/<subtask>`.
    pub state_backend: StateBackend,
    /// Where the subtasks run when the job spans several worker processes; `None`
    /// runs every subtask in this process.
    pub placement: Option<crate::wire::Placement>,
    /// A directory of this process for its local files of the job (standby copies of
    /// heap state, in cluster mode); on RocksDB, the backend's directory serves.
    pub local_dir: Option<std::path::PathBuf>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            name: "weir-job".into(),
            parallelism: 1,
            max_parallelism: 128,
            batch_size: 1024,
            linger: Duration::from_millis(5),
            channel_capacity: 8,
            watermark_interval: Duration::from_millis(50),
            checkpointing: false,
            checkpoint_timeout: None,
            timeline: 0,
            restore: None,
            state_backend: StateBackend::Heap,
            placement: None,
            local_dir: None,
        }
    }
}

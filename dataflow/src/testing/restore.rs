//! Checkpointed source positions, for tests of sources: run a source, checkpoint it
//! mid-way, restore the checkpoint (at the same or another parallelism) and check
//! that the restored job emits exactly the records the checkpointed one had not.
//! The tests of weir-sources and weir-nexmark use it for their generators.

use crate::testing::CollectSink;
use crate::{
    Barrier, CheckpointId, JobBuilder, JobConfig, JobEvent, JobHandle, OperatorSnapshot,
    RestoreState, Stream,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The uid the source under test must carry (`.uid(SOURCE_UID)`): the snapshots of
/// that operator are the ones taken and restored.
pub const SOURCE_UID: &str = "generator";

/// Runs `source` (mapped to record ids) at `parallelism`, slowed down so that it is
/// far from done, takes one checkpoint and cancels the job. Returns the source's
/// snapshots and the ids the job emitted (before and after the checkpoint).
///
/// # Panics
/// When the job fails to start, or ends before the checkpoint is taken.
pub fn checkpoint_running_job(
    parallelism: usize,
    source: impl Fn(&JobBuilder) -> Stream<u64>,
) -> (RestoreState, Vec<u64>) {
    let job = JobBuilder::new(JobConfig {
        parallelism,
        batch_size: 8,
        channel_capacity: 1,
        checkpointing: true,
        ..JobConfig::default()
    });
    let (sink, collected) = CollectSink::new();
    source(&job)
        .map(|id| {
            std::thread::sleep(Duration::from_micros(300));
            id
        })
        .sink("collect", sink);
    let handle = job.spawn().expect("checkpoint test job");
    // Checkpoint once the job has made progress, so the position is not the start.
    while collected.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Every subtask of the job is one source subtask chained to the sink.
    let mut restore = checkpoint_once(&handle, parallelism);
    handle.cancel();
    let _ = handle.wait();
    restore.operators.retain(|uid, _| uid == SOURCE_UID);
    (restore, collected.take())
}

/// Triggers checkpoint 1 on a running `handle`, waits for the acknowledgements of its
/// `subtasks` subtasks and returns what they captured, to restore another job from.
///
/// # Panics
/// When the job ends or a source declines before every subtask acknowledged.
pub fn checkpoint_once(handle: &JobHandle, subtasks: usize) -> RestoreState {
    handle.trigger_barrier(Barrier::checkpoint(CheckpointId::new(1), 0));
    let mut operators: BTreeMap<String, BTreeMap<usize, OperatorSnapshot>> = BTreeMap::new();
    let mut acked = 0;
    while acked < subtasks {
        match handle
            .events()
            .recv_timeout(Duration::from_secs(60))
            .expect("checkpoint test job")
        {
            JobEvent::Ack(mut ack, frozen) => {
                frozen
                    .materialize_into(&mut ack)
                    .expect("checkpoint test job");
                for (uid, snapshot) in ack.operators {
                    operators
                        .entry(uid.as_str().to_string())
                        .or_default()
                        .insert(ack.subtask, snapshot);
                }
                acked += 1;
            }
            JobEvent::BarrierDeclined { .. } => panic!("the source finished before the barrier"),
            _ => {}
        }
    }
    RestoreState {
        operators: operators
            .into_iter()
            .map(|(uid, snapshots)| (uid, snapshots.into_values().collect()))
            .collect(),
        max_parallelism: JobConfig::default().max_parallelism,
        opened: BTreeMap::new(),
    }
}

/// Runs `source` restored from `restore` at `parallelism` to the end.
///
/// # Panics
/// When the restored job fails.
pub fn run_restored(
    parallelism: usize,
    restore: RestoreState,
    source: impl Fn(&JobBuilder) -> Stream<u64>,
) -> Vec<u64> {
    let job = JobBuilder::new(JobConfig {
        parallelism,
        restore: Some(restore),
        ..JobConfig::default()
    });
    let (sink, collected) = CollectSink::new();
    source(&job).sink("collect", sink);
    job.execute().expect("checkpoint test job");
    collected.take()
}

/// Checks exactly-once across the restore: the restored job emits each id of
/// `all` at most once, and the ids it does not emit were all emitted before, by
/// the checkpointed job; and the checkpoint was taken mid-way.
///
/// # Panics
/// When any of those does not hold: that is the test failing.
pub fn check_resumed(all: &[u64], before: &[u64], after: &[u64]) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for id in after {
        *seen.entry(*id).or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|&c| c == 1),
        "a record was emitted twice after restore"
    );
    assert!(
        seen.keys().all(|id| all.contains(id)),
        "an unknown record was emitted"
    );
    let before: std::collections::HashSet<u64> = before.iter().copied().collect();
    let skipped: Vec<u64> = all
        .iter()
        .copied()
        .filter(|id| !seen.contains_key(id))
        .collect();
    assert!(
        !skipped.is_empty(),
        "the restored job started from the beginning"
    );
    assert!(!seen.is_empty(), "the checkpoint was taken at the end");
    assert!(
        skipped.iter().all(|id| before.contains(id)),
        "a record was lost: not emitted before the checkpoint nor after the restore"
    );
}

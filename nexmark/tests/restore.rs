//! Checkpointed positions: a job restored from a checkpoint of a running job, at the
//! same or another parallelism, emits exactly the records the checkpointed job had
//! not emitted.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use weir_dataflow::testing::CollectSink;
use weir_dataflow::{
    Barrier, CheckpointId, JobBuilder, JobConfig, JobEvent, OperatorSnapshot, RestoreState, Stream,
    WatermarkStrategy,
};
use weir_nexmark::{
    bid, nexmark_event, BidGeneratorConfig, BidSource, NexmarkConfig, NexmarkSource,
};

const UID: &str = "generator";

/// Runs `source` (mapped to record ids) at `parallelism`, slowed down so that it is
/// far from done, takes one checkpoint and cancels the job. Returns the source's
/// snapshots and the ids the job emitted (before and after the checkpoint).
fn checkpoint_running_job(
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
    let handle = job.spawn().unwrap();
    // Checkpoint once the job has made progress, so the position is not the start.
    while collected.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.trigger_barrier(Barrier::checkpoint(CheckpointId::new(1), 0));
    let mut snapshots: BTreeMap<usize, OperatorSnapshot> = BTreeMap::new();
    while snapshots.len() < parallelism {
        match handle
            .events()
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
        {
            JobEvent::Ack(mut ack, frozen) => {
                frozen.materialize_into(&mut ack).unwrap();
                for (uid, snapshot) in ack.operators {
                    if uid.as_str() == UID {
                        snapshots.insert(ack.subtask, snapshot);
                    }
                }
            }
            JobEvent::BarrierDeclined { .. } => panic!("the source finished before the barrier"),
            _ => {}
        }
    }
    handle.cancel();
    let _ = handle.wait();
    let restore = RestoreState {
        operators: BTreeMap::from([(UID.to_string(), snapshots.into_values().collect())]),
        max_parallelism: JobConfig::default().max_parallelism,
        opened: BTreeMap::new(),
    };
    (restore, collected.take())
}

/// Runs `source` restored from `restore` at `parallelism` to the end.
fn run_restored(
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
    job.execute().unwrap();
    collected.take()
}

/// Checks exactly-once across the restore: the restored job emits each id of
/// `all` at most once, and the ids it does not emit were all emitted before, by
/// the checkpointed job; and the checkpoint was taken mid-way.
fn check_resumed(all: &[u64], before: &[u64], after: &[u64]) {
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

const BIDS: u64 = 20_000;

/// Bids mapped back to their ids (bids are distinct for these ids).
fn bids(job: &JobBuilder) -> Stream<u64> {
    let ids: HashMap<_, u64> = (1..=BIDS)
        .map(|i| (bid(i as i64, BIDS as i64, 2, 10), i))
        .collect();
    assert_eq!(ids.len() as u64, BIDS);
    job.source(
        "bids",
        WatermarkStrategy::none(),
        BidSource::factory(BidGeneratorConfig::new(BIDS)),
    )
    .uid(UID)
    .map(move |b| ids[&b])
}

#[test]
fn bid_source_resumes_after_rescaling() {
    let all: Vec<u64> = (1..=BIDS).collect();
    let (restore, before) = checkpoint_running_job(2, bids);
    let after = run_restored(3, restore, bids);
    check_resumed(&all, &before, &after);
}

fn events(job: &JobBuilder) -> Stream<u64> {
    let config = NexmarkConfig::new(20_000);
    let ids: HashMap<_, u64> = (0..20_000)
        .map(|n| (nexmark_event(n, &config), n))
        .collect();
    job.source(
        "events",
        WatermarkStrategy::none(),
        NexmarkSource::factory(config),
    )
    .uid(UID)
    .map(move |e| ids[&e])
}

#[test]
fn nexmark_source_resumes_after_rescaling() {
    let all: Vec<u64> = (0..20_000).collect();
    for (old, new) in [(3, 3), (3, 2)] {
        let (restore, before) = checkpoint_running_job(old, events);
        let after = run_restored(new, restore, events);
        check_resumed(&all, &before, &after);
    }
}

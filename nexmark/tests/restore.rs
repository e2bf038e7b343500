//! Checkpointed positions: a job restored from a checkpoint of a running job, at the
//! same or another parallelism, emits exactly the records the checkpointed job had
//! not emitted.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::collections::HashMap;
use weir_dataflow::testing::restore::{
    check_resumed, checkpoint_running_job, run_restored, SOURCE_UID,
};
use weir_dataflow::{JobBuilder, Stream, WatermarkStrategy};
use weir_nexmark::{
    bid, nexmark_event, BidGeneratorConfig, BidSource, NexmarkConfig, NexmarkSource,
};

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
    .uid(SOURCE_UID)
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
    .uid(SOURCE_UID)
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

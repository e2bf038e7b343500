//! The sequence and collection sources run in real jobs: every record exactly once,
//! at any parallelism.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use weir_dataflow::testing::CollectSink;
use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
use weir_sources::{CollectionSource, SequenceSource};

fn job(parallelism: usize) -> JobBuilder {
    JobBuilder::new(JobConfig {
        parallelism,
        ..JobConfig::default()
    })
}

fn run_sequence(parallelism: usize, start: i64, end: i64) -> Vec<i64> {
    let job = job(parallelism);
    let (sink, collected) = CollectSink::new();
    job.source(
        "seq",
        WatermarkStrategy::none(),
        SequenceSource::factory(start, end),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    let mut out = collected.take();
    out.sort_unstable();
    out
}

#[test]
fn sequence_source_emits_its_range() {
    assert_eq!(
        run_sequence(3, -5, 10_000),
        (-5..=10_000).collect::<Vec<_>>()
    );
    assert_eq!(run_sequence(2, 7, 7), vec![7]);
    assert!(run_sequence(2, 8, 7).is_empty());
    assert_eq!(
        run_sequence(1, i64::MAX - 2, i64::MAX),
        vec![i64::MAX - 2, i64::MAX - 1, i64::MAX]
    );
}

#[test]
fn collection_source_is_reexported() {
    let job = job(2);
    let (sink, collected) = CollectSink::new();
    job.source(
        "list",
        WatermarkStrategy::none(),
        CollectionSource::factory(vec![1, 2, 3]),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    let mut out = collected.take();
    out.sort_unstable();
    assert_eq!(out, vec![1, 2, 3]);
}

#[test]
fn a_throttled_sequence_emits_the_same_numbers() {
    let job = job(2);
    let (sink, collected) = CollectSink::new();
    job.source(
        "seq",
        WatermarkStrategy::none(),
        SequenceSource::throttled(1, 300, 3_000),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    let mut out = collected.take();
    out.sort_unstable();
    assert_eq!(out, (1..=300).collect::<Vec<_>>());
}

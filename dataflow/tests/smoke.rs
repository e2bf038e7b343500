use std::time::Duration;
use weir_dataflow::state::{Count, Max};
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{JobBuilder, JobConfig, Timestamp, WatermarkStrategy};

#[test]
fn tumbling_count_per_key() {
    let job = JobBuilder::new(JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    });
    let events: Vec<(u32, i64)> = (0..10_000).map(|i| (i % 7, i as i64)).collect();
    let (sink, out) = CollectSink::new();
    job.source(
        "events",
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(10), |e: &(u32, i64)| {
            Timestamp(e.1)
        }),
        CollectionSource::factory_with_poll_size(events, 100),
    )
    .key_by(|e: &(u32, i64)| e.0)
    .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
    .aggregate((Count, Max(|e: &(u32, i64)| e.1)), |k, w, (c, m)| {
        (*k, w.start, c, m)
    })
    .sink("collect", sink);
    job.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(got.len(), 70);
    let total: u64 = got.iter().map(|r| r.2).sum();
    assert_eq!(total, 10_000);
}

fn lateness_job(lateness: Duration) -> (Vec<(u64, i64)>, Vec<(u32, i64)>, u64) {
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    });
    let events: Vec<(u32, i64)> = vec![(1, 100), (1, 2500), (1, 500), (1, 2600)];
    let (results_sink, results) = CollectSink::new();
    let (late_sink, late) = CollectSink::new();
    let (on_time, too_late) = job
        .source(
            "events",
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &(u32, i64)| {
                Timestamp(e.1)
            }),
            CollectionSource::factory_with_poll_size(events, 1),
        )
        .key_by(|e: &(u32, i64)| e.0)
        .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
        .allowed_lateness(lateness)
        .aggregate_with_late_output(Count, |_, w, c| (c, w.start));
    on_time.sink("results", results_sink);
    too_late.sink("late", late_sink);
    let result = job.execute().unwrap();
    let late_count = result.metrics.iter().map(|m| m.late_records).sum();
    (results.take(), late.take(), late_count)
}

#[test]
fn late_elements_within_lateness_refire_and_beyond_go_to_the_side_output() {
    let (results, late, late_count) = lateness_job(Duration::from_millis(2000));
    assert_eq!(
        results,
        vec![(1, 0), (2, 0), (2, 2000)],
        "late firing updates the window"
    );
    assert!(late.is_empty());
    assert_eq!(late_count, 0);

    let (results, late, late_count) = lateness_job(Duration::from_millis(1000));
    assert_eq!(results, vec![(1, 0), (2, 2000)]);
    assert_eq!(late, vec![(1, 500)]);
    assert_eq!(late_count, 1);
}

//! What a running job reports about itself: its graph, per-subtask counters,
//! watermarks, backpressure and operator gauges.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::time::Duration;
use weir_dataflow::state::Count;
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{
    EdgeView, Gauge, JobBuilder, JobConfig, OperatorMetrics, Timestamp, VertexRole,
    WatermarkStrategy,
};

#[test]
fn the_graph_lists_operators_edges_and_chains_and_counters_follow_each_vertex() {
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
    .uid("events")
    .key_by(|e: &(u32, i64)| e.0)
    .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
    .aggregate(Count, |k, w, c| (*k, w.start, c))
    .uid("counts")
    .name("counts")
    .sink("collect", sink)
    .uid("collect");
    let handle = job.spawn().unwrap();
    let graph = handle.graph();
    let described: Vec<(&str, &str, usize, VertexRole)> = graph
        .vertices
        .iter()
        .map(|v| (v.name.as_str(), v.uid.as_str(), v.parallelism, v.role))
        .collect();
    assert_eq!(
        described,
        vec![
            ("events", "events", 2, VertexRole::Source),
            ("counts", "counts", 2, VertexRole::Operator),
            ("collect", "collect", 2, VertexRole::Sink),
        ]
    );
    assert_eq!(
        graph.edges,
        vec![
            EdgeView {
                from: 0,
                to: 1,
                kind: "hash",
                chained: false
            },
            EdgeView {
                from: 1,
                to: 2,
                kind: "forward",
                chained: true
            },
        ]
    );
    assert_eq!(graph.vertices[0].task, "events");
    assert_eq!(graph.vertices[1].task, "counts -> collect");
    assert_eq!(graph.vertices[2].task, "counts -> collect");

    let result = handle.wait().unwrap();
    assert_eq!(out.take().len(), 70);
    let of = |vertex: usize| -> Vec<_> {
        result
            .metrics
            .iter()
            .filter(|m| m.vertex == vertex)
            .collect()
    };
    assert_eq!(of(0).iter().map(|m| m.records_out).sum::<u64>(), 10_000);
    assert_eq!(of(1).iter().map(|m| m.records_in).sum::<u64>(), 10_000);
    assert_eq!(of(2).iter().map(|m| m.records_in).sum::<u64>(), 70);
    for m in of(0).iter().chain(of(1).iter()).chain(of(2).iter()) {
        assert_eq!(
            m.watermark_ms,
            Some(i64::MAX),
            "{} {} saw the end of input",
            m.operator,
            m.subtask
        );
    }
}

#[test]
fn a_slow_consumer_shows_as_backpressure_on_the_operator_feeding_it() {
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        batch_size: 10,
        channel_capacity: 1,
        ..JobConfig::default()
    });
    let (sink, out) = CollectSink::new();
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory((0..2_000u64).collect()),
    )
    .rebalance()
    .map(|x| {
        // 2,000 records x 0.5 ms: the source fills the one-batch channel at once.
        std::thread::sleep(Duration::from_micros(500));
        x
    })
    .sink("collect", sink);
    let result = job.execute().unwrap();
    assert_eq!(out.take().len(), 2_000);
    let source = result
        .metrics
        .iter()
        .find(|m| m.operator == "numbers")
        .unwrap();
    assert!(
        source.backpressure_ms > 0,
        "the source waited for the slow map: {source:?}"
    );
    let sink = result
        .metrics
        .iter()
        .find(|m| m.operator == "collect")
        .unwrap();
    assert_eq!(sink.backpressure_ms, 0, "nothing is downstream of the sink");
}

#[test]
fn registered_gauges_are_read_when_metrics_are_reported() {
    let metrics = OperatorMetrics::default();
    assert!(metrics.gauges().is_empty());
    metrics.register_gauges(|| {
        vec![Gauge::new("kafka_consumer_lag", 12.0)
            .label("topic", "bids")
            .label("partition", "3")]
    });
    metrics.register_gauges(|| vec![Gauge::new("bytes_waiting", 5.0)]);
    let gauges = metrics.gauges();
    assert_eq!(gauges.len(), 2);
    assert_eq!(gauges[0].name, "kafka_consumer_lag");
    assert_eq!(
        gauges[0].labels,
        vec![
            ("topic".to_string(), "bids".to_string()),
            ("partition".to_string(), "3".to_string())
        ]
    );
    assert_eq!(gauges[1].value, 5.0);
}

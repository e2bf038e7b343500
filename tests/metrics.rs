//! A checkpointed job's live view and its Prometheus rendering (`weir serve`'s
//! `/metrics`): counters agree with each other, checkpoints and savepoints are
//! counted, the status follows the job.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::jobs::{self, RunOptions};
use weir_dataflow::checkpointing::{CheckpointedJob, JobStatus, NoListener};
use weir_dataflow::VertexRole;
use weir_jobfile::Registry;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_live_view_and_prometheus_text_follow_a_running_job_to_its_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "
name: evens
parallelism: 2
checkpoints: {{interval: 50ms, storage: {}}}
sources: [{{name: numbers, kind: sequence, from: 1, to: 1000000000}}]
operators:
  - {{name: evens, kind: filter, input: numbers, condition: value % 2 = 0}}
sinks: [{{name: out, kind: blackhole, input: evens}}]
",
        dir.path().join("checkpoints").display()
    );
    let plan = weir_jobfile::load("evens.yaml", &text, &Registry::default()).unwrap();
    let options = RunOptions {
        savepoints: Some(dir.path().join("savepoints").display().to_string()),
        ..RunOptions::default()
    };
    let (config, checkpointing) = jobs::configs(&plan, &options);
    let plan = Arc::new(plan);
    let job = CheckpointedJob::spawn(
        config,
        checkpointing,
        move |builder| jobs::build(&plan, builder),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = job.live();
    wait_for("two checkpoints", || live.completed_checkpoints() >= 2);
    assert_eq!(live.status(), JobStatus::Running);
    let graph = live.graph().expect("the attempt started");
    let roles: Vec<(&str, VertexRole)> = graph
        .vertices
        .iter()
        .map(|v| (v.name.as_str(), v.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("numbers", VertexRole::Source),
            ("evens", VertexRole::Operator),
            ("out", VertexRole::Sink)
        ]
    );
    let running = weir::metrics::render(&[("evens-1", &live)]);
    assert_eq!(
        sample(
            &running,
            "weir_job_status{job=\"evens-1\",status=\"running\"}"
        ),
        Some(1.0)
    );
    assert!(sample(
        &running,
        "weir_checkpoints_completed_total{job=\"evens-1\"}"
    )
    .is_some_and(|n| n >= 2.0));

    let location = job.savepoint(true).unwrap();
    let summary = job.wait().unwrap();
    assert_eq!(summary.status, JobStatus::Suspended);
    assert_eq!(summary.savepoint.as_deref(), Some(location.as_str()));
    assert_eq!(live.status(), JobStatus::Suspended);
    assert_eq!(live.completed_savepoints(), 1);
    assert_eq!(live.failed_checkpoints(), 0);

    // Every row the sources read reached the filter, and what passed it reached the
    // sink: counted in rows, though the job-file path moves batches of them.
    let metrics = live.metrics();
    let total = |vertex: usize, out: bool| -> u64 {
        metrics
            .iter()
            .filter(|m| m.vertex == vertex)
            .map(|m| if out { m.records_out } else { m.records_in })
            .sum()
    };
    let read = total(0, true);
    assert!(read > 0);
    assert_eq!(total(1, false), read);
    assert_eq!(total(2, false), total(1, true));
    assert!(
        total(1, true) < read,
        "the filter keeps the even numbers only"
    );

    let text = weir::metrics::render(&[("evens-1", &live)]);
    assert_eq!(
        sample(
            &text,
            "weir_job_status{job=\"evens-1\",status=\"suspended\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "weir_savepoints_completed_total{job=\"evens-1\"}"),
        Some(1.0)
    );
    let mut rendered_in = 0.0;
    for m in metrics.iter().filter(|m| m.vertex == 1) {
        let series = format!(
            "weir_records_in_total{{job=\"evens-1\",operator=\"evens\",uid=\"{}\",subtask=\"{}\"}}",
            m.uid, m.subtask
        );
        let value = sample(&text, &series).unwrap_or_else(|| panic!("{series} in\n{text}"));
        assert_eq!(value, m.records_in as f64);
        rendered_in += value;
    }
    assert_eq!(rendered_in, read as f64);
    for family in [
        "weir_records_out_total",
        "weir_backpressure_seconds_total",
        "weir_late_records_dropped_total",
        "weir_checkpoint_last_duration_seconds",
        "weir_state_size_bytes",
        "weir_restore_bytes",
        "weir_restore_local_bytes",
        "weir_restore_downloaded_bytes",
        "weir_restore_opened_bytes",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family} declared once in\n{text}"
        );
    }
}

/// The sum of every sample of `family` whose labels contain `label`.
fn sum_of(text: &str, family: &str, label: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with(&format!("{family}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_state_reports_its_reads_writes_and_sizes_per_subtask() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "
name: classes
parallelism: 2
state_backend: rocksdb
checkpoints: {{interval: 50ms, storage: {}}}
sources: [{{name: numbers, kind: sequence, from: 1, to: 1000000000, timestamp: value}}]
operators:
  - {{name: classes, kind: map, input: numbers, fields: {{class: value % 5000, value: value}}}}
  - {{name: by_class, kind: key_by, input: classes, key: class}}
  - name: per_class
    kind: window
    input: by_class
    window: {{type: tumbling, size: 10s}}
    aggregates: {{numbers: count}}
sinks: [{{name: out, kind: blackhole, input: per_class}}]
",
        dir.path().join("checkpoints").display()
    );
    let plan = weir_jobfile::load("classes.yaml", &text, &Registry::default()).unwrap();
    let (mut config, checkpointing) = jobs::configs(&plan, &RunOptions::default());
    config.state_backend = weir_state::StateBackend::rocksdb(dir.path().join("state"));
    let plan = Arc::new(plan);
    let job = CheckpointedJob::spawn(
        config,
        checkpointing,
        move |builder| jobs::build(&plan, builder),
        Arc::new(NoListener),
    )
    .unwrap();
    let live = job.live();
    wait_for("three checkpoints", || live.completed_checkpoints() >= 3);
    let text = weir::metrics::render(&[("classes-1", &live)]);
    let window = "operator=\"per_class\"";
    let rocksdb = |family: &str| {
        sum_of(&text, family, window).unwrap_or_else(|| panic!("no {family} in\n{text}"))
    };
    // Windows of 10 s of event time over 5000 classes: every checkpoint flushes the
    // record cache, so entries were written and read back, and SST files exist.
    assert!(rocksdb("weir_state_puts_total") > 0.0);
    assert!(rocksdb("weir_state_written_bytes_total") > 0.0);
    assert!(rocksdb("weir_state_sst_files") >= 1.0);
    assert!(rocksdb("weir_state_sst_bytes") > 0.0);
    assert!(rocksdb("weir_state_local_disk_bytes") >= rocksdb("weir_state_sst_bytes"));
    for family in [
        "weir_state_gets_total",
        "weir_state_deletes_total",
        "weir_state_read_bytes_total",
        "weir_state_live_data_bytes",
    ] {
        rocksdb(family);
    }
    assert!(
        text.lines()
            .filter(|l| l.starts_with("weir_state_puts_total{"))
            .all(|l| l.contains("backend=\"rocksdb\"") && l.contains(window)),
        "only the window keeps keyed state:\n{text}"
    );
    job.cancel();
    let _ = job.wait();
}

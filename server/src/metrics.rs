//! Prometheus text exposition (format 0.0.4) of running jobs: what `weir serve`
//! answers at `GET /metrics`.
//!
//! ```text
//!  LiveJob ─▶ status, restarts, restore progress            (per job)
//!          ─▶ records in/out, late records, backpressure,    (per operator subtask)
//!             watermark, operator gauges (Kafka lag, …)
//!          ─▶ checkpoints completed/failed, last duration,   (per job)
//!             size and state size
//! ```
//!
//! ```
//! use weir_dataflow::checkpointing::LiveJob;
//! let text = weir_server::metrics::render(&[("job-1", &LiveJob::default())]);
//! assert!(text.contains("weir_job_status{job=\"job-1\",status=\"created\"} 1"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use weir_dataflow::checkpointing::{JobStatus, LiveJob};

/// The lower-case name of a status, as shown in the API, the UI and the metrics.
pub fn status_name(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Created => "created",
        JobStatus::Running => "running",
        JobStatus::Failing => "failing",
        JobStatus::Restarting => "restarting",
        JobStatus::Cancelled => "cancelled",
        JobStatus::Finished => "finished",
        JobStatus::Suspended => "suspended",
    }
}

/// Metric families in the order they are first written; samples grouped per family
/// as the format requires.
#[derive(Default)]
struct Families {
    order: Vec<String>,
    families: BTreeMap<String, Family>,
}

struct Family {
    help: String,
    kind: &'static str,
    samples: String,
}

impl Families {
    fn add(
        &mut self,
        name: &str,
        kind: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let family = self.families.entry(name.to_owned()).or_insert_with(|| {
            self.order.push(name.to_owned());
            Family {
                help: help.to_owned(),
                kind,
                samples: String::new(),
            }
        });
        family.samples.push_str(name);
        if !labels.is_empty() {
            family.samples.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    family.samples.push(',');
                }
                let _ = write!(family.samples, "{key}=\"{}\"", escape(value));
            }
            family.samples.push('}');
        }
        let _ = writeln!(family.samples, " {}", number(value));
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let family = &self.families[name];
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            out.push_str(&family.samples);
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A gauge name made safe for Prometheus: `[a-zA-Z0-9_]`, prefixed `weir_`.
fn gauge_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("weir_{cleaned}")
}

/// Renders every job's metrics; `jobs` pairs a job's id (the `job` label) with its
/// live view.
pub fn render(jobs: &[(&str, &LiveJob)]) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut f = Families::default();
    for &(job, live) in jobs {
        let status = status_name(live.status());
        f.add(
            "weir_job_status",
            "gauge",
            "1 for the job's current status.",
            &[("job", job), ("status", status)],
            1.0,
        );
        f.add(
            "weir_job_restarts_total",
            "counter",
            "Restarts after failures.",
            &[("job", job)],
            f64::from(live.restarts()),
        );
        let restore = live.restore();
        f.add(
            "weir_restore_bytes",
            "gauge",
            "Bytes of state the current attempt restores.",
            &[("job", job)],
            restore.bytes_total as f64,
        );
        f.add(
            "weir_restore_read_bytes",
            "gauge",
            "Bytes of state restored so far by the current attempt.",
            &[("job", job)],
            restore.bytes_read as f64,
        );
        f.add(
            "weir_restore_local_bytes",
            "gauge",
            "Bytes of state the current attempt restored from local copies of native RocksDB checkpoints (local recovery).",
            &[("job", job)],
            restore.bytes_local as f64,
        );
        f.add(
            "weir_restore_standby_bytes",
            "gauge",
            "Of the local bytes, those the current attempt's subtasks took from standby copies another worker kept for them (cluster mode, `checkpoints.standbys`).",
            &[("job", job)],
            restore.bytes_standby as f64,
        );
        f.add(
            "weir_restore_downloaded_bytes",
            "gauge",
            "Bytes of state the current attempt downloaded from checkpoint or savepoint storage.",
            &[("job", job)],
            restore.bytes_downloaded as f64,
        );
        f.add(
            "weir_restore_opened_bytes",
            "gauge",
            "Bytes of native RocksDB checkpoints the current attempt's subtasks open as their instances as they are (same key groups: no key written again).",
            &[("job", job)],
            restore.bytes_opened as f64,
        );
        checkpoint_metrics(&mut f, job, live);
        for m in live.metrics() {
            let subtask = m.subtask.to_string();
            let labels = [
                ("job", job),
                ("operator", m.operator.as_str()),
                ("uid", m.uid.as_str()),
                ("subtask", subtask.as_str()),
            ];
            f.add(
                "weir_records_in_total",
                "counter",
                "Records received by an operator subtask (sources: read).",
                &labels,
                m.records_in as f64,
            );
            f.add(
                "weir_records_out_total",
                "counter",
                "Records emitted by an operator subtask.",
                &labels,
                m.records_out as f64,
            );
            f.add(
                "weir_late_records_dropped_total",
                "counter",
                "Records that arrived after their window's allowed lateness.",
                &labels,
                m.late_records as f64,
            );
            f.add(
                "weir_backpressure_seconds_total",
                "counter",
                "Time an operator subtask waited for room in a full channel downstream.",
                &labels,
                m.backpressure_ms as f64 / 1e3,
            );
            if let Some(watermark) = m.watermark_ms.filter(|&w| w != i64::MAX) {
                f.add(
                    "weir_watermark_milliseconds",
                    "gauge",
                    "The last watermark an operator subtask passed on (ms since the epoch).",
                    &labels,
                    watermark as f64,
                );
                f.add(
                    "weir_watermark_lag_milliseconds",
                    "gauge",
                    "Wall-clock time minus the operator subtask's watermark.",
                    &labels,
                    now_ms.saturating_sub(watermark) as f64,
                );
            }
            for gauge in &m.gauges {
                let mut all: Vec<(&str, &str)> = labels.to_vec();
                all.extend(gauge.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                f.add(
                    &gauge_name(&gauge.name),
                    "gauge",
                    "Operator-specific gauge.",
                    &all,
                    gauge.value,
                );
            }
        }
    }
    f.finish()
}

fn checkpoint_metrics(f: &mut Families, job: &str, live: &LiveJob) {
    let checkpoints = live.checkpoints();
    f.add(
        "weir_checkpoints_completed_total",
        "counter",
        "Checkpoints completed.",
        &[("job", job)],
        live.completed_checkpoints() as f64,
    );
    f.add(
        "weir_checkpoints_failed_total",
        "counter",
        "Checkpoints that failed or timed out.",
        &[("job", job)],
        live.failed_checkpoints() as f64,
    );
    f.add(
        "weir_savepoints_completed_total",
        "counter",
        "Savepoints completed.",
        &[("job", job)],
        live.completed_savepoints() as f64,
    );
    let Some(last) = checkpoints.iter().rev().find(|c| !c.savepoint) else {
        return;
    };
    let labels = [("job", job)];
    f.add(
        "weir_checkpoint_last_id",
        "gauge",
        "Number of the newest completed checkpoint.",
        &labels,
        last.checkpoint.get() as f64,
    );
    f.add(
        "weir_checkpoint_last_duration_seconds",
        "gauge",
        "Duration of the newest completed checkpoint, barrier to metadata.",
        &labels,
        last.duration_ms / 1e3,
    );
    f.add(
        "weir_checkpoint_last_uploaded_bytes",
        "gauge",
        "Bytes the newest completed checkpoint uploaded.",
        &labels,
        last.bytes as f64,
    );
    f.add(
        "weir_state_size_bytes",
        "gauge",
        "Bytes of state the newest completed checkpoint refers to.",
        &labels,
        last.state_bytes as f64,
    );
    for subtask in &last.subtasks {
        let index = subtask.subtask.to_string();
        f.add(
            "weir_task_state_size_bytes",
            "gauge",
            "Bytes of state a task subtask's part of the newest checkpoint refers to.",
            &[
                ("job", job),
                ("task", subtask.task.as_str()),
                ("subtask", index.as_str()),
            ],
            subtask.state_bytes as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_grouped() {
        let mut f = Families::default();
        f.add("a", "gauge", "A.", &[("x", "q\"b\\n\nz")], 1.5);
        f.add("b", "counter", "B.", &[], 2.0);
        f.add("a", "gauge", "A.", &[("x", "y")], 3.0);
        assert_eq!(
            f.finish(),
            "# HELP a A.\n# TYPE a gauge\na{x=\"q\\\"b\\\\n\\nz\"} 1.5\na{x=\"y\"} 3\n\
             # HELP b B.\n# TYPE b counter\nb 2\n"
        );
    }

    #[test]
    fn gauge_names_are_sanitised() {
        assert_eq!(gauge_name("kafka consumer-lag"), "weir_kafka_consumer_lag");
    }
}

//! Reading a running job's counters: [`MetricsView`] and the [`SubtaskMetrics`] of
//! each operator subtask, and the gauges of a subtask's RocksDB instance.

use crate::metrics::{Gauge, OperatorMetrics};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Counters of one operator subtask.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubtaskMetrics {
    /// The operator's name.
    pub operator: String,
    /// The operator's uid.
    pub uid: String,
    /// The subtask index.
    pub subtask: usize,
    /// Records received (sources: emitted).
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Records too late for their window.
    pub late_records: u64,
    /// The operator's vertex in [`GraphView::vertices`](crate::GraphView::vertices).
    pub vertex: usize,
    /// Milliseconds spent waiting for room in a full channel downstream, since start.
    pub backpressure_ms: u64,
    /// The last watermark the operator passed on (ms since the epoch; `i64::MAX` once
    /// its input ended), `None` before the first.
    pub watermark_ms: Option<i64>,
    /// Operator-specific readings (Kafka lag per partition, …).
    pub gauges: Vec<Gauge>,
}

/// The live counters of one operator subtask, with its identity.
pub(super) struct CounterEntry {
    pub(super) operator: String,
    pub(super) uid: String,
    pub(super) vertex: usize,
    pub(super) subtask: usize,
    pub(super) metrics: Arc<OperatorMetrics>,
}

/// A cloneable, thread-safe view of a running job's counters.
#[derive(Clone)]
pub struct MetricsView {
    pub(super) subtasks: Arc<Vec<CounterEntry>>,
}

impl MetricsView {
    /// The current counters of every operator subtask.
    pub fn snapshot(&self) -> Vec<SubtaskMetrics> {
        self.subtasks
            .iter()
            .map(|entry| {
                let m = &entry.metrics;
                let watermark = m.watermark.load(Ordering::Relaxed);
                SubtaskMetrics {
                    operator: entry.operator.clone(),
                    uid: entry.uid.clone(),
                    subtask: entry.subtask,
                    records_in: m.records_in.load(Ordering::Relaxed),
                    records_out: m.records_out.load(Ordering::Relaxed),
                    late_records: m.late_records.load(Ordering::Relaxed),
                    vertex: entry.vertex,
                    backpressure_ms: m.backpressure_ns.load(Ordering::Relaxed) / 1_000_000,
                    watermark_ms: (watermark != i64::MIN).then_some(watermark),
                    gauges: m.gauges(),
                }
            })
            .collect()
    }
}

/// The gauges of a subtask's RocksDB instance (`backend="rocksdb"`).
pub(super) fn state_gauges(stats: &weir_state::BackendStats) -> Vec<Gauge> {
    [
        ("state_gets_total", stats.gets),
        ("state_puts_total", stats.puts),
        ("state_deletes_total", stats.deletes),
        ("state_read_bytes_total", stats.bytes_read),
        ("state_written_bytes_total", stats.bytes_written),
        ("state_live_data_bytes", stats.live_data_bytes),
        ("state_sst_files", stats.sst_files),
        ("state_sst_bytes", stats.sst_bytes),
        ("state_local_disk_bytes", stats.disk_bytes),
    ]
    .into_iter()
    .map(|(name, value)| Gauge::new(name, value as f64).label("backend", "rocksdb"))
    .collect()
}

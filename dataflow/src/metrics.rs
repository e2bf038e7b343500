//! Metrics of operator subtasks: counters the runtime updates on the hot path
//! (relaxed atomics, no locks) and gauges that operators register, read whenever
//! metrics are reported.
//!
//! ```
//! use weir_dataflow::{Gauge, OperatorMetrics, Timestamp};
//! let metrics = OperatorMetrics::default();
//! OperatorMetrics::add(&metrics.records_in, 3);
//! metrics.set_watermark(Timestamp(42));
//! metrics.register_gauges(|| vec![Gauge::new("kafka_consumer_lag", 12.0).label("partition", "3")]);
//! assert_eq!(metrics.gauges()[0].labels, [("partition".to_string(), "3".to_string())]);
//! ```

use crate::Timestamp;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one operator subtask, readable while the job runs.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Records received.
    pub records_in: AtomicU64,
    /// Records emitted.
    pub records_out: AtomicU64,
    /// Records that arrived after their window's allowed lateness and were dropped
    /// (or diverted to the late side output).
    pub late_records: AtomicU64,
    /// Nanoseconds this subtask waited for room in a full channel downstream
    /// (backpressure; attributed to the operator that feeds the channel).
    pub backpressure_ns: AtomicU64,
    /// The last watermark this operator passed on, in ms (`i64::MIN`: none yet).
    pub watermark: AtomicI64,
    gauges: GaugeList,
}

/// Reads operator-specific gauges (Kafka lag per partition, bytes waiting, …).
pub type GaugeFn = Arc<dyn Fn() -> Vec<Gauge> + Send + Sync>;

/// One operator-specific reading, e.g. `kafka_consumer_lag{topic="bids",partition="3"} 12`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gauge {
    /// Metric name: `[a-z_]+`, without the `weir_` prefix.
    pub name: String,
    /// Labels besides the job, operator and subtask.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Gauge {
    /// A gauge without extra labels.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            labels: Vec::new(),
            value,
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            backpressure_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            gauges: GaugeList::default(),
        }
    }
}

/// The gauges registered with one operator subtask.
#[derive(Default)]
struct GaugeList(Mutex<Vec<GaugeFn>>);

impl std::fmt::Debug for GaugeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |g| g.len());
        write!(f, "{n} gauge function(s)")
    }
}

impl OperatorMetrics {
    /// Adds `n` to a counter (relaxed; counters are for reporting only).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the watermark the operator passed on.
    #[inline]
    pub fn set_watermark(&self, watermark: Timestamp) {
        self.watermark.store(watermark.millis(), Ordering::Relaxed);
    }

    /// Adds operator-specific gauges, read whenever metrics are reported.
    pub fn register_gauges(&self, gauges: impl Fn() -> Vec<Gauge> + Send + Sync + 'static) {
        self.gauges
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(gauges));
    }

    /// The current readings of the registered gauges.
    pub fn gauges(&self) -> Vec<Gauge> {
        let gauges: Vec<GaugeFn> = self
            .gauges
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        gauges.iter().flat_map(|g| g()).collect()
    }
}

/// For record types that are batches of rows: how many rows a record holds
/// (`fn(&T) -> usize` by the type's id), so metrics count rows, not records.
pub(crate) type RowCounts =
    Arc<std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>;

/// The row counter of `T` in `counts`, if it has one.
pub(crate) fn row_counter<T: 'static>(counts: &RowCounts) -> Option<fn(&T) -> usize> {
    counts
        .get(&std::any::TypeId::of::<T>())
        .and_then(|f| f.downcast_ref::<fn(&T) -> usize>())
        .copied()
}

/// The rows in `records` (one per record unless `counter` says otherwise).
#[inline]
pub(crate) fn rows_in<T>(records: &[T], counter: Option<fn(&T) -> usize>) -> u64 {
    match counter {
        None => records.len() as u64,
        Some(count) => records.iter().map(|r| count(r) as u64).sum(),
    }
}

//! Versioned keyed tables and the event-time temporal join (Flink's `FOR
//! SYSTEM_TIME AS OF` on event time; Kafka Streams' versioned key-value stores,
//! KIP-889 and KIP-914).
//!
//! The table side is a keyed stream of versions: each record sets its key's value
//! from its event time on, or (a tombstone, `None`) deletes it from then on.
//! Versions are kept per key in time order ([`Versions`], keyed state like any
//! other: incremental snapshots, rescaled by key group, on the heap or in RocksDB),
//! for `retention` behind the watermark: the version valid at the watermark minus
//! the retention stays, older ones go. A version may arrive out of order within
//! the retention; one older than that is late (counted, dropped), as a versioned
//! store refuses writes older than its history.
//!
//! Each record of the stream side joins the version of its key valid at the
//! record's event time. It waits until the operator's watermark, the smaller of
//! both inputs', reaches its time: by then every version up to it has arrived, so
//! the answer does not depend on how the two inputs interleave. A record that
//! comes after the watermark passed its time joins at once (the versions up to it
//! are complete); one older than the retention is late.

use crate::graph::Data;
use crate::join::{connect, Either};
use crate::keyed_state::{opened, KeyedStateHandle};
use crate::metrics::OperatorMetrics;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::process::{TimeDomain, TimerService};
use crate::{
    duration_ms, KeySelector, KeyedStream, Operator, Result, Stream, SubtaskInfo, Timestamp,
    TimestampAssigner,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use weir_state::{decode, encode, StateKey, StateTable, StateValue};

const WATERMARK: &str = "temporal-watermark";
/// The versions of each key.
const VERSIONS: &str = "temporal-versions";
/// The stream records of each key waiting for the watermark.
const PENDING: &str = "temporal-pending";

/// The versions of one key of a versioned table, by the event time they are valid
/// from, oldest first; `None` is a deletion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions<V> {
    entries: Vec<(i64, Option<V>)>,
}

impl<V> Default for Versions<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> Versions<V> {
    /// Sets the value from `time` on (`None`: deleted from then); a version of the
    /// same time is replaced.
    pub fn put(&mut self, time: i64, value: Option<V>) {
        match self.entries.binary_search_by_key(&time, |(t, _)| *t) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (time, value)),
        }
    }

    /// The value valid at `time`: the latest version from `time` or before, if it
    /// is not a deletion.
    pub fn as_of(&self, time: i64) -> Option<&V> {
        let after = self.entries.partition_point(|(t, _)| *t <= time);
        after
            .checked_sub(1)
            .and_then(|i| self.entries[i].1.as_ref())
    }

    /// Drops the versions no lookup from `cutoff` on needs: those older than the
    /// one valid at `cutoff` (and that one too, if it is a deletion).
    pub fn trim(&mut self, cutoff: i64) {
        let valid = self.entries.partition_point(|(t, _)| *t <= cutoff);
        let Some(current) = valid.checked_sub(1) else {
            return;
        };
        let keep_from = if self.entries[current].1.is_some() {
            current
        } else {
            valid
        };
        self.entries.drain(..keep_from);
    }

    /// The versions, oldest first.
    pub fn entries(&self) -> &[(i64, Option<V>)] {
        &self.entries
    }

    /// Whether no version is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Builds the output of a stream record from its key, the record and the table's
/// value at the record's time (`None`: no value then); `None` emits nothing.
type TemporalFn<K, T, V, R> = Arc<dyn Fn(&K, T, Option<&V>) -> Option<R> + Send + Sync>;
/// A table record's version: its value, or `None` for a deletion.
type VersionFn<U, V> = Arc<dyn Fn(U) -> Option<V> + Send + Sync>;

impl<K: StateKey, T: Data + StateValue> KeyedStream<K, T> {
    /// Joins each record with the version of its key in `table` valid at the
    /// record's event time (see the [module](crate::temporal)). `version` reads a
    /// table record's value (`None` deletes the key from the record's time on);
    /// versions are kept for `retention` behind the watermark; `f` builds the
    /// output from the key, the record and the value then (`None` if the key had
    /// none), and returns `None` to emit nothing (an inner join), or a record.
    /// Both inputs need event time.
    pub fn temporal_join<U, V, R>(
        &self,
        table: &KeyedStream<K, U>,
        version: impl Fn(U) -> Option<V> + Send + Sync + 'static,
        retention: Duration,
        f: impl Fn(&K, T, Option<&V>) -> Option<R> + Send + Sync + 'static,
    ) -> Stream<R>
    where
        U: Data,
        V: StateValue,
        R: Data,
    {
        let connected = connect(self, table);
        let stream = connected.stream();
        let (Some(left_ts), Some(right_ts)) =
            (self.stream().timestamps(), table.stream().timestamps())
        else {
            stream.invalid(
                "temporal-join",
                "both inputs need event time (a watermark strategy or with_timestamps)".into(),
            );
            return stream.flat_map(|_| None::<R>);
        };
        let key = connected.key_selector();
        let (f, version): (TemporalFn<K, T, V, R>, VersionFn<U, V>) =
            (Arc::new(f), Arc::new(version));
        let retention = duration_ms(retention);
        connected.transform("temporal-join", move |info: &SubtaskInfo| TemporalJoin {
            key: key.clone(),
            left_ts: left_ts.clone(),
            right_ts: right_ts.clone(),
            version: version.clone(),
            f: f.clone(),
            retention,
            versions: None,
            pending: None,
            timers: TimerService::default(),
            watermark: i64::MIN,
            metrics: Arc::default(),
            max_parallelism: info.max_parallelism,
        })
    }
}

/// The temporal-join operator.
struct TemporalJoin<K, T, U, V, R> {
    key: KeySelector<Either<T, U>, K>,
    left_ts: TimestampAssigner<T>,
    right_ts: TimestampAssigner<U>,
    version: VersionFn<U, V>,
    f: TemporalFn<K, T, V, R>,
    retention: i64,
    /// Registered with the runtime in `open`.
    versions: Option<KeyedStateHandle<StateTable<K, Versions<V>>>>,
    /// Registered with the runtime in `open`.
    pending: Option<KeyedStateHandle<StateTable<K, Vec<(i64, T)>>>>,
    /// Per key: when its waiting records are due, and when its versions may be
    /// trimmed.
    timers: TimerService<K>,
    watermark: i64,
    metrics: Arc<OperatorMetrics>,
    max_parallelism: weir_state::MaxParallelism,
}

impl<K, T, U, V, R> Operator for TemporalJoin<K, T, U, V, R>
where
    K: StateKey,
    T: StateValue,
    U: Send + 'static,
    V: StateValue,
    R: Data,
{
    type In = Either<T, U>;
    type Out = R;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.metrics = cx.metrics.clone();
        if let Some(bytes) = cx.restored_any(WATERMARK) {
            self.watermark = decode(WATERMARK, bytes)?;
        }
        self.versions = Some(cx.keyed_state(|b| StateTable::in_backend(b, VERSIONS, Vec::new()))?);
        self.pending = Some(cx.keyed_state(|b| StateTable::in_backend(b, PENDING, Vec::new()))?);
        self.timers.open(cx)
    }

    fn on_batch(&mut self, input: &mut Vec<Either<T, U>>, out: &mut Output<R>) -> Result<()> {
        let (mut versions, mut pending) = (opened(&self.versions)?, opened(&self.pending)?);
        let (wm, retention) = (self.watermark, self.retention);
        let too_old = |time: i64| time.saturating_add(retention) < wm;
        for element in input.drain(..) {
            let key = (self.key)(&element);
            match element {
                Either::Left(record) => {
                    let time = (self.left_ts)(&record).0;
                    if too_old(time) {
                        OperatorMetrics::add(&self.metrics.late_records, 1);
                    } else if time <= wm {
                        // Every version up to its time is in: join now.
                        let value = versions.get(&key)?.and_then(|v| v.as_of(time));
                        if let Some(output) = (self.f)(&key, record, value) {
                            out.push(output);
                        }
                    } else {
                        pending
                            .get_or_insert_with(key.clone(), Vec::new)?
                            .push((time, record));
                        self.timers
                            .register(TimeDomain::EventTime, key, Timestamp(time));
                    }
                }
                Either::Right(update) => {
                    let time = (self.right_ts)(&update).0;
                    if too_old(time) {
                        OperatorMetrics::add(&self.metrics.late_records, 1);
                        continue;
                    }
                    let value = (self.version)(update);
                    versions
                        .get_or_insert_with(key.clone(), Versions::default)?
                        .put(time, value);
                    // When this version may be trimmed.
                    self.timers.register(
                        TimeDomain::EventTime,
                        key,
                        Timestamp(time.saturating_add(retention).saturating_add(1)),
                    );
                }
            }
            self.timers.take_failure()?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<R>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        let wm = self.watermark;
        let cutoff = wm.saturating_sub(self.retention);
        let (mut versions, mut pending) = (opened(&self.versions)?, opened(&self.pending)?);
        while let Some((key, _)) = self.timers.pop_due(TimeDomain::EventTime, Timestamp(wm))? {
            if let Some(waiting) = pending.remove(&key)? {
                let mut later = Vec::new();
                let table = versions.get(&key)?;
                for (time, record) in waiting {
                    if time > wm {
                        later.push((time, record));
                        continue;
                    }
                    let value = table.and_then(|v| v.as_of(time));
                    if let Some(output) = (self.f)(&key, record, value) {
                        out.push(output);
                    }
                }
                if !later.is_empty() {
                    pending.insert(key.clone(), later)?;
                }
            }
            let emptied = match versions.get_mut(&key)? {
                Some(table) => {
                    table.trim(cutoff);
                    table.is_empty()
                }
                None => false,
            };
            if emptied {
                versions.remove(&key)?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        // Versions and waiting records are the runtime's to flush and freeze.
        cx.put_operator(WATERMARK, encode(WATERMARK, &self.watermark)?);
        self.timers.snapshot(self.max_parallelism, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Versions;

    #[test]
    fn a_lookup_sees_the_version_valid_then_and_a_trim_keeps_it() {
        let mut v = Versions::default();
        v.put(20, Some("b"));
        v.put(10, Some("a"));
        v.put(30, None);
        v.put(40, Some("d"));
        v.put(20, Some("B"));
        assert_eq!(v.as_of(9), None);
        assert_eq!(v.as_of(10), Some(&"a"));
        assert_eq!(v.as_of(29), Some(&"B"));
        assert_eq!(v.as_of(30), None);
        assert_eq!(v.as_of(45), Some(&"d"));
        v.trim(25);
        assert_eq!(v.entries(), [(20, Some("B")), (30, None), (40, Some("d"))]);
        // The version valid at the cutoff is a deletion: nothing before it stays.
        v.trim(35);
        assert_eq!(v.entries(), [(40, Some("d"))]);
        v.trim(100);
        assert_eq!(v.entries(), [(40, Some("d"))]);
    }
}

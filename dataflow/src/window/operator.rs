//! The window operators: [`WindowAggregate`] for tumbling and sliding windows and
//! [`SessionAggregate`] for merging session windows. Both aggregate incrementally,
//! fire when the watermark passes the end of a window, keep state for the allowed
//! lateness (late elements update and re-fire the result) and count (and optionally
//! divert) elements later than that.

use super::Window;
use super::WindowAssigner;
use crate::operator::{OperatorContext, OperatorMetrics, Output, SnapshotContext};
use crate::{KeySelector, Operator, Result, Timestamp, TimestampAssigner};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_state::{decode, encode, AggregateFunction, StateKey, StateTable};

const WATERMARK: &str = "window-watermark";
const CONTENTS: &str = "window-contents";
const SESSIONS: &str = "window-sessions";

/// Builds an output record from a key, a window and the aggregate's result.
pub type WindowResultFn<K, Res, O> = Arc<dyn Fn(&K, Window, Res) -> O + Send + Sync>;
/// Maps a too-late element to an output record (the late side output).
pub type LateFn<T, O> = Arc<dyn Fn(T) -> O + Send + Sync>;

/// What the window operators share: how to read elements and build outputs.
pub struct WindowSpec<K, T, A: AggregateFunction<T>, O> {
    /// The window assigner.
    pub assigner: WindowAssigner,
    /// Allowed lateness in ms.
    pub lateness: i64,
    /// The key of an element.
    pub key: KeySelector<T, K>,
    /// The event time of an element.
    pub timestamp: TimestampAssigner<T>,
    /// The aggregation.
    pub aggregate: A,
    /// Builds a result record.
    pub result: WindowResultFn<K, A::Out, O>,
    /// Builds a late-output record; `None` drops late elements (they are counted).
    pub late: Option<LateFn<T, O>>,
}

impl<K, T, A: AggregateFunction<T>, O> Clone for WindowSpec<K, T, A, O> {
    fn clone(&self) -> Self {
        Self {
            assigner: self.assigner,
            lateness: self.lateness,
            key: self.key.clone(),
            timestamp: self.timestamp.clone(),
            aggregate: self.aggregate.clone(),
            result: self.result.clone(),
            late: self.late.clone(),
        }
    }
}

/// Tumbling and sliding windows with incremental aggregation.
pub struct WindowAggregate<K, T, A: AggregateFunction<T>, O> {
    spec: WindowSpec<K, T, A, O>,
    contents: StateTable<(K, Window), A::Acc>,
    /// Windows to fire, by max timestamp.
    pending: BTreeMap<i64, Vec<(K, Window)>>,
    /// Fired windows kept for the allowed lateness, by cleanup time.
    cleanup: BTreeMap<i64, Vec<(K, Window)>>,
    watermark: i64,
    metrics: Arc<OperatorMetrics>,
    max_parallelism: weir_state::MaxParallelism,
}

impl<K: StateKey, T, A: AggregateFunction<T>, O> WindowAggregate<K, T, A, O> {
    /// A window operator for one subtask.
    pub fn new(spec: WindowSpec<K, T, A, O>) -> Self {
        Self {
            spec,
            contents: StateTable::new(CONTENTS),
            pending: BTreeMap::new(),
            cleanup: BTreeMap::new(),
            watermark: i64::MIN,
            metrics: Arc::default(),
            max_parallelism: weir_state::MaxParallelism::DEFAULT,
        }
    }

    fn schedule(&mut self, key: K, window: Window) {
        let fire = window.end - 1;
        if fire <= self.watermark {
            let at = fire.saturating_add(self.spec.lateness);
            self.cleanup.entry(at).or_default().push((key, window));
        } else {
            self.pending.entry(fire).or_default().push((key, window));
        }
    }
}

impl<K, T, A, O> Operator for WindowAggregate<K, T, A, O>
where
    K: StateKey,
    T: Send + 'static,
    A: AggregateFunction<T>,
    O: Send + 'static,
{
    type In = T;
    type Out = O;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.metrics = cx.metrics.clone();
        self.max_parallelism = cx.subtask.max_parallelism;
        if cx.checkpointing {
            self.contents.enable_change_tracking();
        }
        if let Some(bytes) = cx.restored_operator.get(WATERMARK).or_else(|| {
            cx.restored_operator_all
                .iter()
                .find_map(|s| s.get(WATERMARK))
        }) {
            self.watermark = decode(WATERMARK, bytes)?;
        }
        let restored = cx.restored_state(CONTENTS);
        if !restored.is_empty() {
            self.contents
                .restore(&restored, cx.subtask.key_groups, cx.subtask.max_parallelism)?;
            let windows: Vec<(K, Window)> = self.contents.iter().map(|(k, _)| k.clone()).collect();
            for (key, window) in windows {
                self.schedule(key, window);
            }
        }
        Ok(())
    }

    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<O>) -> Result<()> {
        let watermark = self.watermark;
        let lateness = self.spec.lateness;
        for element in input.drain(..) {
            let ts = (self.spec.timestamp)(&element).0;
            let key = (self.spec.key)(&element);
            let mut assigned = false;
            let spec = &self.spec;
            let contents = &mut self.contents;
            let pending = &mut self.pending;
            let cleanup = &mut self.cleanup;
            spec.assigner.assign(ts, |window| {
                let fire = window.end - 1;
                if fire.saturating_add(lateness) <= watermark {
                    return;
                }
                assigned = true;
                let (acc, new) = contents
                    .get_or_insert_with_flag((key.clone(), window), || spec.aggregate.create());
                spec.aggregate.add(acc, &element);
                if fire <= watermark {
                    out.push((spec.result)(&key, window, spec.aggregate.result(acc)));
                    if new {
                        cleanup
                            .entry(fire.saturating_add(lateness))
                            .or_default()
                            .push((key.clone(), window));
                    }
                } else if new {
                    pending.entry(fire).or_default().push((key.clone(), window));
                }
            });
            if !assigned {
                OperatorMetrics::add(&self.metrics.late_records, 1);
                if let Some(late) = &self.spec.late {
                    out.push(late(element));
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        let wm = self.watermark;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let (_, windows) = entry.remove_entry();
            for (key, window) in windows {
                if self.spec.lateness == 0 {
                    if let Some(acc) = self.contents.remove(&(key.clone(), window)) {
                        out.push((self.spec.result)(
                            &key,
                            window,
                            self.spec.aggregate.result(&acc),
                        ));
                    }
                } else {
                    if let Some(acc) = self.contents.get(&(key.clone(), window)) {
                        out.push((self.spec.result)(
                            &key,
                            window,
                            self.spec.aggregate.result(acc),
                        ));
                    }
                    let at = (window.end - 1).saturating_add(self.spec.lateness);
                    self.cleanup.entry(at).or_default().push((key, window));
                }
            }
        }
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() > wm {
                break;
            }
            for key in entry.remove() {
                self.contents.remove(&key);
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(WATERMARK, encode(WATERMARK, &self.watermark)?);
        cx.put_keyed(CONTENTS, self.contents.snapshot(self.max_parallelism)?);
        Ok(())
    }
}

/// One session of one key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionEntry<Acc> {
    window: Window,
    acc: Acc,
    fired: bool,
}

/// Session windows (merging) with incremental aggregation.
pub struct SessionAggregate<K, T, A: AggregateFunction<T>, O> {
    spec: WindowSpec<K, T, A, O>,
    sessions: StateTable<K, Vec<SessionEntry<A::Acc>>>,
    timers: BTreeMap<i64, Vec<K>>,
    watermark: i64,
    gap: i64,
    metrics: Arc<OperatorMetrics>,
    max_parallelism: weir_state::MaxParallelism,
}

impl<K: StateKey, T, A: AggregateFunction<T>, O> SessionAggregate<K, T, A, O> {
    /// A session window operator for one subtask.
    pub fn new(spec: WindowSpec<K, T, A, O>) -> Self {
        let gap = match spec.assigner {
            WindowAssigner::Session { gap } => gap,
            _ => 1,
        };
        Self {
            spec,
            sessions: StateTable::new(SESSIONS),
            timers: BTreeMap::new(),
            watermark: i64::MIN,
            gap,
            metrics: Arc::default(),
            max_parallelism: weir_state::MaxParallelism::DEFAULT,
        }
    }

    fn timer_for(&self, entry: &SessionEntry<A::Acc>) -> i64 {
        if entry.fired {
            (entry.window.end - 1).saturating_add(self.spec.lateness)
        } else {
            entry.window.end - 1
        }
    }
}

impl<K, T, A, O> Operator for SessionAggregate<K, T, A, O>
where
    K: StateKey,
    T: Send + 'static,
    A: AggregateFunction<T>,
    O: Send + 'static,
{
    type In = T;
    type Out = O;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.metrics = cx.metrics.clone();
        self.max_parallelism = cx.subtask.max_parallelism;
        if cx.checkpointing {
            self.sessions.enable_change_tracking();
        }
        if let Some(bytes) = cx.restored_operator.get(WATERMARK).or_else(|| {
            cx.restored_operator_all
                .iter()
                .find_map(|s| s.get(WATERMARK))
        }) {
            self.watermark = decode(WATERMARK, bytes)?;
        }
        let restored = cx.restored_state(SESSIONS);
        if !restored.is_empty() {
            self.sessions
                .restore(&restored, cx.subtask.key_groups, cx.subtask.max_parallelism)?;
            let timers: Vec<(i64, K)> = self
                .sessions
                .iter()
                .flat_map(|(k, list)| list.iter().map(move |e| (e, k)))
                .map(|(e, k)| (self.timer_for(e), k.clone()))
                .collect();
            for (at, key) in timers {
                self.timers.entry(at).or_default().push(key);
            }
        }
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<O>) -> Result<()> {
        let (watermark, lateness, gap) = (self.watermark, self.spec.lateness, self.gap);
        for element in input.drain(..) {
            let ts = (self.spec.timestamp)(&element).0;
            let own = Window {
                start: ts,
                end: ts.saturating_add(gap),
            };
            if (own.end - 1).saturating_add(lateness) <= watermark {
                OperatorMetrics::add(&self.metrics.late_records, 1);
                if let Some(late) = &self.spec.late {
                    out.push(late(element));
                }
                continue;
            }
            let key = (self.spec.key)(&element);
            let spec = &self.spec;
            let list = self.sessions.get_or_insert_with(key.clone(), Vec::new);
            let mut merged = SessionEntry {
                window: own,
                acc: spec.aggregate.create(),
                fired: false,
            };
            spec.aggregate.add(&mut merged.acc, &element);
            let mut i = 0;
            while i < list.len() {
                if list[i].window.intersects(&merged.window) {
                    let other = list.swap_remove(i);
                    merged.window = merged.window.cover(&other.window);
                    spec.aggregate.merge(&mut merged.acc, other.acc);
                } else {
                    i += 1;
                }
            }
            let fire = merged.window.end - 1;
            if fire <= watermark {
                out.push((spec.result)(
                    &key,
                    merged.window,
                    spec.aggregate.result(&merged.acc),
                ));
                merged.fired = true;
                self.timers
                    .entry(fire.saturating_add(lateness))
                    .or_default()
                    .push(key);
            } else {
                self.timers.entry(fire).or_default().push(key);
            }
            list.push(merged);
            list.sort_by_key(|e| e.window.start);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        let (wm, lateness) = (self.watermark, self.spec.lateness);
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > wm {
                break;
            }
            for key in entry.remove() {
                let Some(list) = self.sessions.get_mut(&key) else {
                    continue;
                };
                let mut later = Vec::new();
                for session in list.iter_mut() {
                    let fire = session.window.end - 1;
                    if !session.fired && fire <= wm {
                        out.push((self.spec.result)(
                            &key,
                            session.window,
                            self.spec.aggregate.result(&session.acc),
                        ));
                        session.fired = true;
                        if lateness > 0 {
                            later.push(fire.saturating_add(lateness));
                        }
                    }
                }
                list.retain(|s| !(s.fired && (s.window.end - 1).saturating_add(lateness) <= wm));
                let empty = list.is_empty();
                if empty {
                    self.sessions.remove(&key);
                }
                for at in later {
                    if at > wm {
                        self.timers.entry(at).or_default().push(key.clone());
                    }
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(WATERMARK, encode(WATERMARK, &self.watermark)?);
        cx.put_keyed(SESSIONS, self.sessions.snapshot(self.max_parallelism)?);
        Ok(())
    }
}

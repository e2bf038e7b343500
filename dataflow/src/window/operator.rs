//! The window operators: [`WindowAggregate`] for tumbling and sliding windows and
//! [`SessionAggregate`] for merging session windows. Both aggregate incrementally,
//! fire when the watermark passes the end of a window, keep state for the allowed
//! lateness (late elements update and re-fire the result) and count (and optionally
//! divert) elements later than that.

use super::Window;
use super::WindowAssigner;
use crate::keyed_state::{opened, KeyedStateHandle, KeyedStateStore};
use crate::metrics::OperatorMetrics;
use crate::operator::{OperatorContext, Output, SnapshotContext};
use crate::query::{
    key_of, serde_router, Cursor, Entry, Json, Page, QueryError, Read, Router, ToJson,
};
use crate::{KeySelector, Operator, Result, Timestamp, TimestampAssigner};
use serde::{Deserialize, Serialize};
use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use weir_state::{
    check_group, decode, encode, AggregateFunction, FrozenKeyed, KeyGroup, KeyGroupRange,
    KeyedBackend, MaxParallelism, StableHasher, StateError, StateKey, StateTable, StateValue,
};

const WATERMARK: &str = "window-watermark";
const CONTENTS: &str = "window-contents";
const SESSIONS: &str = "window-sessions";
/// The session timers of the RocksDB backend (canonical form: [`weir_state::TimerEntry`]
/// by key group). On the heap they are not snapshotted but rebuilt from the sessions.
const SESSION_TIMERS: &str = "window-session-timers";

/// Emits the output records of a fired window from its key, the window and the
/// aggregate's result.
pub type WindowResultFn<K, Res, O> = Arc<dyn Fn(&K, Window, Res, &mut Output<O>) + Send + Sync>;
/// Maps a too-late element to an output record (the late side output).
pub type LateFn<T, O> = Arc<dyn Fn(T) -> O + Send + Sync>;

/// What the window operators share: how to read elements and build outputs.
pub struct WindowSpec<K, T, A: AggregateFunction<T>, O> {
    /// The window assigner.
    pub assigner: WindowAssigner,
    /// Allowed lateness in ms.
    pub lateness: i64,
    /// How long a window's state is kept after its end, in ms (at least the
    /// allowed lateness): fired windows stay readable by queries for that long.
    pub retention: i64,
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

impl<K, T, A: AggregateFunction<T>, O> WindowSpec<K, T, A, O> {
    /// How long after a window's last millisecond its state is kept: the allowed
    /// lateness, or the retention if longer.
    pub(super) fn keep(&self) -> i64 {
        self.lateness.max(self.retention)
    }
}

impl<K, T, A: AggregateFunction<T>, O> Clone for WindowSpec<K, T, A, O> {
    fn clone(&self) -> Self {
        Self {
            assigner: self.assigner,
            lateness: self.lateness,
            retention: self.retention,
            key: self.key.clone(),
            timestamp: self.timestamp.clone(),
            aggregate: self.aggregate.clone(),
            result: self.result.clone(),
            late: self.late.clone(),
        }
    }
}

/// The contents of one window: an accumulator per key.
struct WindowTable<K, Acc> {
    window: Window,
    fired: bool,
    entries: StateTable<K, Acc>,
}

/// Tumbling and sliding windows with incremental aggregation.
///
/// State is window-major: one table of accumulators per open window, so firing a
/// window takes its table whole, and an element costs one small ordered-map step
/// plus one hash lookup per window it belongs to.
pub struct WindowAggregate<K, T, A: AggregateFunction<T>, O> {
    spec: WindowSpec<K, T, A, O>,
    /// The open windows' contents, registered with the runtime in `open`.
    contents: Option<KeyedStateHandle<WindowContents<K, A::Acc>>>,
    watermark: i64,
    metrics: Arc<OperatorMetrics>,
}

/// The contents of a subtask's open windows: one table of accumulators per window, by
/// end (the order they fire in; an end names one window of an assigner), each in its
/// own namespace of the backend. The runtime flushes, freezes and restores them as
/// one state.
///
/// Hopping windows whose size is a multiple of their slide are sliced (Flink's
/// window slicing): an element is added once, to the table of its slide-long
/// slice, and a window's result merges the accumulators of its slices when it
/// fires. Their `windows` then hold only whole windows restored from a snapshot
/// taken before slicing; a window merges its slices and such a table.
struct WindowContents<K, Acc> {
    windows: BTreeMap<i64, WindowTable<K, Acc>>,
    /// Sliced hopping windows: one table per slice, by end.
    slices: BTreeMap<i64, WindowTable<K, Acc>>,
    /// Slices in RocksDB that a fired window has read, by end, kept decoded for the
    /// windows still to fire that hold them (at most size / slide - 1 slices), so
    /// each is read from RocksDB once rather than once per window. A slice leaves
    /// when its last window has fired, or when a late element changes it. Never
    /// part of a snapshot; the heap's slices are read in place.
    read: BTreeMap<i64, Vec<(K, Acc)>>,
    /// The slice length, if windows are sliced.
    slice: Option<i64>,
    /// Where window contents live (one namespace per window).
    backend: KeyedBackend,
    /// Whether windows share starts (cumulate windows): then a window's namespace
    /// is its start and end, else its start (as it always was, so state restores).
    shared_starts: bool,
    /// The watermark restored with them: a restored window that ended before it has
    /// fired.
    watermark: i64,
}

impl<K: StateKey, Acc: StateValue> WindowContents<K, Acc> {
    /// The table of `window`, opened if new.
    #[inline]
    fn table<'a>(
        windows: &'a mut BTreeMap<i64, WindowTable<K, Acc>>,
        backend: &KeyedBackend,
        shared_starts: bool,
        window: Window,
    ) -> Result<&'a mut WindowTable<K, Acc>, StateError> {
        match windows.entry(window.end) {
            std::collections::btree_map::Entry::Occupied(table) => Ok(table.into_mut()),
            std::collections::btree_map::Entry::Vacant(vacant) => {
                Self::open_table(vacant, backend, shared_starts, window)
            }
        }
    }

    /// Opens the table of a window seen for the first time (rare: kept out of the
    /// per-element path). With `shared_starts` (cumulate windows and slices) its
    /// namespace is its start and end, else its start.
    #[cold]
    #[inline(never)]
    fn open_table<'a>(
        vacant: std::collections::btree_map::VacantEntry<'a, i64, WindowTable<K, Acc>>,
        backend: &KeyedBackend,
        shared_starts: bool,
        window: Window,
    ) -> Result<&'a mut WindowTable<K, Acc>, StateError> {
        let mut namespace = window.start.to_be_bytes().to_vec();
        if shared_starts {
            namespace.extend_from_slice(&window.end.to_be_bytes());
        }
        Ok(vacant.insert(WindowTable {
            window,
            fired: false,
            entries: StateTable::in_backend(backend, CONTENTS, namespace)?,
        }))
    }
}

impl<K: StateKey, Acc: StateValue> WindowContents<K, Acc> {
    /// The accumulator of `key` in sliced `window`: the merge of its slices' and of
    /// a table of the whole window restored from before slicing; `None` if it has
    /// none.
    fn merged<T, A: AggregateFunction<T, Acc = Acc>>(
        &mut self,
        aggregate: &A,
        key: &K,
        window: Window,
        slide: i64,
    ) -> Result<Option<Acc>, StateError> {
        let mut merged = None;
        for (_, table) in self.slices.range_mut(window.start + slide..=window.end) {
            if let Some(acc) = table.entries.get(key)? {
                fold(aggregate, &mut merged, acc);
            }
        }
        if let Some(table) = self.windows.get_mut(&window.end) {
            if let Some(acc) = table.entries.get(key)? {
                fold(aggregate, &mut merged, acc);
            }
        }
        Ok(merged)
    }
}

/// Merges `acc` into `merged` (a copy of it, if `merged` is empty).
#[inline]
fn fold<T, A: AggregateFunction<T>>(aggregate: &A, merged: &mut Option<A::Acc>, acc: &A::Acc) {
    match merged {
        Some(merged) => aggregate.merge(merged, acc.clone()),
        None => *merged = Some(acc.clone()),
    }
}

/// Hopping windows that are sliced: their size is a multiple of their slide.
#[derive(Clone, Copy, Debug)]
struct Sliced {
    size: i64,
    slide: i64,
    offset: i64,
}

impl<K: StateKey, Acc: StateValue> KeyedStateStore for WindowContents<K, Acc> {
    fn state_name(&self) -> String {
        CONTENTS.to_string()
    }

    fn flush_state(&mut self) -> weir_state::Result<()> {
        // Flushed first, the tables of all windows share one RocksDB checkpoint.
        for table in self.windows.values_mut().chain(self.slices.values_mut()) {
            table.entries.flush()?;
        }
        Ok(())
    }

    fn freeze_state(&mut self, frozen: &mut Vec<Box<dyn FrozenKeyed>>) -> weir_state::Result<()> {
        // A table's header is its window (or slice: restore tells them apart by
        // length).
        for table in self.windows.values_mut().chain(self.slices.values_mut()) {
            frozen.push(Box::new(table.entries.freeze()?.with_header(table.window)));
        }
        Ok(())
    }

    fn restore_state(
        &mut self,
        chunks: &[(KeyGroup, &[u8])],
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> weir_state::Result<usize> {
        let mut restored = 0;
        self.read.clear();
        for &(group, bytes) in chunks {
            if !range.contains(group) {
                continue;
            }
            let (window, entries): (Window, Vec<(K, Acc)>) = decode(CONTENTS, bytes)?;
            let table = match self.slice {
                Some(slice) if window.end - window.start == slice => {
                    Self::table(&mut self.slices, &self.backend, true, window)?
                }
                _ => Self::table(&mut self.windows, &self.backend, self.shared_starts, window)?,
            };
            table.fired = window.end - 1 <= self.watermark;
            for (key, acc) in entries {
                check_group(CONTENTS, &key, group, max)?;
                table.entries.insert(key, acc)?;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// A key's value is its accumulator in every open window (and slice, for sliced
    /// hopping windows) that holds it: `[{"start", "end", "slice", "value"}]`, by
    /// end. A scan returns each key once, in key-group order.
    fn query(
        &mut self,
        read: &Read,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Option<Result<Page, QueryError>> {
        Some(self.read(read, range, max))
    }

    fn router(&self) -> Option<Router> {
        Some(serde_router::<K>())
    }
}

impl<K: StateKey, Acc: StateValue> WindowContents<K, Acc> {
    fn read(
        &mut self,
        read: &Read,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Result<Page, QueryError> {
        let failed = |e: &dyn std::fmt::Display| QueryError::Failed {
            state: CONTENTS.to_string(),
            reason: e.to_string(),
        };
        let json = |v: &dyn ToJson| v.json().map_err(|e| failed(&e));
        let window_json = |window: Window, sliced: bool, acc: &Acc| {
            Ok::<_, QueryError>(serde_json::json!({
                "start": window.start,
                "end": window.end,
                "slice": sliced,
                "value": json(acc)?,
            }))
        };
        let slice = self.slice;
        let tables = self
            .windows
            .values_mut()
            .map(|t| (t, false))
            .chain(self.slices.values_mut().map(|t| (t, slice.is_some())));
        match read {
            Read::Get { key } => {
                let k: K = key_of(CONTENTS, key)?;
                let mut windows = Vec::new();
                for (table, sliced) in tables {
                    if let Some(acc) = table.entries.get(&k).map_err(|e| failed(&e))? {
                        windows.push(window_json(table.window, sliced, acc)?);
                    }
                }
                let entries = if windows.is_empty() {
                    Vec::new()
                } else {
                    vec![Entry {
                        key: key.clone(),
                        value: Json::Array(windows),
                    }]
                };
                Ok(Page {
                    entries,
                    next: None,
                })
            }
            Read::Scan { limit, after } => {
                let limit = (*limit).max(1);
                // The smallest `limit + 1` keys after the cursor, with their windows.
                let mut best: BTreeMap<Cursor, (K, Vec<(Window, bool, Acc)>)> = BTreeMap::new();
                let mut error = None;
                for (table, sliced) in tables {
                    let window = table.window;
                    table
                        .entries
                        .for_each(|k, acc| {
                            let group = weir_state::key_group_for_key(k, max);
                            if !range.contains(group) {
                                return;
                            }
                            let at = match weir_state::encode(CONTENTS, k) {
                                Ok(bytes) => Cursor {
                                    group: group.get(),
                                    key: Some(bytes),
                                },
                                Err(e) => {
                                    error.get_or_insert(failed(&e));
                                    return;
                                }
                            };
                            let full = best.len() > limit;
                            if after.as_ref().is_some_and(|after| at <= *after)
                                || (full
                                    && best.keys().next_back().is_some_and(|worst| at > *worst))
                            {
                                return;
                            }
                            best.entry(at)
                                .or_insert_with(|| (k.clone(), Vec::new()))
                                .1
                                .push((window, sliced, acc.clone()));
                            if best.len() > limit + 1 {
                                best.pop_last();
                            }
                        })
                        .map_err(|e| failed(&e))?;
                }
                if let Some(e) = error {
                    return Err(e);
                }
                let more = best.len() > limit;
                let mut entries = Vec::new();
                let mut next = None;
                for (at, (k, mut windows)) in best.into_iter().take(limit) {
                    windows.sort_by_key(|(window, ..)| window.end);
                    let windows = windows
                        .iter()
                        .map(|(window, sliced, acc)| window_json(*window, *sliced, acc))
                        .collect::<Result<Vec<_>, _>>()?;
                    entries.push(Entry {
                        key: json(&k)?,
                        value: Json::Array(windows),
                    });
                    next = Some(at);
                }
                Ok(Page {
                    entries,
                    next: next.filter(|_| more),
                })
            }
        }
    }
}

impl<K: StateKey, T, A: AggregateFunction<T>, O> WindowAggregate<K, T, A, O> {
    /// A window operator for one subtask.
    pub fn new(spec: WindowSpec<K, T, A, O>) -> Self {
        Self {
            spec,
            contents: None,
            watermark: i64::MIN,
            metrics: Arc::default(),
        }
    }
}

impl<K, T, A, O> WindowAggregate<K, T, A, O>
where
    K: StateKey,
    T: Send + 'static,
    A: AggregateFunction<T>,
    O: Send + 'static,
{
    /// The windows' shape if they are sliced: hopping windows larger than their
    /// slide and a multiple of it (a slide that does not divide the size would
    /// need slices of their greatest common divisor, more slices than windows per
    /// element: those stay whole).
    fn sliced(&self) -> Option<Sliced> {
        match self.spec.assigner {
            WindowAssigner::Sliding {
                size,
                slide,
                offset,
            } if size > slide && size % slide == 0 => Some(Sliced {
                size,
                slide,
                offset,
            }),
            _ => None,
        }
    }

    /// Adds each element once, to its slice (the first slide of the last window
    /// holding it). An element for windows that have fired and are kept for their
    /// lateness fires them again for its key.
    fn on_batch_sliced(
        &mut self,
        sliced: Sliced,
        input: &mut Vec<T>,
        out: &mut Output<O>,
    ) -> Result<()> {
        let Sliced {
            size,
            slide,
            offset,
        } = sliced;
        let (watermark, lateness) = (self.watermark, self.spec.lateness);
        let spec = &self.spec;
        let mut contents = opened(&self.contents)?;
        let contents = &mut *contents;
        // The slice of the element before: elements come nearly in order, so most
        // fall into it and need no division to find theirs.
        let mut current = (i64::MAX, i64::MIN);
        for element in input.drain(..) {
            let ts = (spec.timestamp)(&element).0;
            if ts < current.0 || ts >= current.1 {
                let start = ts - (ts - offset).rem_euclid(slide);
                current = (start, start + slide);
            }
            let start = current.0;
            // The last window holding it ends at `start + size`.
            if (start + size - 1).saturating_add(lateness) <= watermark {
                OperatorMetrics::add(&self.metrics.late_records, 1);
                if let Some(late) = &spec.late {
                    out.push(late(element));
                }
                continue;
            }
            let key = (spec.key)(&element);
            let slice = Window {
                start,
                end: start + slide,
            };
            let table =
                WindowContents::table(&mut contents.slices, &contents.backend, true, slice)?;
            if slice.end - 1 <= watermark {
                // A late element: a window holding this slice may have read it.
                contents.read.remove(&slice.end);
            }
            let acc = table
                .entries
                .get_or_insert_with_ref(&key, || spec.aggregate.create())?;
            spec.aggregate.add(acc, &element);
            // The windows holding it end from its slice's end to `start + size`.
            let mut end = start + slide;
            while end <= start + size && end - 1 <= watermark {
                if (end - 1).saturating_add(lateness) > watermark {
                    let window = Window {
                        start: end - size,
                        end,
                    };
                    if let Some(acc) = contents.merged(&spec.aggregate, &key, window, slide)? {
                        (spec.result)(&key, window, spec.aggregate.result(&acc), out);
                    }
                }
                end += slide;
            }
        }
        Ok(())
    }

    /// Fires the sliced windows whose end the watermark passed since `before`,
    /// each merging its slices per key, then drops the slices and tables of
    /// windows past their lateness.
    fn fire_slices(&mut self, sliced: Sliced, before: i64, out: &mut Output<O>) -> Result<()> {
        let Sliced {
            size,
            slide,
            offset,
        } = sliced;
        let (wm, keep) = (self.watermark, self.spec.keep());
        let spec = &self.spec;
        let mut contents = opened(&self.contents)?;
        let contents = &mut *contents;
        if wm > before {
            // Windows ending in (before + 1, wm + 1]: those holding a slice (they
            // end where slices end, from its end to its start + size), and tables
            // of whole windows restored from before slicing.
            let (from, to) = (before.saturating_add(2), wm.saturating_add(1));
            let mut ends = BTreeSet::new();
            let first = contents.slices.first_key_value().map(|(&end, _)| end);
            let last = contents
                .slices
                .last_key_value()
                .map(|(_, t)| t.window.start);
            if let (Some(first), Some(last)) = (first, last) {
                let lowest = first.max(from);
                let mut end = lowest + (offset - lowest).rem_euclid(slide);
                while end <= (last + size).min(to) {
                    ends.insert(end);
                    end += slide;
                }
            }
            if from <= to {
                ends.extend(contents.windows.range(from..=to).map(|(&end, _)| end));
            }
            let mut merged: HashMap<K, A::Acc, BuildHasherDefault<StableHasher>> =
                HashMap::default();
            let add =
                |merged: &mut HashMap<_, _, _>, key: &K, acc: &A::Acc| match merged.get_mut(key) {
                    Some(into) => spec.aggregate.merge(into, acc.clone()),
                    None => {
                        merged.insert(key.clone(), acc.clone());
                    }
                };
            for end in ends {
                let window = Window {
                    start: end - size,
                    end,
                };
                // (Whether a sliced window has fired follows from the watermark:
                // no table's `fired` is read.)
                for (&slice_end, table) in contents.slices.range_mut(window.start + slide..=end) {
                    if !table.entries.is_rocksdb() {
                        table
                            .entries
                            .for_each(|key, acc| add(&mut merged, key, acc))?;
                        continue;
                    }
                    let entries = match contents.read.entry(slice_end) {
                        btree_map::Entry::Occupied(read) => read.into_mut(),
                        btree_map::Entry::Vacant(unread) => {
                            let mut entries = Vec::new();
                            table
                                .entries
                                .for_each(|key, acc| entries.push((key.clone(), acc.clone())))?;
                            unread.insert(entries)
                        }
                    };
                    for (key, acc) in entries.iter() {
                        add(&mut merged, key, acc);
                    }
                }
                if let Some(whole) = contents.windows.get_mut(&end) {
                    whole
                        .entries
                        .for_each(|key, acc| add(&mut merged, key, acc))?;
                }
                for (key, acc) in merged.drain() {
                    (spec.result)(&key, window, spec.aggregate.result(&acc), out);
                }
            }
        }
        // A read slice is dropped once the last window holding it (ending at its
        // start + size) has fired; the slice itself goes with that window's lateness.
        contents
            .read
            .retain(|&end, _| (end - slide + size - 1) > wm);
        while let Some(entry) = contents.slices.first_entry() {
            if (entry.get().window.start + size - 1).saturating_add(keep) > wm {
                break;
            }
            let mut expired = entry.remove();
            if expired.entries.is_rocksdb() {
                expired.entries.clear()?;
            }
        }
        while let Some(entry) = contents.windows.first_entry() {
            if (entry.get().window.end - 1).saturating_add(keep) > wm {
                break;
            }
            let mut expired = entry.remove();
            if expired.entries.is_rocksdb() {
                expired.entries.clear()?;
            }
        }
        Ok(())
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
        if let Some(bytes) = cx.restored_any(WATERMARK) {
            self.watermark = decode(WATERMARK, bytes)?;
        }
        let watermark = self.watermark;
        let shared_starts = matches!(self.spec.assigner, WindowAssigner::Cumulate { .. });
        let slice = self.sliced().map(|s| s.slide);
        self.contents = Some(cx.keyed_state(|backend| {
            Ok(WindowContents {
                windows: BTreeMap::new(),
                slices: BTreeMap::new(),
                read: BTreeMap::new(),
                slice,
                backend: backend.clone(),
                shared_starts,
                watermark,
            })
        })?);
        Ok(())
    }

    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<O>) -> Result<()> {
        if let Some(sliced) = self.sliced() {
            return self.on_batch_sliced(sliced, input, out);
        }
        let (watermark, lateness) = (self.watermark, self.spec.lateness);
        let spec = &self.spec;
        let mut contents = opened(&self.contents)?;
        let WindowContents {
            windows,
            backend,
            shared_starts,
            ..
        } = &mut *contents;
        let shared_starts = *shared_starts;
        let mut failed = None;
        // Tumbling windows: the window of the element before. Elements come nearly
        // in order, so most fall into it and need no division to find theirs.
        let tumbling = matches!(spec.assigner, WindowAssigner::Tumbling { .. });
        let mut current = Window {
            start: i64::MAX,
            end: i64::MIN,
        };
        for element in input.drain(..) {
            let ts = (spec.timestamp)(&element).0;
            let key = (spec.key)(&element);
            let mut assigned = false;
            if tumbling && (ts < current.start || ts >= current.end) {
                spec.assigner.assign(ts, |window| current = window);
            }
            let mut add = |window: Window| {
                if (window.end - 1).saturating_add(lateness) <= watermark {
                    return;
                }
                assigned = true;
                let added = WindowContents::table(windows, backend, shared_starts, window)
                    .and_then(|table| {
                        let acc = table
                            .entries
                            .get_or_insert_with_ref(&key, || spec.aggregate.create())?;
                        spec.aggregate.add(acc, &element);
                        if table.fired {
                            (spec.result)(&key, window, spec.aggregate.result(acc), out);
                        }
                        Ok(())
                    });
                if let Err(e) = added {
                    failed.get_or_insert(e);
                }
            };
            match tumbling {
                true => add(current),
                false => spec.assigner.assign(ts, add),
            }
            if let Some(e) = failed.take() {
                return Err(e.into());
            }
            if !assigned {
                OperatorMetrics::add(&self.metrics.late_records, 1);
                if let Some(late) = &spec.late {
                    out.push(late(element));
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> Result<()> {
        let before = self.watermark;
        self.watermark = self.watermark.max(watermark.0);
        if let Some(sliced) = self.sliced() {
            return self.fire_slices(sliced, before, out);
        }
        let (wm, keep) = (self.watermark, self.spec.keep());
        let spec = &self.spec;
        let mut contents = opened(&self.contents)?;
        let windows = &mut contents.windows;
        for table in windows.values_mut() {
            if table.window.end - 1 > wm {
                break;
            }
            if !table.fired {
                table.fired = true;
                let window = table.window;
                table.entries.for_each(|key, acc| {
                    (spec.result)(key, window, spec.aggregate.result(acc), out);
                })?;
            }
        }
        while let Some(entry) = windows.first_entry() {
            if (entry.get().window.end - 1).saturating_add(keep) > wm {
                break;
            }
            let mut expired = entry.remove();
            if expired.entries.is_rocksdb() {
                // On the heap, dropping the table is enough.
                expired.entries.clear()?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        // The window contents are the runtime's to flush and freeze.
        cx.put_operator(WATERMARK, encode(WATERMARK, &self.watermark)?);
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

impl<Acc> SessionEntry<Acc> {
    /// When this session next needs attention: its end (to fire) or, once fired, the
    /// end of the time it is kept (`keep`: its allowed lateness or retention) to be
    /// dropped.
    fn due(&self, keep: i64) -> i64 {
        if self.fired {
            (self.window.end - 1).saturating_add(keep)
        } else {
            self.window.end - 1
        }
    }

    /// Whether the session is past its allowed lateness (kept only for its
    /// retention): no element joins it any more.
    fn closed(&self, lateness: i64, watermark: i64) -> bool {
        self.fired && (self.window.end - 1).saturating_add(lateness) <= watermark
    }
}

/// The sessions of one key, and the time of the one timer registered for the key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySessions<Acc> {
    sessions: SessionList<Acc>,
    /// A timer is registered at this time, no later than the earliest `due`.
    #[serde(skip)]
    timer: Option<i64>,
}

/// The sessions of one key: the one that starts last in the key's entry, the
/// others in a vector, and the latest end among the others. An element after that
/// end extends the last session or starts a new one, and touches nothing
/// outside the entry: no other session can touch it. A key often holds several
/// sessions between two watermarks, and scanning them cost a cache miss per element.
/// Serialized as a sequence, like the `Vec` it replaces (so snapshots taken before
/// restore).
#[derive(Clone, Debug)]
struct SessionList<Acc> {
    /// The session with the latest start, if any.
    last: Option<SessionEntry<Acc>>,
    /// The others, in no particular order.
    others: Vec<SessionEntry<Acc>>,
    /// No session in `others` ends after this (`i64::MIN` if there is none).
    others_end: i64,
}

impl<Acc> Default for SessionList<Acc> {
    fn default() -> Self {
        Self {
            last: None,
            others: Vec::new(),
            others_end: i64::MIN,
        }
    }
}

impl<Acc> SessionList<Acc> {
    fn iter(&self) -> impl Iterator<Item = &SessionEntry<Acc>> {
        self.last.iter().chain(&self.others)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut SessionEntry<Acc>> {
        self.last.iter_mut().chain(&mut self.others)
    }

    /// Adds an element whose own window is `own` to the last session, or starts a
    /// new session with it, if no other session can touch it: it starts after the
    /// others' end, and the last session is open. `None` (nothing added)
    /// otherwise.
    fn add_in_order(
        &mut self,
        own: Window,
        closed: impl Fn(&SessionEntry<Acc>) -> bool,
        create: impl FnOnce() -> Acc,
        add: impl FnOnce(&mut Acc),
    ) -> Option<&mut SessionEntry<Acc>> {
        let extends = match &self.last {
            // Windows that meet touch: one starting where another ends joins it.
            Some(last) if own.start <= self.others_end || closed(last) => return None,
            Some(last) => last.window.intersects(&own),
            // (Never: the last session is the only one or the one starting last.)
            None if !self.others.is_empty() => return None,
            None => false,
        };
        if !extends {
            let mut acc = create();
            add(&mut acc);
            let entry = SessionEntry {
                window: own,
                acc,
                fired: false,
            };
            if self
                .last
                .as_ref()
                .is_some_and(|last| own.start < last.window.start)
            {
                // Between the others and the last session, touching neither.
                self.others_end = self.others_end.max(own.end);
                self.others.push(entry);
                return self.others.last_mut();
            }
            if let Some(previous) = self.last.take() {
                self.others_end = self.others_end.max(previous.window.end);
                self.others.push(previous);
            }
            return Some(self.last.insert(entry));
        }
        let last = self.last.as_mut()?;
        last.window = last.window.cover(&own);
        add(&mut last.acc);
        Some(last)
    }

    /// All sessions as a vector, to be put back with [`SessionList::put_back`].
    fn take_all(&mut self) -> Vec<SessionEntry<Acc>> {
        let mut all = std::mem::take(&mut self.others);
        all.extend(self.last.take());
        self.others_end = i64::MIN;
        all
    }

    /// Puts back the sessions taken, returning the one at `index`.
    fn put_back(
        &mut self,
        mut all: Vec<SessionEntry<Acc>>,
        index: usize,
    ) -> Option<&mut SessionEntry<Acc>> {
        let latest = (0..all.len()).max_by_key(|&i| all[i].window.start)?;
        let moved = all.len() - 1;
        self.last = Some(all.swap_remove(latest));
        self.others_end = all.iter().map(|s| s.window.end).max().unwrap_or(i64::MIN);
        self.others = all;
        match index {
            i if i == latest => self.last.as_mut(),
            i if i == moved => self.others.get_mut(latest),
            i => self.others.get_mut(i),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&SessionEntry<Acc>) -> bool) {
        let others = self.others.len();
        self.others.retain(&mut keep);
        let last_dropped = self.last.as_ref().is_some_and(|last| !keep(last));
        if last_dropped {
            self.last = None;
        }
        if last_dropped || self.others.len() != others {
            let all = self.take_all();
            self.put_back(all, 0);
        }
    }
}

impl<Acc> From<Vec<SessionEntry<Acc>>> for SessionList<Acc> {
    fn from(all: Vec<SessionEntry<Acc>>) -> Self {
        let mut list = Self::default();
        list.put_back(all, 0);
        list
    }
}

impl<Acc: Serialize> Serialize for SessionList<Acc> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de, Acc: Deserialize<'de>> Deserialize<'de> for SessionList<Acc> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        Vec::deserialize(deserializer).map(Self::from)
    }
}

/// Session windows (merging) with incremental aggregation.
///
/// Each key has at most one timer, at or before its earliest session's end; a timer
/// that fires early (the session was extended) is moved, so an element costs one hash
/// lookup and, only when it makes a session end earlier, one timer insertion.
///
/// On the heap the timers are in buckets of event time (`HeapTimers`); on RocksDB they live in RocksDB with
/// the sessions ([`weir_state::Timers`]), so memory does not grow with the keys.
pub struct SessionAggregate<K, T, A: AggregateFunction<T>, O> {
    spec: WindowSpec<K, T, A, O>,
    /// Registered with the runtime in `open`.
    sessions: Option<KeyedStateHandle<StateTable<K, KeySessions<A::Acc>>>>,
    timers: SessionTimers<K>,
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
            sessions: None,
            timers: SessionTimers::Heap(HeapTimers::default()),
            watermark: i64::MIN,
            gap,
            metrics: Arc::default(),
            max_parallelism: weir_state::MaxParallelism::DEFAULT,
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
        if let Some(bytes) = cx.restored_any(WATERMARK) {
            self.watermark = decode(WATERMARK, bytes)?;
        }
        self.timers = SessionTimers::open(cx, SESSION_TIMERS)?;
        let restored = !cx.restored_chunks(SESSIONS).is_empty();
        let handle: KeyedStateHandle<StateTable<K, KeySessions<A::Acc>>> =
            cx.keyed_state(|backend| StateTable::in_backend(backend, SESSIONS, Vec::new()))?;
        let mut sessions = handle.lock()?;
        // A snapshot without timers (of the heap, or of an earlier version): every
        // key's earliest due time.
        if restored && !self.timers.restore(cx, SESSION_TIMERS)? {
            let keep = self.spec.keep();
            let keys = sessions.keys()?;
            for key in keys {
                if let Some(state) = sessions.get_mut(&key)? {
                    let due = state.sessions.iter().map(|e| e.due(keep)).min();
                    if let Some(due) = due {
                        state.timer = Some(due);
                        self.timers.register(key, due)?;
                    }
                }
            }
        }
        drop(sessions);
        self.sessions = Some(handle);
        Ok(())
    }

    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<O>) -> Result<()> {
        let (watermark, lateness, gap) = (self.watermark, self.spec.lateness, self.gap);
        let keep = self.spec.keep();
        let mut sessions = opened(&self.sessions)?;
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
            let state = sessions.get_or_insert_with_ref(&key, || KeySessions {
                sessions: SessionList::default(),
                timer: None,
            })?;
            let list = &mut state.sessions;
            let closed = |s: &SessionEntry<A::Acc>| s.closed(lateness, watermark);
            let in_order = list.add_in_order(
                own,
                closed,
                || spec.aggregate.create(),
                |acc| spec.aggregate.add(acc, &element),
            );
            let session = match in_order {
                Some(session) => session,
                None => {
                    let mut all = list.take_all();
                    let index = add_anywhere(&mut all, own, &element, spec, lateness, watermark);
                    match list.put_back(all, index) {
                        Some(session) => session,
                        None => continue, // (never: `all` holds the element's session)
                    }
                }
            };
            if session.window.end - 1 <= watermark {
                // A late element within the allowed lateness: fire the updated session.
                (spec.result)(
                    &key,
                    session.window,
                    spec.aggregate.result(&session.acc),
                    out,
                );
                session.fired = true;
            } else {
                session.fired = false;
            }
            let due = session.due(keep);
            if state.timer.is_none_or(|t| due < t) {
                state.timer = Some(due);
                self.timers.register(key, due)?;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        let (wm, keep) = (self.watermark, self.spec.keep());
        let mut sessions = opened(&self.sessions)?;
        while let Some((key, at)) = self.timers.pop_due(wm)? {
            let Some(state) = sessions.get_mut(&key)? else {
                continue;
            };
            // Superseded by an earlier timer of the key. A state read back from
            // RocksDB has lost its timer (not stored): it is handled, which is
            // harmless (firing is idempotent) and registers its next timer.
            if state.timer.is_some_and(|timer| timer != at) {
                continue;
            }
            for session in state.sessions.iter_mut() {
                if !session.fired && session.window.end - 1 <= wm {
                    (self.spec.result)(
                        &key,
                        session.window,
                        self.spec.aggregate.result(&session.acc),
                        out,
                    );
                    session.fired = true;
                }
            }
            state
                .sessions
                .retain(|s| !(s.fired && (s.window.end - 1).saturating_add(keep) <= wm));
            match state.sessions.iter().map(|s| s.due(keep)).min() {
                Some(due) => {
                    state.timer = Some(due);
                    self.timers.register(key, due)?;
                }
                None => {
                    sessions.remove(&key)?;
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        // The sessions are the runtime's to flush (before this) and freeze (after
        // it): one RocksDB checkpoint holds them and the timers.
        cx.put_operator(WATERMARK, encode(WATERMARK, &self.watermark)?);
        self.timers
            .snapshot(SESSION_TIMERS, self.max_parallelism, cx)
    }
}

/// Adds an element whose own window is `own` to the sessions of its key, in any
/// order: to the first open session it touches, or to a new one, then merges the
/// sessions that now touch it. Returns the index of its session.
fn add_anywhere<K, T, A: AggregateFunction<T>, O>(
    list: &mut Vec<SessionEntry<A::Acc>>,
    own: Window,
    element: &T,
    spec: &WindowSpec<K, T, A, O>,
    lateness: i64,
    watermark: i64,
) -> usize {
    let open = |s: &SessionEntry<A::Acc>| !s.closed(lateness, watermark);
    let mut index = match list
        .iter()
        .position(|s| open(s) && s.window.intersects(&own))
    {
        Some(i) => {
            let session = &mut list[i];
            session.window = session.window.cover(&own);
            spec.aggregate.add(&mut session.acc, element);
            i
        }
        None => {
            let mut acc = spec.aggregate.create();
            spec.aggregate.add(&mut acc, element);
            list.push(SessionEntry {
                window: own,
                acc,
                fired: false,
            });
            list.len() - 1
        }
    };
    merge_touching(list, &mut index, spec, lateness, watermark);
    index
}

/// Merges into the session at `index` (which it updates) the sessions of `list`
/// that touch it, until none does.
fn merge_touching<K, T, A: AggregateFunction<T>, O>(
    list: &mut Vec<SessionEntry<A::Acc>>,
    index: &mut usize,
    spec: &WindowSpec<K, T, A, O>,
    lateness: i64,
    watermark: i64,
) {
    let mut i = 0;
    while i < list.len() {
        if i != *index
            && !list[i].closed(lateness, watermark)
            && list[i].window.intersects(&list[*index].window)
        {
            let other = list.swap_remove(i);
            if *index == list.len() {
                *index = i;
            }
            let target = &mut list[*index];
            target.window = target.window.cover(&other.window);
            spec.aggregate.merge(&mut target.acc, other.acc);
            target.fired = false;
            i = 0;
        } else {
            i += 1;
        }
    }
}

/// The session timers of a subtask: at most one per key and time that matters (a
/// superseded one fires and is ignored).
pub(super) enum SessionTimers<K> {
    /// On the heap.
    Heap(HeapTimers<K>),
    /// In the subtask's RocksDB instance.
    Rocks(weir_state::Timers<K>),
}

impl<K: StateKey> SessionTimers<K> {
    /// A subtask's timers: in its RocksDB instance as state `name`, or on the heap.
    pub(super) fn open(cx: &OperatorContext, name: &str) -> Result<Self> {
        Ok(match cx.state_backend.is_rocksdb() {
            true => Self::Rocks(weir_state::Timers::in_backend(&cx.state_backend, name)?),
            false => Self::Heap(HeapTimers::default()),
        })
    }

    /// Restores the timers checkpointed as `name` (with the state they belong to,
    /// or opened with it from a native checkpoint, where the chunks are only
    /// headers); `false` if the checkpoint has none for this backend (heap timers
    /// are not checkpointed): then the caller registers them from the state.
    pub(super) fn restore(&mut self, cx: &OperatorContext, name: &str) -> Result<bool> {
        let chunks = cx.restored_chunks(name);
        match self {
            Self::Rocks(rocks) if !chunks.is_empty() => {
                rocks.restore_chunks(chunks, cx.subtask.key_groups, cx.subtask.max_parallelism)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Checkpoints RocksDB timers as `name`; heap timers are rebuilt from the state
    /// when it is restored.
    pub(super) fn snapshot(
        &mut self,
        name: &str,
        max: MaxParallelism,
        cx: &mut SnapshotContext,
    ) -> Result<()> {
        if let Self::Rocks(timers) = self {
            timers.flush()?;
            match timers.snapshot(max)? {
                weir_state::TimersSnapshot::Encoded(encoded) => cx.put_keyed(name, encoded),
                weir_state::TimersSnapshot::Frozen(frozen) => cx.put_frozen_boxed(frozen),
            }
        }
        Ok(())
    }

    pub(super) fn register(&mut self, key: K, due: i64) -> Result<()> {
        match self {
            Self::Heap(heap) => heap.register(key, due),
            Self::Rocks(rocks) => rocks.register(weir_state::TimeDomain::EventTime, key, due)?,
        }
        Ok(())
    }

    /// Removes and returns a timer due at `watermark`: on RocksDB earliest first, on
    /// the heap earliest bucket first.
    pub(super) fn pop_due(&mut self, watermark: i64) -> Result<Option<(K, i64)>> {
        match self {
            Self::Heap(heap) => Ok(heap.pop_due(watermark)),
            Self::Rocks(rocks) => Ok(rocks.pop_due(weir_state::TimeDomain::EventTime, watermark)?),
        }
    }
}

/// Timers on the heap, in buckets of [`HeapTimers::BUCKET_BITS`] ms of event time.
///
/// Registering a timer appends it to its bucket's vector: timers come in nearly
/// increasing order, so mostly to the last bucket, without the ordered map's node
/// and vector per distinct millisecond. A watermark takes whole the buckets it has
/// passed, and splits the one it falls in. Within a bucket, timers fire in no
/// particular order.
pub(super) struct HeapTimers<K> {
    /// By bucket (time >> `BUCKET_BITS`), the timers: (time, key).
    buckets: BTreeMap<i64, Vec<(i64, K)>>,
    /// Timers taken from the buckets as due, to be popped.
    due: Vec<(i64, K)>,
}

impl<K> Default for HeapTimers<K> {
    fn default() -> Self {
        Self {
            buckets: BTreeMap::new(),
            due: Vec::new(),
        }
    }
}

impl<K> HeapTimers<K> {
    /// 256 ms: about a watermark interval, so a bucket is split about once.
    const BUCKET_BITS: u32 = 8;

    fn register(&mut self, key: K, at: i64) {
        self.buckets
            .entry(at >> Self::BUCKET_BITS)
            .or_default()
            .push((at, key));
    }

    /// Removes and returns a timer due at `watermark`.
    fn pop_due(&mut self, watermark: i64) -> Option<(K, i64)> {
        loop {
            if let Some((at, key)) = self.due.pop() {
                return Some((key, at));
            }
            let mut entry = self.buckets.first_entry()?;
            let bucket = *entry.key();
            let current = watermark >> Self::BUCKET_BITS;
            if bucket > current {
                return None;
            }
            if bucket < current {
                self.due = entry.remove();
                continue;
            }
            // The bucket the watermark falls in: take its due timers.
            let timers = entry.get_mut();
            let mut i = 0;
            while i < timers.len() {
                if timers[i].0 <= watermark {
                    self.due.push(timers.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            if timers.is_empty() {
                entry.remove();
            }
            if self.due.is_empty() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn session(start: i64, acc: u64) -> SessionEntry<u64> {
        SessionEntry {
            window: Window {
                start,
                end: start + 10,
            },
            acc,
            fired: start % 2 == 0,
        }
    }

    #[test]
    fn a_session_list_encodes_as_the_vector_it_replaces() {
        for n in 0..4 {
            let sessions: Vec<_> = (0..n).map(|i| session(i * 100, i as u64 + 7)).collect();
            // A key's sessions written by the `Vec` before are read back.
            let before = KeySessionsBefore { sessions };
            let bytes = encode("sessions", &before).unwrap();
            let list: KeySessions<u64> = decode("sessions", &bytes).unwrap();
            let mut starts: Vec<i64> = list.sessions.iter().map(|s| s.window.start).collect();
            starts.sort_unstable();
            assert_eq!(starts, (0..n).map(|i| i * 100).collect::<Vec<_>>());
            assert_eq!(list.timer, None, "the timer is not stored");
            let last = list.sessions.last.as_ref().map(|s| s.window.start);
            assert_eq!(
                last,
                (n > 0).then(|| (n - 1) * 100),
                "the last session starts last"
            );
            // And written as the `Vec` of the same sessions would be.
            let same = KeySessionsBefore {
                sessions: list.sessions.iter().cloned().collect(),
            };
            assert_eq!(
                encode("sessions", &list).unwrap(),
                encode("sessions", &same).unwrap(),
                "{n} sessions"
            );
        }
    }

    /// The form of a key's sessions before [`SessionList`].
    #[derive(Serialize)]
    struct KeySessionsBefore {
        sessions: Vec<SessionEntry<u64>>,
    }

    #[test]
    fn a_session_list_keeps_the_session_starting_last_in_place() {
        let open = |_: &SessionEntry<u64>| false;
        let mut list = SessionList::default();
        let window = |start: i64| Window {
            start,
            end: start + 10,
        };
        // In order: extends the last session, or starts a new one.
        let added = list.add_in_order(window(0), open, || 0, |acc| *acc += 1);
        assert_eq!(added.map(|s| s.acc), Some(1));
        let added = list.add_in_order(window(5), open, || 0, |acc| *acc += 1);
        assert_eq!(added.map(|s| (s.window.end, s.acc)), Some((15, 2)));
        let added = list.add_in_order(window(40), open, || 0, |acc| *acc += 1);
        assert_eq!(added.map(|s| (s.window.start, s.acc)), Some((40, 1)));
        assert_eq!(list.others.len(), 1);
        // At or before the others' end (15): not added here.
        for start in [10, 15] {
            assert!(list
                .add_in_order(window(start), open, || 0, |acc| *acc += 1)
                .is_none());
        }
        // Between the others and the last session, touching neither: a new session.
        let added = list.add_in_order(window(20), open, || 0, |acc| *acc += 1);
        assert_eq!(added.map(|s| (s.window.start, s.acc)), Some((20, 1)));
        assert_eq!((list.others.len(), list.others_end), (2, 30));
        // Nor after a closed last session.
        assert!(list
            .add_in_order(window(45), |_| true, || 0, |acc| *acc += 1)
            .is_none());
        // Put back, the session starting last is in place, and the index follows.
        let mut all = list.take_all();
        all.push(session(20, 9));
        let index = all.len() - 1;
        assert_eq!(list.put_back(all, index).map(|s| s.acc), Some(9));
        assert_eq!(list.last.as_ref().map(|s| s.window.start), Some(40));
        for i in 0..3 {
            let all = list.take_all();
            let start = all[i].window.start;
            assert_eq!(list.put_back(all, i).map(|s| s.window.start), Some(start));
            assert_eq!(list.last.as_ref().map(|s| s.window.start), Some(40));
        }
        // Dropping the last session promotes the one starting last among the others.
        list.retain(|s| s.window.start != 40);
        assert_eq!(list.last.as_ref().map(|s| s.window.start), Some(20));
        list.retain(|_| false);
        assert!(list.last.is_none() && list.others.is_empty());
    }

    #[test]
    fn heap_timers_pop_exactly_the_due_ones_across_and_within_buckets() {
        let mut timers = HeapTimers::default();
        // Times around bucket edges, negative ones, and repeats.
        let times = [
            -600, -1, 0, 1, 255, 256, 257, 300, 300, 511, 512, 1_000, 5_000,
        ];
        for (key, at) in times.iter().enumerate() {
            timers.register(key, *at);
        }
        let mut fired: Vec<(usize, i64)> = Vec::new();
        for watermark in [-700, -1, 0, 256, 299, 300, 400, 700, 10_000] {
            let mut now = Vec::new();
            while let Some((key, at)) = timers.pop_due(watermark) {
                assert!(at <= watermark, "{at} popped at watermark {watermark}");
                now.push((key, at));
                // A timer registered while firing, due already, fires in the same pass.
                if key == 6 {
                    timers.register(100, watermark - 1);
                }
            }
            fired.extend(now);
            let expected = times.iter().filter(|t| **t <= watermark).count()
                + usize::from(fired.iter().any(|(k, _)| *k == 6));
            assert_eq!(fired.len(), expected, "at watermark {watermark}: {fired:?}");
        }
        let mut keys: Vec<usize> = fired.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let mut all: Vec<usize> = (0..times.len()).collect();
        all.push(100);
        assert_eq!(keys, all);
        assert!(timers.pop_due(i64::MAX).is_none());
    }
}

//! Two-phase window aggregation (Flink's local-global aggregation): before the
//! exchange by key, each subtask folds its elements into one accumulator per key and
//! window ([`LocalWindowAggregate`]) and sends those partial accumulators on; the
//! window after the exchange merges them ([`MergePartials`]). Fewer records cross
//! threads when keys repeat within a window.
//!
//! ```text
//!  elements ─LocalWindowAggregate─▶ Partial{key, window, acc} ─key_by─▶ WindowAggregate(MergePartials)
//! ```
//!
//! The local step keeps no state: it sends every partial on before a barrier
//! ([`Operator::before_barrier`]), so a checkpoint holds them in the window's state.

use super::Window;
use crate::operator::Output;
use crate::{KeySelector, Operator, Result, TimestampAssigner};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::marker::PhantomData;
use weir_state::{AggregateFunction, StableHasher, StateKey};

/// The accumulator of one key's elements in one window, folded before the exchange.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Partial<K, Acc> {
    /// The key.
    pub key: K,
    /// The window (for sliced hopping windows, the slice).
    pub window: Window,
    /// The elements' accumulator.
    pub acc: Acc,
}

/// Folds elements per key and window (tumbling windows or slices of `length` from
/// `offset`), and sends the partials on: each window's once the watermark passes its
/// end; all of them when an element opens a window later than any seen (event time
/// moved on: the windows before rarely get more elements, and a partial sent early
/// is only merged with a later one), when more than [`MAX_PARTIALS`] are held, before
/// a barrier, and at the end of the input.
pub struct LocalWindowAggregate<K, T, A: AggregateFunction<T>> {
    length: i64,
    offset: i64,
    key: KeySelector<T, K>,
    timestamp: TimestampAssigner<T>,
    aggregate: A,
    /// Per key, the accumulator of the latest window (ending at `latest`), which most
    /// elements fall into: keyed by the key alone, smaller and cheaper to hash.
    latest_partials: HashMap<K, A::Acc, BuildHasherDefault<StableHasher>>,
    /// Per key and window end, the accumulators of earlier windows (elements out of
    /// order).
    partials: HashMap<(K, i64), A::Acc, BuildHasherDefault<StableHasher>>,
    /// The earliest window end among the partials of both maps (`i64::MAX` when
    /// empty).
    earliest: i64,
    /// The latest window end of an element so far.
    latest: i64,
    /// The window of the element before, [start, end): elements come nearly in
    /// order, so most fall into it and need no division to find theirs.
    current: (i64, i64),
}

/// The partials a [`LocalWindowAggregate`] holds at most (about 5 MB of small ones):
/// beyond, it sends them all on.
pub const MAX_PARTIALS: usize = 1 << 16;

impl<K: StateKey, T, A: AggregateFunction<T>> LocalWindowAggregate<K, T, A> {
    /// Folds into windows of `length` ms starting at `offset` (mod `length`).
    pub fn new(
        length: i64,
        offset: i64,
        key: KeySelector<T, K>,
        timestamp: TimestampAssigner<T>,
        aggregate: A,
    ) -> Self {
        Self {
            length,
            offset,
            key,
            timestamp,
            aggregate,
            latest_partials: HashMap::default(),
            partials: HashMap::default(),
            earliest: i64::MAX,
            latest: i64::MIN,
            current: (i64::MAX, i64::MIN),
        }
    }

    /// Sends on the partials of the windows ending at or before `through` + 1.
    fn send(&mut self, through: i64, out: &mut Output<Partial<K, A::Acc>>) {
        if self.earliest - 1 > through {
            return;
        }
        let (length, aggregate) = (self.length, &self.aggregate);
        let mut earliest = i64::MAX;
        let latest = self.latest;
        if !self.latest_partials.is_empty() {
            if latest - 1 <= through {
                // Kept allocated: the next window's keys fill it again.
                out.extend(self.latest_partials.drain().map(|(key, acc)| Partial {
                    key,
                    window: Window {
                        start: latest - length,
                        end: latest,
                    },
                    acc,
                }));
            } else {
                earliest = latest;
            }
        }
        // Kept allocated: the next windows' keys fill it again.
        self.partials.retain(|(key, end), acc| {
            if *end - 1 > through {
                earliest = earliest.min(*end);
                return true;
            }
            out.push(Partial {
                key: key.clone(),
                window: Window {
                    start: *end - length,
                    end: *end,
                },
                acc: std::mem::replace(acc, aggregate.create()),
            });
            false
        });
        self.earliest = earliest;
    }
}

impl<K, T, A> Operator for LocalWindowAggregate<K, T, A>
where
    K: StateKey,
    T: Send + 'static,
    A: AggregateFunction<T>,
{
    type In = T;
    type Out = Partial<K, A::Acc>;

    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<Self::Out>) -> Result<()> {
        let (length, offset) = (self.length, self.offset);
        // Read in place: the elements are only looked at, not kept.
        for element in input.iter() {
            let ts = (self.timestamp)(element).0;
            if ts < self.current.0 || ts >= self.current.1 {
                let start = ts - (ts - offset).rem_euclid(length);
                self.current = (start, start + length);
            }
            let end = self.current.1;
            if end > self.latest || self.partials.len() + self.latest_partials.len() >= MAX_PARTIALS
            {
                self.send(i64::MAX, out);
                self.latest = self.latest.max(end);
            }
            let key = (self.key)(element);
            let aggregate = &self.aggregate;
            let acc = match end == self.latest {
                true => self
                    .latest_partials
                    .entry(key)
                    .or_insert_with(|| aggregate.create()),
                false => self
                    .partials
                    .entry((key, end))
                    .or_insert_with(|| aggregate.create()),
            };
            self.aggregate.add(acc, element);
            self.earliest = self.earliest.min(end);
        }
        input.clear();
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: crate::Timestamp,
        out: &mut Output<Self::Out>,
    ) -> Result<()> {
        self.send(watermark.0, out);
        Ok(())
    }

    fn before_barrier(&mut self, out: &mut Output<Self::Out>) -> Result<()> {
        self.send(i64::MAX, out);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Self::Out>) -> Result<()> {
        self.send(i64::MAX, out);
        Ok(())
    }
}

/// The aggregation after the exchange of a two-phase window: merges the partial
/// accumulators of `A` (same accumulator, so the same window state).
pub struct MergePartials<A, T> {
    aggregate: A,
    _t: PhantomData<fn(T)>,
}

impl<A: Clone, T> Clone for MergePartials<A, T> {
    fn clone(&self) -> Self {
        Self {
            aggregate: self.aggregate.clone(),
            _t: PhantomData,
        }
    }
}

impl<A, T> MergePartials<A, T> {
    /// Merges the partials of `aggregate`.
    pub fn new(aggregate: A) -> Self {
        Self {
            aggregate,
            _t: PhantomData,
        }
    }
}

impl<K, T, A> AggregateFunction<Partial<K, A::Acc>> for MergePartials<A, T>
where
    K: 'static,
    T: 'static,
    A: AggregateFunction<T>,
{
    type Acc = A::Acc;
    type Out = A::Out;
    fn create(&self) -> A::Acc {
        self.aggregate.create()
    }
    #[inline]
    fn add(&self, acc: &mut A::Acc, partial: &Partial<K, A::Acc>) {
        self.aggregate.merge(acc, partial.acc.clone());
    }
    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.aggregate.merge(acc, other);
    }
    fn result(&self, acc: &A::Acc) -> A::Out {
        self.aggregate.result(acc)
    }
}

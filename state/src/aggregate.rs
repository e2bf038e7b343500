//! Incremental aggregation: [`AggregateFunction`] and the built-in count, sum, min,
//! max and average.

use crate::StateValue;
use serde::{Deserialize, Serialize};
use std::ops::Add;

/// An incremental aggregation: elements are folded into an accumulator as they
/// arrive, accumulators can be merged (session windows), and a result is read out.
pub trait AggregateFunction<In>: Clone + Send + Sync + 'static {
    /// The accumulator kept in state.
    type Acc: StateValue;
    /// The result.
    type Out: Send + 'static;
    /// A fresh accumulator.
    fn create(&self) -> Self::Acc;
    /// Folds one element into `acc`.
    fn add(&self, acc: &mut Self::Acc, value: &In);
    /// Merges `other` into `acc`: the result must be that of adding both's
    /// elements to one accumulator (session windows merge when they touch, and
    /// hopping windows merge the accumulators of their slices).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// Reads the result out of `acc`.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Counts elements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<In> AggregateFunction<In> for Count {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _: &In) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Sums a numeric field (wrapping for integers is not applied: overflow panics in
/// debug builds like any Rust addition).
#[derive(Clone, Copy, Debug)]
pub struct Sum<F>(pub F);

impl<In, N, F> AggregateFunction<In> for Sum<F>
where
    F: Fn(&In) -> N + Clone + Send + Sync + 'static,
    N: Add<Output = N> + Default + Copy + StateValue,
{
    type Acc = N;
    type Out = N;
    fn create(&self) -> N {
        N::default()
    }
    #[inline]
    fn add(&self, acc: &mut N, value: &In) {
        *acc = *acc + (self.0)(value);
    }
    fn merge(&self, acc: &mut N, other: N) {
        *acc = *acc + other;
    }
    fn result(&self, acc: &N) -> N {
        *acc
    }
}

/// The maximum of a field; `None` over no elements.
#[derive(Clone, Copy, Debug)]
pub struct Max<F>(pub F);

impl<In, N, F> AggregateFunction<In> for Max<F>
where
    F: Fn(&In) -> N + Clone + Send + Sync + 'static,
    N: PartialOrd + Copy + StateValue,
{
    type Acc = Option<N>;
    type Out = Option<N>;
    fn create(&self) -> Option<N> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<N>, value: &In) {
        let v = (self.0)(value);
        if acc.is_none_or(|current| v > current) {
            *acc = Some(v);
        }
    }
    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(v) = other {
            if acc.is_none_or(|current| v > current) {
                *acc = Some(v);
            }
        }
    }
    fn result(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

/// The minimum of a field; `None` over no elements.
#[derive(Clone, Copy, Debug)]
pub struct Min<F>(pub F);

impl<In, N, F> AggregateFunction<In> for Min<F>
where
    F: Fn(&In) -> N + Clone + Send + Sync + 'static,
    N: PartialOrd + Copy + StateValue,
{
    type Acc = Option<N>;
    type Out = Option<N>;
    fn create(&self) -> Option<N> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<N>, value: &In) {
        let v = (self.0)(value);
        if acc.is_none_or(|current| v < current) {
            *acc = Some(v);
        }
    }
    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(v) = other {
            if acc.is_none_or(|current| v < current) {
                *acc = Some(v);
            }
        }
    }
    fn result(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

/// The accumulator of [`Avg`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AvgAcc {
    /// Sum of the values.
    pub sum: f64,
    /// Number of values.
    pub count: u64,
}

/// The arithmetic mean of a field as `f64`; `None` over no elements.
#[derive(Clone, Copy, Debug)]
pub struct Avg<F>(pub F);

impl<In, F> AggregateFunction<In> for Avg<F>
where
    F: Fn(&In) -> f64 + Clone + Send + Sync + 'static,
{
    type Acc = AvgAcc;
    type Out = Option<f64>;
    fn create(&self) -> AvgAcc {
        AvgAcc::default()
    }
    #[inline]
    fn add(&self, acc: &mut AvgAcc, value: &In) {
        acc.sum += (self.0)(value);
        acc.count += 1;
    }
    fn merge(&self, acc: &mut AvgAcc, other: AvgAcc) {
        acc.sum += other.sum;
        acc.count += other.count;
    }
    fn result(&self, acc: &AvgAcc) -> Option<f64> {
        (acc.count > 0).then(|| acc.sum / acc.count as f64)
    }
}

/// Runs two aggregations side by side: `(A, B)` is itself an aggregate function.
impl<In, A, B> AggregateFunction<In> for (A, B)
where
    A: AggregateFunction<In>,
    B: AggregateFunction<In>,
{
    type Acc = (A::Acc, B::Acc);
    type Out = (A::Out, B::Out);
    fn create(&self) -> Self::Acc {
        (self.0.create(), self.1.create())
    }
    #[inline]
    fn add(&self, acc: &mut Self::Acc, value: &In) {
        self.0.add(&mut acc.0, value);
        self.1.add(&mut acc.1, value);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(&mut acc.0, other.0);
        self.1.merge(&mut acc.1, other.1);
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        (self.0.result(&acc.0), self.1.result(&acc.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<A: AggregateFunction<i64>>(agg: &A, values: &[i64]) -> A::Out {
        let mut acc = agg.create();
        for v in values {
            agg.add(&mut acc, v);
        }
        agg.result(&acc)
    }

    #[test]
    fn built_ins() {
        let values = [3, -1, 7, 7, 2];
        assert_eq!(run(&Count, &values), 5);
        assert_eq!(run(&Sum(|v: &i64| *v), &values), 18);
        assert_eq!(run(&Max(|v: &i64| *v), &values), Some(7));
        assert_eq!(run(&Min(|v: &i64| *v), &values), Some(-1));
        assert_eq!(run(&Avg(|v: &i64| *v as f64), &values), Some(3.6));
        assert_eq!(run(&Max(|v: &i64| *v), &[]), None);
        assert_eq!(run(&(Count, Max(|v: &i64| *v)), &values), (5, Some(7)));
    }

    #[test]
    fn merge_equals_single_pass() {
        let agg = (Count, Sum(|v: &i64| *v));
        let (mut a, mut b) = (agg.create(), agg.create());
        for v in [1, 2, 3] {
            agg.add(&mut a, &v);
        }
        for v in [4, 5] {
            agg.add(&mut b, &v);
        }
        agg.merge(&mut a, b);
        assert_eq!(agg.result(&a), run(&agg, &[1, 2, 3, 4, 5]));
    }
}

//! The stateless operators behind `map`, `filter`, `flat_map` and friends.

use crate::operator::{Operator, Output};
use crate::Result;
use std::marker::PhantomData;

/// Applies a function to every record.
pub struct Map<T, U, F> {
    f: F,
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U, F> Map<T, U, F> {
    /// A map operator.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _types: PhantomData,
        }
    }
}

impl<T: Send + 'static, U: Send + 'static, F: FnMut(T) -> U + Send + 'static> Operator
    for Map<T, U, F>
{
    type In = T;
    type Out = U;
    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<U>) -> Result<()> {
        out.buffer.extend(input.drain(..).map(&mut self.f));
        Ok(())
    }
}

/// Keeps the records for which a predicate holds.
pub struct Filter<T, F> {
    f: F,
    _types: PhantomData<fn(T)>,
}

impl<T, F> Filter<T, F> {
    /// A filter operator.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _types: PhantomData,
        }
    }
}

impl<T: Send + 'static, F: FnMut(&T) -> bool + Send + 'static> Operator for Filter<T, F> {
    type In = T;
    type Out = T;
    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<T>) -> Result<()> {
        input.retain(&mut self.f);
        if out.buffer.is_empty() {
            std::mem::swap(&mut out.buffer, input);
        } else {
            out.buffer.append(input);
        }
        Ok(())
    }
}

/// Maps every record to zero or more records.
pub struct FlatMap<T, U, F> {
    f: F,
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U, F> FlatMap<T, U, F> {
    /// A flat-map operator.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _types: PhantomData,
        }
    }
}

impl<T, U, I, F> Operator for FlatMap<T, U, F>
where
    T: Send + 'static,
    U: Send + 'static,
    I: IntoIterator<Item = U>,
    F: FnMut(T) -> I + Send + 'static,
{
    type In = T;
    type Out = U;
    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<U>) -> Result<()> {
        out.buffer.extend(input.drain(..).flat_map(&mut self.f));
        Ok(())
    }
}

/// Passes records through (unions, repartitioning).
pub struct Identity<T>(PhantomData<fn(T)>);

impl<T> Default for Identity<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: Send + 'static> Operator for Identity<T> {
    type In = T;
    type Out = T;
    #[inline]
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<T>) -> Result<()> {
        if out.buffer.is_empty() {
            std::mem::swap(&mut out.buffer, input);
        } else {
            out.buffer.append(input);
        }
        Ok(())
    }
}

//! The built-in window aggregates (`count`, `sum`, `min`, `max`, `avg`) over rows,
//! as pure accumulator functions the engine's window operator calls.

use crate::row::{FieldType, Value};
use crate::spec::AggregateKind;
use serde::{Deserialize, Serialize};

/// One aggregate of a window: the function, the input field it reads and that
/// field's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// The function.
    pub kind: AggregateKind,
    /// The input field index (none for `count`).
    pub field: Option<usize>,
    /// The input field's type (`Int` for `count`).
    pub input: FieldType,
}

/// The state of one aggregate in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    /// Rows so far.
    Count(i64),
    /// Integer sum (wrapping on overflow).
    SumInt(i64),
    /// Float sum.
    SumFloat(f64),
    /// Smallest value so far.
    Min(Option<Value>),
    /// Largest value so far.
    Max(Option<Value>),
    /// Sum and count for the mean.
    Avg {
        /// Sum.
        sum: f64,
        /// Count.
        count: i64,
    },
}

impl Aggregate {
    /// The output type.
    pub fn output_type(&self) -> FieldType {
        match self.kind {
            AggregateKind::Count => FieldType::Int,
            AggregateKind::Avg => FieldType::Float,
            _ => self.input,
        }
    }

    /// A fresh accumulator.
    pub fn create(&self) -> Accumulator {
        match self.kind {
            AggregateKind::Count => Accumulator::Count(0),
            AggregateKind::Sum if self.input == FieldType::Float => Accumulator::SumFloat(0.0),
            AggregateKind::Sum => Accumulator::SumInt(0),
            AggregateKind::Min => Accumulator::Min(None),
            AggregateKind::Max => Accumulator::Max(None),
            AggregateKind::Avg => Accumulator::Avg { sum: 0.0, count: 0 },
        }
    }

    /// Folds a row into `acc`: `values` are the row's fields (or the fields a
    /// keyed operator projected, with `field` planned as a position among them).
    #[inline]
    pub fn add(&self, acc: &mut Accumulator, values: &[Value]) {
        let value = self.field.and_then(|i| values.get(i));
        match acc {
            Accumulator::Count(n) => *n += 1,
            Accumulator::SumInt(s) => *s = s.wrapping_add(value.map_or(0, Value::as_i64)),
            Accumulator::SumFloat(s) => *s += value.map_or(0.0, Value::as_f64),
            Accumulator::Avg { sum, count } => {
                *sum += value.map_or(0.0, Value::as_f64);
                *count += 1;
            }
            Accumulator::Min(m) => keep(m, value, std::cmp::Ordering::Less),
            Accumulator::Max(m) => keep(m, value, std::cmp::Ordering::Greater),
        }
    }

    /// Merges `other` into `acc` (session windows).
    pub fn merge(&self, acc: &mut Accumulator, other: Accumulator) {
        match (acc, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a += b,
            (Accumulator::SumInt(a), Accumulator::SumInt(b)) => *a = a.wrapping_add(b),
            (Accumulator::SumFloat(a), Accumulator::SumFloat(b)) => *a += b,
            (Accumulator::Avg { sum, count }, Accumulator::Avg { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Accumulator::Min(a), Accumulator::Min(b)) => {
                keep(a, b.as_ref(), std::cmp::Ordering::Less)
            }
            (Accumulator::Max(a), Accumulator::Max(b)) => {
                keep(a, b.as_ref(), std::cmp::Ordering::Greater)
            }
            _ => {}
        }
    }

    /// The aggregate's value (min/max of no rows, which windows never have, is 0).
    pub fn result(&self, acc: &Accumulator) -> Value {
        match acc {
            Accumulator::Count(n) | Accumulator::SumInt(n) => Value::Int(*n),
            Accumulator::SumFloat(s) => Value::Float(*s),
            Accumulator::Avg { sum, count } => Value::Float(if *count == 0 {
                0.0
            } else {
                sum / *count as f64
            }),
            Accumulator::Min(m) | Accumulator::Max(m) => m.clone().unwrap_or(match self.input {
                FieldType::Float => Value::Float(0.0),
                FieldType::Timestamp => Value::Timestamp(0),
                _ => Value::Int(0),
            }),
        }
    }
}

fn keep(current: &mut Option<Value>, candidate: Option<&Value>, wanted: std::cmp::Ordering) {
    let Some(candidate) = candidate else { return };
    let replace = match current {
        None => true,
        Some(c) => candidate.as_f64().partial_cmp(&c.as_f64()) == Some(wanted),
    };
    if replace {
        *current = Some(candidate.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::row::Row;

    #[test]
    fn aggregates_fold_and_merge() {
        let rows: Vec<Row> = [3, 9, 1, 4]
            .iter()
            .map(|&i| Row(vec![Value::Int(i)]))
            .collect();
        let agg = |kind| Aggregate {
            kind,
            field: Some(0),
            input: FieldType::Int,
        };
        for (kind, expected) in [
            (AggregateKind::Count, Value::Int(4)),
            (AggregateKind::Sum, Value::Int(17)),
            (AggregateKind::Min, Value::Int(1)),
            (AggregateKind::Max, Value::Int(9)),
            (AggregateKind::Avg, Value::Float(4.25)),
        ] {
            let a = agg(kind);
            let (mut left, mut right) = (a.create(), a.create());
            rows[..2].iter().for_each(|r| a.add(&mut left, &r.0));
            rows[2..].iter().for_each(|r| a.add(&mut right, &r.0));
            a.merge(&mut left, right);
            assert_eq!(a.result(&left), expected, "{kind:?}");
        }
    }
}

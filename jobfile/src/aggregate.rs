//! The built-in window aggregates (`count`, `sum`, `min`, `max`, `avg`,
//! `count_distinct`) over rows,
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
    /// The distinct values so far, ordered by type and value (last, so that the
    /// encoding of the others is as before).
    Distinct(Vec<Value>),
}

/// A total order of values for [`Accumulator::Distinct`]: by type, then value (a
/// float by its bits, as [`Value`]'s equality has it).
fn distinct_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    fn rank(v: &Value) -> (u8, i64, &str) {
        match v {
            Value::Int(i) => (0, *i, ""),
            Value::Timestamp(t) => (1, *t, ""),
            Value::Float(x) => (2, x.to_bits() as i64, ""),
            Value::Bool(b) => (3, i64::from(*b), ""),
            Value::String(s) => (4, 0, s),
        }
    }
    rank(a).cmp(&rank(b))
}

/// Adds `value` to the ordered distinct values `set`, if new.
fn insert_distinct(set: &mut Vec<Value>, value: &Value) {
    if let Err(at) = set.binary_search_by(|v| distinct_order(v, value)) {
        set.insert(at, value.clone());
    }
}

impl Aggregate {
    /// The output type.
    pub fn output_type(&self) -> FieldType {
        match self.kind {
            AggregateKind::Count | AggregateKind::CountDistinct => FieldType::Int,
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
            AggregateKind::CountDistinct => Accumulator::Distinct(Vec::new()),
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
            Accumulator::Distinct(set) => {
                if let Some(value) = value {
                    insert_distinct(set, value);
                }
            }
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
            (Accumulator::Distinct(a), Accumulator::Distinct(b)) => {
                for value in &b {
                    insert_distinct(a, value);
                }
            }
            _ => {}
        }
    }

    /// The aggregate's value (min/max of no rows, which windows never have, is 0).
    pub fn result(&self, acc: &Accumulator) -> Value {
        match acc {
            Accumulator::Count(n) | Accumulator::SumInt(n) => Value::Int(*n),
            Accumulator::Distinct(set) => Value::Int(set.len() as i64),
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

/// The state of one aggregate over numbers in one window, in 16 bytes: what
/// [`Accumulator`] holds for `count`, `sum`, `min` and `max` of ints, floats and
/// timestamps (not `avg`, which needs a sum and a count), with the value's type in
/// the variant instead of a [`Value`]. Converts to and from the [`Accumulator`] it
/// stands for, so window state keeps its snapshot format.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumAccumulator {
    /// Rows so far.
    Count(i64),
    /// Integer sum (wrapping on overflow).
    SumInt(i64),
    /// Float sum.
    SumFloat(f64),
    /// `min` before any value.
    MinNone,
    /// `max` before any value.
    MaxNone,
    /// Smallest int so far.
    MinInt(i64),
    /// Largest int so far.
    MaxInt(i64),
    /// Smallest float so far.
    MinFloat(f64),
    /// Largest float so far.
    MaxFloat(f64),
    /// Earliest timestamp so far.
    MinTimestamp(i64),
    /// Latest timestamp so far.
    MaxTimestamp(i64),
}

impl NumAccumulator {
    /// The `min`/`max` holding `value` (`None` for values that are not numbers).
    fn extreme(value: &Value, min: bool) -> Option<Self> {
        Some(match (value, min) {
            (Value::Int(v), true) => Self::MinInt(*v),
            (Value::Int(v), false) => Self::MaxInt(*v),
            (Value::Float(v), true) => Self::MinFloat(*v),
            (Value::Float(v), false) => Self::MaxFloat(*v),
            (Value::Timestamp(v), true) => Self::MinTimestamp(*v),
            (Value::Timestamp(v), false) => Self::MaxTimestamp(*v),
            _ => return None,
        })
    }

    /// The value a `min`/`max` holds, if any.
    fn value(self) -> Option<Value> {
        match self {
            Self::MinInt(v) | Self::MaxInt(v) => Some(Value::Int(v)),
            Self::MinFloat(v) | Self::MaxFloat(v) => Some(Value::Float(v)),
            Self::MinTimestamp(v) | Self::MaxTimestamp(v) => Some(Value::Timestamp(v)),
            _ => None,
        }
    }

    /// The value a `min`/`max` holds as a float: what `min` and `max` compare.
    #[inline]
    fn as_f64(self) -> Option<f64> {
        match self {
            Self::MinInt(v) | Self::MaxInt(v) | Self::MinTimestamp(v) | Self::MaxTimestamp(v) => {
                Some(v as f64)
            }
            Self::MinFloat(v) | Self::MaxFloat(v) => Some(v),
            _ => None,
        }
    }

    fn is_extreme(self) -> bool {
        !matches!(self, Self::Count(_) | Self::SumInt(_) | Self::SumFloat(_))
    }

    fn is_min(self) -> bool {
        matches!(
            self,
            Self::MinNone | Self::MinInt(_) | Self::MinFloat(_) | Self::MinTimestamp(_)
        )
    }

    /// Keeps `candidate` if it beats the `min`/`max` so far (as [`Accumulator`]
    /// does: compared as floats, the first of equals kept).
    #[inline]
    fn keep(&mut self, candidate: &Value) {
        let min = self.is_min();
        let wanted = if min {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        };
        let replace = self
            .as_f64()
            .is_none_or(|current| beats(candidate, current, wanted));
        if replace {
            if let Some(kept) = Self::extreme(candidate, min) {
                *self = kept;
            }
        }
    }

    /// The [`Accumulator`] this stands for.
    pub fn to_accumulator(self) -> Accumulator {
        match self {
            Self::Count(n) => Accumulator::Count(n),
            Self::SumInt(s) => Accumulator::SumInt(s),
            Self::SumFloat(s) => Accumulator::SumFloat(s),
            extreme if extreme.is_min() => Accumulator::Min(extreme.value()),
            extreme => Accumulator::Max(extreme.value()),
        }
    }

    /// The compact form of `acc` (`None` for an `avg`, or a `min`/`max` of a string
    /// or bool).
    pub fn from_accumulator(acc: &Accumulator) -> Option<Self> {
        Some(match acc {
            Accumulator::Count(n) => Self::Count(*n),
            Accumulator::SumInt(s) => Self::SumInt(*s),
            Accumulator::SumFloat(s) => Self::SumFloat(*s),
            Accumulator::Min(None) => Self::MinNone,
            Accumulator::Max(None) => Self::MaxNone,
            Accumulator::Min(Some(v)) => Self::extreme(v, true)?,
            Accumulator::Max(Some(v)) => Self::extreme(v, false)?,
            Accumulator::Avg { .. } | Accumulator::Distinct(_) => return None,
        })
    }
}

impl Aggregate {
    /// Whether [`NumAccumulator`] holds this aggregate's state: `count`, or `sum`,
    /// `min` or `max` of an int, float or timestamp field.
    pub fn is_numeric(&self) -> bool {
        match self.kind {
            AggregateKind::Count => true,
            AggregateKind::Avg | AggregateKind::CountDistinct => false,
            _ => matches!(
                self.input,
                FieldType::Int | FieldType::Float | FieldType::Timestamp
            ),
        }
    }

    /// A fresh compact accumulator (for an aggregate that [`is_numeric`](Self::is_numeric)).
    pub fn create_numeric(&self) -> NumAccumulator {
        match self.kind {
            AggregateKind::Count => NumAccumulator::Count(0),
            AggregateKind::Sum if self.input == FieldType::Float => NumAccumulator::SumFloat(0.0),
            AggregateKind::Sum | AggregateKind::Avg => NumAccumulator::SumInt(0),
            AggregateKind::Min => NumAccumulator::MinNone,
            AggregateKind::Max => NumAccumulator::MaxNone,
            // Never numeric (`is_numeric`): counted as rows if asked all the same.
            AggregateKind::CountDistinct => NumAccumulator::Count(0),
        }
    }

    /// [`add`](Self::add) on a compact accumulator, of a row whose fields read are
    /// `bits` (as [`Numbers`](crate::Numbers) holds them: a float's bits).
    #[inline]
    pub fn add_numeric(&self, acc: &mut NumAccumulator, bits: &[i64]) {
        let value = self
            .field
            .and_then(|i| bits.get(i))
            .map(|&bits| match self.input {
                FieldType::Float => Value::Float(f64::from_bits(bits as u64)),
                FieldType::Timestamp => Value::Timestamp(bits),
                _ => Value::Int(bits),
            });
        let value = value.as_ref();
        match acc {
            NumAccumulator::Count(n) => *n += 1,
            NumAccumulator::SumInt(s) => *s = s.wrapping_add(value.map_or(0, Value::as_i64)),
            NumAccumulator::SumFloat(s) => *s += value.map_or(0.0, Value::as_f64),
            extreme => {
                if let Some(value) = value {
                    extreme.keep(value);
                }
            }
        }
    }

    /// [`merge`](Self::merge) of compact accumulators.
    pub fn merge_numeric(&self, acc: &mut NumAccumulator, other: NumAccumulator) {
        match (acc, other) {
            (NumAccumulator::Count(a), NumAccumulator::Count(b)) => *a += b,
            (NumAccumulator::SumInt(a), NumAccumulator::SumInt(b)) => *a = a.wrapping_add(b),
            (NumAccumulator::SumFloat(a), NumAccumulator::SumFloat(b)) => *a += b,
            (acc, other)
                if acc.is_extreme() && other.is_extreme() && acc.is_min() == other.is_min() =>
            {
                if let Some(value) = other.value() {
                    acc.keep(&value);
                }
            }
            _ => {}
        }
    }

    /// [`result`](Self::result) of a compact accumulator.
    pub fn result_numeric(&self, acc: NumAccumulator) -> Value {
        match acc {
            NumAccumulator::Count(n) | NumAccumulator::SumInt(n) => Value::Int(n),
            NumAccumulator::SumFloat(s) => Value::Float(s),
            extreme => extreme.value().unwrap_or(match self.input {
                FieldType::Float => Value::Float(0.0),
                FieldType::Timestamp => Value::Timestamp(0),
                _ => Value::Int(0),
            }),
        }
    }
}

/// Whether `candidate` replaces a `min` (`wanted` `Less`) or `max` (`Greater`) now at
/// `current`: compared as floats, so the first of equals (and a NaN) stays.
#[inline]
fn beats(candidate: &Value, current: f64, wanted: std::cmp::Ordering) -> bool {
    candidate.as_f64().partial_cmp(&current) == Some(wanted)
}

fn keep(current: &mut Option<Value>, candidate: Option<&Value>, wanted: std::cmp::Ordering) {
    let Some(candidate) = candidate else { return };
    let replace = current
        .as_ref()
        .is_none_or(|c| beats(candidate, c.as_f64(), wanted));
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
        let rows: Vec<Row> = [3, 9, 1, 4, 9, 3, 1]
            .iter()
            .map(|&i| Row(vec![Value::Int(i)]))
            .collect();
        let agg = |kind| Aggregate {
            kind,
            field: Some(0),
            input: FieldType::Int,
        };
        for (kind, expected) in [
            (AggregateKind::Count, Value::Int(7)),
            (AggregateKind::Sum, Value::Int(30)),
            (AggregateKind::Min, Value::Int(1)),
            (AggregateKind::Max, Value::Int(9)),
            (AggregateKind::Avg, Value::Float(30.0 / 7.0)),
            // 3, 9, 1 and 4, each once, also across the merge.
            (AggregateKind::CountDistinct, Value::Int(4)),
        ] {
            let a = agg(kind);
            let (mut left, mut right) = (a.create(), a.create());
            rows[..2].iter().for_each(|r| a.add(&mut left, &r.0));
            rows[2..].iter().for_each(|r| a.add(&mut right, &r.0));
            a.merge(&mut left, right);
            assert_eq!(a.result(&left), expected, "{kind:?}");
        }
    }

    /// Distinct values of every type count once each (a float by its bits), and the
    /// accumulators of the other aggregates keep their encoding (window state in
    /// earlier snapshots reads back).
    #[test]
    fn distinct_values_count_once_and_older_accumulators_keep_their_encoding() {
        let a = Aggregate {
            kind: AggregateKind::CountDistinct,
            field: Some(0),
            input: FieldType::String,
        };
        let mut acc = a.create();
        for value in [
            Value::String("x".into()),
            Value::Int(1),
            Value::Timestamp(1),
            Value::String("x".into()),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Bool(true),
            Value::Int(1),
        ] {
            a.add(&mut acc, &[value]);
        }
        assert_eq!(a.result(&acc), Value::Int(6));
        let encode = |acc: &Accumulator| {
            bincode::serde::encode_to_vec(acc, bincode::config::standard()).unwrap()
        };
        // Variant indexes 0 (count) and 5 (avg) as before the distinct count.
        assert_eq!(encode(&Accumulator::Count(3)), [0, 6]);
        assert_eq!(encode(&Accumulator::Avg { sum: 0.0, count: 1 })[0], 5);
        let back: Accumulator =
            bincode::serde::decode_from_slice(&encode(&acc), bincode::config::standard())
                .unwrap()
                .0;
        assert_eq!(back, acc);
    }
}

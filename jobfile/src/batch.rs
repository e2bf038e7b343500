//! Batches: the records of job-file pipelines. A [`Batch`] holds up to a source
//! poll's worth of rows of one [`Schema`], field by field: each field is one typed
//! [`Column`], so filters and projections run per column (`Expr::eval_batch`) and
//! a row is never built unless an operator needs one.
//!
//! ```text
//!  source ─▶ Batch { auction: Int[..], price: Int[..], channel: String[..], … }
//!    filter: the condition's Bool column ─▶ Batch::filter
//!    map:    one column per output expression (bare fields move)
//!    key_by: per row, what the keyed operator reads (KeyedRecord): Numbers { key,
//!            time, two numbers' bits } or Projected { key, time, the values read }
//!    sinks:  rows written straight from the columns
//! ```
//!
//! Fields no operator downstream reads are [`Column::Pruned`]: the source does not
//! fill them. Strings are [`Str`]s, so the generators' static texts are never copied.

use crate::row::{FieldType, Key, Row, RowKey, Schema, Str, Value};
use smallvec::SmallVec;

/// The values of one field for every row of a batch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Column {
    /// Integers.
    Int(Vec<i64>),
    /// Floats.
    Float(Vec<f64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Text.
    String(Vec<Str>),
    /// Milliseconds since the Unix epoch.
    Timestamp(Vec<i64>),
    /// A field no operator downstream reads: left out.
    Pruned,
}

impl Column {
    /// An empty column of type `ty` with room for `capacity` values.
    pub fn with_capacity(ty: FieldType, capacity: usize) -> Self {
        match ty {
            FieldType::Int => Self::Int(Vec::with_capacity(capacity)),
            FieldType::Float => Self::Float(Vec::with_capacity(capacity)),
            FieldType::Bool => Self::Bool(Vec::with_capacity(capacity)),
            FieldType::String => Self::String(Vec::with_capacity(capacity)),
            FieldType::Timestamp => Self::Timestamp(Vec::with_capacity(capacity)),
        }
    }

    /// The number of values (`None` for a pruned column).
    pub fn values(&self) -> Option<usize> {
        Some(match self {
            Self::Int(v) | Self::Timestamp(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Pruned => return None,
        })
    }

    /// The column's type (`None` if pruned).
    pub fn field_type(&self) -> Option<FieldType> {
        Some(match self {
            Self::Int(_) => FieldType::Int,
            Self::Float(_) => FieldType::Float,
            Self::Bool(_) => FieldType::Bool,
            Self::String(_) => FieldType::String,
            Self::Timestamp(_) => FieldType::Timestamp,
            Self::Pruned => return None,
        })
    }

    /// Appends `value`, if it has the column's type.
    ///
    /// # Errors
    /// The value, when its type is not the column's (or the column is pruned).
    pub fn push(&mut self, value: Value) -> Result<(), Value> {
        match (self, value) {
            (Self::Int(v), Value::Int(x)) | (Self::Timestamp(v), Value::Timestamp(x)) => v.push(x),
            (Self::Float(v), Value::Float(x)) => v.push(x),
            (Self::Bool(v), Value::Bool(x)) => v.push(x),
            (Self::String(v), Value::String(x)) => v.push(x),
            (_, value) => return Err(value),
        }
        Ok(())
    }

    /// The value of row `i`. Pruned columns and rows out of range read as `Int(0)`:
    /// the planner never reads a pruned field, and callers stay within the batch.
    #[inline]
    pub fn value(&self, i: usize) -> Value {
        let missing = Value::Int(0);
        match self {
            Self::Int(v) => v.get(i).map_or(missing, |&x| Value::Int(x)),
            Self::Timestamp(v) => v.get(i).map_or(missing, |&x| Value::Timestamp(x)),
            Self::Float(v) => v.get(i).map_or(missing, |&x| Value::Float(x)),
            Self::Bool(v) => v.get(i).map_or(missing, |&x| Value::Bool(x)),
            Self::String(v) => v.get(i).map_or(missing, |x| Value::String(x.clone())),
            Self::Pruned => missing,
        }
    }

    /// Row `i` as an integer (ints and timestamps; floats truncated; others 0), as
    /// [`Value::as_i64`].
    #[inline]
    pub fn i64_at(&self, i: usize) -> i64 {
        match self {
            Self::Int(v) | Self::Timestamp(v) => v.get(i).copied().unwrap_or(0),
            Self::Float(v) => v.get(i).map_or(0, |&x| x as i64),
            _ => 0,
        }
    }

    /// Row `i`'s 64 bits, as [`Value::to_bits`].
    #[inline]
    pub fn bits_at(&self, i: usize) -> i64 {
        match self {
            Self::Int(v) | Self::Timestamp(v) => v.get(i).copied().unwrap_or(0),
            Self::Float(v) => v.get(i).map_or(0, |&x| x.to_bits() as i64),
            Self::Bool(v) => v.get(i).map_or(0, |&b| i64::from(b)),
            _ => 0,
        }
    }

    /// The rows whose `keep` is true.
    pub fn filter(&self, keep: &[bool]) -> Self {
        fn kept<T: Clone>(values: &[T], keep: &[bool]) -> Vec<T> {
            values
                .iter()
                .zip(keep)
                .filter(|(_, &k)| k)
                .map(|(v, _)| v.clone())
                .collect()
        }
        match self {
            Self::Int(v) => Self::Int(kept(v, keep)),
            Self::Timestamp(v) => Self::Timestamp(kept(v, keep)),
            Self::Float(v) => Self::Float(kept(v, keep)),
            Self::Bool(v) => Self::Bool(kept(v, keep)),
            Self::String(v) => Self::String(kept(v, keep)),
            Self::Pruned => Self::Pruned,
        }
    }
}

/// Rows of one schema, column by column. Every column that is not pruned has
/// [`Batch::len`] values.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    columns: Vec<Column>,
    len: usize,
}

impl Batch {
    /// A batch of `len` rows from its columns (in schema order).
    ///
    /// # Errors
    /// A message naming the first column whose length is not `len`.
    pub fn new(columns: Vec<Column>, len: usize) -> Result<Self, String> {
        for (i, column) in columns.iter().enumerate() {
            if let Some(n) = column.values().filter(|&n| n != len) {
                return Err(format!("column {i} has {n} values, expected {len}"));
            }
        }
        Ok(Self { columns, len })
    }

    /// The rows `rows`, checked against `schema`.
    ///
    /// # Errors
    /// A message naming the first field whose value does not have the schema's type,
    /// or a row with another number of fields.
    pub fn from_rows(schema: &Schema, rows: impl IntoIterator<Item = Row>) -> Result<Self, String> {
        Self::from_values(schema, rows.into_iter().map(|row| row.0))
    }

    /// Rows given as their values (any collection, such as an inline one), checked
    /// against `schema` as [`Batch::from_rows`].
    ///
    /// # Errors
    /// As [`Batch::from_rows`].
    pub fn from_values<R: IntoIterator<Item = Value>>(
        schema: &Schema,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<Self, String> {
        let rows = rows.into_iter();
        let capacity = rows.size_hint().0;
        let mut columns: Vec<Column> = schema
            .fields
            .iter()
            .map(|f| Column::with_capacity(f.ty, capacity))
            .collect();
        let mut len = 0;
        let wrong_length = || {
            format!(
                "a row has another number of fields than the {} expected ({})",
                schema.fields.len(),
                schema.names()
            )
        };
        for values in rows {
            let mut values = values.into_iter();
            for (column, field) in columns.iter_mut().zip(&schema.fields) {
                let value = values.next().ok_or_else(wrong_length)?;
                column.push(value).map_err(|value| {
                    format!(
                        "field `{}`: expected a {} value, got {value:?}",
                        field.name, field.ty
                    )
                })?;
            }
            if values.next().is_some() {
                return Err(wrong_length());
            }
            len += 1;
        }
        Ok(Self { columns, len })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The columns, in schema order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Takes the columns, in schema order.
    pub fn into_columns(self) -> Vec<Column> {
        self.columns
    }

    /// Field `field` of every row (a pruned column if the batch has no such field).
    #[inline]
    pub fn column(&self, field: usize) -> &Column {
        self.columns.get(field).unwrap_or(&Column::Pruned)
    }

    /// Row `i` (pruned fields read as `Int(0)`).
    pub fn row(&self, i: usize) -> Row {
        Row(self.columns.iter().map(|c| c.value(i)).collect())
    }

    /// Every row, in order.
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        (0..self.len).map(|i| self.row(i))
    }

    /// The key of row `i` on fields `fields`: equal to [`Key::of`] of the row.
    #[inline]
    pub fn key(&self, fields: &[usize], i: usize) -> Key {
        match fields {
            [field] => Key::One(self.column(*field).value(i)),
            fields => Key::Many(fields.iter().map(|&f| self.column(f).value(i)).collect()),
        }
    }

    /// The rows whose `keep` is true.
    pub fn filter(&self, keep: &[bool]) -> Self {
        let len = keep.iter().take(self.len).filter(|&&k| k).count();
        if len == self.len {
            return self.clone();
        }
        Self {
            columns: self.columns.iter().map(|c| c.filter(keep)).collect(),
            len,
        }
    }

    /// The largest value of an int or timestamp field (event time), if any row.
    pub fn max_i64(&self, field: usize) -> Option<i64> {
        match self.column(field) {
            Column::Int(v) | Column::Timestamp(v) => v.iter().copied().max(),
            column => (0..self.len).map(|i| column.i64_at(i)).max(),
        }
    }
}

/// Writes rows of a batch as JSON objects straight from the columns: the text
/// [`Schema::to_json`] gives (keys in sorted order, no spaces, timestamps as
/// milliseconds, non-finite floats as `null`), without building a JSON tree.
#[derive(Clone, Debug)]
pub struct JsonWriter {
    /// Each field's position and its key, quoted and followed by `:`, in key order.
    fields: Vec<(usize, String)>,
}

impl JsonWriter {
    /// A writer for rows of `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self::of_fields(schema, |_| true)
    }

    /// A writer of the fields of `schema` whose position `wanted` accepts.
    pub fn of_fields(schema: &Schema, wanted: impl Fn(usize) -> bool) -> Self {
        let mut fields: Vec<(usize, &str)> = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted(*i))
            .map(|(i, f)| (i, f.name.as_str()))
            .collect();
        fields.sort_by(|a, b| a.1.cmp(b.1));
        let fields = fields
            .into_iter()
            .map(|(i, name)| (i, format!("{}:", serde_json::Value::from(name))))
            .collect();
        Self { fields }
    }

    /// Appends row `i` of `batch` to `out` as a JSON object.
    pub fn write(&self, batch: &Batch, i: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (field, key)) in self.fields.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key.as_bytes());
            let written = match batch.column(*field).value(i) {
                Value::Int(v) | Value::Timestamp(v) => serde_json::to_writer(&mut *out, &v),
                Value::Float(v) if v.is_finite() => serde_json::to_writer(&mut *out, &v),
                Value::Float(_) => serde_json::to_writer(&mut *out, &()),
                Value::Bool(v) => serde_json::to_writer(&mut *out, &v),
                Value::String(v) => serde_json::to_writer(&mut *out, &*v),
            };
            // Writing numbers, bools and strings into a Vec cannot fail.
            debug_assert!(written.is_ok());
        }
        out.push(b'}');
    }
}

/// The values a keyed operator reads from one row: its key, its event time and the
/// fields the operator reads, up to `N` of them held inline (an aggregating window
/// reads one or two fields; `top` keeps whole rows).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Projected<K = Key, const N: usize = 2> {
    /// The key.
    pub key: K,
    /// The event time, in ms (0 without event time).
    pub time: i64,
    /// The fields read, in the order the operator was planned with.
    pub values: SmallVec<[Value; N]>,
}

/// What a keyed operator reads of each row of a batch: [`Projected`] rows, or
/// [`Numbers`].
pub trait KeyedRecord<K>: Clone + Send + 'static {
    /// The key.
    fn key(&self) -> &K;

    /// The event time, in ms (0 without event time).
    fn time(&self) -> i64;

    /// Row `i` of `batch`: its key on `keys`, its event time from `time` and the
    /// fields `fields`.
    fn project(
        batch: &Batch,
        i: usize,
        keys: &[usize],
        time: Option<usize>,
        fields: &[usize],
    ) -> Self;

    /// Every row of `batch`, in order, as [`project`](Self::project) makes each.
    #[inline]
    fn project_rows(
        batch: &Batch,
        keys: &[usize],
        time: Option<usize>,
        fields: &[usize],
        mut emit: impl FnMut(Self),
    ) {
        for i in 0..batch.len() {
            emit(Self::project(batch, i, keys, time, fields));
        }
    }
}

impl<K: RowKey, const N: usize> KeyedRecord<K> for Projected<K, N> {
    fn key(&self) -> &K {
        &self.key
    }

    fn time(&self) -> i64 {
        self.time
    }

    #[inline]
    fn project(
        batch: &Batch,
        i: usize,
        keys: &[usize],
        time: Option<usize>,
        fields: &[usize],
    ) -> Self {
        Projected {
            key: K::of_batch(batch, keys, i),
            time: time.map_or(0, |t| batch.column(t).i64_at(i)),
            values: fields.iter().map(|&f| batch.column(f).value(i)).collect(),
        }
    }
}

/// What a window whose aggregates are counts, sums, mins and maxes of numbers reads
/// from one row: its key, its event time and up to [`NUMBERS`] int, float or
/// timestamp fields as their 64 bits ([`Column::bits_at`]). With an
/// [`IntKey`](crate::IntKey), 32 bytes against a [`Projected`]'s 72: these are the
/// records that cross threads before a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Numbers<K> {
    /// The key.
    pub key: K,
    /// The event time, in ms (0 without event time).
    pub time: i64,
    /// The fields read, in the order the operator was planned with.
    pub bits: [i64; NUMBERS],
}

/// The most fields a [`Numbers`] holds.
pub const NUMBERS: usize = 2;

impl<K: RowKey> KeyedRecord<K> for Numbers<K> {
    fn key(&self) -> &K {
        &self.key
    }

    fn time(&self) -> i64 {
        self.time
    }

    #[inline]
    fn project(
        batch: &Batch,
        i: usize,
        keys: &[usize],
        time: Option<usize>,
        fields: &[usize],
    ) -> Self {
        let mut bits = [0; NUMBERS];
        for (slot, &f) in bits.iter_mut().zip(fields) {
            *slot = batch.column(f).bits_at(i);
        }
        Numbers {
            key: K::of_batch(batch, keys, i),
            time: time.map_or(0, |t| batch.column(t).i64_at(i)),
            bits,
        }
    }

    #[inline]
    fn project_rows(
        batch: &Batch,
        keys: &[usize],
        time: Option<usize>,
        fields: &[usize],
        mut emit: impl FnMut(Self),
    ) {
        let key = K::reader(batch, keys);
        let time = time.map(|t| batch.column(t));
        let columns: SmallVec<[&Column; NUMBERS]> = fields
            .iter()
            .take(NUMBERS)
            .map(|&f| batch.column(f))
            .collect();
        for i in 0..batch.len() {
            let time = match time {
                Some(Column::Int(v) | Column::Timestamp(v)) => v.get(i).copied().unwrap_or(0),
                Some(column) => column.i64_at(i),
                None => 0,
            };
            let mut bits = [0; NUMBERS];
            for (slot, column) in bits.iter_mut().zip(&columns) {
                *slot = column.bits_at(i);
            }
            emit(Numbers {
                key: key(i),
                time,
                bits,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new([
            ("a", FieldType::Int),
            ("b", FieldType::Float),
            ("c", FieldType::String),
            ("t", FieldType::Timestamp),
            ("d", FieldType::Bool),
        ])
    }

    fn rows() -> Vec<Row> {
        (0..5)
            .map(|i| {
                Row(vec![
                    Value::Int(i),
                    Value::Float(i as f64 / 2.0),
                    Value::String(format!("s{i}").into()),
                    Value::Timestamp(1_000 + i),
                    Value::Bool(i % 2 == 0),
                ])
            })
            .collect()
    }

    #[test]
    fn rows_round_trip_through_batches_and_filter_keeps_order() {
        let batch = Batch::from_rows(&schema(), rows()).unwrap();
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.rows().collect::<Vec<_>>(), rows());
        let even = batch.filter(&[true, false, true, false, true]);
        let expected: Vec<Row> = rows().into_iter().step_by(2).collect();
        assert_eq!(even.rows().collect::<Vec<_>>(), expected);
        assert_eq!(batch.max_i64(3), Some(1_004));
        assert_eq!(batch.key(&[2, 0], 3), Key::of(&rows()[3], &[2, 0]));
    }

    #[test]
    fn rows_are_written_as_the_json_text_of_their_objects() {
        let mut schema = schema();
        schema.fields[0].name = "z \"quoted\"".into();
        let mut rows = rows();
        rows[1].0[1] = Value::Float(f64::NAN);
        rows[2].0[2] = Value::String("tab\tand \u{e9}".into());
        let batch = Batch::from_rows(&schema, rows.clone()).unwrap();
        let writer = JsonWriter::new(&schema);
        for (i, row) in rows.iter().enumerate() {
            let mut text = Vec::new();
            writer.write(&batch, i, &mut text);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                schema.to_json(row).to_string()
            );
        }
    }

    #[test]
    fn rows_of_the_wrong_type_name_the_field() {
        let mut bad = rows();
        bad[2].0[1] = Value::Int(3);
        let error = Batch::from_rows(&schema(), bad).unwrap_err();
        assert!(error.contains("field `b`: expected a float"), "{error}");
        let error = Batch::from_rows(&schema(), vec![Row(vec![Value::Int(1)])]).unwrap_err();
        assert!(error.contains("than the 5 expected"), "{error}");
    }
}

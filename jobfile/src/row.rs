//! Rows: the records of job-file pipelines, with named, typed fields.
//!
//! A [`Row`] holds only its values, in the order of its stream's [`Schema`]; the
//! schema is known when the job is validated, so it is not carried per record.

use crate::batch::{Batch, Column};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Float,
    /// `true` or `false`.
    Bool,
    /// UTF-8 text.
    String,
    /// Milliseconds since the Unix epoch.
    Timestamp,
}

impl FieldType {
    /// The type named `name` in a job file (`int`, `float`, `bool`, `string`,
    /// `timestamp`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "int" => Self::Int,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "string" => Self::String,
            "timestamp" => Self::Timestamp,
            _ => return None,
        })
    }

    /// Int or float.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Timestamp => "timestamp",
        })
    }
}

/// Text in a [`Value`]: a `'static` string (what the generators produce, never
/// copied) or a shared one. Cloning never copies the text, and a row built from a
/// generator's record allocates nothing for its strings. Compared, hashed, ordered
/// and serialized as its text (a snapshot holds the same bytes as for a plain
/// string; it reads back as a shared string).
#[derive(Clone)]
pub enum Str {
    /// Text that lives as long as the program.
    Static(&'static str),
    /// Text shared by reference count.
    Shared(Arc<str>),
}

impl Str {
    /// Text that lives as long as the program, without a copy.
    #[inline]
    pub const fn from_static(text: &'static str) -> Self {
        Self::Static(text)
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Self::Static(text) => text,
            Self::Shared(text) => text,
        }
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::borrow::Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self
    }
}

impl From<&str> for Str {
    fn from(text: &str) -> Self {
        Self::Shared(text.into())
    }
}

impl From<String> for Str {
    fn from(text: String) -> Self {
        Self::Shared(text.into())
    }
}

impl From<Arc<str>> for Str {
    fn from(text: Arc<str>) -> Self {
        Self::Shared(text)
    }
}

impl From<std::borrow::Cow<'static, str>> for Str {
    /// A borrowed `'static` text stays borrowed; an owned one is shared.
    #[inline]
    fn from(text: std::borrow::Cow<'static, str>) -> Self {
        match text {
            std::borrow::Cow::Borrowed(text) => Self::Static(text),
            std::borrow::Cow::Owned(text) => Self::Shared(text.into()),
        }
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Str {}

impl PartialOrd for Str {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Str {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl Hash for Str {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl Serialize for Str {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Arc::<str>::deserialize(deserializer).map(Self::Shared)
    }
}

/// One field value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A float; equal and hashed by its bits, so rows can be keys.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    String(Str),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl Value {
    /// The value's type.
    pub fn field_type(&self) -> FieldType {
        match self {
            Self::Int(_) => FieldType::Int,
            Self::Float(_) => FieldType::Float,
            Self::Bool(_) => FieldType::Bool,
            Self::String(_) => FieldType::String,
            Self::Timestamp(_) => FieldType::Timestamp,
        }
    }

    /// The order of an `ORDER BY`: values of a type by value (ints and timestamps
    /// as integers, floats by [`f64::total_cmp`], so NaN is above infinity, text by
    /// its bytes, false before true), an int with a float as floats, and values of
    /// unrelated types by type.
    #[inline]
    pub fn sort_cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Self::Int(a) | Self::Timestamp(a), Self::Int(b) | Self::Timestamp(b)) => a.cmp(b),
            (Self::Float(_) | Self::Int(_), Self::Float(_) | Self::Int(_)) => {
                self.as_f64().total_cmp(&other.as_f64())
            }
            (Self::String(a), Self::String(b)) => a.cmp(b),
            (Self::Bool(a), Self::Bool(b)) => a.cmp(b),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }

    fn type_rank(&self) -> u8 {
        match self {
            Self::Int(_) | Self::Float(_) => 0,
            Self::Timestamp(_) => 1,
            Self::Bool(_) => 2,
            Self::String(_) => 3,
        }
    }

    /// Ints, timestamps and floats as a float; anything else as 0.
    #[inline]
    pub fn as_f64(&self) -> f64 {
        match *self {
            Self::Int(i) | Self::Timestamp(i) => i as f64,
            Self::Float(x) => x,
            _ => 0.0,
        }
    }

    /// The value's 64 bits: an int's or timestamp's value, a float's bits, a bool as
    /// 0 or 1 (text as 0). [`from_bits`](Self::from_bits) reads them back.
    #[inline]
    pub fn to_bits(&self) -> i64 {
        match *self {
            Self::Int(i) | Self::Timestamp(i) => i,
            Self::Float(x) => x.to_bits() as i64,
            Self::Bool(b) => i64::from(b),
            Self::String(_) => 0,
        }
    }

    /// The value of type `ty` whose [`to_bits`](Self::to_bits) are `bits` (text as
    /// the empty string).
    #[inline]
    pub fn from_bits(bits: i64, ty: FieldType) -> Self {
        match ty {
            FieldType::Int => Self::Int(bits),
            FieldType::Timestamp => Self::Timestamp(bits),
            FieldType::Float => Self::Float(f64::from_bits(bits as u64)),
            FieldType::Bool => Self::Bool(bits != 0),
            FieldType::String => Self::String(Str::from_static("")),
        }
    }

    /// Ints and timestamps as an integer, floats truncated; anything else as 0.
    #[inline]
    pub fn as_i64(&self) -> i64 {
        match *self {
            Self::Int(i) | Self::Timestamp(i) => i,
            Self::Float(x) => x as i64,
            _ => 0,
        }
    }

    /// The value as JSON (timestamps as milliseconds; non-finite floats as null).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Int(i) | Self::Timestamp(i) => (*i).into(),
            Self::Float(x) => serde_json::Number::from_f64(*x)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Self::Bool(b) => (*b).into(),
            Self::String(s) => s.as_ref().into(),
        }
    }

    /// The value of type `ty` written as text (a CSV field; timestamps as integer
    /// milliseconds), if it is one.
    pub fn from_text(ty: FieldType, text: &str) -> Option<Self> {
        let trimmed = text.trim();
        Some(match ty {
            FieldType::Int => Self::Int(trimmed.parse().ok()?),
            FieldType::Float => Self::Float(trimmed.parse().ok()?),
            FieldType::Bool => Self::Bool(trimmed.parse().ok()?),
            FieldType::String => Self::String(text.into()),
            FieldType::Timestamp => Self::Timestamp(trimmed.parse().ok()?),
        })
    }

    /// Reads a value of type `ty` from JSON (timestamps as integer milliseconds;
    /// integers are accepted for floats).
    pub fn from_json(ty: FieldType, json: &serde_json::Value) -> Option<Self> {
        Some(match ty {
            FieldType::Int => Self::Int(json.as_i64()?),
            FieldType::Float => Self::Float(json.as_f64()?),
            FieldType::Bool => Self::Bool(json.as_bool()?),
            FieldType::String => Self::String(json.as_str()?.into()),
            FieldType::Timestamp => Self::Timestamp(json.as_i64()?),
        })
    }
}

impl PartialEq for Value {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) | (Self::Timestamp(a), Self::Timestamp(b)) => a == b,
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Self::Int(i) | Self::Timestamp(i) => i.hash(state),
            Self::Float(x) => x.to_bits().hash(state),
            Self::Bool(b) => b.hash(state),
            Self::String(s) => s.hash(state),
        }
    }
}

/// A record: field values in schema order. Rows are also the keys of keyed streams
/// (the values of the key fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Row(pub Vec<Value>);

impl IntoIterator for Row {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The key of a keyed job-file stream: the values of its key fields. A key of one
/// field (the common case) holds its value inline, so keying a row allocates
/// nothing. Hashed, compared and serialized exactly as a [`Row`] of the same values,
/// so key groups and the keyed state of savepoints are the same as with row keys.
#[derive(Clone, Debug)]
pub enum Key {
    /// One key field.
    One(Value),
    /// None, or two key fields or more.
    Many(Vec<Value>),
}

impl Key {
    /// The key of `row` on fields `fields` (positions in its schema).
    pub fn of(row: &Row, fields: &[usize]) -> Self {
        match fields {
            [field] => Self::One(row.0[*field].clone()),
            fields => Self::Many(fields.iter().map(|&f| row.0[f].clone()).collect()),
        }
    }

    /// The key's values, in key-field order.
    pub fn values(&self) -> &[Value] {
        match self {
            Self::One(value) => std::slice::from_ref(value),
            Self::Many(values) => values,
        }
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::One(a), Self::One(b)) => a == b,
            _ => self.values() == other.values(),
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `Row`'s derived hash: the values as a slice (length, then each),
        // written out so that it inlines (the slice's `hash_slice` may not).
        let values = self.values();
        state.write_usize(values.len());
        for value in values {
            value.hash(state);
        }
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // As `Row`: a newtype around a sequence of values.
        serializer.serialize_newtype_struct("Row", self.values())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Row(mut values) = Row::deserialize(deserializer)?;
        Ok(if values.len() == 1 {
            Self::One(values.remove(0))
        } else {
            Self::Many(values)
        })
    }
}

/// What keyed job-file operators key by: a key taken from a batch's row, written
/// back into the rows they produce. [`Key`] takes any key fields; [`IntKey`] one
/// `int` field, held as the integer.
pub trait RowKey:
    Hash + Eq + Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The key of row `i` of `batch` on fields `fields` (positions in its schema).
    fn of_batch(batch: &Batch, fields: &[usize], i: usize) -> Self;

    /// [`of_batch`](Self::of_batch) for any row of `batch`, with the columns looked
    /// up once.
    #[inline]
    fn reader<'a>(batch: &'a Batch, fields: &'a [usize]) -> impl Fn(usize) -> Self + 'a {
        move |i| Self::of_batch(batch, fields, i)
    }

    /// Appends the key's values, in key-field order, to `out`.
    fn extend_into(&self, out: &mut impl Extend<Value>);
}

impl RowKey for Key {
    #[inline]
    fn of_batch(batch: &Batch, fields: &[usize], i: usize) -> Self {
        batch.key(fields, i)
    }

    fn extend_into(&self, out: &mut impl Extend<Value>) {
        out.extend(self.values().iter().cloned());
    }
}

/// The key of one `int` field, held as the integer: eight bytes in window tables and
/// compared as one. Hashed, compared and serialized exactly as
/// `Key::One(Value::Int(_))`, so key groups and savepoints are the same whichever of
/// the two a job keys by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntKey(pub i64);

impl Hash for IntKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As a slice of one value: its length, then the value.
        state.write_usize(1);
        Value::Int(self.0).hash(state);
    }
}

impl Serialize for IntKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct("Row", std::slice::from_ref(&Value::Int(self.0)))
    }
}

impl<'de> Deserialize<'de> for IntKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Row::deserialize(deserializer)?.0.as_slice() {
            [Value::Int(value)] => Ok(Self(*value)),
            other => Err(serde::de::Error::custom(format!(
                "expected a key of one int field, found the values {other:?}"
            ))),
        }
    }
}

impl RowKey for IntKey {
    #[inline]
    fn of_batch(batch: &Batch, fields: &[usize], i: usize) -> Self {
        Self(fields.first().map_or(0, |&f| batch.column(f).i64_at(i)))
    }

    #[inline]
    fn reader<'a>(batch: &'a Batch, fields: &'a [usize]) -> impl Fn(usize) -> Self + 'a {
        let column = fields.first().map(|&f| batch.column(f));
        let ints = match column {
            Some(Column::Int(v)) => Some(v.as_slice()),
            _ => None,
        };
        move |i| match ints {
            Some(ints) => Self(ints.get(i).copied().unwrap_or(0)),
            None => Self(column.map_or(0, |c| c.i64_at(i))),
        }
    }

    fn extend_into(&self, out: &mut impl Extend<Value>) {
        out.extend([Value::Int(self.0)]);
    }
}

/// A named, typed field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name.
    pub name: String,
    /// The type.
    pub ty: FieldType,
}

/// The fields of a stream's rows, and which one is the event time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// The fields, in row order.
    pub fields: Vec<Field>,
    /// The index of the event-time field (an int or timestamp), if the stream has
    /// event time.
    pub event_time: Option<usize>,
}

impl Schema {
    /// A schema of `(name, type)` fields without event time.
    pub fn new<'a>(fields: impl IntoIterator<Item = (&'a str, FieldType)>) -> Self {
        Self {
            fields: fields
                .into_iter()
                .map(|(name, ty)| Field {
                    name: name.to_string(),
                    ty,
                })
                .collect(),
            event_time: None,
        }
    }

    /// The index of field `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The field names, comma-separated, for messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        names.join(", ")
    }

    /// `row` as a JSON object keyed by field name.
    pub fn to_json(&self, row: &Row) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields
                .iter()
                .zip(&row.0)
                .map(|(field, value)| (field.name.clone(), value.to_json()))
                .collect(),
        )
    }

    /// A row from a JSON object with (at least) this schema's fields.
    ///
    /// # Errors
    /// A message naming the first field that is missing or has the wrong type.
    pub fn row_from_json(&self, json: &serde_json::Value) -> Result<Row, String> {
        let object = json.as_object().ok_or("expected a JSON object")?;
        self.fields
            .iter()
            .map(|field| match object.get(&field.name) {
                None => Err(missing(field)),
                Some(json) => Value::from_json(field.ty, json).ok_or_else(|| {
                    format!(
                        "field `{}`: expected a {} value, got {json}",
                        field.name, field.ty
                    )
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Row)
    }
}

impl Schema {
    /// A row from the JSON text of an object with (at least) this schema's fields,
    /// read straight into the row (no JSON tree per record). Other fields are skipped.
    ///
    /// # Errors
    /// `expected a JSON object: …` for text that is not one, else a message naming
    /// the first field (in schema order) that is missing or has the wrong type, as
    /// [`Schema::row_from_json`].
    pub fn row_from_json_bytes(&self, bytes: &[u8]) -> Result<Row, String> {
        use serde::de::DeserializeSeed;
        let mut json = serde_json::Deserializer::from_slice(bytes);
        let values = RowSeed(self)
            .deserialize(&mut json)
            .and_then(|values| json.end().map(|()| values))
            .map_err(|e| format!("expected a JSON object: {e}"))?;
        self.fields
            .iter()
            .zip(values)
            .map(|(field, value)| match value {
                None => Err(missing(field)),
                Some(Ok(value)) => Ok(value),
                Some(Err(found)) => Err(format!(
                    "field `{}`: expected a {} value, got {found}",
                    field.name, field.ty
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Row)
    }
}

/// A field of a JSON object that the object lacks.
fn missing(field: &Field) -> String {
    format!(
        "field `{}`: expected a {} value, but the object has no such field",
        field.name, field.ty
    )
}

/// A field's value read from JSON, or what was found instead (as JSON text).
type Read = Result<Value, String>;

/// Reads a JSON object into the values of a schema's fields (`None`: missing).
struct RowSeed<'a>(&'a Schema);

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Vec<Option<Read>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = Vec<Option<Read>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = vec![None; self.0.fields.len()];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.index_of(&key) {
                Some(i) => values[i] = Some(map.next_value_seed(ValueSeed(self.0.fields[i].ty))?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

/// Reads one JSON value as a value of a field type, as [`Value::from_json`], or
/// says what it found instead.
struct ValueSeed(FieldType);

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed {
    type Value = Read;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueSeed {
    type Value = Read;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} value", self.0)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(match self.0 {
            FieldType::Int => Ok(Value::Int(v)),
            FieldType::Timestamp => Ok(Value::Timestamp(v)),
            FieldType::Float => Ok(Value::Float(v as f64)),
            _ => Err(v.to_string()),
        })
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) if self.0 == FieldType::Float => Ok(Ok(Value::Float(v as f64))),
            Err(_) => Ok(Err(v.to_string())),
        }
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(match self.0 {
            FieldType::Float => Ok(Value::Float(v)),
            _ => Err(serde_json::Value::from(v).to_string()),
        })
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(match self.0 {
            FieldType::Bool => Ok(Value::Bool(v)),
            _ => Err(v.to_string()),
        })
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match self.0 {
            FieldType::String => Ok(Value::String(v.into())),
            _ => Err(serde_json::Value::from(v).to_string()),
        })
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err("null".into()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Err("an array".into()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Err("an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An int key has the stable hash (so the key group) and the snapshot bytes
        /// of the general key of the same value, and reads back from them.
        #[test]
        fn int_keys_hash_and_serialize_as_general_keys(value in any::<i64>()) {
            let (int, general) = (IntKey(value), Key::One(Value::Int(value)));
            prop_assert_eq!(weir_state::stable_hash(&int), weir_state::stable_hash(&general));
            // Both hash as the row of their values (its derived hash: the slice).
            let row = Row(vec![Value::Int(value)]);
            prop_assert_eq!(weir_state::stable_hash(&general), weir_state::stable_hash(&row));
            let many = vec![Value::Int(value), Value::String(Str::from_static("k"))];
            prop_assert_eq!(
                weir_state::stable_hash(&Key::Many(many.clone())),
                weir_state::stable_hash(&Row(many))
            );
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(&general, config).unwrap();
            prop_assert_eq!(&bincode::serde::encode_to_vec(int, config).unwrap(), &bytes);
            let (back, _): (IntKey, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
            prop_assert_eq!(back, int);
            let other = Key::One(Value::Timestamp(value));
            let bytes = bincode::serde::encode_to_vec(&other, config).unwrap();
            let error = bincode::serde::decode_from_slice::<IntKey, _>(&bytes, config).unwrap_err();
            prop_assert!(error.to_string().contains("expected a key of one int field"), "{}", error);
        }
    }

    /// A float read from JSON (file and Kafka sources, committed output) is the
    /// float that was written, to the last bit: serde_json's default parser can be
    /// one unit in the last place off (27655494.444000002 came back as
    /// 27655494.444).
    #[test]
    fn floats_read_from_json_are_exact() {
        let written = 30_457_593.0 * 0.908;
        let text = serde_json::to_string(&Value::Float(written).to_json()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            Value::from_json(FieldType::Float, &json),
            Some(Value::Float(written)),
            "{text}"
        );
    }

    #[test]
    fn rows_round_trip_through_json() {
        let schema = Schema::new([
            ("a", FieldType::Int),
            ("b", FieldType::Float),
            ("c", FieldType::String),
            ("t", FieldType::Timestamp),
            ("d", FieldType::Bool),
        ]);
        let row = Row(vec![
            Value::Int(-3),
            Value::Float(1.5),
            Value::String("x".into()),
            Value::Timestamp(1_700_000_000_000),
            Value::Bool(true),
        ]);
        let json = schema.to_json(&row);
        assert_eq!(json["c"], "x");
        assert_eq!(schema.row_from_json(&json).unwrap(), row);
        assert!(schema
            .row_from_json(&serde_json::json!({"a": "no"}))
            .unwrap_err()
            .contains("`a`"));
        // Read straight from the text: the same row, and the same messages.
        let text = serde_json::to_vec(&json).unwrap();
        assert_eq!(schema.row_from_json_bytes(&text).unwrap(), row);
        for bad in [
            r#"{"a": "no"}"#,
            r#"{"a": 1, "b": [1, {"x": 2}], "c": null}"#,
            "[1]",
            "{",
            "",
        ] {
            let json: Result<serde_json::Value, _> = serde_json::from_str(bad);
            let by_tree = match json {
                Ok(json) => schema.row_from_json(&json).unwrap_err(),
                Err(_) => "expected a JSON object".into(),
            };
            let direct = schema.row_from_json_bytes(bad.as_bytes()).unwrap_err();
            // The same field and expectation (what was found is spelled as JSON text
            // by the tree, by kind for arrays and objects read straight).
            let expectation = |m: &str| m.split(", got").next().unwrap_or(m).to_string();
            assert!(
                expectation(&direct) == expectation(&by_tree)
                    || by_tree.starts_with("expected a JSON object")
                        && direct.starts_with("expected a JSON object"),
                "{bad}: {direct} / {by_tree}"
            );
        }
        let extra = br#"{"t": 5, "zzz": {"deep": [1, 2]}, "a": 18446744073709551615, "b": 2, "c": "", "d": false}"#;
        assert_eq!(
            schema.row_from_json_bytes(extra).unwrap_err(),
            "field `a`: expected a int value, got 18446744073709551615"
        );
        assert_eq!(
            schema.row_from_json_bytes(br#"{"a": "no"}"#).unwrap_err(),
            "field `a`: expected a int value, got \"no\""
        );
        assert!(schema
            .row_from_json_bytes(br#"{"a": 1}"#)
            .unwrap_err()
            .contains("field `b`: expected a float value, but the object has no such field"));
    }
}

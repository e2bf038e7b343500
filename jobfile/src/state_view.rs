//! How the keyed state of a job file's window reads as JSON (in a live state query,
//! and offline from a checkpoint or savepoint): keys as the
//! values of its key fields (`42`, `["a", 1]` or `{"auction": 42}`), accumulators
//! as the window's named aggregates (`{"count": 3, "max_price": 120}`), instead of
//! their serde forms (`[{"Int": 42}]`, `[{"Count": 3}, {"Max": {"Int": 120}}]`).
//!
//! ```text
//!  GET …/state/{uid}/window-contents?key=42
//!    key_in:    42 ──▶ [{"Int": 42}]                 (the engine's key form)
//!    engine:    [{"start", "end", "slice", "value": [accumulators]}] per open window
//!    value_out: accumulators ──▶ {"count": 3, "max_price": 120}
//! ```

use crate::{Accumulator, Aggregate, FieldType, JobPlan, Step, Value};
use serde_json::{json, Value as Json};

/// The name of a window operator's keyed state.
pub const WINDOW_CONTENTS: &str = "window-contents";

/// The key fields and aggregates of one window operator of a job file.
pub struct StateView {
    /// The key fields' names and types.
    keys: Vec<(String, FieldType)>,
    /// The aggregates' output names, in order.
    names: Vec<String>,
    aggregates: Vec<Aggregate>,
}

impl StateView {
    /// The view of state `state` of operator `uid` of `plan`, if it is a window's
    /// contents (aggregates, not `top`).
    pub fn of(plan: &JobPlan, uid: &str, state: &str) -> Option<Self> {
        if state != WINDOW_CONTENTS {
            return None;
        }
        let stream = plan
            .streams
            .iter()
            .find(|s| s.node.uid.as_deref().unwrap_or(s.node.name.value.as_str()) == uid)?;
        let Step::Window(window) = &stream.step else {
            return None;
        };
        if window.top.is_some() {
            return None;
        }
        let keyed = plan
            .streams
            .iter()
            .find(|s| Some(&s.node.name.value) == stream.inputs.first())?;
        let Step::KeyBy(fields) = &keyed.step else {
            return None;
        };
        let keys: Vec<(String, FieldType)> = fields
            .iter()
            .filter_map(|&f| keyed.schema.fields.get(f))
            .map(|f| (f.name.clone(), f.ty))
            .collect();
        // Output: the key fields, window_start, window_end, the aggregates.
        let names = stream
            .schema
            .fields
            .iter()
            .skip(keys.len() + 2)
            .map(|f| f.name.clone())
            .collect();
        Some(Self {
            keys,
            names,
            aggregates: window.aggregates.clone(),
        })
    }

    /// A key as given (one value for one key field; an array or an object by field
    /// name for several) in the engine's key form.
    ///
    /// # Errors
    /// A key of another shape, or a value not of its key field's type.
    pub fn key_in(&self, key: &Json) -> Result<Json, String> {
        let expected = || {
            let fields: Vec<String> = self
                .keys
                .iter()
                .map(|(name, ty)| format!("{name} ({ty:?})"))
                .collect();
            format!(
                "expected the key field{} {} as a value, an array or an object by name",
                if fields.len() == 1 { "" } else { "s" },
                fields.join(", ")
            )
        };
        let values: Vec<&Json> = match key {
            Json::Array(values) => values.iter().collect(),
            Json::Object(fields) => self
                .keys
                .iter()
                .map(|(name, _)| fields.get(name).ok_or_else(expected))
                .collect::<Result<_, _>>()?,
            single => vec![single],
        };
        if values.len() != self.keys.len() {
            return Err(expected());
        }
        let tagged = values
            .into_iter()
            .zip(&self.keys)
            .map(|(value, (name, ty))| {
                let tag = match ty {
                    FieldType::Int => value.as_i64().map(|v| json!({ "Int": v })),
                    FieldType::Timestamp => value.as_i64().map(|v| json!({ "Timestamp": v })),
                    FieldType::Float => value.as_f64().map(|v| json!({ "Float": v })),
                    FieldType::Bool => value.as_bool().map(|v| json!({ "Bool": v })),
                    FieldType::String => value.as_str().map(|v| json!({ "String": v })),
                };
                tag.ok_or_else(|| format!("key field {name}: {value} is not of type {ty:?}"))
            })
            .collect::<Result<Vec<Json>, String>>()?;
        Ok(Json::Array(tagged))
    }

    /// A key in the engine's form (a sequence of tagged values) as the values of the
    /// key fields: one value for one key field, else an array.
    pub fn key_out(&self, key: &Json) -> Json {
        let values: Vec<Json> = key
            .as_array()
            .map(|values| values.iter().map(plain).collect())
            .unwrap_or_default();
        match <[Json; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Json::Array(many),
        }
    }

    /// A key's open windows with their accumulators as the named aggregates.
    pub fn value_out(&self, windows: &Json) -> Json {
        let Some(windows) = windows.as_array() else {
            return windows.clone();
        };
        let named = windows.iter().map(|window| {
            let mut window = window.clone();
            let accumulators: Option<Vec<Accumulator>> =
                serde_json::from_value(window["value"].clone()).ok();
            if let Some(accumulators) = accumulators {
                let values: serde_json::Map<String, Json> = self
                    .names
                    .iter()
                    .zip(&self.aggregates)
                    .zip(&accumulators)
                    .map(|((name, aggregate), acc)| {
                        (name.clone(), value_json(&aggregate.result(acc)))
                    })
                    .collect();
                window["value"] = Json::Object(values);
            }
            window
        });
        Json::Array(named.collect())
    }
}

/// A value in the engine's tagged form (`{"Int": 42}`) as plain JSON.
fn plain(tagged: &Json) -> Json {
    serde_json::from_value::<Value>(tagged.clone())
        .map(|v| value_json(&v))
        .unwrap_or_else(|_| tagged.clone())
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Int(v) | Value::Timestamp(v) => json!(v),
        Value::Float(v) => json!(v),
        Value::Bool(v) => json!(v),
        Value::String(v) => json!(&**v),
    }
}

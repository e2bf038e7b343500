//! User-defined functions that job files reference as `kind: udf`: per batch (the
//! form that keeps the engine's speed) or, as a convenience, per row.

use crate::batch::Batch;
use crate::row::{Field, FieldType, Row, Schema};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A row function bound to its input schema: one input row to any number of output
/// rows.
pub type RowFunction = Arc<dyn Fn(&Row) -> Vec<Row> + Send + Sync>;

/// A batch function bound to its input schema: one input batch to one output batch
/// (of the function's output fields, any number of rows), or an error that fails
/// the job with the function's operator named.
pub type BatchFunction = Arc<dyn Fn(Batch) -> Result<Batch, String> + Send + Sync>;

/// A function bound to the schema it reads.
#[derive(Clone)]
pub enum BoundFunction {
    /// Called per row.
    Rows(RowFunction),
    /// Called per batch.
    Batches(BatchFunction),
}

/// Binds a function to the schema of the stream it reads, or says why it cannot
/// read that stream (a missing field, a wrong type).
pub type Binder = Arc<dyn Fn(&Schema) -> Result<BoundFunction, String> + Send + Sync>;

/// A registered function: its output fields and how to bind it.
#[derive(Clone)]
pub struct Udf {
    /// The fields of the rows it emits.
    pub output: Vec<Field>,
    /// Binds it to an input schema.
    pub bind: Binder,
}

impl fmt::Debug for Udf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Udf").field("output", &self.output).finish()
    }
}

/// Named user-defined functions, for a program that embeds weir as a library.
///
/// ```
/// use std::sync::Arc;
/// use weir_jobfile::{FieldType, Registry, Row, Value};
/// let mut registry = Registry::default();
/// registry.register("double_price", [("price2", FieldType::Int)], |schema| {
///     let price = schema.index_of("price").ok_or("needs an int field `price`")?;
///     Ok(Arc::new(move |row: &Row| vec![Row(vec![Value::Int(row.0[price].as_i64() * 2)])]))
/// });
/// assert!(registry.get("double_price").is_some());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registry {
    functions: BTreeMap<String, Udf>,
}

impl Registry {
    /// Registers `name`, a function per row emitting rows of `output` fields; `bind`
    /// is called with the input schema when a job using it is validated and built.
    pub fn register<'a>(
        &mut self,
        name: &str,
        output: impl IntoIterator<Item = (&'a str, FieldType)>,
        bind: impl Fn(&Schema) -> Result<RowFunction, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.insert(name, output, move |schema| {
            bind(schema).map(BoundFunction::Rows)
        })
    }

    /// Registers `name`, a function per batch emitting batches of `output` fields
    /// (columns in that order); `bind` is called with the input schema when a job
    /// using it is validated and built.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use weir_jobfile::{Batch, Column, FieldType, Registry};
    /// let mut registry = Registry::default();
    /// registry.register_batch("double_price", [("price2", FieldType::Int)], |schema| {
    ///     let price = schema.index_of("price").ok_or("needs an int field `price`")?;
    ///     Ok(Arc::new(move |batch: Batch| {
    ///         let Column::Int(prices) = batch.column(price) else {
    ///             return Err("price is not an int column".to_string());
    ///         };
    ///         let doubled = prices.iter().map(|p| p * 2).collect();
    ///         Batch::new(vec![Column::Int(doubled)], batch.len())
    ///     }))
    /// });
    /// assert!(registry.get("double_price").is_some());
    /// ```
    pub fn register_batch<'a>(
        &mut self,
        name: &str,
        output: impl IntoIterator<Item = (&'a str, FieldType)>,
        bind: impl Fn(&Schema) -> Result<BatchFunction, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.insert(name, output, move |schema| {
            bind(schema).map(BoundFunction::Batches)
        })
    }

    fn insert<'a>(
        &mut self,
        name: &str,
        output: impl IntoIterator<Item = (&'a str, FieldType)>,
        bind: impl Fn(&Schema) -> Result<BoundFunction, String> + Send + Sync + 'static,
    ) -> &mut Self {
        let output = Schema::new(output).fields;
        self.functions.insert(
            name.to_string(),
            Udf {
                output,
                bind: Arc::new(bind),
            },
        );
        self
    }

    /// The function registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Udf> {
        self.functions.get(name)
    }

    /// The registered names, comma-separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        names.join(", ")
    }
}

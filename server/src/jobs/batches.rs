//! The operators of job files over batches: `filter` and `map` per column, `udf`
//! per batch or per row, and the steps between batches and the keyed operators
//! (windows and joins keep the engine's typed operators and their state formats).
//!
//! ```text
//!  Batch ─BatchOperator (filter │ map │ udf)─▶ Batch
//!  Batch ─Project─▶ Numbers { key, time, ≤ 2 fields' bits } ─key_by─▶ window
//!        (counts, sums, mins, maxes of numbers) ─▶ NumericAggregates ─▶ NumRow
//!  Batch ─Project─▶ Projected { key, time, the fields read } ─key_by─▶ window or top
//!        (a top's LocalTop drops the rows it would never keep, before the shuffle)
//!  Batch ─ToRows─▶ Row ─key_by─▶ join                  (joins keep whole rows in state)
//!  NumRow, ResultRow, Row (window and join results) ─ToBatches─▶ Batch
//! ```

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::marker::PhantomData;
use std::sync::Arc;
use weir_dataflow::window::Window;
use weir_dataflow::{DataflowError, Operator, Output};
use weir_jobfile::{
    Accumulator, Aggregate, Batch, BatchFunction, Column, EvalError, Expr, JsonWriter, KeyedRecord,
    NumAccumulator, Numbers, Projected, RankKind, Row, RowFunction, RowKey, Schema, TopPlan, Value,
};
use weir_sinks::kafka::KafkaOutRecord;
use weir_state::{AggregateFunction, StableHasher};

/// What a [`BatchOperator`] applies.
#[derive(Clone)]
pub(super) enum BatchApply {
    Filter(Expr),
    /// The expressions, and for each that is a field read by no other output
    /// expression as a bare field, that field: its column moves, uncopied.
    Map(Arc<[Expr]>, Arc<[Option<usize>]>),
    Udf(RowFunction, Arc<Schema>),
    BatchUdf(BatchFunction, Arc<Schema>),
}

/// Filter, map and user functions over batches; an expression error fails the job
/// with the operator's name and the row it failed on.
pub(super) struct BatchOperator {
    pub(super) operator: String,
    pub(super) subtask: usize,
    pub(super) apply: BatchApply,
}

impl BatchOperator {
    fn fail(&self, row: &Row, e: EvalError) -> DataflowError {
        DataflowError::operator(
            &self.operator,
            self.subtask,
            format!("{e} (row {:?})", row.0),
        )
    }

    /// The error of the first row (and, in it, the first expression) that fails,
    /// in the order the row path evaluates them.
    fn first_failure(&self, batch: &Batch, exprs: &[Expr]) -> DataflowError {
        for i in 0..batch.len() {
            let row = batch.row(i);
            for expr in exprs {
                if let Err(e) = expr.eval(&row) {
                    return self.fail(&row, e);
                }
            }
        }
        self.failed("an expression failed on a batch but on none of its rows".into())
    }

    fn failed(&self, message: String) -> DataflowError {
        DataflowError::operator(&self.operator, self.subtask, message)
    }

    fn apply(&self, batch: Batch, out: &mut Output<Batch>) -> weir_dataflow::Result<()> {
        match &self.apply {
            BatchApply::Filter(condition) => match condition.eval_batch(&batch) {
                Ok(Column::Bool(keep)) => {
                    let kept = keep.iter().filter(|&&k| k).count();
                    if kept == batch.len() {
                        out.push(batch);
                    } else if kept > 0 {
                        out.push(batch.filter(&keep));
                    }
                }
                // Only `true` keeps a row (the condition is a bool by validation).
                Ok(_) => {}
                Err((i, e)) => return Err(self.fail(&batch.row(i), e)),
            },
            BatchApply::Map(exprs, moves) => {
                let mut computed = Vec::with_capacity(exprs.len());
                for (expr, moved) in exprs.iter().zip(moves.iter()) {
                    computed.push(match moved {
                        Some(_) => None,
                        None => match expr.eval_batch(&batch) {
                            Ok(column) => Some(column),
                            Err(_) => return Err(self.first_failure(&batch, exprs)),
                        },
                    });
                }
                let len = batch.len();
                let mut columns = batch.into_columns();
                let outputs = computed
                    .into_iter()
                    .zip(moves.iter())
                    .map(|(column, moved)| match (column, moved) {
                        (Some(column), _) => column,
                        (None, Some(field)) => columns
                            .get_mut(*field)
                            .map_or(Column::Pruned, |c| std::mem::replace(c, Column::Pruned)),
                        (None, None) => Column::Pruned,
                    })
                    .collect();
                let mapped = Batch::new(outputs, len).map_err(|e| self.failed(e))?;
                out.push(mapped);
            }
            BatchApply::Udf(function, schema) => {
                let rows = batch.rows().flat_map(|row| function(&row));
                let mapped = Batch::from_rows(schema, rows).map_err(|e| {
                    self.failed(format!(
                        "the function returned a row that does not fit its declared fields: {e}"
                    ))
                })?;
                if !mapped.is_empty() {
                    out.push(mapped);
                }
            }
            BatchApply::BatchUdf(function, schema) => {
                let mapped = function(batch).map_err(|e| self.failed(e))?;
                if let Some(ty) = mapped
                    .columns()
                    .iter()
                    .zip(&schema.fields)
                    .find(|(c, f)| c.field_type().is_some_and(|t| t != f.ty))
                {
                    return Err(self.failed(format!(
                        "the function returned a batch whose field `{}` is not a {}",
                        ty.1.name, ty.1.ty
                    )));
                }
                if mapped.columns().len() != schema.fields.len() {
                    return Err(self.failed(format!(
                        "the function returned a batch of {} fields, expected {} ({})",
                        mapped.columns().len(),
                        schema.fields.len(),
                        schema.names()
                    )));
                }
                if !mapped.is_empty() {
                    out.push(mapped);
                }
            }
        }
        Ok(())
    }
}

/// For each output expression of a map, the field whose column it can take as it is:
/// a bare field that no other expression names bare.
pub(super) fn movable_fields(exprs: &[Expr]) -> Arc<[Option<usize>]> {
    let bare: Vec<Option<usize>> = exprs.iter().map(Expr::as_field).collect();
    bare.iter()
        .map(|field| field.filter(|f| bare.iter().filter(|g| **g == Some(*f)).count() == 1))
        .collect()
}

impl Operator for BatchOperator {
    type In = Batch;
    type Out = Batch;
    fn on_batch(
        &mut self,
        input: &mut Vec<Batch>,
        out: &mut Output<Batch>,
    ) -> weir_dataflow::Result<()> {
        for batch in input.drain(..) {
            self.apply(batch, out)?;
        }
        Ok(())
    }
}

/// Each row of a batch as what a window reads (`R`): its key, event time and the
/// fields its aggregates read (or, for `top`, all of them).
pub(super) struct Project<K, R> {
    pub(super) keys: Arc<[usize]>,
    pub(super) time: Option<usize>,
    pub(super) fields: Arc<[usize]>,
    /// For a `top`, the rows it cannot keep are dropped here, before the shuffle.
    pub(super) local_top: Option<LocalTop>,
    /// Per key and window of the batch at hand, its slot in `best`.
    pub(super) groups: HashMap<(K, i64), usize, BuildHasherDefault<StableHasher>>,
    /// The largest `top` value of each group of the batch at hand.
    pub(super) best: Vec<i64>,
    /// Each row's group slot, so a row's key is built and hashed once.
    pub(super) slots: Vec<usize>,
    pub(super) record: PhantomData<fn() -> R>,
}

impl<K, R> Project<K, R> {
    pub(super) fn new(
        keys: Arc<[usize]>,
        time: Option<usize>,
        fields: Arc<[usize]>,
        local_top: Option<LocalTop>,
    ) -> Self {
        Self {
            keys,
            time,
            fields,
            local_top,
            groups: HashMap::default(),
            best: Vec::new(),
            slots: Vec::new(),
            record: PhantomData,
        }
    }
}

/// What a `top` compares and groups by, for [`Project`] to drop, before the shuffle,
/// the rows of a batch below another row of the same key and window: `top` would
/// never keep them. Used only where that changes nothing downstream: an int or
/// timestamp field (no NaN, which `top` keeps when it comes first), tumbling windows
/// (a row's window follows from its time) and no allowed lateness (a fired window
/// is not updated, and so not emitted again, per late row).
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalTop {
    /// The field compared (its position in the batch).
    pub(super) by: usize,
    /// The tumbling windows' size, in ms.
    pub(super) size: i64,
}

impl<K: RowKey, R: KeyedRecord<K>> Operator for Project<K, R> {
    type In = Batch;
    type Out = R;
    fn on_batch(
        &mut self,
        input: &mut Vec<Batch>,
        out: &mut Output<R>,
    ) -> weir_dataflow::Result<()> {
        for batch in input.drain(..) {
            let Some(top) = self.local_top else {
                R::project_rows(&batch, &self.keys, self.time, &self.fields, |p| out.push(p));
                continue;
            };
            let (by, time) = (batch.column(top.by), self.time.map(|t| batch.column(t)));
            let key = K::reader(&batch, &self.keys);
            let (groups, best, slots) = (&mut self.groups, &mut self.best, &mut self.slots);
            groups.clear();
            best.clear();
            slots.clear();
            for i in 0..batch.len() {
                let window = time.map_or(0, |t| t.i64_at(i).div_euclid(top.size.max(1)));
                let value = by.i64_at(i);
                let slot = *groups.entry((key(i), window)).or_insert_with(|| {
                    best.push(value);
                    best.len() - 1
                });
                best[slot] = best[slot].max(value);
                slots.push(slot);
            }
            for (i, &slot) in slots.iter().enumerate() {
                // As `top` compares: as floats.
                if by.i64_at(i) as f64 >= best[slot] as f64 {
                    out.push(R::project(&batch, i, &self.keys, self.time, &self.fields));
                }
            }
        }
        Ok(())
    }
}

/// What `top` reads of a row: the whole row, inline up to this many fields.
pub(super) const TOP_FIELDS: usize = 6;

/// Each row of a batch as a row (the input of joins).
pub(super) struct ToRows;

impl Operator for ToRows {
    type In = Batch;
    type Out = Row;
    fn on_batch(
        &mut self,
        input: &mut Vec<Batch>,
        out: &mut Output<Row>,
    ) -> weir_dataflow::Result<()> {
        for batch in input.drain(..) {
            out.extend(batch.rows());
        }
        Ok(())
    }
}

/// Each row of a batch as its JSON text, for the sinks that write JSON.
pub(super) struct ToJson {
    pub(super) operator: String,
    pub(super) subtask: usize,
    pub(super) writer: JsonWriter,
}

impl Operator for ToJson {
    type In = Batch;
    type Out = super::JsonRow;
    fn on_batch(
        &mut self,
        input: &mut Vec<Batch>,
        out: &mut Output<super::JsonRow>,
    ) -> weir_dataflow::Result<()> {
        for batch in input.drain(..) {
            for i in 0..batch.len() {
                let mut text = Vec::with_capacity(128);
                self.writer.write(&batch, i, &mut text);
                let row = String::from_utf8(text)
                    .map_err(|e| e.to_string())
                    .and_then(|text| super::JsonRow::from_text(text).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        DataflowError::operator(
                            &self.operator,
                            self.subtask,
                            format!("a row did not become JSON: {e}"),
                        )
                    })?;
                out.push(row);
            }
        }
        Ok(())
    }
}

/// Each row of a batch as an upsert or a tombstone of its key, for a Kafka sink of
/// a table's changelog: the key is the text of field `key` (a string's own text,
/// another value's JSON), the value the row's JSON without field `deleted`, or none
/// when `deleted` is true; the record's timestamp is the row's event time, if the
/// rows have one (`time`).
pub(super) struct ToUpsert {
    pub(super) key: usize,
    pub(super) deleted: usize,
    pub(super) time: Option<usize>,
    /// Writes every field but `deleted`.
    pub(super) writer: JsonWriter,
}

impl Operator for ToUpsert {
    type In = Batch;
    type Out = KafkaOutRecord;
    fn on_batch(
        &mut self,
        input: &mut Vec<Batch>,
        out: &mut Output<KafkaOutRecord>,
    ) -> weir_dataflow::Result<()> {
        for batch in input.drain(..) {
            let keys = batch.column(self.key);
            let deleted = batch.column(self.deleted);
            let times = self.time.map(|t| batch.column(t));
            for i in 0..batch.len() {
                let key = match keys.value(i) {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Int(v) | Value::Timestamp(v) => v.to_string().into_bytes(),
                    Value::Bool(v) => v.to_string().into_bytes(),
                    Value::Float(v) => serde_json::to_vec(&v).unwrap_or_default(),
                };
                let value = if matches!(deleted.value(i), Value::Bool(true)) {
                    None
                } else {
                    let mut text = Vec::with_capacity(128);
                    self.writer.write(&batch, i, &mut text);
                    Some(text)
                };
                let timestamp = times.and_then(|t| match t.value(i) {
                    Value::Int(ms) | Value::Timestamp(ms) => Some(ms),
                    _ => None,
                });
                out.push(KafkaOutRecord {
                    key: Some(key),
                    value,
                    timestamp,
                });
            }
        }
        Ok(())
    }
}

/// A window's result row, inline (no allocation per result).
pub(super) type ResultRow = SmallVec<[Value; 6]>;

/// A result record (of a window or join) as the values of its output row, of
/// schema `schema`.
pub(super) trait ResultRecord: weir_dataflow::Data {
    /// The values.
    type Values: IntoIterator<Item = Value>;
    /// The values, in `schema`'s order.
    fn into_values(self, schema: &Schema) -> Self::Values;
}

impl ResultRecord for ResultRow {
    type Values = Self;
    fn into_values(self, _: &Schema) -> Self {
        self
    }
}

impl ResultRecord for Row {
    type Values = Self;
    fn into_values(self, _: &Schema) -> Self {
        self
    }
}

/// A result row of a window of [`NumericAggregates`]: its key, its window and the
/// aggregates' values as their 64 bits ([`Value::to_bits`]), read back with the
/// output schema's types. With an int key and one aggregate, 40 bytes against a
/// [`ResultRow`]'s 152: a window fires all its keys' rows at once.
#[derive(Clone, Debug)]
pub(super) struct NumRow<K, const A: usize> {
    pub(super) key: K,
    pub(super) window: Window,
    pub(super) bits: [i64; A],
}

impl<K: Clone, const A: usize> NumRow<K, A> {
    /// The row of `key`'s window `window`.
    pub(super) fn of(key: &K, window: Window, bits: [i64; A]) -> Self {
        Self {
            key: key.clone(),
            window,
            bits,
        }
    }
}

impl<K: RowKey, const A: usize> ResultRecord for NumRow<K, A> {
    type Values = ResultRow;
    fn into_values(self, schema: &Schema) -> ResultRow {
        let mut row = ResultRow::new();
        self.key.extend_into(&mut row);
        row.push(Value::Timestamp(self.window.start));
        row.push(Value::Timestamp(self.window.end));
        // The aggregates are the schema's last fields.
        let aggregates = &schema.fields[schema.fields.len().saturating_sub(A)..];
        for (&bits, field) in self.bits.iter().zip(aggregates) {
            row.push(Value::from_bits(bits, field.ty));
        }
        row
    }
}

/// Rows (window and join results) as one batch per call.
pub(super) struct ToBatches<R> {
    pub(super) operator: String,
    pub(super) subtask: usize,
    pub(super) schema: Arc<Schema>,
    pub(super) _rows: std::marker::PhantomData<fn(R)>,
}

impl<R: ResultRecord> Operator for ToBatches<R> {
    type In = R;
    type Out = Batch;
    fn on_batch(
        &mut self,
        input: &mut Vec<R>,
        out: &mut Output<Batch>,
    ) -> weir_dataflow::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let schema = &self.schema;
        let rows = input.drain(..).map(|r| r.into_values(schema));
        let batch = Batch::from_values(schema, rows)
            .map_err(|e| DataflowError::operator(&self.operator, self.subtask, e))?;
        out.push(batch);
        Ok(())
    }
}

/// A window's built-in aggregates as one aggregate function over projected rows;
/// its accumulators are those of the row path, so window state keeps its format.
/// Up to `A` accumulators are held inline (no allocation per key and window).
#[derive(Clone)]
pub(super) struct ProjectedAggregates<const A: usize>(pub(super) Arc<[Aggregate]>);

/// The accumulators of one key's window, inline up to `A`; serialized as a
/// sequence, as the `Vec` of the row path, so window state keeps its snapshot format.
pub(super) type Accumulators<const A: usize = 2> = SmallVec<[Accumulator; A]>;

impl<K, const A: usize> AggregateFunction<Projected<K>> for ProjectedAggregates<A> {
    type Acc = Accumulators<A>;
    type Out = SmallVec<[Value; 4]>;
    fn create(&self) -> Accumulators<A> {
        self.0.iter().map(Aggregate::create).collect()
    }
    #[inline]
    fn add(&self, acc: &mut Accumulators<A>, row: &Projected<K>) {
        for (aggregate, acc) in self.0.iter().zip(acc.iter_mut()) {
            aggregate.add(acc, &row.values);
        }
    }
    fn merge(&self, acc: &mut Accumulators<A>, other: Accumulators<A>) {
        for ((aggregate, acc), other) in self.0.iter().zip(acc.iter_mut()).zip(other) {
            aggregate.merge(acc, other);
        }
    }
    fn result(&self, acc: &Accumulators<A>) -> SmallVec<[Value; 4]> {
        self.0
            .iter()
            .zip(acc)
            .map(|(a, acc)| a.result(acc))
            .collect()
    }
}

/// The rows a `top` keeps so far, best first: the accumulator of `top`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct TopRows {
    /// The first order field of the best row (kept so that the encoding is that of
    /// the window Top-1 before Top-N, whose rows were all tied).
    best: Option<Value>,
    rows: Vec<ResultRow>,
}

/// A window's built-in aggregates when each is a `count`, or a `sum`, `min` or
/// `max` of a number: exactly `A` accumulators of 16 bytes each, in place of
/// [`ProjectedAggregates`]' 32 (a window table's entries are its working set).
/// Same results, and the same snapshot bytes.
#[derive(Clone)]
pub(super) struct NumericAggregates<const A: usize>(pub(super) Arc<[Aggregate]>);

/// The compact accumulators of one key's window, serialized as the sequence of
/// [`Accumulator`]s they stand for (the row path's `Vec`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NumAccumulators<const A: usize>([NumAccumulator; A]);

impl<const A: usize> Serialize for NumAccumulators<A> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|acc| acc.to_accumulator()))
    }
}

impl<'de, const A: usize> Deserialize<'de> for NumAccumulators<A> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let accumulators = Vec::<Accumulator>::deserialize(deserializer)?;
        if accumulators.len() != A {
            return Err(D::Error::custom(format!(
                "expected the state of {A} aggregates, found {}",
                accumulators.len()
            )));
        }
        let mut compact = [NumAccumulator::Count(0); A];
        for (slot, acc) in compact.iter_mut().zip(&accumulators) {
            *slot = NumAccumulator::from_accumulator(acc).ok_or_else(|| {
                D::Error::custom(format!(
                    "expected the state of a count, sum, min or max of a number, found {acc:?}"
                ))
            })?;
        }
        Ok(Self(compact))
    }
}

impl<K, const A: usize> AggregateFunction<Numbers<K>> for NumericAggregates<A> {
    type Acc = NumAccumulators<A>;
    /// The results' 64 bits ([`Value::to_bits`]).
    type Out = [i64; A];
    fn create(&self) -> NumAccumulators<A> {
        let mut accumulators = [NumAccumulator::Count(0); A];
        for (acc, aggregate) in accumulators.iter_mut().zip(self.0.iter()) {
            *acc = aggregate.create_numeric();
        }
        NumAccumulators(accumulators)
    }
    #[inline]
    fn add(&self, acc: &mut NumAccumulators<A>, row: &Numbers<K>) {
        for (aggregate, acc) in self.0.iter().zip(acc.0.iter_mut()) {
            aggregate.add_numeric(acc, &row.bits);
        }
    }
    fn merge(&self, acc: &mut NumAccumulators<A>, other: NumAccumulators<A>) {
        for ((aggregate, acc), other) in self.0.iter().zip(acc.0.iter_mut()).zip(other.0) {
            aggregate.merge_numeric(acc, other);
        }
    }
    fn result(&self, acc: &NumAccumulators<A>) -> [i64; A] {
        let mut bits = [0; A];
        for ((slot, aggregate), acc) in bits.iter_mut().zip(self.0.iter()).zip(acc.0) {
            *slot = aggregate.result_numeric(acc).to_bits();
        }
        bits
    }
}

/// Keeps, per key and window, the projected rows its plan ranks `n` or better
/// (the fields a plan names are positions in the projected rows: whole rows).
#[derive(Clone)]
pub(super) struct TopOf(pub(super) Arc<TopPlan>);

impl TopOf {
    /// How row `a` ranks against row `b` on the order fields: `Less` if before.
    fn order(&self, a: &[Value], b: &[Value]) -> Ordering {
        for &(field, descending) in &self.0.order {
            let (Some(x), Some(y)) = (a.get(field), b.get(field)) else {
                continue;
            };
            let ordering = x.sort_cmp(y);
            let ordering = if descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }

    /// The order rows are kept in: by [`order`](Self::order), and for `ROW_NUMBER`
    /// ties by the whole row, so the rows kept never depend on arrival order.
    fn position(&self, a: &[Value], b: &[Value]) -> Ordering {
        let ordering = self.order(a, b);
        if ordering != Ordering::Equal || self.0.rank != RankKind::RowNumber {
            return ordering;
        }
        a.iter()
            .zip(b)
            .map(|(x, y)| x.sort_cmp(y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    }

    /// Drops from the sorted `rows` those ranked below `n`. Tied rows are
    /// neighbours, so each run of ties is found by a binary search: adding a row
    /// tied with many others costs a few comparisons, not one per tie.
    fn trim(&self, rows: &mut Vec<ResultRow>) {
        let n = self.0.n;
        if rows.len() <= n {
            return;
        }
        // The end of the run of rows from `start` tied with it.
        let run_end = |rows: &[ResultRow], start: usize| {
            start
                + rows[start..].partition_point(|r| self.order(r, &rows[start]) == Ordering::Equal)
        };
        let keep = match self.0.rank {
            RankKind::RowNumber => n,
            // The rows tied with the n-th are ranked n or better too.
            RankKind::Rank => run_end(rows, n - 1),
            // The first n runs of ties.
            RankKind::DenseRank => {
                let mut end = 0;
                for _ in 0..n {
                    if end == rows.len() {
                        break;
                    }
                    end = run_end(rows, end);
                }
                end
            }
        };
        rows.truncate(keep);
    }

    /// Sets `best` to the first order field of the best row.
    fn settle(&self, acc: &mut TopRows) {
        let first = self.0.order.first().map(|&(field, _)| field);
        acc.best = acc
            .rows
            .first()
            .and_then(|row| row.get(first.unwrap_or_default()))
            .cloned();
    }
}

impl<K> AggregateFunction<Projected<K, TOP_FIELDS>> for TopOf {
    type Acc = TopRows;
    type Out = Vec<ResultRow>;
    fn create(&self) -> TopRows {
        TopRows::default()
    }
    fn add(&self, acc: &mut TopRows, row: &Projected<K, TOP_FIELDS>) {
        let values = row.values.as_slice();
        // Most rows rank below a full top's last row: dropped with one comparison.
        if self.0.rank != RankKind::DenseRank && acc.rows.len() >= self.0.n {
            if let Some(last) = acc.rows.last() {
                if self.position(values, last) == Ordering::Greater {
                    return;
                }
            }
        }
        let at = acc
            .rows
            .partition_point(|r| self.position(r, values) != Ordering::Greater);
        acc.rows.insert(at, values.iter().cloned().collect());
        self.trim(&mut acc.rows);
        if at == 0 {
            self.settle(acc);
        }
    }
    fn merge(&self, acc: &mut TopRows, other: TopRows) {
        if other.rows.is_empty() {
            return;
        }
        acc.rows.extend(other.rows);
        // Stable: of tied rows, the earlier accumulator's come first.
        acc.rows.sort_by(|a, b| self.position(a, b));
        self.trim(&mut acc.rows);
        self.settle(acc);
    }
    fn result(&self, acc: &TopRows) -> Vec<ResultRow> {
        if !self.0.rank_field {
            return acc.rows.clone();
        }
        let mut rank = 0;
        let mut distinct = 0;
        acc.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let tied = i > 0 && self.order(row, &acc.rows[i - 1]) == Ordering::Equal;
                if !tied {
                    distinct += 1;
                    rank = i + 1;
                }
                let number = match self.0.rank {
                    RankKind::RowNumber => i + 1,
                    RankKind::Rank => rank,
                    RankKind::DenseRank => distinct,
                };
                let mut row = row.clone();
                row.push(Value::Int(i64::try_from(number).unwrap_or(i64::MAX)));
                row
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir_jobfile::{AggregateKind, FieldType, IntKey, Schema};

    /// Folds `rows` in two parts and merges them, with `f`; the accumulators and
    /// the result.
    fn fold<R, F: AggregateFunction<R>>(f: &F, rows: &[R], split: usize) -> (F::Acc, F::Out) {
        let (mut left, mut right) = (f.create(), f.create());
        let split = split.min(rows.len());
        rows[..split].iter().for_each(|r| f.add(&mut left, r));
        rows[split..].iter().for_each(|r| f.add(&mut right, r));
        f.merge(&mut left, right);
        let out = f.result(&left);
        (left, out)
    }

    /// Compact accumulators over [`Numbers`] against the row path's accumulators
    /// over [`Projected`] rows of the same batch: the same results, and the same
    /// snapshot bytes both ways.
    fn numeric_equals_the_row_path<const A: usize>(
        aggregates: Arc<[Aggregate]>,
        batch: &Batch,
        fields: &[usize],
        split: usize,
    ) {
        let config = bincode::config::standard();
        let (mut rows, mut numbers) = (Vec::new(), Vec::new());
        Projected::<IntKey>::project_rows(batch, &[0], None, fields, |r| rows.push(r));
        Numbers::<IntKey>::project_rows(batch, &[0], None, fields, |r| numbers.push(r));
        let general = ProjectedAggregates::<2>(Arc::clone(&aggregates));
        let numeric = NumericAggregates::<A>(aggregates);
        let (general_acc, general_out) = fold(&general, &rows, split);
        let (numeric_acc, numeric_out) = fold(&numeric, &numbers, split);
        let general_bits: Vec<i64> = general_out.iter().map(Value::to_bits).collect();
        assert_eq!(numeric_out.to_vec(), general_bits);
        // Read back with the output types, they are the row path's values.
        let types = general_out.iter().map(Value::field_type);
        let values: Vec<Value> = numeric_out
            .iter()
            .zip(types)
            .map(|(&b, t)| Value::from_bits(b, t))
            .collect();
        assert_eq!(values, general_out.to_vec());
        let bytes = bincode::serde::encode_to_vec(&general_acc, config).unwrap();
        assert_eq!(
            bincode::serde::encode_to_vec(numeric_acc, config).unwrap(),
            bytes
        );
        let (back, _): (NumAccumulators<A>, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, numeric_acc);
    }

    proptest! {
        #[test]
        fn numeric_aggregates_equal_the_row_paths(
            specs in prop::collection::vec((0usize..4, 0usize..3), 1..=4),
            values in prop::collection::vec((any::<i64>(), any::<f64>(), any::<i64>()), 0..12),
            split in 0usize..12,
        ) {
            let kinds = [AggregateKind::Count, AggregateKind::Sum, AggregateKind::Min, AggregateKind::Max];
            let schema = Schema::new([
                ("i", FieldType::Int),
                ("x", FieldType::Float),
                ("t", FieldType::Timestamp),
            ]);
            // The fields read, as the plan projects them: distinct, in order.
            let mut fields: Vec<usize> = specs.iter().filter(|s| s.0 > 0).map(|s| s.1).collect();
            fields.sort_unstable();
            fields.dedup();
            prop_assume!(fields.len() <= weir_jobfile::NUMBERS);
            let aggregates: Arc<[Aggregate]> = specs
                .iter()
                .map(|&(kind, field)| Aggregate {
                    kind: kinds[kind],
                    field: (kind > 0).then(|| fields.iter().position(|&f| f == field)).flatten(),
                    input: if kind > 0 { schema.fields[field].ty } else { FieldType::Int },
                })
                .collect();
            let rows: Vec<Row> = values
                .iter()
                .map(|&(i, x, t)| Row(vec![Value::Int(i), Value::Float(x), Value::Timestamp(t)]))
                .collect();
            let batch = Batch::from_rows(&schema, rows).unwrap();
            match aggregates.len() {
                1 => numeric_equals_the_row_path::<1>(aggregates, &batch, &fields, split),
                2 => numeric_equals_the_row_path::<2>(aggregates, &batch, &fields, split),
                3 => numeric_equals_the_row_path::<3>(aggregates, &batch, &fields, split),
                _ => numeric_equals_the_row_path::<4>(aggregates, &batch, &fields, split),
            }
        }
    }

    /// Window state written by the row path (a `Vec` of accumulators) and by this
    /// path (inline accumulators) is the same bytes, both ways.
    #[test]
    fn inline_accumulators_encode_as_the_row_paths_vec() {
        let config = bincode::config::standard();
        for accumulators in [
            vec![Accumulator::Count(3)],
            vec![Accumulator::Count(3), Accumulator::Max(Some(Value::Int(9)))],
            vec![
                Accumulator::SumFloat(1.5),
                Accumulator::Min(None),
                Accumulator::Avg { sum: 2.0, count: 4 },
            ],
        ] {
            let inline: Accumulators = accumulators.iter().cloned().collect();
            let one: Accumulators<1> = accumulators.iter().cloned().collect();
            let as_vec = bincode::serde::encode_to_vec(&accumulators, config).unwrap();
            let as_inline = bincode::serde::encode_to_vec(&inline, config).unwrap();
            assert_eq!(as_vec, as_inline);
            assert_eq!(as_vec, bincode::serde::encode_to_vec(&one, config).unwrap());
            let (back, _): (Accumulators, usize) =
                bincode::serde::decode_from_slice(&as_vec, config).unwrap();
            assert_eq!(back.to_vec(), accumulators);
        }
    }
}

#[cfg(test)]
mod top_tests {
    use super::*;
    use weir_jobfile::Key;

    fn row(price: i64, id: i64) -> Projected<Key, TOP_FIELDS> {
        Projected {
            key: Key::One(Value::Int(0)),
            time: 0,
            values: [Value::Int(id), Value::Int(price)].into_iter().collect(),
        }
    }

    /// `top` keeps every row at the largest value, across merges (session windows).
    #[test]
    fn top_keeps_all_rows_at_the_largest_value_across_merges() {
        // Over projected rows with general keys.
        type Keyed = Projected<Key, TOP_FIELDS>;
        let merge = <TopOf as AggregateFunction<Keyed>>::merge;
        let result = <TopOf as AggregateFunction<Keyed>>::result;
        let top = TopOf(Arc::new(TopPlan {
            order: vec![(1, true)],
            n: 1,
            rank: RankKind::Rank,
            rank_field: false,
            partition: Vec::new(),
        }));
        let (mut left, mut right) = (TopRows::default(), TopRows::default());
        for r in [row(5, 1), row(9, 2), row(9, 3), row(1, 4)] {
            top.add(&mut left, &r);
        }
        for r in [row(9, 5), row(2, 6)] {
            top.add(&mut right, &r);
        }
        merge(&top, &mut left, right);
        let ids: Vec<Value> = result(&top, &left).iter().map(|r| r[0].clone()).collect();
        assert_eq!(ids, vec![Value::Int(2), Value::Int(3), Value::Int(5)]);
        let mut higher = TopRows::default();
        top.add(&mut higher, &row(10, 7));
        merge(&top, &mut left, higher);
        assert_eq!(result(&top, &left).len(), 1);
    }

    /// The rows of `rows` (id, price) a ranking keeps, best first, with their
    /// ranks: by price descending, ties by id ascending for `ROW_NUMBER`, sorted
    /// and numbered here as SQL defines the three ranks.
    fn reference(rows: &[(i64, i64)], n: usize, rank: RankKind) -> Vec<(i64, i64, i64)> {
        let mut sorted = rows.to_vec();
        sorted.sort_by_key(|&(id, price)| (-price, id));
        let mut out = Vec::new();
        let (mut r, mut dense) = (0, 0);
        for (i, &(id, price)) in sorted.iter().enumerate() {
            if i == 0 || sorted[i - 1].1 != price {
                r = i + 1;
                dense += 1;
            }
            let number = match rank {
                RankKind::RowNumber => i + 1,
                RankKind::Rank => r,
                RankKind::DenseRank => dense,
            };
            if number <= n {
                out.push((id, price, number as i64));
            }
        }
        out
    }

    proptest::proptest! {
        /// Any split of the rows into accumulators merged afterwards (as session
        /// windows merge) keeps the rows and ranks the reference keeps.
        #[test]
        fn top_n_keeps_what_each_ranking_keeps_across_merges(
            rows in proptest::collection::vec((0i64..50, 0i64..6), 0..40),
            splits in proptest::collection::vec(0usize..40, 0..3),
            n in 1usize..5,
            kind in 0usize..3,
        ) {
            type Keyed = Projected<Key, TOP_FIELDS>;
            let rank = [RankKind::RowNumber, RankKind::Rank, RankKind::DenseRank][kind];
            let top = TopOf(Arc::new(TopPlan {
                order: vec![(1, true)],
                n,
                rank,
                rank_field: true,
                partition: Vec::new(),
            }));
            let mut cuts: Vec<usize> = splits.iter().map(|&s| s.min(rows.len())).collect();
            cuts.push(0);
            cuts.push(rows.len());
            cuts.sort_unstable();
            let mut accs = Vec::new();
            for part in cuts.windows(2) {
                let mut acc = TopRows::default();
                for &(id, price) in &rows[part[0]..part[1]] {
                    top.add(&mut acc, &row(price, id));
                }
                accs.push(acc);
            }
            let mut acc = TopRows::default();
            for other in accs.into_iter().rev() {
                <TopOf as AggregateFunction<Keyed>>::merge(&top, &mut acc, other);
            }
            let got: Vec<(i64, i64, i64)> = <TopOf as AggregateFunction<Keyed>>::result(&top, &acc)
                .iter()
                .map(|r| (r[0].as_i64(), r[1].as_i64(), r[2].as_i64()))
                .collect();
            let mut want = reference(&rows, n, rank);
            if rank != RankKind::RowNumber {
                // Tied rows come in arrival order: compare as sets per rank.
                let mut got = got.clone();
                got.sort_unstable_by_key(|&(id, price, r)| (r, -price, id));
                want.sort_unstable_by_key(|&(id, price, r)| (r, -price, id));
                proptest::prop_assert_eq!(got, want);
            } else {
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;
    use weir_jobfile::{FieldType, Schema};

    /// A map that fails reports the row the row path would: the first row on which
    /// any of its expressions fails, not the first failure of the first expression.
    #[test]
    fn a_failing_map_names_the_first_failing_row() {
        let schema = Schema::new([("a", FieldType::Int), ("b", FieldType::Int)]);
        let exprs: Arc<[Expr]> = ["10 / a", "10 / b"]
            .iter()
            .map(|e| Expr::compile(e, &schema).unwrap())
            .collect();
        let operator = BatchOperator {
            operator: "m".into(),
            subtask: 0,
            apply: BatchApply::Map(exprs.clone(), movable_fields(&exprs)),
        };
        // Row 0 fails in the second expression, row 1 in the first.
        let rows = vec![
            Row(vec![Value::Int(1), Value::Int(0)]),
            Row(vec![Value::Int(0), Value::Int(1)]),
        ];
        let batch = Batch::from_rows(&schema, rows).unwrap();
        let error = operator
            .apply(batch, &mut Output::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("[Int(1), Int(0)]"), "{error}");
    }

    /// Before the shuffle of a `top`, a batch keeps, per key and window, its rows at
    /// the largest value (every one of a tie, in order), and nothing else.
    #[test]
    fn a_local_top_keeps_each_key_and_windows_largest_rows() {
        let schema = Schema::new([
            ("key", FieldType::Int),
            ("time", FieldType::Timestamp),
            ("price", FieldType::Int),
        ]);
        // (key, time, price): windows of 10 ms.
        let rows = [
            (1, 0, 5),
            (1, 3, 9),
            (2, 4, 1),
            (1, 9, 9),
            (1, 12, 2),
            (2, 5, 0),
            (1, 15, 1),
        ];
        let batch = Batch::from_rows(
            &schema,
            rows.iter()
                .map(|&(k, t, p)| Row(vec![Value::Int(k), Value::Timestamp(t), Value::Int(p)]))
                .collect::<Vec<Row>>(),
        )
        .unwrap();
        let mut project = Project::<weir_jobfile::IntKey, Projected<weir_jobfile::IntKey, 3>>::new(
            Arc::from([0]),
            Some(1),
            Arc::from([0, 1, 2]),
            Some(LocalTop { by: 2, size: 10 }),
        );
        let mut out = Output::new();
        project.on_batch(&mut vec![batch], &mut out).unwrap();
        let kept: Vec<i64> = out.drain().map(|p| p.time).collect();
        assert_eq!(kept, vec![3, 4, 9, 12]);
    }
}

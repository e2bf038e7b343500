//! Checks the graph of a [`JobSpec`]: stream references, cycles, schemas flowing
//! from sources through operators to sinks, expressions and aggregates.

use crate::aggregate::Aggregate;
use crate::diagnostic::Problems;
use crate::expr::Expr;
use crate::registry::{BoundFunction, Registry};
use crate::row::{Field, FieldType, Schema};
use crate::spec::*;
use crate::yaml::Pos;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// A validated job: streams in an order where every input comes first, each with
/// its compiled step and output schema.
#[derive(Debug)]
pub struct JobPlan {
    /// The job file as read.
    pub spec: JobSpec,
    /// Sources and operators, inputs before readers.
    pub streams: Vec<PlannedStream>,
    /// The sinks.
    pub sinks: Vec<PlannedSink>,
}

/// One source or operator of a [`JobPlan`].
#[derive(Debug)]
pub struct PlannedStream {
    /// Name, uid, parallelism.
    pub node: NodeSpec,
    /// Input stream names.
    pub inputs: Vec<String>,
    /// What it computes.
    pub step: Step,
    /// The schema of its rows.
    pub schema: Schema,
}

/// A window of a [`JobPlan`].
#[derive(Clone, Debug)]
pub struct WindowPlan {
    /// Its shape.
    pub shape: WindowShape,
    /// Allowed lateness.
    pub allowed_lateness: Duration,
    /// How long a window's state is kept after its end (at least the allowed
    /// lateness).
    pub retention: Duration,
    /// Whether it aggregates in two phases (before and after the exchange).
    pub pre_aggregate: bool,
    /// The aggregates, in output order (after the key fields, `window_start` and
    /// `window_end`).
    pub aggregates: Vec<Aggregate>,
    /// Instead of aggregates: which rows of each key and window are kept (output:
    /// `window_start`, `window_end`, the input's fields, then the rank if named).
    pub top: Option<TopPlan>,
}

/// What a `top` keeps, as positions in its input: the rows ranked `n` or better by
/// `order` ([`TopSpec`] checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopPlan {
    /// The fields compared and whether largest first.
    pub order: Vec<(usize, bool)>,
    /// The last rank kept.
    pub n: usize,
    /// How ranks are numbered.
    pub rank: RankKind,
    /// Whether each row gets its rank appended (an int field).
    pub rank_field: bool,
    /// The `top` operator's fields besides `window_end` whose values are ranked
    /// apart.
    pub partition: Vec<usize>,
}

impl TopPlan {
    /// The field whose largest values are kept, ties included, if that is all this
    /// top does (window Top-1, which may drop rows early).
    pub fn largest(&self) -> Option<usize> {
        match self.order.as_slice() {
            [(by, true)]
                if self.n == 1
                    && self.rank != RankKind::RowNumber
                    && !self.rank_field
                    && self.partition.is_empty() =>
            {
                Some(*by)
            }
            _ => None,
        }
    }
}

/// What a [`PlannedStream`] computes.
pub enum Step {
    /// Reads a source; then appends its computed fields, each evaluated on the
    /// rows read and the fields computed before it.
    Source(Box<SourceSpec>, Vec<Expr>),
    /// Keeps rows where the bool expression holds.
    Filter(Expr),
    /// One expression per output field.
    Map(Vec<Expr>),
    /// Keys by these input fields (read only by windows).
    KeyBy(Vec<usize>),
    /// Aggregates windows of its key_by input.
    Window(WindowPlan),
    /// Merges its inputs.
    Union,
    /// A user-defined function bound to the input schema.
    Udf(BoundFunction),
    /// Joins its two key_by inputs.
    Join(JoinPlan),
    /// Per `window_end` of its input (a window's output) and partition, the rows
    /// `top` keeps.
    Top {
        /// What it keeps.
        top: TopPlan,
        /// The input's `window_end` field (its event time).
        window_end: usize,
    },
}

/// A join of a [`JobPlan`]: output rows are the key fields, `window_start` and
/// `window_end` (window joins), the left row's other fields, the right row's other
/// fields, and `event_time` (interval joins: the later of the two rows' times).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinPlan {
    /// Window or interval.
    pub kind: JoinKind,
    /// The left input's fields after its keys, in output order.
    pub left_fields: Vec<usize>,
    /// The right input's fields after its keys, in output order.
    pub right_fields: Vec<usize>,
    /// The event-time field of the left and the right input.
    pub event_time: (Option<usize>, Option<usize>),
}

/// How a join pairs rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// Rows of equal key in the same window.
    Window(WindowShape),
    /// Right rows within `[left time + lower, left time + upper]` (ms).
    Interval {
        /// Lower bound, ms.
        lower: i64,
        /// Upper bound, ms.
        upper: i64,
    },
    /// The right input is a table in broadcast state, by key (the latest row of a
    /// key replaces the one before); each left row joins the row of its key when
    /// it comes. The output's event time is the left row's.
    Broadcast,
    /// The right input is a versioned table: each left row joins the row of its
    /// key valid at the left row's event time, which is the output's.
    Temporal {
        /// How long versions are kept behind the watermark, ms.
        retention: i64,
        /// The table rows' bool field that marks a deletion.
        deleted: Option<usize>,
    },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Source(s, computed) => f
                .debug_tuple("Source")
                .field(&s.kind)
                .field(computed)
                .finish(),
            Step::Filter(e) => f.debug_tuple("Filter").field(e).finish(),
            Step::Map(e) => f.debug_tuple("Map").field(e).finish(),
            Step::KeyBy(k) => f.debug_tuple("KeyBy").field(k).finish(),
            Step::Window(w) => f.debug_tuple("Window").field(w).finish(),
            Step::Union => f.write_str("Union"),
            Step::Udf(_) => f.write_str("Udf"),
            Step::Join(j) => f.debug_tuple("Join").field(j).finish(),
            Step::Top { top, window_end } => f
                .debug_struct("Top")
                .field("top", top)
                .field("window_end", window_end)
                .finish(),
        }
    }
}

/// One sink of a [`JobPlan`].
#[derive(Debug)]
pub struct PlannedSink {
    /// The sink as read.
    pub spec: SinkSpec,
    /// The schema of the rows it writes.
    pub schema: Schema,
    /// The Kafka record key field, if any.
    pub key: Option<usize>,
    /// The bool field that makes a row a tombstone of its key, if any.
    pub deleted: Option<usize>,
}

fn fields(list: &[(&str, FieldType)]) -> Schema {
    Schema::new(list.iter().copied())
}

/// The fields of a source's rows (before event time is set).
pub fn source_schema(kind: &SourceKind) -> Schema {
    use FieldType::*;
    let bid = [
        ("auction", Int),
        ("bidder", Int),
        ("price", Int),
        ("channel", String),
        ("url", String),
        ("date_time", Timestamp),
        ("extra", String),
    ];
    match kind {
        SourceKind::Bids { .. }
        | SourceKind::Nexmark {
            event: NexmarkEvent::Bid,
            ..
        } => fields(&bid),
        SourceKind::Nexmark {
            event: NexmarkEvent::Auction,
            ..
        } => fields(&[
            ("id", Int),
            ("item_name", String),
            ("description", String),
            ("initial_bid", Int),
            ("reserve", Int),
            ("date_time", Timestamp),
            ("expires", Timestamp),
            ("seller", Int),
            ("category", Int),
            ("extra", String),
        ]),
        SourceKind::Nexmark {
            event: NexmarkEvent::Person,
            ..
        } => fields(&[
            ("id", Int),
            ("name", String),
            ("email_address", String),
            ("credit_card", String),
            ("city", String),
            ("state", String),
            ("date_time", Timestamp),
            ("extra", String),
        ]),
        SourceKind::Sequence { .. } => fields(&[("value", Int)]),
        SourceKind::Kafka {
            format: KafkaFormat::Text,
            ..
        } => fields(&[("value", String)]),
        SourceKind::Kafka {
            format: KafkaFormat::Json(list),
            upsert: Some(upsert),
            ..
        } => Schema::new(
            list.iter()
                .map(|(n, t)| (n.as_str(), *t))
                .chain([(upsert.deleted.value.as_str(), FieldType::Bool)]),
        ),
        SourceKind::Kafka {
            format: KafkaFormat::Json(list),
            ..
        }
        | SourceKind::File { schema: list, .. } => {
            Schema::new(list.iter().map(|(n, t)| (n.as_str(), *t)))
        }
    }
}

/// Reports an `upsert:` whose key is not a field of the schema read, or whose
/// deletion field is one.
fn check_upsert(p: &mut Problems, list: &[(String, FieldType)], upsert: &UpsertSpec) {
    let names = || {
        list.iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !list.iter().any(|(n, _)| *n == upsert.key.value) {
        p.add(
            upsert.key.at,
            &upsert.key.path,
            format!(
                "unknown field `{}`: expected one of the schema's fields {}",
                upsert.key.value,
                names()
            ),
        );
    }
    if list.iter().any(|(n, _)| *n == upsert.deleted.value) {
        p.add(
            upsert.deleted.at,
            &upsert.deleted.path,
            format!(
                "`{}` is already a field of the schema: expected a new name for the field that marks tombstones",
                upsert.deleted.value
            ),
        );
    }
}

fn expr_error(p: &mut Problems, source: &ExprSource, offset: usize, message: &str) {
    let at = if source.one_line {
        source.at.right(offset)
    } else {
        source.at
    };
    p.add(
        at,
        &source.path,
        format!(
            "in expression `{}` at character {}: {message}",
            source.text,
            offset + 1
        ),
    );
}

fn compile(p: &mut Problems, source: &ExprSource, schema: &Schema) -> Option<Expr> {
    match Expr::compile(&source.text, schema) {
        Ok(e) => Some(e),
        Err(e) => {
            expr_error(p, source, e.offset, &e.message);
            None
        }
    }
}

enum Entry<'a> {
    Source(&'a SourceSpec),
    Operator(&'a OperatorSpec),
}

impl<'a> Entry<'a> {
    fn node(&self) -> &'a NodeSpec {
        match self {
            Entry::Source(s) => &s.node,
            Entry::Operator(o) => &o.node,
        }
    }
}

/// Checks `spec`'s graph and derives every stream's schema.
pub(crate) fn plan(spec: JobSpec, registry: &Registry, p: &mut Problems) -> JobPlan {
    let mut entries: BTreeMap<&str, Entry<'_>> = BTreeMap::new();
    let all = spec
        .sources
        .iter()
        .map(Entry::Source)
        .chain(spec.operators.iter().map(Entry::Operator));
    for entry in all {
        let name = &entry.node().name;
        match entries.get(name.value.as_str()) {
            Some(first) => p.add(
                name.at,
                &name.path,
                format!(
                    "stream `{}` is defined twice (first at line {}): expected unique names",
                    name.value,
                    first.node().name.at.line
                ),
            ),
            None => {
                entries.insert(&name.value, entry);
            }
        }
    }
    let unusable: std::collections::HashSet<String> = p.unusable.iter().cloned().collect();
    let known = |name: &str| entries.contains_key(name) || unusable.contains(name);
    let defined = || {
        let mut names: Vec<&str> = entries
            .keys()
            .copied()
            .chain(unusable.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.join(", ")
    };
    for op in &spec.operators {
        for input in &op.inputs {
            if !known(&input.value) {
                p.add(
                    input.at,
                    &input.path,
                    format!(
                        "undefined stream `{}`: expected one of {}",
                        input.value,
                        defined()
                    ),
                );
            }
        }
        let count = op.inputs.len();
        match op.kind {
            OperatorKind::Union if count < 2 => p.add(
                op.node.at,
                &op.node.path,
                format!("a union needs at least two `inputs`, found {count}"),
            ),
            OperatorKind::Union => {}
            OperatorKind::WindowJoin { .. }
            | OperatorKind::IntervalJoin { .. }
            | OperatorKind::BroadcastJoin
            | OperatorKind::TemporalJoin { .. }
                if count != 2 =>
            {
                p.add(
                    op.node.at,
                    &op.node.path,
                    format!("a join reads two keyed streams: expected `inputs: [LEFT, RIGHT]`, found {count}"),
                )
            }
            OperatorKind::WindowJoin { .. }
            | OperatorKind::IntervalJoin { .. }
            | OperatorKind::BroadcastJoin
            | OperatorKind::TemporalJoin { .. } => {}
            _ if count > 1 => p.add(
                op.inputs[1].at,
                &op.inputs[1].path,
                format!("this operator reads one input, found {count}: use a union first"),
            ),
            _ => {}
        }
        if matches!(op.kind, OperatorKind::KeyBy { .. })
            && (op.node.uid.is_some() || op.node.parallelism.is_some())
        {
            p.add(op.node.at, &op.node.path, "key_by is not an operator of its own: expected `uid` and `parallelism` on the window that reads it");
        }
    }
    let mut sinks_names: HashMap<&str, Pos> = HashMap::new();
    for sink in &spec.sinks {
        if let Some(stream) = entries.get(sink.node.name.value.as_str()) {
            p.add(
                sink.node.name.at,
                &sink.node.name.path,
                format!(
                    "sink `{}` has the name of the stream defined at line {}: a name is also the uid of its state in checkpoints, so expected names unique across sources, operators and sinks",
                    sink.node.name.value,
                    stream.node().name.at.line
                ),
            );
        }
        if let Some(first) = sinks_names.insert(&sink.node.name.value, sink.node.name.at) {
            p.add(
                sink.node.name.at,
                &sink.node.name.path,
                format!(
                    "sink `{}` is defined twice (first at line {}): expected unique names",
                    sink.node.name.value, first.line
                ),
            );
        }
        if !known(&sink.input.value) {
            p.add(
                sink.input.at,
                &sink.input.path,
                format!(
                    "undefined stream `{}`: expected one of {}",
                    sink.input.value,
                    defined()
                ),
            );
        }
    }

    // Order the operators so inputs come first; what cannot be ordered is a cycle.
    let operator_inputs = |op: &OperatorSpec| -> Vec<String> {
        op.inputs
            .iter()
            .filter(|i| matches!(entries.get(i.value.as_str()), Some(Entry::Operator(_))))
            .map(|i| i.value.clone())
            .collect()
    };
    let mut order: Vec<&OperatorSpec> = Vec::new();
    let mut placed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut pending: Vec<&OperatorSpec> = spec
        .operators
        .iter()
        .filter(|op| matches!(entries.get(op.node.name.value.as_str()), Some(Entry::Operator(o)) if std::ptr::eq(*o, *op)))
        .collect();
    loop {
        let before = pending.len();
        pending.retain(|op| {
            if operator_inputs(op).iter().all(|i| placed.contains(i)) {
                placed.insert(op.node.name.value.clone());
                order.push(op);
                false
            } else {
                true
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for op in &pending {
        let mut path = vec![op.node.name.value.clone()];
        let mut current = *op;
        while let Some(next) = operator_inputs(current)
            .into_iter()
            .find(|i| !placed.contains(i))
            .and_then(|i| spec.operators.iter().find(|o| o.node.name.value == i))
        {
            let seen = path.contains(&next.node.name.value);
            path.push(next.node.name.value.clone());
            if seen || path.len() > spec.operators.len() + 1 {
                break;
            }
            current = next;
        }
        if path.len() < 2 || path.last() != path.first() {
            continue; // downstream of a cycle, not on it
        }
        p.add(
            op.node.name.at,
            &op.node.name.path,
            format!(
                "stream `{}` is part of a cycle ({}): expected the operators to form a DAG",
                op.node.name.value,
                path.join(" ← ")
            ),
        );
    }

    let mut schemas: HashMap<String, Schema> = HashMap::new();
    let mut key_by: HashMap<String, Vec<usize>> = HashMap::new();
    let mut streams = Vec::new();
    for source in &spec.sources {
        if !matches!(entries.get(source.node.name.value.as_str()), Some(Entry::Source(s)) if std::ptr::eq(*s, source))
        {
            continue;
        }
        let mut schema = source_schema(&source.kind);
        if let SourceKind::Kafka {
            format: KafkaFormat::Json(list),
            upsert: Some(upsert),
            ..
        } = &source.kind
        {
            check_upsert(p, list, upsert);
        }
        let mut computed = Vec::new();
        for (name, text) in &source.computed {
            let Some(expr) = compile(p, text, &schema) else {
                continue;
            };
            if schema.index_of(name).is_some() {
                p.add(
                    text.at,
                    &text.path,
                    format!("computed field `{name}` is already a field of the source: expected a new name"),
                );
                continue;
            }
            let mut fields: Vec<(String, FieldType)> = schema
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.ty))
                .collect();
            fields.push((name.clone(), expr.ty()));
            schema = Schema::new(fields.iter().map(|(n, t)| (n.as_str(), *t)));
            computed.push(expr);
        }
        if let Some(ts) = &source.timestamp {
            match schema.index_of(&ts.value) {
                Some(i) if matches!(schema.fields[i].ty, FieldType::Int | FieldType::Timestamp) => {
                    schema.event_time = Some(i)
                }
                Some(i) => p.add(
                    ts.at,
                    &ts.path,
                    format!(
                        "event-time field `{}` is a {}: expected an int or timestamp field",
                        ts.value, schema.fields[i].ty
                    ),
                ),
                None => p.add(
                    ts.at,
                    &ts.path,
                    format!(
                        "unknown field `{}`: expected one of {}",
                        ts.value,
                        schema.names()
                    ),
                ),
            }
        }
        schemas.insert(source.node.name.value.clone(), schema.clone());
        streams.push(PlannedStream {
            node: source.node.clone(),
            inputs: Vec::new(),
            step: Step::Source(Box::new(source.clone()), computed),
            schema,
        });
    }
    for op in order {
        let inputs: Vec<&Schema> = op
            .inputs
            .iter()
            .filter_map(|i| schemas.get(&i.value))
            .collect();
        if inputs.len() != op.inputs.len() || inputs.is_empty() {
            continue;
        }
        let reads_keyed = matches!(
            op.kind,
            OperatorKind::Window { .. }
                | OperatorKind::WindowJoin { .. }
                | OperatorKind::IntervalJoin { .. }
                | OperatorKind::BroadcastJoin
                | OperatorKind::TemporalJoin { .. }
        );
        for input in &op.inputs {
            if key_by.contains_key(&input.value) && !reads_keyed {
                p.add(
                    input.at,
                    &input.path,
                    format!(
                        "`{}` is a key_by: expected it to be read by a window",
                        input.value
                    ),
                );
            }
        }
        let input = inputs[0].clone();
        let planned = match &op.kind {
            OperatorKind::Filter { condition } => compile(p, condition, &input).and_then(|e| {
                if e.ty() != FieldType::Bool {
                    expr_error(
                        p,
                        condition,
                        0,
                        &format!("a filter condition must be a bool, found {}", e.ty()),
                    );
                    return None;
                }
                Some((Step::Filter(e), input.clone()))
            }),
            OperatorKind::Map { fields } => {
                let compiled: Vec<Option<Expr>> =
                    fields.iter().map(|(_, e)| compile(p, e, &input)).collect();
                compiled
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(|exprs| {
                        let mut schema = Schema::new(
                            fields
                                .iter()
                                .zip(&exprs)
                                .map(|((n, _), e)| (n.as_str(), e.ty())),
                        );
                        schema.event_time = input.event_time.and_then(|t| {
                            let name = &input.fields[t].name;
                            fields
                                .iter()
                                .zip(&exprs)
                                .position(|((n, _), e)| n == name && e.as_field() == Some(t))
                        });
                        (Step::Map(exprs), schema)
                    })
            }
            OperatorKind::KeyBy { keys } => {
                let indices: Vec<Option<usize>> = keys
                    .iter()
                    .map(|k| {
                        let i = input.index_of(&k.value);
                        if i.is_none() {
                            p.add(
                                k.at,
                                &k.path,
                                format!(
                                    "unknown field `{}`: expected one of {}",
                                    k.value,
                                    input.names()
                                ),
                            );
                        }
                        i
                    })
                    .collect();
                let indices: Option<Vec<usize>> = indices.into_iter().collect();
                indices.map(|indices| {
                    key_by.insert(op.node.name.value.clone(), indices.clone());
                    (Step::KeyBy(indices), input.clone())
                })
            }
            OperatorKind::Window {
                shape,
                shape_at,
                aggregates,
                top,
                allowed_lateness,
                retention,
                pre_aggregate,
            } => {
                let planned = match top {
                    Some(top) => window_top(
                        p,
                        op,
                        &key_by,
                        &input,
                        *shape,
                        shape_at,
                        top,
                        *allowed_lateness,
                    ),
                    None => window(
                        p,
                        op,
                        &key_by,
                        &input,
                        *shape,
                        shape_at,
                        aggregates,
                        *allowed_lateness,
                    ),
                };
                if *pre_aggregate && !shape.pre_aggregates() {
                    p.add(
                        shape_at.at,
                        &shape_at.path,
                        format!(
                            "pre_aggregate with a {shape:?} window: expected a tumbling window, or a hopping window whose size is a multiple of its slide"
                        ),
                    );
                }
                planned.map(|(step, schema)| match step {
                    Step::Window(window) => (
                        Step::Window(WindowPlan {
                            pre_aggregate: *pre_aggregate,
                            retention: *retention,
                            ..window
                        }),
                        schema,
                    ),
                    step => (step, schema),
                })
            }
            OperatorKind::Top { top: spec } => top(p, &input, spec),
            OperatorKind::Union => {
                let mismatch = op
                    .inputs
                    .iter()
                    .zip(&inputs)
                    .skip(1)
                    .find(|(_, s)| s.fields != input.fields);
                if let Some((name, schema)) = mismatch {
                    let describe = |s: &Schema| {
                        s.fields
                            .iter()
                            .map(|f| format!("{} {}", f.name, f.ty))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    p.add(
                        name.at,
                        &name.path,
                        format!(
                            "union inputs must have the same fields: `{}` has ({}) but `{}` has ({})",
                            op.inputs[0].value,
                            describe(&input),
                            name.value,
                            describe(schema)
                        ),
                    );
                    None
                } else {
                    let mut schema = input.clone();
                    if inputs.iter().any(|s| s.event_time != input.event_time) {
                        schema.event_time = None;
                    }
                    Some((Step::Union, schema))
                }
            }
            OperatorKind::WindowJoin { shape } => {
                join(p, op, &key_by, &inputs, JoinKind::Window(*shape))
            }
            OperatorKind::BroadcastJoin => join(p, op, &key_by, &inputs, JoinKind::Broadcast),
            OperatorKind::TemporalJoin { retention, deleted } => {
                if inputs.iter().any(|s| s.event_time.is_none()) {
                    p.add(
                        op.node.at,
                        &op.node.path,
                        "a temporal join needs event time on both inputs: expected `timestamp:` on their sources, kept through maps as `FIELD: FIELD`",
                    );
                }
                let table = inputs.get(1).copied();
                let deleted = match (deleted, table) {
                    (Some(name), Some(table)) => match table.index_of(&name.value) {
                        Some(i) if table.fields[i].ty == FieldType::Bool => Some(Some(i)),
                        Some(i) => {
                            p.add(
                                name.at,
                                &name.path,
                                format!(
                                    "`deleted` names a bool field of the table's rows: `{}` is {}",
                                    name.value, table.fields[i].ty
                                ),
                            );
                            None
                        }
                        None => {
                            p.add(
                                name.at,
                                &name.path,
                                format!(
                                    "`deleted` names a bool field of the table's rows: `{}` has no field `{}`",
                                    op.inputs[1].value, name.value
                                ),
                            );
                            None
                        }
                    },
                    _ => Some(None),
                };
                deleted.and_then(|deleted| {
                    join(
                        p,
                        op,
                        &key_by,
                        &inputs,
                        JoinKind::Temporal {
                            retention: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
                            deleted,
                        },
                    )
                })
            }
            OperatorKind::IntervalJoin {
                lower,
                upper,
                between_at,
            } => {
                if inputs.iter().any(|s| s.event_time.is_none()) {
                    p.add(
                        between_at.at,
                        &between_at.path,
                        "an interval join needs event time on both inputs: expected `timestamp:` on their sources, kept through maps as `FIELD: FIELD`",
                    );
                }
                join(
                    p,
                    op,
                    &key_by,
                    &inputs,
                    JoinKind::Interval {
                        lower: *lower,
                        upper: *upper,
                    },
                )
            }
            OperatorKind::Udf { function } => match registry.get(&function.value) {
                None => {
                    let known = registry.names();
                    p.add(
                        function.at,
                        &function.path,
                        if known.is_empty() {
                            format!("unknown function `{}`: no user-defined functions are registered in this program", function.value)
                        } else {
                            format!("unknown function `{}`: expected one of {known}", function.value)
                        },
                    );
                    None
                }
                Some(udf) => match (udf.bind)(&input) {
                    Err(message) => {
                        p.add(
                            function.at,
                            &function.path,
                            format!(
                                "function `{}` cannot read this stream: {message}",
                                function.value
                            ),
                        );
                        None
                    }
                    Ok(f) => {
                        let mut schema = Schema {
                            fields: udf.output.clone(),
                            event_time: None,
                        };
                        schema.event_time = input
                            .event_time
                            .and_then(|t| schema.index_of(&input.fields[t].name));
                        Some((Step::Udf(f), schema))
                    }
                },
            },
        };
        if let Some((step, schema)) = planned {
            schemas.insert(op.node.name.value.clone(), schema.clone());
            streams.push(PlannedStream {
                node: op.node.clone(),
                inputs: op.inputs.iter().map(|i| i.value.clone()).collect(),
                step,
                schema,
            });
        }
    }
    let mut sinks = Vec::new();
    for sink in &spec.sinks {
        let Some(schema) = schemas.get(&sink.input.value) else {
            continue;
        };
        if key_by.contains_key(&sink.input.value) {
            p.add(
                sink.input.at,
                &sink.input.path,
                format!(
                    "`{}` is a key_by: expected it to be read by a window",
                    sink.input.value
                ),
            );
        }
        if let SinkKind::Kafka {
            deleted: Some(d), ..
        } = &sink.kind
        {
            match schema.index_of(&d.value) {
                Some(i) if schema.fields[i].ty == FieldType::Bool => {}
                Some(i) => p.add(
                    d.at,
                    &d.path,
                    format!(
                        "`{}` is of type {}: expected a bool field, true for a tombstone",
                        d.value, schema.fields[i].ty
                    ),
                ),
                None => p.add(
                    d.at,
                    &d.path,
                    format!(
                        "unknown field `{}`: expected one of {}",
                        d.value,
                        schema.names()
                    ),
                ),
            }
        }
        let key = match &sink.kind {
            SinkKind::Kafka { key: Some(k), .. } => match schema.index_of(&k.value) {
                Some(i) => Some(i),
                None => {
                    p.add(
                        k.at,
                        &k.path,
                        format!(
                            "unknown field `{}`: expected one of {}",
                            k.value,
                            schema.names()
                        ),
                    );
                    None
                }
            },
            _ => None,
        };
        let deleted = match &sink.kind {
            SinkKind::Kafka {
                deleted: Some(d), ..
            } => schema.index_of(&d.value),
            _ => None,
        };
        sinks.push(PlannedSink {
            spec: sink.clone(),
            schema: schema.clone(),
            key,
            deleted,
        });
    }
    JobPlan {
        spec,
        streams,
        sinks,
    }
}

/// Plans a join of `op`'s two key_by inputs with equal key types.
fn join(
    p: &mut Problems,
    op: &OperatorSpec,
    key_by: &HashMap<String, Vec<usize>>,
    inputs: &[&Schema],
    kind: JoinKind,
) -> Option<(Step, Schema)> {
    let mut keys = Vec::new();
    for input in &op.inputs {
        match key_by.get(&input.value) {
            Some(k) => keys.push(k),
            None => p.add(
                input.at,
                &input.path,
                format!(
                    "a join reads keyed streams: expected `{}` to be a key_by",
                    input.value
                ),
            ),
        }
    }
    let ([left_keys, right_keys], [left, right]) = (keys.as_slice(), inputs) else {
        return None;
    };
    let type_list = |schema: &Schema, keys: &[usize]| {
        keys.iter()
            .map(|&k| format!("{} {}", schema.fields[k].name, schema.fields[k].ty))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let left_types: Vec<FieldType> = left_keys.iter().map(|&k| left.fields[k].ty).collect();
    let right_types: Vec<FieldType> = right_keys.iter().map(|&k| right.fields[k].ty).collect();
    if left_types != right_types {
        p.add(
            op.inputs[1].at,
            &op.inputs[1].path,
            format!(
                "join keys must have the same types: `{}` is keyed by ({}) but `{}` by ({})",
                op.inputs[0].value,
                type_list(left, left_keys),
                op.inputs[1].value,
                type_list(right, right_keys)
            ),
        );
        return None;
    }
    let mut fields: Vec<Field> = left_keys.iter().map(|&k| left.fields[k].clone()).collect();
    if matches!(kind, JoinKind::Window(_)) {
        if left.event_time.is_none() || right.event_time.is_none() {
            p.add(
                op.node.at,
                &op.node.path,
                "a window join needs event time on both inputs: expected `timestamp:` on their sources, kept through maps as `FIELD: FIELD`",
            );
        }
        for name in ["window_start", "window_end"] {
            fields.push(Field {
                name: name.into(),
                ty: FieldType::Timestamp,
            });
        }
    }
    let rest = |keys: &[usize], schema: &Schema| -> Vec<usize> {
        (0..schema.fields.len())
            .filter(|i| !keys.contains(i))
            .collect()
    };
    let (left_fields, right_fields) = (rest(left_keys, left), rest(right_keys, right));
    fields.extend(left_fields.iter().map(|&i| left.fields[i].clone()));
    for &i in &right_fields {
        let field = &right.fields[i];
        let name = if fields.iter().any(|f| f.name == field.name) {
            format!("{}_{}", op.inputs[1].value, field.name)
        } else {
            field.name.clone()
        };
        fields.push(Field { name, ty: field.ty });
    }
    let event_time = match kind {
        JoinKind::Window(_) => Some(left_keys.len() + 1),
        // The left row's time, where its field lands in the output.
        JoinKind::Broadcast | JoinKind::Temporal { .. } => {
            left.event_time
                .and_then(|t| match left_keys.iter().position(|&k| k == t) {
                    Some(key) => Some(key),
                    None => left_fields
                        .iter()
                        .position(|&f| f == t)
                        .map(|f| left_keys.len() + f),
                })
        }
        JoinKind::Interval { .. } => {
            fields.push(Field {
                name: "event_time".into(),
                ty: FieldType::Timestamp,
            });
            Some(fields.len() - 1)
        }
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = fields.iter().find(|f| !seen.insert(f.name.as_str())) {
        p.add(
            op.node.at,
            &op.node.path,
            format!(
                "the joined rows would have two fields named `{}`: rename one with a map before the join",
                dup.name
            ),
        );
        return None;
    }
    Some((
        Step::Join(JoinPlan {
            kind,
            left_fields,
            right_fields,
            event_time: (left.event_time, right.event_time),
        }),
        Schema { fields, event_time },
    ))
}

#[allow(clippy::too_many_arguments)]
fn window(
    p: &mut Problems,
    op: &OperatorSpec,
    key_by: &HashMap<String, Vec<usize>>,
    input: &Schema,
    shape: WindowShape,
    shape_at: &Located<()>,
    aggregates: &[AggregateSpec],
    allowed_lateness: Duration,
) -> Option<(Step, Schema)> {
    let input_name = &op.inputs[0];
    let Some(keys) = key_by.get(&input_name.value) else {
        p.add(
            input_name.at,
            &input_name.path,
            format!(
                "a window reads a keyed stream: expected `{}` to be a key_by",
                input_name.value
            ),
        );
        return None;
    };
    if input.event_time.is_none() {
        p.add(
            shape_at.at,
            &shape_at.path,
            "windows need event time, but this stream has none: expected `timestamp:` on the source, kept through maps as `FIELD: FIELD`",
        );
    }
    if let WindowShape::Hopping { size, slide } = shape {
        if slide > size {
            p.add(
                shape_at.at,
                &shape_at.path,
                "a hopping window's `slide` must not exceed its `size`",
            );
        }
    }
    if matches!(shape, WindowShape::Sliding { .. }) && !allowed_lateness.is_zero() {
        p.add(
            shape_at.at,
            &shape_at.path,
            "a sliding window waits for late rows for its `grace`: expected no `allowed_lateness`",
        );
    }
    if let WindowShape::Cumulate { size, step } = shape {
        if step.as_millis() == 0 || size.as_millis() % step.as_millis() != 0 {
            p.add(
                shape_at.at,
                &shape_at.path,
                "a cumulate window's `size` must be a multiple of its `step`",
            );
        }
    }
    let mut fields: Vec<Field> = keys.iter().map(|&k| input.fields[k].clone()).collect();
    fields.push(Field {
        name: "window_start".into(),
        ty: FieldType::Timestamp,
    });
    fields.push(Field {
        name: "window_end".into(),
        ty: FieldType::Timestamp,
    });
    let mut planned = Vec::new();
    for agg in aggregates {
        let (field, ty) = match &agg.field {
            None => (None, FieldType::Int),
            Some(name) => match input.index_of(name) {
                None => {
                    p.add(
                        agg.at,
                        &agg.path,
                        format!("unknown field `{name}`: expected one of {}", input.names()),
                    );
                    continue;
                }
                Some(i) => (Some(i), input.fields[i].ty),
            },
        };
        let fits = match agg.kind {
            AggregateKind::Count | AggregateKind::CountDistinct => true,
            AggregateKind::Sum | AggregateKind::Avg => ty.is_numeric(),
            AggregateKind::Min | AggregateKind::Max => {
                ty.is_numeric() || ty == FieldType::Timestamp
            }
        };
        if !fits {
            p.add(
                agg.at,
                &agg.path,
                format!(
                    "cannot aggregate a {ty} field with {:?}: expected a number{}",
                    agg.kind,
                    if matches!(agg.kind, AggregateKind::Min | AggregateKind::Max) {
                        " or timestamp"
                    } else {
                        ""
                    }
                ),
            );
            continue;
        }
        if fields.iter().any(|f| f.name == agg.output) {
            p.add(
                agg.at,
                &agg.path,
                format!(
                    "output field `{}` clashes with a key or window field: expected another name",
                    agg.output
                ),
            );
            continue;
        }
        let aggregate = Aggregate {
            kind: agg.kind,
            field,
            input: ty,
        };
        fields.push(Field {
            name: agg.output.clone(),
            ty: aggregate.output_type(),
        });
        planned.push(aggregate);
    }
    if planned.len() != aggregates.len() || input.event_time.is_none() {
        return None;
    }
    let window_end = keys.len() + 1;
    Some((
        Step::Window(WindowPlan {
            shape,
            allowed_lateness,
            retention: Duration::ZERO,
            aggregates: planned,
            top: None,
            pre_aggregate: false,
        }),
        Schema {
            fields,
            event_time: Some(window_end),
        },
    ))
}

/// The field `name` of `input`, or a problem naming the fields there are.
fn field_of(p: &mut Problems, input: &Schema, name: &Located<String>) -> Option<usize> {
    let found = input.index_of(&name.value);
    if found.is_none() {
        p.add(
            name.at,
            &name.path,
            format!(
                "unknown field `{}`: expected one of {}",
                name.value,
                input.names()
            ),
        );
    }
    found
}

/// `spec` checked against `input`: its order and partition fields exist, and its
/// rank field (appended to the output `fields`) takes no name there is.
fn top_plan(
    p: &mut Problems,
    input: &Schema,
    spec: &TopSpec,
    fields: &mut Vec<Field>,
) -> Option<TopPlan> {
    let order: Option<Vec<(usize, bool)>> = spec
        .order
        .iter()
        .map(|s| field_of(p, input, &s.field).map(|i| (i, s.descending)))
        .collect();
    let partition: Option<Vec<usize>> = spec
        .partition
        .iter()
        .map(|f| field_of(p, input, f))
        .collect();
    if let Some(rank) = &spec.rank_field {
        if fields.iter().any(|f| f.name == rank.value) {
            p.add(
                rank.at,
                &rank.path,
                format!(
                    "rank field `{}` clashes with a field of the output: expected another name",
                    rank.value
                ),
            );
            return None;
        }
        fields.push(Field {
            name: rank.value.clone(),
            ty: FieldType::Int,
        });
    }
    Some(TopPlan {
        order: order?,
        n: spec.n,
        rank: spec.rank,
        rank_field: spec.rank_field.is_some(),
        partition: partition?,
    })
}

/// A window keeping the best rows of each key and window: `window_start`,
/// `window_end`, the input's fields, then the rank if named; event time
/// `window_end`.
#[allow(clippy::too_many_arguments)]
fn window_top(
    p: &mut Problems,
    op: &OperatorSpec,
    key_by: &HashMap<String, Vec<usize>>,
    input: &Schema,
    shape: WindowShape,
    shape_at: &Located<()>,
    spec: &TopSpec,
    allowed_lateness: Duration,
) -> Option<(Step, Schema)> {
    // The checks of an aggregating window (keyed input, event time, shape).
    let (_, _) = window(p, op, key_by, input, shape, shape_at, &[], allowed_lateness)?;
    if let Some(clash) = input
        .fields
        .iter()
        .find(|f| f.name == "window_start" || f.name == "window_end")
    {
        let at = &spec.order[0].field;
        p.add(
            at.at,
            &at.path,
            format!(
                "the input has a field `{}`, which a top window adds: expected a `top` operator for the rows of a window, or a map renaming it",
                clash.name
            ),
        );
        return None;
    }
    let mut fields = vec![
        Field {
            name: "window_start".into(),
            ty: FieldType::Timestamp,
        },
        Field {
            name: "window_end".into(),
            ty: FieldType::Timestamp,
        },
    ];
    fields.extend(input.fields.iter().cloned());
    let top = top_plan(p, input, spec, &mut fields)?;
    Some((
        Step::Window(WindowPlan {
            shape,
            allowed_lateness,
            retention: Duration::ZERO,
            aggregates: Vec::new(),
            top: Some(top),
            pre_aggregate: false,
        }),
        Schema {
            fields,
            event_time: Some(1),
        },
    ))
}

/// `top` after a window: its input must have `window_end` as event time.
fn top(p: &mut Problems, input: &Schema, spec: &TopSpec) -> Option<(Step, Schema)> {
    let window_end = input
        .index_of("window_end")
        .filter(|&i| input.fields[i].ty == FieldType::Timestamp && input.event_time == Some(i));
    let Some(window_end) = window_end else {
        let at = &spec.order[0].field;
        p.add(
            at.at,
            &at.path,
            format!(
                "`top` keeps rows per window of its input: expected the output of a window (event time `window_end`), found fields {}",
                input.names()
            ),
        );
        return None;
    };
    let mut fields = input.fields.clone();
    let top = top_plan(p, input, spec, &mut fields)?;
    Some((
        Step::Top { top, window_end },
        Schema {
            fields,
            event_time: input.event_time,
        },
    ))
}

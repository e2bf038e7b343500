//! Statements planned into the streams of a [`JobSpec`].
//!
//! A query becomes a [`Rel`]: a stream and the columns it exposes, each naming a
//! field of that stream (or a window column not yet computed). Projections of
//! columns are free (they only rename); a projection that computes becomes a
//! `map`, a `WHERE` a `filter`. A window TVF marks its rows as windowed; the
//! `GROUP BY window_start, window_end, keys…` over them becomes `key_by` + `window`
//! (the same aggregation is planned once however often it is written). A relation
//! joined with its own per-window maximum on the window and `x = max` or
//! `x >= max` (window Top-1, as in Nexmark q5 and q7) becomes a `top`. At the end
//! a `map` gives the sink table's column names, in order.

use crate::expr::{self, call_args, column_parts, error_at, Scope};
use crate::statements::{Stmt, TableDef};
use crate::SqlError;
use sqlparser::ast::{
    self, BinaryOperator, Expr, GroupByExpr, JoinConstraint, JoinOperator, Query, SelectItem,
    SetExpr, TableFactor,
};
mod connectors;
mod joins;
mod rank;

use std::collections::{HashMap, HashSet};
use std::time::Duration;
use weir_jobfile::yaml::Pos;
use weir_jobfile::*;

/// The buckets of an int key in the first step of a window Top-1.
const TOP_BUCKETS: i64 = 128;

/// What a column of a relation reads.
#[derive(Clone, Debug, PartialEq)]
enum ColRef {
    /// A field of the relation's stream.
    Field(String),
    /// A window TVF's `window_start`, before the window is computed.
    WindowStart,
    /// A window TVF's `window_end`, before the window is computed.
    WindowEnd,
    /// A window TVF's `window_time`.
    WindowTime,
    /// The maximum of a per-window maximum relation.
    Max,
    /// A `RANK()` over the windows, before its `WHERE rank <= 1`.
    Rank,
    /// A constant (the rank, 1, of a window Top-1's rows).
    Const(i64),
}

#[derive(Clone, Debug)]
struct Col {
    qualifier: Option<String>,
    name: String,
    r: ColRef,
}

#[derive(Clone, Debug)]
enum Shape {
    /// Rows.
    Rows,
    /// The rows of a window TVF: each in the windows of this shape.
    Windowed(WindowShape),
    /// A window aggregation's results (fields `window_start`, `window_end`).
    WindowResult,
    /// `SELECT MAX(field), window_start, window_end FROM base GROUP BY window_start,
    /// window_end`, not planned yet: a join with `base` makes it a `top`.
    MaxPerWindow { base: Box<Rel>, field: String },
    /// Per window (of this shape) of the relation's rows, the rows with the
    /// largest `field`, keyed by `key` for the first step; not planned yet, so that
    /// the rows carry only the columns read afterwards.
    TopPending {
        shape: WindowShape,
        field: String,
        key: String,
    },
    /// `base` with a `RANK() OVER (PARTITION BY window_start, window_end ORDER BY
    /// field DESC)` column, waiting for the `WHERE rank <= 1` that makes it a top.
    Ranked { base: Box<Rel>, field: String },
}

#[derive(Clone, Debug)]
struct Rel {
    stream: String,
    cols: Vec<Col>,
    shape: Shape,
}

impl Rel {
    fn qualified(mut self, qualifier: Option<&str>) -> Self {
        for c in &mut self.cols {
            c.qualifier = qualifier.map(str::to_string);
        }
        self
    }

    /// The column `parts` names.
    fn resolve(&self, parts: &[String]) -> Result<&Col, String> {
        let (qualifier, name) = match parts {
            [name] => (None, name),
            [q, name] => (Some(q), name),
            _ => {
                return Err(format!(
                    "`{}`: expected column or table.column",
                    parts.join(".")
                ))
            }
        };
        let matches = |exact: bool| {
            self.cols
                .iter()
                .filter(|c| {
                    let same = |a: &str, b: &str| {
                        if exact {
                            a == b
                        } else {
                            a.eq_ignore_ascii_case(b)
                        }
                    };
                    same(&c.name, name)
                        && qualifier
                            .is_none_or(|q| c.qualifier.as_deref().is_some_and(|cq| same(cq, q)))
                })
                .collect::<Vec<_>>()
        };
        let mut found = matches(true);
        if found.is_empty() {
            found = matches(false);
        }
        match found.as_slice() {
            [c] => Ok(c),
            [] => Err(format!(
                "unknown column `{}`: expected one of {}",
                parts.join("."),
                self.cols
                    .iter()
                    .map(|c| match &c.qualifier {
                        Some(q) => format!("{q}.{}", c.name),
                        None => c.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => Err(format!(
                "column `{}` is ambiguous: qualify it with its table",
                parts.join(".")
            )),
        }
    }
}

impl Scope for Rel {
    fn field(&self, parts: &[String]) -> Result<String, String> {
        match &self.resolve(parts)?.r {
            ColRef::Field(f) => Ok(f.clone()),
            _ => Err(format!(
                "`{}` is a window column of a window TVF: expected it only in GROUP BY \
                 window_start, window_end, … (a window aggregation) or in a per-window Top-1",
                parts.join(".")
            )),
        }
    }
}

/// Plans every statement into one job.
pub(crate) fn plan(name: &str, statements: &[Stmt]) -> Result<JobSpec, SqlError> {
    let mut planner = Planner {
        tables: HashMap::new(),
        views: HashMap::new(),
        planned_views: HashMap::new(),
        planned_tables: HashMap::new(),
        fields: HashMap::new(),
        int_fields: HashMap::new(),
        event_time: HashMap::new(),
        memo: HashMap::new(),
        names: HashSet::new(),
        idle_timeout: None,
        spec: JobSpec {
            name: name.to_string(),
            parallelism: 1,
            checkpoints: CheckpointSpec::default(),
            restart: RestartSpec::default(),
            state_backend: StateBackend::Heap,
            sources: Vec::new(),
            operators: Vec::new(),
            sinks: Vec::new(),
        },
        target: String::new(),
        at: Pos { line: 1, column: 1 },
    };
    let mut queries = 0;
    for statement in statements {
        match statement {
            Stmt::Set { key, value, at } => planner.set(key, value, *at)?,
            Stmt::CreateTable(table) => {
                if planner.tables.insert(table.name.clone(), table).is_some()
                    || planner.views.contains_key(&table.name)
                {
                    return Err(SqlError::at(
                        table.at,
                        format!("table `{}` is defined twice", table.name),
                    ));
                }
            }
            Stmt::CreateView { name, query, at } => {
                if planner.views.insert(name.clone(), (query, *at)).is_some()
                    || planner.tables.contains_key(name)
                {
                    return Err(SqlError::at(*at, format!("view `{name}` is defined twice")));
                }
            }
            Stmt::Insert { table, query, at } => {
                queries += 1;
                planner.insert(table, query, *at)?;
            }
            Stmt::Select { query, at } => {
                queries += 1;
                planner.select(query, *at, queries)?;
            }
        }
    }
    if queries == 0 {
        return Err(SqlError {
            line: 0,
            column: 0,
            message: "no INSERT INTO or SELECT: expected at least one query to run".into(),
        });
    }
    Ok(planner.spec)
}

struct Planner<'a> {
    tables: HashMap<String, &'a TableDef>,
    views: HashMap<String, (&'a Query, Pos)>,
    planned_views: HashMap<String, Rel>,
    planned_tables: HashMap<String, Rel>,
    /// Each stream's field names, in order.
    fields: HashMap<String, Vec<String>>,
    /// The fields of each stream known to be ints.
    int_fields: HashMap<String, HashSet<String>>,
    /// Each stream's event-time field.
    event_time: HashMap<String, String>,
    /// Window aggregations planned, by what they compute.
    memo: HashMap<String, String>,
    names: HashSet<String>,
    idle_timeout: Option<Duration>,
    spec: JobSpec,
    /// The sink table or view being planned: the prefix of stream names.
    target: String,
    /// The statement being planned.
    at: Pos,
}

/// A Flink duration option: `1s`, `1 s`, `500 ms`, `10 min`, or milliseconds.
fn flink_duration(text: &str) -> Option<Duration> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if let Ok(ms) = compact.parse::<u64>() {
        return Some(Duration::from_millis(ms));
    }
    let compact = compact
        .replace("millis", "ms")
        .replace("seconds", "s")
        .replace("second", "s")
        .replace("sec", "s")
        .replace("minutes", "min")
        .replace("minute", "min");
    parse_duration(&compact)
}

impl<'a> Planner<'a> {
    fn set(&mut self, key: &str, value: &str, at: Pos) -> Result<(), SqlError> {
        let bad = |expected: &str| {
            SqlError::at(at, format!("SET '{key}' = '{value}': expected {expected}"))
        };
        match key {
            "parallelism.default" => {
                self.spec.parallelism = value
                    .parse()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad("a positive number"))?
            }
            "execution.checkpointing.interval" => {
                self.spec.checkpoints.interval =
                    flink_duration(value).ok_or_else(|| bad("a duration such as 1s or 500 ms"))?
            }
            "execution.checkpointing.timeout" => {
                self.spec.checkpoints.timeout =
                    flink_duration(value).ok_or_else(|| bad("a duration such as 60s"))?
            }
            "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                self.spec.checkpoints.storage = value.to_string()
            }
            "state.checkpoints.num-retained" | "execution.checkpointing.num-retained" => {
                self.spec.checkpoints.retention = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("a positive number"))?
            }
            "state.backend.type" | "state.backend" => {
                self.spec.state_backend = match value {
                    "hashmap" | "heap" => StateBackend::Heap,
                    "rocksdb" => StateBackend::RocksDb,
                    _ => return Err(bad("hashmap or rocksdb")),
                }
            }
            "pipeline.name" => self.spec.name = value.to_string(),
            "table.exec.source.idle-timeout" => {
                self.idle_timeout =
                    Some(flink_duration(value).ok_or_else(|| bad("a duration such as 5s"))?)
            }
            "table.local-time-zone" => {
                if value != "UTC" {
                    return Err(bad("UTC (weir's timestamps are UTC milliseconds)"));
                }
            }
            _ => {
                return Err(SqlError::at(
                    at,
                    format!(
                        "unknown option '{key}': expected one of parallelism.default, \
                         execution.checkpointing.interval, execution.checkpointing.timeout, \
                         execution.checkpointing.dir (state.checkpoints.dir), \
                         state.checkpoints.num-retained, state.backend.type, pipeline.name, \
                         table.exec.source.idle-timeout, table.local-time-zone"
                    ),
                ))
            }
        }
        Ok(())
    }

    fn path(&self) -> String {
        if self.target.is_empty() {
            "sql".into()
        } else {
            format!("sql `{}`", self.target)
        }
    }

    fn node(&self, name: &str) -> NodeSpec {
        NodeSpec {
            name: Located {
                value: name.to_string(),
                at: self.at,
                path: self.path(),
            },
            uid: None,
            parallelism: None,
            at: self.at,
            path: self.path(),
        }
    }

    fn expr_source(&self, text: String) -> ExprSource {
        ExprSource {
            text,
            at: self.at,
            one_line: false,
            path: self.path(),
        }
    }

    /// A new stream name `target_kind` (numbered when taken): a plain identifier, so
    /// fields named after it (a join's `<input>_<field>`) can be read.
    fn fresh(&mut self, kind: &str) -> String {
        let base = if self.target.is_empty() {
            kind.to_string()
        } else {
            format!("{}_{kind}", self.target)
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn add_operator(
        &mut self,
        kind: &str,
        inputs: &[&str],
        operator: OperatorKind,
        fields: Vec<String>,
        event_time: Option<String>,
    ) -> String {
        let name = self.fresh(kind);
        let at = self.at;
        let path = self.path();
        self.spec.operators.push(OperatorSpec {
            node: self.node(&name),
            inputs: inputs
                .iter()
                .map(|i| Located {
                    value: i.to_string(),
                    at,
                    path: path.clone(),
                })
                .collect(),
            kind: operator,
        });
        self.fields.insert(name.clone(), fields);
        if let Some(t) = event_time {
            self.event_time.insert(name.clone(), t);
        }
        name
    }

    fn stream_fields(&self, stream: &str) -> Vec<String> {
        self.fields.get(stream).cloned().unwrap_or_default()
    }

    fn insert(&mut self, table: &str, query: &Query, at: Pos) -> Result<(), SqlError> {
        let Some(def) = self.tables.get(table).copied() else {
            return Err(SqlError::at(
                at,
                format!("INSERT INTO `{table}`: no such table: expected a table of CREATE TABLE"),
            ));
        };
        self.at = at;
        self.target = table.to_string();
        let rel = self.query(query)?;
        let columns: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
        if columns.len() != rel.cols.len() {
            return Err(SqlError::at(
                at,
                format!(
                    "INSERT INTO `{table}`: the query gives {} columns, the table has {} ({})",
                    rel.cols.len(),
                    columns.len(),
                    columns.join(", ")
                ),
            ));
        }
        let kind = self.sink_kind(def)?;
        let input = self.rename(rel, &columns)?;
        if self.spec.sinks.iter().any(|s| s.node.name.value == table) {
            return Err(SqlError::at(
                at,
                format!("a second INSERT INTO `{table}`: expected one INSERT per sink table (UNION ALL the queries)"),
            ));
        }
        self.names.insert(table.to_string());
        self.spec.sinks.push(SinkSpec {
            node: self.node(table),
            input: Located {
                value: input,
                at,
                path: self.path(),
            },
            kind,
        });
        Ok(())
    }

    fn select(&mut self, query: &Query, at: Pos, n: usize) -> Result<(), SqlError> {
        self.at = at;
        self.target = format!("select{n}");
        let rel = self.query(query)?;
        let names: Vec<String> = rel.cols.iter().map(|c| c.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let input = self.rename(rel, &names)?;
        let name = self.fresh("print");
        self.spec.sinks.push(SinkSpec {
            node: self.node(&name),
            input: Located {
                value: input,
                at,
                path: self.path(),
            },
            kind: SinkKind::Stdout,
        });
        Ok(())
    }

    /// `rel` as a stream whose fields are `names`, in order (a `map` unless it
    /// already is).
    fn rename(&mut self, rel: Rel, names: &[&str]) -> Result<String, SqlError> {
        let rel = self.materialize(rel)?;
        let mut fields = Vec::new();
        for (col, name) in rel.cols.iter().zip(names) {
            match &col.r {
                ColRef::Field(f) => fields.push((name.to_string(), f.clone())),
                ColRef::Const(v) => fields.push((name.to_string(), v.to_string())),
                _ => {
                    return Err(SqlError::at(
                        self.at,
                        format!(
                            "column `{}` is a window column of a window TVF: expected a window \
                             aggregation (GROUP BY window_start, window_end, …) to compute it",
                            col.name
                        ),
                    ))
                }
            }
        }
        let current = self.stream_fields(&rel.stream);
        let same = current.len() == fields.len()
            && current
                .iter()
                .zip(&fields)
                .all(|(c, (n, f))| c == n && c == f);
        if same {
            return Ok(rel.stream);
        }
        self.map(&rel.stream, fields)
    }

    /// A `map` of `input` to the fields `(name, expression)`.
    fn map(&mut self, input: &str, fields: Vec<(String, String)>) -> Result<String, SqlError> {
        let mut seen = HashSet::new();
        for (name, _) in &fields {
            if !seen.insert(name.as_str()) {
                return Err(SqlError::at(
                    self.at,
                    format!(
                        "two output columns are named `{name}`: expected distinct names (AS …)"
                    ),
                ));
            }
        }
        let event_time = self
            .event_time
            .get(input)
            .filter(|t| fields.iter().any(|(n, e)| n == *t && e == *t))
            .cloned();
        let names = fields.iter().map(|(n, _)| n.clone()).collect();
        let input_ints = self.int_fields.get(input);
        let ints: HashSet<String> = fields
            .iter()
            .filter(|(_, e)| input_ints.is_some_and(|ints| ints.contains(e)))
            .map(|(n, _)| n.clone())
            .collect();
        let fields = fields
            .into_iter()
            .map(|(n, e)| (n, self.expr_source(e)))
            .collect();
        let stream = self.add_operator(
            "map",
            &[input],
            OperatorKind::Map { fields },
            names,
            event_time,
        );
        self.int_fields.insert(stream.clone(), ints);
        Ok(stream)
    }

    fn query(&mut self, query: &Query) -> Result<Rel, SqlError> {
        let unsupported = |what: &str| {
            Err(SqlError::at(
                self.at,
                format!("{what} is not supported in a streaming query (docs/sql.md)"),
            ))
        };
        if query.with.is_some() {
            return unsupported("WITH (common table expressions)");
        }
        if query.order_by.is_some() {
            return unsupported("ORDER BY");
        }
        if query.limit_clause.is_some() || query.fetch.is_some() {
            return unsupported("LIMIT/FETCH");
        }
        match query.body.as_ref() {
            SetExpr::Select(select) => self.select_body(select),
            SetExpr::Query(inner) => self.query(inner),
            _ => unsupported("a set operation (UNION, EXCEPT, INTERSECT) or VALUES"),
        }
    }

    fn select_body(&mut self, select: &ast::Select) -> Result<Rel, SqlError> {
        if select.distinct.is_some() {
            return Err(SqlError::at(
                self.at,
                "SELECT DISTINCT is not supported: expected a window aggregation (GROUP BY window_start, window_end, …)",
            ));
        }
        let [from] = select.from.as_slice() else {
            return Err(SqlError::at(
                self.at,
                "expected one table in FROM (joins with JOIN … ON)",
            ));
        };
        let mut rel = self.factor(&from.relation)?;
        match from.joins.as_slice() {
            [] => {}
            [join] => {
                let right = self.factor(&join.relation)?;
                let (rel_now, right) = (self.pending_planned(rel)?, self.pending_planned(right)?);
                rel = rel_now;
                let on = match &join.join_operator {
                    JoinOperator::Join(JoinConstraint::On(on))
                    | JoinOperator::Inner(JoinConstraint::On(on)) => on,
                    other => {
                        return Err(SqlError::at(
                            self.at,
                            format!("{other:?}: expected an inner JOIN … ON"),
                        ))
                    }
                };
                rel = self.join(rel, right, on)?;
            }
            _ => {
                return Err(SqlError::at(
                    self.at,
                    "more than one JOIN in a SELECT is not supported: expected one",
                ))
            }
        }
        if let Some(condition) = &select.selection {
            rel = self.filter(rel, condition)?;
        }
        let grouped = match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
            GroupByExpr::All(_) => {
                return Err(SqlError::at(self.at, "GROUP BY ALL is not supported"))
            }
        };
        if grouped || select.projection.iter().any(is_aggregate_item) {
            let GroupByExpr::Expressions(group, _) = &select.group_by else {
                unreachable!("GROUP BY ALL was refused above")
            };
            return self.group(rel, group, &select.projection, select.having.as_ref());
        }
        if select.having.is_some() {
            return Err(SqlError::at(self.at, "HAVING without GROUP BY"));
        }
        self.project(rel, &select.projection)
    }

    fn factor(&mut self, factor: &TableFactor) -> Result<Rel, SqlError> {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let name = name.to_string();
                let rel = self.table(&name)?;
                let qualifier = alias.as_ref().map_or(name.clone(), |a| a.name.value.clone());
                Ok(rel.qualified(Some(&qualifier)))
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let rel = self.query(subquery)?;
                Ok(rel.qualified(alias.as_ref().map(|a| a.name.value.as_str())))
            }
            TableFactor::TableFunction { expr, alias } => {
                let rel = self.window_tvf(expr)?;
                Ok(rel.qualified(alias.as_ref().map(|a| a.name.value.as_str())))
            }
            other => Err(SqlError::at(
                self.at,
                format!("FROM {other} is not supported: expected a table, a view, a subquery or a window TVF"),
            )),
        }
    }

    /// A table (its source) or a view (its query), planned once.
    fn table(&mut self, name: &str) -> Result<Rel, SqlError> {
        if let Some(rel) = self
            .planned_views
            .get(name)
            .or_else(|| self.planned_tables.get(name))
        {
            return Ok(rel.clone());
        }
        if let Some(&(query, at)) = self.views.get(name) {
            let outer = (
                std::mem::replace(&mut self.target, name.to_string()),
                self.at,
            );
            self.at = at;
            let rel = self.query(query);
            (self.target, self.at) = outer;
            let rel = rel?;
            self.planned_views.insert(name.to_string(), rel.clone());
            return Ok(rel);
        }
        if let Some(&def) = self.tables.get(name) {
            let rel = self.source(def)?;
            self.planned_tables.insert(name.to_string(), rel.clone());
            return Ok(rel);
        }
        let mut known: Vec<&str> = self
            .tables
            .keys()
            .chain(self.views.keys())
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        let expected = if known.is_empty() {
            "a table of CREATE TABLE or a view of CREATE VIEW before the query (there are none)"
                .to_string()
        } else {
            format!("one of {}", known.join(", "))
        };
        Err(SqlError::at(
            self.at,
            format!("unknown table or view `{name}`: expected {expected}"),
        ))
    }

    fn filter(&mut self, rel: Rel, condition: &Expr) -> Result<Rel, SqlError> {
        if matches!(rel.shape, Shape::Ranked { .. }) {
            return self.rank_filter(rel, condition);
        }
        let rel = self.pending_planned(rel)?;
        if matches!(rel.shape, Shape::MaxPerWindow { .. }) {
            return Err(error_at(
                condition,
                "WHERE over a per-window maximum is not supported",
            ));
        }
        let text = expr::translate(condition, &rel)?;
        let fields = self.stream_fields(&rel.stream);
        let event_time = self.event_time.get(&rel.stream).cloned();
        let ints = self.int_fields.get(&rel.stream).cloned();
        let stream = self.add_operator(
            "filter",
            &[&rel.stream],
            OperatorKind::Filter {
                condition: self.expr_source(text),
            },
            fields,
            event_time,
        );
        if let Some(ints) = ints {
            self.int_fields.insert(stream.clone(), ints);
        }
        Ok(Rel { stream, ..rel })
    }

    fn project(&mut self, rel: Rel, items: &[SelectItem]) -> Result<Rel, SqlError> {
        if items.iter().any(rank::is_rank_item) {
            return self.rank_project(rel, items);
        }
        let computes = items.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                column_parts(e).is_none()
            }
            _ => false,
        });
        let rel = match rel.shape {
            Shape::MaxPerWindow { .. } => self.materialize(rel)?,
            Shape::TopPending { .. } if computes => self.materialize(rel)?,
            _ => rel,
        };
        // (column, expression text if it computes)
        let mut out: Vec<(Col, Option<String>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                SelectItem::Wildcard(_) => out.extend(rel.cols.iter().map(|c| (c.clone(), None))),
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = kind.to_string();
                    let cols: Vec<_> = rel
                        .cols
                        .iter()
                        .filter(|c| {
                            c.qualifier
                                .as_deref()
                                .is_some_and(|cq| cq.eq_ignore_ascii_case(&q))
                        })
                        .map(|c| (c.clone(), None))
                        .collect();
                    if cols.is_empty() {
                        return Err(SqlError::at(
                            self.at,
                            format!("`{q}.*`: no table `{q}` in FROM"),
                        ));
                    }
                    out.extend(cols);
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let alias = match item {
                        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                        _ => None,
                    };
                    if let Some(parts) = column_parts(e) {
                        let col = rel.resolve(&parts).map_err(|m| error_at(e, m))?;
                        out.push((
                            Col {
                                qualifier: None,
                                name: alias.unwrap_or_else(|| col.name.clone()),
                                r: col.r.clone(),
                            },
                            None,
                        ));
                    } else {
                        let text = expr::translate(e, &rel)?;
                        let name = alias.unwrap_or_else(|| format!("expr{i}"));
                        out.push((
                            Col {
                                qualifier: None,
                                name: name.clone(),
                                r: ColRef::Field(name),
                            },
                            Some(text),
                        ));
                    }
                }
                other => {
                    return Err(SqlError::at(
                        self.at,
                        format!("select item `{other}` is not supported"),
                    ))
                }
            }
        }
        if out.iter().all(|(_, computed)| computed.is_none()) {
            let cols = out.into_iter().map(|(c, _)| c).collect();
            return Ok(Rel { cols, ..rel });
        }
        if matches!(rel.shape, Shape::Windowed(_)) {
            return Err(SqlError::at(
                self.at,
                "computing columns of a window TVF's rows is not supported: expected the \
                 computation in a view before the window TVF",
            ));
        }
        let mut fields = Vec::new();
        for (col, computed) in &out {
            let expression = match (computed, &col.r) {
                (Some(text), _) => text.clone(),
                (None, ColRef::Field(f)) => f.clone(),
                (None, _) => {
                    return Err(SqlError::at(
                        self.at,
                        format!(
                            "`{}` is a window column: expected a window aggregation",
                            col.name
                        ),
                    ))
                }
            };
            fields.push((col.name.clone(), expression));
        }
        let stream = self.map(&rel.stream, fields)?;
        let cols = out
            .into_iter()
            .map(|(c, _)| Col {
                qualifier: None,
                r: ColRef::Field(c.name.clone()),
                name: c.name,
            })
            .collect();
        Ok(Rel {
            stream,
            cols,
            shape: Shape::Rows,
        })
    }

    /// `FROM TABLE(TUMBLE|HOP|SESSION(TABLE t, DESCRIPTOR(time), …))`.
    fn window_tvf(&mut self, e: &Expr) -> Result<Rel, SqlError> {
        let Expr::Function(f) = e else {
            return Err(error_at(e, "expected a window TVF: TUMBLE, HOP or SESSION"));
        };
        let (name, args) = call_args(f).map_err(|m| error_at(e, m))?;
        let Some(Expr::Function(table_arg)) = args.first() else {
            return Err(error_at(
                e,
                format!("{name}: expected TABLE name as the first argument"),
            ));
        };
        let (marker, table_args) = call_args(table_arg).map_err(|m| error_at(e, m))?;
        if marker != crate::dialect::TABLE_ARGUMENT.to_ascii_uppercase() {
            return Err(error_at(
                e,
                format!("{name}: expected TABLE name as the first argument"),
            ));
        }
        let table = column_parts(table_args[0]).unwrap_or_default().join(".");
        let rel = self.table(&table)?;
        if !matches!(rel.shape, Shape::Rows) {
            return Err(error_at(
                e,
                format!("{name}: `{table}` is already windowed or aggregated: expected rows"),
            ));
        }
        let time = match args.get(1) {
            Some(Expr::Function(d)) => {
                let (dname, dargs) = call_args(d).map_err(|m| error_at(e, m))?;
                match (dname.as_str(), dargs.as_slice()) {
                    ("DESCRIPTOR", [col]) => column_parts(col),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(time) = time else {
            return Err(error_at(
                e,
                format!("{name}: expected DESCRIPTOR(time column) as the second argument"),
            ));
        };
        let time_field = rel.field(&time).map_err(|m| error_at(e, m))?;
        let event_time = self.event_time.get(&rel.stream).cloned();
        if event_time.as_deref() != Some(time_field.as_str()) {
            return Err(error_at(
                e,
                format!(
                    "{name}: DESCRIPTOR({}) is not the event-time attribute of `{table}` ({}): \
                     expected the column of the table's WATERMARK",
                    time.join("."),
                    event_time
                        .as_deref()
                        .unwrap_or("none: the table has no WATERMARK")
                ),
            ));
        }
        let duration = |i: usize, what: &str| -> Result<Duration, SqlError> {
            let arg = args.get(i).ok_or_else(|| {
                error_at(
                    e,
                    format!("{name}: expected the {what} as argument {}", i + 1),
                )
            })?;
            expr::interval(arg).map_err(|m| error_at(arg, m))
        };
        let shape = match name.as_str() {
            "TUMBLE" if args.len() == 3 => WindowShape::Tumbling {
                size: duration(2, "size")?,
            },
            "HOP" if args.len() == 4 => WindowShape::Hopping {
                slide: duration(2, "slide")?,
                size: duration(3, "size")?,
            },
            "SESSION" if args.len() == 3 => WindowShape::Session {
                gap: duration(2, "gap")?,
            },
            "TUMBLE" | "HOP" | "SESSION" => {
                return Err(error_at(
                    e,
                    format!("{name}: wrong arguments: expected TUMBLE(TABLE t, DESCRIPTOR(ts), size), HOP(TABLE t, DESCRIPTOR(ts), slide, size) or SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), gap) (offsets are not supported)"),
                ))
            }
            other => {
                return Err(error_at(
                    e,
                    format!("window TVF {other} is not supported: expected TUMBLE, HOP or SESSION"),
                ))
            }
        };
        let mut cols = rel.cols.clone();
        for (n, r) in [
            ("window_start", ColRef::WindowStart),
            ("window_end", ColRef::WindowEnd),
            ("window_time", ColRef::WindowTime),
        ] {
            cols.push(Col {
                qualifier: None,
                name: n.into(),
                r,
            });
        }
        Ok(Rel {
            stream: rel.stream,
            cols,
            shape: Shape::Windowed(shape),
        })
    }

    fn group(
        &mut self,
        rel: Rel,
        group: &[Expr],
        items: &[SelectItem],
        having: Option<&Expr>,
    ) -> Result<Rel, SqlError> {
        let rel = self.pending_planned(rel)?;
        let mut refs = Vec::new();
        for g in group {
            let parts = column_parts(g).ok_or_else(|| {
                error_at(g, "GROUP BY an expression is not supported: expected columns (compute it in a view first)")
            })?;
            refs.push(rel.resolve(&parts).map_err(|m| error_at(g, m))?.r.clone());
        }
        let is_start = |r: &ColRef| {
            matches!(r, ColRef::WindowStart) || *r == ColRef::Field("window_start".into())
        };
        let is_end =
            |r: &ColRef| matches!(r, ColRef::WindowEnd) || *r == ColRef::Field("window_end".into());
        if !(refs.iter().any(is_start) && refs.iter().any(is_end)) {
            return Err(SqlError::at(
                self.at,
                "a GROUP BY without window_start and window_end gives an updating result, which \
                 weir SQL does not emit yet: expected a window aggregation over a window TVF \
                 (GROUP BY window_start, window_end, …)",
            ));
        }
        let keys: Vec<String> = refs
            .iter()
            .filter(|r| !is_start(r) && !is_end(r))
            .map(|r| match r {
                ColRef::Field(f) => Ok(f.clone()),
                _ => Err(SqlError::at(
                    self.at,
                    "GROUP BY window_time is not supported",
                )),
            })
            .collect::<Result<_, _>>()?;
        // Each select item: a grouped column or an aggregate.
        enum Item {
            Grouped(ColRef),
            Aggregate(AggregateKind, Option<String>),
        }
        let mut out = Vec::new();
        for item in items {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                other => {
                    return Err(SqlError::at(
                        self.at,
                        format!(
                            "`{other}` in an aggregation: expected grouped columns and aggregates"
                        ),
                    ))
                }
            };
            if let Some(parts) = column_parts(e) {
                let col = rel.resolve(&parts).map_err(|m| error_at(e, m))?;
                if !refs.contains(&col.r) {
                    return Err(error_at(
                        e,
                        format!(
                            "column `{}` is neither grouped nor aggregated",
                            parts.join(".")
                        ),
                    ));
                }
                out.push((
                    alias.unwrap_or_else(|| col.name.clone()),
                    Item::Grouped(col.r.clone()),
                ));
                continue;
            }
            let Expr::Function(f) = e else {
                return Err(error_at(e, "expected a grouped column or an aggregate (COUNT, SUM, MIN, MAX, AVG); compute expressions over the result in an outer query"));
            };
            let (name, args) = call_args(f).map_err(|m| error_at(e, m))?;
            let kind = match name.as_str() {
                "COUNT" => AggregateKind::Count,
                "SUM" => AggregateKind::Sum,
                "MIN" => AggregateKind::Min,
                "MAX" => AggregateKind::Max,
                "AVG" => AggregateKind::Avg,
                other => {
                    return Err(error_at(
                        e,
                        format!(
                        "aggregate {other} is not supported: expected COUNT, SUM, MIN, MAX or AVG"
                    ),
                    ))
                }
            };
            let field = match (kind, args.as_slice()) {
                (AggregateKind::Count, _) => None,
                (_, [arg]) => Some(rel.field(&column_parts(arg).ok_or_else(|| {
                    error_at(arg, "an aggregate of an expression is not supported: expected a column (compute it in a view first)")
                })?).map_err(|m| error_at(arg, m))?),
                _ => return Err(error_at(e, format!("{name} takes one column"))),
            };
            out.push((
                alias.unwrap_or_else(|| name.to_ascii_lowercase()),
                Item::Aggregate(kind, field),
            ));
        }
        let aggregates: Vec<(AggregateKind, Option<String>)> = out
            .iter()
            .filter_map(|(_, i)| match i {
                Item::Aggregate(k, f) => Some((*k, f.clone())),
                Item::Grouped(_) => None,
            })
            .collect();
        let single_max = keys.is_empty()
            && having.is_none()
            && matches!(aggregates.as_slice(), [(AggregateKind::Max, Some(_))]);
        let cols_of = |window: bool, agg_field: &dyn Fn(usize) -> ColRef| -> Vec<Col> {
            let mut n = 0;
            out.iter()
                .map(|(name, item)| Col {
                    qualifier: None,
                    name: name.clone(),
                    r: match item {
                        Item::Grouped(r) if window && is_start(r) => {
                            ColRef::Field("window_start".into())
                        }
                        Item::Grouped(r) if window && is_end(r) => {
                            ColRef::Field("window_end".into())
                        }
                        Item::Grouped(r) => r.clone(),
                        Item::Aggregate(..) => {
                            n += 1;
                            agg_field(n - 1)
                        }
                    },
                })
                .collect()
        };
        match &rel.shape {
            Shape::Windowed(shape) => {
                if single_max {
                    let field = aggregates[0].1.clone().unwrap_or_default();
                    return Ok(Rel {
                        stream: rel.stream.clone(),
                        cols: cols_of(false, &|_| ColRef::Max),
                        shape: Shape::MaxPerWindow { base: Box::new(rel), field },
                    });
                }
                let (stream, names) = self.window_aggregate(&rel.stream, *shape, &keys, &aggregates);
                let result = Rel {
                    stream,
                    cols: cols_of(true, &|i| ColRef::Field(names[i].clone())),
                    shape: Shape::WindowResult,
                };
                match having {
                    Some(h) => self.filter(result, h),
                    None => Ok(result),
                }
            }
            Shape::WindowResult if single_max => {
                let field = aggregates[0].1.clone().unwrap_or_default();
                Ok(Rel {
                    stream: rel.stream.clone(),
                    cols: cols_of(false, &|_| ColRef::Max),
                    shape: Shape::MaxPerWindow { base: Box::new(rel), field },
                })
            }
            Shape::WindowResult => Err(SqlError::at(
                self.at,
                "an aggregation over a window aggregation's result is supported only as the \
                 per-window maximum joined back to it (window Top-1): expected SELECT MAX(x), \
                 window_start, window_end … GROUP BY window_start, window_end in a JOIN",
            )),
            _ => Err(SqlError::at(
                self.at,
                "GROUP BY window_start, window_end: expected the rows of a window TVF (FROM TABLE(TUMBLE(…)))",
            )),
        }
    }

    /// The stream of `key_by` + `window` computing `aggregates` per `keys` and window
    /// of `input` (planned once), and the aggregates' field names.
    fn window_aggregate(
        &mut self,
        input: &str,
        shape: WindowShape,
        keys: &[String],
        aggregates: &[(AggregateKind, Option<String>)],
    ) -> (String, Vec<String>) {
        let names: Vec<String> = aggregates
            .iter()
            .map(|(kind, field)| {
                let kind = format!("{kind:?}").to_ascii_lowercase();
                match field {
                    Some(f) => format!("{kind}_{f}"),
                    None => kind,
                }
            })
            .map(|n| {
                if keys.contains(&n) {
                    format!("{n}_")
                } else {
                    n
                }
            })
            .collect();
        let memo_key = format!("{input}|{shape:?}|{keys:?}|{aggregates:?}");
        if let Some(stream) = self.memo.get(&memo_key) {
            return (stream.clone(), names);
        }
        let (keyed_input, keys) = if keys.is_empty() {
            // One group per window: key every row alike.
            let mut fields: Vec<(String, String)> = self
                .stream_fields(input)
                .into_iter()
                .map(|f| (f.clone(), f))
                .collect();
            fields.push(("_all".into(), "0".into()));
            let all = self
                .map(input, fields)
                .unwrap_or_else(|_| input.to_string());
            (all, vec!["_all".to_string()])
        } else {
            (input.to_string(), keys.to_vec())
        };
        let key_by = self.key_by(&keyed_input, &keys);
        let mut specs = Vec::new();
        let mut seen = HashSet::new();
        for ((kind, field), name) in aggregates.iter().zip(&names) {
            if seen.insert(name.clone()) {
                specs.push(AggregateSpec {
                    output: name.clone(),
                    kind: *kind,
                    field: field.clone(),
                    at: self.at,
                    path: self.path(),
                });
            }
        }
        let mut fields = keys.clone();
        fields.extend(["window_start".to_string(), "window_end".to_string()]);
        fields.extend(specs.iter().map(|s| s.output.clone()));
        let window = self.add_operator(
            "window",
            &[&key_by],
            OperatorKind::Window {
                shape,
                shape_at: Located {
                    value: (),
                    at: self.at,
                    path: self.path(),
                },
                aggregates: specs,
                top: None,
                allowed_lateness: Duration::ZERO,
            },
            fields,
            Some("window_end".into()),
        );
        self.memo.insert(memo_key, window.clone());
        (window, names)
    }

    fn key_by(&mut self, input: &str, keys: &[String]) -> String {
        let fields = self.stream_fields(input);
        let event_time = self.event_time.get(input).cloned();
        let keys = keys
            .iter()
            .map(|k| Located {
                value: k.clone(),
                at: self.at,
                path: self.path(),
            })
            .collect();
        let name = self.add_operator(
            "key_by",
            &[input],
            OperatorKind::KeyBy { keys },
            fields,
            event_time,
        );
        if let Some(ints) = self.int_fields.get(input).cloned() {
            self.int_fields.insert(name.clone(), ints);
        }
        name
    }

    /// `rel`, its pending window Top-1 planned if it has one.
    fn pending_planned(&mut self, rel: Rel) -> Result<Rel, SqlError> {
        match rel.shape {
            Shape::TopPending { .. } | Shape::Ranked { .. } => self.materialize(rel),
            _ => Ok(rel),
        }
    }

    /// A per-window maximum used on its own: its window aggregation.
    fn materialize(&mut self, rel: Rel) -> Result<Rel, SqlError> {
        if matches!(rel.shape, Shape::Ranked { .. }) {
            return Err(SqlError::at(
                self.at,
                "a RANK() column: expected the outer query to keep WHERE rank <= 1 \
                 (window Top-1, ties kept); other uses of ranks are not supported",
            ));
        }
        if let Shape::TopPending { shape, field, key } = &rel.shape {
            let (shape, field, key) = (*shape, field.clone(), key.clone());
            return self.window_top(rel, shape, &field, &key);
        }
        let Shape::MaxPerWindow { base, field } = &rel.shape else {
            return Ok(rel);
        };
        let Shape::Windowed(shape) = base.shape else {
            return Err(SqlError::at(
                self.at,
                "an aggregation over a window aggregation's result is supported only as the \
                 per-window maximum joined back to it (window Top-1)",
            ));
        };
        let aggregates = [(AggregateKind::Max, Some(field.clone()))];
        let (stream, names) = self.window_aggregate(&base.stream, shape, &[], &aggregates);
        let cols = rel
            .cols
            .iter()
            .map(|c| Col {
                r: match &c.r {
                    ColRef::Max => ColRef::Field(names[0].clone()),
                    ColRef::WindowStart => ColRef::Field("window_start".into()),
                    ColRef::WindowEnd => ColRef::Field("window_end".into()),
                    r => r.clone(),
                },
                ..c.clone()
            })
            .collect();
        Ok(Rel {
            stream,
            cols,
            shape: Shape::WindowResult,
        })
    }

    /// `left JOIN right ON …`: supported as a relation joined with its per-window
    /// maximum (window Top-1).
    fn join(&mut self, left: Rel, right: Rel, on: &Expr) -> Result<Rel, SqlError> {
        let unsupported = || {
            error_at(
                on,
                "this JOIN is not supported: weir SQL joins a relation with its own per-window \
                 maximum (SELECT MAX(x), window_start, window_end … GROUP BY window_start, \
                 window_end) ON both window columns and x = or >= the maximum (window Top-1, as \
                 Nexmark q5 and q7), a window join of two window TVFs of the same window \
                 (ON keys AND both window columns equal), or an interval join of two tables \
                 (ON keys AND a bounded range of one's event time around the other's)",
            )
        };
        match (&left.shape, &right.shape) {
            (Shape::Windowed(a), Shape::Windowed(b)) if a == b => {
                let shape = *a;
                return self
                    .window_join(left, right, shape, on)
                    .map_err(|m| error_at(on, m));
            }
            (Shape::Rows, Shape::Rows) => {
                return self
                    .interval_join(left, right, on)
                    .map_err(|m| error_at(on, m));
            }
            _ => {}
        }
        let (rows, max, max_on_left) = match (&left.shape, &right.shape) {
            (_, Shape::MaxPerWindow { .. }) => (left, right, false),
            (Shape::MaxPerWindow { .. }, _) => (right, left, true),
            _ => return Err(unsupported()),
        };
        let Shape::MaxPerWindow { base, field } = &max.shape else {
            return Err(unsupported());
        };
        let same_base = rows.stream == base.stream
            && match (&rows.shape, &base.shape) {
                (Shape::Windowed(a), Shape::Windowed(b)) => a == b,
                (Shape::WindowResult, Shape::WindowResult) => true,
                _ => false,
            };
        if !same_base {
            return Err(unsupported());
        }
        let window_col = |r: &ColRef| match r {
            ColRef::WindowStart => Some(0),
            ColRef::WindowEnd => Some(1),
            ColRef::Field(f) if f == "window_start" => Some(0),
            ColRef::Field(f) if f == "window_end" => Some(1),
            _ => None,
        };
        let mut conjuncts = Vec::new();
        split_and(on, &mut conjuncts);
        let mut windows = [false, false];
        let mut compared = false;
        for c in conjuncts {
            let Expr::BinaryOp {
                left: a,
                op,
                right: b,
            } = c
            else {
                return Err(unsupported());
            };
            let side = |e: &Expr| -> Option<(bool, ColRef)> {
                let parts = column_parts(e)?;
                match (rows.resolve(&parts), max.resolve(&parts)) {
                    (Ok(col), Err(_)) => Some((false, col.r.clone())),
                    (Err(_), Ok(col)) => Some((true, col.r.clone())),
                    _ => None,
                }
            };
            let (Some(sa), Some(sb)) = (side(a), side(b)) else {
                return Err(unsupported());
            };
            // Oriented as (rows side, max side, operator as rows-op-max).
            let ((_, r), (_, m), op) = match (sa.0, sb.0) {
                (false, true) => (sa, sb, op.clone()),
                (true, false) => (sb, sa, flip(op)),
                _ => return Err(unsupported()),
            };
            match (window_col(&r), window_col(&m), &m, op) {
                (Some(i), Some(j), _, BinaryOperator::Eq) if i == j => windows[i] = true,
                (None, None, ColRef::Max, BinaryOperator::Eq | BinaryOperator::GtEq)
                    if r == ColRef::Field(field.clone()) =>
                {
                    compared = true
                }
                _ => return Err(unsupported()),
            }
        }
        if !(windows[0] && windows[1] && compared) {
            return Err(unsupported());
        }
        let stream = match &rows.shape {
            Shape::WindowResult => {
                let fields = self.stream_fields(&rows.stream);
                self.add_operator(
                    "top",
                    &[&rows.stream],
                    OperatorKind::Top {
                        by: self.located(field),
                    },
                    fields,
                    Some("window_end".into()),
                )
            }
            Shape::Windowed(shape) => {
                // Planned when the columns read afterwards are known.
                let shape = Shape::TopPending {
                    shape: *shape,
                    field: field.clone(),
                    key: self.top_key(&rows, field)?,
                };
                let settle = |c: &Col| Col {
                    r: match &c.r {
                        ColRef::Max => ColRef::Field(field.clone()),
                        r => r.clone(),
                    },
                    ..c.clone()
                };
                let rows_cols = rows.cols.iter().map(settle);
                let max_cols = max.cols.iter().map(settle);
                let cols = if max_on_left {
                    max_cols.chain(rows_cols).collect()
                } else {
                    rows_cols.chain(max_cols).collect()
                };
                return Ok(Rel {
                    stream: rows.stream,
                    cols,
                    shape,
                });
            }
            _ => return Err(unsupported()),
        };
        let settle = |c: &Col| Col {
            r: match &c.r {
                ColRef::WindowStart => ColRef::Field("window_start".into()),
                ColRef::WindowEnd | ColRef::WindowTime => ColRef::Field("window_end".into()),
                ColRef::Max => ColRef::Field(field.clone()),
                r => r.clone(),
            },
            ..c.clone()
        };
        let mut cols: Vec<Col> = rows.cols.iter().map(settle).collect();
        let max_cols = max.cols.iter().map(settle);
        cols = if max_on_left {
            max_cols.chain(cols).collect()
        } else {
            cols.into_iter().chain(max_cols).collect()
        };
        Ok(Rel {
            stream,
            cols,
            shape: Shape::Rows,
        })
    }

    fn located(&self, value: &str) -> Located<String> {
        Located {
            value: value.to_string(),
            at: self.at,
            path: self.path(),
        }
    }

    /// The key of a window Top-1's first step: the first column of `rows` that is
    /// neither event time nor `field` (any key gives the same rows; one with many
    /// values spreads the work).
    fn top_key(&self, rows: &Rel, field: &str) -> Result<String, SqlError> {
        let event_time = self.event_time.get(&rows.stream);
        let visible = rows.cols.iter().filter_map(|c| match &c.r {
            ColRef::Field(f) => Some(f),
            _ => None,
        });
        visible
            .clone()
            .find(|f| Some(*f) != event_time && *f != field)
            .or(visible.clone().next())
            .cloned()
            .ok_or_else(|| SqlError::at(self.at, "a window Top-1 over rows without columns"))
    }

    /// A pending window Top-1 planned: the rows narrowed to the columns `rel`
    /// reads, then per window the rows with the largest `field`: each subtask
    /// keeps the top of its share of keys, then one `top` per window keeps the top
    /// of those.
    fn window_top(
        &mut self,
        rel: Rel,
        shape: WindowShape,
        field: &str,
        key: &str,
    ) -> Result<Rel, SqlError> {
        let event_time = self.event_time.get(&rel.stream).cloned();
        let read: HashSet<&str> = rel
            .cols
            .iter()
            .filter_map(|c| match &c.r {
                ColRef::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .chain([field, key])
            .chain(event_time.as_deref())
            .collect();
        let all = self.stream_fields(&rel.stream);
        let mut kept: Vec<String> = all
            .iter()
            .filter(|f| read.contains(f.as_str()))
            .cloned()
            .collect();
        let mut fields: Vec<(String, String)> =
            kept.iter().map(|f| (f.clone(), f.clone())).collect();
        // An int key is spread over 128 buckets: few enough that each subtask's
        // filter before the exchange drops most rows (a row below its bucket's
        // window maximum so far never reaches the top), as the typed q7 does.
        let int_key = self
            .int_fields
            .get(&rel.stream)
            .is_some_and(|ints| ints.contains(key));
        let key = if int_key {
            fields.push(("_bucket".into(), format!("{key} % {TOP_BUCKETS}")));
            kept.push("_bucket".into());
            "_bucket"
        } else {
            key
        };
        let input = if kept.len() == all.len() && !int_key {
            rel.stream.clone()
        } else {
            self.map(&rel.stream, fields)?
        };
        let key_by = self.key_by(&input, &[key.to_string()]);
        let mut fields = vec!["window_start".to_string(), "window_end".to_string()];
        fields.extend(kept);
        let window = self.add_operator(
            "window",
            &[&key_by],
            OperatorKind::Window {
                shape,
                shape_at: Located {
                    value: (),
                    at: self.at,
                    path: self.path(),
                },
                aggregates: Vec::new(),
                top: Some(self.located(field)),
                allowed_lateness: Duration::ZERO,
            },
            fields.clone(),
            Some("window_end".into()),
        );
        let stream = self.add_operator(
            "top",
            &[&window],
            OperatorKind::Top {
                by: self.located(field),
            },
            fields,
            Some("window_end".into()),
        );
        let cols = rel
            .cols
            .into_iter()
            .map(|c| Col {
                r: match c.r {
                    ColRef::WindowStart => ColRef::Field("window_start".into()),
                    ColRef::WindowEnd | ColRef::WindowTime => ColRef::Field("window_end".into()),
                    r => r,
                },
                ..c
            })
            .collect();
        Ok(Rel {
            stream,
            cols,
            shape: Shape::Rows,
        })
    }
}

fn is_aggregate_item(item: &SelectItem) -> bool {
    let e = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return false,
    };
    matches!(e, Expr::Function(f) if f.over.is_none()
        && matches!(f.name.to_string().to_ascii_uppercase().as_str(), "COUNT" | "SUM" | "MIN" | "MAX" | "AVG"))
}

fn split_and<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        Expr::Nested(inner) => split_and(inner, out),
        e => out.push(e),
    }
}

/// `a op b` as `b op' a`.
fn flip(op: &BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        other => other.clone(),
    }
}

/// One line a stream: name (its uid), step, inputs, fields; then the sinks.
pub(crate) fn explain(plan: &JobPlan) -> String {
    let mut out = format!(
        "job `{}`: parallelism {}, checkpoints every {:?} to {}, state {:?}\n",
        plan.spec.name,
        plan.spec.parallelism,
        plan.spec.checkpoints.interval,
        plan.spec.checkpoints.storage,
        plan.spec.state_backend
    );
    for stream in &plan.streams {
        let step = match &stream.step {
            Step::Source(spec, computed) => format!(
                "source {:?}{}",
                spec.kind,
                if computed.is_empty() {
                    String::new()
                } else {
                    format!(", {} computed", computed.len())
                }
            ),
            Step::Filter(_) => "filter (chained)".into(),
            Step::Map(_) => "map (chained)".into(),
            Step::KeyBy(keys) => format!(
                "key_by {} (hash exchange by key group)",
                keys.iter()
                    .map(|&k| plan_field(plan, &stream.inputs[0], k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::Window(w) => format!(
                "window {:?}{} (keyed state)",
                w.shape,
                match w.top {
                    Some(_) => ", top",
                    None => "",
                }
            ),
            Step::Top { .. } => "top per window (keyed state)".into(),
            Step::Union => "union".into(),
            Step::Udf(_) => "udf".into(),
            Step::Join(j) => format!("join {:?} (keyed state)", j.kind),
        };
        let fields = stream
            .schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let time = if stream.schema.event_time == Some(i) {
                    " (event time)"
                } else {
                    ""
                };
                format!("{} {}{time}", f.name, f.ty)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let inputs = if stream.inputs.is_empty() {
            String::new()
        } else {
            format!(" <- {}", stream.inputs.join(", "))
        };
        let uid = stream
            .node
            .uid
            .as_deref()
            .unwrap_or(&stream.node.name.value);
        out.push_str(&format!(
            "  {}{inputs}: {step}\n      fields: {fields}\n      uid: {uid}\n",
            stream.node.name.value
        ));
    }
    for sink in &plan.sinks {
        out.push_str(&format!(
            "  sink {} <- {}: {:?}\n",
            sink.spec.node.name.value, sink.spec.input.value, sink.spec.kind
        ));
    }
    out
}

fn plan_field(plan: &JobPlan, stream: &str, i: usize) -> String {
    plan.streams
        .iter()
        .find(|s| s.node.name.value == stream)
        .and_then(|s| s.schema.fields.get(i))
        .map_or_else(|| i.to_string(), |f| f.name.clone())
}

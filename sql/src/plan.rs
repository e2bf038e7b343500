//! Statements planned into the streams of a [`JobSpec`].
//!
//! A query becomes a [`Rel`]: a stream and the columns it exposes, each naming a
//! field of that stream (or a window column not yet computed). Projections of
//! columns are free (they only rename); a projection that computes becomes a
//! `map`, a `WHERE` a `filter`. A window TVF marks its rows as windowed; the
//! `GROUP BY window_start, window_end, keys…` over them becomes `key_by` + `window`
//! (the same aggregation is planned once however often it is written). A relation
//! joined with its own per-window maximum on the window and `x = max` or
//! `x >= max` (window Top-1, as in Nexmark q5 and q7) becomes a `top`, as does a
//! window Top-N (`ROW_NUMBER() … <= N`, `plan/rank.rs`); joins of two window TVFs or two tables become the job files'
//! window and interval joins. At the end a `map` gives the sink table's column
//! names, in order.

mod connectors;
mod joins;
mod rank;
mod settings;
mod windows;
use rank::TopN;

use crate::expr::{self, column_parts, error_at, Scope};
use crate::statements::{Stmt, TableDef};
use crate::SqlError;
use sqlparser::ast::{
    self, BinaryOperator, Expr, GroupByExpr, JoinConstraint, JoinOperator, Query, SelectItem,
    SetExpr, TableFactor,
};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use weir_jobfile::yaml::Pos;
use weir_jobfile::*;

/// Which window aggregations run in two phases (`table.optimizer.agg-phase-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phases {
    /// Those over tumbling windows (the default).
    Auto,
    /// None.
    One,
    /// Every one that can: tumbling, and hopping whose size is a multiple of the
    /// slide.
    Two,
}

/// The buckets of an int key in the first step of a window Top-N.
const TOP_BUCKETS: i64 = 128;

/// The field of a table's changelog (connector 'upsert-kafka') that marks a
/// tombstone: not a column, so no query names it.
const CHANGELOG_DELETED: &str = "$deleted";

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

/// Which window bound a column is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Start,
    End,
}

impl ColRef {
    /// The window bound this column is: a window TVF's `window_start`/`window_end`,
    /// or the field of that name of a window's results.
    fn bound(&self) -> Option<Bound> {
        match self {
            ColRef::WindowStart => Some(Bound::Start),
            ColRef::WindowEnd => Some(Bound::End),
            ColRef::Field(f) if f == "window_start" => Some(Bound::Start),
            ColRef::Field(f) if f == "window_end" => Some(Bound::End),
            _ => None,
        }
    }
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
    /// Per window (of this shape) of the relation's rows, the rows `top` keeps,
    /// keyed by `key` for the first step; not planned yet, so that the rows carry
    /// only the columns read afterwards.
    TopPending {
        shape: WindowShape,
        top: TopN,
        key: String,
    },
    /// `base` with a `ROW_NUMBER() OVER (PARTITION BY window_start, window_end …
    /// ORDER BY …)` column (or another rank), waiting for the `WHERE rank <= N`
    /// that makes it a top.
    Ranked { base: Box<Rel>, top: TopN },
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
                 window_start, window_end, … (a window aggregation) or in a per-window Top-N",
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
        changelogs: HashSet::new(),
        memo: HashMap::new(),
        names: HashSet::new(),
        idle_timeout: None,
        phases: Phases::Auto,
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
    /// The streams that are a table's changelog (connector 'upsert-kafka'), whose
    /// field [`CHANGELOG_DELETED`] marks tombstones.
    changelogs: HashSet<String>,
    /// Window aggregations planned, by what they compute.
    memo: HashMap<String, String>,
    names: HashSet<String>,
    idle_timeout: Option<Duration>,
    /// `table.optimizer.agg-phase-strategy`.
    phases: Phases,
    spec: JobSpec,
    /// The sink table or view being planned: the prefix of stream names.
    target: String,
    /// The statement being planned.
    at: Pos,
}

impl<'a> Planner<'a> {
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
        self.not_a_changelog(&rel)?;
        match from.joins.as_slice() {
            [] => {}
            [join] => {
                let right = self.factor(&join.relation)?;
                if as_of(&join.relation).is_none() {
                    self.not_a_changelog(&right)?;
                }
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
                rel = match as_of(&join.relation) {
                    Some(time) => self
                        .temporal_join(rel, right, on, time)
                        .map_err(|m| SqlError::at(self.at, m))?,
                    None => self.join(rel, right, on)?,
                };
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
                return Err(SqlError::at(self.at, "GROUP BY ALL is not supported"));
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

    /// Refuses a table's changelog read as a stream of rows: its tombstones would
    /// be lost.
    fn not_a_changelog(&self, rel: &Rel) -> Result<(), SqlError> {
        if !self.changelogs.contains(&rel.stream) {
            return Ok(());
        }
        Err(SqlError::at(
            self.at,
            format!(
                "table `{}` is a changelog (connector 'upsert-kafka'): expected it as the \
                 versioned table of a temporal join (JOIN {0} FOR SYSTEM_TIME AS OF …); \
                 reading it as rows would drop its deletions",
                rel.stream
            ),
        ))
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

    fn located(&self, value: &str) -> Located<String> {
        Located {
            value: value.to_string(),
            at: self.at,
            path: self.path(),
        }
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

/// The time of `FOR SYSTEM_TIME AS OF time` after a joined table: a temporal join.
fn as_of(factor: &TableFactor) -> Option<&Expr> {
    match factor {
        TableFactor::Table {
            version: Some(sqlparser::ast::TableVersion::ForSystemTimeAsOf(time)),
            ..
        } => Some(time),
        _ => None,
    }
}

//! Windows in queries: window TVFs, window aggregations (`key_by` + `window`,
//! each planned once), and window Top-1 from a relation joined with its own
//! per-window maximum (`top`, or a window `top` per key bucket then a `top`),
//! planned when the columns read afterwards are known.

use super::rank::RANK_FIELD;
use super::{flip, split_and, Bound, Col, ColRef, Phases, Planner, Rel, Shape, TopN, TOP_BUCKETS};
use crate::expr::{self, call_args, column_parts, error_at, Scope};
use crate::SqlError;
use sqlparser::ast::{BinaryOperator, DuplicateTreatment, Expr, FunctionArguments, SelectItem};
use std::collections::HashSet;
use std::time::Duration;
use weir_jobfile::*;

impl Planner<'_> {
    /// `FROM TABLE(TUMBLE|HOP|SESSION(TABLE t, DESCRIPTOR(time), …))`.
    pub(super) fn window_tvf(&mut self, e: &Expr) -> Result<Rel, SqlError> {
        let Expr::Function(f) = e else {
            return Err(error_at(
                e,
                "expected a window TVF: TUMBLE, HOP, CUMULATE or SESSION",
            ));
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
        self.not_a_changelog(&rel)?;
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
            "CUMULATE" if args.len() == 4 => WindowShape::Cumulate {
                step: duration(2, "step")?,
                size: duration(3, "size")?,
            },
            "SESSION" if args.len() == 3 => WindowShape::Session {
                gap: duration(2, "gap")?,
            },
            "TUMBLE" | "HOP" | "CUMULATE" | "SESSION" => {
                return Err(error_at(
                    e,
                    format!("{name}: wrong arguments: expected TUMBLE(TABLE t, DESCRIPTOR(ts), size), HOP(TABLE t, DESCRIPTOR(ts), slide, size), CUMULATE(TABLE t, DESCRIPTOR(ts), step, size) or SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), gap) (offsets are not supported)"),
                ))
            }
            other => {
                return Err(error_at(
                    e,
                    format!("window TVF {other} is not supported: expected TUMBLE, HOP, CUMULATE or SESSION"),
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

    pub(super) fn group(
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
        let is_start = |r: &ColRef| r.bound() == Some(Bound::Start);
        let is_end = |r: &ColRef| r.bound() == Some(Bound::End);
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
            // `COUNT(DISTINCT x)`: the DISTINCT read here (other aggregates refuse it).
            let mut plain = f.clone();
            let mut distinct = false;
            if let FunctionArguments::List(list) = &mut plain.args {
                let named_count = f.name.to_string().eq_ignore_ascii_case("COUNT");
                if named_count && list.duplicate_treatment == Some(DuplicateTreatment::Distinct) {
                    list.duplicate_treatment = None;
                    distinct = true;
                }
            }
            let (name, args) = call_args(&plain).map_err(|m| error_at(e, m))?;
            let kind = match name.as_str() {
                "COUNT" if distinct => AggregateKind::CountDistinct,
                "COUNT" => AggregateKind::Count,
                "SUM" => AggregateKind::Sum,
                "MIN" => AggregateKind::Min,
                "MAX" => AggregateKind::Max,
                "AVG" => AggregateKind::Avg,
                other => {
                    return Err(error_at(
                        e,
                        format!(
                        "aggregate {other} is not supported: expected COUNT, COUNT(DISTINCT …), SUM, MIN, MAX or AVG"
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
                // A GROUP BY without aggregates (distinct keys per window) counts, unread.
                let mut aggregates = aggregates;
                if aggregates.is_empty() {
                    aggregates.push((AggregateKind::Count, None));
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
    pub(super) fn window_aggregate(
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
        let window = self.window(&key_by, shape, specs, None, fields);
        self.memo.insert(memo_key, window.clone());
        (window, names)
    }

    /// `rel`, its pending window Top-N planned if it has one.
    pub(super) fn pending_planned(&mut self, rel: Rel) -> Result<Rel, SqlError> {
        match rel.shape {
            Shape::TopPending { .. } | Shape::Ranked { .. } => self.materialize(rel),
            _ => Ok(rel),
        }
    }

    /// A per-window maximum used on its own: its window aggregation.
    pub(super) fn materialize(&mut self, rel: Rel) -> Result<Rel, SqlError> {
        if matches!(rel.shape, Shape::Ranked { .. }) {
            return Err(SqlError::at(
                self.at,
                "a rank column: expected the outer query to keep WHERE rank <= N \
                 (window Top-N); other uses of ranks are not supported",
            ));
        }
        if let Shape::TopPending { shape, top, key } = &rel.shape {
            let (shape, top, key) = (*shape, top.clone(), key.clone());
            return self.window_top(rel, shape, &top, &key);
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
    pub(super) fn join(&mut self, left: Rel, right: Rel, on: &Expr) -> Result<Rel, SqlError> {
        let unsupported = || {
            error_at(
                on,
                "this JOIN is not supported: weir SQL joins a relation with its own per-window \
                 maximum (SELECT MAX(x), window_start, window_end … GROUP BY window_start, \
                 window_end) ON both window columns and x = or >= the maximum (window Top-1, as \
                 Nexmark q5 and q7), a window join of two window TVFs of the same window \
                 (ON keys AND both window columns equal), a join of two window aggregations \
                 (the same), or a join of two tables (ON keys, AND optionally a bounded \
                 range of one's event time around the other's)",
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
            (Shape::WindowResult, Shape::WindowResult) => {
                return self
                    .window_results_join(left, right, on)
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
            match (r.bound(), m.bound(), &m, op) {
                (Some(i), Some(j), _, BinaryOperator::Eq) if i == j => {
                    windows[usize::from(i == Bound::End)] = true
                }
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
            Shape::WindowResult => self.top(&rows.stream, &TopN::largest(field)),
            Shape::Windowed(shape) => {
                // Planned when the columns read afterwards are known.
                let top = TopN::largest(field);
                let shape = Shape::TopPending {
                    shape: *shape,
                    key: self.top_key(&rows, &top)?,
                    top,
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

    /// The key of a window Top-N's first step: the first column of `rows` that is
    /// neither event time nor ordered by (any key gives the same rows; one with
    /// many values spreads the work).
    pub(super) fn top_key(&self, rows: &Rel, top: &TopN) -> Result<String, SqlError> {
        let event_time = self.event_time.get(&rows.stream);
        let visible = rows.cols.iter().filter_map(|c| match &c.r {
            ColRef::Field(f) => Some(f),
            _ => None,
        });
        visible
            .clone()
            .find(|f| Some(*f) != event_time && !top.order.iter().any(|(o, _)| o == *f))
            .or(visible.clone().next())
            .cloned()
            .ok_or_else(|| SqlError::at(self.at, "a window Top-N over rows without columns"))
    }

    /// A pending window Top-N planned: the rows narrowed to the columns `rel`
    /// reads, then per window (and partition) the rows `top` keeps. With a
    /// partition, one window keyed by it does that; without, each subtask keeps
    /// the top of its share of keys, then one `top` per window keeps the top of
    /// those (the top of tops is the top: a row ranked N or better overall is
    /// ranked N or better among its key's rows).
    pub(super) fn window_top(
        &mut self,
        rel: Rel,
        shape: WindowShape,
        top: &TopN,
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
            .chain(top.fields())
            .chain([key])
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
        let int_key = top.partition.is_empty()
            && self
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
        let mut fields = vec!["window_start".to_string(), "window_end".to_string()];
        fields.extend(kept);
        let partitioned = !top.partition.is_empty();
        let spec = top.spec(&|f| self.located(f), partitioned, false);
        if spec.rank_field.is_some() {
            fields.push(RANK_FIELD.into());
        }
        let keys = if partitioned {
            top.partition.clone()
        } else {
            vec![key.to_string()]
        };
        let key_by = self.key_by(&input, &keys);
        let window = self.window(&key_by, shape, Vec::new(), Some(spec), fields);
        let stream = if partitioned {
            window
        } else {
            self.top(&window, top)
        };
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

    /// A `window` over the `key_by` stream `key_by`: `aggregates`, or the rows
    /// `top` keeps; its output `fields`, event time `window_end`.
    fn window(
        &mut self,
        key_by: &str,
        shape: WindowShape,
        aggregates: Vec<AggregateSpec>,
        top: Option<TopSpec>,
        fields: Vec<String>,
    ) -> String {
        let shape_at = Located {
            value: (),
            at: self.at,
            path: self.path(),
        };
        // Two phases for the aggregations they pay for: tumbling windows (AUTO);
        // hopping ones too with TWO_PHASE (their short slices hold few repeats of a
        // key: Nexmark q5 ran 1.2 times slower in two phases).
        let pre_aggregate = top.is_none()
            && match self.phases {
                Phases::One => false,
                Phases::Auto => matches!(shape, WindowShape::Tumbling { .. }),
                Phases::Two => shape.pre_aggregates(),
            };
        let kind = OperatorKind::Window {
            shape,
            shape_at,
            aggregates,
            top,
            allowed_lateness: Duration::ZERO,
            retention: Duration::ZERO,
            pre_aggregate,
        };
        self.add_operator("window", &[key_by], kind, fields, Some("window_end".into()))
    }

    /// A `top` of the window results `input`: per window (and partition), the
    /// rows `top` keeps (the input's fields and event time, then the rank if one
    /// other than 1 can occur).
    pub(super) fn top(&mut self, input: &str, top: &TopN) -> String {
        let mut fields = self.stream_fields(input);
        let spec = top.spec(&|f| self.located(f), true, true);
        if spec.rank_field.is_some() {
            fields.push(RANK_FIELD.into());
        }
        self.add_operator(
            "top",
            &[input],
            OperatorKind::Top { top: spec },
            fields,
            Some("window_end".into()),
        )
    }
}

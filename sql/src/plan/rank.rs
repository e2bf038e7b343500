//! Window Top-N, Flink's way: `SELECT …, ROW_NUMBER() OVER (PARTITION BY
//! window_start, window_end [, keys] ORDER BY x DESC [, …]) AS r FROM windowed` and
//! an outer `WHERE r <= N` (or `< N + 1`, or `= 1`), over a window TVF or a window
//! aggregation's results, with `RANK()` and `DENSE_RANK()` too. A Top-1 of the
//! largest `x` with ties (`RANK() … <= 1`) plans as it did before Top-N: the rank
//! column is the constant 1, so the uids and state of such statements are kept.

use super::{Bound, Col, ColRef, Planner, Rel, Shape};
use crate::expr::{call_args, column_parts, error_at};
use crate::SqlError;
use sqlparser::ast::{BinaryOperator, Expr, OrderBySort, SelectItem, Value, WindowType};
use weir_jobfile::{Located, RankKind, SortField, TopSpec};

/// The field a Top-N's rank is computed into, when a rank other than 1 can occur.
pub(super) const RANK_FIELD: &str = "_rank";

/// A window Top-N being planned: how it ranks, what it partitions the windows by,
/// and the last rank kept (0 until the `WHERE` gives it).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TopN {
    pub(super) rank: RankKind,
    /// Fields and whether largest first.
    pub(super) order: Vec<(String, bool)>,
    /// Fields besides the window bounds.
    pub(super) partition: Vec<String>,
    pub(super) n: usize,
}

impl TopN {
    /// Per window, the rows with the largest `field`, ties kept (window Top-1).
    pub(super) fn largest(field: &str) -> Self {
        Self {
            rank: RankKind::Rank,
            order: vec![(field.to_string(), true)],
            partition: Vec::new(),
            n: 1,
        }
    }

    /// Whether every row kept has rank 1 and the plan is that of a window Top-1
    /// (which keeps the plan, and so the uids, of statements written before Top-N).
    pub(super) fn is_largest(&self) -> bool {
        self.n == 1
            && self.rank != RankKind::RowNumber
            && self.order.len() == 1
            && self.order[0].1
            && self.partition.is_empty()
    }

    /// The fields it reads.
    pub(super) fn fields(&self) -> impl Iterator<Item = &str> {
        self.order
            .iter()
            .map(|(f, _)| f.as_str())
            .chain(self.partition.iter().map(String::as_str))
    }

    /// As a job file's top, located by `at`: the rank computed into [`RANK_FIELD`]
    /// if `ranked` (and a rank other than 1 can occur), the partition left out
    /// unless `partitioned`.
    pub(super) fn spec(
        &self,
        at: &dyn Fn(&str) -> Located<String>,
        ranked: bool,
        partitioned: bool,
    ) -> TopSpec {
        TopSpec {
            order: self
                .order
                .iter()
                .map(|(f, descending)| SortField {
                    field: at(f),
                    descending: *descending,
                })
                .collect(),
            n: self.n,
            rank: self.rank,
            rank_field: (ranked && !self.is_largest()).then(|| at(RANK_FIELD)),
            partition: if partitioned {
                self.partition.iter().map(|f| at(f)).collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// Whether `item` is a ranking function over a window (`… OVER (…)`).
pub(super) fn is_rank_item(item: &SelectItem) -> bool {
    matches!(item, SelectItem::UnnamedExpr(Expr::Function(f)) | SelectItem::ExprWithAlias { expr: Expr::Function(f), .. } if f.over.is_some())
}

impl Planner<'_> {
    /// The projection of `rel` with a rank column: the rank is kept for the outer
    /// `WHERE`.
    pub(super) fn rank_project(&mut self, rel: Rel, items: &[SelectItem]) -> Result<Rel, SqlError> {
        let rel = self.pending_planned(rel)?;
        let mut cols = Vec::new();
        let mut ranked = None;
        for item in items {
            match item {
                SelectItem::Wildcard(_) => cols.extend(rel.cols.iter().cloned()),
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let alias = match item {
                        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                        _ => None,
                    };
                    if let Expr::Function(f) = e {
                        if f.over.is_some() {
                            let top = self.ranking(&rel, e, f)?;
                            if ranked.replace(top).is_some() {
                                return Err(error_at(e, "two ranks in one SELECT: expected one"));
                            }
                            cols.push(Col {
                                qualifier: None,
                                name: alias.unwrap_or_else(|| "rank".into()),
                                r: ColRef::Rank,
                            });
                            continue;
                        }
                    }
                    let parts = column_parts(e).ok_or_else(|| {
                        error_at(e, "beside a rank: expected columns (compute expressions in an inner query)")
                    })?;
                    let col = rel.resolve(&parts).map_err(|m| error_at(e, m))?;
                    cols.push(Col {
                        qualifier: None,
                        name: alias.unwrap_or_else(|| col.name.clone()),
                        r: col.r.clone(),
                    });
                }
                other => {
                    return Err(SqlError::at(
                        self.at,
                        format!("select item `{other}` is not supported beside a rank"),
                    ))
                }
            }
        }
        let Some(top) = ranked else {
            return Err(SqlError::at(
                self.at,
                "a rank: expected one ranking function",
            ));
        };
        Ok(Rel {
            stream: rel.stream.clone(),
            cols,
            shape: Shape::Ranked {
                base: Box::new(rel),
                top,
            },
        })
    }

    /// The ranking `RANK() | DENSE_RANK() | ROW_NUMBER() OVER (PARTITION BY
    /// window_start, window_end [, columns] ORDER BY column [DESC|ASC] [, …])` of
    /// `rel`, a window TVF or a window aggregation's results.
    fn ranking(&self, rel: &Rel, e: &Expr, f: &sqlparser::ast::Function) -> Result<TopN, SqlError> {
        let (name, _) = call_args(f).map_err(|m| error_at(e, m))?;
        let rank = match name.as_str() {
            "RANK" => RankKind::Rank,
            "DENSE_RANK" => RankKind::DenseRank,
            "ROW_NUMBER" => RankKind::RowNumber,
            other => {
                return Err(error_at(
                    e,
                    format!("{other}() OVER: expected ROW_NUMBER(), RANK() or DENSE_RANK()"),
                ))
            }
        };
        let expected = "a rank: expected ROW_NUMBER(), RANK() or DENSE_RANK() OVER (PARTITION \
                        BY window_start, window_end [, columns] ORDER BY columns [DESC]) over a \
                        window TVF or a window aggregation";
        let Some(WindowType::WindowSpec(spec)) = &f.over else {
            return Err(error_at(
                e,
                "a named window: expected OVER (PARTITION BY … ORDER BY …)",
            ));
        };
        if !matches!(rel.shape, Shape::Windowed(_) | Shape::WindowResult)
            || spec.window_frame.is_some()
            || spec.order_by.is_empty()
        {
            return Err(error_at(e, expected));
        }
        let field = |expr: &Expr| -> Result<ColRef, SqlError> {
            column_parts(expr)
                .and_then(|parts| rel.resolve(&parts).ok())
                .map(|c| c.r.clone())
                .ok_or_else(|| {
                    error_at(
                        expr,
                        format!("{expr}: expected a column of the ranked rows"),
                    )
                })
        };
        let mut bounds = [false, false];
        let mut partition = Vec::new();
        for p in &spec.partition_by {
            match field(p)? {
                r if r.bound() == Some(Bound::Start) => bounds[0] = true,
                r if r.bound() == Some(Bound::End) => bounds[1] = true,
                ColRef::Field(f) => partition.push(f),
                _ => return Err(error_at(p, expected)),
            }
        }
        if bounds != [true, true] {
            return Err(error_at(
                e,
                "a rank: expected PARTITION BY window_start, window_end (and optionally more \
                 columns): weir ranks rows per window",
            ));
        }
        let mut order = Vec::new();
        for o in &spec.order_by {
            let ColRef::Field(f) = field(&o.expr)? else {
                return Err(error_at(&o.expr, format!("ORDER BY {}: expected a column of the ranked rows other than the window bounds", o.expr)));
            };
            order.push((f, matches!(o.options.sort, Some(OrderBySort::Desc))));
        }
        Ok(TopN {
            rank,
            order,
            partition,
            n: 0,
        })
    }

    /// `WHERE rank <= N` over a ranked relation: its window Top-N.
    pub(super) fn rank_filter(&mut self, rel: Rel, condition: &Expr) -> Result<Rel, SqlError> {
        let Shape::Ranked { base, top } = &rel.shape else {
            return Ok(rel);
        };
        let last = match condition {
            Expr::BinaryOp { left, op, right } => {
                let rank = column_parts(left)
                    .and_then(|parts| rel.resolve(&parts).ok())
                    .is_some_and(|c| c.r == ColRef::Rank);
                let n = match right.as_ref() {
                    Expr::Value(v) => match &v.value {
                        Value::Number(n, _) => n.parse::<usize>().ok(),
                        _ => None,
                    },
                    _ => None,
                };
                match (rank, op, n) {
                    (true, BinaryOperator::LtEq, Some(n)) if n >= 1 => Some(n),
                    (true, BinaryOperator::Lt, Some(n)) if n >= 2 => Some(n - 1),
                    (true, BinaryOperator::Eq, Some(1)) => Some(1),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(n) = last else {
            return Err(error_at(
                condition,
                "over a rank: expected WHERE rank <= N, rank < N or rank = 1 (window Top-N)",
            ));
        };
        let base = (**base).clone();
        let top = TopN { n, ..top.clone() };
        let rank = if top.is_largest() {
            ColRef::Const(1)
        } else {
            ColRef::Field(RANK_FIELD.into())
        };
        let cols: Vec<Col> = rel
            .cols
            .iter()
            .map(|c| match c.r {
                ColRef::Rank => Col {
                    r: rank.clone(),
                    ..c.clone()
                },
                _ => c.clone(),
            })
            .collect();
        let planned = match base.shape {
            Shape::WindowResult => {
                let stream = self.top(&base.stream, &top);
                Rel { stream, ..base }
            }
            Shape::Windowed(shape) => {
                let key = self.top_key(&base, &top)?;
                Rel {
                    shape: Shape::TopPending { shape, top, key },
                    ..base
                }
            }
            _ => {
                return Err(error_at(
                    condition,
                    "a rank over rows that are not windowed",
                ))
            }
        };
        Ok(Rel { cols, ..planned })
    }
}

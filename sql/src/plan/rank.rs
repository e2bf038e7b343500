//! Window Top-1 written as Flink's window Top-N: `SELECT …, RANK() OVER
//! (PARTITION BY window_start, window_end ORDER BY x DESC) AS r FROM windowed` and
//! an outer `WHERE r <= 1` (or `= 1`, `< 2`): per window, every row with the
//! largest `x` (the `top` of job files). `ROW_NUMBER()`, which keeps one of tied
//! rows, and N above 1 are refused.

use super::{Bound, Col, ColRef, Planner, Rel, Shape};
use crate::expr::{call_args, column_parts, error_at};
use crate::SqlError;
use sqlparser::ast::{BinaryOperator, Expr, OrderBySort, SelectItem, Value, WindowType};

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
                            let field = self.rank_field(&rel, e, f)?;
                            if ranked.replace(field).is_some() {
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
        let field = ranked.unwrap_or_default();
        Ok(Rel {
            stream: rel.stream.clone(),
            cols,
            shape: Shape::Ranked {
                base: Box::new(rel),
                field,
            },
        })
    }

    /// The field `RANK() OVER (PARTITION BY window_start, window_end ORDER BY field
    /// DESC)` ranks by.
    fn rank_field(
        &self,
        rel: &Rel,
        e: &Expr,
        f: &sqlparser::ast::Function,
    ) -> Result<String, SqlError> {
        let (name, _) = call_args(f).map_err(|m| error_at(e, m))?;
        match name.as_str() {
            "RANK" | "DENSE_RANK" => {}
            "ROW_NUMBER" => {
                return Err(error_at(
                    e,
                    "ROW_NUMBER() keeps one of tied rows, chosen arbitrarily; weir keeps every \
                     tied row: expected RANK() (window Top-1 with ties)",
                ))
            }
            other => return Err(error_at(e, format!("{other}() OVER: expected RANK()"))),
        }
        let Some(WindowType::WindowSpec(spec)) = &f.over else {
            return Err(error_at(
                e,
                "a named window: expected OVER (PARTITION BY … ORDER BY …)",
            ));
        };
        let windowed = matches!(rel.shape, Shape::Windowed(_) | Shape::WindowResult);
        let partition: Vec<ColRef> = spec
            .partition_by
            .iter()
            .filter_map(|p| rel.resolve(&column_parts(p)?).ok().map(|c| c.r.clone()))
            .collect();
        let by_window = partition.len() == 2
            && spec.partition_by.len() == 2
            && [Bound::Start, Bound::End]
                .iter()
                .all(|b| partition.iter().any(|r| r.bound() == Some(*b)));
        let [order] = spec.order_by.as_slice() else {
            return Err(error_at(e, "a rank: expected ORDER BY one column DESC"));
        };
        let field = column_parts(&order.expr)
            .and_then(|parts| rel.resolve(&parts).ok())
            .and_then(|c| match &c.r {
                ColRef::Field(f) => Some(f.clone()),
                _ => None,
            });
        let descending = matches!(order.options.sort, Some(OrderBySort::Desc));
        match field {
            Some(field) if windowed && by_window && descending && spec.window_frame.is_none() => {
                Ok(field)
            }
            _ => Err(error_at(
                e,
                "a rank: expected RANK() OVER (PARTITION BY window_start, window_end ORDER BY \
                 column DESC) over a window TVF or a window aggregation",
            )),
        }
    }

    /// `WHERE rank <= 1` over a ranked relation: its window Top-1.
    pub(super) fn rank_filter(&mut self, rel: Rel, condition: &Expr) -> Result<Rel, SqlError> {
        let Shape::Ranked { base, field } = &rel.shape else {
            return Ok(rel);
        };
        let keeps_first = match condition {
            Expr::BinaryOp { left, op, right } => {
                let rank = column_parts(left)
                    .and_then(|parts| rel.resolve(&parts).ok())
                    .is_some_and(|c| c.r == ColRef::Rank);
                let n = match right.as_ref() {
                    Expr::Value(v) => match &v.value {
                        Value::Number(n, _) => n.parse::<i64>().ok(),
                        _ => None,
                    },
                    _ => None,
                };
                rank && matches!(
                    (op, n),
                    (BinaryOperator::LtEq | BinaryOperator::Eq, Some(1))
                        | (BinaryOperator::Lt, Some(2))
                )
            }
            _ => false,
        };
        if !keeps_first {
            return Err(error_at(
                condition,
                "over a rank: expected WHERE rank <= 1 (window Top-1 with ties; Top-N for N > 1 is not supported)",
            ));
        }
        let base = (**base).clone();
        let field = field.clone();
        let cols = rel.cols.clone();
        let top = match base.shape {
            Shape::WindowResult => {
                let stream = self.top(&base.stream, &field);
                Rel { stream, ..base }
            }
            Shape::Windowed(shape) => {
                let key = self.top_key(&base, &field)?;
                Rel {
                    shape: Shape::TopPending { shape, field, key },
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
        let cols = cols
            .into_iter()
            .map(|c| match c.r {
                ColRef::Rank => Col {
                    r: ColRef::Const(1),
                    ..c
                },
                _ => c,
            })
            .collect();
        Ok(Rel { cols, ..top })
    }
}

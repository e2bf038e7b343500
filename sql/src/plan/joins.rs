//! Joins of two relations keyed alike: a window join (two window TVFs of the same
//! window, `ON` keys and both window columns) becomes a `window_join`; an interval
//! join (`ON` keys and a range of one side's event time around the other's)
//! becomes an `interval_join`, and so do a regular inner join (keys only: no
//! bounds) and a join of two window aggregations (bounds 0 on their `window_end`).
//! All read `key_by`s of their inputs.

use super::{flip, split_and, Bound, Col, ColRef, Planner, Rel, Shape};
use crate::expr::{self, column_parts};
use sqlparser::ast::{BinaryOperator, Expr};
use std::collections::HashMap;
use weir_jobfile::{Located, OperatorKind, WindowShape};

/// Which side of a join a column is from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// The side and column `e` names (a column of exactly one side).
fn side_of(left: &Rel, right: &Rel, e: &Expr) -> Option<(Side, ColRef)> {
    let parts = column_parts(e)?;
    match (left.resolve(&parts), right.resolve(&parts)) {
        (Ok(c), Err(_)) => Some((Side::Left, c.r.clone())),
        (Err(_), Ok(c)) => Some((Side::Right, c.r.clone())),
        _ => None,
    }
}

/// `a = b` between a column of each side, as (left column, right column).
fn equality(left: &Rel, right: &Rel, e: &Expr) -> Option<(ColRef, ColRef)> {
    let Expr::BinaryOp {
        left: a,
        op: BinaryOperator::Eq,
        right: b,
    } = e
    else {
        return None;
    };
    match (side_of(left, right, a)?, side_of(left, right, b)?) {
        ((Side::Left, l), (Side::Right, r)) | ((Side::Right, r), (Side::Left, l)) => Some((l, r)),
        _ => None,
    }
}

/// A side's time plus an offset: `t`, `t + INTERVAL …` or `t - INTERVAL …`, as the
/// side, its column and the offset in ms.
fn time_plus(left: &Rel, right: &Rel, e: &Expr) -> Option<(Side, ColRef, i64)> {
    let e = match e {
        Expr::Nested(inner) => inner.as_ref(),
        e => e,
    };
    if let Some((side, col)) = side_of(left, right, e) {
        return Some((side, col, 0));
    }
    let Expr::BinaryOp {
        left: a,
        op,
        right: b,
    } = e
    else {
        return None;
    };
    let (side, col) = side_of(left, right, a)?;
    let ms = i64::try_from(expr::interval(b).ok()?.as_millis()).ok()?;
    match op {
        BinaryOperator::Plus => Some((side, col, ms)),
        BinaryOperator::Minus => Some((side, col, -ms)),
        _ => None,
    }
}

impl Planner<'_> {
    /// Each side's key fields from the equalities of `on`, and what else it says.
    fn keys_and_rest<'e>(
        &self,
        left: &Rel,
        right: &Rel,
        on: &'e Expr,
    ) -> (Vec<(String, String)>, Vec<(ColRef, ColRef)>, Vec<&'e Expr>) {
        let mut conjuncts = Vec::new();
        split_and(on, &mut conjuncts);
        let (mut keys, mut other_equal, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for c in conjuncts {
            match equality(left, right, c) {
                Some((ColRef::Field(l), ColRef::Field(r))) => keys.push((l, r)),
                Some(pair) => other_equal.push(pair),
                None => rest.push(c),
            }
        }
        (keys, other_equal, rest)
    }

    /// `left JOIN right ON keys AND window_start = … AND window_end = …`.
    pub(super) fn window_join(
        &mut self,
        left: Rel,
        right: Rel,
        shape: WindowShape,
        on: &Expr,
    ) -> Result<Rel, String> {
        let (keys, windows, rest) = self.keys_and_rest(&left, &right, on);
        let both_windows = [ColRef::WindowStart, ColRef::WindowEnd]
            .iter()
            .all(|w| windows.iter().any(|(l, r)| l == w && r == w));
        if keys.is_empty() || !both_windows || windows.len() != 2 || !rest.is_empty() {
            return Err("a window join: expected ON the keys of both sides equal AND \
                        L.window_start = R.window_start AND L.window_end = R.window_end, nothing else"
                .into());
        }
        let (left_keys, right_keys): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let (lk, rk) = (
            self.key_by(&left.stream, &left_keys),
            self.key_by(&right.stream, &right_keys),
        );
        let mut fields = left_keys.clone();
        fields.extend(["window_start".to_string(), "window_end".to_string()]);
        let renamed = self.join_fields(&left, &right, &left_keys, &right_keys, &rk, &mut fields);
        let stream = self.add_operator(
            "join",
            &[&lk, &rk],
            OperatorKind::WindowJoin { shape },
            fields,
            Some("window_end".into()),
        );
        Ok(self.joined(stream, &left, &right, &left_keys, &right_keys, &renamed))
    }

    /// `left JOIN right ON keys AND R.t BETWEEN L.t - INTERVAL … AND L.t + INTERVAL …`
    /// (or the bounds as `>=`/`<=` comparisons, either side first).
    pub(super) fn interval_join(
        &mut self,
        left: Rel,
        right: Rel,
        on: &Expr,
    ) -> Result<Rel, String> {
        let (keys, other_equal, rest) = self.keys_and_rest(&left, &right, on);
        let expected = "an interval join: expected ON the keys of both sides equal AND \
                        R.time BETWEEN L.time - INTERVAL … AND L.time + INTERVAL … (or the two \
                        bounds as >= and <=), on the tables' event-time columns";
        if keys.is_empty() || !other_equal.is_empty() {
            return Err(expected.into());
        }
        let times = (
            self.event_time.get(&left.stream).cloned(),
            self.event_time.get(&right.stream).cloned(),
        );
        let is_time = |side: Side, col: &ColRef| match (side, col, &times) {
            (Side::Left, ColRef::Field(f), (Some(t), _))
            | (Side::Right, ColRef::Field(f), (_, Some(t))) => f == t,
            _ => false,
        };
        // Bounds of r.time - l.time.
        let (mut lower, mut upper) = (None::<i64>, None::<i64>);
        // `a op b` with a and b times of opposite sides: a bound on r - l.
        let mut bound = |a: &Expr, op: &BinaryOperator, b: &Expr| -> Result<(), String> {
            let (Some((sa, ca, oa)), Some((sb, cb, ob))) =
                (time_plus(&left, &right, a), time_plus(&left, &right, b))
            else {
                return Err(expected.into());
            };
            if sa == sb || !is_time(sa, &ca) || !is_time(sb, &cb) {
                return Err(expected.into());
            }
            // a + oa op b + ob, as r - l op' k.
            let (op, k) = if sa == Side::Right {
                (op.clone(), ob - oa)
            } else {
                (flip(op), oa - ob)
            };
            match op {
                BinaryOperator::GtEq => lower = Some(lower.map_or(k, |l| l.max(k))),
                BinaryOperator::Gt => lower = Some(lower.map_or(k + 1, |l| l.max(k + 1))),
                BinaryOperator::LtEq => upper = Some(upper.map_or(k, |u| u.min(k))),
                BinaryOperator::Lt => upper = Some(upper.map_or(k - 1, |u| u.min(k - 1))),
                _ => return Err(expected.into()),
            }
            Ok(())
        };
        for c in rest {
            match c {
                Expr::Between {
                    expr,
                    negated: false,
                    low,
                    high,
                } => {
                    bound(expr, &BinaryOperator::GtEq, low)?;
                    bound(expr, &BinaryOperator::LtEq, high)?;
                }
                Expr::BinaryOp {
                    left: a,
                    op,
                    right: b,
                } => bound(a, op, b)?,
                _ => return Err(expected.into()),
            }
        }
        let (lower, upper) = match (lower, upper) {
            (Some(lower), Some(upper)) => (lower, upper),
            // Keys only: a regular inner join of append-only rows, whose state is
            // kept for the job's life (as Flink's without a state TTL).
            (None, None) => (i64::MIN, i64::MAX),
            _ => return Err(expected.into()),
        };
        if lower > upper {
            return Err(format!(
                "an interval join whose range is empty ({lower} ms to {upper} ms)"
            ));
        }
        Ok(self.interval_join_on(left, right, keys, lower, upper))
    }

    /// `left JOIN table FOR SYSTEM_TIME AS OF left.time ON keys`: an event-time
    /// temporal join (a `temporal_join` of their `key_by`s), each left row with the
    /// table's row of its key valid at the left row's event time. `time` must be
    /// the left side's event-time attribute, and `ON` the keys only.
    pub(super) fn temporal_join(
        &mut self,
        left: Rel,
        right: Rel,
        on: &Expr,
        time: &Expr,
    ) -> Result<Rel, String> {
        let (keys, other_equal, rest) = self.keys_and_rest(&left, &right, on);
        if keys.is_empty() || !other_equal.is_empty() || !rest.is_empty() {
            return Err(
                "a temporal join: expected ON the keys of both sides equal, nothing else".into(),
            );
        }
        let left_time = self.event_time.get(&left.stream).cloned();
        let is_left_time = match (side_of(&left, &right, time), &left_time) {
            (Some((Side::Left, ColRef::Field(f))), Some(t)) => &f == t,
            _ => false,
        };
        let Some(left_time) = left_time.filter(|_| is_left_time) else {
            return Err(format!(
                "FOR SYSTEM_TIME AS OF {time}: expected the left side's event-time attribute ({})",
                self.event_time
                    .get(&left.stream)
                    .map_or("none: it has no WATERMARK", String::as_str)
            ));
        };
        if !self.event_time.contains_key(&right.stream) {
            return Err(
                "a temporal join's versioned table needs event time: expected a WATERMARK on it"
                    .into(),
            );
        }
        let (left_keys, right_keys): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let (lk, rk) = (
            self.key_by(&left.stream, &left_keys),
            self.key_by(&right.stream, &right_keys),
        );
        let mut fields = left_keys.clone();
        let renamed = self.join_fields(&left, &right, &left_keys, &right_keys, &rk, &mut fields);
        let stream = self.add_operator(
            "join",
            &[&lk, &rk],
            OperatorKind::TemporalJoin {
                retention: std::time::Duration::ZERO,
                deleted: self.changelogs.contains(&right.stream).then(|| Located {
                    value: super::CHANGELOG_DELETED.to_string(),
                    at: self.at,
                    path: self.path(),
                }),
            },
            fields,
            Some(left_time),
        );
        Ok(self.joined(stream, &left, &right, &left_keys, &right_keys, &renamed))
    }

    /// Two window aggregations joined `ON` keys and both window columns (Nexmark
    /// q8): an interval join of their results, whose event time is their
    /// `window_end`, with both bounds 0: rows of the same window.
    pub(super) fn window_results_join(
        &mut self,
        left: Rel,
        right: Rel,
        on: &Expr,
    ) -> Result<Rel, String> {
        let (pairs, other_equal, rest) = self.keys_and_rest(&left, &right, on);
        let bound = |f: &str| ColRef::Field(f.to_string()).bound();
        let mut windows = [false, false];
        let mut keys = Vec::new();
        for (l, r) in pairs {
            match (bound(&l), bound(&r)) {
                (Some(a), Some(b)) if a == b => windows[usize::from(a == Bound::End)] = true,
                _ => keys.push((l, r)),
            }
        }
        if keys.is_empty() || windows != [true, true] || !other_equal.is_empty() || !rest.is_empty()
        {
            return Err(
                "a join of two window aggregations: expected ON the keys of both \
                        sides equal AND both window_start and window_end equal, nothing else"
                    .into(),
            );
        }
        Ok(self.interval_join_on(left, right, keys, 0, 0))
    }

    /// An `interval_join` of the `key_by`s of `left` and `right` on the key pairs
    /// `keys`, right rows within `[left time + lower, left time + upper]`.
    fn interval_join_on(
        &mut self,
        left: Rel,
        right: Rel,
        keys: Vec<(String, String)>,
        lower: i64,
        upper: i64,
    ) -> Rel {
        let (left_keys, right_keys): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let (lk, rk) = (
            self.key_by(&left.stream, &left_keys),
            self.key_by(&right.stream, &right_keys),
        );
        let mut fields = left_keys.clone();
        let renamed = self.join_fields(&left, &right, &left_keys, &right_keys, &rk, &mut fields);
        fields.push("event_time".into());
        let stream = self.add_operator(
            "join",
            &[&lk, &rk],
            OperatorKind::IntervalJoin {
                lower,
                upper,
                between_at: Located {
                    value: (),
                    at: self.at,
                    path: self.path(),
                },
            },
            fields,
            Some("event_time".into()),
        );
        self.joined(stream, &left, &right, &left_keys, &right_keys, &renamed)
    }

    /// Appends a join's output fields after the keys (and window) in `fields`: the
    /// left stream's other fields, then the right's, a taken name renamed
    /// `<right input>_<field>` as the runner does; returns the right fields' names.
    fn join_fields(
        &self,
        left: &Rel,
        right: &Rel,
        left_keys: &[String],
        right_keys: &[String],
        right_input: &str,
        fields: &mut Vec<String>,
    ) -> HashMap<String, String> {
        fields.extend(
            self.stream_fields(&left.stream)
                .into_iter()
                .filter(|f| !left_keys.contains(f)),
        );
        let mut renamed = HashMap::new();
        for f in self.stream_fields(&right.stream) {
            if right_keys.contains(&f) {
                continue;
            }
            let name = if fields.contains(&f) {
                format!("{right_input}_{f}")
            } else {
                f.clone()
            };
            fields.push(name.clone());
            renamed.insert(f, name);
        }
        renamed
    }

    /// The columns of both sides as fields of the join's output `stream`.
    fn joined(
        &self,
        stream: String,
        left: &Rel,
        right: &Rel,
        left_keys: &[String],
        right_keys: &[String],
        renamed: &HashMap<String, String>,
    ) -> Rel {
        let window = |r: &ColRef| match r {
            ColRef::WindowStart => Some(ColRef::Field("window_start".into())),
            ColRef::WindowEnd | ColRef::WindowTime => Some(ColRef::Field("window_end".into())),
            _ => None,
        };
        let mut cols: Vec<Col> = left
            .cols
            .iter()
            .map(|c| Col {
                r: window(&c.r).unwrap_or_else(|| c.r.clone()),
                ..c.clone()
            })
            .collect();
        cols.extend(right.cols.iter().map(|c| {
            let r = window(&c.r).unwrap_or_else(|| match &c.r {
                ColRef::Field(f) => match right_keys.iter().position(|k| k == f) {
                    Some(i) => ColRef::Field(left_keys[i].clone()),
                    None => ColRef::Field(renamed.get(f).cloned().unwrap_or_else(|| f.clone())),
                },
                r => r.clone(),
            });
            Col { r, ..c.clone() }
        }));
        Rel {
            stream,
            cols,
            shape: Shape::Rows,
        }
    }
}

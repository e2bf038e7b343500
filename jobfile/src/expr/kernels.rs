//! Expressions evaluated on a whole [`Batch`], one column at a time, with exactly
//! the results of [`Expr::eval`] on each row.
//!
//! Each node of the expression gives a [`Datum`]: a constant, a column of the batch
//! (borrowed, never copied) or a column it computed. Arithmetic and comparisons of
//! numbers, strings and bools run as loops over typed columns (the `wrapping_`
//! functions are operators too), as do the conversions that cannot fail (`to_float`
//! of an int, `to_timestamp` of an int, `to_int` of a timestamp or a bool); other
//! functions go value by value. `and`, `or` and `if` evaluate their later operands
//! only on the rows that reach them (a mask of active rows), as the row evaluator's
//! short-circuit does, so a division by zero on a row that `if` does not take is no
//! error here either.
//! When a row fails, the rows are evaluated again one by one with [`Expr::eval`] to
//! report the first failing row exactly as the row path does.

use super::{binary, call, negate, truthy, BinaryOp, EvalError, Expr, ExprKind, Function};
use crate::batch::{Batch, Column};
use crate::row::{FieldType, Str, Value};

/// The value of an expression node for every row of a batch.
enum Datum<'a> {
    Scalar(Value),
    Borrowed(&'a Column),
    Owned(Column),
}

impl Datum<'_> {
    fn column(&self) -> Option<&Column> {
        match self {
            Self::Scalar(_) => None,
            Self::Borrowed(c) => Some(c),
            Self::Owned(c) => Some(c),
        }
    }

    #[inline]
    fn value(&self, i: usize) -> Value {
        match self {
            Self::Scalar(v) => v.clone(),
            Self::Borrowed(c) => c.value(i),
            Self::Owned(c) => c.value(i),
        }
    }

    /// Strings as shared values.
    fn texts(&self) -> Option<Texts<'_>> {
        match self {
            Self::Scalar(Value::String(s)) => Some(Texts::Scalar(s)),
            _ => match self.column()? {
                Column::String(v) => Some(Texts::Slice(v)),
                _ => None,
            },
        }
    }

    /// Ints and timestamps as a view of i64s.
    fn ints(&self) -> Option<Ints<'_>> {
        match self {
            Self::Scalar(Value::Int(x) | Value::Timestamp(x)) => Some(Ints::Scalar(*x)),
            _ => match self.column()? {
                Column::Int(v) | Column::Timestamp(v) => Some(Ints::Slice(v)),
                _ => None,
            },
        }
    }

    /// Numbers (ints, timestamps, floats) as f64s, as [`Value::as_f64`].
    fn floats(&self) -> Option<Floats<'_>> {
        match self {
            Self::Scalar(Value::Float(x)) => Some(Floats::Scalar(*x)),
            Self::Scalar(Value::Int(x) | Value::Timestamp(x)) => Some(Floats::Scalar(*x as f64)),
            Self::Scalar(_) => None,
            _ => match self.column()? {
                Column::Float(v) => Some(Floats::Slice(v)),
                Column::Int(v) | Column::Timestamp(v) => Some(Floats::Ints(v)),
                _ => None,
            },
        }
    }

    fn bools(&self) -> Option<Bools<'_>> {
        match self {
            Self::Scalar(Value::Bool(b)) => Some(Bools::Scalar(*b)),
            Self::Scalar(_) => Some(Bools::Scalar(false)),
            _ => match self.column()? {
                Column::Bool(v) => Some(Bools::Slice(v)),
                _ => None,
            },
        }
    }

    fn strings(&self) -> Option<Strs<'_>> {
        match self {
            Self::Scalar(Value::String(s)) => Some(Strs::Scalar(s)),
            _ => match self.column()? {
                Column::String(v) => Some(Strs::Slice(v)),
                _ => None,
            },
        }
    }
}

#[derive(Clone, Copy)]
enum Ints<'a> {
    Scalar(i64),
    Slice(&'a [i64]),
}

impl Ints<'_> {
    #[inline(always)]
    fn at(self, i: usize) -> i64 {
        match self {
            Self::Scalar(x) => x,
            Self::Slice(v) => v[i],
        }
    }
}

#[derive(Clone, Copy)]
enum Floats<'a> {
    Scalar(f64),
    Slice(&'a [f64]),
    Ints(&'a [i64]),
}

impl Floats<'_> {
    #[inline(always)]
    fn at(self, i: usize) -> f64 {
        match self {
            Self::Scalar(x) => x,
            Self::Slice(v) => v[i],
            Self::Ints(v) => v[i] as f64,
        }
    }
}

#[derive(Clone, Copy)]
enum Bools<'a> {
    Scalar(bool),
    Slice(&'a [bool]),
}

/// Texts as shared values, to copy into a new column without copying the text.
#[derive(Clone, Copy)]
enum Texts<'a> {
    Scalar(&'a Str),
    Slice(&'a [Str]),
}

impl Texts<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> Str {
        match self {
            Self::Scalar(s) => (*s).clone(),
            Self::Slice(v) => v[i].clone(),
        }
    }
}

#[derive(Clone, Copy)]
enum Strs<'a> {
    Scalar(&'a str),
    Slice(&'a [crate::row::Str]),
}

impl Strs<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> &str {
        match self {
            Self::Scalar(s) => s,
            Self::Slice(v) => &v[i],
        }
    }
}

/// A row failed; [`Expr::eval_batch`] finds which, and why, with the row evaluator.
struct Failed;

/// The rows an operand is evaluated on (`None`: all of them).
type Active<'a> = Option<&'a [bool]>;

#[inline(always)]
fn is_active(active: Active<'_>, i: usize) -> bool {
    active.is_none_or(|a| a[i])
}

impl Expr {
    /// Evaluates the expression on every row of `batch` (of the schema it was
    /// compiled for): the same values as [`Expr::eval`] on each row, as a column of
    /// the expression's type.
    ///
    /// # Errors
    /// The first row (in order) on which [`Expr::eval`] fails, and its error.
    pub fn eval_batch(&self, batch: &Batch) -> Result<Column, (usize, EvalError)> {
        match self.datum(batch, None) {
            Ok(datum) => Ok(self.column_from(datum, batch.len())),
            Err(Failed) => {
                let mut values = Vec::with_capacity(batch.len());
                for i in 0..batch.len() {
                    values.push(self.eval(&batch.row(i)).map_err(|e| (i, e))?);
                }
                Ok(column_of(self.ty, values))
            }
        }
    }

    /// The fields the expression reads (positions in its schema), each once.
    pub fn fields(&self) -> Vec<usize> {
        let mut fields = Vec::new();
        self.collect_fields(&mut fields);
        fields.sort_unstable();
        fields.dedup();
        fields
    }

    fn collect_fields(&self, fields: &mut Vec<usize>) {
        match &self.kind {
            ExprKind::Literal(_) => {}
            ExprKind::Field(i) => fields.push(*i),
            ExprKind::Negate(e) | ExprKind::Not(e) => e.collect_fields(fields),
            ExprKind::Binary(_, a, b) => {
                a.collect_fields(fields);
                b.collect_fields(fields);
            }
            ExprKind::Call(_, args) => args.iter().for_each(|a| a.collect_fields(fields)),
        }
    }

    fn column_from(&self, datum: Datum<'_>, len: usize) -> Column {
        match datum {
            Datum::Owned(column) => column,
            Datum::Borrowed(column) => column.clone(),
            Datum::Scalar(value) => column_of(self.ty, vec![value; len]),
        }
    }

    fn datum<'b>(&self, batch: &'b Batch, active: Active<'_>) -> Result<Datum<'b>, Failed> {
        let n = batch.len();
        Ok(match &self.kind {
            ExprKind::Literal(v) => Datum::Scalar(v.clone()),
            ExprKind::Field(i) => match batch.column(*i) {
                Column::Pruned => return Err(Failed),
                column => Datum::Borrowed(column),
            },
            ExprKind::Negate(e) => {
                let operand = e.datum(batch, active)?;
                match operand.column().and_then(Column::field_type) {
                    Some(FieldType::Int) => {
                        let Some(Ints::Slice(v)) = operand.ints() else {
                            return Err(Failed);
                        };
                        let mut out = Vec::with_capacity(n);
                        for (i, &x) in v.iter().enumerate() {
                            match x.checked_neg() {
                                Some(y) => out.push(y),
                                None if is_active(active, i) => return Err(Failed),
                                None => out.push(0),
                            }
                        }
                        Datum::Owned(Column::Int(out))
                    }
                    Some(FieldType::Float | FieldType::Timestamp) => {
                        let Some(v) = operand.floats() else {
                            return Err(Failed);
                        };
                        Datum::Owned(Column::Float((0..n).map(|i| -v.at(i)).collect()))
                    }
                    _ => per_value(self.ty, n, active, |i| {
                        negate(operand.value(i)).map_err(|_| Failed)
                    })?,
                }
            }
            ExprKind::Not(e) => {
                let operand = e.datum(batch, active)?;
                match operand.column() {
                    Some(Column::Bool(v)) => {
                        Datum::Owned(Column::Bool(v.iter().map(|b| !b).collect()))
                    }
                    _ => per_value(FieldType::Bool, n, active, |i| {
                        Ok(Value::Bool(!truthy(&operand.value(i))))
                    })?,
                }
            }
            ExprKind::Binary(op @ (BinaryOp::And | BinaryOp::Or), a, b) => {
                let left = a.datum(batch, active)?;
                let left = bools_of(&left, n);
                // The right side runs only where the left does not decide.
                let reaches: Vec<bool> = (0..n)
                    .map(|i| is_active(active, i) && (left[i] == (*op == BinaryOp::And)))
                    .collect();
                let right = if reaches.iter().any(|&r| r) {
                    bools_of(&b.datum(batch, Some(&reaches))?, n)
                } else {
                    vec![false; n]
                };
                let out = (0..n)
                    .map(|i| match op {
                        BinaryOp::And => left[i] && right[i],
                        _ => left[i] || right[i],
                    })
                    .collect();
                Datum::Owned(Column::Bool(out))
            }
            ExprKind::Binary(op, a, b) => {
                let (mut left, mut right) = (a.datum(batch, active)?, b.datum(batch, active)?);
                // An int column computed here, against a literal: the result in its
                // place, without a new column.
                if let (
                    Datum::Owned(Column::Int(v) | Column::Timestamp(v)),
                    Datum::Scalar(Value::Int(y)),
                ) = (&mut left, &right)
                {
                    if in_place(*op, v, *y)? {
                        return Ok(left);
                    }
                }
                let commutes = matches!(
                    op,
                    BinaryOp::Add | BinaryOp::Mul | BinaryOp::WrappingAdd | BinaryOp::WrappingMul
                );
                if let (Datum::Scalar(Value::Int(y)), Datum::Owned(Column::Int(v)), true) =
                    (&left, &mut right, commutes)
                {
                    if in_place(*op, v, *y)? {
                        return Ok(right);
                    }
                }
                binary_datum(*op, self.ty, &left, &right, n, active)?
            }
            ExprKind::Call(Function::If, args) => {
                if let Some(datum) = self.switch(batch, active)? {
                    return Ok(datum);
                }
                let condition = bools_of(&args[0].datum(batch, active)?, n);
                let then_rows: Vec<bool> = (0..n)
                    .map(|i| is_active(active, i) && condition[i])
                    .collect();
                let else_rows: Vec<bool> = (0..n)
                    .map(|i| is_active(active, i) && !condition[i])
                    .collect();
                let then = args[1].datum(batch, Some(&then_rows))?;
                let otherwise = args[2].datum(batch, Some(&else_rows))?;
                if let (Some(a), Some(b)) = (then.texts(), otherwise.texts()) {
                    let chosen = (0..n).map(|i| if condition[i] { a.get(i) } else { b.get(i) });
                    return Ok(Datum::Owned(Column::String(chosen.collect())));
                }
                per_value(self.ty, n, None, |i| {
                    let chosen = if condition[i] { &then } else { &otherwise };
                    Ok(super::coerce(chosen.value(i), self.ty))
                })?
            }
            ExprKind::Call(function, args) => {
                let mut args = args
                    .iter()
                    .map(|a| a.datum(batch, active))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(column) = args[0].column().and_then(|c| convert(*function, c)) {
                    return Ok(Datum::Owned(column));
                }
                if let (Function::Abs, Some(Datum::Owned(Column::Int(v)))) =
                    (function, args.first_mut())
                {
                    // A column computed here: in its place.
                    abs_in_place(v, active)?;
                    return Ok(args.swap_remove(0));
                }
                if let (Function::Abs, Some(Column::Int(v))) = (function, args[0].column()) {
                    let mut v = v.clone();
                    abs_in_place(&mut v, active)?;
                    return Ok(Datum::Owned(Column::Int(v)));
                }
                if let [text, start, length] = args.as_slice() {
                    if let (Function::Substring, Some(text), Some(start), Some(length)) =
                        (function, text.texts(), start.ints(), length.ints())
                    {
                        return substrings(text, start, length, n, active).map(Datum::Owned);
                    }
                }
                let mut values = Vec::with_capacity(args.len());
                per_value(self.ty, n, active, |i| {
                    values.clear();
                    values.extend(args.iter().map(|a| a.value(i)));
                    call(*function, &values).map_err(|_| Failed)
                })?
            }
        })
    }
}

impl Expr {
    /// SQL's `CASE s WHEN k1 THEN v1 WHEN k2 THEN v2 … ELSE v END`, as the chain of
    /// `if`s it is written as (`if(s = k1, v1, if(s = k2, v2, … v))`), for an int
    /// subject, int literal keys and literal texts or ints as values: the subject
    /// evaluated once and each row's value looked up, instead of the subject, two
    /// masks and a column for every `WHEN`. `None` for any other shape.
    fn switch<'b>(
        &self,
        batch: &'b Batch,
        active: Active<'_>,
    ) -> Result<Option<Datum<'b>>, Failed> {
        let mut subject: Option<&Expr> = None;
        let mut arms: Vec<(i64, &Value)> = Vec::new();
        let mut node = self;
        let otherwise = loop {
            match &node.kind {
                ExprKind::Call(Function::If, args) => {
                    let [condition, then, rest] = args.as_slice() else {
                        return Ok(None);
                    };
                    let (ExprKind::Binary(BinaryOp::Eq, s, key), ExprKind::Literal(value)) =
                        (&condition.kind, &then.kind)
                    else {
                        return Ok(None);
                    };
                    let ExprKind::Literal(Value::Int(key)) = key.kind else {
                        return Ok(None);
                    };
                    if s.ty != FieldType::Int || subject.is_some_and(|x| x != &**s) {
                        return Ok(None);
                    }
                    subject = Some(s);
                    arms.push((key, value));
                    node = rest;
                }
                ExprKind::Literal(value) => break value,
                _ => return Ok(None),
            }
        };
        let Some(subject) = subject.filter(|_| arms.len() > 1) else {
            return Ok(None);
        };
        let pick = |x: i64| {
            arms.iter()
                .find(|(k, _)| *k == x)
                .map_or(otherwise, |(_, v)| v)
        };
        let values = || arms.iter().map(|(_, v)| *v).chain([otherwise]);
        let keys = subject.datum(batch, active)?;
        let Some(Ints::Slice(keys)) = keys.ints() else {
            return Ok(None);
        };
        let keys = &keys[..batch.len()];
        Ok(match self.ty {
            FieldType::String if values().all(|v| matches!(v, Value::String(Str::Static(_)))) => {
                let text = |v: &Value| match v {
                    Value::String(Str::Static(text)) => *text,
                    _ => "",
                };
                Some(Datum::Owned(Column::String(
                    keys.iter().map(|&x| Str::Static(text(pick(x)))).collect(),
                )))
            }
            FieldType::Int if values().all(|v| matches!(v, Value::Int(_))) => {
                let int = |v: &Value| match v {
                    Value::Int(x) => *x,
                    _ => 0,
                };
                Some(Datum::Owned(Column::Int(
                    keys.iter().map(|&x| int(pick(x))).collect(),
                )))
            }
            _ => None,
        })
    }
}

/// `substring` of every row: a part of a text that lives as long as the program
/// is one too, without a copy; a negative length on an active row fails.
fn substrings(
    text: Texts<'_>,
    start: Ints<'_>,
    length: Ints<'_>,
    n: usize,
    active: Active<'_>,
) -> Result<Column, Failed> {
    let mut out = Vec::with_capacity(n);
    if let Texts::Scalar(Str::Static(whole)) = text {
        if whole.is_ascii() {
            // One text, one byte a character: each part is a byte range of it.
            let len = whole.len() as i64;
            if let Ints::Scalar(start) = start {
                // One start: each part is one of the prefixes from it, cut once.
                let from = (start.max(1) - 1).min(len) as usize;
                let parts: Vec<&'static str> =
                    (from..=whole.len()).map(|to| &whole[from..to]).collect();
                // A length reaching before the first character gives the empty part.
                let skipped = start.max(1).saturating_sub(start);
                let longest = parts.len() as i64 - 1;
                for i in 0..n {
                    let length = length.at(i);
                    if length < 0 && is_active(active, i) {
                        return Err(Failed);
                    }
                    let taken = length.saturating_sub(skipped).clamp(0, longest);
                    out.push(Str::Static(parts[taken as usize]));
                }
                return Ok(Column::String(out));
            }
            for i in 0..n {
                let (start, length) = (start.at(i), length.at(i));
                if length < 0 {
                    if is_active(active, i) {
                        return Err(Failed);
                    }
                    out.push(Str::from_static(""));
                    continue;
                }
                let (first, end) = (start.max(1), start.saturating_add(length));
                let (from, to) = if end <= first {
                    (0, 0)
                } else {
                    ((first - 1).min(len) as usize, (end - 1).min(len) as usize)
                };
                out.push(Str::Static(&whole[from..to]));
            }
            return Ok(Column::String(out));
        }
    }
    for i in 0..n {
        let part = match text.get(i) {
            Str::Static(whole) => {
                super::substring(whole, start.at(i), length.at(i)).map(Str::Static)
            }
            shared => super::substring(&shared, start.at(i), length.at(i)).map(Str::from),
        };
        match part {
            Ok(part) => out.push(part),
            Err(_) if is_active(active, i) => return Err(Failed),
            Err(_) => out.push(Str::from_static("")),
        }
    }
    Ok(Column::String(out))
}

/// Whether an `abs` result is negative (only `abs(i64::MIN)` is) on a row that
/// runs: the sign of all results OR-ed together first, a loop without branches.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn negative_on_active(v: &[i64], active: Active<'_>) -> bool {
    v.iter().fold(0, |signs, &y| signs | y) < 0
        && v.iter()
            .enumerate()
            .any(|(i, &y)| y < 0 && is_active(active, i))
}

/// `abs` of every int of `v`, in its place; overflow (of `i64::MIN`) on an active
/// row fails.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn abs_in_place(v: &mut [i64], active: Active<'_>) -> Result<(), Failed> {
    v.iter_mut().for_each(|x| *x = x.wrapping_abs());
    if negative_on_active(v, active) {
        return Err(Failed);
    }
    Ok(())
}

/// `function` of every value of `column`, if it is a conversion that cannot fail
/// (so inactive rows need no care).
fn convert(function: Function, column: &Column) -> Option<Column> {
    Some(match (function, column) {
        (Function::ToTimestamp, Column::Int(v)) => Column::Timestamp(v.clone()),
        (Function::ToInt, Column::Timestamp(v)) => Column::Int(v.clone()),
        (Function::ToInt, Column::Bool(v)) => {
            Column::Int(v.iter().map(|&b| i64::from(b)).collect())
        }
        (Function::ToFloat, Column::Int(v)) => Column::Float(v.iter().map(|&x| x as f64).collect()),
        _ => return None,
    })
}

/// A bool per row (`truthy`: anything but `true` is false).
fn bools_of(datum: &Datum<'_>, n: usize) -> Vec<bool> {
    match datum.bools() {
        Some(Bools::Slice(v)) => v.to_vec(),
        Some(Bools::Scalar(b)) => vec![b; n],
        None => (0..n).map(|i| truthy(&datum.value(i))).collect(),
    }
}

/// A column of type `ty` from values (of that type, as the row evaluator makes them;
/// another number is converted, so the column keeps one value per row).
fn column_of(ty: FieldType, values: Vec<Value>) -> Column {
    let mut column = Column::with_capacity(ty, values.len());
    for value in values {
        push_as(&mut column, ty, value);
    }
    column
}

/// Appends `value` to `column` (of type `ty`), converted to `ty` if it is not.
#[inline]
fn push_as(column: &mut Column, ty: FieldType, value: Value) {
    let value = match (ty, value) {
        (FieldType::Int, v) if v.field_type() != ty => Value::Int(v.as_i64()),
        (FieldType::Timestamp, v) if v.field_type() != ty => Value::Timestamp(v.as_i64()),
        (FieldType::Float, v) if v.field_type() != ty => Value::Float(v.as_f64()),
        (FieldType::Bool, v) if v.field_type() != ty => Value::Bool(truthy(&v)),
        (FieldType::String, v) if v.field_type() != ty => Value::String(super::text(&v).into()),
        (_, v) => v,
    };
    // The value has the column's type now.
    let _ = column.push(value);
}

/// Evaluates `f` on each active row (inactive rows get a placeholder of type `ty`).
fn per_value(
    ty: FieldType,
    n: usize,
    active: Active<'_>,
    mut f: impl FnMut(usize) -> Result<Value, Failed>,
) -> Result<Datum<'static>, Failed> {
    let placeholder = match ty {
        FieldType::Int => Value::Int(0),
        FieldType::Float => Value::Float(0.0),
        FieldType::Bool => Value::Bool(false),
        FieldType::String => Value::String(crate::row::Str::from_static("")),
        FieldType::Timestamp => Value::Timestamp(0),
    };
    let mut column = Column::with_capacity(ty, n);
    for i in 0..n {
        let value = if is_active(active, i) {
            f(i)?
        } else {
            placeholder.clone()
        };
        push_as(&mut column, ty, value);
    }
    Ok(Datum::Owned(column))
}

fn binary_datum(
    op: BinaryOp,
    ty: FieldType,
    left: &Datum<'_>,
    right: &Datum<'_>,
    n: usize,
    active: Active<'_>,
) -> Result<Datum<'static>, Failed> {
    use BinaryOp::*;
    let comparison = matches!(op, Eq | Ne | Lt | Le | Gt | Ge);
    if let (Datum::Scalar(a), Datum::Scalar(b)) = (left, right) {
        return binary(op, ty, a.clone(), b.clone())
            .map(Datum::Scalar)
            .map_err(|_| Failed);
    }
    let decide = move |ordering: Option<std::cmp::Ordering>| {
        let ordering = ordering.unwrap_or(std::cmp::Ordering::Less);
        match op {
            Eq => ordering.is_eq(),
            Ne => ordering.is_ne(),
            Lt => ordering.is_lt(),
            Le => ordering.is_le(),
            Gt => ordering.is_gt(),
            _ => ordering.is_ge(),
        }
    };
    let float_involved = |d: &Datum<'_>| {
        matches!(d, Datum::Scalar(Value::Float(_))) || matches!(d.column(), Some(Column::Float(_)))
    };
    if comparison {
        if let (Some(a), Some(b)) = (left.strings(), right.strings()) {
            let out = (0..n).map(|i| decide(Some(a.at(i).cmp(b.at(i))))).collect();
            return Ok(Datum::Owned(Column::Bool(out)));
        }
        if float_involved(left) || float_involved(right) {
            if let (Some(a), Some(b)) = (left.floats(), right.floats()) {
                let out = (0..n)
                    .map(|i| decide(a.at(i).partial_cmp(&b.at(i))))
                    .collect();
                return Ok(Datum::Owned(Column::Bool(out)));
            }
        } else if let (Some(a), Some(b)) = (left.ints(), right.ints()) {
            return Ok(Datum::Owned(Column::Bool(compare_ints(op, a, b, n))));
        }
    } else if ty == FieldType::Float {
        if let (Some(a), Some(b)) = (left.floats(), right.floats()) {
            let out = (0..n)
                .map(|i| {
                    let (x, y) = (a.at(i), b.at(i));
                    match op {
                        Add | WrappingAdd => x + y,
                        Sub | WrappingSub => x - y,
                        Mul | WrappingMul => x * y,
                        Div => x / y,
                        _ => x % y,
                    }
                })
                .collect();
            return Ok(Datum::Owned(Column::Float(out)));
        }
    } else if let (Some(a), Some(b)) = (left.ints(), right.ints()) {
        let wrapped = wrapping_ints(op, a, b, n);
        let out = match wrapped {
            Some(out) => out,
            None => checked_ints(op, a, b, n, active)?,
        };
        return Ok(Datum::Owned(if ty == FieldType::Timestamp {
            Column::Timestamp(out)
        } else {
            Column::Int(out)
        }));
    }
    // Anything else (mixed or unusual types): value by value, as the row path.
    let result_ty = if comparison { FieldType::Bool } else { ty };
    per_value(result_ty, n, active, |i| {
        binary(op, ty, left.value(i), right.value(i)).map_err(|_| Failed)
    })
}

/// A comparison `op` of ints, row by row.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn compare_ints(op: BinaryOp, a: Ints<'_>, b: Ints<'_>, n: usize) -> Vec<bool> {
    use BinaryOp::*;
    match op {
        Eq => pairwise_ints(a, b, n, |x, y| x == y),
        Ne => pairwise_ints(a, b, n, |x, y| x != y),
        Lt => pairwise_ints(a, b, n, |x, y| x < y),
        Le => pairwise_ints(a, b, n, |x, y| x <= y),
        Gt => pairwise_ints(a, b, n, |x, y| x > y),
        _ => pairwise_ints(a, b, n, |x, y| x >= y),
    }
}

/// A wrapping `op` of ints (`wrapping_add`, `wrapping_sub`, `wrapping_mul`), row by
/// row; `None` for another operator.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn wrapping_ints(op: BinaryOp, a: Ints<'_>, b: Ints<'_>, n: usize) -> Option<Vec<i64>> {
    use BinaryOp::*;
    Some(match op {
        WrappingAdd => pairwise_ints(a, b, n, i64::wrapping_add),
        WrappingSub => pairwise_ints(a, b, n, i64::wrapping_sub),
        WrappingMul => pairwise_ints(a, b, n, i64::wrapping_mul),
        _ => return None,
    })
}

/// `op` (`+`, `-`, `*`, `/` or `%`) on ints, failing where an active row overflows
/// or divides by zero.
fn checked_ints(
    op: BinaryOp,
    a: Ints<'_>,
    b: Ints<'_>,
    n: usize,
    active: Active<'_>,
) -> Result<Vec<i64>, Failed> {
    use BinaryOp::*;
    // Plain loops where no row can fail: overflow only noted (then the rows are
    // done again below, to fail only on active ones), division by a literal.
    let mut overflow = false;
    let mut noting = |f: fn(i64, i64) -> (i64, bool)| {
        pairwise_ints(a, b, n, |x, y| {
            let (r, o) = f(x, y);
            overflow |= o;
            r
        })
    };
    let fast = match (op, b) {
        (Add, _) => Some(noting(i64::overflowing_add)),
        (Sub, _) => Some(noting(i64::overflowing_sub)),
        (Mul, _) => Some(noting(i64::overflowing_mul)),
        (Div | Rem, Ints::Scalar(y)) if y != 0 && y != -1 => Some(by_literal(op == Div, a, y, n)),
        _ => None,
    };
    if let Some(out) = fast {
        if !overflow {
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (a.at(i), b.at(i));
        let result = match op {
            Add => x.checked_add(y),
            Sub => x.checked_sub(y),
            Mul => x.checked_mul(y),
            Div => x.checked_div(y),
            _ => x.checked_rem(y),
        };
        match result {
            Some(r) => out.push(r),
            None if is_active(active, i) => return Err(Failed),
            None => out.push(0),
        }
    }
    Ok(out)
}

/// `op` of the ints `v` and the literal `y`, written over `v`; `false` where `op`
/// is not done so (comparisons, division by 0 or -1). An overflow fails the
/// batch, which is then evaluated row by row (so only a row that runs fails).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn in_place(op: BinaryOp, v: &mut [i64], y: i64) -> Result<bool, Failed> {
    use BinaryOp::*;
    let overflow = match op {
        Add => each_in_place(v, |x| x.overflowing_add(y)),
        Sub => each_in_place(v, |x| x.overflowing_sub(y)),
        Mul => each_in_place(v, |x| x.overflowing_mul(y)),
        WrappingAdd => each_in_place(v, |x| (x.wrapping_add(y), false)),
        WrappingSub => each_in_place(v, |x| (x.wrapping_sub(y), false)),
        WrappingMul => each_in_place(v, |x| (x.wrapping_mul(y), false)),
        Div | Rem if y != 0 && y != -1 => {
            by_literal_in_place(op == Div, v, y);
            false
        }
        _ => return Ok(false),
    };
    if overflow {
        return Err(Failed);
    }
    Ok(true)
}

/// `f` of every value of `v`, in its place; whether any overflowed.
#[inline(always)]
fn each_in_place(v: &mut [i64], f: impl Fn(i64) -> (i64, bool)) -> bool {
    let mut overflow = false;
    for x in v.iter_mut() {
        let (r, o) = f(*x);
        *x = r;
        overflow |= o;
    }
    overflow
}

/// `a / y` (`divide`) or `a % y` for a literal `y` other than 0 and -1 (so no row
/// fails): a power of two by shifts, else a plain loop.
fn by_literal(divide: bool, a: Ints<'_>, y: i64, n: usize) -> Vec<i64> {
    let mut out = match a {
        Ints::Slice(v) => v[..n.min(v.len())].to_vec(),
        Ints::Scalar(x) => vec![x; n],
    };
    by_literal_in_place(divide, &mut out, y);
    out
}

/// [`by_literal`] written over `v`.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn by_literal_in_place(divide: bool, v: &mut [i64], y: i64) {
    if y > 1 && y & (y - 1) == 0 {
        // Truncating toward zero: negative dividends are biased by y - 1 first.
        // (No step can overflow; wrapping operations say so, without checks.)
        let (k, bias) = (y.trailing_zeros(), y - 1);
        let quotient = move |x: i64| x.wrapping_add((x >> 63) & bias) >> k;
        if divide {
            v.iter_mut().for_each(|x| *x = quotient(*x));
        } else {
            v.iter_mut()
                .for_each(|x| *x = x.wrapping_sub(quotient(*x) << k));
        }
    } else if y.unsigned_abs() >= 2
        && v.iter().fold(y.unsigned_abs(), |m, x| m | x.unsigned_abs()) < EXACT_IN_F64
    {
        // Below 2^51 a float quotient is within half a unit in the last place of
        // the true one, which is at least 1/|y| from any other integer: truncated,
        // it is the integer quotient, at a fraction of an integer division's cost.
        // So is the remainder `x - q * y`: each step is exact on integers this small.
        let divisor = y as f64;
        if multiversion::target::target_cfg_f!(any(
            target_feature = "avx2",
            target_feature = "avx512f"
        )) {
            // Converted through the bits (below, as plain adds), with `trunc` as one
            // instruction: the loop is all vector operations.
            if divide {
                v.iter_mut()
                    .for_each(|x| *x = int_of((float_of(*x) / divisor).trunc()));
            } else {
                v.iter_mut().for_each(|x| {
                    let x_f = float_of(*x);
                    *x = int_of(x_f - (x_f / divisor).trunc() * divisor);
                });
            }
        } else if divide {
            v.iter_mut().for_each(|x| *x = (*x as f64 / divisor) as i64);
        } else {
            v.iter_mut()
                .for_each(|x| *x = x.wrapping_sub(((*x as f64 / divisor) as i64).wrapping_mul(y)));
        }
    } else if divide {
        v.iter_mut().for_each(|x| *x /= y);
    } else {
        v.iter_mut().for_each(|x| *x %= y);
    }
}

/// 1.5 × 2^52: added to an integer-valued float of magnitude below 2^51, it leaves
/// the integer in the low bits of the sum (one unit in the last place there is 1).
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// `x` as a float, for `|x|` below 2^51 (exact there).
#[inline(always)]
fn float_of(x: i64) -> f64 {
    f64::from_bits(x.wrapping_add(MAGIC.to_bits() as i64) as u64) - MAGIC
}

/// The integer an integer-valued float of magnitude below 2^51 holds.
#[inline(always)]
fn int_of(x: f64) -> i64 {
    ((x + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64)
}

/// Ints below this (2^51) divide exactly through floats.
const EXACT_IN_F64: u64 = 1 << 51;

/// `f` of `a` and `b` row by row, with a loop per shape (column against literal,
/// and so on) so that each is a plain loop over slices.
#[inline(always)]
fn pairwise_ints<T: Clone>(
    a: Ints<'_>,
    b: Ints<'_>,
    n: usize,
    mut f: impl FnMut(i64, i64) -> T,
) -> Vec<T> {
    match (a, b) {
        (Ints::Slice(x), Ints::Scalar(y)) => x.iter().take(n).map(|&x| f(x, y)).collect(),
        (Ints::Scalar(x), Ints::Slice(y)) => y.iter().take(n).map(|&y| f(x, y)).collect(),
        (Ints::Slice(x), Ints::Slice(y)) => {
            x.iter().zip(y).take(n).map(|(&x, &y)| f(x, y)).collect()
        }
        (Ints::Scalar(x), Ints::Scalar(y)) => vec![f(x, y); n],
    }
}

#[cfg(test)]
mod tests {
    use crate::batch::{Batch, Column};
    use crate::row::{FieldType, Row, Schema, Value};
    use crate::Expr;
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::new([
            ("i", FieldType::Int),
            ("j", FieldType::Int),
            ("x", FieldType::Float),
            ("s", FieldType::String),
            ("t", FieldType::Timestamp),
            ("b", FieldType::Bool),
        ])
    }

    /// A row of [`schema`] with these ints, text and timestamp (`x` 0.5, `b` true).
    fn row_of(i: i64, j: i64, s: &str, t: i64) -> Row {
        Row(vec![
            Value::Int(i),
            Value::Int(j),
            Value::Float(0.5),
            Value::String(s.into()),
            Value::Timestamp(t),
            Value::Bool(true),
        ])
    }

    fn int() -> impl Strategy<Value = i64> {
        prop_oneof![-5i64..5, Just(i64::MIN), Just(i64::MAX), any::<i64>(),]
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            int(),
            int(),
            prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(f64::NAN),
                -10.0f64..10.0,
                Just(1e300)
            ],
            prop_oneof![
                Just(String::new()),
                "[a-c]{0,3}",
                Just("Apple".to_string()),
                // Text that to_int and to_float read (or almost).
                " ?-?[0-9]{1,3}(\\.[0-9])? ?",
                Just("9223372036854775808".to_string()),
            ],
            int(),
            any::<bool>(),
        )
            .prop_map(|(i, j, x, s, t, b)| {
                Row(vec![
                    Value::Int(i),
                    Value::Int(j),
                    Value::Float(x),
                    Value::String(s.into()),
                    Value::Timestamp(t),
                    Value::Bool(b),
                ])
            })
    }

    /// Expressions in the job-file language over the schema; those the type checker
    /// rejects are skipped by the test.
    fn expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("i".to_string()),
            Just("j".to_string()),
            Just("x".to_string()),
            Just("s".to_string()),
            Just("t".to_string()),
            Just("b".to_string()),
            (-3i64..4).prop_map(|n| n.to_string()),
            Just("9223372036854775807".to_string()),
            Just("0.5".to_string()),
            Just("''".to_string()),
            Just("'ab'".to_string()),
            Just("'héllo'".to_string()),
            Just("' -12 '".to_string()),
            Just("true".to_string()),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            let op = prop_oneof![
                Just("+"),
                Just("-"),
                Just("*"),
                Just("/"),
                Just("%"),
                Just("="),
                Just("!="),
                Just("<"),
                Just(">="),
                Just("and"),
                Just("or"),
            ];
            let function = prop_oneof![
                Just("lower"),
                Just("upper"),
                Just("length"),
                Just("abs"),
                Just("concat"),
                Just("to_int"),
                Just("to_float"),
                Just("to_string"),
                Just("to_timestamp"),
            ];
            let function2 = prop_oneof![
                Just("wrapping_add"),
                Just("wrapping_sub"),
                Just("wrapping_mul"),
                Just("mod"),
            ];
            // Arguments that mostly type-check, so that the functions taking two
            // or three of them compile often enough.
            let number = prop_oneof![
                prop_oneof![Just("i"), Just("j"), Just("t"), Just("x")].prop_map(String::from),
                prop_oneof![Just(i64::MAX), Just(i64::MIN + 1), -3i64..4]
                    .prop_map(|n| n.to_string()),
                inner.clone(),
            ];
            let text = prop_oneof![
                Just("s".to_string()),
                Just("'héllo'".to_string()),
                inner.clone(),
            ];
            prop_oneof![
                (inner.clone(), op, inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
                inner.clone().prop_map(|a| format!("-({a})")),
                inner.clone().prop_map(|a| format!("not ({a})")),
                (function, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
                (function2, number.clone(), number.clone())
                    .prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
                (text, number.clone(), number)
                    .prop_map(|(s, a, b)| format!("substring({s}, {a}, {b})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| format!("if({c}, {a}, {b})")),
                // SQL's `CASE s WHEN …`: the same subject in every `if`.
                inner
                    .clone()
                    .prop_map(|s| format!("if({s} = 0, 'x', if({s} = -1, 'y', 'z'))")),
                inner
                    .clone()
                    .prop_map(|s| format!("if({s} = 2, 10, if({s} = 3, 20, 30))")),
                (inner.clone(), inner)
                    .prop_map(|(s, t)| format!("if({s} = 1, 'x', if({t} = 2, 'y', 'z'))")),
            ]
        })
    }

    #[test]
    fn wrapping_arithmetic_and_conversions_run_on_columns() {
        let schema = schema();
        let rows = [i64::MAX, -7_046_029_254_386_353_131, 3].map(|i| row_of(i, 3, " 12", i));
        let batch = Batch::from_rows(&schema, rows).unwrap();
        let eval = |source: &str| Expr::compile(source, &schema).unwrap().eval_batch(&batch);
        assert_eq!(
            eval("wrapping_add(i, 1)").unwrap(),
            Column::Int(vec![i64::MIN, -7_046_029_254_386_353_130, 4])
        );
        assert_eq!(
            eval("wrapping_mul(i, j)").unwrap(),
            Column::Int(vec![
                i64::MAX.wrapping_mul(3),
                -2_691_343_689_449_507_777,
                9
            ])
        );
        assert_eq!(
            eval("wrapping_add(t, 1)").unwrap(),
            Column::Timestamp(vec![i64::MIN, -7_046_029_254_386_353_130, 4])
        );
        assert_eq!(
            eval("to_timestamp(j)").unwrap(),
            Column::Timestamp(vec![3; 3])
        );
        assert_eq!(eval("to_int(b)").unwrap(), Column::Int(vec![1; 3]));
        assert_eq!(eval("to_int(s) * j").unwrap(), Column::Int(vec![36; 3]));
        let (row, error) = eval("i * j").unwrap_err();
        assert_eq!((row, error.0.as_str()), (0, "integer overflow in *"));
    }

    /// Substrings of a literal (byte ranges of one ASCII text, or characters of a
    /// text that is not ASCII) equal the row evaluator's, for every start and
    /// length around the text's bounds; a negative length fails only where it runs.
    #[test]
    fn substrings_of_literals_equal_row_evaluation() {
        let schema = schema();
        let mut rows = Vec::new();
        for start in -3..=12 {
            for length in 0..=12 {
                rows.push(row_of(start, length, "", 0));
            }
        }
        let batch = Batch::from_rows(&schema, rows.clone()).unwrap();
        let literal_starts = (-3..=12)
            .map(|start: i64| start.to_string())
            .chain(["9223372036854775807".into(), "-9223372036854775807".into()])
            .flat_map(|start| {
                [
                    format!("substring('abcdefghij', {start}, j)"),
                    format!("substring('abcdefghij', {start}, 9223372036854775807)"),
                ]
            });
        for source in [
            "substring('abcdefghij', i, j)".to_string(),
            "substring('\u{e9}t\u{e9} caf\u{e9}', i, j)".to_string(),
        ]
        .into_iter()
        .chain(literal_starts)
        {
            let source = source.as_str();
            let expr = Expr::compile(source, &schema).unwrap();
            let column = expr.eval_batch(&batch).unwrap();
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(
                    column.value(i),
                    expr.eval(row).unwrap(),
                    "{source}, row {i}"
                );
            }
        }
        // A negative length fails where it runs, not where `if` does not take it.
        let expr = Expr::compile("if(j > 0, substring('abc', i, 0 - j), 'none')", &schema).unwrap();
        let (row, error) = expr.eval_batch(&batch).unwrap_err();
        assert_eq!((row, error), (1, expr.eval(&rows[1]).unwrap_err()));
        let expr = Expr::compile("if(j < 0, substring('abc', i, j), 'none')", &schema).unwrap();
        assert!(expr.eval_batch(&batch).is_ok());
    }

    /// SQL's `CASE s WHEN k THEN v … ELSE v END` (a chain of `if`s on one subject),
    /// looked up per row, equals the row evaluator, with texts and ints as values; a
    /// subject that fails on a row fails there.
    #[test]
    fn case_chains_equal_row_evaluation() {
        let schema = schema();
        let rows: Vec<Row> = [-5, -1, 0, 1, 2, 3, 4, 7, i64::MAX]
            .into_iter()
            .map(|i| row_of(i, 3, "", 0))
            .collect();
        let batch = Batch::from_rows(&schema, rows.clone()).unwrap();
        for source in [
            "if(mod(abs(i), 4) = 0, 'apple', if(mod(abs(i), 4) = 1, 'google', if(mod(abs(i), 4) = 2, 'facebook', 'baidu')))",
            "if(i = 1, 10, if(i = -1, 20, if(i = 1, 30, 40)))",
            "if(i = 1, 'one', if(j = 3, 'three', 'other'))",
            "if(i * 2 = 4, 'two', if(i * 2 = 2, 'one', 'other'))",
        ] {
            let expr = Expr::compile(source, &schema).unwrap();
            let by_row: Result<Vec<Value>, _> = rows.iter().map(|r| expr.eval(r)).collect();
            match (expr.eval_batch(&batch), by_row) {
                (Ok(column), Ok(values)) => {
                    let batched: Vec<Value> = (0..rows.len()).map(|i| column.value(i)).collect();
                    assert_eq!(batched, values, "{source}");
                }
                (Err((i, e)), Err(expected)) => {
                    assert_eq!(e, expected, "{source}");
                    assert_eq!(i, rows.len() - 1, "{source}");
                }
                (batched, by_row) => panic!("{source}: batch {batched:?}, rows {by_row:?}"),
            }
        }
    }

    /// Division and remainder by a literal (by shifts for a power of two) truncate
    /// toward zero and take the dividend's sign, as the row evaluator does.
    #[test]
    fn division_by_literals_equals_row_evaluation() {
        let schema = schema();
        let values = [
            i64::MIN,
            i64::MIN + 1,
            -4_294_967_297,
            -4_294_967_296,
            -9,
            -8,
            -7,
            -1,
            0,
            1,
            7,
            8,
            9,
            4_294_967_296,
            4_503_599_627_370_494,
            4_503_599_627_370_495,
            -4_503_599_627_370_495,
            i64::MAX,
        ];
        let rows = values.map(|i| row_of(i, 3, "", i));
        let batch = Batch::from_rows(&schema, rows.clone()).unwrap();
        for divisor in [
            "1",
            "2",
            "8",
            "10",
            "57",
            "10000",
            "4294967296",
            "-8",
            "-7",
            "4503599627370495",
            "9223372036854775807",
        ] {
            for op in ["/", "%"] {
                let source = format!("i {op} {divisor}");
                let expr = Expr::compile(&source, &schema).unwrap();
                let by_rows: Vec<i64> = rows
                    .iter()
                    .map(|r| expr.eval(r).unwrap().as_i64())
                    .collect();
                assert_eq!(
                    expr.eval_batch(&batch).unwrap(),
                    Column::Int(by_rows),
                    "{source}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        /// A batch evaluates to the row evaluator's values, row by row, and fails on
        /// the first row the row evaluator fails on, with its message.
        #[test]
        fn batch_evaluation_equals_row_evaluation(
            source in expr(),
            rows in proptest::collection::vec(row(), 0..12),
        ) {
            let schema = schema();
            let Ok(expr) = Expr::compile(&source, &schema) else {
                return Ok(());
            };
            let batch = Batch::from_rows(&schema, rows.clone()).unwrap();
            let by_row: Result<Vec<Value>, (usize, String)> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| expr.eval(row).map_err(|e| (i, e.0)))
                .collect();
            match (expr.eval_batch(&batch), by_row) {
                (Ok(column), Ok(values)) => {
                    let batched: Vec<Value> = (0..rows.len()).map(|i| column.value(i)).collect();
                    prop_assert_eq!(batched, values, "{}", source);
                }
                (Err((i, e)), Err((j, message))) => {
                    prop_assert_eq!((i, e.0), (j, message), "{}", source);
                }
                (batched, by_row) => {
                    prop_assert!(false, "{source}: batch {batched:?}, rows {by_row:?}");
                }
            }
        }

        /// A key read from a batch column is the row's key: equal, and hashed to the
        /// same key group.
        #[test]
        fn keys_from_batch_columns_equal_the_rows_keys(
            rows in proptest::collection::vec(row(), 1..8),
            fields in proptest::collection::vec(0usize..6, 1..3),
        ) {
            let batch = Batch::from_rows(&schema(), rows.clone()).unwrap();
            let max = weir_state::MaxParallelism::DEFAULT;
            for (i, row) in rows.iter().enumerate() {
                let (from_batch, from_row) = (batch.key(&fields, i), crate::Key::of(row, &fields));
                let group = |key: &crate::Key| {
                    weir_state::key_group_for_hash(weir_state::stable_hash(key), max)
                };
                prop_assert_eq!(group(&from_batch), group(&from_row));
                prop_assert_eq!(from_batch, from_row);
            }
        }
    }

    proptest! {
        /// Division and remainder by a literal other than 0 and -1, however done
        /// (shifts, floats below 2^51, integer division), equal Rust's `/` and `%`.
        #[test]
        fn division_in_place_equals_integer_division(
            values in prop_oneof![
                prop::collection::vec(any::<i64>(), 1..50),
                prop::collection::vec(-(1i64 << 51) + 1..(1i64 << 51), 1..50),
                prop::collection::vec(-(1i64 << 52)..(1i64 << 52), 1..50),
                prop::collection::vec(-1000i64..1000, 1..50),
            ],
            y in prop_oneof![
                any::<i64>(),
                -(1i64 << 51) + 1..(1i64 << 51),
                -(1i64 << 52)..(1i64 << 52),
                -100i64..100,
            ],
        ) {
            prop_assume!(y != 0 && y != -1);
            for divide in [true, false] {
                let mut v = values.clone();
                super::by_literal_in_place(divide, &mut v, y);
                let expected: Vec<i64> = values
                    .iter()
                    .map(|&x| if divide { x / y } else { x % y })
                    .collect();
                prop_assert_eq!(&v, &expected, "divide {} by {}", divide, y);
            }
        }
    }
}

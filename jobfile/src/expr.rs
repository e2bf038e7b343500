//! The expression language of `filter` and `map`: literals, field references,
//! arithmetic, comparisons, `and`/`or`/`not`, parentheses and a few functions,
//! type-checked against the input schema when the job is validated.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := sum (("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := INT | FLOAT | STRING | "true" | "false" | FIELD
//!          | FUNCTION "(" (expr ("," expr)*)? ")" | "(" expr ")"
//! ```
//!
//! The functions:
//!
//! - `lower(s)`, `upper(s)`, `length(s)` (in characters), `concat(a, …)` (any
//!   values, as text), `abs(n)`, `if(condition, a, b)`;
//! - `substring(s, start, length)`: SQL's `SUBSTRING(s FROM start FOR length)`, the
//!   characters at positions `[start, start + length)` that lie in `1..=length(s)`;
//! - `to_int(x)`, `to_float(x)`, `to_string(x)`, `to_timestamp(x)`: conversions
//!   (SQL's `CAST`; `to_timestamp` reads an int as milliseconds since the epoch);
//! - `wrapping_add(a, b)`, `wrapping_sub(a, b)`, `wrapping_mul(a, b)`: `+`, `-` and
//!   `*` whose integer overflow wraps around (as Java's `long`) instead of failing;
//! - `mod(a, b)`: `a % b`.

mod kernels;
mod parse;

use crate::row::{FieldType, Row, Schema, Str, Value};
use std::fmt;

/// A compiled, type-checked expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    kind: ExprKind,
    ty: FieldType,
}

#[derive(Clone, Debug, PartialEq)]
enum ExprKind {
    Literal(Value),
    Field(usize),
    Negate(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    WrappingAdd,
    WrappingSub,
    WrappingMul,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Function {
    Lower,
    Upper,
    Concat,
    Abs,
    If,
    Length,
    Substring,
    ToInt,
    ToFloat,
    ToString,
    ToTimestamp,
}

/// What a function's name compiles to.
#[derive(Clone, Copy, Debug)]
enum Callee {
    Function(Function),
    /// An operator's node: `mod(a, b)` is `a % b`, `wrapping_add(a, b)` is an
    /// addition of its own.
    Operator(BinaryOp),
}

/// The functions, by name, in the order the "unknown function" error lists them.
const FUNCTIONS: [(&str, Callee); 15] = [
    ("lower", Callee::Function(Function::Lower)),
    ("upper", Callee::Function(Function::Upper)),
    ("concat", Callee::Function(Function::Concat)),
    ("length", Callee::Function(Function::Length)),
    ("substring", Callee::Function(Function::Substring)),
    ("abs", Callee::Function(Function::Abs)),
    ("if", Callee::Function(Function::If)),
    ("to_int", Callee::Function(Function::ToInt)),
    ("to_float", Callee::Function(Function::ToFloat)),
    ("to_string", Callee::Function(Function::ToString)),
    ("to_timestamp", Callee::Function(Function::ToTimestamp)),
    ("mod", Callee::Operator(BinaryOp::Rem)),
    ("wrapping_add", Callee::Operator(BinaryOp::WrappingAdd)),
    ("wrapping_sub", Callee::Operator(BinaryOp::WrappingSub)),
    ("wrapping_mul", Callee::Operator(BinaryOp::WrappingMul)),
];

/// A syntax or type error in an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Where in the expression, in characters from 0.
    pub offset: usize,
    /// What was expected.
    pub message: String,
}

/// An error while evaluating an expression on a row (division by zero, overflow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Expr {
    /// Parses and type-checks `source` against `schema`.
    ///
    /// # Errors
    /// The first syntax or type error, with its offset in `source`.
    pub fn compile(source: &str, schema: &Schema) -> Result<Expr, ExprError> {
        parse::compile(source, schema)
    }

    /// The type of the expression's values.
    pub fn ty(&self) -> FieldType {
        self.ty
    }

    /// The field this expression reads if it is a bare field reference.
    pub fn as_field(&self) -> Option<usize> {
        match self.kind {
            ExprKind::Field(i) => Some(i),
            _ => None,
        }
    }

    /// Evaluates the expression on `row` (a row of the schema it was compiled for).
    ///
    /// # Errors
    /// Integer division or remainder by zero, integer overflow (except in the
    /// `wrapping_` functions), a negative `substring` length, and a conversion
    /// without a result (`to_int` of text that is no integer, of NaN or of a float
    /// beyond the int range; `to_float` of text that is no number).
    pub fn eval(&self, row: &Row) -> Result<Value, EvalError> {
        Ok(match &self.kind {
            ExprKind::Literal(v) => v.clone(),
            ExprKind::Field(i) => row
                .0
                .get(*i)
                .cloned()
                .ok_or_else(|| EvalError(format!("row has no field {i}")))?,
            ExprKind::Negate(e) => negate(e.eval(row)?)?,
            ExprKind::Not(e) => Value::Bool(!truthy(&e.eval(row)?)),
            ExprKind::Binary(BinaryOp::And, a, b) => {
                Value::Bool(truthy(&a.eval(row)?) && truthy(&b.eval(row)?))
            }
            ExprKind::Binary(BinaryOp::Or, a, b) => {
                Value::Bool(truthy(&a.eval(row)?) || truthy(&b.eval(row)?))
            }
            ExprKind::Binary(op, a, b) => binary(*op, self.ty, a.eval(row)?, b.eval(row)?)?,
            ExprKind::Call(Function::If, args) => {
                let chosen = if truthy(&args[0].eval(row)?) {
                    &args[1]
                } else {
                    &args[2]
                };
                coerce(chosen.eval(row)?, self.ty)
            }
            ExprKind::Call(function, args) => {
                let values = args
                    .iter()
                    .map(|a| a.eval(row))
                    .collect::<Result<Vec<_>, _>>()?;
                call(*function, &values)?
            }
        })
    }
}

fn negate(v: Value) -> Result<Value, EvalError> {
    Ok(match v {
        Value::Int(i) => Value::Int(
            i.checked_neg()
                .ok_or_else(|| EvalError("integer overflow in negation".into()))?,
        ),
        v => Value::Float(-v.as_f64()),
    })
}

fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

fn coerce(v: Value, ty: FieldType) -> Value {
    match (ty, v) {
        (FieldType::Float, Value::Int(i)) => Value::Float(i as f64),
        (_, v) => v,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) | Value::Timestamp(i) => i.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
    }
}

/// String literal `text` as text that lives as long as the program, each distinct
/// text stored once: rows take literals (and their substrings) without a copy or
/// a reference count, as the generators' static texts.
fn interned(text: String) -> &'static str {
    static TEXTS: std::sync::Mutex<Option<std::collections::HashSet<&'static str>>> =
        std::sync::Mutex::new(None);
    let mut texts = TEXTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let texts = texts.get_or_insert_with(Default::default);
    if let Some(&known) = texts.get(text.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    texts.insert(leaked);
    leaked
}

fn call(function: Function, args: &[Value]) -> Result<Value, EvalError> {
    let first = args.first().cloned().unwrap_or(Value::Int(0));
    let int = |i: usize| args.get(i).map_or(0, Value::as_i64);
    Ok(match function {
        Function::Lower => Value::String(text(&first).to_lowercase().into()),
        Function::Upper => Value::String(text(&first).to_uppercase().into()),
        Function::Length => Value::Int(text(&first).chars().count() as i64),
        Function::Concat => Value::String(args.iter().map(text).collect::<String>().into()),
        Function::Abs => match first {
            Value::Int(i) => Value::Int(
                i.checked_abs()
                    .ok_or_else(|| EvalError("integer overflow in abs".into()))?,
            ),
            v => Value::Float(v.as_f64().abs()),
        },
        Function::If => first,
        Function::Substring => match &first {
            // A part of a text that lives as long as the program is one too.
            Value::String(Str::Static(whole)) => {
                Value::String(Str::Static(substring(whole, int(1), int(2))?))
            }
            v => Value::String(substring(&text(v), int(1), int(2))?.into()),
        },
        Function::ToInt => Value::Int(to_int(&first)?),
        Function::ToFloat => Value::Float(to_float(&first)?),
        Function::ToString => Value::String(text(&first).into()),
        Function::ToTimestamp => Value::Timestamp(first.as_i64()),
    })
}

/// SQL's `SUBSTRING(s FROM start FOR length)`: the characters of `s` at positions
/// (from 1) in `[start, start + length)`; those before position 1 count against
/// `length`, as in Calcite.
fn substring(s: &str, start: i64, length: i64) -> Result<&str, EvalError> {
    if length < 0 {
        return Err(EvalError(format!(
            "negative substring length {length} in substring"
        )));
    }
    let (first, end) = (start.max(1), start.saturating_add(length));
    if end <= first {
        return Ok("");
    }
    let skip = usize::try_from(first - 1).unwrap_or(usize::MAX);
    let take = usize::try_from(end - first).unwrap_or(usize::MAX);
    if s.is_ascii() {
        // One byte a character.
        let from = skip.min(s.len());
        return Ok(&s[from..from.saturating_add(take).min(s.len())]);
    }
    let Some((from, _)) = s.char_indices().nth(skip) else {
        return Ok("");
    };
    let to = s[from..]
        .char_indices()
        .nth(take)
        .map_or(s.len(), |(i, _)| from + i);
    Ok(&s[from..to])
}

/// SQL's `CAST(v AS BIGINT)`: floats truncated toward zero, timestamps as their
/// milliseconds, bools as 0 or 1, text read as a (trimmed) integer.
fn to_int(v: &Value) -> Result<i64, EvalError> {
    /// 2^63: floats in `[-2^63, 2^63)` truncate to an int.
    const INT_BOUND: f64 = 9_223_372_036_854_775_808.0;
    match v {
        Value::Int(i) | Value::Timestamp(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Float(x) if x.is_nan() => {
            Err(EvalError("to_int of NaN: a NaN has no int value".into()))
        }
        Value::Float(x) if (-INT_BOUND..INT_BOUND).contains(x) => Ok(*x as i64),
        Value::Float(x) => Err(EvalError(format!("to_int of {x}: beyond the int range"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| EvalError(format!("to_int of '{s}': expected an integer"))),
    }
}

/// SQL's `CAST(v AS DOUBLE)`: numbers as floats, text read as a (trimmed) number.
fn to_float(v: &Value) -> Result<f64, EvalError> {
    match v {
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| EvalError(format!("to_float of '{s}': expected a number"))),
        v => Ok(v.as_f64()),
    }
}

fn overflow(op: BinaryOp) -> EvalError {
    EvalError(format!("integer overflow in {}", op.symbol()))
}

fn binary(op: BinaryOp, ty: FieldType, a: Value, b: Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    if let Some(ordering) = matches!(op, Eq | Ne | Lt | Le | Gt | Ge).then(|| compare(&a, &b)) {
        let ordering = ordering.unwrap_or(std::cmp::Ordering::Less);
        return Ok(Value::Bool(match op {
            Eq => ordering.is_eq(),
            Ne => ordering.is_ne(),
            Lt => ordering.is_lt(),
            Le => ordering.is_le(),
            Gt => ordering.is_gt(),
            _ => ordering.is_ge(),
        }));
    }
    if ty == FieldType::Float {
        let (x, y) = (a.as_f64(), b.as_f64());
        return Ok(Value::Float(match op {
            Add | WrappingAdd => x + y,
            Sub | WrappingSub => x - y,
            Mul | WrappingMul => x * y,
            Div => x / y,
            _ => x % y,
        }));
    }
    let (x, y) = (a.as_i64(), b.as_i64());
    let result = match op {
        Add => x.checked_add(y).ok_or_else(|| overflow(op))?,
        Sub => x.checked_sub(y).ok_or_else(|| overflow(op))?,
        Mul => x.checked_mul(y).ok_or_else(|| overflow(op))?,
        WrappingAdd => x.wrapping_add(y),
        WrappingSub => x.wrapping_sub(y),
        WrappingMul => x.wrapping_mul(y),
        Div | Rem if y == 0 => {
            return Err(EvalError(format!(
                "integer division by zero in {x} {} {y}",
                op.symbol()
            )))
        }
        Div => x.checked_div(y).ok_or_else(|| overflow(op))?,
        _ => x.checked_rem(y).ok_or_else(|| overflow(op))?,
    };
    Ok(if ty == FieldType::Timestamp {
        Value::Timestamp(result)
    } else {
        Value::Int(result)
    })
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Float(_), _) | (_, Value::Float(_)) => a.as_f64().partial_cmp(&b.as_f64()),
        _ => Some(a.as_i64().cmp(&b.as_i64())),
    }
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Rem => "%",
            Eq => "=",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            And => "and",
            Or => "or",
            WrappingAdd => "wrapping_add",
            WrappingSub => "wrapping_sub",
            WrappingMul => "wrapping_mul",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new([
            ("price", FieldType::Int),
            ("rate", FieldType::Float),
            ("channel", FieldType::String),
            ("t", FieldType::Timestamp),
        ])
    }

    fn row() -> Row {
        Row(vec![
            Value::Int(250),
            Value::Float(0.5),
            Value::String("Apple".into()),
            Value::Timestamp(1_000),
        ])
    }

    fn eval(source: &str) -> Value {
        Expr::compile(source, &schema())
            .unwrap()
            .eval(&row())
            .unwrap()
    }

    #[test]
    fn expressions_evaluate_with_precedence_and_types() {
        assert_eq!(eval("price * 2 + 1"), Value::Int(501));
        assert_eq!(eval("(price + 1) * 2"), Value::Int(502));
        assert_eq!(eval("price % 7 - -3"), Value::Int(250 % 7 + 3));
        assert_eq!(eval("price * rate"), Value::Float(125.0));
        assert_eq!(eval("price > 100 and not channel = 'x'"), Value::Bool(true));
        assert_eq!(
            eval("price < 100 or lower(channel) == \"apple\""),
            Value::Bool(true)
        );
        assert_eq!(
            eval("upper(concat(channel, '-', price))"),
            Value::String("APPLE-250".into())
        );
        assert_eq!(eval("if(price > 1000, 1, 2.5)"), Value::Float(2.5));
        assert_eq!(eval("abs(-price)"), Value::Int(250));
        assert_eq!(eval("t + 500"), Value::Timestamp(1_500));
        assert_eq!(eval("length('it''s')"), Value::Int(4));
    }

    #[test]
    fn errors_point_into_the_expression() {
        let e = |s: &str| Expr::compile(s, &schema()).unwrap_err();
        assert_eq!(e("price + nope").offset, 8);
        assert!(e("price + nope").message.contains("unknown field `nope`"));
        assert_eq!(e("price + channel").offset, 6);
        assert_eq!(e("price and true").offset, 0);
        assert_eq!(e("(price").offset, 6);
        assert_eq!(e("price $ 1").offset, 6);
        assert_eq!(e("frob(price)").offset, 0);
        assert_eq!(e("lower(price)").offset, 6);
        assert_eq!(e("'abc").offset, 0);
        assert!(e(&"(".repeat(1000)).message.contains("nested"));
    }

    fn eval_error(source: &str) -> String {
        Expr::compile(source, &schema())
            .unwrap()
            .eval(&row())
            .unwrap_err()
            .0
    }

    fn compile_error(source: &str) -> ExprError {
        Expr::compile(source, &schema()).unwrap_err()
    }

    #[test]
    fn wrapping_arithmetic_wraps_where_the_operators_fail() {
        assert_eq!(
            eval("wrapping_add(9223372036854775807, 1)"),
            Value::Int(i64::MIN)
        );
        assert!(eval_error("9223372036854775807 + 1").contains("overflow in +"));
        assert_eq!(
            eval("wrapping_mul(-7046029254386353131, 3)"),
            Value::Int(-2_691_343_689_449_507_777)
        );
        assert_eq!(
            eval("wrapping_sub(-9223372036854775807 - 1, 1)"),
            Value::Int(i64::MAX)
        );
        assert_eq!(eval("wrapping_add(price, 1)"), Value::Int(251));
        assert_eq!(eval("wrapping_add(price, rate)"), Value::Float(250.5));
        assert_eq!(eval("wrapping_mul(rate, 4)"), Value::Float(2.0));
        assert_eq!(eval("wrapping_sub(t, 500)"), Value::Timestamp(500));
        assert_eq!(eval("wrapping_add(500, t)"), Value::Timestamp(1_500));
        assert_eq!(eval("wrapping_sub(t, t)"), Value::Int(0));
    }

    #[test]
    fn mod_is_the_remainder_operator() {
        let compile = |s: &str| Expr::compile(s, &schema()).unwrap();
        assert_eq!(compile("mod(price, 7)"), compile("price % 7"));
        assert_eq!(eval("mod(-7, 3)"), Value::Int(-1));
        assert_eq!(eval("mod(7, -3)"), Value::Int(1));
        assert_eq!(eval("mod(rate, 0.25)"), Value::Float(0.0));
        assert!(eval_error("mod(price, 0)").contains("division by zero in 250 % 0"));
    }

    #[test]
    fn substring_counts_characters_from_one_as_sql_does() {
        let text = |s: &str| Value::String(s.into());
        assert_eq!(eval("substring('hello', 2, 3)"), text("ell"));
        assert_eq!(eval("substring('hello', 1, 5)"), text("hello"));
        assert_eq!(eval("substring('hello', 4, 100)"), text("lo"));
        assert_eq!(eval("substring('hello', 1, 0)"), text(""));
        assert_eq!(eval("substring('hello', 5, 1)"), text("o"));
        assert_eq!(eval("substring('hello', 6, 1)"), text(""));
        // Positions before 1 count against the length.
        assert_eq!(eval("substring('hello', 0, 2)"), text("h"));
        assert_eq!(eval("substring('hello', -1, 3)"), text("h"));
        assert_eq!(eval("substring('hello', -5, 3)"), text(""));
        assert_eq!(eval("substring('', 1, 3)"), text(""));
        assert_eq!(eval("substring('héllo wörld', 2, 8)"), text("éllo wör"));
        assert_eq!(eval("substring(channel, 3, 9)"), text("ple"));
        assert_eq!(eval("substring('abc', 2, 9223372036854775807)"), text("bc"));
        assert_eq!(
            eval("substring('abc', 9223372036854775807, 9223372036854775807)"),
            text("")
        );
        assert_eq!(
            eval("substring('abc', -9223372036854775807 - 1, 9223372036854775807)"),
            text("")
        );
        assert!(eval_error("substring('hello', 1, -1)").contains("negative substring length"));
    }

    #[test]
    fn conversions_follow_sql_casts() {
        let compile = |s: &str| Expr::compile(s, &schema()).unwrap();
        assert_eq!(eval("to_timestamp(1500)"), Value::Timestamp(1_500));
        assert_eq!(eval("to_timestamp(price) + 1"), Value::Timestamp(251));
        assert_eq!(compile("to_timestamp(t)").as_field(), Some(3));

        assert_eq!(compile("to_int(price)").as_field(), Some(0));
        assert_eq!(eval("to_int(' 42 ')"), Value::Int(42));
        assert_eq!(eval("to_int('-7')"), Value::Int(-7));
        assert_eq!(eval("to_int('-9223372036854775808')"), Value::Int(i64::MIN));
        assert_eq!(eval("to_int(2.9)"), Value::Int(2));
        assert_eq!(eval("to_int(-2.9)"), Value::Int(-2));
        assert_eq!(eval("to_int(rate)"), Value::Int(0));
        assert_eq!(eval("to_int(t)"), Value::Int(1_000));
        assert_eq!(eval("to_int(true)"), Value::Int(1));
        assert_eq!(eval("to_int(price > 1000)"), Value::Int(0));
        assert_eq!(
            eval("to_int(to_float('-9223372036854775808'))"),
            Value::Int(i64::MIN)
        );
        assert!(eval_error("to_int('4x')").contains("'4x'"));
        assert!(eval_error("to_int('1.5')").contains("'1.5'"));
        assert!(eval_error("to_int('9223372036854775808')").contains("expected an integer"));
        assert!(eval_error("to_int(to_float('NaN'))").contains("NaN"));
        assert!(eval_error("to_int(to_float('9223372036854775807'))").contains("int range"));
        assert!(eval_error("to_int(to_float('1e300'))").contains("int range"));

        assert_eq!(eval("to_float(price)"), Value::Float(250.0));
        assert_eq!(eval("to_float(' 2.5 ')"), Value::Float(2.5));
        assert_eq!(compile("to_float(rate)").as_field(), Some(1));
        assert!(eval_error("to_float('x1')").contains("'x1'"));

        let text = |s: &str| Value::String(s.into());
        assert_eq!(eval("to_string(price)"), text("250"));
        assert_eq!(eval("to_string(rate)"), text("0.5"));
        assert_eq!(eval("to_string(t)"), text("1000"));
        assert_eq!(eval("to_string(price < 1)"), text("false"));
        assert_eq!(compile("to_string(channel)").as_field(), Some(2));
    }

    #[test]
    fn function_errors_name_the_function_argument_and_type() {
        let cases = [
            (
                "substring(price, 1, 2)",
                10,
                "substring expects a string as argument 1, found int",
            ),
            (
                "substring(channel, '1', 2)",
                19,
                "substring expects an int as argument 2, found string",
            ),
            (
                "substring(channel, 1, rate)",
                22,
                "substring expects an int as argument 3, found float",
            ),
            ("substring(channel, 1)", 0, "substring takes 3 argument(s), found 2"),
            (
                "to_timestamp(channel)",
                13,
                "to_timestamp expects an int or a timestamp as argument 1, found string",
            ),
            (
                "to_float(t)",
                9,
                "to_float expects a number or a string as argument 1, found timestamp",
            ),
            ("to_int()", 0, "to_int takes 1 argument(s), found 0"),
            ("to_string(1, 2)", 0, "to_string takes 1 argument(s), found 2"),
            (
                "wrapping_add(channel, 1)",
                13,
                "wrapping_add expects a number or a timestamp as argument 1, found string",
            ),
            (
                "wrapping_mul(t, 2)",
                13,
                "wrapping_mul expects a number as argument 1, found timestamp",
            ),
            (
                "wrapping_sub(price, t)",
                20,
                "wrapping_sub expects a number as argument 2 after an int as argument 1, found timestamp",
            ),
            (
                "wrapping_add(t, t)",
                16,
                "wrapping_add expects an int as argument 2 after a timestamp as argument 1, found timestamp",
            ),
            (
                "mod(price, 'x')",
                11,
                "mod expects a number as argument 2 after an int as argument 1, found string",
            ),
            ("mod(price)", 0, "mod takes 2 argument(s), found 1"),
        ];
        for (source, offset, message) in cases {
            let e = compile_error(source);
            assert_eq!(
                (e.offset, e.message.as_str()),
                (offset, message),
                "{source}"
            );
        }
        assert_eq!(
            compile_error("frob(price)").message,
            "unknown function `frob`: expected one of lower, upper, concat, length, \
             substring, abs, if, to_int, to_float, to_string, to_timestamp, mod, \
             wrapping_add, wrapping_sub, wrapping_mul"
        );
    }

    #[test]
    fn division_by_zero_is_an_error_not_a_panic() {
        let expr = Expr::compile("price / (price - 250)", &schema()).unwrap();
        assert!(expr
            .eval(&row())
            .unwrap_err()
            .0
            .contains("division by zero"));
        let expr = Expr::compile("-9223372036854775807 - 2", &schema()).unwrap();
        assert!(expr.eval(&row()).is_err());
    }
}

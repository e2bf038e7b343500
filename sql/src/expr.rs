//! SQL expressions as the text of weir's expression language (`filter`, `map` and
//! computed fields of job files), with Flink's semantics: BIGINT arithmetic wraps
//! on overflow (`wrapping_mul`, …), `/` of integers truncates toward zero, `MOD` and
//! `%` take the sign of the dividend, `CASE` is a chain of `if`.

use crate::statements::pos;
use crate::SqlError;
use sqlparser::ast::{
    self, BinaryOperator, CastKind, DateTimeField, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Spanned, UnaryOperator, Value,
};
use std::time::Duration;

/// Resolves column references to the fields of the stream an expression reads.
pub(crate) trait Scope {
    /// The field that the column `parts` (`col` or `qualifier.col`) names, or what
    /// was expected.
    fn field(&self, parts: &[String]) -> Result<String, String>;
}

pub(crate) fn error_at(e: &Expr, message: impl Into<String>) -> SqlError {
    SqlError::at(pos(e.span().start), message)
}

/// The column names of an identifier or compound identifier.
pub(crate) fn column_parts(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Identifier(i) => Some(vec![i.value.clone()]),
        Expr::CompoundIdentifier(parts) => Some(parts.iter().map(|i| i.value.clone()).collect()),
        Expr::Nested(inner) => column_parts(inner),
        _ => None,
    }
}

/// The function name of a call, upper case, and its plain arguments.
pub(crate) fn call_args(f: &ast::Function) -> Result<(String, Vec<&Expr>), String> {
    let name = f.name.to_string().to_ascii_uppercase();
    let args = match &f.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list) => {
            if list.duplicate_treatment.is_some() {
                return Err(format!(
                    "{name}(DISTINCT …) is not supported: expected {name} over all rows"
                ));
            }
            let mut args = Vec::new();
            for a in &list.args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => {}
                    other => {
                        return Err(format!(
                            "argument `{other}` of {name}: expected a plain (unnamed) argument"
                        ))
                    }
                }
            }
            args
        }
        FunctionArguments::Subquery(_) => {
            return Err(format!("{name}(subquery) is not supported"));
        }
    };
    Ok((name, args))
}

/// The length of an `INTERVAL 'n' unit` literal (SECOND, MINUTE, HOUR, DAY, and
/// MILLISECOND; `n` may have a fraction).
pub(crate) fn interval(e: &Expr) -> Result<Duration, String> {
    let Expr::Interval(i) = e else {
        return Err(format!(
            "expected an INTERVAL 'n' unit literal, found `{e}`"
        ));
    };
    let text = match i.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let n: f64 = text.trim().parse().map_err(|_| {
        format!("interval `{e}`: expected a number in quotes, as INTERVAL '10' SECOND")
    })?;
    let unit_ms = match &i.leading_field {
        Some(DateTimeField::Second | DateTimeField::Seconds) | None => 1_000.0,
        Some(DateTimeField::Minute | DateTimeField::Minutes) => 60_000.0,
        Some(DateTimeField::Hour | DateTimeField::Hours) => 3_600_000.0,
        Some(DateTimeField::Day | DateTimeField::Days) => 86_400_000.0,
        Some(DateTimeField::Millisecond | DateTimeField::Milliseconds) => 1.0,
        Some(other) => {
            return Err(format!(
                "interval unit {other}: expected MILLISECOND, SECOND, MINUTE, HOUR or DAY"
            ))
        }
    };
    if i.last_field.is_some() || n.is_nan() || n < 0.0 {
        return Err(format!(
            "interval `{e}`: expected one non-negative amount of one unit"
        ));
    }
    Ok(Duration::from_millis((n * unit_ms).round() as u64))
}

/// `e` as weir expression text over the fields `scope` resolves.
pub(crate) fn translate(e: &Expr, scope: &dyn Scope) -> Result<String, SqlError> {
    let t = |e: &Expr| translate(e, scope);
    Ok(match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            let parts = column_parts(e).unwrap_or_default();
            scope.field(&parts).map_err(|m| error_at(e, m))?
        }
        Expr::Nested(inner) => format!("({})", t(inner)?),
        Expr::Value(v) => literal(&v.value).map_err(|m| error_at(e, m))?,
        Expr::Interval(_) => interval(e)
            .map_err(|m| error_at(e, m))?
            .as_millis()
            .to_string(),
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Minus => format!("(-{})", t(expr)?),
            UnaryOperator::Plus => t(expr)?,
            UnaryOperator::Not => format!("(not {})", t(expr)?),
            other => return Err(error_at(e, format!("operator {other} is not supported"))),
        },
        Expr::BinaryOp { left, op, right } => {
            let (a, b) = (t(left)?, t(right)?);
            match op {
                BinaryOperator::Plus => format!("wrapping_add({a}, {b})"),
                BinaryOperator::Minus => format!("wrapping_sub({a}, {b})"),
                BinaryOperator::Multiply => format!("wrapping_mul({a}, {b})"),
                BinaryOperator::Divide => format!("({a} / {b})"),
                BinaryOperator::Modulo => format!("({a} % {b})"),
                BinaryOperator::StringConcat => format!("concat({a}, {b})"),
                BinaryOperator::Eq => format!("({a} = {b})"),
                BinaryOperator::NotEq => format!("({a} != {b})"),
                BinaryOperator::Lt => format!("({a} < {b})"),
                BinaryOperator::LtEq => format!("({a} <= {b})"),
                BinaryOperator::Gt => format!("({a} > {b})"),
                BinaryOperator::GtEq => format!("({a} >= {b})"),
                BinaryOperator::And => format!("({a} and {b})"),
                BinaryOperator::Or => format!("({a} or {b})"),
                other => return Err(error_at(e, format!("operator {other} is not supported"))),
            }
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let (x, lo, hi) = (t(expr)?, t(low)?, t(high)?);
            let test = format!("({x} >= {lo} and {x} <= {hi})");
            if *negated {
                format!("(not {test})")
            } else {
                test
            }
        }
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            ..
        } => {
            let x = t(expr)?;
            let tests = list
                .iter()
                .map(|v| Ok(format!("{x} = {}", t(v)?)))
                .collect::<Result<Vec<_>, SqlError>>()?;
            let any = format!("({})", tests.join(" or "));
            if *negated {
                format!("(not {any})")
            } else {
                any
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let Some(otherwise) = else_result else {
                return Err(error_at(
                    e,
                    "CASE without ELSE is not supported (weir has no NULL): expected an ELSE branch",
                ));
            };
            let mut text = t(otherwise)?;
            let subject = operand.as_deref().map(&t).transpose()?;
            for when in conditions.iter().rev() {
                let condition = match &subject {
                    Some(x) => format!("{x} = {}", t(&when.condition)?),
                    None => t(&when.condition)?,
                };
                text = format!("if({condition}, {}, {text})", t(&when.result)?);
            }
            text
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let from = substring_from.as_deref().map(&t).transpose()?;
            let length = substring_for.as_deref().map(&t).transpose()?;
            format!(
                "substring({}, {}, {})",
                t(expr)?,
                from.unwrap_or_else(|| "1".into()),
                length.unwrap_or_else(|| i64::MAX.to_string())
            )
        }
        Expr::Cast {
            kind,
            expr,
            data_type,
            ..
        } => {
            if !matches!(kind, CastKind::Cast) {
                return Err(error_at(
                    e,
                    format!("{kind:?} is not supported: expected CAST"),
                ));
            }
            let function = match crate::statements::field_type(data_type) {
                Some(weir_jobfile::FieldType::Int) => "to_int",
                Some(weir_jobfile::FieldType::Float) => "to_float",
                Some(weir_jobfile::FieldType::String) => "to_string",
                Some(weir_jobfile::FieldType::Timestamp) => "to_timestamp",
                _ => {
                    return Err(error_at(
                        e,
                        format!("CAST to {data_type} is not supported: expected BIGINT, INT, DOUBLE, STRING or TIMESTAMP(3)"),
                    ))
                }
            };
            format!("{function}({})", t(expr)?)
        }
        Expr::IsNull(_) | Expr::IsNotNull(_) => {
            return Err(error_at(
                e,
                "IS [NOT] NULL is not supported: weir rows have no NULL values",
            ))
        }
        Expr::Function(f) => function(e, f, scope)?,
        other => {
            return Err(error_at(
                e,
                format!("expression `{other}` is not supported (docs/sql.md lists what is)"),
            ))
        }
    })
}

fn literal(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Number(n, _) => n.clone(),
        Value::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Boolean(b) => b.to_string(),
        Value::Null => return Err("NULL is not supported: weir rows have no NULL values".into()),
        other => return Err(format!("literal {other} is not supported")),
    })
}

fn function(e: &Expr, f: &ast::Function, scope: &dyn Scope) -> Result<String, SqlError> {
    if f.over.is_some() {
        return Err(error_at(
            e,
            "an OVER window here is not supported: expected ROW_NUMBER/RANK only in a window Top-N (see docs/sql.md)",
        ));
    }
    let (name, args) = call_args(f).map_err(|m| error_at(e, m))?;
    let texts = args
        .iter()
        .map(|a| translate(a, scope))
        .collect::<Result<Vec<_>, _>>()?;
    let arity = |n: usize| {
        if texts.len() == n {
            Ok(())
        } else {
            Err(error_at(
                e,
                format!("{name} takes {n} argument(s), found {}", texts.len()),
            ))
        }
    };
    Ok(match name.as_str() {
        "MOD" => {
            arity(2)?;
            format!("({} % {})", texts[0], texts[1])
        }
        "ABS" | "UPPER" | "LOWER" => {
            arity(1)?;
            format!("{}({})", name.to_ascii_lowercase(), texts[0])
        }
        "CHAR_LENGTH" | "CHARACTER_LENGTH" => {
            arity(1)?;
            format!("length({})", texts[0])
        }
        "CONCAT" => format!("concat({})", texts.join(", ")),
        "IF" => {
            arity(3)?;
            format!("if({}, {}, {})", texts[0], texts[1], texts[2])
        }
        "SUBSTR" | "SUBSTRING" => match texts.len() {
            2 => format!("substring({}, {}, {})", texts[0], texts[1], i64::MAX),
            _ => {
                arity(3)?;
                format!("substring({}, {}, {})", texts[0], texts[1], texts[2])
            }
        },
        "TO_TIMESTAMP_LTZ" => {
            arity(2)?;
            match texts[1].as_str() {
                "3" => format!("to_timestamp({})", texts[0]),
                "0" => format!("to_timestamp(wrapping_mul({}, 1000))", texts[0]),
                _ => {
                    return Err(error_at(
                        e,
                        "TO_TIMESTAMP_LTZ(n, precision): expected precision 0 (seconds) or 3 (milliseconds)",
                    ))
                }
            }
        }
        other => {
            return Err(error_at(
                e,
                format!(
                    "function {other} is not supported: expected one of MOD, ABS, UPPER, LOWER, \
                     CHAR_LENGTH, CONCAT, IF, SUBSTRING, SUBSTR, TO_TIMESTAMP_LTZ (or an aggregate \
                     in a GROUP BY)"
                ),
            ))
        }
    })
}

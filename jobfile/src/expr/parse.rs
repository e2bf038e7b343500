//! Expression text to a typed [`Expr`]: the lexer and the recursive-descent
//! parser of the grammar in the parent module's documentation, with the type
//! checks of operators and functions.

use super::*;

/// Parses and type-checks `source` against `schema` (see [`Expr::compile`]).
pub(super) fn compile(source: &str, schema: &Schema) -> Result<Expr, ExprError> {
    let tokens = lex(source)?;
    let mut parser = ExprParser {
        tokens,
        next: 0,
        schema,
        depth: 0,
        end: source.chars().count(),
    };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some((at, token)) => Err(ExprError {
            offset: at,
            message: format!("unexpected {token} after a complete expression"),
        }),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Int(i) => write!(f, "number {i}"),
            Token::Float(x) => write!(f, "number {x}"),
            Token::Str(s) => write!(f, "string '{s}'"),
            Token::Ident(s) => write!(f, "`{s}`"),
            Token::Op(s) => write!(f, "`{s}`"),
        }
    }
}

const OPERATORS: [&str; 15] = [
    "==", "!=", "<>", "<=", ">=", "+", "-", "*", "/", "%", "=", "<", ">", "(", ")",
];

fn lex(source: &str) -> Result<Vec<(usize, Token)>, ExprError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == ',' {
            tokens.push((start, Token::Op(",")));
            i += 1;
        } else if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|&&c| c != '_').collect();
            let token = if text.contains('.') {
                text.parse().map(Token::Float).ok()
            } else {
                text.parse().map(Token::Int).ok()
            };
            tokens.push((
                start,
                token.ok_or_else(|| ExprError {
                    offset: start,
                    message: format!("bad number `{text}`"),
                })?,
            ));
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((start, Token::Ident(chars[start..i].iter().collect())));
        } else if c == '\'' || c == '"' {
            i += 1;
            let mut text = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ExprError {
                            offset: start,
                            message: format!("unterminated string: expected a closing {c}"),
                        })
                    }
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        text.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push((start, Token::Str(text)));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPERATORS
                .iter()
                .find(|op| rest.starts_with(**op))
                .ok_or_else(|| ExprError {
                    offset: start,
                    message: format!("unexpected character `{c}`"),
                })?;
            i += op.chars().count();
            tokens.push((start, Token::Op(op)));
        }
    }
    Ok(tokens)
}

/// Parentheses and operators nested deeper than this are refused.
const MAX_DEPTH: usize = 64;

struct ExprParser<'s> {
    tokens: Vec<(usize, Token)>,
    next: usize,
    schema: &'s Schema,
    depth: usize,
    end: usize,
}

fn error<T>(offset: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        offset,
        message: message.into(),
    })
}

impl ExprParser<'_> {
    fn peek(&self) -> Option<(usize, &Token)> {
        self.tokens.get(self.next).map(|(at, t)| (*at, t))
    }

    fn at(&self) -> usize {
        self.peek().map_or(self.end, |(at, _)| at)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let hit = matches!(self.peek(), Some((_, Token::Op(o))) if *o == op);
        self.next += usize::from(hit);
        hit
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let hit = matches!(self.peek(), Some((_, Token::Ident(w))) if w == word);
        self.next += usize::from(hit);
        hit
    }

    fn deeper(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return error(
                self.at(),
                format!("expression nested deeper than {MAX_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn logical(&mut self, op: BinaryOp, word: &str) -> Result<Expr, ExprError> {
        let operand = |p: &mut Self| {
            if op == BinaryOp::Or {
                p.logical(BinaryOp::And, "and")
            } else {
                p.not()
            }
        };
        let at = self.at();
        let mut left = operand(self)?;
        while self.eat_word(word) {
            let right_at = self.at();
            let right = operand(self)?;
            expect_bool(&left, at, word)?;
            expect_bool(&right, right_at, word)?;
            left = typed(
                ExprKind::Binary(op, left.into(), right.into()),
                FieldType::Bool,
            );
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.deeper()?;
        let expr = self.logical(BinaryOp::Or, "or");
        self.depth -= 1;
        expr
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        let at = self.at();
        if self.eat_word("not") {
            self.deeper()?;
            let operand_at = self.at();
            let operand = self.not()?;
            self.depth -= 1;
            expect_bool(&operand, operand_at, "not")?;
            let _ = at;
            return Ok(typed(ExprKind::Not(operand.into()), FieldType::Bool));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ExprError> {
        let at = self.at();
        let left = self.sum()?;
        let op = match self.peek() {
            Some((_, Token::Op("=" | "=="))) => BinaryOp::Eq,
            Some((_, Token::Op("!=" | "<>"))) => BinaryOp::Ne,
            Some((_, Token::Op("<"))) => BinaryOp::Lt,
            Some((_, Token::Op("<="))) => BinaryOp::Le,
            Some((_, Token::Op(">"))) => BinaryOp::Gt,
            Some((_, Token::Op(">="))) => BinaryOp::Ge,
            _ => return Ok(left),
        };
        let op_at = self.at();
        self.next += 1;
        let right = self.sum()?;
        let comparable = (left.ty.is_numeric() || left.ty == FieldType::Timestamp)
            && (right.ty.is_numeric() || right.ty == FieldType::Timestamp)
            || left.ty == right.ty;
        if !comparable {
            return error(
                op_at,
                format!(
                    "cannot compare {} with {} using `{}`: expected values of the same type (or two numbers)",
                    left.ty,
                    right.ty,
                    op.symbol()
                ),
            );
        }
        let _ = at;
        Ok(typed(
            ExprKind::Binary(op, left.into(), right.into()),
            FieldType::Bool,
        ))
    }

    fn arithmetic(
        &mut self,
        ops: &[(&'static str, BinaryOp)],
        operand: fn(&mut Self) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut left = operand(self)?;
        'outer: loop {
            for &(symbol, op) in ops {
                let op_at = self.at();
                if self.eat_op(symbol) {
                    let right = operand(self)?;
                    let ty = arithmetic_type(op, left.ty, right.ty).ok_or_else(|| ExprError {
                        offset: op_at,
                        message: format!(
                            "`{symbol}` cannot combine {} and {}: expected numbers (or a timestamp and an int for + and -)",
                            left.ty, right.ty
                        ),
                    })?;
                    left = typed(ExprKind::Binary(op, left.into(), right.into()), ty);
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        self.arithmetic(&[("+", BinaryOp::Add), ("-", BinaryOp::Sub)], Self::product)
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        self.arithmetic(
            &[
                ("*", BinaryOp::Mul),
                ("/", BinaryOp::Div),
                ("%", BinaryOp::Rem),
            ],
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        let at = self.at();
        if self.eat_op("-") {
            self.deeper()?;
            let operand = self.unary()?;
            self.depth -= 1;
            if !operand.ty.is_numeric() {
                return error(
                    at,
                    format!("cannot negate a {}: expected a number", operand.ty),
                );
            }
            let ty = operand.ty;
            return Ok(match operand.kind {
                ExprKind::Literal(Value::Int(i)) if i.checked_neg().is_some() => {
                    typed(ExprKind::Literal(Value::Int(-i)), ty)
                }
                kind => typed(ExprKind::Negate(typed(kind, ty).into()), ty),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let Some((at, token)) = self.peek() else {
            return error(
                self.end,
                "expected a value, a field or `(`, found the end of the expression",
            );
        };
        let token = token.clone();
        self.next += 1;
        Ok(match token {
            Token::Int(i) => typed(ExprKind::Literal(Value::Int(i)), FieldType::Int),
            Token::Float(x) => typed(ExprKind::Literal(Value::Float(x)), FieldType::Float),
            Token::Str(s) => typed(
                ExprKind::Literal(Value::String(Str::from_static(interned(s)))),
                FieldType::String,
            ),
            Token::Op("(") => {
                let inner = self.or()?;
                if !self.eat_op(")") {
                    return error(
                        self.at(),
                        format!("expected `)` to close the `(` at column {}", at + 1),
                    );
                }
                inner
            }
            Token::Ident(word) if word == "true" || word == "false" => typed(
                ExprKind::Literal(Value::Bool(word == "true")),
                FieldType::Bool,
            ),
            Token::Ident(word) if matches!(self.peek(), Some((_, Token::Op("(")))) => {
                self.next += 1;
                self.call(&word, at)?
            }
            Token::Ident(word) => match self.schema.index_of(&word) {
                Some(i) => typed(ExprKind::Field(i), self.schema.fields[i].ty),
                None => {
                    return error(
                        at,
                        format!(
                            "unknown field `{word}`: expected one of {}",
                            self.schema.names()
                        ),
                    )
                }
            },
            token => {
                return error(
                    at,
                    format!("expected a value, a field or `(`, found {token}"),
                )
            }
        })
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Expr, ExprError> {
        let Some(&(_, callee)) = FUNCTIONS.iter().find(|(known, _)| *known == name) else {
            let names: Vec<&str> = FUNCTIONS.iter().map(|(known, _)| *known).collect();
            return error(
                at,
                format!(
                    "unknown function `{name}`: expected one of {}",
                    names.join(", ")
                ),
            );
        };
        let mut args = Vec::new();
        let mut arg_at = Vec::new();
        if !self.eat_op(")") {
            loop {
                arg_at.push(self.at());
                args.push(self.or()?);
                if self.eat_op(")") {
                    break;
                }
                if !self.eat_op(",") {
                    return error(
                        self.at(),
                        format!("expected `,` or `)` in the arguments of {name}"),
                    );
                }
            }
        }
        let arity = match callee {
            Callee::Function(Function::Concat) => None,
            Callee::Function(Function::If | Function::Substring) => Some(3),
            Callee::Operator(_) => Some(2),
            Callee::Function(_) => Some(1),
        };
        if arity.is_some_and(|n| n != args.len()) || args.is_empty() {
            return error(
                at,
                format!(
                    "{name} takes {} argument(s), found {}",
                    arity.unwrap_or(1),
                    args.len()
                ),
            );
        }
        let call = Call { name, args, arg_at };
        match callee {
            Callee::Function(function) => call.function(function),
            Callee::Operator(op) => call.operator(op),
        }
    }
}

/// A call's arguments (as many as the function takes), compiled, and where each
/// starts in the expression.
struct Call<'a> {
    name: &'a str,
    args: Vec<Expr>,
    arg_at: Vec<usize>,
}

impl Call<'_> {
    /// The function's node, or its argument where the function would return it
    /// unchanged (`to_int` of an int).
    fn function(mut self, function: Function) -> Result<Expr, ExprError> {
        let (name, args, arg_at) = (self.name, &self.args, &self.arg_at);
        let ty = match function {
            Function::Lower | Function::Upper | Function::Length => {
                if args[0].ty != FieldType::String {
                    return error(
                        arg_at[0],
                        format!("{name} expects a string, found {}", args[0].ty),
                    );
                }
                if function == Function::Length {
                    FieldType::Int
                } else {
                    FieldType::String
                }
            }
            Function::Concat => FieldType::String,
            Function::Abs => {
                if !args[0].ty.is_numeric() {
                    return error(
                        arg_at[0],
                        format!("abs expects a number, found {}", args[0].ty),
                    );
                }
                args[0].ty
            }
            Function::If => {
                expect_bool(&args[0], arg_at[0], "if")?;
                let (a, b) = (args[1].ty, args[2].ty);
                if a == b {
                    a
                } else if a.is_numeric() && b.is_numeric() {
                    FieldType::Float
                } else {
                    return error(
                        arg_at[2],
                        format!("the branches of if have different types: {a} and {b}"),
                    );
                }
            }
            Function::Substring => {
                self.expect(0, &[FieldType::String])?;
                self.expect(1, &[FieldType::Int])?;
                self.expect(2, &[FieldType::Int])?;
                FieldType::String
            }
            Function::ToInt => FieldType::Int,
            Function::ToFloat => {
                self.expect(0, &[FieldType::Int, FieldType::Float, FieldType::String])?;
                FieldType::Float
            }
            Function::ToString => FieldType::String,
            Function::ToTimestamp => {
                self.expect(0, &[FieldType::Int, FieldType::Timestamp])?;
                FieldType::Timestamp
            }
        };
        let converts = matches!(
            function,
            Function::ToInt | Function::ToFloat | Function::ToString | Function::ToTimestamp
        );
        if converts && self.args[0].ty == ty {
            return Ok(self.args.remove(0));
        }
        Ok(typed(ExprKind::Call(function, self.args), ty))
    }

    /// `op` on the two arguments, with the operator's type rules.
    fn operator(self, op: BinaryOp) -> Result<Expr, ExprError> {
        const OPERANDS: [FieldType; 3] = [FieldType::Int, FieldType::Float, FieldType::Timestamp];
        let (a, b) = (self.args[0].ty, self.args[1].ty);
        let firsts: Vec<FieldType> = OPERANDS
            .into_iter()
            .filter(|&x| {
                OPERANDS
                    .iter()
                    .any(|&y| arithmetic_type(op, x, y).is_some())
            })
            .collect();
        self.expect(0, &firsts)?;
        let Some(ty) = arithmetic_type(op, a, b) else {
            let seconds: Vec<FieldType> = OPERANDS
                .into_iter()
                .filter(|&y| arithmetic_type(op, a, y).is_some())
                .collect();
            return error(
                self.arg_at[1],
                format!(
                    "{} expects {} as argument 2 after {} as argument 1, found {b}",
                    self.name,
                    one_of(&seconds),
                    one_of(&[a])
                ),
            );
        };
        let at = self.arg_at.first().copied().unwrap_or(0);
        let name = self.name;
        let Ok([a, b]) = <[Expr; 2]>::try_from(self.args) else {
            return error(at, format!("{name} takes 2 arguments"));
        };
        Ok(typed(ExprKind::Binary(op, a.into(), b.into()), ty))
    }

    /// Argument `i` (from 0) has one of the types `allowed`.
    fn expect(&self, i: usize, allowed: &[FieldType]) -> Result<(), ExprError> {
        let ty = self.args[i].ty;
        if allowed.contains(&ty) {
            return Ok(());
        }
        error(
            self.arg_at[i],
            format!(
                "{} expects {} as argument {}, found {ty}",
                self.name,
                one_of(allowed),
                i + 1
            ),
        )
    }
}

/// "an int", "a number or a timestamp", "a number, a string or a bool": any of
/// `types` (an int and a float together are "a number").
fn one_of(types: &[FieldType]) -> String {
    let numbers = types.contains(&FieldType::Int) && types.contains(&FieldType::Float);
    let mut names: Vec<&str> = Vec::new();
    if numbers {
        names.push("a number");
    }
    for ty in types {
        names.push(match ty {
            FieldType::Int | FieldType::Float if numbers => continue,
            FieldType::Int => "an int",
            FieldType::Float => "a float",
            FieldType::Bool => "a bool",
            FieldType::String => "a string",
            FieldType::Timestamp => "a timestamp",
        });
    }
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "nothing".to_string(),
    }
}

fn typed(kind: ExprKind, ty: FieldType) -> Expr {
    Expr { kind, ty }
}

fn expect_bool(e: &Expr, at: usize, context: &str) -> Result<(), ExprError> {
    if e.ty == FieldType::Bool {
        Ok(())
    } else {
        error(at, format!("`{context}` expects a bool, found {}", e.ty))
    }
}

fn arithmetic_type(op: BinaryOp, a: FieldType, b: FieldType) -> Option<FieldType> {
    use BinaryOp::*;
    use FieldType::*;
    match (op, a, b) {
        (_, Int, Int) => Some(Int),
        (_, Float, Int | Float) | (_, Int, Float) => Some(Float),
        (Add | Sub | WrappingAdd | WrappingSub, Timestamp, Int)
        | (Add | WrappingAdd, Int, Timestamp) => Some(Timestamp),
        (Sub | WrappingSub, Timestamp, Timestamp) => Some(Int),
        _ => None,
    }
}

//! A SQL file as a list of statements. `SET 'key' = 'value'`, `CREATE TABLE` (with
//! Flink's computed columns, `WATERMARK FOR` and `PRIMARY KEY … NOT ENFORCED`) and
//! statement sets (`EXECUTE STATEMENT SET BEGIN … END`, `BEGIN STATEMENT SET …
//! END`) are read here on sqlparser's primitives; every other statement by
//! sqlparser itself.

use crate::dialect::FlinkDialect;
use crate::SqlError;
use sqlparser::ast::{self, Query, Statement};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};
use std::time::Duration;
use weir_jobfile::yaml::Pos;
use weir_jobfile::FieldType;

/// One statement of the file.
pub(crate) enum Stmt {
    /// `SET 'key' = 'value'`.
    Set { key: String, value: String, at: Pos },
    /// `CREATE TABLE`.
    CreateTable(Box<TableDef>),
    /// `CREATE [TEMPORARY] VIEW name AS query`.
    CreateView {
        name: String,
        query: Box<Query>,
        at: Pos,
    },
    /// `INSERT INTO table query`.
    Insert {
        table: String,
        query: Box<Query>,
        at: Pos,
    },
    /// A query on its own: its rows are printed.
    Select { query: Box<Query>, at: Pos },
}

/// A `CREATE TABLE`.
pub(crate) struct TableDef {
    pub name: String,
    pub at: Pos,
    pub columns: Vec<ColumnDef>,
    /// `WATERMARK FOR column AS column [- INTERVAL …]`: the column and the delay.
    pub watermark: Option<(String, Duration, Pos)>,
    /// `PRIMARY KEY (…) NOT ENFORCED`.
    pub primary_key: Vec<String>,
    /// `WITH ('key' = 'value', …)`, in order.
    pub options: Vec<(String, String)>,
}

/// A column of a `CREATE TABLE`.
pub(crate) struct ColumnDef {
    pub name: String,
    pub at: Pos,
    pub kind: ColumnKind,
}

/// A physical column (read from the connector) or a computed one.
pub(crate) enum ColumnKind {
    Physical(FieldType),
    Computed(Box<ast::Expr>),
}

pub(crate) fn pos(location: Location) -> Pos {
    Pos {
        line: location.line as usize,
        column: location.column as usize,
    }
}

/// A parser error as a [`SqlError`] at the position sqlparser names.
pub(crate) fn parse_error(e: ParserError) -> SqlError {
    let text = match &e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.clone(),
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".into(),
    };
    // sqlparser ends its messages with " at Line: L, Column: C".
    if let Some(i) = text.rfind(" at Line: ") {
        let mut numbers = text[i + 10..]
            .split(", Column: ")
            .map(|n| n.trim().parse::<usize>().ok());
        if let (Some(Some(line)), Some(Some(column))) = (numbers.next(), numbers.next()) {
            return SqlError {
                line,
                column,
                message: text[..i].to_string(),
            };
        }
    }
    SqlError {
        line: 0,
        column: 0,
        message: text,
    }
}

fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Reads every statement of `sql`.
pub(crate) fn read(sql: &str) -> Result<Vec<Stmt>, SqlError> {
    let dialect = FlinkDialect;
    let mut p = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(parse_error)?;
    let mut out = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let next = p.peek_token();
        if next.token == Token::EOF {
            break;
        }
        let at = pos(next.span.start);
        // Statement sets: the INSERTs between BEGIN and END run as one job, as
        // every statement of the file does.
        if p.parse_keywords(&[
            Keyword::EXECUTE,
            Keyword::STATEMENT,
            Keyword::SET,
            Keyword::BEGIN,
        ]) || p.parse_keywords(&[Keyword::BEGIN, Keyword::STATEMENT, Keyword::SET])
            || p.parse_keyword(Keyword::END)
        {
            continue;
        }
        if p.parse_keyword(Keyword::SET) {
            let key = p.parse_literal_string().map_err(parse_error)?;
            p.expect_token(&Token::Eq).map_err(parse_error)?;
            let value = p.parse_literal_string().map_err(parse_error)?;
            out.push(Stmt::Set { key, value, at });
            continue;
        }
        let create_table = p.peek_keyword(Keyword::CREATE)
            && (word_is(&p.peek_nth_token(1).token, "TABLE")
                || (word_is(&p.peek_nth_token(1).token, "TEMPORARY")
                    && word_is(&p.peek_nth_token(2).token, "TABLE")));
        if create_table {
            out.push(Stmt::CreateTable(Box::new(
                create_table_def(&mut p, at).map_err(parse_error)?,
            )));
            continue;
        }
        let statement = p.parse_statement().map_err(parse_error)?;
        out.push(match statement {
            Statement::CreateView(view) => {
                if view.materialized {
                    return Err(SqlError::at(
                        at,
                        "CREATE MATERIALIZED VIEW is not supported: expected CREATE [TEMPORARY] VIEW name AS query",
                    ));
                }
                Stmt::CreateView {
                    name: view.name.to_string(),
                    query: view.query,
                    at,
                }
            }
            Statement::Insert(insert) => {
                let Some(query) = insert.source else {
                    return Err(SqlError::at(at, "INSERT without a query: expected INSERT INTO table SELECT …"));
                };
                if !insert.columns.is_empty() {
                    return Err(SqlError::at(
                        at,
                        "INSERT with a column list is not supported: expected INSERT INTO table SELECT … with the table's columns in order",
                    ));
                }
                Stmt::Insert {
                    table: insert.table.to_string(),
                    query,
                    at,
                }
            }
            Statement::Query(query) => Stmt::Select { query, at },
            other => {
                let text = other.to_string();
                let words: Vec<&str> = text.split_whitespace().take(3).collect();
                return Err(SqlError::at(
                    at,
                    format!(
                        "`{} …` is not supported: expected SET, CREATE TABLE, CREATE [TEMPORARY] VIEW, INSERT INTO or SELECT",
                        words.join(" ")
                    ),
                ));
            }
        });
        let end = p.peek_token();
        if !matches!(end.token, Token::SemiColon | Token::EOF) {
            return Err(SqlError::at(
                pos(end.span.start),
                format!("expected `;` after the statement, found {}", end.token),
            ));
        }
    }
    Ok(out)
}

fn create_table_def(p: &mut Parser, at: Pos) -> Result<TableDef, ParserError> {
    p.expect_keyword(Keyword::CREATE)?;
    let _ = p.parse_keyword(Keyword::TEMPORARY);
    p.expect_keyword(Keyword::TABLE)?;
    let _ = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?.to_string();
    p.expect_token(&Token::LParen)?;
    let mut table = TableDef {
        name,
        at,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        options: Vec::new(),
    };
    loop {
        let next = p.peek_token();
        if word_is(&next.token, "WATERMARK") {
            p.next_token();
            p.expect_keyword(Keyword::FOR)?;
            let column = p.parse_identifier()?.value;
            p.expect_keyword(Keyword::AS)?;
            let expr = p.parse_expr()?;
            let start = next.span.start;
            let delay = watermark_delay(&column, &expr).map_err(|m| {
                ParserError::ParserError(format!(
                    "{m} at Line: {}, Column: {}",
                    start.line, start.column
                ))
            })?;
            table.watermark = Some((column, delay, pos(next.span.start)));
        } else if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            p.expect_token(&Token::LParen)?;
            table.primary_key = p
                .parse_comma_separated(|p| p.parse_identifier())?
                .into_iter()
                .map(|i| i.value)
                .collect();
            p.expect_token(&Token::RParen)?;
            p.expect_keyword(Keyword::NOT)?;
            if !word_is(&p.peek_token().token, "ENFORCED") {
                return p.expected(
                    "ENFORCED (weir, as Flink, does not enforce keys)",
                    p.peek_token(),
                );
            }
            p.next_token();
        } else {
            let column_at = pos(next.span.start);
            let name = p.parse_identifier()?.value;
            let kind = if p.parse_keyword(Keyword::AS) {
                ColumnKind::Computed(Box::new(p.parse_expr()?))
            } else {
                let data_type = p.parse_data_type()?;
                let ty = field_type(&data_type).ok_or_else(|| {
                    ParserError::ParserError(format!(
                        "column `{name}`: type {data_type} is not supported: expected BIGINT, INT, \
                         DOUBLE, FLOAT, DECIMAL, STRING, VARCHAR, BOOLEAN, TIMESTAMP(3) or TIMESTAMP_LTZ(3) at Line: {}, Column: {}",
                        column_at.line, column_at.column
                    ))
                })?;
                let _ = p.parse_keywords(&[Keyword::NOT, Keyword::NULL]);
                ColumnKind::Physical(ty)
            };
            table.columns.push(ColumnDef {
                name,
                at: column_at,
                kind,
            });
        }
        if p.consume_token(&Token::RParen) {
            break;
        }
        p.expect_token(&Token::Comma)?;
    }
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        table.options = p.parse_comma_separated(|p| {
            let key = p.parse_literal_string()?;
            p.expect_token(&Token::Eq)?;
            let value = p.parse_literal_string()?;
            Ok((key, value))
        })?;
        p.expect_token(&Token::RParen)?;
    }
    Ok(table)
}

/// The weir type of a SQL column type.
pub(crate) fn field_type(data_type: &ast::DataType) -> Option<FieldType> {
    let text = data_type.to_string().to_ascii_uppercase();
    let base = text.split(['(', ' ']).next().unwrap_or_default();
    Some(match base {
        "BIGINT" | "INT" | "INTEGER" | "SMALLINT" | "TINYINT" => FieldType::Int,
        "DOUBLE" | "FLOAT" | "REAL" | "DECIMAL" | "NUMERIC" => FieldType::Float,
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" => FieldType::String,
        "BOOLEAN" | "BOOL" => FieldType::Bool,
        "TIMESTAMP" | "TIMESTAMP_LTZ" => FieldType::Timestamp,
        _ => return None,
    })
}

/// The delay of `WATERMARK FOR column AS expr`: `column` or `column - INTERVAL …`.
fn watermark_delay(column: &str, expr: &ast::Expr) -> Result<Duration, String> {
    let names_column = |e: &ast::Expr| matches!(e, ast::Expr::Identifier(i) if i.value == column);
    match expr {
        e if names_column(e) => Ok(Duration::ZERO),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } if names_column(left) => crate::expr::interval(right),
        _ => Err(format!(
            "WATERMARK FOR {column} AS {expr}: expected `{column}` or `{column} - INTERVAL 'n' unit` (a bounded out-of-orderness)"
        )),
    }
}

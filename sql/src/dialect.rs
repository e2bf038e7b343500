//! Flink's dialect on sqlparser's generic one. The one extension: a window
//! table-valued function's table argument, `TABLE name` or
//! `TABLE name PARTITION BY col` / `PARTITION BY (a, b)`, read as the expression
//! `__table(name, partition columns…)`; sqlparser has no such argument.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName,
};
use sqlparser::dialect::{Dialect, GenericDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The name the table argument of a window TVF is read as.
pub(crate) const TABLE_ARGUMENT: &str = "__table";

/// Flink SQL as weir reads it (see the module documentation).
#[derive(Debug, Default)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect {}.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect {}.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    /// `FOR SYSTEM_TIME AS OF` after a table: a temporal join.
    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let table_argument = parser.peek_keyword(Keyword::TABLE)
            && matches!(parser.peek_nth_token(1).token, Token::Word(_));
        table_argument.then(|| table_argument_expr(parser))
    }
}

fn table_argument_expr(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.expect_keyword(Keyword::TABLE)?;
    let name = parser.parse_object_name(false)?;
    let mut args = vec![Ident::new(name.to_string())];
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        if parser.consume_token(&Token::LParen) {
            args.extend(parser.parse_comma_separated(|p| p.parse_identifier())?);
            parser.expect_token(&Token::RParen)?;
        } else {
            args.push(parser.parse_identifier()?);
        }
    }
    let args = args
        .into_iter()
        .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(a))))
        .collect();
    Ok(Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(TABLE_ARGUMENT)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    }))
}

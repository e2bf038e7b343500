//! A YAML (and so JSON) document as a tree of nodes that remember where they start.
//!
//! Built from `saphyr-parser`'s events; anchors, aliases and multi-document streams
//! are refused, as job files never need them.

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

/// A place in the file: line and column, both counted from 1 (columns in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Pos {
    fn of(marker: &Marker) -> Self {
        Self {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }

    /// The position `chars` characters to the right on the same line.
    pub fn right(self, chars: usize) -> Self {
        Self {
            line: self.line,
            column: self.column + chars,
        }
    }
}

/// One node of the document.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// Where it starts.
    pub at: Pos,
}

/// The contents of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A mapping, its entries in file order; keys are scalars.
    Map(Vec<(Key, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
    /// A scalar with its text; `plain` is false for quoted and block scalars (always
    /// strings), true for plain ones (numbers, booleans, null or strings).
    Scalar {
        /// The scalar's text, escapes resolved.
        text: String,
        /// Unquoted.
        plain: bool,
        /// A block scalar (`|` or `>`), whose text spans lines.
        block: bool,
    },
}

/// A mapping key.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key's text.
    pub text: String,
    /// Where it starts.
    pub at: Pos,
}

impl Node {
    /// What kind of node this is, for messages ("a mapping", "a list", "a string", …).
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar {
                text, plain: true, ..
            } if is_null(text) => "null",
            NodeKind::Scalar {
                text, plain: true, ..
            } if text.parse::<i64>().is_ok() => "an integer",
            NodeKind::Scalar {
                text, plain: true, ..
            } if text.parse::<f64>().is_ok() => "a number",
            NodeKind::Scalar {
                text, plain: true, ..
            } if text == "true" || text == "false" => "a boolean",
            NodeKind::Scalar { .. } => "a string",
        }
    }
}

/// Whether a plain scalar means null.
pub fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error: where, and what the parser expected.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub at: Pos,
    /// What went wrong.
    pub message: String,
}

/// Nesting deeper than this is refused (it bounds the recursion of the tree builder).
const MAX_DEPTH: usize = 64;

/// Parses one YAML or JSON document. An empty document is an empty mapping.
///
/// # Errors
/// The first syntax error, or the use of anchors, aliases, several documents or
/// nesting deeper than 64 levels.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        last: Pos { line: 1, column: 1 },
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    last: Pos,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Pos), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => {
                self.last = Pos::of(&span.start);
                Ok((event, self.last))
            }
            Some(Err(e)) => Err(SyntaxError {
                at: Pos::of(e.marker()),
                message: e.info().to_string(),
            }),
            None => Ok((Event::StreamEnd, self.last)),
        }
    }

    fn error<T>(at: Pos, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            at,
            message: message.into(),
        })
    }

    fn document(&mut self) -> Result<Node, SyntaxError> {
        let mut root = None;
        loop {
            let (event, at) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) if root.is_some() => {
                    return Self::error(at, "a job file holds one document, found a second")
                }
                Event::DocumentStart(_) => {
                    let (event, at) = self.next()?;
                    root = Some(self.node(event, at, 0)?);
                }
                _ => return Self::error(at, "unexpected content outside the document"),
            }
        }
        Ok(root.unwrap_or(Node {
            kind: NodeKind::Map(Vec::new()),
            at: Pos { line: 1, column: 1 },
        }))
    }

    fn node(&mut self, event: Event<'a>, at: Pos, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Self::error(at, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        let anchored = |anchor: usize| {
            if anchor == 0 {
                Ok(())
            } else {
                Self::error(at, "anchors (&name) are not supported in job files")
            }
        };
        let kind = match event {
            Event::Scalar(text, style, anchor, _) => {
                anchored(anchor)?;
                NodeKind::Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    block: matches!(style, ScalarStyle::Literal | ScalarStyle::Folded),
                }
            }
            Event::SequenceStart(anchor, _) => {
                anchored(anchor)?;
                let mut items = Vec::new();
                loop {
                    let (event, at) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, at, depth + 1)?);
                }
                NodeKind::Seq(items)
            }
            Event::MappingStart(anchor, _) => {
                anchored(anchor)?;
                let mut entries = Vec::new();
                loop {
                    let (event, key_at) = self.next()?;
                    let key = match event {
                        Event::MappingEnd => break,
                        Event::Scalar(text, _, 0, _) => Key {
                            text: text.into_owned(),
                            at: key_at,
                        },
                        Event::Alias(_) => {
                            return Self::error(
                                key_at,
                                "aliases (*name) are not supported in job files",
                            )
                        }
                        _ => return Self::error(key_at, "a mapping key must be a plain name"),
                    };
                    let (event, value_at) = self.next()?;
                    let value = self.node(event, value_at, depth + 1)?;
                    entries.push((key, value));
                }
                NodeKind::Map(entries)
            }
            Event::Alias(_) => {
                return Self::error(at, "aliases (*name) are not supported in job files")
            }
            _ => return Self::error(at, "expected a value"),
        };
        Ok(Node { kind, at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_nodes_know_their_positions() {
        let yaml = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let NodeKind::Map(entries) = &yaml.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.at, Pos { line: 2, column: 1 });
        let NodeKind::Seq(items) = &entries[1].1.kind else {
            panic!("not a list")
        };
        assert_eq!(items[1].at, Pos { line: 4, column: 5 });
        assert_eq!(items[1].describe(), "a string");

        let json = parse("{\n  \"a\": 1,\n  \"b\": [true, \"x\"]\n}").unwrap();
        let NodeKind::Map(entries) = &json.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.at, Pos { line: 3, column: 3 });
        let NodeKind::Seq(items) = &entries[1].1.kind else {
            panic!("not a list")
        };
        assert_eq!(
            items[1].at,
            Pos {
                line: 3,
                column: 15
            }
        );
    }

    #[test]
    fn syntax_errors_and_aliases_are_refused_with_a_position() {
        let error = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.at.line >= 1);
        let error = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert!(error.message.contains("anchors"), "{error:?}");
        assert!(parse(&"[".repeat(500)).is_err());
    }
}

//! Reads a parsed document into a [`JobSpec`], reporting every unknown field, wrong
//! type, missing setting and bad value instead of stopping at the first.

use crate::diagnostic::Problems;
use crate::row::FieldType;
use crate::spec::*;
use crate::yaml::{is_null, Key, Node, NodeKind, Pos};
use std::time::Duration;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping being read.
struct Fields<'a> {
    entries: &'a [(Key, Node)],
    at: Pos,
    path: String,
}

impl<'a> Fields<'a> {
    fn of(node: &'a Node, path: &str, p: &mut Problems) -> Option<Self> {
        match &node.kind {
            NodeKind::Map(entries) => Some(Self {
                entries,
                at: node.at,
                path: path.to_string(),
            }),
            _ => {
                p.add(
                    node.at,
                    path,
                    format!("expected a mapping, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Reports fields not in `allowed` and fields given twice.
    fn check(&self, allowed: &[&str], what: &str, p: &mut Problems) {
        for (i, (key, _)) in self.entries.iter().enumerate() {
            if !allowed.contains(&key.text.as_str()) {
                p.add(
                    key.at,
                    &self.path(&key.text),
                    format!(
                        "unknown field `{}` for {what}: expected one of {}",
                        key.text,
                        allowed.join(", ")
                    ),
                );
            } else if self.entries[..i].iter().any(|(k, _)| k.text == key.text) {
                p.add(
                    key.at,
                    &self.path(&key.text),
                    format!("`{}` is given twice", key.text),
                );
            }
        }
    }

    fn required(&self, key: &str, expected: &str, p: &mut Problems) -> Option<&'a Node> {
        let node = self.get(key);
        if node.is_none() {
            p.add(
                self.at,
                &self.path(key),
                format!("missing required setting `{key}` ({expected})"),
            );
        }
        node
    }

    fn read<T>(
        &self,
        key: &str,
        p: &mut Problems,
        read: impl FnOnce(&Node, &str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        self.get(key)
            .and_then(|node| read(node, &self.path(key), p))
    }

    fn read_required<T>(
        &self,
        key: &str,
        expected: &str,
        p: &mut Problems,
        read: impl FnOnce(&Node, &str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        self.required(key, expected, p)
            .and_then(|node| read(node, &self.path(key), p))
    }
}

fn scalar<'a>(
    node: &'a Node,
    path: &str,
    expected: &str,
    p: &mut Problems,
) -> Option<(&'a str, bool)> {
    match &node.kind {
        NodeKind::Scalar { text, plain, .. } => Some((text, *plain)),
        _ => {
            p.add(
                node.at,
                path,
                format!("expected {expected}, found {}", node.describe()),
            );
            None
        }
    }
}

fn string(node: &Node, path: &str, p: &mut Problems) -> Option<String> {
    match scalar(node, path, "a string", p)? {
        (text, true) if is_null(text) => {
            p.add(node.at, path, "expected a string, found null");
            None
        }
        (text, _) => Some(text.to_string()),
    }
}

fn located_string(node: &Node, path: &str, p: &mut Problems) -> Option<Located<String>> {
    string(node, path, p).map(|value| Located {
        value,
        at: node.at,
        path: path.to_string(),
    })
}

fn integer(node: &Node, path: &str, p: &mut Problems) -> Option<i64> {
    match scalar(node, path, "an integer", p)? {
        (text, true) => match text.replace('_', "").parse() {
            Ok(i) => Some(i),
            Err(_) => {
                p.add(
                    node.at,
                    path,
                    format!("expected an integer, found {}", node.describe()),
                );
                None
            }
        },
        _ => {
            p.add(node.at, path, "expected an integer, found a string");
            None
        }
    }
}

fn count(node: &Node, path: &str, p: &mut Problems) -> Option<u64> {
    let i = integer(node, path, p)?;
    u64::try_from(i).ok().or_else(|| {
        p.add(
            node.at,
            path,
            format!("expected a non-negative integer, found {i}"),
        );
        None
    })
}

fn positive(node: &Node, path: &str, p: &mut Problems) -> Option<usize> {
    let i = integer(node, path, p)?;
    match usize::try_from(i) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            p.add(
                node.at,
                path,
                format!("expected a positive integer, found {i}"),
            );
            None
        }
    }
}

fn boolean(node: &Node, path: &str, p: &mut Problems) -> Option<bool> {
    match scalar(node, path, "true or false", p)? {
        ("true", true) => Some(true),
        ("false", true) => Some(false),
        _ => {
            p.add(
                node.at,
                path,
                format!("expected true or false, found {}", node.describe()),
            );
            None
        }
    }
}

/// Parses `500ms`, `10s`, `5m`, `2h`, `1d` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '_')?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.replace('_', "").parse().ok()?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(number.checked_mul(ms)?))
}

fn duration(node: &Node, path: &str, p: &mut Problems) -> Option<Duration> {
    let (text, _) = scalar(node, path, "a duration", p)?;
    let parsed = parse_duration(text);
    if parsed.is_none() {
        p.add(
            node.at,
            path,
            format!("bad duration `{text}`: expected a whole number and a unit (ms, s, m, h, d), e.g. 500ms, 10s, 5m"),
        );
    }
    parsed
}

/// A duration that may be negative, e.g. `-5s`, in milliseconds.
fn signed_duration(node: &Node, path: &str, p: &mut Problems) -> Option<i64> {
    let (text, _) = scalar(node, path, "a duration", p)?;
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let parsed = parse_duration(magnitude).and_then(|d| i64::try_from(d.as_millis()).ok());
    if parsed.is_none() {
        p.add(
            node.at,
            path,
            format!("bad duration `{text}`: expected an optional sign, a whole number and a unit (ms, s, m, h, d), e.g. -5s, 10s"),
        );
    }
    parsed.map(|ms| sign * ms)
}

fn choice<T: Copy>(node: &Node, path: &str, options: &[(&str, T)], p: &mut Problems) -> Option<T> {
    let text = string(node, path, p)?;
    let found = options
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v);
    if found.is_none() {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        p.add(
            node.at,
            path,
            format!(
                "unknown value `{text}`: expected one of {}",
                names.join(", ")
            ),
        );
    }
    found
}

fn list<'a>(node: &'a Node, path: &str, p: &mut Problems) -> &'a [Node] {
    match &node.kind {
        NodeKind::Seq(items) => items,
        _ => {
            p.add(
                node.at,
                path,
                format!("expected a list, found {}", node.describe()),
            );
            &[]
        }
    }
}

/// A window's `top`: a field (its largest values, ties kept) or `{by, n, rank,
/// rank_field}`.
fn window_top(node: &Node, path: &str, p: &mut Problems) -> Option<TopSpec> {
    if let NodeKind::Map(_) = node.kind {
        let f = Fields::of(node, path, p)?;
        f.check(&["by", "n", "rank", "rank_field"], "a window's top", p);
        return top_spec(&f, p);
    }
    located_string(node, path, p).map(TopSpec::largest)
}

/// The `by`, `n`, `rank` and `rank_field` of a top (`partition` empty).
fn top_spec(f: &Fields<'_>, p: &mut Problems) -> Option<TopSpec> {
    let order = f.read_required(
        "by",
        "the field ordering the rows, or a list of them, each largest first or `FIELD asc`",
        p,
        |n, path, p| match &n.kind {
            NodeKind::Seq(items) => {
                let read: Vec<Option<SortField>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| sort_field(item, &format!("{path}[{i}]"), p))
                    .collect();
                if read.is_empty() {
                    p.add(n.at, path, "expected at least one field to order by");
                    return None;
                }
                read.into_iter().collect()
            }
            _ => sort_field(n, path, p).map(|s| vec![s]),
        },
    );
    let n = f.read("n", p, positive).unwrap_or(1);
    let rank = f
        .read("rank", p, |n, path, p| {
            choice(
                n,
                path,
                &[
                    ("rank", RankKind::Rank),
                    ("dense_rank", RankKind::DenseRank),
                    ("row_number", RankKind::RowNumber),
                ],
                p,
            )
        })
        .unwrap_or(RankKind::Rank);
    let rank_field = f.read("rank_field", p, located_string);
    Some(TopSpec {
        order: order?,
        n,
        rank,
        rank_field,
        partition: Vec::new(),
    })
}

/// `FIELD`, `FIELD desc` (largest first, the default) or `FIELD asc`.
fn sort_field(node: &Node, path: &str, p: &mut Problems) -> Option<SortField> {
    let text = located_string(node, path, p)?;
    let words: Vec<&str> = text.value.split_whitespace().collect();
    let descending = match words.as_slice() {
        [_] => Some(true),
        [_, order] if order.eq_ignore_ascii_case("desc") => Some(true),
        [_, order] if order.eq_ignore_ascii_case("asc") => Some(false),
        _ => None,
    };
    let Some(descending) = descending else {
        p.add(
            node.at,
            path,
            format!(
                "bad order `{}`: expected a field name, then optionally `asc` or `desc`",
                text.value
            ),
        );
        return None;
    };
    Some(SortField {
        field: Located {
            value: words[0].to_string(),
            ..text
        },
        descending,
    })
}

const TOP: &[&str] = &[
    "name",
    "parallelism",
    "checkpoints",
    "restart",
    "state_backend",
    "sources",
    "operators",
    "sinks",
];

/// Reads the whole document. Returns `None` only when the root is not a mapping.
pub(crate) fn job(root: &Node, default_name: &str, p: &mut Problems) -> Option<JobSpec> {
    let top = Fields::of(root, "", p)?;
    top.check(TOP, "a job", p);
    let name = top
        .read("name", p, string)
        .unwrap_or_else(|| default_name.to_string());
    let parallelism = top.read("parallelism", p, positive).unwrap_or(1);
    let checkpoints = top.read("checkpoints", p, checkpoints).unwrap_or_default();
    let restart = top.read("restart", p, restart).unwrap_or_default();
    let mut state_backend = StateBackend::Heap;
    if let Some(node) = top.get("state_backend") {
        let path = top.path("state_backend");
        if let Some(text) = string(node, &path, p) {
            match text.as_str() {
                "heap" => {}
                "rocksdb" => state_backend = StateBackend::RocksDb,
                other => p.add(
                    node.at,
                    &path,
                    format!("unknown state backend `{other}`: expected `heap` or `rocksdb`"),
                ),
            }
        }
    }
    let mut spec = JobSpec {
        name,
        parallelism,
        checkpoints,
        restart,
        state_backend,
        sources: Vec::new(),
        operators: Vec::new(),
        sinks: Vec::new(),
    };
    match top.get("sources") {
        Some(node) => {
            let items = list(node, "sources", p);
            if items.is_empty() && matches!(node.kind, NodeKind::Seq(_)) {
                p.add(node.at, "sources", "expected at least one source");
            }
            for (i, item) in items.iter().enumerate() {
                spec.sources
                    .extend(source(item, &format!("sources[{i}]"), p));
            }
        }
        None => p.add(
            root.at,
            "sources",
            "missing required setting `sources` (a list of sources)",
        ),
    }
    if let Some(node) = top.get("operators") {
        for (i, item) in list(node, "operators", p).iter().enumerate() {
            spec.operators
                .extend(operator(item, &format!("operators[{i}]"), p));
        }
    }
    match top.get("sinks") {
        Some(node) => {
            let items = list(node, "sinks", p);
            if items.is_empty() && matches!(node.kind, NodeKind::Seq(_)) {
                p.add(node.at, "sinks", "expected at least one sink");
            }
            for (i, item) in items.iter().enumerate() {
                spec.sinks.extend(sink(item, &format!("sinks[{i}]"), p));
            }
        }
        None => p.add(
            root.at,
            "sinks",
            "missing required setting `sinks` (a list of sinks)",
        ),
    }
    Some(spec)
}

/// `upsert:` of a Kafka source.
fn upsert(node: &Node, path: &str, p: &mut Problems) -> Option<UpsertSpec> {
    let f = Fields::of(node, path, p)?;
    f.check(&["key", "deleted"], "upsert", p);
    let key = f.read_required(
        "key",
        "the field read from the record key, e.g. key: item",
        p,
        located_string,
    );
    let deleted = f.read_required(
        "deleted",
        "a name for the bool field that marks tombstones, e.g. deleted: deleted",
        p,
        located_string,
    );
    Some(UpsertSpec {
        key: key?,
        deleted: deleted?,
    })
}

fn checkpoints(node: &Node, path: &str, p: &mut Problems) -> Option<CheckpointSpec> {
    let f = Fields::of(node, path, p)?;
    f.check(
        &["interval", "timeout", "storage", "retention", "standbys"],
        "checkpoints",
        p,
    );
    let default = CheckpointSpec::default();
    Some(CheckpointSpec {
        interval: f.read("interval", p, duration).unwrap_or(default.interval),
        timeout: f.read("timeout", p, duration).unwrap_or(default.timeout),
        storage: f.read("storage", p, string).unwrap_or(default.storage),
        retention: f
            .read("retention", p, positive)
            .unwrap_or(default.retention),
        standbys: f.read("standbys", p, count).map_or(default.standbys, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
    })
}

fn restart(node: &Node, path: &str, p: &mut Problems) -> Option<RestartSpec> {
    let f = Fields::of(node, path, p)?;
    let strategy = f.read_required(
        "strategy",
        "none, fixed-delay or exponential-backoff",
        p,
        |n, path, p| {
            choice(
                n,
                path,
                &[("none", 0), ("fixed-delay", 1), ("exponential-backoff", 2)],
                p,
            )
        },
    )?;
    let attempts = |p: &mut Problems| {
        f.read("attempts", p, count)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(3)
    };
    Some(match strategy {
        0 => {
            f.check(&["strategy"], "restart strategy none", p);
            RestartSpec::None
        }
        1 => {
            f.check(
                &["strategy", "attempts", "delay"],
                "restart strategy fixed-delay",
                p,
            );
            RestartSpec::FixedDelay {
                attempts: attempts(p),
                delay: f
                    .read("delay", p, duration)
                    .unwrap_or(Duration::from_secs(1)),
            }
        }
        _ => {
            f.check(
                &["strategy", "attempts", "delay", "max_delay"],
                "restart strategy exponential-backoff",
                p,
            );
            RestartSpec::ExponentialBackoff {
                attempts: attempts(p),
                initial: f
                    .read("delay", p, duration)
                    .unwrap_or(Duration::from_secs(1)),
                max: f
                    .read("max_delay", p, duration)
                    .unwrap_or(Duration::from_secs(60)),
            }
        }
    })
}

const NODE_FIELDS: &[&str] = &["name", "kind", "uid", "parallelism"];

/// Reads the shared settings and the kind; `None` if the entry is unusable.
fn node_spec<'a>(
    node: &'a Node,
    path: &str,
    p: &mut Problems,
) -> Option<(Fields<'a>, NodeSpec, Option<Located<String>>)> {
    let f = Fields::of(node, path, p)?;
    let name = f.read_required("name", "the stream's name", p, located_string);
    let kind = f.read_required("kind", "what this entry is", p, located_string);
    let uid = f.read("uid", p, string);
    let parallelism = f.read("parallelism", p, positive);
    let name = name?;
    if !path.starts_with("sinks") {
        p.unusable.push(name.value.clone());
    }
    let spec = NodeSpec {
        name,
        uid,
        parallelism,
        at: node.at,
        path: path.to_string(),
    };
    Some((f, spec, kind))
}

fn with_common<'a>(specific: &[&'a str], common: &[&'a str]) -> Vec<&'a str> {
    NODE_FIELDS
        .iter()
        .chain(common)
        .chain(specific)
        .copied()
        .collect()
}

fn unknown_kind(kind: &Located<String>, what: &str, known: &[&str], p: &mut Problems) {
    p.add(
        kind.at,
        &kind.path,
        format!(
            "unknown {what} kind `{}`: expected one of {}",
            kind.value,
            known.join(", ")
        ),
    );
}

const SOURCE_KINDS: &[&str] = &["bids", "nexmark", "sequence", "kafka", "file"];

fn source(node: &Node, path: &str, p: &mut Problems) -> Option<SourceSpec> {
    let (f, spec, kind) = node_spec(node, path, p)?;
    let kind = kind?;
    let common = ["timestamp", "watermark", "computed"];
    let source_kind = match kind.value.as_str() {
        "bids" => {
            f.check(
                &with_common(&["events", "rate", "source_parallelism"], &common),
                "a bids source",
                p,
            );
            SourceKind::Bids {
                events: f.read_required("events", "how many bids", p, count)?,
                rate: f.read("rate", p, positive).map_or(10, |n| n as i64),
                source_parallelism: f
                    .read("source_parallelism", p, positive)
                    .map_or(2, |n| n as i64),
            }
        }
        "nexmark" => {
            f.check(
                &with_common(&["events", "events_per_second", "seed", "event"], &common),
                "a nexmark source",
                p,
            );
            SourceKind::Nexmark {
                events: f.read_required("events", "how many events", p, count)?,
                events_per_second: f
                    .read("events_per_second", p, positive)
                    .map_or(10_000, |n| n as u64),
                seed: f.read("seed", p, count).unwrap_or(0),
                event: f
                    .read("event", p, |n, path, p| {
                        choice(
                            n,
                            path,
                            &[
                                ("bid", NexmarkEvent::Bid),
                                ("auction", NexmarkEvent::Auction),
                                ("person", NexmarkEvent::Person),
                            ],
                            p,
                        )
                    })
                    .unwrap_or(NexmarkEvent::Bid),
            }
        }
        "sequence" => {
            f.check(
                &with_common(&["from", "to", "rows_per_second"], &common),
                "a sequence source",
                p,
            );
            let from = f.read_required("from", "the first number", p, integer);
            let to = f.read_required("to", "the last number", p, integer);
            let rows_per_second = f.read("rows_per_second", p, positive).map(|n| n as u64);
            SourceKind::Sequence {
                from: from?,
                to: to?,
                rows_per_second,
            }
        }
        "kafka" => {
            f.check(
                &with_common(
                    &[
                        "bootstrap",
                        "topic",
                        "group",
                        "start",
                        "bounded",
                        "format",
                        "schema",
                        "upsert",
                    ],
                    &common,
                ),
                "a kafka source",
                p,
            );
            let bootstrap = f.read_required(
                "bootstrap",
                "bootstrap servers, e.g. 127.0.0.1:9092",
                p,
                string,
            );
            let topic = f.read_required("topic", "the topic to read", p, string);
            let group = f
                .read("group", p, string)
                .unwrap_or_else(|| format!("weir-{}", spec.name.value));
            let earliest = f
                .read("start", p, |n, path, p| {
                    choice(n, path, &[("earliest", true), ("latest", false)], p)
                })
                .unwrap_or(true);
            let bounded = f.read("bounded", p, boolean).unwrap_or(false);
            let json = f
                .read("format", p, |n, path, p| {
                    choice(n, path, &[("json", true), ("text", false)], p)
                })
                .unwrap_or(true);
            let format = if json {
                KafkaFormat::Json(f.read_required(
                    "schema",
                    "the fields of the JSON records, e.g. {user: string, amount: float}",
                    p,
                    schema,
                )?)
            } else {
                if let Some(node) = f.get("schema") {
                    p.add(
                        node.at,
                        &f.path("schema"),
                        "format text has the single field `value: string`: expected no schema",
                    );
                }
                KafkaFormat::Text
            };
            let upsert = f.read("upsert", p, upsert);
            if let (Some(node), KafkaFormat::Text) = (f.get("upsert"), &format) {
                p.add(
                    node.at,
                    &f.path("upsert"),
                    "a table's rows need fields: expected `format: json` with `upsert`",
                );
            }
            SourceKind::Kafka {
                bootstrap: bootstrap?,
                topic: topic?,
                group,
                earliest,
                bounded,
                format,
                upsert,
            }
        }
        "file" => {
            f.check(
                &with_common(&["path", "format", "header", "schema"], &common),
                "a file source",
                p,
            );
            let path = f.read_required(
                "path",
                "a file, a directory, file:///path or s3://bucket/prefix",
                p,
                string,
            );
            let csv = f
                .read("format", p, |n, path, p| {
                    choice(n, path, &[("json", false), ("csv", true)], p)
                })
                .unwrap_or(false);
            let header = f.read("header", p, boolean);
            if let (Some(node), false) = (f.get("header"), csv) {
                p.add(
                    node.at,
                    &f.path("header"),
                    "`header` applies to CSV files: expected `format: csv` or no header",
                );
            }
            let schema = f.read_required(
                "schema",
                "the fields of a row, e.g. {user: string, amount: float}",
                p,
                schema,
            );
            SourceKind::File {
                path: path?,
                format: if csv {
                    FileRowFormat::Csv {
                        header: header.unwrap_or(true),
                    }
                } else {
                    FileRowFormat::JsonLines
                },
                schema: schema?,
            }
        }
        _ => {
            unknown_kind(&kind, "source", SOURCE_KINDS, p);
            return None;
        }
    };
    let default_timestamp = matches!(
        source_kind,
        SourceKind::Bids { .. } | SourceKind::Nexmark { .. }
    );
    let timestamp = f.read("timestamp", p, located_string).or_else(|| {
        default_timestamp.then(|| Located {
            value: "date_time".to_string(),
            at: node.at,
            path: f.path("timestamp"),
        })
    });
    let watermark = f.read("watermark", p, |n, path, p| {
        let w = Fields::of(n, path, p)?;
        w.check(&["max_out_of_orderness", "idle_timeout"], "a watermark", p);
        Some(WatermarkSpec {
            max_out_of_orderness: w
                .read("max_out_of_orderness", p, duration)
                .unwrap_or_default(),
            idle_timeout: w.read("idle_timeout", p, duration),
        })
    });
    if let (Some(node), None) = (f.get("watermark"), &timestamp) {
        p.add(
            node.at,
            &f.path("watermark"),
            "a watermark needs event time: expected `timestamp: FIELD` on this source",
        );
    }
    let computed = f
        .read("computed", p, |n, path, p| {
            named_expressions(n, path, "computed", p)
        })
        .unwrap_or_default();
    Some(SourceSpec {
        node: spec,
        kind: source_kind,
        computed,
        timestamp,
        watermark,
    })
}

fn schema(node: &Node, path: &str, p: &mut Problems) -> Option<Vec<(String, FieldType)>> {
    let f = Fields::of(node, path, p)?;
    f.check(
        &f.entries
            .iter()
            .map(|(k, _)| k.text.as_str())
            .collect::<Vec<_>>(),
        "a schema",
        p,
    );
    let mut fields = Vec::new();
    for (key, value) in f.entries {
        let field_path = f.path(&key.text);
        if let Some(text) = string(value, &field_path, p) {
            match FieldType::parse(&text) {
                Some(ty) => fields.push((key.text.clone(), ty)),
                None => p.add(
                    value.at,
                    &field_path,
                    format!(
                        "unknown type `{text}`: expected int, float, bool, string or timestamp"
                    ),
                ),
            }
        }
    }
    Some(fields)
}

const OPERATOR_KINDS: &[&str] = &[
    "filter",
    "map",
    "key_by",
    "window",
    "top",
    "union",
    "udf",
    "window_join",
    "interval_join",
    "broadcast_join",
    "temporal_join",
];

/// A mapping of field name to expression (a map's `fields`, a source's
/// `computed`), in order.
fn named_expressions(
    node: &Node,
    path: &str,
    what: &str,
    p: &mut Problems,
) -> Option<Vec<(String, ExprSource)>> {
    let m = Fields::of(node, path, p)?;
    let names: Vec<&str> = m.entries.iter().map(|(k, _)| k.text.as_str()).collect();
    m.check(&names, what, p);
    Some(
        m.entries
            .iter()
            .filter_map(|(k, v)| Some((k.text.clone(), expression(v, &m.path(&k.text), p)?)))
            .collect(),
    )
}

fn expression(node: &Node, path: &str, p: &mut Problems) -> Option<ExprSource> {
    let text = string(node, path, p)?;
    let (plain, block) = match node.kind {
        NodeKind::Scalar { plain, block, .. } => (plain, block),
        _ => (true, false),
    };
    Some(ExprSource {
        one_line: !block && !text.contains('\n'),
        at: if plain { node.at } else { node.at.right(1) },
        text,
        path: path.to_string(),
    })
}

fn operator(node: &Node, path: &str, p: &mut Problems) -> Option<OperatorSpec> {
    let (f, spec, kind) = node_spec(node, path, p)?;
    let kind = kind?;
    let common = ["input", "inputs"];
    let mut inputs = Vec::new();
    match (f.get("input"), f.get("inputs")) {
        (Some(_), Some(n)) => p.add(
            n.at,
            &f.path("inputs"),
            "give either `input` or `inputs`, not both",
        ),
        (Some(n), None) => inputs.extend(located_string(n, &f.path("input"), p)),
        (None, Some(n)) => {
            let list_path = f.path("inputs");
            for (i, item) in list(n, &list_path, p).iter().enumerate() {
                inputs.extend(located_string(item, &format!("{list_path}[{i}]"), p));
            }
        }
        (None, None) => p.add(
            f.at,
            &f.path("input"),
            "missing required setting `input` (the name of the stream read)",
        ),
    }
    let operator_kind = match kind.value.as_str() {
        "filter" => {
            f.check(&with_common(&["condition"], &common), "a filter", p);
            OperatorKind::Filter {
                condition: f.read_required("condition", "a bool expression", p, expression)?,
            }
        }
        "map" => {
            f.check(&with_common(&["fields"], &common), "a map", p);
            let fields = f.read_required(
                "fields",
                "a mapping of output field to expression",
                p,
                |n, path, p| named_expressions(n, path, "fields", p),
            )?;
            OperatorKind::Map { fields }
        }
        "key_by" => {
            f.check(&with_common(&["key"], &common), "a key_by", p);
            let keys = f.read_required(
                "key",
                "a field name or a list of them",
                p,
                |n, path, p| match &n.kind {
                    NodeKind::Seq(items) => Some(
                        items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, item)| {
                                located_string(item, &format!("{path}[{i}]"), p)
                            })
                            .collect(),
                    ),
                    _ => located_string(n, path, p).map(|k| vec![k]),
                },
            )?;
            OperatorKind::KeyBy { keys }
        }
        "window" => {
            f.check(
                &with_common(
                    &[
                        "window",
                        "aggregates",
                        "top",
                        "allowed_lateness",
                        "retention",
                        "pre_aggregate",
                    ],
                    &common,
                ),
                "a window",
                p,
            );
            let shape_node = f.required(
                "window",
                "{type: tumbling|hopping|cumulate|session|sliding, size/slide/step/gap/time_difference}",
                p,
            );
            let shape = shape_node.and_then(|n| window_shape(n, &f.path("window"), p));
            let top = f.read("top", p, window_top);
            let aggregates = match (&top, f.get("aggregates")) {
                (Some(_), Some(n)) => {
                    p.add(
                        n.at,
                        &f.path("aggregates"),
                        "give either `aggregates` or `top`, not both",
                    );
                    None
                }
                (Some(_), None) => Some(Vec::new()),
                // A `top` given but wrong: reported already.
                (None, _) if f.get("top").is_some() => None,
                (None, _) => f.read_required(
                    "aggregates",
                    "a mapping of output field to count, sum(f), min(f), max(f) or avg(f), or `top: FIELD` or `top: {by, n, rank, rank_field}`",
                    p,
                    aggregates,
                ),
            };
            let allowed_lateness = f.read("allowed_lateness", p, duration).unwrap_or_default();
            let retention = f.read("retention", p, duration).unwrap_or_default();
            let pre_aggregate = f.read("pre_aggregate", p, boolean).unwrap_or(false);
            let shape_node = shape_node?;
            OperatorKind::Window {
                shape: shape?,
                shape_at: Located {
                    value: (),
                    at: shape_node.at,
                    path: f.path("window"),
                },
                aggregates: aggregates?,
                top,
                allowed_lateness,
                retention,
                pre_aggregate,
            }
        }
        "top" => {
            f.check(
                &with_common(&["by", "n", "rank", "rank_field", "partition_by"], &common),
                "a top",
                p,
            );
            let partition = f
                .read("partition_by", p, |n, path, p| {
                    Some(
                        list(n, path, p)
                            .iter()
                            .enumerate()
                            .filter_map(|(i, item)| {
                                located_string(item, &format!("{path}[{i}]"), p)
                            })
                            .collect(),
                    )
                })
                .unwrap_or_default();
            OperatorKind::Top {
                top: TopSpec {
                    partition,
                    ..top_spec(&f, p)?
                },
            }
        }
        "union" => {
            f.check(&with_common(&[], &common), "a union", p);
            OperatorKind::Union
        }
        "udf" => {
            f.check(&with_common(&["function"], &common), "a udf", p);
            OperatorKind::Udf {
                function: f.read_required(
                    "function",
                    "the name of a registered function",
                    p,
                    located_string,
                )?,
            }
        }
        "temporal_join" => {
            f.check(
                &with_common(&["retention", "deleted"], &common),
                "a temporal_join",
                p,
            );
            OperatorKind::TemporalJoin {
                retention: f.read("retention", p, duration).unwrap_or_default(),
                deleted: f.read("deleted", p, located_string),
            }
        }
        "broadcast_join" => {
            f.check(&with_common(&[], &common), "a broadcast_join", p);
            OperatorKind::BroadcastJoin
        }
        "window_join" => {
            f.check(&with_common(&["window"], &common), "a window_join", p);
            let shape_node = f.required(
                "window",
                "{type: tumbling|hopping|cumulate|session|sliding, size/slide/step/gap/time_difference}",
                p,
            )?;
            OperatorKind::WindowJoin {
                shape: window_shape(shape_node, &f.path("window"), p)?,
            }
        }
        "interval_join" => {
            f.check(&with_common(&["between"], &common), "an interval_join", p);
            let between = f.required(
                "between",
                "[LOWER, UPPER]: signed durations bounding right time - left time, e.g. [-5s, 10s]",
                p,
            )?;
            let path = f.path("between");
            let bounds: Vec<Option<i64>> = list(between, &path, p)
                .iter()
                .enumerate()
                .map(|(i, n)| signed_duration(n, &format!("{path}[{i}]"), p))
                .collect();
            let [Some(lower), Some(upper)] = bounds[..] else {
                if bounds.len() != 2 {
                    p.add(
                        between.at,
                        &path,
                        format!("expected two bounds [LOWER, UPPER], got {}", bounds.len()),
                    );
                }
                return None;
            };
            if lower > upper {
                p.add(
                    between.at,
                    &path,
                    format!(
                        "the lower bound ({lower} ms) must not exceed the upper bound ({upper} ms)"
                    ),
                );
            }
            OperatorKind::IntervalJoin {
                lower,
                upper,
                between_at: Located {
                    value: (),
                    at: between.at,
                    path,
                },
            }
        }
        _ => {
            unknown_kind(&kind, "operator", OPERATOR_KINDS, p);
            return None;
        }
    };
    Some(OperatorSpec {
        node: spec,
        inputs,
        kind: operator_kind,
    })
}

fn window_shape(node: &Node, path: &str, p: &mut Problems) -> Option<WindowShape> {
    let f = Fields::of(node, path, p)?;
    let kind = f.read_required(
        "type",
        "tumbling, hopping, cumulate, session or sliding",
        p,
        |n, path, p| {
            choice(
                n,
                path,
                &[
                    ("tumbling", 0),
                    ("hopping", 1),
                    ("session", 2),
                    ("cumulate", 3),
                    ("sliding", 4),
                ],
                p,
            )
        },
    )?;
    let positive_duration = |key: &str, p: &mut Problems| {
        let d = f.read_required(key, "a duration, e.g. 10s", p, duration)?;
        if d.is_zero() {
            p.add(
                f.get(key).map_or(f.at, |n| n.at),
                &f.path(key),
                format!("`{key}` must be longer than 0ms"),
            );
            return None;
        }
        Some(d)
    };
    Some(match kind {
        0 => {
            f.check(&["type", "size"], "a tumbling window", p);
            WindowShape::Tumbling {
                size: positive_duration("size", p)?,
            }
        }
        1 => {
            f.check(&["type", "size", "slide"], "a hopping window", p);
            let size = positive_duration("size", p);
            let slide = positive_duration("slide", p);
            WindowShape::Hopping {
                size: size?,
                slide: slide?,
            }
        }
        4 => {
            f.check(&["type", "time_difference", "grace"], "a sliding window", p);
            let time_difference = positive_duration("time_difference", p);
            let grace = f.read("grace", p, duration).unwrap_or_default();
            WindowShape::Sliding {
                time_difference: time_difference?,
                grace,
            }
        }
        3 => {
            f.check(&["type", "size", "step"], "a cumulate window", p);
            let size = positive_duration("size", p);
            let step = positive_duration("step", p);
            WindowShape::Cumulate {
                size: size?,
                step: step?,
            }
        }
        _ => {
            f.check(&["type", "gap"], "a session window", p);
            WindowShape::Session {
                gap: positive_duration("gap", p)?,
            }
        }
    })
}

fn aggregates(node: &Node, path: &str, p: &mut Problems) -> Option<Vec<AggregateSpec>> {
    let f = Fields::of(node, path, p)?;
    let names: Vec<&str> = f.entries.iter().map(|(k, _)| k.text.as_str()).collect();
    f.check(&names, "aggregates", p);
    let mut out = Vec::new();
    for (key, value) in f.entries {
        let path = f.path(&key.text);
        let Some(text) = string(value, &path, p) else {
            continue;
        };
        let text = text.trim();
        let parsed = if text == "count" || text == "count()" {
            Some((AggregateKind::Count, None))
        } else {
            text.strip_suffix(')')
                .and_then(|t| t.split_once('('))
                .and_then(|(function, field)| {
                    let kind = match function.trim() {
                        "sum" => AggregateKind::Sum,
                        "min" => AggregateKind::Min,
                        "max" => AggregateKind::Max,
                        "avg" => AggregateKind::Avg,
                        "count" => AggregateKind::Count,
                        "count_distinct" => AggregateKind::CountDistinct,
                        _ => return None,
                    };
                    let field = field.trim();
                    let valid =
                        !field.is_empty() && field.chars().all(|c| c.is_alphanumeric() || c == '_');
                    valid.then(|| {
                        (
                            kind,
                            (kind != AggregateKind::Count).then(|| field.to_string()),
                        )
                    })
                })
        };
        match parsed {
            Some((kind, field)) => out.push(AggregateSpec { output: key.text.clone(), kind, field, at: value.at, path }),
            None => p.add(value.at, &path, format!("bad aggregate `{text}`: expected count, sum(FIELD), min(FIELD), max(FIELD), avg(FIELD) or count_distinct(FIELD)")),
        }
    }
    Some(out)
}

const SINK_KINDS: &[&str] = &["stdout", "blackhole", "kafka", "file"];

fn sink(node: &Node, path: &str, p: &mut Problems) -> Option<SinkSpec> {
    let (f, spec, kind) = node_spec(node, path, p)?;
    let input = f.read_required("input", "the name of the stream written", p, located_string);
    let kind = kind?;
    let common = ["input"];
    let sink_kind = match kind.value.as_str() {
        "stdout" => {
            f.check(&with_common(&[], &common), "a stdout sink", p);
            SinkKind::Stdout
        }
        "blackhole" => {
            f.check(&with_common(&[], &common), "a blackhole sink", p);
            SinkKind::Blackhole
        }
        "kafka" => {
            f.check(
                &with_common(
                    &["bootstrap", "topic", "guarantee", "key", "deleted"],
                    &common,
                ),
                "a kafka sink",
                p,
            );
            let bootstrap = f.read_required(
                "bootstrap",
                "bootstrap servers, e.g. 127.0.0.1:9092",
                p,
                string,
            );
            let topic = f.read_required("topic", "the topic to write", p, string);
            let guarantee = f
                .read("guarantee", p, |n, path, p| {
                    choice(
                        n,
                        path,
                        &[
                            ("exactly_once", KafkaGuarantee::ExactlyOnce),
                            ("at_least_once", KafkaGuarantee::AtLeastOnce),
                            ("none", KafkaGuarantee::None),
                        ],
                        p,
                    )
                })
                .unwrap_or(KafkaGuarantee::ExactlyOnce);
            let key = f.read("key", p, located_string);
            let deleted = f.read("deleted", p, located_string);
            if let (Some(d), None) = (&deleted, &key) {
                p.add(
                    d.at,
                    &d.path,
                    "a tombstone deletes a key: expected `key:` with `deleted:`",
                );
            }
            SinkKind::Kafka {
                bootstrap: bootstrap?,
                topic: topic?,
                guarantee,
                key,
                deleted,
            }
        }
        "file" => {
            f.check(&with_common(&["path"], &common), "a file sink", p);
            SinkKind::File {
                path: f.read_required("path", "the output directory", p, string)?,
            }
        }
        _ => {
            unknown_kind(&kind, "sink", SINK_KINDS, p);
            return None;
        }
    };
    Some(SinkSpec {
        node: spec,
        input: input?,
        kind: sink_kind,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_a_whole_number_and_a_unit() {
        // The forms the README and `weir --help` show for job files and CLI flags.
        assert_eq!(parse_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10min"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1_000ms"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn other_durations_are_refused() {
        for text in ["", "200", "s", "1.5s", "-1s", "5x", "99999999999999999999d"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }
}

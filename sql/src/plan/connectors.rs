//! Tables as sources and sinks: a `CREATE TABLE`'s connector options as the
//! job-file source or sink they name, its columns as the relation's columns.

use super::{Col, ColRef, Planner, Rel, Shape};
use crate::expr::{self, Scope};
use crate::statements::{ColumnKind, TableDef};
use crate::SqlError;
use std::collections::HashMap;
use weir_jobfile::*;

/// The options of a Kafka table, read or written.
const KAFKA_OPTIONS: &[&str] = &[
    "topic",
    "properties.bootstrap.servers",
    "properties.group.id",
    "scan.startup.mode",
    "scan.bounded.mode",
    "format",
    "value.format",
    "sink.delivery-guarantee",
    "key.fields",
];

/// The options of an upsert-kafka table (a table's changelog), read or written.
const UPSERT_KAFKA_OPTIONS: &[&str] = &[
    "topic",
    "properties.bootstrap.servers",
    "properties.group.id",
    "scan.bounded.mode",
    "key.format",
    "value.format",
    "sink.delivery-guarantee",
];

/// The options of a filesystem table, read or written.
const FILESYSTEM_OPTIONS: &[&str] = &["path", "format", "csv.header"];

/// A table's `WITH` options, read with errors that name the table and the option.
struct Options<'d> {
    def: &'d TableDef,
    map: HashMap<&'d str, &'d str>,
}

impl<'d> Options<'d> {
    fn new(def: &'d TableDef) -> Self {
        let map = def
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self { def, map }
    }

    /// Refuses an option that is not one of `known` (by `connector`), so a
    /// misspelt or unsupported option is not silently ignored.
    fn only(&self, connector: &str, known: &[&str]) -> Result<(), SqlError> {
        let mut keys: Vec<&str> = self.map.keys().copied().collect();
        keys.sort_unstable();
        match keys
            .into_iter()
            .find(|k| *k != "connector" && !known.contains(k))
        {
            Some(unknown) => Err(self.error(format!(
                "option '{unknown}' is not one weir's '{connector}' connector has: expected \
                 some of {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The record key of an upsert-kafka table: its `PRIMARY KEY … NOT ENFORCED`,
    /// one physical column, written as text (`'key.format' = 'raw'`); the values
    /// are JSON (`'value.format' = 'json'`).
    fn upsert_key(&self, physical: &[(&str, FieldType)]) -> Result<Located<String>, SqlError> {
        self.only("upsert-kafka", UPSERT_KAFKA_OPTIONS)?;
        self.choice("key.format", "raw", &[("raw", ())])?;
        self.choice("value.format", "json", &[("json", ())])?;
        let [key] = self.def.primary_key.as_slice() else {
            return Err(self.error(
                "connector 'upsert-kafka' keys records by the table's primary key: expected \
                 PRIMARY KEY (column) NOT ENFORCED, one column",
            ));
        };
        if !physical.iter().any(|(n, _)| n == key) {
            return Err(self.error(format!(
                "primary key `{key}`: expected a physical column of the table"
            )));
        }
        Ok(Located {
            value: key.clone(),
            at: self.def.at,
            path: format!("table `{}` PRIMARY KEY", self.def.name),
        })
    }

    fn get(&self, key: &str) -> Option<&'d str> {
        self.map.get(key).copied()
    }

    fn error(&self, message: impl std::fmt::Display) -> SqlError {
        SqlError::at(self.def.at, format!("table `{}`: {message}", self.def.name))
    }

    fn required(&self, key: &str, what: &str) -> Result<&'d str, SqlError> {
        self.get(key)
            .ok_or_else(|| self.error(format!("missing option '{key}' ({what})")))
    }

    fn number(&self, key: &str) -> Result<Option<i64>, SqlError> {
        self.get(key)
            .map(|text| {
                text.trim().parse::<i64>().map_err(|_| {
                    self.error(format!("option '{key}' = '{text}': expected a number"))
                })
            })
            .transpose()
    }

    /// The value of `key`, one of `choices` (`(value, meaning)`), or `default`.
    fn choice<T: Copy>(
        &self,
        key: &str,
        default: &str,
        choices: &[(&str, T)],
    ) -> Result<T, SqlError> {
        let value = self.get(key).unwrap_or(default);
        choices
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, meaning)| *meaning)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.error(format!(
                    "option '{key}' = '{value}': expected {}",
                    names.join(" or ")
                ))
            })
    }
}

impl Planner<'_> {
    /// The source of table `def`, its columns the table's.
    pub(super) fn source(&mut self, def: &TableDef) -> Result<Rel, SqlError> {
        let options = Options::new(def);
        let table = &def.name;
        let physical: Vec<(&str, FieldType)> = def
            .columns
            .iter()
            .filter_map(|c| match c.kind {
                ColumnKind::Physical(ty) => Some((c.name.as_str(), ty)),
                ColumnKind::Computed(_) => None,
            })
            .collect();
        let same_names = || -> HashMap<String, String> {
            physical
                .iter()
                .map(|(n, _)| (n.to_string(), n.to_string()))
                .collect()
        };
        let typed_fields = || -> Vec<(String, FieldType)> {
            physical.iter().map(|(n, t)| (n.to_string(), *t)).collect()
        };
        let connector = options.required("connector", "which connector reads the table")?;
        // The source, and each physical column's field in it.
        let (kind, field_of): (SourceKind, HashMap<String, String>) = match connector {
            "datagen" | "sequence" => {
                let [(column, FieldType::Int)] = physical.as_slice() else {
                    return Err(options.error(format!(
                        "connector '{connector}' gives one BIGINT sequence column (random \
                         fields are not supported: weir's generators are deterministic; \
                         compute further columns with `name AS expr`)"
                    )));
                };
                let (start_key, end_key) = if connector == "datagen" {
                    let kind_key = format!("fields.{column}.kind");
                    let (start, end) = (
                        format!("fields.{column}.start"),
                        format!("fields.{column}.end"),
                    );
                    options.only(
                        connector,
                        &[&kind_key, &start, &end, "number-of-rows", "rows-per-second"],
                    )?;
                    if options.get(&kind_key) != Some("sequence") {
                        return Err(options.error(format!(
                            "expected '{kind_key}' = 'sequence' (the only datagen kind weir has)"
                        )));
                    }
                    (format!("fields.{column}.start"), format!("fields.{column}.end"))
                } else {
                    options.only(connector, &["start", "end", "rows-per-second"])?;
                    ("start".to_string(), "end".to_string())
                };
                options.required(&start_key, "the first number")?;
                options.required(&end_key, "the last number")?;
                let from = options.number(&start_key)?.unwrap_or(1);
                let to = options.number(&end_key)?.unwrap_or(0);
                let rows_per_second = options
                    .number("rows-per-second")?
                    .filter(|&r| r > 0 && r < 1_000_000_000)
                    .map(|r| r as u64);
                (
                    SourceKind::Sequence {
                        from,
                        to,
                        rows_per_second,
                    },
                    HashMap::from([(column.to_string(), "value".to_string())]),
                )
            }
            "bids" | "nexmark" => {
                let known: &[&str] = if connector == "bids" {
                    &["number-of-events", "number-of-rows", "rows-per-ms", "source-parallelism"]
                } else {
                    &["number-of-events", "number-of-rows", "events-per-second", "seed", "event"]
                };
                options.only(connector, known)?;
                let events = match options.number("number-of-events")? {
                    Some(n) => n,
                    None => options.number("number-of-rows")?.ok_or_else(|| {
                        options.error("missing option 'number-of-events' (how many events)")
                    })?,
                }
                .max(0) as u64;
                let kind = if connector == "bids" {
                    SourceKind::Bids {
                        events,
                        rate: options.number("rows-per-ms")?.unwrap_or(10).max(1),
                        source_parallelism: options
                            .number("source-parallelism")?
                            .unwrap_or(2)
                            .max(1),
                    }
                } else {
                    SourceKind::Nexmark {
                        events,
                        events_per_second: options
                            .number("events-per-second")?
                            .unwrap_or(10_000)
                            .max(1) as u64,
                        seed: options.number("seed")?.unwrap_or(0) as u64,
                        event: options.choice(
                            "event",
                            "bid",
                            &[
                                ("bid", NexmarkEvent::Bid),
                                ("auction", NexmarkEvent::Auction),
                                ("person", NexmarkEvent::Person),
                            ],
                        )?,
                    }
                };
                let schema = source_schema(&kind);
                for (name, ty) in &physical {
                    let fits = schema
                        .index_of(name)
                        .is_some_and(|i| schema.fields[i].ty == *ty);
                    if !fits {
                        let known: Vec<String> = schema
                            .fields
                            .iter()
                            .map(|f| format!("{} {}", f.name, f.ty))
                            .collect();
                        return Err(options.error(format!(
                            "column `{name}` {ty} is not one of the connector's: expected some of {}",
                            known.join(", ")
                        )));
                    }
                }
                (kind, same_names())
            }
            "kafka" => {
                options.only(connector, KAFKA_OPTIONS)?;
                let format = options
                    .get("format")
                    .or(options.get("value.format"))
                    .unwrap_or("json");
                if format != "json" {
                    return Err(options.error(format!("format '{format}': expected json")));
                }
                let kind = SourceKind::Kafka {
                    bootstrap: options
                        .required("properties.bootstrap.servers", "the brokers")?
                        .to_string(),
                    topic: options.required("topic", "the topic read")?.to_string(),
                    group: options
                        .get("properties.group.id")
                        .map_or_else(|| format!("weir-{table}"), str::to_string),
                    earliest: options.choice(
                        "scan.startup.mode",
                        "earliest-offset",
                        &[("earliest-offset", true), ("latest-offset", false)],
                    )?,
                    bounded: options.choice(
                        "scan.bounded.mode",
                        "unbounded",
                        &[("unbounded", false), ("latest-offset", true)],
                    )?,
                    format: KafkaFormat::Json(typed_fields()),
                    upsert: None,
                };
                (kind, same_names())
            }
            "upsert-kafka" => {
                let key = options.upsert_key(&physical)?;
                let kind = SourceKind::Kafka {
                    bootstrap: options
                        .required("properties.bootstrap.servers", "the brokers")?
                        .to_string(),
                    topic: options.required("topic", "the topic read")?.to_string(),
                    group: options
                        .get("properties.group.id")
                        .map_or_else(|| format!("weir-{table}"), str::to_string),
                    // A table is its whole changelog.
                    earliest: true,
                    bounded: options.choice(
                        "scan.bounded.mode",
                        "unbounded",
                        &[("unbounded", false), ("latest-offset", true)],
                    )?,
                    format: KafkaFormat::Json(typed_fields()),
                    upsert: Some(UpsertSpec {
                        key,
                        deleted: Located {
                            value: super::CHANGELOG_DELETED.to_string(),
                            at: def.at,
                            path: format!("table `{table}`"),
                        },
                    }),
                };
                self.changelogs.insert(table.clone());
                (kind, same_names())
            }
            "filesystem" => {
                options.only(connector, FILESYSTEM_OPTIONS)?;
                let header = options.choice("csv.header", "false", &[("false", false), ("true", true)])?;
                let format = options.choice(
                    "format",
                    "",
                    &[
                        ("json", FileRowFormat::JsonLines),
                        ("csv", FileRowFormat::Csv { header }),
                    ],
                )?;
                let kind = SourceKind::File {
                    path: options
                        .required("path", "a file, directory, file:// or s3:// URL")?
                        .to_string(),
                    format,
                    schema: typed_fields(),
                };
                (kind, same_names())
            }
            other => {
                return Err(options.error(format!(
                    "connector '{other}' cannot be read: expected datagen, sequence, bids, nexmark, kafka, upsert-kafka or filesystem"
                )))
            }
        };
        let mut rel = Rel {
            stream: table.clone(),
            cols: Vec::new(),
            shape: Shape::Rows,
        };
        let mut computed = Vec::new();
        let mut typed: Vec<(String, Option<FieldType>)> = source_schema(&kind)
            .fields
            .iter()
            .map(|f| (f.name.clone(), Some(f.ty)))
            .collect();
        let mut fields: Vec<String> = typed.iter().map(|(n, _)| n.clone()).collect();
        for column in &def.columns {
            let field = match &column.kind {
                ColumnKind::Physical(_) => field_of.get(&column.name).cloned().unwrap_or_default(),
                ColumnKind::Computed(e) => {
                    let text = expr::translate(e, &rel)?;
                    if fields.contains(&column.name) {
                        return Err(SqlError::at(
                            column.at,
                            format!(
                                "table `{table}`: computed column `{}` has the name of a \
                                 connector field: expected another name",
                                column.name
                            ),
                        ));
                    }
                    // Its type, if it compiles (else the check of the plan says why).
                    let schema = Schema::new(
                        typed
                            .iter()
                            .map(|(n, t)| (n.as_str(), t.unwrap_or(FieldType::String))),
                    );
                    typed.push((
                        column.name.clone(),
                        Expr::compile(&text, &schema).ok().map(|e| e.ty()),
                    ));
                    fields.push(column.name.clone());
                    computed.push((
                        column.name.clone(),
                        ExprSource {
                            text,
                            at: column.at,
                            one_line: false,
                            path: format!("table `{table}` column `{}`", column.name),
                        },
                    ));
                    column.name.clone()
                }
            };
            rel.cols.push(Col {
                qualifier: Some(table.clone()),
                name: column.name.clone(),
                r: ColRef::Field(field),
            });
        }
        let (timestamp, watermark) = match &def.watermark {
            Some((column, delay, at)) => {
                let field = rel
                    .field(std::slice::from_ref(column))
                    .map_err(|m| SqlError::at(*at, m))?;
                self.event_time.insert(table.clone(), field.clone());
                (
                    Some(Located {
                        value: field,
                        at: *at,
                        path: format!("table `{table}` WATERMARK"),
                    }),
                    Some(WatermarkSpec {
                        max_out_of_orderness: *delay,
                        idle_timeout: self.idle_timeout,
                    }),
                )
            }
            None => (None, None),
        };
        self.names.insert(table.clone());
        let ints = typed
            .into_iter()
            .filter(|(_, t)| *t == Some(FieldType::Int))
            .map(|(n, _)| n)
            .collect();
        self.fields.insert(table.clone(), fields);
        self.int_fields.insert(table.clone(), ints);
        let outer_at = std::mem::replace(&mut self.at, def.at);
        let node = self.node(table);
        self.at = outer_at;
        self.spec.sources.push(SourceSpec {
            node,
            kind,
            computed,
            timestamp,
            watermark,
        });
        Ok(rel)
    }

    /// The sink that table `def` names.
    pub(super) fn sink_kind(&self, def: &TableDef) -> Result<SinkKind, SqlError> {
        let options = Options::new(def);
        Ok(
            match options.required("connector", "which connector writes the table")? {
                "blackhole" => {
                    options.only("blackhole", &[])?;
                    SinkKind::Blackhole
                }
                "print" => {
                    options.only("print", &[])?;
                    SinkKind::Stdout
                }
                "filesystem" => {
                    options.only("filesystem", FILESYSTEM_OPTIONS)?;
                    options.choice("format", "json", &[("json", ())])?;
                    SinkKind::File {
                        path: options.required("path", "the directory written")?.to_string(),
                    }
                }
                "kafka" => {
                    options.only("kafka", KAFKA_OPTIONS)?;
                    let guarantees = [
                        ("exactly-once", KafkaGuarantee::ExactlyOnce),
                        ("at-least-once", KafkaGuarantee::AtLeastOnce),
                        ("none", KafkaGuarantee::None),
                    ];
                    SinkKind::Kafka {
                        bootstrap: options
                            .required("properties.bootstrap.servers", "the brokers")?
                            .to_string(),
                        topic: options.required("topic", "the topic written")?.to_string(),
                        guarantee: options.choice(
                            "sink.delivery-guarantee",
                            "exactly-once",
                            &guarantees,
                        )?,
                        key: options.get("key.fields").map(|k| Located {
                            value: k.to_string(),
                            at: def.at,
                            path: format!("table `{}` 'key.fields'", def.name),
                        }),
                        deleted: None,
                    }
                }
                "upsert-kafka" => {
                    let physical: Vec<(&str, FieldType)> = def
                        .columns
                        .iter()
                        .filter_map(|c| match c.kind {
                            ColumnKind::Physical(ty) => Some((c.name.as_str(), ty)),
                            ColumnKind::Computed(_) => None,
                        })
                        .collect();
                    let key = options.upsert_key(&physical)?;
                    SinkKind::Kafka {
                        bootstrap: options
                            .required("properties.bootstrap.servers", "the brokers")?
                            .to_string(),
                        topic: options.required("topic", "the topic written")?.to_string(),
                        guarantee: options.choice(
                            "sink.delivery-guarantee",
                            "exactly-once",
                            &[
                                ("exactly-once", KafkaGuarantee::ExactlyOnce),
                                ("at-least-once", KafkaGuarantee::AtLeastOnce),
                                ("none", KafkaGuarantee::None),
                            ],
                        )?,
                        // A query's rows are all upserts: weir's SQL has no
                        // retracting queries yet.
                        key: Some(key),
                        deleted: None,
                    }
                }
                other => {
                    return Err(options.error(format!(
                        "connector '{other}' cannot be written: expected blackhole, print, filesystem, kafka or upsert-kafka"
                    )))
                }
            },
        )
    }
}

//! Runs declarative job files: turns a validated [`JobPlan`] (see `weir_jobfile`)
//! into a checkpointed weir job — `weir run job.yaml`.
//!
//! ```text
//!  JobPlan ─▶ build(): per stream, in dependency order
//!    source  ─▶ job.source(generator or Kafka) ─map─▶ Stream<Row> (+ event time)
//!    filter / map / udf ─▶ RowOperator (expression errors fail the job)
//!    key_by ─▶ KeyedStream<Key, Row> ─window─▶ RowAggregates ─▶ Stream<Row>
//!    union  ─▶ Stream::union
//!    sinks  ─▶ rows as JSON objects ─▶ stdout │ blackhole │ file │ Kafka
//!  run(): CheckpointedJob::spawn(JobConfig, CheckpointingConfig, build)
//! ```
//!
//! ```
//! use weir_server::jobs::{self, RunOptions};
//! use weir_jobfile::Registry;
//! let dir = tempfile::tempdir().unwrap();
//! let text = format!("
//! name: evens
//! checkpoints: {{interval: 100ms, storage: {}}}
//! sources: [{{name: numbers, kind: sequence, from: 1, to: 100}}]
//! operators:
//!   - {{name: evens, kind: filter, input: numbers, condition: value % 2 = 0}}
//! sinks: [{{name: out, kind: blackhole, input: evens}}]
//! ", dir.path().join("checkpoints").display());
//! let plan = weir_jobfile::load("evens.yaml", &text, &Registry::default()).unwrap();
//! let summary = jobs::run(plan, &RunOptions::default()).unwrap();
//! let written: u64 = summary.metrics.iter().filter(|m| m.operator == "out").map(|m| m.records_in).sum();
//! assert_eq!(written, 50);
//! ```

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use weir_checkpoint::{CoordinatorConfig, StorageConfig};
use weir_dataflow::checkpointing::{
    CheckpointedJob, CheckpointingConfig, Failpoint, JobListener, NoListener, RestartStrategy,
    ResumeFrom, RunSummary,
};
use weir_dataflow::window::{Window, WindowAssigner};
use weir_dataflow::{
    Data, DataflowError, JobBuilder, JobConfig, KeyedStream, Operator, Output, Stream, SubtaskInfo,
    Timestamp, WatermarkStrategy,
};
use weir_jobfile::{
    Accumulator, Aggregate, EvalError, Expr, FileRowFormat, JobPlan, JoinKind, JoinPlan,
    KafkaFormat, KafkaGuarantee, Key, NexmarkEvent, PlannedSink, PlannedStream, RestartSpec, Row,
    RowFunction, SinkKind, SourceKind, SourceSpec, Step, Value, WindowShape,
};
use weir_nexmark::{
    Auction, Bid, BidGeneratorConfig, BidSource, Event, NexmarkConfig, NexmarkSource, Person,
};
use weir_sinks::kafka::{json, json_keyed};
use weir_sinks::{
    BlackholeSink, CommitFailpoint, CommitStep, DeliveryGuarantee, EpochFileSink, FileSinkConfig,
    KafkaSink, KafkaSinkConfig, ObjectFileSink,
};
use weir_sources::kafka::Deserializer;
use weir_sources::{
    FileFormat, FileSource, FileSourceConfig, KafkaRecord, KafkaSource, KafkaSourceConfig,
    SequenceSource, StartPosition,
};
use weir_state::AggregateFunction;

/// Command-line overrides of a job file's settings.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Default parallelism instead of the file's `parallelism`.
    pub parallelism: Option<usize>,
    /// Resume from this savepoint.
    pub from_savepoint: Option<String>,
    /// Resume from the newest complete checkpoint of the job.
    pub resume: bool,
    /// Start even if the restored state has operators the job lacks.
    pub allow_non_restored_state: bool,
    /// Resume from an older checkpoint when the newest complete one cannot be
    /// restored (see `CheckpointingConfig::fallback_past_corrupt`).
    pub fallback_past_corrupt: bool,
    /// Where savepoints go (default `./weir-data/savepoints`).
    pub savepoints: Option<String>,
    /// Crash tests (`weir verify`): points where the process aborts.
    pub crash: CrashPoints,
    /// The RocksDB backend's local directory instead of `./weir-data/state`.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Where a run aborts its process on purpose, for crash tests (`weir verify`).
#[derive(Clone, Debug, Default)]
pub struct CrashPoints {
    /// A step of the checkpoint protocol, the `n`-th time it is reached.
    pub protocol: Option<(Failpoint, u64)>,
    /// A step of the exactly-once sinks' commits (file and Kafka), the `n`-th time.
    pub sink_commit: Option<(CommitStep, u64)>,
}

/// The engine settings of `plan` with `options` applied.
pub fn configs(plan: &JobPlan, options: &RunOptions) -> (JobConfig, CheckpointingConfig) {
    let spec = &plan.spec;
    let config = JobConfig {
        name: spec.name.clone(),
        parallelism: options.parallelism.unwrap_or(spec.parallelism),
        state_backend: match spec.state_backend {
            weir_jobfile::StateBackend::Heap => weir_state::StateBackend::Heap,
            weir_jobfile::StateBackend::RocksDb => {
                let defaults = weir_state::RocksDbConfig::default();
                weir_state::StateBackend::RocksDb(weir_state::RocksDbConfig {
                    dir: options
                        .state_dir
                        .clone()
                        .unwrap_or_else(|| defaults.dir.clone()),
                    ..defaults
                })
            }
        },
        ..JobConfig::default()
    };
    let defaults = CheckpointingConfig::default();
    let checkpointing = CheckpointingConfig {
        storage: StorageConfig::new(spec.checkpoints.storage.clone()),
        coordinator: CoordinatorConfig {
            interval: spec.checkpoints.interval,
            timeout: spec.checkpoints.timeout,
            retention: spec.checkpoints.retention,
            ..CoordinatorConfig::default()
        },
        restart: match spec.restart {
            RestartSpec::None => RestartStrategy::None,
            RestartSpec::FixedDelay { attempts, delay } => {
                RestartStrategy::FixedDelay { attempts, delay }
            }
            RestartSpec::ExponentialBackoff {
                attempts,
                initial,
                max,
            } => RestartStrategy::ExponentialBackoff {
                attempts,
                initial,
                max,
            },
        },
        resume: ResumeFrom::choose(options.from_savepoint.clone(), options.resume),
        allow_non_restored_state: options.allow_non_restored_state,
        fallback_past_corrupt: options.fallback_past_corrupt,
        savepoints: options
            .savepoints
            .clone()
            .map_or(defaults.savepoints.clone(), StorageConfig::new),
        failpoint: options.crash.protocol,
        ..defaults
    };
    (config, checkpointing)
}

/// Runs `plan` embedded, with checkpoints, until its sources end (or it fails).
///
/// # Errors
/// The checkpoint storage cannot be opened, the restore fails, or the job fails
/// after its restarts ran out (an expression error such as a division by zero,
/// a Kafka record that does not match the declared schema, …).
pub fn run(plan: JobPlan, options: &RunOptions) -> Result<RunSummary, DataflowError> {
    run_with_listener(plan, options, Arc::new(NoListener))
}

/// [`run`], reporting progress to `listener`.
///
/// # Errors
/// As [`run`].
pub fn run_with_listener(
    plan: JobPlan,
    options: &RunOptions,
    listener: Arc<dyn JobListener>,
) -> Result<RunSummary, DataflowError> {
    let (config, checkpointing) = configs(&plan, options);
    let plan = Arc::new(plan);
    let sink_commit = options.crash.sink_commit;
    CheckpointedJob::spawn(
        config,
        checkpointing,
        move |job| build_with(&plan, job, sink_commit),
        listener,
    )?
    .wait()
}

enum Built {
    Rows(Stream<Row>),
    Keyed(KeyedStream<Key, Row>),
}

/// Adds `plan`'s sources, operators and sinks to `job`.
pub fn build(plan: &JobPlan, job: &JobBuilder) {
    build_with(plan, job, None);
}

/// [`build`], with the sinks crashing the process at `sink_commit` (crash tests).
fn build_with(plan: &JobPlan, job: &JobBuilder, sink_commit: Option<(CommitStep, u64)>) {
    let mut built: HashMap<&str, Built> = HashMap::new();
    for stream in &plan.streams {
        let name = stream.node.name.value.as_str();
        let rows = |n: &str| match built.get(n) {
            Some(Built::Rows(s)) => Some(s.clone()),
            Some(Built::Keyed(k)) => Some(k.stream().clone()),
            None => None,
        };
        let input = if stream.inputs.is_empty() {
            job_source(job, stream)
        } else {
            rows(&stream.inputs[0])
        };
        let Some(input) = input else {
            continue;
        };
        // Filter, map and udf are one row operator each, differing in what it applies.
        let row_step = |apply: RowApply| {
            Built::Rows(settings(
                input.transform(name, move |info: &SubtaskInfo| RowOperator {
                    operator: info.operator.clone(),
                    subtask: info.index,
                    apply: apply.clone(),
                    _p: PhantomData,
                }),
                stream,
                stream.schema.event_time,
            ))
        };
        let next = match &stream.step {
            Step::Source(_) => Built::Rows(input),
            Step::Filter(expr) => row_step(RowApply::Filter(expr.clone())),
            Step::Map(exprs) => row_step(RowApply::Map(exprs.clone())),
            Step::Udf(function) => row_step(RowApply::Udf(function.clone())),
            Step::KeyBy(keys) => {
                let keys = keys.clone();
                Built::Keyed(input.key_by(move |row: &Row| Key::of(row, &keys)))
            }
            Step::Union => {
                let others: Vec<Stream<Row>> =
                    stream.inputs[1..].iter().filter_map(|i| rows(i)).collect();
                Built::Rows(settings(
                    input.union(&others).name(name),
                    stream,
                    stream.schema.event_time,
                ))
            }
            Step::Window(window) => {
                let Some(Built::Keyed(keyed)) = built.get(stream.inputs[0].as_str()) else {
                    continue;
                };
                let windowed = keyed
                    .window(assigner(window.shape))
                    .allowed_lateness(window.allowed_lateness)
                    .name(name);
                let windowed = windowed.uid(stream.node.uid.as_deref().unwrap_or(name));
                let aggregates = RowAggregates(Arc::new(window.aggregates.clone()));
                let results = windowed.aggregate(aggregates, |key: &Key, w: Window, values| {
                    let mut fields = Vec::with_capacity(key.values().len() + 2 + values.len());
                    fields.extend_from_slice(key.values());
                    fields.push(Value::Timestamp(w.start));
                    fields.push(Value::Timestamp(w.end));
                    fields.extend(values);
                    Row(fields)
                });
                Built::Rows(settings(results, stream, stream.schema.event_time))
            }
            Step::Join(plan) => {
                let (Some(Built::Keyed(left)), Some(Built::Keyed(right))) = (
                    built.get(stream.inputs[0].as_str()),
                    built.get(stream.inputs[1].as_str()),
                ) else {
                    continue;
                };
                Built::Rows(settings(
                    join(left, right, plan),
                    stream,
                    stream.schema.event_time,
                ))
            }
        };
        built.insert(name, next);
    }
    for sink in &plan.sinks {
        if let Some(Built::Rows(input)) = built.get(sink.spec.input.value.as_str()) {
            add_sink(input, sink, sink_commit);
        }
    }
}

fn assigner(shape: WindowShape) -> WindowAssigner {
    match shape {
        WindowShape::Tumbling { size } => WindowAssigner::tumbling(size),
        WindowShape::Hopping { size, slide } => WindowAssigner::sliding(size, slide),
        WindowShape::Session { gap } => WindowAssigner::session(gap),
    }
}

/// Joins two keyed row streams as `plan` says: key fields, (window bounds), the
/// left row's other fields, the right row's other fields, (the later event time).
fn join(
    left: &KeyedStream<Key, Row>,
    right: &KeyedStream<Key, Row>,
    plan: &JoinPlan,
) -> Stream<Row> {
    let fields = Arc::new((plan.left_fields.clone(), plan.right_fields.clone()));
    let rest = move |values: &mut Vec<Value>, l: &Row, r: &Row| {
        values.extend(fields.0.iter().map(|&i| l.0[i].clone()));
        values.extend(fields.1.iter().map(|&i| r.0[i].clone()));
    };
    match plan.kind {
        JoinKind::Window(shape) => left.window_join(
            right,
            assigner(shape),
            move |key: &Key, w: Window, lefts: &[Row], rights: &[Row], out: &mut Vec<Row>| {
                for l in lefts {
                    for r in rights {
                        let mut values = key.values().to_vec();
                        values.push(Value::Timestamp(w.start));
                        values.push(Value::Timestamp(w.end));
                        rest(&mut values, l, r);
                        out.push(Row(values));
                    }
                }
            },
        ),
        JoinKind::Interval { lower, upper } => {
            let time =
                |row: &Row, field: Option<usize>| field.map_or(i64::MIN, |i| row.0[i].as_i64());
            let (left_time, right_time) = plan.event_time;
            left.interval_join(right, lower, upper, move |key: &Key, l: &Row, r: &Row| {
                let mut values = key.values().to_vec();
                rest(&mut values, l, r);
                values.push(Value::Timestamp(
                    time(l, left_time).max(time(r, right_time)),
                ));
                Row(values)
            })
        }
    }
}

/// Applies the stream's uid and parallelism and its event time.
fn settings(
    stream: Stream<Row>,
    planned: &PlannedStream,
    event_time: Option<usize>,
) -> Stream<Row> {
    let name = &planned.node.name.value;
    let mut stream = stream
        .name(name)
        .uid(planned.node.uid.as_deref().unwrap_or(name));
    if let Some(parallelism) = planned.node.parallelism {
        stream = stream.parallelism(parallelism);
    }
    match event_time {
        Some(i) => stream.with_timestamps(move |row: &Row| Timestamp(row.0[i].as_i64())),
        None => stream,
    }
}

fn bid_row(b: Bid) -> Row {
    Row(vec![
        Value::Int(b.auction),
        Value::Int(b.bidder),
        Value::Int(b.price),
        Value::String(b.channel.into()),
        Value::String(b.url.into()),
        Value::Timestamp(b.date_time),
        Value::String(b.extra.into()),
    ])
}

fn auction_row(a: Auction) -> Row {
    Row(vec![
        Value::Int(a.id),
        Value::String(a.item_name.into()),
        Value::String(a.description.into()),
        Value::Int(a.initial_bid),
        Value::Int(a.reserve),
        Value::Timestamp(a.date_time),
        Value::Timestamp(a.expires),
        Value::Int(a.seller),
        Value::Int(a.category),
        Value::String(a.extra.into()),
    ])
}

fn person_row(p: Person) -> Row {
    Row(vec![
        Value::Int(p.id),
        Value::String(p.name.into()),
        Value::String(p.email_address.into()),
        Value::String(p.credit_card.into()),
        Value::String(p.city.into()),
        Value::String(p.state.into()),
        Value::Timestamp(p.date_time),
        Value::String(p.extra.into()),
    ])
}

/// A watermark strategy reading event time with `time`, or none.
fn strategy<T: 'static>(
    spec: &SourceSpec,
    event_time: Option<usize>,
    time: impl Fn(&T, usize) -> i64 + Send + Sync + 'static,
) -> WatermarkStrategy<T> {
    let Some(i) = event_time else {
        return WatermarkStrategy::none();
    };
    let watermark = spec
        .watermark
        .clone()
        .unwrap_or(weir_jobfile::WatermarkSpec {
            max_out_of_orderness: std::time::Duration::ZERO,
            idle_timeout: None,
        });
    let strategy = WatermarkStrategy::bounded_out_of_orderness(
        watermark.max_out_of_orderness,
        move |t: &T| Timestamp(time(t, i)),
    );
    match watermark.idle_timeout {
        Some(timeout) => strategy.with_idleness(timeout),
        None => strategy,
    }
}

/// The source of a source stream as rows (`None` for other streams).
fn job_source(job: &JobBuilder, planned: &PlannedStream) -> Option<Stream<Row>> {
    let Step::Source(spec) = &planned.step else {
        return None;
    };
    let name = planned.node.name.value.as_str();
    let event_time = planned.schema.event_time;
    let rows = match &spec.kind {
        SourceKind::Bids {
            events,
            rate,
            source_parallelism,
        } => {
            let config = BidGeneratorConfig {
                events: *events,
                rows_per_ms: *rate,
                source_parallelism: *source_parallelism,
            };
            let time = |b: &Bid, i: usize| match i {
                5 => b.date_time,
                _ => bid_row(b.clone()).0[i].as_i64(),
            };
            let source = job.source(
                name,
                strategy(spec, event_time, time),
                BidSource::factory(config),
            );
            node(source, planned).map(bid_row)
        }
        SourceKind::Nexmark {
            events,
            events_per_second,
            seed,
            event,
        } => {
            let config = NexmarkConfig {
                events: *events,
                events_per_second: *events_per_second,
                seed: *seed,
            };
            let event = *event;
            let to_row = move |e: Event| match (event, e) {
                (NexmarkEvent::Bid, Event::Bid(b)) => Some(bid_row(b)),
                (NexmarkEvent::Auction, Event::Auction(a)) => Some(auction_row(a)),
                (NexmarkEvent::Person, Event::Person(p)) => Some(person_row(p)),
                _ => None,
            };
            let time = move |e: &Event, i: usize| {
                to_row(e.clone()).map_or_else(|| e.date_time(), |row| row.0[i].as_i64())
            };
            let source = job.source(
                name,
                strategy(spec, event_time, time),
                NexmarkSource::factory(config),
            );
            node(source, planned).flat_map(to_row)
        }
        SourceKind::Sequence {
            from,
            to,
            rows_per_second,
        } => {
            let time = |n: &i64, _: usize| *n;
            let strategy = strategy(spec, event_time, time);
            let source = match rows_per_second {
                Some(rate) => {
                    job.source(name, strategy, SequenceSource::throttled(*from, *to, *rate))
                }
                None => job.source(name, strategy, SequenceSource::factory(*from, *to)),
            };
            node(source, planned).map(|n: i64| Row(vec![Value::Int(n)]))
        }
        SourceKind::Kafka {
            bootstrap,
            topic,
            group,
            earliest,
            bounded,
            format,
        } => {
            let mut config = KafkaSourceConfig::new(bootstrap, topic, group);
            config.bounded = *bounded;
            config.start = if *earliest {
                StartPosition::Earliest
            } else {
                StartPosition::Latest
            };
            let schema = planned.schema.clone();
            let deserializer: Deserializer<Row> = match format {
                KafkaFormat::Text => Arc::new(|bytes: Option<&[u8]>| {
                    std::str::from_utf8(bytes.unwrap_or_default())
                        .map(|s| Row(vec![Value::String(s.into())]))
                        .map_err(|e| format!("expected UTF-8 text: {e}"))
                }),
                KafkaFormat::Json(_) => Arc::new(move |bytes: Option<&[u8]>| {
                    let json: serde_json::Value = serde_json::from_slice(bytes.unwrap_or_default())
                        .map_err(|e| format!("expected a JSON object: {e}"))?;
                    schema.row_from_json(&json)
                }),
            };
            let time = |r: &KafkaRecord<Row>, i: usize| r.value.0[i].as_i64();
            let source = job.source(
                name,
                strategy(spec, event_time, time),
                KafkaSource::factory(config, deserializer),
            );
            node(source, planned).map(|r: KafkaRecord<Row>| r.value)
        }
        SourceKind::File {
            path,
            format,
            schema: _,
        } => {
            let schema = Arc::new(planned.schema.clone());
            let config = FileSourceConfig::new(path.clone());
            match *format {
                FileRowFormat::JsonLines => {
                    let fields = schema.clone();
                    let time = move |json: &serde_json::Value, i: usize| {
                        json.get(&fields.fields[i].name)
                            .and_then(serde_json::Value::as_i64)
                    };
                    let convert = move |json: serde_json::Value| schema.row_from_json(&json);
                    file_rows(job, spec, planned, event_time, config, time, convert)
                }
                FileRowFormat::Csv { header: true } => {
                    let config = config.with_format(FileFormat::Csv { header: true });
                    let names = schema.clone();
                    let time = move |fields: &HashMap<String, String>, i: usize| {
                        let field = &names.fields[i];
                        let text = fields.get(&field.name)?;
                        field_value(field, text).ok().map(|v| v.as_i64())
                    };
                    let convert = move |fields: HashMap<String, String>| {
                        let values = schema.fields.iter().map(|field| {
                            let text = fields.get(&field.name).ok_or_else(|| {
                                format!("expected a column `{}` in the header", field.name)
                            })?;
                            field_value(field, text)
                        });
                        values.collect::<Result<Vec<_>, String>>().map(Row)
                    };
                    file_rows(job, spec, planned, event_time, config, time, convert)
                }
                FileRowFormat::Csv { header: false } => {
                    let config = config.with_format(FileFormat::Csv { header: false });
                    let names = schema.clone();
                    let time = move |fields: &Vec<String>, i: usize| {
                        let text = fields.get(i)?;
                        field_value(&names.fields[i], text).ok().map(|v| v.as_i64())
                    };
                    let convert = move |fields: Vec<String>| {
                        if fields.len() != schema.fields.len() {
                            return Err(format!(
                                "expected {} fields, got {}",
                                schema.fields.len(),
                                fields.len()
                            ));
                        }
                        let values = schema
                            .fields
                            .iter()
                            .zip(&fields)
                            .map(|(field, text)| field_value(field, text));
                        values.collect::<Result<Vec<_>, String>>().map(Row)
                    };
                    file_rows(job, spec, planned, event_time, config, time, convert)
                }
            }
        }
    };
    let rows = rows.name(&format!("{name}-rows")).uid(&format!(
        "{}-rows",
        planned.node.uid.as_deref().unwrap_or(name)
    ));
    Some(match event_time {
        Some(i) => rows.with_timestamps(move |row: &Row| Timestamp(row.0[i].as_i64())),
        None => rows,
    })
}

/// Applies a source's uid and parallelism.
fn node<T: Data>(stream: Stream<T>, planned: &PlannedStream) -> Stream<T> {
    let stream = match &planned.node.uid {
        Some(uid) => stream.uid(uid),
        None => stream.uid(&planned.node.name.value),
    };
    match planned.node.parallelism {
        Some(p) => stream.parallelism(p),
        None => stream,
    }
}

#[derive(Clone)]
enum RowApply {
    Filter(Expr),
    Map(Vec<Expr>),
    Udf(RowFunction),
}

/// The value of `field` written as `text` in a CSV row.
fn field_value(field: &weir_jobfile::Field, text: &str) -> Result<Value, String> {
    Value::from_text(field.ty, text).ok_or_else(|| {
        format!(
            "field `{}`: expected a {}, got `{text}`",
            field.name, field.ty
        )
    })
}

/// A file source whose records `convert` turns into rows; a record that does not
/// fit the schema fails the job, naming the source and what was expected.
fn file_rows<T: serde::de::DeserializeOwned + Data>(
    job: &JobBuilder,
    spec: &SourceSpec,
    planned: &PlannedStream,
    event_time: Option<usize>,
    config: FileSourceConfig,
    time: impl Fn(&T, usize) -> Option<i64> + Send + Sync + 'static,
    convert: impl Fn(T) -> Result<Row, String> + Send + Sync + 'static,
) -> Stream<Row> {
    let name = planned.node.name.value.as_str();
    let convert = Arc::new(convert);
    // Only the event-time field is read at the source; a record whose field does not
    // parse gets time 0 here and fails the job in the conversion after the source.
    let time = move |record: &T, i: usize| time(record, i).unwrap_or(0);
    let source = job.source(
        name,
        strategy(spec, event_time, time),
        FileSource::<T>::factory(config),
    );
    node(source, planned).transform(name, move |info: &SubtaskInfo| TryRows {
        operator: info.operator.clone(),
        subtask: info.index,
        convert: convert.clone(),
        _records: PhantomData,
    })
}

/// Converts records to rows, failing the job on the first that does not convert.
struct TryRows<T, F> {
    operator: String,
    subtask: usize,
    convert: Arc<F>,
    _records: PhantomData<fn(T)>,
}

impl<T: Data, F: Fn(T) -> Result<Row, String> + Send + Sync + 'static> Operator for TryRows<T, F> {
    type In = T;
    type Out = Row;
    fn on_batch(&mut self, input: &mut Vec<T>, out: &mut Output<Row>) -> weir_dataflow::Result<()> {
        for record in input.drain(..) {
            let row = (self.convert)(record).map_err(|e| {
                DataflowError::operator(
                    &self.operator,
                    self.subtask,
                    format!("a record does not fit the source's schema: {e}"),
                )
            })?;
            out.push(row);
        }
        Ok(())
    }
}

/// Filter, map and user functions over rows; an expression error fails the job
/// with the operator's name and the row.
struct RowOperator {
    operator: String,
    subtask: usize,
    apply: RowApply,
    _p: PhantomData<fn()>,
}

impl RowOperator {
    fn fail(&self, row: &Row, e: EvalError) -> DataflowError {
        DataflowError::operator(
            &self.operator,
            self.subtask,
            format!("{e} (row {:?})", row.0),
        )
    }
}

impl Operator for RowOperator {
    type In = Row;
    type Out = Row;
    fn on_batch(
        &mut self,
        input: &mut Vec<Row>,
        out: &mut Output<Row>,
    ) -> weir_dataflow::Result<()> {
        for row in input.drain(..) {
            match &self.apply {
                RowApply::Filter(condition) => match condition.eval(&row) {
                    Ok(Value::Bool(true)) => out.push(row),
                    Ok(_) => {}
                    Err(e) => return Err(self.fail(&row, e)),
                },
                RowApply::Map(exprs) => {
                    let values = exprs
                        .iter()
                        .map(|e| e.eval(&row))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| self.fail(&row, e))?;
                    out.push(Row(values));
                }
                RowApply::Udf(function) => function(&row).into_iter().for_each(|r| out.push(r)),
            }
        }
        Ok(())
    }
}

/// A window's built-in aggregates as one aggregate function.
#[derive(Clone)]
struct RowAggregates(Arc<Vec<Aggregate>>);

impl AggregateFunction<Row> for RowAggregates {
    type Acc = Vec<Accumulator>;
    type Out = Vec<Value>;
    fn create(&self) -> Vec<Accumulator> {
        self.0.iter().map(Aggregate::create).collect()
    }
    fn add(&self, acc: &mut Vec<Accumulator>, row: &Row) {
        for (aggregate, acc) in self.0.iter().zip(acc.iter_mut()) {
            aggregate.add(acc, row);
        }
    }
    fn merge(&self, acc: &mut Vec<Accumulator>, other: Vec<Accumulator>) {
        for ((aggregate, acc), other) in self.0.iter().zip(acc.iter_mut()).zip(other) {
            aggregate.merge(acc, other);
        }
    }
    fn result(&self, acc: &Vec<Accumulator>) -> Vec<Value> {
        self.0
            .iter()
            .zip(acc)
            .map(|(a, acc)| a.result(acc))
            .collect()
    }
}

/// A row as a JSON object. Sinks write it as that object; checkpoints (a binary
/// format, which cannot hold an untyped `serde_json::Value`) keep it as its JSON
/// text, so that a sink's pending epochs restore.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonRow(pub serde_json::Value);

impl serde::Serialize for JsonRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serde::Serialize::serialize(&self.0, serializer)
        } else {
            serializer.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> serde::Deserialize<'de> for JsonRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            <serde_json::Value as serde::Deserialize>::deserialize(deserializer).map(JsonRow)
        } else {
            let text = <String as serde::Deserialize>::deserialize(deserializer)?;
            serde_json::from_str(&text)
                .map(JsonRow)
                .map_err(D::Error::custom)
        }
    }
}

/// Writes `input` to the sink as JSON objects.
fn add_sink(input: &Stream<Row>, sink: &PlannedSink, crash: Option<(CommitStep, u64)>) {
    let file_failpoint = crash.map(|(step, nth)| CommitFailpoint::new(step, nth));
    let name = sink.spec.node.name.value.as_str();
    let schema = Arc::new(sink.schema.clone());
    let to_json = {
        let schema = schema.clone();
        move |row: Row| JsonRow(schema.to_json(&row))
    };
    let handle = match &sink.spec.kind {
        SinkKind::Blackhole => input.sink(name, BlackholeSink::<Row>::new().0),
        SinkKind::Stdout => input
            .map(to_json)
            .name(&format!("{name}-json"))
            .uid(&format!(
                "{}-json",
                sink.spec.node.uid.as_deref().unwrap_or(name)
            ))
            .sink(name, weir_sinks::StdoutJsonSink::<JsonRow>::factory()),
        SinkKind::File { path } => {
            let json = input
                .map(to_json)
                .name(&format!("{name}-json"))
                .uid(&format!(
                    "{}-json",
                    sink.spec.node.uid.as_deref().unwrap_or(name)
                ));
            if path.contains("://") {
                // An object store (s3://bucket/prefix, file:///dir): rolling part
                // files, each committed with a checkpoint.
                let config = FileSinkConfig {
                    failpoint: file_failpoint,
                    ..FileSinkConfig::new(path)
                };
                let (factory, _) = ObjectFileSink::<JsonRow>::factory(config);
                json.sink(name, factory)
            } else {
                json.sink(
                    name,
                    EpochFileSink::<JsonRow>::factory_with_failpoint(path.clone(), file_failpoint),
                )
            }
        }
        SinkKind::Kafka {
            bootstrap,
            topic,
            guarantee,
            ..
        } => {
            let mut config = KafkaSinkConfig::new(bootstrap, topic);
            config.failpoint = crash;
            config.guarantee = match guarantee {
                KafkaGuarantee::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
                KafkaGuarantee::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
                KafkaGuarantee::None => DeliveryGuarantee::None,
            };
            let serializer = match sink.key {
                Some(k) => {
                    let field = sink.schema.fields[k].name.clone();
                    json_keyed(move |json: &JsonRow| {
                        let key = match json.0.get(&field) {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        key.into_bytes()
                    })
                }
                None => json(),
            };
            input
                .map(to_json)
                .name(&format!("{name}-json"))
                .uid(&format!(
                    "{}-json",
                    sink.spec.node.uid.as_deref().unwrap_or(name)
                ))
                .sink(name, KafkaSink::factory(config, serializer))
        }
    };
    let handle = handle.uid(sink.spec.node.uid.as_deref().unwrap_or(name));
    if let Some(p) = sink.spec.node.parallelism {
        handle.parallelism(p);
    }
}

#[cfg(test)]
mod tests {
    use super::JsonRow;

    #[test]
    fn json_rows_round_trip_through_json_and_the_checkpoint_codec() {
        let row = JsonRow(serde_json::json!({"n": 1, "name": "a", "mean": 2.5, "t": null}));
        assert_eq!(serde_json::to_string(&row).unwrap(), row.0.to_string());
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&row, config).unwrap();
        let (back, _): (JsonRow, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, row);
    }
}

//! Runs declarative job files: turns a validated [`JobPlan`] (see `weir_jobfile`)
//! into a checkpointed weir job — `weir run job.yaml`.
//!
//! ```text
//!  JobPlan ─▶ build(): per stream, in dependency order; records are Batches
//!    source  ─▶ Batched(record source) ─▶ Stream<Batch>, only the fields read  (sources.rs)
//!    filter / map / udf ─▶ BatchOperator: expressions per column              (batches.rs)
//!    key_by ─window─▶ Project ─▶ KeyedStream<K, Numbers<K> │ Projected<K>> ─▶ window ─▶ ToBatches
//!                              (K: IntKey for one int key field, else Key)
//!    key_by ─join───▶ ToRows  ─▶ KeyedStream<Key, Row> ─▶ join ─▶ ToBatches
//!    union  ─▶ Stream::union
//!    sinks  ─▶ blackhole │ rows as JSON objects ─▶ stdout │ file │ Kafka
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

mod batches;
mod sources;

use batches::{
    movable_fields, BatchApply, BatchOperator, LocalTop, NumRow, NumericAggregates, Project,
    ProjectedAggregates, ResultRecord, ResultRow, ToBatches, ToJson, ToRows, TopOf, TOP_FIELDS,
};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::Arc;
use weir_checkpoint::{CoordinatorConfig, StorageConfig};
use weir_dataflow::broadcast::{BroadcastContext, BroadcastProcessFunction, BroadcastState};
use weir_dataflow::checkpointing::{
    CheckpointedJob, CheckpointingConfig, Failpoint, JobListener, NoListener, RestartStrategy,
    ResumeFrom, RunSummary,
};
use weir_dataflow::window::{Window, WindowAssigner, WindowedStream};
use weir_dataflow::{
    DataflowError, JobBuilder, JobConfig, KeySelector, KeyedStream, Stream, SubtaskInfo, Timestamp,
};
use weir_jobfile::{
    Aggregate, Batch, BoundFunction, Expr, FieldType, IntKey, JobPlan, JoinKind, JoinPlan,
    JsonWriter, KafkaGuarantee, Key, KeyedRecord, Numbers, PlannedSink, PlannedStream, Projected,
    RestartSpec, Row, RowKey, SinkKind, Step, Value, WindowPlan, WindowShape, NUMBERS,
};
use weir_sinks::kafka::{json, json_keyed, records};
use weir_sinks::{
    BlackholeSink, CommitFailpoint, CommitStep, DeliveryGuarantee, EpochFileSink, FileSinkConfig,
    KafkaSink, KafkaSinkConfig, ObjectFileSink,
};

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
        local_dir: options.state_dir.clone(),
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
        standbys: spec.checkpoints.standbys,
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

/// Lets every record type a job file's streams exchange cross workers (cluster mode):
/// batches, keyed rows for windows, joins and tops.
fn register_codecs(job: &JobBuilder) {
    job.wire_codec::<Batch>();
    job.wire_codec::<Row>();
    job.wire_codec::<Numbers<Key>>();
    job.register_codec::<Numbers<IntKey>>(Arc::new(IntNumbersCodec));
    job.wire_codec::<Projected<Key>>();
    job.wire_codec::<Projected<IntKey>>();
    job.wire_codec::<Projected<Key, TOP_FIELDS>>();
    job.wire_codec::<Projected<IntKey, TOP_FIELDS>>();
}

/// The wire codec of the records most windows read (an int key and numbers): four
/// little-endian 64-bit words per record, copied without a serde pass. bincode's
/// general form decodes the key as a row of one value, a third of a worker's time
/// in qw across workers (BENCHMARKS.md, "Cluster mode").
struct IntNumbersCodec;

/// Bytes of one record in [`IntNumbersCodec`]'s form.
const INT_NUMBERS_BYTES: usize = 8 * (2 + NUMBERS);

impl weir_dataflow::wire::WireCodec<Numbers<IntKey>> for IntNumbersCodec {
    fn encode(&self, records: &[Numbers<IntKey>], out: &mut Vec<u8>) -> weir_dataflow::Result<()> {
        out.reserve(records.len() * INT_NUMBERS_BYTES);
        for record in records {
            out.extend_from_slice(&record.key.0.to_le_bytes());
            out.extend_from_slice(&record.time.to_le_bytes());
            for bits in record.bits {
                out.extend_from_slice(&bits.to_le_bytes());
            }
        }
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> weir_dataflow::Result<Vec<Numbers<IntKey>>> {
        if bytes.len() % INT_NUMBERS_BYTES != 0 {
            return Err(DataflowError::invalid(
                "wire codec",
                format!(
                    "{} bytes are not whole records of {INT_NUMBERS_BYTES} bytes",
                    bytes.len()
                ),
            ));
        }
        let word = |chunk: &[u8], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&chunk[8 * i..8 * i + 8]);
            i64::from_le_bytes(w)
        };
        Ok(bytes
            .chunks_exact(INT_NUMBERS_BYTES)
            .map(|chunk| Numbers {
                key: IntKey(word(chunk, 0)),
                time: word(chunk, 1),
                bits: std::array::from_fn(|i| word(chunk, 2 + i)),
            })
            .collect())
    }
}

/// A stream of the job as built so far: batches, or a `key_by`'s batches with its
/// key fields (read by the window or join that follows).
enum Built<'a> {
    Batches(Stream<Batch>),
    Keyed {
        batches: Stream<Batch>,
        keys: Arc<[usize]>,
        /// The key_by stream (its schema and event time are its input's).
        planned: &'a PlannedStream,
        /// The key_by's input (its parallelism is the parallelism of the rows keyed).
        input: &'a PlannedStream,
    },
}

impl Built<'_> {
    fn batches(&self) -> &Stream<Batch> {
        match self {
            Self::Batches(s) | Self::Keyed { batches: s, .. } => s,
        }
    }

    /// Whether this is a key_by on one `int` field (whose keys are [`IntKey`]s).
    fn int_key(&self) -> bool {
        match self {
            Self::Keyed { keys, planned, .. } => match keys.as_ref() {
                [key] => planned
                    .schema
                    .fields
                    .get(*key)
                    .is_some_and(|f| f.ty == FieldType::Int),
                _ => false,
            },
            Self::Batches(_) => false,
        }
    }
}

/// Streams of batches send each batch to the next task at once.
trait BatchStream {
    fn batches(self) -> Self;
}

impl BatchStream for Stream<Batch> {
    fn batches(self) -> Self {
        self.records_per_message(1)
    }
}

/// Adds `plan`'s sources, operators and sinks to `job`.
pub fn build(plan: &JobPlan, job: &JobBuilder) {
    build_with(plan, job, None);
}

/// [`build`], with the sinks crashing the process at `sink_commit` (crash tests).
fn build_with(plan: &JobPlan, job: &JobBuilder, sink_commit: Option<(CommitStep, u64)>) {
    job.count_rows::<Batch>(Batch::len);
    register_codecs(job);
    let needed = needed_fields(plan);
    let planned: HashMap<&str, &PlannedStream> = plan
        .streams
        .iter()
        .map(|s| (s.node.name.value.as_str(), s))
        .collect();
    let mut built: HashMap<&str, Built> = HashMap::new();
    for stream in &plan.streams {
        let name = stream.node.name.value.as_str();
        let uid = stream.node.uid.as_deref().unwrap_or(name);
        let input = stream.inputs.first().and_then(|i| built.get(i.as_str()));
        let batch_step = |apply: BatchApply| {
            let input = input?.batches();
            Some(Built::Batches(settings(
                input.transform(name, move |info: &SubtaskInfo| BatchOperator {
                    operator: info.operator.clone(),
                    subtask: info.index,
                    apply: apply.clone(),
                }),
                stream,
            )))
        };
        let output_schema = Arc::new(stream.schema.clone());
        let next = match &stream.step {
            Step::Source(..) => {
                let fields = &needed[name];
                sources::source(job, stream, fields).map(Built::Batches)
            }
            Step::Filter(expr) => batch_step(BatchApply::Filter(expr.clone())),
            Step::Map(exprs) => {
                batch_step(BatchApply::Map(exprs.clone().into(), movable_fields(exprs)))
            }
            Step::Udf(BoundFunction::Rows(f)) => {
                batch_step(BatchApply::Udf(f.clone(), output_schema))
            }
            Step::Udf(BoundFunction::Batches(f)) => {
                batch_step(BatchApply::BatchUdf(f.clone(), output_schema))
            }
            Step::KeyBy(keys) => match (input, planned.get(stream.inputs[0].as_str())) {
                (Some(input), Some(keyed)) => Some(Built::Keyed {
                    batches: input.batches().clone(),
                    keys: keys.clone().into(),
                    planned: stream,
                    input: keyed,
                }),
                _ => None,
            },
            Step::Union => input.map(|input| {
                let others: Vec<Stream<Batch>> = stream.inputs[1..]
                    .iter()
                    .filter_map(|i| built.get(i.as_str()).map(|b| b.batches().clone()))
                    .collect();
                Built::Batches(settings(input.batches().union(&others), stream))
            }),
            Step::Window(window) if window.top.is_some() => {
                let Some(keyed) = input else {
                    continue;
                };
                let results = if keyed.int_key() {
                    top_window::<IntKey>(keyed, stream, window)
                } else {
                    top_window::<Key>(keyed, stream, window)
                };
                results.map(Built::Batches)
            }
            Step::Top { top, window_end } => {
                let Some(Built::Batches(batches)) = input else {
                    continue;
                };
                // Keyed by the input's window (and the partition) and windowed by
                // it: a window of 1 ms just before `window_end` fires as soon as the
                // input's window has.
                let local_top = top
                    .largest()
                    .filter(|&by| integer(stream, by))
                    .map(|by| LocalTop { by, size: 1 });
                // The input's fields: the output's, but for an appended rank.
                let input_fields = stream.schema.fields.len() - usize::from(top.rank_field);
                let all: Arc<[usize]> = (0..input_fields).collect();
                let keys: Arc<[usize]> = std::iter::once(*window_end)
                    .chain(top.partition.iter().copied())
                    .collect();
                let end = *window_end;
                let projected = batches
                    .transform(&format!("{name}-project"), move |_: &SubtaskInfo| {
                        Project::<Key, Projected<Key, TOP_FIELDS>>::new(
                            keys.clone(),
                            Some(end),
                            Arc::clone(&all),
                            local_top,
                        )
                    })
                    .uid(&format!("{uid}-project"));
                let projected = with_parallelism(projected, stream)
                    .with_timestamps(|p: &Projected<Key, TOP_FIELDS>| Timestamp(p.time - 1));
                let results = projected
                    .key_by(|p: &Projected<Key, TOP_FIELDS>| p.key.clone())
                    .window(WindowAssigner::tumbling(std::time::Duration::from_millis(
                        1,
                    )))
                    .name(name)
                    .uid(uid)
                    .aggregate(
                        TopOf(Arc::new(top.clone())),
                        |_: &Key, _: Window, rows: Vec<ResultRow>| rows,
                    );
                Some(Built::Batches(to_batches(
                    top_rows(results, stream),
                    stream,
                )))
            }
            Step::Window(window) => {
                let Some(keyed) = input else {
                    continue;
                };
                let results = if keyed.int_key() {
                    aggregate_window::<IntKey>(keyed, stream, window)
                } else {
                    aggregate_window::<Key>(keyed, stream, window)
                };
                results.map(Built::Batches)
            }
            Step::Join(join_plan) => {
                let side = |b: Option<&Built<'_>>, which: &str| {
                    let Some(Built::Keyed {
                        batches,
                        keys,
                        planned,
                        input,
                    }) = b
                    else {
                        return None;
                    };
                    let rows = batches
                        .transform(&format!("{name}-{which}-rows"), |_: &SubtaskInfo| ToRows)
                        .uid(&format!("{uid}-{which}-rows"));
                    let mut rows = with_parallelism(rows, input);
                    if let Some(t) = planned.schema.event_time {
                        rows = rows.with_timestamps(move |row: &Row| Timestamp(row.0[t].as_i64()));
                    }
                    let keys = keys.clone();
                    Some(rows.key_by(move |row: &Row| Key::of(row, &keys)))
                };
                let (Some(left), Some(right)) = (
                    side(built.get(stream.inputs[0].as_str()), "left"),
                    side(built.get(stream.inputs[1].as_str()), "right"),
                ) else {
                    continue;
                };
                let results = join(&left, &right, join_plan).name(name).uid(uid);
                Some(Built::Batches(to_batches(results, stream)))
            }
        };
        if let Some(next) = next {
            built.insert(name, next);
        }
    }
    for sink in &plan.sinks {
        if let Some(Built::Batches(input)) = built.get(sink.spec.input.value.as_str()) {
            add_sink(input, sink, sink_commit);
        }
    }
}

/// An aggregating window's results as batches: each row of a `key_by` projected
/// to its key (as `K`), event time and the fields the aggregates read, keyed, cut
/// into windows and aggregated (`None` if `keyed` is not a key_by's rows).
fn aggregate_window<K: RowKey>(
    keyed: &Built<'_>,
    stream: &PlannedStream,
    window: &WindowPlan,
) -> Option<Stream<Batch>> {
    let mut fields: Vec<usize> = window.aggregates.iter().filter_map(|a| a.field).collect();
    fields.sort_unstable();
    fields.dedup();
    let aggregates: Arc<[Aggregate]> = window
        .aggregates
        .iter()
        .map(|a| Aggregate {
            field: a.field.and_then(|f| fields.iter().position(|&g| g == f)),
            ..a.clone()
        })
        .collect();
    let result = |key: &K, w: Window, values: SmallVec<[Value; 4]>| {
        let mut fields = ResultRow::new();
        key.extend_into(&mut fields);
        fields.push(Value::Timestamp(w.start));
        fields.push(Value::Timestamp(w.end));
        fields.extend(values);
        fields
    };
    // What crosses threads and what window tables hold are the working set: the
    // smallest records and accumulators that hold the aggregates.
    let numeric = aggregates.iter().all(Aggregate::is_numeric)
        && aggregates.len() <= 4
        && fields.len() <= NUMBERS;
    let fields: Arc<[usize]> = fields.into();
    if numeric {
        let windowed = windowed::<K, Numbers<K>>(keyed, stream, window, fields, None)?;
        return Some(match aggregates.len() {
            1 => to_batches(
                windowed.aggregate(NumericAggregates::<1>(aggregates), NumRow::of),
                stream,
            ),
            2 => to_batches(
                windowed.aggregate(NumericAggregates::<2>(aggregates), NumRow::of),
                stream,
            ),
            3 => to_batches(
                windowed.aggregate(NumericAggregates::<3>(aggregates), NumRow::of),
                stream,
            ),
            _ => to_batches(
                windowed.aggregate(NumericAggregates::<4>(aggregates), NumRow::of),
                stream,
            ),
        });
    }
    let windowed = windowed::<K, Projected<K>>(keyed, stream, window, fields, None)?;
    let results = match aggregates.len() {
        1 => windowed.aggregate(ProjectedAggregates::<1>(aggregates), result),
        _ => windowed.aggregate(ProjectedAggregates::<2>(aggregates), result),
    };
    Some(to_batches(results, stream))
}

/// A window's `top` rows as batches: per key (as `K`) and window, the whole rows
/// with the largest `top` field, after the window's bounds (`None` if `keyed` is not
/// a key_by's rows).
fn top_window<K: RowKey>(
    keyed: &Built<'_>,
    stream: &PlannedStream,
    window: &WindowPlan,
) -> Option<Stream<Batch>> {
    let Built::Keyed { planned, .. } = keyed else {
        return None;
    };
    // Whole rows: the rows at the top are the output.
    let all = (0..planned.schema.fields.len()).collect();
    let top = Arc::new(window.top.clone()?);
    let largest = top.largest().filter(|&by| integer(planned, by));
    let local_top = match (window.shape, largest) {
        (WindowShape::Tumbling { size }, Some(by)) if window.allowed_lateness.is_zero() => {
            Some(LocalTop {
                by,
                size: i64::try_from(size.as_millis()).unwrap_or(i64::MAX),
            })
        }
        _ => None,
    };
    let windowed = windowed::<K, Projected<K, TOP_FIELDS>>(keyed, stream, window, all, local_top)?;
    let results = windowed.aggregate(TopOf(top), |_: &K, w: Window, rows: Vec<ResultRow>| {
        rows.into_iter()
            .map(|row| {
                let mut fields = ResultRow::new();
                fields.push(Value::Timestamp(w.start));
                fields.push(Value::Timestamp(w.end));
                fields.extend(row);
                fields
            })
            .collect::<Vec<ResultRow>>()
    });
    Some(to_batches(top_rows(results, stream), stream))
}

/// Whether field `field` of `stream`'s rows is an int or a timestamp.
fn integer(stream: &PlannedStream, field: usize) -> bool {
    stream
        .schema
        .fields
        .get(field)
        .is_some_and(|f| matches!(f.ty, FieldType::Int | FieldType::Timestamp))
}

/// The rows of a `key_by` as projected records (key as `K`, event time and
/// `fields`), keyed and cut into the windows of `window`, named as `stream` (`None`
/// if `keyed` is not a key_by's rows).
fn windowed<K: RowKey, R: KeyedRecord<K>>(
    keyed: &Built<'_>,
    stream: &PlannedStream,
    window: &WindowPlan,
    fields: Arc<[usize]>,
    local_top: Option<LocalTop>,
) -> Option<WindowedStream<K, R>> {
    let Built::Keyed {
        batches,
        keys,
        planned,
        input,
    } = keyed
    else {
        return None;
    };
    let name = stream.node.name.value.as_str();
    let uid = stream.node.uid.as_deref().unwrap_or(name);
    let (keys, time) = (keys.clone(), planned.schema.event_time);
    let projected = batches
        .transform(&format!("{name}-project"), move |_: &SubtaskInfo| {
            Project::<K, R>::new(keys.clone(), time, Arc::clone(&fields), local_top)
        })
        .uid(&format!("{uid}-project"));
    let projected = with_parallelism(projected, input).with_timestamps(|p: &R| Timestamp(p.time()));
    let windowed = projected
        .key_by(|p: &R| p.key().clone())
        .window(assigner(window.shape))
        .allowed_lateness(window.allowed_lateness)
        .retention(window.retention)
        .name(name)
        .uid(uid);
    Some(match window.pre_aggregate {
        true => windowed.pre_aggregate(),
        false => windowed,
    })
}

/// Which fields of each stream something downstream reads: what sources fill. Every
/// sink reads all its fields (a blackhole too, so benchmarks do a real sink's
/// work), and so do joins (their state keeps whole rows) and user functions;
/// filters and maps read what their expressions read (every expression of a map is
/// evaluated, so its errors stay errors), windows their keys, event time and
/// aggregates' fields.
fn needed_fields(plan: &JobPlan) -> HashMap<&str, Vec<bool>> {
    let mut needed: HashMap<&str, Vec<bool>> = plan
        .streams
        .iter()
        .map(|s| {
            (
                s.node.name.value.as_str(),
                vec![false; s.schema.fields.len()],
            )
        })
        .collect();
    let mark = |needed: &mut HashMap<&str, Vec<bool>>,
                stream: &str,
                fields: &mut dyn Iterator<Item = usize>| {
        if let Some(marks) = needed.get_mut(stream) {
            for f in fields {
                if let Some(m) = marks.get_mut(f) {
                    *m = true;
                }
            }
        }
    };
    for sink in &plan.sinks {
        let input = sink.spec.input.value.as_str();
        let all = needed.get(input).map_or(0, Vec::len);
        mark(&mut needed, input, &mut (0..all));
    }
    for stream in plan.streams.iter().rev() {
        let name = stream.node.name.value.as_str();
        let own = needed.get(name).cloned().unwrap_or_default();
        let own_fields = || {
            own.iter()
                .enumerate()
                .filter(|(_, &n)| n)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let all =
            |input: &str, needed: &HashMap<&str, Vec<bool>>| needed.get(input).map_or(0, Vec::len);
        match &stream.step {
            // Event time is read where it is used: by a source's watermarks (here)
            // and by the windows and joins downstream (their arms).
            Step::Source(_, computed) => {
                mark(&mut needed, name, &mut stream.schema.event_time.into_iter());
                // A computed field read needs what it is computed from (fields read
                // or computed before it: marked here, in reverse order).
                let read = stream.schema.fields.len() - computed.len();
                for (i, expr) in computed.iter().enumerate().rev() {
                    if needed.get(name).is_some_and(|n| n[read + i]) {
                        mark(&mut needed, name, &mut expr.fields().into_iter());
                    }
                }
            }
            Step::Filter(expr) => {
                let input = stream.inputs[0].as_str();
                let mut fields = own_fields();
                fields.extend(expr.fields());
                mark(&mut needed, input, &mut fields.into_iter());
            }
            Step::Map(exprs) => {
                let input = stream.inputs[0].as_str();
                let fields = exprs.iter().flat_map(Expr::fields);
                mark(&mut needed, input, &mut fields.into_iter());
            }
            Step::KeyBy(keys) => {
                let input = stream.inputs[0].as_str();
                let mut fields = own_fields();
                fields.extend(keys.iter().copied());
                mark(&mut needed, input, &mut fields.into_iter());
            }
            Step::Window(window) if window.top.is_some() => {
                let input = stream.inputs[0].as_str();
                let n = all(input, &needed);
                mark(&mut needed, input, &mut (0..n));
            }
            Step::Window(window) => {
                let input = stream.inputs[0].as_str();
                let mut fields: Vec<usize> =
                    window.aggregates.iter().filter_map(|a| a.field).collect();
                fields.extend(planned_time(plan, input));
                mark(&mut needed, input, &mut fields.into_iter());
            }
            Step::Union => {
                for input in &stream.inputs {
                    mark(&mut needed, input.as_str(), &mut own_fields().into_iter());
                }
            }
            Step::Udf(_) | Step::Join(_) | Step::Top { .. } => {
                for input in &stream.inputs {
                    let n = all(input, &needed);
                    mark(&mut needed, input.as_str(), &mut (0..n));
                }
            }
        }
    }
    needed
}

/// The event-time field of stream `name`, if it has one.
fn planned_time(plan: &JobPlan, name: &str) -> Option<usize> {
    plan.streams
        .iter()
        .find(|s| s.node.name.value == name)
        .and_then(|s| s.schema.event_time)
}

/// `stream` at the parallelism `planned` sets, if it sets one. (The rows of a keyed
/// stream, projected for a window or a join, run at the parallelism of what was
/// keyed, so they chain to it.)
fn with_parallelism<T: weir_dataflow::Data>(
    stream: Stream<T>,
    planned: &PlannedStream,
) -> Stream<T> {
    match planned.node.parallelism {
        Some(p) => stream.parallelism(p),
        None => stream,
    }
}

/// The rows of `top` results, one record each.
fn top_rows(results: Stream<Vec<ResultRow>>, planned: &PlannedStream) -> Stream<ResultRow> {
    let name = &planned.node.name.value;
    let uid = planned.node.uid.as_deref().unwrap_or(name);
    let rows = results
        .flat_map(|rows: Vec<ResultRow>| rows)
        .name(&format!("{name}-rows"))
        .uid(&format!("{uid}-rows"));
    with_parallelism(rows, planned)
}

/// Window or join results (rows) as batches, with the stream's settings.
fn to_batches<R: ResultRecord>(results: Stream<R>, planned: &PlannedStream) -> Stream<Batch> {
    let name = &planned.node.name.value;
    let uid = planned.node.uid.as_deref().unwrap_or(name);
    let results = with_parallelism(results, planned);
    let schema = Arc::new(planned.schema.clone());
    let batches = results
        .transform(&format!("{name}-batches"), move |info: &SubtaskInfo| {
            ToBatches {
                operator: info.operator.clone(),
                subtask: info.index,
                schema: schema.clone(),
                _rows: std::marker::PhantomData,
            }
        })
        .name(&format!("{name}-batches"))
        .uid(&format!("{uid}-batches"));
    with_parallelism(batches, planned).batches()
}

fn assigner(shape: WindowShape) -> WindowAssigner {
    match shape {
        WindowShape::Tumbling { size } => WindowAssigner::tumbling(size),
        WindowShape::Hopping { size, slide } => WindowAssigner::sliding(size, slide),
        WindowShape::Cumulate { size, step } => WindowAssigner::cumulate(size, step),
        WindowShape::Session { gap } => WindowAssigner::session(gap),
        WindowShape::Sliding {
            time_difference,
            grace,
        } => WindowAssigner::time_difference(time_difference, grace),
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
        JoinKind::Temporal { retention, deleted } => left.temporal_join(
            right,
            move |row: Row| match deleted {
                Some(field) if matches!(row.0[field], Value::Bool(true)) => None,
                _ => Some(row),
            },
            std::time::Duration::from_millis(u64::try_from(retention).unwrap_or(0)),
            move |key: &Key, l: Row, r: Option<&Row>| {
                let mut values = key.values().to_vec();
                rest(&mut values, &l, r?);
                Some(Row(values))
            },
        ),
        JoinKind::Broadcast => {
            let lookup = TableLookup {
                left_key: left.key_selector(),
                table_key: right.key_selector(),
                fields: Arc::new((plan.left_fields.clone(), plan.right_fields.clone())),
            };
            left.stream()
                .connect_broadcast(right.stream())
                .process("broadcast-join", move |_| Ok(lookup.clone()))
        }
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

/// A broadcast join's function: the table's rows in broadcast state by key (their
/// key fields' values, encoded: ordered and checkpointed as bytes), the latest
/// row of a key replacing the one before; a left row joins the row of its key
/// into the left's key fields, its other fields, then the table row's other
/// fields.
#[derive(Clone)]
struct TableLookup {
    left_key: KeySelector<Row, Key>,
    table_key: KeySelector<Row, Key>,
    /// The left's fields after its keys, and the table's.
    fields: Arc<(Vec<usize>, Vec<usize>)>,
}

/// The name of a broadcast join's keys in errors.
const TABLE_KEY: &str = "broadcast-join-key";

impl BroadcastProcessFunction<Row, Row> for TableLookup {
    type Out = Row;
    type Key = Vec<u8>;
    type Value = Row;

    fn process(
        &mut self,
        row: Row,
        table: &BroadcastState<Vec<u8>, Row>,
        cx: &mut BroadcastContext<'_, Row>,
    ) -> weir_dataflow::Result<()> {
        let key = (self.left_key)(&row);
        if let Some(found) = table.get(&weir_state::encode(TABLE_KEY, &key)?) {
            let mut values = key.values().to_vec();
            values.extend(self.fields.0.iter().map(|&i| row.0[i].clone()));
            values.extend(self.fields.1.iter().map(|&i| found.0[i].clone()));
            cx.emit(Row(values));
        }
        Ok(())
    }

    fn process_broadcast(
        &mut self,
        row: Row,
        table: &mut BroadcastState<Vec<u8>, Row>,
        _: &mut BroadcastContext<'_, Row>,
    ) -> weir_dataflow::Result<()> {
        let key = (self.table_key)(&row);
        table.insert(weir_state::encode(TABLE_KEY, &key)?, row);
        Ok(())
    }
}

/// Applies the stream's name, uid and parallelism to the batches of an operator.
fn settings(stream: Stream<Batch>, planned: &PlannedStream) -> Stream<Batch> {
    let name = &planned.node.name.value;
    let stream = stream
        .name(name)
        .uid(planned.node.uid.as_deref().unwrap_or(name));
    with_parallelism(stream, planned).batches()
}

/// Applies a source's uid and parallelism.
fn node<T: weir_dataflow::Data>(stream: Stream<T>, planned: &PlannedStream) -> Stream<T> {
    let stream = match &planned.node.uid {
        Some(uid) => stream.uid(uid),
        None => stream.uid(&planned.node.name.value),
    };
    with_parallelism(stream, planned)
}

/// A row as the text of a JSON object. Sinks write that text as it is; checkpoints
/// (a binary format) keep it as a string, so that a sink's pending epochs restore
/// (the same bytes as when rows were JSON trees).
#[derive(Clone, Debug)]
pub struct JsonRow(Box<serde_json::value::RawValue>);

impl JsonRow {
    /// The row whose JSON text is `text`.
    ///
    /// # Errors
    /// `text` is not JSON.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(JsonRow)
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The text of field `name`'s value as a record key: a string's own text, any
    /// other value's JSON text, nothing if absent.
    pub fn key(&self, name: &str) -> Vec<u8> {
        use serde::de::DeserializeSeed;
        // One pass over the text: no map of the fields, no string per key.
        let mut json = serde_json::Deserializer::from_str(self.text());
        match FieldNamed(name).deserialize(&mut json).ok().flatten() {
            None => Vec::new(),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(text) => text.into_bytes(),
                Err(_) => raw.get().as_bytes().to_vec(),
            },
        }
    }
}

/// Reads a JSON object for the raw value of its field `.0` (the last one of that
/// name, as a map of the fields would hold), skipping the others.
struct FieldNamed<'n>(&'n str);

impl<'de> serde::de::DeserializeSeed<'de> for FieldNamed<'_> {
    type Value = Option<&'de serde_json::value::RawValue>;
    fn deserialize<D: serde::Deserializer<'de>>(self, json: D) -> Result<Self::Value, D::Error> {
        json.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldNamed<'_> {
    type Value = Option<&'de serde_json::value::RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(wanted) = map.next_key_seed(IsKey(self.0))? {
            if wanted {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Reads an object key: whether it is `.0` (escapes resolved).
struct IsKey<'n>(&'n str);

impl<'de> serde::de::DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, json: D) -> Result<bool, D::Error> {
        json.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for IsKey<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

impl PartialEq for JsonRow {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl serde::Serialize for JsonRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serde::Serialize::serialize(&self.0, serializer)
        } else {
            serializer.serialize_str(self.text())
        }
    }
}

impl<'de> serde::Deserialize<'de> for JsonRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            <Box<serde_json::value::RawValue> as serde::Deserialize>::deserialize(deserializer)
                .map(JsonRow)
        } else {
            let text = <String as serde::Deserialize>::deserialize(deserializer)?;
            JsonRow::from_text(text).map_err(D::Error::custom)
        }
    }
}

/// Writes `input` to the sink as JSON objects.
fn add_sink(input: &Stream<Batch>, sink: &PlannedSink, crash: Option<(CommitStep, u64)>) {
    let file_failpoint = crash.map(|(step, nth)| CommitFailpoint::new(step, nth));
    let name = sink.spec.node.name.value.as_str();
    let schema = Arc::new(sink.schema.clone());
    let json_uid = format!("{}-json", sink.spec.node.uid.as_deref().unwrap_or(name));
    let json_rows = || {
        let writer = JsonWriter::new(&schema);
        input
            .transform(&format!("{name}-json"), move |info: &SubtaskInfo| ToJson {
                operator: info.operator.clone(),
                subtask: info.index,
                writer: writer.clone(),
            })
            .name(&format!("{name}-json"))
            .uid(&json_uid)
    };
    let handle = match &sink.spec.kind {
        SinkKind::Blackhole => input.sink(name, BlackholeSink::<Batch>::new().0),
        SinkKind::Stdout => {
            json_rows().sink(name, weir_sinks::StdoutJsonSink::<JsonRow>::factory())
        }
        SinkKind::File { path } => {
            let json = json_rows();
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
            if let (Some(key), Some(deleted)) = (sink.key, sink.deleted) {
                // A table's changelog: upserts and tombstones by key.
                let writer = JsonWriter::of_fields(&schema, |i| i != deleted);
                let time = schema.event_time;
                input
                    .transform(&format!("{name}-upserts"), move |_: &SubtaskInfo| {
                        batches::ToUpsert {
                            key,
                            deleted,
                            time,
                            writer: writer.clone(),
                        }
                    })
                    .name(&format!("{name}-upserts"))
                    .uid(&format!(
                        "{}-upserts",
                        sink.spec.node.uid.as_deref().unwrap_or(name)
                    ))
                    .sink(name, KafkaSink::factory(config, records()))
            } else {
                let serializer = match sink.key {
                    Some(k) => {
                        let field = sink.schema.fields[k].name.clone();
                        json_keyed(move |json: &JsonRow| json.key(&field))
                    }
                    None => json(),
                };
                json_rows().sink(name, KafkaSink::factory(config, serializer))
            }
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
    fn int_numbers_cross_workers_as_they_were_and_bad_bytes_are_refused() {
        use super::{IntKey, IntNumbersCodec, Numbers};
        use weir_dataflow::wire::WireCodec;
        let records = vec![
            Numbers {
                key: IntKey(-1),
                time: 0,
                bits: [i64::MIN, i64::MAX],
            },
            Numbers {
                key: IntKey(1 << 40),
                time: 1_700_000_000_000,
                bits: [3, f64::to_bits(2.5) as i64],
            },
        ];
        let mut bytes = vec![9];
        IntNumbersCodec.encode(&records, &mut bytes).unwrap();
        assert_eq!(IntNumbersCodec.decode(&bytes[1..]).unwrap(), records);
        let error = IntNumbersCodec.decode(&bytes[..20]).unwrap_err();
        assert!(error.to_string().contains("not whole records"), "{error}");
    }

    #[test]
    fn json_rows_round_trip_through_json_and_the_checkpoint_codec() {
        let tree = serde_json::json!({"n": 1, "name": "a\"b", "mean": 2.5, "t": null});
        let row = JsonRow::from_text(tree.to_string()).unwrap();
        assert_eq!(serde_json::to_string(&row).unwrap(), tree.to_string());
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&row, config).unwrap();
        // The bytes of the rows as JSON trees (before rows were written as text).
        assert_eq!(
            bytes,
            bincode::serde::encode_to_vec(tree.to_string(), config).unwrap()
        );
        let (back, _): (JsonRow, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, row);
        assert_eq!(row.key("name"), b"a\"b");
        assert_eq!(row.key("mean"), b"2.5");
        assert_eq!(row.key("t"), b"null");
        assert!(row.key("nope").is_empty());
        // Keys with escapes, a repeated field (the last counts), not an object.
        let row =
            JsonRow::from_text(r#"{"a\"b": [1, {"c": 2}], "n": 1, "n": "x"}"#.into()).unwrap();
        assert_eq!(row.key("a\"b"), br#"[1, {"c": 2}]"#);
        assert_eq!(row.key("n"), b"x");
        assert!(JsonRow::from_text("[1]".into())
            .unwrap()
            .key("n")
            .is_empty());
    }
}

#[cfg(test)]
mod udf_tests {
    use super::{run, RunOptions};
    use std::sync::Arc;
    use weir_jobfile::{Batch, Column, FieldType, Registry, Row, Value};

    /// User functions in both forms run on the batch path: a per-row function that
    /// emits any number of rows, and a per-batch one over columns; what they return
    /// that does not fit their declared fields fails the job naming the operator.
    #[test]
    fn row_and_batch_functions_transform_the_rows() {
        let mut registry = Registry::default();
        registry.register("evens_twice", [("value", FieldType::Int)], |schema| {
            let value = schema.index_of("value").ok_or("needs `value`")?;
            Ok(Arc::new(move |row: &Row| {
                let v = row.0[value].as_i64();
                if v % 2 == 0 {
                    vec![row.clone(), row.clone()]
                } else {
                    Vec::new()
                }
            }))
        });
        registry.register_batch(
            "tenfold",
            [("value", FieldType::Int), ("big", FieldType::Bool)],
            |schema| {
                let value = schema.index_of("value").ok_or("needs `value`")?;
                Ok(Arc::new(move |batch: Batch| {
                    let Column::Int(values) = batch.column(value) else {
                        return Err("`value` is not an int column".to_string());
                    };
                    let tenfold: Vec<i64> = values.iter().map(|v| v * 10).collect();
                    let big = tenfold.iter().map(|&v| v > 500).collect();
                    Batch::new(vec![Column::Int(tenfold), Column::Bool(big)], batch.len())
                }))
            },
        );
        registry.register("wrong", [("value", FieldType::Int)], |_| {
            Ok(Arc::new(|_: &Row| vec![Row(vec![Value::Bool(true)])]))
        });
        let dir = tempfile::tempdir().unwrap();
        let job = |function: &str| {
            format!(
                "
name: udfs-{function}
checkpoints: {{interval: 100ms, storage: {}}}
sources: [{{name: numbers, kind: sequence, from: 1, to: 100}}]
operators:
  - {{name: first, kind: udf, input: numbers, function: {function}}}
  - {{name: second, kind: udf, input: first, function: tenfold}}
sinks: [{{name: out, kind: file, input: second, path: {}}}]
",
                dir.path().join("checkpoints").display(),
                dir.path().join(function).display()
            )
        };
        let plan = weir_jobfile::load("udfs.yaml", &job("evens_twice"), &registry).unwrap();
        run(plan, &RunOptions::default()).unwrap();
        let mut rows: Vec<(i64, bool)> =
            weir_sinks::read_committed::<serde_json::Value>(&dir.path().join("evens_twice"))
                .unwrap()
                .iter()
                .map(|r| (r["value"].as_i64().unwrap(), r["big"].as_bool().unwrap()))
                .collect();
        rows.sort_unstable();
        let expected: Vec<(i64, bool)> = (1..=100)
            .filter(|v| v % 2 == 0)
            .flat_map(|v| [(v * 10, v * 10 > 500); 2])
            .collect();
        assert_eq!(rows, expected);

        let plan = weir_jobfile::load("udfs.yaml", &job("wrong"), &registry).unwrap();
        let error = run(plan, &RunOptions::default()).unwrap_err().to_string();
        assert!(
            error.contains("first") && error.contains("does not fit its declared fields"),
            "{error}"
        );
    }
}

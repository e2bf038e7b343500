//! Job-file sources as streams of [`Batch`]es: each wraps the engine's source of
//! single records ([`Batched`]) and turns every poll's run of records from one split
//! into one batch, filling only the fields that something downstream reads.

use super::{node, BatchStream};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use weir_dataflow::{
    DataflowError, JobBuilder, OperatorContext, SnapshotContext, Source, SourceOutput, SourcePoll,
    Stream, SubtaskInfo, Timestamp, WatermarkStrategy,
};
use weir_jobfile::{
    Batch, Column, Expr, FieldType, FileRowFormat, KafkaFormat, NexmarkEvent, PlannedStream, Row,
    Schema, SourceKind, SourceSpec, Str, UpsertSpec, Value,
};
use weir_nexmark::{
    Auction, Bid, BidGeneratorConfig, BidSource, Event, NexmarkConfig, NexmarkSource, Person,
};
use weir_sources::kafka::{RecordDeserializer, RecordView};
use weir_sources::{
    FileFormat, FileSource, FileSourceConfig, KafkaRecord, KafkaSource, KafkaSourceConfig,
    RecordMap, SequenceSource, StartPosition,
};

/// Turns one run of records of a split into a batch; an error names what did not fit.
type Convert<T> = Arc<dyn Fn(std::vec::Drain<'_, T>) -> Result<Batch, String> + Send + Sync>;

/// A source of batches around a source of single records: each poll of `inner`
/// becomes one batch per split it read from. Positions, splits and snapshots are
/// `inner`'s, so checkpoints and savepoints are those of the record source.
struct Batched<S: Source> {
    inner: S,
    scratch: SourceOutput<S::Out>,
    convert: Convert<S::Out>,
    operator: String,
    subtask: usize,
}

impl<S: Source> Source for Batched<S> {
    type Out = Batch;

    fn open(&mut self, cx: &mut OperatorContext) -> weir_dataflow::Result<()> {
        self.inner.open(cx)
    }

    fn poll(&mut self, out: &mut SourceOutput<Batch>) -> weir_dataflow::Result<SourcePoll> {
        if self.scratch.batch_size() != out.batch_size() {
            self.scratch = SourceOutput::new(out.batch_size());
        }
        let poll = self.inner.poll(&mut self.scratch)?;
        let convert = &self.convert;
        out.push_runs(&mut self.scratch, |records| convert(records))
            .map_err(|e| DataflowError::operator(&self.operator, self.subtask, e))?;
        Ok(poll)
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> weir_dataflow::Result<()> {
        self.inner.snapshot(cx)
    }

    fn on_checkpoint_complete(
        &mut self,
        id: weir_dataflow::CheckpointId,
    ) -> weir_dataflow::Result<()> {
        self.inner.on_checkpoint_complete(id)
    }
}

/// Adds source `planned` to `job` as batches, through the record source `factory`
/// makes and `convert`.
fn batched<S: Source>(
    job: &JobBuilder,
    planned: &PlannedStream,
    spec: &SourceSpec,
    factory: impl Fn(&SubtaskInfo) -> S + Send + Sync + 'static,
    convert: Convert<S::Out>,
    computed: Computed,
) -> Stream<Batch> {
    let convert: Convert<S::Out> = if computed.is_empty() {
        convert
    } else {
        Arc::new(move |records| convert(records).and_then(|batch| computed.append(batch)))
    };
    batch_source(job, planned, spec, move |info: &SubtaskInfo| Batched {
        inner: factory(info),
        scratch: SourceOutput::new(1),
        convert: convert.clone(),
        operator: info.operator.clone(),
        subtask: info.index,
    })
}

/// Adds source `planned` to `job`: the batches of the sources `factory` makes,
/// with event time and watermarks as the job file says.
fn batch_source<S: Source<Out = Batch>>(
    job: &JobBuilder,
    planned: &PlannedStream,
    spec: &SourceSpec,
    factory: impl Fn(&SubtaskInfo) -> S + Send + Sync + 'static,
) -> Stream<Batch> {
    let name = planned.node.name.value.as_str();
    let event_time = planned.schema.event_time;
    let time = |batch: &Batch, i: usize| batch.max_i64(i).unwrap_or(i64::MIN);
    let source = job.source(name, strategy(spec, event_time, time), factory);
    node(source, planned).batches()
}

/// The bid generator writing straight into the columns of a batch (no bid is
/// stored in between); positions and snapshots are the bid source's.
struct BidBatches {
    inner: BidSource,
    needed: Arc<[bool]>,
    computed: Computed,
    operator: String,
    subtask: usize,
}

impl Source for BidBatches {
    type Out = Batch;

    fn open(&mut self, cx: &mut OperatorContext) -> weir_dataflow::Result<()> {
        self.inner.open(cx)
    }

    fn poll(&mut self, out: &mut SourceOutput<Batch>) -> weir_dataflow::Result<SourcePoll> {
        let mut columns = BidColumns::new(&self.needed, out.batch_size());
        let poll = self
            .inner
            .generate(out.batch_size(), |bid| columns.push(bid))?;
        if columns.rows > 0 {
            let batch = columns
                .finish()
                .and_then(|batch| self.computed.append(batch))
                .map_err(|e| DataflowError::operator(&self.operator, self.subtask, e))?;
            out.push(batch);
        }
        Ok(poll)
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> weir_dataflow::Result<()> {
        self.inner.snapshot(cx)
    }
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

/// The source of a source stream as batches (`None` for other streams); `needed`
/// marks the fields read downstream (the others are left out).
pub(super) fn source(
    job: &JobBuilder,
    planned: &PlannedStream,
    needed: &[bool],
) -> Option<Stream<Batch>> {
    let weir_jobfile::Step::Source(spec, computed) = &planned.step else {
        return None;
    };
    let computed = Computed::new(spec, computed, needed);
    let needed: Arc<[bool]> = needed.into();
    // The fields read; the computed ones follow them.
    let schema = Arc::new(weir_jobfile::source_schema(&spec.kind));
    Some(match &spec.kind {
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
            let bids = BidSource::factory(config);
            batch_source(job, planned, spec, move |info: &SubtaskInfo| BidBatches {
                inner: bids(info),
                needed: needed.clone(),
                computed: computed.clone(),
                operator: info.operator.clone(),
                subtask: info.index,
            })
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
            let convert: Convert<Event> = Arc::new(move |events| match event {
                NexmarkEvent::Bid => {
                    let mut columns = BidColumns::new(&needed, events.len());
                    for e in events {
                        if let Event::Bid(bid) = e {
                            columns.push(bid);
                        }
                    }
                    columns.finish()
                }
                NexmarkEvent::Auction => Batch::from_rows(
                    &schema,
                    events.filter_map(|e| match e {
                        Event::Auction(a) => Some(auction_row(a)),
                        _ => None,
                    }),
                ),
                NexmarkEvent::Person => Batch::from_rows(
                    &schema,
                    events.filter_map(|e| match e {
                        Event::Person(p) => Some(person_row(p)),
                        _ => None,
                    }),
                ),
            });
            batched(
                job,
                planned,
                spec,
                NexmarkSource::factory(config),
                convert,
                computed.clone(),
            )
        }
        SourceKind::Sequence {
            from,
            to,
            rows_per_second,
        } => {
            let convert: Convert<i64> = Arc::new(|numbers| {
                let numbers: Vec<i64> = numbers.collect();
                let len = numbers.len();
                Batch::new(vec![Column::Int(numbers)], len)
            });
            match rows_per_second {
                Some(rate) => batched(
                    job,
                    planned,
                    spec,
                    SequenceSource::throttled(*from, *to, *rate),
                    convert,
                    computed.clone(),
                ),
                None => batched(
                    job,
                    planned,
                    spec,
                    SequenceSource::factory(*from, *to),
                    convert,
                    computed.clone(),
                ),
            }
        }
        SourceKind::Kafka {
            bootstrap,
            topic,
            group,
            earliest,
            bounded,
            format,
            upsert,
        } => {
            let mut config = KafkaSourceConfig::new(bootstrap, topic, group);
            config.bounded = *bounded;
            config.start = if *earliest {
                StartPosition::Earliest
            } else {
                StartPosition::Latest
            };
            let fields = schema.clone();
            let deserializer: RecordDeserializer<Row> = match (format, upsert) {
                (KafkaFormat::Text, _) => Arc::new(|record: RecordView<'_>| {
                    std::str::from_utf8(record.payload.unwrap_or_default())
                        .map(|s| Row(vec![Value::String(s.into())]))
                        .map_err(|e| format!("expected UTF-8 text: {e}"))
                }),
                (KafkaFormat::Json(_), None) => Arc::new(move |record: RecordView<'_>| {
                    fields.row_from_json_bytes(record.payload.unwrap_or_default())
                }),
                (KafkaFormat::Json(_), Some(upsert)) => {
                    let time = spec.timestamp.as_ref().map(|t| t.value.as_str());
                    // Validation has checked the fields; if it had not, each record
                    // would fail naming them.
                    upsert_rows(&schema, upsert, time)
                        .unwrap_or_else(|e| Arc::new(move |_: RecordView<'_>| Err(e.clone())))
                }
            };
            let convert: Convert<KafkaRecord<Row>> =
                Arc::new(move |records| Batch::from_rows(&schema, records.map(|r| r.value)));
            batched(
                job,
                planned,
                spec,
                KafkaSource::factory_of_records(config, deserializer),
                convert,
                computed.clone(),
            )
        }
        SourceKind::File {
            path,
            format,
            schema: _,
        } => {
            let config = FileSourceConfig::new(path.clone());
            match *format {
                FileRowFormat::JsonLines => {
                    // Each line's text, checked as JSON, then read into the row
                    // without a JSON tree.
                    let rows = move |json: Box<serde_json::value::RawValue>| {
                        schema.row_from_json_bytes(json.get().as_bytes())
                    };
                    file_batches(job, planned, spec, config, rows, computed)
                }
                FileRowFormat::Csv { header: true } => {
                    let config = config.with_format(FileFormat::Csv { header: true });
                    let rows = move |fields: HashMap<String, String>| {
                        let values = schema.fields.iter().map(|field| {
                            let text = fields.get(&field.name).ok_or_else(|| {
                                format!("expected a column `{}` in the header", field.name)
                            })?;
                            field_value(field, text)
                        });
                        values.collect::<Result<Vec<_>, String>>().map(Row)
                    };
                    file_batches(job, planned, spec, config, rows, computed)
                }
                FileRowFormat::Csv { header: false } => {
                    let config = config.with_format(FileFormat::Csv { header: false });
                    let rows = move |fields: Vec<String>| {
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
                    file_batches(job, planned, spec, config, rows, computed)
                }
            }
        }
    })
}

/// A source's computed fields (`computed:`, Flink's computed columns), appended to
/// each batch read: each is evaluated on the fields read and the computed fields
/// before it, or left out when nothing downstream reads it.
#[derive(Clone)]
pub(super) struct Computed {
    /// Each field's name, expression, and whether something reads it.
    fields: Arc<[(String, Expr, bool)]>,
}

impl Computed {
    /// The computed fields `exprs` of a source whose fields (read, then computed)
    /// downstream reads as `needed` marks.
    fn new(spec: &SourceSpec, exprs: &[Expr], needed: &[bool]) -> Self {
        let read = needed.len().saturating_sub(exprs.len());
        let fields = exprs
            .iter()
            .zip(&spec.computed)
            .enumerate()
            .map(|(i, (e, (name, _)))| {
                let wanted = needed.get(read + i).copied().unwrap_or(true);
                (name.clone(), e.clone(), wanted)
            })
            .collect();
        Self { fields }
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `batch` (the fields read) with the computed fields after its columns.
    fn append(&self, batch: Batch) -> Result<Batch, String> {
        let len = batch.len();
        let mut batch = batch;
        for (name, expr, wanted) in self.fields.iter() {
            let column = if *wanted {
                expr.eval_batch(&batch).map_err(|(row, e)| {
                    format!("computed field `{name}`, row {row} of a batch read: {e}")
                })?
            } else {
                Column::Pruned
            };
            let mut columns = batch.into_columns();
            columns.push(column);
            batch = Batch::new(columns, len)?;
        }
        Ok(batch)
    }
}

/// A file source whose records `row` turns into rows of the stream's schema; a
/// record that does not fit fails the job, naming the source and what was expected.
fn file_batches<T: serde::de::DeserializeOwned + Send + 'static>(
    job: &JobBuilder,
    planned: &PlannedStream,
    spec: &SourceSpec,
    config: FileSourceConfig,
    row: impl Fn(T) -> Result<Row, String> + Send + Sync + 'static,
    computed: Computed,
) -> Stream<Batch> {
    let schema = weir_jobfile::source_schema(&spec.kind);
    let convert: Convert<Row> = Arc::new(move |rows| Batch::from_rows(&schema, rows));
    // A record that does not fit fails the job naming its object and line.
    let map: RecordMap<T, Row> = Arc::new(move |record| {
        row(record).map_err(|e| format!("the record does not fit the source's schema: {e}"))
    });
    batched(
        job,
        planned,
        spec,
        FileSource::<T, Row>::mapped(config, map),
        convert,
        computed,
    )
}

/// The value of `field` written as `text` in a CSV row.
/// The rows of a table read from a compacted topic (`upsert:`), of `schema`: an
/// upsert's fields from the record's value, its key field from the record key and
/// `deleted` false; a tombstone's key field from the key, `deleted` true, the
/// event-time field (`time`, when read from the record) the record's timestamp and
/// the other fields defaults (0, false, "").
///
/// # Errors
/// The upsert's fields are not in `schema` (validation rules this out).
fn upsert_rows(
    schema: &Schema,
    upsert: &UpsertSpec,
    time: Option<&str>,
) -> Result<RecordDeserializer<Row>, String> {
    let index = |name: &str| {
        schema
            .index_of(name)
            .ok_or_else(|| format!("no field `{name}` in {}", schema.names()))
    };
    let key = index(&upsert.key.value)?;
    let deleted = index(&upsert.deleted.value)?;
    let time = time.and_then(|t| schema.index_of(t));
    // The fields a value holds (it may also hold the key; the record key wins).
    let read: Vec<usize> = (0..schema.fields.len())
        .filter(|&i| i != key && i != deleted)
        .collect();
    let value_schema = Schema::new(
        read.iter()
            .map(|&i| (schema.fields[i].name.as_str(), schema.fields[i].ty)),
    );
    let schema = schema.clone();
    Ok(Arc::new(move |record: RecordView<'_>| {
        let key_field = &schema.fields[key];
        let text = record.key.ok_or_else(|| {
            format!(
                "expected a key: the records of a table's topic are keyed by field `{}`",
                key_field.name
            )
        })?;
        let text = std::str::from_utf8(text)
            .map_err(|e| format!("record key: expected UTF-8 text: {e}"))?;
        let key_value = field_value(key_field, text).map_err(|e| format!("record key: {e}"))?;
        let mut values: Vec<Value> = match record.payload {
            Some(bytes) => {
                let mut row = value_schema.row_from_json_bytes(bytes)?.0.into_iter();
                schema
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| match i {
                        _ if i == key || i == deleted => Value::Bool(false),
                        _ => row.next().unwrap_or_else(|| default_value(f.ty)),
                    })
                    .collect()
            }
            None => {
                let mut values: Vec<Value> =
                    schema.fields.iter().map(|f| default_value(f.ty)).collect();
                if let (Some(t), Some(ms)) = (time, record.timestamp) {
                    values[t] = match schema.fields[t].ty {
                        FieldType::Int => Value::Int(ms),
                        _ => Value::Timestamp(ms),
                    };
                }
                values[deleted] = Value::Bool(true);
                values
            }
        };
        values[key] = key_value;
        Ok(Row(values))
    }))
}

/// The value a tombstone's fields take.
fn default_value(ty: FieldType) -> Value {
    match ty {
        FieldType::Int => Value::Int(0),
        FieldType::Float => Value::Float(0.0),
        FieldType::Bool => Value::Bool(false),
        FieldType::String => Value::String("".into()),
        FieldType::Timestamp => Value::Timestamp(0),
    }
}

fn field_value(field: &weir_jobfile::Field, text: &str) -> Result<Value, String> {
    Value::from_text(field.ty, text).ok_or_else(|| {
        format!(
            "field `{}`: expected a {}, got `{text}`",
            field.name, field.ty
        )
    })
}

/// Bids as the columns of a batch of the `bids` schema (auction, bidder, price,
/// channel, url, date_time, extra), filling the fields `needed` marks. Strings stay
/// the generator's static texts.
struct BidColumns {
    wanted: [bool; 7],
    rows: usize,
    auction: Vec<i64>,
    bidder: Vec<i64>,
    price: Vec<i64>,
    channel: Vec<Str>,
    url: Vec<Str>,
    date_time: Vec<i64>,
    extra: Vec<Str>,
}

impl BidColumns {
    fn new(needed: &[bool], rows: usize) -> Self {
        let wanted: [bool; 7] = std::array::from_fn(|i| needed.get(i).copied().unwrap_or(true));
        let capacity = |i: usize| if wanted[i] { rows } else { 0 };
        Self {
            wanted,
            rows: 0,
            auction: Vec::with_capacity(capacity(0)),
            bidder: Vec::with_capacity(capacity(1)),
            price: Vec::with_capacity(capacity(2)),
            channel: Vec::with_capacity(capacity(3)),
            url: Vec::with_capacity(capacity(4)),
            date_time: Vec::with_capacity(capacity(5)),
            extra: Vec::with_capacity(capacity(6)),
        }
    }

    #[inline(always)]
    fn push(&mut self, b: Bid) {
        let wanted = &self.wanted;
        if wanted[0] {
            self.auction.push(b.auction);
        }
        if wanted[1] {
            self.bidder.push(b.bidder);
        }
        if wanted[2] {
            self.price.push(b.price);
        }
        if wanted[3] {
            push_text(&mut self.channel, b.channel);
        }
        if wanted[4] {
            push_text(&mut self.url, b.url);
        }
        if wanted[5] {
            self.date_time.push(b.date_time);
        }
        if wanted[6] {
            push_text(&mut self.extra, b.extra);
        }
        self.rows += 1;
    }

    /// The batch (an error would be a column left behind, which `push` rules out).
    fn finish(self) -> Result<Batch, String> {
        let wanted = self.wanted;
        let column = |i: usize, column: Column| if wanted[i] { column } else { Column::Pruned };
        let columns = vec![
            column(0, Column::Int(self.auction)),
            column(1, Column::Int(self.bidder)),
            column(2, Column::Int(self.price)),
            column(3, Column::String(self.channel)),
            column(4, Column::String(self.url)),
            column(5, Column::Timestamp(self.date_time)),
            column(6, Column::String(self.extra)),
        ];
        Batch::new(columns, self.rows)
    }
}

/// Appends `text` to a column, a static text built in place. Built on the stack and
/// then copied (as through `Str::from`), its two words would be read back as one
/// 16-byte load right after two 8-byte stores: a store-forwarding stall on every
/// row, which was most of q0's time as a job file.
#[inline(always)]
fn push_text(column: &mut Vec<Str>, text: Cow<'static, str>) {
    match text {
        Cow::Borrowed(text) => column.push(Str::from_static(text)),
        Cow::Owned(text) => column.push(Str::from(Cow::Owned(text))),
    }
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

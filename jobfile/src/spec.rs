//! The typed contents of a job file, as read (before the graph is checked).

use crate::row::FieldType;
use crate::yaml::Pos;
use std::time::Duration;

/// A value and where the file spells it.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it starts in the file.
    pub at: Pos,
    /// Its field path, e.g. `operators[2].input`.
    pub path: String,
}

/// A whole job file.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// The job's name (default: the file name without extension).
    pub name: String,
    /// Default parallelism of every operator (default 1).
    pub parallelism: usize,
    /// Checkpoint settings.
    pub checkpoints: CheckpointSpec,
    /// What to do when a task fails.
    pub restart: RestartSpec,
    /// Where keyed state lives.
    pub state_backend: StateBackend,
    /// The sources, each a named stream.
    pub sources: Vec<SourceSpec>,
    /// The operators, each a named stream.
    pub operators: Vec<OperatorSpec>,
    /// The sinks.
    pub sinks: Vec<SinkSpec>,
}

/// `checkpoints:`.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointSpec {
    /// Time between checkpoint starts (default 10s).
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted (default 60s).
    pub timeout: Duration,
    /// Storage URL or directory (default `./weir-data/checkpoints`).
    pub storage: String,
    /// Completed checkpoints kept (default 3).
    pub retention: usize,
    /// In cluster mode, on RocksDB: how many other workers keep a warm copy of each
    /// subtask's newest checkpoint for a fast failover (default 0).
    pub standbys: usize,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            storage: "./weir-data/checkpoints".into(),
            retention: 3,
            standbys: 0,
        }
    }
}

/// `restart:`.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartSpec {
    /// Fail at once.
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay {
        /// Maximum restarts.
        attempts: u32,
        /// Wait before each.
        delay: Duration,
    },
    /// Up to `attempts` restarts, the wait doubling from `initial` to `max`.
    ExponentialBackoff {
        /// Maximum restarts.
        attempts: u32,
        /// First wait.
        initial: Duration,
        /// Longest wait.
        max: Duration,
    },
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self::FixedDelay {
            attempts: 3,
            delay: Duration::from_secs(1),
        }
    }
}

/// `state_backend:`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// In-memory hash tables, checkpointed to the checkpoint storage.
    #[default]
    Heap,
    /// RocksDB on local disk (under `./weir-data/state`): state larger than memory.
    RocksDb,
}

/// Settings every source, operator and sink shares.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    /// The stream (or sink) name.
    pub name: Located<String>,
    /// Stable uid of its state (default: derived by the engine from the graph).
    pub uid: Option<String>,
    /// Its parallelism (default: the job's).
    pub parallelism: Option<usize>,
    /// Where the entry starts and its path, e.g. `sources[0]`.
    pub at: Pos,
    /// Its path, e.g. `sources[0]`.
    pub path: String,
}

/// One entry of `sources:`.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSpec {
    /// Name, uid, parallelism.
    pub node: NodeSpec,
    /// What it reads.
    pub kind: SourceKind,
    /// Computed fields appended to the rows read, in order: each an expression over
    /// the fields read and the computed fields before it (Flink's computed columns).
    pub computed: Vec<(String, ExprSource)>,
    /// The event-time field (a field read or a computed one).
    pub timestamp: Option<Located<String>>,
    /// Watermark settings (with `timestamp`).
    pub watermark: Option<WatermarkSpec>,
}

/// `watermark:` of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkSpec {
    /// Records up to this late are on time (default 0).
    pub max_out_of_orderness: Duration,
    /// A split silent for this long stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
}

/// Which Nexmark events a `nexmark` source emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NexmarkEvent {
    /// Bids.
    Bid,
    /// Auctions.
    Auction,
    /// Persons.
    Person,
}

/// `upsert:` of a Kafka source: its topic holds a table, keyed by the record key
/// (Kafka Streams' KTable, Flink's `upsert-kafka`).
#[derive(Clone, Debug, PartialEq)]
pub struct UpsertSpec {
    /// The field whose value is the record key's text (as a Kafka sink's `key:`
    /// writes it); read from the key, whatever the value holds.
    pub key: Located<String>,
    /// A bool field added to the rows: false for an upsert, true for a tombstone,
    /// whose other fields are defaults (the event-time field, if read from the
    /// record, is the record's timestamp).
    pub deleted: Located<String>,
}

/// The data format of Kafka records.
#[derive(Clone, Debug, PartialEq)]
pub enum KafkaFormat {
    /// UTF-8 text: one field `value`.
    Text,
    /// JSON objects with these fields.
    Json(Vec<(String, FieldType)>),
}

/// What a source reads.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// The deterministic bid generator.
    Bids {
        /// Bids `1..=events`.
        events: u64,
        /// Bids per millisecond of event time (default 10).
        rate: i64,
        /// `p` of the event-time formula (default 2).
        source_parallelism: i64,
    },
    /// The Nexmark generator.
    Nexmark {
        /// Events generated (of all kinds).
        events: u64,
        /// Events per second of event time (default 10,000).
        events_per_second: u64,
        /// Random seed (default 0).
        seed: u64,
        /// Which events become rows.
        event: NexmarkEvent,
    },
    /// The numbers `from..=to`.
    Sequence {
        /// First number.
        from: i64,
        /// Last number.
        to: i64,
        /// Numbers per second of the whole source (default: as fast as possible).
        rows_per_second: Option<u64>,
    },
    /// A Kafka topic.
    Kafka {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// Topic.
        topic: String,
        /// Consumer group.
        group: String,
        /// Start at the earliest offsets (else the latest).
        earliest: bool,
        /// Stop at the partition ends found.
        bounded: bool,
        /// Record format.
        format: KafkaFormat,
        /// The topic is a table's changelog (a compacted topic): records are
        /// upserts by key, and records without a value are tombstones.
        upsert: Option<UpsertSpec>,
    },
    /// Files on the local filesystem or S3: one file, or every file under a
    /// directory or prefix, checkpointed by position.
    File {
        /// A path, `file:///path`, `s3://bucket/key` or `s3://bucket/prefix`.
        path: String,
        /// How rows are laid out.
        format: FileRowFormat,
        /// The fields of a row.
        schema: Vec<(String, FieldType)>,
    },
}

/// How a file source's rows are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRowFormat {
    /// One JSON object per line with the schema's fields.
    JsonLines,
    /// One CSV row per line: by the header's names, or else in schema order.
    Csv {
        /// Whether every file starts with a header row.
        header: bool,
    },
}

/// A window's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowShape {
    /// Fixed, non-overlapping windows.
    Tumbling {
        /// Length.
        size: Duration,
    },
    /// Fixed windows starting every `slide`.
    Hopping {
        /// Length.
        size: Duration,
        /// Distance between starts.
        slide: Duration,
    },
    /// Windows growing by `step` from a common start up to `size` (Flink's
    /// cumulate windows).
    Cumulate {
        /// The largest window's length (a multiple of `step`).
        size: Duration,
        /// How much each window is longer than the one before.
        step: Duration,
    },
    /// Windows of activity closed by a gap.
    Session {
        /// Inactivity that closes a session.
        gap: Duration,
    },
    /// Kafka Streams' sliding windows: one window per distinct set of a key's
    /// records whose event times differ by at most `time_difference`
    /// (`window_end` is its last millisecond plus one), fired `grace` after its
    /// end.
    Sliding {
        /// The largest difference between the event times of a window's rows.
        time_difference: Duration,
        /// How long after its end a window waits for late rows.
        grace: Duration,
    },
}

impl WindowShape {
    /// Whether windows of this shape can be aggregated in two phases: tumbling
    /// windows, and hopping windows whose size is a multiple of the slide (by
    /// slices).
    pub fn pre_aggregates(&self) -> bool {
        match *self {
            Self::Tumbling { .. } => true,
            Self::Hopping { size, slide } => {
                !slide.is_zero() && size.as_millis() % slide.as_millis() == 0
            }
            Self::Cumulate { .. } | Self::Session { .. } | Self::Sliding { .. } => false,
        }
    }
}

/// A built-in aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateKind {
    /// Number of rows.
    Count,
    /// Sum of a field.
    Sum,
    /// Minimum of a field.
    Min,
    /// Maximum of a field.
    Max,
    /// Mean of a field (a float).
    Avg,
    /// Number of distinct values of a field (SQL's `COUNT(DISTINCT x)`).
    CountDistinct,
}

/// One entry of a window's `aggregates:`.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateSpec {
    /// The output field.
    pub output: String,
    /// The function.
    pub kind: AggregateKind,
    /// Its argument field (none for `count`).
    pub field: Option<String>,
    /// Where it is spelled.
    pub at: Pos,
    /// Its path.
    pub path: String,
}

/// An expression as written, with where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprSource {
    /// The text.
    pub text: String,
    /// Where the first character of `text` is (for quoted scalars, after the quote).
    pub at: Pos,
    /// Whether the text sits on one line of the file, so columns inside it map to
    /// file columns.
    pub one_line: bool,
    /// Its path.
    pub path: String,
}

/// What an operator does.
#[derive(Clone, Debug, PartialEq)]
pub enum OperatorKind {
    /// Keeps rows where `condition` is true.
    Filter {
        /// A bool expression.
        condition: ExprSource,
    },
    /// Computes new rows, one expression per output field.
    Map {
        /// Output fields in order.
        fields: Vec<(String, ExprSource)>,
    },
    /// Partitions by the given fields.
    KeyBy {
        /// Key fields.
        keys: Vec<Located<String>>,
    },
    /// Aggregates windows of a keyed stream.
    Window {
        /// Window shape.
        shape: WindowShape,
        /// Where `window:` is.
        shape_at: Located<()>,
        /// Output aggregates in order (none with `top`).
        aggregates: Vec<AggregateSpec>,
        /// Instead of aggregates: keep the best rows of each key and window.
        top: Option<TopSpec>,
        /// Keep windows open this long after they fire.
        allowed_lateness: Duration,
        /// Keep a window's state this long after its end (readable by state
        /// queries), at least the allowed lateness.
        retention: Duration,
        /// Aggregate in two phases: per key and window before the exchange, merged
        /// after it.
        pre_aggregate: bool,
    },
    /// Per window of its input (a window's output, by `window_end`), and per value
    /// of its `partition` fields, the best rows: Top-N after a window.
    Top {
        /// What it keeps.
        top: TopSpec,
    },
    /// Merges streams with equal schemas.
    Union,
    /// A user-defined row function registered by name.
    Udf {
        /// The registered name.
        function: Located<String>,
    },
    /// Joins two keyed streams per key and window: every pair of a left and a right
    /// row with equal keys in the same window.
    WindowJoin {
        /// Window shape.
        shape: WindowShape,
    },
    /// Joins two keyed streams: every left row `l` with the right rows `r` of equal
    /// key and `l.time + lower <= r.time <= l.time + upper`.
    IntervalJoin {
        /// Lower bound, ms (may be negative).
        lower: i64,
        /// Upper bound, ms.
        upper: i64,
        /// Where `between:` is.
        between_at: Located<()>,
    },
    /// Joins a keyed stream with a table kept in broadcast state (Kafka Streams'
    /// stream-GlobalKTable join): the right input's rows, by key, the latest one
    /// winning, are on every subtask, and each left row joins the row of its key
    /// when it comes (rows without one are dropped).
    BroadcastJoin,
    /// Joins a keyed stream with a versioned table by event time (Flink's `FOR
    /// SYSTEM_TIME AS OF`): each left row joins the right input's row of its key
    /// valid at the left row's time (rows without one are dropped).
    TemporalJoin {
        /// How long versions are kept behind the watermark.
        retention: Duration,
        /// A bool field of the table's rows: when true, the row deletes its key
        /// from its time on.
        deleted: Option<Located<String>>,
    },
}

/// How a `top` numbers the rows it ranks (SQL's ranking functions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankKind {
    /// Tied rows share a rank and the next rank skips (`RANK()`): the rows ranked
    /// `n` or better, so every row tied with the last one kept.
    Rank,
    /// Tied rows share a rank and none is skipped (`DENSE_RANK()`): the rows with
    /// the `n` best values.
    DenseRank,
    /// Every row its own rank (`ROW_NUMBER()`): exactly the first `n` rows; a tie
    /// is broken by the rows' fields in order, the smallest first, so the rows
    /// kept do not depend on arrival order.
    RowNumber,
}

/// One field a `top` orders its rows by.
#[derive(Clone, Debug, PartialEq)]
pub struct SortField {
    /// The field.
    pub field: Located<String>,
    /// Largest first (the default) or smallest first (`asc`).
    pub descending: bool,
}

/// What a `top` keeps: per window (and partition), the rows ranked `n` or better
/// by `order`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopSpec {
    /// The fields compared, the first first.
    pub order: Vec<SortField>,
    /// The last rank kept.
    pub n: usize,
    /// How ranks are numbered.
    pub rank: RankKind,
    /// An int field appended to each row with its rank, if named.
    pub rank_field: Option<Located<String>>,
    /// Fields besides the window whose values are ranked apart (the `top`
    /// operator; a window's `top` ranks per key).
    pub partition: Vec<Located<String>>,
}

impl TopSpec {
    /// The rows with the largest `by`, all of them on a tie (window Top-1).
    pub fn largest(by: Located<String>) -> Self {
        Self {
            order: vec![SortField {
                field: by,
                descending: true,
            }],
            n: 1,
            rank: RankKind::Rank,
            rank_field: None,
            partition: Vec::new(),
        }
    }
}

/// One entry of `operators:`.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorSpec {
    /// Name, uid, parallelism.
    pub node: NodeSpec,
    /// Input stream names.
    pub inputs: Vec<Located<String>>,
    /// What it does.
    pub kind: OperatorKind,
}

/// Delivery guarantee of a Kafka sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaGuarantee {
    /// Transactions committed with checkpoints.
    ExactlyOnce,
    /// Flushed at every checkpoint.
    AtLeastOnce,
    /// Fire and forget.
    None,
}

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkKind {
    /// JSON lines on standard output.
    Stdout,
    /// Drops every row.
    Blackhole,
    /// A Kafka topic, one JSON object per row.
    Kafka {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// Topic.
        topic: String,
        /// Delivery guarantee.
        guarantee: KafkaGuarantee,
        /// Record key field (its value as text).
        key: Option<Located<String>>,
        /// A bool field: rows where it is true are written as tombstones of their
        /// key (records without a value), the others as upserts without it.
        deleted: Option<Located<String>>,
    },
    /// Exactly-once JSON-lines files in a local directory.
    File {
        /// The directory.
        path: String,
    },
}

/// One entry of `sinks:`.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkSpec {
    /// Name, uid, parallelism.
    pub node: NodeSpec,
    /// The stream written.
    pub input: Located<String>,
    /// Where.
    pub kind: SinkKind,
}

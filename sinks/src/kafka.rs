//! [`KafkaSink`]: a Kafka topic as the end of a pipeline, exactly-once by default.
//!
//! ```text
//! exactly_once (write-ahead epochs):
//!  records of epoch n ──▶ memory; at barrier n they join the sink's checkpointed state
//!  checkpoint n complete ──▶ one transaction: the epoch's records + marker (group `<txid>-<timeline>`, offset n) ──▶ commit
//!                        ──▶ direct copy of the marker (group `<txid>-<timeline>-direct`, offset n)
//!  restore ──▶ pending epochs of the checkpoint: max(marker, copy) ≥ epoch? skip : produce again in a transaction
//!
//! at_least_once: records produced as they come (idempotent producer), flushed at every barrier
//! none:          records produced as they come, flushed when the input ends
//! ```
//!
//! librdkafka cannot resume a prepared transaction after the process dies, so a
//! transaction that spans an epoch would be lost with the process. Instead the
//! records of an epoch live in the checkpoint, and only a completed checkpoint's epochs
//! are produced, each in one short transaction. Every transaction also commits a
//! *marker*: the offset `n` of partition 0 of the output topic for the consumer group
//! named after the transactional id and the timeline (below). The marker becomes visible exactly when the
//! epoch's records do, so a restore knows which pending epochs were committed before
//! the crash and produces only the others. Once the commit is acknowledged, the sink
//! also commits `n` plainly to the marker's *direct copy* (the group name plus
//! `-direct`), and a restore trusts the later of the two. On a conforming broker the
//! copy adds nothing; tansu (the test broker) acknowledges a commit but applies the
//! transaction's offsets only after every other transaction that wrote to the same
//! partitions before it has ended, never if one stays open, and the copy is what
//! keeps its restores from producing committed epochs again.
//!
//! Fencing: the transactional id is `<prefix>-<subtask>` (prefix:
//! `weir-<job>-<uid>-<topic>` unless set), stable across restarts and distinct for
//! every job, sink and topic: two sinks sharing an id would fence each other and
//! confuse each other's markers. Opening the sink re-initialises it, which
//! aborts whatever a previous incarnation left open and fences any producer of that
//! incarnation still alive.
//!
//! The checkpointed state keeps, with each subtask's pending epochs, the
//! transactional id and marker group they were written under. A restore recovers
//! them under those ids, not under ids recomputed from the current job name, prefix
//! and subtask: a savepoint resumed as another job, or with another
//! `transactional_id_prefix`, still finds the markers of the epochs it committed and
//! aborts what it left open. New epochs use the new ids. After rescaling, the pending
//! epochs of old subtask `i` are recovered by new subtask `i % parallelism`, so each
//! is recovered once. Recovering opens the old ids, which fences a job still running
//! under them (it fails over and finds the epochs committed). A checkpoint written
//! before the ids were kept (state `kafka-sink-pending`) is recovered under the
//! recomputed ids, as before.
//!
//! Markers are per timeline. Checkpoint ids order the epochs of one timeline (one
//! start of the job, [`OperatorContext::timeline`]) and no more: a fresh checkpoint
//! directory, or a savepoint resumed into one, counts from 1 again while the topic
//! keeps the markers of earlier runs with the same transactional ids. So the marker
//! group of the epochs a timeline writes is `<txid>-<timeline, 16 hex digits>`
//! ([`marker_group`]), and a pending epoch is skipped when the marker of the group it
//! was written under (kept with it, above) is at or past it. Only one timeline's
//! epochs ever reach a group: its own commits, in checkpoint order, and the recovery
//! of its pending epochs by a restore (an in-process restart, or a later run from its
//! checkpoint or savepoint), which commits only epochs past the marker. So a group's
//! marker never moves back, and a marker written on one timeline is never compared
//! with another timeline's epoch: an earlier run's high marker cannot make a new run
//! skip (lose) its epoch, and a later run cannot make a restore of an earlier one
//! produce an epoch again. Epochs written before markers were per timeline name the
//! group `<txid>` and are recovered under it. A restore that recovers an earlier
//! timeline's epochs under the subtask's own transactional id commits them with the
//! subtask's producer and the earlier marker group: a second producer with the same
//! id would fence the first. New epochs after a restore are always produced.
//!
//! Records are partitioned like Kafka's Java client: keyed records by the murmur2
//! hash of the key ([`default_partition`]), unkeyed ones spread by librdkafka.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_dataflow::state::{decode, encode};
use weir_dataflow::{
    CheckpointId, DataflowError, OperatorContext, Result, Sink, SnapshotContext, SubtaskInfo,
};

/// Operator state: a subtask's [`PendingState`].
const PENDING: &str = "kafka-sink-pending-v3";
/// Operator state of checkpoints written before tombstones: a [`PendingState`]
/// whose records all have a value ([`ValueRecord`]).
const PENDING_WITHOUT_TOMBSTONES: &str = "kafka-sink-pending-v2";
/// Operator state of checkpoints written before the ids were kept: bare pending
/// epochs of [`ValueRecord`]s, recovered under the id recomputed for its subtask.
const PENDING_WITHOUT_IDS: &str = "kafka-sink-pending";

/// What a [`KafkaSink`] promises about its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryGuarantee {
    /// Each record is visible to `read_committed` consumers exactly once, after the
    /// checkpoint that covers it completes (needs checkpointing).
    #[default]
    ExactlyOnce,
    /// Records are produced as they arrive by an idempotent producer and flushed at
    /// every checkpoint: none is lost, a restart may repeat some.
    AtLeastOnce,
    /// Records are produced as they arrive; a failure may lose or repeat some.
    None,
}

/// A test-only crash point inside the commit of an epoch (the process aborts the
/// `n`-th time it is reached): the steps every exactly-once sink shares. For this sink
/// `MidCommit` is half of the epoch's records produced in the open transaction,
/// `BeforeCommit` the records and the marker in the transaction with the commit not
/// sent, and `AfterCommit` the transaction committed and its marker's direct copy
/// committed, with the epoch still pending.
pub use crate::failpoint::CommitStep as KafkaSinkFailpoint;

/// Counters of a Kafka sink, summed over its subtasks; readable while the job runs.
#[derive(Debug, Default)]
pub struct KafkaSinkMetrics {
    /// Records received by the sink.
    pub records_in: AtomicU64,
    /// Records acknowledged by the brokers (exactly-once: committed).
    pub records_out: AtomicU64,
    /// Transactions committed.
    pub transactions_committed: AtomicU64,
    /// Transactions aborted after an error.
    pub transactions_aborted: AtomicU64,
    /// Restored epochs found already committed (their marker was there) and skipped.
    pub epochs_skipped: AtomicU64,
    /// Bytes of records waiting for their checkpoint to complete.
    pub epoch_buffer_bytes: AtomicU64,
}

/// Settings of a Kafka sink.
#[derive(Clone, Debug)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// The topic to write (it must exist).
    pub topic: String,
    /// Exactly-once (default), at-least-once or none.
    pub guarantee: DeliveryGuarantee,
    /// Prefix of the transactional ids (`<prefix>-<subtask>`); default
    /// `weir-<job>-<uid>-<topic>`. Two sinks running with the same prefix fence each
    /// other: give every concurrently running sink its own. Changing it (or the job
    /// name) between a savepoint and its resume is safe: the savepoint's pending
    /// epochs are recovered under the ids they were written with.
    pub transactional_id_prefix: Option<String>,
    /// `transaction.timeout.ms`: at least the checkpoint timeout (an epoch's commit
    /// may take that long) and at most the broker's `transaction.max.timeout.ms`.
    pub transaction_timeout: Duration,
    /// How long to wait for the brokers at start.
    pub connect_timeout: Duration,
    /// Further librdkafka producer properties (they override weir's).
    pub properties: BTreeMap<String, String>,
    /// Counters, shared by the subtasks.
    pub metrics: Arc<KafkaSinkMetrics>,
    /// Crash the process inside a commit: for the crash tests only.
    pub failpoint: Option<(KafkaSinkFailpoint, u64)>,
}

impl KafkaSinkConfig {
    /// Writes `topic` on `bootstrap_servers`, exactly-once.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            guarantee: DeliveryGuarantee::default(),
            transactional_id_prefix: None,
            transaction_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
            metrics: Arc::default(),
            failpoint: None,
        }
    }
}

/// A record as it goes to Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOutRecord {
    /// The key (decides the partition); `None` for an unkeyed record.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a tombstone, which deletes the key from a compacted
    /// topic (and from the tables read from it).
    pub value: Option<Vec<u8>>,
    /// The record's timestamp, ms since the epoch (e.g. its event time: a table's
    /// reader takes a tombstone's time from it); `None`: the time it is produced.
    pub timestamp: Option<i64>,
}

/// A record as checkpoints before tombstones kept it: always a value.
#[derive(Deserialize)]
struct ValueRecord {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// Pending epochs of [`ValueRecord`]s.
type ValuePending = BTreeMap<u64, Vec<ValueRecord>>;

/// [`PendingState`] as checkpoints before tombstones kept it.
#[derive(Deserialize)]
struct ValuePendingState {
    transactional_id: String,
    marker_group: String,
    epochs: ValuePending,
}

/// The epochs of [`ValueRecord`]s as epochs of [`KafkaOutRecord`]s.
fn with_values(epochs: ValuePending) -> Pending {
    epochs
        .into_iter()
        .map(|(epoch, records)| {
            let records = records
                .into_iter()
                .map(|r| KafkaOutRecord {
                    key: r.key,
                    value: Some(r.value),
                    timestamp: None,
                })
                .collect();
            (epoch, records)
        })
        .collect()
}

/// Turns a `T` into a Kafka record; the error text says what went wrong.
pub type Serializer<T> =
    Arc<dyn Fn(&T) -> std::result::Result<KafkaOutRecord, String> + Send + Sync>;

/// Unkeyed records whose value is the JSON of the record.
pub fn json<T: Serialize + 'static>() -> Serializer<T> {
    Arc::new(|record| {
        Ok(KafkaOutRecord {
            key: None,
            value: Some(serde_json::to_vec(record).map_err(|e| format!("not JSON: {e}"))?),
            timestamp: None,
        })
    })
}

/// JSON values keyed by `key(record)`.
pub fn json_keyed<T: Serialize + 'static>(
    key: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static,
) -> Serializer<T> {
    Arc::new(move |record| {
        Ok(KafkaOutRecord {
            key: Some(key(record)),
            value: Some(serde_json::to_vec(record).map_err(|e| format!("not JSON: {e}"))?),
            timestamp: None,
        })
    })
}

/// Upserts and tombstones of a table by key, for a compacted topic: `(key,
/// Some(value), time)` writes the value's JSON under the key (its UTF-8 bytes),
/// `(key, None, time)` a tombstone that deletes the key; `time` (ms since the epoch,
/// e.g. the change's event time) is the record's timestamp. Read back with
/// `weir_sources::kafka::upsert_json`.
pub fn upsert_json<V: Serialize + 'static>() -> Serializer<(String, Option<V>, i64)> {
    Arc::new(|(key, value, time)| {
        Ok(KafkaOutRecord {
            key: Some(key.as_bytes().to_vec()),
            value: value
                .as_ref()
                .map(|v| serde_json::to_vec(v).map_err(|e| format!("not JSON: {e}")))
                .transpose()?,
            timestamp: Some(*time),
        })
    })
}

/// Records that are already [`KafkaOutRecord`]s.
pub fn records() -> Serializer<KafkaOutRecord> {
    Arc::new(|record| Ok(record.clone()))
}

/// Unkeyed UTF-8 text values.
pub fn utf8() -> Serializer<String> {
    Arc::new(|record| {
        Ok(KafkaOutRecord {
            key: None,
            value: Some(record.as_bytes().to_vec()),
            timestamp: None,
        })
    })
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a keyed record:
/// `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn default_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Pending epochs of one subtask: checkpoint id → records.
type Pending = BTreeMap<u64, Vec<KafkaOutRecord>>;

/// The checkpointed pending epochs of one subtask, with the identity that commits
/// them: a restore recovers them under these, whatever the job is called now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PendingState<'a> {
    /// The transactional id the epochs are committed with.
    transactional_id: Cow<'a, str>,
    /// The consumer group whose committed offset is the epochs' marker.
    marker_group: Cow<'a, str>,
    /// The epochs.
    epochs: Cow<'a, Pending>,
}

impl PendingState<'static> {
    /// The pending state of one previous subtask in `state`, if any; a state written
    /// before the ids were kept gets `recomputed_id` as its id and marker group.
    ///
    /// # Errors
    /// A state that does not decode (named in the error).
    fn restored(
        state: &BTreeMap<String, Vec<u8>>,
        recomputed_id: impl FnOnce() -> String,
    ) -> Result<Option<Self>> {
        if let Some(bytes) = state.get(PENDING) {
            return Ok(Some(decode(PENDING, bytes)?));
        }
        if let Some(bytes) = state.get(PENDING_WITHOUT_TOMBSTONES) {
            let old: ValuePendingState = decode(PENDING_WITHOUT_TOMBSTONES, bytes)?;
            return Ok(Some(Self {
                transactional_id: Cow::Owned(old.transactional_id),
                marker_group: Cow::Owned(old.marker_group),
                epochs: Cow::Owned(with_values(old.epochs)),
            }));
        }
        let Some(bytes) = state.get(PENDING_WITHOUT_IDS) else {
            return Ok(None);
        };
        let epochs: ValuePending = decode(PENDING_WITHOUT_IDS, bytes)?;
        let id = recomputed_id();
        Ok(Some(Self {
            transactional_id: Cow::Owned(id.clone()),
            marker_group: Cow::Owned(id),
            epochs: Cow::Owned(with_values(epochs)),
        }))
    }
}

/// The pending states new subtask `index` of `parallelism` recovers from a restored
/// checkpoint: its own previous state (`restored`), or after rescaling those of
/// every previous subtask `i` with `i % parallelism == index` (`restored_all`).
/// `recomputed_id(i)` names old subtask `i`'s id when its state does not.
///
/// # Errors
/// A state that does not decode.
fn restored_pending(
    index: usize,
    parallelism: usize,
    restored: &BTreeMap<String, Vec<u8>>,
    restored_all: &[BTreeMap<String, Vec<u8>>],
    recomputed_id: impl Fn(usize) -> String,
) -> Result<Vec<PendingState<'static>>> {
    if restored_all.is_empty() {
        return Ok(PendingState::restored(restored, || recomputed_id(index))?
            .into_iter()
            .collect());
    }
    let parallelism = parallelism.max(1);
    let mut out = Vec::new();
    for (old, state) in restored_all.iter().enumerate() {
        if old % parallelism != index {
            continue;
        }
        if let Some(pending) = PendingState::restored(state, || recomputed_id(old))? {
            out.push(pending);
        }
    }
    Ok(out)
}

/// Reports deliveries: counts acknowledged records, keeps the first failure.
struct Deliveries {
    metrics: Arc<KafkaSinkMetrics>,
    count: bool,
    failure: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) if self.count => {
                self.metrics.records_out.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err((e, _)) => {
                let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| e.clone());
            }
        }
    }
}

type KafkaProducer = ThreadedProducer<Deliveries>;

/// The marker group of the epochs that transactional id `id` commits on `timeline`:
/// `<id>-<timeline, 16 hex digits>`, or `id` itself without a timeline (0: a job
/// that is not run by the checkpointing driver).
pub fn marker_group(id: &str, timeline: u64) -> String {
    match timeline {
        0 => id.to_owned(),
        timeline => format!("{id}-{timeline:016x}"),
    }
}

/// A marker: the consumer group whose committed offset (on partition 0 of the topic)
/// is the epoch committed last, and the consumer that reads it and names the group in
/// transactions; with its *direct* copy, group `<group>-direct`, whose offset is
/// committed (plainly) after each transaction's commit is acknowledged.
struct Marker {
    group: String,
    consumer: BaseConsumer,
    direct: BaseConsumer,
}

/// The group of the direct copy of the marker in group `group`.
fn direct_group(group: &str) -> String {
    format!("{group}-direct")
}

/// One transactional id: its producer and the marker of the epochs it commits now.
struct Transactions {
    transactional_id: String,
    producer: KafkaProducer,
    marker: Marker,
}

/// Writes a pipeline's records to a Kafka topic; see the module documentation.
pub struct KafkaSink<T> {
    config: KafkaSinkConfig,
    serializer: Serializer<T>,
    subtask: SubtaskInfo,
    prefix: String,
    commit_timeout: Duration,
    /// The producer of at-least-once and none.
    producer: Option<KafkaProducer>,
    /// This subtask's transactions (exactly-once).
    transactions: Option<Transactions>,
    current: Vec<KafkaOutRecord>,
    current_bytes: u64,
    pending: Pending,
    pending_bytes: BTreeMap<u64, u64>,
    failpoint_hits: u64,
}

impl<T: Send + 'static> KafkaSink<T> {
    /// A sink factory for [`weir_dataflow::Stream::sink`].
    pub fn factory(
        config: KafkaSinkConfig,
        serializer: Serializer<T>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        move |info| Self {
            config: config.clone(),
            serializer: serializer.clone(),
            subtask: info.clone(),
            prefix: String::new(),
            commit_timeout: Duration::from_secs(60),
            producer: None,
            transactions: None,
            current: Vec::new(),
            current_bytes: 0,
            pending: BTreeMap::new(),
            pending_bytes: BTreeMap::new(),
            failpoint_hits: 0,
        }
    }

    fn error(&self, message: impl Into<String>) -> DataflowError {
        DataflowError::operator(&self.subtask.operator, self.subtask.index, message)
    }

    /// The client's error `e` while `doing` something to the topic, kept as the cause;
    /// a fenced producer is explained.
    fn kafka_error(&self, doing: &str, e: KafkaError) -> DataflowError {
        let fenced = matches!(&e, KafkaError::Transaction(inner)
            if matches!(inner.code(), RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch));
        let hint = if fenced {
            " (another producer initialised the same transactional id: a newer instance of this job, or another sink with the same transactional_id_prefix)"
        } else {
            ""
        };
        DataflowError::operator_caused(
            &self.subtask.operator,
            self.subtask.index,
            format!(
                "{doing} topic `{}` on brokers `{}`{hint}",
                self.config.topic, self.config.bootstrap_servers
            ),
            e,
        )
    }

    fn transactional_id(&self, subtask: usize) -> String {
        format!("{}-{subtask}", self.prefix)
    }

    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("allow.auto.create.topics", "false")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "65536");
        client
    }

    fn producer(&self, transactional_id: Option<&str>, count: bool) -> Result<KafkaProducer> {
        let mut client = self.client_config();
        match (self.config.guarantee, transactional_id) {
            (_, Some(id)) => {
                client.set("transactional.id", id).set(
                    "transaction.timeout.ms",
                    self.config.transaction_timeout.as_millis().to_string(),
                );
            }
            (DeliveryGuarantee::AtLeastOnce, None) => {
                client.set("enable.idempotence", "true");
            }
            _ => {}
        }
        for (key, value) in &self.config.properties {
            client.set(key, value);
        }
        let context = Deliveries {
            metrics: Arc::clone(&self.config.metrics),
            count,
            failure: Mutex::new(None),
        };
        client
            .create_with_context(context)
            .map_err(|e| self.kafka_error("creating a producer for", e))
    }

    /// Fails unless the topic exists and the brokers answer within the connect
    /// timeout.
    fn check_topic(&self, producer: &KafkaProducer) -> Result<()> {
        let timeout = self.config.connect_timeout;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&self.config.topic), timeout)
            .map_err(|e| {
                DataflowError::operator_caused(
                    &self.subtask.operator,
                    self.subtask.index,
                    format!(
                        "could not reach the Kafka brokers `{}` within {timeout:?} to write topic `{}`",
                        self.config.bootstrap_servers, self.config.topic
                    ),
                    e,
                )
            })?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.config.topic)
            .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
        if found {
            Ok(())
        } else {
            Err(self.error(format!(
                "topic `{}` does not exist on the Kafka brokers `{}` (expected an existing topic; weir does not create sink topics)",
                self.config.topic, self.config.bootstrap_servers
            )))
        }
    }

    /// Opens transactional id `id` with its marker in consumer group `marker_group`:
    /// initialising the id aborts what an earlier producer with the id left open and
    /// fences that producer. The topic is checked first, so unreachable brokers fail
    /// within the connect timeout.
    fn open_transactions(&self, id: String, marker_group: String) -> Result<Transactions> {
        let producer = self.producer(Some(&id), false)?;
        self.check_topic(&producer)?;
        producer
            .init_transactions(self.config.connect_timeout.max(self.commit_timeout))
            .map_err(|e| match e {
                KafkaError::Transaction(ref inner)
                    if inner.code() == RDKafkaErrorCode::InvalidTransactionTimeout =>
                {
                    self.error(format!(
                        "transaction timeout {} ms of transactional id `{id}` is refused by the brokers `{}`: it must not exceed their transaction.max.timeout.ms (set KafkaSinkConfig::transaction_timeout lower)",
                        self.config.transaction_timeout.as_millis(),
                        self.config.bootstrap_servers
                    ))
                }
                e => self.kafka_error(&format!("initialising transactional id `{id}` for"), e),
            })?;
        Ok(Transactions {
            transactional_id: id,
            producer,
            marker: self.open_marker(marker_group)?,
        })
    }

    /// The marker in consumer group `group` and its direct copy (nothing is sent to
    /// the brokers yet).
    fn open_marker(&self, group: String) -> Result<Marker> {
        let consumer = |group: &str| -> Result<BaseConsumer> {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &self.config.bootstrap_servers)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
            config.create().map_err(|e| {
                self.kafka_error(
                    &format!("creating the consumer of marker group `{group}` for"),
                    e,
                )
            })
        };
        Ok(Marker {
            consumer: consumer(&group)?,
            direct: consumer(&direct_group(&group))?,
            group,
        })
    }

    fn failpoint(&mut self, step: KafkaSinkFailpoint) {
        if let Some((point, nth)) = self.config.failpoint {
            if point == step {
                self.failpoint_hits += 1;
                if self.failpoint_hits >= nth {
                    eprintln!("weir: Kafka sink failpoint {step:?} reached: aborting the process");
                    std::process::abort();
                }
            }
        }
    }

    /// Produces `record`, waiting while librdkafka's queue is full.
    fn send(&self, producer: &KafkaProducer, record: &KafkaOutRecord) -> Result<()> {
        loop {
            let mut out = BaseRecord::<[u8], [u8]>::to(&self.config.topic);
            if let Some(value) = &record.value {
                out = out.payload(value);
            }
            if let Some(time) = record.timestamp {
                out = out.timestamp(time);
            }
            if let Some(key) = &record.key {
                out = out.key(key.as_slice());
            }
            match producer.send(out) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(self.kafka_error("producing to", e)),
            }
        }
    }

    /// The epoch `marker` of transactional id `id` says was committed last, if any:
    /// the later of the transactional marker and its direct copy (either is only ever
    /// set to an epoch whose transaction has committed).
    fn committed_marker(&self, id: &str, marker: &Marker) -> Result<Option<u64>> {
        let read = |consumer: &BaseConsumer, group: &str| -> Result<Option<u64>> {
            let mut list = TopicPartitionList::new();
            list.add_partition(&self.config.topic, 0);
            let committed = consumer
                .committed_offsets(list, self.commit_timeout)
                .map_err(|e| {
                    self.kafka_error(
                        &format!(
                            "reading the commit marker of transactional id `{id}` (consumer group `{group}`) for"
                        ),
                        e,
                    )
                })?;
            Ok(committed.elements().first().and_then(|e| match e.offset() {
                Offset::Offset(n) if n >= 0 => Some(n as u64),
                _ => None,
            }))
        };
        let transactional = read(&marker.consumer, &marker.group)?;
        let direct = read(&marker.direct, &direct_group(&marker.group))?;
        Ok(transactional.max(direct))
    }

    /// Commits `epoch` as the direct copy of `marker`, once the epoch's transaction
    /// has committed. A conforming broker already shows the transactional marker;
    /// tansu acknowledges a commit but applies the transaction's offsets only once
    /// every other transaction that wrote to the same partitions before it has ended,
    /// and never if one of them stays open, so without this copy a restore would take
    /// a committed epoch for an uncommitted one and produce it again. A failure is
    /// logged, not an error: the epoch is committed.
    fn commit_direct_marker(&self, id: &str, marker: &Marker, epoch: u64) {
        let mut list = TopicPartitionList::new();
        if let Err(e) =
            list.add_partition_offset(&self.config.topic, 0, Offset::Offset(epoch as i64))
        {
            tracing::warn!(
                "the direct commit marker of epoch {epoch} of transactional id `{id}`: {e}"
            );
            return;
        }
        if let Err(e) = marker.direct.commit(&list, CommitMode::Sync) {
            tracing::warn!(
                "committing the direct copy of the commit marker of epoch {epoch} of transactional id `{id}` (consumer group `{}`) failed: {e}; a restore that finds the transactional marker missing too produces the epoch again",
                direct_group(&marker.group),
            );
        }
    }

    /// Produces `records` of `epoch` and its `marker` in one transaction of
    /// `transactions`.
    fn commit_epoch(
        &mut self,
        transactions: &Transactions,
        marker_of: &Marker,
        epoch: u64,
        records: &[KafkaOutRecord],
    ) -> Result<()> {
        let id = &transactions.transactional_id;
        let producer = &transactions.producer;
        let doing = |what: &str| format!("{what} (transactional id `{id}`, epoch {epoch}) of");
        producer
            .begin_transaction()
            .map_err(|e| self.kafka_error(&doing("beginning a transaction"), e))?;
        let result = (|| {
            let half = records.len() / 2;
            for (i, record) in records.iter().enumerate() {
                if i == half {
                    self.failpoint(KafkaSinkFailpoint::MidCommit);
                }
                self.send(producer, record)?;
            }
            let mut marker = TopicPartitionList::new();
            marker
                .add_partition_offset(&self.config.topic, 0, Offset::Offset(epoch as i64))
                .map_err(|e| self.kafka_error(&doing("adding the marker"), e))?;
            let group = marker_of.consumer.group_metadata().ok_or_else(|| {
                self.error(format!(
                    "no group metadata for marker group `{}`",
                    marker_of.group
                ))
            })?;
            producer
                .send_offsets_to_transaction(&marker, &group, self.commit_timeout)
                .map_err(|e| self.kafka_error(&doing("adding the marker"), e))?;
            self.failpoint(KafkaSinkFailpoint::BeforeCommit);
            tracing::debug!("committing epoch {epoch} of transactional id `{id}`");
            producer
                .commit_transaction(self.commit_timeout)
                .map_err(|e| self.kafka_error(&doing("committing a transaction"), e))
        })();
        match result {
            Ok(()) => {
                let metrics = &self.config.metrics;
                metrics
                    .transactions_committed
                    .fetch_add(1, Ordering::Relaxed);
                metrics
                    .records_out
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.commit_direct_marker(id, marker_of, epoch);
                tracing::debug!("committed epoch {epoch} of transactional id `{id}`");
                self.failpoint(KafkaSinkFailpoint::AfterCommit);
                Ok(())
            }
            Err(e) => {
                // Abort so the id is usable again; the job restarts from the last
                // checkpoint, which still holds the epoch.
                if producer.abort_transaction(self.commit_timeout).is_ok() {
                    self.config
                        .metrics
                        .transactions_aborted
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Commits the pending epochs of a previous subtask restored from a completed
    /// checkpoint under the transactional id and marker they were written with,
    /// skipping those the marker shows as committed. Under the subtask's own id they
    /// are committed by its producer (whatever their marker group: an earlier
    /// timeline's), since a second producer with that id would fence it.
    fn recover(&mut self, pending: PendingState<'_>) -> Result<()> {
        let own = self
            .transactions
            .as_ref()
            .is_some_and(|t| t.transactional_id == pending.transactional_id);
        let transactions = if own {
            self.transactions.take()
        } else {
            Some(self.open_transactions(
                pending.transactional_id.clone().into_owned(),
                pending.marker_group.clone().into_owned(),
            )?)
        };
        let Some(transactions) = transactions else {
            return Ok(());
        };
        let result = (|| {
            let written_under;
            let marker_of = if transactions.marker.group == pending.marker_group {
                &transactions.marker
            } else {
                written_under = self.open_marker(pending.marker_group.clone().into_owned())?;
                &written_under
            };
            let marker = self.committed_marker(&transactions.transactional_id, marker_of)?;
            tracing::info!(
                "recovering transactional id `{}`: pending epochs {:?}, marker of group `{}` at {marker:?}",
                transactions.transactional_id,
                pending.epochs.keys().collect::<Vec<_>>(),
                marker_of.group,
            );
            for (epoch, records) in pending.epochs.iter() {
                if marker.is_some_and(|m| m >= *epoch) {
                    self.config
                        .metrics
                        .epochs_skipped
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !records.is_empty() {
                    self.commit_epoch(&transactions, marker_of, *epoch, records)?;
                }
            }
            Ok(())
        })();
        if own {
            self.transactions = Some(transactions);
        }
        result
    }

    /// Flushes the non-transactional producer and reports the first failed delivery.
    fn flush(&self) -> Result<()> {
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        producer
            .flush(self.commit_timeout)
            .map_err(|e| self.kafka_error("flushing records to", e))?;
        let failure = producer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some(e) => Err(DataflowError::operator_caused(
                &self.subtask.operator,
                self.subtask.index,
                format!(
                    "records were not delivered to topic `{}` on brokers `{}`",
                    self.config.topic, self.config.bootstrap_servers
                ),
                e,
            )),
            None => Ok(()),
        }
    }
}

impl<T: Send + 'static> Sink for KafkaSink<T> {
    type In = T;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.prefix = self
            .config
            .transactional_id_prefix
            .clone()
            .unwrap_or_else(|| {
                format!("weir-{}-{}-{}", cx.job, self.subtask.uid, self.config.topic)
            });
        self.commit_timeout = cx.checkpoint_timeout.unwrap_or(Duration::from_secs(60));
        if self.config.guarantee != DeliveryGuarantee::ExactlyOnce {
            let producer = self.producer(None, true)?;
            self.check_topic(&producer)?;
            self.producer = Some(producer);
            return Ok(());
        }
        if !cx.checkpointing {
            return Err(self.error(format!(
                "the exactly-once Kafka sink to topic `{}` commits when checkpoints complete, and this job takes none: enable checkpointing or choose at_least_once",
                self.config.topic
            )));
        }
        if self.config.transaction_timeout < self.commit_timeout {
            return Err(self.error(format!(
                "transaction timeout {} ms of the Kafka sink to topic `{}` is shorter than the checkpoint timeout {} ms: an epoch's transaction may stay open that long, so the brokers would abort it (set KafkaSinkConfig::transaction_timeout to at least the checkpoint timeout)",
                self.config.transaction_timeout.as_millis(),
                self.config.topic,
                self.commit_timeout.as_millis()
            )));
        }
        let id = self.transactional_id(self.subtask.index);
        let transactions = self.open_transactions(id.clone(), marker_group(&id, cx.timeline))?;
        self.transactions = Some(transactions);
        // Epochs in a restored checkpoint belong to a completed checkpoint. Old
        // subtask i's are committed by new subtask i % parallelism under the id they
        // were written with.
        let restored = restored_pending(
            self.subtask.index,
            self.subtask.parallelism,
            &cx.restored_operator,
            &cx.restored_operator_all,
            |old| self.transactional_id(old),
        )?;
        for pending in restored {
            self.recover(pending)?;
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        let metrics = Arc::clone(&self.config.metrics);
        metrics
            .records_in
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut added = 0u64;
        for record in batch.drain(..) {
            let out = (self.serializer)(&record).map_err(|reason| {
                self.error(format!(
                    "a record for topic `{}` could not be serialised: {reason}",
                    self.config.topic
                ))
            })?;
            match &self.producer {
                Some(producer) => self.send(producer, &out)?,
                None => {
                    added += (out.value.as_ref().map_or(0, Vec::len)
                        + out.key.as_ref().map_or(0, Vec::len)) as u64;
                    self.current.push(out);
                }
            }
        }
        self.current_bytes += added;
        metrics
            .epoch_buffer_bytes
            .fetch_add(added, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        match self.config.guarantee {
            DeliveryGuarantee::ExactlyOnce => {
                if !self.current.is_empty() {
                    let epoch = cx.checkpoint.get();
                    self.pending
                        .insert(epoch, std::mem::take(&mut self.current));
                    self.pending_bytes
                        .insert(epoch, std::mem::take(&mut self.current_bytes));
                }
                let Some(transactions) = &self.transactions else {
                    return Err(self.error(
                        "the exactly-once Kafka sink was snapshotted before it was opened",
                    ));
                };
                let state = PendingState {
                    transactional_id: Cow::Borrowed(&transactions.transactional_id),
                    marker_group: Cow::Borrowed(&transactions.marker.group),
                    epochs: Cow::Borrowed(&self.pending),
                };
                cx.put_operator(PENDING, encode(PENDING, &state)?);
                Ok(())
            }
            DeliveryGuarantee::AtLeastOnce => self.flush(),
            DeliveryGuarantee::None => Ok(()),
        }
    }

    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let Some(transactions) = self.transactions.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > id.get() {
                break;
            }
            let (epoch, records) = entry.remove_entry();
            if let Err(e) = self.commit_epoch(&transactions, &transactions.marker, epoch, &records)
            {
                self.pending.insert(epoch, records);
                result = Err(e);
                break;
            }
            let bytes = self.pending_bytes.remove(&epoch).unwrap_or(0);
            self.config
                .metrics
                .epoch_buffer_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
        }
        self.transactions = Some(transactions);
        result
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }
}

impl<T> Drop for KafkaSink<T> {
    fn drop(&mut self) {
        // What this subtask still buffers leaves the gauge with it.
        let bytes = self.current_bytes + self.pending_bytes.values().sum::<u64>();
        self.config
            .metrics
            .epoch_buffer_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own `UtilsTest.testMurmur2` expects.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn default_partition_is_non_negative_and_in_range() {
        for key in 0..1000u32 {
            let p = default_partition(&key.to_be_bytes(), 7);
            assert!((0..7).contains(&p));
        }
    }

    fn epochs(epoch: u64, value: &str) -> Pending {
        BTreeMap::from([(
            epoch,
            vec![KafkaOutRecord {
                key: None,
                value: Some(value.as_bytes().to_vec()),
                timestamp: None,
            }],
        )])
    }

    fn state_with_ids(id: &str, pending: &Pending) -> BTreeMap<String, Vec<u8>> {
        let state = PendingState {
            transactional_id: Cow::Borrowed(id),
            marker_group: Cow::Borrowed(id),
            epochs: Cow::Borrowed(pending),
        };
        BTreeMap::from([(PENDING.to_string(), encode(PENDING, &state).unwrap())])
    }

    fn ids(states: &[PendingState<'_>]) -> Vec<(String, String, Vec<u64>)> {
        states
            .iter()
            .map(|s| {
                (
                    s.transactional_id.to_string(),
                    s.marker_group.to_string(),
                    s.epochs.keys().copied().collect(),
                )
            })
            .collect()
    }

    #[test]
    fn restored_epochs_keep_the_ids_they_were_written_with() {
        let now = |old: usize| format!("new-{old}");
        let own = state_with_ids("old-1", &epochs(7, "a"));
        let restored = restored_pending(1, 2, &own, &[], now).unwrap();
        assert_eq!(
            ids(&restored),
            [("old-1".into(), "old-1".into(), vec![7])],
            "the stored id, not the recomputed `new-1`"
        );
        assert_eq!(restored[0].epochs.as_ref(), &epochs(7, "a"));

        // Rescaled from 3 to 2: new subtask 0 recovers old 0 and 2, new 1 old 1.
        let all: Vec<_> = (0..3)
            .map(|i| state_with_ids(&format!("old-{i}"), &epochs(5, "b")))
            .collect();
        let empty = BTreeMap::new();
        let zero = restored_pending(0, 2, &empty, &all, now).unwrap();
        assert_eq!(
            ids(&zero),
            [
                ("old-0".into(), "old-0".into(), vec![5]),
                ("old-2".into(), "old-2".into(), vec![5])
            ]
        );
        let one = restored_pending(1, 2, &empty, &all, now).unwrap();
        assert_eq!(ids(&one), [("old-1".into(), "old-1".into(), vec![5])]);
        assert!(restored_pending(0, 1, &empty, &[], now).unwrap().is_empty());
    }

    #[test]
    fn a_state_written_without_ids_is_recovered_under_the_recomputed_ids() {
        let now = |old: usize| format!("new-{old}");
        let legacy = |pending: &Pending| {
            let old = values_only(pending);
            BTreeMap::from([(
                PENDING_WITHOUT_IDS.to_string(),
                encode(PENDING_WITHOUT_IDS, &old).unwrap(),
            )])
        };
        let restored = restored_pending(0, 1, &legacy(&epochs(3, "c")), &[], now).unwrap();
        assert_eq!(ids(&restored), [("new-0".into(), "new-0".into(), vec![3])]);
        let all = [legacy(&epochs(3, "c")), legacy(&epochs(4, "d"))];
        let restored = restored_pending(0, 1, &BTreeMap::new(), &all, now).unwrap();
        assert_eq!(
            ids(&restored),
            [
                ("new-0".into(), "new-0".into(), vec![3]),
                ("new-1".into(), "new-1".into(), vec![4])
            ]
        );
    }

    /// `pending`'s records as checkpoints before tombstones wrote them.
    fn values_only(pending: &Pending) -> BTreeMap<u64, Vec<(Option<Vec<u8>>, Vec<u8>)>> {
        pending
            .iter()
            .map(|(epoch, records)| {
                let records = records
                    .iter()
                    .map(|r| (r.key.clone(), r.value.clone().unwrap()))
                    .collect();
                (*epoch, records)
            })
            .collect()
    }

    /// A checkpoint written before tombstones (state `kafka-sink-pending-v2`, whose
    /// records always have a value) is recovered whole, with its ids.
    #[test]
    fn a_state_written_before_tombstones_is_recovered_with_its_ids() {
        let pending = epochs(9, "e");
        let old = (
            "old-0".to_string(),
            "old-0-group".to_string(),
            values_only(&pending),
        );
        let state = BTreeMap::from([(
            PENDING_WITHOUT_TOMBSTONES.to_string(),
            encode(PENDING_WITHOUT_TOMBSTONES, &old).unwrap(),
        )]);
        let restored = restored_pending(0, 1, &state, &[], |i| i.to_string()).unwrap();
        assert_eq!(
            ids(&restored),
            [("old-0".into(), "old-0-group".into(), vec![9])]
        );
        assert_eq!(restored[0].epochs.as_ref(), &pending);
    }

    #[test]
    fn a_corrupt_pending_state_is_an_error_naming_it() {
        let bad = BTreeMap::from([(PENDING.to_string(), vec![0xff, 0xff, 0xff])]);
        let err = restored_pending(0, 1, &bad, &[], |i| i.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains(PENDING), "{err}");
    }

    /// Each timeline commits its epochs under a marker group of its own, so an
    /// earlier run's marker is never compared with a later run's epochs; a job without
    /// a timeline keeps the group named after the id.
    #[test]
    fn marker_groups_are_per_timeline() {
        let id = "weir-job-uid-topic-0";
        assert_eq!(
            marker_group(id, 0x2a),
            "weir-job-uid-topic-0-000000000000002a"
        );
        assert_ne!(marker_group(id, 1), marker_group(id, 2));
        assert_ne!(marker_group(id, 1), marker_group("weir-job-uid-topic-1", 1));
        assert_eq!(marker_group(id, 0), id);
    }

    #[test]
    fn failpoints_parse() {
        assert_eq!(
            "before-commit".parse::<KafkaSinkFailpoint>(),
            Ok(KafkaSinkFailpoint::BeforeCommit)
        );
        assert!("later"
            .parse::<KafkaSinkFailpoint>()
            .unwrap_err()
            .contains("mid-commit"));
    }
}

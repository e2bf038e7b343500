//! [`KafkaSource`]: a Kafka topic read with exactly-once positions.
//!
//! ```text
//!  partitions of the topic ──(p % parallelism == subtask)──▶ subtask's BaseConsumer (assign, no group rebalance)
//!        │ poll: record ─▶ deserialise ─▶ KafkaRecord<T> (split = partition, for per-partition watermarks)
//!        │ snapshot: next offset per partition ─▶ operator state `kafka-offsets`
//!        │ restore: seek to the checkpointed offsets (any parallelism: offsets are per partition)
//!        └ checkpoint complete: offsets committed to the consumer group (for lag tools only)
//! ```
//!
//! weir assigns partitions itself: partition `p` belongs to subtask
//! `p % parallelism`. The consumer group is used only to publish progress; it never
//! decides what is read. Records are read `read_committed`, so aborted and pending
//! transactions of producers are skipped. librdkafka's prefetch queue is bounded
//! (`queued.max.messages.kbytes`, 16 MiB by default here): when the job is
//! backpressured the source stops polling and fetching stops once that queue is
//! full, so memory stays bounded. New partitions of the topic are discovered
//! periodically and read from their beginning. A `bounded` source instead ends once
//! it has read each of its partitions to the end it finds there.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Statistics};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_dataflow::state::{decode, encode};
use weir_dataflow::{
    CheckpointId, DataflowError, Gauge, OperatorContext, Result, SnapshotContext, Source,
    SourceOutput, SourcePoll, SubtaskInfo,
};

const OFFSETS: &str = "kafka-offsets";

/// Where a partition starts when no checkpoint holds an offset for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPosition {
    /// The oldest record still in the partition.
    #[default]
    Earliest,
    /// Only records written after the job started.
    Latest,
    /// The offset committed by the consumer group (earliest when there is none).
    GroupCommitted,
    /// The first record whose timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// Settings of a Kafka source.
#[derive(Clone, Debug)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// The topic to read.
    pub topic: String,
    /// The consumer group offsets are published to when checkpoints complete.
    pub group_id: String,
    /// Where partitions without a checkpointed offset start.
    pub start: StartPosition,
    /// How often to look for new partitions (`None`: never).
    pub discovery_interval: Option<Duration>,
    /// How long to wait for the brokers at start.
    pub connect_timeout: Duration,
    /// Further librdkafka consumer properties (they override weir's).
    pub properties: BTreeMap<String, String>,
    /// Consumer lag per partition, shared by the subtasks.
    pub metrics: Arc<KafkaSourceMetrics>,
    /// Bounded: each subtask ends once it has read every partition it owns up to the
    /// partition's end (last stable offset) as it finds it; no partition discovery.
    /// Unbounded (default): reads until cancelled.
    pub bounded: bool,
}

/// How far the source is behind each partition's end, readable while the job runs.
#[derive(Debug, Default)]
pub struct KafkaSourceMetrics {
    partitions: Mutex<BTreeMap<i32, PartitionProgress>>,
}

/// The source's place in one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The next offset the source reads.
    pub position: Option<i64>,
    /// The partition's end as last reported by the brokers (the last stable offset:
    /// records read_committed can see), refreshed every second.
    pub end: Option<i64>,
}

impl KafkaSourceMetrics {
    /// Progress per partition.
    pub fn partitions(&self) -> BTreeMap<i32, PartitionProgress> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Consumer lag per partition (records between the position and the end), for
    /// partitions whose position and end are both known.
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        self.partitions()
            .into_iter()
            .filter_map(|(p, progress)| Some((p, (progress.end? - progress.position?).max(0))))
            .collect()
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<i32, PartitionProgress>)) {
        f(&mut self.partitions.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Whether `subtask` reads `partition`: partitions are spread round-robin.
/// Where a partition that no checkpointed offset covers starts. The configured start
/// applies to the partitions a job finds when it first starts. A partition found
/// later is read from its beginning, so that none of its records is skipped: one
/// found while running, and one that the checkpoint a job resumes from does not know
/// (`found_later`), since it was created after that checkpoint.
fn start_of_uncovered(configured: &StartPosition, found_later: bool) -> &StartPosition {
    if found_later {
        &StartPosition::Earliest
    } else {
        configured
    }
}

fn owns(subtask: &SubtaskInfo, partition: i32) -> bool {
    partition.rem_euclid(subtask.parallelism.max(1) as i32) == subtask.index as i32
}

/// Feeds librdkafka's statistics (partition ends) into [`KafkaSourceMetrics`].
struct StatisticsContext {
    topic: String,
    metrics: Arc<KafkaSourceMetrics>,
}

impl ClientContext for StatisticsContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news for a bounded source, not an error.
        match error {
            KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!("librdkafka: {reason}")
            }
            error => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        self.metrics.update(|partitions| {
            for (&id, partition) in &topic.partitions {
                let end = if partition.ls_offset >= 0 {
                    partition.ls_offset
                } else {
                    partition.hi_offset
                };
                if id >= 0 && end >= 0 {
                    partitions.entry(id).or_default().end = Some(end);
                }
            }
        });
    }
}

impl ConsumerContext for StatisticsContext {}

type KafkaConsumer = BaseConsumer<StatisticsContext>;

impl KafkaSourceConfig {
    /// Reads `topic` from `bootstrap_servers`, publishing progress as `group_id`.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        topic: impl Into<String>,
        group_id: impl Into<String>,
    ) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            group_id: group_id.into(),
            start: StartPosition::default(),
            discovery_interval: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
            metrics: Arc::default(),
            bounded: false,
        }
    }
}

/// One record read from Kafka.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KafkaRecord<T> {
    /// The partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp (create or log-append time), ms since the epoch.
    pub timestamp: Option<i64>,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The deserialised value.
    pub value: T,
}

/// Turns a record's value bytes into a `T`; the error text says what was expected.
pub type Deserializer<T> =
    Arc<dyn Fn(Option<&[u8]>) -> std::result::Result<T, String> + Send + Sync>;

/// Values as raw bytes (an absent value is empty).
pub fn bytes() -> Deserializer<Vec<u8>> {
    Arc::new(|value| Ok(value.unwrap_or_default().to_vec()))
}

/// Values as UTF-8 text.
pub fn utf8() -> Deserializer<String> {
    Arc::new(|value| {
        std::str::from_utf8(value.unwrap_or_default())
            .map(str::to_owned)
            .map_err(|e| format!("expected UTF-8 text: {e}"))
    })
}

/// What a [`RecordDeserializer`] reads of a record.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// The key, if the record has one.
    pub key: Option<&'a [u8]>,
    /// The value; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// The record's timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
}

/// Turns a whole record (key, value and timestamp) into a `T`; the error text says
/// what was expected.
pub type RecordDeserializer<T> =
    Arc<dyn Fn(RecordView<'_>) -> std::result::Result<T, String> + Send + Sync>;

/// The records of a compacted topic as changes of a table, values as JSON
/// documents of type `T`: `Some(value)` is the latest value of the record's key
/// (kept in [`KafkaRecord::key`]), `None` a tombstone (a record without a value),
/// which deletes the key. This is how Kafka Streams reads a KTable and Flink an
/// `upsert-kafka` table.
pub fn upsert_json<T: serde::de::DeserializeOwned + 'static>() -> Deserializer<Option<T>> {
    let json = json::<T>();
    Arc::new(move |value| value.map(|bytes| json(Some(bytes))).transpose())
}

/// Values as JSON documents of type `T`.
pub fn json<T: serde::de::DeserializeOwned + 'static>() -> Deserializer<T> {
    Arc::new(|value| {
        serde_json::from_slice(value.unwrap_or_default()).map_err(|e| {
            format!(
                "expected a JSON {}: {e}",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("value")
            )
        })
    })
}

/// A Kafka topic as a source; see the module documentation.
pub struct KafkaSource<T> {
    config: KafkaSourceConfig,
    deserializer: RecordDeserializer<T>,
    subtask: SubtaskInfo,
    consumer: Option<KafkaConsumer>,
    /// Next offset to read, per owned partition (known once a record was read or a
    /// checkpoint restored it).
    offsets: BTreeMap<i32, i64>,
    /// Partitions this subtask reads.
    owned: BTreeSet<i32>,
    announced: bool,
    last_discovery: Instant,
    /// Offsets captured per checkpoint, committed to the group when it completes.
    pending_commits: BTreeMap<CheckpointId, BTreeMap<i32, i64>>,
    /// Bounded source: partitions read to their end.
    at_end: BTreeSet<i32>,
}

impl<T: Send + 'static> KafkaSource<T> {
    /// A factory for [`weir_dataflow::JobBuilder::source`].
    pub fn factory(
        config: KafkaSourceConfig,
        deserializer: Deserializer<T>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        Self::factory_of_records(
            config,
            Arc::new(move |record: RecordView<'_>| deserializer(record.payload)),
        )
    }

    /// A factory whose deserializer reads each record whole: key, value and
    /// timestamp (e.g. a table's rows, whose key fields are in the record's key).
    pub fn factory_of_records(
        config: KafkaSourceConfig,
        deserializer: RecordDeserializer<T>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        move |info| Self {
            config: config.clone(),
            deserializer: deserializer.clone(),
            subtask: info.clone(),
            consumer: None,
            offsets: BTreeMap::new(),
            owned: BTreeSet::new(),
            announced: false,
            last_discovery: Instant::now(),
            pending_commits: BTreeMap::new(),
            at_end: BTreeSet::new(),
        }
    }

    fn error(&self, message: impl Into<String>) -> DataflowError {
        DataflowError::operator(&self.subtask.operator, self.subtask.index, message)
    }

    /// The client's error `e` while `doing` something to the topic, kept as the cause.
    fn kafka_error(&self, doing: &str, e: KafkaError) -> DataflowError {
        DataflowError::operator_caused(
            &self.subtask.operator,
            self.subtask.index,
            format!(
                "{doing} topic `{}` on brokers `{}`",
                self.config.topic, self.config.bootstrap_servers
            ),
            e,
        )
    }

    /// The topic's partitions, or an error naming the topic and the brokers.
    fn partitions(&self, consumer: &KafkaConsumer, timeout: Duration) -> Result<Vec<i32>> {
        let metadata = consumer
            .fetch_metadata(Some(&self.config.topic), timeout)
            .map_err(|e| {
                DataflowError::operator_caused(
                    &self.subtask.operator,
                    self.subtask.index,
                    format!(
                        "could not reach the Kafka brokers `{}` within {timeout:?} to read topic `{}`",
                        self.config.bootstrap_servers, self.config.topic
                    ),
                    e,
                )
            })?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.config.topic);
        match topic {
            Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => {
                Ok(topic.partitions().iter().map(|p| p.id()).collect())
            }
            _ => Err(self.error(format!(
                "topic `{}` does not exist on the Kafka brokers `{}` (expected an existing topic; weir does not create source topics)",
                self.config.topic, self.config.bootstrap_servers
            ))),
        }
    }

    fn owns(&self, partition: i32) -> bool {
        owns(&self.subtask, partition)
    }

    /// The offset each of `partitions` without a checkpointed offset starts at,
    /// resolved now to a concrete offset (so that a checkpoint taken before any of
    /// its records arrive still pins where it starts). Partitions `found_later` than
    /// the job's first start begin at their beginning ([`start_of_uncovered`]).
    fn resolve_start(
        &self,
        consumer: &KafkaConsumer,
        partitions: &[i32],
        found_later: bool,
    ) -> Result<BTreeMap<i32, i64>> {
        let timeout = self.config.connect_timeout;
        let topic = self.config.topic.as_str();
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.offsets.contains_key(p))
            .collect();
        let watermarks = |partition: i32| {
            consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| self.kafka_error("reading the offsets of", e))
        };
        let mut resolved = BTreeMap::new();
        let start = start_of_uncovered(&self.config.start, found_later);
        match start {
            StartPosition::Earliest => {
                for &partition in &missing {
                    resolved.insert(partition, watermarks(partition)?.0);
                }
            }
            StartPosition::Latest => {
                for &partition in &missing {
                    resolved.insert(partition, watermarks(partition)?.1);
                }
            }
            StartPosition::GroupCommitted | StartPosition::Timestamp(_) => {
                let mut list = TopicPartitionList::new();
                for &partition in &missing {
                    let offset = match start {
                        StartPosition::Timestamp(at) => Offset::Offset(*at),
                        _ => Offset::Invalid,
                    };
                    list.add_partition_offset(topic, partition, offset)
                        .map_err(|e| self.kafka_error("looking up offsets of", e))?;
                }
                let found = if list.count() == 0 {
                    Ok(TopicPartitionList::new())
                } else if matches!(start, StartPosition::Timestamp(_)) {
                    consumer.offsets_for_times(list, timeout)
                } else {
                    consumer.committed_offsets(list, timeout)
                }
                .map_err(|e| self.kafka_error("looking up offsets of", e))?;
                for element in found.elements() {
                    let partition = element.partition();
                    let offset = match element.offset() {
                        Offset::Offset(n) => n,
                        // No record at or after the time: start at the end; no
                        // committed offset: start at the beginning.
                        _ if matches!(start, StartPosition::Timestamp(_)) => {
                            watermarks(partition)?.1
                        }
                        _ => watermarks(partition)?.0,
                    };
                    resolved.insert(partition, offset);
                }
            }
        }
        Ok(resolved)
    }

    /// Assigns `partitions` (not yet owned) at their checkpointed offset, or where
    /// [`Self::resolve_start`] says.
    fn assign(&mut self, partitions: &[i32], found_later: bool) -> Result<()> {
        let Some(consumer) = self.consumer.as_ref() else {
            return Ok(());
        };
        let resolved = self.resolve_start(consumer, partitions, found_later)?;
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            let next = self
                .offsets
                .get(&partition)
                .or_else(|| resolved.get(&partition))
                .copied();
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            list.add_partition_offset(&self.config.topic, partition, offset)
                .map_err(|e| self.kafka_error("assigning a partition of", e))?;
        }
        consumer
            .incremental_assign(&list)
            .map_err(|e| self.kafka_error("assigning partitions of", e))?;
        self.offsets.extend(resolved);
        self.owned.extend(partitions.iter().copied());
        self.announced = false;
        self.publish_positions();
        Ok(())
    }

    /// Copies the positions of the owned partitions into the metrics.
    fn publish_positions(&self) {
        self.config.metrics.update(|partitions| {
            for (&partition, &next) in &self.offsets {
                partitions.entry(partition).or_default().position = Some(next);
            }
        });
    }

    fn discover(&mut self) -> Result<()> {
        let Some(consumer) = self.consumer.as_ref() else {
            return Ok(());
        };
        match self.partitions(consumer, Duration::from_secs(1)) {
            Ok(all) => {
                let new: Vec<i32> = all
                    .into_iter()
                    .filter(|p| self.owns(*p) && !self.owned.contains(p))
                    .collect();
                if !new.is_empty() {
                    tracing::info!(
                        "topic `{}`: reading new partitions {new:?}",
                        self.config.topic
                    );
                    self.assign(&new, true)?;
                }
            }
            // The brokers may be briefly away; the next discovery tries again.
            Err(e) => tracing::debug!("partition discovery failed: {e}"),
        }
        Ok(())
    }
}

impl<T: Send + 'static> Source for KafkaSource<T> {
    type Out = KafkaRecord<T>;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        // Offsets are per partition, so any old subtask's offsets may be ours now.
        let restored = std::iter::once(&cx.restored_operator)
            .chain(cx.restored_operator_all.iter())
            .filter_map(|state| state.get(OFFSETS));
        // Restored from a checkpoint: a partition it has no offset for is new since.
        let mut resumed = false;
        for bytes in restored {
            resumed = true;
            let offsets: BTreeMap<i32, i64> = decode(OFFSETS, bytes)?;
            for (partition, next) in offsets {
                if self.owns(partition) {
                    self.offsets.insert(partition, next);
                }
            }
        }
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            .set("isolation.level", "read_committed")
            .set("queued.max.messages.kbytes", "16384")
            .set("statistics.interval.ms", "1000")
            .set("enable.partition.eof", self.config.bounded.to_string())
            .set("auto.offset.reset", "earliest");
        for (key, value) in &self.config.properties {
            client.set(key, value);
        }
        let context = StatisticsContext {
            topic: self.config.topic.clone(),
            metrics: Arc::clone(&self.config.metrics),
        };
        let consumer: KafkaConsumer = client
            .create_with_context(context)
            .map_err(|e| self.kafka_error("creating a consumer for", e))?;
        let partitions: Vec<i32> = self
            .partitions(&consumer, self.config.connect_timeout)?
            .into_iter()
            .filter(|p| self.owns(*p))
            .collect();
        self.consumer = Some(consumer);
        self.assign(&partitions, resumed)?;
        self.last_discovery = Instant::now();
        // Lag of the partitions this subtask owns, for `/metrics` and the web UI.
        let (metrics, topic) = (Arc::clone(&self.config.metrics), self.config.topic.clone());
        let subtask = self.subtask.clone();
        cx.metrics.register_gauges(move || {
            metrics
                .lag()
                .into_iter()
                .filter(|(p, _)| owns(&subtask, *p))
                .map(|(p, lag)| {
                    Gauge::new("kafka_consumer_lag", lag as f64)
                        .label("topic", topic.clone())
                        .label("partition", p.to_string())
                })
                .collect()
        });
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<KafkaRecord<T>>) -> Result<SourcePoll> {
        if !self.announced {
            for &partition in &self.owned {
                out.announce_split(partition as u32);
            }
            self.announced = true;
        }
        if self.config.bounded && self.at_end.len() == self.owned.len() {
            return Ok(SourcePoll::Finished);
        }
        if let Some(interval) = self
            .config
            .discovery_interval
            .filter(|_| !self.config.bounded)
        {
            if self.last_discovery.elapsed() >= interval {
                self.last_discovery = Instant::now();
                self.discover()?;
            }
        }
        let Some(consumer) = self.consumer.as_ref() else {
            return Ok(SourcePoll::Idle(Duration::from_millis(10)));
        };
        // The partition of the current run of records and its next offset, recorded
        // in `offsets` when the run ends (not per record).
        let mut current: Option<(i32, i64)> = None;
        while out.len() < out.batch_size() {
            let message = match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => message,
                // Reaching a partition's end (only reported when bounded): the end
                // only grows, so everything up to the end found at start is read.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.at_end.insert(partition);
                    continue;
                }
                Some(Err(e)) => {
                    // librdkafka retries transport errors itself; anything it reports
                    // here is logged, and only a fatal error stops the job.
                    if let KafkaError::MessageConsumptionFatal(_) = e {
                        return Err(self.kafka_error("reading", e));
                    }
                    tracing::warn!("reading topic `{}`: {e}", self.config.topic);
                    break;
                }
            };
            let partition = message.partition();
            let view = RecordView {
                key: message.key(),
                payload: message.payload(),
                timestamp: message.timestamp().to_millis(),
            };
            let value = (self.deserializer)(view).map_err(|reason| {
                self.error(format!(
                    "record at offset {} of partition {partition} of topic `{}`: {reason}",
                    message.offset(),
                    self.config.topic
                ))
            })?;
            match &mut current {
                Some((run, next)) if *run == partition => *next = message.offset() + 1,
                _ => {
                    if let Some((run, next)) = current {
                        self.offsets.insert(run, next);
                    }
                    out.switch_split(partition as u32);
                    current = Some((partition, message.offset() + 1));
                }
            }
            out.push(KafkaRecord {
                partition,
                offset: message.offset(),
                timestamp: view.timestamp,
                key: view.key.map(<[u8]>::to_vec),
                value,
            });
        }
        if let Some((run, next)) = current {
            self.offsets.insert(run, next);
        }
        if !out.is_empty() {
            self.publish_positions();
        }
        Ok(if out.is_empty() {
            SourcePoll::Idle(Duration::from_millis(5))
        } else {
            SourcePoll::Ready
        })
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(OFFSETS, encode(OFFSETS, &self.offsets)?);
        self.pending_commits
            .insert(cx.checkpoint, self.offsets.clone());
        Ok(())
    }

    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let Some(offsets) = self.pending_commits.remove(&id) else {
            return Ok(());
        };
        self.pending_commits.retain(|pending, _| *pending > id);
        let (Some(consumer), false) = (self.consumer.as_ref(), offsets.is_empty()) else {
            return Ok(());
        };
        let mut list = TopicPartitionList::new();
        for (partition, next) in offsets {
            if list
                .add_partition_offset(&self.config.topic, partition, Offset::Offset(next))
                .is_err()
            {
                return Ok(());
            }
        }
        // Progress for lag tools only: a failed commit is not an error of the job.
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::debug!("committing offsets of topic `{}`: {e}", self.config.topic);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition created after the checkpoint a job resumes from is read from its
    /// beginning whatever the configured start; with `latest` its records written
    /// before the resume were skipped.
    #[test]
    fn partitions_found_after_the_first_start_begin_at_the_earliest_offset() {
        for configured in [
            StartPosition::Earliest,
            StartPosition::Latest,
            StartPosition::GroupCommitted,
            StartPosition::Timestamp(1_700_000_000_000),
        ] {
            assert_eq!(start_of_uncovered(&configured, false), &configured);
            assert_eq!(
                start_of_uncovered(&configured, true),
                &StartPosition::Earliest,
                "{configured:?}"
            );
        }
    }
}

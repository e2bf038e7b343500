//! The read_committed view of a Kafka topic, computed from its raw log.
//!
//! Some brokers (tansu, the test broker) write correct commit and abort markers but
//! answer a read_committed fetch with an empty list of aborted transactions, so a
//! librdkafka read_committed consumer still sees the records of aborted transactions.
//! The exactly-once checks (`weir verify`, the tests) therefore read the log themselves,
//! which gives the same view on every broker:
//!
//! ```text
//! Metadata ──▶ partitions, leaders
//! ListOffsets ──▶ log start, high watermark per partition
//! Fetch (read_uncommitted) ──▶ record batches, control batches included
//!        │
//!        ▼
//! apply_markers (pure): per producer, a transactional record is visible iff the
//! producer's next marker in that partition is COMMIT
//! ```
//!
//! [`committed_view`] does the I/O (plain blocking TCP, one connection per leader);
//! [`apply_markers`] is the decision, testable without a broker.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! # let bootstrap = "127.0.0.1:9092";
//! let view = weir_sinks::kafka_log::committed_view(bootstrap, "out")?;
//! assert_eq!(view.pending(), 0);
//! let values: Vec<String> = view.values_utf8();
//! # Ok(())
//! # }
//! ```

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    fetch_request, ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest,
    FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
pub use kafka_protocol::records::Record;
use kafka_protocol::records::RecordBatchDecoder;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

/// ApiVersions v0: the versions the broker supports, checked before anything else.
pub const API_VERSIONS_VERSION: i16 = 0;
/// Metadata v4: the first with `allow_auto_topic_creation` (set to false, so reading a
/// missing topic is an error instead of creating it).
pub const METADATA_VERSION: i16 = 4;
/// ListOffsets v2: the first with an isolation level (0: the latest offset is the
/// high watermark, not the last stable offset).
pub const LIST_OFFSETS_VERSION: i16 = 2;
/// Fetch v4: the first with an isolation level and record batches (magic v2) as
/// written, transactional and control batches included.
pub const FETCH_VERSION: i16 = 4;

/// Isolation level READ_UNCOMMITTED: every record and every control batch comes back.
const READ_UNCOMMITTED: i8 = 0;
/// ListOffsets timestamps that mean "earliest" and "latest".
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// A consumer's replica id in ListOffsets and Fetch.
const CONSUMER: i32 = -1;
/// Bytes asked for per fetch at first; doubled (up to the limit) when a response holds
/// no complete batch, i.e. a batch is larger than what was asked for.
const FETCH_BYTES: i32 = 1 << 20;
const FETCH_BYTES_LIMIT: i32 = 64 << 20;
/// How long a fetch at the end of the log waits for records (the last fetch of each
/// partition finds none).
const FETCH_WAIT_MS: i32 = 100;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_ID: &str = "weir-kafka-log";

/// The control record type of an ABORT marker (the second int16 of a control
/// record's key, see [`control_type`]).
pub const ABORT: i16 = 0;
/// The control record type of a COMMIT marker.
pub const COMMIT: i16 = 1;

/// A record a read_committed consumer must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRecord {
    /// The partition it is in.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its key, if it has one.
    pub key: Option<Vec<u8>>,
    /// Its value, if it has one.
    pub value: Option<Vec<u8>>,
    /// Its timestamp (creation or log-append time, as the topic is configured).
    pub timestamp: i64,
    /// The producer id that wrote it (-1 for a producer that is neither idempotent nor
    /// transactional).
    pub producer_id: i64,
}

/// The read_committed view of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The partition.
    pub partition: i32,
    /// The offsets read: from the log start offset to the end of the log.
    pub offsets: Range<i64>,
    /// The visible records, in offset order: non-transactional records and records
    /// of committed transactions.
    pub records: Vec<CommittedRecord>,
    /// Records dropped because their transaction was aborted.
    pub aborted: usize,
    /// Transactional records with no marker yet (their transaction is open); not visible.
    pub pending: usize,
    /// COMMIT markers seen.
    pub commit_markers: usize,
    /// ABORT markers seen.
    pub abort_markers: usize,
}

/// The read_committed view of a topic, computed from its raw log by
/// [`committed_view`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedView {
    /// The topic.
    pub topic: String,
    /// One view per partition, by partition number.
    pub partitions: Vec<PartitionView>,
}

impl CommittedView {
    /// The visible records of every partition, partition by partition, each in
    /// offset order.
    pub fn records(&self) -> impl Iterator<Item = &CommittedRecord> {
        self.partitions.iter().flat_map(|p| p.records.iter())
    }

    /// The values of the visible records as UTF-8 (lossily; a missing value is
    /// empty), in the order of [`CommittedView::records`].
    pub fn values_utf8(&self) -> Vec<String> {
        self.records()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    /// Records of aborted transactions, in all partitions.
    pub fn aborted(&self) -> usize {
        self.partitions.iter().map(|p| p.aborted).sum()
    }

    /// Records of transactions still open, in all partitions.
    pub fn pending(&self) -> usize {
        self.partitions.iter().map(|p| p.pending).sum()
    }
}

/// Reads every partition of `topic` from its log start offset to the end of its log
/// (read_uncommitted, control batches included; at least to the high watermark, see
/// `Connection::read_log`) and applies each producer's commit and abort markers, as
/// [`apply_markers`] describes. Meant for a topic nobody writes to any more: records
/// written while it reads may or may not be included.
///
/// `bootstrap` is `host:port` (or a comma-separated list; the first that answers is
/// used). Errors, as messages naming the broker, topic and partition: no bootstrap
/// broker reachable, a broker that lacks a request version this uses, a missing
/// topic, an error code for a partition, a partition without a leader, a corrupt or
/// unsupported (compressed other than gzip, or pre-v2) record batch.
pub fn committed_view(bootstrap: &str, topic: &str) -> Result<CommittedView, String> {
    let partitions = raw_log(bootstrap, topic)?
        .into_iter()
        .map(|raw| {
            apply_markers(raw.partition, raw.offsets, raw.records)
                .map_err(|e| format!("topic {topic} partition {}: {e}", raw.partition))
        })
        .collect::<Result<_, _>>()?;
    Ok(CommittedView {
        topic: topic.to_owned(),
        partitions,
    })
}

/// The raw log of one partition, as a read_uncommitted fetch returns it.
#[derive(Debug, Clone)]
pub struct RawPartition {
    /// The partition.
    pub partition: i32,
    /// The offsets read: from the log start offset to the end of the log.
    pub offsets: Range<i64>,
    /// Every record in offset order, control records included, with its producer id
    /// and epoch.
    pub records: Vec<Record>,
}

/// Reads every partition of `topic` from its log start offset to the end of its log
/// (read_uncommitted, control batches included), without applying any marker: what
/// [`committed_view`] decides from, and what `weir testing kafka-log` prints when an
/// exactly-once check needs explaining. Errors as [`committed_view`]'s.
pub fn raw_log(bootstrap: &str, topic: &str) -> Result<Vec<RawPartition>, String> {
    let mut bootstrap_connection = Connection::open_any(bootstrap)?;
    bootstrap_connection.check_versions()?;
    let (leaders, brokers) = bootstrap_connection.partition_leaders(topic)?;
    let mut connections: HashMap<i32, Connection> = HashMap::new();
    let mut partitions = Vec::with_capacity(leaders.len());
    for (partition, leader) in leaders {
        let address = brokers.get(&leader).ok_or_else(|| {
            format!("topic {topic} partition {partition}: leader {leader} is not among the brokers {brokers:?}")
        })?;
        let connection = match connections.entry(leader) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Connection::open(address)?),
        };
        let high_watermark = connection.list_offset(topic, partition, LATEST)?;
        // tansu's ListOffsets "earliest" can answer past the first record (98 for a
        // log that starts at 0), so reading starts at offset 0 unless the broker says
        // it is out of range (error code 1: the log start moved on).
        let (start, (records, end)) = match connection.read_log(topic, partition, 0, high_watermark)
        {
            Ok(read) => (0, read),
            Err(e) if e.contains("(error code 1)") => {
                let start = connection.list_offset(topic, partition, EARLIEST)?;
                (
                    start,
                    connection.read_log(topic, partition, start, high_watermark)?,
                )
            }
            Err(e) => return Err(e),
        };
        partitions.push(RawPartition {
            partition,
            offsets: start..end,
            records,
        });
    }
    Ok(partitions)
}

/// Applies each producer's markers to the raw `log` of one partition (its records in
/// offset order, control records included, as a read_uncommitted fetch returns them):
///
/// - a non-transactional record is visible;
/// - a transactional record waits for its producer's next control marker in this
///   partition: on COMMIT it becomes visible, on ABORT it is dropped (counted in
///   `aborted`); with no marker yet it is `pending` (not visible);
/// - control records themselves are never visible; control types other than ABORT
///   and COMMIT (e.g. leader changes) are skipped.
///
/// Markers are matched by producer id alone, as a broker does: a marker written with a
/// bumped epoch (a fenced producer's transaction aborted by the coordinator) still
/// ends that producer's transaction. Errors: a control record whose key is not
/// `version: int16, type: int16`.
pub fn apply_markers(
    partition: i32,
    offsets: Range<i64>,
    log: impl IntoIterator<Item = Record>,
) -> Result<PartitionView, String> {
    let mut view = PartitionView {
        partition,
        offsets,
        records: Vec::new(),
        aborted: 0,
        pending: 0,
        commit_markers: 0,
        abort_markers: 0,
    };
    let mut open: BTreeMap<i64, Vec<Record>> = BTreeMap::new();
    for record in log {
        if record.control {
            let kind = control_type(&record)?;
            let records = open.remove(&record.producer_id).unwrap_or_default();
            match kind {
                COMMIT => {
                    view.commit_markers += 1;
                    view.records
                        .extend(records.into_iter().map(|r| committed(partition, r)));
                }
                ABORT => {
                    view.abort_markers += 1;
                    view.aborted += records.len();
                }
                _ => {
                    // Not a transaction marker: the producer's transaction goes on.
                    if !records.is_empty() {
                        open.insert(record.producer_id, records);
                    }
                }
            }
        } else if record.transactional {
            open.entry(record.producer_id).or_default().push(record);
        } else {
            view.records.push(committed(partition, record));
        }
    }
    view.pending = open.values().map(Vec::len).sum();
    view.records.sort_by_key(|r| r.offset);
    Ok(view)
}

/// The type of a control record: its key is `version: int16, type: int16`.
///
/// # Errors
/// A key that is not `version: int16, type: int16`, naming the record's offset.
pub fn control_type(record: &Record) -> Result<i16, String> {
    match record.key.as_deref() {
        Some([_, _, high, low, ..]) => Ok(i16::from_be_bytes([*high, *low])),
        key => Err(format!(
            "control record at offset {} has key {key:?}, expected version and type (4 bytes)",
            record.offset
        )),
    }
}

fn committed(partition: i32, record: Record) -> CommittedRecord {
    CommittedRecord {
        partition,
        offset: record.offset,
        key: record.key.map(|k| k.to_vec()),
        value: record.value.map(|v| v.to_vec()),
        timestamp: record.timestamp,
        producer_id: record.producer_id,
    }
}

/// Splits a fetched `records` field into complete record batches and decodes them,
/// keeping the records from offset `from` on (a fetch may start with the batch that
/// holds the fetch offset). Returns the records and the offset after the last
/// complete batch (`from` if there is none: a size-limited response can end with a
/// partial batch).
fn decode_batches(mut raw: Bytes, from: i64) -> Result<(Vec<Record>, i64), String> {
    // Batch header: base offset (8), length (4), leader epoch (4), magic (1), crc (4),
    // attributes (2), last offset delta (4) at byte 23.
    const LENGTH_END: usize = 12;
    const HEADER_END: usize = 27;
    let mut records = Vec::new();
    let mut next = from;
    while raw.len() >= LENGTH_END {
        let base = i64::from_be_bytes(raw[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
        let size = usize::try_from(length)
            .map_err(|_| format!("record batch at offset {base} has length {length}"))?
            + LENGTH_END;
        if raw.len() < size {
            break;
        }
        if size < HEADER_END {
            return Err(format!(
                "record batch at offset {base} is {size} bytes, shorter than a v2 header"
            ));
        }
        let magic = raw[16];
        if magic != 2 {
            return Err(format!(
                "record batch at offset {base} has message format v{magic}; only v2 is supported"
            ));
        }
        let last_delta = i32::from_be_bytes(raw[23..27].try_into().expect("4 bytes"));
        let mut batch = raw.split_to(size);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("record batch at offset {base}: {e}"))?;
        records.extend(set.records.into_iter().filter(|r| r.offset >= from));
        next = next.max(base + i64::from(last_delta) + 1);
    }
    Ok((records, next))
}

/// A response's error code as an error, e.g. "UnknownTopicOrPartition (error code 3)";
/// `None` for 0 (no error).
fn error_name(code: i16) -> Option<String> {
    ResponseError::try_from_code(code).map(|e| format!("{e} (error code {code})"))
}

/// A request this module sends, with its response. (The crate's own `Request` trait
/// needs its `broker` feature, which would also compile every request decoder and
/// response encoder.)
trait ClientRequest: Encodable + HeaderVersion {
    const KEY: ApiKey;
    type Response: Decodable + HeaderVersion;
}

impl ClientRequest for ApiVersionsRequest {
    const KEY: ApiKey = ApiKey::ApiVersions;
    type Response = ApiVersionsResponse;
}

impl ClientRequest for MetadataRequest {
    const KEY: ApiKey = ApiKey::Metadata;
    type Response = MetadataResponse;
}

impl ClientRequest for ListOffsetsRequest {
    const KEY: ApiKey = ApiKey::ListOffsets;
    type Response = ListOffsetsResponse;
}

impl ClientRequest for FetchRequest {
    const KEY: ApiKey = ApiKey::Fetch;
    type Response = FetchResponse;
}

/// A blocking connection to one broker: size-prefixed requests and responses.
struct Connection {
    address: String,
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    /// The first of a comma-separated list of `host:port` that accepts a connection.
    fn open_any(bootstrap: &str) -> Result<Self, String> {
        let mut errors = Vec::new();
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Self::open(address) {
                Ok(connection) => return Ok(connection),
                Err(e) => errors.push(e),
            }
        }
        Err(format!(
            "no bootstrap broker of {bootstrap:?} could be reached: {}",
            errors.join("; ")
        ))
    }

    fn open(address: &str) -> Result<Self, String> {
        let addrs = address
            .to_socket_addrs()
            .map_err(|e| format!("broker {address}: cannot resolve: {e}"))?;
        let mut last = format!("broker {address}: no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let setup = |s: &TcpStream| -> std::io::Result<()> {
                        s.set_read_timeout(Some(IO_TIMEOUT))?;
                        s.set_write_timeout(Some(IO_TIMEOUT))?;
                        s.set_nodelay(true)
                    };
                    setup(&stream).map_err(|e| format!("broker {address}: {e}"))?;
                    return Ok(Self {
                        address: address.to_owned(),
                        stream,
                        correlation_id: 0,
                    });
                }
                Err(e) => last = format!("broker {address}: cannot connect: {e}"),
            }
        }
        Err(last)
    }

    /// Sends one request and reads its response.
    fn send<R: ClientRequest>(&mut self, request: &R, version: i16) -> Result<R::Response, String> {
        let api = R::KEY;
        let context =
            |e: &dyn std::fmt::Display| format!("broker {}: {api:?} v{version}: {e}", self.address);
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| context(&e))?;
        let size = i32::try_from(body.len()).map_err(|e| context(&e))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).map_err(|e| context(&e))?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(|e| context(&e))?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size).map_err(|_| context(&format!("response size {size}")))?;
        let mut response = vec![0u8; size];
        self.stream
            .read_exact(&mut response)
            .map_err(|e| context(&e))?;
        let mut response = Bytes::from(response);
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(|e| context(&e))?;
        if header.correlation_id != self.correlation_id {
            return Err(context(&format!(
                "response to request {} arrived for request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut response, version).map_err(|e| context(&e))
    }

    /// Checks that the broker supports the request versions this module uses.
    fn check_versions(&mut self) -> Result<(), String> {
        let response = self.send(&ApiVersionsRequest::default(), API_VERSIONS_VERSION)?;
        if let Some(error) = error_name(response.error_code) {
            return Err(format!("broker {}: ApiVersions: {error}", self.address));
        }
        for (key, version) in [
            (ApiKey::Metadata, METADATA_VERSION),
            (ApiKey::ListOffsets, LIST_OFFSETS_VERSION),
            (ApiKey::Fetch, FETCH_VERSION),
        ] {
            let supported = response
                .api_keys
                .iter()
                .find(|a| a.api_key == key as i16)
                .map(|a| a.min_version..=a.max_version);
            if !supported.as_ref().is_some_and(|r| r.contains(&version)) {
                return Err(format!(
                    "broker {}: {key:?} v{version} is needed, the broker supports {supported:?}",
                    self.address
                ));
            }
        }
        Ok(())
    }

    /// The partitions of `topic` with their leaders, and the brokers' addresses.
    fn partition_leaders(
        &mut self,
        topic: &str,
    ) -> Result<(BTreeMap<i32, i32>, BTreeMap<i32, String>), String> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_owned())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let response = self.send(&request, METADATA_VERSION)?;
        let brokers: BTreeMap<i32, String> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let found = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
            .ok_or_else(|| {
                format!(
                    "topic {topic}: not in the metadata of broker {}",
                    self.address
                )
            })?;
        if let Some(error) = error_name(found.error_code) {
            return Err(format!("topic {topic}: metadata: {error}"));
        }
        if found.partitions.is_empty() {
            return Err(format!("topic {topic}: the metadata lists no partitions"));
        }
        let mut leaders = BTreeMap::new();
        for p in &found.partitions {
            if let Some(error) = error_name(p.error_code) {
                return Err(format!(
                    "topic {topic} partition {}: metadata: {error}",
                    p.partition_index
                ));
            }
            if p.leader_id.0 < 0 {
                return Err(format!(
                    "topic {topic} partition {}: no leader",
                    p.partition_index
                ));
            }
            leaders.insert(p.partition_index, p.leader_id.0);
        }
        Ok((leaders, brokers))
    }

    /// The earliest (`EARLIEST`) or latest (`LATEST`: the high watermark) offset.
    fn list_offset(&mut self, topic: &str, partition: i32, at: i64) -> Result<i64, String> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(CONSUMER))
            .with_isolation_level(READ_UNCOMMITTED)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(at)])]);
        let response = self.send(&request, LIST_OFFSETS_VERSION)?;
        let which = if at == EARLIEST { "earliest" } else { "latest" };
        let found = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                format!("topic {topic} partition {partition}: ListOffsets ({which}) has no answer for it")
            })?;
        if let Some(error) = error_name(found.error_code) {
            return Err(format!(
                "topic {topic} partition {partition}: ListOffsets ({which}): {error}"
            ));
        }
        Ok(found.offset)
    }

    /// Every record (control records included) from offset `start` to the end of the
    /// log, in offset order, and the offset after the last one.
    ///
    /// The end of the log is where a fetch at or past the `high_watermark` (from
    /// ListOffsets, raised by the fetch responses) returns no batch. Reading does not
    /// stop at the high watermark itself because tansu reports the base offset of the
    /// last batch plus one, so the rest of that batch lies beyond it.
    fn read_log(
        &mut self,
        topic: &str,
        partition: i32,
        start: i64,
        mut high_watermark: i64,
    ) -> Result<(Vec<Record>, i64), String> {
        let mut records = Vec::new();
        let mut offset = start;
        let mut max_bytes = FETCH_BYTES;
        loop {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(CONSUMER))
                .with_max_wait_ms(FETCH_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(max_bytes)
                .with_isolation_level(READ_UNCOMMITTED)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(max_bytes)])]);
            let response = self.send(&request, FETCH_VERSION)?;
            let where_ = format!("topic {topic} partition {partition} at offset {offset}");
            if let Some(error) = error_name(response.error_code) {
                return Err(format!("{where_}: Fetch: {error}"));
            }
            // A response without the partition (tansu's answer when nothing arrived
            // within max_wait_ms) holds no records.
            let raw = match response
                .responses
                .into_iter()
                .filter(|t| t.topic.0.as_str() == topic)
                .flat_map(|t| t.partitions)
                .find(|p| p.partition_index == partition)
            {
                Some(data) => {
                    if let Some(error) = error_name(data.error_code) {
                        return Err(format!("{where_}: Fetch: {error}"));
                    }
                    high_watermark = high_watermark.max(data.high_watermark);
                    data.records.unwrap_or_default()
                }
                None => Bytes::new(),
            };
            let (batch, next) = decode_batches(raw, offset)
                .map_err(|e| format!("topic {topic} partition {partition}: {e}"))?;
            records.extend(batch);
            if next > offset {
                offset = next;
                max_bytes = FETCH_BYTES;
            } else if offset >= high_watermark {
                return Ok((records, offset));
            } else if max_bytes < FETCH_BYTES_LIMIT {
                max_bytes *= 2;
            } else {
                return Err(format!(
                    "{where_}: no complete record batch in {max_bytes} bytes, below the high watermark {high_watermark}"
                ));
            }
        }
    }
}

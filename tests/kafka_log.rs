//! The test-side verifier `common::kafka_log`: the read_committed view of a topic,
//! computed from its raw log, agrees with what a transactional producer committed.
//!
//! Against the real broker (tansu, started by `tests/services.sh`), written by an
//! independent client (Python `confluent-kafka`): a transactional producer commits A,
//! aborts B, commits C and leaves D open, with records of a plain idempotent producer
//! in between; the view holds exactly A, C and the plain records, counts B as aborted
//! and D as pending. An ordinary librdkafka read_committed consumer is compared too:
//! on tansu it also sees B (the known broker gap, printed); on a conforming broker
//! (`WEIR_STRICT_KAFKA=1`) it must see exactly the view. The marker logic itself is
//! checked without a broker.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::kafka_log::{apply_markers, committed_view, CommittedRecord};
use common::kafka_services::{
    broker, python, strict_broker, CREATE_TOPIC, READ_COMMITTED_CONSUMER,
};
use kafka_protocol::records::{Record, TimestampType};
use std::collections::BTreeSet;

/// Writes, to a 2-partition topic, each name's records spread over both partitions:
/// P (plain, idempotent) 3; A committed: 4, P 2, 4; P 2; B aborted: 3, P 2, 3;
/// C committed: 4, P 2, 4; P 2; D: 5, flushed, then the process exits without
/// committing (D stays open: tansu has no transaction timeout, and the
/// transactional.id is this test's own). Nothing plain follows D's first record, so
/// a conforming read_committed consumer (stopping at D) sees all that is committed.
const PRODUCE_TRANSACTIONS: &str = r#"
import os, sys
from confluent_kafka import Producer
bootstrap, topic, transactional_id = sys.argv[1], sys.argv[2], sys.argv[3]
PARTITIONS = 2
plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
tx = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
tx.init_transactions(30)
plain_seq = 0

def send(producer, name, start, end):
    for i in range(start, end):
        value = f"{name}-{i}".encode()
        producer.produce(topic, key=value, value=value, partition=i % PARTITIONS)
    assert producer.flush(30) == 0, "records not delivered"

def send_plain(count):
    global plain_seq
    send(plain, "P", plain_seq, plain_seq + count)
    plain_seq += count

def transaction(name, first, second, end):
    tx.begin_transaction()
    send(tx, name, 0, first)
    send_plain(2)
    send(tx, name, first, first + second)
    end(30)

send_plain(3)
transaction("A", 4, 4, tx.commit_transaction)
send_plain(2)
transaction("B", 3, 3, tx.abort_transaction)
transaction("C", 4, 4, tx.commit_transaction)
send_plain(2)
tx.begin_transaction()
send(tx, "D", 0, 5)
# Abandon D: no commit, no abort, no clean shutdown of the producer.
os._exit(0)
"#;

const A: usize = 8;
const B: usize = 6;
const C: usize = 8;
const D: usize = 5;
const PLAIN: usize = 13;

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn sorted(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut values: Vec<String> = values.into_iter().collect();
    values.sort_unstable();
    values
}

fn value(record: &CommittedRecord) -> String {
    String::from_utf8(record.value.clone().unwrap_or_default()).unwrap()
}

#[test]
fn the_view_from_the_raw_log_holds_committed_and_plain_records_only() {
    let Some((bootstrap, py)) = broker() else {
        return;
    };
    let topic = format!("weir-kafka-log-{}", std::process::id());
    python(&py, CREATE_TOPIC, &[&bootstrap, &topic, "2"]);
    python(&py, PRODUCE_TRANSACTIONS, &[&bootstrap, &topic, &topic]);

    let view = committed_view(&bootstrap, &topic).unwrap();
    let expected = sorted(
        [names("A", A), names("C", C), names("P", PLAIN)]
            .into_iter()
            .flatten(),
    );
    assert_eq!(sorted(view.values_utf8()), expected, "visible records");
    assert_eq!(view.aborted(), B, "records of the aborted transaction B");
    assert_eq!(view.pending(), D, "records of the open transaction D");

    assert_eq!(view.partitions.len(), 2);
    // Every offset was read: the records and one marker per transaction end (A, B, C)
    // in each partition, although tansu reports a high watermark short of that.
    let read: i64 = view.partitions.iter().map(|p| p.offsets.end).sum();
    assert_eq!(read as usize, A + B + C + D + PLAIN + 3 * 2, "offsets read");
    for partition in &view.partitions {
        // A, B, C wrote to both partitions: each got two COMMITs and one ABORT.
        assert_eq!(
            (partition.commit_markers, partition.abort_markers),
            (2, 1),
            "markers in partition {}",
            partition.partition
        );
        let offsets: Vec<i64> = partition.records.iter().map(|r| r.offset).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "offset order in partition {}: {offsets:?}",
            partition.partition
        );
        // Each producer's records come in the order it wrote them.
        for prefix in ["A-", "C-", "P-"] {
            let seqs: Vec<usize> = partition
                .records
                .iter()
                .filter_map(|r| value(r).strip_prefix(prefix)?.parse().ok())
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{prefix} in partition {}: {seqs:?}",
                partition.partition
            );
        }
        for record in &partition.records {
            assert_eq!(record.partition, partition.partition);
            assert_eq!(record.key, record.value, "key of {}", value(record));
            assert!(record.timestamp > 0, "timestamp of {}", value(record));
        }
    }
    // One producer id for the transactions, another for the plain records.
    let producers = |prefix: &str| -> BTreeSet<i64> {
        view.records()
            .filter(|r| value(r).starts_with(prefix))
            .map(|r| r.producer_id)
            .collect()
    };
    let (a, c, plain) = (producers("A-"), producers("C-"), producers("P-"));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a, c);
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_ne!(a, plain);

    // An ordinary read_committed consumer.
    let consumed: Vec<(i32, i64, String)> =
        python(&py, READ_COMMITTED_CONSUMER, &[&bootstrap, &topic, "2"])
            .lines()
            .map(|line| {
                let mut fields = line.splitn(3, ' ');
                let mut next = || fields.next().unwrap().to_owned();
                (next().parse().unwrap(), next().parse().unwrap(), next())
            })
            .collect();
    let aborted_seen: Vec<&str> = consumed
        .iter()
        .map(|(_, _, v)| v.as_str())
        .filter(|v| v.starts_with("B-"))
        .collect();
    if aborted_seen.is_empty() {
        println!("the read_committed consumer sees no record of the aborted transaction: the broker filters aborted transactions");
    } else {
        println!(
            "known broker gap: the read_committed consumer sees {} records of the aborted transaction: {aborted_seen:?}",
            aborted_seen.len()
        );
    }
    let from_log: Vec<(i32, i64, String)> = view
        .records()
        .map(|r| (r.partition, r.offset, value(r)))
        .collect();
    let mut consumed_without_b: Vec<(i32, i64, String)> = consumed
        .iter()
        .filter(|(_, _, v)| !v.starts_with("B-"))
        .cloned()
        .collect();
    consumed_without_b.sort();
    assert_eq!(
        consumed_without_b, from_log,
        "the consumer sees the view (partition, offset, value), apart from aborted records"
    );
    if strict_broker() {
        let mut consumed = consumed;
        consumed.sort();
        assert_eq!(consumed, from_log, "a conforming read_committed consumer");
    }
}

#[test]
fn a_missing_topic_and_an_unreachable_broker_are_clear_errors() {
    let Some((bootstrap, _)) = broker() else {
        return;
    };
    let err = committed_view(&bootstrap, "weir-no-such-topic").unwrap_err();
    println!("{err}");
    assert!(
        err.contains("weir-no-such-topic") && err.contains("UnknownTopicOrPartition"),
        "{err}"
    );
    let err = committed_view("127.0.0.1:1", "t").unwrap_err();
    println!("{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("could be reached"),
        "{err}"
    );
}

/// A record as a read_uncommitted fetch returns it.
fn record(offset: i64, producer_id: i64, transactional: bool, value: &str) -> Record {
    Record {
        transactional,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: 0,
        timestamp: 1_700_000_000_000 + offset,
        key: None,
        value: Some(value.as_bytes().to_vec().into()),
        headers: Default::default(),
    }
}

/// A control record: `kind` 0 is ABORT, 1 COMMIT.
fn marker(offset: i64, producer_id: i64, kind: i16) -> Record {
    let mut key = 0i16.to_be_bytes().to_vec();
    key.extend_from_slice(&kind.to_be_bytes());
    Record {
        control: true,
        transactional: true,
        key: Some(key.into()),
        value: Some(vec![0, 0, 0, 0, 0, 0].into()),
        ..record(offset, producer_id, true, "")
    }
}

#[test]
fn markers_apply_per_producer_and_leave_other_producers_alone() {
    const COMMIT: i16 = 1;
    const ABORT: i16 = 0;
    let log = vec![
        record(0, 7, true, "7a"),
        record(1, 8, true, "8a"),
        record(2, -1, false, "plain"),
        record(3, 7, true, "7b"),
        marker(4, 8, ABORT),
        record(5, 8, true, "8b"),
        marker(6, 7, COMMIT),
        record(7, 7, true, "7c"),
        // A control record that is not a transaction marker (a leader change) ends
        // nothing.
        marker(8, 8, 2),
        marker(9, 8, COMMIT),
        record(10, 9, false, "idempotent"),
        marker(11, 7, ABORT),
        record(12, 8, true, "8c"),
    ];
    let view = apply_markers(3, 0..13, log).unwrap();
    let visible: Vec<(i64, String)> = view.records.iter().map(|r| (r.offset, value(r))).collect();
    assert_eq!(
        visible,
        vec![
            (0, "7a".into()),
            (2, "plain".into()),
            (3, "7b".into()),
            (5, "8b".into()),
            (10, "idempotent".into()),
        ]
    );
    assert!(view.records.iter().all(|r| r.partition == 3));
    assert_eq!(view.aborted, 2, "8a and 7c");
    assert_eq!(view.pending, 1, "8c");
    assert_eq!((view.commit_markers, view.abort_markers), (2, 2));
}

#[test]
fn a_control_record_without_a_type_is_an_error() {
    let mut bad = marker(4, 1, 1);
    bad.key = Some(vec![0, 0].into());
    let err = apply_markers(0, 0..5, vec![record(3, 1, true, "x"), bad]).unwrap_err();
    assert!(err.contains("offset 4"), "{err}");
}

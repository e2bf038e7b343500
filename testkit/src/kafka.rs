//! The Kafka-protocol broker the tests talk to (tansu, started by
//! `tests/services.sh start`) and the independent client they check with (Python
//! `confluent-kafka`).

use std::process::Command;

/// The broker's bootstrap address and the Python with `confluent-kafka`, or `None`
/// (the caller skips its test, with the reason printed) when the services are not
/// running; with `WEIR_REQUIRE_SERVICES` set, their absence fails the test instead.
pub fn broker() -> Option<(String, String)> {
    match (
        std::env::var("WEIR_TEST_KAFKA_BOOTSTRAP"),
        std::env::var("WEIR_TEST_KAFKA_PYTHON"),
    ) {
        (Ok(bootstrap), Ok(python)) => Some((bootstrap, python)),
        _ => {
            assert!(
                std::env::var_os("WEIR_REQUIRE_SERVICES").is_none(),
                "WEIR_TEST_KAFKA_BOOTSTRAP and WEIR_TEST_KAFKA_PYTHON must be set (tests/services.sh start)"
            );
            println!("skipped: no Kafka broker (run tests/services.sh start)");
            None
        }
    }
}

/// Whether the broker is fully conforming (`WEIR_STRICT_KAFKA=1`): then an ordinary
/// read_committed consumer must agree with the view computed from the raw log
/// (`kafka_log::committed_view`). The test broker, tansu, is not: its read_committed
/// consumers still see records of aborted transactions. Prints why a check is
/// skipped when it returns false.
pub fn strict_broker() -> bool {
    let strict = std::env::var("WEIR_STRICT_KAFKA").is_ok_and(|v| v == "1");
    if !strict {
        println!(
            "skipped the read_committed consumer check: the broker is not known to filter \
             aborted transactions (set WEIR_STRICT_KAFKA=1 for a conforming broker)"
        );
    }
    strict
}

/// Runs a Python `script` with `args` (`sys.argv[1..]`) and returns its standard
/// output; panics with its output if it fails.
pub fn python(python: &str, script: &str, args: &[&str]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates a topic: `python(py, CREATE_TOPIC, &[bootstrap, topic, partitions])`.
pub const CREATE_TOPIC: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], num_partitions=int(sys.argv[3]), replication_factor=1)]).values():
    f.result(30)
"#;

/// Writes `key,seq` for seq in `from..to`, key = seq % 13, to partition seq % partitions:
/// `python(py, PRODUCE, &[bootstrap, topic, from, to, partitions])`.
pub const PRODUCE: &str = r#"
import sys
from confluent_kafka import Producer
bootstrap, topic, start, end, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
for seq in range(start, end):
    producer.produce(topic, value=f"{seq % 13},{seq}".encode(), partition=seq % partitions)
    if seq % 1000 == 0:
        producer.flush(30)
assert producer.flush(30) == 0, "records not delivered"
"#;

/// Waits (up to 30 s) until a broker answers: `python(py, AWAIT_BROKER, &[bootstrap])`.
pub const AWAIT_BROKER: &str = r#"
import sys, time
from confluent_kafka.admin import AdminClient
deadline = time.time() + 30
while True:
    try:
        AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=2)
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
"#;

/// Reads a topic with an ordinary librdkafka read_committed consumer (assigned
/// partitions, no group join) until every partition reports its end, printing
/// `partition offset value` lines.
pub const READ_COMMITTED_CONSUMER: &str = r#"
import sys, time
from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "weir-kafka-log-check",
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "enable.partition.eof": True,
})
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
ended = set()
deadline = time.time() + 60
while len(ended) < partitions:
    assert time.time() < deadline, f"partitions {sorted(ended)} of {partitions} ended after 60 s"
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        if message.error().code() == KafkaError._PARTITION_EOF:
            ended.add(message.partition())
            continue
        raise Exception(message.error())
    print(message.partition(), message.offset(), message.value().decode())
consumer.close()
"#;

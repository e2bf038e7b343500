//! `weir bench kafka`: Kafka → Kafka throughput and end-to-end latency for each
//! delivery guarantee of the sink.
//!
//! ```text
//!  throughput: preload N records ─▶ [KafkaSource ─▶ KafkaSink(guarantee)] ─▶ until the sink has delivered N
//!  latency:    producer at R records/s, value = send time ─▶ job ─▶ read_committed consumer: now − send time
//! ```
//!
//! Each phase uses fresh topics (`weir-bench-<phase>-<pid>-<guarantee>`), created
//! with the admin API and left behind.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_checkpoint::{CoordinatorConfig, StorageConfig};
use weir_dataflow::checkpointing::{CheckpointedJob, CheckpointingConfig, NoListener};
use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};
use weir_sinks::kafka::{KafkaOutRecord, Serializer};
use weir_sinks::{DeliveryGuarantee, KafkaSink, KafkaSinkConfig};
use weir_sources::kafka::{bytes, KafkaSource, KafkaSourceConfig};
use weir_sources::KafkaRecord;

/// What to measure.
#[derive(Clone, Debug)]
pub struct KafkaBenchOptions {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Records of the throughput phase.
    pub records: u64,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Parallelism of the job.
    pub parallelism: usize,
    /// The sink's guarantee.
    pub guarantee: DeliveryGuarantee,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// Records per second of the latency phase.
    pub latency_rate: u64,
    /// Length of the latency phase.
    pub latency_duration: Duration,
    /// Where checkpoints go.
    pub checkpoint_dir: String,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct KafkaBenchReport {
    /// `exactly_once`, `at_least_once` or `none`.
    pub guarantee: String,
    /// Checkpoint interval, ms.
    pub checkpoint_interval_ms: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Records of the throughput phase.
    pub records: u64,
    /// Records per second from Kafka through the job into Kafka (delivered or
    /// committed).
    pub records_per_s: f64,
    /// Transactions committed in the throughput phase.
    pub transactions: u64,
    /// Records per second the latency phase offered.
    pub latency_rate: u64,
    /// Records the latency consumer saw.
    pub latency_records: usize,
    /// Median produce-to-visible latency for a read_committed consumer, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile of it, ms.
    pub latency_p99_ms: f64,
}

fn guarantee_name(guarantee: DeliveryGuarantee) -> &'static str {
    match guarantee {
        DeliveryGuarantee::ExactlyOnce => "exactly_once",
        DeliveryGuarantee::AtLeastOnce => "at_least_once",
        DeliveryGuarantee::None => "none",
    }
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn create_topics(options: &KafkaBenchOptions, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, options.partitions, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(admin.create_topics(&new, &AdminOptions::new()))?;
    for result in results {
        if let Err((topic, code)) = result {
            anyhow::bail!(
                "creating topic `{topic}` on `{}`: {code}",
                options.bootstrap
            );
        }
    }
    Ok(())
}

fn producer(
    options: &KafkaBenchOptions,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .set("linger.ms", "5")
        .create()?)
}

/// Produces `value`, waiting while librdkafka's queue is full.
fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => anyhow::bail!("producing to topic `{topic}`: {e}"),
        }
    }
}

/// Starts the pass-through job `input` → `output`.
fn start_job(
    options: &KafkaBenchOptions,
    name: &str,
    input: &str,
    output: &str,
) -> anyhow::Result<(CheckpointedJob, Arc<weir_sinks::KafkaSinkMetrics>)> {
    let source = KafkaSourceConfig::new(&options.bootstrap, input, name);
    let mut sink = KafkaSinkConfig::new(&options.bootstrap, output);
    sink.guarantee = options.guarantee;
    let metrics = Arc::clone(&sink.metrics);
    let passthrough: Serializer<Vec<u8>> = Arc::new(|value: &Vec<u8>| {
        Ok(KafkaOutRecord {
            key: None,
            value: Some(value.clone()),
            timestamp: None,
        })
    });
    let config = JobConfig {
        name: name.into(),
        parallelism: options.parallelism,
        ..JobConfig::default()
    };
    let checkpointing = CheckpointingConfig {
        storage: StorageConfig::new(options.checkpoint_dir.clone()),
        coordinator: CoordinatorConfig {
            interval: options.checkpoint_interval,
            ..CoordinatorConfig::default()
        },
        ..CheckpointingConfig::default()
    };
    let job = CheckpointedJob::spawn(
        config,
        checkpointing,
        move |job: &JobBuilder| {
            job.source(
                "kafka-in",
                WatermarkStrategy::none(),
                KafkaSource::factory(source.clone(), bytes()),
            )
            .uid("kafka-in")
            .map(|record: KafkaRecord<Vec<u8>>| record.value)
            .sink(
                "kafka-out",
                KafkaSink::factory(sink.clone(), passthrough.clone()),
            )
            .uid("kafka-out");
        },
        Arc::new(NoListener),
    )?;
    Ok((job, metrics))
}

fn await_delivered(
    job: &CheckpointedJob,
    metrics: &weir_sinks::KafkaSinkMetrics,
    n: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while metrics.records_out.load(Ordering::Relaxed) < n {
        if job.is_finished() {
            anyhow::bail!("the job ended before delivering {n} records");
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("{n} records not delivered within 600 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs both phases.
///
/// # Errors
/// The brokers are unreachable, a topic cannot be created, or the job fails.
pub fn run(options: &KafkaBenchOptions) -> anyhow::Result<KafkaBenchReport> {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        guarantee_name(options.guarantee)
    );
    // Throughput: a preloaded input topic.
    let (input, output) = (
        format!("weir-bench-in-{tag}"),
        format!("weir-bench-out-{tag}"),
    );
    create_topics(options, &[&input, &output])?;
    let preload = producer(options)?;
    for seq in 0..options.records {
        send(&preload, &input, format!("{seq:016}").as_bytes())?;
    }
    preload.flush(Duration::from_secs(120))?;
    let name = format!("bench-kafka-{tag}");
    let started = Instant::now();
    let (job, metrics) = start_job(options, &name, &input, &output)?;
    await_delivered(&job, &metrics, options.records)?;
    let elapsed = started.elapsed().as_secs_f64();
    let transactions = metrics.transactions_committed.load(Ordering::Relaxed);
    job.cancel();
    let _ = job.wait();

    // Latency: records stamped with their send time, read back read_committed.
    let (input, output) = (
        format!("weir-bench-lin-{tag}"),
        format!("weir-bench-lout-{tag}"),
    );
    create_topics(options, &[&input, &output])?;
    let (job, _) = start_job(options, &format!("{name}-latency"), &input, &output)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .set("group.id", format!("{name}-latency-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..options.partitions {
        assignment.add_partition_offset(&output, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let total = options.latency_rate * options.latency_duration.as_secs().max(1);
    let writer = producer(options)?;
    let input_topic = input.clone();
    let rate = options.latency_rate.max(1);
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            send(&writer, &input_topic, micros_now().to_string().as_bytes())?;
        }
        writer.flush(Duration::from_secs(30))?;
        Ok::<(), anyhow::Error>(())
    });
    let mut latencies: Vec<f64> = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + options.latency_duration + Duration::from_secs(30);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let now = micros_now();
            if let Some(sent) = message
                .payload()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                latencies.push(now.saturating_sub(sent) as f64 / 1e3);
            }
        }
    }
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the latency producer panicked"))?;
    job.cancel();
    let _ = job.wait();
    sent?;
    latencies.sort_by(f64::total_cmp);
    Ok(KafkaBenchReport {
        guarantee: guarantee_name(options.guarantee).into(),
        checkpoint_interval_ms: options.checkpoint_interval.as_millis() as u64,
        parallelism: options.parallelism,
        records: options.records,
        records_per_s: options.records as f64 / elapsed,
        transactions,
        latency_rate: options.latency_rate,
        latency_records: latencies.len(),
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
    })
}

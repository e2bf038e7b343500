//! `weir testing running-count`: the job of the crash tests (hidden from `--help`).

use super::BackendArg;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Subcommand)]
pub(crate) enum TestingCommand {
    /// A keyed running count with exactly-once file (or Kafka) output, checkpointed;
    /// set WEIR_FAILPOINT=step:n to crash at a protocol step and
    /// WEIR_KAFKA_SINK_FAILPOINT=step:n inside a Kafka sink commit.
    RunningCount(RunningCountArgs),
    /// One process of `weir verify`: runs its job file in the given role's
    /// checkpoints and outputs (the crash run resumes); failpoints from
    /// WEIR_FAILPOINT and WEIR_SINK_FAILPOINT.
    VerifyIncarnation(VerifyIncarnationArgs),
    /// Prints a topic's raw log, one record per line, control records included:
    /// partition, offset, producer id and epoch, and what the record is, to explain
    /// what an exactly-once check found.
    KafkaLog(KafkaLogArgs),
}

#[derive(Args)]
pub(crate) struct KafkaLogArgs {
    /// `host:port` of a broker.
    bootstrap: String,
    /// The topic to print.
    topic: String,
}

#[derive(Args)]
pub(crate) struct VerifyIncarnationArgs {
    job: std::path::PathBuf,
    #[arg(long)]
    role: weir::verify::Role,
    #[arg(long)]
    scratch: std::path::PathBuf,
    #[arg(long)]
    storage: String,
    #[arg(long)]
    nonce: String,
    #[arg(long, value_parser = weir::verify::parse_backend)]
    backend: weir::jobfile::StateBackend,
}

#[derive(Args)]
pub(crate) struct RunningCountArgs {
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    #[arg(long, default_value_t = 17)]
    keys: u64,
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    #[arg(long)]
    checkpoint_dir: String,
    /// Output directory of the in-memory-epoch file sink (EpochFileSink).
    #[arg(
        long,
        required_unless_present_any = ["output_url", "output_topic"],
        conflicts_with_all = ["output_url", "output_topic"]
    )]
    output: Option<std::path::PathBuf>,
    /// Output of the object-store file sink instead: a directory, file:// or s3:// URL
    /// (S3 settings from the AWS environment).
    #[arg(long, conflicts_with = "output_topic")]
    output_url: Option<String>,
    /// Roll the object-store sink's part files at this many bytes.
    #[arg(long, requires = "output_url")]
    roll_bytes: Option<u64>,
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    #[arg(long, default_value_t = 0)]
    throttle_us: u64,
    #[arg(long)]
    resume: bool,
    /// With --resume, fall back past a newest complete checkpoint that cannot be restored.
    #[arg(long)]
    fallback_past_corrupt: bool,
    #[arg(long)]
    savepoint_dir: Option<String>,
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Kafka brokers for --input-topic / --output-topic.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_bootstrap: String,
    /// Read the numbers (one per record, as text) from this Kafka topic.
    #[arg(long)]
    input_topic: Option<String>,
    /// Write the counts to this Kafka topic, exactly-once, instead of a file sink.
    #[arg(long)]
    output_topic: Option<String>,
    /// Keep the counts on the heap or in RocksDB (under --state-dir).
    #[arg(long, value_enum, default_value_t = BackendArg::Heap)]
    state_backend: BackendArg,
    /// The RocksDB backend's state directory.
    #[arg(long, default_value = "./weir-data/state")]
    state_dir: std::path::PathBuf,
}

/// Runs `weir testing <command>`.
pub(crate) fn run(command: TestingCommand) -> Result<()> {
    match command {
        TestingCommand::RunningCount(args) => running_count(args),
        TestingCommand::KafkaLog(args) => kafka_log(&args),
        TestingCommand::VerifyIncarnation(args) => {
            weir::verify::run_incarnation(&weir::verify::Incarnation {
                job: args.job,
                layout: weir::verify::Layout {
                    local: args.scratch,
                    storage: args.storage,
                    nonce: args.nonce,
                },
                role: args.role,
                backend: Some(args.backend),
            })
        }
    }
}

fn kafka_log(args: &KafkaLogArgs) -> Result<()> {
    use std::io::Write;
    use weir_sinks::kafka_log;
    let partitions = kafka_log::raw_log(&args.bootstrap, &args.topic).map_err(|e| {
        anyhow::anyhow!("reading topic `{}` at {}: {e}", args.topic, args.bootstrap)
    })?;
    let mut out = std::io::stdout().lock();
    for partition in partitions {
        for record in partition.records {
            let text = |b: Option<&[u8]>| {
                b.map_or_else(
                    || "-".to_owned(),
                    |b| String::from_utf8_lossy(b).into_owned(),
                )
            };
            let kind = match (record.control, record.transactional) {
                (true, _) => match kafka_log::control_type(&record) {
                    Ok(kafka_log::ABORT) => "ABORT".to_owned(),
                    Ok(kafka_log::COMMIT) => "COMMIT".to_owned(),
                    Ok(other) => format!("control type {other}"),
                    Err(e) => format!("control record: {e}"),
                },
                (false, true) => format!(
                    "txn key={} value={}",
                    text(record.key.as_deref()),
                    text(record.value.as_deref())
                ),
                (false, false) => format!(
                    "key={} value={}",
                    text(record.key.as_deref()),
                    text(record.value.as_deref())
                ),
            };
            writeln!(
                out,
                "p{} @{} producer {}/{} seq {} {kind}",
                partition.partition,
                record.offset,
                record.producer_id,
                record.producer_epoch,
                record.sequence
            )?;
        }
    }
    Ok(())
}

fn running_count(args: RunningCountArgs) -> Result<()> {
    let failpoint = weir::verify::failpoint_from_env("WEIR_FAILPOINT")?;
    let job = weir::running_count::RunningCountJob {
        events: args.events,
        keys: args.keys,
        parallelism: args.parallelism,
        checkpoints: args.checkpoint_dir,
        output: match (args.output_topic, args.output_url, args.output) {
            (Some(topic), _, _) => weir::running_count::RunningCountOutput::Kafka {
                bootstrap: args.kafka_bootstrap.clone(),
                topic,
                failpoint: weir::verify::failpoint_from_env("WEIR_KAFKA_SINK_FAILPOINT")?,
            },
            (None, Some(url), _) => {
                let mut config = weir::sinks::FileSinkConfig::new(url);
                if let Some(bytes) = args.roll_bytes {
                    config.roll_size = bytes.max(1);
                }
                weir::running_count::RunningCountOutput::ObjectFiles(config)
            }
            (None, None, Some(dir)) => weir::running_count::RunningCountOutput::EpochFiles(dir),
            (None, None, None) => {
                bail!("--output DIR, --output-url URL or --output-topic TOPIC is required")
            }
        },
        interval: Duration::from_millis(args.interval_ms),
        throttle: Duration::from_micros(args.throttle_us),
        resume: args.resume,
        fallback_past_corrupt: args.fallback_past_corrupt,
        savepoints: args.savepoint_dir,
        from_savepoint: args.from_savepoint,
        failpoint,
        state_backend: args.state_backend.backend(&args.state_dir),
        input: args
            .input_topic
            .map(|topic| weir::running_count::KafkaInput {
                bootstrap: args.kafka_bootstrap,
                topic,
            }),
    };
    let summary = job.run(std::sync::Arc::new(
        weir::dataflow::checkpointing::NoListener,
    ))?;
    println!(
        "status {:?} restarts {} restored from {:?} checkpoints {}{}",
        summary.status,
        summary.restarts,
        summary.restored_from.map(|c| c.get()),
        summary.checkpoints.len(),
        summary
            .savepoint
            .map_or(String::new(), |s| format!(" savepoint {s}"))
    );
    Ok(())
}

//! A deterministic keyed running count with exactly-once file output: the job the
//! crash tests kill and resume (`weir testing running-count`), and a small example of
//! a checkpointed job.
//!
//! Input: the numbers `1..=events` from a rescalable sequence source (or, with
//! [`RunningCountJob::input`], the same numbers as text records of a Kafka topic);
//! key = `n % keys`.
//! Output: one `(key, count)` per input number, where `count` is how many numbers of
//! that key came before it plus one, written by an exactly-once sink: an
//! [`EpochFileSink`] (a local directory), an [`ObjectFileSink`] (any object-store
//! URL) or a [`KafkaSink`] (JSON `[key, count]` records keyed by the key), see
//! [`RunningCountOutput`]. Whatever the scheduling, the output is exactly
//! `{(k, 1..=n_k)}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_checkpoint::{CoordinatorConfig, StorageConfig};
use weir_dataflow::checkpointing::{
    CheckpointedJob, CheckpointingConfig, Failpoint, JobListener, RestartStrategy, ResumeFrom,
    RunSummary,
};
use weir_dataflow::process::{KeyedProcessFunction, ProcessContext};
use weir_dataflow::state::ValueState;
use weir_dataflow::{
    DataflowError, JobBuilder, JobConfig, KeyedStateHandle, Result, WatermarkStrategy,
};
use weir_sinks::kafka::{json_keyed, KafkaSinkFailpoint};
use weir_sinks::{EpochFileSink, FileSinkConfig, KafkaSink, KafkaSinkConfig, ObjectFileSink};
use weir_sources::kafka::{utf8, KafkaSource, KafkaSourceConfig};
use weir_sources::{KafkaRecord, SequenceSource};

/// Where the running-count job writes its output.
#[derive(Clone, Debug)]
pub enum RunningCountOutput {
    /// A local directory, written by an [`EpochFileSink`].
    EpochFiles(PathBuf),
    /// A directory, `file://` or `s3://` URL, written by an [`ObjectFileSink`] (JSON
    /// lines, S3 settings from the AWS environment).
    ObjectFiles(FileSinkConfig),
    /// A Kafka topic, written exactly-once by a [`KafkaSink`].
    Kafka {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// The topic.
        topic: String,
        /// Crash the process inside a commit (tests).
        failpoint: Option<(KafkaSinkFailpoint, u64)>,
    },
}

/// A Kafka topic the running-count job reads its numbers from (one decimal number
/// per record), up to the end of its partitions (a bounded source, so the job
/// finishes).
#[derive(Clone, Debug)]
pub struct KafkaInput {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
}

/// Settings of the running-count job.
#[derive(Clone, Debug)]
pub struct RunningCountJob {
    /// Numbers to count.
    pub events: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Checkpoint storage URL.
    pub checkpoints: String,
    /// Where the exactly-once sink writes.
    pub output: RunningCountOutput,
    /// Checkpoint interval.
    pub interval: Duration,
    /// Pause after every 100 numbers (so the job runs long enough to be killed).
    pub throttle: Duration,
    /// Resume from the newest complete checkpoint.
    pub resume: bool,
    /// With `resume`, fall back past a newest complete checkpoint that cannot be
    /// restored (its output is then written twice).
    pub fallback_past_corrupt: bool,
    /// Where savepoints go (default `./weir-data/savepoints`).
    pub savepoints: Option<String>,
    /// Resume from this savepoint (takes precedence over `resume`).
    pub from_savepoint: Option<String>,
    /// Crash the process at a protocol step (tests).
    pub failpoint: Option<(Failpoint, u64)>,
    /// Read the numbers from Kafka instead of the sequence source.
    pub input: Option<KafkaInput>,
    /// Where the counts live (heap or RocksDB).
    pub state_backend: weir_state::StateBackend,
}

/// Counts per key.
struct RunningCount {
    counts: KeyedStateHandle<ValueState<u64, u64>>,
}

impl KeyedProcessFunction<u64, i64> for RunningCount {
    type Out = (u64, u64);
    fn process(&mut self, _: i64, cx: &mut ProcessContext<'_, u64, (u64, u64)>) -> Result<()> {
        let key = *cx.key();
        let mut counts = self.counts.lock()?;
        let count = counts.get_or_insert_with(key, || 0)?;
        *count += 1;
        let count = *count;
        cx.emit((key, count));
        Ok(())
    }
}

impl RunningCountJob {
    /// Adds the job's operators to `job`.
    pub fn build(&self, job: &JobBuilder) {
        let (keys, throttle) = (self.keys.max(1), self.throttle);
        let numbers = match &self.input {
            Some(input) => job
                .source(
                    "numbers",
                    WatermarkStrategy::none(),
                    KafkaSource::factory(
                        KafkaSourceConfig {
                            bounded: true,
                            ..KafkaSourceConfig::new(
                                &input.bootstrap,
                                &input.topic,
                                "weir-running-count",
                            )
                        },
                        utf8(),
                    ),
                )
                .uid("numbers")
                .flat_map(|record: KafkaRecord<String>| record.value.trim().parse::<i64>().ok()),
            None => job
                .source(
                    "numbers",
                    WatermarkStrategy::none(),
                    SequenceSource::factory(1, self.events as i64),
                )
                .uid("numbers"),
        };
        let counts = numbers
            .map(move |n: i64| {
                if !throttle.is_zero() && n % 100 == 0 {
                    std::thread::sleep(throttle);
                }
                n
            })
            .key_by(move |n: &i64| n.unsigned_abs() % keys)
            .process("running-count", |cx| {
                Ok(RunningCount {
                    counts: cx.keyed_state(|backend| ValueState::in_backend(backend, "counts"))?,
                })
            })
            .uid("running-count");
        let sink = match &self.output {
            RunningCountOutput::EpochFiles(dir) => counts.sink(
                "committed-files",
                EpochFileSink::<(u64, u64)>::factory(dir.clone()),
            ),
            RunningCountOutput::ObjectFiles(config) => counts.sink(
                "committed-files",
                ObjectFileSink::<(u64, u64)>::factory(config.clone()).0,
            ),
            RunningCountOutput::Kafka {
                bootstrap,
                topic,
                failpoint,
            } => {
                let mut config = KafkaSinkConfig::new(bootstrap, topic);
                config.failpoint = *failpoint;
                counts.sink(
                    "committed-files",
                    KafkaSink::factory(
                        config,
                        json_keyed(|(key, _): &(u64, u64)| key.to_string().into_bytes()),
                    ),
                )
            }
        };
        sink.uid("committed-files");
    }

    /// Runs the job to the end (or until the process is killed).
    ///
    /// # Errors
    /// Storage errors, or a failure after the restarts ran out.
    pub fn run(&self, listener: Arc<dyn JobListener>) -> Result<RunSummary, DataflowError> {
        let config = JobConfig {
            name: "running-count".into(),
            parallelism: self.parallelism,
            batch_size: 64,
            state_backend: self.state_backend.clone(),
            ..JobConfig::default()
        };
        let checkpointing = CheckpointingConfig {
            storage: StorageConfig::new(self.checkpoints.clone()),
            coordinator: CoordinatorConfig {
                interval: self.interval,
                ..CoordinatorConfig::default()
            },
            restart: RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_millis(50),
            },
            resume: ResumeFrom::choose(self.from_savepoint.clone(), self.resume),
            fallback_past_corrupt: self.fallback_past_corrupt,
            savepoints: self.savepoints.clone().map_or_else(
                || CheckpointingConfig::default().savepoints,
                StorageConfig::new,
            ),
            failpoint: self.failpoint,
            ..CheckpointingConfig::default()
        };
        let this = self.clone();
        CheckpointedJob::spawn(config, checkpointing, move |job| this.build(job), listener)?.wait()
    }
}

//! The `weir` command line.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;
use weir::nexmark::bench::{self, BenchOptions};
use weir::nexmark::Query;

/// weir: a stream-processing engine in the style of Apache Flink.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a Nexmark query over the deterministic generator and print its result rows
    /// (optionally with checkpoints, resuming from a checkpoint or a savepoint).
    Query(QueryArgs),
    /// Take a savepoint of a job: `weir savepoint ID` asks a job server (see
    /// `weir serve`); `weir savepoint --job NAME` asks a job running embedded in
    /// another process, through the job's checkpoint storage.
    Savepoint(SavepointArgs),
    /// Run the job server: a REST API (described at /openapi.json) and a web UI (at
    /// /) for submitting job files and watching, savepointing, stopping and
    /// cancelling them. Jobs that were running resume from their newest checkpoint
    /// when the server starts again.
    Serve(ServeArgs),
    /// Submit a job file to a job server and print the new job's id.
    Submit(SubmitArgs),
    /// List the jobs of a job server.
    List(ServerArgs),
    /// Show a job of a job server (status, graph with rates, checkpoints) as JSON.
    Status(JobIdArgs),
    /// Stop a job of a job server with a savepoint and print the savepoint's location.
    Stop(JobIdArgs),
    /// Cancel a job of a job server (without a savepoint).
    Cancel(JobIdArgs),
    /// Show the checkpoints and savepoints in a storage.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Check a job file (YAML or JSON) and print every problem with its file, line,
    /// column and field path; exits non-zero if there is any.
    Validate(ValidateArgs),
    /// Run a job file (YAML or JSON) embedded in this process, with checkpoints
    /// (under ./weir-data by default), until its sources end.
    Run(RunArgs),
    /// Jobs for the crash tests.
    #[command(subcommand, hide = true)]
    Testing(TestingCommand),
}

#[derive(Args)]
struct ValidateArgs {
    /// The job file (see docs/job-files.md).
    file: std::path::PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// The job file (see docs/job-files.md).
    file: std::path::PathBuf,
    /// Resume from this savepoint (a directory path or URL).
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Resume from the newest complete checkpoint of the job.
    #[arg(long, conflicts_with = "from_savepoint")]
    resume: bool,
    /// Default parallelism of the operators (overrides the file's `parallelism`).
    #[arg(long, short)]
    parallelism: Option<usize>,
    /// Start even if the restored state has operators this job lacks.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Where savepoints go (default ./weir-data/savepoints).
    #[arg(long)]
    savepoint_dir: Option<String>,
}

#[derive(Subcommand)]
enum TestingCommand {
    /// A keyed running count with exactly-once file (or Kafka) output, checkpointed;
    /// set WEIR_FAILPOINT=step:n to crash at a protocol step and
    /// WEIR_KAFKA_SINK_FAILPOINT=step:n inside a Kafka sink commit.
    RunningCount(RunningCountArgs),
}

#[derive(Args)]
struct RunningCountArgs {
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

#[derive(Subcommand)]
enum BenchCommand {
    /// Run a Nexmark query over the deterministic bid (or full Nexmark) generator into
    /// a blackhole sink and print events/s, elapsed time and peak memory.
    Nexmark(NexmarkArgs),
    /// Checkpoint duration, task-thread pause and restore time for a given number of
    /// keys of heap state (a count per key), printed as JSON.
    State(StateArgs),
    /// Kafka → Kafka through a pass-through job: records/s and produce-to-visible
    /// latency (p50/p99) for one delivery guarantee, printed as JSON.
    Kafka(KafkaBenchArgs),
}

#[derive(Args)]
struct KafkaBenchArgs {
    /// `bootstrap.servers` of the brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// exactly-once, at-least-once or none.
    #[arg(long, default_value = "exactly-once")]
    guarantee: String,
    /// Records of the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Partitions of the topics the benchmark creates.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    #[arg(short, long, default_value_t = 2)]
    parallelism: usize,
    /// Checkpoint interval (e.g. 200ms, 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkpoint_interval: Duration,
    /// Records per second of the latency phase.
    #[arg(long, default_value_t = 1000)]
    latency_rate: u64,
    /// Length of the latency phase (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    latency_duration: Duration,
    /// Where checkpoints go.
    #[arg(long, default_value = "./weir-data/bench-checkpoints")]
    checkpoint_dir: String,
}

#[derive(Args)]
struct StateArgs {
    /// Distinct keys.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Numbers to count (default: 5 per key).
    #[arg(long)]
    events: Option<u64>,
    /// Parallelism of every operator.
    #[arg(long, short, default_value_t = 2)]
    parallelism: usize,
    /// Checkpoint interval, e.g. `1s`.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    checkpoint_interval: Duration,
    /// Where checkpoints go: a path, file:// or s3://bucket/prefix URL.
    #[arg(long, default_value = "./weir-data/checkpoints")]
    checkpoint_dir: String,
    /// Full checkpoints instead of incremental ones.
    #[arg(long)]
    full: bool,
    /// After every key has been created, update only this many of them (default: all).
    #[arg(long)]
    hot_keys: Option<u64>,
    /// RocksDB: restore by downloading every file from checkpoint storage (the local
    /// copies of the checkpoint are deleted first) instead of recovering locally.
    #[arg(long)]
    restore_from_storage: bool,
    /// RocksDB: after the restore, delete the local copies and restore again from
    /// checkpoint storage, timing both in one run (`storage_restore_*` in the report).
    #[arg(long)]
    restore_again_from_storage: bool,
    /// Where keyed state lives: heap (in memory) or rocksdb (on local disk).
    #[arg(long, value_enum, default_value_t = BackendArg::Heap)]
    state_backend: BackendArg,
    /// The RocksDB backend's state directory.
    #[arg(long, default_value = "./weir-data/state")]
    state_dir: std::path::PathBuf,
    /// The RocksDB backend's memory budget in MiB: the block cache, which also
    /// carries the memtables (a quarter of it). Default: 1024.
    #[arg(long)]
    rocksdb_memory_mib: Option<usize>,
}

#[derive(Args)]
struct NexmarkArgs {
    /// The query: q0, q1, q2, qw, q5, q7, qs (bids) or q3, q8 (persons and auctions).
    #[arg(long, short)]
    query: Query,
    /// Number of input events.
    #[arg(long, short, default_value_t = 10_000_000)]
    events: u64,
    /// Parallelism of every operator.
    #[arg(long, short, default_value_t = 2)]
    parallelism: usize,
    /// Records per channel batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Bids per millisecond of event time.
    #[arg(long, default_value_t = 10)]
    rows_per_ms: i64,
    /// Print one JSON object instead of text (no progress bar).
    #[arg(long)]
    json: bool,
    /// Take checkpoints at this interval, e.g. `1s` or `200ms` (default: off).
    #[arg(long, value_parser = parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// Where checkpoints go: a path, file:// or s3://bucket/prefix URL.
    #[arg(long, default_value = "./weir-data/checkpoints")]
    checkpoint_dir: String,
    /// Where keyed state lives: heap (in memory) or rocksdb (on local disk).
    #[arg(long, value_enum, default_value_t = BackendArg::Heap)]
    state_backend: BackendArg,
    /// The RocksDB backend's state directory.
    #[arg(long, default_value = "./weir-data/state")]
    state_dir: std::path::PathBuf,
    /// The RocksDB backend's memory budget in MiB: the block cache, which also
    /// carries the memtables (a quarter of it). Default: 1024.
    #[arg(long)]
    rocksdb_memory_mib: Option<usize>,
}

/// `--state-backend`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Hash maps in memory (the default).
    Heap,
    /// RocksDB on local disk, with a write-back record cache in front (in builds
    /// with `--features rocksdb`).
    Rocksdb,
}

impl BackendArg {
    fn backend(self, dir: &std::path::Path) -> weir::state::StateBackend {
        self.with_memory(dir, None)
    }

    /// The backend, with RocksDB's memory budget set when `memory_mib` is.
    fn with_memory(
        self,
        dir: &std::path::Path,
        memory_mib: Option<usize>,
    ) -> weir::state::StateBackend {
        match (self, weir::state::StateBackend::rocksdb(dir)) {
            (Self::Heap, _) => weir::state::StateBackend::Heap,
            (Self::Rocksdb, weir::state::StateBackend::RocksDb(mut config)) => {
                if let Some(mib) = memory_mib {
                    config.block_cache_bytes = mib << 20;
                    config.write_buffer_bytes = (mib << 20) / 4;
                }
                weir::state::StateBackend::RocksDb(config)
            }
            (Self::Rocksdb, other) => other,
        }
    }
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "ms"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: expected e.g. 1s, 200ms, 2m"))?;
    let ms = match unit {
        "ms" => value,
        "s" => value * 1e3,
        "m" => value * 60e3,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: expected ms, s or m"
            ))
        }
    };
    if ms <= 0.0 {
        return Err(format!("`{text}` must be positive"));
    }
    Ok(Duration::from_secs_f64(ms / 1e3))
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// One JSON object per line on stdout.
    Json,
    /// Count the rows and print only the count.
    Count,
}

#[derive(Args)]
struct QueryArgs {
    /// The query: q0, q1, q2, qw, q5, q7, qs, q3, q8.
    query: Query,
    /// Number of input events.
    #[arg(long, short, default_value_t = 100_000)]
    events: u64,
    /// Parallelism of every operator.
    #[arg(long, short, default_value_t = 2)]
    parallelism: usize,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
    /// The job's name: its directory under the checkpoint storage (default
    /// `nexmark-<query>`).
    #[arg(long)]
    job: Option<String>,
    /// Take checkpoints to this storage: a path, file:// or s3://bucket/prefix URL.
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Checkpoint interval, e.g. `1s` (with --checkpoint-dir; default 1s).
    #[arg(long, value_parser = parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// Where savepoints go (default ./weir-data/savepoints).
    #[arg(long)]
    savepoint_dir: Option<String>,
    /// Resume from the newest complete checkpoint of the job under --checkpoint-dir.
    #[arg(long, conflicts_with = "from_savepoint")]
    resume: bool,
    /// Resume from this savepoint (a directory path or URL).
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Start even if the restored state has operators this job lacks.
    #[arg(long)]
    allow_non_restored_state: bool,
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// Every job under a checkpoint storage and its complete checkpoints.
    List {
        /// The checkpoint storage: a path, file:// or s3://bucket/prefix URL.
        #[arg(default_value = "./weir-data/checkpoints")]
        dir: String,
    },
    /// What one checkpoint (`<root>/<job>/chk-<n>`) or savepoint directory holds:
    /// operators, uids, subtasks, key-group ranges, sizes.
    Inspect {
        /// The checkpoint or savepoint directory (path or URL).
        path: String,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// The job server's URL.
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:8081")]
    server: String,
    /// The server's access token, if it has one.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
struct JobIdArgs {
    /// The job's id (as `weir submit` printed it; `weir list` shows them).
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (host:port; port 0 picks a free one). A non-loopback
    /// address needs --token.
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: String,
    /// Where the job registry and the jobs' checkpoints and savepoints go.
    #[arg(long, default_value = "./weir-data/server")]
    data: std::path::PathBuf,
    /// Require `Authorization: Bearer TOKEN` on every API request.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
struct SubmitArgs {
    /// The job file (YAML or JSON; see docs/job-files.md).
    file: std::path::PathBuf,
    /// Start from this savepoint (a directory path or URL the server can read).
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Default parallelism of the operators (overrides the file's `parallelism`).
    #[arg(long, short)]
    parallelism: Option<usize>,
    /// Start even if the savepoint has state of operators this job lacks.
    #[arg(long)]
    allow_non_restored_state: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
struct SavepointArgs {
    /// The job's id on a job server (`weir list` shows them).
    #[arg(required_unless_present = "job", conflicts_with_all = ["job", "checkpoint_dir"])]
    id: Option<String>,
    /// The job server's URL (with ID).
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:8081")]
    server: String,
    /// The server's access token, if it has one (with ID).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Instead of ID: the name of a job running embedded in another process (its
    /// directory under the checkpoint storage).
    #[arg(long)]
    job: Option<String>,
    /// With --job: the checkpoint storage the job runs with (default
    /// ./weir-data/checkpoints).
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Stop the job after the savepoint (stop-with-savepoint).
    #[arg(long)]
    stop: bool,
    /// How long to wait for the job to answer, e.g. `2m`.
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    timeout: Duration,
}

fn main() {
    // Warnings (skipped corrupt checkpoints, aborted checkpoints, restarts) go to stderr;
    // RUST_LOG=weir=info (or debug) shows more; WEIR_LOG_FORMAT=json writes one JSON
    // object per event (timestamp, level, target, fields) for log collectors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench(BenchCommand::Nexmark(args)) => bench_nexmark(args),
        Command::Bench(BenchCommand::State(args)) => bench_state(args),
        Command::Bench(BenchCommand::Kafka(args)) => bench_kafka(args),
        Command::Query(args) => query(args),
        Command::Savepoint(args) => savepoint(args),
        Command::Checkpoints(command) => checkpoints(command),
        Command::Testing(TestingCommand::RunningCount(args)) => running_count(args),
        Command::Validate(args) => validate_job_file(args),
        Command::Run(args) => run_job_file(args),
        Command::Serve(args) => serve(args),
        Command::Submit(args) => submit(args),
        Command::List(args) => list_jobs(args),
        Command::Status(args) => job_status(args),
        Command::Stop(args) => stop_job(args),
        Command::Cancel(args) => cancel_job(args),
    }
}

fn bench_nexmark(args: NexmarkArgs) -> Result<()> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    let options = BenchOptions {
        query: args.query,
        events: args.events,
        parallelism: args.parallelism,
        batch_size: args.batch_size,
        rows_per_ms: args.rows_per_ms,
        checkpoint_interval: args.checkpoint_interval,
        checkpoint_dir: args.checkpoint_dir.clone(),
        state_backend: args
            .state_backend
            .with_memory(&args.state_dir, args.rocksdb_memory_mib),
    };
    let bar = (!args.json && args.checkpoint_interval.is_none() && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(args.events);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {bar:40} {percent:>3}% {human_pos}/{human_len} events {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let report = bench::run(&options, |read| {
        if let Some(bar) = &bar {
            bar.set_position(read);
        }
    })
    .with_context(|| format!("benchmark of {} failed", args.query))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "query {}  state {}  events {}  parallelism {}  elapsed {:.3} s  {:.2} M events/s  output {} records  peak memory {:.0} MiB",
            report.query,
            report.state_backend,
            report.events,
            report.parallelism,
            report.elapsed_s,
            report.events_per_s / 1e6,
            report.output_records,
            report.peak_memory_mib
        );
        if let (Some(n), Some(p50), Some(p99)) = (
            report.checkpoints,
            report.checkpoint_p50_ms,
            report.checkpoint_p99_ms,
        ) {
            println!(
                "checkpoints {n}  duration p50 {p50:.1} ms  p99 {p99:.1} ms  bytes per checkpoint (median) {}",
                report.checkpoint_bytes.unwrap_or(0)
            );
        }
    }
    Ok(())
}

fn bench_kafka(args: KafkaBenchArgs) -> Result<()> {
    use weir::sinks::DeliveryGuarantee;
    let guarantee = match args.guarantee.as_str() {
        "exactly-once" => DeliveryGuarantee::ExactlyOnce,
        "at-least-once" => DeliveryGuarantee::AtLeastOnce,
        "none" => DeliveryGuarantee::None,
        other => anyhow::bail!(
            "unknown guarantee `{other}`: expected exactly-once, at-least-once or none"
        ),
    };
    let report = weir::kafka_bench::run(&weir::kafka_bench::KafkaBenchOptions {
        bootstrap: args.bootstrap,
        records: args.records,
        partitions: args.partitions,
        parallelism: args.parallelism,
        guarantee,
        checkpoint_interval: args.checkpoint_interval,
        latency_rate: args.latency_rate,
        latency_duration: args.latency_duration,
        checkpoint_dir: args.checkpoint_dir,
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn bench_state(args: StateArgs) -> Result<()> {
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    let events = args.events.unwrap_or(args.keys.saturating_mul(5));
    if events < args.keys {
        bail!(
            "--events ({events}) must be at least --keys ({}) so that every key exists",
            args.keys
        );
    }
    let report = weir::state_bench::run(&weir::state_bench::StateBenchOptions {
        keys: args.keys,
        events,
        parallelism: args.parallelism,
        interval: args.checkpoint_interval,
        checkpoint_dir: args.checkpoint_dir,
        incremental: !args.full,
        hot_keys: args.hot_keys.unwrap_or(args.keys),
        state_backend: args
            .state_backend
            .with_memory(&args.state_dir, args.rocksdb_memory_mib),
        discard_local_copies: args.restore_from_storage,
        restore_again_from_storage: args.restore_again_from_storage,
    })
    .context("state benchmark failed")?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// A runtime for the storage I/O of one command.
fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the I/O runtime")
}

fn checkpoints(command: CheckpointsCommand) -> Result<()> {
    let runtime = io_runtime()?;
    let text = match command {
        CheckpointsCommand::List { dir } => runtime
            .block_on(weir::inspect::list(&dir))
            .with_context(|| format!("listing checkpoints under {dir}"))?,
        CheckpointsCommand::Inspect { path } => runtime
            .block_on(weir::inspect::inspect(&path))
            .with_context(|| format!("inspecting {path}"))?,
    };
    print!("{text}");
    Ok(())
}

fn savepoint(args: SavepointArgs) -> Result<()> {
    use weir::checkpoint::control::{ControlReply, ControlRequest};
    use weir::checkpoint::{CheckpointStorage, StorageConfig};
    if let Some(id) = &args.id {
        let verb = if args.stop { "stop" } else { "savepoints" };
        let answer = server_call(&args.server, args.token.clone(), |client| async move {
            client
                .post(&format!("/jobs/{id}/{verb}"), &serde_json::json!({}))
                .await
        })?;
        println!("{}", answer["location"].as_str().unwrap_or_default());
        return Ok(());
    }
    let Some(job) = args.job.clone() else {
        bail!("give a job server's job ID, or --job NAME of an embedded job");
    };
    let checkpoint_dir = args
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| "./weir-data/checkpoints".into());
    let runtime = io_runtime()?;
    runtime.block_on(async {
        let storage = CheckpointStorage::open(&StorageConfig::new(checkpoint_dir.clone()))
            .await
            .with_context(|| format!("checkpoint storage {checkpoint_dir}"))?;
        let id = format!(
            "{:x}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let request = ControlRequest {
            id: id.clone(),
            stop: args.stop,
        };
        storage
            .put_control_request(&job, &request)
            .await
            .context("could not leave the savepoint request")?;
        let deadline = std::time::Instant::now() + args.timeout;
        loop {
            if let Some(reply) = storage.take_control_reply(&job, &id).await? {
                return match reply {
                    ControlReply::Savepoint { location } => {
                        println!("{location}");
                        Ok(())
                    }
                    ControlReply::Failed { reason } => {
                        bail!("job `{}` could not take the savepoint: {reason}", job)
                    }
                };
            }
            if std::time::Instant::now() >= deadline {
                let _ = storage.withdraw_control_request(&job, &id).await;
                bail!(
                    "no job `{}` running with checkpoint storage {} answered within {:?}: is it running, with this --job name and --checkpoint-dir?",
                    job,
                    storage.location(),
                    args.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn query(args: QueryArgs) -> Result<()> {
    let config = weir::dataflow::JobConfig {
        name: args
            .job
            .clone()
            .unwrap_or_else(|| format!("nexmark-{}", args.query)),
        parallelism: args.parallelism,
        ..weir::dataflow::JobConfig::default()
    };
    let checkpointed = args.checkpoint_dir.is_some()
        || args.checkpoint_interval.is_some()
        || args.resume
        || args.from_savepoint.is_some();
    if checkpointed {
        use weir::checkpoint::{CoordinatorConfig, StorageConfig};
        use weir::dataflow::checkpointing::{CheckpointingConfig, ResumeFrom};
        let defaults = CheckpointingConfig::default();
        let checkpointing = CheckpointingConfig {
            storage: args
                .checkpoint_dir
                .clone()
                .map_or(defaults.storage.clone(), StorageConfig::new),
            savepoints: args
                .savepoint_dir
                .clone()
                .map_or(defaults.savepoints.clone(), StorageConfig::new),
            coordinator: CoordinatorConfig {
                interval: args.checkpoint_interval.unwrap_or(Duration::from_secs(1)),
                ..CoordinatorConfig::default()
            },
            resume: ResumeFrom::choose(args.from_savepoint.clone(), args.resume),
            allow_non_restored_state: args.allow_non_restored_state,
            ..defaults
        };
        let count_only = matches!(args.output, OutputFormat::Count);
        let summary = match weir::nexmark::run_checkpointed(
            args.query,
            config,
            args.events,
            checkpointing,
            count_only,
        ) {
            Err(weir::dataflow::DataflowError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return Ok(());
            }
            result => result.with_context(|| format!("query {} failed", args.query))?,
        };
        if count_only {
            let rows: u64 = summary
                .metrics
                .iter()
                .filter(|m| m.operator == "blackhole")
                .map(|m| m.records_in)
                .sum();
            println!("{rows}");
        }
        eprintln!(
            "weir: job {:?}; restored from {}; {} checkpoints completed, {} failed; {} restarts{}",
            summary.status,
            summary
                .restored_from
                .map_or("nothing".to_string(), |c| format!("checkpoint {}", c.get())),
            summary.checkpoints.len(),
            summary.failed_checkpoints,
            summary.restarts,
            summary
                .savepoint
                .map_or(String::new(), |s| format!("; savepoint {s}"))
        );
        return Ok(());
    }
    match args.output {
        OutputFormat::Json => match weir::nexmark::run_stdout(args.query, config, args.events) {
            // The reader of our output went away (`| head`): a normal end.
            Err(weir::dataflow::DataflowError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::BrokenPipe => {}
            result => result.with_context(|| format!("query {} failed", args.query))?,
        },
        OutputFormat::Count => {
            let run = weir::nexmark::run_blackhole(args.query, config, args.events)
                .with_context(|| format!("query {} failed", args.query))?;
            println!("{}", run.output_records);
        }
    }
    Ok(())
}

/// A `step:n` failpoint from the environment variable `name` (`n` defaults to 1).
fn failpoint_from_env<T>(name: &str) -> Result<Option<(T, u64)>>
where
    T: std::str::FromStr<Err = String>,
{
    let Ok(spec) = std::env::var(name) else {
        return Ok(None);
    };
    let (step, nth) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
    Ok(Some((
        step.parse().map_err(anyhow::Error::msg)?,
        nth.parse()
            .with_context(|| format!("{name} `{spec}`: expected step:n"))?,
    )))
}

fn running_count(args: RunningCountArgs) -> Result<()> {
    let failpoint = failpoint_from_env("WEIR_FAILPOINT")?;
    let job = weir::running_count::RunningCountJob {
        events: args.events,
        keys: args.keys,
        parallelism: args.parallelism,
        checkpoints: args.checkpoint_dir,
        output: match (args.output_topic, args.output_url, args.output) {
            (Some(topic), _, _) => weir::running_count::RunningCountOutput::Kafka {
                bootstrap: args.kafka_bootstrap.clone(),
                topic,
                failpoint: failpoint_from_env("WEIR_KAFKA_SINK_FAILPOINT")?,
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

fn validate_job_file(args: ValidateArgs) -> Result<()> {
    match weir::jobfile::load_file(&args.file, &weir::jobfile::Registry::default()) {
        Ok(plan) => {
            println!(
                "ok: {}: job `{}` with {} streams and {} sinks",
                args.file.display(),
                plan.spec.name,
                plan.streams.len(),
                plan.sinks.len()
            );
            Ok(())
        }
        Err(e) => {
            let problems = e.problems();
            for problem in &problems {
                eprintln!("{problem}");
            }
            bail!("{}: {} problem(s)", args.file.display(), problems.len())
        }
    }
}

fn run_job_file(args: RunArgs) -> Result<()> {
    let plan = match weir::jobfile::load_file(&args.file, &weir::jobfile::Registry::default()) {
        Ok(plan) => plan,
        Err(e) => {
            let problems = e.problems();
            for problem in &problems {
                eprintln!("{problem}");
            }
            bail!("{}: {} problem(s)", args.file.display(), problems.len())
        }
    };
    let options = weir::jobs::RunOptions {
        parallelism: args.parallelism,
        from_savepoint: args.from_savepoint,
        resume: args.resume,
        allow_non_restored_state: args.allow_non_restored_state,
        savepoints: args.savepoint_dir,
    };
    let name = plan.spec.name.clone();
    let summary = match weir::jobs::run(plan, &options) {
        Err(weir::dataflow::DataflowError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(());
        }
        result => result.with_context(|| format!("job `{name}` failed"))?,
    };
    eprintln!(
        "weir: job `{name}` {:?}; restored from {}; {} checkpoints completed, {} failed; {} restarts",
        summary.status,
        summary
            .restored_from
            .map_or("nothing".to_string(), |c| format!("checkpoint {}", c.get())),
        summary.checkpoints.len(),
        summary.failed_checkpoints,
        summary.restarts,
    );
    Ok(())
}

/// Runs one request (or a few) against a job server.
fn server_call<F, Fut>(server: &str, token: Option<String>, call: F) -> Result<serde_json::Value>
where
    F: FnOnce(weir::server::client::ServerClient) -> Fut,
    Fut: std::future::Future<
        Output = std::result::Result<serde_json::Value, weir::server::client::ClientError>,
    >,
{
    let client = weir::server::client::ServerClient::new(server, token)?;
    Ok(io_runtime()?.block_on(call(client))?)
}

fn serve(args: ServeArgs) -> Result<()> {
    let config = weir::server::ServerConfig {
        bind: args.bind,
        data: args.data,
        token: args.token,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-server")
        .build()
        .context("could not start the server runtime")?;
    runtime.block_on(weir::server::serve(config, |addr| {
        // Scripts and tests read this line for the address (with port 0, the port).
        println!("weir serve: listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }))?;
    Ok(())
}

fn submit(args: SubmitArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read job file {}", args.file.display()))?;
    let mut body = serde_json::json!({
        "job": text,
        "file": args.file.display().to_string(),
        "allow_non_restored_state": args.allow_non_restored_state,
    });
    if let Some(p) = args.parallelism {
        body["parallelism"] = p.into();
    }
    if let Some(savepoint) = args.from_savepoint {
        body["from_savepoint"] = savepoint.into();
    }
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move { client.post("/jobs", &body).await },
    )?;
    println!("{}", answer["id"].as_str().unwrap_or_default());
    Ok(())
}

fn list_jobs(args: ServerArgs) -> Result<()> {
    let answer = server_call(&args.server, args.token, |client| async move {
        client.get("/jobs").await
    })?;
    let jobs = answer["jobs"].as_array().cloned().unwrap_or_default();
    let width = jobs
        .iter()
        .filter_map(|j| j["id"].as_str().map(str::len))
        .max()
        .unwrap_or(2)
        .max(2);
    println!(
        "{:<width$}  {:<11}  {:>8}  NAME",
        "ID", "STATUS", "RESTARTS"
    );
    for job in jobs {
        println!(
            "{:<width$}  {:<11}  {:>8}  {}",
            job["id"].as_str().unwrap_or_default(),
            job["status"].as_str().unwrap_or_default(),
            job["restarts"].as_u64().unwrap_or(0),
            job["name"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

fn job_status(args: JobIdArgs) -> Result<()> {
    let id = args.id;
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move {
            let mut job = client.get(&format!("/jobs/{id}")).await?;
            job["checkpoints"] = client.get(&format!("/jobs/{id}/checkpoints")).await?;
            Ok(job)
        },
    )?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

fn stop_job(args: JobIdArgs) -> Result<()> {
    let id = args.id;
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move {
            client
                .post(&format!("/jobs/{id}/stop"), &serde_json::json!({}))
                .await
        },
    )?;
    println!("{}", answer["location"].as_str().unwrap_or_default());
    Ok(())
}

fn cancel_job(args: JobIdArgs) -> Result<()> {
    let id = args.id;
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move { client.delete(&format!("/jobs/{id}")).await },
    )?;
    println!(
        "{} {}",
        answer["id"].as_str().unwrap_or_default(),
        answer["status"].as_str().unwrap_or_default()
    );
    Ok(())
}

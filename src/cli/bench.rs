//! `weir bench nexmark | state | kafka`: throughput, checkpoint and Kafka benchmarks.

use super::BackendArg;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;
use weir::nexmark::bench::{self, BenchOptions};
use weir::nexmark::Query;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Run a Nexmark query over the deterministic bid (or full Nexmark) generator into
    /// a blackhole sink and print events/s, elapsed time and peak memory.
    Nexmark(NexmarkArgs),
    /// Run a job file with every sink replaced by a blackhole and print what
    /// `bench nexmark` prints: events/s, elapsed time, peak memory, checkpoints.
    Job(JobArgs),
    /// Checkpoint duration, task-thread pause and restore time for a given number of
    /// keys of heap state (a count per key), printed as JSON.
    State(StateArgs),
    /// Kafka → Kafka through a pass-through job: records/s and produce-to-visible
    /// latency (p50/p99) for one delivery guarantee, printed as JSON.
    Kafka(KafkaBenchArgs),
    /// Live lookups of a running job's keyed state through its job server (keys
    /// from a scan of the state), concurrently for a while: lookups/s and latency
    /// (p50/p99/max), printed as JSON.
    Queries(QueriesArgs),
}

#[derive(Args)]
pub(crate) struct QueriesArgs {
    /// The job's id.
    job: String,
    /// The operator's uid.
    uid: String,
    /// The keyed state's name.
    state: String,
    /// How long to query.
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    duration: Duration,
    /// Lookups in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Keys looked up: the first this many a scan of the state returns.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    #[command(flatten)]
    server: super::client::ServerArgs,
}

#[derive(Args)]
pub(crate) struct JobArgs {
    /// The job file.
    file: std::path::PathBuf,
    /// Events of every generator source (bids, nexmark, sequence); default: the file's.
    #[arg(long, short)]
    events: Option<u64>,
    /// Default parallelism of the operators (overrides the file's).
    #[arg(long, short)]
    parallelism: Option<usize>,
    /// Checkpoint interval, e.g. `1s` (overrides the file's).
    #[arg(long, value_parser = super::duration)]
    checkpoint_interval: Option<Duration>,
    /// Where the run's checkpoints go (a fresh directory under it, removed after).
    #[arg(long, default_value = "./weir-data/bench-checkpoints")]
    checkpoint_dir: String,
    /// Where keyed state lives (overrides the file's).
    #[arg(long, value_enum)]
    state_backend: Option<BackendArg>,
    /// The RocksDB backend's state directory.
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct KafkaBenchArgs {
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
    #[arg(long, default_value = "1s", value_parser = super::duration)]
    checkpoint_interval: Duration,
    /// Records per second of the latency phase.
    #[arg(long, default_value_t = 1000)]
    latency_rate: u64,
    /// Length of the latency phase (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    latency_duration: Duration,
    /// Where checkpoints go.
    #[arg(long, default_value = "./weir-data/bench-checkpoints")]
    checkpoint_dir: String,
}

#[derive(Args)]
pub(crate) struct StateArgs {
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
    #[arg(long, value_parser = super::duration, default_value = "1s")]
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
pub(crate) struct NexmarkArgs {
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
    #[arg(long, value_parser = super::duration)]
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

/// Runs `weir bench <command>`.
pub(crate) fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Nexmark(args) => bench_nexmark(args),
        BenchCommand::Job(args) => bench_job(args),
        BenchCommand::State(args) => bench_state(args),
        BenchCommand::Kafka(args) => bench_kafka(args),
        BenchCommand::Queries(args) => bench_queries(args),
    }
}

fn bench_queries(args: QueriesArgs) -> Result<()> {
    use super::state::escape;
    use weir::server::client::ServerClient;
    let client = std::sync::Arc::new(ServerClient::new(&args.server.server, args.server.token)?);
    let base = format!(
        "/jobs/{}/state/{}/{}",
        escape(&args.job),
        escape(&args.uid),
        escape(&args.state)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // The keys: a scan's, once the job holds some (it may be starting).
        let started = std::time::Instant::now();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = String::new();
        while keys.len() < args.keys.max(1) {
            let limit = (args.keys - keys.len()).clamp(1, 10_000);
            let page = client.get(&format!("{base}?limit={limit}{cursor}")).await;
            let page = match page {
                Ok(page) => page,
                Err(_) if started.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => bail!("no keys to look up: {e}"),
            };
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            keys.extend(entries.iter().map(|e| escape(&e["key"].to_string())));
            match page["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None if keys.is_empty() => {
                    if started.elapsed() > Duration::from_secs(60) {
                        bail!("the state stayed empty for a minute");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => break,
            }
        }
        let keys = std::sync::Arc::new(keys);
        let deadline = std::time::Instant::now() + args.duration;
        let began = std::time::Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..args.concurrency.max(1) {
            let (client, keys, base) = (client.clone(), keys.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ worker as u64;
                while std::time::Instant::now() < deadline {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let key = &keys[(seed % keys.len() as u64) as usize];
                    let sent = std::time::Instant::now();
                    match client.get(&format!("{base}?key={key}")).await {
                        Ok(_) => latencies.push(sent.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (mine, failed) = task.await?;
            latencies.extend(mine);
            errors += failed;
        }
        let elapsed = began.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let report = serde_json::json!({
            "keys": keys.len(),
            "concurrency": args.concurrency,
            "lookups": latencies.len(),
            "errors": errors,
            "lookups_per_second": (latencies.len() as f64 / elapsed).round(),
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "max_ms": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        });
        println!("{report}");
        Ok(())
    })
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
    print_report(&report, args.json)
}

fn bench_job(args: JobArgs) -> Result<()> {
    if args.events == Some(0) {
        bail!("--events must be at least 1");
    }
    let plan = super::job_file::load(&args.file)?;
    let report = weir::job_bench::run(
        plan,
        &weir::job_bench::JobBenchOptions {
            events: args.events,
            parallelism: args.parallelism,
            checkpoint_interval: args.checkpoint_interval,
            checkpoint_dir: args.checkpoint_dir,
            state_backend: args.state_backend.map(|b| match b {
                BackendArg::Heap => weir::jobfile::StateBackend::Heap,
                BackendArg::Rocksdb => weir::jobfile::StateBackend::RocksDb,
            }),
            state_dir: args.state_dir,
        },
    )?;
    print_report(&report, args.json)
}

/// Prints a benchmark report as one JSON object or as text.
fn print_report(report: &bench::BenchReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
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

//! `weir verify`: proves a job's exactly-once output by crashing it.
//!
//! ```text
//!  reference run ── weir testing verify-incarnation --role reference ──▶ committed output A
//!  crash run     ── incarnation 1 ──✗ SIGKILL at a random moment
//!                ── incarnation 2 ──✗ failpoint (checkpoint protocol or sink commit)
//!                ── …  (each resumes the newest checkpoint: --resume)
//!                ── incarnation N+1 runs to the end ──────────────────▶ committed output B
//!  compare A and B as multisets of rows, per sink ──▶ report (lost, duplicated, recovery, checkpoints)
//! ```
//!
//! Every incarnation is a child process of this one (the same binary), so a crash is a
//! real `SIGKILL` or `abort()` of a whole process: nothing in memory survives. Each
//! child prints one line per completed checkpoint on its standard output
//! (`weir-verify checkpoint <id> <ms>`), from which the report takes checkpoint
//! durations and the time from each crash to the next completed checkpoint (whose
//! notification commits the sinks' output).
//!
//! Kill moments are drawn uniformly from zero to twice the reference run's duration
//! divided by the number of crashes, so that the crashes spread over the whole job
//! rather than letting it finish first. Failpoint crashes abort at the `n`-th (1–3)
//! time a step is reached: after barrier injection, after the first state upload,
//! before and after the metadata write, and before, inside and after a sink's commit.

mod output;
mod plan;
mod report;

pub use output::{Diff, SinkOutput};
pub use plan::{refusals, rewrite, rewrite_sink, Layout, Role};
pub use report::{Report, RunStats, SinkReport};

use report::quantile;

use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_dataflow::checkpointing::{CheckpointStats, JobListener};
use weir_jobfile::{JobPlan, Registry, SinkKind};

/// The environment variable naming an incarnation's checkpoint-protocol failpoint
/// (`step:n`).
pub const PROTOCOL_FAILPOINT: &str = "WEIR_FAILPOINT";
/// The environment variable naming an incarnation's sink-commit failpoint (`step:n`).
pub const SINK_FAILPOINT: &str = "WEIR_SINK_FAILPOINT";

/// The steps a failpoint crash aborts at: (environment variable, step).
const FAILPOINTS: [(&str, &str); 7] = [
    (PROTOCOL_FAILPOINT, "after-barrier"),
    (PROTOCOL_FAILPOINT, "mid-upload"),
    (PROTOCOL_FAILPOINT, "before-metadata"),
    (PROTOCOL_FAILPOINT, "after-metadata"),
    (SINK_FAILPOINT, "before-commit"),
    (SINK_FAILPOINT, "mid-commit"),
    (SINK_FAILPOINT, "after-commit"),
];

/// What to verify, and how hard.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// The job file.
    pub job: PathBuf,
    /// Crashes to inject into the second run.
    pub crashes: u32,
    /// Crash at the protocol's and the sinks' failpoints too (every other crash), not
    /// only by SIGKILL.
    pub failpoints: bool,
    /// The state backend of both runs (default: the job's).
    pub backend: Option<weir_jobfile::StateBackend>,
    /// Where checkpoints (and object-store outputs) go: a directory or URL (default:
    /// under `scratch`).
    pub storage: Option<String>,
    /// Local scratch directory; a fresh subdirectory per verification.
    pub scratch: PathBuf,
    /// Seed of the crash schedule (a report names it, so a schedule can be replayed).
    pub seed: u64,
    /// Keep the runs' checkpoints and outputs even when they match.
    pub keep: bool,
    /// The `weir` binary the incarnations run.
    pub exe: PathBuf,
    /// Print a line per crash to standard error.
    pub progress: bool,
}

/// Loads `job` and refuses what cannot be verified.
///
/// # Errors
/// The job file is invalid, or its input or output rules out a comparison.
pub fn load(job: &std::path::Path) -> Result<JobPlan> {
    let plan = weir_sql::load_file(job, &Registry::default())
        .map_err(|problems| anyhow!("{}", problems.join("\n")))?;
    let reasons = refusals(&plan);
    if !reasons.is_empty() {
        bail!(
            "{} cannot be verified: both runs must read the same input and commit comparable output\n  - {}",
            job.display(),
            reasons.join("\n  - ")
        );
    }
    Ok(plan)
}

/// One incarnation: what `weir testing verify-incarnation` runs in the child.
#[derive(Clone, Debug)]
pub struct Incarnation {
    /// The job file.
    pub job: PathBuf,
    /// Where this verification keeps its runs.
    pub layout: Layout,
    /// Which run.
    pub role: Role,
    /// State backend.
    pub backend: Option<weir_jobfile::StateBackend>,
}

/// Prints one line per completed checkpoint for the parent to read.
struct PrintCheckpoints;

impl JobListener for PrintCheckpoints {
    fn on_checkpoint(&self, _job: &str, stats: &CheckpointStats) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "weir-verify checkpoint {} {:.3}",
            stats.checkpoint.get(),
            stats.duration_ms
        );
        let _ = out.flush();
    }
}

/// Runs one incarnation to its end (or until it is crashed): the crash run resumes
/// the newest checkpoint of its storage; the failpoints come from
/// [`PROTOCOL_FAILPOINT`] and [`SINK_FAILPOINT`].
///
/// # Errors
/// The job file is invalid or the job fails.
pub fn run_incarnation(incarnation: &Incarnation) -> Result<()> {
    let mut plan = load(&incarnation.job)?;
    let backend = incarnation.backend.unwrap_or(plan.spec.state_backend);
    rewrite(&mut plan, &incarnation.layout, incarnation.role, backend);
    let role = incarnation.role;
    let options = weir_server::jobs::RunOptions {
        resume: role == Role::Crashes,
        savepoints: Some(incarnation.layout.savepoints(role).display().to_string()),
        state_dir: Some(incarnation.layout.state(role)),
        crash: weir_server::jobs::CrashPoints {
            protocol: failpoint_from_env(PROTOCOL_FAILPOINT)?,
            sink_commit: failpoint_from_env(SINK_FAILPOINT)?,
        },
        ..weir_server::jobs::RunOptions::default()
    };
    let name = plan.spec.name.clone();
    weir_server::jobs::run_with_listener(plan, &options, Arc::new(PrintCheckpoints))
        .with_context(|| format!("job `{name}` ({} run) failed", role.name()))?;
    Ok(())
}

/// A `step:n` failpoint from the environment variable `name` (`n` defaults to 1).
///
/// # Errors
/// The variable is set but names no step, or `n` is not a number.
pub fn failpoint_from_env<T>(name: &str) -> Result<Option<(T, u64)>>
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

/// A running child process and what it printed.
struct Process {
    child: Child,
    started: Instant,
    checkpoints: Receiver<(Instant, f64)>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of a child's standard error kept for an error message.
const STDERR_TAIL: usize = 30;

impl Process {
    fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for the child to exit.
    fn wait_for(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("waiting for an incarnation")?
            {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill(&mut self) -> Result<ExitStatus> {
        // SIGKILL; an already exited child is reaped below either way.
        let _ = self.child.kill();
        self.child.wait().context("reaping a killed incarnation")
    }

    /// Adds the checkpoint lines printed so far, (when read, duration ms), to
    /// `into`; returns the time from the start to the first of them, if any, in ms.
    fn drain(&self, into: &mut Vec<(Instant, f64)>) -> Option<f64> {
        let before = into.len();
        into.extend(self.checkpoints.try_iter());
        into.get(before)
            .map(|(at, _)| at.duration_since(self.started).as_secs_f64() * 1000.0)
    }
}

/// How an incarnation of the crash run ended.
enum Ending {
    Crashed,
    Finished,
}

/// SplitMix64: a small seeded generator, so a schedule replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % (bound + 1)
    }
}

struct Verifier<'a> {
    config: &'a VerifyConfig,
    plan: JobPlan,
    layout: Layout,
    backend: weir_jobfile::StateBackend,
}

impl Verifier<'_> {
    /// Starts incarnation `n` of `role`, its standard error going to its log (and
    /// its last lines kept for an error message).
    fn spawn(&self, role: Role, n: u32, failpoint: Option<(&str, String)>) -> Result<Process> {
        let log_path = self.layout.log(role, n);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the log directory {}", dir.display()))?;
        }
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating the log {}", log_path.display()))?;
        let mut command = Command::new(&self.config.exe);
        command
            .args(["testing", "verify-incarnation"])
            .arg(&self.config.job)
            .args(["--role", role.name()])
            .arg("--scratch")
            .arg(&self.layout.local)
            .args(["--storage", &self.layout.storage])
            .args(["--nonce", &self.layout.nonce])
            .args(["--backend", backend_name(self.backend)])
            .env_remove(PROTOCOL_FAILPOINT)
            .env_remove(SINK_FAILPOINT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((variable, value)) = failpoint {
            command.env(variable, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.config.exe.display()))?;
        let started = Instant::now();
        let (tx, checkpoints) = channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let now = Instant::now();
                    let ms = line
                        .strip_prefix("weir-verify checkpoint ")
                        .and_then(|rest| rest.split_whitespace().nth(1))
                        .and_then(|ms| ms.parse::<f64>().ok());
                    if let Some(ms) = ms {
                        if tx.send((now, ms)).is_err() {
                            break;
                        }
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    // The log is a diagnostic: a full disk must not stop the run.
                    let _ = log.write_all(line.as_bytes());
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == STDERR_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(line.trim_end().to_string());
                    }
                    line.clear();
                }
                let _ = reader.read_to_end(&mut Vec::new());
            });
        }
        Ok(Process {
            child,
            started,
            checkpoints,
            stderr,
        })
    }

    fn failed(&self, child: &Process, status: ExitStatus, what: &str) -> anyhow::Error {
        anyhow!(
            "the {what} exited with {status} instead of crashing or finishing; its last output:\n{}",
            child.stderr_tail()
        )
    }

    /// The reference run, to its end.
    fn reference(&self) -> Result<RunStats> {
        let mut child = self.spawn(Role::Reference, 1, None)?;
        let status = child
            .child
            .wait()
            .context("waiting for the reference run")?;
        let mut checkpoints = Vec::new();
        std::thread::sleep(Duration::from_millis(20));
        let startup = child.drain(&mut checkpoints);
        if !status.success() {
            return Err(self.failed(&child, status, "reference run"));
        }
        Ok(stats(
            child.started.elapsed(),
            1,
            checkpoints.iter().map(|c| c.1).collect(),
            startup.into_iter().collect(),
        ))
    }

    fn create_topics(&self) -> Result<()> {
        for sink in &self.plan.sinks {
            if let SinkKind::Kafka {
                bootstrap, topic, ..
            } = &sink.spec.kind
            {
                let topics =
                    [Role::Reference, Role::Crashes].map(|role| self.layout.topic(role, topic));
                create_topics(bootstrap, topic, &topics)?;
            }
        }
        Ok(())
    }
}

fn backend_name(backend: weir_jobfile::StateBackend) -> &'static str {
    match backend {
        weir_jobfile::StateBackend::Heap => "heap",
        weir_jobfile::StateBackend::RocksDb => "rocksdb",
    }
}

/// Parses `heap` or `rocksdb`.
///
/// # Errors
/// Any other name.
pub fn parse_backend(name: &str) -> Result<weir_jobfile::StateBackend> {
    match name {
        "heap" => Ok(weir_jobfile::StateBackend::Heap),
        "rocksdb" => Ok(weir_jobfile::StateBackend::RocksDb),
        other => bail!("unknown state backend `{other}`: expected heap or rocksdb"),
    }
}

fn stats(
    elapsed: Duration,
    incarnations: u32,
    checkpoint_ms: Vec<f64>,
    startup_ms: Vec<f64>,
) -> RunStats {
    RunStats {
        startup_p50_ms: quantile(&startup_ms, 0.5),
        seconds: elapsed.as_secs_f64(),
        incarnations,
        checkpoints: checkpoint_ms.len(),
        checkpoint_p50_ms: quantile(&checkpoint_ms, 0.5),
        checkpoint_p99_ms: quantile(&checkpoint_ms, 0.99),
        checkpoint_ms,
    }
}

/// Creates `topics` with as many partitions as `like` has (one if it does not exist).
fn create_topics(bootstrap: &str, like: &str, topics: &[String]) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let timeout = Duration::from_secs(10);
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let consumer: BaseConsumer = config
        .create()
        .with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
    let partitions = consumer
        .fetch_metadata(Some(like), timeout)
        .ok()
        .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions as i32, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the Kafka admin client")?;
    let results = runtime
        .block_on(admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(timeout))))
        .with_context(|| format!("creating the verify topics {topics:?} at {bootstrap}"))?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("creating topic `{topic}` at {bootstrap}: {code}");
        }
    }
    Ok(())
}

/// Runs the reference, then the crash run, and compares their committed output.
///
/// # Errors
/// The job cannot be verified (see [`refusals`]), a run fails otherwise than by an
/// injected crash, or an output cannot be read. Differences in the output are not an
/// error: they are in the report ([`Report::passed`]).
pub fn verify(config: &VerifyConfig) -> Result<Report> {
    let plan = load(&config.job)?;
    let nonce = format!("{:x}", config.seed ^ (u64::from(std::process::id()) << 32));
    let local = config.scratch.join(format!("{}-{nonce}", plan.spec.name));
    let storage = match &config.storage {
        Some(url) => format!("{}/{}-{nonce}", url.trim_end_matches('/'), plan.spec.name),
        None => local.display().to_string(),
    };
    let layout = Layout {
        local: local.clone(),
        storage: storage.clone(),
        nonce,
    };
    let backend = config.backend.unwrap_or(plan.spec.state_backend);
    let verifier = Verifier {
        config,
        plan,
        layout,
        backend,
    };
    verifier.create_topics()?;
    let progress = |text: String| {
        if config.progress {
            eprintln!("weir verify: {text}");
        }
    };
    progress("reference run…".into());
    let reference = verifier.reference()?;
    progress(format!(
        "reference run done in {:.1} s; crash run with {} crashes…",
        reference.seconds, config.crashes
    ));

    let mut rng = Rng(config.seed);
    let max_kill_ms =
        ((2.0 * reference.seconds * 1000.0 / f64::from(config.crashes.max(1))) as u64).max(10);
    let interval = verifier.plan.spec.checkpoints.interval;
    // A failpoint crash that the run does not reach in this long becomes a kill.
    let failpoint_deadline =
        Duration::from_millis(max_kill_ms) + interval * 4 + Duration::from_secs(1);
    let started = Instant::now();
    let mut kills = 0;
    let mut failpoint_crashes: BTreeMap<String, u32> = BTreeMap::new();
    let mut crash_times: Vec<Instant> = Vec::new();
    let mut checkpoints: Vec<(Instant, f64)> = Vec::new();
    let mut incarnations = 0;
    let mut finished_early = false;
    // Time from start to first checkpoint, ms, of every process that got there.
    let mut startups: Vec<f64> = Vec::new();
    for i in 0..config.crashes {
        let failpoint = (config.failpoints && i % 2 == 1).then(|| {
            let (variable, step) = FAILPOINTS[(i as usize / 2) % FAILPOINTS.len()];
            (variable, step, 1 + rng.below(2))
        });
        let kill_after = Duration::from_millis(rng.below(max_kill_ms));
        let mut child = verifier.spawn(
            Role::Crashes,
            incarnations + 1,
            failpoint.map(|(variable, step, nth)| (variable, format!("{step}:{nth}"))),
        )?;
        incarnations += 1;
        let wait = if failpoint.is_some() {
            failpoint_deadline
        } else {
            kill_after
        };
        let ending = match child.wait_for(wait)? {
            Some(status) if status.success() => Ending::Finished,
            Some(status) if failpoint.is_some() && aborted(status) => {
                if let Some((_, step, _)) = failpoint {
                    *failpoint_crashes.entry(step.to_string()).or_default() += 1;
                }
                Ending::Crashed
            }
            Some(status) => return Err(verifier.failed(&child, status, "crash run")),
            None => {
                child.kill()?;
                kills += 1;
                Ending::Crashed
            }
        };
        std::thread::sleep(Duration::from_millis(5));
        startups.extend(child.drain(&mut checkpoints));
        match ending {
            Ending::Crashed => {
                crash_times.push(Instant::now());
                progress(format!(
                    "crash {}/{}: {} after {} ms",
                    i + 1,
                    config.crashes,
                    failpoint.map_or("SIGKILL".to_string(), |(_, step, nth)| format!(
                        "failpoint {step}:{nth}"
                    )),
                    child.started.elapsed().as_millis()
                ));
            }
            Ending::Finished => {
                finished_early = true;
                progress(format!("the job finished after {i} crashes"));
                break;
            }
        }
    }
    if !finished_early {
        let mut last = verifier.spawn(Role::Crashes, incarnations + 1, None)?;
        incarnations += 1;
        let status = last
            .child
            .wait()
            .context("waiting for the last incarnation")?;
        std::thread::sleep(Duration::from_millis(20));
        startups.extend(last.drain(&mut checkpoints));
        if !status.success() {
            return Err(verifier.failed(&last, status, "last incarnation of the crash run"));
        }
    }
    let crashed = stats(
        started.elapsed(),
        incarnations,
        checkpoints.iter().map(|c| c.1).collect(),
        startups,
    );
    let recovery: Vec<f64> = crash_times
        .iter()
        .filter_map(|crash| {
            checkpoints
                .iter()
                .find(|(at, _)| at > crash)
                .map(|(at, _)| at.duration_since(*crash).as_secs_f64() * 1000.0)
        })
        .collect();

    progress("comparing the committed output…".into());
    let outputs_of = |role| {
        let mut sinks = verifier.plan.spec.sinks.clone();
        for sink in &mut sinks {
            rewrite_sink(sink, &verifier.layout, role);
        }
        output::read(&sinks)
    };
    let expected = outputs_of(Role::Reference)?;
    let actual = outputs_of(Role::Crashes)?;
    let sinks: Vec<SinkReport> = expected
        .iter()
        .zip(&actual)
        .map(|(e, a)| {
            let diff = Diff::of(&e.rows, &a.rows, 5);
            SinkReport {
                sink: e.sink.clone(),
                expected: diff.expected,
                actual: diff.actual,
                lost: diff.lost,
                duplicated: diff.duplicated,
                open_transactions: a.open_transactions,
                examples: diff.examples,
            }
        })
        .collect();
    let report = Report {
        job: verifier.plan.spec.name.clone(),
        seed: config.seed,
        backend: backend_name(backend).into(),
        storage: if config.storage.is_some() {
            storage.clone()
        } else {
            "local directory".into()
        },
        crashes_requested: config.crashes,
        kills,
        failpoint_crashes,
        finished_early,
        reference,
        crashed,
        recovery_p50_ms: quantile(&recovery, 0.5),
        recovery_p99_ms: quantile(&recovery, 0.99),
        recovery_max_ms: recovery.iter().copied().fold(0.0, f64::max),
        sinks,
        location: local.display().to_string(),
    };
    if report.passed() && !config.keep {
        let _ = std::fs::remove_dir_all(&local);
        if config.storage.is_some() {
            remove_remote(&storage);
        }
    }
    Ok(report)
}

/// Deletes what the runs left under the remote storage `url` (checkpoints and
/// object-store outputs); a failure is reported, not an error: the verification
/// itself is done.
fn remove_remote(url: &str) {
    let removed = weir_objects::BlockingObjectStore::open(&weir_objects::StorageConfig::new(url))
        .and_then(|store| {
            for object in store.list("")? {
                store.delete(&object.name)?;
            }
            Ok(())
        });
    if let Err(e) = removed {
        eprintln!("warning: could not remove the verification's objects under {url}: {e}");
    }
}

#[cfg(unix)]
fn aborted(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
}

#[cfg(not(unix))]
fn aborted(status: ExitStatus) -> bool {
    !status.success()
}

#[cfg(test)]
mod tests {
    use super::{quantile, Rng};

    #[test]
    fn quantiles_are_nearest_rank_and_a_schedule_replays_from_its_seed() {
        let values = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&values, 0.5), 3.0);
        assert_eq!(quantile(&values, 0.99), 5.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        let (mut a, mut b) = (Rng(7), Rng(7));
        let draws: Vec<u64> = (0..5).map(|_| a.below(100)).collect();
        assert_eq!(draws, (0..5).map(|_| b.below(100)).collect::<Vec<_>>());
        assert!(draws.iter().all(|d| *d <= 100));
    }
}

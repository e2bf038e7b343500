//! Cluster mode end to end, every role its own `weir` process on loopback: a
//! coordinator and its workers run job files with checkpoints (on the local
//! filesystem, and on S3 for Nexmark qw and qs on three workers) and the
//! exactly-once file sink, and the committed rows equal `weir run`'s in one
//! process; workers killed with SIGKILL mid-run, three times, are replaced and the
//! rows stay exact; a worker without the secret is refused; a standby coordinator
//! takes over from a killed one (lease in S3, or a shared directory) and the rows
//! stay exact, and of two coordinators started at once exactly one acts; workers on
//! hosts of their own (network namespaces) cut off by a partition stop committing,
//! and the rows stay exact.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use common::server::{http, sorted};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "the secret of the test cluster";

thread_local! {
    /// The REST token of the coordinators this test (its thread) talks to, if they
    /// have one: a coordinator reachable from other hosts needs one.
    static TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A request to a coordinator of this test, with the test's token if it has one.
fn call(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    TOKEN.with_borrow(|token| http(method, url, token.as_deref(), body))
}

/// A `weir` process killed (SIGKILL) when dropped.
struct Process {
    child: Child,
    first_line: String,
}

impl Process {
    fn start_with(cwd: &Path, args: &[&str], secret: &str, env: &[(&str, String)]) -> Self {
        Self::start(
            Command::new(env!("CARGO_BIN_EXE_weir")),
            cwd,
            args,
            secret,
            env,
        )
    }

    /// `weir args` run by `command` (`weir` itself, or a wrapper that execs it).
    fn start(
        mut command: Command,
        cwd: &Path,
        args: &[&str],
        secret: &str,
        env: &[(&str, String)],
    ) -> Self {
        let mut child = command
            .args(args)
            .current_dir(cwd)
            .env("WEIR_CLUSTER_SECRET", secret)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("WEIR_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir starts");
        let stdout = child.stdout.take().unwrap();
        let mut first_line = String::new();
        BufReader::new(stdout).read_line(&mut first_line).unwrap();
        Self { child, first_line }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn coordinator(dir: &Path) -> (Process, String) {
    coordinator_with(dir, &[])
}

fn coordinator_with(dir: &Path, env: &[(&str, String)]) -> (Process, String) {
    start_coordinator(dir, "coordinator", &[], env)
}

/// A coordinator with its data under `dir/name` and a 2 s heartbeat timeout, bound
/// to a free port of 127.0.0.1 unless `extra` names a `--bind`, and `extra`
/// arguments; its URL.
fn start_coordinator(
    dir: &Path,
    name: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> (Process, String) {
    let data = dir.join(name);
    let bind = if extra.contains(&"--bind") {
        &[][..]
    } else {
        &["--bind", "127.0.0.1:0"][..]
    };
    let mut args = vec!["coordinator"];
    args.extend_from_slice(bind);
    args.extend_from_slice(&[
        "--data",
        data.to_str().unwrap(),
        "--heartbeat-timeout",
        "2s",
    ]);
    args.extend_from_slice(extra);
    let process = Process::start_with(dir, &args, SECRET, env);
    let url = process
        .first_line
        .trim()
        .strip_prefix("weir coordinator: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {:?}", process.first_line))
        .to_string();
    (process, url)
}

fn worker(dir: &Path, url: &str, name: &str, secret: &str) -> Process {
    worker_with(dir, url, name, secret, &[])
}

fn worker_with(dir: &Path, url: &str, name: &str, secret: &str, env: &[(&str, String)]) -> Process {
    let data = dir.join(name);
    Process::start_with(
        dir,
        &[
            "worker",
            "--coordinator",
            url,
            "--data-bind",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
        ],
        secret,
        env,
    )
}

fn registered_workers(url: &str) -> usize {
    let (status, answer) = call("GET", &format!("{url}/cluster"), None);
    assert_eq!(status, 200, "{answer}");
    answer["workers"].as_object().map_or(0, |w| w.len())
}

/// Numbers counted and summed per class in 100 ms windows at parallelism 4: records
/// cross workers at the key_by.
fn job(out: &Path, rows: u64, rate: u64) -> String {
    format!(
        "name: counts
parallelism: 4
checkpoints: {{interval: 200ms}}
restart: {{strategy: fixed-delay, attempts: 10, delay: 500ms}}
sources:
  - {{name: numbers, kind: sequence, from: 1, to: {rows}, rows_per_second: {rate}, timestamp: value}}
operators:
  - {{name: classes, kind: map, input: numbers, fields: {{class: value % 13, value: value}}}}
  - {{name: by_class, kind: key_by, input: classes, key: class}}
  - name: per_class
    kind: window
    input: by_class
    window: {{type: tumbling, size: 100ms}}
    aggregates: {{numbers: count, total: sum(value)}}
sinks:
  - {{name: out, kind: file, input: per_class, path: '{}'}}
",
        out.display()
    )
}

fn committed(dir: &Path) -> Vec<Value> {
    sorted(weir::sinks::read_committed(dir).unwrap())
}

/// The rows `weir run` commits in one process for the job file `text(out)`.
fn reference(dir: &Path, text: impl Fn(&Path) -> String) -> Vec<Value> {
    let out = dir.join("reference");
    let file = dir.join("reference.yaml");
    std::fs::write(&file, text(&out)).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", file.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows = committed(&out);
    assert!(rows.len() > 1000, "{}", rows.len());
    rows
}

fn submit(url: &str, text: &str) -> String {
    let (status, answer) = call(
        "POST",
        &format!("{url}/jobs"),
        Some(&json!({"job": text, "file": "counts.yaml"})),
    );
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn wait_for(url: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, answer) = call("GET", &format!("{url}{path}"), None);
        if status == 200 && done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path}: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ended(job: &Value) -> bool {
    ["finished", "cancelled", "suspended", "failed"]
        .contains(&job["status"].as_str().unwrap_or_default())
}

#[test]
fn a_coordinator_and_two_workers_commit_the_rows_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference(dir.path(), |out| job(out, 40_000, 1_000_000));
    let (_coordinator, url) = coordinator(dir.path());
    let workers = [
        worker(dir.path(), &url, "w1", SECRET),
        worker(dir.path(), &url, "w2", SECRET),
    ];
    for w in &workers {
        assert!(
            w.first_line.contains("registered as worker"),
            "{}",
            w.first_line
        );
    }
    assert_eq!(registered_workers(&url), 2);
    let out = dir.path().join("out");
    let id = submit(&url, &job(&out, 40_000, 20_000));
    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    // The coordinator shows the job's graph as its workers built it (with the step
    // the engine adds before a window, which the job file's plan lacks) and the
    // counters they reported, as it last sampled them while the job ran.
    let vertices = job["graph"]["vertices"].as_array().unwrap();
    assert!(
        vertices.iter().any(|v| v["name"] == "per_class-project"),
        "{job}"
    );
    let read: u64 = job["graph"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] == "classes")
        .filter_map(|v| v["records_in"].as_u64())
        .sum();
    assert!(read > 0 && read <= 40_000, "{job}");
    assert_eq!(committed(&out), expected);
}

#[test]
fn killed_workers_are_replaced_and_the_rows_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 80_000;
    let expected = reference(dir.path(), |out| job(out, rows, 1_000_000));
    let (_coordinator, url) = coordinator(dir.path());
    let mut workers = vec![
        worker(dir.path(), &url, "w1", SECRET),
        worker(dir.path(), &url, "w2", SECRET),
    ];
    let out = dir.path().join("out");
    // 80 000 rows at 4 000 a second: about twenty seconds.
    let id = submit(&url, &job(&out, rows, 4_000));
    let completed = |url: &str| {
        let (_, c) = call("GET", &format!("{url}/jobs/{id}/checkpoints"), None);
        c["counts"]["completed"].as_u64().unwrap_or(0)
    };
    // Three times: after two more checkpoints, SIGKILL a worker and start another.
    for round in 0..3 {
        let before = completed(&url);
        wait_for(&url, &format!("/jobs/{id}"), |job| {
            ended(job) || completed(&url) >= before + 2
        });
        let mut killed = workers.remove(round % workers.len());
        killed.kill();
        workers.push(worker(dir.path(), &url, &format!("w{}", round + 3), SECRET));
    }
    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert!(job["restarts"].as_u64() >= Some(1), "{job}");
    assert_eq!(committed(&out), expected);
}

/// Nexmark qw (count and highest price per auction in 10 s windows) and qs (bids per
/// bidder in sessions) as job files at parallelism 4, checkpointing to S3.
fn nexmark(query: &str, out: &Path, checkpoints: &str) -> String {
    let (key, window, aggregates) = match query {
        "qw" => (
            "auction",
            "{type: tumbling, size: 10s}",
            "{count: count, max_price: max(price)}",
        ),
        _ => ("bidder", "{type: session, gap: 10s}", "{count: count}"),
    };
    format!(
        "name: {query}
parallelism: 4
checkpoints: {{interval: 1s, storage: '{checkpoints}'}}
restart: {{strategy: fixed-delay, attempts: 10, delay: 500ms}}
sources:
  - name: bids
    kind: bids
    events: 300000
    rate: 10
    source_parallelism: 4
    timestamp: date_time
    watermark: {{max_out_of_orderness: 4s}}
operators:
  - {{name: by-key, kind: key_by, input: bids, key: {key}}}
  - {{name: {query}, kind: window, input: by-key, window: {window}, aggregates: {aggregates}}}
sinks:
  - {{name: out, kind: file, input: {query}, path: '{}'}}
",
        out.display()
    )
}

#[test]
fn three_workers_run_nexmark_qw_and_qs_with_checkpoints_on_s3_as_one_process_does() {
    let Some(endpoint) = common::s3::endpoint() else {
        return;
    };
    let env = common::s3::env(&endpoint);
    let bucket = common::s3::fresh_bucket(&endpoint, "weir-cluster");
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator_with(dir.path(), &env);
    let _workers: Vec<Process> = (1..=3)
        .map(|i| worker_with(dir.path(), &url, &format!("w{i}"), SECRET, &env))
        .collect();
    for query in ["qw", "qs"] {
        let local = dir.path().join(format!("{query}-checkpoints"));
        let expected = reference(dir.path(), |out| {
            nexmark(query, out, local.to_str().unwrap())
        });
        let out = dir.path().join(format!("{query}-out"));
        let storage = format!("s3://{bucket}/{query}");
        let id = submit(&url, &nexmark(query, &out, &storage));
        let job = wait_for(&url, &format!("/jobs/{id}"), ended);
        assert_eq!(job["status"], "finished", "{query}: {job}");
        let (_, checkpoints) = call("GET", &format!("{url}/jobs/{id}/checkpoints"), None);
        assert!(
            checkpoints["counts"]["completed"].as_u64() >= Some(1),
            "{query}: {checkpoints}"
        );
        assert_eq!(committed(&out), expected, "{query}");
        std::fs::remove_dir_all(dir.path().join("reference")).unwrap();
    }
}

#[test]
fn a_worker_stopped_with_sigterm_leaves_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path());
    let mut leaving = worker(dir.path(), &url, "w1", SECRET);
    assert_eq!(registered_workers(&url), 1);
    let pid = leaving.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let status = leaving.child.wait().unwrap();
    assert!(status.success(), "{status}");
    // Gone at once, not after the heartbeat timeout.
    assert_eq!(registered_workers(&url), 0);
}

#[test]
fn a_worker_without_the_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path());
    let mut intruder = worker(dir.path(), &url, "w1", "not the secret of this cluster");
    let status = intruder.child.wait().unwrap();
    assert!(!status.success());
    assert!(intruder.first_line.is_empty(), "{}", intruder.first_line);
    assert_eq!(registered_workers(&url), 0);
}

/// A coordinator taking turns with others by the lease in `storage`. The lease
/// lasts 6 s: a coordinator fences itself when no renewal succeeded for half of
/// it, and 1 s was too short on a loaded 2-core machine (the active coordinator
/// of the takeover tests fenced itself while a compile ran beside the suite).
fn ha_coordinator(
    dir: &Path,
    name: &str,
    storage: &str,
    env: &[(&str, String)],
) -> (Process, String) {
    ha_coordinator_with(dir, name, storage, "6s", env)
}

fn ha_coordinator_with(
    dir: &Path,
    name: &str,
    storage: &str,
    lease_timeout: &str,
    env: &[(&str, String)],
) -> (Process, String) {
    let extra = ["--ha-storage", storage, "--lease-timeout", lease_timeout];
    start_coordinator(dir, name, &extra, env)
}

/// `GET /ready`: whether the coordinator acts, and its role as it says.
fn readiness(url: &str) -> (bool, Value) {
    let (status, answer) = call("GET", &format!("{url}/ready"), None);
    assert!(status == 200 || status == 503, "{status} {answer}");
    (status == 200, answer)
}

fn wait_until_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !readiness(url).0 {
        assert!(Instant::now() < deadline, "{url} never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where coordinators keep their lease and registry in these tests: a bucket of the
/// test S3 server when there is one, else a directory they share.
fn ha_storage(dir: &Path) -> (String, Vec<(&'static str, String)>) {
    match common::s3::endpoint() {
        Some(endpoint) => {
            let bucket = common::s3::fresh_bucket(&endpoint, "weir-ha");
            (format!("s3://{bucket}/ha"), common::s3::env(&endpoint))
        }
        None => (dir.join("shared").display().to_string(), Vec::new()),
    }
}

#[test]
fn a_standby_coordinator_takes_over_from_a_killed_one_and_the_rows_stay_exact() {
    takeover(false);
}

/// A coordinator paused (SIGSTOP) past its lease is a zombie when it wakes: it finds
/// the lease taken, stops acting and ends, and its jobs complete no checkpoint.
#[test]
fn a_paused_coordinator_wakes_as_a_zombie_that_stops_and_the_rows_stay_exact() {
    takeover(true);
}

fn signal(process: &Process, signal: &str) {
    let pid = process.child.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
}

/// Two coordinators and three workers run a job; the active coordinator is killed,
/// or paused until the standby has taken over and then woken; the standby finishes
/// the job with the rows of one process.
fn takeover(pause: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rows = 80_000;
    let expected = reference(dir.path(), |out| job(out, rows, 1_000_000));
    let (storage, env) = ha_storage(dir.path());
    let (mut first, first_url) = ha_coordinator(dir.path(), "c1", &storage, &env);
    wait_until_ready(&first_url);
    let (_second, second_url) = ha_coordinator(dir.path(), "c2", &storage, &env);
    // The second one waits, names the active one, and refuses work.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ready, role) = readiness(&second_url);
        assert!(!ready, "{role}");
        if role["active"] == first_url.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "{role}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, refused) = call("GET", &format!("{second_url}/jobs"), None);
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains(&first_url),
        "{refused}"
    );
    // The workers know both coordinators.
    let both = format!("{first_url},{second_url}");
    let _workers: Vec<Process> = (1..=3)
        .map(|i| worker_with(dir.path(), &both, &format!("w{i}"), SECRET, &env))
        .collect();
    assert_eq!(registered_workers(&first_url), 3);
    let out = dir.path().join("out");
    // 80 000 rows at 4 000 a second: about twenty seconds.
    let id = submit(&first_url, &job(&out, rows, 4_000));
    wait_for(&first_url, &format!("/jobs/{id}/checkpoints"), |c| {
        c["counts"]["completed"].as_u64() >= Some(2)
    });
    if pause {
        signal(&first, "-STOP");
    } else {
        first.kill();
    }
    // The standby takes the lease over, the workers follow it, and the job resumes
    // from its newest checkpoint there.
    wait_until_ready(&second_url);
    if pause {
        // Woken, the first one finds its lease gone and ends with an error.
        signal(&first, "-CONT");
        let status = first.child.wait().unwrap();
        assert!(!status.success(), "{status}");
    }
    let job = wait_for(&second_url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(registered_workers(&second_url), 3);
    assert_eq!(committed(&out), expected);
    let (_, role) = readiness(&second_url);
    assert!(role["epoch"].as_u64() >= Some(2), "{role}");
}

#[test]
fn of_two_coordinators_started_at_once_exactly_one_acts() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, env) = ha_storage(dir.path());
    let coordinators = [
        ha_coordinator(dir.path(), "c1", &storage, &env),
        ha_coordinator(dir.path(), "c2", &storage, &env),
    ];
    let urls: Vec<&str> = coordinators.iter().map(|(_, url)| url.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let active = loop {
        let ready: Vec<&str> = urls
            .iter()
            .copied()
            .filter(|url| readiness(url).0)
            .collect();
        assert!(ready.len() <= 1, "both act: {ready:?}");
        if let [active] = ready[..] {
            break active;
        }
        assert!(Instant::now() < deadline, "neither acts");
        std::thread::sleep(Duration::from_millis(50));
    };
    let standby = urls.iter().copied().find(|url| *url != active).unwrap();
    // For several lease timeouts: still exactly one, and the other names it.
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        assert!(readiness(active).0, "{active} stopped acting");
        let (ready, role) = readiness(standby);
        assert!(!ready, "both act: {role}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, role) = readiness(standby);
    assert_eq!(role["active"], active, "{role}");
    // A worker given only the standby follows it to the active coordinator.
    let _worker = worker_with(dir.path(), standby, "w1", SECRET, &env);
    assert_eq!(registered_workers(active), 1);
}

#[test]
fn a_coordinator_stopped_with_sigterm_hands_its_lease_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, env) = ha_storage(dir.path());
    // A lease timeout of ten minutes: only the release lets the standby in before it.
    let (mut first, first_url) = ha_coordinator_with(dir.path(), "c1", &storage, "10m", &env);
    wait_until_ready(&first_url);
    let (_second, second_url) = ha_coordinator_with(dir.path(), "c2", &storage, "10m", &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while readiness(&second_url).1["active"] != first_url.as_str() {
        assert!(Instant::now() < deadline, "the standby never saw the lease");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = first.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = first.child.wait().unwrap();
    assert!(status.success(), "{status}");
    wait_until_ready(&second_url);
}

/// Asked to (`--savepoint-on-stop`), a coordinator stopped with SIGTERM stops its
/// running job with a savepoint, records it as where the job resumes and releases
/// its lease; the standby resumes the job from that savepoint and finishes it with
/// the rows of one process.
#[test]
fn a_coordinator_stopped_with_sigterm_stops_its_jobs_with_savepoints_the_standby_resumes_from() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 80_000;
    let expected = reference(dir.path(), |out| job(out, rows, 1_000_000));
    // A shared directory, whose job records the test reads.
    let storage = dir.path().join("ha");
    let storage = storage.to_str().unwrap();
    let lease = ["--ha-storage", storage, "--lease-timeout", "10m"];
    let stopping = [&lease[..], &["--savepoint-on-stop"]].concat();
    let (mut first, first_url) = start_coordinator(dir.path(), "c1", &stopping, &[]);
    wait_until_ready(&first_url);
    let (_second, second_url) = start_coordinator(dir.path(), "c2", &lease, &[]);
    let both = format!("{first_url},{second_url}");
    let _workers: Vec<Process> = (1..=2)
        .map(|i| worker_with(dir.path(), &both, &format!("w{i}"), SECRET, &[]))
        .collect();
    let out = dir.path().join("out");
    // 80 000 rows at 4 000 a second: about twenty seconds.
    let id = submit(&first_url, &job(&out, rows, 4_000));
    wait_for(&first_url, &format!("/jobs/{id}/checkpoints"), |c| {
        c["counts"]["completed"].as_u64() >= Some(2)
    });
    signal(&first, "-TERM");
    let status = first.child.wait().unwrap();
    assert!(status.success(), "{status}");
    // Its record, as the standby reads it: still running, to resume from the
    // savepoint it was stopped with.
    let record = || -> Value {
        let text = std::fs::read(dir.path().join(format!("ha/jobs/{id}/job.json"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    };
    let stopped = record();
    assert_eq!(stopped["state"], "running", "{stopped}");
    let savepoint = stopped["resume_from"].as_str().unwrap().to_string();
    assert_eq!(stopped["savepoints"][0]["location"], savepoint.as_str());
    assert_eq!(stopped["savepoints"][0]["stop"], true, "{stopped}");
    assert!(
        Path::new(&savepoint).join("_metadata").exists(),
        "{savepoint}"
    );
    // The standby takes over at once (the lease was released) and resumes the job
    // from there.
    wait_until_ready(&second_url);
    let job = wait_for(&second_url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["server_restarts"], 1, "{job}");
    assert!(record()["resume_from"].is_null(), "{}", record());
    assert_eq!(committed(&out), expected);
}

/// [`job`] on RocksDB, with a standby copy of each subtask's state on another worker.
fn job_with_standbys(out: &Path, rows: u64, rate: u64) -> String {
    job(out, rows, rate).replace(
        "checkpoints: {interval: 200ms}",
        "checkpoints: {interval: 200ms, standbys: 1}\nstate_backend: rocksdb",
    )
}

/// The value of the Prometheus sample `name{job="…"}` of job `id` on `url`.
fn metric(url: &str, name: &str, id: &str) -> f64 {
    let (status, text) = common::server::http_text("GET", &format!("{url}/metrics"));
    assert_eq!(status, 200, "{text}");
    let prefix = format!("{name}{{job=\"{id}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn with_standbys_a_killed_workers_subtasks_restore_from_warm_copies() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 80_000;
    let expected = reference(dir.path(), |out| job_with_standbys(out, rows, 1_000_000));
    let (_coordinator, url) = coordinator(dir.path());
    let mut workers: Vec<Process> = (1..=3)
        .map(|i| worker(dir.path(), &url, &format!("w{i}"), SECRET))
        .collect();
    let out = dir.path().join("out");
    let id = submit(&url, &job_with_standbys(&out, rows, 4_000));
    // Workers register in turn and the slots go to them in the order of their ids,
    // which they draw at random: find the worker of slot 1 (subtask 1 of every task)
    // and the one that keeps its standby copy, as the worker that holds a copy of
    // subtask 1.
    let deadline = Instant::now() + Duration::from_secs(120);
    let keeper = loop {
        let found = (1..=3).find(|i| {
            let standby = dir.path().join(format!("w{i}/state/.standby/counts"));
            std::fs::read_dir(standby)
                .into_iter()
                .flatten()
                .flatten()
                .any(|operator| {
                    std::fs::read_dir(operator.path().join("1"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|copy| copy.file_name().to_string_lossy().starts_with("chk-"))
                })
        });
        if let Some(keeper) = found {
            break keeper;
        }
        assert!(
            Instant::now() < deadline,
            "no standby copy of subtask 1 was kept"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The worker running subtask 1 is the one whose local state holds it.
    let runner = (1..=3)
        .find(|i| {
            *i != keeper
                && std::fs::read_dir(dir.path().join(format!("w{i}/state/counts")))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|operator| operator.path().join("1").exists())
        })
        .expect("the worker running subtask 1");
    workers[runner - 1].kill();
    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert!(
        metric(&url, "weir_restore_standby_bytes", &id) > 0.0,
        "the moved subtask opened worker {keeper}'s standby copy"
    );
    assert_eq!(committed(&out), expected);
}

/// Hosts of their own on this machine: network namespaces, each joined by a veth
/// pair to a bridge in this one, whose addresses are `198.a.b.1` (this host, the
/// gateway) and `198.a.b.2…`. The test cuts and heals their links. Removed when
/// dropped.
struct Network {
    bridge: String,
    subnet: String,
    hosts: Vec<String>,
}

/// Runs `ip args`; what went wrong, if anything.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (Debian iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    /// `hosts` namespaces on a bridge, or why they cannot be made here (not root,
    /// no `ip`, a sandbox without network namespaces).
    fn new(hosts: usize) -> Result<Self, String> {
        let pid = std::process::id();
        let mut network = Self {
            bridge: format!("wrb{pid}"),
            // In 198.18.0.0/15, set aside for benchmarking networks (RFC 2544), so
            // that no route of the machine's own network is shadowed.
            subnet: format!("198.{}.{}", 18 + (pid / 250) % 2, pid % 250),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        let gateway = format!("{}/24", network.gateway());
        ip(&["addr", "add", &gateway, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for i in 0..hosts {
            let netns = format!("weir-{pid}-{i}");
            ip(&["netns", "add", &netns])?;
            network.hosts.push(netns.clone());
            let (outside, inside) = network.veth(i);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &netns])?;
            ip(&["link", "set", &outside, "master", &network.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let address = format!("{}/24", network.address(i));
            ip(&["-n", &netns, "addr", "add", &address, "dev", &inside])?;
            ip(&["-n", &netns, "link", "set", &inside, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// The two ends of host `i`'s link: on the bridge, and in its namespace.
    fn veth(&self, i: usize) -> (String, String) {
        let pid = std::process::id();
        (format!("wr{pid}h{i}"), format!("wr{pid}n{i}"))
    }

    /// This host's address on the bridge.
    fn gateway(&self) -> String {
        format!("{}.1", self.subnet)
    }

    fn address(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 2)
    }

    /// Pulls host `i`'s cable: its packets are dropped silently, to and from every
    /// other host, until `heal`.
    fn cut(&self, i: usize) {
        ip(&["link", "set", &self.veth(i).0, "down"]).unwrap();
    }

    fn heal(&self, i: usize) {
        ip(&["link", "set", &self.veth(i).0, "up"]).unwrap();
    }

    /// Host `i` can no longer reach this host (the coordinator's), only the others.
    fn cut_from_gateway(&self, i: usize, cut: bool) {
        let gateway = format!("{}/32", self.gateway());
        let action = if cut { "add" } else { "del" };
        ip(&["-n", &self.hosts[i], "route", action, "blackhole", &gateway]).unwrap();
    }

    /// Host `i` drops 30 % of its packets at random, both ways, until called with
    /// `lossy` false: iptables rules in its namespace (the kernel may have no `tc
    /// netem`). What went wrong, if it cannot.
    fn lossy(&self, i: usize, lossy: bool) -> Result<(), String> {
        let action = if lossy { "-A" } else { "-D" };
        for chain in ["INPUT", "OUTPUT"] {
            let rule = [
                "netns",
                "exec",
                &self.hosts[i],
                "iptables",
                action,
                chain,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.3",
                "-j",
                "DROP",
            ];
            ip(&rule)?;
        }
        Ok(())
    }

    /// A worker of the coordinator at `url` on host `i`.
    fn worker(&self, i: usize, dir: &Path, url: &str) -> Process {
        let data = dir.join(format!("host{i}"));
        let bind = format!("{}:0", self.address(i));
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.hosts[i], env!("CARGO_BIN_EXE_weir")]);
        let args = [
            "worker",
            "--coordinator",
            url,
            "--data-bind",
            &bind,
            "--data",
            data.to_str().unwrap(),
        ];
        Process::start(command, dir, &args, SECRET, &[])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for (i, netns) in self.hosts.iter().enumerate() {
            let _ = ip(&["netns", "del", netns]);
            let _ = ip(&["link", "del", &self.veth(i).0]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Two workers on hosts of their own run a job whose records cross between them.
/// First one worker loses 30 % of its packets for 10 s. Then its link is cut for
/// 10 s (every packet dropped silently, mid-frame or not): the job fails over to
/// the other worker, and the cut-off one, once healed, registers again. Then the
/// worker that now runs the whole job loses only its route to the coordinator for
/// 10 s while it still reaches the other worker: it gets no command, so it commits
/// nothing, and it stops its parts; the job moves to the other worker. The rows stay
/// exact: no output of a cut-off worker is committed next to its replacement's.
#[test]
fn workers_cut_off_by_a_network_partition_stop_committing_and_the_rows_stay_exact() {
    let network = match Network::new(2) {
        Ok(network) => network,
        Err(why) => {
            eprintln!("SKIPPED: network namespaces are unavailable here ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = 100_000;
    let expected = reference(dir.path(), |out| job(out, rows, 1_000_000));
    // Reachable from the other hosts, the coordinator needs a REST token.
    let token = "the token of the partitioned cluster";
    TOKEN.set(Some(token.to_string()));
    let bind = format!("{}:0", network.gateway());
    let (_coordinator, url) = start_coordinator(
        dir.path(),
        "coordinator",
        &["--bind", &bind, "--token", token],
        &[],
    );
    let _workers = [
        network.worker(0, dir.path(), &url),
        network.worker(1, dir.path(), &url),
    ];
    assert_eq!(registered_workers(&url), 2);
    let out = dir.path().join("out");
    // 100 000 rows at 2 000 a second: fifty seconds without the partitions.
    let id = submit(&url, &job(&out, rows, 2_000));
    let completed = || {
        let (_, c) = call("GET", &format!("{url}/jobs/{id}/checkpoints"), None);
        c["counts"]["completed"].as_u64().unwrap_or(0)
    };
    let running = |job: &Value| {
        assert!(!ended(job), "the job ended before the partition: {job}");
        true
    };
    wait_for(&url, &format!("/jobs/{id}"), |job| {
        running(job) && completed() >= 2
    });

    // A lossy link first: 30 % of one worker's packets dropped for 10 s, on the
    // data plane and the control plane. The job slows down or fails over.
    match network.lossy(0, true) {
        Ok(()) => {
            std::thread::sleep(Duration::from_secs(10));
            network.lossy(0, false).unwrap();
            let before = completed();
            wait_for(&url, &format!("/jobs/{id}"), |job| {
                running(job) && completed() >= before + 2
            });
        }
        Err(why) => eprintln!("SKIPPED the lossy link: {why}"),
    }

    network.cut(0);
    std::thread::sleep(Duration::from_secs(10));
    network.heal(0);
    wait_for(&url, "/cluster", |cluster| {
        cluster["workers"].as_object().map(|w| w.len()) == Some(2)
    });
    let before = completed();
    wait_for(&url, &format!("/jobs/{id}"), |job| {
        running(job) && completed() >= before + 2
    });

    // The job now runs on the other worker alone: it loses its route to the
    // coordinator, and the job moves back to the healed worker.
    network.cut_from_gateway(1, true);
    std::thread::sleep(Duration::from_secs(10));
    network.cut_from_gateway(1, false);

    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert!(job["restarts"].as_u64() >= Some(2), "{job}");
    assert_eq!(committed(&out), expected);
}

/// The test certificates (tests/fixtures/tls): `node.pem` names 127.0.0.1.
fn tls_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// With TLS, the coordinator serves HTTPS and the workers' data plane is TLS too
/// (the job's records cross between the workers); the rows are those of one
/// process.
#[test]
fn a_cluster_with_tls_commits_the_rows_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference(dir.path(), |out| job(out, 40_000, 1_000_000));
    let (cert, key, ca) = (
        tls_fixture("node.pem"),
        tls_fixture("node.key"),
        tls_fixture("ca.pem"),
    );
    let (_coordinator, url) = start_coordinator(
        dir.path(),
        "coordinator",
        &["--tls-cert", &cert, "--tls-key", &key],
        &[],
    );
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let tls = [
        ("WEIR_TLS_CA", ca.clone()),
        ("WEIR_TLS_CERT", cert.clone()),
        ("WEIR_TLS_KEY", key.clone()),
    ];
    let _workers: Vec<Process> = (1..=2)
        .map(|i| worker_with(dir.path(), &url, &format!("w{i}"), SECRET, &tls))
        .collect();
    assert_eq!(registered_workers(&url), 2);
    let out = dir.path().join("out");
    let id = submit(&url, &job(&out, 40_000, 20_000));
    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(committed(&out), expected);
    // The command-line client trusts the authority of WEIR_TLS_CA.
    let list = |ca: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["list", "--server", &url])
            .env_remove("WEIR_TOKEN");
        match ca {
            Some(ca) => command.env("WEIR_TLS_CA", ca),
            None => command.env_remove("WEIR_TLS_CA"),
        };
        command.output().unwrap()
    };
    let listed = list(Some(&ca));
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert!(!list(None).status.success());
}

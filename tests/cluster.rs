//! Cluster mode end to end, every role its own `weir` process on loopback: a
//! coordinator and its workers run a job file with checkpoints and the exactly-once
//! file sink, and its committed rows equal `weir run`'s in one process; a worker
//! killed with SIGKILL mid-run is replaced and the rows stay exact; a worker
//! without the secret is refused.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use common::server::{http, sorted};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "the secret of the test cluster";

/// A `weir` process killed (SIGKILL) when dropped.
struct Process {
    child: Child,
    first_line: String,
}

impl Process {
    fn start(cwd: &Path, args: &[&str], secret: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .current_dir(cwd)
            .env("WEIR_CLUSTER_SECRET", secret)
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
    let data = dir.join("coordinator");
    let process = Process::start(
        dir,
        &[
            "coordinator",
            "--bind",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--heartbeat-timeout",
            "2s",
        ],
        SECRET,
    );
    let url = process
        .first_line
        .trim()
        .strip_prefix("weir coordinator: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {:?}", process.first_line))
        .to_string();
    (process, url)
}

fn worker(dir: &Path, url: &str, name: &str, secret: &str) -> Process {
    let data = dir.join(name);
    Process::start(
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
    )
}

fn registered_workers(url: &str) -> usize {
    let (status, answer) = http("GET", &format!("{url}/cluster"), None, None);
    assert_eq!(status, 200, "{answer}");
    answer["workers"].as_object().map_or(0, |w| w.len())
}

/// Numbers counted and summed per class in 100 ms windows at parallelism 4: records
/// cross workers at the key_by.
fn job(out: &Path, rate: u64) -> String {
    format!(
        "name: counts
parallelism: 4
checkpoints: {{interval: 200ms}}
restart: {{strategy: fixed-delay, attempts: 10, delay: 500ms}}
sources:
  - {{name: numbers, kind: sequence, from: 1, to: 40000, rows_per_second: {rate}, timestamp: value}}
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

/// The rows `weir run` commits for the job in one process.
fn reference(dir: &Path) -> Vec<Value> {
    let out = dir.join("reference");
    let file = dir.join("reference.yaml");
    std::fs::write(&file, job(&out, 1_000_000)).unwrap();
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
    let (status, answer) = http(
        "POST",
        &format!("{url}/jobs"),
        None,
        Some(&json!({"job": text, "file": "counts.yaml"})),
    );
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn wait_for(url: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, answer) = http("GET", &format!("{url}{path}"), None, None);
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
    let expected = reference(dir.path());
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
    let id = submit(&url, &job(&out, 20_000));
    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(committed(&out), expected);
}

#[test]
fn a_killed_worker_is_replaced_and_the_rows_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference(dir.path());
    let (_coordinator, url) = coordinator(dir.path());
    let mut first = worker(dir.path(), &url, "w1", SECRET);
    let _second = worker(dir.path(), &url, "w2", SECRET);
    let out = dir.path().join("out");
    // 40 000 rows at 4 000 a second: about ten seconds.
    let id = submit(&url, &job(&out, 4_000));
    wait_for(&url, &format!("/jobs/{id}/checkpoints"), |c| {
        c["counts"]["completed"].as_u64() >= Some(2)
    });
    first.kill();
    let _third = worker(dir.path(), &url, "w3", SECRET);
    let job = wait_for(&url, &format!("/jobs/{id}"), ended);
    assert_eq!(job["status"], "finished", "{job}");
    assert!(job["restarts"].as_u64() >= Some(1), "{job}");
    assert_eq!(committed(&out), expected);
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

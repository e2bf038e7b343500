//! `weir verify` end to end: the example job `examples/exactly-once.yaml` (a windowed
//! count to the epoch-file sink and the numbers to the object-store sink) crashed 100
//! times on the local filesystem and 100 times with checkpoints and output on the S3
//! server, each time with SIGKILLs and every failpoint; the committed output must be
//! the reference run's, row for row. And the jobs it must refuse.
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;
use common::s3;
use serde_json::Value;
use std::process::{Command, Output};

const JOB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/exactly-once.yaml");
const CRASHES: u64 = 100;

fn verify(args: &[&str], env: &[(&str, String)]) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("verify")
        .args(args)
        .arg("--scratch")
        .arg(scratch.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// The JSON report of `weir verify ARGS` (with `--json`), which must succeed;
/// `what` prefixes the failure message.
fn report_of(args: &[&str], env: &[(&str, String)], what: &str) -> Value {
    let out = verify(args, env);
    assert!(
        out.status.success(),
        "{what}: weir verify failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the example with `CRASHES` crashes and checks the JSON report.
fn crashes_lose_and_repeat_nothing(extra: &[&str], env: &[(&str, String)]) {
    let crashes = CRASHES.to_string();
    let mut args = vec![JOB, "--crashes", &crashes, "--seed", "16", "--json"];
    args.extend_from_slice(extra);
    let report = report_of(&args, env, "");
    let kills = report["kills"].as_u64().unwrap();
    let failpoints: u64 = report["failpoint_crashes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(report["finished_early"], false, "{report:#}");
    assert_eq!(kills + failpoints, CRASHES, "{report:#}");
    assert!(failpoints > 0, "failpoint crashes too: {report:#}");
    let sinks = report["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2, "{report:#}");
    for sink in sinks {
        assert!(sink["expected"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(sink["actual"], sink["expected"], "{report:#}");
        assert_eq!(sink["lost"], 0, "{report:#}");
        assert_eq!(sink["duplicated"], 0, "{report:#}");
    }
    // The all_numbers sink holds every number once.
    let numbers = sinks.iter().find(|s| s["sink"] == "all_numbers").unwrap();
    assert_eq!(numbers["expected"], 60_000, "{report:#}");
}

/// The SQL example (`examples/exactly-once.sql`: a window aggregation from a
/// window TVF into a filesystem table) crashed 30 times: its stream names, so the
/// uids of its state, are the same in every process, and its output exactly once.
#[test]
fn an_sql_job_crashed_thirty_times_loses_and_repeats_nothing() {
    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/exactly-once.sql");
    let report = report_of(&[job, "--crashes", "30", "--seed", "5", "--json"], &[], "");
    let sink = &report["sinks"][0];
    assert_eq!(sink["sink"], "windows", "{report:#}");
    assert!(sink["expected"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(sink["actual"], sink["expected"], "{report:#}");
    assert_eq!(sink["lost"], 0, "{report:#}");
    assert_eq!(sink["duplicated"], 0, "{report:#}");
}

/// Cumulate windows (several windows of one start, each its own state namespace)
/// crashed 20 times, on the heap and on RocksDB: every window restores and fires
/// once.
#[test]
fn cumulate_windows_crashed_twenty_times_lose_and_repeat_nothing() {
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/exactly-once.sql"
    ))
    .unwrap()
    .replace(
        "TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '0.1' SECOND)",
        "CUMULATE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '0.1' SECOND, INTERVAL '0.5' SECOND)",
    );
    assert!(sql.contains("CUMULATE"));
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("cumulate.sql");
    std::fs::write(&job, sql).unwrap();
    let job = job.to_str().unwrap();
    let mut backends = vec!["heap"];
    if cfg!(feature = "rocksdb") {
        backends.push("rocksdb");
    }
    for backend in backends {
        let report = report_of(
            &[
                job,
                "--crashes",
                "20",
                "--seed",
                "9",
                "--json",
                "--backend",
                backend,
            ],
            &[],
            backend,
        );
        let sink = &report["sinks"][0];
        assert!(sink["expected"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(sink["lost"], 0, "{backend}: {report:#}");
        assert_eq!(sink["duplicated"], 0, "{backend}: {report:#}");
    }
}

#[test]
fn a_hundred_crashes_on_the_local_filesystem_lose_and_repeat_nothing() {
    crashes_lose_and_repeat_nothing(&[], &[]);
}

#[test]
fn a_hundred_crashes_with_checkpoints_and_output_on_s3_lose_and_repeat_nothing() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = s3::fresh_bucket(&endpoint, "weir-verify");
    let storage = format!("s3://{bucket}/verify");
    crashes_lose_and_repeat_nothing(&["--storage", &storage], &s3::env(&endpoint));
    // A verification that passed leaves nothing behind in the bucket.
    let store = weir_objects::BlockingObjectStore::open(
        &weir::checkpoint::StorageConfig::new(&storage).with_s3(s3::options(&endpoint)),
    )
    .unwrap();
    let left: Vec<String> = store
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert!(left.is_empty(), "left under {storage}: {left:?}");
}

#[test]
fn jobs_whose_runs_cannot_be_compared_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("stdout.yaml");
    std::fs::write(
        &job,
        "
name: stdout
sources:
  - {name: lines, kind: kafka, bootstrap: 127.0.0.1:9, topic: input, start: latest, format: text}
sinks:
  - {name: out, kind: stdout, input: lines}
",
    )
    .unwrap();
    let out = verify(&[job.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stdout.yaml cannot be verified"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sink `out` writes to standard output"),
        "{stderr}"
    );
    assert!(
        stderr.contains("starts at the latest offsets of `input`"),
        "{stderr}"
    );
    assert!(stderr.contains("without `bounded: true`"), "{stderr}");
}

//! The job server end to end, through the `weir` binary on loopback: the REST API
//! (submit, status, savepoint, stop with a savepoint, resume from it at another
//! parallelism, cancel), the CLI verbs that call it, bad submissions, a server
//! killed with SIGKILL and started again, access tokens, and the OpenAPI document.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use common::server::{http, numbers_job, numbers_rows, sorted, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn weir(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(cwd)
        .env_remove("WEIR_TOKEN")
        .env_remove("WEIR_SERVER")
        .output()
        .expect("weir runs")
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn committed(dir: &Path) -> Vec<Value> {
    sorted(weir::sinks::read_committed(dir).unwrap())
}

#[test]
fn submit_savepoint_stop_resume_at_another_parallelism_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let out = dir.path().join("out");
    let file = dir.path().join("numbers.yaml");
    std::fs::write(&file, numbers_job("numbers", 4000, 400, &out)).unwrap();

    // Submit through the CLI; it prints the id.
    let id = stdout_of(&weir(
        dir.path(),
        &["submit", file.to_str().unwrap(), "--server", &server.url],
    ));
    assert!(id.starts_with("numbers-"), "{id}");
    let listed = stdout_of(&weir(dir.path(), &["list", "--server", &server.url]));
    assert!(
        listed.contains(&id) && listed.contains("numbers"),
        "{listed}"
    );

    // Running, with its graph and a checkpoint.
    let job = server.wait_for(&format!("/jobs/{id}"), Duration::from_secs(60), |j| {
        j["status"] == "running"
    });
    let names: Vec<&str> = job["graph"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    // The engine's graph: the file's streams and the conversions it adds, in a line.
    for name in ["numbers", "doubled", "out"] {
        assert!(names.contains(&name), "{names:?}");
    }
    assert_eq!(
        job["graph"]["edges"].as_array().unwrap().len(),
        names.len() - 1
    );
    server.wait_for(
        &format!("/jobs/{id}/checkpoints"),
        Duration::from_secs(60),
        |c| c["counts"]["completed"].as_u64() >= Some(1),
    );
    // Rates appear after two samples; the Prometheus endpoint names the job.
    let job = server.wait_for(&format!("/jobs/{id}"), Duration::from_secs(60), |j| {
        j["graph"]["vertices"]
            .as_array()
            .is_some_and(|v| v.iter().all(|v| v["records_per_second"].is_number()))
    });
    assert!(
        job["graph"]["vertices"][0]["records_out"].as_u64() > Some(0),
        "{job}"
    );
    let metrics = http("GET", &format!("{}/metrics", server.url), None, None);
    assert_eq!(metrics.0, 200);
    let status = stdout_of(&weir(dir.path(), &["status", &id, "--server", &server.url]));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["id"], id.as_str());
    assert!(status["checkpoints"]["history"].as_array().is_some());

    // A savepoint through the CLI; the job goes on and lists it.
    let savepoint = stdout_of(&weir(
        dir.path(),
        &["savepoint", &id, "--server", &server.url],
    ));
    assert!(
        Path::new(&savepoint).join("_metadata").exists(),
        "{savepoint}"
    );
    let (code, checkpoints) = server.call("GET", &format!("/jobs/{id}/checkpoints"), None);
    assert_eq!(code, 200);
    assert_eq!(checkpoints["savepoints"][0]["location"], savepoint.as_str());
    assert_eq!(checkpoints["counts"]["savepoints"], 1);

    // Stop with a savepoint through the REST API.
    let (code, stopped) = server.call("POST", &format!("/jobs/{id}/stop"), None);
    assert_eq!(code, 200, "{stopped}");
    assert_eq!(stopped["status"], "suspended");
    let location = stopped["location"].as_str().unwrap().to_string();
    let (code, answer) = server.call("POST", &format!("/jobs/{id}/savepoints"), None);
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("not running"),
        "{answer}"
    );

    // Resume from it at parallelism 3 (faster now) and let it finish.
    let (code, resumed) = server.call(
        "POST",
        "/jobs",
        Some(&json!({
            "job": numbers_job("numbers", 4000, 20_000, &out),
            "file": "numbers.yaml",
            "from_savepoint": location,
            "parallelism": 3,
        })),
    );
    assert_eq!(code, 201, "{resumed}");
    let resumed_id = resumed["id"].as_str().unwrap();
    assert_ne!(resumed_id, id);
    assert_eq!(server.wait_ended(resumed_id), "finished");
    let job = server.call("GET", &format!("/jobs/{resumed_id}"), None).1;
    assert_eq!(job["options"]["parallelism"], 3);
    let doubled = job["graph"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "doubled")
        .unwrap();
    assert_eq!(doubled["parallelism"], 3);
    // Every number exactly once across the two runs.
    assert_eq!(committed(&out), numbers_rows(4000));

    // Cancel a long job through the CLI; cancelling again is refused.
    let long = dir.path().join("long.yaml");
    std::fs::write(
        &long,
        numbers_job("long", 1_000_000, 100, &dir.path().join("long-out")),
    )
    .unwrap();
    let long_id = stdout_of(&weir(
        dir.path(),
        &["submit", long.to_str().unwrap(), "--server", &server.url],
    ));
    let cancelled = stdout_of(&weir(
        dir.path(),
        &["cancel", &long_id, "--server", &server.url],
    ));
    assert_eq!(cancelled, format!("{long_id} cancelled"));
    let (code, answer) = server.call("DELETE", &format!("/jobs/{long_id}"), None);
    assert_eq!(code, 409, "{answer}");

    // Unknown ids are named.
    for (method, path) in [
        ("GET", "/jobs/nope"),
        ("GET", "/jobs/nope/checkpoints"),
        ("POST", "/jobs/nope/savepoints"),
        ("POST", "/jobs/nope/stop"),
        ("DELETE", "/jobs/nope"),
    ] {
        let (code, answer) = server.call(method, path, None);
        assert_eq!(code, 404, "{method} {path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("`nope`"),
            "{answer}"
        );
    }
    let out = weir(dir.path(), &["status", "nope", "--server", &server.url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job `nope`"));
}

#[test]
fn a_bad_submission_gets_400_with_every_problem_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(dir.path(), &data, &[]);
    let bad = "sources:\n  - {name: n, kind: sequence, from: 1, to: ten}\noperators:\n  - {name: m, kind: mapp, input: n}\nsinks:\n  - {name: o, kind: stdout, input: x}\n";
    let (code, answer) = server.call(
        "POST",
        "/jobs",
        Some(&json!({"job": bad, "file": "bad.yaml", "parallelism": 0})),
    );
    assert_eq!(code, 400, "{answer}");
    let problems: Vec<&str> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        problems,
        [
            "parallelism: expected at least 1, found 0",
            "bad.yaml:2:44: sources[0].to: expected an integer, found a string",
            "bad.yaml:4:21: operators[0].kind: unknown operator kind `mapp`: expected one of filter, map, key_by, window, top, union, udf, window_join, interval_join, broadcast_join, temporal_join",
            "bad.yaml:6:36: sinks[0].input: undefined stream `x`: expected one of m, n",
        ]
    );
    // The CLI prints the same problems.
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let out = weir(dir.path(), &["submit", "bad.yaml", "--server", &server.url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("400"), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:6:36: sinks[0].input: undefined stream `x`"),
        "{stderr}"
    );

    // Not a submission at all; an unknown option; a savepoint that does not exist.
    let (code, answer) = server.call("POST", "/jobs", Some(&json!({"text": "x"})));
    assert_eq!(code, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object"),
        "{answer}"
    );
    let good = numbers_job("fine", 10, 100, &dir.path().join("o"));
    let (code, answer) = server.call(
        "POST",
        "/jobs",
        Some(
            &json!({"job": good, "from_savepoint": dir.path().join("none").display().to_string()}),
        ),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["problems"][0]
            .as_str()
            .unwrap()
            .contains("no savepoint at"),
        "{answer}"
    );

    assert_eq!(server.call("GET", "/jobs", None).1, json!({"jobs": []}));
    let entries = std::fs::read_dir(data.join("jobs")).unwrap().count();
    assert_eq!(entries, 0, "a rejected submission left files behind");
}

/// Submits the numbers 1..=3000 at 500 a second to `server` as job `name` and waits
/// for two checkpoints of it; its id.
fn run_numbers_job(server: &Server, name: &str, out: &Path) -> String {
    let (code, job) = server.call(
        "POST",
        "/jobs",
        Some(&json!({"job": numbers_job(name, 3000, 500, out)})),
    );
    assert_eq!(code, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    server.wait_for(
        &format!("/jobs/{id}/checkpoints"),
        Duration::from_secs(60),
        |c| c["counts"]["completed"].as_u64() >= Some(2),
    );
    id
}

#[test]
fn a_killed_server_resumes_its_running_jobs_from_their_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let mut server = Server::start(dir.path(), &data, &[]);
    let id = run_numbers_job(&server, "survivor", &out);
    server.kill();

    let server = Server::start(dir.path(), &data, &[]);
    assert_eq!(server.wait_ended(&id), "finished");
    let job = server.call("GET", &format!("/jobs/{id}"), None).1;
    assert_eq!(job["server_restarts"], 1);
    assert_eq!(committed(&out), numbers_rows(3000));
}

/// A finished job shows its final counters, not the last sample taken while it
/// ran (a job shorter than the sampling second showed none).
#[test]
fn a_finished_job_shows_its_final_counters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let out = dir.path().join("out");
    let (code, job) = server.call(
        "POST",
        "/jobs",
        Some(&json!({"job": numbers_job("quick", 3000, 1_000_000, &out)})),
    );
    assert_eq!(code, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(server.wait_ended(&id), "finished");
    let job = server.call("GET", &format!("/jobs/{id}"), None).1;
    let vertex = |name: &str| {
        job["graph"]["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no vertex {name} in {job}"))
            .clone()
    };
    assert_eq!(vertex("numbers")["records_out"], 3000, "{job}");
    assert_eq!(vertex("doubled")["records_in"], 3000, "{job}");
}

/// With `--savepoint-on-stop`, a server stopped with SIGTERM stops its running job
/// with a savepoint first, and the next start resumes it from there.
#[test]
fn a_server_stopped_with_sigterm_stops_its_jobs_with_savepoints_and_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let mut server = Server::start(dir.path(), &data, &["--savepoint-on-stop"]);
    let id = run_numbers_job(&server, "stopped", &out);
    let pid = server.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    // Its savepoint's output is committed before the process ends.
    let before = committed(&out).len();
    assert!(before > 0);

    let server = Server::start(dir.path(), &data, &[]);
    assert_eq!(server.wait_ended(&id), "finished");
    let job = server.call("GET", &format!("/jobs/{id}"), None).1;
    assert_eq!(job["server_restarts"], 1);
    let savepoints = job["savepoints"].as_array().unwrap();
    assert_eq!(savepoints.len(), 1, "{job}");
    assert_eq!(savepoints[0]["stop"], true, "{job}");
    assert_eq!(committed(&out), numbers_rows(3000));
}

#[test]
fn a_token_is_required_off_loopback_and_then_on_every_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(
        dir.path(),
        &["serve", "--bind", "0.0.0.0:0", "--data", "data"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without an access token"),
        "{stderr}"
    );

    let server = Server::start(dir.path(), &dir.path().join("data"), &["--token", "s3cret"]);
    let url = format!("{}/jobs", server.url);
    let (code, answer) = http("GET", &url, None, None);
    assert_eq!(code, 401);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{answer}"
    );
    assert_eq!(http("GET", &url, Some("wrong"), None).0, 401);
    assert_eq!(http("POST", &url, None, Some(&json!({"job": "x"}))).0, 401);
    assert_eq!(http("GET", &url, Some("s3cret"), None).0, 200);
    // The page and the API description are public; they hold no job data.
    assert_eq!(
        http("GET", &format!("{}/openapi.json", server.url), None, None).0,
        200
    );
    let out = weir(dir.path(), &["list", "--server", &server.url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let listed = stdout_of(&weir(
        dir.path(),
        &["list", "--server", &server.url, "--token", "s3cret"],
    ));
    assert!(listed.starts_with("ID"), "{listed}");
}

#[test]
fn every_route_of_the_openapi_document_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let (code, document) = server.call("GET", "/openapi.json", None);
    assert_eq!(code, 200);
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 10);
    for (path, item) in paths {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            let concrete = path
                .replace("{id}", "nope")
                .replace("{uid}", "op")
                .replace("{state}", "st");
            let method = method.to_uppercase();
            let body = (method == "POST" && concrete == "/jobs").then(|| json!({}));
            let (code, answer) = server.call(&method, &concrete, body.as_ref());
            assert_ne!(code, 405, "{method} {path}");
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(!error.starts_with("no route"), "{method} {path}: {answer}");
        }
    }
    let (code, answer) = server.call("GET", "/nothing", None);
    assert_eq!(code, 404);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("no route GET /nothing"));
}

#[test]
fn a_recorded_job_whose_file_no_longer_validates_is_listed_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, &[]);
    let job = numbers_job("broken", 1_000_000, 100, &dir.path().join("out"));
    let (code, answer) = server.call("POST", "/jobs", Some(&json!({"job": job})));
    assert_eq!(code, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    server.kill();

    // The record is edited behind the server's back.
    let path = data.join("jobs").join(&id).join("job.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["text"] = json!("sources: [{name: n, kind: nope}]\n");
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();

    let server = Server::start(dir.path(), &data, &[]);
    let (_, job) = server.call("GET", &format!("/jobs/{id}"), None);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("its job file no longer validates"),
        "{job}"
    );
    let (code, _) = server.call("POST", &format!("/jobs/{id}/savepoints"), None);
    assert_eq!(code, 409);
}

/// SQL statements are a job like a job file: submitted through the CLI (a `.sql`
/// file), run to the end with exactly-once output, shown as submitted; bad SQL
/// gets 400 with its line and column, and nothing is created.
#[test]
fn sql_statements_are_submitted_run_and_shown_like_job_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let out = dir.path().join("out");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
CREATE TABLE numbers (n BIGINT, twice AS n * 2)
  WITH ('connector' = 'datagen', 'fields.n.kind' = 'sequence',
        'fields.n.start' = '1', 'fields.n.end' = '1000');
CREATE TABLE doubled (n BIGINT, twice BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{}');
INSERT INTO doubled SELECT n, twice FROM numbers WHERE MOD(n, 10) = 0;
",
        out.display()
    );
    let file = dir.path().join("doubling.sql");
    std::fs::write(&file, &sql).unwrap();
    let id = stdout_of(&weir(
        dir.path(),
        &["submit", file.to_str().unwrap(), "--server", &server.url],
    ));
    assert!(id.starts_with("doubling-"), "{id}");
    let job = server.wait_for(&format!("/jobs/{id}"), Duration::from_secs(60), |j| {
        j["status"] == "finished"
    });
    assert_eq!(job["text"], sql.as_str());
    assert!(
        job["file"].as_str().unwrap().ends_with("doubling.sql"),
        "{job}"
    );
    let rows = committed(&out);
    let expected: Vec<Value> = (1..=100)
        .map(|i| json!({"n": i * 10, "twice": i * 20}))
        .collect();
    assert_eq!(rows, sorted(expected));

    let (code, answer) = server.call(
        "POST",
        "/jobs",
        Some(&json!({"job": "SELECT n FROM nowhere;", "file": "bad.sql"})),
    );
    assert_eq!(code, 400, "{answer}");
    let problem = answer["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with("bad.sql:1:1: unknown table or view `nowhere`"),
        "{problem}"
    );
    let (_, jobs) = server.call("GET", "/jobs", None);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
}

/// Numbers 1..=`to` at `rate` a second from one source subtask, counted and summed
/// per class (`value % 5`) in one long window (`per_class`), written to `sink`;
/// `settings` are the job's top-level lines.
fn classes_job(settings: &str, to: u64, rate: u64, sink: &str) -> String {
    format!(
        "name: classes
parallelism: 2
{settings}
sources:
  - {{name: numbers, kind: sequence, from: 1, to: {to}, rows_per_second: {rate}, timestamp: value, parallelism: 1}}
operators:
  - {{name: classes, kind: map, input: numbers, fields: {{class: value % 5, value: value}}}}
  - {{name: by_class, kind: key_by, input: classes, key: class}}
  - name: per_class
    kind: window
    input: by_class
    window: {{type: tumbling, size: 1000s}}
    aggregates: {{numbers: count, total: sum(value)}}
sinks:
  - {sink}
"
    )
}

/// Lookups and scans of a running job file's window state, over the REST API and
/// the CLI, with its position: the sums agree with the counts (one source subtask
/// sends each class its numbers in order), and errors name what is wrong.
#[test]
fn a_running_jobs_window_state_answers_lookups_and_scans_as_of_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let out = dir.path().join("out");
    let text = classes_job(
        "checkpoints: {interval: 100ms}",
        3000,
        500,
        &format!(
            "{{name: out, kind: file, input: per_class, path: '{}'}}",
            out.display()
        ),
    );
    let (code, answer) = server.call("POST", "/jobs", Some(&json!({ "job": text })));
    assert_eq!(code, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let state = format!("/jobs/{id}/state/per_class/window-contents");
    // Class 3 holds 3, 8, 13, …: after c of them, their sum is 5c(c+1)/2 - 2c.
    let mut counts = Vec::new();
    let (mut checkpoint, mut watermarked) = (None, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counts.len() < 5 || counts.last() == counts.first() || !watermarked {
        assert!(std::time::Instant::now() < deadline, "{counts:?}");
        let (code, answer) = server.call("GET", &format!("{state}?key=3"), None);
        if code == 409 {
            continue; // not running yet
        }
        assert_eq!(code, 200, "{answer}");
        let Some(entry) = answer["entries"].get(0) else {
            continue;
        };
        assert_eq!(entry["key"], 3, "{answer}");
        let window = &entry["value"][0];
        assert_eq!(
            (window["start"].as_i64(), window["end"].as_i64()),
            (Some(0), Some(1_000_000))
        );
        let (c, total) = (
            window["value"]["numbers"].as_i64().unwrap(),
            window["value"]["total"].as_i64().unwrap(),
        );
        assert_eq!(total, 5 * c * (c + 1) / 2 - 2 * c, "{answer}");
        assert!(
            counts.last().is_none_or(|&last| last <= c),
            "{counts:?} then {c}"
        );
        counts.push(c);
        checkpoint = answer["positions"][0]["checkpoint"].as_u64().or(checkpoint);
        watermarked |= answer["positions"][0]["watermark"].as_i64().is_some();
        std::thread::sleep(Duration::from_millis(50));
    }
    // A position bound: the answer waits for a checkpoint two later.
    let asked = checkpoint.unwrap_or(0) + 2;
    let (code, answer) = server.call(
        "GET",
        &format!("{state}?key=3&at_least_checkpoint={asked}&timeout_ms=20000"),
        None,
    );
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer["positions"][0]["checkpoint"].as_u64() >= Some(asked),
        "{answer}"
    );
    // A scan by pages of two: every class once.
    let mut keys = Vec::new();
    let mut cursor = String::new();
    loop {
        let (code, page) = server.call("GET", &format!("{state}?limit=2{cursor}"), None);
        assert_eq!(code, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2, "{page}");
        keys.extend(entries.iter().map(|e| e["key"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    keys.sort_unstable();
    assert_eq!(keys, [0, 1, 2, 3, 4]);
    // The CLI: a lookup, and a whole scan.
    let got: Value = serde_json::from_str(&stdout_of(&weir(
        dir.path(),
        &[
            "state",
            "get",
            &id,
            "per_class",
            "window-contents",
            "3",
            "--server",
            &server.url,
        ],
    )))
    .unwrap();
    assert_eq!(got["key"], 3, "{got}");
    assert!(got["value"][0]["value"]["numbers"].as_i64().unwrap() >= *counts.last().unwrap());
    let scanned = stdout_of(&weir(
        dir.path(),
        &[
            "state",
            "scan",
            &id,
            "per_class",
            "window-contents",
            "--limit",
            "2",
            "--all",
            "--server",
            &server.url,
        ],
    ));
    assert_eq!(scanned.lines().count(), 5, "{scanned}");
    // Errors name what is wrong.
    let (code, answer) = server.call(
        "GET",
        &format!("/jobs/{id}/state/nope/window-contents?key=3"),
        None,
    );
    assert_eq!(code, 404, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("`per_class`"),
        "{answer}"
    );
    let (code, answer) = server.call(
        "GET",
        &format!("/jobs/{id}/state/per_class/nope?key=3"),
        None,
    );
    assert_eq!(code, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("`window-contents`"),
        "{answer}"
    );
    let (code, answer) = server.call("GET", &format!("{state}?key=three"), None);
    assert_eq!(code, 400, "{answer}");
    let (code, answer) = server.call("GET", &format!("{state}?key=%22three%22"), None);
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("class"),
        "{answer}"
    );
    // At the end, the window's row holds the final counts.
    assert_eq!(server.wait_ended(&id), "finished");
    let rows = committed(&out);
    assert_eq!(rows.len(), 5, "{rows:?}");
    let three = rows.iter().find(|r| r["class"] == 3).unwrap();
    assert_eq!(three["numbers"], 600, "{three}");
    assert!(*counts.last().unwrap() <= 600);
}

#[test]
fn heap_window_state_in_a_savepoint_and_a_checkpoint_reads_offline_in_the_job_files_terms() {
    window_state_reads_offline("heap");
}

#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn rocksdb_window_state_in_a_savepoint_and_a_checkpoint_reads_offline_in_the_job_files_terms() {
    window_state_reads_offline("rocksdb");
}

/// `weir state read` of a running job's savepoint and of one of its checkpoints
/// (native RocksDB files on RocksDB, read back key by key): every class once, its
/// count and sum those of its first numbers, as the job file names them.
fn window_state_reads_offline(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let storage = dir.path().join("checkpoints");
    let file = dir.path().join("classes.yaml");
    let settings = format!(
        "state_backend: {backend}\ncheckpoints: {{interval: 100ms, storage: '{}'}}",
        storage.display()
    );
    let sink = "{name: out, kind: blackhole, input: per_class}";
    std::fs::write(&file, classes_job(&settings, 100_000, 1000, sink)).unwrap();
    let id = stdout_of(&weir(
        dir.path(),
        &["submit", file.to_str().unwrap(), "--server", &server.url],
    ));
    server.wait_for(
        &format!("/jobs/{id}/checkpoints"),
        Duration::from_secs(60),
        |c| c["counts"]["completed"].as_u64() >= Some(3),
    );
    let (code, answer) = server.call("POST", &format!("/jobs/{id}/savepoints"), None);
    assert_eq!(code, 200, "{answer}");
    let savepoint = answer["location"].as_str().unwrap().to_string();
    // Class k holds k, k + 5, …: its first c numbers sum to c·a + 5·c(c-1)/2.
    let check = |lines: &str| {
        let rows: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let classes: Vec<i64> = rows.iter().map(|r| r["key"].as_i64().unwrap()).collect();
        assert_eq!(classes, [0, 1, 2, 3, 4], "{lines}");
        for row in &rows {
            let k = row["key"].as_i64().unwrap();
            let window = &row["value"][0];
            assert_eq!(window["end"], 1_000_000, "{row}");
            let c = window["value"]["numbers"].as_i64().unwrap();
            let first = if k == 0 { 5 } else { k };
            assert!(c > 0, "{row}");
            assert_eq!(
                window["value"]["total"],
                c * first + 5 * c * (c - 1) / 2,
                "{row}"
            );
        }
    };
    let read = |path: &str, extra: &[&str]| {
        let mut args = vec!["state", "read", path, "--uid", "per_class"];
        args.extend_from_slice(extra);
        weir(dir.path(), &args)
    };
    let job_file = ["--job-file", file.to_str().unwrap()];
    check(&stdout_of(&read(&savepoint, &job_file)));
    // A checkpoint directory of the job: <storage>/<job>/chk-<n>.
    let checkpoint = std::fs::read_dir(&storage)
        .unwrap()
        .flat_map(|job| std::fs::read_dir(job.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("chk-")
                && p.join("_metadata").exists()
        })
        .max_by_key(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.trim_start_matches("chk-").parse::<u64>().unwrap_or(0)
        })
        .unwrap();
    check(&stdout_of(&read(checkpoint.to_str().unwrap(), &job_file)));
    // Without the job file: the engine's own forms.
    let raw = stdout_of(&read(&savepoint, &[]));
    assert!(raw.contains(r#"{"key":[{"Int":0}]"#), "{raw}");
    // Errors name what is there.
    let wrong = read(&savepoint, &["--state", "nope"]);
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(message.contains("`window-contents`"), "{message}");
    let wrong = weir(dir.path(), &["state", "read", &savepoint, "--uid", "nope"]);
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(message.contains("`per_class`"), "{message}");
    let (code, answer) = server.call("DELETE", &format!("/jobs/{id}"), None);
    assert_eq!(code, 200, "{answer}");
}

//! A `weir serve` process on loopback for the job server tests, and a small
//! blocking JSON-over-HTTP helper.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `weir serve`; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl Server {
    /// Starts `weir serve --bind 127.0.0.1:0 --data <data>` (plus `extra` arguments)
    /// in `cwd` and waits for its "listening on" line.
    pub fn start(cwd: &Path, data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .current_dir(cwd)
            .env_remove("WEIR_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("weir serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request to this server.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(method, &format!("{}{path}", self.url), None, body)
    }

    /// Polls `GET path` until `done` holds for the answer (panics after `limit`).
    pub fn wait_for(&self, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, answer) = self.call("GET", path, None);
            if status == 200 && done(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} did not reach the expected state: {answer}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until job `id` has ended; returns its status.
    pub fn wait_ended(&self, id: &str) -> String {
        let job = self.wait_for(&format!("/jobs/{id}"), Duration::from_secs(120), |j| {
            ["finished", "cancelled", "suspended", "failed"]
                .contains(&j["status"].as_str().unwrap_or_default())
        });
        job["status"].as_str().unwrap().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP request with an optional bearer token and JSON body; the status and the
/// JSON answer (`Value::Null` if it is not JSON).
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let (status, text) = request(method, url, token, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One HTTP request without a token or body; the status and the answer as text
/// (`/metrics`).
pub fn http_text(method: &str, url: &str) -> (u16, String) {
    request(method, url, None, None)
}

fn request(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        weir::checkpoint::install_tls_provider();
        // Over HTTPS, the servers of the tests present the test certificate.
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let mut request = client.request(method.parse().unwrap(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    })
}

/// A job file: the numbers 1..=`to`, `rate` per second, mapped to `{n, double}` and
/// written exactly once as JSON lines under `out`, checkpointed every 200 ms.
pub fn numbers_job(name: &str, to: i64, rate: u64, out: &Path) -> String {
    format!(
        "name: {name}
parallelism: 2
checkpoints: {{interval: 200ms}}
restart: {{strategy: none}}
sources:
  - {{name: numbers, kind: sequence, from: 1, to: {to}, rows_per_second: {rate}}}
operators:
  - name: doubled
    kind: map
    input: numbers
    fields: {{n: value, double: value * 2}}
sinks:
  - {{name: out, kind: file, input: doubled, path: '{}'}}
",
        out.display()
    )
}

/// The rows `numbers_job` writes for 1..=`to`, sorted.
pub fn numbers_rows(to: i64) -> Vec<Value> {
    sorted(
        (1..=to)
            .map(|n| serde_json::json!({"n": n, "double": 2 * n}))
            .collect(),
    )
}

/// Rows sorted by their text.
pub fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

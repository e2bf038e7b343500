//! The web UI in headless Chromium, driven over the W3C WebDriver protocol
//! (chromedriver): the page shows a running job's graph and its checkpoint chart;
//! clicking "Savepoint" takes one, and the page lists it.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (tests/run.sh installs
//! them). Without them the test is skipped, unless WEIR_REQUIRE_SERVICES=1, when it
//! fails.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use common::server::{http, numbers_job, Server};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver and one browser session; both ended when dropped.
struct Browser {
    driver: Child,
    url: String,
    session: String,
}

impl Browser {
    fn start(chromium: &str, chromedriver: &str) -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if listening
                && http("GET", &format!("{url}/status"), None, None).1["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Self {
            driver,
            url,
            session: String::new(),
        };
        let created = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"]
                }
            }}}),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let (code, answer) = http(method, &format!("{}{path}", self.url), None, Some(&body));
        assert_eq!(code, 200, "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn script(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Runs `script` until it returns a truthy value (panics after a minute).
    fn wait_until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.script(script);
            if !(value.is_null() || value == false || value == 0 || value == "") {
                return value;
            }
            assert!(Instant::now() < deadline, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let element = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        let id = element[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {element}"))
            .to_string();
        self.session("POST", &format!("/element/{id}/click"), json!({}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                http(
                    "DELETE",
                    &format!("{}/session/{}", self.url, self.session),
                    None,
                    None,
                )
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_page_shows_a_running_job_and_takes_a_savepoint() {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        assert!(
            std::env::var("WEIR_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "chromium and chromedriver are required (WEIR_REQUIRE_SERVICES=1): apt-get install chromium chromium-driver"
        );
        eprintln!("skipped: chromium or chromedriver not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), &[]);
    let job = numbers_job("web", 1_000_000, 200, &dir.path().join("out"));
    let (code, answer) = server.call("POST", "/jobs", Some(&json!({"job": job})));
    assert_eq!(code, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();

    let browser = Browser::start(&chromium, &chromedriver);
    browser.session(
        "POST",
        "/url",
        json!({"url": format!("{}/?job={id}", server.url)}),
    );

    // The job list, the graph's three boxes and the checkpoint chart's bars.
    browser.wait_until(
        "the job in the list",
        &format!("return [...document.querySelectorAll('#jobs tr')].some(r => r.dataset.id === '{id}' && r.textContent.includes('running'))"),
    );
    let (_, job) = server.call("GET", &format!("/jobs/{id}"), None);
    let vertices = job["graph"]["vertices"].as_array().unwrap().len();
    let names = browser.wait_until(
        "the job graph",
        &format!("const v = [...document.querySelectorAll('#graph .vertex')].map(g => g.dataset.name); return v.length === {vertices} ? v : null"),
    );
    for name in ["numbers", "doubled", "out"] {
        assert!(names.as_array().unwrap().contains(&json!(name)), "{names}");
    }
    // The job as submitted, under its kind.
    let shown = browser.wait_until(
        "the job file",
        "const s = document.getElementById('source'); return s && s.textContent ? [document.getElementById('source-title').textContent, s.textContent] : null",
    );
    assert_eq!(shown[0], "Job file");
    assert_eq!(shown[1], job["text"], "{shown}");
    browser.wait_until(
        "the graph's arrows and rates",
        &format!("return document.querySelectorAll('#graph .edge path').length === {} && [...document.querySelectorAll('#graph .rate')].every(t => !t.textContent.startsWith('–'))", vertices - 1),
    );
    browser.wait_until(
        "checkpoints in the chart",
        "return document.querySelectorAll('#checkpoint-chart .checkpoint-bar').length >= 1",
    );

    // Take a savepoint with the button; the page lists it where the API says it is.
    browser.click("#savepoint-button");
    let shown = browser.wait_until(
        "the savepoint",
        "const li = document.querySelector('#savepoints li'); return li ? li.textContent : null",
    );
    let (_, checkpoints) = server.call("GET", &format!("/jobs/{id}/checkpoints"), None);
    let location = checkpoints["savepoints"][0]["location"].as_str().unwrap();
    assert!(
        shown.as_str().unwrap().starts_with(location),
        "{shown} vs {location}"
    );
    let message = browser.script("return document.getElementById('message').textContent");
    assert_eq!(message, json!(format!("Savepoint written to {location}")));
    drop(browser);

    let (code, _) = server.call("DELETE", &format!("/jobs/{id}"), None);
    assert_eq!(code, 200);
}

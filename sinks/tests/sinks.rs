//! The sinks at the end of real jobs.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use serde::Serialize;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use weir_dataflow::testing::CollectionSource;
use weir_dataflow::{DataflowError, JobBuilder, JobConfig, WatermarkStrategy};
use weir_sinks::{BlackholeSink, CollectSink, JsonLinesSink, StdoutJsonSink};

fn job(parallelism: usize) -> JobBuilder {
    JobBuilder::new(JobConfig {
        parallelism,
        batch_size: 100,
        ..JobConfig::default()
    })
}

#[test]
fn blackhole_counts_every_record_of_every_subtask() {
    let job = job(3);
    let (sink, count) = BlackholeSink::new();
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory((0..10_007u64).collect()),
    )
    .sink("blackhole", sink);
    job.execute().unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 10_007);
}

#[test]
fn collect_sink_is_reexported() {
    let job = job(2);
    let (sink, collected) = CollectSink::new();
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory(vec![3, 1, 2]),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    let mut out = collected.take();
    out.sort_unstable();
    assert_eq!(out, vec![1, 2, 3]);
}

/// A writer shared by all subtasks, like stdout.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Serialize)]
struct Row {
    id: u64,
    text: String,
}

#[test]
fn json_lines_from_parallel_subtasks_are_never_split() {
    let job = job(4);
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let rows: Vec<Row> = (0..20_000)
        .map(|id| Row {
            id,
            text: "x".repeat((id % 50) as usize),
        })
        .collect();
    job.source(
        "rows",
        WatermarkStrategy::none(),
        CollectionSource::factory(rows),
    )
    .sink("json", JsonLinesSink::factory(move |_| writer.clone()));
    job.execute().unwrap();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let mut ids: Vec<u64> = text
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                value["text"].as_str().unwrap().len() as u64,
                value["id"].as_u64().unwrap() % 50
            );
            value["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20_000).collect::<Vec<_>>());
}

const CHILD: &str = "WEIR_SINKS_STDOUT_CHILD";

/// Run as a child process by `stdout_closed_by_reader_fails_the_job_cleanly`:
/// writes many JSON lines to stdout and reports how the job ended by exit code.
#[test]
fn stdout_child_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let job = job(2);
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory((0..5_000_000u64).collect()),
    )
    .sink("stdout-json", StdoutJsonSink::factory());
    let code = match job.execute() {
        Err(DataflowError::Io { operator, source })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            eprintln!("job failed in {operator}: {source}");
            42
        }
        Err(other) => {
            eprintln!("unexpected error: {other}");
            43
        }
        Ok(_) => 44,
    };
    // Exit before the test harness prints to the closed stdout.
    std::process::exit(code);
}

#[test]
fn stdout_closed_by_reader_fails_the_job_cleanly() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "stdout_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = vec![0; 64 * 1024];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(42), "stderr: {stderr}");
    assert!(stderr.contains("broken pipe"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

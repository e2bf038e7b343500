//! The bench queries as job files (`benches/jobs/*.yaml`, what `weir bench job`
//! runs) give exactly the rows of the typed queries (`weir bench nexmark`), on 300k
//! bids at parallelism 2.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use serde::Serialize;
use std::time::Duration;
use weir::dataflow::Stream;
use weir::jobfile::{Registry, SinkKind};
use weir::nexmark::{self, Bid};

const EVENTS: u64 = 300_000;
const PARALLELISM: usize = 2;

/// The typed query's rows, as JSON text, sorted.
fn typed<T: Serialize + Send + Clone + 'static>(
    query: impl FnOnce(&Stream<Bid>) -> Stream<T>,
) -> Vec<String> {
    let mut rows: Vec<String> = common::typed::rows(EVENTS, PARALLELISM, query)
        .iter()
        .map(serde_json::Value::to_string)
        .collect();
    rows.sort_unstable();
    rows
}

/// The job file's rows (its sink made a local exactly-once file sink), as JSON
/// text, sorted.
fn job_file(name: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/benches/jobs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let mut plan = weir::jobfile::load_file(std::path::Path::new(&path), &Registry::default())
        .unwrap_or_else(|e| panic!("{path}: {:?}", e.problems()));
    weir::job_bench::resize(&mut plan, EVENTS).unwrap();
    plan.spec.parallelism = PARALLELISM;
    plan.spec.checkpoints.storage = dir.path().join("checkpoints").display().to_string();
    plan.spec.checkpoints.interval = Duration::from_millis(200);
    let out = dir.path().join("out");
    for sink in &mut plan.sinks {
        sink.spec.kind = SinkKind::File {
            path: out.display().to_string(),
        };
    }
    weir::jobs::run(plan, &weir::jobs::RunOptions::default()).expect("the job file runs");
    let rows: Vec<serde_json::Value> = weir::sinks::read_committed(&out).unwrap();
    let mut rows: Vec<String> = rows.iter().map(serde_json::Value::to_string).collect();
    rows.sort_unstable();
    rows
}

fn same(name: &str, typed: Vec<String>, job_file: Vec<String>) {
    assert!(!typed.is_empty(), "{name}: the typed query gives rows");
    assert_eq!(
        job_file.len(),
        typed.len(),
        "{name}: {} rows from the job file, {} from the typed query; first of each: {:?} / {:?}",
        job_file.len(),
        typed.len(),
        job_file.first(),
        typed.first()
    );
    if let Some((i, (a, b))) = job_file
        .iter()
        .zip(&typed)
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!("{name}: row {i} differs: job file {a}, typed {b}");
    }
}

#[test]
fn q0_as_a_job_file_gives_the_typed_rows() {
    same("q0", typed(nexmark::q0), job_file("q0"));
}

#[test]
fn q1_as_a_job_file_gives_the_typed_rows() {
    same("q1", typed(nexmark::q1), job_file("q1"));
}

#[test]
fn q2_as_a_job_file_gives_the_typed_rows() {
    same("q2", typed(nexmark::q2), job_file("q2"));
}

#[test]
fn qw_as_a_job_file_gives_the_typed_rows() {
    same("qw", typed(nexmark::qw), job_file("qw"));
}

#[test]
fn q5_as_a_job_file_gives_the_typed_rows() {
    same("q5", typed(nexmark::q5), job_file("q5"));
}

#[test]
fn q7_as_a_job_file_gives_the_typed_rows() {
    same("q7", typed(nexmark::q7), job_file("q7"));
}

#[test]
fn qs_as_a_job_file_gives_the_typed_rows() {
    same("qs", typed(nexmark::qs), job_file("qs"));
}

/// A job-file key (one value inline, or several) hashes and serializes exactly as
/// the row of its values that keyed streams used before: the same key groups, and
/// keyed state in savepoints taken before reads back.
#[test]
fn job_file_keys_hash_and_serialize_as_rows_of_their_values() {
    use weir::jobfile::{Key, Row, Str, Value};
    let row = Row(vec![
        Value::Int(7),
        Value::String(Str::from_static("seven")),
        Value::Float(0.5),
    ]);
    for fields in [vec![0], vec![1], vec![0, 1, 2], vec![]] {
        let key = Key::of(&row, &fields);
        let as_row = Row(fields.iter().map(|&f| row.0[f].clone()).collect());
        assert_eq!(key.values(), &as_row.0[..]);
        assert_eq!(
            weir::state::stable_hash(&key),
            weir::state::stable_hash(&as_row),
            "{fields:?}"
        );
        let bytes = weir::state::encode("key", &key).unwrap();
        assert_eq!(
            bytes,
            weir::state::encode("key", &as_row).unwrap(),
            "{fields:?}"
        );
        let back: Key = weir::state::decode("key", &bytes).unwrap();
        assert_eq!(back, key);
    }
}

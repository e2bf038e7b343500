//! The example job files run through the `weir` binary, their output checked against
//! the same computation done here; `weir validate` on a bad file.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use common::s3;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn weir(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("weir runs")
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[test]
fn bids_per_auction_counts_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(dir.path(), &["run", &example("bids-per-auction.yaml")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // events 100000, rate 10, source_parallelism 2 (the generator's default);
    // filter auction % 100 = 7 and price > 1000; tumbling 10 s windows per auction.
    let mut windows: BTreeMap<(i64, i64), (i64, i64, i64)> = BTreeMap::new();
    for i in 1..=100_000 {
        let bid = weir::nexmark::bid(i, 100_000, 2, 10);
        if bid.auction % 100 != 7 || bid.price <= 1000 {
            continue;
        }
        let start = bid.date_time - bid.date_time.rem_euclid(10_000);
        let w = windows
            .entry((bid.auction, start))
            .or_insert((0, i64::MIN, 0));
        w.0 += 1;
        w.1 = w.1.max(bid.price);
        w.2 += bid.price;
    }
    let expected: Vec<Value> = windows
        .into_iter()
        .map(|((auction, start), (count, top, sum))| {
            json!({"auction": auction, "window_start": start, "window_end": start + 10_000,
                   "bids": count, "top_price": top, "mean_price": sum as f64 / count as f64})
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(sorted(rows), sorted(expected));
}

#[test]
fn sequence_union_writes_odd_squares_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(
        dir.path(),
        &["run", &example("sequence-union.yaml"), "--parallelism", "3"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = weir::sinks::read_committed(&dir.path().join("weir-data/out")).unwrap();
    let expected: Vec<Value> = (1..=500)
        .chain(1001..=1500)
        .filter(|n| n % 2 == 1)
        .map(|n: i64| json!({"n": n, "square": n * n, "parity": "odd"}))
        .collect();
    assert_eq!(sorted(rows), sorted(expected));
}

/// A source's computed fields: appended in order (each may read the ones before
/// it), event time from one of them, read by a window; an unknown field in one is
/// an error at its position.
#[test]
fn computed_fields_of_a_source_feed_event_time_and_windows() {
    let dir = tempfile::tempdir().unwrap();
    let job = "name: computed
parallelism: 2
checkpoints: {interval: 100ms}
sources:
  - name: numbers
    kind: sequence
    from: 1
    to: 1000
    computed:
      class: value % 3
      ts: to_timestamp(value * 10)
      label: concat('c', to_string(class))
    timestamp: ts
operators:
  - {name: by_label, kind: key_by, input: numbers, key: label}
  - name: counts
    kind: window
    input: by_label
    window: {type: tumbling, size: 1s}
    aggregates: {n: count, total: sum(value)}
sinks:
  - {name: out, kind: file, input: counts, path: ./out}
";
    std::fs::write(dir.path().join("computed.yaml"), job).unwrap();
    let out = weir(dir.path(), &["run", "computed.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = sorted(weir::sinks::read_committed(&dir.path().join("out")).unwrap());
    // Windows of 1 s hold the numbers 100 apart (n * 10 ms), per class.
    let mut expected = Vec::new();
    for window in 0..=10i64 {
        for class in 0..3i64 {
            let numbers: Vec<i64> = (1..=1000)
                .filter(|n| n * 10 / 1000 == window && n % 3 == class)
                .collect();
            if !numbers.is_empty() {
                expected.push(json!({
                    "label": format!("c{class}"),
                    "window_start": window * 1000,
                    "window_end": (window + 1) * 1000,
                    "n": numbers.len(),
                    "total": numbers.iter().sum::<i64>(),
                }));
            }
        }
    }
    assert_eq!(rows, sorted(expected));

    std::fs::write(
        dir.path().join("bad.yaml"),
        job.replace("value % 3", "valu % 3"),
    )
    .unwrap();
    // A computed field that fails on a row fails the job naming the field.
    std::fs::write(
        dir.path().join("failing.yaml"),
        job.replace("class: value % 3", "class: 10 / (value - 5)")
            .replace(
                "parallelism: 2",
                "parallelism: 2\nrestart: {strategy: none}",
            ),
    )
    .unwrap();
    let out = weir(dir.path(), &["run", "failing.yaml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("computed field `class`") && stderr.contains("division by zero"),
        "{stderr}"
    );

    let out = weir(dir.path(), &["validate", "bad.yaml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:10:14: sources[0].computed.class: in expression `valu % 3` at character 1: unknown field `valu`: expected one of value"),
        "{stderr}"
    );
}

#[test]
fn every_example_validates() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example("")).unwrap() {
        let path = entry.unwrap().path();
        let out = weir(dir.path(), &["validate", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
    }
}

#[test]
fn validate_prints_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "sources:\n  - {name: n, kind: sequence, from: 1, to: ten}\noperators:\n  - {name: m, kind: mapp, input: n}\nsinks:\n  - {name: o, kind: stdout, input: x}\n",
    )
    .unwrap();
    let out = weir(dir.path(), &["validate", "bad.yaml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "bad.yaml:2:44: sources[0].to: expected an integer, found a string",
            "bad.yaml:4:21: operators[0].kind: unknown operator kind `mapp`: expected one of filter, map, key_by, window, top, union, udf, window_join, interval_join, broadcast_join, temporal_join",
            "bad.yaml:6:36: sinks[0].input: undefined stream `x`: expected one of m, n",
        ],
        "{stderr}"
    );
    assert!(lines[3].contains("3 problem(s)"), "{stderr}");
}

/// A file source reading JSON lines and a headed CSV file, with event time from a
/// field, windowed per key; a row that does not fit the schema fails the job with
/// the source's name and what was expected.
#[test]
fn file_sources_read_json_lines_and_csv_into_typed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(input.join("json")).unwrap();
    std::fs::create_dir_all(input.join("csv")).unwrap();
    let mut json_lines = String::new();
    let mut csv = String::from("ts,user,amount\n");
    let mut expected: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
    for i in 0..2_000i64 {
        let (user, amount, ts) = (format!("u{}", i % 5), (i % 13) as f64 + 0.5, i * 7);
        if i % 2 == 0 {
            json_lines.push_str(&format!(
                "{{\"user\":\"{user}\",\"amount\":{amount},\"ts\":{ts}}}\n"
            ));
        } else {
            csv.push_str(&format!("{ts},{user},{amount}\n"));
        }
        let window = ts - ts % 1_000;
        let e = expected.entry((user, window)).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += amount;
    }
    std::fs::write(input.join("json/part-0.jsonl"), json_lines).unwrap();
    std::fs::write(input.join("csv/part-0.csv"), csv).unwrap();
    let job = format!(
        "
name: file-sources
parallelism: 2
checkpoints: {{interval: 100ms}}
sources:
  - name: from_json
    kind: file
    path: {json}
    schema: {{user: string, amount: float, ts: timestamp}}
    timestamp: ts
  - name: from_csv
    kind: file
    path: {csv}
    format: csv
    schema: {{user: string, amount: float, ts: timestamp}}
    timestamp: ts
operators:
  - {{name: all, kind: union, inputs: [from_json, from_csv]}}
  - {{name: by_user, kind: key_by, input: all, key: user}}
  - name: totals
    kind: window
    input: by_user
    window: {{type: tumbling, size: 1s}}
    aggregates: {{n: count, total: sum(amount)}}
sinks: [{{name: out, kind: stdout, input: totals}}]
",
        json = input.join("json").display(),
        csv = input.join("csv").display(),
    );
    std::fs::write(dir.path().join("job.yaml"), &job).unwrap();
    let out = weir(dir.path(), &["run", "job.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<(String, i64), (i64, f64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            (
                (
                    row["user"].as_str().unwrap().to_string(),
                    row["window_start"].as_i64().unwrap(),
                ),
                (row["n"].as_i64().unwrap(), row["total"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // A CSV row whose amount is not a number.
    std::fs::write(input.join("csv/part-1.csv"), "ts,user,amount\n5,u1,lots\n").unwrap();
    let bad = job.replace(
        "checkpoints: {interval: 100ms}",
        "checkpoints: {interval: 100ms}\nrestart: {strategy: none}",
    );
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    std::fs::remove_dir_all(dir.path().join("weir-data")).ok();
    let out = weir(dir.path(), &["run", "bad.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("from_csv")
            && stderr.contains("part-1.csv line 2")
            && stderr.contains("field `amount`: expected a float, got `lots`"),
        "{stderr}"
    );

    // A JSON line whose amount is not a number: named by object and line too.
    std::fs::remove_file(input.join("csv/part-1.csv")).unwrap();
    let good = r#"{"user": "u1", "amount": 1.5, "ts": 7}"#;
    let bad = r#"{"user": "u1", "amount": "lots", "ts": 8}"#;
    std::fs::write(input.join("json/part-1.jsonl"), format!("{good}\n{bad}\n")).unwrap();
    std::fs::remove_dir_all(dir.path().join("weir-data")).ok();
    let out = weir(dir.path(), &["run", "bad.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("from_json")
            && stderr.contains("part-1.jsonl line 2")
            && stderr.contains("field `amount`: expected a float value, got \"lots\""),
        "{stderr}"
    );
}

/// A job file's sliding window (Kafka Streams' windows by time difference) over an
/// out-of-order file: one row per distinct set of a user's rows within 100 ms of
/// each other, checked against the windows computed here by brute force, its
/// `window_end` the last millisecond plus one. A sliding window with an allowed
/// lateness, or without its time difference, is refused by name.
#[test]
fn a_sliding_window_of_a_job_file_has_one_row_per_distinct_set_of_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    let mut rows: Vec<(String, i64, i64)> = Vec::new();
    for i in 0..3_000i64 {
        // Time rises by 0-12 ms a row, moved back by up to 29 ms.
        let ts = 1_000_000 + i * 6 + (i * 7) % 13 - (i * 31) % 29;
        let (user, amount) = (format!("u{}", i * 7 % 11), i % 17);
        lines.push_str(&format!(
            "{{\"user\":\"{user}\",\"amount\":{amount},\"ts\":{ts}}}\n"
        ));
        rows.push((user, ts, amount));
    }
    std::fs::write(dir.path().join("rows.jsonl"), lines).unwrap();
    let expected: BTreeMap<(String, i64, i64), (i64, i64)> =
        weir::dataflow::testing::time_difference_windows(&rows, 100)
            .into_iter()
            .map(|(user, start, end, n, total)| ((user, start, end), (n as i64, total)))
            .collect();
    let job = format!(
        "
name: sliding
parallelism: 2
checkpoints: {{interval: 100ms}}
sources:
  - name: rows
    kind: file
    path: {path}
    schema: {{user: string, amount: int, ts: timestamp}}
    timestamp: ts
    watermark: {{max_out_of_orderness: 50ms}}
operators:
  - {{name: by_user, kind: key_by, input: rows, key: user}}
  - name: totals
    kind: window
    input: by_user
    window: {{type: sliding, time_difference: 100ms, grace: 10ms}}
    retention: 1s
    aggregates: {{n: count, total: sum(amount)}}
sinks: [{{name: out, kind: stdout, input: totals}}]
",
        path = dir.path().join("rows.jsonl").display(),
    );
    std::fs::write(dir.path().join("job.yaml"), &job).unwrap();
    let out = weir(dir.path(), &["run", "job.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<(String, i64, i64), (i64, i64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            (
                (
                    row["user"].as_str().unwrap().to_string(),
                    row["window_start"].as_i64().unwrap(),
                    row["window_end"].as_i64().unwrap(),
                ),
                (row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    let refused = [
        (
            "window: {type: sliding, time_difference: 100ms, grace: 10ms}\n    retention: 1s",
            "window: {type: sliding, time_difference: 100ms}\n    allowed_lateness: 1s",
            "expected no `allowed_lateness`",
        ),
        (
            "window: {type: sliding, time_difference: 100ms, grace: 10ms}",
            "window: {type: sliding, grace: 10ms}",
            "time_difference",
        ),
    ];
    for (from, to, says) in refused {
        std::fs::write(dir.path().join("bad.yaml"), job.replace(from, to)).unwrap();
        let out = weir(dir.path(), &["validate", "bad.yaml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}");
        assert!(
            stderr.contains(says) && stderr.contains("operators[1].window"),
            "{stderr}"
        );
    }
}

/// A job file's broadcast join (Kafka Streams' stream-GlobalKTable join): a table
/// of 13 classes, read from a file into broadcast state on every subtask, joined
/// into each number of a stream by its class. Each joined row carries its class's
/// table row; once the table is in, every number is joined, each once: the
/// numbers each of the three subtasks emits two seconds or more after it starts
/// (the sequence is split into three ranges of 2,000, each at 500 a second).
/// Its inputs are checked like a join's.
#[test]
fn a_broadcast_join_joins_each_row_with_its_key_s_table_row() {
    let dir = tempfile::tempdir().unwrap();
    let table: String = (0..13)
        .map(|id| {
            format!(
                "{{\"id\":{id},\"name\":\"class-{id}\",\"rate\":{}}}\n",
                id * 10
            )
        })
        .collect();
    std::fs::write(dir.path().join("classes.jsonl"), table).unwrap();
    let job = format!(
        "
name: lookup
parallelism: 3
checkpoints: {{interval: 100ms}}
sources:
  - name: numbers
    kind: sequence
    from: 1
    to: 6000
    rows_per_second: 1500
    computed: {{class: value % 13}}
  - name: classes
    kind: file
    path: {path}
    schema: {{id: int, name: string, rate: int}}
operators:
  - {{name: by_class, kind: key_by, input: numbers, key: class}}
  - {{name: by_id, kind: key_by, input: classes, key: id}}
  - {{name: joined, kind: broadcast_join, inputs: [by_class, by_id]}}
sinks: [{{name: out, kind: stdout, input: joined}}]
",
        path = dir.path().join("classes.jsonl").display(),
    );
    std::fs::write(dir.path().join("job.yaml"), &job).unwrap();
    let out = weir(dir.path(), &["run", "job.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut values = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let (value, class) = (
            row["value"].as_i64().unwrap(),
            row["class"].as_i64().unwrap(),
        );
        assert_eq!(class, value % 13, "{row}");
        assert_eq!(row["name"], json!(format!("class-{class}")), "{row}");
        assert_eq!(row["rate"], json!(class * 10), "{row}");
        values.push(value);
    }
    values.sort();
    let joined = values.len();
    values.dedup();
    assert_eq!(values.len(), joined, "a number joined twice");
    let after_two_seconds = |v: &i64| (v - 1) % 2_000 >= 1_000;
    let late: Vec<i64> = values.into_iter().filter(after_two_seconds).collect();
    let all: Vec<i64> = (1..=6_000).filter(after_two_seconds).collect();
    assert_eq!(late, all);

    let refused = [
        (
            "inputs: [by_class, by_id]",
            "inputs: [by_class]",
            "expected `inputs: [LEFT, RIGHT]`",
        ),
        (
            "inputs: [by_class, by_id]",
            "inputs: [by_class, classes]",
            "expected `classes` to be a key_by",
        ),
    ];
    for (from, to, says) in refused {
        std::fs::write(dir.path().join("bad.yaml"), job.replace(from, to)).unwrap();
        let out = weir(dir.path(), &["validate", "bad.yaml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// A job file's temporal join: each order joins its item's price valid at the
/// order's time, from a versioned table of prices that arrive out of order and
/// delete an item (`deleted: gone`) from a version on; checked against the prices
/// computed here. Orders whose item has no price then (none yet, or deleted) are
/// dropped.
#[test]
fn a_temporal_join_prices_each_order_as_of_its_time() {
    let dir = tempfile::tempdir().unwrap();
    // (arrival, line) sorted by arrival: out of order by up to 39 ms.
    let mut prices: Vec<(i64, String)> = Vec::new();
    let mut versions: Vec<(i64, i64, i64, bool)> = Vec::new(); // item, ts, price, gone
    for i in 0..2_000i64 {
        let (ts, item, price, gone) = (
            1_000_000 + i * 10 + (i * 7) % 10,
            i * 13 % 50,
            i % 97 + 1,
            i % 9 == 0,
        );
        prices.push((
            ts + (i * 31) % 40,
            format!("{{\"item\":{item},\"price\":{price},\"ts\":{ts},\"gone\":{gone}}}"),
        ));
        versions.push((item, ts, price, gone));
    }
    let mut orders: Vec<(i64, String)> = Vec::new();
    let mut expected: Vec<(i64, i64, i64, i64)> = Vec::new(); // item, qty, ts, price
    for j in 0..3_000i64 {
        let (ts, item, qty) = (1_000_000 + j * 7, j * 17 % 50, j);
        orders.push((
            ts + (j * 23) % 40,
            format!("{{\"item\":{item},\"qty\":{qty},\"ts\":{ts}}}"),
        ));
        let valid = versions
            .iter()
            .filter(|v| v.0 == item && v.1 <= ts)
            .max_by_key(|v| v.1);
        if let Some(&(_, _, price, false)) = valid {
            expected.push((item, qty, ts, price));
        }
    }
    for (name, mut lines) in [("prices.jsonl", prices), ("orders.jsonl", orders)] {
        lines.sort();
        let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    expected.sort();
    assert!(expected.len() > 2_000, "{}", expected.len());
    let job = format!(
        "
name: priced
parallelism: 2
checkpoints: {{interval: 100ms}}
sources:
  - name: prices
    kind: file
    path: {prices}
    schema: {{item: int, price: int, ts: timestamp, gone: bool}}
    timestamp: ts
    watermark: {{max_out_of_orderness: 50ms}}
  - name: orders
    kind: file
    path: {orders}
    schema: {{item: int, qty: int, ts: timestamp}}
    timestamp: ts
    watermark: {{max_out_of_orderness: 50ms}}
operators:
  - {{name: by_item, kind: key_by, input: orders, key: item}}
  - {{name: prices_by_item, kind: key_by, input: prices, key: item}}
  - name: priced
    kind: temporal_join
    inputs: [by_item, prices_by_item]
    retention: 10s
    deleted: gone
sinks: [{{name: out, kind: stdout, input: priced}}]
",
        prices = dir.path().join("prices.jsonl").display(),
        orders = dir.path().join("orders.jsonl").display(),
    );
    std::fs::write(dir.path().join("job.yaml"), &job).unwrap();
    let out = weir(dir.path(), &["run", "job.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<(i64, i64, i64, i64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            assert_eq!(row["gone"], json!(false), "{row}");
            (
                row["item"].as_i64().unwrap(),
                row["qty"].as_i64().unwrap(),
                row["ts"].as_i64().unwrap(),
                row["price"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    std::fs::write(
        dir.path().join("bad.yaml"),
        job.replace("deleted: gone", "deleted: price"),
    )
    .unwrap();
    let out = weir(dir.path(), &["validate", "bad.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`deleted` names a bool field of the table's rows: `price` is int"),
        "{stderr}"
    );
}

/// A window join and an interval join of two file sources, every output row
/// checked against the pairs computed here.
#[test]
fn window_and_interval_joins_pair_rows_of_equal_keys() {
    let dir = tempfile::tempdir().unwrap();
    let orders: Vec<(i64, i64, i64, i64)> = (0..300).map(|i| (i % 4, i, i * 3, i * 37)).collect();
    let payments: Vec<(i64, i64, i64)> = (0..200).map(|j| (j % 4, j, j * 53 + 11)).collect();
    let lines = |rows: Vec<String>| rows.join("\n") + "\n";
    std::fs::write(
        dir.path().join("orders.jsonl"),
        lines(
            orders
                .iter()
                .map(|(u, o, a, t)| {
                    json!({"user": u, "order": o, "amount": a, "ts": t}).to_string()
                })
                .collect(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("payments.jsonl"),
        lines(
            payments
                .iter()
                .map(|(u, p, t)| json!({"user": u, "paid": p, "ts": t}).to_string())
                .collect(),
        ),
    )
    .unwrap();
    let job = "
name: joins
parallelism: 2
checkpoints: {interval: 100ms}
restart: {strategy: none}
sources:
  - {name: orders, kind: file, path: orders.jsonl, timestamp: ts,
     schema: {user: int, order: int, amount: int, ts: timestamp}}
  - {name: payments, kind: file, path: payments.jsonl, timestamp: ts,
     schema: {user: int, paid: int, ts: timestamp}}
operators:
  - {name: orders_by_user, kind: key_by, input: orders, key: user}
  - {name: payments_by_user, kind: key_by, input: payments, key: user}
  - name: same_second
    kind: window_join
    inputs: [orders_by_user, payments_by_user]
    window: {type: tumbling, size: 1s}
  - name: near
    kind: interval_join
    inputs: [orders_by_user, payments_by_user]
    between: [-300ms, 300ms]
sinks:
  - {name: windowed, kind: stdout, input: same_second}
  - {name: interval, kind: stdout, input: near}
";
    std::fs::write(dir.path().join("joins.yaml"), job).unwrap();
    let out = weir(dir.path(), &["run", "joins.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (windowed, interval): (Vec<Value>, Vec<Value>) = rows
        .into_iter()
        .partition(|r| r.get("window_start").is_some());

    let mut want_windowed = Vec::new();
    let mut want_interval = Vec::new();
    for &(user, order, amount, ts) in &orders {
        for &(u, paid, pts) in &payments {
            if u != user {
                continue;
            }
            if ts / 1000 == pts / 1000 {
                let start = ts - ts % 1000;
                want_windowed.push(json!({"user": user, "window_start": start,
                    "window_end": start + 1000, "order": order, "amount": amount, "ts": ts,
                    "paid": paid, "payments_by_user_ts": pts}));
            }
            if (ts - 300..=ts + 300).contains(&pts) {
                want_interval.push(json!({"user": user, "order": order, "amount": amount,
                    "ts": ts, "paid": paid, "payments_by_user_ts": pts,
                    "event_time": ts.max(pts)}));
            }
        }
    }
    assert!(!want_windowed.is_empty() && !want_interval.is_empty());
    assert_eq!(sorted(windowed), sorted(want_windowed), "window join");
    assert_eq!(sorted(interval), sorted(want_interval), "interval join");
}

/// `weir run job.yaml | head -1`: the reader going away ends the job quietly at
/// once; no restart can bring the reader back.
#[test]
fn a_closed_output_pipe_ends_the_run_without_restarts() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", &example("bids-with-auctions.yaml")])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    // The reader closes the pipe here.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("restart"), "{stderr}");
}

/// A file sink writing to S3 (the test server): part files committed with
/// checkpoints, every row exactly once.
#[test]
fn a_file_sink_writes_exactly_once_part_files_to_s3() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = s3::fresh_bucket(&endpoint, "jobfile-sink");
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "
name: evens-to-s3
parallelism: 2
checkpoints: {{interval: 50ms}}
sources: [{{name: numbers, kind: sequence, from: 1, to: 20000}}]
operators:
  - {{name: evens, kind: filter, input: numbers, condition: value % 2 = 0}}
sinks: [{{name: out, kind: file, input: evens, path: 's3://{bucket}/evens'}}]
"
    );
    std::fs::write(dir.path().join("job.yaml"), job).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "job.yaml"])
        .current_dir(dir.path())
        .envs(s3::env(&endpoint))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = weir::sinks::FileSinkConfig::new(format!("s3://{bucket}/evens"));
    let config = weir::sinks::FileSinkConfig {
        storage: config.storage.with_s3(s3::options(&endpoint)),
        ..config
    };
    let rows: Vec<Value> = weir::sinks::read_committed_objects(&config).unwrap();
    let expected: Vec<Value> = (1..=10_000).map(|n: i64| json!({"value": 2 * n})).collect();
    assert_eq!(sorted(rows), sorted(expected));
}

/// The committed JSON-lines rows under `dir` (every file, any depth).
fn committed_rows(dir: &Path) -> Vec<Value> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rows.extend(committed_rows(&path));
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            rows.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    rows
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A checkpoint of hopping windows taken by weir before it sliced them (release
/// build of commit 60e30ef, killed mid-run: whole-window tables, with allowed
/// lateness) resumes on slices: each resumed window merges its restored whole-window
/// table with the slices filled since, and the rows committed before the crash plus
/// those of the resumed run are exactly the rows of an uninterrupted run.
#[test]
fn checkpoints_of_hopping_windows_from_before_slicing_resume() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hopping-before-slicing");
    let resumed = tempfile::tempdir().unwrap();
    copy_dir(&fixture, resumed.path());
    // Unthrottled: event time is the number, so the rows do not depend on the rate.
    let job = std::fs::read_to_string(fixture.join("hopping.yaml")).unwrap();
    let job: String = job
        .lines()
        .filter(|l| !l.contains("rows_per_second"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(resumed.path().join("hopping.yaml"), &job).unwrap();
    let out = weir(resumed.path(), &["run", "hopping.yaml", "--resume"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("restored from"), "{stderr}");

    let full = tempfile::tempdir().unwrap();
    std::fs::write(full.path().join("hopping.yaml"), &job).unwrap();
    let out = weir(full.path(), &["run", "hopping.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = sorted(committed_rows(&full.path().join("out/windows")));
    let before = committed_rows(&fixture.join("out/windows"));
    assert!(
        !before.is_empty(),
        "the fixture has rows from before the crash"
    );
    let got = sorted(committed_rows(&resumed.path().join("out/windows")));
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

/// A savepoint taken by weir before job files ran on columnar batches (commit
/// 77461c7: tumbling and session windows, an interval join's buffered rows, the
/// sequence sources' positions, the file sinks' pending epochs) restores: the rows
/// committed before it plus the rows of the resumed run are exactly the rows of an
/// uninterrupted run.
#[test]
fn savepoints_of_job_files_from_before_the_columnar_path_restore() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/savepoint-before-columnar");
    let resumed = tempfile::tempdir().unwrap();
    copy_dir(&fixture, resumed.path());
    // Unthrottled: event time is the number, so the rows do not depend on the rate.
    let job = std::fs::read_to_string(fixture.join("compat.yaml")).unwrap();
    let job: String = job
        .lines()
        .filter(|l| !l.contains("rows_per_second"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(resumed.path().join("compat.yaml"), &job).unwrap();
    let out = weir(
        resumed.path(),
        &["run", "compat.yaml", "--from-savepoint", "savepoint"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restored from"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let full = tempfile::tempdir().unwrap();
    std::fs::write(full.path().join("compat.yaml"), &job).unwrap();
    let out = weir(full.path(), &["run", "compat.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for sink in ["windows", "sessions", "pairs"] {
        let expected = sorted(committed_rows(&full.path().join("out").join(sink)));
        assert!(!expected.is_empty(), "{sink}");
        let before = committed_rows(&fixture.join("out").join(sink));
        assert!(
            !before.is_empty(),
            "{sink}: the fixture has rows from before the savepoint"
        );
        let got = sorted(committed_rows(&resumed.path().join("out").join(sink)));
        assert_eq!(got.len(), expected.len(), "{sink}");
        assert_eq!(got, expected, "{sink}");
    }
}

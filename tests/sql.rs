//! The Flink SQL of the Flink peer's benchmark (`benches/sql/*.sql`: its `bid_gen`
//! table of computed columns over a sequence, the watermark, the `bid` view and the
//! queries, unchanged) run through `weir sql` give exactly the rows of weir's
//! typed queries, on 300k bids at parallelism 2; and what SQL weir refuses, it
//! refuses with the line, the column and what it expected.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

mod common;

use serde::Serialize;
use std::time::Duration;
use weir::dataflow::Stream;
use weir::jobfile::Registry;
use weir::nexmark::{self, Bid};

const EVENTS: u64 = 300_000;
const PARALLELISM: usize = 2;

/// The typed query's rows as JSON objects.
fn typed<T: Serialize + Send + Clone + 'static>(
    query: impl FnOnce(&Stream<Bid>) -> Stream<T>,
) -> Vec<serde_json::Value> {
    common::typed::rows(EVENTS, PARALLELISM, query)
}

/// The bench SQL file `name` at 300k bids, its blackhole sink made a filesystem
/// sink in `out`.
fn bench_sql(name: &str, out: &std::path::Path) -> String {
    let path = format!("{}/benches/sql/{name}.sql", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let events = EVENTS.to_string();
    let per_subtask = (EVENTS / PARALLELISM as u64).to_string();
    text.replace("'10000000'", &format!("'{events}'"))
        .replace(
            "MOD(f0 - 1, 5000000)",
            &format!("MOD(f0 - 1, {per_subtask})"),
        )
        .replace(
            "'connector' = 'blackhole'",
            &format!("'connector' = 'filesystem', 'path' = '{}'", out.display()),
        )
}

/// The rows `sql` writes to its filesystem sink in `out`.
fn run_sql(
    name: &str,
    sql: &str,
    dir: &std::path::Path,
    out: &std::path::Path,
) -> Vec<serde_json::Value> {
    let mut plan = weir::sql::load(&format!("{name}.sql"), sql, &Registry::default())
        .unwrap_or_else(|problems| panic!("{name}: {problems:?}"));
    plan.spec.checkpoints.storage = dir.join("checkpoints").display().to_string();
    plan.spec.checkpoints.interval = Duration::from_millis(200);
    weir::jobs::run(plan, &weir::jobs::RunOptions::default()).expect("the SQL job runs");
    weir::sinks::read_committed(out).unwrap()
}

/// The SQL rows equal the typed rows on the SQL's columns, as multisets.
fn same(name: &str, typed: Vec<serde_json::Value>) {
    same_with(name, typed, |sql| sql);
}

/// As [`same`], with the bench SQL changed by `change` first.
fn same_with(name: &str, typed: Vec<serde_json::Value>, change: impl Fn(String) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = change(bench_sql(name, &out));
    let rows = run_sql(name, &sql, dir.path(), &out);
    assert!(!rows.is_empty(), "{name}: the SQL gives rows");
    let columns: Vec<String> = rows[0].as_object().unwrap().keys().cloned().collect();
    let project = |row: &serde_json::Value| {
        columns
            .iter()
            .map(|c| format!("{c}={}", row.get(c).unwrap_or(&serde_json::Value::Null)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut got: Vec<String> = rows.iter().map(project).collect();
    let mut want: Vec<String> = typed.iter().map(project).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: {} rows from SQL, {} from the typed query; first of each: {:?} / {:?}",
        got.len(),
        want.len(),
        got.first(),
        want.first()
    );
    if let Some((i, (a, b))) = got.iter().zip(&want).enumerate().find(|(_, (a, b))| a != b) {
        panic!("{name}: row {i} differs: SQL {a}, typed {b}");
    }
}

#[test]
fn q2_in_flink_sql_gives_the_typed_rows() {
    same("q2", typed(nexmark::q2));
}

#[test]
fn qw_in_flink_sql_gives_the_typed_rows() {
    same("qw", typed(nexmark::qw));
}

#[test]
fn q5_in_flink_sql_gives_the_typed_rows() {
    same("q5", typed(nexmark::q5));
}

/// q5 as Flink's window Top-N (`RANK() OVER (PARTITION BY window_start, window_end
/// ORDER BY num DESC)` and `WHERE rank <= 1`) instead of the join with the maximum.
#[test]
fn q5_as_a_window_top_n_gives_the_typed_rows() {
    let top_n = "INSERT INTO out
SELECT auction, num FROM (
  SELECT auction, num,
    RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS r
  FROM (
    SELECT auction, window_start, window_end, COUNT(*) AS num
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
  )
) WHERE r <= 1;
";
    same_with("q5", typed(nexmark::q5), |sql| {
        let at = sql.find("INSERT INTO out").unwrap();
        format!("{}{top_n}", &sql[..at])
    });
}

#[test]
fn q7_in_flink_sql_gives_the_typed_rows() {
    same("q7", typed(nexmark::q7));
}

#[test]
fn qs_in_flink_sql_gives_the_typed_rows() {
    same("qs", typed(nexmark::qs));
}

#[test]
fn q0_in_flink_sql_gives_the_typed_rows() {
    same("q0", typed(nexmark::q0));
}

/// The first problem of `sql`, as `file:line:column: message`.
fn problem(sql: &str) -> String {
    match weir::sql::load("bad.sql", sql, &Registry::default()) {
        Ok(_) => panic!("expected a problem in {sql}"),
        Err(problems) => problems.join("\n"),
    }
}

const BIDS: &str = "CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH ('connector' = 'bids', 'number-of-events' = '1000');
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'print');
";

#[test]
fn bad_sql_is_refused_with_its_position_and_what_was_expected() {
    let cases = [
        // A syntax error: sqlparser's position and expectation.
        (format!("{BIDS}INSERT INTO out SELEC auction, price FROM bids;"), "bad.sql:5:"),
        // An unknown column names the columns there are.
        (
            format!("{BIDS}INSERT INTO out SELECT auction, prise FROM bids;"),
            "unknown column `prise`: expected one of bids.auction, bids.price, bids.date_time",
        ),
        // A non-windowed GROUP BY: an updating result, refused.
        (
            format!("{BIDS}INSERT INTO out SELECT auction, COUNT(*) FROM bids GROUP BY auction;"),
            "gives an updating result",
        ),
        // An unknown connector option value.
        (
            "CREATE TABLE t (x BIGINT) WITH ('connector' = 'jdbc'); SELECT x FROM t;".to_string(),
            "connector 'jdbc' cannot be read: expected datagen, sequence, bids, nexmark, kafka, upsert-kafka or filesystem",
        ),
        // A misspelt connector option is refused, not ignored.
        (
            "CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'fields.x.kind' = 'sequence', \
             'fields.x.start' = '1', 'fields.x.end' = '9', 'rows-per-secnd' = '5'); SELECT x FROM t;"
                .to_string(),
            "option 'rows-per-secnd' is not one weir's 'datagen' connector has",
        ),
        // A statement weir does not run is named, never mis-run.
        (
            format!("{BIDS}DELETE FROM out WHERE auction = 1;"),
            "is not supported: expected SET, CREATE TABLE",
        ),
        // A rank must be per window, and kept by a bound.
        (
            format!(
                "{BIDS}INSERT INTO out SELECT auction, price FROM (SELECT auction, price, \
                 ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) \
                 AS r FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))) \
                 WHERE r <= 1;"
            ),
            "expected PARTITION BY window_start, window_end (and optionally more columns)",
        ),
        (
            format!(
                "{BIDS}INSERT INTO out SELECT auction, price FROM (SELECT auction, price, \
                 ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) \
                 AS r FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))) \
                 WHERE r > 3;"
            ),
            "expected WHERE rank <= N, rank < N or rank = 1 (window Top-N)",
        ),
        // An unknown SET key lists the known ones.
        ("SET 'parallelism' = '2';".to_string(), "unknown option 'parallelism': expected one of parallelism.default"),
        // A window on a column that is not the event-time attribute.
        (
            format!(
                "{BIDS}INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, \
                 DESCRIPTOR(price), INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end;"
            ),
            "DESCRIPTOR(price) is not the event-time attribute of `bids` (date_time)",
        ),
        // A window over a table without a watermark.
        (
            "CREATE TABLE t (x BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', \
             'path' = 't.jsonl', 'format' = 'json');
             SELECT x, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))
             GROUP BY x, window_start, window_end;"
                .to_string(),
            "DESCRIPTOR(ts) is not the event-time attribute of `t` (none: the table has no WATERMARK)",
        ),
        // A type error inside an expression, found by the job-file checker.
        (
            format!("{BIDS}INSERT INTO out SELECT auction, price FROM bids WHERE price > 'a lot';"),
            "cannot compare int with string",
        ),
        // A query whose columns do not fit the sink table.
        (
            format!("{BIDS}INSERT INTO out SELECT auction FROM bids;"),
            "the query gives 1 columns, the table has 2 (auction, n)",
        ),
    ];
    for (sql, expected) in cases {
        let found = problem(&sql);
        assert!(
            found.contains(expected),
            "{sql}\n  gave: {found}\n  expected: {expected}"
        );
        assert!(found.starts_with("bad.sql:"), "{found}");
    }
}

/// The same statements give the same stream names, which are the uids of their
/// state: a savepoint of one run restores into the next.
#[test]
fn stream_names_and_uids_derive_from_the_statements() {
    let dir = tempfile::tempdir().unwrap();
    let sql = bench_sql("q5", &dir.path().join("out"));
    let names = |sql: &str| {
        let plan = weir::sql::load("q5.sql", sql, &Registry::default()).unwrap();
        plan.streams
            .iter()
            .map(|s| s.node.name.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&sql),
        ["bid_gen", "out_key_by", "out_window", "out_top", "out_map"]
    );
    assert_eq!(names(&sql), names(&sql));
    let explained =
        weir::sql::explain(&weir::sql::load("q5.sql", &sql, &Registry::default()).unwrap());
    assert!(explained.contains("uid: out_window"), "{explained}");
    assert!(explained.contains("key_by auction"), "{explained}");
}

/// An event-time temporal join (`JOIN prices FOR SYSTEM_TIME AS OF o.ts`): each
/// order gets its item's price valid at the order's time, from price versions that
/// arrive out of order, as a reference computes; orders before their item's first
/// price are dropped (an inner join). AS OF a column that is not the left side's
/// event-time attribute is refused by name.
#[test]
fn a_temporal_join_prices_each_order_as_of_its_time() {
    let dir = tempfile::tempdir().unwrap();
    // Out of order by up to 39 ms, in the file's order.
    let mut prices: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut versions: Vec<(i64, i64, i64)> = Vec::new(); // item, ts, price
    for i in 0..1_000i64 {
        let (ts, item, price) = (10_000 + i * 10 + (i * 7) % 10, i * 13 % 20, i % 97 + 1);
        prices.push((
            ts + (i * 31) % 40,
            serde_json::json!({"item": item, "price": price, "ts": ts}),
        ));
        versions.push((item, ts, price));
    }
    let mut orders: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut want: Vec<String> = Vec::new();
    for j in 0..1_500i64 {
        let (ts, item) = (10_000 + j * 7, j * 17 % 20);
        orders.push((
            ts + (j * 23) % 40,
            serde_json::json!({"item": item, "qty": j, "ts": ts}),
        ));
        let valid = versions
            .iter()
            .filter(|v| v.0 == item && v.1 <= ts)
            .max_by_key(|v| v.1);
        if let Some(&(_, _, price)) = valid {
            want.push(
                serde_json::json!({"item": item, "qty": j, "price": price, "ordered_at": ts})
                    .to_string(),
            );
        }
    }
    for (name, mut rows) in [("prices.jsonl", prices), ("orders.jsonl", orders)] {
        rows.sort_by_key(|r| r.0);
        let text: String = rows.iter().map(|(_, r)| format!("{r}\n")).collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    want.sort_unstable();
    let out = dir.path().join("priced");
    let sql = format!(
        "SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '100 ms';
CREATE TABLE prices (item BIGINT, price BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '0.05' SECOND, PRIMARY KEY (item) NOT ENFORCED)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/prices.jsonl', 'format' = 'json');
CREATE TABLE orders (item BIGINT, qty BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '0.05' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/orders.jsonl', 'format' = 'json');
CREATE TABLE priced (item BIGINT, qty BIGINT, price BIGINT, ordered_at TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = '{out}');
INSERT INTO priced
SELECT O.item, O.qty, P.price, O.ts
FROM orders AS O
JOIN prices FOR SYSTEM_TIME AS OF O.ts AS P ON O.item = P.item;
",
        dir = dir.path().display(),
        out = out.display(),
    );
    let mut plan = weir::sql::load("temporal.sql", &sql, &Registry::default())
        .unwrap_or_else(|problems| panic!("{problems:?}"));
    plan.spec.checkpoints.storage = dir.path().join("checkpoints").display().to_string();
    weir::jobs::run(plan, &weir::jobs::RunOptions::default()).expect("the temporal join runs");
    let mut got: Vec<String> = weir::sinks::read_committed::<serde_json::Value>(&out)
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    got.sort_unstable();
    assert!(want.len() > 1_000, "{}", want.len());
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);

    let bad = sql.replace("AS OF O.ts", "AS OF O.qty");
    let Err(problems) = weir::sql::load("bad.sql", &bad, &Registry::default()) else {
        panic!("AS OF a column that is not event time was accepted");
    };
    let problems = problems.join("\n");
    assert!(
        problems.contains(
            "FOR SYSTEM_TIME AS OF O.qty: expected the left side's event-time attribute (ts)"
        ),
        "{problems}"
    );
}

/// A window join of two window TVFs and an interval join of two tables, as a
/// statement set, pair exactly the rows a straightforward reference pairs.
#[test]
fn window_and_interval_joins_pair_the_rows_of_equal_keys() {
    let dir = tempfile::tempdir().unwrap();
    let orders: Vec<(i64, i64, i64, i64)> = (0..300).map(|i| (i % 4, i, i * 3, i * 37)).collect();
    let payments: Vec<(i64, i64, i64)> = (0..200).map(|j| (j % 4, j, j * 53 + 11)).collect();
    let write = |name: &str, rows: Vec<serde_json::Value>| {
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    };
    write(
        "orders.jsonl",
        orders
            .iter()
            .map(|(u, o, a, t)| serde_json::json!({"user": u, "order_id": o, "amount": a, "ts": t}))
            .collect(),
    );
    write(
        "payments.jsonl",
        payments
            .iter()
            .map(|(u, p, t)| serde_json::json!({"user": u, "paid": p, "ts": t}))
            .collect(),
    );
    let (windowed_out, interval_out) = (dir.path().join("windowed"), dir.path().join("interval"));
    let sql = format!(
        "SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '100 ms';
CREATE TABLE orders (`user` BIGINT, order_id BIGINT, amount BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem', 'path' = '{dir}/orders.jsonl', 'format' = 'json');
CREATE TABLE payments (`user` BIGINT, paid BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem', 'path' = '{dir}/payments.jsonl', 'format' = 'json');
CREATE TABLE windowed (`user` BIGINT, window_start TIMESTAMP(3), order_id BIGINT, paid BIGINT, paid_at TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = '{windowed}');
CREATE TABLE near (`user` BIGINT, order_id BIGINT, paid BIGINT, ordered_at TIMESTAMP(3), paid_at TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = '{interval}');
EXECUTE STATEMENT SET BEGIN
INSERT INTO windowed
SELECT O.`user`, O.window_start, O.order_id, P.paid, P.ts
FROM (SELECT * FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' SECOND))) O
JOIN (SELECT * FROM TABLE(TUMBLE(TABLE payments, DESCRIPTOR(ts), INTERVAL '1' SECOND))) P
ON O.`user` = P.`user` AND O.window_start = P.window_start AND O.window_end = P.window_end;
INSERT INTO near
SELECT O.`user`, O.order_id, P.paid, O.ts, P.ts
FROM orders O JOIN payments P
ON O.`user` = P.`user` AND P.ts BETWEEN O.ts - INTERVAL '0.3' SECOND AND O.ts + INTERVAL '0.3' SECOND;
END;
",
        dir = dir.path().display(),
        windowed = windowed_out.display(),
        interval = interval_out.display()
    );
    let mut plan = weir::sql::load("joins.sql", &sql, &Registry::default())
        .unwrap_or_else(|problems| panic!("{problems:?}"));
    plan.spec.checkpoints.storage = dir.path().join("checkpoints").display().to_string();
    weir::jobs::run(plan, &weir::jobs::RunOptions::default()).expect("the SQL joins run");
    let read = |out: &std::path::Path| {
        let mut rows: Vec<String> = weir::sinks::read_committed::<serde_json::Value>(out)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        rows.sort_unstable();
        rows
    };
    let (mut want_windowed, mut want_interval) = (Vec::new(), Vec::new());
    for &(user, order, _, ts) in &orders {
        for &(u, paid, pts) in &payments {
            if u != user {
                continue;
            }
            if ts / 1000 == pts / 1000 {
                want_windowed.push(
                    serde_json::json!({"user": user, "window_start": ts - ts % 1000,
                        "order_id": order, "paid": paid, "paid_at": pts})
                    .to_string(),
                );
            }
            if (ts - 300..=ts + 300).contains(&pts) {
                want_interval.push(
                    serde_json::json!({"user": user, "order_id": order, "paid": paid,
                        "ordered_at": ts, "paid_at": pts})
                    .to_string(),
                );
            }
        }
    }
    want_windowed.sort_unstable();
    want_interval.sort_unstable();
    assert!(!want_windowed.is_empty() && !want_interval.is_empty());
    assert_eq!(read(&windowed_out), want_windowed, "window join");
    assert_eq!(read(&interval_out), want_interval, "interval join");
}

/// `weir sql --validate` and `--explain` on the command line: a bad file's
/// problems as `file:line:column: message` and a non-zero exit; the plan of a good
/// one with its keys, state and uids.
#[test]
fn the_sql_command_validates_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let weir = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    std::fs::write(
        dir.path().join("bad.sql"),
        format!("{BIDS}INSERT INTO out\nSELECT auction, COUNT(*) FROM bids GROUP BY auction;\n"),
    )
    .unwrap();
    let out = weir(&["sql", "--validate", "bad.sql"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.sql:5:1: a GROUP BY without window_start and window_end"),
        "{stderr}"
    );
    let q5 = format!("{}/benches/sql/q5.sql", env!("CARGO_MANIFEST_DIR"));
    let out = weir(&["sql", "--validate", &q5]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
    let out = weir(&["sql", "--explain", &q5]);
    let plan = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "out_key_by <- bid_gen: key_by auction (hash exchange by key group)",
        "out_window <- out_key_by: window Hopping { size: 10s, slide: 2s } (keyed state)",
        "out_top <- out_window: top 1 by count DESC (RANK) per window (keyed state)",
        "uid: out_window",
        "sink out <- out_map: Blackhole",
    ] {
        assert!(plan.contains(expected), "{expected}\n{plan}");
    }
}

/// SQL over `numbers` (`n` from 1 to 3000, `class` = n mod 3, `v` = n mod 7, event
/// time n × 10 ms) at parallelism 2, inserting `select` into a filesystem table in
/// `out` of `class`, `window_start`, `window_end`, `n` and the column `last`.
fn numbers_sql(out: &std::path::Path, last: &str, select: &str) -> String {
    format!(
        "SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '100 ms';
CREATE TABLE numbers (
  n BIGINT,
  class AS MOD(n, 3),
  v AS MOD(n, 7),
  ts AS TO_TIMESTAMP_LTZ(n * 10, 3),
  WATERMARK FOR ts AS ts
) WITH ('connector' = 'datagen', 'fields.n.kind' = 'sequence',
        'fields.n.start' = '1', 'fields.n.end' = '3000');
CREATE TABLE result (class BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, {last})
  WITH ('connector' = 'filesystem', 'path' = '{}');
INSERT INTO result
{select}
",
        out.display()
    )
}

/// `CUMULATE` windows: per key, windows growing by the step from each cycle's start
/// up to the size, with exactly the rows a brute-force reference puts in each.
#[test]
fn cumulate_windows_grow_by_their_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = numbers_sql(
        &out,
        "total BIGINT",
        "SELECT class, window_start, window_end, COUNT(*), SUM(n)
FROM TABLE(CUMULATE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '5' SECOND))
GROUP BY class, window_start, window_end;",
    );
    let got = sorted_rows("cumulate", &sql, dir.path(), &out);
    let mut want = Vec::new();
    for start in (0..=30_000i64).step_by(5_000) {
        for end in (start + 1_000..=start + 5_000).step_by(1_000) {
            for class in 0..3i64 {
                let ns: Vec<i64> = (1..=3000i64)
                    .filter(|n| n % 3 == class && (start..end).contains(&(n * 10)))
                    .collect();
                if !ns.is_empty() {
                    want.push(
                        serde_json::json!({"class": class, "window_start": start,
                            "window_end": end, "n": ns.len(), "total": ns.iter().sum::<i64>()})
                        .to_string(),
                    );
                }
            }
        }
    }
    want.sort_unstable();
    assert_eq!(got, want);
}

/// `COUNT(DISTINCT x)` counts each value once per window and key, in hopping
/// windows (each row in two of them), beside `COUNT(*)`: checked against a count
/// done here.
/// Hopping window aggregations run in two phases with `SET
/// 'table.optimizer.agg-phase-strategy' = 'TWO_PHASE'` (by slices), in one by
/// default: the same rows either way.
#[test]
fn one_and_two_phase_window_aggregations_give_the_same_rows() {
    let select = "SELECT class, window_start, window_end, COUNT(*), SUM(n)
FROM TABLE(HOP(TABLE numbers, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND))
GROUP BY class, window_start, window_end;";
    let rows = |name: &str, set: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let sql = format!("{set}{}", numbers_sql(&out, "total BIGINT", select));
        let plan = weir::sql::load(&format!("{name}.sql"), &sql, &Registry::default()).unwrap();
        let two_phase = plan
            .streams
            .iter()
            .any(|s| matches!(&s.step, weir::jobfile::Step::Window(w) if w.pre_aggregate));
        (two_phase, sorted_rows(name, &sql, dir.path(), &out))
    };
    let (two, two_phase) = rows(
        "two_phase",
        "SET 'table.optimizer.agg-phase-strategy' = 'TWO_PHASE';\n",
    );
    assert!(two);
    let (two, by_default) = rows("default", "");
    assert!(!two, "hopping windows in one phase by default");
    assert_eq!(two_phase, by_default);
    assert!(by_default.len() > 90, "{}", by_default.len());
    assert!(
        problem("SET 'table.optimizer.agg-phase-strategy' = 'TWICE';")
            .contains("expected AUTO, ONE_PHASE or TWO_PHASE")
    );
}

#[test]
fn count_distinct_counts_each_value_once_per_window_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = numbers_sql(
        &out,
        "vs BIGINT",
        "SELECT class, window_start, window_end, COUNT(*), COUNT(DISTINCT v) AS vs
FROM TABLE(HOP(TABLE numbers, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND, INTERVAL '200' MILLISECOND))
GROUP BY class, window_start, window_end;",
    );
    let got = sorted_rows("count_distinct", &sql, dir.path(), &out);
    let mut want = Vec::new();
    for start in (-100..=30_000i64).step_by(100) {
        let end = start + 200;
        for class in 0..3i64 {
            let ns: Vec<i64> = (1..=3000i64)
                .filter(|n| n % 3 == class && (start..end).contains(&(n * 10)))
                .collect();
            let distinct: std::collections::HashSet<i64> = ns.iter().map(|n| n % 7).collect();
            if !ns.is_empty() {
                want.push(
                    serde_json::json!({"class": class, "window_start": start,
                        "window_end": end, "n": ns.len(), "vs": distinct.len()})
                    .to_string(),
                );
            }
        }
    }
    want.sort_unstable();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

/// The numbers of [`numbers_sql`] in tumbling second `w` (event times from `w` s
/// to `w + 1` s).
fn second(w: i64) -> Vec<i64> {
    (1..=3000i64).filter(|n| n * 10 / 1000 == w).collect()
}

/// The rows `insert` (an INSERT INTO `result`) writes over the numbers of
/// [`numbers_sql`], into a table of `columns`; JSON text, sorted.
fn numbers_rows(name: &str, columns: &str, insert: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = numbers_sql(&out, "unused BIGINT", "SELECT 1, 1, 1, 1, 1;");
    let at = sql.find("CREATE TABLE result").unwrap();
    let sql = format!(
        "{}CREATE TABLE result ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}');\n{insert}",
        &sql[..at],
        out.display()
    );
    sorted_rows(name, &sql, dir.path(), &out)
}

/// The rows `sql` writes to its filesystem sink in `out`, as JSON text, sorted.
fn sorted_rows(name: &str, sql: &str, dir: &std::path::Path, out: &std::path::Path) -> Vec<String> {
    let mut rows: Vec<String> = run_sql(name, sql, dir, out)
        .iter()
        .map(|r| r.to_string())
        .collect();
    rows.sort_unstable();
    rows
}

/// Window Top-N over a window TVF's rows (no partition: each subtask's top, then
/// the top of those), as `ROW_NUMBER()`, `RANK()` and `DENSE_RANK()` keep and
/// number rows, with many ties (`v` = n mod 7): against a ranking done here.
#[test]
fn window_top_n_keeps_and_numbers_rows_as_each_ranking_function() {
    let top_n = |name: &str, ranking: &str, last: usize| {
        numbers_rows(
            name,
            "n BIGINT, v BIGINT, window_end TIMESTAMP(3), r BIGINT",
            &format!(
                "INSERT INTO result SELECT n, v, window_end, r FROM (
  SELECT *, {ranking} AS r
  FROM TABLE(TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '1' SECOND))
) WHERE r <= {last};"
            ),
        )
    };
    // Per second, its numbers ranked by v DESC then n ASC, with each one's rank as
    // `rank` computes it from the rank of the row before and whether they tie.
    let reference = |last: usize, rank: &dyn Fn(usize, i64, Option<(i64, i64)>) -> i64| {
        let mut want = Vec::new();
        for w in 0..=30 {
            let mut ns = second(w);
            ns.sort_by_key(|n| (-(n % 7), *n));
            let mut before = None;
            for (i, n) in ns.iter().enumerate() {
                let r = rank(i, n % 7, before);
                before = Some((r, n % 7));
                if r as usize <= last {
                    want.push(
                        serde_json::json!({"n": n, "v": n % 7, "window_end": w * 1000 + 1000, "r": r})
                            .to_string(),
                    );
                }
            }
        }
        want.sort_unstable();
        want
    };
    let row_number = |i: usize, _, _| i as i64 + 1;
    let rank = |i: usize, v, before: Option<(i64, i64)>| match before {
        Some((r, b)) if b == v => r,
        _ => i as i64 + 1,
    };
    let dense_rank = |_, v, before: Option<(i64, i64)>| match before {
        Some((r, b)) if b == v => r,
        Some((r, _)) => r + 1,
        None => 1,
    };
    let by_v_then_n =
        "ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY v DESC, n)";
    let exact = top_n("row_number", by_v_then_n, 3);
    assert_eq!(exact, reference(3, &row_number));
    // Rank 1 is the ~14 rows of v = 6, then rank ~15 those of v = 5.
    let ranked = top_n(
        "rank",
        "RANK() OVER (PARTITION BY window_start, window_end ORDER BY v DESC)",
        20,
    );
    assert_eq!(ranked, reference(20, &rank));
    let dense = top_n(
        "dense_rank",
        "DENSE_RANK() OVER (PARTITION BY window_start, window_end ORDER BY v DESC)",
        2,
    );
    assert_eq!(dense, reference(2, &dense_rank));
    // ROW_NUMBER breaks ties by the rows' columns in the table's order (n first),
    // smallest first: the rows kept do not depend on arrival or parallelism.
    let tied = top_n(
        "row_number_ties",
        "ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY v DESC)",
        3,
    );
    assert_eq!(tied, exact);
}

/// Window Top-N with more partition columns than the window: over a window TVF
/// (one window keyed by the partition, smallest first) and over a window
/// aggregation's results (a `top` keyed by window and partition), against a
/// ranking done here.
#[test]
fn window_top_n_ranks_within_each_partition() {
    let smallest = numbers_rows(
        "partitioned_rows",
        "class BIGINT, n BIGINT, window_start TIMESTAMP(3), r BIGINT",
        "INSERT INTO result SELECT class, n, window_start, r FROM (
  SELECT class, n, window_start,
    ROW_NUMBER() OVER (PARTITION BY window_start, window_end, class ORDER BY n ASC) AS r
  FROM TABLE(TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '1' SECOND))
) WHERE r < 3;",
    );
    let mut want = Vec::new();
    for w in 0..=30 {
        for class in 0..3 {
            let ns: Vec<i64> = second(w).into_iter().filter(|n| n % 3 == class).collect();
            for (i, n) in ns.iter().take(2).enumerate() {
                want.push(
                    serde_json::json!({"class": class, "n": n, "window_start": w * 1000, "r": i + 1})
                        .to_string(),
                );
            }
        }
    }
    want.sort_unstable();
    assert_eq!(smallest, want);

    let most = numbers_rows(
        "partitioned_results",
        "class BIGINT, v BIGINT, window_end TIMESTAMP(3), cnt BIGINT, r BIGINT",
        "INSERT INTO result SELECT class, v, window_end, cnt, r FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, class ORDER BY cnt DESC, v) AS r
  FROM (
    SELECT class, v, window_start, window_end, COUNT(*) AS cnt
    FROM TABLE(TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '1' SECOND))
    GROUP BY class, v, window_start, window_end
  )
) WHERE r <= 2;",
    );
    let mut want = Vec::new();
    for w in 0..=30 {
        for class in 0..3 {
            let mut counts = std::collections::BTreeMap::<i64, i64>::new();
            for n in second(w).into_iter().filter(|n| n % 3 == class) {
                *counts.entry(n % 7).or_default() += 1;
            }
            let mut counts: Vec<(i64, i64)> = counts.into_iter().collect();
            counts.sort_by_key(|&(v, cnt)| (-cnt, v));
            for (i, (v, cnt)) in counts.iter().take(2).enumerate() {
                want.push(
                    serde_json::json!({"class": class, "v": v, "window_end": w * 1000 + 1000,
                        "cnt": cnt, "r": i + 1})
                    .to_string(),
                );
            }
        }
    }
    want.sort_unstable();
    assert_eq!(most, want);
}

/// The persons and auctions of `events` Nexmark events as SQL tables (the `nexmark`
/// connector, event time `date_time` with the typed queries' 4 s watermark delay),
/// and a filesystem table `out` of `columns` in `dir`.
fn nexmark_tables(events: u64, columns: &str, out: &std::path::Path) -> String {
    format!(
        "SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '200 ms';
CREATE TABLE person (id BIGINT, name STRING, city STRING, state STRING, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH ('connector' = 'nexmark', 'event' = 'person', 'number-of-events' = '{events}');
CREATE TABLE auction (id BIGINT, seller BIGINT, category BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH ('connector' = 'nexmark', 'event' = 'auction', 'number-of-events' = '{events}');
CREATE TABLE out ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}');
",
        out.display()
    )
}

/// The typed query's rows over the Nexmark events, as JSON text, sorted.
fn typed_events<T: Serialize + Send + Clone + 'static>(
    events: u64,
    query: impl FnOnce(&Stream<weir::nexmark::Event>) -> Stream<T>,
) -> Vec<String> {
    let mut rows: Vec<String> =
        common::typed::rows_of(PARALLELISM, |job| nexmark::event_stream(job, events), query)
            .iter()
            .map(serde_json::Value::to_string)
            .collect();
    rows.sort_unstable();
    rows
}

/// Nexmark q3 (Flink's statement: a regular join of category-10 auctions with
/// their sellers in OR, ID or CA) gives the typed q3's rows.
#[test]
fn nexmark_q3_in_flink_sql_gives_the_typed_rows() {
    let got = nexmark_sql_rows(
        "q3",
        "name STRING, city STRING, state STRING, auction_id BIGINT",
        "INSERT INTO out
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P on A.seller = P.id
WHERE A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
",
    );
    let want = typed_events(NEXMARK_EVENTS, nexmark::q3);
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

/// Nexmark events the q3 and q8 tests read.
const NEXMARK_EVENTS: u64 = 200_000;

/// The rows, as sorted JSON texts, that `insert` (over the [`nexmark_tables`] of
/// [`NEXMARK_EVENTS`] events) writes to its table `out` of `columns`.
fn nexmark_sql_rows(name: &str, columns: &str, insert: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = nexmark_tables(NEXMARK_EVENTS, columns, &out) + insert;
    sorted_rows(name, &sql, dir.path(), &out)
}

/// Nexmark q8 (Flink's statement with window TVFs: persons and sellers of each
/// tumbling 10 s window, joined on id and window) gives the typed q8's rows.
#[test]
fn nexmark_q8_in_flink_sql_gives_the_typed_rows() {
    let got = nexmark_sql_rows(
        "q8",
        "person_id BIGINT, name STRING, window_start TIMESTAMP(3)",
        "INSERT INTO out
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
",
    );
    let want = typed_events(NEXMARK_EVENTS, nexmark::q8);
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

//! Arbitrary text and mutations of valid SQL are refused with a message (or
//! accepted), never a panic: the parser, the planner and the job-file checker all
//! run on them.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use proptest::prelude::*;
use weir_jobfile::Registry;

const VALID: &str = "SET 'parallelism.default' = '2';
CREATE TABLE bid_gen (
  f0 BIGINT NOT NULL,
  auction AS MOD(ABS((f0 * (-7046029254386353131)) / 4294967296), 10000) + 1,
  price AS MOD(ABS((f0 * (1609587929392839161)) / 65536), 100000000) + 1,
  channel AS CASE MOD(f0, 4) WHEN 0 THEN 'apple' WHEN 1 THEN 'google' ELSE 'baidu' END,
  extra AS SUBSTRING('QWERTYUIOP' FROM 1 FOR CAST(MOD(f0, 11) AS INT)),
  date_time AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + MOD(f0 - 1, 500) * 2 / 10, 3) AS TIMESTAMP(3)),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'datagen', 'fields.f0.kind' = 'sequence',
        'fields.f0.start' = '1', 'fields.f0.end' = '1000');
CREATE TEMPORARY VIEW bid AS SELECT auction, price, channel, extra, date_time FROM bid_gen;
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE tops (auction BIGINT, price BIGINT) WITH ('connector' = 'print');
INSERT INTO out
SELECT auction, COUNT(*) AS n
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end HAVING n > 1;
INSERT INTO tops
SELECT B.auction, B.price
FROM (SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))) B
JOIN (SELECT MAX(price) AS m, window_start, window_end
      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
      GROUP BY window_start, window_end) M
ON B.price = M.m AND B.window_start = M.window_start AND B.window_end = M.window_end;
";

fn load(sql: &str) -> Result<(), Vec<String>> {
    weir_sql::load("p.sql", sql, &Registry::default()).map(|_| ())
}

/// One edit of a text: delete, insert or replace a run of characters.
fn mutated() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "(",
        ")",
        ",",
        ";",
        "'",
        "`",
        "*",
        "-",
        "/",
        "%",
        " ",
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP BY",
        "JOIN",
        "ON",
        "TABLE",
        "AS",
        "INTERVAL '1' SECOND",
        "window_start",
        "MAX(",
        "CASE",
        "END",
        "0",
        "-9223372036854775808",
        "NULL",
        "\u{e9}",
    ]);
    let chars: Vec<char> = VALID.chars().collect();
    let n = chars.len();
    prop::collection::vec((0..n, 0..12usize, pieces), 1..6).prop_map(move |edits| {
        let mut text = chars.clone();
        for (at, len, piece) in edits {
            let at = at.min(text.len());
            let end = (at + len).min(text.len());
            text.splice(at..end, piece.chars());
        }
        text.into_iter().collect()
    })
}

#[test]
fn the_valid_text_is_valid() {
    load(VALID).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn mutated_sql_is_refused_or_accepted_never_a_panic(sql in mutated()) {
        if let Err(problems) = load(&sql) {
            prop_assert!(!problems.is_empty());
            for p in &problems {
                prop_assert!(p.starts_with("p.sql:"), "{}", p);
            }
        }
    }

    #[test]
    fn arbitrary_text_is_refused_or_accepted_never_a_panic(sql in "\\PC{0,200}") {
        let _ = load(&sql);
    }
}

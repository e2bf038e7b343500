//! Each kind of bad input gives `file:line:column: path: expectation`, and a file
//! with several problems reports all of them.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use proptest::prelude::*;
use weir_jobfile::{load, Registry};

fn problems(text: &str) -> Vec<String> {
    match load("job.yaml", text, &Registry::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

/// Asserts exactly one problem, starting with `prefix` and containing `expectation`.
fn one(text: &str, prefix: &str, expectation: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with(prefix), "{found:#?}");
    assert!(found[0].contains(expectation), "{found:#?}");
}

const VALID: &str = "\
name: demo
parallelism: 2
checkpoints: {interval: 1s, retention: 2}
sources:
  - name: bids
    kind: bids
    events: 1000
    watermark: {max_out_of_orderness: 1s}
operators:
  - name: cheap
    kind: filter
    input: bids
    condition: price < 1000 and lower(channel) != 'apple'
  - name: by_auction
    kind: key_by
    input: cheap
    key: auction
  - name: counts
    kind: window
    input: by_auction
    window:
      type: tumbling
      size: 10s
    aggregates: {n: count, top: max(price)}
sinks:
  - {name: out, kind: stdout, input: counts}
";

#[test]
fn a_valid_file_plans_every_stream_with_its_schema() {
    let plan = load("job.yaml", VALID, &Registry::default()).unwrap();
    assert_eq!(plan.streams.len(), 4);
    let counts = &plan.streams[3].schema;
    assert_eq!(counts.names(), "auction, window_start, window_end, n, top");
    assert_eq!(counts.event_time, Some(2));
}

#[test]
fn malformed_yaml_and_json() {
    one(
        "sources: [\n  {name: a\n",
        "job.yaml:3:1: ",
        "malformed YAML/JSON",
    );
    one("{\"sources\": [}", "job.yaml:1:14: ", "malformed YAML/JSON");
}

#[test]
fn unknown_operator_kind() {
    let text = VALID.replace("kind: filter", "kind: filtre");
    one(
        &text,
        "job.yaml:11:11: operators[0].kind: ",
        "unknown operator kind `filtre`: expected one of filter, map",
    );
}

#[test]
fn unknown_field() {
    let text = VALID.replace("    condition:", "    conditon: x\n    condition:");
    one(
        &text,
        "job.yaml:13:5: operators[0].conditon: ",
        "unknown field `conditon` for a filter: expected one of",
    );
}

#[test]
fn wrong_type() {
    let text = VALID.replace("parallelism: 2", "parallelism: two");
    one(
        &text,
        "job.yaml:2:14: parallelism: ",
        "expected an integer, found a string",
    );
    let text = VALID.replace("events: 1000", "events: [1]");
    one(
        &text,
        "job.yaml:7:13: sources[0].events: ",
        "expected an integer, found a list",
    );
}

#[test]
fn missing_required_setting() {
    let text = VALID.replace("    events: 1000\n", "");
    one(
        &text,
        "job.yaml:5:5: sources[0].events: ",
        "missing required setting `events`",
    );
}

#[test]
fn undefined_stream() {
    let text = VALID.replace("input: cheap", "input: chep");
    one(
        &text,
        "job.yaml:16:12: operators[1].input: ",
        "undefined stream `chep`: expected one of bids, by_auction, cheap, counts",
    );
}

#[test]
fn cycle() {
    let text = VALID.replace("input: bids\n", "input: by_auction\n");
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("job.yaml:10:11: operators[0].name: stream `cheap` is part of a cycle (cheap ← by_auction ← cheap)"), "{found:#?}");
    assert!(
        found[1].starts_with(
            "job.yaml:14:11: operators[1].name: stream `by_auction` is part of a cycle"
        ),
        "{found:#?}"
    );
}

#[test]
fn bad_durations() {
    let text = VALID.replace("size: 10s", "size: 10 seconds");
    one(
        &text,
        "job.yaml:23:13: operators[2].window.size: ",
        "bad duration `10 seconds`: expected a whole number and a unit",
    );
    let text = VALID.replace("size: 10s", "size: 0s");
    one(
        &text,
        "job.yaml:23:13: operators[2].window.size: ",
        "must be longer than 0ms",
    );
}

#[test]
fn expression_errors_point_into_the_expression() {
    let text = VALID.replace("price < 1000", "price < 'cheap'");
    one(
        &text,
        "job.yaml:13:22: operators[0].condition: ",
        "at character 7: cannot compare int with string",
    );
    let text = VALID.replace("lower(channel)", "lower(chanel)");
    one(
        &text,
        "job.yaml:13:39: operators[0].condition: ",
        "unknown field `chanel`",
    );
}

#[test]
fn not_available_kinds_and_backends() {
    let text = VALID.replace("name: demo", "name: demo\nstate_backend: rocks");
    one(
        &text,
        "job.yaml:2:16: state_backend: ",
        "unknown state backend `rocks`: expected `heap` or `rocksdb`",
    );
}

const JOINED: &str = "\
name: joined
sources:
  - {name: bids, kind: bids, events: 1000}
  - {name: auctions, kind: nexmark, events: 1000, event: auction}
operators:
  - {name: bids_by_auction, kind: key_by, input: bids, key: auction}
  - {name: auctions_by_id, kind: key_by, input: auctions, key: id}
  - name: pairs
    kind: window_join
    inputs: [bids_by_auction, auctions_by_id]
    window: {type: tumbling, size: 10s}
  - name: near
    kind: interval_join
    inputs: [bids_by_auction, auctions_by_id]
    between: [-2s, 1s]
sinks:
  - {name: out, kind: stdout, input: pairs}
  - {name: out2, kind: stdout, input: near}
";

#[test]
fn joins_plan_their_output_fields_and_check_their_inputs() {
    let plan = load("job.yaml", JOINED, &Registry::default()).unwrap();
    let pairs = &plan.streams[4].schema;
    assert_eq!(
        pairs.names(),
        "auction, window_start, window_end, bidder, price, channel, url, date_time, extra, \
         item_name, description, initial_bid, reserve, auctions_by_id_date_time, expires, \
         seller, category, auctions_by_id_extra"
    );
    assert_eq!(pairs.event_time, Some(2));
    let near = &plan.streams[5].schema;
    assert!(near.names().ends_with("auctions_by_id_extra, event_time"));
    assert_eq!(near.event_time, Some(near.fields.len() - 1));

    let mismatch = "join keys must have the same types: `bids_by_auction` is keyed by (auction int) but `auctions_by_id` by (item_name string)";
    assert_eq!(
        problems(&JOINED.replace("key: id", "key: item_name")),
        vec![
            format!("job.yaml:10:31: operators[2].inputs[1]: {mismatch}"),
            format!("job.yaml:14:31: operators[3].inputs[1]: {mismatch}"),
        ]
    );
    let found = problems(&JOINED.replace(
        "inputs: [bids_by_auction, auctions_by_id]\n    window",
        "inputs: [bids, auctions_by_id]\n    window",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("job.yaml:10:14: operators[2].inputs[0]: a join reads keyed streams: expected `bids` to be a key_by"),
        "{found:#?}"
    );
    one(
        &JOINED.replace("between: [-2s, 1s]", "between: [2s, -1s]"),
        "job.yaml:15:14: operators[3].between: ",
        "the lower bound (2000 ms) must not exceed the upper bound (-1000 ms)",
    );
    one(
        &JOINED.replace("between: [-2s, 1s]", "between: [-2x, 1s]"),
        "job.yaml:15:15: operators[3].between[0]: ",
        "bad duration `-2x`",
    );
    one(
        &JOINED.replace(
            "inputs: [bids_by_auction, auctions_by_id]\n    between",
            "input: bids_by_auction\n    between",
        ),
        "job.yaml:12:5: operators[3]: ",
        "a join reads two keyed streams: expected `inputs: [LEFT, RIGHT]`, found 1",
    );
}

#[test]
fn schema_errors_flow_through_the_graph() {
    let text = VALID.replace("key: auction", "key: auctions");
    one(
        &text,
        "job.yaml:17:10: operators[1].key: ",
        "unknown field `auctions`",
    );
    let text = VALID.replace("top: max(price)", "top: max(channel)");
    one(
        &text,
        "job.yaml:24:33: operators[2].aggregates.top: ",
        "cannot aggregate a string field",
    );
    let text = VALID.replace("input: by_auction", "input: cheap");
    one(
        &text,
        "job.yaml:20:12: operators[2].input: ",
        "a window reads a keyed stream",
    );
}

#[test]
fn several_problems_are_reported_at_once_in_file_order() {
    let text = VALID
        .replace("parallelism: 2", "parallelism: 0")
        .replace("kind: filter", "kind: filtre")
        .replace("input: cheap", "input: nowhere")
        .replace("size: 10s", "size: 10")
        .replace("kind: stdout", "kind: stdout, colour: red");
    let found = problems(&text);
    let lines: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "parallelism",
            "operators[0].kind",
            "operators[1].input",
            "operators[2].window.size",
            "sinks[0].colour"
        ],
        "{found:#?}"
    );
}

#[test]
fn json_files_get_positions_too() {
    let text = "{\n  \"sources\": [{\"name\": \"n\", \"kind\": \"sequence\", \"from\": 1, \"to\": \"ten\"}],\n  \"sinks\": [{\"name\": \"o\", \"kind\": \"stdout\", \"input\": \"m\"}]\n}\n";
    let found = problems(text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("job.yaml:2:66: sources[0].to: expected an integer, found a string"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("job.yaml:3:54: sinks[0].input: undefined stream `m`"),
        "{found:#?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load("fuzz.yaml", &text, &Registry::default());
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[a-z_:{}\\[\\],'\" \n0-9()<>=+*/%-]{0,300}") {
        let _ = load("fuzz.yaml", &text, &Registry::default());
    }

    #[test]
    fn mutated_valid_files_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[\\PC]{0,3}"), 1..6)) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (index, action, insert) in edits {
            let at = index.index(text.len().max(1)).min(text.len());
            match action {
                0 if at < text.len() => { text.remove(at); }
                1 => { text.splice(at..at, insert.chars()); }
                2 if at < text.len() => { text.truncate(at); }
                _ => { text.splice(at..at, ['\n', ' ', ':', '[']); }
            }
        }
        let text: String = text.into_iter().collect();
        let _ = load("fuzz.yaml", &text, &Registry::default());
    }
}

#[test]
fn a_sequence_rate_is_a_positive_integer() {
    let text = "sources: [{name: n, kind: sequence, from: 1, to: 9, rows_per_second: 0}]\nsinks: [{name: o, kind: blackhole, input: n}]\n";
    one(
        text,
        "job.yaml:1:70: sources[0].rows_per_second: ",
        "expected a positive integer, found 0",
    );
    let plan = load(
        "job.yaml",
        &text.replace("rows_per_second: 0", "rows_per_second: 50"),
        &Registry::default(),
    )
    .unwrap();
    match &plan.spec.sources[0].kind {
        weir_jobfile::SourceKind::Sequence {
            rows_per_second, ..
        } => assert_eq!(*rows_per_second, Some(50)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_sink_named_like_a_stream_is_refused_before_the_run() {
    // Before: `weir validate` accepted it and the run failed on the duplicate uid.
    one(
        &VALID.replace("{name: out, kind: stdout", "{name: cheap, kind: stdout"),
        "job.yaml:26:12: sinks[0].name: ",
        "sink `cheap` has the name of the stream defined at line 10",
    );
}

/// `pre_aggregate` asks for two phases; windows that cannot have them say so.
#[test]
fn pre_aggregate_applies_to_tumbling_and_sliced_hopping_windows() {
    let text = VALID.replace(
        "aggregates: {n: count, top: max(price)}",
        "aggregates: {n: count, top: max(price)}\n    pre_aggregate: true",
    );
    let plan = load("job.yaml", &text, &Registry::default()).unwrap();
    match &plan.streams[3].step {
        weir_jobfile::Step::Window(w) => assert!(w.pre_aggregate),
        other => panic!("{other:?}"),
    }
    let session = text.replace(
        "type: tumbling\n      size: 10s",
        "type: session\n      gap: 10s",
    );
    one(
        &session,
        "job.yaml:",
        "pre_aggregate with a Session { gap: 10s } window: expected a tumbling window, or a hopping window whose size is a multiple of its slide",
    );
    one(
        &text.replace("pre_aggregate: true", "pre_aggregate: yes"),
        "job.yaml:",
        "expected true or false",
    );
}

#[test]
fn top_reads_a_windows_rows_and_a_top_window_replaces_aggregates() {
    let with = |ops: &str| {
        VALID.replace(
            "sinks:\n  - {name: out, kind: stdout, input: counts}",
            &format!("{ops}sinks:\n  - {{name: out, kind: stdout, input: counts}}"),
        )
    };
    // Top after a window: the window's rows, per window_end.
    let text = with("  - {name: best, kind: top, input: counts, by: n}\n  - {name: b2, kind: filter, input: best, condition: n > 1}\n");
    let plan = load("job.yaml", &text, &Registry::default()).unwrap();
    let best = plan
        .streams
        .iter()
        .find(|s| s.node.name.value == "best")
        .unwrap();
    assert_eq!(
        best.schema.names(),
        "auction, window_start, window_end, n, top"
    );
    // Top of a stream that is not a window's output.
    one(
        &with("  - {name: best, kind: top, input: cheap, by: price}\n"),
        "job.yaml:",
        "expected the output of a window (event time `window_end`)",
    );
    one(
        &with("  - {name: best, kind: top, input: counts, by: nope}\n"),
        "job.yaml:",
        "unknown field `nope`",
    );
    // A window keeping its top rows: window bounds, then the input's fields.
    let text = VALID.replace("aggregates: {n: count, top: max(price)}", "top: price");
    let plan = load("job.yaml", &text, &Registry::default()).unwrap();
    assert_eq!(
        plan.streams[3].schema.names(),
        "window_start, window_end, auction, bidder, price, channel, url, date_time, extra"
    );
    assert_eq!(plan.streams[3].schema.event_time, Some(1));
    one(
        &VALID.replace(
            "aggregates: {n: count, top: max(price)}",
            "aggregates: {n: count}\n    top: price",
        ),
        "job.yaml:",
        "give either `aggregates` or `top`",
    );
    // Top-N: the rank appended; text orders too.
    let text = VALID.replace(
        "aggregates: {n: count, top: max(price)}",
        "top: {by: [channel asc, price], n: 3, rank: row_number, rank_field: rownum}",
    );
    let plan = load("job.yaml", &text, &Registry::default()).unwrap();
    assert!(plan.streams[3].schema.names().ends_with("extra, rownum"));
    let top_n = |top: &str| VALID.replace("aggregates: {n: count, top: max(price)}", top);
    one(
        &top_n("top: {by: price upward}"),
        "job.yaml:",
        "bad order `price upward`: expected a field name, then optionally `asc` or `desc`",
    );
    one(
        &top_n("top: {by: price, rank: best}"),
        "job.yaml:",
        "unknown value `best`: expected one of rank, dense_rank, row_number",
    );
    one(
        &top_n("top: {by: price, n: 0}"),
        "job.yaml:",
        "expected a positive integer, found 0",
    );
    one(
        &top_n("top: {by: price, rank_field: url}"),
        "job.yaml:",
        "rank field `url` clashes with a field of the output",
    );
    one(
        &top_n("top: {by: [], n: 2}"),
        "job.yaml:",
        "expected at least one field to order by",
    );
    one(
        &with("  - {name: best, kind: top, input: counts, by: n, partition_by: [nope]}\n"),
        "job.yaml:",
        "unknown field `nope`",
    );
}

//! Each kind of bad input gives `file:line:column: path: expectation`, and a file
//! with several problems reports all of them.

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
    let text = VALID.replace("kind: filter", "kind: window_join");
    one(
        &text,
        "job.yaml:11:11: operators[0].kind: ",
        "not available in this build",
    );
    let text = VALID.replace("kind: bids", "kind: file");
    let found = problems(&text);
    assert!(
        found[0].starts_with(
            "job.yaml:6:11: sources[0].kind: source kind `file` is not available in this build"
        ),
        "{found:#?}"
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

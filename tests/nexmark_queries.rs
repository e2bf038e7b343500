//! End-to-end checks of the Nexmark queries: each query's rows, on the deterministic
//! generators and on random out-of-order inputs, at several parallelisms, equal (as
//! multisets) those of a plain single-threaded reference written straight from the
//! SQL.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use proptest::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;
use weir::dataflow::testing::{CollectSink, CollectionSource};
use weir::dataflow::{JobBuilder, JobConfig, Stream, Timestamp, WatermarkStrategy};
use weir::nexmark::{
    self, nexmark_event, Auction, Bid, Event, NexmarkConfig, NexmarkSource, Person, Q1Row, Q2Row,
    Q3Row, Q5Row, Q7Row, Q8Row, QsRow, Query, QwRow, WATERMARK_DELAY,
};
use weir::state::StateBackend;

const WINDOW_MS: i64 = 10_000;
const SLIDE_MS: i64 = 2_000;

thread_local! {
    /// The state backend of the jobs `run` starts on this thread (tests run on
    /// threads of their own).
    static BACKEND: std::cell::RefCell<StateBackend> = const { std::cell::RefCell::new(StateBackend::Heap) };
}

fn config(parallelism: usize) -> JobConfig {
    JobConfig {
        state_backend: BACKEND.with(|b| b.borrow().clone()),
        name: format!("nexmark-test-p{parallelism}"),
        parallelism,
        // Small batches and a watermark after every poll: many interleavings of
        // records and watermarks instead of one final watermark.
        batch_size: 64,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    }
}

/// Runs `query` over `input` (built by `source` on the job) and collects its rows.
fn run<I, T: Send + Clone + 'static>(
    parallelism: usize,
    source: impl FnOnce(&JobBuilder) -> Stream<I>,
    query: impl FnOnce(&Stream<I>) -> Stream<T>,
) -> Vec<T> {
    let job = JobBuilder::new(config(parallelism));
    let (sink, rows) = CollectSink::new();
    query(&source(&job)).sink("collect", sink);
    let result = job.execute().expect("the job runs");
    let late: u64 = result.metrics.iter().map(|m| m.late_records).sum();
    assert_eq!(
        late, 0,
        "no record may be late: disorder stays within the bound"
    );
    rows.take()
}

fn generated_bids(events: u64, rows_per_ms: i64, parallelism: usize) -> Vec<Bid> {
    let p = parallelism as i64;
    (1..=events as i64)
        .map(|i| weir::nexmark::bid(i, events as i64, p, rows_per_ms))
        .collect()
}

fn collection(bids: Vec<Bid>) -> impl FnOnce(&JobBuilder) -> Stream<Bid> {
    move |job| {
        job.source(
            "bids",
            WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY, |b: &Bid| {
                Timestamp(b.date_time)
            }),
            CollectionSource::factory_with_poll_size(bids, 7),
        )
    }
}

fn assert_same_rows<T: Ord + Debug>(mut got: Vec<T>, mut want: Vec<T>, what: &str) {
    got.sort();
    want.sort();
    if got != want {
        let missing: Vec<&T> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
        let extra: Vec<&T> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
        panic!(
            "{what}: {} rows, expected {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
            got.len(),
            want.len()
        );
    }
}

// ------------------------------------------------------------------ references

fn window_start(ts: i64, size: i64) -> i64 {
    ts - ts.rem_euclid(size)
}

/// A bid as an ordered tuple (q0 rows).
type BidKey = (i64, i64, i64, String, String, i64, String);

fn bid_key(b: &Bid) -> BidKey {
    (
        b.auction,
        b.bidder,
        b.price,
        b.channel.to_string(),
        b.url.to_string(),
        b.date_time,
        b.extra.to_string(),
    )
}

/// A q1 row as an ordered tuple (its price as bits: computed the same way on both
/// sides, so equal exactly).
fn q1_key(r: &Q1Row) -> (BidKey, u64) {
    (
        (
            r.auction,
            r.bidder,
            0,
            r.channel.to_string(),
            r.url.to_string(),
            r.date_time,
            r.extra.to_string(),
        ),
        r.price.to_bits(),
    )
}

fn ref_q1(bids: &[Bid]) -> Vec<Q1Row> {
    bids.iter()
        .map(|b| Q1Row {
            auction: b.auction,
            bidder: b.bidder,
            price: 0.908 * b.price as f64,
            channel: b.channel.clone(),
            url: b.url.clone(),
            date_time: b.date_time,
            extra: b.extra.clone(),
        })
        .collect()
}

fn ref_q2(bids: &[Bid]) -> Vec<Q2Row> {
    bids.iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| Q2Row {
            auction: b.auction,
            price: b.price,
        })
        .collect()
}

fn ref_qw(bids: &[Bid]) -> Vec<QwRow> {
    let mut groups: BTreeMap<(i64, i64), (u64, i64)> = BTreeMap::new();
    for b in bids {
        let g = groups
            .entry((b.auction, window_start(b.date_time, WINDOW_MS)))
            .or_insert((0, i64::MIN));
        g.0 += 1;
        g.1 = g.1.max(b.price);
    }
    groups
        .into_iter()
        .map(|((auction, start), (count, max_price))| QwRow {
            auction,
            window_start: start,
            window_end: start + WINDOW_MS,
            count,
            max_price,
        })
        .collect()
}

fn ref_q5(bids: &[Bid]) -> Vec<Q5Row> {
    // HOP: every window [s, s + 10 s) with s a multiple of 2 s containing the bid.
    let mut counts: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for b in bids {
        let mut s = window_start(b.date_time, SLIDE_MS);
        while s > b.date_time - WINDOW_MS {
            *counts.entry((s, b.auction)).or_default() += 1;
            s -= SLIDE_MS;
        }
    }
    let mut max: BTreeMap<i64, u64> = BTreeMap::new();
    for (&(s, _), &n) in &counts {
        let m = max.entry(s).or_default();
        *m = (*m).max(n);
    }
    counts
        .into_iter()
        .filter(|((s, _), n)| *n >= max[s])
        .map(|((s, auction), num)| Q5Row {
            auction,
            num,
            window_start: s,
            window_end: s + WINDOW_MS,
        })
        .collect()
}

fn ref_q7(bids: &[Bid]) -> Vec<Q7Row> {
    let mut max: BTreeMap<i64, i64> = BTreeMap::new();
    for b in bids {
        let m = max
            .entry(window_start(b.date_time, WINDOW_MS))
            .or_insert(i64::MIN);
        *m = (*m).max(b.price);
    }
    bids.iter()
        .filter(|b| b.price == max[&window_start(b.date_time, WINDOW_MS)])
        .map(|b| Q7Row {
            auction: b.auction,
            price: b.price,
            bidder: b.bidder,
            date_time: b.date_time,
            extra: b.extra.clone(),
        })
        .collect()
}

fn ref_qs(bids: &[Bid]) -> Vec<QsRow> {
    let mut times: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut rows = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let mut start = 0;
        for i in 1..=ts.len() {
            // A session ends where the next bid is more than the gap after the last.
            if i == ts.len() || ts[i] - ts[i - 1] > WINDOW_MS {
                rows.push(QsRow {
                    bidder,
                    window_start: ts[start],
                    window_end: ts[i - 1] + WINDOW_MS,
                    count: (i - start) as u64,
                });
                start = i;
            }
        }
    }
    rows
}

// ------------------------------------------------------------------ bid queries

/// Checks all seven bid queries on `bids` fed through `source` at `parallelism`.
fn check_bid_queries(
    parallelism: usize,
    bids: &[Bid],
    source: impl Fn() -> Box<dyn FnOnce(&JobBuilder) -> Stream<Bid>>,
) {
    let what = |q: Query| format!("{q} at parallelism {parallelism}");
    let q0 = run(parallelism, source(), nexmark::q0);
    assert_same_rows(
        q0.iter().map(bid_key).collect(),
        bids.iter().map(bid_key).collect(),
        &what(Query::Q0),
    );
    let q1 = run(parallelism, source(), nexmark::q1);
    assert_same_rows(
        q1.iter().map(q1_key).collect(),
        ref_q1(bids).iter().map(q1_key).collect(),
        &what(Query::Q1),
    );
    let q2 = run(parallelism, source(), nexmark::q2);
    assert_same_rows(q2, ref_q2(bids), &what(Query::Q2));
    let qw = run(parallelism, source(), nexmark::qw);
    assert_same_rows(qw, ref_qw(bids), &what(Query::Qw));
    let q5 = run(parallelism, source(), nexmark::q5);
    assert_same_rows(q5, ref_q5(bids), &what(Query::Q5));
    let q7 = run(parallelism, source(), nexmark::q7);
    assert_same_rows(q7, ref_q7(bids), &what(Query::Q7));
    let qs = run(parallelism, source(), nexmark::qs);
    assert_same_rows(qs, ref_qs(bids), &what(Query::Qs));
}

fn check_generated(parallelism: usize, events: u64, rows_per_ms: i64) {
    let bids = generated_bids(events, rows_per_ms, parallelism);
    check_bid_queries(parallelism, &bids, || {
        Box::new(move |job: &JobBuilder| nexmark::bid_stream(job, events, rows_per_ms))
    });
}

#[test]
fn bid_queries_on_the_generator_at_parallelism_1() {
    check_generated(1, 50_000, 1);
}

#[test]
fn bid_queries_on_the_generator_at_parallelism_2() {
    check_generated(2, 50_000, 1);
}

#[test]
fn bid_queries_on_the_generator_at_parallelism_3() {
    check_generated(3, 60_000, 2);
}

/// Window contents, session state and join state in RocksDB (with a record cache
/// small enough to be emptied often) give the rows of the reference.
#[test]
#[cfg_attr(not(feature = "rocksdb"), ignore = "needs the `rocksdb` feature")]
fn bid_and_event_queries_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    BACKEND.with(|b| {
        *b.borrow_mut() = StateBackend::RocksDb(weir::state::RocksDbConfig {
            dir: dir.path().to_path_buf(),
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 16 << 20,
            record_cache_entries: 100,
            background_jobs: 1,
        })
    });
    check_generated(2, 30_000, 1);
    let config = NexmarkConfig {
        events: 10_000,
        events_per_second: 200,
        seed: 7,
    };
    let events: Vec<Event> = (0..config.events)
        .map(|n| nexmark_event(n, &config))
        .collect();
    check_event_queries(2, &events, || Box::new(generator_events(config)));
    BACKEND.with(|b| *b.borrow_mut() = StateBackend::Heap);
}

#[test]
fn the_references_see_several_windows_and_ties() {
    let bids = generated_bids(30_000, 1, 2);
    let windows: BTreeSet<i64> = ref_qw(&bids).iter().map(|r| r.window_start).collect();
    assert!(windows.len() >= 3, "{windows:?}");
    let q5 = ref_q5(&bids);
    let hop_windows: BTreeSet<i64> = q5.iter().map(|r| r.window_start).collect();
    assert!(q5.len() > hop_windows.len(), "some hop windows have ties");
    assert!(ref_qs(&bids).iter().any(|r| r.count > 1));
}

/// Random bids: few auctions, bidders and prices (so windows, sessions and ties are
/// dense), event time advancing by up to 3 s per bid and jittered by up to ±1.999 s,
/// so out of order by less than the 4 s watermark delay.
fn random_bids() -> impl Strategy<Value = Vec<Bid>> {
    prop::collection::vec(
        (
            1i64..=6,
            1i64..=8,
            1i64..=25,
            0i64..=3_000,
            -1_999i64..=1_999,
        ),
        0..250,
    )
    .prop_map(|raw| {
        let mut base = 1_700_000_000_000i64;
        raw.into_iter()
            .map(|(auction, bidder, price, step, jitter)| {
                base += step;
                Bid {
                    auction: auction * 41,
                    bidder,
                    price,
                    channel: Cow::Borrowed("apple"),
                    url: Cow::Borrowed("https://www.nexmark.com/"),
                    date_time: base + jitter,
                    extra: Cow::Owned(format!("x{price}")),
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn bid_queries_on_random_out_of_order_bids(bids in random_bids(), parallelism in 1usize..=3) {
        check_bid_queries(parallelism, &bids, || Box::new(collection(bids.clone())));
    }
}

// ------------------------------------------------------------------ q3 and q8

fn ref_q3(events: &[Event]) -> Vec<Q3Row> {
    let sellers: Vec<&Person> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) if ["OR", "ID", "CA"].contains(&p.state.as_str()) => Some(p),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    for e in events {
        if let Event::Auction(a) = e {
            if a.category != 10 {
                continue;
            }
            for p in sellers.iter().filter(|p| p.id == a.seller) {
                rows.push(Q3Row {
                    name: p.name.clone(),
                    city: p.city.clone(),
                    state: p.state.clone(),
                    auction_id: a.id,
                });
            }
        }
    }
    rows
}

fn ref_q8(events: &[Event]) -> Vec<Q8Row> {
    let mut persons: BTreeSet<(i64, String, i64)> = BTreeSet::new();
    let mut sellers: BTreeSet<(i64, i64)> = BTreeSet::new();
    for e in events {
        match e {
            Event::Person(p) => {
                persons.insert((p.id, p.name.clone(), window_start(p.date_time, WINDOW_MS)));
            }
            Event::Auction(a) => {
                sellers.insert((a.seller, window_start(a.date_time, WINDOW_MS)));
            }
            Event::Bid(_) => {}
        }
    }
    persons
        .into_iter()
        .filter(|(id, _, start)| sellers.contains(&(*id, *start)))
        .map(|(person_id, name, window_start)| Q8Row {
            person_id,
            name,
            window_start,
        })
        .collect()
}

fn event_collection(events: Vec<Event>) -> impl FnOnce(&JobBuilder) -> Stream<Event> {
    move |job| {
        job.source(
            "events",
            WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY, Event::timestamp),
            CollectionSource::factory_with_poll_size(events, 5),
        )
    }
}

fn generator_events(config: NexmarkConfig) -> impl FnOnce(&JobBuilder) -> Stream<Event> {
    move |job| {
        job.source(
            "nexmark",
            WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY, Event::timestamp),
            NexmarkSource::factory(config),
        )
    }
}

fn check_event_queries(
    parallelism: usize,
    events: &[Event],
    source: impl Fn() -> Box<dyn FnOnce(&JobBuilder) -> Stream<Event>>,
) {
    let q3 = run(parallelism, source(), nexmark::q3);
    assert_same_rows(
        q3,
        ref_q3(events),
        &format!("q3 at parallelism {parallelism}"),
    );
    let q8 = run(parallelism, source(), nexmark::q8);
    assert_same_rows(
        q8,
        ref_q8(events),
        &format!("q8 at parallelism {parallelism}"),
    );
}

#[test]
fn q3_and_q8_on_the_nexmark_generator() {
    // 200 events per second: 10,000 events span 50 s, five q8 windows.
    let config = NexmarkConfig {
        events: 10_000,
        events_per_second: 200,
        seed: 7,
    };
    let events: Vec<Event> = (0..config.events)
        .map(|n| nexmark_event(n, &config))
        .collect();
    assert!(ref_q3(&events).len() >= 10, "q3 selects some auctions");
    let q8 = ref_q8(&events);
    let windows: BTreeSet<i64> = q8.iter().map(|r| r.window_start).collect();
    assert!(
        windows.len() >= 3,
        "q8 finds new users in several windows: {q8:?}"
    );
    for parallelism in 1..=3 {
        check_event_queries(parallelism, &events, || Box::new(generator_events(config)));
    }
}

#[test]
fn q3_and_q8_on_the_default_event_stream() {
    let config = NexmarkConfig::new(5_000);
    let events: Vec<Event> = (0..config.events)
        .map(|n| nexmark_event(n, &config))
        .collect();
    check_event_queries(2, &events, || {
        Box::new(move |job: &JobBuilder| nexmark::event_stream(job, 5_000))
    });
}

/// Random persons and auctions: few ids (so a person id may repeat, with the same or
/// another name, and auctions may come before their seller), jittered event time as
/// for the bids.
fn random_events() -> impl Strategy<Value = Vec<Event>> {
    let event = (
        any::<bool>(),
        1i64..=5,
        0usize..3,
        0usize..4,
        10i64..=11,
        0i64..=3_000,
        -1_999i64..=1_999,
    );
    prop::collection::vec(event, 0..150).prop_map(|raw| {
        let mut base = 1_700_000_000_000i64;
        raw.into_iter()
            .enumerate()
            .map(
                |(n, (is_person, id, name, state, category, step, jitter))| {
                    base += step;
                    let date_time = base + jitter;
                    if is_person {
                        Event::Person(Person {
                            id,
                            name: ["Ann", "Bob", "Cy"][name].to_string(),
                            email_address: String::new(),
                            credit_card: String::new(),
                            city: ["Portland", "Boise"][name % 2].to_string(),
                            state: ["OR", "ID", "CA", "WA"][state].to_string(),
                            date_time,
                            extra: String::new(),
                        })
                    } else {
                        Event::Auction(Auction {
                            id: 1000 + n as i64,
                            item_name: String::new(),
                            description: String::new(),
                            initial_bid: 1,
                            reserve: 2,
                            date_time,
                            expires: date_time + 1,
                            seller: id,
                            category,
                            extra: String::new(),
                        })
                    }
                },
            )
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn q3_and_q8_on_random_out_of_order_events(events in random_events(), parallelism in 1usize..=3) {
        check_event_queries(parallelism, &events, || Box::new(event_collection(events.clone())));
    }
}

#[test]
fn run_blackhole_counts_the_rows_of_every_query() {
    let events = 20_000;
    let bids = generated_bids(events, nexmark::DEFAULT_ROWS_PER_MS, 2);
    let nexmark_events: Vec<Event> = (0..events)
        .map(|n| nexmark_event(n, &NexmarkConfig::new(events)))
        .collect();
    for query in Query::ALL {
        let expected = match query {
            Query::Q0 | Query::Q1 => bids.len(),
            Query::Q2 => ref_q2(&bids).len(),
            Query::Qw => ref_qw(&bids).len(),
            Query::Q5 => ref_q5(&bids).len(),
            Query::Q7 => ref_q7(&bids).len(),
            Query::Qs => ref_qs(&bids).len(),
            Query::Q3 => ref_q3(&nexmark_events).len(),
            Query::Q8 => ref_q8(&nexmark_events).len(),
        };
        let run = nexmark::run_blackhole(query, config(2), events).expect("the query runs");
        assert_eq!(run.output_records, expected as u64, "{query}");
        let read: u64 = run
            .job
            .metrics
            .iter()
            .filter(|m| m.operator == nexmark::BID_SOURCE || m.operator == nexmark::EVENT_SOURCE)
            .map(|m| m.records_out)
            .sum();
        assert_eq!(read, events, "{query} reads every event");
    }
}

#[test]
fn invalid_settings_are_reported_not_panicked() {
    let err = nexmark::run_blackhole(
        Query::Qw,
        JobConfig {
            parallelism: 0,
            ..config(1)
        },
        10,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("parallelism"), "{err}");
}

//! The Nexmark generator sources run in real jobs: every record exactly once, at any
//! parallelism, equal to the pure generator functions.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;
use weir_dataflow::testing::CollectSink;
use weir_dataflow::{JobBuilder, JobConfig, Timestamp, WatermarkStrategy};
use weir_nexmark::events::{
    FIRST_AUCTION_ID, FIRST_CATEGORY_ID, FIRST_PERSON_ID, NUM_CATEGORIES, US_STATES,
};
use weir_nexmark::{
    bid, nexmark_event, Bid, BidGeneratorConfig, BidSource, Event, NexmarkConfig, NexmarkSource,
};

fn job(parallelism: usize) -> JobBuilder {
    JobBuilder::new(JobConfig {
        parallelism,
        ..JobConfig::default()
    })
}

fn counts<T: Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

fn run_bids(parallelism: usize, config: BidGeneratorConfig) -> Vec<Bid> {
    let job = job(parallelism);
    let (sink, collected) = CollectSink::new();
    job.source(
        "bids",
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(4), |b: &Bid| {
            Timestamp(b.date_time)
        }),
        BidSource::factory(config),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    collected.take()
}

#[test]
fn bid_source_emits_every_bid_once() {
    let n = 10_000;
    let config = BidGeneratorConfig {
        events: n,
        rows_per_ms: 10,
        source_parallelism: 2,
    };
    let expected = counts((1..=n as i64).map(|i| bid(i, n as i64, 2, 10)));
    assert_eq!(counts(run_bids(2, config)), expected);
    // The id split follows the job's parallelism; the rows depend only on the config.
    assert_eq!(counts(run_bids(3, config)), expected);
}

#[test]
fn bid_source_with_no_bids_finishes() {
    assert!(run_bids(2, BidGeneratorConfig::new(0)).is_empty());
    assert_eq!(run_bids(4, BidGeneratorConfig::new(3)).len(), 3);
}

#[test]
fn invalid_bid_config_fails_the_job_with_a_message() {
    let job = job(1);
    let (sink, _) = CollectSink::<Bid>::new();
    let config = BidGeneratorConfig {
        rows_per_ms: 0,
        ..BidGeneratorConfig::new(10)
    };
    job.source(
        "bids",
        WatermarkStrategy::none(),
        BidSource::factory(config),
    )
    .sink("collect", sink);
    let err = job.execute().unwrap_err().to_string();
    assert!(err.contains("rows_per_ms"), "{err}");
}

fn run_events(parallelism: usize, config: NexmarkConfig) -> Vec<Event> {
    let job = job(parallelism);
    let (sink, collected) = CollectSink::new();
    job.source(
        "events",
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(4), Event::timestamp),
        NexmarkSource::factory(config),
    )
    .sink("collect", sink);
    job.execute().unwrap();
    collected.take()
}

#[test]
fn nexmark_source_is_independent_of_parallelism() {
    let config = NexmarkConfig::new(5_000);
    let one = run_events(1, config);
    let three = run_events(3, config);
    assert_eq!(one.len(), 5_000);
    let expected = counts((0..5_000).map(|n| nexmark_event(n, &config)));
    assert_eq!(counts(one), expected);
    assert_eq!(counts(three), expected);
}

#[test]
fn nexmark_proportions_are_1_3_46() {
    let config = NexmarkConfig::default();
    let (mut persons, mut auctions, mut bids) = (0, 0, 0);
    for n in 0..5_000 {
        match nexmark_event(n, &config) {
            Event::Person(_) => persons += 1,
            Event::Auction(_) => auctions += 1,
            Event::Bid(_) => bids += 1,
        }
    }
    assert_eq!((persons, auctions, bids), (100, 300, 4_600));
}

#[test]
fn nexmark_references_only_earlier_ids() {
    let config = NexmarkConfig {
        seed: 42,
        ..NexmarkConfig::default()
    };
    let mut next_person = FIRST_PERSON_ID;
    let mut next_auction = FIRST_AUCTION_ID;
    let (mut hot_auction_bids, mut bids) = (0, 0);
    let mut last_time = 0;
    for n in 0..200_000 {
        let event = nexmark_event(n, &config);
        assert!(
            event.date_time() >= last_time,
            "event {n} goes back in time"
        );
        last_time = event.date_time();
        match event {
            Event::Person(p) => {
                assert_eq!(p.id, next_person, "event {n}");
                next_person += 1;
                assert!(US_STATES.contains(&p.state.as_str()));
                assert_eq!(p.credit_card.len(), 19);
            }
            Event::Auction(a) => {
                assert_eq!(a.id, next_auction, "event {n}");
                next_auction += 1;
                assert!(
                    (FIRST_PERSON_ID..next_person).contains(&a.seller),
                    "event {n}: {a:?}"
                );
                let categories = FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + NUM_CATEGORIES;
                assert!(categories.contains(&a.category));
                assert!(a.reserve > a.initial_bid && a.expires > a.date_time);
            }
            Event::Bid(b) => {
                bids += 1;
                if b.auction % 100 == FIRST_AUCTION_ID % 100 {
                    hot_auction_bids += 1;
                }
                assert!(
                    (FIRST_AUCTION_ID..next_auction).contains(&b.auction),
                    "event {n}: {b:?}"
                );
                assert!(
                    (FIRST_PERSON_ID..next_person).contains(&b.bidder),
                    "event {n}: {b:?}"
                );
                assert!(b.price >= 100);
            }
        }
    }
    // Half the bids go to the hot auction of the latest batch, plus a share of the rest.
    assert!(hot_auction_bids * 2 > bids, "{hot_auction_bids} of {bids}");
}

#[test]
fn nexmark_seed_and_rate_change_the_events() {
    let base = NexmarkConfig::default();
    let seeded = NexmarkConfig { seed: 1, ..base };
    assert_ne!(nexmark_event(7, &base), nexmark_event(7, &seeded));
    assert_eq!(nexmark_event(7, &base), nexmark_event(7, &base));
    let fast = NexmarkConfig {
        events_per_second: 1_000_000,
        ..base
    };
    assert_eq!(nexmark_event(10_000, &base).date_time(), 1_700_000_001_000);
    assert_eq!(nexmark_event(10_000, &fast).date_time(), 1_700_000_000_010);
}

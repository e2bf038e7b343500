//! The Nexmark event generator: an auction site's stream of new persons, new
//! auctions and bids, after the generator of Apache Beam and of the Flink Nexmark
//! benchmark (`GeneratorConfig`, `PersonGenerator`, `AuctionGenerator`,
//! `BidGenerator`).
//!
//! ```text
//!  event number n ──(seed, n)──▶ SplitMix64 ──▶ n % 50: 0 → Person · 1..=3 → Auction · 4..=49 → Bid
//!                                                date_time = base + n · 1000 / events_per_second
//! ```
//!
//! Every event is a pure function of its number and the config
//! ([`nexmark_event`]), so any parallelism, any poll size and any restore produce
//! the same events. What follows the original:
//!
//! - out of every 50 events, 1 is a person, 3 are auctions and 46 are bids, in
//!   that order; person and auction ids count from [`FIRST_PERSON_ID`] and
//!   [`FIRST_AUCTION_ID`] in event order;
//! - an auction's seller is, 3 times in 4, the first of the latest batch of 100
//!   persons (a hot seller), else one of the 1000 most recent persons; its category
//!   is one of 5 from [`FIRST_CATEGORY_ID`]; it expires after a random time averaging
//!   the time until 100 more auctions have opened;
//! - a bid is, 1 time in 2, on the first of the latest batch of 100 auctions (a hot
//!   auction), else on one of the 100 most recent; its bidder is, 3 times in 4, the
//!   second of the latest batch of 100 persons (a hot bidder), else one of the 1000
//!   most recent; half the bids come from 4 hot channels, the rest from 10,000 others;
//! - prices are log-uniform between 1 and 1,000,000 dollars (in cents); names, cities
//!   and states come from the original lists; `extra` pads events to the original
//!   average sizes (person 200, auction 500, bid 100 bytes).
//!
//! Simplifications: the random numbers are SplitMix64's, not `java.util.Random`'s, so
//! the events are not the original's row for row; there are no "lead" ids, so every
//! seller, auction and bidder an event refers to was generated before it (the
//! original sometimes refers up to 10 ids ahead); the event rate is constant (no
//! rate shapes) and events are in order (no out-of-order groups).

mod generator;
mod rng;
mod source;

pub use generator::nexmark_event;
pub use source::NexmarkSource;

use crate::Bid;
use serde::{Deserialize, Serialize};
use weir_dataflow::{DataflowError, Result, Timestamp};

/// Id of the first person.
pub const FIRST_PERSON_ID: i64 = 1000;
/// Id of the first auction.
pub const FIRST_AUCTION_ID: i64 = 1000;
/// The first auction category; categories are `FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + 5`.
pub const FIRST_CATEGORY_ID: i64 = 10;
/// Number of auction categories.
pub const NUM_CATEGORIES: i64 = 5;
/// Persons per [`PROPORTION_TOTAL`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per [`PROPORTION_TOTAL`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per [`PROPORTION_TOTAL`] events.
pub const BID_PROPORTION: u64 = 46;
/// The length of the repeating person/auction/bid pattern.
pub const PROPORTION_TOTAL: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// The states persons live in.
pub const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
/// The cities persons live in.
pub const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// A person registering on the auction site.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Person {
    /// The person's id, from [`FIRST_PERSON_ID`].
    pub id: i64,
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number: four groups of four digits.
    pub credit_card: String,
    /// City (one of [`US_CITIES`]).
    pub city: String,
    /// State (one of [`US_STATES`]).
    pub state: String,
    /// Event time, milliseconds since the epoch.
    pub date_time: i64,
    /// Padding.
    pub extra: String,
}

/// An auction opened by a person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Auction {
    /// The auction's id, from [`FIRST_AUCTION_ID`].
    pub id: i64,
    /// The item's name.
    pub item_name: String,
    /// The item's description.
    pub description: String,
    /// The opening price, in cents.
    pub initial_bid: i64,
    /// The lowest price the seller accepts, in cents (above `initial_bid`).
    pub reserve: i64,
    /// Event time, milliseconds since the epoch.
    pub date_time: i64,
    /// When the auction closes, milliseconds since the epoch (after `date_time`).
    pub expires: i64,
    /// The selling person's id.
    pub seller: i64,
    /// The category, `FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + NUM_CATEGORIES`.
    pub category: i64,
    /// Padding.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event time in milliseconds since the epoch.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The event time.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp(self.date_time())
    }
}

/// Settings of the Nexmark generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NexmarkConfig {
    /// How many events a [`NexmarkSource`] emits: event numbers `0..events`.
    pub events: u64,
    /// Events per second of event time (default 10,000): event `n` happens at
    /// `BASE_TIME_MS + n * 1000 / events_per_second` ms.
    pub events_per_second: u64,
    /// Seed of the random choices (default 0).
    pub seed: u64,
}

impl NexmarkConfig {
    /// `events` events at the default rate and seed.
    pub fn new(events: u64) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`DataflowError::InvalidJob`] naming `operator` if `events_per_second` is 0.
    pub fn validate(&self, operator: &str) -> Result<()> {
        if self.events_per_second == 0 {
            return Err(DataflowError::invalid(
                operator,
                "nexmark generator: events_per_second must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for NexmarkConfig {
    /// A million events at 10,000 events per second, seed 0.
    fn default() -> Self {
        Self {
            events: 1_000_000,
            events_per_second: 10_000,
            seed: 0,
        }
    }
}

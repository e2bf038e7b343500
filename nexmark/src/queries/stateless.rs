//! The stateless bid queries: q0 (pass-through), q1 (projection) and q2 (filter).

use crate::Bid;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use weir_dataflow::{Stream, Timestamp};

/// The conversion rate of q1 (dollars to euros in the Nexmark benchmark).
pub const Q1_RATE: f64 = 0.908;

/// q2 keeps the bids whose auction is a multiple of this.
pub const Q2_AUCTION_MODULUS: i64 = 123;

/// A row of q1: a bid with its price converted (`price * 0.908`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q1Row {
    /// The auction bid on.
    pub auction: i64,
    /// The bidder.
    pub bidder: i64,
    /// The converted price: the bid's price times [`Q1_RATE`].
    pub price: f64,
    /// The channel the bid came through.
    pub channel: Cow<'static, str>,
    /// The bid's URL.
    pub url: Cow<'static, str>,
    /// Event time of the bid, ms since the epoch.
    pub date_time: i64,
    /// Padding.
    pub extra: Cow<'static, str>,
}

/// A row of q2: an auction that is a multiple of 123 and the bid's price.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q2Row {
    /// The auction bid on.
    pub auction: i64,
    /// The bid's price.
    pub price: i64,
}

/// q0: every bid, unchanged (`SELECT * FROM bid`). The result keeps the bids' event
/// time.
pub fn q0(bids: &Stream<Bid>) -> Stream<Bid> {
    let passed = bids
        .map(|bid: Bid| bid)
        .name("q0-pass-through")
        .uid("q0-pass-through");
    match bids.timestamps() {
        Some(timestamp) => passed.with_timestamps(move |bid| timestamp(bid)),
        None => passed,
    }
}

/// q1: every bid with its price converted to `price * 0.908` (as `f64`). The result's
/// event time is `date_time`.
pub fn q1(bids: &Stream<Bid>) -> Stream<Q1Row> {
    bids.map(|bid: Bid| Q1Row {
        auction: bid.auction,
        bidder: bid.bidder,
        price: bid.price as f64 * Q1_RATE,
        channel: bid.channel,
        url: bid.url,
        date_time: bid.date_time,
        extra: bid.extra,
    })
    .name("q1-convert-price")
    .uid("q1-convert-price")
    .with_timestamps(|row: &Q1Row| Timestamp(row.date_time))
}

/// q2: auction and price of the bids whose auction is a multiple of 123
/// (`WHERE MOD(auction, 123) = 0`). The result has no event time.
pub fn q2(bids: &Stream<Bid>) -> Stream<Q2Row> {
    bids.filter(|bid: &Bid| bid.auction % Q2_AUCTION_MODULUS == 0)
        .name("q2-filter")
        .uid("q2-filter")
        .map(|bid: Bid| Q2Row {
            auction: bid.auction,
            price: bid.price,
        })
        .name("q2-project")
        .uid("q2-project")
}

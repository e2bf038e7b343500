//! q7, highest bids: per tumbling 10 s window, every bid at the window's maximum
//! price.
//!
//! The SQL joins each bid back to its window's maximum. weir computes the same rows
//! in two aggregation stages, so only candidates, not all bids, meet on one key:
//!
//! ```text
//! bids ─key auction % 128─▶ tumbling 10 s: max price and the bids at it (partial)
//!      ─key window──────▶ tumbling 10 s: global max and the bids at it ─▶ Q7Row
//! ```
//!
//! A partial result carries `window_end - 1` as event time, so the second window
//! fires once every partial result of its window has arrived.

use super::windows::WINDOW;
use crate::Bid;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use weir_dataflow::state::AggregateFunction;
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{Stream, Timestamp};

/// Stage one of q7 keeps one partial maximum per window and bucket of auctions
/// (`auction % Q7_BUCKETS`): enough keys to spread the work over subtasks, few enough
/// that stage two merges only this many candidates per window.
pub const Q7_BUCKETS: i64 = 128;

/// A row of q7: a bid at the highest price of its tumbling 10 s window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q7Row {
    /// The auction bid on.
    pub auction: i64,
    /// The bid's price: the window's maximum.
    pub price: i64,
    /// The bidder.
    pub bidder: i64,
    /// Event time of the bid, ms since the epoch.
    pub date_time: i64,
    /// Padding.
    pub extra: Cow<'static, str>,
}

/// The highest price seen and every bid at it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TopBids {
    price: i64,
    bids: Vec<Q7Row>,
}

impl TopBids {
    fn new() -> Self {
        Self {
            price: i64::MIN,
            bids: Vec::new(),
        }
    }

    /// Folds in bids at `price`, produced by `bids` only if they are kept.
    fn offer<I: IntoIterator<Item = Q7Row>>(&mut self, price: i64, bids: impl FnOnce() -> I) {
        if price > self.price {
            self.price = price;
            self.bids.clear();
            self.bids.extend(bids());
        } else if price == self.price {
            self.bids.extend(bids());
        }
    }
}

/// The top bids of one bucket of auctions in one window (stage one's output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Candidates {
    window_start: i64,
    window_end: i64,
    top: TopBids,
}

/// Stage one: the highest price and its bids, over bids.
#[derive(Clone, Copy)]
struct TopOfBids;

impl AggregateFunction<Bid> for TopOfBids {
    type Acc = TopBids;
    type Out = TopBids;

    fn create(&self) -> TopBids {
        TopBids::new()
    }

    fn add(&self, acc: &mut TopBids, bid: &Bid) {
        acc.offer(bid.price, || {
            Some(Q7Row {
                auction: bid.auction,
                price: bid.price,
                bidder: bid.bidder,
                date_time: bid.date_time,
                extra: bid.extra.clone(),
            })
        });
    }

    fn merge(&self, acc: &mut TopBids, other: TopBids) {
        acc.offer(other.price, || other.bids);
    }

    fn result(&self, acc: &TopBids) -> TopBids {
        acc.clone()
    }
}

/// Stage two: the highest price and its bids, over stage one's candidates.
#[derive(Clone, Copy)]
struct TopOfCandidates;

impl AggregateFunction<Candidates> for TopOfCandidates {
    type Acc = TopBids;
    type Out = Vec<Q7Row>;

    fn create(&self) -> TopBids {
        TopBids::new()
    }

    fn add(&self, acc: &mut TopBids, candidates: &Candidates) {
        acc.offer(candidates.top.price, || candidates.top.bids.iter().cloned());
    }

    fn merge(&self, acc: &mut TopBids, other: TopBids) {
        acc.offer(other.price, || other.bids);
    }

    fn result(&self, acc: &TopBids) -> Vec<Q7Row> {
        acc.bids.clone()
    }
}

/// q7: per tumbling 10 s window, every bid whose price equals the window's highest
/// price. Needs bids with event time; the result has none (its bids' times are
/// behind the watermark by then).
pub fn q7(bids: &Stream<Bid>) -> Stream<Q7Row> {
    bids.key_by(|bid: &Bid| bid.auction % Q7_BUCKETS)
        .window(WindowAssigner::tumbling(WINDOW))
        .name("q7-partial-max")
        .aggregate(TopOfBids, |_, window, top| Candidates {
            window_start: window.start,
            window_end: window.end,
            top,
        })
        .uid("q7-partial-max")
        .with_timestamps(|c: &Candidates| Timestamp(c.window_end - 1))
        .key_by(|c: &Candidates| c.window_start)
        .window(WindowAssigner::tumbling(WINDOW))
        .name("q7-max")
        .aggregate(TopOfCandidates, |_, _, rows| rows)
        .uid("q7-max")
        .flat_map(|rows: Vec<Q7Row>| rows)
        .name("q7-rows")
        .uid("q7-rows")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(auction: i64, price: i64) -> Bid {
        Bid {
            auction,
            bidder: 1,
            price,
            channel: Cow::Borrowed("apple"),
            url: Cow::Borrowed("u"),
            date_time: 0,
            extra: Cow::Borrowed(""),
        }
    }

    #[test]
    fn top_keeps_all_bids_at_the_maximum_across_merges() {
        let mut left = TopOfBids.create();
        for b in [bid(1, 5), bid(2, 9), bid(3, 9), bid(4, 1)] {
            TopOfBids.add(&mut left, &b);
        }
        let prices: Vec<(i64, i64)> = left.bids.iter().map(|r| (r.auction, r.price)).collect();
        assert_eq!(prices, vec![(2, 9), (3, 9)]);
        let mut right = TopOfBids.create();
        TopOfBids.add(&mut right, &bid(5, 9));
        TopOfBids.merge(&mut left, right);
        assert_eq!(left.bids.len(), 3);
        TopOfBids.merge(&mut left, TopBids::new());
        assert_eq!(left.bids.len(), 3, "an empty accumulator changes nothing");

        let mut global = TopOfCandidates.create();
        let low = Candidates {
            window_start: 0,
            window_end: 10_000,
            top: TopBids {
                price: 3,
                bids: vec![],
            },
        };
        TopOfCandidates.add(&mut global, &low);
        TopOfCandidates.add(
            &mut global,
            &Candidates {
                top: left.clone(),
                ..low.clone()
            },
        );
        TopOfCandidates.add(&mut global, &low);
        assert_eq!(TopOfCandidates.result(&global), left.bids);
    }
}

//! The windowed bid queries: qw (tumbling), q5 (hopping, then the top per window) and
//! qs (sessions).
//!
//! ```text
//! qw: bids ─key auction─▶ tumbling 10 s (count, max price) ─▶ QwRow
//! q5: bids ─key auction─▶ hopping 10 s / 2 s count ─key window─▶ max count per window ─▶ Q5Row
//! qs: bids ─key bidder──▶ session gap 10 s count ─▶ QsRow
//! ```
//!
//! Window results carry the window's last millisecond (`window_end - 1`) as event
//! time, so later windows can group them.

use crate::Bid;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir_dataflow::state::{AggregateFunction, Count, Max};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{Stream, Timestamp};

/// Size of the tumbling windows of qw and q7, the hopping windows of q5 and the
/// session gap of qs.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The slide of q5's hopping windows.
pub const HOP_SLIDE: Duration = Duration::from_secs(2);

/// A row of qw: bid count and highest price of one auction in one tumbling window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QwRow {
    /// The auction.
    pub auction: i64,
    /// First millisecond of the window.
    pub window_start: i64,
    /// First millisecond after the window.
    pub window_end: i64,
    /// Bids on the auction in the window.
    pub count: u64,
    /// The highest price bid on the auction in the window.
    pub max_price: i64,
}

/// A row of q5: an auction with the most bids (`num`) of one hopping window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q5Row {
    /// The auction.
    pub auction: i64,
    /// Bids on the auction in the window: the window's maximum.
    pub num: u64,
    /// First millisecond of the window.
    pub window_start: i64,
    /// First millisecond after the window.
    pub window_end: i64,
}

/// A row of qs: bids of one bidder in one session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QsRow {
    /// The bidder.
    pub bidder: i64,
    /// Time of the session's first bid.
    pub window_start: i64,
    /// Time of the session's last bid plus the gap.
    pub window_end: i64,
    /// Bids in the session.
    pub count: u64,
}

/// qw: per auction and tumbling 10 s window, the number of bids and the highest
/// price. Needs bids with event time.
pub fn qw(bids: &Stream<Bid>) -> Stream<QwRow> {
    bids.key_by(|bid: &Bid| bid.auction)
        .window(WindowAssigner::tumbling(WINDOW))
        .name("qw-tumbling")
        .uid("qw-tumbling")
        .pre_aggregate()
        .aggregate(
            (Count, Max(|bid: &Bid| bid.price)),
            |&auction, window, (count, max_price)| QwRow {
                auction,
                window_start: window.start,
                window_end: window.end,
                count,
                // A window fires only once it holds a bid.
                max_price: max_price.unwrap_or(i64::MIN),
            },
        )
        .uid("qw-tumbling")
        .with_timestamps(|row: &QwRow| Timestamp(row.window_end - 1))
}

/// q5: per hopping window (10 s, sliding by 2 s), the auctions with the most bids
/// (all of them on a tie). Needs bids with event time.
///
/// Stage one counts bids per auction and window; stage two groups those counts by
/// window (they carry `window_end - 1` as event time, so a tumbling window of the
/// slide fires each group once all its counts arrived) and keeps the maximum, in
/// two phases: per subtask of stage one, then per window.
pub fn q5(bids: &Stream<Bid>) -> Stream<Q5Row> {
    bids.key_by(|bid: &Bid| bid.auction)
        .window(WindowAssigner::sliding(WINDOW, HOP_SLIDE))
        .name("q5-hop-count")
        .aggregate(Count, |&auction, window, num| Q5Row {
            auction,
            num,
            window_start: window.start,
            window_end: window.end,
        })
        .uid("q5-hop-count")
        .with_timestamps(|row: &Q5Row| Timestamp(row.window_end - 1))
        // The hopping windows all have the same size: the end names the window.
        .key_by(|row: &Q5Row| row.window_end)
        .window(WindowAssigner::tumbling(HOP_SLIDE))
        .name("q5-max-per-window")
        // Each subtask keeps its own maxima of a window before the exchange, so a
        // window's few top rows cross it rather than every auction's count.
        .pre_aggregate()
        .aggregate(MostBids, |_, _, rows| rows)
        .uid("q5-max-per-window")
        .flat_map(|rows: Vec<Q5Row>| rows)
        .name("q5-hot-items")
        .uid("q5-hot-items")
        .with_timestamps(|row: &Q5Row| Timestamp(row.window_end - 1))
}

/// qs: per bidder and session (bids at most 10 s apart), the number of bids. Needs
/// bids with event time.
pub fn qs(bids: &Stream<Bid>) -> Stream<QsRow> {
    bids.key_by(|bid: &Bid| bid.bidder)
        .window(WindowAssigner::session(WINDOW))
        .name("qs-session")
        .aggregate(Count, |&bidder, window, count| QsRow {
            bidder,
            window_start: window.start,
            window_end: window.end,
            count,
        })
        .uid("qs-session")
        .with_timestamps(|row: &QsRow| Timestamp(row.window_end - 1))
}

/// Keeps the rows with the highest `num` (all of them on a tie).
#[derive(Clone, Copy, Debug, Default)]
struct MostBids;

impl MostBids {
    fn offer(acc: &mut Vec<Q5Row>, row: &Q5Row) {
        match acc.first() {
            Some(best) if row.num < best.num => {}
            Some(best) if row.num == best.num => acc.push(row.clone()),
            _ => {
                acc.clear();
                acc.push(row.clone());
            }
        }
    }
}

impl AggregateFunction<Q5Row> for MostBids {
    type Acc = Vec<Q5Row>;
    type Out = Vec<Q5Row>;

    fn create(&self) -> Vec<Q5Row> {
        Vec::new()
    }

    fn add(&self, acc: &mut Vec<Q5Row>, row: &Q5Row) {
        Self::offer(acc, row);
    }

    fn merge(&self, acc: &mut Vec<Q5Row>, other: Vec<Q5Row>) {
        for row in &other {
            Self::offer(acc, row);
        }
    }

    fn result(&self, acc: &Vec<Q5Row>) -> Vec<Q5Row> {
        acc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(auction: i64, num: u64) -> Q5Row {
        Q5Row {
            auction,
            num,
            window_start: 0,
            window_end: 10_000,
        }
    }

    #[test]
    fn most_bids_keeps_every_row_at_the_maximum() {
        let agg = MostBids;
        let mut acc = agg.create();
        for r in [row(1, 2), row(2, 5), row(3, 1), row(4, 5)] {
            agg.add(&mut acc, &r);
        }
        assert_eq!(agg.result(&acc), vec![row(2, 5), row(4, 5)]);
        let mut other = agg.create();
        agg.add(&mut other, &row(7, 6));
        agg.merge(&mut acc, other);
        assert_eq!(agg.result(&acc), vec![row(7, 6)]);
        agg.merge(&mut acc, Vec::new());
        assert_eq!(agg.result(&acc), vec![row(7, 6)]);
    }
}

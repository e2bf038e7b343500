//! [`Query`]: the names of the Nexmark queries weir runs.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One of the Nexmark queries.
///
/// The seven bid queries ([`Query::BENCHMARKED`]) read the deterministic bid
/// generator and produce exactly the rows of the Flink SQL of the benchmark
/// (`shared/bench/flink/flink_bench.py`); [`Query::Q3`] and [`Query::Q8`] read the
/// full Nexmark event stream (persons, auctions and bids).
///
/// ```
/// use weir_nexmark::Query;
/// let q: Query = "qw".parse().unwrap();
/// assert_eq!(q, Query::Qw);
/// assert_eq!(q.to_string(), "qw");
/// assert!("q4".parse::<Query>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Query {
    /// Pass-through of every bid.
    Q0,
    /// Currency conversion: `price * 0.908`.
    Q1,
    /// Filter: bids with `auction % 123 == 0`.
    Q2,
    /// Per auction and tumbling 10 s window: bid count and maximum price.
    Qw,
    /// Hot items: per hopping window (10 s, slide 2 s), the auctions with the most bids.
    Q5,
    /// Highest bids: per tumbling 10 s window, the bids at the window's maximum price.
    Q7,
    /// Per bidder and session (gap 10 s): bid count.
    Qs,
    /// Local item suggestion: category-10 auctions of sellers in OR, ID or CA.
    Q3,
    /// New users: persons who opened an auction in the 10 s window they registered in.
    Q8,
}

/// A query name that is not one of [`Query::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown query `{0}`: expected one of q0, q1, q2, qw, q5, q7, qs, q3, q8")]
pub struct UnknownQuery(pub String);

impl Query {
    /// Every query, bid queries first.
    pub const ALL: [Query; 9] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Qw,
        Query::Q5,
        Query::Q7,
        Query::Qs,
        Query::Q3,
        Query::Q8,
    ];

    /// The seven bid queries compared with Flink in `shared/bench`.
    pub const BENCHMARKED: [Query; 7] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Qw,
        Query::Q5,
        Query::Q7,
        Query::Qs,
    ];

    /// The query's short name: `q0`, `q1`, `q2`, `qw`, `q5`, `q7`, `qs`, `q3` or `q8`.
    pub const fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Qw => "qw",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Qs => "qs",
            Query::Q3 => "q3",
            Query::Q8 => "q8",
        }
    }

    /// Whether the query reads only bids (the deterministic bid generator) rather than
    /// the full Nexmark event stream.
    pub const fn reads_bids(self) -> bool {
        !matches!(self, Query::Q3 | Query::Q8)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Query {
    type Err = UnknownQuery;

    /// Parses a short name, ignoring ASCII case (`"Q5"` is [`Query::Q5`]).
    ///
    /// # Errors
    /// [`UnknownQuery`] for any other string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownQuery(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for q in Query::ALL {
            assert_eq!(q.to_string().parse::<Query>(), Ok(q));
        }
        assert_eq!("Q7".parse::<Query>(), Ok(Query::Q7));
        let err = "q9".parse::<Query>().unwrap_err().to_string();
        assert!(err.contains("q9") && err.contains("qs"), "{err}");
    }

    #[test]
    fn benchmarked_are_the_bid_queries() {
        assert!(Query::BENCHMARKED.iter().all(|q| q.reads_bids()));
        let others: Vec<Query> = Query::ALL
            .into_iter()
            .filter(|q| !Query::BENCHMARKED.contains(q))
            .collect();
        assert_eq!(others, vec![Query::Q3, Query::Q8]);
        assert!(others.iter().all(|q| !q.reads_bids()));
    }
}

//! The queries over the full Nexmark event stream: q3 (an unbounded join of sellers
//! and their auctions) and q8 (a windowed join of new persons and new auctions).
//!
//! ```text
//! q3: events ─select─▶ sellers in OR/ID/CA + category-10 auctions ─key person─▶ join ─▶ Q3Row
//! q8: events ─select─▶ persons + auctions ─key person─▶ tumbling 10 s co-group ─▶ Q8Row
//! ```

use super::windows::WINDOW;
use crate::Event;
use serde::{Deserialize, Serialize};
use weir_dataflow::process::{KeyedProcessFunction, ProcessContext};
use weir_dataflow::state::{AggregateFunction, StateTable};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{duration_ms, KeyedStateHandle, OperatorContext, Result, Stream, Timestamp};

/// The auction category q3 selects.
pub const Q3_CATEGORY: i64 = 10;

/// The seller states q3 selects.
pub const Q3_STATES: [&str; 3] = ["OR", "ID", "CA"];

/// A row of q3: a category-10 auction and its seller, who lives in OR, ID or CA.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q3Row {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state.
    pub state: String,
    /// The auction's id.
    pub auction_id: i64,
}

/// A row of q8: a person who opened an auction in the tumbling 10 s window in which
/// they registered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q8Row {
    /// The person's id.
    pub person_id: i64,
    /// The person's name.
    pub name: String,
    /// First millisecond of the window.
    pub window_start: i64,
}

/// A seller as q3 keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Seller {
    name: String,
    city: String,
    state: String,
}

/// The input of q3's join: either side, keyed by person id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum SellerOrAuction {
    Seller { id: i64, seller: Seller },
    Auction { id: i64, seller: i64 },
}

impl SellerOrAuction {
    fn person_id(&self) -> i64 {
        match self {
            Self::Seller { id, .. } => *id,
            Self::Auction { seller, .. } => *seller,
        }
    }
}

/// The regular (unbounded) inner join of q3 on `auction.seller = person.id`: each
/// side is kept for good, and each arriving record is joined with the other side's
/// records of its key.
struct SellerJoin {
    sellers: KeyedStateHandle<StateTable<i64, Vec<Seller>>>,
    auctions: KeyedStateHandle<StateTable<i64, Vec<i64>>>,
}

impl SellerJoin {
    fn open(cx: &mut OperatorContext) -> Result<Self> {
        Ok(Self {
            sellers: cx.keyed_state(|b| StateTable::in_backend(b, "q3-sellers", Vec::new()))?,
            auctions: cx.keyed_state(|b| StateTable::in_backend(b, "q3-auctions", Vec::new()))?,
        })
    }
}

fn q3_row(seller: &Seller, auction_id: i64) -> Q3Row {
    Q3Row {
        name: seller.name.clone(),
        city: seller.city.clone(),
        state: seller.state.clone(),
        auction_id,
    }
}

impl KeyedProcessFunction<i64, SellerOrAuction> for SellerJoin {
    type Out = Q3Row;

    fn process(
        &mut self,
        value: SellerOrAuction,
        cx: &mut ProcessContext<'_, i64, Q3Row>,
    ) -> Result<()> {
        let key = *cx.key();
        let (mut sellers, mut auctions) = (self.sellers.lock()?, self.auctions.lock()?);
        match value {
            SellerOrAuction::Seller { seller, .. } => {
                for &auction_id in auctions.get(&key)?.into_iter().flatten() {
                    cx.emit(q3_row(&seller, auction_id));
                }
                sellers.get_or_insert_with(key, Vec::new)?.push(seller);
            }
            SellerOrAuction::Auction { id, .. } => {
                for seller in sellers.get(&key)?.into_iter().flatten() {
                    cx.emit(q3_row(seller, id));
                }
                auctions.get_or_insert_with(key, Vec::new)?.push(id);
            }
        }
        Ok(())
    }
}

/// q3, local item suggestion: name, city and state of every seller in OR, ID or CA
/// with the id of each of their category-10 auctions. An incremental join: a row is
/// emitted as soon as both its person and its auction have arrived, in either order.
/// Needs no event time; state grows with the selected persons and auctions.
pub fn q3(events: &Stream<Event>) -> Stream<Q3Row> {
    events
        .flat_map(|event: Event| match event {
            Event::Person(p) if Q3_STATES.contains(&&*p.state) => Some(SellerOrAuction::Seller {
                id: p.id,
                seller: Seller {
                    name: p.name,
                    city: p.city,
                    state: p.state,
                },
            }),
            Event::Auction(a) if a.category == Q3_CATEGORY => Some(SellerOrAuction::Auction {
                id: a.id,
                seller: a.seller,
            }),
            _ => None,
        })
        .name("q3-select")
        .uid("q3-select")
        .key_by(SellerOrAuction::person_id)
        .process("q3-join", SellerJoin::open)
        .uid("q3-join")
}

/// The input of q8's co-group: a new person or a new auction, keyed by person id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum PersonOrAuction {
    Person {
        id: i64,
        name: String,
        date_time: i64,
    },
    Auction {
        seller: i64,
        date_time: i64,
    },
}

impl PersonOrAuction {
    fn person_id(&self) -> i64 {
        match self {
            Self::Person { id, .. } => *id,
            Self::Auction { seller, .. } => *seller,
        }
    }

    fn date_time(&self) -> i64 {
        match self {
            Self::Person { date_time, .. } | Self::Auction { date_time, .. } => *date_time,
        }
    }
}

/// One person id in one window: the distinct names registered under it and whether
/// it opened an auction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct NewUser {
    names: Vec<String>,
    opened_auction: bool,
}

/// Co-groups q8's persons and auctions of one key and window.
#[derive(Clone, Copy)]
struct NewUsers;

impl AggregateFunction<PersonOrAuction> for NewUsers {
    type Acc = NewUser;
    type Out = NewUser;

    fn create(&self) -> NewUser {
        NewUser::default()
    }

    fn add(&self, acc: &mut NewUser, value: &PersonOrAuction) {
        match value {
            PersonOrAuction::Person { name, .. } => {
                if !acc.names.contains(name) {
                    acc.names.push(name.clone());
                }
            }
            PersonOrAuction::Auction { .. } => acc.opened_auction = true,
        }
    }

    fn merge(&self, acc: &mut NewUser, other: NewUser) {
        for name in other.names {
            if !acc.names.contains(&name) {
                acc.names.push(name);
            }
        }
        acc.opened_auction |= other.opened_auction;
    }

    fn result(&self, acc: &NewUser) -> NewUser {
        acc.clone()
    }
}

/// q8, monitor new users: every person who opened an auction in the tumbling 10 s
/// window in which they registered, one row per person (id and name) and window.
/// Needs events with event time.
///
/// This is the window join of persons (by id) and auctions (by seller); it is
/// written as one co-group window over both kinds of events so that the stateful
/// operator has a stable uid and keeps only a flag for the auctions.
pub fn q8(events: &Stream<Event>) -> Stream<Q8Row> {
    let window_ms = duration_ms(WINDOW);
    events
        .flat_map(|event: Event| match event {
            Event::Person(p) => Some(PersonOrAuction::Person {
                id: p.id,
                name: p.name,
                date_time: p.date_time,
            }),
            Event::Auction(a) => Some(PersonOrAuction::Auction {
                seller: a.seller,
                date_time: a.date_time,
            }),
            _ => None,
        })
        .name("q8-select")
        .uid("q8-select")
        .with_timestamps(|e: &PersonOrAuction| Timestamp(e.date_time()))
        .key_by(PersonOrAuction::person_id)
        .window(WindowAssigner::tumbling(WINDOW))
        .name("q8-join")
        .aggregate(NewUsers, |&person_id, window, user| {
            if user.opened_auction {
                user.names
                    .into_iter()
                    .map(|name| Q8Row {
                        person_id,
                        name,
                        window_start: window.start,
                    })
                    .collect()
            } else {
                Vec::new()
            }
        })
        .uid("q8-join")
        .flat_map(|rows: Vec<Q8Row>| rows)
        .name("q8-rows")
        .uid("q8-rows")
        .with_timestamps(move |row: &Q8Row| Timestamp(row.window_start + window_ms - 1))
}

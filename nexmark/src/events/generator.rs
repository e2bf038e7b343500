//! The rules that turn an event number into a person, an auction or a bid.
//!
//! Ids are "base 0" (counted from 0) inside this file and offset by
//! [`FIRST_PERSON_ID`] / [`FIRST_AUCTION_ID`] when an event is built.

use super::rng::{Domain, Rng};
use super::{
    Auction, Event, NexmarkConfig, Person, AUCTION_PROPORTION, FIRST_AUCTION_ID, FIRST_CATEGORY_ID,
    FIRST_PERSON_ID, NUM_CATEGORIES, PERSON_PROPORTION, PROPORTION_TOTAL, US_CITIES, US_STATES,
};
use crate::{Bid, BASE_TIME_MS};
use std::borrow::Cow;
use std::fmt::Write;

/// Persons a new auction or bid picks from when not picking a hot one.
const NUM_ACTIVE_PEOPLE: u64 = 1000;
/// Auctions a bid picks from when not picking a hot one.
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
/// Hot sellers, bidders and auctions are the first (second) of each batch this big.
const HOT_BATCH: u64 = 100;
/// One in this many auctions is by a random (not hot) seller.
const HOT_SELLERS_RATIO: u64 = 4;
/// One in this many bids is on a random (not hot) auction.
const HOT_AUCTION_RATIO: u64 = 2;
/// One in this many bids is by a random (not hot) bidder.
const HOT_BIDDERS_RATIO: u64 = 4;
/// One in this many bids comes from a cold channel.
const HOT_CHANNELS_RATIO: u64 = 2;
/// The number of cold channels.
const CHANNELS_NUMBER: u64 = 10_000;
/// Average sizes the `extra` field pads events to, in bytes.
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
/// Strings from `next_string` are at least this long (before trimming).
const MIN_STRING_LENGTH: u64 = 3;

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://www.nexmark.com/gkbr_/pd_fq/lxwkb/item.htm?query=1",
    "https://www.nexmark.com/ow_yq/hcnzt/v_ebs/item.htm?query=1",
    "https://www.nexmark.com/tmxau/jd_rk/qiup_/item.htm?query=1",
    "https://www.nexmark.com/zfl_c/yonwe/mb_ha/item.htm?query=1",
];

/// Event `n` (numbers count from 0) of the generator configured by `config`: a pure
/// function of `n`, `config.seed` and `config.events_per_second` (a rate of 0 is
/// taken as 1; [`NexmarkConfig::validate`] rejects it). `config.events` only limits
/// what a source emits.
pub fn nexmark_event(n: u64, config: &NexmarkConfig) -> Event {
    let mut rng = Rng::keyed(config.seed, Domain::Event, n);
    let date_time = timestamp_of(n, config);
    let offset = n % PROPORTION_TOTAL;
    if offset < PERSON_PROPORTION {
        Event::Person(person(n, date_time, &mut rng))
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        Event::Auction(auction(n, date_time, config, &mut rng))
    } else {
        Event::Bid(bid(n, date_time, config.seed, &mut rng))
    }
}

/// `BASE_TIME_MS + n * 1000 / events_per_second`, saturating.
fn timestamp_of(n: u64, config: &NexmarkConfig) -> i64 {
    let offset = u128::from(n) * 1000 / u128::from(config.events_per_second.max(1));
    BASE_TIME_MS.saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
}

/// The base-0 id of the last person generated at or before event `n`.
fn last_person(n: u64) -> u64 {
    let epoch = n / PROPORTION_TOTAL;
    let offset = n % PROPORTION_TOTAL;
    // Past the epoch's persons: the last person is the epoch's last.
    let in_epoch = if offset < PERSON_PROPORTION {
        offset
    } else {
        PERSON_PROPORTION - 1
    };
    epoch * PERSON_PROPORTION + in_epoch
}

/// The base-0 id of the last auction generated at or before event `n`, `None`
/// before the first auction.
fn last_auction(n: u64) -> Option<u64> {
    let epoch = n / PROPORTION_TOTAL;
    let offset = n % PROPORTION_TOTAL;
    if offset < PERSON_PROPORTION {
        // A person: the last auction is the previous epoch's last.
        (epoch * AUCTION_PROPORTION).checked_sub(1)
    } else {
        let in_epoch = (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1);
        Some(epoch * AUCTION_PROPORTION + in_epoch)
    }
}

/// One of the most recent [`NUM_ACTIVE_PEOPLE`] persons as of event `n`.
fn recent_person(n: u64, rng: &mut Rng) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active)
}

/// One of the most recent [`NUM_IN_FLIGHT_AUCTIONS`] auctions as of event `n`.
fn recent_auction(last: u64, rng: &mut Rng) -> u64 {
    let min = last.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(last - min + 1)
}

/// The id of base-0 id `base0`. Base-0 ids are at most `3 n / 50 + 2` for event
/// number `n`, far below `i64::MAX - first`, so the sum never wraps in practice.
fn id(first: i64, base0: u64) -> i64 {
    first.wrapping_add(base0 as i64)
}

fn person(n: u64, date_time: i64, rng: &mut Rng) -> Person {
    let name = format!(
        "{} {}",
        FIRST_NAMES[rng.index(FIRST_NAMES.len())],
        LAST_NAMES[rng.index(LAST_NAMES.len())]
    );
    let email_address = format!(
        "{}@{}.com",
        next_string(rng, 7, ' '),
        next_string(rng, 5, ' ')
    );
    let mut credit_card = String::with_capacity(19);
    for group in 0..4 {
        if group > 0 {
            credit_card.push(' ');
        }
        // Writing to a String cannot fail.
        let _ = write!(credit_card, "{:04}", rng.below(10_000));
    }
    let city = US_CITIES[rng.index(US_CITIES.len())].to_string();
    let state = US_STATES[rng.index(US_STATES.len())].to_string();
    let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
    Person {
        id: id(FIRST_PERSON_ID, last_person(n)),
        extra: next_extra(rng, size, AVG_PERSON_BYTES),
        name,
        email_address,
        credit_card,
        city,
        state,
        date_time,
    }
}

fn auction(n: u64, date_time: i64, config: &NexmarkConfig, rng: &mut Rng) -> Auction {
    let seller = if rng.below(HOT_SELLERS_RATIO) > 0 {
        last_person(n) / HOT_BATCH * HOT_BATCH
    } else {
        recent_person(n, rng)
    };
    let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES as u64) as i64;
    let initial_bid = next_price(rng);
    // The average length is the time until NUM_IN_FLIGHT_AUCTIONS more auctions open.
    let events_for_auctions = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_TOTAL / AUCTION_PROPORTION;
    let horizon = timestamp_of(n.saturating_add(events_for_auctions), config) - date_time;
    let length = 1 + rng.below(horizon.saturating_mul(2).max(1) as u64) as i64;
    let item_name = next_string(rng, 20, ' ');
    let description = next_string(rng, 100, ' ');
    let reserve = initial_bid + next_price(rng);
    let size = 8 + item_name.len() + description.len() + 8 * 5;
    Auction {
        // An auction event always has an auction at or before it: itself.
        id: id(FIRST_AUCTION_ID, last_auction(n).unwrap_or(0)),
        extra: next_extra(rng, size, AVG_AUCTION_BYTES),
        item_name,
        description,
        initial_bid,
        reserve,
        date_time,
        expires: date_time.saturating_add(length),
        seller: id(FIRST_PERSON_ID, seller),
        category,
    }
}

fn bid(n: u64, date_time: i64, seed: u64, rng: &mut Rng) -> Bid {
    // A bid is at offset >= PERSON_PROPORTION + AUCTION_PROPORTION of its epoch, so
    // its epoch's auctions exist.
    let last = last_auction(n).unwrap_or(0);
    let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
        last / HOT_BATCH * HOT_BATCH
    } else {
        recent_auction(last, rng)
    };
    let bidder = if rng.below(HOT_BIDDERS_RATIO) > 0 {
        // The second of the batch, so hot bidders and hot sellers differ; the first
        // when the batch has only one person so far.
        (last_person(n) / HOT_BATCH * HOT_BATCH + 1).min(last_person(n))
    } else {
        recent_person(n, rng)
    };
    let price = next_price(rng);
    let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) > 0 {
        let hot = rng.index(HOT_CHANNELS.len());
        (
            Cow::Borrowed(HOT_CHANNELS[hot]),
            Cow::Borrowed(HOT_URLS[hot]),
        )
    } else {
        let (channel, url) = cold_channel(seed, rng.below(CHANNELS_NUMBER));
        (Cow::Owned(channel), Cow::Owned(url))
    };
    Bid {
        auction: id(FIRST_AUCTION_ID, auction),
        bidder: id(FIRST_PERSON_ID, bidder),
        price,
        channel,
        url,
        date_time,
        extra: Cow::Owned(next_extra(rng, 32, AVG_BID_BYTES)),
    }
}

/// Cold channel `number`: `channel-<number>` and a URL that is a pure function of
/// the seed and the number (nine in ten carry a `channel_id`).
fn cold_channel(seed: u64, number: u64) -> (String, String) {
    let mut rng = Rng::keyed(seed, Domain::Channel, number);
    let mut url = format!(
        "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
        next_string(&mut rng, 5, '_'),
        next_string(&mut rng, 5, '_'),
        next_string(&mut rng, 5, '_'),
    );
    if rng.below(10) > 0 {
        // number < CHANNELS_NUMBER fits i32, as in the original's Integer.reverse.
        let channel_id = (number as i32).reverse_bits().unsigned_abs();
        let _ = write!(url, "&channel_id={channel_id}");
    }
    (format!("channel-{number}"), url)
}

/// A price in cents, log-uniform in 100..=100,000,000.
fn next_price(rng: &mut Rng) -> i64 {
    (10f64.powf(rng.unit() * 6.0) * 100.0).round() as i64
}

/// A string of 3 to `max_len - 1` lower-case letters, one in 13 of them replaced by
/// `special`, trimmed of spaces.
fn next_string(rng: &mut Rng, max_len: u64, special: char) -> String {
    let len = MIN_STRING_LENGTH + rng.below(max_len - MIN_STRING_LENGTH);
    let mut s = String::with_capacity(len as usize);
    for _ in 0..len {
        if rng.below(13) == 0 {
            s.push(special);
        } else {
            s.push(letter(rng.below(26)));
        }
    }
    s.trim().to_string()
}

/// Exactly `len` lower-case letters.
fn next_exact_string(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len);
    let mut bits = 0;
    let mut left = 0;
    for _ in 0..len {
        if left == 0 {
            // 26^13 < 2^64: one draw gives 13 letters.
            bits = rng.next_u64();
            left = 13;
        }
        s.push(letter(bits % 26));
        bits /= 26;
        left -= 1;
    }
    s
}

fn letter(index: u64) -> char {
    char::from(b'a' + index as u8)
}

/// Padding that brings an event of `current` bytes to `average` bytes on average
/// (± 20 %); empty if the event is already larger.
fn next_extra(rng: &mut Rng, current: usize, average: usize) -> String {
    if current > average {
        return String::new();
    }
    let desired = average - current;
    let delta = (desired as f64 * 0.2).round() as usize;
    let size = desired - delta + rng.below(2 * delta as u64) as usize;
    next_exact_string(rng, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_ids_follow_the_proportions() {
        // Event 0 is person 0, events 1..=3 auctions 0..=2, events 4..=49 bids.
        assert_eq!(last_person(0), 0);
        assert_eq!(last_person(49), 0);
        assert_eq!(last_person(50), 1);
        assert_eq!(last_auction(0), None);
        assert_eq!(last_auction(1), Some(0));
        assert_eq!(last_auction(3), Some(2));
        assert_eq!(last_auction(49), Some(2));
        assert_eq!(last_auction(50), Some(2));
        assert_eq!(last_auction(51), Some(3));
    }

    #[test]
    fn strings_have_the_requested_shape() {
        let mut rng = Rng::keyed(1, Domain::Event, 1);
        for _ in 0..200 {
            let s = next_string(&mut rng, 7, ' ');
            assert!(s.len() < 7 && s.chars().all(|c| c == ' ' || c.is_ascii_lowercase()));
            assert_eq!(next_exact_string(&mut rng, 30).len(), 30);
            let extra = next_extra(&mut rng, 32, 100);
            assert!((54..=82).contains(&extra.len()), "{}", extra.len());
            let price = next_price(&mut rng);
            assert!((100..=100_000_000).contains(&price), "{price}");
        }
        assert_eq!(next_extra(&mut rng, 101, 100), "");
    }

    #[test]
    fn zero_rate_does_not_panic() {
        let config = NexmarkConfig {
            events_per_second: 0,
            ..NexmarkConfig::default()
        };
        assert_eq!(
            nexmark_event(1000, &config).date_time(),
            BASE_TIME_MS + 1_000_000
        );
    }
}

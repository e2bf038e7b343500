//! The deterministic bids of the benchmark (`shared/bench/README.md`): bid `i` is a
//! pure function of `i`, the number of bids `N`, the source parallelism `p` of the
//! event-time formula and the event-time density, bit-exact with the Flink peer.
//!
//! ```text
//!  BidSource (subtask k of P) ──ids of range k──▶ BidGenerator::bids ──▶ SourceOutput<Bid>
//! ```
//!
//! Generation never allocates: strings are borrowed slices of static texts.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use weir_dataflow::{
    DataflowError, OperatorContext, Result, SnapshotContext, Source, SourceOutput, SourcePoll,
    SubtaskInfo,
};
use weir_sources::split::Position;

/// Event time of the first bid, milliseconds since the epoch (2023-11-14T22:13:20Z).
pub const BASE_TIME_MS: i64 = 1_700_000_000_000;

/// The text a bid's `url` is a prefix of (24 to 80 characters of it).
pub const URL_TEXT: &str =
    "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopqrstuvwxyz01234";

/// The text a bid's `extra` is a prefix of (0 to 40 characters of it).
pub const EXTRA_TEXT: &str = "QWERTYUIOPASDFGHJKLZXCVBNMqwertyuiopasdf";

/// The four channels a bid comes from.
pub const CHANNELS: [&str; 4] = ["apple", "google", "facebook", "baidu"];

const C1: i64 = 0x9E37_79B9_7F4A_7C15_u64 as i64;
const C2: i64 = 0xC2B2_AE3D_27D4_EB4F_u64 as i64;
const C3: i64 = 0x1656_67B1_9E37_79F9_u64 as i64;
const C4: i64 = 0xD6E8_FEB8_6659_FD93_u64 as i64;
const C5: i64 = 0xFF51_AFD7_ED55_8CCD_u64 as i64;
const C6: i64 = 0xC4CE_B9FE_1A85_EC53_u64 as i64;

/// A bid on an auction. The same shape as Nexmark's bid; `date_time` is the event
/// time in milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bid {
    /// The auction bid on.
    pub auction: i64,
    /// The bidding person.
    pub bidder: i64,
    /// The price, in cents.
    pub price: i64,
    /// Where the bid came from.
    pub channel: Cow<'static, str>,
    /// The page the bid was placed on.
    pub url: Cow<'static, str>,
    /// Event time, milliseconds since the epoch.
    pub date_time: i64,
    /// Padding.
    pub extra: Cow<'static, str>,
}

/// `|i * c / 2^32|` with Rust's wrapping multiply and truncating division.
#[inline(always)]
fn hash(i: i64, c: i64) -> i64 {
    (i.wrapping_mul(c) / (1_i64 << 32)).abs()
}

/// The fields of bid `i` that do not depend on event time.
#[inline(always)]
fn bid_at(i: i64, date_time: i64) -> Bid {
    // Every `% m` below has a non-negative dividend (an `abs` of a value far from
    // i64::MIN), so the indices are in range.
    let url_len = 24 + (hash(i, C5) % 57) as usize;
    let extra_len = (hash(i, C6) % 41) as usize;
    Bid {
        auction: hash(i, C1) % 10_000 + 1,
        bidder: hash(i, C2) % 100_000 + 1,
        price: (i.wrapping_mul(C3) / 65_536).abs() % 100_000_000 + 1,
        channel: Cow::Borrowed(CHANNELS[(hash(i, C4) % 4) as usize]),
        url: Cow::Borrowed(&URL_TEXT[..url_len]),
        date_time,
        extra: Cow::Borrowed(&EXTRA_TEXT[..extra_len]),
    }
}

/// Bid `i` of `n` as the benchmark specifies it, with `p` the source parallelism
/// of the event-time formula and `rows_per_ms` bids per millisecond of event time:
/// `date_time = BASE_TIME_MS + ((i - 1) % (n / p)) * p / rows_per_ms`.
///
/// Ids are `1..=n`; other ids give well-defined rows too. Outside the formula's
/// domain (`p`, `n / p` or `rows_per_ms` not positive) the event-time offset is 0
/// rather than a division by zero; [`BidGeneratorConfig::validate`] rejects such
/// settings.
pub fn bid(i: i64, n: i64, p: i64, rows_per_ms: i64) -> Bid {
    let offset = n
        .checked_div(p)
        .and_then(|m| i.wrapping_sub(1).checked_rem(m))
        .and_then(|r| r.wrapping_mul(p).checked_div(rows_per_ms))
        .unwrap_or(0);
    bid_at(i, BASE_TIME_MS.wrapping_add(offset))
}

/// Settings of the bid generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidGeneratorConfig {
    /// `N`: the bids are the ids `1..=N`.
    pub events: u64,
    /// Bids per millisecond of event time (default 10).
    pub rows_per_ms: i64,
    /// `p` of the event-time formula (default 2, the benchmark's). It models `p`
    /// subtasks each owning `N / p` consecutive ids, so event time advances in step
    /// on all of them; set it to the job's parallelism to get that effect in weir.
    /// It does not decide how ids are split among subtasks (the actual parallelism
    /// does), only the event times.
    pub source_parallelism: i64,
}

impl BidGeneratorConfig {
    /// `events` bids with the default density and `p`.
    pub fn new(events: u64) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`DataflowError::InvalidJob`] naming `operator` if `events` exceeds
    /// `i64::MAX`, `rows_per_ms` or `source_parallelism` is not positive, or there
    /// are bids but fewer than `source_parallelism` of them (`N / p` would be 0).
    pub fn validate(&self, operator: &str) -> Result<()> {
        let invalid = |message: String| Err(DataflowError::invalid(operator, message));
        let Ok(n) = i64::try_from(self.events) else {
            return invalid(format!(
                "bid generator: events = {} exceeds the largest id {}",
                self.events,
                i64::MAX
            ));
        };
        if self.rows_per_ms < 1 {
            return invalid(format!(
                "bid generator: rows_per_ms = {} must be at least 1",
                self.rows_per_ms
            ));
        }
        if self.source_parallelism < 1 {
            return invalid(format!(
                "bid generator: source_parallelism = {} must be at least 1",
                self.source_parallelism
            ));
        }
        if n > 0 && n < self.source_parallelism {
            return invalid(format!(
                "bid generator: events = {n} must be at least source_parallelism = {} \
                 (the event-time formula divides by N / p)",
                self.source_parallelism
            ));
        }
        Ok(())
    }
}

impl Default for BidGeneratorConfig {
    /// 10 million bids, 10 per millisecond, `p = 2`: the benchmark's settings.
    fn default() -> Self {
        Self {
            events: 10_000_000,
            rows_per_ms: 10,
            source_parallelism: 2,
        }
    }
}

/// Generates bids for a validated [`BidGeneratorConfig`], with the divisors of the
/// event-time formula computed once.
#[derive(Clone, Copy, Debug)]
pub struct BidGenerator {
    /// `N / p`, at least 1.
    range_len: i64,
    p: i64,
    rows_per_ms: i64,
}

impl BidGenerator {
    /// A generator for `config`.
    ///
    /// # Errors
    /// As [`BidGeneratorConfig::validate`], naming the bid generator.
    pub fn new(config: &BidGeneratorConfig) -> Result<Self> {
        config.validate("bid generator")?;
        let n = config.events as i64;
        Ok(Self {
            range_len: (n / config.source_parallelism).max(1),
            p: config.source_parallelism,
            rows_per_ms: config.rows_per_ms,
        })
    }

    /// Bid `i`; equal to [`bid`] with this generator's settings for every `i`.
    #[inline]
    pub fn bid(&self, i: i64) -> Bid {
        let scaled = (i.wrapping_sub(1) % self.range_len).wrapping_mul(self.p);
        // The benchmark's density divides by a constant, which compiles to a
        // multiplication: one division per bid fewer.
        let offset = match self.rows_per_ms {
            10 => scaled / 10,
            rows_per_ms => scaled / rows_per_ms,
        };
        bid_at(i, BASE_TIME_MS.wrapping_add(offset))
    }
}

const POSITION: &str = "bid-position";

/// The deterministic bids `1..=N` as a source. Subtask `k` of `P` owns the `k`-th of
/// `P` contiguous id ranges (split like Flink's `NumberSequenceSource`: the first
/// `N % P` ranges one id longer) and emits it in order, up to `batch_size` bids per
/// poll. Its position is checkpointed (operator state `bid-position`); after a
/// change of parallelism the unfinished ranges are shared out among the new
/// subtasks, so every bid is still emitted exactly once.
pub struct BidSource {
    config: BidGeneratorConfig,
    generator: Option<BidGenerator>,
    position: Position,
    operator: String,
    subtask: usize,
}

impl BidSource {
    /// A factory for [`weir_dataflow::JobBuilder::source`]. The event-time formula
    /// uses `config.source_parallelism`, the id split the job's parallelism; the
    /// config is validated when the source opens.
    pub fn factory(
        config: BidGeneratorConfig,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        move |info: &SubtaskInfo| Self {
            config,
            generator: None,
            position: Position::contiguous(1, config.events, info.index, info.parallelism),
            operator: info.operator.clone(),
            subtask: info.index,
        }
    }
}

impl Source for BidSource {
    type Out = Bid;

    /// # Errors
    /// [`DataflowError::InvalidJob`] for an invalid config; a corrupt restored
    /// position.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        self.config.validate(&self.operator)?;
        self.generator = Some(BidGenerator::new(&self.config)?);
        self.position.restore(POSITION, cx)
    }

    fn poll(&mut self, out: &mut SourceOutput<Bid>) -> Result<SourcePoll> {
        let budget = out.batch_size();
        // One `extend` per run of ids: the batch grows once, and each bid is built
        // in its place rather than on the stack and copied (a copy that stalled on
        // store forwarding).
        self.generate_runs(budget, |generator, first, step, count| {
            out.extend((0..count).map(|j| generator.bid(first + j * step)));
        })
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        self.position.snapshot(POSITION, cx)
    }
}

impl BidSource {
    /// Generates the next bids of this subtask, up to `budget` (at least one), and
    /// passes each to `emit`: [`Source::poll`] with the bids going where the caller
    /// wants, such as straight into the columns of a batch.
    ///
    /// # Errors
    /// The source was not opened.
    #[inline]
    pub fn generate(&mut self, budget: usize, mut emit: impl FnMut(Bid)) -> Result<SourcePoll> {
        self.generate_runs(budget, |generator, first, step, count| {
            if step == 1 {
                for i in first..first + count {
                    emit(generator.bid(i));
                }
            } else {
                for j in 0..count {
                    emit(generator.bid(first + j * step));
                }
            }
        })
    }

    /// [`BidSource::generate`] by runs: `run(generator, first, step, count)` for
    /// each run of ids `first, first + step, …` (`count` of them).
    #[inline]
    fn generate_runs(
        &mut self,
        budget: usize,
        mut run: impl FnMut(&BidGenerator, i64, i64, i64),
    ) -> Result<SourcePoll> {
        let Some(generator) = self.generator else {
            return Err(DataflowError::operator(
                self.operator.as_str(),
                self.subtask,
                "bid source polled before it was opened",
            ));
        };
        let mut budget = budget.max(1) as u64;
        while let Some(ids) = self.position.take(budget) {
            // Ids come from 1..=events and events <= i64::MAX (validated).
            let (first, step, count) = (ids.first as i64, ids.step as i64, ids.count);
            run(&generator, first, step, count as i64);
            budget -= count;
            if budget == 0 {
                break;
            }
        }
        Ok(if self.position.is_finished() {
            SourcePoll::Finished
        } else {
            SourcePoll::Ready
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(i, n, p, rows_per_ms, auction, bidder, price, channel, url, extra,
    /// date_time)` computed by `python_reference_bid` of
    /// `shared/bench/flink/flink_bench.py`.
    #[allow(clippy::type_complexity)]
    const REFERENCE: &[(i64, i64, i64, i64, i64, i64, i64, &str, &str, &str, i64)] = &[
        (
            1,
            10000000,
            2,
            10,
            1527,
            77379,
            62692152,
            "baidu",
            "https://www.nexmark.com/item.htm?query=",
            "QWERTYUIOPASDFGHJKLZXCVBNM",
            1700000000000,
        ),
        (
            2,
            10000000,
            2,
            10,
            4243,
            54758,
            25384303,
            "baidu",
            "https://www.nexmark.com/item.htm?query=1&auction=abcde",
            "QWERTYUIOPAS",
            1700000000000,
        ),
        (
            3,
            10000000,
            2,
            10,
            7284,
            35160,
            88076455,
            "facebook",
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopqrst",
            "QWERTYUIOPASDFGHJKLZXCVBNMqwertyuiopas",
            1700000000000,
        ),
        (
            17,
            10000000,
            2,
            10,
            2175,
            46257,
            89055920,
            "facebook",
            "https://www.nexmark.com/item.htm?query=1&auction=abc",
            "QWERTYUIOPASDFGHJK",
            1700000000003,
        ),
        (
            999,
            10000000,
            2,
            10,
            2096,
            17722,
            55632253,
            "apple",
            "https://www.nexmark.com/item.htm",
            "QWER",
            1700000000199,
        ),
        (
            123456,
            10000000,
            2,
            10,
            4251,
            89033,
            95066246,
            "baidu",
            "https://www.nexmark.com/item.htm?query=1&auction=ab",
            "QWERTYUIOPASDFGHJKLZXCVBNMqw",
            1700000024691,
        ),
        (
            5000000,
            10000000,
            2,
            10,
            4169,
            84757,
            67617402,
            "facebook",
            "https://www.nexmark.com/item.htm?query=1&auction=ab",
            "QWERTYUIOPASDFGHJKLZXCV",
            1700000999999,
        ),
        (
            5000001,
            10000000,
            2,
            10,
            5696,
            62136,
            4925251,
            "google",
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopq",
            "QWERTYUIO",
            1700000000000,
        ),
        (
            9999999,
            10000000,
            2,
            10,
            3190,
            92135,
            78783702,
            "facebook",
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmno",
            "QWERTYUIOPASDFGHJKL",
            1700000999999,
        ),
        (
            10000000,
            10000000,
            2,
            10,
            8338,
            97783,
            41475853,
            "facebook",
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopqrstuvwxyz0123",
            "QWERTY",
            1700000999999,
        ),
        (
            1,
            1000,
            3,
            7,
            1527,
            77379,
            62692152,
            "baidu",
            "https://www.nexmark.com/item.htm?query=",
            "QWERTYUIOPASDFGHJKLZXCVBNM",
            1700000000000,
        ),
        (
            333,
            1000,
            3,
            7,
            1734,
            16525,
            51877418,
            "facebook",
            "https://www.nexmark.com/item.htm?query=1&auct",
            "Q",
            1700000000142,
        ),
        (
            334,
            1000,
            3,
            7,
            4037,
            39146,
            14569570,
            "google",
            "https://www.nexmark.com/item.h",
            "QWERTYUIOPASDFGHJKLZXCVBN",
            1700000000000,
        ),
        (
            1000,
            1000,
            3,
            7,
            570,
            95101,
            18324405,
            "baidu",
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopqrstuvwxy",
            "QWERTYUIOPASDFGHJKLZXC",
            1700000000000,
        ),
        (
            1,
            20000,
            1,
            10,
            1527,
            77379,
            62692152,
            "baidu",
            "https://www.nexmark.com/item.htm?query=",
            "QWERTYUIOPASDFGHJKLZXCVBNM",
            1700000000000,
        ),
        (
            19999,
            20000,
            1,
            10,
            5616,
            81035,
            20242658,
            "baidu",
            "https://www.nexmark.com/item.htm?quer",
            "QWERTYUIOPASDFGHJKLZXCVBNM",
            1700000001999,
        ),
        (
            20000,
            20000,
            1,
            10,
            5912,
            96345,
            82934810,
            "baidu",
            "https://www.nexmark.com/item.htm?query=1&auction=abc",
            "QWERTYUIOPAS",
            1700000001999,
        ),
        (
            77777777,
            100000000,
            2,
            10,
            6780,
            63426,
            89635897,
            "apple",
            "https://www.nexmark.com/item.htm?quer",
            "QWERTYUIOPASDF",
            1700005555555,
        ),
        (
            100000000,
            100000000,
            2,
            10,
            6075,
            58657,
            92084096,
            "apple",
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklm",
            "QWERTYUIOPASDFGHJKLZXCVBNMqw",
            1700009999999,
        ),
        (
            9,
            9,
            4,
            1,
            1851,
            61818,
            12481293,
            "apple",
            "https://www.nexmark.com/item.htm?query=1&auct",
            "QWER",
            1700000000000,
        ),
    ];

    #[test]
    fn bit_exact_with_the_python_reference() {
        for &(i, n, p, rows_per_ms, auction, bidder, price, channel, url, extra, date_time) in
            REFERENCE
        {
            let expected = Bid {
                auction,
                bidder,
                price,
                channel: channel.into(),
                url: url.into(),
                date_time,
                extra: extra.into(),
            };
            assert_eq!(
                bid(i, n, p, rows_per_ms),
                expected,
                "bid({i}, {n}, {p}, {rows_per_ms})"
            );
            let generator = BidGenerator::new(&BidGeneratorConfig {
                events: n as u64,
                rows_per_ms,
                source_parallelism: p,
            })
            .unwrap();
            assert_eq!(generator.bid(i), expected, "generator bid {i} of {n}");
        }
    }

    #[test]
    fn texts_match_the_spec() {
        let full =
            "https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(URL_TEXT, &full[..80]);
        assert_eq!(EXTRA_TEXT.len(), 40);
    }

    #[test]
    fn generation_borrows_static_text() {
        let b = bid(12_345, 1_000_000, 2, 10);
        assert!(matches!(b.channel, Cow::Borrowed(_)));
        assert!(matches!(b.url, Cow::Borrowed(_)));
        assert!(matches!(b.extra, Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_settings_do_not_panic() {
        for (n, p, rows) in [(10, 0, 10), (1, 2, 10), (10, 2, 0), (i64::MIN, -1, 1)] {
            assert_eq!(bid(5, n, p, rows).date_time, BASE_TIME_MS);
        }
        assert_eq!(
            bid(i64::MIN, 10, 2, 10).auction,
            bid(i64::MIN, 10, 2, 10).auction
        );
        for config in [
            BidGeneratorConfig {
                events: 1,
                ..BidGeneratorConfig::default()
            },
            BidGeneratorConfig {
                rows_per_ms: 0,
                ..BidGeneratorConfig::default()
            },
            BidGeneratorConfig {
                source_parallelism: 0,
                ..BidGeneratorConfig::default()
            },
            BidGeneratorConfig {
                events: u64::MAX,
                ..BidGeneratorConfig::default()
            },
        ] {
            let err = config.validate("bids").unwrap_err();
            assert!(err.to_string().contains("bids"), "{err}");
        }
        assert!(BidGeneratorConfig::new(0).validate("bids").is_ok());
    }
}

//! Window joins and interval joins against brute-force references on random input.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use proptest::prelude::*;
use std::time::Duration;
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{JobBuilder, JobConfig, Timestamp, WatermarkStrategy};

/// (key, timestamp, id)
type Row = (u8, i64, u32);

const BOUND_MS: u64 = 300;

fn rows(tag: u32) -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec((0u8..4, 0i64..200, 0i64..BOUND_MS as i64), 0..80).prop_map(
        move |raw| {
            let mut t = 0;
            let mut out: Vec<(i64, Row)> = raw
                .into_iter()
                .enumerate()
                .map(|(i, (k, step, jitter))| {
                    t += step;
                    (t + jitter, (k, t, tag * 1000 + i as u32))
                })
                .collect();
            out.sort_by_key(|(arrival, _)| *arrival);
            out.into_iter().map(|(_, r)| r).collect()
        },
    )
}

fn source(job: &JobBuilder, name: &str, rows: Vec<Row>) -> weir_dataflow::Stream<Row> {
    job.source(
        name,
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(BOUND_MS), |r: &Row| {
            Timestamp(r.1)
        }),
        CollectionSource::factory_with_poll_size(rows, 3),
    )
}

fn config(parallelism: usize) -> JobConfig {
    JobConfig {
        parallelism,
        batch_size: 5,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn window_join_pairs_equal_brute_force(left in rows(1), right in rows(2), p in 1usize..4) {
        let job = JobBuilder::new(config(p));
        let (sink, out) = CollectSink::new();
        let l = source(&job, "left", left.clone()).key_by(|r: &Row| r.0);
        let r = source(&job, "right", right.clone()).key_by(|r: &Row| r.0);
        l.window_join(&r, WindowAssigner::tumbling(Duration::from_millis(500)), |_, w, ls: &[Row], rs: &[Row], out: &mut Vec<(i64, u32, u32)>| {
            for a in ls {
                for b in rs {
                    out.push((w.start, a.2, b.2));
                }
            }
        })
        .uid("join")
        .sink("collect", sink);
        job.execute().unwrap();
        let mut got = out.take();
        got.sort();
        let mut want = Vec::new();
        for a in &left {
            for b in &right {
                let (wa, wb) = (a.1 - a.1.rem_euclid(500), b.1 - b.1.rem_euclid(500));
                if a.0 == b.0 && wa == wb {
                    want.push((wa, a.2, b.2));
                }
            }
        }
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn interval_join_pairs_equal_brute_force(left in rows(1), right in rows(2), p in 1usize..4, lower in -400i64..100, width in 0i64..500) {
        let upper = lower + width;
        let job = JobBuilder::new(config(p));
        let (sink, out) = CollectSink::new();
        let l = source(&job, "left", left.clone()).key_by(|r: &Row| r.0);
        let r = source(&job, "right", right.clone()).key_by(|r: &Row| r.0);
        l.interval_join(&r, lower, upper, |_, a: &Row, b: &Row| (a.2, b.2))
            .uid("interval")
            .sink("collect", sink);
        let result = job.execute().unwrap();
        let late: u64 = result.metrics.iter().map(|m| m.late_records).sum();
        let mut got = out.take();
        got.sort();
        let mut want = Vec::new();
        for a in &left {
            for b in &right {
                if a.0 == b.0 && a.1 + lower <= b.1 && b.1 <= a.1 + upper {
                    want.push((a.2, b.2));
                }
            }
        }
        want.sort();
        prop_assert_eq!(late, 0);
        prop_assert_eq!(got, want);
    }
}

/// Sums both sides per key with one keyed process function over a connected stream.
struct SumBoth {
    sums: weir_dataflow::KeyedStateHandle<weir_dataflow::state::ValueState<u8, (u64, u64)>>,
}

impl weir_dataflow::process::KeyedProcessFunction<u8, weir_dataflow::join::Either<Row, Row>>
    for SumBoth
{
    type Out = (u8, u64, u64);
    fn process(
        &mut self,
        value: weir_dataflow::join::Either<Row, Row>,
        cx: &mut weir_dataflow::process::ProcessContext<'_, u8, (u8, u64, u64)>,
    ) -> weir_dataflow::Result<()> {
        let key = *cx.key();
        let mut sums = self.sums.lock()?;
        let sums = sums.get_or_insert_with(key, || (0, 0))?;
        match value {
            weir_dataflow::join::Either::Left(_) => sums.0 += 1,
            weir_dataflow::join::Either::Right(_) => sums.1 += 1,
        }
        let (l, r) = *sums;
        cx.emit((key, l, r));
        Ok(())
    }
}

#[test]
fn connected_streams_meet_per_key_in_one_process_function() {
    let left: Vec<Row> = (0..1000).map(|i| ((i % 4) as u8, i as i64, i)).collect();
    let right: Vec<Row> = (0..600).map(|i| ((i % 4) as u8, i as i64, i)).collect();
    let job = JobBuilder::new(config(3));
    let (sink, out) = CollectSink::new();
    let l = source(&job, "left", left).key_by(|r: &Row| r.0);
    let r = source(&job, "right", right).key_by(|r: &Row| r.0);
    l.connect(&r)
        .process("sum-both", |cx| {
            Ok(SumBoth {
                sums: cx
                    .keyed_state(|b| weir_dataflow::state::ValueState::in_backend(b, "sums"))?,
            })
        })
        .sink("collect", sink);
    job.execute().unwrap();
    let mut finals = std::collections::BTreeMap::new();
    for (k, a, b) in out.take() {
        let e = finals.entry(k).or_insert((0, 0));
        *e = (e.0.max(a), e.1.max(b));
    }
    assert_eq!(
        finals.into_iter().collect::<Vec<_>>(),
        vec![
            (0, (250, 150)),
            (1, (250, 150)),
            (2, (250, 150)),
            (3, (250, 150))
        ]
    );
}

//! Property tests of the runtime: windows equal a brute-force reference, barrier
//! alignment does not depend on input interleaving, keyed aggregation does not
//! depend on scheduling, and invalid settings are typed errors.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use weir_dataflow::process::{KeyedProcessFunction, ProcessContext};
use weir_dataflow::state::{Count, Sum, ValueState};
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{
    AlignmentStep, Barrier, BarrierAligner, CheckpointId, DataflowError, JobBuilder, JobConfig,
    Timestamp, WatermarkStrategy,
};

type Event = (u8, i64, i64); // key, timestamp, value

const BOUND_MS: i64 = 500;

/// Events with timestamps increasing overall but shuffled locally by less than the bound.
fn events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec((0u8..5, 0i64..400, -50i64..50, 0i64..BOUND_MS), 1..300).prop_map(
        |raw| {
            let mut t = 0;
            let mut out: Vec<(i64, Event)> = raw
                .into_iter()
                .map(|(k, step, v, jitter)| {
                    t += step;
                    (t + jitter, (k, t, v))
                })
                .collect();
            // Emit in "arrival" order: sorted by timestamp + jitter, so disorder < BOUND_MS.
            out.sort_by_key(|(arrival, _)| *arrival);
            out.into_iter().map(|(_, e)| e).collect()
        },
    )
}

fn run_windows(
    events: &[Event],
    assigner: WindowAssigner,
    parallelism: usize,
) -> Vec<(u8, i64, i64, u64, i64)> {
    let mut got = run_windows_late(
        events,
        assigner,
        parallelism,
        BOUND_MS,
        0,
        false,
        Duration::ZERO,
    );
    got.sort();
    got
}

/// As [`run_windows`], the windows' state kept for `retention` after their end.
fn run_windows_retained(
    events: &[Event],
    assigner: WindowAssigner,
    parallelism: usize,
    retention: Duration,
) -> Vec<(u8, i64, i64, u64, i64)> {
    let mut got = run_windows_late(events, assigner, parallelism, BOUND_MS, 0, false, retention);
    got.sort();
    got
}

/// Every result the windows emit, in order, with a watermark `delay` ms behind the
/// largest timestamp and `lateness` ms of allowed lateness, aggregated in two phases
/// if `pre_aggregate`.
fn run_windows_late(
    events: &[Event],
    assigner: WindowAssigner,
    parallelism: usize,
    delay: i64,
    lateness: i64,
    pre_aggregate: bool,
    retention: Duration,
) -> Vec<(u8, i64, i64, u64, i64)> {
    let job = JobBuilder::new(JobConfig {
        parallelism,
        batch_size: 7,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    });
    let (sink, out) = CollectSink::new();
    let windowed = job
        .source(
            "events",
            WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(delay as u64),
                |e: &Event| Timestamp(e.1),
            ),
            CollectionSource::factory_with_poll_size(events.to_vec(), 5),
        )
        .key_by(|e: &Event| e.0)
        .window(assigner)
        .allowed_lateness(Duration::from_millis(lateness as u64))
        .retention(retention);
    let windowed = if pre_aggregate {
        windowed.pre_aggregate()
    } else {
        windowed
    };
    windowed
        .aggregate((Count, Sum(|e: &Event| e.2)), |k, w, (c, s)| {
            (*k, w.start, w.end, c, s)
        })
        .sink("collect", sink);
    job.execute().unwrap();
    out.take()
}

fn reference_fixed(events: &[Event], assigner: WindowAssigner) -> Vec<(u8, i64, i64, u64, i64)> {
    let mut groups: BTreeMap<(u8, i64, i64), (u64, i64)> = BTreeMap::new();
    for &(k, t, v) in events {
        assigner.assign(t, |w| {
            let e = groups.entry((k, w.start, w.end)).or_default();
            e.0 += 1;
            e.1 += v;
        });
    }
    groups
        .into_iter()
        .map(|((k, s, e), (c, v))| (k, s, e, c, v))
        .collect()
}

/// The reference of the time-difference windows of 300 ms.
fn reference_time_difference(events: &[Event]) -> Vec<(u8, i64, i64, u64, i64)> {
    weir_dataflow::testing::time_difference_windows(events, 300)
}

fn reference_sessions(events: &[Event], gap: i64) -> Vec<(u8, i64, i64, u64, i64)> {
    let mut per_key: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
    for &(k, t, v) in events {
        per_key.entry(k).or_default().push((t, v));
    }
    let mut out = Vec::new();
    for (k, mut list) in per_key {
        list.sort();
        let mut current: Option<(i64, i64, u64, i64)> = None;
        for (t, v) in list {
            current = match current {
                Some((s, e, c, sum)) if t <= e => Some((s, e.max(t + gap), c + 1, sum + v)),
                Some((s, e, c, sum)) => {
                    out.push((k, s, e, c, sum));
                    Some((t, t + gap, 1, v))
                }
                None => Some((t, t + gap, 1, v)),
            };
        }
        if let Some((s, e, c, sum)) = current {
            out.push((k, s, e, c, sum));
        }
    }
    out.sort();
    out
}

/// The windows of Kafka Streams' own worked example (time difference 10): every
/// distinct set of records within 10 ms of each other, once, ends inclusive.
#[test]
fn time_difference_windows_are_those_of_kafka_streams() {
    let events: Vec<Event> = [10, 15, 20, 22, 35].iter().map(|&t| (0, t, 1)).collect();
    let assigner = WindowAssigner::time_difference(Duration::from_millis(10), Duration::ZERO);
    let got: Vec<(i64, i64, u64)> = run_windows(&events, assigner, 1)
        .into_iter()
        .map(|(_, s, e, c, _)| (s, e, c))
        .collect();
    assert_eq!(
        got,
        [
            (0, 11, 1),  // [0, 10]: 10
            (5, 16, 2),  // [5, 15]: 10, 15
            (10, 21, 3), // [10, 20]: 10, 15, 20
            (11, 22, 2), // 10's right window [11, 21]: 15, 20
            (12, 23, 3), // [12, 22]: 15, 20, 22
            (16, 27, 2), // 15's right window [16, 26]: 20, 22
            (21, 32, 1), // 20's right window [21, 31]: 22
            (25, 36, 1), // [25, 35]: 35 (22 has no right window)
        ]
    );
}

/// With the watermark one behind the largest timestamp (Kafka Streams' stream time)
/// and no grace, a record whose every window is complete is late (the late side
/// output), and one whose windows are partly complete updates only the others and
/// creates no window that is complete already, as Kafka Streams skips expired
/// windows.
#[test]
fn late_records_update_only_the_time_difference_windows_still_open() {
    // One record per poll and a watermark after each: after 35 it is 34.
    let events: Vec<Event> = [10, 15, 20, 22, 35, 5, 26]
        .iter()
        .map(|&t| (0, t, t))
        .collect();
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        batch_size: 1,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    });
    let (sink, out) = CollectSink::new();
    let (results, late) = job
        .source(
            "events",
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &Event| Timestamp(e.1)),
            CollectionSource::factory_with_poll_size(events, 1),
        )
        .key_by(|e: &Event| e.0)
        .window(WindowAssigner::time_difference(
            Duration::from_millis(10),
            Duration::ZERO,
        ))
        .aggregate_with_late_output(Count, |_, w, c| (w.start, w.end, c as i64));
    results
        .union(&[late.map(|e: Event| (-1, -1, e.1))])
        .sink("collect", sink);
    job.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(
        got,
        [
            (-1, -1, 5), // late: its last window, [5, 15], completed at 15
            (0, 11, 1),
            (5, 16, 2),
            (10, 21, 3),
            (11, 22, 2),
            (12, 23, 3),
            (16, 27, 2), // complete when 26 came: not updated
            (21, 32, 1), // likewise
            (25, 36, 2), // [25, 35]: 26 and 35
            (27, 38, 1), // 26's right window: 35 (22's, [23, 33], was complete)
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A retention (state kept after a window fires) changes no result: a window
    /// fires once, and a session kept for its retention takes no later element.
    #[test]
    fn retained_windows_equal_brute_force(events in events(), p in 1usize..4) {
        let retention = Duration::from_secs(5);
        let sliced = WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(250));
        prop_assert_eq!(run_windows_retained(&events, sliced, p, retention), reference_fixed(&events, sliced));
        let hopping = WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(300));
        prop_assert_eq!(run_windows_retained(&events, hopping, p, retention), reference_fixed(&events, hopping));
        let session = WindowAssigner::session(Duration::from_millis(250));
        prop_assert_eq!(run_windows_retained(&events, session, p, retention), reference_sessions(&events, 250));
        let difference = WindowAssigner::time_difference(Duration::from_millis(300), Duration::ZERO);
        prop_assert_eq!(run_windows_retained(&events, difference, p, retention), reference_time_difference(&events));
        // Late elements (the watermark at the largest timestamp, one subtask: the
        // same elements are late in both runs) start new sessions, as without a
        // retention, instead of joining the kept ones.
        let mut late_retained = run_windows_late(&events, session, 1, 0, 0, false, retention);
        let mut late = run_windows_late(&events, session, 1, 0, 0, false, Duration::ZERO);
        late_retained.sort();
        late.sort();
        prop_assert_eq!(late_retained, late);
    }

    /// Kafka Streams' sliding windows on out-of-order input equal the brute-force
    /// windows, at any parallelism.
    #[test]
    fn time_difference_windows_equal_brute_force(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::time_difference(Duration::from_millis(300), Duration::from_millis(50));
        prop_assert_eq!(run_windows(&events, assigner, p), reference_time_difference(&events));
    }

    #[test]
    fn tumbling_windows_equal_brute_force(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::tumbling(Duration::from_millis(1000));
        prop_assert_eq!(run_windows(&events, assigner, p), reference_fixed(&events, assigner));
    }

    #[test]
    fn sliding_windows_equal_brute_force(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(300));
        prop_assert_eq!(run_windows(&events, assigner, p), reference_fixed(&events, assigner));
    }

    /// Hopping windows whose size is a multiple of the slide are sliced: each
    /// element is added to one slice, and a window merges its slices.
    #[test]
    fn sliced_hopping_windows_equal_brute_force(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(250));
        prop_assert_eq!(run_windows(&events, assigner, p), reference_fixed(&events, assigner));
    }

    /// With the watermark at the largest timestamp, elements come late; within the
    /// allowed lateness each fires the windows holding it again for its key (a
    /// sliced window merging its slices anew), so each window's last result is the
    /// brute-force one and no element is dropped.
    #[test]
    fn late_elements_refire_sliced_hopping_windows(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(250));
        let emitted = run_windows_late(&events, assigner, p, 0, BOUND_MS, false, Duration::ZERO);
        let mut last: BTreeMap<(u8, i64, i64), (u64, i64)> = BTreeMap::new();
        for (k, s, e, c, v) in emitted {
            // Per key the results of a window come in order: counts only grow.
            let entry = last.entry((k, s, e)).or_default();
            prop_assert!(c > entry.0);
            *entry = (c, v);
        }
        let last: Vec<_> = last.into_iter().map(|((k, s, e), (c, v))| (k, s, e, c, v)).collect();
        prop_assert_eq!(last, reference_fixed(&events, assigner));
    }

    /// Two-phase aggregation (a fold per key and window before the exchange, merged
    /// after it) gives the brute-force rows, tumbling and sliced hopping.
    #[test]
    fn pre_aggregated_windows_equal_brute_force(events in events(), p in 1usize..4) {
        for assigner in [
            WindowAssigner::tumbling(Duration::from_millis(1000)),
            WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(250)),
        ] {
            let mut got = run_windows_late(&events, assigner, p, BOUND_MS, 0, true, Duration::ZERO);
            got.sort();
            prop_assert_eq!(got, reference_fixed(&events, assigner));
        }
    }

    /// With late partials (the watermark at the largest timestamp), a window's last
    /// result in two phases is still the brute-force one.
    #[test]
    fn late_partials_refire_pre_aggregated_windows(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::sliding(Duration::from_millis(1000), Duration::from_millis(250));
        let emitted = run_windows_late(&events, assigner, p, 0, BOUND_MS, true, Duration::ZERO);
        let mut last: BTreeMap<(u8, i64, i64), (u64, i64)> = BTreeMap::new();
        for (k, s, e, c, v) in emitted {
            last.insert((k, s, e), (c, v));
        }
        let last: Vec<_> = last.into_iter().map(|((k, s, e), (c, v))| (k, s, e, c, v)).collect();
        prop_assert_eq!(last, reference_fixed(&events, assigner));
    }

    #[test]
    fn session_windows_equal_brute_force(events in events(), p in 1usize..4) {
        let assigner = WindowAssigner::session(Duration::from_millis(250));
        prop_assert_eq!(run_windows(&events, assigner, p), reference_sessions(&events, 250));
    }
}

/// One input channel's messages: records before the barrier, the barrier, records after.
#[derive(Clone, Debug)]
enum Item {
    Record(i64),
    Barrier,
}

proptest! {
    /// The state captured at an aligned barrier is the sum of exactly the records that
    /// precede the barrier on every input, whatever order the inputs are read in.
    #[test]
    fn alignment_is_independent_of_interleaving(
        inputs in proptest::collection::vec(
            (proptest::collection::vec(-100i64..100, 0..20), proptest::collection::vec(-100i64..100, 0..20)),
            1..5,
        ),
        choices in proptest::collection::vec(0usize..100, 0..400),
    ) {
        let channels: Vec<Vec<Item>> = inputs
            .iter()
            .map(|(before, after)| {
                before.iter().map(|&v| Item::Record(v))
                    .chain(std::iter::once(Item::Barrier))
                    .chain(after.iter().map(|&v| Item::Record(v)))
                    .collect()
            })
            .collect();
        let expected: i64 = inputs.iter().flat_map(|(before, _)| before).sum();
        let mut aligner = BarrierAligner::new(channels.len());
        let mut cursors = vec![0usize; channels.len()];
        let mut state = 0i64;
        let mut snapshot = None;
        let mut choices = choices.into_iter();
        loop {
            let readable: Vec<usize> = (0..channels.len())
                .filter(|&i| cursors[i] < channels[i].len() && !aligner.is_blocked(i))
                .collect();
            if readable.is_empty() {
                break;
            }
            let pick = readable[choices.next().unwrap_or(0) % readable.len()];
            let item = channels[pick][cursors[pick]].clone();
            cursors[pick] += 1;
            match item {
                Item::Record(v) => state += v,
                Item::Barrier => {
                    let barrier = Barrier::checkpoint(CheckpointId::new(1), 0);
                    if let AlignmentStep::Aligned(_) = aligner.on_barrier(pick, barrier) {
                        snapshot = Some(state);
                    }
                }
            }
        }
        prop_assert_eq!(snapshot, Some(expected));
    }
}

/// A running sum per key, emitting the final sum at end of input via an event-time timer.
struct RunningSum {
    sums: weir_dataflow::KeyedStateHandle<ValueState<u8, i64>>,
}

impl KeyedProcessFunction<u8, Event> for RunningSum {
    type Out = (u8, i64);
    fn process(
        &mut self,
        value: Event,
        cx: &mut ProcessContext<'_, u8, (u8, i64)>,
    ) -> weir_dataflow::Result<()> {
        *self.sums.lock()?.get_or_insert_with(value.0, || 0)? += value.2;
        cx.register_event_time_timer(Timestamp(i64::MAX - 1));
        Ok(())
    }
    fn on_timer(
        &mut self,
        _: Timestamp,
        _: weir_dataflow::process::TimeDomain,
        cx: &mut ProcessContext<'_, u8, (u8, i64)>,
    ) -> weir_dataflow::Result<()> {
        let key = *cx.key();
        let sum = self.sums.lock()?.get(&key)?.copied().unwrap_or(0);
        cx.emit((key, sum));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn keyed_aggregation_is_independent_of_scheduling(
        events in events(), p in 1usize..5, batch in 1usize..50, capacity in 1usize..4,
    ) {
        let job = JobBuilder::new(JobConfig {
            parallelism: p,
            batch_size: batch,
            channel_capacity: capacity,
            ..JobConfig::default()
        });
        let (sink, out) = CollectSink::new();
        job.source(
            "events",
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(BOUND_MS as u64), |e: &Event| Timestamp(e.1)),
            CollectionSource::factory_with_poll_size(events.clone(), 3),
        )
        .rebalance()
        .key_by(|e: &Event| e.0)
        .process("running-sum", |cx| Ok(RunningSum { sums: cx.keyed_state(|b| ValueState::in_backend(b, "sums"))? }))
        .sink("collect", sink);
        job.execute().unwrap();
        let mut got = out.take();
        got.sort();
        let mut expected: BTreeMap<u8, i64> = BTreeMap::new();
        for (k, _, v) in &events {
            *expected.entry(*k).or_default() += v;
        }
        prop_assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    }
}

fn build_error(configure: impl FnOnce(&JobBuilder)) -> String {
    let job = JobBuilder::new(JobConfig::default());
    configure(&job);
    match job.execute() {
        Err(e @ DataflowError::InvalidJob { .. }) => e.to_string(),
        other => panic!("expected an invalid-job error, got {other:?}"),
    }
}

fn numbers(job: &JobBuilder) -> weir_dataflow::Stream<Event> {
    job.source(
        "numbers",
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &Event| Timestamp(e.1)),
        CollectionSource::factory(vec![(1u8, 1i64, 1i64)]),
    )
}

#[test]
fn invalid_settings_are_typed_errors_naming_operator_and_value() {
    let err = build_error(|job| {
        numbers(job).map(|e| e).name("doubler").parallelism(0);
    });
    assert!(err.contains("doubler") && err.contains("got 0"), "{err}");

    let err = build_error(|job| {
        numbers(job).filter(|_| true).name("wide").parallelism(129);
    });
    assert!(
        err.contains("wide") && err.contains("129") && err.contains("128"),
        "{err}"
    );

    let err = build_error(|job| {
        numbers(job)
            .key_by(|e| e.0)
            .window(WindowAssigner::tumbling(Duration::ZERO))
            .name("zero-window")
            .aggregate(Count, |_, _, c| c);
    });
    assert!(err.contains("zero-window") && err.contains("size"), "{err}");

    let err = build_error(|job| {
        numbers(job)
            .key_by(|e| e.0)
            .window(WindowAssigner::sliding(
                Duration::from_secs(1),
                Duration::from_secs(5),
            ))
            .name("hop")
            .aggregate(Count, |_, _, c| c);
    });
    assert!(err.contains("hop") && err.contains("5000"), "{err}");

    let err = build_error(|job| {
        numbers(job)
            .map(|e| e)
            .key_by(|e: &Event| e.0)
            .window(WindowAssigner::tumbling(Duration::from_secs(1)))
            .name("no-time")
            .aggregate(Count, |_, _, c| c);
    });
    assert!(
        err.contains("no-time") && err.contains("event time"),
        "{err}"
    );
}

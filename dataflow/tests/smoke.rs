#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)
use std::time::Duration;
use weir_dataflow::state::{Count, Max};
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{JobBuilder, JobConfig, Timestamp, WatermarkStrategy};

#[test]
fn tumbling_count_per_key() {
    let job = JobBuilder::new(JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    });
    let events: Vec<(u32, i64)> = (0..10_000).map(|i| (i % 7, i as i64)).collect();
    let (sink, out) = CollectSink::new();
    job.source(
        "events",
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(10), |e: &(u32, i64)| {
            Timestamp(e.1)
        }),
        CollectionSource::factory_with_poll_size(events, 100),
    )
    .key_by(|e: &(u32, i64)| e.0)
    .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
    .aggregate((Count, Max(|e: &(u32, i64)| e.1)), |k, w, (c, m)| {
        (*k, w.start, c, m)
    })
    .sink("collect", sink);
    job.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(got.len(), 70);
    let total: u64 = got.iter().map(|r| r.2).sum();
    assert_eq!(total, 10_000);
}

fn lateness_job(lateness: Duration) -> (Vec<(u64, i64)>, Vec<(u32, i64)>, u64) {
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    });
    let events: Vec<(u32, i64)> = vec![(1, 100), (1, 2500), (1, 500), (1, 2600)];
    let (results_sink, results) = CollectSink::new();
    let (late_sink, late) = CollectSink::new();
    let (on_time, too_late) = job
        .source(
            "events",
            WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &(u32, i64)| {
                Timestamp(e.1)
            }),
            CollectionSource::factory_with_poll_size(events, 1),
        )
        .key_by(|e: &(u32, i64)| e.0)
        .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
        .allowed_lateness(lateness)
        .aggregate_with_late_output(Count, |_, w, c| (c, w.start));
    on_time.sink("results", results_sink);
    too_late.sink("late", late_sink);
    let result = job.execute().unwrap();
    let late_count = result.metrics.iter().map(|m| m.late_records).sum();
    (results.take(), late.take(), late_count)
}

#[test]
fn late_elements_within_lateness_refire_and_beyond_go_to_the_side_output() {
    let (results, late, late_count) = lateness_job(Duration::from_millis(2000));
    assert_eq!(
        results,
        vec![(1, 0), (2, 0), (2, 2000)],
        "late firing updates the window"
    );
    assert!(late.is_empty());
    assert_eq!(late_count, 0);

    let (results, late, late_count) = lateness_job(Duration::from_millis(1000));
    assert_eq!(results, vec![(1, 0), (2, 2000)]);
    assert_eq!(late, vec![(1, 500)]);
    assert_eq!(late_count, 1);
}

/// Subtask 0 emits `(1, t)` for t in 0..20_000 (ms), subtask 1 emits nothing; both
/// end only once `release` is set.
struct HalfIdleSource {
    next: i64,
    active: bool,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl weir_dataflow::Source for HalfIdleSource {
    type Out = (u32, i64);
    fn poll(
        &mut self,
        out: &mut weir_dataflow::SourceOutput<(u32, i64)>,
    ) -> weir_dataflow::Result<weir_dataflow::SourcePoll> {
        use std::sync::atomic::Ordering;
        if self.active && self.next < 20_000 {
            for _ in 0..100 {
                out.push((1, self.next));
                self.next += 10;
            }
            return Ok(weir_dataflow::SourcePoll::Ready);
        }
        Ok(if self.release.load(Ordering::SeqCst) {
            weir_dataflow::SourcePoll::Finished
        } else {
            weir_dataflow::SourcePoll::Idle(Duration::from_millis(1))
        })
    }
}

fn windows_before_release(idleness: Option<Duration>) -> usize {
    use std::sync::atomic::{AtomicBool, Ordering};
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let job = JobBuilder::new(JobConfig {
        parallelism: 2,
        watermark_interval: Duration::from_millis(1),
        ..JobConfig::default()
    });
    let (sink, out) = CollectSink::new();
    let mut strategy =
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &(u32, i64)| {
            Timestamp(e.1)
        });
    if let Some(timeout) = idleness {
        strategy = strategy.with_idleness(timeout);
    }
    let source_release = release.clone();
    job.source(
        "half-idle",
        strategy,
        move |info: &weir_dataflow::SubtaskInfo| HalfIdleSource {
            next: 0,
            active: info.index == 0,
            release: source_release.clone(),
        },
    )
    .key_by(|e: &(u32, i64)| e.0)
    .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
    .aggregate(Count, |_, w, c| (w.start, c))
    .sink("collect", sink);
    let handle = job.spawn().unwrap();
    // Wait (generously) for window results while the idle subtask still runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while out.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = out.len();
    release.store(true, Ordering::SeqCst);
    handle.wait().unwrap();
    assert_eq!(out.len(), 20, "every window fires by the end");
    before
}

#[test]
fn an_idle_subtask_does_not_hold_the_watermark_back() {
    assert!(
        windows_before_release(Some(Duration::from_millis(50))) > 0,
        "with idleness, windows fire while a subtask is idle"
    );
    assert_eq!(
        windows_before_release(None),
        0,
        "without idleness, the idle subtask holds the watermark at its minimum"
    );
}

/// Announces splits 0 and 1, emits all of split 0 in its first poll and never
/// anything of split 1, then idles until `release`: both splits go idle at once.
struct AllAtOnceSource {
    done: bool,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl weir_dataflow::Source for AllAtOnceSource {
    type Out = (u32, i64);
    fn poll(
        &mut self,
        out: &mut weir_dataflow::SourceOutput<(u32, i64)>,
    ) -> weir_dataflow::Result<weir_dataflow::SourcePoll> {
        use std::sync::atomic::Ordering;
        if !self.done {
            self.done = true;
            out.announce_split(0);
            out.announce_split(1);
            out.switch_split(0);
            for t in (0..5_000).step_by(100) {
                out.push((1, t));
            }
            return Ok(weir_dataflow::SourcePoll::Ready);
        }
        Ok(if self.release.load(Ordering::SeqCst) {
            weir_dataflow::SourcePoll::Finished
        } else {
            weir_dataflow::SourcePoll::Idle(Duration::from_millis(1))
        })
    }
}

#[test]
fn splits_that_go_idle_together_still_release_the_watermark_of_what_was_read() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let job = JobBuilder::new(JobConfig {
        parallelism: 1,
        watermark_interval: Duration::from_millis(5),
        ..JobConfig::default()
    });
    let (sink, out) = CollectSink::new();
    let source_release = release.clone();
    job.source(
        "all-at-once",
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |e: &(u32, i64)| {
            Timestamp(e.1)
        })
        .with_idleness(Duration::from_millis(50)),
        move |_: &weir_dataflow::SubtaskInfo| AllAtOnceSource {
            done: false,
            release: source_release.clone(),
        },
    )
    .key_by(|e: &(u32, i64)| e.0)
    .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
    .aggregate(Count, |_, w, c| (w.start, c))
    .sink("collect", sink);
    let handle = job.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while out.len() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut before = out.take();
    release.store(true, Ordering::SeqCst);
    handle.wait().unwrap();
    before.sort_unstable();
    // Read up to 4.9 s: the watermark 4.899 s closes the windows up to 4 s.
    assert_eq!(before, vec![(0, 10), (1000, 10), (2000, 10), (3000, 10)]);
}

/// Counts the rules it has seen on the broadcast side (emitting the count after
/// each, on every subtask) and passes the main side's elements on.
struct RuleCounter;

impl weir_dataflow::broadcast::BroadcastProcessFunction<i64, u32> for RuleCounter {
    type Out = (bool, i64);
    type Key = u32;
    type Value = ();

    fn process(
        &mut self,
        value: i64,
        _: &weir_dataflow::broadcast::BroadcastState<u32, ()>,
        cx: &mut weir_dataflow::broadcast::BroadcastContext<'_, (bool, i64)>,
    ) -> weir_dataflow::Result<()> {
        cx.emit((false, value));
        Ok(())
    }

    fn process_broadcast(
        &mut self,
        rule: u32,
        state: &mut weir_dataflow::broadcast::BroadcastState<u32, ()>,
        cx: &mut weir_dataflow::broadcast::BroadcastContext<'_, (bool, i64)>,
    ) -> weir_dataflow::Result<()> {
        state.insert(rule, ());
        cx.emit((true, state.len() as i64));
        Ok(())
    }
}

/// A stream that is not keyed, connected with a broadcast stream: every subtask
/// gets every broadcast element in order (so each counts the same rules the same
/// way: every count once per subtask), and each main element stays on one subtask.
#[test]
fn every_subtask_sees_every_broadcast_element_and_each_main_element_once() {
    let parallelism = 3;
    let job = JobBuilder::new(JobConfig {
        parallelism,
        ..JobConfig::default()
    });
    let (sink, out) = CollectSink::new();
    let rules = job
        .source(
            "rules",
            WatermarkStrategy::none(),
            CollectionSource::factory_with_poll_size((0..50u32).map(|r| r % 40).collect(), 3),
        )
        .parallelism(1);
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory_with_poll_size((0..1_000i64).collect(), 7),
    )
    .connect_broadcast(&rules)
    .process("count-rules", |_| Ok(RuleCounter))
    .sink("collect", sink);
    job.execute().unwrap();
    let got = out.take();
    let mut main: Vec<i64> = got.iter().filter(|o| !o.0).map(|o| o.1).collect();
    main.sort();
    assert_eq!(main, (0..1_000).collect::<Vec<_>>());
    let mut counts: Vec<i64> = got.iter().filter(|o| o.0).map(|o| o.1).collect();
    counts.sort();
    // 40 distinct rules, the last ten repeats: counts 1..=40, then 40 ten times more.
    let mut expected: Vec<i64> = (1..=40).chain(std::iter::repeat_n(40, 10)).collect();
    expected = expected
        .into_iter()
        .flat_map(|c| std::iter::repeat_n(c, parallelism))
        .collect();
    expected.sort();
    assert_eq!(counts, expected);
}

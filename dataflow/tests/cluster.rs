//! One job across two workers in this process, connected by their data planes over
//! loopback TCP: each runs the subtasks of its slots, records and watermarks cross
//! through the exchanges, and the output equals the job's in one process; a slow
//! subtask on one worker holds back the source on the other (credits), with the
//! records in flight between them bounded.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_dataflow::state::Count;
use weir_dataflow::testing::{CollectSink, Collected, CollectionSource};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::wire::{Network, Placement, WorkerId};
use weir_dataflow::{
    JobBuilder, JobConfig, Result, Sink, Source, SourceOutput, SourcePoll, SubtaskInfo, Timestamp,
    WatermarkStrategy,
};
use weir_net::Secret;

type Row = (u32, i64, u64);

fn events() -> Vec<(u32, i64)> {
    (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 101, i64::from(i) * 3))
        .collect()
}

/// Events without end, a hundred per poll: a job reading it runs until stopped.
struct Endless(u32);

impl Source for Endless {
    type Out = (u32, i64);

    fn poll(&mut self, out: &mut SourceOutput<(u32, i64)>) -> Result<SourcePoll> {
        for _ in 0..100 {
            self.0 += 1;
            out.push((self.0 % 101, i64::from(self.0)));
        }
        Ok(SourcePoll::Idle(Duration::from_millis(1)))
    }
}

/// Counts per key and 1 s window at parallelism 4, built identically by every worker
/// (of `events`, or without end).
fn counting_job(
    placement: Option<Placement>,
    events: Option<Vec<(u32, i64)>>,
) -> (JobBuilder, Collected<Row>) {
    let job = JobBuilder::new(JobConfig {
        name: "counts".into(),
        parallelism: 4,
        placement,
        ..JobConfig::default()
    });
    job.wire_codec::<(u32, i64)>();
    let (sink, out) = CollectSink::new();
    let strategy =
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(10), |e: &(u32, i64)| {
            Timestamp(e.1)
        });
    let events = match events {
        Some(events) => job.source(
            "events",
            strategy,
            CollectionSource::factory_with_poll_size(events, 500),
        ),
        None => job.source("events", strategy, |_: &SubtaskInfo| Endless(0)),
    };
    events
        .key_by(|e: &(u32, i64)| e.0)
        .window(WindowAssigner::tumbling(Duration::from_millis(1000)))
        .aggregate(Count, |k, w, c| (*k, w.start, c))
        .sink("collect", sink);
    (job, out)
}

fn networks() -> (Network, Network) {
    let secret = Secret::new("a secret of the test cluster").unwrap();
    (
        Network::bind(WorkerId(1), "127.0.0.1:0", secret.clone()).unwrap(),
        Network::bind(WorkerId(2), "127.0.0.1:0", secret).unwrap(),
    )
}

fn placement(me: &Network, other: &Network, scope: u64) -> Placement {
    Placement {
        network: me.clone(),
        scope,
        slots: vec![WorkerId(1), WorkerId(2), WorkerId(1), WorkerId(2)],
        peers: BTreeMap::from([(other.id(), other.local_addr().to_string())]),
        connect_timeout: Duration::from_secs(10),
    }
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

#[test]
fn a_job_split_over_two_workers_gives_the_rows_of_one_process() {
    let (job, out) = counting_job(None, Some(events()));
    job.execute().unwrap();
    let expected = sorted(out.take());
    assert!(expected.len() > 1000);

    let (a, b) = networks();
    let (job_a, out_a) = counting_job(Some(placement(&a, &b, 1)), Some(events()));
    // Worker 2 waits for worker 1 to dial it.
    let placement_b = placement(&b, &a, 1);
    let worker_b = std::thread::spawn(move || {
        let (job_b, out_b) = counting_job(Some(placement_b), Some(events()));
        job_b.execute().map(|_| out_b.take())
    });
    job_a.execute().unwrap();
    let rows_b = worker_b.join().unwrap().unwrap();
    let rows_a = out_a.take();
    assert!(
        !rows_a.is_empty() && !rows_b.is_empty(),
        "both workers ran windows"
    );
    let mut rows = rows_a;
    rows.extend(rows_b);
    assert_eq!(sorted(rows), expected);
}

#[test]
fn a_record_type_without_a_codec_is_refused_naming_the_edge() {
    let (a, b) = networks();
    let job = JobBuilder::new(JobConfig {
        parallelism: 2,
        placement: Some(Placement {
            slots: vec![WorkerId(1), WorkerId(2)],
            ..placement(&a, &b, 1)
        }),
        ..JobConfig::default()
    });
    let (sink, _out) = CollectSink::new();
    job.source(
        "numbers",
        WatermarkStrategy::none(),
        CollectionSource::factory((0..10u64).collect()),
    )
    .rebalance()
    .sink("collect", sink);
    let error = job.spawn().map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("`numbers` -> `"), "{error}");
    assert!(
        error.contains("`u64`") && error.contains("wire_codec"),
        "{error}"
    );
}

/// A job whose peer worker goes away mid-run fails with an error; it never hangs
/// and never panics.
fn fails_when(cut: impl FnOnce(&Network, &Network)) -> Result<()> {
    let (a, b) = networks();
    let (job_a, _) = counting_job(Some(placement(&a, &b, 1)), None);
    let placement_b = placement(&b, &a, 1);
    let worker_b = std::thread::spawn(move || {
        let (job_b, _) = counting_job(Some(placement_b), None);
        job_b.spawn().unwrap().wait()
    });
    let handle_a = job_a.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    cut(&a, &b);
    let result_a = handle_a.wait().map(|_| ());
    let result_b = worker_b.join().unwrap().map(|_| ());
    assert!(result_b.is_err(), "worker 2 fails too");
    result_a
}

#[test]
fn a_cut_connection_fails_the_job_on_both_workers() {
    let error = fails_when(|a, _| a.disconnect(WorkerId(2))).unwrap_err();
    let error = error.to_string();
    assert!(error.contains("data plane"), "{error}");
    assert!(
        error.contains("the connection with worker 2 was lost"),
        "{error}"
    );
}

#[test]
fn a_peer_whose_attempt_is_closed_fails_the_job_here() {
    let error = fails_when(|_, b| b.close_scope(1, "cancelled")).unwrap_err();
    assert!(error.to_string().contains("aborted by worker 2"), "{error}");
}

/// Records per batch in the backpressure test.
const BATCH: u64 = 64;

/// Counts what it emits, as fast as it is let.
struct Counting(Arc<AtomicU64>, u64);

impl Source for Counting {
    type Out = u64;

    fn poll(&mut self, out: &mut SourceOutput<u64>) -> Result<SourcePoll> {
        // One batch's worth per poll: every message carries at most this many.
        for _ in 0..BATCH {
            self.1 += 1;
            out.push(self.1);
        }
        self.0.fetch_add(BATCH, Ordering::Relaxed);
        Ok(SourcePoll::Ready)
    }
}

/// Takes a millisecond per batch on subtask 1 (the other worker's), counting what
/// it took; subtask 0 drops its batches at once.
struct Slow {
    slow: bool,
    taken: Arc<AtomicU64>,
}

impl Sink for Slow {
    type In = u64;

    fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
        if self.slow {
            std::thread::sleep(Duration::from_millis(1));
            self.taken.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        batch.clear();
        Ok(())
    }
}

/// A source on worker 1 broadcasting to a sink whose subtask on worker 2 is slow.
fn slow_sink_job(
    placement: Placement,
    emitted: &Arc<AtomicU64>,
    taken: &Arc<AtomicU64>,
) -> JobBuilder {
    let job = JobBuilder::new(JobConfig {
        name: "backpressure".into(),
        parallelism: 2,
        batch_size: BATCH as usize,
        placement: Some(placement),
        ..JobConfig::default()
    });
    job.wire_codec::<u64>();
    let emitted = emitted.clone();
    let taken = taken.clone();
    job.source("fast", WatermarkStrategy::none(), move |_: &SubtaskInfo| {
        Counting(emitted.clone(), 0)
    })
    .parallelism(1)
    .broadcast()
    .sink("slow", move |info: &SubtaskInfo| Slow {
        slow: info.index == 1,
        taken: taken.clone(),
    });
    job
}

#[test]
fn a_slow_sink_on_one_worker_holds_back_the_source_on_the_other() {
    let (a, b) = networks();
    let (emitted, taken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let slots = vec![WorkerId(1), WorkerId(2)];
    let job_a = slow_sink_job(
        Placement {
            slots: slots.clone(),
            ..placement(&a, &b, 1)
        },
        &emitted,
        &taken,
    );
    let job_b = slow_sink_job(
        Placement {
            slots,
            ..placement(&b, &a, 1)
        },
        &emitted,
        &taken,
    );
    let handle_b = job_b.spawn().unwrap();
    let handle_a = job_a.spawn().unwrap();
    // The records in flight between the source and the slow subtask are what the
    // channels and the credits hold: a few batches at each hop, however long it runs.
    let config = JobConfig::default();
    let bound = (4 * config.channel_capacity as u64 + 8) * BATCH;
    let mut most = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let in_flight = emitted
            .load(Ordering::Relaxed)
            .saturating_sub(taken.load(Ordering::Relaxed));
        most = most.max(in_flight);
    }
    let (sent, took) = (
        emitted.load(Ordering::Relaxed),
        taken.load(Ordering::Relaxed),
    );
    assert!(took > 0, "the slow subtask took nothing");
    assert!(
        most <= bound,
        "{most} records in flight (emitted {sent}, taken {took}), more than the channels and credits hold ({bound})"
    );
    handle_a.cancel();
    handle_b.cancel();
    let _ = handle_a.wait();
    let _ = handle_b.wait();
}

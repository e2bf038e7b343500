//! Keyed state the runtime owns: every state a process function opens through its
//! context is in the checkpoint and restored, at any parallelism, without the function
//! listing or snapshotting it; two states of one operator cannot share a name.

use std::collections::BTreeMap;
use std::time::Duration;
use weir_dataflow::process::{KeyedProcessFunction, ProcessContext};
use weir_dataflow::testing::restore::checkpoint_once;
use weir_dataflow::testing::{CollectSink, CollectionSource};
use weir_dataflow::{
    JobBuilder, JobConfig, KeyedStateHandle, OperatorContext, RestoreState, Result, Timestamp,
    WatermarkStrategy,
};
use weir_state::{ListState, ValueState};

const RECORDS: u64 = 4_000;
const KEYS: u64 = 5;

/// Counts the records of each key and keeps the list of their values: two states,
/// opened and never mentioned again outside `process`.
struct CountAndList {
    count: KeyedStateHandle<ValueState<u64, u64>>,
    values: KeyedStateHandle<ListState<u64, u64>>,
}

impl CountAndList {
    fn open(cx: &mut OperatorContext) -> Result<Self> {
        Ok(Self {
            count: cx.keyed_state(|backend| ValueState::in_backend(backend, "count"))?,
            values: cx.keyed_state(|backend| ListState::in_backend(backend, "values"))?,
        })
    }
}

impl KeyedProcessFunction<u64, u64> for CountAndList {
    /// (key, records of the key so far, length of its list of values).
    type Out = (u64, u64, usize);

    fn process(&mut self, value: u64, cx: &mut ProcessContext<'_, u64, Self::Out>) -> Result<()> {
        let key = value % KEYS;
        let mut count = self.count.lock()?;
        let count = count.get_or_insert_with(key, || 0)?;
        *count += 1;
        let count = *count;
        let mut values = self.values.lock()?;
        values.add(key, value)?;
        let listed = values.list(&key)?.len();
        cx.emit((key, count, listed));
        Ok(())
    }
}

fn numbers(job: &JobBuilder, pause: Option<Duration>) -> weir_dataflow::Stream<u64> {
    job.source(
        "numbers",
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |v: &u64| Timestamp(*v as i64)),
        CollectionSource::factory_throttled((0..RECORDS).collect(), 16, pause),
    )
    .uid("numbers")
}

fn count_and_list(
    job: &JobBuilder,
    pause: Option<Duration>,
) -> weir_dataflow::Stream<(u64, u64, usize)> {
    numbers(job, pause)
        .key_by(|v: &u64| v % KEYS)
        .process("count-and-list", CountAndList::open)
        .uid("count-and-list")
}

/// Runs the job at `parallelism`, takes checkpoint 1 once it has made progress, and
/// cancels it: the snapshots of every operator.
fn checkpoint_midway(parallelism: usize) -> RestoreState {
    let job = JobBuilder::new(JobConfig {
        parallelism,
        batch_size: 8,
        channel_capacity: 1,
        checkpointing: true,
        ..JobConfig::default()
    });
    let (sink, collected) = CollectSink::new();
    count_and_list(&job, Some(Duration::from_millis(1))).sink("collect", sink);
    let handle = job.spawn().expect("the job starts");
    while collected.len() < 100 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Two tasks of `parallelism` subtasks: the source, and the process function
    // chained to the sink.
    let restore = checkpoint_once(&handle, 2 * parallelism);
    handle.cancel();
    let _ = handle.wait();
    restore
}

#[test]
fn every_state_a_function_opens_is_checkpointed_and_restored_without_being_listed() {
    let restore = checkpoint_midway(2);
    let snapshots = &restore.operators["count-and-list"];
    let mut names: Vec<&str> = snapshots
        .iter()
        .flat_map(|s| s.keyed.values())
        .flat_map(|states| states.keys())
        // A chunk is named after its state, then a separator and its shard.
        .filter_map(|chunk| chunk.split('\u{1e}').next())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names, ["count", "values"], "the states in the checkpoint");

    // Restored at another parallelism, each key's count and list continue from the
    // checkpoint: at the end both hold every record of the key exactly once.
    let job = JobBuilder::new(JobConfig {
        parallelism: 3,
        restore: Some(restore),
        ..JobConfig::default()
    });
    let (sink, collected) = CollectSink::new();
    count_and_list(&job, None).sink("collect", sink);
    job.execute().expect("the restored job runs");
    let resumed = collected.take();
    assert!(
        !resumed.is_empty() && resumed.len() < RECORDS as usize,
        "the checkpoint was taken mid-way: {} records after it",
        resumed.len()
    );
    let mut last: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for (key, count, listed) in resumed {
        let entry = last.entry(key).or_default();
        *entry = (*entry).max((count, listed));
    }
    let per_key = RECORDS / KEYS;
    let expected: BTreeMap<u64, (u64, usize)> = (0..KEYS)
        .map(|k| (k, (per_key, per_key as usize)))
        .collect();
    assert_eq!(last, expected);
}

/// Opens two states under one name.
struct SameNameTwice {
    _first: KeyedStateHandle<ValueState<u64, u64>>,
    _second: KeyedStateHandle<ValueState<u64, u64>>,
}

impl KeyedProcessFunction<u64, u64> for SameNameTwice {
    type Out = u64;
    fn process(&mut self, value: u64, cx: &mut ProcessContext<'_, u64, u64>) -> Result<()> {
        cx.emit(value);
        Ok(())
    }
}

#[test]
fn two_states_of_one_operator_under_one_name_are_an_invalid_job_naming_both() {
    let job = JobBuilder::new(JobConfig::default());
    let (sink, _) = CollectSink::new();
    numbers(&job, None)
        .key_by(|v: &u64| v % KEYS)
        .process("same-name", |cx| {
            Ok(SameNameTwice {
                _first: cx.keyed_state(|b| ValueState::in_backend(b, "count"))?,
                _second: cx.keyed_state(|b| ValueState::in_backend(b, "count"))?,
            })
        })
        .sink("collect", sink);
    // The error reaches the caller as the operator's, with the invalid job as its
    // cause; a restart would fail the same way, so it is not recoverable.
    let err = job.execute().expect_err("two states named `count`");
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(e) = cause {
        message.push_str(&format!(": {e}"));
        cause = e.source();
    }
    assert!(
        message.contains("same-name") && message.contains("`count` is registered twice"),
        "{message}"
    );
    assert!(!err.is_recoverable(), "{err:?}");
}

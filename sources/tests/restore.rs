//! Checkpointed positions: a job restored from a checkpoint of a running job, at the
//! same or another parallelism, emits exactly the records the checkpointed job had
//! not emitted.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use weir_dataflow::testing::restore::{
    check_resumed, checkpoint_running_job, run_restored, SOURCE_UID,
};
use weir_dataflow::{JobBuilder, Stream, WatermarkStrategy};
use weir_sources::SequenceSource;

fn sequence(job: &JobBuilder) -> Stream<u64> {
    job.source(
        "seq",
        WatermarkStrategy::none(),
        SequenceSource::factory(1, 20_000),
    )
    .uid(SOURCE_UID)
    .map(|x| x as u64)
}

#[test]
fn sequence_resumes_at_the_same_and_other_parallelism() {
    let all: Vec<u64> = (1..=20_000).collect();
    for (old, new) in [(2, 2), (2, 3), (3, 1)] {
        let (restore, before) = checkpoint_running_job(old, sequence);
        let after = run_restored(new, restore, sequence);
        check_resumed(&all, &before, &after);
    }
}

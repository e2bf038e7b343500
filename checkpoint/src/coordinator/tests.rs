//! The coordinator's decisions, tested without threads or I/O.

use super::*;
use crate::in_flight::SubtaskCheckpointStats;
use crate::metadata::{StateHandle, SubtaskState};
use crate::OperatorUid;
use std::collections::BTreeMap;

/// Subtask `subtask` of task 0, named `task`, acknowledges checkpoint `id`.
fn ack(id: u64, task: &str, subtask: usize) -> SubtaskAck {
    SubtaskAck {
        checkpoint: CheckpointId::new(id),
        id: SubtaskId::new(0, subtask),
        task: task.into(),
        subtask,
        operators: BTreeMap::new(),
        alignment_us: 0,
        sync_us: 0,
    }
}

/// Subtasks 0 and 1 of task `a` acknowledge checkpoint `id` with empty uploads;
/// the commands of the last acknowledgement.
fn acknowledge_all(c: &mut Coordinator, now: MonotonicMs, id: u64) -> Vec<Command> {
    let mut commands = Vec::new();
    for subtask in 0..2 {
        commands = c.on_event(Event::Acknowledged {
            now,
            ack: ack(id, "a", subtask),
            upload: SubtaskUpload::default(),
        });
    }
    commands
}

/// The statistics of checkpoint `id`, acknowledged by subtasks 0 and 1 of task
/// `a` (in that order) with empty uploads.
fn stats(id: u64, savepoint: bool, duration_ms: f64) -> CheckpointStats {
    CheckpointStats {
        checkpoint: CheckpointId::new(id),
        savepoint,
        duration_ms,
        bytes: 0,
        state_bytes: 0,
        subtasks: (0..2)
            .map(|subtask| SubtaskCheckpointStats {
                task: "a".into(),
                subtask,
                alignment_us: 0,
                sync_us: 0,
                async_us: 0,
                bytes: 0,
                state_bytes: 0,
            })
            .collect(),
    }
}

fn coordinator(config: CoordinatorConfig) -> Coordinator {
    Coordinator::new(
        config,
        [SubtaskId::new(0, 0), SubtaskId::new(0, 1)],
        CheckpointId::new(1),
    )
}

#[test]
fn a_checkpoint_completes_after_every_ack_and_the_metadata() {
    let mut c = coordinator(CoordinatorConfig::default());
    assert!(
        c.on_event(Event::Tick { now: 500 }).is_empty(),
        "not before the first interval"
    );
    let commands = c.on_event(Event::Tick { now: 1000 });
    assert!(matches!(commands[..], [Command::InjectBarrier(b)] if b.id.get() == 1));
    assert!(
        c.on_event(Event::Tick { now: 2500 }).is_empty(),
        "at most one in flight"
    );
    assert!(c
        .on_event(Event::Acknowledged {
            now: 1100,
            ack: ack(1, "a", 0),
            upload: SubtaskUpload::default(),
        })
        .is_empty());
    let commands = c.on_event(Event::Acknowledged {
        now: 1200,
        ack: ack(1, "a", 1),
        upload: SubtaskUpload::default(),
    });
    assert!(
        matches!(&commands[..], [Command::WriteMetadata { barrier, .. }] if barrier.id.get() == 1)
    );
    let commands = c.on_event(Event::MetadataWritten {
        now: 1300,
        checkpoint: CheckpointId::new(1),
        location: None,
    });
    assert_eq!(
        commands,
        vec![
            Command::NotifyComplete(CheckpointId::new(1)),
            Command::RecordStats(stats(1, false, 300.0)),
            Command::Retain { keep: 3 }
        ]
    );
    assert_eq!(c.last_completed(), Some(CheckpointId::new(1)));
    let commands = c.on_event(Event::Tick { now: 2000 });
    assert!(matches!(commands[..], [Command::InjectBarrier(b)] if b.id.get() == 2));
}

#[test]
fn min_pause_delays_the_next_checkpoint() {
    let mut c = coordinator(CoordinatorConfig {
        min_pause: Duration::from_millis(800),
        ..CoordinatorConfig::default()
    });
    c.on_event(Event::Tick { now: 1000 });
    acknowledge_all(&mut c, 1900, 1);
    c.on_event(Event::MetadataWritten {
        now: 1900,
        checkpoint: CheckpointId::new(1),
        location: None,
    });
    assert!(c.on_event(Event::Tick { now: 2000 }).is_empty());
    assert!(!c.on_event(Event::Tick { now: 2700 }).is_empty());
}

#[test]
fn timeouts_abort_and_too_many_fail_the_job() {
    let mut c = coordinator(CoordinatorConfig {
        timeout: Duration::from_millis(100),
        tolerable_failures: 1,
        ..CoordinatorConfig::default()
    });
    c.on_event(Event::Tick { now: 1000 });
    let commands = c.on_event(Event::Tick { now: 1100 });
    assert!(matches!(&commands[0], Command::Abort { checkpoint, .. } if checkpoint.get() == 1));
    assert!(!commands
        .iter()
        .any(|c| matches!(c, Command::FailJob { .. })));
    c.on_event(Event::Tick { now: 2100 });
    let commands = c.on_event(Event::Tick { now: 2200 });
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, Command::FailJob { .. })),
        "{commands:?}"
    );
    // Late acks of an aborted checkpoint are ignored.
    assert!(c
        .on_event(Event::Acknowledged {
            now: 2300,
            ack: ack(1, "a", 0),
            upload: SubtaskUpload::default(),
        })
        .is_empty());
}

#[test]
fn savepoints_jump_the_queue_and_stop_the_job() {
    let mut c = coordinator(CoordinatorConfig::default());
    let commands = c.on_event(Event::SavepointRequested {
        now: 10,
        stop: true,
        request: 7,
    });
    let barrier = match commands[..] {
        [Command::InjectBarrier(b)] => b,
        _ => panic!("{commands:?}"),
    };
    assert!(barrier.stops_job());
    acknowledge_all(&mut c, 20, 1);
    let commands = c.on_event(Event::MetadataWritten {
        now: 30,
        checkpoint: CheckpointId::new(1),
        location: Some("s3://savepoints/savepoint-job-1".into()),
    });
    assert_eq!(
        commands,
        vec![
            Command::NotifyComplete(CheckpointId::new(1)),
            Command::RecordStats(stats(1, true, 20.0)),
            Command::SavepointDone {
                requests: vec![7],
                checkpoint: CheckpointId::new(1),
                location: Some("s3://savepoints/savepoint-job-1".into()),
            },
            Command::StopJob {
                checkpoint: CheckpointId::new(1),
                location: Some("s3://savepoints/savepoint-job-1".into()),
            }
        ]
    );
}

#[test]
fn a_declined_checkpoint_is_aborted() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    let commands = c.on_event(Event::Declined {
        now: 1001,
        checkpoint: CheckpointId::new(1),
        reason: "upload failed".into(),
    });
    assert!(matches!(&commands[..], [Command::Abort { reason, .. }] if reason == "upload failed"));
    assert_eq!(c.in_flight(), None);
}

#[test]
fn a_decline_after_every_acknowledgement_leaves_the_metadata_write_to_decide() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    acknowledge_all(&mut c, 1001, 1);
    let late = c.on_event(Event::Declined {
        now: 1002,
        checkpoint: CheckpointId::new(1),
        reason: "a late decline".into(),
    });
    assert!(
        late.is_empty(),
        "aborted while its metadata was being written: {late:?}"
    );
    let commands = c.on_event(Event::MetadataWritten {
        now: 1003,
        checkpoint: CheckpointId::new(1),
        location: None,
    });
    assert_eq!(commands[0], Command::NotifyComplete(CheckpointId::new(1)));
}

fn finished(c: &mut Coordinator, now: MonotonicMs, subtask: usize) -> Vec<Command> {
    c.on_event(Event::SubtaskFinished {
        now,
        subtask: SubtaskId::new(0, subtask),
    })
}

fn complete(c: &mut Coordinator, now: MonotonicMs, id: u64) -> Vec<Command> {
    for subtask in 0..2 {
        c.on_event(Event::Acknowledged {
            now,
            ack: ack(id, "a", subtask),
            upload: SubtaskUpload::default(),
        });
    }
    c.on_event(Event::MetadataWritten {
        now,
        checkpoint: CheckpointId::new(id),
        location: None,
    })
}

/// What operators emit in `on_end` reaches the sinks after every periodic
/// checkpoint the job took while running; only a checkpoint taken after every
/// subtask finished commits it, and the job must not end before that one.
#[test]
fn a_bounded_job_ends_only_after_a_checkpoint_taken_once_every_subtask_finished() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    // Subtask 1 finishes while checkpoint 1 is in flight, without having taken
    // its barrier: it gets the barrier directly.
    assert_eq!(
        finished(&mut c, 1001, 1),
        [Command::InjectBarrierOn {
            barrier: Barrier::checkpoint(CheckpointId::new(1), 0),
            subtask: SubtaskId::new(0, 1),
        }]
    );
    let commands = complete(&mut c, 1002, 1);
    assert!(
        !commands.iter().any(|c| matches!(c, Command::FinishJob(_))),
        "checkpoint 1 was started before every subtask finished: {commands:?}"
    );
    // The last subtask finishes long before the next interval: the final
    // checkpoint starts at once.
    assert_eq!(
        finished(&mut c, 1003, 0),
        [Command::InjectBarrier(Barrier::checkpoint(
            CheckpointId::new(2),
            0
        ))]
    );
    assert_eq!(
        complete(&mut c, 1004, 2),
        [
            Command::NotifyComplete(CheckpointId::new(2)),
            Command::RecordStats(stats(2, false, 1.0)),
            Command::Retain { keep: 3 },
            Command::FinishJob(CheckpointId::new(2)),
        ]
    );
}

#[test]
fn a_finished_subtask_that_acknowledged_gets_no_second_barrier() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    c.on_event(Event::Acknowledged {
        now: 1001,
        ack: ack(1, "a", 0),
        upload: SubtaskUpload::default(),
    });
    assert!(finished(&mut c, 1002, 0).is_empty());
}

#[test]
fn a_failed_final_checkpoint_is_taken_again_and_a_running_one_is_awaited() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    // Every subtask finishes while checkpoint 1 is in flight: the final one
    // waits for it.
    for subtask in 0..2 {
        let commands = finished(&mut c, 1001, subtask);
        assert!(
            commands
                .iter()
                .all(|c| matches!(c, Command::InjectBarrierOn { .. })),
            "{commands:?}"
        );
    }
    let commands = complete(&mut c, 1002, 1);
    assert!(!commands.contains(&Command::FinishJob(CheckpointId::new(1))));
    assert_eq!(
        c.on_event(Event::Tick { now: 1003 }),
        [Command::InjectBarrier(Barrier::checkpoint(
            CheckpointId::new(2),
            0
        ))]
    );
    c.on_event(Event::Declined {
        now: 1004,
        checkpoint: CheckpointId::new(2),
        reason: "upload failed".into(),
    });
    assert_eq!(
        c.on_event(Event::Tick { now: 1005 }),
        [Command::InjectBarrier(Barrier::checkpoint(
            CheckpointId::new(3),
            0
        ))]
    );
    assert!(complete(&mut c, 1006, 3).contains(&Command::FinishJob(CheckpointId::new(3))));
}

/// Two tasks whose operators have the same name are two tasks: a checkpoint waits
/// for both (by name they were one, and the second's acknowledgement replaced the
/// first's, so the checkpoint completed without it and the job never finished).
#[test]
fn tasks_with_the_same_name_are_told_apart_by_their_ids() {
    let (first, second) = (SubtaskId::new(1, 0), SubtaskId::new(2, 0));
    let mut c = Coordinator::new(
        CoordinatorConfig::default(),
        [first, second],
        CheckpointId::new(1),
    );
    c.on_event(Event::Tick { now: 1000 });
    let named = |id: SubtaskId| SubtaskAck {
        id,
        ..ack(1, "double", 0)
    };
    assert!(c
        .on_event(Event::Acknowledged {
            now: 1001,
            ack: named(first),
            upload: SubtaskUpload::default(),
        })
        .is_empty());
    assert!(matches!(
        c.on_event(Event::Acknowledged {
            now: 1002,
            ack: named(second),
            upload: SubtaskUpload::default(),
        })
        .as_slice(),
        [Command::WriteMetadata { .. }]
    ));
}

/// Two savepoint requests made while a checkpoint is in flight: both are served
/// by the next savepoint, the stop of either is kept, and each is answered (before,
/// the second replaced the first: its stop flag was lost and one waiter was never
/// answered).
#[test]
fn savepoint_requests_during_a_checkpoint_are_each_answered_and_keep_their_stop() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    for (request, stop) in [(1, true), (2, false)] {
        assert!(c
            .on_event(Event::SavepointRequested {
                now: 1001,
                stop,
                request,
            })
            .is_empty());
    }
    acknowledge_all(&mut c, 1002, 1);
    assert_eq!(
        c.on_event(Event::MetadataWritten {
            now: 1003,
            checkpoint: CheckpointId::new(1),
            location: None,
        }),
        [
            Command::NotifyComplete(CheckpointId::new(1)),
            Command::RecordStats(stats(1, false, 3.0)),
            Command::Retain { keep: 3 },
        ]
    );
    let barrier = match c.on_event(Event::Tick { now: 1004 })[..] {
        [Command::InjectBarrier(b)] => b,
        ref other => panic!("{other:?}"),
    };
    assert!(barrier.is_savepoint() && barrier.stops_job(), "{barrier:?}");
    // It fails: both requests are answered, and the stopped sources fail over.
    assert_eq!(
        c.on_event(Event::Declined {
            now: 1005,
            checkpoint: barrier.id,
            reason: "upload failed".into(),
        }),
        [
            Command::Abort {
                checkpoint: barrier.id,
                reason: "upload failed".into()
            },
            Command::SavepointFailed {
                requests: vec![1, 2],
                reason: "upload failed".into()
            },
            Command::FailJob {
                reason: format!("stop-with-savepoint {} failed: upload failed", barrier.id)
            },
        ]
    );
}

/// Another incarnation wrote the metadata first: the checkpoint is given up, and
/// nothing is deleted (before, the abort deleted the winner's `_metadata` and
/// files). A checkpoint whose metadata is being written is not timed out.
#[test]
fn a_checkpoint_another_incarnation_completed_is_abandoned_not_deleted() {
    let mut c = coordinator(CoordinatorConfig {
        timeout: Duration::from_millis(100),
        ..CoordinatorConfig::default()
    });
    c.on_event(Event::Tick { now: 1000 });
    acknowledge_all(&mut c, 1001, 1);
    assert!(
        c.on_event(Event::Tick { now: 5000 }).is_empty(),
        "timed out while its metadata was being written"
    );
    let commands = c.on_event(Event::MetadataTaken {
        now: 5001,
        checkpoint: CheckpointId::new(1),
    });
    assert!(
        matches!(&commands[..], [Command::Abandon { checkpoint, .. }] if checkpoint.get() == 1),
        "{commands:?}"
    );
    assert_eq!(c.in_flight(), None);
}

/// An upload that wrote `bytes`, referring to ten times as much state.
fn upload(bytes: u64, async_us: u64) -> SubtaskUpload {
    SubtaskUpload {
        states: Vec::new(),
        bytes,
        state_bytes: bytes * 10,
        async_us,
    }
}

/// Operator state written by `uid`'s subtask to `path`.
fn state(path: &str) -> SubtaskState {
    SubtaskState {
        operator: vec![StateHandle {
            path: path.into(),
            size: 1,
        }],
        ..SubtaskState::default()
    }
}

fn record_stats(commands: &[Command]) -> Option<&CheckpointStats> {
    commands.iter().find_map(|c| match c {
        Command::RecordStats(stats) => Some(stats),
        _ => None,
    })
}

/// A completed checkpoint reports its statistics (before, the driver kept them):
/// the time from its start to its metadata written, the sums of what its subtasks
/// uploaded, and each subtask's figures in the order the acknowledgements came.
#[test]
fn a_completed_checkpoint_reports_its_statistics() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    for (now, subtask, bytes) in [(1010, 1, 30), (1020, 0, 12)] {
        let commands = c.on_event(Event::Acknowledged {
            now,
            ack: SubtaskAck {
                alignment_us: 5,
                sync_us: 7,
                ..ack(1, "a", subtask)
            },
            upload: upload(bytes, 900 + subtask as u64),
        });
        assert!(record_stats(&commands).is_none(), "{commands:?}");
    }
    let commands = c.on_event(Event::MetadataWritten {
        now: 1250,
        checkpoint: CheckpointId::new(1),
        location: None,
    });
    let subtask = |subtask: usize, bytes: u64| SubtaskCheckpointStats {
        task: "a".into(),
        subtask,
        alignment_us: 5,
        sync_us: 7,
        async_us: 900 + subtask as u64,
        bytes,
        state_bytes: bytes * 10,
    };
    assert_eq!(
        record_stats(&commands),
        Some(&CheckpointStats {
            checkpoint: CheckpointId::new(1),
            savepoint: false,
            duration_ms: 250.0,
            bytes: 42,
            state_bytes: 420,
            subtasks: vec![subtask(1, 30), subtask(0, 12)],
        })
    );
}

/// The metadata gets what every subtask uploaded, by operator and subtask index
/// (before, the driver collected it); the barrier in flight is known only while
/// its checkpoint is.
#[test]
fn write_metadata_carries_the_state_every_subtask_uploaded() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    let barrier = c.barrier_in_flight(CheckpointId::new(1));
    assert_eq!(barrier, Some(Barrier::checkpoint(CheckpointId::new(1), 0)));
    assert_eq!(c.barrier_in_flight(CheckpointId::new(2)), None);
    let (source, count) = (OperatorUid::new("source"), OperatorUid::new("count"));
    c.on_event(Event::Acknowledged {
        now: 1001,
        ack: ack(1, "a", 1),
        upload: SubtaskUpload {
            states: vec![(count.clone(), state("count-1"))],
            ..upload(1, 1)
        },
    });
    let commands = c.on_event(Event::Acknowledged {
        now: 1002,
        ack: ack(1, "a", 0),
        upload: SubtaskUpload {
            states: vec![
                (source.clone(), state("source-0")),
                (count.clone(), state("count-0")),
            ],
            ..upload(1, 1)
        },
    });
    let expected: OperatorStates = BTreeMap::from([
        (source, BTreeMap::from([(0, state("source-0"))])),
        (
            count,
            BTreeMap::from([(0, state("count-0")), (1, state("count-1"))]),
        ),
    ]);
    assert_eq!(
        commands,
        [Command::WriteMetadata {
            barrier: barrier.expect("in flight"),
            states: expected,
        }]
    );
}

/// A failed checkpoint reports no statistics, and what it collected does not
/// leak into the next one: late acknowledgements of it are not counted.
#[test]
fn a_failed_checkpoint_reports_nothing_and_its_late_acks_count_for_no_other() {
    let mut c = coordinator(CoordinatorConfig::default());
    c.on_event(Event::Tick { now: 1000 });
    c.on_event(Event::Acknowledged {
        now: 1001,
        ack: ack(1, "a", 0),
        upload: upload(100, 1),
    });
    let commands = c.on_event(Event::Declined {
        now: 1002,
        checkpoint: CheckpointId::new(1),
        reason: "upload failed".into(),
    });
    assert!(record_stats(&commands).is_none(), "{commands:?}");
    assert_eq!(c.barrier_in_flight(CheckpointId::new(1)), None);
    c.on_event(Event::Tick { now: 2002 });
    assert!(c.barrier_in_flight(CheckpointId::new(2)).is_some());
    // Subtask 1's upload of checkpoint 1 finishes late.
    assert!(c
        .on_event(Event::Acknowledged {
            now: 2003,
            ack: ack(1, "a", 1),
            upload: upload(100, 1),
        })
        .is_empty());
    for subtask in 0..2 {
        c.on_event(Event::Acknowledged {
            now: 2004,
            ack: ack(2, "a", subtask),
            upload: upload(1, 1),
        });
    }
    let commands = c.on_event(Event::MetadataWritten {
        now: 2010,
        checkpoint: CheckpointId::new(2),
        location: None,
    });
    let stats = record_stats(&commands).expect("checkpoint 2 completed");
    assert_eq!((stats.bytes, stats.subtasks.len()), (2, 2), "{stats:?}");
    assert_eq!(stats.duration_ms, 8.0);
}

/// Each savepoint's requests are answered with its own location, which the
/// coordinator passes on and keeps nowhere (before, the driver kept every
/// location in a map until the job stopped).
#[test]
fn each_savepoint_is_answered_with_its_own_location() {
    let mut c = coordinator(CoordinatorConfig::default());
    for (request, stop) in [(1, false), (2, true)] {
        let now = 10 * request;
        let commands = c.on_event(Event::SavepointRequested { now, stop, request });
        let barrier = match commands[..] {
            [Command::InjectBarrier(b)] => b,
            _ => panic!("{commands:?}"),
        };
        for subtask in 0..2 {
            c.on_event(Event::Acknowledged {
                now,
                ack: ack(barrier.id.get(), "a", subtask),
                upload: upload(1, 1),
            });
        }
        let location = Some(format!("file:///savepoints/savepoint-job-{}", barrier.id));
        let commands = c.on_event(Event::MetadataWritten {
            now,
            checkpoint: barrier.id,
            location: location.clone(),
        });
        assert!(
            commands.contains(&Command::SavepointDone {
                requests: vec![request],
                checkpoint: barrier.id,
                location: location.clone(),
            }),
            "{commands:?}"
        );
        assert_eq!(
            commands.contains(&Command::StopJob {
                checkpoint: barrier.id,
                location,
            }),
            stop,
            "{commands:?}"
        );
    }
}

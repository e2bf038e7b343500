//! The checkpoint coordinator as a pure state machine: events in, commands out. It
//! does no I/O and reads no clock — the driver around it passes the time in every
//! event and carries out the commands (inject barriers, write metadata, notify,
//! delete aborted files). That makes every protocol step testable without threads
//! and lets crash tests stop the driver between any two commands.
//!
//! ```text
//!  Tick ──▶ (interval elapsed, min pause respected, none in flight) ──▶ InjectBarrier(n)
//!  Acknowledged(n, subtask, upload) × all ──▶ WriteMetadata(n, every uploaded state)
//!  MetadataWritten(n) ──▶ NotifyComplete(n), RecordStats(n), Retain
//!  MetadataWritten(savepoint n, location) ──▶ … SavepointDone(location) (+ StopJob)
//!  Tick past timeout / Declined / Failed ──▶ Abort(n) (+ FailJob after too many in a row)
//!  SubtaskFinished × all ──▶ InjectBarrier(f), the final checkpoint
//!  MetadataWritten(f) ──▶ NotifyComplete(f), FinishJob(f)
//! ```
//!
//! A bounded job ends as Flink's FLIP-147 has it: a subtask that processed all its
//! input and ran its operators' `on_end` reports `SubtaskFinished` and keeps taking
//! part in checkpoints with its final state. Once every subtask has, the coordinator
//! takes one more checkpoint, which therefore covers everything any operator emitted,
//! and the job ends only when that checkpoint is complete and notified: exactly-once
//! sinks commit the last of the output then.
//!
//! The bookkeeping of the checkpoint in flight (acknowledgements, the state handles
//! the uploads wrote, per-subtask statistics) lives in `in_flight.rs`; the
//! coordinator decides with it, and hands the driver what the commands need: the
//! states to write into the metadata, the [`CheckpointStats`] of a completed
//! checkpoint, a savepoint's location to answer its requests with. The driver keeps
//! only I/O handles (upload tasks, reply channels).

use crate::in_flight::{CheckpointStats, InFlight, OperatorStates, SubtaskUpload};
use crate::{Barrier, CheckpointId, SubtaskAck, SubtaskId};
use std::collections::BTreeSet;
use std::time::Duration;

/// Settings of periodic checkpointing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Time between the starts of two checkpoints.
    pub interval: Duration,
    /// Minimum time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Consecutive failed checkpoints tolerated before the job fails over.
    pub tolerable_failures: u32,
    /// Completed checkpoints kept.
    pub retention: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            min_pause: Duration::ZERO,
            timeout: Duration::from_secs(60),
            tolerable_failures: 3,
            retention: 3,
        }
    }
}

/// Milliseconds of a monotonic clock owned by the driver.
pub type MonotonicMs = u64;

/// What happened.
#[derive(Clone, Debug)]
pub enum Event {
    /// Time passed.
    Tick {
        /// Now.
        now: MonotonicMs,
    },
    /// A savepoint was requested (stop: the job ends after it). Every request gets
    /// its own answer: [`Command::SavepointDone`] or [`Command::SavepointFailed`].
    SavepointRequested {
        /// Now.
        now: MonotonicMs,
        /// Whether the job stops after the savepoint.
        stop: bool,
        /// The request's id, unique within the job, to answer it by.
        request: u64,
    },
    /// A subtask acknowledged (its state is uploaded).
    Acknowledged {
        /// Now.
        now: MonotonicMs,
        /// The acknowledgement.
        ack: SubtaskAck,
        /// What the upload of the subtask's snapshot wrote.
        upload: SubtaskUpload,
    },
    /// A subtask could not take part (for instance it had already finished), or its
    /// upload failed.
    Declined {
        /// Now.
        now: MonotonicMs,
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
    /// The metadata of a checkpoint is durably written.
    MetadataWritten {
        /// Now.
        now: MonotonicMs,
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// For a savepoint: where its self-contained copy was written.
        location: Option<String>,
    },
    /// A subtask processed all its input and ran `on_end`; it acknowledges further
    /// checkpoints with its final state.
    SubtaskFinished {
        /// Now.
        now: MonotonicMs,
        /// The subtask.
        subtask: SubtaskId,
    },
    /// Another incarnation of the job wrote this checkpoint's `_metadata` first (a
    /// zombie, or the live one when this is the zombie): the checkpoint is theirs.
    MetadataTaken {
        /// Now.
        now: MonotonicMs,
        /// The checkpoint.
        checkpoint: CheckpointId,
    },
    /// Writing the metadata failed.
    MetadataFailed {
        /// Now.
        now: MonotonicMs,
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Ask every source to record its position and emit this barrier.
    InjectBarrier(Barrier),
    /// Every subtask acknowledged: write the checkpoint's metadata (last, create-if-absent).
    WriteMetadata {
        /// The barrier of the checkpoint.
        barrier: Barrier,
        /// What every subtask uploaded, by operator and subtask index.
        states: OperatorStates,
    },
    /// The checkpoint is complete: tell every operator (sinks commit).
    NotifyComplete(CheckpointId),
    /// Record and report the statistics of the checkpoint just completed (follows its
    /// [`Command::NotifyComplete`]).
    RecordStats(CheckpointStats),
    /// Apply retention (keep the newest N completed checkpoints).
    Retain {
        /// How many to keep.
        keep: usize,
    },
    /// Give the checkpoint up without deleting anything: another incarnation
    /// completed it, and its files are that incarnation's. It counts as a failed
    /// checkpoint.
    Abandon {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
    /// Abort the checkpoint and delete what it wrote. It counts as a failed checkpoint.
    Abort {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
    /// Too many consecutive failures: fail the job over (restart from the last
    /// complete checkpoint).
    FailJob {
        /// Why.
        reason: String,
    },
    /// A stop-with-savepoint completed: shut the job down.
    StopJob {
        /// The savepoint's checkpoint id.
        checkpoint: CheckpointId,
        /// Where the savepoint was written.
        location: Option<String>,
    },
    /// Send the barrier of the checkpoint in flight to a subtask that finished
    /// without acknowledging it: its input may have ended before the barrier reached
    /// it. (A subtask ignores a barrier it already took.)
    InjectBarrierOn {
        /// The barrier in flight.
        barrier: Barrier,
        /// The finished subtask.
        subtask: SubtaskId,
    },
    /// Every subtask finished and the final checkpoint, which covers all they
    /// emitted, is complete and notified: end the job.
    FinishJob(CheckpointId),
    /// A savepoint is complete: answer these requests with its location.
    SavepointDone {
        /// The requests it answers.
        requests: Vec<u64>,
        /// The savepoint's checkpoint id.
        checkpoint: CheckpointId,
        /// Where the savepoint was written (as [`Event::MetadataWritten`] reported it).
        location: Option<String>,
    },
    /// These savepoint requests cannot be served.
    SavepointFailed {
        /// The requests.
        requests: Vec<u64>,
        /// Why.
        reason: String,
    },
}

/// The coordinator state machine of one job.
#[derive(Clone, Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    subtasks: BTreeSet<SubtaskId>,
    next_id: CheckpointId,
    pending: Option<InFlight>,
    last_start: Option<MonotonicMs>,
    last_end: Option<MonotonicMs>,
    consecutive_failures: u32,
    /// Savepoint requests not yet served, oldest first, with their stop flags: the
    /// next savepoint serves all of them, and stops the job if any asked to.
    savepoint_requests: Vec<(u64, bool)>,
    /// The newest checkpoint completed by this coordinator.
    last_completed: Option<CheckpointId>,
    wall_clock_ms: i64,
    /// Subtasks that finished their input.
    finished: BTreeSet<SubtaskId>,
    /// The checkpoint started after every subtask finished.
    final_checkpoint: Option<CheckpointId>,
}

impl Coordinator {
    /// A coordinator expecting acknowledgements from `subtasks`; the first checkpoint
    /// gets `next_id` (one past the checkpoint the job was restored from).
    pub fn new(
        config: CoordinatorConfig,
        subtasks: impl IntoIterator<Item = SubtaskId>,
        next_id: CheckpointId,
    ) -> Self {
        Self {
            config,
            subtasks: subtasks.into_iter().collect(),
            next_id,
            pending: None,
            last_start: None,
            last_end: None,
            consecutive_failures: 0,
            savepoint_requests: Vec::new(),
            last_completed: None,
            wall_clock_ms: 0,
            finished: BTreeSet::new(),
            final_checkpoint: None,
        }
    }

    /// Sets the wall-clock time stamped on barriers (ms since the epoch); the driver
    /// updates it, the state machine never reads a clock.
    pub fn set_wall_clock(&mut self, ms: i64) {
        self.wall_clock_ms = ms;
    }

    /// The checkpoint in flight, if any.
    pub fn in_flight(&self) -> Option<CheckpointId> {
        self.pending.as_ref().map(|p| p.barrier.id)
    }

    /// The barrier of `checkpoint` while it is in flight: only then is a subtask's
    /// snapshot of it worth uploading.
    pub fn barrier_in_flight(&self, checkpoint: CheckpointId) -> Option<Barrier> {
        self.pending
            .as_ref()
            .map(|p| p.barrier)
            .filter(|b| b.id == checkpoint)
    }

    /// The newest checkpoint this coordinator completed, if any.
    pub fn last_completed(&self) -> Option<CheckpointId> {
        self.last_completed
    }

    /// Consecutive failed checkpoints.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether every subtask finished its input.
    pub fn all_finished(&self) -> bool {
        self.subtasks.iter().all(|k| self.finished.contains(k))
    }

    /// The subtasks that finished their input: they take barriers from the driver,
    /// no longer through their input channels.
    pub fn finished(&self) -> &BTreeSet<SubtaskId> {
        &self.finished
    }

    /// Handles one event.
    pub fn on_event(&mut self, event: Event) -> Vec<Command> {
        let mut commands = Vec::new();
        match event {
            Event::Tick { now } => {
                self.check_timeout(now, &mut commands);
                self.maybe_start(now, &mut commands);
            }
            Event::SavepointRequested { now, stop, request } => {
                if self
                    .final_checkpoint
                    .is_some_and(|f| self.in_flight() != Some(f))
                {
                    commands.push(Command::SavepointFailed {
                        requests: vec![request],
                        reason: "the job finished its input before the savepoint was taken"
                            .to_string(),
                    });
                } else {
                    self.savepoint_requests.push((request, stop));
                    self.maybe_start(now, &mut commands);
                }
            }
            Event::Acknowledged { now, ack, upload } => {
                match &mut self.pending {
                    Some(p)
                        if p.barrier.id == ack.checkpoint
                            && !p.writing_metadata
                            && self.subtasks.contains(&ack.id) =>
                    {
                        p.acknowledge(ack, upload);
                        if p.acknowledged_by_all(&self.subtasks) {
                            p.writing_metadata = true;
                            commands.push(Command::WriteMetadata {
                                barrier: p.barrier,
                                states: p.take_states(),
                            });
                        }
                    }
                    _ => {}
                }
                let _ = now;
            }
            Event::Declined {
                now,
                checkpoint,
                reason,
            } => {
                // Once every subtask acknowledged, the metadata write decides: a late
                // decline must not abort (and delete) a checkpoint that may be
                // complete already.
                let deciding = self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.barrier.id == checkpoint && !p.writing_metadata);
                if deciding {
                    self.fail_pending(now, reason, &mut commands);
                }
            }
            Event::MetadataFailed {
                now,
                checkpoint,
                reason,
            } => {
                if self.in_flight() == Some(checkpoint) {
                    self.fail_pending(now, reason, &mut commands);
                }
            }
            Event::SubtaskFinished { now, subtask } => {
                if let Some(p) = &self.pending {
                    if !p.writing_metadata
                        && !p.acks.contains_key(&subtask)
                        && self.subtasks.contains(&subtask)
                    {
                        commands.push(Command::InjectBarrierOn {
                            barrier: p.barrier,
                            subtask,
                        });
                    }
                }
                self.finished.insert(subtask);
                self.maybe_start(now, &mut commands);
            }
            Event::MetadataTaken { now, checkpoint } => {
                if self.in_flight() == Some(checkpoint) {
                    let reason = format!(
                        "another incarnation of the job wrote the metadata of checkpoint {checkpoint} first"
                    );
                    let abandon = Command::Abandon {
                        checkpoint,
                        reason: reason.clone(),
                    };
                    self.fail_pending(now, reason, &mut commands);
                    // Only what this incarnation wrote may be deleted: nothing here.
                    for command in &mut commands {
                        if matches!(command, Command::Abort { checkpoint: c, .. } if *c == checkpoint)
                        {
                            *command = abandon.clone();
                        }
                    }
                }
            }
            Event::MetadataWritten {
                now,
                checkpoint,
                location,
            } => {
                if let Some(mut p) = self.pending.take_if(|p| p.barrier.id == checkpoint) {
                    self.last_end = Some(now);
                    self.consecutive_failures = 0;
                    self.last_completed = Some(checkpoint);
                    let (barrier, requests) = (p.barrier, std::mem::take(&mut p.requests));
                    commands.push(Command::NotifyComplete(checkpoint));
                    commands.push(Command::RecordStats(p.into_stats(now)));
                    if !barrier.is_savepoint() {
                        commands.push(Command::Retain {
                            keep: self.config.retention,
                        });
                    }
                    if !requests.is_empty() {
                        commands.push(Command::SavepointDone {
                            requests,
                            checkpoint,
                            location: location.clone(),
                        });
                    }
                    if self.final_checkpoint == Some(checkpoint) {
                        if !self.savepoint_requests.is_empty() {
                            commands.push(Command::SavepointFailed {
                                requests: self.savepoint_requests.drain(..).map(|r| r.0).collect(),
                                reason: "the job finished its input before the savepoint was taken"
                                    .to_string(),
                            });
                        }
                        commands.push(Command::FinishJob(checkpoint));
                    } else if barrier.stops_job() {
                        commands.push(Command::StopJob {
                            checkpoint,
                            location,
                        });
                    }
                }
            }
        }
        commands
    }

    fn check_timeout(&mut self, now: MonotonicMs, commands: &mut Vec<Command>) {
        // Not while its metadata is being written: an abort would delete the
        // `_metadata` that write may still create (a complete checkpoint without files).
        let timed_out = self.pending.as_ref().is_some_and(|p| {
            !p.writing_metadata
                && now.saturating_sub(p.started) >= self.config.timeout.as_millis() as u64
        });
        if timed_out {
            let timeout = self.config.timeout;
            self.fail_pending(
                now,
                format!("not complete within the timeout of {timeout:?}"),
                commands,
            );
        }
    }

    fn fail_pending(&mut self, now: MonotonicMs, reason: String, commands: &mut Vec<Command>) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if self.final_checkpoint == Some(pending.barrier.id) {
            // The next tick takes another final checkpoint.
            self.final_checkpoint = None;
        }
        self.last_end = Some(now);
        commands.push(Command::Abort {
            checkpoint: pending.barrier.id,
            reason: reason.clone(),
        });
        if !pending.requests.is_empty() {
            commands.push(Command::SavepointFailed {
                requests: pending.requests,
                reason: reason.clone(),
            });
        }
        if pending.barrier.stops_job() {
            // The sources stopped at the barrier and emit nothing more: the job fails
            // over, and the restart resumes from the newest checkpoint.
            commands.push(Command::FailJob {
                reason: format!(
                    "stop-with-savepoint {} failed: {reason}",
                    pending.barrier.id
                ),
            });
            return;
        }
        if pending.barrier.is_savepoint() {
            // A failed savepoint does not count against periodic checkpoints.
            return;
        }
        self.consecutive_failures += 1;
        if self.consecutive_failures > self.config.tolerable_failures {
            commands.push(Command::FailJob {
                reason: format!(
                    "{} consecutive checkpoints failed (tolerated: {}); last: {reason}",
                    self.consecutive_failures, self.config.tolerable_failures
                ),
            });
        }
    }

    fn maybe_start(&mut self, now: MonotonicMs, commands: &mut Vec<Command>) {
        if self.pending.is_some() || self.subtasks.is_empty() {
            return;
        }
        let savepoint = !self.savepoint_requests.is_empty();
        let finishing = self.final_checkpoint.is_none() && self.all_finished();
        if !savepoint && !finishing {
            let interval_due = self
                .last_start
                .is_none_or(|t| now.saturating_sub(t) >= self.config.interval.as_millis() as u64);
            let pause_done = self
                .last_end
                .is_none_or(|t| now.saturating_sub(t) >= self.config.min_pause.as_millis() as u64);
            let first_due =
                self.last_start.is_some() || now >= self.config.interval.as_millis() as u64;
            if !(interval_due && pause_done && first_due) {
                return;
            }
        }
        let id = self.next_id;
        self.next_id = id.next();
        let requests: Vec<(u64, bool)> = std::mem::take(&mut self.savepoint_requests);
        let barrier = if savepoint {
            let stop = requests.iter().any(|&(_, stop)| stop) && !finishing;
            Barrier::savepoint(id, stop, self.wall_clock_ms)
        } else {
            Barrier::checkpoint(id, self.wall_clock_ms)
        };
        if finishing {
            self.final_checkpoint = Some(id);
        }
        self.last_start = Some(now);
        self.pending = Some(InFlight::new(
            barrier,
            now,
            requests.into_iter().map(|(request, _)| request).collect(),
        ));
        commands.push(Command::InjectBarrier(barrier));
    }
}

#[cfg(test)]
mod tests;

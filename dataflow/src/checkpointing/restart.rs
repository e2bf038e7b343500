//! The restart loop: the attempts of a job, one after another until it ends, and
//! what each restores: the run's origin ([`Origin`]: nothing, the latest checkpoint,
//! a savepoint) for the first, the newest complete checkpoint of this run's timeline
//! for a restart, refusing to fall back past a complete checkpoint that cannot be
//! restored unless `fallback_past_corrupt` allows it. Between attempts it cleans up
//! what incomplete checkpoints left.

use super::cluster::{ClusterLink, RemoteAttempt, RestoreFrom};
use super::driver::Driver;
use super::executor::{poll_control, Attempt, Ended};
use super::{JobStatus, ResumeFrom, RunSummary};
use crate::{DataflowError, JobBuilder, RestoreState, Result};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_checkpoint::metadata::CheckpointMetadata;
use weir_checkpoint::native;
use weir_checkpoint::restore::{load_checkpoint, NativeRestore, Reader};
use weir_checkpoint::{
    CheckpointId, CheckpointStorage, Leftovers, OperatorUid, RestoreEvent, SkippedCheckpoint,
};
use weir_state::{KeyGroupRange, MaxParallelism};

/// The restored state and the checkpoint it came from.
type Loaded = (Option<RestoreState>, Option<CheckpointId>);

/// Where a run starts: a resolved [`ResumeFrom`]. After the first attempt a
/// `LatestCheckpoint` becomes the `Checkpoint` it found (or `Nothing`).
#[derive(Clone, Debug)]
enum Origin {
    Nothing,
    LatestCheckpoint,
    Checkpoint(CheckpointId),
    Savepoint(String),
}

impl From<&ResumeFrom> for Origin {
    fn from(resume: &ResumeFrom) -> Self {
        match resume {
            ResumeFrom::Nothing => Self::Nothing,
            ResumeFrom::LatestCheckpoint => Self::LatestCheckpoint,
            ResumeFrom::Savepoint(url) => Self::Savepoint(url.clone()),
        }
    }
}

/// Why a resume does not fall back past `newest`, a complete checkpoint that cannot
/// be restored: its output may be committed, and a restore from `older` (or from
/// nothing) would write that output again.
fn refuse_fallback(newest: &SkippedCheckpoint, older: Option<CheckpointId>) -> String {
    let fallback = match older {
        Some(older) => format!("checkpoint {older}"),
        None => "the start (no older checkpoint can be restored)".to_string(),
    };
    format!(
        "the newest complete checkpoint, {}, cannot be restored ({}: {}); the sinks may \
         already have committed the output it covers, so resuming from {fallback} would \
         write that output again. Repair or remove checkpoint {}, or resume with \
         --fallback-past-corrupt to accept the duplicates",
        newest.checkpoint, newest.object, newest.reason, newest.checkpoint
    )
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the temporary copies a restore left.
fn remove_scratch(native: &NativeRestore) {
    if native.scratch.exists() {
        if let Err(e) = std::fs::remove_dir_all(&native.scratch) {
            tracing::warn!("cannot remove {}: {e}", native.scratch.display());
        }
    }
}

impl Driver {
    /// Removes what failed, aborted or interrupted checkpoints left behind: their
    /// directories and the shared files no complete checkpoint refers to. Only while
    /// no checkpoint is in flight.
    fn collect_garbage(&self) {
        let job = &self.config.name;
        let retention: Vec<_> =
            std::mem::take(&mut *self.retention.lock().unwrap_or_else(|p| p.into_inner()));
        let attempt_io: Vec<_> =
            std::mem::take(&mut *self.attempt_io.lock().unwrap_or_else(|p| p.into_inner()));
        let result = self.runtime.block_on(async {
            // The failed attempt's uploads and metadata writes finish (or fail) first:
            // a metadata write landing after the clean-up below would make a
            // checkpoint whose state was just deleted look complete.
            for task in attempt_io.into_iter().chain(retention) {
                let _ = task.await;
            }
            let leftovers = self.leftovers();
            self.storage.cleanup_incomplete(job, &leftovers).await?;
            self.storage
                .delete_unreferenced_shared(job, &leftovers)
                .await
        });
        if let Err(e) = result {
            tracing::warn!("could not clean up after incomplete checkpoints: {e}");
        }
    }

    /// What the clean-up may delete: what this process's attempts wrote, and what
    /// other incarnations wrote once it is older than twice the checkpoint timeout
    /// and a minute (an earlier incarnation still running completes no checkpoint
    /// with older files).
    fn leftovers(&self) -> Leftovers {
        Leftovers {
            own: format!("{:016x}", self.nonce),
            grace: self.checkpointing.coordinator.timeout * 2 + Duration::from_secs(60),
        }
    }

    pub(super) fn run(self) -> Result<RunSummary> {
        let poller = self.runtime.spawn(poll_control(
            self.storage.clone(),
            self.config.name.clone(),
            self.requests_tx.clone(),
            self.replies.clone(),
        ));
        let result = self.run_attempts();
        poller.abort();
        // Requests nobody will serve now are answered as failed.
        while self.requests.try_recv().is_ok() {}
        let replies: Vec<_> =
            std::mem::take(&mut *self.replies.lock().unwrap_or_else(|p| p.into_inner()));
        self.runtime.block_on(async {
            for reply in replies {
                let _ = tokio::time::timeout(Duration::from_secs(10), reply).await;
            }
        });
        result
    }

    fn run_attempts(&self) -> Result<RunSummary> {
        let started = Instant::now();
        self.status(JobStatus::Created);
        self.collect_garbage();
        let mut origin = Origin::from(&self.checkpointing.resume);
        let mut restarts = 0;
        loop {
            if let Some((link, spec)) = &self.cluster {
                let (from, restored_from) = self.resolve_for_workers(&mut origin, restarts == 0)?;
                let next_id = restored_from.map_or(CheckpointId::new(1), |id| id.next());
                let next_id = self.next_checkpoint_id().max(next_id);
                let ended = self.remote_attempt(link, spec, from, next_id);
                match self.after_attempt(ended, &mut restarts, restored_from, started)? {
                    Some(summary) => return Ok(summary),
                    None => continue,
                }
            }
            let (restore, restored_from) = if restarts == 0 {
                let loaded = self.load(&origin)?;
                // What this run started from, exactly, for restarts before its own
                // first checkpoint: not "the latest" again, which may be newer by then.
                if let (Origin::LatestCheckpoint, Some(id)) = (&origin, loaded.1) {
                    origin = Origin::Checkpoint(id);
                } else if matches!(origin, Origin::LatestCheckpoint) {
                    origin = Origin::Nothing;
                }
                loaded
            } else {
                self.load_restart(&origin)?
            };
            let next_id = restored_from.map_or(CheckpointId::new(1), |id| id.next());
            let next_id = self.next_checkpoint_id().max(next_id);
            let ended = self.attempt(restore, next_id);
            if let Some(summary) =
                self.after_attempt(ended, &mut restarts, restored_from, started)?
            {
                return Ok(summary);
            }
        }
    }

    /// After an attempt: the run's summary when it ended, `None` after a failure it
    /// restarts from (having waited the restart delay).
    fn after_attempt(
        &self,
        ended: Ended,
        restarts: &mut u32,
        restored_from: Option<CheckpointId>,
        started: Instant,
    ) -> Result<Option<RunSummary>> {
        {
            self.collect_garbage();
            let (status, savepoint, metrics) = match ended {
                Ended::Finished(result) => (JobStatus::Finished, None, result.metrics),
                Ended::Cancelled(metrics) => (JobStatus::Cancelled, None, metrics),
                Ended::Suspended(location, metrics) => {
                    (JobStatus::Suspended, Some(location), metrics)
                }
                Ended::Failed(error) => {
                    self.status(JobStatus::Failing);
                    if !error.is_recoverable() {
                        tracing::info!(job = %self.config.name, "job failed ({error}); a restart cannot help");
                        return Err(error);
                    }
                    *restarts += 1;
                    self.live.restarted();
                    let Some(delay) = self.checkpointing.restart.delay(*restarts) else {
                        return Err(error);
                    };
                    tracing::warn!(
                        "job `{}` failed ({error}); restart {restarts} in {delay:?}",
                        self.config.name
                    );
                    self.status(JobStatus::Restarting);
                    std::thread::sleep(delay);
                    return Ok(None);
                }
            };
            self.status(status);
            Ok(Some(self.summary(
                status,
                *restarts,
                restored_from,
                savepoint,
                metrics,
                started,
            )))
        }
    }

    fn summary(
        &self,
        status: JobStatus,
        restarts: u32,
        restored_from: Option<CheckpointId>,
        savepoint: Option<String>,
        metrics: Vec<crate::SubtaskMetrics>,
        started: Instant,
    ) -> RunSummary {
        RunSummary {
            status,
            restarts,
            restored_from,
            savepoint,
            checkpoints: self.history.snapshot(),
            failed_checkpoints: self.live.failed_checkpoints(),
            passed_over_corrupt: self
                .passed_over
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            metrics,
            elapsed: started.elapsed(),
        }
    }

    /// One past the newest checkpoint id ever used under the job directory, so a new
    /// attempt never reuses an id whose files (or metadata) may still exist.
    fn next_checkpoint_id(&self) -> CheckpointId {
        self.runtime
            .block_on(self.storage.list_checkpoints(&self.config.name))
            .ok()
            .and_then(|ids| ids.into_iter().max())
            .map_or(CheckpointId::new(1), |id| id.next())
    }

    /// The state to restart from after a failure: the newest restorable checkpoint
    /// of this run's timeline, or else exactly what the run started from.
    fn load_restart(&self, origin: &Origin) -> Result<Loaded> {
        let scan = self
            .runtime
            .block_on(
                self.storage
                    .latest_valid_of(&self.config.name, Some(self.timeline)),
            )
            .map_err(|e| DataflowError::checkpoint_caused("reading the checkpoints", e))?;
        self.check_passed_over(&scan)?;
        match scan.latest {
            Some(metadata) => self.load_checkpoint(metadata),
            None => self.load(origin),
        }
    }

    /// Refuses to pass over a complete checkpoint that cannot be restored unless
    /// `fallback_past_corrupt` allows it (then records it for the summary).
    fn check_passed_over(&self, scan: &weir_checkpoint::RecoveryScan) -> Result<()> {
        let Some(newest) = scan.skipped.first() else {
            return Ok(());
        };
        let older = scan.latest.as_ref().map(|m| m.checkpoint);
        if !self.checkpointing.fallback_past_corrupt {
            return Err(DataflowError::checkpoint(
                format!("resuming job `{}`", self.config.name),
                refuse_fallback(newest, older),
            ));
        }
        for skipped in &scan.skipped {
            tracing::warn!(
                "passing over checkpoint {} of job `{}` (--fallback-past-corrupt): {}: {}; \
                 output it committed will be written again",
                skipped.checkpoint,
                self.config.name,
                skipped.object,
                skipped.reason
            );
        }
        self.passed_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(scan.skipped.iter().map(|s| s.checkpoint));
        Ok(())
    }

    fn load_checkpoint(&self, metadata: CheckpointMetadata) -> Result<Loaded> {
        let metadata = self.only_local(metadata);
        let listener = self.listener.as_ref();
        let reader = Reader::Checkpoint(&self.storage);
        let native = self.native_restore();
        let on_restore = |event: &RestoreEvent| listener.on_restore(&metadata.job, event);
        let state =
            self.runtime
                .block_on(load_checkpoint(&reader, &metadata, &on_restore, &native));
        remove_scratch(&native);
        let state = state.map_err(|e| {
            DataflowError::checkpoint_caused(
                format!("restoring checkpoint {}", metadata.checkpoint),
                e,
            )
        })?;
        Ok((Some(state), Some(metadata.checkpoint)))
    }

    fn load(&self, origin: &Origin) -> Result<Loaded> {
        let listener = self.listener.as_ref();
        match origin {
            Origin::Nothing => {
                self.forget_local_copies();
                Ok((None, None))
            }
            Origin::LatestCheckpoint => {
                let scan = self
                    .runtime
                    .block_on(self.storage.latest_valid(&self.config.name))
                    .map_err(|e| DataflowError::checkpoint_caused("reading the checkpoints", e))?;
                self.check_passed_over(&scan)?;
                match scan.latest {
                    Some(metadata) => self.load_checkpoint(metadata),
                    None => {
                        self.forget_local_copies();
                        Ok((None, None))
                    }
                }
            }
            Origin::Checkpoint(id) => {
                let metadata = self
                    .runtime
                    .block_on(self.storage.read_metadata(&self.config.name, *id))
                    .map_err(|e| {
                        DataflowError::checkpoint_caused(
                            format!("reading checkpoint {id}, which this run started from"),
                            e,
                        )
                    })?;
                self.load_checkpoint(metadata)
            }
            Origin::Savepoint(url) => {
                let savepoint = self.read_savepoint(url)?;
                let metadata = self.only_local(savepoint.metadata().clone());
                let reader = Reader::Savepoint(&savepoint);
                let native = self.native_restore();
                let on_restore = |event: &RestoreEvent| listener.on_restore(&metadata.job, event);
                let state = self.runtime.block_on(load_checkpoint(
                    &reader,
                    &metadata,
                    &on_restore,
                    &native,
                ));
                remove_scratch(&native);
                let state = state.map_err(|e| {
                    DataflowError::checkpoint_caused(format!("restoring savepoint `{url}`"), e)
                })?;
                Ok((Some(state), Some(metadata.checkpoint)))
            }
        }
    }

    /// On a worker, `metadata` with only the keyed state its own subtasks need: the
    /// keyed and native handles of key groups that no subtask of the new job placed
    /// on this worker owns are dropped, so that each worker reads its share of the
    /// state instead of all of it. Operator state stays whole (it is small, and
    /// sources redistribute theirs), as do operators the new job lacks (their state
    /// is checked afterwards). In one process, `metadata` as it is.
    fn only_local(&self, mut metadata: CheckpointMetadata) -> CheckpointMetadata {
        let (Some(placement), Ok(max)) = (
            &self.config.placement,
            MaxParallelism::new(self.config.max_parallelism),
        ) else {
            return metadata;
        };
        let me = placement.network.id();
        let parallelism = self.operator_parallelism();
        for (uid, operator) in metadata.operators.iter_mut() {
            let Some(&new) = parallelism.get(uid.as_str()) else {
                continue;
            };
            let local: Vec<KeyGroupRange> = (0..new)
                .filter(|&subtask| placement.worker_of(subtask) == me)
                .map(|subtask| KeyGroupRange::for_subtask(max, new, subtask))
                .collect();
            let needed = |range: &KeyGroupRange| local.iter().any(|l| l.overlaps(range));
            for state in operator.subtasks.values_mut() {
                state.keyed.retain(|keyed| needed(&keyed.key_groups));
                state.native.retain(|native| needed(&native.key_groups));
            }
        }
        metadata
    }

    /// The parallelism of each operator of the job this driver runs, by uid.
    fn operator_parallelism(&self) -> std::collections::BTreeMap<String, usize> {
        let job = JobBuilder::new(self.config.clone());
        (self.build)(&job);
        job.operator_parallelism()
    }

    /// The savepoint at `url`.
    fn read_savepoint(&self, url: &str) -> Result<weir_checkpoint::Savepoint> {
        self.runtime
            .block_on(CheckpointStorage::read_savepoint(
                &self.checkpointing.savepoints.with_url(url.to_string()),
            ))
            .map_err(|e| DataflowError::checkpoint_caused(format!("savepoint `{url}`"), e))
    }

    /// Removes every local copy of a native checkpoint of the job: a fresh start
    /// must not find copies of an earlier run under checkpoint ids it reuses.
    fn forget_local_copies(&self) {
        if let Some(dir) = self.rocksdb_job_dir() {
            native::prune_local(&dir, CheckpointId::new(u64::MAX));
        }
    }

    /// Where native RocksDB checkpoints are read back: local copies under the job's
    /// RocksDB directory, temporary copies beside them (or, on the heap backend, in
    /// the system's temporary directory).
    fn native_restore(&self) -> NativeRestore {
        let local_root = self.rocksdb_job_dir();
        let scratch_name = format!("restore-{}-{:016x}", std::process::id(), self.nonce);
        let scratch = match &local_root {
            Some(root) => root.join(format!(".{scratch_name}")),
            None => std::env::temp_dir().join(format!("weir-{scratch_name}")),
        };
        let new_job = local_root.is_some().then(|| {
            let max = MaxParallelism::new(self.config.max_parallelism).unwrap_or_default();
            (max, self.operator_parallelism())
        });
        NativeRestore {
            local_root,
            scratch,
            new_job,
            standby_root: self.standby_root(),
        }
    }

    fn attempt(&self, restore: Option<RestoreState>, next_id: CheckpointId) -> Ended {
        if let Some(restore) = &restore {
            if let Err(e) = self.check_restore_fits(restore) {
                return Ended::Failed(e);
            }
        }
        let handle = match self.spawn_attempt(restore) {
            Ok(handle) => handle,
            Err(e) => return Ended::Failed(e),
        };
        self.live
            .attempt_started(handle.graph(), handle.metrics_view(), handle.query_port());
        self.status(JobStatus::Running);
        self.drive(Attempt::Local(handle), next_id)
    }

    /// Spawns the job (this process's subtasks of it) restoring `restore`.
    pub(super) fn spawn_attempt(&self, restore: Option<RestoreState>) -> Result<crate::JobHandle> {
        let mut config = self.config.clone();
        config.checkpointing = true;
        config.checkpoint_timeout = Some(self.checkpointing.coordinator.timeout);
        config.timeline = self.timeline;
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.uploads.clear();
        self.native_uploads.clear();
        for (uid, subtasks) in restore.iter().flat_map(|r| &r.opened) {
            let uid = OperatorUid::new(uid.as_str());
            for (&subtask, opened) in subtasks {
                self.native_uploads.opened(&uid, subtask, opened);
            }
        }
        config.restore = restore;
        let job = JobBuilder::new(config);
        (self.build)(&job);
        for uid in job.operators_without_uid() {
            tracing::warn!("operator `{uid}` has no uid; its state is keyed by its graph position: set one with .uid(...)");
        }
        job.spawn()
    }

    /// What a worker restores its part of an attempt from.
    pub(super) fn load_for_worker(&self, from: &RestoreFrom) -> Result<Option<RestoreState>> {
        let origin = match from {
            RestoreFrom::Nothing => Origin::Nothing,
            RestoreFrom::Checkpoint(id) => Origin::Checkpoint(CheckpointId::new(*id)),
            RestoreFrom::Savepoint(url) => Origin::Savepoint(url.clone()),
        };
        let (restore, _) = self.load(&origin)?;
        if let Some(restore) = &restore {
            self.check_restore_fits(restore)?;
        }
        Ok(restore)
    }

    /// One attempt on the workers: they restore `from` themselves.
    fn remote_attempt(
        &self,
        link: &Arc<dyn ClusterLink>,
        spec: &str,
        from: RestoreFrom,
        next_id: CheckpointId,
    ) -> Ended {
        let attempt = self.nonce.wrapping_add(
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        );
        let previous = lock(&self.placement).clone();
        let started = RemoteAttempt::start(
            link.clone(),
            &self.config.name,
            spec,
            attempt,
            self.timeline,
            from,
            previous.as_deref(),
        );
        match started {
            Ok(remote) => {
                *lock(&self.placement) = Some(remote.slots.clone());
                self.live.set_restore(remote.restored.clone());
                self.live
                    .attempt_started_remote(remote.graph.clone(), remote.counters.clone());
                self.status(JobStatus::Running);
                self.drive(Attempt::Remote(remote), next_id)
            }
            Err(e) => Ended::Failed(e),
        }
    }

    /// What the workers of the next attempt restore, without loading it here: the
    /// run's origin for its first attempt, else the newest complete checkpoint of
    /// this run's timeline (or the origin when it has none yet).
    fn resolve_for_workers(
        &self,
        origin: &mut Origin,
        first: bool,
    ) -> Result<(RestoreFrom, Option<CheckpointId>)> {
        let name = &self.config.name;
        let scan_error = |e| DataflowError::checkpoint_caused("reading the checkpoints", e);
        if !first {
            let scan = self
                .runtime
                .block_on(self.storage.latest_valid_of(name, Some(self.timeline)))
                .map_err(scan_error)?;
            // As a restart in one process (`load_restart`): never past a corrupt
            // complete checkpoint, whose output the sinks may have committed.
            self.check_passed_over(&scan)?;
            if let Some(metadata) = scan.latest {
                return Ok((
                    RestoreFrom::Checkpoint(metadata.checkpoint.get()),
                    Some(metadata.checkpoint),
                ));
            }
        }
        match origin.clone() {
            Origin::Nothing => Ok((RestoreFrom::Nothing, None)),
            Origin::LatestCheckpoint => {
                let scan = self
                    .runtime
                    .block_on(self.storage.latest_valid(name))
                    .map_err(scan_error)?;
                self.check_passed_over(&scan)?;
                Ok(match scan.latest {
                    Some(metadata) => {
                        *origin = Origin::Checkpoint(metadata.checkpoint);
                        (
                            RestoreFrom::Checkpoint(metadata.checkpoint.get()),
                            Some(metadata.checkpoint),
                        )
                    }
                    None => {
                        *origin = Origin::Nothing;
                        (RestoreFrom::Nothing, None)
                    }
                })
            }
            Origin::Checkpoint(id) => Ok((RestoreFrom::Checkpoint(id.get()), Some(id))),
            Origin::Savepoint(url) => {
                let savepoint = self.read_savepoint(&url)?;
                Ok((
                    RestoreFrom::Savepoint(url),
                    Some(savepoint.metadata().checkpoint),
                ))
            }
        }
    }

    fn check_restore_fits(&self, restore: &RestoreState) -> Result<()> {
        let job = JobBuilder::new(self.config.clone());
        (self.build)(&job);
        let uids: BTreeSet<String> = job.operator_uids().into_iter().collect();
        // Operators that held no state (a map, a conversion) may come and go: as in
        // Flink, only state that would be dropped needs the user's consent.
        let missing: Vec<&String> = restore
            .operators
            .iter()
            .filter(|(uid, subtasks)| {
                !uids.contains(*uid)
                    && (subtasks.iter().any(|s| !s.is_empty()) || restore.opened.contains_key(*uid))
            })
            .map(|(uid, _)| uid)
            .collect();
        if !missing.is_empty() && !self.checkpointing.allow_non_restored_state {
            return Err(DataflowError::invalid(
                &self.config.name,
                format!(
                    "the restored state has operators the job lacks: {}; pass --allow-non-restored-state to drop their state",
                    missing.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(())
    }
}

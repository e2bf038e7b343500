//! An exactly-once sink to local files: each epoch's records become visible only
//! when the checkpoint that covers them is complete.
//!
//! ```text
//! records of epoch n ──▶ memory (part of checkpoint n's operator state)
//! checkpoint n complete ──▶ <dir>/.tmp-part-<subtask>-<n>-<timeline> ──fsync, rename──▶ <dir>/part-<subtask>-<n>-<timeline>.jsonl
//! restore ──▶ pending epochs of the restored checkpoint are written again unless their file exists
//! ```
//!
//! The file name depends only on the writing subtask, the checkpoint and the run
//! (timeline) that wrote it, so a commit repeated after a crash finds its file and is
//! skipped: no record is lost or written twice. Another run whose checkpoint ids
//! repeat (a savepoint restored into a fresh checkpoint directory, or under another
//! job name) writes other names, so its output is never taken for already committed.
//! Pending epochs are committed under the timeline they were written in, which the
//! state records (state written before timelines has none: the names then have no
//! timeline part, as they had). After rescaling, the pending epochs of every previous
//! subtask are committed under that subtask's name by the new subtask 0.

use crate::failpoint::{CommitFailpoint, CommitStep};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use weir_dataflow::state::{decode, encode};
use weir_dataflow::{
    CheckpointId, DataflowError, OperatorContext, Result, Sink, SnapshotContext, SubtaskInfo,
};

const PENDING: &str = "epoch-file-pending";
/// The timeline the pending epochs were written in.
const TIMELINE: &str = "epoch-file-timeline";

/// Pending epochs of one subtask: checkpoint id → records.
type Pending<T> = BTreeMap<u64, Vec<T>>;

/// Writes JSON lines per completed checkpoint; see the module documentation.
pub struct EpochFileSink<T> {
    dir: PathBuf,
    subtask: usize,
    name: String,
    current: Vec<T>,
    pending: Pending<T>,
    /// The run this instance writes in ([`OperatorContext::timeline`]).
    timeline: u64,
    failpoint: Option<CommitFailpoint>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> EpochFileSink<T> {
    /// A sink factory writing into `dir` (created if missing).
    pub fn factory(
        dir: impl Into<PathBuf>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        Self::factory_with_failpoint(dir, None)
    }

    /// [`Self::factory`], crashing the process at `failpoint` of a commit (tests).
    pub fn factory_with_failpoint(
        dir: impl Into<PathBuf>,
        failpoint: Option<CommitFailpoint>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        let dir = dir.into();
        move |info: &SubtaskInfo| Self {
            dir: dir.clone(),
            subtask: info.index,
            name: info.operator.clone(),
            current: Vec::new(),
            pending: BTreeMap::new(),
            timeline: 0,
            failpoint: failpoint.clone(),
        }
    }

    fn io(&self, path: &Path, e: std::io::Error) -> DataflowError {
        DataflowError::io(&self.name, path.display().to_string(), e)
    }

    /// Writes every pending epoch up to `up_to` of subtask `subtask`, written in
    /// `timeline`, skipping those whose file exists.
    fn commit(
        &self,
        subtask: usize,
        timeline: u64,
        pending: &mut Pending<T>,
        up_to: u64,
    ) -> Result<()> {
        let done: Vec<u64> = pending.range(..=up_to).map(|(k, _)| *k).collect();
        let mut written = 0;
        for epoch in done {
            let records = pending.remove(&epoch).unwrap_or_default();
            let stem = match timeline {
                0 => format!("part-{subtask}-{epoch}"),
                _ => format!("part-{subtask}-{epoch}-{timeline:016x}"),
            };
            let path = self.dir.join(format!("{stem}.jsonl"));
            if path.exists() || records.is_empty() {
                continue;
            }
            if written == 0 {
                CommitFailpoint::reached(
                    self.failpoint.as_ref(),
                    CommitStep::BeforeCommit,
                    &self.name,
                );
            }
            let tmp = self.dir.join(format!(".tmp-{stem}"));
            let mut text = Vec::new();
            for record in &records {
                serde_json::to_writer(&mut text, record).map_err(|e| {
                    DataflowError::operator_caused(
                        &self.name,
                        self.subtask,
                        "a record is not JSON",
                        e,
                    )
                })?;
                text.push(b'\n');
            }
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&text)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| self.io(&path, e))?;
            written += 1;
            if written == 1 {
                CommitFailpoint::reached(
                    self.failpoint.as_ref(),
                    CommitStep::MidCommit,
                    &self.name,
                );
            }
        }
        if written > 0 {
            CommitFailpoint::reached(self.failpoint.as_ref(), CommitStep::AfterCommit, &self.name);
        }
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Sink for EpochFileSink<T> {
    type In = T;

    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(&self.dir.clone(), e))?;
        self.timeline = cx.timeline;
        // Epochs in a restored checkpoint belong to a completed checkpoint: commit
        // them now under the name of the subtask and the timeline that wrote them.
        let pending_of = |state: &BTreeMap<String, Vec<u8>>| -> Result<Option<(u64, Pending<T>)>> {
            let Some(bytes) = state.get(PENDING) else {
                return Ok(None);
            };
            let timeline = match state.get(TIMELINE) {
                Some(bytes) => decode(TIMELINE, bytes)?,
                None => 0,
            };
            Ok(Some((timeline, decode(PENDING, bytes)?)))
        };
        let mut restored: Vec<(usize, u64, Pending<T>)> = Vec::new();
        if let Some((timeline, pending)) = pending_of(&cx.restored_operator)? {
            restored.push((self.subtask, timeline, pending));
        }
        if self.subtask == 0 {
            for (old, state) in cx.restored_operator_all.iter().enumerate() {
                if let Some((timeline, pending)) = pending_of(state)? {
                    restored.push((old, timeline, pending));
                }
            }
        }
        for (old, timeline, mut pending) in restored {
            self.commit(old, timeline, &mut pending, u64::MAX)?;
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.current.append(batch);
        Ok(())
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        let epoch = std::mem::take(&mut self.current);
        self.pending.insert(cx.checkpoint.get(), epoch);
        cx.put_operator(PENDING, encode(PENDING, &self.pending)?);
        cx.put_operator(TIMELINE, encode(TIMELINE, &self.timeline)?);
        Ok(())
    }

    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.commit(self.subtask, self.timeline, &mut pending, id.get());
        self.pending = pending;
        result
    }
}

/// Reads every committed record of an [`EpochFileSink`] directory.
///
/// # Errors
/// The directory or a file cannot be read, or a line is not a `T`.
pub fn read_committed<T: DeserializeOwned>(dir: &Path) -> std::io::Result<Vec<T>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !(name.starts_with("part-") && name.ends_with(".jsonl")) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            out.push(serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?);
        }
    }
    Ok(out)
}

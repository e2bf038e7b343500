//! The operator contract: a few synchronous methods the runtime calls. Operators
//! never see channels, barriers or alignment.

use crate::keyed_state::{KeyedStateHandle, KeyedStateStore, StateRegistry};
use crate::metrics::OperatorMetrics;
use crate::{Result, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_checkpoint::{CheckpointId, OperatorSnapshot, OperatorUid, SubtaskAck};
use weir_state::{
    FrozenKeyed, KeyGroup, KeyGroupRange, KeyedBackend, KeyedSnapshot, MaxParallelism,
};

/// Where an operator instance runs: its subtask and the key groups it owns.
#[derive(Clone, Debug)]
pub struct SubtaskInfo {
    /// The operator's name (for errors and metrics).
    pub operator: String,
    /// The operator's uid (state key in checkpoints).
    pub uid: String,
    /// This subtask's index, `0..parallelism`.
    pub index: usize,
    /// The operator's parallelism.
    pub parallelism: usize,
    /// The job's max parallelism (number of key groups).
    pub max_parallelism: MaxParallelism,
    /// The key groups this subtask owns.
    pub key_groups: KeyGroupRange,
}

/// The prefix of the operator states checkpointed once for all subtasks
/// ([`SnapshotContext::put_once`]).
pub(crate) const ONCE_PREFIX: &str = "once:";

/// What an operator gets when it opens: where it runs, its restored state and its
/// metrics.
pub struct OperatorContext {
    /// Where this instance runs.
    pub subtask: SubtaskInfo,
    /// Keyed state restored for the key groups this subtask owns (empty on a fresh
    /// start), by key group then state name. When the subtask's RocksDB instance is
    /// opened from a native checkpoint of its key groups, a table of it comes as one
    /// chunk with its header and no entries (the entries are in the instance; a
    /// table made in the backend with the same name and namespace finds them).
    pub restored_keyed: BTreeMap<u16, BTreeMap<String, Vec<u8>>>,
    /// Operator state restored for this subtask (empty on a fresh start). After
    /// rescaling, the operator states of all previous subtasks are offered in
    /// `restored_operator_all`.
    pub restored_operator: BTreeMap<String, Vec<u8>>,
    /// The operator states of every previous subtask, when the parallelism changed.
    pub restored_operator_all: Vec<BTreeMap<String, Vec<u8>>>,
    /// Operator state checkpointed once for all subtasks
    /// ([`SnapshotContext::put_once`]), restored on every subtask at any
    /// parallelism.
    pub restored_once: BTreeMap<String, Vec<u8>>,
    /// Whether checkpointing is on.
    pub checkpointing: bool,
    /// The job's name.
    pub job: String,
    /// How long a checkpoint may take, when checkpointing is on.
    pub checkpoint_timeout: Option<std::time::Duration>,
    /// The run (timeline) of the job ([`crate::JobConfig::timeline`]).
    pub timeline: u64,
    /// This instance's counters.
    pub metrics: Arc<OperatorMetrics>,
    /// Where this instance keeps keyed state. Ask for states with
    /// [`OperatorContext::keyed_state`], which also restores and registers them.
    pub state_backend: KeyedBackend,
    /// The keyed states registered so far; the operator's stage snapshots them.
    pub(crate) states: StateRegistry,
    /// Where the routers of queryable states go (see [`crate::query`]).
    pub(crate) routes: Option<Arc<crate::query::Routes>>,
    /// How the job counts rows of batch record types, for the metrics.
    pub(crate) row_counts: crate::metrics::RowCounts,
}

impl OperatorContext {
    /// Operator state `name` as restored: this subtask's own, or after rescaling
    /// the first previous subtask's that has it (for state alike on every subtask,
    /// such as an operator's watermark).
    pub fn restored_any(&self, name: &str) -> Option<&[u8]> {
        self.restored_operator
            .get(name)
            .or_else(|| self.restored_operator_all.iter().find_map(|s| s.get(name)))
            .map(Vec::as_slice)
    }

    /// A context for a fresh (not restored) instance; used by tests and by the runtime.
    pub fn fresh(subtask: SubtaskInfo) -> Self {
        let state_backend = KeyedBackend::heap(subtask.max_parallelism, subtask.key_groups);
        Self {
            state_backend,
            subtask,
            restored_keyed: BTreeMap::new(),
            restored_operator: BTreeMap::new(),
            restored_operator_all: Vec::new(),
            restored_once: BTreeMap::new(),
            checkpointing: false,
            job: String::new(),
            checkpoint_timeout: None,
            timeline: 0,
            metrics: Arc::new(OperatorMetrics::default()),
            states: StateRegistry::default(),
            row_counts: crate::metrics::RowCounts::default(),
            routes: None,
        }
    }

    /// A keyed state the runtime owns: `make` creates it (empty) in this subtask's
    /// backend, e.g. `|backend| ValueState::in_backend(backend, "count")`; the
    /// runtime restores the key groups this subtask owns, and flushes and freezes
    /// the state at every checkpoint. Call it from `open`.
    ///
    /// # Errors
    /// The backend cannot make the state; the restored chunks are corrupt; a state
    /// of the same name is already registered by this operator.
    pub fn keyed_state<S: KeyedStateStore>(
        &mut self,
        make: impl FnOnce(&KeyedBackend) -> weir_state::Result<S>,
    ) -> Result<KeyedStateHandle<S>> {
        let mut state = make(&self.state_backend)?;
        let name = state.state_name();
        if let (Some(routes), Some(router)) = (&self.routes, state.router()) {
            routes.register(&self.subtask.uid, &name, router);
        }
        let chunks = self.restored_chunks(&name);
        state.restore_state(
            &chunks,
            self.subtask.key_groups,
            self.subtask.max_parallelism,
        )?;
        self.states.register(&self.subtask.operator, state)
    }

    /// The restored keyed state named `name`, by key group: every chunk of it (see
    /// [`weir_state::format::chunk_name`]); a key group may come in several chunks.
    pub fn restored_chunks<'a>(&'a self, name: &'a str) -> Vec<(KeyGroup, &'a [u8])> {
        self.restored_keyed
            .iter()
            .flat_map(|(group, states)| {
                states
                    .iter()
                    .filter(|(state, _)| weir_state::format::is_chunk_of(state, name))
                    .map(|(_, bytes)| (KeyGroup::new(*group), bytes.as_slice()))
            })
            .collect()
    }
}

/// Collects what an operator captures during the synchronous part of a checkpoint.
pub struct SnapshotContext {
    /// The checkpoint being taken.
    pub checkpoint: CheckpointId,
    /// Whether it is a savepoint (canonical, full state required).
    pub savepoint: bool,
    /// The job's max parallelism (to partition keyed state).
    pub max_parallelism: MaxParallelism,
    pub(crate) snapshot: OperatorSnapshot,
    pub(crate) frozen: Vec<Arc<dyn FrozenKeyed>>,
}

impl SnapshotContext {
    /// A context for one operator's snapshot of `checkpoint`.
    pub fn new(checkpoint: CheckpointId, savepoint: bool, max_parallelism: MaxParallelism) -> Self {
        Self {
            checkpoint,
            savepoint,
            max_parallelism,
            snapshot: OperatorSnapshot::default(),
            frozen: Vec::new(),
        }
    }

    /// Adds keyed state frozen copy-on-write ([`weir_state::StateTable::freeze`]):
    /// the cheap way. It is encoded later, off the task thread, and incremental
    /// checkpoints upload only the shards that changed since the previous one.
    pub fn put_frozen(&mut self, frozen: impl FrozenKeyed + 'static) {
        self.frozen.push(Arc::new(frozen));
    }

    /// Like [`SnapshotContext::put_frozen`], for a boxed state.
    pub fn put_frozen_boxed(&mut self, frozen: Box<dyn FrozenKeyed>) {
        self.frozen.push(Arc::from(frozen));
    }

    /// Adds the keyed state `name`, partitioned by key group.
    pub fn put_keyed(&mut self, name: &str, state: KeyedSnapshot) {
        for (group, bytes) in state {
            self.snapshot
                .keyed
                .entry(group.get())
                .or_default()
                .insert(name.to_string(), bytes);
        }
    }

    /// Adds operator (non-keyed) state `name`.
    pub fn put_operator(&mut self, name: &str, bytes: Vec<u8>) {
        self.snapshot.operator.insert(name.to_string(), bytes);
    }

    /// Adds operator state `name` that is the same on every subtask, checkpointed
    /// once: call it on one subtask only (subtask 0). A restore at any parallelism
    /// offers it to every subtask in [`OperatorContext::restored_once`].
    pub fn put_once(&mut self, name: &str, bytes: Vec<u8>) {
        self.snapshot
            .operator
            .insert(format!("{ONCE_PREFIX}{name}"), bytes);
    }

    /// What was captured, with frozen state encoded here and now (for tests and
    /// harnesses; the runtime encodes it off the task thread).
    ///
    /// # Errors
    /// A state that cannot be encoded.
    pub fn into_snapshot(self) -> Result<OperatorSnapshot> {
        let mut snapshot = self.snapshot;
        for frozen in &self.frozen {
            add_chunks(&mut snapshot, frozen.as_ref(), self.max_parallelism)?;
        }
        Ok(snapshot)
    }
}

/// Adds every shard of `frozen` to `snapshot`, each as a chunk.
fn add_chunks(
    snapshot: &mut OperatorSnapshot,
    frozen: &dyn FrozenKeyed,
    max: MaxParallelism,
) -> Result<()> {
    for (group, chunks) in weir_state::format::encode_frozen(frozen, max)? {
        snapshot
            .keyed
            .entry(group.get())
            .or_default()
            .extend(chunks);
    }
    Ok(())
}

/// Keyed state a chain froze for one checkpoint, still to be encoded: by operator.
#[derive(Clone, Default)]
pub struct FrozenState {
    pub(crate) max_parallelism: MaxParallelism,
    pub(crate) parts: Vec<(OperatorUid, Arc<dyn FrozenKeyed>)>,
}

impl std::fmt::Debug for FrozenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenState")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl FrozenState {
    /// Whether nothing is frozen.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Encodes everything into the operator snapshots of `ack`, in full.
    ///
    /// # Errors
    /// A state that cannot be encoded.
    pub fn materialize_into(&self, ack: &mut SubtaskAck) -> Result<()> {
        for (uid, frozen) in &self.parts {
            let snapshot = ack.operators.entry(uid.clone()).or_default();
            add_chunks(snapshot, frozen.as_ref(), self.max_parallelism)?;
        }
        Ok(())
    }
}

/// What a chain captures as a barrier passes through it.
#[derive(Default)]
pub(crate) struct ChainSnapshots {
    pub(crate) operators: Vec<(OperatorUid, OperatorSnapshot)>,
    pub(crate) frozen: FrozenState,
}

impl ChainSnapshots {
    /// Adds what one operator captured.
    pub(crate) fn push(&mut self, uid: OperatorUid, cx: SnapshotContext) {
        self.frozen.max_parallelism = cx.max_parallelism;
        self.frozen
            .parts
            .extend(cx.frozen.into_iter().map(|frozen| (uid.clone(), frozen)));
        self.operators.push((uid, cx.snapshot));
    }
}

/// An operator's output buffer for one call. The runtime hands its contents to the
/// next operator of the chain (a plain function call) or to the outgoing channels.
#[derive(Debug)]
pub struct Output<T> {
    pub(crate) buffer: Vec<T>,
}

impl<T> Default for Output<T> {
    fn default() -> Self {
        Self { buffer: Vec::new() }
    }
}

impl<T> Output<T> {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Emits one record.
    #[inline]
    pub fn push(&mut self, record: T) {
        self.buffer.push(record);
    }

    /// Emits many records.
    #[inline]
    pub fn extend(&mut self, records: impl IntoIterator<Item = T>) {
        self.buffer.extend(records);
    }

    /// The records emitted so far and not yet handed on.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Takes the pending records (for tests and operator harnesses).
    pub fn drain(&mut self) -> std::vec::Drain<'_, T> {
        self.buffer.drain(..)
    }

    /// The pending records as a vector to swap with (advanced use).
    pub fn buffer_mut(&mut self) -> &mut Vec<T> {
        &mut self.buffer
    }
}

/// A one-input operator. The runtime calls these methods on the task thread; all of
/// them are synchronous and must not block on I/O.
pub trait Operator: Send + 'static {
    /// Input record type.
    type In: Send + 'static;
    /// Output record type.
    type Out: Send + 'static;

    /// Called once before the first record, with restored state if any.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Processes a batch. `input` must be left empty (drained).
    fn on_batch(&mut self, input: &mut Vec<Self::In>, out: &mut Output<Self::Out>) -> Result<()>;

    /// The input's watermark advanced to `watermark`. The runtime forwards the
    /// watermark downstream after this returns.
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        let _ = (watermark, out);
        Ok(())
    }

    /// Called periodically (about every millisecond while the task is busy or idle)
    /// with the current processing time, for processing-time timers.
    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        let _ = (now, out);
        Ok(())
    }

    /// A barrier arrived: records pushed to `out` here go downstream before it, so
    /// they belong to the checkpoint's side of the stream (Flink's
    /// `prepareSnapshotPreBarrier`). A pre-aggregation sends its buffer on here and
    /// needs no state. Called before [`snapshot`](Self::snapshot).
    fn before_barrier(&mut self, out: &mut Output<Self::Out>) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// The synchronous part of a checkpoint: capture state consistently and cheaply.
    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Checkpoint `id` is complete (all subtasks acknowledged, metadata written).
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let _ = id;
        Ok(())
    }

    /// All input has ended: emit everything still pending (the final watermark has
    /// already been delivered).
    fn on_end(&mut self, out: &mut Output<Self::Out>) -> Result<()> {
        let _ = out;
        Ok(())
    }
}

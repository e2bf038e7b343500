//! Keyed state the runtime owns, as Flink's keyed state backend does: an operator asks
//! its [`OperatorContext`](crate::OperatorContext) for a state in `open`, and gets a
//! handle. The runtime restores the state when it hands it out, and flushes and freezes
//! it at every checkpoint: a state cannot be left out of a snapshot.
//!
//! ```text
//!  open:      cx.keyed_state(|backend| ValueState::in_backend(backend, "count"))
//!               └─ made in the subtask's backend, restored from the checkpoint's
//!                  chunks of "count", registered with the operator's stage
//!  per batch: handle.lock()? ─▶ &mut ValueState      (no I/O, no allocation)
//!  barrier:   stage.rs: flush every registered state, operator.snapshot(),
//!             freeze every registered state ─▶ SnapshotContext (encoded off-thread)
//! ```
//!
//! The operator and the runtime reach a state from the same task thread only, one
//! after the other; the handle's lock is therefore never contended and costs two
//! uncontended atomic operations. Lock once per batch where the operator can.

use crate::query::{Page, QueryError, Read, Router};
use crate::{DataflowError, Result};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use weir_state::{FrozenKeyed, KeyGroup, KeyGroupRange, MaxParallelism, StateKey, StateValue};

/// What the runtime does with a registered keyed state: flush, freeze, restore.
///
/// Implemented by [`weir_state::StateTable`], the typed states of `weir_state`
/// (value, list, map, aggregating, with time-to-live, LRU), and by operators' own
/// composite states (the window operator's tables, one per window).
pub trait KeyedStateStore: Send + 'static {
    /// The state's name: its chunks in checkpoints are named after it.
    fn state_name(&self) -> String;
    /// Hands pending changes (RocksDB's record cache) to the backend, which writes
    /// them before its next checkpoint: in the snapshot's asynchronous part.
    ///
    /// # Errors
    /// A RocksDB write that fails.
    fn flush_state(&mut self) -> weir_state::Result<()>;
    /// The synchronous part of a snapshot: freezes the state copy-on-write (heap) or
    /// takes a RocksDB checkpoint, adding one frozen part per table to `frozen`.
    ///
    /// # Errors
    /// A RocksDB write or checkpoint that fails.
    fn freeze_state(&mut self, frozen: &mut Vec<Box<dyn FrozenKeyed>>) -> weir_state::Result<()>;
    /// Restores the key groups of `range` from the chunks of a snapshot; returns the
    /// number of entries restored.
    ///
    /// # Errors
    /// A chunk that is corrupt or holds a key outside its key group.
    fn restore_state(
        &mut self,
        chunks: &[(KeyGroup, &[u8])],
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> weir_state::Result<usize>;
    /// Reads the state as JSON for a live query (see [`crate::query`]), over the key
    /// groups of `range`; `None`: the state cannot be queried.
    fn query(
        &mut self,
        read: &Read,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Option<Result<Page, QueryError>> {
        let _ = (read, range, max);
        None
    }
    /// How a key given as JSON maps to its key group; `None`: the state cannot be
    /// queried.
    fn router(&self) -> Option<Router> {
        None
    }
}

/// An operator's handle to a keyed state the runtime owns (see the module docs).
/// Cloning it gives another handle to the same state.
pub struct KeyedStateHandle<S> {
    state: Arc<Mutex<S>>,
    name: Arc<str>,
}

impl<S> Clone for KeyedStateHandle<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            name: self.name.clone(),
        }
    }
}

impl<S> std::fmt::Debug for KeyedStateHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl<S> KeyedStateHandle<S> {
    /// The state, for the duration of the guard.
    ///
    /// # Errors
    /// [`DataflowError::TaskFailed`] if another thread holds the state: handles are
    /// for the task thread that registered them.
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, S>> {
        match self.state.try_lock() {
            Ok(guard) => Ok(guard),
            // A panic while the state was locked fails the task anyway; the state
            // itself is consistent between calls.
            Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => Err(DataflowError::TaskFailed {
                task: self.name.to_string(),
                message: format!(
                    "keyed state `{}` is in use by another thread: a state handle \
                     belongs to the task thread of the operator that registered it",
                    self.name
                ),
            }),
        }
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The keyed states one operator registered, snapshotted by its stage.
#[derive(Default)]
pub(crate) struct StateRegistry {
    states: Vec<(Arc<str>, Arc<Mutex<dyn KeyedStateStore>>)>,
}

impl StateRegistry {
    /// Registers `state` (already restored) and returns the operator's handle.
    pub(crate) fn register<S: KeyedStateStore>(
        &mut self,
        operator: &str,
        state: S,
    ) -> Result<KeyedStateHandle<S>> {
        let name: Arc<str> = state.state_name().into();
        if self.states.iter().any(|(known, _)| *known == name) {
            return Err(DataflowError::invalid(
                operator,
                format!("keyed state `{name}` is registered twice: give each state its own name"),
            ));
        }
        let state = Arc::new(Mutex::new(state));
        let shared: Arc<Mutex<dyn KeyedStateStore>> = state.clone();
        self.states.push((name.clone(), shared));
        Ok(KeyedStateHandle { state, name })
    }

    /// Reads state `name` for a live query; `None`: no state of that name.
    pub(crate) fn query(
        &self,
        name: &str,
        read: &Read,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Option<Result<Page, QueryError>> {
        let (_, state) = self.states.iter().find(|(known, _)| &**known == name)?;
        let mut state = match lock(name, state) {
            Ok(state) => state,
            Err(e) => {
                return Some(Err(QueryError::Failed {
                    state: name.to_string(),
                    reason: e.to_string(),
                }))
            }
        };
        Some(
            state
                .query(read, range, max)
                .unwrap_or_else(|| Err(QueryError::NotQueryable(name.to_string()))),
        )
    }

    /// The names of the registered states.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|(name, _)| &**name)
    }

    /// Whether no state is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Writes every state's pending changes to the backend, so that one RocksDB
    /// checkpoint covers all of them.
    pub(crate) fn flush(&self) -> Result<()> {
        for (name, state) in &self.states {
            lock(name, state)?.flush_state()?;
        }
        Ok(())
    }

    /// Freezes every state into `frozen`.
    pub(crate) fn freeze(&self, frozen: &mut Vec<Box<dyn FrozenKeyed>>) -> Result<()> {
        for (name, state) in &self.states {
            lock(name, state)?.freeze_state(frozen)?;
        }
        Ok(())
    }
}

fn lock<'a>(
    name: &str,
    state: &'a Mutex<dyn KeyedStateStore>,
) -> Result<MutexGuard<'a, dyn KeyedStateStore>> {
    match state.try_lock() {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => Err(DataflowError::TaskFailed {
            task: name.to_string(),
            message: format!("keyed state `{name}` is locked by another thread during a snapshot"),
        }),
    }
}

impl<K: StateKey, V: StateValue> KeyedStateStore for weir_state::StateTable<K, V> {
    fn state_name(&self) -> String {
        self.name().to_string()
    }
    fn flush_state(&mut self) -> weir_state::Result<()> {
        self.flush()
    }
    fn freeze_state(&mut self, frozen: &mut Vec<Box<dyn FrozenKeyed>>) -> weir_state::Result<()> {
        frozen.push(Box::new(self.freeze()?));
        Ok(())
    }
    fn restore_state(
        &mut self,
        chunks: &[(KeyGroup, &[u8])],
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> weir_state::Result<usize> {
        self.restore_chunks(chunks.iter().copied(), range, max)
    }
    fn query(
        &mut self,
        read: &Read,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Option<Result<Page, QueryError>> {
        Some(crate::query::read_table(self, read, range, max))
    }
    fn router(&self) -> Option<Router> {
        Some(crate::query::serde_router::<K>())
    }
}

/// The typed states of `weir_state` are their table for the runtime. A state with a
/// time-to-live also drops expired values before every snapshot (`cleanup`: on the
/// heap; RocksDB's compaction filter drops them there).
macro_rules! deref_state_store {
    ([$($generics:tt)*] $state:ident < $($param:ident),+ > $(, $cleanup:ident)?) => {
        impl<$($generics)*> KeyedStateStore for weir_state::$state<$($param),+> {
            fn state_name(&self) -> String {
                (**self).state_name()
            }
            fn flush_state(&mut self) -> weir_state::Result<()> {
                $(self.$cleanup()?;)?
                (**self).flush_state()
            }
            fn freeze_state(
                &mut self,
                frozen: &mut Vec<Box<dyn FrozenKeyed>>,
            ) -> weir_state::Result<()> {
                (**self).freeze_state(frozen)
            }
            fn restore_state(
                &mut self,
                chunks: &[(KeyGroup, &[u8])],
                range: KeyGroupRange,
                max: MaxParallelism,
            ) -> weir_state::Result<usize> {
                (**self).restore_state(chunks, range, max)
            }
            fn query(
                &mut self,
                read: &Read,
                range: KeyGroupRange,
                max: MaxParallelism,
            ) -> Option<Result<Page, QueryError>> {
                (**self).query(read, range, max)
            }
            fn router(&self) -> Option<Router> {
                (**self).router()
            }
        }
    };
}
deref_state_store!([K: StateKey, V: StateValue] ValueState<K, V>);
deref_state_store!([K: StateKey, V: StateValue] ListState<K, V>);
deref_state_store!([K: StateKey, UK: StateKey, V: StateValue] MapState<K, UK, V>);
deref_state_store!([K: StateKey, V: StateValue] TtlValueState<K, V>, cleanup_before_snapshot);
deref_state_store!([K: StateKey, V: StateValue] TtlListState<K, V>, cleanup_before_snapshot);
deref_state_store!(
    [K: StateKey, UK: StateKey, V: StateValue] TtlMapState<K, UK, V>,
    cleanup_before_snapshot
);

impl<K, In, A> KeyedStateStore for weir_state::AggregatingState<K, In, A>
where
    K: StateKey,
    In: 'static,
    A: weir_state::AggregateFunction<In> + Send + 'static,
    A::Acc: StateValue,
{
    fn state_name(&self) -> String {
        self.table().state_name()
    }
    fn flush_state(&mut self) -> weir_state::Result<()> {
        self.table_mut().flush_state()
    }
    fn freeze_state(&mut self, frozen: &mut Vec<Box<dyn FrozenKeyed>>) -> weir_state::Result<()> {
        self.table_mut().freeze_state(frozen)
    }
    fn restore_state(
        &mut self,
        chunks: &[(KeyGroup, &[u8])],
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> weir_state::Result<usize> {
        self.table_mut().restore_state(chunks, range, max)
    }
    fn query(
        &mut self,
        read: &Read,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Option<Result<Page, QueryError>> {
        self.table_mut().query(read, range, max)
    }
    fn router(&self) -> Option<Router> {
        self.table().router()
    }
}

impl<K: StateKey, V: StateValue> KeyedStateStore for weir_state::LruValueState<K, V> {
    fn state_name(&self) -> String {
        self.table().name().to_string()
    }
    fn flush_state(&mut self) -> weir_state::Result<()> {
        self.flush()
    }
    fn freeze_state(&mut self, frozen: &mut Vec<Box<dyn FrozenKeyed>>) -> weir_state::Result<()> {
        frozen.push(Box::new(self.freeze()?));
        Ok(())
    }
    fn restore_state(
        &mut self,
        chunks: &[(KeyGroup, &[u8])],
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> weir_state::Result<usize> {
        self.restore_chunks(chunks.iter().copied(), range, max)
    }
}

/// The state behind an operator's handle, once the operator is open.
///
/// # Errors
/// [`DataflowError::TaskFailed`] before `open` made the handle, or as
/// [`KeyedStateHandle::lock`].
#[inline]
pub(crate) fn opened<S>(handle: &Option<KeyedStateHandle<S>>) -> Result<MutexGuard<'_, S>> {
    match handle {
        Some(handle) => handle.lock(),
        None => Err(DataflowError::TaskFailed {
            task: "keyed state".to_string(),
            message: "an operator used its keyed state before it was opened".to_string(),
        }),
    }
}

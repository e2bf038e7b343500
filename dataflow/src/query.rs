//! Queryable state: live reads of a running job's keyed state, by operator uid,
//! state name and key (Kafka Streams' interactive queries, Flink's queryable state).
//!
//! ```text
//!  QueryPort::get(uid, state, key as JSON)
//!    └─ the state's router (registered when the operator opened its state):
//!       key ─serde─▶ K ─stable hash─▶ key group ─▶ the subtask that owns it
//!  TaskCommand::Query ─▶ that subtask's task thread, between two batches
//!    └─ stage.rs: the operator of that uid ─▶ StateRegistry ─▶ KeyedStateStore::query
//!  ◀─ Answer { entries as JSON, position: watermark, last completed checkpoint }
//! ```
//!
//! A read runs on the task thread that owns the state, between two batches: it never
//! sees the writes of a half-processed batch, and never contends for the state's
//! lock. Keys and values travel as JSON, in their serde form (the typed API's codec);
//! the job-file path gives its states the codec of its key schema.
//!
//! Cluster mode is not served yet: the port already names the subtask that owns a
//! key group; forwarding the read to the worker that runs it is what is missing
//! (`docs/queryable-state.md`).

use crate::task::TaskCommand;
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use weir_net::{hex, unhex};
use weir_state::{KeyGroup, KeyGroupRange, MaxParallelism};

/// A JSON value: keys and values of queried state.
pub type Json = serde_json::Value;

/// What to read of one state.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// The value of one key.
    Get {
        /// The key, as JSON in the state's key form.
        key: Json,
    },
    /// Up to `limit` entries in key-group order, after `after`.
    Scan {
        /// The most entries to return.
        limit: usize,
        /// Where the previous page ended (none: from the start).
        after: Option<Cursor>,
    },
}

/// Where a scan resumes: after this key of this key group (the key in its bincode
/// form, the order within a key group).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// The key group.
    pub group: u16,
    /// The last key returned, encoded; none: before the group's first key.
    pub key: Option<Vec<u8>>,
}

impl Cursor {
    /// The cursor as text, for a URL.
    pub fn to_text(&self) -> String {
        let key = self.key.as_deref().map(hex).unwrap_or_default();
        format!("{}.{key}", self.group)
    }

    /// The cursor from [`Cursor::to_text`].
    ///
    /// # Errors
    /// Text that is not a cursor.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let bad = || {
            QueryError::BadRequest(format!(
                "`{text}` is not a scan cursor (expected what a previous page returned as `next`)"
            ))
        };
        let (group, key) = text.split_once('.').ok_or_else(bad)?;
        let group = group.parse().map_err(|_| bad())?;
        let key = match key {
            "" => None,
            key => Some(unhex(key).ok_or_else(bad)?),
        };
        Ok(Self { group, key })
    }
}

/// Where the subtask that answered stood.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The subtask's index.
    pub subtask: usize,
    /// The watermark the operator passed on last (none before the first).
    pub watermark: Option<i64>,
    /// The newest checkpoint the subtask knows complete (none before the first).
    pub checkpoint: Option<u64>,
}

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: Json,
    /// Its value.
    pub value: Json,
}

/// What one state returns for one read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The entries, in key-group order for a scan.
    pub entries: Vec<Entry>,
    /// For a scan that filled `limit`: where the next page starts.
    pub next: Option<Cursor>,
}

/// The answer to a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The entries found.
    pub entries: Vec<Entry>,
    /// For a scan with more entries: the cursor of the next page.
    pub next: Option<String>,
    /// Where each subtask that answered stood (one for a lookup).
    pub positions: Vec<Position>,
}

/// Why a query was not answered.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// No operator of the job has this uid.
    #[error("the job has no operator with uid `{uid}` (operators: {known})")]
    NoOperator {
        /// The uid asked for.
        uid: String,
        /// The uids there are.
        known: String,
    },
    /// The operator has no state of this name.
    #[error("operator `{uid}` has no keyed state `{state}` here (its states: {known})")]
    NoState {
        /// The operator.
        uid: String,
        /// The state asked for.
        state: String,
        /// Its states.
        known: String,
    },
    /// The state cannot be read as JSON.
    #[error("keyed state `{0}` cannot be queried (its key or value has no JSON form)")]
    NotQueryable(String),
    /// The key is not of the state's key form.
    #[error("the key {key} is not a key of state `{state}`: {reason}")]
    BadKey {
        /// The state.
        state: String,
        /// The key given.
        key: String,
        /// What was expected.
        reason: String,
    },
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// The job runs no attempt now (restarting, ended), or the subtask ended.
    #[error("the job is not running: {0}")]
    NotRunning(String),
    /// The job ended (finished, cancelled, or stopped with a savepoint).
    #[error("the job has ended ({0}): its state is in its last checkpoint or savepoint (`weir state read`)")]
    Ended(String),
    /// The subtask did not answer in time.
    #[error("subtask {subtask} of `{uid}` did not answer within {timeout:?}")]
    Timeout {
        /// The operator.
        uid: String,
        /// The subtask.
        subtask: usize,
        /// How long it was given.
        timeout: Duration,
    },
    /// The subtasks did not reach the position asked for in time.
    #[error(
        "the state did not reach checkpoint {asked} within {timeout:?} (it stands at {reached})"
    )]
    PositionNotReached {
        /// The checkpoint asked for (`at_least_checkpoint`).
        asked: u64,
        /// Where the answering subtasks stood.
        reached: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// Reading the state failed.
    #[error("reading state `{state}` failed: {reason}")]
    Failed {
        /// The state.
        state: String,
        /// Why.
        reason: String,
    },
}

/// A query of one state of a job, as users send it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateRequest {
    /// The operator's uid.
    pub uid: String,
    /// The state's name.
    pub state: String,
    /// A lookup (`Some(key)`) or a scan.
    pub key: Option<Json>,
    /// A scan's page size.
    pub limit: usize,
    /// A scan's cursor (a previous answer's `next`).
    pub cursor: Option<String>,
    /// Answer only once every answering subtask knows this checkpoint complete
    /// (Kafka Streams' position bound): reads then reflect at least everything
    /// the checkpoint covers.
    pub at_least_checkpoint: Option<u64>,
}

impl QueryPort {
    /// Answers `request` once its position bound is met, trying again until
    /// `timeout` (also while the job restarts: `port` is asked for the current
    /// attempt's port each time).
    ///
    /// # Errors
    /// As [`QueryPort::get`] and [`QueryPort::scan`]; the position not reached in
    /// time.
    pub fn answer(
        port: impl Fn() -> Result<QueryPort, QueryError>,
        request: &StateRequest,
        timeout: Duration,
    ) -> Result<Answer, QueryError> {
        let deadline = std::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        loop {
            let answered = port().and_then(|port| match &request.key {
                Some(key) => port.get(&request.uid, &request.state, key, left()),
                None => port.scan(
                    &request.uid,
                    &request.state,
                    request.limit,
                    request.cursor.as_deref(),
                    left(),
                ),
            });
            let retry = match &answered {
                Ok(answer) => match request.at_least_checkpoint {
                    Some(asked)
                        if answer
                            .positions
                            .iter()
                            .any(|p| p.checkpoint.is_none_or(|c| c < asked)) =>
                    {
                        let reached = answer
                            .positions
                            .iter()
                            .map(|p| match p.checkpoint {
                                Some(c) => format!("subtask {}: checkpoint {c}", p.subtask),
                                None => format!("subtask {}: no checkpoint", p.subtask),
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        Some(QueryError::PositionNotReached {
                            asked,
                            reached,
                            timeout,
                        })
                    }
                    _ => None,
                },
                // A restart in progress: the next attempt may answer.
                Err(QueryError::NotRunning(_)) => answered.clone().err(),
                Err(_) => None,
            };
            match retry {
                None => return answered,
                Some(error) if left().is_zero() => return Err(error),
                Some(_) => std::thread::sleep(Duration::from_millis(5).min(left())),
            }
        }
    }
}

/// A read of one subtask's state, sent to its task thread.
#[derive(Debug)]
pub struct QueryCall {
    /// The operator's uid.
    pub uid: String,
    /// The state's name.
    pub state: String,
    /// What to read.
    pub read: Read,
    /// Where the answer goes.
    pub reply: Sender<Result<(Page, Position), QueryError>>,
}

/// Turns a key given as JSON into its key group (see [`weir_state::key_group_for_key`]).
pub type Router = Arc<dyn Fn(&Json, MaxParallelism) -> Result<KeyGroup, String> + Send + Sync>;

/// The routers of a job's queryable states, registered as operators open them.
#[derive(Default)]
pub(crate) struct Routes(Mutex<BTreeMap<(String, String), Router>>);

impl Routes {
    pub(crate) fn register(&self, uid: &str, state: &str, router: Router) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((uid.to_string(), state.to_string()))
            .or_insert(router);
    }

    fn get(&self, uid: &str, state: &str) -> Option<Router> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(uid.to_string(), state.to_string()))
            .cloned()
    }
}

/// One subtask of an operator, as the port reaches it.
#[derive(Clone)]
pub(crate) struct QueryTarget {
    pub(crate) index: usize,
    pub(crate) parallelism: usize,
    pub(crate) control: Sender<TaskCommand>,
}

/// The subtasks of each operator uid, by uid.
pub(crate) type Targets = BTreeMap<String, Vec<QueryTarget>>;

/// Where a running attempt takes queries: the subtasks of each operator uid (those
/// of this process) and the routers of their states. Cheap to clone; closed when the
/// attempt ends (it then holds no task's control channel).
#[derive(Clone)]
pub struct QueryPort {
    pub(crate) max: MaxParallelism,
    pub(crate) routes: Arc<Routes>,
    targets: Arc<RwLock<Option<Arc<Targets>>>>,
}

/// Closes its port when dropped.
pub(crate) struct PortGuard(pub(crate) QueryPort);

impl Drop for PortGuard {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl std::fmt::Debug for QueryPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPort").finish_non_exhaustive()
    }
}

impl QueryPort {
    pub(crate) fn new(max: MaxParallelism, routes: Arc<Routes>, targets: Targets) -> Self {
        Self {
            max,
            routes,
            targets: Arc::new(RwLock::new(Some(Arc::new(targets)))),
        }
    }

    /// Lets go of the tasks: every later query is answered "not running".
    pub fn close(&self) {
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn targets(&self, uid: &str) -> Result<Vec<QueryTarget>, QueryError> {
        let targets = self
            .targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| QueryError::NotRunning("the attempt ended".to_string()))?;
        targets
            .get(uid)
            .cloned()
            .ok_or_else(|| QueryError::NoOperator {
                uid: uid.to_string(),
                known: targets
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn ask(
        &self,
        target: &QueryTarget,
        uid: &str,
        state: &str,
        read: Read,
        timeout: Duration,
    ) -> Result<(Page, Position), QueryError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let call = QueryCall {
            uid: uid.to_string(),
            state: state.to_string(),
            read,
            reply,
        };
        let gone = || {
            QueryError::NotRunning(format!(
                "subtask {} of `{uid}` is not running",
                target.index
            ))
        };
        target
            .control
            .send(TaskCommand::Query(Box::new(call)))
            .map_err(|_| gone())?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(QueryError::Timeout {
                uid: uid.to_string(),
                subtask: target.index,
                timeout,
            }),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    /// The value of `key` in state `state` of operator `uid`, read by the subtask
    /// that owns its key group (no entry if the key has none).
    ///
    /// # Errors
    /// An unknown operator or state, a key not of the state's form, a subtask that
    /// ended or did not answer within `timeout`.
    pub fn get(
        &self,
        uid: &str,
        state: &str,
        key: &Json,
        timeout: Duration,
    ) -> Result<Answer, QueryError> {
        let targets = self.targets(uid)?;
        let router = match self.routes.get(uid, state) {
            Some(router) => router,
            None => {
                // Not registered yet: the operator is not open yet, the state has
                // no JSON form, or there is no such state. A subtask tells which
                // (one that answers has opened its states, and registered them).
                let any = targets.first().ok_or_else(|| {
                    QueryError::NotRunning(format!("no subtask of `{uid}` runs in this process"))
                })?;
                let read = Read::Scan {
                    limit: 1,
                    after: None,
                };
                self.ask(any, uid, state, read, timeout)?;
                self.routes
                    .get(uid, state)
                    .ok_or_else(|| QueryError::NotQueryable(state.to_string()))?
            }
        };
        let group = router(key, self.max).map_err(|reason| QueryError::BadKey {
            state: state.to_string(),
            key: key.to_string(),
            reason,
        })?;
        let target = targets
            .iter()
            .find(|t| KeyGroupRange::for_subtask(self.max, t.parallelism, t.index).contains(group))
            .ok_or_else(|| {
                QueryError::NotRunning(format!(
                    "the subtask of `{uid}` that owns key group {} runs on another worker",
                    group.get()
                ))
            })?;
        let read = Read::Get { key: key.clone() };
        let (page, position) = self.ask(target, uid, state, read, timeout)?;
        Ok(Answer {
            entries: page.entries,
            next: None,
            positions: vec![position],
        })
    }

    /// Up to `limit` entries of state `state` of operator `uid`, in key-group
    /// order, after `after` (a previous answer's `next`); each subtask reads its
    /// own key groups.
    ///
    /// # Errors
    /// As [`QueryPort::get`]; a malformed cursor.
    pub fn scan(
        &self,
        uid: &str,
        state: &str,
        limit: usize,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<Answer, QueryError> {
        let targets = self.targets(uid)?;
        let mut cursor = after.map(Cursor::parse).transpose()?;
        let mut targets = targets;
        targets.sort_by_key(|t| t.index);
        let mut answer = Answer {
            entries: Vec::new(),
            next: None,
            positions: Vec::new(),
        };
        let limit = limit.max(1);
        for target in targets {
            let range = KeyGroupRange::for_subtask(self.max, target.parallelism, target.index);
            if cursor.as_ref().is_some_and(|c| c.group > range.end) {
                continue;
            }
            let left = limit - answer.entries.len();
            let read = Read::Scan {
                limit: left,
                after: cursor.clone(),
            };
            let (page, position) = self.ask(&target, uid, state, read, timeout)?;
            answer.entries.extend(page.entries);
            answer.positions.push(position);
            match page.next {
                Some(next) => {
                    answer.next = Some(next.to_text());
                    return Ok(answer);
                }
                None => {
                    cursor = Some(Cursor {
                        group: range.end.saturating_add(1),
                        key: None,
                    });
                }
            }
            if answer.entries.len() >= limit {
                // Full at a subtask's last key: the next page starts at the next one.
                if usize::from(range.end) + 1 < self.max.get() {
                    answer.next = cursor.map(|c| c.to_text());
                }
                return Ok(answer);
            }
        }
        Ok(answer)
    }
}

/// A router for states whose keys are `K` in their serde form.
pub fn serde_router<K: weir_state::StateKey>() -> Router {
    Arc::new(|json: &Json, max: MaxParallelism| {
        let key: K = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
        Ok(weir_state::key_group_for_key(&key, max))
    })
}

/// `key`, given as JSON, as a key `K` of state `state` (its serde form).
pub(crate) fn key_of<K: weir_state::StateKey>(state: &str, key: &Json) -> Result<K, QueryError> {
    serde_json::from_value(key.clone()).map_err(|e| QueryError::BadKey {
        state: state.to_string(),
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Reads `read` from a table of `K` to `V` owning `range`: a lookup, or a page of a
/// scan in (key group, encoded key) order. A scan page visits every entry of the
/// table once (the table is not ordered by key group) and keeps the smallest
/// `limit`.
pub(crate) fn read_table<K: weir_state::StateKey, V: weir_state::StateValue>(
    table: &mut weir_state::StateTable<K, V>,
    read: &Read,
    range: KeyGroupRange,
    max: MaxParallelism,
) -> Result<Page, QueryError> {
    let state = table.name().to_string();
    let failed = |e: &dyn std::fmt::Display| QueryError::Failed {
        state: state.clone(),
        reason: e.to_string(),
    };
    let json = |v: &dyn ToJson| v.json().map_err(|e| failed(&e));
    match read {
        Read::Get { key } => {
            let k: K = key_of(&state, key)?;
            let entries = match table.get(&k).map_err(|e| failed(&e))? {
                Some(value) => vec![Entry {
                    key: key.clone(),
                    value: json(value)?,
                }],
                None => Vec::new(),
            };
            Ok(Page {
                entries,
                next: None,
            })
        }
        Read::Scan { limit, after } => {
            let limit = (*limit).max(1);
            // The smallest `limit + 1` positions after the cursor (one more tells
            // whether another page follows).
            let mut best: std::collections::BinaryHeap<(Cursor, usize)> =
                std::collections::BinaryHeap::new();
            let mut slots: Vec<(K, V)> = Vec::new();
            let mut error = None;
            table
                .for_each(|k, v| {
                    let group = weir_state::key_group_for_key(k, max);
                    if !range.contains(group) {
                        return;
                    }
                    let encoded = match weir_state::encode(&state, k) {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            error.get_or_insert(e);
                            return;
                        }
                    };
                    let at = Cursor {
                        group: group.get(),
                        key: Some(encoded),
                    };
                    if after.as_ref().is_some_and(|after| at <= *after) {
                        return;
                    }
                    if best.len() <= limit {
                        best.push((at, slots.len()));
                        slots.push((k.clone(), v.clone()));
                    } else if let Some(mut worst) = best.peek_mut() {
                        if at < worst.0 {
                            slots[worst.1] = (k.clone(), v.clone());
                            worst.0 = at;
                        }
                    }
                })
                .map_err(|e| failed(&e))?;
            if let Some(e) = error {
                return Err(failed(&e));
            }
            let mut sorted = best.into_sorted_vec();
            let more = sorted.len() > limit;
            sorted.truncate(limit);
            let next = if more {
                sorted.last().map(|(at, _)| at.clone())
            } else {
                None
            };
            let entries = sorted
                .iter()
                .map(|&(_, slot)| {
                    let (k, v) = &slots[slot];
                    Ok(Entry {
                        key: json(k)?,
                        value: json(v)?,
                    })
                })
                .collect::<Result<_, QueryError>>()?;
            Ok(Page { entries, next })
        }
    }
}

/// A value with a JSON form, as a trait object (one closure turns keys and values
/// of any type into JSON).
pub(crate) trait ToJson {
    fn json(&self) -> serde_json::Result<Json>;
}

impl<T: Serialize> ToJson for T {
    fn json(&self) -> serde_json::Result<Json> {
        serde_json::to_value(self)
    }
}

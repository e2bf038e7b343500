//! Timers in RocksDB: one column family, stored key
//! `[key group: u16 big-endian][domain: u8][time: 8 order-preserving bytes][bincode(key)]`
//! and an empty value, so the timers of a key group and domain are a contiguous scan
//! in time order.
//!
//! In memory the subtask keeps, per domain, a lower bound of the earliest timer of
//! every key group that may hold timers, ordered; the earliest due timer is found by
//! seeking the key group with the lowest bound. A seek reads ahead the group's due
//! timers (up to [`READ_AHEAD`]), so firing them costs one iterator and one write
//! batch, not one each. Writes are batched and applied before every read and every
//! snapshot.

use crate::rocks::{rocks_error, Claim, SubtaskStore};
use crate::rocks_table::{column_family, RocksFrozen};
use crate::timers::{ordered_time, time_of, TimeDomain, TimerEntry};
use crate::{
    decode, key_group_for_key, KeyGroup, KeyGroupRange, MaxParallelism, StateError, StateKey,
};
use rocksdb::{ReadOptions, WriteBatch};
use std::collections::{BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;

/// Pending writes are applied once there are this many.
const PENDING_WRITES: usize = 4096;

/// Due timers read ahead from a key group at most, per seek.
const READ_AHEAD: usize = 1024;

/// Bytes of a stored key before the timer's key: group, domain and time.
const HEADER: usize = 2 + 1 + 8;

/// The domain's byte in stored keys (its bincode encoding too).
fn byte(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

/// The timers of one domain: per owned key group (index `group - range.start`), a
/// lower bound of its earliest timer, and the same bounds ordered.
struct Queue {
    head_of: Vec<Option<i64>>,
    heads: BTreeSet<(i64, u16)>,
}

impl Queue {
    fn lower_to(&mut self, index: usize, group: u16, time: i64) {
        match self.head_of[index] {
            Some(head) if head <= time => {}
            Some(head) => {
                self.heads.remove(&(head, group));
                self.heads.insert((time, group));
                self.head_of[index] = Some(time);
            }
            None => {
                self.heads.insert((time, group));
                self.head_of[index] = Some(time);
            }
        }
    }

    fn set(&mut self, index: usize, group: u16, head: Option<i64>) {
        if let Some(old) = self.head_of[index].take() {
            self.heads.remove(&(old, group));
        }
        if let Some(time) = head {
            self.heads.insert((time, group));
        }
        self.head_of[index] = head;
    }
}

pub(crate) struct RocksTimers<K> {
    name: Arc<str>,
    id: u64,
    store: Arc<SubtaskStore>,
    max: MaxParallelism,
    range: KeyGroupRange,
    queues: [Queue; 2],
    /// Per owned key group: registrations since it was last seen without timers (not
    /// zero while it may hold timers).
    upper: Vec<u64>,
    /// Per owned key group: its generation (moves when a write reaches it).
    group_generation: Vec<u64>,
    epoch: u64,
    /// Writes not yet applied: the stored key, and whether it is a put.
    pending: Vec<(Vec<u8>, bool)>,
    /// Per domain and owned key group: due timers read ahead (stored keys, in
    /// order), still in RocksDB until popped. Always a complete prefix of the
    /// group's timers: every timer of the group that sorts before the last one here
    /// is here (registrations into that range are added).
    ahead: [Vec<VecDeque<Vec<u8>>>; 2],
    _key: PhantomData<fn() -> K>,
}

impl<K: StateKey> RocksTimers<K> {
    pub(crate) fn new(
        store: Arc<SubtaskStore>,
        name: Arc<str>,
        max: MaxParallelism,
        range: KeyGroupRange,
    ) -> Result<Self, StateError> {
        store.ensure_cf(&name)?;
        let groups = if range.end < range.start {
            0
        } else {
            usize::from(range.end - range.start) + 1
        };
        let queue = || Queue {
            head_of: vec![None; groups],
            heads: BTreeSet::new(),
        };
        let mut timers = Self {
            name,
            id: crate::snapshot::next_table_id(),
            store,
            max,
            range,
            queues: [queue(), queue()],
            upper: vec![0; groups],
            group_generation: vec![0; groups],
            epoch: 1,
            pending: Vec::new(),
            ahead: [vec![VecDeque::new(); groups], vec![VecDeque::new(); groups]],
            _key: PhantomData,
        };
        match timers.store.claim_namespace(&timers.name, &[]) {
            Claim::Empty => {}
            Claim::Used => timers.find_heads(|_| true)?,
            // Opened from a native checkpoint: its counts (upper bounds) say which
            // key groups may hold timers.
            Claim::Restored(entries) if entries.len() == groups => {
                timers.upper = entries;
                let upper = timers.upper.clone();
                timers.find_heads(|index| upper[index] > 0)?;
            }
            Claim::Restored(entries) => {
                return Err(StateError::Corrupt {
                    state: timers.name.to_string(),
                    reason: format!(
                        "the restored RocksDB instance counts timers of {} key groups, the subtask owns {groups} ({}..={})",
                        entries.len(),
                        range.start,
                        range.end
                    ),
                })
            }
        }
        Ok(timers)
    }

    /// Reads the earliest timer of each owned key group (index `group -
    /// range.start`) that `may_hold` and domain: timers already in the instance,
    /// such as one opened from a checkpoint.
    fn find_heads(&mut self, may_hold: impl Fn(usize) -> bool) -> Result<(), StateError> {
        for group in self.range.start..=self.range.end {
            if !may_hold(usize::from(group - self.range.start)) {
                continue;
            }
            for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
                if let Some((time, _)) = self.first(group, domain, i64::MIN)? {
                    let index = usize::from(group - self.range.start);
                    self.queues[usize::from(byte(domain))].set(index, group, Some(time));
                    self.upper[index] = self.upper[index].max(1);
                }
            }
        }
        Ok(())
    }

    fn index_of(&self, key: &K) -> Result<(u16, usize), StateError> {
        let group = key_group_for_key(key, self.max).get();
        if !self.range.contains(KeyGroup::new(group)) {
            return Err(StateError::Corrupt {
                state: self.name.to_string(),
                reason: format!(
                    "a timer of key group {group} reached a subtask owning key groups {}..={}",
                    self.range.start, self.range.end
                ),
            });
        }
        Ok((group, usize::from(group - self.range.start)))
    }

    /// The key group of `key`, its index among the owned ones, and the stored key
    /// of its timer at `time` in `domain`.
    fn stored_key(
        &self,
        domain: TimeDomain,
        time: i64,
        key: &K,
    ) -> Result<(u16, usize, Vec<u8>), StateError> {
        let (group, index) = self.index_of(key)?;
        let mut stored = Vec::with_capacity(HEADER + 16);
        stored.extend_from_slice(&group.to_be_bytes());
        stored.push(byte(domain));
        stored.extend_from_slice(&ordered_time(time));
        bincode::serde::encode_into_std_write(key, &mut stored, bincode::config::standard())
            .map_err(|e| StateError::Encode {
                state: self.name.to_string(),
                reason: e.to_string(),
            })?;
        Ok((group, index, stored))
    }

    fn write(&mut self, index: usize, stored: Vec<u8>, put: bool) -> Result<(), StateError> {
        self.group_generation[index] = self.epoch;
        self.pending.push((stored, put));
        if self.pending.len() >= PENDING_WRITES {
            self.apply_pending()?;
        }
        Ok(())
    }

    pub(crate) fn apply_pending(&mut self) -> Result<(), StateError> {
        self.store.settle()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let built = timer_batch(self.store.db(), &self.name, pending)?;
        self.store.write(&format!("timers `{}`", self.name), built)
    }

    /// Hands pending writes off to the store: written before anything else is
    /// written and before the next checkpoint is taken ([`SubtaskStore::settle`]).
    /// (Reads apply pending writes first, which waits for that.)
    pub(crate) fn hand_off(&mut self) {
        if !self.pending.is_empty() {
            let (name, pending) = (self.name.clone(), std::mem::take(&mut self.pending));
            self.store.defer_write(
                format!("timers `{}`", self.name),
                Box::new(move |db| timer_batch(db, &name, pending)),
            );
        }
    }

    pub(crate) fn register(
        &mut self,
        domain: TimeDomain,
        key: &K,
        time: i64,
    ) -> Result<(), StateError> {
        let (group, index, stored) = self.stored_key(domain, time, key)?;
        let d = usize::from(byte(domain));
        let ahead = &mut self.ahead[d][index];
        if ahead.back().is_some_and(|last| stored < *last) {
            if let Err(at) = ahead.binary_search(&stored) {
                ahead.insert(at, stored.clone());
            }
        }
        self.write(index, stored, true)?;
        self.queues[d].lower_to(index, group, time);
        self.upper[index] = self.upper[index].saturating_add(1);
        Ok(())
    }

    pub(crate) fn delete(
        &mut self,
        domain: TimeDomain,
        key: &K,
        time: i64,
    ) -> Result<(), StateError> {
        let (_, index, stored) = self.stored_key(domain, time, key)?;
        let ahead = &mut self.ahead[usize::from(byte(domain))][index];
        if let Ok(at) = ahead.binary_search(&stored) {
            ahead.remove(at);
        }
        self.write(index, stored, false)
    }

    /// Up to [`READ_AHEAD`] timers of `group` in `domain` from `from` (a lower
    /// bound of its timers) that are due at `now`, in order; if there are none, the
    /// time of the group's earliest timer, if any.
    fn read_due(
        &self,
        group: u16,
        domain: TimeDomain,
        from: i64,
        now: i64,
    ) -> Result<Result<VecDeque<Vec<u8>>, Option<i64>>, StateError> {
        let db = self.store.db();
        let cf = column_family(db, &self.name)?;
        let mut prefix = group.to_be_bytes().to_vec();
        prefix.push(byte(domain));
        let mut end = prefix.clone();
        // The domain byte is 0 or 1, so it never overflows.
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(end);
        let mut iter = db.raw_iterator_cf_opt(&cf, options);
        let mut start = prefix;
        start.extend_from_slice(&ordered_time(from));
        iter.seek(&start);
        let mut due = VecDeque::new();
        let mut later = None;
        while iter.valid() && due.len() < READ_AHEAD {
            let Some(stored) = iter.key().filter(|k| k.len() >= HEADER) else {
                break;
            };
            let time = stored_time(stored);
            if time > now {
                later = Some(time);
                break;
            }
            self.store.counters.get(stored.len());
            due.push_back(stored.to_vec());
            iter.next();
        }
        iter.status()
            .map_err(|e| rocks_error(format!("cannot read timers `{}`", self.name), e))?;
        Ok(if due.is_empty() { Err(later) } else { Ok(due) })
    }

    /// The earliest timer of `group` in `domain` in RocksDB at or after `from` (a
    /// lower bound of its timers): its time and stored key.
    fn first(
        &self,
        group: u16,
        domain: TimeDomain,
        from: i64,
    ) -> Result<Option<(i64, Vec<u8>)>, StateError> {
        let db = self.store.db();
        let cf = column_family(db, &self.name)?;
        let mut prefix = group.to_be_bytes().to_vec();
        prefix.push(byte(domain));
        let mut end = prefix.clone();
        // The domain byte is 0 or 1, so it never overflows.
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(end);
        let mut iter = db.raw_iterator_cf_opt(&cf, options);
        // From the group's known lower bound: the timers popped before it are
        // deleted, and a seek from the group's start would step over each of their
        // tombstones (until a compaction drops them) on every pop.
        let mut start = prefix;
        start.extend_from_slice(&ordered_time(from));
        iter.seek(&start);
        let found = match iter.key() {
            Some(stored) if iter.valid() && stored.len() >= HEADER => {
                self.store.counters.get(stored.len());
                Some((stored_time(stored), stored.to_vec()))
            }
            _ => None,
        };
        iter.status()
            .map_err(|e| rocks_error(format!("cannot read timers `{}`", self.name), e))?;
        Ok(found)
    }

    pub(crate) fn pop_due(
        &mut self,
        domain: TimeDomain,
        now: i64,
    ) -> Result<Option<(K, i64)>, StateError> {
        let d = usize::from(byte(domain));
        loop {
            let Some(&(head, group)) = self.queues[d].heads.first() else {
                return Ok(None);
            };
            if head > now {
                return Ok(None);
            }
            let index = usize::from(group - self.range.start);
            if let Some(front) = self.ahead[d][index].front() {
                let time = stored_time(front);
                if time != head {
                    // A deletion took the earliest read-ahead timer.
                    self.queues[d].set(index, group, Some(time));
                    continue;
                }
                let Some(stored) = self.ahead[d][index].pop_front() else {
                    continue;
                };
                // The next read-ahead timer, or else a lower bound of the rest.
                let next = self.ahead[d][index]
                    .front()
                    .map_or(time, |s| stored_time(s));
                self.queues[d].set(index, group, Some(next));
                let key: K = decode(&self.name, &stored[HEADER..])?;
                self.write(index, stored, false)?;
                return Ok(Some((key, time)));
            }
            self.apply_pending()?;
            match self.read_due(group, domain, head, now)? {
                Ok(due) => self.ahead[d][index] = due,
                Err(Some(time)) => self.queues[d].set(index, group, Some(time)),
                Err(None) => {
                    self.queues[d].set(index, group, None);
                    let other = &self.queues[1 - d];
                    if other.head_of[index].is_none() {
                        self.upper[index] = 0;
                    }
                }
            }
        }
    }

    /// Hands pending writes off to the store and reserves a RocksDB checkpoint
    /// after them (as [`crate::rocks_table`]'s tables do: the write and the
    /// checkpoint are the snapshot's asynchronous part).
    pub(crate) fn freeze(&mut self) -> Result<RocksFrozen<TimerEntry<K>, ()>, StateError> {
        self.hand_off();
        let checkpoint = self.store.checkpoint()?;
        let frozen = RocksFrozen::of_parts(
            self.name.clone(),
            self.id,
            checkpoint,
            Vec::new(),
            self.range,
            self.upper.clone(),
            self.group_generation.clone(),
        );
        self.epoch += 1;
        Ok(frozen)
    }
}

/// The time of a stored timer (at least [`HEADER`] bytes long).
fn stored_time(stored: &[u8]) -> i64 {
    let mut time = [0u8; 8];
    time.copy_from_slice(&stored[3..HEADER]);
    time_of(time)
}

/// The write batch of pending timer writes (stored key, and whether a put) of
/// timers `name`, and how many are deletions.
fn timer_batch(
    db: &crate::rocks::Db,
    name: &str,
    pending: Vec<(Vec<u8>, bool)>,
) -> Result<(WriteBatch, u64), StateError> {
    let cf = column_family(db, name)?;
    let mut batch = WriteBatch::default();
    let mut deletes = 0;
    for (stored, put) in pending {
        if put {
            batch.put_cf(&cf, &stored, []);
        } else {
            batch.delete_cf(&cf, &stored);
            deletes += 1;
        }
    }
    Ok((batch, deletes))
}

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
//!
//! Timers later than every timer a key group has in RocksDB are held in memory
//! ("fresh") until the next snapshot, or until there are more of them than the
//! record cache holds: one registered and fired (or deleted) in between, as a session
//! window's timer mostly is, never reaches RocksDB, as the tables' record cache
//! spares them the writes of records that come and go.

use crate::rocks::{rocks_error, Claim, SubtaskStore};
use crate::rocks_table::{column_family, RocksFrozen};
use crate::timers::{ordered_time, time_of, TimeDomain, TimerEntry};
use crate::{
    decode, key_group_for_key, KeyGroup, KeyGroupRange, MaxParallelism, StateError, StateKey,
};
use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, WriteBatch};
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

/// The timers of one key group and domain that are known in memory.
#[derive(Clone, Default)]
struct GroupTimers {
    /// Due timers read ahead from RocksDB (stored keys, in order), still there until
    /// popped. Always a complete prefix of the group's timers in RocksDB: every one
    /// that sorts before the last one here is here (registrations into that range
    /// are added).
    ahead: VecDeque<Vec<u8>>,
    /// A lower bound of the group's timers in RocksDB after `ahead`; `None`: there
    /// are none.
    rest: Option<i64>,
    /// Timers in memory only (stored keys), each later than `stored_max` when it was
    /// registered: RocksDB does not hold them.
    fresh: BTreeSet<Vec<u8>>,
    /// No timer of the group in RocksDB, or in writes pending for it, is later.
    stored_max: i64,
}

impl GroupTimers {
    /// A lower bound of the group's earliest timer, if it may hold any.
    fn head(&self) -> Option<i64> {
        let stored = match self.ahead.front() {
            Some(front) => Some(stored_time(front)),
            None => self.rest,
        };
        let fresh = self.fresh.first().map(|f| stored_time(f));
        match (stored, fresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records that RocksDB (or a pending write) holds a timer at `time`.
    fn stored(&mut self, time: i64) {
        self.stored_max = self.stored_max.max(time);
        self.rest = Some(self.rest.map_or(time, |rest| rest.min(time)));
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
    /// Per domain and owned key group: the timers known in memory.
    groups: [Vec<GroupTimers>; 2],
    /// Fresh timers of all groups and domains.
    fresh: usize,
    /// Fresh timers held at most: beyond, they are all written to RocksDB.
    fresh_limit: usize,
    _key: PhantomData<fn() -> K>,
}

impl<K: StateKey> RocksTimers<K> {
    /// Timers `name` in `store`, holding at most `fresh_limit` timers in memory
    /// between snapshots.
    pub(crate) fn new(
        store: Arc<SubtaskStore>,
        name: Arc<str>,
        max: MaxParallelism,
        range: KeyGroupRange,
        fresh_limit: usize,
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
        let empty = GroupTimers {
            stored_max: i64::MIN,
            ..GroupTimers::default()
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
            groups: [vec![empty.clone(); groups], vec![empty; groups]],
            fresh: 0,
            fresh_limit: fresh_limit.max(1),
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

    /// Reads the earliest and the latest timer of each owned key group (index
    /// `group - range.start`) that `may_hold` and domain: timers already in the
    /// instance, such as one opened from a checkpoint.
    fn find_heads(&mut self, may_hold: impl Fn(usize) -> bool) -> Result<(), StateError> {
        for group in self.range.start..=self.range.end {
            let index = usize::from(group - self.range.start);
            if !may_hold(index) {
                continue;
            }
            for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
                if let Some((first, last)) = self.bounds(group, domain)? {
                    let d = usize::from(byte(domain));
                    self.groups[d][index].stored(first);
                    self.groups[d][index].stored(last);
                    self.queues[d].set(index, group, Some(first));
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

    /// Makes every fresh timer a pending write: they are then as any timer in
    /// RocksDB.
    fn store_fresh(&mut self) {
        if self.fresh == 0 {
            return;
        }
        for groups in &mut self.groups {
            for (index, group) in groups.iter_mut().enumerate() {
                let time = |f: Option<&Vec<u8>>| f.map(|f| stored_time(f));
                let (Some(first), Some(last)) =
                    (time(group.fresh.first()), time(group.fresh.last()))
                else {
                    continue;
                };
                // Fresh timers are later than every stored one, read-ahead ones
                // included: those stay a complete prefix of the group's timers.
                debug_assert!(group.ahead.back() < group.fresh.first());
                group.stored(first);
                group.stored(last);
                let fresh = std::mem::take(&mut group.fresh);
                self.pending
                    .extend(fresh.into_iter().map(|stored| (stored, true)));
                self.group_generation[index] = self.epoch;
            }
        }
        self.fresh = 0;
    }

    /// Hands pending writes off to the store, fresh timers among them: written
    /// before anything else is written and before the next checkpoint is taken
    /// ([`SubtaskStore::settle`]). (Reads apply pending writes first, which waits
    /// for that.)
    pub(crate) fn hand_off(&mut self) {
        self.store_fresh();
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
        self.queues[d].lower_to(index, group, time);
        self.upper[index] = self.upper[index].saturating_add(1);
        let timers = &mut self.groups[d][index];
        if time > timers.stored_max {
            if timers.fresh.insert(stored) {
                self.fresh += 1;
                if self.fresh > self.fresh_limit {
                    self.store_fresh();
                    self.apply_pending()?;
                }
            }
            return Ok(());
        }
        if timers.ahead.back().is_some_and(|last| stored < *last) {
            if let Err(at) = timers.ahead.binary_search(&stored) {
                timers.ahead.insert(at, stored.clone());
            }
        } else {
            timers.stored(time);
        }
        self.write(index, stored, true)
    }

    pub(crate) fn delete(
        &mut self,
        domain: TimeDomain,
        key: &K,
        time: i64,
    ) -> Result<(), StateError> {
        let (_, index, stored) = self.stored_key(domain, time, key)?;
        let timers = &mut self.groups[usize::from(byte(domain))][index];
        if time > timers.stored_max {
            // Not in RocksDB: fresh, or not a timer.
            if timers.fresh.remove(&stored) {
                self.fresh -= 1;
            }
            return Ok(());
        }
        if let Ok(at) = timers.ahead.binary_search(&stored) {
            timers.ahead.remove(at);
        }
        self.write(index, stored, false)
    }

    /// A raw iterator over the timers of `group` in `domain`.
    fn iterator(
        &self,
        group: u16,
        domain: TimeDomain,
    ) -> Result<DBRawIteratorWithThreadMode<'_, crate::rocks::Db>, StateError> {
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
        options.set_iterate_lower_bound(prefix);
        options.set_iterate_upper_bound(end);
        Ok(db.raw_iterator_cf_opt(&cf, options))
    }

    /// Up to [`READ_AHEAD`] timers of `group` in `domain` from `from` (a lower
    /// bound of its timers) that are due at `now`, in order; and a lower bound of
    /// the group's timers after them, if it has any. Seeking from `from`, not from
    /// the group's start, steps over none of the tombstones of the timers popped
    /// before (until a compaction drops them).
    fn read_due(
        &self,
        group: u16,
        domain: TimeDomain,
        from: i64,
        now: i64,
    ) -> Result<(VecDeque<Vec<u8>>, Option<i64>), StateError> {
        let mut iter = self.iterator(group, domain)?;
        let mut start = group.to_be_bytes().to_vec();
        start.push(byte(domain));
        start.extend_from_slice(&ordered_time(from));
        iter.seek(&start);
        let mut due = VecDeque::new();
        let mut later = None;
        while iter.valid() {
            let Some(stored) = iter.key().filter(|k| k.len() >= HEADER) else {
                break;
            };
            let time = stored_time(stored);
            if time > now || due.len() == READ_AHEAD {
                later = Some(time);
                break;
            }
            self.store.counters.get(stored.len());
            due.push_back(stored.to_vec());
            iter.next();
        }
        iter.status()
            .map_err(|e| rocks_error(format!("cannot read timers `{}`", self.name), e))?;
        Ok((due, later))
    }

    /// The times of the earliest and the latest timer of `group` in `domain` in
    /// RocksDB, if it holds any.
    fn bounds(&self, group: u16, domain: TimeDomain) -> Result<Option<(i64, i64)>, StateError> {
        let mut iter = self.iterator(group, domain)?;
        let time = |iter: &DBRawIteratorWithThreadMode<'_, crate::rocks::Db>| {
            let stored = iter.key().filter(|k| iter.valid() && k.len() >= HEADER)?;
            self.store.counters.get(stored.len());
            Some(stored_time(stored))
        };
        iter.seek_to_first();
        let first = time(&iter);
        iter.seek_to_last();
        let last = time(&iter);
        iter.status()
            .map_err(|e| rocks_error(format!("cannot read timers `{}`", self.name), e))?;
        Ok(first.zip(last))
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
            let timers = &self.groups[d][index];
            let fresh = timers.fresh.first().map(|f| stored_time(f));
            // RocksDB is read when no read-ahead timer is left and its rest may hold
            // one due no later than the earliest fresh timer.
            let read = match timers.ahead.is_empty() {
                true => timers
                    .rest
                    .filter(|&rest| rest <= now && fresh.is_none_or(|f| rest <= f)),
                false => None,
            };
            if let Some(from) = read {
                self.apply_pending()?;
                let (due, later) = self.read_due(group, domain, from, now)?;
                let timers = &mut self.groups[d][index];
                timers.ahead = due;
                timers.rest = later;
                if timers.ahead.is_empty() && later.is_none() {
                    // RocksDB holds none of the group's timers in this domain.
                    timers.stored_max = i64::MIN;
                }
                let head = timers.head();
                self.queues[d].set(index, group, head);
                if head.is_none() && self.queues[1 - d].head_of[index].is_none() {
                    self.upper[index] = 0;
                }
                continue;
            }
            let timers = &mut self.groups[d][index];
            let from_ahead = match (timers.ahead.front(), timers.fresh.first()) {
                (Some(ahead), Some(fresh)) => ahead < fresh,
                (ahead, _) => ahead.is_some(),
            };
            let earliest = match from_ahead {
                true => timers.ahead.front(),
                false => timers.fresh.first(),
            };
            // The group's head is a lower bound: if its earliest timer is later (a
            // deletion took one), another group may hold an earlier one.
            let due = earliest
                .map(|s| stored_time(s))
                .filter(|&time| time <= now && time == head);
            let taken = match (due, from_ahead) {
                (None, _) => None,
                (Some(_), true) => timers.ahead.pop_front(),
                (Some(_), false) => timers.fresh.pop_first(),
            };
            let head = timers.head();
            self.queues[d].set(index, group, head);
            let (Some(time), Some(stored)) = (due, taken) else {
                if head.is_none() && self.queues[1 - d].head_of[index].is_none() {
                    self.upper[index] = 0;
                }
                continue;
            };
            let key: K = decode(&self.name, &stored[HEADER..])?;
            if from_ahead {
                self.write(index, stored, false)?;
            } else {
                self.fresh -= 1;
            }
            return Ok(Some((key, time)));
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

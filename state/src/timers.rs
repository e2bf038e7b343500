//! Timers of a keyed operator subtask: per key and time, in two queues (event time
//! and processing time), deduplicated, on the heap or in RocksDB.
//!
//! Both backends snapshot to the same canonical form, a table of [`TimerEntry`] by the
//! key group of each timer's key, so timers rescale and move between backends like
//! any keyed state. In RocksDB, timers live in their own column family, ordered by
//! key group, queue and time (`[group][queue][time][key]`); the subtask keeps only
//! the earliest time of each key group in memory, so a timer per key costs disk, not
//! memory. Timers later than every one RocksDB holds wait in memory (at most as
//! many as the record cache holds) until the next snapshot writes them: one that
//! fires or is deleted before it costs no RocksDB write.

use crate::{
    decode, FrozenKeyed, HeapTable, KeyGroup, KeyGroupRange, KeyedBackend, KeyedSnapshot,
    MaxParallelism, StateError, StateKey,
};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer.
    EventTime,
    /// Fires when the wall clock reaches the timer.
    ProcessingTime,
}

/// A time as 8 bytes whose unsigned big-endian order is the order of the times.
pub(crate) fn ordered_time(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time of [`ordered_time`] bytes.
pub(crate) fn time_of(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// One timer in the canonical form of snapshots. Its bincode encoding is the
/// domain's byte, the time as 8 order-preserving bytes and the key, which is also
/// how RocksDB stores it, so a native checkpoint reads back into this form without
/// decoding. It hashes as its key alone: a timer belongs to its key's key group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEntry<K> {
    domain: TimeDomain,
    time: [u8; 8],
    key: K,
}

impl<K> TimerEntry<K> {
    /// A timer of `key` at `time` in `domain`.
    pub fn new(domain: TimeDomain, key: K, time: i64) -> Self {
        Self {
            domain,
            time: ordered_time(time),
            key,
        }
    }

    /// The timer's clock.
    pub fn domain(&self) -> TimeDomain {
        self.domain
    }

    /// When the timer fires.
    pub fn time(&self) -> i64 {
        time_of(self.time)
    }

    /// The timer's key.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Hash> Hash for TimerEntry<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// The timers of one subtask on the heap: per queue, by time, the keys.
struct HeapTimers<K> {
    event: BTreeMap<i64, FxHashSet<K>>,
    processing: BTreeMap<i64, FxHashSet<K>>,
}

impl<K: StateKey> HeapTimers<K> {
    fn queue(&mut self, domain: TimeDomain) -> &mut BTreeMap<i64, FxHashSet<K>> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    fn register(&mut self, domain: TimeDomain, key: K, time: i64) {
        self.queue(domain).entry(time).or_default().insert(key);
    }

    fn delete(&mut self, domain: TimeDomain, key: &K, time: i64) {
        let queue = self.queue(domain);
        if let Some(keys) = queue.get_mut(&time) {
            keys.remove(key);
            if keys.is_empty() {
                queue.remove(&time);
            }
        }
    }

    fn pop_due(&mut self, domain: TimeDomain, now: i64) -> Option<(K, i64)> {
        let queue = self.queue(domain);
        loop {
            let mut entry = queue.first_entry()?;
            let time = *entry.key();
            if time > now {
                return None;
            }
            let key = entry.get().iter().next().cloned();
            match key {
                Some(key) => {
                    entry.get_mut().remove(&key);
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                    return Some((key, time));
                }
                None => {
                    entry.remove();
                }
            }
        }
    }

    fn entries(&self) -> Vec<TimerEntry<K>> {
        let queue = |domain, queue: &BTreeMap<i64, FxHashSet<K>>| {
            queue
                .iter()
                .flat_map(move |(time, keys)| {
                    keys.iter()
                        .map(move |key| TimerEntry::new(domain, key.clone(), *time))
                })
                .collect::<Vec<_>>()
        };
        let mut entries = queue(TimeDomain::EventTime, &self.event);
        entries.extend(queue(TimeDomain::ProcessingTime, &self.processing));
        entries
    }
}

enum Backing<K> {
    Heap(HeapTimers<K>),
    #[cfg(feature = "rocksdb")]
    Rocks(Box<crate::rocks_timers::RocksTimers<K>>),
}

/// The timers of one keyed operator subtask (see the module documentation).
pub struct Timers<K> {
    name: String,
    backing: Backing<K>,
}

/// A snapshot of [`Timers`]: encoded on the task thread (heap), or frozen for
/// encoding or upload afterwards (RocksDB).
pub enum TimersSnapshot {
    /// The canonical form, by key group.
    Encoded(KeyedSnapshot),
    /// A RocksDB checkpoint of the timers' column family.
    Frozen(Box<dyn FrozenKeyed>),
}

impl<K: StateKey> Timers<K> {
    /// No timers, on the heap; `name` identifies them in snapshots and errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            backing: Backing::Heap(HeapTimers {
                event: BTreeMap::new(),
                processing: BTreeMap::new(),
            }),
        }
    }

    /// No timers, in `backend`: on the heap, or in the column family `name` of the
    /// subtask's RocksDB instance.
    ///
    /// # Errors
    /// [`StateError::Io`] or [`StateError::Locked`] if the RocksDB instance cannot be
    /// opened.
    pub fn in_backend(backend: &KeyedBackend, name: impl Into<String>) -> Result<Self, StateError> {
        let name: String = name.into();
        #[cfg(feature = "rocksdb")]
        if let Some(store) = backend.store()? {
            let timers = crate::rocks_timers::RocksTimers::new(
                store,
                name.as_str().into(),
                backend.max_parallelism(),
                backend.key_groups(),
                backend.record_cache_entries(),
            )?;
            return Ok(Self {
                name,
                backing: Backing::Rocks(Box::new(timers)),
            });
        }
        let _ = backend;
        Ok(Self::new(name))
    }

    /// The timers' name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the timers live in RocksDB.
    pub fn is_rocksdb(&self) -> bool {
        !matches!(self.backing, Backing::Heap(_))
    }

    /// Registers a timer of `key` at `time` (once: registering it again changes
    /// nothing).
    ///
    /// # Errors
    /// `key` belongs to a key group the subtask does not own; a RocksDB write that
    /// fails.
    pub fn register(&mut self, domain: TimeDomain, key: K, time: i64) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => {
                heap.register(domain, key, time);
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.register(domain, &key, time),
        }
    }

    /// Deletes a timer, if registered.
    ///
    /// # Errors
    /// As [`Timers::register`].
    pub fn delete(&mut self, domain: TimeDomain, key: &K, time: i64) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => {
                heap.delete(domain, key, time);
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.delete(domain, key, time),
        }
    }

    /// Removes and returns the earliest timer of `domain` due at `now` (time at most
    /// `now`), if any.
    ///
    /// # Errors
    /// A RocksDB read or write that fails; a stored key that does not decode.
    pub fn pop_due(
        &mut self,
        domain: TimeDomain,
        now: i64,
    ) -> Result<Option<(K, i64)>, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => Ok(heap.pop_due(domain, now)),
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.pop_due(domain, now),
        }
    }

    /// Hands pending RocksDB writes to the instance (nothing on the heap), so a
    /// snapshot of other tables of the same instance taken next includes the
    /// timers: written before anything else is and before the next RocksDB
    /// checkpoint is taken (a snapshot's asynchronous part), not on this thread.
    ///
    /// # Errors
    /// None today: writing fails later, where it happens.
    pub fn flush(&mut self) -> Result<(), StateError> {
        match &mut self.backing {
            Backing::Heap(_) => {}
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => rocks.hand_off(),
        }
        Ok(())
    }

    /// The synchronous part of a snapshot: on the heap, every timer encoded by key
    /// group; in RocksDB, pending writes handed off and a RocksDB checkpoint
    /// reserved (taken by the snapshot's asynchronous part).
    ///
    /// # Errors
    /// [`StateError::Encode`] if a key cannot be serialised; a RocksDB write or
    /// checkpoint that fails.
    pub fn snapshot(&mut self, max: MaxParallelism) -> Result<TimersSnapshot, StateError> {
        match &mut self.backing {
            Backing::Heap(heap) => {
                let entries = heap.entries();
                let encoded = HeapTable::encode_by_key_group(
                    &self.name,
                    entries.iter().map(|entry| (entry, &())),
                    max,
                )?;
                Ok(TimersSnapshot::Encoded(encoded))
            }
            #[cfg(feature = "rocksdb")]
            Backing::Rocks(rocks) => Ok(TimersSnapshot::Frozen(Box::new(crate::Frozen::Rocks(
                rocks.freeze()?,
            )))),
        }
    }

    /// Registers the timers of the key groups in `range` from the chunks of a
    /// snapshot (the canonical form); returns how many.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] if a chunk does not decode or holds a timer of another
    /// key group; as [`Timers::register`].
    pub fn restore_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (KeyGroup, &'a [u8])>,
        range: KeyGroupRange,
        max: MaxParallelism,
    ) -> Result<usize, StateError> {
        let mut restored = 0;
        for (group, bytes) in chunks {
            if !range.contains(group) {
                continue;
            }
            let entries: Vec<(TimerEntry<K>, ())> = decode(&self.name, bytes)?;
            for (entry, ()) in entries {
                crate::check_group(&self.name, &entry, group, max)?;
                let time = entry.time();
                self.register(entry.domain, entry.key, time)?;
                restored += 1;
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_times_sort_as_the_times() {
        let times = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in times.windows(2) {
            assert!(ordered_time(pair[0]) < ordered_time(pair[1]));
        }
        for time in times {
            assert_eq!(time_of(ordered_time(time)), time);
        }
    }

    #[test]
    fn an_entry_encodes_as_domain_byte_time_bytes_and_key() {
        let entry = TimerEntry::new(TimeDomain::ProcessingTime, 300u64, -2);
        let mut expected = vec![1];
        expected.extend(ordered_time(-2));
        expected.extend(crate::encode("t", &300u64).unwrap());
        assert_eq!(crate::encode("t", &entry).unwrap(), expected);
        assert_eq!(
            crate::key_group_for_key(&entry, MaxParallelism::DEFAULT),
            crate::key_group_for_key(&300u64, MaxParallelism::DEFAULT)
        );
    }

    #[test]
    fn heap_timers_pop_in_time_order_once_each() {
        let mut timers = Timers::new("t");
        for (key, time) in [(1u32, 30), (2, 10), (3, 20), (2, 10), (4, 40)] {
            timers.register(TimeDomain::EventTime, key, time).unwrap();
        }
        timers.register(TimeDomain::ProcessingTime, 9, 5).unwrap();
        timers.delete(TimeDomain::EventTime, &4, 40).unwrap();
        let mut fired = Vec::new();
        while let Some(timer) = timers.pop_due(TimeDomain::EventTime, 35).unwrap() {
            fired.push(timer);
        }
        assert_eq!(fired, vec![(2, 10), (3, 20), (1, 30)]);
        assert_eq!(
            timers.pop_due(TimeDomain::ProcessingTime, 5).unwrap(),
            Some((9, 5))
        );
        assert_eq!(
            timers.pop_due(TimeDomain::EventTime, i64::MAX).unwrap(),
            None
        );
    }
}

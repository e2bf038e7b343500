//! Key groups: the unit in which keyed state is partitioned, snapshotted and moved
//! between subtasks when a job is rescaled (Flink's scheme).

use crate::{stable_hash, StateError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::Hash;

/// One key group, `0 <= group < max_parallelism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyGroup(u16);

impl KeyGroup {
    /// Wraps a raw key-group number.
    pub const fn new(group: u16) -> Self {
        Self(group)
    }

    /// The raw key-group number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for KeyGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kg{}", self.0)
    }
}

/// The number of key groups of a job: the upper bound of its parallelism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MaxParallelism(u16);

impl MaxParallelism {
    /// Flink's default for small jobs, and weir's: 128 key groups.
    pub const DEFAULT: Self = Self(128);
    /// The largest supported value (Flink's limit).
    pub const LIMIT: u16 = 32_768;

    /// Validates and wraps a max parallelism.
    ///
    /// # Errors
    /// [`StateError::Config`] unless `1 <= value <= 32768`.
    pub fn new(value: usize) -> Result<Self, StateError> {
        if value == 0 || value > usize::from(Self::LIMIT) {
            return Err(StateError::Config(format!(
                "max parallelism must be between 1 and {}, got {value}",
                Self::LIMIT
            )));
        }
        Ok(Self(value as u16))
    }

    /// The number of key groups.
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

impl Default for MaxParallelism {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The key group of a key: `stable_hash(key) % max_parallelism`.
#[inline]
pub fn key_group_for_key<K: Hash + ?Sized>(key: &K, max: MaxParallelism) -> KeyGroup {
    key_group_for_hash(stable_hash(key), max)
}

/// The key group of an already computed stable hash.
#[inline]
pub fn key_group_for_hash(hash: u64, max: MaxParallelism) -> KeyGroup {
    KeyGroup((hash % max.0 as u64) as u16)
}

/// A contiguous, inclusive range of key groups owned by one subtask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: u16,
    /// Last key group of the range (inclusive); `end < start` means empty.
    pub end: u16,
}

impl KeyGroupRange {
    /// The range of key groups subtask `index` of `parallelism` owns:
    /// `[ceil(index * max / p), ceil((index + 1) * max / p) - 1]`.
    ///
    /// Every key group belongs to exactly one subtask, and the ranges are contiguous
    /// and ordered by subtask index. Requires `1 <= parallelism <= max` and
    /// `index < parallelism` (validated when the job is built).
    pub fn for_subtask(max: MaxParallelism, parallelism: usize, index: usize) -> Self {
        let max = max.get();
        let start = (index * max).div_ceil(parallelism);
        let end = ((index + 1) * max).div_ceil(parallelism);
        Self {
            start: start as u16,
            end: (end as u16).wrapping_sub(1),
        }
    }

    /// The subtask (of `parallelism`) that owns `group`: `group * p / max`.
    #[inline]
    pub fn subtask_for(group: KeyGroup, max: MaxParallelism, parallelism: usize) -> usize {
        usize::from(group.0) * parallelism / max.get()
    }

    /// Whether `group` lies in the range.
    #[inline]
    pub fn contains(&self, group: KeyGroup) -> bool {
        self.start <= group.0 && group.0 <= self.end && self.end != u16::MAX
    }

    /// The number of key groups in the range.
    pub fn len(&self) -> usize {
        if self.end < self.start || self.end == u16::MAX {
            0
        } else {
            usize::from(self.end - self.start) + 1
        }
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the two ranges share a key group.
    pub fn overlaps(&self, other: &KeyGroupRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start <= other.end && other.start <= self.end
    }

    /// The key groups of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup> {
        let (start, len) = (self.start, self.len() as u16);
        (0..len).map(move |i| KeyGroup(start + i))
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}..={}]", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ranges_overlap_exactly_when_they_share_a_group(a in 0u16..40, b in 0u16..40, c in 0u16..40, d in 0u16..40) {
            let (x, y) = (KeyGroupRange { start: a, end: b }, KeyGroupRange { start: c, end: d });
            let shared = x.iter().any(|g| y.contains(g));
            prop_assert_eq!(x.overlaps(&y), shared);
            prop_assert_eq!(y.overlaps(&x), shared);
        }

        #[test]
        fn ranges_cover_every_group_exactly_once(max in 1usize..=1024, p_seed in 0usize..1024) {
            let max_p = MaxParallelism::new(max).unwrap();
            let p = p_seed % max + 1;
            let mut owner = vec![usize::MAX; max];
            for index in 0..p {
                let range = KeyGroupRange::for_subtask(max_p, p, index);
                prop_assert!(!range.is_empty(), "subtask {index} of {p} owns nothing (max {max})");
                for group in range.iter() {
                    prop_assert_eq!(owner[group.get() as usize], usize::MAX);
                    owner[group.get() as usize] = index;
                    prop_assert_eq!(KeyGroupRange::subtask_for(group, max_p, p), index);
                }
            }
            prop_assert!(owner.iter().all(|&o| o != usize::MAX));
        }

        #[test]
        fn key_groups_are_stable_and_in_range(key in any::<i64>(), max in 1usize..=32768) {
            let max_p = MaxParallelism::new(max).unwrap();
            let a = key_group_for_key(&key, max_p);
            let b = key_group_for_key(&key, max_p);
            prop_assert_eq!(a, b);
            prop_assert!((a.get() as usize) < max);
        }
    }

    #[test]
    fn invalid_max_parallelism_is_an_error() {
        assert!(MaxParallelism::new(0).is_err());
        assert!(MaxParallelism::new(32_769).is_err());
        assert_eq!(MaxParallelism::new(128).unwrap(), MaxParallelism::DEFAULT);
    }
}

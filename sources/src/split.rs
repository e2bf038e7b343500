//! Which sequence numbers a source subtask still has to emit, and how that position
//! is checkpointed and redistributed when the parallelism changes.
//!
//! Every generator source (the sequences of this crate, the bids and Nexmark events
//! of `weir-nexmark`) emits a pure function of a sequence number, so its whole
//! position is the set of numbers not yet emitted. That set is kept as a short list
//! of arithmetic progressions (strides): a contiguous range is a progression of
//! step 1, the numbers `k, k + P, k + 2P, …` one of step `P`.
//!
//! ```text
//!  fresh start:  subtask k of P ──▶ [Stride]            (one range or one progression)
//!  checkpoint:   subtask k ──put_operator(name)──▶ the strides it has not finished
//!  restore, same P:       subtask k gets back its own strides
//!  restore, P changed:    all old strides, in old subtask order; new subtask k takes
//!                         those at positions k, k + P, … (each stride goes to exactly
//!                         one new subtask, so nothing is lost or emitted twice)
//! ```

use serde::{Deserialize, Serialize};
use weir_dataflow::state::{decode, encode};
use weir_dataflow::{OperatorContext, Result, SnapshotContext};

/// The numbers `next, next + step, …` up to and including `last`; never empty
/// (`next <= last`, `step >= 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stride {
    next: u64,
    last: u64,
    step: u64,
}

/// A run of numbers taken from the position: `first, first + step, …`, `count` of
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The first number.
    pub first: u64,
    /// The distance between consecutive numbers.
    pub step: u64,
    /// How many numbers (at least 1).
    pub count: u64,
}

/// The numbers a source subtask still has to emit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Pending strides; the first one is emitted first.
    strides: Vec<Stride>,
}

impl Position {
    /// Subtask `index` of `parallelism` owns the `index`-th of `parallelism`
    /// contiguous ranges of `first..=last`, split as Flink's `NumberSequenceSource`
    /// does: every range has `count / parallelism` numbers, the first
    /// `count % parallelism` ranges one more. Empty if `first > last` or there are
    /// fewer numbers than subtasks and this one gets none.
    pub fn contiguous(first: u64, last: u64, index: usize, parallelism: usize) -> Self {
        let mut position = Self::default();
        if first > last || parallelism == 0 || index >= parallelism {
            return position;
        }
        // `last - first + 1` may be 2^64; compute in u128.
        let total = u128::from(last - first) + 1;
        let parts = parallelism as u128;
        let index = index as u128;
        let base = total / parts;
        let extra = total % parts;
        let start = index * base + index.min(extra);
        let len = base + u128::from(index < extra);
        if len > 0 {
            // start + len - 1 < total, so both fit in u64 once offset by `first`.
            let next = first + start as u64;
            let last = first + (start + len - 1) as u64;
            position.strides.push(Stride {
                next,
                last,
                step: 1,
            });
        }
        position
    }

    /// Subtask `index` of `parallelism` owns `first + index, first + index +
    /// parallelism, …` up to `last`.
    pub fn interleaved(first: u64, last: u64, index: usize, parallelism: usize) -> Self {
        let mut position = Self::default();
        if first > last || parallelism == 0 || index >= parallelism {
            return position;
        }
        if let Some(next) = first.checked_add(index as u64).filter(|n| *n <= last) {
            position.strides.push(Stride {
                next,
                last,
                step: parallelism as u64,
            });
        }
        position
    }

    /// Whether every number has been taken.
    pub fn is_finished(&self) -> bool {
        self.strides.is_empty()
    }

    /// Takes up to `max` numbers of the current stride (fewer at the end of a stride;
    /// `None` when finished or `max` is 0).
    pub fn take(&mut self, max: u64) -> Option<Run> {
        let stride = self.strides.first_mut()?;
        if max == 0 {
            return None;
        }
        // Steps after `next`; the stride holds `span + 1` numbers (up to 2^64).
        let span = (stride.last - stride.next) / stride.step;
        let run = Run {
            first: stride.next,
            step: stride.step,
            count: if max > span { span + 1 } else { max },
        };
        if max > span {
            self.strides.remove(0);
        } else {
            // max <= span, so the new `next` is at most `last`.
            stride.next += max * stride.step;
        }
        Some(run)
    }

    /// Replaces this fresh position with the one restored under `name`, if any:
    /// this subtask's own position when the parallelism is unchanged, its share of
    /// all previous subtasks' positions when it changed.
    ///
    /// # Errors
    /// [`weir_dataflow::DataflowError::State`] if a restored position is corrupt.
    pub fn restore(&mut self, name: &str, cx: &OperatorContext) -> Result<()> {
        if let Some(bytes) = cx.restored_operator.get(name) {
            self.strides = decode_strides(name, bytes)?;
            return Ok(());
        }
        let mut previous = Vec::new();
        let mut found = false;
        for state in &cx.restored_operator_all {
            if let Some(bytes) = state.get(name) {
                found = true;
                previous.extend(decode_strides(name, bytes)?);
            }
        }
        if found {
            let parallelism = cx.subtask.parallelism.max(1);
            self.strides = previous
                .into_iter()
                .enumerate()
                .filter(|(at, _)| at % parallelism == cx.subtask.index)
                .map(|(_, stride)| stride)
                .collect();
        }
        Ok(())
    }

    /// Writes the pending strides into the checkpoint under `name` (also when
    /// finished, so a restored subtask knows it has nothing left).
    ///
    /// # Errors
    /// [`weir_dataflow::DataflowError::State`] if encoding fails.
    pub fn snapshot(&self, name: &str, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(name, encode(name, &self.strides)?);
        Ok(())
    }
}

fn decode_strides(name: &str, bytes: &[u8]) -> Result<Vec<Stride>> {
    let strides: Vec<Stride> = decode(name, bytes)?;
    if let Some(bad) = strides.iter().find(|s| s.step == 0 || s.next > s.last) {
        return Err(weir_dataflow::state::StateError::Corrupt {
            state: name.to_string(),
            reason: format!(
                "invalid position {}..={} step {}: expected next <= last and step >= 1",
                bad.next, bad.last, bad.step
            ),
        }
        .into());
    }
    Ok(strides)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use weir_dataflow::state::MaxParallelism;
    use weir_dataflow::{CheckpointId, SubtaskInfo};

    fn drain(mut position: Position, chunk: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(run) = position.take(chunk) {
            out.extend((0..run.count).map(|j| run.first + j * run.step));
        }
        out
    }

    fn info(index: usize, parallelism: usize) -> SubtaskInfo {
        weir_dataflow::testing::subtask_info("test", index, parallelism)
    }

    fn snapshot_bytes(position: &Position) -> BTreeMap<String, Vec<u8>> {
        let mut cx = SnapshotContext::new(CheckpointId::new(1), false, MaxParallelism::default());
        position.snapshot("pos", &mut cx).unwrap();
        cx.into_snapshot().unwrap().operator
    }

    #[test]
    fn contiguous_split_matches_flink() {
        let ranges: Vec<Vec<u64>> = (0..3)
            .map(|k| drain(Position::contiguous(1, 10, k, 3), 100))
            .collect();
        assert_eq!(ranges[0], vec![1, 2, 3, 4]);
        assert_eq!(ranges[1], vec![5, 6, 7]);
        assert_eq!(ranges[2], vec![8, 9, 10]);
        assert!(Position::contiguous(1, 2, 2, 3).is_finished());
        assert!(Position::contiguous(5, 4, 0, 1).is_finished());
    }

    #[test]
    fn full_u64_range_does_not_overflow() {
        let mut position = Position::contiguous(0, u64::MAX, 0, 1);
        let run = position.take(u64::MAX).unwrap();
        assert_eq!((run.first, run.count), (0, u64::MAX));
        let run = position.take(u64::MAX).unwrap();
        assert_eq!((run.first, run.count), (u64::MAX, 1));
        assert!(position.is_finished());
        let mut position = Position::interleaved(u64::MAX - 1, u64::MAX, 0, 3);
        assert_eq!(position.take(10).map(|r| r.count), Some(1));
        assert!(position.is_finished());
    }

    #[test]
    fn corrupt_position_is_an_error() {
        let bytes = encode(
            "pos",
            &vec![Stride {
                next: 5,
                last: 4,
                step: 1,
            }],
        )
        .unwrap();
        let mut cx = OperatorContext::fresh(info(0, 1));
        cx.restored_operator.insert("pos".into(), bytes);
        let err = Position::default().restore("pos", &cx).unwrap_err();
        assert!(err.to_string().contains("invalid position"), "{err}");
    }

    proptest! {
        /// Taking some numbers, checkpointing, restoring at any parallelism and
        /// draining yields every number exactly once.
        #[test]
        fn restore_at_any_parallelism_is_exactly_once(
            first in 0u64..50,
            len in 0u64..200,
            old_p in 1usize..5,
            new_p in 1usize..5,
            interleaved in any::<bool>(),
            taken in proptest::collection::vec(0u64..40, 5),
            chunk in 1u64..17,
        ) {
            let last = first + len;
            let mut emitted = Vec::new();
            let mut states = Vec::new();
            for (k, &take) in taken.iter().enumerate().take(old_p) {
                let mut position = if interleaved {
                    Position::interleaved(first, last, k, old_p)
                } else {
                    Position::contiguous(first, last, k, old_p)
                };
                let mut left = take;
                while left > 0 {
                    let Some(run) = position.take(left.min(chunk)) else { break };
                    emitted.extend((0..run.count).map(|j| run.first + j * run.step));
                    left -= run.count;
                }
                states.push(snapshot_bytes(&position));
            }
            for k in 0..new_p {
                let mut cx = OperatorContext::fresh(info(k, new_p));
                if new_p == old_p {
                    cx.restored_operator = states[k].clone();
                } else {
                    cx.restored_operator_all = states.clone();
                }
                let mut position = Position::contiguous(0, 1_000_000, k, new_p);
                position.restore("pos", &cx).unwrap();
                emitted.extend(drain(position, chunk));
            }
            emitted.sort_unstable();
            let expected: Vec<u64> = (first..=last).collect();
            prop_assert_eq!(emitted, expected);
        }
    }
}

//! Barrier alignment, as pure logic: which inputs to read while a checkpoint's
//! barriers arrive, and when the checkpoint is aligned.
//!
//! Once `Barrier(n)` arrives on an input, that input is not read until `Barrier(n)`
//! has arrived on every input still open. Then the task snapshots, forwards the
//! barrier and reads all inputs again. A newer barrier arriving while an older one
//! is aligning supersedes it (the older checkpoint was aborted upstream).

use weir_checkpoint::Barrier;

/// What the task must do after an input delivered a barrier or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignmentStep {
    /// Keep reading the inputs that are not blocked.
    Continue,
    /// Every open input delivered this barrier: snapshot and forward it now.
    Aligned(Barrier),
}

/// Tracks the barriers of one task's inputs.
#[derive(Clone, Debug)]
pub struct BarrierAligner {
    blocked: Vec<bool>,
    ended: Vec<bool>,
    pending: Option<Barrier>,
}

impl BarrierAligner {
    /// An aligner for `inputs` input channels.
    pub fn new(inputs: usize) -> Self {
        Self {
            blocked: vec![false; inputs],
            ended: vec![false; inputs],
            pending: None,
        }
    }

    /// Whether `input` must not be read now.
    #[inline]
    pub fn is_blocked(&self, input: usize) -> bool {
        self.blocked[input]
    }

    /// The barrier being aligned, if any.
    pub fn pending(&self) -> Option<Barrier> {
        self.pending
    }

    /// `input` delivered `barrier`.
    pub fn on_barrier(&mut self, input: usize, barrier: Barrier) -> AlignmentStep {
        match self.pending {
            Some(pending) if barrier.id < pending.id => return AlignmentStep::Continue,
            Some(pending) if barrier.id > pending.id => {
                self.blocked.iter_mut().for_each(|b| *b = false);
                self.pending = Some(barrier);
            }
            Some(_) => {}
            None => self.pending = Some(barrier),
        }
        self.blocked[input] = true;
        self.check_aligned()
    }

    /// `input` ended: it will deliver no more barriers.
    pub fn on_end(&mut self, input: usize) -> AlignmentStep {
        self.ended[input] = true;
        self.blocked[input] = false;
        if self.pending.is_some() {
            self.check_aligned()
        } else {
            AlignmentStep::Continue
        }
    }

    fn check_aligned(&mut self) -> AlignmentStep {
        let aligned = self
            .blocked
            .iter()
            .zip(&self.ended)
            .all(|(&blocked, &ended)| blocked || ended);
        match self.pending {
            Some(barrier) if aligned => {
                self.pending = None;
                self.blocked.iter_mut().for_each(|b| *b = false);
                AlignmentStep::Aligned(barrier)
            }
            _ => AlignmentStep::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_checkpoint::CheckpointId;

    fn barrier(n: u64) -> Barrier {
        Barrier::checkpoint(CheckpointId::new(n), 0)
    }

    #[test]
    fn aligns_once_every_input_delivered() {
        let mut aligner = BarrierAligner::new(3);
        assert_eq!(aligner.on_barrier(1, barrier(1)), AlignmentStep::Continue);
        assert!(aligner.is_blocked(1) && !aligner.is_blocked(0));
        assert_eq!(aligner.on_barrier(0, barrier(1)), AlignmentStep::Continue);
        assert_eq!(
            aligner.on_barrier(2, barrier(1)),
            AlignmentStep::Aligned(barrier(1))
        );
        assert!(!aligner.is_blocked(0) && !aligner.is_blocked(1));
    }

    #[test]
    fn ended_inputs_count_as_aligned() {
        let mut aligner = BarrierAligner::new(2);
        assert_eq!(aligner.on_barrier(0, barrier(4)), AlignmentStep::Continue);
        assert_eq!(aligner.on_end(1), AlignmentStep::Aligned(barrier(4)));
        assert_eq!(
            aligner.on_barrier(0, barrier(5)),
            AlignmentStep::Aligned(barrier(5))
        );
    }

    #[test]
    fn newer_barrier_supersedes_an_aborted_one() {
        let mut aligner = BarrierAligner::new(2);
        aligner.on_barrier(0, barrier(1));
        assert_eq!(aligner.on_barrier(1, barrier(2)), AlignmentStep::Continue);
        assert!(!aligner.is_blocked(0));
        assert_eq!(
            aligner.on_barrier(0, barrier(2)),
            AlignmentStep::Aligned(barrier(2))
        );
        assert_eq!(aligner.on_barrier(1, barrier(1)), AlignmentStep::Continue);
    }
}

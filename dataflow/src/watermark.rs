//! Watermark merging, as pure logic: the watermark a task (or a source subtask)
//! emits, given the watermark and idleness of each of its inputs (input channels,
//! or a source's splits).
//!
//! ```text
//!  input 0: wm 12          ┐
//!  input 1: wm  9          ├─ min over active inputs = 9 ─▶ emitted only when it advances
//!  input 2: idle (wm 30)   ┘
//!  every input idle ─▶ the largest watermark any reached (if it advances), then Idle, once
//! ```
//!
//! A task's watermark is the minimum over its inputs that are neither idle nor
//! ended; it is emitted only when it moves past the last one emitted, so the
//! watermarks a task emits strictly increase. Idle inputs hold nothing back. When
//! every input is idle, the task advances to the largest watermark any of them
//! reached (as Flink's watermark valve does) and declares itself idle downstream, once
//! until records or a watermark arrive again.
//!
//! ```
//! use weir_dataflow::{InputWatermarks, Timestamp, WatermarkStep};
//! let mut inputs = InputWatermarks::new(2);
//! assert_eq!(inputs.on_watermark(0, Timestamp(10)), WatermarkStep::Hold); // input 1 holds it back
//! assert_eq!(inputs.on_watermark(1, Timestamp(7)), WatermarkStep::Advance(Timestamp(7)));
//! assert_eq!(inputs.on_idle(1), WatermarkStep::Advance(Timestamp(10)));
//! assert_eq!(inputs.on_idle(0), WatermarkStep::GoIdle { advance: None });
//! ```

use crate::Timestamp;

/// What a task emits after its inputs' watermarks or idleness changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkStep {
    /// Nothing.
    Hold,
    /// This watermark (larger than any emitted before).
    Advance(Timestamp),
    /// Every input is idle: emit `advance` if any (the largest watermark an input
    /// reached, when it is larger than any emitted before), then `Idle`.
    GoIdle {
        /// The watermark to emit before going idle.
        advance: Option<Timestamp>,
    },
}

impl WatermarkStep {
    /// The watermark to emit, if any.
    pub fn watermark(self) -> Option<Timestamp> {
        match self {
            Self::Hold => None,
            Self::Advance(watermark) => Some(watermark),
            Self::GoIdle { advance } => advance,
        }
    }

    /// Whether the task goes idle downstream (after the watermark, if any).
    pub fn goes_idle(self) -> bool {
        matches!(self, Self::GoIdle { .. })
    }
}

/// The watermark of one input and whether it is idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputWatermark {
    /// The largest watermark the input delivered.
    pub watermark: Timestamp,
    /// Whether the input is idle (holds no watermark back).
    pub idle: bool,
}

/// What a task emitted so far, and the rule that decides what it emits next from
/// its inputs' watermarks. Allocation-free; the inputs are passed in on each call,
/// so a source can pass its splits as they are.
#[derive(Clone, Debug)]
pub struct WatermarkValve {
    emitted: Timestamp,
    idle_emitted: bool,
}

impl Default for WatermarkValve {
    fn default() -> Self {
        Self::new()
    }
}

impl WatermarkValve {
    /// A valve that has emitted nothing.
    pub fn new() -> Self {
        Self {
            emitted: Timestamp::MIN,
            idle_emitted: false,
        }
    }

    /// The last watermark emitted ([`Timestamp::MIN`] before the first).
    #[inline]
    pub fn emitted(&self) -> Timestamp {
        self.emitted
    }

    /// Records or a watermark flowed: the task is active again, so it declares
    /// itself idle again the next time every input is idle.
    #[inline]
    pub fn on_activity(&mut self) {
        self.idle_emitted = false;
    }

    /// What to emit given the inputs as they are now (ended inputs left out):
    /// the minimum watermark over the inputs that are not idle, when it advances.
    /// When every input is idle (and there is at least one) and `may_go_idle`, the
    /// task goes idle, once until [`WatermarkValve::on_activity`].
    pub fn update<I>(&mut self, inputs: I, may_go_idle: bool) -> WatermarkStep
    where
        I: Iterator<Item = InputWatermark> + Clone,
    {
        let combined = inputs
            .clone()
            .filter(|i| !i.idle)
            .map(|i| i.watermark)
            .min();
        match combined {
            Some(combined) if combined > self.emitted => {
                self.emitted = combined;
                WatermarkStep::Advance(combined)
            }
            Some(_) => WatermarkStep::Hold,
            None if may_go_idle && !self.idle_emitted => {
                let mut inputs = inputs.peekable();
                if inputs.peek().is_none() {
                    return WatermarkStep::Hold;
                }
                let advance = inputs
                    .map(|i| i.watermark)
                    .max()
                    .filter(|max| *max > self.emitted);
                if let Some(advance) = advance {
                    self.emitted = advance;
                }
                self.idle_emitted = true;
                WatermarkStep::GoIdle { advance }
            }
            None => WatermarkStep::Hold,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct InputState {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// The watermarks of a task's input channels: each input's largest watermark, its
/// idleness and whether it ended, merged by a [`WatermarkValve`].
#[derive(Clone, Debug)]
pub struct InputWatermarks {
    inputs: Vec<InputState>,
    valve: WatermarkValve,
}

impl InputWatermarks {
    /// `inputs` inputs, none with a watermark yet, none idle.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![
                InputState {
                    watermark: Timestamp::MIN,
                    idle: false,
                    ended: false,
                };
                inputs
            ],
            valve: WatermarkValve::new(),
        }
    }

    /// The last watermark emitted ([`Timestamp::MIN`] before the first).
    #[inline]
    pub fn emitted(&self) -> Timestamp {
        self.valve.emitted()
    }

    /// `input` delivered records: it is active again. Emits nothing.
    #[inline]
    pub fn on_batch(&mut self, input: usize) {
        self.inputs[input].idle = false;
        self.valve.on_activity();
    }

    /// `input` delivered `watermark`: it is active again, and its watermark never
    /// goes back.
    pub fn on_watermark(&mut self, input: usize, watermark: Timestamp) -> WatermarkStep {
        let state = &mut self.inputs[input];
        state.idle = false;
        state.watermark = state.watermark.max(watermark);
        self.valve.on_activity();
        self.update(false)
    }

    /// `input` went idle: it holds nothing back; when every open input is idle, the
    /// task goes idle.
    pub fn on_idle(&mut self, input: usize) -> WatermarkStep {
        self.inputs[input].idle = true;
        self.update(true)
    }

    /// `input` ended: it holds nothing back. The task does not go idle because of it.
    pub fn on_end(&mut self, input: usize) -> WatermarkStep {
        self.inputs[input].ended = true;
        self.update(false)
    }

    fn update(&mut self, may_go_idle: bool) -> WatermarkStep {
        let open = self
            .inputs
            .iter()
            .filter(|i| !i.ended)
            .map(|i| InputWatermark {
                watermark: i.watermark,
                idle: i.idle,
            });
        self.valve.update(open, may_go_idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    #[test]
    fn the_minimum_over_active_inputs_goes_out_when_it_advances() {
        let mut inputs = InputWatermarks::new(3);
        assert_eq!(inputs.on_watermark(0, ts(5)), WatermarkStep::Hold);
        assert_eq!(inputs.on_watermark(1, ts(3)), WatermarkStep::Hold);
        assert_eq!(inputs.on_watermark(2, ts(4)), WatermarkStep::Advance(ts(3)));
        assert_eq!(
            inputs.on_watermark(1, ts(2)),
            WatermarkStep::Hold,
            "never back"
        );
        assert_eq!(inputs.on_watermark(1, ts(9)), WatermarkStep::Advance(ts(4)));
        assert_eq!(
            inputs.on_watermark(2, ts(4)),
            WatermarkStep::Hold,
            "no repeat"
        );
        assert_eq!(inputs.emitted(), ts(4));
    }

    #[test]
    fn idle_inputs_hold_nothing_back_and_all_idle_goes_idle_once() {
        let mut inputs = InputWatermarks::new(2);
        assert_eq!(inputs.on_watermark(0, ts(10)), WatermarkStep::Hold);
        assert_eq!(inputs.on_idle(1), WatermarkStep::Advance(ts(10)));
        assert_eq!(
            inputs.on_idle(0),
            WatermarkStep::GoIdle { advance: None },
            "10 is out already"
        );
        assert_eq!(inputs.on_idle(0), WatermarkStep::Hold, "idle once");
        // Records make the task active; idle again means Idle again.
        inputs.on_batch(0);
        assert_eq!(inputs.on_idle(0), WatermarkStep::GoIdle { advance: None });
    }

    #[test]
    fn all_idle_advances_to_the_largest_watermark_first() {
        let mut inputs = InputWatermarks::new(2);
        assert_eq!(inputs.on_watermark(0, ts(10)), WatermarkStep::Hold);
        assert_eq!(inputs.on_watermark(1, ts(4)), WatermarkStep::Advance(ts(4)));
        assert_eq!(inputs.on_idle(0), WatermarkStep::Hold);
        let step = inputs.on_idle(1);
        assert_eq!(
            step,
            WatermarkStep::GoIdle {
                advance: Some(ts(10))
            }
        );
        assert_eq!(step.watermark(), Some(ts(10)));
        assert!(step.goes_idle());
        // A watermark below the emitted one from a woken input changes nothing.
        assert_eq!(inputs.on_watermark(1, ts(6)), WatermarkStep::Hold);
        assert_eq!(
            inputs.on_watermark(1, ts(11)),
            WatermarkStep::Advance(ts(11))
        );
    }

    #[test]
    fn an_ended_input_holds_nothing_back_but_never_makes_the_task_idle() {
        let mut inputs = InputWatermarks::new(3);
        assert_eq!(inputs.on_watermark(0, ts(8)), WatermarkStep::Hold);
        assert_eq!(inputs.on_watermark(1, ts(5)), WatermarkStep::Hold);
        assert_eq!(inputs.on_end(2), WatermarkStep::Advance(ts(5)));
        assert_eq!(inputs.on_idle(0), WatermarkStep::Hold);
        // Input 1 ends: only idle input 0 is left, yet the end does not go idle.
        assert_eq!(inputs.on_end(1), WatermarkStep::Hold);
        // The largest watermark among open inputs only: input 1's 5 is gone.
        assert_eq!(
            inputs.on_idle(0),
            WatermarkStep::GoIdle {
                advance: Some(ts(8))
            }
        );
        assert_eq!(inputs.on_end(0), WatermarkStep::Hold);
    }

    #[test]
    fn no_inputs_never_go_idle() {
        let mut valve = WatermarkValve::new();
        assert_eq!(valve.update(std::iter::empty(), true), WatermarkStep::Hold);
        assert_eq!(valve.emitted(), Timestamp::MIN);
    }

    #[test]
    fn the_valve_goes_idle_again_only_after_activity() {
        let idle = [InputWatermark {
            watermark: ts(3),
            idle: true,
        }];
        let mut valve = WatermarkValve::new();
        assert_eq!(
            valve.update(idle.iter().copied(), false),
            WatermarkStep::Hold
        );
        assert_eq!(
            valve.update(idle.iter().copied(), true),
            WatermarkStep::GoIdle {
                advance: Some(ts(3))
            }
        );
        assert_eq!(
            valve.update(idle.iter().copied(), true),
            WatermarkStep::Hold
        );
        valve.on_activity();
        assert_eq!(
            valve.update(idle.iter().copied(), true),
            WatermarkStep::GoIdle { advance: None }
        );
    }

    #[derive(Clone, Debug)]
    enum Event {
        Batch(usize),
        Watermark(usize, i64),
        Idle(usize),
        End(usize),
    }

    fn events(inputs: usize) -> impl Strategy<Value = Vec<Event>> {
        let event = prop_oneof![
            1 => (0..inputs).prop_map(Event::Batch),
            4 => (0..inputs, -50i64..50).prop_map(|(i, w)| Event::Watermark(i, w)),
            2 => (0..inputs).prop_map(Event::Idle),
            1 => (0..inputs).prop_map(Event::End),
        ];
        proptest::collection::vec(event, 0..60)
    }

    proptest! {
        /// Whatever the events and their interleaving: the emitted watermarks
        /// strictly increase; each `Advance` is the minimum over the open, active
        /// inputs at that moment; after a watermark, an idle input or an end the
        /// task does not lag behind that minimum; and it goes idle only on an `Idle`
        /// with every open input idle.
        #[test]
        fn emitted_watermarks_increase_and_follow_the_active_minimum(
            inputs in 1usize..5,
            seed in events(5),
        ) {
            let events: Vec<Event> = seed
                .into_iter()
                .map(|e| match e {
                    Event::Batch(i) => Event::Batch(i % inputs),
                    Event::Watermark(i, w) => Event::Watermark(i % inputs, w),
                    Event::Idle(i) => Event::Idle(i % inputs),
                    Event::End(i) => Event::End(i % inputs),
                })
                .collect();
            let mut valve = InputWatermarks::new(inputs);
            // The model: per input (watermark, idle, ended).
            let mut model = vec![(Timestamp::MIN, false, false); inputs];
            let mut last = Timestamp::MIN;
            for event in events {
                // Records wake an input but emit nothing (as before the valve): the
                // next watermark, idleness or end brings the task up to date.
                let mut updated = true;
                let (step, idle_event) = match event {
                    Event::Batch(i) if !model[i].2 => {
                        model[i].1 = false;
                        valve.on_batch(i);
                        updated = false;
                        (WatermarkStep::Hold, false)
                    }
                    Event::Watermark(i, w) if !model[i].2 => {
                        model[i].0 = model[i].0.max(Timestamp(w));
                        model[i].1 = false;
                        (valve.on_watermark(i, Timestamp(w)), false)
                    }
                    Event::Idle(i) if !model[i].2 => {
                        model[i].1 = true;
                        (valve.on_idle(i), true)
                    }
                    Event::End(i) if !model[i].2 => {
                        model[i].2 = true;
                        (valve.on_end(i), false)
                    }
                    _ => continue, // nothing arrives on an ended input
                };
                let active_min = model.iter().filter(|m| !m.1 && !m.2).map(|m| m.0).min();
                if let Some(w) = step.watermark() {
                    prop_assert!(w > last, "{w:?} after {last:?}");
                    last = w;
                }
                match step {
                    WatermarkStep::Advance(w) => prop_assert_eq!(Some(w), active_min),
                    WatermarkStep::GoIdle { advance } => {
                        prop_assert!(idle_event);
                        prop_assert_eq!(active_min, None);
                        let open_max = model.iter().filter(|m| !m.2).map(|m| m.0).max();
                        prop_assert_eq!(open_max.map(|m| m.max(last)), Some(last));
                        if let Some(a) = advance {
                            prop_assert_eq!(Some(a), open_max);
                        }
                    }
                    WatermarkStep::Hold => {}
                }
                prop_assert_eq!(valve.emitted(), last);
                if let (Some(min), true) = (active_min, updated) {
                    prop_assert!(last >= min, "lags: {last:?} < {min:?}");
                }
            }
        }

        /// Without idleness, the watermark a task ends up at is the minimum of its
        /// inputs' last watermarks, whatever the interleaving of their deliveries.
        #[test]
        fn the_final_watermark_does_not_depend_on_the_interleaving(
            per_input in proptest::collection::vec(
                proptest::collection::vec(-100i64..100, 1..8), 1..5),
            order in proptest::collection::vec(0usize..5, 0..40),
        ) {
            let mut valve = InputWatermarks::new(per_input.len());
            let mut next = vec![0usize; per_input.len()];
            // A random interleaving, then whatever is left, input by input.
            let tail = (0..per_input.len()).flat_map(|i| std::iter::repeat_n(i, per_input[i].len()));
            for i in order.into_iter().map(|i| i % per_input.len()).chain(tail) {
                if let Some(&w) = per_input[i].get(next[i]) {
                    next[i] += 1;
                    valve.on_watermark(i, Timestamp(w));
                }
            }
            let expected = per_input
                .iter()
                .map(|ws| ws.iter().copied().max().unwrap())
                .min()
                .unwrap();
            prop_assert_eq!(valve.emitted(), Timestamp(expected));
        }
    }
}

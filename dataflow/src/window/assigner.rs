//! Windows and window assigners: tumbling, sliding (hopping), cumulate, session, and
//! Kafka Streams' sliding windows (by time difference).

use crate::{duration_ms, DataflowError, Result, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A time window `[start, end)` in event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond of the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl Window {
    /// The latest timestamp inside the window: the window fires when the watermark
    /// reaches it.
    pub fn max_timestamp(&self) -> Timestamp {
        Timestamp(self.end - 1)
    }

    /// Whether the windows overlap or touch (session windows then merge).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Which windows an element belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window length in ms.
        size: i64,
        /// Offset of window starts from the epoch, in ms.
        offset: i64,
    },
    /// Fixed-size windows starting every `slide` (hopping windows).
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts, in ms.
        slide: i64,
        /// Offset of window starts from the epoch, in ms.
        offset: i64,
    },
    /// Windows that grow by `step` from a common start up to `size`, then start
    /// again (Flink's cumulate windows): `[s, s + step)`, `[s, s + 2·step)`, …,
    /// `[s, s + size)` for every `s` a multiple of `size`.
    Cumulate {
        /// The largest window's length in ms (a multiple of `step`).
        size: i64,
        /// How much each window is longer than the one before, in ms.
        step: i64,
        /// Offset of window starts from the epoch, in ms.
        offset: i64,
    },
    /// Per-key windows of activity, closed by a gap of inactivity.
    Session {
        /// The inactivity gap in ms.
        gap: i64,
    },
    /// Kafka Streams' sliding windows (`SlidingWindows.ofTimeDifferenceAndGrace`):
    /// per key, one window for every distinct set of records whose event times
    /// differ by at most `difference`, each `difference + 1` ms long and inclusive
    /// of its last millisecond; a window fires when the watermark passes its end
    /// plus `grace`. See [`TimeDifferenceAggregate`](super::TimeDifferenceAggregate).
    TimeDifference {
        /// The largest difference between the event times of a window's records,
        /// in ms.
        difference: i64,
        /// How long after its end a window waits for late records, in ms.
        grace: i64,
    },
}

impl WindowAssigner {
    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Self {
        Self::Tumbling {
            size: duration_ms(size),
            offset: 0,
        }
    }

    /// Sliding (hopping) windows of `size`, one starting every `slide`.
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        Self::Sliding {
            size: duration_ms(size),
            slide: duration_ms(slide),
            offset: 0,
        }
    }

    /// Cumulate windows growing by `step` up to `size`.
    pub fn cumulate(size: Duration, step: Duration) -> Self {
        Self::Cumulate {
            size: duration_ms(size),
            step: duration_ms(step),
            offset: 0,
        }
    }

    /// Session windows with inactivity `gap`.
    pub fn session(gap: Duration) -> Self {
        Self::Session {
            gap: duration_ms(gap),
        }
    }

    /// Kafka Streams' sliding windows: records whose event times differ by at most
    /// `difference` share a window; windows fire `grace` after their end.
    pub fn time_difference(difference: Duration, grace: Duration) -> Self {
        Self::TimeDifference {
            difference: duration_ms(difference),
            grace: duration_ms(grace),
        }
    }

    /// Checks the settings; `operator` names the window in the error.
    ///
    /// # Errors
    /// [`DataflowError::InvalidJob`] for a size, slide or gap of 0, or a slide larger
    /// than the size.
    pub fn validate(&self, operator: &str) -> Result<()> {
        let problem = match *self {
            Self::Tumbling { size, .. } if size <= 0 => {
                Some(format!("window size must be positive, got {size} ms"))
            }
            Self::Sliding { size, .. } if size <= 0 => {
                Some(format!("window size must be positive, got {size} ms"))
            }
            Self::Sliding { slide, .. } if slide <= 0 => {
                Some(format!("window slide must be positive, got {slide} ms"))
            }
            Self::Sliding { size, slide, .. } if slide > size => Some(format!(
                "window slide ({slide} ms) must not exceed the window size ({size} ms)"
            )),
            Self::Cumulate { size, step, .. } if size <= 0 || step <= 0 => Some(format!(
                "cumulate window size and step must be positive, got {size} ms and {step} ms"
            )),
            Self::Cumulate { size, step, .. } if size % step != 0 => Some(format!(
                "a cumulate window's size ({size} ms) must be a multiple of its step ({step} ms)"
            )),
            Self::Session { gap } if gap <= 0 => {
                Some(format!("session gap must be positive, got {gap} ms"))
            }
            Self::TimeDifference { difference, .. } if difference <= 0 => Some(format!(
                "a sliding window's time difference must be positive, got {difference} ms"
            )),
            Self::TimeDifference { grace, .. } if grace < 0 => Some(format!(
                "a sliding window's grace must not be negative, got {grace} ms"
            )),
            _ => None,
        };
        match problem {
            Some(message) => Err(DataflowError::invalid(operator, message)),
            None => Ok(()),
        }
    }

    /// Whether windows of this assigner merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, Self::Session { .. })
    }

    /// Calls `f` for every window containing `timestamp` (for sessions: the element's
    /// own window `[t, t + gap)`; for time-difference windows: its left window,
    /// `[t - difference, t]`).
    #[inline]
    pub fn assign(&self, timestamp: i64, mut f: impl FnMut(Window)) {
        match *self {
            Self::Tumbling { size, offset } => {
                let start = timestamp - (timestamp - offset).rem_euclid(size);
                f(Window {
                    start,
                    end: start + size,
                });
            }
            Self::Sliding {
                size,
                slide,
                offset,
            } => {
                let last_start = timestamp - (timestamp - offset).rem_euclid(slide);
                let mut start = last_start;
                while start > timestamp - size {
                    f(Window {
                        start,
                        end: start + size,
                    });
                    start -= slide;
                }
            }
            Self::Cumulate { size, step, offset } => {
                let start = timestamp - (timestamp - offset).rem_euclid(size);
                // The windows from the first end past the timestamp to the largest.
                let mut end = timestamp - (timestamp - start).rem_euclid(step) + step;
                while end <= start + size {
                    f(Window { start, end });
                    end += step;
                }
            }
            Self::Session { gap } => f(Window {
                start: timestamp,
                end: timestamp.saturating_add(gap),
            }),
            Self::TimeDifference { difference, .. } => f(Window {
                start: timestamp.saturating_sub(difference),
                end: timestamp.saturating_add(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(assigner: WindowAssigner, t: i64) -> Vec<Window> {
        let mut out = Vec::new();
        assigner.assign(t, |w| out.push(w));
        out
    }

    #[test]
    fn tumbling_and_sliding() {
        let tumbling = WindowAssigner::tumbling(Duration::from_secs(10));
        assert_eq!(
            windows(tumbling, 10_500),
            vec![Window {
                start: 10_000,
                end: 20_000
            }]
        );
        assert_eq!(
            windows(tumbling, -1),
            vec![Window {
                start: -10_000,
                end: 0
            }]
        );
        let sliding = WindowAssigner::sliding(Duration::from_secs(10), Duration::from_secs(2));
        let w = windows(sliding, 10_500);
        assert_eq!(w.len(), 5);
        assert!(w.iter().all(|w| w.start <= 10_500 && 10_500 < w.end));
    }

    /// A timestamp is in every cumulate window of its cycle whose end is past it.
    #[test]
    fn cumulate_windows_grow_by_step_from_the_cycle_start() {
        let cumulate = WindowAssigner::cumulate(Duration::from_secs(10), Duration::from_secs(2));
        let ends = |t: i64| {
            windows(cumulate, t)
                .iter()
                .map(|w| (w.start, w.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ends(13_500),
            [
                (10_000, 14_000),
                (10_000, 16_000),
                (10_000, 18_000),
                (10_000, 20_000)
            ]
        );
        assert_eq!(
            ends(10_000),
            [
                (10_000, 12_000),
                (10_000, 14_000),
                (10_000, 16_000),
                (10_000, 18_000),
                (10_000, 20_000)
            ]
        );
        assert_eq!(ends(19_999), [(10_000, 20_000)]);
        assert_eq!(ends(-1), [(-10_000, 0)]);
        for t in -25_000..25_000 {
            let all = windows(cumulate, t);
            assert!(all
                .iter()
                .all(|w| w.start <= t && t < w.end && (w.end - w.start) % 2_000 == 0));
        }
        assert!(
            WindowAssigner::cumulate(Duration::from_secs(10), Duration::from_secs(3))
                .validate("c")
                .is_err()
        );
    }

    #[test]
    fn invalid_settings_name_the_operator() {
        let err = WindowAssigner::sliding(Duration::from_secs(1), Duration::from_secs(2))
            .validate("hop")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hop") && err.contains("slide"), "{err}");
        assert!(WindowAssigner::tumbling(Duration::ZERO)
            .validate("t")
            .is_err());
        assert!(WindowAssigner::session(Duration::ZERO)
            .validate("s")
            .is_err());
    }
}

//! The one message type that flows through every channel between tasks.

use crate::Timestamp;
use weir_checkpoint::Barrier;

/// What travels on a channel. Order on one channel is preserved: a watermark or
/// barrier is never reordered with the batches around it.
#[derive(Debug)]
pub enum Message<T> {
    /// A batch of records.
    Batch(Vec<T>),
    /// No record with a smaller timestamp will follow on this channel.
    Watermark(Timestamp),
    /// The channel is idle: it holds no watermark back until its next batch or watermark.
    Idle,
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// No more messages will follow on this channel.
    EndOfInput,
}

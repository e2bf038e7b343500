//! Exchanges: the end of a chain that writes to the bounded channels of the next
//! task, partitioning records and batching them (flush on size or after a linger).

use crate::stage::{ChainSnapshots, Stage};
use crate::OperatorMetrics;
use crate::{DataflowError, Message, Result, Timestamp};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_checkpoint::{Barrier, CheckpointId};
use weir_state::{key_group_for_hash, KeyGroupRange, MaxParallelism};

/// How records are spread over the subtasks of the receiving operator.
pub(crate) enum Partitioner<T> {
    /// Subtask i sends to subtask i (equal parallelism) or round-robin otherwise.
    Forward,
    /// Round-robin, batch by batch.
    Rebalance,
    /// Every record to every subtask.
    Broadcast,
    /// By key group of the record's stable key hash; `targets[group]` is the owner.
    Hash {
        hash: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
        max: MaxParallelism,
        targets: Arc<[u16]>,
    },
}

impl<T> Partitioner<T> {
    pub(crate) fn hash(
        hash: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
        max: MaxParallelism,
        parallelism: usize,
    ) -> Self {
        let targets: Arc<[u16]> = (0..max.get())
            .map(|g| {
                KeyGroupRange::subtask_for(weir_state::KeyGroup::new(g as u16), max, parallelism)
                    as u16
            })
            .collect();
        Self::Hash { hash, max, targets }
    }
}

/// Writes a task's output to the channels of one edge.
pub(crate) struct ExchangeWriter<T, U, C> {
    pub(crate) partitioner: Partitioner<T>,
    pub(crate) convert: C,
    pub(crate) senders: Vec<Sender<Message<U>>>,
    pub(crate) buffers: Vec<Vec<U>>,
    pub(crate) batch_size: usize,
    pub(crate) linger: Duration,
    pub(crate) last_flush: Instant,
    pub(crate) next_target: usize,
    pub(crate) task: String,
    /// This (sending) subtask's index.
    pub(crate) own_index: usize,
    /// `Forward` between equal parallelisms: subtask i sends only to subtask i.
    pub(crate) pointwise: bool,
    /// End of input was sent: later barriers (checkpoints of a finished task) are not
    /// forwarded, the receivers treat the ended channel as aligned.
    pub(crate) ended: bool,
    /// The sending operator subtask's counters (time blocked on a full channel).
    pub(crate) metrics: Arc<OperatorMetrics>,
}

impl<T, U, C> ExchangeWriter<T, U, C>
where
    U: Clone + Send,
    C: Fn(T) -> U + Send,
{
    fn send(&self, target: usize, message: Message<U>) -> Result<()> {
        let stopped = || DataflowError::TaskFailed {
            task: self.task.clone(),
            message: "a downstream task stopped receiving".into(),
        };
        match self.senders[target].try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                // Backpressure: the receiver is behind. Time the wait.
                let blocked = Instant::now();
                let sent = self.senders[target].send(message).map_err(|_| stopped());
                let waited = u64::try_from(blocked.elapsed().as_nanos()).unwrap_or(u64::MAX);
                OperatorMetrics::add(&self.metrics.backpressure_ns, waited);
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    #[inline]
    fn flush_target(&mut self, target: usize) -> Result<()> {
        if self.buffers[target].is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.buffers[target],
            Vec::with_capacity(self.batch_size),
        );
        self.send(target, Message::Batch(full))
    }

    fn flush_all(&mut self) -> Result<()> {
        for target in 0..self.senders.len() {
            self.flush_target(target)?;
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    fn broadcast_control(&mut self, message: impl Fn() -> Message<U>) -> Result<()> {
        self.flush_all()?;
        for target in 0..self.senders.len() {
            self.send(target, message())?;
        }
        Ok(())
    }
}

impl<T, U, C> Stage<T> for ExchangeWriter<T, U, C>
where
    T: Send,
    U: Clone + Send,
    C: Fn(T) -> U + Send,
{
    fn open(&mut self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        let n = self.senders.len();
        let target = match &self.partitioner {
            Partitioner::Hash { hash, max, targets } => {
                let (hash, max, targets) = (hash.clone(), *max, targets.clone());
                for record in batch.drain(..) {
                    let group = key_group_for_hash(hash(&record), max);
                    let target = usize::from(targets[usize::from(group.get())]);
                    self.buffers[target].push((self.convert)(record));
                    if self.buffers[target].len() >= self.batch_size {
                        self.flush_target(target)?;
                    }
                }
                return Ok(());
            }
            Partitioner::Broadcast => {
                let convert = &self.convert;
                let converted: Vec<U> = batch.drain(..).map(convert).collect();
                for target in 0..n {
                    self.buffers[target].extend_from_slice(&converted);
                    if self.buffers[target].len() >= self.batch_size {
                        self.flush_target(target)?;
                    }
                }
                return Ok(());
            }
            Partitioner::Forward if self.pointwise => self.own_index,
            Partitioner::Forward | Partitioner::Rebalance => {
                self.next_target = (self.next_target + 1) % n;
                self.next_target
            }
        };
        let convert = &self.convert;
        self.buffers[target].extend(batch.drain(..).map(convert));
        if self.buffers[target].len() >= self.batch_size {
            self.flush_target(target)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.broadcast_control(|| Message::Watermark(watermark))
    }

    fn idle(&mut self) -> Result<()> {
        self.broadcast_control(|| Message::Idle)
    }

    fn tick(&mut self, _: Timestamp) -> Result<()> {
        if self.last_flush.elapsed() >= self.linger {
            self.flush_all()?;
        }
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier, _: &mut ChainSnapshots) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.broadcast_control(|| Message::Barrier(barrier))
    }

    fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        self.broadcast_control(|| Message::EndOfInput)?;
        self.ended = true;
        Ok(())
    }
}

//! Records crossing worker processes: where a job's subtasks run ([`Placement`]),
//! how records are encoded ([`WireCodec`], registered per type with
//! [`crate::JobBuilder::wire_codec`]), and the bridges between the in-process
//! channels of the runtime and the logical channels of the data plane (`weir-net`).
//!
//! A channel between two subtasks on one worker stays a crossbeam channel. A channel
//! to a subtask on another worker is a crossbeam channel into an outbound bridge
//! thread, which encodes each [`Message`] and sends it with credit; on the other
//! worker an inbound bridge decodes it into the crossbeam channel the receiving task
//! reads. Exchanges, gates, barrier alignment and watermarks are unchanged: a
//! barrier or watermark is one more message of its channel, in order.

use crate::{DataflowError, Message, Result, Timestamp};
use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_checkpoint::Barrier;
pub use weir_net::{ChannelId, NetError, Network, WorkerId};

/// Encodes and decodes batches of records of type `T` for the data plane.
pub trait WireCodec<T>: Send + Sync + 'static {
    /// Appends `records` to `out`.
    ///
    /// # Errors
    /// A record cannot be encoded.
    fn encode(&self, records: &[T], out: &mut Vec<u8>) -> Result<()>;

    /// The records `bytes` hold (what [`WireCodec::encode`] wrote).
    ///
    /// # Errors
    /// The bytes are not an encoding of records of type `T`.
    fn decode(&self, bytes: &[u8]) -> Result<Vec<T>>;
}

/// The codec of any serde type: bincode, as state and checkpoints use.
#[derive(Clone, Copy, Debug, Default)]
pub struct SerdeCodec;

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> WireCodec<T> for SerdeCodec {
    fn encode(&self, records: &[T], out: &mut Vec<u8>) -> Result<()> {
        bincode::serde::encode_into_std_write(records, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| DataflowError::invalid("wire codec", format!("cannot encode: {e}")))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<T>> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(records, _)| records)
            .map_err(|e| {
                DataflowError::invalid(
                    "wire codec",
                    format!(
                        "cannot decode {} bytes as records of `{}`: {e}",
                        bytes.len(),
                        std::any::type_name::<T>()
                    ),
                )
            })
    }
}

/// The codec of a two-input operator's records: runs of one side, each encoded with
/// that side's codec.
pub(crate) struct EitherCodec<A, B> {
    pub(crate) left: Arc<dyn WireCodec<A>>,
    pub(crate) right: Arc<dyn WireCodec<B>>,
}

impl<A: Clone + 'static, B: Clone + 'static> WireCodec<crate::join::Either<A, B>>
    for EitherCodec<A, B>
{
    fn encode(&self, records: &[crate::join::Either<A, B>], out: &mut Vec<u8>) -> Result<()> {
        use crate::join::Either;
        let mut rest = records;
        while let Some(first) = rest.first() {
            let left = matches!(first, Either::Left(_));
            let run = rest
                .iter()
                .take_while(|r| matches!(r, Either::Left(_)) == left)
                .count();
            let start = out.len();
            out.push(u8::from(left));
            out.extend_from_slice(&[0; 4]);
            if left {
                let side: Vec<A> = rest[..run]
                    .iter()
                    .filter_map(|r| match r {
                        Either::Left(a) => Some(a.clone()),
                        Either::Right(_) => None,
                    })
                    .collect();
                self.left.encode(&side, out)?;
            } else {
                let side: Vec<B> = rest[..run]
                    .iter()
                    .filter_map(|r| match r {
                        Either::Right(b) => Some(b.clone()),
                        Either::Left(_) => None,
                    })
                    .collect();
                self.right.encode(&side, out)?;
            }
            let len = u32::try_from(out.len() - start - 5)
                .map_err(|_| DataflowError::invalid("wire codec", "a run of records over 4 GiB"))?;
            out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
            rest = &rest[run..];
        }
        Ok(())
    }

    fn decode(&self, mut bytes: &[u8]) -> Result<Vec<crate::join::Either<A, B>>> {
        use crate::join::Either;
        let mut records = Vec::new();
        while !bytes.is_empty() {
            let malformed = || DataflowError::invalid("wire codec", "a malformed run of records");
            if bytes.len() < 5 {
                return Err(malformed());
            }
            let len = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            let body = bytes.get(5..5 + len).ok_or_else(malformed)?;
            if bytes[0] == 1 {
                records.extend(self.left.decode(body)?.into_iter().map(Either::Left));
            } else {
                records.extend(self.right.decode(body)?.into_iter().map(Either::Right));
            }
            bytes = &bytes[5 + len..];
        }
        Ok(records)
    }
}

/// The codec of a two-input operator's records, from the codecs of its sides.
pub(crate) fn either_codec<A: Clone + 'static, B: Clone + 'static>(
    codecs: &Codecs,
) -> Option<Arc<dyn WireCodec<crate::join::Either<A, B>>>> {
    if let Some(codec) = codecs.get::<crate::join::Either<A, B>>() {
        return Some(codec);
    }
    Some(Arc::new(EitherCodec {
        left: codecs.get::<A>()?,
        right: codecs.get::<B>()?,
    }))
}

/// The codecs a job registered, by record type.
#[derive(Clone, Default)]
pub(crate) struct Codecs(Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Codecs {
    pub(crate) fn insert<T: 'static>(&mut self, codec: Arc<dyn WireCodec<T>>) {
        Arc::make_mut(&mut self.0).insert(TypeId::of::<T>(), Arc::new(codec));
    }

    pub(crate) fn get<T: 'static>(&self) -> Option<Arc<dyn WireCodec<T>>> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|codec| codec.downcast_ref::<Arc<dyn WireCodec<T>>>())
            .cloned()
    }
}

/// Where the subtasks of a job run when it spans several worker processes, and this
/// worker's part in it. Set as [`crate::JobConfig::placement`]; every worker of the
/// job builds the same graph with the same placement and runs its own subtasks.
///
/// Subtasks share slots as in Flink: subtask `i` of every task runs in slot
/// `i mod slots.len()`, so forward-connected tasks of equal parallelism stay on one
/// worker and only the exchanges (key_by, rebalance, broadcast) cross processes.
#[derive(Clone, Debug)]
pub struct Placement {
    /// This worker's data plane.
    pub network: Network,
    /// The attempt of the job: the scope of its channels, new at every (re)start so
    /// that nothing of an earlier attempt reaches a later one.
    pub scope: u64,
    /// The worker of each slot.
    pub slots: Vec<WorkerId>,
    /// Where each other worker of the job listens. A worker dials those with a
    /// larger id and waits for the others to dial it.
    pub peers: BTreeMap<WorkerId, String>,
    /// How long to wait for a connection with a peer.
    pub connect_timeout: Duration,
}

impl Placement {
    /// Closes the job's channels to other workers: their bridges stop waiting.
    pub(crate) fn close_channels(&self) {
        self.network
            .close_scope(self.scope, "the job's attempt on this worker ended");
    }

    /// The worker that runs subtask `index` of any task.
    pub fn worker_of(&self, index: usize) -> WorkerId {
        self.slots
            .get(index % self.slots.len().max(1))
            .copied()
            .unwrap_or(self.network.id())
    }

    /// Whether subtask `index` of a task runs on this worker.
    pub fn is_local(&self, index: usize) -> bool {
        self.worker_of(index) == self.network.id()
    }

    /// The problems of this placement for job `job`, if any.
    pub(crate) fn check(&self, job: &str) -> Vec<String> {
        let me = self.network.id();
        let mut errors = Vec::new();
        if self.slots.is_empty() {
            errors.push(format!("job `{job}`: the placement has no slots"));
        }
        for worker in &self.slots {
            if *worker != me && !self.peers.contains_key(worker) {
                errors.push(format!(
                    "job `{job}`: the placement puts a slot on {worker}, whose address is not given"
                ));
            }
        }
        errors
    }

    /// Dials the peers with a larger id than this worker's.
    pub(crate) fn connect(&self) -> Result<()> {
        let me = self.network.id();
        for (peer, addr) in self.peers.range(WorkerId(me.0.saturating_add(1))..) {
            self.network
                .connect(*peer, addr, self.connect_timeout)
                .map_err(|e| DataflowError::TaskFailed {
                    task: "data plane".into(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// The channel of edge `edge` into node `node`, from subtask `from` to `to`.
    pub(crate) fn channel(
        &self,
        (node, edge): (usize, usize),
        from: usize,
        to: usize,
    ) -> ChannelId {
        ChannelId {
            scope: self.scope,
            index: ((node as u64) << 40)
                | ((edge as u64 & 0xff) << 32)
                | ((from as u64 & 0xffff) << 16)
                | (to as u64 & 0xffff),
        }
    }
}

const BATCH: u8 = 0;
const WATERMARK: u8 = 1;
const IDLE: u8 = 2;
const BARRIER: u8 = 3;
const END: u8 = 4;

pub(crate) fn encode<T: 'static>(
    message: &Message<T>,
    codec: &dyn WireCodec<T>,
    out: &mut Vec<u8>,
) -> Result<()> {
    match message {
        Message::Batch(records) => {
            out.push(BATCH);
            codec.encode(records, out)
        }
        Message::Watermark(t) => {
            out.push(WATERMARK);
            out.extend_from_slice(&t.0.to_le_bytes());
            Ok(())
        }
        Message::Idle => {
            out.push(IDLE);
            Ok(())
        }
        Message::Barrier(barrier) => {
            out.push(BARRIER);
            bincode::serde::encode_into_std_write(barrier, out, bincode::config::standard())
                .map(|_| ())
                .map_err(|e| DataflowError::invalid("wire codec", e.to_string()))
        }
        Message::EndOfInput => {
            out.push(END);
            Ok(())
        }
    }
}

pub(crate) fn decode<T: 'static>(bytes: &[u8], codec: &dyn WireCodec<T>) -> Result<Message<T>> {
    let malformed =
        |what: &str| DataflowError::invalid("data plane", format!("a malformed message: {what}"));
    let (&tag, body) = bytes.split_first().ok_or_else(|| malformed("empty"))?;
    match tag {
        BATCH => codec.decode(body).map(Message::Batch),
        WATERMARK => {
            let t: [u8; 8] = body.try_into().map_err(|_| malformed("a watermark"))?;
            Ok(Message::Watermark(Timestamp(i64::from_le_bytes(t))))
        }
        IDLE => Ok(Message::Idle),
        BARRIER => {
            bincode::serde::decode_from_slice::<Barrier, _>(body, bincode::config::standard())
                .map(|(b, _)| Message::Barrier(b))
                .map_err(|_| malformed("a barrier"))
        }
        END => Ok(Message::EndOfInput),
        other => Err(malformed(&format!("unknown tag {other}"))),
    }
}

/// Sends what an exchange writes into `from` to `to` on another worker, until the end
/// of its input. A failure (the peer lost, the attempt closed) ends the bridge: the
/// exchange then finds its channel closed, which fails its task.
pub(crate) fn outbound<T: Send + 'static>(
    placement: &Placement,
    to: WorkerId,
    channel: ChannelId,
    from: Receiver<Message<T>>,
    codec: Arc<dyn WireCodec<T>>,
    bridges: &Arc<Bridges>,
) -> Result<()> {
    let network = placement.network.clone();
    let timeout = placement.connect_timeout;
    let report = bridges.clone();
    spawn(bridges, &format!("net-out {channel}"), move || {
        let failed = |what: &str, error: Option<&NetError>| {
            report.failed(format!("channel {channel} to {to}: {what}"), error);
        };
        let mut sender = match network.sender(to, channel, timeout) {
            Ok(sender) => sender,
            Err(e) => return failed(&e.to_string(), Some(&e)),
        };
        let mut last_len = 1024;
        while let Ok(message) = from.recv() {
            let end = matches!(message, Message::EndOfInput);
            let mut bytes = Vec::with_capacity(last_len);
            if let Err(e) = encode(&message, codec.as_ref(), &mut bytes) {
                return failed(&e.to_string(), None);
            }
            last_len = bytes.len();
            if let Message::Batch(records) = &message {
                use std::sync::atomic::Ordering::Relaxed;
                report.records.fetch_add(records.len() as u64, Relaxed);
            }
            report
                .bytes
                .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = sender.send(bytes) {
                return failed(&e.to_string(), Some(&e));
            }
            if end {
                sender.finish();
                return;
            }
        }
    })
}

/// Receives `channel` from a subtask on worker `from` into `to`, the channel a local
/// task reads, until the end of its input. A failure ends the bridge without an end
/// of input: the reading task fails ("an upstream task ended without finishing").
pub(crate) fn inbound<T: Send + 'static>(
    placement: &Placement,
    from: WorkerId,
    channel: ChannelId,
    window: u32,
    to: Sender<Message<T>>,
    codec: Arc<dyn WireCodec<T>>,
    bridges: &Arc<Bridges>,
) -> Result<()> {
    let network = placement.network.clone();
    let timeout = placement.connect_timeout;
    let report = bridges.clone();
    spawn(bridges, &format!("net-in {channel}"), move || {
        let failed = |what: &str, error: Option<&NetError>| {
            report.failed(format!("channel {channel} from {from}: {what}"), error);
        };
        let mut receiver = match network.receiver(from, channel, window, timeout) {
            Ok(receiver) => receiver,
            Err(e) => return failed(&e.to_string(), Some(&e)),
        };
        loop {
            let bytes = match receiver.recv() {
                Ok(bytes) => bytes,
                Err(e) => return failed(&e.to_string(), Some(&e)),
            };
            let message = match decode(&bytes, codec.as_ref()) {
                Ok(message) => message,
                Err(e) => return failed(&e.to_string(), None),
            };
            let end = matches!(message, Message::EndOfInput);
            if to.send(message).is_err() || end {
                return;
            }
        }
    })
}

/// The bridge threads of one worker's part of a job, and the first failure of one.
#[derive(Default)]
pub(crate) struct Bridges {
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    failure: Mutex<Option<String>>,
    /// Records and bytes sent to other workers.
    records: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl Bridges {
    /// Records what broke a channel: the connection lost, the peer's sender
    /// aborted, an undecodable message. (A channel this worker closed itself is a
    /// consequence, not a cause.)
    fn failed(&self, what: String, error: Option<&NetError>) {
        tracing::error!("{what}");
        if !matches!(error, Some(NetError::Closed { .. })) {
            lock(&self.failure).get_or_insert(what);
        }
    }

    /// Records and encoded bytes sent to other workers so far.
    pub(crate) fn sent(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.records.load(Relaxed), self.bytes.load(Relaxed))
    }

    /// The first failure a bridge recorded.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Waits for every bridge thread.
    pub(crate) fn join(&self) {
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn(bridges: &Arc<Bridges>, name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.chars().take(60).collect())
        .spawn(f)
        .map(|handle| lock(&bridges.threads).push(handle))
        .map_err(|e| DataflowError::TaskFailed {
            task: name.to_string(),
            message: format!("could not start a thread: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_checkpoint::CheckpointId;

    #[test]
    fn every_message_reads_back_as_sent() {
        let codec: Arc<dyn WireCodec<(String, u64)>> = Arc::new(SerdeCodec);
        let messages = vec![
            Message::Batch(vec![("a".to_string(), 1), ("bc".to_string(), u64::MAX)]),
            Message::Batch(Vec::new()),
            Message::Watermark(Timestamp(-5)),
            Message::Idle,
            Message::Barrier(Barrier::checkpoint(CheckpointId::new(7), 1_700_000_000_000)),
            Message::EndOfInput,
        ];
        for message in messages {
            let mut bytes = Vec::new();
            encode(&message, codec.as_ref(), &mut bytes).expect("encode");
            let back = decode(&bytes, codec.as_ref()).expect("decode");
            assert_eq!(format!("{back:?}"), format!("{message:?}"));
        }
        let either: Arc<dyn WireCodec<crate::join::Either<u64, String>>> = Arc::new(EitherCodec {
            left: Arc::new(SerdeCodec),
            right: Arc::new(SerdeCodec),
        });
        use crate::join::Either::{Left, Right};
        let records = vec![
            Left(1),
            Left(2),
            Right("x".to_string()),
            Left(3),
            Right(String::new()),
        ];
        let mut bytes = Vec::new();
        either.encode(&records, &mut bytes).expect("encode");
        assert_eq!(either.decode(&bytes).expect("decode"), records);
        let error = decode(&[9], codec.as_ref()).expect_err("unknown tag");
        assert!(error.to_string().contains("unknown tag 9"), "{error}");
        let error = decode(&[BATCH, 0xff, 0xff], codec.as_ref()).expect_err("bad batch");
        assert!(error.to_string().contains("cannot decode"), "{error}");
    }
}

//! The two ends of a logical channel and the credit each side keeps.
//!
//! The receiver registers first and grants its window of credits; every message
//! costs the sender one credit; the receiver returns credits as its consumer takes
//! messages (in bunches of half the window, so a credit frame travels per few
//! messages, not per message). The connection's reader therefore never holds more
//! than a window of messages per channel and never blocks.

use crate::frame::Frame;
use crate::network::Peer;
use crate::{ChannelId, NetError, WorkerId};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub(crate) enum Inbound {
    Data(Vec<u8>),
    Abort(String),
}

/// Why a channel is closed.
#[derive(Clone)]
pub(crate) enum Closure {
    /// Its connection broke.
    Lost(String),
    /// Its scope was closed.
    Closed(String),
}

#[derive(Default)]
struct Flow {
    credits: u64,
    closed: Option<Closure>,
    /// Where the connection's reader puts this channel's messages, once a receiver
    /// registered.
    inbound: Option<Sender<Inbound>>,
}

/// A channel as the connection sees it: credits for its sender, the queue of its
/// receiver.
#[derive(Default)]
pub(crate) struct ChannelState {
    flow: Mutex<Flow>,
    changed: Condvar,
}

impl ChannelState {
    fn flow(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn grant(&self, credits: u32) {
        self.flow().credits += u64::from(credits);
        self.changed.notify_all();
    }

    /// Queues a message for the receiver; dropped if none registered (the channel
    /// was closed on this side).
    pub(crate) fn deliver(&self, message: Inbound) {
        if let Some(inbound) = &self.flow().inbound {
            let _ = inbound.send(message);
        }
    }

    pub(crate) fn close(&self, why: Closure) {
        let mut flow = self.flow();
        if flow.closed.is_none() {
            flow.closed = Some(why);
        }
        flow.inbound = None;
        drop(flow);
        self.changed.notify_all();
    }

    fn error(&self, peer: WorkerId, channel: ChannelId) -> NetError {
        match self.flow().closed.clone() {
            Some(Closure::Lost(reason)) => NetError::Lost { peer, reason },
            Some(Closure::Closed(reason)) => NetError::Closed { channel, reason },
            None => NetError::Closed {
                channel,
                reason: "the sender went away".into(),
            },
        }
    }
}

/// The sending end of a channel to another worker.
pub struct ChannelSender {
    pub(crate) peer: Arc<Peer>,
    pub(crate) id: ChannelId,
    pub(crate) state: Arc<ChannelState>,
    pub(crate) finished: bool,
}

impl std::fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelSender({} to {})", self.id, self.peer.id)
    }
}

impl ChannelSender {
    /// The channel.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// Sends one message, waiting for a credit first: blocks while the receiver is
    /// full (backpressure).
    ///
    /// # Errors
    /// The connection was lost or the channel closed.
    pub fn send(&mut self, message: Vec<u8>) -> Result<(), NetError> {
        let mut flow = self.state.flow();
        loop {
            if flow.closed.is_some() {
                drop(flow);
                return Err(self.state.error(self.peer.id, self.id));
            }
            if flow.credits > 0 {
                flow.credits -= 1;
                break;
            }
            flow = self
                .state
                .changed
                .wait(flow)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(flow);
        self.peer.send(Frame::Data(self.id, message))
    }

    /// Credits in hand: messages that can be sent without waiting.
    pub fn credits(&self) -> u64 {
        self.state.flow().credits
    }

    /// Ends the channel normally: the last message was the end of the output.
    /// (Dropping a sender without finishing aborts the channel: its receiver gets
    /// an error instead of waiting for messages that will not come.)
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for ChannelSender {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.peer.send(Frame::Abort(
                self.id,
                "the sending task stopped before the end of its output".into(),
            ));
        }
        self.peer.forget(self.id);
    }
}

/// The receiving end of a channel from another worker.
pub struct ChannelReceiver {
    pub(crate) peer: Arc<Peer>,
    pub(crate) id: ChannelId,
    pub(crate) state: Arc<ChannelState>,
    pub(crate) inbound: Receiver<Inbound>,
    pub(crate) window: u32,
    /// Messages taken whose credit is not yet returned.
    pub(crate) owed: u32,
}

impl std::fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelReceiver({} from {})", self.id, self.peer.id)
    }
}

impl ChannelReceiver {
    pub(crate) fn register(peer: Arc<Peer>, id: ChannelId, window: u32) -> Result<Self, NetError> {
        let window = window.max(1);
        let state = peer.channel(id);
        let (tx, inbound) = crossbeam_channel::unbounded();
        {
            let mut flow = state.flow();
            if flow.inbound.is_some() {
                return Err(NetError::Invalid(format!(
                    "channel {id} from {} has a receiver already",
                    peer.id
                )));
            }
            if flow.closed.is_none() {
                flow.inbound = Some(tx);
            }
        }
        peer.send(Frame::Credit(id, window))?;
        Ok(Self {
            peer,
            id,
            state,
            inbound,
            window,
            owed: 0,
        })
    }

    /// The channel.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The next message, waiting for it.
    ///
    /// # Errors
    /// The connection was lost, the channel closed, or its sender stopped before the
    /// end of its output.
    pub fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        match self.inbound.recv() {
            Ok(message) => self.taken(message),
            Err(_) => Err(self.state.error(self.peer.id, self.id)),
        }
    }

    /// The next message if one comes within `timeout`.
    ///
    /// # Errors
    /// As [`ChannelReceiver::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, NetError> {
        match self.inbound.recv_timeout(timeout) {
            Ok(message) => self.taken(message).map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.state.error(self.peer.id, self.id)),
        }
    }

    fn taken(&mut self, message: Inbound) -> Result<Vec<u8>, NetError> {
        match message {
            Inbound::Data(bytes) => {
                self.owed += 1;
                if self.owed >= (self.window / 2).max(1) {
                    let owed = std::mem::take(&mut self.owed);
                    // A lost connection shows on the next receive.
                    let _ = self.peer.send(Frame::Credit(self.id, owed));
                }
                Ok(bytes)
            }
            Inbound::Abort(reason) => Err(NetError::Aborted {
                channel: self.id,
                peer: self.peer.id,
                reason,
            }),
        }
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        self.peer.forget(self.id);
    }
}

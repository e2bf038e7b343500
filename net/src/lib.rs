//! The data plane between weir's worker processes.
//!
//! Two workers share one TCP connection (`network.rs`), opened by one of them and
//! authenticated both ways by a shared secret (`handshake.rs`: an HMAC-SHA256
//! challenge, nothing secret on the wire). The connection multiplexes the logical
//! channels of the jobs' edges (`channel.rs`): each carries opaque messages (encoded
//! batches, watermarks, barriers: the dataflow decides) in order, in length-prefixed
//! frames (`frame.rs`).
//!
//! Flow control is by credit, per channel: a receiver grants as many credits as it
//! can buffer, a sender spends one per message and waits when it has none. A slow
//! receiver therefore stops only its own channel's sender, never another channel on
//! the same connection, and backpressure reaches the sources across processes with
//! bounded memory on both sides.
//!
//! With TLS (`tls.rs`, optional), the connection is encrypted and the handshake runs
//! inside the TLS session.
//!
//! A lost connection (the peer killed, the network cut, a frame cut short) is an
//! error on every channel that used it, never a panic: the caller fails the job's
//! attempt and recovers from its checkpoint.

mod channel;
mod frame;
mod handshake;
mod network;
pub mod tls;

pub use channel::{ChannelReceiver, ChannelSender};
pub use network::Network;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Bytes as lowercase hex: nonces and MACs in the control plane's JSON, cursors in
/// URLs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`hex`]'s text; `None` for text that is not hex of whole bytes.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The protocol version both ends of a connection must speak.
pub const PROTOCOL_VERSION: u16 = 1;

/// A worker process of a cluster, as the coordinator numbered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u32);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {}", self.0)
    }
}

/// One logical channel of a connection: a scope (one attempt of one job, so that a
/// late frame of an earlier attempt never reaches a later one) and an index within it
/// (the dataflow packs edge, sending and receiving subtask into it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    /// The attempt the channel belongs to.
    pub scope: u64,
    /// The channel within its scope.
    pub index: u64,
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:#x}", self.scope, self.index)
    }
}

/// The secret every process of a cluster shares. Never printed.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

/// The fewest bytes a secret may have.
pub const MIN_SECRET_LEN: usize = 16;

impl Secret {
    /// A secret of `bytes`.
    ///
    /// # Errors
    /// [`NetError::Invalid`] if it is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, NetError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(NetError::Invalid(format!(
                "the cluster secret has {} bytes; it needs at least {MIN_SECRET_LEN}",
                bytes.len()
            )));
        }
        Ok(Self(bytes.into()))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn message(parts: &[&[u8]]) -> Vec<u8> {
        let mut message = Vec::new();
        for part in parts {
            message.extend_from_slice(&(part.len() as u64).to_le_bytes());
            message.extend_from_slice(part);
        }
        message
    }

    /// The HMAC-SHA256 of `parts` (each length-prefixed, so no two lists of parts
    /// sign alike) under the secret: for the control plane's challenges.
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.bytes());
        ring::hmac::sign(&key, &Self::message(parts))
            .as_ref()
            .to_vec()
    }

    /// Whether `tag` is [`Secret::sign`] of `parts` (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.bytes());
        ring::hmac::verify(&key, &Self::message(parts), tag).is_ok()
    }
}

/// 32 fresh random bytes: a challenge's nonce, a session token.
///
/// # Errors
/// The system's random source failed.
pub fn nonce() -> Result<[u8; 32], NetError> {
    let mut n = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .map_err(|_| NetError::Invalid("the system's random source failed".into()))?;
    Ok(n)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What can go wrong on the data plane. Each names the peer or channel and what was
/// expected.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket operation failed.
    #[error("could not {action} {addr}: {source}")]
    Io {
        /// What was tried: "listen on", "connect to", ….
        action: &'static str,
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The handshake failed: another protocol, another version, or no shared secret.
    #[error("the connection with {peer} was refused: {reason}")]
    Refused {
        /// The peer's address or id.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The connection to a worker broke.
    #[error("the connection with {peer} was lost: {reason}")]
    Lost {
        /// The peer.
        peer: WorkerId,
        /// Why.
        reason: String,
    },
    /// No connection to a worker came up in time.
    #[error("no connection with {peer} within {waited:?}")]
    NotConnected {
        /// The peer.
        peer: WorkerId,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The channel was closed: its attempt ended, or its sender stopped before the end
    /// of its output.
    #[error("channel {channel} was closed: {reason}")]
    Closed {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: String,
    },
    /// The sender on the other worker stopped before the end of its output (its task
    /// failed or was cancelled there).
    #[error("channel {channel} was aborted by {peer}: {reason}")]
    Aborted {
        /// The channel.
        channel: ChannelId,
        /// The sending worker.
        peer: WorkerId,
        /// Why.
        reason: String,
    },
    /// A setting or argument is not usable.
    #[error("{0}")]
    Invalid(String),
}

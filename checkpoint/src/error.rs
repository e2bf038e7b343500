//! The one error type of weir-checkpoint.

use std::fmt;

/// What went wrong with checkpoint storage, in terms a caller can act on.
///
/// Every variant names the object, URL or path it concerns, so that the message alone
/// tells a user where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// An object that should exist does not: a state file, a `_metadata`, a
    /// checkpoint directory. Usually means the checkpoint was deleted or never
    /// completed; fall back to an older one.
    #[error("not found: {object}")]
    NotFound {
        /// The object (as a URL or absolute path) that is missing.
        object: String,
    },

    /// A create-if-absent write found the object already there. For `_metadata` this
    /// is the fencing signal: another writer completed this checkpoint first, and this
    /// writer must stop.
    #[error("already exists: {object}")]
    AlreadyExists {
        /// The object that already exists.
        object: String,
    },

    /// A `_metadata` object exists but cannot be decoded. The checkpoint is unusable;
    /// recovery skips it in favour of an older one.
    #[error("corrupt checkpoint metadata {object}: {reason}")]
    CorruptMetadata {
        /// The `_metadata` object.
        object: String,
        /// What the decoder found wrong.
        reason: CorruptReason,
    },

    /// A state object exists but has another size than its handle records: it was
    /// overwritten or damaged. Restore from another checkpoint.
    #[error("corrupt state object {object}: {actual_size} bytes, its handle says {expected_size}")]
    CorruptState {
        /// The state object.
        object: String,
        /// The size recorded in the handle.
        expected_size: u64,
        /// The size found.
        actual_size: u64,
    },

    /// A control request or reply (see [`crate::control`]) does not decode.
    #[error("control message {object} is unreadable: {reason}")]
    CorruptControl {
        /// The object.
        object: String,
        /// What the decoder reported.
        reason: String,
    },

    /// The path given to [`read_savepoint`](crate::CheckpointStorage::read_savepoint)
    /// holds no savepoint.
    #[error("no savepoint at {path}: expected {path}/_metadata")]
    NoSavepoint {
        /// The savepoint path as given.
        path: String,
    },

    /// The store (bucket, endpoint, directory) could not be reached or refused access
    /// when the storage was opened. Check the URL, the endpoint and the credentials.
    #[error("checkpoint storage {target} is unreachable: {source}")]
    Unreachable {
        /// The bucket URL or directory.
        target: String,
        /// The underlying object-store error.
        #[source]
        source: object_store::Error,
    },

    /// An operation on one object failed (network, permissions, disk). Usually worth
    /// retrying; the object is named.
    #[error("I/O error on {object}: {source}")]
    Io {
        /// The object (or prefix) the operation concerned.
        object: String,
        /// The underlying object-store error.
        #[source]
        source: object_store::Error,
    },

    /// The storage URL or options cannot work: unknown scheme, missing bucket name,
    /// a `file://` URL with a host.
    #[error("misconfigured checkpoint storage {url}: {reason}")]
    Misconfigured {
        /// The URL as given.
        url: String,
        /// What is wrong and what is supported.
        reason: String,
    },

    /// The coordinator's lease is lost ([`crate::lease`]): another coordinator took
    /// over, or this one could not renew it in time. Work under it must stop writing.
    #[error("fenced: this coordinator no longer holds lease epoch {epoch}: {reason}")]
    Fenced {
        /// The epoch it held.
        epoch: u64,
        /// Why it is lost.
        reason: String,
    },

    /// A job name, savepoint name, operator uid, file name or state-handle path cannot
    /// be used as (part of) an object path.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What kind of name: "job name", "savepoint name", "state handle", ...
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Why a `_metadata` object was rejected by [`CheckpointMetadata::decode`](crate::CheckpointMetadata::decode).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptReason {
    /// The object ends before the header, payload or checksum does.
    Truncated {
        /// Bytes the header says there must be.
        expected: u64,
        /// Bytes there are.
        actual: u64,
    },
    /// The object is longer than header, payload and checksum.
    TrailingBytes {
        /// Bytes the header says there must be.
        expected: u64,
        /// Bytes there are.
        actual: u64,
    },
    /// The first eight bytes are not the metadata magic number.
    BadMagic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// A format version this build does not know (written by a newer weir, or damaged).
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The CRC32 of the payload does not match the stored one.
    ChecksumMismatch {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the payload as read.
        computed: u32,
    },
    /// The checksum matches but the payload does not decode as metadata.
    Undecodable(String),
    /// The metadata decodes but contradicts where it is stored (e.g. names another
    /// job or checkpoint than its directory).
    Misplaced(String),
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { expected, actual } => {
                write!(f, "truncated: {actual} bytes, expected {expected}")
            }
            Self::TrailingBytes { expected, actual } => {
                write!(f, "{actual} bytes, expected {expected} (trailing garbage)")
            }
            Self::BadMagic { found } => write!(
                f,
                "not a weir checkpoint metadata object (magic {found:02x?}, expected {:02x?})",
                crate::metadata::MAGIC
            ),
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "format version {found} is not supported (this build reads version {supported})"
            ),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored crc32 {stored:#010x}, payload has {computed:#010x}"
            ),
            Self::Undecodable(why) => write!(f, "payload does not decode: {why}"),
            Self::Misplaced(why) => write!(f, "misplaced: {why}"),
        }
    }
}

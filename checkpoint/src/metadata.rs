//! Checkpoint and savepoint metadata: what a completed snapshot consists of, and its
//! self-checking binary encoding.
//!
//! # Encoding (format version 4; versions 3, without entry counts of native tables, and 2, without native keyed state, are read too)
//!
//! ```text
//! offset  size  field
//! 0       8     magic            b"WEIRCHK\0"
//! 8       4     format version   u32, little endian (4)
//! 12      8     payload length   u64, little endian
//! 20      n     payload          bincode 2, serde, `bincode::config::standard()`
//! 20+n    4     payload CRC32    u32, little endian (IEEE polynomial, crc32fast)
//! ```
//!
//! bincode is compact and not self-describing: any change to the metadata types is a
//! new format version, and decoders reject versions they do not know instead of
//! guessing. Every single-bit flip and every truncation is detected: the magic,
//! version and length are checked exactly, the payload and its checksum by CRC32
//! (which catches all single-bit errors).

use crate::error::CorruptReason;
use crate::{CheckpointId, OperatorUid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weir_state::{KeyGroupRange, MaxParallelism};

/// The first eight bytes of every `_metadata` object.
pub const MAGIC: [u8; 8] = *b"WEIRCHK\0";

/// The metadata format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 4;

/// The previous format version, still read: [`weir_state::NativeTable`] had no
/// `entries` (native checkpoints of it are read back, never opened directly).
pub const FORMAT_VERSION_3: u32 = 3;

/// The previous format version, still read: [`SubtaskState`] had no `native` field.
pub const FORMAT_VERSION_2: u32 = 2;

/// Header: magic, version, payload length.
const HEADER_LEN: usize = 8 + 4 + 8;
/// Trailer: CRC32 of the payload.
const TRAILER_LEN: usize = 4;

/// Whether a snapshot is a periodic checkpoint or a savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// A periodic checkpoint under the job's checkpoint directory; may share files
    /// with other checkpoints of the job.
    Checkpoint,
    /// A self-contained savepoint: every file it refers to lives in its directory.
    Savepoint,
}

/// A reference to one stored object holding state: its path and size.
///
/// The path is an object-store path (segments separated by `/`, percent-encoded
/// where needed) relative to the root of the storage that holds the metadata: the
/// checkpoint root for checkpoints (`<job>/chk-<n>/<uid>/<subtask>/<file>`,
/// `<job>/shared/<key>`), the savepoint directory for savepoints
/// (`<uid>/<subtask>/<file>`), so savepoints can be moved.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StateHandle {
    /// The object path, relative to the storage root.
    pub path: String,
    /// The object's size in bytes, checked when a checkpoint is validated.
    pub size: u64,
}

/// Keyed state covering a range of key groups, stored in one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateHandle {
    /// The key groups whose state the object holds.
    pub key_groups: KeyGroupRange,
    /// Where the state is.
    pub handle: StateHandle,
    /// The chunks of the object that belong to this snapshot, by name (see
    /// `weir_state::format::chunk_name`); empty means all of them. An incremental checkpoint
    /// refers to the chunks of an older object that are still current. Sorted.
    pub chunks: Vec<String>,
}

/// One file of a native RocksDB checkpoint: its name in the checkpoint directory
/// and the stored object holding it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeFile {
    /// The file's name in the RocksDB checkpoint directory (`000012.sst`, `CURRENT`).
    pub name: String,
    /// The stored object: a shared file for SST files (uploaded once, referred to by
    /// every later checkpoint that still holds it), a private one for the rest.
    pub handle: StateHandle,
}

/// Keyed state of one subtask kept as a native RocksDB checkpoint: the files of the
/// checkpoint directory and the tables to read from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeKeyedHandle {
    /// The key groups the subtask owned.
    pub key_groups: KeyGroupRange,
    /// Every file of the RocksDB checkpoint.
    pub files: Vec<NativeFile>,
    /// The tables (state, column family, namespace, header) it holds.
    pub tables: Vec<weir_state::NativeTable>,
}

impl NativeKeyedHandle {
    /// Total size of the files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.handle.size).sum()
    }
}

/// What one subtask of one operator stored for a snapshot.
///
/// Source positions and pending sink commits are operator state: they travel inside
/// the operator-state objects and need no field of their own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// Keyed state, by key-group range (several objects for incremental snapshots).
    pub keyed: Vec<KeyedStateHandle>,
    /// Operator (non-keyed) state objects.
    pub operator: Vec<StateHandle>,
    /// Keyed state kept as native RocksDB checkpoints (periodic checkpoints of the
    /// RocksDB backend; savepoints are always canonical).
    pub native: Vec<NativeKeyedHandle>,
}

mod v2;
mod v3;

/// What every subtask of one operator stored for a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator's parallelism when the snapshot was taken.
    pub parallelism: usize,
    /// Per subtask index.
    pub subtasks: BTreeMap<usize, SubtaskState>,
}

/// The `_metadata` of a completed checkpoint or savepoint: everything needed to
/// restore the job. A checkpoint exists if and only if its metadata exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The job's name (its directory under the checkpoint root).
    pub job: String,
    /// The checkpoint number.
    pub checkpoint: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// When the checkpoint was triggered, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// The job's number of key groups.
    pub max_parallelism: MaxParallelism,
    /// Per operator, by stable uid.
    pub operators: BTreeMap<OperatorUid, OperatorState>,
    /// Job-level properties (e.g. the job graph's fingerprint), opaque to storage.
    pub properties: BTreeMap<String, Vec<u8>>,
}

/// The property that records a checkpoint's timeline.
const TIMELINE: &str = "timeline";

impl CheckpointMetadata {
    /// The timeline (run) that wrote this checkpoint, if it recorded one. Every start
    /// of a job is a new timeline; a restart after a failure restores only checkpoints
    /// of its own timeline, or what the run started from.
    pub fn timeline(&self) -> Option<u64> {
        let bytes: [u8; 8] = self.properties.get(TIMELINE)?.as_slice().try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    /// Records the timeline (run) that writes this checkpoint.
    pub fn set_timeline(&mut self, timeline: u64) {
        self.properties
            .insert(TIMELINE.to_string(), timeline.to_le_bytes().to_vec());
    }

    /// Metadata with no operators and no properties yet.
    pub fn new(
        job: impl Into<String>,
        checkpoint: CheckpointId,
        kind: SnapshotKind,
        timestamp_ms: i64,
        max_parallelism: MaxParallelism,
    ) -> Self {
        Self {
            job: job.into(),
            checkpoint,
            kind,
            timestamp_ms,
            max_parallelism,
            operators: BTreeMap::new(),
            properties: BTreeMap::new(),
        }
    }

    /// The state of subtask `subtask` of operator `uid`, created empty if absent
    /// (the operator's parallelism grows to cover `subtask`).
    pub fn subtask_mut(&mut self, uid: &OperatorUid, subtask: usize) -> &mut SubtaskState {
        let operator = self.operators.entry(uid.clone()).or_default();
        operator.parallelism = operator.parallelism.max(subtask + 1);
        operator.subtasks.entry(subtask).or_default()
    }

    /// Every state handle the metadata refers to (keyed, operator and native keyed
    /// state of all operators and subtasks, every file of a native checkpoint
    /// included), in a deterministic order; may repeat a shared handle.
    pub fn handles(&self) -> impl Iterator<Item = &StateHandle> {
        self.operators
            .values()
            .flat_map(|op| op.subtasks.values())
            .flat_map(|st| {
                st.keyed
                    .iter()
                    .map(|k| &k.handle)
                    .chain(st.operator.iter())
                    .chain(
                        st.native
                            .iter()
                            .flat_map(|n| n.files.iter().map(|f| &f.handle)),
                    )
            })
    }

    /// Mutable access to every state handle, in the order of [`handles`](Self::handles).
    pub fn handles_mut(&mut self) -> impl Iterator<Item = &mut StateHandle> {
        self.operators
            .values_mut()
            .flat_map(|op| op.subtasks.values_mut())
            .flat_map(|st| {
                st.keyed
                    .iter_mut()
                    .map(|k| &mut k.handle)
                    .chain(st.operator.iter_mut())
                    .chain(
                        st.native
                            .iter_mut()
                            .flat_map(|n| n.files.iter_mut().map(|f| &mut f.handle)),
                    )
            })
    }

    /// Total size of the referenced state, counting each distinct object once.
    pub fn state_size(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        self.handles()
            .filter(|h| seen.insert(h.path.as_str()))
            .map(|h| h.size)
            .sum()
    }

    /// Encodes the metadata as described in the [module docs](self).
    pub fn encode(&self) -> Vec<u8> {
        let payload = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("metadata types have known lengths, so bincode encoding cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out
    }

    /// Decodes and validates metadata written by [`encode`](Self::encode).
    ///
    /// # Errors
    /// A [`CorruptReason`] for a truncated object, trailing bytes, a wrong magic number,
    /// an unknown format version, a checksum mismatch or a payload that does not decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptReason> {
        let actual = bytes.len() as u64;
        let truncated = |expected: usize| CorruptReason::Truncated {
            expected: expected as u64,
            actual,
        };
        let magic: [u8; 8] = bytes
            .get(..8)
            .ok_or_else(|| truncated(HEADER_LEN + TRAILER_LEN))?
            .try_into()
            .expect("slice of 8");
        if magic != MAGIC {
            return Err(CorruptReason::BadMagic { found: magic });
        }
        let version = u32::from_le_bytes(
            bytes
                .get(8..12)
                .ok_or_else(|| truncated(HEADER_LEN + TRAILER_LEN))?
                .try_into()
                .expect("slice of 4"),
        );
        if ![FORMAT_VERSION, FORMAT_VERSION_3, FORMAT_VERSION_2].contains(&version) {
            return Err(CorruptReason::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let payload_len = u64::from_le_bytes(
            bytes
                .get(12..HEADER_LEN)
                .ok_or_else(|| truncated(HEADER_LEN + TRAILER_LEN))?
                .try_into()
                .expect("slice of 8"),
        );
        let expected = payload_len.saturating_add((HEADER_LEN + TRAILER_LEN) as u64);
        if actual < expected {
            return Err(CorruptReason::Truncated { expected, actual });
        }
        if actual > expected {
            return Err(CorruptReason::TrailingBytes { expected, actual });
        }
        let payload_end = HEADER_LEN + payload_len as usize;
        let payload = &bytes[HEADER_LEN..payload_end];
        let stored = u32::from_le_bytes(bytes[payload_end..].try_into().expect("slice of 4"));
        let computed = crc32fast::hash(payload);
        if stored != computed {
            return Err(CorruptReason::ChecksumMismatch { stored, computed });
        }
        let (metadata, used): (Self, usize) = if version == FORMAT_VERSION_2 {
            let (old, used): (v2::CheckpointMetadata, usize) =
                bincode::serde::decode_from_slice(payload, bincode::config::standard())
                    .map_err(|e| CorruptReason::Undecodable(e.to_string()))?;
            (old.into(), used)
        } else if version == FORMAT_VERSION_3 {
            let (old, used): (v3::CheckpointMetadata, usize) =
                bincode::serde::decode_from_slice(payload, bincode::config::standard())
                    .map_err(|e| CorruptReason::Undecodable(e.to_string()))?;
            (old.into(), used)
        } else {
            bincode::serde::decode_from_slice(payload, bincode::config::standard())
                .map_err(|e| CorruptReason::Undecodable(e.to_string()))?
        };
        if used != payload.len() {
            return Err(CorruptReason::Undecodable(format!(
                "{} of {} payload bytes left over",
                payload.len() - used,
                payload.len()
            )));
        }
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn handle() -> impl Strategy<Value = StateHandle> {
        ("[a-z0-9%/._-]{1,40}", any::<u64>()).prop_map(|(path, size)| StateHandle { path, size })
    }

    fn subtask_state() -> impl Strategy<Value = SubtaskState> {
        let chunks = prop::collection::vec("[a-z\u{1e}0-9.]{1,12}", 0..3);
        let keyed = (any::<u16>(), any::<u16>(), handle(), chunks).prop_map(
            |(start, end, handle, chunks)| KeyedStateHandle {
                key_groups: KeyGroupRange { start, end },
                handle,
                chunks,
            },
        );
        (
            prop::collection::vec(keyed, 0..4),
            prop::collection::vec(handle(), 0..3),
        )
            .prop_map(|(keyed, operator)| SubtaskState {
                keyed,
                operator,
                native: Vec::new(),
            })
    }

    fn operator_state() -> impl Strategy<Value = OperatorState> {
        (
            0usize..1000,
            prop::collection::btree_map(0usize..64, subtask_state(), 0..4),
        )
            .prop_map(|(parallelism, subtasks)| OperatorState {
                parallelism,
                subtasks,
            })
    }

    fn metadata() -> impl Strategy<Value = CheckpointMetadata> {
        (
            "\\PC{0,20}",
            any::<u64>(),
            any::<bool>(),
            any::<i64>(),
            1usize..=32_768,
            prop::collection::btree_map("\\PC{1,12}", operator_state(), 0..4),
            prop::collection::btree_map(
                "\\PC{0,12}",
                prop::collection::vec(any::<u8>(), 0..32),
                0..4,
            ),
        )
            .prop_map(|(job, id, savepoint, ts, max, operators, properties)| {
                CheckpointMetadata {
                    job,
                    checkpoint: CheckpointId::new(id),
                    kind: if savepoint {
                        SnapshotKind::Savepoint
                    } else {
                        SnapshotKind::Checkpoint
                    },
                    timestamp_ms: ts,
                    max_parallelism: MaxParallelism::new(max).unwrap(),
                    operators: operators
                        .into_iter()
                        .map(|(uid, op)| (OperatorUid::new(uid), op))
                        .collect(),
                    properties,
                }
            })
    }

    fn sample() -> CheckpointMetadata {
        let mut m = CheckpointMetadata::new(
            "job",
            CheckpointId::new(42),
            SnapshotKind::Checkpoint,
            1_700_000_000_000,
            MaxParallelism::DEFAULT,
        );
        let uid = OperatorUid::new("window-agg");
        for subtask in 0..2 {
            let st = m.subtask_mut(&uid, subtask);
            st.keyed.push(KeyedStateHandle {
                key_groups: KeyGroupRange {
                    start: 64 * subtask as u16,
                    end: 64 * subtask as u16 + 63,
                },
                handle: StateHandle {
                    path: format!("job/shared/sst-{subtask}"),
                    size: 4096,
                },
                chunks: Vec::new(),
            });
            st.operator.push(StateHandle {
                path: format!("job/chk-42/window-agg/{subtask}/operator"),
                size: 17,
            });
        }
        m.properties.insert("graph".into(), vec![1, 2, 3]);
        m
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(m in metadata()) {
            let bytes = m.encode();
            prop_assert_eq!(CheckpointMetadata::decode(&bytes), Ok(m));
        }

        #[test]
        fn random_garbage_is_rejected(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(CheckpointMetadata::decode(&bytes).is_err());
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let result = CheckpointMetadata::decode(&flipped);
            assert!(result.is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let result = CheckpointMetadata::decode(&bytes[..len]);
            assert!(
                matches!(result, Err(CorruptReason::Truncated { .. })),
                "truncation to {len} bytes: {result:?}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            CheckpointMetadata::decode(&longer),
            Err(CorruptReason::TrailingBytes { .. })
        ));
    }

    #[test]
    fn header_fields_are_reported_precisely() {
        let mut bytes = sample().encode();
        bytes[0] = b'X';
        assert!(matches!(
            CheckpointMetadata::decode(&bytes),
            Err(CorruptReason::BadMagic { .. })
        ));
        let mut bytes = sample().encode();
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            CheckpointMetadata::decode(&bytes),
            Err(CorruptReason::UnsupportedVersion {
                found: 7,
                supported: FORMAT_VERSION
            })
        );
        let mut bytes = sample().encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            CheckpointMetadata::decode(&bytes),
            Err(CorruptReason::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn native_files_are_handles() {
        let mut m = sample();
        let uid = OperatorUid::new("window-agg");
        m.subtask_mut(&uid, 0).native.push(NativeKeyedHandle {
            key_groups: KeyGroupRange { start: 0, end: 63 },
            files: vec![
                NativeFile {
                    name: "000009.sst".into(),
                    handle: StateHandle {
                        path: "job/shared/window-agg.0.00000000000000ab.000009.sst".into(),
                        size: 1000,
                    },
                },
                NativeFile {
                    name: "CURRENT".into(),
                    handle: StateHandle {
                        path: "job/chk-42/window-agg/0/native-CURRENT".into(),
                        size: 16,
                    },
                },
            ],
            tables: vec![weir_state::NativeTable {
                state: "counts".into(),
                column_family: "counts".into(),
                namespace: Vec::new(),
                header: Vec::new(),
                entries: vec![3; 64],
            }],
        });
        assert_eq!(m.handles().count(), 6);
        assert_eq!(m.handles_mut().count(), 6);
        assert_eq!(m.state_size(), 2 * 4096 + 2 * 17 + 1016);
        assert_eq!(CheckpointMetadata::decode(&m.encode()), Ok(m));
    }

    /// Metadata of format version 3 (native tables without entry counts) is still
    /// read, its tables' entries unknown.
    #[test]
    fn version_3_metadata_is_read() {
        let mut m = sample();
        let uid = OperatorUid::new("window-agg");
        m.subtask_mut(&uid, 1).native.push(NativeKeyedHandle {
            key_groups: KeyGroupRange {
                start: 64,
                end: 127,
            },
            files: vec![NativeFile {
                name: "000009.sst".into(),
                handle: StateHandle {
                    path: "job/shared/window-agg.1.00000000000000ab.000009.sst".into(),
                    size: 1000,
                },
            }],
            tables: vec![weir_state::NativeTable {
                state: "contents".into(),
                column_family: "contents".into(),
                namespace: vec![1, 2],
                header: vec![7],
                entries: Vec::new(),
            }],
        });
        type TableV3 = (String, String, Vec<u8>, Vec<u8>);
        type NativeV3 = (KeyGroupRange, Vec<NativeFile>, Vec<TableV3>);
        type SubtaskV3 = (Vec<KeyedStateHandle>, Vec<StateHandle>, Vec<NativeV3>);
        let operators: BTreeMap<OperatorUid, (usize, BTreeMap<usize, SubtaskV3>)> = m
            .operators
            .iter()
            .map(|(uid, op)| {
                let subtasks = op
                    .subtasks
                    .iter()
                    .map(|(i, st)| {
                        let native = st
                            .native
                            .iter()
                            .map(|n| {
                                let tables = n
                                    .tables
                                    .iter()
                                    .map(|t| {
                                        let t = t.clone();
                                        (t.state, t.column_family, t.namespace, t.header)
                                    })
                                    .collect();
                                (n.key_groups, n.files.clone(), tables)
                            })
                            .collect();
                        (*i, (st.keyed.clone(), st.operator.clone(), native))
                    })
                    .collect();
                (uid.clone(), (op.parallelism, subtasks))
            })
            .collect();
        let v3 = (
            &m.job,
            m.checkpoint,
            m.kind,
            m.timestamp_ms,
            m.max_parallelism,
            operators,
            &m.properties,
        );
        let payload = bincode::serde::encode_to_vec(&v3, bincode::config::standard()).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION_3.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        assert_eq!(CheckpointMetadata::decode(&bytes), Ok(m));
    }

    /// Metadata of format version 2 (no native keyed state) is still read.
    #[test]
    fn version_2_metadata_is_read() {
        let m = sample();
        type SubtaskV2 = (Vec<KeyedStateHandle>, Vec<StateHandle>);
        let operators: BTreeMap<OperatorUid, (usize, BTreeMap<usize, SubtaskV2>)> = m
            .operators
            .iter()
            .map(|(uid, op)| {
                let subtasks = op
                    .subtasks
                    .iter()
                    .map(|(i, st)| (*i, (st.keyed.clone(), st.operator.clone())))
                    .collect();
                (uid.clone(), (op.parallelism, subtasks))
            })
            .collect();
        let v2 = (
            &m.job,
            m.checkpoint,
            m.kind,
            m.timestamp_ms,
            m.max_parallelism,
            operators,
            &m.properties,
        );
        let payload = bincode::serde::encode_to_vec(&v2, bincode::config::standard()).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION_2.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        assert_eq!(CheckpointMetadata::decode(&bytes), Ok(m));
    }

    #[test]
    fn handles_and_sizes() {
        let m = sample();
        assert_eq!(m.handles().count(), 4);
        assert_eq!(m.state_size(), 2 * 4096 + 2 * 17);
        assert_eq!(m.operators[&OperatorUid::new("window-agg")].parallelism, 2);
    }
}

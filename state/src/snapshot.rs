//! The frozen-snapshot contract of keyed state: what a snapshot of a table is
//! ([`KeyedSnapshot`], [`FrozenKeyed`]), how its chunks are named ([`chunk_name`],
//! [`is_chunk_of`]) and encoded by key group ([`encode_frozen`]), and the check that a
//! restored key belongs to its key group ([`check_group`]). Both backends' tables
//! snapshot to this form.

use crate::{
    encode, key_group_for_key, KeyGroup, MaxParallelism, StateError, StateKey, StateValue,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// The keyed state of one table captured by a snapshot: entries by key group.
pub type KeyedSnapshot = BTreeMap<KeyGroup, Vec<u8>>;

/// Tables get process-unique ids, so a snapshot's shards are never mistaken for
/// another table's.
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique table id.
pub(crate) fn next_table_id() -> u64 {
    NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed)
}

/// The separator between a state's name and a chunk suffix in snapshot names.
const CHUNK_SEPARATOR: char = '\u{1e}';

/// The name under which one shard of one table is stored: `<state>␞<table>.<shard>`.
///
/// The keyed state of a key group may be split over several such chunks (one per
/// shard that holds keys of the group); [`is_chunk_of`] recognises them.
pub fn chunk_name(state: &str, table: u64, shard: usize) -> String {
    format!("{state}{CHUNK_SEPARATOR}{table}.{shard}")
}

/// The state a stored name holds (part of): the name up to a [`chunk_name`]'s
/// table and shard, or the whole name.
pub fn chunk_state(name: &str) -> &str {
    name.split(CHUNK_SEPARATOR).next().unwrap_or(name)
}

/// Whether a stored name holds (part of) the state `state`: the name itself, or a
/// chunk of it made by [`chunk_name`].
pub fn is_chunk_of(name: &str, state: &str) -> bool {
    match name.strip_prefix(state) {
        Some("") => true,
        Some(rest) => rest.starts_with(CHUNK_SEPARATOR),
        None => false,
    }
}

/// Checks that `key` belongs to the key group it was stored under.
///
/// # Errors
/// [`StateError::Corrupt`] naming `state` when it does not.
pub fn check_group<K: Hash>(
    state: &str,
    key: &K,
    group: KeyGroup,
    max: MaxParallelism,
) -> Result<(), StateError> {
    if key_group_for_key(key, max) == group {
        Ok(())
    } else {
        Err(StateError::Corrupt {
            state: state.to_string(),
            reason: format!("a key stored under {group} hashes to another key group"),
        })
    }
}

/// Encodes `(header, entries of the group)` per key group.
pub(crate) fn encode_groups<'a, K, V, H>(
    name: &str,
    header: &H,
    entries: impl IntoIterator<Item = (&'a K, &'a V)>,
    max: MaxParallelism,
) -> Result<KeyedSnapshot, StateError>
where
    K: StateKey,
    V: StateValue,
    H: Serialize,
{
    let mut groups: BTreeMap<KeyGroup, Vec<(&K, &V)>> = BTreeMap::new();
    for (key, value) in entries {
        groups
            .entry(key_group_for_key(key, max))
            .or_default()
            .push((key, value));
    }
    groups
        .into_iter()
        .map(|(group, entries)| Ok((group, encode(name, &(header, &entries))?)))
        .collect()
}

/// A frozen snapshot of keyed state, type-erased for the uploader.
pub trait FrozenKeyed: Send + Sync {
    /// The state's name (chunks are named after it, see [`chunk_name`]).
    fn state_name(&self) -> &str;
    /// The table's process-unique id.
    fn table_id(&self) -> u64;
    /// The number of shards.
    fn shard_count(&self) -> usize;
    /// The generation of shard `shard`: equal generations of one table mean equal
    /// contents.
    fn shard_generation(&self, shard: usize) -> u64;
    /// The number of entries of shard `shard`.
    fn shard_len(&self, shard: usize) -> usize;
    /// Encodes shard `shard` by key group.
    ///
    /// # Errors
    /// [`StateError::Encode`] if a key or value cannot be serialised.
    fn encode_shard(&self, shard: usize, max: MaxParallelism) -> Result<KeyedSnapshot, StateError>;
    /// The table as part of a native RocksDB checkpoint; `None` (the default) for
    /// state that is not in RocksDB.
    ///
    /// # Errors
    /// [`StateError::Encode`] if the table's header cannot be serialised.
    fn native(&self) -> Result<Option<crate::NativeSnapshot>, StateError> {
        Ok(None)
    }
}

/// Encodes every shard of `frozen` by key group, each shard a chunk: the whole
/// snapshot, as a map from key group to chunk name to bytes.
///
/// # Errors
/// [`StateError::Encode`] if a key or value cannot be serialised.
pub fn encode_frozen(
    frozen: &dyn FrozenKeyed,
    max: MaxParallelism,
) -> Result<BTreeMap<KeyGroup, BTreeMap<String, Vec<u8>>>, StateError> {
    let mut out: BTreeMap<KeyGroup, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for shard in 0..frozen.shard_count() {
        if frozen.shard_len(shard) == 0 {
            continue;
        }
        let name = chunk_name(frozen.state_name(), frozen.table_id(), shard);
        for (group, bytes) in frozen.encode_shard(shard, max)? {
            out.entry(group).or_default().insert(name.clone(), bytes);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_belong_to_their_state() {
        let name = chunk_name("counts", 7, 3);
        assert!(is_chunk_of(&name, "counts"));
        assert!(is_chunk_of("counts", "counts"));
        assert!(!is_chunk_of(&name, "count"));
        assert!(!is_chunk_of("counts-2", "counts"));
        assert_eq!(chunk_state(&name), "counts");
        assert_eq!(chunk_state("counts"), "counts");
    }
}

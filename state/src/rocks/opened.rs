//! Opening a subtask's instance from the files of a native checkpoint of its own
//! key groups, instead of empty: nothing is written again.
//!
//! ```text
//!  <subtask>/restore (checkpoint files) ──rename──▶ <subtask>/db ──open──▶ every column family
//!      ──delete by range what lies outside the checkpoint's tables' non-empty key groups
//!      ──▶ tables claim their (column family, namespace): entry counts from the metadata
//! ```

use super::{clear_stale, rocks_error, Db, DirLock, RocksDbResources, SubtaskStore};
use crate::{RestoredInstance, StateError};
use rocksdb::{ColumnFamilyDescriptor, WriteBatch};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl SubtaskStore {
    /// Locks `dir` and opens the native checkpoint `restored` as its instance: the
    /// checkpoint's files (`restored.dir`, in the subtask's directory) become the
    /// instance's, and every entry outside the checkpoint's tables' non-empty key
    /// groups is deleted, so the tables' entry counts (from the checkpoint's
    /// metadata) are the instance's and a namespace no table restored holds nothing.
    /// Every column family gets a TTL compaction filter, switched on when a state
    /// with a time-to-live claims it ([`SubtaskStore::ensure_ttl_cf`]).
    ///
    /// # Errors
    /// [`StateError::Io`] naming the directory when the files cannot be moved or
    /// RocksDB cannot open them; [`StateError::Corrupt`] naming the state whose
    /// column family is missing from them; [`StateError::Locked`] as for
    /// [`SubtaskStore::open`].
    pub(crate) fn open_restored(
        resources: Arc<RocksDbResources>,
        dir: &Path,
        restored: &RestoredInstance,
    ) -> Result<Self, StateError> {
        let lock = DirLock::acquire(dir)?;
        let path = lock.dir.join("db");
        clear_stale(&[&path, &lock.dir.join("checkpoints")])?;
        fs::rename(&restored.dir, &path).map_err(|e| {
            StateError::io(
                format!(
                    "cannot move the restored RocksDB checkpoint {} to {}",
                    restored.dir.display(),
                    path.display()
                ),
                e,
            )
        })?;
        let mut options = resources.options();
        options.create_if_missing(false);
        let names = Db::list_cf(&options, &path).map_err(|e| {
            rocks_error(
                format!(
                    "cannot list the column families of the restored RocksDB checkpoint {}",
                    path.display()
                ),
                e,
            )
        })?;
        for table in &restored.tables {
            if !names.contains(&table.column_family) {
                return Err(StateError::Corrupt {
                    state: table.state.clone(),
                    reason: format!(
                        "the restored RocksDB checkpoint {} has no column family `{}`",
                        path.display(),
                        table.column_family
                    ),
                });
            }
        }
        let mut switches = HashMap::new();
        let descriptors: Vec<ColumnFamilyDescriptor> = names
            .iter()
            .map(|name| {
                let mut cf_options = resources.options();
                let on = Arc::new(AtomicBool::new(false));
                switches.insert(name.clone(), on.clone());
                cf_options.set_compaction_filter("weir-ttl", move |_level, _key, value| {
                    if on.load(Ordering::Relaxed)
                        && crate::ttl::expired_encoding(value, crate::ttl::now_ms())
                    {
                        rocksdb::compaction_filter::Decision::Remove
                    } else {
                        rocksdb::compaction_filter::Decision::Keep
                    }
                });
                ColumnFamilyDescriptor::new(name, cf_options)
            })
            .collect();
        let db = Db::open_cf_descriptors(&options, &path, descriptors).map_err(|e| {
            rocks_error(
                format!(
                    "cannot open the restored RocksDB checkpoint {}",
                    path.display()
                ),
                e,
            )
        })?;
        let mut known: BTreeMap<&str, BTreeSet<Vec<u8>>> = BTreeMap::new();
        let mut counts = HashMap::new();
        for table in &restored.tables {
            let prefixes = known.entry(table.column_family.as_str()).or_default();
            for (group, n) in
                (restored.key_groups.start..=restored.key_groups.end).zip(&table.entries)
            {
                if *n > 0 {
                    prefixes.insert(crate::rocks_table::prefix(group, &table.namespace));
                }
            }
            counts.insert(
                (table.column_family.clone(), table.namespace.clone()),
                table.entries.clone(),
            );
        }
        let empty = BTreeSet::new();
        let mut batch = WriteBatch::default();
        for name in &names {
            delete_outside(
                &db,
                name,
                known.get(name.as_str()).unwrap_or(&empty),
                &mut batch,
            )?;
        }
        let strays = batch.len();
        let store = Self::new(db, resources, path, lock, restored.instance, names);
        if strays > 0 {
            crate::rocks::write_unlogged(&store.db, batch).map_err(|e| {
                rocks_error(
                    format!(
                        "cannot delete stray entries of the restored RocksDB checkpoint {}",
                        store.path.display()
                    ),
                    e,
                )
            })?;
            store.note_write();
        }
        *store.restored.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        *store.ttl_switches.lock().unwrap_or_else(|p| p.into_inner()) = switches;
        Ok(store)
    }
}

/// Adds to `batch` a range deletion of every entry of column family `name` outside
/// the key prefixes `known` (all of one length): one seek per non-empty known
/// prefix, not one step per entry.
fn delete_outside(
    db: &Db,
    name: &str,
    known: &BTreeSet<Vec<u8>>,
    batch: &mut WriteBatch,
) -> Result<(), StateError> {
    // Keys start with a key group below 2^15: nothing sorts after this.
    const END: [u8; 64] = [0xff; 64];
    let cf = db
        .cf_handle(name)
        .ok_or_else(|| crate::rocks_table::missing_cf(name))?;
    let mut iter = db.raw_iterator_cf(&cf);
    iter.seek_to_first();
    while let Some(key) = iter.key().map(<[u8]>::to_vec) {
        let inside = known
            .range(..=key.clone())
            .next_back()
            .filter(|p| key.starts_with(p));
        match inside {
            Some(prefix) => match crate::rocks_table::prefix_end(prefix) {
                Some(end) => iter.seek(&end),
                None => break,
            },
            None => match known.range(key.clone()..).next() {
                Some(next) => {
                    batch.delete_range_cf(&cf, key.as_slice(), next.as_slice());
                    iter.seek(next);
                }
                None => {
                    if key.as_slice() < END.as_slice() {
                        batch.delete_range_cf(&cf, key.as_slice(), &END[..]);
                    }
                    break;
                }
            },
        }
    }
    iter.status()
        .map_err(|e| rocks_error(format!("cannot scan column family `{name}`"), e))
}

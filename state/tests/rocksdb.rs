#![cfg(feature = "rocksdb")]
//! The RocksDB backend against the heap backend: same answers, same canonical
//! snapshots, snapshots that restore across backends, and a locked state directory.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

use std::collections::BTreeMap;
use std::sync::Arc;
use weir_state::format::encode_frozen;
use weir_state::{
    decode, FrozenKeyed, KeyGroupRange, KeyedBackend, MaxParallelism, RocksDbConfig,
    RocksDbResources, StateError, StateTable, LOCK_FILE,
};

fn resources(dir: &std::path::Path, record_cache_entries: usize) -> Arc<RocksDbResources> {
    RocksDbResources::new(RocksDbConfig {
        dir: dir.to_path_buf(),
        block_cache_bytes: 32 << 20,
        write_buffer_bytes: 8 << 20,
        record_cache_entries,
        background_jobs: 1,
    })
    .unwrap()
}

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 127 };

fn rocks_backend(dir: &std::path::Path, cache: usize, range: KeyGroupRange) -> KeyedBackend {
    KeyedBackend::rocksdb(
        resources(dir, cache),
        dir.join("subtask"),
        MaxParallelism::DEFAULT,
        range,
    )
}

/// Every entry of a frozen snapshot, decoded.
fn decode_all(frozen: &dyn FrozenKeyed) -> BTreeMap<u32, i64> {
    let mut out = BTreeMap::new();
    for chunks in encode_frozen(frozen, MaxParallelism::DEFAULT)
        .unwrap()
        .values()
    {
        for bytes in chunks.values() {
            let entries: Vec<(u32, i64)> = decode("t", bytes).unwrap();
            for (k, v) in entries {
                assert!(out.insert(k, v).is_none(), "key {k} in two chunks");
            }
        }
    }
    out
}

/// A deterministic mix of inserts, updates, removals, scans, clears and snapshots,
/// applied to a RocksDB table and to a model: every answer and every snapshot agree.
/// With a record cache small enough to be emptied often, and with one holding
/// every key (the table then lives in the cache until a snapshot hands it off).
#[test]
fn rocksdb_table_behaves_like_the_model() -> Result<(), StateError> {
    // 1,024: the cache fills up, and dropping the removed keys makes room.
    for cache in [64, 1024, 4096] {
        table_behaves_like_the_model(cache)?;
    }
    Ok(())
}

/// A table whose cache has held all its keys since it was created reads nothing
/// back from RocksDB after a snapshot wrote them there: a key missing from the
/// cache is absent, and a scan is the cache's (hopping windows on RocksDB read
/// their slices that span a checkpoint so). Dropping the removed keys when the
/// cache is full keeps that; emptying it, when more than half the cache is live
/// keys, ends it, and misses read RocksDB again.
#[test]
fn a_table_that_never_left_its_cache_reads_nothing_back() -> Result<(), StateError> {
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 100, ALL);
    let probe = backend.stats_probe().unwrap();
    let gets = || probe.read().unwrap().gets;
    let mut table: StateTable<u32, i64> = StateTable::in_backend(&backend, "t", Vec::new())?;
    let mut model = BTreeMap::new();
    for key in 0..60u32 {
        table.insert(key, i64::from(key))?;
        model.insert(key, i64::from(key));
    }
    let frozen = table.freeze()?;
    assert_eq!(decode_all(&frozen), model, "the snapshot holds them");
    for key in 0..55u32 {
        assert_eq!(table.remove(&key)?, model.remove(&key));
    }
    // New keys (misses), past the cache's size: the 55 removed ones make room.
    for key in 1000..1080u32 {
        assert_eq!(table.get(&key)?, None);
        *table.get_or_insert_with(key, || 0)? += 1;
        model.insert(key, 1);
    }
    let entries: BTreeMap<u32, i64> = table.entries()?.into_iter().collect();
    assert_eq!(entries, model);
    assert_eq!(table.len(), model.len());
    assert_eq!(gets(), 0, "nothing read from RocksDB");
    assert_eq!(decode_all(&table.freeze()?), model);
    // Over half the cache live: it is emptied, and a miss reads RocksDB.
    for key in 2000..2100u32 {
        table.insert(key, 2)?;
        model.insert(key, 2);
    }
    assert_eq!(table.get(&1000)?, Some(&1));
    assert!(
        gets() > 0,
        "a miss reads RocksDB once the cache was emptied"
    );
    let entries: BTreeMap<u32, i64> = table.entries()?.into_iter().collect();
    assert_eq!(entries, model);
    Ok(())
}

fn table_behaves_like_the_model(cache: usize) -> Result<(), StateError> {
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), cache, ALL);
    let mut table: StateTable<u32, i64> = StateTable::in_backend(&backend, "t", Vec::new())?;
    assert!(table.is_rocksdb());
    let mut model = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for step in 0..20_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = (seed % 700) as u32;
        match seed % 10 {
            0..=4 => {
                *table.get_or_insert_with(key, || 0)? += 1;
                *model.entry(key).or_insert(0) += 1;
            }
            5 | 6 => assert_eq!(
                table.insert(key, i64::from(step))?,
                model.insert(key, i64::from(step))
            ),
            7 => assert_eq!(table.remove(&key)?, model.remove(&key)),
            8 => assert_eq!(table.get(&key)?.copied(), model.get(&key).copied()),
            _ => {
                if step % 97 == 0 {
                    snapshots.push((table.freeze()?, model.clone()));
                } else if step % 3001 == 0 {
                    table.clear()?;
                    model.clear();
                } else if step % 7 == 0 {
                    let mut entries = table.entries()?;
                    entries.sort_unstable();
                    assert_eq!(entries, model.clone().into_iter().collect::<Vec<_>>());
                }
            }
        }
        assert_eq!(table.len(), model.len());
    }
    for (frozen, expected) in &snapshots {
        assert_eq!(&decode_all(frozen), expected);
    }
    let mut entries = table.entries()?;
    entries.sort_unstable();
    assert_eq!(entries, model.clone().into_iter().collect::<Vec<_>>());
    Ok(())
}

/// A key group's generation stays put while nothing of it is written, so an
/// incremental checkpoint re-encodes only the key groups written since the last.
#[test]
fn unchanged_key_groups_keep_their_generation() -> Result<(), StateError> {
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 1024, ALL);
    let mut table: StateTable<u32, i64> = StateTable::in_backend(&backend, "t", Vec::new())?;
    for key in 0..1000 {
        table.insert(key, 1)?;
    }
    let first = table.freeze()?;
    *table.get_mut(&7)?.unwrap() += 1;
    let second = table.freeze()?;
    let group = weir_state::key_group_for_key(&7u32, MaxParallelism::DEFAULT).get() as usize;
    let mut moved = Vec::new();
    for shard in 0..second.shard_count() {
        if first.shard_generation(shard) != second.shard_generation(shard) {
            moved.push(shard);
        }
    }
    assert_eq!(moved, vec![group]);
    assert_eq!(decode_all(&first).get(&7), Some(&1));
    assert_eq!(decode_all(&second).get(&7), Some(&2));
    Ok(())
}

/// A snapshot's synchronous part only hands its writes off to the instance; the
/// RocksDB checkpoint is taken later, by whoever reads it first (an upload) or
/// before the task's next write reaches RocksDB. Either way it holds the state as
/// frozen, whatever is written after the freeze, and reads in between see every
/// write, the handed-off ones included.
#[test]
fn a_checkpoint_taken_after_the_freeze_holds_the_frozen_state() -> Result<(), StateError> {
    let dir = tempfile::tempdir().unwrap();
    // A record cache of 100: writing 250 keys flushes it twice on its own, so the
    // frozen state is partly in RocksDB, partly in the cache.
    let backend = rocks_backend(dir.path(), 100, ALL);
    let mut table: StateTable<u32, i64> = StateTable::in_backend(&backend, "t", Vec::new())?;
    let mut model = BTreeMap::new();
    for key in 0..250u32 {
        table.insert(key, i64::from(key))?;
        model.insert(key, i64::from(key));
    }
    // Taken by the task's next write to RocksDB (the cache fills again).
    let first = table.freeze()?;
    let frozen = model.clone();
    for key in 0..250u32 {
        assert_eq!(table.get(&key)?, Some(&i64::from(key)), "key {key}");
    }
    for key in 0..400u32 {
        if key % 3 == 0 {
            table.remove(&key)?;
            model.remove(&key);
        } else {
            table.insert(key, -i64::from(key))?;
            model.insert(key, -i64::from(key));
        }
    }
    // Taken by its reader, with later writes still in the cache.
    let second = table.freeze()?;
    table.insert(1000, 1)?;
    table.remove(&1)?;
    assert_eq!(decode_all(&second), model);
    assert_eq!(decode_all(&first), frozen);
    for key in 0..400u32 {
        let expected = if key == 1 { None } else { model.get(&key) };
        assert_eq!(table.get(&key)?, expected, "key {key}");
    }

    // Timers alike: those registered after the freeze, and those fired after it,
    // do not change what it holds.
    use weir_state::{TimeDomain, Timers};
    let max = MaxParallelism::DEFAULT;
    let mut timers: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    for key in 0..500u32 {
        timers.register(TimeDomain::EventTime, key, i64::from(key))?;
    }
    let snapshot = timers.snapshot(max)?;
    let fired = drain(&mut timers, TimeDomain::EventTime, 99)?;
    assert_eq!(fired.len(), 100);
    for key in 500..600u32 {
        timers.register(TimeDomain::EventTime, key, i64::from(key))?;
    }
    let (_, held) = timers_of(snapshot)?;
    let expected: Vec<_> = (0..500u32).map(|key| (0u8, i64::from(key), key)).collect();
    let mut held = held;
    held.sort();
    assert_eq!(held, expected);
    Ok(())
}

/// A snapshot of either backend restores into the other, to the same entries; a
/// restore keeps only the key groups of the restoring subtask.
#[test]
fn snapshots_restore_across_backends() -> Result<(), StateError> {
    let max = MaxParallelism::DEFAULT;
    let dir = tempfile::tempdir().unwrap();
    let mut heap: StateTable<u32, i64> = StateTable::new("t");
    for key in 0..5000 {
        heap.insert(key, i64::from(key) * 3)?;
    }
    let snapshot = heap.snapshot(max)?;

    let backend = rocks_backend(dir.path(), 100, ALL);
    let mut rocks: StateTable<u32, i64> = StateTable::in_backend(&backend, "t", Vec::new())?;
    assert_eq!(rocks.restore(&snapshot, ALL, max)?, 5000);
    assert_eq!(rocks.len(), 5000);
    assert_eq!(rocks.get(&4999)?, Some(&14997));
    // The same key groups, holding the same entries (in another order).
    let decoded = |snapshot: &weir_state::KeyedSnapshot| -> BTreeMap<u16, Vec<(u32, i64)>> {
        snapshot
            .iter()
            .map(|(group, bytes)| {
                let mut entries: Vec<(u32, i64)> = decode("t", bytes).unwrap();
                entries.sort_unstable();
                (group.get(), entries)
            })
            .collect()
    };
    assert_eq!(decoded(&rocks.snapshot(max)?), decoded(&snapshot));

    let mut back: StateTable<u32, i64> = StateTable::new("t");
    back.restore(&rocks.snapshot(max)?, ALL, max)?;
    let (mut a, mut b) = (heap.entries()?, back.entries()?);
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);

    // Rescaled: the second of two subtasks keeps only its key groups.
    let half = KeyGroupRange::for_subtask(max, 2, 1);
    let other = tempfile::tempdir().unwrap();
    let backend = rocks_backend(other.path(), 100, half);
    let mut part: StateTable<u32, i64> = StateTable::in_backend(&backend, "t", Vec::new())?;
    part.restore(&snapshot, half, max)?;
    let expected = (0..5000u32)
        .filter(|k| half.contains(weir_state::key_group_for_key(k, max)))
        .count();
    assert_eq!(part.len(), expected);
    assert_eq!(part.entries()?.len(), expected);
    Ok(())
}

/// Tables of one state side by side under different namespaces (windows) do not
/// see each other; clearing one leaves the other.
#[test]
fn namespaces_separate_tables_of_one_state() -> Result<(), StateError> {
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 16, ALL);
    let mut a: StateTable<u32, i64> =
        StateTable::in_backend(&backend, "w", 1i64.to_be_bytes().to_vec())?;
    let mut b: StateTable<u32, i64> =
        StateTable::in_backend(&backend, "w", 2i64.to_be_bytes().to_vec())?;
    for key in 0..100 {
        a.insert(key, 1)?;
        b.insert(key, 2)?;
    }
    a.clear()?;
    assert!(a.entries()?.is_empty());
    assert_eq!(b.entries()?.len(), 100);
    assert_eq!(b.get(&5)?, Some(&2));
    assert_eq!(a.get(&5)?, None);
    Ok(())
}

/// A state directory in use cannot be opened again, by this process or another.
#[test]
fn a_locked_state_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = rocks_backend(dir.path(), 16, ALL);
    let _open: StateTable<u32, i64> = StateTable::in_backend(&first, "t", Vec::new()).unwrap();
    let second = rocks_backend(dir.path(), 16, ALL);
    let err = StateTable::<u32, i64>::in_backend(&second, "t", Vec::new()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StateError::Locked(_)), "{text}");
    assert!(text.contains("is locked by this process"), "{text}");
    assert!(text.contains(LOCK_FILE), "{text}");
}

/// Another live process holding the lock file: the open fails naming it. A lock
/// file left by a process that is gone is taken over.
#[test]
fn a_state_directory_locked_by_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let subtask = dir.path().join("subtask");
    std::fs::create_dir_all(&subtask).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(subtask.join(LOCK_FILE), other.id().to_string()).unwrap();
    let backend = rocks_backend(dir.path(), 16, ALL);
    let err = StateTable::<u32, i64>::in_backend(&backend, "t", Vec::new()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("is locked by process {}", other.id()))
            && text.contains("another weir process is using it"),
        "{text}"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    // The holder is gone: its lock file is stale and taken over.
    let backend = rocks_backend(dir.path(), 16, ALL);
    let table = StateTable::<u32, i64>::in_backend(&backend, "t", Vec::new());
    assert!(table.is_ok(), "{:?}", table.err());
}

/// A state with a time-to-live behaves the same on both backends: values are
/// visible until they expire, never after, an update extends the life, and the
/// expiry survives a snapshot restored into the other backend.
#[test]
fn ttl_state_expires_values_alike_on_both_backends() -> Result<(), StateError> {
    use std::time::Duration;
    use weir_state::TtlValueState;
    let max = MaxParallelism::DEFAULT;
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 16, ALL);
    let ttl = Duration::from_millis(100);
    let heap: TtlValueState<u32, String> = TtlValueState::new("ttl", ttl);
    let rocks: TtlValueState<u32, String> = TtlValueState::in_backend(&backend, "ttl", ttl)?;
    for mut state in [heap, rocks] {
        // Written at 0..100: key k expires at k + 100.
        for key in 0..100u32 {
            state.update(key, format!("v{key}"), i64::from(key))?;
        }
        // Key 10 is written again at 50: it lives until 150.
        state.update(10, "again".into(), 50)?;
        assert_eq!(state.value(&5, 104)?, Some(&"v5".to_string()));
        assert_eq!(state.value(&5, 105)?, None, "expired at 105");
        assert_eq!(state.value(&5, 0)?, None, "an expired value was removed");
        assert_eq!(state.value(&10, 149)?, Some(&"again".to_string()));
        assert_eq!(
            state.clear(&11, 111)?,
            None,
            "expired values are not returned"
        );
        // At 159 every key but 60..100 has expired (key 10 too, at 150).
        assert_eq!(state.cleanup(159)? + 2, 100 - 40);
        assert_eq!(state.len(), 40);

        // The snapshot carries the expiry times into the other backend.
        let snapshot = state.snapshot(max)?;
        let other_dir = tempfile::tempdir().unwrap();
        let other_backend = rocks_backend(other_dir.path(), 16, ALL);
        let mut other: TtlValueState<u32, String> = if state.is_rocksdb() {
            TtlValueState::new("ttl", ttl)
        } else {
            TtlValueState::in_backend(&other_backend, "ttl", ttl)?
        };
        assert_eq!(other.restore(&snapshot, ALL, max)?, 40);
        assert_eq!(other.value(&70, 169)?, Some(&"v70".to_string()));
        assert_eq!(other.value(&70, 170)?, None);
        assert_eq!(other.cleanup(1_000)?, 39);
        assert!(other.is_empty());
    }
    Ok(())
}

/// In RocksDB expired values leave disk when their column family compacts, with no
/// read or scan by the job (the compaction filter checks the wall clock).
#[test]
fn rocksdb_compaction_drops_expired_ttl_values() -> Result<(), StateError> {
    use std::time::Duration;
    use weir_state::TtlValueState;
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 1000, ALL);
    let mut state: TtlValueState<u32, u64> =
        TtlValueState::in_backend(&backend, "sessions", Duration::from_secs(3600))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Half written two hours ago (expired an hour ago), half now (live an hour).
    for key in 0..10_000u32 {
        let written = if key % 2 == 0 { now - 7_200_000 } else { now };
        state.update(key, u64::from(key), written)?;
    }
    state.flush()?;
    let mut stored = 0;
    state.for_each(|_, _| stored += 1)?;
    assert_eq!(stored, 10_000, "nothing is dropped before compaction");
    state.compact()?;
    let mut kept = Vec::new();
    state.for_each(|key, entry| kept.push((*key, entry.value)))?;
    kept.sort_unstable();
    assert_eq!(
        kept,
        (0..10_000u32)
            .filter(|k| k % 2 == 1)
            .map(|k| (k, u64::from(k)))
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// Lists and maps with a time-to-live expire element by element alike on both
/// backends, carry their expiry times through a snapshot into the other backend,
/// and in RocksDB compaction drops a list whose elements have all expired.
#[test]
fn ttl_lists_and_maps_expire_per_element_alike_on_both_backends() -> Result<(), StateError> {
    use std::time::Duration;
    use weir_state::{TtlListState, TtlMapState};
    let max = MaxParallelism::DEFAULT;
    let ttl = Duration::from_millis(100);
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 16, ALL);
    let lists = [
        TtlListState::<u32, u32>::new("lists", ttl),
        TtlListState::in_backend(&backend, "lists", ttl)?,
    ];
    let maps = [
        TtlMapState::<u32, u32, String>::new("maps", ttl),
        TtlMapState::in_backend(&backend, "maps", ttl)?,
    ];
    for (mut list, mut map) in lists.into_iter().zip(maps) {
        // Key k gets element/entry i at time 10 * i, for i in 0..5: element i expires
        // at 10 * i + 100.
        for key in 0..200u32 {
            for i in 0..5u32 {
                let at = i64::from(10 * i);
                list.add(key, i, at)?;
                assert_eq!(map.put(key, i, format!("{key}.{i}"), at)?, None);
            }
        }
        assert_eq!(list.list(&3, 99)?, vec![&0, &1, &2, &3, &4]);
        assert_eq!(list.list(&3, 121)?, vec![&3, &4], "0..=2 expired");
        assert_eq!(
            list.list(&3, 0)?,
            vec![&3, &4],
            "expired elements were dropped"
        );
        assert_eq!(map.get_entry(&3, &1, 109)?, Some(&"3.1".to_string()));
        assert_eq!(map.get_entry(&3, &1, 110)?, None);
        assert_eq!(
            map.get_entry(&3, &1, 0)?,
            None,
            "an expired entry was removed"
        );
        // Writing again extends an entry's life.
        assert_eq!(map.put(3, 2, "again".into(), 100)?, Some("3.2".to_string()));
        assert_eq!(map.get_entry(&3, &2, 199)?, Some(&"again".to_string()));
        let mut entries = map.entries_of(&4, 125)?;
        entries.sort();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(list.take(&5, 135)?, vec![4]);
        assert!(list.list(&5, 0)?.is_empty(), "taken");
        // At 131 only elements 4 (expiring at 140) are left: no list is empty.
        assert_eq!(list.cleanup(131)?, 0);
        assert_eq!(list.len(), 199);
        assert_eq!(list.list(&7, 131)?, vec![&4]);
        assert_eq!(map.cleanup(131)?, 0);
        assert_eq!(map.len(), 200);
        assert_eq!(map.entries_of(&3, 131)?.len(), 2, "entries 2 (again) and 4");

        // Through a snapshot into the other backend, with the expiry times.
        let other_dir = tempfile::tempdir().unwrap();
        let other_backend = rocks_backend(other_dir.path(), 16, ALL);
        let rocks = list.is_rocksdb();
        let (mut other_list, mut other_map): (
            TtlListState<u32, u32>,
            TtlMapState<u32, u32, String>,
        ) = if rocks {
            (
                TtlListState::new("lists", ttl),
                TtlMapState::new("maps", ttl),
            )
        } else {
            (
                TtlListState::in_backend(&other_backend, "lists", ttl)?,
                TtlMapState::in_backend(&other_backend, "maps", ttl)?,
            )
        };
        other_list.restore(&list.snapshot(max)?, ALL, max)?;
        other_map.restore(&map.snapshot(max)?, ALL, max)?;
        assert_eq!(other_list.list(&9, 139)?, vec![&4]);
        assert!(other_list.list(&9, 140)?.is_empty());
        assert_eq!(
            other_map.get_entry(&3, &2, 199)?,
            Some(&"again".to_string())
        );
        assert_eq!(other_map.get_entry(&9, &4, 140)?, None);
        // Once everything has expired, a cleanup removes every list and map.
        assert_eq!(list.cleanup(1_000)?, 199);
        assert_eq!(map.cleanup(1_000)?, 200);
        assert!(list.is_empty() && map.is_empty());
    }

    // RocksDB compaction drops a list once all its elements have expired (by the
    // wall clock), keeping lists with one live element.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut lists: TtlListState<u32, u32> =
        TtlListState::in_backend(&backend, "aging", Duration::from_secs(3600))?;
    for key in 0..1000u32 {
        lists.add(key, 1, now - 7_200_000)?;
        if key % 2 == 1 {
            lists.add(key, 2, now)?;
        }
    }
    lists.flush()?;
    lists.compact()?;
    let mut kept = Vec::new();
    lists.for_each(|key, _| kept.push(*key))?;
    kept.sort_unstable();
    assert_eq!(
        kept,
        (0..1000u32).filter(|k| k % 2 == 1).collect::<Vec<_>>()
    );
    Ok(())
}

/// The LRU-bounded store evicts the same keys in RocksDB as on the heap, and an
/// eviction is a deletion: the snapshot no longer holds the key.
#[test]
fn lru_bounded_store_evicts_alike_on_both_backends() -> Result<(), StateError> {
    use weir_state::LruValueState;
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 64, ALL);
    let mut heap: LruValueState<u32, i64> = LruValueState::new("t", 500);
    let mut rocks: LruValueState<u32, i64> = LruValueState::in_backend(&backend, "t", 500)?;
    for state in [&mut heap, &mut rocks] {
        for step in 0..5_000u32 {
            let key = step.wrapping_mul(2_654_435_761) % 2_000;
            if step % 3 == 0 {
                state.get(&key)?;
            } else {
                state.put(key, i64::from(step))?;
            }
        }
        assert_eq!(state.len(), 500);
    }
    assert_eq!(heap.evictions(), rocks.evictions());
    let snapshot_of = |state: &mut LruValueState<u32, i64>| -> Result<_, StateError> {
        state.flush()?;
        Ok(decode_all(&state.freeze()?))
    };
    let (h, r) = (snapshot_of(&mut heap)?, snapshot_of(&mut rocks)?);
    assert_eq!(h.len(), 500);
    assert_eq!(h, r);
    Ok(())
}

/// A native checkpoint (the RocksDB checkpoint directory, copied elsewhere) reads
/// back as exactly the canonical form of its tables, and for a narrower key-group
/// range (rescaling) as exactly the key groups of that range.
#[test]
fn native_checkpoints_read_back_in_the_canonical_form() -> Result<(), StateError> {
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 64, ALL);
    let mut a: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 1])?;
    let mut b: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 2])?;
    for key in 0..3000u32 {
        a.insert(key, i64::from(key))?;
        if key % 3 == 0 {
            b.insert(key, -i64::from(key))?;
        }
    }
    a.flush()?;
    b.flush()?;
    let frozen = [a.freeze()?.with_header(1u8), b.freeze()?.with_header(2u8)];
    let natives: Vec<_> = frozen
        .iter()
        .map(|f| f.native().unwrap().unwrap())
        .collect();
    assert!(Arc::ptr_eq(&natives[0].checkpoint, &natives[1].checkpoint));
    // Materialized elsewhere, as a restore does.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    // Taken when read (the task thread only reserved it), as an upload does.
    natives[0].checkpoint.materialize()?;
    for entry in std::fs::read_dir(natives[0].checkpoint.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let tables: Vec<_> = natives.iter().map(|n| n.table.clone()).collect();
    for range in [ALL, KeyGroupRange { start: 40, end: 90 }] {
        let mut read: BTreeMap<(usize, u16), Vec<u8>> = BTreeMap::new();
        weir_state::read_native_checkpoint(&copy, &tables, range, |group, table, bytes| {
            assert!(read.insert((table, group.get()), bytes).is_none());
            Ok(())
        })?;
        let mut expected = BTreeMap::new();
        for (index, table) in frozen.iter().enumerate() {
            for (group, chunks) in encode_frozen(table, MaxParallelism::DEFAULT)? {
                if range.contains(group) {
                    for bytes in chunks.into_values() {
                        expected.insert((index, group.get()), bytes);
                    }
                }
            }
        }
        assert!(!expected.is_empty());
        assert_eq!(read, expected, "key groups {range:?}");
    }
    Ok(())
}

/// Drains every timer of `domain` due at `now`, sorted (timers due at the same time
/// may fire in any order).
fn drain(
    timers: &mut weir_state::Timers<u32>,
    domain: weir_state::TimeDomain,
    now: i64,
) -> Result<Vec<(i64, u32)>, StateError> {
    let mut fired = Vec::new();
    let mut last = i64::MIN;
    while let Some((key, time)) = timers.pop_due(domain, now)? {
        assert!(time >= last, "timer {time} fired after one at {last}");
        assert!(time <= now);
        last = time;
        fired.push((time, key));
    }
    fired.sort_unstable();
    Ok(fired)
}

/// The canonical form of a timers snapshot: every timer, sorted.
fn timers_of(
    snapshot: weir_state::TimersSnapshot,
) -> Result<(weir_state::KeyedSnapshot, Vec<(u8, i64, u32)>), StateError> {
    let max = MaxParallelism::DEFAULT;
    let encoded = match snapshot {
        weir_state::TimersSnapshot::Encoded(encoded) => encoded,
        weir_state::TimersSnapshot::Frozen(frozen) => {
            let mut encoded = weir_state::KeyedSnapshot::new();
            for (group, chunks) in encode_frozen(frozen.as_ref(), max)? {
                assert_eq!(chunks.len(), 1, "timers are one table");
                for bytes in chunks.into_values() {
                    encoded.insert(group, bytes);
                }
            }
            encoded
        }
    };
    let mut all = Vec::new();
    for (group, bytes) in encoded.iter() {
        let entries: Vec<(weir_state::TimerEntry<u32>, ())> = decode("timers", bytes)?;
        for (entry, ()) in entries {
            assert_eq!(weir_state::key_group_for_key(entry.key(), max), *group);
            let domain = match entry.domain() {
                weir_state::TimeDomain::EventTime => 0,
                weir_state::TimeDomain::ProcessingTime => 1,
            };
            all.push((domain, entry.time(), *entry.key()));
        }
    }
    all.sort_unstable();
    Ok((encoded, all))
}

/// Popping timers one after another does not step over the tombstones of those
/// popped before: each pop seeks from its key group's earliest time, not from the
/// group's start. Before, every pop stepped over all earlier pops' tombstones until a
/// compaction dropped them, quadratic in the timers fired between flushes (session
/// windows on RocksDB ran at 2,600 events/s without checkpoints).
#[test]
fn popping_timers_skips_no_tombstones_of_earlier_pops() -> Result<(), StateError> {
    use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};
    use weir_state::{TimeDomain, Timers};
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 64, ALL);
    let mut timers: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    const N: i64 = 4_000;
    // One key, so one key group: every timer in one group's range.
    for time in 0..N {
        timers.register(TimeDomain::EventTime, 7, time)?;
    }
    // Into RocksDB (else they are popped from memory, where they were registered).
    timers.flush()?;
    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut perf = PerfContext::default();
    perf.reset();
    for now in 0..N {
        assert_eq!(timers.pop_due(TimeDomain::EventTime, now)?, Some((7, now)));
    }
    let skipped = perf.metric(PerfMetric::InternalDeleteSkippedCount);
    set_perf_stats(PerfStatsLevel::Disable);
    // Quadratic would be about N² / 2 = 8,000,000.
    assert!(skipped < 4 * N as u64, "{skipped} tombstones stepped over");
    Ok(())
}

/// Timers registered and fired (or deleted) between two snapshots never reach
/// RocksDB when they are later than every timer it holds: session windows register
/// and fire most of theirs so. Those a snapshot finds are written, and fire from
/// RocksDB afterwards.
#[test]
fn timers_fired_between_snapshots_are_never_written() -> Result<(), StateError> {
    use weir_state::{TimeDomain, Timers};
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 1_000, ALL);
    let probe = backend.stats_probe().unwrap();
    let mut timers: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    let domain = TimeDomain::EventTime;
    for key in 0..500u32 {
        timers.register(domain, key, i64::from(key))?;
        timers.register(domain, key, 1_000 + i64::from(key))?;
        timers.delete(domain, &key, 1_000 + i64::from(key))?;
    }
    let fired = drain(&mut timers, domain, 199)?;
    assert_eq!(
        fired,
        (0..200).map(|k| (i64::from(k), k)).collect::<Vec<_>>()
    );
    let written = |probe: &weir_state::StatsProbe| {
        let stats = probe.read().unwrap();
        (stats.puts, stats.deletes)
    };
    assert_eq!(written(&probe), (0, 0), "nothing reached RocksDB");
    // A snapshot writes the 300 left; firing them then deletes them in RocksDB.
    let snapshot = timers.snapshot(MaxParallelism::DEFAULT)?;
    let (_, held) = timers_of(snapshot)?;
    assert_eq!(held.len(), 300);
    timers.register(domain, 7, 150)?; // earlier than those in RocksDB: written too
    let fired = drain(&mut timers, domain, 10_000)?;
    let mut expected: Vec<(i64, u32)> = (200..500).map(|k| (i64::from(k), k)).collect();
    expected.insert(0, (150, 7));
    assert_eq!(fired, expected);
    assert_eq!(timers.pop_due(domain, i64::MAX)?, None);
    // The next snapshot applies the deletions first, and holds no timer.
    assert!(timers_of(timers.snapshot(MaxParallelism::DEFAULT)?)?
        .1
        .is_empty());
    assert_eq!(written(&probe), (301, 301));
    Ok(())
}

/// Timers in RocksDB against timers on the heap: a deterministic mix of
/// registrations (duplicates included), deletions, firings and snapshots gives the
/// same timers firing at the same times, and the same canonical snapshots.
#[test]
fn rocksdb_timers_behave_like_heap_timers() -> Result<(), StateError> {
    use weir_state::{TimeDomain, Timers};
    let max = MaxParallelism::DEFAULT;
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 64, ALL);
    let mut rocks: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    assert!(rocks.is_rocksdb());
    let mut heap: Timers<u32> = Timers::new("timers");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut watermark, mut clock) = (0i64, 0i64);
    for step in 0..30_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = (seed % 900) as u32;
        let domain = if seed % 3 == 0 {
            TimeDomain::ProcessingTime
        } else {
            TimeDomain::EventTime
        };
        let now = match domain {
            TimeDomain::EventTime => watermark,
            TimeDomain::ProcessingTime => clock,
        };
        // Times around and behind the clocks, negative ones included.
        let time = now - 50 + ((seed >> 20) % 400) as i64;
        match (seed >> 40) % 16 {
            0..=9 => {
                rocks.register(domain, key, time)?;
                heap.register(domain, key, time)?;
            }
            10 | 11 => {
                rocks.delete(domain, &key, time)?;
                heap.delete(domain, &key, time)?;
            }
            12 | 13 => {
                watermark += ((seed >> 24) % 40) as i64;
                assert_eq!(
                    drain(&mut rocks, TimeDomain::EventTime, watermark)?,
                    drain(&mut heap, TimeDomain::EventTime, watermark)?,
                    "event-time timers due at {watermark}, step {step}"
                );
            }
            14 => {
                clock += ((seed >> 24) % 40) as i64;
                assert_eq!(
                    drain(&mut rocks, TimeDomain::ProcessingTime, clock)?,
                    drain(&mut heap, TimeDomain::ProcessingTime, clock)?,
                    "processing-time timers due at {clock}, step {step}"
                );
            }
            _ if step % 7 == 0 => {
                let (_, a) = timers_of(rocks.snapshot(max)?)?;
                let (_, b) = timers_of(heap.snapshot(max)?)?;
                assert_eq!(a, b, "snapshots at step {step}");
            }
            _ => {}
        }
    }
    let (_, a) = timers_of(rocks.snapshot(max)?)?;
    let (_, b) = timers_of(heap.snapshot(max)?)?;
    assert!(!a.is_empty());
    assert_eq!(a, b);
    for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
        assert_eq!(
            drain(&mut rocks, domain, i64::MAX)?,
            drain(&mut heap, domain, i64::MAX)?
        );
    }
    assert!(timers_of(rocks.snapshot(max)?)?.1.is_empty());
    Ok(())
}

/// Firing timers while registering and deleting others between the pops, as the
/// session windows do (each fired key registers its next timer): RocksDB timers,
/// which read a key group's due timers ahead, fire at the same times as heap
/// timers, in time order, each once: registrations into the read-ahead range
/// (earlier and later times, duplicates) and deletions of read-ahead timers
/// included. Few keys, so that key groups hold many timers each.
#[test]
fn timers_registered_and_deleted_while_firing_fire_as_on_the_heap() -> Result<(), StateError> {
    use weir_state::{TimeDomain, Timers};
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 64, ALL);
    let mut rocks: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    let mut heap: Timers<u32> = Timers::new("timers");
    let domain = TimeDomain::EventTime;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let mut watermark = 0i64;
    let mut fired = 0;
    for round in 0..60 {
        for _ in 0..3_000 {
            let (key, time) = (next(5) as u32, watermark + next(3_000) as i64);
            rocks.register(domain, key, time)?;
            heap.register(domain, key, time)?;
        }
        watermark += 1_500;
        let (mut from_rocks, mut from_heap) = (Vec::new(), Vec::new());
        loop {
            let (a, b) = (
                rocks.pop_due(domain, watermark)?,
                heap.pop_due(domain, watermark)?,
            );
            let (Some(a), Some(b)) = (a, b) else {
                assert_eq!(a, b, "round {round}: one side has more due timers");
                break;
            };
            assert_eq!(a.1, b.1, "round {round}: timers fire in time order");
            from_rocks.push((a.1, a.0));
            from_heap.push((b.1, b.0));
            // Between pops: a timer later (due or not) or earlier than the one
            // fired, and now and then a deletion of a timer that may be read
            // ahead. Not at the time fired: the two sides fire the keys of one
            // time in different orders.
            let (key, mut time) = (next(5) as u32, a.1 + next(2_000) as i64 - 100);
            if time == a.1 {
                time += 1;
            }
            match next(10) {
                0..=6 => {
                    rocks.register(domain, key, time)?;
                    heap.register(domain, key, time)?;
                }
                7 | 8 => {
                    rocks.delete(domain, &key, time)?;
                    heap.delete(domain, &key, time)?;
                }
                _ => {}
            }
        }
        from_rocks.sort_unstable();
        from_heap.sort_unstable();
        assert_eq!(from_rocks, from_heap, "round {round}");
        fired += from_rocks.len();
    }
    assert!(fired > 100_000, "{fired}");
    assert_eq!(
        drain(&mut rocks, domain, i64::MAX)?,
        drain(&mut heap, domain, i64::MAX)?
    );
    Ok(())
}

/// A timers snapshot of either backend restores into the other, and into a narrower
/// key-group range (rescaling) as exactly the timers of that range.
#[test]
fn timer_snapshots_restore_across_backends_and_ranges() -> Result<(), StateError> {
    use weir_state::{TimeDomain, Timers};
    let max = MaxParallelism::DEFAULT;
    let dir = tempfile::tempdir().unwrap();
    let mut heap: Timers<u32> = Timers::new("timers");
    for key in 0..4000u32 {
        heap.register(TimeDomain::EventTime, key, i64::from(key % 97) - 10)?;
        if key % 5 == 0 {
            heap.register(TimeDomain::ProcessingTime, key, i64::from(key))?;
        }
    }
    let (snapshot, all) = timers_of(heap.snapshot(max)?)?;
    assert_eq!(all.len(), 4800);
    let chunks = || {
        snapshot
            .iter()
            .map(|(group, bytes)| (*group, bytes.as_slice()))
    };

    let backend = rocks_backend(dir.path(), 64, ALL);
    let mut rocks: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    assert_eq!(rocks.restore_chunks(chunks(), ALL, max)?, 4800);
    let (from_rocks, restored) = timers_of(rocks.snapshot(max)?)?;
    assert_eq!(restored, all);

    let mut back: Timers<u32> = Timers::new("timers");
    let from_rocks_chunks = from_rocks.iter().map(|(g, b)| (*g, b.as_slice()));
    assert_eq!(back.restore_chunks(from_rocks_chunks, ALL, max)?, 4800);
    assert_eq!(timers_of(back.snapshot(max)?)?.1, all);

    let half = KeyGroupRange::for_subtask(max, 2, 1);
    let other = tempfile::tempdir().unwrap();
    let backend = rocks_backend(other.path(), 64, half);
    let mut part: Timers<u32> = Timers::in_backend(&backend, "timers")?;
    let expected: Vec<_> = all
        .iter()
        .filter(|(_, _, key)| half.contains(weir_state::key_group_for_key(key, max)))
        .copied()
        .collect();
    assert_eq!(part.restore_chunks(chunks(), half, max)?, expected.len());
    assert_eq!(timers_of(part.snapshot(max)?)?.1, expected);
    // The earliest timers fire first after a restore too.
    let fired = drain(&mut part, TimeDomain::EventTime, -5)?;
    let due: Vec<_> = expected
        .iter()
        .filter(|(domain, time, _)| *domain == 0 && *time <= -5)
        .map(|(_, time, key)| (*time, *key))
        .collect();
    assert!(!due.is_empty());
    assert_eq!(fired, due);
    Ok(())
}

/// Copies the files of a RocksDB checkpoint into `to` (a restore downloads or links
/// them there).
fn copy_checkpoint(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A native checkpoint opens as the instance of a subtask owning its key groups:
/// every entry is there without one being written again, the tables' counts match
/// what they hold, keys they miss are read from RocksDB, and what the checkpoint's
/// tables do not cover (a namespace or a column family nobody froze) is gone, so
/// a new table there starts empty.
#[test]
fn a_native_checkpoint_opens_as_the_instance_of_its_key_groups() -> Result<(), StateError> {
    use weir_state::{key_group_for_key, RestoredInstance};
    let dir = tempfile::tempdir().unwrap();
    let range = KeyGroupRange { start: 0, end: 63 };
    let backend = rocks_backend(dir.path(), 64, range);
    let ours = |key: &u32| range.contains(key_group_for_key(key, MaxParallelism::DEFAULT));
    let mut a: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 1])?;
    let mut b: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 2])?;
    let mut unfrozen: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 3])?;
    let mut other: StateTable<u32, i64> = StateTable::in_backend(&backend, "other", Vec::new())?;
    for key in (0..6000u32).filter(ours) {
        a.insert(key, i64::from(key))?;
        unfrozen.insert(key, 1)?;
        other.insert(key, 2)?;
        if key % 3 == 0 {
            b.insert(key, -i64::from(key))?;
        }
    }
    for key in (0..6000u32).filter(|k| ours(k) && k % 7 == 0) {
        a.remove(&key)?;
    }
    for table in [&mut a, &mut b, &mut unfrozen, &mut other] {
        table.flush()?;
    }
    let (a_len, b_len) = (a.len(), b.len());
    let frozen = [a.freeze()?, b.freeze()?];
    let expected: Vec<BTreeMap<u32, i64>> = frozen.iter().map(|f| decode_all(f)).collect();
    let natives: Vec<_> = frozen
        .iter()
        .map(|f| f.native().unwrap().unwrap())
        .collect();
    let subtask = dir.path().join("restored");
    let staging = RestoredInstance::staging_dir(&subtask);
    natives[0].checkpoint.materialize()?;
    copy_checkpoint(natives[0].checkpoint.path(), &staging);
    let restored = RestoredInstance {
        dir: staging.clone(),
        key_groups: range,
        tables: natives.iter().map(|n| n.table.clone()).collect(),
        instance: 7,
    };
    let fresh = |range| {
        KeyedBackend::rocksdb(
            resources(dir.path(), 64),
            subtask.clone(),
            MaxParallelism::DEFAULT,
            range,
        )
    };
    assert!(
        !fresh(ALL).restoring(restored.clone()).1,
        "other key groups"
    );
    let mut unrecorded = restored.clone();
    unrecorded.tables[0].entries.clear();
    assert!(
        !fresh(range).restoring(unrecorded).1,
        "entries not recorded"
    );
    let (backend, opened) = fresh(range).restoring(restored);
    assert!(opened);
    let mut a: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 1])?;
    let mut b: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 2])?;
    assert!(
        !staging.exists(),
        "the checkpoint's files moved into the instance"
    );
    assert_eq!((a.len(), b.len()), (a_len, b_len));
    let removed = (0..6000u32).find(|k| ours(k) && k % 7 == 0).unwrap();
    assert_eq!(a.get(&removed)?, None);
    let present = (0..6000u32).find(|k| ours(k) && k % 7 != 0).unwrap();
    assert_eq!(a.get(&present)?, Some(&i64::from(present)));
    let stats = backend.stats_probe().unwrap().read().unwrap();
    assert_eq!(stats.puts, 0, "nothing written again: {stats:?}");
    assert!(stats.gets > 0, "a miss reads RocksDB: {stats:?}");
    let mut unfrozen: StateTable<u32, i64> = StateTable::in_backend(&backend, "w", vec![0, 3])?;
    let mut other: StateTable<u32, i64> = StateTable::in_backend(&backend, "other", Vec::new())?;
    assert!(unfrozen.keys()?.is_empty() && other.keys()?.is_empty());
    assert_eq!(unfrozen.get(&present)?, None);
    // The restored tables snapshot as they were, and keep counting.
    a.insert(present, 0)?;
    a.insert(removed, 7)?;
    assert_eq!(a.len(), a_len + 1);
    a.remove(&removed)?;
    let again = [a.freeze()?, b.freeze()?];
    let mut want = expected.clone();
    want[0].insert(present, 0);
    for (index, frozen) in again.iter().enumerate() {
        assert_eq!(decode_all(frozen), want[index], "table {index}");
        let groups: usize = (0..128).map(|g| frozen.shard_len(g)).sum();
        assert_eq!(
            groups,
            want[index].len(),
            "table {index}: entries per key group"
        );
    }
    Ok(())
}

/// A state with a time-to-live in an instance opened from a native checkpoint gets
/// its compaction filter back when it claims its column family.
#[test]
fn an_opened_instance_drops_expired_ttl_values_in_compaction() -> Result<(), StateError> {
    use std::time::Duration;
    use weir_state::{RestoredInstance, TtlValueState};
    let dir = tempfile::tempdir().unwrap();
    let backend = rocks_backend(dir.path(), 1000, ALL);
    let ttl = Duration::from_secs(3600);
    let mut state: TtlValueState<u32, u64> = TtlValueState::in_backend(&backend, "sessions", ttl)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for key in 0..10_000u32 {
        let written = if key % 2 == 0 { now - 7_200_000 } else { now };
        state.update(key, u64::from(key), written)?;
    }
    state.flush()?;
    let frozen = state.freeze()?;
    let native = frozen.native()?.unwrap();
    let subtask = dir.path().join("restored");
    let staging = RestoredInstance::staging_dir(&subtask);
    native.checkpoint.materialize()?;
    copy_checkpoint(native.checkpoint.path(), &staging);
    let (backend, opened) = KeyedBackend::rocksdb(
        resources(dir.path(), 1000),
        subtask,
        MaxParallelism::DEFAULT,
        ALL,
    )
    .restoring(RestoredInstance {
        dir: staging,
        key_groups: ALL,
        tables: vec![native.table],
        instance: 8,
    });
    assert!(opened);
    let mut state: TtlValueState<u32, u64> = TtlValueState::in_backend(&backend, "sessions", ttl)?;
    let mut stored = 0;
    state.for_each(|_, _| stored += 1)?;
    assert_eq!(stored, 10_000);
    state.compact()?;
    let mut kept = 0;
    state.for_each(|key, _| {
        assert_eq!(key % 2, 1);
        kept += 1;
    })?;
    assert_eq!(kept, 5_000);
    Ok(())
}

//! Standby copies of native RocksDB checkpoints: kept incrementally (files an older
//! copy holds are linked, the others downloaded), older copies dropped, copies of
//! subtasks no longer stood by for pruned. Standby copies of heap state: each object
//! downloaded once, copies of objects no longer referred to dropped.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

#[macro_use]
#[allow(dead_code)] // the test stores' fields these tests do not read
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use weir_checkpoint::heap_standby;
use weir_checkpoint::metadata::{KeyedStateHandle, NativeFile, NativeKeyedHandle};
use weir_checkpoint::native::{
    drop_older_standby, keep_standby, prune_standby, standby_copy, StandbyCopied,
};
use weir_checkpoint::restore::Reader;
use weir_checkpoint::{CheckpointId, OperatorUid};
use weir_state::KeyGroupRange;

/// A native handle of checkpoint `checkpoint` with `files` (name, content), written
/// to the storage.
async fn handle(
    store: &common::TestStore,
    checkpoint: u64,
    files: &[(&str, &str)],
) -> NativeKeyedHandle {
    let uid = OperatorUid::new("count");
    let mut written = Vec::new();
    for (name, content) in files {
        let handle = store
            .storage
            .write_state(
                "job",
                CheckpointId::new(checkpoint),
                &uid,
                1,
                &format!("native-{name}"),
                content.as_bytes().to_vec(),
            )
            .await
            .unwrap();
        written.push(NativeFile {
            name: (*name).to_string(),
            handle,
        });
    }
    NativeKeyedHandle {
        key_groups: KeyGroupRange { start: 0, end: 63 },
        files: written,
        tables: Vec::new(),
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

on_both_backends!(standby_copies_are_kept_incrementally_and_pruned);

async fn standby_copies_are_kept_incrementally_and_pruned(store: common::TestStore) {
    let root = tempfile::tempdir().unwrap();
    let reader = Reader::Checkpoint(&store.storage);
    let (one, two) = (CheckpointId::new(1), CheckpointId::new(2));
    let first = handle(
        &store,
        1,
        &[
            ("000007.sst", "seven"),
            ("OPTIONS-5", "opts"),
            ("CURRENT", "M1\n"),
        ],
    )
    .await;
    let copied = keep_standby(&reader, &first, root.path(), "count", 1, one, 0)
        .await
        .unwrap();
    assert_eq!(
        copied,
        StandbyCopied {
            linked: 0,
            downloaded: 5 + 4 + 3
        }
    );
    let copy = standby_copy(root.path(), "count", 1, one, 0);
    assert_eq!(read(&copy, "000007.sst"), "seven", "{}", store.backend);
    // Kept again: nothing to do.
    let again = keep_standby(&reader, &first, root.path(), "count", 1, one, 0)
        .await
        .unwrap();
    assert_eq!(again, StandbyCopied::default());
    // The next checkpoint still holds 000007.sst and the OPTIONS file: linked. CURRENT
    // has the same size but another content: downloaded, never linked.
    let second = handle(
        &store,
        2,
        &[
            ("000007.sst", "seven"),
            ("000009.sst", "nine!"),
            ("OPTIONS-5", "opts"),
            ("CURRENT", "M2\n"),
        ],
    )
    .await;
    let copied = keep_standby(&reader, &second, root.path(), "count", 1, two, 0)
        .await
        .unwrap();
    assert_eq!(
        copied,
        StandbyCopied {
            linked: 5 + 4,
            downloaded: 5 + 3
        }
    );
    let copy2 = standby_copy(root.path(), "count", 1, two, 0);
    assert_eq!(read(&copy2, "CURRENT"), "M2\n");
    assert_eq!(read(&copy2, "000009.sst"), "nine!");
    drop_older_standby(root.path(), "count", 1, two);
    assert!(!copy.exists());
    assert!(copy2.exists());
    // No longer stood by for: pruned.
    prune_standby(root.path(), &BTreeSet::from([("count".to_string(), 1)]));
    assert!(copy2.exists());
    prune_standby(root.path(), &BTreeSet::new());
    assert!(!copy2.exists());
}

/// A keyed state object of checkpoint `checkpoint` holding `content`.
async fn keyed(store: &common::TestStore, checkpoint: u64, content: &str) -> KeyedStateHandle {
    let handle = store
        .storage
        .write_state(
            "job",
            CheckpointId::new(checkpoint),
            &OperatorUid::new("count"),
            1,
            "keyed",
            content.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    KeyedStateHandle {
        key_groups: KeyGroupRange { start: 0, end: 63 },
        handle,
        chunks: Vec::new(),
    }
}

on_both_backends!(heap_standby_copies_download_each_object_once_and_drop_unreferenced_ones);

async fn heap_standby_copies_download_each_object_once_and_drop_unreferenced_ones(
    store: common::TestStore,
) {
    let root = tempfile::tempdir().unwrap();
    let reader = Reader::Checkpoint(&store.storage);
    let first = keyed(&store, 1, "state of checkpoint one").await;
    let second = keyed(&store, 2, "state of checkpoint two").await;
    // The copies of subtask 1 of `count` for a checkpoint referring to `handles`.
    let keep = async |handles: &[KeyedStateHandle]| {
        heap_standby::keep(&reader, handles, root.path(), "count", 1)
            .await
            .unwrap()
    };
    // Checkpoint 1 refers to its object; it is downloaded.
    let copied = keep(std::slice::from_ref(&first)).await;
    assert_eq!(copied.downloaded, first.handle.size);
    let copy = heap_standby::copy_of(root.path(), "count", 1, &first.handle).unwrap();
    assert_eq!(
        std::fs::read_to_string(copy).unwrap(),
        "state of checkpoint one"
    );
    // Checkpoint 2 (incremental) refers to both: only the new one is downloaded.
    let both = [first.clone(), second.clone()];
    let copied = keep(&both).await;
    assert_eq!(
        copied,
        StandbyCopied {
            linked: first.handle.size,
            downloaded: second.handle.size
        }
    );
    // Checkpoint 3 refers to the second only: the first's copy goes.
    keep(std::slice::from_ref(&second)).await;
    assert!(heap_standby::copy_of(root.path(), "count", 1, &first.handle).is_none());
    assert!(heap_standby::copy_of(root.path(), "count", 1, &second.handle).is_some());
    // A copy of another size than recorded is not used.
    let mut grown = second.handle.clone();
    grown.size += 1;
    assert!(heap_standby::copy_of(root.path(), "count", 1, &grown).is_none());
}

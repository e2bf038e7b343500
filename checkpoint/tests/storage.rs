//! Checkpoint storage against the local filesystem and a real S3-compatible server.
//!
//! The `s3` variants need `WEIR_TEST_S3_ENDPOINT` (see `tests/services.sh`); without it
//! they print "skipped: WEIR_TEST_S3_ENDPOINT not set" and pass.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

#[macro_use]
mod common;

use bytes::Bytes;
use common::TestStore;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use std::collections::BTreeSet;
use weir_checkpoint::layout;
use weir_checkpoint::{
    CheckpointError, CheckpointId, CheckpointMetadata, CheckpointStorage, CorruptReason,
    KeyedStateHandle, Leftovers, OperatorUid, SkipReason, SnapshotKind, StateHandle, StorageConfig,
};
use weir_state::{KeyGroupRange, MaxParallelism};

const JOB: &str = "orders";

fn chk(n: u64) -> CheckpointId {
    CheckpointId::new(n)
}

fn uid() -> OperatorUid {
    OperatorUid::new("window-agg")
}

fn metadata(n: u64) -> CheckpointMetadata {
    CheckpointMetadata::new(
        JOB,
        chk(n),
        SnapshotKind::Checkpoint,
        1_700_000_000_000 + n as i64,
        MaxParallelism::DEFAULT,
    )
}

/// Writes a two-subtask checkpoint `n` (keyed + operator state per subtask) and
/// commits it.
async fn complete_checkpoint(storage: &CheckpointStorage, n: u64) -> CheckpointMetadata {
    let mut m = metadata(n);
    for subtask in 0..2usize {
        let keyed = storage
            .write_state(
                JOB,
                chk(n),
                &uid(),
                subtask,
                "keyed",
                state_bytes(n, subtask, 100),
            )
            .await
            .unwrap();
        let operator = storage
            .write_state(
                JOB,
                chk(n),
                &uid(),
                subtask,
                "operator",
                state_bytes(n, subtask, 7),
            )
            .await
            .unwrap();
        let st = m.subtask_mut(&uid(), subtask);
        st.keyed.push(KeyedStateHandle {
            key_groups: KeyGroupRange::for_subtask(MaxParallelism::DEFAULT, 2, subtask),
            handle: keyed,
            chunks: Vec::new(),
        });
        st.operator.push(operator);
    }
    storage.commit_metadata(&m).await.unwrap();
    m
}

fn state_bytes(n: u64, subtask: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (n as usize * 31 + subtask * 7 + i) as u8)
        .collect()
}

/// Every object under `relative` (root-relative paths), sorted.
async fn objects_under(storage: &CheckpointStorage, relative: &Path) -> BTreeSet<String> {
    let full = storage.full_path(relative);
    let root_parts = storage.root().parts().count();
    storage
        .object_store()
        .list(Some(&full))
        .map_ok(|meta| {
            meta.location
                .parts()
                .skip(root_parts)
                .collect::<Path>()
                .to_string()
        })
        .try_collect()
        .await
        .unwrap()
}

async fn raw_put(storage: &CheckpointStorage, relative: &Path, bytes: Vec<u8>) {
    storage
        .object_store()
        .put(&storage.full_path(relative), bytes.into())
        .await
        .unwrap();
}

async fn raw_get(storage: &CheckpointStorage, relative: &Path) -> Vec<u8> {
    let result = storage
        .object_store()
        .get(&storage.full_path(relative))
        .await
        .unwrap();
    result.bytes().await.unwrap().to_vec()
}

async fn raw_delete(storage: &CheckpointStorage, relative: &str) {
    storage
        .object_store()
        .delete(&storage.full_path(&Path::parse(relative).unwrap()))
        .await
        .unwrap();
}

on_both_backends!(
    metadata_is_written_last_and_fences,
    latest_valid_skips_damaged_checkpoints,
    retention_keeps_exactly_the_referenced_shared_files,
    retention_reports_an_unreadable_checkpoint_once,
    abort_and_cleanup_incomplete,
    a_clean_up_leaves_a_live_zombies_checkpoint_alone,
    an_attempt_aborts_only_what_it_wrote,
    shared_files_are_written_once,
    large_shared_files_are_streamed_in_parts,
    savepoints_are_self_contained,
    missing_savepoint_is_a_clear_error,
);

async fn metadata_is_written_last_and_fences(t: TestStore) {
    let s = &t.storage;
    assert!(s.list_checkpoints(JOB).await.unwrap().is_empty());

    let handle = s
        .write_state(JOB, chk(1), &uid(), 0, "operator", b"pos=7".to_vec())
        .await
        .unwrap();
    assert_eq!(handle.path, "orders/chk-1/window-agg/0/operator");
    assert_eq!(handle.size, 5);
    // State written, metadata not yet: the checkpoint does not exist.
    assert!(s.list_checkpoints(JOB).await.unwrap().is_empty());
    assert_eq!(s.latest_valid(JOB).await.unwrap().latest, None);
    assert!(matches!(
        s.read_metadata(JOB, chk(1)).await,
        Err(CheckpointError::NotFound { .. })
    ));

    let mut m = metadata(1);
    m.subtask_mut(&uid(), 0).operator.push(handle.clone());
    m.properties
        .insert("graph-fingerprint".into(), vec![0xab; 4]);
    s.commit_metadata(&m).await.unwrap();
    assert_eq!(s.list_checkpoints(JOB).await.unwrap(), vec![chk(1)]);
    assert_eq!(s.read_metadata(JOB, chk(1)).await.unwrap(), m);
    assert_eq!(&s.read(&handle).await.unwrap()[..], b"pos=7");

    // Retrying the same commit (outcome unknown) succeeds; a different writer is fenced.
    s.commit_metadata(&m).await.unwrap();
    let mut rival = m.clone();
    rival.timestamp_ms += 1;
    match s.commit_metadata(&rival).await {
        Err(CheckpointError::AlreadyExists { object }) => {
            assert!(object.ends_with("orders/chk-1/_metadata"), "{object}")
        }
        other => panic!("[{}] expected AlreadyExists, got {other:?}", t.backend),
    }
    assert_eq!(s.read_metadata(JOB, chk(1)).await.unwrap(), m);

    // Another handle to the same root sees the same thing.
    let reopened = CheckpointStorage::open(&t.config).await.unwrap();
    let scan = reopened.latest_valid(JOB).await.unwrap();
    assert_eq!(scan.latest, Some(m));
    assert!(scan.skipped.is_empty());
}

async fn latest_valid_skips_damaged_checkpoints(t: TestStore) {
    let s = &t.storage;
    let mut written = Vec::new();
    for n in 1..=5 {
        written.push(complete_checkpoint(s, n).await);
    }
    // chk-6: in flight, no metadata: not a candidate at all.
    s.write_state(JOB, chk(6), &uid(), 0, "keyed", vec![1; 10])
        .await
        .unwrap();

    // chk-5: truncated metadata.
    let m5 = layout::metadata_path(JOB, chk(5)).unwrap();
    let bytes = raw_get(s, &m5).await;
    raw_put(s, &m5, bytes[..bytes.len() / 2].to_vec()).await;
    // chk-4: one bit flipped in the payload.
    let m4 = layout::metadata_path(JOB, chk(4)).unwrap();
    let mut bytes = raw_get(s, &m4).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    raw_put(s, &m4, bytes).await;
    // chk-3: a state object deleted.
    let lost = written[2].operators[&uid()].subtasks[&1].operator[0].clone();
    raw_delete(s, &lost.path).await;
    // chk-2: a state object overwritten with other content.
    let changed = written[1].operators[&uid()].subtasks[&0].keyed[0]
        .handle
        .clone();
    raw_put(s, &Path::parse(&changed.path).unwrap(), vec![0; 3]).await;

    let scan = s.latest_valid(JOB).await.unwrap();
    assert_eq!(scan.latest.as_ref(), Some(&written[0]), "[{}]", t.backend);
    let skipped: Vec<_> = scan.skipped.iter().map(|k| k.checkpoint.get()).collect();
    assert_eq!(skipped, vec![5, 4, 3, 2]);

    assert!(matches!(
        scan.skipped[0].reason,
        SkipReason::CorruptMetadata(CorruptReason::Truncated { .. })
    ));
    assert!(scan.skipped[0].object.ends_with("orders/chk-5/_metadata"));
    assert!(matches!(
        scan.skipped[1].reason,
        SkipReason::CorruptMetadata(CorruptReason::ChecksumMismatch { .. })
    ));
    assert!(scan.skipped[1].object.ends_with("orders/chk-4/_metadata"));
    assert_eq!(scan.skipped[2].reason, SkipReason::MissingState);
    assert!(
        scan.skipped[2].object.ends_with(&lost.path),
        "{}",
        scan.skipped[2].object
    );
    assert_eq!(
        scan.skipped[3].reason,
        SkipReason::StateSizeMismatch {
            expected: 100,
            actual: 3
        }
    );
    assert!(scan.skipped[3].object.ends_with(&changed.path));

    // The same damage through the single-object APIs: typed errors naming the object.
    match s.read_metadata(JOB, chk(4)).await {
        Err(CheckpointError::CorruptMetadata { object, reason }) => {
            assert!(object.ends_with("orders/chk-4/_metadata"));
            assert!(matches!(reason, CorruptReason::ChecksumMismatch { .. }));
        }
        other => panic!("expected CorruptMetadata, got {other:?}"),
    }
    assert!(matches!(
        s.read(&lost).await,
        Err(CheckpointError::NotFound { .. })
    ));
    assert!(matches!(
        s.read(&changed).await,
        Err(CheckpointError::CorruptState {
            expected_size: 100,
            actual_size: 3,
            ..
        })
    ));

    // Metadata moved to the wrong checkpoint directory is caught too.
    let m1_bytes = raw_get(s, &layout::metadata_path(JOB, chk(1)).unwrap()).await;
    raw_put(s, &layout::metadata_path(JOB, chk(7)).unwrap(), m1_bytes).await;
    let scan = s.latest_valid(JOB).await.unwrap();
    assert_eq!(scan.latest.as_ref(), Some(&written[0]));
    assert!(matches!(
        scan.skipped[0].reason,
        SkipReason::CorruptMetadata(CorruptReason::Misplaced(_))
    ));

    // Nothing valid left: no checkpoint, every one reported.
    raw_delete(
        s,
        &written[0].operators[&uid()].subtasks[&0].operator[0].path,
    )
    .await;
    let scan = s.latest_valid(JOB).await.unwrap();
    assert_eq!(scan.latest, None);
    assert_eq!(scan.skipped.len(), 6);
}

/// An unreadable checkpoint stays among the kept ones until enough newer readable
/// ones exist; retention runs after every checkpoint, and reports (logs) it the first
/// time only, through clones of the storage handle too.
async fn retention_reports_an_unreadable_checkpoint_once(t: TestStore) {
    let s = &t.storage;
    for n in 1..=2 {
        complete_checkpoint(s, n).await;
    }
    let m2 = layout::metadata_path(JOB, chk(2)).unwrap();
    let bytes = raw_get(s, &m2).await;
    raw_put(s, &m2, bytes[..bytes.len() / 2].to_vec()).await;

    let first = s.retain(JOB, 2).await.unwrap();
    assert_eq!(first.keep, vec![chk(1), chk(2)], "[{}]", t.backend);
    assert_eq!(first.reported_unreadable, vec![chk(2)], "[{}]", t.backend);
    complete_checkpoint(s, 3).await;
    let second = s.clone().retain(JOB, 2).await.unwrap();
    assert_eq!(second.keep, vec![chk(1), chk(2), chk(3)], "[{}]", t.backend);
    assert!(
        second.reported_unreadable.is_empty(),
        "[{}] reported again: {:?}",
        t.backend,
        second.reported_unreadable
    );
    complete_checkpoint(s, 4).await;
    let third = s.retain(JOB, 2).await.unwrap();
    assert_eq!(third.keep, vec![chk(3), chk(4)], "[{}]", t.backend);
    assert_eq!(third.remove, vec![chk(1), chk(2)], "[{}]", t.backend);
    assert!(third.reported_unreadable.is_empty(), "[{}]", t.backend);
}

/// Checkpoint i uploads shared file s<i> and refers to s<i-2>, s<i-1>, s<i> (an
/// incremental backend reusing the files of its recent predecessors) plus private
/// state. Retention runs after every checkpoint, keeping 3.
async fn retention_keeps_exactly_the_referenced_shared_files(t: TestStore) {
    let s = &t.storage;
    const KEEP: usize = 3;
    const TOTAL: u64 = 20;
    let shared_key = |i: u64| format!("sst-{i:04}");
    let shared_dir = layout::shared_dir(JOB).unwrap();
    let job_dir = layout::job_dir(JOB).unwrap();
    let mut handles = std::collections::BTreeMap::new();

    for n in 1..=TOTAL {
        let new = s
            .write_shared(JOB, &shared_key(n), vec![n as u8; 64 + n as usize])
            .await
            .unwrap();
        handles.insert(n, new);
        let mut m = metadata(n);
        let private = s
            .write_state(JOB, chk(n), &uid(), 0, "operator", vec![n as u8; 8])
            .await
            .unwrap();
        let st = m.subtask_mut(&uid(), 0);
        st.operator.push(private);
        for i in n.saturating_sub(2).max(1)..=n {
            st.keyed.push(KeyedStateHandle {
                key_groups: KeyGroupRange { start: 0, end: 127 },
                handle: handles[&i].clone(),
                chunks: Vec::new(),
            });
        }
        s.commit_metadata(&m).await.unwrap();

        let plan = s.retain(JOB, KEEP).await.unwrap();
        let first_kept = n.saturating_sub(KEEP as u64 - 1).max(1);
        let kept: Vec<_> = (first_kept..=n).map(chk).collect();
        assert_eq!(plan.keep, kept, "[{}] after checkpoint {n}", t.backend);
        assert_eq!(s.list_checkpoints(JOB).await.unwrap(), kept);

        // Exactly the shared files the kept checkpoints refer to remain.
        let expected_shared: BTreeSet<String> = (first_kept.saturating_sub(2).max(1)..=n)
            .map(|i| format!("orders/shared/{}", shared_key(i)))
            .collect();
        assert_eq!(
            objects_under(s, &shared_dir).await,
            expected_shared,
            "after {n}"
        );
    }

    // Nothing else of the removed checkpoints is left either.
    let mut expected: BTreeSet<String> = (TOTAL - 4..=TOTAL)
        .map(|i| format!("orders/shared/{}", shared_key(i)))
        .collect();
    for n in TOTAL - 2..=TOTAL {
        expected.insert(format!("orders/chk-{n}/_metadata"));
        expected.insert(format!("orders/chk-{n}/window-agg/0/operator"));
    }
    assert_eq!(objects_under(s, &job_dir).await, expected);
    let scan = s.latest_valid(JOB).await.unwrap();
    assert_eq!(scan.latest.map(|m| m.checkpoint), Some(chk(TOTAL)));
    assert!(scan.skipped.is_empty());

    assert!(matches!(
        s.retain(JOB, 0).await,
        Err(CheckpointError::Misconfigured { .. })
    ));
}

/// Another incarnation of the job still running (a zombie) writes checkpoint 2
/// while this one starts and cleans up: the zombie's young files stay, so the
/// checkpoint it then completes is whole; this process's own leftovers go at once,
/// and the zombie's once they are older than the grace period (zero here).
async fn a_clean_up_leaves_a_live_zombies_checkpoint_alone(t: TestStore) {
    let s = &t.storage;
    complete_checkpoint(s, 1).await;
    const ZOMBIE: &str = "00000000000000aa-1";
    const OWN: &str = "00000000000000bb";
    let private = s
        .write_state(
            JOB,
            chk(2),
            &uid(),
            0,
            &format!("operator.{ZOMBIE}"),
            vec![2; 8],
        )
        .await
        .unwrap();
    let shared = s
        .write_shared(JOB, &format!("window-agg.0.{ZOMBIE}.2"), vec![2; 32])
        .await
        .unwrap();
    s.write_state(
        JOB,
        chk(3),
        &uid(),
        0,
        &format!("operator.{OWN}-0"),
        vec![3; 8],
    )
    .await
    .unwrap();
    s.write_shared(JOB, &format!("window-agg.0.{OWN}-0.3"), vec![3; 32])
        .await
        .unwrap();

    let leftovers = Leftovers {
        own: OWN.into(),
        grace: std::time::Duration::from_secs(3600),
    };
    assert_eq!(
        s.cleanup_incomplete(JOB, &leftovers).await.unwrap(),
        vec![chk(3)],
        "[{}] only this process's checkpoint 3 goes",
        t.backend
    );
    assert_eq!(
        s.delete_unreferenced_shared(JOB, &leftovers).await.unwrap(),
        1
    );

    // The zombie completes checkpoint 2: every file it refers to is there.
    let mut m = metadata(2);
    let st = m.subtask_mut(&uid(), 0);
    st.operator.push(private);
    st.keyed.push(KeyedStateHandle {
        key_groups: KeyGroupRange { start: 0, end: 127 },
        handle: shared,
        chunks: Vec::new(),
    });
    s.commit_metadata(&m).await.unwrap();
    let scan = s.latest_valid(JOB).await.unwrap();
    assert_eq!(
        scan.latest.map(|m| m.checkpoint),
        Some(chk(2)),
        "[{}] skipped: {:?}",
        t.backend,
        scan.skipped
    );

    // A zombie's leftovers older than the grace period go.
    s.write_state(
        JOB,
        chk(4),
        &uid(),
        0,
        &format!("operator.{ZOMBIE}"),
        vec![4; 8],
    )
    .await
    .unwrap();
    let none_young = Leftovers {
        own: OWN.into(),
        grace: std::time::Duration::ZERO,
    };
    assert_eq!(
        s.cleanup_incomplete(JOB, &none_young).await.unwrap(),
        vec![chk(4)]
    );
}

async fn abort_and_cleanup_incomplete(t: TestStore) {
    let s = &t.storage;
    let first = complete_checkpoint(s, 1).await;
    for n in [2, 3, 4] {
        for subtask in 0..3 {
            s.write_state(JOB, chk(n), &uid(), subtask, "keyed", vec![n as u8; 10])
                .await
                .unwrap();
        }
    }
    let chk2 = layout::checkpoint_dir(JOB, chk(2)).unwrap();
    assert_eq!(s.abort(JOB, chk(2)).await.unwrap(), 3);
    assert!(objects_under(s, &chk2).await.is_empty());
    assert_eq!(
        s.abort(JOB, chk(2)).await.unwrap(),
        0,
        "abort is idempotent"
    );

    assert_eq!(
        s.cleanup_incomplete(JOB, &Leftovers::all()).await.unwrap(),
        vec![chk(3), chk(4)],
        "[{}]",
        t.backend
    );
    let job_dir = layout::job_dir(JOB).unwrap();
    let left = objects_under(s, &job_dir).await;
    assert!(
        left.iter().all(|p| p.starts_with("orders/chk-1/")),
        "{left:?}"
    );
    assert_eq!(left.len(), 5);
    assert_eq!(s.list_checkpoints(JOB).await.unwrap(), vec![chk(1)]);
    assert_eq!(s.latest_valid(JOB).await.unwrap().latest, Some(first));
    assert!(s
        .cleanup_incomplete(JOB, &Leftovers::all())
        .await
        .unwrap()
        .is_empty());

    // Aborting a completed checkpoint removes its metadata first, then its files.
    assert_eq!(s.abort(JOB, chk(1)).await.unwrap(), 4);
    assert!(s.list_checkpoints(JOB).await.unwrap().is_empty());
    assert!(objects_under(s, &job_dir).await.is_empty());
    // A job with nothing stored at all is simply empty.
    assert!(s.list_checkpoints("never-ran").await.unwrap().is_empty());
    assert!(s
        .cleanup_incomplete("never-ran", &Leftovers::all())
        .await
        .unwrap()
        .is_empty());
}

/// Two attempts (or incarnations) write checkpoint 1 under their own names; the one
/// that completes it keeps it when the other aborts. Before, both wrote
/// `chk-1/<uid>/<subtask>/<name>` (the later write replacing the other's file) and the
/// loser's abort deleted the winner's `_metadata` and files.
async fn an_attempt_aborts_only_what_it_wrote(t: TestStore) {
    let s = &t.storage;
    let write = |owner: &'static str, n: u64| async move {
        let mut writer = weir_checkpoint::StateWriter::new(
            s.clone(),
            JOB,
            chk(n),
            0,
            std::sync::Arc::new(|| {}),
        )
        .owned_by(owner);
        let handle = writer
            .private(&uid(), "operator", vec![n as u8; 9])
            .await
            .unwrap();
        let mut m = metadata(n);
        m.subtask_mut(&uid(), 0).operator.push(handle);
        m
    };
    let winner = write("b-1", 1).await;
    let loser = write("a-1", 1).await;
    assert_ne!(
        winner.handles().next(),
        loser.handles().next(),
        "one name per attempt"
    );
    s.commit_metadata(&winner).await.unwrap();
    assert_eq!(s.abort_own(JOB, chk(1), "a-1").await.unwrap(), 1);
    let scan = s.latest_valid(JOB).await.unwrap();
    assert_eq!(scan.latest, Some(winner.clone()), "[{}]", t.backend);
    assert_eq!(
        s.read(winner.handles().next().unwrap())
            .await
            .unwrap()
            .len(),
        9
    );

    // Its own metadata (a write that failed on its side but landed) goes with it.
    let own = write("c-2", 2).await;
    s.commit_metadata(&own).await.unwrap();
    assert_eq!(s.abort_own(JOB, chk(2), "c-2").await.unwrap(), 2);
    assert_eq!(s.list_checkpoints(JOB).await.unwrap(), vec![chk(1)]);
}

async fn shared_files_are_written_once(t: TestStore) {
    let s = &t.storage;
    let a = s.write_shared(JOB, "sst-1", vec![1; 32]).await.unwrap();
    assert_eq!(
        a,
        StateHandle {
            path: "orders/shared/sst-1".into(),
            size: 32
        }
    );
    // Same key again: not uploaded again (the original content stays).
    let again = s.write_shared(JOB, "sst-1", vec![2; 32]).await.unwrap();
    assert_eq!(again, a);
    assert_eq!(s.read(&a).await.unwrap(), Bytes::from(vec![1; 32]));
    // Same key, other size: two contents under one key is refused.
    assert!(matches!(
        s.write_shared(JOB, "sst-1", vec![1; 33]).await,
        Err(CheckpointError::AlreadyExists { .. })
    ));
    // Names are single segments, whatever they contain.
    let odd = s.write_shared(JOB, "a/b#c", vec![3; 3]).await.unwrap();
    assert_eq!(odd.path, "orders/shared/a%2Fb%23c");
    assert_eq!(&s.read(&odd).await.unwrap()[..], &[3, 3, 3]);
    assert!(matches!(
        s.write_shared(JOB, "", vec![]).await,
        Err(CheckpointError::InvalidName { .. })
    ));
}

/// A shared file larger than one part is uploaded from disk in parts (multipart)
/// and reads back byte for byte; uploading it again changes nothing, and another
/// content of another size under its key is refused. A small file takes one put.
async fn large_shared_files_are_streamed_in_parts(t: TestStore) {
    let s = &t.storage;
    let dir = tempfile::tempdir().unwrap();
    let size = 2 * weir_checkpoint::STREAMED_PART + 12_345;
    let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.path().join("000012.sst");
    std::fs::write(&file, &content).unwrap();
    let handle = s.write_shared_file(JOB, "big.sst", &file).await.unwrap();
    assert_eq!(handle.path, "orders/shared/big.sst");
    assert_eq!(handle.size, size as u64);
    assert!(s.read(&handle).await.unwrap()[..] == content[..]);
    assert_eq!(
        s.write_shared_file(JOB, "big.sst", &file).await.unwrap(),
        handle
    );
    let other = dir.path().join("other.sst");
    std::fs::write(&other, &content[..size - 1]).unwrap();
    assert!(matches!(
        s.write_shared_file(JOB, "big.sst", &other).await,
        Err(CheckpointError::AlreadyExists { .. })
    ));
    let small = dir.path().join("small.sst");
    std::fs::write(&small, [5u8; 10]).unwrap();
    let handle = s.write_shared_file(JOB, "small.sst", &small).await.unwrap();
    assert_eq!(&s.read(&handle).await.unwrap()[..], &[5u8; 10]);
    // A file that is not there is an I/O error naming it.
    let missing = dir.path().join("gone.sst");
    match s.write_shared_file(JOB, "gone.sst", &missing).await {
        Err(e @ CheckpointError::Io { .. }) => assert!(e.to_string().contains("gone.sst"), "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

async fn savepoints_are_self_contained(t: TestStore) {
    let s = &t.storage;
    let shared = s.write_shared(JOB, "sst-9", vec![9; 50]).await.unwrap();
    let mut m = metadata(4);
    for subtask in 0..2usize {
        let keyed = s
            .write_state(
                JOB,
                chk(4),
                &uid(),
                subtask,
                "keyed",
                state_bytes(4, subtask, 100),
            )
            .await
            .unwrap();
        m.subtask_mut(&uid(), subtask).keyed.push(KeyedStateHandle {
            key_groups: KeyGroupRange::for_subtask(MaxParallelism::DEFAULT, 2, subtask),
            handle: keyed,
            chunks: Vec::new(),
        });
    }
    // One file shared with other checkpoints, as an incremental backend writes.
    m.subtask_mut(&uid(), 1).keyed.push(KeyedStateHandle {
        key_groups: KeyGroupRange {
            start: 64,
            end: 127,
        },
        handle: shared.clone(),
        chunks: vec!["counts\u{1e}1.0".into()],
    });
    m.properties.insert("origin".into(), b"chk-4".to_vec());
    s.commit_metadata(&m).await.unwrap();

    let savepoint = s.write_savepoint(&t.savepoints, "sp-1", &m).await.unwrap();
    assert_eq!(savepoint.metadata().kind, SnapshotKind::Savepoint);
    let location = savepoint.location();
    assert!(location.ends_with("sp-1"), "{location}");

    // Make the original checkpoint and its shared file disappear entirely.
    s.abort(JOB, chk(4)).await.unwrap();
    raw_delete(s, &shared.path).await;

    let restored = CheckpointStorage::read_savepoint(&t.savepoints.with_url(location.clone()))
        .await
        .unwrap();
    assert_eq!(restored.metadata(), savepoint.metadata());
    assert_eq!(restored.metadata().properties, m.properties);
    let originals: Vec<_> = m.handles().cloned().collect();
    let copies: Vec<_> = restored.metadata().handles().cloned().collect();
    assert_eq!(originals.len(), copies.len());
    for (original, copy) in originals.iter().zip(&copies) {
        assert!(!copy.path.starts_with("orders/"), "relative: {}", copy.path);
        assert_eq!(original.size, copy.size);
        let bytes = restored.read(copy).await.unwrap();
        assert_eq!(bytes.len() as u64, original.size);
    }
    assert!(copies.iter().any(|h| h.path == "shared/sst-9"));
    assert!(copies.iter().any(|h| h.path == "window-agg/1/keyed"));
    assert_eq!(
        restored.read(&copies[0]).await.unwrap(),
        Bytes::from(state_bytes(4, 0, 100))
    );

    // A savepoint name is used once.
    let again = complete_checkpoint(s, 5).await;
    assert!(matches!(
        s.write_savepoint(&t.savepoints, "sp-1", &again).await,
        Err(CheckpointError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.write_savepoint(&t.savepoints, "../escape", &again).await,
        Err(CheckpointError::InvalidName { .. })
    ));
    // A checkpoint directory is not a savepoint.
    let chk5 = format!("{}/orders/chk-5", t.config.url);
    match CheckpointStorage::read_savepoint(&t.config.with_url(chk5)).await {
        Err(CheckpointError::CorruptMetadata {
            reason: CorruptReason::Misplaced(why),
            ..
        }) => assert!(why.contains("not a savepoint"), "{why}"),
        other => panic!("expected a misplaced-metadata error, got {other:?}"),
    }
}

async fn missing_savepoint_is_a_clear_error(t: TestStore) {
    for name in ["nothing-here", "also/nothing"] {
        let url = format!("{}/{name}", t.savepoints.url);
        match CheckpointStorage::read_savepoint(&t.savepoints.with_url(url.clone())).await {
            Err(e @ CheckpointError::NoSavepoint { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!("no savepoint at {url}: expected {url}/_metadata")
                );
            }
            other => panic!("[{}] expected NoSavepoint, got {other:?}", t.backend),
        }
    }
}

#[tokio::test]
async fn unknown_scheme_is_misconfigured() {
    let err = CheckpointStorage::open_url("gs://bucket/checkpoints")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, CheckpointError::Misconfigured { .. }),
        "{message}"
    );
    assert!(message.contains("gs://bucket/checkpoints"), "{message}");
    assert!(message.contains("unsupported scheme `gs`"), "{message}");
    assert!(
        message.contains("s3://bucket/prefix") && message.contains("file:///"),
        "{message}"
    );
}

#[tokio::test]
async fn plain_paths_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("deep").join("er").join("checkpoints");
    let storage = CheckpointStorage::open_url(root.to_str().unwrap())
        .await
        .unwrap();
    assert!(root.is_dir());
    assert_eq!(
        storage.location(),
        root.canonicalize().unwrap().display().to_string()
    );
    let handle = storage
        .write_state(JOB, chk(1), &uid(), 0, "f", vec![1, 2, 3])
        .await
        .unwrap();
    assert!(root.join("orders/chk-1/window-agg/0/f").is_file());
    assert_eq!(&storage.read(&handle).await.unwrap()[..], &[1, 2, 3]);
}

#[tokio::test]
async fn unreachable_endpoint_names_the_bucket() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut options = common::s3_options(&endpoint);
    options.max_retries = Some(0);
    let config = StorageConfig::new("s3://weir-no-such-bucket/checkpoints").with_s3(options);
    let err = CheckpointStorage::open(&config).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, CheckpointError::Unreachable { .. }),
        "{message}"
    );
    assert!(message.contains("weir-no-such-bucket"), "{message}");
    assert!(message.contains(&endpoint), "{message}");
}

#[tokio::test]
async fn missing_bucket_on_a_live_server_names_the_bucket() {
    let Some(endpoint) = weir_testkit::s3::endpoint() else {
        return;
    };
    let bucket = weir_testkit::s3::fresh_bucket_name("weir-test");
    let config = StorageConfig::new(format!("s3://{bucket}/checkpoints"))
        .with_s3(common::s3_options(&endpoint));
    let err = CheckpointStorage::open(&config).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, CheckpointError::Unreachable { .. }),
        "{message}"
    );
    assert!(message.contains(&bucket), "{message}");
}

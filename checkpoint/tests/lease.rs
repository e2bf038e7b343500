//! The coordinator lease against the local filesystem and a real S3-compatible
//! server: of coordinators sharing a storage exactly one acts, a standby takes over
//! when the holder stops renewing or releases, and a holder that lost the lease is
//! fenced.
//!
//! The `s3` variants need `WEIR_TEST_S3_ENDPOINT` (see `tests/services.sh`); without it
//! they print "skipped: WEIR_TEST_S3_ENDPOINT not set" and pass.
#![allow(clippy::unwrap_used)] // tests may unwrap (see clippy.toml)

#[macro_use]
#[allow(dead_code)] // the test stores' fields these tests do not read
mod common;

use common::TestStore;
use object_store::ObjectStoreExt;
use std::time::Duration;
use weir_checkpoint::lease::{current, Lease, LeaseConfig, Waiting};
use weir_checkpoint::CheckpointError;

fn config(name: &str, timeout: Duration) -> LeaseConfig {
    LeaseConfig {
        timeout,
        holder: name.into(),
        address: format!("http://{name}:8081"),
    }
}

async fn two_coordinators_starting_at_once_take_turns(store: TestStore) {
    let timeout = Duration::from_secs(1);
    let (a, b) = (store.storage.clone(), store.storage.clone());
    let first = tokio::spawn(async move { Lease::acquire(&a, config("a", timeout), |_| {}).await });
    let second =
        tokio::spawn(async move { Lease::acquire(&b, config("b", timeout), |_| {}).await });
    // Whichever wins epoch 1 renews it in the background; the other keeps waiting.
    let (mut winner, loser) = loop {
        if first.is_finished() {
            break (first.await.unwrap().unwrap(), second);
        }
        if second.is_finished() {
            break (second.await.unwrap().unwrap(), first);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(winner.epoch(), 1, "{}", store.backend);
    let fence = winner.fence();
    fence.check().unwrap();
    let holder = current(&store.storage).await.unwrap().unwrap();
    assert_eq!(holder.epoch, 1);
    let keeping = tokio::spawn(async move { winner.keep().await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The holder renews: the record's counter moves.
    let renewed = current(&store.storage).await.unwrap().unwrap();
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.renewals > 0, "{renewed:?}");
    // The holder stops renewing (as if killed): the other takes epoch 2, and from then
    // on the first one's fence refuses.
    keeping.abort();
    let taker = tokio::time::timeout(Duration::from_secs(60), loser)
        .await
        .expect("the standby took over")
        .unwrap()
        .unwrap();
    assert_eq!(taker.epoch(), 2);
    let refused = fence.check().unwrap_err();
    assert!(
        matches!(refused, CheckpointError::Fenced { epoch: 1, .. }),
        "{refused}"
    );
    taker.fence().check().unwrap();
    let record = current(&store.storage).await.unwrap().unwrap();
    assert_eq!(
        (
            record.epoch,
            record.holder.as_str() != holder.holder.as_str()
        ),
        (2, true)
    );
}

async fn a_holder_that_sees_a_newer_epoch_stops(store: TestStore) {
    // A long timeout: the holder must stop because of the newer epoch, not because
    // its renewals lapsed.
    let mut holder = Lease::acquire(&store.storage, config("a", Duration::from_secs(60)), |_| {})
        .await
        .unwrap();
    let fence = holder.fence();
    // Another coordinator took epoch 2 while this one was paused (written as it
    // would be).
    let path = store
        .storage
        .full_path(&"_coordinator/lease-00000000000000000002".into());
    let record = serde_json::json!({
        "epoch": 2, "holder": "b", "address": "http://b:8081", "renewals": 0, "renewed_at_ms": 0
    });
    store
        .storage
        .object_store()
        .put(&path, serde_json::to_vec(&record).unwrap().into())
        .await
        .unwrap();
    let why = tokio::time::timeout(Duration::from_secs(60), holder.keep())
        .await
        .expect("the holder noticed");
    assert!(why.contains("another coordinator took over"), "{why}");
    let refused = fence.check().unwrap_err().to_string();
    assert!(
        refused.contains("epoch 1") && refused.contains("took over"),
        "{refused}"
    );
    assert_eq!(current(&store.storage).await.unwrap().unwrap().epoch, 2);
}

async fn a_released_lease_is_taken_at_once(store: TestStore) {
    // With a minute's timeout, only the release lets the standby in quickly.
    let timeout = Duration::from_secs(60);
    let mut holder = Lease::acquire(&store.storage, config("a", timeout), |_| {})
        .await
        .unwrap();
    let storage = store.storage.clone();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let standby = tokio::spawn(async move {
        Lease::acquire(&storage, config("b", timeout), move |seen| {
            let _ = seen_tx.send(seen.clone());
        })
        .await
    });
    // The standby sees who holds it (and where it is reached).
    match seen_rx.recv().await.unwrap() {
        Waiting::HeldBy(record) => {
            assert_eq!(
                (record.epoch, record.address.as_str()),
                (1, "http://a:8081")
            );
        }
        other => panic!("expected the holder, saw {other:?}"),
    }
    holder.release().await.unwrap();
    assert!(holder.fence().check().is_err(), "released means fenced");
    let taker = tokio::time::timeout(Duration::from_secs(30), standby)
        .await
        .expect("taken at once after the release")
        .unwrap()
        .unwrap();
    assert_eq!(taker.epoch(), 2);
}

async fn an_unreadable_lease_object_is_reported_while_waiting(store: TestStore) {
    let path = store
        .storage
        .full_path(&"_coordinator/lease-00000000000000000001".into());
    store
        .storage
        .object_store()
        .put(&path, b"not json".to_vec().into())
        .await
        .unwrap();
    let error = current(&store.storage).await.unwrap_err().to_string();
    assert!(
        error.contains("lease-00000000000000000001")
            && error.contains("expected weir's lease JSON"),
        "{error}"
    );
    let storage = store.storage.clone();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let waiting = tokio::spawn(async move {
        Lease::acquire(&storage, config("b", Duration::from_secs(1)), move |seen| {
            let _ = seen_tx.send(seen.clone());
        })
        .await
    });
    match seen_rx.recv().await.unwrap() {
        Waiting::Unreadable(e) => assert!(e.contains("lease-00000000000000000001"), "{e}"),
        other => panic!("expected an unreadable lease, saw {other:?}"),
    }
    // It never takes over a lease it cannot read (a damaged object is an operator's
    // matter, not a free lease).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished());
    waiting.abort();
}

on_both_backends!(
    two_coordinators_starting_at_once_take_turns,
    a_holder_that_sees_a_newer_epoch_stops,
    a_released_lease_is_taken_at_once,
    an_unreadable_lease_object_is_reported_while_waiting,
);

//! The coordinator's lease: which of several coordinators sharing one storage acts,
//! and the fence that stops one that no longer may.
//!
//! A lease is a sequence of objects `_coordinator/lease-<epoch>` under the storage's
//! root, each created with create-if-absent (a conditional put on S3, a hard link on
//! a filesystem), so of two coordinators that try to take epoch `e` exactly one
//! does. The holder of the newest epoch rewrites its own object every quarter of the
//! timeout with a renewal counter (nobody else writes it). A waiting coordinator
//! reads the newest object; when its counter has not moved for a whole timeout by
//! the waiter's own clock (or the holder released it), the waiter creates the next
//! epoch. The holder, for its part, stops acting once half a timeout has passed
//! since the start of its last successful renewal, or as soon as it sees a newer
//! epoch: it has stopped before any waiter can have taken over, whatever the two
//! clocks read, as long as they run at about the same rate.
//!
//! ```text
//!  coordinator A (epoch 3)          storage: _coordinator/          coordinator B
//!   renew ─ overwrite ───────────▶  lease-00000000000000000003  ◀── read: renewals moving
//!   (A is killed)                        renewals stop
//!                                   lease-00000000000000000004  ◀── create-if-absent after
//!                                                                    a timeout without change
//! ```
//!
//! The [`Fence`] of a lease is what the work done under it checks before an
//! irreversible write (a checkpoint's `_metadata`): [`Fence::check`] fails once the
//! lease may be gone, so a coordinator cut off from the storage, paused or replaced
//! completes no checkpoint, and its workers' sinks commit nothing more.

use crate::{CheckpointError, CheckpointStorage};
use object_store::path::Path;
use object_store::PutMode;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The folder of lease objects under a storage's root.
const FOLDER: &str = "_coordinator";
const PREFIX: &str = "lease-";

/// Settings of a coordinator taking part in a lease.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Without a renewal for this long the lease is free (at least 1 s).
    pub timeout: Duration,
    /// This coordinator's name, recorded with the lease (e.g. its host name).
    pub holder: String,
    /// Where this coordinator is reached (`http://host:port`): recorded with the
    /// lease so that workers and the waiting coordinators find the active one.
    pub address: String,
}

impl LeaseConfig {
    fn renew_every(&self) -> Duration {
        self.timeout.max(Duration::from_secs(1)) / 4
    }

    /// How often a waiting coordinator reads the lease: at least once a second, so
    /// that it sees a release at once even with a long timeout.
    fn watch_every(&self) -> Duration {
        self.renew_every().min(Duration::from_secs(1))
    }
}

/// One lease object, as stored (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The epoch: each holder has its own, one more than the one it took over from.
    pub epoch: u64,
    /// Who holds it.
    pub holder: String,
    /// Where the holder is reached.
    pub address: String,
    /// How often the holder renewed it: a waiter watches this move.
    pub renewals: u64,
    /// The holder's lease timeout, ms: a waiter waits at least this long without a
    /// renewal, even if its own timeout is shorter.
    #[serde(default)]
    pub timeout_ms: u64,
    /// Wall-clock time of the last renewal, ms since the Unix epoch (for people
    /// reading it: nobody's decision depends on another process's clock).
    pub renewed_at_ms: u64,
    /// The holder gave it up (a graceful shutdown): a waiter takes it at once.
    #[serde(default)]
    pub released: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lease_path(epoch: u64) -> Path {
    Path::from(FOLDER).join(format!("{PREFIX}{epoch:020}"))
}

/// The newest lease object in `storage`, if any coordinator ever took one.
///
/// # Errors
/// [`CheckpointError::Io`] when listing or reading fails;
/// [`CheckpointError::CorruptMetadata`]-like problems are reported as
/// [`CheckpointError::Io`] naming the object.
pub async fn current(storage: &CheckpointStorage) -> Result<Option<LeaseRecord>, CheckpointError> {
    let folder = Path::from(FOLDER);
    let listing = match storage
        .object_store()
        .list_with_delimiter(Some(&storage.full_path(&folder)))
        .await
    {
        Ok(listing) => listing,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(storage.error(&folder, e)),
    };
    let newest = listing
        .objects
        .iter()
        .filter_map(|o| {
            o.location
                .filename()?
                .strip_prefix(PREFIX)?
                .parse::<u64>()
                .ok()
        })
        .max();
    let Some(epoch) = newest else {
        return Ok(None);
    };
    read(storage, epoch).await.map(Some)
}

async fn read(storage: &CheckpointStorage, epoch: u64) -> Result<LeaseRecord, CheckpointError> {
    let path = lease_path(epoch);
    let bytes = storage.get(&path).await?;
    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Io {
        object: storage.describe(&path),
        source: object_store::Error::Generic {
            store: "lease",
            source: format!("an unreadable lease object (expected weir's lease JSON): {e}").into(),
        },
    })
}

async fn write(
    storage: &CheckpointStorage,
    record: &LeaseRecord,
    mode: PutMode,
) -> Result<(), CheckpointError> {
    let bytes = serde_json::to_vec(record).map_err(|e| CheckpointError::Io {
        object: storage.describe(&lease_path(record.epoch)),
        source: object_store::Error::Generic {
            store: "lease",
            source: Box::new(e),
        },
    })?;
    storage
        .put(&lease_path(record.epoch), bytes.into(), mode)
        .await
}

/// What a waiting coordinator sees while it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Another coordinator holds the lease.
    HeldBy(LeaseRecord),
    /// The storage could not be read; waiting goes on.
    Unreadable(String),
}

/// The lease, held.
#[derive(Debug)]
pub struct Lease {
    storage: CheckpointStorage,
    config: LeaseConfig,
    record: LeaseRecord,
    fence: Fence,
}

/// The check that work done under a lease makes before an irreversible write.
/// Cheap to clone; every clone sees the lease's latest renewal.
#[derive(Clone, Debug)]
pub struct Fence {
    inner: Arc<FenceState>,
}

#[derive(Debug)]
struct FenceState {
    epoch: u64,
    /// The clock the deadline counts on.
    base: Instant,
    /// Until when (ms after `base`) the lease is surely held.
    valid_until_ms: AtomicU64,
    /// Why it was lost, once it was (never cleared).
    lost: std::sync::Mutex<Option<String>>,
}

impl Fence {
    fn new(epoch: u64, started: Instant, timeout: Duration) -> Self {
        let fence = Self {
            inner: Arc::new(FenceState {
                epoch,
                base: started,
                valid_until_ms: AtomicU64::new(0),
                lost: std::sync::Mutex::new(None),
            }),
        };
        fence.extend(started, timeout);
        fence
    }

    /// A fence that never fails: for a coordinator that holds no lease because it
    /// shares its storage with nobody.
    pub fn unfenced() -> Self {
        let fence = Self::new(0, Instant::now(), Duration::ZERO);
        fence
            .inner
            .valid_until_ms
            .store(u64::MAX, Ordering::Release);
        fence
    }

    /// The lease's epoch (0 for [`unfenced`](Self::unfenced)).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// A renewal that started at `started` succeeded: the lease is surely held for
    /// half a timeout from then.
    fn extend(&self, started: Instant, timeout: Duration) {
        let until = started.saturating_duration_since(self.inner.base) + timeout / 2;
        let until = u64::try_from(until.as_millis()).unwrap_or(u64::MAX);
        self.inner.valid_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    fn lose(&self, why: String) {
        let mut lost = self.inner.lost.lock().unwrap_or_else(|p| p.into_inner());
        lost.get_or_insert(why);
    }

    /// Whether work under the lease may still write.
    ///
    /// # Errors
    /// [`CheckpointError::Fenced`] once the lease was lost (a newer epoch exists, or
    /// no renewal succeeded for half the timeout).
    pub fn check(&self) -> Result<(), CheckpointError> {
        let inner = &self.inner;
        let lost = inner.lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let why = match lost {
            Some(why) => why,
            None => {
                let now = u64::try_from(inner.base.elapsed().as_millis()).unwrap_or(u64::MAX);
                if now < inner.valid_until_ms.load(Ordering::Acquire) {
                    return Ok(());
                }
                "no renewal of the lease succeeded for half its timeout".to_string()
            }
        };
        Err(CheckpointError::Fenced {
            epoch: inner.epoch,
            reason: why,
        })
    }
}

impl Lease {
    /// Waits until this coordinator holds the lease in `storage`, then returns it
    /// (not yet renewed in the background: call [`keep`](Self::keep)). `waiting` is
    /// told what is seen while waiting, each time it changes.
    ///
    /// Two coordinators starting at once both try epoch 1; exactly one gets it.
    ///
    /// # Errors
    /// Only a write error other than "already exists" when creating an epoch
    /// (read errors while waiting are passed to `waiting` and waiting goes on).
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled wait holds nothing. A wait cancelled right after its
    /// create succeeded leaves an epoch nobody renews, which the others take over
    /// after a timeout.
    pub async fn acquire(
        storage: &CheckpointStorage,
        config: LeaseConfig,
        mut waiting: impl FnMut(&Waiting),
    ) -> Result<Self, CheckpointError> {
        // The newest record seen, and since when (by this process's clock) it has not
        // changed.
        let mut seen: Option<(LeaseRecord, Instant)> = None;
        let mut last_reported: Option<Waiting> = None;
        loop {
            let (next_epoch, report) = match current(storage).await {
                Ok(None) => (Some(1), None),
                Ok(Some(record)) => {
                    let unchanged_since = match &seen {
                        Some((old, since))
                            if old.epoch == record.epoch && old.renewals == record.renewals =>
                        {
                            *since
                        }
                        _ => Instant::now(),
                    };
                    seen = Some((record.clone(), unchanged_since));
                    let timeout = config.timeout.max(Duration::from_millis(record.timeout_ms));
                    let free = record.released || unchanged_since.elapsed() >= timeout;
                    // Who holds it and where, without the counters that move.
                    let holder = Waiting::HeldBy(LeaseRecord {
                        renewals: 0,
                        renewed_at_ms: 0,
                        ..record.clone()
                    });
                    (free.then_some(record.epoch + 1), Some(holder))
                }
                Err(e) => (None, Some(Waiting::Unreadable(e.to_string()))),
            };
            if let Some(report) = report {
                if last_reported.as_ref() != Some(&report) {
                    waiting(&report);
                    last_reported = Some(report);
                }
            }
            if let Some(epoch) = next_epoch {
                let started = Instant::now();
                let record = LeaseRecord {
                    epoch,
                    holder: config.holder.clone(),
                    address: config.address.clone(),
                    renewals: 0,
                    timeout_ms: u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX),
                    renewed_at_ms: now_ms(),
                    released: false,
                };
                match write(storage, &record, PutMode::Create).await {
                    Ok(()) => {
                        let fence = Fence::new(epoch, started, config.timeout);
                        return Ok(Self {
                            storage: storage.clone(),
                            config,
                            record,
                            fence,
                        });
                    }
                    // Another coordinator took this epoch first.
                    Err(CheckpointError::AlreadyExists { .. }) => seen = None,
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(config.watch_every()).await;
        }
    }

    /// The epoch held.
    pub fn epoch(&self) -> u64 {
        self.record.epoch
    }

    /// The fence of this lease, for the work done under it.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Renews the lease every quarter of the timeout until it is lost, and returns
    /// why. After it returns, [`Fence::check`] fails for good.
    pub async fn keep(&mut self) -> String {
        let why = loop {
            tokio::time::sleep(self.config.renew_every()).await;
            let started = Instant::now();
            match self.renew().await {
                Ok(()) => self.fence.extend(started, self.config.timeout),
                Err(lost @ CheckpointError::Fenced { .. }) => break lost.to_string(),
                Err(e) => tracing::warn!("renewing the coordinator lease: {e}"),
            }
            if let Err(e) = self.fence.check() {
                break e.to_string();
            }
        };
        self.fence.lose(why.clone());
        why
    }

    async fn renew(&mut self) -> Result<(), CheckpointError> {
        // A newer epoch means another coordinator took over: stop, whatever the
        // renewal would say.
        let newer = lease_path(self.record.epoch + 1);
        match self.storage.head(&newer).await {
            Ok(()) => {
                return Err(CheckpointError::Fenced {
                    epoch: self.record.epoch,
                    reason: format!(
                        "another coordinator took over ({} exists)",
                        self.storage.describe(&newer)
                    ),
                })
            }
            Err(CheckpointError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut next = self.record.clone();
        next.renewals += 1;
        next.renewed_at_ms = now_ms();
        write(&self.storage, &next, PutMode::Overwrite).await?;
        self.record = next;
        Ok(())
    }

    /// Gives the lease up (a graceful shutdown), so a waiting coordinator takes
    /// over at once instead of after the timeout. The fence fails from now on.
    ///
    /// # Errors
    /// The release could not be written (the others then take over after the
    /// timeout).
    pub async fn release(&mut self) -> Result<(), CheckpointError> {
        self.fence.lose("the lease was released".into());
        let mut last = self.record.clone();
        last.released = true;
        last.renewed_at_ms = now_ms();
        write(&self.storage, &last, PutMode::Overwrite).await
    }
}

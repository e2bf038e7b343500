//! Cluster mode's control plane over HTTP: `weir coordinator` keeps the registered
//! workers ([`HttpCluster`], the [`ClusterLink`] of its jobs) and `weir worker`
//! ([`run_worker`]) registers, long-polls its commands and posts its reports.
//!
//! ```text
//!  worker                                   coordinator (axum, beside the REST API)
//!  GET  /cluster/challenge            ───▶  a fresh nonce
//!  POST /cluster/workers              ───▶  {id, data plane address, slots, nonce, its own nonce,
//!                                            HMAC(secret, register | both nonces | id | address)}
//!                                     ◀───  {session, HMAC(secret, coordinator | both nonces | id)}
//!  GET  /cluster/workers/{id}/commands?after=n  (long poll, session header; also the heartbeat)
//!                                     ◀───  bincode [(seq, ToWorker)]: deploy, barrier, complete, cancel
//!  POST /cluster/workers/{id}/reports ───▶  bincode [FromWorker]: started, uploaded, finished, failed
//!  DELETE /cluster/workers/{id}       ───▶  leaving (SIGTERM): its jobs restart on the others at once
//! ```
//!
//! Both sides prove the shared secret before anything else: a process without it
//! gets no session (401), and a worker refuses a coordinator that cannot prove it.
//! A worker that has not polled for the heartbeat timeout is lost: it is removed and
//! every attempt it ran fails (the job restarts on the workers left). A worker that
//! cannot reach its coordinator for as long cancels its parts: cut off, it stops
//! committing.

use crate::jobs::{self, RunOptions};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use crossbeam_channel::{unbounded, Receiver};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_checkpoint::lease::Fence;
use weir_checkpoint::StorageConfig;
use weir_dataflow::checkpointing::cluster::{
    ClusterLink, Deployment, FromWorker, Resolver, Subscribers, ToWorker, WorkerAgent, WorkerInfo,
};
use weir_dataflow::checkpointing::NoListener;
use weir_dataflow::wire::{Network, WorkerId};
use weir_dataflow::{DataflowError, JobBuilder};
use weir_net::{hex, unhex, Secret};

/// The header carrying a worker's session token.
pub const SESSION_HEADER: &str = "x-weir-session";
/// How long a command poll waits for a command before answering empty.
const POLL_WAIT: Duration = Duration::from_secs(2);
/// How long a challenge stays valid.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// How long a starting worker waits for a coordinator that is unreachable or a
/// standby before giving up.
const FIRST_REGISTRATION: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Settings of a coordinator's cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// The secret the coordinator and its workers share.
    pub secret: Secret,
    /// A worker that has not polled for this long is lost.
    pub heartbeat_timeout: Duration,
    /// Several coordinators taking turns by a lease: `None` for a single one.
    pub ha: Option<HaSettings>,
}

/// Settings of a coordinator that shares its storage with standbys
/// (`weir coordinator --ha-storage`): the one holding the lease acts, the others
/// wait and take over when it stops renewing it.
#[derive(Clone, Debug)]
pub struct HaSettings {
    /// Where the lease and the job registry live, and the jobs' default checkpoints
    /// and savepoints: a directory every coordinator reaches, or `s3://bucket/prefix`.
    pub storage: String,
    /// Without a renewal for this long the lease is taken over.
    pub lease_timeout: Duration,
    /// This coordinator's URL as workers and the other coordinators reach it,
    /// recorded with the lease (`http://host:port`; by default the bound address,
    /// which must then not be unspecified).
    pub advertise: Option<String>,
}

/// What the coordinator sends a worker as a job's definition: the job file and the
/// settings the server applied to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobEnvelope {
    /// The file name it was submitted as.
    pub file: String,
    /// The job file (or SQL) text.
    pub text: String,
    /// The job's checkpoint storage.
    pub checkpoint_storage: String,
    /// Where its savepoints go.
    pub savepoint_storage: String,
    /// The parallelism it was submitted with, if set.
    pub parallelism: Option<usize>,
    /// Whether state of missing operators may be dropped.
    pub allow_non_restored_state: bool,
}

/// A registration request.
#[derive(Debug, Serialize, Deserialize)]
pub struct Register {
    /// The worker's id (its own choice; the coordinator refuses one in use).
    pub id: u32,
    /// Where its data plane listens, as other workers reach it.
    pub addr: String,
    /// Slots it offers.
    pub slots: usize,
    /// The coordinator's challenge, hex.
    pub nonce: String,
    /// The worker's challenge to the coordinator, hex.
    pub worker_nonce: String,
    /// Its proof of the secret, hex.
    pub mac: String,
}

/// The answer to a registration.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The session token to send with every later request.
    pub session: String,
    /// The coordinator's proof of the secret, hex.
    pub proof: String,
    /// How often to poll at least, ms.
    pub heartbeat_ms: u64,
    /// The coordinator's lease epoch (0 without one), covered by its proof: a
    /// worker refuses a coordinator of an older epoch than one it has served.
    #[serde(default)]
    pub epoch: u64,
}

fn register_parts<'a>(
    nonce: &'a [u8],
    worker_nonce: &'a [u8],
    id: &'a [u8],
    addr: &'a [u8],
) -> [&'a [u8]; 5] {
    [b"weir-control register", nonce, worker_nonce, id, addr]
}

fn proof_parts<'a>(
    nonce: &'a [u8],
    worker_nonce: &'a [u8],
    id: &'a [u8],
    epoch: &'a [u8],
) -> [&'a [u8]; 5] {
    [b"weir-control coordinator", nonce, worker_nonce, id, epoch]
}

struct Worker {
    info: WorkerInfo,
    session: String,
    last_seen: Instant,
    /// Commands not yet acknowledged by a later poll, by sequence number.
    queue: VecDeque<(u64, ToWorker)>,
    next_seq: u64,
    /// The attempts deployed on it: failed if it is lost.
    attempts: BTreeSet<u64>,
}

#[derive(Default)]
struct Members {
    challenges: HashMap<Vec<u8>, Instant>,
    workers: BTreeMap<WorkerId, Worker>,
}

/// The coordinator's workers, reached over HTTP: the [`ClusterLink`] of its jobs.
pub struct HttpCluster {
    settings: ClusterSettings,
    /// The lease this coordinator acts under (unfenced without HA).
    lease: Mutex<Fence>,
    members: Mutex<Members>,
    changed: tokio::sync::Notify,
    subscribers: Subscribers,
}

impl std::fmt::Debug for HttpCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCluster")
            .field("workers", &lock(&self.members).workers.len())
            .finish()
    }
}

impl HttpCluster {
    /// A coordinator's cluster with no workers yet.
    pub fn new(settings: ClusterSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            lease: Mutex::new(Fence::unfenced()),
            members: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            subscribers: Subscribers::default(),
        })
    }

    /// From now on this coordinator acts under `fence`'s lease: its epoch goes to
    /// the workers, and its jobs' checkpoints check it.
    pub(crate) fn set_lease(&self, fence: Fence) {
        *lock(&self.lease) = fence;
    }

    /// The lease this coordinator acts under.
    pub(crate) fn fence(&self) -> Fence {
        lock(&self.lease).clone()
    }

    /// The settings it was started with.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    fn publish(&self, worker: WorkerId, report: FromWorker) {
        self.subscribers.publish(worker, report);
    }

    /// Removes a worker: every attempt it ran fails (the jobs restart on the others).
    fn remove(&self, id: WorkerId, why: &str) {
        let removed = lock(&self.members).workers.remove(&id);
        if let Some(worker) = removed {
            tracing::warn!("{id} removed: {why}");
            for attempt in worker.attempts {
                self.publish(
                    id,
                    FromWorker::Failed {
                        attempt,
                        reason: format!("the worker was removed: {why}"),
                    },
                );
            }
        }
    }

    /// Removes the workers that have not polled within the heartbeat timeout; every
    /// attempt each ran fails.
    pub fn expire(&self) {
        let timeout = self.settings.heartbeat_timeout;
        let lost: Vec<WorkerId> = {
            let mut members = lock(&self.members);
            members
                .challenges
                .retain(|_, at| at.elapsed() < CHALLENGE_TTL);
            members
                .workers
                .iter()
                .filter(|(_, w)| w.last_seen.elapsed() > timeout)
                .map(|(id, _)| *id)
                .collect()
        };
        for id in lost {
            self.remove(id, &format!("lost, no heartbeat for {timeout:?}"));
        }
    }

    /// The routes of the control plane.
    pub(crate) fn routes<S>(self: &Arc<Self>) -> Router<S> {
        Router::new()
            .route("/cluster/challenge", get(challenge))
            .route("/cluster/workers", post(register))
            .route("/cluster/workers/{id}", delete(deregister))
            .route("/cluster/workers/{id}/commands", get(commands))
            .route("/cluster/workers/{id}/reports", post(reports))
            .with_state(self.clone())
    }

    /// The registered workers (for the REST API).
    pub fn describe(&self) -> BTreeMap<u32, WorkerInfo> {
        lock(&self.members)
            .workers
            .iter()
            .map(|(id, w)| (id.0, w.info.clone()))
            .collect()
    }

    /// Checks a request's session for worker `id`, noting it as alive.
    fn session(&self, id: u32, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let token = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut members = lock(&self.members);
        match members.workers.get_mut(&WorkerId(id)) {
            Some(worker) if worker.session == token && !token.is_empty() => {
                worker.last_seen = Instant::now();
                Ok(())
            }
            Some(_) => Err((StatusCode::UNAUTHORIZED, "a wrong session token".into())),
            None => Err((
                StatusCode::NOT_FOUND,
                format!("worker {id} is not registered (lost, or the coordinator restarted): register again"),
            )),
        }
    }
}

impl ClusterLink for HttpCluster {
    fn workers(&self) -> BTreeMap<WorkerId, WorkerInfo> {
        lock(&self.members)
            .workers
            .iter()
            .map(|(id, w)| (*id, w.info.clone()))
            .collect()
    }

    fn send(&self, worker: WorkerId, message: ToWorker) -> weir_dataflow::Result<()> {
        {
            let mut members = lock(&self.members);
            let target =
                members
                    .workers
                    .get_mut(&worker)
                    .ok_or_else(|| DataflowError::TaskFailed {
                        task: worker.to_string(),
                        message: "the worker is not registered".into(),
                    })?;
            target.attempts.extend(message.deployed());
            let seq = target.next_seq;
            target.next_seq += 1;
            target.queue.push_back((seq, message));
        }
        self.changed.notify_waiters();
        Ok(())
    }

    fn reports(&self) -> Receiver<(WorkerId, FromWorker)> {
        self.subscribers.subscribe()
    }
}

async fn challenge(State(cluster): State<Arc<HttpCluster>>) -> Response {
    match weir_net::nonce() {
        Ok(nonce) => {
            lock(&cluster.members)
                .challenges
                .insert(nonce.to_vec(), Instant::now());
            Json(serde_json::json!({ "nonce": hex(&nonce) })).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn register(
    State(cluster): State<Arc<HttpCluster>>,
    Json(request): Json<Register>,
) -> Response {
    let refuse = |why: &str| {
        tracing::warn!("refused the registration of worker {}: {why}", request.id);
        (StatusCode::UNAUTHORIZED, why.to_string()).into_response()
    };
    let (Some(nonce), Some(worker_nonce), Some(mac)) = (
        unhex(&request.nonce),
        unhex(&request.worker_nonce),
        unhex(&request.mac),
    ) else {
        return refuse("malformed challenge fields: expected hex");
    };
    let id = request.id.to_le_bytes();
    let issued = lock(&cluster.members).challenges.remove(&nonce);
    if issued.is_none_or(|at| at.elapsed() > CHALLENGE_TTL) {
        return refuse("an unknown or expired challenge: fetch /cluster/challenge first");
    }
    let parts = register_parts(&nonce, &worker_nonce, &id, request.addr.as_bytes());
    if !cluster.settings.secret.verify(&parts, &mac) {
        return refuse("it could not prove it knows the cluster secret");
    }
    let session = match weir_net::nonce() {
        Ok(token) => hex(&token),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let epoch = cluster.fence().epoch();
    let proof = cluster.settings.secret.sign(&proof_parts(
        &nonce,
        &worker_nonce,
        &id,
        &epoch.to_le_bytes(),
    ));
    {
        let mut members = lock(&cluster.members);
        if members.workers.contains_key(&WorkerId(request.id)) {
            return (
                StatusCode::CONFLICT,
                format!("worker id {} is taken: pick another", request.id),
            )
                .into_response();
        }
        members.workers.insert(
            WorkerId(request.id),
            Worker {
                info: WorkerInfo {
                    addr: request.addr.clone(),
                    slots: request.slots.max(1),
                },
                session: session.clone(),
                last_seen: Instant::now(),
                queue: VecDeque::new(),
                next_seq: 1,
                attempts: BTreeSet::new(),
            },
        );
    }
    tracing::info!(
        "worker {} registered: data plane at {}, {} slots",
        request.id,
        request.addr,
        request.slots
    );
    Json(Registered {
        session,
        proof: hex(&proof),
        heartbeat_ms: cluster.settings.heartbeat_timeout.as_millis() as u64,
        epoch,
    })
    .into_response()
}

async fn deregister(
    State(cluster): State<Arc<HttpCluster>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = cluster.session(id, &headers) {
        return refused.into_response();
    }
    cluster.remove(WorkerId(id), "it left the cluster (shut down)");
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn commands(
    State(cluster): State<Arc<HttpCluster>>,
    Path(id): Path<u32>,
    Query(After { after }): Query<After>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = cluster.session(id, &headers) {
        return refused.into_response();
    }
    // Well within the heartbeat timeout: a poll is the worker's sign of life.
    let wait = POLL_WAIT.min(cluster.settings.heartbeat_timeout / 4);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the check, so a command sent in between wakes it.
        let woken = cluster.changed.notified();
        let pending: Option<Vec<(u64, ToWorker)>> = {
            let mut members = lock(&cluster.members);
            members.workers.get_mut(&WorkerId(id)).map(|worker| {
                worker.last_seen = Instant::now();
                while worker.queue.front().is_some_and(|(seq, _)| *seq <= after) {
                    worker.queue.pop_front();
                }
                worker.queue.iter().cloned().collect()
            })
        };
        let Some(pending) = pending else {
            return (StatusCode::NOT_FOUND, "the worker was removed").into_response();
        };
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return match bincode::serde::encode_to_vec(&pending, bincode::config::standard()) {
                Ok(body) => body.into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            };
        }
        let _ = tokio::time::timeout_at(deadline, woken).await;
    }
}

async fn reports(
    State(cluster): State<Arc<HttpCluster>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = cluster.session(id, &headers) {
        return refused.into_response();
    }
    let reports: Vec<FromWorker> =
        match bincode::serde::decode_from_slice(&body, bincode::config::standard()) {
            Ok((reports, _)) => reports,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("expected bincode reports: {e}"),
                )
                    .into_response()
            }
        };
    for report in reports {
        cluster.publish(WorkerId(id), report);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Settings of `weir worker`.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The coordinators' base URLs (`http://host:port`): the active one and its
    /// standbys, or one Service in front of them. A standby names the active one,
    /// which the worker then follows.
    pub coordinators: Vec<String>,
    /// Where the data plane listens (`0.0.0.0:6124`; port 0 picks one).
    pub data_bind: String,
    /// The data plane's address as other workers reach it (default: the bound
    /// address, which must then not be unspecified).
    pub advertise: Option<String>,
    /// Slots offered.
    pub slots: usize,
    /// The cluster's secret.
    pub secret: Secret,
    /// Where RocksDB state and other local files go.
    pub data: std::path::PathBuf,
    /// TLS on the data plane (this certificate, presented to the other workers;
    /// their authority, trusted), and that authority trusted for the coordinators'
    /// HTTPS. Without it, everything is plain TCP and HTTP.
    pub tls: Option<weir_net::tls::DataPlaneTls>,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The data plane could not start.
    #[error("the data plane: {0}")]
    Network(#[from] weir_net::NetError),
    /// The coordinator refused the worker, or proved no secret.
    #[error("coordinator {url}: {message}")]
    Coordinator {
        /// Its URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The coordinator is a standby (it waits for the lease).
    #[error("coordinator {url} is a standby{}", active.as_ref().map(|a| format!(": the active one is at {a}")).unwrap_or_default())]
    Standby {
        /// Its URL.
        url: String,
        /// The active coordinator's URL, if it knows it.
        active: Option<String>,
    },
    /// A setting is not usable.
    #[error("{0}")]
    Invalid(String),
}

impl WorkerError {
    /// Whether trying again later, or another coordinator, may succeed (the
    /// coordinator is unreachable or a standby), rather than a refusal.
    fn is_transient(&self) -> bool {
        match self {
            Self::Standby { .. } => true,
            Self::Coordinator { message, .. } => message.starts_with("unreachable"),
            Self::Network(_) | Self::Invalid(_) => false,
        }
    }
}

/// The resolver of `weir worker`: a deployment's spec is a [`JobEnvelope`].
pub fn job_file_resolver(state_dir: std::path::PathBuf) -> Resolver {
    Arc::new(move |deployment: &Deployment| {
        let envelope: JobEnvelope = serde_json::from_str(&deployment.spec).map_err(|e| {
            DataflowError::invalid(&deployment.job, format!("an unreadable job envelope: {e}"))
        })?;
        let plan = crate::api::load_job(&envelope.file, &envelope.text)
            .map_err(|problems| DataflowError::invalid(&deployment.job, problems.join("; ")))?;
        let options = RunOptions {
            parallelism: envelope.parallelism,
            allow_non_restored_state: envelope.allow_non_restored_state,
            savepoints: Some(envelope.savepoint_storage.clone()),
            state_dir: Some(state_dir.join("state")),
            ..RunOptions::default()
        };
        let (config, mut checkpointing) = jobs::configs(&plan, &options);
        checkpointing.storage = StorageConfig::new(envelope.checkpoint_storage.clone());
        let plan = Arc::new(plan);
        let build: Arc<dyn Fn(&JobBuilder) + Send + Sync> =
            Arc::new(move |job: &JobBuilder| jobs::build(&plan, job));
        Ok((config, checkpointing, build))
    })
}

/// The client side of the control plane, on the worker.
struct Control {
    http: reqwest::Client,
    url: String,
    id: u32,
    session: String,
    /// The coordinator's heartbeat timeout: cut off for as long, this worker's
    /// parts stop.
    heartbeat: Duration,
    /// The coordinator's lease epoch (0 without one).
    epoch: u64,
}

impl Control {
    fn error(&self, message: impl std::fmt::Display) -> WorkerError {
        WorkerError::Coordinator {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    async fn register(
        http: &reqwest::Client,
        url: &str,
        id: u32,
        config: &WorkerConfig,
        addr: &str,
    ) -> Result<Self, WorkerError> {
        let error = |message: String| WorkerError::Coordinator {
            url: url.to_string(),
            message,
        };
        #[derive(Deserialize)]
        struct Challenge {
            nonce: String,
        }
        let answer = http
            .get(format!("{url}/cluster/challenge"))
            .send()
            .await
            .map_err(|e| error(format!("unreachable: {e}")))?;
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            #[derive(Deserialize)]
            struct Standby {
                active: Option<String>,
            }
            let standby: Option<Standby> = answer.json().await.ok();
            return Err(WorkerError::Standby {
                url: url.to_string(),
                active: standby.and_then(|s| s.active),
            });
        }
        let challenge: Challenge = answer
            .error_for_status()
            .map_err(|e| error(format!("is it a weir coordinator in cluster mode? {e}")))?
            .json()
            .await
            .map_err(|e| error(format!("an unreadable challenge: {e}")))?;
        let nonce = unhex(&challenge.nonce).ok_or_else(|| error("a malformed challenge".into()))?;
        let worker_nonce = weir_net::nonce()?;
        let id_bytes = id.to_le_bytes();
        let mac = config.secret.sign(&register_parts(
            &nonce,
            &worker_nonce,
            &id_bytes,
            addr.as_bytes(),
        ));
        let response = http
            .post(format!("{url}/cluster/workers"))
            .json(&Register {
                id,
                addr: addr.to_string(),
                slots: config.slots,
                nonce: challenge.nonce.clone(),
                worker_nonce: hex(&worker_nonce),
                mac: hex(&mac),
            })
            .send()
            .await
            .map_err(|e| error(format!("unreachable: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(error(format!(
                "refused the registration ({status}): {text}"
            )));
        }
        let registered: Registered = response
            .json()
            .await
            .map_err(|e| error(format!("an unreadable registration: {e}")))?;
        let proof = unhex(&registered.proof).unwrap_or_default();
        let epoch = registered.epoch.to_le_bytes();
        if !config.secret.verify(
            &proof_parts(&nonce, &worker_nonce, &id_bytes, &epoch),
            &proof,
        ) {
            return Err(error(
                "it could not prove it knows the cluster secret: refusing its commands".into(),
            ));
        }
        Ok(Self {
            http: http.clone(),
            url: url.to_string(),
            id,
            session: registered.session,
            heartbeat: Duration::from_millis(registered.heartbeat_ms.max(1000)),
            epoch: registered.epoch,
        })
    }

    /// Registers with the first of `known` (but `skip`) that takes this worker,
    /// following a standby to the active coordinator it names (added to `known`). A coordinator of an older lease epoch than `min_epoch` is refused:
    /// it lost its lease to one this worker already served.
    async fn register_any(
        http: &reqwest::Client,
        known: &mut Vec<String>,
        skip: Option<&str>,
        id: u32,
        config: &WorkerConfig,
        addr: &str,
        min_epoch: u64,
    ) -> Result<Self, WorkerError> {
        let mut last = None;
        let mut i = 0;
        while i < known.len() {
            let url = known[i].clone();
            i += 1;
            if skip == Some(url.as_str()) {
                continue;
            }
            match Self::register(http, &url, id, config, addr).await {
                Ok(control) if control.epoch < min_epoch => {
                    // Leave it at once: its sessions must not hold on to this worker.
                    let _ = control.deregister().await;
                    last = Some(control.error(format!(
                        "it acts under lease epoch {}, older than epoch {min_epoch} of a coordinator this worker served: it lost its lease",
                        control.epoch
                    )));
                }
                Ok(control) => return Ok(control),
                Err(WorkerError::Standby {
                    url,
                    active: Some(active),
                }) => {
                    let active = active.trim_end_matches('/').to_string();
                    if !known.contains(&active) {
                        known.push(active.clone());
                    }
                    last = Some(WorkerError::Standby {
                        url,
                        active: Some(active),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            WorkerError::Invalid("no coordinator URL given: pass --coordinator URL".into())
        }))
    }

    /// The commands after `after`; `Ok(None)` when the coordinator forgot this
    /// worker (it must register again).
    async fn poll(&self, after: u64) -> Result<Option<Vec<(u64, ToWorker)>>, WorkerError> {
        let request = self
            .http
            .get(self.path(&format!("commands?after={after}")))
            .timeout(POLL_WAIT * 3);
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED => return Ok(None),
            status if !status.is_success() => {
                return Err(self.error(format!("answered {status} to a poll")))
            }
            _ => {}
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.error(format!("a poll broke off: {e}")))?;
        bincode::serde::decode_from_slice(&body, bincode::config::standard())
            .map(|(commands, _)| Some(commands))
            .map_err(|e| self.error(format!("unreadable commands: {e}")))
    }

    /// `{url}/cluster/workers/{id}/{rest}` (`rest` empty: the worker itself).
    fn path(&self, rest: &str) -> String {
        let path = format!("{}/cluster/workers/{}", self.url, self.id);
        match rest {
            "" => path,
            rest => format!("{path}/{rest}"),
        }
    }

    /// Sends `request` with the session.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, WorkerError> {
        request
            .header(SESSION_HEADER, &self.session)
            .send()
            .await
            .map_err(|e| self.error(format!("unreachable: {e}")))
    }

    /// Sends `request` with the session; an error unless it succeeds.
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<(), WorkerError> {
        let response = self.send(request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.error(format!("answered {} to {what}", response.status())))
        }
    }

    /// Leaves the cluster.
    async fn deregister(&self) -> Result<(), WorkerError> {
        self.call(self.http.delete(self.path("")), "leaving").await
    }

    async fn report(&self, reports: &[FromWorker]) -> Result<(), WorkerError> {
        let body = bincode::serde::encode_to_vec(reports, bincode::config::standard())
            .map_err(|e| self.error(e))?;
        self.call(self.http.post(self.path("reports")).body(body), "reports")
            .await
    }
}

/// Runs a worker until `shutdown` completes: registers with the coordinator, runs
/// the parts of attempts it deploys, reports, and registers again whenever the
/// coordinator forgets it. `on_ready` gets the worker's id and data-plane address
/// once registered. At `shutdown` it leaves the cluster (the coordinator restarts
/// its jobs on the other workers at once) and cancels its parts.
///
/// # Errors
/// The data plane cannot listen, or the first registration is refused (wrong
/// secret, not a coordinator).
pub async fn run_worker(
    config: WorkerConfig,
    on_ready: impl FnOnce(u32, &str),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkerError> {
    let mut known: Vec<String> = config
        .coordinators
        .iter()
        .map(|url| url.trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .collect();
    weir_checkpoint::install_tls_provider();
    let mut http = reqwest::Client::builder();
    if let Some(tls) = &config.tls {
        // The coordinators' certificates are signed by the cluster's authority.
        http = http.tls_backend_preconfigured(rustls::ClientConfig::clone(&tls.client.config()));
    }
    let http = http
        .build()
        .map_err(|e| WorkerError::Invalid(format!("cannot start the HTTP client: {e}")))?;
    let id = loop {
        let id = u32::from_le_bytes(weir_net::nonce()?[..4].try_into().unwrap_or([1; 4]));
        if id != 0 {
            break id;
        }
    };
    let network = Network::bind_with(
        WorkerId(id),
        &config.data_bind,
        config.secret.clone(),
        config.tls.clone(),
    )?;
    let addr = match &config.advertise {
        Some(addr) => addr.clone(),
        None if network.local_addr().ip().is_unspecified() => {
            return Err(WorkerError::Invalid(format!(
                "the data plane listens on {}, which other workers cannot dial: pass --advertise HOST:PORT",
                network.local_addr()
            )))
        }
        None => network.local_addr().to_string(),
    };
    // The coordinators may be starting too, or electing one: wait a while for one
    // to take this worker; a refusal (a wrong secret) ends at once.
    let started = Instant::now();
    let control = loop {
        match Control::register_any(&http, &mut known, None, id, &config, &addr, 0).await {
            Ok(control) => break control,
            Err(e) if e.is_transient() && started.elapsed() < FIRST_REGISTRATION => {
                tracing::warn!("{e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!("registered with the coordinator at {}", control.url);
    let mut epoch = control.epoch;
    on_ready(id, &addr);
    let resolve = job_file_resolver(config.data.clone());
    let mut agent = WorkerAgent::new(network, resolve, Arc::new(NoListener));
    let (report_tx, reports) = unbounded::<FromWorker>();
    let session = Arc::new(tokio::sync::RwLock::new(Arc::new(control)));
    let reporter = tokio::spawn(send_reports(session.clone(), reports));
    let mut after = 0;
    let mut unreachable_since: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    let result = loop {
        let current = session.read().await.clone();
        let polled = tokio::select! {
            polled = current.poll(after) => polled,
            () = &mut shutdown => {
                // Drain: the coordinator restarts this worker's jobs on the others at
                // once instead of after the heartbeat timeout; its parts stop.
                if let Err(e) = current.deregister().await {
                    tracing::warn!("{e}");
                }
                agent.cancel_all(&report_tx);
                break Ok(());
            }
        };
        // A coordinator to move to: after the current one forgot this worker, any
        // (it too); while the current one is unreachable, another one.
        let mut moved = None;
        match polled {
            Ok(Some(commands)) => {
                unreachable_since = None;
                for (seq, command) in commands {
                    after = after.max(seq);
                    agent.handle(command, &report_tx);
                }
            }
            Ok(None) => {
                tracing::warn!("the coordinator forgot this worker: cancelling its parts and registering again");
                agent.cancel_all(&report_tx);
                after = 0;
                match Control::register_any(&http, &mut known, None, id, &config, &addr, epoch)
                    .await
                {
                    Ok(fresh) => moved = Some(fresh),
                    Err(e) => {
                        tracing::warn!("{e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                tracing::warn!("{e}");
                if since.elapsed() > current.heartbeat {
                    // Cut off: the coordinator has given this worker up; its parts
                    // must stop committing before their replacements do.
                    agent.cancel_all(&report_tx);
                }
                // Another coordinator may have taken over.
                match Control::register_any(
                    &http,
                    &mut known,
                    Some(&current.url),
                    id,
                    &config,
                    &addr,
                    epoch,
                )
                .await
                {
                    Ok(fresh) => {
                        // The attempts of the coordinator before are over: their
                        // parts stop before the new coordinator deploys any.
                        agent.cancel_all(&report_tx);
                        after = 0;
                        moved = Some(fresh);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        if let Some(fresh) = moved {
            unreachable_since = None;
            epoch = epoch.max(fresh.epoch);
            tracing::info!(
                "registered with the coordinator at {} (lease epoch {})",
                fresh.url,
                fresh.epoch
            );
            *session.write().await = Arc::new(fresh);
        }
        if reporter.is_finished() {
            break Ok(());
        }
    };
    reporter.abort();
    result
}

async fn send_reports(
    session: Arc<tokio::sync::RwLock<Arc<Control>>>,
    reports: Receiver<FromWorker>,
) {
    loop {
        let reports_rx = reports.clone();
        let batch = tokio::task::spawn_blocking(move || {
            let first = reports_rx.recv().ok()?;
            let mut batch = vec![first];
            batch.extend(reports_rx.try_iter());
            Some(batch)
        })
        .await;
        let Ok(Some(batch)) = batch else { return };
        // Reports are retried until the coordinator takes them (or forgets this
        // worker: then they belong to attempts that are over).
        for _ in 0..20 {
            let control = session.read().await.clone();
            match control.report(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!("{e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}

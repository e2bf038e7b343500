//! weir-server: the job server of weir (`weir serve`), with a REST API and a web UI,
//! and what it runs: the job-file runner ([`jobs`]) and the Prometheus metrics of
//! running jobs ([`metrics`]). Jobs are job files (see `docs/job-files.md`)
//! submitted over HTTP and run in this process with checkpoints; the server keeps a
//! registry of them on disk and, when it starts again after a crash or a restart,
//! resumes every job that was running from its newest checkpoint. [`client`] is the
//! HTTP client of `weir submit`, `weir list`, ….
//!
//! ```text
//!  weir-jobfile (JobPlan) ─┐
//!  weir-sources, weir-sinks ┼─▶ jobs::run ─▶ weir-dataflow CheckpointedJob
//!  weir-nexmark ───────────┘        ▲
//!                                   │ weir-server ─▶ weir (CLI: `weir run`, `weir serve`, `weir submit`, …)
//!
//!  weir submit / curl / web UI ──HTTP──▶ axum router ──auth──▶ api handlers
//!                                                              │ (blocking pool)
//!                                  registry (<data>/jobs/<id>/job.json)
//!                                                              │
//!                                  ServerJob ─▶ CheckpointedJob (driver, tasks)
//!                                                              │
//!                                  GET /metrics ◀── metrics::render(LiveJob)
//! ```
//!
//! ```no_run
//! use weir_server::{serve, ServerConfig};
//! let config = ServerConfig {
//!     bind: "127.0.0.1:8081".into(),
//!     data: "./weir-data/server".into(),
//!     token: None,
//!     cluster: None,
//!     savepoint_on_stop: false,
//!     tls: None,
//! };
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! runtime.block_on(serve(config, |addr| println!("listening on http://{addr}"))).unwrap();
//! ```
#![deny(missing_docs)]

mod api;
pub mod client;
pub mod cluster;
mod job;
pub mod jobs;
pub mod metrics;
mod openapi;
pub mod registry;
mod tls;
mod ui;
pub mod view;

pub use job::{JobError, ServerJob};

use registry::{RecordedState, Registry};
use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use weir_checkpoint::{CheckpointStorage, StorageConfig};
use weir_dataflow::checkpointing::ResumeFrom;

/// Settings of `weir serve`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `host:port` to listen on (`127.0.0.1:8081` by default; port 0 picks one).
    pub bind: String,
    /// Where the job registry and the jobs' default checkpoint storage live.
    pub data: PathBuf,
    /// Bearer token every API request must carry; required for a non-loopback bind.
    pub token: Option<String>,
    /// Cluster mode (`weir coordinator`): jobs run on the workers that register,
    /// not in this process.
    pub cluster: Option<cluster::ClusterSettings>,
    /// At shutdown ([`serve_until`]), stop every running job with a savepoint, from
    /// which the next server (a restart, or a standby coordinator) resumes it.
    pub savepoint_on_stop: bool,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<weir_net::tls::ServerTls>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// `--bind` is not an address.
    #[error("cannot listen on `{bind}`: {message}: expected host:port, e.g. 127.0.0.1:8081")]
    BadAddress {
        /// As given.
        bind: String,
        /// Why it does not resolve.
        message: String,
    },
    /// A non-loopback address without a token.
    #[error("refusing to listen on {bind} without an access token: it is reachable from other machines; set --token (or WEIR_TOKEN), or bind a loopback address such as 127.0.0.1:8081")]
    TokenRequired {
        /// As given.
        bind: String,
    },
    /// An empty token.
    #[error("the access token is empty: expected a non-empty --token or WEIR_TOKEN")]
    EmptyToken,
    /// Binding or serving failed.
    #[error("listening on {bind}: {source}")]
    Listen {
        /// As given.
        bind: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The registry directory is unusable.
    #[error("job registry under {path}: {source}")]
    Registry {
        /// The data directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The lease storage of `--ha-storage` cannot be used.
    #[error("the coordinator lease in {storage}: {source}")]
    Lease {
        /// The storage.
        storage: String,
        /// What failed.
        source: Box<weir_checkpoint::CheckpointError>,
    },
    /// Another coordinator took over (or the lease could not be renewed in time):
    /// this one has stopped acting, and its process should end (to wait again as a
    /// standby, start it again).
    #[error("lost the coordinator lease (epoch {epoch}): {why}; this coordinator stops acting")]
    LeaseLost {
        /// The epoch it held.
        epoch: u64,
        /// Why it was lost.
        why: String,
    },
}

/// Whether this server acts: always without a lease; with one, only while it holds
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// It acts (a single server, or the lease holder of `epoch`).
    Active {
        /// The lease epoch (0 without a lease).
        epoch: u64,
    },
    /// It waits for the lease, held by the coordinator at `active` (if known).
    Standby {
        /// The active coordinator's address, from its lease.
        active: Option<String>,
    },
}

/// The addresses `bind` resolves to, refused if any is not loopback and there is no
/// token.
///
/// # Errors
/// [`ServerError::BadAddress`], [`ServerError::TokenRequired`], [`ServerError::EmptyToken`].
pub fn check_bind(bind: &str, token: Option<&str>) -> Result<Vec<SocketAddr>, ServerError> {
    if token.is_some_and(str::is_empty) {
        return Err(ServerError::EmptyToken);
    }
    let addrs: Vec<SocketAddr> = bind
        .to_socket_addrs()
        .map_err(|e| ServerError::BadAddress {
            bind: bind.into(),
            message: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ServerError::BadAddress {
            bind: bind.into(),
            message: "it resolves to no address".into(),
        });
    }
    if token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(ServerError::TokenRequired { bind: bind.into() });
    }
    Ok(addrs)
}

/// What the handlers share.
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    /// In cluster mode, the workers jobs run on.
    pub(crate) cluster: Option<Arc<cluster::HttpCluster>>,
    pub(crate) token: Option<String>,
    pub(crate) jobs: RwLock<BTreeMap<String, Arc<ServerJob>>>,
    pub(crate) role: RwLock<Role>,
}

impl AppState {
    pub(crate) fn job(&self, id: &str) -> Option<Arc<ServerJob>> {
        self.jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub(crate) fn role(&self) -> Role {
        self.role.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_role(&self, role: Role) {
        *self.role.write().unwrap_or_else(|p| p.into_inner()) = role;
    }

    pub(crate) fn all(&self) -> Vec<Arc<ServerJob>> {
        self.jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Runs the server until the process ends: resumes the registry's running jobs,
/// binds, calls `on_listening` with the bound address, then serves.
///
/// # Errors
/// [`ServerError`]: a refused or unusable address, an unusable data directory.
pub async fn serve(
    config: ServerConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    serve_until(config, on_listening, std::future::pending()).await
}

/// [`serve`] until `shutdown` completes. With
/// [`savepoint_on_stop`](ServerConfig::savepoint_on_stop), the running jobs are
/// then stopped with savepoints (the API still served meanwhile, which workers need),
/// and resume from them on the standby or at the next start; otherwise they end
/// with the process, and resume from their newest checkpoints. A coordinator
/// holding the lease of `--ha-storage` then releases it, so that a standby takes
/// over at once.
///
/// # Errors
/// As [`serve`].
pub async fn serve_until(
    config: ServerConfig,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let addrs = check_bind(&config.bind, config.token.as_deref())?;
    let mut config = config;
    // Jobs' checkpoint paths are recorded absolute, so they do not depend on where
    // the next server starts.
    config.data = std::path::absolute(&config.data).map_err(|source| ServerError::Registry {
        path: config.data.display().to_string(),
        source,
    })?;
    let ha = config.cluster.as_ref().and_then(|c| c.ha.clone());
    let registry = match &ha {
        None => Registry::open(&config.data).map_err(|source| ServerError::Registry {
            path: config.data.display().to_string(),
            source,
        })?,
        Some(ha) => {
            let url = ha.storage.clone();
            tokio::task::spawn_blocking(move || Registry::open_url(&url))
                .await
                .map_err(std::io::Error::other)
                .and_then(|opened| opened)
                .map_err(|source| ServerError::Registry {
                    path: ha.storage.clone(),
                    source,
                })?
        }
    };
    let cluster = config.cluster.clone().map(cluster::HttpCluster::new);
    if let Some(cluster) = &cluster {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                cluster.expire();
            }
        });
    }
    let role = match &ha {
        None => Role::Active { epoch: 0 },
        Some(_) => Role::Standby { active: None },
    };
    let state = Arc::new(AppState {
        registry,
        cluster,
        token: config.token.clone(),
        jobs: RwLock::default(),
        role: RwLock::new(role),
    });
    if ha.is_none() {
        resume_jobs(&state).await;
    }
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(|source| ServerError::Listen {
            bind: config.bind.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            bind: config.bind.clone(),
            source,
        })?;
    let advertise = match ha.as_ref().map(|ha| ha.advertise.clone()) {
        Some(Some(url)) => url,
        Some(None) if local.ip().is_unspecified() => {
            return Err(ServerError::BadAddress {
                bind: config.bind,
                message: "other coordinators and the workers cannot reach an unspecified address: pass --advertise-url http://HOST:PORT".into(),
            })
        }
        _ if config.tls.is_some() => format!("https://{local}"),
        _ => format!("http://{local}"),
    };
    tokio::spawn(sample_rates(state.clone()));
    on_listening(local);
    let router = api::router(state.clone());
    let serving: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> =
        match &config.tls {
            None => Box::pin(axum::serve(listener, router).into_future()),
            Some(tls) => {
                let listener =
                    tls::TlsListener::new(listener, tls).map_err(|source| ServerError::Listen {
                        bind: config.bind.clone(),
                        source,
                    })?;
                Box::pin(axum::serve(listener, router).into_future())
            }
        };
    let savepoint_on_stop = config.savepoint_on_stop;
    let Some(ha) = ha else {
        let stopping = async {
            shutdown.await;
            if savepoint_on_stop {
                stop_with_savepoints(&state).await;
            }
        };
        return tokio::select! {
            served = serving => served.map_err(|source| ServerError::Listen {
                bind: config.bind,
                source,
            }),
            () = stopping => Ok(()),
        };
    };
    // A standby serves its health and readiness (not ready) and points workers
    // and clients at the active coordinator until it holds the lease itself.
    tokio::select! {
        served = serving => served.map_err(|source| ServerError::Listen {
            bind: config.bind,
            source,
        }),
        ended = lead(&state, ha, advertise, savepoint_on_stop, shutdown) => ended,
    }
}

/// Stops every running job with a savepoint (all at once), for the next server to
/// resume from. A job whose savepoint fails goes on until the process ends, and is
/// resumed from its newest checkpoint.
async fn stop_with_savepoints(state: &Arc<AppState>) {
    let running = state.all().into_iter().filter(|job| job.is_running());
    let stops = running.map(|job| {
        tokio::task::spawn_blocking(move || {
            tracing::info!("shutting down: stopping job `{}` with a savepoint", job.id);
            match job.stop_for_shutdown() {
                Ok(location) => tracing::info!(
                    "job `{}` stopped with savepoint {location}; the next server resumes it from there",
                    job.id
                ),
                Err(e) => tracing::warn!(
                    "{e}; it is resumed from its newest checkpoint instead"
                ),
            }
        })
    });
    for stop in stops.collect::<Vec<_>>() {
        let _ = stop.await;
    }
}

/// Waits for the lease, then acts under it: resumes the registry's running jobs and
/// renews the lease until it is lost, which ends the server (its jobs' checkpoints
/// are fenced from the moment the lease may be gone).
async fn lead(
    state: &Arc<AppState>,
    ha: cluster::HaSettings,
    advertise: String,
    savepoint_on_stop: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let lease_error = |source| ServerError::Lease {
        storage: ha.storage.clone(),
        source: Box::new(source),
    };
    let storage = CheckpointStorage::open(&StorageConfig::new(ha.storage.clone()))
        .await
        .map_err(lease_error)?;
    let config = weir_checkpoint::lease::LeaseConfig {
        timeout: ha.lease_timeout,
        holder: format!(
            "{} (pid {})",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".into()),
            std::process::id()
        ),
        address: advertise,
    };
    let waiting = |seen: &weir_checkpoint::lease::Waiting| match seen {
        weir_checkpoint::lease::Waiting::HeldBy(record) => {
            tracing::info!(
                "standby: coordinator {} at {} holds the lease (epoch {}); waiting",
                record.holder,
                record.address,
                record.epoch
            );
            state.set_role(Role::Standby {
                active: Some(record.address.clone()),
            });
        }
        weir_checkpoint::lease::Waiting::Unreadable(e) => {
            tracing::warn!("standby: cannot read the lease: {e}; waiting");
        }
    };
    let acquired = tokio::select! {
        acquired = weir_checkpoint::lease::Lease::acquire(&storage, config, waiting) => acquired,
        () = &mut shutdown => return Ok(()),
    };
    let mut lease = acquired.map_err(lease_error)?;
    let epoch = lease.epoch();
    tracing::info!("holding the coordinator lease, epoch {epoch}: acting");
    if let Some(cluster) = &state.cluster {
        cluster.set_lease(lease.fence());
    }
    state.set_role(Role::Active { epoch });
    let resuming = {
        let state = state.clone();
        tokio::spawn(async move {
            if let Some(cluster) = &state.cluster {
                wait_for_workers(cluster).await;
            }
            resume_jobs(&state).await;
        })
    };
    let ended = tokio::select! {
        why = lease.keep() => {
            tracing::error!("lost the coordinator lease (epoch {epoch}): {why}");
            Err(ServerError::LeaseLost { epoch, why })
        }
        () = &mut shutdown => {
            if savepoint_on_stop {
                // Under the lease, renewed meanwhile: the savepoints complete only
                // while it is held.
                resuming.abort();
                tokio::select! {
                    why = lease.keep() => {
                        tracing::error!("lost the coordinator lease (epoch {epoch}): {why}");
                        return Err(ServerError::LeaseLost { epoch, why });
                    }
                    () = stop_with_savepoints(state) => {}
                }
            }
            // A standby takes over at once instead of after the timeout.
            match lease.release().await {
                Ok(()) => tracing::info!("released the coordinator lease (epoch {epoch})"),
                Err(e) => tracing::warn!("could not release the coordinator lease: {e}"),
            }
            Ok(())
        }
    };
    resuming.abort();
    ended
}

/// After a takeover, the workers of the coordinator before register again within a
/// few polls: the jobs resume once their number has not changed for two seconds
/// (at most a heartbeat timeout), so that they spread over all of them.
async fn wait_for_workers(cluster: &cluster::HttpCluster) {
    let settle = std::time::Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    let mut count = cluster.describe().len();
    let mut since = started;
    while started.elapsed() < cluster.settings().heartbeat_timeout {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = cluster.describe().len();
        if now != count {
            count = now;
            since = tokio::time::Instant::now();
        } else if count > 0 && since.elapsed() >= settle {
            break;
        }
    }
}

/// Loads the registry and starts every job recorded as running, from its newest
/// checkpoint (or, if it has none yet, from what it was submitted with). A job that
/// cannot be loaded or started is recorded as failed, with the reason.
async fn resume_jobs(state: &Arc<AppState>) {
    let registry = state.registry.clone();
    let records = match tokio::task::spawn_blocking(move || registry.load_all()).await {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => {
            tracing::error!("cannot list the job registry: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("cannot list the job registry: {e}");
            return;
        }
    };
    for record in records {
        let mut record = match record {
            Ok(record) => record,
            Err(e) => {
                tracing::error!("{e}; skipped");
                continue;
            }
        };
        let plan = match api::load_job(&record.file, &record.text) {
            Ok(plan) => Some(plan),
            Err(problems) => {
                let e = problems.join("; ");
                // Listed as failed (with every problem) rather than dropped unseen.
                tracing::error!("job `{}` no longer validates: {e}", record.id);
                if record.state == RecordedState::Running {
                    record.state = RecordedState::Failed;
                    record.error = Some(format!("its job file no longer validates: {e}"));
                    record.ended_at_ms = Some(job::now_ms());
                    if let Err(e) = state.registry.save(&record) {
                        tracing::error!("job `{}`: could not write its record: {e}", record.id);
                    }
                }
                None
            }
        };
        let resume = match &plan {
            Some(plan) if record.state == RecordedState::Running => {
                record.server_restarts += 1;
                Some(resume_point(&record, &plan.spec.name).await)
            }
            _ => None,
        };
        let job = ServerJob::new(record, plan, state.registry.clone(), state.cluster.clone());
        state
            .jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), job.clone());
        if let Some(resume) = resume {
            tracing::info!("resuming job `{}` from {resume:?}", job.id);
            let started = job.clone();
            let outcome = tokio::task::spawn_blocking(move || started.start(resume)).await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            let result = tokio::task::spawn_blocking(move || job.after_resume(error)).await;
            if let Ok(Err(e)) = result {
                tracing::error!("{e}");
            }
        }
    }
}

/// The savepoint the job was stopped with at the last server's shutdown; else its
/// newest checkpoint if it has one; else what it was submitted with.
async fn resume_point(record: &registry::JobRecord, name: &str) -> ResumeFrom {
    if let Some(savepoint) = &record.resume_from {
        return ResumeFrom::Savepoint(savepoint.clone());
    }
    let config = StorageConfig::new(record.checkpoint_storage.clone());
    let has_checkpoint = match CheckpointStorage::open(&config).await {
        Ok(storage) => storage
            .list_checkpoints(name)
            .await
            .is_ok_and(|list| !list.is_empty()),
        Err(_) => false,
    };
    if has_checkpoint {
        ResumeFrom::LatestCheckpoint
    } else {
        ResumeFrom::choose(record.options.from_savepoint.clone(), false)
    }
}

/// Samples every running job's counters once a second (for records/s).
async fn sample_rates(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let jobs = state.all();
        let _ = tokio::task::spawn_blocking(move || jobs.iter().for_each(|j| j.sample())).await;
    }
}

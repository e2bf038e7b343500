//! `weir serve`: the job server (REST API and web UI) of `weir::server`; `weir
//! coordinator`, the same server in cluster mode, and `weir worker`, a worker of it
//! (docs/cluster.md).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (host:port; port 0 picks a free one). A non-loopback
    /// address needs --token.
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: String,
    /// Where the job registry and the jobs' checkpoints and savepoints go.
    #[arg(long, default_value = "./weir-data/server")]
    data: std::path::PathBuf,
    /// Require `Authorization: Bearer TOKEN` on every API request.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// On SIGTERM or Ctrl-C, stop every running job with a savepoint before
    /// exiting; the next server (a restart, or a standby coordinator) resumes each
    /// from it. Without it, jobs end with the process and resume from their newest
    /// checkpoints.
    #[arg(long)]
    savepoint_on_stop: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key) instead of
    /// plain HTTP.
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub(crate) struct CoordinatorArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// The secret the coordinator and its workers share (at least 16 bytes).
    #[arg(long, env = "WEIR_CLUSTER_SECRET", hide_env_values = true)]
    secret: String,
    /// A worker that has not polled for this long is lost (its jobs restart on the
    /// workers left), e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    heartbeat_timeout: Duration,
    /// Run as one of several coordinators sharing this storage (a directory every
    /// coordinator reaches, or s3://bucket/prefix): the one holding the lease there
    /// acts, the others wait and take over when it stops renewing it. The job
    /// registry and the jobs' default checkpoints live there too (not in --data).
    #[arg(long, env = "WEIR_HA_STORAGE")]
    ha_storage: Option<String>,
    /// Without a renewal for this long, a standby takes the lease over.
    #[arg(long, default_value = "15s", value_parser = parse_duration, requires = "ha_storage")]
    lease_timeout: Duration,
    /// This coordinator's URL as workers and the other coordinators reach it,
    /// recorded with the lease (default: http://BIND), e.g. the pod's IP.
    #[arg(long, env = "WEIR_ADVERTISE_URL", requires = "ha_storage")]
    advertise_url: Option<String>,
}

#[derive(Args)]
pub(crate) struct WorkerArgs {
    /// The coordinator's URL, e.g. http://weir-coordinator:8081; with standby
    /// coordinators, all of them (comma-separated) or a Service in front of them.
    #[arg(long, value_delimiter = ',', required = true)]
    coordinator: Vec<String>,
    /// Where the data plane listens (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6124")]
    data_bind: String,
    /// The data plane's address as other workers reach it (needed when
    /// --data-bind is 0.0.0.0), e.g. the pod's IP and port.
    #[arg(long, env = "WEIR_ADVERTISE")]
    advertise: Option<String>,
    /// Slots this worker offers.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// The secret the coordinator and its workers share.
    #[arg(long, env = "WEIR_CLUSTER_SECRET", hide_env_values = true)]
    secret: String,
    /// Where local state (RocksDB) goes.
    #[arg(long, default_value = "./weir-data/worker")]
    data: std::path::PathBuf,
    /// TLS: the PEM file of the authority that signed the coordinators' and the
    /// other workers' certificates (the coordinators' URLs are then https://).
    /// Requires --tls-cert and --tls-key, which this worker's data plane presents.
    #[arg(long, env = "WEIR_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<std::path::PathBuf>,
    /// This worker's PEM certificate chain (with --tls-ca).
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_ca")]
    tls_key: Option<std::path::PathBuf>,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    weir::jobfile::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration: expected e.g. 500ms, 10s or 1m"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-server")
        .build()
        .context("could not start the server runtime")
}

fn serve_with(
    args: ServeArgs,
    cluster: Option<weir::server::cluster::ClusterSettings>,
) -> Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(weir::net::tls::ServerTls::load(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = weir::server::ServerConfig {
        bind: args.bind,
        data: args.data,
        token: args.token,
        cluster,
        savepoint_on_stop: args.savepoint_on_stop,
        tls,
    };
    let role = if config.cluster.is_some() {
        "weir coordinator"
    } else {
        "weir serve"
    };
    let on_listening = |addr| {
        // Scripts and tests read this line for the address (with port 0, the port).
        println!("{role}: listening on {scheme}://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };
    let runtime = runtime()?;
    if config.savepoint_on_stop || config.cluster.as_ref().is_some_and(|c| c.ha.is_some()) {
        // Stopped with SIGTERM or Ctrl-C, the server stops its jobs with savepoints
        // if asked, and a coordinator releases its lease, so a standby takes over at
        // once.
        runtime.block_on(async {
            let terminated = terminated()?;
            weir::server::serve_until(config, on_listening, terminated)
                .await
                .map_err(anyhow::Error::from)
        })?;
    } else {
        runtime.block_on(weir::server::serve(config, on_listening))?;
    }
    Ok(())
}

/// Completes at SIGTERM (Kubernetes stopping the pod) or Ctrl-C. Installed before
/// the process registers anywhere, so a SIGTERM never finds the default action,
/// which would end the process without leaving.
fn terminated() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("could not install the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}

pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    serve_with(args, None)
}

pub(crate) fn coordinator(args: CoordinatorArgs) -> Result<()> {
    let secret = weir::net::Secret::new(args.secret.into_bytes())?;
    serve_with(
        args.serve,
        Some(weir::server::cluster::ClusterSettings {
            secret,
            heartbeat_timeout: args.heartbeat_timeout,
            ha: args
                .ha_storage
                .map(|storage| weir::server::cluster::HaSettings {
                    storage,
                    lease_timeout: args.lease_timeout,
                    advertise: args.advertise_url,
                }),
        }),
    )
}

pub(crate) fn worker(args: WorkerArgs) -> Result<()> {
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let config = weir::server::cluster::WorkerConfig {
        coordinators: args.coordinator,
        data_bind: args.data_bind,
        advertise: args.advertise,
        slots: args.slots,
        secret: weir::net::Secret::new(args.secret.into_bytes())?,
        data: args.data,
        tls: match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(weir::net::tls::DataPlaneTls {
                server: weir::net::tls::ServerTls::load(cert, key)?,
                client: weir::net::tls::ClientTls::load(ca)?,
            }),
            _ => None,
        },
    };
    let runtime = runtime()?;
    runtime.block_on(async {
        let terminated = terminated()?;
        weir::server::cluster::run_worker(
            config,
            |id, addr| {
                // Scripts and tests read this line.
                println!("weir worker: registered as worker {id}, data plane at {addr}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            },
            terminated,
        )
        .await
        .map_err(anyhow::Error::from)
    })?;
    Ok(())
}

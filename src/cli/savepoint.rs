//! `weir savepoint`: a savepoint of a job on a job server, or of a job running
//! embedded in another process (through its checkpoint storage).

use super::client::server_call;
use super::io_runtime;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct SavepointArgs {
    /// The job's id on a job server (`weir list` shows them).
    #[arg(required_unless_present = "job", conflicts_with_all = ["job", "checkpoint_dir"])]
    id: Option<String>,
    /// The job server's URL (with ID).
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:8081")]
    server: String,
    /// The server's access token, if it has one (with ID).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Instead of ID: the name of a job running embedded in another process (its
    /// directory under the checkpoint storage).
    #[arg(long)]
    job: Option<String>,
    /// With --job: the checkpoint storage the job runs with (default
    /// ./weir-data/checkpoints).
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Stop the job after the savepoint (stop-with-savepoint).
    #[arg(long)]
    stop: bool,
    /// How long to wait for the job to answer, e.g. `2m`.
    #[arg(long, value_parser = super::duration, default_value = "2m")]
    timeout: Duration,
}

pub(crate) fn savepoint(args: SavepointArgs) -> Result<()> {
    use weir::checkpoint::control::{ControlReply, ControlRequest};
    use weir::checkpoint::{CheckpointStorage, StorageConfig};
    if let Some(id) = &args.id {
        let verb = if args.stop { "stop" } else { "savepoints" };
        let answer = server_call(&args.server, args.token.clone(), |client| async move {
            client
                .post(&format!("/jobs/{id}/{verb}"), &serde_json::json!({}))
                .await
        })?;
        println!("{}", answer["location"].as_str().unwrap_or_default());
        return Ok(());
    }
    let Some(job) = args.job.clone() else {
        bail!("give a job server's job ID, or --job NAME of an embedded job");
    };
    let checkpoint_dir = args
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| "./weir-data/checkpoints".into());
    let runtime = io_runtime()?;
    runtime.block_on(async {
        let storage = CheckpointStorage::open(&StorageConfig::new(checkpoint_dir.clone()))
            .await
            .with_context(|| format!("checkpoint storage {checkpoint_dir}"))?;
        let id = format!(
            "{:x}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let request = ControlRequest {
            id: id.clone(),
            stop: args.stop,
        };
        storage
            .put_control_request(&job, &request)
            .await
            .context("could not leave the savepoint request")?;
        let deadline = std::time::Instant::now() + args.timeout;
        loop {
            if let Some(reply) = storage.take_control_reply(&job, &id).await? {
                return match reply {
                    ControlReply::Savepoint { location } => {
                        println!("{location}");
                        Ok(())
                    }
                    ControlReply::Failed { reason } => {
                        bail!("job `{}` could not take the savepoint: {reason}", job)
                    }
                };
            }
            if std::time::Instant::now() >= deadline {
                let _ = storage.withdraw_control_request(&job, &id).await;
                bail!(
                    "no job `{}` running with checkpoint storage {} answered within {:?}: is it running, with this --job name and --checkpoint-dir?",
                    job,
                    storage.location(),
                    args.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

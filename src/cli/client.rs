//! `weir submit | list | status | stop | cancel`: the commands that ask a job server.

use super::io_runtime;
use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub(crate) struct ServerArgs {
    /// The job server's URL.
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:8081")]
    pub(crate) server: String,
    /// The server's access token, if it has one.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Args)]
pub(crate) struct JobIdArgs {
    /// The job's id (as `weir submit` printed it; `weir list` shows them).
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
pub(crate) struct SubmitArgs {
    /// The job file (YAML or JSON; see docs/job-files.md) or SQL statements (a `.sql`
    /// file; see docs/sql.md).
    file: std::path::PathBuf,
    /// Start from this savepoint (a directory path or URL the server can read).
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Default parallelism of the operators (overrides the file's `parallelism`).
    #[arg(long, short)]
    parallelism: Option<usize>,
    /// Start even if the savepoint has state of operators this job lacks.
    #[arg(long)]
    allow_non_restored_state: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs one request (or a few) against a job server.
pub(crate) fn server_call<F, Fut>(
    server: &str,
    token: Option<String>,
    call: F,
) -> Result<serde_json::Value>
where
    F: FnOnce(weir::server::client::ServerClient) -> Fut,
    Fut: std::future::Future<
        Output = std::result::Result<serde_json::Value, weir::server::client::ClientError>,
    >,
{
    let client = weir::server::client::ServerClient::new(server, token)?;
    Ok(io_runtime()?.block_on(call(client))?)
}

pub(crate) fn submit(args: SubmitArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read job file {}", args.file.display()))?;
    let mut body = serde_json::json!({
        "job": text,
        "file": args.file.display().to_string(),
        "allow_non_restored_state": args.allow_non_restored_state,
    });
    if let Some(p) = args.parallelism {
        body["parallelism"] = p.into();
    }
    if let Some(savepoint) = args.from_savepoint {
        body["from_savepoint"] = savepoint.into();
    }
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move { client.post("/jobs", &body).await },
    )?;
    println!("{}", answer["id"].as_str().unwrap_or_default());
    Ok(())
}

pub(crate) fn list_jobs(args: ServerArgs) -> Result<()> {
    let answer = server_call(&args.server, args.token, |client| async move {
        client.get("/jobs").await
    })?;
    let jobs = answer["jobs"].as_array().cloned().unwrap_or_default();
    let width = jobs
        .iter()
        .filter_map(|j| j["id"].as_str().map(str::len))
        .max()
        .unwrap_or(2)
        .max(2);
    println!(
        "{:<width$}  {:<11}  {:>8}  NAME",
        "ID", "STATUS", "RESTARTS"
    );
    for job in jobs {
        println!(
            "{:<width$}  {:<11}  {:>8}  {}",
            job["id"].as_str().unwrap_or_default(),
            job["status"].as_str().unwrap_or_default(),
            job["restarts"].as_u64().unwrap_or(0),
            job["name"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

pub(crate) fn job_status(args: JobIdArgs) -> Result<()> {
    let id = args.id;
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move {
            let mut job = client.get(&format!("/jobs/{id}")).await?;
            job["checkpoints"] = client.get(&format!("/jobs/{id}/checkpoints")).await?;
            Ok(job)
        },
    )?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub(crate) fn stop_job(args: JobIdArgs) -> Result<()> {
    let id = args.id;
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move {
            client
                .post(&format!("/jobs/{id}/stop"), &serde_json::json!({}))
                .await
        },
    )?;
    println!("{}", answer["location"].as_str().unwrap_or_default());
    Ok(())
}

pub(crate) fn cancel_job(args: JobIdArgs) -> Result<()> {
    let id = args.id;
    let answer = server_call(
        &args.server.server,
        args.server.token,
        |client| async move { client.delete(&format!("/jobs/{id}")).await },
    )?;
    println!(
        "{} {}",
        answer["id"].as_str().unwrap_or_default(),
        answer["status"].as_str().unwrap_or_default()
    );
    Ok(())
}

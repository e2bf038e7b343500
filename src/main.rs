//! The `weir` command line: parses the arguments and hands each subcommand to its
//! module under `src/cli/`.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cli::bench::BenchCommand;
use cli::checkpoints::CheckpointsCommand;
use cli::client::{JobIdArgs, ServerArgs, SubmitArgs};
use cli::job_file::{RunArgs, SqlArgs, ValidateArgs};
use cli::query::QueryArgs;
use cli::savepoint::SavepointArgs;
use cli::serve::{CoordinatorArgs, ServeArgs, WorkerArgs};
use cli::testing::TestingCommand;
use cli::verify::VerifyArgs;
use std::io::IsTerminal;

/// weir: a stream-processing engine in the style of Apache Flink.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a Nexmark query over the deterministic generator and print its result rows
    /// (optionally with checkpoints, resuming from a checkpoint or a savepoint).
    Query(QueryArgs),
    /// Take a savepoint of a job: `weir savepoint ID` asks a job server (see
    /// `weir serve`); `weir savepoint --job NAME` asks a job running embedded in
    /// another process, through the job's checkpoint storage.
    Savepoint(SavepointArgs),
    /// Run the job server: a REST API (described at /openapi.json) and a web UI (at
    /// /) for submitting job files and watching, savepointing, stopping and
    /// cancelling them. Jobs that were running resume from their newest checkpoint
    /// when the server starts again.
    Serve(ServeArgs),
    /// Run the job server in cluster mode: jobs run on the workers that register
    /// (`weir worker`), this process keeps their checkpoints and restarts them
    /// (docs/cluster.md).
    Coordinator(CoordinatorArgs),
    /// Run a worker of a coordinator: it registers, runs the subtasks of the jobs'
    /// slots it is given and exchanges records with the other workers.
    Worker(WorkerArgs),
    /// Submit a job file to a job server and print the new job's id.
    Submit(SubmitArgs),
    /// List the jobs of a job server.
    List(ServerArgs),
    /// Show a job of a job server (status, graph with rates, checkpoints) as JSON.
    Status(JobIdArgs),
    /// Stop a job of a job server with a savepoint and print the savepoint's location.
    Stop(JobIdArgs),
    /// Cancel a job of a job server (without a savepoint).
    Cancel(JobIdArgs),
    /// Query a running job's keyed state through its job server: look up a key or
    /// scan the state, with the position (watermark, checkpoint) of the answer.
    #[command(subcommand)]
    State(cli::state::StateCommand),
    /// Show the checkpoints and savepoints in a storage.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Check a job file (YAML or JSON) or SQL file and print every problem with its file, line,
    /// column and field path; exits non-zero if there is any.
    Validate(ValidateArgs),
    /// Run a job file (YAML or JSON) or SQL file embedded in this process, with checkpoints
    /// (under ./weir-data by default), until its sources end.
    Run(RunArgs),
    /// Run a file of Flink SQL statements embedded in this process, as `run` does
    /// (or check it with --validate, or print its plan with --explain); see
    /// docs/sql.md.
    Sql(SqlArgs),
    /// Prove a job file's exactly-once output: run it once without faults, then again
    /// while crashing it (SIGKILL at random moments, failpoints in the checkpoint
    /// protocol and the sinks' commits), and compare the committed output row for row.
    /// Exits non-zero on any lost or duplicated row.
    Verify(VerifyArgs),
    /// Jobs for the crash tests.
    #[command(subcommand, hide = true)]
    Testing(TestingCommand),
}

fn main() {
    // Warnings (skipped corrupt checkpoints, aborted checkpoints, restarts) go to stderr;
    // RUST_LOG=weir=info (or debug) shows more; WEIR_LOG_FORMAT=json writes one JSON
    // object per event (timestamp, level, target, fields) for log collectors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", report(&e));
        std::process::exit(1);
    }
}

/// `e` and each of its causes once, joined by ": ". weir's errors end their message
/// with their cause's (so that logs and API responses carry it): a cause the text
/// already ends with is not repeated, where `{e:#}` would print it twice.
fn report(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench(command) => cli::bench::run(command),
        Command::Query(args) => cli::query::query(args),
        Command::Savepoint(args) => cli::savepoint::savepoint(args),
        Command::Checkpoints(command) => cli::checkpoints::checkpoints(command),
        Command::State(command) => cli::state::state(command),
        Command::Testing(command) => cli::testing::run(command),
        Command::Validate(args) => cli::job_file::validate(args),
        Command::Run(args) => cli::job_file::run(args),
        Command::Sql(args) => cli::job_file::sql(args),
        Command::Verify(args) => cli::verify::verify(args),
        Command::Serve(args) => cli::serve::serve(args),
        Command::Coordinator(args) => cli::serve::coordinator(args),
        Command::Worker(args) => cli::serve::worker(args),
        Command::Submit(args) => cli::client::submit(args),
        Command::List(args) => cli::client::list_jobs(args),
        Command::Status(args) => cli::client::job_status(args),
        Command::Stop(args) => cli::client::stop_job(args),
        Command::Cancel(args) => cli::client::cancel_job(args),
    }
}

#[cfg(test)]
mod tests {
    use super::report;
    use anyhow::Context;
    use std::io::ErrorKind;
    use weir::dataflow::DataflowError;

    #[test]
    fn each_cause_is_printed_once() {
        let pipe = DataflowError::Io {
            operator: "stdout".into(),
            source: std::io::Error::from(ErrorKind::BrokenPipe),
        };
        let wrapped = DataflowError::operator_caused("count", 1, "while writing a batch", pipe);
        let e = Err::<(), _>(wrapped).context("job `q5`").unwrap_err();
        assert_eq!(
            report(&e),
            "job `q5`: operator `count` (subtask 1) failed: while writing a batch: \
             I/O failed in `stdout`: broken pipe"
        );
    }
}

/// The Kubernetes manifests start `weir` with commands and flags this binary
/// accepts. (They are parsed here, not applied to a cluster.)
#[cfg(test)]
mod manifests {
    use super::Cli;
    use clap::Parser;
    use weir::jobfile::yaml::{parse, Node, NodeKind};

    fn entry<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
        match &node.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn strings(node: &Node) -> Vec<String> {
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|item| match &item.kind {
                    NodeKind::Scalar { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every container of every workload of the manifest file: its arguments and the
    /// names of its environment variables.
    fn containers(text: &str) -> Vec<(Vec<String>, Vec<String>)> {
        let mut found = Vec::new();
        for document in text.split("\n---\n") {
            let root = parse(document).expect("a manifest parses as YAML");
            let Some(spec) = entry(&root, "spec")
                .and_then(|s| entry(s, "template"))
                .and_then(|t| entry(t, "spec"))
            else {
                continue;
            };
            let Some(NodeKind::Seq(list)) = entry(spec, "containers").map(|c| &c.kind) else {
                continue;
            };
            for container in list {
                let args = entry(container, "args").map(strings).unwrap_or_default();
                let env = match entry(container, "env").map(|e| &e.kind) {
                    Some(NodeKind::Seq(vars)) => vars
                        .iter()
                        .filter_map(|v| entry(v, "name"))
                        .filter_map(|n| match &n.kind {
                            NodeKind::Scalar { text, .. } => Some(text.clone()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                found.push((args, env));
            }
        }
        found
    }

    #[test]
    fn the_kubernetes_manifests_run_commands_the_cli_accepts() {
        let text = include_str!("../deploy/kubernetes/weir.yaml");
        let containers = containers(text);
        let roles: Vec<&str> = containers
            .iter()
            .filter_map(|(args, _)| args.first().map(String::as_str))
            .collect();
        assert_eq!(roles, ["coordinator", "worker"]);
        for (args, env) in &containers {
            // The values come from the Secret and the pod; only their names matter.
            for name in env {
                std::env::set_var(name, "a value set by Kubernetes");
            }
            let parsed =
                Cli::try_parse_from(std::iter::once("weir".to_string()).chain(args.clone()));
            if let Err(e) = parsed {
                panic!("`weir {}` is refused: {e}", args.join(" "));
            }
        }
        // A flag the CLI lacks is caught.
        let wrong = Cli::try_parse_from(["weir", "worker", "--coordinator", "x", "--no-such-flag"]);
        assert!(wrong.is_err());
    }
}

//! `weir state get | scan`: live queries of a running job's keyed state, through a
//! job server (`GET /jobs/{id}/state/{uid}/{state}`); `weir state read`: a state
//! in a checkpoint or savepoint, offline (`weir::state_read`).

use super::client::{server_call, ServerArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(crate) enum StateCommand {
    /// Look up one key: prints `{"key", "value", "positions"}` (value null when the
    /// key has none).
    Get {
        #[command(flatten)]
        state: StateArgs,
        /// The key as JSON in the state's key form: 42, '"alice"', '[1,"a"]'.
        key: String,
    },
    /// Scan the state in key-group order: prints one JSON line per entry, then the
    /// cursor of the next page on standard error (give it to --cursor).
    Scan {
        #[command(flatten)]
        state: StateArgs,
        /// Entries per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this cursor (what the previous page printed).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow the cursors to the end of the state.
        #[arg(long)]
        all: bool,
    },
    /// Print one operator's keyed state in a savepoint or checkpoint directory
    /// (`<root>/<job>/chk-<n>`), one JSON line per key, without a running job. A job
    /// file's window state (`window-contents`) is decoded; with the job file, keys
    /// read as its key fields and values as its named aggregates.
    Read {
        /// The savepoint or checkpoint directory (a path or URL).
        path: String,
        /// The operator's uid.
        #[arg(long)]
        uid: String,
        /// The keyed state's name.
        #[arg(long, default_value = "window-contents")]
        state: String,
        /// The job file (or SQL file) that wrote the state.
        #[arg(long)]
        job_file: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
pub(crate) struct StateArgs {
    /// The job's id (`weir list` shows them).
    job: String,
    /// The operator's uid.
    uid: String,
    /// The keyed state's name.
    state: String,
    /// Answer once the subtasks that answer know this checkpoint complete.
    #[arg(long)]
    at_least_checkpoint: Option<u64>,
    /// How long the server may wait for that, in ms.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// `text` for a URL's query: unreserved characters as they are, the rest escaped.
pub(crate) fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl StateArgs {
    fn path(&self, query: &[(&str, String)]) -> String {
        let mut params: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", escape(value)))
            .collect();
        if let Some(checkpoint) = self.at_least_checkpoint {
            params.push(format!("at_least_checkpoint={checkpoint}"));
        }
        params.push(format!("timeout_ms={}", self.timeout_ms));
        format!(
            "/jobs/{}/state/{}/{}?{}",
            escape(&self.job),
            escape(&self.uid),
            escape(&self.state),
            params.join("&")
        )
    }

    fn call(&self, path: String) -> Result<serde_json::Value> {
        server_call(
            &self.server.server,
            self.server.token.clone(),
            |client| async move { client.get(&path).await },
        )
    }
}

pub(crate) fn state(command: StateCommand) -> Result<()> {
    match command {
        StateCommand::Read {
            path,
            uid,
            state,
            job_file,
        } => {
            let plan = job_file.as_deref().map(super::job_file::load).transpose()?;
            let entries = super::io_runtime()?
                .block_on(weir::state_read::read_state(
                    &path,
                    &uid,
                    &state,
                    plan.as_ref(),
                ))
                .with_context(|| format!("reading state `{state}` of `{uid}` in {path}"))?;
            for entry in entries {
                println!("{entry}");
            }
            Ok(())
        }
        StateCommand::Get { state, key } => {
            if serde_json::from_str::<serde_json::Value>(&key).is_err() {
                bail!("the key `{key}` is not JSON: give it in the state's key form, e.g. 42, '\"alice\"' or '[1,\"a\"]'");
            }
            let answer = state.call(state.path(&[("key", key.clone())]))?;
            let entry = answer["entries"].get(0);
            let value = entry.map_or(serde_json::Value::Null, |e| e["value"].clone());
            let key = entry.map_or_else(
                || serde_json::from_str(&key).unwrap_or_default(),
                |e| e["key"].clone(),
            );
            let line = serde_json::json!({
                "key": key,
                "value": value,
                "positions": answer["positions"],
            });
            println!("{line}");
            Ok(())
        }
        StateCommand::Scan {
            state,
            limit,
            mut cursor,
            all,
        } => loop {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let answer = state.call(state.path(&query))?;
            for entry in answer["entries"].as_array().into_iter().flatten() {
                println!("{entry}");
            }
            cursor = answer["next"].as_str().map(str::to_string);
            match &cursor {
                Some(next) if !all => {
                    eprintln!("next page: --cursor {next}");
                    return Ok(());
                }
                Some(_) => {}
                None => return Ok(()),
            }
        },
    }
}

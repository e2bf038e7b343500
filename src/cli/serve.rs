//! `weir serve`: the job server (REST API and web UI) of `weir::server`.

use anyhow::{Context, Result};
use clap::Args;

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
}

pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    let config = weir::server::ServerConfig {
        bind: args.bind,
        data: args.data,
        token: args.token,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-server")
        .build()
        .context("could not start the server runtime")?;
    runtime.block_on(weir::server::serve(config, |addr| {
        // Scripts and tests read this line for the address (with port 0, the port).
        println!("weir serve: listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }))?;
    Ok(())
}

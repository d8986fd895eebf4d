//! enedis-sim: the Enedis Data Connect simulator (all four API generations).
//!
//! Thin binary: reads the command line, binds, prints `listening on ADDR` (the real
//! bound address) as its first stdout line, then serves until SIGTERM or Ctrl-C
//! (`enedis_sim::cli::run`). Logs go to stderr (`RUST_LOG`, default `info`; `debug`
//! logs every request).

use clap::Parser;
use enedis_sim::cli::{Args, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    run(Args::parse()).await
}

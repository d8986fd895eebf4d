//! enedis-sim: the Enedis Data Connect simulator (all four API generations).
//!
//! Thin binary: reads the command line, binds, prints `listening on ADDR` (the real
//! bound address) as its first stdout line, then serves until SIGTERM or Ctrl-C.
//! Logs go to stderr (`RUST_LOG`, default `info`; `debug` logs every request).

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use enedis_sim::cli::Args;

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listen = args.listen;
    let options = args.options().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("no local address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("cannot write to stdout")?;
        out.flush().context("cannot flush stdout")?;
    }
    tracing::info!(%addr, client_id = %options.client_id, today = ?options.today, "enedis-sim started");
    enedis_sim::serve(listener, options, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

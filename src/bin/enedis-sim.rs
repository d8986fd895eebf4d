//! enedis-sim: the Enedis Data Connect simulator (all four API generations).
//!
//! Thin binary: reads the command line, binds, prints `listening on ADDR` (the real
//! bound address) as its first stdout line, then serves until SIGTERM or Ctrl-C.
//! Logs go to stderr (`RUST_LOG`, default `info`; `debug` logs every request).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use quoalise_agent::config::Secret;
use quoalise_agent::sim::{self, Options};
use quoalise_agent::time::parse_date;
use std::io::Write;

/// A local Enedis Data Connect: consent pages, tokens, metering v3/v4/v5/2026.
#[derive(Debug, Parser)]
#[command(name = "enedis-sim", version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8081 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// The application's client_id.
    #[arg(long, default_value = sim::DEFAULT_CLIENT_ID)]
    client_id: String,
    /// The application's client_secret.
    #[arg(long, env = "ENEDIS_SIM_CLIENT_SECRET", default_value = sim::DEFAULT_CLIENT_SECRET, hide_env_values = true)]
    client_secret: String,
    /// The application's registered redirect URI (needed by the 2026 consent page).
    #[arg(long)]
    redirect_uri: Option<url::Url>,
    /// Fix "today" (Paris date, YYYY-MM-DD) for deterministic runs.
    #[arg(long, value_parser = parse_today)]
    today: Option<jiff::civil::Date>,
    /// Calls per second per API (0: unlimited).
    #[arg(long, default_value_t = 5)]
    quota_per_second: u32,
    /// Calls per hour for every quota bucket (default: 1000 per 2026 API, 10000 for v5 and v3/v4).
    #[arg(long)]
    quota_per_hour: Option<u32>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = sim::DEFAULT_TOKEN_TTL_SECS)]
    token_ttl: u64,
    /// Answer `expires_in` as a string on /oauth2/v3/token, as the v5 openapi does.
    #[arg(long)]
    expires_in_string: bool,
}

fn parse_today(s: &str) -> Result<jiff::civil::Date, String> {
    parse_date(s).map_err(|e| e.to_string())
}

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
    if args.token_ttl == 0 {
        anyhow::bail!("--token-ttl must be at least 1 second");
    }
    let options = Options {
        client_id: args.client_id,
        client_secret: Secret::new(args.client_secret),
        redirect_uri: args.redirect_uri,
        today: args.today,
        quota_per_second: args.quota_per_second,
        quota_per_hour: args.quota_per_hour,
        token_ttl_secs: args.token_ttl,
        expires_in_as_string: args.expires_in_string,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("cannot write to stdout")?;
        out.flush().context("cannot flush stdout")?;
    }
    tracing::info!(%addr, client_id = %options.client_id, today = ?options.today, "enedis-sim started");
    sim::serve(listener, options, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

//! The `enedis-sim` program: its command line, read into [`Options`], and [`run`],
//! which binds, prints the address and serves until SIGTERM. In the library so that
//! the in-process test harness reads exactly the arguments a user would type, and a
//! benchmark can run the simulator as a separate process of its own executable.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use crate::options::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN_TTL_SECS, Options, Secret,
};
use crate::paris::parse_date;

/// A local Enedis Data Connect: consent pages, tokens, metering v3/v4/v5/2026.
#[derive(Debug, Parser)]
#[command(name = "enedis-sim", version)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8081 (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The application's client_id.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    client_id: String,
    /// The application's client_secret.
    #[arg(long, env = "ENEDIS_SIM_CLIENT_SECRET", default_value = DEFAULT_CLIENT_SECRET, hide_env_values = true)]
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
    #[arg(long, default_value_t = DEFAULT_TOKEN_TTL_SECS)]
    token_ttl: u64,
    /// Answer `expires_in` as a string on /oauth2/v3/token, as the v5 openapi does.
    #[arg(long)]
    expires_in_string: bool,
    /// Also serve SGE (B2B SOAP) over mutual TLS on this address, e.g. 127.0.0.1:8443.
    #[arg(long, requires = "sge_tls_dir")]
    pub sge_listen: Option<SocketAddr>,
    /// Directory of the SGE test CA, server and agent certificates (generated
    /// there unless all of ca.pem, server.pem, server.key, agent.pem, agent.key exist).
    #[arg(long, requires = "sge_listen")]
    pub sge_tls_dir: Option<PathBuf>,
    /// SGE calls per second (all SGE paths together) before a call is refused
    /// with a SOAP fault, as SGE homologation allows 1; 0: unlimited.
    #[arg(long, default_value_t = 0)]
    sge_pace: u32,
}

fn parse_today(s: &str) -> Result<jiff::civil::Date, String> {
    parse_date(s).map_err(|e| e.to_string())
}

impl Args {
    /// The simulator's options, once the values clap cannot check are checked.
    pub fn options(self) -> Result<Options, String> {
        if self.token_ttl == 0 {
            return Err("--token-ttl must be at least 1 second".to_owned());
        }
        Ok(Options {
            client_id: self.client_id,
            client_secret: Secret::new(self.client_secret),
            redirect_uri: self.redirect_uri,
            today: self.today,
            quota_per_second: self.quota_per_second,
            quota_per_hour: self.quota_per_hour,
            token_ttl_secs: self.token_ttl,
            expires_in_as_string: self.expires_in_string,
            sge_pace: self.sge_pace,
        })
    }
}

/// Bind, print `listening on ADDR` (the real bound address) as the first stdout
/// line (then `sge listening on ADDR` with `--sge-listen`), then serve until
/// SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let listen = args.listen;
    let sge = args.sge_listen.zip(args.sge_tls_dir.clone());
    let options = args.options().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("no local address")?;
    let sge = match sge {
        None => None,
        Some((sge_listen, dir)) => {
            let material = crate::sge_tls::prepare(&dir)?;
            let tls = crate::sge_tls::server_config(&material)?;
            let listener = tokio::net::TcpListener::bind(sge_listen)
                .await
                .with_context(|| format!("cannot listen on {sge_listen}"))?;
            Some(crate::router::SgeListener { listener, tls })
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("cannot write to stdout")?;
        if let Some(sge) = &sge {
            let sge_addr = sge.listener.local_addr().context("no local address")?;
            writeln!(out, "sge listening on {sge_addr}").context("cannot write to stdout")?;
        }
        out.flush().context("cannot flush stdout")?;
    }
    tracing::info!(%addr, client_id = %options.client_id, today = ?options.today, "enedis-sim started");
    crate::router::serve_with_sge(listener, sge, options, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
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

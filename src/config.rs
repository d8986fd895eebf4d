//! The agent's configuration: a TOML file, overridable by environment variables
//! `QUOALISE_AGENT__<SECTION>__<KEY>`, with secrets given inline or as files.
//!
//! The key names are a contract with operators (see `config/example.toml`).
//! Durations are whole seconds in keys ending in `_secs`.
//!
//! NOTE: loading, secret resolution and validation are implemented by the
//! foundation work; the structs below are the shared shape every module reads.

use serde::Deserialize;

/// A secret value: never printed, in `Debug`, `Display` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The Enedis API generation the agent speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
pub enum ApiGeneration {
    /// Data Connect 2026 (`mesure_synchrone_auto/v2`, consent v2 + subscribed_services).
    #[default]
    #[serde(rename = "2026")]
    Api2026,
    /// Metering v5 (retired 2026-10), application token.
    #[serde(rename = "v5")]
    V5,
    /// Metering v4 (retired 2023), per-consent tokens.
    #[serde(rename = "v4")]
    V4,
    /// Metering v3, the seed's (retired 2023), per-consent tokens, `rank` readings.
    #[serde(rename = "v3")]
    V3,
}

impl ApiGeneration {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiGeneration::Api2026 => "2026",
            ApiGeneration::V5 => "v5",
            ApiGeneration::V4 => "v4",
            ApiGeneration::V3 => "v3",
        }
    }

    /// Whether tokens are per consent (authorization_code + refresh_token).
    pub fn per_consent_tokens(self) -> bool {
        matches!(self, ApiGeneration::V4 | ApiGeneration::V3)
    }
}

/// The whole configuration, after secrets are resolved and values validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub xmpp: XmppConfig,
    pub enedis: EnedisConfig,
    pub web: WebConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub subscriptions: SubscriptionsConfig,
    pub peers: Vec<PeerConfig>,
}

#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// Full JID with a fixed resource, e.g. `agent@example.org/agent`.
    pub jid: String,
    pub password: Secret,
    /// `host:port` to connect to; `None` means DNS SRV for the JID's domain.
    pub server: Option<String>,
    /// Extra PEM trust root for STARTTLS, beside the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Allow an unencrypted stream (only sensible on loopback, for tests).
    pub allow_plaintext: bool,
    /// Deadline for one peer request, from receipt to answer (default 120).
    pub request_timeout_secs: u64,
    /// Interval between keepalive pings to the server (default 60).
    pub ping_interval_secs: u64,
    /// Deadline for the first session before the log says loudly that it is not up (default 30).
    pub first_session_deadline_secs: u64,
}

#[derive(Debug, Clone)]
pub struct EnedisConfig {
    pub api: ApiGeneration,
    /// Base of the data and token endpoints (default follows `api`).
    pub base_url: String,
    /// Base of the consumer-facing consent pages (default follows `api`).
    pub authorize_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The redirect URI registered at Enedis (our `/redirect`).
    pub redirect_uri: String,
    /// Sandbox mode: enables `test_client` on the consent page.
    pub sandbox: bool,
    /// Upstream calls per second for the whole application (default 5).
    pub calls_per_second: u32,
    /// Upstream calls per hour for the whole application (default 1000 for 2026, 10000 otherwise).
    pub calls_per_hour: u32,
    /// TCP connect timeout (default 5).
    pub connect_timeout_secs: u64,
    /// Total timeout of one HTTP call (default 30).
    pub request_timeout_secs: u64,
    /// Retries of a call after a 5xx, `technical_error` or connection failure (default 3).
    pub max_retries: u32,
    /// Longest wait for the quota before giving up on a request (default 60).
    pub quota_wait_secs: u64,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Address the consent web server binds.
    pub listen: std::net::SocketAddr,
    /// Public URL of the web server, as consumers reach it (no trailing slash).
    pub public_url: String,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite database file.
    pub path: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `quoalise_agent=debug` (default `info`).
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct SubscriptionsConfig {
    /// Paris local time from which yesterday's data is expected (default 08:00).
    pub publish_time: jiff::civil::Time,
}

/// One allowed peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Bare JID, normalised (RFC 7622).
    pub jid: String,
    /// PRMs this peer may read without a consent of its own.
    pub usage_points: Vec<crate::quoalise::Prm>,
    /// Where the consent flow may send this peer's consumers back.
    pub redirect_uris: Vec<url::Url>,
}

//! The agent's configuration: a TOML file, overridable by environment variables
//! `QUOALISE_AGENT__<SECTION>__<KEY>`, with secrets given inline or as files.
//!
//! The key names are a contract with operators (see `config/example.toml`).
//! Durations are whole seconds in keys ending in `_secs`.
//!
//! Each section is described ONCE below, with [`section!`](reader::section): a field
//! per key, its doc, its type and how it is read (required, optional, a default, a
//! secret). That one description gives the struct, the list of known keys (for the
//! file and the environment) and the reading code. Adding a key is one line there,
//! plus its documentation in `config/example.toml`.
//!
//! [`Config::load`] reads the file (`tree.rs`) and the environment (`env.rs`),
//! resolves secrets (`secret.rs`) and validates every value (`validate.rs`),
//! collecting EVERY problem (not only the first) so that `quoalise-agent check` can
//! show an operator all of them at once. Each problem names the key and where its
//! value came from (the file or the environment variable). Problems never quote a
//! secret. We read the tree ourselves rather than deserialise it with serde, because
//! serde stops at the first error and cannot say which source a value came from.

mod env;
mod jid;
mod problems;
mod reader;
mod secret;
mod tree;
mod validate;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use jid::{bare_jid, normalize_bare_jid, parse_bare_jid};
pub use problems::{ConfigErrors, Problem};
pub use secret::Secret;

use env::EnvOverrides;
use reader::{
    Reader, Section, boolean, count, key_names, non_empty_string, path, percent, secs, section,
    weight,
};
use validate::{
    api, credential_pem_file, full_jid, host_port, http_base, log_format, log_level, peer_jid,
    pem_file, plaintext_with, prms, publish_time, redirect_uris, registered_redirect_uri,
    scope_names, socket_addr, stanza_bytes,
};

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

    /// Parses the value of `enedis.api`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "2026" => Some(ApiGeneration::Api2026),
            "v5" => Some(ApiGeneration::V5),
            "v4" => Some(ApiGeneration::V4),
            "v3" => Some(ApiGeneration::V3),
            _ => None,
        }
    }

    /// Default `enedis.base_url`: the gateway of this generation, production or sandbox.
    pub fn default_base_url(self, sandbox: bool) -> &'static str {
        match (self, sandbox) {
            (ApiGeneration::Api2026 | ApiGeneration::V5, false) => {
                "https://gw.ext.prod.api.enedis.fr"
            }
            (ApiGeneration::Api2026 | ApiGeneration::V5, true) => {
                "https://gw.ext.prod-sandbox.api.enedis.fr"
            }
            (ApiGeneration::V4 | ApiGeneration::V3, false) => "https://gw.prd.api.enedis.fr",
            (ApiGeneration::V4 | ApiGeneration::V3, true) => "https://gw.hml.api.enedis.fr",
        }
    }

    /// Default `enedis.calls_per_hour`: the 2026 contract quota is ten times smaller.
    pub fn default_calls_per_hour(self) -> u32 {
        match self {
            ApiGeneration::Api2026 => 1000,
            _ => 10000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The whole configuration, after secrets are resolved and values validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub xmpp: XmppConfig,
    /// `[enedis]`, when the agent reads meters through Enedis Data Connect (and
    /// collects consumers' consents). Optional when `[sge]` is there: at least one
    /// of the two is. [`Config::data_connect`] says why it is missing.
    pub enedis: Option<EnedisConfig>,
    pub web: WebConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub subscriptions: SubscriptionsConfig,
    /// `[sge]`, when the agent also reads meters through Enedis SGE.
    pub sge: Option<SgeConfig>,
    pub peers: Vec<PeerConfig>,
}

/// The sections of the file with their keys, in the order they are read; the
/// `[[peers]]` array of tables apart.
const SECTIONS: &[(&str, &[&[&str]])] = &[
    ("xmpp", XmppConfig::KEYS),
    ("enedis", EnedisConfig::KEYS),
    ("web", WebConfig::KEYS),
    ("store", StoreConfig::KEYS),
    ("log", LogConfig::KEYS),
    ("subscriptions", SubscriptionsConfig::KEYS),
    ("sge", SgeConfig::KEYS),
];

section! {
    /// `[xmpp]`: the agent's XMPP account and session.
    pub struct XmppConfig {
        /// Full JID with a fixed resource, e.g. `agent@example.org/agent`.
        pub jid: String = required(full_jid, "the agent's full JID, e.g. agent@example.org/agent"),
        pub password: Secret = secret(),
        /// `host:port` to connect to; `None` means DNS SRV for the JID's domain.
        pub server: Option<String> = optional(host_port),
        /// Extra PEM trust root for STARTTLS, beside the system roots.
        pub ca_file: Option<PathBuf> = optional(pem_file),
        /// Allow an unencrypted stream (only sensible on loopback, for tests).
        pub allow_plaintext: bool = or(plaintext_with(server.as_deref()), false),
        /// Deadline for one peer request, from receipt to answer (default 120).
        pub request_timeout_secs: u64 = or(secs, 120),
        /// Interval between keepalive pings to the server (default 60).
        pub ping_interval_secs: u64 = or(secs, 60),
        /// Deadline for the first session before the log says loudly that it is not up (default 30).
        pub first_session_deadline_secs: u64 = or(secs, 30),
        /// The largest stanza the agent sends, envelope included (default 262,144: Prosody's
        /// and ejabberd's usual c2s limit). Lowered at run time to what the server
        /// advertises (XEP-0478) when it advertises less.
        pub max_stanza_bytes: usize = or(stanza_bytes, DEFAULT_MAX_STANZA_BYTES),
    }
}

/// Default of `xmpp.max_stanza_bytes`: 256 KiB, Prosody's `c2s_stanza_size_limit`.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 262_144;
/// The smallest `xmpp.max_stanza_bytes` accepted: room for an answer's envelope and
/// a useful page of records (Prosody refuses limits under 10,000 too).
pub const MIN_MAX_STANZA_BYTES: usize = 10_000;

section! {
    /// `[enedis]`: the Enedis application and how hard the agent may call it.
    pub struct EnedisConfig {
        pub api: ApiGeneration = or(api, ApiGeneration::default()),
        /// Sandbox mode: enables `test_client` on the consent page.
        pub sandbox: bool = or(boolean, false),
        /// Base of the data and token endpoints (default follows `api`).
        pub base_url: String = or(http_base, api.default_base_url(sandbox).to_owned()),
        /// Base of the consumer-facing consent pages (default follows `api`).
        pub authorize_url: String = or(http_base, DEFAULT_AUTHORIZE_URL.to_owned()),
        pub client_id: String = required(
            non_empty_string,
            "the application's client_id given by Enedis",
        ),
        pub client_secret: Secret = secret(),
        /// The redirect URI registered at Enedis (our `/redirect` unless another is
        /// given: empty while reading, until `web.public_url` is known).
        pub redirect_uri: String = or(registered_redirect_uri, String::new()),
        /// Upstream calls per second for the whole application (default 5).
        pub calls_per_second: u32 = or(count(1), 5),
        /// Upstream calls per hour for the whole application (default 1000 for 2026, 10000 otherwise).
        pub calls_per_hour: u32 = or(count(1), api.default_calls_per_hour()),
        /// TCP connect timeout (default 5).
        pub connect_timeout_secs: u64 = or(secs, 5),
        /// Total timeout of one HTTP call (default 30).
        pub request_timeout_secs: u64 = or(secs, 30),
        /// Retries of a call after a 5xx, `technical_error` or connection failure (default
        /// 3; 0 is meaningful: never retry).
        pub max_retries: u32 = or(count(0), 3),
        /// Longest wait for the quota before giving up on a request (default 60).
        pub quota_wait_secs: u64 = or(secs, DEFAULT_QUOTA_WAIT_SECS),
        /// Share of `calls_per_hour` kept for interactive requests (peers' commands):
        /// background work (subscription pushes) stops at the rest (default 20).
        pub interactive_reserve_percent: u32 = or(percent, DEFAULT_INTERACTIVE_RESERVE_PERCENT),
    }
}

/// Default of `enedis.quota_wait_secs`, and SGE's wait without `[enedis]`.
pub const DEFAULT_QUOTA_WAIT_SECS: u64 = 60;
/// Default of `enedis.interactive_reserve_percent`, and SGE's reserve without `[enedis]`.
pub const DEFAULT_INTERACTIVE_RESERVE_PERCENT: u32 = 20;

/// What an agent without `[enedis]` answers whatever needs Enedis Data Connect
/// (its data, its consent flow, its tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this agent reads no Enedis Data Connect: its configuration has no [enedis] section")]
pub struct NoDataConnect;

section! {
    /// `[web]`: the consent web server.
    pub struct WebConfig {
        /// Address the consent web server binds.
        pub listen: SocketAddr = or(socket_addr, DEFAULT_LISTEN),
        /// Public URL of the web server, as consumers reach it (no trailing slash);
        /// required with `[enedis]` (the Data Connect consent pages), empty for an
        /// agent that reads SGE only.
        pub public_url: String = or(http_base, String::new()),
    }
}

section! {
    /// `[store]`: where the agent keeps its state.
    pub struct StoreConfig {
        /// SQLite database file (unused when `url` is set).
        pub path: PathBuf = or(path, PathBuf::from(DEFAULT_STORE_PATH)),
        /// PostgreSQL instead of SQLite: `postgres://user:password@host:port/db?sslmode=require`,
        /// as `url` or `url_file` (a systemd credential: it may hold a password).
        pub url: Option<Secret> = optional_secret(),
        /// PostgreSQL: extra PEM trust root for the server's certificate (TLS),
        /// beside the system roots.
        pub ca_file: Option<PathBuf> = optional(pem_file),
    }
}

impl StoreConfig {
    /// Where the store is, for messages: the SQLite file, or the PostgreSQL server
    /// and database (never the password).
    pub fn describe(&self) -> String {
        match &self.url {
            Some(url) => postgres_description(url.expose()),
            None => self.path.display().to_string(),
        }
    }
}

/// `postgres://user@host:port/database` for a PostgreSQL URL: never its password
/// nor its other parameters.
pub fn postgres_description(url: &str) -> String {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return "PostgreSQL (store.url)".into();
    };
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

section! {
    /// `[log]`: the log's format and filter.
    pub struct LogConfig {
        pub format: LogFormat = or(log_format, LogFormat::default()),
        /// `tracing` filter directive, e.g. `info` or `quoalise_agent=debug` (default `info`).
        pub level: String = or(log_level, "info".to_owned()),
    }
}

section! {
    /// `[subscriptions]`: when the daily pushes go out.
    pub struct SubscriptionsConfig {
        /// Paris local time from which yesterday's data is expected (default 08:00).
        pub publish_time: jiff::civil::Time = or(
            publish_time,
            jiff::civil::Time::constant(8, 0, 0, 0),
        ),
    }
}

section! {
    /// `[sge]`: Enedis SGE, the B2B SOAP platform for third parties, reached over
    /// mutual TLS. Optional: without it the agent reads only Data Connect; without
    /// `[enedis]`, only SGE.
    pub struct SgeConfig {
        /// Base URL of the SGE web services (default production,
        /// `https://sge-ws.enedis.fr`; homologation is
        /// `https://sge-homologation-ws.enedis.fr`).
        pub endpoint: String = or(http_base, DEFAULT_SGE_ENDPOINT.to_owned()),
        /// The client certificate Enedis registered for the agent (PEM); a relative
        /// name is looked up in `$CREDENTIALS_DIRECTORY` under systemd, as secrets.
        pub certificate_file: PathBuf = required(
            credential_pem_file,
            "the PEM client certificate registered at Enedis for SGE",
        ),
        /// Its private key (PEM), as `key` or `key_file` (a systemd credential).
        pub key: Secret = secret(),
        /// Extra PEM trust root for the SGE server, beside the system roots.
        pub ca_file: Option<PathBuf> = optional(pem_file),
        /// The SGE user's login (`initiateurLogin`, `loginUtilisateur`).
        pub login: String = required(
            non_empty_string,
            "the SGE user's login given by Enedis, usually an e-mail address",
        ),
        /// The contract between the operator and Enedis (`contratId`).
        pub contract_id: String = required(
            non_empty_string,
            "the contratId of the operator's SGE contract with Enedis",
        ),
        /// SGE calls per second (default 1: the homologation pace; production's
        /// is not published).
        pub calls_per_second: u32 = or(count(1), 1),
        /// SGE calls per hour (default 3600).
        pub calls_per_hour: u32 = or(count(1), 3600),
        /// Total timeout of one SOAP call (default 60).
        pub request_timeout_secs: u64 = or(secs, 60),
        /// Retries of a call after a technical fault (SGT5xx) or a connection
        /// failure (default 1; 0: never retry).
        pub max_retries: u32 = or(count(0), 1),
    }
}

/// Default of `sge.endpoint`: SGE's production host since 2024-09-23.
pub const DEFAULT_SGE_ENDPOINT: &str = "https://sge-ws.enedis.fr";

section! {
    /// One allowed peer, a `[[peers]]` entry.
    pub struct PeerConfig {
        /// Bare JID, normalised (RFC 7622).
        pub jid: String = required(peer_jid, "the peer's bare JID, e.g. app@example.org"),
        /// PRMs this peer may read without a consent of its own.
        pub usage_points: Vec<crate::quoalise::Prm> = or(prms, Vec::new()),
        /// Where the consent flow may send this peer's consumers back.
        pub redirect_uris: Vec<url::Url> = or(redirect_uris, Vec::new()),
        /// This peer's share of the Enedis quota against the other peers waiting at
        /// the same time, 1 to 100 (default 1: equal turns).
        pub weight: u32 = or(weight, 1),
        /// At most this many Enedis calls per hour for this peer (default: no cap
        /// of its own, only the application's quota).
        pub calls_per_hour: Option<u32> = optional(count(1)),
        /// The kinds of data this peer may receive, for its grants and its consents
        /// alike (default: every scope but `identity`; `[]`: none).
        pub scopes: crate::quoalise::Scopes = or(
            scope_names,
            crate::quoalise::Scopes::default_for_peers(),
        ),
    }
}

/// Prefix of the environment variables that override the file:
/// `QUOALISE_AGENT__<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "QUOALISE_AGENT__";
/// The directory systemd's `LoadCredential=` fills; relative `*_file` secrets are
/// looked up there when it is set.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// Where the agent looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/quoalise-agent/config.toml";
/// Consumer-facing consent pages, the same host for every API generation.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://mon-compte-particulier.enedis.fr";
/// Default of `web.listen`: loopback (consumers come through `web.public_url`).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
pub const DEFAULT_STORE_PATH: &str = "/var/lib/quoalise-agent/agent.db";

/// The known keys of the section `name`, if it is one.
fn section_keys(name: &str) -> Option<Vec<&'static str>> {
    SECTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, keys)| key_names(keys))
}

fn section_names() -> String {
    let mut names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
    names.push("peers");
    names.join(", ")
}

impl Config {
    /// Loads the file at `path`, applies the `QUOALISE_AGENT__*` environment
    /// variables, resolves secrets and validates everything.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, std::env::vars_os())
    }

    /// [`Config::load`] with an explicit environment (all variables; those without
    /// the prefix are ignored except `CREDENTIALS_DIRECTORY`), so that tests need
    /// not touch the process environment.
    pub fn load_with_env<I, K, V>(path: &Path, env: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let file = path.display().to_string();
        let mut problems = Vec::new();
        let env = EnvOverrides::collect(env, &mut problems);

        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(Problem {
                    key: String::new(),
                    source: file,
                    message: format!("cannot read the configuration file: {e}"),
                });
                return Err(ConfigErrors { problems });
            }
        };
        let mut root = match tree::parse(&text, &file) {
            Ok(root) => root,
            Err(errors) => {
                problems.extend(errors);
                return Err(ConfigErrors { problems });
            }
        };
        env.apply(&mut root);

        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        let mut reader = Reader::new(
            file,
            env.origins,
            base_dir,
            env.credentials_directory,
            problems,
        );
        let config = Config::read(&mut reader, root);
        if reader.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors {
                problems: reader.problems,
            })
        }
    }

    /// Reads every section, then the peers, then reports what is left over.
    fn read(r: &mut Reader, mut root: tree::Map) -> Config {
        let xmpp = r.section(&mut root, "xmpp");
        // Data Connect, SGE or both; neither is a problem naming both sections.
        let (has_enedis, has_sge) = (root.contains_key("enedis"), root.contains_key("sge"));
        if !has_enedis && !has_sge {
            r.problem(
                "",
                "neither [enedis] nor [sge] is configured: the agent reads meters through \
                 Enedis Data Connect ([enedis]: client_id, client_secret), Enedis SGE \
                 ([sge]: certificate_file, key, login, contract_id), or both; give at least one",
            );
        }
        let mut enedis: Option<EnedisConfig> = has_enedis.then(|| r.section(&mut root, "enedis"));
        let web: WebConfig = r.section(&mut root, "web");
        let public_url_reported = r.problems.iter().any(|p| p.key == "web.public_url");
        if has_enedis && web.public_url.is_empty() && !public_url_reported {
            r.problem(
                "web.public_url",
                "missing: the URL consumers reach the web server at, e.g. \
                 https://agent.example.org/dataconnect (the Data Connect consent pages \
                 of [enedis] need it)",
            );
        }
        // Our own redirect endpoint unless another URI was registered at Enedis.
        if let Some(enedis) = &mut enedis
            && enedis.redirect_uri.is_empty()
        {
            enedis.redirect_uri = format!("{}/redirect", web.public_url);
        }
        let store: StoreConfig = r.section(&mut root, "store");
        if let Some(url) = &store.url
            && let Err(why) = validate::postgres_url(url.expose())
        {
            // The URL itself is never quoted: it may hold a password.
            r.problem("store.url", why);
        }
        let log = r.section(&mut root, "log");
        let subscriptions = r.section(&mut root, "subscriptions");
        let sge: Option<SgeConfig> = has_sge.then(|| r.section(&mut root, "sge"));
        if let Some(sge) = &sge {
            let key = sge.key.expose();
            // An empty key was already reported; the key itself is never quoted.
            let looks_like_a_key = key.contains("-----BEGIN") && key.contains("PRIVATE KEY-----");
            if !key.is_empty() && !looks_like_a_key {
                r.problem(
                    "sge.key",
                    "holds no PEM private key (no \"-----BEGIN … PRIVATE KEY-----\" line)",
                );
            }
        }
        let peers = match root.remove("peers") {
            Some(value) => read_peers(r, value),
            None => Vec::new(),
        };
        // The map is sorted: problems come in a stable order.
        for key in root.into_keys() {
            r.problem(
                &key,
                format!(
                    "unknown section or top-level key; the sections are: {}",
                    section_names()
                ),
            );
        }
        Config {
            xmpp,
            enedis,
            web,
            store,
            log,
            subscriptions,
            sge,
            peers,
        }
    }

    /// `[enedis]`, or why this agent has no Enedis Data Connect.
    pub fn data_connect(&self) -> Result<&EnedisConfig, NoDataConnect> {
        self.enedis.as_ref().ok_or(NoDataConnect)
    }

    /// Whether the agent reads Enedis Data Connect (has `[enedis]`).
    pub fn has_data_connect(&self) -> bool {
        self.enedis.is_some()
    }

    /// The longest wait for a quota slot: `enedis.quota_wait_secs`, its default
    /// without `[enedis]` (SGE's client waits as long).
    pub fn quota_wait_secs(&self) -> u64 {
        self.enedis
            .as_ref()
            .map_or(DEFAULT_QUOTA_WAIT_SECS, |e| e.quota_wait_secs)
    }

    /// The share of an hourly quota kept for interactive requests:
    /// `enedis.interactive_reserve_percent`, its default without `[enedis]`.
    pub fn interactive_reserve_percent(&self) -> u32 {
        self.enedis
            .as_ref()
            .map_or(DEFAULT_INTERACTIVE_RESERVE_PERCENT, |e| {
                e.interactive_reserve_percent
            })
    }

    /// The allowed peer with this JID (any resource is ignored; case of localpart
    /// and domain folded), if any.
    pub fn peer(&self, jid: &str) -> Option<&PeerConfig> {
        let bare = normalize_bare_jid(jid).ok()?;
        self.peers.iter().find(|peer| peer.jid == bare)
    }
}

/// The `[[peers]]` array of tables, each entry read as a [`PeerConfig`].
fn read_peers(r: &mut Reader, value: tree::Value) -> Vec<PeerConfig> {
    let mut peers = Vec::new();
    for (i, item) in reader::array(r, "peers", value, "[[peers]] tables")
        .into_iter()
        .enumerate()
    {
        let path = format!("peers[{i}]");
        let entries = match item {
            tree::Value::Table(entries) => entries,
            other => {
                r.problem(
                    &path,
                    format!("expected a [[peers]] table, got {}", other.describe()),
                );
                continue;
            }
        };
        let mut table = reader::Table::new(
            path,
            "a [[peers]] entry".to_owned(),
            key_names(PeerConfig::KEYS),
            entries,
        );
        r.peer_index = i;
        peers.push(PeerConfig::read(r, &mut table));
        r.finish(table);
    }
    peers
}

/// A valid configuration for the library's unit tests: the required keys of each
/// section and one peer, then the `extra` tables the minimal file does not hold
/// (`[log]`, `[store]`…), then the `env` overrides (`QUOALISE_AGENT__ENEDIS__API`).
#[cfg(test)]
pub(crate) fn for_tests(extra: &str, env: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("config.toml");
    let text = format!(
        r#"
[xmpp]
jid = "agent@example.org/agent"
password = "pw"
[enedis]
client_id = "id"
client_secret = "s"
[web]
public_url = "https://agent.example.org"
{extra}
[[peers]]
jid = "app@example.org"
usage_points = ["22516914714270"]
"#
    );
    std::fs::write(&path, text).expect("a configuration file");
    Config::load_with_env(&path, env.iter().copied()).expect("a valid test configuration")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MINIMAL: &str = r#"
[xmpp]
jid = "agent@example.org/agent"
password = "xmpp-inline-secret"

[enedis]
client_id = "id"
client_secret_file = "client_secret"

[web]
public_url = "https://agent.example.org/dataconnect/"

[[peers]]
jid = "App@Example.ORG"
usage_points = ["22516914714270"]
"#;

    /// A temp dir holding `config.toml` (from `text`) and a 0600 `client_secret`.
    fn setup(text: &str, secret: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        write_secret(&dir.path().join("client_secret"), secret);
        (dir, path)
    }

    fn write_secret(path: &Path, content: &[u8]) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn load(path: &Path, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::load_with_env(
            path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn the_store_is_sqlite_unless_a_postgresql_url_is_given() {
        let (dir, path) = setup(MINIMAL, b"s\n");
        let c = load(&path, &[]).unwrap();
        assert!(c.store.url.is_none());
        assert!(c.store.describe().ends_with("agent.db"));

        // As a credential file, described without its password.
        write_secret(
            &dir.path().join("store_url"),
            b"postgres://agent:pg-secret@db.example.org:5433/quoalise?sslmode=require\n",
        );
        let text = format!("{MINIMAL}\n[store]\nurl_file = \"store_url\"\n");
        std::fs::write(&path, text).unwrap();
        let c = load(&path, &[]).unwrap();
        assert_eq!(
            c.store.describe(),
            "postgres://agent@db.example.org:5433/quoalise"
        );
        assert!(!format!("{c:?}").contains("pg-secret"));

        // Not a PostgreSQL URL, or one without a database: said, never quoted.
        for (url, expected) in [
            (
                "mysql://agent:pg-secret@db/quoalise",
                "expected a PostgreSQL URL",
            ),
            (
                "postgres://agent:pg-secret@db.example.org",
                "names no database",
            ),
        ] {
            let text = format!("{MINIMAL}\n[store]\nurl = \"{url}\"\n");
            std::fs::write(&path, text).unwrap();
            let err = load(&path, &[]).unwrap_err().to_string();
            assert!(err.contains("store.url") && err.contains(expected), "{err}");
            assert!(!err.contains("pg-secret"), "{err}");
        }
        // Both forms at once.
        let text =
            format!("{MINIMAL}\n[store]\nurl = \"postgres://a@b/c\"\nurl_file = \"store_url\"\n");
        std::fs::write(&path, text).unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("both store.url and store.url_file"), "{err}");
    }

    #[test]
    fn the_sge_section_is_optional_and_complete_when_given() {
        let (dir, path) = setup(MINIMAL, b"s\n");
        assert!(load(&path, &[]).unwrap().sge.is_none());

        std::fs::write(
            dir.path().join("sge.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        write_secret(
            &dir.path().join("sge.key"),
            b"-----BEGIN PRIVATE KEY-----\nsge-key-secret\n-----END PRIVATE KEY-----\n",
        );
        let full = format!(
            "{MINIMAL}\n[sge]\ncertificate_file = \"sge.pem\"\nkey_file = \"sge.key\"\n\
             login = \"ops@example.org\"\ncontract_id = \"1234567\"\n"
        );
        std::fs::write(&path, &full).unwrap();
        let sge = load(&path, &[]).unwrap().sge.unwrap();
        assert_eq!(sge.endpoint, DEFAULT_SGE_ENDPOINT);
        assert_eq!(sge.certificate_file, dir.path().join("sge.pem"));
        assert_eq!((sge.calls_per_second, sge.max_retries), (1, 1));
        assert!(!format!("{sge:?}").contains("sge-key-secret"));

        // Under systemd both come as credentials: relative names are looked up in
        // $CREDENTIALS_DIRECTORY.
        let credentials = tempfile::tempdir().unwrap();
        write_secret(&credentials.path().join("client_secret"), b"s\n");
        for file in ["sge.pem", "sge.key"] {
            std::fs::rename(dir.path().join(file), credentials.path().join(file)).unwrap();
        }
        let creds = credentials.path().display().to_string();
        let sge = load(&path, &[("CREDENTIALS_DIRECTORY", creds.as_str())])
            .unwrap()
            .sge
            .unwrap();
        assert_eq!(sge.certificate_file, credentials.path().join("sge.pem"));
        assert!(sge.key.expose().contains("sge-key-secret"));
        for file in ["sge.pem", "sge.key"] {
            std::fs::rename(credentials.path().join(file), dir.path().join(file)).unwrap();
        }

        // An empty section names every required key, once each.
        std::fs::write(&path, format!("{MINIMAL}\n[sge]\n")).unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        for key in [
            "sge.certificate_file",
            "sge.key",
            "sge.login",
            "sge.contract_id",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }

        // A key file that holds something else is refused without quoting it.
        write_secret(&dir.path().join("sge.key"), b"sge-key-secret\n");
        std::fs::write(&path, &full).unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert!(
            err.contains("sge.key") && err.contains("no PEM private key"),
            "{err}"
        );
        assert!(!err.contains("sge-key-secret"), "{err}");
    }

    /// `MINIMAL` without its `[enedis]` section.
    fn without_enedis() -> String {
        MINIMAL.replace(
            "[enedis]\nclient_id = \"id\"\nclient_secret_file = \"client_secret\"\n",
            "",
        )
    }

    #[test]
    fn neither_enedis_nor_sge_is_one_problem_naming_both_sections() {
        let text = without_enedis();
        assert!(!text.contains("[enedis]"), "{text}");
        let (_dir, path) = setup(&text, b"s\n");
        let err = load(&path, &[]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let problem = &err.problems[0];
        assert_eq!(problem.key, "", "{err}");
        assert!(problem.source.ends_with("config.toml"), "{err}");
        for words in ["[enedis]", "[sge]", "Data Connect", "SGE", "at least one"] {
            assert!(problem.message.contains(words), "{words} in {err}");
        }
    }

    #[test]
    fn sge_alone_loads_without_enedis() {
        let (dir, path) = setup(&without_enedis(), b"s\n");
        std::fs::write(
            dir.path().join("sge.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        write_secret(
            &dir.path().join("sge.key"),
            b"-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n",
        );
        let text = format!(
            "{}\n[sge]\ncertificate_file = \"sge.pem\"\nkey_file = \"sge.key\"\n\
             login = \"ops@example.org\"\ncontract_id = \"1234567\"\n",
            without_enedis()
        );
        std::fs::write(&path, text).unwrap();
        let config = load(&path, &[]).unwrap();
        assert!(config.enedis.is_none());
        assert!(!config.has_data_connect());
        assert_eq!(config.sge.as_ref().unwrap().login, "ops@example.org");
        assert_eq!(
            config.data_connect().unwrap_err().to_string(),
            "this agent reads no Enedis Data Connect: its configuration has no [enedis] section"
        );
        // SGE's quota falls back on the defaults of the keys it shares with [enedis].
        assert_eq!(config.quota_wait_secs(), DEFAULT_QUOTA_WAIT_SECS);
        assert_eq!(
            config.interactive_reserve_percent(),
            DEFAULT_INTERACTIVE_RESERVE_PERCENT
        );

        // An [enedis] key in the environment brings the section back, whole:
        // its required keys are then asked for.
        let err = load(&path, &[("QUOALISE_AGENT__ENEDIS__CLIENT_ID", "id")]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "enedis.client_secret", "{err}");

        // Without Data Connect there are no consent pages: no public URL needed.
        let text = std::fs::read_to_string(&path).unwrap();
        let no_url: String = text
            .lines()
            .filter(|l| !l.starts_with("public_url"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!no_url.contains("public_url"), "{no_url}");
        std::fs::write(&path, &no_url).unwrap();
        assert_eq!(load(&path, &[]).unwrap().web.public_url, "");
        // With Data Connect it is required, and said once.
        let with_enedis = format!(
            "{no_url}\n[enedis]\nclient_id = \"id\"\nclient_secret_file = \"client_secret\"\n"
        );
        std::fs::write(&path, with_enedis).unwrap();
        let err = load(&path, &[]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "web.public_url", "{err}");
        assert!(err.problems[0].message.starts_with("missing: "), "{err}");
    }

    #[test]
    fn debug_of_config_never_shows_a_secret() {
        let (_dir, path) = setup(MINIMAL, b"client-file-secret\n");
        let config = load(&path, &[]).unwrap();
        assert_eq!(config.xmpp.password.expose(), "xmpp-inline-secret");
        assert_eq!(
            config.data_connect().unwrap().client_secret.expose(),
            "client-file-secret"
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains("xmpp-inline-secret"), "{debug}");
        assert!(!debug.contains("client-file-secret"), "{debug}");
        assert!(debug.contains("password: ***"), "{debug}");
        assert!(debug.contains("client_secret: ***"), "{debug}");
        assert_eq!(format!("{}", config.xmpp.password), "***");
    }

    #[test]
    fn max_stanza_bytes_defaults_to_prosodys_limit_and_refuses_unusable_values() {
        let (_dir, path) = setup(MINIMAL, b"s\n");
        assert_eq!(
            load(&path, &[]).unwrap().xmpp.max_stanza_bytes,
            DEFAULT_MAX_STANZA_BYTES
        );
        let config = load(
            &path,
            &[("QUOALISE_AGENT__XMPP__MAX_STANZA_BYTES", "65536")],
        )
        .unwrap();
        assert_eq!(config.xmpp.max_stanza_bytes, 65_536);
        for bad in ["9999", "0", "-1", "lots"] {
            let err = load(&path, &[("QUOALISE_AGENT__XMPP__MAX_STANZA_BYTES", bad)]).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "xmpp.max_stanza_bytes", "{err}");
            assert!(
                err.problems[0].message.contains("expected an integer"),
                "{err}"
            );
        }
    }

    #[test]
    fn one_trailing_newline_is_trimmed_from_secret_files() {
        for (content, expected) in [
            (&b"s3cret\n"[..], "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret", "s3cret"),
            (b"s3cret\n\n", "s3cret\n"),
            (b" s3cret \n", " s3cret "),
        ] {
            let (_dir, path) = setup(MINIMAL, content);
            let config = load(&path, &[]).unwrap();
            assert_eq!(
                config.data_connect().unwrap().client_secret.expose(),
                expected,
                "{content:?}"
            );
        }
        for content in [&b"\n"[..], b"", b"\r\n"] {
            let (_dir, path) = setup(MINIMAL, content);
            let err = load(&path, &[]).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "enedis.client_secret_file");
            assert!(err.problems[0].message.contains("is empty"), "{err}");
        }
    }

    #[test]
    fn defaults_follow_the_api_generation_and_sandbox() {
        let (_dir, path) = setup(MINIMAL, b"x");
        let c = load(&path, &[]).unwrap();
        assert_eq!(c.data_connect().unwrap().api, ApiGeneration::Api2026);
        assert_eq!(
            c.data_connect().unwrap().base_url,
            "https://gw.ext.prod.api.enedis.fr"
        );
        assert_eq!(
            c.data_connect().unwrap().authorize_url,
            DEFAULT_AUTHORIZE_URL
        );
        assert_eq!(c.data_connect().unwrap().calls_per_hour, 1000);
        assert_eq!(c.data_connect().unwrap().calls_per_second, 5);
        assert_eq!(c.data_connect().unwrap().max_retries, 3);
        assert_eq!(c.xmpp.request_timeout_secs, 120);
        assert!(!c.xmpp.allow_plaintext);
        assert_eq!(c.xmpp.server, None);
        assert_eq!(c.web.listen, "127.0.0.1:8080".parse().unwrap());
        // Trailing slash stripped; default redirect URI built on it.
        assert_eq!(c.web.public_url, "https://agent.example.org/dataconnect");
        assert_eq!(
            c.data_connect().unwrap().redirect_uri,
            "https://agent.example.org/dataconnect/redirect"
        );
        assert_eq!(c.store.path, PathBuf::from(DEFAULT_STORE_PATH));
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        assert_eq!(
            c.subscriptions.publish_time,
            jiff::civil::Time::constant(8, 0, 0, 0)
        );

        let cases = [
            ("v5", "false", "https://gw.ext.prod.api.enedis.fr", 10000),
            (
                "2026",
                "true",
                "https://gw.ext.prod-sandbox.api.enedis.fr",
                1000,
            ),
            ("v4", "false", "https://gw.prd.api.enedis.fr", 10000),
            ("v3", "true", "https://gw.hml.api.enedis.fr", 10000),
        ];
        for (api, sandbox, base_url, per_hour) in cases {
            let c = load(
                &path,
                &[
                    ("QUOALISE_AGENT__ENEDIS__API", api),
                    ("QUOALISE_AGENT__ENEDIS__SANDBOX", sandbox),
                ],
            )
            .unwrap();
            assert_eq!(c.data_connect().unwrap().api.as_str(), api);
            assert_eq!(c.data_connect().unwrap().sandbox, sandbox == "true");
            assert_eq!(
                c.data_connect().unwrap().base_url,
                base_url,
                "{api} {sandbox}"
            );
            assert_eq!(c.data_connect().unwrap().calls_per_hour, per_hour, "{api}");
        }
    }

    #[test]
    fn environment_overrides_scalars_and_keys_with_underscores() {
        let (dir, path) = setup(MINIMAL, b"from-file");
        write_secret(&dir.path().join("other_secret"), b"from-env-file\n");
        let c = load(
            &path,
            &[
                ("QUOALISE_AGENT__ENEDIS__CLIENT_SECRET_FILE", "other_secret"),
                ("QUOALISE_AGENT__XMPP__SERVER", "127.0.0.1:5222"),
                ("QUOALISE_AGENT__XMPP__ALLOW_PLAINTEXT", "true"),
                ("QUOALISE_AGENT__ENEDIS__CALLS_PER_HOUR", "42"),
                ("QUOALISE_AGENT__ENEDIS__BASE_URL", "http://127.0.0.1:9999/"),
                ("QUOALISE_AGENT__STORE__PATH", "db/agent.db"),
                ("QUOALISE_AGENT__LOG__FORMAT", "json"),
                ("UNRELATED", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.data_connect().unwrap().client_secret.expose(),
            "from-env-file"
        );
        assert_eq!(c.xmpp.server.as_deref(), Some("127.0.0.1:5222"));
        assert!(c.xmpp.allow_plaintext);
        assert_eq!(c.data_connect().unwrap().calls_per_hour, 42);
        assert_eq!(c.data_connect().unwrap().base_url, "http://127.0.0.1:9999");
        assert_eq!(c.store.path, dir.path().join("db/agent.db"));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn an_empty_variable_removes_the_key_of_the_file() {
        let (_dir, path) = setup(MINIMAL, b"from-file");
        let c = load(
            &path,
            &[
                ("QUOALISE_AGENT__ENEDIS__CLIENT_SECRET_FILE", ""),
                ("QUOALISE_AGENT__ENEDIS__CLIENT_SECRET", "from-env"),
            ],
        )
        .unwrap();
        assert_eq!(c.data_connect().unwrap().client_secret.expose(), "from-env");

        let err = load(&path, &[("QUOALISE_AGENT__ENEDIS__CLIENT_SECRET_FILE", "")]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(p.key, "enedis.client_secret");
        // Missing from both: the file, and the variable that removed the file's key.
        assert_eq!(
            p.source,
            format!(
                "{} and QUOALISE_AGENT__ENEDIS__CLIENT_SECRET_FILE",
                path.display()
            )
        );
        assert!(p.message.starts_with("missing"), "{p}");
    }

    #[test]
    fn credentials_directory_wins_for_relative_secret_files() {
        let (_dir, path) = setup(MINIMAL, b"next-to-config");
        let creds = tempfile::tempdir().unwrap();
        write_secret(&creds.path().join("client_secret"), b"from-credentials\n");
        let c = load(
            &path,
            &[(CREDENTIALS_DIRECTORY, creds.path().to_str().unwrap())],
        )
        .unwrap();
        assert_eq!(
            c.data_connect().unwrap().client_secret.expose(),
            "from-credentials"
        );
    }

    #[test]
    fn peers_are_found_by_normalised_bare_jid() {
        let (_dir, path) = setup(MINIMAL, b"x");
        let c = load(&path, &[]).unwrap();
        assert_eq!(c.peers[0].jid, "app@example.org");
        assert_eq!(c.peers[0].usage_points[0].as_str(), "22516914714270");
        assert!(c.peer("app@example.org").is_some());
        assert!(c.peer("APP@EXAMPLE.org/phone").is_some());
        assert!(c.peer("app@example.org.").is_some());
        assert!(c.peer("other@example.org").is_none());
        assert!(c.peer("not a jid").is_none());
    }

    #[test]
    fn peer_scopes_default_to_all_but_identity_and_unknown_names_are_refused() {
        use crate::quoalise::{Scope, Scopes};
        let (_dir, path) = setup(MINIMAL, b"x");
        let c = load(&path, &[]).unwrap();
        assert_eq!(c.peers[0].scopes, Scopes::default_for_peers());

        let with = |scopes: &str| {
            let text = MINIMAL.replace(
                "usage_points = [\"22516914714270\"]",
                &format!("usage_points = [\"22516914714270\"]\nscopes = {scopes}"),
            );
            let (dir, path) = setup(&text, b"x");
            (dir, path.clone(), load(&path, &[]))
        };
        let (_dir, _, c) = with("[]");
        assert_eq!(c.unwrap().peers[0].scopes, Scopes::NONE);
        let (_dir, _, c) = with(r#"["daily", "identity"]"#);
        let scopes = c.unwrap().peers[0].scopes;
        assert_eq!(
            scopes.iter().collect::<Vec<_>>(),
            [Scope::Daily, Scope::Identity]
        );

        let (_dir, path, c) = with(r#"["daily", "load-curve", "daily", 3]"#);
        let err = c.unwrap_err();
        let problems: Vec<(&str, &str)> = err
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "peers[0].scopes[1]",
                    "unknown scope \"load-curve\"; the scopes are: load_curve, daily, \
                     max_power, index, contract, identity"
                ),
                ("peers[0].scopes[2]", "scope daily is listed twice"),
                ("peers[0].scopes[3]", "expected a string, got an integer"),
            ]
        );
        assert!(
            err.problems
                .iter()
                .all(|p| p.source == path.display().to_string())
        );
        let (_dir, _, c) = with(r#""daily""#);
        let err = c.unwrap_err();
        assert_eq!(err.problems[0].key, "peers[0].scopes", "{err}");
        assert!(
            err.problems[0]
                .message
                .contains("expected an array of scope names"),
            "{err}"
        );
    }

    #[test]
    fn the_agent_jid_is_stored_normalised() {
        let (_dir, path) = setup(MINIMAL, b"x");
        let c = load(
            &path,
            &[("QUOALISE_AGENT__XMPP__JID", "Agent@Example.ORG./agent")],
        )
        .unwrap();
        assert_eq!(c.xmpp.jid, "agent@example.org/agent");
    }

    /// `config/example.toml` documents every key, set or commented out (`# key = …`),
    /// and no key that does not exist: the description above and the example agree.
    #[test]
    fn the_example_documents_every_key_and_only_known_keys() {
        let example = include_str!("../../config/example.toml");
        let mut documented: Vec<(String, String)> = Vec::new();
        let mut section = String::new();
        for line in example.lines() {
            // An optional section is documented commented out, `# [sge]`.
            let line = line.strip_prefix("# [").map_or(line, |_| &line[2..]);
            if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
                section = name.to_owned();
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let line = line.strip_prefix("# ").unwrap_or(line);
            // A key line parses as TOML on its own; prose that looks like one does not.
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            let is_key = !section.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && toml::de::DeTable::parse(line).is_ok();
            if is_key {
                documented.push((section.clone(), key.to_owned()));
            }
        }
        let mut known: Vec<(String, String)> = Vec::new();
        for (name, keys) in SECTIONS.iter().chain([&("peers", PeerConfig::KEYS)]) {
            for key in key_names(keys) {
                known.push((name.to_string(), key.to_owned()));
            }
        }
        documented.sort();
        known.sort();
        assert_eq!(documented, known);
    }
}

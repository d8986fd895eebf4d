//! The agent's configuration: a TOML file, overridable by environment variables
//! `QUOALISE_AGENT__<SECTION>__<KEY>`, with secrets given inline or as files.
//!
//! The key names are a contract with operators (see `config/example.toml`).
//! Durations are whole seconds in keys ending in `_secs`.
//!
//! [`Config::load`] reads the file and the environment, resolves secrets and
//! validates every value, collecting EVERY problem (not only the first) so that
//! `quoalise-agent check` can show an operator all of them at once. Each problem
//! names the key and where its value came from (the file or the environment
//! variable). Problems never quote a secret.
//!
//! The file is merged with the environment by the `config` crate; we then walk the
//! merged tree by hand against the known keys instead of deserialising it with
//! serde, because serde stops at the first error and cannot say which source a
//! value came from.

mod jid;
mod problems;
mod secret;
mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ::config::{Value, ValueKind};
use serde::Deserialize;
use xmpp_parsers::jid::{FullJid, Jid};

pub use jid::{bare_jid, normalize_bare_jid, parse_bare_jid};
pub use problems::{ConfigErrors, Problem};
pub use secret::Secret;

use jid::{bare_string, strip_root_dot};
use secret::read_secret_file;
use validate::{
    check_host_port, check_http_url, check_pem_file, check_redirect_uri, is_loopback_host_port,
    parse_hh_mm,
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
    /// The largest stanza the agent sends, envelope included (default 262,144: Prosody's
    /// and ejabberd's usual c2s limit). Lowered at run time to what the server
    /// advertises (XEP-0478) when it advertises less.
    pub max_stanza_bytes: usize,
}

/// Default of `xmpp.max_stanza_bytes`: 256 KiB, Prosody's `c2s_stanza_size_limit`.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 262_144;
/// The smallest `xmpp.max_stanza_bytes` accepted: room for an answer's envelope and
/// a useful page of records (Prosody refuses limits under 10,000 too).
pub const MIN_MAX_STANZA_BYTES: usize = 10_000;

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
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_STORE_PATH: &str = "/var/lib/quoalise-agent/agent.db";

/// Longest duration accepted in a `_secs` key: one year. Longer values are surely
/// mistakes, and `Instant + Duration` panics on overflow at run time.
const MAX_SECS: u64 = 365 * 24 * 3600;

const ACCEPTED_APIS: &str = "\"2026\", \"v5\", \"v4\" or \"v3\"";

/// Every section of the file with its keys; `peers` is the array of tables apart.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "xmpp",
        &[
            "jid",
            "password",
            "password_file",
            "server",
            "ca_file",
            "allow_plaintext",
            "request_timeout_secs",
            "ping_interval_secs",
            "first_session_deadline_secs",
            "max_stanza_bytes",
        ],
    ),
    (
        "enedis",
        &[
            "api",
            "base_url",
            "authorize_url",
            "client_id",
            "client_secret",
            "client_secret_file",
            "redirect_uri",
            "sandbox",
            "calls_per_second",
            "calls_per_hour",
            "connect_timeout_secs",
            "request_timeout_secs",
            "max_retries",
            "quota_wait_secs",
        ],
    ),
    ("web", &["listen", "public_url"]),
    ("store", &["path"]),
    ("log", &["format", "level"]),
    ("subscriptions", &["publish_time"]),
];
const PEER_KEYS: &[&str] = &["jid", "usage_points", "redirect_uris"];

fn section_keys(name: &str) -> Option<&'static [&'static str]> {
    SECTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, keys)| *keys)
}

fn section_names() -> String {
    let mut names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
    names.push("peers");
    names.join(", ")
}

impl ApiGeneration {
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

        // Syntax errors are reported from our own parse, with position and message
        // only: the parser's default display quotes the offending line, which may
        // hold a secret.
        let (_, syntax_errors) = toml::de::DeTable::parse_recoverable(&text);
        if !syntax_errors.is_empty() {
            for e in syntax_errors {
                let at = e
                    .span()
                    .map(|span| {
                        let (line, column) = line_column(&text, span.start);
                        format!(" at line {line}, column {column}")
                    })
                    .unwrap_or_default();
                problems.push(Problem {
                    key: String::new(),
                    source: file.clone(),
                    message: format!(
                        "TOML syntax error{at}: {}",
                        e.message().trim().replace('\n', "; ")
                    ),
                });
            }
            return Err(ConfigErrors { problems });
        }

        let env_source = ::config::Environment::default()
            .separator("__")
            .source(Some(
                env.set
                    .iter()
                    .map(|(section, key, value)| (format!("{section}__{key}"), value.clone()))
                    .collect(),
            ));
        let merged = ::config::Config::builder()
            .add_source(::config::File::from_str(&text, ::config::FileFormat::Toml))
            .add_source(env_source)
            .build();
        let mut root = match merged {
            Ok(merged) => match merged.cache.kind {
                ValueKind::Table(table) => table,
                _ => ::config::Map::new(),
            },
            Err(e) => {
                let message = match e {
                    // Already checked above; never display it, it may quote the file.
                    ::config::ConfigError::FileParse { .. } => "TOML syntax error".to_owned(),
                    other => other.to_string(),
                };
                problems.push(Problem {
                    key: String::new(),
                    source: file,
                    message,
                });
                return Err(ConfigErrors { problems });
            }
        };
        // An empty variable removes the key, so that the environment can switch a
        // secret from `key_file` in the file to `key` (or back).
        for (section, key) in &env.unset {
            if let Some(Value {
                kind: ValueKind::Table(table),
                ..
            }) = root.get_mut(section)
            {
                table.remove(key);
            }
        }

        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        let mut walker = Walker {
            file,
            env_origins: env.origins,
            base_dir,
            credentials_directory: env.credentials_directory,
            problems,
        };
        let config = walker.walk(root);
        if walker.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors {
                problems: walker.problems,
            })
        }
    }

    /// The allowed peer with this JID (any resource is ignored; case of localpart
    /// and domain folded), if any.
    pub fn peer(&self, jid: &str) -> Option<&PeerConfig> {
        let bare = normalize_bare_jid(jid).ok()?;
        self.peers.iter().find(|peer| peer.jid == bare)
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The `QUOALISE_AGENT__*` variables, checked and split into `section.key`.
struct EnvOverrides {
    /// (section, key, value) of the non-empty variables.
    set: Vec<(String, String, String)>,
    /// (section, key) of the empty variables: the key is removed from the file's.
    unset: Vec<(String, String)>,
    /// `section.key` → the variable's name, to name it in problems.
    origins: HashMap<String, String>,
    credentials_directory: Option<PathBuf>,
}

impl EnvOverrides {
    fn collect<I, K, V>(env: I, problems: &mut Vec<Problem>) -> EnvOverrides
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut overrides = EnvOverrides {
            set: Vec::new(),
            unset: Vec::new(),
            origins: HashMap::new(),
            credentials_directory: None,
        };
        // Sorted, so that problems come in a stable order.
        let vars: BTreeMap<OsString, OsString> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        for (name, value) in vars {
            if name == CREDENTIALS_DIRECTORY {
                if !value.is_empty() {
                    overrides.credentials_directory = Some(PathBuf::from(value));
                }
                continue;
            }
            let Some(name) = name.to_str() else {
                let lossy = name.to_string_lossy();
                if lossy.starts_with(ENV_PREFIX) {
                    problems.push(Problem {
                        key: String::new(),
                        source: lossy.into_owned(),
                        message: "the variable's name is not valid UTF-8".to_owned(),
                    });
                }
                continue;
            };
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let mut env_problem = |key: String, message: String| {
                problems.push(Problem {
                    key,
                    source: name.to_owned(),
                    message,
                })
            };
            let parts: Vec<&str> = rest.split("__").collect();
            let [section, key] = parts.as_slice() else {
                env_problem(
                    String::new(),
                    format!(
                        "expected a variable named {ENV_PREFIX}<SECTION>__<KEY>, \
                         e.g. {ENV_PREFIX}XMPP__PASSWORD"
                    ),
                );
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if section == "peers" {
                env_problem(
                    "peers".to_owned(),
                    "[[peers]] cannot be set from the environment; list the peers in the \
                     configuration file"
                        .to_owned(),
                );
                continue;
            }
            let Some(known) = section_keys(&section) else {
                env_problem(
                    section,
                    format!("unknown section; the sections are: {}", section_names()),
                );
                continue;
            };
            let dotted = format!("{section}.{key}");
            if !known.contains(&key.as_str()) {
                env_problem(
                    dotted,
                    format!(
                        "unknown key; the keys of [{section}] are: {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            let Ok(value) = value.into_string() else {
                env_problem(dotted, "the value is not valid UTF-8".to_owned());
                continue;
            };
            overrides.origins.insert(dotted, name.to_owned());
            if value.is_empty() {
                overrides.unset.push((section, key));
            } else {
                overrides.set.push((section, key, value));
            }
        }
        overrides
    }
}

/// One table of the merged tree, consumed key by key; what is left is unknown.
struct Table {
    /// The key path of the table: `xmpp`, `peers[2]`.
    path: String,
    /// How to name the table in "unknown key" problems: `[xmpp]`, `a [[peers]] entry`.
    label: String,
    known: &'static [&'static str],
    entries: ::config::Map<String, Value>,
}

impl Table {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.entries.remove(key)
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

fn describe(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "an integer"
        }
        ValueKind::Float(_) => "a float",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "an array",
    }
}

/// Walks the merged tree against the known keys, collecting every problem.
/// Where a value is wrong it records the problem and carries on with a
/// placeholder: the `Config` built is thrown away unless no problem was found.
struct Walker {
    file: String,
    env_origins: HashMap<String, String>,
    /// The configuration file's directory: relative paths are resolved against it.
    base_dir: PathBuf,
    credentials_directory: Option<PathBuf>,
    problems: Vec<Problem>,
}

impl Walker {
    fn source_of(&self, key: &str) -> String {
        self.env_origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.file.clone())
    }

    fn set_by_env(&self, key: &str) -> bool {
        self.env_origins.contains_key(key)
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        let source = self.source_of(key);
        self.problems.push(Problem {
            key: key.to_owned(),
            source,
            message: message.into(),
        });
    }

    /// A problem about several keys at once: names every source involved.
    fn problem_keys(&mut self, key: &str, keys: &[&str], message: impl Into<String>) {
        let mut sources: Vec<String> = Vec::new();
        for k in keys {
            let source = self.source_of(k);
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        self.problems.push(Problem {
            key: key.to_owned(),
            source: sources.join(" and "),
            message: message.into(),
        });
    }

    fn section(&mut self, root: &mut ::config::Map<String, Value>, name: &str) -> Table {
        let known = section_keys(name).unwrap_or(&[]);
        let entries = match root.remove(name) {
            None => ::config::Map::new(),
            Some(Value {
                kind: ValueKind::Table(table),
                ..
            }) => table,
            Some(other) => {
                self.problem(
                    name,
                    format!("expected a table [{name}], got {}", describe(&other.kind)),
                );
                ::config::Map::new()
            }
        };
        Table {
            path: name.to_owned(),
            label: format!("[{name}]"),
            known,
            entries,
        }
    }

    fn finish(&mut self, table: Table) {
        let mut unknown: Vec<String> = table.entries.into_keys().collect();
        unknown.sort();
        for key in unknown {
            let dotted = format!("{}.{key}", table.path);
            self.problem(
                &dotted,
                format!(
                    "unknown key; the keys of {} are: {}",
                    table.label,
                    table.known.join(", ")
                ),
            );
        }
    }

    fn required(&mut self, table: &mut Table, key: &str, what: &str) -> Option<Value> {
        let value = table.take(key);
        if value.is_none() {
            let dotted = table.key(key);
            self.problem(&dotted, format!("missing: {what}"));
        }
        value
    }

    fn string(&mut self, key: &str, value: Value) -> Option<String> {
        match value.kind {
            ValueKind::String(s) => Some(s),
            other => {
                self.problem(key, format!("expected a string, got {}", describe(&other)));
                None
            }
        }
    }

    fn non_empty_string(&mut self, key: &str, value: Value) -> Option<String> {
        let s = self.string(key, value)?;
        if s.trim().is_empty() {
            self.problem(key, "is empty; expected a value");
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, key: &str, value: Value) -> Option<bool> {
        match value.kind {
            ValueKind::Boolean(b) => Some(b),
            // The environment only has strings.
            ValueKind::String(s) if self.set_by_env(key) => match s.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => {
                    self.problem(key, format!("expected true or false, got {s:?}"));
                    None
                }
            },
            other => {
                self.problem(
                    key,
                    format!(
                        "expected true or false (without quotes), got {}",
                        describe(&other)
                    ),
                );
                None
            }
        }
    }

    fn integer(&mut self, key: &str, value: Value, min: u64, max: u64) -> Option<u64> {
        let n: i128 = match value.kind {
            ValueKind::I64(n) => n.into(),
            ValueKind::U64(n) => n.into(),
            ValueKind::I128(n) => n,
            ValueKind::String(s) if self.set_by_env(key) => match s.trim().parse::<i128>() {
                Ok(n) => n,
                Err(_) => {
                    self.problem(key, format!("expected an integer, got {s:?}"));
                    return None;
                }
            },
            other => {
                self.problem(
                    key,
                    format!(
                        "expected an integer (without quotes), got {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        if n < i128::from(min) || n > i128::from(max) {
            self.problem(
                key,
                format!("expected an integer from {min} to {max}, got {n}"),
            );
            return None;
        }
        u64::try_from(n).ok()
    }

    fn count_u32(&mut self, table: &mut Table, key: &str, min: u64, default: u32) -> u32 {
        let dotted = table.key(key);
        table
            .take(key)
            .and_then(|v| self.integer(&dotted, v, min, u32::MAX.into()))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    }

    fn secs(&mut self, table: &mut Table, key: &str, default: u64) -> u64 {
        let dotted = table.key(key);
        table
            .take(key)
            .and_then(|v| self.integer(&dotted, v, 1, MAX_SECS))
            .unwrap_or(default)
    }

    fn array(&mut self, key: &str, value: Value, what: &str) -> Vec<Value> {
        match value.kind {
            ValueKind::Array(items) => items,
            other => {
                self.problem(key, format!("expected {what}, got {}", describe(&other)));
                Vec::new()
            }
        }
    }

    /// A secret given as `name = "…"` or `name_file = "…"`, exactly one of them.
    fn secret(&mut self, table: &mut Table, name: &str) -> Secret {
        let file_name = format!("{name}_file");
        let key = table.key(name);
        let file_key = table.key(&file_name);
        let inline = table.take(name);
        let file = table.take(&file_name);
        match (inline, file) {
            (Some(_), Some(_)) => self.problem_keys(
                &key,
                &[&key, &file_key],
                format!("both {key} and {file_key} are set; keep only one"),
            ),
            (None, None) => self.problem_keys(
                &key,
                &[&key, &file_key],
                format!(
                    "missing: set {key} = \"…\" or {file_key} = \"<file>\" (a relative file \
                     name is looked up in $CREDENTIALS_DIRECTORY when set, otherwise next to \
                     the configuration file)"
                ),
            ),
            // The value itself is never quoted in a problem.
            (Some(value), None) => match value.kind {
                ValueKind::String(s) if s.is_empty() => {
                    self.problem(&key, "is empty; expected the secret")
                }
                ValueKind::String(s) => return Secret::new(s),
                other => self.problem(&key, format!("expected a string, got {}", describe(&other))),
            },
            (None, Some(value)) => {
                if let Some(file) = self.non_empty_string(&file_key, value) {
                    let path = self.secret_path(&file);
                    match read_secret_file(&path) {
                        Ok(secret) => return Secret::new(secret),
                        Err(message) => self.problem(&file_key, message),
                    }
                }
            }
        }
        Secret::new(String::new())
    }

    fn secret_path(&self, name: &str) -> PathBuf {
        let path = Path::new(name);
        if path.is_absolute() {
            path.to_path_buf()
        } else if let Some(dir) = &self.credentials_directory {
            dir.join(path)
        } else {
            self.base_dir.join(path)
        }
    }

    /// A non-secret path; a relative one is taken from the configuration file's directory.
    fn path(&self, name: &str) -> PathBuf {
        let path = Path::new(name);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// An http(s) base URL, returned without trailing slashes.
    fn base_url(&mut self, key: &str, value: Value) -> Option<String> {
        let s = self.non_empty_string(key, value)?;
        match check_http_url(&s) {
            Ok(url) if url.query().is_some() || url.fragment().is_some() => {
                self.problem(
                    key,
                    format!("expected a base URL without query or fragment, got {s:?}"),
                );
                None
            }
            Ok(_) => Some(s.trim_end_matches('/').to_owned()),
            Err(e) => {
                self.problem(key, format!("{e}, got {s:?}"));
                None
            }
        }
    }

    fn walk(&mut self, mut root: ::config::Map<String, Value>) -> Config {
        let mut table = self.section(&mut root, "xmpp");
        let xmpp = self.xmpp(&mut table);
        self.finish(table);

        let mut table = self.section(&mut root, "enedis");
        let (mut enedis, redirect_uri) = self.enedis(&mut table);
        self.finish(table);

        let mut table = self.section(&mut root, "web");
        let web = self.web(&mut table);
        self.finish(table);
        // Our own redirect endpoint unless another URI was registered at Enedis.
        enedis.redirect_uri =
            redirect_uri.unwrap_or_else(|| format!("{}/redirect", web.public_url));

        let mut table = self.section(&mut root, "store");
        let store = self.store(&mut table);
        self.finish(table);

        let mut table = self.section(&mut root, "log");
        let log = self.log(&mut table);
        self.finish(table);

        let mut table = self.section(&mut root, "subscriptions");
        let subscriptions = self.subscriptions(&mut table);
        self.finish(table);

        let peers = match root.remove("peers") {
            Some(value) => self.peers(value),
            None => Vec::new(),
        };

        let mut unknown: Vec<String> = root.into_keys().collect();
        unknown.sort();
        for key in unknown {
            self.problem(
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
            peers,
        }
    }

    fn xmpp(&mut self, t: &mut Table) -> XmppConfig {
        let key = t.key("jid");
        let jid = self
            .required(
                t,
                "jid",
                "the agent's full JID, e.g. agent@example.org/agent",
            )
            .and_then(|v| self.non_empty_string(&key, v))
            .and_then(|s| match FullJid::new(&strip_root_dot(&s)) {
                Ok(jid) if jid.node().is_none() => {
                    self.problem(
                        &key,
                        format!(
                            "expected a full JID user@domain/resource, e.g. \
                             agent@example.org/agent; {s:?} has no user part"
                        ),
                    );
                    None
                }
                Ok(jid) => Some(jid.to_string()),
                Err(e) => {
                    self.problem(
                        &key,
                        format!(
                            "expected a full JID with a resource, e.g. agent@example.org/agent; \
                             {s:?}: {e}"
                        ),
                    );
                    None
                }
            })
            .unwrap_or_default();

        let password = self.secret(t, "password");

        let key = t.key("server");
        let server = t
            .take("server")
            .and_then(|v| self.non_empty_string(&key, v))
            .and_then(|s| match check_host_port(&s) {
                Ok(()) => Some(s),
                Err(e) => {
                    self.problem(&key, format!("{e}, got {s:?}"));
                    None
                }
            });

        let key = t.key("ca_file");
        let ca_file = t
            .take("ca_file")
            .and_then(|v| self.non_empty_string(&key, v))
            .and_then(|s| {
                let path = self.path(&s);
                match check_pem_file(&path) {
                    Ok(()) => Some(path),
                    Err(e) => {
                        self.problem(&key, e);
                        None
                    }
                }
            });

        let key = t.key("allow_plaintext");
        let allow_plaintext = t
            .take("allow_plaintext")
            .and_then(|v| self.boolean(&key, v))
            .unwrap_or(false);
        if allow_plaintext && !server.as_deref().is_some_and(is_loopback_host_port) {
            self.problem_keys(
                &key,
                &[&key, &t.key("server")],
                "true is only allowed with xmpp.server on loopback (127.0.0.1, [::1] or \
                 localhost): elsewhere the password would cross the network in clear",
            );
        }

        XmppConfig {
            jid,
            password,
            server,
            ca_file,
            allow_plaintext,
            request_timeout_secs: self.secs(t, "request_timeout_secs", 120),
            ping_interval_secs: self.secs(t, "ping_interval_secs", 60),
            first_session_deadline_secs: self.secs(t, "first_session_deadline_secs", 30),
            max_stanza_bytes: self.max_stanza_bytes(t),
        }
    }

    fn max_stanza_bytes(&mut self, t: &mut Table) -> usize {
        let key = t.key("max_stanza_bytes");
        t.take("max_stanza_bytes")
            .and_then(|v| {
                self.integer(
                    &key,
                    v,
                    MIN_MAX_STANZA_BYTES as u64,
                    // Above what any server accepts by default; a bound keeps the
                    // arithmetic on sizes far from overflow.
                    64 * 1024 * 1024,
                )
            })
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_STANZA_BYTES)
    }

    /// The Enedis section, and `redirect_uri` if given (its default needs `[web]`).
    fn enedis(&mut self, t: &mut Table) -> (EnedisConfig, Option<String>) {
        let key = t.key("api");
        let api = t
            .take("api")
            .and_then(|v| match v.kind {
                ValueKind::String(ref s) => match ApiGeneration::parse(s) {
                    Some(api) => Some(api),
                    None => {
                        self.problem(
                            &key,
                            format!("unknown API generation {s:?}; accepted: {ACCEPTED_APIS}"),
                        );
                        None
                    }
                },
                // `api = 2026` without quotes means the same.
                ValueKind::I64(2026) => Some(ApiGeneration::Api2026),
                ref other => {
                    self.problem(
                        &key,
                        format!("expected one of {ACCEPTED_APIS}, got {}", describe(other)),
                    );
                    None
                }
            })
            .unwrap_or_default();

        let key = t.key("sandbox");
        let sandbox = t
            .take("sandbox")
            .and_then(|v| self.boolean(&key, v))
            .unwrap_or(false);

        let key = t.key("base_url");
        let base_url = t
            .take("base_url")
            .and_then(|v| self.base_url(&key, v))
            .unwrap_or_else(|| api.default_base_url(sandbox).to_owned());
        let key = t.key("authorize_url");
        let authorize_url = t
            .take("authorize_url")
            .and_then(|v| self.base_url(&key, v))
            .unwrap_or_else(|| DEFAULT_AUTHORIZE_URL.to_owned());

        let key = t.key("client_id");
        let client_id = self
            .required(
                t,
                "client_id",
                "the application's client_id given by Enedis",
            )
            .and_then(|v| self.non_empty_string(&key, v))
            .unwrap_or_default();
        let client_secret = self.secret(t, "client_secret");

        let key = t.key("redirect_uri");
        let redirect_uri = t
            .take("redirect_uri")
            .and_then(|v| self.non_empty_string(&key, v))
            .and_then(|s| match check_http_url(&s) {
                Ok(url) if url.fragment().is_some() => {
                    self.problem(
                        &key,
                        format!("a redirect URI has no #fragment (RFC 6749), got {s:?}"),
                    );
                    None
                }
                Ok(_) => Some(s),
                Err(e) => {
                    self.problem(&key, format!("{e}, got {s:?}"));
                    None
                }
            });

        let enedis = EnedisConfig {
            api,
            base_url,
            authorize_url,
            client_id,
            client_secret,
            redirect_uri: String::new(),
            sandbox,
            calls_per_second: self.count_u32(t, "calls_per_second", 1, 5),
            calls_per_hour: self.count_u32(t, "calls_per_hour", 1, api.default_calls_per_hour()),
            connect_timeout_secs: self.secs(t, "connect_timeout_secs", 5),
            request_timeout_secs: self.secs(t, "request_timeout_secs", 30),
            // 0 is meaningful here: never retry.
            max_retries: self.count_u32(t, "max_retries", 0, 3),
            quota_wait_secs: self.secs(t, "quota_wait_secs", 60),
        };
        (enedis, redirect_uri)
    }

    fn web(&mut self, t: &mut Table) -> WebConfig {
        let key = t.key("listen");
        let listen = t
            .take("listen")
            .and_then(|v| self.non_empty_string(&key, v))
            .and_then(|s| match s.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        &key,
                        format!(
                            "expected an IP address and port, e.g. 127.0.0.1:8080 or \
                             [::1]:8080, got {s:?}"
                        ),
                    );
                    None
                }
            })
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let key = t.key("public_url");
        let public_url = self
            .required(
                t,
                "public_url",
                "the URL consumers reach the web server at, e.g. \
                 https://agent.example.org/dataconnect",
            )
            .and_then(|v| self.base_url(&key, v))
            .unwrap_or_default();
        WebConfig { listen, public_url }
    }

    fn store(&mut self, t: &mut Table) -> StoreConfig {
        let key = t.key("path");
        let path = t
            .take("path")
            .and_then(|v| self.non_empty_string(&key, v))
            .map(|s| self.path(&s))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
        StoreConfig { path }
    }

    fn log(&mut self, t: &mut Table) -> LogConfig {
        let key = t.key("format");
        let format = t
            .take("format")
            .and_then(|v| self.string(&key, v))
            .and_then(|s| match s.as_str() {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => {
                    self.problem(&key, format!("expected \"text\" or \"json\", got {s:?}"));
                    None
                }
            })
            .unwrap_or_default();
        let key = t.key("level");
        let level = t
            .take("level")
            .and_then(|v| self.non_empty_string(&key, v))
            .and_then(
                |s| match tracing_subscriber::EnvFilter::builder().parse(&s) {
                    Ok(_) => Some(s),
                    Err(e) => {
                        self.problem(
                            &key,
                            format!(
                                "expected a tracing filter such as \"info\" or \
                                 \"info,quoalise_agent=debug\", got {s:?}: {e}"
                            ),
                        );
                        None
                    }
                },
            )
            .unwrap_or_else(|| "info".to_owned());
        LogConfig { format, level }
    }

    fn subscriptions(&mut self, t: &mut Table) -> SubscriptionsConfig {
        let key = t.key("publish_time");
        let publish_time = t
            .take("publish_time")
            .and_then(|v| self.string(&key, v))
            .and_then(|s| match parse_hh_mm(&s) {
                Some(time) => Some(time),
                None => {
                    self.problem(
                        &key,
                        format!("expected a time \"HH:MM\" (Paris), e.g. \"08:00\", got {s:?}"),
                    );
                    None
                }
            })
            .unwrap_or(jiff::civil::Time::constant(8, 0, 0, 0));
        SubscriptionsConfig { publish_time }
    }

    fn peers(&mut self, value: Value) -> Vec<PeerConfig> {
        let items = self.array("peers", value, "[[peers]] tables");
        let mut peers = Vec::new();
        // Normalised JID → index of the first peer with it.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("peers[{i}]");
            let entries = match item.kind {
                ValueKind::Table(entries) => entries,
                other => {
                    self.problem(
                        &path,
                        format!("expected a [[peers]] table, got {}", describe(&other)),
                    );
                    continue;
                }
            };
            let mut t = Table {
                path: path.clone(),
                label: "a [[peers]] entry".to_owned(),
                known: PEER_KEYS,
                entries,
            };
            let key = t.key("jid");
            let jid = self
                .required(&mut t, "jid", "the peer's bare JID, e.g. app@example.org")
                .and_then(|v| self.non_empty_string(&key, v))
                .and_then(|s| match Jid::new(&s) {
                    Ok(jid) if jid.resource().is_some() => {
                        self.problem(
                            &key,
                            format!(
                                "expected a bare JID without /resource (peers are allowed \
                                 whatever resource they connect from), e.g. {:?}, got {s:?}",
                                bare_string(&jid)
                            ),
                        );
                        None
                    }
                    Ok(jid) => Some(bare_string(&jid)),
                    Err(e) => {
                        self.problem(
                            &key,
                            format!("expected a bare JID, e.g. app@example.org; {s:?}: {e}"),
                        );
                        None
                    }
                })
                .and_then(|jid| match seen.get(&jid) {
                    Some(first) => {
                        self.problem(
                            &key,
                            format!(
                                "{jid} is already listed as peers[{first}].jid (JIDs are \
                                 compared with localpart and domain case-folded); list each \
                                 peer once"
                            ),
                        );
                        None
                    }
                    None => {
                        seen.insert(jid.clone(), i);
                        Some(jid)
                    }
                })
                .unwrap_or_default();

            let key = t.key("usage_points");
            let values = t
                .take("usage_points")
                .map(|v| self.array(&key, v, "an array of 14-digit PRMs"))
                .unwrap_or_default();
            let mut usage_points = Vec::new();
            let mut prms = HashSet::new();
            for (k, value) in values.into_iter().enumerate() {
                let key = format!("{path}.usage_points[{k}]");
                let Some(s) = self.string(&key, value) else {
                    continue;
                };
                match s.parse::<crate::quoalise::Prm>() {
                    Ok(prm) if !prms.insert(prm) => {
                        self.problem(&key, format!("PRM {prm} is listed twice"))
                    }
                    Ok(prm) => usage_points.push(prm),
                    Err(e) => self.problem(&key, format!("{e}, got {s:?}")),
                }
            }

            let key = t.key("redirect_uris");
            let values = t
                .take("redirect_uris")
                .map(|v| self.array(&key, v, "an array of https URLs"))
                .unwrap_or_default();
            let mut redirect_uris = Vec::new();
            for (k, value) in values.into_iter().enumerate() {
                let key = format!("{path}.redirect_uris[{k}]");
                let Some(s) = self.string(&key, value) else {
                    continue;
                };
                match check_redirect_uri(&s) {
                    Ok(url) => redirect_uris.push(url),
                    Err(e) => self.problem(&key, format!("{e}, got {s:?}")),
                }
            }

            self.finish(t);
            peers.push(PeerConfig {
                jid,
                usage_points,
                redirect_uris,
            });
        }
        peers
    }
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
    fn debug_of_config_never_shows_a_secret() {
        let (_dir, path) = setup(MINIMAL, b"client-file-secret\n");
        let config = load(&path, &[]).unwrap();
        assert_eq!(config.xmpp.password.expose(), "xmpp-inline-secret");
        assert_eq!(config.enedis.client_secret.expose(), "client-file-secret");
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
                config.enedis.client_secret.expose(),
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
        assert_eq!(c.enedis.api, ApiGeneration::Api2026);
        assert_eq!(c.enedis.base_url, "https://gw.ext.prod.api.enedis.fr");
        assert_eq!(c.enedis.authorize_url, DEFAULT_AUTHORIZE_URL);
        assert_eq!(c.enedis.calls_per_hour, 1000);
        assert_eq!(c.enedis.calls_per_second, 5);
        assert_eq!(c.enedis.max_retries, 3);
        assert_eq!(c.xmpp.request_timeout_secs, 120);
        assert!(!c.xmpp.allow_plaintext);
        assert_eq!(c.xmpp.server, None);
        assert_eq!(c.web.listen, "127.0.0.1:8080".parse().unwrap());
        // Trailing slash stripped; default redirect URI built on it.
        assert_eq!(c.web.public_url, "https://agent.example.org/dataconnect");
        assert_eq!(
            c.enedis.redirect_uri,
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
            assert_eq!(c.enedis.api.as_str(), api);
            assert_eq!(c.enedis.sandbox, sandbox == "true");
            assert_eq!(c.enedis.base_url, base_url, "{api} {sandbox}");
            assert_eq!(c.enedis.calls_per_hour, per_hour, "{api}");
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
        assert_eq!(c.enedis.client_secret.expose(), "from-env-file");
        assert_eq!(c.xmpp.server.as_deref(), Some("127.0.0.1:5222"));
        assert!(c.xmpp.allow_plaintext);
        assert_eq!(c.enedis.calls_per_hour, 42);
        assert_eq!(c.enedis.base_url, "http://127.0.0.1:9999");
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
        assert_eq!(c.enedis.client_secret.expose(), "from-env");

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
        assert_eq!(c.enedis.client_secret.expose(), "from-credentials");
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
    fn the_agent_jid_is_stored_normalised() {
        let (_dir, path) = setup(MINIMAL, b"x");
        let c = load(
            &path,
            &[("QUOALISE_AGENT__XMPP__JID", "Agent@Example.ORG./agent")],
        )
        .unwrap();
        assert_eq!(c.xmpp.jid, "agent@example.org/agent");
    }
}

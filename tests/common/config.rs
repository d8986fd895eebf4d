//! The agent's configuration file for the tests and the benchmarks, written in
//! one place: [`AgentConfig::new`] is the minimal valid configuration (`[xmpp]`,
//! `[enedis]`, `[web]`, `[store]` in the config's directory, both secrets in
//! files beside it), and setters point it at a test's Prosody, simulator, web
//! port and peers, or change any other key by its dotted name. [`AgentConfig::write`]
//! writes `config.toml` and the secret files (mode 0600, trailing newline) into a
//! directory. It is for valid configurations: a test about a malformed file keeps
//! that file's literal text.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The value of `xmpp.password_file`'s file unless told otherwise.
pub const XMPP_PASSWORD: &str = "xmpp-password-value";
/// The value of `enedis.client_secret_file`'s file unless told otherwise.
pub const CLIENT_SECRET: &str = "client-secret-value";

/// A TOML value as the configuration uses them.
#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<String>),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Str(s) => quote(s),
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Strs(items) => {
                let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Str(s.clone())
    }
}

impl From<&Path> for Value {
    fn from(p: &Path) -> Value {
        Value::Str(p.display().to_string())
    }
}

impl From<&PathBuf> for Value {
    fn from(p: &PathBuf) -> Value {
        Value::from(p.as_path())
    }
}

impl From<PathBuf> for Value {
    fn from(p: PathBuf) -> Value {
        Value::from(p.as_path())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Int(i64::try_from(n).expect("a TOML integer"))
            }
        }
    )*};
}
int_value!(u16, u32, u64, usize, i32, i64);

impl From<&[&str]> for Value {
    fn from(items: &[&str]) -> Value {
        Value::Strs(items.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl<const N: usize> From<&[&str; N]> for Value {
    fn from(items: &[&str; N]) -> Value {
        Value::from(&items[..])
    }
}

impl From<Vec<String>> for Value {
    fn from(items: Vec<String>) -> Value {
        Value::Strs(items)
    }
}

/// Keys of one table, in the order they were first set.
#[derive(Debug, Clone, Default)]
struct Table(Vec<(String, Value)>);

impl Table {
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn render(&self, out: &mut String) {
        for (key, value) in &self.0 {
            out.push_str(&format!("{key} = {}\n", value.render()));
        }
    }
}

/// A secret written beside the configuration, in the file its key names.
#[derive(Debug, Clone)]
struct SecretFile {
    /// The dotted `*_file` key (`xmpp.password_file`).
    key: &'static str,
    /// The file name the key names by default, relative to the config's directory.
    file: &'static str,
    value: String,
}

/// The agent's `config.toml`, built from the minimal valid one.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `[xmpp]`, `[enedis]`, `[web]`, `[store]`, `[log]`… in this order.
    tables: Vec<(String, Table)>,
    /// `[[peers]]`, in order.
    peers: Vec<Table>,
    secrets: Vec<SecretFile>,
    /// A first comment line saying who wrote the file.
    comment: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig::new()
    }
}

impl AgentConfig {
    /// The minimal valid configuration: an agent JID, its password in
    /// `xmpp_password`, a server, an Enedis application whose secret is in
    /// `enedis_client_secret`, a public URL, the store `agent.db` beside the file.
    pub fn new() -> AgentConfig {
        let mut config = AgentConfig {
            tables: Vec::new(),
            peers: Vec::new(),
            secrets: vec![
                SecretFile {
                    key: "xmpp.password_file",
                    file: "xmpp_password",
                    value: XMPP_PASSWORD.to_owned(),
                },
                SecretFile {
                    key: "enedis.client_secret_file",
                    file: "enedis_client_secret",
                    value: CLIENT_SECRET.to_owned(),
                },
            ],
            comment: None,
        };
        config = config
            .set("xmpp.jid", "agent@example.org/agent")
            .set("xmpp.password_file", "xmpp_password")
            .set("xmpp.server", "127.0.0.1:5222")
            .set("enedis.client_id", "client-id")
            .set("enedis.client_secret_file", "enedis_client_secret")
            .set("web.public_url", "https://agent.example.org/dataconnect")
            .set("store.path", "agent.db");
        config
    }

    /// Sets `section.key` (`"enedis.api"`), in place if it is there, else last
    /// in its table (the table last in the file if it is new).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> AgentConfig {
        let (section, name) = split(key);
        let value = value.into();
        match self.tables.iter_mut().find(|(s, _)| s == section) {
            Some((_, table)) => table.set(name, value),
            None => {
                let mut table = Table::default();
                table.set(name, value);
                self.tables.push((section.to_owned(), table));
            }
        }
        self
    }

    /// Removes `section.key`.
    pub fn unset(mut self, key: &str) -> AgentConfig {
        let (section, name) = split(key);
        if let Some((_, table)) = self.tables.iter_mut().find(|(s, _)| s == section) {
            table.0.retain(|(k, _)| k != name);
        }
        self
    }

    /// Removes a whole table (`"enedis"`).
    pub fn without(mut self, section: &str) -> AgentConfig {
        self.tables.retain(|(s, _)| s != section);
        self
    }

    /// The value of `section.key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let (section, name) = split(key);
        self.tables
            .iter()
            .find(|(s, _)| s == section)
            .and_then(|(_, t)| t.get(name))
    }

    /// A comment on the file's first line.
    pub fn comment(mut self, text: &str) -> AgentConfig {
        self.comment = Some(text.to_owned());
        self
    }

    /// The agent's XMPP password, written to `xmpp_password`.
    pub fn xmpp_password(mut self, value: &str) -> AgentConfig {
        self.secrets[0].value = value.to_owned();
        self
    }

    /// The Enedis application's secret, written to `enedis_client_secret`.
    pub fn client_secret(mut self, value: &str) -> AgentConfig {
        self.secrets[1].value = value.to_owned();
        self
    }

    /// The XMPP server to connect to, and the CA its certificate is signed by.
    pub fn xmpp_server(self, server: &str, ca_file: &Path) -> AgentConfig {
        self.set("xmpp.server", server).set("xmpp.ca_file", ca_file)
    }

    /// Enedis is the simulator at `url` (data and consent pages), with its
    /// default application credentials.
    pub fn simulator(self, url: &str) -> AgentConfig {
        self.set("enedis.base_url", url)
            .set("enedis.authorize_url", url)
            .set("enedis.client_id", super::sim::CLIENT_ID)
            .client_secret(super::sim::CLIENT_SECRET)
    }

    /// The web server on 127.0.0.1:`port`, which is also its public URL.
    pub fn web_port(self, port: u16) -> AgentConfig {
        self.set("web.listen", format!("127.0.0.1:{port}"))
            .set("web.public_url", format!("http://127.0.0.1:{port}"))
    }

    /// The store in PostgreSQL at `url` (`store.url`) instead of the SQLite
    /// file of `store.path`.
    pub fn postgres_store(self, url: &str) -> AgentConfig {
        self.unset("store.path").set("store.url", url)
    }

    /// A `[[peers]]` entry: a bare JID and the PRMs it may read (the key is left
    /// out when there are none).
    pub fn peer(mut self, jid: &str, usage_points: &[&str]) -> AgentConfig {
        let mut table = Table::default();
        table.set("jid", Value::from(jid));
        if !usage_points.is_empty() {
            table.set("usage_points", Value::from(usage_points));
        }
        self.peers.push(table);
        self
    }

    /// Sets `key` of the last `[[peers]]` entry (`redirect_uris`).
    pub fn peer_set(mut self, key: &str, value: impl Into<Value>) -> AgentConfig {
        self.peers
            .last_mut()
            .expect("peer_set after peer")
            .set(key, value.into());
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(comment) = &self.comment {
            out.push_str(&format!("# {comment}\n"));
        }
        for (i, (section, table)) in self.tables.iter().enumerate() {
            if i > 0 || self.comment.is_some() {
                out.push('\n');
            }
            out.push_str(&format!("[{section}]\n"));
            table.render(&mut out);
        }
        for peer in &self.peers {
            out.push_str("\n[[peers]]\n");
            peer.render(&mut out);
        }
        out
    }

    /// Writes `dir/config.toml` and, for each secret key still naming its default
    /// file, that file beside it (0600, trailing newline). The path written.
    pub fn write(&self, dir: &Path) -> PathBuf {
        for secret in &self.secrets {
            if matches!(self.get(secret.key), Some(Value::Str(f)) if f == secret.file) {
                write_secret(&dir.join(secret.file), &secret.value);
            }
        }
        let path = dir.join("config.toml");
        std::fs::write(&path, self.text()).expect("write config.toml");
        path
    }
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('.')
        .unwrap_or_else(|| panic!("{key:?} is not a dotted key section.key"))
}

/// Writes a secret file as an operator would: mode 0600, trailing newline.
pub fn write_secret(path: &Path, value: &str) {
    std::fs::write(path, format!("{value}\n")).expect("write a secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod a secret file");
}

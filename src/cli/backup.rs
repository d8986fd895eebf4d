//! `quoalise-agent backup PATH`: an online backup of the store, safe while the agent
//! runs (see [`crate::store::backup`]).
//!
//! It needs only the store's path, so it reads only `store.path` from the
//! configuration (and its `QUOALISE_AGENT__STORE__PATH` override), never the XMPP
//! password or the Enedis client secret: an operator can back up from a shell
//! where the systemd credentials are not available. [`store_path`] is shared with
//! `audit`, which needs no secret either.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::config::{DEFAULT_STORE_PATH, ENV_PREFIX};
use crate::store::backup::backup_file;

/// `backup` arguments.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write; it must not exist yet. A relative path is taken
    /// from the current directory.
    pub path: PathBuf,
}

/// Back up the store named by the configuration at `config` into `args.path`,
/// reporting to `out`.
pub fn run(config: &Path, args: &BackupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if uses_postgres(config)? {
        anyhow::bail!(
            "{}: the store is PostgreSQL (store.url): back it up with PostgreSQL's own tools \
             (pg_dump, or continuous archiving); `store backup` copies SQLite files",
            config.display()
        );
    }
    let source = store_path(config)?;
    let report = backup_file(&source, &args.path)
        .with_context(|| format!("backing up {}", source.display()))?;
    writeln!(
        out,
        "backup of {} written to {}: {} bytes, {} pages, schema version {}, {} consents, integrity ok, {} ms",
        source.display(),
        report.path.display(),
        report.bytes,
        report.pages,
        report.schema_version,
        report.consents,
        report.duration.as_millis()
    )?;
    Ok(())
}

/// `store.path` of the configuration at `config`, resolved as the agent resolves
/// it (environment override, relative to the file's directory, default), without
/// reading or checking any other key.
pub fn store_path(config: &Path) -> anyhow::Result<PathBuf> {
    let env_key = format!("{ENV_PREFIX}STORE__PATH");
    let from_env = std::env::var_os(&env_key).filter(|v| !v.is_empty());
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read the configuration file {}", config.display()))?;
    let value = match from_env {
        Some(v) => Some(PathBuf::from(v)),
        None => store_path_in(&text)
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", config.display()))?,
    };
    let Some(path) = value else {
        return Ok(PathBuf::from(DEFAULT_STORE_PATH));
    };
    if path.is_absolute() {
        return Ok(path);
    }
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .join(path))
}

/// Whether the configuration at `config` puts the store in PostgreSQL
/// (`store.url` or `store.url_file`, in the file or the environment).
pub fn uses_postgres(config: &Path) -> anyhow::Result<bool> {
    for key in ["STORE__URL", "STORE__URL_FILE"] {
        if std::env::var_os(format!("{ENV_PREFIX}{key}")).is_some_and(|v| !v.is_empty()) {
            return Ok(true);
        }
    }
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read the configuration file {}", config.display()))?;
    Ok(store_key_in(&text, "url")
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", config.display()))?
        .is_some()
        || store_key_in(&text, "url_file")
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", config.display()))?
            .is_some())
}

/// The `path` key of the `[store]` table; `None` when absent. Errors never quote
/// the file (it may hold secrets), only positions and the key.
fn store_path_in(text: &str) -> Result<Option<PathBuf>, String> {
    Ok(store_key_in(text, "path")?.map(PathBuf::from))
}

/// A string key of the `[store]` table; `None` when absent or empty.
fn store_key_in(text: &str, key: &str) -> Result<Option<String>, String> {
    use toml::de::{DeTable, DeValue};
    let (table, errors) = DeTable::parse_recoverable(text);
    if let Some(e) = errors.first() {
        let at = e
            .span()
            .map(|s| format!(" at byte {}", s.start))
            .unwrap_or_default();
        return Err(format!("the file is not valid TOML{at}"));
    }
    let table = table.into_inner();
    fn find<'i>(table: &DeTable<'i>, key: &str) -> Option<DeValue<'i>> {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v.get_ref().clone())
    }
    let store = match find(&table, "store") {
        None => return Ok(None),
        Some(DeValue::Table(store)) => store,
        Some(_) => return Err("[store] must be a table".into()),
    };
    match find(&store, key) {
        None => Ok(None),
        Some(DeValue::String(s)) if s.is_empty() => Ok(None),
        Some(DeValue::String(s)) => Ok(Some(s.to_string())),
        Some(_) if key == "path" => Err("store.path must be a string (a file path)".into()),
        Some(_) => Err(format!("store.{key} must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_store_path() {
        assert_eq!(
            store_path_in("[xmpp]\npassword = \"s3cret\"\n[store]\npath = \"db/agent.db\"\n"),
            Ok(Some(PathBuf::from("db/agent.db")))
        );
        assert_eq!(store_path_in("[xmpp]\njid = \"a@b/c\"\n"), Ok(None));
        assert_eq!(store_path_in("[store]\npath = \"\"\n"), Ok(None));
        assert!(store_path_in("[store]\npath = 3\n").is_err());
        assert!(store_path_in("store = 3\n").is_err());
        let err = store_path_in("[xmpp]\npassword = \"s3cret\n").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}

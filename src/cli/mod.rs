//! The `quoalise-agent` command line: its clap definition ([`Cli`], also as a
//! [`command`] for the man pages and shell completions of the Debian package) and
//! the subcommands that live in the library, so they can be tested without the
//! binary; `src/main.rs` only parses and dispatches to them.

pub mod audit;
pub mod authorize_url;
pub mod backup;
pub mod consents;
pub mod package_files;
pub mod query;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// The name of the binary, of its man page and of its completion files.
pub const BIN_NAME: &str = "quoalise-agent";

/// XMPP agent of the Quoalise federation, serving Enedis Data Connect data to
/// authorised peers.
#[derive(Debug, Parser)]
#[command(name = BIN_NAME, version, about)]
pub struct Cli {
    /// Configuration file (TOML). Keys may be overridden by environment variables
    /// QUOALISE_AGENT__<SECTION>__<KEY>.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "QUOALISE_AGENT_CONFIG",
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands an operator or a peer runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the configuration (file, environment, secrets); print
    /// `config OK`, or every problem found and exit with status 1.
    Check,
    /// Manage the consent store: list, add, remove, refresh v3/v4 tokens.
    Consents(consents::ConsentsArgs),
    /// Run the agent: connect to XMPP, serve peers and the web port until
    /// SIGTERM/SIGINT; SIGHUP reloads peers and grants.
    Run,
    /// Ask an agent for data as a peer (no agent configuration needed): prints
    /// the records, or the agent's error with a non-zero exit status.
    Query(query::QueryArgs),
    /// Read the audit trail: every data access, allowed or refused (on SQLite it
    /// reads only store.path from the configuration, no secret).
    Audit(audit::AuditArgs),
    /// Online backup of the SQLite store into a new file, safe while the agent
    /// runs; the copy is integrity-checked (reads only store.path from the
    /// configuration). A PostgreSQL store is backed up with PostgreSQL's tools.
    Backup(backup::BackupArgs),
    /// Print the consent page address of a peer's application (what
    /// get_authorize_uri answers), storing its description.
    AuthorizeUrl(authorize_url::AuthorizeUrlArgs),
}

/// The clap definition of the command line, as users see it: what the man pages
/// and the shell completions are generated from.
pub fn command() -> clap::Command {
    Cli::command()
}

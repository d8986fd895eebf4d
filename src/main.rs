//! The `quoalise-agent` binary: parses the command line and dispatches to the
//! library. Each subcommand is one `Command` variant and one function here that
//! calls into a library module; the work itself lives in the library.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quoalise_agent::config::{Config, DEFAULT_CONFIG_PATH};

/// mimalloc instead of the system allocator: answering a peer builds and drops
/// XML trees of a few hundred elements, and glibc's malloc was a fifth of the
/// agent's CPU under load (`cargo bench --bench xmpp_load`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// XMPP agent of the Quoalise federation, serving Enedis Data Connect data to
/// authorised peers.
#[derive(Debug, Parser)]
#[command(name = "quoalise-agent", version, about)]
struct Cli {
    /// Configuration file (TOML). Keys may be overridden by environment variables
    /// QUOALISE_AGENT__<SECTION>__<KEY>.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "QUOALISE_AGENT_CONFIG",
        default_value = DEFAULT_CONFIG_PATH
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate the configuration (file, environment, secrets); print
    /// `config OK`, or every problem found and exit with status 1.
    Check,
    /// Manage the consent store: list, add, remove, refresh v3/v4 tokens.
    Consents(quoalise_agent::cli::consents::ConsentsArgs),
    /// Run the agent: connect to XMPP, serve peers and the web port until
    /// SIGTERM/SIGINT; SIGHUP reloads peers and grants.
    Run,
    /// Ask an agent for data as a peer (no agent configuration needed): prints
    /// the records, or the agent's error with a non-zero exit status.
    Query(quoalise_agent::cli::query::QueryArgs),
    /// Read the audit trail: every data access, allowed or refused (reads only
    /// store.path from the configuration, no secret).
    Audit(quoalise_agent::cli::audit::AuditArgs),
    /// Online backup of the store into a new file, safe while the agent runs; the
    /// copy is integrity-checked (reads only store.path from the configuration).
    Backup(quoalise_agent::cli::backup::BackupArgs),
    /// Print the consent page address of a peer's application (what
    /// get_authorize_uri answers), storing its description.
    AuthorizeUrl(quoalise_agent::cli::authorize_url::AuthorizeUrlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check => check(&cli.config),
        Command::Consents(args) => consents(&cli.config, args),
        Command::Run => return quoalise_agent::daemon::run::main(&cli.config),
        Command::Query(args) => return quoalise_agent::cli::query::main(args),
        Command::Audit(args) => {
            quoalise_agent::cli::audit::run(&cli.config, args, &mut std::io::stdout().lock())
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            quoalise_agent::cli::backup::run(&cli.config, args, &mut std::io::stdout().lock())
                .map(|()| ExitCode::SUCCESS)
        }
        Command::AuthorizeUrl(args) => authorize_url(&cli.config, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(config) => {
            // The SGE identity is only known to be usable once TLS has it.
            if let Some(sge) = &config.sge
                && let Err(e) = quoalise_agent::upstream::sge::connect(
                    sge,
                    &config.enedis,
                    quoalise_agent::metrics::Metrics::new(),
                )
            {
                eprintln!("{}: [sge]: {e}", path.display());
                eprintln!("config check failed: 1 problem");
                return Ok(ExitCode::FAILURE);
            }
            println!("config OK");
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.problems.len();
            eprintln!(
                "config check failed: {n} problem{}",
                if n == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn consents(
    path: &Path,
    args: &quoalise_agent::cli::consents::ConsentsArgs,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    quoalise_agent::cli::consents::run(&config, args)?;
    Ok(ExitCode::SUCCESS)
}

fn authorize_url(
    path: &Path,
    args: &quoalise_agent::cli::authorize_url::AuthorizeUrlArgs,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    quoalise_agent::cli::authorize_url::run(&config, args)?;
    Ok(ExitCode::SUCCESS)
}

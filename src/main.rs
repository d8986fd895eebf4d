//! The `quoalise-agent` binary: parses the command line and dispatches to the
//! library. Each subcommand is one `Command` variant and one function here that
//! calls into a library module; the work itself lives in the library.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::FromArgMatches;
use quoalise_agent::cli::{Cli, Command, package_files};
use quoalise_agent::config::Config;

/// mimalloc instead of the system allocator: answering a peer builds and drops
/// XML trees of a few hundred elements, and glibc's malloc was a fifth of the
/// agent's CPU under load (`cargo bench --bench xmpp_load`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The clap definition is the library's (`cli::command`, what the man pages and
    // completions describe), plus one hidden subcommand for scripts/package.sh.
    let matches = quoalise_agent::cli::command()
        .subcommand(
            clap::Command::new(package_files::SUBCOMMAND)
                .hide(true)
                .about("Write the man pages and shell completions into DIR (packaging)")
                .arg(
                    clap::Arg::new("dir")
                        .value_name("DIR")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf)),
                ),
        )
        .get_matches();
    if let Some((package_files::SUBCOMMAND, sub)) = matches.subcommand() {
        return match sub.get_one::<PathBuf>("dir") {
            Some(dir) => write_package_files(dir),
            None => ExitCode::FAILURE,
        };
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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

fn write_package_files(dir: &Path) -> ExitCode {
    match package_files::write(dir) {
        Ok(written) => {
            println!(
                "{} man pages and {} completion files written under {}",
                written.man_pages.len(),
                written.completions.len(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
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
                    config.quota_wait_secs(),
                    config.interactive_reserve_percent(),
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

//! `quoalise-agent authorize-url`: the operator's way to the consent page of a
//! peer, without XMPP. It stores the description exactly as `get_authorize_uri`
//! does (owned by the peer, same checks, the same URI for the same fields) and
//! prints `<web.public_url>/authorize?id=…`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::config::{Config, normalize_bare_jid};
use crate::store::Store;
use crate::web::{DescriptionInput, register};

#[derive(Debug, Args)]
pub struct AuthorizeUrlArgs {
    /// The peer the consents will belong to (a configured [[peers]] JID).
    #[arg(long)]
    pub peer: String,
    /// The application's name, shown to consumers.
    #[arg(long)]
    pub name: String,
    /// File holding the description shown to consumers (HTML: paragraphs and
    /// links; or plain text); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub description_file: PathBuf,
    /// The application's logo (https only).
    #[arg(long)]
    pub logo_url: Option<String>,
}

/// Register the description and print the URI on stdout.
pub fn run(config: &Config, args: &AuthorizeUrlArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    run_to(config, args, &mut stdout.lock())
}

/// Register the description and write the URI to `out`.
pub fn run_to(config: &Config, args: &AuthorizeUrlArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Err(e) = config.data_connect() {
        bail!(
            "{e}: it has no consent page to send consumers to (the meters it reads through Enedis SGE need a consent declared with quoalise-agent consents add --upstream sge)"
        );
    }
    let peer = normalize_bare_jid(&args.peer)
        .map_err(|e| anyhow::anyhow!("--peer {:?} is not a JID: {e}", args.peer))?;
    if config.peer(&peer).is_none() {
        bail!(
            "--peer {peer} is not a configured peer: add it to [[peers]] in the configuration first"
        );
    }
    let description = if args.description_file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the description from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.description_file).with_context(|| {
            format!(
                "reading the description file {}",
                args.description_file.display()
            )
        })?
    };
    let store = Store::open_config(&config.store)
        .with_context(|| format!("opening the store {}", config.store.describe()))?;
    let input = DescriptionInput {
        name: args.name.clone(),
        logo_url: args.logo_url.clone(),
        description,
    };
    let (_, uri) = register(&store, &config.web.public_url, &peer, &input)?;
    writeln!(out, "{uri}")?;
    Ok(())
}

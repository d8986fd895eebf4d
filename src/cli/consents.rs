//! `quoalise-agent consents …`: the operator's view of the consent store.
//!
//! - `list` shows every consent (never a token: only whether one is stored);
//! - `add` records a consent given outside the web flow (PRMs, owner peer, validity),
//!   for v3/v4 with a refresh token read from a file or stdin, never from argv; with
//!   `--upstream sge`, a consent the operator declares to Enedis SGE: the holder (a
//!   person or a company) and the reference of the client's signed mandate;
//!   `--collect load-curve,index,…` then orders the matching access services from
//!   SGE (`CommanderServicesAccesDonnees`) for each PRM, once the consent is stored;
//! - `collect` orders services for a stored SGE consent (a retry, or more types);
//! - `revoke` ends one and keeps it (the audit trail names it); for an SGE consent
//!   it first stops its active services at Enedis (`CommanderArretServicesAccesDonnees`);
//! - `remove` deletes one (a Data Connect one: an SGE consent is revoked, never
//!   deleted, so that the mandate behind past accesses stays on record);
//! - `refresh` renews the tokens of v3/v4 consents now (once, or in a loop), storing
//!   each new pair durably before going on.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use jiff::civil::Date;

use crate::config::{ApiGeneration, Config, Secret};
use crate::quoalise::Prm;
use crate::store::consents::fmt_instant;
use crate::store::consents::sge_limit;
use crate::store::{
    AccessService, Civility, Consent, ConsentState, NewConsent, NewSgeConsent, SgeDataType,
    SgeDeclaration, SgeHolder, Store, StoreError, TokenSet, now_seconds,
};
use crate::time::{day_start, paris_today, parse_date, parse_instant};
use crate::upstream::Ask;
use crate::upstream::http::Tally;
use crate::upstream::sge::SgeClient;
use crate::upstream::sge::services::{self, PrmOrder, StopOutcome, StopResult};
use crate::upstream::{ConsentDuration, EnedisClient};

/// `consents` and its subcommands.
#[derive(Debug, Args)]
pub struct ConsentsArgs {
    #[command(subcommand)]
    pub command: ConsentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConsentsCommand {
    /// List consents: id, generation (or sge), state, owner, PRMs, validity, whether
    /// a refresh token is stored, and for SGE the holder and the mandate.
    List(ListArgs),
    /// Record a consent given outside the web flow, or declared to Enedis SGE
    /// (`--upstream sge`).
    Add(Box<AddArgs>),
    /// Order access services from Enedis SGE for a stored SGE consent: a retry after
    /// a refusal, or more data types.
    Collect(CollectArgs),
    /// End a consent and keep it on record (state revoked): it is never used again.
    /// An SGE consent's active access services are stopped at Enedis first.
    Revoke(RevokeArgs),
    /// Delete a Data Connect consent, its PRMs and its tokens (an SGE consent is
    /// revoked instead).
    Remove(RemoveArgs),
    /// Renew the tokens of v3/v4 consents now (refresh_token grant); each new pair is
    /// stored durably before the next one is asked.
    Refresh(RefreshArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only consents owned by this peer (bare JID).
    #[arg(long)]
    pub owner: Option<String>,
    /// Only consents covering this PRM.
    #[arg(long)]
    pub prm: Option<Prm>,
    /// Only consents of this upstream.
    #[arg(long, value_enum)]
    pub upstream: Option<UpstreamArg>,
}

/// The Enedis platform a consent was given through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamArg {
    /// Enedis Data Connect (OAuth, the consumer accepts on Enedis' site).
    DataConnect,
    /// Enedis SGE (the operator declares the client's signed mandate).
    Sge,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("end").required(true).args(["until", "duration"]))]
pub struct AddArgs {
    /// The peer the consent is given to (bare JID).
    #[arg(long)]
    pub owner: String,
    /// A PRM the consent covers (14 digits); repeat or separate with commas.
    #[arg(long = "prm", required = true, value_delimiter = ',')]
    pub prms: Vec<Prm>,
    /// Start of validity: a Paris day (YYYY-MM-DD) or an instant with offset
    /// (RFC 3339). Default: now.
    #[arg(long)]
    pub from: Option<String>,
    /// End of validity, excluded: a Paris day (YYYY-MM-DD) or an instant with offset.
    #[arg(long)]
    pub until: Option<String>,
    /// Length of validity from `--from`, ISO 8601 (P1Y, P6M, P1095D; at most P3Y).
    #[arg(long)]
    pub duration: Option<String>,
    /// API generation of the consent (default: enedis.api of the configuration).
    #[arg(long)]
    pub generation: Option<String>,
    /// Data Connect 2026: the consent's autorisation_id.
    #[arg(long)]
    pub autorisation_id: Option<i64>,
    /// v3/v4: file holding the consent's refresh token (`-` for stdin). The file
    /// must not be readable by group or others.
    #[arg(long, value_name = "FILE")]
    pub refresh_token_file: Option<PathBuf>,
    /// The Enedis platform: Data Connect (the default) or SGE, where the operator
    /// declares that it holds the client's signed mandate.
    #[arg(long, value_enum, default_value = "data-connect")]
    pub upstream: UpstreamArg,
    /// SGE: the reference under which the signed mandate is kept (required).
    #[arg(long, value_name = "REF")]
    pub mandate: Option<String>,
    /// SGE: the holder is a person, of this last name (`nom`).
    #[arg(long, value_name = "NAME", conflicts_with = "company")]
    pub person: Option<String>,
    /// SGE: the person's first name (`prenom`, optional).
    #[arg(long, value_name = "NAME")]
    pub first_name: Option<String>,
    /// SGE: the person's civility, M or Mme (`civilite`, optional).
    #[arg(long, value_name = "M|Mme")]
    pub civility: Option<String>,
    /// SGE: the holder is a company, of this name (`denominationSociale`).
    #[arg(long, value_name = "NAME")]
    pub company: Option<String>,
    /// SGE: once the consent is stored, order these access services from SGE for
    /// each PRM, until the consent's end (needs the `sge` section of the
    /// configuration); repeat or separate with commas. A load curve is only
    /// collected once `load-curve` is ordered.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "TYPES")]
    pub collect: Vec<CollectArg>,
}

/// A data type whose collection SGE switches on (`typeDonnees`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CollectArg {
    /// The load curve (CDC).
    LoadCurve,
    /// The daily index (IDX).
    Index,
    /// The maximum power (PMAX; C5 and P4 meters only).
    MaxPower,
    /// The daily energy (ENERGIE).
    Energy,
}

impl CollectArg {
    pub fn data_type(self) -> SgeDataType {
        match self {
            CollectArg::LoadCurve => SgeDataType::LoadCurve,
            CollectArg::Index => SgeDataType::Index,
            CollectArg::MaxPower => SgeDataType::MaxPower,
            CollectArg::Energy => SgeDataType::Energy,
        }
    }
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The SGE consent's id (see `consents list`).
    pub id: i64,
    /// The access services to order for each PRM: load-curve, index, max-power,
    /// energy; repeat or separate with commas.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "TYPES",
        required = true
    )]
    pub collect: Vec<CollectArg>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The consent's id (see `consents list`).
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The consent's id (see `consents list`).
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Only this consent (default: every active v3/v4 consent holding a token).
    #[arg(long)]
    pub id: Option<i64>,
    /// Keep refreshing until interrupted.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Pause between two rounds of `--loop`, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
}

/// Run a `consents` subcommand, writing its report to stdout.
pub fn run(config: &Config, args: &ConsentsArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    run_to(config, args, &mut stdout.lock())
}

/// Run a `consents` subcommand, writing its report to `out`.
pub fn run_to(config: &Config, args: &ConsentsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // Data Connect's consents need [enedis]: refused before the store is opened.
    match &args.command {
        ConsentsCommand::Add(add) if matches!(add.upstream, UpstreamArg::DataConnect) => {
            if let Err(e) = config.data_connect() {
                bail!(
                    "{e}: a Data Connect consent cannot be used here; a consent declared to Enedis SGE is added with --upstream sge"
                );
            }
        }
        ConsentsCommand::Refresh(_) => {
            if let Err(e) = config.data_connect() {
                bail!("{e}: there is no Data Connect token to refresh");
            }
        }
        _ => {}
    }
    let store = Store::open_config(&config.store)
        .with_context(|| format!("opening the store {}", config.store.describe()))?;
    match &args.command {
        ConsentsCommand::List(list) => list_consents(&store, list, out),
        ConsentsCommand::Add(add) => match add.upstream {
            UpstreamArg::DataConnect => add_consent(config, &store, add, out),
            UpstreamArg::Sge => add_sge_consent(config, &store, add, out),
        },
        ConsentsCommand::Collect(collect) => collect_services(config, &store, collect, out),
        ConsentsCommand::Revoke(revoke) => revoke_consent(config, &store, revoke.id, out),
        ConsentsCommand::Remove(remove) => {
            if let Some(consent) = store.consent(remove.id)?
                && consent.is_sge()
            {
                bail!(
                    "consent {} is an SGE consent: the mandate behind its accesses stays on record; revoke it instead (quoalise-agent consents revoke {})",
                    remove.id,
                    remove.id
                );
            }
            if !store.remove_consent(remove.id)? {
                bail!("no consent with id {}", remove.id);
            }
            writeln!(out, "consent {} removed", remove.id)?;
            Ok(())
        }
        ConsentsCommand::Refresh(refresh) => refresh_consents(config, store, refresh, out),
    }
}

fn list_consents(store: &Store, args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let owner = args.owner.as_deref().map(normalise_jid).transpose()?;
    let consents: Vec<Consent> = store
        .list_consents()?
        .into_iter()
        .filter(|c| owner.as_ref().is_none_or(|o| &c.owner == o))
        .filter(|c| args.prm.as_ref().is_none_or(|p| c.covers(p)))
        .filter(|c| {
            args.upstream.is_none_or(|u| match u {
                UpstreamArg::DataConnect => !c.is_sge(),
                UpstreamArg::Sge => c.is_sge(),
            })
        })
        .collect();
    let services = store.active_access_services()?;
    write_table_with_services(&consents, &services, now_seconds(), out)?;
    Ok(())
}

/// The consents as an aligned table, one per line.
pub fn write_table(consents: &[Consent], now: i64, out: &mut dyn Write) -> std::io::Result<()> {
    write_table_with_services(consents, &[], now, out)
}

/// A consent's active SGE access services, short: `CDC 64697749` (with the PRM
/// when the consent covers several), `(stop failed)` after one whose stop failed.
fn services_cell(consent: &Consent, services: &[AccessService]) -> String {
    services
        .iter()
        .filter(|s| s.consent_id == consent.id && s.is_active())
        .map(|s| {
            let mut cell = format!("{} {}", s.data, s.service_id);
            if consent.prms.len() > 1 {
                cell.push_str(&format!(" ({})", s.prm));
            }
            if s.stop_error.is_some() {
                cell.push_str(" (stop failed)");
            }
            cell
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`write_table`] with a column of the active SGE access services.
pub fn write_table_with_services(
    consents: &[Consent],
    services: &[AccessService],
    now: i64,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let header = [
        "ID",
        "API",
        "STATE",
        "OWNER",
        "PRMS",
        "VALID FROM",
        "VALID UNTIL",
        "TOKEN",
        "SGE SERVICES",
        "SGE HOLDER AND MANDATE",
    ];
    let rows: Vec<[String; 10]> = consents
        .iter()
        .map(|c| {
            let state = if c.state == ConsentState::Active && now >= c.valid_until {
                "active (past validity)".to_owned()
            } else {
                c.state.to_string()
            };
            [
                c.id.to_string(),
                c.upstream().as_str().to_owned(),
                state,
                c.owner.clone(),
                c.prms.iter().map(Prm::as_str).collect::<Vec<_>>().join(","),
                fmt_instant(c.valid_from),
                fmt_instant(c.valid_until),
                if c.has_refresh_token { "yes" } else { "no" }.to_owned(),
                services_cell(c, services),
                c.sge
                    .as_ref()
                    .map(|d| format!("{}; mandate {}", d.holder, d.mandate))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str], out: &mut dyn Write| -> std::io::Result<()> {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(&header, out)?;
    for row in &rows {
        line(&row.each_ref().map(String::as_str), out)?;
    }
    if rows.is_empty() {
        writeln!(out, "(no consent)")?;
    }
    Ok(())
}

fn normalise_jid(raw: &str) -> anyhow::Result<String> {
    let jid = crate::config::parse_bare_jid(raw.trim())
        .map_err(|e| anyhow::anyhow!("--owner {raw:?} is not a bare JID: {e}"))?;
    Ok(jid.to_string())
}

/// The validity `[--from, --until[` (or `--from` + `--duration`) of `consents add`;
/// `--from` defaults to `now`.
fn validity(args: &AddArgs, now: i64) -> anyhow::Result<(i64, i64)> {
    let valid_from = match &args.from {
        Some(raw) => parse_moment(raw, "--from")?,
        None => now,
    };
    let valid_until = match (&args.until, &args.duration) {
        (Some(raw), _) => parse_moment(raw, "--until")?,
        (None, Some(raw)) => {
            let today = paris_today(jiff::Timestamp::from_second(valid_from)?);
            ConsentDuration::parse_at(raw, today)?.end_from(valid_from)?
        }
        (None, None) => bail!("give --until or --duration"),
    };
    Ok((valid_from, valid_until))
}

/// A Paris day (its midnight) or an instant with an offset, as UTC seconds.
fn parse_moment(raw: &str, option: &str) -> anyhow::Result<i64> {
    let raw = raw.trim();
    if raw.len() == 10 {
        let day: Date = parse_date(raw).with_context(|| option.to_owned())?;
        return Ok(day_start(day)?);
    }
    Ok(parse_instant(raw)
        .with_context(|| format!("{option}: expected YYYY-MM-DD or an RFC 3339 instant"))?
        .as_second())
}

fn add_consent(
    config: &Config,
    store: &Store,
    args: &AddArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let sge_only = [
        ("--mandate", args.mandate.is_some()),
        ("--person", args.person.is_some()),
        ("--first-name", args.first_name.is_some()),
        ("--civility", args.civility.is_some()),
        ("--company", args.company.is_some()),
        ("--collect", !args.collect.is_empty()),
    ];
    if let Some((option, _)) = sge_only.iter().find(|(_, given)| *given) {
        bail!("{option} is for SGE consents: add --upstream sge");
    }
    let enedis = config.data_connect()?;
    let generation = match &args.generation {
        None => enedis.api,
        Some(g) => ApiGeneration::parse(g)
            .with_context(|| format!("--generation {g:?}: expected 2026, v5, v4 or v3"))?,
    };
    let owner = normalise_jid(&args.owner)?;
    let now = now_seconds();
    let (valid_from, valid_until) = validity(args, now)?;
    if args.autorisation_id.is_some() && generation != ApiGeneration::Api2026 {
        bail!("--autorisation-id is for Data Connect 2026 consents only");
    }
    let tokens = match &args.refresh_token_file {
        Some(path) => {
            if !generation.per_consent_tokens() {
                bail!(
                    "--refresh-token-file is for v3/v4 consents: {} uses one application token",
                    generation.as_str()
                );
            }
            Some(TokenSet {
                refresh_token: read_refresh_token(path)?,
                access_token: None,
                access_expires_at: None,
            })
        }
        None => None,
    };
    let new = NewConsent {
        generation,
        owner,
        prms: args.prms.clone(),
        autorisation_id: args.autorisation_id,
        valid_from,
        valid_until,
    };
    let consent = store.add_consent(&new, tokens.as_ref())?;
    writeln!(out, "consent {} added", consent.id)?;
    write_table(std::slice::from_ref(&consent), now, out)?;
    if generation.per_consent_tokens() && tokens.is_none() {
        writeln!(
            out,
            "warning: a {} consent without a refresh token cannot be used to read data",
            generation.as_str()
        )?;
    }
    Ok(())
}

/// `consents add --upstream sge`: a consent the operator declares to Enedis SGE.
fn add_sge_consent(
    config: &Config,
    store: &Store,
    args: &AddArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let data_connect_only = [
        ("--generation", args.generation.is_some()),
        ("--autorisation-id", args.autorisation_id.is_some()),
        ("--refresh-token-file", args.refresh_token_file.is_some()),
    ];
    if let Some((option, _)) = data_connect_only.iter().find(|(_, given)| *given) {
        bail!("{option} is for Data Connect consents: an SGE consent has none");
    }
    let Some(mandate) = args.mandate.as_deref() else {
        bail!(
            "an SGE consent needs --mandate REF: the reference under which the client's signed mandate is kept"
        );
    };
    let holder = match (&args.person, &args.company) {
        (Some(last_name), None) => SgeHolder::Person {
            civility: args
                .civility
                .as_deref()
                .map(|raw| {
                    Civility::parse(raw.trim())
                        .with_context(|| format!("--civility {raw:?}: expected M or Mme"))
                })
                .transpose()?,
            last_name: last_name.trim().to_owned(),
            first_name: args.first_name.as_deref().map(|n| n.trim().to_owned()),
        },
        (None, Some(name)) => {
            if args.first_name.is_some() || args.civility.is_some() {
                bail!("--first-name and --civility are for a person (--person), not a company");
            }
            SgeHolder::Company {
                name: name.trim().to_owned(),
            }
        }
        (Some(_), Some(_)) => bail!("give --person or --company, not both"),
        (None, None) => bail!(
            "an SGE consent needs its holder: --person \"LAST NAME\" [--first-name X] [--civility M|Mme] or --company \"NAME\""
        ),
    };
    let owner = normalise_jid(&args.owner)?;
    let now = now_seconds();
    let (valid_from, valid_until) = validity(args, now)?;
    if valid_until <= valid_from {
        bail!(
            "the consent would end ({}) before it starts ({}): --until must come after --from",
            fmt_instant(valid_until),
            fmt_instant(valid_from)
        );
    }
    let limit = sge_limit(now)?;
    if valid_until > limit {
        bail!(
            "the consent would end at {}, more than 3 years ahead: Enedis SGE accepts access declarations ending by {} at most (C5: SGT5O9)",
            fmt_instant(valid_until),
            fmt_instant(limit)
        );
    }
    let new = NewSgeConsent {
        owner,
        prms: args.prms.clone(),
        valid_from,
        valid_until,
        declaration: SgeDeclaration {
            holder,
            mandate: mandate.trim().to_owned(),
        },
    };
    // Before anything is stored: SGE configured and its client ready.
    let sge = if args.collect.is_empty() {
        None
    } else {
        Some(sge_client(
            config,
            "--collect (ordering access services)",
            "; add [sge] or leave out --collect: nothing was stored",
        )?)
    };
    let consent = store.add_sge_consent(&new)?;
    writeln!(out, "consent {} added (SGE)", consent.id)?;
    write_table(std::slice::from_ref(&consent), now, out)?;
    writeln!(
        out,
        "keep the signed mandate {:?}: it is the basis of every access to these PRMs",
        new.declaration.mandate
    )?;
    match sge {
        None => Ok(()),
        Some((runtime, client)) => {
            let types = data_types(&args.collect);
            order(&runtime, &client, store, &consent, &types, out)
        }
    }
}

/// The SGE client of `[sge]`, with a runtime to run it, or why `what` cannot be
/// done (`note` ends the message).
fn sge_client(
    config: &Config,
    what: &str,
    note: &str,
) -> anyhow::Result<(tokio::runtime::Runtime, SgeClient)> {
    let Some(sge) = &config.sge else {
        bail!(
            "{what} needs Enedis SGE, but the configuration has no [sge] section (certificate_file, key_file, login, contract_id){note}"
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = {
        let _guard = runtime.enter();
        crate::upstream::sge::connect(
            sge,
            config.quota_wait_secs(),
            config.interactive_reserve_percent(),
            crate::metrics::Metrics::new(),
        )
        .with_context(|| format!("{what}: cannot build the SGE client{note}"))?
    };
    Ok((runtime, client))
}

fn data_types(collect: &[CollectArg]) -> Vec<SgeDataType> {
    let mut types: Vec<SgeDataType> = collect.iter().map(|c| c.data_type()).collect();
    types.sort();
    types.dedup();
    types
}

fn type_names(types: &[SgeDataType]) -> String {
    types.iter().map(|t| t.name()).collect::<Vec<_>>().join(",")
}

/// Order `types` for `consent` and print the outcome per PRM; an error (exit
/// non-zero) when any PRM's order failed, saying the consent is stored and how
/// to retry.
fn order(
    runtime: &tokio::runtime::Runtime,
    client: &SgeClient,
    store: &Store,
    consent: &Consent,
    types: &[SgeDataType],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let tally = Tally::new(Ask::agent());
    let outcomes = runtime.block_on(services::order_for_consent(
        store,
        client,
        consent,
        types,
        now_seconds(),
        &tally,
    ));
    let retry = format!(
        "quoalise-agent consents collect {} --collect {}",
        consent.id,
        type_names(types)
    );
    let outcomes: Vec<PrmOrder> = match outcomes {
        Ok(o) => o,
        Err(e) => bail!(
            "{e}; consent {} is stored, no access service was ordered",
            consent.id
        ),
    };
    let mut failed = 0usize;
    for o in &outcomes {
        for t in &o.already {
            writeln!(
                out,
                "{}: {} already collected for consent {}",
                o.prm, t, consent.id
            )?;
        }
        for s in &o.ordered {
            writeln!(
                out,
                "{}: {} ordered from SGE: service {} (affaire {}), until {}",
                s.prm,
                s.data,
                s.service_id,
                s.affair_id.as_deref().unwrap_or("-"),
                s.end
            )?;
        }
        if let Some(e) = &o.error {
            failed += 1;
            match e.sgt() {
                Some((code, label)) if e.is_technical() => writeln!(
                    out,
                    "{}: SGE could not take the order now (a technical failure at Enedis): {code} {label}",
                    o.prm
                )?,
                Some((code, label)) => {
                    writeln!(out, "{}: SGE refused the order: {code} {label}", o.prm)?
                }
                None => writeln!(out, "{}: the order failed: {e}", o.prm)?,
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} PRM orders failed; consent {} is stored; once the cause is fixed, order again with: {retry}",
            outcomes.len(),
            consent.id
        );
    }
    Ok(())
}

/// `consents collect ID --collect TYPES`.
fn collect_services(
    config: &Config,
    store: &Store,
    args: &CollectArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(consent) = store.consent(args.id)? else {
        bail!("no consent with id {}", args.id);
    };
    if !consent.is_sge() {
        bail!(
            "consent {} is a Data Connect consent: access services are ordered for SGE consents (consents add --upstream sge)",
            consent.id
        );
    }
    let (runtime, client) = sge_client(config, "consents collect", "")?;
    order(
        &runtime,
        &client,
        store,
        &consent,
        &data_types(&args.collect),
        out,
    )
}

/// `consents revoke ID`: an SGE consent's active services are stopped first
/// (each outcome recorded), then the consent is revoked in any case; an error
/// (exit non-zero) when a stop failed. A consent already ended whose services
/// are still active has its stops tried again.
fn revoke_consent(
    config: &Config,
    store: &Store,
    id: i64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(consent) = store.consent(id)? else {
        bail!("no consent with id {id}");
    };
    let active: Vec<AccessService> = if consent.is_sge() {
        store
            .access_services_of_consent(id)?
            .into_iter()
            .filter(AccessService::is_active)
            .collect()
    } else {
        Vec::new()
    };
    let mut unstopped = 0usize;
    if !active.is_empty() {
        match sge_client(config, "stopping the consent's access services", "") {
            Err(e) => {
                unstopped = active.len();
                writeln!(
                    out,
                    "consent {id}: {} access service(s) not stopped at Enedis: {e:#}",
                    active.len()
                )?;
            }
            Ok((runtime, client)) => {
                let tally = Tally::new(Ask::agent());
                let outcomes: Vec<StopOutcome> = runtime.block_on(
                    services::stop_consent_services(store, &client, id, now_seconds(), &tally),
                )?;
                for o in &outcomes {
                    let s = &o.service;
                    match &o.result {
                        StopResult::Stopped => writeln!(
                            out,
                            "{}: {} service {} stopped at Enedis",
                            s.prm, s.data, s.service_id
                        )?,
                        StopResult::Ended => writeln!(
                            out,
                            "{}: {} service {} had reached its end ({}): nothing to stop",
                            s.prm, s.data, s.service_id, s.end
                        )?,
                        StopResult::NotActiveAtEnedis => writeln!(
                            out,
                            "{}: {} service {}: SGE knows no such active service (SGT4G3): recorded as stopped",
                            s.prm, s.data, s.service_id
                        )?,
                        StopResult::Failed(why) => {
                            unstopped += 1;
                            writeln!(
                                out,
                                "{}: {} service {} NOT stopped: {why}",
                                s.prm, s.data, s.service_id
                            )?
                        }
                    }
                }
            }
        }
    }
    let revoked = match store.revoke_consent(id) {
        Ok(consent) => {
            writeln!(
                out,
                "consent {} revoked ({}); it stays on record for the audit trail",
                consent.id,
                consent.upstream()
            )?;
            true
        }
        Err(StoreError::NoSuchConsent(id)) => bail!("no consent with id {id}"),
        Err(StoreError::Invalid(why)) if active.is_empty() => bail!("{why}"),
        Err(StoreError::Invalid(_)) => {
            writeln!(
                out,
                "consent {id} was already {}: its access services' stops were tried again",
                consent.state
            )?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    if unstopped > 0 {
        bail!(
            "{unstopped} access service(s) of consent {id} are still active at Enedis (SGE collects and bills them); {}the agent retries the stop at each housekeeping pass while it runs with [sge], or run: quoalise-agent consents revoke {id}",
            if revoked {
                "the consent is revoked all the same; "
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// A refresh token from a private file or stdin, trailing whitespace trimmed.
fn read_refresh_token(path: &Path) -> anyhow::Result<Secret> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the refresh token from stdin")?;
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("--refresh-token-file {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "--refresh-token-file {}: readable by group or others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
        text = std::fs::read_to_string(path)
            .with_context(|| format!("--refresh-token-file {}", path.display()))?;
    }
    let token = text.trim();
    if token.is_empty() {
        bail!("the refresh token is empty");
    }
    if token.contains(char::is_whitespace) {
        bail!("the refresh token holds whitespace: one token expected");
    }
    Ok(Secret::new(token))
}

fn refresh_consents(
    config: &Config,
    store: Store,
    args: &RefreshArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let enedis = config.data_connect()?;
    if !enedis.api.per_consent_tokens() {
        bail!(
            "enedis.api is {}: its consents hold no token to refresh (only v3 and v4 do)",
            enedis.api.as_str()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = EnedisClient::new(enedis, store.clone())?;
    let generation = enedis.api;
    let mut round = 0u64;
    loop {
        round += 1;
        let now = now_seconds();
        let ids: Vec<i64> = match args.id {
            Some(id) => vec![id],
            None => store
                .list_consents()?
                .into_iter()
                .filter(|c| {
                    c.generation == generation && c.has_refresh_token && c.is_usable_at(now)
                })
                .map(|c| c.id)
                .collect(),
        };
        let mut failed = 0usize;
        for id in &ids {
            if args.repeat {
                // In a loop, say what is in flight: if the process dies now, an operator
                // (or a test) can tell which refresh answer may have been lost.
                writeln!(out, "consent {id}: refreshing")?;
                out.flush()?;
            }
            match runtime.block_on(client.refresh_consent(*id)) {
                Ok(expires_at) => writeln!(
                    out,
                    "consent {id}: refreshed, access token valid until {}",
                    fmt_instant(expires_at)
                )?,
                Err(e) => {
                    failed += 1;
                    writeln!(out, "consent {id}: refresh failed: {e}")?;
                }
            }
            out.flush()?;
        }
        if !args.repeat {
            if ids.is_empty() {
                writeln!(
                    out,
                    "no {} consent with a token to refresh",
                    generation.as_str()
                )?;
            }
            if failed > 0 {
                bail!("{failed} of {} refreshes failed", ids.len());
            }
            return Ok(());
        }
        if round == 1 && ids.is_empty() {
            writeln!(
                out,
                "no {} consent with a token to refresh yet",
                generation.as_str()
            )?;
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
}

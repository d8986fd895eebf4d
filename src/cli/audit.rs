//! `quoalise-agent audit`: read the audit trail (every data access, allowed or
//! refused) as CSV or JSON, filtered by peer, PRM and time.
//!
//! On SQLite, like `backup`, it reads only `store.path` from the configuration,
//! never a secret, and it never creates a store: auditing a path with no store is
//! an error. On PostgreSQL (`store.url`, itself a secret) it reads the
//! configuration as the agent does.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use jiff::{Span, Timestamp, ZonedDateTime};

use crate::quoalise::Prm;
use crate::store::consents::fmt_instant;
use crate::store::{AuditFilter, AuditRecord, Store};
use crate::time::{PARIS, day_start, parse_date, parse_instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// One header line, then one line per access (RFC 4180 quoting).
    Csv,
    /// One JSON array of objects.
    Json,
}

/// `audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only accesses of this peer (bare JID; a resource is ignored).
    #[arg(long)]
    pub peer: Option<String>,
    /// Only accesses to this PRM (14 digits).
    #[arg(long)]
    pub prm: Option<Prm>,
    /// Only accesses at or after this time: a Paris day (YYYY-MM-DD), an instant
    /// with offset (RFC 3339), or a period back from now (ISO 8601: P7D, PT24H).
    #[arg(long)]
    pub since: Option<String>,
    /// Only accesses before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many accesses (the most recent).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = AuditFormat::Csv)]
    pub format: AuditFormat,
}

/// Print the accesses the arguments select, oldest first.
pub fn run(config: &Path, args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = if super::backup::uses_postgres(config)? {
        // The URL may be a credential: read as the agent reads it.
        let loaded = crate::config::Config::load(config)?;
        Store::open_config(&loaded.store)
            .with_context(|| format!("opening the store {}", config.display()))?
    } else {
        let path = super::backup::store_path(config)?;
        if !path.is_file() {
            bail!("there is no store at {}", path.display());
        }
        Store::open(&path).with_context(|| format!("opening the store {}", path.display()))?
    };
    let filter = filter(args, Timestamp::now())?;
    let records = store.audit(&filter)?;
    match args.format {
        AuditFormat::Csv => write_csv(&records, out)?,
        AuditFormat::Json => write_json(&records, out)?,
    }
    Ok(())
}

/// The store filter for `args`, relative times counted back from `now`.
pub fn filter(args: &AuditArgs, now: Timestamp) -> anyhow::Result<AuditFilter> {
    let peer = args
        .peer
        .as_deref()
        .map(|p| {
            crate::config::normalize_bare_jid(p.trim())
                .map_err(|e| anyhow::anyhow!("--peer {p:?} is not a JID: {e}"))
        })
        .transpose()?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time("--since", s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time("--until", s, now))
        .transpose()?;
    if let (Some(a), Some(b)) = (since, until)
        && a >= b
    {
        bail!(
            "--since ({}) must be before --until ({})",
            fmt_instant(a),
            fmt_instant(b)
        );
    }
    Ok(AuditFilter {
        peer,
        prm: args.prm,
        since,
        until,
        limit: args.limit,
    })
}

/// A time bound: Paris day, instant with offset, or ISO 8601 period back from `now`.
fn parse_time(flag: &str, input: &str, now: Timestamp) -> anyhow::Result<i64> {
    let input = input.trim();
    if input.starts_with(['P', 'p']) {
        let span: Span = input.parse().map_err(|e| {
            anyhow::anyhow!("{flag} {input:?} is not an ISO 8601 period (P7D, PT24H): {e}")
        })?;
        let zoned: ZonedDateTime = now.to_zoned_datetime(PARIS.clone());
        let then = zoned
            .checked_sub(span)
            .map_err(|e| anyhow::anyhow!("{flag} {input:?} reaches out of range: {e}"))?;
        return Ok(then.timestamp().as_second());
    }
    if input.len() == 10 {
        let date = parse_date(input).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        return Ok(day_start(date)?);
    }
    parse_instant(input).map(Timestamp::as_second).map_err(|e| {
        anyhow::anyhow!("{flag}: {e} (or a Paris day YYYY-MM-DD, or a period like P7D)")
    })
}

fn basis(record: &AuditRecord) -> String {
    match (record.consent_id, record.via_grant) {
        (Some(id), _) => format!("consent:{id}"),
        (None, true) => "grant".to_owned(),
        (None, false) => String::new(),
    }
}

const CSV_HEADER: &str = "id,time,peer,command,prm,series,range_start,range_end,basis,outcome,error,error_code,detail,upstream_calls,duration_ms";

/// One CSV field: quoted when it holds a separator, a quote or a line break; a text
/// a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) gets a leading `'`.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

pub fn write_csv(records: &[AuditRecord], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for r in records {
        let opt_time = |t: Option<i64>| t.map(fmt_instant).unwrap_or_default();
        let fields = [
            r.id.to_string(),
            fmt_instant(r.at),
            csv_field(&r.peer),
            csv_field(&r.command),
            r.prm.clone().unwrap_or_default(),
            csv_field(r.series.as_deref().unwrap_or_default()),
            opt_time(r.range_start),
            opt_time(r.range_end),
            basis(r),
            r.outcome.clone(),
            csv_field(r.error.as_deref().unwrap_or_default()),
            csv_field(r.error_code.as_deref().unwrap_or_default()),
            csv_field(r.detail.as_deref().unwrap_or_default()),
            r.upstream_calls.to_string(),
            r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        ];
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    id: i64,
    time: String,
    at: i64,
    peer: &'a str,
    command: &'a str,
    prm: Option<&'a str>,
    series: Option<&'a str>,
    range_start: Option<String>,
    range_end: Option<String>,
    consent_id: Option<i64>,
    via_grant: bool,
    outcome: &'a str,
    error: Option<&'a str>,
    error_code: Option<&'a str>,
    detail: Option<&'a str>,
    upstream_calls: u32,
    duration_ms: Option<u64>,
}

pub fn write_json(records: &[AuditRecord], out: &mut dyn Write) -> std::io::Result<()> {
    let view: Vec<JsonRecord<'_>> = records
        .iter()
        .map(|r| JsonRecord {
            id: r.id,
            time: fmt_instant(r.at),
            at: r.at,
            peer: &r.peer,
            command: &r.command,
            prm: r.prm.as_deref(),
            series: r.series.as_deref(),
            range_start: r.range_start.map(fmt_instant),
            range_end: r.range_end.map(fmt_instant),
            consent_id: r.consent_id,
            via_grant: r.via_grant,
            outcome: &r.outcome,
            error: r.error.as_deref(),
            error_code: r.error_code.as_deref(),
            detail: r.detail.as_deref(),
            upstream_calls: r.upstream_calls,
            duration_ms: r.duration_ms,
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &view).map_err(std::io::Error::other)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: Option<&str>, until: Option<&str>) -> AuditArgs {
        AuditArgs {
            peer: Some("App@Example.org/laptop".into()),
            prm: None,
            since: since.map(Into::into),
            until: until.map(Into::into),
            limit: None,
            format: AuditFormat::Csv,
        }
    }

    #[test]
    fn times_are_days_instants_or_periods() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let f = filter(&args(Some("2026-11-01"), Some("P1D")), now).unwrap();
        assert_eq!(f.peer.as_deref(), Some("app@example.org"));
        // Paris midnight (CET) of 1 November.
        assert_eq!(f.since, Some(1_793_487_600));
        assert_eq!(f.until, Some(now.as_second() - 86_400));
        let f = filter(&args(Some("2026-11-29T10:00:00+01:00"), None), now).unwrap();
        assert_eq!(f.since, Some(now.as_second() - 3 * 3600));
        for bad in ["yesterday", "2026-13-01", "P", "2026-11-29T10:00:00"] {
            let e = filter(&args(Some(bad), None), now).unwrap_err().to_string();
            assert!(e.contains("--since"), "{bad}: {e}");
        }
        let e = filter(&args(Some("PT1H"), Some("P1D")), now).unwrap_err();
        assert!(e.to_string().contains("must be before"), "{e}");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}

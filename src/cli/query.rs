//! `quoalise-agent query …`: ask an agent for data as a peer would, to check a
//! deployment. It needs no agent configuration: it logs in with the peer's own
//! account, runs one command against the agent's FULL JID, prints the answer
//! and exits.
//!
//! ```text
//! quoalise-agent query --jid app@example.org --password-file pw --to agent@example.org/agent \
//!     get-history urn:dev:prm:22516914714270_consumption/power/active/raw \
//!     --start 2026-11-01T00:00:00+01:00 --end 2026-11-08T00:00:00+01:00 --format csv
//! ```
//!
//! Data commands print the records (`--format xml`: the `<quoalise>` payload as
//! received, indented; `json`; `csv` with `time,value`) on stdout and a one-line
//! summary on stderr. A stanza error from the agent is printed with its
//! condition, text and Enedis code, and the exit status is 1; so is a failed
//! login (with its likely cause) or a missing answer.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use minidom::Element;
use quick_xml::events::Event;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::StanzaError;

use crate::config::{Secret, XmppConfig};
use crate::quoalise::{Data, Step, TimeSeries, decode_element};
use crate::xmpp::connector::{Connector, parse_agent_jid};
use crate::xmpp::{AllowList, Command, CommandSet, IqError, NS_QUOALISE, Status, XmppAgent};

/// `query` and its options.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Your own JID (the peer's account). A bare JID gets a random resource.
    #[arg(long)]
    pub jid: String,
    /// File holding your account's password (one trailing newline is removed).
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// The agent's FULL JID, e.g. agent@example.org/agent (commands sent to a
    /// bare JID are answered by the server, not the agent).
    #[arg(long, value_name = "AGENT_FULL_JID")]
    pub to: String,
    /// XMPP server as host:port (default: DNS SRV of your JID's domain).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Extra PEM CA certificate to trust for STARTTLS.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Allow an unencrypted stream when the server offers no STARTTLS
    /// (loopback tests only).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Seconds to wait for the login, then for the answer.
    #[arg(long, default_value_t = 130, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: QueryCommand,
}

/// Output format of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The `<quoalise>` payload as received, indented.
    Xml,
    /// `{"identifier", "unit", "sampling", "records": [{"time", "value"}]}`.
    Json,
    /// `time,value`, one record per line, times in UTC (RFC 3339).
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// get_history (Quoalise client): one series of one meter.
    GetHistory {
        /// urn:dev:prm:<14-digit PRM>_<series>
        identifier: String,
        /// Start, ISO 8601 with an offset (default: the agent's, the last whole day).
        #[arg(long)]
        start: Option<String>,
        /// End, excluded, ISO 8601 with an offset.
        #[arg(long)]
        end: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Xml)]
        format: Format,
    },
    /// get_load_curve (first Data Connect proxy): mean power at the meter's step.
    GetLoadCurve(LegacyArgs),
    /// get_daily (first Data Connect proxy): energy per day.
    GetDaily(LegacyArgs),
    /// list_usage_points: the PRMs you may read.
    ListUsagePoints,
}

#[derive(Debug, Args)]
pub struct LegacyArgs {
    /// The usage point (14-digit PRM).
    pub usage_point_id: String,
    /// consumption or production.
    #[arg(long, default_value = "consumption")]
    pub direction: String,
    /// First day, YYYY-MM-DD (Paris).
    #[arg(long)]
    pub start: String,
    /// Day after the last one, YYYY-MM-DD (excluded).
    #[arg(long)]
    pub end: String,
    #[arg(long, value_enum, default_value_t = Format::Xml)]
    pub format: Format,
}

/// A failure to report: one message, exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

fn fail(message: impl Into<String>) -> QueryError {
    QueryError(message.into())
}

impl QueryCommand {
    fn node(&self) -> &'static str {
        match self {
            QueryCommand::GetHistory { .. } => "get_history",
            QueryCommand::GetLoadCurve(_) => "get_load_curve",
            QueryCommand::GetDaily(_) => "get_daily",
            QueryCommand::ListUsagePoints => "list_usage_points",
        }
    }

    /// The submitted form, with `text-single` fields as the Quoalise client
    /// writes them; `None` for a command without input.
    fn form(&self) -> Option<DataForm> {
        let fields: Vec<(&str, &str)> = match self {
            QueryCommand::GetHistory {
                identifier,
                start,
                end,
                ..
            } => {
                let mut f = vec![("identifier", identifier.as_str())];
                if let Some(start) = start {
                    f.push(("start_time", start.as_str()));
                }
                if let Some(end) = end {
                    f.push(("end_time", end.as_str()));
                }
                f
            }
            QueryCommand::GetLoadCurve(a) | QueryCommand::GetDaily(a) => vec![
                ("usage_point_id", a.usage_point_id.as_str()),
                ("direction", a.direction.as_str()),
                ("start_date", a.start.as_str()),
                ("end_date", a.end.as_str()),
            ],
            QueryCommand::ListUsagePoints => return None,
        };
        Some(DataForm {
            type_: DataFormType::Submit,
            title: None,
            instructions: None,
            fields: fields
                .into_iter()
                .map(|(var, value)| Field::text_single(var, value))
                .collect(),
        })
    }

    fn format(&self) -> Option<Format> {
        match self {
            QueryCommand::GetHistory { format, .. } => Some(*format),
            QueryCommand::GetLoadCurve(a) | QueryCommand::GetDaily(a) => Some(a.format),
            QueryCommand::ListUsagePoints => None,
        }
    }
}

/// Runs `query`; prints errors on stderr.
pub fn main(args: &QueryArgs) -> ExitCode {
    // Only our own warnings (e.g. a login retry) reach the terminal.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUOALISE_QUERY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    match runtime.block_on(run(args, &mut stdout.lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs in, runs the command, writes the answer to `out`.
pub async fn run(args: &QueryArgs, out: &mut impl Write) -> Result<(), QueryError> {
    let to =
        Jid::new(&args.to).map_err(|e| fail(format!("--to '{}' is not a JID: {e}", args.to)))?;
    if to.resource().is_none() {
        return Err(fail(format!(
            "--to '{}' must be the agent's FULL JID, with its resource (e.g. {}/agent): the server answers commands sent to a bare JID itself",
            args.to, args.to
        )));
    }
    let config = peer_config(args)?;
    let timeout = Duration::from_secs(args.timeout.max(1));

    // One login attempt first: it says exactly why a login fails (the session
    // below would only retry).
    let connector = Connector::new(&config, Default::default()).map_err(|e| fail(e.to_string()))?;
    match tokio::time::timeout(timeout, connector.login()).await {
        Ok(Ok(_probe)) => {}
        Ok(Err(e)) => {
            return Err(fail(format!(
                "cannot log in as {}: {e} ({})",
                config.jid,
                e.likely_cause()
            )));
        }
        Err(_) => {
            return Err(fail(format!(
                "cannot log in within {} s",
                timeout.as_secs()
            )));
        }
    }

    let agent = XmppAgent::new(&config).map_err(|e| fail(e.to_string()))?;
    let handle = agent.handle();
    let shutdown = CancellationToken::new();
    let session =
        tokio::spawn(agent.run(CommandSet::new(()), AllowList::default(), shutdown.clone()));
    let result = async {
        if !handle.wait_until_up(timeout).await {
            return Err(fail(format!(
                "no XMPP session within {} s as {}",
                timeout.as_secs(),
                config.jid
            )));
        }
        let request = Command::execute(args.command.node(), args.command.form());
        let answer = handle
            .send_iq(
                Some(to.clone()),
                IqRequestPayload::Set(request.to_element()),
                timeout,
            )
            .await;
        match answer {
            Ok(Some(payload)) => print_answer(&args.command, payload, out),
            Ok(None) => Err(fail("the agent answered without a <command/>")),
            Err(IqError::Error(error)) => Err(fail(describe_error(&error, &to))),
            Err(IqError::Timeout(t)) => Err(fail(format!(
                "no answer from {to} within {} s (is the agent online?)",
                t.as_secs()
            ))),
            Err(IqError::Stopped) => Err(fail("the XMPP session stopped before the answer came")),
            Err(IqError::Unsendable(e)) => Err(fail(format!("cannot send the request: {e}"))),
        }
    }
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), session).await;
    result
}

/// The session settings of the peer.
fn peer_config(args: &QueryArgs) -> Result<XmppConfig, QueryError> {
    let jid = if args.jid.contains('/') {
        args.jid.clone()
    } else {
        format!("{}/query-{:08x}", args.jid, rand::random::<u32>())
    };
    parse_agent_jid(&jid).map_err(|e| fail(format!("--jid: {e}")))?;
    let password = std::fs::read_to_string(&args.password_file).map_err(|e| {
        fail(format!(
            "--password-file {}: cannot read it: {e}",
            args.password_file.display()
        ))
    })?;
    let password = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password);
    if password.is_empty() {
        return Err(fail(format!(
            "--password-file {} is empty",
            args.password_file.display()
        )));
    }
    Ok(XmppConfig {
        jid,
        password: Secret::new(password),
        server: args.server.clone(),
        ca_file: args.ca_file.clone(),
        allow_plaintext: args.allow_plaintext,
        request_timeout_secs: args.timeout,
        ping_interval_secs: 60,
        first_session_deadline_secs: args.timeout,
        max_stanza_bytes: crate::config::DEFAULT_MAX_STANZA_BYTES,
    })
}

/// A stanza error as one readable line.
pub fn describe_error(error: &StanzaError, to: &Jid) -> String {
    let condition = Element::from(error.defined_condition.clone())
        .name()
        .to_owned();
    let text = error
        .texts
        .get("en")
        .or_else(|| error.texts.values().next())
        .cloned()
        .unwrap_or_default();
    if let Some(upstream) = error
        .other
        .as_ref()
        .filter(|e| e.is("upstream-error", NS_QUOALISE))
    {
        let issuer = upstream.attr("issuer").unwrap_or("the upstream service");
        let code = upstream.attr("code").unwrap_or("unknown");
        return format!("{issuer} refused the request (code {code}): {text}");
    }
    let hint = match condition.as_str() {
        "service-unavailable" if text.is_empty() => {
            format!(" (is {to} online, and is it the agent's full JID?)")
        }
        _ => String::new(),
    };
    if text.is_empty() {
        format!("the agent answered {condition}{hint}")
    } else {
        format!("the agent answered {condition}: {text}{hint}")
    }
}

fn print_answer(
    command: &QueryCommand,
    payload: Element,
    out: &mut impl Write,
) -> Result<(), QueryError> {
    let answer = Command::from_element(payload)
        .map_err(|e| fail(format!("the agent's answer is not a valid <command/>: {e}")))?;
    if answer.status != Some(Status::Completed) {
        return Err(fail(format!(
            "the agent answered with status {:?} instead of completed",
            answer.status.map(|s| s.as_str())
        )));
    }
    for note in &answer.notes {
        eprintln!("note from the agent: {}", note.text);
    }
    let write_err = |e: std::io::Error| fail(format!("cannot write the output: {e}"));
    let Some(format) = command.format() else {
        let form = answer
            .form
            .ok_or_else(|| fail("the agent's answer has no result form"))?;
        return write_form(&form, out).map_err(write_err);
    };
    let quoalise = answer
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .ok_or_else(|| {
            fail("the agent's answer holds no <quoalise xmlns=\"urn:quoalise:0\"> payload")
        })?;
    let data = decode_element(quoalise)
        .map_err(|e| fail(format!("the agent's payload does not decode: {e}")))?;
    let series: Vec<TimeSeries> = data
        .iter()
        .map(Data::to_time_series)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("the agent's payload does not decode: {e}")))?;
    match format {
        Format::Xml => {
            let text = pretty_xml(quoalise).map_err(|e| fail(e.to_string()))?;
            writeln!(out, "{text}").map_err(write_err)?;
        }
        Format::Json => {
            let json: Vec<serde_json::Value> = series.iter().map(series_json).collect();
            let value = if json.len() == 1 {
                json.into_iter().next().unwrap_or_default()
            } else {
                serde_json::Value::Array(json)
            };
            serde_json::to_writer_pretty(&mut *out, &value)
                .map_err(|e| fail(format!("cannot write the output: {e}")))?;
            writeln!(out).map_err(write_err)?;
        }
        Format::Csv => {
            writeln!(out, "time,value").map_err(write_err)?;
            for s in &series {
                for r in &s.readings {
                    if let Some(v) = r.value {
                        writeln!(out, "{},{}", instant(r.start), v).map_err(write_err)?;
                    }
                }
            }
        }
    }
    for s in &series {
        eprintln!("{}", summary(s));
    }
    Ok(())
}

fn instant(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

fn series_json(s: &TimeSeries) -> serde_json::Value {
    serde_json::json!({
        "identifier": s.identifier.to_string(),
        "unit": s.identifier.series.unit(),
        "sampling": s.sampling().to_string(),
        "records": s.readings.iter().filter_map(|r| r.value.map(|v| serde_json::json!({
            "time": instant(r.start),
            "value": v,
        }))).collect::<Vec<_>>(),
    })
}

/// `336 records of urn:…: first 2026-11-21T23:00:00Z, last 2026-11-28T22:30:00Z, mean 512.3 W`
pub fn summary(s: &TimeSeries) -> String {
    let values: Vec<(i64, f64)> = s
        .readings
        .iter()
        .filter_map(|r| r.value.map(|v| (r.start, v)))
        .collect();
    let unit = s.identifier.series.unit();
    match (values.first(), values.last()) {
        (Some(first), Some(last)) => {
            let mean = values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64;
            let step = match s.sampling() {
                Step::Day => "P1D".to_owned(),
                other => other.to_string(),
            };
            format!(
                "{} records of {} ({step}): first {}, last {}, mean {:.1} {unit}",
                values.len(),
                s.identifier,
                instant(first.0),
                instant(last.0),
                mean
            )
        }
        _ => format!("0 records of {}", s.identifier),
    }
}

/// The result form of `list_usage_points` (or any form) as text.
fn write_form(form: &DataForm, out: &mut impl Write) -> std::io::Result<()> {
    if let Some(title) = &form.title {
        writeln!(out, "{title}")?;
    }
    if let Some(instructions) = &form.instructions {
        writeln!(out, "{instructions}")?;
    }
    for field in &form.fields {
        let name = field
            .label
            .as_deref()
            .or(field.var.as_deref())
            .unwrap_or("");
        match field.values.as_slice() {
            [] => writeln!(out, "{name}:")?,
            [one] => writeln!(out, "{name}: {one}")?,
            many => {
                writeln!(out, "{name}:")?;
                for v in many {
                    writeln!(out, "  {v}")?;
                }
            }
        }
    }
    Ok(())
}

/// Re-indents an element for reading (two spaces per level).
pub fn pretty_xml(element: &Element) -> Result<String, QueryError> {
    let mut raw = Vec::new();
    element
        .write_to(&mut raw)
        .map_err(|e| fail(format!("cannot serialise the payload: {e}")))?;
    let mut reader = quick_xml::Reader::from_reader(raw.as_slice());
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Eof) => break,
            Ok(event) => writer
                .write_event(event)
                .map_err(|e| fail(format!("cannot indent the payload: {e}")))?,
            Err(e) => return Err(fail(format!("cannot indent the payload: {e}"))),
        }
        buf.clear();
    }
    String::from_utf8(writer.into_inner()).map_err(|e| fail(format!("not UTF-8: {e}")))
}

//! `quoalise-agent query …`: ask an agent for data as a peer would, to check a
//! deployment or to export a range. It needs no agent configuration: it logs in
//! with the peer's own account, runs commands against the agent's FULL JID,
//! prints the answer and exits.
//!
//! ```text
//! quoalise-agent query --jid app@example.org --password-file pw --to agent@example.org/agent \
//!     get-history urn:dev:prm:22516914714270_consumption/power/active/raw \
//!     --start 2025-11-01T00:00:00+01:00 --end 2026-11-01T00:00:00+01:00 --format csv
//! ```
//!
//! Data commands (`get-history`, `get-load-curve`, `get-daily`) fetch ANY range:
//!
//! - they ask with `paging=true` and follow the agent's pages (XEP-0050
//!   multi-stage: `action="next"` with the session id until `completed`),
//!   checking that each page continues the previous one ([`paging`]);
//! - when the agent answers `not-acceptable` with `<answer-too-large
//!   max-days="N"/>` (it cannot or will not page), the range is split at Paris
//!   midnights (on dates for the legacy commands) into parts of at most N days,
//!   fetched one after the other;
//! - the records go to stdout as ONE document, written as pages arrive, so memory
//!   is bounded by one page whatever the range ([`output`]): `--format xml` the
//!   `<quoalise>` payload the agent would have sent for the whole range in one
//!   answer (first page's `<meta>`, one `<sensml>` with `bn`/`bt`/`bu` on its
//!   first record), indented; `json`; `csv` with `time,value`;
//! - a one-line summary of the whole range goes to stderr, and, when stderr is a
//!   terminal, a progress line while pages arrive ([`progress`]).
//!
//! `get-contract PRM` prints the contract and meter of a usage point, one line
//! per field Enedis gave (`--format xml`: the `<contract/>` payload); the
//! agent's notes (parts Enedis would not give) go to stderr ([`contract`]).
//!
//! A stanza error from the agent is printed with its condition, text and Enedis
//! code, and the exit status is 1; so is a failed login (with its likely cause),
//! a missing answer, or a page that does not continue where the previous one
//! stopped (what was already written to stdout is then incomplete, and the exit
//! status says so).

pub mod contract;
pub mod output;
pub mod paging;
pub mod progress;

#[cfg(test)]
mod fake;

pub use contract::ContractFormat;
pub use output::{MergeError, Merger};
pub use paging::{DataQuery, Exchange, ExchangeError, Page, Pager, fetch_data};
pub use progress::Progress;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use minidom::Element;
use quick_xml::events::Event;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::StanzaError;

use crate::config::{Secret, XmppConfig};
use crate::quoalise::{Identifier, Step, TimeSeries};
use crate::xmpp::connector::{Connector, parse_agent_jid};
use crate::xmpp::{
    AllowList, Command, CommandSet, IqError, NS_QUOALISE, Status, XmppAgent, XmppHandle,
};

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
    /// Seconds to wait for the login, then for each answer (each page).
    #[arg(long, default_value_t = 130, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: QueryCommand,
}

/// Output format of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The `<quoalise>` payload of the whole range, indented.
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
    /// get_contract: the contract and meter of a usage point (segment,
    /// subscribed power, tariff option, off-peak hours, meter type, dates…).
    GetContract {
        /// The usage point (14-digit PRM).
        usage_point_id: String,
        /// text: one line per field; xml: the <contract/> payload.
        #[arg(long, value_enum, default_value_t = ContractFormat::Text)]
        format: ContractFormat,
    },
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
            QueryCommand::GetContract { .. } => "get_contract",
        }
    }

    /// The form submitted with a command that is not a data command.
    fn form(&self) -> Option<DataForm> {
        match self {
            QueryCommand::GetContract { usage_point_id, .. } => {
                Some(submit_form(&[("usage_point_id", usage_point_id.as_str())]))
            }
            _ => None,
        }
    }

    /// The data request, `None` for `list-usage-points`.
    fn data_query(&self) -> Option<(DataQuery, Format)> {
        Some(match self {
            QueryCommand::GetHistory {
                identifier,
                start,
                end,
                format,
            } => (
                DataQuery::History {
                    identifier: identifier.clone(),
                    start: start.clone(),
                    end: end.clone(),
                },
                *format,
            ),
            QueryCommand::GetLoadCurve(a) | QueryCommand::GetDaily(a) => (
                DataQuery::Legacy {
                    node: self.node(),
                    usage_point_id: a.usage_point_id.clone(),
                    direction: a.direction.clone(),
                    start: a.start.clone(),
                    end: a.end.clone(),
                },
                a.format,
            ),
            QueryCommand::ListUsagePoints | QueryCommand::GetContract { .. } => return None,
        })
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
    // Buffered: records are written one by one (stdout alone flushes every line).
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = runtime.block_on(run(args, &mut out));
    let result = result.and_then(|()| {
        out.flush()
            .map_err(|e| fail(format!("cannot write the output: {e}")))
    });
    match result {
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
        let mut exchange = XmppExchange {
            handle: &handle,
            to: to.clone(),
            timeout,
        };
        match args.command.data_query() {
            Some((query, format)) => {
                let mut progress = Progress::on_stderr();
                let mut merger = Merger::new(format, &mut *out);
                let fetched = fetch_data(&mut exchange, &query, &mut merger, &mut progress).await;
                progress.clear();
                // After an error the document is left unclosed (an xml or json
                // output then does not parse): it is incomplete, and the exit
                // status says so.
                fetched?;
                let (summary, _) = merger.finish().map_err(|e| fail(e.to_string()))?;
                if let Some(summary) = summary {
                    eprintln!("{summary}");
                }
                Ok(())
            }
            None => {
                let request = Command::execute(args.command.node(), args.command.form());
                match exchange.send(request).await {
                    Ok(answer) => match &args.command {
                        QueryCommand::GetContract { format, .. } => {
                            contract::print_contract_answer(answer, *format, out)
                        }
                        _ => print_form_answer(answer, out),
                    },
                    Err(ExchangeError::Stanza(error)) => Err(fail(exchange.describe(&error))),
                    Err(ExchangeError::Failed(why)) => Err(fail(why)),
                }
            }
        }
    }
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), session).await;
    result
}

/// A submitted form of text fields.
fn submit_form(fields: &[(&str, &str)]) -> DataForm {
    use xmpp_parsers::data_forms::{DataFormType, Field};
    DataForm {
        type_: DataFormType::Submit,
        title: None,
        instructions: None,
        fields: fields
            .iter()
            .map(|(var, value)| Field::text_single(var, value))
            .collect(),
    }
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

/// The XMPP session as an [`Exchange`]: one iq per command, to the agent's full JID.
struct XmppExchange<'a> {
    handle: &'a XmppHandle,
    to: Jid,
    timeout: Duration,
}

impl Exchange for XmppExchange<'_> {
    async fn send(&mut self, request: Command) -> Result<Element, ExchangeError> {
        let answer = self
            .handle
            .send_iq(
                Some(self.to.clone()),
                IqRequestPayload::Set(request.into_element()),
                self.timeout,
            )
            .await;
        match answer {
            Ok(Some(payload)) => Ok(payload),
            Ok(None) => Err(ExchangeError::Failed(
                "the agent answered without a <command/>".to_owned(),
            )),
            Err(IqError::Error(error)) => Err(ExchangeError::Stanza(error)),
            Err(IqError::Timeout(t)) => Err(ExchangeError::Failed(format!(
                "no answer from {} within {} s (is the agent online?)",
                self.to,
                t.as_secs()
            ))),
            Err(IqError::Stopped) => Err(ExchangeError::Failed(
                "the XMPP session stopped before the answer came".to_owned(),
            )),
            Err(IqError::Unsendable(e)) => Err(ExchangeError::Failed(format!(
                "cannot send the request: {e}"
            ))),
        }
    }

    fn describe(&self, error: &StanzaError) -> String {
        describe_error(error, &self.to)
    }
}

/// The agent's `<command/>` answer in `payload`, which must be `completed`; its
/// notes go to stderr.
pub(crate) fn completed_answer(payload: Element) -> Result<Command, QueryError> {
    let answer = Command::from_element(payload)
        .map_err(|e| fail(format!("the agent's answer is not a valid <command/>: {e}")))?;
    if answer.status != Some(Status::Completed) {
        return Err(fail(format!(
            "the agent answered with status {} instead of completed",
            answer.status.map_or("(none)", |s| s.as_str())
        )));
    }
    for note in &answer.notes {
        eprintln!("note from the agent: {}", note.text);
    }
    Ok(answer)
}

/// The answer of a command without data (`list_usage_points`): its result form.
fn print_form_answer(payload: Element, out: &mut impl Write) -> Result<(), QueryError> {
    let answer = completed_answer(payload)?;
    let form = answer
        .form
        .ok_or_else(|| fail("the agent's answer has no result form"))?;
    write_form(&form, out).map_err(|e| fail(format!("cannot write the output: {e}")))
}

fn instant(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// `336 records of urn:…: first 2026-11-21T23:00:00Z, last 2026-11-28T22:30:00Z, mean 512.3 W`
pub fn summary(s: &TimeSeries) -> String {
    let values: Vec<(i64, f64)> = s
        .readings
        .iter()
        .filter_map(|r| r.value.filter(|v| v.is_finite()).map(|v| (r.start, v)))
        .collect();
    let mean = if values.is_empty() {
        0.0
    } else {
        values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64
    };
    let span = values.first().zip(values.last()).map(|(f, l)| (f.0, l.0));
    summary_line(&s.identifier, s.sampling(), values.len() as u64, span, mean)
}

/// The summary of `count` records from counters: `span` is (first, last) start.
fn summary_line(
    identifier: &Identifier,
    sampling: Step,
    count: u64,
    span: Option<(i64, i64)>,
    mean: f64,
) -> String {
    match span {
        Some((first, last)) if count > 0 => format!(
            "{count} records of {identifier} ({sampling}): first {}, last {}, mean {mean:.1} {}",
            instant(first),
            instant(last),
            identifier.series.unit()
        ),
        _ => format!("0 records of {identifier}"),
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

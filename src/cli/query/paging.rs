//! The client side of the agent's paging (XEP-0050 multi-stage sessions) and
//! the splitting of a range the agent finds too large.
//!
//! [`fetch_data`] asks for one range with `paging=true`, follows the pages
//! (`action="next"` with the session id) until the `completed` one, and hands
//! each page to a [`Merger`] as it arrives. When the agent answers
//! `not-acceptable` with `<answer-too-large max-days="N"/>` (it cannot or will
//! not page), the range is split at Paris midnights into consecutive parts of at
//! most N days (dates for `get_load_curve`/`get_daily`), fetched one after the
//! other; a part still refused is split again, down to one day.
//!
//! Pages are checked as they come ([`Pager`]): numbers follow each other, each
//! page starts at the `offset` where the previous stopped, holds the `records`
//! it announces, the `total` does not change and the last page reaches it.
//! Anything else is an error naming the page, never a partial output passed off
//! as whole.
//!
//! The XMPP session is behind [`Exchange`], so all of this runs in unit tests
//! on canned answers.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io::Write;

use jiff::Timestamp;
use jiff::civil::Date;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::output::Merger;
use super::progress::{Progress, Status as ProgressStatus};
use super::{QueryError, fail};
use crate::quoalise::NS_QUOALISE;
use crate::quoalise::decode_element;
use crate::time::{PARIS, add_days, day_start, paris_date, parse_date, parse_instant};
use crate::xmpp::{Action, Command, Status};

/// Sends one command to the agent and gives back its answer.
pub trait Exchange {
    /// Sends `request` and returns the `<command/>` element of the answer.
    fn send(&mut self, request: Command) -> impl Future<Output = Result<Element, ExchangeError>>;

    /// A stanza error of the agent as one readable line.
    fn describe(&self, error: &StanzaError) -> String;
}

/// Why [`Exchange::send`] gave no answer.
#[derive(Debug)]
pub enum ExchangeError {
    /// The agent answered with a stanza error.
    Stanza(Box<StanzaError>),
    /// No usable answer (timeout, session stopped, no `<command/>`): why.
    Failed(String),
}

/// One data request: which command, which range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataQuery {
    /// `get_history`; the times as given (the agent's defaults when absent).
    History {
        identifier: String,
        start: Option<String>,
        end: Option<String>,
    },
    /// `get_load_curve` or `get_daily`, on dates.
    Legacy {
        node: &'static str,
        usage_point_id: String,
        direction: String,
        start: String,
        end: String,
    },
}

impl DataQuery {
    pub fn node(&self) -> &'static str {
        match self {
            DataQuery::History { .. } => "get_history",
            DataQuery::Legacy { node, .. } => node,
        }
    }

    /// The submitted form: the command's fields and `paging=true`.
    pub fn form(&self) -> DataForm {
        let fields: Vec<(&str, &str)> = match self {
            DataQuery::History {
                identifier,
                start,
                end,
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
            DataQuery::Legacy {
                usage_point_id,
                direction,
                start,
                end,
                ..
            } => vec![
                ("usage_point_id", usage_point_id.as_str()),
                ("direction", direction.as_str()),
                ("start_date", start.as_str()),
                ("end_date", end.as_str()),
            ],
        };
        let mut fields: Vec<Field> = fields
            .into_iter()
            .map(|(var, value)| Field::text_single(var, value))
            .collect();
        let mut paging = Field::new("paging", FieldType::Boolean);
        paging.values.push("true".to_owned());
        fields.push(paging);
        DataForm {
            type_: DataFormType::Submit,
            title: None,
            instructions: None,
            fields,
        }
    }

    /// The range, for messages: `2026-01-01 to 2026-07-01`.
    pub fn range(&self) -> String {
        let (start, end) = match self {
            DataQuery::History { start, end, .. } => (
                start.as_deref().unwrap_or("(the agent's default)"),
                end.as_deref().unwrap_or("(the agent's default)"),
            ),
            DataQuery::Legacy { start, end, .. } => (start.as_str(), end.as_str()),
        };
        format!("{start} to {end}")
    }

    /// Consecutive parts covering the same range, each at most `max_days` Paris
    /// days long (fewer than this query's own days, so that splitting always
    /// progresses); an error when the range cannot be split.
    pub fn split(&self, max_days: u64) -> Result<Vec<DataQuery>, String> {
        match self {
            DataQuery::History {
                identifier,
                start,
                end,
            } => {
                let (Some(start_text), Some(end_text)) = (start, end) else {
                    return Err(
                        "give both --start and --end so that query can split the range".to_owned(),
                    );
                };
                let start = parse_instant(start_text).map_err(|e| format!("--start: {e}"))?;
                let end = parse_instant(end_text).map_err(|e| format!("--end: {e}"))?;
                let parts = split_instants(start, end, max_days)?;
                Ok(parts
                    .into_iter()
                    .map(|(s, e)| DataQuery::History {
                        identifier: identifier.clone(),
                        start: Some(s),
                        end: Some(e),
                    })
                    .collect())
            }
            DataQuery::Legacy {
                node,
                usage_point_id,
                direction,
                start,
                end,
            } => {
                let start = parse_date(start).map_err(|e| format!("--start: {e}"))?;
                let end = parse_date(end).map_err(|e| format!("--end: {e}"))?;
                let parts = split_dates(start, end, max_days)?;
                Ok(parts
                    .into_iter()
                    .map(|(s, e)| DataQuery::Legacy {
                        node,
                        usage_point_id: usage_point_id.clone(),
                        direction: direction.clone(),
                        start: s.to_string(),
                        end: e.to_string(),
                    })
                    .collect())
            }
        }
    }
}

/// `[start, end[` cut at Paris midnights into parts of at most `max_days` × 24
/// hours (fewer days than the range touches, so that a refused range always
/// gives two parts at least), as RFC 3339 instants in Paris time.
///
/// Hours, not calendar days: `max-days` counts records of 24-hour days, and a
/// part of N calendar days holding the 25-hour autumn day would hold more
/// records than N days. Such a part ends one midnight earlier; a part holding
/// the 23-hour spring day keeps its N days.
pub fn split_instants(
    start: Timestamp,
    end: Timestamp,
    max_days: u64,
) -> Result<Vec<(String, String)>, String> {
    if start >= end {
        return Err(format!("the range {start} to {end} is empty"));
    }
    let (start, end) = (start.as_second(), end.as_second());
    // Paris days the range touches: the day of `start` to the day of its last second.
    let days = (day(end - 1)? - day(start)?).get_days() as u64 + 1;
    let size = chunk_days(max_days, days)?;
    let mut cuts = cut(start, end, size, true)?;
    if cuts.len() < 2 {
        // Shorter than `size` × 24 hours yet over more than `size` days (e.g.
        // 23:00 to 01:00 two days later): cut at the calendar days instead.
        cuts = cut(start, end, size, false)?;
    }
    cuts.into_iter()
        .map(|(s, e)| Ok((paris_instant(s)?, paris_instant(e)?)))
        .collect()
}

/// `[start, end[` in parts of at most `max_days` days, and of at most
/// `max_days` × 24 hours as [`split_instants`] explains (fewer days than the
/// range, so that a refused range always gives two parts at least).
pub fn split_dates(start: Date, end: Date, max_days: u64) -> Result<Vec<(Date, Date)>, String> {
    if start >= end {
        return Err(format!("the range {start} to {end} is empty"));
    }
    let days = (end - start).get_days() as u64;
    let size = chunk_days(max_days, days)?;
    let seconds = |d: Date| day_start(d).map_err(|e| e.to_string());
    cut(seconds(start)?, seconds(end)?, size, true)?
        .into_iter()
        .map(|(s, e)| Ok((day(s)?, day(e)?)))
        .collect()
}

fn day(seconds: i64) -> Result<Date, String> {
    paris_date(seconds).map_err(|e| e.to_string())
}

/// Cuts `[start, end[` (UTC seconds) at Paris midnights into parts of at most
/// `size` days: of at most `size` × 24 hours when `hours`, else of at most
/// `size` calendar days. A part always reaches the next midnight at least.
fn cut(start: i64, end: i64, size: u64, hours: bool) -> Result<Vec<(i64, i64)>, String> {
    let size = i64::try_from(size).map_err(|_| format!("max-days {size} is too large"))?;
    let midnight = |d: Date| day_start(d).map_err(|e| e.to_string());
    let mut parts = Vec::new();
    let mut at = start;
    while at < end {
        let next = if hours {
            // The last midnight at most `size` × 24 hours after `at`.
            let limit = at.saturating_add(size.saturating_mul(86_400));
            if limit >= end {
                end
            } else {
                let latest = midnight(day(limit)?)?;
                if latest > at {
                    latest
                } else {
                    midnight(add_days(day(at)?, 1).map_err(|e| e.to_string())?)?
                }
            }
        } else {
            midnight(add_days(day(at)?, size).map_err(|e| e.to_string())?)?
        };
        let next = next.min(end);
        parts.push((at, next));
        at = next;
    }
    Ok(parts)
}

/// Days per part: `max_days`, but fewer than `days` (the agent refused `days`).
fn chunk_days(max_days: u64, days: u64) -> Result<u64, String> {
    if max_days == 0 {
        return Err("the agent says not even one day fits one answer (max-days=0)".to_owned());
    }
    if days <= 1 {
        return Err(format!(
            "the agent refuses even one day (max-days={max_days}): the range cannot be split further"
        ));
    }
    Ok(max_days.min(days - 1))
}

fn paris_instant(seconds: i64) -> Result<String, String> {
    let ts = Timestamp::from_second(seconds).map_err(|e| e.to_string())?;
    Ok(ts.display_with_offset(PARIS.to_offset(ts)).to_string())
}

/// `<page xmlns="urn:quoalise:0" number offset records total/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: u64,
    pub offset: u64,
    pub records: u64,
    pub total: u64,
}

impl Page {
    /// Reads the attributes of a `<page/>` element.
    pub fn from_element(element: &Element) -> Result<Page, String> {
        let attr = |name: &str| -> Result<u64, String> {
            let value = element
                .attr(name)
                .ok_or_else(|| format!("its <page/> has no {name} attribute"))?;
            value.parse::<u64>().map_err(|_| {
                format!(
                    "its <page/> has {name}={:?}, not a whole number",
                    value.chars().take(30).collect::<String>()
                )
            })
        };
        Ok(Page {
            number: attr("number")?,
            offset: attr("offset")?,
            records: attr("records")?,
            total: attr("total")?,
        })
    }
}

/// The pages of one session received so far; checks that each continues the
/// previous ones.
#[derive(Debug, Default, Clone)]
pub struct Pager {
    /// Pages accepted.
    pub pages: u64,
    /// Records in the pages accepted.
    pub received: u64,
    /// What the first page announced.
    pub total: Option<u64>,
}

impl Pager {
    /// Accepts the next answer: its `<page/>` (if any), the SenML records its
    /// payload holds and whether it is the last (`completed`). The error says
    /// what does not continue.
    pub fn accept(&mut self, page: Option<Page>, records: u64, last: bool) -> Result<(), String> {
        let expected = self.pages + 1;
        let Some(page) = page else {
            if self.pages == 0 && last {
                // An agent that does not page: one whole answer.
                self.pages = 1;
                self.received = records;
                self.total = Some(records);
                return Ok(());
            }
            return Err("the answer has no <page xmlns=\"urn:quoalise:0\"/> element".to_owned());
        };
        if page.number != expected {
            return Err(format!("the agent numbered it page {}", page.number));
        }
        if page.offset != self.received {
            return Err(if page.offset < self.received {
                format!(
                    "it starts at record offset {}, but the earlier pages already held {} records: it repeats {} of them",
                    page.offset,
                    self.received,
                    self.received - page.offset
                )
            } else {
                format!(
                    "it starts at record offset {}, but the earlier pages held {} records: {} records are missing",
                    page.offset,
                    self.received,
                    page.offset - self.received
                )
            });
        }
        if page.records != records {
            return Err(format!(
                "its <page/> announces records={} but its payload holds {records} SenML records",
                page.records
            ));
        }
        match self.total {
            Some(total) if total != page.total => {
                return Err(format!(
                    "its <page/> announces total={}, page 1 announced total={total}",
                    page.total
                ));
            }
            _ => {}
        }
        let reached = self.received + records;
        if reached > page.total {
            return Err(format!(
                "it ends at record {reached}, beyond the announced total of {}",
                page.total
            ));
        }
        if last && reached != page.total {
            return Err(format!(
                "it is the last page (completed) but the pages held {reached} of the {} records announced: {} are missing",
                page.total,
                page.total - reached
            ));
        }
        if !last && records == 0 {
            return Err("it holds no record yet announces more pages".to_owned());
        }
        self.pages = expected;
        self.received = reached;
        self.total = Some(page.total);
        Ok(())
    }
}

/// `max-days` of an `<answer-too-large/>` refusal (`not-acceptable`).
///
/// `Some(Ok(days))` when `error` is that refusal with a usable `max-days`,
/// `Some(Err(why))` when it is that refusal without one, `None` otherwise.
pub fn too_large(error: &StanzaError) -> Option<Result<u64, String>> {
    if error.defined_condition != DefinedCondition::NotAcceptable {
        return None;
    }
    let detail = error
        .other
        .as_ref()
        .filter(|e| e.is("answer-too-large", NS_QUOALISE))?;
    if error.type_ != ErrorType::Modify {
        return None;
    }
    Some(match detail.attr("max-days") {
        None => Err("its <answer-too-large/> has no max-days".to_owned()),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("its <answer-too-large/> has max-days={v:?}, not a whole number")),
    })
}

/// What ended the fetch of one part.
enum PartError {
    /// The agent refused the part as too large: split it in parts of this size.
    TooLarge {
        max_days: u64,
        message: String,
    },
    Fatal(QueryError),
}

impl From<QueryError> for PartError {
    fn from(e: QueryError) -> Self {
        PartError::Fatal(e)
    }
}

/// Counters over the whole fetch, for the progress line.
struct Totals {
    pages: u64,
    /// Records of the parts done.
    records_before: u64,
    notes: HashSet<String>,
}

/// Fetches `query` (following pages, splitting the range when the agent finds
/// it too large) into `merger`. Errors name the part and page that failed.
pub async fn fetch_data<E: Exchange, W: Write>(
    exchange: &mut E,
    query: &DataQuery,
    merger: &mut Merger<W>,
    progress: &mut Progress,
) -> Result<(), QueryError> {
    let mut queue = VecDeque::from([query.clone()]);
    let mut done = 0usize;
    let mut split = false;
    let mut totals = Totals {
        pages: 0,
        records_before: 0,
        notes: HashSet::new(),
    };
    while let Some(part) = queue.pop_front() {
        let position = split.then(|| (done + 1, done + 1 + queue.len()));
        match fetch_part(exchange, &part, position, merger, progress, &mut totals).await {
            Ok(records) => {
                done += 1;
                totals.records_before += records;
            }
            Err(PartError::TooLarge { max_days, message }) => {
                let parts = part.split(max_days).map_err(|why| {
                    fail(format!(
                        "{message}; query cannot split {}: {why}",
                        part.range()
                    ))
                })?;
                split = true;
                for p in parts.into_iter().rev() {
                    queue.push_front(p);
                }
            }
            Err(PartError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Fetches one part, following its pages; the number of records it held.
async fn fetch_part<E: Exchange, W: Write>(
    exchange: &mut E,
    part: &DataQuery,
    position: Option<(usize, usize)>,
    merger: &mut Merger<W>,
    progress: &mut Progress,
    totals: &mut Totals,
) -> Result<u64, PartError> {
    let node = part.node();
    let within = match position {
        Some((n, _)) => format!(" of part {n} ({})", part.range()),
        None => String::new(),
    };
    let request = Command::execute(node, Some(part.form()));
    let mut answer = match exchange.send(request).await {
        Ok(answer) => answer,
        Err(ExchangeError::Stanza(error)) => {
            let message = exchange.describe(&error);
            return Err(match too_large(&error) {
                Some(Ok(max_days)) => PartError::TooLarge { max_days, message },
                Some(Err(why)) => {
                    PartError::Fatal(fail(format!("{message}; {why}, so query cannot split")))
                }
                None => PartError::Fatal(fail(message)),
            });
        }
        Err(ExchangeError::Failed(why)) => return Err(PartError::Fatal(fail(why))),
    };
    let mut pager = Pager::default();
    let mut session: Option<String> = None;
    loop {
        let number = pager.pages + 1;
        // The session to cancel if this answer is refused: ours once known,
        // else the one the answer opens when it says more pages follow.
        let open_session = if answer.attr("status") == Some(Status::Executing.as_str()) {
            answer.attr("sessionid").map(str::to_owned)
        } else {
            None
        };
        let outcome = take_page(
            answer,
            &mut pager,
            &session,
            merger,
            &mut totals.notes,
            progress,
        )
        .map_err(|why| fail(format!("page {number}{within}: {why}")));
        let next = match outcome {
            Ok(next) => next,
            Err(e) => {
                if let Some(id) = session.or(open_session) {
                    cancel(exchange, node, &id).await;
                }
                return Err(e.into());
            }
        };
        totals.pages += 1;
        progress.update(ProgressStatus {
            pages: totals.pages,
            records: totals.records_before + pager.received,
            total: if position.is_none() {
                pager.total
            } else {
                None
            },
            part: position,
        });
        let Some(id) = next else {
            return Ok(pager.received);
        };
        session = Some(id.clone());
        let request = Command {
            sessionid: Some(id),
            action: Some(Action::Next),
            ..Command::execute(node, None)
        };
        answer = match exchange.send(request).await {
            Ok(answer) => answer,
            Err(ExchangeError::Stanza(error)) => {
                return Err(fail(format!(
                    "page {}{within}: {}",
                    number + 1,
                    exchange.describe(&error)
                ))
                .into());
            }
            Err(ExchangeError::Failed(why)) => {
                return Err(fail(format!("page {}{within}: {why}", number + 1)).into());
            }
        };
    }
}

/// Best effort: the session is abandoned, tell the agent (its answer does not
/// matter, the error that led here is what is reported).
async fn cancel<E: Exchange>(exchange: &mut E, node: &str, sessionid: &str) {
    let request = Command {
        sessionid: Some(sessionid.to_owned()),
        action: Some(Action::Cancel),
        ..Command::execute(node, None)
    };
    let _ = exchange.send(request).await;
}

/// Checks one answer, writes its records; the session id to ask the next page
/// of, `None` after the last page.
fn take_page<W: Write>(
    answer: Element,
    pager: &mut Pager,
    session: &Option<String>,
    merger: &mut Merger<W>,
    notes: &mut HashSet<String>,
    progress: &mut Progress,
) -> Result<Option<String>, String> {
    let answer = Command::from_element(answer)
        .map_err(|e| format!("the agent's answer is not a valid <command/>: {e}"))?;
    let last = match answer.status {
        Some(Status::Completed) => true,
        Some(Status::Executing) => false,
        Some(Status::Canceled) => return Err("the agent canceled the session".to_owned()),
        None => return Err("the agent's answer has no status".to_owned()),
    };
    if let Some(expected) = session
        && answer.sessionid.as_ref() != Some(expected)
    {
        return Err(format!(
            "the answer belongs to session {:?}, not to {expected:?}",
            answer.sessionid.as_deref().unwrap_or("(none)")
        ));
    }
    for note in &answer.notes {
        if notes.insert(note.text.clone()) {
            progress.clear();
            eprintln!("note from the agent: {}", note.text);
        }
    }
    let page = answer
        .payloads
        .iter()
        .find(|p| p.is("page", NS_QUOALISE))
        .map(Page::from_element)
        .transpose()?;
    if !last && page.is_none() {
        return Err(
            "the agent answered status executing without a <page xmlns=\"urn:quoalise:0\"/>: it asks for input query cannot give"
                .to_owned(),
        );
    }
    let next = if last {
        None
    } else {
        let offered = answer
            .actions
            .as_ref()
            .is_some_and(|a| a.next || a.execute == Some(Action::Next));
        if !offered {
            return Err("the answer is status executing but offers no next action".to_owned());
        }
        Some(
            answer
                .sessionid
                .clone()
                .ok_or("the answer is status executing but has no sessionid")?,
        )
    };
    let quoalise = answer
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .ok_or("the answer holds no <quoalise xmlns=\"urn:quoalise:0\"> payload")?;
    let mut data =
        decode_element(quoalise).map_err(|e| format!("its payload does not decode: {e}"))?;
    if data.len() != 1 {
        return Err(format!(
            "its payload holds {} <data> elements; query writes one series",
            data.len()
        ));
    }
    let data = data.swap_remove(0);
    pager.accept(page, data.records.len() as u64, last)?;
    let series = data
        .to_time_series()
        .map_err(|e| format!("its payload does not decode: {e}"))?;
    merger
        .piece(&data.meta, &series)
        .map_err(|e| e.to_string())?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

    use super::super::Format;
    use super::super::fake::{self, FakeAgent, page_element, stanza_error};
    use super::*;
    use crate::quoalise::{Series, Step, decode};

    const TEN_MINUTES: Step = Step::Minutes(10);

    fn history(start: &str, end: &str) -> DataQuery {
        DataQuery::History {
            identifier: fake::identifier(Series::ConsumptionPower).to_string(),
            start: Some(start.to_owned()),
            end: Some(end.to_owned()),
        }
    }

    /// Runs the fetch; the result, the output and the summary line.
    async fn run(
        agent: &mut FakeAgent,
        query: &DataQuery,
        format: Format,
    ) -> (Result<(), QueryError>, String, Option<String>) {
        let mut out = Vec::new();
        let mut merger = Merger::new(format, &mut out);
        let result = fetch_data(agent, query, &mut merger, &mut Progress::new(false)).await;
        let summary = match &result {
            Ok(()) => merger.finish().expect("the document closes").0,
            Err(_) => None,
        };
        (result, String::from_utf8(out).expect("UTF-8"), summary)
    }

    fn form_value(command: &Command, var: &str) -> Option<String> {
        command
            .form
            .as_ref()?
            .fields
            .iter()
            .find(|f| f.var.as_deref() == Some(var))
            .and_then(|f| f.values.first().cloned())
    }

    #[tokio::test]
    async fn pages_are_followed_to_the_end_and_merged() {
        // Eight days of a 10-minute meter, across the autumn DST change, in pages
        // of 500 records: 1,153 records (one 25-hour day), three pages.
        let mut agent = FakeAgent::new(Series::ConsumptionPower, TEN_MINUTES, 500);
        let query = history("2026-10-20T00:00:00+02:00", "2026-10-28T00:00:00+01:00");
        let (result, xml, summary) = run(&mut agent, &query, Format::Xml).await;
        result.expect("the fetch succeeds");

        let requests = &agent.sent;
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].action, Some(Action::Execute));
        assert_eq!(form_value(&requests[0], "paging").as_deref(), Some("true"));
        assert_eq!(
            form_value(&requests[0], "start_time").as_deref(),
            Some("2026-10-20T00:00:00+02:00")
        );
        for next in &requests[1..] {
            assert_eq!(next.action, Some(Action::Next));
            assert_eq!(next.sessionid.as_deref(), Some("s1"));
            assert_eq!(next.node.as_deref(), Some("get_history"));
            assert!(next.form.is_none());
        }

        let start = parse_instant("2026-10-20T00:00:00+02:00")
            .unwrap()
            .as_second();
        let end = parse_instant("2026-10-28T00:00:00+01:00")
            .unwrap()
            .as_second();
        let expected = fake::readings(Series::ConsumptionPower, TEN_MINUTES, start, end);
        assert_eq!(expected.len(), 1_158);
        let data = decode(&xml).expect("the merged XML decodes");
        assert_eq!(data.len(), 1);
        let series = data[0].to_time_series().expect("one series");
        assert_eq!(series.readings, expected);
        assert_eq!(series.sampling(), TEN_MINUTES);
        let summary = summary.expect("a summary");
        assert!(
            summary.starts_with(&format!(
                "1158 records of {} (PT10M): first 2026-10-19T22:00:00Z, last 2026-10-27T22:50:00Z, mean ",
                fake::identifier(Series::ConsumptionPower)
            )),
            "{summary}"
        );
    }

    #[tokio::test]
    async fn an_agent_that_does_not_page_answers_at_once() {
        let mut agent = FakeAgent::new(Series::ConsumptionPower, Step::PT30M, 10_000);
        agent.pages = false;
        let query = history("2026-01-05T00:00:00+01:00", "2026-01-07T00:00:00+01:00");
        let (result, csv, _) = run(&mut agent, &query, Format::Csv).await;
        result.expect("the fetch succeeds");
        assert_eq!(agent.sent.len(), 1);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 97);
        assert_eq!(lines[0], "time,value");
        assert!(
            lines[1].starts_with("2026-01-04T23:00:00Z,"),
            "{}",
            lines[1]
        );
    }

    #[tokio::test]
    async fn a_range_too_large_is_split_when_the_agent_cannot_page() {
        // A year of half-hours; the agent refuses more than 60 days at once.
        let mut agent = FakeAgent::new(Series::ConsumptionPower, Step::PT30M, 60 * 48);
        agent.pages = false;
        let query = history("2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00");
        let (result, json, summary) = run(&mut agent, &query, Format::Json).await;
        result.expect("the fetch succeeds");

        // The refused request, then 7 parts of at most 60 × 24 hours, none refused.
        assert_eq!(agent.sent.len(), 1 + 7);
        let ranges: Vec<(String, String)> = agent.sent[1..]
            .iter()
            .map(|c| {
                (
                    form_value(c, "start_time").unwrap(),
                    form_value(c, "end_time").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ranges[0],
            (
                "2026-01-01T00:00:00+01:00".to_owned(),
                "2026-03-02T00:00:00+01:00".to_owned()
            )
        );
        // The part across the spring change starts and ends at Paris midnight.
        assert_eq!(
            ranges[1],
            (
                "2026-03-02T00:00:00+01:00".to_owned(),
                "2026-05-01T00:00:00+02:00".to_owned()
            )
        );
        // The part across the autumn change (a 25-hour day) ends a day earlier:
        // 60 calendar days would hold 2,882 records, over the 2,880 refused.
        assert_eq!(
            ranges[4],
            (
                "2026-08-29T00:00:00+02:00".to_owned(),
                "2026-10-27T00:00:00+01:00".to_owned()
            )
        );
        assert_eq!(
            ranges[6],
            (
                "2026-12-26T00:00:00+01:00".to_owned(),
                "2027-01-01T00:00:00+01:00".to_owned()
            )
        );
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "parts are contiguous");
        }

        let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
        let records = json["records"].as_array().expect("records");
        assert_eq!(records.len(), 365 * 48);
        assert_eq!(json["unit"], "W");
        assert_eq!(json["sampling"], "PT30M");
        assert_eq!(records[0]["time"], "2025-12-31T23:00:00Z");
        assert!(summary.unwrap().starts_with("17520 records of "));
    }

    #[tokio::test]
    async fn legacy_commands_split_on_dates() {
        let mut agent = FakeAgent::new(Series::ConsumptionEnergyDaily, Step::Day, 40);
        agent.pages = false;
        let query = DataQuery::Legacy {
            node: "get_daily",
            usage_point_id: fake::PRM.to_owned(),
            direction: "consumption".to_owned(),
            start: "2026-01-01".to_owned(),
            end: "2026-04-01".to_owned(),
        };
        let (result, csv, _) = run(&mut agent, &query, Format::Csv).await;
        result.expect("the fetch succeeds");
        let dates: Vec<(String, String)> = agent.sent[1..]
            .iter()
            .map(|c| {
                (
                    form_value(c, "start_date").unwrap(),
                    form_value(c, "end_date").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            dates,
            [
                ("2026-01-01", "2026-02-10"),
                ("2026-02-10", "2026-03-22"),
                ("2026-03-22", "2026-04-01")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(
            form_value(&agent.sent[1], "paging").as_deref(),
            Some("true")
        );
        assert_eq!(csv.lines().count(), 1 + 90);
    }

    #[tokio::test]
    async fn a_part_still_refused_is_split_again() {
        // max-days=1 (48 records), but the agent refuses the 25-hour autumn day's
        // 50 records: that day cannot be split further.
        let mut agent = FakeAgent::new(Series::ConsumptionPower, Step::PT30M, 48);
        agent.pages = false;
        let query = history("2026-10-24T00:00:00+02:00", "2026-10-27T00:00:00+01:00");
        let (result, _, _) = run(&mut agent, &query, Format::Csv).await;
        let message = result.unwrap_err().to_string();
        assert_eq!(
            message,
            "the agent answered not-acceptable: 50 records do not fit one answer; query cannot split 2026-10-25T00:00:00+02:00 to 2026-10-26T00:00:00+01:00: the agent refuses even one day (max-days=1): the range cannot be split further"
        );
        let starts: Vec<String> = agent
            .sent
            .iter()
            .map(|c| form_value(c, "start_time").unwrap())
            .collect();
        assert_eq!(
            starts,
            [
                "2026-10-24T00:00:00+02:00",
                "2026-10-24T00:00:00+02:00",
                "2026-10-25T00:00:00+02:00"
            ]
        );

        let mut agent = FakeAgent::new(Series::ConsumptionPower, Step::PT30M, 47);
        agent.pages = false;
        let query = history("2026-01-01T00:00:00+01:00", "2026-01-03T00:00:00+01:00");
        let (result, _, _) = run(&mut agent, &query, Format::Csv).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.ends_with("the agent says not even one day fits one answer (max-days=0)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_range_with_default_times_is_not_split() {
        let mut agent = FakeAgent::new(Series::ConsumptionPower, Step::PT30M, 10);
        agent.pages = false;
        let query = DataQuery::History {
            identifier: fake::identifier(Series::ConsumptionPower).to_string(),
            start: Some("2026-01-01T00:00:00+01:00".to_owned()),
            end: None,
        };
        let message = query.split(1).unwrap_err();
        assert!(message.contains("give both --start and --end"), "{message}");
    }

    /// Runs a three-page fetch where `tamper` changes answers; the error.
    async fn tampered(
        tamper: impl FnMut(usize, Element) -> Result<Element, ExchangeError> + 'static,
    ) -> (String, FakeAgent, String) {
        let mut agent = FakeAgent::new(Series::ConsumptionPower, Step::PT30M, 48);
        agent.tamper = Some(Box::new(tamper));
        let query = history("2026-01-05T00:00:00+01:00", "2026-01-08T00:00:00+01:00");
        let (result, out, _) = run(&mut agent, &query, Format::Csv).await;
        (result.unwrap_err().to_string(), agent, out)
    }

    /// The `<page/>` of answer `element` replaced by `page`.
    fn with_page(element: Element, page: Element) -> Element {
        let mut command = Command::from_element(element).unwrap();
        command.payloads.retain(|p| !p.is("page", NS_QUOALISE));
        command.payloads.insert(0, page);
        command.into_element()
    }

    #[tokio::test]
    async fn a_page_that_skips_records_is_an_error_and_the_session_is_canceled() {
        let (message, agent, out) = tampered(|n, answer| {
            Ok(if n == 2 {
                with_page(answer, page_element(2, 50, 48, 144))
            } else {
                answer
            })
        })
        .await;
        assert_eq!(
            message,
            "page 2: it starts at record offset 50, but the earlier pages held 48 records: 2 records are missing"
        );
        let last = agent.sent.last().unwrap();
        assert_eq!(last.action, Some(Action::Cancel));
        assert_eq!(last.sessionid.as_deref(), Some("s1"));
        // What came before the error was written, nothing after it.
        assert_eq!(out.lines().count(), 1 + 48);
    }

    #[tokio::test]
    async fn a_refused_first_page_cancels_its_session() {
        let (message, agent, out) = tampered(|n, answer| {
            Ok(if n == 1 {
                with_page(answer, page_element(1, 0, 40, 144))
            } else {
                answer
            })
        })
        .await;
        assert_eq!(
            message,
            "page 1: its <page/> announces records=40 but its payload holds 48 SenML records"
        );
        assert!(out.is_empty(), "{out}");
        assert_eq!(agent.sent.len(), 2);
        let last = agent.sent.last().unwrap();
        assert_eq!(last.action, Some(Action::Cancel));
        assert_eq!(last.sessionid.as_deref(), Some("s1"));
    }

    #[tokio::test]
    async fn a_page_that_repeats_records_is_an_error() {
        let (message, _, _) = tampered(|n, answer| {
            Ok(if n == 3 {
                with_page(answer, page_element(3, 90, 48, 144))
            } else {
                answer
            })
        })
        .await;
        assert!(message.contains("it repeats 6 of them"), "{message}");
    }

    #[tokio::test]
    async fn a_page_whose_records_differ_from_its_count_is_an_error() {
        let (message, _, _) = tampered(|n, answer| {
            Ok(if n == 2 {
                with_page(answer, page_element(2, 48, 47, 144))
            } else {
                answer
            })
        })
        .await;
        assert_eq!(
            message,
            "page 2: its <page/> announces records=47 but its payload holds 48 SenML records"
        );
    }

    #[tokio::test]
    async fn a_last_page_short_of_the_total_is_an_error() {
        let (message, _, _) = tampered(|n, answer| {
            Ok(if n == 1 {
                with_page(answer, page_element(1, 0, 48, 150))
            } else if n > 1 {
                let number = n as u64;
                with_page(answer, page_element(number, 48 * (number - 1), 48, 150))
            } else {
                answer
            })
        })
        .await;
        assert_eq!(
            message,
            "page 3: it is the last page (completed) but the pages held 144 of the 150 records announced: 6 are missing"
        );
    }

    #[tokio::test]
    async fn a_page_with_the_same_times_again_is_an_overlap() {
        // Counts that add up, but page 2 carries page 1's records again.
        let mut first_page: Option<Element> = None;
        let (message, _, _) = tampered(move |n, answer| {
            Ok(match n {
                1 => {
                    first_page = Some(answer.clone());
                    answer
                }
                2 => {
                    let mut again = Command::from_element(first_page.clone().unwrap()).unwrap();
                    again.status = Some(Status::Executing);
                    again.payloads.retain(|p| !p.is("page", NS_QUOALISE));
                    again.payloads.insert(0, page_element(2, 48, 48, 144));
                    again.into_element()
                }
                _ => answer,
            })
        })
        .await;
        assert_eq!(
            message,
            "page 2: its first record (2026-01-04T23:00:00Z) is not after the last record already received (2026-01-05T22:30:00Z): the pieces overlap"
        );
    }

    #[tokio::test]
    async fn an_error_on_a_next_page_is_reported_with_its_page() {
        let (message, _, _) = tampered(|n, answer| {
            if n == 3 {
                Err(ExchangeError::Stanza(Box::new(stanza_error(
                    ErrorType::Auth,
                    DefinedCondition::NotAuthorized,
                    "the consent for 30001610071843 was revoked",
                ))))
            } else {
                Ok(answer)
            }
        })
        .await;
        assert_eq!(
            message,
            "page 3: the agent answered not-authorized: the consent for 30001610071843 was revoked"
        );
    }

    #[tokio::test]
    async fn a_missing_answer_or_a_canceled_session_is_an_error() {
        let (message, _, _) = tampered(|n, answer| {
            if n == 2 {
                Err(ExchangeError::Failed(
                    "no answer from agent@example.org/agent within 130 s (is the agent online?)"
                        .to_owned(),
                ))
            } else {
                Ok(answer)
            }
        })
        .await;
        assert_eq!(
            message,
            "page 2: no answer from agent@example.org/agent within 130 s (is the agent online?)"
        );

        let (message, _, _) = tampered(|n, answer| {
            Ok(if n == 2 {
                Command::answer("get_history", Some("s1".to_owned()), Status::Canceled)
                    .into_element()
            } else {
                answer
            })
        })
        .await;
        assert_eq!(message, "page 2: the agent canceled the session");
    }

    #[tokio::test]
    async fn an_executing_answer_must_offer_next_and_keep_its_session() {
        let (message, _, _) = tampered(|n, answer| {
            let mut command = Command::from_element(answer).unwrap();
            if n == 1 {
                command.actions = None;
            }
            Ok(command.into_element())
        })
        .await;
        assert_eq!(
            message,
            "page 1: the answer is status executing but offers no next action"
        );

        let (message, _, _) = tampered(|n, answer| {
            let mut command = Command::from_element(answer).unwrap();
            if n == 2 {
                command.sessionid = Some("other".to_owned());
            }
            Ok(command.into_element())
        })
        .await;
        assert_eq!(
            message,
            "page 2: the answer belongs to session \"other\", not to \"s1\""
        );
    }

    #[test]
    fn pager_accepts_contiguous_pages_only() {
        let page = |number, offset, records, total| Page {
            number,
            offset,
            records,
            total,
        };
        let mut p = Pager::default();
        p.accept(Some(page(1, 0, 10, 25)), 10, false).unwrap();
        p.accept(Some(page(2, 10, 10, 25)), 10, false).unwrap();
        assert_eq!(
            p.clone()
                .accept(Some(page(4, 20, 5, 25)), 5, true)
                .unwrap_err(),
            "the agent numbered it page 4"
        );
        assert_eq!(
            p.clone()
                .accept(Some(page(3, 20, 5, 30)), 5, true)
                .unwrap_err(),
            "its <page/> announces total=30, page 1 announced total=25"
        );
        assert_eq!(
            p.clone()
                .accept(Some(page(3, 20, 6, 25)), 6, true)
                .unwrap_err(),
            "it ends at record 26, beyond the announced total of 25"
        );
        assert_eq!(
            p.clone().accept(None, 5, true).unwrap_err(),
            "the answer has no <page xmlns=\"urn:quoalise:0\"/> element"
        );
        assert_eq!(
            p.clone()
                .accept(Some(page(3, 20, 0, 25)), 0, false)
                .unwrap_err(),
            "it holds no record yet announces more pages"
        );
        p.accept(Some(page(3, 20, 5, 25)), 5, true).unwrap();
        assert_eq!((p.pages, p.received, p.total), (3, 25, Some(25)));

        // One whole answer from an agent that does not page.
        let mut whole = Pager::default();
        whole.accept(None, 17_520, true).unwrap();
        assert_eq!(whole.received, 17_520);
        // An executing answer without <page/> is not paging.
        assert!(Pager::default().accept(None, 10, false).is_err());
        // An empty answer.
        Pager::default()
            .accept(Some(page(1, 0, 0, 0)), 0, true)
            .unwrap();
    }

    #[test]
    fn page_attributes_must_be_whole_numbers() {
        let e = page_element(1, 0, 10, 10);
        assert_eq!(
            Page::from_element(&e).unwrap(),
            Page {
                number: 1,
                offset: 0,
                records: 10,
                total: 10
            }
        );
        let bad = fake::element(&format!(
            r#"<page xmlns="{NS_QUOALISE}" number="1" offset="-3" records="10" total="10"/>"#
        ));
        assert_eq!(
            Page::from_element(&bad).unwrap_err(),
            "its <page/> has offset=\"-3\", not a whole number"
        );
        let missing = fake::element(&format!(r#"<page xmlns="{NS_QUOALISE}"/>"#));
        assert_eq!(
            Page::from_element(&missing).unwrap_err(),
            "its <page/> has no number attribute"
        );
    }

    #[test]
    fn too_large_reads_max_days() {
        let mut error = stanza_error(
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            "17520 records",
        );
        assert_eq!(too_large(&error), None);
        error.other = Some(fake::element(&format!(
            r#"<answer-too-large xmlns="{NS_QUOALISE}" records="17520" max-bytes="262144" step="PT30M" max-days="182"/>"#
        )));
        assert_eq!(too_large(&error), Some(Ok(182)));
        error.other = Some(fake::element(&format!(
            r#"<answer-too-large xmlns="{NS_QUOALISE}"/>"#
        )));
        assert_eq!(
            too_large(&error),
            Some(Err("its <answer-too-large/> has no max-days".to_owned()))
        );
        let other = stanza_error(ErrorType::Modify, DefinedCondition::BadRequest, "no");
        assert_eq!(too_large(&other), None);
    }

    fn instants(parts: &[(String, String)]) -> Vec<(&str, &str)> {
        parts
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    fn ts(s: &str) -> Timestamp {
        parse_instant(s).unwrap()
    }

    #[test]
    fn instant_ranges_split_at_paris_midnights_across_dst() {
        // 2026-03-29 (23 hours) and 2026-10-25 (25 hours).
        let parts = split_instants(
            ts("2026-03-27T00:00:00+01:00"),
            ts("2026-04-01T00:00:00+02:00"),
            2,
        )
        .unwrap();
        assert_eq!(
            instants(&parts),
            [
                ("2026-03-27T00:00:00+01:00", "2026-03-29T00:00:00+01:00"),
                ("2026-03-29T00:00:00+01:00", "2026-03-31T00:00:00+02:00"),
                ("2026-03-31T00:00:00+02:00", "2026-04-01T00:00:00+02:00"),
            ]
        );
        let parts = split_instants(
            ts("2026-10-24T00:00:00+02:00"),
            ts("2026-10-27T00:00:00+01:00"),
            1,
        )
        .unwrap();
        assert_eq!(
            instants(&parts),
            [
                ("2026-10-24T00:00:00+02:00", "2026-10-25T00:00:00+02:00"),
                ("2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"),
                ("2026-10-26T00:00:00+01:00", "2026-10-27T00:00:00+01:00"),
            ]
        );
        // Ends that are not midnights stay where they are.
        let parts =
            split_instants(ts("2026-01-01T12:00:00Z"), ts("2026-01-03T06:30:00Z"), 1).unwrap();
        assert_eq!(
            instants(&parts),
            [
                ("2026-01-01T13:00:00+01:00", "2026-01-02T00:00:00+01:00"),
                ("2026-01-02T00:00:00+01:00", "2026-01-03T00:00:00+01:00"),
                ("2026-01-03T00:00:00+01:00", "2026-01-03T07:30:00+01:00"),
            ]
        );
    }

    #[test]
    fn a_short_range_over_three_days_still_gives_two_parts() {
        // 26 hours over three Paris days, refused with max-days=5: parts of at
        // most 2 days.
        let parts = split_instants(
            ts("2026-01-01T23:00:00+01:00"),
            ts("2026-01-03T01:00:00+01:00"),
            5,
        )
        .unwrap();
        assert_eq!(
            instants(&parts),
            [
                ("2026-01-01T23:00:00+01:00", "2026-01-03T00:00:00+01:00"),
                ("2026-01-03T00:00:00+01:00", "2026-01-03T01:00:00+01:00"),
            ]
        );
    }

    #[test]
    fn a_range_within_max_days_is_still_split_in_fewer_days() {
        // The agent refused it: parts must be shorter than the range.
        let parts = split_dates(date(2026, 1, 1), date(2026, 1, 4), 30).unwrap();
        assert_eq!(
            parts,
            [
                (date(2026, 1, 1), date(2026, 1, 3)),
                (date(2026, 1, 3), date(2026, 1, 4))
            ]
        );
        assert!(
            split_dates(date(2026, 1, 1), date(2026, 1, 2), 30)
                .unwrap_err()
                .contains("cannot be split further")
        );
        assert!(
            split_dates(date(2026, 1, 1), date(2026, 3, 2), 0)
                .unwrap_err()
                .contains("max-days=0")
        );
        assert!(
            split_dates(date(2026, 1, 2), date(2026, 1, 1), 3)
                .unwrap_err()
                .contains("is empty")
        );
    }

    #[test]
    fn date_ranges_split_with_an_uneven_last_part() {
        // 182 days, except the part holding the 25-hour 2026-10-25: 181.
        let parts = split_dates(date(2026, 1, 1), date(2027, 1, 1), 182).unwrap();
        assert_eq!(
            parts,
            [
                (date(2026, 1, 1), date(2026, 7, 2)),
                (date(2026, 7, 2), date(2026, 12, 30)),
                (date(2026, 12, 30), date(2027, 1, 1)),
            ]
        );
        let parts = split_dates(date(2026, 2, 1), date(2026, 2, 11), 4).unwrap();
        assert_eq!(
            parts,
            [
                (date(2026, 2, 1), date(2026, 2, 5)),
                (date(2026, 2, 5), date(2026, 2, 9)),
                (date(2026, 2, 9), date(2026, 2, 11)),
            ]
        );
    }
}

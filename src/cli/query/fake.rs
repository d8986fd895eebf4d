//! A fake agent for the unit tests of `query`: answers `get_history`,
//! `get_load_curve` and `get_daily` with a synthetic series, in pages when asked
//! (`paging=true`), or refuses a range over `max_records` as the protocol says.
//! Answers are built with the crate's own encoder and `Command` type, so they
//! are what the real agent sends.

use std::collections::{HashMap, VecDeque};

use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::describe_error;
use super::paging::{Exchange, ExchangeError};
use crate::quoalise::{
    Identifier, MetaForm, Reading, Series, SeriesKind, Step, TimeSeries, encode_element,
};
use crate::time::{day_start, parse_date, parse_instant};
use crate::xmpp::forms::{FormBuilder, fixed};
use crate::xmpp::{Action, Actions, Command, NS_QUOALISE, Status};

pub const PRM: &str = "30001610071843";

pub fn identifier(series: Series) -> Identifier {
    Identifier::new(PRM.parse().expect("a valid PRM"), series)
}

/// The synthetic value at `start`: whole most of the time, sometimes fractional.
pub fn value_at(start: i64) -> f64 {
    let i = start / 600;
    if i % 7 == 5 {
        (i % 1000) as f64 + 0.25
    } else {
        (i * 37 % 1000) as f64
    }
}

/// Readings of `series` at `step` over `[start, end[` (daily series: Paris days).
pub fn readings(series: Series, step: Step, start: i64, end: i64) -> Vec<Reading> {
    let mut out = Vec::new();
    match (series.kind(), step.seconds()) {
        (SeriesKind::LoadCurve, Some(seconds)) => {
            let mut t = start;
            while t < end {
                out.push(Reading {
                    start: t,
                    step,
                    value: Some(value_at(t)),
                });
                t += seconds;
            }
        }
        _ => {
            let mut day = crate::time::paris_date(start).expect("a date");
            loop {
                let t = day_start(day).expect("a day start");
                if t >= end {
                    break;
                }
                if t >= start {
                    out.push(Reading {
                        start: t,
                        step: Step::Day,
                        value: Some(value_at(t)),
                    });
                }
                day = day.tomorrow().expect("a next day");
            }
        }
    }
    out
}

/// A `<page/>` element.
pub fn page_element(number: u64, offset: u64, records: u64, total: u64) -> Element {
    element(&format!(
        r#"<page xmlns="{NS_QUOALISE}" number="{number}" offset="{offset}" records="{records}" total="{total}"/>"#
    ))
}

/// An element from its text.
pub fn element(xml: &str) -> Element {
    xml.parse().expect("valid XML")
}

/// One answer `<command/>` with `status`, an optional `<page/>` and the payload
/// of `readings`.
pub fn answer(
    node: &str,
    sessionid: Option<&str>,
    status: Status,
    page: Option<Element>,
    identifier: Identifier,
    readings: Vec<Reading>,
    form: MetaForm,
) -> Element {
    let mut command = Command::answer(node, sessionid.map(str::to_owned), status);
    if status == Status::Executing {
        command.actions = Some(Actions {
            execute: Some(Action::Next),
            next: true,
            ..Actions::default()
        });
    }
    command.form = Some(
        FormBuilder::result("Get history")
            .field(fixed(Some("result"), Some("Get"), "Success"))
            .build(),
    );
    if let Some(page) = page {
        command.payloads.push(page);
    }
    let series = TimeSeries::new(identifier, readings);
    command
        .payloads
        .push(encode_element(&series, form).expect("the payload encodes"));
    command.into_element()
}

/// Changes an answer (numbered from 1) before it goes, or replaces it by an error.
pub type Tamper = Box<dyn FnMut(usize, Element) -> Result<Element, ExchangeError>>;

/// The fake agent.
pub struct FakeAgent {
    pub series: Series,
    pub step: Step,
    /// Records per page.
    pub page_records: usize,
    /// Whether it pages when asked.
    pub pages: bool,
    /// Largest answer without paging, in records.
    pub max_records: usize,
    /// Every request received.
    pub sent: Vec<Command>,
    /// Pages still to send, by session.
    sessions: HashMap<String, VecDeque<Element>>,
    /// Changes the `n`th answer (1-based, over the whole exchange) before it goes.
    pub tamper: Option<Tamper>,
    answers: usize,
}

impl FakeAgent {
    pub fn new(series: Series, step: Step, page_records: usize) -> Self {
        FakeAgent {
            series,
            step,
            page_records,
            pages: true,
            max_records: page_records,
            sent: Vec::new(),
            sessions: HashMap::new(),
            tamper: None,
            answers: 0,
        }
    }

    fn range(&self, form: &DataForm) -> (i64, i64) {
        let get = |var: &str| {
            form.fields
                .iter()
                .find(|f| f.var.as_deref() == Some(var))
                .and_then(|f| f.values.first().cloned())
        };
        if let Some(start) = get("start_time") {
            let end = get("end_time").expect("end_time");
            (
                parse_instant(&start).expect("start_time").as_second(),
                parse_instant(&end).expect("end_time").as_second(),
            )
        } else {
            let start = get("start_date").expect("start_date");
            let end = get("end_date").expect("end_date");
            (
                day_start(parse_date(&start).expect("start_date")).expect("a day"),
                day_start(parse_date(&end).expect("end_date")).expect("a day"),
            )
        }
    }

    fn meta_form(node: &str) -> MetaForm {
        if node == "get_history" {
            MetaForm::Flat
        } else {
            MetaForm::Nested
        }
    }

    fn respond(&mut self, request: Command) -> Result<Element, ExchangeError> {
        let node = request.node.clone().expect("a node");
        let identifier = identifier(self.series);
        if let Some(id) = &request.sessionid {
            let pages = self.sessions.get_mut(id).expect("a known session");
            return match request.action_or_default() {
                Action::Next => Ok(pages.pop_front().expect("a next page")),
                Action::Cancel => {
                    self.sessions.remove(id);
                    Ok(Command::answer(node, Some(id.clone()), Status::Canceled).into_element())
                }
                other => panic!("unexpected action {other:?}"),
            };
        }
        let form = request.form.as_ref().expect("a form");
        let paging = form
            .fields
            .iter()
            .any(|f| f.var.as_deref() == Some("paging") && f.values == ["true"]);
        let (start, end) = self.range(form);
        let all = readings(self.series, self.step, start, end);
        let total = all.len();
        let meta_form = Self::meta_form(&node);
        if !(paging && self.pages) {
            if total > self.max_records {
                let per_day = 86_400 / self.step.nominal_seconds();
                let mut error = StanzaError::new(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "en",
                    format!("{total} records do not fit one answer"),
                );
                let max_days = self.max_records as i64 / per_day;
                error.other = Some(element(&format!(
                    r#"<answer-too-large xmlns="{NS_QUOALISE}" records="{total}" max-bytes="262144" step="{}" max-days="{max_days}"/>"#,
                    self.step
                )));
                return Err(ExchangeError::Stanza(Box::new(error)));
            }
            let page = paging.then(|| page_element(1, 0, total as u64, total as u64));
            return Ok(answer(
                &node,
                None,
                Status::Completed,
                page,
                identifier,
                all,
                meta_form,
            ));
        }
        let session = format!("s{}", self.sessions.len() + 1);
        let chunks: Vec<Vec<Reading>> = if all.is_empty() {
            vec![Vec::new()]
        } else {
            all.chunks(self.page_records.max(1))
                .map(<[Reading]>::to_vec)
                .collect()
        };
        let count = chunks.len();
        let mut offset = 0u64;
        let mut pages: VecDeque<Element> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let records = chunk.len() as u64;
                let status = if i + 1 == count {
                    Status::Completed
                } else {
                    Status::Executing
                };
                let page = page_element(i as u64 + 1, offset, records, total as u64);
                offset += records;
                answer(
                    &node,
                    Some(&session),
                    status,
                    Some(page),
                    identifier,
                    chunk,
                    meta_form,
                )
            })
            .collect();
        let first = pages.pop_front().expect("one page at least");
        self.sessions.insert(session, pages);
        Ok(first)
    }
}

impl Exchange for FakeAgent {
    async fn send(&mut self, request: Command) -> Result<Element, ExchangeError> {
        self.sent.push(request.clone());
        let answer = self.respond(request);
        self.answers += 1;
        match (&mut self.tamper, answer) {
            (Some(tamper), Ok(answer)) => tamper(self.answers, answer),
            (_, answer) => answer,
        }
    }

    fn describe(&self, error: &StanzaError) -> String {
        describe_error(error, &Jid::new("agent@example.org/agent").expect("a JID"))
    }
}

/// A stanza error of `condition` with `text`.
pub fn stanza_error(type_: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(type_, condition, "en", text)
}

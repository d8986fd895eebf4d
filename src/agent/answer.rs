//! How a data answer reaches a peer, whatever its size.
//!
//! XMPP servers refuse stanzas over a size (Prosody and ejabberd: 256 KiB from
//! a client by default) and CLOSE THE WHOLE STREAM of a client that sends one.
//! A year of half-hours is about 470 KB. So every data answer is sized exactly
//! before it is sent (the stanza's envelope measured by the XMPP layer, the
//! payload as the bytes the encoder wrote), and:
//!
//! - it goes in ONE stanza when it fits (the common case);
//! - a peer that asked for pages (form field `paging` = true; Gajim/Psi users
//!   get it by default) gets it in PAGES through the XEP-0050 multi-stage flow:
//!   each page is an `executing` answer with a `next` action, its own complete
//!   Quoalise payload and `<page xmlns="urn:quoalise:0" number offset records
//!   total/>`; the last is `completed`. Pages are cut from ONE fetch of the
//!   readings, contiguous, each as full as the stanza allows. Every page is
//!   authorised again and written to the audit trail: a consent revoked
//!   mid-way stops the next page with `not-authorized`;
//! - any other peer gets `not-acceptable` (type `modify`) with the figures and
//!   the longest range that fits ([`TooLarge`]), before Enedis is called when
//!   the meter's step is known from the cache.
//!
//! Why XEP-0050 pages rather than XEP-0059 result set management: the answer
//! is already an ad-hoc command, whose multi-stage flow (`sessionid`, `next`,
//! `cancel`) every XEP-0050 client implements (Gajim and Psi show a "Next"
//! button) and which the agent's router already keeps sessions for; RSM inside
//! a command is defined by no XEP and no command client speaks it.

use std::sync::Arc;

use bytes::Bytes;
use minidom::Element;
use minidom::rxml::xml_ncname;
use xmpp_parsers::data_forms::DataForm;

use super::audit::Audit;
use super::authorise::authorise;
use super::context::AgentContext;
use super::data::{DataAnswer, fetch_with};
use super::request::{DataRequest, OneStanza};
use super::size::{PAGING_FIELD, too_large_after};
use crate::logging::RequestLog;
use crate::quoalise::{Identifier, NS_QUOALISE, Reading, TimeSeries, encode, encode_fitting};
use crate::xmpp::forms::fixed;
use crate::xmpp::{CommandError, Continuation, FormBuilder, Note, Outcome, Request, TooLarge};

/// How a data command titles its answer.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// Title of the result form ("Get history").
    pub title: &'static str,
    /// Label of its `result` field ("Get urn:dev:prm:…").
    pub label: String,
    /// Whether the peer asked for pages.
    pub paging: bool,
}

/// Reads `data` and answers it as one stanza, the first of its pages, or a
/// precise refusal (see the module doc).
pub async fn answer(
    ctx: &AgentContext,
    request: &Request,
    mut data: DataRequest,
    log: &mut RequestLog,
    presentation: Presentation,
) -> Result<Outcome, CommandError> {
    let limit = request.max_stanza_bytes();
    if !presentation.paging {
        // Room for the payload in a one-stanza answer without notes: what a
        // predictably larger range is refused against.
        let envelope = request.envelope_bytes(&single(&presentation, Vec::new(), None))?;
        data.max_payload = Some(OneStanza {
            room: limit.saturating_sub(envelope),
            limit,
        });
    }
    let shape = |answer: DataAnswer| shape(request, &data, answer, &presentation);
    fetch_with(ctx, &data, log, shape).await
}

/// The answer once the readings are in: encoded, sized, one stanza or pages.
fn shape(
    request: &Request,
    data: &DataRequest,
    answer: DataAnswer,
    presentation: &Presentation,
) -> Result<Outcome, CommandError> {
    let limit = request.max_stanza_bytes();
    let DataAnswer { series, notes, .. } = answer;
    let notes: Vec<Note> = notes.into_iter().map(Note::warn).collect();
    let records = present(&series.readings);
    if presentation.paging && records.saturating_mul(MIN_RECORD_BYTES) > limit as u64 {
        // Pages for sure: encode each page once, never the whole.
        let paged = Paged::first(data, series.readings, records, presentation);
        return page(request, &paged, notes);
    }
    let bytes = encode(&series, data.meta);
    let figures = presentation.paging.then_some(PageFigures {
        number: 1,
        offset: 0,
        records,
        total: records,
    });
    let mut outcome = single(presentation, notes, figures);
    // Far from the limit, the exact envelope need not be measured here: the
    // XMPP layer measures every stanza before it is sent anyway.
    let notes_len: usize = outcome.notes.iter().map(|n| n.text.len()).sum();
    if bytes.len() + notes_len + ENVELOPE_ALLOWANCE <= limit {
        outcome.data = Some(Bytes::from(bytes));
        return Ok(outcome);
    }
    let envelope = request.envelope_bytes(&outcome)?;
    if envelope + bytes.len() <= limit {
        outcome.data = Some(Bytes::from(bytes));
        return Ok(outcome);
    }
    if !presentation.paging {
        return Err(too_large_after(
            data,
            &series.readings,
            records,
            envelope + bytes.len(),
            limit,
            limit.saturating_sub(envelope),
        ));
    }
    let paged = Paged::first(data, series.readings, records, presentation);
    page(request, &paged, outcome.notes)
}

/// The smallest record after the first: `<senml t="N" v="N"/>`.
const MIN_RECORD_BYTES: u64 = r#"<senml t="1" v="1"/>"#.len() as u64;

/// Room kept for the envelope (iq, command, form, page element) of an answer
/// that is not measured because its payload is far below the limit.
const ENVELOPE_ALLOWANCE: usize = 8 * 1024;

/// The one-stanza answer, without its data: the result form saying "Success",
/// the notes, and the page element when the peer asked for pages.
fn single(presentation: &Presentation, notes: Vec<Note>, page: Option<PageFigures>) -> Outcome {
    let mut form = FormBuilder::result(presentation.title).field(fixed(
        Some("result"),
        Some(&presentation.label),
        "Success",
    ));
    if let Some(page) = &page {
        form = form.field(fixed(Some("page"), Some("Page"), &page.text(None)));
    }
    let mut outcome = Outcome::new().with_form(form.build());
    outcome.notes = notes;
    if let Some(page) = page {
        outcome = outcome.with_payload(page.element());
    }
    outcome
}

/// SenML records of `readings` (readings with a value).
fn present(readings: &[Reading]) -> u64 {
    readings
        .iter()
        .filter(|r| r.value.is_some_and(f64::is_finite))
        .count() as u64
}

/// What `<page/>` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFigures {
    /// From 1.
    pub number: u32,
    /// SenML records in the pages before.
    pub offset: u64,
    /// SenML records in this page.
    pub records: u64,
    /// SenML records in all pages.
    pub total: u64,
}

impl PageFigures {
    /// `<page xmlns="urn:quoalise:0" number=… offset=… records=… total=…/>`.
    pub fn element(&self) -> Element {
        Element::builder("page", NS_QUOALISE)
            .attr(xml_ncname!("number").to_owned(), self.number.to_string())
            .attr(xml_ncname!("offset").to_owned(), self.offset.to_string())
            .attr(xml_ncname!("records").to_owned(), self.records.to_string())
            .attr(xml_ncname!("total").to_owned(), self.total.to_string())
            .build()
    }

    /// For people: "page 2: records 8703 to 17520 of 17520 (… to …)".
    fn text(&self, span: Option<(i64, i64)>) -> String {
        let first = if self.records == 0 {
            self.offset
        } else {
            self.offset + 1
        };
        let mut text = format!(
            "page {}: records {first} to {} of {}",
            self.number,
            self.offset + self.records,
            self.total
        );
        if let Some((from, to)) = span {
            text.push_str(&format!(" ({} to {})", instant(from), instant(to)));
        }
        text
    }
}

fn instant(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// An answer being sent in pages: the readings of the one fetch, and where the
/// next page starts.
#[derive(Debug, Clone)]
pub struct Paged {
    /// The request (for authorising and auditing each page).
    data: DataRequest,
    readings: Arc<Vec<Reading>>,
    /// SenML records in all pages.
    total: u64,
    presentation: Presentation,
    /// Index in `readings` of the next page's first reading.
    next: usize,
    /// Records in the pages already sent.
    offset: u64,
    /// The next page's number.
    number: u32,
}

impl Paged {
    /// The first page of `readings`, `total` SenML records in all.
    fn first(
        data: &DataRequest,
        readings: Vec<Reading>,
        total: u64,
        presentation: &Presentation,
    ) -> Paged {
        Paged {
            data: data.clone(),
            readings: Arc::new(readings),
            total,
            presentation: presentation.clone(),
            next: 0,
            offset: 0,
            number: 1,
        }
    }
}

/// The first and last starts of `readings`, for a page's text.
fn span(readings: &[Reading]) -> Option<(i64, i64)> {
    readings
        .first()
        .zip(readings.last())
        .map(|(a, b)| (a.start, b.start))
}

/// The next page of `paged`, for a peer's `next`: authorised again (the
/// consent may have ended meanwhile) and written to the audit trail.
pub async fn next_page(
    ctx: &AgentContext,
    request: &Request,
    more: &Continuation,
    log: &mut RequestLog,
) -> Result<Outcome, CommandError> {
    let Some(paged) = more.get::<Paged>() else {
        return Err(CommandError::internal(
            "the session holds no answer to page: start the command again",
        ));
    };
    let mut audit = Audit::begin(&paged.data, log);
    let result = async {
        let settings = ctx.settings();
        let grant = authorise(ctx, &settings, &paged.data.requester, paged.data.identifier).await?;
        audit.allowed_on(&grant);
        page(request, paged, Vec::new())
    }
    .await;
    audit.end(&ctx.store, log, result).await
}

/// The page of `paged` starting at `paged.next`, as full as one stanza allows.
fn page(request: &Request, paged: &Paged, notes: Vec<Note>) -> Result<Outcome, CommandError> {
    let limit = request.max_stanza_bytes();
    let rest = &paged.readings[paged.next..];
    // Measured with the largest figures this page can show and with the
    // `next` action, so that the real page is never larger than measured.
    let widest = PageFigures {
        number: paged.number,
        offset: paged.total,
        records: paged.total,
        total: paged.total,
    };
    let provisional = page_outcome(paged, widest, span(rest), notes.clone(), true);
    let room = limit.saturating_sub(request.envelope_bytes(&provisional)?);
    let identifier: Identifier = paged.data.identifier;
    let Some((taken, bytes)) = encode_fitting(&identifier, rest, paged.data.meta, room) else {
        return Err(CommandError::TooLarge(Box::new(TooLarge {
            text: format!(
                "not even one record fits in the {limit} bytes the agent's XMPP server accepts in one stanza; its operator should raise the server's limit"
            ),
            records: paged.total,
            max_bytes: limit as u64,
            step: None,
            max_days: Some(0),
        })));
    };
    let taken_readings = &rest[..taken];
    let figures = PageFigures {
        number: paged.number,
        offset: paged.offset,
        records: present(taken_readings),
        total: paged.total,
    };
    let more = taken < rest.len();
    let mut outcome = page_outcome(paged, figures, span(taken_readings), notes, more);
    outcome.data = Some(Bytes::from(bytes));
    if more {
        outcome.more = Some(Continuation::new(Paged {
            next: paged.next + taken,
            offset: paged.offset + figures.records,
            number: paged.number + 1,
            ..paged.clone()
        }));
    }
    Ok(outcome)
}

/// A page's answer without its data: a form saying which page it is (a form
/// to submit with `next` while more follow, the result form on the last), the
/// notes, the page element.
fn page_outcome(
    paged: &Paged,
    figures: PageFigures,
    span: Option<(i64, i64)>,
    notes: Vec<Note>,
    more: bool,
) -> Outcome {
    let presentation = &paged.presentation;
    let form: DataForm = if more {
        FormBuilder::form(presentation.title)
            .instructions(format!(
                "{}: the answer is too large for one message and comes in pages; \"Next\" sends the following page.",
                presentation.label
            ))
            .field(fixed(Some("page"), Some("Page"), &figures.text(span)))
            .build()
    } else {
        FormBuilder::result(presentation.title)
            .field(fixed(Some("result"), Some(&presentation.label), "Success"))
            .field(fixed(Some("page"), Some("Page"), &figures.text(span)))
            .build()
    };
    let mut outcome = Outcome::new()
        .with_form(form)
        .with_payload(figures.element());
    outcome.notes = notes;
    // Only its presence matters for measuring: the real one is set by `page`.
    if more {
        outcome.more = Some(Continuation::new(()));
    }
    outcome
}

/// `series` as consecutive payloads of at most `room` bytes each (one when it
/// fits), for messages that cannot page: subscription pushes and catch-ups.
pub fn split(
    series: &TimeSeries,
    meta: crate::quoalise::MetaForm,
    room: usize,
) -> Result<Vec<Bytes>, TooLarge> {
    let whole = encode(series, meta);
    if whole.len() <= room {
        return Ok(vec![Bytes::from(whole)]);
    }
    let mut parts = Vec::new();
    let mut rest = &series.readings[..];
    while !rest.is_empty() {
        let Some((taken, bytes)) = encode_fitting(&series.identifier, rest, meta, room) else {
            return Err(TooLarge {
                text: format!("not even one record fits in {room} bytes"),
                records: present(rest),
                max_bytes: room as u64,
                step: None,
                max_days: Some(0),
            });
        };
        parts.push(Bytes::from(bytes));
        rest = &rest[taken..];
    }
    Ok(parts)
}

/// Whether the submitted form asks for pages.
pub fn wants_pages(form: &crate::xmpp::SubmittedForm) -> Result<bool, CommandError> {
    Ok(form.boolean(PAGING_FIELD, false)?)
}

/// The `paging` field of the forms shown to people (Gajim/Psi), on by default:
/// a person never gets a refusal for a range that pages can carry.
pub fn paging_field() -> xmpp_parsers::data_forms::Field {
    use crate::xmpp::FieldExt;
    crate::xmpp::forms::boolean(PAGING_FIELD, "Send long answers in pages")
        .desc(
            "Answers larger than one XMPP message come in pages: \"Next\" sends the following one.",
        )
        .value("true")
}

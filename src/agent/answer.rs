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
use super::data::{DataAnswer, DataRequest, fetch_with};
use crate::logging::RequestLog;
use crate::quoalise::{
    Identifier, NS_QUOALISE, Reading, SeriesView, Step, TimeSeries, encode, encode_fitting,
};
use crate::xmpp::forms::fixed;
use crate::xmpp::{CommandError, Continuation, FormBuilder, Note, Outcome, Request, TooLarge};

/// The form field by which a peer asks for pages.
pub const PAGING_FIELD: &str = "paging";

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
    log.prm(&paged.data.identifier.prm);
    log.window(&paged.data.window);
    let mut audit = Audit::begin(&paged.data, log.command());
    let result = async {
        let settings = ctx.settings();
        let grant = authorise(
            ctx,
            &settings,
            &paged.data.requester,
            paged.data.identifier.prm,
        )
        .await?;
        audit.allowed_on(&grant);
        page(request, paged, Vec::new())
    }
    .await;
    audit.end(&ctx.store, result).await
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

/// The refusal of an answer measured too large: the records, the bytes, the
/// longest range whose answer fits (from the readings themselves).
fn too_large_after(
    data: &DataRequest,
    readings: &[Reading],
    records: u64,
    bytes: usize,
    limit: usize,
    room: usize,
) -> CommandError {
    let step = SeriesView::new(data.identifier, readings).sampling();
    let max_days = encode_fitting(&data.identifier, readings, data.meta, room)
        .and_then(|(taken, _)| {
            let first = readings.first()?.start;
            let stop = readings.get(taken)?.start;
            Some(whole_days(first, stop))
        })
        .unwrap_or(0);
    refusal(
        data,
        step,
        records,
        max_days,
        limit,
        format!("the answer holds {records} records ({bytes} bytes with its envelope)"),
    )
}

/// The Paris calendar days, from the one holding `first`, that end by `stop`:
/// counted as days (23, 24 or 25 hours), not as 86,400 seconds, so that the
/// advised number of days fits also across a DST change.
fn whole_days(first: i64, stop: i64) -> u64 {
    let Ok(day) = crate::time::paris_date(first) else {
        return 0;
    };
    let mut days = 0u64;
    while let Ok(end) = crate::time::add_days(day, days as i64 + 1).and_then(crate::time::day_start)
    {
        if end > stop {
            break;
        }
        days += 1;
    }
    days
}

/// The refusal of a range whose answer is predictably too large for `room`
/// payload bytes at `step`, or `None` when it may fit.
///
/// The prediction counts every reading present, every value a single digit.
/// Real values have three to five digits, but meters miss readings (a sixth
/// of them for the simulator's meter with gaps), so a range is refused here
/// only when its answer would be too large even with a third of its readings
/// missing: nearer the limit, the readings are read and measured, and a range
/// the agent advised (after measuring) is never refused here.
pub fn too_large_before(data: &DataRequest, step: Step, one: OneStanza) -> Option<CommandError> {
    let room = one.room;
    let records = predictably_over(data, step, room)?;
    let seconds = step.nominal_seconds();
    // The advised range holds values of up to five digits (36 kVA is the
    // largest C5 meter): a range of that many days fits.
    let per_day = (86_400 / seconds).max(1) as u64;
    let mut days = 0u64;
    while payload_bound(data, step, (days + 1) * per_day, 5) <= room && days < 36_600 {
        days += 1;
    }
    Some(refusal(
        data,
        step,
        records,
        days,
        one.limit,
        format!("the answer would hold about {records} records"),
    ))
}

/// The records of `data`'s answer at `step` when it is too large for `room`
/// by the margin [`too_large_before`] explains; `None` when it may fit.
fn predictably_over(data: &DataRequest, step: Step, room: usize) -> Option<u64> {
    let span = data.window.end - data.window.start;
    let records = u64::try_from(span / step.nominal_seconds()).ok()?;
    (payload_bound(data, step, records, 1) / 3 * 2 > room).then_some(records)
}

/// The finest step a load curve is recorded at (Enedis: 5 minutes, C1–C4).
const FINEST_STEP: Step = Step::Minutes(5);

/// Whether `data`'s answer could be predictably too large for `one` whatever
/// the meter's step: when not, there is no step to look up (most requests).
pub fn may_be_too_large(data: &DataRequest, one: OneStanza) -> bool {
    let step = data.identifier.series.fixed_step().unwrap_or(FINEST_STEP);
    predictably_over(data, step, one.room).is_some()
}

/// Bytes of the payload of `records` readings at `step` whose values have
/// `digits` digits (the first record and the envelope encoded, the others
/// counted).
fn payload_bound(data: &DataRequest, step: Step, records: u64, digits: u32) -> usize {
    if records == 0 {
        return 0;
    }
    let value = f64::from(10u32.pow(digits.saturating_sub(1)));
    let first = Reading {
        start: data.window.start,
        step,
        value: Some(value),
    };
    let head = encode(&TimeSeries::new(data.identifier, vec![first]), data.meta).len();
    let seconds = step.nominal_seconds();
    const TAGS: usize = r#"<senml t="" v=""/>"#.len();
    let mut total = head;
    // Records grouped by the number of digits of their `t`.
    let mut t_digits = 1usize;
    let mut next_power: u64 = 10;
    let mut k: u64 = 1;
    while k < records {
        let t = k.saturating_mul(seconds as u64);
        while t >= next_power {
            t_digits += 1;
            next_power = next_power.saturating_mul(10);
        }
        // Records from k with t below next_power all have t_digits digits.
        let last_same = (next_power.saturating_sub(1) / seconds as u64).min(records - 1);
        let count = last_same - k + 1;
        total = total
            .saturating_add((count as usize).saturating_mul(TAGS + t_digits + digits as usize));
        k = last_same + 1;
    }
    total
}

fn refusal(
    data: &DataRequest,
    step: Step,
    records: u64,
    max_days: u64,
    limit: usize,
    what: String,
) -> CommandError {
    let series = data.identifier.series.describe(step);
    let advice = if max_days == 0 {
        format!("less than a day of {series} fits")
    } else {
        format!("ask for at most {max_days} days of {series} per request")
    };
    CommandError::TooLarge(Box::new(TooLarge {
        text: format!(
            "{what}, more than fits in the {limit} bytes the agent's XMPP server accepts in one stanza: {advice}, or ask for the answer in pages (form field '{PAGING_FIELD}' = true)"
        ),
        records,
        max_bytes: limit as u64,
        step: Some(step.to_string()),
        max_days: Some(max_days),
    }))
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

/// The room of a one-stanza answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneStanza {
    /// Bytes left for the payload.
    pub room: usize,
    /// The largest stanza.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quoalise::{MetaForm, Series};
    use crate::time::{Window, day_start};
    use jiff::civil::date;

    fn request(series: Series, days: i64) -> DataRequest {
        let end = day_start(date(2026, 12, 1)).unwrap();
        DataRequest {
            requester: "app@example.org".parse().unwrap(),
            identifier: Identifier::new("22516914714270".parse().unwrap(), series),
            window: Window {
                start: end - days * 86_400,
                end,
            },
            meta: MetaForm::Flat,
            period_fields: "start_time/end_time",
            deadline: tokio::time::Instant::now(),
            max_payload: None,
        }
    }

    #[test]
    fn the_step_is_looked_up_only_for_ranges_that_may_be_too_large() {
        let one = OneStanza {
            room: 261_000,
            limit: 262_144,
        };
        // A week fits even at 5-minute steps: no step to look up.
        assert!(!may_be_too_large(
            &request(Series::ConsumptionPower, 7),
            one
        ));
        // A year may not (a 30-minute meter's is refused before Enedis).
        let year = request(Series::ConsumptionPower, 365);
        assert!(may_be_too_large(&year, one));
        assert!(too_large_before(&year, Step::PT30M, one).is_some());
        // Three years of daily energy always fit.
        assert!(!may_be_too_large(
            &request(Series::ConsumptionEnergyDaily, 1096),
            one
        ));
        // Whatever a meter's step, a range that may not be too large at the
        // finest one is not refused before Enedis.
        for days in [1, 7, 30, 60] {
            let data = request(Series::ConsumptionPower, days);
            if !may_be_too_large(&data, one) {
                for minutes in [5, 10, 15, 30, 60] {
                    assert!(too_large_before(&data, Step::Minutes(minutes), one).is_none());
                }
            }
        }
    }

    #[test]
    fn whole_days_are_paris_days_across_dst_changes() {
        let at = |y, m, d| day_start(date(y, m, d)).unwrap();
        // 2026-10-25 lasts 25 hours: 8 days from 10-19 end at 10-27 00:00,
        // 8 × 86,400 s + 3,600 s after the start.
        let first = at(2026, 10, 19);
        assert_eq!(whole_days(first, first + 8 * 86_400), 7);
        assert_eq!(whole_days(first, at(2026, 10, 27)), 8);
        // 2026-03-29 lasts 23 hours.
        let first = at(2026, 3, 28);
        assert_eq!(whole_days(first, first + 2 * 86_400 - 3_600), 2);
        assert_eq!(whole_days(first, first + 2 * 86_400 - 3_601), 1);
        // A first reading in the middle of its day counts from that day.
        assert_eq!(whole_days(at(2026, 6, 1) + 1_800, at(2026, 6, 3)), 2);
        assert_eq!(whole_days(at(2026, 6, 1), at(2026, 6, 1) + 1_800), 0);
    }
}

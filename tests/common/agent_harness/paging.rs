//! Reading a data answer in pages (XEP-0050 `next`) as a Rust peer, and
//! checking the pages as a peer would: every page's `<page/>` figures, its own
//! complete Quoalise payload, the records of all pages together.
//!
//! Each page's size on the wire is measured again here, as the agent measures
//! it (`quoalise_agent::xmpp::wire::stanza_size` on the answer rebuilt without
//! its payload, plus the payload's bytes as the agent's encoder writes them), so
//! that a test can check that a page is as full as the limit allows.

use minidom::Element;
use quoalise_agent::quoalise::{Identifier, MetaForm, Reading, TimeSeries, decode_element, encode};
use quoalise_agent::xmpp::{Action, Command, NS_QUOALISE, Status};
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use crate::common::xmpp_harness::{Peer, condition, submit};

/// One answer of a paged read.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: Status,
    pub sessionid: String,
    /// `<actions execute="next"><next/></actions>`.
    pub offers_next: bool,
    /// `<page number offset records total/>`.
    pub number: u64,
    pub offset: u64,
    pub records: u64,
    pub total: u64,
    pub form: Option<DataForm>,
    pub meta_form: MetaForm,
    pub series: TimeSeries,
    /// The answer's size on the wire, as the agent sent it.
    pub wire_bytes: usize,
    /// What one more record (the next page's first) would have added to it.
    pub next_record_bytes: Option<usize>,
}

/// A command request with `fields`, `paging` = true.
pub fn paged_request(node: &str, fields: &[(&str, &str)]) -> Command {
    let mut fields = fields.to_vec();
    fields.push(("paging", "true"));
    Command::execute(node, Some(submit(&fields)))
}

/// `<command node=… sessionid=… action=…/>`.
pub fn action(node: &str, sessionid: &str, action: Action) -> Command {
    let mut command = Command::execute(node, None);
    command.sessionid = Some(sessionid.to_owned());
    command.action = Some(action);
    command
}

/// Sends `command`; the answer as a [`Page`], or the stanza error's condition
/// and text.
pub async fn request_page(peer: &Peer, command: Command) -> Result<Page, (String, String)> {
    let answer = peer.command(command).await.map_err(|e| condition(&e))?;
    Ok(page_of(answer, &peer.running.handle.jid().clone().into()))
}

/// The first page of `node` with `fields` (paging on), then `next` until the
/// answer is completed. Panics on an error.
pub async fn read_all(peer: &Peer, node: &str, fields: &[(&str, &str)]) -> Vec<Page> {
    let mut pages = vec![
        request_page(peer, paged_request(node, fields))
            .await
            .unwrap_or_else(|e| panic!("first page of {node} {fields:?}: {e:?}")),
    ];
    while let Some(last) = pages.last().filter(|p| p.status == Status::Executing) {
        assert!(pages.len() < 1000, "more than 1000 pages");
        let next = action(node, &last.sessionid, Action::Next);
        let page = request_page(peer, next)
            .await
            .unwrap_or_else(|e| panic!("page {} of {node}: {e:?}", pages.len() + 1));
        pages.push(page);
    }
    pages
}

/// Reads one answer: its status, actions, `<page/>`, form, decoded payload.
pub fn page_of(answer: Command, peer: &Jid) -> Page {
    let status = answer.status.expect("a status");
    let sessionid = answer.sessionid.clone().expect("a sessionid");
    let offers_next = answer
        .actions
        .as_ref()
        .is_some_and(|a| a.next && a.execute == Some(Action::Next));
    let page = answer
        .payloads
        .iter()
        .find(|p| p.is("page", NS_QUOALISE))
        .unwrap_or_else(|| panic!("no <page/> in {answer:?}"));
    let figure = |name: &str| -> u64 {
        page.attr(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("<page/> without a number {name}: {page:?}"))
    };
    let (number, offset, records, total) = (
        figure("number"),
        figure("offset"),
        figure("records"),
        figure("total"),
    );
    let quoalise: Vec<&Element> = answer
        .payloads
        .iter()
        .filter(|p| p.is("quoalise", NS_QUOALISE))
        .collect();
    assert_eq!(quoalise.len(), 1, "one Quoalise payload per page");
    let data = decode_element(quoalise[0])
        .unwrap_or_else(|e| panic!("page {number}'s payload does not decode: {e}"));
    assert_eq!(data.len(), 1, "one <data> per page");
    let series = data[0]
        .to_time_series()
        .unwrap_or_else(|e| panic!("page {number}'s payload is no time series: {e}"));
    let meta_form = data[0].meta.form;

    // The size: the answer without its payload, as the agent serialises it
    // (no `from`, its iq id is 32 characters), plus the payload's bytes.
    let mut envelope = answer.clone();
    envelope.payloads.retain(|p| !p.is("quoalise", NS_QUOALISE));
    let iq = Iq::Result {
        from: None,
        to: Some(peer.clone()),
        id: "0".repeat(32),
        payload: Some(envelope.into_element()),
    };
    let envelope = quoalise_agent::xmpp::wire::stanza_size(&iq.into()).expect("measurable");
    let payload = encode(&series, meta_form).len();
    Page {
        status,
        sessionid,
        offers_next,
        number,
        offset,
        records,
        total,
        form: answer.form,
        meta_form,
        series,
        wire_bytes: envelope + payload,
        next_record_bytes: None,
    }
}

/// Checks what a peer relies on and returns the records of all pages in order:
/// pages numbered from 1 in one session, `executing` with a `next` action but
/// the last (`completed`, none), contiguous offsets, `records` the page's own,
/// one `total` equal to the sum, the payloads of one identifier.
/// Also fills in each page's `next_record_bytes`.
#[track_caller]
pub fn check_pages(pages: &mut [Page], identifier: &Identifier) -> Vec<Reading> {
    assert!(!pages.is_empty());
    let total = pages[0].total;
    let sessionid = pages[0].sessionid.clone();
    let mut all: Vec<Reading> = Vec::new();
    let count = pages.len();
    for (i, page) in pages.iter().enumerate() {
        let last = i + 1 == count;
        assert_eq!(page.number, i as u64 + 1, "page numbers");
        assert_eq!(page.sessionid, sessionid, "one session for all pages");
        assert_eq!(page.total, total, "page {}: total", page.number);
        assert_eq!(
            page.offset,
            all.len() as u64,
            "page {}: offset = records before it",
            page.number
        );
        assert_eq!(
            page.records,
            page.series.readings.len() as u64,
            "page {}: records = its payload's",
            page.number
        );
        assert!(page.records > 0, "page {} is empty", page.number);
        assert_eq!(page.series.identifier, *identifier);
        if last {
            assert_eq!(page.status, Status::Completed, "the last page completes");
            assert!(!page.offers_next, "the last page offers no next");
        } else {
            assert_eq!(page.status, Status::Executing, "page {}", page.number);
            assert!(page.offers_next, "page {} offers next", page.number);
        }
        all.extend(page.series.readings.iter().copied());
    }
    assert_eq!(all.len() as u64, total, "the pages hold the total");
    // What the next page's first record would have added to each page.
    for i in 0..count.saturating_sub(1) {
        let page = &pages[i];
        let mut more = page.series.readings.clone();
        more.push(pages[i + 1].series.readings[0]);
        let grown = encode(&TimeSeries::new(*identifier, more), page.meta_form).len();
        let own = encode(&page.series, page.meta_form).len();
        pages[i].next_record_bytes = Some(grown - own);
    }
    all
}

/// Panics unless every page but the last is at most `limit` bytes and would
/// have been over it with one more record (give or take `slack` bytes: the
/// agent sizes a page's envelope with the widest figures it can show).
#[track_caller]
pub fn assert_pages_full(pages: &[Page], limit: usize, slack: usize) {
    for page in pages {
        assert!(
            page.wire_bytes <= limit,
            "page {} is {} bytes, over the {limit} bytes limit",
            page.number,
            page.wire_bytes
        );
        if let Some(record) = page.next_record_bytes {
            assert!(
                page.wire_bytes + record + slack > limit,
                "page {} is {} bytes: one more record ({record} bytes) would still fit in {limit}",
                page.number,
                page.wire_bytes
            );
        }
    }
}

/// Readings start every `step` seconds from `from` to `to` (excluded), each
/// with a value: no gap, no duplicate, in order.
#[track_caller]
pub fn assert_contiguous(readings: &[Reading], from: i64, to: i64, step: i64) {
    assert_eq!(
        readings.len() as i64,
        (to - from) / step,
        "one reading per step from {from} to {to}"
    );
    for (i, r) in readings.iter().enumerate() {
        assert_eq!(
            r.start,
            from + i as i64 * step,
            "reading {i} starts at its step"
        );
        assert!(r.value.is_some(), "reading {i} has a value");
    }
}

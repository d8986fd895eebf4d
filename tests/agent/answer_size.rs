//! Answers of any size through the REAL agent (`quoalise-agent run`), a real
//! Prosody and the REAL `enedis-sim`, with Rust and slixmpp peers.
//!
//! An XMPP server closes the WHOLE stream of a client that sends a stanza over
//! its limit (Prosody: `c2s_stanza_size_limit`, 256 KiB by default). A year of
//! 30-minute load curve is about 470 KB. What a peer sees:
//!
//! - without paging, a precise `not-acceptable` (`<answer-too-large/>`: records,
//!   bytes, step, the longest range that fits, and that range does fit), before
//!   Enedis is called when the meter's step is known; the agent's session lives
//!   on and other peers are served;
//! - with paging (`paging` = true, the default of the forms people get), every
//!   record in `executing` pages read with `next`, each page a complete Quoalise
//!   payload as full as the limit allows, the last `completed`; with a server
//!   limit of 20,000 bytes (the agent's own limit, or the one Prosody 13
//!   advertises, XEP-0478), no page closes the stream;
//! - a consent revoked mid-way stops the next page; `cancel` ends the session;
//! - subscription catch-ups larger than a stanza come in several messages;
//! - a meter with gaps: pages hold exactly the readings it has, and the days
//!   advised after measuring are answered; the advice counts Paris days (the
//!   25-hour day of October included).
//!
//! The year is the last twelve whole months (2025-12-01 to 2026-12-01 in
//! December 2026). The figures of a refusal and the fill of a page are
//! checked against sizes measured as the agent measures them
//! (tests/common/agent_harness/paging.rs).

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::paging::{
    Page, action, assert_contiguous, assert_pages_full, check_pages, paged_request, read_all,
    request_page,
};
use agent_harness::*;
use common::prosody::{Prosody, ProsodyOptions, ProsodyVersion};
use common::xmpp_harness::{Peer, Slix, condition, submit};
use jiff::ToSpan;
use jiff::civil::Date;
use minidom::Element;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Identifier, MetaForm, Reading, decode};
use quoalise_agent::store::{AccessBasis, AuditFilter, ConsentState, NewConsent, Store};
use quoalise_agent::time::due_through;
use quoalise_agent::xmpp::{Action, Command, NS_QUOALISE, Status};
use serde_json::Value;
use xmpp_parsers::stanza_error::ErrorType;

const POWER: &str = "consumption/power/active/raw";
const DEFAULT_LIMIT: usize = 262_144;

fn identifier(prm: &str, series: &str) -> String {
    format!("urn:dev:prm:{prm}_{series}")
}

/// The year of the tests: twelve whole months of Paris days, both DST changes
/// inside (2025-12-01 to 2026-12-01 in December 2026: 17,520 half-hours).
fn year() -> (Date, Date) {
    last_full_year()
}

/// A week in the middle of the year.
fn midyear_week() -> (Date, Date) {
    let from = year().0.checked_add(6.months()).unwrap();
    (from, from.checked_add(7.days()).unwrap())
}

fn history_fields(id: &str, from: Date, to: Date) -> Vec<(&'static str, String)> {
    vec![
        ("identifier", id.to_owned()),
        ("start_time", midnight(from)),
        ("end_time", midnight(to)),
    ]
}

fn borrowed<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The `<answer-too-large/>` of a slixmpp error answer, its attributes.
#[track_caller]
fn too_large(answer: &Value) -> (u64, u64, String, u64) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["condition"], "not-acceptable", "{answer}");
    assert_eq!(answer["etype"], "modify", "{answer}");
    let error: Element = answer["xml"]
        .as_str()
        .expect("the error's XML")
        .parse()
        .expect("the error parses");
    let element = error
        .children()
        .find(|c| c.is("answer-too-large", NS_QUOALISE))
        .unwrap_or_else(|| panic!("no <answer-too-large/>: {answer}"));
    let number = |name: &str| -> u64 {
        element
            .attr(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number {name} in {element:?}"))
    };
    (
        number("records"),
        number("max-bytes"),
        element.attr("step").unwrap_or_default().to_owned(),
        number("max-days"),
    )
}

/// Records of a slixmpp (quoalise_peer.py) data answer: (UTC seconds, value).
fn python_records(answer: &Value) -> Vec<(i64, f64)> {
    answer["data"][0]["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records: {answer}"))
        .iter()
        .map(|r| {
            (
                r["time"].as_f64().unwrap() as i64,
                r["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn seconds(day: Date) -> i64 {
    midnight_seconds(day)
}

/// A stanza error's XEP-0050 condition (`bad-sessionid`, `bad-action`…), if any.
fn specific(error: &xmpp_parsers::stanza_error::StanzaError) -> Option<String> {
    error.other.as_ref().map(|e| e.name().to_owned())
}

// --- 1. without paging: a precise refusal, the session untouched ---------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_without_paging_is_refused_precisely_and_the_session_lives_on() {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("bob", &[PRM]),
    ]))
    .await;
    let bob = Peer::login(&d.prosody, "bob@localhost/b").await;
    let id = identifier(PRM, POWER);
    let (from, to) = year();

    // The Quoalise client's exact request for the year; bob asks a week
    // meanwhile, while the agent reads the year from Enedis.
    let (week_from, week_to) = midyear_week();
    let week = history_fields(&id, week_from, week_to);
    let (start, end) = (midnight(from), midnight(to));
    let args = [id.as_str(), &start, &end];
    let (answer, bobs) = tokio::join!(
        d.python("alice@localhost/quoalise", "history", &args),
        async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            bob.command(Command::execute(
                "get_history",
                Some(submit(&borrowed(&week))),
            ))
            .await
        }
    );
    let (records, max_bytes, step, max_days) = too_large(&answer);
    assert_eq!(records, half_hours(from, to), "{answer}");
    assert_eq!(max_bytes, DEFAULT_LIMIT as u64);
    assert_eq!(step, "PT30M");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "ask for at most {max_days} days of 30-minute load curve per request"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{records} records")), "{text}");
    assert!(
        (100..365).contains(&max_days),
        "about 470 KB a year for 256 KiB: {max_days}"
    );
    let bobs = bobs.unwrap_or_else(|e| panic!("bob's week: {:?}", condition(&e)));
    assert_eq!(bobs.status, Some(Status::Completed));

    // The advice holds: max-days from the same start is answered, in one
    // stanza; one day more is not.
    let until = from.checked_add((max_days as i64).days()).unwrap();
    let fits = d
        .python(
            "alice@localhost/quoalise",
            "history",
            &[&id, &midnight(from), &midnight(until)],
        )
        .await;
    assert_eq!(fits["status"], "completed", "{fits}");
    let times: Vec<i64> = python_records(&fits).iter().map(|r| r.0).collect();
    assert_eq!(
        times.len() as i64,
        (seconds(until) - seconds(from)) / 1800,
        "every half-hour of {max_days} days"
    );
    let beyond = from.checked_add((max_days as i64 + 1).days()).unwrap();
    let over = d
        .python(
            "alice@localhost/quoalise",
            "history",
            &[&id, &midnight(from), &midnight(beyond)],
        )
        .await;
    too_large(&over);

    // The agent never lost its stream: bob is still served.
    let again = bob
        .command(Command::execute(
            "get_history",
            Some(submit(&borrowed(&week))),
        ))
        .await
        .unwrap_or_else(|e| panic!("{:?}", condition(&e)));
    assert_eq!(again.status, Some(Status::Completed));
    d.agent.assert_session_untouched();
}

// --- 2. with paging: every record, in pages as full as the limit allows ---------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_in_pages_arrives_whole_in_order_and_pages_are_full() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer(
        "alice",
        &[PRM, PRM_PT10M],
    )]))
    .await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let (from, to) = year();

    // A year of half-hours.
    let id = identifier(PRM, POWER);
    let fields = history_fields(&id, from, to);
    let mut pages = read_all(&alice, "get_history", &borrowed(&fields)).await;
    let parsed: Identifier = id.parse().unwrap();
    let year = check_pages(&mut pages, &parsed);
    assert_contiguous(&year, seconds(from), seconds(to), 1800);
    let total = half_hours(from, to);
    assert_eq!(year.len() as u64, total);
    assert!(pages.len() >= 2, "{} pages", pages.len());
    assert_pages_full(&pages, DEFAULT_LIMIT, PAGE_SLACK);
    for page in &pages {
        assert_eq!(page.meta_form, MetaForm::Flat);
        assert_eq!(page.total, total);
        // For people: which records, in the form.
        let form = page.form.as_ref().expect("a form");
        let text = common::xmpp_harness::field_values(form, "page").join(" ");
        assert!(
            text.starts_with(&format!(
                "page {}: records {} to {} of {total}",
                page.number,
                page.offset + 1,
                page.offset + page.records
            )),
            "{text}"
        );
    }
    println!(
        "a year in {} pages of {:?} bytes",
        pages.len(),
        pages.iter().map(|p| p.wire_bytes).collect::<Vec<_>>()
    );

    // The same year through the legacy get_load_curve (nested meta): the same
    // readings, from the agent's cache.
    d.sim.admin().clear_calls().await;
    let (first_day, end_day) = (from.to_string(), to.to_string());
    let legacy = [
        ("usage_point_id", PRM),
        ("direction", "consumption"),
        ("start_date", first_day.as_str()),
        ("end_date", end_day.as_str()),
    ];
    let mut pages = read_all(&alice, "get_load_curve", &legacy).await;
    let same = check_pages(&mut pages, &parsed);
    assert!(pages.len() >= 2);
    assert!(pages.iter().all(|p| p.meta_form == MetaForm::Nested));
    assert_pages_full(&pages, DEFAULT_LIMIT, PAGE_SLACK);
    assert_eq!(same, year, "get_load_curve pages the same readings");
    assert_eq!(d.sim.admin().total_calls().await, 0, "one year, read once");

    // Asking for pages an answer that fits: one page, completed, saying so.
    let (week_from, week_to) = midyear_week();
    let week = history_fields(&id, week_from, week_to);
    let mut pages = read_all(&alice, "get_history", &borrowed(&week)).await;
    assert_eq!(pages.len(), 1);
    check_pages(&mut pages, &parsed);
    let page = &pages[0];
    assert_eq!(
        (page.status, page.offers_next, page.number, page.offset),
        (Status::Completed, false, 1, 0)
    );
    let week = half_hours(week_from, week_to);
    assert_eq!((page.records, page.total), (week, week));

    // Three months of a 10-minute meter (13,248 records, larger than a year
    // of half-hours per record).
    let (from10, to10) = (to.checked_sub(3.months()).unwrap(), to);
    let id10 = identifier(PRM_PT10M, POWER);
    let fields = history_fields(&id10, from10, to10);
    let mut pages = read_all(&alice, "get_history", &borrowed(&fields)).await;
    let readings = check_pages(&mut pages, &id10.parse().unwrap());
    assert_contiguous(&readings, seconds(from10), seconds(to10), 600);
    assert!(pages.len() >= 2, "{} pages", pages.len());
    assert_pages_full(&pages, DEFAULT_LIMIT, PAGE_SLACK);

    d.agent.assert_session_untouched();
}

/// How far below the limit a full page may stay besides one record: the agent
/// sizes a page's envelope with the widest figures it can show (offset and
/// records as large as the total, in `<page/>` and in the form's text).
const PAGE_SLACK: usize = 24;

// --- 3. refused before Enedis is called when the step is known -----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_is_refused_before_enedis_is_called_once_the_step_is_known() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let id = identifier(PRM, POWER);
    let (from, to) = year();

    // A week first: the cache learns the meter's step.
    let last_week = to.checked_sub(7.days()).unwrap();
    let week = d
        .python(
            "alice@localhost/quoalise",
            "history",
            &[&id, &midnight(last_week), &midnight(to)],
        )
        .await;
    assert_eq!(week["status"], "completed", "{week}");
    assert_eq!(
        python_records(&week).len() as u64,
        half_hours(last_week, to)
    );

    d.sim.admin().clear_calls().await;
    let answer = d
        .python(
            "alice@localhost/quoalise",
            "history",
            &[&id, &midnight(from), &midnight(to)],
        )
        .await;
    let (records, max_bytes, step, max_days) = too_large(&answer);
    assert_eq!(
        d.sim.admin().total_calls().await,
        0,
        "refused without calling Enedis"
    );
    assert!(
        d.agent
            .wait_log("refused before calling Enedis", Duration::from_secs(5))
            .await
    );
    assert_eq!(
        records,
        half_hours(from, to),
        "predicted: a year of half-hours"
    );
    assert_eq!(max_bytes, DEFAULT_LIMIT as u64);
    assert_eq!(step, "PT30M");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "ask for at most {max_days} days of 30-minute load curve per request"
        )),
        "{text}"
    );
    assert!(max_days >= 30, "{max_days}");

    // The advice holds: that many days, up to the same end, come in one answer.
    let start = to.checked_sub((max_days as i64).days()).unwrap();
    let fits = d
        .python(
            "alice@localhost/quoalise",
            "history",
            &[&id, &midnight(start), &midnight(to)],
        )
        .await;
    assert_eq!(fits["status"], "completed", "{fits}");
    assert_eq!(
        python_records(&fits).len() as i64,
        (seconds(to) - seconds(start)) / 1800
    );
    d.agent.assert_session_untouched();
}

// --- 4. small limits through the real server -----------------------------------

/// A month of half-hours in pages through `d` as `user`: complete, in order,
/// every page as full as `limit` allows.
async fn a_paged_month(d: &Deployment, user: &str, limit: usize) -> Vec<Page> {
    let alice = Peer::login(&d.prosody, &format!("{user}@localhost/a")).await;
    let id = identifier(PRM, POWER);
    let to = year().1;
    let from = to.checked_sub(1.month()).unwrap();
    let fields = history_fields(&id, from, to);
    let mut pages = read_all(&alice, "get_history", &borrowed(&fields)).await;
    let readings = check_pages(&mut pages, &id.parse().unwrap());
    assert_contiguous(&readings, seconds(from), seconds(to), 1800);
    assert_pages_full(&pages, limit, PAGE_SLACK);
    println!(
        "a month in {} pages of {:?} bytes under {limit}",
        pages.len(),
        pages.iter().map(|p| p.wire_bytes).collect::<Vec<_>>()
    );

    // Without paging: refused with the limit in force.
    let answer = alice
        .command(Command::execute(
            "get_history",
            Some(submit(&borrowed(&fields))),
        ))
        .await
        .unwrap_err();
    let (cond, text) = condition(&answer);
    assert_eq!(cond, "not-acceptable", "{text}");
    let element = answer.other.expect("<answer-too-large/>");
    assert_eq!(element.attr("max-bytes"), Some(limit.to_string().as_str()));
    pages
}

/// Panics if Prosody closed a stream for a stanza over its limit.
#[track_caller]
fn assert_no_stanza_refused(prosody: &Prosody) {
    let log = prosody.log();
    for sign in ["stanza-too-big", "policy-violation", "Stanza size limit"] {
        assert!(
            !log.contains(sign),
            "Prosody refused a stanza ({sign}):\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_20000_byte_server_limit_pages_fill_it_and_none_closes_the_stream() {
    let prosody = Prosody::start_with(ProsodyOptions {
        extra_config: "c2s_stanza_size_limit = 20000\n".to_owned(),
        ..ProsodyOptions::default()
    })
    .await;
    let d = Deployment::start_on(
        prosody,
        AgentSettings {
            max_stanza_bytes: Some(20_000),
            ..AgentSettings::with_peers(vec![peer("alice", &[PRM])])
        },
    )
    .await;
    let pages = a_paged_month(&d, "alice", 20_000).await;
    assert!(pages.len() >= 3, "{} pages", pages.len());
    d.agent.assert_session_untouched();
    assert_no_stanza_refused(&d.prosody);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_learns_prosody_13s_limit_and_its_pages_fit_it() {
    let prosody = Prosody::start_with(ProsodyOptions {
        version: ProsodyVersion::V13,
        extra_config: "c2s_stanza_size_limit = 30000\n".to_owned(),
        ..ProsodyOptions::default()
    })
    .await;
    // The agent is left at its default limit (256 KiB).
    let d = Deployment::start_on(
        prosody,
        AgentSettings::with_peers(vec![peer("alice", &[PRM])]),
    )
    .await;
    assert!(
        d.agent
            .wait_log(
                "XMPP: the server accepts stanzas of at most 30000 bytes (XEP-0478)",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        d.agent.log()
    );
    let pages = a_paged_month(&d, "alice", 30_000).await;
    assert!(pages.len() >= 2, "{} pages", pages.len());
    d.agent.assert_session_untouched();
    assert_no_stanza_refused(&d.prosody);
}

// --- 5. a session of pages: consent revoked mid-way, cancel, prev/complete ------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_revoked_mid_way_stops_the_next_page_and_cancel_ends_the_pages() {
    let d = Deployment::start(AgentSettings {
        max_stanza_bytes: Some(10_000),
        ..AgentSettings::with_peers(vec![peer("alice", &[PRM]), peer("carol", &[])])
    })
    .await;
    // Carol reads through a consent (as `consents add` or the consent pages
    // record it), not a configured grant.
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let consent = store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: "carol@localhost".into(),
                prms: vec![PRM.parse().unwrap()],
                autorisation_id: Some(5),
                valid_from: now - 60,
                valid_until: now + 86_400,
            },
            None,
        )
        .unwrap();
    let id = identifier(PRM, POWER);
    let to = year().1;
    let fields = history_fields(&id, to.checked_sub(1.month()).unwrap(), to);
    let fields = borrowed(&fields);
    let node = "get_history";

    let carol = Peer::login(&d.prosody, "carol@localhost/c").await;
    let first = request_page(&carol, paged_request(node, &fields))
        .await
        .unwrap();
    assert_eq!((first.status, first.number), (Status::Executing, 1));
    let sid = first.sessionid.clone();
    let second = request_page(&carol, action(node, &sid, Action::Next))
        .await
        .unwrap();
    assert_eq!((second.status, second.number), (Status::Executing, 2));
    assert_eq!(second.offset, first.records);

    store
        .set_consent_state(consent.id, ConsentState::Revoked)
        .unwrap();
    let error = carol
        .command(action(node, &sid, Action::Next))
        .await
        .unwrap_err();
    let (cond, text) = condition(&error);
    assert_eq!(
        (cond.as_str(), error.type_),
        ("not-authorized", ErrorType::Auth),
        "{text}"
    );
    // The session is over.
    let error = carol
        .command(action(node, &sid, Action::Next))
        .await
        .unwrap_err();
    assert_eq!(condition(&error).0, "bad-request");
    assert_eq!(specific(&error).as_deref(), Some("bad-sessionid"));
    // Every page is on record: two allowed on the consent, then the refusal.
    let rows: Vec<(String, Option<i64>)> = store
        .audit(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.peer == "carol@localhost")
        .map(|r| (r.outcome, r.consent_id))
        .collect();
    assert_eq!(
        rows,
        [
            ("allowed".to_owned(), Some(consent.id)),
            ("allowed".to_owned(), Some(consent.id)),
            ("refused".to_owned(), None)
        ]
    );

    // Alice (a grant): pages are read forward; `prev` and `complete` are
    // refused and the session stays open; `cancel` ends it.
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let first = request_page(&alice, paged_request(node, &fields))
        .await
        .unwrap();
    let sid = first.sessionid.clone();
    for refused in [Action::Prev, Action::Complete] {
        let error = alice
            .command(action(node, &sid, refused))
            .await
            .unwrap_err();
        assert_eq!(condition(&error).0, "bad-request", "{refused:?}");
        assert_eq!(specific(&error).as_deref(), Some("bad-action"));
    }
    // `execute` on the session is `next`, as XEP-0050 has it.
    let second = request_page(&alice, action(node, &sid, Action::Execute))
        .await
        .unwrap();
    assert_eq!((second.number, second.offset), (2, first.records));
    let canceled = alice
        .command(action(node, &sid, Action::Cancel))
        .await
        .unwrap();
    assert_eq!(canceled.status, Some(Status::Canceled));
    let error = alice
        .command(action(node, &sid, Action::Next))
        .await
        .unwrap_err();
    assert_eq!(specific(&error).as_deref(), Some("bad-sessionid"));
    d.agent.assert_session_untouched();
}

// --- 6. Gajim-style: the form's default pages, "Next" until done ----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_in_gajim_gets_a_year_page_after_page() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let id = identifier(PRM, POWER);
    let (from, to) = year();
    // slixmpp's xep_0050 as Gajim drives it: empty execute, the agent's form
    // filled in (its defaults kept, `paging` among them), then "Next".
    let slix = Slix::new(&d.prosody, "alice@localhost/gajim");
    let out = slix
        .run(
            &["--pages"],
            "multistage",
            &[
                "get_history",
                &format!("identifier={id}"),
                &format!("start_time={}", midnight(from)),
                &format!("end_time={}", midnight(to)),
            ],
        )
        .await;
    let steps = out["steps"].as_array().unwrap_or_else(|| panic!("{out}"));
    let form = &steps[0];
    assert_eq!(form["status"], "executing", "{form}");
    let paging = form["form"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["var"] == "paging")
        .unwrap_or_else(|| panic!("no paging field: {form}"));
    assert_eq!(paging["type"], "boolean");
    assert_eq!(paging["values"], serde_json::json!(["true"]));

    let pages = &steps[1..];
    assert!(pages.len() >= 2, "{} pages", pages.len());
    let mut readings: Vec<Reading> = Vec::new();
    let sessionid = &pages[0]["sessionid"];
    for (i, page) in pages.iter().enumerate() {
        let last = i + 1 == pages.len();
        assert_eq!(page["type"], "result", "page {}: {page}", i + 1);
        assert_eq!(&page["sessionid"], sessionid);
        if last {
            assert_eq!(page["status"], "completed");
            assert_eq!(page["actions"], Value::Null);
        } else {
            assert_eq!(page["status"], "executing");
            assert_eq!(page["actions"]["execute"], "next");
            assert_eq!(page["actions"]["available"], serde_json::json!(["next"]));
        }
        let payloads: Vec<&str> = page["payloads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let figures: Element = payloads
            .iter()
            .find(|p| p.starts_with("<page"))
            .unwrap_or_else(|| panic!("no <page/>: {page}"))
            .parse()
            .unwrap();
        let quoalise = payloads
            .iter()
            .find(|p| p.starts_with("<quoalise"))
            .unwrap_or_else(|| panic!("no payload: {page}"));
        let series = decode(quoalise).unwrap()[0].to_time_series().unwrap();
        assert_eq!(figures.attr("number"), Some((i + 1).to_string().as_str()));
        assert_eq!(
            figures.attr("offset"),
            Some(readings.len().to_string().as_str())
        );
        assert_eq!(
            figures.attr("records"),
            Some(series.readings.len().to_string().as_str())
        );
        assert_eq!(
            figures.attr("total"),
            Some(half_hours(from, to).to_string().as_str())
        );
        readings.extend(series.readings);
    }
    assert_contiguous(&readings, seconds(from), seconds(to), 1800);
    d.agent.assert_session_untouched();
}

// --- 7. a subscription catch-up larger than a stanza: several messages ---------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_larger_than_a_stanza_comes_in_several_messages() {
    const LIMIT: usize = 10_000;
    let prosody = Prosody::start_with(ProsodyOptions {
        extra_config: format!("c2s_stanza_size_limit = {LIMIT}\n"),
        ..ProsodyOptions::default()
    })
    .await;
    let d = Deployment::start_on(
        prosody,
        AgentSettings {
            max_stanza_bytes: Some(LIMIT),
            ..AgentSettings::with_peers(vec![peer("alice", &[PRM_PT10M])])
        },
    )
    .await;
    let mut alice = Peer::login(&d.prosody, "alice@localhost/phone").await;

    // Alice missed the last week of the 10-minute meter (the agent was down,
    // say): her subscription was last served 7 days before the latest
    // published day.
    let through = due_through(jiff::Timestamp::now(), jiff::civil::time(8, 0, 0, 0));
    let first = through.checked_sub(6.days()).unwrap();
    let curve: Identifier = identifier(PRM_PT10M, POWER).parse().unwrap();
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    store
        .subscribe(
            "alice@localhost",
            &curve,
            AccessBasis::Grant,
            first.yesterday().unwrap(),
            jiff::Timestamp::now().as_second(),
        )
        .unwrap();
    // A new subscription (to the daily energy) makes the agent run a pass,
    // which serves both.
    let daily = identifier(PRM_PT10M, "consumption/energy/active/daily");
    alice
        .command(Command::execute(
            "subscribe",
            Some(submit(&[("identifier", &daily)])),
        ))
        .await
        .unwrap_or_else(|e| panic!("{:?}", condition(&e)));

    let (from, to) = (seconds(first), seconds(through.tomorrow().unwrap()));
    let expected = ((to - from) / 600) as usize;
    let mut readings: Vec<Reading> = Vec::new();
    let mut messages = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while readings.len() < expected {
        let stanza = tokio::time::timeout_at(deadline, alice.inbound.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {expected} readings in {messages} messages within 30 s:\n{}",
                    readings.len(),
                    d.agent.log()
                )
            })
            .expect("the peer runs");
        let tokio_xmpp::Stanza::Message(message) = stanza else {
            continue;
        };
        let Some(payload) = message
            .payloads
            .iter()
            .find(|p| p.is("quoalise", NS_QUOALISE))
        else {
            continue;
        };
        let data = quoalise_agent::quoalise::decode_element(payload).expect("a complete payload");
        let series = data[0].to_time_series().unwrap();
        if series.identifier != curve {
            continue;
        }
        messages += 1;
        // Each message within the limit (rebuilt as the agent sent it).
        let mut envelope = message.clone();
        envelope.from = None;
        envelope.payloads.retain(|p| !p.is("quoalise", NS_QUOALISE));
        envelope.payloads.push(Element::bare("x", "urn:x"));
        let size = quoalise_agent::xmpp::wire::stanza_size(&envelope.into()).unwrap()
            - r#"<x xmlns='urn:x'/>"#.len()
            + quoalise_agent::quoalise::encode(&series, MetaForm::Flat).len();
        assert!(size <= LIMIT, "message {messages}: {size} bytes");
        println!(
            "message {messages}: {} readings, {size} bytes",
            series.readings.len()
        );
        readings.extend(series.readings);
    }
    assert!(messages >= 3, "{messages} messages");
    assert_contiguous(&readings, from, to, 600);
    assert!(
        d.agent
            .wait_log("pushed in several messages", Duration::from_secs(5))
            .await
    );
    d.agent.assert_session_untouched();
    assert_no_stanza_refused(&d.prosody);
}

// --- gaps: missing readings are neither lost nor invented across pages ----------

/// The meter whose load curve has gaps (docs/enedis-sim.md): nothing on
/// Tuesdays, nothing from 12:00 to 17:59 on Wednesdays (Paris time).
const PRM_GAPS: &str = "42900589957123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_a_meter_with_gaps_hold_every_reading_it_has_once() {
    let d = Deployment::start(AgentSettings {
        max_stanza_bytes: Some(10_000),
        ..AgentSettings::with_peers(vec![peer("alice", &[PRM_GAPS])])
    })
    .await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let id = identifier(PRM_GAPS, POWER);
    let to = year().1;
    let from = to.checked_sub(2.months()).unwrap();
    let fields = history_fields(&id, from, to);
    let history = |from: Date, to: Date| {
        Command::execute(
            "get_history",
            Some(submit(&borrowed(&history_fields(&id, from, to)))),
        )
    };

    // Without paging: refused once read, with the number of days that fit…
    let error = alice.command(history(from, to)).await.unwrap_err();
    let (cond, text) = condition(&error);
    assert_eq!(cond, "not-acceptable", "{text}");
    let max_days: i64 = error
        .other
        .as_ref()
        .and_then(|e| e.attr("max-days"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{error:?}"));
    // … and those days are then answered, though the agent now knows the
    // meter's step and predicts sizes before reading (a prediction that
    // counts every reading present must not refuse them).
    let until = from.checked_add(max_days.days()).unwrap();
    let fits = alice
        .command(history(from, until))
        .await
        .unwrap_or_else(|e| panic!("{max_days} days, as advised ({text}): {:?}", condition(&e)));
    assert_eq!(fits.status, Some(Status::Completed));
    let beyond = until.tomorrow().unwrap();
    let (over, _) = condition(&alice.command(history(from, beyond)).await.unwrap_err());
    assert_eq!(over, "not-acceptable");

    let mut pages = read_all(&alice, "get_history", &borrowed(&fields)).await;
    let readings = check_pages(&mut pages, &id.parse().unwrap());
    assert_pages_full(&pages, 10_000, PAGE_SLACK);

    let expected: Vec<i64> = (seconds(from)..seconds(to))
        .step_by(1800)
        .filter(|&t| {
            let local =
                quoalise_agent::time::PARIS.to_datetime(jiff::Timestamp::from_second(t).unwrap());
            match local.weekday() {
                jiff::civil::Weekday::Tuesday => false,
                jiff::civil::Weekday::Wednesday => !(12..18).contains(&local.hour()),
                _ => true,
            }
        })
        .collect();
    let starts: Vec<i64> = readings.iter().map(|r| r.start).collect();
    assert_eq!(starts, expected, "{} pages", pages.len());
    assert!(readings.iter().all(|r| r.value.is_some()));
    assert!(pages.len() >= 5, "{} pages", pages.len());
    d.agent.assert_session_untouched();
}

// --- the advice holds across a DST change --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advised_days_fit_across_the_25_hour_day_of_october() {
    let mut d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let id = identifier(PRM, POWER);
    let parsed: Identifier = id.parse().unwrap();
    let history = |from: Date, to: Date| {
        Command::execute(
            "get_history",
            Some(submit(&borrowed(&history_fields(&id, from, to)))),
        )
    };

    // 8 Paris days, a 25-hour one (the last Sunday of October) among them:
    // 386 half-hours, in one answer of E bytes besides its payload. (On
    // 2026-12-06: from 2026-10-19, 2026-10-25 the long day.)
    let long_day = dst_day_on_or_before(today().checked_sub(30.days()).unwrap(), 25);
    let start = long_day.checked_sub(6.days()).unwrap();
    let eight = start.checked_add(8.days()).unwrap();
    let answer = alice.command(history(start, eight)).await.unwrap();
    let quoalise = answer
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .unwrap();
    let readings = quoalise_agent::quoalise::decode_element(quoalise).unwrap()[0]
        .to_time_series()
        .unwrap()
        .readings;
    assert_eq!(readings.len(), 386);
    let mut envelope = answer.clone();
    envelope.payloads.retain(|p| !p.is("quoalise", NS_QUOALISE));
    let iq = xmpp_parsers::iq::Iq::Result {
        from: None,
        to: Some(alice.running.handle.jid().clone().into()),
        id: "0".repeat(32),
        payload: Some(envelope.into_element()),
    };
    let envelope = quoalise_agent::xmpp::wire::stanza_size(&iq.into()).unwrap();

    // The agent again, with room for exactly 8 × 48 of them: 8 × 86,400
    // seconds, but two half-hours short of the 8 days.
    let first_384 = quoalise_agent::quoalise::TimeSeries::new(parsed, readings[..384].to_vec());
    let limit = envelope + quoalise_agent::quoalise::encode(&first_384, MetaForm::Flat).len();
    assert!(limit >= 10_000, "{limit}");
    let settings = AgentSettings {
        max_stanza_bytes: Some(limit),
        ..AgentSettings::with_peers(vec![peer("alice", &[PRM])])
    };
    d.rewrite(&settings);
    d.agent = AgentProcess::spawn(&d.files.path(), d.dir.path(), d.files.web_port, &[]);
    d.agent.wait_healthy(Duration::from_secs(30)).await;

    // Refused after reading (the cache does not know the step near the end):
    // the advice counts Paris days.
    let error = alice
        .command(history(start, start.checked_add(20.days()).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(condition(&error).0, "not-acceptable");
    let max_days: i64 = error
        .other
        .as_ref()
        .and_then(|e| e.attr("max-days"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{error:?}"));
    assert_eq!(max_days, 7, "{:?}", condition(&error).1);
    let fits = alice
        .command(history(start, start.checked_add(max_days.days()).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{max_days} days: {:?}", condition(&e)));
    assert_eq!(fits.status, Some(Status::Completed));
    let (over, _) = condition(&alice.command(history(start, eight)).await.unwrap_err());
    assert_eq!(over, "not-acceptable");
}

//! The Enedis quota shared fairly between peers (issue 17), through the REAL
//! agent, a real Prosody and the REAL `enedis-sim`:
//!
//! - one peer floods the agent with a thousand distinct days while another asks
//!   for one day: the second is served among the next few calls, not behind the
//!   thousand (read in the simulator's own log of the calls it got, in order),
//!   with the right data, and none of the thousand is lost;
//! - a peer with its own `calls_per_hour` is refused AT ONCE when its budget is
//!   spent, told when to come back (an hour after its first call), the refusal on
//!   record and counted, and Enedis never asked; another peer is still served.
//!
//! No assertion on wall-clock time: the order of the simulator's calls and the
//! instants the agent states are what the tests read.

use crate::common;
use crate::common::agent_harness;

use std::sync::Arc;
use std::time::Duration;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, submit};
use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::quoalise::{Reading, decode_element};
use quoalise_agent::store::{AuditFilter, Store};
use quoalise_agent::xmpp::{Command, IqError, NS_QUOALISE, XmppHandle};
use serde_json::Value;
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{ErrorType, StanzaError};

const DAILY: &str = "consumption/energy/active/daily";
const DAILY_CALL: &str = "/mesure_synchrone_auto/v2/consommation_quotidienne";

/// `get_history` of `prm`'s daily consumption on the one Paris day `day`.
fn one_day(prm: &str, day: Date) -> Command {
    Command::execute(
        "get_history",
        Some(submit(&[
            ("identifier", &format!("urn:dev:prm:{prm}_{DAILY}")),
            ("start_time", &midnight(day)),
            ("end_time", &midnight(day.tomorrow().unwrap())),
        ])),
    )
}

fn days_ago(n: i64) -> Date {
    today().checked_sub(n.days()).unwrap()
}

/// Sends `command` as the peer behind `handle`, waiting up to `timeout`.
async fn send(
    handle: &XmppHandle,
    agent: &Jid,
    command: &Command,
    timeout: Duration,
) -> Result<Command, IqError> {
    match handle
        .send_iq(
            Some(agent.clone()),
            IqRequestPayload::Set(command.to_element()),
            timeout,
        )
        .await
    {
        Ok(Some(element)) => Ok(Command::from_element(element).expect("a <command/> answer")),
        Ok(None) => panic!("a command answer without payload"),
        Err(e) => Err(e),
    }
}

/// The readings of a data answer.
fn readings(answer: &Command) -> Vec<Reading> {
    let payload = answer
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .unwrap_or_else(|| panic!("no Quoalise payload in {answer:?}"));
    let data = decode_element(payload).expect("the payload decodes");
    assert_eq!(data.len(), 1, "one <data>");
    data[0].to_time_series().expect("a time series").readings
}

/// The `<retry-after xmlns="urn:quoalise:0" at=… limit=…/>` of a refusal.
fn retry_after(e: &StanzaError) -> Option<(jiff::Timestamp, String)> {
    let child = e
        .other
        .as_ref()
        .filter(|o| o.is("retry-after", NS_QUOALISE))?;
    let at = child
        .attr("at")
        .unwrap_or_else(|| panic!("<retry-after/> without at: {child:?}"))
        .parse()
        .unwrap_or_else(|err| panic!("<retry-after at/> is not an instant: {err}: {child:?}"));
    let limit = child
        .attr("limit")
        .unwrap_or_else(|| panic!("<retry-after/> without limit: {child:?}"))
        .to_owned();
    Some((at, limit))
}

/// The value of the metric line that is exactly `name` (labels included).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The simulator's log entries of data calls for `prm`, each (seq, query).
fn data_calls<'a>(log: &'a [Value], prm: &str) -> Vec<(u64, &'a str)> {
    log.iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(DAILY_CALL)))
        .filter_map(|r| {
            let query = r["query"].as_str()?;
            query
                .contains(&format!("pointId={prm}"))
                .then(|| (r["seq"].as_u64().unwrap(), query))
        })
        .collect()
}

/// The value Enedis (the simulator, asked directly) gives for `prm`'s daily
/// consumption on `day`, in Wh.
async fn enedis_value(d: &Deployment, prm: &str, day: Date) -> f64 {
    let token = d.sim.app_token().await;
    let (status, body) = d
        .sim
        .get_json(
            &token,
            &format!(
                "{DAILY_CALL}?pointId={prm}&dateDebut={day}&dateFin={}",
                day.tomorrow().unwrap()
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let points = body
        .pointer("/grandeur/0/points")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no points in {body}"));
    assert_eq!(points.len(), 1, "{body}");
    points[0]["v"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {body}"))
}

/// The flooding peer's one-day requests, all distinct (days 2 to 1,001 ago:
/// nothing cached, nothing coalesced; daily values go back 36 months).
const FLOOD: usize = 1_000;
/// How many of them the flooding peer keeps in flight: nearly the agent's 128
/// running requests per peer. Past those the agent answers that peer
/// `resource-constraint` (`xmpp::router`'s own test), which is not what this
/// test is about.
const FLOOD_IN_FLIGHT: usize = 120;
/// The backlog of the flood's calls in the quota's queue when a probe is sent:
/// nearly all that is in flight, so that the agent has read the flood's
/// requests and they wait for their slots (the probe is not behind them in the
/// agent's other queues: its XMPP input, its store).
const BACKLOG: f64 = (FLOOD_IN_FLIGHT - 10) as f64;
/// The single requests of the other peer, during the flood.
const PROBES: usize = 3;

/// What became of one of the flood's requests.
#[derive(Debug)]
enum Outcome {
    Data,
    /// A precise refusal: (condition, text, limit of its `<retry-after/>`).
    Refused(String, String, Option<String>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_day_is_served_next_while_another_peer_floods_a_thousand() {
    let mut settings =
        AgentSettings::with_peers(vec![peer("flood", &[PRM]), peer("single", &[PRM_PT10M])]);
    // The quota scaled UP for CI, to one call every 55 ms: still far longer than
    // the agent's own work on a request before it reaches the quota (its XMPP
    // input, the authorisation's store reads), which on a loaded 2-core CI
    // machine took some 130 ms, six slots at 50 calls a second, and let the
    // flood's calls go first for a reason that is not the quota's order. A call
    // may wait as long as the whole flood takes, so that the thousand are
    // queued, not refused.
    settings.calls_per_second = 20;
    settings.quota_wait_secs = 120;
    settings.request_timeout_secs = 150;
    // The simulator's own hourly quota (1,000 for the 2026 API) would 429 the flood.
    let mut d = Deployment::launch(settings, &["--quota-per-hour", "1000000"], &[]).await;
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    let flood = Peer::login(&d.prosody, "flood@localhost/f").await;
    let single = Peer::login(&d.prosody, "single@localhost/s").await;
    let agent = d.agent_jid();
    let admin = d.sim.admin();

    // The flood: a thousand distinct days, FLOOD_IN_FLIGHT at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(FLOOD_IN_FLIGHT));
    let mut tasks = Vec::new();
    for n in 0..FLOOD {
        let handle = flood.running.handle.clone();
        let agent = agent.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let day = days_ago(2 + n as i64);
            let request = one_day(PRM, day);
            match send(&handle, &agent, &request, Duration::from_secs(180)).await {
                Ok(answer) => {
                    let r = readings(&answer);
                    assert_eq!(r.len(), 1, "{day}: one daily value");
                    assert_eq!(r[0].start, midnight_seconds(day), "{day}");
                    Outcome::Data
                }
                Err(IqError::Error(e)) => {
                    let (cond, text) = condition(&e);
                    assert_eq!(e.type_, ErrorType::Wait, "{day}: {cond} {text}");
                    Outcome::Refused(cond, text, retry_after(&e).map(|(_, limit)| limit))
                }
                Err(other) => panic!("{day}: lost, no answer: {other}"),
            }
        }));
    }

    // The single peer's days, each asked while the flood's backlog is long.
    let mut probes = Vec::new();
    for i in 0..PROBES {
        let backlog = loop {
            let waiting = metric(
                &d.agent.metrics().await,
                r#"quoalise_agent_quota_waiting_calls{class="interactive"}"#,
            );
            if waiting >= BACKLOG {
                break waiting;
            }
            assert!(
                !tasks.iter().all(|t| t.is_finished()),
                "the flood ended before a backlog of {BACKLOG} calls was seen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let day = days_ago(5 + i as i64);
        let calls_before = admin.total_calls().await;
        let answer = single
            .command(one_day(PRM_PT10M, day))
            .await
            .unwrap_or_else(|e| panic!("probe {i}: {:?}", condition(&e)));
        probes.push((day, calls_before, backlog, readings(&answer)));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Read the simulator's log before the flood's calls push the probes out of it.
    let log = admin.requests().await;

    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("every flood request is answered"));
    }
    let served = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Data))
        .count();
    let refused: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o, Outcome::Data))
        .collect();
    println!(
        "flood: {served} of {FLOOD} served, {} refused: {:?}",
        refused.len(),
        refused.iter().take(3).collect::<Vec<_>>()
    );
    for o in &refused {
        if let Outcome::Refused(cond, text, limit) = o {
            assert!(
                (cond == "service-unavailable" && limit.is_some()) || cond == "resource-constraint",
                "a refusal says what to do: {cond} {text} {limit:?}"
            );
        }
    }

    // Where each probe's call came in the simulator's log, counted from before the
    // test sent it (so including the agent's own work on the request before the
    // quota, which a loaded 2-core CI machine has stretched to several slots):
    // far ahead of the backlog, where arrival order would have put it behind it.
    let flood_calls = data_calls(&log, PRM);
    let single_calls = data_calls(&log, PRM_PT10M);
    for (i, (day, calls_before, backlog, answer)) in probes.iter().enumerate() {
        let (seq, _) = single_calls
            .iter()
            .find(|(seq, query)| *seq > *calls_before && query.contains(&day.to_string()))
            .unwrap_or_else(|| panic!("probe {i}: no call for {day} in {single_calls:?}"));
        let overtaken_by = flood_calls
            .iter()
            .filter(|(s, _)| s > calls_before && s < seq)
            .count();
        println!(
            "probe {i}: {overtaken_by} of the flood's calls went before it, with {backlog} waiting"
        );
        assert!(
            (overtaken_by as f64) <= BACKLOG / 10.0,
            "probe {i} ({day}) waited behind {overtaken_by} of the flood's calls, with {backlog} waiting"
        );
        assert_eq!(answer.len(), 1, "probe {i}: one daily value");
        assert_eq!(answer[0].start, midnight_seconds(*day), "probe {i}");
        let wh = enedis_value(&d, PRM_PT10M, *day).await;
        assert_eq!(answer[0].value, Some(wh), "probe {i}: the meter's value");
    }
    d.agent.stop().await;
}

/// `HH:MM` of "…retry after HH:MM UTC" (or "… YYYY-MM-DD HH:MM UTC").
fn retry_minute_in(text: &str) -> jiff::civil::Time {
    let at = text
        .split_once("retry after ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no retry time in {text:?}"));
    let hh_mm = at
        .strip_suffix(" UTC")
        .unwrap_or_else(|| panic!("not in UTC: {text:?}"))
        .rsplit(' ')
        .next()
        .unwrap_or_default();
    jiff::civil::Time::strptime("%H:%M", hh_mm).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A peer with `calls_per_hour = 3` gets three calls; its fourth request is
/// refused at once (its deadline is two minutes away, the quota wait ten, the
/// test's iq gives up after 30 s), told to come back an hour after its first
/// call, with nothing asked of Enedis; the refusal is in the audit trail and in
/// /metrics, and a peer without a cap is served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_own_budget_is_refused_at_once_and_told_when_to_return() {
    let mut settings = AgentSettings::with_peers(vec![
        peer("capped", &[PRM]).with_calls_per_hour(3),
        peer("free", &[PRM_PT10M]),
    ]);
    settings.quota_wait_secs = 600;
    settings.request_timeout_secs = 120;
    let d = Deployment::start(settings).await;
    let capped = Peer::login(&d.prosody, "capped@localhost/c").await;
    let free = Peer::login(&d.prosody, "free@localhost/f").await;
    let admin = d.sim.admin();

    // The application's token first, on the free peer's request: the capped
    // peer's budget is for its own data calls.
    free.command(one_day(PRM_PT10M, days_ago(3)))
        .await
        .unwrap_or_else(|e| panic!("{:?}", condition(&e)));

    // Three distinct days (nothing cached): three calls, all served.
    let before_first = jiff::Timestamp::now();
    let mut after_first = None;
    for n in 3..6 {
        let day = days_ago(n);
        let answer = capped
            .command(one_day(PRM, day))
            .await
            .unwrap_or_else(|e| panic!("{day}: {:?}", condition(&e)));
        after_first.get_or_insert_with(jiff::Timestamp::now);
        assert_eq!(readings(&answer)[0].start, midnight_seconds(day));
    }
    let after_first = after_first.unwrap();
    let calls = data_calls(&admin.requests().await, PRM).len();
    assert_eq!(calls, 3, "one call per day");

    // The fourth: refused at once, with the instant and the limit.
    let refused = capped
        .command(one_day(PRM, days_ago(6)))
        .await
        .expect_err("the budget of three calls is spent");
    let (cond, text) = condition(&refused);
    assert_eq!(cond, "service-unavailable", "{text}");
    assert_eq!(refused.type_, ErrorType::Wait, "{text}");
    assert!(
        text.contains("this peer has used its Enedis call budget"),
        "{text}"
    );
    let (at, limit) = retry_after(&refused).unwrap_or_else(|| panic!("no <retry-after/>: {text}"));
    assert_eq!(limit, "peer-budget");
    // An hour after the first call, which left between `before_first` and
    // `after_first`; `at` is rounded up to the second.
    let hour = jiff::SignedDuration::from_secs(3_600);
    let earliest = before_first.checked_add(hour).unwrap();
    let latest = after_first
        .checked_add(hour + jiff::SignedDuration::from_secs(1))
        .unwrap();
    assert!(
        earliest <= at && at <= latest,
        "retry at {at}, expected an hour after the first call: {earliest} to {latest}"
    );
    // The text says the same minute, rounded up (never early).
    let minute = at
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Ceil),
        )
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .time();
    assert_eq!(retry_minute_in(&text), minute, "{text} against {at}");
    // Enedis was not asked.
    assert_eq!(data_calls(&admin.requests().await, PRM).len(), 3);

    // Asked again: the same answer, the same instant.
    let again = capped
        .command(one_day(PRM, days_ago(7)))
        .await
        .expect_err("still over budget");
    assert_eq!(retry_after(&again), Some((at, "peer-budget".to_owned())));

    // The peer without a cap is served meanwhile.
    for n in 4..7 {
        free.command(one_day(PRM_PT10M, days_ago(n)))
            .await
            .unwrap_or_else(|e| panic!("free peer, day {n}: {:?}", condition(&e)));
    }

    // On record: the two refusals with their limit, and counted under the peer.
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let rows = store
        .audit(&AuditFilter {
            peer: Some("capped@localhost".to_owned()),
            ..AuditFilter::default()
        })
        .unwrap();
    let summary: Vec<(Option<&str>, Option<&str>, u32)> = rows
        .iter()
        .map(|r| {
            (
                r.error.as_deref(),
                r.error_code.as_deref(),
                r.upstream_calls,
            )
        })
        .collect();
    let refusal = (Some("service-unavailable"), Some("peer-budget"), 0);
    assert_eq!(
        summary,
        [
            (None, None, 1),
            (None, None, 1),
            (None, None, 1),
            refusal,
            refusal
        ],
        "{rows:#?}"
    );
    let metrics = d.agent.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"quoalise_agent_peer_quota_refusals_total{peer="capped@localhost",limit="peer-budget"}"#
        ),
        2.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"quoalise_agent_peer_quota_refusals_total{peer="free@localhost""#),
        "{metrics}"
    );
}

//! Fault tolerance of the REAL agent against a misbehaving Enedis and a dying XMPP
//! server (real Prosody, real `enedis-sim` with its fault switches, Rust peers):
//!
//! - Enedis slow beyond the request deadline, failing (500), throttling (429, a
//!   burst and a persistent one), answering garbage (cut JSON, an HTML error page,
//!   a 200 that is not JSON): each fault becomes the protocol's error, in time;
//! - while one peer's request is stuck upstream, other peers are answered;
//! - when the fault is cleared, the very next request succeeds: nothing to restart;
//! - Prosody killed with SIGKILL and restarted (it lost the agent's session, so
//!   stream resumption fails): /healthz says so meanwhile, the agent starts a new
//!   session by itself and answers again.

use crate::common;
use crate::common::agent_harness;

use std::time::{Duration, Instant};

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, submit};
use quoalise_agent::xmpp::Command;
use serde_json::json;
use xmpp_parsers::stanza_error::ErrorType;

const POWER: &str = "consumption/power/active/raw";
const DAILY: &str = "consumption/energy/active/daily";

/// Yesterday's readings of `series` (never cached: every request goes upstream).
fn yesterday(prm: &str, series: &str) -> Command {
    Command::execute(
        "get_history",
        Some(submit(&[
            ("identifier", &format!("urn:dev:prm:{prm}_{series}")),
            ("start_time", &midnight(today().yesterday().unwrap())),
            ("end_time", &midnight(today())),
        ])),
    )
}

/// The stanza error of a request: (condition, type, text).
async fn error_of(peer: &Peer, command: Command) -> (String, ErrorType, String) {
    let e = peer.command(command).await.expect_err("the request fails");
    let (cond, text) = condition(&e);
    (cond, e.type_, text)
}

async fn ok(peer: &Peer, command: Command) {
    let answer = peer.command(command).await;
    assert!(answer.is_ok(), "{:?}", answer.err().map(|e| condition(&e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_fault_maps_to_its_error_and_clears_by_itself() {
    let mut settings =
        AgentSettings::with_peers(vec![peer("alice", &[PRM]), peer("bob", &[PRM_PT10M])]);
    settings.request_timeout_secs = 8;
    settings.max_retries = 1;
    let d = Deployment::start(settings).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let bob = Peer::login(&d.prosody, "bob@localhost/b").await;
    let admin = d.sim.admin();
    ok(&alice, yesterday(PRM, POWER)).await;

    // Slow: only the load curves (path_prefix), beyond alice's deadline. Bob's
    // daily request and list_usage_points are answered meanwhile.
    admin
        .faults(json!({
            "latency_ms": 15000,
            "path_prefix": "/mesure_synchrone_auto/v2/courbe_de_charge"
        }))
        .await;
    let started = Instant::now();
    let slow = {
        let alice = Peer::login(&d.prosody, "alice@localhost/slow").await;
        tokio::spawn(async move {
            (
                error_of(&alice, yesterday(PRM, POWER)).await,
                Instant::now(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok(&bob, yesterday(PRM_PT10M, DAILY)).await;
    ok(&bob, Command::execute("list_usage_points", None)).await;
    let bob_done = Instant::now();
    let ((cond, type_, text), alice_done) = slow.await.unwrap();
    assert_eq!(cond, "service-unavailable", "{text}");
    assert_eq!(type_, ErrorType::Wait);
    assert!(bob_done < alice_done, "bob was answered while alice waited");
    let waited = alice_done - started;
    assert!(
        waited < Duration::from_secs(12),
        "answered by its deadline (8 s), not after the upstream's 15 s: {waited:?}"
    );
    admin.clear_faults().await;
    ok(&alice, yesterday(PRM, POWER)).await;

    // Failing: every call 500.
    admin.faults(json!({ "failure_rate": 1.0 })).await;
    let (cond, type_, _) = error_of(&alice, yesterday(PRM, POWER)).await;
    assert_eq!(
        (cond.as_str(), type_),
        ("service-unavailable", ErrorType::Wait)
    );
    admin.clear_faults().await;
    ok(&alice, yesterday(PRM, POWER)).await;

    // Throttling: a short burst of 429 is waited out, the request succeeds.
    admin
        .faults(json!({ "force_status": { "status": 429, "count": 1 } }))
        .await;
    ok(&alice, yesterday(PRM, POWER)).await;
    // A persistent 429 with a long Retry-After: unavailable, "wait" and retry.
    admin
        .faults(json!({ "force_status": {
            "status": 429,
            "count": 100,
            "body": "{\"code\":\"429\",\"message\":\"SLA dépassé\"}",
        } }))
        .await;
    let (cond, type_, text) = error_of(&alice, yesterday(PRM, POWER)).await;
    assert_eq!(
        (cond.as_str(), type_),
        ("service-unavailable", ErrorType::Wait),
        "{text}"
    );
    admin.clear_faults().await;
    // The quota pause the 429 asked for may still run: the agent recovers by
    // itself within a few seconds, without anybody restarting anything.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match alice.command(yesterday(PRM, POWER)).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "not recovered: {:?}",
                    condition(&e)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    // Garbage: JSON cut in half, an HTML error page, a 200 that is not JSON.
    for fault in [
        json!({ "truncated_body": 10 }),
        json!({ "html_body": 10 }),
        json!({ "force_status": { "status": 200, "count": 10, "body": "<<<not json", "content_type": "text/plain" } }),
    ] {
        admin.faults(fault.clone()).await;
        let (cond, type_, text) = error_of(&alice, yesterday(PRM, POWER)).await;
        assert_eq!(
            (cond.as_str(), type_),
            ("service-unavailable", ErrorType::Wait),
            "{fault}: {text}"
        );
        assert!(
            !text.contains("127.0.0.1"),
            "no internal detail to peers: {text}"
        );
        admin.clear_faults().await;
        ok(&alice, yesterday(PRM, POWER)).await;
    }

    // A business refusal keeps Enedis' code.
    admin
        .faults(json!({ "force_status": { "status": 403, "count": 1,
            "body": "{\"code\":\"ADAM-DC-0010\",\"message\":\"Accès refusé\"}" } }))
        .await;
    let (cond, _, text) = error_of(&alice, yesterday(PRM, POWER)).await;
    assert_eq!(cond, "undefined-condition", "{text}");
    ok(&alice, yesterday(PRM, POWER)).await;

    // Through it all the agent stayed healthy and counted what happened.
    assert_eq!(d.agent.healthz().await.unwrap().0, 200);
    let metrics = d.agent.metrics().await;
    let unavailable = counter(
        &metrics,
        r#"quoalise_agent_requests_total{command="get_history",outcome="service-unavailable"}"#,
    );
    assert!(unavailable >= 6, "{metrics}");
    // Every upstream call is counted by endpoint and status, and the 429 pauses
    // show up as quota waits.
    let curve = "quoalise_agent_upstream_calls_total{endpoint=\"mesure_synchrone_auto/v2/courbe_de_charge_consommation\"";
    for (status, at_least) in [("200", 8), ("500", 2), ("429", 2), ("403", 1)] {
        let n = counter(&metrics, &format!("{curve},status=\"{status}\"}}"));
        assert!(n >= at_least, "{status}: {n} calls\n{metrics}");
    }
    assert!(
        counter(&metrics, "quoalise_agent_quota_waits_total") >= 1,
        "{metrics}"
    );
}

/// The value of the metric line starting with `name`.
/// The agent's hourly quota spent: the next request that needs Enedis is refused
/// at once, and the refusal says at which minute the quota frees a slot (an hour
/// after the call that took it), not "in a few minutes".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_hourly_quota_says_when_to_retry() {
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[PRM])]);
    settings.calls_per_hour = 1;
    let d = Deployment::start(settings).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let first_call = jiff::Timestamp::now();
    // Yesterday is never cached: each request needs Enedis until the hour is spent
    // (the application token may take the only slot itself).
    let mut refusal = None;
    for series in [DAILY, POWER, DAILY] {
        if let Err(e) = alice.command(yesterday(PRM, series)).await {
            refusal = Some(e);
            break;
        }
    }
    let e = refusal.expect("one call per hour cannot serve three requests");
    let (cond, text) = condition(&e);
    assert_eq!(cond, "service-unavailable", "{text}");
    assert_eq!(e.type_, ErrorType::Wait);
    let at = text
        .split_once("retry after ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no retry time in {text:?}"));
    assert!(at.ends_with(" UTC"), "{text}");
    // HH:MM, or a date then HH:MM when the hour crosses midnight UTC.
    let hh_mm = at
        .trim_end_matches(" UTC")
        .rsplit(' ')
        .next()
        .unwrap_or_default();
    let expected = first_call
        .checked_add(jiff::SignedDuration::from_secs(3_600))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .time();
    let said = jiff::civil::Time::strptime("%H:%M", hh_mm)
        .unwrap_or_else(|e| panic!("{hh_mm:?} in {text:?}: {e}"));
    // The slot frees an hour after the first call, rounded up to the minute; the
    // first call left within the seconds after `first_call`.
    let minutes = |t: jiff::civil::Time| i32::from(t.hour()) * 60 + i32::from(t.minute());
    let ahead = (minutes(said) - minutes(expected)).rem_euclid(24 * 60);
    assert!(ahead <= 2, "said {said}, expected about {expected}: {text}");

    // The same instant for programs, to the second, with what held the call back.
    let child = e.other.as_ref().expect("a <retry-after/> child");
    assert_eq!(child.name(), "retry-after");
    assert_eq!(child.ns(), "urn:quoalise:0");
    assert_eq!(child.attr("limit"), Some("hourly-quota"));
    let at: jiff::Timestamp = child.attr("at").expect("at").parse().expect("an instant");
    let free = first_call
        .checked_add(jiff::SignedDuration::from_secs(3_600))
        .unwrap();
    let ahead = at.duration_since(free).as_secs();
    assert!(
        (0..=120).contains(&ahead),
        "at {at}, an hour after the first call is {free}"
    );
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Prosody's own pid, from the pid file next to its log.
fn prosody_pid(d: &Deployment) -> u32 {
    let pidfile = d.prosody.log_path().with_file_name("prosody.pid");
    std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_killed_and_restarted_the_agent_reconnects_by_itself() {
    let mut d = Deployment::launch(
        AgentSettings::with_peers(vec![peer("alice", &[PRM])]),
        &[],
        &[("RUST_LOG", "info,quoalise_agent=debug,tokio_xmpp=trace")],
    )
    .await;
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    ok(&alice, yesterday(PRM, POWER)).await;
    alice.running.stop().await;

    for round in 0..2 {
        signal(prosody_pid(&d), "-KILL");
        // /healthz reports the lost session (store still fine).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = d.agent.healthz().await.expect("the web port still answers");
            if status == 503 {
                assert!(body.contains("xmpp"), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: healthz {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.prosody.restart().await;
        let restarted = Instant::now();
        d.agent.wait_healthy(Duration::from_secs(60)).await;
        println!(
            "round {round}: the agent was back {:.1} s after Prosody restarted",
            restarted.elapsed().as_secs_f64()
        );
        let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
        ok(&alice, yesterday(PRM, POWER)).await;
        alice.running.stop().await;
    }
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains("quoalise_agent_xmpp_reconnects_total 2"),
        "{metrics}"
    );
}

//! Subscriptions end to end: the REAL `quoalise-agent run`, a real Prosody WITH
//! offline storage, the REAL `enedis-sim`, and Rust peers built on the library.
//!
//! - `subscribe` (field `identifier`, as the Quoalise client sends it) is
//!   authorised like `get_history` and answered "Success"; the latest published day
//!   arrives at once as a `<message>` carrying the Quoalise payload, sent to the
//!   subscriber's bare JID; `list_usage_points` shows the subscription;
//! - a subscriber that went offline before its data was sent gets it from the
//!   server's offline storage when it comes back (with a XEP-0203 delay);
//! - a subscription ends with its consent; `unsubscribe` ends one;
//! - pushes are audited like reads (`quoalise-agent audit`).

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::*;
use common::prosody::{DOMAIN, Prosody, ProsodyOptions};
use common::xmpp_harness::{AGENT, Peer, condition, field_values, submit};
use minidom::Element;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{TimeSeries, decode_element};
use quoalise_agent::store::{ConsentState, NewConsent, Store};
use quoalise_agent::time::day_start;
use quoalise_agent::time::due_through;
use quoalise_agent::xmpp::{Command, NS_QUOALISE};
use tokio::sync::mpsc;
use tokio_xmpp::Stanza;

const DAILY: &str = "consumption/energy/active/daily";

fn identifier(prm: &str, series: &str) -> String {
    format!("urn:dev:prm:{prm}_{series}")
}

/// The day a new subscription is sent first: the latest one published.
fn latest_published() -> jiff::civil::Date {
    due_through(jiff::Timestamp::now(), jiff::civil::time(8, 0, 0, 0))
}

/// Prosody with offline storage, the simulator and the agent.
async fn deploy(peers: Vec<PeerSpec>) -> Deployment {
    let prosody = Prosody::start_with(ProsodyOptions {
        tls: true,
        offline: true,
        ..ProsodyOptions::default()
    })
    .await;
    Deployment::start_on(prosody, AgentSettings::with_peers(peers)).await
}

async fn run(
    peer: &Peer,
    node: &str,
    fields: &[(&str, &str)],
) -> Result<Command, (String, String)> {
    peer.command(Command::execute(node, Some(submit(fields))))
        .await
        .map_err(|e| condition(&e))
}

/// The next message carrying a Quoalise payload: (its payloads, the series).
async fn next_push(
    inbound: &mut mpsc::Receiver<Stanza>,
    within: Duration,
) -> Option<(Vec<Element>, TimeSeries)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stanza = tokio::time::timeout_at(deadline, inbound.recv())
            .await
            .ok()??;
        let Stanza::Message(message) = stanza else {
            continue;
        };
        let Some(quoalise) = message
            .payloads
            .iter()
            .find(|p| p.is("quoalise", NS_QUOALISE))
        else {
            continue;
        };
        let data = decode_element(quoalise).expect("the pushed payload decodes");
        assert_eq!(data.len(), 1);
        let series = data[0].to_time_series().expect("a time series");
        assert_eq!(
            message.from.as_ref().map(|j| j.to_string()),
            Some(format!("{AGENT}@{DOMAIN}/agent"))
        );
        return Some((message.payloads.clone(), series));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_the_latest_day_at_once_and_list_usage_points_shows_them() {
    let d = deploy(vec![peer("alice", &[PRM]), peer("bob", &[])]).await;
    let mut alice = Peer::login(&d.prosody, "alice@localhost/phone").await;
    let id = identifier(PRM, DAILY);

    let answer = run(&alice, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    let form = answer.form.expect("a result form");
    assert_eq!(field_values(&form, "result"), ["Success"]);
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.text.contains("Subscribed to")),
        "{:?}",
        answer.notes
    );

    let (_, series) = next_push(&mut alice.inbound, Duration::from_secs(30))
        .await
        .expect("the latest published day is pushed at once");
    assert_eq!(series.identifier.to_string(), id);
    assert_eq!(series.readings.len(), 1);
    assert_eq!(
        series.readings[0].start,
        day_start(latest_published()).unwrap()
    );
    assert!(series.readings[0].value.is_some());

    // Subscribing again changes nothing and sends nothing more.
    let answer = run(&alice, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.text.contains("Already subscribed")),
        "{:?}",
        answer.notes
    );

    // list_usage_points shows it.
    let answer = run(&alice, "list_usage_points", &[]).await.unwrap();
    let form = answer.form.unwrap();
    assert_eq!(field_values(&form, "subscriptions"), vec![id.clone()]);
    let lines = field_values(&form, PRM);
    assert!(
        lines.iter().any(|l| l == &format!("subscribed: {DAILY}")),
        "{lines:?}"
    );

    // Bob may not read the PRM: he may not subscribe to it either.
    let bob = Peer::login(&d.prosody, "bob@localhost/pc").await;
    let (condition, text) = run(&bob, "subscribe", &[("identifier", &id)])
        .await
        .unwrap_err();
    assert_eq!(condition, "not-authorized", "{text}");
    // A malformed identifier names the field.
    let (condition, text) = run(&bob, "subscribe", &[("identifier", "urn:dev:prm:123_x")])
        .await
        .unwrap_err();
    assert_eq!(condition, "bad-request");
    assert!(text.contains("identifier"), "{text}");

    // Unsubscribe ends it; a second time says there was none.
    let answer = run(&alice, "unsubscribe", &[("identifier", &id)])
        .await
        .unwrap();
    assert!(answer.notes.iter().any(|n| n.text.contains("Unsubscribed")));
    let answer = run(&alice, "unsubscribe", &[("identifier", &id)])
        .await
        .unwrap();
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.text.contains("no subscription"))
    );
    let answer = run(&alice, "list_usage_points", &[]).await.unwrap();
    assert!(field_values(&answer.form.unwrap(), "subscriptions").is_empty());
    assert!(
        next_push(&mut alice.inbound, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing pushed after the second subscribe"
    );

    // The trail has the subscriptions and the push (command "subscription").
    let out = tokio::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(d.files.path())
        .args(["audit", "--format", "json"])
        .env_remove("QUOALISE_AGENT_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let find = |peer: &str, command: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r["peer"] == peer && r["command"] == command && r["outcome"] == outcome)
            .count()
    };
    assert_eq!(find("alice@localhost", "subscribe", "allowed"), 2);
    assert_eq!(find("alice@localhost", "subscription", "allowed"), 1);
    assert_eq!(find("bob@localhost", "subscribe", "refused"), 1);
    let push = rows
        .iter()
        .find(|r| r["command"] == "subscription")
        .unwrap();
    assert_eq!(push["via_grant"], true);
    assert_eq!(
        push["upstream_calls"].as_u64().map(|n| n >= 1),
        Some(true),
        "{push}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_subscriber_gets_its_data_from_the_servers_offline_storage() {
    let d = deploy(vec![peer("carol", &[PRM])]).await;
    let carol = Peer::login(&d.prosody, "carol@localhost/laptop").await;
    // Enedis answers slowly: carol is gone before her first push is sent.
    d.sim
        .admin()
        .faults(serde_json::json!({ "latency_ms": 3000 }))
        .await;
    let id = identifier(PRM, DAILY);
    run(&carol, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    carol.running.stop().await;
    assert!(
        d.agent
            .wait_log("subscription round through=", Duration::from_secs(30))
            .await,
        "the push was made"
    );
    d.sim.admin().clear_faults().await;

    let mut carol = Peer::login(&d.prosody, "carol@localhost/laptop").await;
    let (payloads, series) = next_push(&mut carol.inbound, Duration::from_secs(20))
        .await
        .expect("the stored message is delivered at login");
    assert_eq!(series.identifier.to_string(), id);
    assert_eq!(series.readings.len(), 1);
    assert!(
        payloads.iter().any(|p| p.is("delay", "urn:xmpp:delay")),
        "it came from offline storage: {payloads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_with_its_consent() {
    let d = deploy(vec![peer("dave", &[])]).await;
    // Dave's consent, recorded while the agent runs (as `consents add` would).
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let consent = store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: "dave@localhost".into(),
                prms: vec![PRM.parse().unwrap()],
                autorisation_id: Some(7),
                valid_from: now - 60,
                valid_until: now + 86_400,
            },
            None,
        )
        .unwrap();
    let mut dave = Peer::login(&d.prosody, "dave@localhost/home").await;
    let id = identifier(PRM, DAILY);
    run(&dave, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    next_push(&mut dave.inbound, Duration::from_secs(30))
        .await
        .expect("pushed on the consent");
    let answer = run(&dave, "list_usage_points", &[]).await.unwrap();
    assert_eq!(
        field_values(&answer.form.unwrap(), "subscriptions"),
        vec![id.clone()]
    );

    store
        .set_consent_state(consent.id, ConsentState::Revoked)
        .unwrap();
    assert!(store.subscriptions().unwrap().is_empty());
    let answer = run(&dave, "list_usage_points", &[]).await.unwrap();
    assert!(field_values(&answer.form.unwrap(), "subscriptions").is_empty());
    let (condition, _) = run(&dave, "subscribe", &[("identifier", &id)])
        .await
        .unwrap_err();
    assert_eq!(condition, "not-authorized");
}

/// Days a subscriber missed while the agent was stopped are pushed as soon as the
/// restarted agent's session is up, not after the scheduler's retry delay (15
/// minutes): the first pass waits for the session instead of failing without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_days_are_pushed_as_soon_as_a_restarted_agent_is_online() {
    let mut d = deploy(vec![peer("carol", &[PRM])]).await;
    let mut carol = Peer::login(&d.prosody, "carol@localhost/laptop").await;
    let id = identifier(PRM, DAILY);
    run(&carol, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    next_push(&mut carol.inbound, Duration::from_secs(30))
        .await
        .expect("the first push");

    // Stopped, and the store says the last three days were never sent.
    d.agent.signal("-TERM");
    assert!(d.agent.wait_exit(Duration::from_secs(30)).await.success());
    let latest = latest_published();
    let missed_from = quoalise_agent::time::add_days(latest, -2).unwrap();
    let before = quoalise_agent::time::add_days(missed_from, -1).unwrap();
    let db = rusqlite::Connection::open(d.dir.path().join("agent.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE subscriptions SET delivered_through = ?1",
            [before.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    d.agent = AgentProcess::spawn(&d.files.path(), d.dir.path(), d.files.web_port, &[]);
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    let (_, series) = next_push(&mut carol.inbound, Duration::from_secs(30))
        .await
        .expect("the missed days, right after the restart");
    let starts: Vec<i64> = series.readings.iter().map(|r| r.start).collect();
    assert_eq!(
        starts,
        [
            missed_from,
            quoalise_agent::time::add_days(latest, -1).unwrap(),
            latest
        ]
        .map(|day| day_start(day).unwrap())
    );
}

/// A subscriber ten days behind (the agent was down for ten days) gets all ten
/// days when the agent is back, oldest first, none skipped: a week in the first
/// message, the three days left in the second; the store then says it has every
/// day through the latest, and another restart sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_ten_days_behind_gets_every_day_in_order() {
    let mut d = deploy(vec![peer("carol", &[PRM])]).await;
    let mut carol = Peer::login(&d.prosody, "carol@localhost/laptop").await;
    let id = identifier(PRM, DAILY);
    run(&carol, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    next_push(&mut carol.inbound, Duration::from_secs(30))
        .await
        .expect("the first push");

    // Stopped, and the store says the last ten days were never sent.
    d.agent.stop().await;
    let latest = latest_published();
    let day = |n: i64| quoalise_agent::time::add_days(latest, n).unwrap();
    let db = rusqlite::Connection::open(d.dir.path().join("agent.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE subscriptions SET delivered_through = ?1",
            [day(-10).to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    d.agent = AgentProcess::spawn(&d.files.path(), d.dir.path(), d.files.web_port, &[]);
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    let mut messages: Vec<Vec<i64>> = Vec::new();
    while messages.iter().map(Vec::len).sum::<usize>() < 10 {
        let (_, series) = next_push(&mut carol.inbound, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("the catch-up stopped after {messages:?}"));
        assert_eq!(series.identifier.to_string(), id);
        assert!(series.readings.iter().all(|r| r.value.is_some()));
        messages.push(series.readings.iter().map(|r| r.start).collect());
    }
    let first: Vec<i64> = (-9..=-3).map(|n| day_start(day(n)).unwrap()).collect();
    let second: Vec<i64> = (-2..=0).map(|n| day_start(day(n)).unwrap()).collect();
    assert_eq!(messages, vec![first, second]);

    // The agent commits its progress after sending each message: the peer may
    // read the last one before the agent has stored it. The store must say so
    // within seconds (a round's log line cannot tell: the first one seen may
    // be of an earlier round of the catch-up, as CI showed).
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = store.subscriptions().unwrap()[0].delivered_through;
        if stored == latest || std::time::Instant::now() >= give_up {
            assert_eq!(stored, latest);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Restarted again: nothing is missing, nothing is sent twice.
    d.agent.restart().await;
    assert!(
        next_push(&mut carol.inbound, Duration::from_secs(2))
            .await
            .is_none(),
        "a day sent again after a restart"
    );
}

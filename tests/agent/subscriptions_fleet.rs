//! Daily pushes for a fleet, end to end: the REAL `quoalise-agent run`, a real
//! Prosody, the REAL `enedis-sim`, and 2,000 subscriptions of one peer (an
//! aggregator) to the daily energy of 2,000 meters, on an hourly quota of 300
//! calls with 20 % kept for interactive requests:
//!
//! - a pass sends the background share of the hour (240 calls, one per
//!   subscription) and then waits for the quota, without failing anybody: the
//!   subscriptions not sent stay due (`/metrics`: due 2000, sent 240, waiting
//!   1760) and the quota is not asked again and again;
//! - the subscribers who waited longest (three days behind) went first;
//! - meanwhile a person's `get_history` is answered, from the 20 % kept for it.
//!
//! It does not wait for the hour to pass: it checks the state once the background
//! share is spent, then shuts down.

use crate::common;
use crate::common::agent_harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, submit};
use quoalise_agent::quoalise::{Identifier, Series, decode_element};
use quoalise_agent::store::{AccessBasis, Store};
use quoalise_agent::time::{add_days, day_start, due_through};
use quoalise_agent::xmpp::{Command, NS_QUOALISE};
use tokio_xmpp::Stanza;

/// Subscriptions of the fleet.
const FLEET: usize = 2000;
const CALLS_PER_HOUR: u32 = 300;
/// What background work may use of the hour: 80 % of 300.
const BACKGROUND_SHARE: u64 = 240;
const DAILY_CALLS: &str = "GET /mesure_synchrone_auto/v2/consommation_quotidienne";

/// What the aggregator received: (PRM, the days' starts) per message.
type Inbox = Arc<Mutex<Vec<(String, Vec<i64>)>>>;

/// The fleet's `i`-th meter (the simulator serves any PRM it holds a consent for).
fn fleet_prm(i: usize) -> String {
    format!("5{i:013}")
}

/// Every 7th subscription (by id) missed three days, the others only the latest
/// one: the three-day ones must go first, wherever their ids fall.
fn days_behind(i: usize) -> i64 {
    if i % 7 == 3 { 3 } else { 1 }
}

/// The value of the sample `name{labels}` in a Prometheus text.
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"))
}

fn push_state(metrics: &str, state: &str) -> u64 {
    sample(
        metrics,
        &format!("quoalise_agent_push_subscriptions{{state=\"{state}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_is_pushed_oldest_first_within_the_background_share_and_people_are_still_served() {
    let started = Instant::now();
    let prms: Vec<String> = (0..FLEET).map(fleet_prm).collect();
    let granted: Vec<&str> = prms.iter().map(String::as_str).collect();
    let settings = AgentSettings {
        calls_per_hour: CALLS_PER_HOUR,
        calls_per_second: 50,
        interactive_reserve_percent: Some(20),
        ..AgentSettings::with_peers(vec![peer("fleet", &granted), peer("alice", &[PRM])])
    };
    let mut d = Deployment::launch(settings, &["--quota-per-hour", "1000000"], &[]).await;
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    // The simulator holds the fleet's consents (at most 10 PRMs each; the
    // redirect goes nowhere: the consents are all the test needs).
    d.sim
        .admin()
        .config(serde_json::json!({ "redirect_uri": "https://agent.invalid/redirect" }))
        .await;
    for chunk in prms.chunks(10) {
        d.sim.consent_v2("fleet", Some(&chunk.join(","))).await;
    }

    // The subscriptions, as `subscribe` records them, some three days behind.
    let through = due_through(jiff::Timestamp::now(), jiff::civil::time(8, 0, 0, 0));
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let mut behind = HashMap::new();
    for (i, prm) in prms.iter().enumerate() {
        let identifier = Identifier::new(prm.parse().unwrap(), Series::ConsumptionEnergyDaily);
        let (sub, _) = store
            .subscribe(
                "fleet@localhost",
                &identifier,
                AccessBasis::Grant,
                add_days(through, -days_behind(i)).unwrap(),
                now,
            )
            .unwrap();
        behind.insert(sub.id, days_behind(i));
    }
    let oldest = behind.values().filter(|n| **n == 3).count() as u64;
    assert!(oldest > BACKGROUND_SHARE, "{oldest} three days behind");
    println!(
        "deployment, consents and {FLEET} subscriptions ready after {:?}",
        started.elapsed()
    );

    // The aggregator is online and counts what it receives: (PRM, days).
    let mut fleet = Peer::login(&d.prosody, "fleet@localhost/app").await;
    let received: Inbox = Arc::default();
    let inbox = received.clone();
    tokio::spawn(async move {
        while let Some(stanza) = fleet.inbound.recv().await {
            let Stanza::Message(message) = stanza else {
                continue;
            };
            let Some(payload) = message
                .payloads
                .iter()
                .find(|p| p.is("quoalise", NS_QUOALISE))
            else {
                continue;
            };
            let series = decode_element(payload).unwrap()[0]
                .to_time_series()
                .unwrap();
            let days = series.readings.iter().map(|r| r.start).collect();
            inbox
                .lock()
                .unwrap()
                .push((series.identifier.prm.to_string(), days));
        }
    });

    // Back from a restart, the agent runs a pass over the whole fleet.
    d.sim.admin().clear_calls().await;
    let pass_started = Instant::now();
    d.agent.restart().await;
    assert!(
        d.agent
            .wait_log("limit=background-share", Duration::from_secs(120))
            .await,
        "no round stopped by the background share within 120 s"
    );
    println!(
        "background share spent {:?} after the restart",
        pass_started.elapsed()
    );

    // The pass waits: the share is spent, the rest is still due, nothing failed.
    let metrics = d.agent.metrics().await;
    let (due, sent, waiting) = (
        push_state(&metrics, "due"),
        push_state(&metrics, "sent"),
        push_state(&metrics, "waiting"),
    );
    println!("due {due}, sent {sent}, waiting {waiting}");
    assert_eq!(due, FLEET as u64, "{metrics}");
    assert_eq!(waiting, due - sent, "none failed, none dropped");
    assert_eq!(
        sample(&metrics, "quoalise_agent_quota_background_per_hour"),
        BACKGROUND_SHARE
    );
    // Every call of the hour (the token's too) counts against the share: it is
    // spent, exactly, and nearly all of it went to deliveries, one call each.
    assert_eq!(
        sample(&metrics, "quoalise_agent_quota_used_this_hour"),
        BACKGROUND_SHARE,
        "{metrics}"
    );
    assert!(
        (BACKGROUND_SHARE - 5..=BACKGROUND_SHARE).contains(&sent),
        "sent {sent}"
    );
    assert_eq!(d.sim.admin().call_count(DAILY_CALLS).await, sent);

    // The oldest-due went first: every subscription served was three days behind.
    let served: Vec<(i64, String)> = store
        .subscriptions()
        .unwrap()
        .iter()
        .filter(|s| s.delivered_through == through)
        .map(|s| (s.id, s.identifier.prm.to_string()))
        .collect();
    assert_eq!(served.len() as u64, sent);
    let younger = served.iter().filter(|(id, _)| behind[id] != 3).count();
    assert_eq!(
        younger, 0,
        "subscriptions one day behind served before older ones"
    );

    // The subscriber got each of them: its three days in one message.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (received.lock().unwrap().len() as u64) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let received = received.lock().unwrap();
        assert_eq!(received.len() as u64, sent, "messages received");
        let three: Vec<i64> = (-2..=0)
            .map(|n| day_start(add_days(through, n).unwrap()).unwrap())
            .collect();
        assert!(received.iter().all(|(_, days)| days == &three));
        let mut to: Vec<&str> = received.iter().map(|(prm, _)| prm.as_str()).collect();
        let mut expected: Vec<&str> = served.iter().map(|(_, prm)| prm.as_str()).collect();
        to.sort_unstable();
        expected.sort_unstable();
        assert_eq!(to, expected, "each served subscription's meter, once");
    }

    // A round stopped by the quota launches nothing more: a handful of refusals
    // (the deliveries in flight), not one per subscription still due.
    let refusals = d
        .agent
        .count("no Enedis call slot before the request's deadline");
    assert!(
        (1..=2 * quoalise_agent::push::PARALLEL_DELIVERIES).contains(&refusals),
        "{refusals} quota refusals"
    );

    // A person is still served: 20 % of the hour is kept for interactive requests.
    let alice = Peer::login(&d.prosody, "alice@localhost/phone").await;
    let day = add_days(through, -1).unwrap();
    let answer = alice
        .command(Command::execute(
            "get_history",
            Some(submit(&[
                (
                    "identifier",
                    &format!("urn:dev:prm:{PRM}_consumption/energy/active/daily"),
                ),
                ("start_time", &midnight(day)),
                ("end_time", &midnight(add_days(day, 1).unwrap())),
            ])),
        ))
        .await
        .unwrap_or_else(|e| panic!("get_history refused: {:?}", condition(&e)));
    let payload = answer
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .expect("the readings");
    let series = decode_element(payload).unwrap()[0]
        .to_time_series()
        .unwrap();
    assert_eq!(series.readings.len(), 1);
    assert!(series.readings[0].value.is_some());

    // ... while the pushes still wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = d.agent.metrics().await;
    assert_eq!(push_state(&metrics, "sent"), sent);
    assert_eq!(push_state(&metrics, "waiting"), FLEET as u64 - sent);
    assert_eq!(
        sample(&metrics, "quoalise_agent_quota_used_this_hour"),
        BACKGROUND_SHARE + 1
    );
    println!("whole test {:?}", started.elapsed());
}

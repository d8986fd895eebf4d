//! The audit trail and the cache through the REAL agent (`quoalise-agent run`,
//! real Prosody, real `enedis-sim`, Rust peers): every data access is on record
//! with its basis, outcome and upstream calls; a repeated closed-period request
//! costs no upstream call; a consent that ends while its data is being fetched
//! gets the peer `not-authorized`, not the data.

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, submit};
use jiff::ToSpan;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::store::{AuditFilter, ConsentState, NewConsent, Store};
use quoalise_agent::xmpp::Command;

const POWER: &str = "consumption/power/active/raw";
const LOAD_CURVE: &str = "GET /mesure_synchrone_auto/v2/courbe_de_charge_consommation";

fn history(prm: &str, from: i64, to: i64) -> Command {
    let days = |n: i64| midnight(today().checked_sub(n.days()).unwrap());
    Command::execute(
        "get_history",
        Some(submit(&[
            ("identifier", &format!("urn:dev:prm:{prm}_{POWER}")),
            ("start_time", &days(from)),
            ("end_time", &days(to)),
        ])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_is_on_record_and_a_cached_request_costs_nothing() {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("bob", &[]),
    ]))
    .await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    let bob = Peer::login(&d.prosody, "bob@localhost/b").await;

    // 30 closed days: 5 upstream calls, then none.
    d.sim.admin().clear_calls().await;
    alice.command(history(PRM, 32, 2)).await.unwrap();
    let cold = d.sim.admin().call_count(LOAD_CURVE).await;
    d.sim.admin().clear_calls().await;
    let warm_answer = alice.command(history(PRM, 32, 2)).await.unwrap();
    let warm = d.sim.admin().total_calls().await;
    println!(
        "through the agent, 30 closed days of load curve: {cold} upstream data calls cold, {warm} warm"
    );
    assert_eq!((cold, warm), (5, 0));
    assert!(!warm_answer.payloads.is_empty());

    // Bob may not read it: refused, on record.
    let (cond, _) = condition(&bob.command(history(PRM, 3, 1)).await.unwrap_err());
    assert_eq!(cond, "not-authorized");

    // An upstream failure: allowed, answered service-unavailable, on record.
    d.sim
        .admin()
        .faults(serde_json::json!({ "force_status": { "status": 503, "count": 10 } }))
        .await;
    let (cond, _) = condition(&alice.command(history(PRM, 60, 59)).await.unwrap_err());
    assert_eq!(cond, "service-unavailable");
    d.sim.admin().clear_faults().await;

    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let rows = store.audit(&AuditFilter::default()).unwrap();
    let summary: Vec<(String, String, Option<String>, bool, u32)> = rows
        .iter()
        .map(|r| {
            (
                r.peer.clone(),
                r.outcome.clone(),
                r.error.clone(),
                r.via_grant,
                r.upstream_calls,
            )
        })
        .collect();
    assert_eq!(summary.len(), 4, "{summary:?}");
    assert_eq!(summary[0].0, "alice@localhost");
    assert_eq!(&summary[0].1, "allowed");
    assert!(summary[0].3, "on the configuration's grant");
    assert!(summary[0].4 >= 5, "cold: the calls made ({summary:?})");
    assert_eq!(summary[1].4, 0, "warm: no call");
    assert_eq!(
        (
            summary[2].0.as_str(),
            summary[2].1.as_str(),
            summary[2].2.as_deref()
        ),
        ("bob@localhost", "refused", Some("not-authorized"))
    );
    assert_eq!(
        (summary[3].1.as_str(), summary[3].2.as_deref()),
        ("allowed", Some("service-unavailable"))
    );
    assert!(rows.iter().all(|r| r.command == "get_history"));
    assert!(rows.iter().all(|r| r.prm.as_deref() == Some(PRM)));
    assert!(rows[0].range_start.is_some() && rows[0].range_end.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_revoked_during_the_fetch_gets_not_authorized_not_the_data() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("carol", &[])])).await;
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let consent = store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: "carol@localhost".into(),
                prms: vec![PRM.parse().unwrap()],
                autorisation_id: Some(3),
                valid_from: now - 60,
                valid_until: now + 86_400,
            },
            None,
        )
        .unwrap();
    let carol = Peer::login(&d.prosody, "carol@localhost/c").await;
    carol.command(history(PRM, 3, 1)).await.unwrap();

    // Enedis is slow; the consent is revoked while the agent waits for it.
    d.sim
        .admin()
        .faults(serde_json::json!({ "latency_ms": 1500 }))
        .await;
    let request = tokio::spawn(async move { carol.command(history(PRM, 10, 9)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    store
        .set_consent_state(consent.id, ConsentState::Revoked)
        .unwrap();
    let error = request.await.unwrap().unwrap_err();
    let (cond, text) = condition(&error);
    assert_eq!(cond, "not-authorized", "{text}");
    assert!(
        text.contains("ended while the request was served"),
        "{text}"
    );

    let rows = store.audit(&AuditFilter::default()).unwrap();
    let outcomes: Vec<(&str, Option<i64>)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.consent_id))
        .collect();
    assert_eq!(
        outcomes,
        vec![("allowed", Some(consent.id)), ("refused", None)],
        "the second access is on record as refused, never as allowed"
    );
}

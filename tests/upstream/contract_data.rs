//! Contract and technical data (`Upstream::contract`) against the real
//! `enedis-sim` over HTTP: the 2026 ITC APIs (with `comptage_auto` answering 403
//! `900908`, as captured) and the v5 customer APIs, checked against what the
//! simulator itself answers the application; the parts that may be missing and
//! those that may not; v3/v4 refused without a call; a withdrawn consent; and the
//! 24-hour cache in front of the client (and its housekeeping). Calls are counted by the simulator.

use crate::common::upstream_sim;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::Direction;
use quoalise_agent::quoalise::Prm;
use quoalise_agent::quoalise::contract::{Changed, Coded, Contract, Power};
use quoalise_agent::store::ConsentState;
use quoalise_agent::upstream::cache::{CONTRACT_TTL_SECS, CachedUpstream, Clock};
use quoalise_agent::upstream::{EnedisClient, ErrorKind, Upstream};
use serde_json::{Value, json};
use upstream_sim::{AGENT, Sim, config, give_consent, store};

/// Profile 0: a consumer.
const CONSUMER: &str = "22516914714270";
/// Profile 6: consumer and producer.
const SELF_CONSUMER: &str = "12655648759651";
/// Profile 5: production only.
const PRODUCER: &str = "24880057139941";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn new_client(
    api: ApiGeneration,
    sim: &Sim,
) -> (
    EnedisClient,
    quoalise_agent::store::Store,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let client = EnedisClient::new(&config(api, sim), store.clone()).unwrap();
    (client, store, dir)
}

async fn contract(client: &impl Upstream, p: &str) -> (Contract, u32) {
    let fetched = client
        .contract(prm(p), &AGENT)
        .await
        .unwrap_or_else(|e| panic!("contract of {p}: {e}"));
    (fetched.contract, fetched.calls)
}

/// `seconds` from now.
fn later(seconds: i64) -> Timestamp {
    Timestamp::now()
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap()
}

/// `2024-10-12` of the simulator's `2024-10-12T00:00:00+0200` or `2013-08-14+01:00`.
fn day(raw: &Value) -> String {
    raw.as_str().unwrap()[..10].to_owned()
}

#[tokio::test]
async fn a_2026_contract_is_what_the_itc_apis_say_without_comptage() {
    let sim = Sim::start(&[]);
    let (client, _store, _dir) = new_client(ApiGeneration::Api2026, &sim);
    // What the simulator answers the application first-hand.
    let (status, situation) = sim
        .app_get_json(&format!("/situation_contrat_auto/v1/{CONSUMER}"))
        .await;
    assert_eq!(status, 200, "{situation}");
    let (_, synthese) = sim
        .app_get_json(&format!("/synth_contrat_auto/v1/{CONSUMER}"))
        .await;
    let (status, comptage) = sim
        .app_get_json(&format!("/comptage_auto/v1/{CONSUMER}"))
        .await;
    assert_eq!((status, comptage["code"].as_str()), (403, Some("900908")));
    sim.clear_calls().await;

    let (c, calls) = contract(&client, CONSUMER).await;
    assert_eq!(c.prm, prm(CONSUMER));
    assert_eq!(c.generation, "2026");
    let now = Timestamp::now().as_second();
    assert!((now - 60..=now).contains(&c.fetched), "{}", c.fetched);
    let s = &situation[0];
    assert_eq!(c.segments, [s["segment"].as_str().unwrap()]);
    assert_eq!(
        c.subscribed_power,
        Some(Power {
            value: s["subscribed_power"]["value"].as_str().unwrap().to_owned(),
            unit: "kVA".to_owned(),
        })
    );
    assert_eq!(
        c.tariff_option,
        Some(Coded::label(s["distribution_tariff"].as_str().unwrap()))
    );
    assert_eq!(
        c.contract_start.map(|d| d.to_string()),
        Some(day(&s["contract_start"]))
    );
    assert_eq!(
        c.services_level,
        Some(Coded::label(synthese["services_level"].as_str().unwrap()))
    );
    assert_eq!(
        c.activation(Some(Direction::Consumption))
            .map(|d| d.to_string()),
        Some(day(&synthese["consumption_last_activation_date"]))
    );
    assert_eq!(
        c.last_change(Changed::SubscribedPower)
            .map(|d| d.to_string()),
        Some(day(&synthese["last_subscribed_power_change_date"]))
    );
    // comptage_auto: not subscribed, named, not a failure; nothing made up.
    assert_eq!(
        (c.meter_type.as_ref(), c.off_peak_hours.as_ref()),
        (None, None)
    );
    assert_eq!(c.unavailable.len(), 1, "{:?}", c.unavailable);
    let u = &c.unavailable[0];
    assert_eq!(u.source, "comptage_auto/v1");
    assert_eq!(u.fields, ["meter-type", "off-peak-hours"]);
    assert_eq!(u.code.as_deref(), Some("900908"));
    assert!(u.reason.contains("not subscribed"), "{}", u.reason);
    // No address in 2026, and never the customer's name or contact data the
    // situation carries.
    assert_eq!(c.address, None);
    let xml = String::from(&c.to_element());
    for personal in [
        s["person"]["lastname"].as_str().unwrap(),
        s["contact_data"]["phone"].as_str().unwrap(),
    ] {
        assert!(!xml.contains(personal), "{personal} in {xml}");
    }
    // One call per API, and the token.
    assert_eq!(calls, 4);
    for api in [
        "situation_contrat_auto",
        "synth_contrat_auto",
        "comptage_auto",
    ] {
        assert_eq!(
            sim.calls(&format!("GET /{api}/v1/{CONSUMER}")).await,
            1,
            "{api}"
        );
    }
    assert_eq!(
        sim.calls(&format!("GET /donnees_generales_auto/v1/{CONSUMER}"))
            .await,
        0
    );
    assert_eq!(sim.total_calls().await, 4);
}

#[tokio::test]
async fn a_2026_self_consumer_and_a_producer() {
    let sim = Sim::start(&[]);
    let (client, _store, _dir) = new_client(ApiGeneration::Api2026, &sim);
    let (c, _) = contract(&client, SELF_CONSUMER).await;
    assert_eq!(c.segments, ["C5", "P4"]);
    assert!(c.subscribed_power.is_some());
    assert!(c.activation(Some(Direction::Consumption)).is_some());
    assert!(c.activation(Some(Direction::Production)).is_some());
    let (c, _) = contract(&client, PRODUCER).await;
    assert_eq!(c.segments, ["P4"]);
    // A producer's contract has no subscribed power nor tariff: none invented.
    assert_eq!((&c.subscribed_power, &c.tariff_option), (&None, &None));
    assert!(c.activation(Some(Direction::Production)).is_some());
    assert_eq!(c.activation(Some(Direction::Consumption)), None);
}

#[tokio::test]
async fn a_v5_contract_is_what_the_customer_apis_say_with_the_address() {
    let sim = Sim::start(&[]);
    let (client, _store, _dir) = new_client(ApiGeneration::V5, &sim);
    let (status, contracts) = sim
        .app_get_json(&format!(
            "/customers_upc/v5/usage_points/contracts?usage_point_id={CONSUMER}"
        ))
        .await;
    assert_eq!(status, 200, "{contracts}");
    let (_, addresses) = sim
        .app_get_json(&format!(
            "/customers_upa/v5/usage_points/addresses?usage_point_id={CONSUMER}"
        ))
        .await;
    sim.clear_calls().await;

    let (c, calls) = contract(&client, CONSUMER).await;
    assert_eq!(c.generation, "v5");
    let entry = &contracts["customer"]["usage_points"][0];
    let k = &entry["contracts"];
    assert_eq!(c.segments, [k["segment"].as_str().unwrap()]);
    let power = k["subscribed_power"].as_str().unwrap();
    assert_eq!(
        c.subscribed_power
            .as_ref()
            .map(|p| format!("{} {}", p.value, p.unit)),
        Some(power.to_owned())
    );
    assert_eq!(
        c.tariff_option,
        Some(Coded::code(k["distribution_tariff"].as_str().unwrap()))
    );
    let hours = c.off_peak_hours.as_ref().unwrap();
    assert_eq!(hours.raw, k["offpeak_hours"].as_str().unwrap());
    assert_eq!(
        hours.ranges.iter().map(|r| r.text()).collect::<Vec<_>>(),
        ["22:00-06:00"]
    );
    assert_eq!(
        c.meter_type,
        Some(Coded::code(
            entry["usage_point"]["meter_type"].as_str().unwrap()
        ))
    );
    assert_eq!(c.services_level, Some(Coded::code("com")));
    assert_eq!(
        c.activation(None).map(|d| d.to_string()),
        Some(day(&k["last_activation_date"]))
    );
    assert_eq!(
        c.last_change(Changed::TariffOption).map(|d| d.to_string()),
        Some(day(&k["last_distribution_tariff_change_date"]))
    );
    let a = &addresses["customer"]["usage_points"][0]["usage_point"]["usage_point_addresses"];
    let address = c.address.as_ref().expect("the v5 address");
    assert_eq!(address.street.as_deref(), a["street"].as_str());
    assert_eq!(address.postal_code.as_deref(), a["postal_code"].as_str());
    assert_eq!(address.city.as_deref(), a["city"].as_str());
    assert_eq!(address.insee_code.as_deref(), a["insee_code"].as_str());
    assert_eq!(address.country.as_deref(), Some("France"));
    assert!(c.unavailable.is_empty(), "{:?}", c.unavailable);
    assert_eq!(calls, 3);
    assert_eq!(sim.calls("GET /customers_i/v5/identity").await, 0);
    assert_eq!(sim.calls("GET /customers_cd/v5/contact_data").await, 0);
}

#[tokio::test]
async fn a_v5_address_the_consent_does_not_cover_is_left_out() {
    let sim = Sim::start(&[]);
    let (client, _store, _dir) = new_client(ApiGeneration::V5, &sim);
    sim.faults(json!({
        "path_prefix": "/customers_upa",
        "force_status": {"status": 403, "count": 5}
    }))
    .await;
    let (c, _) = contract(&client, CONSUMER).await;
    assert!(c.subscribed_power.is_some());
    assert_eq!(c.address, None);
    assert_eq!(c.unavailable.len(), 1);
    let u = &c.unavailable[0];
    assert_eq!(u.source, "customers_upa/v5/usage_points/addresses");
    assert_eq!(u.fields, ["address"]);
    assert!(
        u.reason.contains("does not cover the meter's address"),
        "{}",
        u.reason
    );
}

#[tokio::test]
async fn refusals_of_the_main_part_and_when_nothing_is_left() {
    let sim = Sim::start(&[]);
    let (client, _store, _dir) = new_client(ApiGeneration::Api2026, &sim);
    // The main part refused for a business reason: the whole answer fails.
    sim.faults(json!({
        "path_prefix": "/situation_contrat_auto",
        "force_status": {"status": 404, "body": "{\"code\":\"404\",\"message\":\"Situation contractuelle ou PRM non existant\"}"}
    }))
    .await;
    let err = client.contract(prm(CONSUMER), &AGENT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string().contains("situation_contrat_auto/v1"),
        "{err}"
    );
    // Every part not subscribed: Enedis' refusal is the answer.
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/upstream/2026/erreur_comptage_non_souscrit.json"
    ))
    .unwrap();
    sim.faults(json!({"force_status": {"status": 403, "body": body, "count": 3}}))
        .await;
    let err = client.contract(prm(CONSUMER), &AGENT).await.unwrap_err();
    assert_eq!(err.enedis_code(), Some("900908"), "{err}");
    // An unreadable answer names its API, without an excerpt (personal data).
    sim.faults(json!({
        "path_prefix": "/synth_contrat_auto",
        "force_status": {"status": 200, "body": "{\"segments\": \"C5\"}"}
    }))
    .await;
    let err = client.contract(prm(CONSUMER), &AGENT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(text.contains("synth_contrat_auto/v1"), "{text}");
    assert!(!text.contains("body starts with"), "{text}");
    sim.faults(json!({})).await;
}

#[tokio::test]
async fn v3_and_v4_have_no_contract_api_and_call_nothing() {
    let sim = Sim::start(&[]);
    for api in [ApiGeneration::V3, ApiGeneration::V4] {
        let (client, _store, _dir) = new_client(api, &sim);
        sim.clear_calls().await;
        let err = client.contract(prm(CONSUMER), &AGENT).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotImplemented, "{api:?}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("2026")
                && text.contains("v5")
                && text.contains(&format!("API {}", api.as_str())),
            "{text}"
        );
        assert_eq!(sim.total_calls().await, 0, "{api:?}");
    }
}

#[tokio::test]
async fn a_withdrawn_consent_refuses_the_contract_and_is_marked_revoked() {
    for api in [ApiGeneration::Api2026, ApiGeneration::V5] {
        let sim = Sim::start(&[]);
        let (client, store, _dir) = new_client(api, &sim);
        let consent = give_consent(&sim, &client, "gone0", "peer@example.org").await;
        let p = consent.prms[0];
        client.contract(p, &AGENT).await.unwrap();
        sim.admin_post(&format!("prms/{p}/revoke"), json!({})).await;
        let err = client.contract(p, &AGENT).await.unwrap_err();
        assert_eq!(err.enedis_code(), Some("ADAM-DC-0008"), "{api:?}: {err}");
        let state = store.consent(consent.id).unwrap().unwrap().state;
        assert_eq!(state, ConsentState::Revoked, "{api:?}");
    }
}

#[tokio::test]
async fn the_cache_serves_a_contract_for_24_hours_and_shares_a_read() {
    let sim = Sim::start(&[]);
    let (client, store, _dir) = new_client(ApiGeneration::Api2026, &sim);
    let now = Arc::new(std::sync::Mutex::new(Timestamp::now()));
    let clock = {
        let now = Arc::clone(&now);
        Clock::from_fn(move || *now.lock().unwrap())
    };
    // The configuration grants the PRM (what keeps its contract in memory).
    store
        .sync_grants([("peer@example.org", &[prm(CONSUMER)][..])])
        .unwrap();
    let cached = Arc::new(CachedUpstream::new(Arc::new(client), store.clone()).with_clock(clock));
    sim.clear_calls().await;

    // Five at once: one read (token and three calls), shared.
    let reads = (0..5).map(|_| {
        let cached = Arc::clone(&cached);
        async move { cached.contract_with_outcome(prm(CONSUMER), &AGENT).await }
    });
    let results = futures::future::join_all(reads).await;
    let first = results[0].as_ref().unwrap().0.contract.clone();
    let calls: u32 = results.iter().map(|r| r.as_ref().unwrap().0.calls).sum();
    assert_eq!(calls, 4, "the calls are counted once");
    assert_eq!(sim.total_calls().await, 4);
    for r in &results {
        let (fetched, from_memory) = r.as_ref().unwrap();
        assert_eq!(fetched.contract, first);
        assert!(!from_memory);
    }

    // Within 24 hours: from memory, no call, the same contract and read instant.
    *now.lock().unwrap() = later(CONTRACT_TTL_SECS - 60);
    let (again, from_memory) = cached
        .contract_with_outcome(prm(CONSUMER), &AGENT)
        .await
        .unwrap();
    assert!(from_memory);
    assert_eq!((again.contract, again.calls), (first.clone(), 0));
    assert_eq!(sim.total_calls().await, 4);

    // After: read again.
    *now.lock().unwrap() = later(CONTRACT_TTL_SECS + 60);
    let (fresh, from_memory) = cached
        .contract_with_outcome(prm(CONSUMER), &AGENT)
        .await
        .unwrap();
    assert!(!from_memory);
    assert!(fresh.calls >= 3, "{}", fresh.calls);
    assert!(sim.total_calls().await >= 7);

    // Housekeeping keeps it while the grant covers the PRM, drops it when nothing
    // does any more, and drops what is past its lifetime.
    assert_eq!(cached.purge_contracts().await, 0);
    let (_, from_memory) = cached
        .contract_with_outcome(prm(CONSUMER), &AGENT)
        .await
        .unwrap();
    assert!(from_memory);
    store.sync_grants(std::iter::empty()).unwrap();
    assert_eq!(cached.purge_contracts().await, 1);
    let (_, from_memory) = cached
        .contract_with_outcome(prm(CONSUMER), &AGENT)
        .await
        .unwrap();
    assert!(!from_memory, "read again once dropped");
    *now.lock().unwrap() = later(3 * CONTRACT_TTL_SECS);
    assert_eq!(cached.purge_contracts().await, 1, "past its lifetime");

    // Failures are not kept.
    sim.faults(json!({"force_status": {"status": 403, "count": 3, "body": "{\"code\":\"ADAM-DC-0008\",\"message\":\"no consent\"}"}}))
        .await;
    let other = prm(SELF_CONSUMER);
    assert!(cached.contract(other, &AGENT).await.is_err());
    sim.faults(json!({})).await;
    let (_, from_memory) = cached.contract_with_outcome(other, &AGENT).await.unwrap();
    assert!(!from_memory);
}

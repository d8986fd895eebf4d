//! The readings cache and request coalescing in front of the real upstream client,
//! against the real simulator (`enedis-sim`, 2026 API) and a real SQLite store:
//! calls are counted by the simulator itself.
//!
//! - the same closed 30-day request twice: 5 data calls, then none;
//! - an overlapping request asks only for the missing days;
//! - the last two days are always asked again;
//! - days with gaps are complete days of the cache;
//! - identical requests at the same time share one upstream call;
//! - a consent that ends takes its cached days with it;
//! - failures are not cached, and the cache never changes what the peer gets.

use crate::common::upstream_sim;

use std::sync::Arc;
use std::time::Duration;

use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Prm, Series};
use quoalise_agent::store::{ConsentState, NewConsent, Store};
use quoalise_agent::time::paris_today;
use quoalise_agent::upstream::cache::CachedUpstream;
use quoalise_agent::upstream::{EnedisClient, Upstream};
use upstream_sim::{AGENT, Sim, config};

/// Sandbox profile 0: an ordinary consumer.
const CONSUMER: &str = "22516914714270";
/// Profile 6: consumer and producer.
const SELF_CONSUMER: &str = "12655648759651";
/// Profile 4: no data on Tuesdays, load-curve holes on Wednesdays.
const GAPPY: &str = "42900589957123";
const LOAD_CURVE: &str = "GET /mesure_synchrone_auto/v2/courbe_de_charge_consommation";
const DAILY: &str = "GET /mesure_synchrone_auto/v2/consommation_quotidienne";
const PEER: &str = "app@example.org";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn today() -> Date {
    paris_today(jiff::Timestamp::now())
}

fn days_ago(n: i64) -> Date {
    today().checked_sub(n.days()).unwrap()
}

struct Setup {
    sim: Sim,
    store: Store,
    raw: Arc<dyn Upstream>,
    cached: Arc<CachedUpstream>,
    _dir: tempfile::TempDir,
}

/// The simulator, a store where `PEER` holds a 2026 consent for `prms`, the raw
/// client and the cached one over it.
async fn setup(prms: &[&str]) -> (Setup, i64) {
    let sim = Sim::start(&["--quota-per-second", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let consent = store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: PEER.into(),
                prms: prms.iter().map(|p| prm(p)).collect(),
                autorisation_id: Some(1),
                valid_from: now - 86_400,
                valid_until: now + 365 * 86_400,
            },
            None,
        )
        .unwrap();
    let mut cfg = config(ApiGeneration::Api2026, &sim);
    cfg.calls_per_second = 1000;
    let raw: Arc<dyn Upstream> = Arc::new(EnedisClient::new(&cfg, store.clone()).unwrap());
    let cached = Arc::new(CachedUpstream::new(raw.clone(), store.clone()));
    (
        Setup {
            sim,
            store,
            raw,
            cached,
            _dir: dir,
        },
        consent.id,
    )
}

#[tokio::test]
async fn a_repeated_closed_request_costs_no_call_and_overlaps_fetch_only_what_is_missing() {
    let (s, _) = setup(&[CONSUMER]).await;
    let (from, to) = (days_ago(32), days_ago(2));

    s.sim.clear_calls().await;
    let (first, outcome) = s
        .cached
        .readings_with_outcome(prm(CONSUMER), Series::ConsumptionPower, from, to, &AGENT)
        .await
        .unwrap();
    let cold = s.sim.calls(LOAD_CURVE).await;
    println!(
        "30 closed days of load curve, cold: {cold} data calls ({} counted by the client, token included)",
        first.calls
    );
    assert_eq!(cold, 5);
    assert_eq!(outcome.cached_days, 0);
    assert_eq!(outcome.runs, 1);

    s.sim.clear_calls().await;
    let (second, outcome) = s
        .cached
        .readings_with_outcome(prm(CONSUMER), Series::ConsumptionPower, from, to, &AGENT)
        .await
        .unwrap();
    let warm = s.sim.calls(LOAD_CURVE).await;
    println!("same request, warm: {warm} data calls");
    assert_eq!(warm, 0);
    assert_eq!(
        s.sim.all_calls().await["total"],
        0,
        "no call at all, token included"
    );
    assert_eq!(second.calls, 0);
    assert_eq!(outcome.cached_days, 30);
    assert_eq!(outcome.runs, 0);
    assert_eq!(second.readings, first.readings);
    assert_eq!((second.from, second.to), (first.from, first.to));

    // Ten older days and the first five cached ones: one run of 10 days (two calls
    // of at most 7), the cached part from the store.
    s.sim.clear_calls().await;
    let (from2, to2) = (days_ago(42), days_ago(27));
    let (overlap, outcome) = s
        .cached
        .readings_with_outcome(prm(CONSUMER), Series::ConsumptionPower, from2, to2, &AGENT)
        .await
        .unwrap();
    assert_eq!(outcome.cached_days, 5);
    assert_eq!(outcome.runs, 1);
    assert_eq!(s.sim.calls(LOAD_CURVE).await, 2);
    let direct = s
        .raw
        .readings(prm(CONSUMER), Series::ConsumptionPower, from2, to2, &AGENT)
        .await
        .unwrap();
    assert_eq!(
        overlap.readings, direct.readings,
        "the cache changes nothing the peer gets"
    );

    // A hole in the middle of the cached days: two runs around the cached middle.
    s.sim.clear_calls().await;
    let (holes, outcome) = s
        .cached
        .readings_with_outcome(
            prm(CONSUMER),
            Series::ConsumptionPower,
            days_ago(45),
            days_ago(0),
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(outcome.cached_days, 40, "days -42..-2 are cached");
    assert_eq!(outcome.runs, 2, "-45..-42 and the last two days");
    assert_eq!(s.sim.calls(LOAD_CURVE).await, 2);
    let direct = s
        .raw
        .readings(
            prm(CONSUMER),
            Series::ConsumptionPower,
            days_ago(45),
            days_ago(0),
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(holes.readings, direct.readings);
    assert_eq!(holes.notes, direct.notes);
}

#[tokio::test]
async fn the_last_two_days_are_always_asked_again() {
    let (s, _) = setup(&[CONSUMER]).await;
    for round in 0..2 {
        s.sim.clear_calls().await;
        let (fetched, outcome) = s
            .cached
            .readings_with_outcome(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                days_ago(10),
                today(),
                &AGENT,
            )
            .await
            .unwrap();
        assert_eq!(fetched.readings.len(), 10);
        let calls = s.sim.calls(DAILY).await;
        if round == 0 {
            assert_eq!((calls, outcome.cached_days), (1, 0));
        } else {
            assert_eq!(
                (calls, outcome.cached_days),
                (1, 8),
                "only yesterday and the day before"
            );
        }
    }
}

#[tokio::test]
async fn a_day_with_gaps_is_a_complete_day_of_the_cache() {
    let (s, _) = setup(&[GAPPY]).await;
    // Missing points written as nulls (as 2026 sometimes does) and left out alike.
    for null_gaps in [false, true] {
        s.sim
            .faults(serde_json::json!({ "null_gaps": null_gaps }))
            .await;
        let series = if null_gaps {
            Series::ConsumptionEnergyDaily
        } else {
            Series::ConsumptionPower
        };
        let (from, to) = (days_ago(20), days_ago(6));
        let first = s
            .cached
            .readings(prm(GAPPY), series, from, to, &AGENT)
            .await
            .unwrap();
        s.sim.clear_calls().await;
        let (second, outcome) = s
            .cached
            .readings_with_outcome(prm(GAPPY), series, from, to, &AGENT)
            .await
            .unwrap();
        assert_eq!(
            s.sim.all_calls().await["total"],
            0,
            "{series}: all 14 days cached"
        );
        assert_eq!(outcome.cached_days, 14);
        assert_eq!(second.readings, first.readings);
        let expected = match series {
            Series::ConsumptionPower => 14 * 48,
            _ => 14,
        };
        let values = first.readings.iter().filter(|r| r.value.is_some()).count();
        assert!(
            values < expected,
            "{series}: the profile has gaps ({values} of {expected})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_in_flight_share_one_upstream_call() {
    let (s, _) = setup(&[SELF_CONSUMER]).await;
    // Warm the application token so it is not part of the count, then slow the
    // data calls down so that every request is in flight at the same time.
    s.raw
        .readings(
            prm(SELF_CONSUMER),
            Series::ConsumptionEnergyDaily,
            days_ago(100),
            days_ago(99),
            &AGENT,
        )
        .await
        .unwrap();
    s.sim.faults(serde_json::json!({ "latency_ms": 400 })).await;
    s.sim.clear_calls().await;
    let (from, to) = (days_ago(12), days_ago(6));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let cached = s.cached.clone();
        tasks.push(tokio::spawn(async move {
            cached
                .readings_with_outcome(
                    prm(SELF_CONSUMER),
                    Series::ConsumptionPower,
                    from,
                    to,
                    &AGENT,
                )
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.cached.in_flight(), 1, "one upstream request in flight");
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        s.sim.calls(LOAD_CURVE).await,
        1,
        "one data call for 20 requests"
    );
    let joined = results.iter().filter(|(_, o)| o.joined == 1).count();
    let counted: u32 = results.iter().map(|(f, _)| f.calls).sum();
    println!("20 identical requests at once: 1 upstream call, {joined} joined the first");
    assert_eq!(joined, 19);
    assert_eq!(
        counted, 1,
        "the call is counted once, by the request that made it"
    );
    for (f, _) in &results {
        assert_eq!(f.readings, results[0].0.readings);
    }
    assert_eq!(s.cached.in_flight(), 0);

    // Different days are different requests.
    s.sim.clear_calls().await;
    let (a, b) = tokio::join!(
        s.cached.readings(
            prm(SELF_CONSUMER),
            Series::ConsumptionPower,
            days_ago(30),
            days_ago(28),
            &AGENT
        ),
        s.cached.readings(
            prm(SELF_CONSUMER),
            Series::ConsumptionPower,
            days_ago(40),
            days_ago(38),
            &AGENT
        ),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(s.sim.calls(LOAD_CURVE).await, 2);
}

#[tokio::test]
async fn a_consent_that_ends_takes_its_cached_days_with_it() {
    let (s, consent) = setup(&[CONSUMER]).await;
    let (from, to) = (days_ago(20), days_ago(5));
    s.cached
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(s.store.cache_stats().unwrap().days, 15);

    s.store
        .set_consent_state(consent, ConsentState::Revoked)
        .unwrap();
    assert_eq!(
        s.store.cache_stats().unwrap().days,
        0,
        "purged with the consent"
    );

    // With no consent left, nothing is kept (the upstream may still answer: the
    // 2026 simulator's sandbox meters have standing consents).
    s.sim.clear_calls().await;
    s.cached
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(s.sim.calls(DAILY).await, 1);
    assert_eq!(
        s.store.cache_stats().unwrap().days,
        0,
        "nothing cached without a basis"
    );

    // A grant of the configuration is a basis too; removing it purges.
    s.store.sync_grants([(PEER, &[prm(CONSUMER)][..])]).unwrap();
    s.cached
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(s.store.cache_stats().unwrap().days, 15);
    s.store.sync_grants(std::iter::empty()).unwrap();
    assert_eq!(s.store.cache_stats().unwrap().days, 0);
}

#[tokio::test]
async fn failures_are_not_cached_and_recovery_is_immediate() {
    let (s, _) = setup(&[CONSUMER]).await;
    let (from, to) = (days_ago(20), days_ago(10));
    s.sim
        .faults(serde_json::json!({ "truncated_body": 1 }))
        .await;
    let err = s
        .cached
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        quoalise_agent::upstream::ErrorKind::Unavailable,
        "{err}"
    );
    assert_eq!(s.store.cache_stats().unwrap().days, 0);
    let fetched = s
        .cached
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(fetched.readings.len(), 10);
    assert_eq!(s.store.cache_stats().unwrap().days, 10);

    // A window Enedis cannot serve is refused the same way, with no call.
    s.sim.clear_calls().await;
    let err = s
        .cached
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            today(),
            today().tomorrow().unwrap(),
            &AGENT,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        quoalise_agent::upstream::ErrorKind::BadRequest,
        "{err}"
    );
    assert_eq!(s.sim.all_calls().await["total"], 0);
}

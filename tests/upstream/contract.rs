//! Contract tests: every generation's adapter against the real `enedis-sim` over
//! HTTP on 127.0.0.1. Single calls, split ranges, DST days, consents, tokens (one
//! renewal on a 401, one token call for fifty waiting requests), quota, retries and
//! every error family. Call counts come from the simulator's own counters.

use crate::common::upstream_sim;

use std::time::Duration;

use jiff::ToSpan;
use jiff::civil::{Date, date};
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Prm, Reading, Series, Step};
use quoalise_agent::store::ConsentState;
use quoalise_agent::time::{day_start, paris_today};
use quoalise_agent::upstream::{
    Ask, Callback, Class, EnedisClient, ErrorKind, Fetched, Upstream, UpstreamError,
};
use serde_json::json;
use upstream_sim::{AGENT, Sim, config, give_consent, one_year, store};

const ALL: [ApiGeneration; 4] = [
    ApiGeneration::Api2026,
    ApiGeneration::V5,
    ApiGeneration::V4,
    ApiGeneration::V3,
];

/// Profile 0: one consumption PRM, load curve on.
const CONSUMER: &str = "22516914714270";
/// Profile 6: self-consumption, both directions.
const SELF_CONSUMER: &str = "12655648759651";
/// Profile 2: load curve not activated.
const NO_LOAD_CURVE: &str = "32320647321714";
/// Profile 5: production only.
const PRODUCER: &str = "24880057139941";
/// Profile 4: gaps.
const GAPPY: &str = "42900589957123";
/// Meters with 10- and 60-minute load curves.
const PT10M: &str = "30000000000010";
const PT60M: &str = "30000000000060";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn today() -> Date {
    paris_today(jiff::Timestamp::now())
}

fn data_path(api: ApiGeneration, series: Series) -> String {
    let dialect = quoalise_agent::upstream::dialect(api);
    let call = dialect.data_call(series, &prm(CONSUMER), today(), today());
    format!("GET {}", call.path)
}

fn token_path(api: ApiGeneration) -> &'static str {
    if api.per_consent_tokens() {
        "POST /v1/oauth2/token"
    } else {
        "POST /oauth2/v3/token"
    }
}

/// A client for `api`, with consents for the sandbox profiles `states` when the
/// generation needs one per consent (2026 and v5 read the standing consents).
struct Setup {
    client: EnedisClient,
    store: quoalise_agent::store::Store,
    _dir: tempfile::TempDir,
}

async fn setup(api: ApiGeneration, sim: &Sim, states: &[&str]) -> Setup {
    setup_with(config(api, sim), sim, states).await
}

async fn setup_with(
    config: quoalise_agent::config::EnedisConfig,
    sim: &Sim,
    states: &[&str],
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let client = EnedisClient::new(&config, store.clone()).unwrap();
    if config.api.per_consent_tokens() {
        for state in states {
            give_consent(sim, &client, state, "peer@example.org").await;
        }
    }
    Setup {
        client,
        store,
        _dir: dir,
    }
}

fn assert_consecutive(readings: &[Reading], seconds: i64) {
    for pair in readings.windows(2) {
        assert_eq!(pair[1].start - pair[0].start, seconds, "{pair:?}");
    }
}

async fn read(client: &EnedisClient, p: &str, series: Series, from: Date, to: Date) -> Fetched {
    client
        .readings(prm(p), series, from, to, &AGENT)
        .await
        .unwrap_or_else(|e| panic!("{p} {series} {from}..{to}: {e}"))
}

#[tokio::test]
async fn every_generation_reads_every_series_and_they_agree() {
    let sim = Sim::start(&[]);
    let to = today().yesterday().unwrap();
    let from = to.checked_sub(3.days()).unwrap();
    let mut per_generation = Vec::new();
    for api in ALL {
        let s = setup(api, &sim, &["consent6", "consent0"]).await;
        let mut all = Vec::new();
        for series in Series::ALL {
            let fetched = read(&s.client, SELF_CONSUMER, series, from, to).await;
            let readings = fetched.readings;
            assert!(!readings.is_empty(), "{api:?} {series}");
            match series.kind() {
                quoalise_agent::quoalise::SeriesKind::LoadCurve => {
                    assert_eq!(
                        readings[0].start,
                        day_start(from).unwrap(),
                        "{api:?} {series}"
                    );
                    assert_eq!(
                        readings.last().unwrap().start + 1800,
                        day_start(to).unwrap(),
                        "{api:?} {series}"
                    );
                    assert_consecutive(&readings, 1800);
                    assert!(readings.iter().all(|r| r.step == Step::PT30M));
                }
                _ => {
                    let starts: Vec<i64> = readings.iter().map(|r| r.start).collect();
                    let expected: Vec<i64> = (0..3)
                        .map(|d| day_start(from.checked_add(d.days()).unwrap()).unwrap())
                        .collect();
                    assert_eq!(starts, expected, "{api:?} {series}");
                    assert!(readings.iter().all(|r| r.step == Step::Day));
                }
            }
            assert!(
                readings.iter().all(|r| r.value.is_some_and(|v| v >= 0.0)),
                "{api:?} {series}"
            );
            all.push(readings);
        }
        per_generation.push((api, all));
    }
    // The simulator computes values from (PRM, instant) only: four formats, one truth.
    let (_, reference) = &per_generation[0];
    for (api, all) in &per_generation[1..] {
        assert_eq!(all, reference, "{api:?} disagrees with 2026");
    }
}

#[tokio::test]
async fn thirty_days_of_load_curve_cost_five_calls_and_a_year_of_daily_one() {
    let sim = Sim::start(&[]);
    for api in [ApiGeneration::Api2026, ApiGeneration::V4] {
        let s = setup(api, &sim, &["consent0"]).await;
        sim.clear_calls().await;
        let to = today();
        let from = to.checked_sub(30.days()).unwrap();
        let fetched = read(&s.client, CONSUMER, Series::ConsumptionPower, from, to).await;
        let data = sim.calls(&data_path(api, Series::ConsumptionPower)).await;
        let tokens = sim.calls(token_path(api)).await;
        println!(
            "{}: 30-day consumption load curve: {data} data calls, {tokens} token calls, {} readings, {} calls counted by the client",
            api.as_str(),
            fetched.readings.len(),
            fetched.calls
        );
        assert_eq!(data, 5);
        assert_eq!(fetched.calls as u64, data + tokens);
        let expected: i64 = (0..30)
            .map(|d| {
                let day = from.checked_add(d.days()).unwrap();
                (day_start(day.tomorrow().unwrap()).unwrap() - day_start(day).unwrap()) / 1800
            })
            .sum();
        assert_eq!(fetched.readings.len() as i64, expected);
        assert_consecutive(&fetched.readings, 1800);
        assert_eq!(fetched.readings[0].start, day_start(from).unwrap());

        sim.clear_calls().await;
        let from = to.checked_sub(365.days()).unwrap();
        let fetched = read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        let data = sim
            .calls(&data_path(api, Series::ConsumptionEnergyDaily))
            .await;
        println!(
            "{}: 365-day daily consumption: {data} data calls, {} readings",
            api.as_str(),
            fetched.readings.len()
        );
        assert_eq!(data, 1);
        assert_eq!(fetched.readings.len(), 365);
        assert!(fetched.notes.is_empty(), "{:?}", fetched.notes);
    }
}

#[tokio::test]
async fn dst_days_and_meter_steps_in_every_generation() {
    let sim = Sim::start(&[]);
    let days = [
        (date(2026, 3, 29), 46),
        (date(2026, 10, 25), 50),
        (date(2025, 10, 26), 50),
        (date(2026, 6, 10), 48),
    ];
    for api in ALL {
        let s = setup(api, &sim, &["consent0"]).await;
        for (day, count) in days {
            let next = day.tomorrow().unwrap();
            let readings = read(&s.client, CONSUMER, Series::ConsumptionPower, day, next)
                .await
                .readings;
            assert_eq!(readings.len(), count, "{api:?} {day}");
            assert_consecutive(&readings, 1800);
            assert_eq!(readings[0].start, day_start(day).unwrap());
            assert_eq!(readings[count - 1].start + 1800, day_start(next).unwrap());
        }
    }
    // Other meter steps (standing consents: application-token generations).
    let s = setup(ApiGeneration::Api2026, &sim, &[]).await;
    let day = date(2026, 10, 25);
    for (meter, minutes, count) in [(PT10M, 10, 150), (PT60M, 60, 25)] {
        let readings = read(
            &s.client,
            meter,
            Series::ConsumptionPower,
            day,
            day.tomorrow().unwrap(),
        )
        .await
        .readings;
        assert_eq!(readings.len(), count, "{meter}");
        assert_consecutive(&readings, minutes * 60);
        assert!(
            readings
                .iter()
                .all(|r| r.step == Step::Minutes(minutes as u16))
        );
    }
}

#[tokio::test]
async fn gaps_stay_missing() {
    let sim = Sim::start(&[]);
    let s = setup(ApiGeneration::Api2026, &sim, &[]).await;
    // A whole week: one Tuesday without data, one Wednesday with an afternoon hole.
    let to = today();
    let from = to.checked_sub(7.days()).unwrap();
    let daily = read(&s.client, GAPPY, Series::ConsumptionEnergyDaily, from, to)
        .await
        .readings;
    assert_eq!(daily.len(), 6, "the Tuesday is absent, not zero");
    sim.faults(json!({"null_gaps": true})).await;
    let daily = read(&s.client, GAPPY, Series::ConsumptionEnergyDaily, from, to)
        .await
        .readings;
    assert_eq!(daily.len(), 7);
    assert_eq!(daily.iter().filter(|r| r.value.is_none()).count(), 1);
    let curve = read(&s.client, GAPPY, Series::ConsumptionPower, from, to)
        .await
        .readings;
    let missing = curve.iter().filter(|r| r.value.is_none()).count();
    assert!(missing >= 48 + 12, "{missing} missing points");
    assert!(curve.iter().filter_map(|r| r.value).all(|v| v > 0.0));
}

#[tokio::test]
async fn consents_are_resolved_in_every_generation() {
    let sim = Sim::start(&[]);
    for api in ALL {
        let s = setup(api, &sim, &[]).await;
        // Profile 3: two PRMs in one consent; profile 7: three.
        for (state, prms) in [
            ("flow3", vec!["10284856584123", "12345678901234"]),
            (
                "flow7",
                vec!["22315546958763", "63695879465986", "64975835695673"],
            ),
        ] {
            let consent = give_consent(&sim, &s.client, state, "peer@example.org").await;
            let got: Vec<String> = consent.prms.iter().map(|p| p.to_string()).collect();
            assert_eq!(got, prms, "{api:?} {state}");
            assert_eq!(consent.generation, api);
            assert_eq!(consent.state, ConsentState::Active);
            assert_eq!(
                consent.has_refresh_token,
                api.per_consent_tokens(),
                "{api:?}"
            );
            assert_eq!(
                consent.autorisation_id.is_some(),
                api == ApiGeneration::Api2026
            );
            let now = jiff::Timestamp::now().as_second();
            assert!(consent.is_usable_at(now), "{consent:?}");
            assert!(consent.valid_until > now + 300 * 86_400, "{consent:?}");
            if api == ApiGeneration::Api2026 {
                // From the services: [dateDebut, dateFin[ = [today, today + P1Y[.
                assert_eq!(consent.valid_from, day_start(today()).unwrap());
                let end = today().checked_add(1.year()).unwrap();
                assert_eq!(consent.valid_until, day_start(end).unwrap());
            }
            // The new consent reads data at once.
            let p = consent.prms[consent.prms.len() - 1];
            let to = today();
            let from = to.checked_sub(2.days()).unwrap();
            let daily = s
                .client
                .readings(p, Series::ConsumptionEnergyDaily, from, to, &AGENT)
                .await
                .unwrap_or_else(|e| panic!("{api:?} {p}: {e}"));
            assert_eq!(daily.readings.len(), 2);
        }
        // Refused by the consumer: the redirect has an error and no state.
        let url = s.client.authorize_url("flow0", &one_year()).unwrap();
        let mut refuse = url.clone();
        refuse.query_pairs_mut().append_pair("sim_auto", "refuse");
        let location = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(refuse)
            .send()
            .await
            .unwrap()
            .headers()["location"]
            .to_str()
            .unwrap()
            .to_owned();
        let callback = Callback::from_query(url::Url::parse(&location).unwrap().query().unwrap());
        let err = s
            .client
            .resolve_consent("peer@example.org", &callback, &one_year())
            .await
            .unwrap_err();
        assert_eq!(err.enedis_code(), Some("access_denied"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Refused);
    }
}

#[tokio::test]
async fn an_authorization_code_works_once() {
    let sim = Sim::start(&[]);
    let s = setup(ApiGeneration::V4, &sim, &[]).await;
    let url = s.client.authorize_url("once0", &one_year()).unwrap();
    let callback = Callback::from_query(&sim.accept(&url).await);
    s.client
        .resolve_consent("peer@example.org", &callback, &one_year())
        .await
        .unwrap();
    let err = s
        .client
        .resolve_consent("peer@example.org", &callback, &one_year())
        .await
        .unwrap_err();
    assert_eq!(err.enedis_code(), Some("invalid_grant"), "{err}");
    assert_eq!(s.store.list_consents().unwrap().len(), 1);
}

#[tokio::test]
async fn fifty_concurrent_requests_cause_one_token_call() {
    let sim = Sim::start(&["--quota-per-second", "0"]);
    for api in [ApiGeneration::Api2026, ApiGeneration::V5, ApiGeneration::V4] {
        let mut cfg = config(api, &sim);
        cfg.calls_per_second = 1000;
        let s = setup_with(cfg, &sim, &["fifty0"]).await;
        // v4: the consent's first access token came with the code; make it stale.
        sim.admin_post("tokens/expire", json!({})).await;
        sim.clear_calls().await;
        let to = today();
        let requests = (0..50).map(|i| {
            let from = to.checked_sub((i + 1).days()).unwrap();
            s.client.readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                from,
                from.tomorrow().unwrap(),
                &AGENT,
            )
        });
        let results = futures::future::join_all(requests).await;
        for r in &results {
            assert_eq!(r.as_ref().map(|f| f.readings.len()).unwrap(), 1);
        }
        let tokens = sim.calls(token_path(api)).await;
        let data = sim
            .calls(&data_path(api, Series::ConsumptionEnergyDaily))
            .await;
        println!(
            "{}: 50 concurrent requests needing a token: {tokens} token call(s), {data} data calls",
            api.as_str()
        );
        assert_eq!(tokens, 1, "{api:?}");
    }
}

#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let sim = Sim::start(&[]);
    for api in [ApiGeneration::Api2026, ApiGeneration::V3] {
        let s = setup(api, &sim, &["renew0"]).await;
        let to = today();
        let from = to.checked_sub(1.days()).unwrap();
        read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        sim.admin_post("tokens/expire", json!({})).await;
        sim.clear_calls().await;
        let fetched = read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        let path = data_path(api, Series::ConsumptionEnergyDaily);
        assert_eq!(sim.calls_with(&path, 401).await, 1, "{api:?}");
        assert_eq!(sim.calls_with(&path, 200).await, 1, "{api:?}");
        assert_eq!(sim.calls(token_path(api)).await, 1, "{api:?}");
        assert_eq!(fetched.calls, 3);
        // The renewed token is kept: the next request makes no token call.
        read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        assert_eq!(sim.calls(token_path(api)).await, 1, "{api:?}");
    }
}

#[tokio::test]
async fn refused_application_credentials_say_so_without_the_secret() {
    let sim = Sim::start(&[]);
    for api in [ApiGeneration::Api2026, ApiGeneration::V5] {
        let mut cfg = config(api, &sim);
        cfg.client_secret = quoalise_agent::config::Secret::new("wrong-secret-value");
        let s = setup_with(cfg, &sim, &[]).await;
        let to = today();
        let err = s
            .client
            .readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                to.yesterday().unwrap(),
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{text}");
        assert!(err.status().is_some_and(|s| s == 401 || s == 400), "{text}");
        assert!(text.contains("client_secret"), "{text}");
        assert!(
            !text.contains("wrong-secret-value")
                && !format!("{err:?}").contains("wrong-secret-value")
        );
    }
}

#[tokio::test]
async fn business_refusals_carry_status_code_and_message() {
    let sim = Sim::start(&[]);
    let to = today();
    let from = to.checked_sub(2.days()).unwrap();
    for api in ALL {
        let s = setup(api, &sim, &["refusal5", "refusal2", "refusal0"]).await;
        // Consumption asked on a production point.
        let err = s
            .client
            .readings(
                prm(PRODUCER),
                Series::ConsumptionEnergyDaily,
                from,
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{api:?}: {err}");
        assert_eq!(err.enedis_code(), Some("ADAM-ERR0069"), "{api:?}: {err}");
        assert_eq!(err.status(), Some(400));
        // Load curve not activated.
        let err = s
            .client
            .readings(
                prm(NO_LOAD_CURVE),
                Series::ConsumptionPower,
                from,
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.enedis_code(), Some("no_data_found"), "{api:?}: {err}");
        assert_eq!(err.status(), Some(404));
        // Period before the meter's activation, as Enedis answers it in every
        // generation (the old shape even in 2026).
        sim.faults(json!({"force_status": {"status": 400, "body":
            "{\"error\":\"ADAM-ERR0123\",\"error_description\":\"The requested period cannot be anterior to the meter's last activation date\"}"}}))
            .await;
        let err = s
            .client
            .readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                from,
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.enedis_code(), Some("ADAM-ERR0123"), "{api:?}: {err}");
        assert!(err.to_string().contains("activation date"), "{err}");
        // The gateway's "API not subscribed" (the captured fixture).
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/upstream/2026/erreur_comptage_non_souscrit.json"
        ))
        .unwrap();
        sim.faults(json!({"force_status": {"status": 403, "body": body}}))
            .await;
        let err = s
            .client
            .readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                from,
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.enedis_code(), Some("900908"), "{api:?}: {err}");
        assert_eq!(err.status(), Some(403));
        sim.faults(json!({})).await;
    }
}

#[tokio::test]
async fn a_withdrawn_consent_is_marked_revoked() {
    let sim = Sim::start(&[]);
    let to = today();
    let from = to.checked_sub(2.days()).unwrap();
    for api in ALL {
        let s = setup(api, &sim, &[]).await;
        let consent = give_consent(&sim, &s.client, "gone0", "peer@example.org").await;
        let p = consent.prms[0];
        read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        // The consumer withdraws it in their Enedis account.
        sim.admin_post(&format!("prms/{p}/revoke"), json!({})).await;
        let err = s
            .client
            .readings(p, Series::ConsumptionEnergyDaily, from, to, &AGENT)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{api:?}: {err}");
        assert_eq!(err.enedis_code(), Some("ADAM-DC-0008"), "{api:?}: {err}");
        assert_eq!(err.status(), Some(403));
        let state = s.store.consent(consent.id).unwrap().unwrap().state;
        assert_eq!(state, ConsentState::Revoked, "{api:?}");
        let now = jiff::Timestamp::now().as_second();
        assert!(
            s.store
                .consents_for_peer("peer@example.org", &p, now)
                .unwrap()
                .is_empty()
        );
    }
    // Profile 8 consents then revokes at once: in 2026 the consent has no active
    // service left by the time it is resolved.
    let s = setup(ApiGeneration::Api2026, &sim, &[]).await;
    let url = s.client.authorize_url("gone8", &one_year()).unwrap();
    let callback = Callback::from_query(&sim.accept(&url).await);
    let err = s
        .client
        .resolve_consent("peer@example.org", &callback, &one_year())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(err.enedis_code(), Some("no_active_service"), "{err}");
    assert!(s.store.list_consents().unwrap().is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried_then_reported() {
    let sim = Sim::start(&[]);
    let to = today();
    let from = to.checked_sub(1.days()).unwrap();
    for api in ALL {
        let s = setup(api, &sim, &["retry0"]).await;
        let path = data_path(api, Series::ConsumptionEnergyDaily);
        read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;

        // Two 500s then success: max_retries = 2 is enough.
        sim.clear_calls().await;
        sim.faults(json!({"force_status": {"status": 500, "count": 2}}))
            .await;
        read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        assert_eq!(sim.calls(&path).await, 3, "{api:?}");

        // A 503 HTML page from a proxy, then success.
        sim.clear_calls().await;
        sim.faults(json!({"html_body": 1})).await;
        read(
            &s.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            from,
            to,
        )
        .await;
        assert_eq!(sim.calls(&path).await, 2, "{api:?}");

        // technical_error every time: 1 + max_retries attempts, then unavailable.
        sim.clear_calls().await;
        sim.faults(json!({"failure_rate": 1.0})).await;
        let err = s
            .client
            .readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                from,
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{api:?}: {err}");
        assert!(err.to_string().contains("3 attempts"), "{err}");
        assert!(
            matches!(err.enedis_code(), Some("technical_error" | "ADAM-DC-0500")),
            "{api:?}: {err}"
        );
        assert_eq!(sim.calls(&path).await, 3, "{api:?}");

        // A truncated body is not JSON: an error saying so, not a panic, not a retry.
        sim.clear_calls().await;
        sim.faults(json!({"truncated_body": 1})).await;
        let err = s
            .client
            .readings(prm(CONSUMER), Series::ConsumptionPower, from, to, &AGENT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpstreamError::BadResponse { .. }),
            "{api:?}: {err}"
        );
        assert!(err.to_string().contains("body starts with"), "{err}");

        // application/octet-stream is read as JSON.
        sim.faults(json!({"octet_stream": true})).await;
        read(&s.client, CONSUMER, Series::ConsumptionPower, from, to).await;
        sim.faults(json!({})).await;
    }
}

#[tokio::test]
async fn timeouts_and_unreachable_upstream() {
    let sim = Sim::start(&[]);
    let to = today();
    let from = to.checked_sub(1.days()).unwrap();
    let mut cfg = config(ApiGeneration::Api2026, &sim);
    cfg.request_timeout_secs = 1;
    cfg.max_retries = 1;
    let s = setup_with(cfg.clone(), &sim, &[]).await;
    read(
        &s.client,
        CONSUMER,
        Series::ConsumptionEnergyDaily,
        from,
        to,
    )
    .await;
    sim.clear_calls().await;
    sim.faults(json!({"latency_ms": 1500})).await;
    let err = s
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("timed out") && err.to_string().contains("2 attempts"),
        "{err}"
    );
    sim.faults(json!({})).await;

    // Nothing listens: connection refused, retried, then unavailable.
    // (An ephemeral port could be taken meanwhile by another test's simulator.)
    let port = crate::common::prosody::free_port();
    cfg.base_url = format!("http://127.0.0.1:{port}");
    let s = setup_with(cfg, &sim, &[]).await;
    let err = s
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// A token asked for background work must not make people wait in the background
/// queue: whoever needs the token waits behind the one asking for it.
#[tokio::test]
async fn background_work_never_holds_the_token_people_need() {
    let sim = Sim::start(&["--quota-per-second", "0"]);
    let mut cfg = config(ApiGeneration::Api2026, &sim);
    cfg.calls_per_second = 100;
    // The whole hour kept for interactive requests: background calls never go.
    cfg.interactive_reserve_percent = 100;
    cfg.quota_wait_secs = 7_200;
    let s = setup_with(cfg, &sim, &[]).await;
    let day = today().checked_sub(3.days()).unwrap();
    let push = Ask::peer("subscriber@example.org", Class::Background)
        .with_deadline(tokio::time::Instant::now() + Duration::from_secs(7_200));
    // The push comes first, needs the application token, and then waits for a
    // background slot (none this hour).
    let client = std::sync::Arc::new(s.client);
    let background = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .readings(
                    prm(CONSUMER),
                    Series::ConsumptionEnergyDaily,
                    day,
                    day.tomorrow().unwrap(),
                    &push,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A person's request gets the token and its data at once.
    let person = Ask::peer("app@example.org", Class::Interactive)
        .with_deadline(tokio::time::Instant::now() + Duration::from_secs(5));
    let read = client.readings(
        prm(CONSUMER),
        Series::ConsumptionEnergyDaily,
        day,
        day.tomorrow().unwrap(),
        &person,
    );
    let fetched = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the interactive request is not kept waiting")
        .expect("the interactive request is served while background work waits");
    assert_eq!(fetched.readings.len(), 1);
    assert!(
        !background.is_finished(),
        "background work did not wait for its share"
    );
    background.abort();
}

#[tokio::test]
async fn the_quota_is_honoured() {
    let sim = Sim::start(&["--quota-per-second", "2"]);
    let to = today();
    // The client believes in 5 calls/s, Enedis allows 2: 429 with Retry-After, wait, go on.
    let s = setup(ApiGeneration::Api2026, &sim, &[]).await;
    sim.clear_calls().await;
    let requests = (0..8).map(|i| {
        let from = to.checked_sub((i + 1).days()).unwrap();
        s.client.readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            from.tomorrow().unwrap(),
            &AGENT,
        )
    });
    for r in futures::future::join_all(requests).await {
        r.unwrap();
    }
    let path = data_path(ApiGeneration::Api2026, Series::ConsumptionEnergyDaily);
    let throttled = sim.calls_with(&path, 429).await;
    println!("8 requests at 5/s against a 2/s quota: {throttled} answered 429");
    assert_eq!(sim.calls_with(&path, 200).await, 8);
    assert!(throttled > 0 && throttled <= 16, "{throttled}");

    // Matching limits: no 429 at all, even for a split range and concurrent requests.
    sim.admin_post("quota", json!({"per_second": 5, "reset_usage": true}))
        .await;
    sim.clear_calls().await;
    let from = to.checked_sub(21.days()).unwrap();
    let (a, b) = futures::join!(
        s.client
            .readings(prm(CONSUMER), Series::ConsumptionPower, from, to, &AGENT),
        s.client.readings(
            prm(SELF_CONSUMER),
            Series::ProductionPower,
            from,
            to,
            &AGENT
        ),
    );
    a.unwrap();
    b.unwrap();
    let curve = data_path(ApiGeneration::Api2026, Series::ConsumptionPower);
    assert_eq!(sim.calls_with(&curve, 429).await, 0);

    // The hourly quota is spent: Enedis asks to come back much later than the wait
    // limit. The client gives up at once and does not ask again meanwhile.
    sim.admin_post("quota", json!({"per_hour_2026": 1, "reset_usage": true}))
        .await;
    let mut cfg = config(ApiGeneration::Api2026, &sim);
    cfg.quota_wait_secs = 5;
    let t = setup_with(cfg, &sim, &[]).await;
    read(
        &t.client,
        CONSUMER,
        Series::ConsumptionEnergyDaily,
        to.yesterday().unwrap(),
        to,
    )
    .await;
    sim.clear_calls().await;
    for _ in 0..3 {
        let err = t
            .client
            .readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                to.yesterday().unwrap(),
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(matches!(err, UpstreamError::Quota { .. }), "{err}");
    }
    assert_eq!(sim.calls_with(&path, 429).await, 1, "never hammer");
    sim.admin_post("quota", json!({"per_hour_2026": 1000, "reset_usage": true}))
        .await;

    // The client's own hourly limit: the call over it never leaves.
    let mut cfg = config(ApiGeneration::Api2026, &sim);
    cfg.calls_per_hour = 3;
    cfg.quota_wait_secs = 2;
    let u = setup_with(cfg, &sim, &[]).await;
    sim.clear_calls().await;
    // One token call and two data calls fit; the third data call does not.
    for _ in 0..2 {
        read(
            &u.client,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            to.yesterday().unwrap(),
            to,
        )
        .await;
    }
    let err = u
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            to.yesterday().unwrap(),
            to,
            &AGENT,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hourly limit"), "{err}");
    assert_eq!(sim.calls(&path).await, 2);
}

#[tokio::test]
async fn windows_out_of_limits_are_clamped_or_refused_before_any_call() {
    let sim = Sim::start(&[]);
    let s = setup(ApiGeneration::Api2026, &sim, &[]).await;
    sim.clear_calls().await;
    let to = today();
    let err = s
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionPower,
            to,
            to.tomorrow().unwrap(),
            &AGENT,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(err.to_string().contains("only up to yesterday"), "{err}");
    let old = to.checked_sub(30.months()).unwrap();
    let err = s
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionPower,
            old,
            old.tomorrow().unwrap(),
            &AGENT,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("24 months + 15 days"), "{err}");
    assert_eq!(sim.all_calls().await["total"], 0);
    // Overlapping the end: clamped, and the note says so.
    let fetched = read(
        &s.client,
        CONSUMER,
        Series::ConsumptionEnergyDaily,
        to.checked_sub(3.days()).unwrap(),
        to.checked_add(3.days()).unwrap(),
    )
    .await;
    assert_eq!(fetched.to, to);
    assert_eq!(fetched.readings.len(), 3);
    assert!(
        fetched.notes[0].contains("end clamped"),
        "{:?}",
        fetched.notes
    );
}

#[tokio::test]
async fn per_consent_generations_need_a_consent() {
    let sim = Sim::start(&[]);
    for api in [ApiGeneration::V4, ApiGeneration::V3] {
        let s = setup(api, &sim, &[]).await;
        sim.clear_calls().await;
        let to = today();
        let err = s
            .client
            .readings(
                prm(CONSUMER),
                Series::ConsumptionEnergyDaily,
                to.yesterday().unwrap(),
                to,
                &AGENT,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotAuthorized, "{err}");
        assert!(err.to_string().contains(CONSUMER), "{err}");
        assert_eq!(sim.all_calls().await["total"], 0);
    }
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    // Three-second tokens, `expires_in` as a string (as the v5 openapi writes it).
    let sim = Sim::start(&["--token-ttl", "3", "--expires-in-string"]);
    let to = today();
    let from = to.checked_sub(1.days()).unwrap();
    for api in [ApiGeneration::V5, ApiGeneration::V4] {
        let s = setup(api, &sim, &["ttl0"]).await;
        sim.clear_calls().await;
        for _ in 0..3 {
            read(
                &s.client,
                CONSUMER,
                Series::ConsumptionEnergyDaily,
                from,
                to,
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
        }
        let path = data_path(api, Series::ConsumptionEnergyDaily);
        // Renewed ahead of time: never refused, renewed at least twice.
        assert_eq!(sim.calls_with(&path, 401).await, 0, "{api:?}");
        assert_eq!(sim.calls_with(&path, 200).await, 3, "{api:?}");
        assert!(sim.calls(token_path(api)).await >= 2, "{api:?}");
    }
}

#[tokio::test]
async fn a_429_is_honoured_whatever_its_hint() {
    let sim = Sim::start(&[]);
    let to = today();
    let from = to.checked_sub(1.days()).unwrap();
    let mut cfg = config(ApiGeneration::V5, &sim);
    cfg.quota_wait_secs = 5;
    let s = setup_with(cfg, &sim, &[]).await;
    read(
        &s.client,
        CONSUMER,
        Series::ConsumptionEnergyDaily,
        from,
        to,
    )
    .await;
    let path = data_path(ApiGeneration::V5, Series::ConsumptionEnergyDaily);

    // WSO2 throttling with `nextAccessTime` in an hour and no Retry-After: give up at
    // once, quoting the wait.
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .strftime("%Y-%b-%d %H:%M:%S+0000 UTC")
        .to_string();
    let body = json!({"code": "900804", "message": "Message throttled out",
        "description": "You have exceeded your quota", "nextAccessTime": later})
    .to_string();
    sim.clear_calls().await;
    sim.faults(json!({"force_status": {"status": 429, "body": body}}))
        .await;
    let err = s
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap_err();
    // nextAccessTime has whole seconds: an hour from a moment inside a second.
    let text = err.to_string();
    assert!(
        text.contains("asks to wait 3600 s") || text.contains("asks to wait 3599 s"),
        "{text}"
    );
    // The peer is told when: the end of the pause Enedis asked for (an hour).
    let UpstreamError::Quota {
        retry_at: Some(at), ..
    } = err
    else {
        panic!("a quota error with its retry instant: {err}");
    };
    let ahead = at.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3_590..=3_600).contains(&ahead), "retry in {ahead} s");
    assert_eq!(sim.calls(&path).await, 1);
    drop(s);

    // `nextAccessTime` two seconds ahead: wait for it, then succeed.
    let mut cfg = config(ApiGeneration::V5, &sim);
    cfg.quota_wait_secs = 5;
    let s = setup_with(cfg, &sim, &[]).await;
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(2))
        .unwrap()
        .strftime("%Y-%b-%d %H:%M:%S+0000 UTC")
        .to_string();
    let body = json!({"fault": {"code": 900807, "message": "Message throttled out",
        "nextAccessTime": soon}})
    .to_string();
    sim.clear_calls().await;
    sim.faults(json!({"force_status": {"status": 429, "body": body}}))
        .await;
    read(
        &s.client,
        CONSUMER,
        Series::ConsumptionEnergyDaily,
        from,
        to,
    )
    .await;
    assert_eq!(sim.calls_with(&path, 429).await, 1);
    assert_eq!(sim.calls_with(&path, 200).await, 1);

    // No hint at all, over and over: a growing backoff (1 s, 2 s, …) until the wait
    // limit, a handful of calls, not a storm.
    sim.clear_calls().await;
    sim.faults(json!({"force_status": {"status": 429, "count": 100, "body":
        "{\"error\":\"429\",\"error_description\":\"Quota Q4 reached\"}"}}))
        .await;
    let err = s
        .client
        .readings(
            prm(CONSUMER),
            Series::ConsumptionEnergyDaily,
            from,
            to,
            &AGENT,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Quota { .. }), "{err}");
    let throttled = sim.calls_with(&path, 429).await;
    assert!((2..=4).contains(&throttled), "{throttled} calls within 5 s");
    sim.faults(json!({})).await;
}

#[tokio::test]
async fn history_limits_agree_with_enedis() {
    let sim = Sim::start(&[]);
    let to = today();
    for api in [ApiGeneration::Api2026, ApiGeneration::V3] {
        let s = setup(api, &sim, &["depth0"]).await;
        for series in [Series::ConsumptionPower, Series::ConsumptionEnergyDaily] {
            let oldest = quoalise_agent::upstream::Limits::of(series).oldest(to);
            // The oldest day is served as asked…
            let fetched = read(
                &s.client,
                CONSUMER,
                series,
                oldest,
                oldest.tomorrow().unwrap(),
            )
            .await;
            assert!(
                fetched.notes.is_empty(),
                "{api:?} {series}: {:?}",
                fetched.notes
            );
            assert_eq!(fetched.readings[0].start, day_start(oldest).unwrap());
            // …one day earlier is clamped to it, not refused by Enedis.
            let earlier = oldest.yesterday().unwrap();
            let fetched = read(
                &s.client,
                CONSUMER,
                series,
                earlier,
                oldest.tomorrow().unwrap(),
            )
            .await;
            assert_eq!(fetched.from, oldest, "{api:?} {series}");
            assert!(
                fetched.notes[0].contains("start clamped"),
                "{:?}",
                fetched.notes
            );
        }
    }
}

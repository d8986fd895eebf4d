//! The gateway side of the simulator over HTTP: quotas (429 bodies per
//! generation), every fault switch, call counters, the request log, secrets kept
//! out of logs, and the admin endpoints.

use enedis_sim::harness as sim;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::{CLIENT_ID, CLIENT_SECRET, Sim};

const P0: &str = "22516914714270";
const Q: &str = "pointId=22516914714270&dateDebut=2026-10-01&dateFin=2026-10-03";

fn daily_2026() -> String {
    format!("/mesure_synchrone_auto/v2/consommation_quotidienne?{Q}")
}

fn daily_v5() -> String {
    format!(
        "/metering_data_dc/v5/daily_consumption?usage_point_id={P0}&start=2026-10-01&end=2026-10-03"
    )
}

fn daily_v4() -> String {
    format!(
        "/v4/metering_data/daily_consumption?usage_point_id={P0}&start=2026-10-01&end=2026-10-03"
    )
}

fn retry_after(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"))
}

#[tokio::test]
async fn hourly_quota_answers_429_in_each_generation_shape() {
    let sim = Sim::start(&[
        "--today",
        "2026-10-04",
        "--quota-per-second",
        "0",
        "--quota-per-hour",
        "2",
    ]);
    let app = sim.app_token().await;
    let user = sim.consent_v1_tokens("abc0", None).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // 2026: per API.
    for _ in 0..2 {
        assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
    }
    let r = sim.get(&app, &daily_2026()).await;
    assert_eq!(r.status(), 429);
    let wait = retry_after(&r).expect("Retry-After on 2026 429");
    assert!((1..=3600).contains(&wait));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"code": "429", "message": "SLA dépassé"})
    );
    assert_eq!(
        sim.get(&app, &format!("/synth_contrat_auto/v1/{P0}"))
            .await
            .status(),
        200,
        "another 2026 API has its own quota"
    );

    // v5: one quota for the application, no hint.
    for _ in 0..2 {
        assert_eq!(sim.get(&app, &daily_v5()).await.status(), 200);
    }
    let r = sim.get(&app, &daily_v5()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), None);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "429");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("Quota Q4 reached")
    );

    // v3/v4: WSO2 throttling with nextAccessTime.
    for _ in 0..2 {
        assert_eq!(sim.get(&user, &daily_v4()).await.status(), 200);
    }
    let r = sim.get(&user, &daily_v4()).await;
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r).is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "900804");
    assert_eq!(body["message"], "Message throttled out");
    assert!(
        body["nextAccessTime"]
            .as_str()
            .unwrap()
            .ends_with("+0000 UTC")
    );

    // Refused calls were not counted: one more passes when the limit grows by one.
    let quota = sim.admin().quota(json!({"per_hour_2026": 3})).await;
    assert_eq!(quota["usage"]["mesure_synchrone_auto"], 2);
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 429);
    // Tokens are not throttled.
    for _ in 0..4 {
        sim.app_token().await;
    }
    sim.admin().quota(json!({"reset_usage": true})).await;
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
    // A bad token is refused before the quota counts it.
    sim.admin()
        .quota(json!({"reset_usage": true, "per_hour_v5": 1}))
        .await;
    assert_eq!(sim.get("bad", &daily_v5()).await.status(), 401);
    assert_eq!(sim.get(&app, &daily_v5()).await.status(), 200);
}

#[tokio::test]
async fn per_second_quota_answers_429_to_bursts() {
    let sim = Sim::start(&["--today", "2026-10-04", "--quota-per-second", "2"]);
    let app = sim.app_token().await;
    for (path, v5) in [(daily_v5(), true), (daily_2026(), false)] {
        let burst = futures::future::join_all((0..10).map(|_| sim.get(&app, &path))).await;
        let ok = burst.iter().filter(|r| r.status() == 200).count();
        let throttled: Vec<&reqwest::Response> =
            burst.iter().filter(|r| r.status() == 429).collect();
        assert!(ok >= 2, "{ok} passed");
        assert!(!throttled.is_empty(), "10 calls at once, 2 per second");
        assert_eq!(ok + throttled.len(), 10);
        assert_eq!(retry_after(throttled[0]), Some(1));
        let mut bodies = Vec::new();
        for r in burst.into_iter().filter(|r| r.status() == 429) {
            bodies.push(r.json::<Value>().await.unwrap());
        }
        if v5 {
            let fault = &bodies[0]["fault"];
            assert_eq!(fault["code"], 900807);
            assert_eq!(fault["message"], "Message throttled out");
            assert!(fault["nextAccessTime"].is_string());
        } else {
            assert_eq!(bodies[0], json!({"code": "429", "message": "SLA dépassé"}));
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(sim.get(&app, &path).await.status(), 200, "the next second");
    }
}

#[tokio::test]
async fn latency_and_failure_rate() {
    let sim = Sim::start(&["--today", "2026-10-04", "--quota-per-second", "0"]);
    let app = sim.app_token().await;
    sim.admin().faults(json!({"latency_ms": 400})).await;
    let t = Instant::now();
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(400), "delayed");

    sim.admin().faults(json!({"failure_rate": 1.0})).await;
    let (status, body) = sim.get_json(&app, &daily_v5()).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "technical_error");
    let (status, body) = sim.get_json(&app, &daily_2026()).await;
    assert_eq!(status, 500);
    assert_eq!(body["code"], "ADAM-DC-0500");
    assert!(
        !sim.app_token().await.is_empty(),
        "token endpoint not affected by default"
    );

    // A rate: some fail, reproducibly.
    let mut runs = Vec::new();
    for _ in 0..2 {
        sim.admin().faults(json!({"failure_rate": 0.5})).await;
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(sim.get(&app, &daily_2026()).await.status().as_u16());
        }
        runs.push(statuses);
    }
    let failures = runs[0].iter().filter(|s| **s == 500).count();
    assert!((5..=35).contains(&failures), "{failures} of 40");
    assert!(runs[0].iter().all(|s| *s == 200 || *s == 500));
    assert_eq!(
        runs[0], runs[1],
        "the same sequence after setting the same faults"
    );

    sim.admin().clear_faults().await;
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
}

#[tokio::test]
async fn forced_status_for_the_next_calls() {
    let sim = Sim::start(&["--today", "2026-10-04", "--quota-per-second", "0"]);
    let app = sim.app_token().await;
    sim.admin()
        .faults(json!({"force_status": {"status": 503, "count": 2}}))
        .await;
    let (status, body) = sim.get_json(&app, &daily_v5()).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "503");
    let (status, body) = sim.get_json(&app, &daily_2026()).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "503");
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200, "only two");
    let faults = sim.admin().get("faults").await;
    assert_eq!(faults["force_status"]["count"], 0);

    sim.admin()
        .faults(json!({"force_status": {"status": 200, "body": "<html>maintenance</html>", "content_type": "text/html", "count": 1}}))
        .await;
    let r = sim.get(&app, &daily_2026()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.text().await.unwrap(), "<html>maintenance</html>");

    // path_prefix aims at the token endpoint, which data-only defaults spare.
    sim.admin()
        .faults(
            json!({"force_status": {"status": 500, "count": 1}, "path_prefix": "/oauth2/v3/token"}),
        )
        .await;
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
    let r = sim
        .http()
        .post(sim.url("/oauth2/v3/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(!sim.app_token().await.is_empty());
}

#[tokio::test]
async fn truncated_html_and_octet_stream_bodies() {
    let sim = Sim::start(&["--today", "2026-10-04", "--quota-per-second", "0"]);
    let app = sim.app_token().await;
    let whole = sim.get(&app, &daily_2026()).await.text().await.unwrap();

    sim.admin().faults(json!({"truncated_body": 1})).await;
    let r = sim.get(&app, &daily_2026()).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let cut = r.text().await.unwrap();
    assert!(cut.len() < whole.len() && whole.starts_with(&cut));
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    assert_eq!(
        sim.get(&app, &daily_2026()).await.text().await.unwrap(),
        whole
    );

    sim.admin().faults(json!({"html_body": 1})).await;
    let r = sim.get(&app, &daily_v5()).await;
    assert_eq!(r.status(), 503);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().starts_with("<!DOCTYPE html>"));
    assert_eq!(sim.get(&app, &daily_v5()).await.status(), 200);

    sim.admin().faults(json!({"octet_stream": true})).await;
    for path in [daily_2026(), daily_v5()] {
        let r = sim.get(&app, &path).await;
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(body.is_object(), "still JSON");
    }
    let r = sim.get(&app, "/comptage_auto/v1/22516914714270").await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["content-type"],
        "application/octet-stream",
        "errors too"
    );
    sim.admin().clear_faults().await;
    let r = sim.get(&app, &daily_2026()).await;
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn call_counters_count_every_call_exactly_and_logs_hide_secrets() {
    let sim = Sim::start(&["--today", "2026-10-04", "--quota-per-second", "0"]);
    let admin = sim.admin();
    let app = sim.app_token().await;
    let consent = sim.consent_v1_tokens("abc0", None).await;
    for _ in 0..3 {
        sim.get(&app, &daily_2026()).await;
    }
    sim.get(&app, &format!("/mesure_synchrone_auto/v2/consommation_quotidienne?pointId={P0}&dateDebut=2026-10-03&dateFin=2026-10-01"))
        .await;
    sim.get(&app, &format!("{}&refresh_token=leaked", daily_v5()))
        .await;
    admin.get("consents").await;

    let calls = admin.calls().await;
    let endpoint = &calls["endpoints"]["GET /mesure_synchrone_auto/v2/consommation_quotidienne"];
    assert_eq!(endpoint["count"], 4);
    assert_eq!(endpoint["statuses"], json!({"200": 3, "400": 1}));
    assert_eq!(admin.call_count("POST /oauth2/v3/token").await, 1);
    assert_eq!(admin.call_count("POST /v1/oauth2/token").await, 1);
    assert_eq!(
        admin
            .call_count("GET /dataconnect/v1/oauth2/authorize")
            .await,
        1
    );
    assert_eq!(
        admin
            .call_count("GET /metering_data_dc/v5/daily_consumption")
            .await,
        1
    );
    assert_eq!(calls["total"], 8, "admin calls are not counted: {calls}");

    let requests = admin.requests().await;
    assert_eq!(requests.len(), 8);
    let last = requests.last().unwrap();
    assert_eq!(last["path"], "/metering_data_dc/v5/daily_consumption");
    let query = last["query"].as_str().unwrap();
    assert!(query.contains("refresh_token=***") && !query.contains("leaked"));
    let authorize = &requests[1];
    assert_eq!(authorize["status"], 302);

    admin.clear_calls().await;
    assert_eq!(admin.total_calls().await, 0);
    assert!(admin.requests().await.is_empty());

    // Nothing secret reaches the log, even at debug level.
    let log = sim.log();
    assert!(
        log.contains("/mesure_synchrone_auto/v2/consommation_quotidienne"),
        "requests are logged at debug"
    );
    for secret in [
        app.as_str(),
        CLIENT_SECRET,
        consent["access_token"].as_str().unwrap(),
        consent["refresh_token"].as_str().unwrap(),
        "leaked",
    ] {
        assert!(!log.contains(secret), "the log shows a secret: {secret}");
    }
}

#[tokio::test]
async fn admin_revokes_resets_and_changes_today() {
    let sim = Sim::start(&["--today", "2026-10-04", "--quota-per-second", "0"]);
    let admin = sim.admin();
    let app = sim.app_token().await;
    let consents = admin.consents().await;
    assert_eq!(
        consents.len(),
        13,
        "standing consents: profiles 0-7, PT10M, PT60M, Tempo, off-peak change, calendar change"
    );
    assert!(
        consents
            .iter()
            .all(|c| c["active"] == true && c["origin"] == "standing")
    );
    assert_eq!(consents[0]["id"], 100000001);
    assert_eq!(consents[0]["prms"], json!([P0]));

    admin.revoke_prm(P0).await;
    let (status, body) = sim.get_json(&app, &daily_2026()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("ADAM-DC-0008")));
    assert_eq!(admin.consents().await[0]["active"], false);

    admin.reset().await;
    let app = sim.app_token().await;
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);
    admin.revoke_consent(100000001).await;
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 403);
    let (status, _) = admin.try_post("consents/999/revoke", "").await;
    assert_eq!(status, 404);
    let (status, body) = admin.try_post("prms/123/revoke", "").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("14"));
    admin.reset().await;
    let app = sim.app_token().await;

    // "today" moves: the end date 2026-10-03 becomes "after today".
    admin.config(json!({"today": "2026-10-02"})).await;
    let (status, body) = sim.get_json(&app, &daily_2026()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("Invalid_request"))
    );
    let config = admin.config(json!({"today": "2026-10-04"})).await;
    assert_eq!(config["today"], "2026-10-04");
    assert_eq!(sim.get(&app, &daily_2026()).await.status(), 200);

    // Bad admin input says what is wrong.
    for (what, body, mention) in [
        ("faults", r#"{"failure_rate": 2}"#, "failure_rate"),
        ("faults", r#"{"latency": 5}"#, "latency"),
        ("faults", r#"{"force_status": {"status": 42}}"#, "status"),
        ("faults", r#"{"path_prefix": "oauth"}"#, "path_prefix"),
        ("faults", "[1", "JSON"),
        ("config", r#"{"today": "tomorrow"}"#, "today"),
        ("config", r#"{"redirect_uri": "not a url"}"#, "redirect_uri"),
        ("config", r#"{"color": "blue"}"#, "color"),
        ("quota", r#"{"per_minute": 1}"#, "per_minute"),
    ] {
        let (status, reply) = admin.try_post(what, body).await;
        assert_eq!(status, 400, "{what} {body}");
        assert!(
            reply["error"].as_str().unwrap().contains(mention),
            "{what} {body}: {reply}"
        );
    }
    let meters = admin.get("meters").await;
    assert_eq!(meters["profiles"].as_array().unwrap().len(), 10);
    assert!(
        meters["meters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["prm"] == "30000000000010" && m["step_minutes"] == 10)
    );
}

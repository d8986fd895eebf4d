//! Consent pages and token endpoints of every generation, against the simulator
//! over HTTP: pages render, accept/refuse/portal error redirect
//! as Enedis does, codes are single use, refresh tokens rotate, client credentials
//! are checked (form and Basic), tokens expire and are bound to their consent.

use enedis_sim::harness as sim;

use serde_json::{Value, json};
use sim::{CLIENT_ID, CLIENT_SECRET, Sim};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/dataconnect/callback";

fn location(r: &reqwest::Response) -> Url {
    assert_eq!(r.status(), 302, "expected a redirect");
    Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
}

fn pairs(url: &Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn start() -> Sim {
    Sim::start(&[
        "--today",
        "2026-10-04",
        "--redirect-uri",
        REDIRECT,
        "--quota-per-second",
        "0",
    ])
}

async fn authorize(sim: &Sim, version: u8, params: &[(&str, &str)]) -> reqwest::Response {
    sim.http()
        .get(sim.url(&format!("/dataconnect/v{version}/oauth2/authorize")))
        .query(params)
        .send()
        .await
        .unwrap()
}

async fn decide(sim: &Sim, version: u8, form: &[(&str, &str)]) -> reqwest::Response {
    sim.http()
        .post(sim.url(&format!("/dataconnect/v{version}/oauth2/authorize")))
        .form(form)
        .send()
        .await
        .unwrap()
}

fn base(state: &str) -> Vec<(&str, &str)> {
    vec![
        ("client_id", CLIENT_ID),
        ("response_type", "code"),
        ("state", state),
        ("duration", "P1Y"),
    ]
}

#[tokio::test]
async fn v1_page_shows_the_request_and_accept_redirects_with_code_state_and_prms() {
    let sim = start();
    let response = authorize(&sim, 1, &base("abc7")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    for needle in [
        "Accepter",
        "Refuser",
        "1 an",
        "2027-10-04",
        "64975835695673",
        "63695879465986",
        "22315546958763",
        "name=\"viewport\"",
        "method=\"post\"",
    ] {
        assert!(html.contains(needle), "page lacks {needle}:\n{html}");
    }
    assert!(!html.contains("<script"), "works without JavaScript");

    // The buttons post the decision back.
    let mut form = base("abc7");
    form.push(("decision", "accept"));
    let url = location(&decide(&sim, 1, &form).await);
    assert!(url.as_str().starts_with(REDIRECT));
    let q = pairs(&url);
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["code", "state", "usage_point_id"]);
    assert_eq!(get(&q, "state"), Some("abc7"));
    assert_eq!(
        get(&q, "usage_point_id"),
        Some("64975835695673,63695879465986,22315546958763")
    );
    assert!(get(&q, "code").unwrap().len() >= 20);
}

#[tokio::test]
async fn v1_without_profile_takes_typed_prms_and_rejects_bad_ones() {
    let sim = start();
    let html = authorize(&sim, 1, &base("no-digit"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"prms\""), "a PRM input: {html}");

    let mut form = base("no-digit");
    form.extend([("decision", "accept"), ("prms", "12345")]);
    let response = decide(&sim, 1, &form).await;
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains("12345") && html.contains("14"), "{html}");

    let mut form = base("no-digit");
    form.extend([
        ("decision", "accept"),
        ("prms", "98765432109876, 98765432100000"),
    ]);
    let q = pairs(&location(&decide(&sim, 1, &form).await));
    assert_eq!(
        get(&q, "usage_point_id"),
        Some("98765432109876,98765432100000")
    );
    // That PRM now has a consent: the application may read it.
    let token = sim.app_token().await;
    let (status, _) = sim
        .get_json(
            &token,
            "/metering_data_dc/v5/daily_consumption?usage_point_id=98765432109876&start=2026-10-01&end=2026-10-03",
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = sim
        .get_json(
            &token,
            "/metering_data_dc/v5/daily_consumption?usage_point_id=98765432101111&start=2026-10-01&end=2026-10-03",
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "ADAM-DC-0008");
    // The consent lasts its duration (P1Y): expired a year later.
    sim.admin().config(json!({"today": "2027-10-05"})).await;
    let (status, body) = sim
        .get_json(
            &token,
            "/metering_data_dc/v5/daily_consumption?usage_point_id=98765432109876&start=2027-10-01&end=2027-10-03",
        )
        .await;
    assert_eq!(status, 403, "expired consent");
    assert_eq!(body["error"], "ADAM-DC-0008");
}

#[tokio::test]
async fn redirect_uri_with_a_query_gets_the_parameters_appended() {
    let sim = Sim::start(&["--today", "2026-10-04"]);
    let mut q = base("s0");
    q.extend([
        ("redirect_uri", "https://app.example/cb?tenant=a b&x=1"),
        ("sim_auto", "accept"),
    ]);
    let url = location(&authorize(&sim, 1, &q).await);
    let p = pairs(&url);
    assert_eq!(get(&p, "tenant"), Some("a b"));
    assert_eq!(get(&p, "x"), Some("1"));
    assert_eq!(get(&p, "state"), Some("s0"));
    assert_eq!(get(&p, "usage_point_id"), Some("22516914714270"));
    assert_eq!(url.host_str(), Some("app.example"));
    assert_eq!(url.path(), "/cb");

    // The seed's spelling `redirect_URI` works too.
    let mut q = base("s0");
    q.extend([
        ("redirect_URI", "https://app.example/other"),
        ("sim_auto", "accept"),
    ]);
    assert_eq!(location(&authorize(&sim, 1, &q).await).path(), "/other");
}

#[tokio::test]
async fn v2_accept_gives_an_integer_autorisation_id_and_no_code() {
    let sim = start();
    let html = authorize(&sim, 2, &base("x3")).await.text().await.unwrap();
    assert!(html.contains("12345678901234") && html.contains("10284856584123"));
    let mut form = base("x3");
    form.push(("decision", "accept"));
    let url = location(&decide(&sim, 2, &form).await);
    assert!(url.as_str().starts_with(REDIRECT));
    let q = pairs(&url);
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["autorisation_id", "state"]);
    let id: u64 = get(&q, "autorisation_id").unwrap().parse().unwrap();
    assert_eq!(get(&q, "state"), Some("x3"));

    // subscribed_services turns it into PRMs.
    let token = sim.app_token().await;
    let response = sim
        .http()
        .post(sim.url("/subscribed_services/v1/"))
        .bearer_auth(&token)
        .json(&json!({"autorisationId": id, "comptage": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let services = body["serviceSouscrit"].as_array().unwrap();
    assert_eq!(
        body["nbTotalServices"].as_u64().unwrap() as usize,
        services.len()
    );
    let mut prms: Vec<&str> = services
        .iter()
        .map(|s| s["pointId"].as_str().unwrap())
        .collect();
    prms.dedup();
    assert_eq!(prms, ["12345678901234", "10284856584123"]);
    assert!(services.iter().all(|s| s["etatCode"] == "ACTIF"
        && s["autorisation"]["autorisationId"] == id
        && s["dateDebut"] == "2026-10-04"
        && s["dateFin"] == "2027-10-04"));
    let production: Vec<&Value> = services
        .iter()
        .filter(|s| s["pointId"] == "10284856584123")
        .collect();
    assert!(
        production
            .iter()
            .all(|s| s["injection"] == true && s["soutirage"] == false)
    );
    let types: Vec<&str> = services
        .iter()
        .filter(|s| s["pointId"] == "12345678901234")
        .map(|s| s["mesuresTypeCode"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["CDC", "ENERGIE", "PMAX", "IDX"]);
}

#[tokio::test]
async fn refusal_and_profile_9_redirect_without_state() {
    let sim = start();
    let refused = [
        ("code", "403"),
        ("error", "access_denied"),
        ("error_description", "authorization_request_refused"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    for version in [1, 2] {
        let mut form = base("abc1");
        form.push(("decision", "refuse"));
        assert_eq!(
            pairs(&location(&decide(&sim, version, &form).await)),
            refused
        );
        let mut q = base("abc1");
        q.push(("sim_auto", "refuse"));
        assert_eq!(
            pairs(&location(&authorize(&sim, version, &q).await)),
            refused
        );
        // Profile 9 always refuses, even when the consumer accepts.
        let mut q = base("abc9");
        q.push(("sim_auto", "accept"));
        assert_eq!(
            pairs(&location(&authorize(&sim, version, &q).await)),
            refused
        );
        let mut form = base("abc9");
        form.push(("decision", "accept"));
        assert_eq!(
            pairs(&location(&decide(&sim, version, &form).await)),
            refused
        );
    }
    let html = authorize(&sim, 1, &base("abc9"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("refus"), "the page says profile 9 refuses");
}

#[tokio::test]
async fn portal_error_switch_redirects_with_server_error() {
    let sim = start();
    sim.admin().faults(json!({"portal_error": true})).await;
    for version in [1, 2] {
        let url = location(&authorize(&sim, version, &base("abc0")).await);
        assert_eq!(
            pairs(&url),
            [
                ("code", "500"),
                ("error", "server_error"),
                ("error_description", "lincs-internal-server-error")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
    sim.admin().clear_faults().await;
    assert_eq!(authorize(&sim, 2, &base("abc0")).await.status(), 200);
}

#[tokio::test]
async fn bad_consent_requests_get_enedis_errors() {
    let sim = start();
    // (query, expected error, a word the description must contain)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("response_type", "code"),
                ("duration", "P1Y"),
                ("client_id", "other"),
            ],
            "invalid_client",
            "client_id",
        ),
        (
            vec![("response_type", "code"), ("duration", "P1Y")],
            "Invalid_request",
            "client_id",
        ),
        (
            vec![("client_id", CLIENT_ID), ("duration", "P1Y")],
            "Invalid_request",
            "Response type",
        ),
        (
            vec![
                ("client_id", CLIENT_ID),
                ("response_type", "token"),
                ("duration", "P1Y"),
            ],
            "Invalid_request",
            "response_type",
        ),
        (
            vec![("client_id", CLIENT_ID), ("response_type", "code")],
            "Invalid_request",
            "duration",
        ),
        (
            vec![
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("duration", "P4Y"),
            ],
            "Invalid_request",
            "3 years",
        ),
        (
            vec![
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("duration", "one year"),
            ],
            "Invalid_request",
            "ISO 8601",
        ),
        (
            vec![
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("duration", "PT12H"),
            ],
            "Invalid_request",
            "ISO 8601",
        ),
    ];
    for version in [1, 2] {
        for (params, error, mention) in &cases {
            let response = authorize(&sim, version, params).await;
            assert_eq!(response.status(), 400, "{params:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], *error, "{params:?}");
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains(mention),
                "{params:?}: {body}"
            );
        }
        let long_state = "x".repeat(101);
        let q = base(&long_state);
        let body: Value = authorize(&sim, version, &q).await.json().await.unwrap();
        assert!(body["error_description"].as_str().unwrap().contains("100"));
    }
    // P1095D (3 years in days) is fine.
    let mut q = base("abc0");
    q[3] = ("duration", "P1095D");
    assert_eq!(authorize(&sim, 2, &q).await.status(), 200);
    // v1 redirect_uri must match the registered one.
    let mut q = base("abc0");
    q.push(("redirect_uri", "https://elsewhere.example/cb"));
    let body: Value = authorize(&sim, 1, &q).await.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("registered")
    );
    // sim_auto without profile needs sim_prm.
    let mut q = base("nodigit");
    q.push(("sim_auto", "accept"));
    assert_eq!(authorize(&sim, 2, &q).await.status(), 400);
}

#[tokio::test]
async fn v2_needs_a_registered_redirect_uri_which_admin_can_set() {
    let sim = Sim::start(&["--today", "2026-10-04"]);
    let response = authorize(&sim, 2, &base("abc0")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect")
    );
    sim.admin()
        .config(json!({"redirect_uri": "http://127.0.0.1:5/later"}))
        .await;
    let mut q = base("abc0");
    q.push(("sim_auto", "accept"));
    let url = location(&authorize(&sim, 2, &q).await);
    assert_eq!(url.path(), "/later");
}

async fn token_v1(sim: &Sim, redirect: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut request = sim.http().post(sim.url("/v1/oauth2/token"));
    if let Some(r) = redirect {
        request = request.query(&[("redirect_uri", r)]);
    }
    request.form(form).send().await.unwrap()
}

async fn refresh(sim: &Sim, refresh_token: &str) -> reqwest::Response {
    token_v1(
        sim,
        Some(REDIRECT),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn v1_code(sim: &Sim, state: &str) -> String {
    let mut q = base(state);
    q.push(("sim_auto", "accept"));
    let p = pairs(&location(&authorize(sim, 1, &q).await));
    get(&p, "code").unwrap().to_owned()
}

#[tokio::test]
async fn v1_code_exchange_is_single_use_and_refresh_tokens_rotate() {
    let sim = start();
    let code = v1_code(&sim, "abc0").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("code", code.as_str()),
    ];
    // Wrong redirect_uri: refused (and the code is spent).
    let response = token_v1(&sim, Some("http://127.0.0.1:9/other"), &exchange).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    let response = token_v1(&sim, Some(REDIRECT), &exchange).await;
    assert_eq!(response.status(), 400, "a code works once");

    let code = v1_code(&sim, "abc0").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("code", code.as_str()),
    ];
    let response = token_v1(&sim, Some(REDIRECT), &exchange).await;
    assert_eq!(response.status(), 200);
    let t: Value = response.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 12600);
    assert_eq!(t["usage_points_id"], "22516914714270");
    assert!(
        t["scope"]
            .as_str()
            .unwrap()
            .contains("/v4/metering_data/consumption_load_curve.GET")
    );
    for field in ["issued_at", "refresh_token_issued_at"] {
        let ms: i64 = t[field].as_str().unwrap().parse().unwrap();
        assert!(ms > 1_600_000_000_000, "{field} in milliseconds");
    }
    let response = token_v1(&sim, Some(REDIRECT), &exchange).await;
    assert_eq!(response.status(), 400, "single use");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // Refresh: a new pair each time. The token used stays valid only until its
    // successor is first used (a client that lost our answer can retry with it).
    let first = t["refresh_token"].as_str().unwrap().to_owned();
    let response = refresh(&sim, &first).await;
    assert_eq!(response.status(), 200);
    let t2: Value = response.json().await.unwrap();
    let second = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_ne!(t2["access_token"], t["access_token"]);
    assert_eq!(t2["usage_points_id"], "22516914714270");
    // The answer carrying `second` was "lost": `first` still works, and `second` dies.
    let response = refresh(&sim, &first).await;
    assert_eq!(
        response.status(),
        200,
        "unused successor: the old token still works"
    );
    let third: Value = response.json().await.unwrap();
    let third = third["refresh_token"].as_str().unwrap().to_owned();
    let response = refresh(&sim, &second).await;
    assert_eq!(response.status(), 400, "a lost successor is dead");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // Once `third` is used, `first` is dead for good.
    assert_eq!(refresh(&sim, &third).await.status(), 200);
    assert_eq!(
        refresh(&sim, &first).await.status(),
        400,
        "old refresh token rejected"
    );
    assert_eq!(
        refresh(&sim, &third).await.status(),
        200,
        "until its own successor is used"
    );
    assert_eq!(refresh(&sim, "unknown").await.status(), 400);
}

#[tokio::test]
async fn v1_tokens_check_client_credentials_form_and_basic() {
    let sim = start();
    let code = v1_code(&sim, "abc0").await;
    let response = token_v1(
        &sim,
        Some(REDIRECT),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("code", code.as_str()),
        ],
    )
    .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fault"]["code"], 900901);
    assert_eq!(body["fault"]["message"], "Invalid Credentials");

    let response = sim
        .http()
        .post(sim.url("/v1/oauth2/token"))
        .query(&[("redirect_uri", REDIRECT)])
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "HTTP Basic accepted");

    let response = token_v1(
        &sim,
        Some(REDIRECT),
        &[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

#[tokio::test]
async fn v1_tokens_read_only_their_consent_prms_and_per_generation_paths() {
    let sim = start();
    let t = sim.consent_v1_tokens("abc3", None).await;
    assert_eq!(t["usage_points_id"], "12345678901234,10284856584123");
    let access = t["access_token"].as_str().unwrap();
    let q = "start=2026-10-01&end=2026-10-03";
    let (status, _) = sim
        .get_json(
            access,
            &format!("/v4/metering_data/daily_consumption?usage_point_id=12345678901234&{q}"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sim
        .get_json(
            access,
            &format!("/v3/metering_data/daily_production?usage_point_id=10284856584123&{q}"),
        )
        .await;
    assert_eq!(status, 200);
    // A PRM the application may read, but not with this consent's token.
    let (status, body) = sim
        .get_json(
            access,
            &format!("/v4/metering_data/daily_consumption?usage_point_id=22516914714270&{q}"),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "ADAM-DC-0008");
    // A consent token is no application token.
    let (status, body) = sim
        .get_json(
            access,
            &format!("/metering_data_dc/v5/daily_consumption?usage_point_id=12345678901234&{q}"),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["code"], 900901);
    // And the reverse.
    let app = sim.app_token().await;
    let (status, _) = sim
        .get_json(
            &app,
            &format!("/v4/metering_data/daily_consumption?usage_point_id=12345678901234&{q}"),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn application_token_form_basic_wrong_credentials_and_expiry() {
    let sim = Sim::start(&[
        "--today",
        "2026-10-04",
        "--client-id",
        "my-app",
        "--client-secret",
        "s3cr3t",
        "--token-ttl",
        "3",
    ]);
    let post = |form: Vec<(&'static str, &'static str)>,
                basic: Option<(&'static str, &'static str)>| {
        let mut r = sim.http().post(sim.url("/oauth2/v3/token")).form(&form);
        if let Some((u, p)) = basic {
            r = r.basic_auth(u, Some(p));
        }
        r.send()
    };
    let response = post(
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "my-app"),
            ("client_secret", "s3cr3t"),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3, "a number, per --token-ttl");
    assert_eq!(body["scope"], "default");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let path = "/mesure_synchrone_auto/v2/consommation_quotidienne?pointId=22516914714270&dateDebut=2026-10-01&dateFin=2026-10-03";
    assert_eq!(sim.get_json(&token, path).await.0, 200, "fresh token works");
    let issued = std::time::Instant::now();

    let response = post(
        vec![("grant_type", "client_credentials")],
        Some(("my-app", "s3cr3t")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "HTTP Basic");

    for (form, basic) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "my-app"),
                ("client_secret", "nope"),
            ],
            None,
        ),
        (
            vec![("grant_type", "client_credentials")],
            Some(("sim-client", "sim-secret")),
        ),
        (vec![("grant_type", "client_credentials")], None),
    ] {
        let response = post(form, basic).await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["fault"]["code"], 900901);
        assert_eq!(body["fault"]["message"], "Invalid Credentials");
    }
    let response = post(
        vec![("grant_type", "authorization_code")],
        Some(("my-app", "s3cr3t")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    let response = sim
        .http()
        .post(sim.url("/oauth2/v3/token"))
        .basic_auth("my-app", Some("s3cr3t"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "form body required");

    // Data calls: no token, a bad token, then an expired one.
    let response = sim.http().get(sim.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fault"]["code"], 900902);
    let (status, body) = sim.get_json("bogus", path).await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["code"], 900901);
    let ttl = std::time::Duration::from_millis(3200);
    tokio::time::sleep(ttl.saturating_sub(issued.elapsed())).await;
    let (status, body) = sim.get_json(&token, path).await;
    assert_eq!(status, 401, "expired after --token-ttl");
    assert_eq!(body["fault"]["code"], 900901);
}

#[tokio::test]
async fn expires_in_as_string_as_the_v5_openapi() {
    let sim = Sim::start(&["--expires-in-string"]);
    let response = sim
        .http()
        .post(sim.url("/oauth2/v3/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], "12600");
    sim.admin()
        .config(json!({"expires_in_as_string": false}))
        .await;
    let token = sim.app_token().await;
    assert!(!token.is_empty());
    let response = sim
        .http()
        .post(sim.url("/oauth2/v3/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["expires_in"], 12600);
}

#[tokio::test]
async fn admin_can_expire_tokens_and_refresh_still_works() {
    let sim = start();
    let t = sim.consent_v1_tokens("abc0", None).await;
    let access = t["access_token"].as_str().unwrap();
    let path = "/v4/metering_data/daily_consumption?usage_point_id=22516914714270&start=2026-10-01&end=2026-10-03";
    assert_eq!(sim.get_json(access, path).await.0, 200);
    sim.admin().expire_tokens().await;
    assert_eq!(sim.get_json(access, path).await.0, 401);
    let response = token_v1(
        &sim,
        Some(REDIRECT),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    let t2: Value = response.json().await.unwrap();
    assert_eq!(
        sim.get_json(t2["access_token"].as_str().unwrap(), path)
            .await
            .0,
        200
    );
    let tokens = sim.admin().get("tokens").await;
    let listed = tokens["access_tokens"].to_string();
    assert!(
        !listed.contains(t2["access_token"].as_str().unwrap()),
        "tokens are not listed in full"
    );
}

#[tokio::test]
async fn profile_8_consents_then_revokes_at_once() {
    let sim = start();
    // v1: the code exchange works, data do not.
    let t = sim.consent_v1_tokens("abc8", None).await;
    assert_eq!(t["usage_points_id"], "26584978546985");
    let access = t["access_token"].as_str().unwrap();
    let (status, body) = sim
        .get_json(access, "/v4/metering_data/daily_consumption?usage_point_id=26584978546985&start=2026-10-01&end=2026-10-03")
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "ADAM-DC-0008");
    // v2: the autorisation exists, its services are TERMINE.
    let id = sim.consent_v2("abc8", None).await;
    let app = sim.app_token().await;
    let search = |body: Value| {
        let request = sim
            .http()
            .post(sim.url("/subscribed_services/v1/"))
            .bearer_auth(&app)
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let active = search(json!({"autorisationId": id, "comptage": false})).await;
    assert_eq!(
        active["nbTotalServices"], 0,
        "default etatCode is ACTIF, DEMANDE"
    );
    let ended =
        search(json!({"autorisationId": id, "comptage": false, "etatCode": ["TERMINE"]})).await;
    assert!(ended["nbTotalServices"].as_u64().unwrap() > 0);
    assert!(
        ended["serviceSouscrit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["etatCode"] == "TERMINE" && s["pointId"] == "26584978546985")
    );
    let count =
        search(json!({"autorisationId": id, "comptage": true, "etatCode": ["TERMINE"]})).await;
    assert_eq!(count["nbTotalServices"], ended["nbTotalServices"]);
    assert!(
        count.get("serviceSouscrit").is_none(),
        "comptage: the count only"
    );
    let (status, body) = sim
        .get_json(&app, "/mesure_synchrone_auto/v2/consommation_quotidienne?pointId=26584978546985&dateDebut=2026-10-01&dateFin=2026-10-03")
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"code": "ADAM-DC-0008", "message": "No consent can be found for this customer and this usage point."})
    );
}

#[tokio::test]
async fn subscribed_services_errors_and_filters() {
    let sim = start();
    let app = sim.app_token().await;
    let post = |body: &'static str, content_type: &'static str| {
        sim.http()
            .post(sim.url("/subscribed_services/v1/"))
            .bearer_auth(&app)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, mention) in [
        (r#"{"autorisationId": 100000001}"#, "comptage"),
        (r#"{"comptage": false}"#, "autorisationId"),
        (
            r#"{"autorisationId": "x", "comptage": false}"#,
            "autorisationId",
        ),
        (
            r#"{"autorisationId": 1, "comptage": false, "foo": 1}"#,
            "foo",
        ),
        ("not json", "JSON"),
    ] {
        let response = post(body, "application/json").await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let b: Value = response.json().await.unwrap();
        assert!(
            b["code"].is_string() && b["message"].as_str().unwrap().contains(mention),
            "{body}: {b}"
        );
    }
    let response = post(
        r#"{"autorisationId": 424242, "comptage": false}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["nbTotalServices"],
        0
    );
    // Standing consents: the first is profile 0's.
    let response = post(
        r#"{"autorisationId": 100000001, "comptage": false, "mesureTypeCode": ["CDC"]}"#,
        "application/json",
    )
    .await
    .unwrap();
    let b: Value = response.json().await.unwrap();
    assert_eq!(b["nbTotalServices"], 1);
    assert_eq!(b["serviceSouscrit"][0]["pointId"], "22516914714270");
    assert_eq!(b["serviceSouscrit"][0]["mesuresPas"], "PT30M");
    // By PRM.
    let response = post(
        r#"{"pointId": ["12655648759651"], "comptage": false, "injection": true}"#,
        "application/json",
    )
    .await
    .unwrap();
    let b: Value = response.json().await.unwrap();
    assert!(b["nbTotalServices"].as_u64().unwrap() >= 2);
    assert!(
        b["serviceSouscrit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["injection"] == true)
    );
    // Outside the swagger: GET.
    let response = sim.get(&app, "/subscribed_services/v1/").await;
    assert_eq!(response.status(), 500);
}

//! No secret, token or password in the logs of a full run of the real binaries.
//!
//! A relay between the agent and `enedis-sim` records every token that crosses it
//! (`access_token`/`refresh_token` in answers, `refresh_token`/`client_secret` in
//! forms, bearer tokens in headers). Then, at debug level for every crate:
//! a v4 agent with a consent added by `consents add` (refresh token from a file)
//! and one given through the agent's consent pages (authorization code exchanged),
//! data requests (token refresh), expired tokens (401 → renewal), upstream errors,
//! `consents refresh`; then a 2026 agent (application token, renewal after
//! expiry). The logs of the agent runs, of the command lines and of the simulator
//! must hold none of those tokens, nor the client secret, nor any XMPP password.

use crate::common;
use crate::common::agent_harness;
use crate::common::sim;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_harness::*;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::prosody::{Prosody, ProsodyOptions};
use common::xmpp_harness::{AGENT, PASSWORD, Peer, submit};
use quoalise_agent::xmpp::Command;
use serde_json::json;

type Seen = Arc<Mutex<BTreeSet<String>>>;

/// Every secret-looking value in a body, header or form.
fn harvest(seen: &Seen, bytes: &[u8]) {
    let mut found = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        for key in ["access_token", "refresh_token", "id_token", "code"] {
            if let Some(s) = value.get(key).and_then(|v| v.as_str()) {
                found.push(s.to_owned());
            }
        }
    }
    for (key, value) in url::form_urlencoded::parse(bytes) {
        if ["refresh_token", "client_secret", "code", "access_token"].contains(&key.as_ref()) {
            found.push(value.into_owned());
        }
    }
    let mut seen = seen.lock().unwrap();
    seen.extend(found.into_iter().filter(|s| s.len() >= 8));
}

async fn forward(State((target, seen)): State<(String, Seen)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    harvest(&seen, &body);
    if let Some(query) = parts.uri.query() {
        harvest(&seen, query.as_bytes());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!(
        "{target}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name == "host" || name == "content-length" {
            continue;
        }
        if name == "authorization"
            && let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "))
        {
            seen.lock().unwrap().insert(token.to_owned());
        }
        upstream = upstream.header(name, value);
    }
    let answer = upstream.send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap();
    harvest(&seen, &bytes);
    response.body(Body::from(bytes)).unwrap()
}

/// A relay to `target` on a free port: its base URL.
async fn relay(target: String, seen: Seen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(forward)
        .with_state((target, seen));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn history(series: &str) -> Command {
    Command::execute(
        "get_history",
        Some(submit(&[
            ("identifier", &format!("urn:dev:prm:{PRM}_{series}")),
            ("start_time", &midnight(today().yesterday().unwrap())),
            ("end_time", &midnight(today())),
        ])),
    )
}

async fn cli(config: &std::path::Path, args: &[&str], log: &mut String) -> bool {
    let out = tokio::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("QUOALISE_AGENT_CONFIG")
        .output()
        .await
        .unwrap();
    log.push_str(&String::from_utf8_lossy(&out.stdout));
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_token_or_password_reaches_any_log() {
    let prosody = Prosody::start_with(ProsodyOptions::default()).await;
    prosody.register(AGENT, PASSWORD).await;
    prosody.register("alice", PASSWORD).await;
    let web_port = free_port();
    let agent_redirect = format!("http://127.0.0.1:{web_port}/redirect");
    let sim = sim::Sim::start(&["--quota-per-second", "0", "--redirect-uri", &agent_redirect]);
    let seen: Seen = Arc::default();
    let relay = relay(sim.base_url().to_owned(), seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let files = ConfigFiles {
        dir: dir.path().to_owned(),
        xmpp_server: prosody.server(),
        ca_file: prosody.ca_file(),
        sim_base: relay.clone(),
        web_port,
        sge: None,
    };
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[PRM])]);
    settings.log_level = "debug".into();
    files.write(&settings);
    let config_2026 = std::fs::read_to_string(files.path()).unwrap();
    let config_v4 = config_2026.replace("api = \"2026\"", "api = \"v4\"");
    assert_ne!(config_v4, config_2026);
    let mut logs = String::new();

    // --- v4: a consent's own tokens -------------------------------------------
    std::fs::write(files.path(), &config_v4).unwrap();
    let tokens = sim.consent_v1_tokens("secrets0", Some(PRM)).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    seen.lock().unwrap().insert(refresh.clone());
    seen.lock()
        .unwrap()
        .insert(tokens["access_token"].as_str().unwrap().to_owned());
    let token_file = dir.path().join("refresh_token");
    std::fs::write(&token_file, &refresh).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let added = cli(
        &files.path(),
        &[
            "consents",
            "add",
            "--owner",
            "alice@localhost",
            "--prm",
            PRM,
            "--duration",
            "P1Y",
            "--refresh-token-file",
            token_file.to_str().unwrap(),
        ],
        &mut logs,
    )
    .await;
    assert!(added, "{logs}");

    let mut agent = AgentProcess::spawn(
        &files.path(),
        dir.path(),
        files.web_port,
        &[("RUST_LOG", "debug")],
    );
    agent.wait_healthy(Duration::from_secs(60)).await;

    // A consumer consents through the agent's pages and Enedis': the agent
    // exchanges the authorization code for the consent's tokens.
    let description = dir.path().join("description.html");
    std::fs::write(&description, "<p>Suivi de consommation</p>").unwrap();
    let mut out = String::new();
    assert!(
        cli(
            &files.path(),
            &[
                "authorize-url",
                "--peer",
                "alice@localhost",
                "--name",
                "App",
                "--description-file",
                description.to_str().unwrap()
            ],
            &mut out,
        )
        .await,
        "{out}"
    );
    let page_url = out
        .lines()
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no URI in {out}"))
        .trim()
        .to_owned();
    logs.push_str(&out);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"id="enedis" href=""#;
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no Enedis link in {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    let mut enedis = url::Url::parse(&page[start..end].replace("&amp;", "&")).unwrap();
    enedis
        .query_pairs_mut()
        .append_pair("sim_auto", "accept")
        .append_pair("sim_prm", PRM);
    let back = http.get(enedis).send().await.unwrap();
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&agent_redirect), "{location}");
    harvest(
        &seen,
        url::Url::parse(&location)
            .unwrap()
            .query()
            .unwrap_or("")
            .as_bytes(),
    );
    let done = http.get(&location).send().await.unwrap();
    assert!(
        done.status().is_success() || done.status().is_redirection(),
        "{}",
        done.status()
    );
    let store = quoalise_agent::store::Store::open(dir.path().join("agent.db")).unwrap();
    assert_eq!(
        store.list_consents().unwrap().len(),
        2,
        "the web consent is stored"
    );

    let alice = Peer::login(&prosody, "alice@localhost/a").await;
    alice
        .command(history("consumption/power/active/raw"))
        .await
        .unwrap();
    // Expired access tokens: 401, then a renewal with the refresh token.
    sim.admin().expire_tokens().await;
    alice
        .command(history("consumption/energy/active/daily"))
        .await
        .unwrap();
    // Upstream errors, logged at length.
    sim.admin().faults(json!({ "failure_rate": 1.0 })).await;
    let _ = alice
        .command(history("consumption/power/apparent/max"))
        .await;
    sim.admin().faults(json!({ "truncated_body": 2 })).await;
    let _ = alice.command(history("consumption/power/active/raw")).await;
    sim.admin().clear_faults().await;
    agent.signal("-TERM");
    agent.wait_exit(Duration::from_secs(30)).await;
    assert!(
        cli(&files.path(), &["consents", "refresh"], &mut logs).await,
        "{logs}"
    );
    assert!(cli(&files.path(), &["consents", "list"], &mut logs).await);
    alice.running.stop().await;

    // --- 2026: the application token -----------------------------------------
    std::fs::write(files.path(), &config_2026).unwrap();
    let mut agent2 = AgentProcess::spawn(
        &files.path(),
        dir.path(),
        files.web_port,
        &[("RUST_LOG", "debug")],
    );
    agent2.wait_healthy(Duration::from_secs(60)).await;
    let alice = Peer::login(&prosody, "alice@localhost/b").await;
    alice
        .command(history("consumption/power/active/raw"))
        .await
        .unwrap();
    sim.admin().expire_tokens().await;
    alice
        .command(history("consumption/energy/active/daily"))
        .await
        .unwrap();
    agent2.signal("-TERM");
    agent2.wait_exit(Duration::from_secs(30)).await;
    alice.running.stop().await;

    logs.push_str(&agent.log());
    logs.push_str(&sim.log());
    let seen: Vec<String> = seen.lock().unwrap().iter().cloned().collect();
    println!(
        "{} tokens and codes crossed the relay; {} bytes of logs checked",
        seen.len(),
        logs.len()
    );
    // The run did what it says: tokens were issued and renewed, logs were written.
    assert!(seen.len() >= 6, "{seen:?}");
    assert!(logs.contains("request"), "the request log lines are there");
    assert!(logs.contains("refresh"), "token refreshes are logged");
    assert!(
        logs.contains("consent granted through the consent page"),
        "the consent return is logged"
    );

    let mut secrets = seen;
    secrets.push(sim::CLIENT_SECRET.to_owned());
    secrets.push(PASSWORD.to_owned());
    // The XMPP password as SASL PLAIN carries it (base64 of "\0user\0password"):
    // tokio-xmpp logs the stream at trace level, so this must stay out of debug.
    use base64::Engine as _;
    for user in [AGENT, "alice"] {
        secrets.push(
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}")),
        );
    }
    for secret in &secrets {
        for (n, line) in logs.lines().enumerate() {
            assert!(
                !line.contains(secret.as_str()),
                "a secret ({}…) is in log line {n}: {line}",
                &secret[..4]
            );
        }
    }
}

//! The consent flow end to end, as a consumer lives it: the REAL `quoalise-agent`
//! binary (`run`), a real Prosody, the real `enedis-sim`, a slixmpp peer
//! application (tests/e2e/consent_peer.py) and a real browser (headless Chromium
//! driven through chromedriver's W3C WebDriver API, phone-sized).
//!
//! 1. The peer runs `get_authorize_uri` over XMPP.
//! 2. The browser opens the returned URI (with the peer's `redirect_uri` and
//!    `state`), clicks through the agent's page and the simulator's consent page,
//!    and lands on the peer's site (a small HTTP server here) with `usage_points`.
//! 3. The peer receives the XMPP notification, then reads the new PRM's data with
//!    `get_history`.
//! 4. The agent is restarted; the consent is still there and still reads data.
//!
//! Screenshots of every page go to tests/artifacts/e2e_consent_<api>/ (gitignored).

use crate::common;
use crate::common::agent_harness::AgentProcess;
use crate::common::config::AgentConfig;
use crate::common::sim;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::prosody::{DOMAIN, Prosody, free_port};
use common::xmpp_harness::{AGENT, PASSWORD, Slix, agent_jid};
use jiff::ToSpan;
use quoalise_agent::commands::data::paris_midnight;
use quoalise_agent::time::paris_today;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const PEER_USER: &str = "app";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A signal to a whole process group (`-PGID`), with the `kill` program: the
/// browser driver and the Chromium it started (`common::prosody::signal` takes one pid).
fn signal_group(target: &str, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ------------------------------------------------------------------ the browser

/// The Chromium binary (Debian: `chromium`).
fn chromium() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/bin/chromium".to_owned())
}

/// chromedriver (its own process group, so that the browsers it starts go with
/// it on Drop) and one WebDriver session of headless Chromium.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Option<std::process::Child>,
    _profile: tempfile::TempDir,
    artifacts: PathBuf,
}

impl Browser {
    async fn start(artifacts: PathBuf) -> Browser {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver is not up within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            http,
            base,
            session: String::new(),
            driver: Some(driver),
            _profile: profile,
            artifacts,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--no-first-run",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
                // A phone: 390 × 844 CSS pixels, twice as many device pixels.
                "mobileEmulation": {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}},
            },
        }}});
        let value = browser.cmd("POST", "/session", Some(capabilities)).await;
        browser.session = value["sessionId"].as_str().unwrap().to_owned();
        browser
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {value}"
        );
        value["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", &self.at("/url"), Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", &self.at("/url"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.cmd("GET", &self.at("/source"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let value = self
            .cmd(
                "POST",
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        value["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.cmd("POST", &self.at(&format!("/element/{element}/click")), None)
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.cmd(
            "POST",
            &self.at(&format!("/element/{element}/value")),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The document's width in CSS pixels (wider than the window: sideways scrolling).
    async fn scroll_width(&self) -> f64 {
        self.cmd(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": "return document.documentElement.scrollWidth;", "args": []})),
        )
        .await
        .as_f64()
        .unwrap()
    }

    async fn scroll_to(&self, css: &str) {
        let element = self.find(css).await;
        self.cmd(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({
                "script": "arguments[0].scrollIntoView({block: 'end'});",
                "args": [{"element-6066-11e4-a52e-4f735466cecf": element}],
            })),
        )
        .await;
    }

    /// Waits until the URL starts with `prefix`; returns it.
    async fn wait_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.url().await;
            if url.starts_with(prefix) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "the browser stays on {url}, expected {prefix}…"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `<artifacts>/<name>.png` and returns its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.cmd("GET", &self.at("/screenshot"), None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    async fn quit(mut self) {
        let at = format!("/session/{}", self.session);
        self.cmd("DELETE", &at, None).await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            // The whole group: chromedriver and the browsers it started.
            signal_group(&format!("-{}", driver.id()), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = driver.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            signal_group(&format!("-{}", driver.id()), "-KILL");
            let _ = driver.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

// ------------------------------------------------------------------ the peer

/// The peer application's web site: records the queries its `/linky/…` pages get.
async fn peer_site(listener: tokio::net::TcpListener) -> Arc<Mutex<Vec<String>>> {
    use axum::extract::{RawQuery, State};
    use axum::response::Html;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/linky/done",
            axum::routing::get(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, RawQuery(query): RawQuery| async move {
                    let query = query.unwrap_or_default();
                    seen.lock().unwrap().push(query.clone());
                    let prms = url::form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "usage_points")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    Html(format!(
                        "<!DOCTYPE html><html lang=\"fr\"><head><meta charset=\"utf-8\">\
                         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                         <title>Elec Expert</title></head><body style=\"font-family:sans-serif;padding:1rem\">\
                         <h1>Elec Expert</h1><p>Merci ! Compteurs reçus :</p><p id=\"prms\">{prms}</p></body></html>"
                    ))
                },
            ),
        )
        .with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    seen
}

/// tests/e2e/consent_peer.py, one JSON event per stdout line.
struct PeerScript {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: PathBuf,
}

impl PeerScript {
    fn start(prosody: &Prosody, stderr: PathBuf) -> PeerScript {
        let python = root().join(".venv/bin/python");
        assert!(
            python.is_file(),
            "no Python venv with slixmpp at {}: run scripts/setup-python.sh first",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root().join("tests/e2e/consent_peer.py"))
            .args(["--jid", &format!("{PEER_USER}@{DOMAIN}/web")])
            .args(["--password", PASSWORD, "--server", &prosody.server()])
            .arg("--ca-file")
            .arg(prosody.ca_file())
            .args(["--agent", agent_jid().as_str()])
            .args(["--name", "Elec Expert"])
            .args(["--logo-url", "https://example.fr/logo.png"])
            .args([
                "--description",
                "<p>Nos experts analysent votre consommation d'électricité \
                 sur l'année précédente.<br/>\nLors d'un rendez-vous téléphonique, nous \
                 vous ferons part de nos recommandations.</p>\n<p>Voir notre \
                 <a href=\"https://example.fr/confidentialite\">politique de \
                 confidentialité</a>.<script>alert(1)</script></p>",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .expect("run the slixmpp peer");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        PeerScript {
            child,
            lines,
            stderr,
        }
    }

    async fn event(&mut self, name: &str, within: Duration) -> Value {
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no '{name}' from the peer within {within:?}: {}",
                    self.stderr()
                )
            })
            .unwrap()
            .unwrap_or_else(|| panic!("the peer exited before '{name}': {}", self.stderr()));
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the peer printed {line:?}: {e}"));
        assert_eq!(event["event"], name, "{event}\n{}", self.stderr());
        event
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the peer exits")
            .unwrap();
        assert!(status.success(), "the peer failed: {}", self.stderr());
    }
}

// ------------------------------------------------------------------ the test

struct Setup {
    _dir: tempfile::TempDir,
    prosody: Prosody,
    sim: sim::Sim,
    agent: AgentProcess,
    web: String,
    peer_site: String,
    seen: Arc<Mutex<Vec<String>>>,
    artifacts: PathBuf,
}

async fn setup(api: &str, sandbox: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    prosody.register(PEER_USER, PASSWORD).await;

    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}");
    let sim = sim::Sim::start(&["--redirect-uri", &format!("{web}/redirect")]);
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_site_base = format!("http://{}", site.local_addr().unwrap());
    let seen = peer_site(site).await;

    let config = AgentConfig::new()
        .set("xmpp.jid", format!("{AGENT}@{DOMAIN}/agent"))
        .xmpp_password(PASSWORD)
        .xmpp_server(&prosody.server(), &prosody.ca_file())
        .set("enedis.api", api)
        .set("enedis.sandbox", sandbox)
        .simulator(sim.base_url())
        .set("enedis.max_retries", 1)
        .web_port(web_port)
        .set("store.path", dir.path().join("agent.db"))
        .set("log.level", "info,quoalise_agent=debug")
        .peer(&format!("{PEER_USER}@{DOMAIN}"), &[])
        .peer_set("redirect_uris", vec![format!("{peer_site_base}/linky/")])
        .write(dir.path());
    let mut agent = AgentProcess::spawn(&config, dir.path(), web_port, &[]);
    agent.wait_healthy(Duration::from_secs(60)).await;
    let artifacts = root()
        .join("tests/artifacts")
        .join(format!("e2e_consent_{api}"));
    std::fs::create_dir_all(&artifacts).unwrap();
    Setup {
        _dir: dir,
        prosody,
        sim,
        agent,
        web,
        peer_site: peer_site_base,
        seen,
        artifacts,
    }
}

fn query_value(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// get_history over XMPP (slixmpp, one shot): the answer.
async fn history(slix: &Slix, prm: &str) -> Value {
    let today = paris_today(jiff::Timestamp::now());
    let start = today.checked_sub(3.days()).unwrap();
    slix.run(
        &[],
        "single",
        &[
            "get_history",
            &format!("identifier=urn:dev:prm:{prm}_consumption/energy/active/daily"),
            &format!("start_time={}", paris_midnight(start)),
            &format!("end_time={}", paris_midnight(today)),
        ],
    )
    .await
}

/// The answer of get_history holds three daily records for `prm`.
#[track_caller]
fn assert_history(answer: &Value, prm: &str) {
    assert_eq!(answer["type"], "result", "{answer}");
    let payload = answer["payloads"][0].as_str().unwrap_or_default();
    assert!(
        payload.contains(&format!(
            "urn:dev:prm:{prm}_consumption/energy/active/daily"
        )),
        "{answer}"
    );
    assert_eq!(payload.matches("<senml").count(), 3, "{payload}");
}

/// The whole flow: the peer asks, the consumer consents in the browser, the peer
/// is told and reads; then the agent restarts and the consent still works.
/// `choose` is what the consumer does on the simulator's page; `expected` the PRMs.
async fn consent_in_a_browser(
    api: &str,
    sandbox: bool,
    test_client: Option<&str>,
    expected: &[&str],
) {
    let mut s = setup(api, sandbox).await;
    let mut peer = PeerScript::start(&s.prosody, s.artifacts.join("peer.stderr.log"));
    let answer = peer.event("authorize_uri", Duration::from_secs(60)).await;
    let form = &answer["answer"]["form"];
    assert_eq!(answer["answer"]["status"], "completed", "{answer}");
    let field = &form["fields"][0];
    assert_eq!(field["var"], "authorize_uri", "{answer}");
    let uri = field["values"][0].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with(&format!("{}/authorize?id=", s.web)),
        "{uri}"
    );

    let browser = Browser::start(s.artifacts.clone()).await;
    let mut page = url::Url::parse(&uri).unwrap();
    page.query_pairs_mut()
        .append_pair(
            "redirect_uri",
            &format!("{}/linky/done?from=agent", s.peer_site),
        )
        .append_pair("state", "peer-state-42");
    if let Some(d) = test_client {
        page.query_pairs_mut().append_pair("test_client", d);
    }
    browser.goto(page.as_str()).await;
    let source = browser.source().await;
    assert!(
        source.contains("Elec Expert souhaite accéder aux données"),
        "{source}"
    );
    assert!(source.contains("politique de"), "{source}");
    assert!(!source.contains("alert(1)"), "{source}");
    assert!(
        browser.scroll_width().await <= 390.0,
        "the page scrolls sideways on a phone"
    );
    browser.screenshot("01-agent-consent-page").await;
    browser.scroll_to("#enedis").await;
    browser.screenshot("01b-agent-consent-page-button").await;

    browser.click("#enedis").await;
    let enedis = browser.wait_url(s.sim.base_url()).await;
    assert!(enedis.contains("/dataconnect/"), "{enedis}");
    browser.screenshot("02-enedis-consent-page").await;
    if test_client.is_none() {
        browser.type_into("#prms", &expected.join(", ")).await;
        browser.screenshot("02b-enedis-consent-page-filled").await;
    }
    browser.click("button.accept").await;

    let landed = browser.wait_url(&s.peer_site).await;
    assert_eq!(
        query_value(&landed, "from").as_deref(),
        Some("agent"),
        "{landed}"
    );
    assert_eq!(
        query_value(&landed, "usage_points").as_deref(),
        Some(expected.join(",").as_str()),
        "{landed}"
    );
    assert_eq!(s.seen.lock().unwrap().len(), 1);
    browser.screenshot("03-peer-site").await;

    let note = peer.event("notification", Duration::from_secs(30)).await;
    assert_eq!(note["type"], "chat", "{note}");
    assert_eq!(note["from"].as_str().unwrap(), agent_jid().as_str());
    assert_eq!(note["usage_points"], json!(expected), "{note}");
    assert_eq!(note["state"], "peer-state-42");
    assert_eq!(
        note["body"],
        format!("Access granted for usage points {}", expected.join(", "))
    );
    let history_answer = peer.event("history", Duration::from_secs(60)).await;
    assert_history(&history_answer["answer"], expected[0]);
    peer.finish().await;

    // The same page again, without redirect_uri: a confirmation page. Then a
    // refusal, and a foreign redirect URI, for their screenshots.
    browser
        .goto(&uri_with(&uri, &[("test_client", "0")], sandbox))
        .await;
    browser.click("#enedis").await;
    browser.wait_url(s.sim.base_url()).await;
    if !sandbox {
        browser.type_into("#prms", "30001610071850").await;
    }
    browser.click("button.accept").await;
    browser.wait_url(&format!("{}/redirect", s.web)).await;
    let source = browser.source().await;
    assert!(
        source.contains("Merci, votre accord est enregistré"),
        "{source}"
    );
    browser.screenshot("04-confirmation-page").await;

    browser.goto(&uri).await;
    browser.click("#enedis").await;
    browser.wait_url(s.sim.base_url()).await;
    browser.click("button.refuse").await;
    browser.wait_url(&format!("{}/redirect", s.web)).await;
    let source = browser.source().await;
    assert!(source.contains("Vous avez refusé"), "{source}");
    browser.screenshot("05-refusal-page").await;

    browser
        .goto(&uri_with(
            &uri,
            &[("redirect_uri", "https://app.example.org.evil.com/")],
            false,
        ))
        .await;
    let source = browser.source().await;
    assert!(source.contains("Adresse de retour refusée"), "{source}");
    browser.screenshot("06-foreign-redirect-refused").await;
    browser.quit().await;

    // The consent survives a restart of the agent and still reads data.
    s.agent.restart().await;
    let slix = Slix::new(&s.prosody, &format!("{PEER_USER}@{DOMAIN}/after-restart"));
    assert_history(&history(&slix, expected[0]).await, expected[0]);
    let listed = slix.run(&[], "single", &["list_usage_points"]).await;
    let listed_prms = listed["form"]["fields"][0]["values"].clone();
    for prm in expected {
        assert!(
            listed_prms.as_array().unwrap().iter().any(|v| v == prm),
            "{prm} not in {listed}"
        );
    }
    s.agent.stop().await;
}

fn uri_with(uri: &str, extra: &[(&str, &str)], keep_test_client: bool) -> String {
    let mut url = url::Url::parse(uri).unwrap();
    for (k, v) in extra {
        if *k == "test_client" && !keep_test_client {
            continue;
        }
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}

/// Data Connect 2026, production mode: the consumer types the PRM on the consent page.
#[tokio::test]
async fn consent_through_a_browser_2026() {
    consent_in_a_browser("2026", false, None, &["30001610071843"]).await;
}

/// v4, sandbox: the test client picks three PRMs; the code is exchanged at once and
/// the tokens persist across the restart.
#[tokio::test]
async fn consent_through_a_browser_v4_sandbox() {
    consent_in_a_browser(
        "v4",
        true,
        Some("7"),
        &["22315546958763", "63695879465986", "64975835695673"],
    )
    .await;
}

/// `get_authorize_uri` as Gajim (multi-stage, prefilled form) and as a program
/// (one execute) drive it, against the real agent binary; and the admin's
/// `authorize-url`, which gives the same URI for the same description.
#[tokio::test]
async fn get_authorize_uri_for_humans_programs_and_admins() {
    let s = setup("2026", false).await;
    let slix = Slix::new(&s.prosody, &format!("{PEER_USER}@{DOMAIN}/gajim"));

    // A human first gets a form; the name defaults to the JID's local part.
    let flow = slix
        .run(
            &[],
            "multistage",
            &[
                "get_authorize_uri",
                "description=<p>Première ligne</p>\n<p>Seconde <a href=\"https://example.fr/\">ligne</a></p>",
            ],
        )
        .await;
    let first = &flow["steps"][0];
    assert_eq!(first["status"], "executing", "{flow}");
    let fields = first["form"]["fields"].as_array().unwrap();
    let vars: Vec<&str> = fields.iter().map(|f| f["var"].as_str().unwrap()).collect();
    assert_eq!(vars, ["name", "logo_url", "description"], "{flow}");
    assert_eq!(fields[0]["values"], json!([PEER_USER]), "{flow}");
    assert_eq!(fields[2]["type"], "text-multi", "{flow}");
    let done = &flow["steps"][1];
    assert_eq!(done["status"], "completed", "{flow}");
    let answer = &done["form"]["fields"][0];
    assert_eq!(answer["var"], "authorize_uri", "{flow}");
    // text-single (XEP-0004's default type, which xmpp-parsers leaves implicit):
    // a field Psi users can select and copy.
    assert!(
        matches!(answer["type"].as_str(), Some("" | "text-single")),
        "{flow}"
    );
    let uri = answer["values"][0].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with(&format!("{}/authorize?id=", s.web)),
        "{uri}"
    );

    // The page shows both description lines, as HTML.
    let page = reqwest::get(&uri).await.unwrap().text().await.unwrap();
    assert!(page.contains("<p>Première ligne</p>"), "{page}");
    assert!(
        page.contains(
            "<a href=\"https://example.fr/\" rel=\"noopener noreferrer nofollow\">ligne</a>"
        ),
        "{page}"
    );

    // Next time the form is prefilled with that description, and submitting it
    // unchanged gives the same URI.
    let again = slix.run(&[], "multistage", &["get_authorize_uri"]).await;
    let fields = again["steps"][0]["form"]["fields"].as_array().unwrap();
    assert_eq!(fields[0]["values"], json!([PEER_USER]), "{again}");
    assert_eq!(
        fields[2]["values"],
        json!([
            "<p>Première ligne</p>",
            "<p>Seconde <a href=\"https://example.fr/\">ligne</a></p>"
        ]),
        "{again}"
    );
    assert_eq!(
        again["steps"][1]["form"]["fields"][0]["values"][0],
        uri.as_str(),
        "{again}"
    );

    // A program sends everything at once; mistakes name the field.
    let answer = slix
        .run(
            &[],
            "single",
            &[
                "get_authorize_uri",
                "name=Elec Expert",
                "logo_url=http://example.fr/logo.png",
                "description=x",
            ],
        )
        .await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["condition"], "bad-request", "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("field 'logo_url'"),
        "{answer}"
    );
    let answer = slix
        .run(&[], "single", &["get_authorize_uri", "description=x"])
        .await;
    assert_eq!(answer["condition"], "bad-request", "{answer}");
    assert!(
        answer["text"].as_str().unwrap().contains("'name'"),
        "{answer}"
    );
    let answer = slix
        .run(
            &[],
            "single",
            &[
                "get_authorize_uri",
                "name=Elec Expert",
                "logo_url=https://example.fr/logo.png",
                "description=<p>Pour vous</p>",
            ],
        )
        .await;
    assert_eq!(answer["status"], "completed", "{answer}");
    let program_uri = answer["form"]["fields"][0]["values"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(program_uri, uri);

    // The admin's command line: the same description gives the same URI.
    let description = s._dir.path().join("description.html");
    std::fs::write(&description, "<p>Pour vous</p>\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(s.agent.config())
        .args([
            "authorize-url",
            "--peer",
            "App@Localhost",
            "--name",
            "Elec Expert",
        ])
        .args([
            "--logo-url",
            "https://example.fr/logo.png",
            "--description-file",
        ])
        .arg(&description)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), program_uri);
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(s.agent.config())
        .args([
            "authorize-url",
            "--peer",
            "stranger@localhost",
            "--name",
            "X",
            "--description-file",
        ])
        .arg(&description)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stranger@localhost is not a configured peer"),
        "{stderr}"
    );
    // Another peer's description is not shown under this one's name: owners differ.
    let page = reqwest::get(&program_uri)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Elec Expert souhaite"), "{page}");
}

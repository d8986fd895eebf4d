//! The consent flow over real HTTP: the agent's consent pages (the library's web
//! router on 127.0.0.1, a real SQLite file, the real upstream client) against the
//! real `enedis-sim` binary and its consent pages, for every API generation:
//! success with one and several PRMs, refusal, portal error, expired, replayed and
//! unknown states, foreign redirect URIs, scripts in descriptions, `test_client`
//! outside the sandbox, durations. The peer's XMPP notification goes to a
//! recording [`Notifier`] here; tests/web/e2e_consent.rs sends it over a real XMPP
//! server.

use crate::common::sim;
use crate::common::xmpp_harness::LogCapture;
use quoalise_agent::upstream::Ask;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::ToSpan;
use quoalise_agent::config::{ApiGeneration, EnedisConfig, PeerConfig, Secret};
use quoalise_agent::quoalise::{Scope, Scopes, Series};
use quoalise_agent::store::{ConsentState, Store, now_seconds};
use quoalise_agent::time::{day_start, paris_date, paris_today};
use quoalise_agent::upstream::{EnedisClient, Upstream};
use quoalise_agent::web::{
    self, ConsentNotification, DescriptionInput, Notifier, NotifyError, SharedPeers, WebSettings,
    WebState,
};
use tokio::sync::mpsc;
use url::Url;

const ALL: [ApiGeneration; 4] = [
    ApiGeneration::Api2026,
    ApiGeneration::V5,
    ApiGeneration::V4,
    ApiGeneration::V3,
];

const PEER: &str = "app@example.org";
const PEER_REDIRECT: &str = "https://app.example.org/linky/";

/// Sandbox profiles (docs/enedis-sim.md).
const PROFILE_0: &[&str] = &["22516914714270"];
const PROFILE_3: &[&str] = &["10284856584123", "12345678901234"];
const PROFILE_7: &[&str] = &["22315546958763", "63695879465986", "64975835695673"];

/// Records what the agent would send the peer over XMPP.
struct Recorder(mpsc::UnboundedSender<(String, ConsentNotification)>);

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, peer: &str, n: &ConsentNotification) -> Result<(), NotifyError> {
        let _ = self.0.send((peer.to_owned(), n.clone()));
        Ok(())
    }
}

struct Options {
    api: ApiGeneration,
    sandbox: bool,
    state_ttl: Duration,
    /// A path in `public_url` (a reverse proxy's prefix), e.g. `/dataconnect`.
    public_path: &'static str,
}

impl Options {
    fn new(api: ApiGeneration) -> Self {
        Options {
            api,
            sandbox: true,
            state_ttl: web::STATE_TTL,
            public_path: "",
        }
    }
}

/// One agent web server (its own store) against one simulator whose registered
/// redirect URI is that server's `/redirect`.
struct Flow {
    api: ApiGeneration,
    sim: sim::Sim,
    _dir: tempfile::TempDir,
    store: Store,
    upstream: Arc<EnedisClient>,
    base: String,
    http: reqwest::Client,
    notes: mpsc::UnboundedReceiver<(String, ConsentNotification)>,
    peers: SharedPeers,
    server: tokio::task::JoinHandle<()>,
    /// The authorize URI of a plain description of PEER.
    uri: String,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn peer_config(redirects: &[&str]) -> PeerConfig {
    PeerConfig {
        jid: PEER.into(),
        usage_points: Vec::new(),
        redirect_uris: redirects.iter().map(|u| Url::parse(u).unwrap()).collect(),
        weight: 1,
        calls_per_hour: None,
        scopes: Scopes::default_for_peers(),
    }
}

impl Flow {
    async fn start(options: Options) -> Flow {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "http://{}{}",
            listener.local_addr().unwrap(),
            options.public_path
        );
        let redirect = format!("{base}/redirect");
        let sim = sim::Sim::start(&["--redirect-uri", &redirect]);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        let config = EnedisConfig {
            api: options.api,
            base_url: sim.base_url().to_owned(),
            authorize_url: sim.base_url().to_owned(),
            client_id: sim::CLIENT_ID.into(),
            client_secret: Secret::new(sim::CLIENT_SECRET),
            redirect_uri: redirect.clone(),
            sandbox: options.sandbox,
            calls_per_second: 50,
            calls_per_hour: 10_000,
            connect_timeout_secs: 2,
            request_timeout_secs: 10,
            max_retries: 1,
            quota_wait_secs: 10,
            interactive_reserve_percent: 20,
        };
        let upstream = Arc::new(EnedisClient::new(&config, store.clone()).unwrap());
        let (tx, notes) = mpsc::unbounded_channel();
        let peers = SharedPeers::new(vec![peer_config(&[PEER_REDIRECT])]);
        let settings = WebSettings {
            public_url: base.clone(),
            sandbox: options.sandbox,
            data_connect: true,
            callback_path: "/redirect".into(),
            state_ttl: options.state_ttl,
            max_live_states: 1000,
        };
        let state = WebState::new(
            store.clone(),
            upstream.clone(),
            Arc::new(Recorder(tx)),
            Arc::new(peers.clone()),
            settings,
        );
        let app = web::router(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let (_, uri) = web::register(
            &store,
            &base,
            PEER,
            &DescriptionInput {
                name: "Elec Expert".into(),
                logo_url: Some("https://app.example.org/logo.png".into()),
                description: "<p>Nos experts analysent votre consommation.</p>".into(),
            },
        )
        .unwrap();
        Flow {
            api: options.api,
            sim,
            _dir: dir,
            store,
            upstream,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            notes,
            peers,
            server,
            uri,
        }
    }

    /// GET the authorize URI with `extra` query parameters: status and body.
    async fn open(&self, extra: &[(&str, &str)]) -> (u16, String) {
        self.open_uri(&self.uri, extra).await
    }

    async fn open_uri(&self, uri: &str, extra: &[(&str, &str)]) -> (u16, String) {
        let mut url = Url::parse(uri).unwrap();
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The authorize page's link to Enedis (status 200 required).
    async fn link(&self, extra: &[(&str, &str)]) -> Url {
        let (status, body) = self.open(extra).await;
        assert_eq!(status, 200, "{body}");
        enedis_link(&body)
    }

    /// Follow the link to the simulator with `sim` parameters (`sim_auto`, `sim_prm`);
    /// returns where the simulator sends the consumer back (our `/redirect?…`).
    async fn enedis(&self, link: &Url, sim: &[(&str, &str)]) -> Url {
        let mut url = link.clone();
        for (k, v) in sim {
            url.query_pairs_mut().append_pair(k, v);
        }
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            302,
            "{}",
            response.text().await.unwrap()
        );
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&format!("{}/redirect?", self.base)),
            "{location}"
        );
        Url::parse(&location).unwrap()
    }

    /// GET our `/redirect?…`: status, Location (if any), body.
    async fn back(&self, location: &Url) -> (u16, Option<String>, String) {
        let response = self.http.get(location.clone()).send().await.unwrap();
        let status = response.status().as_u16();
        let to = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, to, response.text().await.unwrap())
    }

    /// The whole trip with `sim_auto=accept`.
    async fn consent(
        &self,
        extra: &[(&str, &str)],
        sim: &[(&str, &str)],
    ) -> (u16, Option<String>, String) {
        let link = self.link(extra).await;
        let mut sim = sim.to_vec();
        sim.push(("sim_auto", "accept"));
        let back = self.enedis(&link, &sim).await;
        self.back(&back).await
    }

    fn consents(&self) -> Vec<quoalise_agent::store::Consent> {
        self.store.list_consents().unwrap()
    }

    /// The next notification, waiting a little.
    async fn notification(&mut self) -> (String, ConsentNotification) {
        tokio::time::timeout(Duration::from_secs(5), self.notes.recv())
            .await
            .expect("a notification within 5 s")
            .expect("the notifier is alive")
    }

    fn no_notification(&mut self) {
        assert!(
            self.notes.try_recv().is_err(),
            "{:?}: unexpected notification",
            self.api
        );
    }
}

/// Undo the five escapes of the agent's pages.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn enedis_link(html: &str) -> Url {
    let start = html
        .find(r#"id="enedis" href=""#)
        .unwrap_or_else(|| panic!("no Enedis link in {html}"))
        + r#"id="enedis" href=""#.len();
    let end = start + html[start..].find('"').unwrap();
    Url::parse(&unescape(&html[start..end])).unwrap()
}

fn query_value(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn strings(prms: &[&str]) -> Vec<String> {
    prms.iter().map(|p| (*p).to_owned()).collect()
}

/// Validate with xmllint against schemas/<schema>.
fn xmllint(schema: &str, xml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--relaxng")
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas")
                .join(schema),
        )
        .arg(&file)
        .output()
        .expect("xmllint (Debian package libxml2-utils)");
    assert!(
        out.status.success(),
        "{schema} rejects {xml}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn success_with_one_and_several_prms_in_every_generation() {
    for api in ALL {
        let mut flow = Flow::start(Options::new(api)).await;
        for (client, prms) in [("0", PROFILE_0), ("3", PROFILE_3), ("7", PROFILE_7)] {
            let peer_state = format!("peer-{client} & <co>");
            let link = flow
                .link(&[
                    ("redirect_uri", "https://app.example.org/linky/done?lang=fr"),
                    ("state", &peer_state),
                    ("test_client", client),
                ])
                .await;
            // The sandbox picks its test client from the state's last character.
            let state = query_value(&link, "state").unwrap();
            assert!(state.ends_with(client), "{state}");
            assert!(state.len() >= 33, "{state}");
            assert_eq!(query_value(&link, "duration").as_deref(), Some("P1Y"));
            let back = flow.enedis(&link, &[("sim_auto", "accept")]).await;
            match api {
                ApiGeneration::Api2026 => assert!(query_value(&back, "autorisation_id").is_some()),
                _ => assert!(query_value(&back, "code").is_some()),
            }
            let (status, to, body) = flow.back(&back).await;
            assert_eq!(status, 303, "{api:?} {client}: {body}");
            let to = Url::parse(&to.unwrap()).unwrap();
            // The peer's query is kept; usage_points is appended, encoded.
            assert_eq!(
                to.as_str(),
                format!(
                    "https://app.example.org/linky/done?lang=fr&usage_points={}",
                    prms.join("%2C")
                )
            );
            assert_eq!(query_value(&to, "usage_points").unwrap(), prms.join(","));

            let (peer, note) = flow.notification().await;
            assert_eq!(peer, PEER);
            assert_eq!(note.usage_points, strings(prms));
            assert_eq!(note.peer_state.as_deref(), Some(peer_state.as_str()));
            xmllint("authorize-notification.rng", &String::from(&note.payload()));

            let consent = flow.consents().pop().unwrap();
            assert_eq!(consent.owner, PEER);
            assert_eq!(consent.generation, api);
            assert_eq!(consent.state, ConsentState::Active);
            let got: Vec<String> = consent.prms.iter().map(|p| p.to_string()).collect();
            assert_eq!(got, strings(prms), "{api:?}");
            assert_eq!(
                consent.has_refresh_token,
                api.per_consent_tokens(),
                "{api:?}"
            );
            assert_eq!(
                consent.autorisation_id.is_some(),
                api == ApiGeneration::Api2026
            );
        }
        assert_eq!(flow.consents().len(), 3, "{api:?}");

        // The new consent reads data at once (v3/v4: with the tokens of its code).
        let prm = PROFILE_7[0].parse().unwrap();
        let today = paris_today(jiff::Timestamp::now());
        let fetched = flow
            .upstream
            .readings(
                prm,
                Series::ConsumptionEnergyDaily,
                today.checked_sub(3.days()).unwrap(),
                today,
                &Ask::agent(),
            )
            .await
            .unwrap_or_else(|e| panic!("{api:?}: {e}"));
        assert_eq!(fetched.readings.len(), 3, "{api:?}");
    }
}

#[tokio::test]
async fn typed_prms_without_redirect_uri_get_a_confirmation_page() {
    for api in ALL {
        let mut options = Options::new(api);
        options.sandbox = false;
        let mut flow = Flow::start(options).await;
        let link = flow.link(&[]).await;
        // Outside the sandbox a state never ends in a digit: the simulator then asks
        // for the PRM instead of picking a test profile.
        let state = query_value(&link, "state").unwrap();
        assert!(!state.ends_with(|c: char| c.is_ascii_digit()), "{state}");
        let back = flow
            .enedis(
                &link,
                &[
                    ("sim_auto", "accept"),
                    ("sim_prm", "30001610071843;30001610071850"),
                ],
            )
            .await;
        let (status, to, body) = flow.back(&back).await;
        assert_eq!(status, 200, "{api:?}: {body}");
        assert_eq!(to, None);
        assert!(
            body.contains("Merci, votre accord est enregistré"),
            "{body}"
        );
        assert!(body.contains("Elec Expert"), "{body}");
        assert!(
            body.contains("30001610071843") && body.contains("30001610071850"),
            "{body}"
        );
        let (_, note) = flow.notification().await;
        assert_eq!(
            note.usage_points,
            strings(&["30001610071843", "30001610071850"])
        );
        assert_eq!(note.peer_state, None);
        xmllint("authorize-notification.rng", &String::from(&note.payload()));
        assert_eq!(flow.consents().len(), 1);
    }
}

#[tokio::test]
async fn refusals_in_every_generation() {
    for api in ALL {
        let mut flow = Flow::start(Options::new(api)).await;
        // The consumer clicks "Refuser"; profile 9 refuses whatever is clicked.
        for (extra, sim) in [
            (vec![("test_client", "0")], vec![("sim_auto", "refuse")]),
            (vec![("test_client", "9")], vec![("sim_auto", "accept")]),
        ] {
            let mut extra = extra;
            extra.push(("redirect_uri", PEER_REDIRECT));
            let link = flow.link(&extra).await;
            let back = flow.enedis(&link, &sim).await;
            // Refusals come back without state.
            assert_eq!(query_value(&back, "state"), None, "{back}");
            assert_eq!(
                query_value(&back, "error").as_deref(),
                Some("access_denied")
            );
            let (status, to, body) = flow.back(&back).await;
            assert_eq!(status, 200, "{api:?}: {body}");
            assert_eq!(to, None);
            assert!(
                body.contains("Vous avez refusé l'accès à vos données"),
                "{body}"
            );
            assert!(body.contains("access_denied"), "{body}");
            assert!(body.contains("authorization_request_refused"), "{body}");
        }
        assert!(flow.consents().is_empty(), "{api:?}");
        flow.no_notification();
    }
}

#[tokio::test]
async fn portal_errors_in_every_generation() {
    for api in ALL {
        let mut flow = Flow::start(Options::new(api)).await;
        flow.sim
            .admin()
            .faults(serde_json::json!({"portal_error": true}))
            .await;
        let link = flow.link(&[("test_client", "0")]).await;
        let back = flow.enedis(&link, &[("sim_auto", "accept")]).await;
        assert_eq!(query_value(&back, "state"), None, "{back}");
        let (status, _, body) = flow.back(&back).await;
        assert_eq!(status, 502, "{api:?}: {body}");
        assert!(
            body.contains("Le site d&#39;Enedis a rencontré une erreur"),
            "{body}"
        );
        assert!(body.contains("Réessayez plus tard"), "{body}");
        assert!(body.contains("lincs-internal-server-error"), "{body}");
        assert!(flow.consents().is_empty());
        flow.no_notification();
    }
}

#[tokio::test]
async fn expired_states_store_nothing_in_every_generation() {
    let mut flows = Vec::new();
    for api in ALL {
        let mut options = Options::new(api);
        options.state_ttl = Duration::from_secs(1);
        let flow = Flow::start(options).await;
        let link = flow.link(&[("test_client", "0")]).await;
        let back = flow.enedis(&link, &[("sim_auto", "accept")]).await;
        flows.push((flow, back));
    }
    // States live 1 s here; stored instants are whole seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (mut flow, back) in flows {
        let (status, to, body) = flow.back(&back).await;
        assert_eq!(status, 400, "{:?}: {body}", flow.api);
        assert_eq!(to, None);
        assert!(body.contains("Demande expirée"), "{body}");
        assert!(flow.consents().is_empty(), "{:?}", flow.api);
        flow.no_notification();
        if flow.api.per_consent_tokens() {
            // The code was never exchanged.
            assert_eq!(
                flow.sim.admin().call_count("POST /v1/oauth2/token").await,
                0
            );
        }
    }
}

#[tokio::test]
async fn replayed_and_unknown_states_store_nothing_in_every_generation() {
    for api in ALL {
        let mut flow = Flow::start(Options::new(api)).await;
        let link = flow
            .link(&[("test_client", "0"), ("redirect_uri", PEER_REDIRECT)])
            .await;
        let back = flow.enedis(&link, &[("sim_auto", "accept")]).await;
        let (status, _, body) = flow.back(&back).await;
        assert_eq!(status, 303, "{api:?}: {body}");
        flow.notification().await;
        let token_calls = flow.sim.admin().call_count("POST /v1/oauth2/token").await;

        // The same return again, e.g. the back button or an attacker replaying it.
        let (status, to, body) = flow.back(&back).await;
        assert_eq!(status, 400, "{api:?}: {body}");
        assert_eq!(to, None);
        assert!(body.contains("Demande déjà traitée"), "{body}");
        assert_eq!(flow.consents().len(), 1, "{api:?}");
        flow.no_notification();
        assert_eq!(
            flow.sim.admin().call_count("POST /v1/oauth2/token").await,
            token_calls,
            "{api:?}: a replay must not exchange the code again"
        );

        // A state we never issued.
        let mut forged = back.clone();
        let pairs: Vec<(String, String)> = back
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" {
                    "forged0".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        forged.query_pairs_mut().clear().extend_pairs(pairs);
        let (status, _, body) = flow.back(&forged).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("Demande inconnue"), "{body}");

        // No state at all, without an error either.
        let mut stateless = back.clone();
        stateless.set_query(Some(
            "autorisation_id=1&code=x&usage_point_id=22516914714270",
        ));
        let (status, _, body) = flow.back(&stateless).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("Réponse d&#39;Enedis incomplète"), "{body}");

        assert_eq!(flow.consents().len(), 1, "{api:?}");
        flow.no_notification();
    }
}

#[tokio::test]
async fn foreign_redirect_uris_are_refused_in_every_generation() {
    for api in ALL {
        let flow = Flow::start(Options::new(api)).await;
        for foreign in [
            "https://evil.example.com/linky/",
            "https://app.example.org.evil.com/",
            "https://app.example.org.evil.com/linky/",
            "https://app.example.org:8443/linky/",
            "http://app.example.org/linky/",
            "https://app.example.org/linkyx",
            "https://app.example.org/other/",
            "https://app.example.org/linky/../admin/",
            "https://app.example.org/linky/%2e%2e/admin/",
            "https://user@app.example.org/linky/",
            "javascript:alert(1)",
        ] {
            let (status, body) = flow.open(&[("redirect_uri", foreign)]).await;
            assert_eq!(status, 400, "{api:?} {foreign}: {body}");
            assert!(
                body.contains("Adresse de retour refusée"),
                "{foreign}: {body}"
            );
            assert!(!body.contains(r#"id="enedis""#), "{foreign}: {body}");
        }
        assert_eq!(flow.store.live_oauth_states(now_seconds()).unwrap(), 0);
        // A URI under the configured one is fine.
        let (status, body) = flow
            .open(&[("redirect_uri", "https://app.example.org/linky/sub/page?x=1")])
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_script_in_the_description_never_reaches_the_page() {
    let flow = Flow::start(Options::new(ApiGeneration::Api2026)).await;
    let (_, uri) = web::register(
        &flow.store,
        &flow.base,
        PEER,
        &DescriptionInput {
            name: "Appli <b>grasse</b>".into(),
            logo_url: None,
            description: [
                r#"<p onclick="steal()">Nos experts analysent votre consommation.</p>"#,
                r#"<script>alert("xss")</script>"#,
                r#"<img src="https://evil.example/x.png" onerror="alert(1)">"#,
                r#"<p>Voir notre <a href="https://app.example.org/confidentialite">politique</a>"#,
                r#"et <a href="javascript:alert(2)">ceci</a>.</p>"#,
            ]
            .join("\n"),
        },
    )
    .unwrap();
    let (status, body) = flow.open_uri(&uri, &[]).await;
    assert_eq!(status, 200, "{body}");
    for banned in [
        "<script",
        "alert",
        "onclick",
        "onerror",
        "javascript:",
        "<img",
        "<b>",
    ] {
        assert!(!body.contains(banned), "{banned} in {body}");
    }
    assert!(
        body.contains("<p>Nos experts analysent votre consommation.</p>"),
        "{body}"
    );
    assert!(
        body.contains(r#"<a href="https://app.example.org/confidentialite" rel="noopener noreferrer nofollow">politique</a>"#),
        "{body}"
    );
    // The name is text, shown escaped.
    assert!(body.contains("Appli &lt;b&gt;grasse&lt;/b&gt;"), "{body}");
}

#[tokio::test]
async fn the_page_shows_the_peer_and_carries_security_headers() {
    let flow = Flow::start(Options::new(ApiGeneration::Api2026)).await;
    let response = flow.http.get(&flow.uri).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        body.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#)
    );
    assert!(!body.contains("<script"));
    assert!(
        body.contains(r#"<img src="https://app.example.org/logo.png""#),
        "{body}"
    );
    assert!(body.contains("Elec Expert souhaite accéder aux données de votre compteur Linky"));
    assert!(body.contains("Nos experts analysent votre consommation."));
    assert!(body.contains("votre courbe de charge"), "{body}");
    assert!(body.contains("Pendant <strong>1 an</strong>"), "{body}");
    // The link goes to the 2026 consent page of the configured Enedis.
    let link = enedis_link(&body);
    assert!(link.as_str().starts_with(&format!(
        "{}/dataconnect/v2/oauth2/authorize?",
        flow.sim.base_url()
    )));
    assert_eq!(
        query_value(&link, "client_id").as_deref(),
        Some(sim::CLIENT_ID)
    );

    // The stylesheet the page links to.
    let css = flow
        .http
        .get(format!("{}/static/consent.css", flow.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(body.contains(r#"href="static/consent.css""#));

    // An unknown id, a missing id, a repeated parameter, a peer no longer
    // configured: a page that says so.
    let (status, body) = flow
        .open_uri(&format!("{}/authorize?id=nosuchid", flow.base), &[])
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("Lien d&#39;autorisation inconnu"), "{body}");
    let (status, body) = flow
        .open_uri(&format!("{}/authorize", flow.base), &[])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("incomplet"), "{body}");
    let (status, body) = flow.open(&[("duration", "P1Y"), ("duration", "P3Y")]).await;
    assert_eq!(status, 400, "a repeated parameter: {body}");
    assert!(body.contains("apparaît plusieurs fois"), "{body}");
    flow.peers.replace(Vec::new());
    let (status, _) = flow.open(&[]).await;
    assert_eq!(status, 404);
}

/// The `<ul class="data">` of a consent page: what it says the peer will receive.
fn shared_list(body: &str) -> Vec<String> {
    let Some(start) = body.find(r#"<ul class="data">"#) else {
        return Vec::new();
    };
    let list = &body[start..];
    let list = &list[..list.find("</ul>").expect("the list ends")];
    list.split("<li>")
        .skip(1)
        .map(|item| item.trim_end_matches("</li>").to_owned())
        .collect()
}

#[tokio::test]
async fn the_page_lists_only_the_data_the_peers_scopes_let_it_receive() {
    let flow = Flow::start(Options::new(ApiGeneration::Api2026)).await;
    let every = [
        "votre consommation jour par jour",
        "votre courbe de charge (puissance moyenne toutes les 10 à 60 minutes)",
        "votre puissance maximale de chaque jour",
        "votre production jour par jour, si vous en avez",
        "votre courbe de production, si vous en avez",
        "les index de votre compteur (ses relevés), et votre consommation de chaque jour par période tarifaire (heures pleines, heures creuses, jours Tempo…)",
        "les caractéristiques de votre contrat et de votre compteur (puissance souscrite, option tarifaire, heures creuses)",
    ];
    let address = "l&#39;adresse de votre compteur";
    let with_scopes = |scopes: Scopes| PeerConfig {
        scopes,
        ..peer_config(&[PEER_REDIRECT])
    };
    let (status, body) = flow.open(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        shared_list(&body),
        every,
        "the default: every series, the indexes and the contract, not the address"
    );

    // Daily energy only: neither curve nor maximum power is promised.
    flow.peers
        .replace(vec![with_scopes(Scopes::from_iter([Scope::Daily]))]);
    let (status, body) = flow.open(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        shared_list(&body),
        [every[0], every[3]],
        "only daily energy, both ways"
    );
    assert!(!body.contains("courbe"), "{body}");
    assert!(!body.contains("puissance"), "{body}");

    let curve_and_max = Scopes::from_iter([Scope::LoadCurve, Scope::MaxPower, Scope::Identity]);
    flow.peers.replace(vec![with_scopes(curve_and_max)]);
    let (_, body) = flow.open(&[]).await;
    assert_eq!(shared_list(&body), [every[1], every[2], every[4], address]);

    // No series at all: the page says so, and still leads to Enedis.
    flow.peers.replace(vec![with_scopes(Scopes::NONE)]);
    let (status, body) = flow.open(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(shared_list(&body).is_empty(), "{body}");
    assert!(
        body.contains("Enedis ne transmettra à Elec Expert aucune donnée de vos compteurs"),
        "{body}"
    );
    assert!(body.contains(r#"id="enedis""#), "{body}");
}

#[tokio::test]
async fn test_client_exists_only_in_the_sandbox() {
    for api in ALL {
        let mut options = Options::new(api);
        options.sandbox = false;
        let flow = Flow::start(options).await;
        let (status, body) = flow.open(&[("test_client", "3")]).await;
        assert_eq!(status, 400, "{api:?}: {body}");
        assert!(body.contains("test_client"), "{body}");
        assert!(body.contains("bac à sable"), "{body}");
        assert_eq!(flow.store.live_oauth_states(now_seconds()).unwrap(), 0);
    }
    let flow = Flow::start(Options::new(ApiGeneration::Api2026)).await;
    for bad in ["12", "a", "-1"] {
        let (status, body) = flow.open(&[("test_client", bad)]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("un chiffre de 0 à 9"), "{body}");
    }
}

#[tokio::test]
async fn durations_over_three_years_or_malformed_are_refused() {
    let flow = Flow::start(Options::new(ApiGeneration::Api2026)).await;
    for bad in [
        "P4Y", "P3Y1D", "P37M", "P1200D", "PT5H", "1Y", "P-1Y", "P0D", "forever",
    ] {
        let (status, body) = flow.open(&[("duration", bad)]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("Durée invalide"), "{bad}: {body}");
        assert!(body.contains("trois ans"), "{body}");
    }
    assert_eq!(flow.store.live_oauth_states(now_seconds()).unwrap(), 0);
    let (status, body) = flow.open(&[("duration", "P3Y")]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_duration_is_honoured_in_every_generation() {
    for api in ALL {
        let mut flow = Flow::start(Options::new(api)).await;
        let today = paris_today(jiff::Timestamp::now());
        let (status, body) = flow
            .open(&[("duration", "P6M"), ("test_client", "0")])
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Pendant <strong>6 mois</strong>"), "{body}");
        let link = enedis_link(&body);
        assert_eq!(query_value(&link, "duration").as_deref(), Some("P6M"));
        let back = flow.enedis(&link, &[("sim_auto", "accept")]).await;
        let (status, _, body) = flow.back(&back).await;
        assert_eq!(status, 200, "{api:?}: {body}");
        flow.notification().await;
        let consent = flow.consents().pop().unwrap();
        let end = today.checked_add(6.months()).unwrap();
        match api {
            // 2026: from the services' dates, which Enedis derives from the duration;
            // a service runs [dateDebut, dateFin[.
            ApiGeneration::Api2026 => {
                assert_eq!(consent.valid_until, day_start(end).unwrap(), "{api:?}");
            }
            // v3–v5: the asked duration from the moment of the return.
            _ => {
                assert_eq!(paris_date(consent.valid_until).unwrap(), end, "{api:?}");
                let now = now_seconds();
                assert!(consent.valid_from <= now && consent.valid_from > now - 60);
            }
        }
    }
}

#[tokio::test]
async fn a_consent_revoked_at_once_is_not_stored_in_2026() {
    // Profile 8 consents then revokes: its services are TERMINE.
    let mut flow = Flow::start(Options::new(ApiGeneration::Api2026)).await;
    let (status, _, body) = flow.consent(&[("test_client", "8")], &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("Accès non ouvert par Enedis"), "{body}");
    assert!(body.contains("Recommencer"), "{body}");
    assert!(flow.consents().is_empty());
    flow.no_notification();
}

#[tokio::test]
async fn neither_states_nor_codes_reach_the_logs() {
    // The test runtime runs the server's tasks on this thread: they log here.
    let capture = LogCapture::default();
    let _guard = capture.install();
    let mut flow = Flow::start(Options::new(ApiGeneration::V4)).await;
    let link = flow
        .link(&[("test_client", "0"), ("state", "peer-secret-state")])
        .await;
    let state = query_value(&link, "state").unwrap();
    let back = flow.enedis(&link, &[("sim_auto", "accept")]).await;
    let code = query_value(&back, "code").unwrap();
    let (status, _, _) = flow.back(&back).await;
    assert_eq!(status, 200);
    flow.notification().await;
    flow.back(&back).await;
    let logs = capture.text();
    assert!(logs.contains("consent page served"), "{logs}");
    assert!(
        logs.contains("consent granted through the consent page"),
        "{logs}"
    );
    assert!(logs.contains(&format!("{}…", &state[..6])), "{logs}");
    assert!(
        !logs.contains(&state),
        "the full state is in the logs:\n{logs}"
    );
    assert!(!logs.contains(&code), "the code is in the logs:\n{logs}");
}

#[tokio::test]
async fn a_public_url_with_a_path_works_with_or_without_the_prefix() {
    let mut options = Options::new(ApiGeneration::V5);
    options.public_path = "/dataconnect";
    let mut flow = Flow::start(options).await;
    assert!(
        flow.uri.contains("/dataconnect/authorize?id="),
        "{}",
        flow.uri
    );
    // Through a proxy that keeps the prefix: the whole trip.
    let (status, to, body) = flow
        .consent(
            &[("test_client", "0"), ("redirect_uri", PEER_REDIRECT)],
            &[],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    assert!(to.unwrap().ends_with("usage_points=22516914714270"));
    flow.notification().await;
    let css = flow
        .http
        .get(format!("{}/static/consent.css", flow.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    // Through a proxy that strips it.
    let stripped = flow.uri.replace("/dataconnect/authorize", "/authorize");
    let (status, body) = flow.open_uri(&stripped, &[]).await;
    assert_eq!(status, 200, "{body}");
}

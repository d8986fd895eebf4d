//! Federation: the agent on one XMPP server, its peers on ANOTHER one, the two
//! federating over s2s with verified certificates (tests/common/federation.rs).
//! The agent's server is Debian's Prosody 0.12 (`agent.test`), the peers' server
//! Prosody 13 (`remote.test`, with offline storage): the REAL `quoalise-agent
//! run`, the REAL `enedis-sim`, slixmpp and Rust peers.
//!
//! - a remote peer reads a week of load curve through s2s;
//! - a remote JID outside `[[peers]]` gets `not-authorized`; the allow-list
//!   matches the remote peer's bare JID (any resource; not another user of its
//!   domain, not the same user name on the agent's domain);
//! - a consent given on the agent's pages for a remote peer reaches it as the
//!   `dataconnect#authorize` message;
//! - a subscription push made while the remote peer is offline is kept by ITS
//!   server and delivered when it logs in;
//! - Prosody 13 advertises XEP-0478 stream limits with the configured size;
//! - a year of load curve, larger than a stanza, reaches a remote peer in pages
//!   (complete, in order), and a remote peer that did not ask for pages gets the
//!   precise refusal; the agent's session stays up.

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::paging::{assert_contiguous, assert_pages_full, check_pages, read_all};
use agent_harness::*;
use common::federation::{Federation, HOME_DOMAIN, REMOTE_DOMAIN};
use common::prosody::{Prosody, ProsodyVersion};
use common::xmpp_harness::{Peer, condition, field_values, submit};
use minidom::Element;
use quoalise_agent::quoalise::decode_element;
use quoalise_agent::web::NS_AUTHORIZE;
use quoalise_agent::xmpp::{Command, NS_QUOALISE};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_xmpp::Stanza;
use xmpp_parsers::message::Message;

const POWER: &str = "consumption/power/active/raw";
const DAILY: &str = "consumption/energy/active/daily";
/// The remote peer of every test.
const APP: &str = "app@remote.test";

fn identifier(prm: &str, series: &str) -> String {
    format!("urn:dev:prm:{prm}_{series}")
}

/// The remote peer `APP` granted [`PRM`], and the agent on the other server.
async fn deploy() -> Federated {
    Federated::start(AgentSettings::with_peers(vec![peer_at(APP, &[PRM])])).await
}

/// A Rust peer logged in as `jid` on the remote server, talking to the agent.
async fn remote_peer(f: &Federated, jid: &str) -> Peer {
    Peer::login(&f.remote, jid).await.to(f.agent_jid())
}

async fn run(
    peer: &Peer,
    node: &str,
    fields: &[(&str, &str)],
) -> Result<Command, (String, String)> {
    peer.command(Command::execute(node, Some(submit(fields))))
        .await
        .map_err(|e| condition(&e))
}

/// The next `<message>` with a child `name` in `ns`.
async fn next_message(
    inbound: &mut mpsc::Receiver<Stanza>,
    name: &str,
    ns: &str,
    within: Duration,
) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stanza = tokio::time::timeout_at(deadline, inbound.recv())
            .await
            .ok()??;
        if let Stanza::Message(message) = stanza
            && message.payloads.iter().any(|p| p.is(name, ns))
        {
            return Some(message);
        }
    }
}

/// get_history of the last 7 days of load curve as slixmpp `jid` on the remote
/// server (the Quoalise client's exact iq).
async fn week_of_load_curve(f: &Federated, jid: &str) -> Value {
    let first = today().checked_sub(jiff::ToSpan::days(7)).unwrap();
    f.python(
        jid,
        "history",
        &[
            &identifier(PRM, POWER),
            &midnight(first),
            &midnight(today()),
        ],
    )
    .await
}

#[track_caller]
fn assert_not_authorized(answer: &Value) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["condition"], "not-authorized", "{answer}");
    assert_eq!(answer["etype"], "auth", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_peer_reads_a_week_of_load_curve_through_s2s() {
    let f = deploy().await;
    let answer = week_of_load_curve(&f, "app@remote.test/client").await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(answer["status"], "completed", "{answer}");
    let id = identifier(PRM, POWER);
    let data = &answer["data"][0];
    assert_eq!(data["meta"]["device"]["identifier"]["value"], PRM);
    assert_eq!(data["meta"]["measurement"]["sampling-interval"], "PT30M");

    // Every half-hour of the 7 Paris days (336 unless a DST change is among
    // them), from the first midnight, each with a value in W.
    let first = today().checked_sub(jiff::ToSpan::days(7)).unwrap();
    let hours = (midnight_seconds(today()) - midnight_seconds(first)) / 3600;
    let records = data["records"].as_array().expect("records");
    assert_eq!(records.len() as i64, hours * 2, "{hours} hours");
    let times: Vec<i64> = records
        .iter()
        .map(|r| r["time"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(times[0], midnight_seconds(first));
    assert!(times.windows(2).all(|w| w[1] - w[0] == 1800));
    for r in records {
        assert_eq!(r["name"], id);
        assert_eq!(r["unit"], "W");
        assert!(r["value"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    }

    // The agent saw the request come from the remote full JID, through its server.
    assert!(
        f.d.agent
            .wait_log("peer=app@remote.test/client", Duration::from_secs(5))
            .await
    );
    // Federation went through TLS with the test CA (SASL EXTERNAL), not dialback.
    let log = f.d.prosody.log();
    assert!(
        log.contains("Outgoing s2s connection agent.test->remote.test complete"),
        "{log}"
    );
    assert!(
        log.contains("certificate chain validation result: valid"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_jid_outside_the_peers_is_not_authorized() {
    let f = deploy().await;
    f.remote
        .register("mallory", common::xmpp_harness::PASSWORD)
        .await;
    let answer = week_of_load_curve(&f, "mallory@remote.test/x").await;
    assert_not_authorized(&answer);
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or_default()
            .contains("not a peer"),
        "{answer}"
    );
    let commands = f.python("mallory@remote.test/x", "commands", &[]).await;
    assert_eq!(commands["commands"], json!([]), "{commands}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_matches_the_remote_peers_bare_jid() {
    let f = deploy().await;
    let id = identifier(PRM, DAILY);
    let yesterday = today().yesterday().unwrap();
    let window = [
        ("identifier", id.as_str()),
        ("start_time", &midnight(yesterday)),
        ("end_time", &midnight(today())),
    ];

    // Any resource of app@remote.test is served, letter case of the JID aside.
    for jid in ["app@remote.test/phone", "APP@Remote.Test/laptop"] {
        let app = remote_peer(&f, jid).await;
        let answer = run(&app, "get_history", &window)
            .await
            .unwrap_or_else(|e| panic!("{jid}: {e:?}"));
        let quoalise = answer
            .payloads
            .iter()
            .find(|p| p.is("quoalise", NS_QUOALISE))
            .unwrap_or_else(|| panic!("{jid}: no Quoalise payload"));
        let series = decode_element(quoalise).unwrap()[0]
            .to_time_series()
            .unwrap();
        assert_eq!(series.identifier.to_string(), id);
        assert_eq!(series.readings.len(), 1, "{jid}");
        app.running.stop().await;
    }

    // Another user of the same remote domain is not.
    f.remote
        .register("eve", common::xmpp_harness::PASSWORD)
        .await;
    let eve = remote_peer(&f, "eve@remote.test/phone").await;
    let (condition, text) = run(&eve, "get_history", &window).await.unwrap_err();
    assert_eq!(condition, "not-authorized", "{text}");

    // Nor is the same user name on the agent's own server.
    f.d.prosody
        .register("app", common::xmpp_harness::PASSWORD)
        .await;
    let local = Peer::login(&f.d.prosody, &format!("app@{HOME_DOMAIN}/phone"))
        .await
        .to(f.agent_jid());
    let (condition, text) = run(&local, "get_history", &window).await.unwrap_err();
    assert_eq!(condition, "not-authorized", "{text}");
}

/// Undo the escapes of the agent's pages in an attribute.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_given_for_a_remote_peer_reaches_it_through_s2s() {
    let f = Federated::start(AgentSettings::with_peers(vec![peer_at(APP, &[])])).await;
    // The simulated Enedis sends consumers back to the agent's pages.
    let web = format!("http://127.0.0.1:{}", f.d.files.web_port);
    f.d.sim
        .admin()
        .config(json!({ "redirect_uri": format!("{web}/redirect") }))
        .await;

    // The peer describes itself and gets its consent page's address.
    let mut app = remote_peer(&f, "app@remote.test/web").await;
    let answer = run(
        &app,
        "get_authorize_uri",
        &[
            ("name", "Elec Expert"),
            (
                "description",
                "<p>Nos experts analysent votre consommation.</p>",
            ),
        ],
    )
    .await
    .unwrap();
    let uri = field_values(&answer.form.expect("a result form"), "authorize_uri")
        .pop()
        .expect("authorize_uri");
    assert!(uri.starts_with(&format!("{web}/authorize?id=")), "{uri}");

    // The consumer, without a browser: the page, its link to Enedis, consent.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut page = url::Url::parse(&uri).unwrap();
    page.query_pairs_mut().append_pair("state", "remote-42");
    let html = http.get(page).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Elec Expert"), "{html}");
    let marker = r#"id="enedis" href=""#;
    let start = html.find(marker).unwrap_or_else(|| panic!("{html}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    let mut enedis = url::Url::parse(&unescape(&html[start..end])).unwrap();
    enedis
        .query_pairs_mut()
        .append_pair("sim_auto", "accept")
        .append_pair("sim_prm", PRM);
    let response = http.get(enedis).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let back = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&format!("{web}/redirect?")), "{back}");
    let response = http.get(&back).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );

    // The notice crossed to the peer's server.
    let message = next_message(&mut app.inbound, "x", NS_AUTHORIZE, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no consent notice:\n{}", f.d.agent.log()));
    assert_eq!(
        message.from.as_ref().map(|j| j.to_string()),
        Some(f.agent_jid().to_string())
    );
    let x = message
        .payloads
        .iter()
        .find(|p| p.is("x", NS_AUTHORIZE))
        .unwrap();
    let texts = |name: &str| -> Vec<String> {
        x.children()
            .filter(|c| c.is(name, NS_AUTHORIZE))
            .map(Element::text)
            .collect()
    };
    assert_eq!(texts("usage-point"), [PRM]);
    assert_eq!(texts("state"), ["remote-42"]);

    // And the consent is the peer's: it now reads the PRM.
    let answer = run(&app, "list_usage_points", &[]).await.unwrap();
    let form = answer.form.unwrap();
    assert!(
        form.fields
            .iter()
            .any(|field| field.var.as_deref() == Some(PRM)),
        "{form:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_an_offline_remote_peer_is_kept_by_its_server() {
    let f = deploy().await;
    let app = remote_peer(&f, "app@remote.test/laptop").await;
    // Enedis answers slowly: the peer is gone before its first push is sent.
    f.d.sim.admin().faults(json!({ "latency_ms": 2000 })).await;
    let id = identifier(PRM, DAILY);
    run(&app, "subscribe", &[("identifier", &id)])
        .await
        .unwrap();
    app.running.stop().await;
    assert!(
        f.d.agent
            .wait_log("subscription round through=", Duration::from_secs(30))
            .await,
        "the push was made"
    );
    f.d.sim.admin().clear_faults().await;

    // The remote server stored it (mod_offline), the peer still away.
    let stored = f.remote.data_path().join("remote%2etest/offline/app.list");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !stored.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the remote server stored no offline message:\n{}",
            f.remote.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut app = remote_peer(&f, "app@remote.test/laptop").await;
    let message = next_message(
        &mut app.inbound,
        "quoalise",
        NS_QUOALISE,
        Duration::from_secs(15),
    )
    .await
    .expect("the stored push is delivered at login");
    assert_eq!(
        message.from.as_ref().map(|j| j.to_string()),
        Some(f.agent_jid().to_string())
    );
    let delay = message
        .payloads
        .iter()
        .find(|p| p.is("delay", "urn:xmpp:delay"))
        .unwrap_or_else(|| panic!("not from offline storage: {:?}", message.payloads));
    assert_eq!(delay.attr("from"), Some(REMOTE_DOMAIN), "{delay:?}");
    let quoalise = message
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .unwrap();
    let series = decode_element(quoalise).unwrap()[0]
        .to_time_series()
        .unwrap();
    assert_eq!(series.identifier.to_string(), id);
    assert_eq!(series.readings.len(), 1);
}

/// The stream features a server sends a new c2s stream (before STARTTLS).
async fn stream_features(server: &Prosody) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.server())
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "<?xml version='1.0'?><stream:stream to='{}' version='1.0' \
                 xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
                server.domain()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !text.contains("</stream:features>") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the server closed the stream: {text}");
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no stream features within 5 s: {text}"));
    text
}

#[tokio::test]
async fn prosody_13_advertises_its_stanza_size_limit() {
    let mut remote = Federation::remote_options();
    remote.extra_config = "c2s_stanza_size_limit = 123456\n".to_owned();
    let federation = Federation::start_with(Federation::home_options(), remote).await;
    assert_eq!(federation.remote.version(), ProsodyVersion::V13);

    let features = stream_features(&federation.remote).await;
    let limits = features
        .find("<limits xmlns='urn:xmpp:stream-limits:0'>")
        .map(|at| &features[at..])
        .unwrap_or_else(|| panic!("no XEP-0478 limits: {features}"));
    assert!(
        limits.contains("<max-bytes>123456</max-bytes>"),
        "{features}"
    );

    // Debian's 0.12 on the other side does not advertise them.
    let features = stream_features(&federation.home).await;
    assert!(features.contains("<starttls"), "{features}");
    assert!(!features.contains("stream-limits"), "{features}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_reaches_a_remote_peer_in_pages_and_is_refused_without() {
    let f = deploy().await;
    let id = identifier(PRM, POWER);
    // Twelve months of Paris days (2025-12-01 to 2026-12-01 in December 2026).
    let (from, to) = last_full_year();
    let (start, end) = (midnight(from), midnight(to));

    // The Quoalise client, which does not ask for pages: refused, precisely.
    let answer = f
        .python("app@remote.test/client", "history", &[&id, &start, &end])
        .await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(
        (&answer["condition"], &answer["etype"]),
        (&json!("not-acceptable"), &json!("modify")),
        "{answer}"
    );
    let error: Element = answer["xml"].as_str().unwrap().parse().unwrap();
    let too_large = error
        .children()
        .find(|c| c.is("answer-too-large", NS_QUOALISE))
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(
        too_large.attr("records"),
        Some(half_hours(from, to).to_string().as_str())
    );
    assert_eq!(too_large.attr("max-bytes"), Some("262144"));
    assert_eq!(too_large.attr("step"), Some("PT30M"));
    let max_days = too_large.attr("max-days").unwrap();
    assert!(
        answer["text"].as_str().unwrap().contains(&format!(
            "ask for at most {max_days} days of 30-minute load curve per request"
        )),
        "{answer}"
    );

    // A peer that asks for pages gets every half-hour, in order.
    let app = remote_peer(&f, "app@remote.test/pages").await;
    let fields = [
        ("identifier", id.as_str()),
        ("start_time", &start),
        ("end_time", &end),
    ];
    let mut pages = read_all(&app, "get_history", &fields).await;
    let readings = check_pages(&mut pages, &id.parse().unwrap());
    assert!(pages.len() >= 2, "{} pages", pages.len());
    assert_contiguous(
        &readings,
        midnight_seconds(from),
        midnight_seconds(to),
        1800,
    );
    assert_pages_full(&pages, 262_144, 24);
    f.d.agent.assert_session_untouched();
}

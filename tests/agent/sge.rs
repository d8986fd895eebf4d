//! Enedis SGE as a second upstream, end to end: the REAL agent (`quoalise-agent
//! run`) with `[sge]`, a real Prosody, and the REAL `enedis-sim` serving both
//! Data Connect and SGE (SOAP over mutual TLS, the agent presenting the
//! simulator's test client certificate). The operator declares consents with the
//! real command line (`consents add --upstream sge`); the slixmpp peer plays the
//! Quoalise client (`get_history`), Rust peers run the other commands:
//!
//! - a C4 meter's 5-minute curve over a week, stamped at each interval's start in
//!   UTC, agrees with its daily energy (the integral), and is one SOAP call;
//! - a C5 meter's 30-minute curve on the October DST day: 50 half hours, each
//!   stamped once, 30 minutes apart, starting at the Paris midnight;
//! - SGE's own series (corrected, reactive) are served for a C4 meter, refused by
//!   SGE for a C5 one with `<upstream-error issuer="enedis-sge-tiers"
//!   code="SGT4H2"/>`, and refused before any call for a Data Connect PRM;
//! - `list_usage_points` says which platform reads each PRM, `get_contract` reads
//!   SGE's technical data, the audit trail records the declared consent as the
//!   basis, and a revoked declaration refuses the next request, saying how the
//!   operator declares one;
//! - a load curve collected with `consents add --collect load-curve` is stopped at
//!   Enedis by the running agent once its consent has expired (the housekeeping
//!   pass, which runs as the agent starts, then every minute);
//! - an agent configured with `[sge]` and no `[enedis]` starts and is healthy
//!   without Data Connect, serves a declared C4 meter through SGE, and refuses
//!   what would need Data Connect (a granted PRM without a declaration,
//!   `get_authorize_uri`, `subscribe`, the consent pages, the CLI's Data Connect
//!   consents) saying that it reads no Data Connect.

use crate::common;
use crate::common::agent_harness;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, field_values, submit};
use enedis_sim::sge::meters::{C4_PRM, C5_PRM};
use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::quoalise::NS_QUOALISE;
use quoalise_agent::quoalise::contract::Contract;
use quoalise_agent::store::{AuditFilter, Store};
use quoalise_agent::xmpp::{Command, Status};
use serde_json::Value;
use xmpp_parsers::disco::{DiscoItemsQuery, DiscoItemsResult};

/// What an agent without `[enedis]` says of everything Data Connect would do.
const NO_DATA_CONNECT: &str =
    "this agent reads no Enedis Data Connect: its configuration has no [enedis] section";

/// Runs `quoalise-agent --config … consents ARGS` against the deployment's store:
/// (exit code, stdout, stderr).
fn consents(d: &Deployment, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(d.files.path())
        .arg("consents")
        .args(args)
        .output()
        .expect("run quoalise-agent consents");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Declares a consent for `prm`, owned by `owner`, and returns its id.
fn declare(d: &Deployment, owner: &str, prm: &str) -> i64 {
    let (code, out, err) = consents(
        d,
        &[
            "add",
            "--upstream",
            "sge",
            "--owner",
            owner,
            "--prm",
            prm,
            "--mandate",
            "MANDAT-2026-0042",
            "--company",
            "Énergie partagée du Val",
            "--duration",
            "P1Y",
        ],
    );
    assert_eq!(code, 0, "consents add failed:\n{out}\n{err}");
    out.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no consent id in {out:?}"))
}

fn identifier(prm: &str, series: &str) -> String {
    format!("urn:dev:prm:{prm}_{series}")
}

async fn history(d: &Deployment, prm: &str, series: &str, from: Date, to: Date) -> Value {
    d.python(
        "alice@localhost/client",
        "history",
        &[&identifier(prm, series), &midnight(from), &midnight(to)],
    )
    .await
}

/// (time, value) of every record of the answer's one `<data>`.
fn records(answer: &Value) -> Vec<(i64, f64)> {
    assert_eq!(answer["type"], "result", "{answer}");
    answer["data"][0]["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {answer}"))
        .iter()
        .map(|r| {
            (
                r["time"].as_f64().unwrap() as i64,
                r["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// How many SOAP calls the simulator answered on its SGE paths.
async fn sge_calls(d: &Deployment) -> usize {
    d.sim
        .admin()
        .requests()
        .await
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/ConsultationMesuresDetaillees"))
        })
        .count()
}

fn sge_settings() -> AgentSettings {
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[]), peer("bob", &[PRM])]);
    settings.sge = true;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_c4_meter_is_read_through_sge_at_its_own_step() {
    let d = Deployment::start(sge_settings()).await;
    let consent = declare(&d, "alice@localhost", C4_PRM);

    // A week ending three days ago: away from today's DST-free check below.
    let to = today().checked_sub(3.days()).unwrap();
    let from = to.checked_sub(7.days()).unwrap();
    let before = sge_calls(&d).await;
    let answer = history(&d, C4_PRM, "consumption/power/active/raw", from, to).await;
    assert_eq!(
        sge_calls(&d).await - before,
        1,
        "a week of curve is one SOAP call"
    );
    let curve = records(&answer);
    let expected_points = (midnight_seconds(to) - midnight_seconds(from)) / 300;
    assert_eq!(curve.len() as i64, expected_points, "PT5M over the week");
    assert_eq!(curve[0].0, midnight_seconds(from), "stamped at the start");
    assert!(curve.windows(2).all(|w| w[1].0 - w[0].0 == 300));
    let measurement = &answer["data"][0]["meta"]["measurement"];
    assert_eq!(measurement["unit"], "W", "{measurement}");
    assert!(curve.iter().all(|(_, v)| *v > 0.0 && v.fract() == 0.0));

    // The day's energy from SGE's ENERGIE is the integral of that day's curve.
    let energy = records(&history(&d, C4_PRM, "consumption/energy/active/daily", from, to).await);
    assert_eq!(energy.len(), 7);
    for (start, wh) in &energy {
        let next = start + 86_400 + 3600 * 2; // the next Paris midnight is within 2 h of +24 h
        let day_end = energy
            .iter()
            .map(|(t, _)| *t)
            .find(|t| t > start)
            .unwrap_or(midnight_seconds(to))
            .min(next);
        let integral: f64 = curve
            .iter()
            .filter(|(t, _)| t >= start && *t < day_end)
            .map(|(_, w)| w * 5.0 / 60.0)
            .sum();
        assert!(
            (integral - wh).abs() <= 1.0,
            "day starting {start}: energy {wh} Wh, curve integral {integral} Wh"
        );
    }

    // SGE's own series: the corrected curve and the reactive power, in VAr.
    let corrected = history(&d, C4_PRM, "consumption/power/active/corrected", from, to).await;
    let measurement = &corrected["data"][0]["meta"]["measurement"];
    assert_eq!(measurement["corrected"], "true", "{measurement}");
    assert_eq!(records(&corrected).len(), curve.len());
    let reactive = history(&d, C4_PRM, "consumption/power/inductive/raw", from, to).await;
    assert_eq!(records(&reactive).len(), curve.len());
    let measurement = &reactive["data"][0]["meta"]["measurement"];
    assert_eq!(measurement["unit"], "VAr", "{measurement}");
    assert_eq!(measurement["name"], "inductive-power", "{measurement}");

    // The audit trail: every access allowed on the declared consent.
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let rows = store.audit(&AuditFilter::default()).unwrap();
    let sge_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.prm.as_deref() == Some(C4_PRM))
        .collect();
    assert_eq!(sge_rows.len(), 4, "{rows:?}");
    for row in sge_rows {
        assert_eq!(row.outcome, "allowed", "{row:?}");
        assert_eq!(row.consent_id, Some(consent), "{row:?}");
        assert!(!row.via_grant, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c5_meter_through_sge_dst_day_refusals_listing_contract_and_revocation() {
    let d = Deployment::start(sge_settings()).await;
    let consent = declare(&d, "alice@localhost", C5_PRM);

    // The October DST day: 25 hours, 50 half hours stamped once each, in UTC,
    // from the Paris midnight (SGE stamps a C5 curve at each interval's end, in
    // local time without offset, the repeated hour twice).
    let dst = last_dst_day(25);
    let curve = records(
        &history(
            &d,
            C5_PRM,
            "consumption/power/active/raw",
            dst,
            dst.tomorrow().unwrap(),
        )
        .await,
    );
    assert_eq!(curve.len(), 50, "{curve:?}");
    assert_eq!(curve[0].0, midnight_seconds(dst));
    assert!(
        curve.windows(2).all(|w| w[1].0 - w[0].0 == 1800),
        "{curve:?}"
    );

    // SGE has no corrected data for a C5: its refusal, with its own code.
    let day = today().checked_sub(3.days()).unwrap();
    let refused = history(
        &d,
        C5_PRM,
        "consumption/power/active/corrected",
        day,
        day.tomorrow().unwrap(),
    )
    .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["upstream"]["issuer"], "enedis-sge-tiers",
        "{refused}"
    );
    assert_eq!(refused["upstream"]["code"], "SGT4H2", "{refused}");

    // SGE's series on a Data Connect PRM (bob's grant): refused before any
    // call, saying why.
    d.sim.admin().clear_calls().await;
    let dc = d
        .python(
            "bob@localhost/client",
            "history",
            &[
                &identifier(PRM, "consumption/power/active/corrected"),
                &midnight(day),
                &midnight(day.tomorrow().unwrap()),
            ],
        )
        .await;
    assert_eq!(dc["type"], "error", "{dc}");
    assert_eq!(dc["condition"], "bad-request", "{dc}");
    let text = dc["text"].as_str().unwrap_or_default();
    assert!(text.contains("Enedis SGE only"), "{text}");
    assert_eq!(
        d.sim.admin().total_calls().await,
        0,
        "nothing asked of Enedis"
    );

    // list_usage_points: the PRM, read through SGE, with the declaration.
    let alice = Peer::login(&d.prosody, "alice@localhost/gajim").await;
    let list = alice
        .command(Command::execute("list_usage_points", None))
        .await
        .unwrap();
    let form = list.form.expect("a result form");
    let lines = field_values(&form, C5_PRM);
    assert!(
        lines.iter().any(|l| l
            == &format!(
                "access: consent {consent} (declared to Enedis SGE, mandate MANDAT-2026-0042)"
            )),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "read through: Enedis SGE"),
        "{lines:?}"
    );

    // get_contract: SGE's technical and contractual data.
    let answer = alice
        .command(Command::execute(
            "get_contract",
            Some(submit(&[("usage_point_id", C5_PRM)])),
        ))
        .await
        .unwrap_or_else(|e| panic!("{:?}", condition(&e)));
    assert_eq!(answer.status, Some(Status::Completed));
    let element = answer
        .payloads
        .iter()
        .find(|p| p.is("contract", NS_QUOALISE))
        .expect("a <contract/> payload");
    let contract = Contract::from_element(element).unwrap();
    assert_eq!(contract.prm.as_str(), C5_PRM);
    assert_eq!(contract.segments, ["C5"], "{contract:?}");
    assert!(contract.subscribed_power.is_some(), "{contract:?}");

    // Revoked: the next request is refused, saying how a consent is declared.
    let (code, out, err) = consents(&d, &["revoke", &consent.to_string()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let refused = alice
        .command(Command::execute(
            "get_contract",
            Some(submit(&[("usage_point_id", C5_PRM)])),
        ))
        .await
        .expect_err("revoked");
    let (condition, text) = condition(&refused);
    assert_eq!(condition, "not-authorized", "{text}");
    assert!(
        text.contains("revoked") && text.contains("--upstream sge"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stops_the_collection_of_a_consent_that_expired() {
    let mut d = Deployment::start(sge_settings()).await;
    let until = today().checked_add(1.year()).unwrap().to_string();
    let (code, out, err) = consents(
        &d,
        &[
            "add",
            "--upstream",
            "sge",
            "--owner",
            "alice@localhost",
            "--prm",
            C4_PRM,
            "--mandate",
            "MANDAT-2026-0042",
            "--company",
            "Énergie partagée du Val",
            "--until",
            &until,
            "--collect",
            "load-curve",
        ],
    );
    assert_eq!(code, 0, "consents add failed:\n{out}\n{err}");
    let services = d.sim.admin().sge_services().await;
    let service = services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["pointId"] == C4_PRM))
        .unwrap_or_else(|| panic!("no service for {C4_PRM}: {services}"))
        .clone();
    assert_eq!(service["typeDonnees"], "CDC", "{service}");
    assert_eq!(service["dateFin"], until.as_str(), "{service}");
    assert_eq!(service["titulaire"], "Énergie partagée du Val", "{service}");
    assert!(service["dateArret"].is_null(), "{service}");
    let id = service["serviceSouscritId"].as_str().unwrap().to_owned();

    // The consent expires (as the store marks it past its validity); the agent's
    // housekeeping runs as it starts.
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let consent = store.list_consents().unwrap()[0].id;
    store
        .set_consent_state(consent, quoalise_agent::store::ConsentState::Expired)
        .unwrap();
    d.agent.restart().await;
    assert!(
        d.agent
            .wait_log(
                "SGE access service of an ended consent stopped",
                std::time::Duration::from_secs(60)
            )
            .await,
        "{}",
        d.agent.log()
    );
    let log = d.agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("SGE access service of an ended consent stopped"))
        .unwrap();
    assert!(line.contains(&id) && line.contains("INFO"), "{line}");
    let services = d.sim.admin().sge_services().await;
    let stopped = services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["serviceSouscritId"] == id.as_str()))
        .unwrap();
    assert!(stopped["dateArret"].is_string(), "{stopped}");
    let recorded = store.access_service(&id).unwrap().unwrap();
    assert!(recorded.stopped_at.is_some(), "{recorded:?}");
}

/// The command nodes `disco#items` lists to `peer`, in the agent's order.
async fn commands_seen(peer: &Peer) -> Vec<String> {
    let query = DiscoItemsQuery {
        node: Some("http://jabber.org/protocol/commands".to_owned()),
        rsm: None,
    };
    let answer = peer
        .get(query.into())
        .await
        .expect("disco#items answered")
        .expect("a disco#items payload");
    DiscoItemsResult::try_from(answer)
        .expect("a disco#items result")
        .items
        .into_iter()
        .map(|item| item.node.expect("a command node"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sge_only_agent_reads_declared_meters_and_says_it_reads_no_data_connect() {
    // bob's grant is a PRM nothing declares to SGE: Data Connect's, elsewhere.
    let settings = AgentSettings {
        data_connect: false,
        ..sge_settings()
    };
    let d = Deployment::start(settings).await;
    let written = std::fs::read_to_string(d.files.path()).unwrap();
    assert!(
        !written.contains("[enedis]") && written.contains("[sge]"),
        "{written}"
    );
    let (status, body) = d.agent.healthz().await.expect("/healthz answers");
    assert_eq!(status, 200, "{body}");
    let log = d.agent.log();
    assert!(
        log.contains("no [enedis] section") && !log.contains("Enedis client ready"),
        "no Data Connect client is built:\n{log}"
    );

    // A declared C4 meter: a day of its 5-minute curve, through SGE.
    declare(&d, "alice@localhost", C4_PRM);
    let day = today().checked_sub(3.days()).unwrap();
    let before = sge_calls(&d).await;
    let curve = records(
        &history(
            &d,
            C4_PRM,
            "consumption/power/active/raw",
            day,
            day.tomorrow().unwrap(),
        )
        .await,
    );
    assert_eq!(sge_calls(&d).await - before, 1, "one SOAP call");
    let points = (midnight_seconds(day.tomorrow().unwrap()) - midnight_seconds(day)) / 300;
    assert_eq!(curve.len() as i64, points, "PT5M over the day");
    assert_eq!(curve[0].0, midnight_seconds(day), "stamped at the start");

    // bob's granted PRM has no declared consent: refused at once, nothing asked
    // of Enedis, the text saying why (feature-not-implemented: waiting will not
    // change it).
    d.sim.admin().clear_calls().await;
    let refused = d
        .python(
            "bob@localhost/client",
            "history",
            &[
                &identifier(PRM, "consumption/power/active/raw"),
                &midnight(day),
                &midnight(day.tomorrow().unwrap()),
            ],
        )
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["condition"], "feature-not-implemented", "{refused}");
    let text = refused["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(NO_DATA_CONNECT) && text.contains(PRM),
        "{text}"
    );
    assert_eq!(
        d.sim.admin().total_calls().await,
        0,
        "nothing asked of Enedis"
    );

    // Nor can bob subscribe to it: no daily push could ever be read.
    let bob = Peer::login(&d.prosody, "bob@localhost/gajim").await;
    let refused = bob
        .command(Command::execute(
            "subscribe",
            Some(submit(&[(
                "identifier",
                &identifier(PRM, "consumption/energy/active/daily"),
            )])),
        ))
        .await
        .expect_err("no Data Connect to push from");
    let (why, text) = condition(&refused);
    assert_eq!(why, "feature-not-implemented", "{text}");
    assert!(text.contains(NO_DATA_CONNECT), "{text}");

    // get_authorize_uri: not listed, and refused when run anyway.
    let alice = Peer::login(&d.prosody, "alice@localhost/gajim").await;
    let seen = commands_seen(&alice).await;
    assert!(seen.iter().any(|n| n == "get_history"), "{seen:?}");
    assert!(!seen.iter().any(|n| n == "get_authorize_uri"), "{seen:?}");
    let refused = alice
        .command(Command::execute(
            "get_authorize_uri",
            Some(submit(&[("name", "Elec Expert")])),
        ))
        .await
        .expect_err("no consent flow");
    let (condition, text) = condition(&refused);
    assert_eq!(condition, "feature-not-implemented", "{text}");
    assert!(text.contains(NO_DATA_CONNECT), "{text}");

    // The consent pages: a page saying so, not a failure.
    let page = reqwest::get(format!(
        "http://127.0.0.1:{}/authorize?id=anything",
        d.agent.web_port
    ))
    .await
    .expect("GET /authorize");
    assert_eq!(page.status().as_u16(), 404);
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("Enedis SGE") && html.contains(NO_DATA_CONNECT),
        "{html}"
    );

    // The command line: Data Connect consents refused, SGE ones work (above).
    let (code, out, err) = consents(
        &d,
        &[
            "add",
            "--owner",
            "bob@localhost",
            "--prm",
            PRM,
            "--duration",
            "P1Y",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(NO_DATA_CONNECT) && err.contains("--upstream sge"),
        "{err}"
    );
    let description = d.files.dir.join("description.html");
    std::fs::write(&description, "<p>Nous.</p>").unwrap();
    let out = std::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(d.files.path())
        .args(["authorize-url", "--peer", "bob@localhost", "--name", "Elec"])
        .arg("--description-file")
        .arg(&description)
        .output()
        .expect("run quoalise-agent authorize-url");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(NO_DATA_CONNECT), "{err}");
}

/// The sizes people read a professional meter at: a year and two years of a
/// 10-minute C1 curve (52,560 and 105,120 values, more than a stanza holds),
/// through SGE, followed page by page by `quoalise-agent query`: every value, at
/// one call per 7 days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_and_two_years_of_a_ten_minute_meter_through_sge() {
    let mut settings = sge_settings();
    settings.request_timeout_secs = 300;
    settings.quota_wait_secs = 200;
    let d = Deployment::start(settings).await;
    let c1 = enedis_sim::sge::meters::C1_PRM;
    declare(&d, "alice@localhost", c1);
    let id = identifier(c1, "consumption/power/active/raw");
    for years in [1, 2] {
        // Two years back is exactly SGE's 24 months of curve.
        let to = today();
        let from = to.checked_sub((365 * years).days()).unwrap();
        let before = sge_calls(&d).await;
        let (code, out, err) = d
            .query(
                "alice",
                &[
                    "get-history",
                    &id,
                    "--start",
                    &midnight(from),
                    "--end",
                    &midnight(to),
                    "--format",
                    "csv",
                ],
            )
            .await;
        assert_eq!(code, 0, "{years} year(s): {err}");
        let points = (midnight_seconds(to) - midnight_seconds(from)) / 600;
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(lines.len() as i64, points, "{years} year(s): {err}");
        let first = jiff::Timestamp::from_second(midnight_seconds(from)).unwrap();
        assert!(lines[0].starts_with(&format!("{first},")), "{}", lines[0]);
        let days = (to - from).get_days() as usize;
        assert_eq!(
            sge_calls(&d).await - before,
            days.div_ceil(7),
            "{years} year(s)"
        );
    }
}

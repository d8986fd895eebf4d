//! `get_contract` end to end: the REAL agent (`quoalise-agent run`) on a real
//! Prosody and the REAL `enedis-sim`, asked by Rust peers and by the `query`
//! command line: the form Gajim and Psi users get, the payload and the flat
//! result form, `comptage_auto`'s 403 `900908` named and noted, the v5 address,
//! a peer without access refused, v3/v4 answered `feature-not-implemented`,
//! every access in the audit trail, and the second request served from the
//! cache without a call to Enedis (the simulator's own call log); and the
//! slixmpp peer (tests/interop/quoalise_peer.py `contract`) playing the Quoalise
//! client: the payload, read in Python, says what the simulator serves, and a
//! peer without the `contract` scope sees `<missing-scope scope="contract"/>`.

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, field_values, submit};
use quoalise_agent::quoalise::contract::{Coded, Contract};
use quoalise_agent::quoalise::{Direction, NS_QUOALISE};
use quoalise_agent::store::{AuditFilter, Store};
use quoalise_agent::xmpp::{Command, NoteType, Status};
use serde_json::{Value, json};

/// The simulator's self-consumer (profile 6): a consumption and an injection
/// contract on one PRM.
const SELF_CONSUMER: &str = "12655648759651";

fn get_contract(prm: &str) -> Command {
    Command::execute("get_contract", Some(submit(&[("usage_point_id", prm)])))
}

/// The `<contract/>` payload of an answer.
fn payload(answer: &Command) -> Contract {
    assert_eq!(answer.status, Some(Status::Completed));
    let element = answer
        .payloads
        .iter()
        .find(|p| p.is("contract", NS_QUOALISE))
        .unwrap_or_else(|| panic!("no <contract/> in {:?}", answer.payloads));
    Contract::from_element(element).unwrap()
}

fn single(answer: &Command, var: &str) -> Option<String> {
    field_values(answer.form.as_ref().expect("a result form"), var)
        .first()
        .cloned()
}

/// The audit rows of `get_contract`, oldest first.
fn contract_rows(d: &Deployment) -> Vec<quoalise_agent::store::AuditRecord> {
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    store
        .audit(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.command == "get_contract")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorised_prm_gets_its_contract_then_from_the_cache_and_others_are_refused() {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("bob", &[]),
    ]))
    .await;
    let alice = Peer::login(&d.prosody, "alice@localhost/gajim").await;
    let bob = Peer::login(&d.prosody, "bob@localhost/b").await;

    // Gajim or Psi: an empty execute gets the form, with alice's PRM as default.
    let form = alice
        .command(Command::execute("get_contract", None))
        .await
        .unwrap();
    assert_eq!(form.status, Some(Status::Executing));
    let form = form.form.expect("a form to fill");
    assert_eq!(field_values(&form, "usage_point_id"), [PRM]);

    d.sim.admin().clear_calls().await;
    let started = std::time::Instant::now();
    let answer = alice.command(get_contract(PRM)).await.unwrap();
    let cold = started.elapsed();
    let c = payload(&answer);
    assert_eq!(c.prm.as_str(), PRM);
    assert_eq!(c.generation, "2026");
    assert_eq!(c.segments, ["C5"]);
    let power = c.subscribed_power.clone().expect("a subscribed power");
    assert_eq!(power.unit, "kVA");
    assert!(c.tariff_option.as_ref().is_some_and(|t| t.label.is_some()));
    assert!(c.activation(Some(Direction::Consumption)).is_some());
    assert_eq!(
        (&c.meter_type, &c.off_peak_hours, &c.address),
        (&None, &None, &None)
    );
    // comptage_auto is not subscribed (403 900908): named in the payload, noted,
    // and in the result form.
    assert_eq!(c.unavailable.len(), 1);
    assert_eq!(c.unavailable[0].code.as_deref(), Some("900908"));
    assert_eq!(answer.notes.len(), 1, "{:?}", answer.notes);
    assert_eq!(answer.notes[0].type_, Some(NoteType::Warn));
    assert!(
        answer.notes[0].text.contains("comptage_auto/v1"),
        "{:?}",
        answer.notes
    );
    assert!(
        answer.notes[0].text.contains("900908"),
        "{:?}",
        answer.notes
    );
    // The same data, flat, for people.
    assert_eq!(
        single(&answer, "subscribed_power"),
        Some(format!("{} kVA", power.value))
    );
    assert_eq!(single(&answer, "segment").as_deref(), Some("C5"));
    assert_eq!(
        single(&answer, "tariff_option"),
        c.tariff_option.as_ref().map(Coded::text)
    );
    assert!(single(&answer, "unavailable").is_some_and(|u| u.contains("900908")));
    assert_eq!(single(&answer, "off_peak_hours"), None);

    let admin = d.sim.admin();
    for api in [
        "situation_contrat_auto",
        "synth_contrat_auto",
        "comptage_auto",
    ] {
        assert_eq!(
            admin.call_count(&format!("GET /{api}/v1/{PRM}")).await,
            1,
            "{api}"
        );
    }
    let cold_calls = admin.total_calls().await;

    // Again: from the agent's cache, not a single call to Enedis.
    admin.clear_calls().await;
    let started = std::time::Instant::now();
    let again = alice.command(get_contract(PRM)).await.unwrap();
    let warm = started.elapsed();
    assert_eq!(payload(&again), c);
    assert_eq!(admin.total_calls().await, 0);
    println!(
        "get_contract through the agent: {cold:?} cold ({cold_calls} calls), {warm:?} from its cache"
    );

    // Bob may read no PRM: refused, nothing asked upstream.
    let (cond, text) = condition(&bob.command(get_contract(PRM)).await.unwrap_err());
    assert_eq!(cond, "not-authorized");
    assert!(text.contains("is not granted to bob@localhost"), "{text}");
    let (cond, text) = condition(
        &alice
            .command(get_contract("2251691471427"))
            .await
            .unwrap_err(),
    );
    assert_eq!(cond, "bad-request");
    assert!(text.contains("usage_point_id"), "{text}");
    assert_eq!(admin.total_calls().await, 0);

    // Every access on record, as `contract`.
    let rows = contract_rows(&d);
    /// peer, outcome, series, error, via grant, upstream calls
    type Row<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        bool,
        u32,
    );
    let seen: Vec<Row> = rows
        .iter()
        .map(|r| {
            (
                r.peer.as_str(),
                r.outcome.as_str(),
                r.series.as_deref(),
                r.error.as_deref(),
                r.via_grant,
                r.upstream_calls,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "alice@localhost",
                "allowed",
                Some("contract"),
                None,
                true,
                cold_calls as u32
            ),
            (
                "alice@localhost",
                "allowed",
                Some("contract"),
                None,
                true,
                0
            ),
            (
                "bob@localhost",
                "refused",
                Some("contract"),
                Some("not-authorized"),
                false,
                0
            ),
        ]
    );
    assert!(rows.iter().all(|r| r.prm.as_deref() == Some(PRM)));
    assert!(
        rows.iter()
            .all(|r| r.range_start.is_none() && r.range_end.is_none())
    );

    // One log line per request.
    assert!(
        d.agent
            .wait_log(
                "command=get_contract prm=22516914714270",
                Duration::from_secs(5)
            )
            .await
    );
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains(r#"quoalise_agent_requests_total{command="get_contract",outcome="ok"} 2"#),
        "{metrics}"
    );
}

/// `2024-10-12` of the simulator's `2024-10-12T00:00:00+0200`.
fn itc_day(raw: &Value) -> Value {
    json!(&raw.as_str().unwrap_or_else(|| panic!("not a date: {raw}"))[..10])
}

#[tokio::test]
async fn the_slixmpp_peer_reads_the_contract_the_simulator_serves_and_a_peer_without_the_scope_is_refused()
 {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM, SELF_CONSUMER]),
        peer("dan", &[PRM]).scopes(&["daily"]),
    ]))
    .await;
    let token = d.sim.app_token().await;
    for prm in [PRM, SELF_CONSUMER] {
        // What the simulator serves the agent's application, first-hand.
        let get = |api: &str| {
            let path = format!("/{api}/v1/{prm}");
            let (sim, token) = (&d.sim, &token);
            async move { sim.get_json(token, &path).await }
        };
        let (status, situation) = get("situation_contrat_auto").await;
        assert_eq!(status, 200, "{situation}");
        let (status, synthese) = get("synth_contrat_auto").await;
        assert_eq!(status, 200, "{synthese}");
        let (status, comptage) = get("comptage_auto").await;
        assert_eq!(status, 403, "{comptage}");

        // The Quoalise client's get_contract, its payload read in Python.
        let answer = d.python("alice@localhost/client", "contract", &[prm]).await;
        assert_eq!(answer["type"], "result", "{prm}: {answer}");
        assert_eq!(answer["status"], "completed", "{answer}");
        let c = &answer["contract"];
        assert!(c.is_object(), "{prm}: no <contract> payload in {answer}");
        assert_eq!(c["prm"], prm);
        assert_eq!(c["generation"], "2026");

        // One segment per contract, as the synthesis lists them.
        let contracts = situation.as_array().expect("a list of contracts");
        let segments: Vec<&Value> = synthese["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["segment"])
            .collect();
        assert_eq!(
            segments,
            contracts.iter().map(|c| &c["segment"]).collect::<Vec<_>>()
        );
        assert_eq!(c["segments"], json!(segments), "{prm}");
        // The subscribed power and tariff of the (one) consumption contract.
        let consumption: Vec<&Value> = contracts
            .iter()
            .filter(|c| c.get("subscribed_power").is_some())
            .collect();
        assert_eq!(consumption.len(), 1, "{situation}");
        let power = &consumption[0]["subscribed_power"];
        assert_eq!(
            c["subscribed_power"],
            json!({"value": power["value"], "unit": power["unit"]}),
            "{prm}"
        );
        assert_eq!(c["subscribed_power"]["unit"], "kVA");
        assert_eq!(
            c["tariff_option"],
            json!({"code": null, "label": consumption[0]["distribution_tariff"]})
        );
        assert_eq!(
            c["contract_start"],
            itc_day(&consumption[0]["contract_start"])
        );
        assert_eq!(
            c["services_level"],
            json!({"code": null, "label": synthese["services_level"]})
        );
        let mut activations = Vec::new();
        for direction in ["consumption", "generation"] {
            if let Some(date) = synthese.get(format!("{direction}_last_activation_date")) {
                let direction = if direction == "generation" {
                    "production"
                } else {
                    direction
                };
                activations.push(json!({"date": itc_day(date), "direction": direction}));
            }
        }
        assert!(!activations.is_empty());
        assert_eq!(c["activations"], json!(activations), "{prm}");
        // comptage_auto's refusal: its fields left out, and named with Enedis' code.
        assert_eq!(c["meter_type"], Value::Null);
        assert_eq!(c["off_peak_hours"], Value::Null);
        let unavailable = c["unavailable"].as_array().unwrap();
        assert_eq!(unavailable.len(), 1, "{prm}: {unavailable:?}");
        assert_eq!(unavailable[0]["source"], "comptage_auto/v1");
        assert_eq!(unavailable[0]["code"], comptage["code"]);
        assert_eq!(unavailable[0]["code"], "900908");
        assert_eq!(
            unavailable[0]["fields"],
            json!(["meter-type", "off-peak-hours"])
        );
        assert!(
            unavailable[0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("not subscribed")),
            "{unavailable:?}"
        );
        // No address with API 2026, though situation_contrat_auto has the customer's.
        assert_eq!(c["address"], Value::Null);
        let notes = answer["notes"].as_array().unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0]["type"], "warn");
        assert!(notes[0]["text"].as_str().unwrap().contains("900908"));
    }

    // Without the contract scope: not listed, and refused, naming the scope,
    // before any call to Enedis.
    let commands = d.python("dan@localhost/client", "commands", &[]).await;
    let commands = commands["commands"].as_array().expect("the commands");
    assert!(commands.contains(&json!("get_daily")), "{commands:?}");
    assert!(!commands.contains(&json!("get_contract")), "{commands:?}");
    d.sim.admin().clear_calls().await;
    let answer = d.python("dan@localhost/client", "contract", &[PRM]).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["condition"], "not-authorized", "{answer}");
    assert_eq!(answer["missing_scope"], "contract", "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .is_some_and(|t| t.contains("this peer's scopes do not include contract")),
        "{answer}"
    );
    assert_eq!(d.sim.admin().total_calls().await, 0);
    let rows = contract_rows(&d);
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome == "refused")
        .map(|r| {
            (
                r.peer.as_str(),
                r.prm.as_deref(),
                r.series.as_deref(),
                r.error_code.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [(
            "dan@localhost",
            Some(PRM),
            Some("contract"),
            Some("scope:contract")
        )]
    );
}

#[tokio::test]
async fn with_api_v5_the_contract_comes_with_the_meters_address() {
    let everything = [
        "load_curve",
        "daily",
        "max_power",
        "index",
        "contract",
        "identity",
    ];
    let d = Deployment::start(AgentSettings {
        api: "v5",
        ..AgentSettings::with_peers(vec![
            peer("alice", &[PRM]).scopes(&everything),
            // The default scopes: everything but identity.
            peer("bob", &[PRM]),
            peer("carol", &[PRM]).scopes(&["daily"]),
        ])
    })
    .await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    d.sim.admin().clear_calls().await;
    let answer = alice.command(get_contract(PRM)).await.unwrap();
    let c = payload(&answer);
    assert_eq!(c.generation, "v5");
    assert_eq!(c.meter_type, Some(Coded::code("AMM")));
    assert_eq!(c.services_level, Some(Coded::code("com")));
    let hours = c.off_peak_hours.as_ref().expect("off-peak hours");
    assert_eq!(
        hours.ranges.iter().map(|r| r.text()).collect::<Vec<_>>(),
        ["22:00-06:00"]
    );
    let address = c.address.as_ref().expect("the address");
    assert!(address.street.is_some() && address.postal_code.is_some());
    assert!(c.unavailable.is_empty());
    assert!(answer.notes.is_empty());
    assert_eq!(
        single(&answer, "off_peak_ranges").as_deref(),
        Some("22:00-06:00")
    );
    assert_eq!(single(&answer, "address_city"), address.city);
    let admin = d.sim.admin();
    assert_eq!(
        admin
            .call_count("GET /customers_upc/v5/usage_points/contracts")
            .await,
        1
    );
    assert_eq!(
        admin
            .call_count("GET /customers_upa/v5/usage_points/addresses")
            .await,
        1
    );
    assert_eq!(admin.call_count("GET /customers_i/v5/identity").await, 0);

    // Without identity in its scopes, a peer gets the contract without the address
    // (even from the cache that holds it), and is told why.
    let bob = Peer::login(&d.prosody, "bob@localhost/b").await;
    let answer = bob.command(get_contract(PRM)).await.unwrap();
    let c = payload(&answer);
    assert_eq!(c.meter_type, Some(Coded::code("AMM")));
    assert!(c.address.is_none(), "{:?}", c.address);
    assert_eq!(c.unavailable.len(), 1, "{:?}", c.unavailable);
    assert_eq!(c.unavailable[0].fields, ["address"]);
    assert!(c.unavailable[0].reason.contains("identity"));
    assert_eq!(single(&answer, "address_city"), None);

    // Without contract, the command is not even listed, and refused when run.
    let carol = Peer::login(&d.prosody, "carol@localhost/c").await;
    let e = carol.command(get_contract(PRM)).await.unwrap_err();
    let (cond, text) = condition(&e);
    assert_eq!(cond, "not-authorized", "{text}");
    assert!(
        text.contains("this peer's scopes do not include contract"),
        "{text}"
    );
    let refused = e
        .other
        .as_ref()
        .filter(|c| c.is("missing-scope", NS_QUOALISE))
        .and_then(|c| c.attr("scope"));
    assert_eq!(refused, Some("contract"));
}

#[tokio::test]
async fn v3_and_v4_answer_feature_not_implemented_on_record() {
    for api in ["v3", "v4"] {
        let d = Deployment::start(AgentSettings {
            api,
            ..AgentSettings::with_peers(vec![peer("alice", &[PRM])])
        })
        .await;
        let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
        d.sim.admin().clear_calls().await;
        let error = alice.command(get_contract(PRM)).await.unwrap_err();
        let (cond, text) = condition(&error);
        assert_eq!(cond, "feature-not-implemented", "{api}: {text}");
        assert_eq!(
            error.type_,
            xmpp_parsers::stanza_error::ErrorType::Cancel,
            "{api}"
        );
        assert!(
            text.contains("2026") && text.contains("v5") && text.contains(&format!("API {api}")),
            "{api}: {text}"
        );
        assert_eq!(d.sim.admin().total_calls().await, 0, "{api}");
        let rows = contract_rows(&d);
        assert_eq!(rows.len(), 1, "{api}");
        assert_eq!(
            (rows[0].outcome.as_str(), rows[0].error.as_deref()),
            ("allowed", Some("feature-not-implemented")),
            "{api}"
        );
    }
}

#[tokio::test]
async fn the_query_command_line_prints_a_contract() {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("bob", &[]),
    ]))
    .await;
    let (code, out, err) = d.query("alice", &["get-contract", PRM]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "Contract of PRM {PRM} (Enedis API 2026, read from Enedis at "
        )),
        "{out}"
    );
    assert!(out.contains("\nsegment: C5\n"), "{out}");
    assert!(out.contains("\nsubscribed power: "), "{out}");
    assert!(out.contains(" kVA\n"), "{out}");
    assert!(out.contains("\nlast activation (consumption): "), "{out}");
    assert!(
        out.contains("not available: meter-type, off-peak-hours: ")
            && out.contains("(Enedis 900908)"),
        "{out}"
    );
    assert!(
        err.contains("note from the agent: not available: meter-type, off-peak-hours"),
        "{err}"
    );

    let (code, xml, _) = d
        .query("alice", &["get-contract", PRM, "--format", "xml"])
        .await;
    assert_eq!(code, 0);
    let element: minidom::Element = xml.trim().parse().expect("the payload parses");
    let c = Contract::from_element(&element).unwrap();
    assert_eq!(c.prm.as_str(), PRM);
    assert!(xml.contains("\n  <segment>C5</segment>"), "indented: {xml}");

    let (code, out, err) = d.query("bob", &["get-contract", PRM]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("the agent answered not-authorized: "), "{err}");
}

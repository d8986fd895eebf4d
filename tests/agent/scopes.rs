//! Data scopes (`[[peers]] scopes`) through the REAL agent (`quoalise-agent run`,
//! real Prosody, real `enedis-sim`, Rust peers):
//!
//! - a matrix of peers × scopes × commands (the load curve, daily energy and
//!   maximum power, the whole meter's index and a class's, `get_contract`), over a
//!   PRM granted by the configuration and a PRM of a consent each peer owns: what
//!   the scopes allow
//!   comes back as data, the rest is `not-authorized` with
//!   `<missing-scope scope=…/>` and a text naming the scope, and every request is
//!   on record in the audit trail, refusals with the code `scope:<name>`;
//! - disco (`disco#items` on the commands node, `disco#info` on a node) shows a
//!   peer only the commands it may use, a hidden command is refused when run
//!   anyway, and `list_usage_points` states the scopes and lists only their series;
//! - a SIGHUP narrowing the scopes applies at once: to the next request, to the
//!   next page of an answer in pages, and to the subscription pushes (the
//!   subscription ends); an unknown scope name is rejected and the old scopes stay.

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::paging::{action, paged_request, request_page};
use agent_harness::*;
use common::xmpp_harness::{Peer, condition, field_values, submit};
use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::contract::Contract;
use quoalise_agent::quoalise::{Direction, Identifier, Scope, Scopes, Series, decode_element};
use quoalise_agent::store::{AuditFilter, AuditRecord, NewConsent, Store};
use quoalise_agent::xmpp::{Action, Command, IqError, NS_QUOALISE, Status};
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoItemsQuery, DiscoItemsResult};
use xmpp_parsers::stanza_error::StanzaError;

const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// The PRM of the consents the peers own (the configuration grants them [`PRM`]).
const CONSENTED: &str = PRM_PROFILE_1;

fn day(offset: i64) -> Date {
    today().checked_add(offset.days()).unwrap()
}

/// A consent of `owner` for `prm` (Enedis' autorisation `id`), valid a day,
/// written in the agent's store.
fn add_consent(store: &Store, owner: &str, prm: &str, id: i64) -> i64 {
    let now = jiff::Timestamp::now().as_second();
    store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: owner.into(),
                prms: vec![prm.parse().unwrap()],
                autorisation_id: Some(id),
                valid_from: now - 60,
                valid_until: now + 86_400,
            },
            None,
        )
        .unwrap()
        .id
}

/// One data request of the matrix.
#[derive(Debug, Clone, Copy)]
enum Ask {
    /// `get_history` of a consumption series.
    History(Series),
    /// `get_load_curve`, consumption.
    LoadCurve,
    /// `get_daily`, consumption.
    Daily,
    /// `get_contract`.
    Contract,
}

impl Ask {
    /// Every command of the matrix, and every scope of a peer but identity.
    fn all() -> Vec<Ask> {
        vec![
            Ask::History(Series::ConsumptionPower),
            Ask::History(Series::ConsumptionEnergyDaily),
            Ask::History(Series::ConsumptionMaxPower),
            Ask::LoadCurve,
            Ask::Daily,
            // The whole meter's index, and the counter of one class of the
            // distributor's four-class calendar (every simulated consumer's).
            Ask::History(Series::EnergyIndex(Direction::Consumption)),
            Ask::History(
                "consumption/energy/active/index/distributor/hph"
                    .parse()
                    .unwrap(),
            ),
            Ask::Contract,
        ]
    }

    fn node(self) -> &'static str {
        match self {
            Ask::History(_) => "get_history",
            Ask::LoadCurve => "get_load_curve",
            Ask::Daily => "get_daily",
            Ask::Contract => "get_contract",
        }
    }

    /// The series of the request; `None` for the contract.
    fn series(self) -> Option<Series> {
        match self {
            Ask::History(series) => Some(series),
            Ask::LoadCurve => Some(Series::ConsumptionPower),
            Ask::Daily => Some(Series::ConsumptionEnergyDaily),
            Ask::Contract => None,
        }
    }

    /// What the audit trail writes in its `series` column.
    fn audited_series(self) -> String {
        self.series()
            .map_or_else(|| "contract".to_owned(), |s| s.name().into_owned())
    }

    /// The scope the request needs, as docs/agent.md (Scopes) tells it, written
    /// here rather than asked of the agent's own [`Scope::of`].
    fn scope(self) -> Scope {
        match self.series() {
            None => Scope::Contract,
            Some(
                Series::ConsumptionPower
                | Series::ProductionPower
                | Series::CorrectedPower(_)
                | Series::ReactivePower(_),
            ) => Scope::LoadCurve,
            Some(Series::ConsumptionEnergyDaily | Series::ProductionEnergyDaily) => Scope::Daily,
            Some(Series::ConsumptionMaxPower) => Scope::MaxPower,
            Some(
                Series::EnergyIndex(_) | Series::ClassIndex(..) | Series::ClassEnergyDaily(..),
            ) => Scope::Index,
        }
    }

    /// The request for the Paris day before yesterday of `prm`.
    fn command(self, prm: &str) -> Command {
        let (from, to) = (day(-3), day(-2));
        let fields = match self {
            Ask::History(series) => vec![
                ("identifier", format!("urn:dev:prm:{prm}_{series}")),
                ("start_time", midnight(from)),
                ("end_time", midnight(to)),
            ],
            Ask::LoadCurve | Ask::Daily => vec![
                ("usage_point_id", prm.to_owned()),
                ("direction", "consumption".to_owned()),
                ("start_date", from.to_string()),
                ("end_date", to.to_string()),
            ],
            Ask::Contract => vec![("usage_point_id", prm.to_owned())],
        };
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Command::execute(self.node(), Some(submit(&fields)))
    }
}

/// The scope a refusal's `<missing-scope/>` names.
fn missing_scope(error: &StanzaError) -> Option<String> {
    error
        .other
        .as_ref()
        .filter(|e| e.is("missing-scope", NS_QUOALISE))
        .and_then(|e| e.attr("scope"))
        .map(str::to_owned)
}

/// Asserts `error` is the refusal of data of `scope`.
#[track_caller]
fn assert_out_of_scope(error: &StanzaError, scope: Scope) {
    let (cond, text) = condition(error);
    assert_eq!(cond, "not-authorized", "{text}");
    assert_eq!(
        missing_scope(error).as_deref(),
        Some(scope.as_str()),
        "{text}"
    );
    assert!(
        text.contains(&format!("this peer's scopes do not include {scope}")),
        "{text}"
    );
    assert!(text.contains("[[peers]]"), "how to get it: {text}");
}

/// The error `command` gets; panics (without the answer, which may be large)
/// when it is served.
async fn refusal_of(peer: &Peer, command: Command, why: &str) -> StanzaError {
    match peer.command(command).await {
        Ok(_) => panic!("served: {why}"),
        Err(error) => error,
    }
}

/// The series of a data answer's Quoalise payload.
fn answered(answer: &Command) -> quoalise_agent::quoalise::TimeSeries {
    let payload = answer
        .payloads
        .iter()
        .find(|p| p.is("quoalise", NS_QUOALISE))
        .unwrap_or_else(|| panic!("no Quoalise payload in {answer:?}"));
    let data = decode_element(payload).expect("the payload decodes");
    data[0].to_time_series().expect("a time series")
}

/// What the audit trail should hold for one request: peer, command, PRM,
/// series, outcome, basis (consent id, or the grant), code.
type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
    bool,
    Option<String>,
);

/// A refusal as the audit trail holds it: peer, command, PRM, series, code.
type RefusedRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn row_of(r: &AuditRecord) -> Row {
    (
        r.peer.clone(),
        r.command.clone(),
        r.prm.clone(),
        r.series.clone(),
        r.outcome.clone(),
        r.consent_id,
        r.via_grant,
        r.error_code.clone(),
    )
}

/// The nodes of `disco#items` on the commands node, in the agent's order.
async fn commands_seen(peer: &Peer) -> Vec<String> {
    let query = DiscoItemsQuery {
        node: Some(COMMANDS.to_owned()),
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

/// The condition of `disco#info` on `node`, or "result".
async fn info_on(peer: &Peer, node: &str) -> String {
    let query = DiscoInfoQuery {
        node: Some(node.to_owned()),
    };
    match peer.get(query.into()).await {
        Ok(_) => "result".to_owned(),
        Err(IqError::Error(e)) => condition(&e).0,
        Err(other) => panic!("no answer to disco#info on {node}: {other}"),
    }
}

fn scopes_of(names: Option<&[&str]>) -> Scopes {
    match names {
        None => Scopes::default_for_peers(),
        Some(names) => names
            .iter()
            .map(|n| Scope::parse(n).expect("a scope"))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_gets_the_series_of_its_scopes_from_grants_and_consents_alike() {
    // Four peers, four sets of scopes, each granted PRM and owning a consent
    // for CONSENTED.
    let matrix: [(&str, Option<&[&str]>); 4] = [
        ("alice", None),
        ("dan", Some(&["daily"])),
        ("carl", Some(&["load_curve", "max_power", "contract"])),
        ("ivy", Some(&["index"])),
    ];
    let peers = matrix
        .iter()
        .map(|(user, scopes)| match scopes {
            None => peer(user, &[PRM]),
            Some(scopes) => peer(user, &[PRM]).scopes(scopes),
        })
        .collect();
    let d = Deployment::start(AgentSettings::with_peers(peers)).await;
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();

    let mut expected: Vec<Row> = Vec::new();
    let mut served = 0;
    for (i, (user, scopes)) in matrix.into_iter().enumerate() {
        let jid = format!("{user}@localhost");
        let consent = add_consent(&store, &jid, CONSENTED, 500 + i as i64);
        let scopes = scopes_of(scopes);
        let client = Peer::login(&d.prosody, &format!("{jid}/matrix")).await;
        for prm in [PRM, CONSENTED] {
            for ask in Ask::all() {
                let scope = ask.scope();
                let result = client.command(ask.command(prm)).await;
                let case = format!("{user} {} {prm} {}", ask.node(), ask.audited_series());
                let (outcome, basis, code) = if scopes.contains(scope) {
                    let answer =
                        result.unwrap_or_else(|e| panic!("{case}: refused {:?}", condition(&e)));
                    if let Some(series) = ask.series() {
                        let data = answered(&answer);
                        assert_eq!(
                            data.identifier,
                            Identifier::new(prm.parse().unwrap(), series),
                            "{case}"
                        );
                        assert!(!data.readings.is_empty(), "{case}: no readings");
                    } else {
                        let contract = answer
                            .payloads
                            .iter()
                            .find(|p| p.is("contract", NS_QUOALISE))
                            .unwrap_or_else(|| panic!("{case}: no <contract/>"));
                        let contract = Contract::from_element(contract).expect("a contract");
                        assert_eq!(contract.prm.as_str(), prm, "{case}");
                        assert!(contract.subscribed_power.is_some(), "{case}");
                    }
                    served += 1;
                    let basis = if prm == PRM {
                        (None, true)
                    } else {
                        (Some(consent), false)
                    };
                    ("allowed", basis, None)
                } else {
                    let Err(error) = result else {
                        panic!("{case}: served, outside the scopes");
                    };
                    assert_out_of_scope(&error, scope);
                    ("refused", (None, false), Some(format!("scope:{scope}")))
                };
                expected.push((
                    jid.clone(),
                    ask.node().to_owned(),
                    Some(prm.to_owned()),
                    Some(ask.audited_series()),
                    outcome.to_owned(),
                    basis.0,
                    basis.1,
                    code,
                ));
            }
        }
    }
    // alice: all 2 × 8; dan: 2 × 2 daily; carl: 2 × 4 load curve, max power and
    // contract; ivy: 2 × 2 indexes.
    assert_eq!(served, 16 + 4 + 8 + 4);

    // Every request on record, in order, refusals with the scope as their code.
    let rows = store.audit(&AuditFilter::default()).unwrap();
    let recorded: Vec<Row> = rows.iter().map(row_of).collect();
    assert_eq!(recorded, expected);
    for r in rows.iter().filter(|r| r.outcome == "refused") {
        assert_eq!(r.error.as_deref(), Some("not-authorized"), "{r:?}");
        let scope = r
            .error_code
            .as_deref()
            .unwrap()
            .trim_start_matches("scope:");
        assert!(
            r.detail
                .as_deref()
                .is_some_and(|d| d.contains(&format!("do not include {scope}"))),
            "{r:?}"
        );
    }
    // Refused before Enedis: the refusals cost no upstream call.
    assert!(
        rows.iter()
            .filter(|r| r.outcome == "refused")
            .all(|r| r.upstream_calls == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disco_and_list_usage_points_show_each_peer_what_its_scopes_allow() {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("dan", &[PRM]).scopes(&["daily"]),
        peer("carl", &[PRM]).scopes(&["load_curve", "max_power"]),
        peer("nora", &[PRM]).scopes(&[]),
        peer("ida", &[PRM]).scopes(&["contract", "identity"]),
    ]))
    .await;
    let login = |user: &str| {
        let jid = format!("{user}@localhost/disco");
        let prosody = &d.prosody;
        async move { Peer::login(prosody, &jid).await }
    };
    let (alice, dan, carl, nora, ida) = (
        login("alice").await,
        login("dan").await,
        login("carl").await,
        login("nora").await,
        login("ida").await,
    );
    let all = [
        "get_history",
        "get_load_curve",
        "get_daily",
        "list_usage_points",
        "get_contract",
        "get_authorize_uri",
        "subscribe",
        "unsubscribe",
    ];
    let seen = |nodes: &[&str]| -> Vec<String> {
        all.iter()
            .filter(|n| nodes.contains(n))
            .map(|n| (*n).to_owned())
            .collect()
    };
    assert_eq!(commands_seen(&alice).await, seen(&all));
    assert_eq!(
        commands_seen(&dan).await,
        seen(&[
            "get_history",
            "get_daily",
            "list_usage_points",
            "get_authorize_uri",
            "subscribe",
            "unsubscribe"
        ])
    );
    assert_eq!(
        commands_seen(&carl).await,
        seen(&[
            "get_history",
            "get_load_curve",
            "list_usage_points",
            "get_authorize_uri",
            "subscribe",
            "unsubscribe"
        ])
    );
    // No series at all: what does not serve data.
    let no_data = seen(&["list_usage_points", "get_authorize_uri", "unsubscribe"]);
    assert_eq!(commands_seen(&nora).await, no_data);
    // Contract data only: its command, and nothing that serves readings.
    assert_eq!(
        commands_seen(&ida).await,
        seen(&[
            "list_usage_points",
            "get_contract",
            "get_authorize_uri",
            "unsubscribe"
        ])
    );
    assert_eq!(info_on(&dan, "get_contract").await, "item-not-found");
    assert_eq!(info_on(&ida, "get_contract").await, "result");
    // disco#info on a node: only for those who see it.
    assert_eq!(info_on(&dan, "get_daily").await, "result");
    assert_eq!(info_on(&dan, "get_load_curve").await, "item-not-found");
    assert_eq!(info_on(&nora, "get_history").await, "item-not-found");

    // A hidden command run anyway: refused, naming the scope, whatever the flow.
    let error = refusal_of(
        &dan,
        Ask::LoadCurve.command(PRM),
        "get_load_curve is hidden from dan",
    )
    .await;
    assert_out_of_scope(&error, Scope::LoadCurve);
    let error = refusal_of(
        &dan,
        Command::execute("get_load_curve", None),
        "not even its form",
    )
    .await;
    assert_out_of_scope(&error, Scope::LoadCurve);
    assert!(
        condition(&error)
            .1
            .contains("get_load_curve serves load_curve data")
    );
    let error = refusal_of(
        &nora,
        Command::execute("get_history", None),
        "get_history is hidden from nora",
    )
    .await;
    let (cond, text) = condition(&error);
    assert_eq!(cond, "not-authorized");
    assert_eq!(missing_scope(&error), None, "several scopes would do");
    assert!(
        text.contains(
            "get_history serves load_curve, daily, max_power data: this peer's scopes include \
             none of them (it has none)"
        ),
        "{text}"
    );
    let id = format!("urn:dev:prm:{PRM}_consumption/energy/active/daily");
    let error = refusal_of(
        &ida,
        Command::execute("subscribe", Some(submit(&[("identifier", &id)]))),
        "subscribe is hidden from ida",
    )
    .await;
    assert_out_of_scope(&error, Scope::Daily);
    assert!(
        condition(&error)
            .1
            .contains("(they are: contract, identity)")
    );
    // What needs no data scope still works.
    for peer in [&nora, &ida] {
        peer.command(Command::execute("list_usage_points", None))
            .await
            .expect("list_usage_points needs no scope");
        peer.command(Command::execute(
            "unsubscribe",
            Some(submit(&[("identifier", &id)])),
        ))
        .await
        .expect("unsubscribe needs no scope");
    }
    let authorize = nora
        .command(Command::execute(
            "get_authorize_uri",
            Some(submit(&[("name", "Nora's app")])),
        ))
        .await
        .expect("get_authorize_uri needs no scope");
    // The consent page of each peer tells consumers what that peer will get.
    let page = |answer: Command| async move {
        let uri = field_values(answer.form.as_ref().unwrap(), "authorize_uri")[0].clone();
        let response = reqwest::get(&uri).await.expect("the consent page");
        assert_eq!(response.status(), 200, "{uri}");
        response.text().await.unwrap()
    };
    let body = page(authorize).await;
    assert!(
        body.contains("Enedis ne transmettra à Nora&#39;s app aucune donnée"),
        "{body}"
    );
    let authorize = dan
        .command(Command::execute(
            "get_authorize_uri",
            Some(submit(&[("name", "Dan's app")])),
        ))
        .await
        .expect("get_authorize_uri");
    let body = page(authorize).await;
    assert!(body.contains("votre consommation jour par jour"), "{body}");
    assert!(!body.contains("courbe"), "{body}");
    assert!(!body.contains("puissance maximale"), "{body}");

    // list_usage_points: the scopes, and only their series.
    let list = |peer: &'static str| {
        let client = match peer {
            "alice" => &alice,
            "dan" => &dan,
            "carl" => &carl,
            _ => &nora,
        };
        async move {
            client
                .command(Command::execute("list_usage_points", None))
                .await
                .expect("list_usage_points")
                .form
                .expect("a result form")
        }
    };
    let form = list("alice").await;
    assert_eq!(
        field_values(&form, "scopes"),
        ["load_curve", "daily", "max_power", "index", "contract"]
    );
    assert_eq!(
        field_values(&form, PRM)[0],
        "series: consumption/power/active/raw, production/power/active/raw, \
         consumption/energy/active/daily, production/energy/active/daily, \
         consumption/power/apparent/max, consumption/energy/active/index, \
         production/energy/active/index, \
         consumption/energy/active/index/{distributor|provider}/<class>, \
         production/energy/active/index/{distributor|provider}/<class>, \
         consumption/energy/active/daily/{distributor|provider}/<class>, \
         production/energy/active/daily/{distributor|provider}/<class>"
    );
    let form = list("dan").await;
    assert_eq!(field_values(&form, "usage_points"), [PRM]);
    assert_eq!(field_values(&form, "scopes"), ["daily"]);
    let lines = field_values(&form, PRM);
    assert_eq!(
        lines[0],
        "series: consumption/energy/active/daily, production/energy/active/daily"
    );
    assert_eq!(lines[1], "access: granted by the agent's configuration");
    let form = list("carl").await;
    assert_eq!(field_values(&form, "scopes"), ["load_curve", "max_power"]);
    assert_eq!(
        field_values(&form, PRM)[0],
        "series: consumption/power/active/raw, production/power/active/raw, \
         consumption/power/apparent/max"
    );
    let form = list("nora").await;
    assert_eq!(field_values(&form, "usage_points"), [PRM]);
    assert!(field_values(&form, "scopes").is_empty());
    assert_eq!(field_values(&form, PRM)[0], "series:");

    // The refusals of hidden commands are on record, with what they named.
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let refused: Vec<RefusedRow> = store
        .audit(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.outcome, "refused", "{r:?}");
            assert_eq!(r.error.as_deref(), Some("not-authorized"), "{r:?}");
            (r.peer, r.command, r.prm, r.series, r.error_code)
        })
        .collect();
    let row = |peer: &str, command: &str, prm: Option<&str>, series: Option<&str>, code| {
        (
            format!("{peer}@localhost"),
            command.to_owned(),
            prm.map(str::to_owned),
            series.map(str::to_owned),
            code,
        )
    };
    assert_eq!(
        refused,
        [
            row(
                "dan",
                "get_load_curve",
                Some(PRM),
                Some("consumption/power/active/raw"),
                Some("scope:load_curve".to_owned())
            ),
            row(
                "dan",
                "get_load_curve",
                None,
                None,
                Some("scope:load_curve".to_owned())
            ),
            row("nora", "get_history", None, None, None),
            row(
                "ida",
                "subscribe",
                Some(PRM),
                Some("consumption/energy/active/daily"),
                Some("scope:daily".to_owned())
            ),
        ]
    );
}

/// Rewrites the configuration with `settings`, sends SIGHUP and waits for the
/// agent's verdict: whether it applied the file.
async fn reload(d: &Deployment, settings: &AgentSettings) -> bool {
    let applied = d.agent.count("configuration reloaded");
    let rejected = d.agent.count("reload rejected");
    d.rewrite(settings);
    d.agent.signal("-HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if d.agent.count("configuration reloaded") > applied {
            return true;
        }
        if d.agent.count("reload rejected") > rejected {
            return false;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload within 10 s:\n{}",
            d.agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The series of the next message carrying a Quoalise payload, if one comes
/// within `within`.
async fn next_push(peer: &mut Peer, within: Duration) -> Option<Series> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stanza = tokio::time::timeout_at(deadline, peer.inbound.recv())
            .await
            .ok()??;
        let Stanza::Message(message) = stanza else {
            continue;
        };
        if let Some(payload) = message
            .payloads
            .iter()
            .find(|p| p.is("quoalise", NS_QUOALISE))
        {
            let data = decode_element(payload).expect("the push decodes");
            return Some(data[0].to_time_series().unwrap().identifier.series);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_narrowing_the_scopes_applies_to_the_next_request_page_and_push() {
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[PRM])]);
    // Small stanzas: a fortnight of half-hours comes in several pages.
    settings.max_stanza_bytes = Some(10_000);
    let d = Deployment::start(settings.clone()).await;
    let mut alice = Peer::login(&d.prosody, "alice@localhost/reload").await;
    let curve = format!("urn:dev:prm:{PRM}_consumption/power/active/raw");
    let daily = format!("urn:dev:prm:{PRM}_consumption/energy/active/daily");

    // Before: the load curve in pages, and a subscription to it.
    let first = request_page(
        &alice,
        paged_request(
            "get_history",
            &[
                ("identifier", &curve),
                ("start_time", &midnight(day(-16))),
                ("end_time", &midnight(day(-2))),
            ],
        ),
    )
    .await
    .expect("the first page");
    assert_eq!(first.status, Status::Executing, "more pages follow");
    alice
        .command(Command::execute(
            "subscribe",
            Some(submit(&[("identifier", &curve)])),
        ))
        .await
        .expect("subscribed to the load curve");
    assert_eq!(
        next_push(&mut alice, Duration::from_secs(30)).await,
        Some(Series::ConsumptionPower),
        "the latest published day, at once"
    );
    assert_eq!(
        commands_seen(&alice).await,
        [
            "get_history",
            "get_load_curve",
            "get_daily",
            "list_usage_points",
            "get_contract",
            "get_authorize_uri",
            "subscribe",
            "unsubscribe"
        ]
    );
    // The subscription misses its last two days: the next pass reads them.
    let db = rusqlite::Connection::open(d.dir.path().join("agent.db")).unwrap();
    let behind = day(-5).to_string();
    assert_eq!(
        db.execute(
            "UPDATE subscriptions SET delivered_through = ?1",
            [behind.as_str()]
        )
        .unwrap(),
        1
    );
    drop(db);

    // Daily energy only, from now on.
    let mut narrow = settings.clone();
    narrow.peers[0] = peer("alice", &[PRM]).scopes(&["daily"]);
    assert!(reload(&d, &narrow).await, "{}", d.agent.log());

    // The next page of the answer already under way: refused.
    let Err((cond, text)) = request_page(
        &alice,
        action("get_history", &first.sessionid, Action::Next),
    )
    .await
    else {
        panic!("the next page was served, outside the new scopes");
    };
    assert_eq!(cond, "not-authorized", "{text}");
    assert!(
        text.contains("this peer's scopes do not include load_curve (they are: daily)"),
        "{text}"
    );
    // A new request: refused, naming the scope; daily energy still served.
    let error = refusal_of(
        &alice,
        Ask::History(Series::ConsumptionPower).command(PRM),
        "the load curve is outside the new scopes",
    )
    .await;
    assert_out_of_scope(&error, Scope::LoadCurve);
    let error = refusal_of(
        &alice,
        Ask::LoadCurve.command(PRM),
        "get_load_curve is hidden now",
    )
    .await;
    assert_out_of_scope(&error, Scope::LoadCurve);
    alice
        .command(Ask::Daily.command(PRM))
        .await
        .expect("daily energy is in scope");
    assert_eq!(
        commands_seen(&alice).await,
        [
            "get_history",
            "get_daily",
            "list_usage_points",
            "get_authorize_uri",
            "subscribe",
            "unsubscribe"
        ]
    );

    // A subscription to daily energy starts a delivery pass: the load curve's
    // subscription ends instead of being pushed.
    alice
        .command(Command::execute(
            "subscribe",
            Some(submit(&[("identifier", &daily)])),
        ))
        .await
        .expect("subscribed to daily energy");
    assert!(
        d.agent
            .wait_log(
                "subscription ended: its series is outside the peer's scopes",
                Duration::from_secs(30)
            )
            .await,
        "{}",
        d.agent.log()
    );
    assert_eq!(
        next_push(&mut alice, Duration::from_secs(30)).await,
        Some(Series::ConsumptionEnergyDaily)
    );
    assert_eq!(
        next_push(&mut alice, Duration::from_secs(2)).await,
        None,
        "no load curve pushed after the reload"
    );
    let form = alice
        .command(Command::execute("list_usage_points", None))
        .await
        .unwrap()
        .form
        .unwrap();
    assert_eq!(field_values(&form, "subscriptions"), [daily.as_str()]);
    assert_eq!(field_values(&form, "scopes"), ["daily"]);

    // On record: the refused page, request, command and push.
    let store = Store::open(d.dir.path().join("agent.db")).unwrap();
    let refused: Vec<(String, Option<String>, bool)> = store
        .audit(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.outcome == "refused")
        .map(|r| {
            assert_eq!(r.error_code.as_deref(), Some("scope:load_curve"), "{r:?}");
            assert_eq!(
                r.series.as_deref(),
                Some("consumption/power/active/raw"),
                "{r:?}"
            );
            (r.command, r.prm, r.range_start.is_some())
        })
        .collect();
    let prm = Some(PRM.to_owned());
    assert_eq!(
        refused,
        [
            ("get_history".to_owned(), prm.clone(), true),
            ("get_history".to_owned(), prm.clone(), true),
            ("get_load_curve".to_owned(), prm.clone(), false),
            ("subscription".to_owned(), prm.clone(), true),
        ]
    );

    // An unknown scope name: the reload is rejected, the old scopes stay.
    let mut wrong = narrow.clone();
    wrong.peers[0] = peer("alice", &[PRM]).scopes(&["daily", "load curve"]);
    assert!(!reload(&d, &wrong).await);
    let rejected = d
        .agent
        .log()
        .lines()
        .find(|l| l.contains("reload rejected"))
        .unwrap()
        .to_owned();
    assert!(
        rejected.contains("peers[0].scopes[1]: unknown scope") && rejected.contains("load curve"),
        "{rejected}"
    );
    let error = refusal_of(
        &alice,
        Ask::History(Series::ConsumptionPower).command(PRM),
        "still daily only",
    )
    .await;
    assert_out_of_scope(&error, Scope::LoadCurve);

    // Widened again: served at once.
    assert!(reload(&d, &settings).await);
    let answer = alice
        .command(Ask::History(Series::ConsumptionPower).command(PRM))
        .await
        .expect("the load curve is back in scope");
    assert_eq!(
        answered(&answer).identifier.series,
        Series::ConsumptionPower
    );
}

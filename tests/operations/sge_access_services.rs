//! Access services of declared consents (Enedis SGE), as the real binary against
//! the real simulator's SGE over mutual TLS: `consents add --upstream sge
//! --collect …` orders them (the simulator holds them with the consent's end and
//! the holder), `list` shows them, `collect` orders more and skips those active,
//! `revoke` stops them at Enedis before revoking; an order SGE refuses prints its
//! SGT code and label, exits non-zero and keeps the consent; a stop that cannot
//! reach SGE revokes all the same, exits non-zero and is retried; without `[sge]`
//! nothing is stored. The housekeeping pass (the daemon's) stops the services of
//! ended consents, a bounded number at a time.

use std::path::{Path, PathBuf};
use std::process::Command;

use enedis_sim::harness::Sim;
use enedis_sim::sge::meters::{C4_PRM, C5_PRM};
use quoalise_agent::config::Config;
use quoalise_agent::metrics::Metrics;
use quoalise_agent::store::{ConsentState, SgeDataType, Store, now_seconds};
use quoalise_agent::upstream::http::Tally;
use quoalise_agent::upstream::sge::services::{self, StopResult};
use quoalise_agent::upstream::{Ask, Class};
use serde_json::Value;

use crate::common::agent_harness::{SGE_CONTRACT, SGE_LOGIN};
use crate::common::config::AgentConfig;

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
/// A PRM the simulator's SGE does not know (SGT401).
const UNKNOWN: &str = "30001610071843";

/// A configuration in `dir` whose store is `store` and whose `[sge]` is the
/// simulator's (or, with `endpoint`, somewhere else with the same identity).
fn write_config(dir: &Path, store: &Path, sim: Option<&Sim>, endpoint: Option<&str>) -> PathBuf {
    let mut config = AgentConfig::new()
        .set("enedis.api", "2026")
        .set("enedis.base_url", "http://127.0.0.1:9")
        .set("store.path", store);
    if let Some(sim) = sim {
        let tls = sim.sge_tls_dir();
        let url = sim.sge_url("");
        config = config
            .set("sge.endpoint", endpoint.unwrap_or(url.as_str()))
            .set("sge.certificate_file", tls.join("agent.pem").as_path())
            .set("sge.key_file", tls.join("agent.key").as_path())
            .set("sge.ca_file", tls.join("ca.pem").as_path())
            .set("sge.login", SGE_LOGIN)
            .set("sge.contract_id", SGE_CONTRACT)
            .set("sge.calls_per_second", 50);
    }
    config.write(dir)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn consents(config: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("consents")
        .args(args)
        .env_remove("QUOALISE_AGENT_CONFIG")
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(run: Run) -> Run {
    assert_eq!(run.code, Some(0), "{run}");
    run
}

/// The Paris day a year from today, YYYY-MM-DD.
fn in_a_year() -> String {
    use jiff::ToSpan;
    quoalise_agent::time::paris_today(jiff::Timestamp::now())
        .checked_add(1.year())
        .unwrap()
        .to_string()
}

/// `consents add --upstream sge` for `prms` (comma-separated) with EXTRA options.
fn add(config: &Path, prms: &str, until: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "add",
        "--upstream",
        "sge",
        "--owner",
        "alice@example.org",
        "--prm",
        prms,
        "--mandate",
        "MANDAT-2026-0042",
        "--until",
        until,
    ];
    args.extend(extra);
    consents(config, &args)
}

fn consent_id(run: &Run) -> i64 {
    run.stdout
        .strip_prefix("consent ")
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no consent id in {run}"))
}

/// The simulator's services on `prm`.
async fn sim_services(sim: &Sim, prm: &str) -> Vec<Value> {
    let all = sim.admin().sge_services().await;
    all["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {all}"))
        .iter()
        .filter(|s| s["pointId"] == prm)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collected_services_are_ordered_listed_and_stopped_when_the_consent_is_revoked() {
    let sim = Sim::start_sge(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("agent.db");
    let config = write_config(dir.path(), &store_path, Some(&sim), None);
    let until = in_a_year();

    let run = ok(add(
        &config,
        C5_PRM,
        &until,
        &[
            "--person",
            "Dupont",
            "--first-name",
            "Jeanne",
            "--civility",
            "Mme",
            "--collect",
            "load-curve,index",
        ],
    ));
    let id = consent_id(&run);

    // At Enedis: a load curve and an index service on the PRM, until the
    // consent's end, for the declared holder, consumption side.
    let at_enedis = sim_services(&sim, C5_PRM).await;
    assert_eq!(at_enedis.len(), 2, "{at_enedis:?}");
    for (service, kind) in at_enedis.iter().zip(["CDC", "IDX"]) {
        assert_eq!(service["typeDonnees"], kind, "{service}");
        assert_eq!(service["dateFin"], until.as_str(), "{service}");
        assert_eq!(service["titulaire"], "Jeanne Dupont", "{service}");
        assert_eq!(service["sens"], "SOUTIRAGE", "{service}");
        assert!(service["dateArret"].is_null(), "{service}");
        let sid = service["serviceSouscritId"].as_str().unwrap();
        assert!(
            run.stdout.contains(&format!(
                "{C5_PRM}: {kind} ordered from SGE: service {sid} (affaire {})",
                service["affaireId"].as_str().unwrap()
            )),
            "{run}"
        );
    }
    // In the store, as SGE answered.
    let store = Store::open(&store_path).unwrap();
    let recorded = store.access_services_of_consent(id).unwrap();
    assert_eq!(
        recorded
            .iter()
            .map(|s| (s.data, s.service_id.as_str(), s.end.to_string()))
            .collect::<Vec<_>>(),
        at_enedis
            .iter()
            .zip([SgeDataType::LoadCurve, SgeDataType::Index])
            .map(|(s, t)| (t, s["serviceSouscritId"].as_str().unwrap(), until.clone()))
            .collect::<Vec<_>>()
    );
    assert!(recorded.iter().all(|s| s.is_active()));

    // `list` shows the active services.
    let listed = ok(consents(&config, &["list"]));
    let cdc = &recorded[0].service_id;
    assert!(
        listed
            .stdout
            .lines()
            .next()
            .unwrap()
            .contains("TOKEN  SGE SERVICES"),
        "{listed}"
    );
    assert!(
        listed
            .stdout
            .contains(&format!("CDC {cdc}, IDX {}", recorded[1].service_id)),
        "{listed}"
    );

    // `collect` orders what is not active yet, and only that.
    let run = ok(consents(
        &config,
        &["collect", &id.to_string(), "--collect", "load-curve,energy"],
    ));
    assert!(
        run.stdout
            .contains(&format!("{C5_PRM}: CDC already collected for consent {id}")),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("{C5_PRM}: ENERGIE ordered from SGE")),
        "{run}"
    );
    assert_eq!(sim_services(&sim, C5_PRM).await.len(), 3);

    // `revoke` stops them at Enedis, records it, and revokes.
    let run = ok(consents(&config, &["revoke", &id.to_string()]));
    assert_eq!(run.stdout.matches("stopped at Enedis").count(), 3, "{run}");
    assert!(
        run.stdout.contains(&format!("consent {id} revoked")),
        "{run}"
    );
    for service in sim_services(&sim, C5_PRM).await {
        assert!(service["dateArret"].is_string(), "{service}");
    }
    let recorded = store.access_services_of_consent(id).unwrap();
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded
            .iter()
            .all(|s| s.stopped_at.is_some() && s.stop_error.is_none())
    );
    assert_eq!(
        store.consent(id).unwrap().unwrap().state,
        ConsentState::Revoked
    );
    let listed = ok(consents(&config, &["list"]));
    assert!(!listed.stdout.contains(cdc.as_str()), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_order_keeps_the_consent_prints_sges_code_and_says_how_to_retry() {
    let sim = Sim::start_sge(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("agent.db");
    let config = write_config(dir.path(), &store_path, Some(&sim), None);
    let until = in_a_year();

    // A PRM SGE does not know: SGT401, nothing ordered, the consent stored.
    let run = add(
        &config,
        UNKNOWN,
        &until,
        &["--company", "ACME SAS", "--collect", "load-curve"],
    );
    assert_eq!(run.code, Some(1), "{run}");
    let id = consent_id(&run);
    assert!(
        run.stdout.contains(&format!(
            "{UNKNOWN}: SGE refused the order: SGT401 Demande non recevable : point inexistant"
        )),
        "{run}"
    );
    assert!(
        run.stderr.contains(&format!("consent {id} is stored"))
            && run.stderr.contains(&format!(
                "quoalise-agent consents collect {id} --collect load-curve"
            )),
        "{run}"
    );
    let store = Store::open(&store_path).unwrap();
    let consent = store.consent(id).unwrap().unwrap();
    assert_eq!(consent.state, ConsentState::Active);
    assert!(store.access_services_of_consent(id).unwrap().is_empty());
    assert!(sim_services(&sim, UNKNOWN).await.is_empty());

    // Two PRMs, one known: its service is ordered and recorded, the other
    // refused, the exit non-zero; a retry orders nothing twice.
    let both = format!("{C4_PRM},{UNKNOWN}");
    let run = add(
        &config,
        &both,
        &until,
        &["--company", "ACME SAS", "--collect", "load-curve"],
    );
    assert_eq!(run.code, Some(1), "{run}");
    let id = consent_id(&run);
    assert!(
        run.stdout
            .contains(&format!("{C4_PRM}: CDC ordered from SGE")),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("{UNKNOWN}: SGE refused the order: SGT401")),
        "{run}"
    );
    assert!(run.stderr.contains("1 of 2 PRM orders failed"), "{run}");
    let at_enedis = sim_services(&sim, C4_PRM).await;
    assert_eq!(at_enedis.len(), 1);
    assert_eq!(at_enedis[0]["titulaire"], "ACME SAS");
    assert_eq!(store.access_services_of_consent(id).unwrap().len(), 1);
    let run = consents(
        &config,
        &["collect", &id.to_string(), "--collect", "load-curve"],
    );
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout
            .contains(&format!("{C4_PRM}: CDC already collected")),
        "{run}"
    );
    assert_eq!(
        sim_services(&sim, C4_PRM).await.len(),
        1,
        "not ordered twice"
    );

    // SGE unavailable (a forced technical fault): the order failed, said so.
    sim.admin()
        .faults(serde_json::json!({"force_status": {"status": 500, "count": 5}}))
        .await;
    let run = add(
        &config,
        C5_PRM,
        &until,
        &["--person", "Martin", "--collect", "energy"],
    );
    sim.admin().clear_faults().await;
    assert_eq!(run.code, Some(1), "{run}");
    let id = consent_id(&run);
    assert!(
        run.stdout.contains(&format!(
            "{C5_PRM}: SGE could not take the order now (a technical failure at Enedis): SGT500"
        )),
        "{run}"
    );
    assert!(store.access_services_of_consent(id).unwrap().is_empty());
    // Once SGE is back, `collect` orders it.
    ok(consents(
        &config,
        &["collect", &id.to_string(), "--collect", "energy"],
    ));
    assert_eq!(store.access_services_of_consent(id).unwrap().len(), 1);
}

#[test]
fn without_sge_collecting_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("agent.db");
    let config = write_config(dir.path(), &store_path, None, None);
    let run = add(
        &config,
        C5_PRM,
        &in_a_year(),
        &["--person", "Dupont", "--collect", "load-curve"],
    );
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("--collect (ordering access services) needs Enedis SGE, but the configuration has no [sge] section")
            && run.stderr.contains("nothing was stored"),
        "{run}"
    );
    let run = consents(
        &config,
        &[
            "add",
            "--owner",
            "alice@example.org",
            "--prm",
            C5_PRM,
            "--duration",
            "P1Y",
            "--collect",
            "load-curve",
        ],
    );
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr
            .contains("--collect is for SGE consents: add --upstream sge"),
        "{run}"
    );
    let store = Store::open(&store_path).unwrap();
    assert!(store.list_consents().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_reach_sge_revokes_all_the_same_and_is_retried() {
    let sim = Sim::start_sge(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("agent.db");
    let config = write_config(dir.path(), &store_path, Some(&sim), None);
    let id = consent_id(&ok(add(
        &config,
        C5_PRM,
        &in_a_year(),
        &["--person", "Dupont", "--collect", "load-curve"],
    )));

    // The same identity, but SGE out of reach (nothing listens there).
    let away = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("https://127.0.0.1:{port}");
    let config_away = write_config(away.path(), &store_path, Some(&sim), Some(&unreachable));
    let run = consents(&config_away, &["revoke", &id.to_string()]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout.contains(&format!("{C5_PRM}: CDC service"))
            && run.stdout.contains("NOT stopped"),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("consent {id} revoked")),
        "{run}"
    );
    assert!(
        run.stderr.contains("still active at Enedis")
            && run.stderr.contains("the consent is revoked all the same"),
        "{run}"
    );
    let store = Store::open(&store_path).unwrap();
    assert_eq!(
        store.consent(id).unwrap().unwrap().state,
        ConsentState::Revoked
    );
    let service = store.access_services_of_consent(id).unwrap().remove(0);
    assert!(service.is_active(), "{service:?}");
    assert!(service.stop_error.is_some(), "{service:?}");
    assert!(sim_services(&sim, C5_PRM).await[0]["dateArret"].is_null());
    let listed = ok(consents(&config, &["list"]));
    assert!(
        listed
            .stdout
            .contains(&format!("CDC {} (stop failed)", service.service_id)),
        "{listed}"
    );

    // Revoking again retries the stop.
    let run = ok(consents(&config, &["revoke", &id.to_string()]));
    assert!(run.stdout.contains("stopped at Enedis"), "{run}");
    assert!(run.stdout.contains("was already revoked"), "{run}");
    assert!(sim_services(&sim, C5_PRM).await[0]["dateArret"].is_string());
    assert!(
        !store
            .access_service(&service.service_id)
            .unwrap()
            .unwrap()
            .is_active()
    );
}

/// The daemon's housekeeping pass, on a real store and the simulator: the
/// services of ended consents (expired, revoked while SGE was away) are stopped,
/// a bounded number a pass, those of consents in force left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_housekeeping_pass_stops_the_services_of_ended_consents_a_few_at_a_time() {
    let sim = Sim::start_sge(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("agent.db");
    let config_path = write_config(dir.path(), &store_path, Some(&sim), None);
    let until = in_a_year();
    let add_one = |prm: &str, kind: &str| {
        consent_id(&ok(add(
            &config_path,
            prm,
            &until,
            &["--person", "Dupont", "--collect", kind],
        )))
    };
    let expired = add_one(C5_PRM, "load-curve");
    let revoked = add_one(C4_PRM, "load-curve");
    let kept = add_one(C5_PRM, "index");

    let store = Store::open(&store_path).unwrap();
    store
        .set_consent_state(expired, ConsentState::Expired)
        .unwrap();
    store.revoke_consent(revoked).unwrap();

    let config = Config::load(&config_path).unwrap();
    let sge = quoalise_agent::upstream::sge::connect(
        config.sge.as_ref().unwrap(),
        &config.enedis,
        Metrics::new(),
    )
    .unwrap();
    let tally = Tally::new(Ask::agent().with_class(Class::Background));
    let first = services::stop_ended_consents(&store, &sge, now_seconds(), 1, &tally)
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].result, StopResult::Stopped);
    let second = services::stop_ended_consents(&store, &sge, now_seconds(), 10, &tally)
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].result, StopResult::Stopped);
    let mut stopped = vec![first[0].service.consent_id, second[0].service.consent_id];
    stopped.sort();
    assert_eq!(stopped, [expired, revoked]);
    assert!(
        services::stop_ended_consents(&store, &sge, now_seconds(), 10, &tally)
            .await
            .unwrap()
            .is_empty(),
        "nothing left"
    );

    for (prm, kind, active) in [
        (C5_PRM, "CDC", false),
        (C4_PRM, "CDC", false),
        (C5_PRM, "IDX", true),
    ] {
        let at_enedis = sim_services(&sim, prm).await;
        let service = at_enedis
            .iter()
            .find(|s| s["typeDonnees"] == kind)
            .unwrap_or_else(|| panic!("{prm} {kind} in {at_enedis:?}"));
        assert_eq!(service["dateArret"].is_null(), active, "{service}");
    }
    assert!(store.access_services_of_consent(kept).unwrap()[0].is_active());
    assert!(!store.access_services_of_consent(expired).unwrap()[0].is_active());
}

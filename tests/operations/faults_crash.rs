//! SIGKILL, in a loop, of everything that writes the store at once: the REAL agent
//! (serving a peer: audit trail, cache and subscription writes) and concurrent
//! `quoalise-agent consents add` processes. After every round:
//!
//! - the store passes `PRAGMA integrity_check` and the agent starts on it again;
//! - every consent a `consents add` reported as added is there, with all its PRMs,
//!   and no consent is partial (each is one transaction);
//! - nothing in the audit trail says "allowed" without a basis (the schema's rule).
//!
//! The refresh of v3/v4 tokens under SIGKILL is `tests/upstream/crash.rs`.

use crate::common;
use crate::common::agent_harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_harness::*;
use common::xmpp_harness::{Peer, submit};
use quoalise_agent::store::{AuditFilter, Store};
use quoalise_agent::xmpp::Command;

const ROUNDS: u64 = 20;
const ADDERS: u64 = 2;

fn history(days_back: i64) -> Command {
    let day = |n: i64| midnight(today().checked_sub(jiff::ToSpan::days(n)).unwrap());
    Command::execute(
        "get_history",
        Some(submit(&[
            (
                "identifier",
                &format!("urn:dev:prm:{PRM}_consumption/energy/active/daily"),
            ),
            ("start_time", &day(days_back)),
            ("end_time", &day(days_back - 3)),
        ])),
    )
}

fn add_consent(config: &Path, n: u64) -> tokio::process::Child {
    let prms: Vec<String> = (0..3).map(|i| format!("{:014}", n * 10 + i)).collect();
    tokio::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(config)
        .args([
            "consents",
            "add",
            "--owner",
            "bob@localhost",
            "--duration",
            "P1Y",
        ])
        .args(["--generation", "2026", "--autorisation-id", &n.to_string()])
        .args(["--prm", &prms.join(",")])
        .env_remove("QUOALISE_AGENT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_everything_writes_loses_nothing_committed() {
    let mut d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("bob", &[]),
    ]))
    .await;
    let config = d.files.path();
    let db = d.dir.path().join("agent.db");
    let mut reported: BTreeMap<i64, u64> = BTreeMap::new();
    let mut killed_adds = 0;
    let answered = Arc::new(AtomicU32::new(0));

    for round in 0..ROUNDS {
        // A peer keeps the agent writing: audit rows, cached days.
        let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
        let done = answered.clone();
        let load = tokio::spawn(async move {
            for i in 0.. {
                if alice.command(history(10 + (i % 200))).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Writers of consents, one `consents add` after another, until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let running: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
        let mut adders = Vec::new();
        for lane in 0..ADDERS {
            let (stop, running, config) = (stop.clone(), running.clone(), config.clone());
            adders.push(tokio::spawn(async move {
                let mut results = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = (round * ADDERS + lane) * 1000 + i + 1;
                    i += 1;
                    let child = add_consent(&config, n);
                    let pid = child.id().unwrap_or_default();
                    running.lock().unwrap().insert(pid, n);
                    let out = child.wait_with_output().await.unwrap();
                    running.lock().unwrap().remove(&pid);
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    let id = stdout
                        .lines()
                        .find_map(|l| l.strip_prefix("consent ")?.strip_suffix(" added"))
                        .and_then(|id| id.parse::<i64>().ok())
                        .filter(|_| out.status.success());
                    results.push((n, id));
                }
                results
            }));
        }
        let pause = 100 + (round * 137) % 500;
        tokio::time::sleep(Duration::from_millis(pause)).await;

        // SIGKILL the agent and whichever `consents add` is writing now.
        d.agent.signal("-KILL");
        stop.store(true, Ordering::Relaxed);
        let victims: Vec<u32> = running.lock().unwrap().keys().copied().collect();
        for pid in &victims {
            signal(*pid, "-KILL");
        }
        load.abort();
        let _ = load.await;
        let _ = d.agent.wait_exit(Duration::from_secs(10)).await;
        for adder in adders {
            for (n, id) in adder.await.unwrap() {
                match id {
                    Some(id) => {
                        reported.insert(id, n);
                    }
                    None => killed_adds += 1,
                }
            }
        }

        // The store after the crash.
        let store = Store::open(&db).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(store.integrity_check().unwrap(), "ok", "round {round}");
        let consents = store.list_consents().unwrap();
        for c in &consents {
            assert_eq!(
                c.prms.len(),
                3,
                "round {round}: consent {} is partial",
                c.id
            );
        }
        for (id, n) in &reported {
            let c = consents.iter().find(|c| c.id == *id).unwrap_or_else(|| {
                panic!("round {round}: consent {id} was reported added and is lost")
            });
            assert_eq!(c.autorisation_id, Some(*n as i64));
        }
        let audit = store.audit(&AuditFilter::default()).unwrap();
        assert!(
            audit
                .iter()
                .filter(|r| r.outcome == "allowed")
                .all(|r| r.via_grant || r.consent_id.is_some())
        );
        drop(store);

        // The agent starts again on it.
        d.agent = AgentProcess::spawn(&config, d.dir.path(), d.files.web_port, &[]);
        d.agent.wait_healthy(Duration::from_secs(60)).await;
    }
    let store = Store::open(&db).unwrap();
    let audit_rows = store.audit(&AuditFilter::default()).unwrap().len();
    println!(
        "{ROUNDS} SIGKILL rounds: {} consents added and kept, {killed_adds} adds killed or refused, {} requests answered, {audit_rows} audit rows",
        reported.len(),
        answered.load(Ordering::Relaxed)
    );
    assert!(!reported.is_empty());
    assert!(answered.load(Ordering::Relaxed) > 0);
}

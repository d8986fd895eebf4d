//! `quoalise-agent --config F audit` (the real binary): filters by peer, PRM and
//! time, CSV with a header and proper quoting, JSON, clear errors; it reads only
//! `store.path` from the configuration (the secrets here do not exist).

use crate::common::config::AgentConfig;

use std::path::Path;

use quoalise_agent::quoalise::Series;
use quoalise_agent::store::{Access, AccessError, AccessOutcome, Store};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const P1: &str = "30001610071843";
const P2: &str = "22516914714270";

fn audit(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("audit")
        .args(args)
        .env_remove("QUOALISE_AGENT_CONFIG")
        .env_remove("QUOALISE_AGENT__STORE__PATH")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(at: i64, peer: &str, prm: &str, text: &str) -> Access {
    Access {
        at,
        peer: peer.into(),
        command: "get_history".into(),
        prm: Some(prm.parse().unwrap()),
        series: Some(Series::ConsumptionPower.into()),
        range: Some((at - 86_400, at)),
        basis: None,
        outcome: AccessOutcome::Refused(AccessError {
            condition: "not-authorized".into(),
            code: None,
            text: text.into(),
        }),
        upstream_calls: 0,
        duration_ms: Some(3),
    }
}

#[test]
fn the_audit_command_filters_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    // Only what the audit command reads: no Enedis, no web, no secret files.
    AgentConfig::new()
        .without("enedis")
        .without("web")
        .set("xmpp.password_file", "/nonexistent")
        .write(dir.path());
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    // 2026-11-01T00:00:00Z, then one access an hour.
    let t0 = 1_793_491_200;
    store
        .record_access(&refused(
            t0,
            "app@example.org",
            P1,
            "no consent, \"really\"",
        ))
        .unwrap();
    store
        .record_access(&refused(t0 + 3600, "other@example.org", P1, "=cmd()"))
        .unwrap();
    store
        .record_access(&refused(t0 + 7200, "app@example.org", P2, "plain"))
        .unwrap();

    let (ok, out, err) = audit(dir.path(), &[]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("id,time,peer,command,prm,series,range_start"));
    assert!(
        lines[1].contains(",\"no consent, \"\"really\"\"\","),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(",'=cmd(),"),
        "formulas defused: {}",
        lines[2]
    );
    assert!(
        lines[1].starts_with("1,2026-11-01T00:00:00Z,app@example.org,get_history,30001610071843,")
    );

    // A resource and case are normalised like the agent does.
    let (_, out, _) = audit(dir.path(), &["--peer", "App@Example.org/phone"]);
    assert_eq!(out.lines().count(), 3);
    let (_, out, _) = audit(dir.path(), &["--prm", P1, "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["peer"], "other@example.org");
    assert_eq!(rows[1]["outcome"], "refused");
    assert_eq!(rows[1]["error"], "not-authorized");
    let (_, out, _) = audit(
        dir.path(),
        &[
            "--since",
            "2026-11-01T01:00:00Z",
            "--until",
            "2026-11-01T02:00:00Z",
        ],
    );
    assert_eq!(out.lines().count(), 2);
    let (_, out, _) = audit(dir.path(), &["--limit", "1", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["prm"], P2);

    // Bad arguments say which and why.
    let (ok, _, err) = audit(dir.path(), &["--since", "last week"]);
    assert!(!ok);
    assert!(err.contains("--since"), "{err}");
    let (ok, _, err) = audit(dir.path(), &["--prm", "123"]);
    assert!(!ok);
    assert!(err.contains("14 digits"), "{err}");
}

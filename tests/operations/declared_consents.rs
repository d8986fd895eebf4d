//! `quoalise-agent consents` for declared consents (Enedis SGE), as the real
//! binary: `add --upstream sge` with a person or a company and the mandate,
//! `list` with the upstream, the holder and the mandate (and `--upstream`),
//! `revoke` keeping the row, `remove` refusing an SGE consent, and bad input
//! refused with a precise message and nothing stored.

use std::path::{Path, PathBuf};
use std::process::Command;

use quoalise_agent::quoalise::Prm;
use quoalise_agent::store::{
    Civility, ConsentState, ConsentUpstream, PrmUpstream, SgeHolder, Store, now_seconds,
};

use crate::common::config::AgentConfig;

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const P1: &str = "30001610071843";
const P2: &str = "22516914714270";

fn write_config(dir: &Path) -> PathBuf {
    AgentConfig::new()
        .set("enedis.api", "2026")
        .set("enedis.base_url", "http://127.0.0.1:9")
        .write(dir)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
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
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// The Paris day `years` years and `days` days from today, YYYY-MM-DD.
fn day_ahead(years: i16, days: i32) -> String {
    use jiff::ToSpan;
    quoalise_agent::time::paris_today(jiff::Timestamp::now())
        .checked_add(years.years().days(days))
        .unwrap()
        .to_string()
}

#[test]
fn declared_consents_are_added_listed_revoked_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let until = day_ahead(1, 0);

    let run = ok(consents(
        &config,
        &[
            "add",
            "--upstream",
            "sge",
            "--owner",
            "Community@Example.org",
            "--prm",
            P1,
            "--prm",
            P2,
            "--person",
            "Dupont",
            "--first-name",
            "Jeanne",
            "--civility",
            "mme",
            "--mandate",
            "MANDAT-2026-0042",
            "--until",
            &until,
        ],
    ));
    assert!(
        run.stdout.contains("consent 1 added (SGE)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("keep the signed mandate \"MANDAT-2026-0042\""),
        "{}",
        run.stdout
    );
    ok(consents(
        &config,
        &[
            "add",
            "--upstream",
            "sge",
            "--owner",
            "community@example.org",
            "--prm",
            P2,
            "--company",
            "Boulangerie Martin SARL",
            "--mandate",
            "contrats/2026/martin.pdf",
            "--from",
            "2026-01-01",
            "--duration",
            "P1Y",
        ],
    ));
    // A Data Connect consent, the default, unchanged.
    ok(consents(
        &config,
        &[
            "add",
            "--owner",
            "app@example.org",
            "--prm",
            P1,
            "--duration",
            "P1Y",
        ],
    ));

    let run = ok(consents(&config, &["list"]));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(lines[0].starts_with("ID") && lines[0].contains("API"));
    assert!(
        lines[0].trim_end().ends_with("SGE HOLDER AND MANDATE"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" sge "), "{}", lines[1]);
    assert!(lines[1].contains("community@example.org"), "{}", lines[1]);
    assert!(lines[1].contains(&format!("{P2},{P1}")), "{}", lines[1]);
    assert!(
        lines[1]
            .trim_end()
            .ends_with("Mme Jeanne Dupont; mandate MANDAT-2026-0042"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2]
            .trim_end()
            .ends_with("company Boulangerie Martin SARL; mandate contrats/2026/martin.pdf"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains("2025-12-31T23:00:00Z") && lines[2].contains("2026-12-31T23:00:00Z"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains(" 2026 "), "{}", lines[3]);
    assert!(lines[3].trim_end().ends_with("no"), "{}", lines[3]);
    // Filters.
    let run = ok(consents(&config, &["list", "--upstream", "sge"]));
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    assert!(!run.stdout.contains("app@example.org"));
    let run = ok(consents(&config, &["list", "--upstream", "data-connect"]));
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(run.stdout.contains("app@example.org"));
    let run = ok(consents(
        &config,
        &["list", "--upstream", "sge", "--prm", P1],
    ));
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);

    // What the agent will read: the holder, the mandate, the upstream of each PRM.
    {
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        let first = store.consent(1).unwrap().unwrap();
        assert_eq!(first.upstream(), ConsentUpstream::Sge);
        assert_eq!(first.owner, "community@example.org");
        let declaration = first.sge.unwrap();
        assert_eq!(
            declaration.holder,
            SgeHolder::Person {
                civility: Some(Civility::Mme),
                last_name: "Dupont".into(),
                first_name: Some("Jeanne".into()),
            }
        );
        let p1: Prm = P1.parse().unwrap();
        assert_eq!(
            store.upstream_for_prm(&p1, now_seconds()).unwrap(),
            PrmUpstream::Sge { consents: vec![1] }
        );
    }

    // An SGE consent is revoked, never deleted.
    let run = consents(&config, &["remove", "1"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("consent 1 is an SGE consent"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("consents revoke 1"), "{}", run.stderr);
    let run = ok(consents(&config, &["revoke", "1"]));
    assert!(
        run.stdout.contains("consent 1 revoked (SGE)"),
        "{}",
        run.stdout
    );
    let run = consents(&config, &["revoke", "1"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("consent 1 is already revoked"),
        "{}",
        run.stderr
    );
    let run = consents(&config, &["revoke", "42"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no consent with id 42"),
        "{}",
        run.stderr
    );

    let run = ok(consents(&config, &["list", "--upstream", "sge"]));
    let revoked = run.stdout.lines().nth(1).unwrap();
    assert!(
        revoked.contains("revoked") && revoked.contains("MANDAT-2026-0042"),
        "{revoked}"
    );
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    assert_eq!(
        store.consent(1).unwrap().unwrap().state,
        ConsentState::Revoked
    );
    let p1: Prm = P1.parse().unwrap();
    assert_eq!(
        store.upstream_for_prm(&p1, now_seconds()).unwrap(),
        PrmUpstream::DataConnect
    );
    // A Data Connect consent is still removed as before.
    ok(consents(&config, &["remove", "3"]));
    assert_eq!(store.list_consents().unwrap().len(), 2);
}

#[test]
fn bad_declared_consents_are_refused_precisely_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let until = day_ahead(1, 0);
    let too_far = day_ahead(3, 2);
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "add",
            "--upstream",
            "sge",
            "--owner",
            "c@example.org",
            "--prm",
            P1,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let person = ["--person", "Dupont", "--mandate", "M-1"];
    let with_person = |extra: &[&str]| -> Vec<String> {
        let mut args = base(&person);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            {
                let mut a = base(&person);
                a[6] = "3000161007184".into();
                a.extend(["--until".to_string(), until.clone()]);
                a
            },
            "14 digits",
        ),
        (
            with_person(&["--from", "2026-06-01", "--until", "2026-05-01"]),
            "--until must come after --from",
        ),
        (
            base(&[
                "--person",
                "Dupont",
                "--company",
                "ACME",
                "--mandate",
                "M-1",
                "--until",
                &until,
            ]),
            "cannot be used with",
        ),
        (
            base(&["--person", "Dupont", "--until", &until]),
            "needs --mandate REF",
        ),
        (
            base(&["--mandate", "M-1", "--until", &until]),
            "needs its holder",
        ),
        (
            with_person(&["--civility", "Dr", "--until", &until]),
            "--civility \"Dr\": expected M or Mme",
        ),
        (
            with_person(&["--until", &too_far]),
            "more than 3 years ahead",
        ),
        (with_person(&["--duration", "P4Y"]), "at most 3 years"),
        (
            base(&[
                "--company",
                "ACME",
                "--first-name",
                "Jo",
                "--mandate",
                "M-1",
                "--until",
                &until,
            ]),
            "--first-name and --civility are for a person",
        ),
        (
            with_person(&["--until", &until, "--generation", "v5"]),
            "--generation is for Data Connect consents",
        ),
        (
            with_person(&["--until", &until, "--autorisation-id", "12"]),
            "--autorisation-id is for Data Connect consents",
        ),
        (
            base(&["--person", "Dupont", "--mandate", "   ", "--until", &until]),
            "mandate reference is empty",
        ),
        (
            {
                let mut a = with_person(&["--until", &until]);
                a[4] = "c@example.org/phone".into();
                a
            },
            "--owner \"c@example.org/phone\" is not a bare JID",
        ),
        (
            {
                let mut a = with_person(&["--until", &until]);
                a[2] = "sgx".into();
                a
            },
            "invalid value 'sgx' for '--upstream",
        ),
        // SGE options on a Data Connect consent.
        (
            vec![
                "add",
                "--owner",
                "c@example.org",
                "--prm",
                P1,
                "--duration",
                "P1Y",
                "--mandate",
                "M-1",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--mandate is for SGE consents: add --upstream sge",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = consents(&config, &args);
        assert_ne!(run.code, Some(0), "{args:?} succeeded:\n{}", run.stdout);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{}",
            run.stderr
        );
    }
    let run = ok(consents(&config, &["list"]));
    assert!(run.stdout.contains("(no consent)"), "{}", run.stdout);
    // The same command with good values goes through.
    ok(consents(
        &config,
        &with_person(&["--until", &until])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
}

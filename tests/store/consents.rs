//! The consent store: consents and their PRMs, per-consent tokens, the queries
//! the agent relies on, on both databases; SQLite's own schema and pragmas; and
//! the admin command line (`quoalise-agent consents …`, the real binary), on a
//! SQLite file and once on PostgreSQL (`[store] url`).

use crate::backends::TestStore;
use crate::common::config::AgentConfig;
use crate::common::postgres;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use quoalise_agent::config::{ApiGeneration, Secret};
use quoalise_agent::quoalise::Prm;
use quoalise_agent::store::migrations::latest_version;
use quoalise_agent::store::{ConsentState, NewConsent, Store, StoreError, TokenSet};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn new_consent(generation: ApiGeneration, owner: &str, prms: &[&str]) -> NewConsent {
    NewConsent {
        generation,
        owner: owner.into(),
        prms: prms.iter().map(|p| prm(p)).collect(),
        autorisation_id: None,
        valid_from: 1_000,
        valid_until: 2_000,
    }
}

/// The number a query gives, read on the test's database itself (not through
/// the store): SQL both dialects read alike.
pub fn scalar(t: &TestStore, sql: &str) -> i64 {
    match t.postgres_client() {
        Some(mut client) => client.query_one(sql, &[]).unwrap().get(0),
        None => rusqlite::Connection::open(t.dir.path().join("agent.db"))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap(),
    }
}

fn tokens(refresh: &str) -> TokenSet {
    TokenSet {
        refresh_token: Secret::new(refresh),
        access_token: Some(Secret::new(format!("access-of-{refresh}"))),
        access_expires_at: Some(1_500),
    }
}

#[test]
fn opens_with_wal_full_sync_private_file_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());
    assert_eq!(store.integrity_check().unwrap(), "ok");
    drop(store);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the store holds tokens: mode {mode:o}");

    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    drop(conn);
    // Reopening runs no migration twice and keeps the data.
    let store = Store::open(&path).unwrap();
    store
        .add_consent(
            &new_consent(ApiGeneration::V5, "a@example.org", &["22516914714270"]),
            None,
        )
        .unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.list_consents().unwrap().len(), 1);
}

#[test]
fn refuses_newer_schema_and_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    drop(Store::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 999")
        .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 999, .. }));
    assert!(err.to_string().contains("newer"), "{err}");
    let err = Store::open(dir.path().join("missing/agent.db"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}

on_both! {
    /// A store opened again (a restarted agent, another instance) has the consents
    /// and tokens committed before.
    fn a_reopened_store_keeps_its_consents(t: &TestStore) {
        let added = t
            .store
            .add_consent(
                &new_consent(ApiGeneration::V4, "a@example.org", &["22516914714270"]),
                Some(&tokens("kept")),
            )
            .unwrap();
        let reopened = t.reopen();
        let listed = reopened.list_consents().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0], added);
        assert_eq!(
            reopened
                .tokens(added.id)
                .unwrap()
                .unwrap()
                .tokens
                .refresh_token
                .expose(),
            "kept"
        );
    }

    fn consents_queries(t: &TestStore) {
        let store = &t.store;
        let a = store
            .add_consent(
                &new_consent(
                    ApiGeneration::V4,
                    "a@example.org",
                    &["22516914714270", "11453290002823", "22516914714270"],
                ),
                Some(&tokens("r1")),
            )
            .unwrap();
        assert_eq!(a.prms, vec![prm("11453290002823"), prm("22516914714270")]);
        assert!(a.has_refresh_token);
        assert_eq!(a.state, ConsentState::Active);
        let b = store
            .add_consent(
                &new_consent(ApiGeneration::V4, "b@example.org", &["22516914714270"]),
                None,
            )
            .unwrap();
        let mut c = new_consent(ApiGeneration::Api2026, "a@example.org", &["32320647321714"]);
        c.autorisation_id = Some(987_654_321_012);
        let c = store.add_consent(&c, None).unwrap();
        assert_eq!(c.autorisation_id, Some(987_654_321_012));

        let p = prm("22516914714270");
        let ids =
            |v: Vec<quoalise_agent::store::Consent>| v.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.consents_for_peer("a@example.org", &p, 1_500).unwrap()),
            [a.id]
        );
        assert_eq!(
            ids(store.consents_for_peer("b@example.org", &p, 1_500).unwrap()),
            [b.id]
        );
        assert!(
            store
                .consents_for_peer("c@example.org", &p, 1_500)
                .unwrap()
                .is_empty()
        );
        // Validity is [from, until[.
        assert!(
            store
                .consents_for_peer("a@example.org", &p, 999)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .consents_for_peer("a@example.org", &p, 2_000)
                .unwrap()
                .is_empty()
        );
        // Any owner, newest first, only the asked generation.
        assert_eq!(
            ids(store
                .usable_consents_for_prm(ApiGeneration::V4, &p, 1_500)
                .unwrap()),
            [b.id, a.id]
        );
        assert!(
            store
                .usable_consents_for_prm(ApiGeneration::V5, &p, 1_500)
                .unwrap()
                .is_empty()
        );

        // ADAM-DC-0008 on a PRM revokes every active consent of the generation covering it.
        let mut revoked = store.revoke_prm(ApiGeneration::V4, &p).unwrap();
        revoked.sort();
        assert_eq!(revoked, [a.id, b.id]);
        assert!(
            store
                .usable_consents_for_prm(ApiGeneration::V4, &p, 1_500)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.consent(a.id).unwrap().unwrap().state,
            ConsentState::Revoked
        );
        assert_eq!(
            store.consent(c.id).unwrap().unwrap().state,
            ConsentState::Active
        );

        assert_eq!(store.expire_consents(2_000).unwrap(), 1);
        assert_eq!(
            store.consent(c.id).unwrap().unwrap().state,
            ConsentState::Expired
        );
        assert!(store.set_consent_state(c.id, ConsentState::Active).unwrap());

        // Removing cascades to PRMs and tokens.
        assert!(store.remove_consent(a.id).unwrap());
        assert!(!store.remove_consent(a.id).unwrap());
        assert!(store.tokens(a.id).unwrap().is_none());
        assert_eq!(store.list_consents().unwrap().len(), 2);
        let left = |table: &str| {
            scalar(
                t,
                &format!("SELECT count(*) FROM {table} WHERE consent_id = {}", a.id),
            )
        };
        assert_eq!((left("consent_prms"), left("consent_tokens")), (0, 0));
        assert_eq!(scalar(t, "SELECT count(*) FROM consent_prms"), 2);
    }

    fn invalid_consents_are_refused_precisely(t: &TestStore) {
        let store = &t.store;
        let mut bad = new_consent(
            ApiGeneration::V5,
            "a@example.org/phone",
            &["22516914714270"],
        );
        assert!(
            store
                .add_consent(&bad, None)
                .unwrap_err()
                .to_string()
                .contains("bare JID")
        );
        bad.owner = "a@example.org".into();
        bad.valid_until = bad.valid_from;
        assert!(
            store
                .add_consent(&bad, None)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        bad.valid_until = 2_000;
        bad.prms.clear();
        assert!(
            store
                .add_consent(&bad, None)
                .unwrap_err()
                .to_string()
                .contains("at least one PRM")
        );
        let v5 = new_consent(ApiGeneration::V5, "a@example.org", &["22516914714270"]);
        let err = store
            .add_consent(&v5, Some(&tokens("r")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("application token"), "{err}");
        let mut v4 = new_consent(ApiGeneration::V4, "a@example.org", &["22516914714270"]);
        v4.autorisation_id = Some(1);
        assert!(store.add_consent(&v4, None).is_err());
        assert!(
            store.list_consents().unwrap().is_empty(),
            "nothing half-written"
        );
        assert!(matches!(
            store.save_tokens(42, &tokens("r")),
            Err(StoreError::NoSuchConsent(42))
        ));
    }

    fn tokens_are_replaced_atomically_and_never_shown(t: &TestStore) {
        let store = &t.store;
        let consent = store
            .add_consent(
                &new_consent(ApiGeneration::V3, "a@example.org", &["22516914714270"]),
                Some(&tokens("refresh-one")),
            )
            .unwrap();
        let stored = store.tokens(consent.id).unwrap().unwrap();
        assert_eq!(stored.tokens.refresh_token.expose(), "refresh-one");
        store
            .save_tokens(consent.id, &tokens("refresh-two"))
            .unwrap();
        // Another connection (another process) sees the new pair at once: it is committed.
        let other = t.reopen();
        let seen = other.tokens(consent.id).unwrap().unwrap();
        assert_eq!(seen.tokens.refresh_token.expose(), "refresh-two");
        assert_eq!(
            seen.tokens.access_token.as_ref().unwrap().expose(),
            "access-of-refresh-two"
        );
        let debug = format!("{seen:?} {:?}", store.consent(consent.id).unwrap());
        assert!(
            !debug.contains("refresh-two") && !debug.contains("access-of"),
            "{debug}"
        );
        let err = store
            .save_tokens(
                consent.id,
                &TokenSet {
                    refresh_token: Secret::new(""),
                    access_token: None,
                    access_expires_at: None,
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("empty refresh token"));
        assert_eq!(
            store
                .tokens(consent.id)
                .unwrap()
                .unwrap()
                .tokens
                .refresh_token
                .expose(),
            "refresh-two"
        );
        // Saving touched the consent, when it wrote the tokens.
        assert_eq!(
            store.consent(consent.id).unwrap().unwrap().updated_at,
            seen.updated_at
        );
    }

    /// Twenty consents added at once from async code, each on the blocking pool
    /// (on PostgreSQL, more than the pool has connections).
    fn async_callers_use_the_blocking_pool(t: &TestStore) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async_callers(&t.store));
    }
}

async fn async_callers(store: &Store) {
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .call(move |s| {
                        s.add_consent(
                            &new_consent(
                                ApiGeneration::V5,
                                &format!("peer{i}@example.org"),
                                &["22516914714270"],
                            ),
                            None,
                        )
                    })
                    .await
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let all = store.call(|s| s.list_consents()).await.unwrap();
    assert_eq!(all.len(), 20);
}

// ---- the admin command line, as the real binary ----

/// A minimal valid configuration whose store lives in `dir`.
fn write_config(dir: &Path, api: &str) -> std::path::PathBuf {
    AgentConfig::new()
        .set("enedis.api", api)
        .set("enedis.base_url", "http://127.0.0.1:9")
        .write(dir)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn consents(config: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("consents")
        .args(args)
        .env_remove("QUOALISE_AGENT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            // A command refusing its arguments may exit before reading stdin.
            let _ = input.write_all(text.as_bytes());
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn admin_command_adds_lists_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "v4");

    let run = consents(&config, &["list"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("(no consent)"), "{}", run.stdout);

    // A v4 consent with its refresh token from stdin.
    let run = consents(
        &config,
        &[
            "add",
            "--owner",
            "Peer@Example.org",
            "--prm",
            "22516914714270,11453290002823",
            "--from",
            "2026-01-01",
            "--duration",
            "P1Y",
            "--refresh-token-file",
            "-",
        ],
        Some("imported-refresh-token-value\n"),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("consent 1 added"), "{}", run.stdout);
    assert!(!run.stdout.contains("imported-refresh-token-value"));

    // From a private file; a file readable by others is refused.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-refresh-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token_arg = token_file.to_str().unwrap();
    let add_args = [
        "add",
        "--owner",
        "other@example.org",
        "--prm",
        "32320647321714",
        "--until",
        "2027-06-01T00:00:00+02:00",
        "--refresh-token-file",
        token_arg,
    ];
    let run = consents(&config, &add_args, None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("readable by group or others"),
        "{}",
        run.stderr
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = consents(&config, &add_args, None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let run = consents(&config, &["list"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("ID"));
    // The owner is normalised; PRMs sorted; validity from Paris midnight.
    assert!(lines[1].contains("peer@example.org"), "{}", lines[1]);
    assert!(
        lines[1].contains("11453290002823,22516914714270"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("2025-12-31T23:00:00Z"), "{}", lines[1]);
    assert!(lines[1].contains("2026-12-31T23:00:00Z"), "{}", lines[1]);
    assert!(lines[1].trim_end().ends_with("yes"));
    assert!(lines[2].contains("2027-05-31T22:00:00Z"), "{}", lines[2]);
    for secret in [
        "imported-refresh-token-value",
        "file-refresh-token",
        "client-secret-value",
    ] {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    }
    let run = consents(&config, &["list", "--prm", "32320647321714"], None);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    let run = consents(&config, &["list", "--owner", "PEER@example.org"], None);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);

    // Both tokens really are in the store.
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    assert_eq!(
        store
            .tokens(1)
            .unwrap()
            .unwrap()
            .tokens
            .refresh_token
            .expose(),
        "imported-refresh-token-value"
    );
    assert_eq!(
        store
            .tokens(2)
            .unwrap()
            .unwrap()
            .tokens
            .refresh_token
            .expose(),
        "file-refresh-token"
    );
    drop(store);

    let run = consents(&config, &["remove", "1"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = consents(&config, &["remove", "1"], None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no consent with id 1"),
        "{}",
        run.stderr
    );
    let run = consents(&config, &["list"], None);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
}

/// `consents add` then `consents list` with `[store] url`: the consent and its
/// token are in PostgreSQL, and no SQLite file is made.
#[test]
fn admin_command_adds_and_lists_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = postgres::shared().fresh_database();
    let config = AgentConfig::new()
        .set("enedis.api", "v4")
        .set("enedis.base_url", "http://127.0.0.1:9")
        .set("store.url", url.as_str())
        .write(dir.path());
    let run = consents(
        &config,
        &[
            "add",
            "--owner",
            "Peer@Example.org",
            "--prm",
            "22516914714270,11453290002823",
            "--from",
            "2026-01-01",
            "--duration",
            "P1Y",
            "--refresh-token-file",
            "-",
        ],
        Some("postgres-refresh-token-value\n"),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("consent 1 added"), "{}", run.stdout);

    let run = consents(&config, &["list"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].starts_with("ID"));
    assert!(lines[1].contains("peer@example.org"), "{}", lines[1]);
    assert!(
        lines[1].contains("11453290002823,22516914714270"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("2025-12-31T23:00:00Z"), "{}", lines[1]);
    assert!(lines[1].trim_end().ends_with("yes"), "{}", lines[1]);
    assert!(!run.stdout.contains("postgres-refresh-token-value"));
    assert!(
        !dir.path().join("agent.db").exists(),
        "store.url names the store: no SQLite file"
    );

    let store = Store::connect(&Secret::new(url), None).unwrap();
    let consent = store.consent(1).unwrap().unwrap();
    assert_eq!(consent.owner, "peer@example.org");
    assert_eq!(
        store
            .tokens(1)
            .unwrap()
            .unwrap()
            .tokens
            .refresh_token
            .expose(),
        "postgres-refresh-token-value"
    );
}

#[test]
fn admin_command_refuses_bad_input_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "2026");
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "add",
                "--owner",
                "a@example.org",
                "--prm",
                "123",
                "--duration",
                "P1Y",
            ],
            "14 digits",
        ),
        (
            &[
                "add",
                "--owner",
                "a@example.org",
                "--prm",
                "22516914714270",
                "--duration",
                "P5Y",
            ],
            "at most 3 years",
        ),
        (
            &["add", "--owner", "a@example.org", "--prm", "22516914714270"],
            "--until",
        ),
        (
            &[
                "add",
                "--owner",
                "a@b/c d",
                "--prm",
                "22516914714270",
                "--duration",
                "P1Y",
            ],
            "--owner",
        ),
        (
            &[
                "add",
                "--owner",
                "a@example.org",
                "--prm",
                "22516914714270",
                "--duration",
                "P1Y",
                "--refresh-token-file",
                "-",
            ],
            "application token",
        ),
        (&["refresh"], "only v3 and v4"),
    ];
    for (args, expected) in cases {
        let run = consents(&config, args, Some("some-token\n"));
        assert_ne!(run.code, Some(0), "{args:?} succeeded");
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{}",
            run.stderr
        );
    }
}

on_both! {
    fn a_peers_consents_and_the_count_by_state_come_from_indexed_queries(t: &TestStore) {
        let store = &t.store;
        let a1 = store
            .add_consent(
                &new_consent(ApiGeneration::Api2026, "a@example.org", &["22516914714270"]),
                None,
            )
            .unwrap();
        store
            .add_consent(
                &new_consent(ApiGeneration::Api2026, "b@example.org", &["22516914714270"]),
                None,
            )
            .unwrap();
        let a2 = store
            .add_consent(
                &new_consent(
                    ApiGeneration::V5,
                    "a@example.org",
                    &["22516914714271", "22516914714272"],
                ),
                None,
            )
            .unwrap();
        store
            .set_consent_state(a2.id, ConsentState::Revoked)
            .unwrap();

        let own = store.consents_of_owner("a@example.org").unwrap();
        assert_eq!(own.iter().map(|c| c.id).collect::<Vec<_>>(), [a1.id, a2.id]);
        assert_eq!(own[1].prms.len(), 2);
        assert_eq!(own[1].state, ConsentState::Revoked);
        assert!(store.consents_of_owner("c@example.org").unwrap().is_empty());

        let mut counts = store.count_consents_by_state().unwrap();
        counts.sort_by_key(|(s, _)| s.as_str());
        assert_eq!(
            counts,
            [(ConsentState::Active, 2), (ConsentState::Revoked, 1)]
        );
    }
}

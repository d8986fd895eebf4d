//! Declared consents (Enedis SGE) in the store: adding, listing and revoking
//! them and which upstream serves a PRM, on both databases; the migration from
//! the previous schema with data in it, and the schema's rules at the SQL level
//! (on a connection of its own, as `sqlite3 agent.db` or `psql` would write), on
//! each database; the audit trail's guarantee holding for them exactly as for
//! Data Connect consents, on SQLite.

use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::Prm;
use quoalise_agent::store::migrations::{MIGRATIONS, latest_version};
use quoalise_agent::store::{
    Access, AccessBasis, AccessOutcome, AuditError, AuditFilter, Civility, ConsentState,
    ConsentUpstream, NewConsent, NewSgeConsent, PrmUpstream, SgeDeclaration, SgeHolder, Store,
    StoreError, now_seconds,
};
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use crate::backends::{Kind, TestStore};

const PEER: &str = "app@example.org";
const OTHER: &str = "other@example.org";
const P1: &str = "30001610071843";
const P2: &str = "22516914714270";
const P3: &str = "12345678901234";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn person() -> SgeDeclaration {
    SgeDeclaration {
        holder: SgeHolder::Person {
            civility: Some(Civility::Mme),
            last_name: "Dupont".into(),
            first_name: Some("Jeanne".into()),
        },
        mandate: "MANDAT-2026-0042".into(),
    }
}

fn company() -> SgeDeclaration {
    SgeDeclaration {
        holder: SgeHolder::Company {
            name: "Boulangerie Martin SARL".into(),
        },
        mandate: "contracts/2026/martin.pdf".into(),
    }
}

fn sge(owner: &str, prms: &[&str], from: i64, until: i64, d: SgeDeclaration) -> NewSgeConsent {
    NewSgeConsent {
        owner: owner.into(),
        prms: prms.iter().map(|p| prm(p)).collect(),
        valid_from: from,
        valid_until: until,
        declaration: d,
    }
}

fn data_connect(owner: &str, prms: &[&str], from: i64, until: i64) -> NewConsent {
    NewConsent {
        generation: ApiGeneration::V5,
        owner: owner.into(),
        prms: prms.iter().map(|p| prm(p)).collect(),
        autorisation_id: None,
        valid_from: from,
        valid_until: until,
    }
}

/// Every row of `table`, in its primary key's order, as raw SQLite values.
fn rows(conn: &Connection, table: &str, order: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Name and SQL of every trigger, by name.
fn triggers(conn: &Connection) -> Vec<(String, String)> {
    conn.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const TABLES: [(&str, &str); 7] = [
    ("consents", "id"),
    ("consent_prms", "consent_id, prm"),
    ("consent_tokens", "consent_id"),
    ("grants", "peer, prm"),
    ("audit", "id"),
    ("subscriptions", "id"),
    ("cache_days", "generation, prm, series, day"),
];

#[test]
fn a_store_of_the_previous_schema_keeps_every_row_and_rule_once_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    // The schema before the declared consents' migration (later migrations run
    // too when the store opens).
    let previous = MIGRATIONS
        .iter()
        .position(|m| m.name == "declared consents (Enedis SGE)")
        .unwrap();
    let now = now_seconds();
    let (from, until) = (now - 86_400, now + 300 * 86_400);
    // A store as the previous build left it, written with foreign keys on as the
    // agent writes: consents of three generations with PRMs and tokens, a deleted
    // consent that had the highest id, grants, audit rows, a subscription on a
    // consent, a cached day.
    let before_rows;
    let before_triggers;
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for migration in &MIGRATIONS[..previous] {
            conn.execute_batch(migration.sql).unwrap();
        }
        conn.execute_batch(&format!("PRAGMA user_version = {previous}"))
            .unwrap();
        let consent = |generation: &str, owner: &str, autorisation: Option<i64>| -> i64 {
            conn.execute(
                "INSERT INTO consents (generation, owner, autorisation_id, valid_from, \
                 valid_until, state, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?4, ?4)",
                params![generation, owner, autorisation, from, until],
            )
            .unwrap();
            conn.last_insert_rowid()
        };
        let c2026 = consent("2026", PEER, Some(987_654_321));
        let c4 = consent("v4", PEER, None);
        let c5 = consent("v5", OTHER, None);
        let gone = consent("v5", OTHER, None);
        assert_eq!((c2026, c4, c5, gone), (1, 2, 3, 4));
        conn.execute_batch(&format!(
            "INSERT INTO consent_prms VALUES ({c2026}, '{P1}'), ({c4}, '{P1}'), ({c4}, '{P2}'),
                                             ({c5}, '{P2}'), ({gone}, '{P3}');
             INSERT INTO consent_tokens VALUES ({c4}, 'refresh-v4', 'access-v4', {until}, {from});
             INSERT INTO grants VALUES ('{OTHER}', '{P3}');
             INSERT INTO audit (at, peer, command, prm, consent_id, outcome)
               VALUES ({now}, '{PEER}', 'get_history', '{P1}', {c2026}, 'allowed');
             INSERT INTO audit (at, peer, command, prm, consent_id, outcome)
               VALUES ({now}, '{OTHER}', 'get_history', '{P3}', {gone}, 'allowed');
             INSERT INTO audit (at, peer, command, outcome, error)
               VALUES ({now}, 'eve@example.org', 'get_history', 'refused', 'not-authorized');
             INSERT INTO subscriptions (peer, prm, series, consent_id, created_at, delivered_through)
               VALUES ('{PEER}', '{P1}', 'consumption/energy/active/daily', {c4}, {now}, '2026-01-01');
             INSERT INTO cache_days VALUES ('v4', '{P2}', 'consumption/energy/active/daily',
               '2026-01-01', x'01', {now});
             DELETE FROM consents WHERE id = {gone};"
        ))
        .unwrap();
        before_rows = TABLES.map(|(t, order)| rows(&conn, t, order));
        before_triggers = triggers(&conn);
    }

    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());
    assert_eq!(store.integrity_check().unwrap(), "ok");
    {
        let conn = Connection::open(&path).unwrap();
        // Every row is there, unchanged, ids included: nothing went through a
        // cascade when the old table was dropped.
        let after_rows = TABLES.map(|(t, order)| rows(&conn, t, order));
        for ((table, _), (before, after)) in TABLES.iter().zip(before_rows.iter().zip(&after_rows))
        {
            assert_eq!(before, after, "{table}");
        }
        assert_eq!(after_rows[1].len(), 4, "the PRMs of the consents left");
        // The triggers ON consents (cache, subscriptions) and the audit trail's are
        // there with the same text, plus the declarations' own.
        let after_triggers = triggers(&conn);
        let mut expected = before_triggers.clone();
        for own in [
            "sge_declarations_of_sge_consents",
            "sge_access_services_of_sge_consents",
        ] {
            expected.push((
                own.into(),
                after_triggers
                    .iter()
                    .find(|(n, _)| n == own)
                    .map(|(_, sql)| sql.clone())
                    .unwrap_or_else(|| panic!("the trigger {own}")),
            ));
        }
        expected.sort();
        assert_eq!(after_triggers, expected);
        assert!(
            before_triggers
                .iter()
                .any(|(n, _)| n == "cache_purge_on_consent_end")
        );
        let violations: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(violations, 0);
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'consents_owner'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
    }

    // The consents read as before.
    let all = store.list_consents().unwrap();
    assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0].autorisation_id, Some(987_654_321));
    assert_eq!(
        all[0].upstream(),
        ConsentUpstream::DataConnect(ApiGeneration::Api2026)
    );
    assert!(all[1].has_refresh_token && all[1].sge.is_none());
    // An id of a deleted consent (audit row 2 names consent 4) is not given again.
    let new = store
        .add_sge_consent(&sge(PEER, &[P3], from, until, person()))
        .unwrap();
    assert_eq!(new.id, 5);
    // The foreign keys cascade again, and the triggers ON consents still fire:
    // deleting the v4 consent takes its PRMs and its tokens, hands its subscription
    // to the peer's other consent, and purges the cached day only it covered.
    assert!(store.remove_consent(2).unwrap());
    let conn = Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM consent_prms WHERE consent_id = 2"),
        0
    );
    assert_eq!(count("SELECT count(*) FROM consent_tokens"), 0);
    // The subscription moved to the peer's other consent covering the PRM.
    assert_eq!(count("SELECT consent_id FROM subscriptions"), 1);
    assert_eq!(count("SELECT count(*) FROM cache_days"), 0);
    // The audit trail's guarantee still holds on the migrated consents.
    let access = |consent: i64, peer: &str, p: &str| Access {
        at: now,
        peer: peer.into(),
        command: "get_history".into(),
        prm: Some(prm(p)),
        series: None,
        range: None,
        basis: Some(AccessBasis::Consent(consent)),
        outcome: AccessOutcome::Allowed { error: None },
        upstream_calls: 0,
        duration_ms: None,
    };
    store.record_access(&access(1, PEER, P1)).unwrap();
    assert!(matches!(
        store.record_access(&access(2, PEER, P1)),
        Err(AuditError::NoBasis(_))
    ));
    store.record_access(&access(5, PEER, P3)).unwrap();
}

on_both! {
    fn sge_consents_are_added_listed_and_revoked_and_stay_on_record(t: &TestStore) {
        let store = &t.store;
        let now = now_seconds();
        let (from, until) = (now - 86_400, now + 365 * 86_400);
        let dc = store
            .add_consent(&data_connect(PEER, &[P1], from, until), None)
            .unwrap();
        let mut with_spaces = person();
        with_spaces.mandate = "  MANDAT-2026-0042 \n".into();
        let a = store
            .add_sge_consent(&sge(PEER, &[P2, P1, P2], from, until, with_spaces))
            .unwrap();
        let b = store
            .add_sge_consent(&sge(OTHER, &[P3], from, until, company()))
            .unwrap();
        assert_eq!(a.upstream(), ConsentUpstream::Sge);
        assert_eq!(a.upstream().as_str(), "sge");
        let mut sorted = vec![prm(P1), prm(P2)];
        sorted.sort();
        assert_eq!(a.prms, sorted, "sorted, once each");
        assert_eq!(a.sge, Some(person()), "trimmed");
        assert_eq!(a.state, ConsentState::Active);
        assert!(!a.has_refresh_token && a.autorisation_id.is_none());
        assert_eq!(
            a.sge.as_ref().unwrap().holder.to_string(),
            "Mme Jeanne Dupont"
        );
        assert_eq!(
            b.sge.as_ref().unwrap().holder.to_string(),
            "company Boulangerie Martin SARL"
        );

        // Committed before it was acknowledged: another connection sees it.
        let other = t.reopen();
        assert_eq!(other.consent(b.id).unwrap().unwrap().sge, Some(company()));
        let all = other.list_consents().unwrap();
        assert_eq!(
            all.iter().map(|c| c.id).collect::<Vec<_>>(),
            [dc.id, a.id, b.id]
        );
        assert_eq!(all.iter().filter(|c| c.is_sge()).count(), 2);

        // The Data Connect queries leave SGE consents out; the SGE ones keep to them.
        let ids =
            |v: Vec<quoalise_agent::store::Consent>| v.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.consents_for_peer(PEER, &prm(P1), now).unwrap()),
            [dc.id]
        );
        assert_eq!(ids(store.consents_of_owner(PEER).unwrap()), [dc.id]);
        assert_eq!(
            ids(store
                .usable_consents_for_prm(ApiGeneration::V5, &prm(P1), now)
                .unwrap()),
            [dc.id]
        );
        assert_eq!(
            ids(store.sge_consents_for_peer(PEER, &prm(P1), now).unwrap()),
            [a.id]
        );
        assert!(
            store
                .sge_consents_for_peer(OTHER, &prm(P1), now)
                .unwrap()
                .is_empty()
        );
        assert_eq!(ids(store.sge_consents_of_owner(OTHER).unwrap()), [b.id]);
        // Validity is [from, until[.
        assert!(
            store
                .sge_consents_for_peer(PEER, &prm(P1), from - 1)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .sge_consents_for_peer(PEER, &prm(P1), until)
                .unwrap()
                .is_empty()
        );
        let mut counts = store.count_consents_by_state().unwrap();
        counts.sort_by_key(|(s, _)| s.as_str());
        assert_eq!(counts, [(ConsentState::Active, 3)]);

        // Revoked: kept, with its holder and mandate, and never used again.
        let revoked = store.revoke_consent(a.id).unwrap();
        assert_eq!(revoked.state, ConsentState::Revoked);
        assert_eq!(revoked.sge, Some(person()));
        let kept = store.consent(a.id).unwrap().unwrap();
        assert_eq!(
            (kept.state, kept.sge),
            (ConsentState::Revoked, Some(person()))
        );
        assert!(
            store
                .sge_consents_for_peer(PEER, &prm(P1), now)
                .unwrap()
                .is_empty()
        );
        assert_eq!(ids(store.sge_consents_of_owner(PEER).unwrap()), [a.id]);
        let err = store.revoke_consent(a.id).unwrap_err().to_string();
        assert!(err.contains("already revoked"), "{err}");
        assert!(matches!(
            store.revoke_consent(999),
            Err(StoreError::NoSuchConsent(999))
        ));

        // Past its validity, housekeeping marks it expired like any other.
        let short = store
            .add_sge_consent(&sge(PEER, &[P3], from, now + 10, person()))
            .unwrap();
        assert_eq!(store.expire_consents(now + 10).unwrap(), 1);
        assert_eq!(
            store.consent(short.id).unwrap().unwrap().state,
            ConsentState::Expired
        );
        let err = store.revoke_consent(short.id).unwrap_err().to_string();
        assert!(err.contains("already expired"), "{err}");
    }

    fn which_upstream_serves_a_prm(t: &TestStore) {
        let store = &t.store;
        let now = now_seconds();
        let (from, until) = (now - 86_400, now + 365 * 86_400);
        store
            .add_consent(&data_connect(PEER, &[P1, P2], from, until), None)
            .unwrap();
        let a = store
            .add_sge_consent(&sge(PEER, &[P2], from, until, person()))
            .unwrap();
        let b = store
            .add_sge_consent(&sge(OTHER, &[P2, P3], from, until, company()))
            .unwrap();
        // Not valid yet: it serves nothing.
        store
            .add_sge_consent(&sge(OTHER, &[P1], now + 86_400, until, company()))
            .unwrap();

        assert_eq!(
            store.upstream_for_prm(&prm(P1), now).unwrap(),
            PrmUpstream::DataConnect
        );
        assert_eq!(
            store.upstream_for_prm(&prm(P2), now).unwrap(),
            PrmUpstream::Sge {
                consents: vec![b.id, a.id]
            }
        );
        assert_eq!(
            store.sge_prms_at(now).unwrap(),
            [prm(P2), prm(P3)].into_iter().collect()
        );
        assert_eq!(store.sge_prms_at(now + 2 * 86_400).unwrap().len(), 3);

        store.revoke_consent(b.id).unwrap();
        assert_eq!(
            store.upstream_for_prm(&prm(P2), now).unwrap(),
            PrmUpstream::Sge {
                consents: vec![a.id]
            }
        );
        assert_eq!(
            store.upstream_for_prm(&prm(P3), now).unwrap(),
            PrmUpstream::DataConnect
        );
        store.revoke_consent(a.id).unwrap();
        assert_eq!(
            store.upstream_for_prm(&prm(P2), now).unwrap(),
            PrmUpstream::DataConnect
        );
        assert!(store.sge_prms_at(now).unwrap().is_empty());
        // After its end, even active, an SGE consent serves nothing.
        assert_eq!(
            store.upstream_for_prm(&prm(P1), until).unwrap(),
            PrmUpstream::DataConnect
        );
    }

    fn invalid_sge_consents_are_refused_precisely_and_nothing_is_stored(t: &TestStore) {
        let store = &t.store;
        let now = now_seconds();
        let (from, until) = (now, now + 365 * 86_400);
        let good = || sge(PEER, &[P1], from, until, person());
        let with = |f: &dyn Fn(&mut NewSgeConsent)| {
            let mut c = good();
            f(&mut c);
            c
        };
        let long = "x".repeat(256);
        let cases: Vec<(NewSgeConsent, &str)> = vec![
            (
                with(&|c| c.owner = "app@example.org/phone".into()),
                "bare JID",
            ),
            (with(&|c| c.prms.clear()), "at least one PRM"),
            (with(&|c| c.valid_until = c.valid_from), "validity is empty"),
            (
                with(&|c| c.valid_until = now + 4 * 366 * 86_400),
                "at most 3 years",
            ),
            (
                with(&|c| c.declaration.mandate = "  ".into()),
                "mandate reference is empty",
            ),
            (
                with(&|c| c.declaration.mandate = "a\nb".into()),
                "control character",
            ),
            (
                with(&|c| c.declaration.holder = SgeHolder::Company { name: long.clone() }),
                "256 characters long",
            ),
            (
                with(&|c| {
                    c.declaration.holder = SgeHolder::Person {
                        civility: None,
                        last_name: " ".into(),
                        first_name: None,
                    }
                }),
                "last name is empty",
            ),
            (
                with(&|c| {
                    c.declaration.holder = SgeHolder::Person {
                        civility: None,
                        last_name: "Dupont".into(),
                        first_name: Some(String::new()),
                    }
                }),
                "first name is empty",
            ),
        ];
        for (consent, expected) in cases {
            let err = store.add_sge_consent(&consent).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err}");
        }
        assert!(
            store.list_consents().unwrap().is_empty(),
            "nothing half-written"
        );
        // Three years ahead exactly is accepted.
        let limit = quoalise_agent::store::consents::sge_limit(now_seconds()).unwrap();
        store
            .add_sge_consent(&with(&|c| c.valid_until = limit))
            .unwrap();
    }
}

fn is_abort(result: rusqlite::Result<usize>, needle: &str) {
    match result {
        Err(rusqlite::Error::SqliteFailure(e, Some(message))) => {
            assert_eq!(
                e.code,
                rusqlite::ErrorCode::ConstraintViolation,
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("expected a constraint violation, got {other:?}"),
    }
}

/// An allowed audit row on consent `consent`, through the store's API (a plain
/// insert: the database decides).
fn allowed(store: &Store, at: i64, peer: &str, p: &str, consent: i64) -> Result<i64, AuditError> {
    store.record_access(&Access {
        at,
        peer: peer.into(),
        command: "get_history".into(),
        prm: Some(prm(p)),
        series: None,
        range: None,
        basis: Some(AccessBasis::Consent(consent)),
        outcome: AccessOutcome::Allowed { error: None },
        upstream_calls: 1,
        duration_ms: None,
    })
}

fn refused(result: Result<i64, AuditError>) {
    assert!(
        matches!(result, Err(AuditError::NoBasis(_))),
        "expected the database to refuse it: {result:?}"
    );
}

on_both! {
    fn the_audit_trail_needs_a_valid_sge_consent_as_it_needs_any_consent(t: &TestStore) {
        let store = &t.store;
        let now = now_seconds();
        let (from, until) = (now - 10 * 86_400, now + 100 * 86_400);
        let revoked = store
            .add_sge_consent(&sge(PEER, &[P1], from, until, person()))
            .unwrap()
            .id;
        let valid = store
            .add_sge_consent(&sge(PEER, &[P2], from, until, company()))
            .unwrap()
            .id;
        let ending = store
            .add_sge_consent(&sge(PEER, &[P3], from, now + 5, person()))
            .unwrap()
            .id;

        // Valid: an allowed row goes through, on each.
        allowed(store, now, PEER, P1, revoked).unwrap();
        allowed(store, now, PEER, P2, valid).unwrap();
        allowed(store, now, PEER, P3, ending).unwrap();
        // Outside its validity, for another peer, for a PRM it does not cover.
        refused(allowed(store, from - 1, PEER, P2, valid));
        refused(allowed(store, until, PEER, P2, valid));
        refused(allowed(store, now, OTHER, P2, valid));
        refused(allowed(store, now, PEER, P1, valid));
        // Revoked by the operator: no allowed row any more, even inside its validity.
        store.revoke_consent(revoked).unwrap();
        refused(allowed(store, now, PEER, P1, revoked));
        // Expired by housekeeping: none either, even at an instant it covered.
        store.expire_consents(now + 5).unwrap();
        assert_eq!(
            store.consent(ending).unwrap().unwrap().state,
            ConsentState::Expired
        );
        refused(allowed(store, now, PEER, P3, ending));
        // Another handle (a restarted agent, the other instance) sees the same rows.
        allowed(&t.reopen(), now, PEER, P2, valid).unwrap();
        let rows = store.audit(&AuditFilter::default()).unwrap();
        assert_eq!(rows.iter().filter(|r| r.outcome == "allowed").count(), 4);
    }
}

#[test]
fn the_schema_keeps_declarations_to_sge_consents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(&path).unwrap();
    let now = now_seconds();
    let dc = store
        .add_consent(&data_connect(PEER, &[P1], now, now + 86_400), None)
        .unwrap()
        .id;
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    // A Data Connect consent has no declaration.
    is_abort(
        conn.execute(
            "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES (?1, 'X', 'M-1')",
            params![dc],
        ),
        "only a consent of generation sge",
    );
    // An SGE consent has no autorisation_id.
    is_abort(
        conn.execute(
            "INSERT INTO consents (generation, owner, autorisation_id, valid_from, valid_until, \
             state, created_at, updated_at) VALUES ('sge', ?1, 7, 1, 2, 'active', 1, 1)",
            params![PEER],
        ),
        "CHECK",
    );
    conn.execute(
        "INSERT INTO consents (generation, owner, valid_from, valid_until, state, created_at, \
         updated_at) VALUES ('sge', ?1, 1, 2, 'active', 1, 1)",
        params![PEER],
    )
    .unwrap();
    let id = conn.last_insert_rowid();
    for (sql, needle) in [
        // A person and a company at once; neither.
        (
            "INSERT INTO sge_declarations (consent_id, last_name, company, mandate) VALUES (?1, 'A', 'B', 'M')",
            "CHECK",
        ),
        (
            "INSERT INTO sge_declarations (consent_id, mandate) VALUES (?1, 'M')",
            "CHECK",
        ),
        // A company with a civility; an unknown civility; no mandate.
        (
            "INSERT INTO sge_declarations (consent_id, company, civility, mandate) VALUES (?1, 'B', 'M', 'M')",
            "CHECK",
        ),
        (
            "INSERT INTO sge_declarations (consent_id, last_name, civility, mandate) VALUES (?1, 'A', 'Dr', 'M')",
            "CHECK",
        ),
        (
            "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES (?1, 'A', ' ')",
            "CHECK",
        ),
    ] {
        is_abort(conn.execute(sql, params![id]), needle);
    }
    // The store refuses to read an SGE consent without its declaration.
    let err = store.consent(id).unwrap_err().to_string();
    assert!(err.contains("without its declaration"), "{err}");
    // Deleting an SGE consent takes its declaration along.
    conn.execute(
        "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES (?1, 'A', 'M-2')",
        params![id],
    )
    .unwrap();
    conn.execute("DELETE FROM consents WHERE id = ?1", params![id])
        .unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM sge_declarations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// A statement refused by an integrity rule of PostgreSQL (SQLSTATE class 23:
/// a `CHECK`, a foreign key, a trigger of the schema), whose message holds
/// `needle`.
fn is_pg_violation(result: Result<u64, ::postgres::Error>, needle: &str) {
    let err = match result {
        Ok(n) => panic!("expected a violation of {needle:?}, {n} rows written"),
        Err(err) => err,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a database error, got {err:?}"));
    assert!(
        db.code().code().starts_with("23"),
        "{}: {}",
        db.code().code(),
        db.message()
    );
    assert!(db.message().contains(needle), "{}", db.message());
}

/// Every row of `table` as JSON text, in `order`.
fn pg_rows(client: &mut ::postgres::Client, table: &str, order: &str) -> Vec<String> {
    client
        .query(
            &format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The twin of the SQLite migration test, for what PostgreSQL's migration 7
/// does: a database at the previous version, with consents of three
/// generations, PRMs, tokens and a deleted consent of the highest id, keeps
/// every row and its id; ids go on after the deleted one; the cascades hold; the
/// widened `CHECK` takes SGE consents and refuses an `autorisation_id` on them.
#[test]
fn a_postgres_store_of_the_previous_schema_keeps_every_row_and_rule_once_migrated() {
    use quoalise_agent::store::postgres::migrations::MIGRATIONS as PG_MIGRATIONS;
    let server = crate::common::postgres::shared();
    let url = server.fresh_database();
    let mut client = server.client_of(&url);
    let previous = PG_MIGRATIONS
        .iter()
        .position(|m| m.name == "declared consents (Enedis SGE)")
        .unwrap();
    let now = now_seconds();
    let (from, until) = (now - 86_400, now + 300 * 86_400);
    client
        .batch_execute(
            "CREATE TABLE store_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at BIGINT NOT NULL)",
        )
        .unwrap();
    for (index, migration) in PG_MIGRATIONS[..previous].iter().enumerate() {
        client.batch_execute(migration.sql).unwrap();
        client
            .execute(
                "INSERT INTO store_migrations VALUES ($1, $2, 0)",
                &[&(index as i64 + 1), &migration.name],
            )
            .unwrap();
    }
    let mut consent = |generation: &str, owner: &str, autorisation: Option<i64>| -> i64 {
        client
            .query_one(
                "INSERT INTO consents (generation, owner, autorisation_id, valid_from, \
                 valid_until, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $4, $4) RETURNING id",
                &[&generation, &owner, &autorisation, &from, &until],
            )
            .unwrap()
            .get(0)
    };
    let c2026 = consent("2026", PEER, Some(987_654_321));
    let c4 = consent("v4", PEER, None);
    let c5 = consent("v5", OTHER, None);
    let gone = consent("v5", OTHER, None);
    assert_eq!((c2026, c4, c5, gone), (1, 2, 3, 4));
    client
        .batch_execute(&format!(
            "INSERT INTO consent_prms VALUES ({c2026}, '{P1}'), ({c4}, '{P1}'), ({c4}, '{P2}'),
                                             ({c5}, '{P2}'), ({gone}, '{P3}');
             INSERT INTO consent_tokens VALUES ({c4}, 'refresh-v4', 'access-v4', {until}, {from});
             DELETE FROM consents WHERE id = {gone};"
        ))
        .unwrap();
    let tables = [
        ("consents", "id"),
        ("consent_prms", "consent_id, prm"),
        ("consent_tokens", "consent_id"),
    ];
    let before = tables.map(|(table, order)| pg_rows(&mut client, table, order));

    let store = Store::connect(&quoalise_agent::config::Secret::new(url), None).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());
    let after = tables.map(|(table, order)| pg_rows(&mut client, table, order));
    assert_eq!(before, after);
    assert_eq!(after[1].len(), 4, "the PRMs of the consents left");

    let all = store.list_consents().unwrap();
    assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0].autorisation_id, Some(987_654_321));
    assert!(all[1].has_refresh_token && all[1].sge.is_none());
    // An id of a deleted consent is not given again.
    let new = store
        .add_sge_consent(&sge(PEER, &[P3], from, until, person()))
        .unwrap();
    assert_eq!(new.id, 5);
    is_pg_violation(
        client.execute(
            "INSERT INTO consents (generation, owner, autorisation_id, valid_from, valid_until, \
             state, created_at, updated_at) VALUES ('sge', $1, 7, 1, 2, 'active', 1, 1)",
            &[&PEER],
        ),
        "check constraint",
    );
    // The cascades still hold.
    assert!(store.remove_consent(2).unwrap());
    let count = |client: &mut ::postgres::Client, sql: &str| -> i64 {
        client.query_one(sql, &[]).unwrap().get(0)
    };
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM consent_prms WHERE consent_id = 2"
        ),
        0
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM consent_tokens"), 0);
}

/// The twin of the SQLite schema test: the same rules, enforced by
/// PostgreSQL's `CHECK`s, trigger and cascade.
#[test]
fn the_postgres_schema_keeps_declarations_to_sge_consents() {
    let t = TestStore::new(Kind::Postgres);
    let store = &t.store;
    let now = now_seconds();
    let dc = store
        .add_consent(&data_connect(PEER, &[P1], now, now + 86_400), None)
        .unwrap()
        .id;
    let mut client = t.postgres_client().unwrap();
    // A Data Connect consent has no declaration.
    is_pg_violation(
        client.execute(
            "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES ($1, 'X', 'M-1')",
            &[&dc],
        ),
        "only a consent of generation sge",
    );
    // Nor does a consent that does not exist (the trigger answers first).
    is_pg_violation(
        client.execute(
            "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES (999, 'X', 'M')",
            &[],
        ),
        "only a consent of generation sge",
    );
    // An SGE consent has no autorisation_id.
    is_pg_violation(
        client.execute(
            "INSERT INTO consents (generation, owner, autorisation_id, valid_from, valid_until, \
             state, created_at, updated_at) VALUES ('sge', $1, 7, 1, 2, 'active', 1, 1)",
            &[&PEER],
        ),
        "check constraint",
    );
    // Nor an unknown generation.
    is_pg_violation(
        client.execute(
            "INSERT INTO consents (generation, owner, valid_from, valid_until, state, \
             created_at, updated_at) VALUES ('v2', $1, 1, 2, 'active', 1, 1)",
            &[&PEER],
        ),
        "check constraint",
    );
    let id: i64 = client
        .query_one(
            "INSERT INTO consents (generation, owner, valid_from, valid_until, state, \
             created_at, updated_at) VALUES ('sge', $1, 1, 2, 'active', 1, 1) RETURNING id",
            &[&PEER],
        )
        .unwrap()
        .get(0);
    for sql in [
        // A person and a company at once; neither.
        "INSERT INTO sge_declarations (consent_id, last_name, company, mandate) \
         VALUES ($1, 'A', 'B', 'M')",
        "INSERT INTO sge_declarations (consent_id, mandate) VALUES ($1, 'M')",
        // A company with a civility; an unknown civility; no mandate; a name too long.
        "INSERT INTO sge_declarations (consent_id, company, civility, mandate) \
         VALUES ($1, 'B', 'M', 'M')",
        "INSERT INTO sge_declarations (consent_id, last_name, civility, mandate) \
         VALUES ($1, 'A', 'Dr', 'M')",
        "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES ($1, 'A', ' ')",
        "INSERT INTO sge_declarations (consent_id, last_name, mandate) \
         VALUES ($1, repeat('x', 256), 'M')",
    ] {
        is_pg_violation(client.execute(sql, &[&id]), "check constraint");
    }
    // The store refuses to read an SGE consent without its declaration.
    let err = store.consent(id).unwrap_err().to_string();
    assert!(err.contains("without its declaration"), "{err}");
    // Deleting an SGE consent takes its declaration along.
    client
        .execute(
            "INSERT INTO sge_declarations (consent_id, last_name, mandate) VALUES ($1, 'A', 'M-2')",
            &[&id],
        )
        .unwrap();
    assert_eq!(
        store.consent(id).unwrap().unwrap().sge.unwrap().mandate,
        "M-2"
    );
    client
        .execute("DELETE FROM consents WHERE id = $1", &[&id])
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM sge_declarations", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

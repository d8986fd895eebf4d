//! The audit trail's guarantee, enforced by the schema of a real SQLite file: an
//! access without a valid consent or grant at the moment of the call cannot be
//! recorded as allowed, whether through the store's API or by a direct INSERT on
//! another connection (what `sqlite3 agent.db` would do). Also: grants mirror the
//! configuration by difference, recorded rows cannot be changed, and the filters of
//! `quoalise-agent audit` select what they say.

use std::path::Path;

use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Prm, Series};
use quoalise_agent::store::{
    Access, AccessBasis, AccessError, AccessOutcome, AuditError, AuditFilter, ConsentState,
    NewConsent, Store,
};
use rusqlite::{Connection, params};

const PEER: &str = "app@example.org";
const OTHER: &str = "other@example.org";
const P1: &str = "30001610071843";
const P2: &str = "22516914714270";
const P3: &str = "12345678901234";
/// 2026-11-01T00:00:00Z and a year later.
const FROM: i64 = 1_793_491_200;
const UNTIL: i64 = FROM + 365 * 86_400;

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn consent(store: &Store, owner: &str, prms: &[&str]) -> i64 {
    store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: owner.into(),
                prms: prms.iter().map(|p| prm(p)).collect(),
                autorisation_id: Some(42),
                valid_from: FROM,
                valid_until: UNTIL,
            },
            None,
        )
        .unwrap()
        .id
}

fn access(at: i64, peer: &str, p: &str, basis: Option<AccessBasis>, allowed: bool) -> Access {
    Access {
        at,
        peer: peer.into(),
        command: "get_history".into(),
        prm: Some(prm(p)),
        series: Some(Series::ConsumptionPower.into()),
        range: Some((FROM, FROM + 7 * 86_400)),
        basis,
        outcome: if allowed {
            AccessOutcome::Allowed { error: None }
        } else {
            AccessOutcome::Refused(AccessError {
                condition: "not-authorized".into(),
                code: None,
                text: "no consent for that PRM".into(),
            })
        },
        upstream_calls: 2,
        duration_ms: Some(12),
    }
}

/// A direct INSERT of an `allowed` row on a connection of its own.
fn raw_insert(
    path: &Path,
    at: i64,
    peer: &str,
    p: &str,
    consent: Option<i64>,
    grant: bool,
) -> rusqlite::Result<usize> {
    let conn = Connection::open(path)?;
    conn.execute(
        "INSERT INTO audit (at, peer, command, prm, series, consent_id, via_grant, outcome) \
         VALUES (?1, ?2, 'get_history', ?3, 'consumption/power/active/raw', ?4, ?5, 'allowed')",
        params![at, peer, p, consent, grant],
    )
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

#[test]
fn a_direct_insert_of_an_allowed_access_without_a_basis_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(&path).unwrap();
    let id = consent(&store, PEER, &[P1]);
    let other = consent(&store, OTHER, &[P2]);
    store.sync_grants([(OTHER, &[prm(P3)][..])]).unwrap();
    let during = FROM + 10 * 86_400;
    let basis = "needs a consent of that peer valid at that time";

    // The valid cases go through.
    assert_eq!(
        raw_insert(&path, during, PEER, P1, Some(id), false).unwrap(),
        1
    );
    assert_eq!(raw_insert(&path, during, OTHER, P3, None, true).unwrap(), 1);

    // No basis at all: the trigger (it runs before the CHECK constraints).
    is_abort(raw_insert(&path, during, PEER, P1, None, false), basis);
    // Both a consent and a grant: CHECK too (exactly one basis).
    is_abort(raw_insert(&path, during, PEER, P1, Some(id), true), "CHECK");
    // A consent that does not exist, of another peer, or not covering the PRM.
    is_abort(raw_insert(&path, during, PEER, P1, Some(999), false), basis);
    is_abort(
        raw_insert(&path, during, PEER, P2, Some(other), false),
        basis,
    );
    is_abort(raw_insert(&path, during, PEER, P2, Some(id), false), basis);
    // Outside the consent's validity, on either side (valid_until excluded).
    is_abort(
        raw_insert(&path, FROM - 1, PEER, P1, Some(id), false),
        basis,
    );
    is_abort(raw_insert(&path, UNTIL, PEER, P1, Some(id), false), basis);
    // A grant of another peer, or for another PRM.
    is_abort(raw_insert(&path, during, PEER, P3, None, true), basis);
    is_abort(raw_insert(&path, during, OTHER, P1, None, true), basis);
    // A revoked consent.
    store.set_consent_state(id, ConsentState::Revoked).unwrap();
    is_abort(raw_insert(&path, during, PEER, P1, Some(id), false), basis);
    // A grant removed from the configuration.
    store.sync_grants(std::iter::empty()).unwrap();
    is_abort(raw_insert(&path, during, OTHER, P3, None, true), basis);

    // Refused rows need no basis but need a reason.
    let conn = Connection::open(&path).unwrap();
    let refused = |error: Option<&str>| {
        conn.execute(
            "INSERT INTO audit (at, peer, command, prm, outcome, error) \
             VALUES (?1, ?2, 'get_history', ?3, 'refused', ?4)",
            params![during, PEER, P2, error],
        )
    };
    assert_eq!(refused(Some("not-authorized")).unwrap(), 1);
    is_abort(refused(None), "CHECK");

    // A recorded refusal cannot be turned into an allowed access afterwards.
    is_abort(
        conn.execute(
            "UPDATE audit SET outcome = 'allowed', consent_id = ?1",
            params![id],
        ),
        "cannot be changed",
    );
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE outcome = 'allowed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 2, "only the two valid rows were recorded");
}

#[test]
fn the_store_api_refuses_an_allowed_access_without_a_basis() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let id = consent(&store, PEER, &[P1]);
    let during = FROM + 86_400;

    let ok = store
        .record_access(&access(
            during,
            PEER,
            P1,
            Some(AccessBasis::Consent(id)),
            true,
        ))
        .unwrap();
    assert!(ok > 0);
    // The peer asked for another peer's PRM: refused, recorded as such.
    store
        .record_access(&access(during, PEER, P2, None, false))
        .unwrap();
    for (a, why) in [
        (
            access(during, PEER, P2, Some(AccessBasis::Consent(id)), true),
            "PRM not covered",
        ),
        (
            access(during, OTHER, P1, Some(AccessBasis::Consent(id)), true),
            "another owner",
        ),
        (
            access(during, PEER, P1, Some(AccessBasis::Grant), true),
            "no grant",
        ),
        (access(during, PEER, P1, None, true), "no basis"),
        (
            access(UNTIL + 5, PEER, P1, Some(AccessBasis::Consent(id)), true),
            "after validity",
        ),
    ] {
        match store.record_access(&a) {
            Err(AuditError::NoBasis(message)) => {
                assert!(
                    message.contains("cannot record an allowed access"),
                    "{why}: {message}"
                )
            }
            other => panic!("{why}: expected NoBasis, got {other:?}"),
        }
    }
    let all = store.audit(&AuditFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].outcome, "allowed");
    assert_eq!(all[0].consent_id, Some(id));
    assert_eq!(all[0].upstream_calls, 2);
    assert_eq!(all[1].outcome, "refused");
    assert_eq!(all[1].error.as_deref(), Some("not-authorized"));
    assert_eq!(all[1].detail.as_deref(), Some("no consent for that PRM"));
}

#[test]
fn grants_follow_the_configuration_by_difference() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let a = [prm(P1), prm(P2)];
    let changes = store.sync_grants([(PEER, &a[..])]).unwrap();
    assert_eq!(changes.added.len(), 2);
    assert!(changes.removed.is_empty());
    // Same configuration again: nothing changes (nothing is purged on reload).
    let changes = store.sync_grants([(PEER, &a[..])]).unwrap();
    assert_eq!(changes, Default::default());
    let b = [prm(P2)];
    let c = [prm(P3)];
    let changes = store
        .sync_grants([(PEER, &b[..]), (OTHER, &c[..])])
        .unwrap();
    assert_eq!(changes.removed, vec![(PEER.to_owned(), prm(P1))]);
    assert_eq!(changes.added, vec![(OTHER.to_owned(), prm(P3))]);
    assert_eq!(
        store.grants().unwrap(),
        vec![(PEER.to_owned(), prm(P2)), (OTHER.to_owned(), prm(P3))]
    );
    assert!(store.has_grant(PEER, &prm(P2)).unwrap());
    assert!(!store.has_grant(PEER, &prm(P1)).unwrap());
    assert_eq!(
        store.access_basis(OTHER, &prm(P3), FROM).unwrap(),
        Some(AccessBasis::Grant)
    );
    let id = consent(&store, OTHER, &[P3]);
    assert_eq!(
        store.access_basis(OTHER, &prm(P3), FROM).unwrap(),
        Some(AccessBasis::Consent(id)),
        "a consent of the peer comes first"
    );
    assert_eq!(store.access_basis(OTHER, &prm(P1), FROM).unwrap(), None);
}

#[test]
fn filters_select_by_peer_prm_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    for i in 0..10 {
        let peer = if i % 2 == 0 { PEER } else { OTHER };
        let p = if i < 5 { P1 } else { P2 };
        store
            .record_access(&access(FROM + i * 3600, peer, p, None, false))
            .unwrap();
    }
    let count = |f: AuditFilter| store.audit(&f).unwrap().len();
    assert_eq!(count(AuditFilter::default()), 10);
    assert_eq!(
        count(AuditFilter {
            peer: Some(PEER.into()),
            ..Default::default()
        }),
        5
    );
    assert_eq!(
        count(AuditFilter {
            prm: Some(prm(P2)),
            peer: Some(OTHER.into()),
            ..Default::default()
        }),
        3
    );
    let window = store
        .audit(&AuditFilter {
            since: Some(FROM + 2 * 3600),
            until: Some(FROM + 4 * 3600),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        window.iter().map(|r| r.at).collect::<Vec<_>>(),
        vec![FROM + 2 * 3600, FROM + 3 * 3600]
    );
    let last = store
        .audit(&AuditFilter {
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        last.iter().map(|r| r.at).collect::<Vec<_>>(),
        vec![FROM + 7 * 3600, FROM + 8 * 3600, FROM + 9 * 3600],
        "the most recent, oldest first"
    );
}

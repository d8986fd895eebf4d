//! The audit trail's guarantee, enforced by the database itself, on both stores
//! (a SQLite file and a PostgreSQL database): an access without a valid consent
//! or grant at the moment of the call cannot be recorded as allowed, whether
//! through the store's API or by a direct INSERT on another connection (what
//! `sqlite3 agent.db` or `psql` would do; on PostgreSQL as the superuser, whom
//! a trigger binds as well). Also: grants mirror the configuration by
//! difference, recorded rows cannot be changed, old rows leave only by
//! retention, and the filters of `quoalise-agent audit` select what they say.

use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Prm, Series};
use quoalise_agent::store::{
    Access, AccessBasis, AccessError, AccessOutcome, AuditError, AuditFilter, ConsentState,
    NewConsent, NewSgeConsent, SgeDeclaration, SgeHolder, Store,
};
use rusqlite::{Connection, params};

use crate::backends::{Kind, TestStore};

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

/// A connection of its own on the store's database, outside the agent: what
/// `sqlite3 agent.db` or `psql` (as the superuser) would do.
enum Raw {
    Sqlite(Connection),
    Postgres(::postgres::Client),
}

/// The database refused a statement: whether a constraint did (SQLite's
/// `SQLITE_CONSTRAINT`, PostgreSQL's SQLSTATE class 23, which the triggers
/// raise), and its message.
#[derive(Debug)]
struct Refusal {
    constraint: bool,
    message: String,
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Refusal {
        match &e {
            rusqlite::Error::SqliteFailure(f, message) => Refusal {
                constraint: f.code == rusqlite::ErrorCode::ConstraintViolation,
                message: message.clone().unwrap_or_else(|| e.to_string()),
            },
            _ => Refusal {
                constraint: false,
                message: e.to_string(),
            },
        }
    }
}

impl From<::postgres::Error> for Refusal {
    fn from(e: ::postgres::Error) -> Refusal {
        match e.as_db_error() {
            Some(db) => Refusal {
                constraint: db.code().code().starts_with("23"),
                message: db.message().to_owned(),
            },
            None => Refusal {
                constraint: false,
                message: e.to_string(),
            },
        }
    }
}

impl Raw {
    fn open(t: &TestStore) -> Raw {
        match t.kind {
            Kind::Sqlite => Raw::Sqlite(Connection::open(t.dir.path().join("agent.db")).unwrap()),
            Kind::Postgres => Raw::Postgres(t.postgres_client().unwrap()),
        }
    }

    /// A direct INSERT of an `allowed` row.
    fn allowed(
        &mut self,
        at: i64,
        peer: &str,
        p: &str,
        consent: Option<i64>,
        grant: bool,
    ) -> Result<u64, Refusal> {
        match self {
            Raw::Sqlite(conn) => Ok(conn.execute(
                "INSERT INTO audit (at, peer, command, prm, series, consent_id, via_grant, outcome) \
                 VALUES (?1, ?2, 'get_history', ?3, 'consumption/power/active/raw', ?4, ?5, 'allowed')",
                params![at, peer, p, consent, grant],
            )? as u64),
            Raw::Postgres(client) => Ok(client.execute(
                "INSERT INTO audit (at, peer, command, prm, series, consent_id, via_grant, outcome) \
                 VALUES ($1, $2, 'get_history', $3, 'consumption/power/active/raw', $4, $5, 'allowed')",
                &[&at, &peer, &p, &consent, &grant],
            )?),
        }
    }

    /// A direct INSERT of a `refused` row, with `error` as its reason.
    fn refused(
        &mut self,
        at: i64,
        peer: &str,
        p: &str,
        error: Option<&str>,
    ) -> Result<u64, Refusal> {
        match self {
            Raw::Sqlite(conn) => Ok(conn.execute(
                "INSERT INTO audit (at, peer, command, prm, outcome, error) \
                 VALUES (?1, ?2, 'get_history', ?3, 'refused', ?4)",
                params![at, peer, p, error],
            )? as u64),
            Raw::Postgres(client) => Ok(client.execute(
                "INSERT INTO audit (at, peer, command, prm, outcome, error) \
                 VALUES ($1, $2, 'get_history', $3, 'refused', $4)",
                &[&at, &peer, &p, &error],
            )?),
        }
    }

    /// Statements without parameters, as one batch.
    fn batch(&mut self, sql: &str) -> Result<(), Refusal> {
        match self {
            Raw::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Raw::Postgres(client) => Ok(client.batch_execute(sql)?),
        }
    }

    fn count(&mut self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(conn) => conn.query_row(sql, [], |r| r.get(0)).unwrap(),
            Raw::Postgres(client) => client.query_one(sql, &[]).unwrap().get(0),
        }
    }
}

/// The database refused with a constraint whose message holds `needle`
/// (case aside: SQLite says `CHECK constraint failed`, PostgreSQL `violates
/// check constraint`).
fn is_abort<T: std::fmt::Debug>(result: Result<T, Refusal>, needle: &str) {
    match result {
        Err(Refusal {
            constraint: true,
            message,
        }) => assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{message}"
        ),
        other => panic!("expected a constraint violation ({needle}), got {other:?}"),
    }
}

fn no_basis(result: Result<i64, AuditError>, why: &str) {
    match result {
        Err(AuditError::NoBasis(message)) => assert!(
            message.contains("cannot record an allowed access"),
            "{why}: {message}"
        ),
        other => panic!("{why}: expected NoBasis, got {other:?}"),
    }
}

on_both! {
    fn a_direct_insert_of_an_allowed_access_without_a_basis_fails(t: &TestStore) {
        let store = &t.store;
        let id = consent(store, PEER, &[P1]);
        let other = consent(store, OTHER, &[P2]);
        let expired = consent(store, OTHER, &[P1]);
        store.sync_grants([(OTHER, &[prm(P3)][..])]).unwrap();
        let during = FROM + 10 * 86_400;
        let basis = "needs a consent of that peer valid at that time";
        let mut raw = Raw::open(t);

        // The valid cases go through.
        assert_eq!(raw.allowed(during, PEER, P1, Some(id), false).unwrap(), 1);
        assert_eq!(raw.allowed(during, OTHER, P3, None, true).unwrap(), 1);

        // No basis at all: the trigger (it runs before the CHECK constraints).
        is_abort(raw.allowed(during, PEER, P1, None, false), basis);
        // Both a consent and a grant: CHECK too (exactly one basis).
        is_abort(
            raw.allowed(during, PEER, P1, Some(id), true),
            "CHECK constraint",
        );
        // A consent that does not exist, of another peer, or not covering the PRM.
        is_abort(raw.allowed(during, PEER, P1, Some(999), false), basis);
        is_abort(raw.allowed(during, PEER, P2, Some(other), false), basis);
        is_abort(raw.allowed(during, PEER, P2, Some(id), false), basis);
        // Outside the consent's validity, on either side (valid_until excluded).
        is_abort(raw.allowed(FROM - 1, PEER, P1, Some(id), false), basis);
        is_abort(raw.allowed(UNTIL, PEER, P1, Some(id), false), basis);
        // A grant of another peer, or for another PRM.
        is_abort(raw.allowed(during, PEER, P3, None, true), basis);
        is_abort(raw.allowed(during, OTHER, P1, None, true), basis);
        // An expired consent, even at an instant inside its validity.
        assert_eq!(
            raw.allowed(during, OTHER, P1, Some(expired), false)
                .unwrap(),
            1
        );
        assert!(
            store
                .set_consent_state(expired, ConsentState::Expired)
                .unwrap()
        );
        is_abort(raw.allowed(during, OTHER, P1, Some(expired), false), basis);
        // A revoked consent.
        store.set_consent_state(id, ConsentState::Revoked).unwrap();
        is_abort(raw.allowed(during, PEER, P1, Some(id), false), basis);
        // A grant removed from the configuration.
        store.sync_grants(std::iter::empty()).unwrap();
        is_abort(raw.allowed(during, OTHER, P3, None, true), basis);

        // Refused rows need no basis but need a reason.
        assert_eq!(
            raw.refused(during, PEER, P2, Some("not-authorized"))
                .unwrap(),
            1
        );
        is_abort(raw.refused(during, PEER, P2, None), "CHECK constraint");

        // A recorded refusal cannot be turned into an allowed access afterwards.
        is_abort(
            raw.batch(&format!(
                "UPDATE audit SET outcome = 'allowed', consent_id = {id}"
            )),
            "cannot be changed",
        );
        assert_eq!(
            raw.count("SELECT count(*) FROM audit WHERE outcome = 'allowed'"),
            3,
            "only the three valid rows were recorded"
        );
    }

    fn the_store_api_refuses_an_allowed_access_without_a_basis(t: &TestStore) {
        let store = &t.store;
        let id = consent(store, PEER, &[P1]);
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
            no_basis(store.record_access(&a), why);
        }
        // Revoked between the decision and the record: refused too.
        store.set_consent_state(id, ConsentState::Revoked).unwrap();
        no_basis(
            store.record_access(&access(
                during,
                PEER,
                P1,
                Some(AccessBasis::Consent(id)),
                true,
            )),
            "revoked",
        );
        let all = store.audit(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, ok);
        assert_eq!(all[0].outcome, "allowed");
        assert_eq!(all[0].consent_id, Some(id));
        assert!(!all[0].via_grant);
        assert_eq!(all[0].upstream_calls, 2);
        assert_eq!(all[0].duration_ms, Some(12));
        assert_eq!(
            all[0].series.as_deref(),
            Some("consumption/power/active/raw")
        );
        assert_eq!(all[0].range_start, Some(FROM));
        assert_eq!(all[0].range_end, Some(FROM + 7 * 86_400));
        assert_eq!(all[1].outcome, "refused");
        assert_eq!(all[1].error.as_deref(), Some("not-authorized"));
        assert_eq!(all[1].detail.as_deref(), Some("no consent for that PRM"));
        assert_eq!(all[1].consent_id, None);
    }

    /// A consent declared to Enedis SGE is a basis as a Data Connect one is
    /// (the rule names no platform), while it is active and valid.
    fn an_sge_consent_is_a_basis(t: &TestStore) {
        let store = &t.store;
        let now = jiff::Timestamp::now().as_second();
        let sge = store
            .add_sge_consent(&NewSgeConsent {
                owner: PEER.into(),
                prms: vec![prm(P1)],
                valid_from: now - 86_400,
                valid_until: now + 30 * 86_400,
                declaration: SgeDeclaration {
                    holder: SgeHolder::Company {
                        name: "ACME SAS".into(),
                    },
                    mandate: "mandate 2026-001".into(),
                },
            })
            .unwrap()
            .id;
        let on_sge =
            |at, peer: &str, p: &str| access(at, peer, p, Some(AccessBasis::Consent(sge)), true);
        let id = store.record_access(&on_sge(now, PEER, P1)).unwrap();
        assert_eq!(
            store.audit(&AuditFilter::default()).unwrap()[0].consent_id,
            Some(sge)
        );
        assert!(id > 0);
        no_basis(
            store.record_access(&on_sge(now, OTHER, P1)),
            "another owner",
        );
        no_basis(
            store.record_access(&on_sge(now, PEER, P2)),
            "PRM not covered",
        );
        no_basis(
            store.record_access(&on_sge(now + 31 * 86_400, PEER, P1)),
            "after validity",
        );
        store.set_consent_state(sge, ConsentState::Revoked).unwrap();
        no_basis(store.record_access(&on_sge(now, PEER, P1)), "revoked");
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
    }

    /// Nobody changes a recorded access, the agent (which never tries) nor a
    /// direct connection; rows leave only by retention, oldest first, and new
    /// rows still get larger ids. SQLite: retention is a `DELETE` with
    /// `sqlite3`. PostgreSQL: the retention job says so in its transaction; any
    /// other `DELETE` or `TRUNCATE` is refused.
    fn recorded_accesses_are_final_and_leave_only_by_retention(t: &TestStore) {
        let store = &t.store;
        store.sync_grants([(PEER, &[prm(P1)][..])]).unwrap();
        let ids: Vec<i64> = (0..4)
            .map(|i| {
                store
                    .record_access(&access(
                        FROM + i * 3600,
                        PEER,
                        P1,
                        Some(AccessBasis::Grant),
                        true,
                    ))
                    .unwrap()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let mut raw = Raw::open(t);
        let cutoff = FROM + 2 * 3600;
        for sql in [
            "UPDATE audit SET at = at + 1".to_owned(),
            format!(
                "UPDATE audit SET outcome = 'refused', error = 'not-authorized' WHERE id = {}",
                ids[0]
            ),
            format!("UPDATE audit SET peer = '{OTHER}' WHERE id = {}", ids[3]),
        ] {
            is_abort(raw.batch(&sql), "cannot be changed");
        }
        match t.kind {
            Kind::Sqlite => {
                // docs/operations.md: the operator's retention, with sqlite3.
                raw.batch(&format!("DELETE FROM audit WHERE at < {cutoff}"))
                    .unwrap();
            }
            Kind::Postgres => {
                let only = "deleted by a retention job only";
                is_abort(
                    raw.batch(&format!("DELETE FROM audit WHERE at < {cutoff}")),
                    only,
                );
                is_abort(raw.batch("DELETE FROM audit"), only);
                is_abort(raw.batch("TRUNCATE audit"), only);
                // docs/operations.md: the operator's retention, with psql.
                raw.batch(&format!(
                    "BEGIN; SET LOCAL quoalise.audit_retention = on; \
                     DELETE FROM audit WHERE at < {cutoff}; COMMIT;"
                ))
                .unwrap();
                // The permission ended with that transaction.
                is_abort(raw.batch("DELETE FROM audit"), only);
            }
        }
        let left: Vec<i64> = store
            .audit(&AuditFilter::default())
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ids[2..]);
        let next = store
            .record_access(&access(
                FROM + 5 * 3600,
                PEER,
                P1,
                Some(AccessBasis::Grant),
                true,
            ))
            .unwrap();
        assert!(next > ids[3], "{next} after {ids:?}");
        let reopened = t.reopen();
        assert_eq!(reopened.audit(&AuditFilter::default()).unwrap().len(), 3);
    }

    fn grants_follow_the_configuration_by_difference(t: &TestStore) {
        let store = &t.store;
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
        assert!(!store.has_grant(OTHER, &prm(P2)).unwrap());
        assert_eq!(
            store.access_basis(OTHER, &prm(P3), FROM).unwrap(),
            Some(AccessBasis::Grant)
        );
        let id = consent(store, OTHER, &[P3]);
        assert_eq!(
            store.access_basis(OTHER, &prm(P3), FROM).unwrap(),
            Some(AccessBasis::Consent(id)),
            "a consent of the peer comes first"
        );
        assert_eq!(store.access_basis(OTHER, &prm(P1), FROM).unwrap(), None);
    }

    /// Grants are listed by peer then PRM in byte order, as SQLite sorts,
    /// whatever the PostgreSQL database's collation: upper case before lower
    /// case, `-` before letters.
    fn grants_are_listed_in_byte_order(t: &TestStore) {
        if let Some(mut client) = t.postgres_client() {
            // As in a database created with a language's collation (the test
            // server's is C.UTF-8, which sorts by code point).
            client
                .batch_execute(
                    "ALTER TABLE grants ALTER COLUMN peer TYPE TEXT COLLATE \"und-x-icu\"",
                )
                .unwrap();
        }
        let p = [prm(P1)];
        let peers = [
            "b@example.org",
            "B@example.org",
            "a-z@example.org",
            "az@example.org",
        ];
        t.store
            .sync_grants(peers.iter().map(|peer| (*peer, &p[..])))
            .unwrap();
        let listed: Vec<String> = t
            .store
            .grants()
            .unwrap()
            .into_iter()
            .map(|(peer, _)| peer)
            .collect();
        assert_eq!(
            listed,
            [
                "B@example.org",
                "a-z@example.org",
                "az@example.org",
                "b@example.org"
            ]
        );
    }

    fn filters_select_by_peer_prm_and_time(t: &TestStore) {
        let store = &t.store;
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
        let last_of_peer = store
            .audit(&AuditFilter {
                peer: Some(OTHER.into()),
                since: Some(FROM + 3600),
                limit: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            last_of_peer.iter().map(|r| r.at).collect::<Vec<_>>(),
            vec![FROM + 7 * 3600, FROM + 9 * 3600]
        );
        assert_eq!(
            count(AuditFilter {
                limit: Some(0),
                ..Default::default()
            }),
            0
        );
    }
}

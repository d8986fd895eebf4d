//! Versioned schema migrations, run in order when the store opens.
//!
//! The schema version is SQLite's `PRAGMA user_version`: migration `i` (0-based in
//! [`MIGRATIONS`]) moves the database from version `i` to `i + 1`, inside one
//! transaction together with the version bump, so a crash leaves either the old or
//! the new schema. To add a table, append a migration; never edit one that shipped.

use rusqlite::Connection;

use super::StoreError;

/// One schema step: a name for messages and the SQL it runs.
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "consents and per-consent tokens",
        sql: r#"
CREATE TABLE consents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Enedis API generation the consent was given through: '2026', 'v5', 'v4', 'v3'.
    generation      TEXT    NOT NULL CHECK (generation IN ('2026', 'v5', 'v4', 'v3')),
    -- Bare JID of the peer that asked for the consent (normalised).
    owner           TEXT    NOT NULL,
    -- Data Connect 2026 only: the consent's autorisation_id.
    autorisation_id INTEGER,
    -- Validity [valid_from, valid_until[ in UTC seconds.
    valid_from      INTEGER NOT NULL,
    valid_until     INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('active', 'revoked', 'expired')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (valid_from < valid_until)
);
CREATE INDEX consents_owner ON consents (owner);

CREATE TABLE consent_prms (
    consent_id INTEGER NOT NULL REFERENCES consents (id) ON DELETE CASCADE,
    prm        TEXT    NOT NULL CHECK (length(prm) = 14),
    PRIMARY KEY (consent_id, prm)
) WITHOUT ROWID;
CREATE INDEX consent_prms_prm ON consent_prms (prm);

-- v3/v4 only: the consent's own OAuth tokens. The refresh token is the consent:
-- losing it loses the consent, so it is written before the access token is used.
CREATE TABLE consent_tokens (
    consent_id        INTEGER PRIMARY KEY REFERENCES consents (id) ON DELETE CASCADE,
    refresh_token     TEXT    NOT NULL,
    access_token      TEXT,
    access_expires_at INTEGER,
    updated_at        INTEGER NOT NULL
);
"#,
    },
    Migration {
        name: "consent flow: descriptions and OAuth states",
        sql: r#"
-- What a peer registered with get_authorize_uri: shown to consumers on /authorize.
CREATE TABLE consent_descriptions (
    -- Unguessable, URL-safe; the `id` of the authorize URI.
    id          TEXT    PRIMARY KEY,
    -- Bare JID of the peer that registered it (normalised).
    owner       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    -- https only, or NULL.
    logo_url    TEXT,
    -- HTML or plain text as submitted; sanitised when shown.
    description TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX consent_descriptions_owner ON consent_descriptions (owner);

-- One consumer's trip to Enedis and back. Single use (consumed_at), short-lived
-- (expires_at); kept a day after its end so that a replay is recognised.
CREATE TABLE oauth_states (
    state          TEXT    PRIMARY KEY,
    description_id TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    -- ISO 8601 duration asked of Enedis.
    duration       TEXT    NOT NULL,
    -- The peer's own state, echoed in its notification.
    peer_state     TEXT,
    -- Where the consumer goes back (checked against the peer's redirect_uris).
    redirect_uri   TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER,
    CHECK (created_at < expires_at)
) WITHOUT ROWID;
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);
"#,
    },
    Migration {
        name: "grants and the audit trail",
        sql: super::audit::MIGRATION,
    },
    Migration {
        name: "readings cache",
        sql: super::readings::MIGRATION,
    },
    Migration {
        name: "subscriptions",
        sql: super::subscriptions::MIGRATION,
    },
    Migration {
        name: "audit rows without AUTOINCREMENT",
        sql: super::audit::MIGRATION_ROWID,
    },
    Migration {
        name: "declared consents (Enedis SGE)",
        sql: super::consents::MIGRATION_SGE,
    },
    Migration {
        name: "access services ordered from Enedis SGE",
        sql: super::access_services::MIGRATION,
    },
    Migration {
        name: "the Enedis quota's ledger",
        sql: super::ledger::MIGRATION,
    },
    Migration {
        name: "consent notifications queued by standby agents",
        sql: super::outbox::MIGRATION,
    },
];

/// The schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Bring the database to [`latest_version`]; refuse a database from a newer build.
///
/// Migrations run with foreign keys off, as SQLite's procedure for rebuilding a
/// table requires (with them on, dropping the old table would delete every row
/// that references it through `ON DELETE CASCADE`); each migration checks them
/// before its commit instead. Both pragmas a migration may change are put back,
/// whatever happened: foreign keys on, `legacy_alter_table` off.
pub fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(StoreError::sqlite("read the schema version"))?;
    if current > latest_version() {
        return Err(StoreError::NewerSchema {
            found: current,
            known: latest_version(),
        });
    }
    if current == latest_version() {
        return Ok(());
    }
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(StoreError::sqlite(
            "turn foreign keys off for the migrations",
        ))?;
    let result = run_from(conn, current);
    let restored = conn
        .execute_batch("PRAGMA legacy_alter_table = OFF; PRAGMA foreign_keys = ON")
        .map_err(StoreError::sqlite("turn foreign keys back on"));
    result?;
    restored
}

/// The migrations after version `current`, each in its own transaction.
fn run_from(conn: &mut Connection, current: i64) -> Result<(), StoreError> {
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(StoreError::sqlite("begin a migration"))?;
        // Another process may have migrated meanwhile: re-check under the lock.
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(StoreError::sqlite("read the schema version"))?;
        if now >= version {
            continue;
        }
        tx.execute_batch(migration.sql)
            .map_err(|source| StoreError::Migration {
                version,
                name: migration.name,
                source,
            })?;
        let broken: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .map_err(StoreError::sqlite("check foreign keys after a migration"))?;
        if broken > 0 {
            return Err(StoreError::Invalid(format!(
                "migration {version} ({}) would leave {broken} rows referencing rows that do not exist; nothing was changed",
                migration.name
            )));
        }
        // PRAGMA takes no bound parameters; `version` is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(StoreError::sqlite("write the schema version"))?;
        tx.commit()
            .map_err(StoreError::sqlite("commit a migration"))?;
        tracing::info!(version, name = migration.name, "store migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Access, AccessBasis, AccessError, AccessOutcome, AuditError, Store};

    /// A migration that shipped never changes: databases already past it would
    /// not get the change, and new databases would differ from theirs.
    #[test]
    fn shipped_migrations_are_unchanged() {
        fn fnv1a(text: &str) -> u64 {
            text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        }
        let shipped: [(u64, usize); 10] = [
            (0x9fb2_c6a9_c044_4e66, 1526),
            (0x26f5_9c8b_a0aa_6efc, 1386),
            (0xc4e2_4bad_fcba_4d3c, 3084),
            (0xe0b2_1494_1dff_72d0, 2292),
            (0xbea2_fdd3_1915_65fc, 4221),
            (0x09f5_d3d6_d288_07c0, 2823),
            (0xe809_6d0b_d7f4_e7a6, 5791),
            (0x6d37_4040_646c_4723, 1806),
            (0x8d9a_0810_570b_b7a5, 727),
            (0x877d_5cb8_da30_4133, 588),
        ];
        assert_eq!(
            MIGRATIONS.len(),
            shipped.len(),
            "a new migration: add its fingerprint"
        );
        for (migration, expected) in MIGRATIONS.iter().zip(shipped) {
            assert_eq!(
                (fnv1a(migration.sql), migration.sql.len()),
                expected,
                "{}",
                migration.name
            );
        }
    }

    #[test]
    fn the_audit_trail_loses_autoincrement_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        // A store as the previous build left it, with a grant and two rows.
        let rowid = MIGRATIONS
            .iter()
            .position(|m| m.sql == crate::store::audit::MIGRATION_ROWID)
            .unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            for migration in &MIGRATIONS[..rowid] {
                conn.execute_batch(migration.sql).unwrap();
            }
            conn.execute_batch(&format!(
                "PRAGMA user_version = {rowid};
                 INSERT INTO grants VALUES ('app@example.org', '30001610071843');
                 INSERT INTO audit (at, peer, command, prm, via_grant, outcome)
                   VALUES (100, 'app@example.org', 'get_history', '30001610071843', 1, 'allowed');
                 INSERT INTO audit (at, peer, command, outcome, error)
                   VALUES (101, 'eve@example.org', 'get_history', 'refused', 'not-authorized');"
            ))
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_version());
        let conn = store.conn();
        let schema: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'audit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!schema.contains("AUTOINCREMENT"), "{schema}");
        let sequences: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_sequence WHERE name LIKE 'audit%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(sequences, 0);
        let objects: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'audit' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            objects,
            [
                "audit",
                "audit_allowed_needs_a_basis",
                "audit_at",
                "audit_peer",
                "audit_prm",
                "audit_rows_are_final"
            ]
        );
        drop(conn);

        let rows = store.audit(&Default::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].id, rows[0].at, rows[0].via_grant), (1, 100, true));
        assert_eq!((rows[1].id, rows[1].peer.as_str()), (2, "eve@example.org"));

        // Ids go on from the last one; the triggers still hold.
        let prm = "30001610071843".parse().unwrap();
        let access = |basis, outcome| Access {
            at: 102,
            peer: "app@example.org".into(),
            command: "get_history".into(),
            prm: Some(prm),
            series: None,
            range: None,
            basis,
            outcome,
            upstream_calls: 0,
            duration_ms: None,
        };
        let allowed = AccessOutcome::Allowed { error: None };
        assert_eq!(
            store
                .record_access(&access(Some(AccessBasis::Grant), allowed.clone()))
                .unwrap(),
            3
        );
        assert!(matches!(
            store.record_access(&access(Some(AccessBasis::Consent(7)), allowed)),
            Err(AuditError::NoBasis(_))
        ));
        let refused = AccessOutcome::Refused(AccessError {
            condition: "bad-request".into(),
            code: None,
            text: "no".into(),
        });
        assert_eq!(store.record_access(&access(None, refused)).unwrap(), 4);
        let changed = store
            .conn()
            .execute("UPDATE audit SET at = 0 WHERE id = 1", []);
        assert!(changed.is_err());
    }
}

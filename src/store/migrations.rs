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
        sql: super::cache::MIGRATION,
    },
    Migration {
        name: "subscriptions",
        sql: super::subscriptions::MIGRATION,
    },
];

/// The schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Bring the database to [`latest_version`]; refuse a database from a newer build.
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
        // PRAGMA takes no bound parameters; `version` is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(StoreError::sqlite("write the schema version"))?;
        tx.commit()
            .map_err(StoreError::sqlite("commit a migration"))?;
        tracing::info!(version, name = migration.name, "store migrated");
    }
    Ok(())
}

//! The PostgreSQL schema: the same migrations as SQLite's
//! ([`crate::store::migrations::MIGRATIONS`]), same versions, same names, in the
//! same order, each in PostgreSQL's dialect. Applied versions are rows of
//! `store_migrations`; each migration runs in one transaction with its row,
//! under an advisory lock, so that instances starting together migrate once.
//! Append only, as for SQLite.

use postgres::GenericClient;

use super::{LOCK_CLASS, LOCK_MIGRATIONS};
use crate::store::StoreError;
use crate::store::migrations::Migration;

/// Every migration, oldest first; the names are SQLite's (a test checks it).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "consents and per-consent tokens",
        sql: super::consents::MIGRATION,
    },
    Migration {
        name: "consent flow: descriptions and OAuth states",
        sql: super::oauth::MIGRATION,
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
        // SQLite only: PostgreSQL's identity column never had that cost.
        sql: "SELECT 1;",
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

const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS store_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
);
-- One row, rewritten by the health probe: a write that touches nothing else.
CREATE TABLE IF NOT EXISTS store_probe (probed_at BIGINT NOT NULL);
INSERT INTO store_probe (probed_at) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM store_probe);
";

/// The last migration applied (0 on an empty database).
pub fn current_version(client: &mut impl GenericClient) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('store_migrations') IS NOT NULL", &[])
        .map_err(StoreError::postgres("read the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM store_migrations",
            &[],
        )
        .map_err(StoreError::postgres("read the schema version"))?
        .get(0))
}

/// Brings the database to the latest version; refuses one from a newer build.
pub fn run(client: &mut postgres::Client) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    {
        let mut tx = client
            .transaction()
            .map_err(StoreError::postgres("begin the migrations"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_MIGRATIONS],
        )
        .map_err(StoreError::postgres("lock the migrations"))?;
        tx.batch_execute(BOOKKEEPING)
            .map_err(StoreError::postgres("create the migrations table"))?;
        tx.commit()
            .map_err(StoreError::postgres("create the migrations table"))?;
    }
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        let mut tx = client
            .transaction()
            .map_err(StoreError::postgres("begin a migration"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_MIGRATIONS],
        )
        .map_err(StoreError::postgres("lock the migrations"))?;
        let current = current_version(&mut tx)?;
        if current > known {
            return Err(StoreError::NewerSchema {
                found: current,
                known,
            });
        }
        if current >= version {
            continue;
        }
        let failed = |source| StoreError::PostgresMigration {
            version,
            name: migration.name,
            source,
        };
        tx.batch_execute(migration.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO store_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&version, &migration.name, &crate::store::now_seconds()],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, name = migration.name, "store migrated");
    }
    let current = current_version(client)?;
    if current > known {
        return Err(StoreError::NewerSchema {
            found: current,
            known,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_are_sqlites_in_the_same_order() {
        let sqlite: Vec<&str> = crate::store::migrations::MIGRATIONS
            .iter()
            .map(|m| m.name)
            .collect();
        let postgres: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(postgres, sqlite);
    }
}

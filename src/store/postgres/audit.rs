//! PostgreSQL: the grants and the audit trail, as in `crate::store::audit`, with
//! the same guarantee enforced by the database itself (PL/pgSQL triggers):
//!
//! - an allowed row needs a valid basis at its instant: an active consent owned
//!   by the peer, covering the PRM, valid at `at` (of any platform: Data Connect
//!   or SGE, as SQLite's trigger, which names no generation), or a grant;
//! - recorded rows are never updated;
//! - rows are deleted only by a retention job that says so: SQLite lets anyone
//!   with the file delete old rows (the agent never does, and its request-path
//!   connection cannot); here a `DELETE` or `TRUNCATE` is refused unless the
//!   transaction set `quoalise.audit_retention` to `on`, which the agent never
//!   does (docs/operations.md).
//!
//! A trigger binds every role, the superuser included, as long as triggers run:
//! a superuser could turn them off (`session_replication_role = replica`) and
//! the tables' owner could drop them, as anybody with `sqlite3` could drop
//! SQLite's. So the agent connects as the owner of its schema (it runs the
//! migrations), not as a superuser.

use std::collections::BTreeSet;

use postgres::types::ToSql;

use super::Postgres;
use crate::quoalise::Prm;
use crate::store::StoreError;
use crate::store::audit::{
    Access, AccessBasis, AccessOutcome, AuditError, AuditFilter, AuditRecord, GrantChanges,
};

/// Migration 3, "grants and the audit trail". Integers are `BIGINT` (SQLite's
/// are 64-bit), flags `BOOLEAN`; the id is an identity, so ids increase and are
/// never reused, not even after a retention that empties the trail.
pub const MIGRATION: &str = r#"
-- The configuration's [[peers]].usage_points: PRMs a peer may read without a
-- consent of its own. Mirrored from the configuration at start and on reload.
CREATE TABLE grants (
    peer TEXT NOT NULL CHECK (length(peer) > 0),
    prm  TEXT NOT NULL CHECK (length(prm) = 14),
    PRIMARY KEY (peer, prm)
);
CREATE INDEX grants_prm ON grants (prm);

CREATE TABLE audit (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- When the access was decided, UTC seconds.
    at             BIGINT  NOT NULL,
    -- Bare JID of the requesting peer (normalised).
    peer           TEXT    NOT NULL CHECK (length(peer) > 0),
    -- The ad-hoc command, e.g. get_history, or subscription for a push.
    command        TEXT    NOT NULL,
    prm            TEXT    CHECK (prm IS NULL OR length(prm) = 14),
    series         TEXT,
    -- The requested range [range_start, range_end[, UTC seconds.
    range_start    BIGINT,
    range_end      BIGINT,
    -- The basis: the consent used, or the configuration's grant. No foreign key:
    -- the trail outlives the consents it names.
    consent_id     BIGINT,
    via_grant      BOOLEAN NOT NULL DEFAULT false,
    outcome        TEXT    NOT NULL CHECK (outcome IN ('allowed', 'refused')),
    -- For a refusal or a failure: the XMPP condition the peer got, the upstream
    -- code if any, and the text.
    error          TEXT,
    error_code     TEXT,
    detail         TEXT,
    upstream_calls BIGINT  NOT NULL DEFAULT 0 CHECK (upstream_calls >= 0),
    duration_ms    BIGINT  CHECK (duration_ms IS NULL OR duration_ms >= 0),
    -- An allowed access names exactly one basis and a PRM; a refused one says why.
    CONSTRAINT audit_allowed_names_one_basis CHECK (outcome = 'refused' OR (prm IS NOT NULL
        AND ((consent_id IS NOT NULL AND NOT via_grant)
          OR (consent_id IS NULL AND via_grant)))),
    CONSTRAINT audit_refused_says_why CHECK (outcome = 'allowed' OR error IS NOT NULL),
    CONSTRAINT audit_range CHECK (range_start IS NULL OR range_end IS NULL OR range_start < range_end)
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_peer ON audit (peer, at);
CREATE INDEX audit_prm ON audit (prm, at);

-- The basis of an allowed access must exist when it is recorded: an active consent
-- of that peer, covering that PRM, valid at the recorded instant; or a grant.
-- check_violation, as the CHECK constraints: the store reads a refused allowed
-- row by its SQLSTATE class (23), as SQLite's by its constraint error.
CREATE FUNCTION audit_allowed_needs_a_basis() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome = 'allowed' AND NOT (
        (NEW.consent_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
            WHERE c.id = NEW.consent_id AND c.owner = NEW.peer AND p.prm = NEW.prm
              AND c.state = 'active' AND c.valid_from <= NEW.at AND NEW.at < c.valid_until))
        OR (NEW.via_grant AND EXISTS (
            SELECT 1 FROM grants g WHERE g.peer = NEW.peer AND g.prm = NEW.prm))
    ) THEN
        RAISE EXCEPTION 'audit: an allowed access needs a consent of that peer valid at that time for that PRM, or a grant'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'audit_allowed_needs_a_basis';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_allowed_needs_a_basis BEFORE INSERT ON audit
FOR EACH ROW EXECUTE FUNCTION audit_allowed_needs_a_basis();

-- No recorded access is ever changed (a refused row cannot be turned into an
-- allowed one).
CREATE FUNCTION audit_rows_are_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit: recorded accesses cannot be changed'
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER audit_rows_are_final BEFORE UPDATE ON audit
FOR EACH ROW EXECUTE FUNCTION audit_rows_are_final();

-- Rows leave only through a retention job that says so in its transaction
-- (SET LOCAL quoalise.audit_retention = on), never through the agent.
CREATE FUNCTION audit_deleted_by_retention_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('quoalise.audit_retention', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit: recorded accesses are deleted by a retention job only (SET LOCAL quoalise.audit_retention = on)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER audit_deleted_by_retention_only BEFORE DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION audit_deleted_by_retention_only();
CREATE TRIGGER audit_truncated_by_retention_only BEFORE TRUNCATE ON audit
FOR EACH STATEMENT EXECUTE FUNCTION audit_deleted_by_retention_only();
"#;

/// The columns [`AuditRecord`] reads, in its order.
const RECORD_COLUMNS: &str = "id, at, peer, command, prm, series, range_start, range_end, \
     consent_id, via_grant, outcome, error, error_code, detail, upstream_calls, duration_ms";

impl Postgres {
    /// Makes `grants` equal to `wanted`, changing only the rows that differ, in
    /// one transaction. The table is locked against other writers for it (reads
    /// go on), so that two instances syncing at once do not both add a row.
    pub(crate) fn sync_grants<'a, I>(&self, wanted: I) -> Result<GrantChanges, StoreError>
    where
        I: IntoIterator<Item = (&'a str, &'a [Prm])>,
    {
        let wanted: BTreeSet<(String, Prm)> = wanted
            .into_iter()
            .flat_map(|(peer, prms)| prms.iter().map(move |prm| (peer.to_owned(), *prm)))
            .collect();
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin updating grants"))?;
        tx.batch_execute("LOCK TABLE grants IN SHARE ROW EXCLUSIVE MODE")
            .map_err(StoreError::postgres("lock the grants"))?;
        let mut current = BTreeSet::new();
        for row in tx
            .query("SELECT peer, prm FROM grants", &[])
            .map_err(StoreError::postgres("read grants"))?
        {
            let peer: String = row
                .try_get(0)
                .map_err(StoreError::postgres("read grants"))?;
            let prm: String = row
                .try_get(1)
                .map_err(StoreError::postgres("read grants"))?;
            // A PRM that does not parse is left alone, as SQLite's does.
            if let Ok(prm) = prm.parse::<Prm>() {
                current.insert((peer, prm));
            }
        }
        let mut changes = GrantChanges::default();
        for (peer, prm) in current.difference(&wanted) {
            tx.execute(
                "DELETE FROM grants WHERE peer = $1 AND prm = $2",
                &[peer, &prm.as_str()],
            )
            .map_err(StoreError::postgres("remove a grant"))?;
            changes.removed.push((peer.clone(), *prm));
        }
        for (peer, prm) in wanted.difference(&current) {
            tx.execute(
                "INSERT INTO grants (peer, prm) VALUES ($1, $2)",
                &[peer, &prm.as_str()],
            )
            .map_err(StoreError::postgres("add a grant"))?;
            changes.added.push((peer.clone(), *prm));
        }
        tx.commit()
            .map_err(StoreError::postgres("commit the grants"))?;
        Ok(changes)
    }

    /// Records one access; returns its id. An allowed access without a valid
    /// basis is refused by the trigger: [`AuditError::NoBasis`].
    ///
    /// Committed with `synchronous_commit = off`, as SQLite writes it without an
    /// fsync of its own (`crate::store::without_fsync`): the commit returns before
    /// the server flushes its WAL (its WAL writer does within three
    /// `wal_writer_delay`, 600 ms by default) and without waiting for a
    /// synchronous standby, so a crash of the server, or a failover, may lose the
    /// last rows; never a half row, never the consents and tokens, which are
    /// committed in transactions of their own with the server's own setting.
    /// `SET LOCAL` ends with the transaction: the pooled connection goes back
    /// with the server's setting.
    pub(crate) fn record_access(&self, access: &Access) -> Result<i64, AuditError> {
        let op = "record an access";
        let (outcome, error) = match &access.outcome {
            AccessOutcome::Allowed { error } => ("allowed", error.as_ref()),
            AccessOutcome::Refused(error) => ("refused", Some(error)),
        };
        let (consent_id, via_grant) = match access.basis {
            Some(AccessBasis::Consent(id)) => (Some(id), false),
            Some(AccessBasis::Grant) => (None, true),
            None => (None, false),
        };
        let prm = access.prm.as_ref().map(Prm::as_str);
        let series = access.series.map(|s| s.name().into_owned());
        let range_start = access.range.map(|r| r.0);
        let range_end = access.range.map(|r| r.1);
        let upstream_calls = i64::from(access.upstream_calls);
        let duration_ms = access
            .duration_ms
            .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        let condition = error.map(|e| e.condition.as_str());
        let code = error.and_then(|e| e.code.as_deref());
        let detail = error.map(|e| e.text.as_str());

        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(StoreError::postgres(op))?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .map_err(StoreError::postgres(op))?;
        let inserted = tx.query_one(
            "INSERT INTO audit (at, peer, command, prm, series, range_start, range_end, \
             consent_id, via_grant, outcome, error, error_code, detail, upstream_calls, \
             duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             RETURNING id",
            &[
                &access.at,
                &access.peer,
                &access.command,
                &prm,
                &series,
                &range_start,
                &range_end,
                &consent_id,
                &via_grant,
                &outcome,
                &condition,
                &code,
                &detail,
                &upstream_calls,
                &duration_ms,
            ],
        );
        let id: i64 = match inserted.and_then(|row| row.try_get(0)) {
            Ok(id) => id,
            // The trigger's check_violation, or a CHECK constraint: SQLite's
            // record_access reads any constraint failure of an allowed row as
            // NoBasis, and so does this (class 23, integrity constraint).
            Err(e) if outcome == "allowed" && is_integrity_violation(&e) => {
                return Err(AuditError::NoBasis(format!(
                    "cannot record an allowed access of {} to PRM {} on {}: {}",
                    access.peer,
                    prm.unwrap_or("(none)"),
                    access
                        .basis
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "no basis".into()),
                    super::message(&e)
                )));
            }
            Err(e) => return Err(StoreError::postgres(op)(e).into()),
        };
        tx.commit().map_err(StoreError::postgres(op))?;
        Ok(id)
    }

    /// Recorded accesses matching `filter`: the most recent `limit`, oldest
    /// first.
    pub(crate) fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let op = "read the audit trail";
        let mut clauses = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        if let Some(peer) = &filter.peer {
            values.push(Box::new(peer.clone()));
            clauses.push(format!("peer = ${}", values.len()));
        }
        if let Some(prm) = &filter.prm {
            values.push(Box::new(prm.as_str().to_owned()));
            clauses.push(format!("prm = ${}", values.len()));
        }
        if let Some(since) = filter.since {
            values.push(Box::new(since));
            clauses.push(format!("at >= ${}", values.len()));
        }
        if let Some(until) = filter.until {
            values.push(Box::new(until));
            clauses.push(format!("at < ${}", values.len()));
        }
        let r#where = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = match filter.limit {
            Some(n) => {
                values.push(Box::new(i64::try_from(n).unwrap_or(i64::MAX)));
                format!("LIMIT ${}", values.len())
            }
            None => String::new(),
        };
        // Most recent `limit` rows, then back to chronological order.
        let sql = format!(
            "SELECT * FROM (SELECT {RECORD_COLUMNS} FROM audit {where} \
             ORDER BY id DESC {limit}) AS recent ORDER BY id"
        );
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let rows = self
            .conn()?
            .query(&sql, &params)
            .map_err(StoreError::postgres(op))?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get(0).map_err(StoreError::postgres(op))?;
                let upstream_calls: i64 = row.try_get(14).map_err(StoreError::postgres(op))?;
                Ok(AuditRecord {
                    id,
                    at: row.try_get(1).map_err(StoreError::postgres(op))?,
                    peer: row.try_get(2).map_err(StoreError::postgres(op))?,
                    command: row.try_get(3).map_err(StoreError::postgres(op))?,
                    prm: row.try_get(4).map_err(StoreError::postgres(op))?,
                    series: row.try_get(5).map_err(StoreError::postgres(op))?,
                    range_start: row.try_get(6).map_err(StoreError::postgres(op))?,
                    range_end: row.try_get(7).map_err(StoreError::postgres(op))?,
                    consent_id: row.try_get(8).map_err(StoreError::postgres(op))?,
                    via_grant: row.try_get(9).map_err(StoreError::postgres(op))?,
                    outcome: row.try_get(10).map_err(StoreError::postgres(op))?,
                    error: row.try_get(11).map_err(StoreError::postgres(op))?,
                    error_code: row.try_get(12).map_err(StoreError::postgres(op))?,
                    detail: row.try_get(13).map_err(StoreError::postgres(op))?,
                    upstream_calls: u32::try_from(upstream_calls).map_err(|_| {
                        StoreError::Invalid(format!(
                            "audit row {id} has a bad upstream_calls: {upstream_calls}"
                        ))
                    })?,
                    duration_ms: row
                        .try_get::<_, Option<i64>>(15)
                        .map_err(StoreError::postgres(op))?
                        .map(|d| u64::try_from(d).unwrap_or(0)),
                })
            })
            .collect()
    }

    /// Whether the configuration grants `peer` access to `prm`.
    pub(crate) fn has_grant(&self, peer: &str, prm: &Prm) -> Result<bool, StoreError> {
        let op = "read a grant";
        self.conn()?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM grants WHERE peer = $1 AND prm = $2)",
                &[&peer, &prm.as_str()],
            )
            .and_then(|row| row.try_get(0))
            .map_err(StoreError::postgres(op))
    }

    /// Every grant, by peer then PRM, in byte order as SQLite's `BINARY`
    /// collation (not the database's, which may sort by language).
    pub(crate) fn grants(&self) -> Result<Vec<(String, Prm)>, StoreError> {
        let op = "read grants";
        self.conn()?
            .query(
                "SELECT peer, prm FROM grants ORDER BY peer COLLATE \"C\", prm COLLATE \"C\"",
                &[],
            )
            .map_err(StoreError::postgres(op))?
            .iter()
            .map(|row| {
                let peer: String = row.try_get(0).map_err(StoreError::postgres(op))?;
                let prm: String = row.try_get(1).map_err(StoreError::postgres(op))?;
                prm.parse()
                    .map(|prm| (peer, prm))
                    .map_err(|e| StoreError::Invalid(format!("grant with a bad PRM: {e}")))
            })
            .collect()
    }
}

/// An integrity constraint refused the row (SQLSTATE class 23: a `CHECK`, a
/// trigger raising `check_violation`, `NOT NULL`, a key), as SQLite's
/// `SQLITE_CONSTRAINT`.
pub(super) fn is_integrity_violation(error: &postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| code.code().starts_with("23"))
}

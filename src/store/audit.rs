//! The audit trail: every data access, allowed or refused, and the grants of the
//! configuration it is checked against.
//!
//! One row per access: when, which peer, which command, PRM, series and range, on
//! which basis (a consent, or a grant of the configuration), the outcome (allowed,
//! or refused with the error the peer got), and how many upstream calls it cost.
//!
//! The rule "an access without a valid consent or grant at the moment of the call
//! cannot be recorded as allowed" is enforced by the SCHEMA, not only by this code:
//! a `CHECK` constraint requires an allowed row to name exactly one basis, and a
//! `BEFORE INSERT` trigger aborts the insert unless that basis exists: an active
//! consent owned by that peer, covering that PRM and valid at the recorded instant,
//! or a row of `grants` for that peer and PRM. Rows cannot be updated (a refused row
//! cannot be turned into an allowed one). So a bug in the data path, or anybody
//! with `sqlite3` on the file, cannot forge an allowed access without first
//! forging its basis.
//!
//! `grants` mirrors `[[peers]].usage_points` of the configuration; the agent calls
//! [`Store::sync_grants`] at start and on every reload. It changes only the rows that
//! differ, so a reload that keeps a grant does not purge what depends on it (the
//! cache, subscriptions).

use std::collections::BTreeSet;

use rusqlite::{ErrorCode, params, params_from_iter};

use super::{Sqlite, Store, StoreError};
use crate::config::PeerConfig;
use crate::quoalise::{Prm, Series};

/// The columns of `audit` after `id`, and its indexes and triggers: shared by the
/// migration that created it and the one that rebuilt it ([`MIGRATION_ROWID`]).
/// Macros, so that each migration stays one literal, the text that shipped.
macro_rules! audit_columns {
    () => {
        r#"    -- When the access was decided, UTC seconds.
    at             INTEGER NOT NULL,
    -- Bare JID of the requesting peer (normalised).
    peer           TEXT    NOT NULL CHECK (length(peer) > 0),
    -- The ad-hoc command, e.g. get_history, or subscription for a push.
    command        TEXT    NOT NULL,
    prm            TEXT    CHECK (prm IS NULL OR length(prm) = 14),
    series         TEXT,
    -- The requested range [range_start, range_end[, UTC seconds.
    range_start    INTEGER,
    range_end      INTEGER,
    -- The basis: the consent used, or the configuration's grant. No foreign key:
    -- the trail outlives the consents it names.
    consent_id     INTEGER,
    via_grant      INTEGER NOT NULL DEFAULT 0 CHECK (via_grant IN (0, 1)),
    outcome        TEXT    NOT NULL CHECK (outcome IN ('allowed', 'refused')),
    -- For a refusal or a failure: the XMPP condition the peer got, the upstream
    -- code if any, and the text.
    error          TEXT,
    error_code     TEXT,
    detail         TEXT,
    upstream_calls INTEGER NOT NULL DEFAULT 0 CHECK (upstream_calls >= 0),
    duration_ms    INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    -- An allowed access names exactly one basis and a PRM; a refused one says why.
    CHECK (outcome = 'refused' OR (prm IS NOT NULL
        AND ((consent_id IS NOT NULL AND via_grant = 0)
          OR (consent_id IS NULL AND via_grant = 1)))),
    CHECK (outcome = 'allowed' OR error IS NOT NULL),
    CHECK (range_start IS NULL OR range_end IS NULL OR range_start < range_end)
);
"#
    };
}

macro_rules! audit_indexes_and_triggers {
    () => {
        r#"CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_peer ON audit (peer, at);
CREATE INDEX audit_prm ON audit (prm, at);

-- The basis of an allowed access must exist when it is recorded: an active consent
-- of that peer, covering that PRM, valid at the recorded instant; or a grant.
CREATE TRIGGER audit_allowed_needs_a_basis BEFORE INSERT ON audit
WHEN NEW.outcome = 'allowed' AND NOT (
    (NEW.consent_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.id = NEW.consent_id AND c.owner = NEW.peer AND p.prm = NEW.prm
          AND c.state = 'active' AND c.valid_from <= NEW.at AND NEW.at < c.valid_until))
    OR (NEW.via_grant = 1 AND EXISTS (
        SELECT 1 FROM grants g WHERE g.peer = NEW.peer AND g.prm = NEW.prm))
)
BEGIN
    SELECT RAISE(ABORT, 'audit: an allowed access needs a consent of that peer valid at that time for that PRM, or a grant');
END;

CREATE TRIGGER audit_rows_are_final BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit: recorded accesses cannot be changed');
END;
"#
    };
}

/// Schema of the audit trail and of the grants (appended to the migrations).
pub const MIGRATION: &str = concat!(
    r#"
-- The configuration's [[peers]].usage_points: PRMs a peer may read without a
-- consent of its own. Mirrored from the configuration at start and on reload.
CREATE TABLE grants (
    peer TEXT NOT NULL CHECK (length(peer) > 0),
    prm  TEXT NOT NULL CHECK (length(prm) = 14),
    PRIMARY KEY (peer, prm)
) WITHOUT ROWID;
CREATE INDEX grants_prm ON grants (prm);

CREATE TABLE audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
"#,
    audit_columns!(),
    audit_indexes_and_triggers!()
);

/// The audit trail without `AUTOINCREMENT`: every request's commit updated
/// `sqlite_sequence`, one more page to copy into the WAL, about a fifth of the CPU
/// of an audit row (docs/agent.md). A plain rowid key numbers rows the same way
/// (the largest id plus one) as long as the newest row stays: the agent deletes
/// none, and retention deletes the oldest (docs/operations.md). The table is
/// copied, ids included, then its indexes and triggers are made again; dropping
/// the old table drops its `sqlite_sequence` row.
pub const MIGRATION_ROWID: &str = concat!(
    r#"
CREATE TABLE audit_rebuilt (
    id             INTEGER PRIMARY KEY,
"#,
    audit_columns!(),
    r#"
INSERT INTO audit_rebuilt SELECT * FROM audit;
DROP TABLE audit;
ALTER TABLE audit_rebuilt RENAME TO audit;
"#,
    audit_indexes_and_triggers!()
);

/// What an access was allowed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessBasis {
    /// A consent (its id) owned by the peer.
    Consent(i64),
    /// A grant of the configuration (`[[peers]].usage_points`).
    Grant,
}

impl std::fmt::Display for AccessBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessBasis::Consent(id) => write!(f, "consent {id}"),
            AccessBasis::Grant => f.write_str("grant"),
        }
    }
}

/// How an access ended, as the peer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessOutcome {
    /// Authorised. `error` is set when the data could not be served anyway (the
    /// upstream failed): the access was allowed, the answer was an error.
    Allowed { error: Option<AccessError> },
    /// Not authorised, or refused before authorisation (malformed request).
    Refused(AccessError),
}

/// The error a peer got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessError {
    /// XMPP condition: `not-authorized`, `bad-request`, `service-unavailable`,
    /// `undefined-condition`…
    pub condition: String,
    /// Upstream code (`ADAM-ERR0123`…), if any.
    pub code: Option<String>,
    /// The text the peer got.
    pub text: String,
}

/// What an access read: a series of readings, or the usage point's contract
/// (`get_contract`). The trail's `series` column holds its name: the series'
/// (`consumption/power/active/raw`…) or `contract`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Series(Series),
    Contract,
}

impl Subject {
    /// The name the trail records.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Subject::Series(series) => series.name(),
            Subject::Contract => std::borrow::Cow::Borrowed("contract"),
        }
    }
}

impl From<Series> for Subject {
    fn from(series: Series) -> Subject {
        Subject::Series(series)
    }
}

/// One access to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// When the access was decided, UTC seconds.
    pub at: i64,
    /// Bare JID of the peer, normalised.
    pub peer: String,
    pub command: String,
    pub prm: Option<Prm>,
    /// What was read (column `series`).
    pub series: Option<Subject>,
    /// The requested range `[start, end[`, UTC seconds.
    pub range: Option<(i64, i64)>,
    /// Required when allowed.
    pub basis: Option<AccessBasis>,
    pub outcome: AccessOutcome,
    pub upstream_calls: u32,
    pub duration_ms: Option<u64>,
}

/// A recorded access.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub peer: String,
    pub command: String,
    pub prm: Option<String>,
    pub series: Option<String>,
    pub range_start: Option<i64>,
    pub range_end: Option<i64>,
    pub consent_id: Option<i64>,
    pub via_grant: bool,
    /// `allowed` or `refused`.
    pub outcome: String,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub detail: Option<String>,
    pub upstream_calls: u32,
    pub duration_ms: Option<u64>,
}

/// Which accesses to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub peer: Option<String>,
    pub prm: Option<Prm>,
    /// Only accesses at or after this instant (UTC seconds).
    pub since: Option<i64>,
    /// Only accesses before this instant.
    pub until: Option<i64>,
    /// At most this many rows (the most recent), oldest first.
    pub limit: Option<usize>,
}

/// Why an access could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The schema refused an allowed access: no valid basis at that instant.
    #[error("{0}")]
    NoBasis(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Grants changed by [`Store::sync_grants`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantChanges {
    pub added: Vec<(String, Prm)>,
    pub removed: Vec<(String, Prm)>,
}

impl Sqlite {
    /// Record one access; returns its id. An allowed access without a valid basis
    /// is refused by the schema: [`AuditError::NoBasis`].
    /// Written on every request, so without an fsync of its own (see
    /// [`super::without_fsync`]).
    pub fn record_access(&self, access: &Access) -> Result<i64, AuditError> {
        self.relaxed_write(|conn| insert_access(conn, access))
    }

    /// Recorded accesses matching `filter`, oldest first.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut clauses = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(peer) = &filter.peer {
            values.push(peer.clone().into());
            clauses.push(format!("peer = ?{}", values.len()));
        }
        if let Some(prm) = &filter.prm {
            values.push(prm.as_str().to_owned().into());
            clauses.push(format!("prm = ?{}", values.len()));
        }
        if let Some(since) = filter.since {
            values.push(since.into());
            clauses.push(format!("at >= ?{}", values.len()));
        }
        if let Some(until) = filter.until {
            values.push(until.into());
            clauses.push(format!("at < ?{}", values.len()));
        }
        let r#where = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = filter
            .limit
            .map(|n| format!("LIMIT {}", i64::try_from(n).unwrap_or(i64::MAX)))
            .unwrap_or_default();
        // Most recent `limit` rows, then back to chronological order.
        let sql = format!(
            "SELECT * FROM (SELECT id, at, peer, command, prm, series, range_start, range_end, \
             consent_id, via_grant, outcome, error, error_code, detail, upstream_calls, \
             duration_ms FROM audit {where} ORDER BY id DESC {limit}) ORDER BY id"
        );
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&sql)
            .map_err(StoreError::sqlite("read the audit trail"))?;
        stmt.query_map(params_from_iter(values), |row| {
            Ok(AuditRecord {
                id: row.get(0)?,
                at: row.get(1)?,
                peer: row.get(2)?,
                command: row.get(3)?,
                prm: row.get(4)?,
                series: row.get(5)?,
                range_start: row.get(6)?,
                range_end: row.get(7)?,
                consent_id: row.get(8)?,
                via_grant: row.get(9)?,
                outcome: row.get(10)?,
                error: row.get(11)?,
                error_code: row.get(12)?,
                detail: row.get(13)?,
                upstream_calls: row.get(14)?,
                duration_ms: row
                    .get::<_, Option<i64>>(15)?
                    .map(|d| u64::try_from(d).unwrap_or(0)),
            })
        })
        .map_err(StoreError::sqlite("read the audit trail"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::sqlite("read the audit trail"))
    }

    /// Make `grants` equal to `wanted` (peer bare JID, PRMs), changing only the rows
    /// that differ, in one transaction.
    pub fn sync_grants<'a, I>(&self, wanted: I) -> Result<GrantChanges, StoreError>
    where
        I: IntoIterator<Item = (&'a str, &'a [Prm])>,
    {
        let wanted: BTreeSet<(String, Prm)> = wanted
            .into_iter()
            .flat_map(|(peer, prms)| prms.iter().map(move |prm| (peer.to_owned(), *prm)))
            .collect();
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin updating grants"))?;
        let current: BTreeSet<(String, Prm)> = grant_rows(&tx, "SELECT peer, prm FROM grants")?
            .into_iter()
            .filter_map(|(peer, prm)| prm.parse().ok().map(|prm| (peer, prm)))
            .collect();
        let mut changes = GrantChanges::default();
        for (peer, prm) in current.difference(&wanted) {
            tx.execute(
                "DELETE FROM grants WHERE peer = ?1 AND prm = ?2",
                params![peer, prm.as_str()],
            )
            .map_err(StoreError::sqlite("remove a grant"))?;
            changes.removed.push((peer.clone(), *prm));
        }
        for (peer, prm) in wanted.difference(&current) {
            tx.execute(
                "INSERT INTO grants (peer, prm) VALUES (?1, ?2)",
                params![peer, prm.as_str()],
            )
            .map_err(StoreError::sqlite("add a grant"))?;
            changes.added.push((peer.clone(), *prm));
        }
        tx.commit()
            .map_err(StoreError::sqlite("commit the grants"))?;
        Ok(changes)
    }

    /// Whether the configuration grants `peer` access to `prm`.
    pub fn has_grant(&self, peer: &str, prm: &Prm) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM grants WHERE peer = ?1 AND prm = ?2)",
                params![peer, prm.as_str()],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("read a grant"))
    }

    /// Every grant, by peer then PRM.
    pub fn grants(&self) -> Result<Vec<(String, Prm)>, StoreError> {
        grant_rows(
            &self.conn(),
            "SELECT peer, prm FROM grants ORDER BY peer, prm",
        )?
        .into_iter()
        .map(|(peer, prm)| {
            prm.parse()
                .map(|prm| (peer, prm))
                .map_err(|e| StoreError::Invalid(format!("grant with a bad PRM: {e}")))
        })
        .collect()
    }
}

/// What both databases do the same way, through their operations.
impl Store {
    /// [`Store::sync_grants`] from the configuration's `[[peers]]`.
    pub fn sync_peer_grants(&self, peers: &[PeerConfig]) -> Result<GrantChanges, StoreError> {
        self.sync_grants(
            peers
                .iter()
                .map(|p| (p.jid.as_str(), p.usage_points.as_slice())),
        )
    }

    /// The basis on which `peer` may read `prm` at `now`: its newest usable consent
    /// covering it, else a grant; `None` if neither.
    pub fn access_basis(
        &self,
        peer: &str,
        prm: &Prm,
        now: i64,
    ) -> Result<Option<AccessBasis>, StoreError> {
        if let Some(consent) = self.consents_for_peer(peer, prm, now)?.first() {
            return Ok(Some(AccessBasis::Consent(consent.id)));
        }
        Ok(self.has_grant(peer, prm)?.then_some(AccessBasis::Grant))
    }
}

/// The `(peer, prm)` rows of `sql` (a `SELECT peer, prm FROM grants …`), PRMs as
/// stored: the caller decides what a bad one means.
fn grant_rows(conn: &rusqlite::Connection, sql: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(StoreError::sqlite("read grants"))?;
    stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })
    .map_err(StoreError::sqlite("read grants"))?
    .collect::<Result<Vec<_>, _>>()
    .map_err(StoreError::sqlite("read grants"))
}

/// The audit insert itself; the schema refuses an allowed access without a basis.
fn insert_access(conn: &rusqlite::Connection, access: &Access) -> Result<i64, AuditError> {
    let (outcome, error) = match &access.outcome {
        AccessOutcome::Allowed { error } => ("allowed", error.as_ref()),
        AccessOutcome::Refused(error) => ("refused", Some(error)),
    };
    let (consent_id, via_grant) = match access.basis {
        Some(AccessBasis::Consent(id)) => (Some(id), false),
        Some(AccessBasis::Grant) => (None, true),
        None => (None, false),
    };
    // Cached: the statement carries the compiled trigger, and this runs on
    // every request.
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO audit (at, peer, command, prm, series, range_start, range_end, \
             consent_id, via_grant, outcome, error, error_code, detail, upstream_calls, \
             duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )
        .map_err(StoreError::sqlite("prepare the audit insert"))?;
    let result = insert.execute(params![
        access.at,
        access.peer,
        access.command,
        access.prm.as_ref().map(Prm::as_str),
        access.series.map(|s| s.name()),
        access.range.map(|r| r.0),
        access.range.map(|r| r.1),
        consent_id,
        via_grant,
        outcome,
        error.map(|e| e.condition.as_str()),
        error.and_then(|e| e.code.as_deref()),
        error.map(|e| e.text.as_str()),
        access.upstream_calls,
        access
            .duration_ms
            .map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
    ]);
    match result {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, message))
            if e.code == ErrorCode::ConstraintViolation && outcome == "allowed" =>
        {
            Err(AuditError::NoBasis(format!(
                "cannot record an allowed access of {} to PRM {} on {}: {}",
                access.peer,
                access.prm.as_ref().map(Prm::as_str).unwrap_or("(none)"),
                access
                    .basis
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "no basis".into()),
                message.unwrap_or_else(|| "constraint failed".into())
            )))
        }
        Err(e) => Err(StoreError::Sqlite {
            op: "record an access",
            source: e,
        }
        .into()),
    }
}

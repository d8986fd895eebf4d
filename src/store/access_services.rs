//! The access services the agent ordered from Enedis SGE for its declared consents
//! (`CommanderServicesAccesDonnees`), and whether they were stopped
//! (`CommanderArretServicesAccesDonnees`).
//!
//! A service is active at Enedis from its order until it is stopped or reaches its
//! `dateFin`. The agent records each one the moment SGE answers, so that it can stop
//! it when the consent it serves ends (revoked by the operator, or expired): a row
//! with `stopped_at` NULL is a service the agent believes active at Enedis. A stop
//! that failed keeps the row active with the failure in `stop_error`, and the
//! daemon tries again ([`Store::access_services_to_stop`]).

use jiff::civil::Date;
use rusqlite::{OptionalExtension, params};

use super::sql_row::SqlRow;
use super::{Sqlite, StoreError, now_seconds};
use crate::quoalise::Prm;

/// The table (appended to the migrations).
///
/// A consent with services is not deleted (`ON DELETE RESTRICT`): the record of
/// what was ordered at Enedis in its name outlives nothing. Only SGE consents
/// have services (a trigger refuses others).
pub const MIGRATION: &str = r#"
-- The access services ordered from Enedis SGE (CommanderServicesAccesDonnees) for
-- a declared consent: one row per serviceSouscritId.
CREATE TABLE sge_access_services (
    id          INTEGER PRIMARY KEY,
    consent_id  INTEGER NOT NULL REFERENCES consents (id) ON DELETE RESTRICT,
    prm         TEXT    NOT NULL CHECK (length(prm) = 14),
    -- typeDonnees: load curve, daily index, maximum power, daily energy.
    data_type   TEXT    NOT NULL CHECK (data_type IN ('CDC', 'IDX', 'PMAX', 'ENERGIE')),
    -- serviceSouscritId: what the stop order names (1 to 15 characters).
    service_id  TEXT    NOT NULL UNIQUE CHECK (length(service_id) BETWEEN 1 AND 15),
    -- affaireId of the order, when SGE gave one.
    affair_id   TEXT,
    -- UTC seconds of SGE's answer to the order.
    ordered_at  INTEGER NOT NULL,
    -- dateFin of the service (excluded), a Paris day YYYY-MM-DD.
    end_date    TEXT    NOT NULL CHECK (length(end_date) = 10),
    -- UTC seconds of the stop (or of the day the agent found it ended); NULL while
    -- the agent believes it active at Enedis.
    stopped_at  INTEGER,
    -- The last stop that failed (SGE's code and label, or why SGE was not
    -- reached); NULL if none since the last success.
    stop_error  TEXT,
    -- UTC seconds of that failure.
    stop_failed_at INTEGER
);
CREATE INDEX sge_access_services_consent ON sge_access_services (consent_id);
CREATE INDEX sge_access_services_active ON sge_access_services (consent_id)
    WHERE stopped_at IS NULL;

CREATE TRIGGER sge_access_services_of_sge_consents BEFORE INSERT ON sge_access_services
WHEN NOT EXISTS (SELECT 1 FROM consents WHERE id = NEW.consent_id AND generation = 'sge')
BEGIN
    SELECT RAISE(ABORT, 'sge_access_services: only a consent of generation sge orders access services');
END;
"#;

/// `typeDonnees` of an access service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SgeDataType {
    /// `CDC`: the load curve.
    LoadCurve,
    /// `IDX`: the daily index.
    Index,
    /// `PMAX`: the maximum power (C5/P4 only).
    MaxPower,
    /// `ENERGIE`: the daily energy.
    Energy,
}

impl SgeDataType {
    /// Every type, in the order the operator sees them.
    pub const ALL: [SgeDataType; 4] = [
        SgeDataType::LoadCurve,
        SgeDataType::Index,
        SgeDataType::MaxPower,
        SgeDataType::Energy,
    ];

    /// SGE's `typeDonnees`: `CDC`, `IDX`, `PMAX`, `ENERGIE`.
    pub fn code(self) -> &'static str {
        match self {
            SgeDataType::LoadCurve => "CDC",
            SgeDataType::Index => "IDX",
            SgeDataType::MaxPower => "PMAX",
            SgeDataType::Energy => "ENERGIE",
        }
    }

    /// The operator's name: `load-curve`, `index`, `max-power`, `energy`.
    pub fn name(self) -> &'static str {
        match self {
            SgeDataType::LoadCurve => "load-curve",
            SgeDataType::Index => "index",
            SgeDataType::MaxPower => "max-power",
            SgeDataType::Energy => "energy",
        }
    }

    /// From SGE's code.
    pub fn from_code(code: &str) -> Option<SgeDataType> {
        SgeDataType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// From the operator's name or SGE's code, in any case.
    pub fn parse(raw: &str) -> Option<SgeDataType> {
        let raw = raw.trim();
        SgeDataType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(raw) || t.code().eq_ignore_ascii_case(raw))
    }
}

impl std::fmt::Display for SgeDataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A service SGE accepted, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessService {
    pub consent_id: i64,
    pub prm: Prm,
    pub data: SgeDataType,
    /// `serviceSouscritId`.
    pub service_id: String,
    /// `affaireId`.
    pub affair_id: Option<String>,
    /// `dateFin` (excluded).
    pub end: Date,
}

/// A recorded access service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessService {
    pub id: i64,
    pub consent_id: i64,
    pub prm: Prm,
    pub data: SgeDataType,
    pub service_id: String,
    pub affair_id: Option<String>,
    /// UTC seconds.
    pub ordered_at: i64,
    pub end: Date,
    /// UTC seconds; `None` while active at Enedis (as far as the agent knows).
    pub stopped_at: Option<i64>,
    /// The last stop failure, if any since.
    pub stop_error: Option<String>,
    pub stop_failed_at: Option<i64>,
}

impl AccessService {
    /// Not stopped (it may have reached its `dateFin`: see [`AccessService::ended_by`]).
    pub fn is_active(&self) -> bool {
        self.stopped_at.is_none()
    }

    /// Whether its `dateFin` is reached on the Paris day `today`: Enedis ended it.
    pub fn ended_by(&self, today: Date) -> bool {
        self.end <= today
    }
}

/// The columns [`read`] reads, of `sge_access_services`.
pub(crate) const COLUMNS: &str = "id, consent_id, prm, data_type, service_id, affair_id, \
     ordered_at, end_date, stopped_at, stop_error, stop_failed_at";

/// A row of [`COLUMNS`], from either database.
pub(crate) fn read<R: SqlRow>(row: &R) -> Result<RawService, R::Error> {
    Ok(RawService {
        id: row.get(0)?,
        consent_id: row.get(1)?,
        prm: row.get(2)?,
        data: row.get(3)?,
        service_id: row.get(4)?,
        affair_id: row.get(5)?,
        ordered_at: row.get(6)?,
        end: row.get(7)?,
        stopped_at: row.get(8)?,
        stop_error: row.get(9)?,
        stop_failed_at: row.get(10)?,
    })
}

/// A row before its texts are checked ([`RawService::parse`]).
pub(crate) struct RawService {
    id: i64,
    consent_id: i64,
    prm: String,
    data: String,
    service_id: String,
    affair_id: Option<String>,
    ordered_at: i64,
    end: String,
    stopped_at: Option<i64>,
    stop_error: Option<String>,
    stop_failed_at: Option<i64>,
}

impl RawService {
    pub(crate) fn parse(self) -> Result<AccessService, StoreError> {
        let invalid =
            |why: String| StoreError::Invalid(format!("access service {}: {why}", self.service_id));
        Ok(AccessService {
            id: self.id,
            consent_id: self.consent_id,
            prm: self
                .prm
                .parse()
                .map_err(|e| invalid(format!("stored PRM {:?} is invalid: {e}", self.prm)))?,
            data: SgeDataType::from_code(&self.data)
                .ok_or_else(|| invalid(format!("unknown data type {:?}", self.data)))?,
            end: crate::time::parse_date(&self.end)
                .map_err(|e| invalid(format!("stored end date {:?}: {e}", self.end)))?,
            service_id: self.service_id,
            affair_id: self.affair_id,
            ordered_at: self.ordered_at,
            stopped_at: self.stopped_at,
            stop_error: self.stop_error,
            stop_failed_at: self.stop_failed_at,
        })
    }
}

/// The `serviceSouscritId` of `new`, trimmed, once it is 1 to 15 characters.
pub(crate) fn checked_service_id(new: &NewAccessService) -> Result<&str, StoreError> {
    let id = new.service_id.trim();
    if id.is_empty() || id.chars().count() > 15 {
        return Err(StoreError::Invalid(format!(
            "serviceSouscritId {:?} is not 1 to 15 characters",
            new.service_id
        )));
    }
    Ok(id)
}

fn select(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AccessService>, StoreError> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(StoreError::sqlite("query access services"))?;
    let rows = stmt
        .query_map(params, |row| read(row))
        .map_err(StoreError::sqlite("query access services"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::sqlite("read access services"))?;
    rows.into_iter().map(RawService::parse).collect()
}

impl Sqlite {
    /// Record a service SGE accepted (committed before this returns); returns it.
    /// Fails for a consent that is not an SGE one, or a `serviceSouscritId`
    /// already recorded.
    pub fn record_access_service(
        &self,
        new: &NewAccessService,
    ) -> Result<AccessService, StoreError> {
        let id = checked_service_id(new)?;
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!(
                    "INSERT INTO sge_access_services (consent_id, prm, data_type, service_id, \
                     affair_id, ordered_at, end_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     RETURNING {COLUMNS}"
                ),
                params![
                    new.consent_id,
                    new.prm.as_str(),
                    new.data.code(),
                    id,
                    new.affair_id,
                    now_seconds(),
                    new.end.to_string()
                ],
                |row| read(row),
            )
            .map_err(StoreError::sqlite("record an access service"))?;
        row.parse()
    }

    /// The services ordered for a consent, oldest first, stopped ones included.
    pub fn access_services_of_consent(
        &self,
        consent_id: i64,
    ) -> Result<Vec<AccessService>, StoreError> {
        let conn = self.conn();
        select(
            &conn,
            &format!("SELECT {COLUMNS} FROM sge_access_services WHERE consent_id = ?1 ORDER BY id"),
            params![consent_id],
        )
    }

    /// Every service not stopped, of any consent, oldest first (for listings).
    pub fn active_access_services(&self) -> Result<Vec<AccessService>, StoreError> {
        let conn = self.conn();
        select(
            &conn,
            &format!(
                "SELECT {COLUMNS} FROM sge_access_services WHERE stopped_at IS NULL ORDER BY id"
            ),
            [],
        )
    }

    /// One service by its `serviceSouscritId`.
    pub fn access_service(&self, service_id: &str) -> Result<Option<AccessService>, StoreError> {
        let conn = self.conn();
        Ok(select(
            &conn,
            &format!("SELECT {COLUMNS} FROM sge_access_services WHERE service_id = ?1"),
            params![service_id],
        )?
        .pop())
    }

    /// At most `limit` services still active whose consent is no longer usable at
    /// `now` (revoked, expired, or past its validity): what must be stopped at
    /// Enedis. Those never tried first, then the failures tried longest ago.
    pub fn access_services_to_stop(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AccessService>, StoreError> {
        let conn = self.conn();
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        select(
            &conn,
            &format!(
                "SELECT {columns} FROM sge_access_services s JOIN consents c ON c.id = s.consent_id \
                 WHERE s.stopped_at IS NULL AND (c.state <> 'active' OR c.valid_until <= ?1) \
                 ORDER BY s.stop_failed_at IS NOT NULL, s.stop_failed_at, s.id LIMIT ?2"
            ),
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// Mark a service stopped at `at` (its failure, if any, cleared); `false` if
    /// there is no such service or it was already stopped.
    pub fn mark_access_service_stopped(
        &self,
        service_id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE sge_access_services SET stopped_at = ?2, stop_error = NULL, \
                 stop_failed_at = NULL WHERE service_id = ?1 AND stopped_at IS NULL",
                params![service_id, at],
            )
            .map_err(StoreError::sqlite("mark an access service stopped"))?;
        Ok(n > 0)
    }

    /// Record that stopping a service failed at `at`, and why; the service stays
    /// active. `false` if there is no such active service.
    pub fn record_access_stop_failure(
        &self,
        service_id: &str,
        error: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE sge_access_services SET stop_error = ?2, stop_failed_at = ?3 \
                 WHERE service_id = ?1 AND stopped_at IS NULL",
                params![service_id, error, at],
            )
            .map_err(StoreError::sqlite(
                "record an access service's stop failure",
            ))?;
        Ok(n > 0)
    }

    /// Whether a consent has a service of `data` on `prm` still active.
    pub fn has_active_access_service(
        &self,
        consent_id: i64,
        prm: &Prm,
        data: SgeDataType,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT 1 FROM sge_access_services WHERE consent_id = ?1 AND prm = ?2 \
             AND data_type = ?3 AND stopped_at IS NULL LIMIT 1",
            params![consent_id, prm.as_str(), data.code()],
            |_| Ok(()),
        )
        .optional()
        .map(|found| found.is_some())
        .map_err(StoreError::sqlite("find an active access service"))
    }
}

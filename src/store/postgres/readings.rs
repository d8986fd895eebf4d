//! PostgreSQL: see the SQLite side in `crate::store::readings`.
//!
//! The same rule as SQLite's: a day is cached only while a consent of its
//! generation or a grant covers its PRM, and the triggers of migration 4 delete
//! the cached days of a PRM as soon as its last consent ends or its last grant is
//! removed. SQLite keeps that true by having one writer at a time; here a cache
//! write and a revocation may run at once on two instances, so the write locks
//! the consent or grant it relies on (`FOR SHARE`) until it commits: a
//! revocation either ends before the write looks (and the write finds nothing
//! covering) or waits for the write's commit (and its trigger then sees, and
//! deletes, the days written).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::civil::Date;

use super::Postgres;
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series};
use crate::store::StoreError;
use crate::store::readings::{CacheStats, DaysRef, decode_day, encode_day};

/// Migration 4, "readings cache": SQLite's table (`BLOB` is `BYTEA`) and its
/// three triggers, each a PL/pgSQL function. SQLite's `unixepoch()` is the
/// statement's instant in whole seconds.
pub const MIGRATION: &str = r#"
CREATE TABLE cache_days (
    generation TEXT   NOT NULL CHECK (generation IN ('2026', 'v5', 'v4', 'v3')),
    prm        TEXT   NOT NULL CHECK (length(prm) = 14),
    series     TEXT   NOT NULL,
    -- Paris calendar day, YYYY-MM-DD, compared byte by byte as on SQLite.
    day        TEXT COLLATE "C" NOT NULL CHECK (length(day) = 10),
    -- The day's readings, encoded by store::readings::encode_day.
    readings   BYTEA  NOT NULL,
    fetched_at BIGINT NOT NULL,
    PRIMARY KEY (generation, prm, series, day)
);
CREATE INDEX cache_days_prm ON cache_days (prm);

-- A consent that ends takes the cached days of its PRMs with it, unless another
-- consent of the same generation or a grant still covers them.
CREATE FUNCTION cache_purge_on_consent_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cache_days
    WHERE generation = NEW.generation
      AND prm IN (SELECT prm FROM consent_prms WHERE consent_id = NEW.id)
      AND NOT EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation
          AND c.state = 'active'
          AND c.valid_until > floor(extract(epoch FROM statement_timestamp())))
      AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm);
    RETURN NULL;
END;
$$;
CREATE TRIGGER cache_purge_on_consent_end AFTER UPDATE OF state ON consents
FOR EACH ROW WHEN (OLD.state = 'active' AND NEW.state <> 'active')
EXECUTE FUNCTION cache_purge_on_consent_end();

CREATE FUNCTION cache_purge_on_consent_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cache_days
    WHERE generation = OLD.generation
      AND prm IN (SELECT prm FROM consent_prms WHERE consent_id = OLD.id)
      AND NOT EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation
          AND c.id <> OLD.id AND c.state = 'active'
          AND c.valid_until > floor(extract(epoch FROM statement_timestamp())))
      AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm);
    RETURN OLD;
END;
$$;
CREATE TRIGGER cache_purge_on_consent_delete BEFORE DELETE ON consents
FOR EACH ROW EXECUTE FUNCTION cache_purge_on_consent_delete();

CREATE FUNCTION cache_purge_on_grant_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cache_days
    WHERE prm = OLD.prm
      AND NOT EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation
          AND c.state = 'active'
          AND c.valid_until > floor(extract(epoch FROM statement_timestamp())))
      AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm);
    RETURN NULL;
END;
$$;
CREATE TRIGGER cache_purge_on_grant_removal AFTER DELETE ON grants
FOR EACH ROW EXECUTE FUNCTION cache_purge_on_grant_removal();
"#;

/// Whether a consent of `$1` valid at `$3`, or a grant, covers the PRM `$2`,
/// locking the consent or grant found until the transaction ends (see the
/// module's notes).
const COVERED_LOCKED: &str = "SELECT EXISTS ( \
       SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
       WHERE p.prm = $2 AND c.generation = $1 AND c.state = 'active' \
       AND c.valid_from <= $3 AND $3 < c.valid_until FOR SHARE OF c) \
     OR EXISTS (SELECT 1 FROM grants g WHERE g.prm = $2 FOR SHARE OF g)";

impl Postgres {
    /// Nothing to forget: PostgreSQL keeps no days in memory. SQLite's in-memory
    /// days are valid for one `PRAGMA data_version` of its connection, a free
    /// check that any other commit changes; PostgreSQL has no such cheap check
    /// (another instance's commit is seen only by asking the server, which costs
    /// the round trip the memory would save), so every read goes to the server.
    pub(crate) fn forget_hot_days(&self) {}

    /// See `Sqlite::cached_days`. A row that cannot be decoded is left out (and
    /// logged): it will be fetched again.
    pub(crate) fn cached_days(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series: Series,
        from: Date,
        to: Date,
    ) -> Result<BTreeMap<Date, Arc<[Reading]>>, StoreError> {
        let op = "read the cache";
        let rows = self
            .conn()?
            .query(
                "SELECT day, readings FROM cache_days WHERE generation = $1 AND prm = $2 \
                 AND series = $3 AND day >= $4 AND day < $5",
                &[
                    &generation.as_str(),
                    &prm.as_str(),
                    &series.name().as_ref(),
                    &from.to_string(),
                    &to.to_string(),
                ],
            )
            .map_err(StoreError::postgres(op))?;
        let mut days = BTreeMap::new();
        for row in rows {
            let day: &str = row.try_get(0).map_err(StoreError::postgres(op))?;
            let bytes: &[u8] = row.try_get(1).map_err(StoreError::postgres(op))?;
            match (crate::time::parse_date(day), decode_day(bytes)) {
                (Ok(date), Ok(readings)) => {
                    days.insert(date, readings.into());
                }
                (Err(e), _) => tracing::warn!(%prm, day, error = %e, "cached day ignored"),
                (_, Err(e)) => tracing::warn!(%prm, day, error = %e, "cached day ignored"),
            }
        }
        Ok(days)
    }

    /// One transaction writing the days of each series while a consent or grant
    /// covers the PRM at `now`; how many were written (each day given counts, as
    /// each of SQLite's `INSERT OR REPLACE` does).
    ///
    /// Committed without waiting for the WAL's flush (`synchronous_commit =
    /// off`, for this transaction only), as SQLite writes cached readings
    /// without an fsync: a crash of the server may lose the last of them, never
    /// corrupt anything, and they are fetched again. Consents and tokens are
    /// never written so.
    pub(crate) fn write_cached_days(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series_days: &[(Series, DaysRef<'_>)],
        now: i64,
    ) -> Result<usize, StoreError> {
        let given: usize = series_days.iter().map(|(_, days)| days.len()).sum();
        if given == 0 {
            return Ok(0);
        }
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin writing the cache"))?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .map_err(StoreError::postgres("begin writing the cache"))?;
        let covered: bool = tx
            .query_one(COVERED_LOCKED, &[&generation.as_str(), &prm.as_str(), &now])
            .and_then(|row| row.try_get(0))
            .map_err(StoreError::postgres("read whether a PRM is covered"))?;
        if !covered {
            return Ok(0);
        }
        // One row per key, the last given winning as with SQLite's successive
        // replaces; in key order, so that instances writing the same days at
        // once lock them in the same order (no deadlock).
        let mut rows: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        for (series, days) in series_days {
            let name = series.name();
            for (day, readings) in *days {
                rows.insert((name.to_string(), day.to_string()), encode_day(readings));
            }
        }
        let mut names = Vec::with_capacity(rows.len());
        let mut dates = Vec::with_capacity(rows.len());
        let mut encoded = Vec::with_capacity(rows.len());
        for ((name, day), bytes) in rows {
            names.push(name);
            dates.push(day);
            encoded.push(bytes);
        }
        tx.execute(
            "INSERT INTO cache_days (generation, prm, series, day, readings, fetched_at) \
             SELECT $1, $2, series, day, readings, $3 \
             FROM unnest($4::text[], $5::text[], $6::bytea[]) WITH ORDINALITY \
               AS d (series, day, readings, n) \
             ORDER BY n \
             ON CONFLICT (generation, prm, series, day) \
             DO UPDATE SET readings = excluded.readings, fetched_at = excluded.fetched_at",
            &[
                &generation.as_str(),
                &prm.as_str(),
                &now,
                &names,
                &dates,
                &encoded,
            ],
        )
        .map_err(StoreError::postgres("write the cache"))?;
        tx.commit()
            .map_err(StoreError::postgres("commit the cache"))?;
        Ok(given)
    }

    /// See `Sqlite::purge_cache`.
    pub(crate) fn purge_cache(&self, now: i64) -> Result<usize, StoreError> {
        self.conn()?
            .execute(
                "DELETE FROM cache_days WHERE NOT EXISTS ( \
                   SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
                   WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation \
                   AND c.state = 'active' AND c.valid_from <= $1 AND $1 < c.valid_until) \
                 AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm)",
                &[&now],
            )
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(StoreError::postgres("purge the cache"))
    }

    /// See `Sqlite::is_covered`.
    pub(crate) fn is_covered(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.conn()?
            .query_one(
                "SELECT EXISTS ( \
                   SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
                   WHERE p.prm = $1 AND c.generation = $2 \
                   AND c.state = 'active' AND c.valid_from <= $3 AND $3 < c.valid_until) \
                 OR EXISTS (SELECT 1 FROM grants g WHERE g.prm = $1)",
                &[&prm.as_str(), &generation.as_str(), &now],
            )
            .and_then(|row| row.try_get(0))
            .map_err(StoreError::postgres("read whether a PRM is covered"))
    }

    /// See `Sqlite::cache_stats`.
    pub(crate) fn cache_stats(&self) -> Result<CacheStats, StoreError> {
        let row = self
            .conn()?
            .query_one(
                "SELECT count(*), coalesce(sum(octet_length(readings)), 0)::bigint \
                 FROM cache_days",
                &[],
            )
            .map_err(StoreError::postgres("count the cache"))?;
        let days: i64 = row
            .try_get(0)
            .map_err(StoreError::postgres("count the cache"))?;
        let bytes: i64 = row
            .try_get(1)
            .map_err(StoreError::postgres("count the cache"))?;
        Ok(CacheStats {
            days: days.try_into().unwrap_or(0),
            bytes: bytes.try_into().unwrap_or(0),
        })
    }
}

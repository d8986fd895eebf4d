//! The readings table (`cache_days`): the persistence of the readings cache, days of
//! closed periods kept so that a repeated request costs no upstream call. The cache's
//! policy, what is closed and when to ask upstream, is
//! [`crate::upstream::cache`]; this file only stores and serves what it decides.
//!
//! One row per (API generation, PRM, series, Paris day) holding every reading of the
//! day as the upstream gave it, missing values included, so a day with gaps is still
//! a complete day.
//!
//! The cache holds personal data only as long as something allows reading it: a row
//! can only be written while an active consent of its generation or a grant covers
//! its PRM (checked in the INSERT itself), and triggers delete the rows of a PRM as
//! soon as its last consent ends (revoked, expired or deleted) or its last grant is
//! removed. A consent that merely runs past its `valid_until` changes no row, so
//! [`Store::purge_cache`] (housekeeping) catches those.
//!
//! Days read through [`Store::call_now`]'s connection are also kept in memory
//! ([`HotDays`]) while nothing else changes the database: they are only served
//! while no other connection or process has committed since they were read (a
//! new day cached, a consent revoked, the admin command line), and housekeeping
//! empties them every minute, so they outlive the rows they copy by a minute at
//! most and are never served after them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::civil::Date;
use rusqlite::params;

use super::{Sqlite, Store, StoreError};
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series, Step};

/// Schema of the cache (appended to the migrations).
pub const MIGRATION: &str = r#"
CREATE TABLE cache_days (
    generation TEXT    NOT NULL CHECK (generation IN ('2026', 'v5', 'v4', 'v3')),
    prm        TEXT    NOT NULL CHECK (length(prm) = 14),
    series     TEXT    NOT NULL,
    -- Paris calendar day, YYYY-MM-DD.
    day        TEXT    NOT NULL CHECK (length(day) = 10),
    -- The day's readings, encoded by store::cache::encode_day.
    readings   BLOB    NOT NULL,
    fetched_at INTEGER NOT NULL,
    PRIMARY KEY (generation, prm, series, day)
) WITHOUT ROWID;
CREATE INDEX cache_days_prm ON cache_days (prm);

-- A consent that ends takes the cached days of its PRMs with it, unless another
-- consent of the same generation or a grant still covers them.
CREATE TRIGGER cache_purge_on_consent_end AFTER UPDATE OF state ON consents
WHEN OLD.state = 'active' AND NEW.state <> 'active'
BEGIN
    DELETE FROM cache_days
    WHERE generation = NEW.generation
      AND prm IN (SELECT prm FROM consent_prms WHERE consent_id = NEW.id)
      AND NOT EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation
          AND c.state = 'active' AND c.valid_until > unixepoch())
      AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm);
END;

CREATE TRIGGER cache_purge_on_consent_delete BEFORE DELETE ON consents
BEGIN
    DELETE FROM cache_days
    WHERE generation = OLD.generation
      AND prm IN (SELECT prm FROM consent_prms WHERE consent_id = OLD.id)
      AND NOT EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation
          AND c.id <> OLD.id AND c.state = 'active' AND c.valid_until > unixepoch())
      AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm);
END;

CREATE TRIGGER cache_purge_on_grant_removal AFTER DELETE ON grants
BEGIN
    DELETE FROM cache_days
    WHERE prm = OLD.prm
      AND NOT EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation
          AND c.state = 'active' AND c.valid_until > unixepoch())
      AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm);
END;
"#;

/// Whether a cached row's PRM is covered at `?now` (SQL, over `cache_days`-like
/// columns `generation` and `prm` of the row being written or kept).
const COVERED: &str = "(EXISTS (SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
      WHERE p.prm = ?2 AND c.generation = ?1 AND c.state = 'active' \
      AND c.valid_from <= ?6 AND ?6 < c.valid_until) \
     OR EXISTS (SELECT 1 FROM grants g WHERE g.prm = ?2))";

/// Whole days of one series, each with all its readings, as the cache writes them.
pub type Days = Vec<(Date, Vec<Reading>)>;

/// Format version of an encoded day.
const FORMAT: u8 = 1;
/// Bytes per reading: start (i64), step (u16: 0 = P1D, else minutes), has value
/// (u8), value (f64), all little-endian.
const READING_BYTES: usize = 8 + 2 + 1 + 8;

/// Encode a day's readings for the `readings` column.
pub fn encode_day(readings: &[Reading]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + readings.len() * READING_BYTES);
    out.push(FORMAT);
    for r in readings {
        out.extend_from_slice(&r.start.to_le_bytes());
        let step: u16 = match r.step {
            Step::Day => 0,
            Step::Minutes(m) => m,
        };
        out.extend_from_slice(&step.to_le_bytes());
        out.push(u8::from(r.value.is_some()));
        out.extend_from_slice(&r.value.unwrap_or(0.0).to_le_bytes());
    }
    out
}

/// Why an encoded day could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable cached day: {0}")]
pub struct DecodeDayError(pub String);

/// Decode the `readings` column; any inconsistency is an error (the row is then
/// treated as absent and fetched again).
pub fn decode_day(bytes: &[u8]) -> Result<Vec<Reading>, DecodeDayError> {
    let (&format, body) = bytes
        .split_first()
        .ok_or_else(|| DecodeDayError("empty".into()))?;
    if format != FORMAT {
        return Err(DecodeDayError(format!("unknown format {format}")));
    }
    if body.len() % READING_BYTES != 0 {
        return Err(DecodeDayError(format!(
            "{} bytes is not a whole number of readings",
            body.len()
        )));
    }
    body.chunks_exact(READING_BYTES)
        .map(|chunk| {
            let (start, rest) = chunk.split_at(8);
            let (step, rest) = rest.split_at(2);
            let (flag, value) = rest.split_at(1);
            let start = i64::from_le_bytes(start.try_into().map_err(|_| short())?);
            let step = match u16::from_le_bytes(step.try_into().map_err(|_| short())?) {
                0 => Step::Day,
                m @ 1..=1440 => Step::Minutes(m),
                other => return Err(DecodeDayError(format!("bad step {other}"))),
            };
            let value = f64::from_le_bytes(value.try_into().map_err(|_| short())?);
            let value = match flag[0] {
                0 => None,
                1 if value.is_finite() => Some(value),
                1 => return Err(DecodeDayError("non-finite value".into())),
                other => return Err(DecodeDayError(format!("bad value flag {other}"))),
            };
            Ok(Reading { start, step, value })
        })
        .collect()
}

fn short() -> DecodeDayError {
    DecodeDayError("truncated reading".into())
}

/// What the cache holds, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub days: u64,
    pub bytes: u64,
}

/// At most this many days in memory (a day of half-hours is 48 readings, under
/// 2 KiB there).
const HOT_DAYS_MAX: usize = 4096;

type DayKey = (ApiGeneration, Prm, Series, Date);

/// Cached days in memory, valid for one `PRAGMA data_version` of
/// [`Store::call_now`]'s connection: the value changes when any other connection
/// commits (that connection's own commits do not change it, and SQLite lets it
/// write audit rows only, which no cached day depends on). A repeated request
/// then costs no SQL read and no decoding (a fifth of the store's CPU per cached
/// request, docs/agent.md).
#[derive(Default)]
pub(crate) struct HotDays {
    version: Option<i64>,
    days: HashMap<DayKey, Arc<[Reading]>>,
}

impl HotDays {
    /// Every day of `[from, to[`, if all are here.
    fn all(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series: Series,
        from: Date,
        to: Date,
    ) -> Option<BTreeMap<Date, Arc<[Reading]>>> {
        let mut days = BTreeMap::new();
        let mut day = from;
        while day < to {
            let readings = self.days.get(&(generation, *prm, series, day))?;
            days.insert(day, readings.clone());
            day = day.tomorrow().ok()?;
        }
        Some(days)
    }
}

impl Sqlite {
    /// Empties the in-memory days (housekeeping: they never outlive a minute).
    pub fn forget_hot_days(&self) {
        self.hot_days().days.clear();
    }

    fn hot_days(&self) -> std::sync::MutexGuard<'_, HotDays> {
        super::lock(&self.inner.hot_days)
    }

    /// Cached days of `(generation, prm, series)` within `[from, to[`. A row that
    /// cannot be decoded is left out (and logged): it will be fetched again.
    pub fn cached_days(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series: Series,
        from: Date,
        to: Date,
    ) -> Result<BTreeMap<Date, Arc<[Reading]>>, StoreError> {
        let conn = self.conn();
        // The version only means something on one connection: call_now's.
        let version = if self.now {
            let version: i64 = conn
                .prepare_cached("PRAGMA data_version")
                .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
                .map_err(StoreError::sqlite("read the data version"))?;
            let mut hot = self.hot_days();
            if hot.version != Some(version) {
                hot.days.clear();
                hot.version = Some(version);
            }
            if let Some(days) = hot.all(generation, prm, series, from, to) {
                return Ok(days);
            }
            Some(version)
        } else {
            None
        };
        let days = read_days(&conn, generation, prm, series, from, to)?;
        if let Some(version) = version {
            let mut hot = self.hot_days();
            if hot.version == Some(version) {
                if hot.days.len() + days.len() > HOT_DAYS_MAX {
                    hot.days.clear();
                }
                for (day, readings) in &days {
                    hot.days
                        .insert((generation, *prm, series, *day), readings.clone());
                }
            }
        }
        Ok(days)
    }
}

/// The cached days of `[from, to[` as stored.
fn read_days(
    conn: &rusqlite::Connection,
    generation: ApiGeneration,
    prm: &Prm,
    series: Series,
    from: Date,
    to: Date,
) -> Result<BTreeMap<Date, Arc<[Reading]>>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT day, readings FROM cache_days WHERE generation = ?1 AND prm = ?2 \
                 AND series = ?3 AND day >= ?4 AND day < ?5",
        )
        .map_err(StoreError::sqlite("read the cache"))?;
    let rows = stmt
        .query_map(
            params![
                generation.as_str(),
                prm.as_str(),
                series.name(),
                from.to_string(),
                to.to_string()
            ],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .map_err(StoreError::sqlite("read the cache"))?;
    let mut days = BTreeMap::new();
    for row in rows {
        let (day, bytes) = row.map_err(StoreError::sqlite("read the cache"))?;
        match (crate::time::parse_date(&day), decode_day(&bytes)) {
            (Ok(date), Ok(readings)) => {
                days.insert(date, readings.into());
            }
            (Err(e), _) => tracing::warn!(%prm, day, error = %e, "cached day ignored"),
            (_, Err(e)) => tracing::warn!(%prm, day, error = %e, "cached day ignored"),
        }
    }
    Ok(days)
}

impl Store {
    /// Store whole days of `(generation, prm, series)`, fetched at `now`. A day is
    /// written only while a consent of that generation or a grant covers the PRM at
    /// `now`; returns how many were written.
    pub fn cache_days(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series: Series,
        days: &[(Date, Vec<Reading>)],
        now: i64,
    ) -> Result<usize, StoreError> {
        self.write_cached_days(generation, prm, &[(series, days)], now)
    }

    /// [`Store::cache_days`] for several series of one answer at once (the
    /// totalisator and every class of an index), in one transaction: a reader sees
    /// all of them or none.
    pub fn cache_series_days(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series: &[(Series, Days)],
        now: i64,
    ) -> Result<usize, StoreError> {
        let series: Vec<(Series, DaysRef<'_>)> = series
            .iter()
            .map(|(s, days)| (*s, days.as_slice()))
            .collect();
        self.write_cached_days(generation, prm, &series, now)
    }
}

impl Sqlite {
    /// See [`Store::cache_days`]. Readings can be fetched again: no fsync of
    /// their own.
    pub fn write_cached_days(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        series_days: &[(Series, DaysRef<'_>)],
        now: i64,
    ) -> Result<usize, StoreError> {
        self.relaxed_write(|conn| write_days(conn, generation, prm, series_days, now))
    }

    /// Delete the cached days whose PRM no consent (of their generation) or grant
    /// covers at `now` any more; returns how many.
    pub fn purge_cache(&self, now: i64) -> Result<usize, StoreError> {
        self.forget_hot_days();
        self.conn()
            .execute(
                "DELETE FROM cache_days WHERE NOT EXISTS ( \
                   SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
                   WHERE p.prm = cache_days.prm AND c.generation = cache_days.generation \
                   AND c.state = 'active' AND c.valid_from <= ?1 AND ?1 < c.valid_until) \
                 AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.prm = cache_days.prm)",
                params![now],
            )
            .map_err(StoreError::sqlite("purge the cache"))
    }

    /// Whether a consent of `generation` valid at `now`, or a grant, covers `prm`:
    /// what any cached data of the PRM needs to be kept (the contracts the
    /// upstream cache keeps in memory ask it at housekeeping).
    pub fn is_covered(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT EXISTS ( \
                   SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
                   WHERE p.prm = ?1 AND c.generation = ?2 \
                   AND c.state = 'active' AND c.valid_from <= ?3 AND ?3 < c.valid_until) \
                 OR EXISTS (SELECT 1 FROM grants g WHERE g.prm = ?1)",
                params![prm.as_str(), generation.as_str(), now],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("read whether a PRM is covered"))
    }

    /// How many days the cache holds, and their size.
    pub fn cache_stats(&self) -> Result<CacheStats, StoreError> {
        self.conn()
            .query_row(
                "SELECT count(*), coalesce(sum(length(readings)), 0) FROM cache_days",
                [],
                |row| {
                    Ok(CacheStats {
                        days: row.get::<_, i64>(0)?.try_into().unwrap_or(0),
                        bytes: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    })
                },
            )
            .map_err(StoreError::sqlite("count the cache"))
    }
}

/// Whole days of one series, borrowed.
pub type DaysRef<'a> = &'a [(Date, Vec<Reading>)];

/// One transaction writing the days of each series, each only while a consent or
/// grant covers the PRM.
fn write_days(
    conn: &rusqlite::Connection,
    generation: ApiGeneration,
    prm: &Prm,
    series_days: &[(Series, DaysRef<'_>)],
    now: i64,
) -> Result<usize, StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Deferred)
        .map_err(StoreError::sqlite("begin writing the cache"))?;
    let mut written = 0;
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO cache_days (generation, prm, series, day, readings, \
                 fetched_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE {COVERED}"
            ))
            .map_err(StoreError::sqlite("write the cache"))?;
        for (series, days) in series_days {
            let name = series.name();
            for (day, readings) in *days {
                written += stmt
                    .execute(params![
                        generation.as_str(),
                        prm.as_str(),
                        name,
                        day.to_string(),
                        encode_day(readings),
                        now
                    ])
                    .map_err(StoreError::sqlite("write the cache"))?;
            }
        }
    }
    tx.commit()
        .map_err(StoreError::sqlite("commit the cache"))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn days_round_trip_with_gaps_and_steps() {
        let readings = vec![
            Reading {
                start: 1_790_000_000,
                step: Step::PT30M,
                value: Some(12.5),
            },
            Reading {
                start: 1_790_001_800,
                step: Step::PT30M,
                value: None,
            },
            Reading {
                start: 1_790_003_600,
                step: Step::Day,
                value: Some(-0.0),
            },
        ];
        assert_eq!(decode_day(&encode_day(&readings)).unwrap(), readings);
        assert_eq!(decode_day(&encode_day(&[])).unwrap(), Vec::<Reading>::new());
    }

    #[test]
    fn damaged_days_are_refused() {
        let good = encode_day(&[Reading {
            start: 0,
            step: Step::PT30M,
            value: Some(1.0),
        }]);
        assert!(decode_day(&[]).is_err());
        assert!(decode_day(&[2]).is_err(), "unknown format");
        assert!(decode_day(&good[..good.len() - 1]).is_err(), "truncated");
        let mut bad_flag = good.clone();
        bad_flag[11] = 7;
        assert!(decode_day(&bad_flag).is_err());
        let mut bad_step = good.clone();
        bad_step[9..11].copy_from_slice(&2000u16.to_le_bytes());
        assert!(decode_day(&bad_step).is_err());
        let mut nan = good;
        nan[12..20].copy_from_slice(&f64::NAN.to_le_bytes());
        assert!(decode_day(&nan).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn days_in_memory_last_until_another_connection_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let store = Store::open(&path).unwrap();
        // Grants app@example.org this PRM.
        let access = crate::store::tests::granted_access(&store);
        let prm: Prm = "30001610071843".parse().unwrap();
        let day = jiff::civil::date(2026, 10, 1);
        let readings = vec![Reading {
            start: 1_790_000_000,
            step: Step::PT30M,
            value: Some(12.5),
        }];
        let generation = ApiGeneration::Api2026;
        let series = Series::ConsumptionPower;
        store
            .cache_days(
                generation,
                &prm,
                series,
                &[(day, readings.clone())],
                1_790_000_000,
            )
            .unwrap();
        let read = || {
            let store = store.clone();
            async move {
                store
                    .call_now(move |s| {
                        s.cached_days(generation, &prm, series, day, day.tomorrow().unwrap())
                    })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            read().await.get(&day).map(|d| &d[..]),
            Some(&readings[..]),
            "read from SQLite"
        );

        // That connection commits an audit row, as every request does: its own
        // commits leave its data version, and so the days in memory, alone.
        let version = store.sqlite().unwrap().hot_days().version;
        assert!(version.is_some());
        store
            .call_now(move |s| {
                s.record_access(&access)
                    .map_err(crate::store::tests::store_error)
            })
            .await
            .unwrap();
        assert_eq!(read().await.get(&day).map(|d| &d[..]), Some(&readings[..]));
        assert_eq!(
            store.sqlite().unwrap().hot_days().version,
            version,
            "served from memory"
        );

        // Another process commits (here, deletes the row): memory is emptied, and
        // SQLite has no row.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute("DELETE FROM cache_days", []).unwrap();
        assert!(read().await.is_empty(), "memory outlived the row");
    }
}

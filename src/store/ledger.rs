//! The Enedis quota's ledger: every call the quota scheduler granted in the last
//! hour, and the pause Enedis last asked for (HTTP 429), per platform (Data
//! Connect and SGE have separate quotas).
//!
//! Enedis counts calls per application and per hour, whatever process makes
//! them: an agent restarted after spending its hour must not start again with a
//! full one. The scheduler (`upstream::limiter`) keeps the hour in memory; this
//! ledger is what it is seeded from at start-up (`upstream::quota_ledger`
//! writes it behind the scheduler, a batch a second, and prunes it).
//!
//! Instants are UTC milliseconds (the per-second pace is finer than a second).
//! The rows say nothing about anyone's data: a peer's JID, a class, an instant.

use rusqlite::params;

use super::{Sqlite, StoreError};

/// The ledger's tables.
pub const MIGRATION: &str = r#"
-- One row per call granted by the quota scheduler, kept an hour (pruned).
CREATE TABLE quota_calls (
    -- Whose quota: 'data-connect' or 'sge'.
    platform TEXT    NOT NULL CHECK (length(platform) BETWEEN 1 AND 32),
    -- When the call was granted, UTC milliseconds.
    at_ms    INTEGER NOT NULL,
    -- The peer (normalised bare JID) it was charged to; NULL: the agent's own.
    peer     TEXT,
    class    TEXT    NOT NULL CHECK (class IN ('interactive', 'background'))
);
CREATE INDEX quota_calls_at ON quota_calls (platform, at_ms);

-- The end of the last pause Enedis asked for (HTTP 429), per platform.
CREATE TABLE quota_pauses (
    platform TEXT    PRIMARY KEY,
    until_ms INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// How long a call counts against the quota, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// One call in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCall {
    /// When it was granted, UTC milliseconds.
    pub at_ms: i64,
    /// The peer it was charged to; `None`: the agent's own call.
    pub peer: Option<String>,
    /// Background work (a push, a prefetch) rather than somebody waiting.
    pub background: bool,
}

/// What a platform's quota has spent in the hour before an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaLedger {
    /// The calls of the hour, oldest first.
    pub calls: Vec<QuotaCall>,
    /// The end of a pause still running, UTC milliseconds.
    pub pause_until_ms: Option<i64>,
}

fn class(background: bool) -> &'static str {
    if background {
        "background"
    } else {
        "interactive"
    }
}

impl Sqlite {
    /// Records `calls` of `platform`'s quota, and a pause until `pause_until_ms`
    /// (kept only if it ends later than the one recorded), in one transaction
    /// committed to disk (`synchronous = FULL`) before it returns.
    pub fn record_quota(
        &self,
        platform: &str,
        calls: &[QuotaCall],
        pause_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        if calls.is_empty() && pause_until_ms.is_none() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin recording quota calls"))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO quota_calls (platform, at_ms, peer, class) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(StoreError::sqlite("record a quota call"))?;
            for call in calls {
                insert
                    .execute(params![
                        platform,
                        call.at_ms,
                        call.peer,
                        class(call.background)
                    ])
                    .map_err(StoreError::sqlite("record a quota call"))?;
            }
        }
        if let Some(until) = pause_until_ms {
            tx.prepare_cached(
                "INSERT INTO quota_pauses (platform, until_ms) VALUES (?1, ?2) \
                 ON CONFLICT (platform) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)",
            )
            .and_then(|mut s| s.execute(params![platform, until]))
            .map_err(StoreError::sqlite("record a quota pause"))?;
        }
        tx.commit()
            .map_err(StoreError::sqlite("commit quota calls"))
    }

    /// `platform`'s calls of the hour before `now_ms` (those at or after
    /// `now_ms − 1 h`, oldest first), and its pause if it ends after `now_ms`.
    pub fn quota_ledger(&self, platform: &str, now_ms: i64) -> Result<QuotaLedger, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, peer, class FROM quota_calls \
                 WHERE platform = ?1 AND at_ms > ?2 ORDER BY at_ms",
            )
            .map_err(StoreError::sqlite("read the quota ledger"))?;
        let calls = stmt
            .query_map(params![platform, now_ms - HOUR_MS], |row| {
                Ok(QuotaCall {
                    at_ms: row.get(0)?,
                    peer: row.get(1)?,
                    background: row.get::<_, String>(2)? == "background",
                })
            })
            .map_err(StoreError::sqlite("read the quota ledger"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("read the quota ledger"))?;
        let pause: Option<i64> = conn
            .prepare_cached("SELECT until_ms FROM quota_pauses WHERE platform = ?1")
            .and_then(|mut s| {
                s.query_map(params![platform], |row| row.get(0))?
                    .next()
                    .transpose()
            })
            .map_err(StoreError::sqlite("read the quota pause"))?;
        Ok(QuotaLedger {
            calls,
            pause_until_ms: pause.filter(|until| *until > now_ms),
        })
    }

    /// Forgets the calls and pauses that no longer count at `now_ms` (calls
    /// older than an hour, pauses over). Returns how many rows went.
    pub fn prune_quota_ledger(&self, now_ms: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        let calls = conn
            .prepare_cached("DELETE FROM quota_calls WHERE at_ms <= ?1")
            .and_then(|mut s| s.execute(params![now_ms - HOUR_MS]))
            .map_err(StoreError::sqlite("prune the quota ledger"))?;
        let pauses = conn
            .prepare_cached("DELETE FROM quota_pauses WHERE until_ms <= ?1")
            .and_then(|mut s| s.execute(params![now_ms]))
            .map_err(StoreError::sqlite("prune the quota pauses"))?;
        Ok(calls + pauses)
    }
}

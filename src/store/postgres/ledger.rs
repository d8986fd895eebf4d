//! PostgreSQL: see the SQLite side in `crate::store::ledger`.
//!
//! Here the ledger is what several instances share: the leader writes its calls
//! behind its quota scheduler, and a standby that takes over seeds its hour from
//! them. Every statement is safe with writers on other instances: calls are only
//! ever inserted (each instance's rows add up), a pause is an upsert that keeps
//! the later end whatever the order of the commits, and pruning deletes only what
//! no longer counts.

use postgres::Row;

use super::Postgres;
use crate::store::StoreError;
use crate::store::ledger::{HOUR_MS, QuotaCall, QuotaLedger};

/// Migration 9, "the Enedis quota's ledger".
pub const MIGRATION: &str = r#"
-- One row per call granted by the quota scheduler, kept an hour (pruned).
CREATE TABLE quota_calls (
    -- Whose quota: 'data-connect' or 'sge'.
    platform TEXT   NOT NULL CHECK (length(platform) BETWEEN 1 AND 32),
    -- When the call was granted, UTC milliseconds.
    at_ms    BIGINT NOT NULL,
    -- The peer (normalised bare JID) it was charged to; NULL: the agent's own.
    peer     TEXT,
    class    TEXT   NOT NULL CHECK (class IN ('interactive', 'background')),
    -- The order of insertion (SQLite's rowid): calls of one instant are read
    -- back in the order they were recorded.
    seq      BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX quota_calls_at ON quota_calls (platform, at_ms);

-- The end of the last pause Enedis asked for (HTTP 429), per platform.
CREATE TABLE quota_pauses (
    platform TEXT   PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
"#;

fn class(background: bool) -> &'static str {
    if background {
        "background"
    } else {
        "interactive"
    }
}

fn read_call(row: &Row) -> Result<QuotaCall, postgres::Error> {
    Ok(QuotaCall {
        at_ms: row.try_get(0)?,
        peer: row.try_get(1)?,
        background: row.try_get::<_, &str>(2)? == "background",
    })
}

impl Postgres {
    /// See `Sqlite::record_quota`: one transaction, committed (and synced by
    /// the server) before it returns. The calls go in one statement, in their
    /// order; the pause keeps the later of its end and the one recorded, even
    /// when two instances record theirs at once (`ON CONFLICT` takes the row's
    /// lock and compares with its newest version).
    pub(crate) fn record_quota(
        &self,
        platform: &str,
        calls: &[QuotaCall],
        pause_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        if calls.is_empty() && pause_until_ms.is_none() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin recording quota calls"))?;
        if !calls.is_empty() {
            let at: Vec<i64> = calls.iter().map(|c| c.at_ms).collect();
            let peers: Vec<Option<&str>> = calls.iter().map(|c| c.peer.as_deref()).collect();
            let classes: Vec<&str> = calls.iter().map(|c| class(c.background)).collect();
            tx.execute(
                "INSERT INTO quota_calls (platform, at_ms, peer, class) \
                 SELECT $1, at_ms, peer, class \
                 FROM unnest($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY \
                   AS c (at_ms, peer, class, n) \
                 ORDER BY n",
                &[&platform, &at, &peers, &classes],
            )
            .map_err(StoreError::postgres("record a quota call"))?;
        }
        if let Some(until) = pause_until_ms {
            tx.execute(
                "INSERT INTO quota_pauses (platform, until_ms) VALUES ($1, $2) \
                 ON CONFLICT (platform) DO UPDATE \
                 SET until_ms = greatest(quota_pauses.until_ms, excluded.until_ms)",
                &[&platform, &until],
            )
            .map_err(StoreError::postgres("record a quota pause"))?;
        }
        tx.commit()
            .map_err(StoreError::postgres("commit quota calls"))
    }

    /// See `Sqlite::quota_ledger`: what every instance recorded. Both reads are
    /// of one snapshot.
    pub(crate) fn quota_ledger(
        &self,
        platform: &str,
        now_ms: i64,
    ) -> Result<QuotaLedger, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(StoreError::postgres("read the quota ledger"))?;
        let calls = tx
            .query(
                "SELECT at_ms, peer, class FROM quota_calls \
                 WHERE platform = $1 AND at_ms > $2 ORDER BY at_ms, seq",
                &[&platform, &(now_ms - HOUR_MS)],
            )
            .and_then(|rows| rows.iter().map(read_call).collect::<Result<Vec<_>, _>>())
            .map_err(StoreError::postgres("read the quota ledger"))?;
        let pause: Option<i64> = tx
            .query_opt(
                "SELECT until_ms FROM quota_pauses WHERE platform = $1",
                &[&platform],
            )
            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
            .map_err(StoreError::postgres("read the quota pause"))?;
        tx.commit()
            .map_err(StoreError::postgres("read the quota ledger"))?;
        Ok(QuotaLedger {
            calls,
            pause_until_ms: pause.filter(|until| *until > now_ms),
        })
    }

    /// See `Sqlite::prune_quota_ledger`. Instances pruning at once delete each
    /// row once (the second waits for the first's row locks, then skips rows
    /// already gone), so the counts add up to the rows that went.
    pub(crate) fn prune_quota_ledger(&self, now_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin pruning the quota ledger"))?;
        let calls = tx
            .execute(
                "DELETE FROM quota_calls WHERE at_ms <= $1",
                &[&(now_ms - HOUR_MS)],
            )
            .map_err(StoreError::postgres("prune the quota ledger"))?;
        let pauses = tx
            .execute("DELETE FROM quota_pauses WHERE until_ms <= $1", &[&now_ms])
            .map_err(StoreError::postgres("prune the quota pauses"))?;
        tx.commit()
            .map_err(StoreError::postgres("commit pruning the quota ledger"))?;
        Ok(usize::try_from(calls + pauses).unwrap_or(usize::MAX))
    }
}

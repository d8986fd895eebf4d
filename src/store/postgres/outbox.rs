//! PostgreSQL: see the SQLite side in `crate::store::outbox`.

use super::Postgres;
use crate::store::StoreError;
use crate::store::outbox::{QueuedNotification, join_usage_points, split_usage_points};

pub const MIGRATION: &str = r#"
-- A consent notification for a peer, queued by an instance without the XMPP
-- session (a standby), sent and removed by the leader.
CREATE TABLE notifications (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Bare JID of the peer to notify (normalised).
    peer         TEXT    NOT NULL CHECK (length(peer) > 0),
    -- The PRMs granted, comma-separated, in the consent's order.
    usage_points TEXT    NOT NULL CHECK (length(usage_points) >= 14),
    -- The peer's own state from its authorize URI, echoed back.
    peer_state   TEXT,
    queued_at    BIGINT  NOT NULL
);
"#;

impl Postgres {
    pub(crate) fn queue_notification(
        &self,
        peer: &str,
        usage_points: &[String],
        peer_state: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let joined = join_usage_points(usage_points)?;
        let row = self
            .conn()?
            .query_one(
                "INSERT INTO notifications (peer, usage_points, peer_state, queued_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&peer, &joined, &peer_state, &now],
            )
            .map_err(StoreError::postgres("queue a consent notification"))?;
        Ok(row.get(0))
    }

    pub(crate) fn queued_notifications(
        &self,
        limit: usize,
    ) -> Result<Vec<QueuedNotification>, StoreError> {
        let op = "read the queued consent notifications";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .conn()?
            .query(
                "SELECT id, peer, usage_points, peer_state, queued_at FROM notifications \
                 ORDER BY id LIMIT $1",
                &[&limit],
            )
            .map_err(StoreError::postgres(op))?;
        rows.iter()
            .map(|row| {
                Ok(QueuedNotification {
                    id: row.try_get(0).map_err(StoreError::postgres(op))?,
                    peer: row.try_get(1).map_err(StoreError::postgres(op))?,
                    usage_points: split_usage_points(
                        row.try_get(2).map_err(StoreError::postgres(op))?,
                    ),
                    peer_state: row.try_get(3).map_err(StoreError::postgres(op))?,
                    queued_at: row.try_get(4).map_err(StoreError::postgres(op))?,
                })
            })
            .collect()
    }

    pub(crate) fn remove_notification(&self, id: i64) -> Result<bool, StoreError> {
        self.conn()?
            .execute("DELETE FROM notifications WHERE id = $1", &[&id])
            .map(|n| n > 0)
            .map_err(StoreError::postgres("remove a sent consent notification"))
    }
}

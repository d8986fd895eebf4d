//! Consent notifications waiting for the leader's XMPP session.
//!
//! With PostgreSQL, several instances serve the consent pages but only the
//! leader holds the XMPP session (`crate::daemon::leader`). When a consumer
//! comes back from Enedis on a standby, the consent is stored there and the
//! peer's notification is queued here; the leader sends the queued
//! notifications and removes each once it is on its stream. Nothing is lost
//! when no instance leads for a while: the row waits for the next leader. A
//! leader that dies between sending and removing sends that one again (the
//! message says which PRMs were granted: receiving it twice changes nothing).
//!
//! With SQLite the agent always leads, sends at once and never queues.

use rusqlite::params;

use super::{Sqlite, StoreError};

/// The queue's table.
pub const MIGRATION: &str = r#"
-- A consent notification for a peer, queued by an instance without the XMPP
-- session (a standby), sent and removed by the leader.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Bare JID of the peer to notify (normalised).
    peer         TEXT    NOT NULL CHECK (length(peer) > 0),
    -- The PRMs granted, comma-separated, in the consent's order.
    usage_points TEXT    NOT NULL CHECK (length(usage_points) >= 14),
    -- The peer's own state from its authorize URI, echoed back.
    peer_state   TEXT,
    queued_at    INTEGER NOT NULL
);
"#;

/// A notification waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotification {
    pub id: i64,
    /// The peer to notify (a normalised bare JID).
    pub peer: String,
    /// The PRMs granted (14 digits each).
    pub usage_points: Vec<String>,
    /// The peer's own state, when it gave one.
    pub peer_state: Option<String>,
    /// When it was queued, UTC seconds.
    pub queued_at: i64,
}

/// The PRMs as stored: comma-separated. A PRM is 14 digits, never a comma.
pub(crate) fn join_usage_points(usage_points: &[String]) -> Result<String, StoreError> {
    if usage_points.is_empty() {
        return Err(StoreError::Invalid(
            "queue a consent notification: no usage point".into(),
        ));
    }
    if let Some(bad) = usage_points
        .iter()
        .find(|p| p.len() != 14 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(StoreError::Invalid(format!(
            "queue a consent notification: {bad:?} is not a PRM (14 digits)"
        )));
    }
    Ok(usage_points.join(","))
}

/// The stored PRMs, split.
pub(crate) fn split_usage_points(stored: &str) -> Vec<String> {
    stored.split(',').map(str::to_owned).collect()
}

impl Sqlite {
    /// Queues a notification for `peer`, committed before it returns; its id.
    pub fn queue_notification(
        &self,
        peer: &str,
        usage_points: &[String],
        peer_state: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let joined = join_usage_points(usage_points)?;
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO notifications (peer, usage_points, peer_state, queued_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![peer, joined, peer_state, now]))
        .map_err(StoreError::sqlite("queue a consent notification"))?;
        Ok(conn.last_insert_rowid())
    }

    /// The oldest `limit` queued notifications, oldest first.
    pub fn queued_notifications(
        &self,
        limit: usize,
    ) -> Result<Vec<QueuedNotification>, StoreError> {
        let op = "read the queued consent notifications";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, peer, usage_points, peer_state, queued_at FROM notifications \
                 ORDER BY id LIMIT ?1",
            )
            .map_err(StoreError::sqlite(op))?;
        stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(QueuedNotification {
                id: row.get(0)?,
                peer: row.get(1)?,
                usage_points: split_usage_points(&row.get::<_, String>(2)?),
                peer_state: row.get(3)?,
                queued_at: row.get(4)?,
            })
        })
        .map_err(StoreError::sqlite(op))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::sqlite(op))
    }

    /// Removes a notification once sent; false when it was not queued (any more).
    pub fn remove_notification(&self, id: i64) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM notifications WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id]))
            .map(|n| n > 0)
            .map_err(StoreError::sqlite("remove a sent consent notification"))
    }
}

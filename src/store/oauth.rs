//! The consent flow's state: the descriptions peers register with
//! `get_authorize_uri` (what a consumer is shown before going to Enedis), and the
//! OAuth `state`s that bind one trip to Enedis and back to a peer, a duration, the
//! peer's own state and the peer's redirect URI.
//!
//! A state is created when a consumer opens the consent page and consumed when
//! Enedis sends them back. Consuming is one `UPDATE … WHERE consumed_at IS NULL AND
//! expires_at > now RETURNING …`: two redirects racing with the same state cannot
//! both win, an expired state is never honoured, and a used one is remembered (for a
//! day) so that a replay gets a precise answer rather than "unknown".

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, StoreError};

/// How long consumed or expired states are kept, so a late replay is recognised as
/// such; older ones are purged.
pub const STATE_RETENTION_SECS: i64 = 24 * 3600;

/// Default cap on live (unexpired, unconsumed) states: the consent page is public,
/// and must not let anybody fill the disk.
pub const MAX_LIVE_STATES: i64 = 10_000;

/// What a peer asked consumers to be shown, owned by that peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentDescription {
    /// Unguessable, URL-safe: the `id` of the authorize URI.
    pub id: String,
    /// Bare JID of the peer that registered it.
    pub owner: String,
    /// The application's name, as the peer gave it (plain text).
    pub name: String,
    /// An https logo, if any.
    pub logo_url: Option<String>,
    /// HTML (or plain text) as submitted; sanitised when shown.
    pub description: String,
    pub created_at: i64,
}

/// A description to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDescription {
    pub owner: String,
    pub name: String,
    pub logo_url: Option<String>,
    pub description: String,
}

/// One trip to Enedis in progress.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthState {
    /// The value sent to Enedis as `state`. A credential for the trip: never logged
    /// whole (see [`OAuthState::log_id`]).
    pub state: String,
    pub description_id: String,
    /// Bare JID of the peer the consent will belong to.
    pub owner: String,
    /// The ISO 8601 duration asked of Enedis.
    pub duration: String,
    /// The peer's own `state`, returned to it in the notification.
    pub peer_state: Option<String>,
    /// Where to send the consumer back (already checked against the peer's list).
    pub redirect_uri: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("state", &log_id(&self.state))
            .field("description_id", &self.description_id)
            .field("owner", &self.owner)
            .field("duration", &self.duration)
            .field("peer_state", &self.peer_state)
            .field("redirect_uri", &self.redirect_uri)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl OAuthState {
    /// A short prefix that identifies the state in logs without revealing it.
    pub fn log_id(&self) -> String {
        log_id(&self.state)
    }
}

/// The first 6 characters of a state followed by `…`: enough to follow one trip in
/// the logs, far too little to replay it.
pub fn log_id(state: &str) -> String {
    let prefix: String = state.chars().take(6).collect();
    format!("{prefix}…")
}

/// What consuming a state found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// Live until now; it is now spent.
    Fresh(OAuthState),
    /// It existed but its time ran out (at `expires_at`).
    Expired { expires_at: i64 },
    /// It was already used (at `consumed_at`).
    AlreadyUsed { consumed_at: i64 },
    /// Never issued here, or purged long ago.
    Unknown,
}

const STATE_COLUMNS: &str = "state, description_id, owner, duration, peer_state, redirect_uri, \
     created_at, expires_at";

fn read_state(row: &rusqlite::Row<'_>) -> rusqlite::Result<OAuthState> {
    Ok(OAuthState {
        state: row.get(0)?,
        description_id: row.get(1)?,
        owner: row.get(2)?,
        duration: row.get(3)?,
        peer_state: row.get(4)?,
        redirect_uri: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    })
}

fn read_description(row: &rusqlite::Row<'_>) -> rusqlite::Result<ConsentDescription> {
    Ok(ConsentDescription {
        id: row.get(0)?,
        owner: row.get(1)?,
        name: row.get(2)?,
        logo_url: row.get(3)?,
        description: row.get(4)?,
        created_at: row.get(5)?,
    })
}

const DESCRIPTION_COLUMNS: &str = "id, owner, name, logo_url, description, created_at";

impl Sqlite {
    /// Record a description for `new.owner`; an identical one of the same owner is
    /// returned instead of a copy, so a peer asking again gets the same URI.
    /// `new_id` makes the id of a new row (unguessable, URL-safe).
    pub fn save_description(
        &self,
        new: &NewDescription,
        new_id: impl FnOnce() -> String,
        now: i64,
    ) -> Result<ConsentDescription, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("begin saving a description"))?;
        let existing = tx
            .query_row(
                &format!(
                    "SELECT {DESCRIPTION_COLUMNS} FROM consent_descriptions \
                     WHERE owner = ?1 AND name = ?2 AND logo_url IS ?3 AND description = ?4"
                ),
                params![new.owner, new.name, new.logo_url, new.description],
                read_description,
            )
            .optional()
            .map_err(StoreError::sqlite("look up a description"))?;
        if let Some(existing) = existing {
            return Ok(existing);
        }
        let id = new_id();
        tx.execute(
            "INSERT INTO consent_descriptions (id, owner, name, logo_url, description, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, new.owner, new.name, new.logo_url, new.description, now],
        )
        .map_err(StoreError::sqlite("insert a description"))?;
        tx.commit()
            .map_err(StoreError::sqlite("commit a description"))?;
        Ok(ConsentDescription {
            id,
            owner: new.owner.clone(),
            name: new.name.clone(),
            logo_url: new.logo_url.clone(),
            description: new.description.clone(),
            created_at: now,
        })
    }

    /// The description with this id, if any.
    pub fn description(&self, id: &str) -> Result<Option<ConsentDescription>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {DESCRIPTION_COLUMNS} FROM consent_descriptions WHERE id = ?1"),
                params![id],
                read_description,
            )
            .optional()
            .map_err(StoreError::sqlite("read a description"))
    }

    /// Every description owned by `owner`, oldest first.
    pub fn descriptions_of(&self, owner: &str) -> Result<Vec<ConsentDescription>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {DESCRIPTION_COLUMNS} FROM consent_descriptions \
                 WHERE owner = ?1 ORDER BY created_at, id"
            ))
            .map_err(StoreError::sqlite("list descriptions"))?;
        stmt.query_map(params![owner], read_description)
            .map_err(StoreError::sqlite("list descriptions"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("list descriptions"))
    }

    /// Record a new state, after purging states dead for more than a day. Returns
    /// `false`, recording nothing, when `max_live` states are already live (see
    /// [`MAX_LIVE_STATES`]).
    pub fn create_oauth_state(
        &self,
        state: &OAuthState,
        max_live: i64,
    ) -> Result<bool, StoreError> {
        if state.expires_at <= state.created_at {
            return Err(StoreError::Invalid(
                "an OAuth state must expire after its creation".into(),
            ));
        }
        let now = state.created_at;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("begin creating an OAuth state"))?;
        tx.execute(
            "DELETE FROM oauth_states WHERE expires_at < ?1 AND \
             (consumed_at IS NULL OR consumed_at < ?1)",
            params![now - STATE_RETENTION_SECS],
        )
        .map_err(StoreError::sqlite("purge old OAuth states"))?;
        let live: i64 = tx
            .query_row(
                "SELECT count(*) FROM oauth_states WHERE consumed_at IS NULL AND expires_at > ?1",
                params![now],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("count live OAuth states"))?;
        if live >= max_live {
            return Ok(false);
        }
        tx.execute(
            &format!(
                "INSERT INTO oauth_states ({STATE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                state.state,
                state.description_id,
                state.owner,
                state.duration,
                state.peer_state,
                state.redirect_uri,
                state.created_at,
                state.expires_at
            ],
        )
        .map_err(StoreError::sqlite("insert an OAuth state"))?;
        tx.commit()
            .map_err(StoreError::sqlite("commit an OAuth state"))?;
        Ok(true)
    }

    /// Spend `state` at `now`: [`Consumed::Fresh`] exactly once for a live state,
    /// whoever races for it.
    pub fn consume_oauth_state(&self, state: &str, now: i64) -> Result<Consumed, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("begin consuming an OAuth state"))?;
        let fresh = tx
            .query_row(
                &format!(
                    "UPDATE oauth_states SET consumed_at = ?2 \
                     WHERE state = ?1 AND consumed_at IS NULL AND expires_at > ?2 \
                     RETURNING {STATE_COLUMNS}"
                ),
                params![state, now],
                read_state,
            )
            .optional()
            .map_err(StoreError::sqlite("consume an OAuth state"))?;
        let outcome = match fresh {
            Some(found) => Consumed::Fresh(found),
            None => {
                let row: Option<(i64, Option<i64>)> = tx
                    .query_row(
                        "SELECT expires_at, consumed_at FROM oauth_states WHERE state = ?1",
                        params![state],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
                    .map_err(StoreError::sqlite("look up an OAuth state"))?;
                match row {
                    None => Consumed::Unknown,
                    Some((_, Some(consumed_at))) => Consumed::AlreadyUsed { consumed_at },
                    Some((expires_at, None)) => Consumed::Expired { expires_at },
                }
            }
        };
        tx.commit()
            .map_err(StoreError::sqlite("commit consuming an OAuth state"))?;
        Ok(outcome)
    }

    /// States not yet consumed nor expired at `now` (for tests and metrics).
    pub fn live_oauth_states(&self, now: i64) -> Result<i64, StoreError> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM oauth_states WHERE consumed_at IS NULL AND expires_at > ?1",
                params![now],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("count live OAuth states"))
    }
}

// The store's behaviour is tested on both databases in tests/store/oauth.rs.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_never_debug_printed_whole() {
        let s = OAuthState {
            state: "abcdefghijklmnopqrstuvwxyz".into(),
            description_id: "d1".into(),
            owner: "app@example.org".into(),
            duration: "P1Y".into(),
            peer_state: None,
            redirect_uri: None,
            created_at: 0,
            expires_at: 1800,
        };
        let printed = format!("{s:?}");
        assert!(!printed.contains("abcdefghijklmnop"), "{printed}");
        assert!(printed.contains("abcdef…"), "{printed}");
    }
}

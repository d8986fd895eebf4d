//! PostgreSQL: see the SQLite side in `crate::store::oauth`.
//!
//! SQLite serialises writers (`BEGIN IMMEDIATE`); here several instances write
//! at once, so each rule that rests on that is kept by a lock of its own:
//! saving a description and creating a state lock their table against other
//! writers for the transaction (no duplicate description, no live state past the
//! cap), and consuming is one conditional `UPDATE … RETURNING`, whose row lock
//! makes a second consumer wait and then find the state spent.

use postgres::Row;

use super::Postgres;
use crate::store::StoreError;
use crate::store::oauth::{
    ConsentDescription, Consumed, NewDescription, OAuthState, STATE_RETENTION_SECS,
};

/// Migration 2, "consent flow: descriptions and OAuth states".
pub const MIGRATION: &str = r#"
-- What a peer registered with get_authorize_uri: shown to consumers on /authorize.
CREATE TABLE consent_descriptions (
    -- Unguessable, URL-safe; the `id` of the authorize URI. Ordered byte by byte,
    -- as SQLite does.
    id          TEXT COLLATE "C" PRIMARY KEY,
    -- Bare JID of the peer that registered it (normalised).
    owner       TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    -- https only, or NULL.
    logo_url    TEXT,
    -- HTML or plain text as submitted; sanitised when shown.
    description TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX consent_descriptions_owner ON consent_descriptions (owner);

-- One consumer's trip to Enedis and back. Single use (consumed_at), short-lived
-- (expires_at); kept a day after its end so that a replay is recognised.
CREATE TABLE oauth_states (
    state          TEXT   PRIMARY KEY,
    description_id TEXT   NOT NULL,
    owner          TEXT   NOT NULL,
    -- ISO 8601 duration asked of Enedis.
    duration       TEXT   NOT NULL,
    -- The peer's own state, echoed in its notification.
    peer_state     TEXT,
    -- Where the consumer goes back (checked against the peer's redirect_uris).
    redirect_uri   TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    consumed_at    BIGINT,
    CHECK (created_at < expires_at)
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);
"#;

const STATE_COLUMNS: &str = "state, description_id, owner, duration, peer_state, redirect_uri, \
     created_at, expires_at";

const DESCRIPTION_COLUMNS: &str = "id, owner, name, logo_url, description, created_at";

fn read_state(row: &Row) -> Result<OAuthState, postgres::Error> {
    Ok(OAuthState {
        state: row.try_get(0)?,
        description_id: row.try_get(1)?,
        owner: row.try_get(2)?,
        duration: row.try_get(3)?,
        peer_state: row.try_get(4)?,
        redirect_uri: row.try_get(5)?,
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
    })
}

fn read_description(row: &Row) -> Result<ConsentDescription, postgres::Error> {
    Ok(ConsentDescription {
        id: row.try_get(0)?,
        owner: row.try_get(1)?,
        name: row.try_get(2)?,
        logo_url: row.try_get(3)?,
        description: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}

impl Postgres {
    /// See `Sqlite::save_description`. Savers of descriptions take turns (a
    /// table lock that readers ignore): two instances saving the same
    /// description at once make one row, as SQLite's single writer does.
    pub(crate) fn save_description(
        &self,
        new: &NewDescription,
        new_id: impl FnOnce() -> String,
        now: i64,
    ) -> Result<ConsentDescription, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin saving a description"))?;
        tx.batch_execute("LOCK TABLE consent_descriptions IN SHARE ROW EXCLUSIVE MODE")
            .map_err(StoreError::postgres("lock the descriptions"))?;
        let existing = tx
            .query_opt(
                &format!(
                    "SELECT {DESCRIPTION_COLUMNS} FROM consent_descriptions \
                     WHERE owner = $1 AND name = $2 AND logo_url IS NOT DISTINCT FROM $3 \
                     AND description = $4"
                ),
                &[&new.owner, &new.name, &new.logo_url, &new.description],
            )
            .map_err(StoreError::postgres("look up a description"))?;
        if let Some(row) = existing {
            return read_description(&row).map_err(StoreError::postgres("look up a description"));
        }
        let id = new_id();
        tx.execute(
            "INSERT INTO consent_descriptions (id, owner, name, logo_url, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &new.owner,
                &new.name,
                &new.logo_url,
                &new.description,
                &now,
            ],
        )
        .map_err(StoreError::postgres("insert a description"))?;
        tx.commit()
            .map_err(StoreError::postgres("commit a description"))?;
        Ok(ConsentDescription {
            id,
            owner: new.owner.clone(),
            name: new.name.clone(),
            logo_url: new.logo_url.clone(),
            description: new.description.clone(),
            created_at: now,
        })
    }

    pub(crate) fn description(&self, id: &str) -> Result<Option<ConsentDescription>, StoreError> {
        let op = "read a description";
        self.conn()?
            .query_opt(
                &format!("SELECT {DESCRIPTION_COLUMNS} FROM consent_descriptions WHERE id = $1"),
                &[&id],
            )
            .map_err(StoreError::postgres(op))?
            .map(|row| read_description(&row))
            .transpose()
            .map_err(StoreError::postgres(op))
    }

    pub(crate) fn descriptions_of(
        &self,
        owner: &str,
    ) -> Result<Vec<ConsentDescription>, StoreError> {
        let op = "list descriptions";
        self.conn()?
            .query(
                &format!(
                    "SELECT {DESCRIPTION_COLUMNS} FROM consent_descriptions \
                     WHERE owner = $1 ORDER BY created_at, id"
                ),
                &[&owner],
            )
            .map_err(StoreError::postgres(op))?
            .iter()
            .map(read_description)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::postgres(op))
    }

    /// See `Sqlite::create_oauth_state`. Creators take turns (a table lock,
    /// which also waits for consumers in progress), so the count of live states
    /// and the insert see the same table: instances creating states at once
    /// never pass `max_live` together.
    pub(crate) fn create_oauth_state(
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
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin creating an OAuth state"))?;
        tx.batch_execute("LOCK TABLE oauth_states IN SHARE ROW EXCLUSIVE MODE")
            .map_err(StoreError::postgres("lock the OAuth states"))?;
        tx.execute(
            "DELETE FROM oauth_states WHERE expires_at < $1 AND \
             (consumed_at IS NULL OR consumed_at < $1)",
            &[&(now - STATE_RETENTION_SECS)],
        )
        .map_err(StoreError::postgres("purge old OAuth states"))?;
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM oauth_states WHERE consumed_at IS NULL AND expires_at > $1",
                &[&now],
            )
            .and_then(|row| row.try_get(0))
            .map_err(StoreError::postgres("count live OAuth states"))?;
        if live >= max_live {
            // Rolled back with the purge, as on SQLite.
            return Ok(false);
        }
        tx.execute(
            &format!(
                "INSERT INTO oauth_states ({STATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &state.state,
                &state.description_id,
                &state.owner,
                &state.duration,
                &state.peer_state,
                &state.redirect_uri,
                &state.created_at,
                &state.expires_at,
            ],
        )
        .map_err(StoreError::postgres("insert an OAuth state"))?;
        tx.commit()
            .map_err(StoreError::postgres("commit an OAuth state"))?;
        Ok(true)
    }

    /// See `Sqlite::consume_oauth_state`. The `UPDATE` takes the row's lock: a
    /// second consumer, on this instance or another, waits for the first to
    /// commit, then re-reads the row, finds it consumed, and updates nothing
    /// (PostgreSQL re-checks the `WHERE` on the newest version of a row it
    /// waited for). The look-up that follows, in the same transaction, then
    /// sees the first consumer's commit.
    pub(crate) fn consume_oauth_state(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(StoreError::postgres("begin consuming an OAuth state"))?;
        let fresh = tx
            .query_opt(
                &format!(
                    "UPDATE oauth_states SET consumed_at = $2 \
                     WHERE state = $1 AND consumed_at IS NULL AND expires_at > $2 \
                     RETURNING {STATE_COLUMNS}"
                ),
                &[&state, &now],
            )
            .and_then(|row| row.as_ref().map(read_state).transpose())
            .map_err(StoreError::postgres("consume an OAuth state"))?;
        let outcome = match fresh {
            Some(found) => Consumed::Fresh(found),
            None => {
                let row = tx
                    .query_opt(
                        "SELECT expires_at, consumed_at FROM oauth_states WHERE state = $1",
                        &[&state],
                    )
                    .and_then(|row| {
                        row.map(|row| {
                            Ok::<_, postgres::Error>((
                                row.try_get::<_, i64>(0)?,
                                row.try_get::<_, Option<i64>>(1)?,
                            ))
                        })
                        .transpose()
                    })
                    .map_err(StoreError::postgres("look up an OAuth state"))?;
                match row {
                    None => Consumed::Unknown,
                    Some((_, Some(consumed_at))) => Consumed::AlreadyUsed { consumed_at },
                    Some((expires_at, None)) => Consumed::Expired { expires_at },
                }
            }
        };
        tx.commit()
            .map_err(StoreError::postgres("commit consuming an OAuth state"))?;
        Ok(outcome)
    }

    pub(crate) fn live_oauth_states(&self, now: i64) -> Result<i64, StoreError> {
        self.conn()?
            .query_one(
                "SELECT count(*) FROM oauth_states WHERE consumed_at IS NULL AND expires_at > $1",
                &[&now],
            )
            .and_then(|row| row.try_get(0))
            .map_err(StoreError::postgres("count live OAuth states"))
    }
}

//! Subscriptions: peers that asked (`subscribe`) to receive each day's new data of
//! an identifier, and how far each has been served.
//!
//! A subscription rests on a basis, like every access: a consent of the subscriber
//! covering the PRM, or a grant of the configuration. The schema keeps it so:
//! - it can only be created while its basis is valid (a `BEFORE INSERT` trigger);
//! - when its consent ends (revoked, expired, deleted) it moves to another usable
//!   consent of the same peer covering the PRM if there is one (a renewed consent),
//!   and otherwise ends with it;
//! - when its grant is removed from the configuration it moves to a consent of the
//!   peer if there is one, and otherwise ends.
//!
//! `delivered_through` is the last Paris day whose data the subscriber was sent;
//! the scheduler of daily pushes ([`crate::push`]) advances it after each delivery, so a
//! restart neither loses nor repeats a day.

use jiff::civil::Date;
use rusqlite::{ErrorCode, OptionalExtension, params};

use super::audit::AccessBasis;
use super::{Sqlite, StoreError};
use crate::quoalise::{Identifier, IdentifierError, Prm, PrmError, Series};

/// Schema of the subscriptions (appended to the migrations, after the grants).
pub const MIGRATION: &str = r#"
CREATE TABLE subscriptions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Bare JID of the subscriber (normalised).
    peer              TEXT    NOT NULL CHECK (length(peer) > 0),
    prm               TEXT    NOT NULL CHECK (length(prm) = 14),
    series            TEXT    NOT NULL,
    consent_id        INTEGER REFERENCES consents (id) ON DELETE CASCADE,
    via_grant         INTEGER NOT NULL DEFAULT 0 CHECK (via_grant IN (0, 1)),
    created_at        INTEGER NOT NULL,
    -- Last Paris day (YYYY-MM-DD) whose data was sent.
    delivered_through TEXT    NOT NULL CHECK (length(delivered_through) = 10),
    CHECK ((consent_id IS NOT NULL AND via_grant = 0) OR (consent_id IS NULL AND via_grant = 1)),
    UNIQUE (peer, prm, series)
);
CREATE INDEX subscriptions_consent ON subscriptions (consent_id);

CREATE TRIGGER subscriptions_need_a_basis BEFORE INSERT ON subscriptions
WHEN NOT (
    (NEW.consent_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.id = NEW.consent_id AND c.owner = NEW.peer AND p.prm = NEW.prm
          AND c.state = 'active' AND c.valid_from <= NEW.created_at
          AND NEW.created_at < c.valid_until))
    OR (NEW.via_grant = 1 AND EXISTS (
        SELECT 1 FROM grants g WHERE g.peer = NEW.peer AND g.prm = NEW.prm))
)
BEGIN
    SELECT RAISE(ABORT, 'subscription: needs a consent of that peer valid now for that PRM, or a grant');
END;

-- A consent that ends hands its subscriptions to the peer's newest other usable
-- consent covering the PRM, or ends them.
CREATE TRIGGER subscriptions_follow_consent_end AFTER UPDATE OF state ON consents
WHEN OLD.state = 'active' AND NEW.state <> 'active'
BEGIN
    UPDATE subscriptions SET consent_id = (
        SELECT c.id FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.owner = subscriptions.peer AND p.prm = subscriptions.prm
          AND c.state = 'active' AND c.valid_from <= unixepoch() AND unixepoch() < c.valid_until
        ORDER BY c.valid_until DESC, c.id DESC LIMIT 1)
    WHERE consent_id = NEW.id AND EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.owner = subscriptions.peer AND p.prm = subscriptions.prm
          AND c.state = 'active' AND c.valid_from <= unixepoch() AND unixepoch() < c.valid_until);
    DELETE FROM subscriptions WHERE consent_id = NEW.id;
END;

-- Same when a consent is deleted (the foreign key then removes what is left).
CREATE TRIGGER subscriptions_follow_consent_delete BEFORE DELETE ON consents
BEGIN
    UPDATE subscriptions SET consent_id = (
        SELECT c.id FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.owner = subscriptions.peer AND p.prm = subscriptions.prm AND c.id <> OLD.id
          AND c.state = 'active' AND c.valid_from <= unixepoch() AND unixepoch() < c.valid_until
        ORDER BY c.valid_until DESC, c.id DESC LIMIT 1)
    WHERE consent_id = OLD.id AND EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.owner = subscriptions.peer AND p.prm = subscriptions.prm AND c.id <> OLD.id
          AND c.state = 'active' AND c.valid_from <= unixepoch() AND unixepoch() < c.valid_until);
END;

-- A grant removed from the configuration: move to a consent of the peer, or end.
CREATE TRIGGER subscriptions_follow_grant_removal AFTER DELETE ON grants
BEGIN
    UPDATE subscriptions SET via_grant = 0, consent_id = (
        SELECT c.id FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.owner = subscriptions.peer AND p.prm = subscriptions.prm
          AND c.state = 'active' AND c.valid_from <= unixepoch() AND unixepoch() < c.valid_until
        ORDER BY c.valid_until DESC, c.id DESC LIMIT 1)
    WHERE via_grant = 1 AND peer = OLD.peer AND prm = OLD.prm AND EXISTS (
        SELECT 1 FROM consents c JOIN consent_prms p ON p.consent_id = c.id
        WHERE c.owner = subscriptions.peer AND p.prm = subscriptions.prm
          AND c.state = 'active' AND c.valid_from <= unixepoch() AND unixepoch() < c.valid_until);
    DELETE FROM subscriptions WHERE via_grant = 1 AND peer = OLD.peer AND prm = OLD.prm;
END;
"#;

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    /// Bare JID of the subscriber.
    pub peer: String,
    pub identifier: Identifier,
    pub basis: AccessBasis,
    pub created_at: i64,
    /// Last Paris day whose data was sent.
    pub delivered_through: Date,
}

/// Why a subscription could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The schema refused it: its basis is not valid now.
    #[error("{0}")]
    NoBasis(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const COLUMNS: &str = "id, peer, prm, series, consent_id, via_grant, created_at, delivered_through";

/// A row as stored, before its text columns are validated.
struct Raw {
    id: i64,
    peer: String,
    prm: String,
    series: String,
    consent_id: Option<i64>,
    created_at: i64,
    delivered_through: String,
}

fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: row.get(0)?,
        peer: row.get(1)?,
        prm: row.get(2)?,
        series: row.get(3)?,
        consent_id: row.get(4)?,
        created_at: row.get(6)?,
        delivered_through: row.get(7)?,
    })
}

fn finish(raw: Raw) -> Result<Subscription, StoreError> {
    let bad = |what: &str, e: String| {
        StoreError::Invalid(format!("subscription {} has a bad {what}: {e}", raw.id))
    };
    let prm: Prm = raw
        .prm
        .parse()
        .map_err(|e: PrmError| bad("PRM", e.to_string()))?;
    let series: Series = raw
        .series
        .parse()
        .map_err(|e: IdentifierError| bad("series", e.to_string()))?;
    let delivered_through = crate::time::parse_date(&raw.delivered_through)
        .map_err(|e| bad("delivered_through", e.to_string()))?;
    Ok(Subscription {
        id: raw.id,
        peer: raw.peer,
        identifier: Identifier::new(prm, series),
        basis: match raw.consent_id {
            Some(id) => AccessBasis::Consent(id),
            None => AccessBasis::Grant,
        },
        created_at: raw.created_at,
        delivered_through,
    })
}

impl Sqlite {
    /// Subscribe `peer` to `identifier` on `basis` at `now`; the first delivery will
    /// carry the day after `delivered_through`. Subscribing again keeps the existing
    /// subscription (and its progress) and refreshes its basis. Returns it, and
    /// whether it is new.
    pub fn subscribe(
        &self,
        peer: &str,
        identifier: &Identifier,
        basis: AccessBasis,
        delivered_through: Date,
        now: i64,
    ) -> Result<(Subscription, bool), SubscribeError> {
        let (consent_id, via_grant) = match basis {
            AccessBasis::Consent(id) => (Some(id), false),
            AccessBasis::Grant => (None, true),
        };
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin subscribing"))?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM subscriptions WHERE peer = ?1 AND prm = ?2 AND series = ?3",
                params![peer, identifier.prm.as_str(), identifier.series.name()],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::sqlite("find a subscription"))?;
        let refused = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, message)
                if f.code == ErrorCode::ConstraintViolation =>
            {
                SubscribeError::NoBasis(format!(
                    "cannot subscribe {peer} to {identifier} on {basis}: {}",
                    message.unwrap_or_else(|| "constraint failed".into())
                ))
            }
            e => StoreError::Sqlite {
                op: "record a subscription",
                source: e,
            }
            .into(),
        };
        // A new row either way, so the basis is checked by the trigger again; the
        // progress of an existing subscription is kept.
        let (through, is_new) = match existing {
            Some(id) => {
                let day: String = tx
                    .query_row(
                        "SELECT delivered_through FROM subscriptions WHERE id = ?1",
                        params![id],
                        |row| row.get(0),
                    )
                    .map_err(StoreError::sqlite("read a subscription"))?;
                tx.execute("DELETE FROM subscriptions WHERE id = ?1", params![id])
                    .map_err(StoreError::sqlite("replace a subscription"))?;
                (day, false)
            }
            None => (delivered_through.to_string(), true),
        };
        tx.execute(
            "INSERT INTO subscriptions (id, peer, prm, series, consent_id, via_grant, created_at, \
             delivered_through) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                existing,
                peer,
                identifier.prm.as_str(),
                identifier.series.name(),
                consent_id,
                via_grant,
                now,
                through
            ],
        )
        .map_err(refused)?;
        let id = tx.last_insert_rowid();
        let sub = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM subscriptions WHERE id = ?1"),
                params![id],
                read,
            )
            .map_err(StoreError::sqlite("read a subscription"))?;
        let sub = finish(sub)?;
        tx.commit()
            .map_err(StoreError::sqlite("commit a subscription"))?;
        Ok((sub, is_new))
    }

    /// End `peer`'s subscription to `identifier`; `false` if there was none.
    pub fn unsubscribe(&self, peer: &str, identifier: &Identifier) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM subscriptions WHERE peer = ?1 AND prm = ?2 AND series = ?3",
                params![peer, identifier.prm.as_str(), identifier.series.name()],
            )
            .map_err(StoreError::sqlite("remove a subscription"))?;
        Ok(n > 0)
    }

    /// End a subscription by id; `false` if there was none.
    pub fn end_subscription(&self, id: i64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM subscriptions WHERE id = ?1", params![id])
            .map_err(StoreError::sqlite("end a subscription"))?;
        Ok(n > 0)
    }

    /// Every subscription, oldest first.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.query_subscriptions(
            &format!("SELECT {COLUMNS} FROM subscriptions ORDER BY id"),
            [],
        )
    }

    /// The subscriptions of `peer`, oldest first.
    pub fn subscriptions_of(&self, peer: &str) -> Result<Vec<Subscription>, StoreError> {
        self.query_subscriptions(
            &format!("SELECT {COLUMNS} FROM subscriptions WHERE peer = ?1 ORDER BY id"),
            params![peer],
        )
    }

    fn query_subscriptions(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Subscription>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(sql)
            .map_err(StoreError::sqlite("read subscriptions"))?;
        let rows = stmt
            .query_map(params, read)
            .map_err(StoreError::sqlite("read subscriptions"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("read subscriptions"))?;
        rows.into_iter().map(finish).collect()
    }

    /// Record that subscription `id` was sent the data up to `day` (inclusive).
    /// Never moves backwards; `false` if the subscription is gone (or already
    /// further).
    pub fn mark_delivered(&self, id: i64, day: Date) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE subscriptions SET delivered_through = ?2 \
                 WHERE id = ?1 AND delivered_through < ?2",
                params![id, day.to_string()],
            )
            .map_err(StoreError::sqlite("record a delivery"))?;
        Ok(n > 0)
    }
}

//! Consents and the per-consent tokens of the v3/v4 generations.
//!
//! A consent is what a consumer gave through Enedis: which PRMs, for which peer (the
//! owner, a bare JID), through which API generation, valid over which period. For
//! 2026 it carries its `autorisation_id`; for v3/v4 its own OAuth tokens, of which the
//! refresh token IS the consent: it is written (and fsynced) in the same transaction
//! as whatever produced it, before anybody uses the access token that came with it.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Store, StoreError, now_seconds};
use crate::config::{ApiGeneration, Secret};
use crate::quoalise::Prm;

/// Where a consent stands. Only `Active` consents inside their validity are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentState {
    Active,
    /// Revoked by the consumer (Enedis answered ADAM-DC-0008 or the like), or removed
    /// from use by an operator.
    Revoked,
    /// Past its validity, or its refresh token was refused.
    Expired,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Active => "active",
            ConsentState::Revoked => "revoked",
            ConsentState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(ConsentState::Active),
            "revoked" => Ok(ConsentState::Revoked),
            "expired" => Ok(ConsentState::Expired),
            other => Err(StoreError::Invalid(format!(
                "unknown consent state {other:?} in the database"
            ))),
        }
    }
}

impl std::fmt::Display for ConsentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse_generation(s: &str) -> Result<ApiGeneration, StoreError> {
    ApiGeneration::parse(s)
        .ok_or_else(|| StoreError::Invalid(format!("unknown API generation {s:?} in the database")))
}

/// A stored consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: i64,
    pub generation: ApiGeneration,
    /// Bare JID of the peer the consent was given to.
    pub owner: String,
    /// The PRMs it covers, sorted.
    pub prms: Vec<Prm>,
    /// Data Connect 2026: the `autorisation_id` Enedis returned.
    pub autorisation_id: Option<i64>,
    /// Validity `[valid_from, valid_until[`, UTC seconds.
    pub valid_from: i64,
    pub valid_until: i64,
    pub state: ConsentState,
    pub created_at: i64,
    pub updated_at: i64,
    /// Whether a refresh token is stored (v3/v4).
    pub has_refresh_token: bool,
}

impl Consent {
    /// Active and inside its validity at `now`.
    pub fn is_usable_at(&self, now: i64) -> bool {
        self.state == ConsentState::Active && self.valid_from <= now && now < self.valid_until
    }

    pub fn covers(&self, prm: &Prm) -> bool {
        self.prms.contains(prm)
    }
}

/// A consent to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    pub generation: ApiGeneration,
    pub owner: String,
    pub prms: Vec<Prm>,
    pub autorisation_id: Option<i64>,
    pub valid_from: i64,
    pub valid_until: i64,
}

/// OAuth tokens of one v3/v4 consent, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub refresh_token: Secret,
    pub access_token: Option<Secret>,
    /// UTC seconds after which the access token is no longer accepted.
    pub access_expires_at: Option<i64>,
}

/// The tokens as stored, with when they were last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTokens {
    pub tokens: TokenSet,
    pub updated_at: i64,
}

const CONSENT_COLUMNS: &str = "c.id, c.generation, c.owner, c.autorisation_id, c.valid_from, \
     c.valid_until, c.state, c.created_at, c.updated_at, \
     EXISTS (SELECT 1 FROM consent_tokens t WHERE t.consent_id = c.id)";

/// A consent row before its PRMs are attached.
struct Row {
    consent: Consent,
    generation: String,
    state: String,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        consent: Consent {
            id: row.get(0)?,
            generation: ApiGeneration::default(),
            owner: row.get(2)?,
            prms: Vec::new(),
            autorisation_id: row.get(3)?,
            valid_from: row.get(4)?,
            valid_until: row.get(5)?,
            state: ConsentState::Active,
            created_at: row.get(7)?,
            updated_at: row.get(8)?,
            has_refresh_token: row.get(9)?,
        },
        generation: row.get(1)?,
        state: row.get(6)?,
    })
}

fn validate(new: &NewConsent) -> Result<(), StoreError> {
    if new.owner.is_empty() || new.owner.contains('/') || new.owner.contains(char::is_whitespace) {
        return Err(StoreError::Invalid(format!(
            "the owner must be a bare JID (no resource, no spaces), got {:?}",
            new.owner.chars().take(80).collect::<String>()
        )));
    }
    if new.prms.is_empty() {
        return Err(StoreError::Invalid(
            "a consent covers at least one PRM".into(),
        ));
    }
    if new.valid_from >= new.valid_until {
        return Err(StoreError::Invalid(format!(
            "the validity is empty: it starts at {} and ends at {}",
            fmt_instant(new.valid_from),
            fmt_instant(new.valid_until)
        )));
    }
    if new.autorisation_id.is_some() && new.generation != ApiGeneration::Api2026 {
        return Err(StoreError::Invalid(format!(
            "an autorisation_id belongs to a Data Connect 2026 consent, not {}",
            new.generation.as_str()
        )));
    }
    Ok(())
}

/// An instant for messages: RFC 3339 UTC, or the raw seconds if out of range.
pub fn fmt_instant(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

impl Store {
    /// Record a consent, with its tokens for v3/v4, in one transaction; returns it.
    pub fn add_consent(
        &self,
        new: &NewConsent,
        tokens: Option<&TokenSet>,
    ) -> Result<Consent, StoreError> {
        validate(new)?;
        if tokens.is_some() && !new.generation.per_consent_tokens() {
            return Err(StoreError::Invalid(format!(
                "API generation {} uses one application token: a consent holds no token",
                new.generation.as_str()
            )));
        }
        let now = now_seconds();
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin adding a consent"))?;
        tx.execute(
            "INSERT INTO consents (generation, owner, autorisation_id, valid_from, valid_until, \
             state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?6)",
            params![
                new.generation.as_str(),
                new.owner,
                new.autorisation_id,
                new.valid_from,
                new.valid_until,
                now
            ],
        )
        .map_err(StoreError::sqlite("insert a consent"))?;
        let id = tx.last_insert_rowid();
        for prm in &new.prms {
            tx.execute(
                "INSERT OR IGNORE INTO consent_prms (consent_id, prm) VALUES (?1, ?2)",
                params![id, prm.as_str()],
            )
            .map_err(StoreError::sqlite("insert a consent's PRM"))?;
        }
        if let Some(tokens) = tokens {
            write_tokens(&tx, id, tokens, now)?;
        }
        let consent = load(&tx, id)?.ok_or(StoreError::NoSuchConsent(id))?;
        tx.commit()
            .map_err(StoreError::sqlite("commit a new consent"))?;
        Ok(consent)
    }

    /// One consent by id.
    pub fn consent(&self, id: i64) -> Result<Option<Consent>, StoreError> {
        let conn = self.conn();
        load(&conn, id)
    }

    /// Every consent, oldest first.
    pub fn list_consents(&self) -> Result<Vec<Consent>, StoreError> {
        let conn = self.conn();
        query(
            &conn,
            &format!("SELECT {CONSENT_COLUMNS} FROM consents c ORDER BY c.id"),
            [],
        )
    }

    /// Every consent owned by `owner` (a bare JID), oldest first, whatever its state.
    pub fn consents_of_owner(&self, owner: &str) -> Result<Vec<Consent>, StoreError> {
        let conn = self.conn();
        query(
            &conn,
            &format!("SELECT {CONSENT_COLUMNS} FROM consents c WHERE c.owner = ?1 ORDER BY c.id"),
            params![owner],
        )
    }

    /// How many consents are in each state (states without any are left out).
    pub fn count_consents_by_state(&self) -> Result<Vec<(ConsentState, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT state, COUNT(*) FROM consents GROUP BY state")
            .map_err(StoreError::sqlite("count consents"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(StoreError::sqlite("count consents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("count consents"))?;
        rows.into_iter()
            .map(|(state, n)| Ok((ConsentState::parse(&state)?, n.max(0) as u64)))
            .collect()
    }

    /// Consents owned by `owner` that cover `prm` and are usable at `now`, newest first.
    pub fn consents_for_peer(
        &self,
        owner: &str,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        self.usable_consents_where("c.owner", owner, prm, now)
    }

    /// Consents of any owner covering `prm`, usable at `now`, of generation
    /// `generation`, newest first (v3/v4: the consents whose tokens can read the PRM).
    pub fn usable_consents_for_prm(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        self.usable_consents_where("c.generation", generation.as_str(), prm, now)
    }

    /// Consents whose `column` (of `consents c`, written here, never taken from
    /// input) is `value`, covering `prm` and usable at `now`, newest first.
    fn usable_consents_where(
        &self,
        column: &'static str,
        value: &str,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        let conn = self.conn();
        query(
            &conn,
            &format!(
                "SELECT {CONSENT_COLUMNS} FROM consents c \
                 JOIN consent_prms p ON p.consent_id = c.id \
                 WHERE {column} = ?1 AND p.prm = ?2 AND c.state = 'active' \
                 AND c.valid_from <= ?3 AND ?3 < c.valid_until ORDER BY c.id DESC"
            ),
            params![value, prm.as_str(), now],
        )
    }

    /// Delete a consent with its PRMs and tokens; `false` if there was none.
    pub fn remove_consent(&self, id: i64) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute("DELETE FROM consents WHERE id = ?1", params![id])
            .map_err(StoreError::sqlite("remove a consent"))?;
        Ok(n > 0)
    }

    /// Set a consent's state; `false` if there was no such consent.
    pub fn set_consent_state(&self, id: i64, state: ConsentState) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE consents SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), now_seconds()],
            )
            .map_err(StoreError::sqlite("change a consent's state"))?;
        Ok(n > 0)
    }

    /// Mark revoked every active consent of `generation` covering `prm` (Enedis said
    /// the application has no consent for it any more); returns their ids.
    pub fn revoke_prm(&self, generation: ApiGeneration, prm: &Prm) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin revoking a PRM"))?;
        let ids = {
            let mut stmt = tx
                .prepare(
                    "UPDATE consents SET state = 'revoked', updated_at = ?3 \
                     WHERE state = 'active' AND generation = ?1 AND id IN \
                     (SELECT consent_id FROM consent_prms WHERE prm = ?2) RETURNING id",
                )
                .map_err(StoreError::sqlite("revoke a PRM's consents"))?;
            stmt.query_map(
                params![generation.as_str(), prm.as_str(), now_seconds()],
                |r| r.get::<_, i64>(0),
            )
            .map_err(StoreError::sqlite("revoke a PRM's consents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("revoke a PRM's consents"))?
        };
        tx.commit()
            .map_err(StoreError::sqlite("commit revoking a PRM"))?;
        Ok(ids)
    }

    /// Mark expired every active consent whose validity ended by `now`; returns how many.
    pub fn expire_consents(&self, now: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE consents SET state = 'expired', updated_at = ?1 \
             WHERE state = 'active' AND valid_until <= ?1",
            params![now],
        )
        .map_err(StoreError::sqlite("expire consents"))
    }

    /// The tokens of a v3/v4 consent.
    pub fn tokens(&self, consent_id: i64) -> Result<Option<StoredTokens>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT refresh_token, access_token, access_expires_at, updated_at \
             FROM consent_tokens WHERE consent_id = ?1",
            params![consent_id],
            |row| {
                Ok(StoredTokens {
                    tokens: TokenSet {
                        refresh_token: Secret::new(row.get::<_, String>(0)?),
                        access_token: row.get::<_, Option<String>>(1)?.map(Secret::new),
                        access_expires_at: row.get(2)?,
                    },
                    updated_at: row.get(3)?,
                })
            },
        )
        .optional()
        .map_err(StoreError::sqlite("read a consent's tokens"))
    }

    /// Replace a consent's tokens, durably (the commit is fsynced before this
    /// returns). Fails if the consent does not exist.
    pub fn save_tokens(&self, consent_id: i64, tokens: &TokenSet) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin saving tokens"))?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM consents WHERE id = ?1)",
                params![consent_id],
                |r| r.get(0),
            )
            .map_err(StoreError::sqlite("find a consent"))?;
        if !exists {
            return Err(StoreError::NoSuchConsent(consent_id));
        }
        write_tokens(&tx, consent_id, tokens, now_seconds())?;
        tx.commit().map_err(StoreError::sqlite("commit tokens"))
    }
}

fn write_tokens(
    tx: &Transaction<'_>,
    consent_id: i64,
    tokens: &TokenSet,
    now: i64,
) -> Result<(), StoreError> {
    if tokens.refresh_token.expose().is_empty() {
        return Err(StoreError::Invalid(
            "an empty refresh token cannot be stored".into(),
        ));
    }
    tx.execute(
        "INSERT INTO consent_tokens (consent_id, refresh_token, access_token, access_expires_at, \
         updated_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (consent_id) DO UPDATE SET \
         refresh_token = excluded.refresh_token, access_token = excluded.access_token, \
         access_expires_at = excluded.access_expires_at, updated_at = excluded.updated_at",
        params![
            consent_id,
            tokens.refresh_token.expose(),
            tokens.access_token.as_ref().map(Secret::expose),
            tokens.access_expires_at,
            now
        ],
    )
    .map_err(StoreError::sqlite("write a consent's tokens"))?;
    tx.execute(
        "UPDATE consents SET updated_at = ?2 WHERE id = ?1",
        params![consent_id, now],
    )
    .map_err(StoreError::sqlite("touch a consent"))?;
    Ok(())
}

fn load(conn: &rusqlite::Connection, id: i64) -> Result<Option<Consent>, StoreError> {
    Ok(query(
        conn,
        &format!("SELECT {CONSENT_COLUMNS} FROM consents c WHERE c.id = ?1"),
        params![id],
    )?
    .pop())
}

fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Consent>, StoreError> {
    let rows = {
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(StoreError::sqlite("query consents"))?;
        stmt.query_map(params, read_row)
            .map_err(StoreError::sqlite("query consents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("read consents"))?
    };
    let mut prms_stmt = conn
        .prepare_cached("SELECT prm FROM consent_prms WHERE consent_id = ?1 ORDER BY prm")
        .map_err(StoreError::sqlite("query a consent's PRMs"))?;
    rows.into_iter()
        .map(|row| {
            let mut consent = row.consent;
            consent.generation = parse_generation(&row.generation)?;
            consent.state = ConsentState::parse(&row.state)?;
            consent.prms = prms_stmt
                .query_map(params![consent.id], |r| r.get::<_, String>(0))
                .map_err(StoreError::sqlite("read a consent's PRMs"))?
                .map(|prm| {
                    let prm = prm.map_err(StoreError::sqlite("read a consent's PRMs"))?;
                    prm.parse::<Prm>().map_err(|e| {
                        StoreError::Invalid(format!(
                            "consent {}: stored PRM {prm:?} is invalid: {e}",
                            consent.id
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(consent)
        })
        .collect()
}

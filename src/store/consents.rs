//! Consents and the per-consent tokens of the v3/v4 generations.
//!
//! A consent is what a consumer gave through Enedis: which PRMs, for which peer (the
//! owner, a bare JID), through which API generation, valid over which period. For
//! 2026 it carries its `autorisation_id`; for v3/v4 its own OAuth tokens, of which the
//! refresh token IS the consent: it is written (and fsynced) in the same transaction
//! as whatever produced it, before anybody uses the access token that came with it.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Transaction, params};

use super::sql_row::SqlRow;
use super::{Sqlite, StoreError, now_seconds};
use crate::config::{ApiGeneration, Secret};
use crate::quoalise::Prm;

/// Declared consents (Enedis SGE): the generation `sge` and the declarations'
/// side table (appended to the migrations).
///
/// SQLite cannot change a `CHECK`, so `consents` is rebuilt by SQLite's own
/// procedure (<https://sqlite.org/lang_altertable.html#otheralter>): a new table,
/// every row copied with its id, the old one dropped, the new one renamed, its
/// index and the triggers ON it made again (the texts of the migrations that made
/// them). The runner turns foreign keys off around it, so that dropping the old
/// table deletes nothing through `ON DELETE CASCADE` (PRMs, tokens,
/// subscriptions), and checks them before the commit. `legacy_alter_table` lets
/// the rename go through while the triggers of other tables (the audit trail's
/// guarantee, the subscriptions' and the cache's) name a `consents` that is gone
/// for a moment; they name the new one afterwards, unchanged. The counter of
/// `AUTOINCREMENT` is carried over: an id of a deleted consent, which audit rows
/// may still name, is never given again.
pub const MIGRATION_SGE: &str = r#"
PRAGMA legacy_alter_table = ON;

CREATE TABLE consents_rebuilt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Where the consent was given: a Data Connect generation ('2026', 'v5', 'v4',
    -- 'v3'), or 'sge': declared by the operator to Enedis SGE, holding the
    -- client's signed mandate (the holder and the mandate in sge_declarations).
    generation      TEXT    NOT NULL CHECK (generation IN ('2026', 'v5', 'v4', 'v3', 'sge')),
    -- Bare JID of the peer that asked for the consent (normalised).
    owner           TEXT    NOT NULL,
    -- Data Connect 2026 only: the consent's autorisation_id.
    autorisation_id INTEGER CHECK (autorisation_id IS NULL OR generation <> 'sge'),
    -- Validity [valid_from, valid_until[ in UTC seconds.
    valid_from      INTEGER NOT NULL,
    valid_until     INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('active', 'revoked', 'expired')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (valid_from < valid_until)
);
INSERT INTO consents_rebuilt (id, generation, owner, autorisation_id, valid_from,
    valid_until, state, created_at, updated_at)
SELECT id, generation, owner, autorisation_id, valid_from, valid_until, state,
    created_at, updated_at FROM consents;
DELETE FROM sqlite_sequence WHERE name = 'consents_rebuilt';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'consents_rebuilt', seq FROM sqlite_sequence WHERE name = 'consents';
DROP TABLE consents;
ALTER TABLE consents_rebuilt RENAME TO consents;
PRAGMA legacy_alter_table = OFF;
CREATE INDEX consents_owner ON consents (owner);

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

-- What the operator declared to Enedis SGE for an 'sge' consent: the holder of
-- the usage points (declarationAccordClient: a person, personnePhysique, or a
-- company, personneMorale) and the reference of the signed mandate.
CREATE TABLE sge_declarations (
    consent_id INTEGER PRIMARY KEY REFERENCES consents (id) ON DELETE CASCADE,
    -- A person: civilite (optional), nom, prenom (optional).
    civility   TEXT CHECK (civility IS NULL OR civility IN ('M', 'Mme')),
    last_name  TEXT CHECK (last_name IS NULL OR length(last_name) BETWEEN 1 AND 255),
    first_name TEXT CHECK (first_name IS NULL OR length(first_name) BETWEEN 1 AND 255),
    -- A company: denominationSociale.
    company    TEXT CHECK (company IS NULL OR length(company) BETWEEN 1 AND 255),
    -- Where the operator finds the signed mandate (free text, required).
    mandate    TEXT NOT NULL CHECK (length(trim(mandate)) > 0),
    -- A person or a company, not both; a company has no civility nor first name.
    CHECK ((last_name IS NULL) <> (company IS NULL)),
    CHECK (company IS NULL OR (civility IS NULL AND first_name IS NULL))
);

CREATE TRIGGER sge_declarations_of_sge_consents BEFORE INSERT ON sge_declarations
WHEN NOT EXISTS (SELECT 1 FROM consents WHERE id = NEW.consent_id AND generation = 'sge')
BEGIN
    SELECT RAISE(ABORT, 'sge_declarations: only a consent of generation sge is declared');
END;
"#;

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

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
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
    /// An Enedis SGE consent: what the operator declared (the holder, the mandate).
    /// `None` for a Data Connect consent. When it is `Some`, `generation` means
    /// nothing (it holds the default): ask [`Consent::upstream`].
    pub sge: Option<SgeDeclaration>,
}

impl Consent {
    /// Where the consent was given: Data Connect (through its generation) or SGE.
    pub fn upstream(&self) -> ConsentUpstream {
        match self.sge {
            Some(_) => ConsentUpstream::Sge,
            None => ConsentUpstream::DataConnect(self.generation),
        }
    }

    /// Whether it is an Enedis SGE consent.
    pub fn is_sge(&self) -> bool {
        self.sge.is_some()
    }

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

/// Where a consent was given, and so which Enedis platform reads its PRMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentUpstream {
    /// Enedis Data Connect: the consumer accepted on Enedis' site, through this API
    /// generation.
    DataConnect(ApiGeneration),
    /// Enedis SGE: the operator declared to Enedis that it holds the client's signed
    /// mandate.
    Sge,
}

impl ConsentUpstream {
    /// The stored `generation`: `2026`, `v5`, `v4`, `v3`, or `sge`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentUpstream::DataConnect(generation) => generation.as_str(),
            ConsentUpstream::Sge => SGE,
        }
    }
}

impl std::fmt::Display for ConsentUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsentUpstream::DataConnect(generation) => {
                write!(f, "Data Connect {}", generation.as_str())
            }
            ConsentUpstream::Sge => f.write_str("SGE"),
        }
    }
}

/// The stored `generation` of an SGE consent.
const SGE: &str = "sge";

/// Which Enedis platform serves a PRM ([`Store::upstream_for_prm`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrmUpstream {
    /// At least one active SGE consent, valid now, covers it: read it through SGE.
    /// The ids of those consents (of any owner), newest first.
    Sge { consents: Vec<i64> },
    /// No SGE consent covers it: Data Connect, if anything.
    DataConnect,
}

/// The civility of a person holding usage points (`civilite` of SGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Civility {
    /// `M`: Monsieur.
    M,
    /// `Mme`: Madame.
    Mme,
}

impl Civility {
    /// As SGE writes it: `M` or `Mme`.
    pub fn as_str(self) -> &'static str {
        match self {
            Civility::M => "M",
            Civility::Mme => "Mme",
        }
    }

    /// `M` or `Mme`, in any case.
    pub fn parse(s: &str) -> Option<Civility> {
        if s.eq_ignore_ascii_case("M") {
            Some(Civility::M)
        } else if s.eq_ignore_ascii_case("Mme") {
            Some(Civility::Mme)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Civility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds the usage points of an SGE consent, as declared to Enedis
/// (`declarationAccordClient`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SgeHolder {
    /// `personnePhysique`: `civilite` (optional), `nom`, `prenom` (optional).
    Person {
        civility: Option<Civility>,
        last_name: String,
        first_name: Option<String>,
    },
    /// `personneMorale`: `denominationSociale`.
    Company { name: String },
}

impl std::fmt::Display for SgeHolder {
    /// `Mme Jeanne Dupont`, `Dupont`, `company ACME SAS`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SgeHolder::Person {
                civility,
                last_name,
                first_name,
            } => {
                let parts: Vec<&str> = [
                    civility.map(Civility::as_str),
                    first_name.as_deref(),
                    Some(last_name.as_str()),
                ]
                .into_iter()
                .flatten()
                .collect();
                f.write_str(&parts.join(" "))
            }
            SgeHolder::Company { name } => write!(f, "company {name}"),
        }
    }
}

/// What the operator declared to Enedis SGE for a consent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SgeDeclaration {
    pub holder: SgeHolder,
    /// The reference under which the operator keeps the client's signed mandate.
    pub mandate: String,
}

/// An SGE consent to record: the operator holds the client's signed mandate and
/// declares it to Enedis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSgeConsent {
    /// The peer it serves (bare JID).
    pub owner: String,
    pub prms: Vec<Prm>,
    /// Validity `[valid_from, valid_until[`, UTC seconds; `valid_until` at most 3
    /// years from now (SGE's access-service declarations).
    pub valid_from: i64,
    pub valid_until: i64,
    pub declaration: SgeDeclaration,
}

/// Longest text of a holder's name (SGE's `Chaine255Type`) and of a mandate reference.
const MAX_TEXT: usize = 255;

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

/// The columns [`read_row`] reads, of [`CONSENTS`].
pub(crate) const CONSENT_COLUMNS: &str = "c.id, c.generation, c.owner, c.autorisation_id, \
     c.valid_from, c.valid_until, c.state, c.created_at, c.updated_at, \
     EXISTS (SELECT 1 FROM consent_tokens t WHERE t.consent_id = c.id), \
     d.civility, d.last_name, d.first_name, d.company, d.mandate";

/// SQL conditions on `consents c`: Data Connect consents only, SGE consents only.
pub(crate) const DATA_CONNECT_ONLY: &str = "c.generation <> 'sge'";
pub(crate) const SGE_ONLY: &str = "c.generation = 'sge'";

/// The consents with their SGE declarations, if any.
pub(crate) const CONSENTS: &str = "consents c LEFT JOIN sge_declarations d ON d.consent_id = c.id";

/// A consent row before its PRMs are attached ([`Row::finish`]).
pub(crate) struct Row {
    consent: Consent,
    generation: String,
    state: String,
    declaration: StoredDeclaration,
}

/// The columns of `sge_declarations`, as read (all `None` for Data Connect).
struct StoredDeclaration {
    civility: Option<String>,
    last_name: Option<String>,
    first_name: Option<String>,
    company: Option<String>,
    mandate: Option<String>,
}

impl StoredDeclaration {
    fn parse(self, id: i64, generation: &str) -> Result<Option<SgeDeclaration>, StoreError> {
        let invalid = |why: &str| StoreError::Invalid(format!("consent {id}: {why}"));
        let Some(mandate) = self.mandate else {
            if generation == SGE {
                return Err(invalid("an SGE consent without its declaration"));
            }
            return Ok(None);
        };
        let civility = match self.civility.as_deref() {
            None => None,
            Some(s) => Some(
                Civility::parse(s)
                    .ok_or_else(|| invalid(&format!("unknown civility {s:?} in the database")))?,
            ),
        };
        let holder = match (self.last_name, self.company) {
            (Some(last_name), None) => SgeHolder::Person {
                civility,
                last_name,
                first_name: self.first_name,
            },
            (None, Some(name)) => SgeHolder::Company { name },
            _ => return Err(invalid("an SGE holder must be a person or a company")),
        };
        Ok(Some(SgeDeclaration { holder, mandate }))
    }
}

/// A consent row of [`CONSENT_COLUMNS`], from either database.
pub(crate) fn read_row<R: SqlRow>(row: &R) -> Result<Row, R::Error> {
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
            sge: None,
        },
        generation: row.get(1)?,
        state: row.get(6)?,
        declaration: StoredDeclaration {
            civility: row.get(10)?,
            last_name: row.get(11)?,
            first_name: row.get(12)?,
            company: row.get(13)?,
            mandate: row.get(14)?,
        },
    })
}

impl Row {
    /// The consent, with its PRMs (as stored, in order), once every stored text
    /// (generation, state, declaration, PRMs) is checked.
    pub(crate) fn finish(self, prms: Vec<String>) -> Result<Consent, StoreError> {
        let mut consent = self.consent;
        consent.sge = self.declaration.parse(consent.id, &self.generation)?;
        if consent.sge.is_none() {
            consent.generation = parse_generation(&self.generation)?;
        }
        consent.state = ConsentState::parse(&self.state)?;
        consent.prms = prms
            .into_iter()
            .map(|prm| {
                prm.parse::<Prm>().map_err(|e| {
                    StoreError::Invalid(format!(
                        "consent {}: stored PRM {prm:?} is invalid: {e}",
                        consent.id
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(consent)
    }
}

/// What [`Store::add_consent`] refuses before writing anything.
pub(crate) fn check_new_consent(
    new: &NewConsent,
    tokens: Option<&TokenSet>,
) -> Result<(), StoreError> {
    validate(new)?;
    if tokens.is_some() && !new.generation.per_consent_tokens() {
        return Err(StoreError::Invalid(format!(
            "API generation {} uses one application token: a consent holds no token",
            new.generation.as_str()
        )));
    }
    Ok(())
}

/// What [`Store::add_sge_consent`] refuses before writing anything, recorded at
/// `now`.
pub(crate) fn check_new_sge_consent(new: &NewSgeConsent, now: i64) -> Result<(), StoreError> {
    validate_common(&new.owner, &new.prms, new.valid_from, new.valid_until)?;
    validate_declaration(&new.declaration)?;
    let limit = sge_limit(now)?;
    if new.valid_until > limit {
        return Err(StoreError::Invalid(format!(
            "an SGE access declaration ends at most 3 years ahead (by {}): this one ends at {}",
            fmt_instant(limit),
            fmt_instant(new.valid_until)
        )));
    }
    Ok(())
}

/// The columns of `sge_declarations` for a declaration, trimmed: civility,
/// last name, first name, company.
pub(crate) fn declaration_columns(
    declaration: &SgeDeclaration,
) -> (
    Option<&'static str>,
    Option<&str>,
    Option<&str>,
    Option<&str>,
) {
    match &declaration.holder {
        SgeHolder::Person {
            civility,
            last_name,
            first_name,
        } => (
            civility.map(Civility::as_str),
            Some(last_name.trim()),
            first_name.as_deref().map(str::trim),
            None,
        ),
        SgeHolder::Company { name } => (None, None, None, Some(name.trim())),
    }
}

/// A refresh token is stored only if there is one.
pub(crate) fn check_refresh_token(tokens: &TokenSet) -> Result<(), StoreError> {
    if tokens.refresh_token.expose().is_empty() {
        return Err(StoreError::Invalid(
            "an empty refresh token cannot be stored".into(),
        ));
    }
    Ok(())
}

fn validate(new: &NewConsent) -> Result<(), StoreError> {
    validate_common(&new.owner, &new.prms, new.valid_from, new.valid_until)?;
    if new.autorisation_id.is_some() && new.generation != ApiGeneration::Api2026 {
        return Err(StoreError::Invalid(format!(
            "an autorisation_id belongs to a Data Connect 2026 consent, not {}",
            new.generation.as_str()
        )));
    }
    Ok(())
}

/// What every consent needs: a bare JID, a PRM, a validity that is not empty.
fn validate_common(
    owner: &str,
    prms: &[Prm],
    valid_from: i64,
    valid_until: i64,
) -> Result<(), StoreError> {
    if owner.is_empty() || owner.contains('/') || owner.contains(char::is_whitespace) {
        return Err(StoreError::Invalid(format!(
            "the owner must be a bare JID (no resource, no spaces), got {:?}",
            owner.chars().take(80).collect::<String>()
        )));
    }
    if prms.is_empty() {
        return Err(StoreError::Invalid(
            "a consent covers at least one PRM".into(),
        ));
    }
    if valid_from >= valid_until {
        return Err(StoreError::Invalid(format!(
            "the validity is empty: it starts at {} and ends at {}",
            fmt_instant(valid_from),
            fmt_instant(valid_until)
        )));
    }
    Ok(())
}

/// A holder's names and the mandate reference: 1 to 255 characters once trimmed,
/// no control character.
fn validate_declaration(declaration: &SgeDeclaration) -> Result<(), StoreError> {
    let text = |what: &str, value: &str| -> Result<(), StoreError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(StoreError::Invalid(format!("the {what} is empty")));
        }
        let length = value.chars().count();
        if length > MAX_TEXT {
            return Err(StoreError::Invalid(format!(
                "the {what} is {length} characters long; SGE accepts at most {MAX_TEXT}"
            )));
        }
        if value.contains(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "the {what} holds a control character (a line break, a tab…)"
            )));
        }
        Ok(())
    };
    match &declaration.holder {
        SgeHolder::Person {
            last_name,
            first_name,
            ..
        } => {
            text("holder's last name", last_name)?;
            if let Some(first_name) = first_name {
                text("holder's first name", first_name)?;
            }
        }
        SgeHolder::Company { name } => text("holder company's name", name)?,
    }
    text("mandate reference", &declaration.mandate)
}

/// The latest end of an SGE consent recorded at `now`: 3 calendar years ahead in
/// Paris, the longest access-service declaration SGE accepts (C5: SGT5O9 beyond).
pub fn sge_limit(now: i64) -> Result<i64, StoreError> {
    let out_of_range = |e: jiff::Error| StoreError::Invalid(format!("instant out of range: {e}"));
    let zoned = jiff::Timestamp::from_second(now)
        .map_err(out_of_range)?
        .to_zoned_datetime(crate::time::PARIS.clone());
    zoned
        .checked_add(jiff::ToSpan::years(3))
        .map(|end| end.timestamp().as_second())
        .map_err(out_of_range)
}

/// An instant for messages: RFC 3339 UTC, or the raw seconds if out of range.
pub fn fmt_instant(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// PRMs as stored, parsed; one that is not (the schema checks their length only)
/// is an error naming it.
pub(crate) fn parse_stored_prms(prms: Vec<String>) -> Result<BTreeSet<Prm>, StoreError> {
    prms.into_iter()
        .map(|prm| {
            prm.parse::<Prm>()
                .map_err(|e| StoreError::Invalid(format!("stored PRM {prm:?} is invalid: {e}")))
        })
        .collect()
}

impl PrmUpstream {
    /// What reads a PRM, from the usable SGE consents covering it (newest first):
    /// none, Data Connect.
    pub(crate) fn of_sge_consents(consents: Vec<i64>) -> PrmUpstream {
        if consents.is_empty() {
            PrmUpstream::DataConnect
        } else {
            PrmUpstream::Sge { consents }
        }
    }
}

impl Sqlite {
    /// Record a consent, with its tokens for v3/v4, in one transaction; returns it.
    pub fn add_consent(
        &self,
        new: &NewConsent,
        tokens: Option<&TokenSet>,
    ) -> Result<Consent, StoreError> {
        check_new_consent(new, tokens)?;
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

    /// Record an SGE consent with its declaration, in one transaction committed
    /// (and synced) before this returns; returns it.
    pub fn add_sge_consent(&self, new: &NewSgeConsent) -> Result<Consent, StoreError> {
        let now = now_seconds();
        check_new_sge_consent(new, now)?;
        let (civility, last_name, first_name, company) = declaration_columns(&new.declaration);
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin adding an SGE consent"))?;
        tx.execute(
            "INSERT INTO consents (generation, owner, valid_from, valid_until, state, \
             created_at, updated_at) VALUES ('sge', ?1, ?2, ?3, 'active', ?4, ?4)",
            params![new.owner, new.valid_from, new.valid_until, now],
        )
        .map_err(StoreError::sqlite("insert an SGE consent"))?;
        let id = tx.last_insert_rowid();
        for prm in &new.prms {
            tx.execute(
                "INSERT OR IGNORE INTO consent_prms (consent_id, prm) VALUES (?1, ?2)",
                params![id, prm.as_str()],
            )
            .map_err(StoreError::sqlite("insert an SGE consent's PRM"))?;
        }
        tx.execute(
            "INSERT INTO sge_declarations (consent_id, civility, last_name, first_name, \
             company, mandate) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                civility,
                last_name,
                first_name,
                company,
                new.declaration.mandate.trim()
            ],
        )
        .map_err(StoreError::sqlite("insert an SGE declaration"))?;
        let consent = load(&tx, id)?.ok_or(StoreError::NoSuchConsent(id))?;
        tx.commit()
            .map_err(StoreError::sqlite("commit a new SGE consent"))?;
        Ok(consent)
    }

    /// Revoke an active consent, of either upstream: its state becomes `revoked`
    /// and the row stays (the audit trail names it; an SGE consent keeps its holder
    /// and mandate). Returns it as revoked. Fails with
    /// [`StoreError::NoSuchConsent`], or [`StoreError::Invalid`] when it is not
    /// active any more.
    pub fn revoke_consent(&self, id: i64) -> Result<Consent, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(StoreError::sqlite("begin revoking a consent"))?;
        let changed = tx
            .execute(
                "UPDATE consents SET state = 'revoked', updated_at = ?2 \
                 WHERE id = ?1 AND state = 'active'",
                params![id, now_seconds()],
            )
            .map_err(StoreError::sqlite("revoke a consent"))?;
        let consent = load(&tx, id)?.ok_or(StoreError::NoSuchConsent(id))?;
        if changed == 0 {
            return Err(StoreError::Invalid(format!(
                "consent {id} is already {}: nothing to revoke",
                consent.state
            )));
        }
        tx.commit()
            .map_err(StoreError::sqlite("commit revoking a consent"))?;
        Ok(consent)
    }

    /// One consent by id.
    pub fn consent(&self, id: i64) -> Result<Option<Consent>, StoreError> {
        let conn = self.conn();
        load(&conn, id)
    }

    /// Every consent, Data Connect and SGE, oldest first.
    pub fn list_consents(&self) -> Result<Vec<Consent>, StoreError> {
        let conn = self.conn();
        query(
            &conn,
            &format!("SELECT {CONSENT_COLUMNS} FROM {CONSENTS} ORDER BY c.id"),
            [],
        )
    }

    /// Every Data Connect consent owned by `owner` (a bare JID), oldest first,
    /// whatever its state. SGE consents are left out: [`Store::sge_consents_of_owner`].
    pub fn consents_of_owner(&self, owner: &str) -> Result<Vec<Consent>, StoreError> {
        self.consents_of_owner_where(owner, DATA_CONNECT_ONLY)
    }

    /// Every SGE consent owned by `owner` (a bare JID), oldest first, whatever its
    /// state.
    pub fn sge_consents_of_owner(&self, owner: &str) -> Result<Vec<Consent>, StoreError> {
        self.consents_of_owner_where(owner, SGE_ONLY)
    }

    fn consents_of_owner_where(
        &self,
        owner: &str,
        which: &'static str,
    ) -> Result<Vec<Consent>, StoreError> {
        let conn = self.conn();
        query(
            &conn,
            &format!(
                "SELECT {CONSENT_COLUMNS} FROM {CONSENTS} WHERE c.owner = ?1 \
                 AND {which} ORDER BY c.id"
            ),
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

    /// Data Connect consents owned by `owner` that cover `prm` and are usable at
    /// `now`, newest first. SGE consents are left out: [`Store::sge_consents_for_peer`].
    pub fn consents_for_peer(
        &self,
        owner: &str,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        self.usable_consents_where("c.owner", owner, DATA_CONNECT_ONLY, prm, now)
    }

    /// SGE consents owned by `owner` that cover `prm` and are usable at `now` (active,
    /// inside their validity), newest first: the basis of `owner`'s access to `prm`
    /// through SGE.
    pub fn sge_consents_for_peer(
        &self,
        owner: &str,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        self.usable_consents_where("c.owner", owner, SGE_ONLY, prm, now)
    }

    /// Consents of any owner covering `prm`, usable at `now`, of generation
    /// `generation`, newest first (v3/v4: the consents whose tokens can read the PRM).
    pub fn usable_consents_for_prm(
        &self,
        generation: ApiGeneration,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        self.usable_consents_where(
            "c.generation",
            generation.as_str(),
            DATA_CONNECT_ONLY,
            prm,
            now,
        )
    }

    /// Which Enedis platform serves `prm` at `now`: SGE when an active SGE consent
    /// of any owner, valid at `now`, covers it; Data Connect otherwise.
    pub fn upstream_for_prm(&self, prm: &Prm, now: i64) -> Result<PrmUpstream, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT c.id FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
                 WHERE p.prm = ?1 AND c.generation = 'sge' AND c.state = 'active' \
                 AND c.valid_from <= ?2 AND ?2 < c.valid_until ORDER BY c.id DESC",
            )
            .map_err(StoreError::sqlite("find a PRM's SGE consents"))?;
        let consents = stmt
            .query_map(params![prm.as_str(), now], |r| r.get::<_, i64>(0))
            .map_err(StoreError::sqlite("find a PRM's SGE consents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("find a PRM's SGE consents"))?;
        Ok(PrmUpstream::of_sge_consents(consents))
    }

    /// Every PRM an active SGE consent valid at `now` covers (of any owner): the PRMs
    /// read through SGE.
    pub fn sge_prms_at(&self, now: i64) -> Result<BTreeSet<Prm>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT p.prm FROM consents c JOIN consent_prms p ON p.consent_id = c.id \
                 WHERE c.generation = 'sge' AND c.state = 'active' \
                 AND c.valid_from <= ?1 AND ?1 < c.valid_until",
            )
            .map_err(StoreError::sqlite("list the PRMs of SGE consents"))?;
        let prms = stmt
            .query_map(params![now], |r| r.get::<_, String>(0))
            .map_err(StoreError::sqlite("list the PRMs of SGE consents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("list the PRMs of SGE consents"))?;
        parse_stored_prms(prms)
    }

    /// Consents whose `column` (of `consents c`, written here, never taken from
    /// input) is `value`, of the upstream `which` ([`DATA_CONNECT_ONLY`] or
    /// [`SGE_ONLY`]), covering `prm` and usable at `now`, newest first.
    fn usable_consents_where(
        &self,
        column: &'static str,
        value: &str,
        which: &'static str,
        prm: &Prm,
        now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        let conn = self.conn();
        query(
            &conn,
            &format!(
                "SELECT {CONSENT_COLUMNS} FROM {CONSENTS} \
                 JOIN consent_prms p ON p.consent_id = c.id \
                 WHERE {column} = ?1 AND p.prm = ?2 AND c.state = 'active' \
                 AND c.valid_from <= ?3 AND ?3 < c.valid_until AND {which} ORDER BY c.id DESC"
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
    check_refresh_token(tokens)?;
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
        &format!("SELECT {CONSENT_COLUMNS} FROM {CONSENTS} WHERE c.id = ?1"),
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
        stmt.query_map(params, |row| read_row(row))
            .map_err(StoreError::sqlite("query consents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("read consents"))?
    };
    let mut prms_stmt = conn
        .prepare_cached("SELECT prm FROM consent_prms WHERE consent_id = ?1 ORDER BY prm")
        .map_err(StoreError::sqlite("query a consent's PRMs"))?;
    rows.into_iter()
        .map(|row| {
            let prms = prms_stmt
                .query_map(params![row.consent.id], |r| r.get::<_, String>(0))
                .map_err(StoreError::sqlite("read a consent's PRMs"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::sqlite("read a consent's PRMs"))?;
            row.finish(prms)
        })
        .collect()
}

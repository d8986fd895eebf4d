//! Every operation of the store, listed once: each is implemented by both
//! databases ([`super::Sqlite`] in the table modules, [`super::postgres::Postgres`]
//! in `postgres/`), and [`Store`] sends it to the one it holds. A database that
//! lacks an operation does not compile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::civil::Date;

use super::access_services::{AccessService, NewAccessService, SgeDataType};
use super::audit::{Access, AccessBasis, AuditError, AuditFilter, AuditRecord, GrantChanges};
use super::consents::{
    Consent, ConsentState, NewConsent, NewSgeConsent, PrmUpstream, StoredTokens, TokenSet,
};
use super::ledger::{QuotaCall, QuotaLedger};
use super::oauth::{ConsentDescription, Consumed, NewDescription, OAuthState};
use super::outbox::QueuedNotification;
use super::readings::{CacheStats, DaysRef};
use super::subscriptions::{SubscribeError, Subscription};
use super::{Db, Store, StoreError};
use crate::config::ApiGeneration;
use crate::quoalise::{Identifier, Prm, Reading, Series};

/// `fn name(&self, arg: Type, …) -> Result;` for each operation: a method of
/// [`Store`] calling the database's own. Each records its outcome in the
/// store's write health ([`super::health`]).
macro_rules! dispatch {
    ($(
        $(#[$meta:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.db {
                        Db::Sqlite(db) => db.$name($($arg),*),
                        Db::Postgres(db) => db.$name($($arg),*),
                    }
                }
            )*
        }
    };
}

dispatch! {
    // Consents (Data Connect and declared to SGE) and their tokens.
    /// Records a consent (and, v3/v4, its tokens) in one synced transaction.
    fn add_consent(&self, new: &NewConsent, tokens: Option<&TokenSet>) -> Result<Consent, StoreError>;
    /// Records a consent declared to Enedis SGE, with its holder and mandate.
    fn add_sge_consent(&self, new: &NewSgeConsent) -> Result<Consent, StoreError>;
    /// Marks a consent revoked (kept for the audit trail).
    fn revoke_consent(&self, id: i64) -> Result<Consent, StoreError>;
    fn consent(&self, id: i64) -> Result<Option<Consent>, StoreError>;
    fn list_consents(&self) -> Result<Vec<Consent>, StoreError>;
    fn consents_of_owner(&self, owner: &str) -> Result<Vec<Consent>, StoreError>;
    fn sge_consents_of_owner(&self, owner: &str) -> Result<Vec<Consent>, StoreError>;
    fn count_consents_by_state(&self) -> Result<Vec<(ConsentState, u64)>, StoreError>;
    /// The peer's usable Data Connect consents covering `prm` at `now`, newest first.
    fn consents_for_peer(&self, owner: &str, prm: &Prm, now: i64) -> Result<Vec<Consent>, StoreError>;
    /// The peer's usable SGE consents covering `prm` at `now`, newest first.
    fn sge_consents_for_peer(&self, owner: &str, prm: &Prm, now: i64) -> Result<Vec<Consent>, StoreError>;
    fn usable_consents_for_prm(&self, generation: ApiGeneration, prm: &Prm, now: i64) -> Result<Vec<Consent>, StoreError>;
    /// Which platform reads `prm` at `now`.
    fn upstream_for_prm(&self, prm: &Prm, now: i64) -> Result<PrmUpstream, StoreError>;
    /// The PRMs a usable SGE consent covers at `now`.
    fn sge_prms_at(&self, now: i64) -> Result<BTreeSet<Prm>, StoreError>;
    fn remove_consent(&self, id: i64) -> Result<bool, StoreError>;
    fn set_consent_state(&self, id: i64, state: ConsentState) -> Result<bool, StoreError>;
    fn revoke_prm(&self, generation: ApiGeneration, prm: &Prm) -> Result<Vec<i64>, StoreError>;
    /// Marks the consents ended by `now` expired; returns how many.
    fn expire_consents(&self, now: i64) -> Result<usize, StoreError>;
    fn tokens(&self, consent_id: i64) -> Result<Option<StoredTokens>, StoreError>;
    /// Writes a consent's tokens, synced, before they are used.
    fn save_tokens(&self, consent_id: i64, tokens: &TokenSet) -> Result<(), StoreError>;

    // Access services ordered from Enedis SGE.
    fn record_access_service(&self, new: &NewAccessService) -> Result<AccessService, StoreError>;
    fn access_services_of_consent(&self, consent_id: i64) -> Result<Vec<AccessService>, StoreError>;
    fn active_access_services(&self) -> Result<Vec<AccessService>, StoreError>;
    fn access_service(&self, service_id: &str) -> Result<Option<AccessService>, StoreError>;
    fn access_services_to_stop(&self, now: i64, limit: usize) -> Result<Vec<AccessService>, StoreError>;
    fn mark_access_service_stopped(&self, service_id: &str, at: i64) -> Result<bool, StoreError>;
    fn record_access_stop_failure(&self, service_id: &str, error: &str, at: i64) -> Result<bool, StoreError>;
    fn has_active_access_service(&self, consent_id: i64, prm: &Prm, data: SgeDataType) -> Result<bool, StoreError>;

    // Grants and the audit trail.
    /// Records one access; an allowed access without a valid basis at its instant
    /// is refused by the database itself ([`AuditError::NoBasis`]).
    fn record_access(&self, access: &Access) -> Result<i64, AuditError>;
    /// Recorded accesses matching `filter`, oldest first.
    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    fn has_grant(&self, peer: &str, prm: &Prm) -> Result<bool, StoreError>;
    fn grants(&self) -> Result<Vec<(String, Prm)>, StoreError>;

    // The consent flow.
    fn save_description(&self, new: &NewDescription, new_id: impl FnOnce() -> String, now: i64) -> Result<ConsentDescription, StoreError>;
    fn description(&self, id: &str) -> Result<Option<ConsentDescription>, StoreError>;
    fn descriptions_of(&self, owner: &str) -> Result<Vec<ConsentDescription>, StoreError>;
    fn create_oauth_state(&self, state: &OAuthState, max_live: i64) -> Result<bool, StoreError>;
    /// Consumes a state once: a second consumer (on any instance) sees it used.
    fn consume_oauth_state(&self, state: &str, now: i64) -> Result<Consumed, StoreError>;
    fn live_oauth_states(&self, now: i64) -> Result<i64, StoreError>;

    // The readings cache.
    fn forget_hot_days(&self) -> ();
    fn cached_days(&self, generation: ApiGeneration, prm: &Prm, series: Series, from: Date, to: Date) -> Result<BTreeMap<Date, Arc<[Reading]>>, StoreError>;
    /// Writes whole days of each series in one transaction, while a consent or
    /// grant covers the PRM at `now` (see [`Store::cache_days`]).
    fn write_cached_days(&self, generation: ApiGeneration, prm: &Prm, series_days: &[(Series, DaysRef<'_>)], now: i64) -> Result<usize, StoreError>;
    fn purge_cache(&self, now: i64) -> Result<usize, StoreError>;
    fn is_covered(&self, generation: ApiGeneration, prm: &Prm, now: i64) -> Result<bool, StoreError>;
    fn cache_stats(&self) -> Result<CacheStats, StoreError>;

    // Subscriptions.
    fn subscribe(&self, peer: &str, identifier: &Identifier, basis: AccessBasis, delivered_through: Date, now: i64) -> Result<(Subscription, bool), SubscribeError>;
    fn unsubscribe(&self, peer: &str, identifier: &Identifier) -> Result<bool, StoreError>;
    fn end_subscription(&self, id: i64) -> Result<bool, StoreError>;
    fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    fn subscriptions_of(&self, peer: &str) -> Result<Vec<Subscription>, StoreError>;
    fn mark_delivered(&self, id: i64, day: Date) -> Result<bool, StoreError>;

    // The Enedis quota's ledger, shared by the instances of one store.
    fn record_quota(&self, platform: &str, calls: &[QuotaCall], pause_until_ms: Option<i64>) -> Result<(), StoreError>;
    fn quota_ledger(&self, platform: &str, now_ms: i64) -> Result<QuotaLedger, StoreError>;
    fn prune_quota_ledger(&self, now_ms: i64) -> Result<usize, StoreError>;

    // Consent notifications queued by a standby for the leader's XMPP session.
    /// Queues a notification for `peer` (committed); its id.
    fn queue_notification(&self, peer: &str, usage_points: &[String], peer_state: Option<&str>, now: i64) -> Result<i64, StoreError>;
    /// The oldest `limit` queued notifications, oldest first.
    fn queued_notifications(&self, limit: usize) -> Result<Vec<QueuedNotification>, StoreError>;
    /// Removes a notification once sent; false when it was not queued (any more).
    fn remove_notification(&self, id: i64) -> Result<bool, StoreError>;
}

impl Store {
    /// Makes `grants` equal to `wanted` (peer bare JID, PRMs), changing only the
    /// rows that differ, in one transaction.
    pub fn sync_grants<'a, I>(&self, wanted: I) -> Result<GrantChanges, StoreError>
    where
        I: IntoIterator<Item = (&'a str, &'a [Prm])>,
    {
        match &self.db {
            Db::Sqlite(db) => db.sync_grants(wanted),
            Db::Postgres(db) => db.sync_grants(wanted),
        }
    }
}

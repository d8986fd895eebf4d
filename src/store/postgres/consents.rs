//! PostgreSQL: see the SQLite side in `crate::store::consents`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use std::collections::BTreeSet;

use super::Postgres;
use crate::config::ApiGeneration;
use crate::quoalise::Prm;
use crate::store::consents::{
    Consent, ConsentState, NewConsent, NewSgeConsent, PrmUpstream, StoredTokens, TokenSet,
};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";
pub const MIGRATION_SGE: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn add_consent(
        &self,
        _new: &NewConsent,
        _tokens: Option<&TokenSet>,
    ) -> Result<Consent, StoreError> {
        Err(pending("add_consent"))
    }

    pub(crate) fn add_sge_consent(&self, _new: &NewSgeConsent) -> Result<Consent, StoreError> {
        Err(pending("add_sge_consent"))
    }

    pub(crate) fn revoke_consent(&self, _id: i64) -> Result<Consent, StoreError> {
        Err(pending("revoke_consent"))
    }

    pub(crate) fn consent(&self, _id: i64) -> Result<Option<Consent>, StoreError> {
        Err(pending("consent"))
    }

    pub(crate) fn list_consents(&self) -> Result<Vec<Consent>, StoreError> {
        Err(pending("list_consents"))
    }

    pub(crate) fn consents_of_owner(&self, _owner: &str) -> Result<Vec<Consent>, StoreError> {
        Err(pending("consents_of_owner"))
    }

    pub(crate) fn sge_consents_of_owner(&self, _owner: &str) -> Result<Vec<Consent>, StoreError> {
        Err(pending("sge_consents_of_owner"))
    }

    pub(crate) fn count_consents_by_state(&self) -> Result<Vec<(ConsentState, u64)>, StoreError> {
        Err(pending("count_consents_by_state"))
    }

    pub(crate) fn consents_for_peer(
        &self,
        _owner: &str,
        _prm: &Prm,
        _now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        Err(pending("consents_for_peer"))
    }

    pub(crate) fn sge_consents_for_peer(
        &self,
        _owner: &str,
        _prm: &Prm,
        _now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        Err(pending("sge_consents_for_peer"))
    }

    pub(crate) fn usable_consents_for_prm(
        &self,
        _generation: ApiGeneration,
        _prm: &Prm,
        _now: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        Err(pending("usable_consents_for_prm"))
    }

    pub(crate) fn upstream_for_prm(
        &self,
        _prm: &Prm,
        _now: i64,
    ) -> Result<PrmUpstream, StoreError> {
        Err(pending("upstream_for_prm"))
    }

    pub(crate) fn sge_prms_at(&self, _now: i64) -> Result<BTreeSet<Prm>, StoreError> {
        Err(pending("sge_prms_at"))
    }

    pub(crate) fn remove_consent(&self, _id: i64) -> Result<bool, StoreError> {
        Err(pending("remove_consent"))
    }

    pub(crate) fn set_consent_state(
        &self,
        _id: i64,
        _state: ConsentState,
    ) -> Result<bool, StoreError> {
        Err(pending("set_consent_state"))
    }

    pub(crate) fn revoke_prm(
        &self,
        _generation: ApiGeneration,
        _prm: &Prm,
    ) -> Result<Vec<i64>, StoreError> {
        Err(pending("revoke_prm"))
    }

    pub(crate) fn expire_consents(&self, _now: i64) -> Result<usize, StoreError> {
        Err(pending("expire_consents"))
    }

    pub(crate) fn tokens(&self, _consent_id: i64) -> Result<Option<StoredTokens>, StoreError> {
        Err(pending("tokens"))
    }

    pub(crate) fn save_tokens(
        &self,
        _consent_id: i64,
        _tokens: &TokenSet,
    ) -> Result<(), StoreError> {
        Err(pending("save_tokens"))
    }
}

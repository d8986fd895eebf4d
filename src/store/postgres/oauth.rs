//! PostgreSQL: see the SQLite side in `crate::store::oauth`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use super::Postgres;
use crate::store::oauth::{ConsentDescription, Consumed, NewDescription, OAuthState};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn save_description(
        &self,
        _new: &NewDescription,
        _new_id: impl FnOnce() -> String,
        _now: i64,
    ) -> Result<ConsentDescription, StoreError> {
        Err(pending("save_description"))
    }

    pub(crate) fn description(&self, _id: &str) -> Result<Option<ConsentDescription>, StoreError> {
        Err(pending("description"))
    }

    pub(crate) fn descriptions_of(
        &self,
        _owner: &str,
    ) -> Result<Vec<ConsentDescription>, StoreError> {
        Err(pending("descriptions_of"))
    }

    pub(crate) fn create_oauth_state(
        &self,
        _state: &OAuthState,
        _max_live: i64,
    ) -> Result<bool, StoreError> {
        Err(pending("create_oauth_state"))
    }

    pub(crate) fn consume_oauth_state(
        &self,
        _state: &str,
        _now: i64,
    ) -> Result<Consumed, StoreError> {
        Err(pending("consume_oauth_state"))
    }

    pub(crate) fn live_oauth_states(&self, _now: i64) -> Result<i64, StoreError> {
        Err(pending("live_oauth_states"))
    }
}

//! PostgreSQL: see the SQLite side in `crate::store::access_services`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use super::Postgres;
use crate::quoalise::Prm;
use crate::store::access_services::{AccessService, NewAccessService, SgeDataType};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn record_access_service(
        &self,
        _new: &NewAccessService,
    ) -> Result<AccessService, StoreError> {
        Err(pending("record_access_service"))
    }

    pub(crate) fn access_services_of_consent(
        &self,
        _consent_id: i64,
    ) -> Result<Vec<AccessService>, StoreError> {
        Err(pending("access_services_of_consent"))
    }

    pub(crate) fn active_access_services(&self) -> Result<Vec<AccessService>, StoreError> {
        Err(pending("active_access_services"))
    }

    pub(crate) fn access_service(
        &self,
        _service_id: &str,
    ) -> Result<Option<AccessService>, StoreError> {
        Err(pending("access_service"))
    }

    pub(crate) fn access_services_to_stop(
        &self,
        _now: i64,
        _limit: usize,
    ) -> Result<Vec<AccessService>, StoreError> {
        Err(pending("access_services_to_stop"))
    }

    pub(crate) fn mark_access_service_stopped(
        &self,
        _service_id: &str,
        _at: i64,
    ) -> Result<bool, StoreError> {
        Err(pending("mark_access_service_stopped"))
    }

    pub(crate) fn record_access_stop_failure(
        &self,
        _service_id: &str,
        _error: &str,
        _at: i64,
    ) -> Result<bool, StoreError> {
        Err(pending("record_access_stop_failure"))
    }

    pub(crate) fn has_active_access_service(
        &self,
        _consent_id: i64,
        _prm: &Prm,
        _data: SgeDataType,
    ) -> Result<bool, StoreError> {
        Err(pending("has_active_access_service"))
    }
}

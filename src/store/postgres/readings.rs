//! PostgreSQL: see the SQLite side in `crate::store::readings`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::civil::Date;

use super::Postgres;
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series};
use crate::store::readings::{CacheStats, Days};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn forget_hot_days(&self) {}

    pub(crate) fn cached_days(
        &self,
        _generation: ApiGeneration,
        _prm: &Prm,
        _series: Series,
        _from: Date,
        _to: Date,
    ) -> Result<BTreeMap<Date, Arc<[Reading]>>, StoreError> {
        Err(pending("cached_days"))
    }

    pub(crate) fn cache_days(
        &self,
        _generation: ApiGeneration,
        _prm: &Prm,
        _series: Series,
        _days: &[(Date, Vec<Reading>)],
        _now: i64,
    ) -> Result<usize, StoreError> {
        Err(pending("cache_days"))
    }

    pub(crate) fn cache_series_days(
        &self,
        _generation: ApiGeneration,
        _prm: &Prm,
        _series: &[(Series, Days)],
        _now: i64,
    ) -> Result<usize, StoreError> {
        Err(pending("cache_series_days"))
    }

    pub(crate) fn purge_cache(&self, _now: i64) -> Result<usize, StoreError> {
        Err(pending("purge_cache"))
    }

    pub(crate) fn is_covered(
        &self,
        _generation: ApiGeneration,
        _prm: &Prm,
        _now: i64,
    ) -> Result<bool, StoreError> {
        Err(pending("is_covered"))
    }

    pub(crate) fn cache_stats(&self) -> Result<CacheStats, StoreError> {
        Err(pending("cache_stats"))
    }
}

//! PostgreSQL: see the SQLite side in `crate::store::ledger`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use super::Postgres;
use crate::store::ledger::{QuotaCall, QuotaLedger};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn record_quota(
        &self,
        _platform: &str,
        _calls: &[QuotaCall],
        _pause_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        Err(pending("record_quota"))
    }

    pub(crate) fn quota_ledger(
        &self,
        _platform: &str,
        _now_ms: i64,
    ) -> Result<QuotaLedger, StoreError> {
        Err(pending("quota_ledger"))
    }

    pub(crate) fn prune_quota_ledger(&self, _now_ms: i64) -> Result<usize, StoreError> {
        Err(pending("prune_quota_ledger"))
    }
}

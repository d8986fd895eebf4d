//! PostgreSQL: see the SQLite side in `crate::store::audit`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use super::Postgres;
use crate::quoalise::Prm;
use crate::store::audit::{Access, AuditError, AuditFilter, AuditRecord, GrantChanges};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn sync_grants<'a, I>(&self, _wanted: I) -> Result<GrantChanges, StoreError>
    where
        I: IntoIterator<Item = (&'a str, &'a [Prm])>,
    {
        Err(pending("sync_grants"))
    }

    pub(crate) fn record_access(&self, _access: &Access) -> Result<i64, AuditError> {
        Err(pending("record_access").into())
    }

    pub(crate) fn audit(&self, _filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        Err(pending("audit"))
    }

    pub(crate) fn has_grant(&self, _peer: &str, _prm: &Prm) -> Result<bool, StoreError> {
        Err(pending("has_grant"))
    }

    pub(crate) fn grants(&self) -> Result<Vec<(String, Prm)>, StoreError> {
        Err(pending("grants"))
    }
}

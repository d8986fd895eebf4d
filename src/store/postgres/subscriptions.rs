//! PostgreSQL: see the SQLite side in `crate::store::subscriptions`.
//! PENDING: the stubs below are placeholders while the port is in progress.

use jiff::civil::Date;

use super::Postgres;
use crate::quoalise::Identifier;
use crate::store::audit::AccessBasis;
use crate::store::subscriptions::{SubscribeError, Subscription};
use crate::store::{StoreError, pending};

pub const MIGRATION: &str = "SELECT 1;";

impl Postgres {
    pub(crate) fn subscribe(
        &self,
        _peer: &str,
        _identifier: &Identifier,
        _basis: AccessBasis,
        _delivered_through: Date,
        _now: i64,
    ) -> Result<(Subscription, bool), SubscribeError> {
        Err(pending("subscribe").into())
    }

    pub(crate) fn unsubscribe(
        &self,
        _peer: &str,
        _identifier: &Identifier,
    ) -> Result<bool, StoreError> {
        Err(pending("unsubscribe"))
    }

    pub(crate) fn end_subscription(&self, _id: i64) -> Result<bool, StoreError> {
        Err(pending("end_subscription"))
    }

    pub(crate) fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        Err(pending("subscriptions"))
    }

    pub(crate) fn subscriptions_of(&self, _peer: &str) -> Result<Vec<Subscription>, StoreError> {
        Err(pending("subscriptions_of"))
    }

    pub(crate) fn mark_delivered(&self, _id: i64, _day: Date) -> Result<bool, StoreError> {
        Err(pending("mark_delivered"))
    }
}

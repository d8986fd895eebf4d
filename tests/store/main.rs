//! The store on its own, on both databases (SQLite and PostgreSQL, [`backends`]):
//! consents and their tokens (and the `consents` admin command on it), the audit
//! trail's schema rules, subscriptions, the quota ledger, the consent flow's
//! OAuth states, the readings cache.

#[path = "../common/mod.rs"]
mod common;

#[macro_use]
mod backends;

mod access_services;
mod audit_schema;
mod consents;
mod declared_consents;
mod leader_lock;
mod oauth;
mod outbox;
mod postgres;
mod quota_ledger;
mod readings;
mod subscriptions;

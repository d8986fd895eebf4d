//! The SQLite store on its own: consents and their tokens (and the `consents`
//! admin command on it), the audit trail's schema rules, subscriptions.

#[path = "../common/mod.rs"]
mod common;

mod access_services;
mod audit_schema;
mod consents;
mod declared_consents;
mod quota_ledger;
mod subscriptions;

//! What an operator runs and relies on, as the real binary: `check` on config
//! files, the systemd unit, the Debian package, log output and its secrets, the `audit` and `backup`
//! commands, crash and secret-leak faults, and `/healthz` on a store that cannot be written.

#[path = "../common/mod.rs"]
mod common;

mod audit_cli;
mod backup_online;
mod config_check;
mod deb_package;
mod declared_consents;
mod deploy_unit;
mod faults_crash;
mod faults_secrets;
mod logging_output;
mod logging_secrets;
mod sge_access_services;
mod store_health;

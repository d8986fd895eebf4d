//! The Enedis client against the Enedis simulator and recorded answers: parsing
//! of every generation's formats, the OAuth and data contract, the token refresh
//! under SIGKILL, and the cache that wraps the client.

#[path = "../common/mod.rs"]
mod common;

mod cache;
mod contract;
mod crash;
mod parsing;
mod quota_schedule;

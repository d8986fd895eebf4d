//! The Enedis client against the Enedis simulator and recorded answers: parsing
//! of every generation's formats, the OAuth and data contract, the contract and
//! technical data of a PRM (`contract_data`), the token refresh under SIGKILL, the
//! SGE SOAP client (`sge`),
//! and the cache that wraps the client.

#[path = "../common/mod.rs"]
mod common;

mod cache;
mod contract;
mod contract_data;
mod crash;
mod index;
mod parsing;
mod quota_schedule;
mod sge;

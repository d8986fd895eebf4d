//! Helpers shared by every integration test crate and the benchmarks, included
//! once per crate as `#[path = "../common/mod.rs"] mod common;`: a real Prosody
//! (`prosody`, two that federate in `federation`), agents and peers on the
//! library's XMPP session (`xmpp_harness`), the Enedis simulator (`sim`, the
//! enedis-sim crate's harness) and an Enedis client pointed at it
//! (`upstream_sim`), a whole deployment of the REAL agent with paged answers read
//! back (`agent_harness`), and the agent's configuration file (`config`), and a real PostgreSQL
//! (`postgres`). Each
//! crate uses only part of it, hence the `dead_code` allowance here, once.
#![allow(dead_code)]

pub mod agent_harness;
pub mod config;
pub mod federation;
pub mod postgres;
pub mod prosody;
pub mod sim;
pub mod standby;
pub mod upstream_sim;
pub mod xmpp_harness;

//! enedis-sim: a local Enedis Data Connect, all four API generations at once.
//!
//! No machine here reaches Enedis, so the agent, its tests, its demo and its users'
//! integration tests meet "Enedis" through this simulator. It serves, each on its
//! own paths: the v1 (v3/v4/v5) and v2 (2026) consent pages, the per-consent v1
//! token endpoint and the application `client_credentials` token endpoint, the v3
//! (seed, `rank`), v4, v5 and 2026 metering APIs, the 2026 `subscribed_services`
//! and contract (ITC) APIs, and the v5 customer APIs. Values are synthetic and
//! deterministic ([`synth`]); the sandbox profiles and special meters are in
//! [`catalogue`]. A WSO2-like gateway layer checks tokens, enforces quotas and
//! injects faults; `/sim/admin/` switches faults and quotas at run time and counts
//! calls. With `--sge-listen` it also serves Enedis SGE (B2B SOAP) over mutual TLS
//! with a test CA of its own ([`sge_tls`]). `docs/enedis-sim.md` documents the
//! behaviour for users.
//!
//! This crate stands alone: it shares no code with quoalise-agent, so the agent's
//! tests meet an independent implementation of Enedis. The `harness` feature adds
//! [`harness`], which the tests of both crates use to run a simulator in-process.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod cli;
#[cfg(feature = "harness")]
pub mod harness;
pub mod model;
pub mod paris;
pub mod synth;
pub mod tariff;

mod access_services;
mod admin;
mod api2026;
mod consent_request;
mod errors;
mod gateway;
mod itc;
mod metering;
mod oauth;
mod options;
mod page;
mod router;
pub mod sge;
mod state;
mod subscribed;
mod v1data;
mod v5;

pub use options::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN_TTL_SECS, Options, Secret,
};
pub use router::{SgeListener, router, serve, serve_with_sge};
/// SGE mutual TLS: the test CA and certificates of `--sge-tls-dir`.
pub use sge::tls as sge_tls;
pub use state::{Faults, ForcedStatus, QuotaLimits};

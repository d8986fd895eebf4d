//! The Enedis simulator for integration tests: `enedis_sim::harness` (the
//! simulator crate's own harness, a real HTTP server on 127.0.0.1 in-process,
//! stopped on Drop), re-exported as `common::sim`.
//!
//! Use from any test crate (each includes `tests/common/` once):
//! ```ignore
//! use crate::common::sim;
//! let sim = sim::Sim::start(&["--today", "2026-10-04"]);
//! let token = sim.app_token().await;
//! sim.admin().faults(serde_json::json!({"failure_rate": 1.0})).await;
//! ```
#![allow(unused_imports)]

pub use enedis_sim::harness::{Admin, CLIENT_ID, CLIENT_SECRET, Sim};

//! The Enedis simulator for integration tests: `enedis_sim::harness` (the
//! simulator crate's own harness, a real HTTP server on 127.0.0.1 in-process,
//! stopped on Drop), re-exported under the name the tests have always used.
//!
//! Use from any integration test:
//! ```ignore
//! #[path = "common/sim.rs"]
//! mod sim;
//! let sim = sim::Sim::start(&["--today", "2026-10-04"]);
//! let token = sim.app_token().await;
//! sim.admin().faults(serde_json::json!({"failure_rate": 1.0})).await;
//! ```
#![allow(unused_imports)]

pub use enedis_sim::harness::{Admin, CLIENT_ID, CLIENT_SECRET, Sim};

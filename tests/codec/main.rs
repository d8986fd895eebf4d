//! The Quoalise codec and everything decoded from outside: round trips of the
//! payload (property tests, the Python client's own payload), every emitted
//! payload against its RELAX NG schema, and the fuzzers' kept inputs replayed
//! through their entry points.

#[path = "../common/mod.rs"]
mod common;

mod fuzz_regressions;
mod roundtrip;
mod schemas;

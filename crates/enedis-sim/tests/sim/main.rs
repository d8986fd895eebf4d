//! The simulator's tests, in one test crate: each module starts simulators through
//! [`enedis_sim::harness`] and talks to them over real HTTP on 127.0.0.1, as the
//! agent does. `binary` runs the `enedis-sim` executable itself.

mod binary;
mod data;
mod fixtures;
mod gateway;
mod oauth;
mod sge;

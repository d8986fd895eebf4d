//! quoalise-agent: an XMPP agent of the Quoalise federation serving Enedis Data
//! Connect data to authorised peers.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod quoalise;
pub mod sim;
pub mod store;
pub mod time;
pub mod upstream;

//! quoalise-agent: an XMPP agent of the Quoalise federation serving Enedis Data
//! Connect data to authorised peers.
#![forbid(unsafe_code)]

pub mod config;
pub mod quoalise;
pub mod time;
pub mod xmpp;

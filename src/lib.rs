//! quoalise-agent: an XMPP agent of the Quoalise federation serving Enedis Data
//! Connect data to authorised peers.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod push;
pub mod quoalise;
pub mod store;
pub mod systemd;
pub mod time;
pub mod upstream;
pub mod web;
pub mod xmpp;

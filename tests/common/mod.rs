//! Helpers shared by the integration tests.
pub mod prosody;
pub mod xmpp_harness;

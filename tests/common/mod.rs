//! Helpers shared by the integration tests.
pub mod federation;
pub mod prosody;
pub mod xmpp_harness;

//! The consent web pages: the handlers against the simulator, and the whole
//! consent journey end to end (a peer's site, headless Chromium, the agent and
//! slixmpp peers).

#[path = "../common/mod.rs"]
mod common;

mod consent;
mod e2e_consent;

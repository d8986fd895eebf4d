//! The top of the house: the wiring that runs the agent. It starts the XMPP
//! session with the commands ([`run::commands`]), the web server with the
//! consent pages ([`run::web_router`]) and the daily pushes, waits for signals,
//! reloads the configuration ([`reload`]) and shuts everything down. Nothing
//! below imports it; only the binary does.
//!
//! With PostgreSQL, the XMPP session, the pushes and what calls Enedis run only
//! on the instance holding the leader's lock ([`leader`]); consent
//! notifications of a standby wait in the store for it ([`outbox`]).
//!
//! ```text
//! signals ─► run::Agent::serve ─┬─ xmpp::XmppAgent::run ─► router ─► commands::* ─► agent::data::fetch
//!                               │                                                  ├ authorise
//!                               │                                                  ├ upstream
//!                               │                                                  └ quoalise::encode
//!                               ├─ push::Scheduler (daily pushes to subscribers)
//!                               └─ axum on web.listen ─► run::web_router (/healthz, /metrics, consent pages)
//! ```

pub mod leader;
pub mod outbox;
pub mod reload;
pub mod run;

pub use run::{Agent, Control, Ended, commands, web_router};

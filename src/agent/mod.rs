//! The running agent: its shared [`context`], who may read what
//! ([`authorise`]), one request for readings ([`request`]) and how large its
//! answer is ([`size`]), the one [`data`] path every data command goes through
//! with its [`audit`] trail, how the answer reaches the peer ([`answer`]), the
//! start-up/serve/shutdown wiring ([`run`]) and configuration [`reload`].
//!
//! ```text
//! signals ─► run::Agent::serve ─┬─ xmpp::XmppAgent::run ─► router ─► commands::* ─► data::fetch
//!                               │                                                  ├ authorise
//!                               │                                                  ├ upstream
//!                               │                                                  └ quoalise::encode
//!                               └─ axum on web.listen ─► run::web_router (/healthz, /metrics, …)
//! ```

pub mod answer;
pub mod audit;
pub mod authorise;
pub mod context;
pub mod data;
pub mod reload;
pub mod request;
pub mod run;
pub mod size;

pub use context::{AgentContext, Settings};
pub use run::{Agent, Control, commands, web_router};

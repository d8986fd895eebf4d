//! The agent's request path, below the commands and the pushes that use it:
//! the shared [`context`], who may read what ([`authorise`]), one request for
//! readings ([`request`]) and how large its answer is ([`size`]), the one
//! [`data`] path every data command goes through with its [`audit`] trail, the
//! [`contract`] path of `get_contract` beside it, and how the answer reaches the
//! peer ([`answer`]). The wiring that runs it all is
//! [`crate::daemon`].
//!
//! ```text
//! commands::* / push ─► answer ─► data::fetch ─┬ authorise
//!                                              ├ size (refused before Enedis?)
//!                                              ├ upstream (cache)
//!                                              └ audit
//! commands::get_contract ─► contract::fetch_contract (authorise, upstream
//!                                                     cache, audit)
//! ```

pub mod answer;
pub mod audit;
pub mod authorise;
pub mod context;
pub mod contract;
pub mod data;
pub mod request;
pub mod size;

pub use context::{AgentContext, Settings};

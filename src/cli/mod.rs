//! Subcommands of the `quoalise-agent` command line that live in the library, so
//! they can be tested without the binary; `src/main.rs` only dispatches to them.

pub mod audit;
pub mod authorize_url;
pub mod backup;
pub mod consents;
pub mod query;

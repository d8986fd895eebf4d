//! The agent's ad-hoc commands, one file each; [`common`] holds what every
//! command shares (request log line and metrics), [`data`] the three data
//! commands and what they share (form defaults, the legacy form, pages).
//!
//! Every data command goes through the one data path,
//! [`crate::agent::data::fetch`]; `get_contract` ([`get_contract`]) through the
//! contract path beside it, [`crate::agent::contract::fetch_contract`]. The commands the agent serves are registered
//! in [`crate::daemon::run::commands`].

pub mod common;
pub mod data;
pub mod get_authorize_uri;
pub mod get_contract;
pub mod list_usage_points;
pub mod subscription;

pub use data::{GET_DAILY, GET_LOAD_CURVE, GetHistory};
pub use get_authorize_uri::GetAuthorizeUri;
pub use get_contract::GetContract;
pub use list_usage_points::ListUsagePoints;
pub use subscription::{Subscribe, Unsubscribe};

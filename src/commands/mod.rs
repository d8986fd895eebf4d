//! The agent's ad-hoc commands, one file each; [`common`] holds what they
//! share (request log line and metrics, form defaults, the legacy form).
//!
//! Every data command goes through the one data path,
//! [`crate::agent::data::fetch`]. The commands the agent serves are registered
//! in [`crate::daemon::run::commands`].

pub mod common;
pub mod get_authorize_uri;
pub mod get_daily;
pub mod get_history;
pub mod get_load_curve;
pub mod list_usage_points;
pub mod subscription;

pub use get_authorize_uri::GetAuthorizeUri;
pub use get_daily::GET_DAILY;
pub use get_history::GetHistory;
pub use get_load_curve::GET_LOAD_CURVE;
pub use list_usage_points::ListUsagePoints;
pub use subscription::{Subscribe, Unsubscribe};

//! `get_daily`, as the first Data Connect proxy's applications send it:
//! fields `usage_point_id`, `direction` (`consumption` or `production`,
//! default consumption), `start_date`, `end_date` (`YYYY-MM-DD`, Paris days, end
//! excluded). Answers the energy of each Paris day (Wh), stamped at the Paris
//! midnight starting the day, in UTC, with the NESTED meta form those
//! applications read.

use super::common::{Legacy, LegacyKind};

/// The `get_daily` command.
pub const GET_DAILY: Legacy = Legacy {
    node: "get_daily",
    kind: LegacyKind::Daily,
    title: "Get daily energy",
    instructions: "Energy of each Paris day (Wh) of [start_date, end_date[; values are \
                   stamped at the Paris midnight starting their day, in UTC.",
};

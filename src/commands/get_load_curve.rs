//! `get_load_curve`, as the first Data Connect proxy's applications send it:
//! fields `usage_point_id`, `direction` (`consumption` or `production`,
//! default consumption), `start_date`, `end_date` (`YYYY-MM-DD`, Paris days, end
//! excluded). Answers the mean active power at the meter's step (W), stamped at
//! the start of each interval in UTC, with the NESTED meta form those
//! applications read.

use super::common::{Legacy, LegacyKind};

/// The `get_load_curve` command.
pub const GET_LOAD_CURVE: Legacy = Legacy {
    node: "get_load_curve",
    kind: LegacyKind::LoadCurve,
    title: "Get load curve",
    instructions: "Mean active power (W) at the meter's step (usually 30 minutes), \
                   of Paris days [start_date, end_date[; values are stamped at the start \
                   of their interval, in UTC.",
};

//! The three data commands and what they share: `get_history` (the Quoalise
//! client's, [`get_history`]) and the two legacy commands `get_load_curve` and
//! `get_daily` ([`legacy`]). All three read through THE data path
//! ([`crate::agent::answer::answer`]) and page long answers the same way
//! ([`next_stage`]); they offer people the same default period and reminder of
//! the PRMs they may read.

pub mod get_history;
pub mod legacy;

pub use get_history::GetHistory;
pub use legacy::{GET_DAILY, GET_LOAD_CURVE, Legacy, LegacyKind, LegacyQuery};

use super::common::instrumented;
use crate::agent::answer::next_page;
use crate::agent::authorise::Readable;
use crate::agent::context::AgentContext;
use crate::time::{PARIS, add_days, day_start, paris_today};
use crate::xmpp::{CommandError, Continuation, Outcome, Request};
use jiff::Timestamp;
use jiff::civil::Date;

/// The default period offered to a human: yesterday, Paris time (the latest
/// day Enedis has).
pub fn default_days() -> (Date, Date) {
    let today = paris_today(Timestamp::now());
    let yesterday = add_days(today, -1).unwrap_or(today);
    (yesterday, today)
}

/// Paris midnight starting `date`, as an ISO 8601 date-time with its offset
/// (`2026-11-28T00:00:00+01:00`).
pub fn paris_midnight(date: Date) -> String {
    day_start(date)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map(|ts| ts.display_with_offset(PARIS.to_offset(ts)).to_string())
        .unwrap_or_else(|| format!("{date}T00:00:00+01:00"))
}

/// The PRMs a human is reminded of in a form: at most a dozen, then "…".
pub fn prm_hint(readable: &[Readable]) -> String {
    const SHOWN: usize = 12;
    let mut list: Vec<String> = readable
        .iter()
        .take(SHOWN)
        .map(|r| r.prm.to_string())
        .collect();
    if readable.len() > SHOWN {
        list.push(format!(
            "… ({} in all, see list_usage_points)",
            readable.len()
        ));
    }
    if list.is_empty() {
        "none yet (ask the agent's operator, or a consumer's consent through get_authorize_uri)"
            .to_owned()
    } else {
        list.join(", ")
    }
}

/// The next page of a data command's answer, with its log line and metrics.
pub async fn next_stage(
    ctx: &AgentContext,
    node: &'static str,
    request: Request,
    more: Continuation,
) -> Result<Outcome, CommandError> {
    instrumented(ctx, node, &request, async |log| {
        next_page(ctx, &request, &more, log).await
    })
    .await
}

//! `get_load_curve`, as the first Data Connect proxy's applications send it:
//! fields `usage_point_id`, `direction` (`consumption` or `production`,
//! default consumption), `start_date`, `end_date` (`YYYY-MM-DD`, Paris days, end
//! excluded). Answers the mean active power at the meter's step (W), stamped at
//! the start of each interval in UTC, with the NESTED meta form those
//! applications read.

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::common::{Legacy, LegacyKind, legacy_execute, legacy_form, legacy_form_for};
use crate::agent::context::AgentContext;
use crate::xmpp::{AdHocCommand, BoxFuture, CommandError, Outcome, Request};

const LEGACY: Legacy = Legacy {
    node: "get_load_curve",
    kind: LegacyKind::LoadCurve,
    title: "Get load curve",
    instructions: "Mean active power (W) at the meter's step (usually 30 minutes), \
                   of Paris days [start_date, end_date[; values are stamped at the start \
                   of their interval, in UTC.",
};

/// The `get_load_curve` command.
pub struct GetLoadCurve;

impl AdHocCommand<AgentContext> for GetLoadCurve {
    fn node(&self) -> &str {
        LEGACY.node
    }

    fn name(&self) -> &str {
        LEGACY.title
    }

    fn form(&self) -> DataForm {
        legacy_form(LEGACY.title, LEGACY.instructions, &[])
    }

    fn form_for<'a>(
        &'a self,
        ctx: &'a AgentContext,
        requester: &'a BareJid,
    ) -> BoxFuture<'a, Result<DataForm, CommandError>> {
        Box::pin(legacy_form_for(LEGACY, ctx, requester))
    }

    fn execute<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
    ) -> BoxFuture<'a, Result<Outcome, CommandError>> {
        Box::pin(legacy_execute(LEGACY, ctx, request))
    }
}

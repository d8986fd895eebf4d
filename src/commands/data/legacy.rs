//! The two commands of the first Data Connect proxy's applications,
//! `get_load_curve` and `get_daily`: fields `usage_point_id`, `direction`
//! (`consumption` or `production`, default consumption), `start_date`,
//! `end_date` (`YYYY-MM-DD`, Paris days, end excluded), answered as that
//! proxy's code answered ([`MetaForm::Nested`]): the NESTED meta form, records
//! named `urn:dev:prm:<PRM>_<direction>_load` and
//! `urn:dev:prm:<PRM>_daily_<direction>`, `<sampling interval="PT30M"/>` or
//! `"P1D"`. They differ only in a [`Legacy`] description: `get_load_curve`
//! answers the mean active power at the meter's step (W), stamped at the start
//! of each interval in UTC (the proxy stamped the end: the one deliberate
//! difference, docs/agent.md); `get_daily` the energy of each Paris day (Wh),
//! stamped at the Paris midnight starting the day, in UTC.

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::{default_days, next_stage, prm_hint};
use crate::agent::answer::{Presentation, answer, paging_field, wants_pages};
use crate::agent::authorise::{Readable, readable};
use crate::agent::context::AgentContext;
use crate::agent::request::DataRequest;
use crate::commands::common::{instrumented, refuse};
use crate::quoalise::{Direction, Identifier, MetaForm, Prm, Scope, Series};
use crate::time::{Window, parse_date};
use crate::xmpp::forms::{list_single, text_single};
use crate::xmpp::{
    AdHocCommand, BoxFuture, CommandError, CommandFuture, Continuation, FieldExt, FormBuilder,
    Outcome, Request, SubmittedForm,
};

/// The `get_load_curve` command.
pub const GET_LOAD_CURVE: Legacy = Legacy {
    node: "get_load_curve",
    kind: LegacyKind::LoadCurve,
    title: "Get load curve",
    instructions: "Mean active power (W) at the meter's step (usually 30 minutes), \
                   of Paris days [start_date, end_date[; values are stamped at the start \
                   of their interval, in UTC.",
};

/// The `get_daily` command.
pub const GET_DAILY: Legacy = Legacy {
    node: "get_daily",
    kind: LegacyKind::Daily,
    title: "Get daily energy",
    instructions: "Energy of each Paris day (Wh) of [start_date, end_date[; values are \
                   stamped at the Paris midnight starting their day, in UTC.",
};

/// The period of the legacy commands: `start_date`, `end_date` (`YYYY-MM-DD`,
/// Paris days, end excluded).
pub const LEGACY_PERIOD_FIELDS: &str = "start_date/end_date";

/// A request of the first Data Connect proxy's commands (`get_load_curve`,
/// `get_daily`): `usage_point_id`, `direction` (default consumption),
/// `start_date`, `end_date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyQuery {
    pub prm: Prm,
    pub direction: Direction,
    pub window: Window,
}

impl LegacyQuery {
    /// Reads the form; errors name the field and say why.
    pub fn from_form(form: &SubmittedForm) -> Result<LegacyQuery, CommandError> {
        let prm: Prm = form.parse_required("usage_point_id", |s| s.parse::<Prm>())?;
        let direction = match form.choice(
            "direction",
            &["consumption", "production"],
            Some("consumption"),
        )? {
            Some(d) if d == "production" => Direction::Production,
            _ => Direction::Consumption,
        };
        let start = form.parse_required("start_date", parse_date)?;
        let end = form.parse_required("end_date", parse_date)?;
        let window = Window::from_dates(start, end).map_err(|e| {
            CommandError::bad_request(format!("fields {LEGACY_PERIOD_FIELDS}: {e}"))
        })?;
        Ok(LegacyQuery {
            prm,
            direction,
            window,
        })
    }
}

/// The form of a legacy command, with defaults: the first readable PRM,
/// consumption, yesterday.
pub fn legacy_form(title: &str, instructions: &str, readable: &[Readable]) -> DataForm {
    let (start, end) = default_days();
    let mut prm_field = text_single("usage_point_id", "Usage point (PRM, 14 digits)")
        .required()
        .desc(&format!(
            "Usage points you may read: {}",
            prm_hint(readable)
        ));
    if let Some(first) = readable.first() {
        prm_field = prm_field.value(first.prm.as_str());
    }
    FormBuilder::form(title)
        .instructions(instructions)
        .field(prm_field)
        .field(
            list_single(
                "direction",
                "Direction",
                &[("consumption", "Consumption"), ("production", "Production")],
            )
            .value("consumption"),
        )
        .field(
            text_single("start_date", "First day (YYYY-MM-DD, Paris)")
                .required()
                .value(&start.to_string()),
        )
        .field(
            text_single("end_date", "Day after the last one (YYYY-MM-DD, excluded)")
                .required()
                .value(&end.to_string()),
        )
        .field(paging_field())
        .build()
}

/// What distinguishes `get_load_curve` from `get_daily`; everything else about
/// the two legacy commands is shared ([`legacy_execute`], [`legacy_form_for`]).
#[derive(Debug, Clone, Copy)]
pub struct Legacy {
    pub node: &'static str,
    pub kind: LegacyKind,
    /// Title of the form and of the result.
    pub title: &'static str,
    pub instructions: &'static str,
}

/// Both legacy commands are a [`Legacy`] description: `get_load_curve` and
/// `get_daily` differ only in it.
impl AdHocCommand<AgentContext> for Legacy {
    fn node(&self) -> &str {
        self.node
    }

    fn name(&self) -> &str {
        self.title
    }

    fn form(&self) -> DataForm {
        legacy_form(self.title, self.instructions, &[])
    }

    fn form_for<'a>(
        &'a self,
        ctx: &'a AgentContext,
        requester: &'a BareJid,
    ) -> CommandFuture<'a, DataForm> {
        Box::pin(legacy_form_for(*self, ctx, requester))
    }

    /// Seen by a peer whose scopes include the command's ([`Legacy::scope`]).
    fn allowed(&self, ctx: &AgentContext, requester: &BareJid) -> bool {
        ctx.settings().scopes(requester).contains(self.scope())
    }

    fn refused<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
    ) -> BoxFuture<'a, CommandError> {
        Box::pin(async move {
            let asked = LegacyQuery::from_form(&request.form)
                .ok()
                .map(|query| Identifier::new(query.prm, self.series(query.direction)));
            refuse(ctx, self.node, &request, &[self.scope()], asked).await
        })
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(legacy_execute(*self, ctx, request))
    }

    fn next<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
        more: Continuation,
    ) -> CommandFuture<'a> {
        Box::pin(next_stage(ctx, self.node, request, more))
    }
}

impl Legacy {
    fn series(&self, direction: Direction) -> Series {
        match self.kind {
            LegacyKind::LoadCurve => Series::load_curve(direction),
            LegacyKind::Daily => Series::daily_energy(direction),
        }
    }

    /// The scope of the series the command serves, in either direction.
    pub fn scope(&self) -> Scope {
        Scope::of(self.series(Direction::Consumption))
    }
}

/// Which legacy command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyKind {
    LoadCurve,
    Daily,
}

/// The form of a legacy command for this requester.
pub async fn legacy_form_for(
    legacy: Legacy,
    ctx: &AgentContext,
    requester: &BareJid,
) -> Result<DataForm, CommandError> {
    let settings = ctx.settings();
    let readable = readable(ctx, &settings, requester).await?;
    Ok(legacy_form(legacy.title, legacy.instructions, &readable))
}

/// Runs a legacy command: reads its form, then the data path with the NESTED
/// meta form.
pub async fn legacy_execute(
    legacy: Legacy,
    ctx: &AgentContext,
    request: Request,
) -> Result<Outcome, CommandError> {
    instrumented(ctx, legacy.node, &request, async |log| {
        let query = LegacyQuery::from_form(&request.form)?;
        let paging = wants_pages(&request.form)?;
        let identifier = Identifier::new(query.prm, legacy.series(query.direction));
        let data = DataRequest {
            requester: request.requester.clone(),
            identifier,
            window: query.window,
            meta: MetaForm::Nested,
            period_fields: LEGACY_PERIOD_FIELDS,
            deadline: request.deadline,
            class: crate::upstream::Class::Interactive,
            max_payload: None,
        };
        let presentation = Presentation {
            title: legacy.title,
            label: format!("{} of {}", legacy.title, query.prm),
            paging,
        };
        answer(ctx, &request, data, log, presentation).await
    })
    .await
}

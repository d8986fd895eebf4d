//! `get_history`, as the Quoalise client sends it: fields `identifier`
//! (`urn:dev:prm:<PRM>_<series>`), `start_time`, `end_time` (ISO 8601 with an
//! offset). The answer is a result form titled "Get history" whose fixed field
//! `result`, labelled "Get <identifier>", says "Success", and the Quoalise
//! payload in the FLAT meta form.
//!
//! The client may leave out the times: `end_time` then defaults to the Paris
//! midnight starting today, `start_time` to the Paris midnight starting the day
//! before `end_time` (one whole day, the latest Enedis has by default).

use jiff::Timestamp;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::{default_days, next_stage, paris_midnight, prm_hint};
use crate::agent::answer::{Presentation, answer, paging_field, wants_pages};
use crate::agent::authorise::readable;
use crate::agent::context::AgentContext;
use crate::agent::request::DataRequest;
use crate::commands::common::{instrumented, refuse, sees_any_series, series_scopes};
use crate::quoalise::{Identifier, MetaForm, SERIES_NAMES};
use crate::time::{Window, day_start, paris_date, paris_today, parse_instant};
use crate::xmpp::forms::text_single;
use crate::xmpp::{
    AdHocCommand, BoxFuture, CommandError, CommandFuture, Continuation, FieldExt, FormBuilder,
    Request, SubmittedForm,
};

const NODE: &str = "get_history";
const PERIOD_FIELDS: &str = "start_time/end_time";

/// The `get_history` command.
pub struct GetHistory;

impl GetHistory {
    /// The form: `series` are the names of those the requester may read (all of
    /// them in the generic form).
    fn form_with(&self, hint: Option<Identifier>, prms: &str, series: &[&str]) -> DataForm {
        let (start, end) = default_days();
        let mut identifier = text_single("identifier", "Identifier")
            .required()
            .desc("urn:dev:prm:<14-digit PRM>_<series>");
        if let Some(hint) = hint {
            identifier = identifier.value(&hint.to_string());
        }
        FormBuilder::form("Get history")
            .instructions(format!(
                "Readings of one series of one meter. Identifier: urn:dev:prm:<PRM>_<series>. \
                 Your usage points: {prms}. Series: {}. Times: ISO 8601 with an offset; \
                 values are stamped at the start of their interval, in UTC.",
                series.join(", ")
            ))
            .field(identifier)
            .field(
                text_single("start_time", "Start (ISO 8601 with offset)")
                    .required()
                    .value(&paris_midnight(start)),
            )
            .field(
                text_single("end_time", "End, excluded (ISO 8601 with offset)")
                    .required()
                    .value(&paris_midnight(end)),
            )
            .field(paging_field())
            .build()
    }
}

/// Reads `identifier`, `start_time`, `end_time`; errors name the field.
fn parse(form: &SubmittedForm) -> Result<(Identifier, Window), CommandError> {
    let identifier = form.parse_required("identifier", |s| s.parse::<Identifier>())?;
    let end = match form.optional("end_time")? {
        Some(_) => form.parse_required("end_time", parse_instant)?,
        None => default_end()?,
    };
    let start = match form.optional("start_time")? {
        Some(_) => form.parse_required("start_time", parse_instant)?,
        None => day_before(end)?,
    };
    let window = Window::new(start, end)
        .map_err(|e| CommandError::bad_request(format!("fields {PERIOD_FIELDS}: {e}")))?;
    Ok((identifier, window))
}

fn out_of_range(e: impl std::fmt::Display) -> CommandError {
    CommandError::bad_request(format!("fields {PERIOD_FIELDS}: {e}"))
}

/// Paris midnight starting today.
fn default_end() -> Result<Timestamp, CommandError> {
    let today = paris_today(Timestamp::now());
    let seconds = day_start(today).map_err(out_of_range)?;
    Timestamp::from_second(seconds).map_err(out_of_range)
}

/// Paris midnight starting the day of the last instant before `end`.
fn day_before(end: Timestamp) -> Result<Timestamp, CommandError> {
    let day = paris_date(end.as_second() - 1).map_err(out_of_range)?;
    let seconds = day_start(day).map_err(out_of_range)?;
    Timestamp::from_second(seconds).map_err(out_of_range)
}

impl AdHocCommand<AgentContext> for GetHistory {
    fn node(&self) -> &str {
        NODE
    }

    fn name(&self) -> &str {
        "Get history"
    }

    fn form(&self) -> DataForm {
        self.form_with(None, "see list_usage_points", &SERIES_NAMES)
    }

    fn form_for<'a>(
        &'a self,
        ctx: &'a AgentContext,
        requester: &'a BareJid,
    ) -> CommandFuture<'a, DataForm> {
        Box::pin(async move {
            let settings = ctx.settings();
            let readable = readable(ctx, &settings, requester).await?;
            let series = settings.scopes(requester).series();
            let hint = readable
                .first()
                .zip(series.first())
                .map(|(r, series)| Identifier::new(r.prm, *series));
            let names = settings
                .scopes(requester)
                .series_names(settings.serves_indexes());
            Ok(self.form_with(hint, &prm_hint(&readable), &names))
        })
    }

    /// Seen by a peer whose scopes let it receive at least one series.
    fn allowed(&self, ctx: &AgentContext, requester: &BareJid) -> bool {
        sees_any_series(ctx, requester)
    }

    fn refused<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
    ) -> BoxFuture<'a, CommandError> {
        Box::pin(async move {
            let asked = request
                .form
                .parse_required("identifier", |s| s.parse::<Identifier>())
                .ok();
            refuse(ctx, NODE, &request, &series_scopes(), asked).await
        })
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            instrumented(ctx, NODE, &request, async |log| {
                let (identifier, window) = parse(&request.form)?;
                let paging = wants_pages(&request.form)?;
                let data = DataRequest {
                    requester: request.requester.clone(),
                    identifier,
                    window,
                    meta: MetaForm::Flat,
                    period_fields: PERIOD_FIELDS,
                    deadline: request.deadline,
                    class: crate::upstream::Class::Interactive,
                    max_payload: None,
                };
                let presentation = Presentation {
                    title: "Get history",
                    label: format!("Get {identifier}"),
                    paging,
                };
                answer(ctx, &request, data, log, presentation).await
            })
            .await
        })
    }

    fn next<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
        more: Continuation,
    ) -> CommandFuture<'a> {
        Box::pin(next_stage(ctx, NODE, request, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn form(fields: &[(&str, &str)]) -> SubmittedForm {
        let inner: String = fields
            .iter()
            .map(|(k, v)| {
                format!(r#"<field var="{k}" type="text-single"><value>{v}</value></field>"#)
            })
            .collect();
        let element: Element = format!(r#"<x xmlns="jabber:x:data" type="submit">{inner}</x>"#)
            .parse()
            .unwrap();
        SubmittedForm::new(DataForm::try_from(element).unwrap()).unwrap()
    }

    const ID: &str = "urn:dev:prm:30001610071843_consumption/power/active/raw";

    #[test]
    fn reads_the_quoalise_client_fields() {
        let (identifier, window) = parse(&form(&[
            ("identifier", ID),
            ("start_time", "2020-03-01T00:00:00+01:00"),
            ("end_time", "2020-03-08T00:00:00+01:00"),
        ]))
        .unwrap();
        assert_eq!(identifier.to_string(), ID);
        assert_eq!(window.end - window.start, 7 * 86400);
        assert_eq!(window.start, 1583017200);
    }

    #[test]
    fn missing_times_mean_the_last_whole_day() {
        let (_, window) = parse(&form(&[("identifier", ID)])).unwrap();
        let length = window.end - window.start;
        assert!((23 * 3600..=25 * 3600).contains(&length), "{length}");
        assert_eq!(window.end, default_end().unwrap().as_second());
        let (_, window) = parse(&form(&[
            ("identifier", ID),
            ("end_time", "2026-03-30T00:00:00+02:00"),
        ]))
        .unwrap();
        // The day before is the 23-hour spring-forward day.
        assert_eq!(window.end - window.start, 23 * 3600);
    }

    #[test]
    fn errors_name_the_field_and_reuse_the_parsers_messages() {
        let err = |fields: &[(&str, &str)]| parse(&form(fields)).unwrap_err().to_string();
        assert_eq!(
            err(&[(
                "identifier",
                "urn:dev:prm:3000161007184_consumption/power/active/raw"
            )]),
            "field 'identifier': invalid PRM \"3000161007184\" in identifier: a PRM has 14 digits, this one has 13 characters"
        );
        let text = err(&[("identifier", ID), ("start_time", "2020-03-01T00:00:00")]);
        assert!(
            text.starts_with("field 'start_time': invalid date-time"),
            "{text}"
        );
        assert!(text.contains("no offset"), "{text}");
        let text = err(&[
            ("identifier", ID),
            ("start_time", "2020-03-08T00:00:00+01:00"),
            ("end_time", "2020-03-01T00:00:00+01:00"),
        ]);
        assert!(
            text.starts_with("fields start_time/end_time: the period is empty"),
            "{text}"
        );
        assert_eq!(err(&[]), "missing required field 'identifier'");
        // The legacy commands' record names are not identifiers.
        assert!(
            err(&[("identifier", "urn:dev:prm:30001610071843_consumption_load")])
                .starts_with("field 'identifier': unknown series \"consumption_load\""),
        );
    }
}

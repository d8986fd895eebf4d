//! The two subscription commands, as the Quoalise client sends them: one field
//! `identifier` (`urn:dev:prm:<PRM>_<series>`), the same form for both.
//!
//! `subscribe` is authorised like `get_history` (a grant of the configuration
//! or a consent of the requester covering the PRM), recorded in the audit
//! trail, and stored: from the next publication on, the subscriber is sent each
//! day's data by [`crate::push::Scheduler`]. `unsubscribe` ends the requester's
//! subscription. It needs no consent (anyone may stop receiving data);
//! unsubscribing from what one is not subscribed to succeeds with a note, so
//! that a client may always call it.
//!
//! Also here: the lines `list_usage_points` shows for subscriptions
//! ([`with_subscriptions`]).

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::common::{instrumented, refuse, sees_any_series, series_scopes};
use crate::agent::audit::{basis_of, record_decision};
use crate::agent::authorise::{Grant, Platform, authorise, platform_for};
use crate::agent::context::AgentContext;
use crate::logging::RequestLog;
use crate::quoalise::{Identifier, SERIES_NAMES};
use crate::store::{SubscribeError, Subscription, now_seconds};
use crate::time::first_day;
use crate::xmpp::forms::{fixed, text_single};
use crate::xmpp::{
    AdHocCommand, BoxFuture, CommandError, CommandFuture, FieldExt, FormBuilder, Note, Outcome,
    Request, SubmittedForm,
};

const SUBSCRIBE: &str = "subscribe";
const UNSUBSCRIBE: &str = "unsubscribe";

/// The `subscribe` command.
pub struct Subscribe;

/// The form of `subscribe` and `unsubscribe`: one identifier.
fn identifier_form(title: &str, instructions: &str) -> DataForm {
    FormBuilder::form(title)
        .instructions(format!(
            "{instructions} Series: {}.",
            SERIES_NAMES.join(", ")
        ))
        .field(
            text_single("identifier", "Identifier")
                .required()
                .desc("urn:dev:prm:<14-digit PRM>_<series>"),
        )
        .build()
}

/// Reads the `identifier` field; errors name it.
pub fn parse_identifier(form: &SubmittedForm) -> Result<Identifier, CommandError> {
    Ok(form.parse_required("identifier", |s| s.trim().parse::<Identifier>())?)
}

/// A result form whose fixed `result` field, labelled `label`, says "Success".
fn success(title: &str, label: &str) -> DataForm {
    FormBuilder::result(title)
        .field(fixed(Some("result"), Some(label), "Success"))
        .build()
}

impl AdHocCommand<AgentContext> for Subscribe {
    fn node(&self) -> &str {
        SUBSCRIBE
    }

    fn name(&self) -> &str {
        "Subscribe"
    }

    fn form(&self) -> DataForm {
        identifier_form(
            "Subscribe",
            "Receive each day's data of one series as a message, once Enedis publishes it.",
        )
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
            let asked = parse_identifier(&request.form).ok();
            refuse(ctx, SUBSCRIBE, &request, &series_scopes(), asked).await
        })
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            instrumented(ctx, SUBSCRIBE, &request, async |log| {
                let identifier = parse_identifier(&request.form)?;
                log.prm(&identifier.prm);
                subscribe(ctx, log, &request.requester, identifier).await
            })
            .await
        })
    }
}

async fn subscribe(
    ctx: &AgentContext,
    log: &RequestLog,
    requester: &BareJid,
    identifier: Identifier,
) -> Result<Outcome, CommandError> {
    let settings = ctx.settings();
    let peer = requester.to_string();
    let prm = identifier.prm;
    let series = identifier.series;
    let generation = ctx.upstream.generation();
    let platform = platform_for(ctx, &Grant::Configured, prm).await?;
    match platform {
        // An agent without [enedis]: no daily push could ever be read.
        Platform::DataConnect if !settings.has_data_connect() => {
            return Err(CommandError::FeatureNotImplemented(
                crate::upstream::WithoutDataConnect::refusal(prm).to_string(),
            ));
        }
        Platform::DataConnect if !crate::upstream::serves(generation, series) => {
            return Err(CommandError::bad_request(format!(
                "field identifier: {}",
                crate::upstream::client::unsupported(generation, series)
            )));
        }
        Platform::Sge if series.is_derived() => {
            return Err(CommandError::bad_request(format!(
                "field identifier: {series} is derived from the indexes of Enedis Data Connect 2026; this PRM is read through Enedis SGE: subscribe to its class indexes (…/energy/active/index/…)"
            )));
        }
        _ => {}
    }
    let grant = match authorise(ctx, &settings, requester, identifier).await {
        Ok(grant) => grant,
        Err(e) => {
            let _ = record_decision(ctx, log, &peer, prm, series, Err(&e)).await;
            return Err(e);
        }
    };
    let basis = basis_of(&grant);
    record_decision(ctx, log, &peer, prm, series, Ok(basis)).await?;
    let now = jiff::Timestamp::now();
    // The energy per class comes a day after the other series.
    let first = first_day(now, settings.config.subscriptions.publish_time);
    let first = crate::time::add_days(first, -series.lag_days()).unwrap_or(first);
    let delivered_through = crate::time::add_days(first, -1).unwrap_or(first);
    let stored = {
        let peer = peer.clone();
        ctx.store
            .call(move |s| {
                Ok(s.subscribe(&peer, &identifier, basis, delivered_through, now_seconds()))
            })
            .await
    };
    let (sub, is_new) = match stored {
        Ok(Ok(done)) => done,
        Ok(Err(SubscribeError::NoBasis(why))) => {
            return Err(CommandError::not_authorized(format!(
                "cannot subscribe to {identifier}: {why}"
            )));
        }
        Ok(Err(SubscribeError::Store(e))) | Err(e) => {
            tracing::error!(error = %e, "cannot store a subscription");
            return Err(CommandError::internal(
                "the agent cannot store the subscription; its operator can find details in its log",
            ));
        }
    };
    let publish = settings.config.subscriptions.publish_time;
    if is_new {
        // Send the latest published day now.
        ctx.pushes.notify_one();
    }
    let note = if is_new {
        tracing::info!(subscription = sub.id, %peer, %identifier, "subscribed");
        format!(
            "Subscribed to {identifier}: each day's data is sent as a message once Enedis publishes it (from {} Paris time), starting with {}.",
            publish.strftime("%H:%M"),
            crate::time::add_days(sub.delivered_through, 1).unwrap_or(sub.delivered_through)
        )
    } else {
        format!("Already subscribed to {identifier}.")
    };
    Ok(Outcome::new()
        .with_form(success("Subscribe", &format!("Subscribe {identifier}")))
        .with_note(Note::info(note)))
}

/// `form` (the answer of `list_usage_points`) with the requester's subscriptions:
/// a `subscriptions` field listing their identifiers, and a `subscribed: …` line in
/// the field of each PRM.
pub fn with_subscriptions(mut form: DataForm, subs: &[Subscription]) -> DataForm {
    if subs.is_empty() {
        return form;
    }
    for field in &mut form.fields {
        let Some(var) = field.var.as_deref() else {
            continue;
        };
        let series: Vec<String> = subs
            .iter()
            .filter(|s| s.identifier.prm.as_str() == var)
            .map(|s| s.identifier.series.to_string())
            .collect();
        if !series.is_empty() {
            field
                .values
                .push(format!("subscribed: {}", series.join(", ")));
        }
    }
    let lines: Vec<String> = subs.iter().map(|s| s.identifier.to_string()).collect();
    form.fields.push(
        crate::xmpp::forms::text_multi("subscriptions", "Your subscriptions")
            .lines(&lines.join("\n")),
    );
    form
}

/// The subscriptions of `requester` (none when the store cannot be read: the list
/// is informative, the failure is logged).
pub async fn subscriptions_of(ctx: &AgentContext, requester: &BareJid) -> Vec<Subscription> {
    let peer = requester.to_string();
    match ctx.store.call_now(move |s| s.subscriptions_of(&peer)).await {
        Ok(subs) => subs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read subscriptions");
            Vec::new()
        }
    }
}

/// The `unsubscribe` command.
pub struct Unsubscribe;

impl AdHocCommand<AgentContext> for Unsubscribe {
    fn node(&self) -> &str {
        UNSUBSCRIBE
    }

    fn name(&self) -> &str {
        "Unsubscribe"
    }

    fn form(&self) -> DataForm {
        identifier_form("Unsubscribe", "Stop receiving the data of one series.")
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            instrumented(ctx, UNSUBSCRIBE, &request, async |log| {
                    let identifier = parse_identifier(&request.form)?;
                    log.prm(&identifier.prm);
                    let peer = request.requester.to_string();
                    let removed = ctx
                        .store
                        .call(move |s| s.unsubscribe(&peer, &identifier))
                        .await
                        .map_err(|e| {
                            tracing::error!(error = %e, "cannot remove a subscription");
                            CommandError::internal(
                                "the agent cannot update its subscriptions; its operator can find details in its log",
                            )
                        })?;
                    let note = if removed {
                        tracing::info!(peer = %request.requester, %identifier, "unsubscribed");
                        format!("Unsubscribed from {identifier}.")
                    } else {
                        format!("There was no subscription to {identifier}.")
                    };
                    Ok(Outcome::new()
                        .with_form(success("Unsubscribe", &format!("Unsubscribe {identifier}")))
                        .with_note(Note::info(note)))
            })
            .await
        })
    }
}

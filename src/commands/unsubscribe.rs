//! `unsubscribe`, as the Quoalise client sends it: one field `identifier`. Ends the
//! requester's subscription to it. Needs no consent (anyone may stop receiving
//! data); unsubscribing from what one is not subscribed to succeeds with a note,
//! so that a client may always call it.

use tracing::Instrument;
use xmpp_parsers::data_forms::DataForm;

use super::common::{begin, finish};
use super::subscribe::{identifier_form, parse_identifier, success};
use crate::agent::context::AgentContext;
use crate::xmpp::{AdHocCommand, BoxFuture, CommandError, Note, Outcome, Request};

const NODE: &str = "unsubscribe";

/// The `unsubscribe` command.
pub struct Unsubscribe;

impl AdHocCommand<AgentContext> for Unsubscribe {
    fn node(&self) -> &str {
        NODE
    }

    fn name(&self) -> &str {
        "Unsubscribe"
    }

    fn form(&self) -> DataForm {
        identifier_form("Unsubscribe", "Stop receiving the data of one series.")
    }

    fn execute<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
    ) -> BoxFuture<'a, Result<Outcome, CommandError>> {
        let (mut log, span) = begin(&request);
        Box::pin(
            async move {
                let result = async {
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
                }
                .await;
                finish(ctx, NODE, log, &result);
                result
            }
            .instrument(span),
        )
    }
}

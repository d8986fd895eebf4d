//! `get_authorize_uri` (first Data Connect proxy): a peer registers what consumers
//! are shown (`name`, `logo_url` https only, `description` HTML possibly split over
//! several `<value/>` lines) and gets back `authorize_uri`, the agent's consent page
//! for it: `<web.public_url>/authorize?id=<description id>`.
//!
//! The description is stored owned by the asking peer, so consents given through
//! that page belong to it. The id is random (131 bits): the page shows nothing but
//! that public description. Asking again with the same fields gives the same URI.
//!
//! Gajim/Psi users first get a form prefilled with their latest description (or
//! their JID's local part as the name); programmatic peers send the filled form in
//! the first `execute`.

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::common::instrumented;
use crate::agent::context::AgentContext;
use crate::store::oauth::ConsentDescription;
use crate::web::{DescriptionError, DescriptionInput, register};
use crate::xmpp::forms::{text_multi, text_single};
use crate::xmpp::{
    AdHocCommand, BoxFuture, CommandError, CommandFuture, FieldExt, FormBuilder, Outcome, Request,
};

const NODE: &str = "get_authorize_uri";

/// The `get_authorize_uri` command.
pub struct GetAuthorizeUri;

/// The form, prefilled from `latest` (the requester's latest description) or with
/// `default_name`.
fn form(latest: Option<&ConsentDescription>, default_name: &str) -> DataForm {
    let mut name = text_single("name", "Application name (shown to consumers)").required();
    let mut logo = text_single("logo_url", "Logo URL (https only, optional)");
    let mut description = text_multi(
        "description",
        "Description: who you are and what the data is used for (HTML: paragraphs and links)",
    );
    match latest {
        Some(d) => {
            name = name.value(&d.name);
            if let Some(url) = &d.logo_url {
                logo = logo.value(url);
            }
            description = description.lines(&d.description);
        }
        None => name = name.value(default_name),
    }
    FormBuilder::form("Get authorize URI")
        .instructions(
            "Describe your application to the consumers whose consent you collect. The \
             answer is the address of the agent's consent page; send consumers there \
             (optional parameters: duration=P1Y, redirect_uri=one of your configured \
             redirect URIs, state=your own reference).",
        )
        .field(name)
        .field(logo)
        .field(description)
        .build()
}

/// The result: one text-single field `authorize_uri`.
pub fn result_form(uri: &str) -> DataForm {
    FormBuilder::result("Authorize URI")
        .field(text_single("authorize_uri", "Adresse pour recueillir le consentement").value(uri))
        .build()
}

impl AdHocCommand<AgentContext> for GetAuthorizeUri {
    fn node(&self) -> &str {
        NODE
    }

    fn name(&self) -> &str {
        "Get authorize URI"
    }

    fn form(&self) -> DataForm {
        form(None, "")
    }

    fn form_for<'a>(
        &'a self,
        ctx: &'a AgentContext,
        requester: &'a BareJid,
    ) -> CommandFuture<'a, DataForm> {
        Box::pin(async move {
            let owner = requester.to_string();
            let latest = ctx
                .store
                .call(move |s| s.descriptions_of(&owner))
                .await
                .map_err(|e| CommandError::internal(e.to_string()))?
                .pop();
            let default_name = requester.node().map(|n| n.to_string()).unwrap_or_default();
            Ok(form(latest.as_ref(), &default_name))
        })
    }

    /// Only an agent reading Data Connect collects consents: without `[enedis]`,
    /// disco does not list the command and a request for it is refused.
    fn allowed(&self, ctx: &AgentContext, _requester: &BareJid) -> bool {
        ctx.settings().has_data_connect()
    }

    fn refused<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
    ) -> BoxFuture<'a, CommandError> {
        Box::pin(async move {
            // Logged and counted like any request (the refusal is the outcome).
            match instrumented(ctx, NODE, &request, async |_| Err(no_data_connect())).await {
                Err(e) => e,
                Ok(_) => no_data_connect(),
            }
        })
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            instrumented(ctx, NODE, &request, async |_| run(ctx, &request).await).await
        })
    }
}

/// The refusal of an agent without `[enedis]`: `feature-not-implemented` (the
/// agent has no Data Connect consent flow; asking again changes nothing).
fn no_data_connect() -> CommandError {
    CommandError::FeatureNotImplemented(format!(
        "{}: it collects no consent through Enedis Data Connect; the meters it reads \
         through Enedis SGE need a consent its operator declares",
        crate::config::NoDataConnect
    ))
}

async fn run(ctx: &AgentContext, request: &Request) -> Result<Outcome, CommandError> {
    if !ctx.settings().has_data_connect() {
        return Err(no_data_connect());
    }
    let input = DescriptionInput {
        name: request.form.required("name")?,
        logo_url: request.form.optional("logo_url")?,
        description: request.form.text_multi("description").unwrap_or_default(),
    };
    let public_url = ctx.settings().config.web.public_url.clone();
    let owner = request.requester.to_string();
    let registered = ctx
        .store
        .call(move |s| Ok(register(s, &public_url, &owner, &input)))
        .await
        .map_err(|e| CommandError::internal(e.to_string()))?;
    match registered {
        Ok((description, uri)) => {
            tracing::info!(description = %description.id, "consent page description registered");
            Ok(Outcome::new().with_form(result_form(&uri)))
        }
        Err(e @ DescriptionError::Invalid { .. }) => Err(CommandError::bad_request(e.to_string())),
        Err(DescriptionError::Store(e)) => Err(CommandError::internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::test_util::assert_xml_eq;
    use minidom::Element;

    #[test]
    fn the_result_is_one_text_single_field() {
        assert_xml_eq(
            &Element::from(result_form("https://agent.example.org/dc/authorize?id=abc")),
            concat!(
                r#"<x xmlns="jabber:x:data" type="result"><title>Authorize URI</title>"#,
                r#"<field var="authorize_uri" label="Adresse pour recueillir le consentement">"#,
                r#"<value>https://agent.example.org/dc/authorize?id=abc</value></field></x>"#
            ),
        );
    }

    #[test]
    fn the_form_is_prefilled_with_the_latest_description() {
        let latest = ConsentDescription {
            id: "x".into(),
            owner: "app@example.org".into(),
            name: "Elec Expert".into(),
            logo_url: Some("https://example.fr/logo.png".into()),
            description: "<p>a</p>\n<p>b</p>".into(),
            created_at: 0,
        };
        let values = |form: &DataForm, var: &str| {
            form.fields
                .iter()
                .find(|f| f.var.as_deref() == Some(var))
                .map(|f| f.values.clone())
                .unwrap()
        };
        let prefilled = form(Some(&latest), "app");
        assert_eq!(values(&prefilled, "name"), ["Elec Expert"]);
        assert_eq!(
            values(&prefilled, "logo_url"),
            ["https://example.fr/logo.png"]
        );
        assert_eq!(values(&prefilled, "description"), ["<p>a</p>", "<p>b</p>"]);
        let fresh = form(None, "app");
        assert_eq!(values(&fresh, "name"), ["app"]);
        assert!(values(&fresh, "description").is_empty());
    }
}

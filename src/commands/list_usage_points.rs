//! `list_usage_points`: the PRMs the requesting peer may read now (from its
//! `usage_points` in the configuration and from the valid consents it owns in
//! the store), with the series that may be asked and until when.
//!
//! xmpp-parsers' data forms have no `<reported>`/`<item>` tables, so the
//! answer is a result form of readable fields, which Gajim and Psi show as is
//! and a program reads as easily:
//!
//! - `usage_points` (text-multi): one PRM per value;
//! - `scopes` (text-multi): the peer's data scopes (`[[peers]] scopes`), one per
//!   value, none when it has none;
//! - one text-multi field per PRM, `var` = the PRM, with lines
//!   `series: …` (the series its scopes let it read, comma-separated; nothing
//!   after `series:` when none), `access: …`, `valid until: …` (and
//!   `subscribed: …`);
//! - `subscriptions` (text-multi), when the peer has any: one identifier per value.

use xmpp_parsers::data_forms::DataForm;

use super::common::instrumented;
use super::subscription::{subscriptions_of, with_subscriptions};
use crate::agent::authorise::{Platform, Readable, readable};
use crate::agent::context::AgentContext;
use crate::quoalise::{Scopes, Series};
use crate::store::consents::fmt_instant;
use crate::xmpp::forms::text_multi;
use crate::xmpp::{AdHocCommand, CommandFuture, FieldExt, FormBuilder, Outcome, Request};

const NODE: &str = "list_usage_points";

/// The `list_usage_points` command.
pub struct ListUsagePoints;

/// The result form listing `readable` to a peer with these `scopes`.
/// `indexes`: whether the API generation serves the index series.
/// `data_connect`: whether the agent reads Data Connect (without it, SGE only, a
/// PRM without a declared consent cannot be read at all).
pub fn usage_points_form(
    readable: &[Readable],
    scopes: Scopes,
    indexes: bool,
    data_connect: bool,
) -> DataForm {
    let instructions = match readable.len() {
        0 => "You may read no usage point yet: ask the agent's operator, or a consumer's \
              consent through get_authorize_uri."
            .to_owned(),
        1 => "You may read 1 usage point.".to_owned(),
        n => format!("You may read {n} usage points."),
    };
    let series = scopes.series_names(indexes);
    let series = if series.is_empty() {
        "series:".to_owned()
    } else {
        format!("series: {}", series.join(", "))
    };
    // SGE serves indexes at every segment, and the corrected and reactive curves.
    let mut on_sge = scopes.series_names(true);
    on_sge.extend(
        Series::WHOLE_METER
            .into_iter()
            .filter(|s| s.is_sge_only() && scopes.allows(*s))
            .filter_map(Series::fixed_name),
    );
    let sge_series = format!("series: {}", on_sge.join(", "));
    let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let mut form = FormBuilder::result("Usage points")
        .instructions(instructions)
        .field(
            text_multi("usage_points", "Usage points you may read").lines(
                &readable
                    .iter()
                    .map(|r| r.prm.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        )
        .field(text_multi("scopes", "Your data scopes").lines(&scope_names.join("\n")));
    for r in readable {
        let mut lines = vec![match r.platform {
            Platform::DataConnect => series.clone(),
            Platform::Sge => sge_series.clone(),
        }];
        let mut access = Vec::new();
        if r.configured {
            access.push("granted by the agent's configuration".to_owned());
        }
        for c in &r.consents {
            match &c.sge {
                Some(declared) => access.push(format!(
                    "consent {} (declared to Enedis SGE, mandate {})",
                    c.id, declared.mandate
                )),
                None => access.push(format!(
                    "consent {} (Enedis API {})",
                    c.id,
                    c.generation.as_str()
                )),
            }
        }
        lines.push(format!("access: {}", access.join("; ")));
        lines.push(format!(
            "valid until: {}",
            r.valid_until()
                .map(fmt_instant)
                .unwrap_or_else(|| "no end".to_owned())
        ));
        lines.push(match r.platform {
            Platform::DataConnect if !data_connect => "read through: nothing yet: this agent \
                reads no Enedis Data Connect, and no consent to Enedis SGE is declared for it"
                .to_owned(),
            platform => format!("read through: {}", platform.name()),
        });
        form = form
            .field(text_multi(r.prm.as_str(), &format!("PRM {}", r.prm)).lines(&lines.join("\n")));
    }
    form.build()
}

impl AdHocCommand<AgentContext> for ListUsagePoints {
    fn node(&self) -> &str {
        NODE
    }

    fn name(&self) -> &str {
        "List usage points"
    }

    fn form(&self) -> DataForm {
        FormBuilder::form("List usage points").build()
    }

    fn needs_input(&self) -> bool {
        false
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            instrumented(ctx, NODE, &request, async |_| {
                let settings = ctx.settings();
                let subs = subscriptions_of(ctx, &request.requester).await;
                let list = readable(ctx, &settings, &request.requester).await?;
                let form = usage_points_form(
                    &list,
                    settings.scopes(&request.requester),
                    settings.serves_indexes(),
                    settings.config.has_data_connect(),
                );
                Ok(Outcome::new().with_form(with_subscriptions(form, &subs)))
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiGeneration;
    use crate::quoalise::Scope;
    use crate::store::{Consent, ConsentState};

    fn values(form: &DataForm, var: &str) -> Vec<String> {
        form.fields
            .iter()
            .find(|f| f.var.as_deref() == Some(var))
            .map(|f| f.values.clone())
            .unwrap_or_default()
    }

    #[test]
    fn lists_each_prm_with_series_access_and_validity() {
        let configured = Readable {
            prm: "22516914714270".parse().unwrap(),
            configured: true,
            platform: crate::agent::authorise::Platform::DataConnect,
            consents: Vec::new(),
        };
        let consented = Readable {
            prm: "11453290002823".parse().unwrap(),
            configured: false,
            platform: crate::agent::authorise::Platform::DataConnect,
            consents: vec![Consent {
                id: 4,
                generation: ApiGeneration::Api2026,
                owner: "app@example.org".into(),
                prms: vec!["11453290002823".parse().unwrap()],
                autorisation_id: Some(100000002),
                valid_from: 1_700_000_000,
                valid_until: 1_800_000_000,
                state: ConsentState::Active,
                created_at: 1_700_000_000,
                updated_at: 1_700_000_000,
                has_refresh_token: false,
                sge: None,
            }],
        };
        let form = usage_points_form(
            &[consented.clone(), configured.clone()],
            Scopes::default_for_peers(),
            true,
            true,
        );
        assert_eq!(
            values(&form, "usage_points"),
            ["11453290002823", "22516914714270"]
        );
        assert_eq!(
            values(&form, "scopes"),
            ["load_curve", "daily", "max_power", "index", "contract"]
        );
        assert_eq!(
            form.instructions.as_deref(),
            Some("You may read 2 usage points.")
        );
        let lines = values(&form, "22516914714270");
        assert!(
            lines[0].starts_with("series: consumption/power/active/raw, "),
            "{lines:?}"
        );
        assert_eq!(lines[1], "access: granted by the agent's configuration");
        assert_eq!(lines[2], "valid until: no end");
        let lines = values(&form, "11453290002823");
        assert_eq!(lines[1], "access: consent 4 (Enedis API 2026)");
        assert_eq!(lines[2], "valid until: 2027-01-15T08:00:00Z");
        assert_eq!(lines[3], "read through: Enedis Data Connect");

        // A PRM read through SGE lists SGE's own series and says so.
        let mut declared = consented.clone();
        declared.platform = Platform::Sge;
        declared.consents[0].sge = Some(crate::store::SgeDeclaration {
            holder: crate::store::SgeHolder::Company {
                name: "Énergie partagée".into(),
            },
            mandate: "MANDAT-2026-17".into(),
        });
        let form = usage_points_form(&[declared], Scopes::default_for_peers(), false, true);
        let lines = values(&form, "11453290002823");
        assert!(
            lines[0].contains("consumption/power/active/corrected")
                && lines[0].contains("consumption/power/inductive/raw")
                && lines[0].contains("consumption/energy/active/index"),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            "access: consent 4 (declared to Enedis SGE, mandate MANDAT-2026-17)"
        );
        assert_eq!(lines[3], "read through: Enedis SGE");

        // An agent that reads SGE only cannot read a granted PRM without a
        // declared consent, and says so.
        let form = usage_points_form(
            std::slice::from_ref(&configured),
            Scopes::default_for_peers(),
            true,
            false,
        );
        let lines = values(&form, "22516914714270");
        assert!(
            lines[3]
                .starts_with("read through: nothing yet: this agent reads no Enedis Data Connect"),
            "{lines:?}"
        );

        // Narrower scopes: only their series, for a grant and a consent alike.
        let daily = Scopes::from_iter([Scope::Daily, Scope::Contract]);
        let form = usage_points_form(&[consented, configured], daily, true, true);
        assert_eq!(values(&form, "scopes"), ["daily", "contract"]);
        for prm in ["11453290002823", "22516914714270"] {
            assert_eq!(
                values(&form, prm)[0],
                "series: consumption/energy/active/daily, production/energy/active/daily"
            );
        }
        let form = usage_points_form(
            &[Readable {
                prm: "22516914714270".parse().unwrap(),
                configured: true,
                platform: crate::agent::authorise::Platform::DataConnect,
                consents: Vec::new(),
            }],
            Scopes::NONE,
            true,
            true,
        );
        assert!(values(&form, "scopes").is_empty());
        assert_eq!(values(&form, "22516914714270")[0], "series:");
    }

    #[test]
    fn an_empty_list_says_how_to_get_one() {
        let form = usage_points_form(&[], Scopes::default_for_peers(), true, true);
        assert!(values(&form, "usage_points").is_empty());
        assert!(form.instructions.unwrap().contains("get_authorize_uri"));
    }
}

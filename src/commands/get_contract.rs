//! `get_contract`: the contract and technical data of a usage point the peer may
//! read (segment, subscribed power, tariff option, off-peak hours, meter type,
//! services level, dates, and for v5 the meter's address), from Enedis' contract
//! APIs (2026 and v5; v3 and v4 have none: `feature-not-implemented`).
//!
//! Field `usage_point_id` (the PRM; the peer's first PRM by default in the form
//! Gajim and Psi users get). The answer carries the same data twice:
//!
//! - `<contract xmlns="urn:quoalise:0" …>` for programs (`schemas/contract.rng`,
//!   [`crate::quoalise::contract`]);
//! - a result form of flat fields for people ([`contract_form`]): only what
//!   Enedis gave, one field each;
//!
//! and one `warn` note per part Enedis would not give (e.g. `comptage_auto`
//! answering 403 `900908`: the agent's application is not subscribed to it).

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::common::{instrumented, refuse_named};
use super::data::prm_hint;
use crate::agent::authorise::{Readable, readable};
use crate::agent::context::AgentContext;
use crate::agent::contract::{PRM_FIELD, fetch_contract};
use crate::quoalise::contract::{Changed, Coded, Contract};
use crate::quoalise::{Direction, Prm, Scope};
use crate::store::Subject;
use crate::store::consents::fmt_instant;
use crate::xmpp::forms::{text_multi, text_single};
use crate::xmpp::{
    AdHocCommand, BoxFuture, CommandError, CommandFuture, FieldExt, FormBuilder, Note, Outcome,
    Request,
};

/// The command's node.
pub const NODE: &str = "get_contract";
const TITLE: &str = "Get contract";

/// The `get_contract` command.
pub struct GetContract;

/// The form, with the first PRM `readable` lists as default.
pub fn contract_request_form(readable: &[Readable]) -> DataForm {
    let mut prm = text_single(PRM_FIELD, "Usage point (PRM, 14 digits)")
        .required()
        .desc(&format!(
            "Usage points you may read: {}",
            prm_hint(readable)
        ));
    if let Some(first) = readable.first() {
        prm = prm.value(first.prm.as_str());
    }
    FormBuilder::form(TITLE)
        .instructions(
            "The usage point's contract and meter as Enedis describes them: segment, \
             subscribed power, tariff option, off-peak hours, meter type, services level, \
             dates (and its address with Enedis API v5).",
        )
        .field(prm)
        .build()
}

/// The result form: the contract as flat fields, only those Enedis gave.
pub fn contract_form(contract: &Contract) -> DataForm {
    let mut fields: Vec<(&str, &str, String)> = vec![
        (
            "usage_point_id",
            "Usage point (PRM)",
            contract.prm.to_string(),
        ),
        ("generation", "Enedis API", contract.generation.clone()),
        (
            "fetched",
            "Read from Enedis at (UTC)",
            fmt_instant(contract.fetched),
        ),
    ];
    let mut add = |var, label, value: Option<String>| {
        if let Some(value) = value {
            fields.push((var, label, value));
        }
    };
    add(
        "segment",
        "Segment",
        (!contract.segments.is_empty()).then(|| contract.segments.join(", ")),
    );
    add(
        "subscribed_power",
        "Subscribed power",
        contract
            .subscribed_power
            .as_ref()
            .map(|p| format!("{} {}", p.value, p.unit)),
    );
    let coded = |c: &Option<Coded>| c.as_ref().map(Coded::text);
    add(
        "tariff_option",
        "Tariff option",
        coded(&contract.tariff_option),
    );
    add(
        "off_peak_hours",
        "Off-peak hours (as Enedis writes them)",
        contract.off_peak_hours.as_ref().map(|h| h.raw.clone()),
    );
    add(
        "off_peak_ranges",
        "Off-peak hours (Paris time)",
        contract
            .off_peak_hours
            .as_ref()
            .filter(|h| !h.ranges.is_empty())
            .map(|h| {
                h.ranges
                    .iter()
                    .map(|r| r.text())
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
    );
    add("meter_type", "Meter type", coded(&contract.meter_type));
    add(
        "services_level",
        "Services level",
        coded(&contract.services_level),
    );
    add(
        "contract_start",
        "Contract start",
        contract.contract_start.map(|d| d.to_string()),
    );
    let activation = |d| contract.activation(d).map(|d| d.to_string());
    add(
        "consumption_activation",
        "Last activation (consumption)",
        activation(Some(Direction::Consumption)),
    );
    add(
        "production_activation",
        "Last activation (production)",
        activation(Some(Direction::Production)),
    );
    add("activation", "Last activation", activation(None));
    add(
        "subscribed_power_changed",
        "Subscribed power last changed",
        contract
            .last_change(Changed::SubscribedPower)
            .map(|d| d.to_string()),
    );
    add(
        "tariff_option_changed",
        "Tariff option last changed",
        contract
            .last_change(Changed::TariffOption)
            .map(|d| d.to_string()),
    );
    if let Some(address) = &contract.address {
        for (name, value) in address.parts() {
            let (var, label) = match name {
                "street" => ("address_street", "Address: street"),
                "locality" => ("address_locality", "Address: locality"),
                "postal-code" => ("address_postal_code", "Address: postal code"),
                "city" => ("address_city", "Address: city"),
                "insee-code" => ("address_insee_code", "Address: INSEE code"),
                _ => ("address_country", "Address: country"),
            };
            add(var, label, value.map(str::to_owned));
        }
    }
    let mut form = FormBuilder::result(TITLE).instructions(format!(
        "Contract of PRM {} (Enedis API {})",
        contract.prm, contract.generation
    ));
    for (var, label, value) in fields {
        form = form.field(text_single(var, label).value(&value));
    }
    if !contract.unavailable.is_empty() {
        let lines: Vec<String> = contract.unavailable.iter().map(unavailable_text).collect();
        form = form.field(text_multi("unavailable", "Not available").lines(&lines.join("\n")));
    }
    form.build()
}

/// `off-peak-hours, meter-type: the agent's Enedis application is not
/// subscribed to comptage_auto/v1 (Enedis 900908)`.
pub fn unavailable_text(u: &crate::quoalise::contract::Unavailable) -> String {
    let code = u
        .code
        .as_deref()
        .map(|c| format!(" (Enedis {c})"))
        .unwrap_or_default();
    format!("{}: {}{code}", u.fields.join(", "), u.reason)
}

impl AdHocCommand<AgentContext> for GetContract {
    fn node(&self) -> &str {
        NODE
    }

    fn name(&self) -> &str {
        TITLE
    }

    fn form(&self) -> DataForm {
        contract_request_form(&[])
    }

    /// Only for a peer whose scopes include `contract`.
    fn allowed(&self, ctx: &AgentContext, requester: &BareJid) -> bool {
        ctx.settings().scopes(requester).contains(Scope::Contract)
    }

    fn refused<'a>(
        &'a self,
        ctx: &'a AgentContext,
        request: Request,
    ) -> BoxFuture<'a, CommandError> {
        Box::pin(async move {
            // On record with the PRM the form named, as a data command's refusal.
            let named = request
                .form
                .parse_required(PRM_FIELD, |s| s.parse::<Prm>())
                .ok()
                .map(|prm| (prm, Subject::Contract));
            refuse_named(ctx, NODE, &request, &[Scope::Contract], None, named).await
        })
    }

    fn form_for<'a>(
        &'a self,
        ctx: &'a AgentContext,
        requester: &'a BareJid,
    ) -> CommandFuture<'a, DataForm> {
        Box::pin(async move {
            let settings = ctx.settings();
            let readable = readable(ctx, &settings, requester).await?;
            Ok(contract_request_form(&readable))
        })
    }

    fn execute<'a>(&'a self, ctx: &'a AgentContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            instrumented(ctx, NODE, &request, async |log| {
                let prm: Prm = request
                    .form
                    .parse_required(PRM_FIELD, |s| s.parse::<Prm>())?;
                let answer =
                    fetch_contract(ctx, &request.requester, prm, request.deadline, log).await?;
                Ok(outcome(&answer.contract))
            })
            .await
        })
    }
}

/// The answer: the result form, the payload, and a note per unavailable part.
fn outcome(contract: &Contract) -> Outcome {
    let mut outcome = Outcome::new()
        .with_form(contract_form(contract))
        .with_payload(contract.to_element());
    for u in &contract.unavailable {
        outcome = outcome.with_note(Note::warn(format!(
            "not available: {}",
            unavailable_text(u)
        )));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quoalise::contract::{
        Activation, Address, OffPeakHours, Power, TimeRange, Unavailable,
    };
    use jiff::civil::date;

    fn values(form: &DataForm) -> Vec<(String, Vec<String>)> {
        form.fields
            .iter()
            .map(|f| (f.var.clone().unwrap_or_default(), f.values.clone()))
            .collect()
    }

    fn value<'a>(all: &'a [(String, Vec<String>)], var: &str) -> Option<&'a str> {
        all.iter()
            .find(|(v, _)| v == var)
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }

    #[test]
    fn the_result_form_is_flat_and_only_holds_what_enedis_gave() {
        let mut c = Contract::new("22516914714270".parse().unwrap(), "2026", 1_796_550_000);
        c.segments = vec!["C5".into(), "P4".into()];
        c.subscribed_power = Some(Power {
            value: "12".into(),
            unit: "kVA".into(),
        });
        c.tariff_option = Some(Coded::label("Tarif BT<=36kVA"));
        c.activations = vec![Activation {
            direction: Some(Direction::Production),
            date: date(2024, 7, 31),
        }];
        c.unavailable = vec![Unavailable {
            source: "comptage_auto/v1".into(),
            fields: vec!["meter-type".into(), "off-peak-hours".into()],
            code: Some("900908".into()),
            reason: "the agent's Enedis application is not subscribed to comptage_auto/v1".into(),
        }];
        let form = contract_form(&c);
        let all = values(&form);
        assert_eq!(value(&all, "usage_point_id"), Some("22516914714270"));
        assert_eq!(value(&all, "generation"), Some("2026"));
        assert_eq!(value(&all, "segment"), Some("C5, P4"));
        assert_eq!(value(&all, "subscribed_power"), Some("12 kVA"));
        assert_eq!(value(&all, "tariff_option"), Some("Tarif BT<=36kVA"));
        assert_eq!(value(&all, "production_activation"), Some("2024-07-31"));
        for absent in [
            "off_peak_hours",
            "meter_type",
            "consumption_activation",
            "address_street",
        ] {
            assert_eq!(value(&all, absent), None, "{absent}");
        }
        assert_eq!(
            value(&all, "unavailable"),
            Some(
                "meter-type, off-peak-hours: the agent's Enedis application is not subscribed to comptage_auto/v1 (Enedis 900908)"
            )
        );
        let outcome = outcome(&c);
        assert_eq!(outcome.notes.len(), 1);
        assert_eq!(outcome.payloads.len(), 1);
    }

    #[test]
    fn off_peak_ranges_and_the_address_have_their_fields() {
        let mut c = Contract::new("22516914714270".parse().unwrap(), "v5", 0);
        c.off_peak_hours = Some(OffPeakHours {
            raw: "HC (22H00-6H00;12H30-14H30)".into(),
            ranges: vec![
                TimeRange {
                    start: 1320,
                    end: 360,
                },
                TimeRange {
                    start: 750,
                    end: 870,
                },
            ],
        });
        c.address = Some(Address {
            street: Some("12 RUE DES LILAS".into()),
            city: Some("LYON".into()),
            ..Address::default()
        });
        let all = values(&contract_form(&c));
        assert_eq!(
            value(&all, "off_peak_hours"),
            Some("HC (22H00-6H00;12H30-14H30)")
        );
        assert_eq!(
            value(&all, "off_peak_ranges"),
            Some("22:00-06:00, 12:30-14:30")
        );
        assert_eq!(value(&all, "address_street"), Some("12 RUE DES LILAS"));
        assert_eq!(value(&all, "address_city"), Some("LYON"));
        assert_eq!(value(&all, "address_postal_code"), None);
        assert_eq!(value(&all, "unavailable"), None);
    }

    #[test]
    fn the_form_offers_the_first_prm() {
        let readable = Readable {
            prm: "22516914714270".parse().unwrap(),
            configured: true,
            platform: crate::agent::authorise::Platform::DataConnect,
            consents: Vec::new(),
        };
        let form = contract_request_form(&[readable]);
        assert_eq!(form.fields[0].var.as_deref(), Some("usage_point_id"));
        assert_eq!(form.fields[0].values, ["22516914714270"]);
        assert!(form.fields[0].required);
    }
}

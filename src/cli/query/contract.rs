//! `query … get-contract PRM`: the `<contract/>` payload of `get_contract`,
//! printed as readable lines (default) or as the indented XML (`--format xml`).
//! The agent's notes (parts Enedis would not give) go to stderr.

use std::io::Write;

use minidom::Element;

use super::{QueryError, completed_answer, fail, pretty_xml};
use crate::commands::get_contract::unavailable_text;
use crate::quoalise::contract::{Changed, Contract};
use crate::quoalise::{Direction, NS_QUOALISE};
use crate::store::consents::fmt_instant;

/// How `get-contract` prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContractFormat {
    /// One line per field Enedis gave.
    Text,
    /// The `<contract xmlns="urn:quoalise:0">` payload, indented.
    Xml,
}

/// Reads the agent's answer to `get_contract` and prints it to `out`.
pub fn print_contract_answer(
    payload: Element,
    format: ContractFormat,
    out: &mut impl Write,
) -> Result<(), QueryError> {
    let answer = completed_answer(payload)?;
    let element = answer
        .payloads
        .iter()
        .find(|p| p.is("contract", NS_QUOALISE))
        .ok_or_else(|| fail("the agent's answer has no <contract/> payload"))?;
    let contract = Contract::from_element(element).map_err(|e| fail(e.to_string()))?;
    let written = match format {
        ContractFormat::Xml => {
            let text = pretty_xml(element)?;
            writeln!(out, "{text}")
        }
        ContractFormat::Text => write_contract(&contract, out),
    };
    written.map_err(|e| fail(format!("cannot write the output: {e}")))
}

/// The contract as readable lines.
pub fn write_contract(c: &Contract, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "Contract of PRM {} (Enedis API {}, read from Enedis at {})",
        c.prm,
        c.generation,
        fmt_instant(c.fetched)
    )?;
    if !c.segments.is_empty() {
        writeln!(out, "segment: {}", c.segments.join(", "))?;
    }
    if let Some(p) = &c.subscribed_power {
        writeln!(out, "subscribed power: {} {}", p.value, p.unit)?;
    }
    if let Some(t) = &c.tariff_option {
        writeln!(out, "tariff option: {}", t.text())?;
    }
    if let Some(h) = &c.off_peak_hours {
        if h.ranges.is_empty() {
            writeln!(out, "off-peak hours: {}", h.raw)?;
        } else {
            let ranges: Vec<String> = h.ranges.iter().map(|r| r.text()).collect();
            writeln!(
                out,
                "off-peak hours: {} (Paris time: {})",
                h.raw,
                ranges.join(", ")
            )?;
        }
    }
    if let Some(m) = &c.meter_type {
        writeln!(out, "meter type: {}", m.text())?;
    }
    if let Some(s) = &c.services_level {
        writeln!(out, "services level: {}", s.text())?;
    }
    if let Some(d) = c.contract_start {
        writeln!(out, "contract start: {d}")?;
    }
    for a in &c.activations {
        match a.direction {
            Some(Direction::Consumption) => {
                writeln!(out, "last activation (consumption): {}", a.date)?
            }
            Some(Direction::Production) => {
                writeln!(out, "last activation (production): {}", a.date)?
            }
            None => writeln!(out, "last activation: {}", a.date)?,
        }
    }
    for change in &c.last_changes {
        let what = match change.of {
            Changed::SubscribedPower => "subscribed power",
            Changed::TariffOption => "tariff option",
        };
        writeln!(out, "{what} last changed: {}", change.date)?;
    }
    if let Some(a) = &c.address {
        let place = [a.postal_code.as_deref(), a.city.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let mut parts: Vec<&str> = [a.street.as_deref(), a.locality.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !place.is_empty() {
            parts.push(&place);
        }
        if let Some(country) = a.country.as_deref() {
            parts.push(country);
        }
        let insee = a
            .insee_code
            .as_deref()
            .map(|i| format!(" (INSEE {i})"))
            .unwrap_or_default();
        writeln!(out, "address: {}{insee}", parts.join(", "))?;
    }
    for u in &c.unavailable {
        writeln!(out, "not available: {}", unavailable_text(u))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quoalise::contract::{
        Activation, Address, Coded, OffPeakHours, Power, TimeRange, Unavailable,
    };
    use jiff::civil::date;

    #[test]
    fn prints_one_line_per_field() {
        let mut c = Contract::new("22516914714270".parse().unwrap(), "v5", 1_796_550_067);
        c.segments = vec!["C5".into()];
        c.subscribed_power = Some(Power {
            value: "9".into(),
            unit: "kVA".into(),
        });
        c.tariff_option = Some(Coded::code("BTINFMUDT"));
        c.off_peak_hours = Some(OffPeakHours {
            raw: "HC (22H00-6H00)".into(),
            ranges: vec![TimeRange {
                start: 1320,
                end: 360,
            }],
        });
        c.activations = vec![Activation {
            direction: None,
            date: date(2019, 8, 27),
        }];
        c.address = Some(Address {
            street: Some("12 RUE DES LILAS".into()),
            postal_code: Some("69003".into()),
            city: Some("LYON".into()),
            insee_code: Some("69383".into()),
            country: Some("France".into()),
            locality: None,
        });
        c.unavailable = vec![Unavailable {
            source: "customers_upa/v5/usage_points/addresses".into(),
            fields: vec!["address".into()],
            code: None,
            reason: "not covered".into(),
        }];
        let mut out = Vec::new();
        write_contract(&c, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Contract of PRM 22516914714270 (Enedis API v5, read from Enedis at 2026-12-06T09:41:07Z)\n\
             segment: C5\n\
             subscribed power: 9 kVA\n\
             tariff option: BTINFMUDT\n\
             off-peak hours: HC (22H00-6H00) (Paris time: 22:00-06:00)\n\
             last activation: 2019-08-27\n\
             address: 12 RUE DES LILAS, 69003 LYON, France (INSEE 69383)\n\
             not available: address: not covered\n"
        );
    }
}

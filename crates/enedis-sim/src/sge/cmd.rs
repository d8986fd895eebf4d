//! `ConsultationMesuresDetaillees` v3.0 (`consulterMesuresDetailleesV3`).
//!
//! Served for every meter of [`super::meters`]: `COURBE` (`PA`; `PRI`, `PRC`,
//! `E` and `TOUT` off Linky), `ENERGIE` and `INDEX` (`EA`), `PMAX` (`PMA`, Linky
//! consumers only), raw or corrected (BEST, off Linky). The checks, in order (the
//! order is inferred; SGE documents only the codes): the envelope and the
//! `demande` fields in XSD order (SGT562), the point (SGT401), the dates (SGT4K4,
//! SGT4K1), the access frame (`SERVICE_ACCES` needs an active access service of
//! the right type: SGT4K2), the direction (SGT583), corrected data on Linky
//! (SGT4H2), the type and quantity (SGT562, SGT579), the duration and depth of
//! history (SGT4L8), the holding period (SGT4N1).

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use jiff::ToSpan;
use jiff::civil::Date;

use super::codes::Sgt;
use super::meters::{self, CLASSES_D, Interval, SgeMeter};
use super::sad::TypeDonnees;
use super::soap;
use crate::model::Prm;
use crate::paris::{TimeError, next_day, parse_date};
use crate::state::Sim;
use crate::synth;

/// The service namespace (`ns3` in answers).
pub const NS: &str = "http://www.enedis.fr/sge/b2b/services/consultationmesuresdetaillees/common";
pub const FAULTSTRING: &str = "Erreur Technique Mesures";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The `demande` fields in XSD order; `mesuresPas` is optional.
const FIELDS: [&str; 10] = [
    "initiateurLogin",
    "pointId",
    "mesuresTypeCode",
    "grandeurPhysique",
    "dateDebut",
    "dateFin",
    "mesuresPas",
    "mesuresCorrigees",
    "sens",
    "cadreAcces",
];

/// A checked request.
struct Request {
    meter: SgeMeter,
    kind: Kind,
    corrected: bool,
    start: Date,
    end: Date,
}

/// One curve quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    Pa,
    Pri,
    Prc,
    E,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::Pa => "PA",
            Curve::Pri => "PRI",
            Curve::Prc => "PRC",
            Curve::E => "E",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Curve::Pa => "W",
            Curve::Pri | Curve::Prc => "VAr",
            Curve::E => "V",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Energie,
    /// One `grandeur` per quantity (`TOUT`: all four).
    Courbe(Vec<Curve>),
    /// `true`: monthly (`P1M`).
    Pmax(bool),
    Index,
}

impl Kind {
    /// The access service a `SERVICE_ACCES` read of this kind needs.
    fn service(&self) -> TypeDonnees {
        match self {
            Kind::Energie => TypeDonnees::Energie,
            Kind::Courbe(_) => TypeDonnees::Cdc,
            Kind::Pmax(_) => TypeDonnees::Pmax,
            Kind::Index => TypeDonnees::Idx,
        }
    }
}

pub async fn consulter(State(sim): State<Sim>, body: String) -> Response {
    let today = sim.today();
    match check(&sim, &body, today) {
        Ok(request) => match answer(&sim, &request) {
            Ok(xml) => soap::ok(&xml),
            Err(e) => {
                tracing::warn!(error = %e, "SGE CMD v3: cannot compute the answer");
                soap::fault(FAULTSTRING, NS, Sgt::Technique)
            }
        },
        Err((sgt, why)) => {
            tracing::debug!(code = sgt.code(), %why, "SGE CMD v3 refused");
            soap::fault(FAULTSTRING, NS, sgt)
        }
    }
}

type Refused = (Sgt, String);

fn malformed(why: impl Into<String>) -> Refused {
    (Sgt::Malforme, why.into())
}

fn check(sim: &Sim, body: &str, today: Date) -> Result<Request, Refused> {
    let demande = soap::parse(body).map_err(malformed)?;
    if demande.operation != "consulterMesuresDetailleesV3" || demande.namespace != NS {
        return Err(malformed(format!(
            "operation {{{}}}{}",
            demande.namespace, demande.operation
        )));
    }
    let names: Vec<&str> = demande.fields.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = FIELDS
        .iter()
        .copied()
        .filter(|f| *f != "mesuresPas" || names.contains(f))
        .collect();
    if names != expected {
        return Err(malformed(format!("demande fields {names:?}")));
    }
    let field = |name: &str| demande.get(name).unwrap_or_default().trim();
    let prm: Prm = field("pointId")
        .parse()
        .map_err(|e| malformed(format!("pointId: {e}")))?;
    let type_code = field("mesuresTypeCode");
    let grandeur = field("grandeurPhysique");
    let start = parse_date(field("dateDebut")).map_err(|e| malformed(e.to_string()))?;
    let end = parse_date(field("dateFin")).map_err(|e| malformed(e.to_string()))?;
    let corrected = match field("mesuresCorrigees") {
        "true" | "1" => true,
        "false" | "0" => false,
        other => return Err(malformed(format!("mesuresCorrigees {other:?}"))),
    };
    let sens = field("sens");
    if !matches!(sens, "SOUTIRAGE" | "INJECTION") {
        return Err(malformed(format!("sens {sens:?}")));
    }
    let cadre = field("cadreAcces");
    if !matches!(cadre, "ACCORD_CLIENT" | "SERVICE_ACCES" | "EST_TITULAIRE") {
        return Err(malformed(format!("cadreAcces {cadre:?}")));
    }
    if !matches!(type_code, "COURBE" | "PMAX" | "ENERGIE" | "INDEX") {
        return Err(malformed(format!("mesuresTypeCode {type_code:?}")));
    }
    let pas = demande.get("mesuresPas").map(str::trim);
    if pas.is_some() && type_code != "PMAX" {
        return Err(malformed("mesuresPas is for PMAX only"));
    }

    let meter = meters::lookup(prm).ok_or((Sgt::PointInexistant, format!("PRM {prm}")))?;
    let linky = meter.segment.linky();
    if start >= end {
        return Err((Sgt::DebutApresFin, format!("{start} >= {end}")));
    }
    if end > today {
        return Err((Sgt::FinApresAujourdhui, format!("{end} > {today}")));
    }
    let kind = match (type_code, grandeur) {
        ("ENERGIE", "EA") => Kind::Energie,
        ("INDEX", "EA") => Kind::Index,
        ("COURBE", "PA") => Kind::Courbe(vec![Curve::Pa]),
        ("COURBE", "PRI" | "PRC" | "E" | "TOUT") if linky => {
            return Err((
                Sgt::TypeIndisponible,
                format!("COURBE {grandeur} on {}", meter.segment.name()),
            ));
        }
        ("COURBE", "PRI") => Kind::Courbe(vec![Curve::Pri]),
        ("COURBE", "PRC") => Kind::Courbe(vec![Curve::Prc]),
        ("COURBE", "E") => Kind::Courbe(vec![Curve::E]),
        ("COURBE", "TOUT") => Kind::Courbe(vec![Curve::Pa, Curve::Pri, Curve::Prc, Curve::E]),
        ("PMAX", "PMA") => match pas {
            Some("P1D") => Kind::Pmax(false),
            Some("P1M") => Kind::Pmax(true),
            // Inferred: PMAX without its step is malformed.
            other => return Err(malformed(format!("PMAX mesuresPas {other:?}"))),
        },
        _ => {
            return Err(malformed(format!(
                "grandeurPhysique {grandeur:?} for {type_code}"
            )));
        }
    };
    // SERVICE_ACCES: an active access service of the matching type (ML expects SGT211 without one, unverified and not in
    // AX.0466; SGT4K2 is the annex's "consent required" code).
    if cadre == "SERVICE_ACCES" {
        let needed = kind.service();
        if !sim.lock().sge.active(prm, needed, today) {
            return Err((
                Sgt::AccordRequis,
                format!("no active {} access service", needed.code()),
            ));
        }
    }
    let wanted = if sens == "SOUTIRAGE" {
        crate::model::Direction::Consumption
    } else {
        crate::model::Direction::Production
    };
    if wanted != meter.direction() {
        return Err((Sgt::SensIncorrect, format!("sens {sens}")));
    }
    if corrected && linky {
        return Err((
            Sgt::PasDeCorrigeesC5,
            format!("corrected data on {}", meter.segment.name()),
        ));
    }
    // PMAX: Linky only (and our only Linky producer injects, refused above).
    if matches!(kind, Kind::Pmax(_)) && !linky {
        return Err((
            Sgt::TypeIndisponible,
            format!("PMAX on {}", meter.segment.name()),
        ));
    }
    let (max_days, months) = match kind {
        Kind::Courbe(_) => (7, 24),
        // INDEX: 36 months as ENERGIE (inferred).
        Kind::Energie | Kind::Pmax(_) | Kind::Index => (i64::MAX, 36),
    };
    let days = (end - start).get_days();
    let oldest = today
        .checked_sub(months.months())
        .map_err(|e| (Sgt::Technique, e.to_string()))?;
    if i64::from(days) > max_days || start < oldest {
        return Err((
            Sgt::DureeIncompatible,
            format!("{start}..{end}: {days} days, oldest {oldest}"),
        ));
    }
    if start < meter.meter.activation {
        return Err((
            Sgt::HorsDetention,
            format!("before the commissioning {}", meter.meter.activation),
        ));
    }
    Ok(Request {
        meter,
        kind,
        corrected,
        start,
        end,
    })
}

/// The days of `[start, end[`.
fn days(start: Date, end: Date) -> Result<Vec<Date>, TimeError> {
    let mut out = Vec::new();
    let mut day = start;
    while day < end {
        out.push(day);
        day = next_day(day)?;
    }
    Ok(out)
}

/// The content of `soap:Body`, in the layout of the example answers.
fn answer(sim: &Sim, r: &Request) -> Result<String, TimeError> {
    let mut x = String::new();
    let _ = write!(
        x,
        "    <ns3:consulterMesuresDetailleesResponseV3 xmlns:ns4=\"{}\" xmlns:ns3=\"{NS}\">\n      <pointId>{}</pointId>\n",
        soap::TECHNIQUE,
        r.meter.meter.prm,
    );
    // INDEX answers carry the stage in each `contexte` instead.
    if r.kind != Kind::Index {
        let stage = if r.corrected { "BEST" } else { "BRUT" };
        let _ = writeln!(x, "      <mesuresCorrigees>{stage}</mesuresCorrigees>");
    }
    let _ = write!(
        x,
        "      <periode>\n        <dateDebut>{}</dateDebut>\n        <dateFin>{}</dateFin>\n      </periode>\n",
        r.start, r.end,
    );
    let metier = r.meter.grandeur_metier();
    let open_grandeur = |x: &mut String, physique: &str, unite: &str| {
        let _ = write!(
            x,
            "      <grandeur>\n        <grandeurMetier>{metier}</grandeurMetier>\n        <grandeurPhysique>{physique}</grandeurPhysique>\n        <unite>{unite}</unite>\n"
        );
    };
    let days = days(r.start, r.end)?;
    match &r.kind {
        Kind::Energie => {
            open_grandeur(&mut x, "EA", "Wh");
            for &day in &days {
                let v = r.meter.day_energy(day)?;
                let _ = write!(
                    x,
                    "        <points>\n          <v>{v}</v>\n          <d>{day}</d>\n        </points>\n"
                );
            }
            x.push_str("      </grandeur>\n");
            let mode = if r.meter.segment.linky() {
                "DIFF.INDEX"
            } else {
                "INTEG.COURBE"
            };
            let _ = write!(
                x,
                "      <typeValeur>GLOBALE</typeValeur>\n      <modeCalcul>{mode}</modeCalcul>\n      <pas>P1D</pas>\n"
            );
        }
        Kind::Courbe(curves) => {
            let p = r.meter.step_name();
            let extra = if r.meter.segment.linky() {
                "          <n>B</n>\n          <iv>0</iv>\n          <ec>0</ec>\n"
            } else {
                "          <n>R</n>\n"
            };
            for &curve in curves {
                open_grandeur(&mut x, curve.name(), curve.unit());
                for &day in &days {
                    let points: Vec<Interval> = match curve {
                        Curve::Pa => r.meter.day_curve(day)?,
                        Curve::Pri => r.meter.reactive_curve(day, false)?,
                        Curve::Prc => r.meter.reactive_curve(day, true)?,
                        Curve::E => r.meter.voltage_curve(day)?,
                    };
                    for i in points {
                        let _ = write!(
                            x,
                            "        <points>\n          <v>{}</v>\n          <d>{}</d>\n          <p>{p}</p>\n{extra}        </points>\n",
                            i.value, i.stamp
                        );
                    }
                }
                x.push_str("      </grandeur>\n");
            }
            x.push_str("      <modeCalcul>MESURE</modeCalcul>\n");
        }
        Kind::Pmax(monthly) => {
            open_grandeur(&mut x, "PMA", "VA");
            let mut peaks = Vec::with_capacity(days.len());
            for &day in &days {
                peaks.push((day, synth::daily_peak(&r.meter.meter, day)?));
            }
            if *monthly {
                // One point per month met, stamped at its first day's midnight;
                // its maximum over the requested days of it, nil under 7 values.
                let mut months: Vec<(Date, Vec<u32>)> = Vec::new();
                for (day, peak) in &peaks {
                    let month = day.first_of_month();
                    match months.last_mut() {
                        Some((m, values)) if *m == month => values.push(peak.value),
                        _ => months.push((month, vec![peak.value])),
                    }
                }
                for (month, values) in months {
                    let v = match values.iter().max() {
                        Some(max) if values.len() >= 7 => format!("<v>{max}</v>"),
                        _ => format!("<v xmlns:xsi=\"{XSI}\" xsi:nil=\"true\"/>"),
                    };
                    let _ = write!(
                        x,
                        "        <points>\n          {v}\n          <d>{month} 00:00:00</d>\n        </points>\n"
                    );
                }
            } else {
                for (_, peak) in &peaks {
                    let _ = write!(
                        x,
                        "        <points>\n          <v>{}</v>\n          <d>{}</d>\n        </points>\n",
                        peak.value,
                        synth::local_string(peak.at)?
                    );
                }
            }
            x.push_str("      </grandeur>\n");
            let pas = if *monthly { "P1M" } else { "P1D" };
            let _ = write!(
                x,
                "      <modeCalcul>MESURE</modeCalcul>\n      <pas>{pas}</pas>\n"
            );
        }
        Kind::Index => index(sim, r, &days, &mut x)?,
    }
    x.push_str("    </ns3:consulterMesuresDetailleesResponseV3>\n");
    Ok(x)
}

/// One `valeur` (`indent`: its own indentation).
fn valeur(x: &mut String, indent: &str, day: Date, v: u64) {
    let _ = write!(
        x,
        "{indent}<valeur>\n{indent}  <d>{day} 00:00:00</d>\n{indent}  <v>{v}</v>\n{indent}  <iv>0</iv>\n{indent}</valeur>\n"
    );
}

/// The `contexte` of an INDEX answer: a Linky's as `C5-INDEX` (supplier and
/// distributor calendars, each class with its register, the totalisator), the
/// others' as `C4-INDEX` (the distributor's four classes, `RC` readings only).
/// Readings are at each day's midnight (the examples' C4 readings carry the
/// meter's reading time; ours are the midnight values, inferred).
fn index(sim: &Sim, r: &Request, days: &[Date], x: &mut String) -> Result<(), TimeError> {
    let linky = r.meter.segment.linky();
    let stage = if r.corrected { "BEST" } else { "BRUT" };
    let (contexte, releve) = if linky { ("COL", "AQ") } else { ("FMR", "RC") };
    let _ = write!(
        x,
        "      <contexte>\n        <etapeMetier>{stage}</etapeMetier>\n        <contexteReleve>{contexte}</contexteReleve>\n        <typeReleve>{releve}</typeReleve>\n        <grandeur>\n          <grandeurMetier>{}</grandeurMetier>\n          <grandeurPhysique>EA</grandeurPhysique>\n          <unite>Wh</unite>\n",
        r.meter.grandeur_metier()
    );
    let indent = "              ";
    if linky {
        let meter = &r.meter.meter;
        let direction = r.meter.direction();
        let mut counters = Vec::with_capacity(days.len());
        for &day in days {
            counters.push(sim.index().counters_at(meter, direction, day)?);
        }
        let first = days.first().copied().unwrap_or(r.start);
        for calendar in crate::tariff::reported(meter, direction, first) {
            let _ = write!(
                x,
                "          <calendrier>\n            <idCalendrier>{}</idCalendrier>\n            <libelleCalendrier>{}</libelleCalendrier>\n",
                calendar.id, calendar.label
            );
            for class in calendar.classes {
                let _ = write!(
                    x,
                    "            <classeTemporelle>\n              <idClasseTemporelle>{}</idClasseTemporelle>\n              <libelleClasseTemporelle>{}</libelleClasseTemporelle>\n              <codeCadran>{}</codeCadran>\n",
                    class.id, class.label, class.cadran
                );
                for (day, c) in days.iter().zip(&counters) {
                    valeur(x, indent, *day, c.registers[class.register]);
                }
                x.push_str("            </classeTemporelle>\n");
            }
            x.push_str("          </calendrier>\n");
        }
        let _ = writeln!(
            x,
            "          <cadranTotalisateur>\n            <codeCadran>{}</codeCadran>",
            crate::tariff::TOTALISATOR
        );
        for (day, c) in days.iter().zip(&counters) {
            valeur(x, "            ", *day, c.total);
        }
        x.push_str("          </cadranTotalisateur>\n");
    } else {
        let mut indexes = Vec::with_capacity(days.len());
        for &day in days {
            indexes.push(r.meter.index_classes(day)?);
        }
        x.push_str("          <calendrier>\n            <idCalendrier>D</idCalendrier>\n            <libelleCalendrier>Distributeur</libelleCalendrier>\n");
        for (k, (id, label)) in CLASSES_D.iter().enumerate() {
            let _ = write!(
                x,
                "            <classeTemporelle>\n              <idClasseTemporelle>{id}</idClasseTemporelle>\n              <libelleClasseTemporelle>{label}</libelleClasseTemporelle>\n"
            );
            for (day, c) in days.iter().zip(&indexes) {
                valeur(x, indent, *day, c[k]);
            }
            x.push_str("            </classeTemporelle>\n");
        }
        x.push_str("          </calendrier>\n");
    }
    x.push_str("        </grandeur>\n      </contexte>\n");
    Ok(())
}

//! `ConsultationMesuresDetaillees` v3.0 (`consulterMesuresDetailleesV3`).
//!
//! Served so far: `ENERGIE` (EA, daily) and raw `COURBE` `PA`, for the C5 and C4
//! meters of [`super::meters`]. The checks, in order (the order is inferred; SGE
//! documents only the codes): the envelope and the `demande` fields in XSD order
//! (SGT562), the point (SGT401), the dates (SGT4K4, SGT4K1), the access frame
//! (SGT4K2), the direction (SGT583), corrected data on C5 (SGT4H2), the type and
//! quantity (SGT562, SGT579), the duration and depth of history (SGT4L8), the
//! holding period (SGT4N1).

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use jiff::ToSpan;
use jiff::civil::Date;

use super::codes::Sgt;
use super::meters::{self, Segment, SgeMeter};
use super::soap;
use crate::model::Prm;
use crate::paris::parse_date;
use crate::state::Sim;

/// The service namespace (`ns3` in answers).
pub const NS: &str = "http://www.enedis.fr/sge/b2b/services/consultationmesuresdetaillees/common";
const FAULTSTRING: &str = "Erreur Technique Mesures";

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
    start: Date,
    end: Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Energie,
    CourbePa,
}

pub async fn consulter(State(sim): State<Sim>, body: String) -> Response {
    let today = sim.today();
    match check(&body, today) {
        Ok(request) => match answer(&request) {
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

fn check(body: &str, today: Date) -> Result<Request, Refused> {
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
    if demande.get("mesuresPas").is_some() && type_code != "PMAX" {
        return Err(malformed("mesuresPas is for PMAX only"));
    }

    let meter = meters::lookup(prm).ok_or((Sgt::PointInexistant, format!("PRM {prm}")))?;
    if start >= end {
        return Err((Sgt::DebutApresFin, format!("{start} >= {end}")));
    }
    if end > today {
        return Err((Sgt::FinApresAujourdhui, format!("{end} > {today}")));
    }
    // No access service (SAD) exists yet in the simulator: `SERVICE_ACCES` always
    // lacks one. ML expects SGT211 here (unverified, not in AX.0466); SGT4K2 is
    // the annex's "consent required" code for this service.
    if cadre == "SERVICE_ACCES" {
        return Err((Sgt::AccordRequis, "no active access service".into()));
    }
    // Both meters are consumption-only.
    if sens != "SOUTIRAGE" {
        return Err((Sgt::SensIncorrect, format!("sens {sens}")));
    }
    if corrected && meter.segment == Segment::C5 {
        return Err((Sgt::PasDeCorrigeesC5, "corrected data on C5".into()));
    }
    let kind = match (type_code, grandeur) {
        ("ENERGIE", "EA") => Kind::Energie,
        ("COURBE", "PA") => Kind::CourbePa,
        ("COURBE", "PRI" | "PRC" | "E" | "TOUT") if meter.segment == Segment::C5 => {
            return Err((Sgt::TypeIndisponible, format!("COURBE {grandeur} on C5")));
        }
        ("COURBE", "PRI" | "PRC" | "E" | "TOUT") | ("PMAX", "PMA") | ("INDEX", "EA") => {
            return Err((
                Sgt::Technique,
                format!("{type_code} {grandeur}: not simulated yet"),
            ));
        }
        _ => {
            return Err(malformed(format!(
                "grandeurPhysique {grandeur:?} for {type_code}"
            )));
        }
    };
    if corrected {
        return Err((Sgt::Technique, "corrected data: not simulated yet".into()));
    }
    let (max_days, months) = match kind {
        Kind::CourbePa => (7, 24),
        Kind::Energie => (i64::MAX, 36),
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
        start,
        end,
    })
}

/// The content of `soap:Body`, in the layout of the example answers.
fn answer(r: &Request) -> Result<String, crate::paris::TimeError> {
    let mut x = String::new();
    let (grandeur, unite) = match r.kind {
        Kind::Energie => ("EA", "Wh"),
        Kind::CourbePa => ("PA", "W"),
    };
    // Writing to a String cannot fail.
    let _ = write!(
        x,
        "    <ns3:consulterMesuresDetailleesResponseV3 xmlns:ns4=\"{}\" xmlns:ns3=\"{NS}\">\n      <pointId>{}</pointId>\n      <mesuresCorrigees>BRUT</mesuresCorrigees>\n      <periode>\n        <dateDebut>{}</dateDebut>\n        <dateFin>{}</dateFin>\n      </periode>\n      <grandeur>\n        <grandeurMetier>CONS</grandeurMetier>\n        <grandeurPhysique>{grandeur}</grandeurPhysique>\n        <unite>{unite}</unite>\n",
        soap::TECHNIQUE,
        r.meter.meter.prm,
        r.start,
        r.end,
    );
    let mut day = r.start;
    while day < r.end {
        match r.kind {
            Kind::Energie => {
                let v = r.meter.day_energy(day)?;
                let _ = write!(
                    x,
                    "        <points>\n          <v>{v}</v>\n          <d>{day}</d>\n        </points>\n"
                );
            }
            Kind::CourbePa => {
                let (p, extra) = match r.meter.segment {
                    Segment::C5 => (
                        "PT30M",
                        "          <n>B</n>\n          <iv>0</iv>\n          <ec>0</ec>\n",
                    ),
                    Segment::C4 => ("PT5M", "          <n>R</n>\n"),
                };
                for i in r.meter.day_curve(day)? {
                    let _ = write!(
                        x,
                        "        <points>\n          <v>{}</v>\n          <d>{}</d>\n          <p>{p}</p>\n{extra}        </points>\n",
                        i.watts, i.stamp
                    );
                }
            }
        }
        day = crate::paris::next_day(day)?;
    }
    x.push_str("      </grandeur>\n");
    match (r.kind, r.meter.segment) {
        (Kind::Energie, segment) => {
            let mode = if segment == Segment::C5 {
                "DIFF.INDEX"
            } else {
                "INTEG.COURBE"
            };
            let _ = write!(
                x,
                "      <typeValeur>GLOBALE</typeValeur>\n      <modeCalcul>{mode}</modeCalcul>\n      <pas>P1D</pas>\n"
            );
        }
        (Kind::CourbePa, _) => x.push_str("      <modeCalcul>MESURE</modeCalcul>\n"),
    }
    x.push_str("    </ns3:consulterMesuresDetailleesResponseV3>\n");
    Ok(x)
}

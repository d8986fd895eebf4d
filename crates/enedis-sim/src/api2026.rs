//! Data Connect 2026 metering: `GET /mesure_synchrone_auto/v2/<resource>`.
//!
//! Shapes follow `reference/enedis-2026/fixtures/mesure_*.json` field for field
//! (order included) and the swagger: string values, `calendrier` and `contexte`
//! empty arrays, `typeValeur`/`pas` only where the captures have them. Anything
//! outside the swagger (unknown resource or parameter, a missing required parameter,
//! a value outside an enum, another method) gets a 500.

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::catalogue::Meter;
use crate::model::{Direction, Prm};
use crate::synth;
use crate::tariff::{self, Calendar};

use super::errors::{Gen, Refusal};
use super::metering::{self, DayPoint, Measure, param, parse_query};
use super::state::{Holder, Sim};

const GEN: Gen = Gen::Api2026;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Mesure {
    id_prm: String,
    etape_metier: &'static str,
    periode: Periode,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_valeur: Option<&'static str>,
    mode_calcul: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pas: Option<&'static str>,
    grandeur: Vec<Grandeur>,
    contexte: Vec<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Periode {
    date_debut: String,
    date_fin: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Grandeur {
    grandeur_metier: &'static str,
    grandeur_physique: &'static str,
    unite: &'static str,
    points: Vec<Point>,
    calendrier: Vec<Value>,
}

#[derive(Serialize)]
struct Point {
    /// `null` only for a missing point when the `null_gaps` fault is on.
    v: Option<String>,
    d: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ec: Option<&'static str>,
}

/// Index answer (`ReponseMesureAccesIndex`): the counters sit in `contexte`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexBody {
    id_prm: String,
    periode: Periode,
    grandeur: Vec<Value>,
    contexte: Vec<IndexContexte>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexContexte {
    etape_metier: &'static str,
    contexte_releve: &'static str,
    type_releve: &'static str,
    grandeur: Vec<IndexGrandeur>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexGrandeur {
    grandeur_metier: &'static str,
    grandeur_physique: &'static str,
    unite: &'static str,
    points: Vec<Value>,
    calendrier: Vec<IndexCalendrier>,
    cadran_totalisateur: Cadran,
}

/// `Calendrier`: the counters of one calendar's classes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexCalendrier {
    id_calendrier: &'static str,
    libelle_calendrier: &'static str,
    classe_temporelle: Vec<IndexClasse>,
}

/// `ClasseTemporelle`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexClasse {
    id_classe_temporelle: &'static str,
    libelle_classe_temporelle: &'static str,
    code_cadran: &'static str,
    valeur: Vec<IndexValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cadran {
    code_cadran: &'static str,
    valeur: Vec<IndexValue>,
}

#[derive(Serialize, Clone)]
struct IndexValue {
    d: String,
    v: u64,
    iv: u8,
}

fn outside(reason: impl Into<String>) -> Refusal {
    Refusal::OutsideSwagger(reason.into())
}

pub async fn mesure(
    State(sim): State<Sim>,
    Extension(holder): Extension<Holder>,
    method: Method,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    match build(&sim, holder, &method, &resource, query.as_deref()) {
        Ok(response) => response,
        Err(refusal) => refusal.response(GEN),
    }
}

fn build(
    sim: &Sim,
    holder: Holder,
    method: &Method,
    resource: &str,
    query: Option<&str>,
) -> Result<Response, Refusal> {
    if method != Method::GET {
        return Err(outside(format!("method {method} on {resource}")));
    }
    let (measure, direction) = match resource {
        "consommation_quotidienne" => (Measure::Daily, Direction::Consumption),
        "production_quotidienne" => (Measure::Daily, Direction::Production),
        "courbe_de_charge_consommation" => (Measure::LoadCurve, Direction::Consumption),
        "courbe_de_charge_production" => (Measure::LoadCurve, Direction::Production),
        "puissance_conso_max_quotidienne" => (Measure::MaxPower, Direction::Consumption),
        "index_consommation" => (Measure::Index, Direction::Consumption),
        "index_production" => (Measure::Index, Direction::Production),
        other => return Err(outside(format!("unknown resource {other:?}"))),
    };
    let params = parse_query(query);
    let mut allowed = vec!["pointId", "dateDebut", "dateFin"];
    if measure == Measure::MaxPower {
        allowed.extend(["mesuresPas", "grandeurPhysique"]);
    }
    for (key, _) in &params {
        if !allowed.contains(&key.as_str()) {
            return Err(outside(format!("unknown query parameter {key:?}")));
        }
        if params.iter().filter(|(k, _)| k == key).count() > 1 {
            return Err(outside(format!("repeated query parameter {key:?}")));
        }
    }
    for key in &allowed {
        if param(&params, key).is_none() {
            return Err(outside(format!("missing required query parameter {key}")));
        }
    }
    let monthly = match param(&params, "mesuresPas") {
        None | Some("P1D") => false,
        Some("P1M") => true,
        Some(other) => return Err(outside(format!("mesuresPas {other:?} is not P1D or P1M"))),
    };
    if let Some(g) = param(&params, "grandeurPhysique")
        && g != "PMA"
        && g != "TOUT"
    {
        return Err(outside(format!(
            "grandeurPhysique {g:?} is not PMA or TOUT"
        )));
    }
    let point_id = param(&params, "pointId").unwrap_or_default();
    let prm: Prm = point_id.parse().map_err(|_| {
        Refusal::InvalidRequest("Le paramètre pointId doit comporter 14 chiffres".to_owned())
    })?;
    let period = metering::parse_period(
        GEN,
        param(&params, "dateDebut"),
        param(&params, "dateFin"),
        sim.today(),
    )?;
    let meter = metering::check(sim, holder, prm, measure, direction, period)?;
    let (start, end) = period;
    let keep_missing = sim.lock().faults.null_gaps;
    let periode = Periode {
        date_debut: start.to_string(),
        date_fin: end.to_string(),
    };
    let metier = match direction {
        Direction::Consumption => "CONS",
        Direction::Production => "PROD",
    };

    if measure == Measure::Index {
        let body = IndexBody {
            id_prm: prm.to_string(),
            periode,
            grandeur: Vec::new(),
            contexte: vec![IndexContexte {
                etape_metier: "BRUT",
                contexte_releve: "COL",
                type_releve: "AQ",
                grandeur: vec![index_grandeur(sim, &meter, direction, metier, start, end)?],
            }],
        };
        return Ok(Json(body).into_response());
    }

    let (grandeur, type_valeur, mode_calcul, pas) = match measure {
        Measure::LoadCurve => {
            let step = format!("PT{}M", meter.step_minutes);
            let points = metering::load_curve(&meter, direction, start, end, keep_missing)?
                .into_iter()
                .map(|p| Point {
                    v: p.value.map(|v| v.to_string()),
                    d: p.end_local,
                    p: Some(step.clone()),
                    n: Some("B"),
                    iv: Some("0"),
                    ec: Some("0"),
                })
                .collect();
            (
                Grandeur {
                    grandeur_metier: metier,
                    grandeur_physique: "PA",
                    unite: "W",
                    points,
                    calendrier: Vec::new(),
                },
                None,
                "MESURE",
                None,
            )
        }
        Measure::MaxPower => {
            let mut points =
                metering::daily(sim, &meter, measure, direction, start, end, keep_missing)?;
            if monthly {
                points = metering::monthly_peaks(&points);
            }
            (
                Grandeur {
                    grandeur_metier: metier,
                    grandeur_physique: "PMA",
                    unite: "VA",
                    points: points.into_iter().map(day_point).collect(),
                    calendrier: Vec::new(),
                },
                None,
                "MESURE",
                Some(if monthly { "P1M" } else { "P1D" }),
            )
        }
        _ => {
            let points =
                metering::daily(sim, &meter, measure, direction, start, end, keep_missing)?;
            (
                Grandeur {
                    grandeur_metier: metier,
                    grandeur_physique: "EA",
                    unite: "Wh",
                    points: points.into_iter().map(day_point).collect(),
                    calendrier: Vec::new(),
                },
                Some("GLOBALE"),
                "DIFF.INDEX",
                Some("P1D"),
            )
        }
    };
    let body = Mesure {
        id_prm: prm.to_string(),
        etape_metier: "BRUT",
        periode,
        type_valeur,
        mode_calcul,
        pas,
        grandeur: vec![grandeur],
        contexte: Vec::new(),
    };
    Ok(Json(body).into_response())
}

/// The counters of `[start, end[`, one reading a day at its first midnight (none
/// on a day the meter did not report): the totalisator, and each class of the
/// calendars reported that day ([`tariff::reported`]), suppliers' first as in the
/// SGE capture.
fn index_grandeur(
    sim: &Sim,
    meter: &Meter,
    direction: Direction,
    metier: &'static str,
    start: jiff::civil::Date,
    end: jiff::civil::Date,
) -> Result<IndexGrandeur, Refusal> {
    let mut totalisator = Vec::new();
    let mut calendars: Vec<(&'static Calendar, Vec<Vec<IndexValue>>)> = Vec::new();
    // The counters at each midnight, from the first one, day after day.
    let mut counters = sim.index().counters_at(meter, direction, start)?;
    let mut day = start;
    while day < end {
        if !synth::missing_day(meter, day) {
            let d = format!("{day} 00:00:00");
            totalisator.push(IndexValue {
                d: d.clone(),
                v: counters.total,
                iv: 0,
            });
            for calendar in tariff::reported(meter, direction, day) {
                let at = match calendars.iter().position(|(c, _)| c.id == calendar.id) {
                    Some(at) => at,
                    None => {
                        calendars.push((calendar, vec![Vec::new(); calendar.classes.len()]));
                        calendars.len() - 1
                    }
                };
                for (class, values) in calendar.classes.iter().zip(&mut calendars[at].1) {
                    values.push(IndexValue {
                        d: d.clone(),
                        v: counters.registers[class.register],
                        iv: 0,
                    });
                }
            }
        }
        counters.add(&tariff::day_counters(meter, direction, day)?);
        day = crate::paris::next_day(day)?;
    }
    if totalisator.is_empty() {
        return Err(Refusal::NoData);
    }
    calendars.sort_by_key(|(c, _)| (c.id.starts_with('D'), c.id));
    Ok(IndexGrandeur {
        grandeur_metier: metier,
        grandeur_physique: "EA",
        unite: "Wh",
        points: Vec::new(),
        calendrier: calendars
            .into_iter()
            .map(|(calendar, values)| IndexCalendrier {
                id_calendrier: calendar.id,
                libelle_calendrier: calendar.label,
                classe_temporelle: calendar
                    .classes
                    .iter()
                    .zip(values)
                    .map(|(class, valeur)| IndexClasse {
                        id_classe_temporelle: class.id,
                        libelle_classe_temporelle: class.label,
                        code_cadran: class.cadran,
                        valeur,
                    })
                    .collect(),
            })
            .collect(),
        cadran_totalisateur: Cadran {
            code_cadran: tariff::TOTALISATOR,
            valeur: totalisator,
        },
    })
}

fn day_point(p: DayPoint) -> Point {
    Point {
        v: p.value.map(|v| v.to_string()),
        d: p.at_local.unwrap_or_else(|| p.date.to_string()),
        p: None,
        n: None,
        iv: None,
        ec: None,
    }
}

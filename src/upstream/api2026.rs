//! Data Connect 2026 (in production since 2026-09-28): `mesure_synchrone_auto/v2`
//! for data, the v2 consent page returning an `autorisation_id`, and
//! `subscribed_services/v1` to learn which PRMs that consent covers.
//!
//! Answers: `{idPrm, periode, pas?, grandeur: [{grandeurMetier, grandeurPhysique,
//! unite, points: [{v, d, p?}]}]}`; load-curve `d` is Paris local time at the END of
//! the interval, daily `d` is the day, max-power `d` the instant of the peak.

use jiff::civil::Date;
use serde::Deserialize;

use super::normalise::{self, At, ShapeError, check_prm, day_of, from_json, unit_scale, value};
use super::{DataCall, Dialect};
use crate::config::ApiGeneration;
use crate::quoalise::{Direction, Prm, Reading, Series, SeriesKind, Step};
use crate::time::{LoadCurveConverter, daily_reading, parse_local_datetime};

/// The 2026 dialect.
pub struct Api2026;

/// The metering resource of a series.
pub fn resource(series: Series) -> &'static str {
    match series {
        Series::ConsumptionPower => "courbe_de_charge_consommation",
        Series::ProductionPower => "courbe_de_charge_production",
        Series::ConsumptionEnergyDaily => "consommation_quotidienne",
        Series::ProductionEnergyDaily => "production_quotidienne",
        Series::ConsumptionMaxPower => "puissance_conso_max_quotidienne",
    }
}

impl Dialect for Api2026 {
    fn generation(&self) -> ApiGeneration {
        ApiGeneration::Api2026
    }

    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall {
        let resource = resource(series);
        let mut query = vec![
            ("pointId", prm.to_string()),
            ("dateDebut", from.to_string()),
            ("dateFin", to.to_string()),
        ];
        if series == Series::ConsumptionMaxPower {
            // Required by the swagger: daily step, single-phase-equivalent maximum.
            query.push(("mesuresPas", "P1D".to_owned()));
            query.push(("grandeurPhysique", "PMA".to_owned()));
        }
        DataCall::new(format!("/mesure_synchrone_auto/v2/{resource}"), query)
    }

    fn parse(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<Reading>, ShapeError> {
        parse_readings(series, prm, from, to, body)
    }
}

#[derive(Deserialize)]
struct Mesure {
    #[serde(rename = "idPrm")]
    id_prm: Option<String>,
    /// Response-level step (daily values; some load curves).
    pas: Option<String>,
    grandeur: Vec<Grandeur>,
}

#[derive(Deserialize)]
struct Grandeur {
    #[serde(rename = "grandeurMetier")]
    metier: String,
    #[serde(rename = "grandeurPhysique")]
    physique: String,
    unite: Option<String>,
    #[serde(default)]
    points: Vec<Point>,
}

#[derive(Deserialize)]
struct Point {
    v: Option<serde_json::Value>,
    d: String,
    p: Option<serde_json::Value>,
}

/// Which grandeur holds a series: business quantity and physical quantity.
fn grandeur_of(series: Series) -> (&'static str, &'static str) {
    let metier = match series.direction() {
        Direction::Consumption => "CONS",
        Direction::Production => "PROD",
    };
    let physique = match series.kind() {
        SeriesKind::LoadCurve => "PA",
        SeriesKind::DailyEnergy => "EA",
        SeriesKind::DailyMaxPower => "PMA",
    };
    (metier, physique)
}

/// Read a `mesure_synchrone_auto/v2` answer for `series` of `prm` over `[from, to[`.
pub fn parse_readings(
    series: Series,
    prm: &Prm,
    from: Date,
    to: Date,
    body: &[u8],
) -> Result<Vec<Reading>, ShapeError> {
    let mesure: Mesure = from_json(body, "mesure_synchrone_auto")?;
    check_prm(mesure.id_prm.as_deref(), prm)?;
    let (metier, physique) = grandeur_of(series);
    let Some(grandeur) = mesure
        .grandeur
        .iter()
        .find(|g| g.metier == metier && g.physique == physique)
    else {
        if mesure.grandeur.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<String> = mesure
            .grandeur
            .iter()
            .map(|g| format!("{}/{}", g.metier, g.physique))
            .collect();
        return Err(ShapeError(format!(
            "no grandeur {metier}/{physique} in the answer (found {})",
            found.join(", ")
        )));
    };
    let scale = unit_scale(series, grandeur.unite.as_deref())?;
    let mut readings = Vec::with_capacity(grandeur.points.len());
    if series.kind() == SeriesKind::LoadCurve {
        let default_step = mesure.pas.as_deref().map(serde_json::Value::from);
        let mut converter = LoadCurveConverter::new();
        for point in &grandeur.points {
            let at = At::Point(&point.d);
            let step_raw =
                point.p.as_ref().or(default_step.as_ref()).ok_or_else(|| {
                    ShapeError(format!("{at} has no step (p) and the answer no pas"))
                })?;
            let step: Step = normalise::step(step_raw)?;
            let end = parse_local_datetime(&point.d)?;
            readings.push(Reading {
                start: converter.start_of(end, step)?,
                step,
                value: value(point.v.as_ref(), scale, at)?,
            });
        }
    } else {
        for point in &grandeur.points {
            readings.push(daily_reading(
                day_of(&point.d)?,
                value(point.v.as_ref(), scale, At::Point(&point.d))?,
            )?);
        }
    }
    normalise::finish(readings, from, to)
}

/// One service of a consent, as `subscribed_services/v1` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Service {
    #[serde(rename = "pointId")]
    pub point_id: Option<String>,
    #[serde(rename = "etatCode")]
    pub state: Option<String>,
    #[serde(rename = "dateDebut")]
    pub start: Option<String>,
    #[serde(rename = "dateFin")]
    pub end: Option<String>,
    #[serde(rename = "mesuresTypeCode")]
    pub measure_type: Option<String>,
}

#[derive(Deserialize)]
struct Services {
    #[serde(rename = "nbTotalServices")]
    total: Option<i64>,
    #[serde(rename = "serviceSouscrit", default)]
    services: Vec<Service>,
}

/// What a consent covers according to its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentScope {
    /// The PRMs of the ACTIF services, sorted, without duplicates; empty when no
    /// service is ACTIF.
    pub prms: Vec<Prm>,
    /// Earliest `dateDebut` of those services.
    pub start: Option<Date>,
    /// Latest `dateFin` of those services (excluded, as every Enedis end day).
    pub end: Option<Date>,
    /// The states of the other services (DEMANDE, TERMINE, SUPPRIME), sorted, once
    /// each: why a consent without ACTIF service is not usable.
    pub other_states: Vec<String>,
}

impl ConsentScope {
    /// Why the consent is not usable, when it has no ACTIF service.
    pub fn why_unusable(&self) -> Option<String> {
        if !self.prms.is_empty() {
            return None;
        }
        Some(if self.other_states.is_empty() {
            "Enedis lists no service for this consent (unknown, revoked or expired)".to_owned()
        } else {
            format!(
                "the consent has no ACTIF service (states: {})",
                self.other_states.join(", ")
            )
        })
    }
}

/// Read a `subscribed_services/v1` answer: keep the ACTIF services, deduplicate their
/// PRMs, and take the validity from their dates.
pub fn parse_services(body: &[u8]) -> Result<ConsentScope, ShapeError> {
    let services: Services = from_json(body, "subscribed_services")?;
    if let Some(total) = services.total
        && total > services.services.len() as i64
    {
        tracing::warn!(
            total,
            listed = services.services.len(),
            "subscribed_services lists fewer services than its total; using those listed"
        );
    }
    let mut other_states: Vec<String> = services
        .services
        .iter()
        .map(|s| s.state.as_deref().unwrap_or("(none)").trim().to_owned())
        .filter(|s| s != "ACTIF")
        .collect();
    other_states.sort_unstable();
    other_states.dedup();
    let mut prms = Vec::new();
    let mut start: Option<Date> = None;
    let mut end: Option<Date> = None;
    let active = services
        .services
        .iter()
        .filter(|s| s.state.as_deref().map(str::trim) == Some("ACTIF"));
    for service in active {
        let raw = service.point_id.as_deref().unwrap_or_default().trim();
        let prm: Prm = raw
            .parse()
            .map_err(|e| ShapeError(format!("service pointId {raw:?} is not a PRM: {e}")))?;
        prms.push(prm);
        if let Some(d) = service.start.as_deref().filter(|d| !d.trim().is_empty()) {
            let d = day_of(d)?;
            start = Some(start.map_or(d, |s| s.min(d)));
        }
        if let Some(d) = service.end.as_deref().filter(|d| !d.trim().is_empty()) {
            let d = day_of(d)?;
            end = Some(end.map_or(d, |e| e.max(d)));
        }
    }
    prms.sort();
    prms.dedup();
    Ok(ConsentScope {
        prms,
        start,
        end,
        other_states,
    })
}

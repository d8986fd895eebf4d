//! Data Connect 2026 (in production since 2026-09-28): `mesure_synchrone_auto/v2`
//! for data, the v2 consent page returning an `autorisation_id`, and
//! `subscribed_services/v1` to learn which PRMs that consent covers.
//!
//! Answers: `{idPrm, periode, pas?, grandeur: [{grandeurMetier, grandeurPhysique,
//! unite, points: [{v, d, p?}]}]}`; load-curve `d` is Paris local time at the END of
//! the interval, daily `d` is the day, max-power `d` the instant of the peak.
//!
//! Index answers (`ReponseMesureAccesIndex`) hold their counters in `contexte`:
//! `contexte[] → grandeur[] (CONS|PROD, EA, Wh) → calendrier[] {idCalendrier,
//! libelleCalendrier, classeTemporelle[] {idClasseTemporelle, libelleClasseTemporelle,
//! codeCadran, valeur[] {d, v, iv}}}` and `cadranTotalisateur {codeCadran,
//! valeur[]}`. A calendar whose id starts with `D` (`DI000003`, or `D` alone as SGE
//! writes it) is the distributor's, one starting with `F` (`FC000050`) the
//! supplier's. `d` is the Paris local instant the counter was read (a Linky: the
//! midnight starting each day). [`parse_index`] reads every counter of the answer
//! at once; [`Series::EnergyIndex`] is the totalisator, or, at an instant it lacks,
//! the sum of a distributor calendar's classes when every one of them has a value.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Deserialize;

use super::normalise::{self, At, ShapeError, check_prm, day_of, from_json, unit_scale, value};
use super::{DataCall, Dialect};
use crate::config::ApiGeneration;
use crate::quoalise::contract::{Activation, Changed, Coded, Contract, LastChange, Power};
use crate::quoalise::{
    Calendar, ClassCode, Direction, Prm, Reading, Series, SeriesKind, Step, TimeClass,
};
use crate::time::{
    LoadCurveConverter, daily_reading, local_instant, parse_date, parse_local_datetime, sort_dedup,
};

/// The 2026 dialect.
pub struct Api2026;

/// The metering resource of a series.
pub fn resource(series: Series) -> &'static str {
    match series {
        // Only SGE serves corrected and reactive curves ([`Dialect::serves`]):
        // never called, they get the raw curve's name.
        Series::ConsumptionPower | Series::ReactivePower(_) => "courbe_de_charge_consommation",
        Series::ProductionPower => "courbe_de_charge_production",
        Series::CorrectedPower(d) => resource(Series::load_curve(d)),
        Series::ConsumptionEnergyDaily => "consommation_quotidienne",
        Series::ProductionEnergyDaily => "production_quotidienne",
        Series::ConsumptionMaxPower => "puissance_conso_max_quotidienne",
        // The per-class energy is derived from the class's index (never called).
        Series::EnergyIndex(d) | Series::ClassIndex(d, _) | Series::ClassEnergyDaily(d, _) => {
            match d {
                Direction::Consumption => "index_consommation",
                Direction::Production => "index_production",
            }
        }
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
        // `series` comes first in [`Dialect::parse_all`]'s answer.
        Ok(self
            .parse_all(series, prm, from, to, body)?
            .into_iter()
            .next()
            .map(|(_, readings)| readings)
            .unwrap_or_default())
    }

    fn parse_all(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<(Series, Vec<Reading>)>, ShapeError> {
        if series.kind() != SeriesKind::Index {
            return Ok(vec![(series, parse_readings(series, prm, from, to, body)?)]);
        }
        let mut all = parse_index(series.direction(), prm, from, to, body)?;
        if let Some(i) = all.iter().position(|(s, _)| *s == series) {
            all.swap(0, i);
        } else {
            all.insert(0, (series, Vec::new()));
        }
        Ok(all)
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
        SeriesKind::DailyEnergy | SeriesKind::Index => "EA",
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

/// `ReponseMesureAccesIndex`: the counters are in `contexte`; `grandeur` is empty.
#[derive(Deserialize)]
struct IndexAnswer {
    #[serde(rename = "idPrm")]
    id_prm: Option<String>,
    contexte: Option<Vec<IndexContexte>>,
}

#[derive(Deserialize)]
struct IndexContexte {
    grandeur: Option<Vec<IndexGrandeur>>,
}

#[derive(Deserialize)]
struct IndexGrandeur {
    #[serde(rename = "grandeurMetier")]
    metier: String,
    #[serde(rename = "grandeurPhysique")]
    physique: Option<String>,
    unite: Option<String>,
    calendrier: Option<Vec<Calendrier>>,
    #[serde(rename = "cadranTotalisateur")]
    totalisateur: Option<Totalisateur>,
}

#[derive(Deserialize)]
struct Calendrier {
    #[serde(rename = "idCalendrier")]
    id: Option<String>,
    #[serde(rename = "classeTemporelle")]
    classes: Option<Vec<ClasseTemporelle>>,
}

#[derive(Deserialize)]
struct ClasseTemporelle {
    #[serde(rename = "idClasseTemporelle")]
    id: Option<String>,
    valeur: Option<Vec<Valeur>>,
}

#[derive(Deserialize)]
struct Totalisateur {
    valeur: Option<Vec<Valeur>>,
}

#[derive(Deserialize)]
struct Valeur {
    d: String,
    v: Option<serde_json::Value>,
}

/// Which calendar an `idCalendrier` names: `DI…` (or `D`) the distributor's, `FC…`
/// (or `F`) the supplier's.
fn calendar_of(id: Option<&str>) -> Result<Calendar, ShapeError> {
    match id.map(str::trim) {
        Some(id) if id.starts_with('D') => Ok(Calendar::Distributor),
        Some(id) if id.starts_with('F') => Ok(Calendar::Provider),
        other => Err(ShapeError(format!(
            "calendrier idCalendrier {:?} names neither a distributor calendar (D…) nor a supplier one (F…)",
            other.unwrap_or_default()
        ))),
    }
}

/// A counter reading: the instant `d` (Paris local, `YYYY-MM-DD hh:mm:ss`, or a
/// bare date for its midnight) and its value.
fn counter(valeur: &Valeur, scale: f64) -> Result<Reading, ShapeError> {
    let at = At::Point(&valeur.d);
    let raw = valeur.d.trim();
    let local = if raw.len() == 10 {
        parse_date(raw)?.to_datetime(jiff::civil::Time::midnight())
    } else {
        parse_local_datetime(raw)?
    };
    Ok(Reading {
        start: local_instant(local)?,
        step: Step::Day,
        value: value(valeur.v.as_ref(), scale, at)?,
    })
}

/// Every counter of an index answer for `direction`, within the days `[from, to[`:
/// [`Series::EnergyIndex`] first, then each class present, ordered. An answer
/// without any counter (an empty `contexte`) gives no reading.
pub fn parse_index(
    direction: Direction,
    prm: &Prm,
    from: Date,
    to: Date,
    body: &[u8],
) -> Result<Vec<(Series, Vec<Reading>)>, ShapeError> {
    let answer: IndexAnswer = from_json(body, "index")?;
    check_prm(answer.id_prm.as_deref(), prm)?;
    let metier = match direction {
        Direction::Consumption => "CONS",
        Direction::Production => "PROD",
    };
    let whole = Series::EnergyIndex(direction);
    let grandeurs: Vec<&IndexGrandeur> = answer
        .contexte
        .iter()
        .flatten()
        .flat_map(|c| c.grandeur.iter().flatten())
        .collect();
    let mine: Vec<&IndexGrandeur> = grandeurs
        .iter()
        .copied()
        .filter(|g| {
            g.metier.trim() == metier && g.physique.as_deref().is_none_or(|p| p.trim() == "EA")
        })
        .collect();
    if mine.is_empty() && !grandeurs.is_empty() {
        let found: Vec<String> = grandeurs
            .iter()
            .map(|g| format!("{}/{}", g.metier, g.physique.as_deref().unwrap_or("?")))
            .collect();
        return Err(ShapeError(format!(
            "no grandeur {metier}/EA in the index answer (found {})",
            found.join(", ")
        )));
    }

    let mut total: Vec<Reading> = Vec::new();
    let mut classes: BTreeMap<TimeClass, Vec<Reading>> = BTreeMap::new();
    // The classes of each distributor calendar, for the sum when the
    // totalisator is missing.
    let mut distributor: BTreeMap<String, Vec<TimeClass>> = BTreeMap::new();
    for grandeur in mine {
        let scale = unit_scale(whole, grandeur.unite.as_deref())?;
        if let Some(t) = &grandeur.totalisateur {
            for valeur in t.valeur.iter().flatten() {
                total.push(counter(valeur, scale)?);
            }
        }
        for calendrier in grandeur.calendrier.iter().flatten() {
            let calendar = calendar_of(calendrier.id.as_deref())?;
            for classe in calendrier.classes.iter().flatten() {
                let raw = classe.id.as_deref().unwrap_or_default();
                let code = ClassCode::from_enedis(raw).map_err(|e| {
                    ShapeError(format!(
                        "classeTemporelle idClasseTemporelle {:?} of calendrier {:?}: {e}",
                        raw,
                        calendrier.id.as_deref().unwrap_or_default()
                    ))
                })?;
                let class = TimeClass::new(calendar, code);
                if calendar == Calendar::Distributor {
                    let members = distributor
                        .entry(calendrier.id.clone().unwrap_or_default())
                        .or_default();
                    if !members.contains(&class) {
                        members.push(class);
                    }
                }
                let readings = classes.entry(class).or_default();
                for valeur in classe.valeur.iter().flatten() {
                    readings.push(counter(valeur, scale)?);
                }
            }
        }
    }
    for readings in classes.values_mut() {
        sort_dedup(readings);
    }
    sort_dedup(&mut total);
    let total = whole_counter(&total, &classes, &distributor);

    let mut all = Vec::with_capacity(classes.len() + 1);
    all.push((whole, normalise::finish(total, from, to)?));
    for (class, readings) in classes {
        all.push((
            Series::ClassIndex(direction, class),
            normalise::finish(readings, from, to)?,
        ));
    }
    Ok(all)
}

/// The whole meter's counter at every instant of the answer: the totalisator's
/// value, or the sum of a distributor calendar whose classes all have a value then
/// (several such calendars, e.g. at a calendar change, must agree); missing
/// otherwise.
fn whole_counter(
    total: &[Reading],
    classes: &BTreeMap<TimeClass, Vec<Reading>>,
    distributor: &BTreeMap<String, Vec<TimeClass>>,
) -> Vec<Reading> {
    let value_at = |class: &TimeClass, instant: i64| -> Option<f64> {
        let readings = classes.get(class)?;
        readings
            .binary_search_by_key(&instant, |r| r.start)
            .ok()
            .and_then(|i| readings[i].value)
    };
    let mut instants: Vec<i64> = total.iter().map(|r| r.start).collect();
    for members in distributor.values() {
        for class in members {
            if let Some(readings) = classes.get(class) {
                instants.extend(readings.iter().map(|r| r.start));
            }
        }
    }
    instants.sort_unstable();
    instants.dedup();
    instants
        .into_iter()
        .map(|instant| {
            let totalised = total
                .binary_search_by_key(&instant, |r| r.start)
                .ok()
                .and_then(|i| total[i].value);
            let value = totalised.or_else(|| {
                let sums: Vec<f64> = distributor
                    .values()
                    .filter_map(|members| {
                        members
                            .iter()
                            .map(|class| value_at(class, instant))
                            .sum::<Option<f64>>()
                    })
                    .collect();
                match sums.split_first() {
                    Some((first, rest)) if rest.iter().all(|s| (s - first).abs() < 0.5) => {
                        Some(*first)
                    }
                    _ => None,
                }
            });
            Reading {
                start: instant,
                step: Step::Day,
                value,
            }
        })
        .collect()
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

// ------------------------------------------------------------------ contract
//
// The ITC APIs answer in English snake_case (the comptage one in French
// camelCase), the PRM in the path. Only the fields of the contract are read:
// the customer's name, address and contact data that `situation_contrat_auto`
// also carries are never deserialised.

/// `situation_contrat_auto/v1` answers a LIST of contracts (a self-consumer has
/// two: the consumption one, `Contrat GRD-F`, segment C5, with the subscribed
/// power and tariff; the production one, `Contrat GRD-A`, P4, without them). One
/// object alone is read as a list of one.
#[derive(Deserialize)]
struct Situation {
    usage_point_id: Option<String>,
    contract_start: Option<String>,
    distribution_tariff: Option<String>,
    subscribed_power: Option<SubscribedPower>,
    segment: Option<String>,
}

#[derive(Deserialize)]
struct SubscribedPower {
    unit: Option<String>,
    value: Option<serde_json::Value>,
}

/// `synth_contrat_auto/v1`.
#[derive(Deserialize)]
struct Synthese {
    #[serde(default)]
    segments: Vec<SegmentItem>,
    generation_last_activation_date: Option<String>,
    consumption_last_activation_date: Option<String>,
    last_subscribed_power_change_date: Option<String>,
    services_level: Option<String>,
}

#[derive(Deserialize)]
struct SegmentItem {
    segment: Option<String>,
}

/// `comptage_auto/v1` (its swagger, `Situation-comptage-auto.yaml`; no capture:
/// the application of the captures was not subscribed to it).
#[derive(Deserialize)]
struct Comptage {
    #[serde(rename = "dispositifComptage")]
    dispositif: Option<Dispositif>,
    relais: Option<Relais>,
}

#[derive(Deserialize)]
struct Dispositif {
    #[serde(rename = "typeComptage")]
    type_comptage: Option<CodeLibelle>,
}

#[derive(Deserialize)]
struct CodeLibelle {
    code: Option<String>,
    libelle: Option<String>,
}

#[derive(Deserialize)]
struct Relais {
    #[serde(rename = "plageHeuresCreuses")]
    plage_heures_creuses: Option<String>,
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Text that is there: trimmed, not empty.
fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn add_segment(contract: &mut Contract, segment: &str) {
    if !contract.segments.iter().any(|s| s == segment) {
        contract.segments.push(segment.to_owned());
    }
}

/// Reads a `situation_contrat_auto/v1` answer into `contract`: segments, and the
/// subscribed power, tariff and start of the consumption contract (the one
/// carrying a power or a tariff, else the first of a C segment, else the first).
pub fn read_situation(body: &[u8], prm: &Prm, contract: &mut Contract) -> Result<(), ShapeError> {
    let json: serde_json::Value = from_json(body, "situation_contrat_auto")?;
    let list = match json {
        serde_json::Value::Array(list) => list,
        one @ serde_json::Value::Object(_) => vec![one],
        other => {
            return Err(ShapeError(format!(
                "not a situation_contrat_auto answer: {} instead of a list of contracts",
                json_kind(&other)
            )));
        }
    };
    let situations = list
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<Situation>(item)
                .map_err(|e| ShapeError(format!("contract {i} of situation_contrat_auto: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for s in &situations {
        check_prm(s.usage_point_id.as_deref(), prm)?;
        if let Some(segment) = present(&s.segment) {
            add_segment(contract, segment);
        }
    }
    let main = situations
        .iter()
        .find(|s| s.subscribed_power.is_some() || present(&s.distribution_tariff).is_some())
        .or_else(|| {
            situations
                .iter()
                .find(|s| present(&s.segment).is_some_and(|seg| seg.starts_with('C')))
        })
        .or(situations.first());
    let Some(main) = main else {
        return Ok(());
    };
    if let Some(power) = &main.subscribed_power
        && let Some(value) = power.value.as_ref().filter(|v| !v.is_null())
    {
        let value = normalise::decimal(value, "subscribed_power.value")?;
        let unit = present(&power.unit)
            .ok_or_else(|| ShapeError(format!("subscribed_power {value} has no unit")))?;
        contract.subscribed_power = Some(Power {
            value,
            unit: unit.to_owned(),
        });
    }
    if let Some(tariff) = present(&main.distribution_tariff) {
        contract.tariff_option = Some(Coded::label(tariff));
    }
    if let Some(start) = present(&main.contract_start) {
        contract.contract_start = Some(normalise::contract_day(start)?);
    }
    Ok(())
}

/// Reads a `synth_contrat_auto/v1` answer into `contract`: segments, services
/// level, last activation per direction, last change of the subscribed power.
pub fn read_synthese(body: &[u8], _prm: &Prm, contract: &mut Contract) -> Result<(), ShapeError> {
    let synthese: Synthese = from_json(body, "synth_contrat_auto")?;
    for item in &synthese.segments {
        if let Some(segment) = present(&item.segment) {
            add_segment(contract, segment);
        }
    }
    if let Some(level) = present(&synthese.services_level) {
        contract.services_level = Some(Coded::label(level));
    }
    let dated = [
        (
            &synthese.consumption_last_activation_date,
            Direction::Consumption,
        ),
        (
            &synthese.generation_last_activation_date,
            Direction::Production,
        ),
    ];
    for (raw, direction) in dated {
        if let Some(raw) = present(raw) {
            contract.activations.push(Activation {
                direction: Some(direction),
                date: normalise::contract_day(raw)?,
            });
        }
    }
    if let Some(raw) = present(&synthese.last_subscribed_power_change_date) {
        contract.last_changes.push(LastChange {
            of: Changed::SubscribedPower,
            date: normalise::contract_day(raw)?,
        });
    }
    Ok(())
}

/// Reads a `comptage_auto/v1` answer into `contract`: meter type and off-peak hours.
pub fn read_comptage(body: &[u8], _prm: &Prm, contract: &mut Contract) -> Result<(), ShapeError> {
    let comptage: Comptage = from_json(body, "comptage_auto")?;
    if let Some(kind) = comptage.dispositif.and_then(|d| d.type_comptage) {
        let coded = Coded {
            code: present(&kind.code).map(str::to_owned),
            label: present(&kind.libelle).map(str::to_owned),
        };
        if coded.code.is_some() || coded.label.is_some() {
            contract.meter_type = Some(coded);
        }
    }
    if let Some(hours) = comptage
        .relais
        .as_ref()
        .and_then(|r| present(&r.plage_heures_creuses))
    {
        contract.off_peak_hours = Some(normalise::off_peak_hours(hours));
    }
    Ok(())
}
